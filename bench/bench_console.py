#!/usr/bin/env python3
"""Benchmark of the analyst console's heaviest pages on a large SQLite database.

Run it with the venv that has honeyjet installed::

    /work/venv/bin/python bench/bench_console.py                      # 1,000,000 events / 100,000 sessions
    /work/venv/bin/python bench/bench_console.py --keep /tmp/hj-bench # keep the data dir (reused when run again)
    /work/venv/bin/python bench/bench_console.py --sessions 2000      # a quick smoke run

How the database is filled: with :meth:`honeyjet.store.database.Database.write_events`,
the sensor's own write path (the embedded SQLite writer), in batches of 10,000 realistic
events, oldest first. Every session has exactly ten events: ``session.connect``, seven
protocol events (``pjl.command``, ``http.request``, ``ipp.request``, ``snmp.request``),
``session.closed`` and ``honeyjet.verdict.session``; one session in twenty carries a
print job (``job.captured`` and ``job.analyzed`` in place of two protocol events) and
one in a hundred a ``verdict.source``. So ``verdicts``, ``job_analyses`` and ``sources``
are written from those events exactly as a sensor writes them. Sessions start uniformly
over the last 30 days, from 2,000 source addresses (a few of them very busy); their
verdicts follow the built-in rules, weighted towards scanners and PJL enumeration.

What is timed, through the aiohttp application on a real socket (``aiohttp.test_utils``
server on 127.0.0.1, logged in, one request at a time), after two warm-up requests:

* ``overview``: ``/`` (counts today and for 7 days, sessions per hour, top sources, ports,
  classes, rules, severities);
* ``sessions p1``: ``/sessions?range=7d&class=scanner_banner_grab&severity=low`` (a
  common class and severity), and ``sessions p10`` the tenth page of it (keyset cursor);
* ``sessions rare``: the same for a rare class (``firmware_upload``/``critical``).

Median and p95 (nearest rank) over ``--runs`` requests each; the issue's target is
below 300 ms for each page (judged here on the p95).
"""

from __future__ import annotations

import argparse
import asyncio
import random
import re
import shutil
import statistics
import sys
import tempfile
import time
import uuid
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

UTC = timezone.utc
TARGET_MS = 300.0
EVENTS_PER_SESSION = 10
BATCH = 10_000
USER, PASSWORD = "bench", "bench password"
# (class, severity, rule id, weight)
VERDICTS = [
    ("scanner_banner_grab", "low", "HJ-PJL-001", 40), ("pjl_info_enumeration", "low", "HJ-PJL-002", 20),
    ("benign_status_query", "info", "HJ-PJL-005", 15), ("pjl_display_defacement", "medium", "HJ-PJL-020", 10),
    ("printer_spam_job", "medium", "HJ-JOB-020", 8), ("nmap_service_probe", "low", "HJ-NET-001", 3),
    ("path_traversal", "high", "HJ-FS-010", 2), ("pjl_destructive_control", "high", "HJ-PJL-031", 1),
    ("firmware_upload", "critical", "HJ-JOB-001", 1),
]
PROTOCOL_EVENTS = [
    ("pjl", 9100, "honeyjet.pjl.command", lambda r: {"command": "INFO", "args": r.choice(["ID", "STATUS", "FILESYS", "VARIABLES"])}),
    ("http", 80, "honeyjet.http.request", lambda r: {"method": "GET", "path": r.choice(["/", "/hp/device/info", "/cgi-bin/x"]),
                                                      "user_agent": r.choice(["Mozilla/5.0 zgrab/0.x", "python-urllib/3.11"])}),
    ("ipp", 631, "honeyjet.ipp.request", lambda r: {"operation": "Get-Printer-Attributes", "version": "2.0"}),
    ("snmp", 161, "honeyjet.snmp.request", lambda r: {"pdu": "get", "oids": ["1.3.6.1.2.1.1.1.0"]}),
]


