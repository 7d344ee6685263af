"""UDP 631: CUPS browse datagrams, recorded and classified, never answered.

Each datagram is a short session of its own (``session.connect``,
``honeyjet.browse.packet``, ``session.closed``) so it gets a verdict like any other
session. At most ``browse.max_packets_per_source`` datagrams per source address and
minute are recorded; the rest are counted (``browse_dropped``) with one
``honeyjet.limit.hit`` per source and minute. Nothing is sent back and no URI from a
packet is ever contacted.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

from honeyjet.protocols.cups_browse import parse
from honeyjet.services.base import ServiceContext
from honeyjet.session import Session
from honeyjet.text import escape

PROTOCOL = "browse"
WINDOW = 60.0
MAX_TRACKED = 65536


class BrowseService(asyncio.DatagramProtocol):
    def __init__(self, ctx: ServiceContext):
        self.ctx = ctx
        self.per_source = ctx.settings.browse.max_packets_per_source
        self.local: tuple[str, int] = ("", 0)
        self._counts: dict[str, tuple[float, int, bool]] = {}  # ip -> (window start, packets, reported)

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        local = transport.get_extra_info("sockname") or ("", 0)
        self.local = (str(local[0]), int(local[1]))

    def datagram_received(self, data: bytes, addr: Any) -> None:
        ctx = self.ctx
        peer = (str(addr[0]), int(addr[1]))
        ctx.counters["browse_datagrams"] += 1
        now = time.monotonic()
        start, count, reported = self._counts.get(peer[0], (now, 0, False))
        if now - start >= WINDOW:
            start, count, reported = now, 0, False
        count += 1
        if len(self._counts) >= MAX_TRACKED and peer[0] not in self._counts:
            self._counts = {ip: v for ip, v in self._counts.items() if now - v[0] < WINDOW}
            if len(self._counts) >= MAX_TRACKED:
                ctx.counters["browse_dropped"] += 1
                return
        over = count > self.per_source
        self._counts[peer[0]] = (start, count, reported or over)
        if over and reported:
            ctx.counters["browse_dropped"] += 1
            return
        session = Session(ctx.bus, PROTOCOL, peer, self.local,
                          max_events=ctx.settings.limits.events_per_session, counters=ctx.counters)
        ctx.counters["sessions"] += 1
        session.bytes_in = len(data)
        session.head = data[:512]
        session.emit("honeyjet.session.connect", f"CUPS browse datagram from {peer[0]}:{peer[1]}", force=True)
        if over:
            ctx.counters["browse_dropped"] += 1
            session.emit("honeyjet.limit.hit",
                         f"more than {self.per_source} browse datagrams a minute from {peer[0]}; the rest are counted",
                         {"limit": "packets_per_source", "value": self.per_source}, force=True)
        else:
            fields = parse(data)
            what = f"announces {fields['uri']}" if fields["valid"] else "is not a browse line"
            session.emit("honeyjet.browse.packet", f"CUPS browse datagram {what}", fields)
        session.emit(
            "honeyjet.session.closed",
            f"CUPS browse datagram from {peer[0]}:{peer[1]} recorded",
            {"duration_ms": 0, "bytes_in": len(data), "bytes_out": 0, "reason": "done", "jobs": 0,
             "head": escape(data[:512], 512)},
            force=True,
        )

    def error_received(self, exc: Exception) -> None:
        self.ctx.counters["browse_errors"] += 1


def factory(ctx: ServiceContext):
    def protocol() -> BrowseService:
        return BrowseService(ctx)

    return protocol
