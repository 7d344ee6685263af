"""Variants of labelled payloads that mean the same thing to a printer.

The corpus is a sample; a classifier tuned to its bytes has learned nothing. These
transformations produce payloads a real printer treats the same way — PJL keyword case
and spacing, line endings, UEL framing, leading Ctrl-D, JOB/EOJ wrappers, path
encodings (URL, double URL, overlong UTF-8, backslashes), PostScript whitespace and
comments, HTTP header case — so evaluation can ask whether the verdict survives them.
Segmentation is varied by the replayer. Every function is deterministic for a seed.
"""

from __future__ import annotations

import random
import re
from typing import Callable

UEL = b"\x1b%-12345X"
_PJL_LINE = re.compile(rb"(@PJL)([ \t]*)([^\r\n]*)")
_QUOTED = re.compile(rb'("[^"\r\n]*")')


def _map_pjl(data: bytes, fn: Callable[[bytes], bytes]) -> bytes:
    """Apply ``fn`` to the part of each PJL line after ``@PJL`` outside quoted strings."""

    def line(m: re.Match[bytes]) -> bytes:
        parts = _QUOTED.split(m.group(3))
        body = b"".join(p if p.startswith(b'"') else fn(p) for p in parts)
        return m.group(1) + m.group(2) + body

    return _PJL_LINE.sub(line, data)


def pjl_lower(data: bytes) -> bytes:
    return _map_pjl(data, lambda b: b.lower())


def pjl_spacing(data: bytes) -> bytes:
    def space(b: bytes) -> bytes:
        b = re.sub(rb"[ ]+", b" \t ", b)
        return re.sub(rb"\s*=\s*", b" = ", b)

    out = _map_pjl(data, space)
    return re.sub(rb"@PJL(?=[A-Za-z])", b"@PJL ", out)


def lf_only(data: bytes) -> bytes:
    return data.replace(b"\r\n", b"\n")


def crlf(data: bytes) -> bytes:
    return re.sub(rb"(?<!\r)\n", b"\r\n", data)


def without_uel(data: bytes) -> bytes:
    out = data.replace(UEL, b"")
    return out if out.strip() else data


def with_uel(data: bytes) -> bytes:
    body = data if data.startswith(UEL) else UEL + data
    return body if body.endswith(UEL) else body + UEL


def ctrl_d(data: bytes) -> bytes:
    return b"\x04" + data


def job_wrapper(data: bytes) -> bytes:
    """Put the PJL lines inside ``@PJL JOB NAME="x"`` … ``@PJL EOJ``."""
    body = data[len(UEL):] if data.startswith(UEL) else data
    if body.endswith(UEL):
        body = body[: -len(UEL)]
    return UEL + b'@PJL JOB NAME="Document"\r\n' + body + (b"" if body.endswith(b"\n") else b"\r\n") + \
        b"@PJL EOJ\r\n" + UEL


_DOTDOT = re.compile(rb"\.\.(?=[/\\])")


def path_url(data: bytes) -> bytes:
    return _DOTDOT.sub(b"%2e%2e", data)


def path_double_url(data: bytes) -> bytes:
    return _DOTDOT.sub(b"%252e%252e", data)


def path_overlong(data: bytes) -> bytes:
    return _DOTDOT.sub(b"%c0%ae%c0%ae", data)


def path_backslash(data: bytes) -> bytes:
    """``../`` → ``..\\``; inside PostScript strings a backslash must itself be escaped."""
    sep = b"\\\\" if b"%!" in data[:200] else b"\\"
    return data.replace(b"../", b".." + sep)


