"""Prometheus metrics: ``GET /metrics`` on its own port.

:func:`build_metrics` returns an event-bus sink that does two things:

* It counts events as they pass: sessions, closes, verdicts, jobs, bytes and limit hits
  by service, class, severity and so on. ``write()`` only looks up a key in a dict and
  adds to it; nothing else runs per event.
* When Prometheus scrapes, it reads the sensor's own state: sensor-wide counters, active
  sessions, the database queue, artifact store usage, the analyzer, each output's queue
  and counters, and the forwarder's lag. Every one of these is optional and read with
  ``getattr``, so a missing part exports nothing instead of failing the scrape.

Every label value comes from honeyjet's own vocabulary: service names, event ids,
severities, rule classes, limit and counter names. Nothing an attacker sent becomes a
label (no addresses, no user agents). Each label also admits only a few values beyond
the known ones, and only short identifier-like values. Anything else is reported as
``other``, so the number of series stays bounded whatever the events carry.

The server answers ``GET``/``HEAD /metrics`` and nothing else. It sends no ``Server``
banner and writes no access log. It has no authentication: bind it to loopback, or
firewall the port so that only the scraper can reach it.
"""

from __future__ import annotations

import logging
import re
import socket
import time
from typing import Any, Callable, Iterable, Iterator, Mapping

from aiohttp import web
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, InfoMetricFamily, Metric

from honeyjet import __version__
from honeyjet.analysis.rules import SEVERITIES
from honeyjet.events import ALL_EVENT_IDS

log = logging.getLogger(__name__)

#: the text exposition format generate_latest() writes
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
OTHER = "other"
SERVICES = ("pjl", "http", "ipp", "lpd", "snmp", "browse", "sensor")
CLOSE_REASONS = ("eof", "done", "idle_timeout", "session_bytes", "reset", "shutdown", "error")
LIMITS = ("line_length", "session_bytes", "idle_timeout", "job_bytes", "disk_quota", "events_per_session", "jobs_per_session",
          "ps_events", "control_file", "replies_per_source", "cpu_share", "packets_per_source", "sessions_total", "sessions_per_source")
_SAFE = re.compile(r"[a-z][a-z0-9_.:-]{0,47}")
SPARE = 16  # label values admitted beyond the known vocabulary, per label
MAX_KEYS = 128  # entries read from one counters mapping at scrape time


class Labels:
    """The values one label may take.

    The known vocabulary always passes. After it, at most ``spare`` other short,
    identifier-like values are admitted, first come first served. Anything else maps to
    ``other``.
    """

    __slots__ = ("values", "spare")

    def __init__(self, known: Iterable[str], spare: int = SPARE) -> None:
        self.values: dict[str, str] = {v: v for v in known}
        self.spare = spare

    def learn(self, known: Iterable[str]) -> None:
        """Add to the known vocabulary (e.g. the rule set's classes, once it is loaded)."""
        for value in known:
            if isinstance(value, str):
                self.values[value] = value

    def __call__(self, value: Any) -> str:
        try:
            return self.values[value]
        except (KeyError, TypeError):
            return self._admit(value)

    def _admit(self, value: Any) -> str:
        if self.spare > 0 and isinstance(value, str) and _SAFE.fullmatch(value):
            self.spare -= 1
            self.values[value] = value
            return value
        return OTHER


def _bump(counts: dict[Any, int], key: Any, n: int = 1) -> None:
    counts[key] = counts.get(key, 0) + n


def _amount(value: Any) -> int:
    """A byte count from an event: a non-negative int, or 0."""
    return value if type(value) is int and value > 0 else 0


def _number(value: Any) -> float | None:
    if isinstance(value, bool):
        return float(value)
    if isinstance(value, (int, float)):
        return float(value)
    return None


