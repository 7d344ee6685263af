"""IPP on 631: the codec (round trips, fuzzing), the printer's answers, the engine, the service."""

from __future__ import annotations

import asyncio
import hashlib
import json
import shutil
import struct
from pathlib import Path

import pytest
from conftest import exchange, running, sensor_settings
from helpers import T0, corpus, drive, fixed_identity, make_device, split_at
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from honeyjet.events import check_fields
from honeyjet.persona.device import Device
from honeyjet.persona.model import PersonaError, load_persona
from honeyjet.persona.state import DeviceState
from honeyjet.persona.vfs import MemoryBlobs
from honeyjet.protocols import ipp
from honeyjet.protocols.ipp import (
    Attribute,
    DateTime,
    Decoder,
    Group,
    IPPEngine,
    IPPPrinter,
    Message,
    Range,
    Resolution,
    StringWithLanguage,
    Value,
    decode_message,
    encode_attribute,
    encode_message,
)
from honeyjet.protocols.outputs import CaptureData
from honeyjet.protocols.pjl import PJLEngine

LOCAL = ("192.0.2.10", 631)
PS_DOC = b"%!PS-Adobe-3.0\n%%Pages: 1\n/Helvetica findfont 12 scalefont setfont 72 720 moveto (ipp) show showpage\n%%EOF\n"
# PRET v0.39's capability probe (facts file §6.3), byte for byte
PRET_BODY = (
    b"\x01\x01\x00\x0b\x00\x01\xab\x10\x01G\x00\x12attributes-charset\x00\x05utf-8H\x00\x1battributes-natural-language"
    b"\x00\x02enE\x00\x0bprinter-uri\x00\x14ipp://localhost/ipp/D\x00\x14requested-attributes\x00\x13printer-description\x03"
)
TCP_ENTRIES = [e for e in corpus(631) if e.get("transport", "tcp") == "tcp"]


# ---------------------------------------------------------------------------------------------
# helpers
# ---------------------------------------------------------------------------------------------


def op_attrs(*extra: tuple[str, int, object], uri: str | None = "ipp://192.0.2.10/ipp") -> list[Attribute]:
    attrs = [
        Attribute("attributes-charset", [Value(ipp.CHARSET, "utf-8")]),
        Attribute("attributes-natural-language", [Value(ipp.LANGUAGE, "en")]),
    ]
    if uri is not None:
        attrs.append(Attribute("printer-uri", [Value(ipp.URI, uri)]))
    for name, tag, val in extra:
        vals = val if isinstance(val, list) else [val]
        attrs.append(Attribute(name, [Value(tag, v) for v in vals]))
    return attrs


def request(op: int, *extra, request_id: int = 7, version=(1, 1), uri: str | None = "ipp://192.0.2.10/ipp", groups=None) -> bytes:
    gs = [Group(ipp.TAG_OPERATION, op_attrs(*extra, uri=uri))] + (groups or [])
    return encode_message(Message(version, op, request_id, gs))


def http_post(body: bytes, path: str = "/ipp", *, chunked: bool = False, expect: bool = False, method: str = "POST") -> bytes:
    head = f"{method} {path} HTTP/1.1\r\nHost: 192.0.2.10:631\r\nContent-Type: application/ipp\r\n"
    if expect:
        head += "Expect: 100-continue\r\n"
    if chunked:
        head += "Transfer-Encoding: chunked\r\n\r\n"
        out = head.encode()
        for i in range(0, len(body), 1000):
            piece = body[i : i + 1000]
            out += b"%x\r\n" % len(piece) + piece + b"\r\n"
        return out + b"0\r\n\r\n"
    return (head + f"Content-Length: {len(body)}\r\n\r\n").encode() + body


def replies(sent: bytes) -> list[tuple[bytes, Message | None]]:
    """Split the engine's output into (HTTP head, decoded IPP body) pairs (100 Continue skipped)."""
    out = []
    rest = sent
    while rest:
        head, _, rest = rest.partition(b"\r\n\r\n")
        if head.startswith(b"HTTP/1.1 100"):
            continue
        length = 0
        for line in head.split(b"\r\n")[1:]:
            k, _, v = line.partition(b":")
            if k.lower() == b"content-length":
                length = int(v)
        body, rest = rest[:length], rest[length:]
        msg = decode_message(body).message if b"application/ipp" in head else None
        out.append((head, msg))
    return out


def answer(printer: IPPPrinter, *payloads: bytes, local=LOCAL):
    """One connection; returns (replies, run)."""
    run = drive(IPPEngine(printer, local), list(payloads))
    return replies(run.sent), run


def attrs_of(msg: Message, tag: int) -> dict[str, list]:
    out: dict[str, list] = {}
    for g in msg.groups:
        if g.tag == tag:
            for a in g.attributes:
                out[a.name] = [v.value for v in a.values]
    return out


def clock_device(now: list[float]) -> Device:
    persona = load_persona("hp-laserjet-4250")
    return Device(persona, fixed_identity(), DeviceState(None), MemoryBlobs(), clock=lambda: now[0])


@pytest.fixture
def printer() -> IPPPrinter:
    return IPPPrinter(make_device())


# ---------------------------------------------------------------------------------------------
# codec
# ---------------------------------------------------------------------------------------------


def every_tag_message() -> Message:
    media_col = [
        Attribute("media-size", [Value(ipp.BEG_COLLECTION, [
            Attribute("x-dimension", [Value(ipp.INTEGER, 21590)]),
            Attribute("y-dimension", [Value(ipp.INTEGER, 27940)]),
        ])]),
        Attribute("media-source", [Value(ipp.KEYWORD, "main"), Value(ipp.KEYWORD, "tray-2")]),
    ]
    printer = Group(ipp.TAG_PRINTER, [
        Attribute("i", [Value(ipp.INTEGER, -5), Value(ipp.INTEGER, 2**31 - 1)]),
        Attribute("b", [Value(ipp.BOOLEAN, True), Value(ipp.BOOLEAN, False)]),
        Attribute("e", [Value(ipp.ENUM, 3)]),
        Attribute("o", [Value(ipp.OCTET_STRING, b"\x00\xff")]),
        Attribute("d", [Value(ipp.DATETIME, DateTime(2026, 11, 27, 10, 39, 59, 3, "-", 5, 30))]),
        Attribute("r", [Value(ipp.RESOLUTION, Resolution(600, 1200, 3))]),
        Attribute("g", [Value(ipp.RANGE, Range(1, 999))]),
        Attribute("tl", [Value(ipp.TEXT_LANG, StringWithLanguage("de", "Grüße"))]),
        Attribute("nl", [Value(ipp.NAME_LANG, StringWithLanguage("en", "x"))]),
        Attribute("media-col-default", [Value(ipp.BEG_COLLECTION, media_col), Value(ipp.BEG_COLLECTION, media_col[:1])]),
        Attribute("oob", [Value(ipp.NO_VALUE, b""), Value(ipp.UNKNOWN, b""), Value(ipp.UNSUPPORTED, b"")]),
        Attribute("ext", [Value(ipp.EXTENSION, b"\x00\x00\x40\x00abc")]),
        Attribute("odd", [Value(0x24, b"\x01"), Value(0x60, b"raw"), Value(0xFE, b"")]),
    ] + [Attribute(f"s{tag:x}", [Value(tag, "text \udcff")]) for tag in (0x41, 0x42, 0x44, 0x45, 0x46, 0x47, 0x48, 0x49)])
    return Message((1, 1), 0x000B, 42, [Group(ipp.TAG_OPERATION, op_attrs()), printer, Group(ipp.TAG_JOB, [])])


