"""Cryptocurrency address checks (pure, total): only addresses whose checksum verifies count.

* Bitcoin Base58Check (P2PKH ``1…``, P2SH ``3…``): version byte + 20-byte hash + the
  first 4 bytes of SHA-256(SHA-256(version + hash)).
* Bitcoin segwit (``bc1…``/``tb1…``): BIP-173 bech32 for witness version 0, BIP-350
  bech32m for versions 1–16, with the BIP-141 program-length rules.
* Ethereum ``0x`` + 40 hex digits: mixed case must match EIP-55 (keccak-256 of the
  lower-case hex); all-lower / all-upper carry no checksum.
* Monero: Monero's block-wise Base58 (8 bytes ↔ 11 characters), network byte + keys +
  the first 4 bytes of keccak-256 of everything before them.
"""

from __future__ import annotations

import hashlib

from Crypto.Hash import keccak

B58_ALPHABET = "123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz"
_B58_INDEX = {c: i for i, c in enumerate(B58_ALPHABET)}

BECH32_CHARSET = "qpzry9x8gf2tvdw0s3jn54khce6mua7l"
_BECH32_INDEX = {c: i for i, c in enumerate(BECH32_CHARSET)}
_BECH32_CONST = 1
_BECH32M_CONST = 0x2BC830A3
_BECH32_GEN = (0x3B6A57B2, 0x26508E6D, 0x1EA119FA, 0x3D4233DD, 0x2A1462B3)

# Monero: bytes in a block of this many characters (index = characters)
_XMR_FULL_BLOCK, _XMR_FULL_CHARS = 8, 11
_XMR_BLOCK_BYTES = {0: 0, 2: 1, 3: 2, 5: 3, 6: 4, 7: 5, 9: 6, 10: 7, 11: 8}
#: network bytes of main-net standard (18), integrated (19) and subaddresses (42)
XMR_NETWORK_BYTES = {18: "standard", 19: "integrated", 42: "subaddress"}


def keccak256(data: bytes) -> bytes:
    return keccak.new(digest_bits=256, data=data).digest()


def _sha256d(data: bytes) -> bytes:
    return hashlib.sha256(hashlib.sha256(data).digest()).digest()


def _b58_number(text: str) -> int | None:
    """The Base58 digits as one number; None on a foreign character."""
    num = 0
    for ch in text:
        val = _B58_INDEX.get(ch)
        if val is None:
            return None
        num = num * 58 + val
    return num


def b58decode(text: str) -> bytes | None:
    """Bitcoin Base58 (leading ``1`` = zero byte); None on a foreign character."""
    num = _b58_number(text) if len(text) <= 128 else None
    if num is None:
        return None
    body = num.to_bytes((num.bit_length() + 7) // 8, "big") if num else b""
    zeros = len(text) - len(text.lstrip("1"))
    return b"\x00" * zeros + body


def btc_base58_valid(address: str) -> bool:
    """P2PKH (version 0x00) or P2SH (0x05) with a verifying Base58Check checksum."""
    raw = b58decode(address)
    if raw is None or len(raw) != 25 or raw[0] not in (0x00, 0x05):
        return False
    return _sha256d(raw[:21])[:4] == raw[21:]


def _bech32_polymod(values: list[int]) -> int:
    chk = 1
    for v in values:
        top = chk >> 25
        chk = (chk & 0x1FFFFFF) << 5 ^ v
        for i, g in enumerate(_BECH32_GEN):
            if (top >> i) & 1:
                chk ^= g
    return chk


def _hrp_expand(hrp: str) -> list[int]:
    return [ord(c) >> 5 for c in hrp] + [0] + [ord(c) & 31 for c in hrp]


def _convert_bits(data: list[int], frombits: int, tobits: int) -> list[int] | None:
    """Regroup ``frombits``-bit values into ``tobits``-bit values (no padding allowed out)."""
    acc = bits = 0
    out: list[int] = []
    maxv = (1 << tobits) - 1
    for value in data:
        acc = (acc << frombits) | value
        bits += frombits
        while bits >= tobits:
            bits -= tobits
            out.append((acc >> bits) & maxv)
    if bits >= frombits or ((acc << (tobits - bits)) & maxv):
        return None  # more than 4 bits of padding, or non-zero padding
    return out


def segwit_decode(address: str) -> tuple[str, int, bytes] | None:
    """(hrp, witness version, program) of a valid ``bc1``/``tb1`` address, else None."""
    if len(address) > 90 or (address.lower() != address and address.upper() != address):
        return None
    addr = address.lower()
    pos = addr.rfind("1")
    hrp, data_part = addr[:pos], addr[pos + 1 :]
    if hrp not in ("bc", "tb") or len(data_part) < 7:
        return None
    data = [_BECH32_INDEX.get(c, -1) for c in data_part]
    if -1 in data:
        return None
    version = data[0]
    if version > 16:
        return None
    const = _bech32_polymod(_hrp_expand(hrp) + data)
    if const != (_BECH32_CONST if version == 0 else _BECH32M_CONST):
        return None
    program = _convert_bits(data[1:-6], 5, 8)
    if program is None or not 2 <= len(program) <= 40:
        return None
    if version == 0 and len(program) not in (20, 32):
        return None
    return hrp, version, bytes(program)


def eth_checksum(address: str) -> bool | None:
    """EIP-55: True when mixed case verifies, False when the address carries no checksum
    (all lower or all upper case), None when the mixed case is wrong (not an address)."""
    hexpart = address[2:]
    if hexpart.lower() == hexpart or hexpart.upper() == hexpart:
        return False
    digest = keccak256(hexpart.lower().encode("ascii")).hex()
    for ch, nibble in zip(hexpart, digest):
        if ch.isalpha() and ch.isupper() != (int(nibble, 16) >= 8):
            return None
    return True


def xmr_b58decode(text: str) -> bytes | None:
    """Monero Base58: 11-character blocks of 8 bytes, a shorter last block."""
    if len(text) > 256:
        return None
    out = bytearray()
    for start in range(0, len(text), _XMR_FULL_CHARS):
        block = text[start : start + _XMR_FULL_CHARS]
        size = _XMR_BLOCK_BYTES.get(len(block))
        num = _b58_number(block) if size else None
        if num is None or num >= 1 << (8 * size):
            return None  # overflows its block: not a canonical encoding
        out += num.to_bytes(size, "big")
    return bytes(out)


def xmr_valid(address: str) -> bool:
    raw = xmr_b58decode(address)
    if raw is None or len(raw) not in (69, 77) or raw[0] not in XMR_NETWORK_BYTES:
        return False
    if (len(raw) == 77) != (raw[0] == 19):
        return False  # only integrated addresses carry the 8-byte payment id
    return keccak256(raw[:-4])[:4] == raw[-4:]
