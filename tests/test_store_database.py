"""The event database (SQLite here; PostgreSQL too when HONEYJET_TEST_POSTGRES_URL is set).

HONEYJET_TEST_POSTGRES_URL=postgresql+asyncpg://user@host:port/db (needs asyncpg) runs the
portable tests against a scratch PostgreSQL database whose public schema they wipe.
"""

from __future__ import annotations

import asyncio
import os
import sqlite3
import uuid
from datetime import datetime, timezone
from pathlib import Path

import pytest
from sqlalchemy import inspect, text
from sqlalchemy.ext.asyncio import create_async_engine

from honeyjet.events import EventBus, MemorySink
from honeyjet.store import database as dbmod
from honeyjet.store.database import SCHEMA_VERSION, Database, DatabaseSink, SchemaError, build_rows

UTC = timezone.utc
SHA_A = "a" * 64
SHA_B = "b" * 64
SHA_T = "7" * 64
PG_URL = os.environ.get("HONEYJET_TEST_POSTGRES_URL", "")


def sqlite_url(tmp_path: Path) -> str:
    return f"sqlite+aiosqlite:///{tmp_path / 'db' / 'honeyjet.db'}"


async def _wipe_postgres(url: str) -> None:
    engine = create_async_engine(url)
    async with engine.begin() as conn:
        await conn.execute(text("DROP SCHEMA public CASCADE"))
        await conn.execute(text("CREATE SCHEMA public"))
    await engine.dispose()


@pytest.fixture(params=["sqlite"] + (["postgresql"] if PG_URL else []))
async def url(request, tmp_path):
    if request.param == "sqlite":
        return sqlite_url(tmp_path)
    await _wipe_postgres(PG_URL)
    return PG_URL


@pytest.fixture
async def db(url):
    database = Database(url)
    await database.open()
    yield database
    await database.close()


def ident(session: str = "0123456789ab", src_ip: str = "198.51.100.7") -> dict:
    return {"session": session, "protocol": "pjl", "src_ip": src_ip, "src_port": 40000, "dst_ip": "192.0.2.1", "dst_port": 9100}


def session_events(bus: EventBus, session: str = "0123456789ab", shasum: str = SHA_A) -> None:
    i = ident(session)
    bus.emit("honeyjet.session.connect", "connected", i, {})
    bus.emit("honeyjet.pjl.command", "INFO ID", i, {"command": "INFO", "argument": "INFO ID", "known": True})
    bus.emit(
        "honeyjet.job.captured",
        "job captured",
        i,
        {
            "job": 7,
            "language": "postscript",
            "name": "Report.pdf",
            "user": "alice",
            "pages": 3,
            "ended_by": "uel",
            "shasum": shasum,
            "size": 5000,
            "stored_size": 4096,
            "truncated": True,
            "duplicate": False,
        },
    )
    bus.emit(
        "honeyjet.session.closed",
        "closed",
        i,
        {
            "duration_ms": 1500,
            "bytes_in": 5100,
            "bytes_out": 42,
            "reason": "eof",
            "transcript_shasum": SHA_T,
            "transcript_size": 5142,
            "transcript_truncated": False,
            "jobs": 1,
        },
    )


def clock_from(start: float = 1_790_000_000.0, step: float = 0.25):
    t = [start - step]

    def clock() -> float:
        t[0] += step
        return t[0]

    return clock


# -- migrations ---------------------------------------------------------------------


async def test_migrations_create_v1_and_reopen_is_a_no_op(url):
    db = Database(url)
    await db.open()
    assert db.applied == list(range(1, SCHEMA_VERSION + 1))
    assert await db.schema_version() == SCHEMA_VERSION == 3
    async with db.engine.connect() as conn:
        names = await conn.run_sync(lambda c: set(inspect(c).get_table_names()))
        event_cols = await conn.run_sync(lambda c: {col["name"] for col in inspect(c).get_columns("events")})
        event_idx = await conn.run_sync(lambda c: {tuple(i["column_names"]) for i in inspect(c).get_indexes("events")})
    assert {"schema_version", "events", "sessions", "jobs", "artifacts", "verdicts", "job_analyses", "sources"} <= names
    assert {"event_uuid", "eventid", "timestamp", "ts", "sensor", "session", "protocol", "src_ip", "src_port",
            "dst_ip", "dst_port", "message", "data"} == event_cols
    assert {("ts",), ("session",), ("src_ip",)} <= event_idx
    await db.close()

    again = Database(url)
    await again.open()
    assert again.applied == []
    assert await again.schema_version() == SCHEMA_VERSION
    async with again.engine.connect() as conn:
        rows = (await conn.execute(text("SELECT count(*) FROM schema_version"))).scalar()
    assert rows == SCHEMA_VERSION
    await again.close()


