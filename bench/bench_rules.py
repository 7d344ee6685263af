#!/usr/bin/env python3
"""Rule evaluation speed: sessions judged per second (features + rules + source correlation).

1. Starts a sensor on 127.0.0.1 (temporary data dir, free port offset) and replays every
   payload of the labelled corpus once over real sockets, so the event streams are the
   ones the sensor really produces (job forensics included).
2. Takes each session's events (everything up to ``session.closed``, plus its
   ``job.analyzed`` reports) and, for ``--seconds``, feeds them round-robin through a
   fresh :class:`SessionFeatures` and :meth:`Analyzer._judge` (rules, the verdict event
   to a bus without sinks, the source tracker) — what the live analyzer does per session,
   without its memo of identical sessions (every session is judged from scratch).

Prints sessions/s and µs/session overall and per corpus class. Target (issue 4):
≥ 5,000 sessions/s on the benchmark machine.

    python bench/bench_rules.py --corpus tests/data/corpus/probes.json [--seconds 5] [--json out.json]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import platform
import sys
import time
from pathlib import Path

from honeyjet.analysis.engine import Analyzer
from honeyjet.analysis.evaluate import build_cases, load_corpus, run_cases
from honeyjet.analysis.features import SessionFeatures
from honeyjet.analysis.rules import RuleSet
from honeyjet.events import EventBus, MemorySink


async def capture(corpus: Path) -> list[tuple[str, list[dict]]]:
    from honeyjet.config import load_settings
    from honeyjet.sensor import Sensor, free_port_offset
    import tempfile

    entries = load_corpus(corpus)
    with tempfile.TemporaryDirectory(prefix="honeyjet-bench-") as tmp:
        settings = load_settings(env={}, overrides={
            "sensor": {"data_dir": tmp, "bind": "127.0.0.1", "port_offset": free_port_offset(), "name": "bench", "user": ""},
            "limits": {"sessions_per_source": 4096}})
        sensor = Sensor(settings)
        await sensor.start()
        sink = MemorySink()
        sensor.bus.add_sink(sink)
        cases = build_cases(entries, segmentations=False)
        try:
            await run_cases(sensor, sink, cases)
        finally:
            await sensor.stop()
    by_session: dict[str, list[dict]] = {}
    for ev in sink.events:
        if ev.get("session") and ev["eventid"] not in ("honeyjet.verdict.session", "honeyjet.verdict.source"):
            by_session.setdefault(ev["session"], []).append(ev)
    label = {c.src_port: c.entry["class"] for c in cases}
    out = []
    for events in by_session.values():
        # the closing event last (job.analyzed arrives after it live; features do not mind the order)
        events.sort(key=lambda e: e["eventid"] == "honeyjet.session.closed")
        out.append((label.get(events[0].get("src_port"), "?"), events))
    return out


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--corpus", type=Path, default=Path(__file__).resolve().parents[1] / "tests/data/corpus/probes.json")
    p.add_argument("--seconds", type=float, default=5.0)
    p.add_argument("--json", type=Path)
    a = p.parse_args()
    sessions = asyncio.run(capture(a.corpus))
    rules = RuleSet.load()
    bus = EventBus("bench")
    analyzer = Analyzer(bus, rules)  # for the source tracker and campaign index
    per_class: dict[str, list[float]] = {}
    n = 0
    start = time.perf_counter()
    deadline = start + a.seconds
    while time.perf_counter() < deadline:
        for cls, events in sessions:
            t0 = time.perf_counter()
            feats = SessionFeatures(rules.vocab)
            for ev in events:
                feats.add(ev)
            analyzer._judge(feats)  # features, rules, the verdict event (to a bus without sinks), sources
            per_class.setdefault(cls, []).append(time.perf_counter() - t0)
            n += 1
    elapsed = time.perf_counter() - start
    rate = n / elapsed
    print(f"machine: {platform.machine()}, {platform.processor() or 'cpu'}, Python {platform.python_version()}")
    print(f"{len(sessions)} distinct sessions ({sum(len(e) for _, e in sessions)} events), {len(rules.rules)} session rules, "
          f"{len(rules.source_rules)} source rules")
    print(f"judged {n} sessions in {elapsed:.2f} s: {rate:,.0f} sessions/s ({1e6 / rate:.1f} µs/session); target ≥ 5,000/s: "
          f"{'met' if rate >= 5000 else 'NOT met'}")
    rows = sorted(((cls, 1e6 * sum(ts) / len(ts)) for cls, ts in per_class.items()), key=lambda r: -r[1])
    for cls, us in rows:
        print(f"  {cls:32} {us:8.1f} µs")
    if a.json:
        a.json.write_text(json.dumps({"sessions_per_s": rate, "us_per_session": 1e6 / rate,
                                      "per_class_us": dict(rows), "sessions": len(sessions)}, indent=2))
    return 0 if rate >= 5000 else 1


if __name__ == "__main__":
    sys.exit(main())
