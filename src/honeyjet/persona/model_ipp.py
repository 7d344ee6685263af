"""The persona's `[ipp]` section (file `ipp.toml` in a persona directory).

Everything the IPP service on port 631 says is data here: the printer's attributes
(with ``${placeholders}`` for identity and live state), the HTTP replies around them,
the URI paths it answers on and its bounds. What the printer *supports* is read from
its own attributes, so the answers and the behaviour cannot disagree:
``ipp-versions-supported`` decides which request versions are served,
``operations-supported`` which operations are (anything else, CUPS-Get-Printers
included, gets server-error-operation-not-supported), ``document-format-supported``,
``charset-supported`` and ``compression-supported`` what a job may declare.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator


class _M(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


ValueType = Literal[
    "integer",
    "boolean",
    "enum",
    "octetString",
    "dateTime",
    "resolution",
    "rangeOfInteger",
    "collection",
    "textWithLanguage",
    "nameWithLanguage",
    "text",
    "name",
    "keyword",
    "uri",
    "uriScheme",
    "charset",
    "naturalLanguage",
    "mimeMediaType",
    "no-value",
    "unknown",
    "unsupported",
]

_STRING_TYPES = {"text", "name", "keyword", "uri", "uriScheme", "charset", "naturalLanguage", "mimeMediaType", "octetString"}
_OUT_OF_BAND = {"no-value", "unknown", "unsupported"}


class CollectionValue(_M):
    """One value of a ``collection`` attribute: its member attributes, in order."""

    members: list[AttributeSpec] = Field(min_length=1)


class AttributeSpec(_M):
    """One printer attribute.

    ``values`` by type: integer/enum: numbers or a template that renders to one
    (``"${printer_up_time}"``); boolean: true/false or a template rendering to
    ``true``/``false``; string types: templates; resolution: ``[x, y, "dpi"|"dpcm"]``;
    rangeOfInteger: ``[lower, upper]``; dateTime: ``"now"`` (the device clock);
    textWithLanguage/nameWithLanguage: ``[language, text]``; collection:
    ``{members = [...]}``; no-value/unknown/unsupported: no values (one out-of-band value).
    ``split``: a rendered string value is split on commas into several values (for live
    multi-valued attributes such as printer-state-reasons). ``template``: a job-template
    attribute (``*-default``/``*-supported``), returned for requested-attributes
    ``job-template`` and not for ``printer-description``.
    """

    name: str = Field(min_length=1, max_length=255)
    type: ValueType
    values: list[Any] = Field(default_factory=list)
    split: bool = False
    template: bool = False

    @model_validator(mode="after")
    def _values_fit_type(self) -> AttributeSpec:
        t, vals = self.type, self.values
        if t in _OUT_OF_BAND:
            if vals:
                raise ValueError(f"attribute {self.name}: {t} takes no values")
            return self
        if not vals:
            raise ValueError(f"attribute {self.name}: needs at least one value")
        for v in vals:
            ok = True
            if t in ("integer", "enum"):
                ok = (isinstance(v, int) and not isinstance(v, bool)) or (isinstance(v, str) and "${" in v)
            elif t == "boolean":
                ok = isinstance(v, bool) or (isinstance(v, str) and "${" in v)
            elif t in _STRING_TYPES:
                ok = isinstance(v, str)
            elif t == "dateTime":
                ok = v == "now"
            elif t == "resolution":
                ok = (
                    isinstance(v, list)
                    and len(v) == 3
                    and all(isinstance(n, int) and not isinstance(n, bool) and n > 0 for n in v[:2])
                    and v[2] in ("dpi", "dpcm")
                )
            elif t == "rangeOfInteger":
                ok = (
                    isinstance(v, list)
                    and len(v) == 2
                    and all(isinstance(n, int) and not isinstance(n, bool) for n in v)
                    and v[0] <= v[1]
                )
            elif t in ("textWithLanguage", "nameWithLanguage"):
                ok = isinstance(v, list) and len(v) == 2 and all(isinstance(s, str) for s in v)
            elif t == "collection":
                if isinstance(v, dict):
                    CollectionValue.model_validate(v)  # raises with the member's problem
                ok = isinstance(v, (dict, CollectionValue))
            if not ok:
                raise ValueError(f"attribute {self.name}: value {v!r} does not fit type {t}")
        return self

    def collection_values(self) -> list[CollectionValue]:
        return [v if isinstance(v, CollectionValue) else CollectionValue.model_validate(v) for v in self.values]


class HTTPReply(_M):
    """An HTTP reply written byte for byte: status line text, headers in order, body.

    Header values and the body are templates. ``Content-Length`` is added after the
    listed headers (it must not be listed).
    """

    status: str = "200 OK"
    headers: list[tuple[str, str]] = Field(default_factory=list)
    body: str = ""

    @model_validator(mode="after")
    def _no_length(self) -> HTTPReply:
        if any(k.lower() == "content-length" for k, _ in self.headers):
            raise ValueError("Content-Length is computed; do not list it")
        return self


class StateReasons(_M):
    """printer-state-reasons for each device state (see Device.state_name())."""

    idle: list[str] = Field(default_factory=lambda: ["none"], min_length=1)
    printing: list[str] = Field(default_factory=lambda: ["none"], min_length=1)
    offline: list[str] = Field(default_factory=lambda: ["paused"], min_length=1)


_REQUIRED = (
    "ipp-versions-supported",
    "operations-supported",
    "document-format-supported",
    "charset-supported",
    "compression-supported",
)

# The minimum ipp-1.1.test requires; used when a persona has no [ipp] section.
DEFAULT_PRINTER_ATTRIBUTES: list[dict[str, Any]] = [
    {"name": "printer-uri-supported", "type": "uri", "values": ["${printer_uri}"]},
    {"name": "uri-authentication-supported", "type": "keyword", "values": ["none"]},
    {"name": "uri-security-supported", "type": "keyword", "values": ["none"]},
    {"name": "printer-name", "type": "name", "values": ["${hostname}"]},
    {"name": "printer-make-and-model", "type": "text", "values": ["${model}"]},
    {"name": "printer-device-id", "type": "text", "values": ["${ieee1284_id}"]},
    {"name": "printer-state", "type": "enum", "values": ["${printer_state}"]},
    {"name": "printer-state-reasons", "type": "keyword", "values": ["${printer_state_reasons}"], "split": True},
    {"name": "printer-state-message", "type": "text", "values": ["${printer_state_message}"]},
    {"name": "operations-supported", "type": "enum", "values": [2, 4, 8, 9, 10, 11]},
    {"name": "charset-configured", "type": "charset", "values": ["utf-8"]},
    {"name": "charset-supported", "type": "charset", "values": ["utf-8"]},
    {"name": "natural-language-configured", "type": "naturalLanguage", "values": ["en"]},
    {"name": "generated-natural-language-supported", "type": "naturalLanguage", "values": ["en"]},
    {"name": "document-format-default", "type": "mimeMediaType", "values": ["application/octet-stream"]},
    {"name": "document-format-supported", "type": "mimeMediaType", "values": ["application/octet-stream"]},
    {"name": "printer-is-accepting-jobs", "type": "boolean", "values": [True]},
    {"name": "queued-job-count", "type": "integer", "values": ["${queued_job_count}"]},
    {"name": "pdl-override-supported", "type": "keyword", "values": ["not-attempted"]},
    {"name": "printer-up-time", "type": "integer", "values": ["${printer_up_time}"]},
    {"name": "compression-supported", "type": "keyword", "values": ["none"]},
    {"name": "ipp-versions-supported", "type": "keyword", "values": ["1.0", "1.1"]},
]


class IPPSection(_M):
    """What the IPP service of this device answers."""

    # the printer's own URI (job-printer-uri, the base of job-uri); ${host} and
    # ${port_suffix} are the address and port the client connected to
    printer_uri: str = "ipp://${host}${port_suffix}/ipp"
    # job-uri of job ${job_id}
    job_uri: str = "${printer_uri}/${job_id}"
    # HTTP request paths answered as the printer; IPP requests to any other path get
    # HTTP 200 with client-error-not-found (one rule, always the same)
    paths: list[str] = Field(default_factory=lambda: ["/ipp", "/ipp/", "/"], min_length=1)
    # value of ${server} in the reply templates
    server: str = ""
    natural_language: str = "en"
    # bytes of IPP attributes before the document; beyond: client-error-request-entity-too-large
    max_request_bytes: int = Field(default=65536, ge=1024, le=1 << 24)
    # seconds a Create-Job job waits for its document before it is aborted
    multiple_operation_timeout: float = Field(default=120.0, gt=0)
    # Create-Job jobs waiting for a document at once; more: server-error-busy
    max_pending_jobs: int = Field(default=16, ge=1, le=1024)
    # finished jobs Get-Jobs lists (newest first); only jobs since the last boot are known
    job_history: int = Field(default=32, ge=0, le=200)
    state_reasons: StateReasons = StateReasons()
    # HTTP around an IPP answer (status is always 200: RFC 8010 §3.4.3)
    ipp_reply: HTTPReply = HTTPReply(headers=[("Content-Type", "application/ipp")])
    # any request on the port that is not IPP (GET /, OPTIONS, a browser, …)
    web_reply: HTTPReply = HTTPReply(status="404 Not Found", headers=[("Content-Type", "text/html")], body="Not Found")
    # unparseable HTTP
    bad_request_reply: HTTPReply = HTTPReply(status="400 Bad Request", headers=[("Content-Type", "text/html")], body="Bad Request")
    printer_attributes: list[AttributeSpec] = Field(
        default_factory=lambda: [AttributeSpec.model_validate(a) for a in DEFAULT_PRINTER_ATTRIBUTES]
    )

    @model_validator(mode="after")
    def _consistent(self) -> IPPSection:
        names = [a.name for a in self.printer_attributes]
        dupes = {n for n in names if names.count(n) > 1}
        if dupes:
            raise ValueError(f"printer attribute(s) listed twice: {', '.join(sorted(dupes))}")
        for required in _REQUIRED:
            if required not in names:
                raise ValueError(f"printer_attributes must include {required} (the service reads what it supports from it)")
        for p in self.paths:
            if not p.startswith("/"):
                raise ValueError(f"path {p!r} must start with '/'")
        by_name = {a.name: a for a in self.printer_attributes}
        for v in by_name["ipp-versions-supported"].values:
            parts = str(v).split(".")
            if len(parts) != 2 or not all(p.isdigit() for p in parts):
                raise ValueError(f"ipp-versions-supported value {v!r} must look like 1.1")
        for v in by_name["operations-supported"].values:
            if not isinstance(v, int):
                raise ValueError("operations-supported values must be numbers (0x0002 = Print-Job, …)")
        return self

    def attribute(self, name: str) -> AttributeSpec | None:
        for a in self.printer_attributes:
            if a.name == name:
                return a
        return None


CollectionValue.model_rebuild()