class MetricsSink:
    """Counts events for Prometheus and serves ``/metrics`` (see the module docstring)."""

    name = "metrics"

    def __init__(self, sensor: Any = None, *, bind: str = "127.0.0.1", port: int = 0, services: Iterable[str] = (),
                 classes: Iterable[str] = ()) -> None:
        self.sensor = sensor
        self.bind = bind
        self.port = port
        self.started = 0.0
        self.address: tuple[str, int] | None = None  # where it listens, once started
        self.eventids = Labels(ALL_EVENT_IDS, spare=0)
        self.services = Labels(SERVICES)
        self.reasons = Labels(CLOSE_REASONS)
        self.severities = Labels(SEVERITIES, spare=0)
        self.classes = Labels(classes)
        self.limits = Labels(LIMITS)
        # label tuple -> count; read at scrape time
        self.events: dict[str, int] = dict.fromkeys(sorted(ALL_EVENT_IDS), 0)
        self.sessions: dict[str, int] = dict.fromkeys(services, 0)  # the enabled services, so rate() has a start
        self.closed: dict[tuple[str, str], int] = {}
        self.bytes_in: dict[str, int] = {}
        self.bytes_out: dict[str, int] = {}
        self.verdicts: dict[tuple[str, str, str], int] = {}
        self.source_verdicts: dict[tuple[str, str], int] = {}
        self.jobs: dict[str, int] = {}
        self.job_bytes: dict[str, int] = {}
        self.limit_hits: dict[str, int] = {}
        self._handlers: dict[str, Callable[[dict[str, Any]], None]] = {
            "honeyjet.session.connect": self._connect,
            "honeyjet.session.closed": self._closed,
            "honeyjet.verdict.session": self._verdict,
            "honeyjet.verdict.source": self._source_verdict,
            "honeyjet.job.captured": self._job,
            "honeyjet.limit.hit": self._limit,
        }
        self.registry = CollectorRegistry(auto_describe=False)
        self.registry.register(_Collector(self))
        self._runner: web.AppRunner | None = None
        self._sock: socket.socket | None = None

    # -- counting (the hot path) --------------------------------------------------------

    def write_line(self, event: dict[str, Any], line: bytes | None) -> None:
        """The bus's own event (read, never changed or kept): no per-event copy on the hot path."""
        self.write(event)

    def write(self, event: dict[str, Any]) -> None:
        eid = event.get("eventid")
        try:
            self.events[eid] += 1  # every catalogue id is there from the start
        except (KeyError, TypeError):  # not a catalogue id: counted, nothing more to read
            _bump(self.events, self.eventids(eid))
            return
        handler = self._handlers.get(eid)
        if handler is not None:
            handler(event)

    def _connect(self, event: dict[str, Any]) -> None:
        _bump(self.sessions, self.services(event.get("protocol")))

    def _closed(self, event: dict[str, Any]) -> None:
        service = self.services(event.get("protocol"))
        _bump(self.closed, (service, self.reasons(event.get("reason"))))
        _bump(self.bytes_in, service, _amount(event.get("bytes_in")))
        _bump(self.bytes_out, service, _amount(event.get("bytes_out")))

    def _primary(self, event: dict[str, Any]) -> tuple[str, str]:
        classes = event.get("classes")
        primary = self.classes(classes[0]) if isinstance(classes, list) and classes else "none"
        return primary, self.severities(event.get("severity"))

    def _verdict(self, event: dict[str, Any]) -> None:
        cls, severity = self._primary(event)
        _bump(self.verdicts, (self.services(event.get("service") or event.get("protocol")), cls, severity))

    def _source_verdict(self, event: dict[str, Any]) -> None:
        _bump(self.source_verdicts, self._primary(event))

    def _job(self, event: dict[str, Any]) -> None:
        service = self.services(event.get("protocol"))
        _bump(self.jobs, service)
        _bump(self.job_bytes, service, _amount(event.get("size")))

    def _limit(self, event: dict[str, Any]) -> None:
        _bump(self.limit_hits, self.limits(event.get("limit")))

    # -- exposition -----------------------------------------------------------------------

    def render(self) -> bytes:
        """The current metrics in the text exposition format."""
        return generate_latest(self.registry)

    async def _handle(self, request: web.Request) -> web.Response:
        return web.Response(body=self.render(), headers={"Content-Type": CONTENT_TYPE, "Cache-Control": "no-store"})

    @staticmethod
    async def _no_banner(request: web.Request, response: web.StreamResponse) -> None:
        response.headers.popall("Server", None)

    # -- lifecycle ------------------------------------------------------------------------

    async def start(self) -> None:
        """Bind ``bind:port`` and serve; a port that cannot be bound is a one-line StartupError."""
        from honeyjet.sensor import StartupError, bind_socket

        self.started = time.time()
        # the analyzer is built before the bus starts: its rule set names the classes
        self.classes.learn(getattr(getattr(getattr(self.sensor, "analyzer", None), "rules", None), "classes", None) or ())
        try:
            self._sock = bind_socket(self.bind, self.port, "tcp")
        except socket.gaierror as exc:
            raise StartupError(f"error: metrics.bind = {self.bind!r}: {exc.strerror}") from None
        except OSError as exc:
            raise StartupError(f"error: cannot listen on {self.bind}:{self.port}/tcp for metrics.port: {exc.strerror or exc}") from None
        app = web.Application()
        app.router.add_get("/metrics", self._handle)
        app.on_response_prepare.append(self._no_banner)
        self._runner = web.AppRunner(app, handle_signals=False, access_log=None, shutdown_timeout=2.0)
        await self._runner.setup()
        await web.SockSite(self._runner, self._sock).start()
        addr = self._sock.getsockname()
        self.address = (addr[0], addr[1])

    async def stop(self) -> None:
        runner, self._runner = self._runner, None
        if runner is not None:
            await runner.cleanup()
        sock, self._sock = self._sock, None
        if sock is not None:
            sock.close()


