"""PCL5 text extractor: a streaming, total, bounded state machine (bytes in, text out).

What it understands (HP PCL5 Technical Reference, ch. 2 "PCL command syntax"):

* two-character escapes ``ESC`` + 0x30–0x7E (``ESC E`` reset ends a page of text);
* parameterised escapes ``ESC`` + parameter character 0x21–0x2F + optional group
  character 0x60–0x7E, then value + parameter character groups: a lower-case
  parameter character continues the sequence, an upper-case one ends it;
* commands followed by binary data (raster rows, soft-font headers and characters,
  symbol sets, patterns, dither matrices, configuration blocks …) skip their byte
  count, whatever it claims; ``ESC & p # X`` transparent data is kept as text;
* cursor moves become separators (vertical → newline, horizontal → space), so driver
  output that places every word separately still reads as text;
* the UEL ``ESC%-12345X`` and the ``@PJL`` lines after it are skipped;
* HP-GL/2 (``ESC%#B`` … ``ESC%#A``): the text of ``LB`` (and ``BL``) labels up to the
  label terminator (ETX unless ``DT`` changed it); ``PE`` and ``CO`` data are skipped;
* LF, CR, CRLF and FF become one newline each; other control bytes are dropped; bytes
  are read as Latin-1.

Feeding the same bytes in any chunking yields the same text. State is a handful of
scalars plus at most a few bytes of look-ahead; text stops at ``max_chars`` (parsing
and page counting go on).
"""

from __future__ import annotations

import re

ESC = 0x1B
UEL = b"\x1b%-12345X"
MAX_VALUE = 32  # characters of one numeric value that are kept (the rest is read and ignored)

#: (parameter char, group char, terminator) of commands that are followed by value bytes of data
DATA_COMMANDS = frozenset(
    [
        (b"*", b"b", b"W"),  # raster row
        (b"*", b"b", b"V"),  # raster plane
        (b"(", b"s", b"W"),  # character download
        (b")", b"s", b"W"),  # font header download
        (b"(", b"f", b"W"),  # symbol set definition
        (b"*", b"v", b"W"),  # configure image data
        (b"&", b"n", b"W"),  # alphanumeric id
        (b"*", b"m", b"W"),  # download dither matrix
        (b"*", b"l", b"W"),  # colour lookup tables
        (b"&", b"b", b"W"),  # configuration (I/O)
        (b"*", b"o", b"W"),  # driver configuration
        (b"*", b"i", b"W"),  # viewing illuminant
        (b"*", b"c", b"W"),  # user-defined pattern
        (b"*", b"g", b"W"),  # configure raster data
    ]
)
TRANSPARENT = (b"&", b"p", b"X")
FONT_HEADER = (b")", b"s", b"W")
_FONT_CONTROL = (b"*", b"c", b"F")  # 5 = make the current soft font permanent
_MACRO_CONTROL = (b"&", b"f", b"X")  # 0 = start a macro definition, 10 = make it permanent
#: font header formats of the PCL 5 reference (bitmap, Intellifont, TrueType, universal …)
FONT_FORMATS = frozenset([0, 10, 11, 12, 15, 16, 20])
MIN_FONT_DESCRIPTOR = 64
_VERTICAL = frozenset([(b"*", b"p", b"Y"), (b"&", b"a", b"R"), (b"&", b"a", b"V")])
_PAGE_EJECT = (b"&", b"l", b"H")
_HORIZONTAL = frozenset([(b"*", b"p", b"X"), (b"&", b"a", b"C"), (b"&", b"a", b"H")])

# states
_TEXT, _ESC, _PARAM, _VALUE, _DATA, _TRANSP, _PJL_START, _PJL_LINE, _HPGL = range(9)
# HP-GL/2 sub-states
_H_CMD, _H_CMD2, _H_ARGS, _H_LABEL, _H_DT, _H_SKIP = range(6)

_CONTROL = re.compile(rb"[\x00-\x08\x0a-\x1f\x7f-\x9f]")
# a whole parameterised escape sequence (the fast path; anything else goes byte by byte)
_SEQUENCE = re.compile(rb"\x1b([\x21-\x2f])([\x60-\x7e]?)((?:[0-9+\-.]{0,32}[\x60-\x7e]){0,64}[0-9+\-.]{0,32}[\x40-\x5e])")
_PAIR = re.compile(rb"([0-9+\-.]{0,32})([\x40-\x5e\x60-\x7e])")


