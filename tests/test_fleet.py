"""Fleets: sensors forward to a collector in front of a central database (PostgreSQL in CI).

The acceptance test runs two real sensors and a real collector on loopback: events of
both arrive centrally; with the collector stopped, traffic goes on and waits in the
sensors' databases; after the restart every event is stored exactly once (count and
event_uuid set), also when a sensor re-sends everything after losing its cursor.
"""

from __future__ import annotations

import asyncio
import contextlib
import gzip
import os
import sqlite3
import subprocess
import sys
import uuid
from pathlib import Path

import aiohttp
import orjson
import pytest
from hypothesis import HealthCheck, given, settings as hsettings, strategies as st
from sqlalchemy import text
from sqlalchemy.ext.asyncio import create_async_engine

from conftest import exchange, free_offset, free_port, running, sensor_settings
from honeyjet.config import load_settings
from honeyjet.fleet.collector import TokenBook, serve
from honeyjet.store.database import Database

PG_URL = os.environ.get("HONEYJET_TEST_POSTGRES_URL", "")
SPAM_TEXT = (
    "URGENT NOTICE TO THE ACCOUNTS DEPARTMENT. Your printer subscription has expired and your toner warranty is void. "
    "To restore service call our support line at +1 202 555 0143 today or visit http://spam.example.test/renew to pay "
    "the renewal fee in bitcoin. Failure to act within 24 hours will disable printing for every office in the building. "
    "This is an automated message from the printer maintenance centre; reference number {ref}."
)


def spam(ref: str) -> bytes:
    return (b"\x1b%-12345X@PJL JOB NAME=\"notice\"\r\n@PJL ENTER LANGUAGE=PCL\r\n" + SPAM_TEXT.format(ref=ref).encode()
            + b"\r\n\x0c\x1b%-12345X")


@contextlib.asynccontextmanager
async def _postgres_database():
    """A fresh PostgreSQL database of this test's own (dropped after)."""
    name = f"honeyjet_fleet_{uuid.uuid4().hex[:10]}"
    admin = create_async_engine(PG_URL, isolation_level="AUTOCOMMIT")
    async with admin.connect() as conn:
        await conn.execute(text(f'CREATE DATABASE "{name}"'))
    base, _, _ = PG_URL.rpartition("/")
    try:
        yield f"{base}/{name}"
    finally:
        async with admin.connect() as conn:
            await conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        await admin.dispose()


@pytest.fixture(params=["sqlite"] + (["postgresql"] if PG_URL else []))
async def central_url(request, tmp_path):
    if request.param == "sqlite":
        yield f"sqlite+aiosqlite:///{tmp_path / 'central' / 'central.db'}"
        return
    async with _postgres_database() as url:
        yield url


class CollectorProcess:
    """The collector served in this loop, stoppable and restartable on the same port."""

    def __init__(self, url: str, data_dir: Path) -> None:
        self.url = url
        self.data_dir = data_dir
        self.port = free_port()
        self.settings = load_settings(env={}, overrides={"sensor": {"data_dir": str(data_dir)}})
        self._stop: asyncio.Event | None = None
        self._task: asyncio.Task | None = None

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def start(self) -> None:
        self._stop = asyncio.Event()
        ready = asyncio.get_running_loop().create_future()
        self._task = asyncio.create_task(serve(self.settings, database_url=self.url, data_dir=self.data_dir, bind="127.0.0.1",
                                               port=self.port, tls=None, stop=self._stop, ready=ready.set_result))
        done, _ = await asyncio.wait([ready, self._task], timeout=15, return_when=asyncio.FIRST_COMPLETED)
        assert ready in done, self._task.exception() if self._task.done() else "collector did not start"

    async def stop(self) -> None:
        assert self._stop is not None and self._task is not None
        self._stop.set()
        await asyncio.wait_for(self._task, 15)


async def _tokens(url: str, *names: str) -> dict[str, str]:
    db = Database(url)
    await db.open()
    try:
        book = TokenBook(db)
        return {name: await book.add(name) for name in names}
    finally:
        await db.close()


