"""Alerting: which verdicts become alerts, how often, and the sink that hands them to channels.

:class:`AlertPolicy` is pure (an injectable clock, no I/O): it turns a verdict event into an
alert dict or into a counted non-alert (below the threshold, filtered by class, a nuisance
source, suppressed by the per-(source, rule) throttle). :class:`Digest` batches alerts for
digest mode. :class:`AlertSink` is the event-bus sink that runs the policy and puts each
alert (or each period's digest) into every enabled channel — syslog, webhook, email, each a
:class:`~honeyjet.outputs.base.QueuedOutput` that fails alone.

Channel items are tuples ``(kind, payload)``: ``("alert", alert)``, ``("digest", digest)``
and, for the syslog all-events feed, ``("event", event)``.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import time
from collections import OrderedDict
from typing import Any, Callable, Iterable
from urllib.parse import urlsplit

from honeyjet.aioutil import cancel_and_wait
from honeyjet.events import rfc3339

log = logging.getLogger(__name__)

SEVERITY_RANK = {"info": 0, "low": 1, "medium": 2, "high": 3, "critical": 4}
SESSION_VERDICT = "honeyjet.verdict.session"
SOURCE_VERDICT = "honeyjet.verdict.source"
DIGEST_KEEP = 1000  # alerts kept per digest period; the rest are counted
LIST_KEEP = 32  # entries kept of each list field (classes, rules, attribution)
TEXT_KEEP = 256  # characters kept of each string in an alert

# ----------------------------------------------------------------------------------------
# text helpers shared by the channels


def oneline(value: Any, limit: int = TEXT_KEEP) -> str:
    """``value`` as one bounded line: control and line-separator characters become ``\\xNN``
    / ``\\uNNNN`` text, so nothing from an event can start a new line or header."""
    text = value if isinstance(value, str) else str(value)
    if len(text) > limit:
        text = text[:limit] + "…"
    if text.isprintable():
        return text
    out = []
    for ch in text:
        if ch.isprintable():
            out.append(ch)
        elif ord(ch) < 0x100:
            out.append(f"\\x{ord(ch):02x}")
        else:
            out.append(f"\\u{ord(ch):04x}" if ord(ch) < 0x10000 else f"\\U{ord(ch):08x}")
    return "".join(out)


def _strings(values: Any, limit: int = LIST_KEEP) -> list[str]:
    if not isinstance(values, (list, tuple)):
        return []
    return [oneline(v) for v in values[:limit]]


def clip_utf8(text: str, limit: int) -> str:
    """At most ``limit`` UTF-8 bytes of ``text``, cut on a character boundary."""
    data = text.encode("utf-8")
    if len(data) <= limit:
        return text
    return data[: max(0, limit)].decode("utf-8", "ignore")


# ----------------------------------------------------------------------------------------
# the policy


class AlertPolicy:
    """Verdict events in, alert dicts (or None) out; counts every decision.

    Throttle: one alert per (src_ip, rule) per ``throttle`` seconds. A verdict alerts when at
    least one of its rules is outside its window; then every one of its keys restarts its
    window and the alert's ``suppressed`` is the largest number of repeats any of its keys
    saw since that key last alerted. A verdict whose every key is inside its window is
    suppressed and counted on each key. At most ``max_tracked`` keys are kept (the least
    recently alerted are forgotten first).
    """

    def __init__(self, settings: Any, sensor_name: str = "", *, clock: Callable[[], float] = time.monotonic) -> None:
        self.min_rank = SEVERITY_RANK[settings.min_severity]
        self.classes = frozenset(settings.classes)
        self.source_verdicts = bool(settings.source_verdicts)
        self.throttle = float(settings.throttle)
        self.max_tracked = int(settings.max_tracked)
        self.networks = parse_networks(settings.nuisance_networks)
        self.user_agents = tuple(ua.lower() for ua in settings.nuisance_user_agents if ua)
        self.sensor_name = sensor_name
        self.clock = clock
        # (src_ip, rule) -> [time it last alerted, repeats suppressed since]
        self.windows: OrderedDict[tuple[str, str], list[float]] = OrderedDict()
        self.counters: dict[str, int] = {"alerts": 0, "suppressed": 0, "nuisance": 0, "below": 0, "filtered": 0, "ignored": 0,
                                         "evicted": 0, "digests": 0}
        self.verdict_ids = frozenset({SESSION_VERDICT, SOURCE_VERDICT} if self.source_verdicts else {SESSION_VERDICT})

    # -- decisions ------------------------------------------------------------------------

    def judge(self, event: dict[str, Any]) -> dict[str, Any] | None:
        """The alert for a verdict event, or None (not a verdict we alert on, or counted)."""
        eventid = event.get("eventid")
        if eventid not in self.verdict_ids:
            return None
        if event.get("rerun"):
            self.counters["ignored"] += 1
            return None
        if SEVERITY_RANK.get(str(event.get("severity")), -1) < self.min_rank:
            self.counters["below"] += 1
            return None
        classes = _strings(event.get("classes"))
        if self.classes and not self.classes.intersection(classes):
            self.counters["filtered"] += 1
            return None
        src_ip = str(event.get("src_ip") or "")
        attribution = _strings(event.get("attribution"))
        if self.is_nuisance(src_ip, attribution):
            self.counters["nuisance"] += 1
            return None
        kind = "source" if eventid == SOURCE_VERDICT else "session"
        rules = _strings(event.get("rules"))
        names = _strings(event.get("rule_names"))
        if kind == "source" and isinstance(event.get("new_rules"), list) and event["new_rules"]:
            named = dict(zip(rules, names))
            rules = _strings(event["new_rules"])
            names = [named.get(r, r) for r in rules]
        suppressed = self._throttle(src_ip, rules)
        if suppressed is None:
            self.counters["suppressed"] += 1
            return None
        self.counters["alerts"] += 1
        return make_alert(event, kind, classes, rules, names, attribution, suppressed, self.sensor_name)

    def is_nuisance(self, src_ip: str, attribution: Iterable[str]) -> bool:
        if self.networks and src_ip:
            try:
                addr = ipaddress.ip_address(src_ip.split("%", 1)[0])
            except ValueError:
                addr = None
            if addr is not None:
                mapped = getattr(addr, "ipv4_mapped", None)
                for net in self.networks:
                    if addr in net or (mapped is not None and mapped in net):
                        return True
        if self.user_agents:
            for item in attribution:
                if item[:11].lower() == "user-agent:":
                    agent = item[11:].lower()
                    if any(ua in agent for ua in self.user_agents):
                        return True
        return False

    def _throttle(self, src_ip: str, rules: list[str]) -> int | None:
        """Suppressed repeats to report when the verdict alerts, or None when it is suppressed."""
        if self.throttle <= 0:
            return 0
        now = self.clock()
        keys = [(src_ip, r) for r in (rules or [""])]
        windows = self.windows
        open_ = [windows.get(k) for k in keys]
        if all(w is not None and now - w[0] < self.throttle for w in open_):
            for w in open_:
                assert w is not None
                w[1] += 1
            return None
        suppressed = max((int(w[1]) for w in open_ if w is not None), default=0)
        for k in keys:
            windows[k] = [now, 0]
            windows.move_to_end(k)
        while len(windows) > self.max_tracked:
            windows.popitem(last=False)
            self.counters["evicted"] += 1
        return suppressed


def make_alert(event: dict[str, Any], kind: str, classes: list[str], rules: list[str], names: list[str], attribution: list[str],
               suppressed: int, sensor_name: str = "") -> dict[str, Any]:
    """The alert dict for a verdict event (every string bounded and on one line)."""
    src_ip = oneline(event.get("src_ip") or "", 64)
    severity = oneline(event.get("severity") or "", 16)
    if kind == "source":
        services = _strings(event.get("services"))
        service = ",".join(services) or oneline(event.get("service") or "", 64)
    else:
        service = oneline(event.get("service") or event.get("protocol") or "", 64)
    primary = classes[0] if classes else "unclassified"
    where = f"on {service}" if kind == "session" else f"across {service or 'its sessions'}"
    message = f"{severity} {primary} from {src_ip or '-'} {where}: {', '.join(rules) or 'no rule'}"
    if suppressed:
        message += f" (+{suppressed} suppressed)"
    return {
        "kind": kind,
        "timestamp": oneline(event.get("timestamp") or rfc3339(time.time()), 64),
        "sensor": oneline(event.get("sensor") or sensor_name, 128),
        "src_ip": src_ip,
        "session": oneline(event.get("session") or "", 64) if kind == "session" else "",
        "service": service,
        "severity": severity,
        "classes": classes,
        "rules": rules,
        "rule_names": names,
        "attribution": attribution,
        "suppressed": suppressed,
        "event_uuid": oneline(event.get("event_uuid") or "", 64),
        "message": oneline(message, 1024),
    }


def parse_networks(values: Iterable[str]) -> list[ipaddress.IPv4Network | ipaddress.IPv6Network]:
    nets = []
    for value in values:
        try:
            nets.append(ipaddress.ip_network(str(value).strip(), strict=False))
        except ValueError:
            raise ValueError(f"alerts.nuisance_networks: {str(value)[:64]!r} is not a network (CIDR)") from None
    return nets


# ----------------------------------------------------------------------------------------
# digests


class Digest:
    """Alerts of one period: the first ``keep`` kept, the rest counted."""

    def __init__(self, keep: int = DIGEST_KEEP, *, clock: Callable[[], float] = time.time) -> None:
        self.keep = keep
        self.clock = clock
        self.alerts: list[dict[str, Any]] = []
        self.count = 0
        self.start = clock()

    def add(self, alert: dict[str, Any]) -> None:
        self.count += 1
        if len(self.alerts) < self.keep:
            self.alerts.append(alert)

    def take(self, sensor_name: str, counters: dict[str, int] | None = None) -> dict[str, Any] | None:
        """This period's digest (None when it had no alert); starts the next period."""
        now = self.clock()
        alerts, count, start = self.alerts, self.count, self.start
        self.alerts, self.count, self.start = [], 0, now
        if not count:
            return None
        by_severity: dict[str, int] = {}
        for a in alerts:
            by_severity[a["severity"]] = by_severity.get(a["severity"], 0) + 1
        digest = {
            "kind": "digest",
            "sensor": sensor_name,
            "period_start": rfc3339(start),
            "period_end": rfc3339(now),
            "count": count,
            "omitted": count - len(alerts),
            "by_severity": by_severity,
            "digest": alerts,
        }
        if counters is not None:
            digest["totals"] = dict(counters)
        return digest


