"""The analyst console over a database filled by a real sensor (aiohttp test client)."""

from __future__ import annotations

import asyncio
import io
import json
import os
import re
import stat
import uuid
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, AsyncIterator

import pytest
from aiohttp.test_utils import TestClient, TestServer

import honeyjet.console.app as console_app
from honeyjet.console.app import CSP, build_app, json_for_html, printable, transcript_records
from honeyjet.console.auth import LoginLimiter, SessionStore, Users, add_user, hash_password, load_users, verify_password
from honeyjet.console.cli import main as console_main
from honeyjet.store.database import Database, DatabaseSink
from test_console_data import (
    JS_URL,
    OTHER_SESSION,
    OTHER_SOURCE,
    PASSWORD,
    TEMPLATE,
    USER,
    XSS,
    console_settings,
    csrf_from,
)

pytest_plugins = ["test_console_data"]  # the populated database fixtures

PAGES = ["/campaigns", "/sources", "/", "/sessions", "/jobs", "/rules", f"/sources/{OTHER_SOURCE}", f"/sessions/{OTHER_SESSION}"]
ESCAPED = "&lt;script&gt;alert(1)&lt;/script&gt;"


async def _client(data_dir: Path, *, url: str = "", **kwargs: Any) -> tuple[TestClient, Database]:
    settings = console_settings(data_dir)
    db = Database(url or settings.database_url)
    await db.open()
    app = build_app(settings, database=db, data_dir=data_dir, secure_cookies=kwargs.pop("secure_cookies", False),
                    feed_poll=0.05, **kwargs)
    client = TestClient(TestServer(app, host="127.0.0.1"))
    await client.start_server()
    return client, db


@pytest.fixture
async def anon(console_dir: Path) -> AsyncIterator[TestClient]:
    client, db = await _client(console_dir)
    try:
        yield client
    finally:
        await client.close()
        await db.close()


async def login(client: TestClient, user: str = USER, password: str = PASSWORD) -> Any:
    page = await client.get("/login")
    token = csrf_from(await page.text())
    return await client.post("/login", data={"username": user, "password": password, "csrf_token": token}, allow_redirects=False)


@pytest.fixture
async def client(anon: TestClient) -> TestClient:
    resp = await login(anon)
    assert resp.status == 303
    return anon


async def page_csrf(client: TestClient, path: str = "/") -> str:
    return csrf_from(await (await client.get(path)).text())


# -- login required -------------------------------------------------------------------


async def test_every_page_redirects_and_every_api_answers_401_without_login(anon: TestClient, console_data) -> None:
    pjl = console_data["sessions"]["pjl"]
    for path in PAGES + [f"/sessions/{pjl}", "/sessions?severity=high", "/jobs?page=2"]:
        resp = await anon.get(path, allow_redirects=False)
        assert resp.status == 302 and resp.headers["Location"] == "/login", path
    sha = console_data["pjl_report"]["shasum"]
    preview = console_data["pjl_report"]["previews"][0]
    for path in ["/api/feed", f"/artifacts/{sha}", f"/previews/{preview}"]:
        resp = await anon.get(path, allow_redirects=False)
        assert resp.status == 401, path
        assert resp.headers["Content-Type"].startswith("text/plain")
    for path in [f"/triage/session/{pjl}", "/logout"]:
        resp = await anon.post(path, data={"status": "closed", "expected": "new"}, allow_redirects=False)
        assert resp.status == 401, path
    # an htmx request is told where to go instead of swapping the login page in
    resp = await anon.get("/sessions", headers={"HX-Request": "true"}, allow_redirects=False)
    assert resp.status == 401 and resp.headers["HX-Redirect"] == "/login"
    # static files and the login page are public
    assert (await anon.get("/static/console.js")).status == 200
    assert (await anon.get("/static/vendor/htmx/htmx.min.js")).status == 200
    assert (await anon.get("/login")).status == 200
    # a forged cookie is no session
    anon.session.cookie_jar.update_cookies({"hj_session": "x" * 43})
    assert (await anon.get("/", allow_redirects=False)).status == 302