def _stamp(t: datetime) -> str:
    return t.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def session_events(rnd: random.Random, i: int, start: datetime, ip: str) -> list[dict[str, Any]]:
    """The ten events of one synthetic session (see the module docstring)."""
    sid = f"b{i:011x}"
    proto, port, eventid, fields = PROTOCOL_EVENTS[rnd.randrange(len(PROTOCOL_EVENTS))]
    cls, sev, rule, _ = rnd.choices(VERDICTS, weights=[v[3] for v in VERDICTS])[0]
    base = {"sensor": "bench", "session": sid, "protocol": proto, "src_ip": ip, "src_port": rnd.randrange(1024, 65535),
            "dst_ip": "192.0.2.1", "dst_port": port}

    def ev(eid: str, k: int, message: str, **data: Any) -> dict[str, Any]:
        return {"eventid": eid, "event_uuid": uuid.UUID(int=rnd.getrandbits(128)).hex, "timestamp": _stamp(start + timedelta(milliseconds=40 * k)),
                **base, "message": message, **data}

    out = [ev("honeyjet.session.connect", 0, f"{proto} connection from {ip}")]
    body = [ev(eventid, k, f"{eventid} from {ip}", **fields(rnd)) for k in range(1, 8)]
    if i % 20 == 0:
        sha = f"{rnd.getrandbits(256):064x}" if i % 60 else "ab" * 32  # some contents repeat
        body[-2] = ev("honeyjet.job.captured", 6, "print job", job=1, language="pcl", name=f"job {i}", user="x", pages=1,
                      shasum=sha, size=4096, stored_size=4096, truncated=False, ended_by="eof")
        body[-1] = ev("honeyjet.job.analyzed", 7, "job analysed", shasum=sha, language="pcl", text_source="pcl5",
                      text_chars=120, text_shasum=None, simhash="0123456789abcdef", campaign=f"c-{sha[:12]}",
                      indicators=[{"type": "url", "value": "http://spam.example/", "offset": 10}], previews=[], errors=[])
    elif i % 100 == 1:
        body[-1] = ev("honeyjet.verdict.source", 7, "source verdict", classes=["printer_spam_job"], severity="medium",
                      rules=["HJ-SRC-005"], sessions=3, jobs=1, campaigns=[], attribution=[], first_seen="")
    out += body
    out.append(ev("honeyjet.session.closed", 8, "closed", duration_ms=320, bytes_in=900, bytes_out=300, reason="eof", jobs=int(i % 20 == 0)))
    out.append(ev("honeyjet.verdict.session", 9, f"verdict {cls}", classes=[cls], severity=sev, rules=[rule], service=proto,
                  attribution=[]))
    return out


async def fill(settings: Any, sessions: int, days: int = 30) -> float:
    from honeyjet.store.database import Database

    rnd = random.Random(20261127)
    now = datetime.now(UTC)
    starts = sorted(now - timedelta(seconds=rnd.uniform(60, days * 86400)) for _ in range(sessions))
    ips = [f"203.0.{n // 250}.{n % 250 + 1}" for n in range(2000)]
    weights = [1.0 / (k + 1) for k in range(len(ips))]  # a few very busy sources
    db = Database(settings.database_url)
    await db.open()
    t0 = time.perf_counter()
    batch: list[dict[str, Any]] = []
    try:
        for i, start in enumerate(starts):
            batch += session_events(rnd, i, start, rnd.choices(ips, weights)[0])
            if len(batch) >= BATCH:
                await db.write_events(batch)
                batch = []
            if i and i % 20_000 == 0:
                print(f"  {i * EVENTS_PER_SESSION:,} events written", flush=True)
        if batch:
            await db.write_events(batch)
    finally:
        await db.close()
    return time.perf_counter() - t0


