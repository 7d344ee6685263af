"""The PostScript engine: PRET's probes, the scanner, the evaluator, documents and the bounds."""

from __future__ import annotations

import base64
import gzip
import json
import re
import shutil
import subprocess
import time
import tracemalloc
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from honeyjet.events import CATALOGUE, check_fields
from honeyjet.protocols.outputs import Emit, Send
from honeyjet.protocols.postscript import (
    PostScriptInterpreter,
    PSError,
    PSLexer,
    StaticPSDevice,
    a85_decode,
    fmt_real,
    load_operator_names,
    parse_number,
    scan_all,
)

DATA = Path(__file__).resolve().parent / "data"
UNDEFINED_FOO = (
    b"%%[ Error: undefined; OffendingCommand: foo ]%%\r\n"
    b"%%[ Flushing: rest of job (to end-of-file) will be ignored ]%%\r\n"
)
FLUSHING = b"%%[ Flushing: rest of job (to end-of-file) will be ignored ]%%\r\n"
# PRET's I/O workaround (postscript.py, PS_IOHACK), sent before every command by default
IOHACK = b"/print {(%stdout) (w) file dup 3 2 roll writestring flushfile} def\n/== {128 string cvs print (\\n) print} def\n"


def make(**kw: Any) -> PostScriptInterpreter:
    device = kw.pop("device", None) or StaticPSDevice()
    ps = PostScriptInterpreter(device, **kw)
    ps.strict = True
    return ps


def run(data: bytes, chunks: list[bytes] | None = None, **kw: Any) -> tuple[bytes, list[Emit]]:
    """Feed ``data`` (or ``chunks``), then end the job; return sent bytes and events."""
    ps = make(**kw)
    outs = []
    for chunk in chunks if chunks is not None else [data]:
        outs += ps.feed(chunk)
    outs += ps.end_of_job()
    return sent(outs), [o for o in outs if isinstance(o, Emit)]


def sent(outs: list[Any]) -> bytes:
    return b"".join(o.data for o in outs if isinstance(o, Send))


def out(data: bytes, **kw: Any) -> bytes:
    return run(data, **kw)[0]


def events(data: bytes, eventid: str | None = None, **kw: Any) -> list[dict]:
    return [dict(e.fields) for e in run(data, **kw)[1] if eventid is None or e.eventid == eventid]


def pret(cmd: bytes, iohack: bool = False) -> bytes:
    """A command framed the way PRET's ``cmd()`` frames it (after the PJL header)."""
    if iohack:
        cmd = b"{" + cmd + b"} stopped"
    return b"%!\n" + (IOHACK if iohack else b"") + cmd + b"\n(DELIMITER31337\\n) print flush\n"


# --------------------------------------------------------------------------------------------
# PRET's probes


@pytest.mark.parametrize("iohack", [False, True])
def test_pret_connect_probe(iohack):
    got = out(pret(b"(x1) = (x2) == << /DoPrintErrors false >> setsystemparams", iohack))
    assert got == b"x1\n(x2)\nDELIMITER31337\n"


@pytest.mark.parametrize(
    ("cmd", "reply"),
    [
        (b"product print", b"HP LaserJet 4250"),
        (b"currentsystemparams /PageCount get ==", b"31337\n"),
        (b"realtime ==", b"86400000\n"),
        (b"(%Calendar%) currentdevparams /DateTime get ==", b"(2026/11/27 10:39:59)\n"),
        (b"version ==", b"(3010.107)\n"),
        (b"revision ==", b"2\n"),
        (b"serialnumber ==", b"12345\n"),
        (b"languagelevel ==", b"3\n"),
        (b"vmstatus exch pop exch pop ==", b"8388608\n"),
        (b"currentsystemparams /SerialNumber get ==", b"(CNBXF12345)\n"),
        (b"currentsystemparams /InstalledRam get ==", b"67108864\n"),
        (b"currentpagedevice /PostRenderingEnhance known ==", b"true\n"),
        (b"serverdict /execkpdlbatch known == statusdict /BRversion known ==", b"false\nfalse\n"),
        (b"(%disk0%) devstatus ==", b"false\n"),
        (b"foo", UNDEFINED_FOO),
    ],
)
@pytest.mark.parametrize("iohack", [False, True])
def test_pret_probes(cmd, reply, iohack):
    got = out(pret(cmd, iohack))
    if cmd == b"foo" and iohack:  # inside `stopped` the error is caught silently, as on the device
        assert got == b"DELIMITER31337\n"
    elif cmd == b"foo":
        assert got == reply  # the delimiter is flushed with the rest of the job
    else:
        assert got == reply + b"DELIMITER31337\n"


def test_pret_delimiter_and_flush():
    assert out(b"(DELIMITER123\\n) print flush") == b"DELIMITER123\n"
    assert out(b"vmstatus pstack") == b"8388608\n262144\n0\n"


