"""Store-and-forward: a fleet sensor's events (and job files) to the central collector.

The spool is the sensor's own SQLite database: every event is already in ``events``,
in insertion (rowid) order. The forwarder reads what follows its cursor, uploads the
artifacts those events reference that the collector lacks, posts the events as
gzip-compressed JSON lines, and moves the cursor (table ``forward_state``) only after
the collector has acknowledged the batch. A crash between acknowledgement and cursor
write resends the batch: delivery is at-least-once and the collector's inserts are
idempotent on ``event_uuid``, so every event is stored exactly once centrally.

While the collector or the link is down nothing is lost: events wait in the database,
the forwarder backs off (doubling up to ``forward.retry_max``) and ``pending`` /
``lag_seconds`` say how far behind it is. The reading and compressing run in a worker
thread; the loop only awaits.

Wire protocol (``honeyjet.fleet.collector`` serves it), every request with
``Authorization: Bearer <token>``:

* ``POST /api/v1/artifacts/missing`` ``{"shasums": [...]}`` → ``{"missing": [...]}``
* ``PUT /api/v1/artifacts/<sha256>`` body = the file → 201/200
* ``POST /api/v1/events`` body = JSON lines (``Content-Encoding: gzip``) →
  ``{"received": n, "stored": k, "rejected": r}``
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import gzip
import logging
import math
import sqlite3
import ssl
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import orjson

from honeyjet.aioutil import cancel_and_wait
from honeyjet.store.artifacts import is_shasum

log = logging.getLogger(__name__)

API = "/api/v1"
# event fields that name artifacts worth sending with their events
ARTIFACT_FIELDS = ("shasum", "text_shasum")
ARTIFACT_LISTS = ("previews",)


class ForwardError(ValueError):
    """A [forward] setting that cannot work (one line, names the key)."""


def forward_target(url: str) -> str:
    """The collector base URL, validated (http/https with a host, no query or fragment)."""
    parts = urlsplit(url.strip())
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ForwardError(f"forward.url = {url!r}: must be an http(s) URL of the collector")
    if parts.query or parts.fragment:
        raise ForwardError(f"forward.url = {url!r}: no query or fragment")
    return url.strip().rstrip("/")


def read_token(token: str, token_file: str, key: str = "forward") -> str:
    """The token inline or from its file (first line), validated."""
    if token and token_file:
        raise ForwardError(f"{key}.token and {key}.token_file: give one of them")
    if token_file:
        try:
            token = Path(token_file).read_text("utf-8").strip()
        except (OSError, UnicodeDecodeError) as exc:
            raise ForwardError(f"{key}.token_file = {token_file!r}: cannot read it ({exc})") from None
    token = token.strip()
    if len(token) < 16 or not token.isascii() or any(c.isspace() for c in token):
        raise ForwardError(f"{key}.token: missing or not a token from `honeyjet collector token add`")
    return token


def _artifact_refs(event: dict[str, Any], transcripts: bool) -> list[str]:
    refs = [event[f] for f in ARTIFACT_FIELDS if is_shasum(event.get(f))]
    for f in ARTIFACT_LISTS:
        value = event.get(f)
        if isinstance(value, list):
            refs.extend(v for v in value[:64] if is_shasum(v))
    if transcripts and is_shasum(event.get("transcript_shasum")):
        refs.append(event["transcript_shasum"])
    return refs


def _event_time(event: dict[str, Any]) -> float | None:
    stamp = event.get("timestamp")
    if not isinstance(stamp, str):
        return None
    try:
        return datetime.fromisoformat(stamp.replace("Z", "+00:00")).timestamp()
    except ValueError:
        return None


class _Spool:
    """The sensor database seen from the forwarder's thread: batches after a cursor, the cursor."""

    def __init__(self, path: Path, target: str) -> None:
        self.path = path
        self.target = target
        self._conn: sqlite3.Connection | None = None

    def _db(self) -> sqlite3.Connection:
        if self._conn is None:
            conn = sqlite3.connect(str(self.path), timeout=10.0, isolation_level=None, check_same_thread=False)
            conn.execute("PRAGMA busy_timeout=10000")
            self._conn = conn
        return self._conn

    def cursor(self) -> int:
        row = self._db().execute("SELECT last_rowid FROM forward_state WHERE target = ?", (self.target,)).fetchone()
        return int(row[0]) if row else 0

    def save(self, rowid: int) -> None:
        self._db().execute(
            "INSERT INTO forward_state (target, last_rowid, updated) VALUES (?, ?, ?) "
            "ON CONFLICT (target) DO UPDATE SET last_rowid = excluded.last_rowid, updated = excluded.updated",
            (self.target, rowid, datetime.now(timezone.utc).isoformat(sep=" ")),
        )

    def batch(self, after: int, limit: int) -> tuple[list[int], list[bytes]]:
        rows = self._db().execute("SELECT rowid, data FROM events WHERE rowid > ? ORDER BY rowid LIMIT ?", (after, limit)).fetchall()
        return [r[0] for r in rows], [r[1].encode("utf-8") if isinstance(r[1], str) else bytes(r[1]) for r in rows]

    def newest(self) -> int:
        row = self._db().execute("SELECT max(rowid) FROM events").fetchone()
        return int(row[0] or 0)

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None


