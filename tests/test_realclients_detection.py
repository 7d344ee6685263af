"""Verdicts and job forensics on jobs delivered by real clients (CUPS backends, Ghostscript).

A driver-made document that *quotes* attack strings is a benign job (rules read what the
parsers understood, not substrings); a spam page made with Ghostscript is spam, with its
text, indicators, preview and attribution."""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from pathlib import Path

import pytest

from helpers import ghostscript_page
from test_realclients import CUPS_SOCKET, SensorProcess, _cups_socket_print, run

pytestmark = pytest.mark.realclient

CUPS_LPD = Path("/usr/lib/cups/backend/lpd")


@pytest.fixture
def sensor(tmp_path):
    proc = SensorProcess(tmp_path / "data").start()
    yield proc
    proc.stop()


def verdicts(sensor: SensorProcess, count: int, timeout: float = 60.0) -> list[dict]:
    """Session verdicts once ``count`` of them are in the log (job forensics take a moment)."""
    deadline = time.monotonic() + timeout
    while True:
        got = [e for e in sensor.events() if e["eventid"] == "honeyjet.verdict.session"]
        if len(got) >= count or time.monotonic() > deadline:
            return got
        time.sleep(0.2)


def test_document_quoting_attacks_is_a_benign_job(sensor, tmp_path):
    assert CUPS_SOCKET.exists()
    quoted = '@PJL FSUPLOAD NAME="0:/../../etc/passwd"  true 0 startjob  {} loop  @PJL RDYMSG DISPLAY="x"'
    ps = ghostscript_page(tmp_path / "howto.ps", quoted.replace("(", "").replace(")", ""))
    assert _cups_socket_print(sensor.port, ps).returncode == 0
    v = verdicts(sensor, 1)
    assert v and v[0]["classes"] == ["benign_print_job"] and v[0]["severity"] == "info", v
    analyzed = [e for e in sensor.events() if e["eventid"] == "honeyjet.job.analyzed"][0]
    assert analyzed["language"] == "postscript" and analyzed["text_source"] == "ghostscript"
    assert "FSUPLOAD" in analyzed["text"] and "startjob" in analyzed["text"]
    assert analyzed["previews"], "a PNG preview of the page"
    png = (sensor.data_dir / "artifacts" / analyzed["previews"][0]).read_bytes()
    assert png.startswith(b"\x89PNG\r\n\x1a\n")
    full = (sensor.data_dir / "artifacts" / analyzed["text_shasum"]).read_text()
    assert "RDYMSG" in full


def test_spam_pdf_through_the_socket_backend(sensor, tmp_path):
    gs = shutil.which("gs")
    assert gs
    pdf = tmp_path / "offer.pdf"
    subprocess.run([gs, "-q", "-dSAFER", "-dNOPAUSE", "-dBATCH", "-sDEVICE=pdfwrite", f"-sOutputFile={pdf}", "-c",
                    "/Helvetica findfont 20 scalefont setfont 72 700 moveto (LIMITED OFFER - subscribe now!) show "
                    "72 670 moveto (Call +1 202 555 0143 or visit hxxp://deals[.]example/now) show showpage"],
                   check=True, timeout=60)
    assert _cups_socket_print(sensor.port, pdf).returncode == 0
    v = verdicts(sensor, 1)
    assert v and v[0]["classes"][0] == "printer_spam_job", v
    assert {"HJ-JOB-020", "HJ-JOB-021"} <= set(v[0]["rules"])
    analyzed = [e for e in sensor.events() if e["eventid"] == "honeyjet.job.analyzed"][0]
    assert analyzed["language"] == "pdf" and analyzed["text_source"] == "pdfium"
    kinds = {(i["type"], i["value"]) for i in analyzed["indicators"]}
    assert ("phone", "+12025550143") in kinds
    assert any(t == "url" and "deals.example" in val for t, val in kinds)
    assert analyzed["simhash"] and analyzed["campaign"].startswith("c-") and analyzed["previews"]


def test_lpd_spam_names_the_workstation(sensor, tmp_path):
    assert CUPS_LPD.exists(), "CUPS lpd backend missing: .ci/run installs cups"
    text = tmp_path / "ad.txt"
    text.write_bytes(b"PRINTER ADVERTISING\r\nYour product could be here - book your campaign: www.ads.example\r\n\x0c")
    lpd_port = 515 + sensor.offset
    env = dict(os.environ, DEVICE_URI=f"lpd://127.0.0.1:{lpd_port}/lp", CUPS_SERVERBIN="/usr/lib/cups")
    r = run([str(CUPS_LPD), "7", "mallory", "invoice.txt", "1", "", str(text)], timeout=60, env=env)
    assert r.returncode == 0, r.stderr
    v = verdicts(sensor, 1)
    assert v and v[0]["classes"][0] == "printer_spam_job", v
    attribution = v[0]["attribution"]
    assert "user:mallory" in attribution and any(a.startswith("host:") for a in attribution)
    assert any(a.startswith("job:invoice") for a in attribution)  # CUPS sanitises the title (invoice_txt)
