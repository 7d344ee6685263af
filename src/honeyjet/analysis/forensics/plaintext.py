"""Text from plain-text and HTML jobs, and one normal form for every extractor's text (pure, total)."""

from __future__ import annotations

import codecs
import re
from html.parser import HTMLParser

_CONTROLS = re.compile(r"[\x00-\x08\x0b\x0d-\x1f\x7f-\x9f]")
_NEWLINES = re.compile(r"\r\n?")


class Text:
    """Normalised text: LF line ends, form feeds as newlines, no other control characters.

    ``first_page_end`` is the length of the first page (up to the first form feed) or None.
    """

    __slots__ = ("text", "first_page_end", "truncated")

    def __init__(self, text: str = "", first_page_end: int | None = None, truncated: bool = False):
        self.text = text
        self.first_page_end = first_page_end
        self.truncated = truncated


def normalise(raw: str, max_chars: int) -> Text:
    text = _NEWLINES.sub("\n", raw[: max_chars * 2])
    first_page_end = None
    ff = text.find("\x0c")
    if ff != -1:
        first_page_end = len(_CONTROLS.sub("", text[:ff]))
    text = _CONTROLS.sub("", text.replace("\x0c", "\n"))
    truncated = len(text) > max_chars or len(raw) > max_chars * 2
    return Text(text[:max_chars], first_page_end, truncated)


def decode_bytes(data: bytes, max_chars: int) -> str:
    """Bytes of a text job as str: a BOM decides, then UTF-8 if it is valid, else CP1252/Latin-1."""
    head = data[: max_chars * 4 + 4]
    for bom, codec in ((codecs.BOM_UTF8, "utf-8"), (codecs.BOM_UTF16_LE, "utf-16-le"), (codecs.BOM_UTF16_BE, "utf-16-be")):
        if head.startswith(bom):
            return head[len(bom) :].decode(codec, "replace")
    try:
        return head.decode("utf-8")
    except UnicodeDecodeError as exc:
        if exc.start >= len(head) - 4:  # a character cut by the read limit
            return head[: exc.start].decode("utf-8")
    try:
        return head.decode("cp1252")
    except UnicodeDecodeError:
        return head.decode("latin-1")


def plain_text(data: bytes, max_chars: int) -> Text:
    return normalise(decode_bytes(data, max_chars), max_chars)


class _HTMLText(HTMLParser):
    _BLOCK = frozenset("p br div li tr h1 h2 h3 h4 h5 h6 title table ul ol pre blockquote section article header footer".split())
    _SKIP = frozenset(("script", "style", "head"))

    def __init__(self, max_chars: int):
        super().__init__(convert_charrefs=True)
        self.max_chars = max_chars
        self.parts: list[str] = []
        self.size = 0
        self.skip = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in self._SKIP:
            self.skip += 1
        elif tag in self._BLOCK:
            self._add("\n")
        if tag == "a":  # link targets are what spam is about
            for name, value in attrs:
                if name == "href" and value:
                    self._add(f" {value} ")

    def handle_endtag(self, tag: str) -> None:
        if tag in self._SKIP and self.skip:
            self.skip -= 1
        elif tag in self._BLOCK:
            self._add("\n")

    def handle_data(self, data: str) -> None:
        if not self.skip:
            self._add(data)

    def _add(self, s: str) -> None:
        if self.size < self.max_chars:
            self.parts.append(s)
            self.size += len(s)


def html_text(data: bytes, max_chars: int) -> Text:
    parser = _HTMLText(max_chars)
    try:
        parser.feed(decode_bytes(data, max_chars * 4))
        parser.close()
    except Exception:  # noqa: BLE001 - keep what was read before the parser gave up
        pass
    text = re.sub(r"\n[ \t]*\n+", "\n\n", "".join(parser.parts))
    return normalise(text.strip() + "\n" if text.strip() else "", max_chars)
