"""The collector: a fleet's authenticated ingest API in front of the central database.

Sensors forward with :mod:`honeyjet.store.forwarder`; this side authenticates each
request by a per-sensor bearer token (stored as its sha256 in ``sensor_tokens``;
revoking takes effect within :data:`TOKEN_TTL` seconds), makes the token's sensor name
authoritative (an event's ``sensor`` field is overwritten with it: one sensor cannot
write as another), validates every line, and stores batches with the database's
idempotent writer (``ON CONFLICT (event_uuid) DO NOTHING``): a batch sent twice is
stored once. Job files arrive content-addressed and are checked against their name.

Campaigns are re-assigned centrally: each ``honeyjet.job.analyzed`` event's simhash is
matched against every sensor's jobs (the same :class:`CampaignIndex` the sensors use),
so near-identical spam seen by different sensors lands in one campaign. The central
row carries the central id; the sensor keeps its own in its local log.

Fleet verdicts: a source seen by ``collector.fleet_sensors`` sensors within
``collector.fleet_window`` is judged once more, fleet-wide (:class:`FleetSources`), stored as
a ``honeyjet.verdict.source`` of the reserved sensor ``fleet`` and, when the collector's own
configuration enables ``[alerts]``, alerted through the same channels a sensor uses.

Bounds: request body (``collector.max_request_bytes``, counted after gunzip), lines per
request, artifact size, one writer transaction per request.
"""

from __future__ import annotations

import asyncio
import hashlib
import ipaddress
import logging
import re
import secrets
import ssl
import time
import uuid
from collections import Counter, OrderedDict
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import orjson
from sqlalchemy import select, update

from honeyjet.analysis.sources import CampaignIndex
from honeyjet.store.artifacts import ArtifactStore, is_shasum
from honeyjet.store.database import Database, job_analyses_table, sensor_tokens_table

log = logging.getLogger(__name__)

TOKEN_TTL = 5.0  # seconds a token table read is trusted (revocation delay)
MAX_LINES = 20000  # events per request
MAX_MISSING_QUERY = 4096  # shasums per "which are missing" question
_UUID = re.compile(r"[0-9a-f]{32}")
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}")
UTC = timezone.utc


def _request_key() -> Any:
    from aiohttp import web

    maker = getattr(web, "RequestKey", None)  # aiohttp >= 3.12; a plain string before
    return maker("sensor", str) if maker is not None else "sensor"


SENSOR = _request_key()  # the request's authenticated sensor name


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8", "surrogateescape")).hexdigest()


def valid_sensor_name(name: str) -> bool:
    return _NAME.fullmatch(name) is not None


class TokenBook:
    """Sensor tokens from the central database: add, revoke, list, and a cached check."""

    def __init__(self, db: Database) -> None:
        self.db = db
        self._by_hash: dict[str, str] = {}
        self._read_at = -1e9
        self._lock = asyncio.Lock()

    async def add(self, name: str) -> str:
        """A new token for ``name`` (returned once; only its hash is kept). A revoked name is re-issued."""
        if not valid_sensor_name(name):
            raise ValueError(f"sensor name {name!r}: letters, digits, '.', '_' or '-' (at most 128)")
        if name == FLEET_SENSOR:
            raise ValueError(f"sensor name {name!r} is reserved for the collector's fleet verdicts")
        token = "hjt_" + secrets.token_urlsafe(32)
        T = sensor_tokens_table
        async with self.db.engine.begin() as conn:
            row = (await conn.execute(select(T.c.revoked).where(T.c.name == name))).first()
            if row is not None and row.revoked is None:
                raise ValueError(f"sensor {name!r} already has a token: revoke it first")
            values = {"token_hash": token_hash(token), "created": datetime.now(UTC), "revoked": None}
            if row is None:
                await conn.execute(T.insert().values(name=name, events=0, **values))
            else:
                await conn.execute(update(T).where(T.c.name == name).values(**values))
        self._read_at = -1e9
        return token

    async def revoke(self, name: str) -> bool:
        T = sensor_tokens_table
        async with self.db.engine.begin() as conn:
            result = await conn.execute(update(T).where(T.c.name == name, T.c.revoked.is_(None)).values(revoked=datetime.now(UTC)))
        self._read_at = -1e9
        return bool(result.rowcount)

    async def rows(self) -> list[dict[str, Any]]:
        T = sensor_tokens_table
        async with self.db.engine.connect() as conn:
            result = await conn.execute(select(T.c.name, T.c.created, T.c.revoked, T.c.last_seen, T.c.events).order_by(T.c.name))
            return [dict(r._mapping) for r in result]

    async def sensor_for(self, token: str) -> str | None:
        """The sensor name of a valid, unrevoked token (None otherwise)."""
        h = token_hash(token)
        now = time.monotonic()
        name = self._by_hash.get(h)
        # re-read when stale, or (at most once a second) for an unknown token just added
        if now - self._read_at > TOKEN_TTL or (name is None and now - self._read_at > 1.0):
            async with self._lock:
                if time.monotonic() - self._read_at > 1.0:
                    T = sensor_tokens_table
                    async with self.db.engine.connect() as conn:
                        result = await conn.execute(select(T.c.token_hash, T.c.name).where(T.c.revoked.is_(None)))
                        self._by_hash = {r.token_hash: r.name for r in result}
                    self._read_at = time.monotonic()
            name = self._by_hash.get(h)
        return name


