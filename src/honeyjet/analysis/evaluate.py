"""Detection quality: replay a labelled corpus through the live service and score verdicts.

:func:`evaluate` starts a sensor on 127.0.0.1 (temporary data directory, free port
offset), replays every corpus payload over real sockets — whole, split at its
``chunk_offsets``, byte by byte, at random cuts, and as the variants of
:mod:`honeyjet.analysis.variants` — waits for each session's
``honeyjet.verdict.session`` and scores the primary class (per-class precision,
recall, F1, macro-F1), the severity, secondary classes, and that every verdict names
its rules. :func:`markdown` renders the report for ``docs/detection.md``.
"""

from __future__ import annotations

import asyncio
import base64
import json
import socket
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from honeyjet.analysis.variants import random_cuts, variants
from honeyjet.events import MemorySink

CHUNK_PAUSE = 0.003  # seconds between the writes of a segmented replay (so they arrive apart)


@dataclass
class Case:
    entry: dict[str, Any]
    payload: bytes
    cuts: list[int]
    mode: str  # whole, chunks, bytes, random, variant:<name>
    src_port: int = 0
    started: float = 0.0
    verdict: dict[str, Any] | None = None

    @property
    def expected(self) -> str:
        return self.entry["class"]


@dataclass
class Score:
    cases: int = 0
    judged: int = 0
    per_class: dict[str, dict[str, float]] = field(default_factory=dict)
    macro_f1: float = 0.0
    accuracy: float = 0.0
    severity_accuracy: float = 0.0
    secondary_recall: float = 0.0
    without_rules: int = 0
    mistakes: list[dict[str, Any]] = field(default_factory=list)
    unjudged: list[str] = field(default_factory=list)  # "id mode src_port" of cases without a verdict


def load_corpus(path: Path | str) -> list[dict[str, Any]]:
    entries = json.loads(Path(path).read_text(encoding="utf-8"))
    for e in entries:
        e["_payload"] = base64.b64decode(e["payload_b64"])
    return entries


def build_cases(entries: list[dict[str, Any]], *, segmentations: bool = True, with_variants: bool = False,
                bytewise_limit: int = 2048, seed: int = 1) -> list[Case]:
    cases: list[Case] = []
    for i, e in enumerate(entries):
        data: bytes = e["_payload"]
        if not with_variants:
            cases.append(Case(e, data, [], "whole"))
            if not segmentations or e.get("transport") == "udp":
                continue
            if e.get("chunk_offsets"):
                cases.append(Case(e, data, [o for o in e["chunk_offsets"] if 0 < o < len(data)], "chunks"))
            if 1 < len(data) <= bytewise_limit:
                cases.append(Case(e, data, list(range(1, len(data))), "bytes"))
            cases.append(Case(e, data, random_cuts(data, seed + i), "random"))
        else:
            for name, payload in variants(e, data):
                cuts = random_cuts(payload, seed + i) if e.get("transport") != "udp" else []
                cases.append(Case(e, payload, cuts, f"variant:{name}"))
    return cases


async def _replay_tcp(port: int, case: Case, timeout: float) -> None:
    reader, writer = await asyncio.wait_for(asyncio.open_connection("127.0.0.1", port), timeout)
    sock = writer.get_extra_info("socket")
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    case.src_port = writer.get_extra_info("sockname")[1]
    data, last = case.payload, 0
    try:
        for cut in case.cuts + [len(data)]:
            if cut > last:
                writer.write(data[last:cut])
                await writer.drain()
                if cut < len(data):
                    await asyncio.sleep(CHUNK_PAUSE if len(case.cuts) < 64 else 0)
            last = cut
        if writer.can_write_eof():
            writer.write_eof()
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            chunk = await asyncio.wait_for(reader.read(65536), max(0.01, end - time.monotonic()))
            if not chunk:
                break
    except (asyncio.TimeoutError, ConnectionError, OSError):
        pass
    finally:
        writer.close()
        try:
            await writer.wait_closed()
        except (ConnectionError, OSError):
            pass


def _replay_udp(port: int, case: Case) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        case.src_port = s.getsockname()[1]
        s.sendto(case.payload, ("127.0.0.1", port))


