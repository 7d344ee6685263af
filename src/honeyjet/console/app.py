"""The analyst console: an aiohttp application over the event database.

Pages are rendered on the server with Jinja2 (autoescape on for every template; nothing
an attacker sent is ever marked safe); htmx 2 swaps fragments (filters, pagination,
triage) and a small static script draws the charts (Chart.js) and the live feed (SSE).
Both libraries are vendored under ``static/vendor/``; nothing is loaded from elsewhere.

Security model (see :mod:`honeyjet.console.auth` for accounts and sessions):

* every route but ``/login`` and ``/static/`` needs a login session: pages redirect to
  ``/login``, ``/api/``, ``/artifacts/`` and ``/previews/`` answer 401;
* every state change (POST) needs the session's CSRF token (form field ``csrf_token``
  or header ``X-CSRF-Token``), compared in constant time; a cross-origin ``Origin`` is
  refused as well; the login form carries an HMAC of a pre-login cookie;
* the session cookie is ``HttpOnly; SameSite=Strict`` and ``Secure`` (named
  ``__Host-hj_session`` then); only a console bound to a loopback address over plain
  HTTP may drop ``Secure`` (``secure_cookies=False``);
* every response carries a strict Content-Security-Policy (no inline script or style),
  ``nosniff``, ``no-referrer``, ``X-Frame-Options: DENY`` and no ``Server`` banner;
* artifacts are only ever downloads (``application/octet-stream``, ``attachment``);
  preview PNGs are served inline only after their magic number is checked.

Central mode (``central=True``, ``honeyjet console --central``) is the console of a
fleet's central store: every page has a sensor filter (the ``sensor`` query parameter,
which also works, without the picker, in single-sensor mode), lists show which sensor
saw what, and ``/sensors`` lists the fleet. Sensor names are escaped like everything else.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import logging
import re
import secrets
import time
from collections import deque
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlencode

import jinja2
from aiohttp import web
from markupsafe import Markup

from honeyjet.console.auth import LoginLimiter, SessionStore, Users, same_token, users_path
from honeyjet.console.queries import (
    PAGE_SIZE,
    SEVERITIES,
    STATUSES,
    TRANSITIONS,
    Queries,
    SessionFilter,
    create_console_tables,
    utc,
)
from honeyjet.store.database import sessions_table as SES
from honeyjet.store.database import sources_table as SRC
from honeyjet.store.database import verdicts_table as VD
from honeyjet.store.transcript import parse as parse_transcript

log = logging.getLogger(__name__)
UTC = timezone.utc
HERE = Path(__file__).resolve().parent

CSP = ("default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; object-src 'none'; "
       "base-uri 'none'; frame-ancestors 'none'; form-action 'self'")
SECURITY_HEADERS = {
    "Content-Security-Policy": CSP,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
    "Cross-Origin-Opener-Policy": "same-origin",
    "Cross-Origin-Resource-Policy": "same-origin",
    "Permissions-Policy": "camera=(), microphone=(), geolocation=(), usb=()",
}
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
SHA_RE = re.compile(r"[0-9a-f]{64}")
SESSION_ID_RE = re.compile(r"[0-9A-Za-z_-]{1,64}")
PUBLIC_PREFIXES = ("/static/",)
API_PREFIXES = ("/api/", "/artifacts/", "/previews/")
RANGES = {"1h": timedelta(hours=1), "24h": timedelta(days=1), "7d": timedelta(days=7), "30d": timedelta(days=30), "all": None}
TRANSCRIPT_SHOW = 256 * 1024  # transcript bytes shown on a page (the download has all)
HEX_SHOW = 64 * 1024
PREVIEW_MAX = 8 * 1024 * 1024
NOTE_MAX = 2000
EXCERPT = 600  # characters of a job's extracted text shown on a card
CONTROL_RE = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")
FEED_BACKLOG = 50
FEED_POLL = 1.0
FEED_OVERLAP = timedelta(seconds=10)  # re-read this far back: the sensor writes in batches
SENSOR_MAX = 128  # longest sensor name the filter takes
SENSOR_WINDOW = timedelta(days=7)  # the picker lists registered sensors and those with sessions this recent
SENSOR_CACHE = 30.0  # seconds the picker's list is reused
FILTER_KEYS = ("range", "from", "to", "source", "port", "service", "class", "severity", "status", "multi", "c")

K_STATE = web.AppKey("console", "Console")
_RequestKey = getattr(web, "RequestKey", None)  # aiohttp >= 3.12; plain strings before
K_LOGIN: Any = _RequestKey("login", object) if _RequestKey else "login"
K_TOKEN: Any = _RequestKey("token", str) if _RequestKey else "token"


@dataclass
class Console:
    queries: Queries
    data_dir: Path
    users: Users
    sessions: SessionStore
    limiter: LoginLimiter
    rules: Any
    env: jinja2.Environment
    secure_cookies: bool
    secret: bytes
    feed_poll: float = FEED_POLL
    central: bool = False
    _sensors: tuple[float, list[str]] | None = None

    async def known_sensors(self) -> list[str]:
        """The sensor picker's names, re-read at most every :data:`SENSOR_CACHE` seconds."""
        now = time.monotonic()
        if self._sensors is None or now - self._sensors[0] > SENSOR_CACHE:
            self._sensors = (now, await self.queries.known_sensors(datetime.now(UTC) - SENSOR_WINDOW))
        return self._sensors[1]

    @property
    def cookie(self) -> str:
        return "__Host-hj_session" if self.secure_cookies else "hj_session"

    @property
    def login_cookie(self) -> str:
        return "__Host-hj_login" if self.secure_cookies else "hj_login"


