"""One device on every port: identity, counters, clocks and display agree across PJL,
PostScript, SNMP, HTTP, IPP and LPD, read with real clients (snmpget, urllib, ipptool)."""

from __future__ import annotations

import re
import socket
import subprocess
import time
import urllib.request

import pytest

from test_realclients import SensorProcess, need

pytestmark = pytest.mark.realclient

IPP_IDENTITY_TEST = """{
  NAME "identity"
  OPERATION Get-Printer-Attributes
  GROUP operation-attributes-tag
  ATTR charset attributes-charset utf-8
  ATTR naturalLanguage attributes-natural-language en
  ATTR uri printer-uri $uri
  STATUS successful-ok
  DISPLAY printer-make-and-model
  DISPLAY printer-device-id
  DISPLAY printer-up-time
  DISPLAY printer-state-message
}
"""
IPP_PRINT_TEST = """{
  NAME "print"
  OPERATION Print-Job
  GROUP operation-attributes-tag
  ATTR charset attributes-charset utf-8
  ATTR naturalLanguage attributes-natural-language en
  ATTR uri printer-uri $uri
  ATTR name requesting-user-name consistency
  ATTR mimeMediaType document-format text/plain
  FILE $filename
  STATUS successful-ok
}
"""
OIDS = {
    "sysDescr": "1.3.6.1.2.1.1.1.0",
    "sysUpTime": "1.3.6.1.2.1.1.3.0",
    "sysName": "1.3.6.1.2.1.1.5.0",
    "ifPhysAddress": "1.3.6.1.2.1.2.2.1.6.1",
    "hrDeviceDescr": "1.3.6.1.2.1.25.3.2.1.3.1",
    "serial": "1.3.6.1.2.1.43.5.1.1.17.1",
    "pagecount": "1.3.6.1.2.1.43.10.2.1.4.1.1",
    "display": "1.3.6.1.2.1.43.16.5.1.2.1.1",
    "hp1284": "1.3.6.1.4.1.11.2.3.9.1.1.7.0",
}


@pytest.fixture
def printer(tmp_path):
    proc = SensorProcess(tmp_path / "data").start()
    yield proc
    proc.stop()


def port(p: SensorProcess, standard: int) -> int:
    return standard + p.offset


def pjl(p: SensorProcess, command: str) -> str:
    return p.query(b"\x1b%-12345X@PJL " + command.encode() + b"\r\n\x1b%-12345X").decode("latin-1")


def postscript(p: SensorProcess, code: str) -> str:
    return p.query(b"\x1b%-12345X@PJL ENTER LANGUAGE=POSTSCRIPT\r\n%!\n" + code.encode() + b"\n\x1b%-12345X").decode("latin-1")


def snmp(p: SensorProcess) -> dict[str, str]:
    out = subprocess.run(
        [need("snmpget"), "-v2c", "-c", "public", "-On", "-Ov", "-t", "2", "-r", "1", f"127.0.0.1:{port(p, 161)}", *OIDS.values()],
        capture_output=True, text=True, timeout=30,
    ).stdout.splitlines()
    assert len(out) == len(OIDS), out
    values = {}
    for name, line in zip(OIDS, out):
        value = line.split(": ", 1)[1] if ": " in line else line
        values[name] = value.strip().strip('"')
    values["sysUpTime_s"] = int(re.search(r"\((\d+)\)", out[1]).group(1)) / 100
    return values


def http_page(p: SensorProcess, nav: str) -> str:
    url = f"http://127.0.0.1:{port(p, 80)}/hp/device/this.LCDispatcher?nav={nav}"
    with urllib.request.urlopen(url, timeout=10) as reply:
        return reply.read().decode("latin-1")


def field(page: str, label: str) -> str:
    m = re.search(re.escape(label) + r"\s*(?:<[^>]*>\s*)*([^<]+?)\s*<", page)
    assert m, f"{label} not on the page"
    return m.group(1).strip()


