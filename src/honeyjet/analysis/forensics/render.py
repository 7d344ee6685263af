"""Previews (PNG bytes, bounded) and PDF text with pypdfium2: run inside the worker process."""

from __future__ import annotations

import io
import math
from typing import Any

from honeyjet.analysis.forensics.plaintext import Text, normalise
from honeyjet.analysis.forensics.report import Limits

PAGE_COLUMNS = 80
PAGE_LINES = 66  # a US-letter page of 6 lpi text
MARGIN = 12
MAX_IMAGE_PIXELS = 64_000_000  # a raster job larger than this is not decoded


def bounded_png(image: Any, max_bytes: int) -> bytes | None:
    """The image as PNG of at most ``max_bytes``: palette-reduced, then scaled down if needed."""
    from PIL import Image

    img = image if image.mode in ("1", "L", "P", "RGB") else image.convert("RGB")
    for attempt in range(6):
        buf = io.BytesIO()
        img.save(buf, "PNG", optimize=attempt == 0)
        if buf.tell() <= max_bytes:
            return buf.getvalue()
        if img.mode == "RGB":
            img = img.quantize(colors=64)
        else:
            w, h = img.size
            if w < 16 or h < 16:
                break
            img = img.resize((max(1, int(w * 0.7)), max(1, int(h * 0.7))), Image.Resampling.NEAREST)
    return None


def _font() -> Any:
    from PIL import ImageFont

    loader = getattr(ImageFont, "load_default_imagefont", None)  # Pillow >= 10.1: the bitmap font
    return loader() if loader is not None else ImageFont.load_default()


def text_preview(text: str, first_page_end: int | None, max_bytes: int) -> bytes | None:
    """The first page of text on a monospace page (80 columns x 66 lines, default bitmap font)."""
    from PIL import Image, ImageDraw

    page = text[:first_page_end] if first_page_end is not None else text
    lines: list[str] = []
    for line in page[: PAGE_COLUMNS * PAGE_LINES * 2].split("\n"):
        line = line.expandtabs(8)
        while True:
            lines.append(line[:PAGE_COLUMNS])
            line = line[PAGE_COLUMNS:]
            if not line or len(lines) >= PAGE_LINES:
                break
        if len(lines) >= PAGE_LINES:
            break
    font = _font()
    left, top, right, bottom = font.getbbox("M")
    cw, ch = max(1, right - left), max(1, bottom - top) + 1
    img = Image.new("L", (PAGE_COLUMNS * cw + 2 * MARGIN, PAGE_LINES * ch + 2 * MARGIN), 255)
    draw = ImageDraw.Draw(img)
    for i, line in enumerate(lines[:PAGE_LINES]):
        safe = line.encode("latin-1", "replace").decode("latin-1")
        if safe.strip():
            draw.text((MARGIN, MARGIN + i * ch), safe, fill=0, font=font)
    return bounded_png(img, max_bytes)


def _fit(image: Any, limits: Limits) -> Any:
    """Scale an image down to about a page at the preview resolution."""
    box = (int(8.5 * limits.preview_dpi), int(11 * limits.preview_dpi))
    image.thumbnail(box)
    return image


def image_preview(data: bytes, limits: Limits) -> tuple[list[bytes], str]:
    """Preview of a JPEG/PNG/TIFF/GIF job (first frame), or an error."""
    from PIL import Image

    try:
        with Image.open(io.BytesIO(data)) as img:
            w, h = img.size
            if w <= 0 or h <= 0 or w * h > MAX_IMAGE_PIXELS:
                return [], f"raster: image of {w}x{h} pixels not decoded"
            if img.format == "JPEG":
                img.draft("RGB", (int(8.5 * limits.preview_dpi), int(11 * limits.preview_dpi)))
            frame = img.convert("RGB")
        png = bounded_png(_fit(frame, limits), limits.preview_bytes)
        return ([png] if png else []), ("" if png else "raster: preview too large")
    except Exception as exc:  # noqa: BLE001 - hostile images: any decoder error is a finding
        return [], f"raster: {type(exc).__name__}: {str(exc)[:160]}"


def pdf_analyze(data: bytes, limits: Limits, *, render: bool) -> tuple[Text, int | None, list[bytes], list[str]]:
    """(text, pages, previews, errors) of a PDF with pdfium."""
    import pypdfium2 as pdfium

    errors: list[str] = []
    previews: list[bytes] = []
    parts: list[str] = []
    size = 0
    first_page_end: int | None = None
    pdf = pdfium.PdfDocument(data)
    try:
        pages = len(pdf)
        for index in range(min(pages, limits.pdf_text_pages)):
            if size > limits.max_text_chars:
                break
            page = pdf[index]
            try:
                textpage = page.get_textpage()
                try:
                    chunk = textpage.get_text_range()
                finally:
                    textpage.close()
            except Exception as exc:  # noqa: BLE001
                errors.append(f"pdfium: page {index + 1} text: {type(exc).__name__}")
                chunk = ""
            finally:
                page.close()
            parts.append(chunk.rstrip() + "\n")
            size += len(parts[-1])
            if first_page_end is None:
                first_page_end = size
        if render:
            for index in range(min(pages, limits.max_previews, limits.max_pages)):
                png = _render_page(pdf, index, limits, errors)
                if png:
                    previews.append(png)
    finally:
        pdf.close()
    text = normalise("".join(parts), limits.max_text_chars)
    if text.first_page_end is None:
        text.first_page_end = first_page_end
    return text, pages, previews, errors


def _render_page(pdf: Any, index: int, limits: Limits, errors: list[str]) -> bytes | None:
    page = pdf[index]
    try:
        width, height = page.get_size()
        if not (width > 0 and height > 0) or math.isinf(width * height):
            errors.append(f"pdfium: page {index + 1} has no size")
            return None
        scale = limits.preview_dpi / 72
        if width * height * scale * scale > limits.preview_pixels:
            scale = math.sqrt(limits.preview_pixels / (width * height))
        bitmap = page.render(scale=scale)
        try:
            image = bitmap.to_pil()
            return bounded_png(image, limits.preview_bytes)
        finally:
            bitmap.close()
    except Exception as exc:  # noqa: BLE001
        errors.append(f"pdfium: page {index + 1} render: {type(exc).__name__}")
        return None
    finally:
        page.close()
