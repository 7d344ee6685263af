"""One job in, one :class:`JobReport` out (synchronous, total: failures become ``errors``)."""

from __future__ import annotations

import math
import os
import shutil
import tempfile
import time
from collections import Counter
from functools import lru_cache
from pathlib import Path
from typing import Any

from honeyjet.analysis.forensics import ghostscript, simhash
from honeyjet.analysis.forensics.indicators import extract_indicators
from honeyjet.analysis.forensics.pcl5 import PCL5Text
from honeyjet.analysis.forensics.pclxl import pclxl_text
from honeyjet.analysis.forensics.plaintext import Text, html_text, normalise, plain_text
from honeyjet.analysis.forensics.render import image_preview, pdf_analyze, text_preview
from honeyjet.analysis.forensics.report import JobReport, Limits
from honeyjet.analysis.forensics.unwrap import classify, raster_kind, unwrap
from honeyjet.protocols.pages import PageEstimator

MAX_MAGIC = 256  # characters of the libmagic description
_FEED = 1 << 20  # chunk size for the streaming extractors


def entropy(data: bytes) -> float:
    """Shannon entropy in bits per byte."""
    if not data:
        return 0.0
    n = len(data)
    return round(-sum(c / n * math.log2(c / n) for c in Counter(data).values()), 4)


@lru_cache(maxsize=1)
def _magic() -> Any:
    import magic

    return magic.Magic()


def magic_label(data: bytes) -> str:
    return str(_magic().from_buffer(data))[:MAX_MAGIC]


def _pages(language: str, payload: bytes) -> int:
    est = PageEstimator(language)
    for i in range(0, len(payload), _FEED):
        est.feed(payload[i : i + _FEED])
    return est.pages()