# -- helpers ---------------------------------------------------------------------------


def json_for_html(value: Any) -> str:
    """JSON that is safe inside a ``<script type="application/json">`` element."""
    text = json.dumps(value, ensure_ascii=True, default=str, separators=(",", ":"))
    return text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")


def _json_script(value: Any, element_id: str) -> Markup:
    # the id is ours; the payload is escaped for the script context by json_for_html
    return Markup('<script type="application/json" id="{}">{}</script>').format(element_id, Markup(json_for_html(value)))


def _fmt_dt(value: Any) -> str:
    value = utc(value)
    if isinstance(value, datetime):
        return value.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S")
    return "" if value is None else str(value)


def _seg(value: Any) -> str:
    return quote(str(value), safe="")


def _size(value: Any) -> str:
    if not isinstance(value, int):
        return ""
    for unit in ("B", "KiB", "MiB", "GiB"):
        if value < 1024 or unit == "GiB":
            return f"{value} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024  # type: ignore[assignment]
    return str(value)


@jinja2.pass_context
def _link(ctx: Any, path: str, **params: Any) -> str:
    """``path`` with ``params`` and the page's sensor filter as its query (empty values left out).

    ``path`` is ours (a route, its variable parts through ``seg``); the result is a plain
    string, so autoescape still escapes it in the attribute.
    """
    query = {"sensor": ctx.get("sensor") or "", **params}
    query = {k: v for k, v in query.items() if v not in ("", None)}
    return f"{path}?{urlencode(query)}" if query else path


def make_env() -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(HERE / "templates")),
        autoescape=True,  # every template, whatever its name
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters["dt"] = _fmt_dt
    env.filters["seg"] = _seg
    env.filters["size"] = _size
    env.globals["json_script"] = _json_script
    env.globals["link"] = _link
    env.globals["SEVERITIES"] = SEVERITIES
    env.globals["STATUSES"] = STATUSES
    env.globals["TRANSITIONS"] = TRANSITIONS
    return env


def printable(data: bytes) -> str:
    """Bytes as text: printable ASCII kept, line breaks kept, everything else as ``\\xNN``."""
    out = []
    for b in data:
        if b == 0x0A:
            out.append("\n")
        elif b == 0x0D:
            out.append("\\r")
        elif b == 0x09:
            out.append("\t")
        elif 0x20 <= b < 0x7F and b != 0x5C:
            out.append(chr(b))
        elif b == 0x5C:
            out.append("\\\\")
        else:
            out.append(f"\\x{b:02x}")
    return "".join(out)


def hexdump(data: bytes, base: int = 0) -> list[str]:
    lines = []
    for i in range(0, len(data), 16):
        chunk = data[i : i + 16]
        hexes = " ".join(f"{b:02x}" for b in chunk)
        text = "".join(chr(b) if 0x20 <= b < 0x7F else "." for b in chunk)
        lines.append(f"{base + i:08x}  {hexes:<47}  {text}")
    return lines


def transcript_records(blob: bytes) -> tuple[list[dict[str, Any]], bool]:
    records: list[dict[str, Any]] = []
    shown = 0
    cut = False
    offset = 0
    for direction, data in parse_transcript(blob):
        if shown >= TRANSCRIPT_SHOW:
            cut = True
            break
        part = data[: TRANSCRIPT_SHOW - shown]
        cut = cut or len(part) < len(data)
        records.append({
            "dir": direction,
            "label": "client → sensor" if direction == "C" else "sensor → client",
            "text": printable(part),
            "hex": hexdump(part[:HEX_SHOW], offset) if shown < HEX_SHOW else [],
            "size": len(data),
        })
        shown += len(part)
        offset += len(data)
    return records, cut


def _parse_time(text: str) -> datetime | None:
    text = (text or "").strip()
    if not text or len(text) > 40:
        return None
    try:
        dt = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None
    return dt if dt.tzinfo else dt.replace(tzinfo=UTC)


