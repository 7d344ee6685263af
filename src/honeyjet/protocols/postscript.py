"""PostScript over TCP 9100: a sans-IO scanner and a small, bounded, side-effect-free evaluator.

:class:`PostScriptInterpreter` answers what real clients ask an HP LaserJet's PostScript 3
interpreter -- the PRET toolkit's ``ps`` mode (``product print``, ``version ==``,
``currentsystemparams /PageCount get ==``, ``(%Calendar%) currentdevparams``, ``devstatus``,
``exitserver`` ...), scanners and ordinary documents -- consistently with a :class:`PSDevice`
persona, and reports what the peer did as :class:`~honeyjet.protocols.outputs.Emit` records.

Contract (all of it is tested):

* **Total.** :meth:`PostScriptInterpreter.feed` and :meth:`~PostScriptInterpreter.end_of_job`
  accept any bytes and never raise.
* **Chunking-invariant.** The concatenated :class:`Send` bytes and the sequence of :class:`Emit`
  records depend only on the byte stream, not on how it was split into ``feed`` calls.
* **Bounded.** Memory: a partial token is held in at most ``max_token_bytes`` (+ a few bytes);
  procedure nesting is limited to ``max_depth``; the operand stack, dictionaries, the dictionary
  and execution stacks and the job's allocations (``max_vm_bytes``) are capped, exceeding them
  raises the PostScript error a real interpreter would (``stackoverflow``, ``dictfull``,
  ``VMerror`` ...). Output per job is capped at ``max_output_bytes``.
* **Bounded time.** Procedures, conditionals and loops *are* evaluated -- PRET wraps every
  command in ``{...} stopped`` and documents cannot be followed without ``if``/``ifelse`` -- but
  only within an execution budget: ``max_steps`` plus ``steps_per_byte`` for every byte fed, per
  connection. A job that runs out of budget (``{} loop``, ``/r {r} def r``) is treated the way a
  real printer would look from the network: it "hangs", i.e. the rest of the job is ignored and
  nothing more is sent. Work per byte of input is therefore bounded by a constant.
* **No side effects.** Nothing touches files, the network or the host. File operators are
  recorded and fail (``undefinedfilename``) or do nothing; ``currentfile``/``eexec`` stop the
  evaluation until end of job, because what follows is data for the caller's job capture.

Jobs end at Ctrl-D (``\\x04``) in the stream or when the caller calls ``end_of_job`` (UEL, EOF);
each job starts with fresh dictionaries. After an error the interpreter prints the Adobe error
and ``Flushing`` lines and ignores the rest of the job, like the real device.

Events: ``honeyjet.ps.query`` for answered queries and printed values, ``honeyjet.ps.operator``
for notable operators (file access, permanent state, passwords, device hooks, stream data; loops
and ``exec``/``stopped`` once per job), ``honeyjet.ps.error`` for reported errors (and
``timeout`` for a hung job), at most ``max_events`` per job, then one ``honeyjet.limit.hit``.
Identical events are recorded once per job. Redefining ``print``, ``=``, ``==``, ``pstack``,
``stack`` or ``flush`` is recorded, but the built-in keeps answering (PRET's I/O workaround).
"""

from __future__ import annotations

import functools
import logging
import math
import re
import zlib
from dataclasses import dataclass, field
from datetime import datetime, timezone
from importlib import resources
from typing import Any, Callable, Iterable, Protocol

from honeyjet.protocols.outputs import Emit, Output, Send, coalesce
from honeyjet.text import escape

log = logging.getLogger(__name__)

__all__ = ["PSDevice", "StaticPSDevice", "PostScriptInterpreter", "PSLexer", "load_operator_names"]


# --------------------------------------------------------------------------------------------
# The device persona


class PSDevice(Protocol):
    """What the interpreter needs to know about the printer it pretends to be.

    Attributes are read on every query, so a persona may change them between jobs.

    * ``product``: ``product`` / ``statusdict /product``, e.g. ``"HP LaserJet 4250"``.
    * ``ps_version``: ``version``, e.g. ``"3010.107"``.
    * ``ps_revision``: ``revision`` and ``/Revision``.
    * ``serial_number``: ``/SerialNumber`` (string); ``serialnumber`` returns its digits as an
      integer (the PostScript operator returns an integer).
    * ``language_level``: ``languagelevel``, normally 3.
    * ``printer_name``: ``/PrinterName`` and ``statusdict printername``.
    * ``ram_bytes``: ``/InstalledRam`` and ``/RamSize``; ``vmstatus`` derives from it.
    * ``page_count()``: the page counter (must agree with PJL and SNMP).
    * ``uptime_ms()``: milliseconds since power-on (``realtime``; ``usertime`` is a fraction).
    * ``now()``: the device clock as an aware UTC datetime (``%Calendar%`` device).
    * ``disks()``: mass-storage devices as ``(name, total_bytes, free_bytes)``, name like
      ``"%disk0%"``; an empty list means the printer has none.
    """

    product: str
    ps_version: str
    ps_revision: int
    serial_number: str
    language_level: int
    printer_name: str
    ram_bytes: int

    def page_count(self) -> int: ...

    def uptime_ms(self) -> int: ...

    def now(self) -> datetime: ...

    def disks(self) -> list[tuple[str, int, int]]: ...


@dataclass
class StaticPSDevice:
    """A fixed :class:`PSDevice` (tests, replays). Values are an HP LaserJet 4250's."""

    product: str = "HP LaserJet 4250"
    ps_version: str = "3010.107"
    ps_revision: int = 2
    serial_number: str = "CNBXF12345"
    language_level: int = 3
    printer_name: str = "HP LaserJet 4250"
    ram_bytes: int = 64 * 1024 * 1024
    pages: int = 31337
    uptime: int = 86_400_000
    clock: datetime = field(default_factory=lambda: datetime(2026, 11, 27, 10, 39, 59, tzinfo=timezone.utc))
    disk_list: list[tuple[str, int, int]] = field(default_factory=list)

    def page_count(self) -> int:
        return self.pages

    def uptime_ms(self) -> int:
        return self.uptime

    def now(self) -> datetime:
        return self.clock

    def disks(self) -> list[tuple[str, int, int]]:
        return list(self.disk_list)


# --------------------------------------------------------------------------------------------
# Object model. Python int/float/bool/None are PostScript integer/real/boolean/null.


class _MarkType:
    __slots__ = ()

    def __repr__(self) -> str:
        return "MARK"


MARK = _MarkType()


@dataclass(frozen=True, slots=True)
class Name:
    """A name object; ``executable`` is false for ``/literal`` names."""

    text: str
    executable: bool = False


@dataclass(eq=False, slots=True)
class PSString:
    """A (mutable) string object."""

    data: bytearray
    executable: bool = False


@dataclass(eq=False, slots=True)
class PSArray:
    """An array; executable arrays are procedures. ``cvx``/``cvlit`` share ``items``.
    ``readonly`` arrays (the standard encodings) refuse ``put`` with ``invalidaccess``."""

    items: list[Any]
    executable: bool = False
    readonly: bool = False


@dataclass(eq=False, slots=True)
class PSDict:
    """A dictionary. Keys are normalised by :func:`_key` (names and strings are one key)."""

    entries: dict[Any, Any] = field(default_factory=dict)
    readonly: bool = False
    objkeys: dict[Any, Any] = field(default_factory=dict)  # ("id", n) -> composite key object


@dataclass(frozen=True, slots=True)
class Operator:
    """A built-in operator, known by name."""

    name: str


@dataclass(eq=False, slots=True)
class PSFile:
    """A file object. ``std`` files are %stdout/%stderr; nothing is ever opened on the host."""

    name: str
    mode: str
    std: bool = False
    executable: bool = False


@dataclass(eq=False, slots=True)
class SaveObj:
    level: int
    vm: int


@dataclass(eq=False, slots=True)
class FontID:
    name: str


class _Immediate:
    """``//name`` as scanned; replaced by the name's value before evaluation."""

    __slots__ = ("text",)

    def __init__(self, text: str):
        self.text = text


INT_MIN, INT_MAX = -(2**31), 2**31 - 1
_NUMS = (int, float)


class PSError(Exception):
    """A PostScript error (``typecheck``, ``undefined`` ...). ``command`` is the offending one."""

    def __init__(self, name: str, command: str | None = None):
        super().__init__(name)
        self.name = name
        self.command = command


class _Hang(Exception):
    """The execution budget is spent: behave like a printer stuck in a loop."""


class _StreamStart(Exception):
    """``currentfile``/``eexec`` ran: the rest of the job is data, not program."""


class _QuitJob(Exception):
    """``quit`` (outside the executive) or ``stop`` without ``stopped``: end the job silently."""


# --------------------------------------------------------------------------------------------
# Scanner


_WS = b" \t\r\n\f\x00"
_WS_SET = frozenset(_WS)
_WS_RUN = re.compile(rb"[ \t\r\n\f\x00]+")
_WS_RUN_NO_NL = re.compile(rb"[ \t\r\f\x00]+")
_REGULAR_RUN = re.compile(rb"[^ \t\r\n\f\x00()<>\[\]{}/%\x04]+")
_COMMENT_END = re.compile(rb"[\r\n\f\x04]")
_LINE_END = re.compile(rb"[\n\x04]")
_STRING_SPECIAL = re.compile(rb"[()\\\r\x04]")
_HEX_RUN = re.compile(rb"[0-9A-Fa-f \t\r\n\f\x00]+")
_A85_RUN = re.compile(rb"[!-uz \t\r\n\f\x00]+")
_WS_ANY = re.compile(rb"[ \t\r\n\f\x00]")
_ESCAPES = {ord("n"): 10, ord("r"): 13, ord("t"): 9, ord("b"): 8, ord("f"): 12, 0x5C: 0x5C, 0x28: 0x28, 0x29: 0x29}

_INT_RE = re.compile(rb"[+-]?[0-9]+\Z")
_REAL_RE = re.compile(rb"[+-]?(?:[0-9]+\.[0-9]*|\.[0-9]+|[0-9]+)(?:[eE][+-]?[0-9]+)?\Z")
_RADIX_RE = re.compile(rb"([0-9]{1,2})#([0-9A-Za-z]+)\Z")
_LIMIT = object()  # a number too large for the implementation -> limitcheck

# scanner states
_S_NORMAL, _S_COMMENT, _S_STRING, _S_HEX, _S_A85, _S_REGULAR, _S_LT, _S_GT, _S_SKIP, _S_SKIPLINE = range(10)

# token kinds
TK_OBJ, TK_EOJ, TK_ERROR, TK_NEWLINE = range(4)
_EOJ_TOKEN = (TK_EOJ, None)
_NEWLINE_TOKEN = (TK_NEWLINE, None)
_ITEM_OVERHEAD = 8  # accounting cost of one object inside a procedure body


def _finite(x: float) -> float | object:
    return x if math.isfinite(x) else _LIMIT


def parse_number(tok: bytes) -> int | float | object | None:
    """The number ``tok`` denotes, ``None`` if it is not a number, ``_LIMIT`` if too large.

    Integers beyond 32 bits become reals (as in Adobe interpreters); radix numbers
    (``16#FF``) are 32-bit patterns, so ``16#FFFFFFFF`` is -1.
    """
    if _INT_RE.match(tok):
        neg = tok[:1] == b"-"
        digits = tok.lstrip(b"+-").lstrip(b"0") or b"0"
        if len(digits) <= 10:
            value = int(digits)
            value = -value if neg else value
            return value if INT_MIN <= value <= INT_MAX else float(value)
        return _finite(float(tok))
    if _REAL_RE.match(tok):
        return _finite(float(tok))
    m = _RADIX_RE.match(tok)
    if m:
        base = int(m[1])
        if not 2 <= base <= 36:
            return None
        digits = m[2].lower()
        if any(int(chr(d), 36) >= base for d in digits):
            return None
        digits = digits.lstrip(b"0") or b"0"
        if len(digits) > 32:
            return _LIMIT
        value = int(digits, base)
        if value > 0xFFFFFFFF:
            return _LIMIT
        return value - 2**32 if value > INT_MAX else value
    return None


def a85_decode(raw: bytes) -> bytes:
    """Decode ASCII85 (without ``<~ ~>`` and whitespace). Raises ValueError when malformed."""
    out = bytearray()
    group: list[int] = []
    for ch in raw:
        if ch == 0x7A:  # 'z'
            if group:
                raise ValueError("z inside a group")
            out += b"\0\0\0\0"
            continue
        if not 0x21 <= ch <= 0x75:
            raise ValueError("bad ASCII85 character")
        group.append(ch - 33)
        if len(group) == 5:
            value = 0
            for d in group:
                value = value * 85 + d
            if value > 0xFFFFFFFF:
                raise ValueError("ASCII85 group overflow")
            out += value.to_bytes(4, "big")
            group = []
    if group:
        if len(group) == 1:
            raise ValueError("single trailing ASCII85 character")
        keep = len(group) - 1
        value = 0
        for d in group + [84] * (5 - len(group)):
            value = value * 85 + d
        if value > 0xFFFFFFFF:
            raise ValueError("ASCII85 group overflow")
        out += value.to_bytes(4, "big")[:keep]
    return bytes(out)


