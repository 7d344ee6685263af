"""Job forensics: languages, wrappers, text, indicators, previews (quick tests: no Ghostscript)."""

from __future__ import annotations

import base64
import io
import json
import os
import struct
from pathlib import Path

import pytest
from PIL import Image

from honeyjet.analysis.forensics import (
    JobReport,
    Limits,
    analyze_bytes,
    analyze_file,
    extract_indicators,
    hamming,
    refang,
    simhash64,
    simhash_bytes,
    simhash_text,
)
from honeyjet.analysis.forensics import wallets
from honeyjet.analysis.forensics.pcl5 import PCL5Text, pcl5_text
from honeyjet.analysis.forensics.pclxl import pclxl_text
from honeyjet.analysis.forensics.unwrap import classify, unwrap

DATA = Path(__file__).parent / "data"
FORENSICS = DATA / "forensics"
CORPUS = {e["id"]: base64.b64decode(e["payload_b64"]) for e in json.loads((DATA / "corpus" / "probes.json").read_text())}
NO_GS = Limits(ghostscript=False)
UEL = b"\x1b%-12345X"


def quick(data: bytes, **kw) -> JobReport:
    return analyze_bytes(data, limits=kw.pop("limits", NO_GS), **kw)


def assert_png(png: bytes) -> tuple[int, int]:
    assert png.startswith(b"\x89PNG\r\n\x1a\n") and len(png) <= 1 << 20
    with Image.open(io.BytesIO(png)) as img:
        img.verify()
    with Image.open(io.BytesIO(png)) as img:
        assert img.format == "PNG"
        return img.size


def ink(png: bytes) -> int:
    """Dark pixels in a preview (something was drawn)."""
    with Image.open(io.BytesIO(png)) as img:
        return sum(img.convert("L").point(lambda p: 255 if p < 128 else 0).histogram()[255:])


# -- PCL5 ------------------------------------------------------------------------------------
SOFT_FONT_HEADER = struct.pack(">HBBHHHHHBB", 64, 0, 0, 0, 14, 0x7FFF, 0xFFFF, 2, 0, 0) + bytes(48)
PCL5_JOB = (
    UEL + b"@PJL JOB NAME=\"invoice\"\r\n@PJL SET USERNAME=\"mallory\"\r\n@PJL ENTER LANGUAGE=PCL\r\n"
    + b"\x1bE\x1b&l0O\x1b(s0p12h10v0s0b3T"
    + b"\x1b*c4242D\x1b)s%dW" % len(SOFT_FONT_HEADER) + SOFT_FONT_HEADER  # soft-font header download
    + b"\x1b(s1p10v0s0b4148T\x1b*p300x400YPay 0.05 BTC to bc1qw508d6qejxtdg4y5r3zarvary0c5xw7kv8f3t4"
    + b"\x1b*p300x450YInvoice at hxxp://pay[.]example/inv\r\n"
    + b"\x1b*t75R\x1b*r1A\x1b*b0m4W\x1b\x0c\x0c\x0a\x1b*b2w\xff\x0c1Y\x1b*rB"  # raster rows hold ESC/FF bytes
    + b"\x1b&p11XCall now:  \x1b*p100X+1 202-555-0143\x0cPage two\r\n"
    + b"\x1b%0BIN;SP1;PA100,100;LBHidden label\x03PU;DT#;LBsecond#PE<=abLBc;CO\"LB x\";\x1b%0A"
    + b"\x1bE" + UEL + b"@PJL EOJ\r\n" + UEL
)


def test_pcl5_text_skips_payloads_and_keeps_text():
    ext = pcl5_text(PCL5_JOB)
    assert ext.pages == 2
    assert ext.text == (
        "Pay 0.05 BTC to bc1qw508d6qejxtdg4y5r3zarvary0c5xw7kv8f3t4\n"
        "Invoice at hxxp://pay[.]example/inv\n"
        "Call now:  +1 202-555-0143\nPage two\nHidden label\nsecond\n"
    )
    assert ext.first_page_end == ext.text.index("Page two")
    assert not ext.truncated


@pytest.mark.parametrize("step", [1, 2, 3, 5, 9, 64])
def test_pcl5_text_is_independent_of_chunking(step):
    ext = PCL5Text()
    for i in range(0, len(PCL5_JOB), step):
        ext.feed(PCL5_JOB[i : i + step])
    assert ext.close() == pcl5_text(PCL5_JOB).text


