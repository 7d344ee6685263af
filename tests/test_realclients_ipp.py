"""IPP acceptance with clients nobody here wrote: ipptool and its conformance files, the CUPS
ipp backend, nmap -sV and its cups-info/cups-queue-info scripts, PRET's probe bytes.
The sensor runs as `honeyjet run` in a subprocess; IPP listens on 631 + offset."""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import subprocess
import time
from pathlib import Path

import pytest
from helpers import ghostscript_page, tcp_exchange
from test_realclients import SensorProcess, need, run

pytestmark = pytest.mark.realclient

IPP_BACKEND = Path("/usr/lib/cups/backend/ipp")
TESTS = Path("/usr/share/cups/ipptool")
PRET_BODY = (
    b"\x01\x01\x00\x0b\x00\x01\xab\x10\x01G\x00\x12attributes-charset\x00\x05utf-8H\x00\x1battributes-natural-language"
    b"\x00\x02enE\x00\x0bprinter-uri\x00\x14ipp://localhost/ipp/D\x00\x14requested-attributes\x00\x13printer-description\x03"
)


@pytest.fixture
def sensor(tmp_path):
    proc = SensorProcess(tmp_path / "data").start()
    yield proc
    proc.stop()


@pytest.fixture(scope="module")
def job_ps(tmp_path_factory) -> Path:
    return ghostscript_page(tmp_path_factory.mktemp("ipp") / "job.ps", "honeyjet ipp test page")


def ipp_port(sensor: SensorProcess) -> int:
    return 631 + sensor.offset


def uri(sensor: SensorProcess, path: str = "/ipp") -> str:
    return f"ipp://127.0.0.1:{ipp_port(sensor)}{path}"


def ipptool(sensor: SensorProcess, test: str, *args: str, path: str = "/ipp", job: Path | None = None) -> subprocess.CompletedProcess:
    tool = need("ipptool")
    assert (TESTS / test).exists(), f"{TESTS / test} missing: .ci/run installs cups-ipp-utils"
    extra = ["-f", str(job), "-d", "filetype=application/postscript"] if job else []
    return run([tool, "-T", "20", "-t", *args, *extra, uri(sensor, path), test], timeout=180)


def captured(sensor: SensorProcess, count: int = 1) -> dict[str, dict]:
    """Captured jobs by sha256 (the JSON log is written a loop tick after the reply: wait for it)."""
    deadline = time.monotonic() + 5
    while True:
        jobs = {e["shasum"]: e for e in sensor.events() if e["eventid"] == "honeyjet.job.captured"}
        if len(jobs) >= count or time.monotonic() > deadline:
            return jobs
        time.sleep(0.05)


def ipp_events(sensor: SensorProcess, until=lambda events: bool(events)) -> list[dict]:
    """The IPP request events, once ``until(events)`` holds (or after 5 s): the JSON log is
    written a loop tick after the reply went out."""
    deadline = time.monotonic() + 5
    while True:
        events = [e for e in sensor.events() if e["eventid"] == "honeyjet.ipp.request"]
        if until(events) or time.monotonic() > deadline:
            return events
        time.sleep(0.05)


def test_ipptool_ipp11_conformance_passes_negative_tests_included(sensor, job_ps):
    result = ipptool(sensor, "ipp-1.1.test", job=job_ps)
    out = result.stdout
    assert result.returncode == 0, out + result.stderr
    assert re.search(r"Summary: \d+ tests, \d+ passed, 0 failed", out), out
    for name in ("Bad request-id value 0", "No Operation Attributes", "Unsupported IPP version 0.0",
                 "No printer-uri operation attribute", "Print-Job Operation", "Cancel-Job Operation (completed job)",
                 "Send-Document missing last-document: Send-Document Operation"):
        assert re.search(re.escape(name) + r".*\[PASS\]", out), (name, out)
    # every Print-Job/Send-Document document was stored byte-exact
    doc = hashlib.sha256(job_ps.read_bytes()).hexdigest()
    captured(sensor, 4)
    jobs = [e for e in sensor.events() if e["eventid"] == "honeyjet.job.captured"]
    assert jobs and {j["shasum"] for j in jobs} == {doc}
    assert (sensor.data_dir / "artifacts" / doc).read_bytes() == job_ps.read_bytes()
    assert {j["language"] for j in jobs} == {"postscript"}