async def test_login_good_and_bad_then_logout(anon: TestClient) -> None:
    bad = await login(anon, password="wrong password!!")
    assert bad.status == 401
    html = await bad.text()
    assert "Wrong user name or password." in html
    unknown = await login(anon, user="mallory")
    assert unknown.status == 401 and "Wrong user name or password." in await unknown.text()
    good = await login(anon)
    assert good.status == 303 and good.headers["Location"] == "/"
    cookie = good.headers["Set-Cookie"]
    assert "HttpOnly" in cookie and "SameSite=Strict" in cookie and "Path=/" in cookie
    for path in PAGES:
        resp = await anon.get(path)
        assert resp.status == 200, path
    token = await page_csrf(anon)
    # logging in again from the login page goes to the overview
    assert (await anon.get("/login", allow_redirects=False)).status == 302
    out = await anon.post("/logout", data={"csrf_token": token}, allow_redirects=False)
    assert out.status == 303 and out.headers["Location"] == "/login"
    assert (await anon.get("/", allow_redirects=False)).status == 302


async def test_login_needs_the_login_form_token(anon: TestClient) -> None:
    await anon.get("/login")
    resp = await anon.post("/login", data={"username": USER, "password": PASSWORD}, allow_redirects=False)
    assert resp.status == 403
    resp = await anon.post("/login", data={"username": USER, "password": PASSWORD, "csrf_token": "0" * 64}, allow_redirects=False)
    assert resp.status == 403
    resp = await anon.post("/login", data={"username": USER, "password": PASSWORD, "csrf_token": await page_csrf(anon, "/login")},
                           headers={"Origin": "https://evil.example"}, allow_redirects=False)
    assert resp.status == 403


async def test_login_starts_a_new_session_whatever_cookie_was_planted(anon: TestClient) -> None:
    planted = "A" * 43
    anon.session.cookie_jar.update_cookies({"hj_session": planted})
    resp = await login(anon)
    assert resp.status == 303
    assert resp.cookies["hj_session"].value != planted
    assert (await anon.get("/", cookies={"hj_session": planted}, allow_redirects=False)).status == 302


async def test_login_rate_limited_per_user_and_per_address(console_dir: Path) -> None:
    limiter = LoginLimiter(per_user=3, per_address=5, window=600)
    client, db = await _client(console_dir, limiter=limiter)
    try:
        for _ in range(3):
            assert (await login(client, password="not the password")).status == 401
        locked = await login(client)  # right password, but the name is locked
        assert locked.status == 429
        assert "Too many failed logins" in await locked.text()
        # other names from the same address: two more failures reach the address limit
        assert (await login(client, user="bob", password="xxxxxxxxxxxx")).status == 401
        assert (await login(client, user="carol", password="xxxxxxxxxxxx")).status == 401
        assert (await login(client, user="dave", password="xxxxxxxxxxxx")).status == 429
        assert limiter.lockouts == 2
    finally:
        await client.close()
        await db.close()


def test_login_limiter_window_expires() -> None:
    now = [1000.0]
    lim = LoginLimiter(per_user=2, per_address=100, window=60, clock=lambda: now[0])
    lim.failed("10.0.0.1", "Alice")
    lim.failed("10.0.0.2", "alice")
    assert lim.blocked("10.0.0.3", "ALICE")  # names compare case-insensitively
    now[0] += 61
    assert not lim.blocked("10.0.0.3", "alice")


async def test_secure_cookie_outside_loopback_plain_http(console_dir: Path) -> None:
    client, db = await _client(console_dir, secure_cookies=True)
    try:
        page = await client.get("/login")
        assert "Secure" in page.headers["Set-Cookie"] and "__Host-hj_login" in page.headers["Set-Cookie"]
        token = csrf_from(await page.text())
        resp = await client.post("/login", data={"username": USER, "password": PASSWORD, "csrf_token": token},
                                 cookies={"__Host-hj_login": page.cookies["__Host-hj_login"].value}, allow_redirects=False)
        assert resp.status == 303
        cookie = resp.headers["Set-Cookie"]
        assert cookie.startswith("__Host-hj_session=") and "Secure" in cookie and "HttpOnly" in cookie and "SameSite=Strict" in cookie
    finally:
        await client.close()
        await db.close()