async def measure(settings: Any, data_dir: Path, runs: int) -> dict[str, list[float]]:
    from aiohttp.test_utils import TestClient, TestServer

    from honeyjet.console.app import build_app
    from honeyjet.store.database import Database

    db = Database(settings.database_url)
    await db.open()
    client = TestClient(TestServer(build_app(settings, database=db, data_dir=data_dir, secure_cookies=False), host="127.0.0.1"))
    await client.start_server()
    try:
        page = await (await client.get("/login")).text()
        token = re.search(r'name="csrf_token" value="([^"]+)"', page).group(1)  # type: ignore[union-attr]
        resp = await client.post("/login", data={"username": USER, "password": PASSWORD, "csrf_token": token}, allow_redirects=False)
        assert resp.status == 303, resp.status

        async def later_page(url: str, n: int) -> str:
            for _ in range(n - 1):
                html = await (await client.get(url)).text()
                m = re.search(r'href="([^"]+)"[^>]*id="older"', html)
                assert m, f"fewer than {n} pages for {url}"
                url = m.group(1).replace("&amp;", "&")
            return url

        common = "/sessions?range=7d&class=scanner_banner_grab&severity=low"
        pages = {
            "overview": "/",
            "sessions p1": common,
            "sessions p10": await later_page(common, 10),
            "sessions rare": "/sessions?range=7d&class=firmware_upload&severity=critical",
        }
        times: dict[str, list[float]] = {}
        for name, url in pages.items():
            for _ in range(2):  # warm-up
                assert (await client.get(url)).status == 200
            got = []
            for _ in range(runs):
                t0 = time.perf_counter()
                r = await client.get(url)
                await r.read()
                got.append((time.perf_counter() - t0) * 1000)
                assert r.status == 200, (url, r.status)
            times[name] = got
        return times
    finally:
        await client.close()
        await db.close()


def p95(values: list[float]) -> float:
    ordered = sorted(values)
    return ordered[max(0, -(-95 * len(ordered) // 100) - 1)]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sessions", type=int, default=100_000, help="sessions to write (ten events each; default 100,000)")
    ap.add_argument("--runs", type=int, default=15, help="timed requests per page (default 15)")
    ap.add_argument("--keep", type=Path, help="data directory to keep; reused without filling when it has a database")
    args = ap.parse_args(argv)

    from honeyjet.config import load_settings
    from honeyjet.console.auth import add_user

    data_dir = args.keep or Path(tempfile.mkdtemp(prefix="hj-bench-console-"))
    data_dir.mkdir(parents=True, exist_ok=True)
    settings = load_settings(env={}, overrides={"sensor": {"data_dir": str(data_dir)}})
    try:
        db_file = data_dir / "honeyjet.db"
        if db_file.exists():
            print(f"reusing {db_file} ({db_file.stat().st_size / 2**20:.0f} MiB)")
        else:
            n = args.sessions
            print(f"filling {db_file}: {n * EVENTS_PER_SESSION:,} events / {n:,} sessions via Database.write_events ...", flush=True)
            took = asyncio.run(fill(settings, n))
            print(f"filled in {took:.1f} s ({n * EVENTS_PER_SESSION / took:,.0f} events/s), "
                  f"{db_file.stat().st_size / 2**20:.0f} MiB")
        add_user(data_dir / "console-users.toml", USER, PASSWORD, n=2**10)
        times = asyncio.run(measure(settings, data_dir, args.runs))
    finally:
        if args.keep is None:
            shutil.rmtree(data_dir, ignore_errors=True)
    print(f"\n{'page':<15} {'median ms':>10} {'p95 ms':>8}  target < {TARGET_MS:.0f} ms (p95)")
    ok = True
    for name, values in times.items():
        met = p95(values) < TARGET_MS
        ok &= met
        print(f"{name:<15} {statistics.median(values):>10.1f} {p95(values):>8.1f}  {'met' if met else 'MISSED'}")
    print(f"\nall targets {'met' if ok else 'NOT met'} ({args.runs} runs each, Python {sys.version.split()[0]})")
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
