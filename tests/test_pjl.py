"""The 9100 engine: PJL replies byte for byte, state, file system, jobs, bounds."""

from __future__ import annotations

import re

import pytest

from helpers import drive, make_device
from honeyjet.persona.state import DeviceState
from honeyjet.protocols.pjl import UEL, PJLEngine

ID_PROBE = b"\x1b%-12345X@PJL INFO ID\r\n\x1b%-12345X\r\n"  # nmap hp-pjl


def engine(device=None, **kw):
    return PJLEngine(device or make_device(), **kw)


def one(data: bytes, device=None, **kw):
    return drive(engine(device, **kw), [data])


# -- identification --------------------------------------------------------------------
def test_info_id_matches_nmap_pattern_exactly():
    run = one(ID_PROBE)
    assert run.sent == b'@PJL INFO ID\r\n"HP LaserJet 4250"\r\n\x0c'
    assert re.match(rb'^@PJL INFO ID\r?\n"([^"]+)"\r?\n', run.sent).group(1) == b"HP LaserJet 4250"
    assert run.captures == []  # the trailing CRLF after the UEL is not a job


@pytest.mark.parametrize(
    "variant",
    [
        b"@PJL INFO ID\n",
        b"@PJL info id\r\n",
        b"@PJL   Info\tId  \r\n",
        b"\x1b%-12345X@PJL\n@PJL INFO ID\n\x1b%-12345X",  # Metasploit framing
    ],
)
def test_info_id_variants_give_identical_reply(variant):
    assert one(variant).sent == b'@PJL INFO ID\r\n"HP LaserJet 4250"\r\n\x0c'


def test_lowercase_prefix_is_not_pjl_but_print_data():
    run = one(b"@pjl INFO ID\r\n")
    assert run.sent == b""
    assert len(run.captures) == 1 and run.captures[0]["data"] == b"@pjl INFO ID\r\n"


def test_no_greeting_and_silence_for_nothing():
    assert one(b"").sent == b""


def test_info_status_format():
    run = one(b"@PJL INFO STATUS\r\n")
    assert run.sent == b'@PJL INFO STATUS\r\nCODE=10001\r\nDISPLAY="Ready"\r\nONLINE=TRUE\r\n\x0c'


def test_rdymsg_changes_status_for_later_connections_and_restarts(tmp_path):
    state = DeviceState(tmp_path / "device.json")
    dev = make_device(state=state)
    run = one(b'@PJL RDYMSG DISPLAY = "PWNED BY X"\r\n', dev)
    assert run.sent == b""  # RDYMSG has no reply
    assert run.of("honeyjet.device.change")[0]["new"] == "PWNED BY X"
    assert b'DISPLAY="PWNED BY X"' in one(b"@PJL INFO STATUS\r\n", dev).sent
    state.save()
    dev2 = make_device(state=DeviceState(tmp_path / "device.json"))
    assert b'DISPLAY="PWNED BY X"\r\nONLINE=TRUE' in one(b"@PJL INFO STATUS\r\n", dev2).sent
    one(b'@PJL RDYMSG DISPLAY=""\r\n', dev2)
    assert b'DISPLAY="Ready"' in one(b"@PJL INFO STATUS\r\n", dev2).sent


def test_opmsg_takes_device_offline():
    dev = make_device()
    one(b'@PJL OPMSG DISPLAY="INSERT COIN"\r\n', dev)
    assert one(b"@PJL INFO STATUS\r\n", dev).sent == (
        b'@PJL INFO STATUS\r\nCODE=10002\r\nDISPLAY="INSERT COIN"\r\nONLINE=FALSE\r\n\x0c'
    )


def test_echo_as_pret_uses_it():
    pret = b"\x1b%-12345X@PJL INFO ID\r\n@PJL ECHO DELIMITER64986\r\n\r\n\x1b%-12345X"
    assert one(pret).sent == b'@PJL INFO ID\r\n"HP LaserJet 4250"\r\n\x0c@PJL ECHO DELIMITER64986\r\n\x0c'


def test_unknown_info_and_inquire_answer_question_mark():
    assert one(b"@PJL INFO FOO\r\n").sent == b'@PJL INFO FOO\r\n"?"\r\n\x0c'
    assert one(b"@PJL INFO PRODINFO\r\n").sent == b'@PJL INFO PRODINFO\r\n"?"\r\n\x0c'
    assert one(b"@PJL INQUIRE NOSUCHVAR\r\n").sent == b'@PJL INQUIRE NOSUCHVAR\r\n"?"\r\n\x0c'


