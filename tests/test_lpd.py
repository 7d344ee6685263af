"""The LPD engine (RFC 1179, TCP 515): commands, jobs in either order, queue state, bounds,
chunking independence (corpus and hypothesis), and the service over real TCP."""

from __future__ import annotations

import asyncio
import json

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from conftest import exchange, running, sensor_settings
from helpers import T0, corpus, drive, fixed_identity, make_device, split_at
from honeyjet.persona.device import Device
from honeyjet.persona.model import load_persona
from honeyjet.persona.model_lpd import LPDSection
from honeyjet.persona.state import DeviceState
from honeyjet.persona.vfs import MemoryBlobs
from honeyjet.protocols.lpd import LPDEngine, QueueBook, queue_entries
from honeyjet.protocols.outputs import CaptureData, CaptureEnd, CaptureStart, Close, Emit, Send, coalesce

ENTRIES = corpus(515)
DATA = b"Quarterly report\nRevenue up 4%\n\x0c"
PS = b"%!PS-Adobe-3.0\n%%Pages: 2\n/Helvetica findfont 20 scalefont setfont\nshowpage\nshowpage\n%%EOF\n"


class Clock:
    def __init__(self, now: float = T0):
        self.now = now

    def __call__(self) -> float:
        return self.now


def clocked_device(clock: Clock) -> Device:
    persona = load_persona("hp-laserjet-4250")
    return Device(persona, fixed_identity(), DeviceState(None), MemoryBlobs(), clock=clock)


def control(host=b"ws-0142", user=b"jdoe", title=b"report.txt", files=(b"dfA042ws-0142",), fmt=b"l") -> bytes:
    body = b"H" + host + b"\nP" + user + b"\nJ" + title + b"\n"
    for f in files:
        body += fmt + f + b"\n"
    for f in files:
        body += b"U" + f + b"\n"
    return body + b"N" + title + b"\n"


def sub_control(ctl: bytes, name: bytes = b"cfA042ws-0142") -> bytes:
    return b"\x02%d %s\n" % (len(ctl), name) + ctl + b"\x00"


def sub_data(data: bytes, name: bytes = b"dfA042ws-0142") -> bytes:
    return b"\x03%d %s\n" % (len(data), name) + data + b"\x00"


def job_stream(queue=b"raw", order="control,data", data=DATA, ctl=None) -> bytes:
    ctl = control() if ctl is None else ctl
    parts = [sub_control(ctl), sub_data(data)]
    if order == "data,control":
        parts.reverse()
    return b"\x02" + queue + b"\n" + b"".join(parts)


def outputs(engine: LPDEngine, chunks) -> list:
    """Every output in order, Send and CaptureData merged (comparable across chunkings)."""
    out = []
    for c in chunks:
        out.extend(engine.feed(c))
    out.extend(engine.eof())
    return coalesce(out)


def events(outs, eventid):
    return [dict(o.fields) for o in outs if isinstance(o, Emit) and o.eventid == eventid]


def captured(outs) -> list[tuple[dict, bytes, dict]]:
    caps, cur, data = [], None, b""
    for o in outs:
        if isinstance(o, CaptureStart):
            cur, data = dict(o.meta), b""
        elif isinstance(o, CaptureData):
            data += o.data
        elif isinstance(o, CaptureEnd):
            caps.append((cur, data, dict(o.meta)))
            cur = None
    return caps


def sent(outs) -> bytes:
    return b"".join(o.data for o in outs if isinstance(o, Send))


def closes(outs) -> list[str]:
    return [o.reason for o in outs if isinstance(o, Close)]


# -- daemon commands ---------------------------------------------------------------------------
def test_nmap_lpdstring_probe_gets_one_nul_and_close():
    outs = outputs(LPDEngine(make_device()), [b"\x01default\n"])
    assert sent(outs) == b"\x00"  # nmap: match printer m|^\0$|
    assert closes(outs)
    (cmd,) = events(outs, "honeyjet.lpd.command")
    assert cmd == {"command": "print", "queue": "default", "arguments": "", "replied": "\\x00"}


