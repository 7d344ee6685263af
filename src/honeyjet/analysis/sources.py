"""Sources and campaigns: correlating sessions across ports, visits and sensors.

A :class:`SourceTracker` keeps a bounded profile per source address — first/last seen,
services, sessions and their verdicts, jobs, campaigns, who the jobs say sent them —
and, after every session verdict, evaluates the **source rules** (``[[source_rule]]``
in the rules files) over the source's sessions of the last ``analysis.source_window``
seconds: the seed's 9100 probe + port-80 urllib pair, a 9100/515/631 sweep, repeat
visits after the sensor answered, PRET's discovery order. A rule that fires for the
first time in a window produces a ``honeyjet.verdict.source`` event.

A :class:`CampaignIndex` groups near-identical jobs (64-bit simhash within
``analysis.campaign_distance`` bits, found through four 16-bit bands, so a lookup is a
few dictionary probes) into campaigns that span sources and sensors.
"""

from __future__ import annotations

from collections import Counter, OrderedDict, deque
from dataclasses import dataclass, field
from typing import Any

MAX_SESSIONS_PER_SOURCE = 256
MAX_ATTRIBUTION = 32
MAX_SEQUENCE = 64

SOURCE_FEATURES: dict[str, tuple[str, str]] = {
    "src_private": ("bool", "The source is loopback, RFC 1918, link-local or unique-local."),
    "src_sessions": ("int", "Sessions of the source in the window."),
    "src_services": ("set", "Services it used in the window (`pjl`, `http`, `ipp`, `lpd`, `snmp`, `browse`)."),
    "src_classes": ("set", "Every class of its session verdicts in the window."),
    "src_primaries": ("set", "Primary classes of its sessions in the window."),
    "src_rules": ("set", "Session rules that fired for it in the window."),
    "src_sequence": ("list", "`service:primary-class` of its latest 64 sessions in time order (`pjl:scanner_banner_grab`, …)."),
    "src_sequence_text": ("str", "The same joined by single spaces, for ordered regular expressions."),
    "src_services_seq": ("str", "Services of its latest sessions in time order joined by spaces, consecutive repeats collapsed (`ipp http snmp`; the last 64 changes)."),
    "src_jobs": ("int", "Jobs it sent in the window."),
    "src_answered_then_returned": ("bool", "An earlier session got an answer from the sensor and the source came back."),
    "src_returned_with_job": ("bool", "After a session without jobs that the sensor answered, a later session sent a job."),
    "src_span_s": ("float", "Seconds from its first to its last session in the window."),
    "src_user_agents": ("list", "HTTP User-Agents it used."),
    "src_campaigns": ("int", "Campaigns its jobs belong to."),
    "src_campaign_sources": ("int", "Most sources seen in any one of its campaigns (this sensor)."),
}


@dataclass(slots=True)
class SessionSummary:
    ts: float
    service: str
    primary: str
    classes: tuple[str, ...]
    rules: tuple[str, ...]
    jobs: int
    answered: bool
    user_agents: tuple[str, ...]


@dataclass
class SourceProfile:
    """One source. The sessions of the current window are kept with running tallies, so
    judging a source costs the same whether it sent three sessions or three hundred."""

    ip: str
    first_seen: float
    last_seen: float
    private: bool = False
    sessions: deque[SessionSummary] = field(default_factory=deque)
    tallies: dict[str, Counter[str]] = field(default_factory=lambda: {k: Counter() for k in _TALLIES})
    jobs: int = 0
    total_sessions: int = 0
    total_jobs: int = 0
    campaigns: set[str] = field(default_factory=set)
    attribution: list[str] = field(default_factory=list)
    fired: dict[str, float] = field(default_factory=dict)  # source rule id -> when it fired (window start)
    # order-dependent facts, kept as sessions arrive (the latest MAX_SEQUENCE)
    sequence: deque[str] = field(default_factory=lambda: deque(maxlen=MAX_SEQUENCE))
    services_seq: deque[str] = field(default_factory=lambda: deque(maxlen=MAX_SEQUENCE))
    answered_at: float = -1.0  # last session the sensor answered that sent no job
    returned_at: float = -1.0  # last session after such an answer
    returned_job_at: float = -1.0  # last session with a job after such an answer
    last_summary: tuple[Any, ...] = ()  # what the last judged session looked like (see Analyzer._source)
    last_judged: float = 0.0

    def attribute(self, items: list[str]) -> None:
        for item in items:
            if item not in self.attribution and len(self.attribution) < MAX_ATTRIBUTION:
                self.attribution.append(item)

    def _order(self, s: SessionSummary, window: float) -> None:
        self.sequence.append(f"{s.service}:{s.primary or 'unclassified'}")
        if not self.services_seq or self.services_seq[-1] != s.service:
            self.services_seq.append(s.service)
        if self.answered_at >= 0 and s.ts - self.answered_at <= window:
            self.returned_at = s.ts
            if s.jobs:
                self.returned_job_at = s.ts
        if s.answered and not s.jobs:
            self.answered_at = s.ts

    def _count(self, s: SessionSummary, sign: int) -> None:
        t = self.tallies
        for key, values in (("services", (s.service,)), ("classes", s.classes), ("primaries", (s.primary,) if s.primary else ()),
                            ("rules", s.rules), ("agents", s.user_agents)):
            c = t[key]
            for v in values:
                c[v] += sign
                if c[v] <= 0:
                    del c[v]
        self.jobs += sign * s.jobs

    def add(self, s: SessionSummary) -> None:
        if len(self.sessions) >= MAX_SESSIONS_PER_SOURCE:
            self._count(self.sessions.popleft(), -1)
        self.sessions.append(s)
        self._count(s, +1)

    def expire(self, oldest: float) -> None:
        while self.sessions and self.sessions[0].ts < oldest:
            self._count(self.sessions.popleft(), -1)