async def _central_uuids(url: str) -> dict[str, list[str]]:
    db = Database(url)
    await db.open()
    try:
        async with db.engine.connect() as conn:
            rows = (await conn.execute(text("SELECT sensor, event_uuid FROM events"))).all()
    finally:
        await db.close()
    out: dict[str, list[str]] = {}
    for sensor, event_uuid in rows:
        out.setdefault(sensor, []).append(event_uuid)
    return out


def _local_uuids(data_dir: Path) -> list[str]:
    with contextlib.closing(sqlite3.connect(data_dir / "honeyjet.db")) as conn:
        return [r[0] for r in conn.execute("SELECT event_uuid FROM events")]


def _fleet_settings(data_dir: Path, name: str, collector: CollectorProcess, token: str):
    return sensor_settings(
        data_dir,
        sensor={"name": name},
        forward={"enabled": True, "url": collector.base, "token": token, "interval": 0.1, "retry_max": 0.5, "batch": 50},
    )


async def _until(predicate, timeout: float = 30.0, step: float = 0.1):
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        value = await predicate()
        if value:
            return value
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"condition not met within {timeout} s")
        await asyncio.sleep(step)


async def _traffic(sensor, n: int) -> None:
    port = sensor.settings.listen_port(sensor.settings.pjl)
    for _ in range(n):
        reply = await exchange(port, b"\x1b%-12345X@PJL INFO ID\r\n\x1b%-12345X", until=b"\x0c")
        assert b"LaserJet" in reply


