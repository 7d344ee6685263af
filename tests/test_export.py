"""``honeyjet export stix|misp|blocklist`` over a database a real sensor filled.

A real in-process sensor judges a PJL path traversal (high) and a plain-text spam job with a
URL, a phone number and a Bitcoin address (medium) from 127.0.0.1. More sources are stored
through the normal ingestion path (``Database.write_events`` with events shaped as the
sensor's): 203.0.113.9 on two sensors (also as ``::ffff:203.0.113.9``) with a job whose
indicators carry quotes and backslashes, 2001:db8::7 (critical), 198.51.100.30 (medium),
198.51.100.20 (low), 192.0.2.44 (low sessions, a high correlation verdict), an old high
verdict outside the period and a verdict whose ``src_ip`` is not an address.

The STIX bundle must validate with ``stix2`` and the MISP event load with ``pymisp``.
"""

from __future__ import annotations

import asyncio
import csv
import io
import json
import os
import re
import shutil
import subprocess
import sys
import time
import uuid
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest

from helpers import require
from conftest import exchange, running, sensor_settings
from honeyjet.cli import main
from honeyjet.store.database import Database

UTC = timezone.utc
# the installed console script of this interpreter's environment (/work/venv/bin/honeyjet, .venv/bin/honeyjet in CI)
HONEYJET = str(Path(sys.executable).parent / "honeyjet")
TRAVERSAL = b'@PJL FSUPLOAD NAME="0:/../../etc/passwd" OFFSET=0 SIZE=100\r\n'
SPAM_URL = "https://toner-deals.example/buy?id=7"
SPAM_BTC = "bc1qw508d6qejxtdg4y5r3zarvary0c5xw7kv8f3t4"
SPAM = (b"*** PRINTER ADVERTISING ***\r\n\r\nCheap toner for your office! Order at " + SPAM_URL.encode() + b" today.\r\n"
        b"Call +1 202-555-0143 or mail sales@toner-deals.example\r\n"
        b"Pay 0.05 BTC to " + SPAM_BTC.encode() + b"\r\n\x0c")
HOSTILE_URL = "http://evil.example/a'b\\c"
ETH = "0x52908400098527886E0F7030069857D2E4169EE7"
SYNTH_SHA = "5e" * 32
SYNTH_CAMPAIGN = "c-5e5e5e5e5e5e"
LOW, MEDIUM, CORRELATED, V6 = "198.51.100.20", "198.51.100.30", "192.0.2.44", "2001:db8::7"
ATTACKER = "203.0.113.9"
BLOCK_HIGH = ["127.0.0.1", CORRELATED, ATTACKER, V6]  # severity >= high, in address order


def _uuid(*key: str) -> str:
    return uuid.uuid5(uuid.NAMESPACE_URL, "honeyjet-export-test/" + "/".join(key)).hex


def _ev(eventid: str, ts: datetime, session: str, src_ip: str, sensor: str = "export-a", **fields: Any) -> dict[str, Any]:
    return {"eventid": eventid, "event_uuid": _uuid(eventid, session, src_ip, sensor, ts.isoformat()),
            "timestamp": ts.strftime("%Y-%m-%dT%H:%M:%S.%fZ"), "sensor": sensor, "session": session, "protocol": "pjl",
            "src_ip": src_ip, "src_port": 40000, "dst_ip": "192.0.2.1", "dst_port": 9100, "message": f"{eventid} (test)", **fields}


