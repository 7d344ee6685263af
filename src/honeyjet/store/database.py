"""The event database: SQLite (WAL) by default, PostgreSQL for fleets, one code path.

Built on SQLAlchemy 2 Core (async): ``sqlite+aiosqlite:///…`` embedded,
``postgresql+asyncpg://…`` central. Only portable constructs are used; the two places
where dialects differ are picked by ``engine.dialect.name``: ``INSERT … ON CONFLICT``
(both dialects spell it the same, through their own ``insert``) and the
connection set-up (SQLite pragmas and explicit ``BEGIN``; a PostgreSQL advisory lock
around migrations).

Schema migrations are versioned: ``schema_version`` holds one row per applied step,
:data:`MIGRATIONS` is the ordered list of steps (version, description, function
issuing DDL through SQLAlchemy). :meth:`Database.open` applies the missing steps in
one transaction and refuses a database written by a newer honeyjet. A step is frozen
once released: it defines the tables as they were at that version (``_define_v1``),
later changes are new steps.

Tables derived from events (all writes idempotent on ``event_uuid`` or their own key,
so a replayed or re-forwarded event changes nothing):

* ``events``    every event; ``data`` holds the whole event as JSON.
* ``sessions``  upserted from ``honeyjet.session.connect`` (start) and
                ``honeyjet.session.closed`` (end); either may arrive first.
* ``jobs``      one row per ``honeyjet.job.captured``.
* ``artifacts`` one row per sha256 referenced by ``shasum`` (any event carrying it,
                e.g. ``job.captured``, ``file.stored``, ``pjl.fs``) or
                ``transcript_shasum`` (``session.closed``); ``first_seen`` is the
                earliest event time seen, ``size`` the stored size.

:class:`DatabaseSink` is the event sink: ``write()`` only appends to a bounded
buffer; one writer task stores batches, each in one transaction.
"""

from __future__ import annotations

import asyncio
import collections
import hashlib
import logging
import math
import re
import sqlite3
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable, Iterable, Sequence

import orjson
from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Column,
    DateTime,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    event,
    func,
    or_,
    select,
    text,
)
from sqlalchemy import exc as sa_exc
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.engine import Connection, make_url
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from honeyjet.store.artifacts import is_shasum
from honeyjet.store.jsonlog import dumps_line

log = logging.getLogger(__name__)

UTC = timezone.utc
_PG_MIGRATION_LOCK = 0x686F6E65796A6574  # "honeyjet", for pg_advisory_xact_lock
_INT32 = (-(2**31), 2**31 - 1)
_INT64 = (-(2**63), 2**63 - 1)

# portable column types
BigIntPK = BigInteger().with_variant(Integer(), "sqlite")  # INTEGER PRIMARY KEY = rowid on SQLite
JSONData = JSON().with_variant(JSONB(), "postgresql")


class SchemaError(RuntimeError):
    """The database schema cannot be used by this version of honeyjet."""


# -- schema -------------------------------------------------------------------------


def _define_schema_version(md: MetaData) -> Table:
    return Table(
        "schema_version",
        md,
        Column("version", Integer, primary_key=True, autoincrement=False),
        Column("description", Text, nullable=False),
        Column("applied_at", DateTime(timezone=True), nullable=False),
    )


def _define_v1(md: MetaData) -> dict[str, Table]:
    """The tables as of schema version 1 (frozen: later changes are new steps)."""
    events = Table(
        "events",
        md,
        Column("event_uuid", String(32), primary_key=True),
        Column("eventid", Text, nullable=False),
        Column("timestamp", Text),  # RFC 3339 as the sensor wrote it
        Column("ts", DateTime(timezone=True)),  # parsed from timestamp (UTC)
        Column("sensor", Text),
        Column("session", Text),
        Column("protocol", Text),
        Column("src_ip", Text),
        Column("src_port", Integer),
        Column("dst_ip", Text),
        Column("dst_port", Integer),
        Column("message", Text),
        Column("data", JSONData, nullable=False),
        Index("ix_events_ts", "ts"),
        Index("ix_events_session", "session"),
        Index("ix_events_src_ip", "src_ip"),
        Index("ix_events_eventid", "eventid"),
    )
    sessions = Table(
        "sessions",
        md,
        Column("session", Text, primary_key=True),
        Column("sensor", Text),
        Column("protocol", Text),
        Column("src_ip", Text),
        Column("src_port", Integer),
        Column("dst_ip", Text),
        Column("dst_port", Integer),
        Column("started", DateTime(timezone=True)),
        Column("ended", DateTime(timezone=True)),
        Column("duration_ms", BigInteger),
        Column("bytes_in", BigInteger),
        Column("bytes_out", BigInteger),
        Column("reason", Text),
        Column("transcript_shasum", String(64)),
        Column("jobs", Integer),
        Index("ix_sessions_started", "started"),
        Index("ix_sessions_src_ip", "src_ip"),
    )
    jobs = Table(
        "jobs",
        md,
        Column("id", BigIntPK, primary_key=True, autoincrement=True),
        Column("event_uuid", String(32), nullable=False, unique=True),
        Column("session", Text),
        Column("sensor", Text),
        Column("ts", DateTime(timezone=True)),
        Column("job", Integer),
        Column("language", Text),
        Column("name", Text),
        Column("user", Text),
        Column("pages", Integer),
        Column("shasum", String(64)),
        Column("size", BigInteger),
        Column("stored_size", BigInteger),
        Column("truncated", Boolean),
        Column("ended_by", Text),
        Index("ix_jobs_session", "session"),
        Index("ix_jobs_shasum", "shasum"),
        Index("ix_jobs_ts", "ts"),
    )
    artifacts = Table(
        "artifacts",
        md,
        Column("shasum", String(64), primary_key=True),
        Column("first_seen", DateTime(timezone=True)),
        Column("size", BigInteger),
    )
    return {"events": events, "sessions": sessions, "jobs": jobs, "artifacts": artifacts}


def _migrate_v1(conn: Connection) -> None:
    md = MetaData()
    for table in _define_v1(md).values():
        table.create(conn, checkfirst=False)