def test_pret_version_command_with_repeat_and_conditionals():
    cmd = (
        b"(Dialect:  ) print\n"
        b"currentpagedevice dup (PostRenderingEnhance) known {(Adobe\\n)   print}\n"
        b"{serverdict dup (execkpdlbatch) known {(KPDL\\n) print}\n"
        b"{statusdict dup (BRversion) known {(BR-Script ) print\n"
        b"/BRversion get ==}{(Unknown) print} ifelse} ifelse} ifelse\n"
        b"currentsystemparams 11 {dup} repeat\n"
        b"(Version:  ) print version ==\n(Level:    ) print languagelevel ==\n"
        b"(Revision: ) print revision ==\n(Serial:   ) print serialnumber ==\n"
        b"/SerialNumber known {(Number:   ) print /SerialNumber get ==} if\n"
        b"/BuildTime    known {(Built:    ) print /BuildTime    get ==} if\n"
        b"/PrinterName  known {(Printer:  ) print /PrinterName  get ==} if\n"
        b"/LicenseID    known {(License:  ) print /LicenseID    get ==} if\n"
        b"/PrinterCode  known {(Device:   ) print /PrinterCode  get ==} if\n"
        b"/EngineCode   known {(Engine:   ) print /EngineCode   get ==} if"
    )
    for iohack in (False, True):
        got = out(pret(cmd, iohack))
        assert got == (
            b"Dialect:  Adobe\nVersion:  (3010.107)\nLevel:    3\nRevision: 2\nSerial:   12345\n"
            b"Number:   (CNBXF12345)\nBuilt:    1067472000\nPrinter:  (HP LaserJet 4250)\nDELIMITER31337\n"
        )


def test_pret_free_pagecount_date_df_devices():
    free = (
        b"currentsystemparams dup dup dup\n/mb 1048576 def /kb 100 def /str 32 string def\n"
        b"(size:   ) print /InstalledRam known {\n  /InstalledRam get dup mb div cvi str cvs print (.) print "
        b"kb mod cvi str cvs print (M\\n) print}{pop (Not available\\n) print\n} ifelse"
    )
    assert out(pret(free, True)) == b"size:   64.64M\nDELIMITER31337\n"
    pagecount = b"currentsystemparams dup /PageCount known\n{/PageCount get ==}{(Not available) print} ifelse"
    assert out(pret(pagecount, True)) == b"31337\nDELIMITER31337\n"
    date = (
        b"(%Calendar%) /IODevice resourcestatus\n{(%Calendar%) currentdevparams /DateTime get print}\n"
        b"{(Not available) print} ifelse"
    )
    assert out(pret(date)) == b"2026/11/27 10:39:59DELIMITER31337\n"
    disk = StaticPSDevice(disk_list=[("%disk0%", 8 << 20, 6 << 20)])
    df = b"(%disk0%) devstatus dup {pop " + b"== " * 8 + b"} if"
    assert out(pret(df), device=disk) == b"8192\n6144\n0\nfalse\ntrue\ntrue\ntrue\ntrue\nDELIMITER31337\n"
    assert out(pret(df)) == b"DELIMITER31337\n"  # no disk: devstatus is false
    devices = b"/str 128 string def (*) {print (\\n) print} str /IODevice resourceforall"
    assert out(pret(devices), device=disk) == b"%Calendar%\n%disk0%\nDELIMITER31337\n"
    vols = b"/str 128 string def (*){print (\\n) print} str devforall"
    assert out(pret(vols), device=disk) == b"%disk0%\nDELIMITER31337\n"


def test_pret_unlock_finds_factory_password_and_lock_records_password():
    unlock = (
        b"/min 0 def /max 1048576 def\nstatusdict begin {min 1 max\n"
        b"  {dup checkpassword {== flush stop}{pop} ifelse} for\n} stopped pop"
    )
    got, evs = run(pret(unlock))
    assert got == b"0\nDELIMITER31337\n"
    assert {"operator": "checkpassword", "category": "password", "operands": ["0"]} in [dict(e.fields) for e in evs]
    lock = b"<< /Password () /SystemParamsPassword (s3cret) /StartJobPassword (s3cret) >> setsystemparams"
    ev = events(pret(lock), "honeyjet.ps.operator")
    assert ev[0]["operator"] == "setsystemparams" and "s3cret" in ev[0]["operands"][0]


def test_pret_hang_never_answers_and_next_job_works():
    ps = make()
    first = ps.feed(pret(b"{} loop"))
    assert sent(first) == b""
    assert any(isinstance(o, Emit) and o.fields.get("error") == "timeout" for o in first)
    ps.end_of_job()
    assert sent(ps.feed(b"product print\n")) == b"HP LaserJet 4250"


# --------------------------------------------------------------------------------------------
# exitserver, startjob, parameters, statusdict


def test_exitserver_and_startjob():
    got, evs = run(b"serverdict begin 0 exitserver")
    assert got == b"%%[ exitserver: permanent state may be changed ]%%\r\n"
    assert {"operator": "exitserver", "category": "persistent", "operands": ["0"]} in [dict(e.fields) for e in evs]
    assert out(b"true 0 startjob ==") == b"true\n"
    assert out(b"true (wrong) startjob ==") == b"false\n"
    assert out(b"serverdict begin (wrong) exitserver").startswith(b"%%[ Error: invalidaccess; OffendingCommand: exitserver ]%%")
    assert out(b"0 exitserver") == b"%%[ Error: undefined; OffendingCommand: exitserver ]%%\r\n" + FLUSHING


def test_parameters_are_accepted_silently():
    assert out(b"<< /DoPrintErrors false >> setsystemparams << /JobTimeout 0 >> setuserparams (ok) print") == b"ok"
    assert out(b"<< /Duplex true /NumCopies 3 >> setpagedevice currentpagedevice dup /Duplex get == /NumCopies get ==") == b"true\n3\n"
    assert out(b"currentpagedevice /PageSize get == currentpagedevice /HWResolution get ==") == b"[612 792]\n[600 600]\n"
    assert out(b"currentuserparams /MaxOpStack get type ==") == b"integertype\n"
    ev = events(b"<< /BeginPage {capturehook} bind >> setpagedevice", "honeyjet.ps.operator")
    assert ev == [{"operator": "setpagedevice", "category": "device", "operands": ["<< /BeginPage {capturehook} >>"]}]


