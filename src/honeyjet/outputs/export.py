"""``honeyjet export stix|misp|blocklist``: the database's verdicts as threat-intelligence feeds.

What is exported is read from the event database (the sensor's SQLite file or a fleet's
central PostgreSQL, whose rows from many sensors are merged per address):

* **sources**: addresses whose worst session verdict (table ``verdicts``) or correlation
  verdict (table ``sources``) in the period reaches ``--min-severity``, with their classes,
  rules, sessions, sensors, first and last time seen;
* **jobs**: the job contents (sha256) captured in the period in sessions judged at or above
  ``--min-severity``, with the indicators job forensics found in them (URLs, domains,
  e-mail addresses, phone numbers, IPv4 addresses, wallets) and their campaign.

:func:`collect` builds an :class:`Export` from those; :mod:`honeyjet.outputs.stix`,
:mod:`honeyjet.outputs.misp` and :func:`blocklist` render it. ``--campaign`` narrows
everything to one campaign's jobs and the sources that sent them.

Indicator values come from attacker text: each is checked against its type's syntax
(anything else is skipped and counted) and every output format escapes what it must.
Memory stays bounded: the rows are streamed and aggregated with fixed caps.
"""

from __future__ import annotations

import argparse
import asyncio
import csv
import io
import ipaddress
import re
import sys
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Iterable
from urllib.parse import quote

from honeyjet.console.queries import SEVERITIES, SEVERITY_RANK, utc

UTC = timezone.utc
EXIT_USAGE = 2
KINDS = ("stix", "misp", "blocklist")
BLOCKLIST_FORMATS = ("plain", "csv", "nftables")
TLPS = ("clear", "green", "amber", "red")
DEFAULT_MIN_SEVERITY = {"stix": "medium", "misp": "medium", "blocklist": "high"}

MAX_SOURCES = 1_000_000  # addresses in one export
MAX_JOBS = 20_000  # distinct job contents
MAX_VALUES = 50_000  # distinct job indicators
MAX_LIST = 32  # classes, rules, sensors, campaigns … kept per source or indicator
INDICATOR_TYPES = ("url", "domain", "email", "ipv4", "phone", "btc", "eth", "xmr")
WALLET_TYPES = ("btc", "eth", "xmr")


@dataclass
class Source:
    """One malicious address, merged over sensors and verdicts in the period."""

    ip: str  # canonical text (IPv4-mapped IPv6 as IPv4)
    rank: int  # worst severity, 0 info … 4 critical
    sessions: int = 0
    first: datetime | None = None
    last: datetime | None = None
    classes: list[str] = field(default_factory=list)
    rules: list[str] = field(default_factory=list)
    sensors: list[str] = field(default_factory=list)
    campaigns: list[str] = field(default_factory=list)

    @property
    def severity(self) -> str:
        return SEVERITIES[self.rank]

    @property
    def version(self) -> int:
        return ipaddress.ip_address(self.ip).version


@dataclass
class Job:
    """One job content (sha256) captured in the period."""

    shasum: str
    language: str = ""
    campaign: str = ""
    captures: int = 0
    first: datetime | None = None
    last: datetime | None = None
    sources: list[str] = field(default_factory=list)
    indicators: list[tuple[str, str]] = field(default_factory=list)  # (type, value) found in it


@dataclass
class Indicator:
    """One indicator value found in the exported jobs."""

    type: str
    value: str
    first: datetime | None = None
    last: datetime | None = None
    jobs: list[str] = field(default_factory=list)  # shasums (bounded)
    campaigns: list[str] = field(default_factory=list)


@dataclass
class Export:
    since: datetime
    until: datetime
    min_severity: str
    campaign: str = ""
    sources: list[Source] = field(default_factory=list)
    jobs: list[Job] = field(default_factory=list)
    indicators: list[Indicator] = field(default_factory=list)
    skipped: int = 0  # indicator values that failed their syntax check
    truncated: list[str] = field(default_factory=list)  # which caps were hit

    @property
    def max_rank(self) -> int:
        return max((s.rank for s in self.sources), default=SEVERITY_RANK[self.min_severity])


