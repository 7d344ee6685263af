"""An :class:`~honeyjet.outputs.export.Export` as one MISP event (``{"Event": {…}}``, MISP's JSON format).

Attributes, with the types and categories of MISP's type list:

=================  ==================  ================  ======
what               type                category          to_ids
=================  ==================  ================  ======
malicious source   ``ip-src``          Network activity  yes
job content        ``sha256``          Payload delivery  yes
printed URL        ``url``             Network activity  yes
printed domain     ``domain``          Network activity  yes
printed e-mail     ``email``           Payload delivery  yes
printed IPv4       ``ip-dst``          Network activity  no
printed phone      ``phone-number``    Financial fraud   no
Bitcoin / Monero   ``btc`` / ``xmr``   Financial fraud   yes
Ethereum           ``text``            Financial fraud   no  (MISP has no Ethereum type)
=================  ==================  ================  ======

A source's comment names its classes, rules, sessions and sensors, and it carries the tags
``honeyjet:class="…"`` and ``honeyjet:severity="…"``; job-derived attributes carry
``honeyjet:campaign="…"``. The event is tagged with the TLP level and the classes. Every
attribute has ``first_seen``/``last_seen``. The event's uuid is a UUIDv5 of its content and
each attribute's a UUIDv5 of the event's and its own type and value, so a re-export of the
same data is identical (and MISP sees the same event).
"""

from __future__ import annotations

import json
import re
import uuid
from datetime import datetime, timezone
from typing import Any

from honeyjet.outputs.export import Export

UTC = timezone.utc
NAMESPACE = uuid.UUID("a3c6e2f0-7d1b-5e8a-9c4f-2b7d0e6f1a35")
THREAT_LEVEL = {4: "1", 3: "1", 2: "2", 1: "3", 0: "4"}  # critical/high -> High … info -> Undefined
# indicator type -> (MISP type, category, to_ids)
_TYPES = {
    "url": ("url", "Network activity", True),
    "domain": ("domain", "Network activity", True),
    "email": ("email", "Payload delivery", True),
    "ipv4": ("ip-dst", "Network activity", False),
    "phone": ("phone-number", "Financial fraud", False),
    "btc": ("btc", "Financial fraud", True),
    "xmr": ("xmr", "Financial fraud", True),
    "eth": ("text", "Financial fraud", False),
}
_TAG_VALUE = re.compile(r"[A-Za-z0-9_.:-]{1,128}")


def _iso(dt: datetime) -> str:
    return dt.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%f+00:00")


def _tag(namespace: str, value: str) -> dict[str, str] | None:
    """A machine tag, only for values that cannot break its ``ns:key="value"`` syntax."""
    return {"name": f'honeyjet:{namespace}="{value}"'} if _TAG_VALUE.fullmatch(value) else None


def _tags(*tags: dict[str, str] | None) -> list[dict[str, str]]:
    out: list[dict[str, str]] = []
    for t in tags:
        if t is not None and t not in out:
            out.append(t)
    return out


def misp_event(export: Export, *, org: str = "honeyjet", tlp: str = "amber") -> dict[str, Any]:
    """The export as a MISP event (a JSON-ready dict)."""
    rows: list[dict[str, Any]] = []  # attributes without uuid (they depend on the event's)

    def attribute(kind: str, category: str, value: str, to_ids: bool, comment: str, first: datetime | None,
                  last: datetime | None, tags: list[dict[str, str]]) -> None:
        first = first or last or export.since
        last = max(first, last or first)
        row: dict[str, Any] = {"type": kind, "category": category, "value": value, "to_ids": to_ids, "distribution": "5",
                               "comment": comment[:1024], "first_seen": _iso(first), "last_seen": _iso(last),
                               "timestamp": str(int(last.timestamp()))}
        if tags:
            row["Tag"] = tags
        rows.append(row)

    for s in export.sources:
        comment = (f"{s.severity}: {', '.join(s.classes) or 'unclassified'}; rules {', '.join(s.rules) or 'none'}; "
                   f"{s.sessions} session(s); sensors {', '.join(s.sensors) or 'unknown'}")
        tags = _tags(*(_tag("class", c) for c in s.classes), _tag("severity", s.severity), *(_tag("campaign", c) for c in s.campaigns))
        attribute("ip-src", "Network activity", s.ip, True, comment, s.first, s.last, tags)
    for job in export.jobs:
        comment = f"print job content ({job.language or 'unknown'}), {job.captures} capture(s) from {len(job.sources)} source(s)"
        attribute("sha256", "Payload delivery", job.shasum, True, comment, job.first, job.last, _tags(_tag("campaign", job.campaign)))
    for ind in export.indicators:
        kind, category, to_ids = _TYPES[ind.type]
        comment = f"printed in {len(ind.jobs)} malicious print job(s)" + (" (Ethereum wallet)" if ind.type == "eth" else "")
        attribute(kind, category, ind.value, to_ids, comment, ind.first, ind.last, _tags(*(_tag("campaign", c) for c in ind.campaigns)))

    classes = sorted({c for s in export.sources for c in s.classes})
    event_uuid = uuid.uuid5(NAMESPACE, json.dumps([org, export.campaign, sorted((r["type"], r["value"], r["last_seen"]) for r in rows)]))
    for row in rows:
        row["uuid"] = str(uuid.uuid5(event_uuid, json.dumps([row["type"], row["value"]])))
    last = max((datetime.fromisoformat(r["last_seen"]) for r in rows), default=export.until)
    info = f"honeyjet printer honeypot: {len(export.sources)} malicious source(s) with severity >= {export.min_severity}"
    if export.campaign:
        info += f", campaign {export.campaign}"
    info += f", {export.since.astimezone(UTC):%Y-%m-%d %H:%M} to {export.until.astimezone(UTC):%Y-%m-%d %H:%M} UTC"
    return {"Event": {
        "uuid": str(event_uuid),
        "info": info,
        "date": last.astimezone(UTC).strftime("%Y-%m-%d"),
        "threat_level_id": THREAT_LEVEL[export.max_rank],
        "analysis": "2",
        "distribution": "0",
        "published": False,
        "timestamp": str(int(last.timestamp())),
        "Orgc": {"name": org, "uuid": str(uuid.uuid5(NAMESPACE, json.dumps(["org", org])))},
        "Tag": _tags({"name": f"tlp:{tlp}"}, *(_tag("class", c) for c in classes)),
        "Attribute": rows,
    }}