def test_no_greeting_and_silence_until_a_full_line():
    eng = LPDEngine(make_device())
    assert eng.feed(b"\x02ra") == []
    assert eng.feed(b"w") == []
    assert sent(eng.feed(b"\n")) == b"\x00"


@pytest.mark.parametrize("payload", [b"GET / HTTP/1.0\r\n\r\n", b"\x16\x03\x01\x00\xa5\x01", b"\x00", b"\r\n", b"HELP\r\n"])
def test_non_lpd_bytes_close_without_a_word(payload):
    outs = outputs(LPDEngine(make_device()), [payload])
    assert sent(outs) == b""
    assert closes(outs) == ["lpd unknown command"]
    (cmd,) = events(outs, "honeyjet.lpd.command")
    assert cmd["command"] == "unknown" and cmd["replied"] == ""


def test_over_long_command_line_is_a_limit_and_closes():
    outs = outputs(LPDEngine(make_device(), max_line=100), [b"\x03" + b"q" * 500 + b"\n"])
    hit = events(outs, "honeyjet.limit.hit")
    assert hit == [{"limit": "line_length", "value": 100}]
    assert sent(outs) == b"" and closes(outs)


def test_incomplete_command_at_eof_is_recorded_not_executed():
    outs = outputs(LPDEngine(make_device()), [b"\x03raw"])
    assert sent(outs) == b""
    (cmd,) = events(outs, "honeyjet.lpd.command")
    assert cmd["command"] == "queue_short" and cmd["queue"] == "raw"


# -- receive job -------------------------------------------------------------------------------
@pytest.mark.parametrize("order", ["control,data", "data,control"])
def test_receive_job_either_order(order):
    dev = make_device()
    before = dev.page_count()
    outs = outputs(LPDEngine(dev), [job_stream(order=order)])
    # ack of the command, of each subcommand and of each file
    assert sent(outs) == b"\x00" * 5
    assert not closes(outs)
    ((_, data, end),) = captured(outs)
    assert data == DATA
    # the control file names the job even when it came after the data
    assert end["name"] == "report.txt" and end["user"] == "jdoe" and end["ended_by"] == "count"
    (job,) = events(outs, "honeyjet.lpd.job")
    assert job["queue"] == "raw" and job["host"] == "ws-0142" and job["user"] == "jdoe"
    assert job["title"] == "report.txt" and job["files"] == ["dfA042ws-0142"] and job["jobs"] == [end["job"]]
    assert ["P", "jdoe"] in job["control"] and ["l", "dfA042ws-0142"] in job["control"]
    cmds = [c["command"] for c in events(outs, "honeyjet.lpd.command")]
    assert cmds[0] == "receive" and sorted(cmds[1:]) == ["control_file", "data_file"]
    assert dev.page_count() == before + 1
    assert dev.state["jobs"][-1]["user"] == "jdoe" and dev.state["jobs"][-1]["name"] == "report.txt"
    # the job event comes after the capture it names
    kinds = [type(o).__name__ if not isinstance(o, Emit) else o.eventid for o in outs]
    assert kinds.index("CaptureEnd") < kinds.index("honeyjet.lpd.job")


def test_subcommand_fields_are_recorded():
    outs = outputs(LPDEngine(make_device()), [job_stream()])
    cmds = {c["command"]: c for c in events(outs, "honeyjet.lpd.command")}
    assert cmds["control_file"]["size"] == len(control()) and cmds["control_file"]["filename"] == "cfA042ws-0142"
    assert cmds["data_file"]["size"] == len(DATA) and cmds["data_file"]["replied"] == "\\x00"


def test_data_first_job_is_complete_before_the_connection_ends():
    """CUPS order=data,control: the job event comes when the control file arrives."""
    eng = LPDEngine(make_device())
    first = coalesce(eng.feed(job_stream(order="data,control")))
    assert events(first, "honeyjet.lpd.job") and captured(first)
    assert not events(eng.eof(), "honeyjet.lpd.job")