# -- values ---------------------------------------------------------------------------------


def canonical_ip(text: Any) -> str | None:
    """A source address as the exports write it, or None when it is not an address."""
    if not isinstance(text, str) or not text or len(text) > 64:
        return None
    try:
        addr = ipaddress.ip_address(text)
    except ValueError:
        return None
    if isinstance(addr, ipaddress.IPv6Address):
        if addr.scope_id:
            return None
        if addr.ipv4_mapped is not None:
            addr = addr.ipv4_mapped
    return addr.compressed


def ip_sort_key(ip: str) -> tuple[int, int]:
    addr = ipaddress.ip_address(ip)
    return addr.version, int(addr)


_HOST = re.compile(r"(?=.{1,253}$)(?:[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?\.)+(?:xn--[a-z0-9-]{1,59}|[a-z]{2,63})")
_EMAIL_LOCAL = re.compile(r"[A-Za-z0-9._%+-]{1,64}")
_PHONE = re.compile(r"\+?[0-9]{4,20}")
_WALLET = re.compile(r"(?:0x)?[0-9A-Za-z]{20,110}")
_URL_SCHEME = re.compile(r"(?:https?|ftp)://", re.IGNORECASE)


_URI_SAFE = ":/?#[]@!$&'()*+,;=-._~%"  # reserved and unreserved characters, and existing escapes


def _plain_text(value: str) -> str | None:
    """Forensics escape bytes outside printable ASCII (``\\xNN``): undo that, keep only clean text."""
    if "\\" in value:
        from honeyjet.text import unescape

        try:
            value = unescape(value).decode("utf-8")
        except UnicodeDecodeError:
            return None
    if not value or any(c.isspace() or not c.isprintable() for c in value):
        return None
    return value


def clean_indicator(kind: str, value: Any) -> str | None:
    """The value of a forensics indicator in its type's syntax, or None (skipped)."""
    if kind not in INDICATOR_TYPES or not isinstance(value, str) or not value or len(value) > 2048:
        return None
    if kind == "url":
        url = _plain_text(value)
        if url is None:
            return None
        if not _URL_SCHEME.match(url):
            host = url.split("/", 1)[0].split(":", 1)[0].lower()
            if not _HOST.fullmatch(host):
                return None
            url = "http://" + url  # "www.example.com/x" as printed
        # a URI (RFC 3986) as STIX's url object requires: other characters percent-encoded
        return quote(url, safe=_URI_SAFE)
    if kind == "domain":
        host = value.lower().rstrip(".")
        return host if _HOST.fullmatch(host) else None
    if kind == "email":
        local, at, host = value.rpartition("@")
        host = host.lower()
        return f"{local}@{host}" if at and _EMAIL_LOCAL.fullmatch(local) and _HOST.fullmatch(host) else None
    if kind == "ipv4":
        try:
            return ipaddress.IPv4Address(value).compressed
        except ValueError:
            return None
    if kind == "phone":
        return value if _PHONE.fullmatch(value) else None
    return value if _WALLET.fullmatch(value) else None


def _add(items: list[str], values: Iterable[Any], limit: int = MAX_LIST) -> None:
    """Append the strings of ``values`` not yet in ``items`` (a JSON column that is not a list adds nothing)."""
    if not isinstance(values, (list, tuple)):
        return
    for v in values:
        if len(items) >= limit:
            return
        if isinstance(v, str) and v and v not in items:
            items.append(v)


def _min(a: datetime | None, b: datetime | None) -> datetime | None:
    return b if a is None or (b is not None and b < a) else a


def _max(a: datetime | None, b: datetime | None) -> datetime | None:
    return b if a is None or (b is not None and b > a) else a


# -- reading the database --------------------------------------------------------------------


