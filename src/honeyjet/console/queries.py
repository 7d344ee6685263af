"""What the console reads from the event database, and the one table it owns (``triage``).

Only the sensor's tables and columns are used (``events``, ``sessions``, ``jobs``);
verdicts are read from the ``events`` table, the newest ``honeyjet.verdict.session``
event of a session winning (a rerun of ``honeyjet analyze`` replaces the verdict).
Every query is SQLAlchemy Core and runs on SQLite and PostgreSQL; the one dialect
difference (bucketing times by hour) is picked by the engine's dialect name.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Any

from sqlalchemy import (
    Column,
    DateTime,
    Index,
    MetaData,
    String,
    Table,
    Text,
    and_,
    func,
    or_,
    select,
    tuple_,
)
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncEngine

from honeyjet.store.database import events_table as EV
from honeyjet.store.database import jobs_table as JOBS
from honeyjet.store.database import sessions_table as SES

UTC = timezone.utc
VERDICT = "honeyjet.verdict.session"
SOURCE_VERDICT = "honeyjet.verdict.source"
ANALYZED = "honeyjet.job.analyzed"
STATUSES = ("new", "acknowledged", "closed")
# allowed changes: forward, plus re-opening
TRANSITIONS = {"new": {"acknowledged", "closed"}, "acknowledged": {"closed", "new"}, "closed": {"new"}}
SEVERITIES = ("info", "low", "medium", "high", "critical")
PAGE_SIZE = 50
MAX_EVENTS = 2000  # events shown on one session page

# -- the console's own table ----------------------------------------------------------

console_metadata = MetaData()
triage_table = Table(
    "triage",
    console_metadata,
    Column("kind", String(16), primary_key=True),  # "session" or "source"
    Column("key", String(128), primary_key=True),  # session id or source address
    Column("status", String(16), nullable=False),
    Column("note", Text, nullable=False, default=""),
    Column("user", String(64), nullable=False),
    Column("updated", DateTime(timezone=True), nullable=False),
    Index("ix_triage_status", "kind", "status"),
)
TR = triage_table


async def create_console_tables(engine: AsyncEngine) -> None:
    async with engine.begin() as conn:
        await conn.run_sync(console_metadata.create_all)


def utc(value: Any) -> Any:
    """SQLite hands back naive datetimes (stored as UTC): make them aware."""
    if isinstance(value, datetime) and value.tzinfo is None:
        return value.replace(tzinfo=UTC)
    return value


def _rows(result: Any) -> list[dict[str, Any]]:
    return [{k: utc(v) for k, v in r._mapping.items()} for r in result]


def newest_verdict_uuid(session_col: Any) -> Any:
    """Correlated subquery: the event_uuid of the newest session verdict of ``session_col``."""
    v = EV.alias("v_newest")
    return (
        select(v.c.event_uuid)
        .where(v.c.session == session_col, v.c.eventid == VERDICT)
        .order_by(v.c.ts.desc(), v.c.event_uuid.desc())
        .limit(1)
        .scalar_subquery()
    )


@dataclass
class SessionFilter:
    since: datetime | None = None
    until: datetime | None = None
    source: str = ""
    port: int | None = None
    service: str = ""
    cls: str = ""
    severity: str = ""
    status: str = ""


class Queries:
    def __init__(self, engine: AsyncEngine):
        self.engine = engine

    @property
    def dialect(self) -> str:
        return self.engine.dialect.name

    async def _all(self, query: Any) -> list[dict[str, Any]]:
        async with self.engine.connect() as conn:
            return _rows(await conn.execute(query))

    async def _scalar(self, query: Any) -> Any:
        async with self.engine.connect() as conn:
            return await conn.scalar(query)

    # -- overview -----------------------------------------------------------------

    async def counts(self, since: datetime) -> dict[str, int]:
        async with self.engine.connect() as conn:
            sessions = await conn.scalar(select(func.count()).select_from(SES).where(SES.c.started >= since))
            sources = await conn.scalar(select(func.count(func.distinct(SES.c.src_ip))).where(SES.c.started >= since))
            jobs = await conn.scalar(select(func.count()).select_from(JOBS).where(JOBS.c.ts >= since))
            events = await conn.scalar(select(func.count()).select_from(EV).where(EV.c.ts >= since))
        return {"sessions": int(sessions or 0), "sources": int(sources or 0), "jobs": int(jobs or 0), "events": int(events or 0)}

    def _hour(self, col: Any) -> Any:
        if self.dialect == "postgresql":
            return func.to_char(func.date_trunc("hour", func.timezone("UTC", col)), "YYYY-MM-DD HH24:00")
        return func.strftime("%Y-%m-%d %H:00", col)

    async def sessions_per_hour(self, since: datetime) -> list[tuple[str, int]]:
        bucket = self._hour(SES.c.started).label("bucket")
        query = select(bucket, func.count().label("n")).where(SES.c.started >= since).group_by(bucket).order_by(bucket)
        got = {r["bucket"]: int(r["n"]) for r in await self._all(query)}
        start = since.astimezone(UTC).replace(minute=0, second=0, microsecond=0)
        now = datetime.now(UTC)
        out = []
        t = start
        while t <= now:
            key = t.strftime("%Y-%m-%d %H:00")
            out.append((key, got.get(key, 0)))
            t += timedelta(hours=1)
        return out

    async def top(self, column: Any, since: datetime, limit: int = 10) -> list[tuple[Any, int]]:
        n = func.count().label("n")
        query = select(column.label("k"), n).where(SES.c.started >= since).group_by(column).order_by(n.desc(), column).limit(limit)
        return [(r["k"], int(r["n"])) for r in await self._all(query)]

    async def verdicts_since(self, since: datetime | None, limit: int = 50_000) -> list[dict[str, Any]]:
        """The newest verdict (event data) of each session started since ``since``."""
        ve = EV.alias("ve")
        query = (
            select(ve.c.data)
            .select_from(SES.join(ve, ve.c.event_uuid == newest_verdict_uuid(SES.c.session)))
            .order_by(SES.c.started.desc())
            .limit(limit)
        )
        if since is not None:
            query = query.where(SES.c.started >= since)
        return [r["data"] for r in await self._all(query) if isinstance(r["data"], dict)]

    async def source_verdicts(self, source: str | None = None, limit: int = 200) -> list[dict[str, Any]]:
        query = select(EV.c.data).where(EV.c.eventid == SOURCE_VERDICT).order_by(EV.c.ts.desc()).limit(limit)
        if source is not None:
            query = query.where(EV.c.src_ip == source)
        return [r["data"] for r in await self._all(query) if isinstance(r["data"], dict)]

    # -- sessions -----------------------------------------------------------------

    async def sessions(self, flt: SessionFilter, *, before: tuple[datetime, str] | None = None,
                       limit: int = PAGE_SIZE) -> list[dict[str, Any]]:
        """Sessions newest first (keyset on ``(started, session)``), each with its verdict and triage."""
        ve = EV.alias("ve")
        severity = ve.c.data["severity"].as_string()
        primary = ve.c.data[("classes", 0)].as_string()
        status = func.coalesce(TR.c.status, "new")
        query = (
            select(SES, ve.c.data.label("verdict"), status.label("status"), TR.c.note, TR.c.user.label("triage_user"))
            .select_from(
                SES.outerjoin(ve, ve.c.event_uuid == newest_verdict_uuid(SES.c.session))
                .outerjoin(TR, and_(TR.c.kind == "session", TR.c.key == SES.c.session))
            )
            .order_by(SES.c.started.desc(), SES.c.session.desc())
            .limit(limit)
        )
        conds = []
        if flt.since is not None:
            conds.append(SES.c.started >= flt.since)
        if flt.until is not None:
            conds.append(SES.c.started < flt.until)
        if flt.source:
            conds.append(SES.c.src_ip == flt.source)
        if flt.port is not None:
            conds.append(SES.c.dst_port == flt.port)
        if flt.service:
            conds.append(SES.c.protocol == flt.service)
        if flt.cls:
            conds.append(primary == flt.cls)
        if flt.severity:
            conds.append(severity == flt.severity)
        if flt.status:
            conds.append(status == flt.status)
        if before is not None:
            conds.append(tuple_(SES.c.started, SES.c.session) < tuple_(before[0], before[1]) if self.dialect == "postgresql"
                         else or_(SES.c.started < before[0], and_(SES.c.started == before[0], SES.c.session < before[1])))
        if conds:
            query = query.where(*conds)
        return await self._all(query)

    async def session(self, session_id: str) -> dict[str, Any] | None:
        rows = await self._all(select(SES).where(SES.c.session == session_id))
        return rows[0] if rows else None

    async def session_events(self, session_id: str, limit: int = MAX_EVENTS) -> list[dict[str, Any]]:
        query = (select(EV.c.event_uuid, EV.c.eventid, EV.c.ts, EV.c.message, EV.c.data)
                 .where(EV.c.session == session_id).order_by(EV.c.ts, EV.c.event_uuid).limit(limit))
        return await self._all(query)

    async def services(self) -> list[str]:
        return [r["protocol"] for r in await self._all(select(SES.c.protocol).distinct().order_by(SES.c.protocol)) if r["protocol"]]

    # -- jobs ---------------------------------------------------------------------

    async def jobs(self, *, offset: int = 0, limit: int = 24, source: str | None = None,
                   session: str | None = None) -> list[dict[str, Any]]:
        """Captured jobs newest first, each with its session's source and its newest forensics report."""
        an = EV.alias("an")
        newest = (
            select(an.c.event_uuid)
            .where(an.c.session == JOBS.c.session, an.c.eventid == ANALYZED, an.c.data["shasum"].as_string() == JOBS.c.shasum)
            .order_by(an.c.ts.desc(), an.c.event_uuid.desc())
            .limit(1)
            .scalar_subquery()
        )
        rep = EV.alias("rep")
        query = (
            select(JOBS, SES.c.src_ip, SES.c.dst_port, rep.c.data.label("report"))
            .select_from(JOBS.outerjoin(SES, SES.c.session == JOBS.c.session).outerjoin(rep, rep.c.event_uuid == newest))
            .order_by(JOBS.c.ts.desc(), JOBS.c.id.desc())
            .offset(offset)
            .limit(limit)
        )
        if source is not None:
            query = query.where(SES.c.src_ip == source)
        if session is not None:
            query = query.where(JOBS.c.session == session)
        return await self._all(query)

    async def sources_of_shasums(self, shasums: list[str]) -> dict[str, list[str]]:
        if not shasums:
            return {}
        query = (select(JOBS.c.shasum, SES.c.src_ip).select_from(JOBS.join(SES, SES.c.session == JOBS.c.session))
                 .where(JOBS.c.shasum.in_(shasums)).distinct())
        out: dict[str, list[str]] = {}
        for r in await self._all(query):
            out.setdefault(r["shasum"], []).append(r["src_ip"])
        return out

    async def sources_of_campaigns(self, campaigns: list[str]) -> dict[str, list[str]]:
        if not campaigns:
            return {}
        campaign = EV.c.data["campaign"].as_string()
        query = (select(campaign.label("campaign"), EV.c.src_ip).where(EV.c.eventid == ANALYZED, campaign.in_(campaigns))
                 .distinct().limit(5000))
        out: dict[str, list[str]] = {}
        for r in await self._all(query):
            out.setdefault(r["campaign"], []).append(r["src_ip"])
        return out

    # -- sources ------------------------------------------------------------------

    async def source_sessions(self, source: str, limit: int = 500) -> list[dict[str, Any]]:
        return await self.sessions(SessionFilter(source=source), limit=limit)

    # -- feed ---------------------------------------------------------------------

    async def events_after(self, ts: datetime | None, limit: int = 200) -> list[dict[str, Any]]:
        query = select(EV.c.event_uuid, EV.c.eventid, EV.c.ts, EV.c.session, EV.c.protocol, EV.c.src_ip, EV.c.dst_port, EV.c.message)
        if ts is None:
            rows = await self._all(query.order_by(EV.c.ts.desc(), EV.c.event_uuid.desc()).limit(limit))
            rows.reverse()
            return rows
        return await self._all(query.where(EV.c.ts >= ts).order_by(EV.c.ts, EV.c.event_uuid).limit(limit))

    # -- triage -------------------------------------------------------------------

    async def triage(self, kind: str, key: str) -> dict[str, Any]:
        rows = await self._all(select(TR).where(TR.c.kind == kind, TR.c.key == key))
        return rows[0] if rows else {"kind": kind, "key": key, "status": "new", "note": "", "user": "", "updated": None}

    async def set_triage(self, kind: str, key: str, *, expected: str, status: str, note: str, user: str) -> dict[str, Any] | None:
        """Move ``kind``/``key`` from ``expected`` to ``status``; None when someone changed it first."""
        now = datetime.now(UTC)
        values = {"status": status, "note": note, "user": user, "updated": now}
        try:
            async with self.engine.begin() as conn:
                current = (await conn.execute(select(TR.c.status).where(TR.c.kind == kind, TR.c.key == key))).scalar()
                if (current or "new") != expected:
                    return None
                if current is None:
                    await conn.execute(TR.insert().values(kind=kind, key=key, **values))
                else:
                    done = await conn.execute(
                        TR.update().where(TR.c.kind == kind, TR.c.key == key, TR.c.status == expected).values(**values))
                    if done.rowcount != 1:
                        return None
        except IntegrityError:  # another analyst created the row first
            return None
        return {"kind": kind, "key": key, **values}

    async def triage_counts(self, kind: str) -> dict[str, int]:
        rows = await self._all(select(TR.c.status, func.count().label("n")).where(TR.c.kind == kind).group_by(TR.c.status))
        return {r["status"]: int(r["n"]) for r in rows}
