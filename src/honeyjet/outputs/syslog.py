"""Syslog channel: alerts (and, with ``syslog.all_events``, every event) over UDP or TCP.

Two formats:

* ``rfc5424`` — ``<PRI>1 TIMESTAMP HOSTNAME honeyjet - MSGID [honeyjet@32473 key="value" …] MSG``.
  MSGID is ``ALERT`` for an alert, ``DIGEST`` for a digest summary, the event id for an
  event. SD-PARAM values escape ``"``, ``\\`` and ``]``; list fields are repeated params
  (``attribution="…" attribution="…"``) except ``classes`` and ``rules``, which are joined
  with commas (ids never hold one).
* ``cef`` — ArcSight CEF carried as the MSG of an RFC 5424 header without structured data:
  ``<PRI>1 TIMESTAMP HOSTNAME honeyjet - ALERT - CEF:0|honeyjet|honeyjet|VERSION|SIG|NAME|SEV|ext``.

Every message is one line: attacker text is made printable (control and line-separator
characters become ``\\xNN`` text) and escaped for the field it lands in. Messages are bounded
— 2048 bytes over UDP (RFC 5426's SHOULD), 8192 over TCP: the free-text message is cut
first, then trailing parameters are dropped and ``truncated="true"`` (CEF: ``cs6=truncated``)
added. TCP uses octet-counting framing (RFC 6587), connects lazily within the timeout and
reconnects after a failure or when the receiver closed the connection.

A digest is sent as one message per alert it holds, followed by one ``DIGEST`` summary.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
import socket
import time
from datetime import datetime
from typing import Any, Callable

from honeyjet import __version__
from honeyjet.events import rfc3339
from honeyjet.outputs.alerts import clip_utf8, oneline
from honeyjet.outputs.base import QueuedOutput

SD_ID = "honeyjet@32473"
APP_NAME = "honeyjet"
UDP_MAX = 2048
TCP_MAX = 8192
VALUE_BYTES = 1024  # one SD-PARAM / CEF extension value, escaped
MIN_MSG = 64  # bytes of MSG kept before parameters are dropped
LIST_PARAMS = 32  # repeated params per list field
SYSLOG_SEVERITY = {"critical": 2, "high": 3, "medium": 4, "low": 5, "info": 6}
CEF_SEVERITY = {"info": 1, "low": 3, "medium": 5, "high": 8, "critical": 10}
_TS = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(?:\.\d{1,6})?(?:Z|[+-]\d\d:\d\d)$")
_HEADER_ONLY = frozenset({"eventid", "timestamp", "sensor", "message"})

# ----------------------------------------------------------------------------------------
# escaping


def header_token(value: Any, limit: int) -> str:
    """An RFC 5424 header field: printable US-ASCII without spaces (else ``_``), or ``-``."""
    text = "".join(c if 33 <= ord(c) <= 126 else "_" for c in str(value)[:limit])
    return text or "-"


def param_name(name: str) -> str:
    """SD-NAME: 1–32 printable US-ASCII except ``=``, space, ``]`` and ``"``."""
    text = "".join(c for c in name if 33 <= ord(c) <= 126 and c not in '=]"')[:32]
    return text or "_"


def _clip_escaped(text: str, limit: int) -> str:
    """Cut escaped text to ``limit`` bytes without leaving a dangling backslash."""
    if len(text.encode("utf-8")) <= limit:
        return text
    text = clip_utf8(text, limit - 3)
    tail = len(text) - len(text.rstrip("\\"))
    if tail % 2:
        text = text[:-1]
    return text + "…"


def sd_value(value: Any) -> str:
    """An SD-PARAM value: one line, ``"`` ``\\`` ``]`` escaped, bounded."""
    text = oneline(value, 512).replace("\\", "\\\\").replace('"', '\\"').replace("]", "\\]")
    return _clip_escaped(text, VALUE_BYTES)


def cef_header(value: Any, limit: int = 128) -> str:
    """A CEF header field: ``\\`` and ``|`` escaped, one line."""
    return oneline(value, limit).replace("\\", "\\\\").replace("|", "\\|")


_CEF_EXT = {"\\": "\\\\", "=": "\\=", "\n": "\\n", "\r": "\\r"}


