"""``honeyjet report``: a self-contained summary of a period, as HTML or Markdown.

It reads the database through the console's queries (:class:`Queries`), so the numbers
are the console's. The HTML is one file: inline CSS, inline SVG for the chart, preview
images as ``data:image/png;base64`` URIs, and no script at all. Everything an attacker
sent (job names, extracted text, indicators, attributions, …) goes through Jinja2's
autoescape in HTML and through :func:`md_text` in Markdown (table cells included: ``|``
is escaped like every other markup character).

Preview images: one per example job and at most :data:`MAX_PREVIEWS` in a report, each
embedded only when the stored artifact starts with the PNG magic number and is at most
:data:`PREVIEW_LIMIT` bytes.
"""

from __future__ import annotations

import asyncio
import base64
import re
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from honeyjet.console.queries import SEVERITIES, Queries

UTC = timezone.utc
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
MAX_PREVIEWS = 3
PREVIEW_LIMIT = 1024 * 1024
EXAMPLE_JOBS = 5
TOP = 10
SERIES = ("sessions", "sources", "jobs")
TRIM_AFTER = 31  # a longer period starts at its first active day (quiet days before are not drawn)
CHART_W, CHART_H, CHART_PAD = 760, 220, 30
FORMATS = ("html", "md")


# -- data ------------------------------------------------------------------------------


def _preview_uri(data_dir: Path, sha: str) -> str:
    """``data:image/png;base64,…`` of a stored preview, or "" unless it is a PNG of at most PREVIEW_LIMIT bytes."""
    from honeyjet.console.app import _read_head

    try:
        data = _read_head(data_dir / "artifacts" / sha, PREVIEW_LIMIT + 1)
    except OSError:
        return ""
    if len(data) > PREVIEW_LIMIT or not data.startswith(PNG_MAGIC):
        return ""
    return "data:image/png;base64," + base64.b64encode(data).decode("ascii")


