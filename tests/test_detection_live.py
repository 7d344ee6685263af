"""Detection through the running service: the corpus and its variants, CUPS browse packets,
``honeyjet analyze`` over stored events, bad rules at start-up.

Marked ``live``: each test starts a real sensor and replays over real sockets (slower)."""

from __future__ import annotations

import asyncio
import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import free_offset, running, sensor_settings
from helpers import CORPUS
from honeyjet.analysis.evaluate import evaluate
from honeyjet.events import MemorySink

pytestmark = pytest.mark.live


async def wait_event(mem: MemorySink, eventid: str, timeout: float = 4.0) -> list[dict]:
    """The events of that id once at least one arrived (analysis runs after the session closes)."""
    for _ in range(int(timeout / 0.02)):
        if mem.of(eventid):
            break
        await asyncio.sleep(0.02)
    return mem.of(eventid)


async def pjl_session(port: int, payload: bytes) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(payload)
    await writer.drain()
    writer.write_eof()
    await reader.read()
    writer.close()


@pytest.fixture(scope="module")
def evaluation() -> dict:
    return asyncio.run(evaluate(CORPUS, with_variants=True))


def test_corpus_replay_meets_targets(evaluation: dict) -> None:
    s = evaluation["corpus"]
    assert s.judged == s.cases, s.unjudged
    assert s.without_rules == 0, "every verdict lists its rules"
    assert s.macro_f1 >= 0.95, s.mistakes
    assert s.severity_accuracy >= 0.95, s.mistakes
    modes = {c.mode for c in evaluation["corpus_cases"]}
    assert {"whole", "chunks", "bytes", "random"} <= modes


def test_variants_meet_targets(evaluation: dict) -> None:
    s = evaluation["variants"]
    kinds = {c.mode for c in evaluation["variant_cases"]}
    assert len(kinds) >= 12 and s.cases >= 150
    assert s.judged == s.cases, s.unjudged
    assert s.without_rules == 0
    assert s.macro_f1 >= 0.95, s.mistakes
    assert s.severity_accuracy >= 0.95, s.mistakes


def test_every_verdict_names_existing_rules(evaluation: dict) -> None:
    from honeyjet.analysis.rules import RuleSet

    rules = RuleSet.load()
    for c in evaluation["corpus_cases"] + evaluation["variant_cases"]:
        v = c.verdict
        assert v is not None
        assert len(v["rules"]) == len(v["rule_names"]) and all(r in rules.by_id for r in v["rules"])
        assert v["classes"][0] == rules.by_id[v["rules"][0]].cls


async def test_cups_browse_packet_is_recorded_never_answered(data_dir: Path) -> None:
    settings = sensor_settings(data_dir)
    async with running(settings) as sensor:
        mem = MemorySink()
        sensor.bus.add_sink(mem)
        port = settings.listen_port(settings.browse)
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            s.bind(("127.0.0.1", 0))
            s.settimeout(0.5)
            s.sendto(b'0 3 http://198.51.100.7:631/printers/EVIL "office" "HP LaserJet"\n', ("127.0.0.1", port))
            with pytest.raises(socket.timeout):
                s.recvfrom(2048)  # nothing comes back, and nothing connects to the URI
        v = (await wait_event(mem, "honeyjet.verdict.session"))[0]
    pkt = mem.of("honeyjet.browse.packet")[0]
    assert pkt["valid"] and pkt["uri"] == "http://198.51.100.7:631/printers/EVIL" and pkt["protocol"] == "browse"
    assert v["classes"][0] == "cups_browsed_injection" and v["severity"] == "critical" and v["rules"] == ["HJ-CUPS-001"]


