"""UDP 161: the printer's SNMP agent, with pseudo-sessions and reply-rate limits.

UDP has no connections, so a *pseudo-session* stands for one peer ``(address, port)``:
``honeyjet.session.connect`` at its first datagram, ``honeyjet.session.closed`` after
``snmp.session_idle`` seconds of silence (reason ``idle_timeout``) or when the sensor
stops (``shutdown``). One timer sweeps every session; none is armed per datagram.

The agent must not become a reflector (spoofed sources, small GETBULK requests, large
answers), so:

* datagrams from one source *address* are handled at most ``snmp.replies_per_source``
  times per second, evenly spaced (one every 1/rate s), so no one-second window holds
  more than that many replies. A datagram that arrives early waits (a sequential walker
  such as snmpwalk is only slowed down, never times out); at most one second's worth
  waits per source, and the rest are dropped unread and unanswered, counted in
  ``counters["limit_replies_per_source"]`` and reported with ``honeyjet.limit.hit`` at
  most once per source and minute;
* no reply is longer than ``snmp.max_reply_bytes`` (the engine cuts GETBULK answers and
  answers tooBig; this module checks again before sending);
* all SNMP handling together may use at most ``limits.cpu_share`` of a core (after a
  ``limits.cpu_burst``); beyond it datagrams are dropped unread (``snmp_cpu_dropped``,
  one ``honeyjet.limit.hit`` per minute), so many paced sources cannot add up to a busy loop;
* live pseudo-sessions are bounded like TCP sessions (``limits.sessions_total`` and
  ``limits.sessions_per_source``) but counted apart from them, so a UDP flood with
  spoofed sources cannot lock out TCP clients; a peer over the bound is refused
  (``honeyjet.session.rejected``, aggregated) and its datagram dropped.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from typing import Any

from honeyjet.protocols.outputs import Emit, Send
from honeyjet.protocols.snmp import SNMPAgent
from honeyjet.services.base import ServiceContext
from honeyjet.session import Session

log = logging.getLogger(__name__)

PROTOCOL = "snmp"
REPORT_INTERVAL = 60.0  # seconds between two limit.hit events for one source
MAX_TRACKED_SOURCES = 65536
MAX_QUEUED_BYTES = 8 * 2**20  # datagrams waiting for their turn, all sources together


class _Source:
    """Pacing state of one source address."""

    __slots__ = ("next_at", "queue", "timer")

    def __init__(self) -> None:
        self.next_at = 0.0  # earliest time its next datagram may be handled
        self.queue: deque[tuple[tuple[str, int], Any, bytes]] = deque()  # (peer, socket address, datagram)
        self.timer: asyncio.TimerHandle | None = None


class PseudoSession:
    """One UDP peer seen recently. Lives in ``ctx.sessions`` so the sensor can end it."""

    __slots__ = ("service", "key", "session", "first", "last")

    def __init__(self, service: "SNMPService", key: tuple[str, int], session: Session, now: float):
        self.service = service
        self.key = key
        self.session = session
        self.first = now
        self.last = now

    def abort(self, reason: str) -> None:
        """End this pseudo-session now (sensor stop)."""
        self.service.close_session(self.key, reason)


class SNMPService(asyncio.DatagramProtocol):
    def __init__(self, ctx: ServiceContext, agent: SNMPAgent):
        self.ctx = ctx
        self.agent = agent
        st = ctx.settings
        self.rate = st.snmp.replies_per_source
        self.max_reply = st.snmp.max_reply_bytes
        self.idle = st.snmp.session_idle
        self.max_sessions = st.limits.sessions_total
        self.max_per_source = st.limits.sessions_per_source
        self.transport: asyncio.DatagramTransport | None = None
        self.local: tuple[str, int] = ("", 0)
        self.sessions: dict[tuple[str, int], PseudoSession] = {}
        self._per_source: dict[str, int] = {}
        self.spacing = (1.0 + 1e-3) / self.rate  # a hair over 1/rate: float error never lets rate+1 in
        self._sources: dict[str, _Source] = {}
        self._queued_bytes = 0
        self._reported: dict[tuple[str, str], float] = {}
        self.cpu_share = st.limits.cpu_share
        self.cpu_burst = st.limits.cpu_burst
        self._cpu_debt = 0.0  # CPU seconds spent beyond the share (leaky bucket)
        self._cpu_at = 0.0
        self._sweeper: asyncio.TimerHandle | None = None
        self._closed = False

    # -- asyncio callbacks ------------------------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        local = transport.get_extra_info("sockname") or ("", 0)
        self.local = (str(local[0]), int(local[1]))
        self._arm()

    def datagram_received(self, data: bytes, addr: Any) -> None:
        if self._closed:
            return
        peer = (str(addr[0]), int(addr[1]))
        now = self._now()
        self.ctx.counters["snmp_datagrams"] += 1
        src = self._source(peer[0], now)
        if src is None:
            self.ctx.counters["snmp_dropped_sources"] += 1
            return
        if not src.queue and now >= src.next_at:
            src.next_at = now + self.spacing
            self._handle(peer, addr, data, now)
            return
        if len(src.queue) >= self.rate or self._queued_bytes + len(data) > MAX_QUEUED_BYTES:
            self.ctx.counters["limit_replies_per_source"] += 1
            self._limit_hit(
                peer, len(data), now, "replies_per_source", self.rate,
                f"more than {self.rate} SNMP datagrams per second from {peer[0]}; the excess is dropped unanswered",
            )
            return
        src.queue.append((peer, addr, data))
        self._queued_bytes += len(data)
        if src.timer is None:
            self._schedule(src, peer[0])

    def _schedule(self, src: _Source, ip: str) -> None:
        # the pacing clock is time.monotonic(): uvloop's loop.time() is cached per loop
        # iteration, and a stale "now" would let two replies out closer than 1/rate
        delay = max(0.0, src.next_at - self._now())
        src.timer = asyncio.get_running_loop().call_later(delay, self._drain, ip)

    def _drain(self, ip: str) -> None:
        """The next waiting datagram of ``ip`` is due."""
        src = self._sources.get(ip)
        if src is None or self._closed:
            return
        src.timer = None
        if not src.queue:
            return
        now = self._now()
        if now < src.next_at:  # the timer fired early (coarse timer clock): wait the rest
            self._schedule(src, ip)
            return
        peer, addr, data = src.queue.popleft()
        self._queued_bytes -= len(data)
        src.next_at = now + self.spacing
        self._handle(peer, addr, data, now)
        if src.queue:
            self._schedule(src, ip)

    def _handle(self, peer: tuple[str, int], addr: Any, data: bytes, now: float) -> None:
        """Feed one datagram to the agent; send its reply, record its events."""
        if not self._cpu_ok(now):
            self.ctx.counters["snmp_cpu_dropped"] += 1
            self._limit_hit(
                peer, len(data), now, "cpu_share", self.cpu_share,
                f"SNMP used more than {self.cpu_share:g} of a core; datagrams are dropped unanswered for a while",
                per_source=False,
            )
            return
        pseudo = self.sessions.get(peer) or self._open(peer, now)
        if pseudo is None:
            return
        session = pseudo.session
        session.bytes_in += len(data)
        pseudo.last = now
        started = time.perf_counter()
        try:
            outputs = self.agent.datagram(data)
        except Exception:  # an engine bug: record it, keep serving
            log.exception("snmp engine failed on session %s", session.id)
            self.ctx.counters["engine_errors"] += 1
            return
        finally:
            self._cpu_debt += time.perf_counter() - started
        for out in outputs:
            if isinstance(out, Send):
                self._send(pseudo, out.data, addr)  # the address as the socket gave it (IPv6 scope kept)
            elif isinstance(out, Emit):
                session.emit(out.eventid, out.message, dict(out.fields))

    def _cpu_ok(self, now: float) -> bool:
        self._cpu_debt = max(0.0, self._cpu_debt - (now - self._cpu_at) * self.cpu_share)
        self._cpu_at = now
        return self._cpu_debt <= self.cpu_burst

    def error_received(self, exc: Exception) -> None:
        # ICMP port unreachable after a reply to a closed port, and the like
        self.ctx.counters["snmp_send_errors"] += 1

    def connection_lost(self, exc: Exception | None) -> None:
        self._closed = True
        if self._sweeper is not None:
            self._sweeper.cancel()
            self._sweeper = None
        for src in self._sources.values():
            if src.timer is not None:
                src.timer.cancel()
        self._sources.clear()
        self._queued_bytes = 0
        for key in list(self.sessions):
            self.close_session(key, "shutdown")

    # -- sessions ---------------------------------------------------------------------------
    def _open(self, peer: tuple[str, int], now: float) -> PseudoSession | None:
        ctx = self.ctx
        refused = None
        if len(self.sessions) >= self.max_sessions:
            refused = "sessions_total"
        elif self._per_source.get(peer[0], 0) >= self.max_per_source:
            refused = "sessions_per_source"
        if refused is not None:
            ctx.limiter.refused(refused, PROTOCOL, peer, self.local)
            return None
        ctx.counters["sessions"] += 1
        session = Session(
            ctx.bus, PROTOCOL, peer, self.local, max_events=ctx.settings.limits.events_per_session, counters=ctx.counters
        )
        pseudo = PseudoSession(self, peer, session, now)
        self.sessions[peer] = pseudo
        self._per_source[peer[0]] = self._per_source.get(peer[0], 0) + 1
        ctx.sessions.add(pseudo)  # type: ignore[arg-type]  # duck-typed: the sensor calls abort()
        session.emit("honeyjet.session.connect", f"first SNMP datagram from {peer[0]}:{peer[1]}", force=True)
        return pseudo

    def close_session(self, key: tuple[str, int], reason: str) -> None:
        pseudo = self.sessions.pop(key, None)
        if pseudo is None:
            return
        left = self._per_source.get(key[0], 1) - 1
        if left > 0:
            self._per_source[key[0]] = left
        else:
            self._per_source.pop(key[0], None)
        self.ctx.sessions.discard(pseudo)  # type: ignore[arg-type]
        session = pseudo.session
        duration_ms = int((pseudo.last - pseudo.first) * 1000)
        session.emit(
            "honeyjet.session.closed",
            f"SNMP peer {key[0]}:{key[1]} done ({reason}) after {duration_ms} ms",
            {"duration_ms": duration_ms, "bytes_in": session.bytes_in, "bytes_out": session.bytes_out, "reason": reason},
            force=True,
        )

    def _send(self, pseudo: PseudoSession, data: bytes, addr: Any) -> None:
        if len(data) > self.max_reply:  # the engine never does this; never let it out anyway
            self.ctx.counters["snmp_oversized_replies"] += 1
            return
        if self.transport is None or self.transport.is_closing():
            return
        self.transport.sendto(data, addr)
        pseudo.session.bytes_out += len(data)

    # -- rate limit -------------------------------------------------------------------------
    def _source(self, ip: str, now: float) -> _Source | None:
        src = self._sources.get(ip)
        if src is None:
            if len(self._sources) >= MAX_TRACKED_SOURCES:
                self._prune(now)
                if len(self._sources) >= MAX_TRACKED_SOURCES:
                    return None  # too many sources at once to pace: answer none of the new ones
            src = self._sources[ip] = _Source()
        return src

    def _limit_hit(
        self, peer: tuple[str, int], size: int, now: float, limit: str, value: float, message: str, *, per_source: bool = True
    ) -> None:
        """A datagram was dropped by a bound: account for it; report at most once a minute
        (per source, or for the whole service)."""
        pseudo = self.sessions.get(peer)
        if pseudo is not None:
            pseudo.session.bytes_in += size
            pseudo.last = now
        key = (limit, peer[0] if per_source else "")
        last = self._reported.get(key)
        if last is not None and now - last < REPORT_INTERVAL:
            return
        if len(self._reported) >= MAX_TRACKED_SOURCES:
            self._prune(now)
        self._reported[key] = now
        if pseudo is None:
            pseudo = self._open(peer, now)
            if pseudo is None:
                return
            pseudo.session.bytes_in += size
        pseudo.session.emit("honeyjet.limit.hit", message, {"limit": limit, "value": value}, force=True)

    def _prune(self, now: float) -> None:
        for ip in [ip for ip, src in self._sources.items() if not src.queue and src.next_at <= now]:
            del self._sources[ip]
        for key in [k for k, t in self._reported.items() if now - t >= REPORT_INTERVAL]:
            del self._reported[key]

    # -- the sweep --------------------------------------------------------------------------
    @staticmethod
    def _now() -> float:
        return time.monotonic()

    def _arm(self) -> None:
        interval = max(0.05, min(1.0, self.idle / 2))
        self._sweeper = asyncio.get_running_loop().call_later(interval, self._sweep)

    def _sweep(self) -> None:
        self._sweeper = None
        if self._closed:
            return
        now = self._now()
        for key in [k for k, p in self.sessions.items() if now - p.last >= self.idle]:
            self.close_session(key, "idle_timeout")
        self._prune(now)
        self._arm()


def factory(ctx: ServiceContext):
    """The protocol factory for ``loop.create_datagram_endpoint``; one agent per sensor."""
    max_reply = ctx.settings.snmp.max_reply_bytes
    agent = SNMPAgent(ctx.device, ctx.device.persona.snmp, max_reply_bytes=max_reply, max_request_bytes=max(1472, max_reply))

    def protocol() -> SNMPService:
        return SNMPService(ctx, agent)

    return protocol
