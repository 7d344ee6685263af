"""Prometheus /metrics: it parses, counters move with real traffic, the port is strict, labels stay bounded."""

from __future__ import annotations

import asyncio
import socket
import time

import aiohttp
import pytest
from conftest import exchange, free_offset, running, sensor_settings
from prometheus_client.parser import text_string_to_metric_families
from test_cli import honeyjet, one_line_error
from test_service import json_events

from honeyjet.analysis.rules import SEVERITIES
from honeyjet.events import ALL_EVENT_IDS
from honeyjet.outputs.metrics import OTHER, SERVICES, SPARE, MetricsSink, build_metrics

Samples = dict[tuple[str, frozenset], float]

PJL_ID = b"@PJL INFO ID\r\n"
TEXT_JOB = b"\x1b%-12345X@PJL JOB NAME=\"report\"\r\n@PJL ENTER LANGUAGE=TEXT\r\nquarterly numbers\r\n\x1b%-12345X"


def metrics_url(settings, path: str = "/metrics") -> str:
    return f"http://127.0.0.1:{settings.metrics.port + settings.sensor.port_offset}{path}"


def parse(text: str) -> Samples:
    """Every sample of the exposition, keyed by (sample name, labels)."""
    out: Samples = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            out[(sample.name, frozenset(sample.labels.items()))] = sample.value
    return out


async def scrape(http: aiohttp.ClientSession, settings) -> Samples:
    async with http.get(metrics_url(settings)) as resp:
        assert resp.status == 200
        assert resp.headers["Content-Type"] == "text/plain; version=0.0.4; charset=utf-8"
        return parse(await resp.text())


def value(samples: Samples, name: str, /, **labels: str) -> float:
    return samples.get((name, frozenset(labels.items())), 0.0)


def total(samples: Samples, name: str, /, **labels: str) -> float:
    """Sum of a metric's samples whose labels include ``labels``."""
    want = set(labels.items())
    return sum(v for (n, lab), v in samples.items() if n == name and want <= lab)


async def test_metrics_parse_and_counters_move_with_traffic(data_dir):
    settings = sensor_settings(data_dir, metrics={"enabled": True})
    async with running(settings) as sensor, aiohttp.ClientSession() as http:
        before = await scrape(http, settings)
        # the sensor's own gauges and identity are there before any traffic
        info = [lab for (n, lab) in before if n == "honeyjet_info"]
        assert len(info) == 1 and dict(info[0])["persona"] == sensor.device.persona.id
        assert abs(value(before, "honeyjet_start_time_seconds") - sensor.started) < 1
        assert ("honeyjet_database_queue_depth", frozenset()) in before
        assert value(before, "honeyjet_active_sessions") == 0
        assert value(before, "honeyjet_sessions_total", service="pjl") == 0  # enabled services start at 0

        # a held connection shows as an active session
        reader, writer = await asyncio.open_connection("127.0.0.1", settings.listen_port(settings.pjl))
        for _ in range(100):
            during = await scrape(http, settings)
            if value(during, "honeyjet_active_sessions") == 1:
                break
            await asyncio.sleep(0.02)
        assert value(during, "honeyjet_active_sessions") == 1
        writer.close()

        pjl = settings.listen_port(settings.pjl)
        for _ in range(3):
            assert b"@PJL INFO ID" in await exchange(pjl, PJL_ID)
        await exchange(pjl, TEXT_JOB)
        assert b"HTTP/1.1" in await exchange(settings.listen_port(settings.http), b"GET / HTTP/1.1\r\nHost: printer\r\n\r\n")

        deadline = time.monotonic() + 15
        while True:  # verdicts come from the analyzer after each session closes (the job goes through forensics)
            after = await scrape(http, settings)
            if total(after, "honeyjet_verdicts_total") - total(before, "honeyjet_verdicts_total") >= 6 or time.monotonic() > deadline:
                break
            await asyncio.sleep(0.05)

    def delta(name: str, /, **labels: str) -> float:
        return total(after, name, **labels) - total(before, name, **labels)

    # 1 held + 3 probes + 1 job on 9100, 1 request on the web server
    assert delta("honeyjet_sessions_total", service="pjl") == 5
    assert delta("honeyjet_sessions_total", service="http") == 1
    assert delta("honeyjet_sessions_closed_total", service="pjl") == 5
    assert delta("honeyjet_sessions_closed_total", service="http") == 1
    assert delta("honeyjet_events_total", eventid="honeyjet.session.connect") == 6
    assert delta("honeyjet_sensor_counter_total", name="sessions") == 6
    assert delta("honeyjet_verdicts_total", service="pjl") == 5
    assert delta("honeyjet_verdicts_total", service="http") == 1
    assert all(dict(lab)["severity"] in SEVERITIES for (n, lab) in after if n == "honeyjet_verdicts_total")
    assert delta("honeyjet_jobs_total", service="pjl") == 1
    captured = [e for e in json_events(data_dir) if e["eventid"] == "honeyjet.job.captured"]
    assert len(captured) == 1 and captured[0]["size"] > 0
    assert delta("honeyjet_job_bytes_total", service="pjl") == captured[0]["size"]
    assert delta("honeyjet_bytes_received_total", service="pjl") == 3 * len(PJL_ID) + len(TEXT_JOB)
    assert delta("honeyjet_bytes_sent_total", service="pjl") > 0 and delta("honeyjet_bytes_sent_total", service="http") > 0
    assert delta("honeyjet_database_total", what="accepted") > 0
    assert value(after, "honeyjet_active_sessions") == 0
    assert value(after, "honeyjet_artifacts_used_bytes") > value(before, "honeyjet_artifacts_used_bytes")