def _session(base: datetime, sid: str, ip: str, severity: str, classes: list[str], rules: list[str], *,
             sensor: str = "export-a", job: dict[str, Any] | None = None) -> list[dict[str, Any]]:
    """The events of one judged session, as the sensor and its analyzer write them."""
    out = [_ev("honeyjet.session.connect", base, sid, ip, sensor)]
    if job is not None:
        out.append(_ev("honeyjet.job.captured", base + timedelta(seconds=1), sid, ip, sensor, job=1, language="text", name="",
                       user="", pages=1, ended_by="eof", shasum=job["shasum"], size=300, stored_size=300, truncated=False,
                       duplicate=False))
    out.append(_ev("honeyjet.session.closed", base + timedelta(seconds=2), sid, ip, sensor, duration_ms=2000, bytes_in=300,
                   bytes_out=0, reason="eof", jobs=1 if job else 0, head="", transcript_shasum=None, transcript_size=0,
                   transcript_truncated=False))
    if job is not None:
        out.append(_ev("honeyjet.job.analyzed", base + timedelta(seconds=3), sid, ip, sensor, job=1, **job))
    out.append(_ev("honeyjet.verdict.session", base + timedelta(seconds=4), sid, ip, sensor, classes=classes, severity=severity,
                   rules=rules, rule_names=rules, service="pjl", attribution=["user:x'\"; rm -rf /"], rerun=False))
    return out


def synthetic(base: datetime) -> list[dict[str, Any]]:
    job = {"shasum": SYNTH_SHA, "language": "text", "text_source": "plain", "text_chars": 120, "simhash": "5e5e5e5e5e5e5e5e",
           "campaign": SYNTH_CAMPAIGN, "previews": [], "errors": [], "indicators": [
               {"type": "url", "value": HOSTILE_URL, "offset": 0},
               {"type": "url", "value": "javascript:alert(1)", "offset": 40},  # not a URL: skipped
               {"type": "domain", "value": "EVIL.example", "offset": 7},
               {"type": "domain", "value": "bad domain'] OR [x:y = 'z", "offset": 9},  # skipped
               {"type": "email", "value": "boss@evil.example", "offset": 60},
               {"type": "eth", "value": ETH, "offset": 80},
               {"type": "ipv4", "value": "198.51.100.77", "offset": 90},
               {"type": "phone", "value": "+442079460000", "offset": 100}]}
    t = base
    events: list[dict[str, Any]] = []
    events += _session(t, "exp-a1", ATTACKER, "high", ["file_exfiltration"], ["HJ-FS-020"], job=job)
    events += _session(t + timedelta(minutes=1), "exp-a2", ATTACKER, "medium", ["printer_spam_job"], ["HJ-JOB-021"])
    events += _session(t + timedelta(minutes=2), "exp-a3", "::ffff:" + ATTACKER, "high", ["firmware_upload"], ["HJ-JOB-001"],
                       sensor="export-b")
    events += _session(t + timedelta(minutes=3), "exp-v6", V6, "critical", ["firmware_upload"], ["HJ-JOB-001"], sensor="export-b")
    events += _session(t + timedelta(minutes=4), "exp-med", MEDIUM, "medium", ["printer_spam_job"], ["HJ-JOB-021"])
    events += _session(t + timedelta(minutes=5), "exp-low", LOW, "low", ["benign_status_query"], ["HJ-PJL-001"])
    events += _session(t + timedelta(minutes=6), "exp-cor", CORRELATED, "low", ["recon_probe"], ["HJ-PJL-002"])
    events.append(_ev("honeyjet.verdict.source", t + timedelta(minutes=7), "", CORRELATED, classes=["escalation"], severity="high",
                      rules=["HJ-SRC-005"], rule_names=["Escalation"], new_rules=["HJ-SRC-005"], sessions=4, services=["pjl"],
                      session_classes=["recon_probe"], sequence=["pjl:recon_probe"], first_seen=(t - timedelta(days=90)).isoformat(),
                      jobs=0, campaigns=[], attribution=[], rerun=False))
    events += _session(t - timedelta(days=30), "exp-old", "198.51.100.99", "high", ["file_exfiltration"], ["HJ-FS-020"])
    events += _session(t + timedelta(minutes=8), "exp-bad", "203.0.113.1; rm -rf /", "critical", ["firmware_upload"], ["HJ-JOB-001"])
    return events


