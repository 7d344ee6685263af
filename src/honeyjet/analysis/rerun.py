"""``honeyjet analyze``: re-run job forensics and the rules over what is stored.

Reads the JSON-lines event log (the sensor's durable record; rotated files
``honeyjet.json.1`` … are read oldest first), regroups events by session and feeds
them to an :class:`~honeyjet.analysis.engine.Analyzer` built from the current rules —
the same code path as the live sensor. New ``honeyjet.job.analyzed``,
``honeyjet.verdict.session`` and ``honeyjet.verdict.source`` events (marked
``rerun: true``) are appended to the same stores, so the newest verdict of a session is
the one the current rules give. Events the previous analysis produced are skipped.
"""

from __future__ import annotations

import asyncio
import sys
import time
from pathlib import Path
from typing import Any, Callable, Iterator

import orjson

from honeyjet.config import Settings
from honeyjet.events import EventBus, rfc3339

_OWN = ("honeyjet.job.analyzed", "honeyjet.verdict.session", "honeyjet.verdict.source")
MAX_IN_FLIGHT = 64


def log_files(log: Path) -> list[Path]:
    """The log and its rotations, oldest first."""
    rotated = sorted((p for p in log.parent.glob(log.name + ".*") if p.suffix.lstrip(".").isdigit()),
                     key=lambda p: -int(p.suffix.lstrip(".")))
    return rotated + ([log] if log.exists() else [])


def read_events(files: list[Path], since: float = 0.0, progress: Callable[[int, int], None] | None = None) -> Iterator[dict[str, Any]]:
    total = sum(f.stat().st_size for f in files)
    done = 0
    stamp = rfc3339(since) if since else ""
    for f in files:
        with open(f, "rb") as fh:
            for line in fh:
                done += len(line)
                if progress is not None and done % 65536 < len(line):
                    progress(done, total)
                try:
                    ev = orjson.loads(line)
                except orjson.JSONDecodeError:
                    continue  # a line cut by a crash or copytruncate: skip it
                if not isinstance(ev, dict) or ev.get("eventid") in _OWN:
                    continue
                if stamp and str(ev.get("timestamp", "")) < stamp:
                    continue
                yield ev
    if progress is not None:
        progress(total, total)


class _Rerun:
    """Wraps the bus so every analysis event says it comes from a re-run."""

    def __init__(self, bus: EventBus):
        self.bus = bus

    def emit(self, eventid: str, message: str, identity: dict[str, Any], fields: dict[str, Any]) -> dict[str, Any]:
        return self.bus.emit(eventid, message, identity, dict(fields, rerun=True))


def progress_bar(label: str) -> Callable[[int, int], None]:
    last = [0.0]

    def show(done: int, total: int) -> None:
        now = time.monotonic()
        if now - last[0] < 0.2 and done < total:
            return
        last[0] = now
        frac = done / total if total else 1.0
        bar = "#" * int(frac * 30)
        sys.stderr.write(f"\r{label} [{bar:<30}] {100 * frac:5.1f} %")
        if done >= total:
            sys.stderr.write("\n")
        sys.stderr.flush()

    return show


async def rerun(settings: Settings, *, since: float = 0.0, show_progress: bool = True) -> dict[str, int]:
    """Re-analyse the stored events with the current rules; returns counters."""
    from honeyjet.sensor import build_analyzer
    from honeyjet.store.artifacts import ArtifactStore

    data = settings.data_dir
    files = log_files(data / "log" / "honeyjet.json")
    if not files:
        raise FileNotFoundError(f"no event log under {data / 'log'}")
    bus = EventBus(settings.sensor_name, strict=settings.sensor.strict_events)
    if settings.store.json_log:
        from honeyjet.store.jsonlog import JsonLinesSink

        bus.add_sink(JsonLinesSink(data / "log" / "honeyjet.json"))
    database = None
    if settings.store.database:
        from honeyjet.store.database import Database, DatabaseSink

        database = Database(settings.database_url)
        await database.open()
        bus.add_sink(DatabaseSink(database))
    artifacts = ArtifactStore(data / "artifacts", max_object_bytes=settings.limits.job_bytes,
                              quota_bytes=settings.limits.disk_quota, fsync=settings.store.fsync)
    analyzer = build_analyzer(settings, bus, artifacts)
    analyzer.bus = _Rerun(bus)
    await bus.start()
    sessions = 0
    try:
        for ev in read_events(files, since, progress_bar("analyze") if show_progress else None):
            analyzer.feed(ev)
            if ev.get("eventid") == "honeyjet.session.closed":
                sessions += 1
                if len(analyzer.tasks) >= MAX_IN_FLIGHT:
                    await asyncio.wait(list(analyzer.tasks), return_when=asyncio.FIRST_COMPLETED)
                else:
                    await asyncio.sleep(0)
        await analyzer.drain()
        await asyncio.sleep(0)
    finally:
        await analyzer.stop()
        await bus.stop()
    return {"sessions": sessions, **analyzer.counters}
