"""The embedded web server: the persona's [http] section served through HTTPServerEngine."""

from __future__ import annotations

import hashlib
import json
import re
import xml.etree.ElementTree as ET

import pytest

from conftest import exchange, running, sensor_settings
from helpers import corpus, drive, make_device, split_at
from honeyjet.events import CATALOGUE
from honeyjet.persona.model import PersonaError, load_persona, parse_persona
from honeyjet.persona.model_http import HTTPSection
from honeyjet.protocols.ews import EWSSite, ews_engine
from honeyjet.protocols.outputs import Close
from honeyjet.protocols.pjl import PJLEngine

IP = "192.168.1.20"
# nmap-service-probes (7.93) line 6589, the HP-ChaiSOE match for the GetRequest probe
NMAP_6589 = re.compile(
    rb"^HTTP/1\.1 301 Resource Moved\r\nCONTENT-LENGTH: 0\r\nEXPIRES: .*\r\nLocation: /hp/device/this\.LCDispatcher\r\n"
    rb"CACHE-CONTROL: no-cache\r\nSERVER: HP-ChaiSOE/([\d.]+)\r\n-ONNECTION: Keep-Alive\r\n\r\n"
)
FIELDS = set(CATALOGUE["honeyjet.http.request"].fields)
PYTHONISH = re.compile(rb"Traceback|Python|python|aiohttp|BaseHTTP|Werkzeug|h11|Exception|Error:", re.I)
DISPATCH = "/hp/device/this.LCDispatcher"


@pytest.fixture
def device():
    return make_device()


@pytest.fixture
def site(device):
    return EWSSite(device, device.persona.http)


def get(site, target: str, *, method: str = "GET", headers: str = "Host: printer\r\n", ip: str = IP):
    return drive(ews_engine(site, ip), [f"{method} {target} HTTP/1.1\r\n{headers}\r\n".encode()])


def split_response(data: bytes) -> tuple[bytes, list[bytes], bytes]:
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.split(b"\r\n")
    return lines[0], lines[1:], body


def header(data: bytes, name: bytes) -> bytes | None:
    for line in split_response(data)[1]:
        k, _, v = line.partition(b": ")
        if k.lower() == name.lower():
            return v
    return None


# -- the fingerprint --------------------------------------------------------------------------------
def test_nmap_get_request_gets_chaisoe_redirect_byte_exact(site):
    run = drive(ews_engine(site, IP), [b"GET / HTTP/1.0\r\n\r\n"], eof=False)
    m = NMAP_6589.match(run.sent)
    assert m and m.group(1) == b"1.0", run.sent
    assert run.sent == (
        b"HTTP/1.1 301 Resource Moved\r\nCONTENT-LENGTH: 0\r\nEXPIRES: Mon, 21 Sep 2026 14:13:20 GMT\r\n"
        b"Location: /hp/device/this.LCDispatcher\r\nCACHE-CONTROL: no-cache\r\nSERVER: HP-ChaiSOE/1.0\r\n"
        b"-ONNECTION: Keep-Alive\r\n\r\n"
    )
    # an HTTP/1.0 request without keep-alive: the connection closes after the answer
    engine = ews_engine(site, IP)
    assert any(isinstance(o, Close) for o in engine.feed(b"GET / HTTP/1.0\r\n\r\n"))
    (ev,) = run.of("honeyjet.http.request")
    assert ev["page"] == "root" and ev["status"] == 301 and ev["version"] == "HTTP/1.0" and ev["malformed"] == ""


def test_pages_carry_the_persona_title_and_live_identity(site, device):
    run = get(site, DISPATCH)
    status, headers, body = split_response(run.sent)
    assert status == b"HTTP/1.1 200 OK"
    assert [h.split(b":")[0] for h in headers] == [b"CONTENT-LENGTH", b"CONTENT-TYPE", b"EXPIRES", b"CACHE-CONTROL", b"SERVER", b"-ONNECTION"]
    assert int(header(run.sent, b"CONTENT-LENGTH")) == len(body)
    assert b"<title>HP LaserJet 4250&nbsp;&nbsp;&nbsp;192.168.1.20</title>" in body
    assert b">Ready<" in body
    info = get(site, DISPATCH + "?nav=hp.DeviceInfo").sent
    for value in (device.model, device.serial, device.mac, str(device.page_count()), device.hostname, device.persona.device.firmware):
        assert value.encode() in info, value
    usage = get(site, DISPATCH + "?nav=hp.Usage").sent
    assert f">{device.page_count()}<".encode() in usage