def test_every_value_tag_round_trips():
    msg = every_tag_message()
    wire = encode_message(msg)
    back = decode_message(wire)
    assert back.error == "" and back.document == b""
    assert back.message == msg
    assert encode_message(back.message) == wire


def test_wire_format_is_rfc8010():
    assert encode_attribute("copies", [Value(ipp.INTEGER, 1)]) == b"\x21\x00\x06copies\x00\x04\x00\x00\x00\x01"
    # a second value has name-length 0
    assert encode_attribute("k", [Value(ipp.KEYWORD, "a"), Value(ipp.KEYWORD, "bc")]) == (
        b"\x44\x00\x01k\x00\x01a" b"\x44\x00\x00\x00\x02bc"
    )
    # RFC 8010 §3.1.6: begCollection (value-length 0), memberAttrName, member value, endCollection
    coll = encode_attribute("c", [Value(ipp.BEG_COLLECTION, [Attribute("m", [Value(ipp.INTEGER, 2)])])])
    assert coll == (
        b"\x34\x00\x01c\x00\x00"
        b"\x4a\x00\x00\x00\x01m"
        b"\x21\x00\x00\x00\x04\x00\x00\x00\x02"
        b"\x37\x00\x00\x00\x00"
    )
    assert encode_attribute("r", [Value(ipp.RESOLUTION, Resolution(600, 600, 3))])[-9:] == struct.pack(">iiB", 600, 600, 3)
    assert encode_attribute("d", [Value(ipp.DATETIME, DateTime(2026, 1, 2, 3, 4, 5, 6, "+", 0, 0))])[-11:] == (
        b"\x07\xea\x01\x02\x03\x04\x05\x06+\x00\x00"
    )
    # the PRET probe decodes into what it says
    dm = decode_message(PRET_BODY)
    assert dm.error == "" and dm.message.code == 0x000B and dm.message.request_id == 0x0001AB10
    assert attrs_of(dm.message, ipp.TAG_OPERATION)["requested-attributes"] == ["printer-description"]
    assert encode_message(dm.message) == PRET_BODY


@pytest.mark.parametrize(
    "body,error",
    [
        (b"\x01\x01\x00\x0b\x00\x00\x00\x01\x21\x00\x01a\x00\x04\x00\x00\x00\x01\x03", "before any group"),
        (b"\x01\x01\x00\x0b\x00\x00\x00\x01\x01\x21\x00\x00\x00\x04\x00\x00\x00\x01\x03", "without an attribute"),
        (b"\x01\x01\x00\x0b\x00\x00\x00\x01\x01\x21\x00\x01a\x00\x02\x00\x01\x03", "integer value"),
        (b"\x01\x01\x00\x0b\x00\x00\x00\x01\x01\x22\x00\x01a\x00\x01\x07\x03", "boolean"),
        (b"\x01\x01\x00\x0b\x00\x00\x00\x01\x01\x4a\x00\x00\x00\x01m\x03", "outside a collection"),
        (b"\x01\x01\x00\x0b\x00\x00\x00\x01\x01\x34\x00\x01c\x00\x00\x03", "inside a collection"),
        (b"\x01\x01\x00\x0b\x00\x00\x00\x01\x01\x34\x00\x01c\x00\x00\x21\x00\x00\x00\x04\x00\x00\x00\x01", "before a member name"),
        (b"\x01\x01\x00\x0b\x00\x00\x00\x01\x01\x44\x00\x05ab", "truncated"),
        (b"\x01\x01", "truncated"),
        (b"", "empty"),
        (b"\x01\x01\x00\x0b\x00\x00\x00\x01\x00", "reserved"),
    ],
)
def test_malformed_messages_are_errors_not_exceptions(body, error):
    dm = decode_message(body)
    assert dm.message is None and error in dm.error


def test_nested_collections_are_bounded():
    body = b"\x01\x01\x00\x0b\x00\x00\x00\x01\x01\x34\x00\x01c\x00\x00" + b"\x4a\x00\x00\x00\x01m\x34\x00\x00\x00\x00" * 40
    assert "nested too deep" in decode_message(body).error


def test_decoder_bound_and_document_split():
    dec = Decoder(max_bytes=1024)
    head = request(ipp.PRINT_JOB)
    for i in range(len(head) - 1):
        assert dec.feed(head[i : i + 1]) == b""
    assert dec.feed(head[-1:] + b"%!PS") == b"%!PS" and dec.done
    assert dec.feed(b"more") == b"more"  # the document is handed back, never kept
    assert dec.buffered_bytes == 0
    big = Decoder(max_bytes=1024)
    big.feed(request(ipp.PRINT_JOB)[:-1] + b"\x44\x00\x01x\x04\x00" + b"a" * 1024)
    assert big.too_large and big.error and big.buffered_bytes == 0


# strategies for whole messages
_names = st.text(st.characters(min_codepoint=0x21, max_codepoint=0x7E), min_size=1, max_size=12)
_strings = st.text(st.characters(blacklist_categories=("Cs",)), max_size=20)
_i32 = st.integers(-(2**31), 2**31 - 1)


def _scalar_values():
    return st.one_of(
        st.builds(Value, st.sampled_from([ipp.INTEGER, ipp.ENUM]), _i32),
        st.builds(Value, st.just(ipp.BOOLEAN), st.booleans()),
        st.builds(Value, st.just(ipp.OCTET_STRING), st.binary(max_size=16)),
        st.builds(Value, st.just(ipp.DATETIME), st.builds(
            DateTime, st.integers(0, 65535), st.integers(0, 255), st.integers(0, 255), st.integers(0, 255),
            st.integers(0, 255), st.integers(0, 255), st.integers(0, 255), st.sampled_from(["+", "-"]),
            st.integers(0, 255), st.integers(0, 255))),
        st.builds(Value, st.just(ipp.RESOLUTION), st.builds(Resolution, _i32, _i32, st.integers(0, 255))),
        st.builds(Value, st.just(ipp.RANGE), st.builds(Range, _i32, _i32)),
        st.builds(Value, st.sampled_from([ipp.TEXT_LANG, ipp.NAME_LANG]), st.builds(StringWithLanguage, _strings, _strings)),
        st.builds(Value, st.sampled_from([0x41, 0x42, 0x44, 0x45, 0x46, 0x47, 0x48, 0x49]), _strings),
        st.builds(Value, st.sampled_from([ipp.NO_VALUE, ipp.UNKNOWN, ipp.UNSUPPORTED]), st.just(b"")),
    )


