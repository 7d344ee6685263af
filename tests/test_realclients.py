"""Acceptance with clients nobody here wrote: nmap, its NSE scripts, the CUPS socket backend,
Ghostscript, PRET. The sensor runs as a separate process, exactly as an operator starts it."""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from conftest import free_offset
from helpers import ghostscript_page, tcp_exchange

pytestmark = pytest.mark.realclient

ID_PROBE = b"\x1b%-12345X@PJL INFO ID\r\n\x1b%-12345X\r\n"
CUPS_SOCKET = Path("/usr/lib/cups/backend/socket")


def need(tool: str) -> str:
    path = shutil.which(tool)
    assert path, f"{tool} is not installed: .ci/run installs it (apt)"
    return path


class SensorProcess:
    """`honeyjet run` in a subprocess on 127.0.0.1 with a free port."""

    def __init__(self, data_dir: Path, port: int | None = None, **env: str):
        self.data_dir = data_dir
        self.offset = port - 9100 if port else free_offset()
        self.port = 9100 + self.offset
        # tests keep the runner's user (root in CI); test_privileges checks the drop itself
        self.env = dict(os.environ, **{"HONEYJET_SENSOR__USER": "", **env})
        self.proc: subprocess.Popen | None = None

    def start(self) -> "SensorProcess":
        cmd = [
            sys.executable, "-m", "honeyjet", "--log-level", "WARNING", "run",
            "--data-dir", str(self.data_dir), "--bind", "127.0.0.1", "--port-offset", str(self.offset),
        ]
        self.proc = subprocess.Popen(cmd, env=self.env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        # ready = serving: the sensor.start event is written after every listener serves
        log = self.data_dir / "log" / "honeyjet.json"
        seen = log.stat().st_size if log.exists() else 0
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(f"sensor exited: {self.proc.stderr.read().decode()}")
            with contextlib.suppress(OSError):
                with open(log, "rb") as fh:
                    fh.seek(seen)
                    if b'"honeyjet.sensor.start"' in fh.read():
                        return self
            time.sleep(0.05)
        raise AssertionError("sensor did not start serving")

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                raise AssertionError("sensor did not stop on SIGTERM")
            assert self.proc.returncode == 0, self.proc.stderr.read().decode()

    def events(self) -> list[dict]:
        """The JSON log once it has settled: the sensor batches its writes (every 20 ms), so
        wait until the file stops growing (or the sensor has stopped)."""
        path = self.data_dir / "log" / "honeyjet.json"
        running = self.proc is not None and self.proc.poll() is None
        size, deadline = -1, time.monotonic() + 3
        while running and time.monotonic() < deadline:
            time.sleep(0.06)
            now = path.stat().st_size
            if now == size:
                break
            size = now
        return [json.loads(line) for line in path.read_text().splitlines()]

    def query(self, payload: bytes, timeout: float = 3.0) -> bytes:
        return tcp_exchange(self.port, payload, timeout=timeout)

    def pagecount(self) -> int:
        reply = self.query(b"@PJL INFO PAGECOUNT\r\n")
        return int(re.search(rb"PAGECOUNT=(\d+)", reply).group(1))


@pytest.fixture
def sensor(tmp_path):
    proc = SensorProcess(tmp_path / "data").start()
    yield proc
    proc.stop()


@pytest.fixture
def sensor9100(tmp_path):
    """The sensor on the real JetDirect port: nmap treats 9100-9107 specially (hp-pjl probe
    first under --allports; pjl-ready-message's portrule), so the acceptance runs there."""
    with socket.socket() as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind(("127.0.0.1", 9100))
        except OSError:
            pytest.fail("127.0.0.1:9100 is in use; the nmap acceptance tests need it free")
    proc = SensorProcess(tmp_path / "data", port=9100, HONEYJET_HTTP__ENABLED="false", HONEYJET_IPP__ENABLED="false",
                         HONEYJET_LPD__ENABLED="false", HONEYJET_SNMP__ENABLED="false").start()
    yield proc
    proc.stop()


def run(cmd: list[str], timeout: float = 240, **kw) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, **kw)


def test_nmap_version_detection_sees_an_hp_laserjet(sensor9100):
    nmap = need("nmap")
    out = run([nmap, "-Pn", "-n", "-sV", "--version-all", "--allports", "-p", "9100", "127.0.0.1"], timeout=120).stdout
    assert re.search(r"9100/tcp\s+open\s+hp-pjl\s+HP LaserJet 4250", out), out
    assert "Service Info: Device: printer" in out, out
    # nmap's other probes were taken as print jobs and the service stayed up
    assert sensor9100.query(ID_PROBE) == b'@PJL INFO ID\r\n"HP LaserJet 4250"\r\n\x0c'