_TALLIES = ("services", "classes", "primaries", "rules", "agents")


class SourceTracker:
    """Bounded source profiles (least recently seen evicted first)."""

    def __init__(self, *, window: float, max_sources: int):
        self.window = window
        self.max_sources = max_sources
        self.profiles: OrderedDict[str, SourceProfile] = OrderedDict()
        self.evicted = 0

    def observe(self, ip: str, summary: SessionSummary, *, private: bool, attribution: list[str],
                campaigns: list[str]) -> SourceProfile:
        prof = self.profiles.get(ip)
        if prof is None:
            prof = SourceProfile(ip, summary.ts, summary.ts, private)
            self.profiles[ip] = prof
            while len(self.profiles) > self.max_sources:
                self.profiles.popitem(last=False)
                self.evicted += 1
        else:
            self.profiles.move_to_end(ip)
        prof.last_seen = max(prof.last_seen, summary.ts)
        prof.expire(summary.ts - self.window)
        prof.add(summary)
        prof._order(summary, self.window)
        prof.total_sessions += 1
        prof.total_jobs += summary.jobs
        prof.campaigns.update(campaigns)
        prof.attribute(attribution)
        return prof

    def features(self, prof: SourceProfile, now: float, campaigns: "CampaignIndex") -> dict[str, Any]:
        prof.expire(now - self.window)
        t = prof.tallies
        sessions = prof.sessions
        seq = list(prof.sequence)
        return {
            "src_private": prof.private,
            "src_sessions": len(sessions),
            "src_services": frozenset(t["services"]),
            "src_classes": frozenset(t["classes"]),
            "src_primaries": frozenset(t["primaries"]),
            "src_rules": frozenset(t["rules"]),
            "src_sequence": seq,
            "src_sequence_text": " ".join(seq),
            "src_services_seq": " ".join(prof.services_seq),
            "src_jobs": prof.jobs,
            "src_answered_then_returned": now - prof.returned_at <= self.window if prof.returned_at >= 0 else False,
            "src_returned_with_job": now - prof.returned_job_at <= self.window if prof.returned_job_at >= 0 else False,
            "src_span_s": (sessions[-1].ts - sessions[0].ts) if sessions else 0.0,
            "src_user_agents": list(t["agents"])[:16],
            "src_campaigns": len(prof.campaigns),
            "src_campaign_sources": max((campaigns.source_count(c) for c in prof.campaigns), default=0),
        }

    def new_rules(self, prof: SourceProfile, rule_ids: list[str], now: float) -> list[str]:
        """Rules not yet reported for this source in the current window (and mark them)."""
        fresh = []
        for rid in rule_ids:
            when = prof.fired.get(rid)
            if when is None or now - when > self.window:
                prof.fired[rid] = now
                fresh.append(rid)
        return fresh


def hamming(a: int, b: int) -> int:
    return (a ^ b).bit_count()


class CampaignIndex:
    """Near-duplicate jobs → campaign ids (bounded; oldest entries forgotten first)."""

    BANDS = 4

    def __init__(self, *, distance: int = 3, max_entries: int = 200000):
        self.distance = distance
        self.max_entries = max_entries
        self._bands: dict[tuple[int, int], list[int]] = {}
        self._entries: OrderedDict[int, str] = OrderedDict()  # simhash -> campaign
        self._sources: dict[str, set[str]] = {}
        self._jobs: dict[str, int] = {}

    def assign(self, simhash: int, shasum: str, source: str = "") -> str:
        """The campaign of a job with this simhash (a new one when nothing is near)."""
        campaign = self._entries.get(simhash)
        if campaign is None:
            campaign = self._nearest(simhash)
        if campaign is None:
            campaign = "c-" + (shasum[:12] or f"{simhash:016x}"[:12])
        if simhash not in self._entries:
            self._entries[simhash] = campaign
            for band in range(self.BANDS):
                self._bands.setdefault((band, (simhash >> (16 * band)) & 0xFFFF), []).append(simhash)
            while len(self._entries) > self.max_entries:
                old, _ = self._entries.popitem(last=False)
                for band in range(self.BANDS):
                    key = (band, (old >> (16 * band)) & 0xFFFF)
                    lst = self._bands.get(key)
                    if lst is not None:
                        try:
                            lst.remove(old)
                        except ValueError:
                            pass
                        if not lst:
                            del self._bands[key]
        srcs = self._sources.setdefault(campaign, set())
        if source and len(srcs) < 100000:
            srcs.add(source)
        self._jobs[campaign] = self._jobs.get(campaign, 0) + 1
        return campaign

    def _nearest(self, simhash: int) -> str | None:
        best: tuple[int, str] | None = None
        for band in range(self.BANDS):  # within 3 bits of 64, at least one 16-bit band is equal
            for cand in self._bands.get((band, (simhash >> (16 * band)) & 0xFFFF), ())[:512]:
                d = hamming(cand, simhash)
                if d <= self.distance and (best is None or d < best[0]):
                    best = (d, self._entries[cand])
        return best[1] if best else None

    def source_count(self, campaign: str) -> int:
        return len(self._sources.get(campaign, ()))

    def jobs(self, campaign: str) -> int:
        return self._jobs.get(campaign, 0)
