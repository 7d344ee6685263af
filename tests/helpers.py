"""Shared test helpers: fixed devices and engine drivers."""

from __future__ import annotations

import base64
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable

import pytest

from honeyjet.persona.device import Device
from honeyjet.persona.identity import Identity
from honeyjet.persona.model import load_persona
from honeyjet.persona.state import DeviceState
from honeyjet.persona.vfs import MemoryBlobs
from honeyjet.protocols.outputs import CaptureData, CaptureEnd, CaptureStart, Emit, Send

# a copy of ../shared/corpus (tests/test_corpus_replay.py checks it is current when the original is present)
CORPUS = Path(__file__).resolve().parent / "data" / "corpus" / "probes.json"
SHARED_CORPUS = Path(__file__).resolve().parents[2] / "shared" / "corpus" / "probes.json"
T0 = 1_790_000_000.0  # a fixed "now" for deterministic replies


def require(ok: Any, what: str) -> None:
    """A real client or service a test needs. Outside CI a missing one skips the test (a quick
    local loop); under `.ci/run` (HONEYJET_CI=1), which installs every one of them, it fails:
    a skipped real-client test proves nothing."""
    if ok:
        return
    if os.environ.get("HONEYJET_CI") == "1":
        pytest.fail(f"{what}: .ci/run installs it, so CI must not skip this test", pytrace=False)
    pytest.skip(what)


def fixed_identity(persona_id: str = "hp-laserjet-4250") -> Identity:
    return Identity(
        persona=persona_id,
        install_id="0" * 32,
        serial="CNBJL00199",
        mac="00:1B:78:41:9F:6E",
        hostname="NPI419F6E",
        page_count_origin=100000,
        pages_per_day=10.0,
        created=T0 - 86400 * 10,
    )


def make_device(persona_id: str = "hp-laserjet-4250", *, state: DeviceState | None = None, blobs: Any = None) -> Device:
    persona = load_persona(persona_id)
    return Device(
        persona,
        fixed_identity(persona_id),
        state or DeviceState(None),
        blobs or MemoryBlobs(),
        clock=lambda: T0,
    )


@dataclass
class Run:
    sent: bytes = b""
    events: list[tuple[str, dict]] = field(default_factory=list)
    captures: list[dict] = field(default_factory=list)

    def ids(self) -> list[str]:
        return [e for e, _ in self.events]

    def of(self, eventid: str) -> list[dict]:
        return [f for e, f in self.events if e == eventid]


def drive(engine: Any, chunks: Iterable[bytes], *, eof: bool = True) -> Run:
    """Feed chunks, then EOF; collect replies, events and captures."""
    run = Run()
    sent = bytearray()
    current: dict | None = None

    def take(outputs: list) -> None:
        nonlocal current
        for o in outputs:
            if isinstance(o, Send):
                sent.extend(o.data)
            elif isinstance(o, Emit):
                run.events.append((o.eventid, dict(o.fields)))
            elif isinstance(o, CaptureStart):
                assert current is None, "captures must not nest"
                current = {"kind": o.kind, "meta": dict(o.meta), "data": bytearray(), "end": None}
            elif isinstance(o, CaptureData):
                assert current is not None, "data outside a capture"
                current["data"].extend(o.data)
            elif isinstance(o, CaptureEnd):
                assert current is not None
                current["end"] = dict(o.meta)
                current["data"] = bytes(current["data"])
                run.captures.append(current)
                current = None

    for chunk in chunks:
        take(engine.feed(chunk))
    if eof:
        take(engine.eof())
        assert current is None, "capture left open after EOF"
    run.sent = bytes(sent)
    return run


def split_at(data: bytes, offsets: Iterable[int]) -> list[bytes]:
    out, last = [], 0
    for off in sorted(set(o for o in offsets if 0 < o < len(data))):
        out.append(data[last:off])
        last = off
    out.append(data[last:])
    return out


def corpus(port: int | None = None) -> list[dict]:
    entries = json.loads(CORPUS.read_text())
    for e in entries:
        e["payload"] = base64.b64decode(e["payload_b64"])
    return [e for e in entries if port is None or e["port"] == port]


def tcp_exchange(port: int, payload: bytes | list[bytes], *, timeout: float = 5.0, half_close: bool = True) -> bytes:
    """Blocking client: send (chunks as separate writes), half-close, read until the server closes."""
    import socket

    with socket.create_connection(("127.0.0.1", port), timeout) as s:
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        for piece in payload if isinstance(payload, list) else [payload]:
            s.sendall(piece)
        if half_close:
            s.shutdown(socket.SHUT_WR)
        got = b""
        try:
            while chunk := s.recv(65536):
                got += chunk
        except ConnectionResetError:
            pass
        return got


def ghostscript_page(path: Path, text: str) -> Path:
    """A one-page PostScript document made by Ghostscript's ps2write (a real driver's output)."""
    import shutil
    import subprocess

    gs = shutil.which("gs")
    assert gs, "gs is not installed: .ci/run installs ghostscript (apt)"
    subprocess.run(
        [gs, "-q", "-dSAFER", "-dNOPAUSE", "-dBATCH", "-sDEVICE=ps2write", f"-sOutputFile={path}", "-c",
         f"/Helvetica findfont 24 scalefont setfont 72 700 moveto ({text}) show showpage"],
        check=True, timeout=60,
    )
    return path