async def test_only_metrics_is_served_and_without_a_banner(data_dir):
    settings = sensor_settings(data_dir, metrics={"enabled": True}, analysis={"enabled": False})
    async with running(settings), aiohttp.ClientSession() as http:
        async with http.get(metrics_url(settings)) as resp:
            assert resp.status == 200 and "Server" not in resp.headers
            assert "honeyjet_events_total" in await resp.text()
        for path in ("/", "/other", "/metrics/x", "/metrics.txt"):
            async with http.get(metrics_url(settings, path)) as resp:
                assert resp.status == 404, path
                assert "Server" not in resp.headers
        async with http.post(metrics_url(settings), data=b"x") as resp:
            assert resp.status == 405 and "Server" not in resp.headers


async def test_a_taken_metrics_port_is_a_one_line_startup_error(tmp_path):
    offset = free_offset()
    port = 9464 + offset
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", port))
        busy.listen()
        result = await asyncio.to_thread(
            honeyjet, "run", "--data-dir", str(tmp_path), "--bind", "127.0.0.1", "--port-offset", str(offset),
            env={"HONEYJET_METRICS__ENABLED": "true"},
        )
    err = one_line_error(result)
    assert "metrics.port" in err and f"127.0.0.1:{port}" in err and "in use" in err


def test_an_out_of_range_metrics_port_names_the_key(data_dir):
    settings = sensor_settings(data_dir, metrics={"enabled": True, "port": 65535})
    with pytest.raises(ValueError, match=r"^metrics\.port 65535 \+ sensor\.port_offset"):
        build_metrics(settings, None)