async def _log_events(path: Path) -> list[dict[str, Any]]:
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


async def build(data_dir: Path) -> dict[str, Any]:
    settings = sensor_settings(data_dir)
    log = data_dir / "log" / "honeyjet.json"
    async with running(settings):
        port = settings.listen_port(settings.pjl)
        await exchange(port, TRAVERSAL)
        await exchange(port, SPAM)
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            events = await _log_events(log)
            verdicts = [e for e in events if e["eventid"] == "honeyjet.verdict.session"]
            if len(verdicts) >= 2 and any(e["eventid"] == "honeyjet.job.analyzed" for e in events):
                break
            await asyncio.sleep(0.05)
        else:
            raise AssertionError("the sensor did not judge both sessions in time")
    analyzed = next(e for e in events if e["eventid"] == "honeyjet.job.analyzed")
    db = Database(settings.database_url)
    await db.open()
    try:
        await db.write_events(synthetic(datetime.now(UTC) - timedelta(hours=1)))
    finally:
        await db.close()
    return {"verdicts": {v["severity"]: v for v in verdicts}, "analyzed": analyzed}


@pytest.fixture(scope="module")
def populated(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    data_dir = tmp_path_factory.mktemp("export") / "data"
    info = asyncio.run(build(data_dir))
    return {"data_dir": data_dir, **info}


def export(capsys: pytest.CaptureFixture, *args: str) -> tuple[int, str, str]:
    capsys.readouterr()
    rc = main(["export", *args])
    out = capsys.readouterr()
    return rc, out.out, out.err


def strip_custom(obj: Any) -> Any:
    if isinstance(obj, dict):
        return {k: strip_custom(v) for k, v in obj.items() if not k.startswith("x_")}
    if isinstance(obj, list):
        return [strip_custom(v) for v in obj]
    return obj


def pattern_value(pattern: str) -> str:
    """The string literal of a one-comparison STIX pattern, unescaped (checked by stix2patterns first)."""
    from stix2patterns.v21.pattern import Pattern

    (comparisons,) = Pattern(pattern).inspect().comparisons.values()
    literal = comparisons[0][2]
    assert literal[0] == literal[-1] == "'"
    return re.sub(r"\\(.)", r"\1", literal[1:-1])


# -- STIX ---------------------------------------------------------------------------------------


def test_stix_bundle_validates_and_holds_sources_and_spam_indicators(populated, capsys, tmp_path):
    import stix2

    out_file = tmp_path / "bundle.json"
    rc, out, err = export(capsys, "stix", "--data-dir", str(populated["data_dir"]), "--org", "Example CERT", "-o", str(out_file))
    assert rc == 0 and out == "", err
    text = out_file.read_text()
    assert not [p for p in tmp_path.iterdir() if p.name != "bundle.json"]  # atomic: no temporary file left
    bundle = stix2.parse(text, allow_custom=True)
    assert bundle.type == "bundle"
    doc = json.loads(text)
    # the standard parts are strict STIX 2.1: every object (and the bundle) parses without custom content
    stix2.parse(json.dumps(strip_custom(doc)), allow_custom=False)
    custom = {k for o in doc["objects"] for k in o if k.startswith("x_")}
    assert custom == {"x_honeyjet_wallet", "x_honeyjet_phones"}
    # and the OASIS STIX validator (stix2-validator) finds no error, custom properties allowed
    from stix2validator import ValidationOptions, validate_string

    result = validate_string(text, ValidationOptions(version="2.1", strict=False))
    assert result.is_valid, [str(e) for e in result.errors]
    objs = doc["objects"]
    by_id = {o["id"]: o for o in objs}
    assert len(by_id) == len(objs)
    indicators = [o for o in objs if o["type"] == "indicator"]
    patterns = {o["pattern"]: o for o in indicators}

    # sources: every one at or above medium, once, canonical; nothing else
    sources = {pattern_value(p) for p, o in patterns.items() if o["name"].startswith("honeyjet: malicious source")}
    assert sources == {"127.0.0.1", ATTACKER, V6, MEDIUM, CORRELATED}
    assert "[ipv6-addr:value = '2001:db8::7']" in patterns
    local = patterns["[ipv4-addr:value = '127.0.0.1']"]
    assert local["indicator_types"] == ["malicious-activity"] and local["pattern_type"] == "stix"
    assert {"file_exfiltration", "path_traversal", "printer_spam_job"} <= set(local["labels"])
    assert "HJ-FS-010" in local["description"] and "high" in local["description"]
    # observables use the specification's deterministic ids (as stix2 computes them)
    assert stix2.IPv4Address(value=ATTACKER).id in by_id and stix2.IPv6Address(value=V6).id in by_id
    assert stix2.URL(value=SPAM_URL).id in by_id
    assert stix2.File(hashes={"SHA-256": populated["analyzed"]["shasum"]}).id in by_id
    # the attacker's sessions over two sensors and two spellings of the address: one sighting of three sessions
    attacker = patterns[f"[ipv4-addr:value = '{ATTACKER}']"]
    (sighting,) = [o for o in objs if o["type"] == "sighting" and o["sighting_of_ref"] == attacker["id"]]
    assert sighting["count"] == 3 and sighting["where_sighted_refs"] == [by_id[sighting["where_sighted_refs"][0]]["id"]]
    assert by_id[sighting["where_sighted_refs"][0]]["name"] == "Example CERT"
    observed = by_id[sighting["observed_data_refs"][0]]
    assert observed["number_observed"] == 3 and observed["object_refs"] == [stix2.IPv4Address(value=ATTACKER).id]
    assert observed["first_observed"] <= observed["last_observed"] and sighting["first_seen"] <= sighting["last_seen"]

    # the spam job's indicators: URL, domain, e-mail, the BTC wallet, the phone number
    assert f"[url:value = '{SPAM_URL}']" in patterns
    assert "[domain-name:value = 'toner-deals.example']" in patterns
    assert "[email-addr:value = 'sales@toner-deals.example']" in patterns
    wallets = {o["x_honeyjet_wallet"]["address"]: o for o in indicators if "x_honeyjet_wallet" in o}
    assert set(wallets) == {SPAM_BTC, ETH} and wallets[SPAM_BTC]["pattern_type"] == "pcre"
    assert re.search(wallets[SPAM_BTC]["pattern"], f"pay to {SPAM_BTC} now") and not re.search(wallets[SPAM_BTC]["pattern"], SPAM_BTC + "x")
    job = patterns[f"[file:hashes.'SHA-256' = '{populated['analyzed']['shasum']}']"]
    assert job["x_honeyjet_phones"] == ["+12025550143"]

    # hostile indicator text is escaped in patterns (stix2 validated them) and round-trips
    hostile = [p for p in patterns if p.startswith("[url:value = 'http://evil.example/")]
    # (as a URI: the backslash percent-encoded, the quote kept and escaped in the pattern)
    assert len(hostile) == 1 and pattern_value(hostile[0]) == HOSTILE_URL.replace("\\", "%5C")
    assert "[domain-name:value = 'evil.example']" in patterns
    assert not any("javascript" in p or "bad domain" in p or "rm -rf" in p for p in patterns)
    assert "198.51.100.99" not in text and LOW not in text  # outside the period, below the threshold

    # campaigns: the synthetic job's indicators and its sender indicate it
    (campaign,) = [o for o in objs if o["type"] == "campaign" and SYNTH_CAMPAIGN in o["name"]]
    targets = {o["source_ref"] for o in objs if o["type"] == "relationship" and o["target_ref"] == campaign["id"]}
    assert attacker["id"] in targets and patterns["[email-addr:value = 'boss@evil.example']"]["id"] in targets
    for o in objs:
        for key in ("created_by_ref", "sighting_of_ref", "source_ref", "target_ref"):
            assert key not in o or o[key] in by_id
        for ref in o.get("object_refs", []) + o.get("observed_data_refs", []) + o.get("object_marking_refs", []):
            assert ref in by_id


def test_stix_reexport_is_identical_and_campaign_filter(populated, capsys):
    d = str(populated["data_dir"])
    args = ("stix", "--data-dir", d, "--org", "Example CERT", "--since", "2d", "--tlp", "green")
    rc1, first, _ = export(capsys, *args)
    rc2, second, _ = export(capsys, *args)
    assert rc1 == rc2 == 0 and first == second
    assert "marking-definition--34098fce-860f-48ae-8e50-ebd3cc5e41da" in first  # TLP:GREEN

    rc, out, err = export(capsys, "stix", "--data-dir", d, "--campaign", SYNTH_CAMPAIGN)
    assert rc == 0, err
    objs = json.loads(out)["objects"]
    patterns = {o["pattern"] for o in objs if o["type"] == "indicator"}
    assert f"[ipv4-addr:value = '{ATTACKER}']" in patterns
    assert not any("127.0.0.1" in p or "toner-deals" in p or V6 in p for p in patterns)
    assert f"[file:hashes.'SHA-256' = '{SYNTH_SHA}']" in patterns
    assert [o["name"] for o in objs if o["type"] == "campaign"] == [f"honeyjet campaign {SYNTH_CAMPAIGN}"]


# -- MISP ---------------------------------------------------------------------------------------


def test_misp_event_loads_with_pymisp(populated):
    from pymisp import MISPEvent
    from pymisp.abstract import describe_types

    def run() -> str:
        done = subprocess.run([HONEYJET, "export", "misp", "--data-dir", str(populated["data_dir"]), "--org", "Example CERT"],
                              capture_output=True, text=True, timeout=60, env=dict(os.environ, HONEYJET_SENSOR__USER=""))
        assert done.returncode == 0, done.stderr
        return done.stdout

    text = run()
    event = MISPEvent()
    event.load(text)
    attrs = {(a.type, a.value): a for a in event.attributes}
    assert {v for t, v in attrs if t == "ip-src"} == {"127.0.0.1", ATTACKER, V6, MEDIUM, CORRELATED}
    spam_sha = populated["analyzed"]["shasum"]
    for key in [("url", SPAM_URL), ("domain", "toner-deals.example"), ("email", "sales@toner-deals.example"),
                ("phone-number", "+12025550143"), ("btc", SPAM_BTC), ("sha256", spam_sha), ("sha256", SYNTH_SHA),
                ("url", HOSTILE_URL.replace("\\", "%5C")), ("ip-dst", "198.51.100.77"), ("text", ETH)]:
        assert key in attrs, key
    categories = describe_types["category_type_mappings"]
    for a in event.attributes:
        assert a.type in categories[a.category], (a.type, a.category)
        assert a.first_seen <= a.last_seen
    local = attrs[("ip-src", "127.0.0.1")]
    assert local.to_ids and "HJ-FS-010" in local.comment
    assert {t.name for t in local.tags} >= {'honeyjet:class="file_exfiltration"', 'honeyjet:severity="high"'}
    assert not attrs[("phone-number", "+12025550143")].to_ids
    assert event.threat_level_id == 1 and event.distribution == 0 and event.analysis == 2
    assert "tlp:amber" in {t.name for t in event.tags}
    assert event.info.startswith("honeyjet printer honeypot: 5 malicious source(s)")
    # deterministic: the same uuids again, and pymisp's own serialisation loads back the same attributes
    again = MISPEvent()
    again.load(run())
    assert again.uuid == event.uuid and {a.uuid for a in again.attributes} == {a.uuid for a in event.attributes}
    assert len({a.uuid for a in event.attributes}) == len(event.attributes)
    round_trip = MISPEvent()
    round_trip.load(event.to_json())
    assert {(a.type, a.value, a.uuid) for a in round_trip.attributes} == {(a.type, a.value, a.uuid) for a in event.attributes}


# -- blocklist --------------------------------------------------------------------------------------


def test_blocklist_plain_and_csv(populated, capsys):
    d = str(populated["data_dir"])
    rc, out, err = export(capsys, "blocklist", "--data-dir", d)
    assert rc == 0, err
    lines = out.splitlines()
    assert lines[0].startswith("# honeyjet blocklist: 4 source addresses with severity >= high, ")
    assert lines[1:] == BLOCK_HIGH

    rc, out, _ = export(capsys, "blocklist", "--data-dir", d, "--min-severity", "medium")
    assert [x for x in out.splitlines() if not x.startswith("#")] == ["127.0.0.1", CORRELATED, MEDIUM, ATTACKER, V6]

    rc, out, _ = export(capsys, "blocklist", "--data-dir", d, "--format", "csv")
    rows = list(csv.DictReader(io.StringIO(out)))
    assert [r["ip"] for r in rows] == BLOCK_HIGH
    by_ip = {r["ip"]: r for r in rows}
    assert by_ip[ATTACKER]["sessions"] == "3" and by_ip[ATTACKER]["sensors"].split() == ["export-a", "export-b"]
    assert by_ip[ATTACKER]["severity"] == "high" and by_ip[V6]["severity"] == "critical"
    assert by_ip[CORRELATED]["classes"].split()[0] == "escalation"  # from its correlation verdict
    assert by_ip["127.0.0.1"]["first_seen"] <= by_ip["127.0.0.1"]["last_seen"]
    assert not any(cell[:1] in "=+-@" for r in rows for cell in r.values() if cell)

    # a period that ends before everything: an empty list, still with its header
    rc, out, _ = export(capsys, "blocklist", "--data-dir", d, "--since", "2001-01-01", "--until", "2001-01-02")
    assert rc == 0 and out == "# honeyjet blocklist: 0 source addresses with severity >= high, 2001-01-01T00:00:00Z to 2001-01-02T00:00:00Z\n"


def test_blocklist_nftables(populated, capsys, tmp_path):
    rc, out, err = export(capsys, "blocklist", "--data-dir", str(populated["data_dir"]), "--format", "nftables")
    assert rc == 0, err
    elements = {m.group(1): m.group(2).split(", ") for m in re.finditer(r"add element inet honeyjet (\w+) \{ ([^}]*) \}", out)}
    assert elements == {"blocklist": ["127.0.0.1", CORRELATED, ATTACKER], "blocklist6": [V6]}
    assert "type ipv4_addr" in out and "type ipv6_addr" in out
    body = [x for x in out.splitlines() if not x.startswith("#")]
    assert all(re.fullmatch(r"[\w\t {}:.,\-]*", x) for x in body)  # nothing but addresses and nft syntax
    nft = shutil.which("nft")
    require(nft, "nft (nftables) not installed: syntax not checked")
    path = tmp_path / "blocklist.nft"
    path.write_text(out)
    probe = subprocess.run([nft, "-c", "-f", str(path)], capture_output=True, text=True, timeout=30)
    require(probe.returncode == 0 or not ("Operation not permitted" in probe.stderr or "Permission denied" in probe.stderr),
            "nft -c needs CAP_NET_ADMIN here")
    assert probe.returncode == 0, probe.stderr


# -- errors ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("args, message", [
    (["blocklist"], "no database at "),
    (["stix", "--since", "yesterday"], "--since 'yesterday'"),
    (["misp", "--until", "soon"], "--until 'soon'"),
    (["blocklist", "--min-severity", "severe"], "--min-severity 'severe'"),
    (["blocklist", "--format", "iptables"], "--format 'iptables'"),
    (["stix", "--since", "1d", "--until", "2d"], "is not before"),
    (["misp", "--tlp", "purple"], "--tlp 'purple'"),
])
def test_operator_errors_are_one_line(tmp_path, capsys, args, message):
    rc, out, err = export(capsys, *args, "--data-dir", str(tmp_path / "empty"))
    assert rc == 2 and out == ""
    assert err.count("\n") == 1 and err.startswith("honeyjet: ") and message in err
    assert not (tmp_path / "empty" / "honeyjet.db").exists()  # never creates a database