async def collect(db: Any, *, since: datetime, until: datetime, min_severity: str = "medium", campaign: str = "",
                  jobs: bool = True) -> Export:
    """Read what an export holds from an open :class:`~honeyjet.store.database.Database`."""
    from sqlalchemy import func, select

    from honeyjet.store.database import job_analyses_table as JA
    from honeyjet.store.database import jobs_table as JOBS
    from honeyjet.store.database import sessions_table as SES
    from honeyjet.store.database import sources_table as SRC
    from honeyjet.store.database import verdicts_table as VD

    out = Export(since=since, until=until, min_severity=min_severity, campaign=campaign)
    min_rank = SEVERITY_RANK[min_severity]
    by_ip: dict[str, Source] = {}
    engine = db.engine

    def source(ip: str, rank: int) -> Source | None:
        s = by_ip.get(ip)
        if s is None:
            if len(by_ip) >= MAX_SOURCES:
                if "sources" not in out.truncated:
                    out.truncated.append("sources")
                return None
            s = by_ip[ip] = Source(ip=ip, rank=rank)
        s.rank = max(s.rank, rank)
        return s

    async with engine.connect() as conn:
        # 1. every address with a session verdict at or above the threshold: its sessions in the period
        rank = func.max(VD.c.severity_rank)
        first = func.min(func.coalesce(SES.c.started, VD.c.ts))
        query = (select(VD.c.src_ip, func.count().label("n"), rank.label("rank"), first.label("first"), func.max(VD.c.ts).label("last"))
                 .select_from(VD.outerjoin(SES, SES.c.session == VD.c.session))
                 .where(VD.c.ts >= since, VD.c.ts < until, VD.c.src_ip.is_not(None))
                 .group_by(VD.c.src_ip).having(rank >= min_rank)
                 .order_by(rank.desc(), func.max(VD.c.ts).desc()).limit(MAX_SOURCES + 1))
        for r in await conn.execute(query):
            ip = canonical_ip(r.src_ip)
            s = source(ip, int(r.rank or 0)) if ip else None
            if s is not None:
                s.sessions += int(r.n or 0)
                s.first, s.last = _min(s.first, utc(r.first)), _max(s.last, utc(r.last))
        # 2. why: classes, rules and sensors of the verdicts that reach the threshold, gravest first
        query = (select(VD.c.src_ip, VD.c.sensor, VD.c.classes, VD.c.rules)
                 .where(VD.c.ts >= since, VD.c.ts < until, VD.c.severity_rank >= min_rank)
                 .order_by(VD.c.severity_rank.desc(), VD.c.ts))
        async for r in await conn.stream(query):
            s = by_ip.get(canonical_ip(r.src_ip) or "")
            if s is not None:
                _add(s.classes, r.classes or [])
                _add(s.rules, r.rules or [])
                _add(s.sensors, [r.sensor])
        # 3. correlation verdicts (sweeps, escalation …) judged in the period
        query = (select(SRC).where(SRC.c.ts >= since, SRC.c.ts < until, SRC.c.severity_rank >= min_rank)
                 .order_by(SRC.c.severity_rank.desc(), SRC.c.ts))
        async for r in await conn.stream(query):
            ip = canonical_ip(r.src_ip)
            s = source(ip, int(r.severity_rank or 0)) if ip else None
            if s is None:
                continue
            if not s.sessions:  # known from its correlation verdict only
                s.sessions = int(r.sessions or 0)
                seen = _parse_time(r.first_seen)
                s.first = _min(s.first, seen if seen is not None and seen >= since else utc(r.ts))
            s.last = _max(s.last, utc(r.ts))
            _add(s.classes, r.classes or [])
            _add(s.rules, r.rules or [])
            _add(s.sensors, [r.sensor])
        # 4. the jobs of sessions judged at or above the threshold, and their indicators
        by_sha: dict[str, Job] = {}
        values: dict[tuple[str, str], Indicator] = {}
        if jobs or campaign:
            query = (select(JOBS.c.shasum, JOBS.c.ts, VD.c.src_ip, JA.c.language, JA.c.campaign, JA.c.indicators)
                     .select_from(JOBS.join(JA, JA.c.shasum == JOBS.c.shasum).join(VD, VD.c.session == JOBS.c.session))
                     .where(JOBS.c.ts >= since, JOBS.c.ts < until, VD.c.severity_rank >= min_rank)
                     .order_by(JOBS.c.ts))
            if campaign:
                query = query.where(JA.c.campaign == campaign)
            async for r in await conn.stream(query):
                ts = utc(r.ts)
                job = by_sha.get(r.shasum)
                if job is None:
                    if len(by_sha) >= MAX_JOBS:
                        if "jobs" not in out.truncated:
                            out.truncated.append("jobs")
                        continue
                    job = by_sha[r.shasum] = Job(shasum=r.shasum, language=r.language or "", campaign=r.campaign or "")
                    _job_indicators(out, job, r.indicators, values)
                job.captures += 1
                job.first, job.last = _min(job.first, ts), _max(job.last, ts)
                ip = canonical_ip(r.src_ip)
                if ip:
                    _add(job.sources, [ip], 1000)
                for kind, value in job.indicators:
                    ind = values[(kind, value)]
                    ind.first, ind.last = _min(ind.first, ts), _max(ind.last, ts)
    if campaign:  # only the campaign's sources
        senders = {ip for job in by_sha.values() for ip in job.sources}
        by_ip = {ip: s for ip, s in by_ip.items() if ip in senders}
    for job in by_sha.values():
        if job.campaign:
            for ip in job.sources:
                if ip in by_ip:
                    _add(by_ip[ip].campaigns, [job.campaign])
    out.sources = sorted(by_ip.values(), key=lambda s: ip_sort_key(s.ip))
    out.jobs = sorted(by_sha.values(), key=lambda j: j.shasum) if jobs else []
    out.indicators = sorted(values.values(), key=lambda i: (i.type, i.value)) if jobs else []
    return out