def test_sessions_expire_when_idle_and_at_max_age() -> None:
    now = [0.0]
    store = SessionStore(idle_timeout=100, max_age=250, clock=lambda: now[0])
    token, sess = store.create("alice")
    now[0] = 90
    assert store.get(token) is sess
    now[0] = 180
    assert store.get(token) is sess  # used at 90: still within the idle timeout
    now[0] = 260
    assert store.get(token) is None  # past the absolute age
    token2, _ = store.create("alice")
    now[0] = 400
    assert store.get(token2) is None  # idle
    assert store.get("") is None and store.get("y" * 500) is None


# -- CSRF -----------------------------------------------------------------------------


async def test_state_changes_need_the_csrf_token(client: TestClient, console_data) -> None:
    sid = console_data["sessions"]["pjl"]
    form = {"status": "acknowledged", "expected": "new", "note": "x"}
    assert (await client.post(f"/triage/session/{sid}", data=form)).status == 403
    assert (await client.post(f"/triage/session/{sid}", data={**form, "csrf_token": "0" * 43})).status == 403
    assert (await client.post("/logout", data={})).status == 403
    token = await page_csrf(client)
    cross = await client.post(f"/triage/session/{sid}", data={**form, "csrf_token": token}, headers={"Origin": "https://evil.example"})
    assert cross.status == 403
    assert (await client.get(f"/sessions/{sid}")).status == 200  # still logged in, nothing changed
    assert "st-new" in await (await client.get(f"/sessions/{sid}")).text()
    # the header works as well as the form field
    ok = await client.post(f"/triage/session/{sid}", data=form, headers={"X-CSRF-Token": token, "HX-Request": "true"})
    assert ok.status == 200


# -- triage ---------------------------------------------------------------------------


async def test_triage_transitions_filters_and_conflicts(client: TestClient, console_data) -> None:
    sid = console_data["sessions"]["pjl"]
    token = await page_csrf(client)
    url = f"/triage/session/{sid}"

    async def move(expected: str, status: str, note: str = "", htmx: bool = False) -> Any:
        headers = {"HX-Request": "true"} if htmx else {}
        return await client.post(url, data={"csrf_token": token, "expected": expected, "status": status, "note": note},
                                 headers=headers, allow_redirects=False)

    resp = await move("new", "acknowledged", "looking into " + XSS, htmx=True)
    assert resp.status == 200
    frag = await resp.text()
    assert 'id="triage"' in frag and "acknowledged" in frag and USER in frag
    assert XSS not in frag and ESCAPED in frag
    page = await (await client.get(f"/sessions/{sid}")).text()
    assert "st-acknowledged" in page and "looking into" in page
    # listed under acknowledged, not under new
    ack = await (await client.get("/sessions?status=acknowledged")).text()
    assert sid in ack and OTHER_SESSION not in ack
    new = await (await client.get("/sessions?status=new")).text()
    assert sid not in new and OTHER_SESSION in new
    # a stale form (someone else moved it) is refused with the current state
    stale = await move("new", "closed", htmx=True)
    assert stale.status == 409 and "Someone changed this first" in await stale.text()
    # not a permitted transition
    assert (await move("acknowledged", "bogus")).status == 409
    closed = await move("acknowledged", "closed", "done")
    assert closed.status == 303 and closed.headers["Location"] == f"/sessions/{sid}"
    assert (await move("closed", "acknowledged")).status == 409  # only re-opening leaves closed
    assert (await move("closed", "new")).status == 303
    assert (await client.post("/triage/session/nosuchsession", data={"csrf_token": token, "expected": "new", "status": "closed"})).status == 404
    assert (await client.post("/triage/bogus/x", data={"csrf_token": token, "expected": "new", "status": "closed"})).status == 404
    # sources have their own status
    src = await client.post(f"/triage/source/{OTHER_SOURCE}", data={"csrf_token": token, "expected": "new", "status": "closed", "note": "n"},
                            allow_redirects=False)
    assert src.status == 303 and src.headers["Location"] == f"/sources/{OTHER_SOURCE}"
    assert "st-closed" in await (await client.get(f"/sources/{OTHER_SOURCE}")).text()


# -- lists and filters ------------------------------------------------------------------