def example_jobs(data_dir: Path, rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Up to EXAMPLE_JOBS jobs with distinct content, newest first; analysed ones with previews preferred."""
    from honeyjet.console.app import job_view, read_excerpt

    seen: set[Any] = set()
    unique = []
    for r in rows:
        if r.get("shasum") not in seen:
            seen.add(r.get("shasum"))
            unique.append(r)
    unique.sort(key=lambda r: not r.get("previews"))  # stable: newest first within each group
    out = []
    embedded = 0
    for r in unique[:EXAMPLE_JOBS]:
        j = job_view(r, read_excerpt(data_dir, r.get("text_shasum")))
        j["indicators"] = j["indicators"][:10]
        j["preview"] = ""
        if embedded < MAX_PREVIEWS and j["previews"]:
            j["preview"] = _preview_uri(data_dir, j["previews"][0])
            embedded += bool(j["preview"])
        out.append(j)
    return out


def bar_chart(days: list[dict[str, Any]]) -> dict[str, Any]:
    """Geometry of a grouped bar chart (one group per day, one bar per series) for the SVG template."""
    top = max([d[s] for d in days for s in SERIES] + [1])
    inner_w, inner_h = CHART_W - 2 * CHART_PAD, CHART_H - 2 * CHART_PAD
    group = inner_w / max(len(days), 1)
    bar = max(group * 0.8 / len(SERIES), 0.5)
    every = max(1, round(len(days) / 10))  # about ten day labels
    bars, labels = [], []
    for i, d in enumerate(days):
        x0 = CHART_PAD + i * group + group * 0.1
        for k, s in enumerate(SERIES):
            h = inner_h * d[s] / top
            bars.append({"x": round(x0 + k * bar, 2), "y": round(CHART_PAD + inner_h - h, 2), "w": round(bar, 2),
                         "h": round(h, 2), "cls": s, "title": f"{d['day']}: {d[s]} {s}"})
        if i % every == 0:
            labels.append({"x": round(x0 + group * 0.4, 2), "text": d["day"][5:]})
    return {"w": CHART_W, "h": CHART_H, "pad": CHART_PAD, "base": CHART_H - CHART_PAD, "top": top, "bars": bars,
            "labels": labels, "series": SERIES}


async def collect(queries: Queries, rules: Any, data_dir: Path, since: datetime, *, sensor: str = "") -> dict[str, Any]:
    """Everything a report shows, for the period from ``since`` to now (of one sensor of a fleet's store with ``sensor``)."""
    from honeyjet.console.app import rule_names
    from honeyjet.store.database import sessions_table as SES
    from honeyjet.store.database import sources_table as SRC

    now = datetime.now(UTC)
    days = await queries.per_day(since, sensor=sensor)
    while len(days) > TRIM_AFTER and not any(days[0][s] for s in SERIES):  # a date long ago: from the first activity on
        days.pop(0)
    sources = await queries.top(SES.c.src_ip, since, TOP, sensor=sensor)
    classes_of = await queries.classes_of_sources([ip for ip, _ in sources], since, sensor=sensor)
    tallies = await queries.verdict_tallies(since, sensor=sensor)
    hits = [("session", rid, n) for rid, n in tallies["rules"]]
    hits += [("source", rid, n) for rid, n in await queries.rule_hits(SRC, since=since, sensor=sensor)]
    names = rule_names(rules, [rid for _, rid, _ in hits])
    verdicts = await queries.source_verdicts(since=since, limit=50, sensor=sensor)
    jobs_rows = await queries.jobs(since=since, limit=200, sensor=sensor)
    jobs = await asyncio.get_running_loop().run_in_executor(None, example_jobs, data_dir, jobs_rows)
    return {
        "since": since, "until": now, "sensor": sensor, "counts": await queries.counts(since, sensor=sensor), "days": days,
        "chart": bar_chart(days),
        "sources": [{"ip": ip, "sessions": n, "classes": classes_of.get(ip, [])} for ip, n in sources],
        "classes": tallies["classes"], "severities": [(s, tallies["severities"][s]) for s in SEVERITIES],
        "rules": [{"kind": kind, "id": rid, "name": names.get(rid, ""), "count": n} for kind, rid, n in hits],
        "verdicts": [{**v, "rule_names": [names.get(r, r) for r in v.get("rules") or [] if isinstance(r, str)]}
                     for v in verdicts],
        "jobs": jobs,
    }


# -- output ----------------------------------------------------------------------------


def render_html(data: dict[str, Any]) -> str:
    from honeyjet.console.app import make_env

    return make_env().get_template("report.html").render(**data)


_MD_SPECIAL = re.compile(r"([\\`*_{}\[\]()#+!|~])")


def md_text(value: Any) -> str:
    """Text or a table cell for Markdown: markup characters backslash-escaped, HTML made inert, one line."""
    text = "" if value is None else str(value)
    text = text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
    text = re.sub(r"[\x00-\x1f\x7f]+", " ", text)
    return _MD_SPECIAL.sub(r"\\\1", text).strip()


def _md_table(head: list[str], rows: list[list[Any]]) -> list[str]:
    if not rows:
        return ["_none_", ""]
    out = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    out += ["| " + " | ".join(md_text(c) for c in row) + " |" for row in rows]
    return out + [""]


def _dt(value: Any) -> str:
    from honeyjet.console.app import _fmt_dt

    return _fmt_dt(value)


def render_md(data: dict[str, Any]) -> str:
    c = data["counts"]
    out = [f"# honeyjet report: {_dt(data['since'])} to {_dt(data['until'])} (UTC)", ""]
    if data.get("sensor"):
        out += [f"Sensor: {md_text(data['sensor'])}", ""]
    out += [f"**{c['sessions']}** sessions from **{c['sources']}** sources, **{c['jobs']}** print jobs, "
            f"{c['events']} events.", "", "## Activity by day", ""]
    out += _md_table(["day", "sessions", "sources", "jobs"], [[d["day"], d["sessions"], d["sources"], d["jobs"]] for d in data["days"]])
    out += ["## Top sources", ""]
    out += _md_table(["source", "sessions", "classes"], [[s["ip"], s["sessions"], ", ".join(s["classes"])] for s in data["sources"]])
    out += ["## Classes", ""] + _md_table(["class", "sessions"], [list(r) for r in data["classes"]])
    out += ["## Severities", ""] + _md_table(["severity", "sessions"], [list(r) for r in data["severities"]])
    out += ["## Rules that fired", ""]
    out += _md_table(["rule", "name", "kind", "count"], [[r["id"], r["name"], r["kind"], r["count"]] for r in data["rules"]])
    out += ["## Source verdicts and campaigns", ""]
    out += _md_table(["source", "sensor", "class", "severity", "rules", "campaigns", "attribution"],
                     [[v["src_ip"], v.get("sensor") or "", (v.get("classes") or ["unclassified"])[0], v.get("severity") or "",
                       ", ".join(v["rule_names"]), ", ".join(str(x) for x in v.get("campaigns") or [] if x),
                       ", ".join(str(x) for x in v.get("attribution") or [])] for v in data["verdicts"]])
    out += ["## Example jobs", ""]
    if not data["jobs"]:
        out += ["_none_", ""]
    for j in data["jobs"]:
        out += [f"### Job {md_text(j.get('job'))} from {md_text(j.get('src_ip') or '?')} at {_dt(j.get('ts'))}", ""]
        out += _md_table(["field", "value"], [[k, v] for k, v in (
            ("name", j.get("name")), ("user", j.get("user")), ("language", j.get("analysed_language") or j.get("language")),
            ("size", j.get("size")), ("sha256", j.get("shasum")), ("campaign", j.get("campaign"))) if v not in (None, "")])
        if j["preview"]:
            out += [f"![preview of job {md_text(j.get('job'))}]({j['preview']})", ""]
        if j["text"]:
            out += ["Text: " + md_text(j["text"][:300]), ""]
        out += _md_table(["indicator", "value"], [[i.get("type"), i.get("value")] for i in j["indicators"]])
    return "\n".join(out).rstrip("\n") + "\n"


async def build_report(settings: Any, *, since: datetime, fmt: str = "html", url: str | None = None, sensor: str = "") -> str:
    """Open the database (``url``, else the one ``settings`` name) and render the report for ``since`` to now,
    of every sensor or of ``sensor``."""
    from honeyjet.console.app import load_rules
    from honeyjet.store.database import Database

    database = Database(url or settings.database_url)
    await database.open()
    try:
        data = await collect(Queries(database.engine), load_rules(settings), Path(settings.data_dir), since, sensor=sensor)
    finally:
        await database.close()
    return render_html(data) if fmt == "html" else render_md(data)