def test_several_jobs_in_one_connection():
    ctl2 = control(user=b"mallory", title=b"two", files=(b"dfA043x",))
    stream = job_stream() + sub_data(PS, b"dfA043x") + sub_control(ctl2, b"cfA043x")
    outs = outputs(LPDEngine(make_device()), [stream])
    jobs = events(outs, "honeyjet.lpd.job")
    assert [j["user"] for j in jobs] == ["jdoe", "mallory"]
    caps = captured(outs)
    assert [c[1] for c in caps] == [DATA, PS]
    assert caps[1][2]["user"] == "mallory" and caps[1][2]["language"] == "postscript" and caps[1][2]["pages"] == 2


def test_control_file_with_several_data_files():
    ctl = control(files=(b"dfAx", b"dfBx"))
    stream = b"\x02lp\n" + sub_control(ctl) + sub_data(b"one\n", b"dfAx") + sub_data(b"two\n", b"dfBx")
    outs = outputs(LPDEngine(make_device()), [stream])
    (job,) = events(outs, "honeyjet.lpd.job")
    assert job["files"] == ["dfAx", "dfBx"] and len(job["jobs"]) == 2
    assert [c[1] for c in captured(outs)] == [b"one\n", b"two\n"]
    assert all(c[2]["user"] == "jdoe" for c in captured(outs))


def test_data_file_count_zero_runs_to_the_end_of_the_connection():
    """LPRng's extension: count 0 = the data file is everything until the peer closes."""
    stream = b"\x02raw\n" + sub_control(control()) + b"\x03" + b"0 dfA042ws-0142\n" + DATA + b"\x00\x03tail"
    outs = outputs(LPDEngine(make_device()), [stream])
    assert sent(outs) == b"\x00" * 4  # no ack after the data: there is no end to acknowledge
    ((_, data, end),) = captured(outs)
    assert data == DATA + b"\x00\x03tail" and end["ended_by"] == "eof"
    assert events(outs, "honeyjet.lpd.job")[0]["jobs"] == [end["job"]]


def test_huge_count_cut_by_the_peer_closing():
    """CUPS stream mode and Windows without byte counting announce a huge size and close."""
    stream = b"\x02raw\n" + sub_control(control()) + b"\x03999999999999 dfA042ws-0142\n" + PS
    outs = outputs(LPDEngine(make_device()), [stream])
    ((_, data, end),) = captured(outs)
    assert data == PS and end["ended_by"] == "eof" and end["language"] == "postscript"
    (cmd,) = [c for c in events(outs, "honeyjet.lpd.command") if c["command"] == "data_file"]
    assert cmd["size"] == 999999999999


def test_abort_keeps_what_arrived_and_the_connection_goes_on():
    stream = b"\x02raw\n" + sub_data(DATA) + b"\x01\n" + job_stream(queue=b"")[len(b"\x02\n") :]
    outs = outputs(LPDEngine(make_device()), [stream])
    jobs = events(outs, "honeyjet.lpd.job")
    assert len(jobs) == 2 and jobs[0]["user"] == "" and jobs[1]["user"] == "jdoe"
    assert len(captured(outs)) == 2
    assert "abort" in [c["command"] for c in events(outs, "honeyjet.lpd.command")]
    assert sent(outs) == b"\x00" * 7  # abort itself is not acknowledged


def test_missing_trailing_nul_is_refused():
    stream = b"\x02raw\n\x03" + b"%d dfA1h\n" % len(DATA) + DATA + b"X"
    outs = outputs(LPDEngine(make_device()), [stream])
    assert sent(outs) == b"\x00\x00\x01"
    refused = [c for c in events(outs, "honeyjet.lpd.command") if c["replied"] == "\\x01"]
    assert refused and refused[0]["command"] == "data_file"
    assert captured(outs)[0][1] == DATA  # kept anyway