async def test_session_filters(client: TestClient, console_data) -> None:
    s = console_data["sessions"]

    async def listed(query: str) -> set[str]:
        html = await (await client.get("/sessions?" + query)).text()
        return set(re.findall(r'class="sid" href="/sessions/([^"]+)"', html))

    everything = {s["pjl"], s["http"], s["lpd"], OTHER_SESSION}
    assert await listed("") >= everything
    assert await listed(f"source={OTHER_SOURCE}") == {OTHER_SESSION}
    assert await listed("service=lpd") == {s["lpd"]}
    assert await listed("port=9100") == {OTHER_SESSION}
    assert await listed("severity=critical") == {OTHER_SESSION}  # the newer verdict wins over "low"
    assert await listed("severity=low") == set()
    assert await listed("severity=medium") == {s["pjl"]}
    assert await listed("class=benign_print_job") == {s["lpd"]}
    assert await listed("class=firmware_upload&source=127.0.0.1") == set()
    assert await listed("range=1h") >= everything
    assert await listed("from=2000-01-01&to=2000-01-02") == set()
    # unknown values are ignored, not errors
    assert await listed("severity=bogus&class=%3Cscript%3E&port=99999&range=zz") >= everything
    # the htmx partial is just the rows
    part = await client.get("/sessions?service=lpd", headers={"HX-Request": "true", "HX-Target": "session-rows"})
    text = await part.text()
    assert text.lstrip().startswith('<div id="session-rows">') and "<html" not in text


async def test_session_pagination_is_keyset(client: TestClient, console_data, monkeypatch) -> None:
    monkeypatch.setattr(console_app, "PAGE_SIZE", 2)
    seen: list[str] = []
    url = "/sessions?range=all"
    for _ in range(5):
        html = await (await client.get(url)).text()
        ids = re.findall(r'class="sid" href="/sessions/([^"]+)"', html)
        assert len(ids) <= 2
        seen += ids
        m = re.search(r'href="([^"]+)"[^>]*id="older"', html)
        if not m:
            break
        url = m.group(1).replace("&amp;", "&")
    assert len(seen) == len(set(seen)) == 4


# -- pages ---------------------------------------------------------------------------


async def test_overview_counts_chart_and_tops(client: TestClient) -> None:
    html = await (await client.get("/")).text()
    m = re.search(r'<script type="application/json" id="chart-data">(.*?)</script>', html, re.S)
    data = json.loads(m.group(1))
    assert sum(data["sessions"]) == 4 and len(data["labels"]) == len(data["sessions"]) >= 168
    assert data["severities"]["critical"] == 1 and data["severities"]["medium"] == 1
    assert "127.0.0.1" in html and OTHER_SOURCE in html
    assert "HJ-PJL-020" in html and "Panel message changed" in html
    assert "firmware_upload" in html and "9100" in html
    assert '<canvas id="sessions-chart"' in html and 'id="feed-rows"' in html


async def test_session_detail_transcript_verdict_and_download(client: TestClient, console_data) -> None:
    sid = console_data["sessions"]["http"]
    html = await (await client.get(f"/sessions/{sid}")).text()
    assert 'class="rec dir-C"' in html and 'class="rec dir-S"' in html  # both directions, marked
    assert "C→" in html and "←S" in html
    assert "00000000  47 45 54 20" in html  # the hex view of "GET "
    assert "honeyjet.http.request" in html and "honeyjet.session.closed" in html
    assert "user-agent:" in html
    m = re.search(r'href="/artifacts/([0-9a-f]{64})"', html)
    resp = await client.get(f"/artifacts/{m.group(1)}")
    assert resp.status == 200
    assert resp.headers["Content-Type"] == "application/octet-stream"
    assert resp.headers["Content-Disposition"] == f'attachment; filename="{m.group(1)}.bin"'
    assert resp.headers["X-Content-Type-Options"] == "nosniff"
    assert (await resp.read()).startswith(b"HJT1\n")
    pjl = await (await client.get(f"/sessions/{console_data['sessions']['pjl']}")).text()
    assert "HJ-PJL-020" in pjl and "Panel message changed" in pjl
    other = await (await client.get(f"/sessions/{OTHER_SESSION}")).text()
    assert "<code>HJ-JOB-001</code>" in other and "sev-critical" in other
    assert "<code>HJ-JOB-090</code>" not in other  # the older verdict is only in the events table
    assert (await client.get("/sessions/000000000000")).status == 404
    assert (await client.get("/sessions/..%2f..%2fetc")).status == 404