async def test_a_v2_database_upgrades_to_v3_keeping_its_rows(url, monkeypatch):
    monkeypatch.setattr(dbmod, "MIGRATIONS", dbmod.MIGRATIONS[:2])
    monkeypatch.setattr(dbmod, "SCHEMA_VERSION", 2)
    old = Database(url)
    await old.open()
    await old.write_events([{"eventid": "honeyjet.session.connect", "event_uuid": "f" * 32, "timestamp": "2026-11-27T10:00:00.000000Z",
                             "sensor": "v2", "session": "s-v2", "protocol": "pjl", "src_ip": "192.0.2.7", "src_port": 4000,
                             "dst_ip": "192.0.2.1", "dst_port": 9100, "message": "connect"}])
    await old.close()
    monkeypatch.undo()
    db = Database(url)
    await db.open()
    assert db.applied == [3]
    async with db.engine.connect() as conn:
        names = await conn.run_sync(lambda c: set(inspect(c).get_table_names()))
        session_idx = await conn.run_sync(lambda c: {tuple(i["column_names"]) for i in inspect(c).get_indexes("sessions")})
    assert {"sensor_tokens", "forward_state"} <= names
    assert ("sensor",) in session_idx
    assert (await db.session_row("s-v2"))["src_ip"] == "192.0.2.7"
    await db.close()


async def test_database_from_a_newer_version_is_refused(url):
    db = Database(url)
    await db.open()
    async with db.engine.begin() as conn:
        await conn.execute(
            dbmod.schema_version_table.insert().values(version=99, description="future", applied_at=datetime.now(UTC))
        )
    await db.close()
    newer = Database(url)
    with pytest.raises(SchemaError, match="99"):
        await newer.open()
    assert newer.engine is None


async def test_a_failing_migration_rolls_back_entirely(url, monkeypatch):
    db = Database(url)
    await db.open()
    await db.close()

    def step_next(conn):
        conn.execute(text("CREATE TABLE half_done (x INTEGER)"))
        raise RuntimeError("step broke")

    nxt = dbmod.SCHEMA_VERSION + 1
    monkeypatch.setattr(dbmod, "MIGRATIONS", dbmod.MIGRATIONS + [(nxt, "broken", step_next)])
    monkeypatch.setattr(dbmod, "SCHEMA_VERSION", nxt)
    broken = Database(url)
    with pytest.raises(RuntimeError, match="step broke"):
        await broken.open()
    monkeypatch.undo()
    check = Database(url)
    await check.open()
    assert await check.schema_version() == nxt - 1
    async with check.engine.connect() as conn:
        names = await conn.run_sync(lambda c: set(inspect(c).get_table_names()))
    assert "half_done" not in names  # DDL was inside the transaction
    await check.close()


async def test_sqlite_runs_in_wal_mode_with_pragmas(tmp_path):
    db = Database(sqlite_url(tmp_path), busy_timeout_ms=1234)
    await db.open()
    async with db.engine.connect() as conn:
        assert (await conn.exec_driver_sql("PRAGMA journal_mode")).scalar() == "wal"
        assert (await conn.exec_driver_sql("PRAGMA synchronous")).scalar() == 1  # NORMAL
        assert (await conn.exec_driver_sql("PRAGMA foreign_keys")).scalar() == 1
        assert (await conn.exec_driver_sql("PRAGMA busy_timeout")).scalar() == 1234
    await db.close()
    # WAL is a property of the file: another client sees it too
    raw = sqlite3.connect(tmp_path / "db" / "honeyjet.db")
    assert raw.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    raw.close()


# -- derived rows -------------------------------------------------------------------


