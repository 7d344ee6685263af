"""The console in central mode: one store holding three sensors' events (a fleet's collector database).

The events are written through the normal path (``Database.write_events``): sessions,
print jobs, their analyses (one campaign spread over two sensors), session and source
verdicts. Source ``MULTI`` visits sensors ``alpha`` and ``beta``, source ``SINGLE`` only
the third sensor, whose operator-chosen name is itself hostile markup; ``beta``'s HTTP
session carries a hostile User-Agent. ``sensor_tokens`` registers the three (``beta``
revoked) and a fourth that never sent anything. The console is driven with aiohttp's
test client, on SQLite always and on PostgreSQL when ``HONEYJET_TEST_POSTGRES_URL`` is set.

PostgreSQL is one shared database for the console tests (see test_console_data): this
module adds its rows under its own sensor names, addresses and hashes and deletes them
afterwards, instead of wiping the schema under the other modules' population.
"""

from __future__ import annotations

import asyncio
import hashlib
import io
import json
import re
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from html import unescape
from pathlib import Path
from typing import Any, AsyncIterator, Iterator
from urllib.parse import quote, urlencode

import pytest
from aiohttp.test_utils import TestClient

import honeyjet.console.app as console_app
from honeyjet.config import load_settings
from honeyjet.console.auth import add_user
from honeyjet.console.cli import database_url, serve
from honeyjet.console.cli import main as console_main
from honeyjet.store.database import Database
from test_console import _client, login
from test_console_data import PASSWORD, PG_URL, USER, XSS, _event, console_settings

UTC = timezone.utc
ALPHA = "alpha-hq"
BETA = "beta-branch"
HOSTILE = 'gamma"><script>alert(2)</script>'  # a sensor name is the operator's, but escaped all the same
SILENT = "delta-spare"  # registered, never heard from
SENSORS = (ALPHA, BETA, HOSTILE)
MULTI = "203.0.113.50"  # seen by alpha and beta
SINGLE = "203.0.113.60"  # seen by the hostile-named sensor only
OLD = "203.0.113.70"  # alpha, ten days ago: outside every 7-day count
UA = XSS + " curl/8.0"
CAMPAIGN = "c-5e1f00d5ca1e"  # alpha's and beta's jobs
LONE_CAMPAIGN = "c-0000900d0001"  # the hostile-named sensor's job
SHA = {name: hashlib.sha256(name.encode()).hexdigest() for name in ("alpha-job", "beta-job", "gamma-job")}
SID = {"a1": "ce0a1fa00001", "a0": "ce0a1fa00000", "b1": "ce0b0b000001", "b2": "ce0b0b000002", "g1": "ce0c0c000001"}
ESCAPED_HOSTILE = "gamma&#34;&gt;&lt;script&gt;alert(2)&lt;/script&gt;"
ESCAPED_XSS = "&lt;script&gt;alert(1)&lt;/script&gt;"


def _ev(eventid: str, ts: datetime, sid: str, sensor: str, src: str, **fields: Any) -> dict[str, Any]:
    return _event(eventid, ts, sid, sensor=sensor, src_ip=src, **fields)


def _session(ts: datetime, sid: str, sensor: str, src: str, protocol: str, port: int, *, jobs: int = 0,
             middle: list[dict[str, Any]] | None = None) -> list[dict[str, Any]]:
    """connect, the events in between, closed: one session's events."""
    ident = {"protocol": protocol, "dst_port": port}
    closed = {"duration_ms": 3000, "bytes_in": 200, "bytes_out": 80, "reason": "eof", "jobs": jobs, "head": "",
              "transcript_shasum": None, "transcript_size": 0, "transcript_truncated": False}
    return ([_ev("honeyjet.session.connect", ts, sid, sensor, src, **ident)] + (middle or [])
            + [_ev("honeyjet.session.closed", ts + timedelta(seconds=3), sid, sensor, src, **ident, **closed)])


def _job(ts: datetime, sid: str, sensor: str, src: str, sha: str, campaign: str, name: str) -> list[dict[str, Any]]:
    """job.captured and its job.analyzed (the analyzer's fields as the sensor emits them)."""
    captured = _ev("honeyjet.job.captured", ts, sid, sensor, src, job=3, language="pjl", name=name, user="", pages=1,
                   ended_by="uel", shasum=sha, size=120, stored_size=120, truncated=False, duplicate=False)
    analyzed = _ev("honeyjet.job.analyzed", ts + timedelta(seconds=10), sid, sensor, src, job=3, shasum=sha, language="text",
                   text="pay now", text_chars=7, text_source="plain", simhash="00ff00ff00ff00ff", campaign=campaign,
                   indicators=[], previews=[], errors=[])
    return [captured, analyzed]


