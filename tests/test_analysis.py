"""Analysis units: path decoding, features, rules (format, errors, verdicts), sources, campaigns."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from honeyjet.analysis.engine import Analyzer
from honeyjet.analysis.features import FEATURES, SessionFeatures
from honeyjet.analysis.paths import decode_path
from honeyjet.analysis.rules import RuleError, RuleSet
from honeyjet.analysis.sources import CampaignIndex, hamming
from honeyjet.analysis.variants import TRANSFORMS, path_backslash, pjl_lower, pjl_spacing, variants
from honeyjet.events import EventBus, MemorySink, check_fields
from honeyjet.protocols.cups_browse import parse as parse_browse
from honeyjet.text import escape, unescape

RULES = RuleSet.load()
CLASSES = set(RULES.classes)


# -- text and paths ----------------------------------------------------------------------
@given(st.binary(max_size=600))
def test_unescape_inverts_escape(data: bytes) -> None:
    assert unescape(escape(data, 10**6)) == data


@pytest.mark.parametrize(
    "raw",
    [
        "0:/../../etc/passwd",
        "0:\\..\\..\\etc\\passwd",
        "0:%2e%2e%2f%2e%2e%2fetc%2fpasswd",
        "0:%252e%252e%252fetc/passwd",
        "0:/%c0%ae%c0%ae/%c0%ae%c0%ae/etc/passwd",
        "0:/\uff0e\uff0e/etc/passwd",
        "../../etc/passwd",
        "%disk0%../../etc/passwd",
        "0:/....//etc",
    ],
)
def test_traversal_found_whatever_the_encoding(raw: str) -> None:
    p = decode_path(escape(raw.encode("utf-8")))
    assert p.traversal, p


@pytest.mark.parametrize("raw", ["0:/", "0:/PJL/config", "0:\\saveDevice\\SavedJobs", "%disk0%fonts/Courier", "0:/a..b/c", "0:/x.y/..z"])
def test_no_traversal_in_ordinary_names(raw: str) -> None:
    assert not decode_path(escape(raw.encode())).traversal


def test_decoded_path_keeps_volume_and_segments() -> None:
    p = decode_path(escape(b"0:\\saveDevice\\SavedJobs\\KeepJob\\J0042.PRN"))
    assert p.volume == "0:" and p.segments == ("saveDevice", "SavedJobs", "KeepJob", "J0042.PRN")


@given(st.text(max_size=300))
def test_decode_path_is_total(raw: str) -> None:
    decode_path(raw)


# -- rules files -------------------------------------------------------------------------
def test_packaged_rules_cover_the_taxonomy() -> None:
    corpus_classes = {
        "benign_print_job", "benign_status_query", "scanner_banner_grab", "nmap_service_probe", "python_urllib_ews_check",
        "pjl_info_enumeration", "printer_spam_job", "cross_site_printing", "pjl_display_defacement", "fs_enumeration",
        "path_traversal", "file_exfiltration", "file_write", "pjl_password_bruteforce", "nvram_wear_dos", "postscript_dos",
        "job_retention_capture", "firmware_upload", "postscript_persistent_change", "pret_session", "pjl_destructive_control",
        "pjl_buffer_overflow_fuzz", "malicious_font_download", "telnet_bot_misdirected", "tls_clienthello", "http_proxy_probe",
        "cups_browsed_injection",
    }
    assert corpus_classes <= CLASSES
    covered = {r.cls for r in RULES.rules}
    assert corpus_classes <= covered, corpus_classes - covered
    for r in RULES.rules + RULES.source_rules:
        assert r.description and r.name and r.id.startswith("HJ-")


def _load(text: str) -> RuleSet:
    classes = (Path(__file__).resolve().parents[1] / "src/honeyjet/analysis/rules/00-classes.toml").read_text()
    return RuleSet.from_texts([("classes.toml", classes), ("mine.toml", text)])


@pytest.mark.parametrize(
    "text, words",
    [
        ('[[rule]]\nid="X1"\nname="n"\nclass="fs_enumeration"\ndescription="d"\nall=[{f="pjl_verb", has="A"}]', ["mine.toml", "X1", "pjl_verb"]),
        ('[[rule]]\nid="X1"\nname="n"\nclass="fs_enumeration"\ndescription="d"\nall=[{f="pjl_verbs", contains="A"}]', ["X1", "operator"]),
        ('[[rule]]\nid="X1"\nname="n"\nclass="fs_enumeration"\ndescription="d"\nall=[{f="head", match="("}]', ["X1", "regular expression"]),
        ('[[rule]]\nid="X1"\nname="n"\nclass="no_such_class"\ndescription="d"\nall=[{f="bytes_in", ge=1}]', ["X1", "no_such_class"]),
        ('[[rule]]\nid="X1"\nname="n"\nclass="fs_enumeration"\nall=[{f="bytes_in", ge=1}]', ["X1", "description"]),
        ('[[rule]]\nid="X1"\nname="n"\nclass="fs_enumeration"\ndescription="d"', ["X1", "condition"]),
        ('[[rule]]\nid="X1"\nname="n"\nclass="fs_enumeration"\ndescription="d"\nall=[{f="bytes_in", ge="1"}]', ["X1", "number"]),
        ('[[rule]]\nid="X1"\nname="n"\nclass="fs_enumeration"\ndescription="d"\nseverity="huge"\nall=[{f="bytes_in", ge=1}]', ["X1", "severity"]),
        ('[[rule]]\nid="HJ-PJL-001"\nname="n"\nclass="fs_enumeration"\ndescription="d"\nall=[{f="bytes_in", ge=1}]', []),
        ('[[rules]]\nid="X1"', ["mine.toml", "rules"]),
        ("not toml = = =", ["mine.toml", "TOML"]),
    ],
)
def test_bad_rules_are_one_clear_line(text: str, words: list[str]) -> None:
    with pytest.raises(RuleError) as err:
        if words:
            _load(text)
        else:  # a duplicate of a packaged id
            RuleSet.from_texts([(f"rules/{p.name}", p.read_text()) for p in sorted(
                (Path(__file__).resolve().parents[1] / "src/honeyjet/analysis/rules").glob("*.toml"))] + [("mine.toml", text)])
    msg = str(err.value)
    assert "\n" not in msg
    for w in words:
        assert w in msg
    if not words:
        assert "already defined" in msg


def test_operator_rules_directory(tmp_path: Path) -> None:
    (tmp_path / "local.toml").write_text(
        '[[rule]]\nid = "LOCAL-1"\nname = "Display says HACKED"\nclass = "pjl_display_defacement"\nseverity = "high"\n'
        'priority = 99\ndescription = "our panel must never say that"\n'
        'all = [{ f = "pjl_display", match = "(?i)hacked" }]\n'
    )
    rules = RuleSet.load([tmp_path])
    assert "LOCAL-1" in rules.by_id
    v = rules.evaluate(_features([_pjl("RDYMSG", 'RDYMSG DISPLAY="you are HACKED"', [["DISPLAY", "you are HACKED"]])]))
    assert v.rules[0] == "LOCAL-1" and v.severity == "high" and v.primary == "pjl_display_defacement"
    with pytest.raises(RuleError, match="does not exist"):
        RuleSet.load([tmp_path / "missing"])


# -- features and verdicts from events ---------------------------------------------------
IDENT = {"session": "0123456789ab", "protocol": "pjl", "src_ip": "203.0.113.7", "src_port": 40000,
         "dst_ip": "127.0.0.1", "dst_port": 9100, "sensor": "t"}


def _ev(eventid: str, **fields) -> dict:
    return {"eventid": eventid, **IDENT, **fields}


def _pjl(command: str, argument: str, options: list | None = None, **extra) -> dict:
    fields = {"known": True, "service_mode": False, "replied": False, "truncated": False, **extra}
    return _ev("honeyjet.pjl.command", command=command, argument=argument, options=options or [], **fields)


def _closed(head: bytes = b"", bytes_in: int | None = None, bytes_out: int = 0) -> dict:
    return _ev("honeyjet.session.closed", duration_ms=5, bytes_in=len(head) if bytes_in is None else bytes_in,
               bytes_out=bytes_out, reason="eof", jobs=0, head=escape(head, 512))


def _features(events: list[dict], rules: RuleSet = RULES) -> dict:
    f = SessionFeatures(rules.vocab)
    for e in events:
        f.add(e)
    if not any(e["eventid"] == "honeyjet.session.closed" for e in events):
        f.add(_closed(b"x", bytes_in=100))
    return f.finish()


def test_every_feature_is_present_and_typed() -> None:
    out = _features([])
    for name, (kind, _) in FEATURES.items():
        assert name in out
        expected = {"set": frozenset, "list": (list, tuple), "int": int, "float": float, "bool": bool, "str": str, "dict": dict}[kind]
        assert isinstance(out[name], expected), name


def test_pjl_features_are_normalised() -> None:
    f = _features([
        _pjl("INFO", "INFO ID"), _pjl("INFO", "INFO prodinfo"), _pjl("ECHO", "ECHO DELIMITER123"),
        _pjl("DEFAULT", "DEFAULT COPIES=2", [["COPIES", "2"]]), _pjl("JOB", "JOB PASSWORD=7", [["PASSWORD", "7"]]),
        _pjl("USTATUS", "USTATUS DEVICE=ON", [["DEVICE", "ON"]]),
    ])
    assert f["pjl_info"] == {"ID", "PRODINFO"}
    assert f["pjl_queries"] == {"INFO ID", "INFO PRODINFO"} and f["pjl_query_count"] == 2
    assert f["pjl_echo_delimiter"] == 1 and f["pjl_default_writes"] == 1 and f["pjl_job_passwords"] == 1
    assert f["pjl_ustatus_on"] == {"DEVICE"} and "COPIES=2" in f["pjl_options"]


@pytest.mark.parametrize(
    "events, primary, severity",
    [
        ([_pjl("INFO", "INFO ID")], "scanner_banner_grab", "low"),
        ([_pjl("INFO", "INFO PRODINFO")], "pjl_info_enumeration", "low"),
        ([_pjl("RDYMSG", 'RDYMSG DISPLAY="x"', [["DISPLAY", "x"]])], "pjl_display_defacement", "medium"),
        ([_pjl("DMCMD", 'DMCMD ASCIIHEX="0400"', [["ASCIIHEX", "0400"]], service_mode=True)], "pjl_destructive_control", "critical"),
        ([_pjl("UPGRADE", "UPGRADE SIZE=10", [["SIZE", "10"]])], "firmware_upload", "critical"),
        ([_pjl("FSDIRLIST", 'FSDIRLIST NAME="0:/"'), _ev("honeyjet.pjl.fs", operation="FSDIRLIST", path="0:/", normalized="0:/", traversal=False)],
         "fs_enumeration", "medium"),
        ([_ev("honeyjet.pjl.fs", operation="FSQUERY", path="0:%2e%2e%2fetc", normalized="0:/%2e%2e%2fetc", traversal=False)],
         "path_traversal", "high"),
        ([_ev("honeyjet.ps.operator", operator="loop", category="control", operands=["{}"])], "postscript_dos", "high"),
        ([_ev("honeyjet.ps.query", operator="product", reply="(x)"), _ev("honeyjet.ps.query", operator="version", reply="(1)")],
         "pjl_info_enumeration", "low"),
        ([_closed(b"\r\n\r\n")], "nmap_service_probe", "low"),
        ([_closed(b"\x16\x03\x01\x00\x05\x01\x00\x00\x01\x00")], "tls_clienthello", "low"),
        ([_closed(b"\x05\x01\x00")], "http_proxy_probe", "low"),
        ([_closed(b"\xff\xfb\x1f\xff\xfd\x01root\r\n")], "telnet_bot_misdirected", "medium"),
        ([_closed(b"CONNECT example.com:443 HTTP/1.1\r\nHost: example.com:443\r\n\r\n")], "http_proxy_probe", "low"),
        ([_closed(b"")], "scanner_banner_grab", "low"),
    ],
)
def test_verdicts(events: list[dict], primary: str, severity: str) -> None:
    v = RULES.evaluate(_features(events))
    assert v.primary == primary, v
    assert v.severity == severity
    assert v.rules and all(RULES.by_id[r].cls in v.classes for r in v.rules)


def test_ps_string_literals_are_not_operators() -> None:
    # a benign document quoting an attack string: only the tokenizer's operators count
    f = _features([_ev("honeyjet.ps.query", operator="print", reply="startjob exitserver {} loop FSUPLOAD ../../")])
    assert RULES.evaluate(f).classes == []


def test_spam_lexicon_and_indicators() -> None:
    f = _features([_ev("honeyjet.job.captured", job=1, language="text", name="", user="", pages=1, ended_by="eof",
                       shasum="a" * 64, size=10, stored_size=10, truncated=False, duplicate=False),
                   _ev("honeyjet.job.analyzed", job=1, shasum="a" * 64, language="text",
                       text="LIMITED OFFER! Call now +1 202 555 0143, visit www.deals.example",
                       indicators=[{"type": "phone", "value": "+12025550143", "offset": 25}, {"type": "url", "value": "www.deals.example", "offset": 50}])])
    assert f["lexicon"]["spam"] >= 2
    v = RULES.evaluate(f)
    assert v.primary == "printer_spam_job" and {"HJ-JOB-020", "HJ-JOB-021"} <= set(v.rules)


# -- the analyzer as a sink ----------------------------------------------------------------
def _session(sid: str, ip: str, protocol: str, events: list[tuple[str, dict]], port: int) -> list[dict]:
    ident = {"session": sid, "protocol": protocol, "src_ip": ip, "src_port": 50000, "dst_ip": "127.0.0.1", "dst_port": port}
    out = [{"eventid": "honeyjet.session.connect", **ident}]
    out += [{"eventid": e, **ident, **f} for e, f in events]
    out.append({"eventid": "honeyjet.session.closed", **ident, "duration_ms": 1, "bytes_in": 30, "bytes_out": 40,
                "reason": "eof", "jobs": 0, "head": ""})
    return out


def test_analyzer_emits_catalogued_verdicts_and_correlates_sources() -> None:
    bus = EventBus("t", strict=True)
    mem = MemorySink()
    bus.add_sink(mem)
    an = Analyzer(bus, RULES)
    probe = ("honeyjet.pjl.command", {"command": "INFO", "argument": "INFO PRODINFO", "options": [], "known": True,
                                      "service_mode": False, "replied": True, "truncated": False})
    urllib = ("honeyjet.http.request", {"method": "GET", "target": "/", "version": "HTTP/1.1", "page": "root", "status": 200,
                                       "headers": [["User-Agent", "Python-urllib/2.7"]], "user_agent": "Python-urllib/2.7"})
    for e in _session("aaaaaaaaaaa1", "198.51.100.9", "pjl", [probe], 9100) + _session("aaaaaaaaaaa2", "198.51.100.9", "http", [urllib], 80):
        an.feed(e)
    verdicts = mem.of("honeyjet.verdict.session")
    assert [v["classes"][0] for v in verdicts] == ["pjl_info_enumeration", "python_urllib_ews_check"]
    assert all(v["session"] in ("aaaaaaaaaaa1", "aaaaaaaaaaa2") and v["rules"] and v["rule_names"] for v in verdicts)
    sources = mem.of("honeyjet.verdict.source")
    assert len(sources) == 1 and "HJ-SRC-001" in sources[0]["new_rules"]
    assert sources[0]["services"] == ["http", "pjl"] and sources[0]["src_ip"] == "198.51.100.9"
    # the same pair again within the window is not reported again
    for e in _session("aaaaaaaaaaa3", "198.51.100.9", "pjl", [probe], 9100):
        an.feed(e)
    assert len(mem.of("honeyjet.verdict.source")) == 1
    for ev in mem.events:
        assert not check_fields(ev["eventid"], {k: v for k, v in ev.items() if k not in IDENT and k not in (
            "eventid", "event_uuid", "timestamp", "message")})


def test_analyzer_waits_for_forensics_and_folds_the_report(tmp_path: Path) -> None:
    from honeyjet.store.artifacts import ArtifactStore

    store = ArtifactStore(tmp_path / "a", max_object_bytes=2**20, quota_bytes=2**30)
    job = b"*** PRINTER ADVERTISING ***\r\nBook your campaign today: www.example-printads.invalid\r\n\x0c"
    info = store.put(job)

    class Pool:
        calls = 0

        async def analyze(self, path: str):
            from honeyjet.analysis.forensics import analyze_file

            Pool.calls += 1
            await asyncio.sleep(0.01)
            return analyze_file(path, render=False)

        async def close(self) -> None:
            return None

    async def main() -> MemorySink:
        bus = EventBus("t", strict=True)
        mem = MemorySink()
        bus.add_sink(mem)
        an = Analyzer(bus, RULES, artifacts=store, forensics=Pool())
        captured = ("honeyjet.job.captured", {"job": 3, "language": "text", "name": "", "user": "", "pages": 1, "ended_by": "eof",
                                              "shasum": info.shasum, "size": len(job), "stored_size": len(job), "truncated": False,
                                              "duplicate": False})
        for sid, ip in (("bbbbbbbbbbb1", "192.0.2.1"), ("bbbbbbbbbbb2", "192.0.2.2"), ("bbbbbbbbbbb3", "192.0.2.3")):
            for e in _session(sid, ip, "pjl", [captured], 9100):
                an.feed(e)
        await an.drain()
        return mem

    mem = asyncio.run(main())
    analyzed = mem.of("honeyjet.job.analyzed")
    assert len(analyzed) == 3 and Pool.calls == 1  # one analysis for identical bytes
    assert analyzed[0]["language"] == "text" and any(i["type"] == "url" for i in analyzed[0]["indicators"])
    assert len({a["campaign"] for a in analyzed}) == 1 and analyzed[0]["text_shasum"]
    verdicts = mem.of("honeyjet.verdict.session")
    assert [v["classes"][0] for v in verdicts] == ["printer_spam_job"] * 3
    # three sources, one campaign: the campaign rule fires for the third
    assert any("HJ-SRC-006" in s["rules"] for s in mem.of("honeyjet.verdict.source"))


# -- campaigns ---------------------------------------------------------------------------
def test_campaign_index_groups_near_duplicates() -> None:
    idx = CampaignIndex(distance=3)
    a = 0x0123456789ABCDEF
    ca = idx.assign(a, "a" * 64, "192.0.2.1")
    assert idx.assign(a ^ 0b101, "b" * 64, "192.0.2.2") == ca  # 2 bits away
    assert idx.assign(a ^ (1 << 63) ^ (1 << 40) ^ (1 << 20), "c" * 64, "192.0.2.3") == ca  # 3 bits, different bands
    far = a ^ 0xFFFF
    assert hamming(a, far) == 16 and idx.assign(far, "d" * 64) != ca
    assert idx.source_count(ca) == 3 and idx.jobs(ca) == 3


# -- CUPS browse datagrams -----------------------------------------------------------------
def test_browse_parse() -> None:
    f = parse_browse(b'0 3 http://198.51.100.7:12345/printers/EVILPRINTER "office" "HP LaserJet" "HP LaserJet 4250"\n')
    assert f["valid"] and f["printer_state"] == 3 and f["uri"].startswith("http://198.51.100.7:12345/")
    assert f["location"] == "office" and f["info"] == "HP LaserJet" and f["make_model"] == "HP LaserJet 4250"
    assert parse_browse(b"\x00\x01garbage")["valid"] is False


@given(st.binary(max_size=3000))
@settings(max_examples=300)
def test_browse_parse_is_total(data: bytes) -> None:
    f = parse_browse(data)
    assert f["size"] == len(data) and not check_fields("honeyjet.browse.packet", f)


# -- variants ------------------------------------------------------------------------------
def test_variants_keep_quoted_text_and_vary_the_rest() -> None:
    data = b'\x1b%-12345X@PJL RDYMSG DISPLAY="Keep ME"\r\n\x1b%-12345X'
    assert pjl_lower(data) == b'\x1b%-12345X@PJL rdymsg display="Keep ME"\r\n\x1b%-12345X'
    assert b'= "Keep ME"' in pjl_spacing(data)
    assert path_backslash(b'@PJL FSQUERY NAME="0:/../x"') == b'@PJL FSQUERY NAME="0:/..\\x"'
    assert path_backslash(b"%!\n(%disk0%../x) status") == b"%!\n(%disk0%..\\\\x) status"
    entry = {"port": 9100}
    names = [n for n, _ in variants(entry, data)]
    assert "pjl-lowercase" in names and "pjl-no-uel" in names and len(names) == len(set(names))
    assert {n for n, _, _ in TRANSFORMS} >= set(names)


def test_identical_sessions_reuse_one_verdict() -> None:
    """A probe flood: the second identical session is judged from the memo, the same way."""
    bus = EventBus("t", strict=True)
    mem = MemorySink()
    bus.add_sink(mem)
    an = Analyzer(bus, RULES)
    probe = ("honeyjet.pjl.command", {"command": "INFO", "argument": "INFO ID", "options": [], "known": True,
                                      "service_mode": False, "replied": True, "truncated": False})
    other = ("honeyjet.pjl.command", {"command": "RDYMSG", "argument": 'RDYMSG DISPLAY="x"', "options": [["DISPLAY", "x"]],
                                      "known": True, "service_mode": False, "replied": False, "truncated": False})
    for sid, ip, ev in (("ccccccccccc1", "192.0.2.1", probe), ("ccccccccccc2", "192.0.2.2", probe), ("ccccccccccc3", "192.0.2.2", other)):
        for e in _session(sid, ip, "pjl", [ev], 9100):
            an.feed(e)
    v = mem.of("honeyjet.verdict.session")
    assert an.counters["memo_hits"] == 1
    assert [x["classes"][0] for x in v] == ["scanner_banner_grab", "scanner_banner_grab", "pjl_display_defacement"]
    assert v[1]["src_ip"] == "192.0.2.2" and v[1]["session"] == "ccccccccccc2"
    assert {k: v[0][k] for k in ("classes", "severity", "rules", "rule_names")} == {k: v[1][k] for k in ("classes", "severity", "rules", "rule_names")}