@pytest.mark.parametrize("sub", [b"\x02abc cfA1\n", b"\x03 dfA\n", b"\x03-5 dfA\n", b"\x02" + b"9" * 40 + b" cfA\n"])
def test_malformed_count_is_refused_and_closed(sub):
    outs = outputs(LPDEngine(make_device()), [b"\x02raw\n" + sub + b"garbage"])
    assert sent(outs) == b"\x00\x01"
    assert closes(outs) == ["lpd malformed subcommand"]


def test_unknown_subcommand_is_refused_and_closed_and_the_job_recorded():
    outs = outputs(LPDEngine(make_device()), [b"\x02raw\n" + sub_data(DATA) + b"\x07\n"])
    assert sent(outs) == b"\x00\x00\x00\x01"
    assert closes(outs) == ["lpd unknown subcommand"]
    assert len(events(outs, "honeyjet.lpd.job")) == 1 and len(captured(outs)) == 1


def test_truncated_data_file_at_eof_is_captured():
    outs = outputs(LPDEngine(make_device()), [b"\x02raw\n\x03100 dfA1h\nonly a bit"])
    ((_, data, end),) = captured(outs)
    assert data == b"only a bit" and end["ended_by"] == "eof"


def test_control_file_bound():
    sec = LPDSection(max_control_bytes=256)
    ctl = control() + b"M" + b"x" * 1000 + b"\n"
    eng = LPDEngine(make_device(), sec)
    outs = outputs(eng, [job_stream(ctl=ctl)])
    assert events(outs, "honeyjet.limit.hit") == [{"limit": "control_file", "value": 256}]
    (job,) = events(outs, "honeyjet.lpd.job")
    assert job["user"] == "jdoe"  # the kept head is parsed
    assert sent(outs) == b"\x00" * 5  # and the stream stayed in step


def test_jobs_per_session_limit():
    stream = b"\x02raw\n" + b"".join(sub_data(b"x%d\n" % i, b"dfA%03dh" % i) for i in range(4))
    outs = outputs(LPDEngine(make_device(), max_jobs=2), [stream])
    assert len(captured(outs)) == 2
    assert events(outs, "honeyjet.limit.hit") == [{"limit": "jobs_per_session", "value": 2}]


def test_attacker_strings_are_escaped():
    ctl = b"H\xff\x1b[31m\nPro\x00ot\nJ\\x\n"
    outs = outputs(LPDEngine(make_device()), [b"\x02q\xe9\n" + sub_control(ctl) + sub_data(DATA)])
    (job,) = events(outs, "honeyjet.lpd.job")
    assert job["host"] == "\\xff\\x1b[31m" and job["user"] == "ro\\x00ot" and job["title"] == "\\\\x"
    assert job["queue"] == "q\\xe9"


# -- queue families ------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "queue,language",
    [(b"raw", "text"), (b"RAW2", "text"), (b"text1", "text"), (b"binps", "postscript"), (b"whatever", "text"), (b"", "text")],
)
def test_any_queue_name_is_accepted(queue, language):
    outs = outputs(LPDEngine(make_device()), [job_stream(queue=queue)])
    assert sent(outs) == b"\x00" * 5
    assert captured(outs)[0][2]["language"] == language


def test_auto_queue_sniffs_postscript_and_binps_declares_it():
    assert captured(outputs(LPDEngine(make_device()), [job_stream(queue=b"auto", data=PS)]))[0][2]["language"] == "postscript"
    assert captured(outputs(LPDEngine(make_device()), [job_stream(queue=b"binps1", data=DATA)]))[0][2]["language"] == "postscript"


def test_a_persona_may_refuse_unknown_queues():
    sec = LPDSection(accept_any_queue=False)
    outs = outputs(LPDEngine(make_device(), sec), [b"\x02secret\n" + sub_data(DATA)])
    assert sent(outs) == b"\x01" and closes(outs)
    outs = outputs(LPDEngine(make_device(), sec), [b"\x03secret\n"])
    assert sent(outs) == b"secret: unknown printer\n"
    assert sent(outputs(LPDEngine(make_device(), sec), [b"\x02raw3\n"])) == b"\x00"


