"""Job forensics with real Ghostscript and the out-of-process pool (realclient: slower)."""

from __future__ import annotations

import asyncio
import base64
import io
import json
import shutil
import subprocess
import time
import uuid
from pathlib import Path

import pytest
from PIL import Image

from helpers import require
from honeyjet.analysis.forensics import ForensicsPool, Limits, analyze_bytes, analyze_file
from honeyjet.analysis.forensics import ghostscript

pytestmark = [pytest.mark.realclient]


@pytest.fixture(autouse=True)
def _ghostscript() -> None:
    require(Path("/usr/bin/gs").exists(), "Ghostscript not installed (apt-get install ghostscript)")

DATA = Path(__file__).parent / "data"
FORENSICS = DATA / "forensics"
CORPUS = {e["id"]: base64.b64decode(e["payload_b64"]) for e in json.loads((DATA / "corpus" / "probes.json").read_text())}
UEL = b"\x1b%-12345X"
FAST = Limits(gs_timeout=5, gs_cpu=5)

SOURCE_PS = b"""%!PS
/Helvetica findfont 16 scalefont setfont
72 700 moveto (Your toner order is ready) show
72 670 moveto (Confirm at hxxps://toner-refill[.]example/confirm) show
72 640 moveto (or pay 0x5aAeb6053F3E94C9b9A09f33669435E7Ef1BeAed) show
showpage
"""


def gs_convert(tmp_path: Path, device: str, source: bytes = SOURCE_PS) -> bytes:
    src = tmp_path / "source.ps"
    src.write_bytes(source)
    out = tmp_path / f"out.{device}"
    subprocess.run(["gs", "-q", "-dSAFER", "-dBATCH", "-dNOPAUSE", f"-sDEVICE={device}", f"-sOutputFile={out}", str(src)],
                   check=True, timeout=60)
    return out.read_bytes()


def assert_previews(report, count: int) -> None:
    assert report.preview_count == count == len(report.previews)
    for png in report.previews:
        assert len(png) <= 1 << 20
        with Image.open(io.BytesIO(png)) as img:
            img.verify()
        with Image.open(io.BytesIO(png)) as img:
            assert img.format == "PNG" and img.size[0] > 100
            dark = img.convert("L").point(lambda p: 255 if p < 128 else 0).histogram()[255]
            assert dark > 100


def test_postscript_from_ps2write(tmp_path):
    ps = gs_convert(tmp_path, "ps2write")
    assert ps.startswith(b"%!PS-Adobe")
    report = analyze_bytes(ps, limits=FAST)
    assert report.language == "postscript" and report.wrappers == [] and report.text_source == "ghostscript"
    assert "Your toner order is ready" in report.text
    assert report.sandbox in ("bwrap", "rlimits") and not report.errors
    kinds = {(i["type"], i["value"]) for i in report.indicators}
    assert ("url", "https://toner-refill.example/confirm") in kinds
    assert ("eth", "0x5aAeb6053F3E94C9b9A09f33669435E7Ef1BeAed") in kinds
    assert_previews(report, 1)


def test_pjl_wrapped_postscript_as_a_driver_sends_it(tmp_path):
    ps = gs_convert(tmp_path, "ps2write")
    job = (UEL + b"@PJL JOB NAME=\"toner.pdf\"\r\n@PJL SET USERNAME=\"alice\"\r\n@PJL SET COPIES=2\r\n"
           b"@PJL ENTER LANGUAGE=POSTSCRIPT\r\n" + ps + UEL + b"@PJL EOJ NAME=\"toner.pdf\"\r\n" + UEL)
    report = analyze_bytes(job, limits=FAST)
    assert report.language == "postscript" and report.wrappers == ["pjl"]
    assert report.pjl["user"] == "alice" and report.pjl["copies"] == 2 and report.pjl["job_name"] == "toner.pdf"
    assert "Your toner order is ready" in report.text and report.pages == 1
    assert_previews(report, 1)


