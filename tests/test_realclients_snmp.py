"""SNMP acceptance with clients nobody here wrote: net-snmp's snmpget/snmpwalk/snmpbulkwalk/
snmpset, nmap (service probes, snmp-info, snmp-sysdescr) and the CUPS snmp backend. The
sensor runs as `honeyjet run` in a subprocess; answers must agree with PJL on 9100."""

from __future__ import annotations

import json
import re
import socket
import sys
import time
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

from helpers import make_device  # noqa: E402
from honeyjet.protocols.snmp import SNMPAgent  # noqa: E402
from test_realclients import SensorProcess, need, run  # noqa: E402
from test_snmp import Reply, request  # noqa: E402

pytestmark = pytest.mark.realclient

CUPS_SNMP = Path("/usr/lib/cups/backend/snmp")
OIDS = {
    "sysDescr": "1.3.6.1.2.1.1.1.0",
    "sysObjectID": "1.3.6.1.2.1.1.2.0",
    "sysName": "1.3.6.1.2.1.1.5.0",
    "ifPhysAddress": "1.3.6.1.2.1.2.2.1.6.1",
    "hrDeviceDescr": "1.3.6.1.2.1.25.3.2.1.3.1",
    "prtGeneralSerialNumber": "1.3.6.1.2.1.43.5.1.1.17.1",
    "prtMarkerLifeCount": "1.3.6.1.2.1.43.10.2.1.4.1.1",
    "prtConsoleDisplayBufferText": "1.3.6.1.2.1.43.16.5.1.2.1.1",
    "hpDeviceId": "1.3.6.1.4.1.11.2.3.9.1.1.7.0",
}
OBJECTS = len(SNMPAgent(make_device()).oids())


class SNMPSensor(SensorProcess):
    @property
    def snmp(self) -> str:
        return f"127.0.0.1:{161 + self.offset}"

    def identity(self) -> dict:
        return next(iter(json.loads((self.data_dir / "state" / "identity.json").read_text()).values()))

    def pjl(self, command: str) -> str:
        return self.query(f"@PJL {command}\r\n".encode()).decode("latin-1")

    def snmp_events(self) -> list[dict]:
        return [e for e in self.events() if e["eventid"] == "honeyjet.snmp.request"]


@pytest.fixture
def fast(tmp_path):
    """A sensor whose pacing does not slow whole-tree walks down (the default paces to 20/s)."""
    proc = SNMPSensor(tmp_path / "data", HONEYJET_SNMP__REPLIES_PER_SOURCE="5000").start()
    yield proc
    proc.stop()


@pytest.fixture
def default(tmp_path):
    proc = SNMPSensor(tmp_path / "data").start()
    yield proc
    proc.stop()


def snmp(tool: str, *args: str, timeout: float = 120) -> tuple[int, str]:
    result = run([need(tool), *args], timeout=timeout)
    return result.returncode, result.stdout + result.stderr


def snmpget_value(sensor: SNMPSensor, version: str, oid: str) -> str:
    rc, out = snmp("snmpget", f"-v{version}", "-c", "public", "-t", "2", "-r", "1", "-Oqv", sensor.snmp, oid)
    assert rc == 0, out
    value = out.strip()
    return value[1:-1] if value.startswith('"') and value.endswith('"') else value


# -- walks -----------------------------------------------------------------------------------
def test_snmpwalk_v2c_shows_the_tree_and_ends(fast):
    rc, out = snmp("snmpwalk", "-v2c", "-c", "public", "-t", "1", "-r", "0", fast.snmp, ".1")
    lines = out.strip().splitlines()
    assert rc == 0, out
    assert "No more variables left in this MIB View" in lines[-1]
    assert len(lines) == OBJECTS + 1
    assert 'iso.3.6.1.2.1.1.1.0 = STRING: "HP ETHERNET MULTI-ENVIRONMENT' in out
    assert "iso.3.6.1.2.1.1.2.0 = OID: iso.3.6.1.4.1.11.2.3.9.1" in out
    assert 'iso.3.6.1.2.1.25.3.2.1.3.1 = STRING: "HP LaserJet 4250"' in out
    print("\n".join(lines[:8] + ["…"] + lines[-3:]))