async def run_cases(sensor: Any, sink: MemorySink, cases: list[Case], *, concurrency: int = 8, timeout: float = 10.0,
                    verdict_timeout: float = 300.0, progress: Callable[[int, int], None] | None = None) -> None:
    """Replay the cases against a running sensor and attach each session's verdict."""
    st = sensor.settings
    sem = asyncio.Semaphore(concurrency)
    done = 0

    async def one(case: Case) -> None:
        nonlocal done
        e = case.entry
        async with sem:
            svc = {9100: st.pjl, 80: st.http, 631: st.ipp, 515: st.lpd, 161: st.snmp}.get(e["port"])
            if e.get("transport") == "udp":
                svc = st.browse if e["port"] == 631 else st.snmp
            if svc is None:
                return
            port = st.listen_port(svc)
            case.started = time.monotonic()
            if e.get("transport") == "udp":
                _replay_udp(port, case)
            else:
                await _replay_tcp(port, case, timeout)
        done += 1
        if progress:
            progress(done, len(cases))

    await asyncio.gather(*(one(c) for c in cases))
    # a client port can come back for a later case once its connection is closed: the n-th
    # session the sensor saw from a port belongs to the n-th case that used it
    by_port: dict[tuple[str, int], list[Case]] = {}
    for c in sorted((c for c in cases if c.src_port), key=lambda c: c.started):
        by_port.setdefault((_transport(c), c.src_port), []).append(c)
    owner: dict[str, Case] = {}
    seen_connects: dict[tuple[str, int], int] = {}
    deadline = time.monotonic() + verdict_timeout
    seen = 0
    pending = sum(len(v) for v in by_port.values())
    while pending and time.monotonic() < deadline:
        events = sink.events
        for ev in events[seen:]:
            eid = ev.get("eventid")
            if eid == "honeyjet.session.connect":
                key = ("udp" if ev.get("protocol") in ("snmp", "browse") else "tcp", ev.get("src_port"))
                n = seen_connects.get(key, 0)
                seen_connects[key] = n + 1
                lst = by_port.get(key)
                if lst is not None and n < len(lst):
                    owner[ev["session"]] = lst[n]
            elif eid == "honeyjet.verdict.session":
                c = owner.get(ev.get("session"))
                if c is not None and c.verdict is None:
                    c.verdict = ev
                    pending -= 1
        seen = len(events)
        await asyncio.sleep(0.05)


def _transport(c: Case) -> str:
    return "udp" if c.entry.get("transport") == "udp" else "tcp"


def score(cases: list[Case]) -> Score:
    sc = Score(cases=len(cases))
    labels = sorted({c.expected for c in cases})
    tp = {k: 0 for k in labels}
    fp: dict[str, int] = {}
    fn = {k: 0 for k in labels}
    sev_ok = correct = sec_total = sec_hit = 0
    for c in cases:
        v = c.verdict
        got = (v or {}).get("classes") or []
        primary = got[0] if got else "unclassified"
        if v is not None:
            sc.judged += 1
            if not v.get("rules"):
                sc.without_rules += 1
        else:
            sc.unjudged.append(f"{c.entry['id']} {c.mode} port {c.src_port}")
        if primary == c.expected:
            tp[c.expected] += 1
            correct += 1
        else:
            fn[c.expected] += 1
            fp[primary] = fp.get(primary, 0) + 1
            sc.mistakes.append({"id": c.entry["id"], "mode": c.mode, "expected": c.expected, "got": got,
                                "severity": (v or {}).get("severity"), "rules": (v or {}).get("rules", [])})
        if v is not None and v.get("severity") == c.entry["severity"]:
            sev_ok += 1
        for s in c.entry.get("secondary_classes") or []:
            sec_total += 1
            sec_hit += s in got
    f1s = []
    for k in labels:
        p = tp[k] / (tp[k] + fp.get(k, 0)) if tp[k] + fp.get(k, 0) else 0.0
        r = tp[k] / (tp[k] + fn[k]) if tp[k] + fn[k] else 0.0
        f1 = 2 * p * r / (p + r) if p + r else 0.0
        f1s.append(f1)
        sc.per_class[k] = {"support": tp[k] + fn[k], "precision": p, "recall": r, "f1": f1}
    sc.macro_f1 = sum(f1s) / len(f1s) if f1s else 0.0
    sc.accuracy = correct / len(cases) if cases else 0.0
    sc.severity_accuracy = sev_ok / len(cases) if cases else 0.0
    sc.secondary_recall = sec_hit / sec_total if sec_total else 1.0
    return sc