def test_ipptool_print_job_stores_the_document_and_the_page_count_rises(sensor, job_ps):
    before = sensor.pagecount()
    result = ipptool(sensor, "print-job.test", job=job_ps)
    assert result.returncode == 0, result.stdout + result.stderr
    (job,) = captured(sensor).values()
    assert (sensor.data_dir / "artifacts" / job["shasum"]).read_bytes() == job_ps.read_bytes()
    assert job["protocol"] == "ipp" and job["ended_by"] == "document"
    assert sensor.pagecount() > before
    # and Get-Job-Attributes sent to that job's own URI finds it
    result = ipptool(sensor, "get-job-attributes.test", path=f"/ipp/{job['job']}")
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize("test", ["validate-job.test", "create-job.test", "get-jobs.test", "print-job-and-wait.test"])
def test_ipptool_job_tests_pass(sensor, job_ps, test):
    result = ipptool(sensor, test, job=job_ps)
    assert result.returncode == 0, result.stdout + result.stderr
    if test in ("create-job.test", "print-job-and-wait.test"):
        (job,) = captured(sensor).values()
        assert (sensor.data_dir / "artifacts" / job["shasum"]).read_bytes() == job_ps.read_bytes()


def test_ipptool_get_printer_attributes_ipp2_is_refused_as_by_an_ipp11_printer(sensor):
    # get-printer-attributes.test forces IPP/2.0; this JetDirect-era persona speaks 1.0/1.1
    result = ipptool(sensor, "get-printer-attributes.test")
    assert result.returncode != 0
    assert "server-error-version-not-supported" in result.stdout, result.stdout
    (event,) = ipp_events(sensor)
    assert event["ipp_version"] == "2.0" and event["ipp_status"] == "server-error-version-not-supported"


def test_ipptool_get_printer_attributes_ipp2_passes_with_an_ipp2_persona(tmp_path):
    src = Path(__file__).resolve().parents[1] / "src" / "honeyjet" / "persona" / "data" / "hp-laserjet-4250"
    persona = tmp_path / "persona"
    shutil.copytree(src, persona, ignore=shutil.ignore_patterns("__pycache__", "*.py"))
    text = (persona / "ipp.toml").read_text().replace('values = ["1.0", "1.1"]', 'values = ["1.0", "1.1", "2.0"]')
    text += (
        '\n[[ipp.printer_attributes]]\nname = "media-col-default"\ntype = "collection"\n'
        'values = [{members = [{name = "media-size", type = "collection", values = [{members = ['
        '{name = "x-dimension", type = "integer", values = [21590]}, {name = "y-dimension", type = "integer", values = [27940]}]}]},'
        ' {name = "media-source", type = "keyword", values = ["auto"]}]}]\n'
    )
    (persona / "ipp.toml").write_text(text)
    proc = SensorProcess(tmp_path / "data", HONEYJET_SENSOR__PERSONA=str(persona)).start()
    try:
        result = ipptool(proc, "get-printer-attributes.test")
        assert result.returncode == 0, result.stdout + result.stderr
    finally:
        proc.stop()


def test_cups_ipp_backend_prints_a_job_stored_byte_exact(sensor, job_ps):
    assert IPP_BACKEND.exists(), "CUPS ipp backend missing: .ci/run installs the cups package"
    env = dict(os.environ, DEVICE_URI=uri(sensor), CUPS_SERVERBIN="/usr/lib/cups", CONTENT_TYPE="application/postscript")
    result = run([str(IPP_BACKEND), "1", "tester", "title", "1", "", str(job_ps)], timeout=120, env=env)
    assert result.returncode == 0, result.stderr[-4000:]
    log = result.stderr
    # IPP/2.0 first, refused, then IPP/1.1, as CUPS does with older printers
    assert "does not support IPP/2.0, trying IPP/1.1" in log, log[-4000:]
    (job,) = captured(sensor).values()
    assert (sensor.data_dir / "artifacts" / job["shasum"]).read_bytes() == job_ps.read_bytes()
    assert job["user"] == "tester" and job["name"] == "title" and job["language"] == "postscript"
    ops = [e["operation"] for e in ipp_events(sensor, lambda evs: any(e.get("operation") == "Get-Job-Attributes" for e in evs))]
    assert "Create-Job" in ops or "Print-Job" in ops
    assert "Get-Job-Attributes" in ops  # it waited for the job to be reported completed
    assert all(e["ipp_status"] in ("successful-ok", "server-error-version-not-supported") for e in ipp_events(sensor))


