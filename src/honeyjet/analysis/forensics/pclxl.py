"""Best-effort PCL XL (PCL 6) text (pure, total, bounded).

A PCL XL stream is a header line (``) HP-PCL XL;2;0;…``: ``)`` little-endian binding,
``(`` big-endian) followed by tagged data values, attribute ids and one-byte operators
(PCL XL Feature Reference, "Binary stream format"). The walker decodes the value tags
(scalars, arrays, xy pairs, boxes), attribute ids (``0xF8`` + byte, ``0xF9`` + word),
embedded data (``0xFA`` + uint32 length, ``0xFB`` + byte length, skipped) and counts
``EndPage``. Text is the ``TextData`` array of each ``Text``/``TextPath`` operator;
drivers that download TrueType fonts put glyph indices there, so only runs that are
mostly printable character codes are kept. ``FontName`` values are collected too.
Anything unknown stops the walk; nothing is ever trusted for an allocation.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field

# value tags: (element size, struct code, elements)
_SCALARS = {0xC0: (1, "B"), 0xC1: (2, "H"), 0xC2: (4, "I"), 0xC3: (2, "h"), 0xC4: (4, "i"), 0xC5: (4, "f")}
_ARRAYS = {0xC8: (1, "B"), 0xC9: (2, "H"), 0xCA: (4, "I"), 0xCB: (2, "h"), 0xCC: (4, "i"), 0xCD: (4, "f")}
_XY = {0xD0: 1, 0xD1: 2, 0xD2: 4, 0xD3: 2, 0xD4: 4, 0xD5: 4}
_BOX = {0xE0: 1, 0xE1: 2, 0xE2: 4, 0xE3: 2, 0xE4: 4, 0xE5: 4}
_WHITESPACE = frozenset(b"\x00\x09\x0a\x0b\x0c\x0d\x20")

ATTR_POINT = 0x4C
ATTR_FONT_NAME = 0xA8
ATTR_TEXT_DATA = 0xAB
OP_END_PAGE = 0x44
OP_SET_CURSOR = 0x6B
OP_TEXT = 0xA8
OP_TEXT_PATH = 0xA9
MAX_ARRAY = 1 << 16  # elements of an array kept in memory (longer arrays are skipped)


@dataclass
class PCLXLText:
    text: str = ""
    pages: int = 0
    fonts: list[str] = field(default_factory=list)
    error: str = ""
    truncated: bool = False


def _header_end(data: bytes) -> tuple[int, str] | None:
    """Offset after the stream header line and the byte order it declares."""
    nl = data.find(b"\n", 0, 256)
    if nl == -1 or data[:1] not in (b")", b"("):
        return None
    return nl + 1, "<" if data[:1] == b")" else ">"


def pclxl_text(data: bytes, max_chars: int = 65536, max_ops: int = 2_000_000) -> PCLXLText:
    """Walk the stream and collect text runs; never raises."""
    out = PCLXLText()
    try:
        _walk(data, out, max_chars, max_ops)
    except Exception as exc:  # noqa: BLE001 - total: any malformation ends the walk
        out.error = f"{type(exc).__name__}"
    return out


def _walk(data: bytes, out: PCLXLText, max_chars: int, max_ops: int) -> None:
    head = _header_end(data)
    if head is None:
        out.error = "no PCL XL stream header"
        return
    pos, order = head
    n = len(data)
    runs: list[str] = []
    size = 0
    values: list[object] = []  # values since the last attribute id / operator
    attrs: dict[int, object] = {}
    last_y: float | None = None
    ops = 0
    while pos < n:
        ops += 1
        if ops > max_ops:
            out.error = "operation limit"
            break
        tag = data[pos]
        pos += 1
        if tag in _WHITESPACE:
            continue
        if tag == 0x1B:  # the UEL that ends the job
            break
        if tag in _SCALARS:
            width, code = _SCALARS[tag]
            values = [struct.unpack_from(order + code, data, pos)[0]]
            pos += width
        elif tag in _ARRAYS:
            width, code = _ARRAYS[tag]
            length_tag = data[pos]
            if length_tag == 0xC0:
                count = data[pos + 1]
                pos += 2
            elif length_tag == 0xC1:
                count = struct.unpack_from(order + "H", data, pos + 1)[0]
                pos += 3
            elif length_tag == 0xC2:
                count = struct.unpack_from(order + "I", data, pos + 1)[0]
                pos += 5
            else:
                out.error = f"bad array length tag 0x{length_tag:02x} at {pos}"
                break
            end = pos + count * width
            if end > n:
                out.truncated = True
                break
            values = list(struct.unpack_from(f"{order}{count}{code}", data, pos)) if count <= MAX_ARRAY else []
            pos = end
        elif tag in _XY:
            width = _XY[tag]
            code = {1: "B", 2: "H" if tag == 0xD1 else "h", 4: "f" if tag == 0xD5 else ("I" if tag == 0xD2 else "i")}[width]
            values = list(struct.unpack_from(order + code * 2, data, pos))
            pos += 2 * width
        elif tag in _BOX:
            pos += 4 * _BOX[tag]
            values = []
        elif tag == 0xF8:
            attrs[data[pos]] = values
            pos += 1
        elif tag == 0xF9:
            attrs[struct.unpack_from(order + "H", data, pos)[0]] = values
            pos += 2
        elif tag == 0xFA:
            pos += 4 + struct.unpack_from(order + "I", data, pos)[0]
        elif tag == 0xFB:
            pos += 1 + data[pos]
        elif 0x41 <= tag <= 0xBF:  # an operator consumes the attribute list
            if tag == OP_END_PAGE:
                out.pages += 1
                runs.append("\n")
            elif tag == OP_SET_CURSOR:
                point = attrs.get(ATTR_POINT)
                if isinstance(point, list) and len(point) == 2:
                    y = float(point[1])  # type: ignore[arg-type]
                    if last_y is not None and y != last_y:
                        runs.append("\n")
                    last_y = y
            elif tag in (OP_TEXT, OP_TEXT_PATH):
                run = _printable(attrs.get(ATTR_TEXT_DATA))
                if run:
                    if runs and runs[-1] != "\n":
                        runs.append(" ")
                    runs.append(run)
                    size += len(run)
                    if size >= max_chars:
                        out.truncated = True
                        break
            name = attrs.get(ATTR_FONT_NAME)
            if name and len(out.fonts) < 16:
                font = _printable(name)
                if font and font not in out.fonts:
                    out.fonts.append(font.strip())
            attrs = {}
            values = []
        else:
            out.error = f"unknown tag 0x{tag:02x} at {pos - 1}"
            break
    else:
        pos = n
    if pos > n:
        out.truncated = True
    out.text = "".join(runs).strip("\n")[:max_chars]
    if out.text:
        out.text += "\n"


def _printable(value: object) -> str:
    """Character codes as text when at least 80 % are printable Latin-1, else ''."""
    if not isinstance(value, list) or not value or not all(isinstance(v, int) for v in value):
        return ""
    codes = [v for v in value if isinstance(v, int)]
    good = sum(1 for c in codes if 0x20 <= c < 0x7F or 0xA0 <= c <= 0xFF)
    if good < 0.8 * len(codes):
        return ""
    return "".join(chr(c) if (0x20 <= c < 0x7F or 0xA0 <= c <= 0xFF) else " " for c in codes)
