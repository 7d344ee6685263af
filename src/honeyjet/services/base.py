"""asyncio transports that connect sockets to sans-IO protocol engines.

:class:`StreamSession` is the one ``asyncio.Protocol`` every TCP service uses: it
enforces the limits (concurrent sessions, bytes per session, idle time), keeps the
session transcript, routes engine outputs (replies, events, captures) and guarantees
``session.connect`` first and ``session.closed`` last, whatever happens in between.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Protocol

from honeyjet.config import Settings
from honeyjet.events import EventBus
from honeyjet.persona.device import Device
from honeyjet.protocols.outputs import CaptureData, CaptureEnd, CaptureStart, Close, Emit, Output, Send
from honeyjet.session import HEAD_BYTES, ConnectionLimiter, Counters, Session
from honeyjet.store.artifacts import ArtifactInfo, ArtifactStore, ArtifactWriter
from honeyjet.store.transcript import TranscriptWriter
from honeyjet.text import escape

log = logging.getLogger(__name__)


class Engine(Protocol):
    def feed(self, data: bytes) -> list[Output]: ...

    def eof(self) -> list[Output]: ...


@dataclass
class ServiceContext:
    """What every service shares: settings, the event bus, the device, the stores."""

    settings: Settings
    bus: EventBus
    device: Device
    artifacts: ArtifactStore
    counters: Counters
    limiter: ConnectionLimiter
    sessions: set["StreamSession"] = field(default_factory=set)


class _TranscriptArtifact:
    """Where a session's transcript goes: the first write is held, an artifact writer is
    opened only when a second one comes. A short session's transcript (one write, see
    :class:`TranscriptWriter`) is stored with :meth:`ArtifactStore.put`, and an idle
    connection holds no artifact writer."""

    __slots__ = ("_cap", "_first", "_store", "_writer")

    def __init__(self, store: ArtifactStore, cap: int) -> None:
        self._store = store
        self._cap = cap
        self._first: bytes | None = None
        self._writer: ArtifactWriter | None = None

    def write(self, data: bytes) -> None:
        if self._writer is None:
            if self._first is None:
                self._first = data
                return
            self._writer = self._store.writer(max_bytes=self._cap)
            self._writer.write(self._first)
            self._first = None
        self._writer.write(data)

    def close(self) -> ArtifactInfo:
        if self._writer is None:
            first, self._first = self._first, None
            return self._store.put(first or b"", self._cap)
        return self._writer.close()


class StreamSession(asyncio.Protocol):
    """One TCP connection of a service."""

    protocol_name = "tcp"

    def __init__(self, ctx: ServiceContext, protocol_name: str, engine_factory: Callable[[Session], Engine]):
        self.ctx = ctx
        self.protocol_name = protocol_name
        self.engine_factory = engine_factory
        self.transport: asyncio.Transport | None = None
        self.session: Session | None = None
        self.engine: Engine | None = None
        self.transcript: TranscriptWriter | None = None
        self._transcript_sink: _TranscriptArtifact | None = None
        self._capture: ArtifactWriter | None = None
        self._capture_kind = ""
        self._capture_meta: dict[str, Any] = {}
        self._idle: asyncio.TimerHandle | None = None
        # the loop, taken once per connection: asyncio.get_running_loop() costs a getpid()
        # system call on CPython 3.11
        self._loop: asyncio.AbstractEventLoop | None = None
        self._timed: asyncio.TimerHandle | None = None
        self._last_rx = 0.0
        self._peer: tuple[str, int] = ("", 0)
        self._eof = False
        self._paused: set[str] = set()
        self._cpu = 0.0
        self._opened = 0.0
        self._closing_reason = ""
        self._close_detail = ""  # the engine's words when it ended the exchange
        self._finished = False

    # -- lifecycle ------------------------------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports are not asyncio.Transport subclasses, but have its interface
        self.transport = transport  # type: ignore[assignment]
        peer = transport.get_extra_info("peername") or ("", 0)
        local = transport.get_extra_info("sockname") or ("", 0)
        self._peer = (str(peer[0]), int(peer[1]))
        local_t = (str(local[0]), int(local[1]))
        ctx = self.ctx
        refused = ctx.limiter.acquire(self._peer[0])
        if refused is not None:
            ctx.limiter.refused(refused, self.protocol_name, self._peer, local_t)
            self._finished = True
            transport.abort()
            return
        limits = ctx.settings.limits
        ctx.counters["sessions"] += 1
        self.session = Session(
            ctx.bus, self.protocol_name, self._peer, local_t, max_events=limits.events_per_session, counters=ctx.counters
        )
        ctx.sessions.add(self)
        self.session.emit("honeyjet.session.connect", f"new connection from {self._peer[0]}:{self._peer[1]}", force=True)
        self._transcript_sink = _TranscriptArtifact(ctx.artifacts, limits.transcript_bytes)
        self.transcript = TranscriptWriter(self._transcript_sink)
        self.engine = self.engine_factory(self.session)
        loop = self._loop = asyncio.get_running_loop()
        self._last_rx = self._opened = loop.time()
        self._idle = loop.call_later(limits.idle_timeout, self._check_idle)

    def data_received(self, data: bytes) -> None:
        session, engine = self.session, self.engine
        if session is None or engine is None or self._closing_reason:
            return
        limit = self.ctx.settings.limits.session_bytes
        if session.bytes_in + len(data) > limit:
            data = data[: max(0, limit - session.bytes_in)]
            self._limit("session_bytes", limit, f"session sent more than {limit} bytes")
        session.bytes_in += len(data)
        if len(session.head) < HEAD_BYTES:
            session.head += data[: HEAD_BYTES - len(session.head)]
        self._last_rx = self._loop.time()  # type: ignore[union-attr]  # set with the session
        if self.transcript is not None:
            self.transcript.client(data)
        started = time.perf_counter()
        try:
            outputs = engine.feed(data)
        except Exception:  # an engine bug: record it, end this session, keep serving the rest
            log.exception("%s engine failed on session %s", self.protocol_name, session.id)
            self.ctx.counters["engine_errors"] += 1
            self._eof = True
            self._close("error")
            return
        self._route(outputs)
        self._throttle(time.perf_counter() - started)
        if self._closing_reason == "session_bytes":
            self._shutdown_engine()
            self._close("session_bytes")

    def eof_received(self) -> bool:
        self._shutdown_engine()
        self._close("eof")
        return True  # we close ourselves once replies are flushed

    def connection_lost(self, exc: Exception | None) -> None:
        if self._finished:
            return
        if not self._closing_reason:
            self._closing_reason = "reset" if exc else "eof"
        self._shutdown_engine()
        self._finish()

    # flow control: a peer that does not read its replies, or whose input costs more CPU than
    # its share, stops being read from for a while (TCP backpressure, like a busy printer)
    def pause_writing(self) -> None:
        self._pause("write")

    def resume_writing(self) -> None:
        self._resume("write")

    def _pause(self, why: str) -> None:
        if not self._paused and self.transport is not None and not self.transport.is_closing():
            self.transport.pause_reading()
        self._paused.add(why)

    def _resume(self, why: str) -> None:
        self._paused.discard(why)
        if not self._paused and self.transport is not None and not self.transport.is_closing():
            self.transport.resume_reading()

    def _throttle(self, spent: float) -> None:
        """Keep one session's processing within ``limits.cpu_share`` of a core (after a burst)."""
        self._cpu += spent
        limits = self.ctx.settings.limits
        loop = self._loop or asyncio.get_running_loop()
        allowed = limits.cpu_burst + (loop.time() - self._opened) * limits.cpu_share
        if self._cpu > allowed and "cpu" not in self._paused:
            self.ctx.counters["cpu_throttled"] += 1
            self._pause("cpu")
            loop.call_later((self._cpu - allowed) / limits.cpu_share, self._resume, "cpu")

    # -- helpers ----------------------------------------------------------------------------
    def _shutdown_engine(self) -> None:
        if self._eof or self.engine is None:
            return
        self._eof = True
        try:
            self._route(self.engine.eof())
        except Exception:  # an engine bug must not lose the session record
            log.exception("engine eof failed")
            self.ctx.counters["engine_errors"] += 1

    def _limit(self, name: str, value: int | float, message: str) -> None:
        self.ctx.counters[f"limit_{name}"] += 1
        if self.session is not None:
            self.session.emit("honeyjet.limit.hit", message, {"limit": name, "value": value}, force=True)
        self._closing_reason = self._closing_reason or name

    def _close(self, reason: str) -> None:
        self._closing_reason = self._closing_reason or reason
        if self.transport is not None and not self.transport.is_closing():
            self.transport.close()

    def abort(self, reason: str) -> None:
        """Shut the session down now (sensor stop)."""
        self._closing_reason = self._closing_reason or reason
        if self.transport is not None:
            self.transport.abort()

    def _check_idle(self) -> None:
        self._idle = None
        if self.transport is None or self._finished or self._closing_reason:
            return
        loop = self._loop or asyncio.get_running_loop()
        timeout = self.ctx.settings.limits.idle_timeout
        idle_for = loop.time() - self._last_rx
        if idle_for >= timeout:
            self._limit("idle_timeout", timeout, f"no data for {timeout:g} s")
            self._shutdown_engine()
            self._close("idle_timeout")
            return
        self._idle = loop.call_later(timeout - idle_for, self._check_idle)

    def _timed_status(self) -> None:
        self._timed = None
        engine = self.engine
        interval = getattr(engine, "timed_interval", 0)
        if engine is None or not interval or self._finished or self._closing_reason:
            return
        self._route(engine.timed_status())  # type: ignore[attr-defined]
        self._timed = (self._loop or asyncio.get_running_loop()).call_later(interval, self._timed_status)

    def _route(self, outputs: list[Output]) -> None:
        session = self.session
        assert session is not None
        for out in outputs:
            if isinstance(out, Send):
                self._send(out.data)
            elif isinstance(out, CaptureData):
                if self._capture is not None:
                    self._capture.write(out.data)
            elif isinstance(out, Emit):
                session.emit(out.eventid, out.message, out.fields)  # the bus copies the fields
            elif isinstance(out, CaptureStart):
                self._capture_end({})  # defensive: captures never nest
                self._capture = self.ctx.artifacts.writer(max_bytes=self.ctx.settings.limits.job_bytes)
                self._capture_kind = out.kind
                self._capture_meta = dict(out.meta)
            elif isinstance(out, CaptureEnd):
                self._capture_end(dict(out.meta))
            elif isinstance(out, Close):
                self._close_detail = self._close_detail or out.reason
                self._close("done")
        if getattr(self.engine, "timed_interval", 0) and self._timed is None and not self._eof:
            interval = self.engine.timed_interval  # type: ignore[union-attr]
            self._timed = (self._loop or asyncio.get_running_loop()).call_later(interval, self._timed_status)

    def _send(self, data: bytes) -> None:
        if not data or self.session is None:
            return
        self.session.bytes_out += len(data)
        if self.transcript is not None:
            self.transcript.server(data)
        if self.transport is not None and not self.transport.is_closing():
            self.transport.write(data)

    def _capture_end(self, meta: dict[str, Any]) -> None:
        writer = self._capture
        if writer is None:
            return
        self._capture = None
        info = writer.close()
        session = self.session
        assert session is not None
        fields = dict(self._capture_meta)
        fields.update(meta)
        fields.update(info.fields())
        if info.truncated:
            reason = "disk_quota" if info.quota_exceeded else "job_bytes"
            limit = self.ctx.settings.limits.disk_quota if info.quota_exceeded else self.ctx.settings.limits.job_bytes
            self.ctx.counters[f"limit_{reason}"] += 1
            session.emit("honeyjet.limit.hit", f"stored copy cut at {info.stored_size} bytes ({reason})", {"limit": reason, "value": limit})
        if self._capture_kind == "job":
            session.jobs += 1
            eventid = "honeyjet.job.captured"
            what = f"print job {fields.get('job')} ({fields.get('language')}, {info.size} bytes, {fields.get('pages')} pages)"
        elif self._capture_kind == "file":
            eventid = "honeyjet.file.stored"
            what = f"uploaded file {fields.get('path')} ({info.size} bytes)"
        else:  # e.g. an HTTP body: the request event already names it by its sha256
            self.ctx.counters[self._capture_kind + "s"] += 1
            return
        self.ctx.counters[self._capture_kind + "s"] += 1
        session.emit(eventid, f"{what} stored as {info.shasum[:12] or 'nothing (quota)'}", fields)

    def _finish(self) -> None:
        """Close captures and the transcript, then write the last event of the session."""
        if self._finished:
            return
        self._finished = True
        for handle in (self._idle, self._timed):
            if handle is not None:
                handle.cancel()
        session = self.session
        if session is None:
            return
        try:
            self._capture_end({"ended_by": "eof"})
        except Exception:
            log.exception("closing a capture failed")
        fields: dict[str, Any] = {
            "duration_ms": session.duration_ms(),
            "bytes_in": session.bytes_in,
            "bytes_out": session.bytes_out,
            "reason": self._closing_reason or "eof",
            "jobs": session.jobs,
            "head": escape(session.head, HEAD_BYTES),
        }
        if self._close_detail:
            fields["detail"] = self._close_detail
        if self.transcript is not None and self._transcript_sink is not None:
            try:
                self.transcript.finish()
                info = self._transcript_sink.close()
                fields.update(
                    transcript_shasum=info.shasum, transcript_size=info.stored_size, transcript_truncated=info.truncated
                )
            except Exception:
                log.exception("storing a transcript failed")
        session.emit(
            "honeyjet.session.closed",
            f"connection from {self._peer[0]}:{self._peer[1]} closed ({fields['reason']}) after {fields['duration_ms']} ms",
            fields,
            force=True,
        )
        self.ctx.limiter.release(self._peer[0])
        self.ctx.sessions.discard(self)