class _Collector:
    """Builds every metric family at scrape time, from the sink's counts and the sensor's state."""

    def __init__(self, sink: MetricsSink) -> None:
        self.sink = sink

    def collect(self) -> Iterator[Metric]:
        yield from self._events()
        for part in (self._sensor, self._limiter, self._database, self._artifacts, self._analysis, self._outputs, self._forwarder):
            try:
                yield from part()
            except Exception:  # a half-built or changing part must not fail the whole scrape
                log.exception("metrics: reading %s failed", part.__name__.strip("_"))

    # -- from events ----------------------------------------------------------------------

    def _events(self) -> Iterator[Metric]:
        s = self.sink
        yield _counter("honeyjet_events_total", "Events emitted, by event id.", ["eventid"], s.events)
        yield _counter("honeyjet_sessions_total", "Sessions opened (honeyjet.session.connect), by service.", ["service"], s.sessions)
        yield _counter("honeyjet_sessions_closed_total", "Sessions closed, by service and reason.", ["service", "reason"], s.closed)
        yield _counter("honeyjet_bytes_received_total", "Bytes received from peers in closed sessions, by service.", ["service"], s.bytes_in)
        yield _counter("honeyjet_bytes_sent_total", "Bytes sent to peers in closed sessions, by service.", ["service"], s.bytes_out)
        yield _counter("honeyjet_verdicts_total", "Session verdicts, by service, primary class and severity.",
                       ["service", "class", "severity"], s.verdicts)
        yield _counter("honeyjet_source_verdicts_total", "Source (correlation) verdicts, by primary class and severity.",
                       ["class", "severity"], s.source_verdicts)
        yield _counter("honeyjet_jobs_total", "Print jobs captured, by service.", ["service"], s.jobs)
        yield _counter("honeyjet_job_bytes_total", "Bytes of captured print jobs (as received), by service.", ["service"], s.job_bytes)
        yield _counter("honeyjet_limit_events_total", "honeyjet.limit.hit events, by limit.", ["limit"], s.limit_hits)

    # -- from the sensor, at scrape time ----------------------------------------------------

    def _sensor(self) -> Iterator[Metric]:
        sensor = self.sink.sensor
        device = getattr(sensor, "device", None)
        persona = getattr(getattr(device, "persona", None), "id", "") or ""
        settings = getattr(sensor, "settings", None)
        info = InfoMetricFamily("honeyjet", "honeyjet version, persona and sensor name.")
        info.add_metric([], {"version": __version__, "persona": str(persona)[:64], "sensor": str(getattr(settings, "sensor_name", ""))[:64]})
        yield info
        started = _number(getattr(sensor, "started", None)) or self.sink.started
        yield _gauge("honeyjet_start_time_seconds", "When the sensor started (Unix time).", started)
        counters = getattr(sensor, "counters", None)
        if isinstance(counters, Mapping):
            yield _counter("honeyjet_sensor_counter_total", "The sensor's own counters (sessions, rejected_*, limit_*, drops, errors …).",
                           ["name"], _bounded(counters))
        drops: dict[str, float] = {}
        if isinstance(counters, Mapping):
            for what, key in (("session_events", "events_dropped"), ("browse_datagrams", "browse_dropped"),
                              ("snmp_sources", "snmp_dropped_sources"), ("snmp_cpu", "snmp_cpu_dropped")):
                drops[what] = _number(counters.get(key, 0)) or 0.0
        db = getattr(sensor, "db_sink", None)
        db_counters = getattr(db, "counters", None)
        if isinstance(db_counters, Mapping):
            drops["database_queue"] = _number(db_counters.get("dropped", 0)) or 0.0
            drops["database_failed"] = _number(db_counters.get("failed", 0)) or 0.0
        artifact_counters = getattr(getattr(sensor, "artifacts", None), "counters", None)
        if isinstance(artifact_counters, Mapping):
            drops["artifacts_quota"] = _number(artifact_counters.get("quota_drops", 0)) or 0.0
        outputs = list(_outputs(sensor))
        if outputs:
            drops["outputs"] = sum(_number(c.get("dropped", 0)) or 0.0 for _, _, c in outputs)
        if drops:
            yield _counter("honeyjet_drops_total", "Things counted instead of kept, by what: events past the per-session cap, "
                           "full queues, datagrams shed, objects cut by the disk quota.", ["what"], drops)
        errors = getattr(getattr(sensor, "bus", None), "sink_errors", None)
        if isinstance(errors, Mapping):
            yield _counter("honeyjet_sink_errors_total", "Exceptions raised by event sinks, by sink.", ["sink"], _bounded(errors))

    def _limiter(self) -> Iterator[Metric]:
        limiter = getattr(getattr(self.sink.sensor, "ctx", None), "limiter", None)
        if limiter is None:
            return
        yield _gauge("honeyjet_active_sessions", "Sessions open now.", _number(getattr(limiter, "active", None)))
        by_source = getattr(limiter, "by_source", None)
        if isinstance(by_source, Mapping):
            yield _gauge("honeyjet_active_sources", "Distinct source addresses with a session open now.", float(len(by_source)))
        yield _gauge("honeyjet_sessions_limit", "limits.sessions_total: the most sessions open at once.", _number(getattr(limiter, "total", None)))

    def _database(self) -> Iterator[Metric]:
        db = getattr(self.sink.sensor, "db_sink", None)
        if db is None:
            return
        yield _gauge("honeyjet_database_queue_depth", "Events waiting to be written to the database.", _number(getattr(db, "queued", None)))
        counters = getattr(db, "counters", None)
        if isinstance(counters, Mapping):
            yield _counter("honeyjet_database_total", "Database writer counters: accepted, written, batches, dropped, failed, retries.",
                           ["what"], _bounded(counters))

    def _artifacts(self) -> Iterator[Metric]:
        store = getattr(self.sink.sensor, "artifacts", None)
        if store is None:
            return
        counters = getattr(store, "counters", None)
        if isinstance(counters, Mapping):
            yield _counter("honeyjet_artifacts_total", "Artifact store counters: stored, duplicates, truncated, quota_drops, bytes, errors.",
                           ["what"], _bounded(counters))
        yield _gauge("honeyjet_artifacts_used_bytes", "Bytes in the artifact store.", _number(getattr(store, "usage_bytes", None)))
        yield _gauge("honeyjet_artifacts_quota_bytes", "limits.disk_quota: the artifact store's quota.", _number(getattr(store, "quota_bytes", None)))

    def _analysis(self) -> Iterator[Metric]:
        analyzer = getattr(self.sink.sensor, "analyzer", None)
        if analyzer is None:
            return
        open_sessions = getattr(analyzer, "open", None)
        if open_sessions is not None:
            yield _gauge("honeyjet_analysis_open_sessions", "Sessions the analyzer is collecting events for.", float(len(open_sessions)))
        tasks = getattr(analyzer, "tasks", None)
        if tasks is not None:
            yield _gauge("honeyjet_analysis_pending", "Sessions waiting for job forensics before their verdict.", float(len(tasks)))
        active = getattr(getattr(analyzer, "forensics", None), "active", None)
        if active is not None:
            yield _gauge("honeyjet_forensics_active", "Forensics workers busy now.", _number(active))
        counters = getattr(analyzer, "counters", None)
        if isinstance(counters, Mapping):
            yield _counter("honeyjet_analysis_total", "Analyzer counters: verdicts, jobs_analyzed, memo_hits, evicted, errors.",
                           ["what"], _bounded(counters))

    def _outputs(self) -> Iterator[Metric]:
        outputs = list(_outputs(self.sink.sensor))
        if not outputs:
            return
        depth = GaugeMetricFamily("honeyjet_output_queue_depth", "Items waiting in an output's queue.", labels=["output"])
        totals = CounterMetricFamily("honeyjet_output_total", "Output counters (queued, sent, failed, dropped), by output.", labels=["output", "what"])
        for name, queued, counters in outputs:
            if queued is not None:
                depth.add_metric([name], queued)
            for what, value in _bounded(counters).items():
                totals.add_metric([name, what], value)
        yield depth
        yield totals

    def _forwarder(self) -> Iterator[Metric]:
        fwd = getattr(self.sink.sensor, "forwarder", None)
        if fwd is None:
            return
        pending = _number(getattr(fwd, "pending", None))
        if pending is not None:
            yield _gauge("honeyjet_forward_pending_events", "Events not yet acknowledged by the collector.", pending)
        lag = _number(getattr(fwd, "lag_seconds", None))
        if lag is not None:
            yield _gauge("honeyjet_forward_lag_seconds", "Age of the oldest event not yet forwarded (0 when caught up).", lag)
        connected = getattr(fwd, "connected", None)
        if isinstance(connected, bool):
            yield _gauge("honeyjet_forward_connected", "1 when the last request to the collector succeeded.", float(connected))
        counters = getattr(fwd, "counters", None)
        if isinstance(counters, Mapping):
            yield _counter("honeyjet_forward_total", "Forwarder counters (sent, batches, failures …).", ["what"], _bounded(counters))