async def test_two_sensors_forward_every_event_exactly_once_across_a_collector_outage(central_url, tmp_path):
    collector = CollectorProcess(central_url, tmp_path / "central")
    tokens = await _tokens(central_url, "sensor-a", "sensor-b")
    await collector.start()
    dirs = {name: tmp_path / name for name in tokens}
    async with running(_fleet_settings(dirs["sensor-a"], "sensor-a", collector, tokens["sensor-a"])) as a, \
            running(_fleet_settings(dirs["sensor-b"], "sensor-b", collector, tokens["sensor-b"])) as b:
        await _traffic(a, 3)
        await _traffic(b, 2)
        # near-identical spam on each sensor: two campaigns locally, one centrally
        await exchange(a.settings.listen_port(a.settings.pjl), spam("A-1001"))
        await exchange(b.settings.listen_port(b.settings.pjl), spam("A-1002"))

        async def both_arrived():
            central = await _central_uuids(central_url)
            return all(set(_local_uuids(d)) <= set(central.get(name, [])) and _local_uuids(d) for name, d in dirs.items())

        await _until(both_arrived)
        # the job file came with its event, byte for byte
        job_sha = [ev for ev in map(orjson.loads, (dirs["sensor-a"] / "log" / "honeyjet.json").read_bytes().splitlines())
                   if ev["eventid"] == "honeyjet.job.captured"][0]["shasum"]

        async def job_file_arrived():
            return (tmp_path / "central" / "artifacts" / job_sha).is_file()

        await _until(job_file_arrived)
        analyses = await _until(lambda: _central_campaigns(central_url, 2))
        assert len(set(analyses.values())) == 1, analyses
        local = {}
        for name, d in dirs.items():
            for line in (d / "log" / "honeyjet.json").read_bytes().splitlines():
                ev = orjson.loads(line)
                if ev["eventid"] == "honeyjet.job.analyzed":
                    local[name] = ev["campaign"]
        assert len(set(local.values())) == 2, local
        assert (tmp_path / "central" / "artifacts" / job_sha).read_bytes() == (dirs["sensor-a"] / "artifacts" / job_sha).read_bytes()

        # the collector goes away; the sensors keep serving and keep everything
        await collector.stop()
        await _traffic(a, 4)
        await _traffic(b, 4)

        async def backlog():
            await asyncio.sleep(0.3)
            return a.forwarder.pending > 0 and b.forwarder.pending > 0 and a.forwarder.counters["failures"] > 0

        await _until(backlog)
        offline = await _central_uuids(central_url)
        assert not set(_local_uuids(dirs["sensor-a"])) <= set(offline["sensor-a"])

        await collector.start()
        await _until(both_arrived)
        # a sensor that lost its cursor (crash between the collector's answer and the cursor write) re-sends all
        before = await _central_uuids(central_url)
        a.forwarder.cursor = 0
        a.forwarder.wake()
        await _until(lambda: _sent_all_again(a))
        assert await _central_uuids(central_url) == before
    # both sensors stopped (their last events were pushed at stop): exactly once, nothing missing
    central = await _central_uuids(central_url)
    await collector.stop()
    for name, d in dirs.items():
        local = _local_uuids(d)
        assert sorted(central[name]) == sorted(local), name
        assert len(central[name]) == len(set(central[name]))
    assert set(central) == {"sensor-a", "sensor-b", "fleet"}  # "fleet": the collector's fleet verdict
    db = Database(central_url)
    await db.open()
    async with db.engine.connect() as conn:
        judged = {r[0] for r in await conn.execute(text("SELECT DISTINCT sensor FROM verdicts"))}
        sessions = {r[0] for r in await conn.execute(text("SELECT DISTINCT sensor FROM sessions"))}
    await db.close()
    assert judged == sessions == {"sensor-a", "sensor-b"}
    # one fleet verdict: 127.0.0.1 was seen by both sensors
    db = Database(central_url)
    await db.open()
    async with db.engine.connect() as conn:
        rows = [orjson.loads(r[0]) if isinstance(r[0], (str, bytes)) else r[0] for r in await conn.execute(
            text("SELECT data FROM events WHERE eventid = 'honeyjet.verdict.source' AND sensor = 'fleet'"))]
    fleet_rows = await db.source_rows("127.0.0.1")
    await db.close()
    assert len(rows) == 1 and rows[0]["sensors"] == ["sensor-a", "sensor-b"] and rows[0]["rules"] == ["HJ-FLEET-001"]
    assert rows[0]["src_ip"] == "127.0.0.1" and rows[0]["severity"] in ("medium", "high", "critical")
    assert any(r["sensor"] == "fleet" and r["rules"] == ["HJ-FLEET-001"] for r in fleet_rows)


async def _central_campaigns(url: str, n: int) -> dict[str, str] | None:
    db = Database(url)
    await db.open()
    try:
        async with db.engine.connect() as conn:
            rows = (await conn.execute(text("SELECT shasum, campaign FROM job_analyses"))).all()
    finally:
        await db.close()
    return {sha: campaign for sha, campaign in rows} if len(rows) >= n else None


async def _sent_all_again(sensor) -> bool:
    await asyncio.sleep(0.1)
    return sensor.forwarder.cursor > 0 and sensor.forwarder.pending == 0