def test_statusdict_keys():
    assert out(b"statusdict begin product end print") == b"HP LaserJet 4250"
    assert out(b"statusdict /product get print statusdict /revision get ==") == b"HP LaserJet 4250" + b"2\n"
    assert out(b"statusdict begin pagecount == 64 string printername print end") == b"31337\nHP LaserJet 4250"
    assert out(b"statusdict /jobname get length == statusdict /pagecount get exec ==") == b"0\n31337\n"
    assert out(b"statusdict begin serialnumber == end") == b"12345\n"
    assert out(b"pagecount") == b"%%[ Error: undefined; OffendingCommand: pagecount ]%%\r\n" + FLUSHING


def test_calendar_and_disk_device_parameters():
    got = out(b"(%Calendar%) currentdevparams dup /Year get == dup /Month get == /Running get ==")
    assert got == b"2026\n11\ntrue\n"
    disk = StaticPSDevice(disk_list=[("%disk0%", 8 << 20, 6 << 20)])
    assert out(b"(%disk0%) currentdevparams /Free get ==", device=disk) == b"6144\n"
    assert out(b"(%nope%) currentdevparams").startswith(b"%%[ Error: undefined; OffendingCommand: currentdevparams ]%%")


# --------------------------------------------------------------------------------------------
# output formatting


@pytest.mark.parametrize(
    ("src", "expected"),
    [
        (b"(a\\nb\\(\\001\\377) ==", b"(a\\nb\\(\\001\\377)\n"),
        (b"(abc) =", b"abc\n"),
        (b"/abc == /abc =", b"/abc\nabc\n"),
        (b"[1 [2 {3 add}] /x (s)] ==", b"[1 [2 {3 add}] /x (s)]\n"),
        (b"{1 2 add} ==", b"{1 2 add}\n"),
        (b"1 dict == 1 dict =", b"-dict-\n--nostringval--\n"),
        (b"null == mark == null =", b"null\n-mark-\n--nostringval--\n"),
        (b"/add load == /add load =", b"--add--\nadd\n"),
        (b"true == false =", b"true\nfalse\n"),
        (b"1 3 div == 1.0 == 1000000.0 == 1e-7 == -2.5 =", b"0.333333\n1.0\n1.0e+06\n1.0e-07\n-2.5\n"),
        (b"2147483647 1 add == 16#FFFFFFFF == 8#17 == 2#101 ==", b"2.14748e+09\n-1\n15\n5\n"),
        (b"(\\000\\377x\\n) print", b"\x00\xffx\n"),
        (b"1 (two) /three pstack", b"/three\n(two)\n1\n"),
        (b"1 (two) /three stack", b"three\ntwo\n1\n"),
        (b"123 10 string cvs print ( ) print -255 16 10 string cvrs print", b"123 FFFFFF01"),
    ],
)
def test_output_forms(src, expected):
    assert out(src) == expected


def test_print_requires_a_string():
    assert out(b"5 print") == b"%%[ Error: typecheck; OffendingCommand: print ]%%\r\n" + FLUSHING


def test_redefined_output_operators_keep_builtin_behaviour_and_are_recorded():
    got, evs = run(IOHACK + b"(x1) = (x2) == (raw) print")
    assert got == b"x1\n(x2)\nraw"
    ops = [dict(e.fields) for e in evs if e.eventid == "honeyjet.ps.operator"]
    assert ops[0] == {
        "operator": "def", "category": "persistent",
        "operands": ["/print", "{(%stdout) (w) file dup 3 2 roll writestring flushfile}"],
    }
    assert ops[1]["operands"][0] == "/=="


def test_user_procedures_run_and_literals_push():
    assert out(b"/sq {dup mul} def 7 sq == /x 42 def x ==") == b"49\n42\n"
    assert out(b"/showpage {(hooked) print} def showpage") == b"hooked"
    evs = events(b"/showpage {} def", "honeyjet.ps.operator")
    assert evs == [{"operator": "def", "category": "persistent", "operands": ["/showpage", "{}"]}]
    assert events(b"10 dict begin /showpage {} def end", "honeyjet.ps.operator") == []


def test_known_unimplemented_operators_are_harmless():
    assert out(b"newpath 100 200 moveto 300 400 lineto stroke gsave 1 0 0 setrgbcolor grestore count ==") == b"0\n"
    assert out(b"/Helvetica findfont 12 scalefont setfont 72 720 moveto (Hi) show showpage count ==") == b"0\n"
    assert out(b"currentpoint count == pop pop (x) stringwidth count ==") == b"2\n2\n"
    assert out(b"erasepage initgraphics copypage (ok) print") == b"ok"


# --------------------------------------------------------------------------------------------
# scanner


def test_scanner_tokens():
    objs = scan_all(b"%!PS\n%%DSC\n 1 -2 +3 4.5 .5 6. 1e3 16#ff /lit //imm name [ ] << >> (s) <41 4> <~87cURD]i,\"Ebo80~> {a {b}}")
    kinds = [type(o).__name__ for o in objs]
    assert kinds == ["int", "int", "int", "float", "float", "float", "float", "int", "Name", "_Immediate", "Name",
                     "Name", "Name", "Name", "Name", "PSString", "PSString", "PSString", "PSArray"]
    assert objs[:8] == [1, -2, 3, 4.5, 0.5, 6.0, 1000.0, 255]
    assert bytes(objs[15].data) == b"s" and bytes(objs[16].data) == b"A@"
    assert bytes(objs[17].data) == b"Hello World!"
    assert objs[18].executable and objs[18].items[1].items[0].text == "b"