def test_section_validation():
    with pytest.raises(ValueError):
        LPDSection(default_family="nope")
    with pytest.raises(ValueError):
        LPDSection(refuse_reply="\u0000")
    with pytest.raises(ValueError):
        LPDSection(header={"idle": "x"})
    with pytest.raises(ValueError):
        LPDSection(queues={"mine": "nope"})
    assert LPDSection(queues={"Mine": "text"}).family_of("MINE") == "text"


# -- queue state ----------------------------------------------------------------------------------
def test_queue_state_empty_short_and_long():
    dev = make_device()
    short = outputs(LPDEngine(dev), [b"\x03raw\n"])
    assert sent(short) == b"raw is ready\nno entries\n" and closes(short)
    long = outputs(LPDEngine(dev), [b"\x04lp jdoe 12\n"])
    assert sent(long) == b"lp is ready\nno entries\n"
    (cmd,) = events(long, "honeyjet.lpd.command")
    assert cmd["command"] == "queue_long" and cmd["arguments"] == "jdoe 12" and cmd["replied"].startswith("lp is ready")


def test_queue_state_lists_jobs_while_the_engine_would_print_them():
    clock = Clock()
    dev = clocked_device(clock)
    outputs(LPDEngine(dev), [job_stream(data=PS)])  # 2 pages
    number = dev.state["jobs"][-1]["job"]
    short = sent(outputs(LPDEngine(dev), [b"\x03raw\n"])).decode()
    assert short.splitlines()[0] == "raw is ready and printing"
    assert short.splitlines()[1].startswith("Rank   Owner      Job  Files")
    assert short.splitlines()[2].split() == ["active", "jdoe", str(number), "report.txt", str(len(PS)), "bytes"]
    long = sent(outputs(LPDEngine(dev), [b"\x04raw\n"])).decode()
    assert "jdoe: active" in long and f"[job {number:03d}NPI419F6E]" in long and f"{len(PS)} bytes" in long
    # a second job waits behind the first
    outputs(LPDEngine(dev), [job_stream(ctl=control(user=b"bob"))])
    rows = sent(outputs(LPDEngine(dev), [b"\x03raw\n"])).decode().splitlines()[2:]
    assert [r.split()[:2] for r in rows] == [["active", "jdoe"], ["1st", "bob"]]
    # the list filters by user or job number
    rows = sent(outputs(LPDEngine(dev), [b"\x03raw bob\n"])).decode().splitlines()[2:]
    assert [r.split()[1] for r in rows] == ["bob"]
    # 9 s warm-up + 3 pages at 43 ppm later, the engine is idle again
    clock.now += 9 + 3 * 60 / 43 + 0.1
    assert sent(outputs(LPDEngine(dev), [b"\x03raw\n"])) == b"raw is ready\nno entries\n"


def test_queue_state_shows_jobs_from_other_protocols_and_the_offline_display():
    clock = Clock()
    dev = clocked_device(clock)
    dev.job_begin()
    dev.job_end({"job": 7, "name": "", "user": "", "language": "pcl", "pages": 1, "size": 10})
    text = sent(outputs(LPDEngine(dev), [b"\x03raw\n"])).decode()
    assert "unknown" in text and "(standard input)" in text
    dev.set_operator_message("PAPER JAM")
    assert sent(outputs(LPDEngine(dev), [b"\x03raw\n"])).decode().startswith("raw is down: PAPER JAM\n")


def test_remove_takes_the_job_out_of_the_listing_without_a_reply():
    clock = Clock()
    dev = clocked_device(clock)
    book = QueueBook()
    outputs(LPDEngine(dev, book=book), [job_stream()])
    number = dev.state["jobs"][-1]["job"]
    outs = outputs(LPDEngine(dev, book=book), [b"\x05raw root %d\n" % number])
    assert sent(outs) == b"" and closes(outs)
    (cmd,) = events(outs, "honeyjet.lpd.command")
    assert cmd["command"] == "remove" and cmd["arguments"] == f"root {number}"
    assert sent(outputs(LPDEngine(dev, book=book), [b"\x03raw\n"])) == b"raw is ready\nno entries\n"