class PSLexer:
    """Incremental PostScript scanner with bounded memory.

    :meth:`next_token` consumes bytes from ``data`` starting at ``pos`` until one token is
    complete and returns ``(new_pos, token)``, or ``(len(data), None)`` when the data ran out
    in the middle of a token (its state is kept for the next call). Tokens are tuples:

    * ``(TK_OBJ, obj)``: a number, string, name, ``_Immediate`` or a whole procedure
      (``PSArray(executable=True)``; nested procedures are collected, never evaluated here);
    * ``(TK_EOJ, None)``: a Ctrl-D, which ends the job wherever it occurs;
    * ``(TK_ERROR, (error, text))``: ``syntaxerror`` or ``limitcheck`` (nesting, huge numbers);
    * ``(TK_NEWLINE, None)``: a line end between tokens, only when ``report_newlines`` is set
      (the interactive executive prompts after each line).

    A token or procedure body larger than ``max_token_bytes`` is truncated, not refused: its
    excess bytes are consumed and dropped, so :attr:`buffered_bytes` never exceeds
    ``max_token_bytes`` + 1. A regular token that ends with a white-space character consumes
    it (PLRM 3.2); a line feed consumed that way at top level sets :attr:`nl_pending`.
    """

    def __init__(self, max_token_bytes: int = 65536, max_depth: int = 64):
        self.max_token_bytes = max(16, int(max_token_bytes))
        self.max_depth = max(1, int(max_depth))
        self.report_newlines = False
        self.nl_pending = False
        self.truncated = False
        self.reset()

    # -- state management -------------------------------------------------------------------

    def reset(self) -> None:
        """Forget any partial token, open procedures and modes."""
        self._state = _S_NORMAL
        self._buf = bytearray()
        self._procs: list[list[Any]] = []
        self._held = 0
        self._prefix = 0  # leading slashes of a regular token
        self._depth = 0  # parenthesis depth in a string
        self._esc = 0  # 0: none, 1: after backslash, 2: in an octal escape
        self._octal = 0
        self._octal_n = 0
        self._skip_lf = False
        self._nibble: int | None = None
        self._tilde = False
        self.report_newlines = False
        self.nl_pending = False

    def skip_to_eoj(self) -> None:
        """Discard everything up to the next Ctrl-D (flushing, stream data, a hung job)."""
        self._drop_partial()
        self._state = _S_SKIP

    def skip_line(self) -> None:
        """Discard the rest of the current line (the executive after an error)."""
        self._drop_partial()
        self._state = _S_SKIPLINE

    def _drop_partial(self) -> None:
        self._buf = bytearray()
        self._procs = []
        self._held = 0
        self._esc = 0
        self._nibble = None

    @property
    def buffered_bytes(self) -> int:
        """Bytes (and accounted procedure items) held for the incomplete token."""
        return self._held + len(self._buf) + (1 if self._nibble is not None else 0) + (1 if self._prefix else 0)

    # -- helpers ----------------------------------------------------------------------------

    def _room(self) -> int:
        return self.max_token_bytes - self._held - len(self._buf)

    def _append(self, data: bytes, start: int, end: int) -> None:
        room = self._room()
        if room <= 0:
            self.truncated = True
            return
        if end - start > room:
            end = start + room
            self.truncated = True
        self._buf += data[start:end]

    def _append_byte(self, b: int) -> None:
        if self._room() > 0:
            self._buf.append(b)
        else:
            self.truncated = True

    def _deliver(self, obj: Any) -> tuple[int, Any] | None:
        """Hand a finished object to the evaluator, or add it to the open procedure."""
        self._state = _S_NORMAL
        if not self._procs:
            return (TK_OBJ, obj)
        cost = _ITEM_OVERHEAD
        if type(obj) is PSString:
            cost += len(obj.data)
        elif type(obj) is Name:
            cost += len(obj.text)
        if self._held + cost > self.max_token_bytes:
            self.truncated = True
            return None
        self._procs[-1].append(obj)
        self._held += cost
        return None

    def _error(self, name: str, text: str) -> tuple[int, Any]:
        self._drop_partial()
        self._state = _S_NORMAL
        return (TK_ERROR, (name, text))

    def _take_buf(self) -> bytes:
        data = bytes(self._buf)
        self._buf = bytearray()
        return data

    def _finish_regular(self) -> tuple[int, Any] | None:
        text = self._take_buf()
        prefix, self._prefix = self._prefix, 0
        self._state = _S_NORMAL
        if prefix == 2:
            return self._deliver(_Immediate(text.decode("latin-1")))
        if prefix == 1:
            return self._deliver(Name(text.decode("latin-1"), False))
        num = parse_number(text)
        if num is _LIMIT:
            return self._error("limitcheck", text[:128].decode("latin-1"))
        if num is not None:
            return self._deliver(num)
        return self._deliver(Name(text.decode("latin-1"), True))

    def _open_proc(self) -> tuple[int, Any] | None:
        if len(self._procs) >= self.max_depth:
            return self._error("limitcheck", "{")
        self._procs.append([])
        return None

    def _close_proc(self) -> tuple[int, Any] | None:
        if not self._procs:
            return self._error("syntaxerror", "}")
        items = self._procs.pop()
        if not self._procs:
            self._held = 0
        return self._deliver(PSArray(items, True))

    # -- the state machine ------------------------------------------------------------------

    def next_token(self, data: bytes, pos: int) -> tuple[int, tuple[int, Any] | None]:
        """Scan from ``pos``; see the class docstring."""
        n = len(data)
        while pos < n:
            st = self._state
            if st == _S_NORMAL:
                c = data[pos]
                if c in _WS_SET:
                    if c == 10 and self.report_newlines and not self._procs:
                        return pos + 1, _NEWLINE_TOKEN
                    m = (_WS_RUN_NO_NL if self.report_newlines else _WS_RUN).match(data, pos)
                    pos = m.end() if m else pos + 1
                    continue
                if c == 0x04:
                    return pos + 1, _EOJ_TOKEN
                pos += 1
                tok = self._dispatch(c)
                if tok is not None:
                    return pos, tok
                if self._state == _S_REGULAR and self._prefix == 0:
                    pos -= 1  # the first character belongs to the token
            elif st == _S_REGULAR:
                m = _REGULAR_RUN.match(data, pos)
                if m is not None:
                    self._append(data, pos, m.end())
                    pos = m.end()
                    if pos >= n:
                        return pos, None
                c = data[pos]
                if c == 0x2F and self._prefix == 1 and not self._buf:
                    self._prefix = 2
                    pos += 1
                    continue
                if c in _WS_SET:
                    pos += 1
                    if c == 10 and not self._procs:
                        self.nl_pending = True
                tok = self._finish_regular()
                if tok is not None:
                    return pos, tok
            elif st == _S_STRING:
                pos, tok = self._scan_string(data, pos)
                if tok is not None:
                    return pos, tok
            elif st == _S_COMMENT:
                m = _COMMENT_END.search(data, pos)
                if m is None:
                    return n, None
                pos = m.start()
                self._state = _S_NORMAL
            elif st == _S_SKIP:
                i = data.find(b"\x04", pos)
                if i < 0:
                    return n, None
                return i + 1, _EOJ_TOKEN
            elif st == _S_SKIPLINE:
                m = _LINE_END.search(data, pos)
                if m is None:
                    return n, None
                pos = m.start()
                self._state = _S_NORMAL
            elif st == _S_HEX:
                pos, tok = self._scan_hex(data, pos)
                if tok is not None:
                    return pos, tok
            elif st == _S_A85:
                pos, tok = self._scan_a85(data, pos)
                if tok is not None:
                    return pos, tok
            elif st == _S_LT:
                c = data[pos]
                if c == 0x3C:
                    tok = self._deliver(Name("<<", True))
                    if tok is not None:
                        return pos + 1, tok
                    pos += 1
                elif c == 0x7E:
                    self._state, self._tilde = _S_A85, False
                    pos += 1
                else:
                    self._state, self._nibble = _S_HEX, None
            else:  # _S_GT
                c = data[pos]
                if c == 0x3E:
                    tok = self._deliver(Name(">>", True))
                    if tok is not None:
                        return pos + 1, tok
                    pos += 1
                else:
                    return pos, self._error("syntaxerror", ">")
        return n, None

    def _dispatch(self, c: int) -> tuple[int, Any] | None:
        """Start a token at character ``c`` (already consumed) in the normal state."""
        if c == 0x25:  # %
            self._state = _S_COMMENT
        elif c == 0x28:  # (
            self._state, self._depth, self._esc, self._skip_lf = _S_STRING, 1, 0, False
        elif c == 0x3C:  # <
            self._state = _S_LT
        elif c == 0x3E:  # >
            self._state = _S_GT
        elif c == 0x5B:
            return self._deliver(Name("[", True))
        elif c == 0x5D:
            return self._deliver(Name("]", True))
        elif c == 0x7B:
            return self._open_proc()
        elif c == 0x7D:
            return self._close_proc()
        elif c == 0x29:
            return self._error("syntaxerror", ")")
        elif c == 0x2F:
            self._state, self._prefix = _S_REGULAR, 1
        else:
            self._state, self._prefix = _S_REGULAR, 0
        return None

    def _scan_string(self, data: bytes, pos: int) -> tuple[int, tuple[int, Any] | None]:
        n = len(data)
        while pos < n:
            if self._esc:
                pos = self._string_escape(data, pos)
                continue
            if self._skip_lf:
                self._skip_lf = False
                if data[pos] == 10:
                    pos += 1
                    continue
            m = _STRING_SPECIAL.search(data, pos)
            end = m.start() if m else n
            if end > pos:
                self._append(data, pos, end)
                pos = end
            if m is None:
                return pos, None
            c = data[pos]
            if c == 0x04:
                return pos + 1, _EOJ_TOKEN
            pos += 1
            if c == 0x28:
                self._depth += 1
                self._append_byte(c)
            elif c == 0x29:
                self._depth -= 1
                if self._depth == 0:
                    return pos, self._deliver(PSString(bytearray(self._take_buf())))
                self._append_byte(c)
            elif c == 0x5C:
                self._esc = 1
            else:  # CR, or CR LF: one newline
                self._append_byte(10)
                self._skip_lf = True
        return pos, None

    def _string_escape(self, data: bytes, pos: int) -> int:
        c = data[pos]
        if self._esc == 2:
            if 0x30 <= c <= 0x37 and self._octal_n < 3:
                self._octal = self._octal * 8 + c - 0x30
                self._octal_n += 1
                pos += 1
                if self._octal_n < 3:
                    return pos
            self._append_byte(self._octal & 0xFF)
            self._esc = 0
            return pos
        self._esc = 0
        if c == 0x04:
            return pos  # Ctrl-D still ends the job; the backslash is dropped
        if c in _ESCAPES:
            self._append_byte(_ESCAPES[c])
        elif 0x30 <= c <= 0x37:
            self._esc, self._octal, self._octal_n = 2, c - 0x30, 1
        elif c == 13:
            self._skip_lf = True  # backslash-CR(-LF): line continuation
        elif c != 10:
            self._append_byte(c)
        return pos + 1

    def _scan_hex(self, data: bytes, pos: int) -> tuple[int, tuple[int, Any] | None]:
        m = _HEX_RUN.match(data, pos)
        if m is not None:
            end = m.end()
            while pos < end:
                room = self._room() - (1 if self._nibble is not None else 0)
                if room <= 0:
                    self.truncated = True
                    pos = end
                    break
                step = min(end - pos, max(4096, 2 * room + 2))
                self._hex_digits(_WS_ANY.sub(b"", data[pos : pos + step]), room)
                pos += step
            if pos >= len(data):
                return pos, None
        c = data[pos]
        if c == 0x3E:
            if self._nibble is not None:
                self._append_byte(int(chr(self._nibble), 16) << 4)
                self._nibble = None
            return pos + 1, self._deliver(PSString(bytearray(self._take_buf())))
        if c == 0x04:
            return pos + 1, _EOJ_TOKEN
        return pos + 1, self._error("syntaxerror", "<")

    def _hex_digits(self, digits: bytes, room: int) -> None:
        """Append the bytes of hexadecimal ``digits`` (at most ``room``), keeping an odd nibble."""
        if self._nibble is not None:
            digits = bytes([self._nibble]) + digits
            self._nibble = None
        if len(digits) > 2 * room + 1:
            digits = digits[: 2 * room + 1]
            self.truncated = True
        if len(digits) % 2:
            self._nibble = digits[-1]
            digits = digits[:-1]
        self._buf += bytes.fromhex(digits.decode("ascii"))

    def _scan_a85(self, data: bytes, pos: int) -> tuple[int, tuple[int, Any] | None]:
        n = len(data)
        while pos < n:
            c = data[pos]
            if self._tilde:
                if c == 0x3E:
                    try:
                        decoded = a85_decode(self._take_buf())
                    except ValueError:
                        return pos + 1, self._error("syntaxerror", "<~")
                    room = self.max_token_bytes - self._held
                    if len(decoded) > room:
                        decoded = decoded[: max(0, room)]
                        self.truncated = True
                    return pos + 1, self._deliver(PSString(bytearray(decoded)))
                if c == 0x04:
                    return pos + 1, _EOJ_TOKEN
                return pos + 1, self._error("syntaxerror", "<~")
            m = _A85_RUN.match(data, pos)
            if m is not None:
                end = m.end()
                while pos < end:
                    room = self._room()
                    if room <= 0:
                        self.truncated = True
                        pos = end
                        break
                    step = min(end - pos, max(4096, room))
                    chunk = _WS_ANY.sub(b"", data[pos : pos + step])
                    self._append(chunk, 0, len(chunk))
                    pos += step
                continue
            if c == 0x7E:
                self._tilde = True
                pos += 1
            elif c == 0x04:
                return pos + 1, _EOJ_TOKEN
            else:
                return pos + 1, self._error("syntaxerror", "<~")
        return pos, None

    def finish(self) -> list[tuple[int, Any]]:
        """End of input: complete a pending regular token, report an unterminated one.

        Returns the resulting tokens (at most two) and resets the scanner.
        """
        toks: list[tuple[int, Any]] = []
        st = self._state
        if st == _S_REGULAR:
            tok = self._finish_regular()
            if tok is not None:
                toks.append(tok)
        elif st == _S_STRING:
            toks.append(self._error("syntaxerror", "("))
        elif st in (_S_HEX, _S_LT, _S_A85):
            toks.append(self._error("syntaxerror", "<"))
        elif st == _S_GT:
            toks.append(self._error("syntaxerror", ">"))
        if self._procs and not any(t[0] == TK_ERROR for t in toks):
            toks.append(self._error("syntaxerror", "{"))
        self.reset()
        return toks


def scan_all(data: bytes, max_token_bytes: int = 65536, max_depth: int = 64) -> list[Any]:
    """All objects in ``data`` (a complete program text). Raises :class:`PSError` on errors."""
    lexer = PSLexer(max_token_bytes, max_depth)
    objs: list[Any] = []
    pos = 0
    while True:
        pos, tok = lexer.next_token(data, pos)
        if tok is None:
            break
        _collect(tok, objs)
    for tok in lexer.finish():
        _collect(tok, objs)
    return objs


def _collect(tok: tuple[int, Any], objs: list[Any]) -> None:
    kind, value = tok
    if kind == TK_OBJ:
        objs.append(value)
    elif kind == TK_ERROR:
        raise PSError(value[0], value[1])
    elif kind == TK_EOJ:
        raise PSError("syntaxerror", "\x04")


# --------------------------------------------------------------------------------------------
# Names a real interpreter defines (data/ps_operators.txt)


@functools.lru_cache(maxsize=1)
def load_operator_names() -> dict[str, frozenset[str]]:
    """Sections of ``data/ps_operators.txt``: ``{"systemdict": {...}, "statusdict": {...}, ...}``."""
    text = resources.files("honeyjet.protocols").joinpath("data/ps_operators.txt").read_text("ascii")
    sections: dict[str, set[str]] = {}
    current = sections.setdefault("systemdict", set())
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line.startswith("[") and line.endswith("]") and len(line) > 2:
            current = sections.setdefault(line[1:-1], set())
            continue
        current.add(line)
    return {k: frozenset(v) for k, v in sections.items()}


# Output operators keep their built-in behaviour even when a job redefines them (PRET sends
# `/print {...} def /== {...} def` as an I/O workaround): answers stay consistent.
_OUTPUT_OPS = frozenset({"print", "=", "==", "pstack", "stack", "flush"})

# Notable operators: name -> (event category, operands to record). Some file operators are
# special-cased in their implementation (only non-standard files, only string operands).
_NOTABLE: dict[str, tuple[str, int]] = {
    "deletefile": ("file", 1),
    "renamefile": ("file", 2),
    "filenameforall": ("file", 3),
    "run": ("file", 1),
    "exitserver": ("persistent", 1),
    "startjob": ("persistent", 2),
    "setsystemparams": ("persistent", 1),
    "setuserparams": ("persistent", 1),
    "setdevparams": ("persistent", 2),
    "superexec": ("persistent", 1),
    "internaldict": ("persistent", 1),
    "setpassword": ("persistent", 2),
    "setprintername": ("persistent", 1),
    "loop": ("control", 1),
    "repeat": ("control", 2),
    "for": ("control", 4),
    "forall": ("control", 2),
    "exec": ("control", 1),
    "stopped": ("control", 1),
    "executive": ("control", 0),
    "echo": ("control", 1),
    "kshow": ("control", 2),
    "cshow": ("control", 2),
    "pathforall": ("control", 4),
    "resourceforall": ("control", 4),
    "devforall": ("control", 2),
    "quit": ("control", 0),
    "checkpassword": ("password", 1),
    "initializedisk": ("device", 2),
    "devformat": ("device", 2),
    "devmount": ("device", 1),
    "devdismount": ("device", 1),
    "currentfile": ("stream", 0),
    "eexec": ("stream", 1),
}

# Stack effects of operators honeyjet does not really implement: name -> (pops, pushes).
# Push codes: r real 0.0, i integer 0, b false, t true, d empty dict, a empty array, m identity
# matrix, p empty procedure, f font dictionary, s empty string, k the popped top operand.
# Pops are lenient (never stackunderflow): the model of a document is approximate.
_EFFECTS: dict[str, tuple[int, str]] = {}


def _effects(pops: int, pushes: str, names: str) -> None:
    for name in names.split():
        _EFFECTS[name] = (pops, pushes)


_effects(1, "", "setlinewidth setlinecap setlinejoin setmiterlimit setflat setgray setstrokeadjust "
         "setoverprint setoverprintmode setsmoothness setfont show glyphshow setcolorspace setpattern "
         "sethalftone setcolorrendering settransfer setblackgeneration setundercolorremoval setmatrix "
         "concat setgstate setglobal setpacking setobjectformat setshared vmreclaim setvmthreshold "
         "setcachelimit undefinefont execform shfill uappend ufill ueofill ustroke ustrokepath "
         "setucacheparams setcacheparams setpapertray setduplexmode settumble setjobtimeout setresolution "
         "setdostartpage setdefaulttrayswitch setdefaultpapertray setdefaultpaperfamily setallowjobreset "
         "setpagetype setsoftwareiomode setpagemargin setuserdiskpercent setdosysstart setmanualfeed "
         "setpagestackorder flushfile closefile resetfile printobject writeobject undefineuserobject "
         "setidlefonts execuserobject")