def _define_v2(md: MetaData) -> dict[str, Table]:
    """Analysis results (schema version 2): the newest verdict per session, forensics per job
    content, correlation verdicts per source. Each row is derived from an event, newest wins."""
    verdicts = Table(
        "verdicts",
        md,
        Column("session", Text, primary_key=True),
        Column("sensor", Text),
        Column("src_ip", Text),
        Column("service", Text),
        Column("ts", DateTime(timezone=True)),
        Column("primary_class", Text),
        Column("classes", JSONData),
        Column("severity", Text),
        Column("severity_rank", Integer),  # 0 info … 4 critical, for ordering and thresholds
        Column("rules", JSONData),
        Column("event_uuid", String(32)),
        Index("ix_verdicts_ts", "ts"),
        Index("ix_verdicts_class", "primary_class"),
        Index("ix_verdicts_rank", "severity_rank"),
        Index("ix_verdicts_src_ip", "src_ip"),
    )
    job_analyses = Table(
        "job_analyses",
        md,
        Column("shasum", String(64), primary_key=True),
        Column("ts", DateTime(timezone=True)),
        Column("language", Text),
        Column("text_source", Text),
        Column("text_chars", BigInteger),
        Column("text_shasum", String(64)),
        Column("simhash", String(16)),
        Column("campaign", Text),
        Column("indicators", JSONData),
        Column("previews", JSONData),
        Column("errors", JSONData),
        Column("event_uuid", String(32)),
        Index("ix_job_analyses_campaign", "campaign"),
    )
    sources = Table(
        "sources",
        md,
        Column("sensor", Text, primary_key=True),
        Column("src_ip", Text, primary_key=True),
        Column("first_seen", Text),
        Column("ts", DateTime(timezone=True)),
        Column("primary_class", Text),
        Column("classes", JSONData),
        Column("severity", Text),
        Column("severity_rank", Integer),
        Column("rules", JSONData),
        Column("sessions", Integer),
        Column("jobs", Integer),
        Column("campaigns", JSONData),
        Column("attribution", JSONData),
        Column("event_uuid", String(32)),
        Index("ix_sources_ts", "ts"),
        Index("ix_sources_rank", "severity_rank"),
    )
    return {"verdicts": verdicts, "job_analyses": job_analyses, "sources": sources}


def _migrate_v2(conn: Connection) -> None:
    md = MetaData()
    for table in _define_v2(md).values():
        table.create(conn, checkfirst=False)


def _define_v3(md: MetaData) -> dict[str, Table]:
    """Fleets (schema version 3): the collector's sensor tokens, a sensor's forwarding cursor."""
    sensor_tokens = Table(
        "sensor_tokens",
        md,
        Column("name", Text, primary_key=True),  # the sensor name its events carry
        Column("token_hash", String(64), nullable=False, unique=True),  # sha256 of the token (never the token)
        Column("created", DateTime(timezone=True), nullable=False),
        Column("revoked", DateTime(timezone=True)),
        Column("last_seen", DateTime(timezone=True)),
        Column("events", BigInteger, nullable=False, default=0),  # events received (duplicates included)
    )
    forward_state = Table(
        "forward_state",
        md,
        Column("target", Text, primary_key=True),  # the collector URL
        Column("last_rowid", BigInteger, nullable=False),  # events up to this rowid are acknowledged
        Column("updated", DateTime(timezone=True)),
    )
    return {"sensor_tokens": sensor_tokens, "forward_state": forward_state}


def _migrate_v3(conn: Connection) -> None:
    md = MetaData()
    old = _define_v1(md)
    old.update(_define_v2(md))
    Index("ix_sessions_sensor", old["sessions"].c.sensor).create(conn)
    Index("ix_verdicts_sensor", old["verdicts"].c.sensor).create(conn)
    Index("ix_jobs_sensor", old["jobs"].c.sensor).create(conn)
    for table in _define_v3(md).values():
        table.create(conn, checkfirst=False)


# (version, description, step); ordered, contiguous from 1
MIGRATIONS: list[tuple[int, str, Callable[[Connection], None]]] = [
    (1, "events, sessions, jobs, artifacts", _migrate_v1),
    (2, "verdicts, job_analyses, sources (analysis results)", _migrate_v2),
    (3, "sensor_tokens, forward_state (fleets); sessions, verdicts and jobs by sensor", _migrate_v3),
]
SCHEMA_VERSION = MIGRATIONS[-1][0]
assert [m[0] for m in MIGRATIONS] == list(range(1, SCHEMA_VERSION + 1))

# the current schema, used by queries
metadata = MetaData()
schema_version_table = _define_schema_version(metadata)
_tables = _define_v1(metadata)
events_table = _tables["events"]
sessions_table = _tables["sessions"]
jobs_table = _tables["jobs"]
artifacts_table = _tables["artifacts"]
_tables.update(_define_v2(metadata))
verdicts_table = _tables["verdicts"]
job_analyses_table = _tables["job_analyses"]
sources_table = _tables["sources"]
_tables.update(_define_v3(metadata))
sensor_tokens_table = _tables["sensor_tokens"]
forward_state_table = _tables["forward_state"]

_SEVERITY_RANK = {"info": 0, "low": 1, "medium": 2, "high": 3, "critical": 4}
# analysis event -> (table, primary key columns, columns), in the order the SQLite writer binds them
_ANALYSIS_TABLES: dict[str, tuple[str, tuple[str, ...], tuple[str, ...]]] = {
    "honeyjet.verdict.session": ("verdicts", ("session",), (
        "session", "sensor", "src_ip", "service", "ts", "primary_class", "classes", "severity", "severity_rank", "rules",
        "event_uuid")),
    "honeyjet.job.analyzed": ("job_analyses", ("shasum",), (
        "shasum", "ts", "language", "text_source", "text_chars", "text_shasum", "simhash", "campaign", "indicators",
        "previews", "errors", "event_uuid")),
    "honeyjet.verdict.source": ("sources", ("sensor", "src_ip"), (
        "sensor", "src_ip", "first_seen", "ts", "primary_class", "classes", "severity", "severity_rank", "rules",
        "sessions", "jobs", "campaigns", "attribution", "event_uuid")),
}
_JSON_COLUMNS = frozenset({"classes", "rules", "indicators", "previews", "errors", "campaigns", "attribution"})


def _strings(value: Any, limit: int = 256) -> list[Any]:
    return list(value)[:limit] if isinstance(value, list) else []


