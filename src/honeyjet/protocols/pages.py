"""Incremental page estimate for a job, fed in chunks (pure, bounded state).

The estimate is what the page counter rises by when the job ends. A job that only
queries the device (PostScript that never calls ``showpage``, PCL status readback,
blank data) prints nothing, like a real printer; anything else that carries printable
content counts at least one page.

Counting is independent of chunking: a match is counted in the feed where it first
lies completely in the buffer, and the carried tail is one byte shorter than the
longest pattern, so a match can be neither missed nor counted twice.
"""

from __future__ import annotations

import re

_PATTERNS: dict[str, dict[str, re.Pattern[bytes]]] = {
    "postscript": {
        "dsc_pages": re.compile(rb"%%Pages:[ \t]{0,8}(\d{1,7})\D"),
        "dsc_page": re.compile(rb"%%Page:"),
        "showpage": re.compile(rb"showpage|copypage"),
    },
    "pdf": {"pdf_page": re.compile(rb"/Type[ \t\r\n]{0,4}/Page[^a-zA-Z]")},
}
_TAIL = 31  # longest pattern above is 8 + 8 + 7 + 1 = 24 bytes
_NEXT = re.compile(rb"[\x21-\x7e]|\x1b")  # a printable byte, or an escape to skip
_ESCAPE = re.compile(rb"\x1b[^A-Za-z@]{0,32}[A-Za-z@]")
_PARTIAL_ESCAPE = re.compile(rb"\x1b[^A-Za-z@]{0,32}")


class PageEstimator:
    def __init__(self, language: str):
        self.language = language
        self._patterns = _PATTERNS.get(language, {})
        self._tail = b""
        self.counts: dict[str, int] = {name: 0 for name in self._patterns}
        self.dsc_pages = 0
        self.form_feeds = 0
        self.newlines = 0
        self.printable = False

    def feed(self, data: bytes) -> None:
        if not data:
            return
        if self._patterns:
            buf = self._tail + data
            fresh = len(self._tail)
            for name, pattern in self._patterns.items():
                for m in pattern.finditer(buf):
                    if m.end() <= fresh:
                        continue
                    if name == "dsc_pages":
                        self.dsc_pages = max(self.dsc_pages, int(m.group(1)))
                    else:
                        self.counts[name] += 1
            self._tail = buf[-_TAIL:]
            return
        self.form_feeds += data.count(b"\x0c")
        self.newlines += data.count(b"\n")
        if not self.printable:
            self._scan(data)

    def _scan(self, data: bytes) -> None:
        """Look for a printable byte outside escape sequences (C-speed regex steps).

        An escape sequence cut by the chunk boundary is carried over (at most 33 bytes).
        """
        buf = self._tail + data
        self._tail = b""
        pos = 0
        while True:
            m = _NEXT.search(buf, pos)
            if m is None:
                return
            start = m.start()
            if buf[start] != 0x1B:
                self.printable = True
                return
            esc = _ESCAPE.match(buf, start)
            if esc is not None:
                pos = esc.end()
                continue
            partial = _PARTIAL_ESCAPE.match(buf, start)
            if partial is not None and partial.end() == len(buf) and len(buf) - start <= 33:
                self._tail = buf[start:]
                return
            pos = start + 1  # a malformed escape: skip the ESC itself

    def pages(self) -> int:
        lang = self.language
        if lang == "postscript":
            # DSC comments describe the document; a bare showpage count also counts prologs
            # that merely define or redefine showpage, so it is the fallback
            dsc = max(self.dsc_pages, self.counts["dsc_page"])
            return dsc or self.counts["showpage"]
        if lang == "pdf":
            return max(1, self.counts["pdf_page"])
        if not self.printable:
            return 0
        if lang in ("pcl", "pclxl"):
            return max(1, self.form_feeds)
        # text and anything else a printer would render as text
        return max(1, self.form_feeds, -(-self.newlines // 60))