async def test_collector_refuses_bad_tokens_and_makes_the_token_name_authoritative(central_url, tmp_path):
    collector = CollectorProcess(central_url, tmp_path / "central")
    tokens = await _tokens(central_url, "sensor-a")
    await collector.start()
    try:
        ev = {"eventid": "honeyjet.session.connect", "event_uuid": "ab" * 16, "timestamp": "2026-11-27T10:00:00.000000Z",
              "sensor": "someone-else", "session": "00112233aabbccdd", "protocol": "pjl", "src_ip": "192.0.2.9", "src_port": 1234,
              "dst_ip": "192.0.2.1", "dst_port": 9100, "message": "connect"}
        body = gzip.compress(orjson.dumps(ev) + b"\nnot json\n" + orjson.dumps({"eventid": "x"}) + b"\n")
        async with aiohttp.ClientSession() as http:
            headers = {"Content-Encoding": "gzip"}
            for auth in ({}, {"Authorization": "Bearer hjt_wrongwrongwrongwrongwrong"}, {"Authorization": f"Basic {tokens['sensor-a']}"}):
                async with http.post(f"{collector.base}/api/v1/events", data=body, headers={**headers, **auth}) as resp:
                    assert resp.status == 401
                    assert "Server" not in resp.headers
            good = {**headers, "Authorization": f"Bearer {tokens['sensor-a']}"}
            for _ in range(2):  # twice: stored once
                async with http.post(f"{collector.base}/api/v1/events", data=body, headers=good) as resp:
                    assert resp.status == 200
                    assert await resp.json() == {"received": 1, "stored": 1, "rejected": 2}
            # a gzip bomb beyond collector.max_request_bytes is refused
            bomb = gzip.compress(b"\n" * (collector.settings.collector.max_request_bytes + 1))
            async with http.post(f"{collector.base}/api/v1/events", data=bomb, headers=good) as resp:
                assert resp.status == 413
            # an artifact must match its name
            auth = {"Authorization": good["Authorization"]}
            async with http.put(f"{collector.base}/api/v1/artifacts/{'0' * 64}", data=b"hello", headers=auth) as resp:
                assert resp.status == 400
            async with http.post(f"{collector.base}/api/v1/artifacts/missing", json={"shasums": ["0" * 64, "../x"]}, headers=auth) as resp:
                assert (await resp.json()) == {"missing": ["0" * 64]}
        assert await _central_uuids(central_url) == {"sensor-a": ["ab" * 16]}

        # revoked: refused within the token cache's lifetime
        db = Database(central_url)
        await db.open()
        assert await TokenBook(db).revoke("sensor-a")
        await db.close()
        await asyncio.sleep(5.5)
        async with aiohttp.ClientSession() as http:
            async with http.post(f"{collector.base}/api/v1/events", data=body, headers=good) as resp:
                assert resp.status == 401
    finally:
        await collector.stop()


def test_token_commands_and_startup_errors(tmp_path):
    db_url = f"sqlite+aiosqlite:///{tmp_path / 'c.db'}"
    cmd = [sys.executable, "-m", "honeyjet", "collector", "--data-dir", str(tmp_path), "--database-url", db_url]
    added = subprocess.run(cmd + ["token", "add", "dmz-1"], capture_output=True, text=True, timeout=60)
    assert added.returncode == 0, added.stderr
    assert added.stdout.startswith("hjt_") and len(added.stdout.strip()) > 40
    again = subprocess.run(cmd + ["token", "add", "dmz-1"], capture_output=True, text=True, timeout=60)
    assert again.returncode == 2 and "revoke it first" in again.stderr and "Traceback" not in again.stderr
    listed = subprocess.run(cmd + ["token", "list"], capture_output=True, text=True, timeout=60)
    assert "dmz-1" in listed.stdout and "active" in listed.stdout and added.stdout.strip() not in listed.stdout
    bad = subprocess.run(cmd + ["token", "add", "../evil"], capture_output=True, text=True, timeout=60)
    assert bad.returncode == 2 and "sensor name" in bad.stderr
    revoked = subprocess.run(cmd + ["token", "revoke", "dmz-1"], capture_output=True, text=True, timeout=60)
    assert revoked.returncode == 0 and "revoked" in revoked.stdout
    off_loopback = subprocess.run(cmd + ["--bind", "0.0.0.0"], capture_output=True, text=True, timeout=60)
    assert off_loopback.returncode == 2 and "collector.bind" in off_loopback.stderr