def test_pcl5_raster_from_ghostscript_yields_no_text():
    # ljet4 output is PCL5 raster: every ESC*b#W payload must be skipped by its count
    data = (FORENSICS / "spam.ljet4").read_bytes()
    assert pcl5_text(data).text.strip() == ""
    report = quick(data)
    assert report.language == "pcl5" and report.pages == 2


def test_pcl5_bounds():
    ext = pcl5_text(b"A" * 1000, max_chars=100)
    assert ext.text == "A" * 100 and ext.truncated
    # a raster count far beyond the data swallows the rest, nothing more
    assert pcl5_text(b"\x1b*b99999999999WHello").text == ""
    assert pcl5_text(b"\x1b*b-5WHello").text == "Hello"
    assert pcl5_text(b"\x1b&p4XAB\x01CDEF").text == "ABCDEF"  # transparent data: 4 bytes, control dropped


def test_pcl5_job_report():
    report = quick(PCL5_JOB)
    assert report.language == "pcl5" and report.wrappers == ["pjl"] and report.text_source == "pcl5"
    assert report.pjl["job_name"] == "invoice" and report.pjl["user"] == "mallory"
    assert report.pjl["enter_language"] == "PCL"
    kinds = {(i["type"], i["value"]) for i in report.indicators}
    assert ("btc", "bc1qw508d6qejxtdg4y5r3zarvary0c5xw7kv8f3t4") in kinds
    assert ("url", "http://pay.example/inv") in kinds
    assert ("phone", "+12025550143") in kinds
    assert report.preview_count == 1 and ink(report.previews[0]) > 100


def test_corpus_font_download_pc120():
    report = quick(CORPUS["pc-120"])
    assert report.language == "pcl5" and report.wrappers == ["pjl"]
    assert report.pjl["enter_language"] == "PCL"
    assert report.text == ""  # the font header bytes are not text


# -- PCL XL ----------------------------------------------------------------------------------
def pxl_text_op(text: bytes) -> bytes:
    return b"\xc8\xc1" + struct.pack("<H", len(text)) + text + b"\xf8\xab\xa8"  # ubyte_array TextData, Text


PCLXL_JOB = (
    UEL + b"@PJL ENTER LANGUAGE=PCLXL\r\n) HP-PCL XL;2;0;Comment honeyjet test\r\n"
    + b"\xd1\x58\x02\x58\x02\xf8\x89\xc0\x00\xf8\x86\x41"  # BeginSession UnitsPerMeasure, Measure
    + b"\xc0\x00\xf8\x28\x43"  # BeginPage Orientation
    + b"\xc8\xc0\x07Courier\xf8\xa8\xd5" + struct.pack("<ff", 12.0, 0) + b"\xf8\xa6\x6f"  # SetFont (FontName)
    + b"\xd3\x64\x00\x64\x00\xf8\x4c\x6b" + pxl_text_op(b"Send 1 BTC")  # SetCursor, Text
    + b"\xd3\x64\x00\xc8\x00\xf8\x4c\x6b" + pxl_text_op(b"to win")
    + b"\xfb\x03abc"  # embedded data, skipped
    + b"\x44\x42" + UEL  # EndPage EndSession
)


def test_pclxl_text_and_pages():
    res = pclxl_text(PCLXL_JOB[PCLXL_JOB.index(b")") :])
    assert res.text == "Send 1 BTC\nto win\n" and res.pages == 1 and res.fonts == ["Courier"] and res.error == ""
    report = quick(PCLXL_JOB)
    assert report.language == "pclxl" and report.text_source == "pclxl" and report.pages == 1
    assert report.preview_count == 1


def test_pclxl_from_ghostscript_walks_to_the_end():
    data = (FORENSICS / "spam.pxl").read_bytes()
    report = quick(data)
    assert report.language == "pclxl" and report.wrappers == ["pjl"]
    assert report.pages == 2 and not report.errors  # every tag understood, both EndPage seen