def test_nmap_version_scan_gets_an_answer(sensor):
    nmap = need("nmap")
    port = ipp_port(sensor)
    out = run([nmap, "-Pn", "-n", "-sV", "-p", str(port), "127.0.0.1"], timeout=180).stdout
    # nmap's HP JetDirect Virata-EmWeb match (nmap-service-probes 6587)
    assert re.search(rf"{port}/tcp\s+open\s+http\s+Virata-EmWeb 6\.2\.1 \(HP LaserJet http config\)", out), out
    assert "Device: printer" in out, out
    reqs = ipp_events(sensor)
    # GetRequest, HTTPOptions, the http-* probes, the SOAP POST /sdk: all get the web reply
    assert reqs and all(e["status"] == 301 and "operation" not in e for e in reqs), reqs
    assert not [e for e in sensor.events() if e["eventid"] == "honeyjet.session.closed" and e["reason"] == "error"]


def test_nmap_cups_scripts_get_what_an_hp_gives(sensor, tmp_path):
    nmap = need("nmap")
    port = ipp_port(sensor)
    # cups-info's portrule wants port 631 or service "ipp": name the offset port ipp for nmap
    datadir = tmp_path / "nmapdata"
    datadir.mkdir()
    services = Path("/usr/share/nmap/nmap-services").read_text().splitlines()
    services = [line for line in services if not line.startswith("ipp\t")] + [f"ipp\t{port}/tcp\t0.5\t# honeyjet test"]
    (datadir / "nmap-services").write_text("\n".join(services) + "\n")
    out = run([nmap, "-Pn", "-n", "-p", str(port), "--datadir", str(datadir), "--script", "cups-info,cups-queue-info",
               "127.0.0.1"], timeout=120).stdout
    assert re.search(rf"{port}/tcp\s+open\s+ipp", out), out
    assert "cups-info" not in out and "cups-queue-info" not in out, out  # nothing to print, as for an HP
    reqs = ipp_events(sensor, lambda evs: any(e.get("operation") == "CUPS-Get-Printers" for e in evs))
    cups = [e for e in reqs if e.get("operation") == "CUPS-Get-Printers"]
    assert cups and all(e["ipp_status"] == "server-error-operation-not-supported" and e["status"] == 200 for e in cups)
    assert cups[0]["user_agent"] == "CUPS/1.5.1"


def _http(port: int, raw: bytes) -> bytes:
    return tcp_exchange(port, raw)


def test_pret_style_probe_post_and_get_with_body(sensor):
    port = ipp_port(sensor)
    for method, ua in (("POST", "Python-urllib/2.7"), ("GET", "python-requests/2.31.0")):
        raw = (f"{method} / HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUser-Agent: {ua}\r\nContent-Type: application/ipp\r\n"
               f"Content-Length: {len(PRET_BODY)}\r\nConnection: close\r\n\r\n").encode() + PRET_BODY
        reply = _http(port, raw)
        assert reply.startswith(b"HTTP/1.1 200 OK\r\n"), reply[:200]
        assert re.search(rb"MDL:(.+?);", reply).group(1) == b"HP LaserJet 4250"
        assert re.search(rb"CMD:(.+?);", reply).group(1) == b"PJL,MLC,BIDI-ECP,PCL,POSTSCRIPT,PCLXL"
    events = ipp_events(sensor, lambda evs: len(evs) >= 2)
    assert [(e["method"], e["operation"], e["request_id"]) for e in events] == [
        ("POST", "Get-Printer-Attributes", 0x0001AB10), ("GET", "Get-Printer-Attributes", 0x0001AB10)]
