"""CUPS browse datagrams (UDP 631), parsed, never acted on.

cups-browsed listens on UDP 631 for one-line announcements
``<type> <state> <uri> "<location>" "<info>" "<make-and-model>" …`` (type and state in
hex) and, before the fix for CVE-2024-47176, added the announced printer by fetching
its attributes from ``<uri>`` — the first step of the 2024 CUPS remote-code-execution
chain. A printer does not answer these and neither does honeyjet: :func:`parse` turns a
datagram into fields for ``honeyjet.browse.packet``; the URI is recorded, never
contacted. Total on any bytes.
"""

from __future__ import annotations

import re
from typing import Any

from honeyjet.text import escape

MAX_DATAGRAM = 2048  # cups-browsed reads at most this much per packet

_LINE = re.compile(
    rb"^\s*([0-9A-Fa-f]{1,8})\s+([0-9A-Fa-f]{1,8})\s+(\S{1,1024})"
    rb'(?:\s+"([^"]{0,512})")?(?:\s+"([^"]{0,512})")?(?:\s+"([^"]{0,512})")?'
)


def parse(data: bytes) -> dict[str, Any]:
    """Fields of one browse datagram (``valid`` is False when it is not a browse line)."""
    line = data[:MAX_DATAGRAM].split(b"\n", 1)[0]
    m = _LINE.match(line)
    fields: dict[str, Any] = {"size": len(data), "valid": m is not None}
    if m is None:
        fields["raw"] = escape(data[:256], 256)
        return fields
    ptype, state, uri, location, info, model = m.groups()
    fields.update(
        printer_type=int(ptype, 16),
        printer_state=int(state, 16),
        uri=escape(uri, 512),
        location=escape(location or b"", 256),
        info=escape(info or b"", 256),
        make_model=escape(model or b"", 256),
    )
    return fields