def test_snmpwalk_v1_ends(fast):
    rc, out = snmp("snmpwalk", "-v1", "-c", "public", "-t", "1", "-r", "0", fast.snmp, ".1")
    lines = [line for line in out.strip().splitlines() if line.startswith("iso.")]
    assert rc == 0, out
    assert len(lines) == OBJECTS
    assert "Timeout" not in out


def test_snmpbulkwalk_sees_the_same_objects(fast):
    rc, walk = snmp("snmpwalk", "-v2c", "-c", "public", "-On", "-t", "1", "-r", "0", fast.snmp, ".1")
    assert rc == 0, walk
    rc, bulk = snmp("snmpbulkwalk", "-v2c", "-c", "public", "-On", "-Cr50", "-t", "1", "-r", "0", fast.snmp, ".1")
    assert rc == 0, bulk
    def oids(text: str) -> list[str]:
        return [line.split(" = ")[0] for line in text.splitlines() if " = " in line and "No more variables" not in line]

    assert oids(bulk) == oids(walk) and len(oids(bulk)) == OBJECTS
    assert "No more variables left in this MIB View" in bulk.strip().splitlines()[-1]


def test_a_sequential_walk_is_paced_not_dropped_at_the_default_rate(default):
    start = time.monotonic()
    rc, out = snmp("snmpwalk", "-v2c", "-c", "public", "-t", "1", "-r", "0", default.snmp, "1.3.6.1.2.1")
    assert rc == 0 and "Timeout" not in out, out
    assert len(out.strip().splitlines()) > 100  # two seconds' worth at the default 50/s
    assert time.monotonic() - start > 1.5


# -- identity, agreeing with PJL on 9100 ----------------------------------------------------------
@pytest.mark.parametrize("version", ["1", "2c"])
def test_snmpget_identity_equals_pjl(fast, version):
    info_id = re.search(r'"([^"]+)"', fast.pjl("INFO ID")).group(1)
    display = re.search(r'DISPLAY="([^"]*)"', fast.pjl("INFO STATUS")).group(1)
    before = int(re.search(r"PAGECOUNT=(\d+)", fast.pjl("INFO PAGECOUNT")).group(1))
    got = {name: snmpget_value(fast, version, oid) for name, oid in OIDS.items()}
    after = int(re.search(r"PAGECOUNT=(\d+)", fast.pjl("INFO PAGECOUNT")).group(1))
    ident = fast.identity()
    assert got["sysDescr"].startswith("HP ETHERNET MULTI-ENVIRONMENT")
    assert got["sysObjectID"] == "iso.3.6.1.4.1.11.2.3.9.1"
    assert got["sysName"] == ident["hostname"] == "NPI" + ident["mac"].replace(":", "")[-6:]
    assert got["ifPhysAddress"].split() == ident["mac"].split(":")
    assert got["hrDeviceDescr"] == info_id == "HP LaserJet 4250"
    assert got["prtGeneralSerialNumber"] == ident["serial"]
    assert before <= int(got["prtMarkerLifeCount"]) <= after
    assert got["prtConsoleDisplayBufferText"] == display
    assert f"MDL:{info_id};" in got["hpDeviceId"] and got["hpDeviceId"].startswith("MFG:Hewlett-Packard;")


def test_rdymsg_and_a_print_job_on_9100_show_in_snmp(fast):
    fast.query(b'@PJL RDYMSG DISPLAY="SNMP SEES THIS"\r\n')
    assert snmpget_value(fast, "2c", OIDS["prtConsoleDisplayBufferText"]) == "SNMP SEES THIS"
    assert snmpget_value(fast, "1", OIDS["prtConsoleDisplayBufferText"]) == "SNMP SEES THIS"
    before = int(snmpget_value(fast, "2c", OIDS["prtMarkerLifeCount"]))
    fast.query(b"\x1b%-12345X@PJL JOB\r\n@PJL ENTER LANGUAGE = POSTSCRIPT\r\n%!PS-Adobe-3.0\n%%Pages: 3\nshowpage showpage showpage\n\x1b%-12345X@PJL EOJ\r\n\x1b%-12345X")
    pjl = fast.pagecount()
    snmp_count = int(snmpget_value(fast, "2c", OIDS["prtMarkerLifeCount"]))
    assert snmp_count == pjl >= before + 3


