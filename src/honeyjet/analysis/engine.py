"""The analysis sink: features → rules → verdicts, forensics for jobs, sources and campaigns.

:class:`Analyzer` is an event-bus sink (registered last). It folds every session event
into that session's :class:`~honeyjet.analysis.features.SessionFeatures`; when the
session closes it

1. sends each captured job to job forensics (sandboxed worker processes, never on the
   event loop), stores the extracted text and previews as artifacts, emits
   ``honeyjet.job.analyzed`` and assigns the job to a campaign;
2. evaluates the rules and emits ``honeyjet.verdict.session`` (classes, severity, every
   rule that fired, attribution);
3. updates the source profile and emits ``honeyjet.verdict.source`` when a correlation
   rule fires for the first time in its window.

The same object re-analyses stored events (``honeyjet analyze``) without a running
sensor: :meth:`feed` and :meth:`drain` are the whole interface. Open sessions are
bounded (``MAX_OPEN``; the oldest is judged early when a flood exceeds it); a failure
inside analysis is logged and counted, never propagated to the sensor.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any, Awaitable, Callable

import orjson

from honeyjet.analysis.features import SessionFeatures, add_job_report
from honeyjet.analysis.rules import RuleSet, Verdict
from honeyjet.analysis.sources import CampaignIndex, SessionSummary, SourceTracker
from honeyjet.text import escape

log = logging.getLogger(__name__)

MAX_OPEN = 65536
MAX_JOBS_ANALYZED_PER_SESSION = 16
REPORT_CACHE = 512  # each keeps up to 64 KiB of extracted text: ≤ 32 MiB
TEXT_EVENT_CHARS = 4096

_IDENTITY = ("session", "protocol", "src_ip", "src_port", "dst_ip", "dst_port")
_OWN = frozenset({"honeyjet.job.analyzed", "honeyjet.verdict.session", "honeyjet.verdict.source"})

# (path, job meta) -> report dict as produced by honeyjet.analysis.forensics.JobReport.to_dict()
ForensicsFn = Callable[[str], Awaitable[Any]]


class Analyzer:
    name = "analysis"

    def __init__(
        self,
        bus: Any,
        rules: RuleSet,
        *,
        artifacts: Any = None,
        forensics: Any = None,
        window: float = 3600.0,
        max_sources: int = 100000,
        campaign_distance: int = 3,
        clock: Callable[[], float] = time.time,
    ):
        self.bus = bus
        self.rules = rules
        self.artifacts = artifacts
        self.forensics = forensics  # a ForensicsPool (async analyze(path) -> JobReport) or None
        self.clock = clock
        self.open: OrderedDict[str, SessionFeatures] = OrderedDict()
        self.sources = SourceTracker(window=window, max_sources=max_sources)
        self.campaigns = CampaignIndex(distance=campaign_distance)
        self.reports: OrderedDict[str, dict[str, Any]] = OrderedDict()  # shasum -> job.analyzed fields
        self.inflight: dict[str, asyncio.Future[dict[str, Any] | None]] = {}
        self.tasks: set[asyncio.Task[None]] = set()
        self.counters: dict[str, int] = {"verdicts": 0, "errors": 0, "evicted": 0, "jobs_analyzed": 0, "memo_hits": 0}
        self.memo: OrderedDict[bytes, _Judged] = OrderedDict()  # session signature -> its verdict

    # -- sink interface ----------------------------------------------------------------
    async def start(self) -> None:
        return None

    async def stop(self) -> None:
        await self.drain()
        self.open.clear()  # sessions end with session.closed before the sinks stop: nothing is left open
        if self.forensics is not None:
            try:
                await self.forensics.close()
            except Exception:
                log.exception("closing the forensics pool failed")

    def write(self, event: dict[str, Any]) -> None:
        try:
            self.feed(event)
        except Exception:
            self.counters["errors"] += 1
            log.exception("analysis failed on %s", event.get("eventid"))

    # -- the work ----------------------------------------------------------------------
    def feed(self, event: dict[str, Any]) -> None:
        eid = event.get("eventid", "")
        if eid in _OWN:
            return
        sid = event.get("session")
        if not sid:
            return
        rec = self.open.get(sid)
        if rec is None:
            if len(self.open) >= MAX_OPEN:
                _, oldest = self.open.popitem(last=False)
                self.counters["evicted"] += 1
                self._judge(oldest.features(self.rules.vocab))
            rec = self.open[sid] = _Open()
        rec.add(event, self.rules.vocab)
        if eid == "honeyjet.session.closed":
            del self.open[sid]
            key = rec.signature()
            if key is not None:
                hit = self.memo.get(key)
                if hit is not None:
                    self.memo.move_to_end(key)
                    self.counters["memo_hits"] += 1
                    self._later_hit(rec.events, hit)
                    return
            feats = rec.features(self.rules.vocab)
            feats.memo_key = key
            if feats.jobs_pending and self.forensics is not None and self.artifacts is not None:
                self._spawn(self._analyze_jobs(feats))
            else:
                self._later(feats)

    def _later_hit(self, events: list[dict[str, Any]], hit: "_Judged") -> None:
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            self._publish(events[0], hit, [])
            return
        loop.call_soon(self._publish_safely, events[0], hit)

    def _publish_safely(self, first: dict[str, Any], hit: "_Judged") -> None:
        try:
            self._publish(first, hit, [])
        except Exception:
            self.counters["errors"] += 1
            log.exception("verdict failed for session %s", first.get("session"))

    def _later(self, feats: SessionFeatures) -> None:
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            self._judge(feats)
            return
        loop.call_soon(self._judge_safely, feats)

    def _spawn(self, coro: Awaitable[None]) -> None:
        try:
            task = asyncio.get_running_loop().create_task(coro)  # type: ignore[arg-type]
        except RuntimeError:  # no loop (offline re-analysis): run it to completion
            asyncio.run(coro)  # type: ignore[arg-type]
            return
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    async def drain(self) -> None:
        """Wait for every job analysis and verdict in flight."""
        while self.tasks:
            await asyncio.gather(*list(self.tasks), return_exceptions=True)
        await asyncio.sleep(0)

    def _judge_safely(self, feats: SessionFeatures) -> None:
        try:
            self._judge(feats)
        except Exception:
            self.counters["errors"] += 1
            log.exception("verdict failed for session %s", feats.session)

    async def _analyze_jobs(self, feats: SessionFeatures) -> None:
        try:
            for sha, job in list(feats.jobs_pending.items())[:MAX_JOBS_ANALYZED_PER_SESSION]:
                fields = await self._job_report(sha, job)
                if fields is None:
                    continue
                campaign = ""
                simhash = fields.get("simhash")
                if isinstance(simhash, str) and simhash:
                    try:
                        campaign = self.campaigns.assign(int(simhash, 16), sha, str(feats.identity.get("src_ip") or ""))
                    except ValueError:
                        campaign = ""
                fields = dict(fields, job=job, campaign=campaign)
                if campaign and campaign not in feats.campaigns:
                    feats.campaigns.append(campaign)
                self._emit("honeyjet.job.analyzed", _job_message(fields), feats, fields)
                add_job_report(feats, fields)
                feats.jobs_pending.pop(sha, None)
        except Exception:
            self.counters["errors"] += 1
            log.exception("job forensics failed for session %s", feats.session)
        self._judge_safely(feats)

    async def _job_report(self, sha: str, job: int) -> dict[str, Any] | None:
        cached = self.reports.get(sha)
        if cached is not None:
            self.reports.move_to_end(sha)
            return dict(cached, cached=True)
        running = self.inflight.get(sha)
        if running is not None:  # the same bytes are being analysed for another session
            fields = await asyncio.shield(running)
            return None if fields is None else dict(fields, cached=True)
        future: asyncio.Future[dict[str, Any] | None] = asyncio.get_running_loop().create_future()
        self.inflight[sha] = future
        fields = None
        try:
            path = self.artifacts.path(sha)
            if path is not None:
                report = await self.forensics.analyze(str(path))
                self.counters["jobs_analyzed"] += 1
                fields = self._report_fields(sha, report)
                self.reports[sha] = fields
                while len(self.reports) > REPORT_CACHE:
                    self.reports.popitem(last=False)
        finally:
            del self.inflight[sha]
            future.set_result(fields)
        return None if fields is None else dict(fields, cached=False)

    def _report_fields(self, sha: str, report: Any) -> dict[str, Any]:
        """A forensics report → the fields of ``honeyjet.job.analyzed`` (artifacts stored)."""
        d = report.to_dict() if hasattr(report, "to_dict") else dict(report)
        text = d.get("text") or ""
        previews: list[str] = []
        for png in list(getattr(report, "previews", None) or [])[:3]:
            info = self.artifacts.put(png)
            if info.shasum:
                previews.append(info.shasum)
        text_sha = ""
        if text:
            info = self.artifacts.put(text.encode("utf-8", "replace"))
            text_sha = info.shasum
        pjl = d.get("pjl") or {}
        http = d.get("http") or {}
        fields: dict[str, Any] = {
            "shasum": sha,
            "language": str(d.get("language") or ""),
            "wrappers": [str(w) for w in d.get("wrappers") or []][:8],
            "magic": escape(str(d.get("magic") or ""), 256),
            "pjl": _escape_tree(pjl),
            "http": _escape_tree(http),
            "pcl": _escape_tree(d.get("pcl") or {}),
            "text": escape(text[:TEXT_EVENT_CHARS].encode("utf-8", "replace"), TEXT_EVENT_CHARS * 4),
            "text_chars": len(text),
            "text_source": str(d.get("text_source") or "none"),
            "text_shasum": text_sha,
            "pages": d.get("pages"),
            "entropy": d.get("entropy"),
            "indicators": [
                {"type": str(i.get("type", "")), "value": escape(str(i.get("value", "")), 256), "offset": i.get("offset", 0)}
                for i in (d.get("indicators") or [])[:200] if isinstance(i, dict)
            ],
            "simhash": str(d.get("simhash") or ""),
            "previews": previews,
            "sandbox": str(d.get("sandbox") or ""),
            "errors": [escape(str(e), 256) for e in (d.get("errors") or [])][:16],
            "duration_ms": d.get("duration_ms"),
        }
        fields["_text_full"] = text[:65536]  # folded into features, not emitted
        return fields

    def _emit(self, eventid: str, message: str, feats: SessionFeatures, fields: dict[str, Any]) -> None:
        identity = {k: feats.identity.get(k) for k in _IDENTITY}
        out = {k: v for k, v in fields.items() if not k.startswith("_")}
        self.bus.emit(eventid, message, identity, out)

    def _judge(self, feats: SessionFeatures) -> Verdict:
        features = feats.finish()
        verdict = self.rules.evaluate(features)
        judged = _Judged(
            verdict=verdict,
            fields={
                "classes": verdict.classes,
                "severity": verdict.severity,
                "rules": verdict.rules,
                "rule_names": [r.name for r in verdict.fired],
                "service": features["service"],
                "attribution": _attribution(features),
            },
            jobs=features["job_count"],
            answered=features["bytes_out"] > 0,
            user_agents=tuple(features["http_user_agents"][:4]),
            private=features["src_private"],
        )
        key = getattr(feats, "memo_key", None)
        if key is not None and not features["job_count"]:
            self.memo[key] = judged
            while len(self.memo) > MEMO:
                self.memo.popitem(last=False)
        self._publish(feats.identity, judged, feats.campaigns)
        return verdict

    def _publish(self, identity: dict[str, Any], j: "_Judged", campaigns: list[str]) -> None:
        """Emit a session verdict and feed the source tracker."""
        self.counters["verdicts"] += 1
        f = j.fields
        what = ", ".join(f["classes"]) if f["classes"] else "unclassified"
        ident = {k: identity.get(k) for k in _IDENTITY}
        self.bus.emit(
            "honeyjet.verdict.session",
            f"session {ident['session']} from {ident['src_ip']} ({f['service']}): {what} [{f['severity']}]",
            ident,
            f,
        )
        self._source(ident, j, campaigns)

    def _source(self, ident: dict[str, Any], j: "_Judged", campaigns: list[str]) -> None:
        ip = str(ident.get("src_ip") or "")
        if not ip or not self.rules.source_rules:
            return
        now = self.clock()
        verdict = j.verdict
        summary = SessionSummary(
            ts=now,
            service=j.fields["service"],
            primary=verdict.primary,
            classes=tuple(verdict.classes),
            rules=tuple(verdict.rules),
            jobs=j.jobs,
            answered=j.answered,
            user_agents=j.user_agents,
        )
        prof = self.sources.observe(ip, summary, private=j.private, attribution=j.fields["attribution"],
                                    campaigns=campaigns)
        # a source repeating the same session (a probe flood) is re-judged at most once a second
        same = (summary.service, summary.classes, summary.rules, summary.jobs, summary.answered, summary.user_agents)
        if same == prof.last_summary and now - prof.last_judged < SOURCE_REJUDGE and not campaigns:
            return
        prof.last_summary, prof.last_judged = same, now
        sfeat = self.sources.features(prof, now, self.campaigns)
        sv = self.rules.evaluate_source(sfeat)
        if not sv.rules:
            return
        fresh = self.sources.new_rules(prof, sv.rules, now)
        if not fresh:
            return
        self.bus.emit(
            "honeyjet.verdict.source",
            f"source {ip}: {', '.join(sv.classes)} [{sv.severity}] — {'; '.join(self.rules.by_id[r].name for r in fresh)}",
            ident,
            {
                "classes": sv.classes,
                "severity": sv.severity,
                "rules": sv.rules,
                "rule_names": [r.name for r in sv.fired],
                "new_rules": fresh,
                "sessions": sfeat["src_sessions"],
                "services": sorted(sfeat["src_services"]),
                "session_classes": sorted(sfeat["src_primaries"]),
                "sequence": sfeat["src_sequence"][-32:],
                "first_seen": _rfc3339(prof.first_seen),
                "jobs": sfeat["src_jobs"],
                "campaigns": sorted(prof.campaigns)[:32],
                "attribution": [escape(a, 256) for a in prof.attribution[:32]],
            },
        )


MEMO = 4096
SOURCE_REJUDGE = 1.0  # seconds
MEMO_EVENTS = 16  # sessions with more events are judged without the memo
MEMO_BYTES = 4096  # per signature: the memo holds ≤ 16 MiB
# what a verdict cannot depend on: identity, times, ids, the free-text message, transcript names
_NOT_SIGNED = frozenset({"event_uuid", "timestamp", "session", "src_ip", "src_port", "dst_ip", "dst_port", "sensor",
                         "message", "duration_ms", "transcript_shasum", "transcript_size", "transcript_truncated", "detail"})


@dataclass(slots=True)
class _Judged:
    verdict: Verdict
    fields: dict[str, Any]  # of honeyjet.verdict.session
    jobs: int
    answered: bool
    user_agents: tuple[str, ...]
    private: bool


class _Open:
    """An open session: its events while it is small (so identical sessions — a scanner's probe
    flood — can reuse one verdict), or its features once it is not."""

    __slots__ = ("events", "feats", "size")

    def __init__(self) -> None:
        self.events: list[dict[str, Any]] = []
        self.feats: SessionFeatures | None = None
        self.size = 0

    def add(self, event: dict[str, Any], vocab: Any) -> None:
        if self.feats is not None:
            self.feats.add(event)
            return
        self.events.append(event)
        if len(self.events) > MEMO_EVENTS or event.get("eventid") == "honeyjet.job.captured":
            self.feats = SessionFeatures(vocab)
            for e in self.events:
                self.feats.add(e)

    def signature(self) -> bytes | None:
        """Everything a verdict can depend on, or None when the session is not memoised."""
        if self.feats is not None or not self.events:
            return None
        first = self.events[0]
        parts = [orjson.dumps([first.get("protocol"), _private_ip(str(first.get("src_ip") or ""))])]
        size = 0
        for e in self.events:
            part = orjson.dumps({k: v for k, v in e.items() if k not in _NOT_SIGNED}, default=str)
            size += len(part)
            if size > MEMO_BYTES:
                return None
            parts.append(part)
        return b"\n".join(parts)

    def features(self, vocab: Any) -> SessionFeatures:
        if self.feats is None:
            self.feats = SessionFeatures(vocab)
            for e in self.events:
                self.feats.add(e)
        return self.feats


def _private_ip(ip: str) -> bool:
    from honeyjet.analysis.features import _private

    return _private(ip)


def _rfc3339(ts: float) -> str:
    from honeyjet.events import rfc3339

    return rfc3339(ts)


def _attribution(f: dict[str, Any]) -> list[str]:
    """Who the session says is behind it (already escaped text from the events)."""
    out: list[str] = []

    def add(kind: str, values: list[str]) -> None:
        for v in values:
            item = f"{kind}:{v}"
            if v and item not in out and len(out) < 16:
                out.append(item)

    add("user", [*f["job_users"], *f["lpd_users"], *f["ipp_users"]])
    add("host", f["lpd_hosts"])
    add("job", f["job_names"])
    add("user-agent", f["http_user_agents"])
    add("origin", f["http_origin"])
    return [escape(a, 256) for a in out]


def _escape_tree(value: Any, depth: int = 0) -> Any:
    """Bounded, escaped copy of a small JSON-like structure from a forensics report."""
    if depth > 4:
        return None
    if isinstance(value, dict):
        return {escape(str(k), 64): _escape_tree(v, depth + 1) for k, v in list(value.items())[:32]}
    if isinstance(value, (list, tuple)):
        return [_escape_tree(v, depth + 1) for v in list(value)[:64]]
    if isinstance(value, str):
        return escape(value, 512)
    if isinstance(value, (bool, int, float)) or value is None:
        return value
    return escape(str(value), 256)


def _job_message(fields: dict[str, Any]) -> str:
    inds = fields.get("indicators") or []
    return (f"job {fields.get('job')} analysed: {fields.get('language') or 'unknown'}, "
            f"{fields.get('text_chars', 0)} characters of text, {len(inds)} indicators"
            + (f", campaign {fields['campaign']}" if fields.get("campaign") else ""))
