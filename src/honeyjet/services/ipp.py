"""TCP 631: IPP over HTTP (the JetDirect's IPP server), answered from the persona's `[ipp]`."""

from __future__ import annotations

from honeyjet.persona.model_ipp import IPPSection
from honeyjet.protocols.ipp import IPPEngine, IPPPrinter
from honeyjet.services.base import ServiceContext, StreamSession
from honeyjet.session import Session


def factory(ctx: ServiceContext):
    """The protocol factory for ``loop.create_server``; every service module has one."""
    settings = ctx.settings
    limits = settings.limits
    # one printer for every connection: Create-Job on one, Send-Document on another
    printer = IPPPrinter(
        ctx.device,
        ctx.device.persona.ipp or IPPSection(),
        web_port=settings.listen_port(settings.http),
    )

    def engine(session: Session) -> IPPEngine:
        # printer-uri-supported and job-uri name the address and port this client used
        local = (str(session.identity["dst_ip"]), int(session.identity["dst_port"]))
        return IPPEngine(printer, local, max_body=limits.session_bytes)

    def protocol() -> StreamSession:
        return StreamSession(ctx, "ipp", engine)

    return protocol
