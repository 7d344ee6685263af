"""PCL status readback inside a PCL job (pure, bounded).

Only the sequences a printer answers are recognised: echo ``ESC * s <n> X`` and
free-memory ``ESC * s <n> M``. Everything else in a PCL stream is print data and
gets no reply.
"""

from __future__ import annotations

import re

from honeyjet.protocols.outputs import Emit, Output, Send
from honeyjet.text import escape

_SEQ = re.compile(rb"\x1b\*s([+-]?\d{1,10})([XM])")
_MAX_PENDING = 16  # longest partial sequence kept between chunks


class PCLScanner:
    def __init__(self, memory_total: int):
        self.memory_total = memory_total
        self._pending = b""

    @property
    def buffered_bytes(self) -> int:
        return len(self._pending)

    def feed(self, data: bytes) -> list[Output]:
        buf = self._pending + data
        out: list[Output] = []
        last = 0
        for m in _SEQ.finditer(buf):
            out.extend(self._answer(m.group(1).decode(), m.group(2)))
            last = m.end()
        # keep a possible partial sequence at the end (it starts with ESC)
        cut = buf.rfind(b"\x1b", last)
        self._pending = buf[cut:] if cut != -1 and len(buf) - cut < _MAX_PENDING else b""
        return out

    def end(self) -> list[Output]:
        self._pending = b""
        return []

    def _answer(self, value: str, kind: bytes) -> list[Output]:
        if kind == b"X":
            reply = f"PCL\r\nECHO {int(value)}\r\n\x0c".encode()
            command = f"ESC*s{value}X"
        else:
            total = self.memory_total
            reply = f"PCL\r\nINFO MEMORY\r\nTOTAL={total}\r\nLARGEST={total - 256}\r\n\x0c".encode()
            command = f"ESC*s{value}M"
        return [
            Send(reply),
            Emit("honeyjet.pcl.command", f"PCL status readback {command}", {"command": command, "reply": escape(reply, 128)}),
        ]
