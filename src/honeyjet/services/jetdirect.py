"""TCP 9100 (HP JetDirect raw port): PJL, PostScript, PCL and whatever else is sent."""

from __future__ import annotations

from honeyjet.protocols.pjl import PJLEngine
from honeyjet.services.base import ServiceContext, StreamSession
from honeyjet.session import Session


def factory(ctx: ServiceContext):
    """The protocol factory for ``loop.create_server``; every service module has one."""
    limits = ctx.settings.limits

    def engine(session: Session) -> PJLEngine:
        return PJLEngine(ctx.device, max_line=limits.line_length, max_jobs=limits.jobs_per_session)

    def protocol() -> StreamSession:
        return StreamSession(ctx, "pjl", engine)

    return protocol