async def test_source_correlation_live(data_dir: Path) -> None:
    """The seed's pattern: a 9100 PJL probe and a port-80 urllib check from one address."""
    import urllib.request

    settings = sensor_settings(data_dir)
    async with running(settings) as sensor:
        mem = MemorySink()
        sensor.bus.add_sink(mem)
        await pjl_session(settings.listen_port(settings.pjl), b"@PJL INFO PRODINFO\r\n")
        url = f"http://127.0.0.1:{settings.listen_port(settings.http)}/"
        await asyncio.to_thread(lambda: urllib.request.urlopen(url, timeout=5).read())
        src = await wait_event(mem, "honeyjet.verdict.source")
    assert src and "HJ-SRC-001" in src[0]["rules"] and set(src[0]["services"]) == {"pjl", "http"}
    assert src[0]["severity"] == "medium"
    # stored with the session and the source
    from honeyjet.store.database import Database

    db = Database(settings.database_url)
    await db.open()
    try:
        for v in mem.of("honeyjet.verdict.session"):
            row = await db.verdict_row(v["session"])
            assert row is not None and row["classes"] == v["classes"] and row["rules"] == v["rules"]
        (stored,) = await db.source_rows("127.0.0.1")
        assert "HJ-SRC-001" in stored["rules"] and stored["sessions"] == 2
    finally:
        await db.close()


def _cli(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    e = dict(os.environ, HONEYJET_SENSOR__USER="")
    e.update(env or {})
    return subprocess.run([sys.executable, "-m", "honeyjet.cli", *args], capture_output=True, text=True, timeout=120, env=e)


def test_bad_rules_directory_is_one_line(tmp_path: Path) -> None:
    rules = tmp_path / "rules"
    rules.mkdir()
    (rules / "mine.toml").write_text('[[rule]]\nid = "X"\nname = "x"\nclass = "fs_enumeration"\ndescription = "d"\n'
                                     'all = [{ f = "no_such_feature", eq = 1 }]\n')
    r = _cli("run", "--data-dir", str(tmp_path / "d"), "--port-offset", str(free_offset()), "--bind", "127.0.0.1",
             env={"HONEYJET_ANALYSIS__RULES_DIR": str(rules)})
    assert r.returncode == 2
    assert "Traceback" not in r.stderr
    line = [ln for ln in r.stderr.splitlines() if "no_such_feature" in ln]
    assert line and "mine.toml" in line[0] and "'X'" in line[0]


async def test_analyze_reruns_rules_over_stored_events(data_dir: Path, tmp_path: Path) -> None:
    """Record with one rule set, re-run with an operator rule added: new verdicts, marked rerun."""
    settings = sensor_settings(data_dir, analysis={"forensics": False})
    async with running(settings) as sensor:
        mem = MemorySink()
        sensor.bus.add_sink(mem)
        await pjl_session(settings.listen_port(settings.pjl), b'\x1b%-12345X@PJL RDYMSG DISPLAY="OUT OF ORDER"\r\n\x1b%-12345X')
        assert (await wait_event(mem, "honeyjet.verdict.session"))[0]["rules"] == ["HJ-PJL-020"]
    rules = tmp_path / "rules"
    rules.mkdir()
    (rules / "local.toml").write_text(
        '[[rule]]\nid = "LOCAL-OOO"\nname = "Out-of-order prank"\nclass = "pjl_display_defacement"\nseverity = "high"\n'
        'priority = 60\ndescription = "The panel claims the printer is out of order."\n'
        'all = [{ f = "pjl_display", match = "(?i)out of order" }]\n')
    r = _cli("analyze", "--data-dir", str(data_dir), "--quiet",
             env={"HONEYJET_ANALYSIS__RULES_DIR": str(rules), "HONEYJET_ANALYSIS__FORENSICS": "false"})
    assert r.returncode == 0, r.stderr
    assert "analysed 1 sessions" in r.stdout
    lines = [json.loads(x) for x in (data_dir / "log" / "honeyjet.json").read_text().splitlines()]
    verdicts = [e for e in lines if e["eventid"] == "honeyjet.verdict.session"]
    assert len(verdicts) == 2 and verdicts[-1]["rerun"] is True
    assert verdicts[-1]["rules"] == ["LOCAL-OOO", "HJ-PJL-020"] and verdicts[-1]["severity"] == "high"
    assert verdicts[-1]["session"] == verdicts[0]["session"]