def _verdict(ts: datetime, sid: str, sensor: str, src: str, cls: str, severity: str, rule: str, attribution: list[str]) -> dict[str, Any]:
    return _ev("honeyjet.verdict.session", ts, sid, sensor, src, classes=[cls], severity=severity, rules=[rule],
               rule_names=[rule], service="pjl", attribution=attribution)


def _source_verdict(ts: datetime, sensor: str, src: str, sessions: int, campaigns: list[str]) -> dict[str, Any]:
    return _ev("honeyjet.verdict.source", ts, "", sensor, src, classes=["printer_spam_job"], severity="high",
               rules=["HJ-SRC-005"], rule_names=["Escalation after reconnaissance"], new_rules=["HJ-SRC-005"], sessions=sessions,
               services=["pjl"], session_classes=["printer_spam_job"], sequence=[], first_seen="", jobs=1, campaigns=campaigns,
               attribution=[])


def fleet_events(now: datetime) -> list[dict[str, Any]]:
    t = now - timedelta(minutes=20)
    http = _ev("honeyjet.http.request", t + timedelta(minutes=2, seconds=1), SID["b1"], BETA, MULTI, protocol="http", dst_port=80,
               page="index", method="GET", target="/", version="HTTP/1.1", headers=[["User-Agent", UA]], user_agent=UA,
               host="printer", body_size=0, body_truncated=False, status=200, malformed="", raw="")
    return [
        # alpha: MULTI prints the campaign's job; OLD came ten days ago
        *_session(t, SID["a1"], ALPHA, MULTI, "pjl", 9100, jobs=1,
                  middle=_job(t + timedelta(seconds=1), SID["a1"], ALPHA, MULTI, SHA["alpha-job"], CAMPAIGN, "invoice")),
        _verdict(t + timedelta(seconds=20), SID["a1"], ALPHA, MULTI, "printer_spam_job", "medium", "HJ-JOB-020", []),
        _source_verdict(t + timedelta(seconds=21), ALPHA, MULTI, 1, [CAMPAIGN]),
        *_session(now - timedelta(days=10), SID["a0"], ALPHA, OLD, "pjl", 9100),
        _verdict(now - timedelta(days=10) + timedelta(seconds=5), SID["a0"], ALPHA, OLD, "pjl_info_enumeration", "low", "HJ-PJL-002", []),
        # beta: MULTI again, over HTTP with a hostile User-Agent, then the same campaign over PJL
        *_session(t + timedelta(minutes=2), SID["b1"], BETA, MULTI, "http", 80, middle=[http]),
        _verdict(t + timedelta(minutes=2, seconds=20), SID["b1"], BETA, MULTI, "python_urllib_ews_check", "low", "HJ-NET-003",
                 ["user-agent:" + UA]),
        *_session(t + timedelta(minutes=4), SID["b2"], BETA, MULTI, "pjl", 9100, jobs=1,
                  middle=_job(t + timedelta(minutes=4, seconds=1), SID["b2"], BETA, MULTI, SHA["beta-job"], CAMPAIGN, "invoice 2")),
        _verdict(t + timedelta(minutes=4, seconds=20), SID["b2"], BETA, MULTI, "printer_spam_job", "high", "HJ-JOB-020", []),
        _source_verdict(t + timedelta(minutes=4, seconds=21), BETA, MULTI, 2, [CAMPAIGN]),
        # the hostile-named sensor: SINGLE, IPP, a job of its own campaign
        *_session(t + timedelta(minutes=6), SID["g1"], HOSTILE, SINGLE, "ipp", 631, jobs=1,
                  middle=_job(t + timedelta(minutes=6, seconds=1), SID["g1"], HOSTILE, SINGLE, SHA["gamma-job"], LONE_CAMPAIGN, "report")),
        _verdict(t + timedelta(minutes=6, seconds=20), SID["g1"], HOSTILE, SINGLE, "benign_status_query", "info", "HJ-IPP-001", []),
    ]


def token_rows(now: datetime) -> list[dict[str, Any]]:
    def row(name: str, events: int, last_seen: datetime | None, revoked: datetime | None = None) -> dict[str, Any]:
        return {"name": name, "token_hash": hashlib.sha256(b"token " + name.encode()).hexdigest(), "created": now - timedelta(days=30),
                "revoked": revoked, "last_seen": last_seen, "events": events}

    return [row(ALPHA, 1200, now - timedelta(minutes=1)), row(BETA, 340, now - timedelta(minutes=4), revoked=now - timedelta(minutes=3)),
            row(HOSTILE, 77, now - timedelta(minutes=3)), row(SILENT, 0, None)]