class CentralCampaigns:
    """Campaign ids over every sensor's jobs (seeded from the central job_analyses)."""

    def __init__(self, distance: int, max_entries: int = 200000) -> None:
        self.index = CampaignIndex(distance=distance, max_entries=max_entries)

    async def load(self, db: Database, limit: int = 200000) -> None:
        J = job_analyses_table
        async with db.engine.connect() as conn:
            result = await conn.execute(
                select(J.c.simhash, J.c.shasum).where(J.c.simhash.is_not(None)).order_by(J.c.ts.desc()).limit(limit)
            )
            rows = list(result)
        for simhash, shasum in reversed(rows):
            self.assign(simhash, shasum, "")

    def assign(self, simhash: Any, shasum: Any, source: Any) -> str | None:
        if not isinstance(simhash, str) or not isinstance(shasum, str):
            return None
        try:
            value = int(simhash, 16)
        except ValueError:
            return None
        if not 0 <= value < 2**64:
            return None
        return self.index.assign(value, shasum, source if isinstance(source, str) else "")


FLEET_SENSOR = "fleet"  # the sensor name of fleet verdicts (no token may carry it)
FLEET_RULE = ("HJ-FLEET-001", "Seen by several sensors of the fleet")
_SEVERITIES = ("info", "low", "medium", "high", "critical")


def _address(value: Any) -> str | None:
    try:
        return str(ipaddress.ip_address(value)) if isinstance(value, str) else None
    except ValueError:
        return None


def _epoch(ts: datetime) -> float:
    return (ts if ts.tzinfo else ts.replace(tzinfo=UTC)).timestamp()


