"""LPD acceptance with clients nobody here wrote: nmap -sV and the CUPS lpd backend (both
file orders, a text file and a Ghostscript PostScript file), plus a plain-socket RFC 1179
client for the queue-state and remove commands no installed client speaks (cups-client's
lpr/lpq speak IPP; the BSD `lpr` package needs a local spooler on the fixed port 515).

The sensor runs as a separate process (`honeyjet run`) with only the 9100 and 515 services
(9100 to read the page counter), so these tests depend on nothing else being finished."""

from __future__ import annotations

import hashlib
import os
import re
import subprocess
from pathlib import Path

import pytest

from helpers import corpus, ghostscript_page, make_device, split_at, tcp_exchange
from honeyjet.protocols.lpd import LPDEngine
from honeyjet.protocols.outputs import Send
from test_realclients import SensorProcess, need, run

pytestmark = pytest.mark.realclient

CUPS_LPD = Path("/usr/lib/cups/backend/lpd")
TITLE = "honeyjet lpd test"


@pytest.fixture
def sensor(tmp_path):
    proc = SensorProcess(
        tmp_path / "data", HONEYJET_HTTP__ENABLED="false", HONEYJET_IPP__ENABLED="false", HONEYJET_SNMP__ENABLED="false"
    ).start()
    proc.lpd_port = 515 + proc.offset
    yield proc
    proc.stop()


def lpd(port: int, payload: bytes, *, chunks: list[bytes] | None = None, timeout: float = 5.0) -> bytes:
    """Send (in separate writes when chunked), half-close, read until the server closes."""
    return tcp_exchange(port, chunks or [payload], timeout=timeout)


def test_nmap_service_detection_says_printer(sensor):
    nmap = need("nmap")
    port = sensor.lpd_port
    out = run([nmap, "-Pn", "-n", "-sV", "-p", str(port), "127.0.0.1"], timeout=180).stdout
    line = next((ln for ln in out.splitlines() if ln.startswith(f"{port}/tcp")), "")
    # nmap's LPDString probe (\x01default\n) got one NUL byte: `match printer m|^\0$|`, no product
    assert re.fullmatch(rf"{port}/tcp\s+open\s+printer\s*", line), out
    assert lpd(port, b"\x01default\n") == b"\x00"


def _cups_lpd(port: int, path: Path, job: int, *options: str) -> subprocess.CompletedProcess:
    assert CUPS_LPD.exists(), "CUPS lpd backend missing: .ci/run installs the cups package"
    # Debian installs it 0744 (CUPS runs it as root to bind a privileged source port)
    assert os.access(CUPS_LPD, os.X_OK), f"{CUPS_LPD} is only executable by root: run the real-client tests as root"
    query = "&".join(("reserve=none", "snmp=false") + options)
    env = dict(os.environ, DEVICE_URI=f"lpd://127.0.0.1:{port}/raw?{query}", CUPS_SERVERBIN="/usr/lib/cups")
    return run([str(CUPS_LPD), str(job), "tester", TITLE, "1", "", str(path)], timeout=120, env=env)


@pytest.fixture
def documents(tmp_path) -> dict[str, Path]:
    ps = ghostscript_page(tmp_path / "lpd.ps", "lpd")
    text = tmp_path / "note.txt"
    text.write_bytes(b"LPD acceptance\r\nline two\n\x0c")
    return {"ps": ps, "text": text}