# -- PDF, text, HTML, raster, binary ---------------------------------------------------------
def test_pdf_text_pages_previews():
    report = quick((FORENSICS / "spam.pdf").read_bytes())
    assert report.language == "pdf" and report.text_source == "pdfium" and report.pages == 2
    assert "WIN A PRIZE - limited offer!" in report.text and "Second page" in report.text
    assert report.preview_count == 2
    for png in report.previews:
        w, h = assert_png(png)
        assert (w, h) == (496, 702)  # A4 (Debian's Ghostscript default) at 60 dpi
        assert ink(png) > 200
    kinds = {(i["type"], i["value"]) for i in report.indicators}
    assert {("url", "https://prize-claim.example/now"), ("btc", "1A1zP1eP5QGefi2DMPTfTL5SLmv7DivfNa"), ("phone", "+442079460958")} <= kinds


def test_corpus_pdf_spam_pc042():
    report = quick(CORPUS["pc-042"])
    assert report.language == "pdf" and "Subscribe now - limited offer!" in report.text and report.pages == 1


def test_broken_pdf_is_a_recorded_failure():
    report = quick(b"%PDF-1.4\n1 0 obj<</Type/Catalog>>endobj\ntrailer<</Root 9 0 R>>\n%%EOF\n")
    assert report.language == "pdf"
    assert any(e.startswith("pdfium:") for e in report.errors)


def test_plain_text_spam_pc039():
    report = quick(CORPUS["pc-039"])
    assert report.language == "text" and report.wrappers == [] and report.text_source == "plain"
    assert report.text.startswith("*** PRINTER ADVERTISING ***\n\nThis message reached")
    assert "\r" not in report.text and "\x0c" not in report.text
    urls = [i for i in report.indicators if i["type"] == "url"]
    assert urls == [{"type": "url", "value": "www.example-printads.invalid", "offset": report.text.index("www."),
                     "raw_offset": report.text.index("www.")}]
    assert report.pages == 1 and report.preview_count == 1 and ink(report.previews[0]) > 300


def test_text_with_form_feed_previews_first_page_only():
    data = b"first page line\r\n\x0csecond page SECRET\r\n"
    report = quick(data)
    assert report.language == "text" and report.text == "first page line\n\nsecond page SECRET\n"
    assert report.pages == 1  # one form feed, 2 lines: PageEstimator's count
    one = ink(report.previews[0])
    both = ink(quick(b"first page line\r\nsecond page SECRET\r\n").previews[0])
    assert 0 < one < both


def test_ipp_wrapped_text_pc045():
    report = quick(CORPUS["pc-045"])
    assert report.wrappers == ["http", "ipp"] and report.language == "text"
    assert report.ipp["operation"] == "Print-Job" and report.ipp["document_format"] == "text/plain"
    assert report.http["method"] == "POST" and report.http["target"] == "/ipp/print"
    assert "www.example-printads.invalid" in report.text
    assert report.simhash == quick(CORPUS["pc-039"]).simhash  # same document, other transport


def test_http_wrapped_pjl_pc047():
    report = quick(CORPUS["pc-047"])
    assert report.wrappers == ["http", "pjl"] and report.language == "pjl"
    assert report.http["origin"] == "http://attacker.example"
    assert report.http["referer"] == "http://attacker.example/"
    assert report.http["user_agent"].startswith("Mozilla/5.0")
    assert ["Origin", "http://attacker.example"] in report.http["headers"]
    assert report.pjl["commands"] == ["RDYMSG"] and report.pjl["display"] == ["XSP was here"]
    assert report.payload_size == 0 and report.text == ""


def test_http_chunked_and_truncated_bodies():
    chunked = b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n6\r\nHello \r\n6\r\nworld!\r\n0\r\n\r\n"
    report = quick(chunked)
    assert report.wrappers == ["http"] and report.language == "text" and report.text == "Hello world!"
    assert report.payload_offset == -1
    cut = quick(b"POST / HTTP/1.1\r\nContent-Length: 500\r\n\r\nonly this")
    assert cut.http["body_truncated"] is True and cut.text == "only this"


def test_firmware_upload_pc098():
    report = quick(CORPUS["pc-098"])
    assert report.language == "binary" and report.wrappers == ["pjl"]
    assert report.pjl["upgrade_size"] == 1048576 and report.pjl["enter_language"] == "FWUPDATE"
    assert report.pjl["job_name"] == "FIRMWARE_UPDATE"
    assert report.entropy > 7.0 and report.text == "" and report.simhash_source == "bytes"


