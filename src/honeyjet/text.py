"""Turning attacker bytes into bounded, printable text for events and logs."""

from __future__ import annotations

import re

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
        # printable ASCII without a backslash renders as itself (most PJL and HTTP words)
        if len(data) <= limit and data.isascii() and data.isprintable() and "\\" not in data:
            return data
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


_UNESCAPE = re.compile(r"\\(?:x([0-9a-fA-F]{2})|([\\tnr]))")
_UNESCAPE_SHORT = {"\\": "\\", "t": "\t", "n": "\n", "r": "\r"}


def _unescape_one(m: re.Match[str]) -> str:
    hx = m.group(1)
    return chr(int(hx, 16)) if hx else _UNESCAPE_SHORT[m.group(2)]


def unescape(text: str) -> bytes:
    """Inverse of :func:`escape` (a trailing cut mark ``…`` is dropped); total on any input."""
    if text.endswith("…"):
        text = text[:-1]
    if "\\" in text:
        text = _UNESCAPE.sub(_unescape_one, text)
    try:
        return text.encode("latin-1")
    except UnicodeEncodeError:  # not from escape(): keep what cannot be latin-1 as UTF-8
        return b"".join(c.encode("latin-1") if ord(c) < 256 else c.encode("utf-8") for c in text)
