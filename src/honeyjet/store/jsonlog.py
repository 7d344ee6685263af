"""The JSON-lines event log: one event per line, append-only, the sensor's primary record.

* The file is opened ``O_APPEND|O_CREAT|O_WRONLY`` (mode 0o640, parent directories
  created). With ``O_APPEND`` every write lands at the current end of the file, so
  logrotate ``copytruncate`` is safe: after the truncation the next line starts at
  offset 0 and there is no hole of NUL bytes.
* ``write()`` only serialises the event (orjson) and appends the line to a list; a
  flush at most ``flush_interval`` seconds later (``loop.call_later``; at once when the
  batch passes ``flush_bytes``) writes the batch with as few ``os.write`` calls as
  possible, each holding whole lines only. Without a running loop the line is written
  at once. The interval (20 ms by default) bounds what a killed process can lose and
  turns thousands of tiny writes per second into a few dozen.
* ``reopen()`` (SIGHUP after logrotate ``create``) closes and reopens the path; the
  sink also notices by itself, at most every ``check_interval`` seconds, that the path
  now names another file (or none) and reopens it.
* Disk errors never leave ``write()``: the lines are dropped, counted in ``counters``
  and logged once per run of failures. A line cut by a failed write is terminated
  with a newline before the next one so every later line still parses.
* Values JSON cannot hold do not crash it: bytes become escaped text
  (:func:`honeyjet.text.escape`), sets become lists, anything else ``str()``.
"""

from __future__ import annotations

import asyncio
import codecs
import errno
import json
import logging
import os
import time
from pathlib import Path
from typing import Any, Callable

import orjson

from honeyjet.text import escape

log = logging.getLogger(__name__)

FILE_MODE = 0o640
CHUNK_BYTES = 1 << 20  # bytes per os.write (whole lines; a longer single line goes alone)
_OPTIONS = orjson.OPT_APPEND_NEWLINE | orjson.OPT_NON_STR_KEYS


def json_default(value: Any) -> Any:
    """orjson ``default``: make any value serialisable, never raise."""
    if isinstance(value, (bytes, bytearray, memoryview)):
        return escape(bytes(value), limit=max(len(value), 1))
    if isinstance(value, (set, frozenset)):
        return list(value)
    try:
        return str(value)
    except Exception:  # a broken __str__ must not lose the event
        return f"<unprintable {type(value).__name__}>"


def _fallback_default(value: Any) -> Any:
    if isinstance(value, (list, tuple, dict, str, int, float, bool)) or value is None:
        return value  # pragma: no cover - json handles these itself
    return json_default(value)


def dumps_line(event: Any) -> bytes:
    """One event as one JSON line (with the trailing newline); never raises.

    orjson first; what orjson refuses (integers beyond 64 bits, strings with lone
    surrogates) goes through the standard library instead, lone surrogates written
    as the visible text ``\\udcff``.
    """
    try:
        return orjson.dumps(event, default=json_default, option=_OPTIONS)
    except (TypeError, orjson.JSONEncodeError):
        return _dumps_fallback(event)


def _surrogates_as_text(exc: UnicodeError) -> tuple[str, int]:
    """Codec error handler: a lone surrogate becomes the visible text ``\\udcff``.

    Used on JSON text, where a surrogate can only sit inside a string, so the escaped
    backslash keeps the line valid JSON (and valid UTF-8) for every consumer.
    """
    if not isinstance(exc, UnicodeEncodeError):
        raise exc
    bad = exc.object[exc.start : exc.end]
    return "".join(f"\\\\u{ord(c):04x}" for c in bad), exc.end


codecs.register_error("honeyjet.jsonlog", _surrogates_as_text)


def _dumps_fallback(event: Any) -> bytes:
    try:
        text = json.dumps(event, default=_fallback_default, ensure_ascii=False, separators=(",", ":"))
    except Exception as exc:  # e.g. circular references
        text = json.dumps(
            {
                "eventid": str(event.get("eventid", "")) if isinstance(event, dict) else "",
                "serialisation_error": str(exc),
            },
            ensure_ascii=True,
        )
    return text.encode("utf-8", "honeyjet.jsonlog") + b"\n"