_values = st.recursive(
    _scalar_values(),
    lambda inner: st.builds(
        Value, st.just(ipp.BEG_COLLECTION),
        st.lists(st.builds(Attribute, _names, st.lists(inner, min_size=1, max_size=3)), max_size=3),
    ),
    max_leaves=12,
)
_messages = st.builds(
    Message,
    st.tuples(st.integers(0, 255), st.integers(0, 255)),
    st.integers(0, 0xFFFF),
    st.integers(0, 2**32 - 1),
    st.lists(
        st.builds(
            Group,
            st.sampled_from([1, 2, 4, 5, 6, 7, 9, 10, 15]),
            st.lists(st.builds(Attribute, _names, st.lists(_values, min_size=1, max_size=3)), max_size=5),
        ),
        max_size=4,
    ),
)


@given(_messages, st.binary(max_size=64), st.lists(st.integers(1, 64), max_size=8))
@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
def test_encoded_messages_round_trip_at_any_chunking(msg, document, cuts):
    wire = encode_message(msg)
    whole = decode_message(wire + document)
    assert whole.error == "" and whole.message == msg and whole.document == document
    dec = Decoder(max_bytes=1 << 20)
    got = b""
    data, pos = wire + document, 0
    for n in cuts + [len(wire) + len(document)]:
        got += dec.feed(data[pos : pos + n])
        pos += n
    assert dec.done and dec.message == msg and got == document


@given(st.binary(max_size=2048), st.lists(st.integers(1, 300), max_size=10))
@settings(max_examples=500, deadline=None)
def test_arbitrary_bytes_never_raise_and_stay_bounded(data, cuts):
    dec = Decoder(max_bytes=512)
    pos = 0
    for n in cuts + [len(data)]:
        dec.feed(data[pos : pos + n])
        pos += n
        assert dec.buffered_bytes <= 512 + 300 + len(data)
        assert dec.consumed <= 512
    dec.close()
    assert dec.done or dec.error
    # the same bytes in one piece decide the same way
    one = decode_message(data, max_bytes=512)
    assert (one.message is not None) == dec.done


@given(st.binary(min_size=8, max_size=600))
@settings(max_examples=300, deadline=None)
def test_arbitrary_ipp_bodies_get_an_ipp_answer(body):
    run = drive(IPPEngine(IPPPrinter(make_device()), LOCAL), [http_post(body)])
    (head, msg), = replies(run.sent)
    assert head.startswith(b"HTTP/1.1 200 OK") and msg is not None
    assert msg.groups[0].attributes[0].name == "attributes-charset"
    (event,) = run.of("honeyjet.ipp.request")
    assert check_fields("honeyjet.ipp.request", event) == []


# ---------------------------------------------------------------------------------------------
# the printer's answers
# ---------------------------------------------------------------------------------------------


def test_get_printer_attributes_come_from_the_device(printer):
    (head, msg), = answer(printer, http_post(request(ipp.GET_PRINTER_ATTRIBUTES)))[0]
    assert head.split(b"\r\n")[:3] == [b"HTTP/1.1 200 OK", b"Server: Virata-EmWeb/R6_2_1", b"Content-Type: application/ipp"]
    assert msg.code == ipp.OK and msg.request_id == 7 and msg.version == (1, 1)
    a = attrs_of(msg, ipp.TAG_PRINTER)
    dev = printer.device
    assert a["printer-make-and-model"] == [dev.model] == ["HP LaserJet 4250"]
    assert a["printer-device-id"] == [dev.values()["ieee1284_id"]]
    assert "MDL:HP LaserJet 4250;" in a["printer-device-id"][0] and "CMD:PJL,MLC,BIDI-ECP,PCL,POSTSCRIPT,PCLXL;" in a["printer-device-id"][0]
    assert a["printer-state"] == [3] and a["printer-state-reasons"] == ["none"] and a["printer-state-message"] == ["Ready"]
    assert a["printer-up-time"] == [1]
    assert a["printer-uri-supported"] == ["ipp://192.0.2.10/ipp"]
    assert a["printer-name"] == [dev.hostname]
    assert a["printer-more-info"] == ["http://192.0.2.10/hp/device/this.LCDispatcher"]
    assert a["ipp-versions-supported"] == ["1.0", "1.1"]
    assert a["operations-supported"] == [2, 4, 5, 6, 8, 9, 10, 11]
    assert set(a["document-format-supported"]) >= {"application/octet-stream", "application/postscript", "application/vnd.hp-PCL"}
    assert a["copies-supported"] == [Range(1, 999)]
    assert a["printer-resolution-supported"] == [Resolution(600, 600, 3), Resolution(1200, 1200, 3)]
    assert isinstance(a["printer-current-time"][0], DateTime)
    # operation attributes first: charset, then language
    assert [x.name for x in msg.groups[0].attributes] == ["attributes-charset", "attributes-natural-language"]


def test_printer_uri_names_the_address_and_port_the_client_used(printer):
    for local, uri, more in [
        (("198.51.100.7", 10631), "ipp://198.51.100.7:10631/ipp", "http://198.51.100.7/"),
        (("::1", 631), "ipp://[::1]/ipp", "http://[::1]/"),
        (("::ffff:192.0.2.3", 631), "ipp://192.0.2.3/ipp", "http://192.0.2.3/"),
    ]:
        (_, msg), = answer(printer, http_post(request(ipp.GET_PRINTER_ATTRIBUTES)), local=local)[0]
        a = attrs_of(msg, ipp.TAG_PRINTER)
        assert a["printer-uri-supported"] == [uri] and a["printer-more-info"][0].startswith(more)


def test_requested_attributes_groups(printer):
    ask = lambda *names: attrs_of(answer(printer, http_post(request(
        ipp.GET_PRINTER_ATTRIBUTES, ("requested-attributes", ipp.KEYWORD, list(names)))))[0][0][1], ipp.TAG_PRINTER)
    assert list(ask("printer-uri-supported")) == ["printer-uri-supported"]
    desc, tmpl = ask("printer-description"), ask("job-template")
    assert "printer-device-id" in desc and "copies-supported" not in desc
    assert "copies-supported" in tmpl and "printer-name" not in tmpl
    assert set(ask("all")) == set(desc) | set(tmpl)