@pytest.mark.parametrize("order", ["control,data", "data,control"])
def test_cups_lpd_backend_prints_byte_exact(sensor, documents, order):
    before = sensor.pagecount()
    for n, (_, path) in enumerate(sorted(documents.items()), start=1):
        result = _cups_lpd(sensor.lpd_port, path, n, f"order={order}")
        assert result.returncode == 0, result.stderr
        assert "Data file sent successfully" in result.stderr and "Control file sent successfully" in result.stderr
    after = sensor.pagecount()
    assert after >= before + 2
    events = sensor.events()
    caps = [e for e in events if e["eventid"] == "honeyjet.job.captured" and e["protocol"] == "lpd"]
    by_sha = {c["shasum"]: c for c in caps}
    for kind, path in documents.items():
        sha = hashlib.sha256(path.read_bytes()).hexdigest()
        assert sha in by_sha, f"{kind} not stored"
        assert (sensor.data_dir / "artifacts" / sha).read_bytes() == path.read_bytes()
        cap = by_sha[sha]
        assert cap["user"] == "tester" and cap["name"] == TITLE and cap["ended_by"] == "count"
        assert cap["language"] == ("postscript" if kind == "ps" else "text")
    jobs = [e for e in events if e["eventid"] == "honeyjet.lpd.job"]
    assert len(jobs) == 2
    for job in jobs:
        assert job["queue"] == "raw" and job["user"] == "tester" and job["title"] == TITLE
        assert ["P", "tester"] in job["control"] and ["J", TITLE] in job["control"]
        assert len(job["jobs"]) == 1 and job["jobs"][0] in {c["job"] for c in caps}
        assert job["files"] and job["files"][0].startswith("dfA")
    # the second file waited behind the first on the print engine
    state = lpd(sensor.lpd_port, b"\x03raw\n").decode()
    assert state.startswith("raw is ready and printing\n") and "tester" in state


def test_socket_client_queue_state_remove_and_abort(sensor):
    port = sensor.lpd_port
    assert lpd(port, b"\x03lp\n") == b"lp is ready\nno entries\n"
    ctl = b"Hclient\nPalice\nJquarterly\nldfA777client\nUdfA777client\nNquarterly\n"
    data = b"%!PS-Adobe-3.0\n%%Pages: 1\nshowpage\n"
    job = (
        b"\x02lp\n"
        + b"\x02%d cfA777client\n" % len(ctl) + ctl + b"\x00"
        + b"\x03%d dfA777client\n" % len(data) + data + b"\x00"
    )
    assert lpd(port, job) == b"\x00" * 5
    short = lpd(port, b"\x03lp\n").decode()
    row = re.search(rf"^active\s+alice\s+(\d+)\s+quarterly\s+{len(data)} bytes$", short, re.MULTILINE)
    assert row, short
    number = int(row.group(1))
    long = lpd(port, b"\x04lp alice\n").decode()
    assert "alice: active" in long and f"[job {number % 1000:03d}" in long
    assert lpd(port, b"\x05lp alice %d\n" % number) == b""
    assert lpd(port, b"\x03lp\n") == b"lp is ready\nno entries\n"
    # an aborted transfer: acknowledged up to the abort, recorded, the service stays up
    assert lpd(port, b"\x02lp\n\x0310 dfA1x\n0123456789\x00\x01\n") == b"\x00\x00\x00"
    assert lpd(port, b"\x01default\n") == b"\x00"
    events = sensor.events()
    assert [e["command"] for e in events if e["eventid"] == "honeyjet.lpd.command"].count("remove") == 1
    users = [e["user"] for e in events if e["eventid"] == "honeyjet.lpd.job"]
    assert users == ["alice", ""]


def test_corpus_whole_split_and_bytewise(sensor):
    port = sensor.lpd_port
    entries = corpus(515)
    assert entries
    for entry in entries:
        payload = entry["payload"]
        engine = LPDEngine(make_device())
        expected = b"".join(o.data for o in engine.feed(payload) + engine.eof() if isinstance(o, Send))
        for chunks in ([payload], split_at(payload, entry.get("chunk_offsets", [])), [payload[i : i + 1] for i in range(len(payload))]):
            reply = lpd(port, payload, chunks=chunks)
            assert reply == expected, entry["id"]
        assert lpd(port, b"\x01default\n") == b"\x00", entry["id"]
    events = sensor.events()
    caps = [e for e in events if e["eventid"] == "honeyjet.job.captured"]
    assert len(caps) == 3 * len(entries) and len([e for e in events if e["eventid"] == "honeyjet.lpd.job"]) == 3 * len(entries)
    assert all((sensor.data_dir / "artifacts" / c["shasum"]).exists() for c in caps)