async def test_sessions_jobs_and_artifacts_are_derived_from_events(db):
    sink = DatabaseSink(db, close_database=False)
    bus = EventBus("sensor-1", strict=True, clock=clock_from())
    bus.add_sink(sink)
    memory = MemorySink()
    bus.add_sink(memory)
    await bus.start()
    session_events(bus)
    bus.emit(
        "honeyjet.file.stored",
        "upload",
        ident(),
        {"operation": "FSDOWNLOAD", "path": "0:/webServer/x", "shasum": SHA_B, "size": 10, "stored_size": 10,
         "truncated": False, "duplicate": False},
    )
    await sink.flush()

    assert await db.count_events() == 5
    assert await db.count_events("honeyjet.job.captured") == 1
    assert await db.count_events("honeyjet.nothing") == 0
    connect, _, captured, closed, stored = memory.events

    row = await db.session_row("0123456789ab")
    assert row == {
        "session": "0123456789ab",
        "sensor": "sensor-1",
        "protocol": "pjl",
        "src_ip": "198.51.100.7",
        "src_port": 40000,
        "dst_ip": "192.0.2.1",
        "dst_port": 9100,
        "started": datetime.fromisoformat(connect["timestamp"]),
        "ended": datetime.fromisoformat(closed["timestamp"]),
        "duration_ms": 1500,
        "bytes_in": 5100,
        "bytes_out": 42,
        "reason": "eof",
        "transcript_shasum": SHA_T,
        "jobs": 1,
    }
    assert await db.session_row("nope") is None

    (job,) = await db.jobs()
    assert job["event_uuid"] == captured["event_uuid"]
    assert {k: job[k] for k in ("session", "sensor", "job", "language", "name", "user", "pages", "shasum", "size",
                                "stored_size", "truncated", "ended_by")} == {
        "session": "0123456789ab", "sensor": "sensor-1", "job": 7, "language": "postscript", "name": "Report.pdf",
        "user": "alice", "pages": 3, "shasum": SHA_A, "size": 5000, "stored_size": 4096, "truncated": True,
        "ended_by": "uel",
    }
    assert job["ts"] == datetime.fromisoformat(captured["timestamp"])

    assert await db.artifact_row(SHA_A) == {"shasum": SHA_A, "size": 4096, "first_seen": job["ts"]}
    assert await db.artifact_row(SHA_T) == {
        "shasum": SHA_T, "size": 5142, "first_seen": datetime.fromisoformat(closed["timestamp"])}
    assert (await db.artifact_row(SHA_B))["size"] == 10

    stored_event = await db.event(captured["event_uuid"])
    assert stored_event == captured  # the whole event, as JSON
    await bus.stop()


async def test_closed_before_connect_still_builds_one_session(db):
    memory = MemorySink()
    bus = EventBus("s", strict=True, clock=clock_from())
    bus.add_sink(memory)
    session_events(bus, "feedfacecafe")
    connect, command, captured, closed = memory.events
    await db.write_events([closed])
    partial = await db.session_row("feedfacecafe")
    assert partial["started"] is None and partial["reason"] == "eof"
    await db.write_events([captured, connect, command])
    row = await db.session_row("feedfacecafe")
    assert row["started"] == datetime.fromisoformat(connect["timestamp"])
    assert row["ended"] == datetime.fromisoformat(closed["timestamp"]) and row["bytes_in"] == 5100


async def test_duplicate_event_uuid_is_ignored(db):
    memory = MemorySink()
    bus = EventBus("s", strict=True, clock=clock_from())
    bus.add_sink(memory)
    session_events(bus, "aaaaaaaaaaaa", shasum=SHA_A)
    session_events(bus, "bbbbbbbbbbbb", shasum=SHA_A)  # same job content later
    first, second = memory.events[:4], memory.events[4:]
    assert await db.write_events(first + first) == 4  # duplicates inside one batch
    await db.write_events(first)  # and again later (a re-forwarded batch)
    await db.write_events(second + first)
    assert await db.count_events() == 8
    assert len(await db.jobs()) == 2
    assert [j["session"] for j in await db.jobs()] == ["aaaaaaaaaaaa", "bbbbbbbbbbbb"]
    # the artifact keeps the earliest sighting even when later events came first
    assert (await db.artifact_row(SHA_A))["first_seen"] == datetime.fromisoformat(first[2]["timestamp"])
    assert (await db.session_row("aaaaaaaaaaaa"))["bytes_out"] == 42