_effects(2, "", "moveto lineto rmoveto rlineto selectfont setdash charpath xshow xyshow yshow "
         "defineuserobject undefineresource setcharwidth setmargins sethardwareiomode seteescratch "
         "printererror setfileposition write")
_effects(3, "", "setrgbcolor sethsbcolor ashow setscreen setdefaulttimeouts setsccbatch setsccinteractive setpage")
_effects(4, "", "setcmykcolor widthshow setbbox setcolortransfer setpageparams")
_effects(5, "", "arc arcn")
_effects(6, "", "curveto rcurveto setcachedevice awidthshow")
_effects(10, "", "setcachedevice2")
_effects(12, "", "setcolorscreen")
_effects(0, "rr", "currentpoint")
_effects(1, "rr", "stringwidth")
_effects(0, "f", "currentfont rootfont")
_effects(0, "r", "currentgray currentlinewidth currentmiterlimit currentflat currentsmoothness currentcolor")
_effects(0, "rrr", "currentrgbcolor currenthsbcolor")
_effects(0, "rrrr", "currentcmykcolor pathbbox")
_effects(0, "i", "currentlinecap currentlinejoin currentobjectformat countexecstack papertray jobtimeout "
         "pagemargin pagetype manualfeedtimeout softwareiomode userdiskpercent waittimeout")
_effects(0, "ai", "currentdash")
_effects(0, "b", "currentoverprint currentstrokeadjust currentpacking currentglobal currentshared "
         "duplexmode tumble dostartpage byteorder pagestackorder diskonline manualfeed")
_effects(0, "d", "currenthalftone currentcolorrendering gstate")
_effects(0, "p", "currenttransfer currentblackgeneration currentundercolorremoval")
_effects(0, "pppp", "currentcolortransfer")
_effects(0, "rrp", "currentscreen")
_effects(0, "iii", "defaulttimeouts")
_effects(0, "ii", "margins diskstatus")
_effects(0, "iiii", "pageparams")
_effects(1, "k", "currentmatrix defaultmatrix identmatrix currentgstate execstack eescratch hardwareiomode")
_effects(1, "ii", "sccbatch sccinteractive")
_effects(2, "k", "invertmatrix")
_effects(3, "k", "concatmatrix")
_effects(2, "b", "infill ineofill instroke inufill inueofill inustroke")
_effects(2, "d", "makepattern")
_effects(1, "b", "gcheck")
_effects(1, "i", "bytesavailable fileposition")
_effects(0, "s", "realformat")

_TYPE_NAMES = {
    int: "integertype", float: "realtype", bool: "booleantype", type(None): "nulltype", _MarkType: "marktype",
    Name: "nametype", PSString: "stringtype", PSArray: "arraytype", PSDict: "dicttype", Operator: "operatortype",
    PSFile: "filetype", SaveObj: "savetype", FontID: "fonttype",
}

_ERROR_NAMES = (
    "configurationerror dictfull dictstackoverflow dictstackunderflow execstackoverflow handleerror "
    "interrupt invalidaccess invalidexit invalidfileaccess invalidfont invalidrestore ioerror limitcheck "
    "nocurrentpoint rangecheck stackoverflow stackunderflow syntaxerror timeout typecheck undefined "
    "undefinedfilename undefinedresource undefinedresult unmatchedmark unregistered VMerror"
).split()

_STD_LOW = (
    "space exclam quotedbl numbersign dollar percent ampersand quoteright parenleft parenright asterisk plus "
    "comma hyphen period slash zero one two three four five six seven eight nine colon semicolon less equal "
    "greater question at A B C D E F G H I J K L M N O P Q R S T U V W X Y Z bracketleft backslash "
    "bracketright asciicircum underscore quoteleft a b c d e f g h i j k l m n o p q r s t u v w x y z "
    "braceleft bar braceright asciitilde"
).split()
_STD_HIGH = {
    161: "exclamdown", 162: "cent", 163: "sterling", 164: "fraction", 165: "yen", 166: "florin", 167: "section",
    168: "currency", 169: "quotesingle", 170: "quotedblleft", 171: "guillemotleft", 172: "guilsinglleft",
    173: "guilsinglright", 174: "fi", 175: "fl", 177: "endash", 178: "dagger", 179: "daggerdbl",
    180: "periodcentered", 182: "paragraph", 183: "bullet", 184: "quotesinglbase", 185: "quotedblbase",
    186: "quotedblright", 187: "guillemotright", 188: "ellipsis", 189: "perthousand", 191: "questiondown",
    193: "grave", 194: "acute", 195: "circumflex", 196: "tilde", 197: "macron", 198: "breve", 199: "dotaccent",
    200: "dieresis", 202: "ring", 203: "cedilla", 205: "hungarumlaut", 206: "ogonek", 207: "caron", 208: "emdash",
    225: "AE", 227: "ordfeminine", 232: "Lslash", 233: "Oslash", 234: "OE", 235: "ordmasculine", 241: "ae",
    245: "dotlessi", 248: "lslash", 249: "oslash", 250: "oe", 251: "germandbls",
}
_LATIN1_HIGH = (
    "dotlessi grave acute circumflex tilde macron breve dotaccent dieresis .notdef ring cedilla .notdef "
    "hungarumlaut ogonek caron space exclamdown cent sterling currency yen brokenbar section dieresis "
    "copyright ordfeminine guillemotleft logicalnot hyphen registered macron degree plusminus twosuperior "
    "threesuperior acute mu paragraph periodcentered cedilla onesuperior ordmasculine guillemotright "
    "onequarter onehalf threequarters questiondown Agrave Aacute Acircumflex Atilde Adieresis Aring AE "
    "Ccedilla Egrave Eacute Ecircumflex Edieresis Igrave Iacute Icircumflex Idieresis Eth Ntilde Ograve "
    "Oacute Ocircumflex Otilde Odieresis multiply Oslash Ugrave Uacute Ucircumflex Udieresis Yacute Thorn "
    "germandbls agrave aacute acircumflex atilde adieresis aring ae ccedilla egrave eacute ecircumflex "
    "edieresis igrave iacute icircumflex idieresis eth ntilde ograve oacute ocircumflex otilde odieresis "
    "divide oslash ugrave uacute ucircumflex udieresis yacute thorn ydieresis"
).split()


def _encoding(kind: str) -> list[str]:
    names = [".notdef"] * 256
    names[32:127] = _STD_LOW
    if kind == "standard":
        for code, glyph in _STD_HIGH.items():
            names[code] = glyph
    else:
        names[45], names[96] = "minus", "quoteleft"
        for code, glyph in enumerate(_LATIN1_HIGH[:112], start=144):
            names[code] = glyph
    return names[:256]


_STANDARD_FONTS = (
    "AvantGarde-Book AvantGarde-BookOblique AvantGarde-Demi AvantGarde-DemiOblique Bookman-Demi "
    "Bookman-DemiItalic Bookman-Light Bookman-LightItalic Courier Courier-Bold Courier-BoldOblique "
    "Courier-Oblique Helvetica Helvetica-Bold Helvetica-BoldOblique Helvetica-Narrow Helvetica-Narrow-Bold "
    "Helvetica-Narrow-BoldOblique Helvetica-Narrow-Oblique Helvetica-Oblique NewCenturySchlbk-Bold "
    "NewCenturySchlbk-BoldItalic NewCenturySchlbk-Italic NewCenturySchlbk-Roman Palatino-Bold "
    "Palatino-BoldItalic Palatino-Italic Palatino-Roman Symbol Times-Bold Times-BoldItalic Times-Italic "
    "Times-Roman ZapfChancery-MediumItalic ZapfDingbats"
).split()
_CATEGORIES = (
    "Category ColorRendering ColorRenderingType ColorSpace ColorSpaceFamily Encoding FMapType Filter Font "
    "FontType Form FormType FunctionType Halftone HalftoneType IODevice IdiomSet ImageType Pattern PatternType "
    "ProcSet ShadingType CMap CIDFont CIDFontType"
).split()
_BUILD_TIME = 1_067_472_000  # seconds; a late-2003 firmware build
_PASSWORD_MAGIC = 1183615869  # internaldict's well-known password
_MAX_EXEC_STACK = 250
_MAX_DICT_STACK = 500
_PS_ESC = [b"\\%03o" % i for i in range(256)]
for _i in range(0x20, 0x7F):
    _PS_ESC[_i] = bytes([_i])
for _ch, _esc in ((10, b"\\n"), (13, b"\\r"), (9, b"\\t"), (8, b"\\b"), (12, b"\\f"),
                  (0x28, b"\\("), (0x29, b"\\)"), (0x5C, b"\\\\")):
    _PS_ESC[_ch] = _esc


def fmt_real(x: float) -> str:
    """A real as Adobe interpreters print it: 6 significant digits, always with a point."""
    s = "%.6g" % x
    if "e" in s:
        mant, exp = s.split("e")
        if "." not in mant:
            mant += ".0"
        return f"{mant}e{exp}"
    if "." not in s and "n" not in s:
        s += ".0"
    return s


def cvs_bytes(obj: Any) -> bytes:
    """The text ``=`` and ``cvs`` produce."""
    t = obj.__class__
    if t is PSString:
        return bytes(obj.data)
    if t is Name:
        return obj.text.encode("latin-1", "replace")
    if t is bool:
        return b"true" if obj else b"false"
    if t is int:
        return str(obj).encode()
    if t is float:
        return fmt_real(obj).encode()
    if t is Operator:
        return obj.name.encode("latin-1", "replace")
    return b"--nostringval--"


def syntax_bytes(obj: Any, cap: int = 65536, detail: bool = False) -> bytes:
    """The text ``==`` produces, at most ``cap`` bytes. ``detail`` also renders dictionaries."""
    out = bytearray()
    _write_syntax(obj, out, 0, cap, detail)
    return bytes(out[:cap])


def _write_syntax(obj: Any, out: bytearray, depth: int, cap: int, detail: bool) -> None:
    if len(out) >= cap:
        return
    t = obj.__class__
    if t is PSString:
        out += b"(" + b"".join([_PS_ESC[b] for b in obj.data[:cap]]) + b")"
    elif t is Name:
        out += (b"" if obj.executable else b"/") + obj.text.encode("latin-1", "replace")
    elif t is PSArray:
        if depth >= 16:
            out += b"..."
            return
        out += b"{" if obj.executable else b"["
        for i, item in enumerate(obj.items):
            if len(out) >= cap:
                break
            if i:
                out += b" "
            _write_syntax(item, out, depth + 1, cap, detail)
        out += b"}" if obj.executable else b"]"
    elif t is PSDict:
        if not detail or depth >= 4:
            out += b"-dict-"
            return
        out += b"<<"
        for i, (key, value) in enumerate(obj.entries.items()):
            if len(out) >= cap or i >= 16:
                out += b" ..."
                break
            out += b" "
            _write_syntax(_key_object(obj, key), out, depth + 1, cap, detail)
            out += b" "
            _write_syntax(value, out, depth + 1, cap, detail)
        out += b" >>"
    elif obj is None:
        out += b"null"
    elif t is _MarkType:
        out += b"-mark-"
    elif t is Operator:
        out += b"--" + obj.name.encode("latin-1", "replace") + b"--"
    elif t is PSFile:
        out += b"-file-"
    elif t is SaveObj:
        out += b"-save-"
    elif t is FontID:
        out += b"-fontID-"
    else:
        out += cvs_bytes(obj)


def _key(obj: Any) -> Any:
    """Normalised dictionary key: names and strings by text, 1 and 1.0 alike."""
    t = obj.__class__
    if t is Name:
        return obj.text
    if t is PSString:
        return obj.data.decode("latin-1")
    if t is int:
        return obj
    if t is float:
        return int(obj) if obj.is_integer() else obj
    if t is bool:
        return ("bool", obj)
    if obj is None:
        raise PSError("typecheck")
    return ("id", id(obj))


def _key_object(d: PSDict, key: Any) -> Any:
    """The PostScript object for a normalised key (string keys come back as names)."""
    if isinstance(key, str):
        return Name(key)
    if isinstance(key, tuple):
        return key[1] if key[0] == "bool" else d.objkeys.get(key)
    return key


def _text(obj: Any) -> bytes | None:
    t = obj.__class__
    if t is PSString:
        return bytes(obj.data)
    if t is Name:
        return obj.text.encode("latin-1", "replace")
    return None


def ps_eq(a: Any, b: Any) -> bool:
    """PostScript ``eq``: numbers by value, strings and names by text, composites by identity."""
    ta, tb = a.__class__, b.__class__
    if ta in _NUMS and tb in _NUMS:
        return a == b
    if ta in (PSString, Name) and tb in (PSString, Name):
        return _text(a) == _text(b)
    if ta is not tb:
        return False
    if ta is bool or ta is Operator:
        return a == b
    if ta is PSArray:
        return a.items is b.items
    if ta is PSDict:
        return a.entries is b.entries
    if a is None or ta is _MarkType:
        return True
    return a is b


def _int_or_real(v: int) -> int | float:
    return v if INT_MIN <= v <= INT_MAX else float(v)


def _real(x: float) -> float:
    if not math.isfinite(x):
        raise PSError("undefinedresult")
    return x


_STAR, _ANY = -1, -2


def _glob_tokens(pattern: bytes) -> list[int]:
    """A template as tokens: ``_STAR`` for ``*``, ``_ANY`` for ``?``, else a byte (``\\`` quotes)."""
    toks: list[int] = []
    i = 0
    while i < len(pattern):
        c = pattern[i]
        if c == 0x2A:
            if not toks or toks[-1] != _STAR:
                toks.append(_STAR)
        elif c == 0x3F:
            toks.append(_ANY)
        elif c == 0x5C and i + 1 < len(pattern):
            i += 1
            toks.append(pattern[i])
        else:
            toks.append(c)
        i += 1
    return toks


def _glob_match(toks: list[int], text: bytes) -> bool:
    """Wildcard matching without backtracking blow-up: O(len(toks) * len(text))."""
    t = p = 0
    star, mark = -1, 0
    while t < len(text):
        if p < len(toks) and toks[p] != _STAR and (toks[p] == _ANY or toks[p] == text[t]):
            p += 1
            t += 1
        elif p < len(toks) and toks[p] == _STAR:
            star, mark = p, t
            p += 1
        elif star >= 0:
            p = star + 1
            mark += 1
            t = mark
        else:
            return False
    while p < len(toks) and toks[p] == _STAR:
        p += 1
    return p == len(toks)


def _command_text(obj: Any) -> str:
    """How an offending object is named in an error message."""
    if obj.__class__ is Name:
        return obj.text
    return syntax_bytes(obj, 128).decode("latin-1")


def _frame_name(frame: Any) -> str:
    """What a frame is running, for error and hang reports."""
    if frame.__class__ is _ProcFrame and frame.i < len(frame.items) and frame.items[frame.i].__class__ is Name:
        return frame.items[frame.i].text
    return {_StoppedFrame: "stopped", _RepeatFrame: "repeat", _ForFrame: "for", _ForallFrame: "forall",
            _LoopFrame: "loop"}.get(frame.__class__, "exec")


def _serial_int(serial: str) -> int:
    digits = "".join(ch for ch in serial if ch.isdigit())[-9:]
    if digits:
        return int(digits)
    return zlib.crc32(serial.encode("utf-8", "replace")) & 0x7FFFFFFF


_MISSING = object()


# --------------------------------------------------------------------------------------------
# Execution frames


class _ProcFrame:
    __slots__ = ("items", "i")

    def __init__(self, items: list[Any]):
        self.items = items
        self.i = 0


class _StoppedFrame:
    __slots__ = ()

    def step(self, vm: "PostScriptInterpreter") -> None:
        vm._estack.pop()
        vm._push(False)


class _LoopFrame:
    """Base of the frames ``exit`` leaves: ``loop``, ``repeat``, ``for``, ``forall``."""

    __slots__ = ("proc",)

    def __init__(self, proc: Any):
        self.proc = proc

    def step(self, vm: "PostScriptInterpreter") -> None:
        _call_proc(vm, self.proc)