def test_unreadable_database_is_one_line(tmp_path, capsys):
    (tmp_path / "honeyjet.db").write_bytes(b"not a database" * 100)
    rc, out, err = export(capsys, "stix", "--database-url", f"sqlite+aiosqlite:///{tmp_path / 'honeyjet.db'}")
    assert rc == 2 and out == "" and err.count("\n") == 1 and "cannot read database" in err


# -- PostgreSQL (a fleet's central store) -------------------------------------------------------------------

PG_URL = os.environ.get("HONEYJET_TEST_POSTGRES_URL", "")
PG_BASE = datetime(2001, 2, 3, 10, 0, tzinfo=UTC)  # a period no other test writes to


async def _pg_cleanup(url: str, events: list[dict[str, Any]]) -> None:
    from sqlalchemy import delete, tuple_

    from honeyjet.store.database import artifacts_table, events_table, job_analyses_table, jobs_table, sessions_table
    from honeyjet.store.database import sources_table, verdicts_table

    db = Database(url)
    await db.open()
    try:
        sessions = {e["session"] for e in events if e["session"]}
        async with db.engine.begin() as conn:
            await conn.execute(delete(events_table).where(events_table.c.event_uuid.in_([e["event_uuid"] for e in events])))
            await conn.execute(delete(sessions_table).where(sessions_table.c.session.in_(sessions)))
            await conn.execute(delete(verdicts_table).where(verdicts_table.c.session.in_(sessions)))
            await conn.execute(delete(jobs_table).where(jobs_table.c.session.in_(sessions)))
            await conn.execute(delete(job_analyses_table).where(job_analyses_table.c.shasum == SYNTH_SHA))
            await conn.execute(delete(artifacts_table).where(artifacts_table.c.shasum == SYNTH_SHA))
            keys = [(e["sensor"], e["src_ip"]) for e in events if e["eventid"] == "honeyjet.verdict.source"]
            await conn.execute(delete(sources_table).where(tuple_(sources_table.c.sensor, sources_table.c.src_ip).in_(keys)))
    finally:
        await db.close()


async def test_postgresql_store_exports_as_sqlite(tmp_path, capsys):
    require(PG_URL, "HONEYJET_TEST_POSTGRES_URL not set")
    events = synthetic(PG_BASE)
    sqlite_path = tmp_path / "honeyjet.db"
    for url in (PG_URL, f"sqlite+aiosqlite:///{sqlite_path}"):
        db = Database(url)
        await db.open()
        try:
            await db.write_events(events)
        finally:
            await db.close()
    try:
        period = ["--since", "2001-02-03", "--until", "2001-02-04", "--org", "Example CERT"]
        for kind, extra in (("stix", []), ("misp", []), ("blocklist", ["--format", "csv"])):
            got = {}
            for name, url in (("pg", PG_URL), ("sqlite", f"sqlite+aiosqlite:///{sqlite_path}")):
                rc, out, err = await asyncio.to_thread(export, capsys, kind, "--database-url", url, *period, *extra)
                assert rc == 0, err
                got[name] = out
            assert got["pg"] == got["sqlite"], kind
        rows = list(csv.DictReader(io.StringIO(got["pg"])))
        assert [r["ip"] for r in rows] == [CORRELATED, ATTACKER, V6]
    finally:
        await _pg_cleanup(PG_URL, events)
