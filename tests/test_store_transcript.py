"""Session transcripts: the framing depends only on the byte sequence, never on how it was written."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from honeyjet.store import transcript
from honeyjet.store.transcript import MAGIC, RECORD, TranscriptWriter


class Collect:
    def __init__(self) -> None:
        self.writes: list[bytes] = []

    def write(self, data: bytes) -> None:
        self.writes.append(bytes(data))

    def blob(self) -> bytes:
        return b"".join(self.writes)


def reference(parts: list[tuple[str, bytes]]) -> bytes:
    """The HJT1 framing, written from the definition: runs per direction, cut at RECORD."""
    runs: list[tuple[str, bytearray]] = []
    for direction, data in parts:
        if not data:
            continue
        if runs and runs[-1][0] == direction:
            runs[-1][1].extend(data)
        else:
            runs.append((direction, bytearray(data)))
    out = bytearray(MAGIC)
    for direction, run in runs:
        for i in range(0, len(run), RECORD):
            rec = bytes(run[i : i + RECORD])
            out += direction.encode() + str(len(rec)).encode() + b"\n" + rec
    return bytes(out)


chunk = st.one_of(st.binary(max_size=300), st.builds(lambda n, b: bytes([b]) * n, st.integers(0, 140_000), st.integers(0, 255)))
parts_strategy = st.lists(st.tuples(st.sampled_from("CS"), chunk), max_size=12)


@settings(max_examples=60, deadline=None)
@given(parts_strategy)
def test_framing_matches_the_definition_and_parses_back(parts):
    sink = Collect()
    w = TranscriptWriter(sink)
    for direction, data in parts:
        (w.client if direction == "C" else w.server)(data)
    w.finish()
    blob = sink.blob()
    assert blob == reference(parts)
    assert transcript.client_bytes(blob) == b"".join(d for k, d in parts if k == "C")


def test_a_probe_reaches_the_sink_in_one_write():
    sink = Collect()
    w = TranscriptWriter(sink)
    w.client(b"\x1b%-12345X@PJL INFO ID\r\n\x1b%-12345X\r\n")
    w.server(b'@PJL INFO ID\r\n"HP LaserJet 4250"\r\n\x0c')
    w.finish()
    assert len(sink.writes) == 1 and sink.writes[0].startswith(MAGIC)