def test_corpus_pc001_text_and_preview():
    report = analyze_bytes(CORPUS["pc-001"], limits=FAST)
    assert report.text.strip() == "Budget 2024 - Sheet1" and report.text_source == "ghostscript"
    assert_previews(report, 1)


def test_pdf_from_pdfwrite_and_many_pages(tmp_path):
    pages = b"%!PS\n/Helvetica findfont 20 scalefont setfont\n" + b"".join(
        b"72 700 moveto (Page %d of the flood) show showpage\n" % i for i in range(1, 8))
    pdf = gs_convert(tmp_path, "pdfwrite", pages)
    report = analyze_bytes(pdf, limits=FAST)
    assert report.language == "pdf" and report.pages == 7 and "Page 7 of the flood" in report.text
    assert_previews(report, 3)  # first pages only
    ps_report = analyze_bytes(pages, limits=FAST)
    assert ps_report.pages == 7 and "Page 3 of the flood" in ps_report.text and "Page 4" not in ps_report.text
    assert_previews(ps_report, 3)


def test_broken_pdf_falls_back_to_ghostscript(tmp_path):
    pdf = bytearray(gs_convert(tmp_path, "pdfwrite"))
    cut = pdf.rindex(b"xref")
    broken = bytes(pdf[:cut]) + b"garbage\n"  # no xref table or trailer: Ghostscript repairs it
    report = analyze_bytes(broken, limits=FAST)
    assert report.language == "pdf"
    if report.text_source == "ghostscript":
        assert any(e.startswith("pdfium:") for e in report.errors)
    assert "Your toner order is ready" in report.text


def _unique_target() -> Path:
    return Path("/tmp") / f"honeyjet-pwned-{uuid.uuid4().hex}"


@pytest.mark.parametrize("sandbox", ["auto", "rlimits"])
@pytest.mark.parametrize(
    ("name", "program", "expect"),
    [
        ("read", b"/f (/etc/passwd) (r) file def f 200 string readstring pop ==", "invalidfileaccess"),
        ("pipe", b"(%%pipe%%touch TARGET) (w) file closefile", "invalidfileaccess"),
        ("write", b"(TARGET) (w) file dup (owned) writestring closefile", "invalidfileaccess"),
        ("loop", b"{} loop", "timeout"),
        ("memory", b"/a 100000 array def 0 1 99999 { a exch 60000 string put } for", "VMerror"),
    ],
)
def test_hostile_postscript_is_contained(name, program, expect, sandbox):
    target = _unique_target()
    job = b"%!PS\n" + program.replace(b"%%", b"%").replace(b"TARGET", str(target).encode()) + b"\nshowpage\n"
    limits = Limits(gs_timeout=3, gs_cpu=3, gs_memory_mb=256, sandbox=sandbox)
    started = time.monotonic()
    report = analyze_bytes(job, limits=limits)
    elapsed = time.monotonic() - started
    assert report.language == "postscript"
    assert any(expect in e for e in report.errors), report.errors
    assert not target.exists()
    assert elapsed < 10
    assert report.sandbox == ("rlimits" if sandbox == "rlimits" else ("bwrap" if ghostscript.bwrap_works() else "rlimits"))


def test_bwrap_probe_is_cached():
    first = ghostscript.bwrap_works()
    started = time.monotonic()
    assert ghostscript.bwrap_works() == first
    assert time.monotonic() - started < 0.01
    assert ghostscript.sandbox_mode(Limits(sandbox="rlimits")) == "rlimits"