def sensor_param(query: Any) -> str:
    """The ``sensor`` filter: a name of at most :data:`SENSOR_MAX` characters without control characters, else ""."""
    value = query.get("sensor", "")
    value = value.strip() if isinstance(value, str) else ""
    if len(value) > SENSOR_MAX or CONTROL_RE.search(value):
        return ""
    return value


def session_filter(query: Any, rule_classes: set[str]) -> tuple[SessionFilter, dict[str, str]]:
    """Filters from the query string; unknown values are ignored (and not echoed back)."""
    shown: dict[str, str] = {}
    flt = SessionFilter()
    rng = query.get("range", "7d")
    if rng not in RANGES:
        rng = "7d"
    shown["range"] = rng
    if RANGES[rng] is not None:
        flt.since = datetime.now(UTC) - RANGES[rng]
    for key in ("from", "to"):
        dt = _parse_time(query.get(key, ""))
        if dt is not None:
            shown[key] = query[key]
            if key == "from":
                flt.since = dt
            else:
                flt.until = dt
    source = query.get("source", "").strip()[:64]
    if source:
        flt.source = shown["source"] = source
    port = query.get("port", "").strip()
    if port.isdigit() and int(port) <= 65535:
        flt.port = int(port)
        shown["port"] = port
    service = query.get("service", "").strip()[:16]
    if re.fullmatch(r"[a-z0-9_]+", service or "-"):
        flt.service = shown["service"] = service
    cls = query.get("class", "")
    if cls in rule_classes:
        flt.cls = shown["class"] = cls
    severity = query.get("severity", "")
    if severity in SEVERITIES:
        flt.severity = shown["severity"] = severity
    status = query.get("status", "")
    if status in STATUSES:
        flt.status = shown["status"] = status
    sensor = sensor_param(query)
    if sensor:
        flt.sensor = shown["sensor"] = sensor
    return flt, shown


def _cursor(text: str) -> tuple[datetime, str] | None:
    ts, _, sid = (text or "").partition("|")
    dt = _parse_time(ts)
    if dt is None or not SESSION_ID_RE.fullmatch(sid):
        return None
    return dt, sid


def _is_htmx(request: web.Request) -> bool:
    return request.headers.get("HX-Request") == "true"


# -- middleware and headers ---------------------------------------------------------


async def _security_headers(request: web.Request, response: web.StreamResponse) -> None:
    for key, value in SECURITY_HEADERS.items():
        response.headers[key] = value
    response.headers.popall("Server", None)
    if not request.path.startswith("/static/"):
        response.headers["Cache-Control"] = "no-store"


def _unauthorized(request: web.Request) -> web.Response:
    path = request.path
    if path.startswith(API_PREFIXES) or request.method not in ("GET", "HEAD"):
        return web.Response(status=401, text="login required\n", headers={"WWW-Authenticate": 'Cookie realm="honeyjet console"'})
    if _is_htmx(request):
        return web.Response(status=401, text="login required\n", headers={"HX-Redirect": "/login"})
    raise web.HTTPFound("/login")


def _same_origin(request: web.Request) -> bool:
    """Refuse what a browser marks as cross-site; the CSRF token still has to match.

    ``Sec-Fetch-Site`` (sent by current browsers) must be ``same-origin`` or ``none``;
    an ``Origin`` must be ours, except ``null``, which browsers send for our own forms
    because of ``Referrer-Policy: no-referrer``. Non-browser clients send neither.
    """
    site = request.headers.get("Sec-Fetch-Site")
    if site is not None and site not in ("same-origin", "none"):
        return False
    origin = request.headers.get("Origin")
    return origin is None or origin == "null" or origin == f"{request.scheme}://{request.host}"


@web.middleware
async def auth_middleware(request: web.Request, handler: Any) -> web.StreamResponse:
    console: Console = request.app[K_STATE]
    path = request.path
    if path.startswith(PUBLIC_PREFIXES) or path == "/login":
        return await handler(request)
    token = request.cookies.get(console.cookie)
    sess = console.sessions.get(token)
    if sess is None:
        return _unauthorized(request)
    request[K_LOGIN] = sess
    request[K_TOKEN] = token
    if request.method not in ("GET", "HEAD"):
        if not _same_origin(request):
            return web.Response(status=403, text="cross-origin request refused\n")
        given = request.headers.get("X-CSRF-Token")
        if given is None and request.content_type in ("application/x-www-form-urlencoded", "multipart/form-data"):
            form = await request.post()
            value = form.get("csrf_token")
            given = value if isinstance(value, str) else None
        if not same_token(given, sess.csrf):
            return web.Response(status=403, text="missing or wrong CSRF token\n")
    return await handler(request)