# -- communities and SET ------------------------------------------------------------------------
def test_wrong_community_times_out_and_is_recorded(fast):
    rc, out = snmp("snmpget", "-v2c", "-c", "wrong", "-t", "1", "-r", "0", fast.snmp, OIDS["sysName"])
    assert rc != 0 and "Timeout" in out, out
    rc, out = snmp("snmpget", "-v1", "-c", "wrong", "-t", "1", "-r", "0", fast.snmp, OIDS["sysName"])
    assert rc != 0 and "Timeout" in out, out
    fast.stop()
    bad = [e for e in fast.snmp_events() if e["community"] == "wrong"]
    assert len(bad) == 2 and all(e["community_ok"] is False and e["replied"] is False for e in bad)
    assert {e["version"] for e in bad} == {"1", "2c"} and bad[0]["oids"] == [OIDS["sysName"]]


def test_snmpset_gets_the_declared_error_and_is_recorded(fast):
    rc, out = snmp("snmpset", "-v2c", "-c", "public", "-t", "1", "-r", "0", fast.snmp, OIDS["sysName"], "s", "owned")
    assert rc != 0 and "noAccess" in out, out
    rc, out = snmp("snmpset", "-v1", "-c", "public", "-t", "1", "-r", "0", fast.snmp, OIDS["sysName"], "s", "owned")
    assert rc != 0 and "noSuchName" in out, out
    rc, out = snmp("snmpset", "-v2c", "-c", "private", "-t", "1", "-r", "0", fast.snmp, "1.3.6.1.2.1.1.6.0", "s", "lab")
    assert rc != 0 and "Timeout" in out, out
    fast.stop()
    sets = [e for e in fast.snmp_events() if e["pdu"] == "set"]
    assert [(e["version"], e["error_status"], e["replied"]) for e in sets] == [("2c", 6, True), ("1", 2, True), ("2c", 0, False)]
    assert sets[0]["values"] == [[OIDS["sysName"], "owned"]] and sets[2]["values"] == [["1.3.6.1.2.1.1.6.0", "lab"]]


def test_snmpv3_clients_meet_an_hp_engine_with_no_users(fast):
    rc, out = snmp("snmpget", "-v3", "-l", "authNoPriv", "-u", "admin", "-a", "SHA", "-A", "password1", "-t", "1", "-r", "0",
                   fast.snmp, OIDS["sysName"])
    assert rc != 0 and "Unknown user name" in out, out
    fast.stop()
    v3 = [e for e in fast.snmp_events() if e["version"] == "3"]
    assert len(v3) == 2 and all(e["replied"] for e in v3)  # discovery, then the request for "admin"
    assert "user 'admin'" in [e for e in fast.events() if e["eventid"] == "honeyjet.snmp.request"][-1]["message"]


# -- nmap ------------------------------------------------------------------------------------
def test_nmap_version_scan_and_scripts_see_an_hp_agent(default):
    nmap = need("nmap")
    port = str(161 + default.offset)
    out = run([nmap, "-Pn", "-n", "-sU", "-sV", "-p", port, "--script", "snmp-info,snmp-sysdescr", "127.0.0.1"], timeout=240).stdout
    print(out)
    hostname = default.identity()["hostname"]
    assert re.search(rf"{port}/udp\s+open\s+snmp\s+SNMPv1 server; Hewlett-Packard SNMPv3 server \(public\)", out), out
    assert "| snmp-sysdescr: HP ETHERNET MULTI-ENVIRONMENT,ROM none,JETDIRECT,JD128,EEPROM V.28.59,CIDATE 05/10/2005" in out
    assert "System uptime:" in out
    assert "|   enterprise: Hewlett-Packard" in out and "engineIDFormat: mac" in out
    assert f"engineIDData: {default.identity()['mac'].replace(':', '').lower()}" in out
    assert "SNMP Laboratories" not in out and "net-snmp" not in out
    assert f"Service Info: Host: {hostname}" in out