def cef_value(value: Any, limit: int = 512) -> str:
    """A CEF extension value: ``\\`` and ``=`` escaped, newlines as ``\\n`` / ``\\r``, other
    control characters as ``\\xNN`` text."""
    text = str(value)
    if len(text) > limit:
        text = text[:limit] + "…"
    if text.isprintable() and "\\" not in text and "=" not in text:
        return _clip_escaped(text, VALUE_BYTES)
    out = []
    for ch in text:
        esc = _CEF_EXT.get(ch)
        if esc is None:
            esc = ch if ch.isprintable() else oneline(ch).replace("\\", "\\\\")
        out.append(esc)
    return _clip_escaped("".join(out), VALUE_BYTES)


def _scalar(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None:
        return ""
    if isinstance(value, (str, int, float)):
        return str(value)
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False, default=str)


def _timestamp(value: Any) -> str:
    text = str(value or "")
    return text if _TS.match(text) else rfc3339(time.time())


def _epoch_ms(value: Any) -> int:
    try:
        return int(datetime.fromisoformat(str(value).replace("Z", "+00:00")).timestamp() * 1000)
    except ValueError:
        return int(time.time() * 1000)


def _is_ip(value: str) -> bool:
    import ipaddress

    try:
        ipaddress.ip_address(value)
    except ValueError:
        return False
    return True


def fit(build: Callable[[list[str], str], str], parts: list[str], msg: str, limit: int, marker: str) -> bytes:
    """``build(parts, msg)`` encoded within ``limit`` bytes: the message is cut first, then
    parts are dropped from the end (``marker`` appended once)."""
    data = build(parts, msg).encode("utf-8")
    if len(data) <= limit:
        return data
    parts = list(parts)
    dropped = False
    while True:
        room = limit - len(build(parts, "").encode("utf-8"))
        if room >= MIN_MSG or not parts or (dropped and len(parts) == 1):
            text = msg
            while text:
                data = build(parts, text + "…").encode("utf-8")
                if len(data) <= limit:
                    return data
                text = text[: max(0, len(text) - max(1, len(data) - limit))]
            data = build(parts, "").encode("utf-8")
            return data if len(data) <= limit else clip_utf8(data.decode("utf-8"), limit).encode("utf-8")
        if dropped:
            parts.pop(-2)  # keep the marker last
        else:
            parts[-1] = marker
            dropped = True


# ----------------------------------------------------------------------------------------
# RFC 5424


def _list_params(name: str, values: Any) -> list[tuple[str, str]]:
    return [(name, _scalar(v)) for v in (values or [])[:LIST_PARAMS]]


def alert_params(alert: dict[str, Any]) -> list[tuple[str, str]]:
    params = [
        ("kind", alert.get("kind", "")),
        ("src_ip", alert.get("src_ip", "")),
        ("session", alert.get("session", "")),
        ("service", alert.get("service", "")),
        ("severity", alert.get("severity", "")),
        ("classes", ",".join(alert.get("classes") or [])),
        ("rules", ",".join(alert.get("rules") or [])),
        ("suppressed", str(alert.get("suppressed", 0))),
        ("event_uuid", alert.get("event_uuid", "")),
    ]
    params += _list_params("rule_names", alert.get("rule_names"))
    params += _list_params("attribution", alert.get("attribution"))
    return params


def event_params(event: dict[str, Any]) -> list[tuple[str, str]]:
    params: list[tuple[str, str]] = []
    for key, value in event.items():
        if key in _HEADER_ONLY:
            continue
        if isinstance(value, list) and all(isinstance(v, (str, int, float, bool)) or v is None for v in value):
            params += _list_params(key, value)
        else:
            params.append((key, _scalar(value)))
    return params


def rfc5424(pri: int, timestamp: Any, hostname: str, msgid: str, params: list[tuple[str, str]], msg: str, limit: int) -> bytes:
    head = f"<{pri}>1 {_timestamp(timestamp)} {header_token(hostname, 255)} {APP_NAME} - {header_token(msgid, 32)}"
    parts = [f'{param_name(k)}="{sd_value(v)}"' for k, v in params]

    def build(p: list[str], m: str) -> str:
        sd = f"[{SD_ID} {' '.join(p)}]" if p else "-"
        return f"{head} {sd} {m}" if m else f"{head} {sd}"

    return fit(build, parts, oneline(msg, 4096), limit, 'truncated="true"')


# ----------------------------------------------------------------------------------------
# CEF