def render(request: web.Request, template: str, status: int = 200, **ctx: Any) -> web.Response:
    console: Console = request.app[K_STATE]
    sess = request.get(K_LOGIN)
    ctx.setdefault("user", sess.user if sess else "")
    ctx.setdefault("csrf", sess.csrf if sess else "")
    ctx.setdefault("nav", "")
    ctx.setdefault("central", console.central)
    ctx.setdefault("sensor", sensor_param(request.query))
    html = console.env.get_template(template).render(**ctx)
    return web.Response(text=html, status=status, content_type="text/html", charset="utf-8")


async def render_page(request: web.Request, template: str, status: int = 200, *, keep: dict[str, str] | None = None,
                      **ctx: Any) -> web.Response:
    """A whole page: in central mode with the sensor picker (names, the page's path and the filters to keep)."""
    console: Console = request.app[K_STATE]
    if console.central:
        sensor = sensor_param(request.query)
        names = await console.known_sensors()
        ctx.setdefault("sensors", names if not sensor or sensor in names else sorted([*names, sensor]))
        ctx.setdefault("page_path", request.rel_url.raw_path)
        ctx.setdefault("keep", {k: v for k, v in (keep or {}).items() if k in FILTER_KEYS})
    return render(request, template, status, **ctx)


# -- login ----------------------------------------------------------------------------


def _login_csrf(console: Console, nonce: str) -> str:
    return hmac.new(console.secret, nonce.encode("utf-8", "surrogatepass"), hashlib.sha256).hexdigest()


def _set_cookie(console: Console, response: web.StreamResponse, name: str, value: str) -> None:
    response.set_cookie(name, value, path="/", httponly=True, secure=console.secure_cookies, samesite="Strict")


def _login_page(request: web.Request, *, status: int = 200, error: str = "", name: str = "") -> web.Response:
    console: Console = request.app[K_STATE]
    nonce = request.cookies.get(console.login_cookie, "")
    fresh = not re.fullmatch(r"[A-Za-z0-9_-]{32,64}", nonce)
    if fresh:
        nonce = secrets.token_urlsafe(32)
    resp = render(request, "login.html", status=status, csrf=_login_csrf(console, nonce), error=error, name=name,
                  no_users=len(console.users) == 0)
    if fresh:
        _set_cookie(console, resp, console.login_cookie, nonce)
    return resp


async def login_get(request: web.Request) -> web.StreamResponse:
    console: Console = request.app[K_STATE]
    if console.sessions.peek(request.cookies.get(console.cookie)):
        raise web.HTTPFound("/")
    return _login_page(request)


async def login_post(request: web.Request) -> web.StreamResponse:
    console: Console = request.app[K_STATE]
    if not _same_origin(request):
        return web.Response(status=403, text="cross-origin request refused\n")
    form = await request.post()
    name = form.get("username")
    password = form.get("password")
    token = form.get("csrf_token")
    nonce = request.cookies.get(console.login_cookie, "")
    if not nonce or not isinstance(token, str) or not same_token(token, _login_csrf(console, nonce)):
        return web.Response(status=403, text="missing or wrong CSRF token; reload the login page\n")
    if not isinstance(name, str) or not isinstance(password, str):
        return _login_page(request, status=400, error="Enter a user name and a password.")
    name = name.strip()[:64]
    address = request.remote or "?"
    if console.limiter.blocked(address, name):
        log.warning("console login refused (rate limit) for %r from %s", name, address)
        return _login_page(request, status=429, error="Too many failed logins. Try again later.", name=name)
    ok = await asyncio.get_running_loop().run_in_executor(None, console.users.check, name, password)
    if not ok:
        console.limiter.failed(address, name)
        log.warning("console login failed for %r from %s", name, address)
        return _login_page(request, status=401, error="Wrong user name or password.", name=name)
    console.limiter.succeeded(name)
    console.sessions.drop(request.cookies.get(console.cookie))
    token, _ = console.sessions.create(name)
    log.info("console login: %s from %s", name, address)
    resp = web.HTTPSeeOther("/")
    _set_cookie(console, resp, console.cookie, token)
    resp.del_cookie(console.login_cookie, path="/")
    raise resp


async def logout(request: web.Request) -> web.StreamResponse:
    console: Console = request.app[K_STATE]
    console.sessions.drop(request[K_TOKEN])
    resp = web.HTTPSeeOther("/login")
    resp.del_cookie(console.cookie, path="/")
    raise resp


# -- pages ----------------------------------------------------------------------------