class FleetSources:
    """Which sensors saw each source recently; a fleet verdict when enough of them did.

    Fed every ``honeyjet.verdict.session`` the collector stores. A source seen by
    ``collector.fleet_sensors`` sensors within ``collector.fleet_window`` seconds gets one
    ``honeyjet.verdict.source`` (sensor ``fleet``, rule HJ-FLEET-001) per window: severity
    the worst of its session verdicts there, at least ``medium`` (one actor working across
    several of your networks). Bounded: the least recently seen sources are forgotten.
    """

    def __init__(self, *, sensors: int, window: float, max_sources: int, clock: Any = time.time) -> None:
        self.threshold = sensors
        self.window = window
        self.max_sources = max_sources
        self.clock = clock
        # src_ip -> {"sensors": {name: last seen}, "first": t, "sessions": n, "rank": r, "classes": Counter, "fired": t}
        self._sources: OrderedDict[str, dict[str, Any]] = OrderedDict()
        self._uuid_prefix = uuid.uuid4().hex[:16]
        self._uuid_next = 0
        self.emitted = 0

    def observe(self, ev: dict[str, Any]) -> dict[str, Any] | None:
        """Take one stored event; the fleet verdict it completes, if any."""
        if ev.get("eventid") != "honeyjet.verdict.session" or ev.get("rerun"):
            return None
        src = _address(ev.get("src_ip"))
        if src is None:
            return None
        classes = ev.get("classes")
        primary = classes[0] if isinstance(classes, list) and classes and isinstance(classes[0], str) else ""
        now = self.clock()
        entry = self._record(src, str(ev.get("sensor")), now, ev.get("severity"), primary)
        fired = entry["fired"]
        if len(entry["sensors"]) < self.threshold or (fired is not None and now - fired < self.window):
            return None
        entry["fired"] = now
        return self._verdict(src, entry, now)

    def _record(self, src: str, sensor: str, now: float, severity: Any, primary: str) -> dict[str, Any]:
        entry = self._sources.get(src)
        if entry is None:
            entry = {"sensors": {}, "first": now, "sessions": 0, "rank": 0, "classes": Counter(), "fired": None}
            self._sources[src] = entry
            while len(self._sources) > self.max_sources:
                self._sources.popitem(last=False)
        else:
            self._sources.move_to_end(src)
        sensors = entry["sensors"]
        for name, seen in list(sensors.items()):
            if now - seen > self.window:
                del sensors[name]
        if not sensors:
            entry.update(first=now, sessions=0, rank=0, classes=Counter())
        sensors[sensor] = max(now, sensors.get(sensor, now))
        entry["sessions"] += 1
        entry["rank"] = max(entry["rank"], _SEVERITIES.index(severity) if severity in _SEVERITIES else 0)
        if primary and len(entry["classes"]) < 64:
            entry["classes"][primary[:64]] += 1
        return entry

    async def load(self, db: Database) -> None:
        """Seed from the central store (a restarted collector neither forgets nor repeats):
        the session verdicts of the last window, and the fleet verdicts already given."""
        from datetime import timedelta

        from honeyjet.store.database import sources_table, verdicts_table

        V, S = verdicts_table, sources_table
        since = datetime.now(UTC) - timedelta(seconds=self.window)
        async with db.engine.connect() as conn:
            seen = await conn.execute(
                select(V.c.src_ip, V.c.sensor, V.c.ts, V.c.severity, V.c.primary_class)
                .where(V.c.ts >= since, V.c.sensor != FLEET_SENSOR).order_by(V.c.ts).limit(self.max_sources * 4))
            for src_ip, sensor, ts, severity, primary in seen:
                src = _address(src_ip)
                if src is not None and ts is not None:
                    self._record(src, str(sensor), _epoch(ts), severity, primary or "")
            fired = await conn.execute(select(S.c.src_ip, S.c.ts).where(S.c.sensor == FLEET_SENSOR, S.c.ts >= since))
            for src_ip, ts in fired:
                entry = self._sources.get(str(src_ip))
                if entry is not None and ts is not None:
                    entry["fired"] = _epoch(ts)

    def _verdict(self, src: str, entry: dict[str, Any], now: float) -> dict[str, Any]:
        from honeyjet.events import rfc3339

        self._uuid_next += 1
        self.emitted += 1
        names = sorted(entry["sensors"])[:256]
        severity = _SEVERITIES[max(entry["rank"], 2)]
        classes = [c for c, _ in entry["classes"].most_common(16)] or ["unclassified"]
        return {
            "eventid": "honeyjet.verdict.source",
            "event_uuid": f"{self._uuid_prefix}{self._uuid_next:016x}",
            "timestamp": rfc3339(now),
            "sensor": FLEET_SENSOR,
            "session": "",
            "protocol": "fleet",
            "src_ip": src,
            "src_port": 0,
            "dst_ip": "",
            "dst_port": 0,
            "message": f"{src} seen by {len(names)} sensors: {', '.join(names[:8])}",
            "classes": classes,
            "severity": severity,
            "rules": [FLEET_RULE[0]],
            "rule_names": [FLEET_RULE[1]],
            "new_rules": [FLEET_RULE[0]],
            "sessions": entry["sessions"],
            "services": [],
            "first_seen": rfc3339(entry["first"]),
            "sensors": names,
        }


def _unauthorized() -> Any:
    from aiohttp import web

    return web.json_response({"error": "unauthorized"}, status=401, headers={"WWW-Authenticate": 'Bearer realm="honeyjet"'})


