"""Indicators in extracted job text (pure, total, bounded): URLs, domains, e-mail
addresses, phone numbers, IPv4 addresses and checksum-verified wallet addresses.

The text is refanged first (``hxxp``, ``[.]``, ``(.)``, ``[dot]``, ``[at]``, ``[:]`` …);
``offset`` is a character offset into the refanged text and ``raw_offset`` the offset
of the same character in the text as given. Results are deduplicated by (type, value),
keeping the first occurrence, ordered by offset, and capped.
"""

from __future__ import annotations

import bisect
import ipaddress
import re
from functools import lru_cache
from typing import Any, Iterable

from honeyjet.analysis.forensics import wallets

MAX_INDICATORS = 500
MAX_TEXT = 1 << 20  # characters looked at
DEFAULT_PHONE_REGIONS = ("US", "GB", "DE", "FR", "IN")
#: special-use names (RFC 2606, RFC 6761, RFC 7686) that spam and tests use; not all are in the PSL
RESERVED_TLDS = ("example", "invalid", "test", "localhost", "onion")

# -- refanging ------------------------------------------------------------------------------
_REFANG = re.compile(
    r"(?P<scheme>\b(?:h(?:xx|\*\*|XX)ps?|fxp)(?=\[?:))"
    r"|(?P<colon>\[:\]|\[://\])"
    r"|(?P<dot>\s?(?:\[\.\]|\(\.\)|\{\.\}|\[dot\]|\(dot\)|\{dot\})\s?)"
    r"|(?P<at>\s?(?:\[at\]|\(at\)|\{at\}|\[@\]|\(@\))\s?)",
    re.IGNORECASE,
)


def refang(text: str) -> tuple[str, list[tuple[int, int]]]:
    """The refanged text and anchors ``(new_offset, old_offset)`` where lengths changed."""
    out: list[str] = []
    anchors: list[tuple[int, int]] = []
    last = 0
    new_len = 0
    for m in _REFANG.finditer(text):
        out.append(text[last : m.start()])
        new_len += m.start() - last
        kind = m.lastgroup
        token = m.group()
        if kind == "scheme":
            low = token.lower()
            rep = "ftp" if low == "fxp" else ("https" if low.endswith("s") else "http")
        elif kind == "colon":
            rep = "://" if "/" in token else ":"
        elif kind == "dot":
            rep = "."
        else:
            rep = "@"
        out.append(rep)
        new_len += len(rep)
        last = m.end()
        anchors.append((new_len, last))
    out.append(text[last:])
    return "".join(out), anchors


def _raw_offset(anchors: list[tuple[int, int]], offset: int) -> int:
    i = bisect.bisect_right(anchors, (offset, 1 << 62)) - 1
    if i < 0:
        return offset
    new, old = anchors[i]
    return old + (offset - new)


# -- patterns ---------------------------------------------------------------------------------
_LABEL = r"(?:[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?)"
_HOST = rf"(?:{_LABEL}\.)+(?:xn--[a-z0-9-]{{1,59}}|[a-z]{{2,63}})"
_URL_CHARS = r"[^\s<>\"'`{}|\\^\[\]]"
_URL = re.compile(
    rf"\b(?:(?:https?|ftp)://{_URL_CHARS}{{1,2000}}|(?P<www>www\d{{0,3}}\.{_HOST})(?::\d{{1,5}})?(?:[/?#]{_URL_CHARS}{{0,2000}})?)",
    re.IGNORECASE,
)
_DOMAIN = re.compile(rf"(?<![\w.@-]){_HOST}(?![\w-]|\.[a-z0-9])", re.IGNORECASE)
_EMAIL = re.compile(rf"(?<![\w.%+-])[a-z0-9._%+-]{{1,64}}@{_HOST}(?![\w-]|\.[a-z0-9])", re.IGNORECASE)
_IPV4 = re.compile(r"(?<![\d.])(?:\d{1,3}\.){3}\d{1,3}(?![\d]|\.\d)")
_BTC58 = re.compile(r"(?<![0-9A-Za-z])[13][1-9A-HJ-NP-Za-km-z]{25,34}(?![0-9A-Za-z])")
_BECH32 = re.compile(r"(?<![0-9A-Za-z])(?:bc|tb)1[ac-hj-np-z02-9]{6,87}(?![0-9A-Za-z])", re.IGNORECASE)
_ETH = re.compile(r"(?<![0-9A-Za-z])0x[0-9a-fA-F]{40}(?![0-9A-Za-z])")
_XMR = re.compile(r"(?<![0-9A-Za-z])[48][1-9A-HJ-NP-Za-km-z]{94}(?:[1-9A-HJ-NP-Za-km-z]{11})?(?![0-9A-Za-z])")
_TRAILING = ".,;:!?'\"*>"
# file names that look like domains of a country-code TLD (print jobs are full of them)
_FILE_TLDS = frozenset("ps pl py md sh rs so cs do sc".split())


@lru_cache(maxsize=1)
def _extractor() -> Any:
    import tldextract

    # the bundled public-suffix snapshot only: no download, no cache writes
    return tldextract.TLDExtract(suffix_list_urls=(), cache_dir=None, fallback_to_snapshot=True, extra_suffixes=RESERVED_TLDS)