def test_string_escapes_and_line_ends():
    s = scan_all(b"(a(b)c\\)\\\\\\t\\101\\1010\\q\\\nz\r\n\ry)")[0]
    assert bytes(s.data) == b"a(b)c)\\\tAA0qz\n\ny"


def test_numbers():
    assert parse_number(b"2147483648") == 2147483648.0
    assert parse_number(b"-2147483648") == -2147483648
    assert parse_number(b"36#Z") == 35 and parse_number(b"2#102") is None and parse_number(b"37#1") is None
    assert parse_number(b"1.5e") is None and parse_number(b"abc") is None
    assert parse_number(b"0" * 10000 + b"7") == 7
    assert fmt_real(123456.7) == "123457.0" and fmt_real(-0.0001) == "-0.0001"
    assert a85_decode(b"z") == b"\0\0\0\0"
    with pytest.raises(ValueError):
        a85_decode(b"!")


@pytest.mark.parametrize(
    ("src", "error", "command"),
    [
        (b")", "syntaxerror", ")"),
        (b"}", "syntaxerror", "}"),
        (b"<4g>", "syntaxerror", "<"),
        (b"> ", "syntaxerror", ">"),
        (b"(unterminated", "syntaxerror", "("),
        (b"{ 1 2", "syntaxerror", "{"),
        (b"1" * 400, "limitcheck", "1" * 128),
        (b"1e400 ", "limitcheck", "1e400"),
        (b"{" * 100, "limitcheck", "{"),
    ],
)
def test_scanner_errors(src, error, command):
    got, evs = run(src)
    assert got == f"%%[ Error: {error}; OffendingCommand: {command} ]%%\r\n".encode() + FLUSHING
    assert [dict(e.fields) for e in evs] == [{"error": error, "operator": command}]


def test_immediate_names_resolve_at_scan_time():
    assert out(b"/x 1 def /p {//x} def /x 2 def p == x ==") == b"1\n2\n"
    assert out(b"//nosuch") == b"%%[ Error: undefined; OffendingCommand: nosuch ]%%\r\n" + FLUSHING


def test_lexer_truncates_long_tokens_but_consumes_them():
    lexer = PSLexer(max_token_bytes=64)
    pos, tok = lexer.next_token(b"(" + b"x" * 1000, 0)
    assert tok is None and lexer.buffered_bytes <= 64
    pos, tok = lexer.next_token(b"x" * 1000 + b") 1 ", 0)
    assert bytes(tok[1].data) == b"x" * 64 and lexer.truncated


# --------------------------------------------------------------------------------------------
# evaluator


@pytest.mark.parametrize(
    ("src", "expected"),
    [
        (b"1 2 exch == == 1 2 3 3 -1 roll pstack", b"1\n2\n1\n3\n2\n"),
        (b"1 2 3 2 copy pstack", b"3\n2\n3\n2\n1\n"),
        (b"1 2 3 1 index == clear count ==", b"2\n0\n"),
        (b"mark 1 2 counttomark == cleartomark count ==", b"2\n0\n"),
        (b"7 2 idiv == -7 2 mod == 7 2 div == 2 10 exp == 9 sqrt == 1 2 add 3 mul 4 sub ==", b"3\n-1\n3.5\n1024.0\n3.0\n5\n"),
        (b"1 31 bitshift == -1 -28 bitshift == 5 3 and == 5 3 xor == true not ==", b"-2147483648\n15\n1\n6\nfalse\n"),
        (b"(abc) (abc) eq == (abc) /abc eq == 1 1.0 eq == (a) (b) lt == 3 2 gt ==", b"true\ntrue\ntrue\ntrue\ntrue\n"),
        (b"(3.5) cvr == (42) cvi == 3.9 cvi == (abc) cvn == /x cvx xcheck == 1 type ==", b"3.5\n42\n3\n/abc\ntrue\nintegertype\n"),
        (b"[1 2 3] dup 1 get == length == (hello) 1 3 getinterval == 3 array ==", b"2\n3\n(ell)\n[null null null]\n"),
        (b"/a [1 2 3] def a 0 9 put a == (abc) dup 0 65 put ==", b"[9 2 3]\n(Abc)\n"),
        (b"/d 5 dict def d /k (v) put d /k get == d /k known == d /z known == d length ==", b"(v)\ntrue\nfalse\n1\n"),
        (b"<< /a 1 /b 2 >> dup /b get == begin a == end", b"2\n1\n"),
        (b"/x 5 def /x where {pop (found) print} if /nope where ==", b"foundfalse\n"),
        (b"(hello world) (o w) search pop == == ==", b"(hell)\n(o w)\n(orld)\n"),
        (b"[1 2] aload pop add == 1 2 3 [0 0 0] astore ==", b"3\n[1 2 3]\n"),
        (b"0 1 1 4 {add} for == 0 [1 2 3] {add} forall == 3 {(x) print} repeat", b"10\n6\nxxx"),
        (b"<< /a 1 >> {== ==} forall (ab) {==} forall", b"1\n/a\n97\n98\n"),
        (b"0 {1 add dup 5 eq {exit} if} loop ==", b"5\n"),
        (b"true {(y) print} if false {(y) print} {(n) print} ifelse", b"yn"),
        (b"{1 0 div} stopped == $error /errorname get == {stop} stopped == {} stopped ==", b"true\n/undefinedresult\ntrue\nfalse\n"),
        (b"(1 2 add) cvx exec == (abc 12) token pop == ==", b"3\nabc\n(12)\n"),
        (b"save /x 1 def restore (ok) print 1 dict begin currentdict end type ==", b"okdicttype\n"),
        (b"/p {add} bind def 1 2 p == /q {x} def /q load ==", b"3\n{x}\n"),
        (b"systemdict /showpage known == systemdict /foobar known == systemdict /getenv known ==", b"true\nfalse\nfalse\n"),
        (b"1183615869 internaldict /superexec get type ==", b"operatortype\n"),
        (b"{(in) print} 1183615869 internaldict /superexec get exec", b"in"),
        (b"statusdict begin 0 checkpassword == 1 checkpassword == end", b"true\nfalse\n"),
    ],
)
def test_evaluator(src, expected):
    assert out(src) == expected


