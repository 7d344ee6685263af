"""TCP 80: the printer's embedded web server, answered from the persona's ``[http]`` section."""

from __future__ import annotations

from honeyjet.persona.model import PersonaError
from honeyjet.protocols.ews import EWSSite, ews_engine
from honeyjet.protocols.http import HTTPServerEngine
from honeyjet.services.base import ServiceContext, StreamSession
from honeyjet.session import Session


def factory(ctx: ServiceContext):
    """The protocol factory for ``loop.create_server``; every service module has one."""
    section = ctx.device.persona.http
    if section is None:
        raise PersonaError(
            f"persona error: persona {ctx.device.persona.id} has no [http] section (http.toml); "
            "set http.enabled = false or add one"
        )
    site = EWSSite(ctx.device, section)
    # a body bigger than the stored-object cap is not handed on, so the sha256 in the
    # request event is always the name of the stored artifact
    max_body = ctx.settings.limits.job_bytes

    def engine(session: Session) -> HTTPServerEngine:
        return ews_engine(site, str(session.identity["dst_ip"]), max_body=max_body)

    def protocol() -> StreamSession:
        return StreamSession(ctx, "http", engine)

    return protocol