def test_printer_state_follows_the_device():
    now = [T0]
    dev = clock_device(now)
    printer = IPPPrinter(dev)
    state = lambda: attrs_of(answer(printer, http_post(request(ipp.GET_PRINTER_ATTRIBUTES)))[0][0][1], ipp.TAG_PRINTER)
    now[0] += 3725.4
    a = state()
    assert a["printer-up-time"] == [3725] and a["printer-state"] == [3]
    dev.set_ready_message("HELLO WORLD")
    assert state()["printer-state-message"] == ["HELLO WORLD"]
    number = dev.job_begin()  # a 9100 job arriving
    a = state()
    assert a["printer-state"] == [4] and a["queued-job-count"] == [1] and a["printer-state-message"] == ["Processing job"]
    dev.job_end({"job": number})
    dev.set_operator_message("PAPER JAM")
    a = state()
    assert a["printer-state"] == [5] and a["printer-state-reasons"] == ["paused"] and a["printer-state-message"] == ["PAPER JAM"]


@pytest.mark.parametrize(
    "body,status,version",
    [
        (request(ipp.GET_PRINTER_ATTRIBUTES, request_id=0), "client-error-bad-request", (1, 1)),
        (encode_message(Message((1, 1), 0x000B, 3, [Group(1, [])])), "client-error-bad-request", (1, 1)),
        (encode_message(Message((1, 1), 0x000B, 3, [Group(1, op_attrs()[:1])])), "client-error-bad-request", (1, 1)),
        (encode_message(Message((1, 1), 0x000B, 3, [Group(1, op_attrs()[1:])])), "client-error-bad-request", (1, 1)),
        (encode_message(Message((1, 1), 0x000B, 3, [Group(1, [op_attrs()[1], op_attrs()[0], op_attrs()[2]])])),
         "client-error-bad-request", (1, 1)),
        (request(ipp.GET_PRINTER_ATTRIBUTES, version=(0, 0)), "server-error-version-not-supported", (1, 1)),
        (request(ipp.GET_PRINTER_ATTRIBUTES, version=(2, 0)), "server-error-version-not-supported", (1, 1)),
        (request(ipp.GET_PRINTER_ATTRIBUTES, version=(1, 0)), "successful-ok", (1, 0)),
        (request(ipp.GET_PRINTER_ATTRIBUTES, uri=None), "client-error-bad-request", (1, 1)),
        (request(0x4002), "server-error-operation-not-supported", (1, 1)),  # CUPS-Get-Printers: an HP is not CUPS
        (request(0x0003, ("document-uri", ipp.URI, "http://198.51.100.9/x.ps")), "server-error-operation-not-supported", (1, 1)),
        (request(ipp.PRINT_JOB, ("document-format", ipp.MIME, "application/pdf")), "client-error-document-format-not-supported", (1, 1)),
        (request(ipp.PRINT_JOB, ("compression", ipp.KEYWORD, "gzip")), "client-error-compression-not-supported", (1, 1)),
        (request(ipp.GET_PRINTER_ATTRIBUTES, ("attributes-charset", ipp.CHARSET, "x")).replace(b"utf-8", b"koi-8", 1),
         "client-error-charset-not-supported", (1, 1)),
        (request(ipp.GET_JOBS, ("which-jobs", ipp.KEYWORD, "everything")), "client-error-attributes-or-values-not-supported", (1, 1)),
        (request(ipp.GET_JOB_ATTRIBUTES, ("job-id", ipp.INTEGER, 4242)), "client-error-not-found", (1, 1)),
        (b"\x01\x01\x00\x0b\x00\x00\x00\x05\x01\x47\x00", "client-error-bad-request", (1, 1)),
        (b"GET / HTTP/1.0\r\n\r\n", "client-error-bad-request", (1, 1)),
    ],
)
def test_status_codes_ipptool_expects(printer, body, status, version):
    (head, msg), = answer(printer, http_post(body))[0]
    assert head.startswith(b"HTTP/1.1 200 OK")  # RFC 8010 §3.4.3: an IPP status travels in HTTP 200
    assert ipp.status_name(msg.code) == status and msg.version == version
    if status != "successful-ok":
        assert msg.group(ipp.TAG_PRINTER) is None


def test_unknown_path_is_client_error_not_found_and_the_connection_survives(printer):
    got, run = answer(printer, http_post(request(ipp.GET_PRINTER_ATTRIBUTES), "/ipp/print"), http_post(request(ipp.GET_PRINTER_ATTRIBUTES), "/"))
    assert [ipp.status_name(m.code) for _, m in got] == ["client-error-not-found", "successful-ok"]
    assert [e["ipp_status"] for e in run.of("honeyjet.ipp.request")] == ["client-error-not-found", "successful-ok"]


def test_attribute_part_is_bounded(printer):
    huge = request(ipp.PRINT_JOB)[:-1] + b"\x44\x00\x01x\xff\xff" + b"a" * 65535 + b"\x03" + PS_DOC
    (_, msg), = answer(printer, http_post(huge))[0]
    assert ipp.status_name(msg.code) == "client-error-request-entity-too-large"
    assert printer.device.state["jobs"] == []


# ---------------------------------------------------------------------------------------------
# jobs
# ---------------------------------------------------------------------------------------------


def print_job(doc: bytes, *, fmt: str | None = "application/postscript", user="alice", name="report.ps"):
    extra = [("requesting-user-name", ipp.NAME, user), ("job-name", ipp.NAME, name)]
    if fmt:
        extra.append(("document-format", ipp.MIME, fmt))
    return request(ipp.PRINT_JOB, *extra) + doc


def test_print_job_is_captured_byte_exact_and_completes(printer):
    dev = printer.device
    before = dev.page_count()
    (_, msg), = answer(printer, http_post(print_job(PS_DOC)))[0]
    _, run = answer(printer, http_post(print_job(PS_DOC), expect=True, chunked=True))
    assert msg.code == ipp.OK
    job = attrs_of(msg, ipp.TAG_JOB)
    assert job["job-id"] == [1] and job["job-state"] == [ipp.COMPLETED] and job["job-state-reasons"] == ["job-completed-successfully"]
    assert job["job-uri"] == ["ipp://192.0.2.10/ipp/1"]
    (cap,) = run.captures
    assert cap["data"] == PS_DOC and cap["meta"]["language"] == "postscript" and cap["meta"]["job"] == 2
    assert cap["end"]["user"] == "alice" and cap["end"]["name"] == "report.ps" and cap["end"]["ended_by"] == "document"
    assert dev.page_count() == before + 2 and dev.active_jobs == 0
    (event,) = run.of("honeyjet.ipp.request")
    assert event["operation"] == "Print-Job" and event["job_id"] == 2 and event["user"] == "alice"
    assert event["document_format"] == "application/postscript" and event["job_name"] == "report.ps"
    assert ["operation", "requesting-user-name", "alice"] in event["attributes"]