@pytest.mark.parametrize(
    ("src", "error", "command"),
    [
        (b"pop", "stackunderflow", "pop"),
        (b"1 (a) add", "typecheck", "add"),
        (b"[1 2] 5 get", "rangecheck", "get"),
        (b"-1 array", "rangecheck", "array"),
        (b"999999999 string", "limitcheck", "string"),
        (b"1 0 idiv", "undefinedresult", "idiv"),
        (b"<< /a 1 >> /b get", "undefined", "get"),
        (b"/nosuch load", "undefined", "load"),
        (b"1 2 ]", "unmatchedmark", "]"),
        (b"end", "dictstackunderflow", "end"),
        (b"{1 1 1 1 1 1 1 1 1 1 1 1 1 1 1 1} loop", "stackoverflow", "1"),  # ~70k steps: within one object's budget
        (b"/r {r r} def r", "execstackoverflow", "r"),
        (b"{65535 string} loop", "VMerror", "string"),
        (b"exit", "invalidexit", "exit"),
        (b"systemdict begin /x 1 def", "invalidaccess", "def"),
        (b"1 internaldict", "invalidaccess", "internaldict"),
        (b"(nosuchfile) (r) file", "undefinedfilename", "file"),
    ],
)
def test_errors_report_and_flush(src, error, command):
    got, evs = run(src + b" (after) print")
    assert got == f"%%[ Error: {error}; OffendingCommand: {command} ]%%\r\n".encode() + FLUSHING
    assert [dict(e.fields) for e in evs if e.eventid == "honeyjet.ps.error"] == [{"error": error, "operator": command}]


def test_error_inside_stopped_is_silent_and_restores_operands():
    assert out(b"1 (a) {add} stopped pstack") == b"true\n(a)\n1\n"


def test_ctrl_d_ends_the_job_everywhere():
    assert out(b"(a) print\x04(b) print foo\x04(c) print") == b"ab" + UNDEFINED_FOO + b"c"
    assert out(b"/x 1 def\x04x ==") == b"%%[ Error: undefined; OffendingCommand: x ]%%\r\n" + FLUSHING
    assert out(b"(open string\x04(d) print") == b"%%[ Error: syntaxerror; OffendingCommand: ( ]%%\r\n" + FLUSHING + b"d"
    assert out(b"{ (x) print\x04 (e) print") == b"%%[ Error: syntaxerror; OffendingCommand: { ]%%\r\n" + FLUSHING + b"e"


def test_end_of_job_finishes_a_pending_token_then_resets():
    ps = make()
    assert sent(ps.feed(b"product print")) == b""
    assert sent(ps.end_of_job()) == b"HP LaserJet 4250"
    assert sent(ps.feed(b"foo ")) == UNDEFINED_FOO
    assert sent(ps.feed(b"(ignored) print ")) == b""
    ps.end_of_job()
    assert sent(ps.feed(b"(fresh) print ")) == b"fresh"


@pytest.mark.parametrize("src", [b"currentfile 100 string readstring", b"currentfile eexec", b"(x) eexec",
                                 b"8 8 8 [1 0 0 1 0 0] {currentfile s readhexstring pop} image",
                                 b"(%stdin) (r) file"])
def test_stream_data_stops_evaluation(src):
    got, evs = run(src + b"\n\xff\xfe)}binary garbage foo\nmore")
    assert got == b""
    assert any(e.fields.get("category") == "stream" for e in evs)
    assert not [e for e in evs if e.eventid == "honeyjet.ps.error"]
    assert out(src + b"\n garbage\x04(next) print") == b"next"


def test_file_operators_are_recorded_and_fail_safely():
    got, evs = run(b"(%disk0%../../etc/passwd) status {pop pop pop pop (exists) print} {(missing) print} ifelse")
    assert got == b"missing"
    assert dict(evs[0].fields) == {"operator": "status", "category": "file", "operands": ["(%disk0%../../etc/passwd)"]}
    got, evs = run(b"(0:/secret) deletefile")
    assert got.startswith(b"%%[ Error: undefinedfilename; OffendingCommand: deletefile ]%%")
    assert dict(evs[0].fields) == {"operator": "deletefile", "category": "file", "operands": ["(0:/secret)"]}
    disk = StaticPSDevice(disk_list=[("%disk0%", 1 << 20, 1 << 19)])
    src = b"/f (%disk0%x) (w) file def f (payload) writestring f closefile (done) print"
    got, evs = run(src, device=disk)
    assert got == b"done"
    ops = [(e.fields["operator"], e.fields["operands"]) for e in evs if e.eventid == "honeyjet.ps.operator"]
    assert ("writestring", ["-file-", "(payload)"]) in ops and ("closefile", ["-file-"]) in ops
    assert out(b"(%stdout) (w) file (via stdout) writestring") == b"via stdout"