async def test_artifact_first_seen_moves_back_for_an_earlier_event(db):
    late = {"eventid": "honeyjet.file.stored", "event_uuid": "1" * 32, "timestamp": "2026-05-02T00:00:00.000000Z",
            "shasum": SHA_B, "stored_size": 9}
    early = dict(late, event_uuid="2" * 32, timestamp="2026-05-01T00:00:00.000000Z")
    await db.write_events([late])
    await db.write_events([early])
    await db.write_events([dict(late, event_uuid="3" * 32, timestamp="2026-06-01T00:00:00Z")])
    assert (await db.artifact_row(SHA_B))["first_seen"] == datetime(2026, 5, 1, tzinfo=UTC)


async def test_malformed_events_are_stored_without_breaking_the_batch(db):
    odd = [
        {"eventid": "honeyjet.pjl.command"},  # no uuid, no timestamp: a stable key is derived
        {"eventid": "x", "event_uuid": "u" * 200, "timestamp": "yesterday", "src_port": 10**30, "message": b"\x00raw"},
        {"eventid": "x", "event_uuid": "9" * 32, "message": "NUL \x00 and \udcff", "data": {"k": "\x00"}, "n": 2**80},
        {"eventid": "honeyjet.job.captured", "event_uuid": "8" * 32, "shasum": "../../etc/passwd", "job": "seven"},
        "not a dict",
    ]
    assert await db.write_events(odd) == 4
    await db.write_events(odd)  # the derived keys are stable: still 4
    assert await db.count_events() == 4
    (job,) = await db.jobs()
    assert job["shasum"] is None and job["job"] is None
    stored = await db.event("9" * 32)
    assert stored["data"] == {"k": "\\x00"} and stored["n"] == 2**80


async def test_sqlite_writer_stores_what_the_sqlalchemy_path_stores(tmp_path):
    """The embedded writer (JSON lines from the bus, one statement for a session whose connect
    and closed share a batch, artifacts it already stored not upserted again, times converted
    by slicing) leaves exactly the tables the generic SQLAlchemy path leaves."""
    memory = MemorySink()
    bus = EventBus("s", strict=True, clock=clock_from(step=0.4))  # crosses seconds
    bus.add_sink(memory)
    for n in range(6):
        session_events(bus, f"{n:012x}", shasum=SHA_A if n % 2 else SHA_B)
    events: list = list(memory.events)
    late = {"eventid": "honeyjet.file.stored", "event_uuid": "1" * 32, "timestamp": "2027-05-02T00:00:00.000000Z",
            "shasum": SHA_B, "stored_size": 9}
    early = dict(late, event_uuid="2" * 32, timestamp="2020-05-01T00:00:00.000000Z")
    odd = [
        {"eventid": "honeyjet.pjl.command"},
        {"eventid": "x", "event_uuid": "u" * 200, "timestamp": "2026-13-01T00:00:00.000000Z", "src_port": 10**30},
        {"eventid": "x", "event_uuid": "9" * 32, "timestamp": "2026-01-01T00:00:00Z", "message": "NUL \x00 \udcff",
         "data": {"k": "\x00"}, "n": 2**80},
        {"eventid": "honeyjet.session.closed", "event_uuid": "7" * 32, "session": "000000000000",
         "timestamp": "2026-01-01 00:00:01.5+01:00", "transcript_shasum": SHA_T, "transcript_size": 3},
        "not a dict",
    ]
    verdicts = analysis_events()
    # a session split over batches (closed first), both orders of an artifact's sightings, replays,
    # an older verdict after a newer one, analysis results in the same batch as their session
    batches = [events[3:5], events[0:3], events[5:14], [late], events[14:], odd, [early], events[6:10] + odd, [late],
               verdicts[1:], verdicts[:1] + events[:3], verdicts]
    from honeyjet.store.jsonlog import dumps_line

    fast, generic = Database(sqlite_url(tmp_path / "fast")), Database(sqlite_url(tmp_path / "generic"))
    await fast.open()
    await generic.open()
    await generic._sqlite.close()
    generic._sqlite = None  # every write through SQLAlchemy Core
    for batch in batches:
        lines = [dumps_line(e) if isinstance(e, dict) else None for e in batch]
        assert await fast.write_events(batch, lines) == await generic.write_events(batch)
    await fast.close()
    await generic.close()
    for table in ("events", "sessions", "jobs", "artifacts", "verdicts", "job_analyses", "sources"):
        rows = []
        for name in ("fast", "generic"):
            conn = sqlite3.connect(tmp_path / name / "db" / "honeyjet.db")
            rows.append(conn.execute(f"SELECT * FROM {table} ORDER BY 1").fetchall())
            conn.close()
        assert rows[0] == rows[1], table
        assert rows[0], table