def _job_indicators(out: Export, job: Job, items: Any, values: dict[tuple[str, str], Indicator]) -> None:
    for item in items if isinstance(items, list) else []:
        if not isinstance(item, dict):
            continue
        kind = item.get("type")
        value = clean_indicator(kind, item.get("value")) if isinstance(kind, str) else None
        if value is None:
            out.skipped += 1
            continue
        key = (kind, value)
        if key in job.indicators:
            continue
        ind = values.get(key)
        if ind is None:
            if len(values) >= MAX_VALUES:
                if "indicators" not in out.truncated:
                    out.truncated.append("indicators")
                continue
            ind = values[key] = Indicator(type=kind, value=value)
        job.indicators.append(key)
        _add(ind.jobs, [job.shasum], 100)
        _add(ind.campaigns, [job.campaign])


def _parse_time(text: Any) -> datetime | None:
    from honeyjet.store.database import parse_timestamp

    return parse_timestamp(text)


# -- blocklist -----------------------------------------------------------------------------------


def _stamp(dt: datetime) -> str:
    return dt.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _csv_cell(text: str) -> str:
    """No spreadsheet formula injection: a cell never starts with = + - @ or a control character."""
    return "'" + text if text[:1] in ("=", "+", "-", "@", "\t", "\r") else text


def blocklist(export: Export, fmt: str = "plain") -> str:
    """The exported sources as a plain list, CSV or an nftables file (``nft -f``)."""
    sources = export.sources
    span = f"{_stamp(export.since)} to {_stamp(export.until)}"
    what = f"{len(sources)} source address{'es' if len(sources) != 1 else ''} with severity >= {export.min_severity}"
    if export.campaign:
        what += f" that sent jobs of campaign {export.campaign}"
    if fmt == "plain":
        lines = [f"# honeyjet blocklist: {what}, {span}"]
        lines += [s.ip for s in sources]
        return "\n".join(lines) + "\n"
    if fmt == "csv":
        buf = io.StringIO()
        w = csv.writer(buf, lineterminator="\n")
        w.writerow(["ip", "severity", "classes", "sessions", "first_seen", "last_seen", "sensors"])
        for s in sources:
            w.writerow([s.ip, s.severity, _csv_cell(" ".join(s.classes)), s.sessions,
                        _stamp(s.first) if s.first else "", _stamp(s.last) if s.last else "",
                        _csv_cell(" ".join(s.sensors))])
        return buf.getvalue()
    if fmt == "nftables":
        return _nftables(export, what, span)
    raise ValueError(f"unknown blocklist format {fmt!r}")