def test_control_operators_are_recorded_once_per_job():
    evs = events(b"3 {} repeat 2 {} repeat {} stopped pop [1] {pop} forall", "honeyjet.ps.operator")
    assert [(e["operator"], e["category"]) for e in evs] == [("repeat", "control"), ("stopped", "control"), ("forall", "control")]


def test_executive_prompts_and_survives_errors():
    got = out(b"false echo executive\nproduct print\nfoo 1 2 add ==\n1 2 add ==\nquit\n(after) print\n")
    assert got.startswith(b"PostScript(r) Version 3010.107\r\n")
    assert got.endswith(
        b"PS>HP LaserJet 4250PS>%%[ Error: undefined; OffendingCommand: foo ]%%\r\nPS>3\nPS>after"
    )


def test_event_cap_per_job():
    src = b"".join(b"(%d) print " % i for i in range(10))
    evs = run(src, max_events=4)[1]
    assert [e.eventid for e in evs] == ["honeyjet.ps.query"] * 4 + ["honeyjet.limit.hit"]
    assert dict(evs[-1].fields) == {"limit": "ps_events", "value": 4}
    ps = make(max_events=4)
    ps.feed(src + b"\x04")
    assert len([o for o in ps.feed(src) if isinstance(o, Emit)]) == 5  # a new job has a new budget


def test_events_follow_the_catalogue_and_escape_attacker_text():
    src = (b"(\x1b[31m\xff) print (evil\npath) status pop /p\x07q load foo \x04"
           b"serverdict begin 0 exitserver {} loop")
    for ev in run(src)[1]:
        assert ev.eventid in CATALOGUE
        assert check_fields(ev.eventid, ev.fields) == []
        for text in [ev.message, *[v for v in ev.fields.values() if isinstance(v, str)],
                     *[x for v in ev.fields.values() if isinstance(v, list) for x in v]]:
            assert all(0x20 <= ord(ch) < 0x7F or ch == "…" for ch in text), text


# --------------------------------------------------------------------------------------------
# documents


def _document_ok(data: bytes) -> tuple[bytes, list[Emit]]:
    got, evs = run(data)
    assert b"%%[ Error" not in got
    assert not [e for e in evs if e.eventid == "honeyjet.ps.error"]
    return got, evs


def test_ghostscript_ps2write_document_has_no_errors():
    data = gzip.decompress((DATA / "ps2write_hello.ps.gz").read_bytes())
    assert b"%%Creator: GPL Ghostscript" in data
    got, evs = _document_ok(data)
    assert got == b""
    # the prolog runs (if/ifelse/forall/user procedures) until the first page stream is read
    assert [e.fields["operator"] for e in evs if e.fields.get("category") == "stream"] == ["currentfile"]
    for size in (1, 7, 4096):  # chunking does not matter
        chunks = [data[i : i + size] for i in range(0, len(data), size)] if size > 1 else None
        if chunks is not None:
            assert run(data, chunks)[0] == b""


def test_vim_hardcopy_document_has_no_errors():
    _document_ok((DATA / "vim_hardcopy.ps").read_bytes())


def test_windows_driver_style_document_has_no_errors():
    # the shapes PScript5 prologs use: abbreviations through `load`, bind, feature blocks in
    # stopped-loops, languagelevel tests, a printed product banner
    doc = (
        b"%!PS-Adobe-3.0\n%%Creator: PScript5.dll Version 5.2.2\n"
        b"/currentpacking where{pop/oldpack currentpacking def/setpacking where{pop false setpacking}if}if\n"
        b"userdict /Pscript_WinNT_Incr 230 dict dup begin put\n"
        b"/d/def load def/,/load load d/~/exch , d/?/ifelse , d/!/pop , d/`/begin , d/^/index , d/@/dup , d\n"
        b"/E/end , d/U/userdict , d/M/moveto , d/S/show , d/LH/showpage , d/F/false , d/T/true , d\n"
        b"/&/currentdict , d\n"
        b"/L2? false/languagelevel where{pop languagelevel 2 ge{pop true}if}if d\n"
        b"/b{bind d}bind d/self & d\n"
        b"/initialize{`{/Pscript_Win_Data where{!}{U/Pscript_Win_Data & put}?/ADO_mxRot ~ d}"
        b"{U/Pscript_Win_Data 230 dict @ ` put/ADO_mxRot ~ d}?}b\n"
        b"/terminate{!{& self eq{exit}{E}?}loop E}b\n"
        b"/lucas 21690 d/featurebegin{countdictstack lucas[}b/featurecleanup{stopped\n"
        b"{cleartomark @ lucas eq{! exit}if}loop countdictstack ~ sub @ 0 gt{{E}repeat}{!}?}b\n"
        b"U<04>cvn{}put\nend\n"
        b"version cvi 2016 ge{/VM?{pop}bind def}{/VM? {pop} def}ifelse 105000 VM?\n"
        b"statusdict begin (%%[ ProductName: ) print product print ( ]%%)= flush end\n"
        b"[ 1 0 0 1 0 0 ] false Pscript_WinNT_Incr dup /initialize get exec\n"
        b"featurebegin{\n0 /languagelevel where{pop languagelevel}{1}ifelse 2 ge{1 dict dup/JobTimeout 4 -1 roll put"
        b" setuserparams}{statusdict/setjobtimeout get exec}ifelse\n}featurecleanup\n"
        b"featurebegin{ 0 /NoSuchProcs /ProcSet findresource /nosuch get exec }featurecleanup\n"
        b"featurebegin{ <</PageSize [612 792]>> setpagedevice }featurecleanup\n"
        b"userdict begin /ehsave save def end\n"
        b"/Helvetica findfont 12 scalefont setfont 72 720 M (Hello) S LH\n"
        b"userdict /ehsave get restore count ==\n%%EOF\n"
    )
    got, _ = _document_ok(doc)
    assert got == b"%%[ ProductName: HP LaserJet 4250 ]%%\n0\n"