@pytest.mark.parametrize(
    "fmt,doc,language",
    [
        ("application/vnd.hp-PCL", b"\x1bE\x1b&l0O hello\x0c\x1bE", "pcl"),
        ("text/plain", b"Quarterly report\r\n", "text"),
        ("application/octet-stream", PS_DOC, "postscript"),  # autosense
        (None, b"%PDF-1.4\n%...", "pdf"),  # no format: document-format-default (octet-stream) sniffs
    ],
)
def test_document_format_decides_the_language(printer, fmt, doc, language):
    _, run = answer(printer, http_post(print_job(doc, fmt=fmt)))
    (cap,) = run.captures
    assert cap["meta"]["language"] == language and cap["data"] == doc


def test_document_streams_and_is_never_buffered(printer):
    engine = IPPEngine(printer, LOCAL)
    body = print_job(b"")
    head = f"POST /ipp HTTP/1.1\r\nContent-Type: application/ipp\r\nContent-Length: {len(body) + 10 * 65536}\r\n\r\n".encode()
    engine.feed(head + body)
    handler = engine.http._handler
    for i in range(10):
        outs = engine.feed(bytes([65 + i]) * 65536)
        # every piece goes straight to the capture; nothing is held back
        assert sum(len(o.data) for o in outs if isinstance(o, CaptureData)) == 65536
        assert engine.buffered_bytes == 0 and handler.decoder.buffered_bytes == 0
    assert printer.device.state["jobs"][-1]["size"] == 10 * 65536


def test_jobs_share_numbers_with_9100_and_lpd_and_get_jobs_lists_them():
    dev = make_device()
    nine_job = (b'\x1b%-12345X@PJL JOB NAME="payroll.xls"\r\n@PJL SET USERNAME="bob"\r\n'
                b'@PJL ENTER LANGUAGE=PCL\r\n\x1bEhello\x0c\x1b%-12345X@PJL EOJ\r\n\x1b%-12345X')
    drive(PJLEngine(dev), [nine_job])
    printer = IPPPrinter(dev)
    (_, pj), = answer(printer, http_post(print_job(PS_DOC)))[0]
    nine = dev.state["jobs"][0]["job"]
    assert attrs_of(pj, ipp.TAG_JOB)["job-id"] == [nine + 1]
    (_, msg), = answer(printer, http_post(request(ipp.GET_JOBS, ("which-jobs", ipp.KEYWORD, "completed"),
                                                 ("requested-attributes", ipp.KEYWORD, "all"))))[0]
    jobs = [{a.name: [v.value for v in a.values] for a in g.attributes} for g in msg.groups if g.tag == ipp.TAG_JOB]
    assert [j["job-id"] for j in jobs] == [[nine + 1], [nine]]  # newest first
    assert jobs[1]["job-name"] == ["payroll.xls"] and jobs[1]["job-originating-user-name"] == ["bob"]
    assert jobs[0]["job-originating-user-name"] == ["alice"] and jobs[0]["job-state"] == [ipp.COMPLETED]
    assert jobs[1]["job-k-octets"] == [1] and jobs[1]["time-at-completed"] == [0]
    # default: not-completed jobs only, job-uri and job-id only
    (_, msg), = answer(printer, http_post(request(ipp.GET_JOBS)))[0]
    assert msg.group(ipp.TAG_JOB) is None
    # my-jobs, limit, and the default attribute set
    (_, msg), = answer(printer, http_post(request(ipp.GET_JOBS, ("which-jobs", ipp.KEYWORD, "completed"),
                                                 ("requesting-user-name", ipp.NAME, "bob"), ("my-jobs", ipp.BOOLEAN, True))))[0]
    (g,) = [g for g in msg.groups if g.tag == ipp.TAG_JOB]
    assert [a.name for a in g.attributes] == ["job-uri", "job-id"] and g.attributes[1].values[0].value == nine
    (_, msg), = answer(printer, http_post(request(ipp.GET_JOBS, ("which-jobs", ipp.KEYWORD, "completed"), ("limit", ipp.INTEGER, 1))))[0]
    assert len([g for g in msg.groups if g.tag == ipp.TAG_JOB]) == 1


def test_get_job_attributes_and_cancel(printer):
    answer(printer, http_post(print_job(PS_DOC)))
    (_, msg), = answer(printer, http_post(request(ipp.GET_JOB_ATTRIBUTES, ("job-id", ipp.INTEGER, 1))))[0]
    job = attrs_of(msg, ipp.TAG_JOB)
    assert job["job-state"] == [ipp.COMPLETED] and job["job-printer-uri"] == ["ipp://192.0.2.10/ipp"]
    assert job["time-at-creation"] == [0] and isinstance(job["date-time-at-completed"][0], DateTime)
    # by job-uri, posted to the job's own path
    (_, by_uri), = answer(printer, http_post(request(ipp.GET_JOB_ATTRIBUTES, ("job-uri", ipp.URI, "ipp://192.0.2.10/ipp/1"), uri=None), "/ipp/1"))[0]
    assert attrs_of(by_uri, ipp.TAG_JOB)["job-id"] == [1]
    codes = [ipp.status_name(answer(printer, http_post(request(ipp.CANCEL_JOB, ("job-id", ipp.INTEGER, n))))[0][0][1].code) for n in (1, 99)]
    assert codes == ["client-error-not-possible", "client-error-not-found"]


def test_create_job_then_send_document_on_another_connection(printer):
    dev = printer.device
    (_, created), = answer(printer, http_post(request(ipp.CREATE_JOB, ("job-name", ipp.NAME, "memo"), ("requesting-user-name", ipp.NAME, "carol"))))[0]
    job = attrs_of(created, ipp.TAG_JOB)
    number = job["job-id"][0]
    assert job["job-state"] == [ipp.PENDING] and job["job-state-reasons"] == ["job-incoming"] and dev.active_jobs == 1
    (_, listed), = answer(printer, http_post(request(ipp.GET_JOBS)))[0]
    assert attrs_of(listed, ipp.TAG_JOB)["job-id"] == [number]
    # missing last-document: bad-request, and the job still waits
    (_, bad), = answer(printer, http_post(request(ipp.SEND_DOCUMENT, ("job-id", ipp.INTEGER, number)) + PS_DOC))[0]
    assert ipp.status_name(bad.code) == "client-error-bad-request"
    got, run = answer(printer, http_post(request(ipp.SEND_DOCUMENT, ("job-id", ipp.INTEGER, number),
                                                 ("last-document", ipp.BOOLEAN, True),
                                                 ("document-format", ipp.MIME, "application/postscript")) + PS_DOC, chunked=True))
    (_, sent), = got
    assert sent.code == ipp.OK and attrs_of(sent, ipp.TAG_JOB)["job-state"] == [ipp.COMPLETED]
    (cap,) = run.captures
    assert cap["data"] == PS_DOC and cap["meta"]["job"] == number and cap["end"]["user"] == "carol"
    assert dev.active_jobs == 0 and dev.state["jobs"][-1]["name"] == "memo"
    again = answer(printer, http_post(request(ipp.SEND_DOCUMENT, ("job-id", ipp.INTEGER, number), ("last-document", ipp.BOOLEAN, True)) + PS_DOC))
    assert ipp.status_name(again[0][0][1].code) == "client-error-not-possible"


