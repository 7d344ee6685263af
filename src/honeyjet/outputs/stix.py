"""An :class:`~honeyjet.outputs.export.Export` as a STIX 2.1 bundle (plain JSON, no library at run time).

What the bundle holds:

* an ``identity`` for the organisation running the sensors (``where_sighted_refs``,
  ``created_by_ref``) and the TLP ``marking-definition`` every object is marked with;
* per malicious source: an ``ipv4-addr``/``ipv6-addr``, an ``indicator``
  (``[ipv4-addr:value = '…']``), the ``observed-data`` of its sessions and a ``sighting``;
* per job content: a ``file`` (SHA-256), its ``indicator``, ``observed-data`` and ``sighting``;
  phone numbers printed in it go into the indicator's description and ``x_honeyjet_phones``
  (STIX has no phone-number object);
* per URL, domain, e-mail address or IPv4 address printed in those jobs: the observable and an
  ``indicator``; per wallet address an ``indicator`` with a PCRE pattern matching the address
  in text and the custom property ``x_honeyjet_wallet`` (``currency``, ``address``), as STIX
  2.1 has no wallet object;
* per campaign (near-identical jobs): a ``campaign`` and ``indicates`` relationships from
  the indicators of its jobs and of the sources that sent them.

Ids are deterministic: observables use the specification's UUIDv5 over their
ID-contributing properties (so they equal any other producer's), the other objects UUIDv5
over honeyjet's namespace and what they describe. ``created`` is when the thing was first
seen and ``modified`` when it was last seen, so a re-export of the same data is identical and
a later one is a newer version of the same objects.
"""

from __future__ import annotations

import json
import re
import uuid
from datetime import datetime, timezone
from typing import Any

from honeyjet.outputs.export import WALLET_TYPES, Export, Indicator, Job, Source

UTC = timezone.utc
#: STIX 2.1 section 2.9: the namespace of deterministic Cyber-observable ids
SCO_NAMESPACE = uuid.UUID("00abedb4-aa42-466c-9c01-fed23315a9b7")
#: honeyjet's namespace for the ids of the other objects
NAMESPACE = uuid.UUID("5d1b0a8e-3f47-5c1e-9a2b-68f0c3e1d7a4")
IDENTITY_CREATED = "2024-01-01T00:00:00.000Z"
#: the TLP 1.0 marking definitions of STIX 2.1 (section 7.2.1.4), as the specification spells them
TLP_MARKINGS = {
    "white": "marking-definition--613f2e26-407d-48c7-9eca-b8e91df99dc9",
    "green": "marking-definition--34098fce-860f-48ae-8e50-ebd3cc5e41da",
    "amber": "marking-definition--f88d31f6-486f-44da-b317-01333bde0b82",
    "red": "marking-definition--5e57c739-391a-4eb3-b6be-7d15ca92d5ed",
}
MAX_COUNT = 999_999_999  # number_observed / count bound
_OBSERVABLE = {"url": "url", "domain": "domain-name", "email": "email-addr", "ipv4": "ipv4-addr"}
_LABEL = {"url": "URL", "domain": "domain", "email": "e-mail address", "ipv4": "IPv4 address",
          "btc": "Bitcoin", "eth": "Ethereum", "xmr": "Monero"}


def stamp(dt: datetime) -> str:
    """A STIX timestamp (UTC, millisecond precision)."""
    dt = dt.astimezone(UTC)
    return dt.strftime("%Y-%m-%dT%H:%M:%S.") + f"{dt.microsecond // 1000:03d}Z"