class PCL5Text:
    """Feed bytes with :meth:`feed`, read :attr:`text` (or call :meth:`close` first)."""

    def __init__(self, max_chars: int = 65536):
        self.max_chars = max_chars
        self.truncated = False
        self.pages = 0  # pages ejected with something on them (text or raster)
        self._dirty = False  # the current page has marks
        self.first_page_end: int | None = None  # characters of text on the first page
        self._parts: list[str] = []
        self._len = 0
        self._state = _TEXT
        self._cr = False  # the last text byte was CR (so a following LF adds nothing)
        self._sep = ""  # separator owed before the next text ("" / " " / "\n")
        self._last = "\n"  # last character written
        # escape sequence being read
        self._pchar = b""
        self._group = b""
        self._value = bytearray()
        self._value_len = 0
        self._remaining = 0  # data bytes to skip / keep
        # soft fonts and macros (what font-parser exploits look like)
        self.font_headers = 0
        self.font_anomalies = 0
        self.macros = 0
        self.permanent = False
        self._font_head: bytearray | None = None  # first bytes of a font header being skipped
        self._font_count = 0
        self._continue = False  # after the data, the sequence continues (lower-case terminator)
        # PJL after a UEL
        self._pjl_head = bytearray()
        self._pjl_line = bytearray()
        # HP-GL/2
        self._h = _H_CMD
        self._hcmd = b""
        self._term = 0x03
        self._quoted = False

    # -- output ---------------------------------------------------------------------------
    @property
    def text(self) -> str:
        return "".join(self._parts)

    def _emit(self, s: str) -> None:
        if not s or self.truncated:
            return
        if self._sep:
            sep, self._sep = self._sep, ""
            if self._last not in " \n":
                self._emit(sep)
        room = self.max_chars - self._len
        if len(s) > room:
            s = s[:room]
            self.truncated = True
        if s:
            self._parts.append(s)
            self._len += len(s)
            self._last = s[-1]

    def _text_bytes(self, data: bytes) -> None:
        """Printable bytes (Latin-1) without control characters."""
        if data:
            self._cr = False
            if not self._dirty and data.strip():
                self._dirty = True
            self._emit(data.decode("latin-1"))

    def _newline(self) -> None:
        self._sep = ""
        self._emit("\n")

    def _page_break(self) -> None:
        """FF, ``ESC&l0H`` or ``ESC E``: a page with marks on it is ejected."""
        if self._len and self._last != "\n":
            self._newline()
        if self._len and self.first_page_end is None:
            self.first_page_end = self._len
        if self._dirty:
            self.pages += 1
            self._dirty = False

    def _separator(self, sep: str) -> None:
        if sep == "\n" or not self._sep:
            self._sep = sep

    def _control(self, b: int) -> None:
        if b == 0x0A:
            if not self._cr:
                self._newline()
            self._cr = False
            return
        self._cr = b == 0x0D
        if b == 0x0D:
            self._newline()
        elif b == 0x0C:
            self._page_break()
        elif b == 0x09:
            self._emit("\t")
        # other control bytes (and 0x7f-0x9f) print nothing

    # -- input ----------------------------------------------------------------------------
    def feed(self, data: bytes) -> None:
        """Consume a chunk. Never raises for any input. Past ``max_chars`` the text is
        dropped but the stream is still parsed (pages keep being counted)."""
        if not data:
            return
        data = bytes(data)
        pos, n = 0, len(data)
        while pos < n:
            state = self._state
            if state == _TEXT:
                pos = self._run_text(data, pos)
            elif state == _DATA:
                take = min(self._remaining, n - pos)
                if self._font_head is not None and len(self._font_head) < 4:
                    self._font_head += data[pos : pos + min(take, 4 - len(self._font_head))]
                pos += take
                self._remaining -= take
                if not self._remaining:
                    self._after_data()
            elif state == _TRANSP:
                take = min(self._remaining, n - pos)
                chunk = data[pos : pos + take]
                self._text_bytes(_CONTROL.sub(b"", chunk))
                pos += take
                self._remaining -= take
                if not self._remaining:
                    self._after_data()
            elif state == _PJL_LINE:
                nl = data.find(b"\n", pos)
                end = n if nl == -1 else nl + 1
                if len(self._pjl_line) < 64:
                    self._pjl_line += data[pos : min(end, pos + 64 - len(self._pjl_line))]
                pos = end
                if nl != -1:
                    entered = self._pjl_line[4:].strip().upper().startswith(b"ENTER")
                    self._pjl_line.clear()
                    self._state = _TEXT if entered else _PJL_START
            elif state == _HPGL:
                pos = self._run_hpgl(data, pos)
            else:
                self._byte(data[pos])
                pos += 1

    def _run_text(self, data: bytes, pos: int) -> int:
        m = _CONTROL.search(data, pos)
        end = len(data) if m is None else m.start()
        if end > pos:
            self._text_bytes(data[pos:end])
        if m is None:
            return end
        b = data[end]
        if b == ESC:
            self._cr = False
            m = _SEQUENCE.match(data, end)
            if m is not None:
                return self._sequence(m)
            self._state = _ESC
        else:
            self._control(b)
        return end + 1

    def _sequence(self, m: re.Match[bytes]) -> int:
        """A complete escape sequence matched in the buffer; returns where reading resumes."""
        self._pchar, self._group = m.group(1), m.group(2)
        base = m.start(3)
        for pair in _PAIR.finditer(m.group(3)):
            term = pair.group(2)[0]
            more = term >= 0x60
            self._value[:] = pair.group(1)
            self._value_len = len(self._value)
            self._command(bytes([term - 0x20 if more else term]), more)
            if self._state not in (_TEXT, _VALUE):  # data, PJL or HP-GL/2 follow this parameter
                return base + pair.end()
        return m.end()

    def _byte(self, b: int) -> None:
        """One byte in an escape sequence or at the start of a PJL line."""
        state = self._state
        if state == _ESC:
            if 0x21 <= b <= 0x2F:
                self._pchar, self._group = bytes([b]), b""
                self._state = _PARAM
            elif 0x30 <= b <= 0x7E:
                self._state = _TEXT
                if b == 0x45:  # ESC E: printer reset
                    self._page_break()
            elif b != ESC:
                self._state = _TEXT
                self._reprocess(b)
        elif state == _PARAM:
            self._state = _VALUE
            self._value.clear()
            self._value_len = 0
            if 0x60 <= b <= 0x7E:
                self._group = bytes([b])
            else:
                self._byte(b)
        elif state == _VALUE:
            self._value_byte(b)
        elif state == _PJL_START:
            self._pjl_byte(b)

    def _reprocess(self, b: int) -> None:
        if b == ESC:
            self._state = _ESC
        elif b < 0x20 or 0x7F <= b <= 0x9F:
            self._control(b)
        else:
            self._text_bytes(bytes([b]))

    def _value_byte(self, b: int) -> None:
        if 0x30 <= b <= 0x39 or b in (0x2B, 0x2D, 0x2E):  # digits + - .
            if self._value_len < MAX_VALUE:
                self._value.append(b)
            self._value_len += 1
            return
        if 0x40 <= b <= 0x5E or 0x60 <= b <= 0x7E:
            upper = b <= 0x5E
            self._command(bytes([b - 0x20 if not upper else b]), not upper)
            if self._state == _VALUE:  # a continued sequence reads the next value
                self._value.clear()
                self._value_len = 0
            return
        # malformed: the sequence ends here and the byte is read as data
        self._state = _TEXT
        self._reprocess(b)

    def _number(self) -> float:
        raw = bytes(self._value)
        m = re.match(rb"[+-]?(\d*\.?\d*)", raw)
        body = m.group(1) if m else b""
        if body in (b"", b"."):
            return 0.0
        value = float(body)
        return -value if raw[:1] == b"-" else value

    def _command(self, term: bytes, more: bool) -> None:
        pchar, group = self._pchar, self._group
        self._state = _VALUE if more else _TEXT
        if pchar == b"%" and not group:
            if term == b"X" and self._value == b"-12345":  # UEL
                self._state = _PJL_START
                self._pjl_head.clear()
            elif term == b"B":  # enter HP-GL/2
                self._state = _HPGL
                self._h = _H_CMD
            return
        key = (pchar, group, term)
        if key in DATA_COMMANDS or key == TRANSPARENT:
            value = self._number()
            count = int(value) if value > 0 else 0
            self._continue = more
            if key == FONT_HEADER:
                self.font_headers += 1
                self._font_head, self._font_count = bytearray(), count
                if not count:
                    self._font_done()
            if count:
                self._remaining = count
                self._state = _TRANSP if key == TRANSPARENT else _DATA
                if pchar == b"*" and group == b"b":
                    self._dirty = True  # a raster row
        elif key == _FONT_CONTROL:
            if self._number() == 5:
                self.permanent = True
        elif key == _MACRO_CONTROL:
            value = self._number()
            if value == 0:
                self.macros += 1
            elif value == 10:
                self.permanent = True
        elif key == _PAGE_EJECT:
            if self._number() == 0:
                self._page_break()
        elif key in _VERTICAL:
            if self._value[:1] not in (b"+", b"-") or self._number():
                self._separator("\n")
        elif key in _HORIZONTAL:
            self._separator(" ")

    def _font_done(self) -> None:
        """Check a font header's own size fields against the download that carried it."""
        head, count = self._font_head or b"", self._font_count
        self._font_head = None
        size = int.from_bytes(head[:2], "big") if len(head) >= 2 else 0
        fmt = head[2] if len(head) >= 3 else -1
        if count < MIN_FONT_DESCRIPTOR or size < MIN_FONT_DESCRIPTOR or size > count or fmt not in FONT_FORMATS:
            self.font_anomalies += 1

    def facts(self) -> dict[str, int | bool]:
        return {"font_headers": self.font_headers, "font_anomalies": self.font_anomalies,
                "macros": self.macros, "permanent": self.permanent}

    def _after_data(self) -> None:
        if self._font_head is not None:
            self._font_done()
        self._value.clear()
        self._value_len = 0
        self._state = _VALUE if self._continue else _TEXT

    # -- PJL after a UEL ------------------------------------------------------------------
    def _pjl_byte(self, b: int) -> None:
        head = self._pjl_head
        if not head and b in b" \t\r\n\x00":
            return  # blank lines between PJL commands
        if not head and b == ESC:
            self._state = _ESC  # another UEL, or the PCL job itself
            return
        head.append(b)
        if b"@PJL".startswith(bytes(head)):
            if len(head) == 4:
                self._pjl_line[:] = head
                head.clear()
                self._state = _PJL_LINE
            return
        pending = bytes(head)
        head.clear()
        self._state = _TEXT
        self.feed(pending)  # not PJL after all: the job's first bytes (at most 4)

    # -- HP-GL/2 --------------------------------------------------------------------------
    def _run_hpgl(self, data: bytes, pos: int) -> int:
        n = len(data)
        while pos < n:
            b = data[pos]
            h = self._h
            if b == ESC:
                self._state = _ESC
                return pos + 1
            if h == _H_LABEL:
                end = pos
                term = self._term
                while end < n and data[end] != term and data[end] != ESC:
                    end += 1
                if end > pos:
                    self._label(data[pos:end])
                if end < n and data[end] == term:
                    self._h = _H_CMD
                    self._separator("\n")
                    end += 1
                pos = end
                continue
            pos += 1
            if h == _H_CMD:
                if 0x41 <= (b & 0xDF) <= 0x5A:
                    self._hcmd = bytes([b & 0xDF])
                    self._h = _H_CMD2
            elif h == _H_CMD2:
                if 0x41 <= (b & 0xDF) <= 0x5A:
                    self._mnemonic(self._hcmd + bytes([b & 0xDF]))
                else:
                    self._h = _H_CMD
                    pos -= 1
            elif h == _H_ARGS:
                if b == 0x3B:
                    self._h = _H_CMD
                elif 0x41 <= (b & 0xDF) <= 0x5A:
                    self._h = _H_CMD
                    pos -= 1
            elif h == _H_DT:
                self._term = 0x03 if b == 0x3B else b
                self._h = _H_CMD if b == 0x3B else _H_ARGS
            else:  # _H_SKIP: PE data or a CO comment, up to ';' outside quotes
                if b == 0x22:
                    self._quoted = not self._quoted
                elif b == 0x3B and not self._quoted:
                    self._h = _H_CMD
        return pos

    def _mnemonic(self, cmd: bytes) -> None:
        if cmd in (b"LB", b"BL"):
            self._h = _H_LABEL
            self._cr = False
        elif cmd == b"DT":
            self._h = _H_DT
        elif cmd in (b"PE", b"CO"):
            self._h = _H_SKIP
            self._quoted = False
        else:
            self._h = _H_ARGS

    def _label(self, chunk: bytes) -> None:
        for piece in re.split(rb"(\r\n|[\r\n])", chunk):
            if piece in (b"\r\n", b"\r", b"\n"):
                self._newline()
            else:
                self._text_bytes(_CONTROL.sub(b"", piece))

    def close(self) -> str:
        """The text so far (an unfinished escape sequence is dropped; a page with marks counts)."""
        self._pjl_head.clear()
        if self._font_head is not None:  # a font header cut short by the end of the job
            self._font_done()
        if self._dirty:
            self.pages += 1
            self._dirty = False
        return self.text


def pcl5_text(data: bytes, max_chars: int = 65536) -> PCL5Text:
    """Run the extractor over ``data`` in one go."""
    ext = PCL5Text(max_chars)
    ext.feed(data)
    ext.close()
    return ext