def valid_domain(host: str) -> bool:
    """A host name under a public suffix (bundled list) or a reserved TLD, with a registrable label."""
    host = host.lower().rstrip(".")
    if len(host) > 253 or "." not in host:
        return False
    ext = _extractor()(host)
    if not ext.suffix or not ext.domain:
        return False
    if not ext.subdomain and "." not in ext.suffix and ext.suffix in _FILE_TLDS:
        return False
    return True


def _trim_url(url: str) -> str:
    url = url.rstrip(_TRAILING)
    while url.endswith(")") and url.count(")") > url.count("("):
        url = url[:-1].rstrip(_TRAILING)
    return url


class _Collector:
    def __init__(self, limit: int, size: int):
        self.limit = limit
        self.items: list[dict[str, Any]] = []
        self.seen: set[tuple[str, str]] = set()
        self.covered = bytearray(size)  # characters inside an indicator: a phone number may not overlap one

    def add(self, kind: str, value: str, start: int, end: int, *, key: str | None = None, **extra: Any) -> None:
        self.covered[start:end] = b"\x01" * (end - start)
        k = (kind, key if key is not None else value)
        if k in self.seen or len(self.items) >= self.limit * 4:
            return
        self.seen.add(k)
        item: dict[str, Any] = {"type": kind, "value": value, "offset": start}
        item.update(extra)
        self.items.append(item)

    def overlaps(self, start: int, end: int) -> bool:
        return 1 in self.covered[start:end]


def _urls(text: str, col: _Collector) -> None:
    for m in _URL.finditer(text):
        url = _trim_url(m.group())
        if m.group("www"):
            if not valid_domain(m.group("www")):
                continue
        elif len(url) <= url.index("//") + 2:
            continue
        col.add("url", url, m.start(), m.start() + len(url))


def _emails(text: str, col: _Collector) -> None:
    for m in _EMAIL.finditer(text):
        local, _, host = m.group().rpartition("@")
        if valid_domain(host) and not local.startswith(".") and ".." not in local:
            col.add("email", f"{local}@{host.lower()}", m.start(), m.end(), key=m.group().lower())
            col.add("domain", host.lower(), m.end() - len(host), m.end())


def _domains(text: str, col: _Collector) -> None:
    for m in _DOMAIN.finditer(text):
        host = m.group()
        if valid_domain(host):
            col.add("domain", host.lower(), m.start(), m.end())


def _ipv4(text: str, col: _Collector) -> None:
    for m in _IPV4.finditer(text):
        try:
            addr = ipaddress.IPv4Address(m.group())
        except ValueError:
            continue
        col.add("ipv4", str(addr), m.start(), m.end())


def _wallets(text: str, col: _Collector) -> None:
    for m in _BTC58.finditer(text):
        if wallets.btc_base58_valid(m.group()):
            col.add("btc", m.group(), m.start(), m.end(), checksummed=True)
    for m in _BECH32.finditer(text):
        if wallets.segwit_decode(m.group()) is not None:
            col.add("btc", m.group().lower(), m.start(), m.end(), checksummed=True)
    for m in _ETH.finditer(text):
        check = wallets.eth_checksum(m.group())
        if check is not None:
            col.add("eth", m.group(), m.start(), m.end(), key=m.group().lower(), checksummed=check)
    for m in _XMR.finditer(text):
        if wallets.xmr_valid(m.group()):
            col.add("xmr", m.group(), m.start(), m.end(), checksummed=True)


def _phones(text: str, col: _Collector, regions: Iterable[str]) -> None:
    import phonenumbers

    for region in regions:
        try:
            matcher = phonenumbers.PhoneNumberMatcher(text, region, leniency=phonenumbers.Leniency.VALID, max_tries=2000)
            for match in matcher:
                if col.overlaps(match.start, match.end):
                    continue  # digits of an address, a wallet, a URL, or a number read for an earlier region
                e164 = phonenumbers.format_number(match.number, phonenumbers.PhoneNumberFormat.E164)
                col.add("phone", e164, match.start, match.end)
        except Exception:  # noqa: BLE001 - a library failure must not lose the other indicators
            continue


def extract_indicators(
    text: str, *, limit: int = MAX_INDICATORS, phone_regions: Iterable[str] = DEFAULT_PHONE_REGIONS
) -> list[dict[str, Any]]:
    """Indicators in ``text``: ``{"type", "value", "offset", "raw_offset"}`` (+ ``checksummed`` for wallets).

    Types: ``url``, ``domain``, ``email``, ``phone`` (E.164), ``ipv4``, ``btc``, ``eth``, ``xmr``.
    """
    if not isinstance(text, str) or not text:
        return []
    text, anchors = refang(text[:MAX_TEXT])
    col = _Collector(limit, len(text))
    _urls(text, col)
    _emails(text, col)
    _domains(text, col)
    _ipv4(text, col)
    _wallets(text, col)
    _phones(text, col, phone_regions)
    items = sorted(col.items, key=lambda it: (it["offset"], it["type"]))[:limit]
    for it in items:
        it["raw_offset"] = _raw_offset(anchors, it["offset"])
        if it["type"] in ("btc", "eth", "xmr"):
            it.setdefault("checksummed", True)
    return items