def test_unknown_command_is_silent_and_recorded():
    run = one(b"@PJL BOGUS X=1\r\n@PJL INFO ID\r\n")
    assert run.sent.startswith(b"@PJL INFO ID")
    cmd = run.of("honeyjet.pjl.command")[0]
    assert cmd["command"] == "BOGUS" and cmd["known"] is False and cmd["replied"] is False


def _check_enumerations(body: bytes):
    """Every ``[n KIND]`` header is followed by exactly n TAB-indented lines."""
    lines = body.split(b"\r\n")
    for i, line in enumerate(lines):
        m = re.search(rb"\[(\d+) (ENUMERATED|RANGE)\]$", line)
        if m:
            n = int(m.group(1))
            opts = lines[i + 1 : i + 1 + n]
            assert all(o.startswith(b"\t") for o in opts), line
            assert not lines[i + 1 + n].startswith(b"\t"), line


@pytest.mark.parametrize("category", [b"CONFIG", b"VARIABLES", b"USTATUS"])
def test_enumerated_info_replies_are_well_formed(category):
    sent = one(b"@PJL INFO " + category + b"\r\n").sent
    assert sent.startswith(b"@PJL INFO " + category + b"\r\n") and sent.endswith(b"\r\n\x0c")
    _check_enumerations(sent[:-1])


def test_info_config_lists_languages_and_memory():
    sent = one(b"@PJL INFO CONFIG\r\n").sent
    assert b"LANGUAGES [3 ENUMERATED]\r\n\tPCL\r\n\tPOSTSCRIPT\r\n\tPCLXL\r\n" in sent
    assert b"MEMORY=83886080\r\n" in sent


def test_info_memory_pagecount_filesys():
    dev = make_device()
    assert re.fullmatch(rb"@PJL INFO MEMORY\r\nTOTAL=\d+\r\nLARGEST=\d+\r\n\x0c", one(b"@PJL INFO MEMORY\r\n", dev).sent)
    assert one(b"@PJL INFO PAGECOUNT\r\n", dev).sent == b"@PJL INFO PAGECOUNT\r\nPAGECOUNT=%d\r\n\x0c" % dev.page_count()
    fs = one(b"@PJL INFO FILESYS\r\n", dev).sent
    assert fs.startswith(b"@PJL INFO FILESYS [2 TABLE]\r\n\tVOLUME\tTOTAL SIZE\tFREE SPACE\tLOCATION\tLABEL\tSTATUS\r\n\t0:\t1755136\t")
    assert re.search(rb"\[\d+ TABLE\]\r?\n(.*?)\f", fs, re.S)  # Metasploit's regex


# -- variables ---------------------------------------------------------------------------
def test_set_is_per_job_default_persists():
    dev = make_device()
    run = one(b"\x1b%-12345X@PJL SET COPIES=7\r\n@PJL INQUIRE COPIES\r\n\x1b%-12345X@PJL INQUIRE COPIES\r\n", dev)
    assert run.sent == b"@PJL INQUIRE COPIES\r\n7\r\n\x0c@PJL INQUIRE COPIES\r\n1\r\n\x0c"
    run = one(b"@PJL DEFAULT COPIES=42\r\n", dev)
    assert run.of("honeyjet.device.change")[0]["setting"] == "variable:COPIES"
    assert one(b"@PJL DINQUIRE COPIES\r\n", dev).sent == b"@PJL DINQUIRE COPIES\r\n42\r\n\x0c"
    assert b"COPIES=42 [2 RANGE]" in one(b"@PJL INFO VARIABLES\r\n", dev).sent


def test_out_of_range_values_are_ignored():
    dev = make_device()
    one(b"@PJL DEFAULT COPIES=100000\r\n@PJL DEFAULT PAPER=BANANA\r\n", dev)
    assert one(b"@PJL DINQUIRE COPIES\r\n", dev).sent.split(b"\r\n")[1] == b"1"
    assert one(b"@PJL DINQUIRE PAPER\r\n", dev).sent.split(b"\r\n")[1] == b"LETTER"


def test_lparm_inquire():
    assert one(b"@PJL INQUIRE LPARM:PCL FONTSOURCE\r\n").sent == b"@PJL INQUIRE LPARM:PCL FONTSOURCE\r\nI\r\n\x0c"
    assert one(b"@PJL INQUIRE LPARM : PCL FONTSOURCE\r\n").sent == b"@PJL INQUIRE LPARM:PCL FONTSOURCE\r\nI\r\n\x0c"