def test_forward_settings_errors_name_the_key(tmp_path):
    env = {**os.environ, "HONEYJET_FORWARD__ENABLED": "true", "HONEYJET_FORWARD__URL": "ftp://x", "HONEYJET_FORWARD__TOKEN": "t" * 20}
    run = [sys.executable, "-m", "honeyjet", "run", "--data-dir", str(tmp_path), "--bind", "127.0.0.1", "--port-offset", str(free_offset())]
    out = subprocess.run(run, capture_output=True, text=True, timeout=60, env={**env, "HONEYJET_SENSOR__USER": ""})
    assert out.returncode == 2 and "forward.url" in out.stderr and "Traceback" not in out.stderr
    env["HONEYJET_FORWARD__URL"] = "http://127.0.0.1:1"
    env["HONEYJET_FORWARD__TOKEN"] = ""
    out = subprocess.run(run, capture_output=True, text=True, timeout=60, env={**env, "HONEYJET_SENSOR__USER": ""})
    assert out.returncode == 2 and "forward.token" in out.stderr and "Traceback" not in out.stderr


def _self_signed(tmp_path: Path) -> tuple[Path, Path]:
    cert, key = tmp_path / "collector.pem", tmp_path / "collector.key"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(key), "-out", str(cert), "-days", "2",
                    "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1"], check=True, capture_output=True, timeout=60)
    return cert, key


async def test_forwarding_over_tls_verifies_the_collector(tmp_path):
    from honeyjet.tlsutil import server_context

    cert, key = _self_signed(tmp_path)
    url = f"sqlite+aiosqlite:///{tmp_path / 'central.db'}"
    tokens = await _tokens(url, "tls-sensor")
    collector = CollectorProcess(url, tmp_path / "central")
    stop = asyncio.Event()
    ready = asyncio.get_running_loop().create_future()
    task = asyncio.create_task(serve(collector.settings, database_url=url, data_dir=collector.data_dir, bind="127.0.0.1", port=collector.port,
                                     tls=server_context(cert, key), stop=stop, ready=ready.set_result))
    await asyncio.wait_for(ready, 15)
    base = f"https://127.0.0.1:{collector.port}"
    try:
        trusting = sensor_settings(tmp_path / "s1", sensor={"name": "tls-sensor"},
                                   forward={"enabled": True, "url": base, "token": tokens["tls-sensor"], "ca_file": str(cert), "interval": 0.1})
        async with running(trusting) as s:
            await _traffic(s, 1)

            async def arrived():
                return set(_local_uuids(tmp_path / "s1")) <= set((await _central_uuids(url)).get("tls-sensor", []))

            await _until(arrived)
        # a sensor that does not trust the certificate sends nothing (and keeps everything)
        doubting = sensor_settings(tmp_path / "s2", sensor={"name": "tls-sensor"},
                                   forward={"enabled": True, "url": base, "token": tokens["tls-sensor"], "interval": 0.1, "retry_max": 0.2})
        async with running(doubting) as s:
            await _traffic(s, 1)

            async def refused():
                await asyncio.sleep(0.2)
                return s.forwarder.counters["failures"] > 0 and s.forwarder.pending > 0

            await _until(refused)
        assert not set(_local_uuids(tmp_path / "s2")) & set((await _central_uuids(url))["tls-sensor"])
    finally:
        stop.set()
        await asyncio.wait_for(task, 15)


async def test_batches_the_collector_finds_too_large_are_split(tmp_path):
    url = f"sqlite+aiosqlite:///{tmp_path / 'central.db'}"
    tokens = await _tokens(url, "big")
    collector = CollectorProcess(url, tmp_path / "central")
    collector.settings = load_settings(env={}, overrides={"sensor": {"data_dir": str(tmp_path / "central")},
                                                          "collector": {"max_request_bytes": 65536}})
    await collector.start()
    try:
        settings = _fleet_settings(tmp_path / "s", "big", collector, tokens["big"])
        settings = settings.model_copy(update={"forward": settings.forward.model_copy(update={"interval": 2.0})})
        async with running(settings) as s:
            # 160 long PJL lines: ~230 KB of events (arguments are kept to 1 KiB each), over the collector's 64 KiB
            lines = b"".join(b"@PJL COMMENT " + os.urandom(600).hex().encode() + b"\r\n" for _ in range(160))
            await exchange(s.settings.listen_port(s.settings.pjl), b"\x1b%-12345X" + lines + b"\x1b%-12345X")

            async def arrived():
                local = set(_local_uuids(tmp_path / "s"))
                return len(local) > 160 and local <= set((await _central_uuids(url)).get("big", []))

            await _until(arrived)
            size = (tmp_path / "s" / "log" / "honeyjet.json").stat().st_size
            assert size > 3 * 65536, size  # the events really were larger than one request may be
            assert s.forwarder.counters["splits"] >= 1 and s.forwarder.counters["oversize"] == 0
    finally:
        await collector.stop()


