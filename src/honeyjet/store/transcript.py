"""Session transcripts: both directions of a connection, replayable, content-addressed.

Format (``HJT1``)::

    HJT1\\n
    C<len>\\n<len bytes from the client>
    S<len>\\n<len bytes from the sensor>
    …

Consecutive bytes in one direction are one run, cut into records of at most
``RECORD`` bytes. Record boundaries therefore depend only on the byte sequence, not on
how the network chunked it, so identical scans produce identical transcripts and the
artifact store keeps one copy.
"""

from __future__ import annotations

from typing import Iterator, Protocol

MAGIC = b"HJT1\n"
RECORD = 65536


class _Writer(Protocol):
    def write(self, data: bytes) -> None: ...


class TranscriptWriter:
    """Frames both directions into ``sink``.

    Small records are collected and handed over together (at ``PENDING`` bytes and at
    ``finish``), so a short session (a probe: the magic, one client and one server
    record) reaches the sink in one write; records of ``PENDING`` bytes or more go
    through at once. The bytes the sink receives are the same either way.
    """

    PENDING = 8192

    def __init__(self, sink: _Writer):
        self.sink = sink
        self._dir = b""
        self._run = bytearray()
        self._out = bytearray(MAGIC)

    def _flush(self) -> None:
        run = self._run
        if not run:
            return
        out = self._out
        out += b"%s%d\n" % (self._dir, len(run))
        if len(run) >= self.PENDING:
            self.sink.write(bytes(out))
            out.clear()
            self.sink.write(bytes(run))
        else:
            out += run
            if len(out) >= self.PENDING:
                self.sink.write(bytes(out))
                out.clear()
        run.clear()

    def _add(self, direction: bytes, data: bytes) -> None:
        if not data:
            return
        if direction != self._dir:
            self._flush()
            self._dir = direction
        run = self._run
        while data:
            room = RECORD - len(run)
            run += data[:room]
            data = data[room:]
            if len(run) == RECORD:
                self._flush()

    def client(self, data: bytes) -> None:
        self._add(b"C", data)

    def server(self, data: bytes) -> None:
        self._add(b"S", data)

    def finish(self) -> None:
        self._flush()
        if self._out:
            self.sink.write(bytes(self._out))
            self._out.clear()


def parse(blob: bytes) -> Iterator[tuple[str, bytes]]:
    """Yield ("C"|"S", bytes) records; stops quietly at a truncated or damaged tail."""
    if not blob.startswith(MAGIC):
        return
    i = len(MAGIC)
    n = len(blob)
    while i < n:
        direction = blob[i : i + 1]
        nl = blob.find(b"\n", i + 1, i + 12)
        if direction not in (b"C", b"S") or nl == -1 or not blob[i + 1 : nl].isdigit():
            return
        size = int(blob[i + 1 : nl])
        data = blob[nl + 1 : nl + 1 + size]
        yield direction.decode(), data
        if len(data) < size:
            return
        i = nl + 1 + size


def client_bytes(blob: bytes) -> bytes:
    """Everything the client sent, in order (what a replay feeds back in)."""
    return b"".join(d for direction, d in parse(blob) if direction == "C")