def test_initialize_resets_defaults():
    dev = make_device()
    one(b"@PJL DEFAULT COPIES=5\r\n@PJL INITIALIZE\r\n", dev)
    assert one(b"@PJL DINQUIRE COPIES\r\n", dev).sent.split(b"\r\n")[1] == b"1"


def test_service_mode_commands_are_silent_and_flagged():
    run = one(b'@PJL SET SERVICEMODE=HPBOISEID\r\n@PJL CLEARNVRAM\r\n@PJL DMCMD ASCIIHEX="040006020501010301040104"\r\n')
    assert run.sent == b""
    cmds = run.of("honeyjet.pjl.command")
    assert [c["command"] for c in cmds] == ["SET", "CLEARNVRAM", "DMCMD"]
    assert all(c["service_mode"] for c in cmds)


# -- unsolicited status ----------------------------------------------------------------------
def test_ustatus_verbose_reports_unknown_command():
    run = one(b"@PJL USTATUS DEVICE=VERBOSE\r\n@PJL BOGUS\r\n")
    assert run.sent == b'@PJL USTATUS DEVICE\r\nCODE=20002\r\nDISPLAY="Ready"\r\nONLINE=TRUE\r\n\x0c'


def test_ustatus_job_messages():
    data = b'\x1b%-12345X@PJL USTATUS JOB=ON\r\n@PJL JOB NAME="rep"\r\n@PJL ENTER LANGUAGE=PCL\r\nHello\x0c\x1b%-12345X@PJL EOJ\r\n\x1b%-12345X'
    run = one(data)
    assert run.sent == (
        b'@PJL USTATUS JOB\r\nSTART\r\nNAME="rep"\r\n\x0c'
        b'@PJL USTATUS JOB\r\nEND\r\nNAME="rep"\r\nPAGES=1\r\n\x0c'
    )


def test_ustatusoff_and_timed():
    eng = engine()
    drive(eng, [b"@PJL USTATUS TIMED=2\r\n"], eof=False)
    assert eng.timed_interval == 5  # clamped to the printer's range
    assert eng.timed_status()[0].data.startswith(b"@PJL USTATUS TIMED\r\nCODE=10001")
    drive(eng, [b"@PJL USTATUSOFF\r\n"], eof=False)
    assert eng.timed_interval == 0 and eng.timed_status() == []
    assert b"DEVICE=OFF [3 ENUMERATED]" in drive(eng, [b"@PJL INFO USTATUS\r\n"]).sent


# -- file system --------------------------------------------------------------------------------
def test_fsdownload_then_fsupload_roundtrip_on_a_new_connection():
    dev = make_device()
    payload = bytes(range(256)) * 4 + UEL + b"\r\n"  # binary, with a UEL inside
    up = UEL + b'@PJL FSDOWNLOAD FORMAT:BINARY SIZE=%d NAME="0:/PJL/x.bin"\r\n' % len(payload) + payload + b"\r\n" + UEL
    run = one(up, dev)
    assert run.sent == b""
    assert run.captures[0]["kind"] == "file" and run.captures[0]["data"] == payload
    fs = run.of("honeyjet.pjl.fs")[0]
    assert fs["operation"] == "FSDOWNLOAD" and "fileerror" not in fs and fs["size"] == len(payload)
    down = one(b'@PJL FSUPLOAD NAME="0:/PJL/x.bin" OFFSET=0 SIZE=%d\r\n' % len(payload), dev).sent
    head = b'@PJL FSUPLOAD FORMAT:BINARY NAME="0:/PJL/x.bin" OFFSET=0 SIZE=%d\r\n' % len(payload)
    assert down == head + payload + b"\x0c"
    q = one(b'@PJL FSQUERY NAME="0:/PJL/x.bin"\r\n', dev).sent
    assert q == b'@PJL FSQUERY NAME="0:/PJL/x.bin" TYPE=FILE SIZE=%d\r\n\x0c' % len(payload)
    listing = one(b'@PJL FSDIRLIST NAME="0:\\PJL" ENTRY=1 COUNT=65535\r\n', dev).sent
    assert listing == b'@PJL FSDIRLIST NAME="0:\\PJL" ENTRY=1\r\n. TYPE=DIR\r\n.. TYPE=DIR\r\nx.bin TYPE=FILE SIZE=%d\r\n\x0c' % len(payload)