# -- rate and size bounds ------------------------------------------------------------------------
def test_a_burst_gets_at_most_the_rate_and_the_limit_is_recorded(default):
    host, port = default.snmp.split(":")
    rate = 50  # the packaged default of snmp.replies_per_source
    burst = [request(1, "getbulk", [(1, 3, 6)], maxrep=1000, reqid=i) for i in range(200)]
    replies: list[tuple[float, bytes]] = []
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.connect((host, int(port)))
        s.settimeout(0.05)
        start = time.monotonic()
        for datagram in burst:
            s.send(datagram)
        while time.monotonic() - start < 2.5:
            try:
                data = s.recv(65535)
            except socket.timeout:
                continue
            replies.append((time.monotonic() - start, data))  # the time it arrived, not when recv began
    first_second = [t for t, _ in replies if t < 1.0]
    assert 0 < len(first_second) <= rate, [(round(t, 3), Reply(d, 1).request_id) for t, d in replies]
    assert len(replies) <= 2 * rate + 1
    assert all(len(d) <= 1472 for _, d in replies)
    assert Reply(replies[0][1], 1).varbinds  # a full GETBULK answer, cut to fit
    default.stop()
    hits = [e for e in default.events() if e["eventid"] == "honeyjet.limit.hit" and e["protocol"] == "snmp"]
    assert len(hits) == 1 and hits[0]["limit"] == "replies_per_source" and hits[0]["value"] == rate
    stop = [e for e in default.events() if e["eventid"] == "honeyjet.sensor.stop"][0]
    assert stop["counters"]["limit_replies_per_source"] >= 200 - 2 * rate - 1


# -- the standard ports: nmap's scripts without -sV, and the CUPS snmp backend --------------------
def _udp_161_bindable() -> str:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        try:
            s.bind(("127.0.0.1", 161))
        except PermissionError:
            return "binding UDP 161 needs root or CAP_NET_BIND_SERVICE"
        except OSError:
            return "127.0.0.1:161/udp is in use"
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(("127.0.0.1", 9100))
        except OSError:
            return "127.0.0.1:9100 is in use"
    return ""


@pytest.fixture
def standard(tmp_path):
    why = _udp_161_bindable()
    if why:
        pytest.fail(f"{why}: the standard-port SNMP tests need it (run as root, as CI does)")
    proc = SNMPSensor(tmp_path / "data", port=9100, HONEYJET_HTTP__ENABLED="false", HONEYJET_IPP__ENABLED="false",
                      HONEYJET_LPD__ENABLED="false").start()
    yield proc
    proc.stop()


def test_on_udp_161_nmap_scripts_and_cups_discovery(standard):
    nmap = need("nmap")
    out = run([nmap, "-Pn", "-n", "-sU", "-p", "161", "--script", "snmp-info,snmp-sysdescr", "127.0.0.1"], timeout=120).stdout
    print(out)
    assert re.search(r"161/udp\s+open\s+snmp", out), out
    assert "|   enterprise: Hewlett-Packard" in out
    assert "| snmp-sysdescr: HP ETHERNET MULTI-ENVIRONMENT" in out
    assert CUPS_SNMP.exists(), "CUPS snmp backend missing: .ci/run installs the cups package"
    result = run([str(CUPS_SNMP), "127.0.0.1"], timeout=60)
    print(result.stdout)
    assert result.returncode == 0, result.stderr
    assert 'network socket://127.0.0.1 "HP LaserJet 4250" "HP LaserJet 4250" "MFG:Hewlett-Packard;' in result.stdout