class _Job:
    """The analysis of one job: each step records its own failure and the others go on."""

    def __init__(self, data: bytes, report: JobReport, limits: Limits, render: bool):
        self.data = data
        self.report = report
        self.limits = limits
        self.render = render
        self.payload = b""
        self.enter_language = ""
        self.text = Text()

    def step(self, name: str, fn: Any, *args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except Exception as exc:  # noqa: BLE001 - total: hostile input may break any library
            self.report.add_error(f"{name}: {type(exc).__name__}: {str(exc)[:200]}")
            return None

    def run(self) -> None:
        r = self.report
        self.step("magic", self._magic)
        self.step("unwrap", self._unwrap)
        r.language = classify(self.payload, self.enter_language, had_pjl="pjl" in r.wrappers)
        r.entropy = entropy(self.payload[: self.limits.entropy_bytes])
        extractor = getattr(self, f"_lang_{r.language}", None)
        if extractor is not None:
            self.step(r.language, extractor)
        r.text = self.text.text
        r.text_truncated = bool(self.text.truncated)
        if r.text and r.text_source in ("plain", "html", "pcl5", "pclxl") and self.render and not r.previews:
            png = self.step("preview", text_preview, r.text, self.text.first_page_end, self.limits.preview_bytes)
            if png:
                r.previews.append(png)
        r.previews = r.previews[: self.limits.max_previews]
        r.preview_count = len(r.previews)
        if r.text:
            found = self.step("indicators", extract_indicators, r.text[: self.limits.max_text_chars],
                              limit=self.limits.max_indicators, phone_regions=self.limits.phone_regions)
            r.indicators = found or []
        self.step("simhash", self._simhash)

    def _magic(self) -> None:
        self.report.magic = magic_label(self.data[: self.limits.magic_bytes])

    def _unwrap(self) -> None:
        r = self.report
        un = unwrap(self.data, max_body=self.limits.max_read)
        self.payload = un.payload
        r.wrappers = un.wrappers
        r.payload_offset = un.offset
        r.payload_size = len(un.payload)
        r.http = un.http
        r.ipp = un.ipp
        for e in un.errors:
            r.add_error(e)
        if un.pjl is not None:
            r.pjl = un.pjl.to_dict()
            r.pjl["segments"] = un.segments
            self.enter_language = un.pjl.enter_language

    def _simhash(self) -> None:
        r = self.report
        if r.text.strip():
            r.simhash, r.simhash_source = simhash.to_hex(simhash.simhash_text(r.text)), "text"
        else:
            r.simhash = simhash.to_hex(simhash.simhash_bytes(self.payload or self.data))
            r.simhash_source = "bytes"

    # -- languages ------------------------------------------------------------------------
    def _lang_text(self) -> None:
        self.text = plain_text(self.payload, self.limits.max_text_chars)
        self.report.text_source = "plain"
        self.report.pages = _pages("text", self.payload)

    def _lang_html(self) -> None:
        self.text = html_text(self.payload, self.limits.max_text_chars)
        self.report.text_source = "html"

    def _lang_pcl5(self) -> None:
        ext = PCL5Text(self.limits.max_text_chars)
        for i in range(0, len(self.payload), _FEED):
            ext.feed(self.payload[i : i + _FEED])
        self.text = Text(ext.close(), ext.first_page_end, ext.truncated)
        self.report.text_source = "pcl5"
        self.report.pages = ext.pages
        self.report.pcl = ext.facts()

    def _lang_pclxl(self) -> None:
        res = pclxl_text(self.payload, self.limits.max_text_chars)
        self.text = normalise(res.text, self.limits.max_text_chars)
        self.report.text_source = "pclxl"
        self.report.pages = res.pages
        self.report.fonts = res.fonts
        if res.error:
            self.report.add_error(f"pclxl: {res.error}")

    def _lang_pdf(self) -> None:
        try:
            text, pages, previews, errors = pdf_analyze(self.payload, self.limits, render=self.render)
        except Exception as exc:  # noqa: BLE001 - broken PDFs: Ghostscript may still read them
            self.report.add_error(f"pdfium: {type(exc).__name__}: {str(exc)[:160]}")
            self._ghostscript()
            return
        self.text, self.report.pages, self.report.previews = text, pages, previews
        self.report.text_source = "pdfium"
        for e in errors:
            self.report.add_error(e)

    def _lang_postscript(self) -> None:
        self.report.pages = _pages("postscript", self.payload)
        self._ghostscript()

    def _lang_raster(self) -> None:
        r = self.report
        r.raster = raster_kind(self.payload.lstrip(b" \t\r\n\x00\x0c\x04"))
        if r.raster in ("jpeg", "png", "tiff", "gif"):
            r.pages = 1
            if self.render:
                r.previews, error = image_preview(self.payload, self.limits)
                if error:
                    r.add_error(error)

    # -- Ghostscript ----------------------------------------------------------------------
    def _ghostscript(self) -> None:
        r, limits = self.report, self.limits
        if not limits.ghostscript:
            return
        mode = ghostscript.sandbox_mode(limits)
        r.sandbox = mode
        work = Path(tempfile.mkdtemp(prefix="honeyjet-gs-"))
        try:
            job = work / "job"
            job.write_bytes(self.payload)
            os.chmod(work, 0o755)
            os.chmod(job, 0o644)
            text_run = ghostscript.run(job, work / "text", ghostscript.text_args(), "text.txt", limits, mode)
            if text_run.error:
                r.add_error(text_run.error)
            out = work / "text" / "text.txt"
            if out.is_file():
                with open(out, "rb") as fh:
                    raw = fh.read(limits.max_text_chars * 4).decode("utf-8", "replace")
                lines = [" ".join(line.split()) for line in raw.splitlines()]
                self.text = normalise("\n".join(lines).strip("\n") + "\n" if any(lines) else "", limits.max_text_chars)
                r.text_source = "ghostscript"
            if not self.render or text_run.timed_out or text_run.error.endswith("cpu limit"):
                return  # a job that hangs once hangs twice
            png_run = ghostscript.run(job, work / "png", ghostscript.png_args(limits), "page-%02d.png", limits, mode)
            if png_run.error and png_run.error != text_run.error:
                r.add_error(png_run.error)
            self._read_pngs(png_run.outputs)
        finally:
            shutil.rmtree(work, ignore_errors=True)

    def _read_pngs(self, paths: list[Path]) -> None:
        from PIL import Image

        from honeyjet.analysis.forensics.render import bounded_png

        for path in paths[: self.limits.max_previews]:
            if not path.name.endswith(".png") or path.stat().st_size > 64 << 20:
                continue
            data = path.read_bytes()
            if len(data) > self.limits.preview_bytes:
                with Image.open(path) as img:
                    img.load()
                    data = bounded_png(img, self.limits.preview_bytes) or b""
            if data.startswith(b"\x89PNG\r\n\x1a\n"):
                self.report.previews.append(data)


def analyze_bytes(data: bytes, *, render: bool = True, limits: Limits | None = None, size: int | None = None) -> JobReport:
    """Analyse a job held in memory. Total: never raises; failures are listed in ``errors``.

    ``size`` is the size of the whole file when ``data`` is only its head.
    """
    started = time.monotonic()
    report = JobReport()
    limits = limits or Limits()
    try:
        data = bytes(data)
        report.size = len(data) if size is None else max(size, len(data))
        if len(data) > limits.max_read:
            data = data[: limits.max_read]
        report.read_bytes = len(data)
        report.truncated = report.size > report.read_bytes
        _Job(data, report, limits, render).run()
    except Exception as exc:  # noqa: BLE001 - total (MemoryError and RecursionError included)
        report.add_error(f"internal: {type(exc).__name__}: {str(exc)[:200]}")
    report.duration_ms = int((time.monotonic() - started) * 1000)
    return report


def analyze_file(path: str | os.PathLike[str], *, render: bool = True, limits: Limits | None = None) -> JobReport:
    """Analyse a stored job; only the first ``limits.max_read`` bytes are read."""
    limits = limits or Limits()
    started = time.monotonic()
    try:
        with open(path, "rb") as fh:
            size = os.fstat(fh.fileno()).st_size
            data = fh.read(limits.max_read)
    except OSError as exc:
        report = JobReport()
        report.add_error(f"read: {type(exc).__name__}: {exc.strerror or exc}")
        report.duration_ms = int((time.monotonic() - started) * 1000)
        return report
    report = analyze_bytes(data, render=render, limits=limits, size=size)
    report.duration_ms = int((time.monotonic() - started) * 1000)
    return report