def _scrape(port: int) -> dict[str, float]:
    import urllib.request

    from prometheus_client.parser import text_string_to_metric_families

    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as resp:
        text_ = resp.read().decode()
    return {s.name: s.value for fam in text_string_to_metric_families(text_) for s in fam.samples if not s.labels}


async def test_collector_and_sensor_commands_with_an_outage_seen_on_metrics(tmp_path):
    """`honeyjet collector` and `honeyjet run` as real processes: forwarding, the backlog on
    /metrics while the collector is down, catching up after it returns, clean SIGTERM stops."""
    import signal

    central = f"sqlite+aiosqlite:///{tmp_path / 'central.db'}"
    token = (await _tokens(central, "proc-sensor"))["proc-sensor"]
    cport, offset = free_port(), free_offset()
    collector_cmd = [sys.executable, "-m", "honeyjet", "collector", "--data-dir", str(tmp_path / "central"), "--database-url", central,
                     "--port", str(cport)]
    env = {**os.environ, "HONEYJET_SENSOR__NAME": "proc-sensor", "HONEYJET_SENSOR__USER": "", "HONEYJET_FORWARD__ENABLED": "true",
           "HONEYJET_FORWARD__URL": f"http://127.0.0.1:{cport}", "HONEYJET_FORWARD__TOKEN": token, "HONEYJET_FORWARD__INTERVAL": "0.2",
           "HONEYJET_FORWARD__RETRY_MAX": "0.5", "HONEYJET_METRICS__ENABLED": "true", "HONEYJET_ANALYSIS__RENDER_TIMEOUT": "3"}
    sensor_cmd = [sys.executable, "-m", "honeyjet", "run", "--data-dir", str(tmp_path / "sensor"), "--bind", "127.0.0.1",
                  "--port-offset", str(offset)]
    pjl, mport = 9100 + offset, 9464 + offset

    async def start(cmd, **kw):
        return await asyncio.create_subprocess_exec(*cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, **kw)

    async def listening(port: int):
        try:
            _, w = await asyncio.open_connection("127.0.0.1", port)
        except OSError:
            return False
        w.close()
        return True

    async def stop(proc) -> bytes:
        proc.send_signal(signal.SIGTERM)
        _, err = await asyncio.wait_for(proc.communicate(), 30)
        assert proc.returncode == 0, err.decode()[-2000:]
        return err

    collector = await start(collector_cmd)
    sensor = await start(sensor_cmd, env=env)
    try:
        await _until(lambda: listening(cport))
        await _until(lambda: listening(pjl))
        reply = await exchange(pjl, b"\x1b%-12345X@PJL INFO ID\r\n\x1b%-12345X", until=b"\x0c")
        assert b"LaserJet" in reply

        async def caught_up():
            local = set(_local_uuids(tmp_path / "sensor"))
            return len(local) >= 3 and local <= set((await _central_uuids(central)).get("proc-sensor", []))

        await _until(caught_up)
        await stop(collector)
        for _ in range(3):
            await exchange(pjl, b"@PJL INFO STATUS\r\n", until=b"\x0c")

        async def backlog():
            m = await asyncio.to_thread(_scrape, mport)
            return m.get("honeyjet_forward_pending_events", 0) > 0 and m.get("honeyjet_forward_connected", 1) == 0

        await _until(backlog)
        collector = await start(collector_cmd)
        await _until(caught_up)

        async def drained():
            m = await asyncio.to_thread(_scrape, mport)
            return m.get("honeyjet_forward_pending_events", 1) == 0 and m.get("honeyjet_forward_lag_seconds", 1) == 0

        await _until(drained)
    finally:
        for proc in (sensor, collector):
            if proc.returncode is None:
                await stop(proc)
    central_uuids = (await _central_uuids(central))["proc-sensor"]
    assert sorted(central_uuids) == sorted(_local_uuids(tmp_path / "sensor"))  # the stop event too


