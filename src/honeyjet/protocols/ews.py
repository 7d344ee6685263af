"""The embedded web server (port 80), sans-IO and persona-driven.

:class:`HTTPServerEngine` (:mod:`honeyjet.protocols.http`) frames requests; this
module answers them from the persona's ``[http]`` section
(:mod:`honeyjet.persona.model_http`): it picks the route, fills the page templates
with the device's live values (display message, state, page count, serial, MAC …,
and the local address the client connected to), escapes every inserted value for the
page's markup, and writes the response byte for byte as the persona declares it (the
status line, header lines in their own case and order, an exact ``Content-Length``).
No vendor is named in this code.

Request bodies (a POST to a settings form) are captured as artifacts
(``CaptureStart("body")`` … ``CaptureEnd``); their sha256 and the page that answered go
into the ``honeyjet.http.request`` event the engine writes (``shasum``, ``page``).
"""

from __future__ import annotations

import hashlib
import html
import re
from dataclasses import dataclass
from email.utils import format_datetime
from http import HTTPStatus
from typing import Any, Callable, Mapping
from urllib.parse import parse_qsl, unquote

from honeyjet.persona.device import Device
from honeyjet.persona.model import render
from honeyjet.persona.model_http import HTTPResponse, HTTPSection, Route
from honeyjet.protocols.http import HTTPServerEngine, Request
from honeyjet.protocols.outputs import CaptureData, CaptureEnd, CaptureStart, Output, Send

REQUEST_EVENT = "honeyjet.http.request"

# characters XML 1.0 cannot carry at all (C0 controls but TAB/LF/CR, surrogates, U+FFFE/F)
_NOT_XML = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ud800-\udfff\ufffe\uffff]")
# nothing that could end or fold a header line, nor any other control character
_NOT_HEADER = re.compile("[\x00-\x1f\x7f]")


def _escape_html(text: str) -> str:
    return html.escape(_NOT_XML.sub("", text), quote=True)


def _escape_none(text: str) -> str:
    return text


_ESCAPERS: dict[str, Callable[[str], str]] = {"html": _escape_html, "xml": _escape_html, "none": _escape_none}


def _header_safe(text: str) -> str:
    return _NOT_HEADER.sub(" ", text)


def _local_ip(addr: str) -> str:
    return addr[7:] if addr.startswith("::ffff:") and "." in addr else addr


@dataclass(frozen=True, slots=True)
class Answer:
    """A complete response: the bytes, and what the request event records."""

    data: bytes
    status: int
    keep_alive: bool
    page: str


