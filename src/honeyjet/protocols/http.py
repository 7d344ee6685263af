"""HTTP/1.x request framing for the embedded web server (80) and IPP (631), sans-IO.

A small, strict, bounded reader in the style of h11: bytes in, parsed requests and
body pieces out; responses are written by the handler byte for byte (a printer's web
server has its own header case and order, which a framework would normalise away).

:class:`HTTPServerEngine` drives one connection: it parses request heads (bounded size
and header count), streams bodies framed by ``Content-Length`` or ``chunked``, answers
``Expect: 100-continue``, supports pipelining and keep-alive, and hands each request to
a handler made by the caller's factory. Malformed input never raises: the handler
answers it (a device-style 400) and the connection closes.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping, Protocol

from honeyjet.protocols.outputs import Close, Emit, Output, Send
from honeyjet.text import escape

MAX_HEAD = 16384
MAX_HEADERS = 100
MAX_CHUNK_LINE = 1024

_REQUEST_LINE = re.compile(rb"^([!#$%&'*+.^_`|~0-9A-Za-z-]{1,32}) (\S{1,8000}) (HTTP/\d\.\d)$")
_HEADER = re.compile(rb"^([!#$%&'*+.^_`|~0-9A-Za-z-]{1,256}):[ \t]*(.*?)[ \t]*$")


@dataclass
class Request:
    method: str  # as sent ("GET"); latin-1 text
    target: str  # as sent ("/hp/device/this.LCDispatcher?nav=hp.Usage")
    version: str  # "HTTP/1.1"
    headers: list[tuple[str, str]]  # raw names and values, in order
    raw_head: bytes
    body_size: int = 0
    body_truncated: bool = False
    malformed: str = ""  # why the request could not be parsed ("" when fine)

    def header(self, name: str) -> str | None:
        low = name.lower()
        for k, v in self.headers:
            if k.lower() == low:
                return v
        return None

    @property
    def path(self) -> str:
        return self.target.split("?", 1)[0]

    @property
    def query(self) -> str:
        return self.target.split("?", 1)[1] if "?" in self.target else ""

    @property
    def keep_alive(self) -> bool:
        conn = (self.header("Connection") or "").lower()
        if self.version == "HTTP/1.0":
            return "keep-alive" in conn
        return "close" not in conn

    def event_fields(self) -> dict:
        """The request as event fields: attacker header names are values, never keys."""
        return {
            "method": escape(self.method, 32),
            "target": escape(self.target, 1024),
            "version": escape(self.version, 16),
            "headers": [[escape(k, 128), escape(v, 512)] for k, v in self.headers[:64]],
            "user_agent": escape(self.header("User-Agent") or "", 256),
            "host": escape(self.header("Host") or "", 256),
            "body_size": self.body_size,
        }


class RequestHandler(Protocol):
    """One request's handler (a new one per request).

    ``body`` receives body pieces as they arrive; ``respond`` returns the response
    outputs (Send …), the status code for the event, and whether the connection may
    stay open, optionally followed by a dict of extra fields for the request event
    (e.g. ``page``, ``shasum``; catalogue-declared names only). Extra fields never
    replace the engine's own request fields. ``capture_body`` asks the engine to
    store the body as an artifact.
    """

    capture_body: bool

    def begin(self, request: Request) -> list[Output]: ...

    def body(self, data: bytes) -> list[Output]: ...

    def respond(
        self, request: Request
    ) -> tuple[list[Output], int, bool] | tuple[list[Output], int, bool, Mapping[str, Any]]: ...


def _respond(handler: RequestHandler, request: Request) -> tuple[list[Output], int, bool, Mapping[str, Any]]:
    """Call ``handler.respond``; accept the 3-tuple and the 4-tuple (with extra event fields)."""
    result = handler.respond(request)
    if len(result) == 4:
        return result  # type: ignore[return-value]
    outputs, status, keep = result  # type: ignore[misc]
    return outputs, status, keep, {}


@dataclass
class _Body:
    mode: str  # "length" | "chunked" | "none"
    remaining: int = 0  # length mode: bytes left; chunked: bytes left in this chunk
    state: str = "size"  # chunked: size | data | crlf | trailer
    received: int = 0


@dataclass
class HTTPServerEngine:
    """One HTTP connection. ``handler_factory()`` makes a handler per request."""

    handler_factory: Callable[[], RequestHandler]
    request_event: str = "honeyjet.http.request"  # or honeyjet.ipp.request
    max_head: int = MAX_HEAD
    max_headers: int = MAX_HEADERS
    max_body: int = 64 * 2**20
    _buf: bytearray = field(default_factory=bytearray)
    _req: Request | None = None
    _handler: RequestHandler | None = None
    _body: _Body | None = None
    _closed: bool = False
    requests: int = 0

    @property
    def buffered_bytes(self) -> int:
        return len(self._buf)

    def feed(self, data: bytes) -> list[Output]:
        out: list[Output] = []
        if self._closed:
            return out
        self._buf += data
        while self._buf and not self._closed:
            if self._req is None:
                if not self._read_head(out):
                    break
            elif not self._read_body(out):
                break
        if self._closed:
            self._buf.clear()
        return out

    def eof(self) -> list[Output]:
        out: list[Output] = []
        if self._closed:
            return out
        if self._req is not None:
            # the peer stopped mid-body: answer what we have (a printer would time out)
            self._finish(out, truncated=True)
        elif self._buf.strip():
            self._malformed(out, bytes(self._buf), "incomplete request head")
        self._buf.clear()
        return out

    # -- head ------------------------------------------------------------------------------
    def _read_head(self, out: list[Output]) -> bool:
        buf = self._buf
        # tolerate blank lines between pipelined requests (RFC 9112 §2.2)
        while buf[:2] == b"\r\n" or buf[:1] == b"\n":
            del buf[: 2 if buf[:2] == b"\r\n" else 1]
        if not buf:
            return False
        end = buf.find(b"\r\n\r\n", 0, self.max_head + 4)
        sep = 4
        alt = buf.find(b"\n\n", 0, self.max_head + 2)
        if alt != -1 and (end == -1 or alt < end):
            end, sep = alt, 2
        if end == -1:
            if len(buf) > self.max_head:
                self._malformed(out, bytes(buf[: self.max_head]), "request head too large")
            elif not _plausible_start(bytes(buf[:16])):
                self._malformed(out, bytes(buf[: self.max_head]), "not an HTTP request")
            return False
        raw = bytes(buf[: end + sep])
        del buf[: end + sep]
        req = self._parse_head(raw)
        if req.malformed:
            self._malformed(out, raw, req.malformed, req)
            return False
        self._start(out, req)
        return True

    def _parse_head(self, raw: bytes) -> Request:
        lines = raw.rstrip(b"\r\n").replace(b"\r\n", b"\n").split(b"\n")
        m = _REQUEST_LINE.match(lines[0])
        if not m:
            return Request("", "", "", [], raw, malformed="bad request line")
        method, target, version = (g.decode("latin-1") for g in m.groups())
        headers: list[tuple[str, str]] = []
        for line in lines[1:]:
            if line[:1] in (b" ", b"\t"):
                return Request(method, target, version, headers, raw, malformed="obsolete line folding")
            h = _HEADER.match(line)
            if not h:
                return Request(method, target, version, headers, raw, malformed="bad header line")
            headers.append((h.group(1).decode("latin-1"), h.group(2).decode("latin-1")))
            if len(headers) > self.max_headers:
                return Request(method, target, version, headers, raw, malformed="too many headers")
        if version not in ("HTTP/1.0", "HTTP/1.1"):
            return Request(method, target, version, headers, raw, malformed="unsupported version")
        return Request(method, target, version, headers, raw)

    def _start(self, out: list[Output], req: Request) -> None:
        te = (req.header("Transfer-Encoding") or "").lower()
        cl = req.header("Content-Length")
        if te:
            if te != "chunked" or cl is not None:
                req.malformed = "unsupported transfer-encoding"
                self._malformed(out, req.raw_head, req.malformed, req)
                return
            body = _Body("chunked")
        elif cl is not None:
            if not cl.isdigit() or len(cl) > 15:
                req.malformed = "bad content-length"
                self._malformed(out, req.raw_head, req.malformed, req)
                return
            body = _Body("length", remaining=int(cl))
        else:
            body = _Body("none")
        self._req, self._body = req, body
        self._handler = self.handler_factory()
        self.requests += 1
        out.extend(self._handler.begin(req))
        if body.mode != "none" and (req.header("Expect") or "").lower() == "100-continue" and req.version == "HTTP/1.1":
            out.append(Send(b"HTTP/1.1 100 Continue\r\n\r\n"))
        if body.mode == "none" or (body.mode == "length" and body.remaining == 0):
            self._finish(out)

    # -- body ---------------------------------------------------------------------------------
    def _deliver(self, out: list[Output], data: bytes) -> None:
        req, handler, body = self._req, self._handler, self._body
        assert req is not None and handler is not None and body is not None
        body.received += len(data)
        req.body_size = body.received
        room = self.max_body - (body.received - len(data))
        if room <= 0:
            req.body_truncated = True
            return
        if len(data) > room:
            data = data[:room]
            req.body_truncated = True
        out.extend(handler.body(data))

    def _read_body(self, out: list[Output]) -> bool:
        body = self._body
        assert body is not None
        buf = self._buf
        if body.mode == "length":
            take = min(body.remaining, len(buf))
            self._deliver(out, bytes(buf[:take]))
            del buf[:take]
            body.remaining -= take
            if body.remaining == 0:
                self._finish(out)
                return True
            return False
        # chunked
        while buf:
            if body.state == "size":
                nl = buf.find(b"\n", 0, MAX_CHUNK_LINE)
                if nl == -1:
                    if len(buf) >= MAX_CHUNK_LINE:
                        self._abort(out, "chunk size line too long")
                    return False
                line = bytes(buf[:nl]).strip().split(b";", 1)[0]
                del buf[: nl + 1]
                try:
                    size = int(line, 16)
                except ValueError:
                    self._abort(out, "bad chunk size")
                    return False
                if size < 0 or len(line) > 15:
                    self._abort(out, "bad chunk size")
                    return False
                body.remaining = size
                body.state = "data" if size else "trailer"
            elif body.state == "data":
                take = min(body.remaining, len(buf))
                self._deliver(out, bytes(buf[:take]))
                del buf[:take]
                body.remaining -= take
                if body.remaining == 0:
                    body.state = "crlf"
            elif body.state == "crlf":
                if buf[:2] == b"\r\n":
                    del buf[:2]
                elif buf[:1] == b"\n":
                    del buf[:1]
                elif len(buf) < 2 and buf[:1] == b"\r":
                    return False
                else:
                    self._abort(out, "missing CRLF after chunk")
                    return False
                body.state = "size"
            else:  # trailer: header lines until an empty line
                nl = buf.find(b"\n", 0, MAX_CHUNK_LINE)
                if nl == -1:
                    if len(buf) >= MAX_CHUNK_LINE:
                        self._abort(out, "trailer line too long")
                    return False
                line = bytes(buf[:nl]).strip()
                del buf[: nl + 1]
                if not line:
                    self._finish(out)
                    return True
        return False

    # -- completion ----------------------------------------------------------------------------
    def _finish(self, out: list[Output], *, truncated: bool = False) -> None:
        req, handler = self._req, self._handler
        assert req is not None and handler is not None
        if truncated:
            req.body_truncated = True
        outputs, status, keep, extra = _respond(handler, req)
        out.extend(outputs)
        fields = dict(extra)
        fields.update(req.event_fields())
        fields.update(status=status, body_truncated=req.body_truncated, malformed="")
        out.append(Emit(self.request_event, f"{escape(req.method, 16)} {escape(req.target, 200)} -> {status}", fields))
        self._req = self._handler = self._body = None
        if truncated or not keep or not req.keep_alive:
            self._closed = True
            out.append(Close("response complete"))

    def _abort(self, out: list[Output], reason: str) -> None:
        req = self._req
        assert req is not None
        req.malformed = reason
        self._malformed(out, req.raw_head, reason, req)

    def _malformed(self, out: list[Output], raw: bytes, reason: str, req: Request | None = None) -> None:
        req = req or Request("", "", "", [], raw, malformed=reason)
        req.malformed = reason
        handler = self._handler or self.handler_factory()
        outputs, status, _, extra = _respond(handler, req)
        out.extend(outputs)
        fields = dict(extra)
        fields.update(req.event_fields())
        fields.update(status=status, body_truncated=req.body_truncated, malformed=reason, raw=escape(raw, 2048))
        out.append(Emit(self.request_event, f"malformed request ({reason}) -> {status}", fields))
        self._req = self._handler = self._body = None
        self._closed = True
        out.append(Close(reason))


def _plausible_start(head: bytes) -> bool:
    """Could these first bytes still become an HTTP request line?"""
    m = re.match(rb"^[!#$%&'*+.^_`|~0-9A-Za-z-]{0,32}( |$)", head)
    return m is not None