@pytest.mark.realclient
def test_live_ghostscript_ps2write_output_has_no_errors(tmp_path):
    src = tmp_path / "in.ps"
    lines = [b"%!PS", b"/Courier findfont 10 scalefont setfont"]
    for page in range(3):
        lines += [b"72 %d moveto (line %d on page %d: \\(escaped\\) text) show" % (700 - 12 * i, i, page) for i in range(20)]
        lines += [b"newpath 72 72 moveto 500 500 lineto stroke showpage"]
    src.write_bytes(b"\n".join(lines) + b"\n")
    gs = shutil.which("gs")
    assert gs, "Ghostscript is part of the test environment (.ci/run)"
    for extra in ([], ["-dCompressPages=false", "-dCompressFonts=false"]):
        dst = tmp_path / "out.ps"
        subprocess.run([gs, "-q", "-dNOPAUSE", "-dBATCH", "-dSAFER", "-sDEVICE=ps2write", *extra,
                        f"-sOutputFile={dst}", str(src)], check=True, timeout=60)
        _document_ok(dst.read_bytes())


def test_probe_corpus_postscript_entries():
    corpus = json.loads((DATA / "corpus" / "probes.json").read_text())
    seen = set()
    for entry in corpus:
        payload = base64.b64decode(entry["payload_b64"])
        if "ps" not in entry.get("language", "").split("+"):
            continue
        m = re.search(rb"ENTER LANGUAGE ?= ?POSTSCRIPT\r?\n", payload)
        start = m.end() if m else payload.find(b"%!")
        body = payload[max(start, 0):].split(b"\x1b%-12345X")[0]
        got, evs = run(body)
        kinds = {(e.eventid, e.fields.get("category") or e.fields.get("error")) for e in evs}
        cls = entry["class"]
        seen.add(cls)
        if cls == "postscript_dos":
            assert b"DELIMITER" not in got and any(e.eventid == "honeyjet.ps.error" for e in evs)
        elif cls == "postscript_persistent_change":
            assert ("honeyjet.ps.operator", "persistent") in kinds
        elif cls == "benign_print_job":
            assert got == b"" and not any(e.eventid == "honeyjet.ps.error" for e in evs)
        elif cls == "pjl_info_enumeration":
            assert b"HP LaserJet 4250" in got
        assert b"%%[ Error" not in got or cls not in ("benign_print_job", "pjl_info_enumeration")
    assert {"postscript_dos", "benign_print_job"} <= seen


def test_operator_list_is_a_clean_level3_systemdict():
    names = load_operator_names()
    system = names["systemdict"]
    assert len(system) > 300
    assert {"setpagedevice", "currentpagedevice", "product", "revision", "serialnumber", "realtime", "usertime",
            "languagelevel", "startjob", "shfill", "findresource", "cshow", "setsmoothness"} <= system
    assert not {n for n in system if n.startswith((".", "%"))}
    assert not system & {"getenv", "findlibfile", "runpdf", "setdevice", "concatstrings", "max", "NOSAFER", "@PJL"}
    assert {"pagecount", "checkpassword", "setpassword", "printername", "jobname"} <= names["statusdict"]
    assert "exitserver" in names["serverdict"] and "exitserver" not in system
    assert "begincmap" in names["procset:CIDInit"]


# --------------------------------------------------------------------------------------------
# totality, chunking and bounds

PIECES = [
    b"(", b")", b"\\", b"{", b"}", b"[", b"]", b"<<", b">>", b"<", b">", b"<~", b"~>", b"/", b"//", b"%", b"%!",
    b"\n", b"\r", b" ", b"\t", b"\x04", b"\x00", b"\xff", b"1", b"-5", b"3.5", b"16#FF", b"65535", b"999999999",
    b"1e99", b"(abc)", b"<41>", b"print", b"=", b"==", b"pop", b"dup", b"exch", b"def", b"loop", b"repeat", b"for",
    b"forall", b"exec", b"stopped", b"if", b"ifelse", b"exit", b"stop", b"quit", b"currentfile", b"eexec",
    b"executive", b"product", b"version", b"string", b"array", b"dict", b"begin", b"end", b"copy", b"roll",
    b"index", b"cvx", b"cvs", b"bind", b"pstack", b"foo", b"statusdict", b"serverdict", b"0 exitserver",
    b"true 0 startjob", b"mark", b"cleartomark", b"counttomark", b"save", b"restore", b"search", b"token",
    b"get", b"put", b"length", b"aload", b"astore", b"getinterval", b"add", b"div", b"idiv", b"cvi", b"cvn",
    b"type", b"load", b"where", b"known", b"store", b"undef", b"currentdict", b"findfont", b"setpagedevice",
    b"currentpagedevice", b"image", b"currentsystemparams", b"(%Calendar%) currentdevparams", b"devstatus",
    b"vmstatus", b"resourceforall", b"file", b"status", b"deletefile", b"internaldict", b"superexec",
    b"1183615869", b"checkpassword", b"/x", b"x", b"/p {p} def p", b"{} loop",
]
soup = st.lists(st.one_of(st.sampled_from(PIECES), st.binary(max_size=12)), max_size=50).map(b" ".join)
raw = st.binary(max_size=300)
SMALL = {"max_token_bytes": 64, "max_depth": 8, "max_stack": 64, "max_steps": 2000, "steps_per_byte": 2,
         "max_vm_bytes": 65536, "max_output_bytes": 4096, "max_events": 16}


