"""Property tests: the 9100 engine is total, chunking-independent and bounded."""

from __future__ import annotations

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from helpers import drive, make_device
from honeyjet.protocols.pjl import PJLEngine

PIECES = [
    b"\x1b%-12345X", b"@PJL ", b"@PJL", b"INFO ", b"ID", b"STATUS", b"\r\n", b"\n", b"\r", b'"', b"=", b":",
    b"ECHO x", b"SET COPIES=3", b"DEFAULT PAPER=A4", b"ENTER LANGUAGE=POSTSCRIPT", b"ENTER LANGUAGE=PCL",
    b'FSDOWNLOAD FORMAT:BINARY SIZE=5 NAME="0:/a"', b'FSUPLOAD NAME="0:/a" OFFSET=0 SIZE=9', b'FSDIRLIST NAME="0:" ENTRY=1',
    b'FSQUERY NAME="0:/../x"', b'RDYMSG DISPLAY="hi"', b"USTATUS DEVICE=VERBOSE", b"USTATUS JOB=ON", b"JOB", b"EOJ",
    b"%!", b"(x) = ", b"product print ", b"foo ", b"{ ", b"} ", b"\x1b*s-1X", b"\x1bE", b"\x04", b"\x00", b"\xff",
    b"GET / HTTP/1.1\r\n", b" ", b"\t",
]

stream = st.lists(st.one_of(st.sampled_from(PIECES), st.binary(max_size=24)), max_size=60).map(b"".join)


def chunked(data: bytes, cuts: list[int]) -> list[bytes]:
    points = sorted({c % (len(data) + 1) for c in cuts})
    out, last = [], 0
    for p in points:
        out.append(data[last:p])
        last = p
    out.append(data[last:])
    return out


def signature(run):
    return run.sent, run.events, [(c["kind"], c["meta"], c["data"], c["end"]) for c in run.captures]


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=stream, cuts=st.lists(st.integers(min_value=0, max_value=10_000), max_size=12))
def test_any_bytes_any_chunking_same_result(data, cuts):
    whole = drive(PJLEngine(make_device(), max_line=256), [data])
    parts = drive(PJLEngine(make_device(), max_line=256), chunked(data, cuts))
    assert signature(whole) == signature(parts)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=stream)
def test_byte_by_byte_same_result(data):
    whole = drive(PJLEngine(make_device(), max_line=256), [data])
    single = drive(PJLEngine(make_device(), max_line=256), [data[i : i + 1] for i in range(len(data))])
    assert signature(whole) == signature(single)


@settings(max_examples=200, deadline=None)
@given(chunks=st.lists(st.one_of(st.sampled_from(PIECES), st.binary(max_size=600)), max_size=80))
def test_buffers_stay_bounded(chunks):
    eng = PJLEngine(make_device(), max_line=256)
    for c in chunks:
        eng.feed(c)
        # a line, a UEL prefix, sniffing head, PostScript token and PCL tail are the only held bytes
        assert eng.buffered_bytes <= 256 + 4096 + 65536 + 64
    eng.eof()