def analysis_row(eventid: str, ev: dict[str, Any], key: str, ts: Any) -> dict[str, Any] | None:
    """The row an analysis event keeps current (``ts`` in the caller's representation)."""
    get = ev.get
    if eventid == "honeyjet.verdict.session":
        session = _text(get("session"))
        if not session:
            return None
        classes = [c for c in _strings(get("classes")) if isinstance(c, str)]
        severity = _text(get("severity"))
        return {"session": session, "sensor": _text(get("sensor")), "src_ip": _text(get("src_ip")),
                "service": _text(get("service")) or _text(get("protocol")), "ts": ts,
                "primary_class": classes[0] if classes else "", "classes": classes, "severity": severity,
                "severity_rank": _SEVERITY_RANK.get(severity or "", 0), "rules": _strings(get("rules")), "event_uuid": key}
    if eventid == "honeyjet.job.analyzed":
        sha = _sha(get("shasum"))
        if sha is None:
            return None
        return {"shasum": sha, "ts": ts, "language": _text(get("language")), "text_source": _text(get("text_source")),
                "text_chars": _big(get("text_chars")), "text_shasum": _sha(get("text_shasum")),
                "simhash": (_text(get("simhash")) or "")[:16], "campaign": _text(get("campaign")),
                "indicators": _strings(get("indicators"), 200), "previews": _strings(get("previews"), 8),
                "errors": _strings(get("errors"), 16), "event_uuid": key}
    if eventid == "honeyjet.verdict.source":
        ip = _text(get("src_ip"))
        if not ip:
            return None
        classes = [c for c in _strings(get("classes")) if isinstance(c, str)]
        severity = _text(get("severity"))
        return {"sensor": _text(get("sensor")) or "", "src_ip": ip, "first_seen": _text(get("first_seen")), "ts": ts,
                "primary_class": classes[0] if classes else "", "classes": classes, "severity": severity,
                "severity_rank": _SEVERITY_RANK.get(severity or "", 0), "rules": _strings(get("rules")),
                "sessions": _int(get("sessions")), "jobs": _int(get("jobs")), "campaigns": _strings(get("campaigns")),
                "attribution": _strings(get("attribution")), "event_uuid": key}
    return None


def _newer(rows: dict[tuple[Any, ...], dict[str, Any]], pk: tuple[str, ...], row: dict[str, Any]) -> None:
    """Keep the newest row per primary key within a batch."""
    k = tuple(row[c] for c in pk)
    old = rows.get(k)
    if old is None or (row["ts"] is not None and (old["ts"] is None or row["ts"] >= old["ts"])):
        rows[k] = row


# -- row building -------------------------------------------------------------------


def parse_timestamp(value: Any) -> datetime | None:
    """RFC 3339 text → aware UTC datetime; None when absent or malformed."""
    if not isinstance(value, str) or not value:
        return None
    try:
        dt = datetime.fromisoformat(value)
    except ValueError:
        return None
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=UTC)
    return dt.astimezone(UTC)


def _int(value: Any, bounds: tuple[int, int] = _INT32) -> int | None:
    if isinstance(value, bool):
        return int(value)
    if isinstance(value, float):
        if not math.isfinite(value):
            return None
        value = int(value)
    if isinstance(value, int) and bounds[0] <= value <= bounds[1]:
        return value
    return None


def _big(value: Any) -> int | None:
    return _int(value, _INT64)


def _text(value: Any) -> str | None:
    """A text column value: lone surrogates and NUL (which PostgreSQL text refuses) escaped."""
    if value is None:
        return None
    if not isinstance(value, str):
        value = str(value)
    if not value.isascii():
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            value = value.encode("utf-8", "backslashreplace").decode("utf-8")
    if "\x00" in value:
        value = value.replace("\x00", "\\x00")
    return value


def _bool(value: Any) -> bool | None:
    return None if value is None else bool(value)


def _sha(value: Any) -> str | None:
    return value if is_shasum(value) else None


def event_key(event: dict[str, Any]) -> str:
    """The event's ``event_uuid`` when well formed, else a stable digest standing in for it."""
    value = event.get("event_uuid")
    if isinstance(value, str) and 0 < len(value) <= 32 and value.isascii():
        return value
    source = value.encode("utf-8", "backslashreplace") if isinstance(value, str) and value else dumps_line(event)
    return hashlib.sha256(source).hexdigest()[:32]


@dataclass(slots=True)
class _Rows:
    events: list[dict[str, Any]]
    connects: list[dict[str, Any]]
    closes: list[dict[str, Any]]
    jobs: list[dict[str, Any]]
    artifacts: list[dict[str, Any]]
    analysis: dict[str, list[dict[str, Any]]]  # table -> rows (newest per key)


def build_rows(batch: Iterable[dict[str, Any]]) -> _Rows:
    """Rows for every table from a batch of events, deduplicated by key within the batch.

    (PostgreSQL refuses an ``ON CONFLICT DO UPDATE`` statement touching one row twice.)
    """
    events: dict[str, dict[str, Any]] = {}
    connects: dict[str, dict[str, Any]] = {}
    closes: dict[str, dict[str, Any]] = {}
    jobs: list[dict[str, Any]] = []
    artifacts: dict[str, dict[str, Any]] = {}
    analysis: dict[str, dict[tuple[Any, ...], dict[str, Any]]] = {}

    def artifact(shasum: Any, ts: datetime | None, size: Any) -> None:
        sha = _sha(shasum)
        if sha is None:
            return
        old = artifacts.get(sha)
        if old is None:
            artifacts[sha] = {"shasum": sha, "first_seen": ts, "size": _big(size)}
        elif ts is not None and (old["first_seen"] is None or ts < old["first_seen"]):
            old["first_seen"] = ts

    for ev in batch:
        if not isinstance(ev, dict):
            continue
        key = event_key(ev)
        if key in events:
            continue
        eventid = _text(ev.get("eventid")) or ""
        ts = parse_timestamp(ev.get("timestamp"))
        session = _text(ev.get("session"))
        identity = {
            "sensor": _text(ev.get("sensor")),
            "protocol": _text(ev.get("protocol")),
            "src_ip": _text(ev.get("src_ip")),
            "src_port": _int(ev.get("src_port")),
            "dst_ip": _text(ev.get("dst_ip")),
            "dst_port": _int(ev.get("dst_port")),
        }
        events[key] = {
            "event_uuid": key,
            "eventid": eventid,
            "timestamp": _text(ev.get("timestamp")),
            "ts": ts,
            "session": session,
            **identity,
            "message": _text(ev.get("message")),
            "data": ev,
        }
        if eventid == "honeyjet.session.connect" and session:
            connects.setdefault(session, {"session": session, **identity, "started": ts})
        elif eventid == "honeyjet.session.closed" and session:
            closes[session] = {
                "session": session,
                **identity,
                "ended": ts,
                "duration_ms": _big(ev.get("duration_ms")),
                "bytes_in": _big(ev.get("bytes_in")),
                "bytes_out": _big(ev.get("bytes_out")),
                "reason": _text(ev.get("reason")),
                "transcript_shasum": _sha(ev.get("transcript_shasum")),
                "jobs": _int(ev.get("jobs")),
            }
            artifact(ev.get("transcript_shasum"), ts, ev.get("transcript_size"))
        elif eventid == "honeyjet.job.captured":
            jobs.append(
                {
                    "event_uuid": key,
                    "session": session,
                    "sensor": identity["sensor"],
                    "ts": ts,
                    "job": _int(ev.get("job")),
                    "language": _text(ev.get("language")),
                    "name": _text(ev.get("name")),
                    "user": _text(ev.get("user")),
                    "pages": _int(ev.get("pages")),
                    "shasum": _sha(ev.get("shasum")),
                    "size": _big(ev.get("size")),
                    "stored_size": _big(ev.get("stored_size")),
                    "truncated": _bool(ev.get("truncated")),
                    "ended_by": _text(ev.get("ended_by")),
                }
            )
        elif eventid in _ANALYSIS_TABLES:
            row = analysis_row(eventid, ev, key, ts)
            if row is not None:
                table, pk, _ = _ANALYSIS_TABLES[eventid]
                _newer(analysis.setdefault(table, {}), pk, row)
            continue  # their sha256 fields name artifacts recorded by other events
        if "shasum" in ev:
            artifact(ev.get("shasum"), ts, ev.get("stored_size", ev.get("size")))
    return _Rows(list(events.values()), list(connects.values()), list(closes.values()), jobs, list(artifacts.values()),
                 {t: list(rows.values()) for t, rows in analysis.items()})