_JSONISH = st.recursive(
    st.none() | st.booleans() | st.integers(min_value=-2**63, max_value=2**63 - 1) | st.floats(allow_nan=False) | st.text(max_size=40),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=12), inner, max_size=4),
    max_leaves=12,
)
_FIELDS = ["session", "src_ip", "src_port", "dst_port", "protocol", "shasum", "size", "classes", "severity", "rules", "simhash",
           "campaign", "previews", "indicators", "duration_ms", "bytes_in", "reason", "jobs", "sessions", "attribution", "first_seen"]
_IDS = ["honeyjet.session.connect", "honeyjet.session.closed", "honeyjet.job.captured", "honeyjet.job.analyzed",
        "honeyjet.verdict.session", "honeyjet.verdict.source", "honeyjet.file.stored", "honeyjet.nonsense"]


@hsettings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(st.tuples(st.sampled_from(_IDS), st.dictionaries(st.sampled_from(_FIELDS), _JSONISH, max_size=8),
                          st.sampled_from(["2026-11-27T10:00:00.000000Z", "garbage", "9999-99-99T99:99:99Z", ""])),
                min_size=1, max_size=12),
       st.binary(max_size=200))
def test_collector_stores_whatever_a_compromised_sensor_sends_without_failing(central_url, tmp_path, events, noise):
    """Any field values behind a valid event envelope, and any junk lines: the batch is stored or
    rejected line by line, never a failed request (which would make the sensor retry forever).
    On SQLite and (in CI) PostgreSQL, which refuses NUL characters and out-of-range integers."""
    settings = load_settings(env={}, overrides={"sensor": {"data_dir": str(tmp_path)}})
    prefix = uuid.uuid4().hex[:16]

    async def go():
        db = Database(central_url)
        await db.open()
        try:
            from honeyjet.fleet.collector import Collector

            collector = Collector(settings, db, data_dir=tmp_path)
            lines = [orjson.dumps({**fields, "eventid": eid, "event_uuid": f"{prefix}{i:016x}", "timestamp": ts})
                     for i, (eid, fields, ts) in enumerate(events)]
            parsed, rejected = collector._parse(b"\n".join(lines + [noise.replace(b"\n", b" ")]), "fuzz-sensor")
            stored = await db.write_events(parsed)
            assert stored == len(parsed) and all(ev["sensor"] == "fuzz-sensor" for ev in parsed)
            async with db.engine.connect() as conn:
                n = (await conn.execute(text("SELECT count(*) FROM events WHERE event_uuid LIKE :p"), {"p": prefix + "%"})).scalar()
            assert n == len({ev["event_uuid"] for ev in parsed})
        finally:
            await db.close()

    asyncio.run(go())