def test_fsdirlist_root_matches_hp_shape():
    sent = one(b'@PJL FSDIRLIST NAME="0:" ENTRY=1 COUNT=65535\r\n').sent
    assert sent.startswith(b'@PJL FSDIRLIST NAME="0:" ENTRY=1\r\n. TYPE=DIR\r\n.. TYPE=DIR\r\nPJL TYPE=DIR\r\n')
    assert re.search(rb"ENTRY=1\r?\n(.*?)\f", sent, re.S)


def test_traversal_is_contained_and_flagged():
    run = one(b'@PJL FSUPLOAD NAME="0:/../../etc/passwd" OFFSET=0 SIZE=1000\r\n')
    assert run.sent == b'@PJL FSUPLOAD NAME="0:/../../etc/passwd"\r\nFILEERROR=3\r\n\x0c'
    fs = run.of("honeyjet.pjl.fs")[0]
    assert fs["traversal"] is True and fs["fileerror"] == 3 and fs["normalized"] == "0:/etc/passwd"


def test_fsquery_missing_and_dir():
    assert one(b'@PJL FSQUERY NAME="0:\\nope"\r\n').sent == b'@PJL FSQUERY NAME="0:\\nope"\r\nFILEERROR=3\r\n\x0c'
    assert one(b'@PJL FSQUERY NAME="0:\\webServer"\r\n').sent == b'@PJL FSQUERY NAME="0:\\webServer" TYPE=DIR\r\n\x0c'


def test_fs_write_errors_and_delete():
    dev = make_device()
    run = one(b'@PJL USTATUS DEVICE=ON\r\n@PJL FSDELETE NAME="0:/webServer/default/csconfig"\r\n', dev)
    assert b"CODE=32012" in run.sent  # read only, reported as unsolicited status
    one(b'@PJL FSMKDIR NAME="0:/tmp"\r\n', dev)
    assert one(b'@PJL FSQUERY NAME="0:/tmp"\r\n', dev).sent.endswith(b"TYPE=DIR\r\n\x0c")
    one(b'@PJL FSDELETE NAME="0:/tmp"\r\n', dev)
    assert b"FILEERROR=3" in one(b'@PJL FSQUERY NAME="0:/tmp"\r\n', dev).sent


def test_fsdownload_larger_than_volume_is_captured_but_not_stored():
    dev = make_device()
    big = b"F" * 3_000_000
    run = one(b'@PJL FSDOWNLOAD FORMAT:BINARY SIZE=%d NAME="0:/fw.bin"\r\n' % len(big) + big, dev)
    assert run.captures[0]["data"] == big
    assert run.of("honeyjet.pjl.fs")[0]["fileerror"] == 2


def test_fsinit_wipes_volume():
    dev = make_device()
    run = one(b'@PJL FSINIT VOLUME="0:"\r\n', dev)
    assert run.of("honeyjet.device.change")[0]["via"] == "FSINIT"
    assert one(b'@PJL FSDIRLIST NAME="0:" ENTRY=1\r\n', dev).sent == b'@PJL FSDIRLIST NAME="0:" ENTRY=1\r\n. TYPE=DIR\r\n.. TYPE=DIR\r\n\x0c'


# -- jobs ------------------------------------------------------------------------------------
def test_plain_text_job_is_captured_exactly_and_counts_pages():
    dev = make_device()
    before = dev.page_count()
    text = b"\r\n\r\nHello printer\r\n" * 100
    run = one(text, dev)
    assert run.sent == b""
    (cap,) = run.captures
    assert cap["data"] == text and cap["meta"]["language"] == "text"
    assert cap["end"]["pages"] == 5 and cap["end"]["ended_by"] == "eof"  # 300 lines at 60 per page
    assert dev.page_count() == before + 5


def test_pjl_wrapped_postscript_job_with_name_and_user():
    dev = make_device()
    ps = b"%!PS-Adobe-3.0\n%%Pages: 3\n/Helvetica findfont 12 scalefont setfont 72 720 moveto (hi) show showpage\n%%EOF\n"
    job = (
        b'\x1b%-12345X@PJL JOB NAME="Budget.xlsx"\r\n@PJL SET USERNAME="jdoe"\r\n@PJL ENTER LANGUAGE=POSTSCRIPT\r\n'
        + ps
        + b"\x1b%-12345X@PJL EOJ\r\n\x1b%-12345X"
    )
    run = one(job, dev)
    assert run.sent == b""  # a real document produces no PostScript errors
    (cap,) = run.captures
    assert cap["data"] == ps
    assert cap["end"] == {"job": 1, "language": "postscript", "name": "Budget.xlsx", "user": "jdoe", "pages": 3, "ended_by": "uel"}
    assert run.of("honeyjet.job.start")[0]["language"] == "postscript"


