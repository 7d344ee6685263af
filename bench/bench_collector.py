#!/usr/bin/env python3
"""Fleet ingest speed: events per second a collector stores, and how fast a backlog drains.

1. Creates a central database (SQLite in a temp dir, or ``--database-url`` — e.g. a
   PostgreSQL database of your own; its tables are created, and rows are added) and a
   sensor token.
2. Serves the collector (``honeyjet.fleet.collector.serve``) on 127.0.0.1 in this process.
3. Posts ``--events`` realistic events (connect, PJL commands, closed, verdict per session;
   unique event uuids) from ``--senders`` concurrent clients, gzip-compressed batches of
   ``--batch`` lines, exactly as the forwarder sends them, and reports events/s.
4. Posts the same batches again (a forwarder that lost its cursor): duplicates/s, and
   checks the row count did not change.

    python bench/bench_collector.py [--events 100000] [--batch 500] [--senders 4]
                                    [--database-url postgresql+asyncpg://…/honeyjet_bench]
"""

from __future__ import annotations

import argparse
import asyncio
import gzip
import os
import platform
import socket
import sys
import tempfile
import time
from pathlib import Path

import aiohttp
import orjson
from sqlalchemy import text

from honeyjet.config import load_settings
from honeyjet.fleet.collector import TokenBook, serve
from honeyjet.store.database import Database


def session_events(n_sessions: int, prefix: str) -> list[bytes]:
    lines: list[bytes] = []
    for i in range(n_sessions):
        session = f"{prefix}{i:08x}"
        ident = {"sensor": "bench", "session": session, "protocol": "pjl", "src_ip": f"198.51.{(i >> 8) & 255}.{i & 255}",
                 "src_port": 40000 + i % 20000, "dst_ip": "192.0.2.1", "dst_port": 9100}
        ts = f"2026-11-27T12:{(i // 60) % 60:02d}:{i % 60:02d}.{i % 1000000:06d}Z"
        base = len(lines)
        for k, (eventid, fields) in enumerate((
            ("honeyjet.session.connect", {}),
            ("honeyjet.pjl.command", {"verb": "INFO", "args": {"category": "ID"}, "line": "@PJL INFO ID"}),
            ("honeyjet.session.closed", {"duration_ms": 12, "bytes_in": 24, "bytes_out": 30, "reason": "eof", "jobs": 0}),
            ("honeyjet.verdict.session", {"classes": ["pjl_info_enumeration"], "severity": "low", "rules": ["HJ-PJL-001"],
                                          "rule_names": ["PJL INFO"], "service": "pjl", "attribution": []}),
        )):
            ev = {**fields, **ident, "eventid": eventid, "event_uuid": f"{prefix}{base + k:024x}",
                  "timestamp": ts, "message": eventid}
            lines.append(orjson.dumps(ev))
    return lines


async def run(args: argparse.Namespace) -> None:
    with tempfile.TemporaryDirectory(prefix="honeyjet-bench-collector-") as tmp:
        url = args.database_url or f"sqlite+aiosqlite:///{Path(tmp) / 'central.db'}"
        db = Database(url)
        await db.open()
        token = await TokenBook(db).add(f"bench-{os.getpid()}")
        await db.close()
        settings = load_settings(env={}, overrides={"sensor": {"data_dir": tmp, "name": f"bench-{os.getpid()}"}})
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        stop = asyncio.Event()
        ready = asyncio.get_running_loop().create_future()
        server = asyncio.create_task(serve(settings, database_url=url, data_dir=Path(tmp), bind="127.0.0.1", port=port, tls=None,
                                           stop=stop, ready=ready.set_result))
        await asyncio.wait_for(ready, 30)
        prefix = os.urandom(4).hex()
        lines = session_events(args.events // 4, prefix)
        batches = [gzip.compress(b"\n".join(lines[i:i + args.batch]) + b"\n", 5) for i in range(0, len(lines), args.batch)]
        print(f"{len(lines):,} events in {len(batches)} batches of {args.batch} ({sum(map(len, batches)) / len(lines):.0f} B/event gzip), "
              f"{args.senders} senders, database {url.split('@')[-1].split('?')[0]}")

        async def send_all() -> float:
            queue = list(reversed(batches))
            headers = {"Authorization": f"Bearer {token}", "Content-Encoding": "gzip", "Content-Type": "application/x-ndjson"}

            async def sender(http: aiohttp.ClientSession) -> None:
                while queue:
                    body = queue.pop()
                    async with http.post(f"http://127.0.0.1:{port}/api/v1/events", data=body, headers=headers) as resp:
                        if resp.status != 200:
                            raise SystemExit(f"collector answered {resp.status}")
                        await resp.read()

            t0 = time.perf_counter()
            async with aiohttp.ClientSession() as http:
                await asyncio.gather(*(sender(http) for _ in range(args.senders)))
            return time.perf_counter() - t0

        first = await send_all()
        again = await send_all()
        stop.set()
        await server
        db = Database(url)
        await db.open()
        async with db.engine.connect() as conn:
            rows = (await conn.execute(text("SELECT count(*) FROM events WHERE event_uuid LIKE :p"), {"p": f"%{prefix}%"})).scalar()
        await db.close()
        print(f"new events:  {len(lines) / first:10,.0f} events/s ({first:.2f} s)")
        print(f"re-sent:     {len(lines) / again:10,.0f} events/s ({again:.2f} s, every one a duplicate)")
        print(f"rows stored: {rows:,} (expected {len(lines):,}) -> {'exactly once' if rows == len(lines) else 'MISMATCH'}")
        print(f"machine: {platform.machine()}, {os.cpu_count()} CPUs, Python {platform.python_version()}")
        if rows != len(lines):
            sys.exit(1)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--events", type=int, default=100000)
    ap.add_argument("--batch", type=int, default=500)
    ap.add_argument("--senders", type=int, default=4)
    ap.add_argument("--database-url", default="")
    asyncio.run(run(ap.parse_args()))


if __name__ == "__main__":
    main()
