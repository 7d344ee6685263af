"""What a sans-IO protocol engine hands back to its transport.

An engine is fed bytes and returns a list of these small immutable records, in order.
The transport (``services/``) sends :class:`Send` data, turns :class:`Emit` into
session-bound events, and streams ``Capture*`` records into the artifact store.
Nothing here touches sockets, files or the event loop.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Mapping


@dataclass(frozen=True, slots=True)
class Send:
    """Bytes to write to the peer."""

    data: bytes


@dataclass(frozen=True, slots=True)
class Emit:
    """An event to record. ``eventid`` must be in :mod:`honeyjet.events`' catalogue."""

    eventid: str
    message: str
    fields: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class CaptureStart:
    """A captured object (print job, uploaded file) begins.

    ``kind`` is ``"job"`` or ``"file"``; ``meta`` carries what is known so far.
    Captures never nest: a CaptureEnd always precedes the next CaptureStart.
    """

    kind: str
    meta: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class CaptureData:
    data: bytes


@dataclass(frozen=True, slots=True)
class CaptureEnd:
    """The capture is complete. ``meta`` adds what was learnt while receiving it."""

    meta: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Close:
    """The engine wants the connection closed after everything before it is sent."""

    reason: str


Output = Send | Emit | CaptureStart | CaptureData | CaptureEnd | Close


def sent_bytes(outputs: list[Output]) -> bytes:
    """Concatenate the Send payloads of ``outputs`` (handy in tests and replays)."""
    return b"".join(o.data for o in outputs if isinstance(o, Send))


def coalesce(outputs: list[Output]) -> list[Output]:
    """Merge adjacent Send and adjacent CaptureData records.

    Engines emit many small pieces; merging makes output comparable regardless of how
    the input was chunked, and lets a transport write once per feed.
    """
    merged: list[Output] = []
    for out in outputs:
        if merged:
            last = merged[-1]
            if isinstance(out, Send) and isinstance(last, Send):
                merged[-1] = Send(last.data + out.data)
                continue
            if isinstance(out, CaptureData) and isinstance(last, CaptureData):
                merged[-1] = CaptureData(last.data + out.data)
                continue
        merged.append(out)
    return merged
