"""Guess what a stream of job bytes is from its first bytes (pure, total).

Used when a job arrives without ``ENTER LANGUAGE``: a printer in PERSONALITY=AUTO
looks at the first bytes the same way. Analysis reuses it for stored jobs.
"""

from __future__ import annotations

import re

SNIFF_BYTES = 32  # how many leading bytes sniff() wants before it decides

_WS = b" \t\r\n\x00\x0c"  # a subset of the engine's whitespace set
_HTTP_PREFIX = re.compile(rb"^(GET|POST|HEAD|PUT|OPTIONS|DELETE|CONNECT|TRACE|PATCH|PROPFIND) ", re.I)


def sniff(head: bytes) -> str:
    """Language of a job from its first bytes (only the first SNIFF_BYTES after
    leading whitespace are looked at, so the answer cannot depend on chunking).

    One of ``postscript``, ``pdf``, ``pcl``, ``pclxl``, ``pjl``, ``http``, ``tls``,
    ``socks``, ``giop``, ``telnet``, ``text``, ``binary``, ``empty``.
    """
    data = head.lstrip(_WS)[:SNIFF_BYTES]
    if not data:
        return "empty"
    if data.startswith(b"%!") or data.startswith(b"\x04%!"):
        return "postscript"
    if data.startswith(b"%PDF-"):
        return "pdf"
    if data.startswith(b") HP-PCL XL") or data.startswith(b") BROTHER XL"):
        return "pclxl"
    if data.startswith(b"@PJL"):
        return "pjl"
    if data[:1] == b"\x1b":
        return "pcl"
    if _HTTP_PREFIX.match(data):
        return "http"
    if data[:1] == b"\x16" and data[1:2] == b"\x03":
        return "tls"
    # SOCKS4 CONNECT/BIND (command 1 or 2); SOCKS5 greeting (1-10 methods)
    if len(data) >= 2 and ((data[0] == 0x04 and data[1] in (1, 2)) or (data[0] == 0x05 and 1 <= data[1] <= 10)):
        return "socks"
    if data.startswith(b"GIOP"):
        return "giop"
    if data[:1] == b"\xff" and data[1:2] in (b"\xfb", b"\xfc", b"\xfd", b"\xfe"):
        return "telnet"
    printable = sum(1 for b in data if 0x20 <= b < 0x7F or b in (9, 10, 12, 13) or b >= 0xA0)
    return "text" if printable >= len(data) * 0.9 else "binary"