def cef(pri: int, timestamp: Any, hostname: str, msgid: str, sig: str, name: str, severity: int, ext: list[tuple[str, Any]],
        msg: str, limit: int) -> bytes:
    head = (f"<{pri}>1 {_timestamp(timestamp)} {header_token(hostname, 255)} {APP_NAME} - {header_token(msgid, 32)} - "
            f"CEF:0|honeyjet|honeyjet|{cef_header(__version__, 32)}|{cef_header(sig, 64)}|{cef_header(name)}|{severity}|")
    parts = [f"{k}={cef_value(v)}" for k, v in ext if v is not None and v != ""]

    def build(p: list[str], m: str) -> str:
        items = p + ([f"msg={cef_value(m, 4096)}"] if m else [])
        return head + " ".join(items)

    text = str(msg or "")
    return fit(build, parts, text[:4096], limit, "cs6Label=truncated cs6=true")  # cef_value escapes newlines as \\n


def alert_ext(alert: dict[str, Any], hostname: str) -> list[tuple[str, Any]]:
    src = alert.get("src_ip", "")
    return [
        ("rt", _epoch_ms(alert.get("timestamp"))),
        ("src", src if _is_ip(src) else None),
        ("dvchost", oneline(alert.get("sensor") or hostname, 128)),
        ("cat", alert.get("kind", "")),
        ("app", alert.get("service", "")),
        ("externalId", alert.get("event_uuid", "")),
        ("cs1Label", "rules"),
        ("cs1", ",".join(alert.get("rules") or [])),
        ("cs2Label", "classes"),
        ("cs2", ",".join(alert.get("classes") or [])),
        ("cs3Label", "session"),
        ("cs3", alert.get("session", "") or None),
        ("cn1Label", "suppressed"),
        ("cn1", int(alert.get("suppressed") or 0)),
        ("cs4Label", "ruleNames"),
        ("cs4", "; ".join(alert.get("rule_names") or [])),
        ("cs5Label", "attribution"),
        ("cs5", "; ".join(alert.get("attribution") or []) or None),
    ]


def event_ext(event: dict[str, Any], hostname: str) -> list[tuple[str, Any]]:
    src, dst = str(event.get("src_ip") or ""), str(event.get("dst_ip") or "")
    rest = {k: v for k, v in event.items() if k not in _HEADER_ONLY and k not in ("src_ip", "src_port", "dst_ip", "dst_port",
                                                                                   "event_uuid", "protocol", "session")}
    return [
        ("rt", _epoch_ms(event.get("timestamp"))),
        ("src", src if _is_ip(src) else None),
        ("spt", event.get("src_port") or None),
        ("dst", dst if _is_ip(dst) else None),
        ("dpt", event.get("dst_port") or None),
        ("dvchost", oneline(event.get("sensor") or hostname, 128)),
        ("app", event.get("protocol", "")),
        ("externalId", event.get("event_uuid", "")),
        ("cs3Label", "session"),
        ("cs3", event.get("session") or None),
        ("cs5Label", "fields"),
        ("cs5", _scalar(rest) if rest else None),
    ]


# ----------------------------------------------------------------------------------------
# the channel