async def overview(request: web.Request) -> web.Response:
    console: Console = request.app[K_STATE]
    q = console.queries
    sensor = sensor_param(request.query)
    now = datetime.now(UTC)
    today = now.replace(hour=0, minute=0, second=0, microsecond=0)
    week = now - timedelta(days=7)
    counts_today = await q.counts(today, sensor=sensor)
    counts_week = await q.counts(week, sensor=sensor)
    per_hour = await q.sessions_per_hour(week, sensor=sensor)
    sources = await q.top(SES.c.src_ip, week, sensor=sensor)
    ports = await q.top(SES.c.dst_port, week, sensor=sensor)
    tallies = await q.verdict_tallies(week, sensor=sensor)
    rules = tallies["rules"][:10]
    chart = {
        "labels": [b for b, _ in per_hour],
        "sessions": [n for _, n in per_hour],
        "severities": tallies["severities"],
    }
    fleet = await q.fleet(now) if console.central else []
    return await render_page(request, "overview.html", nav="overview", today=counts_today, week=counts_week, chart=chart,
                             sources=sources, ports=ports, classes=tallies["classes"][:10], rules=rules,
                             rule_names=rule_names(console.rules, [rid for rid, _ in rules]), fleet=fleet)


async def sensors_page(request: web.Request) -> web.Response:
    console: Console = request.app[K_STATE]
    return await render_page(request, "sensors.html", nav="sensors", fleet=await console.queries.fleet())


async def sessions_page(request: web.Request) -> web.Response:
    console: Console = request.app[K_STATE]
    flt, shown = session_filter(request.query, set(console.rules.classes))
    before = _cursor(request.query.get("before", ""))
    rows = await console.queries.sessions(flt, before=before, limit=PAGE_SIZE + 1)
    more = len(rows) > PAGE_SIZE
    rows = rows[:PAGE_SIZE]
    next_url = ""
    if more and rows:
        last = rows[-1]
        cursor = f"{utc(last['started']).isoformat() if last['started'] else ''}|{last['session']}"
        next_url = "/sessions?" + urlencode({**shown, "before": cursor})
    ctx = dict(nav="sessions", rows=rows, shown=shown, next_url=next_url, first_url="/sessions?" + urlencode(shown),
               paged=before is not None, classes=sorted(console.rules.classes), services=await console.queries.services(),
               ranges=list(RANGES))
    if _is_htmx(request) and request.headers.get("HX-Target") == "session-rows":
        return render(request, "_session_rows.html", **ctx)
    return await render_page(request, "sessions.html", sensor_in_form=True, **ctx)


def _rule_info(console: Console, rule_ids: list[Any]) -> list[dict[str, Any]]:
    out = []
    for rid in rule_ids:
        if not isinstance(rid, str):
            continue
        rule = console.rules.by_id.get(rid)
        out.append({"id": rid, "name": rule.name if rule else "", "cls": rule.cls if rule else "",
                    "severity": rule.severity if rule else "", "description": rule.description if rule else "(rule not loaded)",
                    "references": list(rule.references) if rule else []})
    return out


async def session_page(request: web.Request) -> web.Response:
    console: Console = request.app[K_STATE]
    sid = request.match_info["sid"]
    if not SESSION_ID_RE.fullmatch(sid):
        raise web.HTTPNotFound()
    row = await console.queries.session(sid)
    if row is None:
        raise web.HTTPNotFound()
    events = await console.queries.session_events(sid)
    verdict = await console.queries.verdict_event(sid)
    records: list[dict[str, Any]] = []
    cut = False
    transcript_missing = False
    sha = row.get("transcript_shasum")
    if sha and SHA_RE.fullmatch(sha):
        path = console.data_dir / "artifacts" / sha
        try:
            blob = await asyncio.get_running_loop().run_in_executor(None, _read_head, path, TRANSCRIPT_SHOW + 65536)
            records, cut = transcript_records(blob)
        except OSError:
            transcript_missing = True
    jobs = await console.queries.jobs(session=sid, limit=100)
    triage = await console.queries.triage("session", sid)
    return await render_page(request, "session.html", nav="sessions", s=row, events=events, verdict=verdict,
                             rules=_rule_info(console, (verdict or {}).get("rules") or []), records=records, cut=cut,
                             transcript_missing=transcript_missing, jobs=await job_views(console.data_dir, jobs), triage=triage,
                             pretty=lambda d: json.dumps(d, indent=1, ensure_ascii=False, default=str, sort_keys=True))


def _read_head(path: Path, limit: int) -> bytes:
    with open(path, "rb") as f:
        return f.read(limit)


def _strs(value: Any, limit: int) -> list[str]:
    return [v for v in value or [] if isinstance(v, str)][:limit] if isinstance(value, list) else []


def job_view(row: dict[str, Any], text: str = "") -> dict[str, Any]:
    """A row of :meth:`Queries.jobs` for the templates; ``text`` is the start of the extracted text."""
    indicators = [i for i in row.get("indicators") or [] if isinstance(i, dict)][:20]
    previews = [p for p in _strs(row.get("previews"), 8) if SHA_RE.fullmatch(p)][:3]
    campaign = row.get("campaign")
    return {**row, "text": text[:EXCERPT], "text_cut": len(text) > EXCERPT or (row.get("text_chars") or 0) > EXCERPT,
            "indicators": indicators, "previews": previews, "analysed_language": row.get("analysed_language") or "",
            "campaign": campaign if isinstance(campaign, str) else "", "errors": _strs(row.get("errors"), 16), "others": []}