# a JSON \u0000 escape (not an escaped backslash followed by "u0000")
_JSON_NUL = re.compile(rb"(?<!\\)((?:\\\\)*)\\u0000")


def _json_text(line: bytes) -> str:
    """A JSON line (:func:`dumps_line`) as column text; NUL becomes the text ``\\x00`` (jsonb refuses it)."""
    data = line[:-1] if line.endswith(b"\n") else line
    if b"\\u0000" in data:
        data = _JSON_NUL.sub(rb"\1\\\\x00", data)
    return data.decode("utf-8")


def _json_serializer(value: Any) -> str:
    """orjson with the JSON log's fallbacks, as column text (see :func:`_json_text`)."""
    return _json_text(dumps_line(value))


def _utc(value: Any) -> Any:
    """SQLite hands back naive datetimes (stored as UTC): make them aware."""
    if isinstance(value, datetime) and value.tzinfo is None:
        return value.replace(tzinfo=UTC)
    return value


def _row_dict(row: Any) -> dict[str, Any]:
    return {k: _utc(v) for k, v in row._mapping.items()}


def _is_transient(exc: BaseException) -> bool:
    """Errors worth retrying the same batch for (locks, lost connections, I/O)."""
    if isinstance(exc, sa_exc.DBAPIError) and getattr(exc, "connection_invalidated", False):
        return True
    return isinstance(
        exc,
        (
            sqlite3.OperationalError,  # locked / busy / disk I/O on the direct SQLite path
            sqlite3.InterfaceError,
            sa_exc.OperationalError,
            sa_exc.InterfaceError,
            sa_exc.DisconnectionError,
            sa_exc.TimeoutError,
            OSError,
            ConnectionError,
            asyncio.TimeoutError,
        ),
    )


# -- the SQLite write path ----------------------------------------------------------


def _sqlite_dt(value: datetime | None) -> str | None:
    """The text SQLAlchemy's SQLite DateTime stores (UTC, naive), so its reads agree."""
    if value is None:
        return None
    return value.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S.%f")


_SQLITE_EVENT_COLUMNS = (
    "event_uuid", "eventid", "timestamp", "ts", "session", "sensor", "protocol",
    "src_ip", "src_port", "dst_ip", "dst_port", "message", "data",
)
_SQLITE_CLOSE_COLUMNS = ("ended", "duration_ms", "bytes_in", "bytes_out", "reason", "transcript_shasum", "jobs")
_SQLITE_JOB_COLUMNS = (
    "event_uuid", "session", "sensor", "ts", "job", "language", "name", "user", "pages",
    "shasum", "size", "stored_size", "truncated", "ended_by",
)
_IDENTITY = ("session", "sensor", "protocol", "src_ip", "src_port", "dst_ip", "dst_port")


def _placeholders(n: int) -> str:
    return ", ".join("?" * n)


_SQL_EVENTS = (
    f"INSERT INTO events ({', '.join(_SQLITE_EVENT_COLUMNS)}) VALUES ({_placeholders(len(_SQLITE_EVENT_COLUMNS))}) "
    "ON CONFLICT (event_uuid) DO NOTHING"
)
_SQL_CONNECTS = (
    f"INSERT INTO sessions ({', '.join(_IDENTITY)}, started) VALUES ({_placeholders(len(_IDENTITY) + 1)}) "
    "ON CONFLICT (session) DO UPDATE SET started = coalesce(sessions.started, excluded.started)"
)
_SQL_CLOSES = (
    f"INSERT INTO sessions ({', '.join(_IDENTITY + _SQLITE_CLOSE_COLUMNS)}) "
    f"VALUES ({_placeholders(len(_IDENTITY) + len(_SQLITE_CLOSE_COLUMNS))}) "
    "ON CONFLICT (session) DO UPDATE SET " + ", ".join(f"{c} = excluded.{c}" for c in _SQLITE_CLOSE_COLUMNS)
)
_SQL_JOBS = (
    f'INSERT INTO jobs ({", ".join(c if c != "user" else chr(34) + "user" + chr(34) for c in _SQLITE_JOB_COLUMNS)}) '
    f"VALUES ({_placeholders(len(_SQLITE_JOB_COLUMNS))}) ON CONFLICT (event_uuid) DO NOTHING"
)
_SQL_ARTIFACTS = (
    "INSERT INTO artifacts (shasum, first_seen, size) VALUES (?, ?, ?) "
    "ON CONFLICT (shasum) DO UPDATE SET first_seen = excluded.first_seen "
    "WHERE artifacts.first_seen IS NULL OR excluded.first_seen < artifacts.first_seen"
)


# a session whose connect and closed events are in the same batch: one row, one statement
# (the same result as the connect upsert followed by the closed upsert)
_SQL_SESSIONS = (
    f"INSERT INTO sessions ({', '.join(_IDENTITY)}, started, {', '.join(_SQLITE_CLOSE_COLUMNS)}) "
    f"VALUES ({_placeholders(len(_IDENTITY) + 1 + len(_SQLITE_CLOSE_COLUMNS))}) "
    "ON CONFLICT (session) DO UPDATE SET started = coalesce(sessions.started, excluded.started), "
    + ", ".join(f"{c} = excluded.{c}" for c in _SQLITE_CLOSE_COLUMNS)
)


