"""The new built-in personas against clients nobody here wrote: nmap version detection on the
TCP ports (web server family, `Device: printer`), nmap's SNMP probes and scripts, and net-snmp's
snmpget. Each persona runs as `honeyjet run` in its own subprocess; the scans run side by side
(an nmap -sV of a port that swallows every probe, 9100, takes close to three minutes)."""

from __future__ import annotations

import json
import re
import subprocess

import pytest
from test_realclients import SensorProcess, need, run

from honeyjet.persona.model import load_persona, render

pytestmark = pytest.mark.realclient

NEW = ["hp-laserjet-m506", "brother-hl-l5100dn", "kyocera-ecosys-m2040dn"]

# what nmap 7.93 prints for the web server (nmap-service-probes lines 6600, 6775, 8827)
NMAP_HTTP = {
    "hp-laserjet-m506": r"http\s+HP LaserJet M506 printer http config \(Serial {serial}\)",
    "brother-hl-l5100dn": r"http\s+Debut embedded httpd 1\.20 \(Brother/HP printer http admin\)",
    "kyocera-ecosys-m2040dn": r"http\s+Kyocera MFP httpd 0\.0\.1",
}
# the enterprise nmap reads from the SNMPv3 engine ID (nselib/data/enterprise_numbers.txt)
NMAP_SNMP = {
    "hp-laserjet-m506": "Hewlett-Packard",
    "brother-hl-l5100dn": "Brother Industries, Ltd.",
    "kyocera-ecosys-m2040dn": "KYOCERA Corporation",
}
SYS_OBJECT_ID = {
    "hp-laserjet-m506": "1.3.6.1.4.1.11.2.3.9.1",
    "brother-hl-l5100dn": "1.3.6.1.4.1.2435.2.3.9.1",
    "kyocera-ecosys-m2040dn": "1.3.6.1.4.1.1347.41",
}


def identity(sensor: SensorProcess) -> dict:
    return next(iter(json.loads((sensor.data_dir / "state" / "identity.json").read_text()).values()))


@pytest.fixture(scope="module")
def scans(tmp_path_factory):
    """Three sensors, one per persona, each scanned by `nmap -sV` (TCP) and `nmap -sU -sV`
    with the SNMP scripts, all at once."""
    nmap = need("nmap")
    sensors: dict[str, SensorProcess] = {}
    procs: dict[tuple[str, str], subprocess.Popen] = {}
    try:
        for pid in NEW:
            sensors[pid] = SensorProcess(tmp_path_factory.mktemp(pid) / "data", HONEYJET_SENSOR__PERSONA=pid).start()
        for pid, s in sensors.items():
            tcp = ",".join(str(p + s.offset) for p in (80, 515, 631, 9100))
            procs[(pid, "tcp")] = subprocess.Popen([nmap, "-Pn", "-n", "-sV", "-p", tcp, "127.0.0.1"],
                                                   stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
            procs[(pid, "udp")] = subprocess.Popen(
                [nmap, "-Pn", "-n", "-sU", "-sV", "-p", str(161 + s.offset), "--script", "snmp-info,snmp-sysdescr", "127.0.0.1"],
                stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        results = {key: p.communicate(timeout=360)[0] for key, p in procs.items()}
        yield sensors, results
    finally:
        for p in procs.values():
            if p.poll() is None:
                p.kill()
        for s in sensors.values():
            s.stop()


def _port_line(out: str, port: int) -> str:
    m = re.search(rf"^{port}/(?:tcp|udp)\s+open\s+.*$", out, re.MULTILINE)
    assert m, out
    return m.group(0)


@pytest.mark.parametrize("pid", NEW)
def test_nmap_names_the_vendor_web_server_and_a_printer(pid, scans):
    sensors, results = scans
    sensor, out = sensors[pid], results[(pid, "tcp")]
    serial = identity(sensor)["serial"]
    web = _port_line(out, 80 + sensor.offset)
    print(f"\n{pid}: {web}")
    assert re.search(NMAP_HTTP[pid].format(serial=re.escape(serial)) + "$", web), out
    assert "Service Info: Device: printer" in out, out
    # LPD: nmap's LPDString probe gets the one NUL byte network printers send
    assert re.search(r"\s+printer\s*$", _port_line(out, 515 + sensor.offset)), out
    # 9100 swallows every probe as print data and stays open
    _port_line(out, 9100 + sensor.offset)
    assert sensor.query(b"\x1b%-12345X@PJL INFO ID\r\n\x1b%-12345X\r\n").startswith(b"@PJL INFO ID\r\n\"")


@pytest.mark.parametrize("pid", NEW)
def test_nmap_snmp_probes_and_scripts_see_the_vendor(pid, scans):
    sensors, results = scans
    sensor, out = sensors[pid], results[(pid, "udp")]
    line = _port_line(out, 161 + sensor.offset)
    print(f"\n{pid}: {line}")
    assert f"{NMAP_SNMP[pid]} SNMPv3 server (public)" in line, out
    assert f"enterprise: {NMAP_SNMP[pid]}" in out and "engineIDFormat: mac" in out, out
    mac = identity(sensor)["mac"].replace(":", "").lower()
    assert f"engineIDData: {mac}" in out, out
    # the SNMPv1public probe reads sysName: nmap's "Service Info: Host" is the persona's host name
    assert f"Host: {identity(sensor)['hostname']}" in out, out


@pytest.mark.parametrize("pid", NEW)
def test_snmpget_sysdescr_and_sysobjectid(pid, scans):
    sensors, _ = scans
    sensor = sensors[pid]
    snmpget = need("snmpget")
    target = f"127.0.0.1:{161 + sensor.offset}"
    shown = run([snmpget, "-v2c", "-c", "public", "-t", "2", "-r", "1", target, "1.3.6.1.2.1.1.1.0", "1.3.6.1.2.1.1.2.0"], timeout=60)
    assert shown.returncode == 0, shown.stderr
    print(f"\n{pid}:\n{shown.stdout}")
    values = run([snmpget, "-v2c", "-c", "public", "-t", "2", "-r", "1", "-Oqvn", target, "1.3.6.1.2.1.1.1.0", "1.3.6.1.2.1.1.2.0"],
                 timeout=60).stdout.splitlines()
    descr, object_id = values[0].strip('"'), values[1].lstrip(".")
    assert object_id == SYS_OBJECT_ID[pid]
    # sysDescr is the persona's network description, as PJL/HTTP/IPP know the same device
    device = load_persona(pid).device
    assert descr == render(device.network_description, {"firmware": device.firmware, "firmware_datecode": device.firmware_datecode})