def test_queue_names_are_echoed_printable_and_bounded():
    text = sent(outputs(LPDEngine(make_device()), [b"\x03\x1b[2J" + b"A" * 100 + b"\n"]))
    assert text == b"[2J" + b"A" * 28 + b" is ready\nno entries\n"


def test_queue_entries_survive_odd_job_log_records():
    dev = make_device()
    dev.state["jobs"] = [None, {"job": "x"}, {"job": 3, "ts": T0, "pages": 1, "size": 5}, {"job": 4, "pages": "a"}]
    assert [e["job"] for e in queue_entries(dev, LPDSection(), QueueBook(), T0)] == [3]


# -- chunking independence, totality, bounds --------------------------------------------------------
def _same_everywhere(payload: bytes, offsets=()) -> list:
    whole = outputs(LPDEngine(make_device()), [payload])
    split = outputs(LPDEngine(make_device()), split_at(payload, offsets))
    bytewise = outputs(LPDEngine(make_device()), [payload[i : i + 1] for i in range(len(payload))])
    assert whole == split == bytewise
    return whole


@pytest.mark.parametrize("entry", ENTRIES, ids=lambda e: e["id"])
def test_corpus_entry_is_chunking_independent_and_captured(entry):
    outs = _same_everywhere(entry["payload"], entry.get("chunk_offsets", []))
    assert events(outs, "honeyjet.lpd.job") and captured(outs)
    run = drive(LPDEngine(make_device()), [entry["payload"]])  # the shared driver agrees
    assert run.of("honeyjet.lpd.job")


def test_corpus_is_present():
    assert ENTRIES, "tests/data/corpus/probes.json has no port-515 entry"


PIECES = [
    b"\x01", b"\x02", b"\x03", b"\x04", b"\x05", b"raw", b"lp", b" ", b"\t", b"\n", b"\r\n", b"\x00",
    b"\x0210 cfA001h\n", b"\x035 dfA001h\n", b"\x030 dfA\n", b"\x01\n", b"Hhost\nPuser\nJtitle\nldfA001h\n",
    b"12345", b"%!PS\n", b"root 1 2", b"\xff", b"cfA", b"dfA001h",
]
stream = st.lists(st.one_of(st.sampled_from(PIECES), st.binary(max_size=24)), max_size=60).map(b"".join)
jobs = st.builds(
    lambda q, order, data, user, tail: job_stream(queue=q, order=order, data=data, ctl=control(user=user)) + tail,
    st.sampled_from([b"raw", b"text", b"binps", b"x y"]),
    st.sampled_from(["control,data", "data,control"]),
    st.binary(max_size=200),
    st.binary(max_size=20).filter(lambda b: b"\n" not in b),
    stream,
)


def chunked(data: bytes, cuts: list[int]) -> list[bytes]:
    return split_at(data, [c % (len(data) + 1) for c in cuts])


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.one_of(stream, jobs, st.binary(max_size=400)), cuts=st.lists(st.integers(0, 10_000), max_size=12))
def test_any_bytes_any_chunking_same_result(data, cuts):
    whole = outputs(LPDEngine(make_device(), max_line=128), [data])
    parts = outputs(LPDEngine(make_device(), max_line=128), chunked(data, cuts))
    assert whole == parts


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.one_of(stream, jobs))
def test_byte_by_byte_same_result(data):
    whole = outputs(LPDEngine(make_device(), max_line=128), [data])
    single = outputs(LPDEngine(make_device(), max_line=128), [data[i : i + 1] for i in range(len(data))])
    assert whole == single


@settings(max_examples=200, deadline=None)
@given(chunks=st.lists(st.one_of(st.sampled_from(PIECES), st.binary(max_size=600), jobs), max_size=40))
def test_buffers_stay_bounded(chunks):
    sec = LPDSection(max_control_bytes=512)
    eng = LPDEngine(make_device(), sec, max_line=128)
    for c in chunks:
        eng.feed(c)
        # a command line, a control file head and a job's sniffing head are the only held bytes
        assert eng.buffered_bytes <= 128 + 512 + 4096
    eng.eof()
    assert eng.buffered_bytes == 0 and eng.closed