# ----------------------------------------------------------------------------------------
# the sink


class AlertSink:
    """Event-bus sink: runs the policy and feeds the channels (alerts or periodic digests)."""

    name = "alerts"

    def __init__(self, policy: AlertPolicy, channels: list[Any], *, digest: float = 0.0, sensor_name: str = "") -> None:
        self.policy = policy
        self.channels = channels
        self.counters = policy.counters
        self.interval = float(digest)
        self.digest = Digest() if self.interval > 0 else None
        self.sensor_name = sensor_name
        self._ticker: asyncio.Task[None] | None = None

    @property
    def depth(self) -> int:
        """Alerts waiting for the next digest (0 without digests)."""
        return self.digest.count if self.digest is not None else 0

    def write_line(self, event: dict[str, Any], line: bytes | None) -> None:
        """The bus's own event (read, never changed or kept): no per-event copy on the hot path."""
        self.write(event)

    def write(self, event: dict[str, Any]) -> None:
        if event.get("eventid") not in self.policy.verdict_ids:
            return
        alert = self.policy.judge(event)
        if alert is None:
            return
        if self.digest is not None:
            self.digest.add(alert)
        else:
            self._send(("alert", alert))

    def _send(self, item: tuple[str, dict[str, Any]]) -> None:
        for ch in self.channels:
            ch.put(item)

    def flush(self) -> bool:
        """Send the current period's digest, if it has any alert."""
        if self.digest is None:
            return False
        item = self.digest.take(self.sensor_name, self.counters)
        if item is None:
            return False
        self.counters["digests"] += 1
        self._send(("digest", item))
        return True

    async def _tick(self) -> None:
        while True:
            await asyncio.sleep(self.interval)
            try:
                self.flush()
            except Exception:  # never let the ticker die
                log.exception("alert digest failed")

    async def start(self) -> None:
        for ch in self.channels:
            await ch.start()
        if self.digest is not None:
            self._ticker = asyncio.create_task(self._tick(), name="alerts-digest")

    async def stop(self) -> None:
        if self._ticker is not None:
            await cancel_and_wait(self._ticker)
            self._ticker = None
            self.flush()  # the last period's alerts go out before the channels drain
        for ch in self.channels:
            try:
                await ch.stop()
            except Exception:
                log.exception("alert channel %s failed to stop", ch.name)


