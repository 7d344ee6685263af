"""TCP 9100 (HP JetDirect raw port): PJL, PostScript, PCL and whatever else is sent."""

from __future__ import annotations

from honeyjet.protocols.pjl import PJLEngine
from honeyjet.services.base import ServiceContext, StreamSession


def jetdirect_factory(ctx: ServiceContext):
    """A protocol factory for ``loop.create_server``."""
    max_line = ctx.settings.limits.line_length

    def engine() -> PJLEngine:
        return PJLEngine(ctx.device, max_line=max_line)

    def protocol() -> StreamSession:
        return StreamSession(ctx, "pjl", engine)

    return protocol