async def test_job_gallery_previews_indicators_and_other_sources(client: TestClient, console_data) -> None:
    html = await (await client.get("/jobs")).text()
    report = console_data["pjl_report"]
    assert f'src="/previews/{report["previews"][0]}"' in html
    assert "evil.example" in html and report["campaign"] in html
    # the excerpt is read from the extracted-text artifact (job_analyses.text_shasum), escaped
    assert f"Hello &#34;&gt;{ESCAPED} {JS_URL} {TEMPLATE} pay at http://evil.example/pay" in html
    assert f'<a href="/sources/{OTHER_SOURCE}">{OTHER_SOURCE}</a>' in html  # the same job came from both sources
    assert html.count('<article class="job">') == 3
    img = await client.get(f"/previews/{report['previews'][0]}")
    assert img.status == 200 and img.headers["Content-Type"] == "image/png"
    assert img.headers["Content-Disposition"].startswith("inline;") and img.headers["Content-Security-Policy"] == CSP
    assert (await img.read()).startswith(b"\x89PNG\r\n\x1a\n")
    # any other artifact (an attacker's job) is never served as an image
    job = await client.get(f"/previews/{report['shasum']}")
    assert job.status == 415
    assert (await client.get("/previews/" + "0" * 64)).status == 404
    assert (await client.get("/artifacts/" + "0" * 64)).status == 404
    assert (await client.get("/artifacts/..%2fhoneyjet.db")).status == 404


async def test_source_profile_and_rules(client: TestClient) -> None:
    html = await (await client.get(f"/sources/{OTHER_SOURCE}")).text()
    assert OTHER_SESSION in html and "Escalation after reconnaissance" in html and "firmware_upload" in html
    assert "pjl/9100" in html
    assert "<dt>sessions</dt><dd>1</dd>" in html and "firmware_upload: 1" in html  # from the verdicts table
    assert "<code>HJ-SRC-005</code> Escalation after reconnaissance" in html  # the sources row, names from the rules
    local = await (await client.get("/sources/127.0.0.1")).text()
    assert "lpd/" in local and "http/" in local and "pjl/" in local
    assert (await client.get("/sources/203.0.113.99")).status == 404
    rules = await (await client.get("/rules")).text()
    row = re.search(r"<code>HJ-PJL-020</code>.*?</tr>", rules, re.S).group(0)
    assert '<td class="n">1</td>' in row
    row = re.search(r"<code>HJ-SRC-005</code>.*?</tr>", rules, re.S).group(0)
    assert '<td class="n">1</td>' in row


# -- headers ----------------------------------------------------------------------------


async def test_security_headers_everywhere(client: TestClient) -> None:
    for path in ["/", "/sessions", "/login", "/static/console.css", "/nope"]:
        resp = await client.get(path, allow_redirects=False)
        h = resp.headers
        assert h["Content-Security-Policy"] == CSP, path
        assert h["X-Content-Type-Options"] == "nosniff"
        assert h["Referrer-Policy"] == "no-referrer"
        assert h["X-Frame-Options"] == "DENY"
        assert "Server" not in h
    assert (await client.get("/")).headers["Cache-Control"] == "no-store"
    assert CSP == ("default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; object-src 'none'; "
                   "base-uri 'none'; frame-ancestors 'none'; form-action 'self'")


async def test_no_inline_script_or_style_in_any_page(client: TestClient, console_data) -> None:
    for path in PAGES + [f"/sessions/{s}" for s in console_data["sessions"].values()] + ["/login"]:
        html = await (await client.get(path)).text()
        for tag in re.findall(r"<script\b[^>]*>", html):
            assert 'src="/static/' in tag or 'type="application/json"' in tag, (path, tag)
        assert "<style" not in html and " style=" not in html and " on" + "click=" not in html


# -- attacker strings -------------------------------------------------------------------