async def _cleanup(url: str) -> None:
    """Delete this module's rows (PostgreSQL is shared with the other console tests)."""
    from sqlalchemy import delete

    from honeyjet.store import database as d

    db = Database(url)
    await db.open()
    try:
        async with db.engine.begin() as conn:
            for table in (d.events_table, d.sessions_table, d.jobs_table, d.verdicts_table, d.sources_table):
                await conn.execute(delete(table).where(table.c.sensor.in_(SENSORS)))
            await conn.execute(delete(d.job_analyses_table).where(d.job_analyses_table.c.shasum.in_(SHA.values())))
            await conn.execute(delete(d.artifacts_table).where(d.artifacts_table.c.shasum.in_(SHA.values())))
            await conn.execute(delete(d.sensor_tokens_table).where(d.sensor_tokens_table.c.name.in_([*SENSORS, SILENT])))
    finally:
        await db.close()


async def _populate(url: str, now: datetime) -> None:
    from honeyjet.store.database import sensor_tokens_table

    await _cleanup(url)  # leftovers of an interrupted run
    db = Database(url)
    await db.open()
    try:
        assert await db.write_events(fleet_events(now)) == len(fleet_events(now))
        async with db.engine.begin() as conn:
            await conn.execute(sensor_tokens_table.insert(), token_rows(now))
    finally:
        await db.close()


@dataclass
class Fleet:
    url: str
    data_dir: Path
    now: datetime


@pytest.fixture(scope="module", params=["sqlite"] + (["postgresql"] if PG_URL else []))
def fleet(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Fleet]:
    data_dir = tmp_path_factory.mktemp("central") / "data"
    data_dir.mkdir(parents=True)
    url = PG_URL if request.param == "postgresql" else f"sqlite+aiosqlite:///{data_dir / 'central.db'}"
    # the central store as an operator file names it (`honeyjet console --central` reads collector.database_url)
    (data_dir / "honeyjet.toml").write_text(f'[collector]\ndatabase_url = "{url}"\n', encoding="utf-8")
    now = datetime.now(UTC)
    asyncio.run(_populate(url, now))
    add_user(data_dir / "console-users.toml", USER, PASSWORD, n=2**10)
    try:
        yield Fleet(url, data_dir, now)
    finally:
        asyncio.run(_cleanup(url))


@asynccontextmanager
async def logged_in(fleet: Fleet, *, central: bool) -> AsyncIterator[TestClient]:
    """A console over the fleet's store (the test client of test_console), logged in."""
    client, db = await _client(fleet.data_dir, central=central, url=fleet.url)
    try:
        assert (await login(client)).status == 303
        yield client
    finally:
        await client.close()
        await db.close()


@pytest.fixture
async def central(fleet: Fleet) -> AsyncIterator[TestClient]:
    async with logged_in(fleet, central=True) as client:
        yield client


@pytest.fixture
async def single(fleet: Fleet) -> AsyncIterator[TestClient]:
    async with logged_in(fleet, central=False) as client:
        yield client


def q(**params: str) -> str:
    return "?" + urlencode(params)


def listed_sessions(html: str) -> list[str]:
    return [m.split("?")[0] for m in re.findall(r'class="sid" href="/sessions/([^"]+)"', html)]


def row_of(html: str, marker: str) -> str:
    """The table row containing ``marker``."""
    m = re.search(r"<tr[^>]*>(?:(?!</tr>).)*?" + re.escape(marker) + r".*?</tr>", html, re.S)
    assert m, f"no row with {marker!r}"
    return m.group(0)


def cells(row: str) -> list[str]:
    return [unescape(re.sub(r"<[^>]+>", "", c)).strip() for c in re.findall(r"<td[^>]*>(.*?)</td>", row, re.S)]


# -- the sensor filter ---------------------------------------------------------------------