def _nftables(export: Export, what: str, span: str) -> str:
    v4 = [s.ip for s in export.sources if s.version == 4]
    v6 = [s.ip for s in export.sources if s.version == 6]
    out = [
        f"# honeyjet blocklist: {what}, {span}",
        "# Load with `nft -f FILE`: it (re)fills the two sets and keeps whatever else the table holds,",
        "# e.g. a chain of yours:  chain input { type filter hook input priority filter - 10; ip saddr @blocklist drop; ip6 saddr @blocklist6 drop }",
        "table inet honeyjet {",
        "\tset blocklist {",
        "\t\ttype ipv4_addr",
        "\t\tflags interval",
        "\t}",
        "\tset blocklist6 {",
        "\t\ttype ipv6_addr",
        "\t\tflags interval",
        "\t}",
        "}",
        "flush set inet honeyjet blocklist",
        "flush set inet honeyjet blocklist6",
    ]
    for name, ips in (("blocklist", v4), ("blocklist6", v6)):
        for i in range(0, len(ips), 1000):  # one element statement per thousand addresses
            out.append(f"add element inet honeyjet {name} {{ " + ", ".join(ips[i:i + 1000]) + " }")
    return "\n".join(out) + "\n"


# -- command line ----------------------------------------------------------------------------------


class ExportError(Exception):
    """An operator mistake or an unusable database: one line on stderr, exit status 2."""


def _when(flag: str, text: str) -> datetime:
    from honeyjet.cli import parse_since
    from honeyjet.config import ConfigError

    try:
        return datetime.fromtimestamp(parse_since(text), UTC)
    except ConfigError as exc:
        raise ExportError(str(exc).replace("--since", flag, 1)) from None
    except (ValueError, OverflowError, OSError) as exc:
        raise ExportError(f"{flag} {text!r}: {exc}") from None


def _shown_url(url: str) -> str:
    from sqlalchemy.engine import make_url

    try:
        return make_url(url).render_as_string(hide_password=True)
    except Exception:
        return "the database URL"


async def _read(url: str, **kw: Any) -> Export:
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError, SQLAlchemyError

    from honeyjet.store.database import Database, SchemaError

    try:
        parsed = make_url(url)
    except ArgumentError:
        raise ExportError("cannot parse the database URL (--database-url or store.database_url)") from None
    if parsed.get_backend_name() not in ("sqlite", "postgresql"):
        raise ExportError(f"unsupported database {parsed.get_backend_name()!r} (use sqlite or postgresql)")
    if parsed.get_backend_name() == "sqlite":
        path = parsed.database or ""
        if not path or path == ":memory:" or not Path(path).is_file():
            raise ExportError(f"no database at {path or url}: run the sensor first, or give --data-dir or --database-url")
    db = Database(url)
    try:
        await db.open()
        return await collect(db, **kw)
    except (SQLAlchemyError, SchemaError, OSError, ImportError) as exc:
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise ExportError(f"cannot read database {_shown_url(url)}: {first}") from None
    finally:
        await db.close()


def render(kind: str, export: Export, *, fmt: str = "plain", org: str = "honeyjet", tlp: str = "amber") -> bytes:
    if kind == "stix":
        from honeyjet.outputs.stix import stix_bundle

        return _json(stix_bundle(export, org=org, tlp=tlp))
    if kind == "misp":
        from honeyjet.outputs.misp import misp_event

        return _json(misp_event(export, org=org, tlp=tlp))
    return blocklist(export, fmt).encode()


def _json(doc: Any) -> bytes:
    import orjson

    return orjson.dumps(doc, option=orjson.OPT_INDENT_2) + b"\n"