class EWSSite:
    """One device's web server: the persona's ``[http]`` section bound to the device."""

    def __init__(self, device: Device, section: HTTPSection):
        self.device = device
        self.section = section
        self._routes: dict[str, list[Route]] = {}
        for route in section.routes:
            self._routes.setdefault(self._norm(route.path), []).append(route)
        self._fixed: dict[int, bytes] = {}
        for resp in self._responses():
            fixed = resp.body_bytes()
            if fixed is not None:
                self._fixed[id(resp)] = fixed

    def _responses(self) -> list[HTTPResponse]:
        errs = self.section.errors
        found: list[HTTPResponse] = list(self.section.routes)
        found += [r for r in (errs.not_found, errs.bad_request, errs.not_implemented, errs.method_not_allowed) if r is not None]
        return found

    def _norm(self, path: str) -> str:
        return path if self.section.case_sensitive_paths else path.casefold()

    # -- routing ----------------------------------------------------------------------------
    def match(self, request: Request) -> Route | None:
        path = self._norm(unquote(request.path, errors="replace"))
        candidates = self._routes.get(path)
        if not candidates:
            return None
        query: dict[str, str] = {}
        for key, value in parse_qsl(request.query, keep_blank_values=True):
            query.setdefault(key, value)
        for route in candidates:
            if all(k in query and (want == "*" or query[k] == want) for k, want in route.query.items()):
                return route
        return None

    def choose(self, request: Request) -> tuple[HTTPResponse, str]:
        """The response for ``request`` and the page id recorded in its event."""
        sec, errs = self.section, self.section.errors
        if request.malformed:
            return errs.bad_request, "400"
        method = request.method
        if method not in sec.methods:
            return errs.not_implemented, "501"
        route = self.match(request)
        if route is None:
            return errs.not_found, "404"
        if method in route.methods or (method == "HEAD" and "GET" in route.methods):
            return route, route.id
        if errs.method_not_allowed is not None:
            return errs.method_not_allowed, "405"
        return errs.not_implemented, "501"

    # -- rendering ---------------------------------------------------------------------------
    def values(self, ip: str, request: Request) -> dict[str, str]:
        """Every template value for one request, as text (not yet escaped)."""
        sec = self.section
        dev = self.device
        vals: dict[str, Any] = dict(sec.values)
        vals.update(dev.values(ip=ip))
        mac_hex = str(vals["mac"]).replace(":", "").replace("-", "")
        uptime = int(vals["uptime_s"])
        days, rest = divmod(uptime, 86400)
        hours, rest = divmod(rest, 3600)
        minutes, seconds = divmod(rest, 60)
        octets = ip.split(".")
        vals.update(
            http_date=format_datetime(dev.now(), usegmt=True),
            mac_hex=mac_hex.upper(),
            mac_hex_lower=mac_hex.lower(),
            mac_lower=str(vals["mac"]).lower(),
            uptime_days=days,
            uptime_text=f"{days} days {hours:02d}:{minutes:02d}:{seconds:02d}",
            ram_mb=int(vals["ram_bytes"]) // 2**20,
            ip_gateway=".".join(octets[:3] + ["1"]) if len(octets) == 4 else "",
            state_text=sec.state_texts.get(str(vals["state"]), str(vals["state"])),
            path=request.path,
        )
        return {k: str(v) for k, v in vals.items()}

    def build(self, resp: HTTPResponse, request: Request, ip: str) -> bytes:
        sec = self.section
        vals = self.values(ip, request)
        status = resp.status
        reason = resp.reason or sec.reasons.get(str(status), "") or _standard_reason(status)
        version = sec.response_version
        if sec.echo_request_version and request.version in ("HTTP/1.0", "HTTP/1.1"):
            version = request.version
        location = render(resp.location, vals) if resp.location else ""
        meta = {"status": str(status), "reason": reason, "version": version, "content_type": resp.content_type, "location": location}
        body = self._fixed.get(id(resp))
        if body is None:
            body = self._render_body(resp, {**vals, **meta}) if resp.body else b""
        header_vals = {k: _header_safe(v) for k, v in vals.items()}
        header_vals.update({k: _header_safe(v) for k, v in meta.items()})
        header_vals["content_length"] = str(len(body))
        lines = [render(sec.status_line, header_vals)]
        lines += [render(line, header_vals) for line in sec.header_sets[resp.headers]]
        head = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1", "replace")
        return head if request.method == "HEAD" else head + body

    def _render_body(self, resp: HTTPResponse, vals: Mapping[str, str]) -> bytes:
        esc = _ESCAPERS[resp.escape]
        escaped = {k: esc(v) for k, v in vals.items()}
        for name, template in self.section.fragments.items():
            escaped[name] = render(template, escaped)
        text = render(resp.body, escaped)
        errors = "replace" if resp.escape == "none" else "xmlcharrefreplace"
        return text.encode(self.section.charset, errors)

    def answer(self, request: Request, ip: str) -> Answer:
        resp, page = self.choose(request)
        data = self.build(resp, request, ip)
        keep = self.section.keep_alive and not resp.close and not request.malformed
        return Answer(data, resp.status, keep, page)


def _standard_reason(status: int) -> str:
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return ""


class EWSHandler:
    """One request's handler for :class:`HTTPServerEngine` (a new one per request)."""

    capture_body = True

    def __init__(self, site: EWSSite, ip: str):
        self.site = site
        self.ip = ip
        self._hash: Any = None

    def begin(self, request: Request) -> list[Output]:
        return []

    def body(self, data: bytes) -> list[Output]:
        if not data:
            return []
        out: list[Output] = []
        if self._hash is None:
            self._hash = hashlib.sha256()
            out.append(CaptureStart("body", {}))
        self._hash.update(data)
        out.append(CaptureData(data))
        return out

    def respond(self, request: Request) -> tuple[list[Output], int, bool, dict[str, Any]]:
        out: list[Output] = []
        extra: dict[str, Any] = {}
        if self._hash is not None:
            out.append(CaptureEnd({}))
            extra["shasum"] = self._hash.hexdigest()
            self._hash = None
        answer = self.site.answer(request, self.ip)
        out.append(Send(answer.data))
        extra["page"] = answer.page
        return out, answer.status, answer.keep_alive, extra


def ews_engine(site: EWSSite, local_ip: str, *, max_body: int = 64 * 2**20) -> HTTPServerEngine:
    """The HTTP engine of one connection to ``site``; ``local_ip`` is the address it reached."""
    ip = _local_ip(local_ip)
    return HTTPServerEngine(lambda: EWSHandler(site, ip), request_event=REQUEST_EVENT, max_body=max_body)
