"""IPP on port 631 (RFC 8010 encoding, RFC 8011 model), sans-IO.

Four layers, each usable alone:

* **Codec.** :class:`Message` / :class:`Group` / :class:`Attribute` / :class:`Value`;
  :func:`encode_message` writes every value tag (collections, ranges, resolutions,
  dateTime, strings with language, out-of-band, extension tags as raw bytes);
  :class:`Decoder` reads a request incrementally (any chunking, one byte at a time
  works), never raises, and stops at an explicit byte bound. What follows the
  end-of-attributes tag is the document and is handed back, never buffered.
* **The printer.** :class:`IPPPrinter` (one per device, shared by every connection):
  printer attributes rendered from the persona's ``[ipp]`` section and live device
  state, jobs made by Create-Job waiting for their document, and job views of the
  device job log (so 9100 and LPD jobs are listed too, with their names and users).
* **One request.** :class:`IPPRequestHandler` is the :mod:`protocols.http` request
  handler: it decodes the attributes as the body streams in, checks them in RFC 8011
  order, streams a Print-Job/Send-Document document into a :class:`JobCapture`, and
  writes the reply (always HTTP 200 for an IPP answer).
* **The connection.** :class:`IPPEngine` is :class:`HTTPServerEngine` with these
  handlers; their IPP fields (operation, status, attributes, …) go into its
  ``honeyjet.ipp.request`` event, whose sentence names the operation and the status.

``printer-uri``, ``document-uri`` and every other URI a client sends are recorded,
never fetched: Print-URI and Send-URI are not offered.
"""

from __future__ import annotations

import re
import struct
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, NamedTuple

from honeyjet.persona.device import Device
from honeyjet.persona.model import render
from honeyjet.persona.model_ipp import (
    AttributeSpec,
    CollectionValue,
    HTTPReply,
    IPPSection,
)
from honeyjet.protocols.http import HTTPServerEngine, Request
from honeyjet.protocols.jobs import JobCapture
from honeyjet.protocols.outputs import Emit, Output, Send
from honeyjet.text import escape

REQUEST_EVENT = "honeyjet.ipp.request"

# ---------------------------------------------------------------------------------------------
# tags, codes, names
# ---------------------------------------------------------------------------------------------

TAG_OPERATION, TAG_JOB, TAG_END, TAG_PRINTER, TAG_UNSUPPORTED_GROUP = 0x01, 0x02, 0x03, 0x04, 0x05
GROUP_NAMES = {
    0x01: "operation",
    0x02: "job",
    0x04: "printer",
    0x05: "unsupported",
    0x06: "subscription",
    0x07: "event-notification",
    0x08: "resource",
    0x09: "document",
    0x0A: "system",
}

# value tags
UNSUPPORTED, UNKNOWN, NO_VALUE = 0x10, 0x12, 0x13
INTEGER, BOOLEAN, ENUM = 0x21, 0x22, 0x23
OCTET_STRING, DATETIME, RESOLUTION, RANGE, BEG_COLLECTION = 0x30, 0x31, 0x32, 0x33, 0x34
TEXT_LANG, NAME_LANG, END_COLLECTION = 0x35, 0x36, 0x37
TEXT, NAME, KEYWORD, URI, URI_SCHEME, CHARSET, LANGUAGE, MIME, MEMBER_NAME = (
    0x41, 0x42, 0x44, 0x45, 0x46, 0x47, 0x48, 0x49, 0x4A,
)
EXTENSION = 0x7F

TYPE_TAGS = {
    "integer": INTEGER,
    "boolean": BOOLEAN,
    "enum": ENUM,
    "octetString": OCTET_STRING,
    "dateTime": DATETIME,
    "resolution": RESOLUTION,
    "rangeOfInteger": RANGE,
    "collection": BEG_COLLECTION,
    "textWithLanguage": TEXT_LANG,
    "nameWithLanguage": NAME_LANG,
    "text": TEXT,
    "name": NAME,
    "keyword": KEYWORD,
    "uri": URI,
    "uriScheme": URI_SCHEME,
    "charset": CHARSET,
    "naturalLanguage": LANGUAGE,
    "mimeMediaType": MIME,
    "no-value": NO_VALUE,
    "unknown": UNKNOWN,
    "unsupported": UNSUPPORTED,
}
_OOB_NAMES = {0x10: "unsupported", 0x11: "default", 0x12: "unknown", 0x13: "no-value", 0x15: "not-settable",
              0x16: "delete-attribute", 0x17: "admin-define"}

OPERATIONS = {
    0x0002: "Print-Job", 0x0003: "Print-URI", 0x0004: "Validate-Job", 0x0005: "Create-Job",
    0x0006: "Send-Document", 0x0007: "Send-URI", 0x0008: "Cancel-Job", 0x0009: "Get-Job-Attributes",
    0x000A: "Get-Jobs", 0x000B: "Get-Printer-Attributes", 0x000C: "Hold-Job", 0x000D: "Release-Job",
    0x000E: "Restart-Job", 0x0010: "Pause-Printer", 0x0011: "Resume-Printer", 0x0012: "Purge-Jobs",
    0x0013: "Set-Printer-Attributes", 0x0014: "Set-Job-Attributes", 0x0015: "Get-Printer-Supported-Values",
    0x0016: "Create-Printer-Subscriptions", 0x0017: "Create-Job-Subscriptions",
    0x0018: "Get-Subscription-Attributes", 0x0019: "Get-Subscriptions", 0x001A: "Renew-Subscription",
    0x001B: "Cancel-Subscription", 0x001C: "Get-Notifications", 0x0022: "Enable-Printer",
    0x0023: "Disable-Printer", 0x0024: "Pause-Printer-After-Current-Job", 0x0025: "Hold-New-Jobs",
    0x0026: "Release-Held-New-Jobs", 0x0027: "Deactivate-Printer", 0x0028: "Activate-Printer",
    0x0029: "Restart-Printer", 0x002A: "Shutdown-Printer", 0x002B: "Startup-Printer",
    0x002C: "Reprocess-Job", 0x002D: "Cancel-Current-Job", 0x002E: "Suspend-Current-Job",
    0x002F: "Resume-Job", 0x0030: "Promote-Job", 0x0031: "Schedule-Job-After", 0x0033: "Cancel-Document",
    0x0034: "Get-Document-Attributes", 0x0035: "Get-Documents", 0x0036: "Delete-Document",
    0x0037: "Set-Document-Attributes", 0x0038: "Cancel-Jobs", 0x0039: "Cancel-My-Jobs",
    0x003A: "Resubmit-Job", 0x003B: "Close-Job", 0x003C: "Identify-Printer", 0x003D: "Validate-Document",
    0x4001: "CUPS-Get-Default", 0x4002: "CUPS-Get-Printers", 0x4003: "CUPS-Add-Modify-Printer",
    0x4004: "CUPS-Delete-Printer", 0x4005: "CUPS-Get-Classes", 0x4006: "CUPS-Add-Modify-Class",
    0x4007: "CUPS-Delete-Class", 0x4008: "CUPS-Accept-Jobs", 0x4009: "CUPS-Reject-Jobs",
    0x400A: "CUPS-Set-Default", 0x400B: "CUPS-Get-Devices", 0x400C: "CUPS-Get-PPDs",
    0x400D: "CUPS-Move-Job", 0x400E: "CUPS-Authenticate-Job", 0x400F: "CUPS-Get-PPD",
    0x4027: "CUPS-Get-Document", 0x4028: "CUPS-Create-Local-Printer",
}
PRINT_JOB, VALIDATE_JOB, CREATE_JOB, SEND_DOCUMENT = 0x0002, 0x0004, 0x0005, 0x0006
CANCEL_JOB, GET_JOB_ATTRIBUTES, GET_JOBS, GET_PRINTER_ATTRIBUTES = 0x0008, 0x0009, 0x000A, 0x000B