def test_high_entropy_firmware_after_enter_fwupdate():
    blob = os.urandom(1 << 16)
    data = UEL + b"@PJL UPGRADE SIZE=65536\r\n@PJL ENTER LANGUAGE=FWUPDATE\r\n" + blob
    report = quick(data)
    assert report.language == "binary" and report.payload_size == len(blob)
    assert report.payload_offset == len(data) - len(blob)
    assert report.entropy > 7.9 and report.pages is None


def test_pjl_wrapped_postscript_facts_pc001():
    report = quick(CORPUS["pc-001"])
    assert report.language == "postscript" and report.wrappers == ["pjl"]
    pjl = report.pjl
    assert pjl["user"] == "jdoe" and pjl["host"] == "WS-0142" and pjl["job_name"] == "Budget 2024.xlsx"
    assert pjl["enter_language"] == "POSTSCRIPT"
    assert pjl["jobattr"] == ["JobAcct1=jdoe", "JobAcct2=WS-0142"]
    assert pjl["comments"] == ['"Username: jdoe; App Filename: Budget 2024.xlsx; 3-14-2024"']
    assert pjl["commands"][:3] == ["JOB", "SET STRINGCODESET", "COMMENT"] and pjl["commands"][-1] == "EOJ"
    assert report.pages == 1 and "PJL encapsulated PostScript" in report.magic
    assert report.sandbox == "" and report.text_source == "none"  # Ghostscript disabled here


def test_html_job():
    data = b"<!DOCTYPE html><html><head><style>p{}</style></head><body><h1>Cheap ink</h1><p>Order at <a href='https://ink.example/buy'>our shop</a></p></body></html>"
    report = quick(data)
    assert report.language == "html" and report.text_source == "html"
    assert "Cheap ink" in report.text and "p{}" not in report.text
    assert {"url", "domain"} <= {i["type"] for i in report.indicators}


@pytest.mark.parametrize("fmt", ["PNG", "JPEG", "TIFF", "GIF"])
def test_raster_images(fmt):
    img = Image.new("RGB", (300, 200), "white")
    img.paste((0, 0, 0), (50, 50, 250, 150))
    buf = io.BytesIO()
    img.save(buf, fmt)
    report = quick(buf.getvalue())
    assert report.language == "raster" and report.raster == fmt.lower() and report.pages == 1
    assert report.preview_count == 1 and ink(report.previews[0]) > 1000


def test_pwg_and_urf_raster_are_named():
    assert quick(b"RaS2" + bytes(1796)).raster == "pwg"
    assert quick(b"UNIRAST\x00" + bytes(64)).raster == "urf"


def test_empty_and_whitespace():
    for data in (b"", b"\r\n\x00 \x0c"):
        report = quick(data)
        assert report.language == "empty" and report.text == "" and report.indicators == [] and not report.errors


def test_classify_declared_languages():
    assert classify(b"/Helvetica findfont 12 scalefont setfont", "POSTSCRIPT") == "postscript"
    assert classify(b"plain words", "PCL") == "pcl5"
    assert classify(b"Hello \x1b&l1H world") == "pcl5"
    assert classify(b"\x00\x01\x02\x03\xfe\xfd" * 10) == "binary"
    assert classify(b"", had_pjl=True) == "pjl"


def test_unwrap_fsdownload_skips_file_data():
    data = UEL + b"@PJL FSDOWNLOAD FORMAT:BINARY SIZE=10 NAME=\"0:\\..\\..\\etc\\rc\"\r\n@PJL ENTER\r\n\r\n@PJL INFO ID\r\n" + UEL
    un = unwrap(data)
    assert un.wrappers == ["pjl"] and un.pjl is not None
    assert un.pjl.files == ["0:\\..\\..\\etc\\rc"] and un.pjl.commands == ["FSDOWNLOAD", "INFO ID"]
    assert un.payload.strip() == b""


# -- indicators ------------------------------------------------------------------------------
BTC_GENESIS = "1A1zP1eP5QGefi2DMPTfTL5SLmv7DivfNa"
BTC_P2SH = "3J98t1WpEZ73CNmQviecrnyiWrnqRhWNLy"
BECH32_V0 = "BC1QW508D6QEJXTDG4Y5R3ZARVARY0C5XW7KV8F3T4"  # BIP-173 test vector
BECH32M_V1 = "bc1p0xlxvlhemja6c4dqv22uapctqupfhlxm9h8z3k2e72q4k9hcz7vqzk5jj0"  # BIP-350 test vector
ETH_EIP55 = "0x5aAeb6053F3E94C9b9A09f33669435E7Ef1BeAed"  # EIP-55 example
ETH_LOWER = "0x52908400098527886e0f7030069857d2e4169ee7"
XMR = "44AFFq5kSiGBoZ4NMDwYtN18obc8AemS33DBLWs3H7otXft3XjrpDtQGv7SqSsaBYBb98uNbr2VBBEt7f2wfn3RVGQBEP3A"  # Monero general fund