class JsonLinesSink:
    """Event sink appending JSON lines to ``path`` (see the module docstring)."""

    name = "jsonlog"

    def __init__(
        self,
        path: Path,
        *,
        check_interval: float = 2.0,
        clock: Callable[[], float] = time.monotonic,
        flush_interval: float = 0.02,
        flush_bytes: int = 256 * 1024,
    ) -> None:
        self.path = Path(path)
        self.flush_interval = flush_interval
        self.flush_bytes = flush_bytes
        self._pending_bytes = 0
        self.check_interval = check_interval
        self.clock = clock
        self.counters: dict[str, int] = {
            "lines": 0,  # lines written
            "bytes": 0,  # bytes written
            "write_errors": 0,  # failed os.write / open calls
            "lines_dropped": 0,  # lines lost to those errors
            "reopens": 0,
            "serialise_fallbacks": 0,  # events orjson refused
        }
        self._fd = -1
        self._ident: tuple[int, int] | None = None
        self._next_check = 0.0
        self._pending: list[bytes] = []
        self._scheduled = False
        self._failing = False  # in a run of errors (logged once per run)
        self._broken_line = False  # the file ends in a partial line

    # -- Sink protocol ---------------------------------------------------------------

    async def start(self) -> None:
        """Open the log; an unusable path fails here, loudly, at start-up."""
        if self._fd < 0:
            self._open()

    async def stop(self) -> None:
        self.flush()
        self._close()

    def encode(self, event: dict[str, Any]) -> bytes:
        """The event's line, as :func:`dumps_line` makes it (fallbacks counted here).

        The sensor gives this to the event bus as its encoder, so each event is
        serialised once for this log and the database."""
        try:
            return orjson.dumps(event, default=json_default, option=_OPTIONS)
        except (TypeError, orjson.JSONEncodeError):
            self.counters["serialise_fallbacks"] += 1
            return _dumps_fallback(event)

    def write(self, event: dict[str, Any]) -> None:
        self.write_line(event, self.encode(event))

    def write_line(self, event: dict[str, Any], line: bytes) -> None:
        """Append an event already serialised (one line ending in a newline)."""
        self._pending.append(line)
        self._pending_bytes += len(line)
        if self._pending_bytes >= self.flush_bytes:
            self.flush()
            return
        if self._scheduled:
            return
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            self.flush()
            return
        self._scheduled = True
        if self.flush_interval > 0:
            loop.call_later(self.flush_interval, self.flush)
        else:
            loop.call_soon(self.flush)

    # -- file handling ---------------------------------------------------------------

    def _open(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(
            self.path,
            os.O_WRONLY | os.O_APPEND | os.O_CREAT | getattr(os, "O_CLOEXEC", 0),
            FILE_MODE,
        )
        st = os.fstat(fd)
        self._fd = fd
        self._ident = (st.st_dev, st.st_ino)
        self._next_check = self.clock() + self.check_interval
        # appending to a file that a crash left ending mid-line: start on a new line
        self._broken_line = st.st_size > 0 and self._ends_mid_line()

    def _ends_mid_line(self) -> bool:
        """True when the file we append to does not end with a newline."""
        try:
            with open(self.path, "rb") as f:
                f.seek(-1, os.SEEK_END)
                return f.read(1) != b"\n"
        except OSError:  # unreadable or emptied meanwhile: assume whole lines
            return False

    def _close(self) -> None:
        if self._fd >= 0:
            try:
                os.close(self._fd)
            except OSError:
                pass
        self._fd = -1
        self._ident = None

    def reopen(self) -> None:
        """Close and reopen the path (after logrotate moved the file away)."""
        self.flush()
        self._close()
        self.counters["reopens"] += 1
        try:
            self._open()
        except OSError as exc:
            self._error(exc, 0)

    def _check_rotated(self) -> None:
        now = self.clock()
        if now < self._next_check:
            return
        self._next_check = now + self.check_interval
        try:
            st = os.stat(self.path)
            moved = (st.st_dev, st.st_ino) != self._ident
        except FileNotFoundError:
            moved = True
        except OSError:
            return
        if moved:
            self._close()
            self.counters["reopens"] += 1
            self._open()

    # -- flushing --------------------------------------------------------------------

    def flush(self) -> None:
        """Write every pending line now."""
        self._scheduled = False
        lines = self._pending
        if not lines:
            return
        self._pending = []
        self._pending_bytes = 0
        try:
            if self._fd < 0:
                self._open()
            else:
                self._check_rotated()
        except OSError as exc:
            self._error(exc, len(lines))
            return
        start = 0
        size = 0
        for i, line in enumerate(lines):
            if size and size + len(line) > CHUNK_BYTES:
                if not self._write_chunk(lines[start:i], size):
                    self.counters["lines_dropped"] += len(lines) - i
                    return
                start, size = i, 0
            size += len(line)
        self._write_chunk(lines[start:] if start else lines, size)

    def _write_chunk(self, lines: list[bytes], size: int) -> bool:
        data = b"".join(lines) if len(lines) > 1 else lines[0]
        prefix = 1 if self._broken_line else 0
        if prefix:
            data = b"\n" + data
        view = memoryview(data)
        try:
            while view:
                n = os.write(self._fd, view)
                if n <= 0:
                    raise OSError(errno.EIO, "write made no progress")
                view = view[n:]
        except OSError as exc:
            written = len(data) - len(view)
            if written:
                self._broken_line = data[written - 1] != 0x0A
            complete = data.count(b"\n", 0, written) - (prefix if written else 0)
            self.counters["lines"] += complete
            self._error(exc, len(lines) - complete)
            return False
        self._broken_line = False
        self.counters["lines"] += len(lines)
        self.counters["bytes"] += size
        if self._failing:
            self._failing = False
            log.warning("event log %s: writing again", self.path)
        return True

    def _error(self, exc: OSError, dropped: int) -> None:
        self.counters["write_errors"] += 1
        self.counters["lines_dropped"] += max(0, dropped)
        if not self._failing:
            self._failing = True
            log.error("event log %s: write failed, dropping lines until it recovers: %s", self.path, exc)


__all__ = ["JsonLinesSink", "dumps_line", "json_default"]