def sco_id(kind: str, contributing: dict[str, Any]) -> str:
    """The deterministic id of a Cyber-observable (UUIDv5 of its canonical JSON contributing properties)."""
    data = json.dumps(contributing, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return f"{kind}--{uuid.uuid5(SCO_NAMESPACE, data)}"


def object_id(kind: str, *key: str) -> str:
    return f"{kind}--{uuid.uuid5(NAMESPACE, json.dumps([kind, *key], ensure_ascii=False))}"


def pattern_string(value: str) -> str:
    """A STIX patterning string literal: quoted, with ``\\`` and ``'`` escaped."""
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


def tlp_marking(tlp: str) -> dict[str, Any]:
    level = "white" if tlp == "clear" else tlp
    return {"type": "marking-definition", "spec_version": "2.1", "id": TLP_MARKINGS[level], "created": "2017-01-20T00:00:00.000Z",
            "definition_type": "tlp", "name": f"TLP:{level.upper()}", "definition": {"tlp": level}}


class _Bundle:
    def __init__(self, export: Export, org: str, tlp: str):
        self.export = export
        self.objects: dict[str, dict[str, Any]] = {}
        self.marking = tlp_marking(tlp)
        self.identity = {
            "type": "identity", "spec_version": "2.1", "id": object_id("identity", org), "created": IDENTITY_CREATED,
            "modified": IDENTITY_CREATED, "name": org, "identity_class": "organization",
            "description": "Operator of honeyjet network-printer honeypot sensors.",
        }
        self.add(self.marking)
        self.add(self.identity)

    def add(self, obj: dict[str, Any]) -> str:
        self.objects.setdefault(obj["id"], obj)
        return obj["id"]

    def sdo(self, kind: str, key: tuple[str, ...], first: datetime, last: datetime, **props: Any) -> str:
        last = max(first, last)
        obj = {"type": kind, "spec_version": "2.1", "id": object_id(kind, *key), "created_by_ref": self.identity["id"],
               "created": stamp(first), "modified": stamp(last)}
        obj.update({k: v for k, v in props.items() if v not in (None, [], "")})
        obj["object_marking_refs"] = [self.marking["id"]]
        return self.add(obj)

    def observable(self, kind: str, **props: Any) -> str:
        contributing = {"hashes": props["hashes"]} if kind == "file" else {"value": props["value"]}
        return self.add({"type": kind, "spec_version": "2.1", "id": sco_id(kind, contributing), **props})

    def seen(self, key: tuple[str, ...], indicator: str, refs: list[str], first: datetime, last: datetime, count: int,
             description: str) -> None:
        """observed-data over ``refs`` and a sighting of ``indicator`` by the organisation."""
        count = min(max(count, 1), MAX_COUNT)
        observed = self.sdo("observed-data", key, first, last, first_observed=stamp(first), last_observed=stamp(max(first, last)),
                            number_observed=count, object_refs=refs)
        self.sdo("sighting", key, first, last, description=description, first_seen=stamp(first), last_seen=stamp(max(first, last)),
                 count=count, sighting_of_ref=indicator, observed_data_refs=[observed], where_sighted_refs=[self.identity["id"]])

    def relate(self, source: str, target: str, first: datetime, last: datetime) -> None:
        self.sdo("relationship", (source, "indicates", target), first, last, relationship_type="indicates",
                 source_ref=source, target_ref=target)

    def times(self, first: datetime | None, last: datetime | None) -> tuple[datetime, datetime]:
        first = first or last or self.export.since
        return first, max(first, last or first)


def _source(b: _Bundle, s: Source, campaigns: dict[str, str]) -> None:
    first, last = b.times(s.first, s.last)
    kind = "ipv4-addr" if s.version == 4 else "ipv6-addr"
    sco = b.observable(kind, value=s.ip)
    why = f"classes {', '.join(s.classes) or 'none'}; rules {', '.join(s.rules) or 'none'}"
    indicator = b.sdo(
        "indicator", ("source", s.ip), first, last, name=f"honeyjet: malicious source {s.ip}",
        description=(f"Source {s.ip} judged {s.severity} by honeyjet printer honeypots: {why}; "
                     f"{s.sessions} session(s), sensors {', '.join(s.sensors) or 'unknown'}."),
        indicator_types=["malicious-activity"], labels=list(s.classes), pattern=f"[{kind}:value = {pattern_string(s.ip)}]",
        pattern_type="stix", pattern_version="2.1", valid_from=stamp(first))
    b.seen(("source", s.ip), indicator, [sco], first, last, s.sessions,
           f"{s.sessions} session(s) from {s.ip}, worst verdict {s.severity}: {why}")
    for c in s.campaigns:
        if c in campaigns:
            b.relate(indicator, campaigns[c], first, last)


def _job(b: _Bundle, job: Job, observables: dict[tuple[str, str], str], campaigns: dict[str, str]) -> None:
    first, last = b.times(job.first, job.last)
    sco = b.observable("file", hashes={"SHA-256": job.shasum})
    phones = [v for k, v in job.indicators if k == "phone"]
    wallets = [f"{k} {v}" for k, v in job.indicators if k in WALLET_TYPES]
    text = f"Print job content ({job.language or 'unknown language'}) captured {job.captures} time(s)"
    text += f" from {len(job.sources)} source(s)"
    if job.campaign:
        text += f", campaign {job.campaign}"
    if phones:
        text += f"; phone numbers printed: {', '.join(phones)}"
    if wallets:
        text += f"; wallets printed: {', '.join(wallets)}"
    indicator = b.sdo(
        "indicator", ("job", job.shasum), first, last, name=f"honeyjet: print job {job.shasum[:12]}", description=text + ".",
        indicator_types=["malicious-activity"], pattern=f"[file:hashes.'SHA-256' = {pattern_string(job.shasum)}]",
        pattern_type="stix", pattern_version="2.1", valid_from=stamp(first), x_honeyjet_phones=phones)
    refs = [sco] + [observables[k] for k in job.indicators if k in observables]
    b.seen(("job", job.shasum), indicator, refs, first, last, job.captures, text + ".")
    if job.campaign in campaigns:
        b.relate(indicator, campaigns[job.campaign], first, last)


def _value(b: _Bundle, ind: Indicator, observables: dict[tuple[str, str], str], campaigns: dict[str, str]) -> None:
    first, last = b.times(ind.first, ind.last)
    shown = ind.value if len(ind.value) <= 200 else ind.value[:200] + "…"
    where = f"printed in {len(ind.jobs)} malicious print job(s)"
    if ind.campaigns:
        where += f" of campaign(s) {', '.join(ind.campaigns)}"
    if ind.type in WALLET_TYPES:
        label = _LABEL[ind.type]
        indicator = b.sdo(
            "indicator", ("text", ind.type, ind.value), first, last, name=f"honeyjet: {label} wallet {shown}",
            description=f"{label} wallet address {where}. The PCRE pattern matches the address in text.",
            indicator_types=["malicious-activity"], pattern=r"(?<![0-9A-Za-z])" + re.escape(ind.value) + r"(?![0-9A-Za-z])",
            pattern_type="pcre", valid_from=stamp(first), x_honeyjet_wallet={"currency": ind.type, "address": ind.value})
    else:
        kind = _OBSERVABLE[ind.type]
        label = _LABEL[ind.type]
        indicator = b.sdo(
            "indicator", ("text", ind.type, ind.value), first, last, name=f"honeyjet: {label} {shown}",
            description=f"{label[0].upper() + label[1:]} {where}.", indicator_types=["malicious-activity"],
            pattern=f"[{kind}:value = {pattern_string(ind.value)}]", pattern_type="stix", pattern_version="2.1",
            valid_from=stamp(first))
    for c in ind.campaigns:
        if c in campaigns:
            b.relate(indicator, campaigns[c], first, last)


def stix_bundle(export: Export, *, org: str = "honeyjet", tlp: str = "amber") -> dict[str, Any]:
    """The export as a STIX 2.1 bundle (a JSON-ready dict)."""
    b = _Bundle(export, org, tlp)
    # campaigns first: the relationships point at them
    campaigns: dict[str, str] = {}
    by_campaign: dict[str, list[Job]] = {}
    for job in export.jobs:
        if job.campaign:
            by_campaign.setdefault(job.campaign, []).append(job)
    for cid in sorted(by_campaign):
        jobs = by_campaign[cid]
        first, last = b.times(min((j.first for j in jobs if j.first), default=None), max((j.last for j in jobs if j.last), default=None))
        senders = {ip for j in jobs for ip in j.sources}
        phones = sorted({v for j in jobs for k, v in j.indicators if k == "phone"})
        text = (f"Near-identical print jobs seen by honeyjet: {len(jobs)} distinct content(s), "
                f"{sum(j.captures for j in jobs)} capture(s), {len(senders)} source(s)")
        campaigns[cid] = b.sdo("campaign", (cid,), first, last, name=f"honeyjet campaign {cid}",
                               description=text + (f"; phone numbers printed: {', '.join(phones)}" if phones else "") + ".",
                               first_seen=stamp(first), last_seen=stamp(last))
    observables: dict[tuple[str, str], str] = {}
    for ind in export.indicators:
        if ind.type in _OBSERVABLE:
            observables[(ind.type, ind.value)] = b.observable(_OBSERVABLE[ind.type], value=ind.value)
    for s in export.sources:
        _source(b, s, campaigns)
    for job in export.jobs:
        _job(b, job, observables, campaigns)
    for ind in export.indicators:
        if ind.type != "phone":
            _value(b, ind, observables, campaigns)
    objects = list(b.objects.values())
    digest = json.dumps(sorted((o["id"], o.get("modified", "")) for o in objects))
    return {"type": "bundle", "id": f"bundle--{uuid.uuid5(NAMESPACE, digest)}", "objects": objects}
