"""A print job arriving over any protocol (9100, IPP, LPD): one place for the bookkeeping.

:class:`JobCapture` numbers the job in the device's job log, marks the device busy while
it arrives, sniffs the language when none was declared, estimates pages, and produces
the capture outputs (``CaptureStart`` / ``CaptureData`` / ``CaptureEnd``) and the
``honeyjet.job.start`` event. When the job ends the device's page counter rises by the
estimate, so a job over any port shows up in every protocol's page count.
"""

from __future__ import annotations

from typing import Any

from honeyjet.persona.device import Device
from honeyjet.protocols.outputs import CaptureData, CaptureEnd, CaptureStart, Emit, Output
from honeyjet.protocols.pages import PageEstimator
from honeyjet.protocols.sniff import SNIFF_BYTES, sniff
from honeyjet.text import escape

_WS = b" \t\r\n\x00\x0c\x04"
SNIFF_MAX = 4096  # bytes of leading whitespace a job may carry before it is sniffed anyway


class JobCapture:
    """One job. ``feed`` returns (outputs, bytes released to interpreters).

    Until the language is known (declared, or sniffed from the first non-blank
    SNIFF_BYTES), bytes are held back; they are released, in order, once it is, so an
    interpreter layered on top (PostScript, PCL) sees the whole job exactly once.
    """

    def __init__(self, device: Device, *, language: str = "", name: str = "", user: str = "", extra: dict[str, Any] | None = None):
        self.device = device
        self.number = device.job_begin()
        self.language = language
        self.name = name
        self.user = user
        self.extra = dict(extra or {})
        self.opened = False
        self.size = 0
        self.pages: PageEstimator | None = None
        self._head = bytearray()
        self._ended = False

    def declare(self, language: str) -> None:
        """The language became known before any byte arrived (e.g. IPP Send-Document's format)."""
        if not self.opened and language:
            self.language = language

    @property
    def buffered_bytes(self) -> int:
        return len(self._head)

    def _open(self, out: list[Output]) -> bytes:
        if not self.language:
            language = sniff(bytes(self._head[:SNIFF_MAX]))
            self.language = "text" if language == "empty" else language
        self.opened = True
        self.pages = PageEstimator(self.language)
        meta = {"job": self.number, "language": self.language, "name": escape(self.name, 256)}
        out.append(CaptureStart("job", dict(meta, **self.extra)))
        out.append(Emit("honeyjet.job.start", f"print job {self.number} started ({self.language})", meta))
        head = bytes(self._head)
        self._head.clear()
        if head:
            self._bytes(out, head)
        return head

    def _bytes(self, out: list[Output], data: bytes) -> None:
        self.size += len(data)
        out.append(CaptureData(data))
        assert self.pages is not None
        self.pages.feed(data)

    def feed(self, data: bytes) -> tuple[list[Output], bytes]:
        out: list[Output] = []
        if not data or self._ended:
            return out, b""
        if self.opened:
            self._bytes(out, data)
            return out, data
        if self.language:
            self._head += data
            return out, self._open(out)
        self._head += data
        if len(self._head.lstrip(_WS)) < SNIFF_BYTES and len(self._head) < SNIFF_MAX:
            return out, b""
        return out, self._open(out)

    def open_now(self) -> tuple[list[Output], bytes]:
        """Decide the language with what has arrived (end of data, or a declared language)."""
        out: list[Output] = []
        released = b"" if self.opened else self._open(out)
        return out, released

    def end(self, ended_by: str, **meta: Any) -> list[Output]:
        """The job is complete (or cut off): pages are counted and the capture closed."""
        out: list[Output] = []
        if self._ended:
            return out
        if not self.opened:
            self._open(out)
        self._ended = True
        assert self.pages is not None
        pages = self.pages.pages()
        self.device.job_end(
            {"job": self.number, "name": self.name, "user": self.user, "language": self.language, "pages": pages, "size": self.size}
        )
        end_meta = {
            "job": self.number,
            "language": self.language,
            "name": escape(self.name, 256),
            "user": escape(self.user, 256),
            "pages": pages,
            "ended_by": ended_by,
        }
        end_meta.update(meta)
        out.append(CaptureEnd(end_meta))
        return out
