"""TCP 9100 (HP JetDirect raw port): PJL, PostScript, PCL and whatever else is sent."""

from __future__ import annotations

from honeyjet.protocols.pjl import PJLEngine
from honeyjet.services.base import ServiceContext, StreamSession


def factory(ctx: ServiceContext):
    """A protocol factory for ``loop.create_server``."""
    limits = ctx.settings.limits

    def engine() -> PJLEngine:
        return PJLEngine(ctx.device, max_line=limits.line_length, max_jobs=limits.jobs_per_session)

    def protocol() -> StreamSession:
        return StreamSession(ctx, "pjl", engine)

    return protocol