# -- the pool --------------------------------------------------------------------------------
async def test_pool_analyzes_out_of_process(tmp_path):
    job = tmp_path / "job"
    job.write_bytes(CORPUS["pc-001"])
    spam = tmp_path / "spam"
    spam.write_bytes(CORPUS["pc-039"])
    async with ForensicsPool(max_workers=2, timeout=60, limits=FAST) as pool:
        ps, text = await asyncio.gather(pool.analyze(job), pool.analyze(spam))
    assert ps.language == "postscript" and ps.text.strip() == "Budget 2024 - Sheet1" and ps.pjl["user"] == "jdoe"
    assert ps.sandbox == pool.sandbox and not ps.errors
    assert_previews(ps, 1)
    assert text.language == "text" and text.indicators[0]["value"] == "www.example-printads.invalid"
    assert_previews(text, 1)
    assert list(tmp_path.iterdir()) == [job, spam] or sorted(tmp_path.iterdir()) == sorted([job, spam])


async def test_pool_bounds_concurrency_and_cleans_up(tmp_path):
    paths = []
    for i in range(5):
        p = tmp_path / f"job{i}"
        p.write_bytes(b"%!PS\n/Helvetica findfont 12 scalefont setfont 72 700 moveto (job " + str(i).encode() + b") show showpage\n")
        paths.append(p)
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    pool = ForensicsPool(max_workers=2, timeout=60, limits=FAST, tmp_dir=str(scratch))
    seen: list[int] = []

    async def watch():
        while True:
            seen.append(pool.active)
            await asyncio.sleep(0.01)

    watcher = asyncio.create_task(watch())
    reports = await asyncio.gather(*(pool.analyze(p) for p in paths))
    watcher.cancel()
    await pool.close()
    assert [r.text.strip() for r in reports] == [f"job {i}" for i in range(5)]
    assert pool.peak == 2 and max(seen) <= 2 and pool.completed == 5
    assert list(scratch.iterdir()) == []  # every worker's temp dir removed


async def test_pool_timeout_kills_the_worker(tmp_path):
    job = tmp_path / "loop.ps"
    job.write_bytes(b"%!PS\n{} loop\n")
    pool = ForensicsPool(max_workers=1, timeout=2, limits=Limits(gs_timeout=60, gs_cpu=60))
    ticks = 0

    async def ticker():
        nonlocal ticks
        while True:
            ticks += 1
            await asyncio.sleep(0.05)

    tick = asyncio.create_task(ticker())
    started = time.monotonic()
    report = await pool.analyze(job)
    elapsed = time.monotonic() - started
    tick.cancel()
    await pool.close()
    assert report.errors == ["worker: timeout after 2 s"]
    assert 1.9 < elapsed < 6
    assert ticks > 20  # the loop kept running while the worker did
    time.sleep(0.2)
    leftover = subprocess.run(["pgrep", "-f", str(job)], capture_output=True, text=True).stdout.split()
    assert leftover == []  # neither the worker nor Ghostscript survived


async def test_pool_worker_out_of_memory_is_a_report(tmp_path):
    job = tmp_path / "job.txt"
    job.write_bytes(b"hello\n")
    pool = ForensicsPool(max_workers=1, timeout=30, memory_mb=40)  # too small for the interpreter's imports
    report = await pool.analyze(job)
    await pool.close()
    assert report.errors and report.errors[-1].startswith("worker:")


async def test_pool_closed_refuses(tmp_path):
    pool = ForensicsPool()
    await pool.close()
    report = await pool.analyze(tmp_path / "x")
    assert report.errors == ["pool: closed"]


def test_worker_cli(tmp_path):
    import sys

    job = tmp_path / "job"
    job.write_bytes(CORPUS["pc-039"])
    out = tmp_path / "out"
    out.mkdir()
    done = subprocess.run([sys.executable, "-m", "honeyjet.analysis.forensics", str(job), str(out)], capture_output=True, timeout=60)
    assert done.returncode == 0
    data = json.loads(done.stdout)
    assert data["language"] == "text" and data["preview_count"] == 1
    assert (out / "preview-0.png").read_bytes().startswith(b"\x89PNG")
    assert analyze_file(job).simhash == data["simhash"]
    assert shutil.which("gs")
