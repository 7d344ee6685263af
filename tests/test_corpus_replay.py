"""Replay every 9100 payload of the labelled corpus: whole, at its chunk offsets, byte by byte."""

from __future__ import annotations

import json

import pytest

from conftest import exchange, running, sensor_settings
from helpers import CORPUS, SHARED_CORPUS, corpus, drive, make_device, split_at
from honeyjet.protocols.pjl import PJLEngine

ENTRIES = corpus(9100)
ID_PROBE = b"\x1b%-12345X@PJL INFO ID\r\n\x1b%-12345X\r\n"


def test_corpus_copy_is_current():
    if SHARED_CORPUS.exists():
        assert json.loads(SHARED_CORPUS.read_text()) == json.loads(CORPUS.read_text())
    assert len(ENTRIES) > 40


def _signature(run):
    caps = [(c["kind"], c["meta"], c["data"], c["end"]) for c in run.captures]
    return run.sent, run.events, caps


@pytest.mark.parametrize("entry", ENTRIES, ids=lambda e: e["id"])
def test_engine_output_is_independent_of_chunking(entry):
    payload = entry["payload"]
    whole = drive(PJLEngine(make_device()), [payload])
    splits = drive(PJLEngine(make_device()), split_at(payload, entry.get("chunk_offsets", [])))
    bytewise = drive(PJLEngine(make_device()), [payload[i : i + 1] for i in range(len(payload))])
    assert _signature(whole) == _signature(splits) == _signature(bytewise)
    # everything that is not a PJL command was captured
    captured = sum(len(c["data"]) for c in whole.captures)
    assert captured <= len(payload)


async def test_corpus_over_tcp(data_dir):
    settings = sensor_settings(data_dir)
    async with running(settings) as sensor:
        port = settings.listen_port(settings.pjl)
        for entry in ENTRIES:
            payload = entry["payload"]
            await exchange(port, split_at(payload, entry.get("chunk_offsets", [])), read_timeout=0.5)
            await exchange(port, [payload[i : i + 1] for i in range(len(payload))][:4000], read_timeout=0.5)
            assert await exchange(port, ID_PROBE) == b'@PJL INFO ID\r\n"HP LaserJet 4250"\r\n\x0c', entry["id"]
        assert sensor.counters.get("engine_errors", 0) == 0
    lines = (data_dir / "log" / "honeyjet.json").read_text().splitlines()
    events = [json.loads(line) for line in lines]  # every line is whole, valid JSON
    connects = [e for e in events if e["eventid"] == "honeyjet.session.connect"]
    closes = [e for e in events if e["eventid"] == "honeyjet.session.closed"]
    assert len(connects) == len(closes) == 3 * len(ENTRIES)