class EventFeed:
    """Event-bus sink that puts every event into a channel (``syslog.all_events``).

    ``owns`` says whether this feed starts and stops the channel (it does not when the
    alert sink owns the same channel)."""

    name = "syslog-events"

    def __init__(self, channel: Any, *, owns: bool) -> None:
        self.channel = channel
        self.owns = owns
        self.channels = [channel] if owns else []  # for the metrics output (else the alert sink lists it)

    def write(self, event: dict[str, Any]) -> None:
        self.channel.put(("event", event))

    async def start(self) -> None:
        if self.owns:
            await self.channel.start()

    async def stop(self) -> None:
        if self.owns:
            await self.channel.stop()


# ----------------------------------------------------------------------------------------
# building from settings


def _no_crlf(key: str, value: str) -> None:
    if any(c in value for c in "\r\n\0"):
        raise ValueError(f"{key}: must not contain CR, LF or NUL")


def validate(settings: Any) -> None:
    """Checks the pydantic models cannot express; ValueError naming the key."""
    parse_networks(settings.alerts.nuisance_networks)
    if settings.webhook.enabled:
        url = settings.webhook.url
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname or any(c in url for c in "\r\n\t "):
            raise ValueError("webhook.url: must be an http(s) URL")
        for name, value in settings.webhook.headers.items():
            if not name or any(c in name for c in " :\t\r\n\0"):
                raise ValueError(f"webhook.headers: {name[:64]!r} is not a header name")
            _no_crlf(f"webhook.headers.{name}", value)
    if settings.email.enabled:
        em = settings.email
        if not em.recipients:
            raise ValueError("email.recipients: at least one recipient is needed")
        for i, addr in enumerate([em.sender, *em.recipients]):
            key = "email.recipients" if i else "email.sender"
            _no_crlf(key, addr)
            if "@" not in addr or any(c.isspace() for c in addr) or len(addr) > 254:
                raise ValueError(f"{key}: {addr[:64]!r} is not an e-mail address")
        if not em.host.strip():
            raise ValueError("email.host: must not be empty")
        _no_crlf("email.username", em.username)
    if settings.syslog.enabled and not settings.syslog.host.strip():
        raise ValueError("syslog.host: must not be empty")


def build_alerts(settings: Any, sensor: Any) -> list[Any]:
    """The bus sinks for [alerts] and [syslog] all_events (ValueError on bad settings)."""
    validate(settings)
    al = settings.alerts
    name = settings.sensor_name
    syslog = None
    if settings.syslog.enabled:
        from honeyjet.outputs.syslog import SyslogOutput

        syslog = SyslogOutput(settings.syslog, hostname=name)
    sinks: list[Any] = []
    if al.enabled:
        channels: list[Any] = []
        if syslog is not None:
            channels.append(syslog)
        if settings.webhook.enabled:
            from honeyjet.outputs.webhook import WebhookOutput

            channels.append(WebhookOutput(settings.webhook))
        if settings.email.enabled:
            from honeyjet.outputs.mail import EmailOutput

            channels.append(EmailOutput(settings.email, sensor_name=name))
        if not channels:
            raise ValueError("alerts.enabled: no channel enabled — enable [syslog], [webhook] or [email]")
        sinks.append(AlertSink(AlertPolicy(al, name), channels, digest=al.digest, sensor_name=name))
    if syslog is not None and settings.syslog.all_events:
        sinks.append(EventFeed(syslog, owns=not al.enabled))
    return sinks