def _upsert_newest_sql(table: str, pk: tuple[str, ...], columns: tuple[str, ...]) -> str:
    rest = [c for c in columns if c not in pk]
    return (f"INSERT INTO {table} ({', '.join(columns)}) VALUES ({_placeholders(len(columns))}) "
            f"ON CONFLICT ({', '.join(pk)}) DO UPDATE SET " + ", ".join(f"{c} = excluded.{c}" for c in rest) +
            f" WHERE {table}.ts IS NULL OR excluded.ts >= {table}.ts")


_SQL_ANALYSIS = {table: _upsert_newest_sql(table, pk, cols) for table, pk, cols in _ANALYSIS_TABLES.values()}


class _SQLiteTimes:
    """RFC 3339 event time -> the text SQLAlchemy's SQLite DateTime stores.

    The bus writes ``YYYY-MM-DDTHH:MM:SS.ffffffZ``; once the part up to the second has
    been parsed, later times within that second are converted by slicing. Anything
    else goes through :func:`parse_timestamp` and :func:`_sqlite_dt`, as before.
    """

    __slots__ = ("second", "text")

    def __init__(self) -> None:
        self.second = ""  # "YYYY-MM-DDTHH:MM:SS" known to parse
        self.text = ""  # its SQLite form, "YYYY-MM-DD HH:MM:SS"

    def convert(self, value: Any) -> str | None:
        if type(value) is str and len(value) == 27 and value[19] == "." and value[26] == "Z":
            head = value[:19]
            frac = value[20:26]
            if frac.isdigit() and frac.isascii():
                if head == self.second:
                    return f"{self.text}.{frac}"
                dt = parse_timestamp(value)
                if dt is not None:
                    text = _sqlite_dt(dt)
                    if text is not None and text.endswith(frac):
                        self.second, self.text = head, text[:-7]
                    return text
                return None
        return _sqlite_dt(parse_timestamp(value))


@dataclass(slots=True)
class _SQLiteParams:
    events: list[tuple[Any, ...]]
    connects: list[tuple[Any, ...]]
    closes: list[tuple[Any, ...]]
    sessions: list[tuple[Any, ...]]  # connect and closed of one session in this batch
    jobs: list[tuple[Any, ...]]
    artifacts: dict[str, list[Any]]  # shasum -> [shasum, first_seen, size]
    analysis: dict[str, list[tuple[Any, ...]]]  # table -> rows (newest per key), in _ANALYSIS_TABLES order


class _SQLiteWriter:
    """Writes batches with the standard library's sqlite3 on one dedicated thread.

    The same rows and the same idempotent upserts as the SQLAlchemy path (see
    :func:`build_rows`), at a fraction of its cost per event: parameters are built
    directly as tuples, the ``data`` column comes from the JSON line the event bus
    already made (one serialisation per event for the log and the database), event
    times within one second are converted by slicing, a session whose connect and
    closed events share a batch is one statement, and artifacts this writer has
    already stored with an earlier or equal ``first_seen`` are not upserted again
    (the upsert would change nothing). Row building, JSON decoding and SQLite run off
    the event loop's thread, which only hands over a list. Reads and migrations stay
    on SQLAlchemy.
    """

    ARTIFACT_CACHE = 65536  # shasums whose stored first_seen is known (cleared when full)

    def __init__(self, path: str, busy_timeout_ms: int):
        import concurrent.futures

        self.path = path
        self.busy_timeout_ms = busy_timeout_ms
        self._pool = concurrent.futures.ThreadPoolExecutor(max_workers=1, thread_name_prefix="honeyjet-sqlite")
        self._conn: Any = None
        self._times = _SQLiteTimes()
        # shasum -> a first_seen the row is known to be at or before (None: may be NULL)
        self._artifacts: dict[str, str | None] = {}

    def _connect(self) -> Any:
        import sqlite3

        conn = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False, cached_statements=16)
        conn.execute(f"PRAGMA busy_timeout={self.busy_timeout_ms:d}")
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=NORMAL")
        # checkpoint every 10,000 pages (40 MiB of WAL) rather than 1,000: pages written again
        # and again (the ends of the indexes) reach the database file once per checkpoint
        conn.execute("PRAGMA wal_autocheckpoint=10000")
        return conn

    def _params(self, batch: Sequence[Any], lines: Sequence[bytes | None] | None) -> _SQLiteParams:
        """The parameters of every statement for a batch (what :func:`build_rows` gives, as tuples)."""
        events: list[tuple[Any, ...]] = []
        seen: set[str] = set()
        connects: dict[str, tuple[Any, ...]] = {}
        closes: dict[str, tuple[Any, ...]] = {}
        jobs: list[tuple[Any, ...]] = []
        artifacts: dict[str, list[Any]] = {}
        analysis: dict[str, dict[tuple[Any, ...], dict[str, Any]]] = {}
        convert = self._times.convert
        text = _text
        integer = _int

        def artifact(shasum: Any, ts: str | None, size: Any) -> None:
            if not is_shasum(shasum):
                return
            old = artifacts.get(shasum)
            if old is None:
                artifacts[shasum] = [shasum, ts, _big(size)]
            elif ts is not None and (old[1] is None or ts < old[1]):
                old[1] = ts

        for i, ev in enumerate(batch):
            if not isinstance(ev, dict):
                continue
            key = event_key(ev)
            if key in seen:
                continue
            seen.add(key)
            get = ev.get
            eventid = text(get("eventid")) or ""
            timestamp = get("timestamp")
            ts = convert(timestamp)
            session = text(get("session"))
            identity = (
                session,
                text(get("sensor")),
                text(get("protocol")),
                text(get("src_ip")),
                integer(get("src_port")),
                text(get("dst_ip")),
                integer(get("dst_port")),
            )
            events.append(
                (key, eventid, text(timestamp), ts, *identity, text(get("message")),
                 _json_text(line) if lines is not None and (line := lines[i]) is not None else _json_serializer(ev))
            )
            if eventid == "honeyjet.session.connect":
                if session and session not in connects:
                    connects[session] = (*identity, ts)
            elif eventid == "honeyjet.session.closed":
                if session:
                    closes[session] = (
                        *identity, ts, _big(get("duration_ms")), _big(get("bytes_in")), _big(get("bytes_out")),
                        text(get("reason")), _sha(get("transcript_shasum")), integer(get("jobs")),
                    )
                    artifact(get("transcript_shasum"), ts, get("transcript_size"))
            elif eventid == "honeyjet.job.captured":
                jobs.append(
                    (key, session, identity[1], ts, integer(get("job")), text(get("language")), text(get("name")),
                     text(get("user")), integer(get("pages")), _sha(get("shasum")), _big(get("size")),
                     _big(get("stored_size")), _bool(get("truncated")), text(get("ended_by")))
                )
            elif eventid in _ANALYSIS_TABLES:
                row = analysis_row(eventid, ev, key, ts)
                if row is not None:
                    table, pk, _ = _ANALYSIS_TABLES[eventid]
                    _newer(analysis.setdefault(table, {}), pk, row)
                continue
            if "shasum" in ev:
                artifact(get("shasum"), ts, get("stored_size", get("size")))
        both = []
        for session in [s for s in connects if s in closes]:
            connect = connects.pop(session)
            both.append(connect + closes.pop(session)[7:])
        rows: dict[str, list[tuple[Any, ...]]] = {}
        for eventid, (table, _, columns) in _ANALYSIS_TABLES.items():
            found = analysis.get(table)
            if found:
                rows[table] = [tuple(_json_serializer(r[c]) if c in _JSON_COLUMNS else r[c] for c in columns)
                               for r in found.values()]
        return _SQLiteParams(events, list(connects.values()), list(closes.values()), both, jobs, artifacts, rows)

    def _write(self, batch: Sequence[Any], lines: Sequence[bytes | None] | None = None) -> int:
        p = self._params(batch, lines)
        if not p.events:
            return 0
        known = self._artifacts
        artifacts = [
            a for sha, a in p.artifacts.items()
            if sha not in known or not (a[1] is None or (known[sha] is not None and known[sha] <= a[1]))
        ]
        if self._conn is None:
            self._conn = self._connect()
        conn = self._conn
        conn.execute("BEGIN IMMEDIATE")
        try:
            conn.executemany(_SQL_EVENTS, p.events)
            if p.connects:
                conn.executemany(_SQL_CONNECTS, p.connects)
            if p.closes:
                conn.executemany(_SQL_CLOSES, p.closes)
            if p.sessions:
                conn.executemany(_SQL_SESSIONS, p.sessions)
            if p.jobs:
                conn.executemany(_SQL_JOBS, p.jobs)
            if artifacts:
                conn.executemany(_SQL_ARTIFACTS, artifacts)
            for table, params in p.analysis.items():
                conn.executemany(_SQL_ANALYSIS[table], params)
            conn.execute("COMMIT")
        except BaseException:
            try:
                conn.execute("ROLLBACK")
            except Exception:  # the connection itself failed: reconnect next time
                self._conn = None
            raise
        if len(known) + len(artifacts) > self.ARTIFACT_CACHE:
            known.clear()
        for sha, first_seen, _size in artifacts:
            old = known.get(sha, first_seen)
            known[sha] = first_seen if old is None or first_seen is None or first_seen < old else old
        return len(p.events)

    async def write(self, batch: Sequence[Any], lines: Sequence[bytes | None] | None = None) -> int:
        return await asyncio.get_running_loop().run_in_executor(self._pool, self._write, list(batch), lines)

    def _close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    async def close(self) -> None:
        await asyncio.get_running_loop().run_in_executor(self._pool, self._close)
        self._pool.shutdown(wait=True)


