"""TCP 515: the LPD service (RFC 1179) of the embedded JetDirect.

No greeting: the engine answers only what a client asks. Removals (``lprm``) are shared by
the sessions of this service, so a removed job disappears from every later listing.
"""

from __future__ import annotations

from honeyjet.persona.model_lpd import LPDSection
from honeyjet.protocols.lpd import LPDEngine, QueueBook
from honeyjet.services.base import ServiceContext, StreamSession
from honeyjet.session import Session


def factory(ctx: ServiceContext):
    """The protocol factory for ``loop.create_server``; every service module has one."""
    limits = ctx.settings.limits
    section = ctx.device.persona.lpd or LPDSection()
    book = QueueBook()

    def engine(session: Session) -> LPDEngine:
        return LPDEngine(ctx.device, section, max_line=limits.line_length, max_jobs=limits.jobs_per_session, book=book)

    def protocol() -> StreamSession:
        return StreamSession(ctx, "lpd", engine)

    return protocol