@pytest.mark.parametrize(
    "nav,page,text",
    [
        ("hp.DeviceStatus", "device-status", b"Device Status"),
        ("hp.Supplies", "supplies", b"Supplies Status"),
        ("hp.Usage", "usage", b"Usage Page"),
        ("hp.DeviceInfo", "device-info", b"Device Information"),
        ("hp.Config", "config", b"Configuration Page"),
        ("hp.Settings", "settings", b"Configure Device"),
        ("hp.NoSuchPage", "device-status", b"Device Status"),
    ],
)
def test_dispatcher_pages(site, nav, page, text):
    run = get(site, f"{DISPATCH}?nav={nav}")
    assert run.sent.startswith(b"HTTP/1.1 200 OK\r\n")
    assert b'<div class="hpPageTitle">' + text in run.sent
    assert run.of("honeyjet.http.request")[0]["page"] == page


def test_scanner_paths(site, device):
    # Greenbone hp_printers.inc: default-login check for the LaserJet 4250
    tcp = get(site, "/hp/jetdirect/tcp_param.htm").sent
    assert tcp.startswith(b"HTTP/1.1 200") and b"This table displays the TCP/IP configuration items" in tcp
    # Greenbone gb_hp_printer_http_detect.nasl version fallbacks
    jd = get(site, "/hp/jetdirect/index.html").sent
    assert re.search(rb"Firmware Version:</b>[^>]+>[^>]+>\s*V\.([0-9.]+)", jd).group(1) == b"28.59"
    cfg = get(site, DISPATCH + "?nav=hp.Config").sent
    assert re.search(rb"Firmware:</div>[^>]+>\s*[0-9]+\s+([0-9.]+)<", cfg).group(1) == device.persona.device.firmware.encode()
    # nmap http-enum's printer fingerprint takes any 2xx for the dispatcher
    assert get(site, DISPATCH, method="HEAD").sent.startswith(b"HTTP/1.1 200")
    # the logo the pages reference is a real GIF
    gif = split_response(get(site, "/hp/device/images/hp_invent_logo.gif").sent)
    assert gif[2][:6] == b"GIF89a" and gif[2].endswith(b"\x3b") and b"CONTENT-TYPE: image/gif" in gif[1]
    css = get(site, "/hp/device/css/hp_ews.css").sent
    assert css.startswith(b"HTTP/1.1 200") and b"CONTENT-TYPE: text/css" in css


@pytest.mark.parametrize(
    "path,root,serial_tag",
    [
        ("/hp/device/info_device_status.xml", "DeviceStatusPage", None),
        ("/hp/device/info_ssp.xml", "SuppliesStatusPage", None),
        ("/hp/device/product_information.xml", "ProductInformation", "ProductSerialNumber"),
        ("/hp/device/info_config.xml", "ConfigurationPage", "ProductSerialNumber"),
    ],
)
def test_xml_paths_parse(site, device, path, root, serial_tag):
    device.set_ready_message("<x> & \"y\" 'z' \x01")
    _, headers, body = split_response(get(site, path).sent)
    assert b"CONTENT-TYPE: text/xml" in headers
    tree = ET.fromstring(body)
    assert tree.tag.endswith("}" + root)
    if serial_tag:
        assert [e.text for e in tree.iter() if e.tag.endswith("}" + serial_tag)] == [device.serial]
    if root == "DeviceStatusPage":
        assert [e.text for e in tree.iter() if e.tag.endswith("}Message")] == ["<x> & \"y\" 'z' "]


