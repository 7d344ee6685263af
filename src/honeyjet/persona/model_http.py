"""The persona's `[http]` section (file `http.toml` in a persona directory).

A device's embedded web server, written down as data: the exact bytes of its
responses (status line, header lines in their own case and order), the redirect for
``/``, a route table and the error pages. :mod:`honeyjet.protocols.ews` serves it; no
code knows any vendor. Another server family (an HP FutureSmart with its long
``Server: HP HTTP Server; …; Serial Number: ${serial}; …`` header, a Brother
``debut/1.20``, a Lexmark) is another ``http.toml``.

Templates
    Every text below that says *template* is a ``string.Template`` text:
    ``${name}`` is replaced, unknown names stay as written, nothing is evaluated.
    The names available are

    * the device's values (:meth:`honeyjet.persona.device.Device.values`): ``model``,
      ``manufacturer``, ``vendor``, ``product_number``, ``firmware``,
      ``firmware_datecode``, ``ram_bytes``, ``serial``, ``mac``, ``mac_tail``,
      ``hostname``, ``location``, ``contact``, ``pagecount``, ``display`` (the live
      control-panel message, e.g. set by PJL ``RDYMSG``), ``status_code``, ``online``,
      ``state`` (``idle``/``printing``/``offline``), ``uptime_s``, ``uptime_ticks``,
      ``boots``, ``ieee1284_id``, ``network_description``, and per consumable of
      ``[[device.supplies]]`` ``<id>_percent``, ``<id>_pages_left``, ``<id>_pages_used``,
      ``<id>_part``, ``<id>_description``, ``<id>_capacity`` (the same numbers SNMP shows);
    * per request: ``ip`` (the local address the client connected to), ``http_date``
      (now, RFC 1123, GMT), ``mac_hex`` (``001B78419F6E``), ``mac_hex_lower``,
      ``mac_lower`` (``00:1b:78:41:9f:6e``), ``uptime_text`` (``D days HH:MM:SS``),
      ``uptime_days``, ``ram_mb``, ``ip_gateway`` (``a.b.c.1`` of an IPv4 ``ip``),
      ``state_text`` (:attr:`HTTPSection.state_texts` of ``state``),
      ``path`` (the request path as
      sent: attacker text);
    * per response: ``status``, ``reason``, ``version`` (of the status line),
      ``content_type``, ``content_length``, ``location``;
    * the persona's own constants from :attr:`HTTPSection.values`, and (in bodies
      only) the rendered :attr:`HTTPSection.fragments`.

Escaping
    Values inserted into a body are escaped for its :attr:`HTTPResponse.escape` mode
    (``html`` or ``xml``; ``none`` for plain text), because some are attacker text: a
    display message set over PJL, the request path. Fragments are rendered with the
    same escaping and then inserted as they are. Values inserted into header lines
    lose control characters (no CR/LF: no header injection).
"""

from __future__ import annotations

import base64
import binascii
import re
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

_ID = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$"
_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,63}$")
_METHOD = re.compile(r"^[A-Z][A-Z-]{0,31}$")


def _check_methods(methods: list[str]) -> list[str]:
    for m in methods:
        if not _METHOD.match(m):
            raise ValueError(f"method {m!r} must be an upper-case token such as GET")
    return methods


