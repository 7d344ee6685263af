"""Turning attacker bytes into bounded, printable text for events and logs."""

from __future__ import annotations

_PRINTABLE = frozenset(range(0x20, 0x7F)) - {0x5C}  # backslash is escaped too
_ESC_TABLE = {i: (chr(i) if i in _PRINTABLE else f"\\x{i:02x}") for i in range(256)}
_ESC_TABLE[0x5C] = "\\\\"
_ESC_TABLE[0x09] = "\\t"
_ESC_TABLE[0x0A] = "\\n"
_ESC_TABLE[0x0D] = "\\r"

DEFAULT_LIMIT = 512


def escape(data: bytes | str, limit: int = DEFAULT_LIMIT) -> str:
    """Printable ASCII as is, everything else as ``\\xNN`` (``\\t \\n \\r \\\\`` short forms).

    Strings are encoded as latin-1 where possible (PJL and PostScript are byte
    protocols, so a str here came from a latin-1 decode), UTF-8 otherwise. At most
    ``limit`` input bytes are rendered; a cut is marked with a trailing ``…``.
    """
    if isinstance(data, str):
        try:
            data = data.encode("latin-1")
        except UnicodeEncodeError:
            data = data.encode("utf-8", "backslashreplace")
    cut = len(data) > limit
    table = _ESC_TABLE
    text = "".join([table[b] for b in data[:limit]])
    return text + "…" if cut else text


def is_truncated(data: bytes | str, limit: int = DEFAULT_LIMIT) -> bool:
    return len(data) > limit


_UNESCAPE_SHORT = {"\\": 0x5C, "t": 0x09, "n": 0x0A, "r": 0x0D}


def unescape(text: str) -> bytes:
    """Inverse of :func:`escape` (a trailing cut mark ``…`` is dropped); total on any input."""
    if text.endswith("…"):
        text = text[:-1]
    out = bytearray()
    i, n = 0, len(text)
    while i < n:
        ch = text[i]
        if ch == "\\" and i + 1 < n:
            nxt = text[i + 1]
            short = _UNESCAPE_SHORT.get(nxt)
            if short is not None:
                out.append(short)
                i += 2
                continue
            if nxt == "x" and i + 3 < n and _is_hex(text[i + 2 : i + 4]):
                out.append(int(text[i + 2 : i + 4], 16))
                i += 4
                continue
        out.extend(ch.encode("latin-1", "replace") if ord(ch) < 256 else ch.encode("utf-8"))
        i += 1
    return bytes(out)


def _is_hex(s: str) -> bool:
    return len(s) == 2 and all(c in "0123456789abcdefABCDEF" for c in s)
