"""What the console reads from the event database, and the one table it owns (``triage``).

Only the sensor's tables and columns are used: ``events``, ``sessions``, ``jobs`` and
the analysis results of schema version 2, which keep the newest result per key (a rerun
of ``honeyjet analyze`` replaces it): ``verdicts`` (per session), ``job_analyses`` (per
job content) and ``sources`` (per sensor and source address). Every query is SQLAlchemy
Core and runs on SQLite and PostgreSQL; the dialect differences (bucketing times,
expanding a JSON array of rule ids) are picked by the engine's dialect name.

A fleet's central store holds many sensors' rows (each row's ``sensor`` column names
its sensor; ``sensor_tokens`` of schema version 3 lists the registered ones): most
queries take ``sensor`` ("" = every sensor) and a few correlate across sensors (which
sensors saw a source or a campaign, per-sensor activity). Those stay bounded: a time
window on an indexed column (``sessions.started``, ``jobs.ts``), a key lookup
(``src_ip``, ``campaign``) or a LIMIT.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Any

from sqlalchemy import (
    Column,
    case,
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
    true,
    tuple_,
)
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncEngine

from honeyjet.store.database import events_table as EV
from honeyjet.store.database import job_analyses_table as JA
from honeyjet.store.database import jobs_table as JOBS
from honeyjet.store.database import sensor_tokens_table as TOK
from honeyjet.store.database import sessions_table as SES
from honeyjet.store.database import sources_table as SRC
from honeyjet.store.database import verdicts_table as VD

UTC = timezone.utc
STATUSES = ("new", "acknowledged", "closed")
# allowed changes: forward, plus re-opening
TRANSITIONS = {"new": {"acknowledged", "closed"}, "acknowledged": {"closed", "new"}, "closed": {"new"}}
SEVERITIES = ("info", "low", "medium", "high", "critical")
SEVERITY_RANK = {s: i for i, s in enumerate(SEVERITIES)}  # as ``verdicts.severity_rank``
PAGE_SIZE = 50
MAX_EVENTS = 2000  # events shown on one session page
MAX_SENSORS = 1000  # sensors listed (the fleet page, the sensor filter)
BACKLOG_WINDOW = timedelta(days=1)  # the live feed's first read of one sensor looks this far back, no further

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
    sensor: str = ""


def _steps(start: datetime, step: timedelta, fmt: str) -> list[str]:
    """Bucket keys from ``start`` up to now (the dialects' bucket texts, in Python)."""
    now = datetime.now(UTC)
    out = []
    while start <= now:
        out.append(start.strftime(fmt))
        start += step
    return out


def _on(column: Any, sensor: str) -> list[Any]:
    """The condition ``column = sensor``, or none for every sensor (``sensor`` "")."""
    return [column == sensor] if sensor else []


def _grouped(rows: list[dict[str, Any]], value: str = "src_ip") -> dict[str, list[Any]]:
    """Rows with ``k`` and ``value`` columns -> {k: [value, …]} (in row order)."""
    out: dict[str, list[Any]] = {}
    for r in rows:
        out.setdefault(r["k"], []).append(r[value])
    return out


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

    async def counts(self, since: datetime, *, sensor: str = "") -> dict[str, int]:
        ses = [SES.c.started >= since, *_on(SES.c.sensor, sensor)]
        async with self.engine.connect() as conn:
            sessions = await conn.scalar(select(func.count()).select_from(SES).where(*ses))
            sources = await conn.scalar(select(func.count(func.distinct(SES.c.src_ip))).where(*ses))
            jobs = await conn.scalar(select(func.count()).select_from(JOBS).where(JOBS.c.ts >= since, *_on(JOBS.c.sensor, sensor)))
            events = await conn.scalar(select(func.count()).select_from(EV).where(EV.c.ts >= since, *_on(EV.c.sensor, sensor)))
        return {"sessions": int(sessions or 0), "sources": int(sources or 0), "jobs": int(jobs or 0), "events": int(events or 0)}

    def _bucket(self, col: Any, unit: str = "hour") -> Any:
        """``col`` (UTC) truncated to the hour (``YYYY-MM-DD HH:00``) or the day (``YYYY-MM-DD``)."""
        if self.dialect == "postgresql":
            fmt = "YYYY-MM-DD HH24:00" if unit == "hour" else "YYYY-MM-DD"
            return func.to_char(func.date_trunc(unit, func.timezone("UTC", col)), fmt)
        return func.strftime("%Y-%m-%d %H:00" if unit == "hour" else "%Y-%m-%d", col)

    async def sessions_per_hour(self, since: datetime, *, sensor: str = "") -> list[tuple[str, int]]:
        bucket = self._bucket(SES.c.started).label("bucket")
        query = (select(bucket, func.count().label("n")).where(SES.c.started >= since, *_on(SES.c.sensor, sensor))
                 .group_by(bucket).order_by(bucket))
        got = {r["bucket"]: int(r["n"]) for r in await self._all(query)}
        start = since.astimezone(UTC).replace(minute=0, second=0, microsecond=0)
        return [(key, got.get(key, 0)) for key in _steps(start, timedelta(hours=1), "%Y-%m-%d %H:00")]

    async def per_day(self, since: datetime, *, sensor: str = "") -> list[dict[str, Any]]:
        """Sessions, distinct sources and jobs per UTC day since ``since`` (every day, zeros included)."""
        day = self._bucket(SES.c.started, "day").label("day")
        ses = select(day, func.count().label("n"), func.count(func.distinct(SES.c.src_ip)).label("sources")).where(
            SES.c.started >= since, *_on(SES.c.sensor, sensor)).group_by(day)
        jday = self._bucket(JOBS.c.ts, "day").label("day")
        jobs = select(jday, func.count().label("n")).where(JOBS.c.ts >= since, *_on(JOBS.c.sensor, sensor)).group_by(jday)
        by_day = {r["day"]: r for r in await self._all(ses)}
        jobs_by_day = {r["day"]: int(r["n"]) for r in await self._all(jobs)}
        start = since.astimezone(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
        return [{"day": d, "sessions": int(by_day[d]["n"]) if d in by_day else 0,
                 "sources": int(by_day[d]["sources"]) if d in by_day else 0, "jobs": jobs_by_day.get(d, 0)}
                for d in _steps(start, timedelta(days=1), "%Y-%m-%d")]

    async def top(self, column: Any, since: datetime, limit: int = 10, *, sensor: str = "") -> list[tuple[Any, int]]:
        n = func.count().label("n")
        query = (select(column.label("k"), n).where(SES.c.started >= since, *_on(SES.c.sensor, sensor))
                 .group_by(column).order_by(n.desc(), column).limit(limit))
        return [(r["k"], int(r["n"])) for r in await self._all(query)]

    def _json_elements(self, column: Any) -> Any:
        """A table-valued function with one row (column ``value``) per element of the JSON array ``column``."""
        if self.dialect == "postgresql":
            return func.jsonb_array_elements_text(column).table_valued("value")
        return func.json_each(column).table_valued("value")

    async def rule_hits(self, table: Any, *, since: datetime | None = None, limit: int = 1000,
                        sensor: str = "") -> list[tuple[str, int]]:
        """Rows of ``verdicts`` (sessions) or ``sources`` per rule id in their ``rules`` JSON array, most first.

        ``since`` counts sessions started (``verdicts``) or sources judged (``sources``) since then;
        ``sensor`` counts only that sensor's rows.
        """
        elem = self._json_elements(table.c.rules)
        n = func.count().label("n")
        query = select(elem.c.value.label("rule"), n).select_from(table).join(elem, true())
        if self.dialect == "postgresql":
            query = query.where(func.jsonb_typeof(table.c.rules) == "array")
        if sensor:
            query = query.where(table.c.sensor == sensor)
        if since is not None:
            if table is VD:
                query = query.join(SES, SES.c.session == VD.c.session).where(SES.c.started >= since)
            else:
                query = query.where(table.c.ts >= since)
        query = query.group_by(elem.c.value).order_by(n.desc(), elem.c.value).limit(limit)
        return [(r["rule"], int(r["n"])) for r in await self._all(query) if isinstance(r["rule"], str)]

    async def verdict_tallies(self, since: datetime | None, *, sensor: str = "") -> dict[str, Any]:
        """Sessions (started since ``since``) per primary class, per severity and per rule, from ``verdicts``."""
        n = func.count().label("n")
        cls = func.coalesce(func.nullif(VD.c.primary_class, ""), "unclassified").label("k")
        base = select(n).select_from(VD.join(SES, SES.c.session == VD.c.session))
        if since is not None:
            base = base.where(SES.c.started >= since)
        if sensor:
            base = base.where(SES.c.sensor == sensor)
        classes = await self._all(base.add_columns(cls).group_by(cls).order_by(n.desc(), cls))
        severities = await self._all(base.add_columns(VD.c.severity.label("k")).group_by(VD.c.severity))
        return {"classes": [(r["k"], int(r["n"])) for r in classes],
                "severities": {s: next((int(r["n"]) for r in severities if r["k"] == s), 0) for s in SEVERITIES},
                "rules": await self.rule_hits(VD, since=since, sensor=sensor)}

    async def source_verdicts(self, source: str | None = None, *, since: datetime | None = None,
                              limit: int = 200, sensor: str = "") -> list[dict[str, Any]]:
        """Rows of ``sources`` (the newest correlation verdict per sensor and address), gravest first."""
        query = select(SRC).order_by(SRC.c.severity_rank.desc(), SRC.c.ts.desc(), SRC.c.src_ip, SRC.c.sensor).limit(limit)
        if source is not None:
            query = query.where(SRC.c.src_ip == source)
        if sensor:
            query = query.where(SRC.c.sensor == sensor)
        if since is not None:
            query = query.where(SRC.c.ts >= since)
        return await self._all(query)

    # -- sessions -----------------------------------------------------------------

    async def sessions(self, flt: SessionFilter, *, before: tuple[datetime, str] | None = None,
                       limit: int = PAGE_SIZE) -> list[dict[str, Any]]:
        """Sessions newest first (keyset on ``(started, session)``), each with its verdict and triage.

        ``verdict`` is None before the session is judged, else a dict with ``classes``,
        ``severity`` and ``rules`` (the row of ``verdicts``).
        """
        status = func.coalesce(TR.c.status, "new")
        query = (
            select(SES, VD.c.session.label("judged"), VD.c.classes.label("v_classes"), VD.c.severity.label("v_severity"),
                   VD.c.rules.label("v_rules"), status.label("status"), TR.c.note, TR.c.user.label("triage_user"))
            .select_from(
                SES.outerjoin(VD, VD.c.session == SES.c.session)
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
            conds.append(VD.c.primary_class == flt.cls)
        if flt.severity:
            conds += [VD.c.severity_rank == SEVERITY_RANK.get(flt.severity, -1), VD.c.severity == flt.severity]
        if flt.status:
            conds.append(status == flt.status)
        if flt.sensor:
            conds.append(SES.c.sensor == flt.sensor)
        if before is not None:
            conds.append(tuple_(SES.c.started, SES.c.session) < tuple_(before[0], before[1]) if self.dialect == "postgresql"
                         else or_(SES.c.started < before[0], and_(SES.c.started == before[0], SES.c.session < before[1])))
        if conds:
            query = query.where(*conds)
        rows = await self._all(query)
        for r in rows:
            judged = r.pop("judged") is not None
            verdict = {"classes": r.pop("v_classes"), "severity": r.pop("v_severity"), "rules": r.pop("v_rules")}
            r["verdict"] = {k: v if v is not None else ([] if k != "severity" else "") for k, v in verdict.items()} if judged else None
        return rows

    async def session(self, session_id: str) -> dict[str, Any] | None:
        rows = await self._all(select(SES).where(SES.c.session == session_id))
        return rows[0] if rows else None

    async def verdict_event(self, session_id: str) -> dict[str, Any] | None:
        """The whole ``honeyjet.verdict.session`` event the session's ``verdicts`` row came from."""
        query = (select(EV.c.data).select_from(VD.join(EV, EV.c.event_uuid == VD.c.event_uuid))
                 .where(VD.c.session == session_id))
        data = await self._scalar(query)
        return data if isinstance(data, dict) else None

    async def session_events(self, session_id: str, limit: int = MAX_EVENTS) -> list[dict[str, Any]]:
        query = (select(EV.c.event_uuid, EV.c.eventid, EV.c.ts, EV.c.message, EV.c.data)
                 .where(EV.c.session == session_id).order_by(EV.c.ts, EV.c.event_uuid).limit(limit))
        return await self._all(query)

    async def services(self) -> list[str]:
        return [r["protocol"] for r in await self._all(select(SES.c.protocol).distinct().order_by(SES.c.protocol)) if r["protocol"]]

    # -- jobs ---------------------------------------------------------------------

    async def jobs(self, *, offset: int = 0, limit: int = 24, source: str | None = None,
                   session: str | None = None, since: datetime | None = None, sensor: str = "") -> list[dict[str, Any]]:
        """Captured jobs newest first, each with its session's source and the forensics of its content
        (``job_analyses``; ``analysed`` is None until the job is analysed)."""
        query = (
            select(JOBS, SES.c.src_ip, SES.c.dst_port, JA.c.shasum.label("analysed"), JA.c.language.label("analysed_language"),
                   JA.c.text_shasum, JA.c.text_chars, JA.c.campaign, JA.c.indicators, JA.c.previews, JA.c.errors)
            .select_from(JOBS.outerjoin(SES, SES.c.session == JOBS.c.session).outerjoin(JA, JA.c.shasum == JOBS.c.shasum))
            .order_by(JOBS.c.ts.desc(), JOBS.c.id.desc())
            .offset(offset)
            .limit(limit)
        )
        if source is not None:
            query = query.where(SES.c.src_ip == source)
        if session is not None:
            query = query.where(JOBS.c.session == session)
        if since is not None:
            query = query.where(JOBS.c.ts >= since)
        if sensor:
            query = query.where(JOBS.c.sensor == sensor)
        return await self._all(query)

    async def sources_of_shasums(self, shasums: list[str]) -> dict[str, list[str]]:
        if not shasums:
            return {}
        query = (select(JOBS.c.shasum.label("k"), SES.c.src_ip).select_from(JOBS.join(SES, SES.c.session == JOBS.c.session))
                 .where(JOBS.c.shasum.in_(shasums)).distinct().limit(5000))
        return _grouped(await self._all(query))

    async def sources_of_campaigns(self, campaigns: list[str]) -> dict[str, list[str]]:
        if not campaigns:
            return {}
        query = (select(JA.c.campaign.label("k"), SES.c.src_ip)
                 .select_from(JA.join(JOBS, JOBS.c.shasum == JA.c.shasum).join(SES, SES.c.session == JOBS.c.session))
                 .where(JA.c.campaign.in_(campaigns)).distinct().limit(5000))
        return _grouped(await self._all(query))

    async def campaigns(self, *, limit: int = 200, sensor: str = "") -> list[dict[str, Any]]:
        """Campaigns (near-identical jobs) with their job count, distinct contents, sources and sensors,
        first and last job, largest first. ``sensor`` keeps the campaigns with a job on that sensor
        (their numbers stay fleet-wide)."""
        n_jobs = func.count(JOBS.c.id).label("jobs")
        query = (
            select(JA.c.campaign, n_jobs, func.count(func.distinct(JA.c.shasum)).label("contents"),
                   func.count(func.distinct(SES.c.src_ip)).label("sources"),
                   func.count(func.distinct(JOBS.c.sensor)).label("sensors"),
                   func.min(JOBS.c.ts).label("first"), func.max(JOBS.c.ts).label("last"),
                   func.max(JA.c.shasum).label("example"))
            .select_from(JA.join(JOBS, JOBS.c.shasum == JA.c.shasum).outerjoin(SES, SES.c.session == JOBS.c.session))
            .where(JA.c.campaign.is_not(None), JA.c.campaign != "")
            .group_by(JA.c.campaign)
            .order_by(func.count(func.distinct(SES.c.src_ip)).desc(), n_jobs.desc(), JA.c.campaign)
            .limit(limit)
        )
        if sensor:
            query = query.having(func.sum(case((JOBS.c.sensor == sensor, 1), else_=0)) > 0)
        rows = await self._all(query)
        for r in rows:
            r["first"], r["last"] = utc(r["first"]), utc(r["last"])
        return rows

    async def campaign_jobs(self, campaign: str, *, limit: int = 48, sensor: str = "") -> list[dict[str, Any]]:
        """The jobs of one campaign (on one sensor), newest first (same shape as :meth:`jobs`)."""
        query = (
            select(JOBS, SES.c.src_ip, SES.c.dst_port, JA.c.shasum.label("analysed"), JA.c.language.label("analysed_language"),
                   JA.c.text_shasum, JA.c.text_chars, JA.c.campaign, JA.c.indicators, JA.c.previews, JA.c.errors)
            .select_from(JOBS.join(JA, JA.c.shasum == JOBS.c.shasum).outerjoin(SES, SES.c.session == JOBS.c.session))
            .where(JA.c.campaign == campaign, *_on(JOBS.c.sensor, sensor))
            .order_by(JOBS.c.ts.desc(), JOBS.c.id.desc())
            .limit(limit)
        )
        return await self._all(query)

    async def campaign_sensors(self, campaign: str, *, limit: int = MAX_SENSORS) -> list[dict[str, Any]]:
        """Per sensor that captured a job of ``campaign``: jobs, distinct sources, first and last job, most jobs first."""
        n_jobs = func.count(JOBS.c.id).label("jobs")
        query = (
            select(JOBS.c.sensor, n_jobs, func.count(func.distinct(SES.c.src_ip)).label("sources"),
                   func.min(JOBS.c.ts).label("first"), func.max(JOBS.c.ts).label("last"))
            .select_from(JA.join(JOBS, JOBS.c.shasum == JA.c.shasum).outerjoin(SES, SES.c.session == JOBS.c.session))
            .where(JA.c.campaign == campaign)
            .group_by(JOBS.c.sensor)
            .order_by(n_jobs.desc(), JOBS.c.sensor)
            .limit(limit)
        )
        return await self._all(query)

    async def sensors_of_campaigns(self, campaigns: list[str]) -> dict[str, list[str]]:
        """The sensors that captured a job of each of ``campaigns`` (by name)."""
        if not campaigns:
            return {}
        query = (select(JA.c.campaign.label("k"), JOBS.c.sensor).select_from(JA.join(JOBS, JOBS.c.shasum == JA.c.shasum))
                 .where(JA.c.campaign.in_(campaigns), JOBS.c.sensor.is_not(None)).distinct()
                 .order_by(JA.c.campaign, JOBS.c.sensor).limit(5000))
        return _grouped(await self._all(query), "sensor")

    async def top_sources(self, *, limit: int = 200, since: datetime | None = None, sensor: str = "",
                          multi: bool = False, multi_first: bool = False) -> list[dict[str, Any]]:
        """Sources by their worst session verdict, then by sessions: address, sessions, distinct sensors,
        last seen, worst severity (sessions started since ``since``).

        ``sensor`` keeps the sources that sensor saw (their numbers stay fleet-wide); ``multi``
        keeps the sources seen by two sensors or more, ``multi_first`` lists those first.
        """
        n = func.count().label("sessions")
        worst = func.max(VD.c.severity_rank).label("worst")
        sensors = func.count(func.distinct(SES.c.sensor))
        order = [worst.desc().nullslast(), n.desc(), SES.c.src_ip]
        if multi_first:
            order.insert(0, case((sensors >= 2, 1), else_=0).desc())
        query = (
            select(SES.c.src_ip, n, sensors.label("sensors"), func.max(SES.c.started).label("last"), worst)
            .select_from(SES.outerjoin(VD, VD.c.session == SES.c.session))
            .group_by(SES.c.src_ip)
            .order_by(*order)
            .limit(limit)
        )
        if since is not None:
            query = query.where(SES.c.started >= since)
        if sensor:
            query = query.having(func.sum(case((SES.c.sensor == sensor, 1), else_=0)) > 0)
        if multi:
            query = query.having(sensors >= 2)
        rows = await self._all(query)
        for r in rows:
            r["last"] = utc(r["last"])
        return rows

    async def sensors_of_sources(self, sources: list[str], since: datetime | None = None) -> dict[str, list[str]]:
        """The sensors each of ``sources`` had sessions with (since ``since``), by name."""
        if not sources:
            return {}
        query = (select(SES.c.src_ip.label("k"), SES.c.sensor).where(SES.c.src_ip.in_(sources), SES.c.sensor.is_not(None))
                 .distinct().order_by(SES.c.src_ip, SES.c.sensor).limit(5000))
        if since is not None:
            query = query.where(SES.c.started >= since)
        return _grouped(await self._all(query), "sensor")

    # -- sources ------------------------------------------------------------------

    async def source_sessions(self, source: str, limit: int = 500, *, sensor: str = "") -> list[dict[str, Any]]:
        return await self.sessions(SessionFilter(source=source, sensor=sensor), limit=limit)

    async def source_profile(self, source: str, *, sensor: str = "") -> dict[str, Any]:
        """All sessions of ``source`` (with ``sensor``): how many, first and last start, per primary class,
        per service and port."""
        where = [SES.c.src_ip == source, *_on(SES.c.sensor, sensor)]
        async with self.engine.connect() as conn:
            span = (await conn.execute(select(func.count().label("n"), func.min(SES.c.started).label("first"),
                                              func.max(SES.c.started).label("last")).where(*where))).one()
            n = func.count().label("n")
            cls = func.coalesce(func.nullif(VD.c.primary_class, ""), "unclassified").label("k")
            classes = await conn.execute(select(cls, n).select_from(SES.outerjoin(VD, VD.c.session == SES.c.session))
                                         .where(*where).group_by(cls).order_by(n.desc(), cls))
            ports = await conn.execute(select(SES.c.protocol, SES.c.dst_port, n).where(*where)
                                       .group_by(SES.c.protocol, SES.c.dst_port).order_by(n.desc(), SES.c.dst_port))
            return {"sessions": int(span.n or 0), "first": utc(span.first), "last": utc(span.last),
                    "classes": [(r.k, int(r.n)) for r in classes],
                    "ports": [((r.protocol or "", r.dst_port), int(r.n)) for r in ports]}

    async def source_sensors(self, source: str, *, limit: int = 100) -> list[dict[str, Any]]:
        """Per sensor that saw ``source``: sessions, first and last start, worst verdict (rank), most sessions first."""
        n = func.count().label("sessions")
        query = (
            select(SES.c.sensor, n, func.min(SES.c.started).label("first"), func.max(SES.c.started).label("last"),
                   func.max(VD.c.severity_rank).label("worst"))
            .select_from(SES.outerjoin(VD, VD.c.session == SES.c.session))
            .where(SES.c.src_ip == source)
            .group_by(SES.c.sensor)
            .order_by(n.desc(), SES.c.sensor)
            .limit(limit)
        )
        return await self._all(query)

    async def classes_of_sources(self, sources: list[str], since: datetime, *, sensor: str = "") -> dict[str, list[str]]:
        """The primary classes of the sessions each of ``sources`` started since ``since`` (with ``sensor``),
        most frequent first."""
        if not sources:
            return {}
        n = func.count().label("n")
        query = (select(SES.c.src_ip.label("k"), VD.c.primary_class, n)
                 .select_from(SES.join(VD, VD.c.session == SES.c.session))
                 .where(SES.c.src_ip.in_(sources), SES.c.started >= since, VD.c.primary_class != "", *_on(SES.c.sensor, sensor))
                 .group_by(SES.c.src_ip, VD.c.primary_class).order_by(SES.c.src_ip, n.desc(), VD.c.primary_class))
        return _grouped(await self._all(query), "primary_class")

    # -- feed ---------------------------------------------------------------------

    async def events_after(self, ts: datetime | None, limit: int = 200, *, sensor: str = "") -> list[dict[str, Any]]:
        """Events from ``ts`` on, oldest first; with ``ts`` None the newest ``limit`` (of ``sensor``: of the
        last :data:`BACKLOG_WINDOW`, so that a quiet sensor does not make it read the whole table)."""
        query = select(EV.c.event_uuid, EV.c.eventid, EV.c.ts, EV.c.sensor, EV.c.session, EV.c.protocol, EV.c.src_ip,
                       EV.c.dst_port, EV.c.message)
        if sensor:
            query = query.where(EV.c.sensor == sensor)
            if ts is None:
                query = query.where(EV.c.ts >= datetime.now(UTC) - BACKLOG_WINDOW)
        if ts is None:
            rows = await self._all(query.order_by(EV.c.ts.desc(), EV.c.event_uuid.desc()).limit(limit))
            rows.reverse()
            return rows
        return await self._all(query.where(EV.c.ts >= ts).order_by(EV.c.ts, EV.c.event_uuid).limit(limit))

    # -- fleet --------------------------------------------------------------------

    async def known_sensors(self, since: datetime) -> list[str]:
        """Sensor names: the registered ones (``sensor_tokens``) and those with sessions since ``since``."""
        names = {r["name"] for r in await self._all(select(TOK.c.name).order_by(TOK.c.name).limit(MAX_SENSORS))}
        recent = select(SES.c.sensor).where(SES.c.started >= since, SES.c.sensor.is_not(None)).distinct().limit(MAX_SENSORS)
        names.update(r["sensor"] for r in await self._all(recent))
        return sorted(n for n in names if n)[:MAX_SENSORS]

    async def fleet(self, now: datetime | None = None) -> list[dict[str, Any]]:
        """Every registered sensor and every sensor with sessions in the last 7 days, by name.

        Each: ``name``, ``registered`` (has a token), ``created``, ``revoked``, ``last_seen`` (the
        collector's, else the last session), ``events`` (received by the collector), ``sessions_today``
        and ``sessions_week`` (started since midnight UTC and in the last 7 days), ``jobs_week``,
        ``last_session``, ``top_class`` with ``top_class_n`` (most frequent primary class, 7 days).
        """
        now = now or datetime.now(UTC)
        today = now.astimezone(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
        week = now - timedelta(days=7)
        tokens = await self._all(select(TOK.c.name, TOK.c.created, TOK.c.revoked, TOK.c.last_seen, TOK.c.events)
                                 .order_by(TOK.c.name).limit(MAX_SENSORS))
        n = func.count().label("n")
        activity = await self._all(
            select(SES.c.sensor, n, func.sum(case((SES.c.started >= today, 1), else_=0)).label("today"),
                   func.max(SES.c.started).label("last"))
            .where(SES.c.started >= week, SES.c.sensor.is_not(None)).group_by(SES.c.sensor).limit(MAX_SENSORS))
        jobs = await self._all(select(JOBS.c.sensor, n).where(JOBS.c.ts >= week, JOBS.c.sensor.is_not(None))
                               .group_by(JOBS.c.sensor).limit(MAX_SENSORS))
        classes = await self._all(
            select(SES.c.sensor, VD.c.primary_class, n).select_from(SES.join(VD, VD.c.session == SES.c.session))
            .where(SES.c.started >= week, SES.c.sensor.is_not(None), VD.c.primary_class != "")
            .group_by(SES.c.sensor, VD.c.primary_class).order_by(SES.c.sensor, n.desc(), VD.c.primary_class).limit(20 * MAX_SENSORS))
        out: dict[str, dict[str, Any]] = {}

        def entry(name: str) -> dict[str, Any]:
            return out.setdefault(name, {"name": name, "registered": False, "created": None, "revoked": None, "last_seen": None,
                                         "events": None, "sessions_today": 0, "sessions_week": 0, "jobs_week": 0,
                                         "last_session": None, "top_class": "", "top_class_n": 0})

        for t in tokens:
            entry(t["name"]).update(registered=True, created=t["created"], revoked=t["revoked"], last_seen=t["last_seen"],
                                    events=int(t["events"] or 0))
        for a in activity:
            entry(a["sensor"]).update(sessions_week=int(a["n"]), sessions_today=int(a["today"] or 0), last_session=a["last"])
        for j in jobs:
            entry(j["sensor"])["jobs_week"] = int(j["n"])
        for c in classes:
            e = entry(c["sensor"])
            if not e["top_class"]:
                e.update(top_class=c["primary_class"], top_class_n=int(c["n"]))
        for e in out.values():
            seen = [t for t in (e["last_seen"], e["last_session"]) if t is not None]
            e["last_seen"] = max(seen) if seen else None
        return [out[k] for k in sorted(out)][:MAX_SENSORS]

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
