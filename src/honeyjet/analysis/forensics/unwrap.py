"""Peel a captured job down to its page-description bytes (pure, total, bounded).

Layers, outermost first, each recorded in ``wrappers``:

* ``http``: a request captured on a raw port (cross-site printing) or a stored IPP/EWS
  body; framed by :class:`honeyjet.protocols.http.HTTPServerEngine` (Content-Length,
  chunked, truncation); method, target and headers are kept.
* ``ipp``: an ``application/ipp`` body; :func:`honeyjet.protocols.ipp.decode_message`
  splits the attributes from the document.
* ``pjl``: UEL + ``@PJL`` lines (parsed by :mod:`honeyjet.protocols.pjl_grammar`) up to
  ``ENTER LANGUAGE`` or the first non-PJL byte; the PDL runs to the next UEL, and the
  PJL lines after it (``EOJ`` …) are read too. ``FSDOWNLOAD``/``FSAPPEND`` data is
  skipped by its ``SIZE``.

:func:`classify` then names the language of what is left.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from honeyjet.protocols.pjl_grammar import Command, parse_line
from honeyjet.protocols.sniff import sniff

UEL = b"\x1b%-12345X"
WS = b" \t\r\n\x00\x0c\x04"
MAX_PJL_LINE = 8192
MAX_PJL_LINES = 10000
MAX_LIST = 32  # entries of each bounded list in the PJL facts
MAX_COMMANDS = 64
MAX_VALUE = 256  # characters of a recorded value
MAX_HEADERS = 64
MAX_LAYERS = 4

_WITH_OBJECT = frozenset(("SET", "DEFAULT", "INQUIRE", "DINQUIRE", "INFO"))  # recorded with what they name
_HOSTLIKE = re.compile(r"^[A-Za-z0-9](?:[A-Za-z0-9._-]{0,252})$")
_RASTER = (
    (b"RaS2", "pwg"),
    (b"UNIRAST", "urf"),
    (b"\xff\xd8\xff", "jpeg"),
    (b"\x89PNG\r\n\x1a\n", "png"),
    (b"II*\x00", "tiff"),
    (b"MM\x00*", "tiff"),
    (b"GIF87a", "gif"),
    (b"GIF89a", "gif"),
)
_PCL_HINT = re.compile(rb"\x1b(?:E|[&*()][a-z][-+]?\d)")
_ENTER_LANGUAGES = {"POSTSCRIPT": "postscript", "PCL": "pcl5", "PCLXL": "pclxl", "PDF": "pdf"}


def _clip(text: str | None, limit: int = MAX_VALUE) -> str:
    return (text or "")[:limit]


@dataclass
class PJLFacts:
    job_name: str = ""
    user: str = ""
    host: str = ""
    enter_language: str = ""
    copies: int | None = None
    comments: list[str] = field(default_factory=list)
    jobattr: list[str] = field(default_factory=list)
    upgrade_size: int | None = None
    commands: list[str] = field(default_factory=list)
    command_count: int = 0
    display: list[str] = field(default_factory=list)  # RDYMSG/OPMSG/STMSG texts
    files: list[str] = field(default_factory=list)  # NAME= of FS* commands
    _users: dict[str, str] = field(default_factory=dict, repr=False)

    def to_dict(self) -> dict[str, Any]:
        return {
            "job_name": self.job_name,
            "user": self.user,
            "host": self.host,
            "enter_language": self.enter_language,
            "copies": self.copies,
            "comments": self.comments,
            "jobattr": self.jobattr,
            "upgrade_size": self.upgrade_size,
            "commands": self.commands,
            "command_count": self.command_count,
            "display": self.display,
            "files": self.files,
        }

    def add(self, cmd: Command) -> None:
        self.command_count += 1
        verb = cmd.command[:32]
        if len(self.commands) < MAX_COMMANDS:
            what = cmd.words[0].upper() if cmd.words else (cmd.options[0].key if cmd.options else "")
            self.commands.append(f"{verb} {what}"[:64] if verb in _WITH_OBJECT and what else verb)
        handler = getattr(self, f"_cmd_{verb.lower()}", None) if verb.isalpha() else None
        if handler is not None:
            handler(cmd)
        name = cmd.value("NAME")
        if verb.startswith("FS") and name and len(self.files) < MAX_LIST:
            self.files.append(_clip(name))

    # -- per command ----------------------------------------------------------------------
    def _cmd_job(self, cmd: Command) -> None:
        if cmd.value("NAME") and not self.job_name:
            self.job_name = _clip(cmd.value("NAME"))

    def _cmd_enter(self, cmd: Command) -> None:
        self.enter_language = _clip((cmd.value("LANGUAGE") or "").upper(), 32)

    def _cmd_comment(self, cmd: Command) -> None:
        if len(self.comments) < MAX_LIST:
            self.comments.append(_clip(cmd.rest))
        low = cmd.rest.lower()
        if "username:" in low:
            user = cmd.rest[low.index("username:") + 9 :].split(";")[0].strip().strip('"')
            self._users.setdefault("comment", _clip(user, 128))
        if "app filename:" in low and not self.job_name:
            self.job_name = _clip(cmd.rest[low.index("app filename:") + 13 :].split(";")[0].strip().strip('"'))

    def _cmd_upgrade(self, cmd: Command) -> None:
        size = cmd.value("SIZE")
        if size and size.isdigit() and len(size) < 16:
            self.upgrade_size = int(size)

    def _cmd_rdymsg(self, cmd: Command) -> None:
        if cmd.value("DISPLAY") is not None and len(self.display) < MAX_LIST:
            self.display.append(_clip(cmd.value("DISPLAY")))

    _cmd_opmsg = _cmd_stmsg = _cmd_rdymsg

    def _cmd_set(self, cmd: Command) -> None:
        for opt in cmd.options:
            value = opt.value or ""
            if opt.key == "USERNAME" and value:
                self._users.setdefault("username", _clip(value, 128))
            elif opt.key == "JOBNAME" and value and not self.job_name:
                self.job_name = _clip(value)
            elif opt.key in ("COPIES", "QTY") and value.isdigit() and len(value) < 10:
                self.copies = int(value)
            elif opt.key == "JOBATTR":
                self._jobattr(value)

    def _jobattr(self, value: str) -> None:
        if len(self.jobattr) < MAX_LIST:
            self.jobattr.append(_clip(value))
        key, sep, val = value.partition("=")
        if not sep or not val.strip():
            return
        key, val = key.strip().lower(), val.strip()
        if key in ("jobacct1", "@user", "@usr"):
            self._users.setdefault("jobattr", _clip(val, 128))
        elif key in ("jobacct2", "jobacct3", "@host", "@hostname") and not self.host and _HOSTLIKE.match(val):
            self.host = _clip(val, 253)

    def finish(self) -> None:
        for source in ("username", "jobattr", "comment"):
            if self._users.get(source):
                self.user = self._users[source]
                break


@dataclass
class Unwrapped:
    payload: bytes
    offset: int  # where the payload starts in the input (-1: not a contiguous slice)
    wrappers: list[str] = field(default_factory=list)
    pjl: PJLFacts | None = None
    http: dict[str, Any] = field(default_factory=dict)
    ipp: dict[str, Any] = field(default_factory=dict)
    errors: list[str] = field(default_factory=list)
    segments: int = 0  # PDL segments after PJL (only the first is the payload)


def _pjl_line(data: bytes, pos: int) -> tuple[bytes, int, bool]:
    """The PJL line at ``pos`` (without CR/LF), where the next one starts, truncated?"""
    limit = min(len(data), pos + MAX_PJL_LINE)
    nl = data.find(b"\n", pos, limit)
    uel = data.find(UEL, pos, limit)
    if uel != -1 and (nl == -1 or uel < nl):
        return data[pos:uel], uel, False  # a UEL inside the line ends it
    if nl == -1:
        if limit == len(data):
            return data[pos:limit], limit, False
        nl = data.find(b"\n", limit)  # over-long: recorded cut, the rest skipped
        return data[pos:limit], (len(data) if nl == -1 else nl + 1), True
    return data[pos:nl].rstrip(b"\r"), nl + 1, False


def _read_pjl(data: bytes, pos: int, facts: PJLFacts, budget: list[int]) -> tuple[int, bool]:
    """Read UELs and PJL lines from ``pos``; returns (end, saw anything)."""
    n = len(data)
    seen = False
    while pos < n and budget[0] > 0:
        start = pos
        while pos < n and data[pos] in WS:
            pos += 1
        if data.startswith(UEL, pos):
            pos += len(UEL)
            seen = True
            continue
        if not data.startswith(b"@PJL", pos):
            return (pos if seen else start), seen
        budget[0] -= 1
        line, pos, truncated = _pjl_line(data, pos)
        cmd = parse_line(line, truncated=truncated)
        if cmd is None:  # "@PJLx…": not PJL
            return start, seen
        seen = True
        facts.add(cmd)
        if cmd.command == "ENTER":
            return pos, seen
        if cmd.command in ("FSDOWNLOAD", "FSAPPEND"):
            size = cmd.value("SIZE") or ""
            if size.isdigit() and len(size) < 16:
                pos = min(n, pos + int(size))
    return pos, seen


def unwrap_pjl(data: bytes) -> tuple[PJLFacts | None, int, int, int]:
    """(facts or None when there is no PJL, payload start, payload end, further segments)."""
    facts = PJLFacts()
    budget = [MAX_PJL_LINES]
    start, seen = _read_pjl(data, 0, facts, budget)
    if not seen:
        return None, 0, len(data), 0
    end = data.find(UEL, start)
    if end == -1:
        end = len(data)
    segments = 0
    pos = end
    while pos < len(data) and budget[0] > 0:
        pos, _ = _read_pjl(data, pos, facts, budget)
        if pos >= len(data):
            break
        nxt = data.find(UEL, pos)
        if data[pos:nxt if nxt != -1 else len(data)].strip(WS):
            segments += 1
        if nxt == -1:
            break
        pos = nxt
    facts.finish()
    return facts, start, end, segments


class _Collect:
    """A handler for :class:`HTTPServerEngine` that keeps the first request and its body."""

    capture_body = False

    def __init__(self, sink: dict[str, Any], max_body: int):
        self.sink = sink
        self.max_body = max_body

    def begin(self, request: Any) -> list[Any]:
        self.sink.setdefault("request", request)
        return []

    def body(self, data: bytes) -> list[Any]:
        buf = self.sink.setdefault("body", bytearray())
        if len(buf) < self.max_body:
            buf += data[: self.max_body - len(buf)]
        return []

    def respond(self, request: Any) -> tuple[list[Any], int, bool]:
        self.sink.setdefault("request", request)
        self.sink["done"] = True
        return [], 200, False


def unwrap_http(data: bytes, max_body: int) -> tuple[dict[str, Any], bytes, int, str]:
    """(http facts, body, body offset or -1, error)."""
    from honeyjet.protocols.http import HTTPServerEngine

    sink: dict[str, Any] = {}
    engine = HTTPServerEngine(lambda: _Collect(sink, max_body), max_body=max_body)
    engine.feed(data)
    engine.eof()
    req = sink.get("request")
    if req is None:
        return {}, b"", -1, "http: no request head"
    facts: dict[str, Any] = {
        "method": _clip(req.method, 32),
        "target": _clip(req.target, 1024),
        "version": _clip(req.version, 16),
        "headers": [[_clip(k, 128), _clip(v, 512)] for k, v in req.headers[:MAX_HEADERS]],
        "body_size": req.body_size,
        "body_truncated": bool(req.body_truncated),
    }
    for name in ("Host", "Origin", "Referer", "User-Agent", "Content-Type"):
        value = req.header(name)
        if value is not None:
            facts[name.lower().replace("-", "_")] = _clip(value, 512)
    error = ""
    body = bytes(sink.get("body", b""))
    offset = -1
    if req.malformed:
        error = f"http: malformed request ({req.malformed})"
        facts["malformed"] = req.malformed
        m = re.search(rb"\r?\n\r?\n", data[:65536])
        if m is not None:  # take what follows the head as the body anyway
            offset = m.end()
            body = data[offset : offset + max_body]
    elif (req.header("Transfer-Encoding") or "").lower() != "chunked":
        at = data.find(req.raw_head)
        offset = -1 if at == -1 else at + len(req.raw_head)
    return facts, body, offset, error


def _looks_ipp(body: bytes, content_type: str) -> bool:
    if content_type.lower().startswith("application/ipp"):
        return True
    return len(body) >= 9 and body[0] in (1, 2) and body[1] <= 2 and body[2:4] in (b"\x00\x02", b"\x00\x06") and body[8] == 1


def unwrap_ipp(body: bytes) -> tuple[dict[str, Any], bytes, str]:
    from honeyjet.protocols.ipp import attributes_for_event, decode_message, operation_name

    decoded = decode_message(body, max_bytes=1 << 20)
    msg = decoded.message
    facts: dict[str, Any] = {}
    if msg is not None:
        facts = {
            "version": f"{msg.version[0]}.{msg.version[1]}",
            "operation": operation_name(msg.code),
            "request_id": msg.request_id,
            "attributes": attributes_for_event(msg, MAX_LIST),
        }
        for name in ("requesting-user-name", "job-name", "document-format", "document-name"):
            attr = msg.get(name)
            if attr is not None and attr.values:
                facts[name.replace("-", "_")] = _clip(str(attr.values[0].value))
    return facts, decoded.document, (f"ipp: {decoded.error}" if decoded.error else "")


def unwrap(data: bytes, *, max_body: int = 16 << 20) -> Unwrapped:
    """Remove HTTP, IPP and PJL layers (in whatever nesting, at most MAX_LAYERS)."""
    out = Unwrapped(payload=data, offset=0)
    for _ in range(MAX_LAYERS):
        payload = out.payload
        if sniff(payload[:4096]) == "http" and "http" not in out.wrappers:
            facts, body, offset, error = unwrap_http(payload, max_body)
            if not facts:
                break
            out.wrappers.append("http")
            out.http = facts
            if error:
                out.errors.append(error)
            out.offset = out.offset + offset if offset >= 0 and out.offset >= 0 else -1
            out.payload = body
            if _looks_ipp(body, facts.get("content_type", "")):
                ipp, document, ipp_error = unwrap_ipp(body)
                out.wrappers.append("ipp")
                out.ipp = ipp
                if ipp_error:
                    out.errors.append(ipp_error)
                out.offset = -1 if out.offset < 0 else out.offset + len(body) - len(document)
                out.payload = document
            continue
        if out.pjl is None:
            facts_pjl, start, end, segments = unwrap_pjl(payload)
            if facts_pjl is not None:
                out.wrappers.append("pjl")
                out.pjl = facts_pjl
                out.segments = segments
                out.offset = out.offset + start if out.offset >= 0 else -1
                out.payload = payload[start:end]
                continue
        break
    return out


def raster_kind(head: bytes) -> str:
    for magic, kind in _RASTER:
        if head.startswith(magic):
            return kind
    return ""


def classify(payload: bytes, enter_language: str = "", *, had_pjl: bool = False) -> str:
    """The language of the (unwrapped) payload: one of ``pjl``, ``postscript``, ``pcl5``,
    ``pclxl``, ``pdf``, ``text``, ``raster``, ``html``, ``binary``, ``empty``."""
    stripped = payload[:65536].lstrip(WS)
    if not stripped:
        return "pjl" if had_pjl else "empty"
    if raster_kind(stripped):
        return "raster"
    kind = sniff(stripped[:4096])
    declared = _ENTER_LANGUAGES.get(enter_language.upper(), "")
    if kind == "pdf" or b"%PDF-" in stripped[:1024]:
        return "pdf"
    if kind == "postscript" or stripped[:1024].find(b"%!PS-Adobe") != -1:
        return "postscript"
    if kind == "pclxl":
        return "pclxl"
    if kind == "pjl":
        return "pjl"
    if kind == "pcl":
        return "pcl5"
    if payload[:2] in (b"\xff\xfe", b"\xfe\xff"):
        return "text"  # UTF-16 with a byte-order mark
    if declared in ("pcl5", "postscript", "pclxl"):
        return declared
    if kind == "text":
        low = stripped[:1024].lower()
        if low.startswith((b"<!doctype html", b"<html")) or b"<html" in low or b"<body" in low:
            return "html"
        if _PCL_HINT.search(stripped):
            return "pcl5"
        return "text"
    return "binary"
