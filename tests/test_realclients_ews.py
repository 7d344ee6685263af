"""The embedded web server against clients nobody here wrote: nmap (-sV, http-title,
http-enum), curl, Python's urllib, and the seed's Python-2 urllib2 bytes. The sensor runs
as `honeyjet run` in a subprocess; its web server listens on 80 + port offset."""

from __future__ import annotations

import json
import re
import shutil
import time
from pathlib import Path

import pytest

from helpers import corpus, split_at, tcp_exchange
from honeyjet.events import CATALOGUE, COMMON_FIELDS
from test_realclients import SensorProcess, need, run

pytestmark = pytest.mark.realclient

SEED = (
    b"GET / HTTP/1.1\r\nAccept-Encoding: identity\r\nHost: {host}\r\nConnection: close\r\n"
    b"User-Agent: Python-urllib/2.7\r\n\r\n"
)
DISPATCH = "/hp/device/this.LCDispatcher"
PYTHONISH = re.compile(rb"Traceback|Python/|aiohttp|BaseHTTP|Werkzeug|h11", re.I)
REQUEST_FIELDS = set(CATALOGUE["honeyjet.http.request"].fields) | set(COMMON_FIELDS)


class WebSensor(SensorProcess):
    @property
    def web(self) -> int:
        return 80 + self.offset

    def http(self, payload: bytes | list[bytes], timeout: float = 5.0) -> bytes:
        """Send raw bytes (chunks as separate writes), read until the server closes."""
        return tcp_exchange(self.web, payload, timeout=timeout, half_close=False)

    def get(self, path: str) -> bytes:
        return self.http(f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n".encode())

    def requests(self, predicate=lambda e: True, count: int = 1, timeout: float = 5.0,
                 eventid: str = "honeyjet.http.request") -> list[dict]:
        """The events matching ``predicate`` once at least ``count`` are logged (the log is written
        a moment after the reply is sent)."""
        deadline = time.monotonic() + timeout
        while True:
            found = [e for e in self.events() if e["eventid"] == eventid and predicate(e)]
            if len(found) >= count or time.monotonic() > deadline:
                return found
            time.sleep(0.05)

    def pjl(self, command: bytes) -> bytes:
        return self.query(b"\x1b%-12345X" + command + b"\x1b%-12345X")


@pytest.fixture
def web(tmp_path):
    proc = WebSensor(tmp_path / "data", HONEYJET_SENSOR__STRICT_EVENTS="true").start()
    yield proc
    proc.stop()
    stderr = proc.proc.stderr.read() if proc.proc and proc.proc.stderr else b""
    assert b"Traceback" not in stderr, stderr.decode(errors="replace")


def body_of(response: bytes) -> bytes:
    head, _, body = response.partition(b"\r\n\r\n")
    length = re.search(rb"\r\nCONTENT-LENGTH: (\d+)\r\n", head + b"\r\n")
    assert length and int(length.group(1)) == len(body), head
    return body


def identity(sensor: SensorProcess) -> dict:
    """The per-install identity the sensor drew (state/identity.json, keyed by persona id)."""
    return json.loads((sensor.data_dir / "state" / "identity.json").read_text())["hp-laserjet-4250"]


def test_nmap_version_detection_and_http_title(web):
    nmap = need("nmap")
    out = run([nmap, "-Pn", "-n", "-sV", "--script", "http-title", "-p", str(web.web), "127.0.0.1"], timeout=180).stdout
    line = re.search(rf"^{web.web}/tcp\s+open\s+http\s+HP-ChaiSOE 1\.0 \(HP LaserJet http config\)$", out, re.M)
    assert line, out
    assert "Service Info: Device: printer" in out, out
    # http-title follows the 301 to the dispatcher and shows the persona's title
    assert re.search(r"\| http-title: HP LaserJet 4250&nbsp;&nbsp;&nbsp;127\.0\.0\.1\n", out), out


def test_nmap_http_enum_finds_an_hp_printer(web):
    nmap = need("nmap")
    out = run(
        [nmap, "-Pn", "-n", "-sV", "-p", str(web.web), "--script", "http-enum", "--script-args", "http-enum.category=printer",
         "127.0.0.1"],
        timeout=180,
    ).stdout
    assert re.search(r"/hp/device/this\.LCDispatcher: HP Printer", out), out
    # still serving after nmap's probing
    assert web.get(DISPATCH).startswith(b"HTTP/1.1 200 OK\r\n")


def test_seed_python2_urllib2_bytes_get_the_device_page(web):
    first = web.http(SEED.replace(b"{host}", f"127.0.0.1:{web.web}".encode()))
    assert first.startswith(b"HTTP/1.1 301 Resource Moved\r\nCONTENT-LENGTH: 0\r\n")
    assert b"\r\nLocation: /hp/device/this.LCDispatcher\r\n" in first
    # urllib2 follows the redirect with the same headers
    follow = SEED.replace(b"GET / ", b"GET /hp/device/this.LCDispatcher ").replace(b"{host}", f"127.0.0.1:{web.web}".encode())
    page = body_of(web.http(follow))
    assert b"<title>HP LaserJet 4250&nbsp;&nbsp;&nbsp;127.0.0.1</title>" in page and b"Device Status" in page
    events = web.requests(count=2)
    assert events[0]["user_agent"] == "Python-urllib/2.7" and events[0]["page"] == "root"
    assert [h[0] for h in events[0]["headers"]] == ["Accept-Encoding", "Host", "Connection", "User-Agent"]


def test_python3_urllib_and_curl_agree_with_pjl_and_postscript(web):
    py = shutil.which("python3") or "python3"
    code = f"import urllib.request; print(urllib.request.urlopen('http://127.0.0.1:{web.web}/').read())"
    result = run([py, "-c", code], timeout=60)
    assert result.returncode == 0, result.stderr
    assert "HP LaserJet 4250&nbsp;&nbsp;&nbsp;127.0.0.1" in result.stdout and "Device Status" in result.stdout

    curl = need("curl")
    before = web.pagecount()
    result = run([curl, "-sv", "-L", f"http://127.0.0.1:{web.web}/hp/device/this.LCDispatcher?nav=hp.DeviceInfo"], timeout=60)
    after = web.pagecount()
    assert result.returncode == 0, result.stderr
    assert "< HTTP/1.1 200 OK" in result.stderr and "< SERVER: HP-ChaiSOE/1.0" in result.stderr, result.stderr
    page = result.stdout
    model = re.search(rb'^@PJL INFO ID\r\n"([^"]+)"', web.pjl(b"@PJL INFO ID\r\n")).group(1).decode()
    assert f'<div class="hpDataItemValue">{model}</div>' in page
    shown = int(re.search(r"Page Count:</div><div class=\"hpDataItemValue\">(\d+)<", page).group(1))
    assert before <= shown <= after
    serial = web.pjl(b"@PJL ENTER LANGUAGE=POSTSCRIPT\r\ncurrentsystemparams /SerialNumber get print flush\r\n").decode()
    ident = identity(web)
    assert serial == ident["serial"] and f">{serial}<" in page
    assert f">{ident['mac']}<" in page and f">{ident['hostname']}<" in page


def test_rdymsg_over_9100_shows_on_the_status_page(web):
    web.query(b'@PJL RDYMSG DISPLAY="<script>alert(1)</script>"\r\n')
    page = body_of(web.get(DISPATCH + "?nav=hp.DeviceStatus"))
    assert b'<div class="hpDisplay">&lt;script&gt;alert(1)&lt;/script&gt;</div>' in page
    assert b"<script>" not in page
    web.query(b'@PJL RDYMSG DISPLAY="HELLO FROM PJL"\r\n')
    curl = need("curl")
    out = run([curl, "-s", f"http://127.0.0.1:{web.web}{DISPATCH}"], timeout=60).stdout
    assert '<div class="hpDisplay">HELLO FROM PJL</div>' in out


def test_corpus_and_garbage_are_recorded_and_the_service_keeps_answering(web):
    entries = corpus(80)
    assert entries
    for entry in entries:
        payload = entry["payload"]
        for chunks in ([payload], split_at(payload, entry.get("chunk_offsets", [])), [payload[i : i + 1] for i in range(len(payload))]):
            got = web.http(chunks)
            assert got.startswith(b"HTTP/1.1 301 Resource Moved\r\n"), entry["id"]
        assert web.get(DISPATCH).startswith(b"HTTP/1.1 200 OK\r\n")
    hello = bytes.fromhex("16030100c4010000c00303") + bytes(32) + b"\x00\x00\x04\x13\x01\x13\x02\x01\x00\x00\x93"
    junk = [
        hello,
        b"GARBAGE\r\n\r\n",
        bytes(range(256)),
        b"GET / HTTP/1.1\r\nX-Big: " + b"A" * 100_000 + b"\r\n\r\n",
        b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: banana\r\n\r\n",
    ]
    for payload in junk:
        got = web.http(payload)
        assert got == b"" or got.startswith(b"HTTP/1.1 400 Bad Request\r\n"), got[:200]
        assert not PYTHONISH.search(got)
        assert web.get(DISPATCH).startswith(b"HTTP/1.1 200 OK\r\n")
    events = web.requests(count=len(entries) * 4 + len(junk) * 2)
    malformed = [e for e in events if e["malformed"]]
    assert len(malformed) == len(junk) and all(e["status"] == 400 and e["page"] == "400" and e["raw"] for e in malformed)
    assert len(events) == len(entries) * 4 + len(junk) * 2
    for e in events:
        assert set(e) <= REQUEST_FIELDS, set(e) - REQUEST_FIELDS
    closed = web.requests(lambda e: e["protocol"] == "http", len(events), eventid="honeyjet.session.closed")
    assert len(closed) == len(events)  # one request per connection here, every session recorded


def test_post_body_is_stored_as_an_artifact(web):
    curl = need("curl")
    form = "NewPassword=letmein&VerifyPassword=letmein&Apply=Apply"
    result = run([curl, "-s", "-d", form, f"http://127.0.0.1:{web.web}{DISPATCH}?nav=hp.Settings"], timeout=60)
    assert result.returncode == 0 and "Configure Device" in result.stdout
    (ev,) = web.requests(lambda e: e["method"] == "POST")
    assert ev["page"] == "settings" and ev["body_size"] == len(form)
    assert Path(web.data_dir / "artifacts" / ev["shasum"]).read_bytes() == form.encode()