# -- database -----------------------------------------------------------------------


class Database:
    """One database (URL), its engine, its migrations and its queries."""

    def __init__(self, url: str, *, busy_timeout_ms: int = 5000, echo: bool = False) -> None:
        self.url = url
        self.busy_timeout_ms = int(busy_timeout_ms)
        self.echo = echo
        self.engine: AsyncEngine | None = None
        self.applied: list[int] = []  # migration steps the last open() applied
        self._sqlite: _SQLiteWriter | None = None  # the fast write path for a file database

    @property
    def dialect(self) -> str:
        return self._engine.dialect.name

    @property
    def _engine(self) -> AsyncEngine:
        if self.engine is None:
            raise RuntimeError("database is not open")
        return self.engine

    async def open(self) -> None:
        """Create the engine and bring the schema up to :data:`SCHEMA_VERSION`."""
        if self.engine is not None:
            return
        url = make_url(self.url)
        backend = url.get_backend_name()
        if backend == "sqlite" and url.database and url.database != ":memory:" and not url.database.startswith("file:"):
            Path(url.database).parent.mkdir(parents=True, exist_ok=True)
        engine = create_async_engine(
            url,
            echo=self.echo,
            json_serializer=_json_serializer,
            json_deserializer=orjson.loads,
        )
        if engine.dialect.name == "sqlite":
            self._sqlite_setup(engine)
        elif engine.dialect.name != "postgresql":
            await engine.dispose()
            raise SchemaError(f"unsupported database dialect {engine.dialect.name!r} (use sqlite or postgresql)")
        self.engine = engine
        try:
            await self._migrate()
        except BaseException:
            self.engine = None
            await engine.dispose()
            raise
        if backend == "sqlite" and url.database and url.database != ":memory:" and not url.database.startswith("file:"):
            self._sqlite = _SQLiteWriter(url.database, self.busy_timeout_ms)

    def _sqlite_setup(self, engine: AsyncEngine) -> None:
        busy = self.busy_timeout_ms

        @event.listens_for(engine.sync_engine, "connect")
        def _on_connect(dbapi_conn: Any, record: Any) -> None:
            # SQLAlchemy, not sqlite3, emits BEGIN (see _on_begin): real transactional DDL
            dbapi_conn.isolation_level = None
            cur = dbapi_conn.cursor()
            try:
                cur.execute(f"PRAGMA busy_timeout={busy:d}")
                cur.execute("PRAGMA journal_mode=WAL")
                cur.execute("PRAGMA synchronous=NORMAL")
                cur.execute("PRAGMA foreign_keys=ON")
            finally:
                cur.close()

        @event.listens_for(engine.sync_engine, "begin")
        def _on_begin(conn: Connection) -> None:
            conn.exec_driver_sql(conn.get_execution_options().get("sqlite_begin", "BEGIN"))

    def _insert(self, table: Table) -> Any:
        return (pg_insert if self.dialect == "postgresql" else sqlite_insert)(table)

    async def close(self) -> None:
        writer, self._sqlite = self._sqlite, None
        if writer is not None:
            await writer.close()
        engine, self.engine = self.engine, None
        if engine is not None:
            await engine.dispose()

    async def _migrate(self) -> None:
        self.applied = []
        async with self._engine.connect() as conn:
            if self.dialect == "sqlite":
                await conn.execution_options(sqlite_begin="BEGIN IMMEDIATE")
            async with conn.begin():
                if self.dialect == "postgresql":
                    await conn.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": _PG_MIGRATION_LOCK})
                await conn.run_sync(lambda c: schema_version_table.create(c, checkfirst=True))
                current = await conn.scalar(select(func.max(schema_version_table.c.version))) or 0
                if current > SCHEMA_VERSION:
                    raise SchemaError(
                        f"database schema version {current} is newer than this honeyjet supports "
                        f"({SCHEMA_VERSION}); upgrade honeyjet or use another database"
                    )
                for version, description, step in MIGRATIONS:
                    if version <= current:
                        continue
                    log.info("database: applying schema migration %d (%s)", version, description)
                    await conn.run_sync(step)
                    await conn.execute(
                        schema_version_table.insert().values(
                            version=version, description=description, applied_at=datetime.now(UTC)
                        )
                    )
                    self.applied.append(version)

    # -- writing ---------------------------------------------------------------------

    async def write_events(self, batch: Sequence[dict[str, Any]], lines: Sequence[bytes | None] | None = None) -> int:
        """Store a batch of events and their derived rows in one transaction.

        Idempotent: events already stored (same ``event_uuid``) change nothing.
        ``lines``, when given, holds each event's JSON line (:func:`dumps_line`) or None;
        the embedded SQLite writer stores it as the ``data`` column instead of
        serialising the event again. Returns the number of distinct events in the batch.
        """
        if self._sqlite is not None:
            return await self._sqlite.write(batch, lines)
        rows = build_rows(batch)
        if not rows.events:
            return 0
        async with self._engine.connect() as conn:
            if self.dialect == "sqlite":
                await conn.execution_options(sqlite_begin="BEGIN IMMEDIATE")
            async with conn.begin():
                await conn.execute(
                    self._insert(events_table).on_conflict_do_nothing(index_elements=["event_uuid"]), rows.events
                )
                if rows.connects:
                    stmt = self._insert(sessions_table)
                    s = sessions_table.c
                    stmt = stmt.on_conflict_do_update(
                        index_elements=["session"],
                        set_={"started": func.coalesce(s.started, stmt.excluded.started)},
                    )
                    await conn.execute(stmt, rows.connects)
                if rows.closes:
                    stmt = self._insert(sessions_table)
                    ex = stmt.excluded
                    stmt = stmt.on_conflict_do_update(
                        index_elements=["session"],
                        set_={
                            name: getattr(ex, name)
                            for name in (
                                "ended",
                                "duration_ms",
                                "bytes_in",
                                "bytes_out",
                                "reason",
                                "transcript_shasum",
                                "jobs",
                            )
                        },
                    )
                    await conn.execute(stmt, rows.closes)
                if rows.jobs:
                    await conn.execute(
                        self._insert(jobs_table).on_conflict_do_nothing(index_elements=["event_uuid"]), rows.jobs
                    )
                if rows.artifacts:
                    stmt = self._insert(artifacts_table)
                    a = artifacts_table.c
                    stmt = stmt.on_conflict_do_update(
                        index_elements=["shasum"],
                        set_={"first_seen": stmt.excluded.first_seen},
                        where=or_(a.first_seen.is_(None), stmt.excluded.first_seen < a.first_seen),
                    )
                    await conn.execute(stmt, rows.artifacts)
                for table_name, analysis_rows in rows.analysis.items():
                    table = _tables[table_name]
                    pk = [c.name for c in table.primary_key.columns]
                    stmt = self._insert(table)
                    stmt = stmt.on_conflict_do_update(
                        index_elements=pk,
                        set_={c.name: getattr(stmt.excluded, c.name) for c in table.columns if c.name not in pk},
                        where=or_(table.c.ts.is_(None), stmt.excluded.ts >= table.c.ts),
                    )
                    await conn.execute(stmt, analysis_rows)
        return len(rows.events)

    # -- reading ---------------------------------------------------------------------

    async def schema_version(self) -> int:
        async with self._engine.connect() as conn:
            return await conn.scalar(select(func.max(schema_version_table.c.version))) or 0

    async def count_events(self, eventid: str | None = None) -> int:
        query = select(func.count()).select_from(events_table)
        if eventid is not None:
            query = query.where(events_table.c.eventid == eventid)
        async with self._engine.connect() as conn:
            return int(await conn.scalar(query) or 0)

    async def session_row(self, session_id: str) -> dict[str, Any] | None:
        async with self._engine.connect() as conn:
            row = (await conn.execute(select(sessions_table).where(sessions_table.c.session == session_id))).first()
        return None if row is None else _row_dict(row)

    async def jobs(self, session: str | None = None) -> list[dict[str, Any]]:
        query = select(jobs_table).order_by(jobs_table.c.id)
        if session is not None:
            query = query.where(jobs_table.c.session == session)
        async with self._engine.connect() as conn:
            return [_row_dict(r) for r in await conn.execute(query)]

    async def artifact_row(self, shasum: str) -> dict[str, Any] | None:
        async with self._engine.connect() as conn:
            row = (await conn.execute(select(artifacts_table).where(artifacts_table.c.shasum == shasum))).first()
        return None if row is None else _row_dict(row)

    async def verdict_row(self, session_id: str) -> dict[str, Any] | None:
        """The newest verdict of a session (table ``verdicts``) or None."""
        async with self._engine.connect() as conn:
            row = (await conn.execute(select(verdicts_table).where(verdicts_table.c.session == session_id))).first()
        return None if row is None else _row_dict(row)

    async def job_analysis_row(self, shasum: str) -> dict[str, Any] | None:
        async with self._engine.connect() as conn:
            row = (await conn.execute(select(job_analyses_table).where(job_analyses_table.c.shasum == shasum))).first()
        return None if row is None else _row_dict(row)

    async def source_rows(self, src_ip: str | None = None) -> list[dict[str, Any]]:
        query = select(sources_table).order_by(sources_table.c.severity_rank.desc(), sources_table.c.ts.desc())
        if src_ip is not None:
            query = query.where(sources_table.c.src_ip == src_ip)
        async with self._engine.connect() as conn:
            return [_row_dict(r) for r in await conn.execute(query)]

    async def event(self, event_uuid: str) -> dict[str, Any] | None:
        """The stored event dict (the ``data`` column) or None."""
        async with self._engine.connect() as conn:
            return await conn.scalar(select(events_table.c.data).where(events_table.c.event_uuid == event_uuid))