async def test_attacker_strings_render_escaped_on_every_page(client: TestClient, console_data) -> None:
    s = console_data["sessions"]
    pages = PAGES + [f"/sessions/{s['pjl']}", f"/sessions/{s['http']}", f"/sessions/{s['lpd']}", "/sources/127.0.0.1"]
    shown_on = 0
    for path in pages:
        html = await (await client.get(path)).text()
        assert XSS not in html and "<script>alert" not in html.lower(), path
        assert not re.search(r"""(href|src|action)\s*=\s*["']?\s*javascript:""", html, re.I), path
        assert "7*7}} 49" not in html and "javascript:alert(1) 49" not in html
        if ESCAPED in html:
            shown_on += 1
            assert TEMPLATE in html, path  # shown literally, never evaluated
    assert shown_on >= 6
    for sid in (s["pjl"], s["http"], s["lpd"]):
        html = await (await client.get(f"/sessions/{sid}")).text()
        assert ESCAPED in html and TEMPLATE in html and JS_URL in html, sid
    lpd = await (await client.get(f"/sessions/{s['lpd']}")).text()
    assert "job:&#34;&gt;&lt;script&gt;alert(1)&lt;/script&gt;{{7*7}}" in lpd  # the LPD title in the attribution
    jobs = await (await client.get("/jobs")).text()
    assert ESCAPED in jobs and TEMPLATE in jobs


async def test_feed_streams_escaped_events_and_new_ones(client: TestClient, console_dir: Path) -> None:
    resp = await client.get("/api/feed")
    assert resp.status == 200 and resp.headers["Content-Type"].startswith("text/event-stream")
    assert resp.headers["Content-Security-Policy"] == CSP

    async def read_events(until: Any, timeout: float = 5.0) -> list[dict[str, Any]]:
        got: list[dict[str, Any]] = []

        async def run() -> None:
            while True:
                line = (await resp.content.readline()).decode()
                if line.startswith("data: "):
                    payload = line[6:].strip()
                    assert "<" not in payload and ">" not in payload and "&" not in payload
                    got.append(json.loads(payload))
                    if until(got):
                        return
        await asyncio.wait_for(run(), timeout)
        return got

    backlog = await read_events(lambda got: any("<script>" in e["message"].lower() for e in got))
    assert any("<script>alert(1)</script>" in e["message"].lower() for e in backlog)  # escaped on the wire, intact after JSON.parse
    # a new event written by a sensor arrives on the open stream
    db = Database(console_settings(console_dir).database_url)
    await db.open()
    sink = DatabaseSink(db)
    await sink.start()
    marker = uuid.uuid4().hex
    sink.write({"eventid": "honeyjet.session.connect", "event_uuid": marker, "sensor": "test", "session": "abcabcabc001",
                "timestamp": datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ"), "protocol": "pjl",
                "src_ip": "192.0.2.77", "src_port": 1, "dst_ip": "192.0.2.1", "dst_port": 9100, "message": "new </script> session"})
    await sink.stop()
    try:
        fresh = await read_events(lambda got: any(e["id"] == marker for e in got))
        assert fresh[-1]["message"] == "new </script> session"
        resp.close()
    finally:  # PostgreSQL is one database for every test: leave the population as it was
        await _delete_session(console_dir, "abcabcabc001")


async def _delete_session(data_dir: Path, session: str) -> None:
    from sqlalchemy import delete

    from honeyjet.store.database import events_table, sessions_table

    db = Database(console_settings(data_dir).database_url)
    await db.open()
    try:
        async with db.engine.begin() as conn:
            await conn.execute(delete(events_table).where(events_table.c.session == session))
            await conn.execute(delete(sessions_table).where(sessions_table.c.session == session))
    finally:
        await db.close()


# -- units ------------------------------------------------------------------------------


def test_json_for_html_escapes_markup() -> None:
    text = json_for_html({"a": "</script><!-- & \u2028"})
    assert "<" not in text and ">" not in text and "&" not in text
    assert json.loads(text) == {"a": "</script><!-- & \u2028"}


def test_transcript_text_and_hex_views() -> None:
    blob = b"HJT1\nC5\n\x1bA\\\r\nS2\nok"
    records, cut = transcript_records(blob)
    assert [r["dir"] for r in records] == ["C", "S"] and not cut
    assert records[0]["text"] == "\\x1bA\\\\\\r\n"
    assert records[0]["hex"][0].startswith("00000000  1b 41 5c 0d 0a")
    assert records[1]["hex"][0].startswith("00000005  6f 6b")
    assert printable(b"\x00<") == "\\x00<"