def test_unknown_paths_get_one_consistent_404(site):
    bodies = set()
    for target in ("/nope", "/gif/hp.gif", "/gif/printer.gif", "/DevMgmt/ProductConfigDyn.xml", "/hp/device/",
                   "/../../etc/passwd", "/hp/device/this.LCDispatcher/", "/index.html", "http://example.com/"):
        run = get(site, target)
        status, headers, body = split_response(run.sent)
        assert status == b"HTTP/1.1 404 Not Found", target
        assert b"SERVER: HP-ChaiSOE/1.0" in headers and not PYTHONISH.search(run.sent)
        assert run.of("honeyjet.http.request")[0]["page"] == "404"
        bodies.add(body)
    assert len(bodies) == 1


def test_head_has_no_body_but_the_get_length(site):
    full = get(site, DISPATCH + "?nav=hp.Config").sent
    head = get(site, DISPATCH + "?nav=hp.Config", method="HEAD").sent
    assert head.endswith(b"\r\n\r\n") and head == full[: len(head)]
    assert int(header(head, b"CONTENT-LENGTH")) == len(split_response(full)[2]) > 0


def test_other_methods_are_not_implemented(site):
    for method in ("OPTIONS", "PUT", "DELETE", "TRACE", "PROPFIND"):
        run = get(site, DISPATCH, method=method)
        assert run.sent.startswith(b"HTTP/1.1 501 Not Implemented\r\n"), method
        assert run.of("honeyjet.http.request")[0]["page"] == "501"
    # POST to something that only takes GET
    run = drive(ews_engine(site, IP), [b"POST /hp/device/images/hp_invent_logo.gif HTTP/1.1\r\nContent-Length: 0\r\n\r\n"])
    assert run.sent.startswith(b"HTTP/1.1 501 ")


def test_keep_alive_and_pipelining(site):
    engine = ews_engine(site, IP)
    two = (f"GET {DISPATCH}?nav=hp.Usage HTTP/1.1\r\nHost: p\r\n\r\n" f"HEAD / HTTP/1.1\r\nHost: p\r\n\r\n").encode()
    outs = engine.feed(two)
    assert not any(isinstance(o, Close) for o in outs)
    run = drive(ews_engine(site, IP), [two + b"GET /nope HTTP/1.1\r\nHost: p\r\nConnection: close\r\n\r\n"], eof=False)
    assert run.sent.count(b"HTTP/1.1 ") == 3
    assert [e["status"] for e in run.of("honeyjet.http.request")] == [200, 301, 404]
    # every response is framed by its own exact Content-Length
    rest, statuses = run.sent, []
    while rest:
        head, _, rest = rest.partition(b"\r\n\r\n")
        statuses.append(head.split(b"\r\n")[0])
        rest = rest[int(header(head + b"\r\n\r\n", b"CONTENT-LENGTH")) :]
    assert statuses == [b"HTTP/1.1 200 OK", b"HTTP/1.1 301 Resource Moved", b"HTTP/1.1 404 Not Found"]


def test_responses_do_not_depend_on_chunking(site):
    payload = (
        b"GET / HTTP/1.1\r\nHost: p\r\n\r\n"
        b"POST /hp/device/this.LCDispatcher?nav=hp.Settings HTTP/1.1\r\nHost: p\r\nContent-Length: 11\r\n\r\nDeviceName="
        b"GET /hp/device/info_config.xml HTTP/1.1\r\nHost: p\r\nConnection: close\r\n\r\n"
    )
    whole = drive(ews_engine(site, IP), [payload])
    bytewise = drive(ews_engine(site, IP), [payload[i : i + 1] for i in range(len(payload))])
    assert whole.sent == bytewise.sent and whole.events == bytewise.events and whole.captures == bytewise.captures
    assert len(whole.of("honeyjet.http.request")) == 3


def test_event_fields_are_catalogued_and_names_are_values(site):
    run = drive(ews_engine(site, IP), [b"GET / HTTP/1.1\r\nX-Evil-Key: 1\r\nstatus: 999\r\npage: pwn\r\n\r\n", b"\x00\x01garbage"])
    for eventid, fields in run.events:
        assert eventid == "honeyjet.http.request"
        assert set(fields) <= FIELDS, set(fields) - FIELDS
    first = run.of("honeyjet.http.request")[0]
    assert ["X-Evil-Key", "1"] in first["headers"] and first["status"] == 301 and first["page"] == "root"
    assert "X-Evil-Key" not in first


