"""Shared data for the console tests: a database filled by a real in-process sensor.

One attacker (127.0.0.1) puts ``"><script>alert(1)</script>``, a ``javascript:`` URL
and ``{{7*7}}`` into a PJL job name, ``RDYMSG`` and the print job's text (port 9100),
an HTTP ``User-Agent`` (port 80) and an LPD job title (port 515). A second source
(198.51.100.23) is written through ``DatabaseSink``: a session with two verdicts (the
newer one must win), the same print job as the first source and a source verdict.
"""

from __future__ import annotations

import asyncio
import os
import re
import shutil
import uuid
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest

from conftest import exchange, running, sensor_settings
from test_store_database import _wipe_postgres
from honeyjet.config import load_settings
from honeyjet.console.auth import add_user
from honeyjet.store.database import Database, DatabaseSink

XSS = '"><script>alert(1)</script>'
JS_URL = "javascript:alert(1)"
TEMPLATE = "{{7*7}}"
OTHER_SOURCE = "198.51.100.23"
OTHER_SESSION = "feedface0001"
USER = "alice"
PASSWORD = "correct horse battery staple"


def _pjl_job() -> bytes:
    return (
        "\x1b%-12345X@PJL JOB NAME=\"" + XSS + "\"\r\n"
        "@PJL RDYMSG DISPLAY=\"" + XSS + TEMPLATE + "\"\r\n"
        "@PJL ENTER LANGUAGE=TEXT\r\n"
        "Hello " + XSS + " " + JS_URL + " " + TEMPLATE + " pay at http://evil.example/pay\r\n"
        "\x1b%-12345X"
    ).encode()


def _http_request() -> bytes:
    return ("GET /index.html HTTP/1.1\r\nHost: printer\r\nUser-Agent: " + XSS + " " + JS_URL + " " + TEMPLATE + "\r\n\r\n").encode()


def _lpd_job() -> bytes:
    ctrl = ("Hattacker\nPmallory\nJ" + XSS + TEMPLATE + "\nldfA001attacker\nN" + JS_URL + "\n").encode()
    data = ("LPD job " + XSS + " " + TEMPLATE + "\n").encode()
    return (b"\x02lp\n" + b"\x02" + str(len(ctrl)).encode() + b" cfA001attacker\n" + ctrl + b"\x00"
            + b"\x03" + str(len(data)).encode() + b" dfA001attacker\n" + data + b"\x00")


def _event(eventid: str, ts: datetime, session: str, **fields: Any) -> dict[str, Any]:
    return {
        "eventid": eventid, "event_uuid": uuid.uuid4().hex, "timestamp": ts.strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
        "sensor": "test", "session": session, "protocol": "pjl", "src_ip": OTHER_SOURCE, "src_port": 40000,
        "dst_ip": "192.0.2.1", "dst_port": 9100, "message": f"{eventid} (synthetic)", **fields,
    }


PG_URL = os.environ.get("HONEYJET_TEST_POSTGRES_URL", "")