class _M(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class HTTPResponse(_M):
    """One response the server sends: a route's page, a redirect or an error page.

    ``status``/``reason`` make the status line (an empty reason is taken from
    :attr:`HTTPSection.reasons`). ``headers`` names the header set (see
    :attr:`HTTPSection.header_sets`) written, in its order, as the response head;
    ``Content-Length`` is whatever that set says, with ``${content_length}`` the exact
    byte length of the body (also for HEAD, which sends no body). The body is either
    ``body`` (a template, encoded with :attr:`HTTPSection.charset`) or ``body_base64``
    (bytes sent as they are, e.g. a GIF). ``location`` fills ``${location}`` (a
    template, for redirects). ``close`` ends the connection after this response.
    """

    status: int = Field(default=200, ge=100, le=599)
    reason: str = ""
    headers: str = "page"
    content_type: str = "text/html"
    body: str = ""
    body_base64: str = ""
    escape: Literal["html", "xml", "none"] = "html"
    location: str = ""
    close: bool = False

    @field_validator("reason", "content_type", "location")
    @classmethod
    def _one_line(cls, v: str) -> str:
        if "\r" in v or "\n" in v:
            raise ValueError("must be one line (no CR or LF)")
        return v

    @field_validator("body_base64")
    @classmethod
    def _b64(cls, v: str) -> str:
        if v:
            try:
                base64.b64decode("".join(v.split()), validate=True)
            except (binascii.Error, ValueError):
                raise ValueError("is not valid base64") from None
        return v

    @model_validator(mode="after")
    def _one_body(self) -> "HTTPResponse":
        if self.body and self.body_base64:
            raise ValueError("give either body or body_base64, not both")
        return self

    def body_bytes(self) -> bytes | None:
        """The fixed bytes of a ``body_base64`` response (None for a template body)."""
        if not self.body_base64:
            return None
        return base64.b64decode("".join(self.body_base64.split()))


class Route(HTTPResponse):
    """One entry of the route table: which requests it answers, and with what.

    ``path`` is compared with the request path (percent-decoded; case-insensitively
    when :attr:`HTTPSection.case_sensitive_paths` is false). ``query`` lists query
    parameters that must be present with exactly these values (``"*"``: any value);
    an empty ``query`` accepts any query string. Routes are tried in order, the first
    match answers, so a specific ``?nav=…`` route goes before the bare path. ``methods``
    are the methods this route answers (HEAD is allowed wherever GET is); another
    method the server implements gets :attr:`HTTPErrors.method_not_allowed`, or
    :attr:`HTTPErrors.not_implemented` when that is not set. ``id`` names the page in
    the request event (``page``).
    """

    id: str = Field(pattern=_ID)
    path: str = Field(pattern=r"^/[^\s?#]*$")
    query: dict[str, str] = Field(default_factory=dict)
    methods: list[str] = Field(default_factory=lambda: ["GET", "HEAD"])

    _methods = field_validator("methods")(classmethod(lambda cls, v: _check_methods(v)))


class HTTPErrors(_M):
    """The device's own error responses (never a framework's).

    ``not_found`` answers unknown paths (event ``page`` = ``404``); ``bad_request``
    answers what cannot be parsed as HTTP: garbage, TLS handshakes, oversized heads,
    bad ``Content-Length`` (``page`` = ``400``; the connection then closes);
    ``not_implemented`` answers methods the server does not implement (``page`` =
    ``501``); ``method_not_allowed``, when given, answers implemented methods a route
    does not take (``page`` = ``405``).
    """

    not_found: HTTPResponse
    bad_request: HTTPResponse
    not_implemented: HTTPResponse
    method_not_allowed: HTTPResponse | None = None


class HTTPSection(_M):
    """What the embedded web server of this device answers.

    ``server`` is a descriptive label (``HP-ChaiSOE/1.0``); what goes on the wire is
    only what the header sets say. ``response_version`` is the version written in
    every status line; with ``echo_request_version`` the request's own version
    (HTTP/1.0 or HTTP/1.1) is echoed instead. ``status_line`` is a template over
    ``version``, ``status`` and ``reason``. ``methods`` are the methods the server
    implements at all. ``keep_alive`` false closes every connection after one response
    (HTTP/1.0 clients without ``Connection: keep-alive`` are always closed).
    ``charset`` encodes template bodies (characters it cannot hold become numeric
    character references in html/xml, ``?`` otherwise). ``reasons`` maps status codes
    (as strings) to this server's reason phrases. ``header_sets`` maps a name to the
    header lines of a response kind, each a template written exactly as given (case,
    order, odd names such as ChaiSOE's ``-ONNECTION``). ``values`` are persona constants
    for templates (e.g. the JetDirect firmware); a live or per-request value of the same
    name wins. ``fragments`` are named body templates
    (page header, navigation) usable as ``${name}`` in bodies and in later fragments.
    ``state_texts`` words the device state (``idle``, ``printing``,
    ``offline``) as the pages show it (``${state_text}``). ``routes`` is the route table, ``errors`` the error pages.
    """

    server: str = ""
    response_version: Literal["HTTP/1.0", "HTTP/1.1"] = "HTTP/1.1"
    echo_request_version: bool = False
    status_line: str = "${version} ${status} ${reason}"
    methods: list[str] = Field(default_factory=lambda: ["GET", "HEAD", "POST"])
    keep_alive: bool = True
    case_sensitive_paths: bool = True
    charset: str = "iso-8859-1"
    reasons: dict[str, str] = Field(default_factory=dict)
    header_sets: dict[str, list[str]]
    values: dict[str, str] = Field(default_factory=dict)
    fragments: dict[str, str] = Field(default_factory=dict)
    state_texts: dict[str, str] = Field(
        default_factory=lambda: {"idle": "Ready", "printing": "Printing", "offline": "Offline"}
    )
    routes: list[Route] = Field(default_factory=list)
    errors: HTTPErrors

    _methods = field_validator("methods")(classmethod(lambda cls, v: _check_methods(v)))

    @field_validator("reasons")
    @classmethod
    def _reasons(cls, v: dict[str, str]) -> dict[str, str]:
        for code, text in v.items():
            if not re.fullmatch(r"[1-5]\d\d", code):
                raise ValueError(f"reason key {code!r} must be a status code such as \"404\"")
            if "\r" in text or "\n" in text:
                raise ValueError(f"reason for {code} must be one line")
        return v

    @field_validator("header_sets")
    @classmethod
    def _header_sets(cls, v: dict[str, list[str]]) -> dict[str, list[str]]:
        for name, lines in v.items():
            for line in lines:
                if "\r" in line or "\n" in line or not line.strip():
                    raise ValueError(f"header set {name!r}: {line!r} must be one non-empty line")
        return v

    @field_validator("values", "fragments")
    @classmethod
    def _names(cls, v: dict[str, str]) -> dict[str, str]:
        for name in v:
            if not _NAME.match(name):
                raise ValueError(f"{name!r} is not a template name (letters, digits, _)")
        return v

    @field_validator("charset")
    @classmethod
    def _charset(cls, v: str) -> str:
        try:
            "".encode(v)
        except LookupError:
            raise ValueError(f"unknown charset {v!r}") from None
        return v

    @model_validator(mode="after")
    def _references(self) -> "HTTPSection":
        responses: list[tuple[str, HTTPResponse]] = [(f"routes[{r.id}]", r) for r in self.routes]
        for kind in ("not_found", "bad_request", "not_implemented", "method_not_allowed"):
            resp = getattr(self.errors, kind)
            if resp is not None:
                responses.append((f"errors.{kind}", resp))
        for where, resp in responses:
            if resp.headers not in self.header_sets:
                known = ", ".join(sorted(self.header_sets))
                raise ValueError(f"{where}: header set {resp.headers!r} is not defined (known: {known})")
        seen: set[str] = set()
        for r in self.routes:
            if r.id in seen:
                raise ValueError(f"route id {r.id!r} is used twice")
            seen.add(r.id)
        clash = set(self.values) & set(self.fragments)
        if clash:
            raise ValueError(f"{min(clash)!r} is both a value and a fragment")
        return self