def test_cancel_pending_job_and_timeout_of_a_forgotten_one():
    now = [T0]
    dev = clock_device(now)
    printer = IPPPrinter(dev)
    ids = []
    for _ in range(2):
        (_, m), = answer(printer, http_post(request(ipp.CREATE_JOB)))[0]
        ids.append(attrs_of(m, ipp.TAG_JOB)["job-id"][0])
    assert dev.active_jobs == 2
    (_, c), = answer(printer, http_post(request(ipp.CANCEL_JOB, ("job-id", ipp.INTEGER, ids[0]))))[0]
    assert c.code == ipp.OK and dev.active_jobs == 1
    now[0] += 121  # multiple-operation-time-out
    (_, m), = answer(printer, http_post(request(ipp.GET_JOB_ATTRIBUTES, ("job-id", ipp.INTEGER, ids[1]))))[0]
    assert attrs_of(m, ipp.TAG_JOB)["job-state"] == [ipp.ABORTED] and dev.active_jobs == 0
    (_, m), = answer(printer, http_post(request(ipp.GET_JOB_ATTRIBUTES, ("job-id", ipp.INTEGER, ids[0]))))[0]
    assert attrs_of(m, ipp.TAG_JOB)["job-state"] == [ipp.CANCELED]
    # too many waiting jobs: busy
    for _ in range(16):
        answer(printer, http_post(request(ipp.CREATE_JOB)))
    (_, busy), = answer(printer, http_post(request(ipp.CREATE_JOB)))[0]
    assert ipp.status_name(busy.code) == "server-error-busy"


def test_a_document_that_stopped_arriving_long_ago_is_aborted():
    now = [T0]
    dev = clock_device(now)
    printer = IPPPrinter(dev)
    engine = IPPEngine(printer, LOCAL)
    body = print_job(PS_DOC)
    engine.feed(f"POST /ipp HTTP/1.1\r\nContent-Type: application/ipp\r\nContent-Length: {len(body) + 99}\r\n\r\n".encode() + body)
    assert dev.active_jobs == 1 and printer.view(1).state == ipp.PROCESSING
    now[0] += 800  # the session vanished without an EOF reaching the engine
    answer(printer, http_post(request(ipp.GET_JOBS)))
    assert printer.view(1).state == ipp.ABORTED and dev.active_jobs == 0
    now[0] += 1000  # a document that keeps coming is never cut
    engine2 = IPPEngine(printer, LOCAL)
    engine2.feed(f"POST /ipp HTTP/1.1\r\nContent-Type: application/ipp\r\nContent-Length: {len(body) + 99}\r\n\r\n".encode() + body)
    for _ in range(9):
        now[0] += 200
        engine2.feed(b"x" * 10)
        answer(printer, http_post(request(ipp.GET_JOBS)))
    assert printer.view(2).state == ipp.PROCESSING


def test_a_second_document_is_refused(printer):
    (_, m), = answer(printer, http_post(request(ipp.CREATE_JOB)))[0]
    number = attrs_of(m, ipp.TAG_JOB)["job-id"][0]

    def send(last: bool, doc: bytes) -> Message:
        body = request(ipp.SEND_DOCUMENT, ("job-id", ipp.INTEGER, number), ("last-document", ipp.BOOLEAN, last)) + doc
        return answer(printer, http_post(body))[0][0][1]

    first = send(False, PS_DOC)  # more documents announced: the job stays open
    assert first.code == ipp.OK and attrs_of(first, ipp.TAG_JOB)["job-state-reasons"] == ["job-incoming"]
    assert ipp.status_name(send(True, PS_DOC).code) == "server-error-multiple-document-jobs-not-supported"
    assert send(True, b"").code == ipp.OK  # closing the job without data
    assert printer.view(number).state == ipp.COMPLETED and printer.device.active_jobs == 0


def test_disconnect_mid_document_aborts_the_job(printer):
    body = http_post(print_job(PS_DOC * 10))
    run = drive(IPPEngine(printer, LOCAL), [body[: len(body) - 100]])
    (cap,) = run.captures
    assert cap["end"]["ended_by"] == "eof" and cap["data"] == (print_job(PS_DOC * 10)[-len(PS_DOC) * 10 :])[: len(cap["data"])]
    assert printer.view(1).state == ipp.ABORTED and printer.device.active_jobs == 0


# ---------------------------------------------------------------------------------------------
# HTTP around IPP
# ---------------------------------------------------------------------------------------------


def test_plain_get_options_and_head_get_the_jetdirect_redirect(printer):
    run = drive(IPPEngine(printer, LOCAL), [b"GET / HTTP/1.0\r\n\r\n"])
    body = b'<HEAD><TITLE>Moved</TITLE></HEAD><BODY><A HREF="https://192.0.2.10/">here</A></BODY>\r\n'
    assert run.sent == (
        b"HTTP/1.1 301 Moved Permanently\r\nServer: Virata-EmWeb/R6_2_1\r\nLocation: https://192.0.2.10/\r\n"
        b"Content-Type: text/html\r\nContent-Length: %d\r\n\r\n" % len(body) + body
    )
    assert 80 <= len(body) <= 99  # nmap-service-probes 6587: Content-Length [89][0-9]
    head = drive(IPPEngine(printer, LOCAL), [b"HEAD /ipp HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"]).sent
    assert head.endswith(b"\r\n\r\n") and b"Content-Length: %d" % len(body) in head
    opt = drive(IPPEngine(printer, LOCAL), [b"OPTIONS / HTTP/1.0\r\n\r\n"]).sent
    assert opt.startswith(b"HTTP/1.1 301 ")
    # a POST of something else (nmap's VMware SOAP probe, with or without a type) is not IPP ...
    soap = b'<?xml version="1.0"?><soap:Envelope/>'
    for ctype in (b"Content-Type: text/xml\r\n", b""):
        sdk = drive(IPPEngine(printer, LOCAL), [b"POST /sdk HTTP/1.1\r\n%sContent-Length: %d\r\n\r\n" % (ctype, len(soap)) + soap])
        assert sdk.sent.startswith(b"HTTP/1.1 301 ") and "operation" not in sdk.of("honeyjet.ipp.request")[0]
    # ... while an IPP body posted without a Content-Type is IPP
    bare = request(ipp.GET_PRINTER_ATTRIBUTES)
    typeless = drive(IPPEngine(printer, LOCAL), [b"POST /ipp HTTP/1.1\r\nContent-Length: %d\r\n\r\n" % len(bare) + bare])
    assert replies(typeless.sent)[0][1].code == ipp.OK
    (event,) = run.of("honeyjet.ipp.request")
    assert event["status"] == 301 and "operation" not in event