def _outputs(sensor: Any) -> Iterator[tuple[str, float | None, Mapping[str, Any]]]:
    """(name, queue depth, counters) of each queued output on the bus and of its channels."""
    seen = 0
    for sink in list(getattr(getattr(sensor, "bus", None), "sinks", None) or ()):
        parts = [sink] + list(getattr(sink, "channels", None) or ())
        for part in parts:
            counters = getattr(part, "counters", None)
            if not isinstance(counters, Mapping) or not hasattr(part, "depth"):
                continue
            name = str(getattr(part, "name", ""))
            if part is not sink:
                name = f"{getattr(sink, 'name', '')}.{name}"
            seen += 1
            if seen > MAX_KEYS:
                return
            yield (name if _SAFE.fullmatch(name) else OTHER), _number(getattr(part, "depth", None)), counters


def _bounded(counters: Mapping[Any, Any]) -> dict[str, float]:
    """At most MAX_KEYS numeric entries with identifier-like names; the rest summed as ``other``."""
    out: dict[str, float] = {}
    for key, value in list(counters.items()):
        number = _number(value)
        if number is None:
            continue
        name = key if isinstance(key, str) and _SAFE.fullmatch(key) and (key in out or len(out) < MAX_KEYS) else OTHER
        out[name] = out.get(name, 0.0) + number
    return out


def _counter(name: str, doc: str, labels: list[str], counts: Mapping[Any, float]) -> CounterMetricFamily:
    family = CounterMetricFamily(name, doc, labels=labels)
    for key, value in counts.items():
        family.add_metric(list(key) if isinstance(key, tuple) else [key], value)
    return family


def _gauge(name: str, doc: str, value: float | None) -> GaugeMetricFamily:
    family = GaugeMetricFamily(name, doc)
    if value is not None:
        family.add_metric([], value)
    return family


def build_metrics(settings: Any, sensor: Any) -> MetricsSink:
    """The metrics sink for ``[metrics]``; ValueError naming the key when the port is out of range."""
    ms = settings.metrics
    offset = settings.sensor.port_offset
    port = ms.port + offset
    if not 0 < port < 65536:
        raise ValueError(f"metrics.port {ms.port} + sensor.port_offset {offset} = {port} is not a valid port")
    enabled = [name for name in SERVICES if getattr(getattr(settings, name, None), "enabled", False)]
    return MetricsSink(sensor, bind=ms.bind, port=port, services=enabled)