STATUS = {
    0x0000: "successful-ok",
    0x0001: "successful-ok-ignored-or-substituted-attributes",
    0x0002: "successful-ok-conflicting-attributes",
    0x0400: "client-error-bad-request",
    0x0401: "client-error-forbidden",
    0x0402: "client-error-not-authenticated",
    0x0403: "client-error-not-authorized",
    0x0404: "client-error-not-possible",
    0x0405: "client-error-timeout",
    0x0406: "client-error-not-found",
    0x0407: "client-error-gone",
    0x0408: "client-error-request-entity-too-large",
    0x0409: "client-error-request-value-too-long",
    0x040A: "client-error-document-format-not-supported",
    0x040B: "client-error-attributes-or-values-not-supported",
    0x040C: "client-error-uri-scheme-not-supported",
    0x040D: "client-error-charset-not-supported",
    0x040E: "client-error-conflicting-attributes",
    0x040F: "client-error-compression-not-supported",
    0x0410: "client-error-compression-error",
    0x0411: "client-error-document-format-error",
    0x0412: "client-error-document-access-error",
    0x0500: "server-error-internal-error",
    0x0501: "server-error-operation-not-supported",
    0x0502: "server-error-service-unavailable",
    0x0503: "server-error-version-not-supported",
    0x0504: "server-error-device-error",
    0x0505: "server-error-temporary-error",
    0x0506: "server-error-not-accepting-jobs",
    0x0507: "server-error-busy",
    0x0508: "server-error-job-canceled",
    0x0509: "server-error-multiple-document-jobs-not-supported",
}
OK = 0x0000
BAD_REQUEST, NOT_POSSIBLE, NOT_FOUND, TOO_LARGE = 0x0400, 0x0404, 0x0406, 0x0408
FORMAT_NOT_SUPPORTED, VALUES_NOT_SUPPORTED, CHARSET_NOT_SUPPORTED, COMPRESSION_NOT_SUPPORTED = 0x040A, 0x040B, 0x040D, 0x040F
OPERATION_NOT_SUPPORTED, VERSION_NOT_SUPPORTED, BUSY, MULTIPLE_DOCUMENTS = 0x0501, 0x0503, 0x0507, 0x0509

# job states (RFC 8011 §5.3.7) and printer states (§5.4.11)
PENDING, PROCESSING, CANCELED, ABORTED, COMPLETED = 3, 5, 7, 8, 9
TERMINAL = {CANCELED, ABORTED, COMPLETED}
PRINTER_STATES = {"idle": 3, "printing": 4, "offline": 5}

# seconds without a byte after which a document still "arriving" is taken for dead
# (longer than any session's idle timeout, which would have ended it properly)
STALE_STREAM = 600.0

# what a declared document-format means for the capture ("" = sniff the bytes)
FORMAT_LANGUAGES = {
    "application/postscript": "postscript",
    "application/vnd.hp-pcl": "pcl",
    "application/vnd.hp-pclxl": "pclxl",
    "application/pdf": "pdf",
    "text/plain": "text",
    "application/octet-stream": "",
}


def operation_name(op: int) -> str:
    return OPERATIONS.get(op, f"0x{op:04x}")


def status_name(code: int) -> str:
    return STATUS.get(code, f"0x{code:04x}")


# ---------------------------------------------------------------------------------------------
# codec: values
# ---------------------------------------------------------------------------------------------


class Resolution(NamedTuple):
    x: int
    y: int
    units: int  # 3 = dots per inch, 4 = dots per cm


class Range(NamedTuple):
    lower: int
    upper: int