class Collector:
    """The ingest application (aiohttp) and what it needs: database, tokens, artifacts."""

    def __init__(self, settings: Any, db: Database, *, data_dir: Path) -> None:
        cs = settings.collector
        self.settings = settings
        self.db = db
        self.tokens = TokenBook(db)
        self.max_request = cs.max_request_bytes
        self.max_artifact = cs.max_artifact_bytes
        self.artifacts = ArtifactStore(data_dir / "artifacts", max_object_bytes=cs.max_artifact_bytes,
                                       quota_bytes=settings.limits.disk_quota, fsync=settings.store.fsync)
        self.campaigns = CentralCampaigns(settings.analysis.campaign_distance)
        self.fleet = FleetSources(sensors=cs.fleet_sensors, window=cs.fleet_window, max_sources=cs.fleet_max_sources)
        self.alerts: list[Any] = []  # alert sinks ([alerts] in the collector's configuration) for fleet verdicts
        self.counters: dict[str, int] = {"requests": 0, "events": 0, "stored": 0, "rejected": 0, "refused": 0, "artifacts": 0}
        self._write_lock = asyncio.Lock()

    async def open(self) -> None:
        await self.campaigns.load(self.db)
        await self.fleet.load(self.db)
        if self.settings.alerts.enabled:
            from honeyjet.outputs.alerts import build_alerts

            self.alerts = [sink for sink in build_alerts(self.settings, None) if hasattr(sink, "policy")]
            for sink in self.alerts:
                await sink.start()

    async def close(self) -> None:
        for sink in self.alerts:
            await sink.stop()

    def app(self) -> Any:
        from aiohttp import web

        app = web.Application(client_max_size=self.max_request, middlewares=[self._auth])
        app.router.add_get("/api/v1/health", self.health)
        app.router.add_post("/api/v1/events", self.events)
        app.router.add_post("/api/v1/artifacts/missing", self.missing)
        app.router.add_put("/api/v1/artifacts/{shasum}", self.put_artifact)

        async def _no_banner(request: Any, response: Any) -> None:
            response.headers.pop("Server", None)

        app.on_response_prepare.append(_no_banner)
        return app

    # -- middleware ---------------------------------------------------------------------

    @property
    def _auth(self) -> Any:
        from aiohttp import web

        @web.middleware
        async def auth(request: Any, handler: Any) -> Any:
            self.counters["requests"] += 1
            if request.path == "/api/v1/health":
                return await handler(request)
            header = request.headers.get("Authorization", "")
            scheme, _, token = header.partition(" ")
            name = await self.tokens.sensor_for(token.strip()) if scheme.lower() == "bearer" and token else None
            if name is None:
                self.counters["refused"] += 1
                return _unauthorized()
            request[SENSOR] = name
            return await handler(request)

        return auth

    # -- handlers -------------------------------------------------------------------------

    async def health(self, request: Any) -> Any:
        from aiohttp import web

        return web.json_response({"status": "ok"})

    async def _body(self, request: Any) -> bytes | None:
        """The request body; aiohttp inflates ``Content-Encoding: gzip`` itself and stops at
        ``client_max_size`` (the inflated size), answering 413."""
        return await request.read()

    def _parse(self, body: bytes, sensor: str) -> tuple[list[dict[str, Any]], int]:
        events: list[dict[str, Any]] = []
        rejected = 0
        for line in body.split(b"\n")[: MAX_LINES + 1]:
            if not line.strip():
                continue
            if len(events) >= MAX_LINES:
                rejected += 1
                continue
            try:
                ev = orjson.loads(line)
            except orjson.JSONDecodeError:
                rejected += 1
                continue
            if (not isinstance(ev, dict) or not isinstance(ev.get("event_uuid"), str) or not _UUID.fullmatch(ev["event_uuid"])
                    or not isinstance(ev.get("eventid"), str) or not ev["eventid"].startswith("honeyjet.")
                    or not isinstance(ev.get("timestamp"), str)):
                rejected += 1
                continue
            ev["sensor"] = sensor  # the token says who sent it
            if ev["eventid"] == "honeyjet.job.analyzed":
                central = self.campaigns.assign(ev.get("simhash"), ev.get("shasum"), ev.get("src_ip"))
                if central is not None:
                    ev["campaign"] = central
            events.append(ev)
        return events, rejected

    async def events(self, request: Any) -> Any:
        from aiohttp import web

        body = await self._body(request)
        if body is None:
            return web.json_response({"error": "body too large or not gzip"}, status=413)
        sensor = request[SENSOR]
        events, rejected = self._parse(body, sensor)
        verdicts = [v for v in map(self.fleet.observe, events) if v is not None]
        events.extend(verdicts)
        try:
            async with self._write_lock:
                stored = await self.db.write_events(events) if events else 0
                await self._seen(sensor, len(events))
        except Exception as exc:  # the sensor keeps the batch and retries
            log.error("collector: cannot store %d events from %s: %s", len(events), sensor, exc)
            return web.json_response({"error": "store unavailable"}, status=503)
        for verdict in verdicts:  # stored: now tell people
            for sink in self.alerts:
                sink.write(verdict)
        self.counters["events"] += len(events)
        self.counters["stored"] += stored
        self.counters["rejected"] += rejected
        if rejected:
            log.warning("collector: %d malformed lines from %s dropped", rejected, sensor)
        return web.json_response({"received": len(events), "stored": stored, "rejected": rejected})

    async def _seen(self, sensor: str, n: int) -> None:
        T = sensor_tokens_table
        async with self.db.engine.begin() as conn:
            await conn.execute(update(T).where(T.c.name == sensor).values(last_seen=datetime.now(UTC), events=T.c.events + n))

    async def missing(self, request: Any) -> Any:
        from aiohttp import web

        try:
            asked = orjson.loads(await request.read())
        except orjson.JSONDecodeError:
            return web.json_response({"error": "bad json"}, status=400)
        shasums = asked.get("shasums") if isinstance(asked, dict) else None
        if not isinstance(shasums, list):
            return web.json_response({"error": "shasums: a list"}, status=400)
        missing = [s for s in shasums[:MAX_MISSING_QUERY] if is_shasum(s) and not self.artifacts.exists(s)]
        return web.json_response({"missing": missing})

    async def put_artifact(self, request: Any) -> Any:
        from aiohttp import web

        shasum = request.match_info["shasum"]
        if not is_shasum(shasum):
            return web.json_response({"error": "not a sha256"}, status=400)
        if self.artifacts.exists(shasum):
            return web.json_response({"shasum": shasum, "stored": False})
        length = request.content_length
        if length is not None and length > self.max_artifact:
            return web.json_response({"error": "too large"}, status=413)
        from aiohttp.web_protocol import RequestPayloadError

        writer = self.artifacts.writer(self.max_artifact)
        with writer:
            try:
                async for chunk in request.content.iter_chunked(65536):
                    writer.write(chunk)
                    if writer.size > self.max_artifact:
                        return web.json_response({"error": "too large"}, status=413)  # leaving the block aborts
            except RequestPayloadError:
                return web.json_response({"error": "unreadable body"}, status=400)
            info = writer.close()
        if info.shasum != shasum or info.truncated:
            return web.json_response({"error": "content does not match its sha256 (or did not fit)"}, status=400)
        self.counters["artifacts"] += 1
        return web.json_response({"shasum": shasum, "stored": True}, status=201)


async def serve(settings: Any, *, database_url: str, data_dir: Path, bind: str, port: int, tls: ssl.SSLContext | None,
                stop: asyncio.Event, ready: Any = None) -> None:
    """Run the collector until ``stop`` is set (``ready(port)`` is called once listening)."""
    from aiohttp import web

    db = Database(database_url)
    await db.open()
    runner = None
    collector: Collector | None = None
    try:
        collector = Collector(settings, db, data_dir=data_dir)
        await collector.open()
        runner = web.AppRunner(collector.app(), handle_signals=False, access_log=None)
        await runner.setup()
        site = web.TCPSite(runner, bind, port, ssl_context=tls, reuse_address=True)
        await site.start()
        bound = port
        server = getattr(site, "_server", None)
        if server is not None and server.sockets:
            bound = server.sockets[0].getsockname()[1]
        log.info("collector listening on %s:%d (%s), database %s", bind, bound, "https" if tls else "http", db.dialect)
        if ready is not None:
            ready(bound)
        await stop.wait()
    finally:
        if runner is not None:
            await runner.cleanup()
        if collector is not None:
            await collector.close()
        await db.close()