async def test_sensor_filter_narrows_sessions_and_survives_pagination(central: TestClient, monkeypatch) -> None:
    everything = listed_sessions(await (await central.get("/sessions")).text())
    assert {SID["a1"], SID["b1"], SID["b2"], SID["g1"]} <= set(everything)
    assert SID["a0"] not in everything  # ten days old, outside the default 7 days
    page = await (await central.get("/sessions" + q(sensor=BETA))).text()
    assert set(listed_sessions(page)) == {SID["b1"], SID["b2"]}
    assert "<th>sensor</th>" in page and f'<td class="sensor">{BETA}</td>' in page
    # the picker (inside the filter form here) lists the fleet, the chosen one selected, the hostile name escaped
    picker = re.search(r'<select name="sensor">.*?</select>', page, re.S).group(0)
    for name in (ALPHA, SILENT):
        assert f'<option value="{name}" >{name}</option>' in picker
    assert f'<option value="{BETA}" selected>{BETA}</option>' in picker
    assert f'<option value="{ESCAPED_HOSTILE}" >{ESCAPED_HOSTILE}</option>' in picker
    assert set(listed_sessions(await (await central.get("/sessions" + q(sensor=ALPHA, range="all"))).text())) == {SID["a1"], SID["a0"]}
    assert listed_sessions(await (await central.get("/sessions" + q(sensor=HOSTILE))).text()) == [SID["g1"]]
    assert listed_sessions(await (await central.get("/sessions" + q(sensor="no-such-sensor"))).text()) == []
    # combined with the other filters, and links keep it
    assert listed_sessions(await (await central.get("/sessions" + q(sensor=BETA, service="http"))).text()) == [SID["b1"]]
    assert f'href="/sources/{MULTI}?sensor={BETA}"' in page and f'href="/sessions/{SID["b1"]}?sensor={BETA}"' in page
    assert f'href="/jobs?sensor={BETA}"' in page and f'href="/sources?sensor={BETA}"' in page  # the navigation
    # keyset pagination keeps the sensor
    monkeypatch.setattr(console_app, "PAGE_SIZE", 1)
    seen: list[str] = []
    url = "/sessions" + q(sensor=BETA)
    for _ in range(4):
        html = await (await central.get(url)).text()
        seen += listed_sessions(html)
        m = re.search(r'href="([^"]+)"[^>]*id="older"', html)
        if not m:
            break
        url = unescape(m.group(1))
        assert f"sensor={BETA}" in url
    assert seen == [SID["b2"], SID["b1"]]


async def test_sensors_page_lists_the_fleet_with_counts(central: TestClient, fleet: Fleet) -> None:
    html = await (await central.get("/sensors")).text()
    table = re.search(r'<table class="fleet" id="sensors">.*?</table>', html, re.S).group(0)
    midnight = fleet.now.replace(hour=0, minute=0, second=0, microsecond=0)
    first = fleet.now - timedelta(minutes=20)  # every recent session started between this and +6 minutes

    def today(*offsets: int) -> str:
        return str(sum(first + timedelta(minutes=m) >= midnight for m in offsets))

    by_name = {cells(r)[0]: cells(r) for r in re.findall(r"<tr[^>]*>.*?</tr>", table, re.S)[1:]}
    # sensor, status, registered, last seen, events received, sessions today, sessions 7 days, jobs 7 days, top class
    assert set(by_name) >= {ALPHA, BETA, HOSTILE, SILENT}
    alpha, beta, gamma, silent = by_name[ALPHA], by_name[BETA], by_name[HOSTILE], by_name[SILENT]
    assert alpha[1] == "active" and alpha[4:8] == ["1200", today(0), "1", "1"] and alpha[8] == "printer_spam_job (1)"
    assert beta[1].startswith("revoked ") and beta[4:8] == ["340", today(2, 4), "2", "1"]
    assert beta[8] in ("printer_spam_job (1)", "python_urllib_ews_check (1)")
    assert gamma[1] == "active" and gamma[4:8] == ["77", today(6), "1", "1"] and gamma[8] == "benign_status_query (1)"
    assert silent[1] == "active" and silent[3] == "" and silent[4:8] == ["0", "0", "0", "0"]
    # last seen: the collector's contact, newer than the last session
    assert alpha[3] == (fleet.now - timedelta(minutes=1)).strftime("%Y-%m-%d %H:%M:%S")
    # the hostile name: text in the cell, URL-encoded in its links
    assert ESCAPED_HOSTILE in table and HOSTILE not in html
    assert f'href="/?{urlencode({"sensor": HOSTILE})}"' in table
    # the overview shows the same per-sensor counts and the revoked flag
    overview = await (await central.get("/")).text()
    panel = re.search(r'<section class="panel" id="fleet">.*?</section>', overview, re.S).group(0)
    assert cells(row_of(panel, f">{BETA}<"))[1:] == [today(2, 4), "2", (fleet.now - timedelta(minutes=4)).strftime("%Y-%m-%d %H:%M:%S"),
                                                     "revoked"]
    assert cells(row_of(panel, f">{SILENT}<"))[1:3] == ["0", "0"]