# -- the service over TCP ------------------------------------------------------------------------------
def lpd_port(settings_) -> int:
    return settings_.listen_port(settings_.lpd)


def json_events(data_dir) -> list[dict]:
    return [json.loads(line) for line in (data_dir / "log" / "honeyjet.json").read_text().splitlines()]


async def test_service_receives_a_job_and_answers_queue_state(data_dir):
    settings_ = sensor_settings(data_dir, http={"enabled": False}, ipp={"enabled": False}, snmp={"enabled": False})
    async with running(settings_) as sensor:
        port = lpd_port(settings_)
        assert await exchange(port, b"\x01default\n") == b"\x00"
        assert await exchange(port, job_stream(order="data,control", data=PS)) == b"\x00" * 5
        state = await exchange(port, b"\x03raw\n", shut=False)
        assert state.startswith(b"raw is ready and printing\n") and b"jdoe" in state
        assert sensor.counters.get("engine_errors", 0) == 0
    evs = json_events(data_dir)
    cap = next(e for e in evs if e["eventid"] == "honeyjet.job.captured")
    assert (data_dir / "artifacts" / cap["shasum"]).read_bytes() == PS
    assert cap["protocol"] == "lpd" and cap["user"] == "jdoe" and cap["name"] == "report.txt" and cap["pages"] == 2
    job = next(e for e in evs if e["eventid"] == "honeyjet.lpd.job")
    assert job["jobs"] == [cap["job"]] and job["session"] == cap["session"]


async def test_corpus_over_tcp(data_dir):
    settings_ = sensor_settings(data_dir, http={"enabled": False}, ipp={"enabled": False}, snmp={"enabled": False})
    async with running(settings_) as sensor:
        port = lpd_port(settings_)
        for entry in ENTRIES:
            payload = entry["payload"]
            await exchange(port, [payload], read_timeout=0.5)
            await exchange(port, split_at(payload, entry.get("chunk_offsets", [])), read_timeout=0.5)
            await exchange(port, [payload[i : i + 1] for i in range(len(payload))], read_timeout=0.5)
            assert await exchange(port, b"\x01default\n") == b"\x00", entry["id"]
        assert sensor.counters.get("engine_errors", 0) == 0
    evs = json_events(data_dir)
    caps = [e for e in evs if e["eventid"] == "honeyjet.job.captured"]
    jobs = [e for e in evs if e["eventid"] == "honeyjet.lpd.job"]
    assert len(caps) == len(jobs) == 3 * len(ENTRIES)
    assert all((data_dir / "artifacts" / c["shasum"]).exists() for c in caps)
    connects = [e for e in evs if e["eventid"] == "honeyjet.session.connect" and e["protocol"] == "lpd"]
    closed = [e for e in evs if e["eventid"] == "honeyjet.session.closed" and e["protocol"] == "lpd"]
    assert len(connects) == len(closed) == 4 * len(ENTRIES)


async def test_junk_and_abrupt_disconnects_leave_the_service_up(data_dir):
    settings_ = sensor_settings(data_dir, http={"enabled": False}, ipp={"enabled": False}, snmp={"enabled": False})
    async with running(settings_) as sensor:
        port = lpd_port(settings_)
        assert await exchange(port, b"GET / HTTP/1.0\r\n\r\n") == b""
        # a data file cut off in the middle, peer gone without a half-close
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(b"\x02raw\n\x031000 dfA1h\npartial")
        await writer.drain()
        assert await reader.readexactly(2) == b"\x00\x00"
        writer.transport.abort()
        await asyncio.sleep(0.2)
        assert await exchange(port, b"\x01default\n") == b"\x00"
        assert sensor.counters.get("engine_errors", 0) == 0
    evs = json_events(data_dir)
    cut = [e for e in evs if e["eventid"] == "honeyjet.job.captured"]
    assert cut and cut[0]["ended_by"] == "eof" and cut[0]["size"] == len(b"partial")