def corrupt(address: str, at: int) -> str:
    ch = address[at]
    for repl in "23456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz":
        if repl != ch and (repl.isupper() == ch.isupper() or not ch.isalpha()):
            return address[:at] + repl + address[at + 1 :]
    raise AssertionError


@pytest.mark.parametrize(
    ("kind", "address", "checksummed", "value"),
    [
        ("btc", BTC_GENESIS, True, BTC_GENESIS),
        ("btc", BTC_P2SH, True, BTC_P2SH),
        ("btc", BECH32_V0, True, BECH32_V0.lower()),
        ("btc", BECH32M_V1, True, BECH32M_V1),
        ("eth", ETH_EIP55, True, ETH_EIP55),
        ("eth", ETH_LOWER, False, ETH_LOWER),
        ("xmr", XMR, True, XMR),
    ],
)
def test_wallets_valid_and_corrupted(kind, address, checksummed, value):
    text = f"Send the ransom to {address} today."
    found = [i for i in extract_indicators(text) if i["type"] == kind]
    assert found == [{"type": kind, "value": value, "offset": 19, "raw_offset": 19, "checksummed": checksummed}]
    if kind == "eth" and not checksummed:
        at = next(i for i, ch in enumerate(address) if i > 1 and ch.isalpha())
        bad = address[:at] + address[at].upper() + address[at + 1 :]  # one letter's case: a failing EIP-55 checksum
    elif kind == "btc" and address.lower().startswith("bc1"):
        bad = address[:-3] + ("q" if address[-3].lower() != "q" else "p") + address[-2:]
        bad = bad.upper() if address.isupper() else bad
    else:
        bad = corrupt(address, len(address) // 2)
    assert not [i for i in extract_indicators(f"Send the ransom to {bad} today.") if i["type"] == kind]


def test_wallet_checks_direct():
    assert wallets.segwit_decode(BECH32_V0) == ("bc", 0, bytes.fromhex("751e76e8199196d454941c45d1b3a323f1433bd6"))
    assert wallets.segwit_decode(BECH32M_V1)[1] == 1
    # BIP-350: a v1 program with a bech32 (not bech32m) checksum is invalid
    assert wallets.segwit_decode("bc1pw508d6qejxtdg4y5r3zarvary0c5xw7kw508d6qejxtdg4y5r3zarvary0c5xw7k7grplx") is None
    assert wallets.segwit_decode("bc1qW508d6qejxtdg4y5r3zarvary0c5xw7kv8f3t4") is None  # mixed case
    for example in ("0xfB6916095ca1df60bB79Ce92cE3Ea74c37c5d359", "0xdbF03B407c01E7cD3CBea99509d93f8DDDC8C6FB",
                    "0xD1220A0cf47c7B9Be7A2E6BA89F429762e7b9aDb"):
        assert wallets.eth_checksum(example) is True
    assert wallets.keccak256(b"").hex() == "c5d2460186f7233c927e7db2dcc703c0e500b653ca82273b7bfad8045d85a470"


def test_indicators_refang_offsets_dedupe():
    text = "Go to hxxp://evil[.]example[.]com/pay or www.scam-site.invalid, mail scam[at]example[.]org; again hxxp://evil[.]example[.]com/pay"
    refanged, _ = refang(text)
    assert refanged.startswith("Go to http://evil.example.com/pay or www.scam-site.invalid, mail scam@example.org;")
    found = extract_indicators(text)
    by = {(i["type"], i["value"]): i for i in found}
    url = by[("url", "http://evil.example.com/pay")]
    assert refanged[url["offset"] :].startswith("http://evil.example.com/pay") and url["raw_offset"] == 6
    assert [i["value"] for i in found if i["type"] == "url"] == ["http://evil.example.com/pay", "www.scam-site.invalid"]
    email = by[("email", "scam@example.org")]
    assert text[email["raw_offset"] :].startswith("scam[at]")
    assert {("domain", "evil.example.com"), ("domain", "www.scam-site.invalid"), ("domain", "example.org")} <= set(by)
    offsets = [i["offset"] for i in found]
    assert offsets == sorted(offsets)


def test_indicators_phones_ipv4_and_noise():
    text = "Call +1 202-555-0143 or 020 7946 0958 (London), fax 030 901820. Server 192.0.2.15, version 1.2.3.4.5, file report.ps"
    found = extract_indicators(text)
    phones = [i["value"] for i in found if i["type"] == "phone"]
    assert phones[:2] == ["+12025550143", "+442079460958"] and len(phones) == len(set(phones))
    assert "+912079460958" not in phones  # the same digits read for a later region
    assert [i["value"] for i in found if i["type"] == "ipv4"] == ["192.0.2.15"]
    assert not [i for i in found if i["value"] in ("report.ps", "1.2.3.4")]
    assert extract_indicators("") == [] and extract_indicators("x" * 10) == []


def test_indicators_bounded():
    text = " ".join(f"host{i}.example" for i in range(2000))
    found = extract_indicators(text, limit=50)
    assert len(found) == 50 and found[0]["value"] == "host0.example"


def test_indicators_tldextract_offline(monkeypatch):
    import socket

    def refuse(*a, **k):
        raise AssertionError("network access attempted")

    monkeypatch.setattr(socket, "create_connection", refuse)
    monkeypatch.setattr(socket.socket, "connect", refuse)
    assert extract_indicators("see news.bbc.co.uk now")[0]["value"] == "news.bbc.co.uk"


# -- simhash, report -------------------------------------------------------------------------
def test_simhash_groups_near_duplicates():
    a = "This message reached your office printer directly over the Internet. Book your campaign today: call 555 1234 now."
    b = a.replace("1234", "9876").replace("BOOK", "book")
    c = "Quarterly report: revenue up four percent over the previous quarter; costs are down in every region."
    assert simhash_text(a) == simhash_text(b)  # digits collapsed, case folded
    assert hamming(simhash_text(a), simhash_text(a + " Thanks.")) < hamming(simhash_text(a), simhash_text(c))
    assert hamming(f"{simhash_text(a):016x}", simhash_text(a)) == 0
    assert simhash64([]) == 0 and simhash_bytes(b"") == 0
    blob = os.urandom(4096)
    assert hamming(simhash_bytes(blob), simhash_bytes(blob[:2000] + b"X" + blob[2001:])) <= 4


def test_report_round_trip_is_json():
    report = quick(PCL5_JOB)
    data = report.to_dict()
    text = json.dumps(data)
    assert "previews" not in data and data["preview_count"] == 1
    again = JobReport.from_dict(json.loads(text))
    assert again.to_dict() == data
    assert len(report.simhash) == 16 and int(report.simhash, 16) >= 0
    assert JobReport.from_dict({"language": "pdf", "unknown": 1}).language == "pdf"


def test_analyze_file_truncates(tmp_path):
    path = tmp_path / "job"
    path.write_bytes(b"Hello www.big-job.example\n" * 1000)
    report = analyze_file(path, limits=Limits(ghostscript=False, max_read=1000))
    assert report.size == 26000 and report.read_bytes == 1000 and report.truncated
    assert report.language == "text" and report.indicators[0]["value"] == "www.big-job.example"
    missing = analyze_file(tmp_path / "nope")
    assert missing.errors and missing.errors[0].startswith("read: FileNotFoundError")


def test_text_is_bounded():
    report = quick(b"word " * 100000)
    assert len(report.text) == 65536 and report.text_truncated


def test_render_false_has_no_previews():
    assert quick(CORPUS["pc-039"], render=False).previews == []


def test_analysis_is_total_on_garbage():
    for data in (os.urandom(5000), b"\x1b" * 3000, b"%PDF-" + os.urandom(3000), b") HP-PCL XL;2;0\n" + os.urandom(3000),
                 b"POST / HTTP/1.1\r\n" + os.urandom(200), UEL + b"@PJL " + os.urandom(3000), b"\xff\xd8\xff" + os.urandom(300)):
        report = quick(data)
        assert report.language in ("pjl", "postscript", "pcl5", "pclxl", "pdf", "text", "raster", "html", "binary", "empty")
        json.dumps(report.to_dict())