def analysis_events() -> list[dict]:
    """An older and a newer verdict of one session, a job analysis, a source verdict."""
    base = {"sensor": "s", "session": "000000000001", "protocol": "pjl", "src_ip": "198.51.100.7", "src_port": 1,
            "dst_ip": "127.0.0.1", "dst_port": 9100, "message": "m"}
    return [
        dict(base, eventid="honeyjet.verdict.session", event_uuid="a" * 32, timestamp="2026-01-01T00:00:02.000000Z",
             classes=["pjl_display_defacement"], severity="medium", rules=["HJ-PJL-020"], rule_names=["x"],
             service="pjl", attribution=[]),
        dict(base, eventid="honeyjet.verdict.session", event_uuid="b" * 32, timestamp="2026-01-01T00:00:01.000000Z",
             classes=["scanner_banner_grab"], severity="low", rules=["HJ-PJL-001"], rule_names=["y"],
             service="pjl", attribution=[]),
        dict(base, eventid="honeyjet.job.analyzed", event_uuid="c" * 32, timestamp="2026-01-01T00:00:03.000000Z",
             job=1, shasum=SHA_A, language="text", text_source="plain", text_chars=12, text_shasum=SHA_B,
             simhash="0123456789abcdef", campaign="c-aaaaaaaaaaaa", previews=[SHA_T],
             indicators=[{"type": "url", "value": "www.x.example", "offset": 0}], errors=[]),
        dict(base, eventid="honeyjet.verdict.source", event_uuid="d" * 32, timestamp="2026-01-01T00:00:04.000000Z",
             classes=["pjl_info_enumeration"], severity="medium", rules=["HJ-SRC-001"], rule_names=["z"],
             new_rules=["HJ-SRC-001"], sessions=2, services=["http", "pjl"], session_classes=[], sequence=[],
             first_seen="2026-01-01T00:00:00.000000Z", jobs=0, campaigns=["c-aaaaaaaaaaaa"], attribution=["user:x"]),
    ]


async def test_analysis_results_are_kept_newest_first(db):
    ev = analysis_events()
    assert await db.write_events([ev[0], ev[2]]) == 2
    assert await db.write_events([ev[1], ev[3]]) == 2  # the older verdict arrives late
    v = await db.verdict_row("000000000001")
    assert v["primary_class"] == "pjl_display_defacement" and v["severity"] == "medium" and v["severity_rank"] == 2
    assert v["classes"] == ["pjl_display_defacement"] and v["rules"] == ["HJ-PJL-020"] and v["event_uuid"] == "a" * 32
    j = await db.job_analysis_row(SHA_A)
    assert j["campaign"] == "c-aaaaaaaaaaaa" and j["indicators"][0]["type"] == "url" and j["previews"] == [SHA_T]
    (src,) = await db.source_rows("198.51.100.7")
    assert src["sensor"] == "s" and src["rules"] == ["HJ-SRC-001"] and src["sessions"] == 2
    assert src["attribution"] == ["user:x"] and src["severity_rank"] == 2
    newer = dict(ev[1], event_uuid="e" * 32, timestamp="2026-01-02T00:00:00.000000Z")
    await db.write_events([newer])
    assert (await db.verdict_row("000000000001"))["primary_class"] == "scanner_banner_grab"


def test_build_rows_deduplicates_for_postgres_upserts():
    ev = {"eventid": "honeyjet.session.connect", "event_uuid": "c" * 32, "session": "s1",
          "timestamp": "2026-01-01T00:00:00Z"}
    rows = build_rows([ev, dict(ev), dict(ev, event_uuid="d" * 32)])
    assert len(rows.events) == 2 and len(rows.connects) == 1


# -- the sink -----------------------------------------------------------------------


async def test_batch_of_20000_events_flushes(url):
    sink = DatabaseSink(url)
    bus = EventBus("s", clock=clock_from(step=0.001))
    bus.add_sink(sink)
    await bus.start()
    for i in range(20_000):
        bus.emit("honeyjet.pjl.command", "cmd", ident(f"{i % 50:012x}"), {"command": "INFO", "argument": f"{i}"})
    await sink.flush()
    assert await sink.database.count_events() == 20_000
    assert sink.counters["written"] == 20_000 and sink.counters["dropped"] == 0
    assert sink.counters["batches"] >= 20_000 // sink.batch_size
    await bus.stop()