async def test_overview_counts_and_chart_honour_the_sensor(central: TestClient) -> None:
    def chart(html: str) -> dict[str, Any]:
        return json.loads(re.search(r'<script type="application/json" id="chart-data">(.*?)</script>', html, re.S).group(1))

    def week(html: str) -> dict[str, str]:
        card = re.search(r"<h2>Last 7 days</h2>.*?</dl>", html, re.S).group(0)
        return dict(re.findall(r"<dt>([^<]+)</dt><dd class=\"n\">(\d+)</dd>", card))

    beta = await (await central.get("/" + q(sensor=BETA))).text()
    assert sum(chart(beta)["sessions"]) == 2 and chart(beta)["severities"]["high"] == 1 and chart(beta)["severities"]["low"] == 1
    assert week(beta) == {"Sessions": "2", "Sources": "1", "Print jobs": "1", "Events": "10"}
    top = re.search(r"<h2>Top sources</h2>.*?</table>", beta, re.S).group(0)
    assert f">{MULTI}</a></td><td class=\"n\">2</td>" in top and SINGLE not in top
    assert "python_urllib_ews_check" in beta and "benign_status_query" not in beta  # top classes of beta only
    assert f'data-feed="/api/feed?sensor={BETA}"' in beta and 'data-sensor-column="1"' in beta
    gamma = await (await central.get("/" + q(sensor=HOSTILE))).text()
    assert sum(chart(gamma)["sessions"]) == 1 and week(gamma)["Sessions"] == "1"
    everyone = await (await central.get("/")).text()
    assert sum(chart(everyone)["sessions"]) >= 4  # every sensor (PostgreSQL may hold the other console tests' rows)
    assert 'data-feed="/api/feed"' in everyone


async def test_feed_streams_only_the_chosen_sensors_events(central: TestClient) -> None:
    resp = await central.get("/api/feed" + q(sensor=BETA))
    got: list[dict[str, Any]] = []

    async def read() -> None:
        while len(got) < 10:  # beta's ten events: two sessions, an HTTP request, a job, its analysis, three verdicts
            line = (await resp.content.readline()).decode()
            if line.startswith("data: "):
                got.append(json.loads(line[6:]))

    await asyncio.wait_for(read(), 5)
    resp.close()
    assert {e["sensor"] for e in got} == {BETA}
    assert {e["session"] for e in got} == {SID["b1"], SID["b2"], ""}


# -- cross-sensor correlation ----------------------------------------------------------------


async def test_a_source_seen_by_two_sensors(central: TestClient) -> None:
    html = await (await central.get("/sources" + q(range="all"))).text()
    table = re.search(r'<table class="sources">.*?</table>', html, re.S).group(0)
    multi = cells(row_of(table, f">{MULTI}</a>"))
    assert multi[1] == f"2: {ALPHA}, {BETA}" and multi[2] == "high" and multi[3] == "3"
    assert cells(row_of(table, f">{SINGLE}</a>"))[1] == f"1: {HOSTILE}"
    # multi-sensor sources first, whatever their verdicts
    order = re.findall(r'<a href="/sources/([^"?]+)', table)
    assert order.index(MULTI) < order.index(SINGLE) and order.index(MULTI) < order.index(OLD)
    assert all(cells(row_of(table, f">{ip}</a>"))[1].startswith(("2", "3")) for ip in order[: order.index(MULTI)])
    only = await (await central.get("/sources" + q(range="all", multi="1"))).text()
    assert f">{MULTI}</a>" in only and f">{SINGLE}</a>" not in only and f">{OLD}</a>" not in only
    # the sensor filter keeps the sources that sensor saw; the correlation columns stay fleet-wide
    beta = await (await central.get("/sources" + q(sensor=BETA))).text()
    assert cells(row_of(beta, f">{MULTI}</a>"))[1] == f"2: {ALPHA}, {BETA}" and f">{SINGLE}</a>" not in beta
    assert '<input type="hidden" name="range" value="30d">' in beta  # the picker keeps the page's filters
    # the source page: per-sensor sessions, each a link to the source on that sensor
    page = await (await central.get(f"/sources/{MULTI}")).text()
    seen = re.search(r'<section class="panel" id="seen-by">.*?</section>', page, re.S).group(0)
    assert "Seen by 2 sensor(s)" in seen
    assert cells(row_of(seen, f">{BETA}</a>"))[1] == "2" and cells(row_of(seen, f">{BETA}</a>"))[4] == "high"
    assert cells(row_of(seen, f">{ALPHA}</a>"))[1] == "1" and cells(row_of(seen, f">{ALPHA}</a>"))[4] == "medium"
    assert f'href="/sources/{MULTI}?sensor={ALPHA}"' in seen
    assert set(re.findall(r'href="/sessions/(ce0[^"?]+)', page)) == {SID["a1"], SID["b1"], SID["b2"]}
    assert "sensor " + ALPHA in page and "sensor " + BETA in page  # both sensors' source verdicts
    # on one sensor: its sessions, its jobs and its verdict; the per-sensor table still shows both
    on_alpha = await (await central.get(f"/sources/{MULTI}" + q(sensor=ALPHA))).text()
    assert set(re.findall(r'href="/sessions/(ce0[^"?]+)', on_alpha)) == {SID["a1"]}
    assert "<dt>sessions</dt><dd>1</dd>" in on_alpha and "sensor " + BETA not in on_alpha
    assert "Seen by 2 sensor(s)" in on_alpha and f'<tr class="on"><td class="sensor"><a href="/sources/{MULTI}?sensor={ALPHA}">' in on_alpha
    assert (await central.get("/sources/203.0.113.99")).status == 404