async def populate(data_dir: Path, database_url: str = "") -> dict[str, Any]:
    if database_url:
        await _wipe_postgres(database_url)
        data_dir.mkdir(parents=True, exist_ok=True)
        # the operator file names the database, so the console finds it as an operator's would
        (data_dir / "honeyjet.toml").write_text(f'[store]\ndatabase_url = "{database_url}"\n', encoding="utf-8")
    settings = sensor_settings(data_dir, **({"store": {"database_url": database_url}} if database_url else {}))
    async with running(settings):
        await exchange(settings.listen_port(settings.pjl), _pjl_job())
        await exchange(settings.listen_port(settings.http), _http_request())
        await exchange(settings.listen_port(settings.lpd), _lpd_job(), read_timeout=1.0)
    # the sensor is stopped: analysis and the database sink have drained
    db = Database(settings.database_url)
    await db.open()
    try:
        async with db.engine.connect() as conn:
            from sqlalchemy import select

            from honeyjet.store.database import events_table as EV
            from honeyjet.store.database import sessions_table as SES

            sessions = {r.protocol: r.session for r in await conn.execute(select(SES.c.session, SES.c.protocol))}
            analysed = [r.data for r in await conn.execute(select(EV.c.data).where(EV.c.eventid == "honeyjet.job.analyzed"))]
        pjl_report = next(d for d in analysed if d["session"] == sessions["pjl"])
        now = datetime.now(timezone.utc) - timedelta(minutes=5)
        sid = OTHER_SESSION
        shasum = pjl_report["shasum"]
        synthetic = [
            _event("honeyjet.session.connect", now, sid),
            _event("honeyjet.job.captured", now + timedelta(seconds=1), sid, job=7, language="text", name="", user="",
                   pages=1, ended_by="eof", shasum=shasum, size=93, stored_size=93, truncated=False, duplicate=True),
            _event("honeyjet.session.closed", now + timedelta(seconds=2), sid, duration_ms=2000, bytes_in=93, bytes_out=0,
                   reason="eof", jobs=1, head="", transcript_shasum=None, transcript_size=0, transcript_truncated=False),
            _event("honeyjet.verdict.session", now + timedelta(seconds=3), sid, classes=["benign_status_query"], severity="low",
                   rules=["HJ-JOB-090"], rule_names=["Print job"], service="pjl", attribution=[]),
            _event("honeyjet.job.analyzed", now + timedelta(seconds=4), sid, **{k: v for k, v in pjl_report.items() if k in (
                "shasum", "language", "text", "indicators", "simhash", "campaign", "previews", "errors")}, job=7),
            _event("honeyjet.verdict.session", now + timedelta(seconds=5), sid, classes=["firmware_upload"], severity="critical",
                   rules=["HJ-JOB-001"], rule_names=["Firmware upload"], service="pjl", attribution=["user:" + XSS]),
            _event("honeyjet.verdict.source", now + timedelta(seconds=6), "", classes=["printer_spam_job"], severity="medium",
                   rules=["HJ-SRC-005"], rule_names=["Escalation after reconnaissance"], new_rules=["HJ-SRC-005"], sessions=1,
                   services=["pjl"], session_classes=["firmware_upload"], sequence=["pjl:firmware_upload"], first_seen="",
                   jobs=1, campaigns=[pjl_report.get("campaign", "")], attribution=[JS_URL]),
        ]
        sink = DatabaseSink(db, close_database=False)
        await sink.start()
        for ev in synthetic:
            sink.write(ev)
        await sink.flush()
        await sink.stop()
    finally:
        await db.close()
    add_user(data_dir / "console-users.toml", USER, PASSWORD, n=2**10)  # cheap scrypt for tests
    return {"sessions": sessions, "pjl_report": pjl_report}


_POPULATED: dict[str, dict[str, Any]] = {}


@pytest.fixture(scope="session", params=["sqlite"] + (["postgresql"] if PG_URL else []))
def console_data(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    # This module is a plugin of the other console tests and a test file itself, so pytest may
    # set this fixture up more than once per run: populate once per backend, or a second
    # population would wipe the one PostgreSQL database under tests still using the first.
    if request.param not in _POPULATED:
        data_dir = tmp_path_factory.mktemp("console") / "data"
        url = PG_URL if request.param == "postgresql" else ""
        info = asyncio.run(populate(data_dir, url))
        _POPULATED[request.param] = {"data_dir": data_dir, "url": url, **info}
    return _POPULATED[request.param]


async def _clear_triage(url: str) -> None:
    from sqlalchemy import text
    from sqlalchemy.ext.asyncio import create_async_engine

    engine = create_async_engine(url)
    async with engine.begin() as conn:
        await conn.execute(text("DROP TABLE IF EXISTS triage"))
    await engine.dispose()


@pytest.fixture
def console_dir(console_data: dict[str, Any], tmp_path: Path) -> Path:
    """A private copy of the populated data directory (triage writes stay per test)."""
    target = tmp_path / "data"
    shutil.copytree(console_data["data_dir"], target)
    if console_data["url"]:  # one PostgreSQL database for all: start each test without triage
        asyncio.run(_clear_triage(console_data["url"]))
    return target


def console_settings(data_dir: Path) -> Any:
    """Settings as ``honeyjet console --data-dir`` reads them (``<data>/honeyjet.toml`` included)."""
    return load_settings(env={}, overrides={"sensor": {"data_dir": str(data_dir)}})


def csrf_from(html: str) -> str:
    m = re.search(r'name="csrf_token" value="([^"]+)"', html)
    assert m, "no CSRF field on the page"
    return m.group(1)


def test_population_has_the_three_attacker_sessions(console_data: dict[str, Any]) -> None:
    assert set(console_data["sessions"]) >= {"pjl", "http", "lpd"}
    assert console_data["pjl_report"]["previews"]