def test_hostile_event_values_keep_label_cardinality_bounded():
    sink = MetricsSink(None, classes=["scanner_banner_grab"])
    hostile = ["x" * 10_000, "evil\"}\n# HELP", "pjl\n", "ÿ", "", None, 7, ["pjl"], {"a": 1}, "a b", "UPPER"]
    hostile += [f"svc{i}" for i in range(1000)]  # identifier-like, but far more than the spare slots
    for i, bad in enumerate(hostile):
        sink.write({"eventid": "honeyjet.session.connect", "protocol": bad})
        sink.write({"eventid": "honeyjet.session.closed", "protocol": bad, "reason": bad, "bytes_in": bad, "bytes_out": -5})
        sink.write({"eventid": "honeyjet.verdict.session", "protocol": "pjl", "service": bad, "classes": [bad], "severity": bad})
        sink.write({"eventid": "honeyjet.verdict.source", "classes": bad, "severity": "high"})
        sink.write({"eventid": "honeyjet.job.captured", "protocol": bad, "size": bad})
        sink.write({"eventid": "honeyjet.limit.hit", "limit": bad})
        sink.write({"eventid": bad if isinstance(bad, str) else f"honeyjet.{i}"})
    sink.write({"eventid": "honeyjet.verdict.session", "protocol": "pjl", "service": "pjl", "classes": ["scanner_banner_grab"], "severity": "low"})
    text = sink.render().decode()
    samples = parse(text)
    assert "evil" not in text and "x" * 100 not in text and "svc999" not in text
    assert value(samples, "honeyjet_verdicts_total", service="pjl", **{"class": "scanner_banner_grab"}, severity="low") == 1

    def series(name: str) -> int:
        return sum(1 for (n, _) in samples if n == name)

    assert series("honeyjet_events_total") == len(ALL_EVENT_IDS) + 1  # the catalogue, plus "other"
    assert value(samples, "honeyjet_events_total", eventid=OTHER) == len(hostile)
    assert series("honeyjet_sessions_total") <= len(SERVICES) + SPARE + 1
    assert value(samples, "honeyjet_sessions_total", service=OTHER) >= len(hostile) - SPARE
    assert series("honeyjet_sessions_closed_total") <= (len(SERVICES) + SPARE + 1) * (7 + SPARE + 1)
    assert series("honeyjet_limit_events_total") <= 14 + SPARE + 1
    # severities admit nothing outside the five levels
    assert {dict(lab)["severity"] for (n, lab) in samples if n == "honeyjet_verdicts_total"} <= set(SEVERITIES) | {OTHER}
    assert series("honeyjet_verdicts_total") <= (len(SERVICES) + SPARE + 1) * (1 + SPARE + 1) * (len(SEVERITIES) + 1)
    assert total(samples, "honeyjet_job_bytes_total") == 7  # the one positive int; sizes that are not byte counts add nothing
    assert total(samples, "honeyjet_bytes_sent_total") == 0


async def test_scrape_reads_the_sensor_state_that_is_there():
    """A bare object stands in for the sensor: the parts it has are exported, missing ones are skipped."""

    class Output:
        name = "webhook"
        depth = 3
        counters = {"queued": 10, "sent": 6, "failed": 1, "dropped": 2}

    class Alerts:
        name = "alerts"
        channels = [Output()]

    class Forwarder:
        pending = 42
        lag_seconds = 7.5
        connected = True
        counters = {"events": 100, "batches": 4, "failures": 1}

    class Bus:
        sinks = [Output(), Alerts()]
        sink_errors = {"webhook": 2}

    class Sensor:
        counters = {"sessions": 5, "events_dropped": 9, "rejected_sessions_total": 1}
        bus = Bus()
        forwarder = Forwarder()
        started = 1_700_000_000.0

    samples = parse(MetricsSink(Sensor()).render().decode())
    assert value(samples, "honeyjet_output_queue_depth", output="webhook") == 3
    assert value(samples, "honeyjet_output_queue_depth", output="alerts.webhook") == 3
    assert value(samples, "honeyjet_output_total", output="alerts.webhook", what="dropped") == 2
    assert value(samples, "honeyjet_drops_total", what="outputs") == 4
    assert value(samples, "honeyjet_drops_total", what="session_events") == 9
    assert value(samples, "honeyjet_sensor_counter_total", name="rejected_sessions_total") == 1
    assert value(samples, "honeyjet_sink_errors_total", sink="webhook") == 2
    assert value(samples, "honeyjet_forward_pending_events") == 42
    assert value(samples, "honeyjet_forward_lag_seconds") == 7.5
    assert value(samples, "honeyjet_forward_connected") == 1
    assert value(samples, "honeyjet_forward_total", what="failures") == 1
    assert value(samples, "honeyjet_start_time_seconds") == 1_700_000_000.0
    assert not any(n.startswith(("honeyjet_database", "honeyjet_active", "honeyjet_analysis")) for (n, _) in samples)
