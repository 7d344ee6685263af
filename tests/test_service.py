"""The sensor in-process over real TCP: sessions, events, artifacts, limits, persistence.

Every test here runs twice, on the stdlib loop and on uvloop (see conftest.py).
"""

from __future__ import annotations

import asyncio
import json

from conftest import exchange, running, sensor_settings
from honeyjet.store import transcript
from honeyjet.store.database import Database

ID_PROBE = b"\x1b%-12345X@PJL INFO ID\r\n\x1b%-12345X\r\n"
ID_REPLY = b'@PJL INFO ID\r\n"HP LaserJet 4250"\r\n\x0c'


def json_events(data_dir):
    lines = (data_dir / "log" / "honeyjet.json").read_text().splitlines()
    return [json.loads(line) for line in lines]


def port_of(sensor) -> int:
    return sensor.settings.listen_port(sensor.settings.pjl)


async def test_probe_reply_and_session_lifecycle(data_dir):
    settings = sensor_settings(data_dir)
    async with running(settings) as sensor:
        got = await exchange(port_of(sensor), ID_PROBE)
    assert got == ID_REPLY
    events = json_events(data_dir)
    every = [e for e in events if e["session"]]
    # the analysis judges the session after it closed: its verdict comes last
    assert every[-1]["eventid"] == "honeyjet.verdict.session" and every[-1]["classes"] == ["scanner_banner_grab"]
    sess = [e for e in every if not e["eventid"].startswith("honeyjet.verdict.")]
    assert sess[0]["eventid"] == "honeyjet.session.connect"
    assert sess[-1]["eventid"] == "honeyjet.session.closed"
    assert {e["session"] for e in every} == {sess[0]["session"]}
    closed = sess[-1]
    assert closed["bytes_in"] == len(ID_PROBE) and closed["bytes_out"] == len(ID_REPLY) and closed["reason"] == "eof"
    cmd = [e for e in sess if e["eventid"] == "honeyjet.pjl.command"][0]
    assert cmd["argument"] == "INFO ID" and cmd["src_ip"] == "127.0.0.1" and cmd["dst_port"] == port_of(sensor)
    # the transcript replays both directions
    blob = (data_dir / "artifacts" / closed["transcript_shasum"]).read_bytes()
    assert transcript.client_bytes(blob) == ID_PROBE
    assert b"".join(d for k, d in transcript.parse(blob) if k == "S") == ID_REPLY
    db = Database(settings.database_url)
    await db.open()
    try:
        assert await db.count_events("honeyjet.pjl.command") == 1
        row = await db.session_row(closed["session"])
        assert row["bytes_in"] == len(ID_PROBE) and row["transcript_shasum"] == closed["transcript_shasum"]
    finally:
        await db.close()


async def test_byte_by_byte_over_tcp_gives_the_same_reply(data_dir):
    async with running(sensor_settings(data_dir)) as sensor:
        got = await exchange(port_of(sensor), [bytes([b]) for b in ID_PROBE])
    assert got == ID_REPLY


async def test_print_job_is_stored_byte_exact_and_page_count_rises(data_dir):
    job = b"%!PS-Adobe-3.0\n%%Pages: 2\n" + bytes(range(256)) + b"\nshowpage\nshowpage\n%%EOF\n"
    async with running(sensor_settings(data_dir)) as sensor:
        port = port_of(sensor)
        before = await exchange(port, b"@PJL INFO PAGECOUNT\r\n")
        await exchange(port, job)
        after = await exchange(port, b"@PJL INFO PAGECOUNT\r\n")
    count = lambda r: int(r.split(b"PAGECOUNT=")[1].split(b"\r\n")[0])  # noqa: E731
    assert count(after) == count(before) + 2
    cap = [e for e in json_events(data_dir) if e["eventid"] == "honeyjet.job.captured"][0]
    assert (data_dir / "artifacts" / cap["shasum"]).read_bytes() == job
    assert cap["size"] == len(job) and cap["truncated"] is False and cap["pages"] == 2


async def test_state_persists_across_restart(data_dir):
    settings = sensor_settings(data_dir)
    async with running(settings) as sensor:
        await exchange(port_of(sensor), b'@PJL RDYMSG DISPLAY="OWNED"\r\n')
        serial = sensor.device.serial
    async with running(settings) as sensor:
        got = await exchange(port_of(sensor), b"@PJL INFO STATUS\r\n")
        assert sensor.device.serial == serial
    assert b'DISPLAY="OWNED"' in got