async def test_a_campaign_shows_its_sensors(central: TestClient) -> None:
    html = await (await central.get("/campaigns")).text()
    row = cells(row_of(html, f"<code>{CAMPAIGN}</code>"))
    assert row[1] == f"2: {ALPHA}, {BETA}" and row[2:4] == ["1", "2"]  # sensors; one source; two jobs
    lone = cells(row_of(html, f"<code>{LONE_CAMPAIGN}</code>"))
    assert lone[1] == f"1: {HOSTILE}"
    page = await (await central.get("/campaigns" + q(c=CAMPAIGN))).text()
    seen = re.search(r'<section class="panel" id="campaign-sensors">.*?</section>', page, re.S).group(0)
    assert "Seen on 2 sensor(s)" in seen
    assert cells(row_of(seen, f">{ALPHA}</a>"))[1:3] == ["1", "1"] and cells(row_of(seen, f">{BETA}</a>"))[1:3] == ["1", "1"]
    assert page.count('<article class="job">') == 2 and f"on <span class=\"sensor\">{BETA}</span>" in page
    # the sensor filter: the campaigns seen on a sensor, and that sensor's jobs of one campaign
    gamma = await (await central.get("/campaigns" + q(sensor=HOSTILE))).text()
    assert LONE_CAMPAIGN in gamma and CAMPAIGN not in gamma
    on_beta = await (await central.get("/campaigns" + q(c=CAMPAIGN, sensor=BETA))).text()
    assert on_beta.count('<article class="job">') == 1 and "Seen on 2 sensor(s)" in on_beta
    assert f'<input type="hidden" name="c" value="{CAMPAIGN}">' in on_beta
    assert (await central.get("/campaigns" + q(c="c-nosuchcampaign"))).status == 404


async def test_session_detail_jobs_and_rules_on_one_sensor(central: TestClient) -> None:
    page = await (await central.get(f"/sessions/{SID['g1']}")).text()
    href = "/sessions?" + urlencode({"sensor": HOSTILE, "range": "all"}).replace("&", "&amp;")
    assert f'<dt>sensor</dt><dd><a class="sensor" href="{href}">{ESCAPED_HOSTILE}</a></dd>' in page
    jobs = await (await central.get("/jobs" + q(sensor=ALPHA))).text()
    assert jobs.count('<article class="job">') == 1 and "invoice" in jobs and "report" not in jobs
    rules = await (await central.get("/rules" + q(sensor=HOSTILE))).text()
    assert re.search(r"<code>HJ-IPP-001</code>.*?</tr>", rules, re.S).group(0).count('<td class="n">1</td>') == 1
    assert '<td class="n">1</td>' not in re.search(r"<code>HJ-JOB-020</code>.*?</tr>", rules, re.S).group(0)


# -- escaping ----------------------------------------------------------------------------------


async def test_hostile_sensor_name_and_user_agent_stay_text(central: TestClient) -> None:
    pages = ["/", "/sensors", "/sessions", "/jobs", "/campaigns", "/sources", "/rules", f"/sources/{MULTI}", f"/sources/{SINGLE}",
             f"/sessions/{SID['b1']}", f"/sessions/{SID['g1']}", "/campaigns" + q(c=LONE_CAMPAIGN)]
    pages += [p + ("&" if "?" in p else "?") + urlencode({"sensor": HOSTILE}) for p in pages]
    for path in pages:
        resp = await central.get(path)
        assert resp.status == 200, path
        html = await resp.text()
        assert "<script>alert" not in html and HOSTILE not in html and XSS not in html, path
        for tag in re.findall(r"<script\b[^>]*>", html):
            assert 'src="/static/' in tag or 'type="application/json"' in tag, (path, tag)
    # shown as text where it belongs
    assert ESCAPED_HOSTILE in await (await central.get("/sessions" + q(sensor=HOSTILE))).text()
    ua_page = await (await central.get(f"/sessions/{SID['b1']}")).text()
    assert "user-agent:&#34;&gt;" + ESCAPED_XSS + " curl/8.0" in ua_page
    # in a link, only ever URL-encoded
    sources = await (await central.get("/sources" + q(range="all"))).text()
    assert ESCAPED_HOSTILE in sources
    campaigns = await (await central.get("/campaigns")).text()
    assert f'href="/campaigns?sensor={quote(HOSTILE, safe="")}"' in campaigns
    # a sensor filter of control characters or an endless name is no filter (and is not echoed)
    for bad in ("a\x00b", "x" * 200):
        html = await (await central.get("/sessions" + q(sensor=bad))).text()
        assert {SID["a1"], SID["b1"], SID["g1"]} <= set(listed_sessions(html))