class Forwarder:
    """Forwards the local database's events to a collector; see the module docstring."""

    def __init__(self, settings: Any, database_path: Path, artifacts: Any = None) -> None:
        fw = settings.forward
        self.url = forward_target(fw.url)
        self.token = read_token(fw.token, fw.token_file)
        self.ssl: ssl.SSLContext | bool = True
        if fw.ca_file:
            try:
                self.ssl = ssl.create_default_context(cafile=fw.ca_file)
            except (OSError, ssl.SSLError) as exc:
                raise ForwardError(f"forward.ca_file = {fw.ca_file!r}: {exc}") from None
        self.batch_size = fw.batch
        self._limit = fw.batch  # halved when the collector answers 413 (too large), doubled back after each success
        self.interval = fw.interval
        self.timeout = fw.timeout
        self.retry_max = fw.retry_max
        self.artifact_bytes = fw.artifact_bytes
        self.transcripts = fw.transcripts
        self.artifacts = artifacts
        self.spool = _Spool(database_path, self.url)
        self.cursor = 0
        self.pending = 0  # events in the database after the cursor
        self.lag_seconds = 0.0  # age of the oldest event not yet acknowledged
        self.counters: dict[str, int] = {
            "events": 0,  # events acknowledged by the collector (re-sends included)
            "batches": 0,
            "failures": 0,  # requests that failed (the batch is retried)
            "artifacts": 0,  # files uploaded
            "artifact_bytes": 0,
            "rejected": 0,  # lines the collector refused as malformed
            "oversize": 0,  # single events larger than the collector accepts (skipped, kept locally)
            "splits": 0,  # batches halved because the collector found them too large
        }
        self.connected = False
        self._pool = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="honeyjet-forward")
        self._http: Any = None
        self._task: asyncio.Task[None] | None = None
        self._wake = asyncio.Event()
        self._last_log = -math.inf

    async def _io(self, fn: Any, *args: Any) -> Any:
        return await asyncio.get_running_loop().run_in_executor(self._pool, fn, *args)

    # -- lifecycle ------------------------------------------------------------------

    async def start(self) -> None:
        import aiohttp

        self.cursor = await self._io(self.spool.cursor)
        self._http = aiohttp.ClientSession(
            headers={"Authorization": f"Bearer {self.token}", "User-Agent": "honeyjet-forwarder"},
            timeout=aiohttp.ClientTimeout(total=self.timeout),
        )
        self._task = asyncio.create_task(self._run(), name="honeyjet-forwarder")

    def wake(self) -> None:
        self._wake.set()

    async def stop(self, final: float = 3.0) -> None:
        """Stop; first, one last bounded attempt to send what is pending."""
        await cancel_and_wait(self._task)
        self._task = None
        if self._http is not None:
            try:
                await asyncio.wait_for(self._drain(), final)
            except (asyncio.TimeoutError, Exception):  # the next start resumes from the cursor
                pass
            await self._http.close()
            self._http = None
        await self._io(self.spool.close)
        self._pool.shutdown(wait=True)

    async def _drain(self) -> None:
        while await self.step():
            pass

    # -- the loop ---------------------------------------------------------------------

    async def _run(self) -> None:
        delay = 0.0
        while True:
            try:
                more = await self.step()
                delay = 0.0
                self.connected = True
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                self.counters["failures"] += 1
                self.connected = False
                delay = min(self.retry_max, max(1.0, delay * 2))
                self._note("collector %s unreachable or refused (%s); retrying in %.0f s, %d events pending", self.url, exc, delay, self.pending)
                more = False
            if more:
                continue
            self._wake.clear()
            try:
                await asyncio.wait_for(self._wake.wait(), delay or self.interval)
            except asyncio.TimeoutError:
                pass

    def _note(self, message: str, *args: Any) -> None:
        now = time.monotonic()
        if now - self._last_log >= 60.0:
            self._last_log = now
            log.warning("forwarder: " + message, *args)

    async def step(self) -> bool:
        """Send one batch; True when a full batch went (more may be waiting)."""
        limit = self._limit
        rowids, lines = await self._io(self.spool.batch, self.cursor, limit)
        if not rowids:
            self.pending = 0
            self.lag_seconds = 0.0
            return False
        events = []
        for line in lines:
            try:
                ev = orjson.loads(line)
            except orjson.JSONDecodeError:
                continue
            if isinstance(ev, dict):
                events.append(ev)
        newest = await self._io(self.spool.newest)
        self.pending = max(0, newest - self.cursor)
        first = _event_time(events[0]) if events else None
        self.lag_seconds = max(0.0, time.time() - first) if first is not None else 0.0
        await self._send_artifacts(events)
        body = await self._io(gzip.compress, b"\n".join(lines) + b"\n", 5)
        async with self._http.post(
            f"{self.url}{API}/events",
            data=body,
            headers={"Content-Type": "application/x-ndjson", "Content-Encoding": "gzip"},
            ssl=self.ssl,
            allow_redirects=False,
        ) as resp:
            if resp.status == 413:
                return await self._too_large(rowids)
            if resp.status != 200:
                raise ForwardError(f"HTTP {resp.status} for {len(lines)} events")
            reply = await resp.json(content_type=None)
        self._limit = min(self.batch_size, limit * 2)  # back up to full size after a split
        rejected = reply.get("rejected") if isinstance(reply, dict) else None
        if isinstance(rejected, int) and rejected > 0:
            self.counters["rejected"] += rejected
        self.cursor = rowids[-1]
        await self._io(self.spool.save, self.cursor)
        self.counters["events"] += len(lines)
        self.counters["batches"] += 1
        self.pending = max(0, newest - self.cursor)
        if not self.pending:
            self.lag_seconds = 0.0
        return len(rowids) >= limit

    async def _too_large(self, rowids: list[int]) -> bool:
        """The collector refused the batch as too large: halve it; one event alone is skipped."""
        if len(rowids) > 1:
            self.counters["splits"] += 1
            self._limit = max(1, len(rowids) // 2)
            return True
        self.counters["oversize"] += 1
        self._note("event at rowid %d is larger than the collector accepts (collector.max_request_bytes): not forwarded", rowids[0])
        self.cursor = rowids[0]
        await self._io(self.spool.save, self.cursor)
        return True

    async def _send_artifacts(self, events: list[dict[str, Any]]) -> None:
        if self.artifacts is None or self.artifact_bytes <= 0:
            return
        wanted: dict[str, Path] = {}
        for ev in events:
            for sha in _artifact_refs(ev, self.transcripts):
                if sha in wanted:
                    continue
                path = self.artifacts.path(sha)
                try:
                    if path is not None and path.stat().st_size <= self.artifact_bytes:
                        wanted[sha] = path
                except OSError:
                    continue
        if not wanted:
            return
        async with self._http.post(f"{self.url}{API}/artifacts/missing", json={"shasums": list(wanted)}, ssl=self.ssl,
                                   allow_redirects=False) as resp:
            if resp.status != 200:
                raise ForwardError(f"HTTP {resp.status} asking which artifacts are missing")
            reply = await resp.json(content_type=None)
        missing = [s for s in (reply.get("missing") or []) if s in wanted] if isinstance(reply, dict) else []
        for sha in missing:
            data = await self._io(wanted[sha].read_bytes)
            async with self._http.put(f"{self.url}{API}/artifacts/{sha}", data=data,
                                      headers={"Content-Type": "application/octet-stream"}, ssl=self.ssl,
                                      allow_redirects=False) as resp:
                if resp.status not in (200, 201):
                    raise ForwardError(f"HTTP {resp.status} uploading artifact {sha[:12]}")
            self.counters["artifacts"] += 1
            self.counters["artifact_bytes"] += len(data)