# -- sink ---------------------------------------------------------------------------


class DatabaseSink:
    """Event sink writing to a :class:`Database` through one writer task.

    ``write()`` appends to a bounded buffer (``maxsize``); when it is full the event is
    dropped and counted (the JSON log is the primary record). The writer takes up to
    ``batch_size`` events, lingering up to ``linger`` seconds for a batch to fill, and
    stores each batch in one transaction. Transient errors (locks, lost connections)
    are retried with exponential backoff, at most ``max_retries`` times, then the batch
    is counted as ``failed``; other errors (a malformed row) make it retry the batch one
    event at a time so that only the bad events are lost. ``stop()`` drains the buffer.
    """

    name = "database"

    def __init__(
        self,
        database: Database | str,
        *,
        maxsize: int = 100_000,
        batch_size: int = 500,
        linger: float = 0.2,
        max_retries: int = 5,
        retry_delay: float = 0.1,
        max_retry_delay: float = 5.0,
        close_database: bool = True,
        drop_log_interval: float = 60.0,
    ) -> None:
        self.database = Database(database) if isinstance(database, str) else database
        self.maxsize = max(1, int(maxsize))
        self.batch_size = max(1, int(batch_size))
        self.linger = linger
        self.max_retries = max_retries
        self.retry_delay = retry_delay
        self.max_retry_delay = max_retry_delay
        self.close_database = close_database
        self.drop_log_interval = drop_log_interval
        self.counters: dict[str, int] = {
            "accepted": 0,  # events taken into the buffer
            "written": 0,  # events in committed batches (duplicates included)
            "batches": 0,
            "dropped": 0,  # buffer full (or sink stopped)
            "failed": 0,  # gave up on these after retries
            "retries": 0,
        }
        # (event, its JSON line or None): the line, when the bus made one, becomes the data column
        self._buf: collections.deque[tuple[dict[str, Any], bytes | None]] = collections.deque()
        self._processed = 0  # accepted events written or failed
        self._wake = asyncio.Event()  # something to do
        self._kick = asyncio.Event()  # stop lingering: batch full, flush or stop
        self._waiters: list[asyncio.Future[None]] = []
        self._task: asyncio.Task[None] | None = None
        self._stopping = False
        self._stopped = False
        self._failing_run = 0  # consecutive batches given up on
        self._last_drop_log = -math.inf
        self._drops_unlogged = 0

    @property
    def queued(self) -> int:
        return len(self._buf)

    # -- Sink protocol ---------------------------------------------------------------

    def write(self, event: dict[str, Any]) -> None:
        self.write_line(event, None)

    def write_line(self, event: dict[str, Any], line: bytes | None) -> None:
        """Take an event with its JSON line (the bus serialised it once for every sink)."""
        if self._stopped or len(self._buf) >= self.maxsize:
            self._drop()
            return
        self._buf.append((event, line))
        self.counters["accepted"] += 1
        if not self._wake.is_set():
            self._wake.set()
        if len(self._buf) >= self.batch_size and not self._kick.is_set():
            self._kick.set()

    def _drop(self) -> None:
        self.counters["dropped"] += 1
        self._drops_unlogged += 1
        now = time.monotonic()
        if now - self._last_drop_log >= self.drop_log_interval:
            self._last_drop_log = now
            log.warning(
                "database sink: buffer full (%d events), dropped %d event(s) (%d in total); "
                "the JSON log still has them",
                self.maxsize,
                self._drops_unlogged,
                self.counters["dropped"],
            )
            self._drops_unlogged = 0

    async def start(self) -> None:
        if self._task is not None:
            return
        await self.database.open()
        self._stopping = self._stopped = False
        self._task = asyncio.get_running_loop().create_task(self._run(), name="honeyjet-database-writer")

    async def stop(self) -> None:
        """Write everything buffered, end the writer task, close the database."""
        self._stopping = True
        self._kick.set()
        self._wake.set()
        task, self._task = self._task, None
        if task is not None:
            await task
        self._stopped = True
        self._notify()
        if self.close_database:
            await self.database.close()

    async def flush(self) -> None:
        """Wait until every event accepted so far is written (or given up on)."""
        target = self.counters["accepted"]
        loop = asyncio.get_running_loop()
        while self._processed < target:
            if self._task is None or self._task.done():
                raise RuntimeError("database sink is not running")
            fut: asyncio.Future[None] = loop.create_future()
            self._waiters.append(fut)
            self._kick.set()
            self._wake.set()
            await fut

    # -- writer ----------------------------------------------------------------------

    def _notify(self) -> None:
        waiters, self._waiters = self._waiters, []
        for fut in waiters:
            if not fut.done():
                fut.set_result(None)

    async def _run(self) -> None:
        buf = self._buf
        while True:
            if not buf:
                if self._stopping:
                    return
                self._wake.clear()
                await self._wake.wait()
                continue
            if len(buf) < self.batch_size and self.linger > 0 and not (self._stopping or self._waiters):
                self._kick.clear()
                try:
                    await asyncio.wait_for(self._kick.wait(), self.linger)
                except asyncio.TimeoutError:
                    pass
            n = min(len(buf), self.batch_size)
            batch = [buf.popleft() for _ in range(n)]
            try:
                await self._write_batch(batch)
            except asyncio.CancelledError:
                raise
            except Exception:  # never let the writer die
                log.exception("database sink: unexpected error, %d event(s) lost", n)
                self.counters["failed"] += n
            self._processed += n
            self._notify()

    async def _write_batch(self, batch: list[tuple[dict[str, Any], bytes | None]]) -> None:
        delay = self.retry_delay
        attempt = 0
        while True:
            try:
                await self.database.write_events([ev for ev, _ in batch], [line for _, line in batch])
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                if not _is_transient(exc):
                    if len(batch) > 1:
                        log.warning("database sink: batch refused (%s); writing its events one by one", exc)
                        for item in batch:
                            await self._write_batch([item])
                        return
                    self._give_up(batch, exc)
                    return
                # while stopping with the database already failing, do not wait on it
                if attempt >= self.max_retries or (self._stopping and self._failing_run):
                    self._give_up(batch, exc)
                    return
                attempt += 1
                self.counters["retries"] += 1
                if attempt == 1:
                    log.warning("database sink: write failed (%s); retrying", exc)
                await asyncio.sleep(delay)
                delay = min(delay * 2, self.max_retry_delay)
                continue
            self.counters["written"] += len(batch)
            self.counters["batches"] += 1
            if self._failing_run:
                log.warning("database sink: writing again after %d failed batch(es)", self._failing_run)
                self._failing_run = 0
            return

    def _give_up(self, batch: list[Any], exc: BaseException) -> None:
        self.counters["failed"] += len(batch)
        self._failing_run += 1
        if self._failing_run & (self._failing_run - 1) == 0:
            log.error("database sink: gave up on %d event(s) (%d failed in total): %s", len(batch), self.counters["failed"], exc)


__all__ = [
    "MIGRATIONS",
    "SCHEMA_VERSION",
    "Database",
    "DatabaseSink",
    "SchemaError",
    "build_rows",
    "parse_timestamp",
]
