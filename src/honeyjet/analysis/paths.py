"""Decoding attacker-supplied file names the way a lenient file system might.

PJL ``NAME="…"`` values and PostScript file operands reach the analysis escaped (see
:func:`honeyjet.text.escape`). Attackers hide ``..`` behind URL encoding (``%2e%2e%2f``,
double ``%252e``), overlong UTF-8 (``%c0%ae``), full-width dots, backslashes and
doubled dots (``....//``). :func:`decode_path` undoes all of that so a rule can ask one
question — did this name try to leave the volume? — whatever the spelling. Total on
any input, bounded work (input cut at 4 KiB, at most three decoding rounds).
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass

from honeyjet.text import unescape

MAX_PATH = 4096

_PCT = re.compile(rb"%(?:u([0-9a-fA-F]{4})|([0-9a-fA-F]{2}))")
# overlong / invalid UTF-8 encodings of '.', '/', '\' that lenient decoders accept
_OVERLONG = {
    b"\xc0\xae": b".",
    b"\xe0\x80\xae": b".",
    b"\xc0\xaf": b"/",
    b"\xe0\x80\xaf": b"/",
    b"\xc1\x9c": b"\\",
    b"\xc0\x2f": b"/",
    b"\xc0\x5c": b"\\",
}
_OVERLONG_RE = re.compile(b"|".join(re.escape(k) for k in sorted(_OVERLONG, key=len, reverse=True)))
# a PJL volume (0:, 1:) or a PostScript device (%disk0%, %rom%) at the start
_VOLUME = re.compile(r"^\s*(?:(\d{1,2}):|%([A-Za-z]{1,16}\d{0,2})%)")


@dataclass(frozen=True, slots=True)
class DecodedPath:
    raw: str  # as sent, latin-1 text
    decoded: str  # after every decoding round, separators as '/'
    volume: str  # '0:' / '%disk0%' / ''
    segments: tuple[str, ...]
    traversal: bool  # a '..' segment (after decoding) or an encoded separator trick
    encoded: bool  # decoding changed something (URL, overlong, full-width)


def _pct(m: re.Match[bytes]) -> bytes:
    if m.group(1):
        cp = int(m.group(1), 16)
        return chr(cp).encode("utf-8", "replace")
    return bytes([int(m.group(2), 16)])


def _to_text(data: bytes) -> str:
    data = _OVERLONG_RE.sub(lambda m: _OVERLONG[m.group(0)], data)
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        text = data.decode("latin-1")
    # full-width and other compatibility forms of '.', '/', '\'
    return unicodedata.normalize("NFKC", text)


def decode_path(value: str, *, escaped: bool = True) -> DecodedPath:
    """Decode one file name; ``escaped`` says it comes from an event field."""
    raw_bytes = unescape(value[:MAX_PATH * 4]) if escaped else value[:MAX_PATH].encode("latin-1", "replace")
    raw_bytes = raw_bytes[:MAX_PATH]
    raw = raw_bytes.decode("latin-1")
    data = raw_bytes
    for _ in range(3):  # %252e%252e → %2e%2e → ..
        decoded = _PCT.sub(_pct, data)
        if decoded == data:
            break
        data = decoded
    text = _to_text(data)
    encoded = text != raw
    text = text.replace("\\", "/").replace("\x00", "")
    volume = ""
    m = _VOLUME.match(text)
    if m:
        volume = m.group(0).strip()
        text = text[m.end():]
    segments = tuple(s.strip() for s in text.split("/") if s.strip() not in ("", "."))
    # '..', and the '....' / '.. .' spellings some parsers reduce to '..'
    traversal = any(s.startswith("..") and set(s) <= {".", " "} for s in segments)
    return DecodedPath(raw, "/".join(segments), volume, segments, traversal, encoded)