def ps_whitespace(data: bytes) -> bytes:
    """Extra blanks, a comment line and CRLF line ends in PostScript (outside strings)."""
    start = data.find(b"%!")
    if start < 0:
        return data
    out = bytearray(data[:start])
    depth = 0
    i = start
    while i < len(data):
        c = data[i]
        if c == 0x5C and depth and i + 1 < len(data):  # escaped char inside a string
            out += data[i:i + 2]
            i += 2
            continue
        if c == 0x28:
            depth += 1
        elif c == 0x29 and depth:
            depth -= 1
        if not depth and c == 0x0A:
            out += b"  % honeyjet variant\r\n"
        elif not depth and c == 0x20:
            out += b" \t "
        else:
            out.append(c)
        i += 1
    return bytes(out)


_PS_ESC = {ord("n"): b"\n", ord("r"): b"\r", ord("t"): b"\t", ord("b"): b"\b", ord("f"): b"\f",
           ord("\\"): b"\\", ord("("): b"(", ord(")"): b")"}


def ps_hex_strings(data: bytes) -> bytes:
    """Every PostScript string literal ``(…)`` rewritten as a hex string ``<…>`` (same value)."""
    start = data.find(b"%!")
    if start < 0:
        return data
    out = bytearray(data[:start])
    i, n = start, len(data)
    while i < n:
        c = data[i]
        if c == 0x25:  # a comment runs to the end of the line
            j = data.find(b"\n", i)
            j = n if j < 0 else j
            out += data[i:j]
            i = j
            continue
        if c != 0x28:
            out.append(c)
            i += 1
            continue
        depth, j, value = 1, i + 1, bytearray()
        while j < n and depth:
            b = data[j]
            if b == 0x5C and j + 1 < n:
                nxt = data[j + 1]
                if 0x30 <= nxt <= 0x37:
                    k = j + 1
                    while k < min(j + 4, n) and 0x30 <= data[k] <= 0x37:
                        k += 1
                    value.append(int(data[j + 1:k], 8) & 0xFF)
                    j = k
                    continue
                value += _PS_ESC.get(nxt, b"" if nxt in (0x0A, 0x0D) else bytes([nxt]))
                j += 2
                continue
            if b == 0x28:
                depth += 1
            elif b == 0x29:
                depth -= 1
                if not depth:
                    break
            value.append(b)
            j += 1
        if depth:  # unterminated: leave the rest alone
            out += data[i:]
            break
        out += b"<" + value.hex().encode() + b">"
        i = j + 1
    return bytes(out)


def pjl_trailing_blanks(data: bytes) -> bytes:
    return re.sub(rb"(@PJL[^\r\n]*?)(\r?\n)", rb"\1  \t\2", data)


def path_encoded_backslash(data: bytes) -> bytes:
    return data.replace(b"../", b"..%5c")


def socks5_greeting(data: bytes) -> bytes:
    return b"\x05\x02\x00\x02" if data[:1] in (b"\x04", b"\x05") else data


def telnet_other_options(data: bytes) -> bytes:
    end = 0
    while end + 2 < len(data) and data[end] == 0xFF:
        end += 3
    return b"\xff\xfd\x18\xff\xfd\x20\xff\xfb\x01" + data[end:] if end else data


def http_connect(data: bytes) -> bytes:
    m = re.match(rb"^GET https?://([^/\s]+)\S* HTTP/1\.[01]\r\n", data)
    if not m:
        return data
    host = m.group(1).split(b":")[0]
    return b"CONNECT " + host + b":443 HTTP/1.1\r\nHost: " + host + b":443\r\n\r\n"


def http_header_case(data: bytes) -> bytes:
    end = data.find(b"\r\n\r\n")
    if end < 0:
        return data
    head, rest = data[:end], data[end:]
    lines = head.split(b"\r\n")
    out = [lines[0]] + [ln.split(b":", 1)[0].lower() + b":" + ln.split(b":", 1)[1] if b":" in ln else ln for ln in lines[1:]]
    return b"\r\n".join(out) + rest


def text_upper(data: bytes) -> bytes:
    return data.upper()


def tls12_record(data: bytes) -> bytes:
    return b"\x16\x03\x03" + data[3:] if data.startswith(b"\x16\x03") else data