def test_passwords_are_salted_scrypt() -> None:
    a, b = hash_password("same password!", n=2**10), hash_password("same password!", n=2**10)
    assert a != b and a.startswith("scrypt$1024$8$1$")
    assert verify_password("same password!", a) and not verify_password("same password?", a)
    for broken in ("", "scrypt$x", "bcrypt$1024$8$1$AAAA$AAAA", "scrypt$1000$8$1$AAAA$AAAA", "scrypt$4194304$8$1$AAAA$AAAA"):
        assert not verify_password("same password!", broken)


def test_users_file_mode_and_reload(tmp_path: Path) -> None:
    path = tmp_path / "console-users.toml"
    users = Users(path)
    assert len(users) == 0 and not users.check("alice", "whatever long")
    assert add_user(path, "alice", "first password", n=2**10) is False
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert users.check("alice", "first password")
    assert add_user(path, "alice", "second password", n=2**10) is True
    add_user(path, "bob", "bobs password", n=2**10)
    assert set(load_users(path)) == {"alice", "bob"}
    assert users.check("alice", "second password") and not users.check("alice", "first password")
    with pytest.raises(ValueError):
        add_user(path, "bad name]", "long enough pw", n=2**10)
    with pytest.raises(ValueError):
        add_user(path, "carol", "short", n=2**10)


def test_cli_adduser_and_bind_policy(tmp_path: Path, monkeypatch, capsys) -> None:
    data = tmp_path / "data"
    monkeypatch.setattr("sys.stdin", io.StringIO("a good long password\n"))
    assert console_main(["--data-dir", str(data), "adduser", "erin", "--password-stdin"]) == 0
    path = data / "console-users.toml"
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600 and "erin" in load_users(path)
    monkeypatch.setattr("sys.stdin", io.StringIO("short\n"))
    assert console_main(["adduser", "frank", "--password-stdin", "--data-dir", str(data)]) == 2
    assert "password" in capsys.readouterr().err
    assert console_main(["--data-dir", str(data), "--bind", "0.0.0.0", "--port", "1"]) == 2
    assert "loopback" in capsys.readouterr().err
    assert console_main(["--data-dir", str(data), "--tls-cert", "x.pem"]) == 2



async def test_serve_runs_the_console_until_stopped(console_dir: Path) -> None:
    import aiohttp

    from honeyjet.console.cli import serve
    from conftest import free_port

    port = free_port()
    stop = asyncio.Event()
    task = asyncio.create_task(serve(console_settings(console_dir), bind="127.0.0.1", port=port, tls=None,
                                     secure_cookies=False, stop=stop))
    try:
        async with aiohttp.ClientSession() as http:
            for _ in range(100):
                try:
                    async with http.get(f"http://127.0.0.1:{port}/", allow_redirects=False) as resp:
                        assert resp.status == 302 and resp.headers["Location"] == "/login"
                        assert "Server" not in resp.headers
                        break
                except aiohttp.ClientConnectionError:
                    await asyncio.sleep(0.05)
            else:
                pytest.fail("console did not start")
    finally:
        stop.set()
        await asyncio.wait_for(task, 10)


async def test_campaigns_and_sources_lists(client: TestClient, console_data) -> None:
    report = console_data["pjl_report"]
    html = await (await client.get("/campaigns")).text()
    assert f'href="/campaigns?c={report["campaign"]}"' in html
    one = await (await client.get(f"/campaigns?c={report['campaign']}")).text()
    assert report["campaign"] in one and f'<a href="/sources/{OTHER_SOURCE}">{OTHER_SOURCE}</a>' in one
    assert '<article class="job">' in one and ESCAPED in one and XSS not in one
    assert (await client.get("/campaigns?c=c-nosuchcampaign")).status == 404
    sources = await (await client.get("/sources")).text()
    assert '<a href="/sources/127.0.0.1">127.0.0.1</a>' in sources and OTHER_SOURCE in sources
    jobs = await (await client.get("/jobs")).text()
    assert f'href="/campaigns?c={report["campaign"]}"' in jobs  # job cards link their campaign