class _RepeatFrame(_LoopFrame):
    __slots__ = ("n",)

    def __init__(self, n: int, proc: Any):
        super().__init__(proc)
        self.n = n

    def step(self, vm: "PostScriptInterpreter") -> None:
        if self.n <= 0:
            vm._estack.pop()
            return
        self.n -= 1
        _call_proc(vm, self.proc)


class _ForFrame(_LoopFrame):
    __slots__ = ("cur", "inc", "limit")

    def __init__(self, cur: int | float, inc: int | float, limit: int | float, proc: Any):
        super().__init__(proc)
        self.cur, self.inc, self.limit = cur, inc, limit

    def step(self, vm: "PostScriptInterpreter") -> None:
        if (self.inc >= 0 and self.cur > self.limit) or (self.inc < 0 and self.cur < self.limit):
            vm._estack.pop()
            return
        vm._push(self.cur)
        self.cur = self.cur + self.inc
        if type(self.cur) is int and not INT_MIN <= self.cur <= INT_MAX:
            self.cur = float(self.cur)
        _call_proc(vm, self.proc)


class _ForallFrame(_LoopFrame):
    """Iterates over a snapshot; each element is a tuple of objects to push."""

    __slots__ = ("values", "i")

    def __init__(self, values: list[tuple[Any, ...]], proc: Any):
        super().__init__(proc)
        self.values = values
        self.i = 0

    def step(self, vm: "PostScriptInterpreter") -> None:
        if self.i >= len(self.values):
            vm._estack.pop()
            return
        vals = self.values[self.i]
        self.i += 1
        for v in vals:
            vm._push(v)
        _call_proc(vm, self.proc)


# --------------------------------------------------------------------------------------------
# The interpreter

_IMPL: dict[str, Callable[["PostScriptInterpreter"], None]] = {}


def _op(*names: str) -> Callable[[Callable[["PostScriptInterpreter"], None]], Callable[["PostScriptInterpreter"], None]]:
    """Register a method as the implementation of the named operators."""

    def deco(fn: Callable[["PostScriptInterpreter"], None]) -> Callable[["PostScriptInterpreter"], None]:
        for name in names:
            _IMPL[name] = fn
        return fn

    return deco


_RUN, _FLUSH, _STREAM, _HUNG, _QUIT = "run", "flush", "stream", "hung", "quit"

_FLUSHING = b"%%[ Flushing: rest of job (to end-of-file) will be ignored ]%%\r\n"
_EXITSERVER = b"%%[ exitserver: permanent state may be changed ]%%\r\n"


class _Job:
    """Everything that is reset at the end of a job."""

    def __init__(self) -> None:
        self.ostack: list[Any] = []
        self.dstack: list[PSDict] = []
        self.mode = _RUN
        self.executive = False
        self.events = 0
        self.limit_hit = False
        self.seen: set[tuple[Any, ...]] = set()
        self.vm = 0
        self.out = 0
        self.save_level = 0
        self.seed = 0
        self.dicts: dict[str, PSDict] = {}
        self.pagedevice: PSDict | None = None  # built on first use
        self.dirty = False  # anything evaluated or reported since the job began


class PostScriptInterpreter:
    """A sans-IO PostScript engine for one connection. See the module docstring.

    ``max_token_bytes`` bounds a partial token (and a procedure body), ``max_depth`` procedure
    nesting (deeper is ``limitcheck``), ``max_stack`` the operand stack, ``max_events`` the
    ``honeyjet.ps.*`` events per job, ``max_dict_entries`` one dictionary. The extra bounds:
    ``max_steps``/``steps_per_byte`` the execution budget per connection, ``max_run_steps`` what
    one top-level object may take of it (so one object holds the loop for milliseconds at most),
    ``max_vm_bytes`` a
    job's allocations (``VMerror``), ``max_output_bytes`` what one job may send.

    ``strict`` (tests) re-raises internal errors instead of logging them and flushing the job.
    """

    strict = False

    def __init__(
        self,
        device: PSDevice,
        *,
        max_token_bytes: int = 65536,
        max_depth: int = 64,
        max_stack: int = 65535,
        max_events: int = 256,
        max_dict_entries: int = 65535,
        max_steps: int = 200_000,
        steps_per_byte: int = 2,
        max_run_steps: int = 100_000,
        max_vm_bytes: int = 8 * 1024 * 1024,
        max_output_bytes: int = 1024 * 1024,
    ):
        self.device = device
        self.max_stack = max(16, int(max_stack))
        self.max_events = max(0, int(max_events))
        self.max_dict_entries = max(16, int(max_dict_entries))
        self.max_vm_bytes = max(65536, int(max_vm_bytes))
        self.max_output_bytes = max(1024, int(max_output_bytes))
        self._max_steps = max(1000, int(max_steps))
        self._steps_per_byte = max(0, int(steps_per_byte))
        self._max_run_steps = max(1000, int(max_run_steps))
        self._top_start = 0
        self.max_top_steps = 0  # the most steps one top-level object took (diagnostics)
        self._lexer = PSLexer(max_token_bytes, max_depth)
        self._names = load_operator_names()
        self._base_systemdict = {n: Operator(n) for n in self._names.get("systemdict", ())}
        self._out: list[Output] = []
        self._estack: list[Any] = []
        self._pos = 0  # bytes consumed in this connection
        self._spent = 0  # execution steps used in this connection
        self._step_limit = self._max_steps
        self._cur_op = ""
        self._hang_op = ""
        self._dicts = self._make_dicts()
        self._new_job()

    # -- public API -------------------------------------------------------------------------

    def feed(self, data: bytes) -> list[Output]:
        """Consume any chunk of job bytes; returns the resulting Send/Emit records."""
        self._out = []
        data = bytes(data)
        base = self._pos
        pos = 0
        while pos < len(data):
            pos, tok = self._lexer.next_token(data, pos)
            self._pos = base + pos
            if tok is not None:
                self._safely(self._handle, tok)
        self._pos = base + len(data)
        return coalesce(self._out)

    def end_of_job(self) -> list[Output]:
        """UEL or EOF: complete a pending token, then start a fresh job."""
        self._out = []
        self._safely(self._end_job, None)
        return coalesce(self._out)

    @property
    def buffered_bytes(self) -> int:
        """Bytes held for an incomplete token (at most ``max_token_bytes`` + 1)."""
        return self._lexer.buffered_bytes

    # -- token handling ---------------------------------------------------------------------

    def _safely(self, fn: Callable[[Any], None], arg: Any) -> None:
        """Run ``fn(arg)``; an internal bug must not escape: it flushes the job instead."""
        try:
            fn(arg)
        except Exception:  # pragma: no cover - defensive; tests run without hitting it
            if self.strict:
                raise
            log.exception("PostScript interpreter internal error")
            self._estack.clear()
            self._job.mode = _FLUSH
            self._lexer.skip_to_eoj()

    def _handle(self, tok: tuple[int, Any]) -> None:
        kind, value = tok
        if kind == TK_EOJ:
            self._end_job(None)
        elif kind == TK_NEWLINE:
            if self._job.executive and self._job.mode == _RUN:
                self._send(b"PS>")
        elif self._job.mode != _RUN:
            return
        elif kind == TK_ERROR:
            self._job.dirty = True
            self._report_error(value[0], value[1])
        else:
            self._job.dirty = True
            was_executive = self._job.executive
            self._eval_top(value)
            if self._lexer.nl_pending:
                self._lexer.nl_pending = False
                if was_executive and self._job.executive and self._job.mode == _RUN:
                    self._send(b"PS>")

    def _end_job(self, _: Any) -> None:
        """Finish the pending token (it may still print or fail), then reset all job state."""
        try:
            for tok in self._lexer.finish():
                if self._job.mode == _RUN and tok[0] in (TK_OBJ, TK_ERROR):
                    self._handle(tok)
        finally:
            self._lexer.reset()
            if self._job.dirty:
                self._new_job()

    def _eval_top(self, obj: Any) -> None:
        """Evaluate one object from the job stream, with all it calls."""
        # the connection's budget, and at most max_run_steps for this one top-level object, so
        # no single object can hold the event loop for long
        self._step_limit = min(self._max_steps + self._steps_per_byte * self._pos, self._spent + self._max_run_steps)
        self._top_start = self._spent
        self._spent += 1
        self._hang_op = ""
        try:
            t = obj.__class__
            if t is PSArray:
                self._push(self._resolve(obj, 0))
            elif t is _Immediate:
                self._encounter(self._immediate(obj.text))
            else:
                self._encounter(obj)
            if self._estack:
                self._run()
        except PSError as err:
            self._estack.clear()
            self._report_error(err.name, err.command if err.command is not None else _command_text(obj))
        except _Hang:
            self._estack.clear()
            self._emit("honeyjet.ps.error", "PostScript job exhausted the execution budget (a real printer would "
                       "still be busy); the rest of the job is ignored",
                       {"error": "timeout", "operator": escape(self._hang_op or self._cur_op or "exec", 64)})
            self._stop_job(_HUNG)
        except _StreamStart:
            self._estack.clear()
            self._stop_job(_STREAM)
        except _QuitJob:
            self._estack.clear()
            self._stop_job(_QUIT)
        finally:
            self.max_top_steps = max(self.max_top_steps, self._spent - self._top_start)

    def _stop_job(self, mode: str) -> None:
        self._job.mode = mode
        self._job.executive = False
        self._lexer.skip_to_eoj()

    def _report_error(self, name: str, command: str) -> None:
        """Print the Adobe error message; flush the job (the executive just skips the line)."""
        job = self._job
        cmd = command.encode("latin-1", "replace")[:128]
        self._send(b"%%[ Error: " + name.encode() + b"; OffendingCommand: " + cmd + b" ]%%\r\n", force=True)
        self._emit("honeyjet.ps.error", f"PostScript error {name}, offending command {escape(cmd, 64)}",
                   {"error": name, "operator": escape(cmd, 128)})
        self._record_error(name, command)
        if job.executive:
            if not self._lexer.nl_pending:
                self._lexer.skip_line()
            return
        self._send(_FLUSHING, force=True)
        self._stop_job(_FLUSH)

    # -- job state --------------------------------------------------------------------------

    def _make_dicts(self) -> dict[str, PSDict]:
        """The standard dictionaries, built once per connection; :meth:`_new_job` resets the
        contents of the writable ones (cheaply: a job may be a single byte)."""
        d = {name: PSDict() for name in ("userdict", "globaldict", "statusdict", "serverdict", "errordict",
                                         "$error", "FontDirectory")}
        d["internaldict"] = PSDict({"superexec": Operator("superexec")}, readonly=True)
        sysd = PSDict(dict(self._base_systemdict), readonly=True)
        sysd.entries.update({"true": True, "false": False, "null": None})
        for name in ("userdict", "globaldict", "statusdict", "serverdict", "errordict", "$error"):
            sysd.entries[name] = d[name]
        for name in ("FontDirectory", "GlobalFontDirectory", "SharedFontDirectory"):
            sysd.entries[name] = d["FontDirectory"]
        sysd.entries["StandardEncoding"] = PSArray([Name(n) for n in _encoding("standard")], readonly=True)
        sysd.entries["ISOLatin1Encoding"] = PSArray([Name(n) for n in _encoding("latin1")], readonly=True)
        sysd.entries["systemdict"] = sysd
        d["systemdict"] = sysd
        self._templates: dict[str, dict[Any, Any]] = {
            "userdict": {"#copies": 1},
            "statusdict": {n: Operator(n) for n in self._names.get("statusdict", ())},
            "serverdict": {n: Operator(n) for n in self._names.get("serverdict", ())},
            "errordict": {n: Operator(n) for n in _ERROR_NAMES},
            "$error": {"newerror": False, "errorname": None, "command": None, "ostack": None, "estack": None,
                       "dstack": None, "recordstacks": True, "binary": False},
        }
        return d

    def _new_job(self) -> None:
        """Fresh job state: empty stacks, the standard dictionaries back to their defaults."""
        job = _Job()
        self._job = job
        self._os = job.ostack
        self._estack = []
        d = job.dicts = self._dicts
        for name in ("userdict", "globaldict", "statusdict", "serverdict", "errordict", "$error", "FontDirectory"):
            d[name].entries = dict(self._templates.get(name, ()))
            d[name].objkeys = {}
        dev = self.device
        d["statusdict"].entries.update({
            "product": PSString(bytearray(dev.product.encode("latin-1", "replace"))),
            "revision": int(dev.ps_revision), "jobname": PSString(bytearray()), "manualfeed": False,
            "waittimeout": 300,
        })
        # an integer, as in Ghostscript: documents test `systemdict /languagelevel get 2 ge`
        d["systemdict"].entries["languagelevel"] = int(dev.language_level)
        job.dstack = [d["systemdict"], d["globaldict"], d["userdict"]]

    def _pagedevice(self) -> PSDict:
        job = self._job
        if job.pagedevice is None:
            job.pagedevice = self._make_pagedevice()
        return job.pagedevice

    def _make_pagedevice(self) -> PSDict:
        media = PSDict({"PageSize": PSArray([612, 792]), "MediaType": None, "MediaColor": None,
                        "MediaWeight": None})
        return PSDict({
            "PageSize": PSArray([612, 792]), "HWResolution": PSArray([600, 600]), "ImagingBBox": None,
            "Margins": PSArray([0, 0]), "PageOffset": PSArray([0, 0]), "NumCopies": 1, "Collate": False,
            "Duplex": False, "Tumble": False, "ManualFeed": False, "Orientation": 0, "MediaColor": None,
            "MediaType": None, "MediaWeight": None, "MediaPosition": None, "OutputType": None,
            "OutputFaceUp": False, "Jog": 0, "NegativePrint": False, "MirrorPrint": False,
            "PostRenderingEnhance": True,
            "PostRenderingEnhanceDetails": PSDict({"REValue": 2, "Type": 8}),
            "ProcessColorModel": Name("DeviceGray"), "SeparationColorNames": PSArray([]),
            "Separations": False, "TraySwitch": True, "ExitJamRecovery": True,
            "DeviceRenderingInfo": PSDict({"Type": 2, "ValuesPerColorComponent": 256}),
            "InputAttributes": PSDict({0: media, 1: PSDict(dict(media.entries)), "Priority": PSArray([0, 1])}),
            "OutputAttributes": PSDict({0: PSDict(), "Priority": PSArray([0])}),
            "Policies": PSDict({"PolicyNotFound": 1, "PageSize": 0, "PolicyReport": scan_all(b"{pop}")[0]}),
            "BeginPage": scan_all(b"{pop}")[0], "EndPage": scan_all(b"{exch pop 2 ne}")[0],
            "Install": PSArray([], True), "OutputDevice": Name("LaserJet"),
        })

    # -- the evaluator ----------------------------------------------------------------------

    def _run(self) -> None:
        """Execute frames until the execution stack is empty (or the budget is gone)."""
        es = self._estack
        while es:
            fr = es[-1]
            if self._spent >= self._step_limit:
                self._hang_op = _frame_name(fr)
                raise _Hang
            self._spent += 1
            obj = None
            try:
                if fr.__class__ is _ProcFrame:
                    items = fr.items
                    i = fr.i
                    if i >= len(items):
                        es.pop()
                        continue
                    fr.i = i + 1
                    if i + 1 >= len(items):
                        es.pop()  # tail call: the frame is done before its last object runs
                    obj = items[i]
                    self._encounter(obj)
                else:
                    fr.step(self)
            except PSError as err:
                if err.command is None:
                    err.command = _frame_name(fr) if obj is None else _command_text(obj)
                if not self._catch(err):
                    raise

    def _catch(self, err: PSError) -> bool:
        """Unwind to the innermost ``stopped``; it returns true. False if there is none."""
        es = self._estack
        for idx in range(len(es) - 1, -1, -1):
            if es[idx].__class__ is _StoppedFrame:
                del es[idx:]
                self._record_error(err.name, err.command or "")
                if len(self._os) >= self.max_stack:
                    self._os.clear()
                self._os.append(True)
                return True
        return False

    def _record_error(self, name: str, command: str) -> None:
        err = self._job.dicts["$error"].entries
        err["newerror"] = True
        err["errorname"] = Name(name)
        err["command"] = Name(command, True)

    def _encounter(self, obj: Any) -> None:
        """An object met in the job stream or in a procedure body: names and operators run,
        procedures are pushed (deferred execution)."""
        t = obj.__class__
        if t is Name:
            if obj.executable:
                self._exec_name(obj.text)
            else:
                self._push(obj)
        elif t is Operator:
            self._call(obj.name)
        elif (t is PSString or t is PSFile) and obj.executable:
            self._exec_obj(obj)
        else:
            self._push(obj)

    def _exec_obj(self, obj: Any) -> None:
        """``exec`` semantics: procedures are called, names looked up, literals pushed."""
        t = obj.__class__
        if t is PSArray:
            if obj.executable:
                if obj.items:
                    self._push_frame(_ProcFrame(obj.items))
            else:
                self._push(obj)
        elif t is Operator:
            self._call(obj.name)
        elif t is Name and obj.executable:
            self._exec_name(obj.text)
        elif t is PSString and obj.executable:
            self._charge(16 * len(obj.data), 32)
            objs = scan_all(bytes(obj.data), self._lexer.max_token_bytes, self._lexer.max_depth)
            objs = [self._resolve(o, 0) for o in objs]
            if objs:
                self._push_frame(_ProcFrame(objs))
        elif t is PSFile and obj.executable:
            if not obj.std:
                raise _StreamStart
        else:
            self._push(obj)

    def _exec_name(self, text: str) -> None:
        val = self._lookup(text)
        if val is _MISSING:
            raise PSError("undefined", text)
        t = val.__class__
        if t is Operator:
            self._call(val.name)
        elif text in _OUTPUT_OPS:
            self._call(text)
        elif t is PSArray and val.executable:
            if val.items:
                self._push_frame(_ProcFrame(val.items))
        elif t is Name and val.executable:
            self._push_frame(_ProcFrame([val]))  # name -> name: through a frame, so bounded
        elif (t is PSString or t is PSFile) and val.executable:
            self._exec_obj(val)
        else:
            self._push(val)

    def _lookup(self, key: Any) -> Any:
        for d in reversed(self._job.dstack):
            v = d.entries.get(key, _MISSING)
            if v is not _MISSING:
                return v
        return _MISSING

    def _call(self, name: str) -> None:
        note = _NOTABLE.get(name)
        if note is not None and not self._job.limit_hit:
            if note[0] != "control" or ("op", name, "control") not in self._job.seen:
                self._note(name, note[0], self._peek_short(note[1]))
        fn = _IMPL.get(name)
        self._cur_op = name
        try:
            if fn is not None:
                fn(self)
            else:
                self._generic(name)
        except PSError as err:
            if err.command is None:
                err.command = name
            raise

    def _generic(self, name: str) -> None:
        """A known but unimplemented operator: apply its stack effect, if we know it."""
        effect = _EFFECTS.get(name)
        if effect is None:
            return
        pops, pushes = effect
        os = self._os
        top = os[-1] if os else None
        if pops:
            del os[-pops:]
        for code in pushes:
            self._push(self._dummy(code, top))

    def _dummy(self, code: str, top: Any) -> Any:
        if code == "r":
            return 0.0
        if code == "i":
            return 0
        if code == "b":
            return False
        if code == "t":
            return True
        if code == "d":
            return PSDict()
        if code == "a":
            return PSArray([])
        if code == "m":
            return PSArray([1.0, 0.0, 0.0, 1.0, 0.0, 0.0])
        if code == "p":
            return PSArray([], True)
        if code == "f":
            return _font(self, Name("Courier"))
        if code == "k":
            return top
        return PSString(bytearray())

    def _push_frame(self, frame: Any) -> None:
        if len(self._estack) >= _MAX_EXEC_STACK:
            raise PSError("execstackoverflow")
        self._estack.append(frame)

    def _resolve(self, obj: Any, depth: int) -> Any:
        """Replace ``//name`` inside a freshly scanned procedure by the names' values."""
        t = obj.__class__
        if t is _Immediate:
            return self._immediate(obj.text)
        if t is PSArray and depth < 128 and any(i.__class__ in (_Immediate, PSArray) for i in obj.items):
            obj.items[:] = [self._resolve(i, depth + 1) for i in obj.items]
        return obj

    def _immediate(self, text: str) -> Any:
        val = self._lookup(text)
        if val is _MISSING:
            raise PSError("undefined", text)
        return val

    def _charge(self, size: int, base: int = 0) -> None:
        """Account for ``base`` steps plus work proportional to ``size`` (copies, searches,
        output), before doing it. The budget is never overdrawn: a job that cannot afford the
        work hangs, and later jobs only need credit for their own work."""
        cost = base + (size >> 8)
        if self._spent + cost > self._step_limit:
            self._hang_op = self._cur_op
            raise _Hang
        self._spent += cost

    def _alloc(self, size: int) -> None:
        """Account for a job allocation; a job may not hold more than ``max_vm_bytes``."""
        self._charge(size)
        self._job.vm += size
        if self._job.vm > self.max_vm_bytes:
            raise PSError("VMerror")

    # -- operand stack helpers --------------------------------------------------------------

    def _push(self, obj: Any) -> None:
        os = self._os
        if len(os) >= self.max_stack:
            raise PSError("stackoverflow")
        os.append(obj)

    def _args(self, n: int) -> list[Any]:
        os = self._os
        if len(os) < n:
            raise PSError("stackunderflow")
        return os[-n:]

    def _ret(self, n: int, *vals: Any) -> None:
        """Replace the top ``n`` operands by ``vals`` (after the operator validated them)."""
        os = self._os
        if n:
            del os[-n:]
        if len(os) + len(vals) > self.max_stack:
            raise PSError("stackoverflow")
        os.extend(vals)

    def _peek_short(self, n: int) -> list[str]:
        if n <= 0:
            return []
        return [self._short(o) for o in self._os[-n:]]

    @staticmethod
    def _short(obj: Any) -> str:
        return escape(syntax_bytes(obj, 200, detail=True), 96)

    def _cur_dict(self) -> PSDict:
        return self._job.dstack[-1]

    # -- output and events ------------------------------------------------------------------

    def _send(self, data: bytes, force: bool = False) -> None:
        job = self._job
        if not force:
            room = self.max_output_bytes - job.out
            if room <= 0:
                return
            data = data[:room]
        job.out += len(data)
        if data:
            self._out.append(Send(bytes(data)))

    def _emit(self, eventid: str, message: str, fields: dict[str, Any]) -> None:
        job = self._job
        if job.limit_hit:
            return
        if job.events >= self.max_events:
            job.limit_hit = True
            self._out.append(Emit("honeyjet.limit.hit", f"PostScript event limit ({self.max_events}) reached for this job",
                                  {"limit": "ps_events", "value": self.max_events}))
            return
        job.events += 1
        self._out.append(Emit(eventid, message, fields))

    def _emit_once(self, key: tuple[Any, ...], eventid: str, message: str, fields: dict[str, Any]) -> None:
        job = self._job
        if key in job.seen or job.limit_hit:
            return
        job.seen.add(key)
        self._emit(eventid, message, fields)

    def _note(self, op: str, category: str, operands: list[str]) -> None:
        """Record a notable operator: once per job and distinct operands; control operators
        (which documents use all the time) once per job."""
        op_text = escape(op, 64)
        key = ("op", op, category) if category == "control" else ("op", op, category, tuple(operands))
        self._emit_once(key, "honeyjet.ps.operator",
                        f"PostScript {category} operator {op_text} {' '.join(operands)}".rstrip(),
                        {"operator": op_text, "category": category, "operands": operands})

    def _query(self, op: str, reply: bytes | str) -> None:
        """Record an answered query or printed value (once per job and distinct reply)."""
        job = self._job
        key = ("q", op, reply[:257])
        if job.limit_hit or key in job.seen:
            return
        text = escape(reply, 256)
        self._emit_once(key, "honeyjet.ps.query", f"PostScript {escape(op, 64)} answered {text}",
                        {"operator": escape(op, 64), "reply": text})

    def _output(self, op: str, data: bytes) -> None:
        self._charge(len(data), 4)
        self._send(data)
        self._query(op, data)