def test_postscript_queries_through_pjl_header():
    dev = make_device()
    run = one(b"\x1b%-12345X@PJL ENTER LANGUAGE = POSTSCRIPT\n%!\nproduct print\n(DLM1\n) print flush\n", dev)
    assert run.sent == b"HP LaserJet 4250DLM1\n"
    assert run.captures[0]["end"]["pages"] == 0  # a query prints nothing


def test_postscript_pagecount_agrees_with_pjl():
    dev = make_device()
    ps = one(b"%!\ncurrentsystemparams /PageCount get ==\n", dev).sent
    pjl = one(b"@PJL INFO PAGECOUNT\r\n", dev).sent
    assert ps.strip() == pjl.split(b"PAGECOUNT=")[1].split(b"\r\n")[0]


def test_pcl_echo():
    run = one(b"\x1b%-12345X@PJL ENTER LANGUAGE = PCL\r\n\x1b*s-12345X\x1b%-12345X")
    assert run.sent == b"PCL\r\nECHO -12345\r\n\x0c"
    assert run.of("honeyjet.pcl.command")


def test_http_on_9100_is_a_silent_job():
    req = b"GET / HTTP/1.1\r\nHost: 192.0.2.1:9100\r\nUser-Agent: Mozilla/5.0\r\n\r\n"
    run = one(req)
    assert run.sent == b""
    assert run.captures[0]["meta"]["language"] == "http" and run.captures[0]["data"] == req


def test_cross_site_printing_switches_to_pjl_after_uel():
    body = b'POST / HTTP/1.1\r\nHost: printer:9100\r\nContent-Type: text/plain\r\n\r\n\x1b%-12345X@PJL RDYMSG DISPLAY="XSP"\r\n@PJL INFO ID\r\n'
    dev = make_device()
    run = one(body, dev)
    assert run.sent == b'@PJL INFO ID\r\n"HP LaserJet 4250"\r\n\x0c'
    assert dev.status().display == "XSP"
    assert run.captures[0]["meta"]["language"] == "http"


def test_status_reads_printing_while_a_job_arrives():
    dev = make_device()
    eng = engine(dev)
    eng.feed(b"%!PS\n/x 1 def\n" + b"% filler\n" * 10)
    probe = drive(engine(dev), [b"@PJL INFO STATUS\r\n"]).sent
    assert b"CODE=10023" in probe and b'DISPLAY="Processing job"' in probe
    eng.feed(b"showpage\n")
    eng.eof()
    assert b"CODE=10001" in drive(engine(dev), [b"@PJL INFO STATUS\r\n"]).sent


# -- bounds -----------------------------------------------------------------------------------
def test_overlong_line_is_bounded_and_recorded():
    eng = engine(max_line=512)
    run = drive(eng, [b"@PJL ECHO " + b"A" * 100_000 + b"\r\n@PJL INFO ID\r\n"])
    assert run.sent == b'@PJL INFO ID\r\n"HP LaserJet 4250"\r\n\x0c'
    assert run.of("honeyjet.limit.hit")[0]["limit"] == "line_length"
    assert run.of("honeyjet.pjl.command")[0]["truncated"] is True


def test_line_cut_by_uel_is_not_executed():
    run = one(b"@PJL INFO ID\x1b%-12345X@PJL INFO STATUS\r\n")
    assert run.sent.startswith(b"@PJL INFO STATUS")
    assert run.of("honeyjet.pjl.command")[0]["replied"] is False


def test_buffer_stays_bounded_for_endless_line():
    eng = engine(max_line=1024)
    for _ in range(200):
        drive(eng, [b"@PJL COMMENT " + b"x" * 5000], eof=False)
        assert eng.buffered_bytes < 1024 + 64


def test_jobs_per_session_limit_reads_but_stops_capturing():
    eng = engine(max_jobs=3)
    run = drive(eng, [b"job\x1b%-12345X" * 10 + b"@PJL INFO ID\r\n"])
    assert len(run.captures) == 3
    assert [f["limit"] for f in run.of("honeyjet.limit.hit")] == ["jobs_per_session"]
    assert run.sent == b'@PJL INFO ID\r\n"HP LaserJet 4250"\r\n\x0c'  # still a printer