class SyslogOutput(QueuedOutput):
    """Alerts, digests and (``all_events``) events to a syslog receiver."""

    name = "syslog"

    def __init__(self, settings: Any, *, hostname: str = "") -> None:
        super().__init__(queue=settings.queue, timeout=settings.timeout)
        self.host = settings.host
        self.port = settings.port
        self.transport = settings.transport
        self.format = settings.format
        self.facility = settings.facility
        self.hostname = hostname or socket.gethostname()
        self.limit = TCP_MAX if self.transport == "tcp" else UDP_MAX
        self._sock: socket.socket | None = None
        self._reader: asyncio.StreamReader | None = None
        self._writer: asyncio.StreamWriter | None = None

    # -- formatting -------------------------------------------------------------------------

    def _pri(self, severity: Any) -> int:
        return self.facility * 8 + SYSLOG_SEVERITY.get(str(severity), 6)

    def format_alert(self, alert: dict[str, Any]) -> bytes:
        pri = self._pri(alert.get("severity"))
        if self.format == "cef":
            classes = alert.get("classes") or ["unclassified"]
            names = alert.get("rule_names") or classes
            return cef(pri, alert.get("timestamp"), self.hostname, "ALERT", classes[0], names[0],
                       CEF_SEVERITY.get(alert.get("severity", ""), 1), alert_ext(alert, self.hostname), alert.get("message", ""), self.limit)
        return rfc5424(pri, alert.get("timestamp"), self.hostname, "ALERT", alert_params(alert), alert.get("message", ""), self.limit)

    def format_event(self, event: dict[str, Any]) -> bytes:
        eventid = str(event.get("eventid") or "event")
        severity = event.get("severity") if eventid.startswith("honeyjet.verdict.") else "info"
        pri = self._pri(severity)
        if self.format == "cef":
            return cef(pri, event.get("timestamp"), self.hostname, eventid, eventid, oneline(event.get("message") or eventid, 128),
                       CEF_SEVERITY.get(str(severity), 1), event_ext(event, self.hostname), event.get("message", ""), self.limit)
        return rfc5424(pri, event.get("timestamp"), self.hostname, eventid, event_params(event), event.get("message", ""), self.limit)

    def format_digest(self, digest: dict[str, Any]) -> list[bytes]:
        out = [self.format_alert(a) for a in digest.get("digest", [])]
        sev = ", ".join(f"{n} {s}" for s, n in sorted(digest.get("by_severity", {}).items()))
        msg = f"digest: {digest.get('count', 0)} alerts ({sev}) from {digest.get('sensor', '')}"
        if digest.get("omitted"):
            msg += f", {digest['omitted']} not listed"
        pri = self._pri("info")
        if self.format == "cef":
            ext = [("rt", _epoch_ms(digest.get("period_end"))), ("start", _epoch_ms(digest.get("period_start"))),
                   ("end", _epoch_ms(digest.get("period_end"))), ("cnt", digest.get("count", 0)),
                   ("dvchost", oneline(digest.get("sensor") or self.hostname, 128))]
            out.append(cef(pri, digest.get("period_end"), self.hostname, "DIGEST", "digest", "Alert digest", 1, ext, msg, self.limit))
        else:
            params = [("count", str(digest.get("count", 0))), ("omitted", str(digest.get("omitted", 0))),
                      ("period_start", digest.get("period_start", "")), ("period_end", digest.get("period_end", ""))]
            params += [(f"severity_{s}", str(n)) for s, n in sorted(digest.get("by_severity", {}).items())]
            out.append(rfc5424(pri, digest.get("period_end"), self.hostname, "DIGEST", params, msg, self.limit))
        return out

    def render(self, item: tuple[str, dict[str, Any]]) -> list[bytes]:
        kind, payload = item
        if kind == "alert":
            return [self.format_alert(payload)]
        if kind == "digest":
            return self.format_digest(payload)
        return [self.format_event(payload)]

    # -- sending ----------------------------------------------------------------------------

    async def deliver(self, item: tuple[str, dict[str, Any]]) -> None:
        send = self._send_tcp if self.transport == "tcp" else self._send_udp
        for data in self.render(item):
            await send(data)

    async def _send_udp(self, data: bytes) -> None:
        loop = asyncio.get_running_loop()
        if self._sock is None:
            infos = await loop.getaddrinfo(self.host, self.port, type=socket.SOCK_DGRAM)
            family, type_, proto, _, addr = infos[0]
            sock = socket.socket(family, type_, proto)
            sock.setblocking(False)
            try:
                sock.connect(addr)  # a connected UDP socket reports ICMP "port unreachable" as an error
            except OSError:
                sock.close()
                raise
            self._sock = sock
        try:
            await loop.sock_sendall(self._sock, data)
        except OSError:
            self._close_udp()
            raise

    async def _send_tcp(self, data: bytes) -> None:
        frame = b"%d " % len(data) + data
        for attempt in range(2):
            fresh = False
            if self._writer is None or self._writer.is_closing() or (self._reader is not None and self._reader.at_eof()):
                await self._close_tcp()
                self._reader, self._writer = await asyncio.wait_for(asyncio.open_connection(self.host, self.port), self.timeout)
                fresh = True
            try:
                self._writer.write(frame)
                await self._writer.drain()
                return
            except (ConnectionError, OSError):
                await self._close_tcp()
                if fresh or attempt:
                    raise

    def _close_udp(self) -> None:
        if self._sock is not None:
            self._sock.close()
            self._sock = None

    async def _close_tcp(self) -> None:
        writer, self._writer, self._reader = self._writer, None, None
        if writer is not None:
            writer.close()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(writer.wait_closed(), 1.0)

    async def closed(self) -> None:
        self._close_udp()
        await self._close_tcp()
