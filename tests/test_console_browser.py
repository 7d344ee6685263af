"""The console in a real browser: Playwright driving Debian's chromium (never a downloaded one).

Log in, read the overview (chart drawn, live feed connected), follow a session to its
transcript, open the job gallery (previews load under the CSP), acknowledge the session,
log out. The attacker's ``<script>`` strings must stay inert: no dialog ever opens, no
CSP violation is reported, and the text is visible as text. Screenshots go to a
temporary directory.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import socket
import threading
from pathlib import Path
from typing import Any, Iterator

import pytest
from playwright import sync_api

from helpers import require
from honeyjet.console.app import build_app
from honeyjet.store.database import Database
from test_console_data import OTHER_SESSION, PASSWORD, USER, console_settings

pytest_plugins = ["test_console_data"]

CHROMIUM = os.environ.get("HONEYJET_TEST_CHROMIUM", "/usr/bin/chromium")
pytestmark = [pytest.mark.realclient]


@pytest.fixture(autouse=True)
def _chromium() -> None:
    require(Path(CHROMIUM).exists(), f"{CHROMIUM} missing (apt-get install chromium)")


class ConsoleThread:
    """The console on 127.0.0.1 in its own thread and event loop (Playwright's sync API owns this one)."""

    def __init__(self, data_dir: Path, *, url: str = "", central: bool = False):
        self.data_dir = data_dir
        self.db_url = url
        self.central = central
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = s.getsockname()[1]
        self.ready = threading.Event()
        self.error: BaseException | None = None
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self._stop: asyncio.Event | None = None

    def _run(self) -> None:
        asyncio.set_event_loop(self.loop)
        try:
            self.loop.run_until_complete(self._serve())
        except BaseException as exc:  # noqa: BLE001 - reported to the test
            self.error = exc
            self.ready.set()

    async def _serve(self) -> None:
        from aiohttp import web

        settings = console_settings(self.data_dir)
        db = Database(self.db_url or settings.database_url)
        await db.open()
        app = build_app(settings, database=db, data_dir=self.data_dir, secure_cookies=False, feed_poll=0.2, central=self.central)
        runner = web.AppRunner(app, handle_signals=False, shutdown_timeout=1.0)
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", self.port).start()
        self._stop = asyncio.Event()
        self.ready.set()
        try:
            await self._stop.wait()
        finally:
            await runner.cleanup()
            await db.close()

    def __enter__(self) -> "ConsoleThread":
        self.thread.start()
        assert self.ready.wait(20), "console did not start"
        if self.error:
            raise self.error
        return self

    def __exit__(self, *exc: Any) -> None:
        if self._stop is not None:
            self.loop.call_soon_threadsafe(self._stop.set)
        self.thread.join(10)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"


def wait_true(page, expression: str, timeout: float = 10.0) -> None:
    """Poll a JavaScript expression through page.evaluate (CDP, which the console's CSP allows;
    page.wait_for_function compiles its predicate with eval inside the page, which the CSP forbids)."""
    import time as _time

    deadline = _time.monotonic() + timeout
    while not page.evaluate(expression):
        assert _time.monotonic() < deadline, f"timed out waiting for: {expression}"
        page.wait_for_timeout(50)


@pytest.fixture
def console(console_dir: Path) -> Iterator[ConsoleThread]:
    with ConsoleThread(console_dir) as c:
        yield c


@pytest.fixture
def browser_page(tmp_path: Path) -> Iterator[tuple[Any, list[str], list[str]]]:
    dialogs: list[str] = []
    problems: list[str] = []
    with sync_api.sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"])
        context = browser.new_context(viewport={"width": 1280, "height": 900})
        page = context.new_page()

        def on_dialog(dialog: Any) -> None:
            dialogs.append(dialog.message)
            dialog.dismiss()

        page.on("dialog", on_dialog)
        page.on("pageerror", lambda exc: problems.append(f"page error: {exc}"))
        page.on("console", lambda msg: problems.append(f"console {msg.type}: {msg.text}") if msg.type == "error" else None)
        try:
            yield page, dialogs, problems
        finally:
            context.close()
            browser.close()


def test_analyst_walkthrough_in_chromium(console: ConsoleThread, browser_page, console_data, tmp_path: Path) -> None:
    page, dialogs, problems = browser_page
    shots = tmp_path / "screenshots"
    shots.mkdir()
    base = console.url

    # not logged in: every page leads to the login form
    page.goto(base + "/jobs")
    assert page.url == base + "/login"
    page.fill("input[name=username]", USER)
    page.fill("input[name=password]", "wrong password!!")
    page.click("button[type=submit]")
    assert page.locator(".error").inner_text() == "Wrong user name or password."
    page.fill("input[name=username]", USER)
    page.fill("input[name=password]", PASSWORD)
    page.click("button[type=submit]")
    page.wait_for_url(base + "/")
    cookies = {c["name"]: c for c in page.context.cookies()}
    assert cookies["hj_session"]["httpOnly"] and cookies["hj_session"]["sameSite"] == "Strict"
    assert page.evaluate("document.cookie") == ""  # invisible to scripts

    # overview: Chart.js drew the chart, the live feed connected and shows events
    wait_true(page, "document.getElementById('feed-state').textContent === 'live'")
    wait_true(page, "document.querySelectorAll('#feed-rows tr').length > 0")
    assert page.evaluate("typeof Chart !== 'undefined' && Chart.getChart(document.getElementById('sessions-chart')) !== undefined")
    assert page.evaluate("document.getElementById('sessions-chart').width") > 0
    feed_text = page.locator("#feed-rows").inner_text()
    assert "<SCRIPT>ALERT(1)</SCRIPT>" in feed_text.upper()  # the PJL command, as text
    page.screenshot(path=str(shots / "overview.png"), full_page=True)

    # sessions: filter with htmx (no full reload), then open the PJL session
    page.click("nav >> text=Sessions")
    page.select_option("select[name=service]", "pjl")
    page.click("form.filters button[type=submit]")
    wait_true(page, "!document.querySelector('#session-rows').textContent.includes('lpd')")
    assert "service=pjl" in page.url
    pjl = console_data["sessions"]["pjl"]
    page.click(f"a.sid[href='/sessions/{pjl}']")
    page.wait_for_url(base + f"/sessions/{pjl}")
    transcript = page.locator(".transcript pre.dir-C").first.inner_text()
    assert '"><script>alert(1)</script>{{7*7}}' in transcript
    assert "javascript:alert(1) {{7*7}}" in transcript
    assert page.locator("text=Panel message changed").count() >= 1
    page.screenshot(path=str(shots / "session.png"), full_page=True)

    # acknowledge it through the htmx triage form
    page.fill("#triage input[name=note]", "seen <b>it</b>")
    page.click("#triage button[value=acknowledged]")
    page.wait_for_selector("#triage .st-acknowledged")
    assert page.locator("#triage .note").inner_text() == "seen <b>it</b>"
    page.reload()
    assert page.locator("#triage .st-acknowledged").count() == 1

    # the LPD and HTTP sessions with attacker strings
    for protocol in ("lpd", "http"):
        page.goto(base + f"/sessions/{console_data['sessions'][protocol]}")
        assert page.locator("text=alert(1)").count() >= 1
    attribution = page.locator("ul.attribution").inner_text()
    assert '"><script>alert(1)</script> javascript:alert(1) {{7*7}}' in attribution
    page.goto(base + f"/sessions/{OTHER_SESSION}")
    assert page.locator("ul.attribution").inner_text().strip() == 'user:"><script>alert(1)</script>'

    # the job gallery: previews are real images, the excerpt is text
    page.click("nav >> text=Print jobs")
    page.wait_for_url(base + "/jobs")
    wait_true(page, "Array.from(document.querySelectorAll('.previews img')).every(i => i.complete && i.naturalWidth > 0)")
    assert page.locator(".previews img").count() >= 2
    assert page.locator("pre.excerpt").filter(has_text="<script>alert(1)</script>").count() >= 1
    page.screenshot(path=str(shots / "jobs.png"), full_page=True)

    # log out: back to the login page, and the old pages are closed
    page.click("#logout")
    page.wait_for_url(base + "/login")
    page.goto(base + "/sessions")
    assert page.url == base + "/login"

    assert dialogs == [], dialogs
    assert not [p for p in problems if "Content Security Policy" in p or "page error" in p], problems
    assert sorted(p.name for p in shots.iterdir()) == ["jobs.png", "overview.png", "session.png"]
    assert all(p.stat().st_size > 10_000 for p in shots.iterdir())
    if os.environ.get("HONEYJET_KEEP_SCREENSHOTS"):
        shutil.copytree(shots, os.environ["HONEYJET_KEEP_SCREENSHOTS"], dirs_exist_ok=True)
