"""Every built-in persona: it loads, its identity has the vendor's formats, its files agree
with each other, and a running sensor tells the same story over PJL, PostScript, SNMP, HTTP,
IPP and LPD (model, serial, MAC/host name, page count, the display after an RDYMSG).

The per-vendor expectations below are public facts (nmap-service-probes match lines, OUIs in
nmap-mac-prefixes, host-name conventions); docs/personas.md says where each came from."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import pytest
from conftest import exchange, running, sensor_settings
from test_ipp import attrs_of, http_post, replies
from test_ipp import request as ipp_request
from test_snmp import NMAP_V3_GET, Reply, query
from test_snmp import request as snmp_request

from honeyjet import cli
from honeyjet.persona.device import Device
from honeyjet.persona.identity import draw_identity
from honeyjet.persona.model import builtin_ids, load_persona, render
from honeyjet.protocols import ipp

UEL = b"\x1b%-12345X"
NMAP_MAC_PREFIXES = Path("/usr/share/nmap/nmap-mac-prefixes")

SYS_DESCR = (1, 3, 6, 1, 2, 1, 1, 1, 0)
SYS_OBJECT_ID = (1, 3, 6, 1, 2, 1, 1, 2, 0)
SYS_NAME = (1, 3, 6, 1, 2, 1, 1, 5, 0)
IF_PHYS = (1, 3, 6, 1, 2, 1, 2, 2, 1, 6, 1)
HR_DEVICE_DESCR = (1, 3, 6, 1, 2, 1, 25, 3, 2, 1, 3, 1)
PRT_DISPLAY_LINES = (1, 3, 6, 1, 2, 1, 43, 5, 1, 1, 11, 1)
PRT_SERIAL = (1, 3, 6, 1, 2, 1, 43, 5, 1, 1, 17, 1)
PRT_LIFE_COUNT = (1, 3, 6, 1, 2, 1, 43, 10, 2, 1, 4, 1, 1)
PRT_DISPLAY = (1, 3, 6, 1, 2, 1, 43, 16, 5, 1, 2, 1, 1)
ENGINE_ID = (1, 3, 6, 1, 6, 3, 10, 2, 1, 1, 0)
PRT_INTERPRETER_FAMILY = (1, 3, 6, 1, 2, 1, 43, 15, 1, 1, 2)

# Printer-MIB PrtInterpreterLangFamilyTC -> PJL language name
LANG_FAMILY = {5: "PJL", 3: "PCL", 47: "PCLXL", 6: "POSTSCRIPT", 54: "PDF"}
# PJL language -> IPP document format
LANG_MIME = {"PCL": "application/vnd.hp-pcl", "PCLXL": "application/vnd.hp-pclxl", "POSTSCRIPT": "application/postscript",
             "PDF": "application/pdf"}
# IEEE 1284 CMD tokens as vendors write them -> PJL language name
CMD_TOKEN = {"PCL": "PCL", "PCL5E": "PCL", "PCLXL": "PCLXL", "POSTSCRIPT": "POSTSCRIPT", "POSTSCRIPT EMULATION": "POSTSCRIPT",
             "PDF": "PDF", "PJL": "PJL"}


@dataclass(frozen=True)
class Expect:
    """What a persona of this vendor must look like."""

    oui_vendor: str  # regex for the vendor's name in nmap-mac-prefixes
    serial: str  # regex
    hostname: str  # "tail": prefix + last 3 octets; "mac": prefix + all 6 octets
    host_prefix: str
    sys_object_id: str
    enterprise: int  # in the SNMPv3 engine ID
    # nmap-service-probes: the probe nmap's match applies to, and the match (Python re)
    nmap_probe: bytes
    nmap_match: bytes
    server: str  # the Server header line (template over the identity)
    identity_page: str  # shows model and serial
    count_page: tuple[str, str]  # path, regex with the page count
    display_page: tuple[str, str]  # path, how the display text appears
    lpd_queue: str


GET_ROOT = b"GET / HTTP/1.0\r\n\r\n"
EXPECT = {
    "hp-laserjet-4250": Expect(
        r"^(HP|Hewlett)", r"CN[A-HJ-NP-Z]{3}\d{5}", "tail", "NPI", "1.3.6.1.4.1.11.2.3.9.1", 11, GET_ROOT,
        # nmap-service-probes, GetRequest (7.93 line 6589)
        rb"^HTTP/1\.1 301 Resource Moved\r\nCONTENT-LENGTH: 0\r\nEXPIRES: .*\r\nLocation: /hp/device/this\.LCDispatcher\r\n"
        rb"CACHE-CONTROL: no-cache\r\nSERVER: HP-ChaiSOE/([\d.]+)\r\n-ONNECTION: Keep-Alive\r\n\r\n",
        "SERVER: HP-ChaiSOE/1.0",
        "/hp/device/this.LCDispatcher?nav=hp.DeviceInfo",
        ("/hp/device/this.LCDispatcher?nav=hp.DeviceInfo", r'Page Count:</div><div class="hpDataItemValue">(\d+)<'),
        ("/hp/device/this.LCDispatcher?nav=hp.DeviceStatus", '<div class="hpDisplay">{}</div>'),
        "raw",
    ),
    "hp-laserjet-m506": Expect(
        r"^(HP|Hewlett)", r"PHB[A-HJ-NP-Z]{2}\d{5}", "tail", "NPI", "1.3.6.1.4.1.11.2.3.9.1", 11,
        # nmap matches 4xx/5xx only: its HTTPOptions probe (falls back to GetRequest) gets the 501
        b"OPTIONS / HTTP/1.0\r\n\r\n",
        # nmap-service-probes, GetRequest (7.93 line 6600)
        rb"^HTTP/1\.1 [45]\d\d .*\r\nServer: HP HTTP Server; (?:HP )+([^-]+) (?:series |MFP )?- \w+; Serial Number: (\w+);",
        "Server: HP HTTP Server; HP LaserJet M506 - F2A69A; Serial Number: ${serial}; Built:",
        "/hp/device/InternalPages/Index?id=ConfigurationPage",
        ("/hp/device/InternalPages/Index?id=ConfigurationPage", r'<strong id="EngineCycles">(\d+)</strong>'),
        ("/hp/device/DeviceStatus/Index", '<span id="MachineStatus">{}</span>'),
        "raw",
    ),
    "brother-hl-l5100dn": Expect(
        r"^Brother [Ii]ndustries", r"E7\d{4}J6N\d{6}", "mac", "BRN", "1.3.6.1.4.1.2435.2.3.9.1", 2435, GET_ROOT,
        # nmap-service-probes, GetRequest (7.93 line 6775)
        rb"^HTTP/1\.[01] \d\d\d (?:[^\r\n]*\r\n(?!\r\n))*?Server: [dD]ebut/(\d[-.\w]+)\r\n",
        "Server: debut/1.20",
        "/general/information.html",
        ("/general/information.html", r"<dt>Page&#32;Counter</dt><dd>(\d+)</dd>"),
        ("/general/status.html", '<span class="moni moniOk">{}  </span>'),
        "BINARY_P1",
    ),
    "kyocera-ecosys-m2040dn": Expect(
        r"^Kyocera", r"VCF\d{7}", "tail", "KM", "1.3.6.1.4.1.1347.41", 1347, GET_ROOT,
        # nmap-service-probes, GetRequest (7.93 line 8827)
        rb"^HTTP/1\.1 [25]00 (?:[^\r\n]*\r\n(?!\r\n))*?Server: KM-MFP-http/V([\d.]+)\r\n",
        "Server: KM-MFP-http/V0.0.1",
        "/js/jssrc/model/dvcinfo/dvcconfig/DvcConfig_Config.model.htm",
        ("/js/jssrc/model/dvcinfo/dvccounter/DvcInfo_Counter_PrnCounter.model.htm", r"printertotal = \('(\d+)'\)"),
        ("/js/jssrc/model/startwlm/Start_Wlm.model.htm", "_pp.f_getPrinterStatus = '{}';"),
        "lp",
    ),
}

BUILTINS = builtin_ids()


def test_every_builtin_persona_has_expectations_here():
    assert set(BUILTINS) == set(EXPECT)
    assert len(BUILTINS) >= 4


def test_honeyjet_personas_lists_every_builtin_as_valid(capsys):
    assert cli.main(["personas"]) == 0
    out = capsys.readouterr().out
    for pid in BUILTINS:
        line = next(line for line in out.splitlines() if line.startswith(pid + " "))
        assert "INVALID" not in line and load_persona(pid).device.model in line


# ---------------------------------------------------------------------------------------------
# each persona on its own
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("pid", BUILTINS)
def test_loads_with_every_protocol_section(pid):
    persona = load_persona(pid)
    assert persona.id == pid
    assert persona.http is not None and persona.ipp is not None and persona.lpd is not None and persona.snmp is not None
    dev = Device.ephemeral(pid)
    assert dev.model == persona.device.model
    values = dev.values()
    assert "${" not in values["ieee1284_id"] and "${" not in values["network_description"]


def _oui_vendors() -> dict[str, str]:
    out = {}
    for line in NMAP_MAC_PREFIXES.read_text(encoding="utf-8", errors="replace").splitlines():
        if len(line) > 7 and not line.startswith("#"):
            out[line[:6].upper()] = line[7:]
    return out


@pytest.mark.parametrize("pid", BUILTINS)
def test_identity_draws_have_the_vendor_formats(pid):
    persona = load_persona(pid)
    exp = EXPECT[pid]
    vendors = _oui_vendors() if NMAP_MAC_PREFIXES.exists() else {}
    serials, macs = set(), set()
    for _ in range(40):
        ident = draw_identity(persona)
        assert re.fullmatch(exp.serial, ident.serial), ident.serial
        assert re.fullmatch(r"[0-9A-F]{2}(:[0-9A-F]{2}){5}", ident.mac), ident.mac
        assert ident.mac[:8] in persona.identity.mac_ouis
        if vendors:
            assert re.search(exp.oui_vendor, vendors[ident.mac[:8].replace(":", "")]), ident.mac
        hexmac = ident.mac.replace(":", "")
        tail = hexmac if exp.hostname == "mac" else hexmac[-6:]
        assert ident.hostname == exp.host_prefix + tail
        lo, hi = persona.identity.page_count_range
        assert lo <= ident.page_count_origin <= hi
        serials.add(ident.serial)
        macs.add(ident.mac)
    assert len(serials) > 30 and len(macs) > 30  # drawn, not fixed


@pytest.mark.parametrize("pid", BUILTINS)
def test_languages_agree_across_pjl_snmp_ipp_and_1284(pid):
    persona = load_persona(pid)
    langs = {lang.upper() for lang in persona.device.languages}
    config = {c.name: c for c in persona.pjl.config}
    assert set(config["LANGUAGES"].options) == langs
    # SNMP prtInterpreterLangFamily: PJL plus the same languages
    assert persona.snmp is not None
    families = {v for oid, kind, v in _objects(persona) if oid[: len(PRT_INTERPRETER_FAMILY)] == PRT_INTERPRETER_FAMILY}
    assert {LANG_FAMILY[int(v)] for v in families} == langs | {"PJL"}
    # IPP document-format-supported: every language (plus autosense)
    assert persona.ipp is not None
    formats = {str(v).lower() for v in persona.ipp.attribute("document-format-supported").values}
    assert {LANG_MIME[lang] for lang in langs} | {"application/octet-stream"} <= formats
    # 1284 CMD: the languages; a real Kyocera M2040dn's ID does not list PDF, which it prints
    fields = dict(f.split(":", 1) for f in persona.device.ieee1284_id.split(";") if ":" in f)
    cmd = {CMD_TOKEN[t.strip().upper()] for t in fields["CMD"].split(",") if t.strip().upper() in CMD_TOKEN}
    assert "PJL" in cmd and cmd - {"PJL"} <= langs and langs - cmd <= {"PDF"}
    # the model names agree: 1284 MDL, PJL INFO ID, PostScript product, SNMP hrDeviceDescr
    mdl = fields["MDL"]
    assert persona.device.model.endswith(mdl) and mdl in persona.pjl.id and mdl in persona.postscript.product
    assert fields["MFG"] in (persona.device.manufacturer, persona.device.vendor)
    # PJL display size = Printer-MIB console size
    lines = [v for oid, _, v in _objects(persona) if oid == PRT_DISPLAY_LINES]
    assert lines == [config["DISPLAY LINES"].value]


def _objects(persona):
    for oid, kind, value in persona.snmp.objects():
        yield tuple(int(a) for a in oid.split(".")), kind, value


# ---------------------------------------------------------------------------------------------
# a running sensor per persona
# ---------------------------------------------------------------------------------------------


async def _http(port: int, path: str) -> tuple[bytes, bytes]:
    raw = await exchange(port, f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n".encode(), read_timeout=2.0)
    head, _, body = raw.partition(b"\r\n\r\n")
    return head, body


async def _pjl(port: int, command: bytes) -> bytes:
    return await exchange(port, UEL + command + UEL, read_timeout=1.0)


async def _pagecount(port: int) -> int:
    return int(re.search(rb"PAGECOUNT=(\d+)", await _pjl(port, b"@PJL INFO PAGECOUNT\r\n")).group(1))


@pytest.mark.parametrize("pid", BUILTINS)
async def test_a_running_sensor_tells_one_story(pid, data_dir):
    exp = EXPECT[pid]
    settings = sensor_settings(data_dir, sensor={"persona": pid})
    async with running(settings) as sensor:
        dev = sensor.device
        persona = dev.persona
        ident = dev.identity
        values = dev.values()
        pjl = settings.listen_port(settings.pjl)
        web = settings.listen_port(settings.http)
        ipp_port = settings.listen_port(settings.ipp)
        lpd = settings.listen_port(settings.lpd)
        snmp = settings.listen_port(settings.snmp)

        # PJL: the nmap hp-pjl probe gets the model, quoted, nothing before it
        got = await exchange(pjl, UEL + b"@PJL INFO ID\r\n" + UEL + b"\r\n", read_timeout=1.0)
        assert got == b'@PJL INFO ID\r\n"' + persona.pjl.id.encode() + b'"\r\n\x0c'
        # PostScript: product and serial number
        ps = await _pjl(pjl, b"@PJL ENTER LANGUAGE=POSTSCRIPT\r\nproduct print (|) print "
                             b"currentsystemparams /SerialNumber get print flush\r\n")
        assert ps.decode("latin-1") == f"{persona.postscript.product}|{ident.serial}"

        # the display after an RDYMSG, and the page count, everywhere
        text = "HJ PERSONA 7"
        assert await _pjl(pjl, f'@PJL RDYMSG DISPLAY = "{text}"\r\n'.encode()) == b""
        status = await _pjl(pjl, b"@PJL INFO STATUS\r\n")
        assert f'DISPLAY="{text}"'.encode() in status and b"ONLINE=TRUE" in status
        before = await _pagecount(pjl)

        # SNMP (v2c public)
        oids = [SYS_DESCR, SYS_OBJECT_ID, SYS_NAME, IF_PHYS, HR_DEVICE_DESCR, PRT_SERIAL, PRT_LIFE_COUNT, PRT_DISPLAY, ENGINE_ID]
        raw = await query(snmp, snmp_request(1, "get", oids), timeout=3.0)
        assert raw is not None, "no SNMP reply"
        got_snmp = {oid: value for oid, value in Reply(raw, 1).varbinds}
        assert str(got_snmp[SYS_DESCR]) == values["network_description"]
        assert str(got_snmp[SYS_OBJECT_ID]) == exp.sys_object_id
        assert str(got_snmp[SYS_NAME]) == ident.hostname
        assert bytes(got_snmp[IF_PHYS]) == bytes.fromhex(ident.mac.replace(":", ""))
        assert str(got_snmp[HR_DEVICE_DESCR]) == persona.device.model
        assert str(got_snmp[PRT_SERIAL]) == ident.serial
        assert str(got_snmp[PRT_DISPLAY]) == text
        engine = bytes(got_snmp[ENGINE_ID])
        assert engine[0] & 0x80 and int.from_bytes(engine[:4], "big") & 0x7FFFFFFF == exp.enterprise
        # the nmap SNMPv3 probe gets a report with the same engine ID
        v3 = await query(snmp, NMAP_V3_GET, timeout=3.0)
        assert v3 is not None and engine in v3
        snmp_count = int(got_snmp[PRT_LIFE_COUNT])

        # HTTP: the server family nmap knows, model, serial, page count, display
        nmap_reply = await exchange(web, exp.nmap_probe, read_timeout=2.0)
        assert re.search(exp.nmap_match, nmap_reply, re.DOTALL), nmap_reply[:300]
        head, body = await _http(web, exp.identity_page)
        assert render(exp.server, {"serial": ident.serial}).encode() in head, head
        assert ident.serial.encode() in body and persona.device.model.encode() in body
        path, pattern = exp.count_page
        _, body = await _http(web, path)
        web_count = int(re.search(pattern.encode(), body).group(1))
        path, shape = exp.display_page
        _, body = await _http(web, path)
        assert shape.format(text).encode() in body, body[:500]
        _, missing = await _http(web, "/nonexistent/honeyjet-probe.html")
        assert missing, "the device's own 404 page"

        # IPP: Get-Printer-Attributes at the persona's printer path
        assert persona.ipp is not None
        path = persona.ipp.paths[0]
        uri = f"ipp://127.0.0.1:{ipp_port}{path}"
        sent = await exchange(ipp_port, http_post(ipp_request(ipp.GET_PRINTER_ATTRIBUTES, uri=uri), path=path), read_timeout=1.0)
        ((http_head, msg),) = replies(sent)
        assert http_head.startswith(b"HTTP/1.1 200 OK\r\n") and msg is not None and msg.code == ipp.OK
        attrs = attrs_of(msg, ipp.TAG_PRINTER)
        assert persona.device.model.endswith(attrs["printer-make-and-model"][0]) or attrs["printer-make-and-model"][0] == persona.device.model
        assert attrs["printer-device-id"] == [values["ieee1284_id"]]
        assert attrs["printer-name"] == [ident.hostname]
        assert attrs["printer-state-message"] == [text]
        assert attrs["printer-state"] == [3]
        assert uri in attrs["printer-uri-supported"]
        if "SER:" in values["ieee1284_id"]:
            assert f"SER:{ident.serial};" in attrs["printer-device-id"][0]

        after = await _pagecount(pjl)
        assert before <= snmp_count <= after and before <= web_count <= after

        # LPD: nmap's LPDString probe gets one NUL; the vendor's queue is known
        assert await exchange(lpd, b"\x01default\n", read_timeout=1.0) == b"\x00"
        state = await exchange(lpd, f"\x03{exp.lpd_queue}\n".encode(), read_timeout=1.0)
        # (the PostScript job sent over 9100 above may still be "printing")
        assert state.startswith(exp.lpd_queue.encode() + b" is ready")
        assert persona.lpd is not None and persona.lpd.family_of(exp.lpd_queue) is not None

        # nothing leaks the honeypot's own stack
        for payload in (nmap_reply, head):
            assert not re.search(rb"Python|aiohttp|BaseHTTP|Werkzeug|\$\{", payload), payload[:300]