async def test_concurrent_sessions(data_dir):
    async with running(sensor_settings(data_dir, limits={"sessions_per_source": 200})) as sensor:
        port = port_of(sensor)
        replies = await asyncio.gather(*(exchange(port, ID_PROBE) for _ in range(100)))
    assert all(r == ID_REPLY for r in replies)
    closed = [e for e in json_events(data_dir) if e["eventid"] == "honeyjet.session.closed"]
    assert len(closed) == 100 and len({e["session"] for e in closed}) == 100


async def test_idle_timeout_closes_and_is_recorded(data_dir):
    settings = sensor_settings(data_dir, limits={"idle_timeout": 0.3})
    async with running(settings) as sensor:
        reader, writer = await asyncio.open_connection("127.0.0.1", port_of(sensor))
        got = await asyncio.wait_for(reader.read(), 5)  # server closes: EOF
        writer.close()
    assert got == b""  # no greeting, ever
    events = json_events(data_dir)
    assert any(e["eventid"] == "honeyjet.limit.hit" and e["limit"] == "idle_timeout" for e in events)
    assert [e for e in events if e["eventid"] == "honeyjet.session.closed"][0]["reason"] == "idle_timeout"


async def test_session_byte_limit(data_dir):
    settings = sensor_settings(data_dir, limits={"session_bytes": 4096})
    async with running(settings) as sensor:
        await exchange(port_of(sensor), b"A" * 100_000, read_timeout=3)
        assert await exchange(port_of(sensor), ID_PROBE) == ID_REPLY  # others unaffected
    events = json_events(data_dir)
    closed = [e for e in events if e["eventid"] == "honeyjet.session.closed"][0]
    assert closed["reason"] == "session_bytes" and closed["bytes_in"] == 4096
    job = [e for e in events if e["eventid"] == "honeyjet.job.captured"][0]
    assert job["size"] == 4096


async def test_per_source_limit_refuses_and_aggregates(data_dir):
    settings = sensor_settings(data_dir, limits={"sessions_per_source": 2})
    async with running(settings) as sensor:
        port = port_of(sensor)
        held = [await asyncio.open_connection("127.0.0.1", port) for _ in range(2)]
        await asyncio.sleep(0.05)
        refused = [await exchange(port, ID_PROBE, read_timeout=1) for _ in range(3)]
        for _, w in held:
            w.close()
        await asyncio.sleep(0.05)
        assert await exchange(port, ID_PROBE) == ID_REPLY
    assert refused == [b"", b"", b""]
    rejected = [e for e in json_events(data_dir) if e["eventid"] == "honeyjet.session.rejected"]
    assert len(rejected) == 1 and rejected[0]["limit"] == "sessions_per_source"
    assert sensor.counters["rejected_sessions_per_source"] == 3


async def test_job_cap_truncates_but_keeps_reading(data_dir):
    settings = sensor_settings(data_dir, limits={"job_bytes": 1000})
    async with running(settings) as sensor:
        await exchange(port_of(sensor), b"x" * 5000 + b"\x1b%-12345X@PJL INFO ID\r\n")
    events = json_events(data_dir)
    job = [e for e in events if e["eventid"] == "honeyjet.job.captured"][0]
    assert job["truncated"] is True and job["size"] == 5000 and job["stored_size"] == 1000
    assert any(e["eventid"] == "honeyjet.limit.hit" and e["limit"] == "job_bytes" for e in events)
    assert any(e["eventid"] == "honeyjet.pjl.command" and e["argument"] == "INFO ID" for e in events)


async def test_traversal_over_tcp_reads_nothing_from_the_host(data_dir):
    probes = (
        b'@PJL FSUPLOAD NAME="0:/../../etc/passwd" OFFSET=0 SIZE=4096\r\n'
        b'@PJL FSQUERY NAME="0:\\..\\..\\..\\etc\\passwd"\r\n'
        b'@PJL FSDIRLIST NAME="0:/../../../" ENTRY=1 COUNT=99\r\n'
    )
    async with running(sensor_settings(data_dir)) as sensor:
        got = await exchange(port_of(sensor), probes)
    assert b"root:" not in got and got.count(b"FILEERROR=3") == 2
    assert b"PJL TYPE=DIR" in got  # '..' above the root stays at the volume root
    fs = [e for e in json_events(data_dir) if e["eventid"] == "honeyjet.pjl.fs"]
    assert len(fs) == 3 and all(e["traversal"] for e in fs)


async def test_a_flooding_session_is_throttled_not_dropped(data_dir):
    settings = sensor_settings(data_dir, limits={"cpu_share": 0.05, "cpu_burst": 0.0})
    flood = b"@PJL ECHO x\r\n" * 3000 + b"@PJL INFO ID\r\n"
    async with running(settings) as sensor:
        got = await exchange(port_of(sensor), flood, read_timeout=20, until=ID_REPLY)
        assert got.endswith(ID_REPLY)
        assert sensor.counters["cpu_throttled"] > 0