# -- single-sensor mode ---------------------------------------------------------------------------


async def test_single_mode_looks_as_before_but_takes_the_filter(single: TestClient) -> None:
    html = await (await single.get("/sessions")).text()
    assert "<th>sensor</th>" not in html and 'class="sensor-pick"' not in html and 'href="/sensors"' not in html
    assert 'name="sensor"' not in html
    overview = await (await single.get("/")).text()
    assert 'id="fleet"' not in overview and 'data-sensor-column' not in overview
    narrowed = await (await single.get("/sessions" + q(sensor=BETA))).text()
    assert set(listed_sessions(narrowed)) == {SID["b1"], SID["b2"]}
    assert f'<input type="hidden" name="sensor" value="{BETA}">' in narrowed  # the filter form keeps it
    assert f'Sensor <b>{BETA}</b> only' in narrowed and "<th>sensor</th>" not in narrowed
    sources = await (await single.get("/sources")).text()
    assert "<th>sensors</th>" not in sources and f">{MULTI}</a>" in sources and f">{OLD}</a>" in sources  # all time, as before
    source = await (await single.get(f"/sources/{MULTI}")).text()
    assert 'id="seen-by"' not in source
    campaigns = await (await single.get("/campaigns")).text()
    assert "<th>sensors</th>" not in campaigns and CAMPAIGN in campaigns


# -- the command line ----------------------------------------------------------------------------


def test_database_url_choice(tmp_path: Path) -> None:
    base = {"sensor": {"data_dir": str(tmp_path)}}
    plain = load_settings(env={}, overrides=base)
    assert database_url(plain) == database_url(plain, central=True) == plain.database_url
    assert plain.database_url.startswith("sqlite+aiosqlite:///")
    fleet_cfg = load_settings(env={}, overrides={**base, "store": {"database_url": "sqlite+aiosqlite:///local.db"},
                                                  "collector": {"database_url": "postgresql+asyncpg://c@db/fleet"}})
    assert database_url(fleet_cfg) == "sqlite+aiosqlite:///local.db"
    assert database_url(fleet_cfg, central=True) == "postgresql+asyncpg://c@db/fleet"
    assert database_url(fleet_cfg, central=True, override="sqlite+aiosqlite:///x.db") == "sqlite+aiosqlite:///x.db"
    assert database_url(fleet_cfg, override="sqlite+aiosqlite:///x.db") == "sqlite+aiosqlite:///x.db"


async def test_serve_central_reads_the_collectors_database(fleet: Fleet) -> None:
    """`honeyjet console --central` with the operator file of the fixture: collector.database_url, not the sensor's SQLite."""
    import aiohttp

    from conftest import free_port

    port = free_port()
    stop = asyncio.Event()
    settings = console_settings(fleet.data_dir)
    assert settings.collector.database_url == fleet.url and settings.database_url != fleet.url
    task = asyncio.create_task(serve(settings, bind="127.0.0.1", port=port, tls=None, secure_cookies=False, stop=stop, central=True))
    base = f"http://127.0.0.1:{port}"
    try:
        async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as http:
            for _ in range(100):
                try:
                    async with http.get(base + "/login") as resp:
                        token = re.search(r'name="csrf_token" value="([^"]+)"', await resp.text()).group(1)
                        break
                except aiohttp.ClientConnectionError:
                    await asyncio.sleep(0.05)
            else:
                pytest.fail("console did not start")
            async with http.post(base + "/login", data={"username": USER, "password": PASSWORD, "csrf_token": token}) as resp:
                assert resp.status == 200
            async with http.get(base + "/sensors") as resp:
                html = await resp.text()
                assert resp.status == 200 and f">{ALPHA}</a>" in html and ESCAPED_HOSTILE in html
    finally:
        stop.set()
        await asyncio.wait_for(task, 10)