def test_malformed_http_gets_400_and_close(printer):
    run = drive(IPPEngine(printer, LOCAL), [b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03" + bytes(40)])
    assert run.sent.startswith(b"HTTP/1.1 400 Bad Request\r\nServer: Virata-EmWeb/R6_2_1\r\n")
    (event,) = run.of("honeyjet.ipp.request")
    assert event["malformed"] and event["status"] == 400


def test_pret_probe_post_and_get_with_body_reveal_the_1284_id(printer):
    for method in ("POST", "GET"):
        raw = f"{method} / HTTP/1.1\r\nHost: 127.0.0.1:631\r\nContent-type: application/ipp\r\nContent-Length: {len(PRET_BODY)}\r\n\r\n".encode()
        sent = drive(IPPEngine(printer, LOCAL), [raw + PRET_BODY]).sent
        assert b"MDL:HP LaserJet 4250;" in sent and b"CMD:PJL,MLC,BIDI-ECP,PCL,POSTSCRIPT,PCLXL;" in sent


def test_one_event_per_request_with_catalogue_fields(printer):
    payloads = [http_post(request(ipp.GET_PRINTER_ATTRIBUTES)), http_post(print_job(PS_DOC), expect=True),
                http_post(b"junk"), b"GET /x HTTP/1.1\r\nHost: y\r\n\r\n", http_post(request(0x4002), "/")]
    run = drive(IPPEngine(printer, LOCAL), payloads)
    events = run.of("honeyjet.ipp.request")
    assert len(events) == 5
    assert [e.get("operation") for e in events] == ["Get-Printer-Attributes", "Print-Job", None, None, "CUPS-Get-Printers"]
    assert [e.get("ipp_status") for e in events] == ["successful-ok", "successful-ok", "client-error-bad-request", None,
                                                     "server-error-operation-not-supported"]
    for eventid, fields in run.events:
        assert check_fields(eventid, fields) == [], eventid
    assert run.ids().count("honeyjet.job.start") == 1
    # the event's sentence names the operation and the IPP status
    engine = IPPEngine(printer, LOCAL)
    messages = [o.message for p in payloads[:1] + payloads[-1:] for o in engine.feed(p)
                if isinstance(o, ipp.Emit) and o.eventid == "honeyjet.ipp.request"]
    assert messages == ["IPP Get-Printer-Attributes /ipp -> successful-ok",
                        "IPP CUPS-Get-Printers / -> server-error-operation-not-supported"]


def test_attacker_strings_are_bounded_and_escaped_in_events_and_sane_in_replies(printer):
    evil = "\u202e" + "A" * 70000
    body = request(ipp.PRINT_JOB, ("job-name", ipp.NAME, evil[:30000]), ("requesting-user-name", ipp.NAME, "\x00\x1b[31mroot")) + b"x"
    _, run = answer(printer, http_post(body))
    (event,) = run.of("honeyjet.ipp.request")
    assert len(event["job_name"]) < 300 and "\\x1b" in event["user"]
    (_, m), = answer(printer, http_post(request(ipp.GET_JOB_ATTRIBUTES, ("job-id", ipp.INTEGER, 1))))[0]
    name = attrs_of(m, ipp.TAG_JOB)["job-name"][0]
    assert len(name.encode("utf-8")) <= 255
    assert "\x00" not in attrs_of(m, ipp.TAG_JOB)["job-originating-user-name"][0]


def test_replies_are_independent_of_chunking(printer):
    payload = http_post(print_job(PS_DOC), chunked=True, expect=True) + http_post(request(ipp.GET_JOBS, ("which-jobs", ipp.KEYWORD, "completed")))
    sigs = []
    for chunks in ([payload], split_at(payload, range(0, len(payload), 7)), [payload[i : i + 1] for i in range(len(payload))]):
        p = IPPPrinter(make_device())
        run = drive(IPPEngine(p, LOCAL), chunks)
        sigs.append((run.sent, [(e, {k: v for k, v in f.items()}) for e, f in run.events], [c["data"] for c in run.captures]))
    assert sigs[0] == sigs[1] == sigs[2]


# ---------------------------------------------------------------------------------------------
# the corpus
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("entry", TCP_ENTRIES, ids=lambda e: e["id"])
def test_corpus_entries_whole_and_split(entry):
    payload = entry["payload"]
    sigs = []
    for chunks in ([payload], split_at(payload, entry.get("chunk_offsets", [])), [payload[i : i + 1] for i in range(len(payload))]):
        run = drive(IPPEngine(IPPPrinter(make_device()), LOCAL), chunks)
        assert run.of("honeyjet.ipp.request"), entry["id"]
        sigs.append((run.sent, run.events, [c["data"] for c in run.captures]))
    assert sigs[0] == sigs[1] == sigs[2]


def test_corpus_udp_entry_is_not_for_this_service():
    udp = [e for e in corpus(631) if e.get("transport") == "udp"]
    assert [e["class"] for e in udp] == ["cups_browsed_injection"]  # cups-browsed UDP 631: a TCP IPP service never sees it


def test_spam_print_job_from_the_corpus():
    (entry,) = [e for e in TCP_ENTRIES if e["id"] == "pc-045"]
    assert entry["payload"].startswith(b"POST /ipp/print ")
    # /ipp/print is a newer HP's path; this JetDirect-era printer answers client-error-not-found there
    printer = IPPPrinter(make_device())
    (_, msg), = answer(printer, entry["payload"], local=("203.0.113.10", 631))[0]
    assert ipp.status_name(msg.code) == "client-error-not-found" and printer.device.state["jobs"] == []
    # the same job sent to the printer's own path is captured
    run = drive(IPPEngine(printer, ("203.0.113.10", 631)), [entry["payload"].replace(b"POST /ipp/print ", b"POST /ipp ", 1)])
    (cap,) = run.captures
    assert cap["meta"]["language"] == "text" and cap["data"].startswith(b"*** PRINTER ADVERTISING ***")
    assert cap["end"]["user"] == "anonymous"


# ---------------------------------------------------------------------------------------------
# persona
# ---------------------------------------------------------------------------------------------


def _persona_copy(tmp_path: Path, ipp_text: str) -> Path:
    src = Path(load_persona.__code__.co_filename).parent / "data" / "hp-laserjet-4250"
    dst = tmp_path / "persona"
    shutil.copytree(src, dst, ignore=shutil.ignore_patterns("__pycache__"))
    (dst / "ipp.toml").write_text(ipp_text)
    return dst


def test_persona_ipp_section_is_validated(tmp_path):
    base = (Path(load_persona.__code__.co_filename).parent / "data" / "hp-laserjet-4250" / "ipp.toml").read_text()
    bad = {
        "listed twice": base + '\n[[ipp.printer_attributes]]\nname = "color-supported"\ntype = "boolean"\nvalues = [true]\n',
        "does not fit type": base.replace('values = [45]', 'values = ["fast"]'),
        "must include operations-supported": base.replace('name = "operations-supported"', 'name = "ops"'),
        "Content-Length is computed": base.replace('headers = [["Server", "${server}"], ["Content-Type", "application/ipp"]]',
                                                   'headers = [["Content-Length", "1"]]'),
    }
    for needle, text in bad.items():
        with pytest.raises(PersonaError) as err:
            load_persona(str(_persona_copy(tmp_path / needle.replace(" ", "_"), text)))
        assert needle in str(err.value) and "ipp" in str(err.value)


def test_an_ipp2_persona_variant_is_data_only(tmp_path):
    base = (Path(load_persona.__code__.co_filename).parent / "data" / "hp-laserjet-4250" / "ipp.toml").read_text()
    text = base.replace('values = ["1.0", "1.1"]', 'values = ["1.0", "1.1", "2.0"]') + (
        '\n[[ipp.printer_attributes]]\nname = "media-col-default"\ntype = "collection"\n'
        'values = [{members = [{name = "media-size", type = "collection", values = [{members = ['
        '{name = "x-dimension", type = "integer", values = [21590]}, {name = "y-dimension", type = "integer", values = [27940]}]}]},'
        ' {name = "media-source", type = "keyword", values = ["auto"]}]}]\n'
    )
    persona = load_persona(str(_persona_copy(tmp_path, text)))
    dev = Device(persona, fixed_identity(), DeviceState(None), MemoryBlobs(), clock=lambda: T0)
    (_, msg), = answer(IPPPrinter(dev), http_post(request(ipp.GET_PRINTER_ATTRIBUTES, version=(2, 0))))[0]
    assert msg.code == ipp.OK and msg.version == (2, 0)
    (coll,) = attrs_of(msg, ipp.TAG_PRINTER)["media-col-default"]
    assert coll[0].name == "media-size" and coll[0].values[0].value[0].values == [Value(ipp.INTEGER, 21590)]


# ---------------------------------------------------------------------------------------------
# the service over TCP
# ---------------------------------------------------------------------------------------------


def ipp_port(sensor) -> int:
    return sensor.settings.listen_port(sensor.settings.ipp)


def json_events(data_dir):
    return [json.loads(line) for line in (data_dir / "log" / "honeyjet.json").read_text().splitlines()]


async def test_service_prints_and_answers_over_tcp(data_dir):
    settings = sensor_settings(data_dir)
    async with running(settings) as sensor:
        port = ipp_port(sensor)
        pjl = settings.listen_port(settings.pjl)
        count = lambda r: int(r.split(b"PAGECOUNT=")[1].split(b"\r\n")[0])
        before = count(await exchange(pjl, b"@PJL INFO PAGECOUNT\r\n"))
        got = await exchange(port, http_post(print_job(PS_DOC), expect=True, chunked=True), shut=False,
                             until=None, read_timeout=1.0)
        after = count(await exchange(pjl, b"@PJL INFO PAGECOUNT\r\n"))
        attrs = await exchange(port, http_post(request(ipp.GET_PRINTER_ATTRIBUTES)), read_timeout=1.0)
    assert got.startswith(b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\n")
    assert after == before + 1
    assert ("ipp://127.0.0.1:%d/ipp" % port).encode() in attrs
    events = json_events(data_dir)
    cap = [e for e in events if e["eventid"] == "honeyjet.job.captured"][0]
    assert (data_dir / "artifacts" / cap["shasum"]).read_bytes() == PS_DOC and cap["protocol"] == "ipp"
    assert cap["shasum"] == hashlib.sha256(PS_DOC).hexdigest()
    reqs = [e for e in events if e["eventid"] == "honeyjet.ipp.request"]
    assert [e["operation"] for e in reqs] == ["Print-Job", "Get-Printer-Attributes"] and reqs[0]["dst_port"] == port


async def test_service_survives_the_corpus(data_dir):
    settings = sensor_settings(data_dir)
    probe = http_post(request(ipp.GET_PRINTER_ATTRIBUTES))
    async with running(settings) as sensor:
        port = ipp_port(sensor)
        for entry in TCP_ENTRIES:
            payload = entry["payload"]
            await exchange(port, payload, read_timeout=0.5)
            await exchange(port, split_at(payload, entry.get("chunk_offsets", [])), read_timeout=0.5)
            again = await exchange(port, probe, read_timeout=1.0)
            assert b"HP LaserJet 4250" in again, entry["id"]
        assert sensor.counters.get("engine_errors", 0) == 0
    events = json_events(data_dir)
    reqs = [e for e in events if e["eventid"] == "honeyjet.ipp.request"]
    assert len(reqs) == 3 * len(TCP_ENTRIES)
    sessions = {e["session"] for e in events if e["protocol"] == "ipp" and e["eventid"] == "honeyjet.session.connect"}
    assert len(sessions) == 3 * len(TCP_ENTRIES)


async def test_two_connections_create_and_send(data_dir):
    settings = sensor_settings(data_dir)
    async with running(settings) as sensor:
        port = ipp_port(sensor)
        created = await exchange(port, http_post(request(ipp.CREATE_JOB)), read_timeout=1.0)
        (_, msg), = replies(created)
        number = attrs_of(msg, ipp.TAG_JOB)["job-id"][0]
        sent = await exchange(port, http_post(request(ipp.SEND_DOCUMENT, ("job-id", ipp.INTEGER, number),
                                                      ("last-document", ipp.BOOLEAN, True)) + PS_DOC), read_timeout=1.0)
        assert replies(sent)[0][1].code == ipp.OK
        await asyncio.sleep(0)
    cap = [e for e in json_events(data_dir) if e["eventid"] == "honeyjet.job.captured"][0]
    assert cap["job"] == number and (data_dir / "artifacts" / cap["shasum"]).read_bytes() == PS_DOC