# (name, applies(entry, payload), transform)
def _is_pjl(e: dict, b: bytes) -> bool:
    return b"@PJL" in b and e.get("port") == 9100 and not b.lstrip().startswith((b"POST", b"GET", b"PUT"))


def _has_traversal(e: dict, b: bytes) -> bool:
    return bool(_DOTDOT.search(b))


def _is_ps(e: dict, b: bytes) -> bool:
    return b"%!" in b[:200] and e.get("port") == 9100


def _is_http(e: dict, b: bytes) -> bool:
    return bool(re.match(rb"^[A-Z]{3,7} \S+ HTTP/1\.\d\r\n", b))


def _is_text(e: dict, b: bytes) -> bool:
    return e.get("port") == 9100 and not b.startswith((b"\x1b", b"%", b"@", b"\x04", b"\x05", b"\x16", b"\xff")) and \
        not _is_http(e, b) and len(b) > 40 and sum(32 <= c < 127 or c in (9, 10, 12, 13) for c in b) > 0.95 * len(b)


TRANSFORMS: list[tuple[str, Callable[[dict, bytes], bool], Callable[[bytes], bytes]]] = [
    ("pjl-lowercase", _is_pjl, pjl_lower),
    ("pjl-spacing", _is_pjl, pjl_spacing),
    ("pjl-lf", _is_pjl, lf_only),
    ("pjl-no-uel", lambda e, b: _is_pjl(e, b) and b.startswith(UEL) and b"JOB PASSWORD" not in b, without_uel),
    ("pjl-uel", lambda e, b: _is_pjl(e, b) and not b.startswith(UEL), with_uel),
    ("pjl-ctrl-d", _is_pjl, ctrl_d),
    ("pjl-job-wrapper", lambda e, b: _is_pjl(e, b) and b"@PJL JOB" not in b and b"ENTER LANGUAGE" not in b, job_wrapper),
    ("path-url", _has_traversal, path_url),
    ("path-double-url", _has_traversal, path_double_url),
    ("path-overlong-utf8", _has_traversal, path_overlong),
    ("path-backslash", lambda e, b: b"../" in b, path_backslash),
    ("ps-whitespace", _is_ps, ps_whitespace),
    ("ps-crlf", _is_ps, crlf),
    ("http-header-case", _is_http, http_header_case),
    ("text-uppercase", _is_text, text_upper),
    ("text-lf", _is_text, lf_only),
    ("tls-1.2-record", lambda e, b: b.startswith(b"\x16\x03"), tls12_record),
    ("ps-hex-strings", _is_ps, ps_hex_strings),
    ("pjl-trailing-blanks", _is_pjl, pjl_trailing_blanks),
    ("path-encoded-backslash", lambda e, b: b"../" in b and b"%!" not in b[:200], path_encoded_backslash),
    ("socks5-greeting", lambda e, b: e.get("port") == 9100 and b[:2] in (b"\x04\x01", b"\x04\x02", b"\x05\x01"), socks5_greeting),
    ("telnet-other-options", lambda e, b: b[:1] == b"\xff", telnet_other_options),
    ("http-connect", lambda e, b: e.get("port") == 9100 and bool(re.match(rb"^GET https?://", b)), http_connect),
]


def variants(entry: dict, payload: bytes) -> list[tuple[str, bytes]]:
    """Every applicable transformation of one corpus payload that changes its bytes."""
    out = []
    for name, applies, fn in TRANSFORMS:
        try:
            if applies(entry, payload):
                changed = fn(payload)
                if changed != payload:
                    out.append((name, changed))
        except Exception:  # a transform must never break evaluation
            continue
    return out


def random_cuts(data: bytes, seed: int, pieces: int = 6) -> list[int]:
    """Sorted cut offsets for segmenting ``data`` into up to ``pieces`` writes."""
    if len(data) < 2:
        return []
    rnd = random.Random(seed)
    return sorted(set(rnd.randrange(1, len(data)) for _ in range(min(pieces - 1, len(data) - 1))))
