"""Sessions: one connection (or UDP peer) = one session with bound identity and bounds.

A :class:`Session` owns the identity fields every event of the connection carries;
they are fixed when it opens and nothing a protocol engine emits can change them.
:class:`ConnectionLimiter` enforces the concurrent-session bounds and aggregates
refusals so a flood cannot flood the log as well.
"""

from __future__ import annotations

import os
import time
from collections import Counter
from collections.abc import Mapping
from typing import Any

from honeyjet.events import EventBus, sensor_identity


class _SessionIds:
    """Random 16-hex-digit session ids (64 bits: unique across a fleet's central store), drawn
    from the OS in blocks.

    ``secrets.token_hex(6)`` costs one ``getrandom`` system call per session (about a
    tenth of a probe connection's CPU); one call per 512 sessions gives the same
    randomness. A forked child draws a fresh block rather than repeat its parent's ids.
    """

    __slots__ = ("block", "pos")
    SIZE = 8
    BLOCK = 8 * 512

    def __init__(self) -> None:
        self.block = b""
        self.pos = 0

    def reset(self) -> None:
        self.block = b""
        self.pos = 0

    def next(self) -> str:
        pos = self.pos
        if pos + self.SIZE > len(self.block):
            self.block = os.urandom(self.BLOCK)
            pos = 0
        self.pos = pos + self.SIZE
        return self.block[pos : pos + self.SIZE].hex()


_session_ids = _SessionIds()
new_session_id = _session_ids.next
if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_session_ids.reset)


class Counters(Counter):
    """Sensor-wide counters (sessions, drops, limit hits …), reported at stop and in metrics."""


HEAD_BYTES = 512


class Session:
    __slots__ = (
        "bus",
        "identity",
        "id",
        "started_wall",
        "started",
        "bytes_in",
        "bytes_out",
        "events",
        "events_dropped",
        "max_events",
        "jobs",
        "head",
        "counters",
        "_limit_reported",
    )

    def __init__(
        self,
        bus: EventBus,
        protocol: str,
        peer: tuple[str, int],
        local: tuple[str, int],
        *,
        max_events: int,
        counters: Counters,
    ):
        self.bus = bus
        self.id = new_session_id()
        self.identity = {
            "session": self.id,
            "protocol": protocol,
            "src_ip": peer[0],
            "src_port": peer[1],
            "dst_ip": local[0],
            "dst_port": local[1],
        }
        self.started_wall = time.time()
        self.started = time.monotonic()
        self.bytes_in = 0
        self.bytes_out = 0
        self.events = 0
        self.events_dropped = 0
        self.max_events = max_events
        self.jobs = 0
        self.head = b""  # the first HEAD_BYTES the peer sent (for classification: magic, probes)
        self.counters = counters
        self._limit_reported = False

    @property
    def src_ip(self) -> str:
        return self.identity["src_ip"]

    def duration_ms(self) -> int:
        return int((time.monotonic() - self.started) * 1000)

    def emit(self, eventid: str, message: str, fields: Mapping[str, Any] | None = None, *, force: bool = False) -> None:
        """Record an event of this session (dropped and counted past the per-session cap)."""
        if self.events >= self.max_events and not force:
            self.events_dropped += 1
            self.counters["events_dropped"] += 1
            if not self._limit_reported:
                self._limit_reported = True
                self.bus.emit(
                    "honeyjet.limit.hit",
                    f"session reached {self.max_events} events; further events are counted, not recorded",
                    self.identity,
                    {"limit": "events_per_session", "value": self.max_events},
                )
            return
        self.events += 1
        self.bus.emit(eventid, message, self.identity, fields or {})


class ConnectionLimiter:
    """Concurrent sessions in total and per source address."""

    REPORT_INTERVAL = 60.0

    def __init__(self, bus: EventBus, counters: Counters, *, total: int, per_source: int):
        self.bus = bus
        self.counters = counters
        self.total = total
        self.per_source = per_source
        self.active = 0
        self.by_source: dict[str, int] = {}
        self._refused: dict[tuple[str, str], tuple[float, int]] = {}

    def acquire(self, src_ip: str) -> str | None:
        """Take a slot for ``src_ip``; returns the name of the bound that refused, if any."""
        if self.active >= self.total:
            return "sessions_total"
        if self.by_source.get(src_ip, 0) >= self.per_source:
            return "sessions_per_source"
        self.active += 1
        self.by_source[src_ip] = self.by_source.get(src_ip, 0) + 1
        return None

    def release(self, src_ip: str) -> None:
        self.active -= 1
        left = self.by_source.get(src_ip, 1) - 1
        if left:
            self.by_source[src_ip] = left
        else:
            self.by_source.pop(src_ip, None)

    def refused(self, limit: str, protocol: str, peer: tuple[str, int], local: tuple[str, int]) -> None:
        """Count a refusal; emit at most one event per (source, limit) and interval."""
        self.counters[f"rejected_{limit}"] += 1
        key = (peer[0], limit)
        now = time.monotonic()
        last, pending = self._refused.get(key, (0.0, 0))
        pending += 1
        if now - last < self.REPORT_INTERVAL and last:
            self._refused[key] = (last, pending)
            return
        if len(self._refused) > 10000:  # forget old sources rather than grow without bound
            self._refused.clear()
        self._refused[key] = (now, 0)
        identity = sensor_identity(protocol)
        identity.update(src_ip=peer[0], src_port=peer[1], dst_ip=local[0], dst_port=local[1])
        self.bus.emit(
            "honeyjet.session.rejected",
            f"connection from {peer[0]} refused: {limit} limit reached",
            identity,
            {"limit": limit, "count": pending},
        )