async def test_sink_drops_and_counts_when_the_buffer_is_full(url, caplog):
    sink = DatabaseSink(url, maxsize=10)
    await sink.start()
    for i in range(25):  # no await in between: the writer cannot take any
        sink.write({"eventid": "honeyjet.pjl.command", "event_uuid": uuid.uuid4().hex, "message": str(i)})
    assert sink.counters["dropped"] == 15 and sink.counters["accepted"] == 10
    assert len([r for r in caplog.records if "buffer full" in r.getMessage()]) == 1  # throttled
    await sink.flush()
    assert await sink.database.count_events() == 10
    sink.write({"eventid": "honeyjet.pjl.command", "event_uuid": uuid.uuid4().hex})  # room again
    await sink.flush()
    assert await sink.database.count_events() == 11
    await sink.stop()


async def test_stop_drains_everything(url):
    sink = DatabaseSink(url, batch_size=100, linger=5.0)
    await sink.start()
    for i in range(1234):
        sink.write({"eventid": "honeyjet.pjl.command", "event_uuid": f"{i:032x}"})
    await sink.stop()
    assert sink.counters["written"] == 1234
    assert sink.database.engine is None  # closed
    sink.write({"eventid": "late"})
    assert sink.counters["dropped"] == 1
    check = Database(url)
    await check.open()
    assert await check.count_events() == 1234
    await check.close()


async def test_flush_requires_a_running_sink(tmp_path):
    sink = DatabaseSink(sqlite_url(tmp_path))
    sink.write({"eventid": "x"})
    with pytest.raises(RuntimeError):
        await sink.flush()


async def test_a_locked_database_is_retried_without_losing_the_batch(tmp_path):
    db = Database(sqlite_url(tmp_path), busy_timeout_ms=20)
    sink = DatabaseSink(db, linger=0, retry_delay=0.01, max_retry_delay=0.05, max_retries=1000)
    await sink.start()
    blocker = sqlite3.connect(tmp_path / "db" / "honeyjet.db", isolation_level=None)
    blocker.execute("BEGIN IMMEDIATE")  # another writer holds the lock
    for i in range(50):
        sink.write({"eventid": "honeyjet.pjl.command", "event_uuid": f"{i:032x}"})
    while sink.counters["retries"] < 2:
        await asyncio.sleep(0.01)
    blocker.execute("COMMIT")
    blocker.close()
    await sink.flush()
    assert sink.counters["failed"] == 0 and sink.counters["written"] == 50
    assert await db.count_events() == 50
    await sink.stop()


async def test_gives_up_after_bounded_retries(tmp_path):
    db = Database(sqlite_url(tmp_path), busy_timeout_ms=1)
    sink = DatabaseSink(db, linger=0, retry_delay=0.001, max_retry_delay=0.001, max_retries=3)
    await sink.start()
    blocker = sqlite3.connect(tmp_path / "db" / "honeyjet.db", isolation_level=None)
    blocker.execute("BEGIN IMMEDIATE")
    sink.write({"eventid": "x", "event_uuid": "1" * 32})
    await sink.flush()
    assert sink.counters["retries"] == 3 and sink.counters["failed"] == 1
    blocker.execute("COMMIT")
    blocker.close()
    sink.write({"eventid": "x", "event_uuid": "2" * 32})
    await sink.flush()
    assert sink.counters["written"] == 1
    await sink.stop()


async def test_a_refused_event_costs_only_itself(db, monkeypatch):
    real = dbmod._text
    monkeypatch.setattr(dbmod, "_text", lambda v: object() if v == "POISON" else real(v))  # unbindable value
    sink = DatabaseSink(db, close_database=False, linger=0)
    await sink.start()
    events = [{"eventid": "x", "event_uuid": f"{i:032x}", "message": "POISON" if i == 3 else "ok"} for i in range(6)]
    for ev in events:
        sink.write(ev)
    await sink.flush()
    assert sink.counters["failed"] == 1 and sink.counters["written"] == 5
    assert await db.count_events() == 5
    await sink.stop()