def read_excerpt(data_dir: Path, text_shasum: Any) -> str:
    """The first characters of a job's extracted text (an artifact), control characters escaped."""
    if not isinstance(text_shasum, str) or not SHA_RE.fullmatch(text_shasum):
        return ""
    try:
        head = _read_head(data_dir / "artifacts" / text_shasum, EXCERPT * 4 + 4)
    except OSError:
        return ""
    text = head.decode("utf-8", "ignore")[: EXCERPT + 1]
    return CONTROL_RE.sub(lambda m: f"\\x{ord(m.group(0)):02x}", text)


async def job_views(data_dir: Path, rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    texts = await asyncio.get_running_loop().run_in_executor(
        None, lambda: [read_excerpt(data_dir, r.get("text_shasum")) for r in rows])
    return [job_view(r, t) for r, t in zip(rows, texts)]


async def jobs_page(request: web.Request) -> web.Response:
    console: Console = request.app[K_STATE]
    page = request.query.get("page", "1")
    page_no = int(page) if page.isdigit() and 0 < int(page) < 100_000 else 1
    per = 24
    rows = await console.queries.jobs(offset=(page_no - 1) * per, limit=per + 1, sensor=sensor_param(request.query))
    more = len(rows) > per
    jobs = await job_views(console.data_dir, rows[:per])
    by_sha = await console.queries.sources_of_shasums(sorted({j["shasum"] for j in jobs if j.get("shasum")}))
    by_campaign = await console.queries.sources_of_campaigns(sorted({j["campaign"] for j in jobs if j["campaign"]}))
    for j in jobs:
        others = set(by_sha.get(j.get("shasum") or "", [])) | set(by_campaign.get(j["campaign"], []))
        others.discard(j.get("src_ip"))
        others.discard(None)
        j["others"] = sorted(others)
    return await render_page(request, "jobs.html", nav="jobs", jobs=jobs, page=page_no, more=more)


SEVERITY_NAMES = ("info", "low", "medium", "high", "critical")


async def campaigns_page(request: web.Request) -> web.Response:
    console: Console = request.app[K_STATE]
    q = console.queries
    sensor = sensor_param(request.query)
    campaign = request.query.get("c", "")
    if campaign:
        if len(campaign) > 64:
            raise web.HTTPNotFound()
        sensors = await q.campaign_sensors(campaign)
        if not sensors:
            raise web.HTTPNotFound()
        rows = await q.campaign_jobs(campaign, sensor=sensor)
        jobs = await job_views(console.data_dir, rows)
        for j in jobs:
            j["others"] = []
        sources = sorted({j.get("src_ip") for j in jobs if j.get("src_ip")})
        return await render_page(request, "campaign.html", nav="campaigns", campaign=campaign, jobs=jobs, sources=sources,
                                 campaign_sensors=sensors, keep={"c": campaign})
    campaigns = await q.campaigns(sensor=sensor)
    seen_on = await q.sensors_of_campaigns([c["campaign"] for c in campaigns]) if console.central else {}
    for c in campaigns:
        c["sensor_names"] = seen_on.get(c["campaign"], [])
    return await render_page(request, "campaigns.html", nav="campaigns", campaigns=campaigns)


async def sources_page(request: web.Request) -> web.Response:
    console: Console = request.app[K_STATE]
    q = console.queries
    shown: dict[str, str] = {}
    rng = request.query.get("range", "")
    shown["range"] = rng if rng in RANGES else ("30d" if console.central else "all")
    span = RANGES[shown["range"]]
    since = datetime.now(UTC) - span if span is not None else None
    multi = request.query.get("multi", "") == "1"
    if multi:
        shown["multi"] = "1"
    rows = await q.top_sources(since=since, sensor=sensor_param(request.query), multi=multi, multi_first=console.central)
    seen_on = await q.sensors_of_sources([r["src_ip"] for r in rows], since) if console.central else {}
    for r in rows:
        r["sensor_names"] = seen_on.get(r["src_ip"], [])
    return await render_page(request, "sources.html", nav="sources", sources=rows, severities=SEVERITY_NAMES, shown=shown,
                             ranges=list(RANGES), keep=shown)


def rule_names(rules: Any, rule_ids: list[Any]) -> dict[str, str]:
    """Rule id -> name (the id itself when the rule is not loaded)."""
    return {rid: getattr(rules.by_id.get(rid), "name", rid) for rid in rule_ids if isinstance(rid, str)}


async def source_page(request: web.Request) -> web.Response:
    console: Console = request.app[K_STATE]
    ip = request.match_info["ip"]
    if len(ip) > 64:
        raise web.HTTPNotFound()
    q = console.queries
    sensor = sensor_param(request.query)
    seen_by = await q.source_sensors(ip)
    if not seen_by:
        raise web.HTTPNotFound()
    sessions = await q.source_sessions(ip, sensor=sensor)
    profile = await q.source_profile(ip, sensor=sensor)
    jobs = await job_views(console.data_dir, await q.jobs(source=ip, limit=100, sensor=sensor))
    verdicts = await q.source_verdicts(ip, sensor=sensor)
    campaigns = sorted({j["campaign"] for j in jobs if j["campaign"]}
                       | {c for v in verdicts for c in _strs(v.get("campaigns"), 64) if c})
    names = rule_names(console.rules, [rid for v in verdicts for rid in v.get("rules") or []])
    triage = await console.queries.triage("source", ip)
    return await render_page(request, "source.html", nav="sources", ip=ip, sessions=sessions, profile=profile, jobs=jobs,
                             campaigns=campaigns, verdicts=verdicts, rule_names=names, triage=triage, seen_by=seen_by,
                             severities=SEVERITY_NAMES)


async def rules_page(request: web.Request) -> web.Response:
    console: Console = request.app[K_STATE]
    q = console.queries
    sensor = sensor_param(request.query)
    hits = {"session": dict(await q.rule_hits(VD, sensor=sensor)), "source": dict(await q.rule_hits(SRC, sensor=sensor))}
    rules = [{"id": r.id, "name": r.name, "cls": r.cls, "severity": r.severity, "description": r.description,
              "references": list(r.references), "hits": hits[kind].get(r.id, 0), "kind": kind}
             for kind, group in (("session", console.rules.rules), ("source", console.rules.source_rules)) for r in group]
    rules.sort(key=lambda r: (-r["hits"], r["id"]))
    return await render_page(request, "rules.html", nav="rules", rules=rules)


# -- triage ---------------------------------------------------------------------------


async def triage_post(request: web.Request) -> web.Response:
    console: Console = request.app[K_STATE]
    kind = request.match_info["kind"]
    key = request.match_info["key"]
    if kind not in ("session", "source") or len(key) > 64:
        raise web.HTTPNotFound()
    form = await request.post()
    status, expected, note = form.get("status"), form.get("expected"), form.get("note", "")
    if not isinstance(status, str) or not isinstance(expected, str) or not isinstance(note, str):
        return web.Response(status=400, text="status and expected are required\n")
    if status not in STATUSES or expected not in STATUSES or status not in TRANSITIONS[expected]:
        return web.Response(status=409, text=f"cannot change triage from {expected!r} to {status!r}\n")
    if kind == "session" and (not SESSION_ID_RE.fullmatch(key) or await console.queries.session(key) is None):
        raise web.HTTPNotFound()
    if kind == "source" and not await console.queries.source_sessions(key, limit=1):
        raise web.HTTPNotFound()
    done = await console.queries.set_triage(kind, key, expected=expected, status=status, note=note[:NOTE_MAX],
                                            user=request[K_LOGIN].user)
    current = await console.queries.triage(kind, key)
    if done is None:
        resp = render(request, "_triage.html", status=409, triage=current, kind=kind, key=key,
                      error="Someone changed this first; here is the current state.")
        return resp
    log.info("triage %s %s: %s -> %s by %s", kind, key, expected, status, request[K_LOGIN].user)
    if _is_htmx(request):
        return render(request, "_triage.html", triage=current, kind=kind, key=key, error="")
    raise web.HTTPSeeOther(f"/sessions/{_seg(key)}" if kind == "session" else f"/sources/{_seg(key)}")


# -- artifacts and previews -------------------------------------------------------------


async def artifact_download(request: web.Request) -> web.StreamResponse:
    console: Console = request.app[K_STATE]
    sha = request.match_info["sha"]
    if not SHA_RE.fullmatch(sha):
        raise web.HTTPNotFound()
    path = console.data_dir / "artifacts" / sha
    if not path.is_file():
        raise web.HTTPNotFound()
    return web.FileResponse(path, headers={
        "Content-Type": "application/octet-stream",
        "Content-Disposition": f'attachment; filename="{sha}.bin"',
    })


async def preview(request: web.Request) -> web.Response:
    console: Console = request.app[K_STATE]
    sha = request.match_info["sha"]
    if not SHA_RE.fullmatch(sha):
        raise web.HTTPNotFound()
    try:
        data = await asyncio.get_running_loop().run_in_executor(None, _read_head, console.data_dir / "artifacts" / sha, PREVIEW_MAX + 1)
    except OSError:
        raise web.HTTPNotFound() from None
    if not data.startswith(PNG_MAGIC) or len(data) > PREVIEW_MAX:
        return web.Response(status=415, text="not a PNG preview\n")
    return web.Response(body=data, content_type="image/png",
                        headers={"Content-Disposition": f'inline; filename="{sha}.png"'})


# -- live feed (server-sent events) -------------------------------------------------------


def _feed_item(row: dict[str, Any]) -> dict[str, Any]:
    return {"id": row["event_uuid"], "eventid": row["eventid"], "time": _fmt_dt(row["ts"]), "sensor": row["sensor"] or "",
            "session": row["session"] or "",
            "protocol": row["protocol"] or "", "src_ip": row["src_ip"] or "", "dst_port": row["dst_port"],
            "message": (row["message"] or "")[:300]}


async def feed(request: web.Request) -> web.StreamResponse:
    console: Console = request.app[K_STATE]
    token = request[K_TOKEN]
    sensor = sensor_param(request.query)
    resp = web.StreamResponse(headers={"Content-Type": "text/event-stream; charset=utf-8", "X-Accel-Buffering": "no"})
    await resp.prepare(request)
    seen: deque[str] = deque(maxlen=5000)
    seen_set: set[str] = set()
    cursor: datetime | None = None
    limit = FEED_BACKLOG
    idle = 0.0
    try:
        while console.sessions.peek(token):
            rows = await console.queries.events_after(None if cursor is None else cursor - FEED_OVERLAP, limit=limit, sensor=sensor)
            limit = 500
            out = []
            for row in rows:
                if row["event_uuid"] in seen_set:
                    continue
                if len(seen) == seen.maxlen:
                    seen_set.discard(seen[0])
                seen.append(row["event_uuid"])
                seen_set.add(row["event_uuid"])
                out.append(f"id: {row['event_uuid']}\nevent: hj-event\ndata: {json_for_html(_feed_item(row))}\n\n")
                ts = utc(row["ts"])
                if ts is not None and (cursor is None or ts > cursor):
                    cursor = ts
            if cursor is None:
                cursor = datetime.now(UTC) - FEED_OVERLAP
            if out:
                await resp.write("".join(out).encode("utf-8"))
                idle = 0.0
            else:
                idle += console.feed_poll
                if idle >= 15:
                    await resp.write(b": keep-alive\n\n")
                    idle = 0.0
            await asyncio.sleep(console.feed_poll)
    except (ConnectionResetError, ConnectionError):
        pass
    return resp


# -- the application --------------------------------------------------------------------


def load_rules(settings: Any) -> Any:
    """The rule set the sensor judges with (built-in rules plus ``[analysis] rules_dir``)."""
    from honeyjet.analysis.rules import RuleSet

    rules_dir = getattr(getattr(settings, "analysis", None), "rules_dir", "") if settings is not None else ""
    return RuleSet.load([rules_dir] if rules_dir else [])


def build_app(settings: Any, *, database: Any, data_dir: Path | str, secure_cookies: bool = True,
              limiter: LoginLimiter | None = None, sessions: SessionStore | None = None, feed_poll: float = FEED_POLL,
              central: bool = False) -> web.Application:
    """The console over an open :class:`honeyjet.store.database.Database`.

    ``secure_cookies=False`` is for a console bound to a loopback address over plain
    HTTP only (the CLI enforces that). The console's own table is created at start-up.
    ``central=True`` is the fleet console of a central store (sensor picker, sensor columns,
    the fleet on the overview and ``/sensors``).
    """
    rules = load_rules(settings)
    data_dir = Path(data_dir)
    app = web.Application(middlewares=[auth_middleware], client_max_size=64 * 1024)
    app[K_STATE] = Console(
        queries=Queries(database.engine),
        data_dir=data_dir,
        users=Users(users_path(data_dir)),
        sessions=sessions or SessionStore(),
        limiter=limiter or LoginLimiter(),
        rules=rules,
        env=make_env(),
        secure_cookies=secure_cookies,
        secret=secrets.token_bytes(32),
        feed_poll=feed_poll,
        central=central,
    )

    async def _tables(app: web.Application) -> None:
        await create_console_tables(database.engine)

    app.on_startup.append(_tables)
    app.on_response_prepare.append(_security_headers)
    r = app.router
    r.add_get("/login", login_get)
    r.add_post("/login", login_post)
    r.add_post("/logout", logout)
    r.add_get("/", overview)
    r.add_get("/sessions", sessions_page)
    r.add_get("/sessions/{sid}", session_page)
    r.add_get("/jobs", jobs_page)
    r.add_get("/sources", sources_page)
    r.add_get("/sources/{ip}", source_page)
    r.add_get("/campaigns", campaigns_page)
    r.add_get("/rules", rules_page)
    r.add_get("/sensors", sensors_page)
    r.add_post("/triage/{kind}/{key}", triage_post)
    r.add_get("/api/feed", feed)
    r.add_get("/artifacts/{sha}", artifact_download)
    r.add_get("/previews/{sha}", preview)
    r.add_static("/static/", HERE / "static", show_index=False, follow_symlinks=False, append_version=False)
    return app