def split(data: bytes, cuts: list[int]) -> list[bytes]:
    points = sorted({c % (len(data) + 1) for c in cuts})
    chunks, last = [], 0
    for p in points:
        chunks.append(data[last:p])
        last = p
    chunks.append(data[last:])
    return chunks


def drive(chunks: list[bytes]) -> tuple[bytes, list[Emit]]:
    ps = make(**SMALL)
    outs: list[Any] = []
    for chunk in chunks:
        outs += ps.feed(chunk)
        assert ps.buffered_bytes <= SMALL["max_token_bytes"] + 2
    outs += ps.end_of_job()
    assert ps.buffered_bytes == 0
    return sent(outs), [o for o in outs if isinstance(o, Emit)]


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.one_of(soup, raw), cuts=st.lists(st.integers(min_value=0, max_value=10_000), max_size=10))
def test_any_bytes_any_chunking_same_result(data, cuts):
    whole = drive([data])
    assert drive(split(data, cuts)) == whole
    assert drive([data[i : i + 1] for i in range(len(data))]) == whole
    for ev in whole[1]:
        assert check_fields(ev.eventid, ev.fields) == []


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=soup, cuts=st.lists(st.integers(min_value=0, max_value=10_000), max_size=6))
def test_default_bounds_same_result_chunked(data, cuts):
    def go(chunks: list[bytes]) -> tuple[bytes, list[Emit]]:
        ps = make(max_steps=5000)
        outs: list[Any] = []
        for chunk in chunks:
            outs += ps.feed(chunk)
        outs += ps.end_of_job()
        return sent(outs), [o for o in outs if isinstance(o, Emit)]

    assert go(split(data, cuts)) == go([data])


@pytest.mark.parametrize(
    "src",
    [
        b"{ " * 100_000,
        b"(" + b"A" * 10_000_000 + b") print",
        b"<" + b"41 " * 3_000_000 + b"> print",
        b"<~" + b"z" * 3_000_000 + b"~> print",
        b"/" + b"n" * 5_000_000 + b" ",
        b"{} loop",
        b"/r {r} def r",
        b"/a /b cvx def /b /a cvx def a",
        b"1" * 1_000_000 + b" ==",
        b"16#" + b"F" * 100_000,
        b"999999999 string",
        b"/s 65535 string def {s s copy pop} loop",
        b"{(AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA) print} loop",
        b"/a 1 array def a 0 a put a ==",
        b"0 1 65000 {} for pstack",
        b"{(1 pop) cvx exec} loop",
        b"(" + b"*a" * 30_000 + b"b) {print} 128 string /Font resourceforall",
        b"\x04" * 100_000,
        b"foo\x04" * 2_000,
    ],
)
def test_pathological_inputs_are_fast_and_bounded(src):
    ps = make()
    tracemalloc.start()
    t0 = time.perf_counter()
    try:
        outs = ps.feed(src) + ps.end_of_job() + ps.feed(b"(alive) print ") + ps.end_of_job()
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert time.perf_counter() - t0 < 5.0
    assert peak < 40_000_000
    got = sent(outs)
    jobs = src.count(b"\x04") + 1
    assert len(got) <= 1024 * 1024 + 120 * jobs  # each job may send its own error lines
    assert got.endswith(b"alive")


def test_standard_encodings_are_read_only_and_complete():
    assert out(b"StandardEncoding length == StandardEncoding 65 get == ISOLatin1Encoding 233 get ==") == (
        b"256\n/A\n/eacute\n")
    assert out(b"StandardEncoding 65 /B put").startswith(b"%%[ Error: invalidaccess; OffendingCommand: put ]%%")
    assert out(b"StandardEncoding dup length array copy dup 65 /B put 65 get ==") == b"/B\n"


def test_jobs_do_not_leak_definitions():
    ps = make()
    ps.feed(b"/secret 42 def userdict /x 1 put statusdict /jobname (j1) put\x04")
    assert sent(ps.feed(b"userdict /secret known == statusdict /jobname get length == ")) == b"false\n0\n"


def test_work_is_bounded_by_input_size():
    ps = make()
    for _ in range(20):  # every job starting a hang: the connection's budget stays bounded
        ps.feed(b"{} loop\x04")
    assert ps._spent <= 200_000 + 2 * 20 * 8 + 1000
    assert sent(ps.feed(b"(still answering) print ")) == b"still answering"


def test_lexer_state_never_exceeds_bound_on_nested_procedures():
    lexer = PSLexer(max_token_bytes=256, max_depth=64)
    data = b"{ " * 60 + b"(" + b"x" * 10_000 + b") " + b"name " * 500
    pos = 0
    while pos < len(data):
        pos, _tok = lexer.next_token(data, pos)
        assert lexer.buffered_bytes <= 258
    with pytest.raises(PSError):
        scan_all(b"{" * 65)