# -- request bodies ---------------------------------------------------------------------------------
def test_post_body_is_captured_and_hashed(site):
    body = b"NewPassword=hunter2&VerifyPassword=hunter2&Apply=Apply"
    req = (
        f"POST {DISPATCH}?nav=hp.Settings HTTP/1.1\r\nHost: p\r\nContent-Type: application/x-www-form-urlencoded\r\n"
        f"Content-Length: {len(body)}\r\n\r\n"
    ).encode() + body
    run = drive(ews_engine(site, IP), split_at(req, [10, len(req) - 20, len(req) - 3]))
    (cap,) = run.captures
    assert cap["kind"] == "body" and cap["data"] == body
    (ev,) = run.of("honeyjet.http.request")
    assert ev["shasum"] == hashlib.sha256(body).hexdigest() and ev["page"] == "settings" and ev["body_size"] == len(body)
    assert run.sent.startswith(b"HTTP/1.1 200 OK")


def test_chunked_body_with_expect_continue(site):
    req = (
        b"POST /hp/jetdirect/tcp_param.htm HTTP/1.1\r\nHost: p\r\nTransfer-Encoding: chunked\r\nExpect: 100-continue\r\n\r\n"
        b"5\r\nHostN\r\n8\r\name=evil\r\n0\r\n\r\n"
    )
    run = drive(ews_engine(site, IP), [req])
    assert run.sent.startswith(b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\n")
    assert run.captures[0]["data"] == b"HostName=evil"
    assert run.of("honeyjet.http.request")[0]["shasum"] == hashlib.sha256(b"HostName=evil").hexdigest()


def test_body_cut_by_eof_is_still_recorded(site):
    run = drive(ews_engine(site, IP), [b"POST / HTTP/1.1\r\nContent-Length: 100\r\n\r\nonly-part"])
    (ev,) = run.of("honeyjet.http.request")
    assert ev["body_truncated"] and ev["shasum"] == hashlib.sha256(b"only-part").hexdigest()
    assert run.captures[0]["data"] == b"only-part"


def test_no_body_no_capture(site):
    run = get(site, "/")
    assert run.captures == [] and "shasum" not in run.of("honeyjet.http.request")[0]


# -- garbage ---------------------------------------------------------------------------------------
TLS_HELLO = bytes.fromhex("160301020001000" "1fc0303") + bytes(range(32)) + b"\x00\x00\x02\x13\x01\x01\x00"


@pytest.mark.parametrize(
    "payload,reason",
    [
        (b"GARBAGE\r\n\r\n", "bad request line"),
        (TLS_HELLO, "not an HTTP request"),
        (bytes(range(256)) * 4, "not an HTTP request"),
        (b"GET / HTTP/1.1\r\nX: " + b"a" * 100_000 + b"\r\n\r\n", "request head too large"),
        (b"POST / HTTP/1.1\r\nContent-Length: -5\r\n\r\n", "bad content-length"),
        (b"POST / HTTP/1.1\r\nContent-Length: 12abc\r\n\r\n", "bad content-length"),
        (b"GET / HTTP/9.9\r\n\r\n", "unsupported version"),
        (b"GET / HTTP/1.1\r\nbad header line\r\n\r\n", "bad header line"),
        (b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n", "bad chunk size"),
    ],
)
def test_garbage_gets_the_device_400(site, payload, reason):
    for chunks in ([payload], [payload[i : i + 7] for i in range(0, len(payload), 7)]):
        run = drive(ews_engine(site, IP), chunks)
        status, headers, body = split_response(run.sent)
        assert status == b"HTTP/1.1 400 Bad Request"
        assert b"SERVER: HP-ChaiSOE/1.0" in headers and int(header(run.sent, b"CONTENT-LENGTH")) == len(body)
        assert not PYTHONISH.search(run.sent)
        evs = run.of("honeyjet.http.request")
        assert evs[-1]["malformed"] == reason and evs[-1]["page"] == "400"
        assert evs[-1]["raw"]
        for _, fields in run.events:
            assert set(fields) <= FIELDS


def test_all_400s_are_the_same_page(site):
    bodies = {split_response(drive(ews_engine(site, IP), [p]).sent)[2] for p in (b"GARBAGE\r\n\r\n", TLS_HELLO, b"\x00\r\n\r\n")}
    assert len(bodies) == 1


# -- escaping and live state --------------------------------------------------------------------------
def test_hostile_display_message_is_escaped(site, device):
    PJLEngine(device).feed(b'@PJL RDYMSG DISPLAY="<script>alert(1)</script>"\r\n')
    body = get(site, DISPATCH + "?nav=hp.DeviceStatus").sent
    assert b"<script>" not in body
    assert b'<div class="hpDisplay">&lt;script&gt;alert(1)&lt;/script&gt;</div>' in body


def test_rdymsg_and_printing_show_on_the_next_request(site, device):
    engine = PJLEngine(device)
    engine.feed(b'@PJL RDYMSG DISPLAY="INSERT COIN"\r\n')
    assert b'<div class="hpDisplay">INSERT COIN</div>' in get(site, DISPATCH).sent
    engine.feed(b'@PJL OPMSG DISPLAY="PAPER JAM"\r\n')
    page = get(site, DISPATCH).sent
    assert b">PAPER JAM<" in page and b">Offline<" in page
    before = device.page_count()
    drive(PJLEngine(device), [b"\x1b%-12345X@PJL ENTER LANGUAGE=PCL\r\nhello\x0c\x1b%-12345X"])
    assert device.page_count() > before
    assert f">{device.page_count()}<".encode() in get(site, DISPATCH + "?nav=hp.Usage").sent


def test_local_address_fills_title_and_forms(site):
    page = get(site, "/hp/jetdirect/tcp_param.htm", ip="::ffff:10.1.2.3").sent
    assert b"&nbsp;&nbsp;&nbsp;10.1.2.3</title>" in page and b'value="10.1.2.1"' in page


def test_request_path_in_templates_is_escaped_and_header_safe(device):
    """A persona may echo the path (attacker text): escaped in bodies, no CR/LF in headers."""
    data = device.persona.http.model_dump()
    data["header_sets"]["page"] = data["header_sets"]["page"] + ["X-Path: ${path}", "X-Display: ${display}"]
    data["errors"]["not_found"]["body"] = "<p>${path} not found</p>"
    site = EWSSite(device, HTTPSection.model_validate(data))
    device.set_ready_message("a\r\nSet-Cookie: x=1")
    run = get(site, "/<b>%0d%0aX:1")
    head, _, body = run.sent.partition(b"\r\n\r\n")
    assert b"\r\nSet-Cookie" not in head and b"X-Display: a  Set-Cookie: x=1" in head
    assert body == b"<p>/&lt;b&gt;%0d%0aX:1 not found</p>"


# -- another server family, data only ---------------------------------------------------------------
FUTURESMART = """
[http]
response_version = "HTTP/1.1"
methods = ["GET", "HEAD"]
[http.reasons]
"404" = "Not Found"
[http.header_sets]
std = ["Server: HP HTTP Server; HP LaserJet ${model_short} - ${product_number}; Serial Number: ${serial}; Built: Fri Jul 13, 2018 10:46:29AM {EDWINXPP1N002.1828A.00}",
       "Content-Type: ${content_type}", "Content-Length: ${content_length}", "Cache-Control: must-revalidate, max-age=0"]
[http.values]
model_short = "M506"
[[http.routes]]
id = "home"
path = "/"
body = "<title>${model}</title>"
headers = "std"
[http.errors.not_found]
status = 404
headers = "std"
body = "<h1>Not Found</h1>"
[http.errors.bad_request]
status = 400
headers = "std"
[http.errors.not_implemented]
status = 501
headers = "std"
"""


def test_another_family_is_only_another_http_toml(device):
    import tomllib

    section = HTTPSection.model_validate(tomllib.loads(FUTURESMART)["http"])
    site = EWSSite(device, section)
    sent = get(site, "/missing").sent
    # nmap-service-probes line 6600 (FutureSmart): matches 4xx replies and prints the serial
    m = re.match(rb"^HTTP/1\.1 [45]\d\d .*\r\nServer: HP HTTP Server; (?:HP )+([^-]+) (?:series |MFP )?- \w+; Serial Number: (\w+);", sent, re.S)
    assert m and m.group(2) == device.serial.encode() and m.group(1) == b"LaserJet M506"
    assert b"Content-Length: 18\r\n" in sent
    assert get(site, "/", method="POST").sent.startswith(b"HTTP/1.1 501 Not Implemented")


def test_model_errors_name_the_key():
    base = load_persona("hp-laserjet-4250").http.model_dump()
    bad = json.loads(json.dumps(base))
    bad["routes"][0]["headers"] = "nope"
    with pytest.raises(ValueError, match="header set 'nope' is not defined"):
        HTTPSection.model_validate(bad)
    bad = json.loads(json.dumps(base))
    bad["routes"][1]["id"] = bad["routes"][0]["id"]
    with pytest.raises(ValueError, match="used twice"):
        HTTPSection.model_validate(bad)
    with pytest.raises(PersonaError, match="http"):
        parse_persona(
            (load_persona_text() + '\n[http]\nheader_sets = {}\nbogus = 1\n'), "test"
        )


def load_persona_text() -> str:
    from importlib import resources

    return resources.files("honeyjet.persona.data").joinpath("hp-laserjet-4250/persona.toml").read_text()


# -- over TCP, in-process (strict catalogue) -----------------------------------------------------------
HTTP_ENTRIES = corpus(80)


async def test_corpus_and_garbage_over_tcp(data_dir):
    assert HTTP_ENTRIES
    settings = sensor_settings(data_dir)
    async with running(settings) as sensor:
        port = settings.listen_port(settings.http)
        for entry in HTTP_ENTRIES:
            payload = entry["payload"]
            for chunks in ([payload], split_at(payload, entry.get("chunk_offsets", [])), split_at(payload, range(1, len(payload), 9))):
                got = await exchange(port, chunks, read_timeout=2.0, shut=False)
                assert got.startswith(b"HTTP/1.1 301 Resource Moved\r\n"), entry["id"]
        for junk in (TLS_HELLO, b"GARBAGE\r\n\r\n", b"\xff\xfe\x00" * 50):
            got = await exchange(port, junk, read_timeout=2.0)
            assert got.startswith(b"HTTP/1.1 400 Bad Request\r\n") and not PYTHONISH.search(got)
        page = await exchange(port, f"GET {DISPATCH} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".encode(), shut=False)
        assert page.startswith(b"HTTP/1.1 200 OK") and b"&nbsp;&nbsp;&nbsp;127.0.0.1</title>" in page
        body = b"user=admin&pass=admin"
        await exchange(port, f"POST {DISPATCH}?nav=hp.Settings HTTP/1.1\r\nContent-Length: {len(body)}\r\nConnection: close\r\n\r\n".encode() + body, shut=False)
        assert sensor.counters.get("engine_errors", 0) == 0
    events = [json.loads(line) for line in (data_dir / "log" / "honeyjet.json").read_text().splitlines()]
    reqs = [e for e in events if e["eventid"] == "honeyjet.http.request"]
    assert len(reqs) == 3 * len(HTTP_ENTRIES) + 3 + 2
    assert all(e["protocol"] == "http" and e["dst_port"] == port for e in reqs)
    assert {e["malformed"] for e in reqs if e["status"] == 400} == {"not an HTTP request", "bad request line"}
    posted = next(e for e in reqs if e["method"] == "POST")
    assert (data_dir / "artifacts" / posted["shasum"]).read_bytes() == body
    assert posted["shasum"] == hashlib.sha256(body).hexdigest()