# --------------------------------------------------------------------------------------------
# Operators. Each validates its operands before changing the stack, so that an error leaves
# the operands in place (as PostScript requires, e.g. inside `stopped`).

VM = PostScriptInterpreter


def _int(x: Any) -> int:
    if x.__class__ is not int:
        raise PSError("typecheck")
    return x


def _num(x: Any) -> int | float:
    if x.__class__ not in _NUMS:
        raise PSError("typecheck")
    return x


def _bool(x: Any) -> bool:
    if x.__class__ is not bool:
        raise PSError("typecheck")
    return x


def _dict(x: Any) -> PSDict:
    if x.__class__ is not PSDict:
        raise PSError("typecheck")
    return x


def _string(x: Any) -> PSString:
    if x.__class__ is not PSString:
        raise PSError("typecheck")
    return x


def _array(x: Any) -> PSArray:
    if x.__class__ is not PSArray:
        raise PSError("typecheck")
    return x


def _nonneg(n: int, limit: int = 65535) -> int:
    if n < 0:
        raise PSError("rangecheck")
    if n > limit:
        raise PSError("limitcheck")
    return n


# -- operand stack ---------------------------------------------------------------------------


@_op("pop")
def op_pop(vm: VM) -> None:
    vm._args(1)
    vm._os.pop()


@_op("exch")
def op_exch(vm: VM) -> None:
    a, b = vm._args(2)
    vm._os[-2:] = [b, a]


@_op("dup")
def op_dup(vm: VM) -> None:
    vm._push(vm._args(1)[0])


@_op("index")
def op_index(vm: VM) -> None:
    n = _int(vm._args(1)[0])
    if n < 0:
        raise PSError("rangecheck")
    if len(vm._os) < n + 2:
        raise PSError("stackunderflow")
    vm._os[-1] = vm._os[-2 - n]


@_op("roll")
def op_roll(vm: VM) -> None:
    n, j = vm._args(2)
    _int(n), _int(j)
    if n < 0:
        raise PSError("rangecheck")
    if len(vm._os) < n + 2:
        raise PSError("stackunderflow")
    vm._charge(n * 8)
    del vm._os[-2:]
    if n:
        j %= n
        if j:
            part = vm._os[-n:]
            vm._os[-n:] = part[-j:] + part[:-j]


@_op("clear")
def op_clear(vm: VM) -> None:
    vm._os.clear()


@_op("count")
def op_count(vm: VM) -> None:
    vm._push(len(vm._os))


@_op("mark", "[", "<<")
def op_mark(vm: VM) -> None:
    vm._push(MARK)


def _mark_index(vm: VM) -> int:
    os = vm._os
    for i in range(len(os) - 1, -1, -1):
        if os[i] is MARK:
            return i
    raise PSError("unmatchedmark")


@_op("cleartomark")
def op_cleartomark(vm: VM) -> None:
    del vm._os[_mark_index(vm):]


@_op("counttomark")
def op_counttomark(vm: VM) -> None:
    vm._push(len(vm._os) - _mark_index(vm) - 1)


@_op("]")
def op_endarray(vm: VM) -> None:
    i = _mark_index(vm)
    items = vm._os[i + 1 :]
    vm._alloc(8 * len(items))
    del vm._os[i:]
    vm._os.append(PSArray(items))