async def evaluate(corpus: Path | str, *, with_variants: bool = True, segmentations: bool = True,
                   overrides: dict[str, dict[str, Any]] | None = None,
                   progress: Callable[[str, int, int], None] | None = None) -> dict[str, Any]:
    """Start a sensor, replay the corpus (and its variants), return both scores and the cases."""
    from honeyjet.config import load_settings
    from honeyjet.sensor import Sensor, free_port_offset

    entries = load_corpus(corpus)
    with tempfile.TemporaryDirectory(prefix="honeyjet-eval-") as tmp:
        over: dict[str, dict[str, Any]] = {
            "sensor": {"data_dir": tmp, "bind": "127.0.0.1", "port_offset": free_port_offset(), "name": "evaluation", "user": ""},
            "limits": {"sessions_per_source": 4096, "idle_timeout": 30.0},
            "browse": {"max_packets_per_source": 100000},
            # hanging PostScript costs a forensics worker this long; the verdict does not depend on it
            "analysis": {"render_timeout": 4.0},
        }
        for k, v in (overrides or {}).items():
            over.setdefault(k, {}).update(v)
        settings = load_settings(env={}, overrides=over)
        sensor = Sensor(settings)
        await sensor.start()
        sink = MemorySink()
        sensor.bus.add_sink(sink)
        try:
            corpus_cases = build_cases(entries, segmentations=segmentations)
            await run_cases(sensor, sink, corpus_cases,
                            progress=(lambda d, n: progress("corpus", d, n)) if progress else None)
            variant_cases: list[Case] = []
            if with_variants:
                variant_cases = build_cases(entries, with_variants=True)
                await run_cases(sensor, sink, variant_cases,
                                progress=(lambda d, n: progress("variants", d, n)) if progress else None)
        finally:
            await sensor.stop()
    result: dict[str, Any] = {
        "corpus": score(corpus_cases),
        "corpus_cases": corpus_cases,
        "entries": len(entries),
        "rules": len(sensor.analyzer.rules.rules) if sensor.analyzer else 0,
    }
    if with_variants:
        result["variants"] = score(variant_cases)
        result["variant_cases"] = variant_cases
    return result


def _pct(x: float) -> str:
    return f"{100 * x:.1f} %"


def markdown(result: dict[str, Any], *, command: str, machine: str = "") -> str:
    """The evaluation as ``docs/detection.md`` tables."""
    out: list[str] = []
    corpus: Score = result["corpus"]
    out.append("## Evaluation\n")
    out.append(f"Generated by `{command}`{(' on ' + machine) if machine else ''}: {result['entries']} corpus entries, "
               f"{result['rules']} session rules. Every payload is replayed through a running sensor on 127.0.0.1 "
               "over real sockets — whole, split at its `chunk_offsets`, byte by byte (≤ 2 KiB) and at random cuts — "
               "and scored on the primary class of its `honeyjet.verdict.session`.\n")
    rows = [("corpus replays", corpus)]
    if "variants" in result:
        rows.append(("variants (not in the corpus)", result["variants"]))
    out.append("| set | sessions | judged | macro-F1 | accuracy | severity right | secondary classes found | verdicts without rules |")
    out.append("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    for name, s in rows:
        out.append(f"| {name} | {s.cases} | {s.judged} | **{_pct(s.macro_f1)}** | {_pct(s.accuracy)} | "
                   f"**{_pct(s.severity_accuracy)}** | {_pct(s.secondary_recall)} | {s.without_rules} |")
    out.append("")
    out.append("Targets: macro-F1 ≥ 95 % and severity right ≥ 95 %, on the corpus and on the variants; every verdict lists its rules.\n")
    for name, s in rows:
        out.append(f"### Per class: {name}\n")
        out.append("| class | sessions | precision | recall | F1 |")
        out.append("| --- | ---: | ---: | ---: | ---: |")
        for k, m in sorted(s.per_class.items()):
            out.append(f"| `{k}` | {int(m['support'])} | {_pct(m['precision'])} | {_pct(m['recall'])} | {_pct(m['f1'])} |")
        out.append("")
        if s.mistakes:
            out.append(f"Misclassified ({len(s.mistakes)}):\n")
            for m in s.mistakes[:40]:
                out.append(f"- `{m['id']}` ({m['mode']}): expected `{m['expected']}`, got {m['got'] or 'nothing'} "
                           f"({', '.join(m['rules']) or 'no rule'})")
            out.append("")
    if "variant_cases" in result:
        kinds: dict[str, int] = {}
        for c in result["variant_cases"]:
            kinds[c.mode.split(":", 1)[1]] = kinds.get(c.mode.split(":", 1)[1], 0) + 1
        out.append("Variant kinds (each also segmented at random cuts): " +
                   ", ".join(f"`{k}` × {n}" for k, n in sorted(kinds.items())) + ".\n")
    return "\n".join(out)