class DateTime(NamedTuple):
    """RFC 2579 DateAndTime, field for field (so any 11 bytes round-trip)."""

    year: int
    month: int
    day: int
    hour: int
    minute: int
    second: int
    decisecond: int
    direction: str  # "+" or "-" from UTC
    utc_hours: int
    utc_minutes: int

    @classmethod
    def from_timestamp(cls, ts: float) -> DateTime:
        d = datetime.fromtimestamp(ts, UTC)
        return cls(d.year, d.month, d.day, d.hour, d.minute, d.second, d.microsecond // 100000, "+", 0, 0)

    def __str__(self) -> str:
        return (
            f"{self.year:04d}-{self.month:02d}-{self.day:02d}T{self.hour:02d}:{self.minute:02d}:{self.second:02d}"
            f".{self.decisecond}{escape(self.direction, 1)}{self.utc_hours:02d}{self.utc_minutes:02d}"
        )


class StringWithLanguage(NamedTuple):
    language: str
    text: str


class Value(NamedTuple):
    """One attribute value: the value tag and its Python form.

    integer/enum: int; boolean: bool; dateTime: DateTime; resolution: Resolution;
    rangeOfInteger: Range; text/nameWithLanguage: StringWithLanguage; string tags
    (0x40-0x5f): str (UTF-8, undecodable bytes kept as surrogates so they round-trip);
    begCollection: list[Attribute] (the members); everything else (octetString,
    out-of-band, unassigned and extension tags): bytes.
    """

    tag: int
    value: Any


@dataclass
class Attribute:
    name: str
    values: list[Value]


@dataclass
class Group:
    tag: int
    attributes: list[Attribute] = field(default_factory=list)

    def get(self, name: str) -> Attribute | None:
        for a in self.attributes:
            if a.name == name:
                return a
        return None


@dataclass
class Message:
    version: tuple[int, int]
    code: int  # operation-id in a request, status-code in a response
    request_id: int
    groups: list[Group] = field(default_factory=list)

    def group(self, tag: int) -> Group | None:
        for g in self.groups:
            if g.tag == tag:
                return g
        return None

    def get(self, name: str, group_tag: int = TAG_OPERATION) -> Attribute | None:
        g = self.group(group_tag)
        return g.get(name) if g is not None else None


def _text(data: bytes) -> str:
    return data.decode("utf-8", "surrogateescape")


def _raw(text: str) -> bytes:
    try:
        return text.encode("utf-8", "surrogateescape")
    except UnicodeEncodeError:  # surrogates no decoder of ours produced
        return text.encode("utf-8", "replace")


class IPPError(ValueError):
    """A request that cannot be decoded (the reply is client-error-bad-request)."""


_TOO_LARGE = "too large"


def decode_value(tag: int, raw: bytes) -> Value:
    n = len(raw)
    if tag in (INTEGER, ENUM):
        if n != 4:
            raise IPPError(f"integer value of {n} bytes")
        return Value(tag, struct.unpack(">i", raw)[0])
    if tag == BOOLEAN:
        if n != 1 or raw[0] > 1:
            raise IPPError("bad boolean value")
        return Value(tag, raw[0] == 1)
    if tag == DATETIME:
        if n != 11:
            raise IPPError(f"dateTime value of {n} bytes")
        f = struct.unpack(">HBBBBBBcBB", raw)
        return Value(tag, DateTime(f[0], f[1], f[2], f[3], f[4], f[5], f[6], f[7].decode("latin-1"), f[8], f[9]))
    if tag == RESOLUTION:
        if n != 9:
            raise IPPError(f"resolution value of {n} bytes")
        return Value(tag, Resolution(*struct.unpack(">iiB", raw)))
    if tag == RANGE:
        if n != 8:
            raise IPPError(f"rangeOfInteger value of {n} bytes")
        return Value(tag, Range(*struct.unpack(">ii", raw)))
    if tag in (TEXT_LANG, NAME_LANG):
        if n < 4:
            raise IPPError("short string-with-language value")
        ln = struct.unpack(">H", raw[:2])[0]
        if 2 + ln + 2 > n:
            raise IPPError("bad string-with-language value")
        tn = struct.unpack(">H", raw[2 + ln : 4 + ln])[0]
        if 4 + ln + tn != n:
            raise IPPError("bad string-with-language value")
        return Value(tag, StringWithLanguage(_text(raw[2 : 2 + ln]), _text(raw[4 + ln :])))
    if 0x40 <= tag <= 0x5F:
        return Value(tag, _text(raw))
    if tag == EXTENSION and n < 4:
        raise IPPError("short extension value")
    return Value(tag, raw)


# ---------------------------------------------------------------------------------------------
# codec: encoder
# ---------------------------------------------------------------------------------------------


def _value_bytes(v: Value) -> bytes:
    tag, val = v.tag, v.value
    if tag in (INTEGER, ENUM):
        return struct.pack(">i", int(val))
    if tag == BOOLEAN:
        return b"\x01" if val else b"\x00"
    if tag == DATETIME:
        d = val
        if isinstance(d, datetime):
            d = DateTime.from_timestamp(d.timestamp())
        if isinstance(d, (bytes, bytearray)):
            return bytes(d)
        return struct.pack(
            ">HBBBBBBcBB", d.year, d.month, d.day, d.hour, d.minute, d.second, d.decisecond,
            d.direction.encode("latin-1"), d.utc_hours, d.utc_minutes,
        )
    if tag == RESOLUTION:
        return struct.pack(">iiB", val[0], val[1], val[2])
    if tag == RANGE:
        return struct.pack(">ii", val[0], val[1])
    if tag in (TEXT_LANG, NAME_LANG):
        lang, text = (_raw(s) if isinstance(s, str) else bytes(s) for s in val)
        return struct.pack(">H", len(lang)) + lang + struct.pack(">H", len(text)) + text
    if isinstance(val, str):
        return _raw(val)
    if val is None:
        return b""
    return bytes(val)


def _header(out: bytearray, tag: int, name: str, value: bytes) -> None:
    nb = _raw(name)
    if len(nb) > 0xFFFF or len(value) > 0xFFFF:
        raise ValueError(f"attribute {name[:40]!r}: name or value longer than 65535 bytes")
    out.append(tag)
    out += struct.pack(">H", len(nb)) + nb + struct.pack(">H", len(value)) + value


def _encode_values(out: bytearray, name: str, values: list[Value]) -> None:
    if not values:
        raise ValueError(f"attribute {name[:40]!r} has no values")
    for i, v in enumerate(values):
        this = name if i == 0 else ""
        if v.tag == BEG_COLLECTION:
            _header(out, BEG_COLLECTION, this, b"")
            for member in v.value:
                _header(out, MEMBER_NAME, "", _raw(member.name))
                _encode_values(out, "", member.values)
            _header(out, END_COLLECTION, "", b"")
        else:
            if v.tag <= 0x0F or v.tag in (END_COLLECTION, MEMBER_NAME):
                raise ValueError(f"tag 0x{v.tag:02x} is not a value tag")
            _header(out, v.tag, this, _value_bytes(v))


def encode_attribute(name: str, values: list[Value]) -> bytes:
    out = bytearray()
    _encode_values(out, name, values)
    return bytes(out)


def encode_message(msg: Message) -> bytes:
    """The wire form of ``msg`` (request or response), ending with end-of-attributes."""
    out = bytearray(struct.pack(">BBHI", msg.version[0], msg.version[1], msg.code, msg.request_id & 0xFFFFFFFF))
    for g in msg.groups:
        if not 0x01 <= g.tag <= 0x0F or g.tag == TAG_END:
            raise ValueError(f"0x{g.tag:02x} is not a group tag")
        out.append(g.tag)
        for a in g.attributes:
            _encode_values(out, a.name, a.values)
    out.append(TAG_END)
    return bytes(out)


# ---------------------------------------------------------------------------------------------
# codec: incremental decoder
# ---------------------------------------------------------------------------------------------


class _Frame:
    __slots__ = ("member", "members")

    def __init__(self, members: list[Attribute]):
        self.members = members
        self.member: Attribute | None = None


class Decoder:
    """Reads one IPP request's header and attributes as its bytes arrive.

    ``feed(data)`` returns the bytes after the end-of-attributes tag (the document)
    once the attributes are complete, ``b""`` before. It never raises: a malformed
    message sets ``error`` (and ``too_large`` when ``max_bytes`` of attributes went by
    without an end tag); further input is ignored. Memory is bounded by ``max_bytes``;
    collections may nest ``max_depth`` deep.
    """

    def __init__(self, max_bytes: int = 65536, max_depth: int = 16):
        self.max_bytes = max_bytes
        self.max_depth = max_depth
        self.message: Message | None = None
        self.error = ""
        self.too_large = False
        self.done = False
        self.consumed = 0  # attribute bytes decoded so far
        self._buf = bytearray()
        self._group: Group | None = None
        self._attr: Attribute | None = None
        self._stack: list[_Frame] = []

    @property
    def buffered_bytes(self) -> int:
        return len(self._buf)

    def feed(self, data: bytes) -> bytes:
        if self.done:
            return data
        if self.error:
            return b""
        self._buf += data
        try:
            pos = self._run(self.max_bytes - self.consumed)
        except IPPError as exc:
            self.too_large = exc.args[:1] == (_TOO_LARGE,)
            self._fail(f"attributes exceed {self.max_bytes} bytes" if self.too_large else str(exc))
            return b""
        except Exception as exc:  # defensive: the decoder is total
            self._fail(f"internal: {type(exc).__name__}")
            return b""
        self.consumed += pos
        if self.done:
            rest = bytes(self._buf[pos:])
            self._buf.clear()
            return rest
        del self._buf[:pos]
        if self.consumed + len(self._buf) > self.max_bytes:  # the item in progress cannot fit either
            self.too_large = True
            self._fail(f"attributes exceed {self.max_bytes} bytes")
        return b""

    def close(self) -> None:
        """The body ended: an unfinished message is an error."""
        if not self.done and not self.error:
            self._fail("message truncated" if self.message is not None or self._buf else "empty message")

    def _fail(self, reason: str) -> None:
        self.error = reason or "malformed"
        self._buf.clear()
        self._stack.clear()

    def _run(self, room: int) -> int:
        """Decode whole items from the buffer; ``room``: attribute bytes still allowed."""
        buf = self._buf
        pos = 0
        n = len(buf)
        if self.message is None:
            if n < 8:
                return 0
            if room < 9:
                raise IPPError(_TOO_LARGE)
            major, minor, code, request_id = struct.unpack(">BBHI", buf[:8])
            self.message = Message((major, minor), code, request_id)
            pos = 8
        msg = self.message
        while pos < n:
            tag = buf[pos]
            if tag <= 0x0F:  # delimiter
                if self._stack:
                    raise IPPError("group tag inside a collection")
                pos += 1
                if pos > room:
                    raise IPPError(_TOO_LARGE)
                if tag == TAG_END:
                    self.done = True
                    return pos
                if tag == 0x00:
                    raise IPPError("reserved delimiter tag 0x00")
                self._group = Group(tag)
                msg.groups.append(self._group)
                self._attr = None
                continue
            if n - pos < 3:
                return pos
            name_len = (buf[pos + 1] << 8) | buf[pos + 2]
            if n - pos < 5 + name_len:
                return pos
            vpos = pos + 3 + name_len
            value_len = (buf[vpos] << 8) | buf[vpos + 1]
            end = vpos + 2 + value_len
            if end > room:
                raise IPPError(_TOO_LARGE)
            if end > n:
                return pos
            name = _text(bytes(buf[pos + 3 : vpos]))
            raw = bytes(buf[vpos + 2 : end])
            pos = end
            self._item(tag, name, raw)
        return pos

    def _item(self, tag: int, name: str, raw: bytes) -> None:
        if self._group is None:
            raise IPPError("attribute before any group tag")
        if self._stack:
            frame = self._stack[-1]
            if name:
                raise IPPError("named value inside a collection")
            if tag == MEMBER_NAME:
                if frame.member is not None and not frame.member.values:
                    raise IPPError("collection member without a value")
                if not raw:
                    raise IPPError("empty member name")
                frame.member = Attribute(_text(raw), [])
                frame.members.append(frame.member)
                return
            if tag == END_COLLECTION:
                if frame.member is not None and not frame.member.values:
                    raise IPPError("collection member without a value")
                self._stack.pop()
                return
            if frame.member is None:
                raise IPPError("collection value before a member name")
            self._add(frame.member, tag, raw)
            return
        if tag in (END_COLLECTION, MEMBER_NAME):
            raise IPPError("collection tag outside a collection")
        if not name:
            if self._attr is None:
                raise IPPError("additional value without an attribute")
        else:
            self._attr = Attribute(name, [])
            self._group.attributes.append(self._attr)
        self._add(self._attr, tag, raw)

    def _add(self, attr: Attribute, tag: int, raw: bytes) -> None:
        if tag == BEG_COLLECTION:
            if len(self._stack) >= self.max_depth:
                raise IPPError("collections nested too deep")
            members: list[Attribute] = []
            attr.values.append(Value(BEG_COLLECTION, members))
            self._stack.append(_Frame(members))
            return
        attr.values.append(decode_value(tag, raw))


@dataclass
class Decoded:
    message: Message | None
    error: str
    document: bytes


def decode_message(data: bytes, max_bytes: int = 1 << 20) -> Decoded:
    """One-shot decode (tests, analysis): never raises."""
    dec = Decoder(max_bytes=max_bytes)
    doc = dec.feed(data)
    dec.close()
    return Decoded(dec.message if dec.done else None, dec.error, doc)


# ---------------------------------------------------------------------------------------------
# rendering values for events
# ---------------------------------------------------------------------------------------------

EVENT_ATTRIBUTES = 64  # [group, name, value] entries per event
EVENT_VALUE = 256  # characters per rendered value


def value_text(v: Value, depth: int = 0) -> str:
    val = v.value
    if v.tag == BEG_COLLECTION:
        if depth > 3:
            return "{…}"
        inner = " ".join(f"{escape(m.name, 64)}={','.join(value_text(x, depth + 1) for x in m.values[:8])}" for m in val[:16])
        return "{" + inner + "}"
    if 0x10 <= v.tag <= 0x1F:
        return _OOB_NAMES.get(v.tag, f"out-of-band-0x{v.tag:02x}")
    if isinstance(val, bool):
        return "true" if val else "false"
    if isinstance(val, int):
        return str(val)
    if isinstance(val, Resolution):
        return f"{val.x}x{val.y}{'dpi' if val.units == 3 else 'dpcm' if val.units == 4 else f'u{val.units}'}"
    if isinstance(val, Range):
        return f"{val.lower}-{val.upper}"
    if isinstance(val, DateTime):
        return str(val)
    if isinstance(val, StringWithLanguage):
        return f"{escape(_raw(val.language), 32)}:{escape(_raw(val.text), EVENT_VALUE)}"
    if isinstance(val, str):
        return escape(_raw(val), EVENT_VALUE)
    return escape(bytes(val), EVENT_VALUE)


def attributes_for_event(msg: Message, limit: int = EVENT_ATTRIBUTES) -> list[list[str]]:
    out: list[list[str]] = []
    for g in msg.groups:
        gname = GROUP_NAMES.get(g.tag, f"0x{g.tag:02x}")
        for a in g.attributes:
            if len(out) >= limit:
                return out
            text = ",".join(value_text(v) for v in a.values[:32])
            if len(text) > EVENT_VALUE * 2:
                text = text[: EVENT_VALUE * 2] + "…"
            out.append([gname, escape(_raw(a.name), 128), text])
    return out


def _first(attr: Attribute | None, tags: Iterable[int] | None = None) -> Any:
    if attr is None or not attr.values:
        return None
    v = attr.values[0]
    if tags is not None and v.tag not in tags:
        return None
    return v.value


def _clean_name(text: str, limit: int = 255) -> str:
    """An attacker-chosen name echoed in a reply: valid UTF-8, at most ``limit`` bytes."""
    raw = _raw(text) if isinstance(text, str) else bytes(text)
    clean = raw[: limit * 4].decode("utf-8", "replace").replace("\x00", "")
    return clean.encode("utf-8")[:limit].decode("utf-8", "ignore")


# ---------------------------------------------------------------------------------------------
# the printer: attributes and jobs, shared by every connection
# ---------------------------------------------------------------------------------------------


@dataclass
class IPPJob:
    """A job the IPP side knows more about than the device job log does."""

    number: int
    name: str
    user: str
    document_format: str
    created: float
    state: int
    reasons: list[str]
    processing: float | None = None
    completed: float | None = None
    capture: JobCapture | None = None  # until the document arrives (Create-Job)
    streaming: bool = False  # a request is sending its document right now
    awaiting: bool = False  # Create-Job, or a document with last-document=false
    documents: int = 0
    last_activity: float = 0.0


@dataclass
class JobView:
    """Everything a job attribute group is built from."""

    number: int
    name: str
    user: str
    state: int
    reasons: list[str]
    created: float
    processing: float | None
    completed: float | None
    size: int
    pages: int
    documents: int


def _host(ip: str) -> str:
    if ip.startswith("::ffff:") and "." in ip:
        ip = ip[7:]
    return f"[{ip}]" if ":" in ip else ip


class IPPPrinter:
    """The IPP view of one device; one instance serves every connection."""

    def __init__(self, device: Device, spec: IPPSection | None = None, *, web_port: int = 80):
        self.device = device
        self.spec = spec or device.persona.ipp or IPPSection()
        self.web_port = web_port  # where printer-more-info points (the embedded web server)
        self.jobs: dict[int, IPPJob] = {}
        s = self.spec
        self.versions = {tuple(int(p) for p in str(v).split(".")) for v in s.attribute("ipp-versions-supported").values}  # type: ignore[union-attr]
        self.majors = {v[0] for v in self.versions}
        self.highest = max(self.versions)
        self.operations = {int(v) for v in s.attribute("operations-supported").values}  # type: ignore[union-attr]
        self.formats = {str(v).lower() for v in s.attribute("document-format-supported").values}  # type: ignore[union-attr]
        self.charsets = {str(v).lower() for v in s.attribute("charset-supported").values}  # type: ignore[union-attr]
        self.compressions = {str(v).lower() for v in s.attribute("compression-supported").values}  # type: ignore[union-attr]
        default = s.attribute("document-format-default")
        self.default_format = str(default.values[0]) if default is not None else "application/octet-stream"
        self.paths = set(s.paths)
        self.job_path = self._job_path_pattern()

    def _job_path_pattern(self) -> re.Pattern[str] | None:
        """Job URIs are request paths too (Get-Job-Attributes posted to the job-uri)."""
        marker = "987654321"
        probe = {"host": "h", "port_suffix": "", "job_id": marker}
        probe["printer_uri"] = render(self.spec.printer_uri, probe)
        uri = render(self.spec.job_uri, probe)
        m = re.match(r"^[a-z]+://[^/]*(/.*)$", uri)
        if m is None or marker not in m.group(1):
            return None
        return re.compile("^" + re.escape(m.group(1)).replace(marker, r"\d{1,9}") + "$")

    def known_path(self, path: str) -> bool:
        return path in self.paths or (self.job_path is not None and self.job_path.match(path) is not None)

    # -- template values -----------------------------------------------------------------------
    def values(self, local: tuple[str, int], **extra: Any) -> dict[str, Any]:
        ip, port = local
        dev = self.device
        vals = dev.values(ip=ip)
        host = _host(ip)
        state = dev.state_name()
        reasons = getattr(self.spec.state_reasons, state, ["none"])
        vals.update(
            host=host,
            port_suffix="" if port in (631, 0) else f":{port}",
            web_host=host if self.web_port == 80 else f"{host}:{self.web_port}",
            printer_state=PRINTER_STATES.get(state, 3),
            printer_state_reasons=",".join(reasons),
            printer_state_message=vals["display"],
            printer_up_time=self.up_time(),
            queued_job_count=dev.active_jobs,
        )
        vals["server"] = render(self.spec.server, vals)  # the Server header may name the serial
        vals["printer_uri"] = render(self.spec.printer_uri, vals)
        vals.update(extra)
        return vals

    def up_time(self, ts: float | None = None) -> int:
        """printer-up-time of the device clock (or of ``ts``): seconds since boot, at least 1."""
        now = self.device.clock() if ts is None else ts
        return max(1, int(now - self.device.boot_time))

    def job_uri(self, vals: dict[str, Any], number: int) -> str:
        return render(self.spec.job_uri, dict(vals, job_id=number))

    # -- printer attributes ---------------------------------------------------------------------
    def printer_attributes(self, vals: dict[str, Any], requested: set[str] | None) -> list[Attribute]:
        out: list[Attribute] = []
        for spec in self.spec.printer_attributes:
            if requested is not None and not _wanted(spec, requested):
                continue
            values = self._spec_values(spec, vals)
            if values:
                out.append(Attribute(spec.name, values))
        return out

    def _spec_values(self, spec: AttributeSpec, vals: dict[str, Any]) -> list[Value]:
        tag = TYPE_TAGS[spec.type]
        if spec.type in ("no-value", "unknown", "unsupported"):
            return [Value(tag, b"")]
        if spec.type == "collection":
            return [Value(tag, self._members(c, vals)) for c in spec.collection_values()]
        out: list[Value] = []
        for raw in spec.values:
            if spec.type in ("integer", "enum"):
                num = raw if isinstance(raw, int) else _to_int(render(raw, vals))
                out.append(Value(tag, num))
            elif spec.type == "boolean":
                flag = raw if isinstance(raw, bool) else render(raw, vals).strip().lower() in ("true", "1", "yes")
                out.append(Value(tag, flag))
            elif spec.type == "dateTime":
                out.append(Value(tag, DateTime.from_timestamp(self.device.clock())))
            elif spec.type == "resolution":
                out.append(Value(tag, Resolution(raw[0], raw[1], 3 if raw[2] == "dpi" else 4)))
            elif spec.type == "rangeOfInteger":
                out.append(Value(tag, Range(raw[0], raw[1])))
            elif spec.type in ("textWithLanguage", "nameWithLanguage"):
                out.append(Value(tag, StringWithLanguage(render(raw[0], vals), render(raw[1], vals))))
            elif spec.type == "octetString":
                out.append(Value(tag, render(raw, vals).encode("utf-8")))
            else:
                text = render(raw, vals)
                parts = [p.strip() for p in text.split(",")] if spec.split else [text]
                limit = 255 if spec.type == "name" else 1023
                out.extend(Value(tag, _clean_name(p, limit)) for p in parts if p or not spec.split)
        return out

    def _members(self, coll: CollectionValue, vals: dict[str, Any]) -> list[Attribute]:
        return [Attribute(m.name, self._spec_values(m, vals)) for m in coll.members]

    # -- jobs -----------------------------------------------------------------------------------
    def expire(self) -> None:
        """Jobs whose document never came within multiple-operation-time-out are aborted.

        A document that stopped arriving long ago (its connection ended without the
        engine hearing of it) is aborted too, so the device does not stay busy for ever.
        """
        now = self.device.clock()
        timeout = self.spec.multiple_operation_timeout
        for job in list(self.jobs.values()):
            idle = now - job.last_activity
            if job.awaiting and not job.streaming and idle > timeout:
                self.finish_waiting(job, ABORTED if job.documents == 0 else COMPLETED)
            elif job.streaming and idle > timeout + STALE_STREAM:
                if job.capture is not None:
                    job.capture.end("eof")
                job.capture, job.streaming, job.awaiting = None, False, False
                job.state, job.reasons, job.completed = ABORTED, ["aborted-by-system"], now

    def finish_waiting(self, job: IPPJob, state: int) -> None:
        """A waiting job ends without (more) data: cancel, timeout, or last-document."""
        now = self.device.clock()
        if job.capture is not None:
            job.capture.end("canceled" if state == CANCELED else "timeout")  # nothing was stored: outputs dropped
            job.capture = None
        job.awaiting = False
        job.state = state
        job.reasons = {
            CANCELED: ["job-canceled-by-user"],
            ABORTED: ["aborted-by-system"],
            COMPLETED: ["job-completed-successfully"],
        }[state]
        job.processing = job.processing or now
        job.completed = now

    def pending_count(self) -> int:
        return sum(1 for j in self.jobs.values() if j.awaiting)

    def new_job(self, capture: JobCapture, name: str, user: str, document_format: str, state: int, reasons: list[str]) -> IPPJob:
        now = self.device.clock()
        job = IPPJob(capture.number, name, user, document_format, now, state, reasons, last_activity=now)
        self.jobs[job.number] = job
        self._prune()
        return job

    def _prune(self) -> None:
        if len(self.jobs) <= 256:
            return
        for number in sorted(self.jobs)[: len(self.jobs) - 256]:
            if not self.jobs[number].awaiting and not self.jobs[number].streaming:
                del self.jobs[number]

    def _log(self) -> list[dict[str, Any]]:
        """The device job log since boot (a printer forgets its jobs when it restarts)."""
        boot = self.device.boot_time
        out = []
        for rec in self.device.state["jobs"]:
            if isinstance(rec, dict) and isinstance(rec.get("job"), int) and float(rec.get("ts", 0)) >= boot - 1:
                out.append(rec)
        return out

    def view(self, number: int) -> JobView | None:
        log = {rec["job"]: rec for rec in self._log()}
        return self._view(number, self.jobs.get(number), log.get(number))

    def _view(self, number: int, job: IPPJob | None, rec: dict[str, Any] | None) -> JobView | None:
        if job is None and rec is None:
            return None
        size = int(rec.get("size", 0)) if rec else 0
        pages = int(rec.get("pages", 0)) if rec else 0
        if job is not None:
            return JobView(number, job.name, job.user, job.state, list(job.reasons), job.created, job.processing,
                           job.completed, size, pages, job.documents)
        assert rec is not None
        ts = float(rec.get("ts", self.device.clock()))
        name = _clean_name(str(rec.get("name") or ""))
        user = _clean_name(str(rec.get("user") or ""))
        return JobView(number, name, user, COMPLETED, ["job-completed-successfully"], ts, ts, ts, size, pages, 1)

    def views(self, which: str) -> list[JobView]:
        """Jobs for Get-Jobs: not-completed in queue order, or completed newest first."""
        log = {rec["job"]: rec for rec in self._log()}
        numbers = set(log) | set(self.jobs)
        views = [v for n in numbers if (v := self._view(n, self.jobs.get(n), log.get(n))) is not None]
        if which == "completed":
            done = [v for v in views if v.state in TERMINAL]
            done.sort(key=lambda v: (v.completed or 0, v.number), reverse=True)
            return done[: self.spec.job_history]
        live = [v for v in views if v.state not in TERMINAL]
        live.sort(key=lambda v: v.number)
        return live

    def job_attributes(self, v: JobView, vals: dict[str, Any], requested: set[str] | None) -> list[Attribute]:
        up = self.up_time()

        def t(ts: float | None) -> Value:
            if ts is None:
                return Value(NO_VALUE, b"")
            return Value(INTEGER, max(0, min(up, int(ts - self.device.boot_time))))

        def d(ts: float | None) -> Value:
            return Value(NO_VALUE, b"") if ts is None else Value(DATETIME, DateTime.from_timestamp(ts))

        k_octets = (v.size + 1023) // 1024
        done = v.state in TERMINAL
        table: list[tuple[str, list[Value]]] = [
            ("job-uri", [Value(URI, self.job_uri(vals, v.number))]),
            ("job-id", [Value(INTEGER, v.number)]),
            ("job-printer-uri", [Value(URI, vals["printer_uri"])]),
            ("job-name", [Value(NAME, v.name or "Untitled")]),
            ("job-originating-user-name", [Value(NAME, v.user)]),
            ("job-state", [Value(ENUM, v.state)]),
            ("job-state-reasons", [Value(KEYWORD, r) for r in v.reasons]),
            ("job-printer-up-time", [Value(INTEGER, up)]),
            ("time-at-creation", [t(v.created)]),
            ("time-at-processing", [t(v.processing)]),
            ("time-at-completed", [t(v.completed)]),
            ("date-time-at-creation", [d(v.created)]),
            ("date-time-at-processing", [d(v.processing)]),
            ("date-time-at-completed", [d(v.completed)]),
            ("number-of-documents", [Value(INTEGER, v.documents)]),
            ("job-k-octets", [Value(INTEGER, k_octets)]),
            ("job-k-octets-processed", [Value(INTEGER, k_octets if done else 0)]),
            ("job-impressions", [Value(INTEGER, v.pages)]),
            ("job-impressions-completed", [Value(INTEGER, v.pages if done else 0)]),
            ("job-media-sheets", [Value(INTEGER, v.pages)]),
            ("job-media-sheets-completed", [Value(INTEGER, v.pages if done else 0)]),
        ]
        if requested is None or "all" in requested or "job-description" in requested:
            return [Attribute(n, vs) for n, vs in table]
        return [Attribute(n, vs) for n, vs in table if n in requested]


def _wanted(spec: AttributeSpec, requested: set[str]) -> bool:
    if "all" in requested or spec.name in requested:
        return True
    if "job-template" in requested and spec.template:
        return True
    return "printer-description" in requested and not spec.template


def _to_int(text: str) -> int:
    try:
        return int(text.strip())
    except ValueError:
        return 0


# ---------------------------------------------------------------------------------------------
# one request
# ---------------------------------------------------------------------------------------------


def http_reply(reply: HTTPReply, vals: dict[str, Any], body: bytes | None = None, *, head: bool = False) -> bytes:
    """The persona's reply template, byte for byte, with a computed Content-Length."""
    payload = render(reply.body, vals).encode("utf-8") if body is None else body
    lines = [f"HTTP/1.1 {reply.status}"]
    lines += [f"{k}: {render(v, vals)}" for k, v in reply.headers]
    lines.append(f"Content-Length: {len(payload)}")
    head_bytes = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1", "replace")
    return head_bytes if head else head_bytes + payload


def _base_type(mime: str) -> str:
    return mime.split(";", 1)[0].strip().lower()


class _Connection:
    """Per-connection facts the handlers share: printer, local address, the event queue."""

    def __init__(self, printer: IPPPrinter, local: tuple[str, int]):
        self.printer = printer
        self.local = local
        # one entry per respond(), in order: the sentence for the request event it precedes
        self.messages: deque[str | None] = deque()


class IPPRequestHandler:
    """One HTTP request on the IPP port (the RequestHandler of protocols.http)."""

    capture_body = False

    def __init__(self, conn: _Connection):
        self.conn = conn
        self.printer = conn.printer
        self.request: Request | None = None
        self.mode = ""  # "ipp" | "web" | "sniff" (a POST without Content-Type, until its first byte)
        self.decoder: Decoder | None = None
        self.decided = False
        self.status = OK
        self.message: Message | None = None
        self.groups: list[Group] = []
        self.job: IPPJob | None = None
        self.capture: JobCapture | None = None  # the document of this request streams here
        self.last_document: bool | None = None
        self.reject_data = False  # a second document for a job that takes one
        self.extra_data = 0
        self.note = ""  # why, for the event message
        self.answered = False  # an IPP reply was sent (not an HTTP error)

    # -- RequestHandler -------------------------------------------------------------------------
    def begin(self, request: Request) -> list[Output]:
        self.request = request
        # IPP is what says it is (PRET even sends it with GET); a POST that does not say what
        # it is is IPP when its body starts like IPP (a major version byte); everything else
        # (browsers, nmap's SOAP POST /sdk, …) gets the port's web reply
        ctype = request.header("Content-Type")
        method = request.method.upper()
        if method != "HEAD" and _base_type(ctype or "") == "application/ipp":
            self._ipp()
        elif method == "POST" and ctype is None:
            self.mode = "sniff"
        else:
            self.mode = "web"
        self.printer.expire()
        return []

    def _ipp(self) -> None:
        self.mode = "ipp"
        self.decoder = Decoder(max_bytes=self.printer.spec.max_request_bytes)

    def body(self, data: bytes) -> list[Output]:
        if self.mode == "sniff" and data:
            if data[0] in (1, 2):
                self._ipp()
            else:
                self.mode = "web"
        if self.mode != "ipp" or self.decoder is None:
            return []
        out: list[Output] = []
        if not self.decoder.done:
            data = self.decoder.feed(data)
            if not self.decoder.done:
                return out
        if not self.decided:
            self._decide()
        if data:
            if self.capture is not None:
                outs, _ = self.capture.feed(data)
                out.extend(outs)
                if self.job is not None:
                    self.job.last_activity = self.printer.device.clock()
            elif self.reject_data:
                self.extra_data += len(data)
        return out

    def respond(self, request: Request) -> tuple[list[Output], int, bool, dict[str, Any]]:
        outputs, status, keep = self._respond(request)
        self.conn.messages.append(self._event_message(request))
        return outputs, status, keep, self._event_fields()

    # -- the answer -------------------------------------------------------------------------------
    def _respond(self, request: Request) -> tuple[list[Output], int, bool]:
        out: list[Output] = []
        printer = self.printer
        vals = printer.values(self.conn.local)
        if request.malformed or self.request is None:
            out.extend(self._end_capture("eof", aborted=True))
            out.append(Send(http_reply(printer.spec.bad_request_reply, vals)))
            status = _status_code(printer.spec.bad_request_reply.status)
            return out, status, False
        if self.mode in ("web", "sniff"):
            head = request.method.upper() == "HEAD"
            out.append(Send(http_reply(printer.spec.web_reply, vals, head=head)))
            return out, _status_code(printer.spec.web_reply.status), True
        dec = self.decoder
        assert dec is not None
        if not dec.done:
            dec.close()
        if not self.decided:
            self._decide()
        truncated = request.body_truncated
        out.extend(self._complete(truncated))
        body = encode_message(self._reply(vals))
        out.append(Send(http_reply(printer.spec.ipp_reply, vals, body)))
        self.answered = True
        return out, 200, True

    def _decide(self) -> None:
        """The attributes are complete (or broken): check them and start what they ask for."""
        self.decided = True
        dec = self.decoder
        assert dec is not None and self.request is not None
        if dec.error:
            self.message = dec.message
            self.status = TOO_LARGE if dec.too_large else BAD_REQUEST
            self.note = dec.error
            return
        msg = dec.message
        assert msg is not None
        self.message = msg
        self.status = self._check(msg)
        if self.status == OK:
            self._start(msg)

    def _check(self, msg: Message) -> int:
        p = self.printer
        if msg.version[0] not in p.majors or msg.version == (0, 0):
            self.note = f"IPP/{msg.version[0]}.{msg.version[1]} not supported"
            return VERSION_NOT_SUPPORTED
        if msg.request_id == 0:
            self.note = "request-id 0"
            return BAD_REQUEST
        ops = msg.groups[0] if msg.groups and msg.groups[0].tag == TAG_OPERATION else None
        if ops is None or len(ops.attributes) < 2:
            self.note = "no operation attributes"
            return BAD_REQUEST
        cs, nl = ops.attributes[0], ops.attributes[1]
        if cs.name != "attributes-charset" or nl.name != "attributes-natural-language" or \
                _first(cs, (CHARSET,)) is None or _first(nl, (LANGUAGE,)) is None:
            self.note = "attributes-charset and attributes-natural-language must come first"
            return BAD_REQUEST
        if str(_first(cs)).lower() not in p.charsets:
            self.note = "charset not supported"
            return CHARSET_NOT_SUPPORTED
        if msg.code not in p.operations:
            return OPERATION_NOT_SUPPORTED
        if not p.known_path(self.request.path):
            self.note = "no printer at this path"
            return NOT_FOUND
        op = msg.code
        if op in (SEND_DOCUMENT, CANCEL_JOB, GET_JOB_ATTRIBUTES):
            if self._job_id(msg) is None:
                self.note = "no job-id/job-uri"
                return BAD_REQUEST
        elif _first(ops.get("printer-uri"), (URI,)) is None:
            self.note = "no printer-uri"
            return BAD_REQUEST
        if op in (PRINT_JOB, VALIDATE_JOB, SEND_DOCUMENT, CREATE_JOB):
            fmt = _first(ops.get("document-format"), (MIME,))
            if fmt is not None and _base_type(str(fmt)) not in p.formats:
                self.note = "document-format not supported"
                self.groups.append(Group(TAG_UNSUPPORTED_GROUP, [Attribute("document-format", [Value(MIME, str(fmt))])]))
                return FORMAT_NOT_SUPPORTED
            comp = _first(ops.get("compression"), (KEYWORD,))
            if comp is not None and str(comp).lower() not in p.compressions:
                self.note = "compression not supported"
                self.groups.append(Group(TAG_UNSUPPORTED_GROUP, [Attribute("compression", [Value(KEYWORD, str(comp))])]))
                return COMPRESSION_NOT_SUPPORTED
        if op == SEND_DOCUMENT and _first(ops.get("last-document"), (BOOLEAN,)) is None:
            self.note = "no last-document"
            return BAD_REQUEST
        if op == GET_JOBS:
            which = _first(ops.get("which-jobs"), (KEYWORD,))
            if which is not None and which not in ("completed", "not-completed"):
                self.groups.append(Group(TAG_UNSUPPORTED_GROUP, [Attribute("which-jobs", [Value(KEYWORD, str(which))])]))
                return VALUES_NOT_SUPPORTED
        return OK

    @staticmethod
    def _job_id(msg: Message) -> int | None:
        ops = msg.group(TAG_OPERATION)
        if ops is None:
            return None
        jid = _first(ops.get("job-id"), (INTEGER,))
        if jid is not None and _first(ops.get("printer-uri"), (URI,)) is not None:
            return int(jid)
        juri = _first(ops.get("job-uri"), (URI,))
        if juri is not None:
            m = re.search(r"(\d{1,9})/?$", str(juri))
            return int(m.group(1)) if m else -1
        return None

    def _names(self, msg: Message) -> tuple[str, str, str]:
        ops = msg.group(TAG_OPERATION)
        assert ops is not None
        name = _first(ops.get("job-name"), (NAME, NAME_LANG)) or _first(ops.get("document-name"), (NAME, NAME_LANG)) or ""
        if isinstance(name, StringWithLanguage):
            name = name.text
        user = _first(ops.get("requesting-user-name"), (NAME, NAME_LANG)) or ""
        if isinstance(user, StringWithLanguage):
            user = user.text
        fmt = _first(ops.get("document-format"), (MIME,)) or self.printer.default_format
        return _clean_name(str(name)), _clean_name(str(user)), _base_type(str(fmt))

    def _start(self, msg: Message) -> None:
        """Operations with effects: the job and its capture begin here."""
        p = self.printer
        op = msg.code
        if op == PRINT_JOB:
            name, user, fmt = self._names(msg)
            self.capture = JobCapture(p.device, language=FORMAT_LANGUAGES.get(fmt, ""), name=name, user=user)
            self.job = p.new_job(self.capture, name, user, fmt, PROCESSING, ["job-printing"])
            self.job.capture = self.capture
            self.job.processing = self.job.created
            self.job.streaming = True
            self.job.documents = 1
        elif op == CREATE_JOB:
            if p.pending_count() >= p.spec.max_pending_jobs:
                self.status = BUSY
                self.note = "too many jobs waiting for documents"
                return
            name, user, fmt = self._names(msg)
            capture = JobCapture(p.device, language="", name=name, user=user)
            self.job = p.new_job(capture, name, user, fmt, PENDING, ["job-incoming"])
            self.job.capture = capture
            self.job.awaiting = True
        elif op == SEND_DOCUMENT:
            number = self._job_id(msg) or -1
            view = p.view(number)
            job = p.jobs.get(number)
            if view is None:
                self.status, self.note = NOT_FOUND, f"no job {number}"
                return
            if job is None or not job.awaiting or job.streaming:
                self.status, self.note = NOT_POSSIBLE, f"job {number} takes no document now"
                return
            self.job = job
            ops = msg.group(TAG_OPERATION)
            assert ops is not None
            self.last_document = bool(_first(ops.get("last-document")))
            job.last_activity = p.device.clock()
            if job.capture is None:  # it already had its document (last-document was false)
                self.reject_data = True
                return
            _, _, fmt = self._names(msg)
            lang = FORMAT_LANGUAGES.get(fmt, "")
            if lang and not job.capture.opened:
                job.capture.declare(lang)
            self.capture = job.capture
            job.streaming = True
            job.state, job.reasons = PROCESSING, ["job-printing"]
            job.processing = job.processing or job.last_activity
            job.documents += 1
        elif op == CANCEL_JOB:
            number = self._job_id(msg) or -1
            view = p.view(number)
            if view is None:
                self.status, self.note = NOT_FOUND, f"no job {number}"
                return
            job = p.jobs.get(number)
            if view.state in TERMINAL or job is None or job.streaming:
                self.status, self.note = NOT_POSSIBLE, f"job {number} cannot be canceled"
                return
            p.finish_waiting(job, CANCELED)
            self.job = job
        elif op == GET_JOB_ATTRIBUTES:
            number = self._job_id(msg) or -1
            if p.view(number) is None:
                self.status, self.note = NOT_FOUND, f"no job {number}"

    def _complete(self, truncated: bool) -> list[Output]:
        """The body has ended: close the document this request carried."""
        out: list[Output] = []
        if self.capture is not None:
            out.extend(self._end_capture("eof" if truncated else "document", aborted=truncated))
        elif self.reject_data and self.job is not None:
            if self.extra_data:
                self.status, self.note = MULTIPLE_DOCUMENTS, "second document refused"
            elif self.last_document:
                self.printer.finish_waiting(self.job, COMPLETED)
            self.job.streaming = False
        return out

    def _end_capture(self, ended_by: str, *, aborted: bool) -> list[Output]:
        capture, job = self.capture, self.job
        if capture is None:
            return []
        self.capture = None
        out = capture.end(ended_by)
        if job is not None:
            now = self.printer.device.clock()
            job.streaming = False
            job.capture = None
            job.last_activity = now
            if aborted:
                job.awaiting = False
                job.state, job.reasons, job.completed = ABORTED, ["aborted-by-system"], now
            elif self.last_document is False:  # more documents announced: the job stays open
                job.awaiting = True
                job.state, job.reasons = PROCESSING, ["job-incoming"]
            else:
                job.awaiting = False
                job.state, job.reasons, job.completed = COMPLETED, ["job-completed-successfully"], now
        return out

    def _reply(self, vals: dict[str, Any]) -> Message:
        p = self.printer
        msg = self.message
        req_version = msg.version if msg is not None else p.highest
        version = req_version if req_version in p.versions else p.highest
        if version[0] not in p.majors or self.status == VERSION_NOT_SUPPORTED:
            version = p.highest
        request_id = msg.request_id if msg is not None else 0
        ops = Group(TAG_OPERATION, [
            Attribute("attributes-charset", [Value(CHARSET, "utf-8")]),
            Attribute("attributes-natural-language", [Value(LANGUAGE, p.spec.natural_language)]),
        ])
        groups = [ops] + self.groups
        if self.status in (OK, 0x0001) and msg is not None:
            groups += self._result_groups(msg, vals)
        return Message(version, self.status, request_id, groups)

    def _requested(self, msg: Message) -> set[str] | None:
        attr = msg.get("requested-attributes")
        if attr is None:
            return None
        return {str(v.value) for v in attr.values if isinstance(v.value, str)}

    def _result_groups(self, msg: Message, vals: dict[str, Any]) -> list[Group]:
        p = self.printer
        op = msg.code
        if op == GET_PRINTER_ATTRIBUTES:
            return [Group(TAG_PRINTER, p.printer_attributes(vals, self._requested(msg)))]
        if op in (PRINT_JOB, CREATE_JOB, SEND_DOCUMENT, CANCEL_JOB) and self.job is not None:
            if op == CANCEL_JOB:
                return []
            v = p.view(self.job.number)
            if v is None:
                return []
            wanted = {"job-uri", "job-id", "job-state", "job-state-reasons"}
            return [Group(TAG_JOB, p.job_attributes(v, vals, wanted))]
        if op == GET_JOB_ATTRIBUTES:
            number = self._job_id(msg) or -1
            v = p.view(number)
            return [Group(TAG_JOB, p.job_attributes(v, vals, self._requested(msg)))] if v is not None else []
        if op == GET_JOBS:
            ops = msg.group(TAG_OPERATION)
            assert ops is not None
            which = str(_first(ops.get("which-jobs"), (KEYWORD,)) or "not-completed")
            limit = _first(ops.get("limit"), (INTEGER,))
            mine = _first(ops.get("my-jobs"), (BOOLEAN,))
            user = _clean_name(str(_first(ops.get("requesting-user-name"), (NAME,)) or ""))
            requested = self._requested(msg) or {"job-uri", "job-id"}
            views = p.views(which)
            if mine:
                views = [v for v in views if v.user == user]
            if isinstance(limit, int) and limit > 0:
                views = views[:limit]
            return [Group(TAG_JOB, p.job_attributes(v, vals, requested)) for v in views]
        return []

    # -- the event ---------------------------------------------------------------------------------
    def _event_fields(self) -> dict[str, Any]:
        msg = self.message
        if self.mode != "ipp":
            return {}
        fields: dict[str, Any] = {"ipp_status": status_name(self.status)} if self.answered else {}
        if self.decoder is not None and self.decoder.message is not None and msg is None:
            msg = self.decoder.message
        if msg is None:
            return fields
        ops = msg.group(TAG_OPERATION)
        fields.update(
            operation=operation_name(msg.code),
            operation_id=msg.code,
            request_id=msg.request_id,
            ipp_version=f"{msg.version[0]}.{msg.version[1]}",
            attributes=attributes_for_event(msg),
        )
        if ops is not None:
            for key, attr in (("printer_uri", "printer-uri"), ("document_format", "document-format"),
                              ("user", "requesting-user-name"), ("job_name", "job-name")):
                a = ops.get(attr)
                if a is not None and a.values:
                    fields[key] = value_text(a.values[0])
        if self.job is not None:
            fields["job_id"] = self.job.number
        else:
            jid = self._job_id(msg) if ops is not None else None
            if jid is not None and jid >= 0:
                fields["job_id"] = jid
        return fields

    def _event_message(self, request: Request) -> str | None:
        if self.mode != "ipp":
            return None
        msg = self.message or (self.decoder.message if self.decoder else None)
        op = operation_name(msg.code) if msg is not None else "request"
        outcome = status_name(self.status) if self.answered else f"HTTP error ({escape(request.malformed, 80)})"
        text = f"IPP {op} {escape(request.target, 200)} -> {outcome}"
        if self.job is not None:
            text += f" (job {self.job.number})"
        if self.note:
            text += f": {escape(self.note, 120)}"
        return text


def _status_code(status_line: str) -> int:
    head = status_line.split(" ", 1)[0]
    return int(head) if head.isdigit() else 0


# ---------------------------------------------------------------------------------------------
# the connection
# ---------------------------------------------------------------------------------------------


class IPPEngine:
    """One TCP connection to the IPP port: HTTP framing plus IPP.

    The handler hands its IPP fields to the HTTP engine's request event (the 4-tuple
    of ``respond``); this wrapper only replaces that event's sentence with one naming
    the operation and the IPP status.
    """

    def __init__(self, printer: IPPPrinter, local: tuple[str, int], *, max_body: int = 64 * 2**20):
        self.conn = _Connection(printer, local)
        self.http = HTTPServerEngine(self._handler, request_event=REQUEST_EVENT, max_body=max_body)

    def _handler(self) -> IPPRequestHandler:
        return IPPRequestHandler(self.conn)

    @property
    def buffered_bytes(self) -> int:
        return self.http.buffered_bytes

    def feed(self, data: bytes) -> list[Output]:
        return self._merge(self.http.feed(data))

    def eof(self) -> list[Output]:
        return self._merge(self.http.eof())

    def _merge(self, outputs: list[Output]) -> list[Output]:
        messages = self.conn.messages
        if not messages:
            return outputs
        merged: list[Output] = []
        for o in outputs:
            if isinstance(o, Emit) and o.eventid == REQUEST_EVENT and messages:
                message = messages.popleft()
                if message:
                    o = Emit(REQUEST_EVENT, message, o.fields)
            merged.append(o)
        return merged