def test_cli_bad_database_url_is_one_line_without_the_password(tmp_path: Path, monkeypatch, capsys) -> None:
    data = tmp_path / "data"
    add_user(data / "console-users.toml", USER, PASSWORD, n=2**10)
    monkeypatch.setattr("sys.stdin", io.StringIO(""))
    rc = console_main(["--data-dir", str(data), "--central", "--database-url", "pg://admin:s3cr3t-pw@db.example", "--port", "1"])
    err = capsys.readouterr().err
    assert rc == 1 and "s3cr3t-pw" not in err and err.startswith("honeyjet: console database:") and err.count("\n") == 1


def test_report_of_one_sensor_of_the_fleet(fleet: Fleet, tmp_path: Path) -> None:
    from honeyjet.cli import main

    def report(*args: str) -> str:
        out = tmp_path / "report.out"
        assert main(["report", "--data-dir", str(fleet.data_dir), "--central", "--database-url", fleet.url, "--since", "7d",
                     *args, "-o", str(out)]) == 0
        return out.read_text(encoding="utf-8")

    def counts(html: str) -> dict[str, int]:
        return {k: int(v) for v, k in re.findall(r"<b>(\d+)</b>(sessions|sources|print jobs)", html)}

    beta = report("--sensor", BETA)
    assert counts(beta) == {"sessions": 2, "sources": 1, "print jobs": 1}
    assert f'sensor <b id="sensor">{BETA}</b>' in beta and SINGLE not in beta and "benign_status_query" not in beta
    hostile = report("--sensor", HOSTILE)
    assert counts(hostile) == {"sessions": 1, "sources": 1, "print jobs": 1}
    assert f'<b id="sensor">{ESCAPED_HOSTILE}</b>' in hostile and HOSTILE not in hostile and "<script>" not in hostile
    md = report("--sensor", HOSTILE, "--format", "md")
    assert "Sensor: gamma\"&gt;&lt;script&gt;alert\\(2\\)&lt;/script&gt;" in md and "<script>" not in md
    assert "**1** sessions from **1** sources, **1** print jobs" in md
    everyone = counts(report())
    assert everyone["sessions"] >= 4 and everyone["print jobs"] >= 3


@pytest.mark.realclient
def test_central_console_in_chromium(fleet: Fleet) -> None:
    """The picker submits itself (console.js, no inline script), the live feed follows the chosen sensor and
    shows a sensor column, the hostile sensor name stays text, and the CSP is never violated."""
    from pathlib import Path as _Path

    from test_console_browser import CHROMIUM, ConsoleThread, wait_true

    from playwright import sync_api

    from helpers import require

    require(_Path(CHROMIUM).exists(), f"{CHROMIUM} missing (apt-get install chromium)")
    problems: list[str] = []
    with ConsoleThread(fleet.data_dir, url=fleet.url, central=True) as console, sync_api.sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"])
        try:
            page = browser.new_page()
            page.on("dialog", lambda dialog: (problems.append("dialog " + dialog.message), dialog.dismiss()))
            page.on("pageerror", lambda exc: problems.append(f"page error: {exc}"))
            page.on("console", lambda msg: problems.append(msg.text) if "Content Security Policy" in msg.text else None)
            base = console.url
            page.goto(base + "/login")
            page.fill("input[name=username]", USER)
            page.fill("input[name=password]", PASSWORD)
            page.click("button[type=submit]")
            page.wait_for_url(base + "/")
            page.select_option("header select[name=sensor]", BETA)  # no button press: the script submits
            page.wait_for_url(base + "/" + q(sensor=BETA))
            wait_true(page, "document.querySelectorAll('#feed-rows tr').length === 10")
            sensors = page.evaluate("Array.from(document.querySelectorAll('#feed-rows tr')).map(r => r.cells[1].textContent)")
            assert set(sensors) == {BETA}
            page.click("nav >> text=Sources")
            page.wait_for_url(base + "/sources" + q(sensor=BETA))
            page.goto(base + "/sensors")
            assert page.locator("#sensors td.sensor").filter(has_text=HOSTILE).count() == 1  # shown as the text it is
            page.select_option("header select[name=sensor]", HOSTILE)
            page.wait_for_url(base + "/sensors" + q(sensor=HOSTILE))
            assert page.locator("h1").inner_text() == "Sensors"
            page.click("nav >> text=Sessions")
            wait_true(page, f"document.querySelectorAll('a.sid[href^=\"/sessions/{SID['g1']}\"]').length === 1")
        finally:
            browser.close()
    assert problems == [], problems