def test_nmap_pjl_ready_message_reads_and_sets_the_display(sensor9100):
    nmap = need("nmap")
    base = [nmap, "-Pn", "-n", "-p", "9100", "127.0.0.1", "--script", "pjl-ready-message"]
    out = run(base, timeout=60).stdout
    assert '|_pjl-ready-message: "Ready"' in out, out
    out = run(base + ["--script-args", "pjl_ready_message=HACKED BY NSE"], timeout=60).stdout
    assert "HACKED BY NSE" in out, out
    # a new connection sees it …
    assert b'DISPLAY="HACKED BY NSE"' in sensor9100.query(b"@PJL INFO STATUS\r\n")
    # … and so does one after a restart
    sensor9100.stop()
    again = SensorProcess(sensor9100.data_dir, port=9100, **{k: v for k, v in sensor9100.env.items() if k.startswith("HONEYJET_")}).start()
    try:
        assert b'DISPLAY="HACKED BY NSE"' in again.query(b"@PJL INFO STATUS\r\n")
        out = run(base, timeout=60).stdout
        assert '|_pjl-ready-message: "HACKED BY NSE"' in out, out
    finally:
        again.stop()


def _cups_socket_print(port: int, path: Path) -> subprocess.CompletedProcess:
    assert CUPS_SOCKET.exists(), "CUPS socket backend missing: .ci/run installs the cups package"
    env = dict(os.environ, DEVICE_URI=f"socket://127.0.0.1:{port}", CUPS_SERVERBIN="/usr/lib/cups")
    return run([str(CUPS_SOCKET), "1", "tester", "honeyjet-test", "1", "", str(path)], timeout=60, env=env)


def test_cups_socket_backend_delivers_ghostscript_ps_and_text(sensor, tmp_path):
    ps = ghostscript_page(tmp_path / "doc.ps", "honeyjet test page")
    text = tmp_path / "note.txt"
    text.write_bytes(b"Quarterly report\r\nRevenue up 4%\r\n\x0c" * 3)
    before = sensor.pagecount()
    for path in (ps, text):
        result = _cups_socket_print(sensor.port, path)
        assert result.returncode == 0, result.stderr
    after = sensor.pagecount()
    assert after > before
    jobs = [e for e in sensor.events() if e["eventid"] == "honeyjet.job.captured"]
    stored = {(sensor.data_dir / "artifacts" / j["shasum"]).read_bytes() for j in jobs}
    assert ps.read_bytes() in stored and text.read_bytes() in stored
    langs = {j["shasum"]: j["language"] for j in jobs}
    import hashlib

    assert langs[hashlib.sha256(ps.read_bytes()).hexdigest()] == "postscript"
    # the document itself provoked no PostScript error replies
    assert not [e for e in sensor.events() if e["eventid"] == "honeyjet.ps.error"]


PRET_DIR = os.environ.get("HONEYJET_PRET_DIR", "")


@pytest.mark.skipif(not PRET_DIR, reason="set HONEYJET_PRET_DIR to a PRET checkout (fetched, never committed) to run")
def test_pret_pjl_session_gets_answers(sensor, tmp_path):
    cmds = tmp_path / "cmds.txt"
    cmds.write_text("id\ninfo status\nls\nenv\npagecount\nexit\n")
    result = run(
        [os.environ.get("HONEYJET_PRET_PYTHON", sys.executable), "pret.py", "-q", f"127.0.0.1:{sensor.port}", "pjl", "-i", str(cmds)],
        cwd=PRET_DIR, stdin=subprocess.DEVNULL, timeout=120,
    )
    out = result.stdout
    assert "No data received" not in out, out
    assert "HP LaserJet 4250" in out, out
    assert "PJL" in out and "webServer" in out, out
    # and the analysis names the tool and what it did
    deadline = time.monotonic() + 10
    while True:
        verdicts = [e for e in sensor.events() if e["eventid"] == "honeyjet.verdict.session" and e["service"] == "pjl"]
        if verdicts or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    classes = {c for v in verdicts for c in v["classes"]}
    assert {"pret_session", "fs_enumeration", "pjl_info_enumeration"} <= classes, verdicts
    assert any("HJ-PJL-010" in v["rules"] for v in verdicts), verdicts
