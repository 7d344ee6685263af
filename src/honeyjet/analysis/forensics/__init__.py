"""Job forensics: explain a captured print job (``<data>/artifacts/<sha256>``).

Pipeline (:func:`analyze_bytes` / :func:`analyze_file`, synchronous and total — any
bytes in, a :class:`JobReport` out, every failure a short string in ``errors``):

1. read at most ``Limits.max_read`` bytes (16 MiB; ``truncated`` says when there were more);
   libmagic labels the head;
2. unwrap (:mod:`.unwrap`): HTTP (cross-site printing, stored requests) → IPP
   (``application/ipp``) → PJL (UEL + ``@PJL`` lines: job name, user, host, language,
   copies, comments, JOBATTR, ``UPGRADE SIZE``, verbs) — ``wrappers`` lists what came off;
3. classify what is left: ``pjl`` (commands only), ``postscript``, ``pcl5``, ``pclxl``,
   ``pdf``, ``text``, ``raster``, ``html``, ``binary``, ``empty``; entropy of its first MiB;
4. extract text (bounded to 64 Ki characters) and previews (at most 3 PNGs of ≤ 1 MiB):
   plain text and HTML directly; PCL5 with the own streaming extractor (:mod:`.pcl5`);
   PCL XL best effort (:mod:`.pclxl`); PDF with pypdfium2; PostScript (and PDF that
   pdfium rejects) with Ghostscript ``txtwrite`` + ``png16m``; JPEG/PNG/TIFF/GIF with
   Pillow. Text jobs get a rendered text page as preview;
5. indicators in the text (:mod:`.indicators`, refanged first; wallets only with a valid
   checksum) and a 64-bit SimHash (:mod:`.simhash`) of the normalised text (or the bytes).

Sandbox. Ghostscript runs only as a subprocess (argv list, ``-dSAFER``, first 3 pages,
fixed page size) under ``prlimit`` (address space, CPU, file size, 64 files, no core)
and a wall-clock timeout, inside ``bwrap --unshare-all --die-with-parent`` (read-only
``/usr``, read-only job, one writable output directory, no network) when bubblewrap
works on the host (probed once); the report's ``sandbox`` is ``bwrap`` or ``rlimits``.
In-process parsers (PCL, PJL, HTTP, IPP, indicators) are pure Python and bounded.
pdfium and Pillow are native code, so untrusted jobs should go through
:class:`ForensicsPool`: each job is analysed by ``python -m honeyjet.analysis.forensics
<path> <outdir>`` in its own process session with address-space, CPU and file-size
limits and a wall-clock timeout (the whole process group is killed on expiry), at most
``max_workers`` at a time; the report comes back as JSON on stdout and the previews as
PNG files in a temporary directory that the pool reads and deletes. A crash, timeout or
out-of-memory becomes a report with ``errors``; the event loop is never blocked.

Limits (:class:`Limits`): read 16 MiB, 64 Ki characters of text, 500 indicators, 3 pages
rasterised at 60 dpi (≤ 2 Mpixel, ≤ 1 MiB PNG each), 50 PDF pages read for text,
Ghostscript 20 s wall / 15 s CPU / 512 MiB per run; the pool: 60 s, 512 MiB per job.
"""

from __future__ import annotations

from honeyjet.analysis.forensics.analyze import analyze_bytes, analyze_file
from honeyjet.analysis.forensics.indicators import extract_indicators, refang
from honeyjet.analysis.forensics.pool import ForensicsPool
from honeyjet.analysis.forensics.report import JobReport, Limits
from honeyjet.analysis.forensics.simhash import hamming, simhash64, simhash_bytes, simhash_text

__all__ = [
    "ForensicsPool",
    "JobReport",
    "Limits",
    "analyze_bytes",
    "analyze_file",
    "extract_indicators",
    "hamming",
    "refang",
    "simhash64",
    "simhash_bytes",
    "simhash_text",
]
