"""64-bit SimHash for grouping near-duplicate jobs (pure, total, bounded).

Features are word 3-shingles of normalised text (lower case, every digit run collapsed
to ``0``, whitespace collapsed) or, for jobs without text, byte 8-grams of the first
64 KiB. Each feature is hashed with BLAKE2b-64; a fingerprint bit is set when more
features have it set than not. Bits are counted per byte column with ``Counter``, so a
fingerprint costs one hash per feature plus a constant.
"""

from __future__ import annotations

import hashlib
import re
from collections import Counter
from typing import Iterable

MAX_FEATURES = 65536
BYTES_WINDOW = 8
MAX_BYTES = 65536

_WORD = re.compile(r"\w+", re.UNICODE)
_DIGITS = re.compile(r"\d+")


def normalise(text: str) -> str:
    """Lower case, digit runs → ``0``, whitespace runs → one space."""
    return " ".join(_DIGITS.sub("0", text.lower()).split())


def text_features(text: str, n: int = 3) -> list[str]:
    """Word ``n``-shingles of the normalised text (the words themselves when fewer than ``n``)."""
    words = _WORD.findall(normalise(text))[: MAX_FEATURES + n]
    if len(words) < n:
        return words
    return [" ".join(words[i : i + n]) for i in range(min(len(words) - n + 1, MAX_FEATURES))]


def byte_features(data: bytes, n: int = BYTES_WINDOW) -> list[bytes]:
    head = bytes(data[:MAX_BYTES])
    if len(head) < n:
        return [head] if head else []
    return [head[i : i + n] for i in range(len(head) - n + 1)]


def simhash64(features: Iterable[str | bytes]) -> int:
    """The 64-bit SimHash of the features (0 for none)."""
    digests = bytearray()
    count = 0
    for feature in features:
        if count >= MAX_FEATURES:
            break
        raw = feature.encode("utf-8", "surrogatepass") if isinstance(feature, str) else bytes(feature)
        digests += hashlib.blake2b(raw, digest_size=8).digest()
        count += 1
    if not count:
        return 0
    half = count / 2
    value = 0
    for column in range(8):  # byte 0 of the digest is the most significant byte
        ones = [0] * 8
        for byte, times in Counter(digests[column::8]).items():
            for bit in range(8):
                if byte >> bit & 1:
                    ones[bit] += times
        for bit in range(8):
            if ones[bit] > half:
                value |= 1 << ((7 - column) * 8 + bit)
    return value


def simhash_text(text: str) -> int:
    return simhash64(text_features(text))


def simhash_bytes(data: bytes) -> int:
    return simhash64(byte_features(data))


def to_hex(value: int) -> str:
    return f"{value & 0xFFFFFFFFFFFFFFFF:016x}"


def hamming(a: int | str, b: int | str) -> int:
    """Bits that differ between two fingerprints (ints or 16-digit hex strings)."""
    x = int(a, 16) if isinstance(a, str) else a
    y = int(b, 16) if isinstance(b, str) else b
    return ((x ^ y) & 0xFFFFFFFFFFFFFFFF).bit_count()