@_op(">>")
def op_enddict(vm: VM) -> None:
    i = _mark_index(vm)
    items = vm._os[i + 1 :]
    if len(items) % 2:
        raise PSError("rangecheck")
    if len(items) // 2 > vm.max_dict_entries:
        raise PSError("dictfull")
    vm._alloc(64 * (len(items) // 2 + 1))
    d = PSDict()
    for k in range(0, len(items), 2):
        _dict_put(vm, d, items[k], items[k + 1], check_full=False)
    del vm._os[i:]
    vm._os.append(d)


@_op("copy")
def op_copy(vm: VM) -> None:
    top = vm._args(1)[0]
    if top.__class__ is int:
        n = top
        if n < 0:
            raise PSError("rangecheck")
        if len(vm._os) < n + 1:
            raise PSError("stackunderflow")
        vm._charge(n * 8)
        vm._os.pop()
        if n:
            if len(vm._os) + n > vm.max_stack:
                vm._os.append(n)
                raise PSError("stackoverflow")
            vm._os.extend(vm._os[-n:])
        return
    src, dst = vm._args(2)
    if src.__class__ is not dst.__class__:
        raise PSError("typecheck")
    if dst.__class__ is PSArray:
        if len(src.items) > len(dst.items):
            raise PSError("rangecheck")
        if dst.readonly:
            raise PSError("invalidaccess")
        vm._charge(8 * len(src.items))
        dst.items[: len(src.items)] = src.items
        vm._ret(2, PSArray(dst.items[: len(src.items)], dst.executable))
    elif dst.__class__ is PSString:
        if len(src.data) > len(dst.data):
            raise PSError("rangecheck")
        vm._charge(len(src.data))
        dst.data[: len(src.data)] = src.data
        vm._ret(2, PSString(dst.data[: len(src.data)], dst.executable))
    elif dst.__class__ is PSDict:
        vm._charge(64 * len(src.entries))
        if len(dst.entries) + len(src.entries) > vm.max_dict_entries:
            raise PSError("dictfull")
        dst.entries.update(src.entries)
        dst.objkeys.update(src.objkeys)
        vm._ret(2, dst)
    else:
        raise PSError("typecheck")


# -- arithmetic ------------------------------------------------------------------------------


def _binary(vm: VM, fn: Callable[[Any, Any], Any], ints: bool = False) -> None:
    a, b = vm._args(2)
    if ints:
        _int(a), _int(b)
    else:
        _num(a), _num(b)
    vm._ret(2, fn(a, b))


def _arith(op: Callable[[Any, Any], Any]) -> Callable[[Any, Any], Any]:
    def fn(a: Any, b: Any) -> Any:
        if a.__class__ is int and b.__class__ is int:
            return _int_or_real(op(a, b))
        return _real(float(op(a, b)))

    return fn


_add = _arith(lambda a, b: a + b)
_sub = _arith(lambda a, b: a - b)
_mul = _arith(lambda a, b: a * b)


@_op("add")
def op_add(vm: VM) -> None:
    _binary(vm, _add)


@_op("sub")
def op_sub(vm: VM) -> None:
    _binary(vm, _sub)


@_op("mul")
def op_mul(vm: VM) -> None:
    _binary(vm, _mul)


@_op("div")
def op_div(vm: VM) -> None:
    def div(a: Any, b: Any) -> float:
        if b == 0:
            raise PSError("undefinedresult")
        return _real(a / b)

    _binary(vm, div)


@_op("idiv")
def op_idiv(vm: VM) -> None:
    def idiv(a: int, b: int) -> int | float:
        if b == 0:
            raise PSError("undefinedresult")
        q = abs(a) // abs(b)
        return _int_or_real(q if (a < 0) == (b < 0) else -q)

    _binary(vm, idiv, ints=True)


@_op("mod")
def op_mod(vm: VM) -> None:
    def mod(a: int, b: int) -> int:
        if b == 0:
            raise PSError("undefinedresult")
        r = abs(a) % abs(b)
        return -r if a < 0 else r

    _binary(vm, mod, ints=True)


def _unary(vm: VM, on_int: Callable[[int], Any], on_real: Callable[[float], Any]) -> None:
    a = _num(vm._args(1)[0])
    vm._ret(1, on_int(a) if a.__class__ is int else _real(on_real(a)))


@_op("neg")
def op_neg(vm: VM) -> None:
    _unary(vm, lambda a: _int_or_real(-a), lambda a: -a)


@_op("abs")
def op_abs(vm: VM) -> None:
    _unary(vm, lambda a: _int_or_real(abs(a)), abs)


@_op("ceiling")
def op_ceiling(vm: VM) -> None:
    _unary(vm, lambda a: a, lambda a: float(math.ceil(a)))


@_op("floor")
def op_floor(vm: VM) -> None:
    _unary(vm, lambda a: a, lambda a: float(math.floor(a)))


@_op("round")
def op_round(vm: VM) -> None:
    _unary(vm, lambda a: a, lambda a: float(math.floor(a + 0.5)))


@_op("truncate")
def op_truncate(vm: VM) -> None:
    _unary(vm, lambda a: a, lambda a: float(math.trunc(a)))


def _math1(vm: VM, fn: Callable[[float], float], domain: Callable[[float], bool] = lambda x: True) -> None:
    a = _num(vm._args(1)[0])
    if not domain(a):
        raise PSError("rangecheck")
    try:
        vm._ret(1, _real(float(fn(a))))
    except (OverflowError, ValueError):
        raise PSError("undefinedresult") from None


@_op("sqrt")
def op_sqrt(vm: VM) -> None:
    _math1(vm, math.sqrt, lambda x: x >= 0)


@_op("ln")
def op_ln(vm: VM) -> None:
    _math1(vm, math.log, lambda x: x > 0)


@_op("log")
def op_log(vm: VM) -> None:
    _math1(vm, math.log10, lambda x: x > 0)


@_op("sin")
def op_sin(vm: VM) -> None:
    _math1(vm, lambda x: math.sin(math.radians(x)))


@_op("cos")
def op_cos(vm: VM) -> None:
    _math1(vm, lambda x: math.cos(math.radians(x)))


@_op("atan")
def op_atan(vm: VM) -> None:
    def atan(num: Any, den: Any) -> float:
        if num == 0 and den == 0:
            raise PSError("undefinedresult")
        return math.degrees(math.atan2(num, den)) % 360.0

    _binary(vm, atan)


@_op("exp")
def op_exp(vm: VM) -> None:
    def power(base: Any, exponent: Any) -> float:
        try:
            return _real(float(math.pow(base, exponent)))
        except (OverflowError, ValueError, ZeroDivisionError):
            raise PSError("undefinedresult") from None

    _binary(vm, power)


@_op("rand")
def op_rand(vm: VM) -> None:
    vm._job.seed = (vm._job.seed * 16807 + 1) % 2147483647
    vm._push(vm._job.seed)


@_op("srand")
def op_srand(vm: VM) -> None:
    vm._job.seed = _int(vm._args(1)[0]) & 0x7FFFFFFF
    vm._os.pop()


@_op("rrand")
def op_rrand(vm: VM) -> None:
    vm._push(vm._job.seed)


def _signed32(u: int) -> int:
    u &= 0xFFFFFFFF
    return u - 2**32 if u > INT_MAX else u


@_op("bitshift")
def op_bitshift(vm: VM) -> None:
    def shift(a: int, s: int) -> int:
        u = a & 0xFFFFFFFF
        if s >= 0:
            return _signed32(u << s) if s < 32 else 0
        return _signed32(u >> -s) if s > -32 else 0

    _binary(vm, shift, ints=True)


def _logic(vm: VM, fn: Callable[[Any, Any], Any]) -> None:
    a, b = vm._args(2)
    if a.__class__ is bool and b.__class__ is bool:
        vm._ret(2, bool(fn(a, b)))
    elif a.__class__ is int and b.__class__ is int:
        vm._ret(2, _signed32(fn(a, b)))
    else:
        raise PSError("typecheck")


@_op("and")
def op_and(vm: VM) -> None:
    _logic(vm, lambda a, b: a & b)


@_op("or")
def op_or(vm: VM) -> None:
    _logic(vm, lambda a, b: a | b)


@_op("xor")
def op_xor(vm: VM) -> None:
    _logic(vm, lambda a, b: a ^ b)


@_op("not")
def op_not(vm: VM) -> None:
    a = vm._args(1)[0]
    if a.__class__ is bool:
        vm._ret(1, not a)
    elif a.__class__ is int:
        vm._ret(1, ~a)
    else:
        raise PSError("typecheck")


@_op("eq")
def op_eq(vm: VM) -> None:
    a, b = vm._args(2)
    vm._ret(2, ps_eq(a, b))


@_op("ne")
def op_ne(vm: VM) -> None:
    a, b = vm._args(2)
    vm._ret(2, not ps_eq(a, b))


def _compare(vm: VM, fn: Callable[[Any, Any], bool]) -> None:
    a, b = vm._args(2)
    if a.__class__ in _NUMS and b.__class__ in _NUMS:
        vm._ret(2, fn(a, b))
    elif a.__class__ is PSString and b.__class__ is PSString:
        vm._ret(2, fn(bytes(a.data), bytes(b.data)))
    else:
        raise PSError("typecheck")


@_op("gt")
def op_gt(vm: VM) -> None:
    _compare(vm, lambda a, b: a > b)


@_op("ge")
def op_ge(vm: VM) -> None:
    _compare(vm, lambda a, b: a >= b)


@_op("lt")
def op_lt(vm: VM) -> None:
    _compare(vm, lambda a, b: a < b)


@_op("le")
def op_le(vm: VM) -> None:
    _compare(vm, lambda a, b: a <= b)


# -- types and conversions -------------------------------------------------------------------


@_op("type")
def op_type(vm: VM) -> None:
    a = vm._args(1)[0]
    vm._ret(1, Name(_TYPE_NAMES.get(a.__class__, "nulltype"), True))


def _with_exec(obj: Any, flag: bool) -> Any:
    t = obj.__class__
    if t is PSArray:
        return PSArray(obj.items, flag, obj.readonly)
    if t is Name:
        return Name(obj.text, flag)
    if t is PSString:
        return PSString(obj.data, flag)
    if t is PSFile:
        return PSFile(obj.name, obj.mode, obj.std, flag)
    return obj


@_op("cvx")
def op_cvx(vm: VM) -> None:
    vm._ret(1, _with_exec(vm._args(1)[0], True))


@_op("cvlit")
def op_cvlit(vm: VM) -> None:
    vm._ret(1, _with_exec(vm._args(1)[0], False))


@_op("xcheck")
def op_xcheck(vm: VM) -> None:
    a = vm._args(1)[0]
    vm._ret(1, a.__class__ is Operator or bool(getattr(a, "executable", False)))


@_op("rcheck", "wcheck")
def op_rcheck(vm: VM) -> None:
    a = vm._args(1)[0]
    if a.__class__ not in (PSString, PSArray, PSDict, PSFile):
        raise PSError("typecheck")
    vm._ret(1, vm._cur_op == "rcheck" or not getattr(a, "readonly", False))


@_op("readonly", "executeonly", "noaccess")
def op_identity(vm: VM) -> None:
    vm._args(1)


@_op("bind")
def op_bind(vm: VM) -> None:
    """Replace executable names that currently denote operators by the operators, in the
    procedure and (once each) in the procedures nested in it."""
    proc = _proc(vm._args(1)[0])
    todo, seen = ([] if proc.readonly else [proc.items]), set()
    while todo:
        items = todo.pop()
        if id(items) in seen or len(seen) >= 4096:
            continue
        seen.add(id(items))
        vm._charge(8 * len(items))
        for i, item in enumerate(items):
            t = item.__class__
            if t is Name and item.executable:
                value = vm._lookup(item.text)
                if value.__class__ is Operator:
                    items[i] = value
            elif t is PSArray and item.executable and not item.readonly:
                todo.append(item.items)


@_op("cvs")
def op_cvs(vm: VM) -> None:
    obj, buf = vm._args(2)
    _string(buf)
    text = cvs_bytes(obj)
    if len(text) > len(buf.data):
        raise PSError("rangecheck")
    buf.data[: len(text)] = text
    vm._ret(2, PSString(buf.data[: len(text)]))


@_op("cvrs")
def op_cvrs(vm: VM) -> None:
    num, radix, buf = vm._args(3)
    _num(num), _int(radix), _string(buf)
    if not 2 <= radix <= 36:
        raise PSError("rangecheck")
    if radix == 10 and num.__class__ is float:
        text = fmt_real(num).encode()
    else:
        if num.__class__ is float:
            if not INT_MIN <= num <= INT_MAX:
                raise PSError("rangecheck")
            num = int(num)
        u = num & 0xFFFFFFFF if radix != 10 else abs(num)
        digits = ""
        while True:
            u, r = divmod(u, radix)
            digits = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ"[r] + digits
            if not u:
                break
        text = (("-" if radix == 10 and num < 0 else "") + digits).encode()
    if len(text) > len(buf.data):
        raise PSError("rangecheck")
    buf.data[: len(text)] = text
    vm._ret(3, PSString(buf.data[: len(text)]))


@_op("cvn")
def op_cvn(vm: VM) -> None:
    s = _string(vm._args(1)[0])
    vm._ret(1, Name(s.data.decode("latin-1"), s.executable))


def _number_from(obj: Any) -> int | float:
    if obj.__class__ in _NUMS:
        return obj
    s = _string(obj)
    if len(s.data) > 4096:
        raise PSError("limitcheck")
    objs = scan_all(bytes(s.data))
    if len(objs) != 1 or objs[0].__class__ not in _NUMS:
        raise PSError("typecheck" if objs else "syntaxerror")
    return objs[0]


@_op("cvi")
def op_cvi(vm: VM) -> None:
    n = _number_from(vm._args(1)[0])
    if n.__class__ is float:
        if not INT_MIN <= n < INT_MAX + 1:
            raise PSError("rangecheck")
        n = int(n)
    vm._ret(1, n)


@_op("cvr")
def op_cvr(vm: VM) -> None:
    vm._ret(1, float(_number_from(vm._args(1)[0])))


# -- strings, arrays, dictionaries -----------------------------------------------------------


@_op("string")
def op_string(vm: VM) -> None:
    n = _nonneg(_int(vm._args(1)[0]))
    vm._alloc(n)
    vm._ret(1, PSString(bytearray(n)))


@_op("array")
def op_array(vm: VM) -> None:
    n = _nonneg(_int(vm._args(1)[0]))
    vm._alloc(8 * n)
    vm._ret(1, PSArray([None] * n))


@_op("packedarray")
def op_packedarray(vm: VM) -> None:
    n = _nonneg(_int(vm._args(1)[0]))
    if len(vm._os) < n + 1:
        raise PSError("stackunderflow")
    vm._alloc(8 * n)
    items = vm._os[-n - 1 : -1] if n else []
    vm._ret(n + 1, PSArray(items))


@_op("dict")
def op_dict(vm: VM) -> None:
    n = _int(vm._args(1)[0])
    if n < 0:
        raise PSError("rangecheck")
    if n > vm.max_dict_entries:
        raise PSError("limitcheck")
    vm._alloc(64)
    vm._ret(1, PSDict())


@_op("maxlength")
def op_maxlength(vm: VM) -> None:
    d = _dict(vm._args(1)[0])
    vm._ret(1, max(len(d.entries), 8) * 2 if not d.readonly else len(d.entries))


@_op("matrix")
def op_matrix(vm: VM) -> None:
    vm._alloc(48)
    vm._push(PSArray([1.0, 0.0, 0.0, 1.0, 0.0, 0.0]))


@_op("length")
def op_length(vm: VM) -> None:
    a = vm._args(1)[0]
    t = a.__class__
    if t is PSString:
        n = len(a.data)
    elif t is PSArray:
        n = len(a.items)
    elif t is PSDict:
        n = len(a.entries)
    elif t is Name:
        n = len(a.text)
    else:
        raise PSError("typecheck")
    vm._ret(1, n)


def _index(i: Any, size: int) -> int:
    _int(i)
    if not 0 <= i < size:
        raise PSError("rangecheck")
    return i


@_op("get")
def op_get(vm: VM) -> None:
    obj, key = vm._args(2)
    t = obj.__class__
    if t is PSArray:
        vm._ret(2, obj.items[_index(key, len(obj.items))])
    elif t is PSString:
        vm._ret(2, obj.data[_index(key, len(obj.data))])
    elif t is PSDict:
        val = obj.entries.get(_key(key), _MISSING)
        if val is _MISSING:
            raise PSError("undefined")
        vm._ret(2, val)
    else:
        raise PSError("typecheck")


def _dict_put(vm: VM, d: PSDict, key: Any, value: Any, check_full: bool = True) -> None:
    if d.readonly:
        raise PSError("invalidaccess")
    k = _key(key)
    if k not in d.entries:
        if check_full:
            if len(d.entries) >= vm.max_dict_entries:
                raise PSError("dictfull")
            vm._alloc(64)
        if isinstance(k, tuple) and k[0] == "id":
            d.objkeys[k] = key
    d.entries[k] = value


def _note_redefinition(vm: VM, d: PSDict, key: Any, value: Any, op: str) -> None:
    """Redefining a built-in in userdict/systemdict changes what later jobs would run."""
    if key.__class__ not in (Name, PSString):
        return
    name = _text(key).decode("latin-1")
    dicts = vm._job.dicts
    if name in vm._base_systemdict and (d is dicts["userdict"] or d is dicts["systemdict"]):
        vm._note(op, "persistent", [vm._short(Name(name)), vm._short(value)])


@_op("put")
def op_put(vm: VM) -> None:
    obj, key, value = vm._args(3)
    t = obj.__class__
    if t is PSArray:
        i = _index(key, len(obj.items))
        if obj.readonly:
            raise PSError("invalidaccess")
        obj.items[i] = value
    elif t is PSString:
        i = _index(key, len(obj.data))
        if _int(value) < 0 or value > 255:
            raise PSError("rangecheck")
        obj.data[i] = value
    elif t is PSDict:
        _dict_put(vm, obj, key, value)
        _note_redefinition(vm, obj, key, value, "put")
    else:
        raise PSError("typecheck")
    del vm._os[-3:]


@_op("getinterval")
def op_getinterval(vm: VM) -> None:
    obj, start, count = vm._args(3)
    _int(start), _int(count)
    if obj.__class__ is PSArray:
        size = len(obj.items)
    elif obj.__class__ is PSString:
        size = len(obj.data)
    else:
        raise PSError("typecheck")
    if start < 0 or count < 0 or start + count > size:
        raise PSError("rangecheck")
    vm._charge(count)
    if obj.__class__ is PSArray:
        vm._ret(3, PSArray(obj.items[start : start + count], obj.executable))
    else:
        vm._ret(3, PSString(obj.data[start : start + count], obj.executable))


@_op("putinterval")
def op_putinterval(vm: VM) -> None:
    dst, start, src = vm._args(3)
    _int(start)
    if dst.__class__ is PSArray and src.__class__ is PSArray:
        if start < 0 or start + len(src.items) > len(dst.items):
            raise PSError("rangecheck")
        if dst.readonly:
            raise PSError("invalidaccess")
        vm._charge(8 * len(src.items))
        dst.items[start : start + len(src.items)] = src.items
    elif dst.__class__ is PSString and src.__class__ is PSString:
        if start < 0 or start + len(src.data) > len(dst.data):
            raise PSError("rangecheck")
        vm._charge(len(src.data))
        dst.data[start : start + len(src.data)] = src.data
    else:
        raise PSError("typecheck")
    del vm._os[-3:]


@_op("aload")
def op_aload(vm: VM) -> None:
    arr = _array(vm._args(1)[0])
    vm._charge(8 * len(arr.items))
    vm._ret(1, *arr.items, arr)


@_op("astore")
def op_astore(vm: VM) -> None:
    arr = _array(vm._args(1)[0])
    n = len(arr.items)
    if len(vm._os) < n + 1:
        raise PSError("stackunderflow")
    if arr.readonly:
        raise PSError("invalidaccess")
    vm._charge(8 * n)
    arr.items[:] = vm._os[-n - 1 : -1] if n else []
    vm._ret(n + 1, arr)


def _search(vm: VM, anchored: bool) -> None:
    s, seek = vm._args(2)
    _string(s), _string(seek)
    vm._charge(len(s.data))
    hay, needle = s.data, bytes(seek.data)
    i = (0 if hay.startswith(needle) else -1) if anchored else hay.find(needle)
    if i < 0:
        vm._ret(2, s, False)
    elif anchored:
        vm._ret(2, PSString(hay[len(needle):]), PSString(hay[: len(needle)]), True)
    else:
        vm._ret(2, PSString(hay[i + len(needle):]), PSString(hay[i : i + len(needle)]), PSString(hay[:i]), True)


@_op("search")
def op_search(vm: VM) -> None:
    _search(vm, False)


@_op("anchorsearch")
def op_anchorsearch(vm: VM) -> None:
    _search(vm, True)


@_op("token")
def op_token(vm: VM) -> None:
    src = vm._args(1)[0]
    if src.__class__ is PSFile:
        if not src.std:
            raise _StreamStart
        vm._ret(1, False)
        return
    s = _string(src)
    vm._charge(len(s.data))
    lexer = PSLexer(vm._lexer.max_token_bytes, vm._lexer.max_depth)
    data = bytes(s.data)
    pos, tok = lexer.next_token(data, 0)
    if tok is None:
        toks = lexer.finish()
        tok = toks[0] if toks else None
        pos = len(data)
    if tok is None:
        vm._ret(1, False)
        return
    if tok[0] != TK_OBJ:
        raise PSError("syntaxerror")
    vm._ret(1, PSString(bytearray(data[pos:])), vm._resolve(tok[1], 0), True)


@_op("begin")
def op_begin(vm: VM) -> None:
    d = _dict(vm._args(1)[0])
    if len(vm._job.dstack) >= _MAX_DICT_STACK:
        raise PSError("dictstackoverflow")
    vm._os.pop()
    vm._job.dstack.append(d)


@_op("end")
def op_end(vm: VM) -> None:
    if len(vm._job.dstack) <= 3:
        raise PSError("dictstackunderflow")
    vm._job.dstack.pop()


@_op("def")
def op_def(vm: VM) -> None:
    key, value = vm._args(2)
    d = vm._cur_dict()
    _dict_put(vm, d, key, value)
    _note_redefinition(vm, d, key, value, "def")
    del vm._os[-2:]


@_op("store")
def op_store(vm: VM) -> None:
    key, value = vm._args(2)
    k = _key(key)
    target = vm._cur_dict()
    for d in reversed(vm._job.dstack):
        if k in d.entries:
            target = d
            break
    _dict_put(vm, target, key, value)
    _note_redefinition(vm, target, key, value, "store")
    del vm._os[-2:]


@_op("undef")
def op_undef(vm: VM) -> None:
    d, key = vm._args(2)
    _dict(d)
    if d.readonly:
        raise PSError("invalidaccess")
    k = _key(key)
    d.entries.pop(k, None)
    d.objkeys.pop(k, None)
    del vm._os[-2:]


@_op("load")
def op_load(vm: VM) -> None:
    key = vm._args(1)[0]
    val = vm._lookup(_key(key))
    if val is _MISSING:
        raise PSError("undefined")
    vm._ret(1, val)


@_op("known")
def op_known(vm: VM) -> None:
    d, key = vm._args(2)
    _dict(d)
    vm._ret(2, _key(key) in d.entries)


@_op("where")
def op_where(vm: VM) -> None:
    k = _key(vm._args(1)[0])
    for d in reversed(vm._job.dstack):
        if k in d.entries:
            vm._ret(1, d, True)
            return
    vm._ret(1, False)


@_op("currentdict")
def op_currentdict(vm: VM) -> None:
    vm._push(vm._cur_dict())


@_op("countdictstack")
def op_countdictstack(vm: VM) -> None:
    vm._push(len(vm._job.dstack))


@_op("cleardictstack")
def op_cleardictstack(vm: VM) -> None:
    del vm._job.dstack[3:]


@_op("dictstack")
def op_dictstack(vm: VM) -> None:
    arr = _array(vm._args(1)[0])
    ds = vm._job.dstack
    if len(arr.items) < len(ds):
        raise PSError("rangecheck")
    if arr.readonly:
        raise PSError("invalidaccess")
    arr.items[: len(ds)] = ds
    vm._ret(1, PSArray(arr.items[: len(ds)]))


# -- control ---------------------------------------------------------------------------------


def _proc(x: Any) -> PSArray:
    if x.__class__ is not PSArray:
        raise PSError("typecheck")
    return x


def _call_proc(vm: VM, proc: PSArray) -> None:
    """Run ``proc``'s body (``if`` and friends accept literal arrays too)."""
    if proc.items:
        vm._push_frame(_ProcFrame(proc.items))


@_op("exec")
def op_exec(vm: VM) -> None:
    obj = vm._args(1)[0]
    vm._os.pop()
    vm._exec_obj(obj)


@_op("if")
def op_if(vm: VM) -> None:
    cond, proc = vm._args(2)
    _bool(cond), _proc(proc)
    del vm._os[-2:]
    if cond:
        _call_proc(vm, proc)


@_op("ifelse")
def op_ifelse(vm: VM) -> None:
    cond, yes, no = vm._args(3)
    _bool(cond), _proc(yes), _proc(no)
    del vm._os[-3:]
    _call_proc(vm, yes if cond else no)


@_op("repeat")
def op_repeat(vm: VM) -> None:
    n, proc = vm._args(2)
    _int(n), _proc(proc)
    if n < 0:
        raise PSError("rangecheck")
    vm._push_frame(_RepeatFrame(n, proc))
    del vm._os[-2:]


@_op("for")
def op_for(vm: VM) -> None:
    init, inc, limit, proc = vm._args(4)
    _num(init), _num(inc), _num(limit), _proc(proc)
    if not (init.__class__ is int and inc.__class__ is int):
        init, inc = float(init), float(inc)
    vm._push_frame(_ForFrame(init, inc, limit, proc))
    del vm._os[-4:]


@_op("loop")
def op_loop(vm: VM) -> None:
    proc = _proc(vm._args(1)[0])
    vm._push_frame(_LoopFrame(proc))
    vm._os.pop()


@_op("forall")
def op_forall(vm: VM) -> None:
    obj, proc = vm._args(2)
    _proc(proc)
    t = obj.__class__
    if t is PSArray:
        values: list[tuple[Any, ...]] = [(v,) for v in obj.items]
    elif t is PSString:
        values = [(b,) for b in obj.data]
    elif t is PSDict:
        values = [(_key_object(obj, k), v) for k, v in obj.entries.items()]
    else:
        raise PSError("typecheck")
    vm._charge(8 * len(values))
    vm._push_frame(_ForallFrame(values, proc))
    del vm._os[-2:]


@_op("exit")
def op_exit(vm: VM) -> None:
    es = vm._estack
    for idx in range(len(es) - 1, -1, -1):
        cls = es[idx].__class__
        if cls is _StoppedFrame:
            break
        if isinstance(es[idx], _LoopFrame):
            del es[idx:]
            return
    raise PSError("invalidexit")


@_op("stop")
def op_stop(vm: VM) -> None:
    es = vm._estack
    for idx in range(len(es) - 1, -1, -1):
        if es[idx].__class__ is _StoppedFrame:
            del es[idx:]
            vm._push(True)
            return
    raise _QuitJob


@_op("stopped")
def op_stopped(vm: VM) -> None:
    obj = vm._args(1)[0]
    vm._push_frame(_StoppedFrame())
    vm._os.pop()
    vm._exec_obj(obj)


@_op("superexec")
def op_superexec(vm: VM) -> None:
    obj = vm._args(1)[0]
    vm._os.pop()
    vm._exec_obj(obj)


@_op("quit")
def op_quit(vm: VM) -> None:
    if vm._job.executive:
        vm._job.executive = False
        vm._lexer.report_newlines = False
        return
    raise _QuitJob


@_op("countexecstack")
def op_countexecstack(vm: VM) -> None:
    vm._push(len(vm._estack) + 1)


# -- output ----------------------------------------------------------------------------------


@_op("print")
def op_print(vm: VM) -> None:
    s = _string(vm._args(1)[0])
    vm._os.pop()
    vm._output("print", bytes(s.data))


@_op("=")
def op_eqprint(vm: VM) -> None:
    obj = vm._args(1)[0]
    vm._os.pop()
    vm._output("=", cvs_bytes(obj) + b"\n")


@_op("==")
def op_eqeqprint(vm: VM) -> None:
    obj = vm._args(1)[0]
    vm._os.pop()
    vm._output("==", syntax_bytes(obj, vm.max_output_bytes) + b"\n")


@_op("pstack", "stack")
def op_pstack(vm: VM) -> None:
    vm._charge(256 * len(vm._os))
    out = bytearray()
    for obj in reversed(vm._os):
        if len(out) >= vm.max_output_bytes:
            break
        out += (syntax_bytes(obj, vm.max_output_bytes) if vm._cur_op == "pstack" else cvs_bytes(obj)) + b"\n"
    vm._output(vm._cur_op, bytes(out))


@_op("flush", "flushfile")
def op_flush(vm: VM) -> None:
    if vm._cur_op == "flushfile":
        vm._args(1)
        vm._os.pop()


@_op("prompt")
def op_prompt(vm: VM) -> None:
    vm._send(b"PS>")


@_op("echo")
def op_echo(vm: VM) -> None:
    _bool(vm._args(1)[0])
    vm._os.pop()


_BANNER = (
    b"PostScript(r) Version %s\r\n(c) Copyright 1984-2003 Adobe Systems Incorporated.\r\n"
    b"Typefaces (c) Copyright 1981 Linotype-Hell AG and/or its subsidiaries.\r\nAll Rights Reserved.\r\n"
)


@_op("executive")
def op_executive(vm: VM) -> None:
    if vm._job.executive:
        return
    vm._job.executive = True
    vm._lexer.report_newlines = True
    vm._send(_BANNER % vm.device.ps_version.encode("latin-1", "replace") + b"PS>")


# -- device queries --------------------------------------------------------------------------


def _pstr(text: str | bytes) -> PSString:
    return PSString(bytearray(text if isinstance(text, bytes) else text.encode("latin-1", "replace")))


def _answer(vm: VM, op: str, *values: Any) -> None:
    """Push a query's result(s) and record the query."""
    for v in values:
        vm._push(v)
    vm._query(op, b" ".join(syntax_bytes(v, 200) for v in values))


@_op("product")
def op_product(vm: VM) -> None:
    _answer(vm, "product", _pstr(vm.device.product))


@_op("version")
def op_version(vm: VM) -> None:
    _answer(vm, "version", _pstr(vm.device.ps_version))


@_op("revision")
def op_revision(vm: VM) -> None:
    _answer(vm, "revision", int(vm.device.ps_revision))


@_op("serialnumber")
def op_serialnumber(vm: VM) -> None:
    _answer(vm, "serialnumber", _serial_int(vm.device.serial_number))


@_op("languagelevel")
def op_languagelevel(vm: VM) -> None:
    _answer(vm, "languagelevel", int(vm.device.language_level))


@_op("realtime")
def op_realtime(vm: VM) -> None:
    _answer(vm, "realtime", int(vm.device.uptime_ms()) & INT_MAX)


@_op("usertime")
def op_usertime(vm: VM) -> None:
    _answer(vm, "usertime", (int(vm.device.uptime_ms()) * 7 // 100) & INT_MAX)


@_op("pagecount")
def op_pagecount(vm: VM) -> None:
    _answer(vm, "pagecount", int(vm.device.page_count()))


@_op("ramsize")
def op_ramsize(vm: VM) -> None:
    _answer(vm, "ramsize", int(vm.device.ram_bytes) & INT_MAX)


@_op("printername")
def op_printername(vm: VM) -> None:
    name = vm.device.printer_name.encode("latin-1", "replace")
    if vm._os and vm._os[-1].__class__ is PSString:
        buf = vm._os[-1]
        if len(name) > len(buf.data):
            raise PSError("rangecheck")
        buf.data[: len(name)] = name
        vm._os.pop()
        _answer(vm, "printername", PSString(buf.data[: len(name)]))
    else:
        _answer(vm, "printername", _pstr(name))


def _vm_max(vm: VM) -> int:
    return min(max(int(vm.device.ram_bytes) // 8, 1 << 20), INT_MAX)


@_op("vmstatus")
def op_vmstatus(vm: VM) -> None:
    used = 262_144 + vm._job.vm
    _answer(vm, "vmstatus", vm._job.save_level, used, max(_vm_max(vm), used))


@_op("cachestatus")
def op_cachestatus(vm: VM) -> None:
    # bsize bmax msize mmax csize cmax blimit, as an idle interpreter with a warm cache reports them
    _answer(vm, "cachestatus", 7_430, 1_048_576, 14, 300, 11, 400, 12_500)


@_op("ucachestatus")
def op_ucachestatus(vm: VM) -> None:
    vm._push(MARK)
    _answer(vm, "ucachestatus", 0, 60_000, 0, 100, 1_000)


def _psdict(values: dict[str, Any]) -> PSDict:
    return PSDict({k: (_pstr(v) if isinstance(v, str) else v) for k, v in values.items()})


def _system_params(vm: VM) -> PSDict:
    dev = vm.device
    ram = int(dev.ram_bytes) & INT_MAX
    return _psdict({
        "BuildTime": _BUILD_TIME, "ByteOrder": False, "CurDisplayList": 0, "CurFontCache": 139_264,
        "CurFormCache": 0, "CurOutlineCache": 0, "CurPatternCache": 0, "CurScreenStorage": 0,
        "CurSourceList": 0, "CurStoredScreenStorage": 0, "CurUPathCache": 0, "DoPrintErrors": False,
        "FactoryDefaults": False, "FontResourceDir": "/Resource/Font/", "GenericResourceDir": "/Resource/",
        "GenericResourcePathSep": "/", "InstalledRam": ram, "JobTimeout": 0, "MaxDisplayList": 3_145_728,
        "MaxFontCache": 1_048_576, "MaxFormCache": 100_000, "MaxOutlineCache": 65_536,
        "MaxPatternCache": 100_000, "MaxScreenStorage": 262_144, "MaxSourceList": 1_048_576,
        "MaxStoredScreenStorage": 262_144, "MaxUPathCache": 0, "PageCount": int(dev.page_count()),
        "PrinterName": dev.printer_name, "RamSize": ram, "RealFormat": "IEEE", "Revision": int(dev.ps_revision),
        "SerialNumber": dev.serial_number, "StartupMode": 0, "ValidNV": True, "WaitTimeout": 300,
    })


@_op("currentsystemparams")
def op_currentsystemparams(vm: VM) -> None:
    vm._push(_system_params(vm))
    vm._query("currentsystemparams", "-dict-")


@_op("currentuserparams")
def op_currentuserparams(vm: VM) -> None:
    vm._push(_psdict({
        "AccurateScreens": False, "HalftoneMode": 0, "IdiomRecognition": False, "JobName": "",
        "MaxDictStack": _MAX_DICT_STACK, "MaxExecStack": _MAX_EXEC_STACK, "MaxFontItem": 13_000,
        "MaxFormItem": 100_000, "MaxLocalVM": _vm_max(vm), "MaxOpStack": vm.max_stack,
        "MaxPatternItem": 20_000, "MaxScreenItem": 48_000, "MaxSuperScreen": 1016, "MaxUPathItem": 0,
        "MinFontCompress": 1000, "VMReclaim": 0, "VMThreshold": 250_000,
    }))
    vm._query("currentuserparams", "-dict-")


@_op("currentpagedevice")
def op_currentpagedevice(vm: VM) -> None:
    vm._push(vm._pagedevice())
    vm._query("currentpagedevice", "-dict-")


def _device_name(vm: VM, obj: Any) -> str:
    s = _string(obj)
    return s.data.decode("latin-1")


def _disk(vm: VM, name: str) -> tuple[str, int, int] | None:
    for disk in vm.device.disks():
        if disk[0] == name:
            return disk
    return None


def _io_devices(vm: VM) -> list[str]:
    return ["%Calendar%"] + [d[0] for d in vm.device.disks()]


def _calendar(vm: VM) -> PSDict:
    now = vm.device.now().astimezone(timezone.utc)
    return _psdict({
        "Type": Name("Parameters"), "Running": True, "Year": now.year, "Month": now.month, "Day": now.day,
        "Weekday": now.isoweekday() % 7, "Hour": now.hour, "Minute": now.minute, "Second": now.second,
        "DateTime": now.strftime("%Y/%m/%d %H:%M:%S"),
    })


@_op("currentdevparams")
def op_currentdevparams(vm: VM) -> None:
    name = _device_name(vm, vm._args(1)[0])
    disk = _disk(vm, name)
    if name == "%Calendar%":
        params = _calendar(vm)
    elif disk is not None:
        total, free = max(0, disk[1]) // 1024, max(0, disk[2]) // 1024
        params = _psdict({
            "Type": Name("FileSystem"), "Searchable": True, "SearchOrder": 0, "Writeable": True,
            "Mounted": True, "Removable": False, "HasNames": True, "BlockSize": 1024,
            "PhysicalSize": total & INT_MAX, "LogicalSize": total & INT_MAX, "Free": free & INT_MAX,
            "InitializeAction": 0,
        })
    elif name in ("%stdin%", "%stdout%", "%lineedit%", "%statementedit%"):
        params = _psdict({"Type": Name("Communications")})
    else:
        raise PSError("undefined")
    vm._ret(1, params)
    vm._query("currentdevparams", f"{name} " + syntax_bytes(params, 200, detail=True).decode("latin-1"))


@_op("devstatus")
def op_devstatus(vm: VM) -> None:
    name = _device_name(vm, vm._args(1)[0])
    disk = _disk(vm, name)
    vm._os.pop()
    if disk is None:
        _answer(vm, "devstatus", False)
        return
    total, free = (max(0, disk[1]) // 1024) & INT_MAX, (max(0, disk[2]) // 1024) & INT_MAX
    _answer(vm, "devstatus", True, True, True, True, False, 0, free, total, True)


@_op("devforall")
def op_devforall(vm: VM) -> None:
    os = vm._os
    template = b"*"
    if len(os) >= 3 and os[-3].__class__ is PSString and os[-2].__class__ is PSArray:
        template = bytes(os[-3].data)
        n = 3
    else:
        n = 2
    proc, scratch = vm._args(2)
    _proc(proc), _string(scratch)
    names = [d[0].encode("latin-1", "replace") for d in vm.device.disks()]
    _iterate_names(vm, n, template, names, proc, scratch)


def _iterate_names(vm: VM, pops: int, template: bytes, names: Iterable[bytes], proc: PSArray,
                   scratch: PSString) -> None:
    values = []
    toks = _glob_tokens(template)
    for name in names:
        vm._charge(len(toks) * (len(name) + 1), 1)
        if _glob_match(toks, name):
            if len(name) > len(scratch.data):
                raise PSError("rangecheck")
            values.append((PSString(bytearray(name)),))
    vm._push_frame(_ForallFrame(values, proc))
    del vm._os[-pops:]


@_op("devmount", "devdismount")
def op_devmount(vm: VM) -> None:
    _string(vm._args(1)[0])
    vm._ret(1, True)


@_op("devformat")
def op_devformat(vm: VM) -> None:
    vm._args(2)
    del vm._os[-2:]


@_op("initializedisk")
def op_initializedisk(vm: VM) -> None:
    _pop_upto(vm, 2)


# -- parameters, passwords, job control ------------------------------------------------------


def _password_ok(pw: Any) -> bool:
    """The factory passwords: 0 (LanguageLevel 1) or the empty string."""
    if pw.__class__ is int:
        return pw == 0
    if pw.__class__ is PSString:
        return len(pw.data) == 0 or bytes(pw.data) == b"0"
    raise PSError("typecheck")


@_op("setsystemparams", "setuserparams")
def op_setsystemparams(vm: VM) -> None:
    _dict(vm._args(1)[0])
    vm._os.pop()


@_op("setdevparams")
def op_setdevparams(vm: VM) -> None:
    name, params = vm._args(2)
    _string(name), _dict(params)
    del vm._os[-2:]


@_op("setpagedevice")
def op_setpagedevice(vm: VM) -> None:
    params = _dict(vm._args(1)[0])
    hooks = [k for k in ("BeginPage", "EndPage", "Install") if k in params.entries]
    if hooks:
        vm._note("setpagedevice", "device", [vm._short(params)])
    pd = vm._pagedevice()
    for k, v in params.entries.items():
        if k in pd.entries or len(pd.entries) < 256:
            pd.entries[k] = v
    vm._os.pop()


@_op("startjob")
def op_startjob(vm: VM) -> None:
    flag, pw = vm._args(2)
    _bool(flag)
    vm._ret(2, _password_ok(pw))


@_op("exitserver")
def op_exitserver(vm: VM) -> None:
    pw = vm._args(1)[0]
    if not _password_ok(pw):
        raise PSError("invalidaccess")
    vm._os.pop()
    vm._send(_EXITSERVER)
    vm._query("exitserver", _EXITSERVER)


@_op("setrealdevice", "execjob")
def op_noop0(vm: VM) -> None:
    return None


@_op("checkpassword")
def op_checkpassword(vm: VM) -> None:
    vm._ret(1, _password_ok(vm._args(1)[0]))


@_op("setpassword")
def op_setpassword(vm: VM) -> None:
    old, new = vm._args(2)
    _password_ok(new)
    vm._ret(2, _password_ok(old))


@_op("setprintername")
def op_setprintername(vm: VM) -> None:
    _string(vm._args(1)[0])
    vm._os.pop()


@_op("internaldict")
def op_internaldict(vm: VM) -> None:
    if _int(vm._args(1)[0]) != _PASSWORD_MAGIC:
        raise PSError("invalidaccess")
    vm._ret(1, vm._job.dicts["internaldict"])


@_op("save")
def op_save(vm: VM) -> None:
    vm._push(SaveObj(vm._job.save_level, vm._job.vm))
    vm._job.save_level += 1


@_op("restore")
def op_restore(vm: VM) -> None:
    save = vm._args(1)[0]
    if save.__class__ is not SaveObj:
        raise PSError("typecheck")
    if save.level >= vm._job.save_level:
        raise PSError("invalidrestore")
    vm._job.save_level = save.level
    vm._job.vm = min(vm._job.vm, save.vm)
    vm._os.pop()


# -- resources and fonts ---------------------------------------------------------------------


def _font(vm: VM, name: Any) -> PSDict:
    key = name if name.__class__ in (Name, PSString) else Name("Courier")
    text = _text(key).decode("latin-1")
    fonts = vm._job.dicts["FontDirectory"]
    font = fonts.entries.get(text)
    if font.__class__ is PSDict:
        return font
    font = PSDict({
        "FontName": Name(text), "FontType": 1, "PaintType": 0,
        "FontMatrix": PSArray([0.001, 0.0, 0.0, 0.001, 0.0, 0.0]),
        "FontBBox": PSArray([-166, -225, 1000, 931]),
        "Encoding": vm._job.dicts["systemdict"].entries["StandardEncoding"], "FID": FontID(text),
    })
    if len(fonts.entries) < 1024:
        fonts.entries[text] = font
    return font


@_op("findfont")
def op_findfont(vm: VM) -> None:
    vm._ret(1, _font(vm, vm._args(1)[0]))


@_op("scalefont", "makefont")
def op_scalefont(vm: VM) -> None:
    font, _scale = vm._args(2)
    vm._ret(2, font if font.__class__ is PSDict else _font(vm, Name("Courier")))


@_op("definefont")
def op_definefont(vm: VM) -> None:
    key, font = vm._args(2)
    _dict(font)
    fonts = vm._job.dicts["FontDirectory"]
    if len(fonts.entries) < 1024 and key.__class__ in (Name, PSString):
        fonts.entries[_key(key)] = font
    vm._ret(2, font)


@_op("composefont")
def op_composefont(vm: VM) -> None:
    key = vm._args(3)[0]
    vm._ret(3, _font(vm, key))


@_op("findencoding")
def op_findencoding(vm: VM) -> None:
    key = vm._args(1)[0]
    sysd = vm._job.dicts["systemdict"].entries
    text = _text(key)
    vm._ret(1, sysd["ISOLatin1Encoding"] if text == b"ISOLatin1Encoding" else sysd["StandardEncoding"])


def _resource_names(vm: VM, category: str) -> list[bytes]:
    if category == "Font":
        names = list(_STANDARD_FONTS) + [k for k in vm._job.dicts["FontDirectory"].entries if isinstance(k, str)]
    elif category == "IODevice":
        names = _io_devices(vm)
    elif category == "Category":
        names = list(_CATEGORIES)
    elif category == "Encoding":
        names = ["StandardEncoding", "ISOLatin1Encoding"]
    elif category == "ProcSet":
        names = ["CIDInit", "ColorRendering", "FontSetInit", "Trapping"]
    else:
        names = []
    return [n.encode("latin-1", "replace") for n in dict.fromkeys(names)]


def _category(obj: Any) -> str:
    if obj.__class__ is not Name and obj.__class__ is not PSString:
        raise PSError("typecheck")
    return _text(obj).decode("latin-1")


@_op("resourcestatus")
def op_resourcestatus(vm: VM) -> None:
    key, cat = vm._args(2)
    category = _category(cat)
    text = _text(key) if key.__class__ in (Name, PSString) else None
    if text is not None and text in _resource_names(vm, category):
        vm._ret(2, 0, -1 if category != "Font" else 40_000, True)
    else:
        vm._ret(2, False)


@_op("resourceforall")
def op_resourceforall(vm: VM) -> None:
    template, proc, scratch, cat = vm._args(4)
    _string(template), _proc(proc), _string(scratch)
    _iterate_names(vm, 4, bytes(template.data), _resource_names(vm, _category(cat)), proc, scratch)


@_op("findresource")
def op_findresource(vm: VM) -> None:
    key, cat = vm._args(2)
    category = _category(cat)
    if category == "Font" or category == "CIDFont":
        value: Any = _font(vm, key)
    elif category == "Encoding":
        sysd = vm._job.dicts["systemdict"].entries
        value = sysd["ISOLatin1Encoding"] if _text(key) == b"ISOLatin1Encoding" else sysd["StandardEncoding"]
    elif category == "ProcSet":
        section = vm._names.get("procset:" + (_text(key) or b"").decode("latin-1"), frozenset())
        value = PSDict({n: Operator(n) for n in section})
    else:
        value = PSDict()
    vm._ret(2, value)


@_op("defineresource")
def op_defineresource(vm: VM) -> None:
    _key_, instance, _cat = vm._args(3)
    vm._ret(3, instance)


# -- files -----------------------------------------------------------------------------------

_STD_OUT = ("%stdout", "%stderr")
_STD_IN = ("%stdin", "%lineedit", "%statementedit")


@_op("file")
def op_file(vm: VM) -> None:
    name, mode = vm._args(2)
    _string(name), _string(mode)
    path = name.data.decode("latin-1")
    access = mode.data.decode("latin-1")
    vm._note("file", "stream" if path in _STD_IN else "file", [vm._short(name), vm._short(mode)])
    if path in _STD_OUT:
        vm._ret(2, PSFile(path, access, std=True))
        return
    if path in _STD_IN:
        raise _StreamStart
    if not access.startswith(("w", "a")) or not vm.device.disks():
        raise PSError("undefinedfilename")
    vm._ret(2, PSFile(path, access))


@_op("deletefile", "run")
def op_deletefile(vm: VM) -> None:
    _string(vm._args(1)[0])
    raise PSError("undefinedfilename")


@_op("renamefile")
def op_renamefile(vm: VM) -> None:
    old, new = vm._args(2)
    _string(old), _string(new)
    raise PSError("undefinedfilename")


@_op("filenameforall")
def op_filenameforall(vm: VM) -> None:
    template, proc, scratch = vm._args(3)
    _string(template), _proc(proc), _string(scratch)
    del vm._os[-3:]


@_op("status")
def op_status(vm: VM) -> None:
    obj = vm._args(1)[0]
    if obj.__class__ is PSFile:
        vm._ret(1, True)
        return
    _string(obj)
    vm._note("status", "file", [vm._short(obj)])
    vm._ret(1, False)


def _file_arg(vm: VM, f: Any, op: str, operands: list[Any]) -> PSFile:
    if f.__class__ is not PSFile:
        raise PSError("typecheck")
    if not f.std:
        vm._note(op, "file", [vm._short(o) for o in operands])
    return f


@_op("readstring", "readline", "readhexstring")
def op_readstring(vm: VM) -> None:
    f, buf = vm._args(2)
    _string(buf)
    _file_arg(vm, f, vm._cur_op, [f, buf])
    vm._ret(2, PSString(buf.data[:0]), False)


@_op("read")
def op_read(vm: VM) -> None:
    f = vm._args(1)[0]
    _file_arg(vm, f, "read", [f])
    vm._ret(1, False)


@_op("writestring", "writehexstring")
def op_writestring(vm: VM) -> None:
    f, s = vm._args(2)
    _string(s)
    _file_arg(vm, f, vm._cur_op, [f, s])
    del vm._os[-2:]
    if f.std:
        data = bytes(s.data) if vm._cur_op == "writestring" else s.data.hex().encode()
        vm._output(vm._cur_op, data)


@_op("write")
def op_write(vm: VM) -> None:
    f, b = vm._args(2)
    _int(b)
    _file_arg(vm, f, "write", [f, b])
    del vm._os[-2:]
    if f.std:
        vm._output("write", bytes([b & 0xFF]))


@_op("closefile")
def op_closefile(vm: VM) -> None:
    f = vm._args(1)[0]
    _file_arg(vm, f, "closefile", [f])
    vm._os.pop()


@_op("currentfile", "eexec")
def op_currentfile(vm: VM) -> None:
    raise _StreamStart


@_op("filter")
def op_filter(vm: VM) -> None:
    name = vm._args(1)[0]
    n = 2
    if _text(name) == b"SubFileDecode":
        n += 2
    elif len(vm._os) >= 2 and vm._os[-2].__class__ is PSDict:
        n += 1
    src = vm._args(n)[0]
    if src.__class__ is PSFile and not src.std:
        raise _StreamStart
    vm._ret(n, PSFile("filter", "r"))


# -- graphics operators whose operand count varies -------------------------------------------


def _pop_upto(vm: VM, n: int) -> None:
    """Pop up to ``n`` operands (graphics operators are modelled leniently)."""
    k = min(n, len(vm._os))
    if k:
        del vm._os[-k:]


@_op("translate", "scale", "rotate")
def op_translate(vm: VM) -> None:
    n = 1 if vm._cur_op == "rotate" else 2
    if vm._os and vm._os[-1].__class__ is PSArray:
        m = vm._os[-1]
        _pop_upto(vm, n + 1)
        vm._push(m)
    else:
        _pop_upto(vm, n)


@_op("transform", "itransform", "dtransform", "idtransform")
def op_transform(vm: VM) -> None:
    if vm._os and vm._os[-1].__class__ is PSArray:
        _pop_upto(vm, 1)
    xy = vm._os[-2:] if len(vm._os) >= 2 else [0.0, 0.0]
    _pop_upto(vm, 2)
    for v in xy:
        vm._push(v if v.__class__ in _NUMS else 0.0)


@_op("rectfill", "rectstroke", "rectclip")
def op_rectfill(vm: VM) -> None:
    if vm._os and vm._os[-1].__class__ in (PSArray, PSString):
        _pop_upto(vm, 1)
    else:
        _pop_upto(vm, 4)


@_op("setcolor")
def op_setcolor(vm: VM) -> None:
    os = vm._os
    if os and os[-1].__class__ is PSDict:
        os.pop()
    k = 0
    while k < 4 and os and os[-1].__class__ in _NUMS:
        os.pop()
        k += 1


def _mentions_currentfile(obj: Any, depth: int = 0) -> bool:
    if obj.__class__ is Name:
        return obj.text in ("currentfile", "eexec")
    if obj.__class__ is Operator:
        return obj.name in ("currentfile", "eexec")
    if obj.__class__ is PSFile:
        return not obj.std
    if obj.__class__ is PSArray and depth < 8:
        return any(_mentions_currentfile(i, depth + 1) for i in obj.items[:256])
    return False


def _image_sources(vm: VM, sources: list[Any]) -> None:
    """Inline image data follows in the stream when a data source reads ``currentfile``."""
    if any(_mentions_currentfile(s) for s in sources):
        vm._note(vm._cur_op, "stream", [])
        raise _StreamStart


@_op("image", "imagemask")
def op_image(vm: VM) -> None:
    os = vm._os
    if os and os[-1].__class__ is PSDict:
        d = os[-1]
        _image_sources(vm, [d.entries.get("DataSource")])
        os.pop()
        return
    if os:
        _image_sources(vm, [os[-1]])
    _pop_upto(vm, 5)


@_op("colorimage")
def op_colorimage(vm: VM) -> None:
    os = vm._os
    if len(os) < 2 or os[-1].__class__ is not int or os[-2].__class__ is not bool:
        _pop_upto(vm, 7)
        return
    ncomp, multi = os[-1], os[-2]
    nsrc = max(1, min(ncomp, 4)) if multi else 1
    _image_sources(vm, os[-2 - nsrc : -2])
    _pop_upto(vm, 6 + nsrc)
