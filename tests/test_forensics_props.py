"""Property tests for the forensics parsers: total, bounded, independent of chunking (fuzz)."""

from __future__ import annotations

import json

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from honeyjet.analysis.forensics import Limits, analyze_bytes, extract_indicators, simhash_text
from honeyjet.analysis.forensics.pcl5 import PCL5Text, pcl5_text
from honeyjet.analysis.forensics.pclxl import pclxl_text
from honeyjet.analysis.forensics.unwrap import classify, unwrap

# bytes biased towards PCL/PJL/HP-GL syntax so the state machine's corners are reached
_TOKENS = st.sampled_from([
    b"\x1b", b"\x1bE", b"\x1b*b", b"\x1b(s", b"\x1b)s", b"\x1b&p", b"\x1b*p", b"\x1b%-12345X", b"\x1b%0B", b"\x1b%0A",
    b"@PJL ", b"@PJL ENTER LANGUAGE=PCL\r\n", b"\r\n", b"\n", b"\x0c", b"\x03", b"LB", b"DT", b"PE", b"CO\"", b";",
    b"12", b"-3", b".5", b"W", b"w", b"X", b"x", b"Y", b"Hello ", b"www.a.example ", b"\x00", b"\xff",
])
PCLISH = st.lists(st.one_of(_TOKENS, st.binary(max_size=8)), max_size=60).map(b"".join)


def chunked(data: bytes, cuts: list[int]) -> list[bytes]:
    points = sorted({c % (len(data) + 1) for c in cuts})
    out, last = [], 0
    for p in points + [len(data)]:
        out.append(data[last:p])
        last = p
    return out


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.one_of(st.binary(max_size=512), PCLISH), cuts=st.lists(st.integers(0, 1 << 16), max_size=8),
       limit=st.integers(1, 200))
def test_pcl5_total_bounded_and_chunking_independent(data, cuts, limit):
    whole = pcl5_text(data, max_chars=limit)
    assert len(whole.text) <= limit
    ext = PCL5Text(max_chars=limit)
    for piece in chunked(data, cuts):
        ext.feed(piece)
    assert ext.close() == whole.text
    assert ext.pages == whole.pages and ext.first_page_end == whole.first_page_end


@settings(max_examples=200, deadline=None)
@given(data=st.binary(max_size=400))
def test_pclxl_total(data):
    res = pclxl_text(b") HP-PCL XL;2;0\n" + data, max_chars=100)
    assert len(res.text) <= 101 and res.pages >= 0


@settings(max_examples=200, deadline=None)
@given(data=st.one_of(st.binary(max_size=400), PCLISH, st.binary(max_size=300).map(lambda b: b"POST / HTTP/1.1\r\n" + b)))
def test_unwrap_and_classify_total(data):
    un = unwrap(data)
    assert len(un.payload) <= len(data)
    assert classify(un.payload, un.pjl.enter_language if un.pjl else "") in (
        "pjl", "postscript", "pcl5", "pclxl", "pdf", "text", "raster", "html", "binary", "empty")


@settings(max_examples=200, deadline=None)
@given(text=st.text(max_size=300))
def test_indicators_total(text):
    found = extract_indicators(text, limit=20)
    assert len(found) <= 20
    for item in found:
        assert item["type"] in ("url", "domain", "email", "phone", "btc", "eth", "xmr", "ipv4")
        assert 0 <= item["offset"]
    assert 0 <= simhash_text(text) < 1 << 64


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.one_of(st.binary(max_size=600), PCLISH))
def test_analyze_bytes_total(data):
    report = analyze_bytes(data, render=False, limits=Limits(ghostscript=False))
    json.dumps(report.to_dict())
    assert len(report.text) <= 65536
