"""The JSON-lines event log sink."""

from __future__ import annotations

import asyncio
import logging
import os
import stat
from pathlib import Path

import orjson
import pytest

from honeyjet.events import EventBus
from honeyjet.store import jsonlog
from honeyjet.store.jsonlog import JsonLinesSink, dumps_line


def read_lines(path: Path) -> list[dict]:
    data = path.read_bytes()
    assert data == b"" or data.endswith(b"\n")
    return [orjson.loads(line) for line in data.splitlines()]


def ident(session: str = "0123456789ab") -> dict:
    return {"session": session, "protocol": "pjl", "src_ip": "198.51.100.7", "src_port": 40000, "dst_ip": "192.0.2.1", "dst_port": 9100}


class RecordingWrites:
    """Wraps os.write in the jsonlog module to record what each call carried."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch, limit: int | None = None) -> None:
        self.calls: list[bytes] = []
        self.limit = limit
        real = os.write

        def write(fd: int, data) -> int:
            data = bytes(data)
            if self.limit is not None:
                data = data[: self.limit]  # simulate short writes
            self.calls.append(data)
            return real(fd, data)

        monkeypatch.setattr(jsonlog.os, "write", write)


async def test_lines_parse_and_are_batched_per_loop_iteration(tmp_path, monkeypatch):
    path = tmp_path / "log" / "sub" / "honeyjet.json"
    rec = RecordingWrites(monkeypatch)
    sink = JsonLinesSink(path, flush_interval=0)
    bus = EventBus("sensor-1", strict=True)
    bus.add_sink(sink)
    await bus.start()
    assert stat.S_IMODE(path.stat().st_mode) & 0o137 == 0  # at most 0o640
    for i in range(100):
        bus.emit("honeyjet.pjl.command", f"PJL command {i}", ident(), {"command": "INFO", "argument": f"INFO ID {i}"})
    assert path.read_bytes() == b""  # not yet: one flush per loop iteration
    await asyncio.sleep(0)
    events = read_lines(path)
    assert [e["argument"] for e in events] == [f"INFO ID {i}" for i in range(100)]
    assert all(e["eventid"] == "honeyjet.pjl.command" and e["sensor"] == "sensor-1" for e in events)
    assert len(rec.calls) == 1  # one os.write for the whole batch
    await bus.stop()
    assert sink.counters["lines"] == 100


async def test_every_write_holds_whole_lines(tmp_path, monkeypatch):
    monkeypatch.setattr(jsonlog, "CHUNK_BYTES", 4096)
    rec = RecordingWrites(monkeypatch)
    sink = JsonLinesSink(tmp_path / "h.json", flush_interval=0)
    await sink.start()
    for i in range(500):
        sink.write({"eventid": "honeyjet.pjl.command", "n": i, "pad": "x" * (i % 97)})
    sink.write({"eventid": "big", "pad": "y" * 10_000})  # longer than a chunk: goes alone
    await sink.stop()
    assert len(rec.calls) > 1
    for call in rec.calls:
        assert call.endswith(b"\n")
        for line in call.splitlines():
            orjson.loads(line)
    assert len(read_lines(tmp_path / "h.json")) == 501


def test_without_a_running_loop_each_write_goes_out_at_once(tmp_path):
    sink = JsonLinesSink(tmp_path / "h.json", flush_interval=0)
    sink.write({"eventid": "a"})
    assert read_lines(tmp_path / "h.json") == [{"eventid": "a"}]
    sink.write({"eventid": "b"})
    assert [e["eventid"] for e in read_lines(tmp_path / "h.json")] == ["a", "b"]
    asyncio.run(sink.stop())


async def test_partial_writes_are_completed(tmp_path, monkeypatch):
    rec = RecordingWrites(monkeypatch, limit=7)  # the kernel takes 7 bytes at a time
    sink = JsonLinesSink(tmp_path / "h.json", flush_interval=0)
    await sink.start()
    for i in range(20):
        sink.write({"eventid": "honeyjet.pjl.command", "i": i})
    await sink.stop()
    assert [e["i"] for e in read_lines(tmp_path / "h.json")] == list(range(20))
    assert len(rec.calls) > 20


async def test_copytruncate_leaves_no_hole(tmp_path):
    path = tmp_path / "h.json"
    sink = JsonLinesSink(path, flush_interval=0)
    await sink.start()
    for i in range(50):
        sink.write({"eventid": "before", "i": i, "pad": "p" * 100})
    await asyncio.sleep(0)
    assert path.stat().st_size > 5000
    # logrotate copytruncate: copy, then truncate the live file in place
    (tmp_path / "h.json.1").write_bytes(path.read_bytes())
    os.truncate(path, 0)
    sink.write({"eventid": "after", "i": 0})
    sink.write({"eventid": "after", "i": 1})
    await sink.stop()
    data = path.read_bytes()
    assert b"\x00" not in data
    assert data.startswith(b'{"eventid":"after"')
    assert read_lines(path) == [{"eventid": "after", "i": 0}, {"eventid": "after", "i": 1}]
    assert len(read_lines(tmp_path / "h.json.1")) == 50


async def test_rename_then_reopen(tmp_path):
    path = tmp_path / "h.json"
    sink = JsonLinesSink(path, flush_interval=0)
    await sink.start()
    sink.write({"eventid": "one"})
    await asyncio.sleep(0)
    os.rename(path, tmp_path / "h.json.1")  # logrotate "create"
    sink.write({"eventid": "two"})  # still the old file: the check interval has not passed
    await asyncio.sleep(0)
    sink.reopen()  # SIGHUP
    sink.write({"eventid": "three"})
    await sink.stop()
    assert [e["eventid"] for e in read_lines(tmp_path / "h.json.1")] == ["one", "two"]
    assert [e["eventid"] for e in read_lines(path)] == ["three"]
    assert sink.counters["reopens"] == 1


async def test_inode_change_is_noticed_without_reopen(tmp_path):
    now = [0.0]
    path = tmp_path / "h.json"
    sink = JsonLinesSink(path, check_interval=5.0, clock=lambda: now[0], flush_interval=0)
    await sink.start()
    sink.write({"eventid": "one"})
    await asyncio.sleep(0)
    os.rename(path, tmp_path / "old.json")
    now[0] = 1.0
    sink.write({"eventid": "two"})  # within the interval: not checked yet
    await asyncio.sleep(0)
    now[0] = 6.0
    sink.write({"eventid": "three"})
    await asyncio.sleep(0)
    # and a file deleted outright is recreated
    os.unlink(path)
    now[0] = 12.0
    sink.write({"eventid": "four"})
    await sink.stop()
    assert [e["eventid"] for e in read_lines(tmp_path / "old.json")] == ["one", "two"]
    assert [e["eventid"] for e in read_lines(path)] == ["four"]
    assert sink.counters["reopens"] == 2


async def test_values_json_cannot_hold_do_not_crash(tmp_path):
    sink = JsonLinesSink(tmp_path / "h.json", flush_interval=0)
    await sink.start()

    class Odd:
        def __str__(self) -> str:
            return "odd-object"

    sink.write(
        {
            "eventid": "x",
            "raw": b"\x1b%-12345X@PJL \\ \xff",
            "where": Path("/var/lib/honeyjet"),
            "tags": {"b"},
            "obj": Odd(),
            "nested": [b"\x00", {"deep": bytearray(b"ok")}],
            1: "non-string key",
        }
    )
    sink.write({"eventid": "huge-int", "n": 2**70})
    sink.write({"eventid": "surrogate", "s": "bad \udcff text"})
    await sink.stop()
    first, second, third = read_lines(tmp_path / "h.json")
    assert first["raw"] == "\\x1b%-12345X@PJL \\\\ \\xff"
    assert first["where"] == "/var/lib/honeyjet"
    assert first["tags"] == ["b"]
    assert first["obj"] == "odd-object"
    assert first["nested"] == ["\\x00", {"deep": "ok"}]
    assert first["1"] == "non-string key"
    assert second["n"] == 2**70
    assert third == {"eventid": "surrogate", "s": "bad \\udcff text"}
    assert sink.counters["serialise_fallbacks"] == 2


def test_dumps_line_never_raises():
    loop: list = []
    loop.append(loop)
    line = dumps_line({"eventid": "circular", "x": loop})
    assert line.endswith(b"\n") and orjson.loads(line)["eventid"] == "circular"


async def test_write_errors_are_counted_not_raised(tmp_path, monkeypatch, caplog):
    path = tmp_path / "h.json"
    sink = JsonLinesSink(path, flush_interval=0)
    await sink.start()
    sink.write({"eventid": "ok", "i": 0})
    await asyncio.sleep(0)
    real = os.write
    state = {"full": True, "first": True}

    def disk_full(fd, data):
        if state["full"]:
            if state["first"]:  # a short write, then ENOSPC: a cut line
                state["first"] = False
                return real(fd, bytes(data)[:5])
            raise OSError(28, "No space left on device")
        return real(fd, data)

    monkeypatch.setattr(jsonlog.os, "write", disk_full)
    with caplog.at_level(logging.ERROR, logger="honeyjet.store.jsonlog"):
        for i in range(3):
            sink.write({"eventid": "lost", "i": i})
            await asyncio.sleep(0)
    assert sink.counters["write_errors"] == 3
    assert sink.counters["lines_dropped"] == 3
    assert len([r for r in caplog.records if r.levelno >= logging.ERROR]) == 1  # logged once
    state["full"] = False
    sink.write({"eventid": "ok", "i": 1})
    await sink.stop()
    lines = path.read_bytes().splitlines()
    # the cut fragment sits on its own line; every other line parses
    assert orjson.loads(lines[0]) == {"eventid": "ok", "i": 0}
    assert orjson.loads(lines[-1]) == {"eventid": "ok", "i": 1}
    assert len(lines) == 3


async def test_reopen_appends_after_a_partial_line_left_by_a_crash(tmp_path):
    path = tmp_path / "h.json"
    path.write_bytes(b'{"eventid":"whole"}\n{"eventid":"cut')
    sink = JsonLinesSink(path, flush_interval=0)
    await sink.start()
    sink.write({"eventid": "next"})
    await sink.stop()
    lines = path.read_bytes().splitlines()
    assert lines[0] == b'{"eventid":"whole"}'
    assert orjson.loads(lines[-1]) == {"eventid": "next"}


async def test_unwritable_path_fails_at_start(tmp_path):
    (tmp_path / "file").write_text("not a directory")
    sink = JsonLinesSink(tmp_path / "file" / "h.json", flush_interval=0)
    with pytest.raises(OSError):
        await sink.start()
    sink.write({"eventid": "x"})  # still never raises from write()
    await sink.stop()
    assert sink.counters["write_errors"] >= 1 and sink.counters["lines_dropped"] >= 1


async def test_a_busy_sensor_writes_few_large_batches(tmp_path):
    """With the default interval, events of one burst share one os.write within 20 ms."""
    path = tmp_path / "h.json"
    sink = JsonLinesSink(path)
    await sink.start()
    for i in range(500):
        sink.write({"eventid": "honeyjet.session.connect", "n": i})
    assert path.stat().st_size == 0  # nothing written yet: batched
    await asyncio.sleep(0.05)
    lines = path.read_bytes().splitlines()
    assert [orjson.loads(x)["n"] for x in lines] == list(range(500))
    await sink.stop()
