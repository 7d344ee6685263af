"""The result of analysing one job (:class:`JobReport`) and the bounds of the analysis (:class:`Limits`)."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

LANGUAGES = ("pjl", "postscript", "pcl5", "pclxl", "pdf", "text", "raster", "html", "binary", "empty")
TEXT_SOURCES = ("plain", "html", "pcl5", "pclxl", "ghostscript", "pdfium", "none")
SCHEMA = 1


@dataclass
class Limits:
    """Every bound of an analysis. All sizes in bytes unless named otherwise."""

    max_read: int = 16 << 20  # bytes of a file that are read at all
    max_text_chars: int = 65536  # characters of extracted text kept
    max_indicators: int = 500
    phone_regions: tuple[str, ...] = ("US", "GB", "DE", "FR", "IN")
    entropy_bytes: int = 1 << 20
    magic_bytes: int = 1 << 20  # bytes libmagic looks at
    max_pages: int = 3  # pages rasterised (and read for text by Ghostscript)
    pdf_text_pages: int = 50  # PDF pages read for text by pdfium
    max_previews: int = 3
    preview_bytes: int = 1 << 20  # largest PNG kept
    preview_dpi: int = 60
    preview_pixels: int = 2_000_000  # pixels of one rendered page
    ghostscript: bool = True  # run Ghostscript for PostScript (and broken PDF)
    gs_path: str = "/usr/bin/gs"
    gs_timeout: float = 20.0  # wall-clock seconds per Ghostscript run
    gs_cpu: int = 15  # CPU seconds per Ghostscript run
    gs_memory_mb: int = 512  # address space of a Ghostscript run
    gs_output_bytes: int = 32 << 20  # largest file a Ghostscript run may write
    sandbox: str = "auto"  # "auto" (bwrap when it works), "bwrap", "rlimits"

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["phone_regions"] = list(self.phone_regions)
        return d

    @classmethod
    def from_dict(cls, data: dict[str, Any] | None) -> Limits:
        names = {f.name for f in dataclasses.fields(cls)}
        kwargs = {k: v for k, v in (data or {}).items() if k in names}
        if "phone_regions" in kwargs:
            kwargs["phone_regions"] = tuple(str(r) for r in kwargs["phone_regions"])
        return cls(**kwargs)


@dataclass
class JobReport:
    """What a captured job is and says. ``to_dict()`` is JSON-ready and leaves out the
    preview PNG bytes (``preview_count`` says how many there are)."""

    language: str = "empty"
    wrappers: list[str] = field(default_factory=list)
    magic: str = ""
    size: int = 0  # bytes of the input (the whole file)
    read_bytes: int = 0  # bytes actually read
    truncated: bool = False  # the input was larger than Limits.max_read
    payload_offset: int = 0  # where the PDL starts in the input (-1: not contiguous)
    payload_size: int = 0
    pjl: dict[str, Any] = field(default_factory=dict)
    http: dict[str, Any] = field(default_factory=dict)
    ipp: dict[str, Any] = field(default_factory=dict)
    raster: str = ""  # pwg, urf, jpeg, png, tiff, gif
    text: str = ""
    text_source: str = "none"
    text_truncated: bool = False
    pages: int | None = None
    entropy: float = 0.0
    indicators: list[dict[str, Any]] = field(default_factory=list)
    simhash: str = "0000000000000000"
    simhash_source: str = "bytes"  # "text" or "bytes"
    previews: list[bytes] = field(default_factory=list)
    preview_count: int = 0
    fonts: list[str] = field(default_factory=list)  # font names seen (PCL XL)
    pcl: dict[str, Any] = field(default_factory=dict)  # PCL5 facts: font_headers, font_anomalies, macros, permanent
    sandbox: str = ""  # how Ghostscript ran: "bwrap", "rlimits" ("" when it did not run)
    errors: list[str] = field(default_factory=list)
    duration_ms: int = 0
    schema: int = SCHEMA

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for f in dataclasses.fields(self):
            if f.name == "previews":
                continue
            value = getattr(self, f.name)
            out[f.name] = _plain(value)
        out["preview_count"] = len(self.previews) or self.preview_count
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> JobReport:
        """Rebuild a report from ``to_dict()`` output (unknown keys ignored, previews empty)."""
        report = cls()
        if not isinstance(data, dict):
            report.errors.append("report: not a mapping")
            return report
        for f in dataclasses.fields(cls):
            if f.name == "previews" or f.name not in data:
                continue
            setattr(report, f.name, data[f.name])
        return report

    def add_error(self, message: str) -> None:
        if len(self.errors) < 32:
            self.errors.append(message[:300])


def _plain(value: Any) -> Any:
    """A JSON-ready deep copy (tuples → lists, bytes → latin-1 text)."""
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, bytes):
        return value.decode("latin-1")
    if value is None or isinstance(value, (str, int, float, bool)):
        return value
    return str(value)