def test_fleet_sources_judge_once_per_window_when_enough_sensors_saw_a_source():
    from honeyjet.fleet.collector import FleetSources

    now = [1_000_000.0]
    fleet = FleetSources(sensors=3, window=100.0, max_sources=100, clock=lambda: now[0])

    def verdict(sensor: str, src: str = "203.0.113.5", severity: str = "low", **kw):
        return {"eventid": "honeyjet.verdict.session", "sensor": sensor, "src_ip": src, "severity": severity,
                "classes": ["pjl_info_enumeration"], **kw}

    assert fleet.observe(verdict("a")) is None
    assert fleet.observe(verdict("a")) is None  # the same sensor again
    assert fleet.observe(verdict("b", rerun=True)) is None  # re-judged history does not count
    assert fleet.observe(verdict("b", src="not-an-ip")) is None
    assert fleet.observe({"eventid": "honeyjet.session.connect", "sensor": "c", "src_ip": "203.0.113.5"}) is None
    assert fleet.observe(verdict("b", severity="high")) is None
    got = fleet.observe(verdict("c"))
    assert got is not None and got["sensors"] == ["a", "b", "c"] and got["severity"] == "high" and got["sessions"] == 4
    assert got["sensor"] == "fleet" and got["classes"] == ["pjl_info_enumeration"] and len(got["event_uuid"]) == 32
    assert fleet.observe(verdict("d")) is None  # once per window
    now[0] += 101  # a, b, c (and d) are now older than the window
    assert fleet.observe(verdict("a")) is None and fleet.observe(verdict("b")) is None
    again = fleet.observe(verdict("c"))
    assert again is not None and again["severity"] == "medium"  # at least medium: one actor across networks
    small = FleetSources(sensors=2, window=100.0, max_sources=100, clock=lambda: now[0])
    for i in range(300):
        small.observe(verdict("a", src=f"198.51.100.{i % 256}" if i < 256 else f"2001:db8::{i:x}"))
    assert len(small._sources) == 100  # bounded


async def test_the_collector_alerts_on_fleet_verdicts(tmp_path):
    from aiohttp import web

    got: list[dict] = []

    async def hook(request):
        got.append(await request.json())
        return web.Response(text="ok")

    app = web.Application()
    app.router.add_post("/hook", hook)
    runner = web.AppRunner(app)
    await runner.setup()
    hport = free_port()
    await web.TCPSite(runner, "127.0.0.1", hport).start()
    url = f"sqlite+aiosqlite:///{tmp_path / 'central.db'}"
    tokens = await _tokens(url, "east", "west")
    collector = CollectorProcess(url, tmp_path / "central")
    collector.settings = load_settings(env={}, overrides={
        "sensor": {"data_dir": str(tmp_path / "central"), "name": "central"},
        "alerts": {"enabled": True, "min_severity": "medium"},
        "webhook": {"enabled": True, "url": f"http://127.0.0.1:{hport}/hook"}})
    await collector.start()
    try:
        async with aiohttp.ClientSession() as http:
            for i, name in enumerate(["east", "west", "east"]):
                ev = {"eventid": "honeyjet.verdict.session", "event_uuid": f"{i:032x}", "timestamp": "2026-11-27T10:00:00.000000Z",
                      "session": f"{i:016x}", "protocol": "pjl", "src_ip": "192.0.2.77", "src_port": 5000, "dst_ip": "192.0.2.1",
                      "dst_port": 9100, "message": "v", "classes": ["pjl_info_enumeration"], "severity": "low", "rules": ["HJ-PJL-001"],
                      "rule_names": ["x"], "service": "pjl", "attribution": []}
                async with http.post(f"{collector.base}/api/v1/events", data=orjson.dumps(ev),
                                     headers={"Authorization": f"Bearer {tokens[name]}"}) as resp:
                    assert resp.status == 200

        async def alerted():
            return len(got) >= 1

        await _until(alerted, timeout=10)
        await asyncio.sleep(0.3)
        assert len(got) == 1  # the third verdict (east again) is within the window: no second fleet verdict
        alert = got[0]
        assert alert["kind"] == "source" and alert["src_ip"] == "192.0.2.77" and alert["sensor"] == "fleet"
        assert alert["rules"] == ["HJ-FLEET-001"] and alert["severity"] == "medium"
    finally:
        await collector.stop()
        await runner.cleanup()


def test_the_fleet_name_is_reserved(tmp_path):
    cmd = [sys.executable, "-m", "honeyjet", "collector", "--data-dir", str(tmp_path), "--database-url", f"sqlite+aiosqlite:///{tmp_path / 'c.db'}",
           "token", "add", "fleet"]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=60)
    assert out.returncode == 2 and "reserved" in out.stderr