def ipp(p: SensorProcess, tmp_path, test: str, *extra: str) -> str:
    path = tmp_path / "t.test"
    path.write_text(test)
    result = subprocess.run(
        [need("ipptool"), "-V", "1.1", "-t", *extra, f"ipp://127.0.0.1:{port(p, 631)}/ipp", str(path)],
        capture_output=True, text=True, timeout=60,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout


def ipp_attr(out: str, name: str) -> str:
    return re.search(rf"{name} \([^)]*\) = (.*)", out).group(1).strip()


def lpd_print(p: SensorProcess, data: bytes) -> None:
    control = b"Hconsistency\nPtester\nJlpd job\nldfA001consistency\nUdfA001consistency\n"
    with socket.create_connection(("127.0.0.1", port(p, 515)), 10) as s:
        def step(payload: bytes) -> None:
            s.sendall(payload)
            assert s.recv(1) == b"\0"

        step(b"\x02raw\n")
        step(b"\x02%d cfA001consistency\n" % len(control))
        step(control + b"\0")
        step(b"\x03%d dfA001consistency\n" % len(data))
        step(data + b"\0")


def identity(p: SensorProcess, tmp_path) -> dict[str, dict[str, str]]:
    """Model, serial, MAC, host name, page count, display and up-time, per protocol."""
    status = pjl(p, "INFO STATUS")
    got: dict[str, dict[str, str]] = {
        "pjl": {
            "model": re.search(r'"([^"]+)"', pjl(p, "INFO ID")).group(1),
            "pagecount": re.search(r"PAGECOUNT=(\d+)", pjl(p, "INFO PAGECOUNT")).group(1),
            "display": re.search(r'DISPLAY="([^"]*)"', status).group(1),
        },
        "ps": {
            "model": postscript(p, "product print").strip(),
            "pagecount": postscript(p, "currentsystemparams /PageCount get ==").strip(),
            "serial": postscript(p, "currentsystemparams /SerialNumber get print").strip(),
        },
    }
    s = snmp(p)
    got["snmp"] = {
        "model": s["hrDeviceDescr"],
        "serial": s["serial"],
        "mac": s["ifPhysAddress"].replace(" ", ":").upper(),
        "hostname": s["sysName"],
        "pagecount": s["pagecount"],
        "display": s["display"],
        "uptime": str(round(s["sysUpTime_s"])),
        "1284_mdl": re.search(r"MDL:([^;]+);", s["hp1284"]).group(1),
    }
    info, status_page = http_page(p, "hp.DeviceInfo"), http_page(p, "hp.DeviceStatus")
    got["http"] = {
        "model": field(info, "Product Name:"),
        "serial": field(info, "Device Serial Number:"),
        "mac": field(info, "Hardware Address:").upper(),
        "hostname": field(info, "Host Name:"),
        "pagecount": field(info, "Page Count:"),
        "display": re.search(r'class="hpDisplay">([^<]*)<', status_page).group(1),
    }
    out = ipp(p, tmp_path, IPP_IDENTITY_TEST)
    got["ipp"] = {
        "model": ipp_attr(out, "printer-make-and-model"),
        "1284_mdl": re.search(r"MDL:([^;]+);", ipp_attr(out, "printer-device-id")).group(1),
        "uptime": ipp_attr(out, "printer-up-time"),
        "display": ipp_attr(out, "printer-state-message"),
    }
    return got


def agree(got: dict[str, dict[str, str]], key: str, tolerance: int = 0) -> str:
    values = {proto: v[key] for proto, v in got.items() if key in v}
    assert len(values) >= 2, key
    if tolerance:
        nums = [int(x) for x in values.values()]
        assert max(nums) - min(nums) <= tolerance, (key, values)
    else:
        assert len(set(values.values())) == 1, (key, values)
    return next(iter(values.values()))


def test_every_protocol_describes_the_same_device(printer, tmp_path):
    got = identity(printer, tmp_path)
    ident = printer.events()[0]  # sensor.start names the persona; identity comes from the state file
    assert ident["eventid"] == "honeyjet.sensor.start"
    model = agree(got, "model")
    assert model == "HP LaserJet 4250" and agree(got, "1284_mdl") == model
    agree(got, "serial")
    mac = agree(got, "mac")
    assert agree(got, "hostname") == "NPI" + mac.replace(":", "")[-6:]
    agree(got, "pagecount")
    assert agree(got, "display") == "Ready"
    agree(got, "uptime", tolerance=2)


def test_a_display_message_set_over_9100_shows_everywhere(printer, tmp_path):
    printer.query(b'\x1b%-12345X@PJL RDYMSG DISPLAY="PC LOAD LETTER"\r\n\x1b%-12345X')
    got = identity(printer, tmp_path)
    assert agree(got, "display") == "PC LOAD LETTER"


def test_a_job_over_any_port_raises_every_page_counter_alike(printer, tmp_path):
    def counters() -> dict[str, int]:
        got = identity(printer, tmp_path)
        agree(got, "pagecount")
        return {proto: int(v["pagecount"]) for proto, v in got.items() if "pagecount" in v}

    text = b"consistency check\r\n" * 70  # 70 lines: 2 pages of text
    start = counters()
    printer.query(text)  # 9100
    after_9100 = counters()
    lpd_print(printer, text)
    time.sleep(0.2)
    after_lpd = counters()
    doc = tmp_path / "doc.txt"
    doc.write_bytes(text)
    ipp(printer, tmp_path, IPP_PRINT_TEST, "-f", str(doc))
    time.sleep(0.2)
    after_ipp = counters()
    for before, after in ((start, after_9100), (after_9100, after_lpd), (after_lpd, after_ipp)):
        assert {proto: after[proto] - before[proto] for proto in after} == {proto: 2 for proto in after}
    # the PostScript identity queries are jobs too, but print nothing
    jobs = [e for e in printer.events() if e["eventid"] == "honeyjet.job.captured" and e["pages"]]
    assert [(j["protocol"], j["pages"]) for j in jobs] == [("pjl", 2), ("lpd", 2), ("ipp", 2)]


def test_consumables_read_the_same_on_the_web_and_over_snmp(printer):
    out = subprocess.run(
        [need("snmpget"), "-v2c", "-c", "public", "-On", "-Ov", f"127.0.0.1:{port(printer, 161)}",
         "1.3.6.1.2.1.43.11.1.1.6.1.1", "1.3.6.1.2.1.43.11.1.1.8.1.1", "1.3.6.1.2.1.43.11.1.1.9.1.1"],
        capture_output=True, text=True, timeout=30,
    ).stdout.splitlines()
    description = out[0].split(": ", 1)[1].strip('"')
    capacity, level = (int(line.split(": ", 1)[1]) for line in out[1:])
    page = http_page(printer, "hp.DeviceStatus")
    part = description.rsplit(" ", 1)[1]
    web = int(re.search(rf"\(HP {part}\):</div><div class=\"hpDataItemValue\">(\d+)%", page).group(1))
    assert web == max(1, level * 100 // capacity)