def cmd_export(args: argparse.Namespace) -> int:
    from honeyjet.config import ConfigError

    try:
        kind = args.kind
        severity = args.min_severity or DEFAULT_MIN_SEVERITY[kind]
        if severity not in SEVERITY_RANK:
            raise ExportError(f"--min-severity {severity!r}: use one of {', '.join(SEVERITIES)}")
        if args.format not in BLOCKLIST_FORMATS:
            raise ExportError(f"--format {args.format!r}: use one of {', '.join(BLOCKLIST_FORMATS)}")
        if args.tlp not in TLPS:
            raise ExportError(f"--tlp {args.tlp!r}: use one of {', '.join(TLPS)}")
        since = _when("--since", args.since)
        until = _when("--until", args.until) if args.until else datetime.now(UTC)
        if since >= until:
            raise ExportError(f"--since {args.since!r} is not before --until {args.until or 'now'!r}")
        from honeyjet.config import load_settings

        settings = load_settings(args.config, overrides={"sensor": {"data_dir": str(args.data_dir)}} if args.data_dir else {})
        url = str(args.database_url or settings.database_url)
        org = args.org or f"honeyjet {settings.sensor_name}"
        export = asyncio.run(_read(url, since=since, until=until, min_severity=severity, campaign=args.campaign or "",
                                   jobs=kind != "blocklist"))
        data = render(kind, export, fmt=args.format, org=org, tlp=args.tlp)
    except (ExportError, ConfigError) as exc:
        print(f"honeyjet: {exc}", file=sys.stderr)
        return EXIT_USAGE
    if export.truncated:
        print(f"honeyjet: export: capped ({', '.join(export.truncated)}); narrow the period", file=sys.stderr)
    if args.output is None:
        sys.stdout.buffer.write(data)
        sys.stdout.flush()
        return 0
    from honeyjet.fsutil import atomic_write

    try:
        atomic_write(Path(args.output), data, mode=0o644)
    except OSError as exc:
        print(f"honeyjet: -o {args.output}: {exc.strerror or exc}", file=sys.stderr)
        return EXIT_USAGE
    return 0


def register(subparsers: Any) -> argparse.ArgumentParser:
    """Add ``export`` to a ``honeyjet`` argparse sub-parser set."""
    p = subparsers.add_parser(
        "export", help="write verdicts as a STIX 2.1 bundle, a MISP event or a blocklist (stdout by default)",
        description="Export malicious sources and job indicators from the sensor's (or a fleet's) database.")
    p.add_argument("kind", choices=KINDS, help="stix: STIX 2.1 bundle; misp: MISP event JSON; blocklist: addresses")
    p.add_argument("--config", type=Path, help="operator TOML file (default: <data-dir>/honeyjet.toml if present)")
    p.add_argument("--data-dir", type=Path, help="the sensor's data directory (its database is honeyjet.db there)")
    p.add_argument("--database-url", help="read this database instead (e.g. a fleet's postgresql+asyncpg://…)")
    p.add_argument("--since", default="7d", help="start of the period: 7d, 24h, 30m or an ISO date (default 7d)")
    p.add_argument("--until", help="end of the period, same forms (default: now)")
    p.add_argument("--campaign", help="only this campaign's jobs and the sources that sent them")
    p.add_argument("--min-severity", help="lowest verdict severity exported: info, low, medium, high, critical "
                   "(default: medium for stix and misp, high for blocklist)")
    p.add_argument("--format", default="plain", help="blocklist format: plain, csv or nftables (default plain)")
    p.add_argument("--org", help="organisation named as the producer (STIX identity, MISP Orgc; default: honeyjet <sensor name>)")
    p.add_argument("--tlp", default="amber", help="TLP marking of stix and misp exports: clear, green, amber, red (default amber)")
    p.add_argument("-o", "--output", type=Path, help="write to this file (atomically) instead of stdout")
    p.set_defaults(func=cmd_export)
    return p
