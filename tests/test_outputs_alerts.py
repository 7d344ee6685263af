"""Alert policy, digests and the channels' formats (fast; the real receivers are in test_outputs_channels.py)."""

from __future__ import annotations

import asyncio
import email
import email.policy
import json
import re
from typing import Any

import pytest
from conftest import sensor_settings

from honeyjet.config import load_settings
from honeyjet.outputs.alerts import AlertPolicy, AlertSink, Digest, EventFeed, build_alerts, oneline
from honeyjet.outputs.mail import EmailOutput, alert_subject
from honeyjet.outputs.syslog import SD_ID, TCP_MAX, UDP_MAX, SyslogOutput
from honeyjet.outputs.webhook import WebhookOutput, md_escape, slack_escape

HOSTILE = '"]\n<script>|=\\ x\r\nInjected: yes'


def settings(**sections: dict[str, Any]):
    return load_settings(env={}, overrides={"sensor": {"name": "sensor-1", "data_dir": "/nonexistent"}, **sections})


def verdict(src: str = "203.0.113.9", severity: str = "high", rules=("HJ-FS-020", "HJ-FS-010"), classes=("file_exfiltration", "path_traversal"),
            eventid: str = "honeyjet.verdict.session", **extra: Any) -> dict[str, Any]:
    ev = {
        "eventid": eventid,
        "event_uuid": "ab" * 16,
        "timestamp": "2026-03-01T12:00:00.250000Z",
        "sensor": "sensor-1",
        "session": "0123456789ab",
        "protocol": "pjl",
        "src_ip": src,
        "src_port": 40000,
        "dst_ip": "127.0.0.1",
        "dst_port": 9100,
        "message": "verdict",
        "classes": list(classes),
        "severity": severity,
        "rules": list(rules),
        "rule_names": [f"name of {r}" for r in rules],
        "service": "pjl",
        "attribution": [],
        "rerun": False,
    }
    ev.update(extra)
    return ev


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def policy(clock: Clock | None = None, **alerts: Any) -> AlertPolicy:
    st = settings(alerts={"enabled": True, **alerts})
    return AlertPolicy(st.alerts, "sensor-1", clock=clock or Clock())


# ---------------------------------------------------------------------------- policy


def test_threshold_and_alert_fields():
    p = policy(min_severity="high")
    assert p.judge(verdict(severity="medium")) is None
    assert p.judge(verdict(severity="low")) is None
    assert p.counters["below"] == 2
    a = p.judge(verdict(severity="critical", attribution=["user:bob", "user-agent:curl/8"]))
    assert a is not None and p.counters["alerts"] == 1
    assert a == {
        "kind": "session",
        "timestamp": "2026-03-01T12:00:00.250000Z",
        "sensor": "sensor-1",
        "src_ip": "203.0.113.9",
        "session": "0123456789ab",
        "service": "pjl",
        "severity": "critical",
        "classes": ["file_exfiltration", "path_traversal"],
        "rules": ["HJ-FS-020", "HJ-FS-010"],
        "rule_names": ["name of HJ-FS-020", "name of HJ-FS-010"],
        "attribution": ["user:bob", "user-agent:curl/8"],
        "suppressed": 0,
        "event_uuid": "ab" * 16,
        "message": "critical file_exfiltration from 203.0.113.9 on pjl: HJ-FS-020, HJ-FS-010",
    }
    # min_severity = medium lets medium through
    assert policy(min_severity="medium").judge(verdict(severity="medium")) is not None


def test_non_verdicts_and_reruns_are_ignored():
    p = policy(min_severity="info")
    assert p.judge({"eventid": "honeyjet.session.closed", "src_ip": "1.2.3.4", "severity": "critical"}) is None
    assert p.judge(verdict(rerun=True)) is None
    assert p.counters["ignored"] == 1 and p.counters["alerts"] == 0
    assert p.judge(verdict()) is not None


def test_class_filter():
    p = policy(classes=["path_traversal", "firmware_upload"])
    assert p.judge(verdict(classes=["file_write"], rules=["HJ-FS-030"])) is None
    assert p.counters["filtered"] == 1
    # any class of the verdict counts, not only the primary
    assert p.judge(verdict(classes=["file_exfiltration", "path_traversal"])) is not None


def test_source_verdicts_use_new_rules():
    src = verdict(eventid="honeyjet.verdict.source", rules=["HJ-SRC-005", "HJ-SRC-002"], classes=["pjl_info_enumeration"],
                  new_rules=["HJ-SRC-002"], services=["ipp", "lpd", "pjl"], sessions=3)
    del src["service"]
    a = policy().judge(src)
    assert a["kind"] == "source" and a["session"] == ""
    assert a["rules"] == ["HJ-SRC-002"] and a["rule_names"] == ["name of HJ-SRC-002"]
    assert a["service"] == "ipp,lpd,pjl"
    assert a["message"] == "high pjl_info_enumeration from 203.0.113.9 across ipp,lpd,pjl: HJ-SRC-002"
    off = policy(source_verdicts=False)
    assert off.judge(src) is None and off.counters == {k: 0 for k in off.counters}


def test_nuisance_networks_and_user_agents():
    p = policy(nuisance_networks=["198.51.100.0/24", "2001:db8::/32", "192.0.2.7"], nuisance_user_agents=["CensysInspect", "zgrab"])
    assert p.judge(verdict(src="198.51.100.200")) is None
    assert p.judge(verdict(src="2001:db8::5")) is None
    assert p.judge(verdict(src="::ffff:198.51.100.3")) is None  # IPv4-mapped
    assert p.judge(verdict(src="192.0.2.7")) is None
    assert p.judge(verdict(src="203.0.113.1", attribution=["user-agent:Mozilla/5.0 (compatible; censysinspect/1.1)"])) is None
    assert p.judge(verdict(src="203.0.113.2", attribution=["USER-AGENT:Mozilla/5.0 zgrab/0.x"])) is None
    assert p.counters["nuisance"] == 6 and p.counters["alerts"] == 0
    # the UA must be a user-agent attribution, not any attribution mentioning it
    assert p.judge(verdict(src="203.0.113.3", attribution=["user:zgrab"])) is not None
    assert p.judge(verdict(src="192.0.2.8")) is not None
    # nuisance verdicts do not open a throttle window
    assert not any(k[0] == "198.51.100.200" for k in p.windows)


def test_throttle_window_and_suppressed_count():
    clock = Clock()
    p = policy(clock, throttle=60)
    assert p.judge(verdict())["suppressed"] == 0
    clock.now += 10
    assert p.judge(verdict()) is None
    clock.now += 10
    assert p.judge(verdict()) is None
    assert p.counters["suppressed"] == 2
    # another source, or the same source with a new rule, is not held back
    assert p.judge(verdict(src="203.0.113.10")) is not None
    clock.now += 1
    mixed = p.judge(verdict(rules=["HJ-FS-020", "HJ-FS-012"]))
    assert mixed is not None and mixed["suppressed"] == 2  # HJ-FS-020 saw two repeats
    clock.now += 1
    assert p.judge(verdict(rules=["HJ-FS-012"])) is None  # its window opened one second ago
    # once the window of HJ-FS-010 has passed, the next verdict alerts with the repeats it hid
    clock.now = 1000.0 + 60
    a = p.judge(verdict())
    assert a is not None and a["suppressed"] == 2 and "(+2 suppressed)" in a["message"]
    assert p.judge(verdict()) is None  # a fresh window
    assert p.counters["alerts"] == 4


def test_throttle_zero_alerts_every_verdict():
    p = policy(throttle=0)
    assert all(p.judge(verdict()) is not None for _ in range(5))
    assert p.counters["alerts"] == 5 and not p.windows


def test_tracked_windows_are_bounded():
    clock = Clock()
    p = policy(clock, max_tracked=100, throttle=3600)
    for i in range(150):
        assert p.judge(verdict(src=f"10.0.{i // 256}.{i % 256}", rules=["HJ-FS-020"])) is not None
    assert len(p.windows) == 100 and p.counters["evicted"] == 50
    # the oldest source was forgotten: it alerts again inside its window; a recent one does not
    assert p.judge(verdict(src="10.0.0.0", rules=["HJ-FS-020"])) is not None
    assert p.judge(verdict(src="10.0.0.149", rules=["HJ-FS-020"])) is None
    assert len(p.windows) == 100


def test_verdict_without_rules_is_throttled_per_source():
    clock = Clock()
    p = policy(clock, min_severity="info")
    assert p.judge(verdict(severity="info", rules=[], classes=[])) is not None
    assert p.judge(verdict(severity="info", rules=[], classes=[])) is None


def test_hostile_strings_become_one_bounded_line():
    p = policy()
    a = p.judge(verdict(attribution=[f"user-agent:{HOSTILE}", "x" * 5000], session="ab\ncd"))
    assert all("\n" not in s and "\r" not in s for s in a["attribution"])
    assert a["attribution"][0] == 'user-agent:"]\\x0a<script>|=\\ x\\x0d\\x0aInjected: yes'
    assert len(a["attribution"][1]) <= 257 and a["session"] == "ab\\x0acd"
    assert oneline("a\u2028b\x85c") == "a\\u2028b\\x85c"


# ---------------------------------------------------------------------------- digests


def test_digest_keeps_a_bounded_list_and_counts_the_rest():
    t = [100.0]
    d = Digest(keep=3, clock=lambda: t[0])
    assert d.take("s") is None  # nothing is sent for an empty period
    p = policy(throttle=0)
    for i in range(5):
        d.add(p.judge(verdict(severity="critical" if i % 2 else "high")))
    t[0] = 160.0
    out = d.take("s", {"alerts": 5})
    assert out["count"] == 5 and out["omitted"] == 2 and len(out["digest"]) == 3
    assert out["by_severity"] == {"high": 2, "critical": 1}  # of the alerts listed
    assert out["period_start"].startswith("1970-01-01T00:01:40") and out["period_end"].startswith("1970-01-01T00:02:40")
    assert out["totals"] == {"alerts": 5}
    assert d.take("s") is None


class Recorder:
    """A channel stand-in that records what the alert sink hands it."""

    def __init__(self, name: str = "rec") -> None:
        self.name = name
        self.items: list[tuple[str, dict]] = []
        self.started = self.stopped = False
        self.counters = {"queued": 0, "sent": 0, "failed": 0, "dropped": 0}

    def put(self, item):
        self.items.append(item)
        return True

    async def start(self):
        self.started = True

    async def stop(self):
        self.stopped = True


async def test_alert_sink_sends_each_alert_to_every_channel():
    a, b = Recorder("a"), Recorder("b")
    sink = AlertSink(policy(), [a, b], sensor_name="sensor-1")
    await sink.start()
    sink.write(verdict())
    sink.write(verdict())  # throttled
    sink.write(verdict(severity="low"))
    sink.write({"eventid": "honeyjet.session.closed"})
    await sink.stop()
    assert a.started and a.stopped and b.stopped
    assert [k for k, _ in a.items] == ["alert"] and a.items == b.items
    assert sink.counters["alerts"] == 1 and sink.counters["suppressed"] == 1 and sink.counters["below"] == 1


async def test_alert_sink_digest_batches_per_period_and_flushes_at_stop():
    rec = Recorder()
    sink = AlertSink(policy(throttle=0), [rec], digest=0.3, sensor_name="sensor-1")
    await sink.start()
    for _ in range(3):
        sink.write(verdict())
    assert rec.items == []  # nothing before the period ends
    for _ in range(40):
        await asyncio.sleep(0.05)
        if rec.items:
            break
    assert len(rec.items) == 1 and rec.items[0][0] == "digest"
    dig = rec.items[0][1]
    assert dig["count"] == 3 and len(dig["digest"]) == 3 and dig["sensor"] == "sensor-1"
    await asyncio.sleep(0.7)
    assert len(rec.items) == 1  # empty periods send nothing
    sink.write(verdict(src="192.0.2.1"))
    await sink.stop()
    assert len(rec.items) == 2 and rec.items[1][1]["count"] == 1 and rec.items[1][1]["digest"][0]["src_ip"] == "192.0.2.1"
    assert sink.counters["digests"] == 2


# ---------------------------------------------------------------------------- RFC 5424

_5424 = re.compile(r"^<(?P<pri>\d{1,3})>1 (?P<ts>\S+) (?P<host>[!-~]{1,255}) (?P<app>[!-~]{1,48}) (?P<proc>[!-~]{1,128}) (?P<msgid>[!-~]{1,32}) (?P<rest>.*)$",
                   re.S)


def parse_5424(data: bytes) -> dict[str, Any]:
    """Parse an RFC 5424 line strictly (one SD-ELEMENT) and unescape its params."""
    text = data.decode("utf-8")
    assert "\n" not in text and "\r" not in text
    m = _5424.match(text)
    assert m, text
    rest = m["rest"]
    params: list[tuple[str, str]] = []
    if rest.startswith("-"):
        sd_id, msg = "-", rest[2:]
    else:
        assert rest.startswith("[")
        i = rest.index(" ")
        sd_id = rest[1:i]
        while rest[i] == " ":
            j = rest.index("=", i)
            name = rest[i + 1:j]
            assert re.fullmatch(r'[!-~]{1,32}', name) and not set(name) & set('=]" ')
            assert rest[j + 1] == '"'
            k, value = j + 2, []
            while rest[k] != '"':
                if rest[k] == "\\" and rest[k + 1] in '"\\]':
                    value.append(rest[k + 1])
                    k += 2
                else:
                    assert rest[k] not in '"]', rest[k:]  # unescaped specials would end the element early
                    value.append(rest[k])
                    k += 1
            params.append((name, "".join(value)))
            i = k + 1
        assert rest[i] == "]", rest[i:]
        msg = rest[i + 2:]
    return {**m.groupdict(), "sd_id": sd_id, "params": params, "msg": msg}


def syslog(fmt: str = "rfc5424", transport: str = "udp", **kw: Any) -> SyslogOutput:
    st = settings(syslog={"enabled": True, "format": fmt, "transport": transport, **kw})
    return SyslogOutput(st.syslog, hostname="sensor 1\n")


def hostile_alert(**kw: Any) -> dict[str, Any]:
    a = policy().judge(verdict(attribution=[f"user-agent:{HOSTILE}", "host:h=1|2"], **kw))
    assert a is not None
    return a


def test_rfc5424_alert_parses_back_with_hostile_strings():
    alert = hostile_alert()
    out = parse_5424(syslog(facility=16).format_alert(alert))
    assert int(out["pri"]) == 16 * 8 + 3  # local0, high -> error
    assert out["ts"] == "2026-03-01T12:00:00.250000Z" and out["host"] == "sensor_1_"
    assert out["app"] == "honeyjet" and out["proc"] == "-" and out["msgid"] == "ALERT" and out["sd_id"] == SD_ID
    params = out["params"]
    assert ("src_ip", "203.0.113.9") in params and ("rules", "HJ-FS-020,HJ-FS-010") in params
    assert ("classes", "file_exfiltration,path_traversal") in params and ("severity", "high") in params
    assert [v for k, v in params if k == "attribution"] == alert["attribution"]  # round-trips exactly
    assert [v for k, v in params if k == "rule_names"] == alert["rule_names"]
    assert out["msg"] == alert["message"]
    crit = parse_5424(syslog(facility=4).format_alert(hostile_alert(severity="critical")))
    assert int(crit["pri"]) == 4 * 8 + 2


def test_rfc5424_is_bounded_for_udp_and_tcp():
    huge = [f"user:{i}-" + "\\]\"" * 100 for i in range(32)]
    alert = policy().judge(verdict(attribution=huge))
    for transport, limit in (("udp", UDP_MAX), ("tcp", TCP_MAX)):
        data = syslog(transport=transport).format_alert(alert)
        assert len(data) <= limit
        out = parse_5424(data)
        assert out["params"][1] == ("src_ip", "203.0.113.9")  # the important params stay
        if transport == "udp":
            assert out["params"][-1] == ("truncated", "true")
    long_msg = syslog().format_event(dict(verdict(), eventid="honeyjet.pjl.command", message="m" * 5000))
    assert len(long_msg) <= UDP_MAX and parse_5424(long_msg)["msg"].endswith("…")


def test_rfc5424_events_for_all_events():
    ev = dict(verdict(), eventid="honeyjet.http.request", message="GET /\n", headers=[["Host", "x]"]], body_truncated=False,
              options=["A", "B"])
    for k in ("classes", "rules", "rule_names", "severity", "attribution", "rerun"):
        del ev[k]
    out = parse_5424(syslog().format_event(ev))
    assert out["msgid"] == "honeyjet.http.request" and int(out["pri"]) == 16 * 8 + 6
    params = out["params"]
    assert ("headers", '[["Host","x]"]]') in params and ("body_truncated", "false") in params
    assert [v for k, v in params if k == "options"] == ["A", "B"]
    assert not {"eventid", "timestamp", "sensor", "message"} & {k for k, _ in params}
    assert out["msg"] == "GET /\\x0a"
    # a verdict event keeps its severity in PRI
    assert int(parse_5424(syslog().format_event(verdict(severity="medium")))["pri"]) == 16 * 8 + 4


def test_syslog_digest_is_one_message_per_alert_plus_a_summary():
    p = policy(throttle=0)
    d = Digest()
    for _ in range(3):
        d.add(p.judge(verdict()))
    msgs = syslog().render(("digest", d.take("sensor-1")))
    assert len(msgs) == 4
    parsed = [parse_5424(m) for m in msgs]
    assert [x["msgid"] for x in parsed] == ["ALERT"] * 3 + ["DIGEST"]
    assert ("count", "3") in parsed[-1]["params"] and ("severity_high", "3") in parsed[-1]["params"]


# ---------------------------------------------------------------------------- CEF


def parse_cef(data: bytes) -> tuple[list[str], dict[str, str]]:
    text = data.decode("utf-8")
    assert "\n" not in text and "\r" not in text
    cef = text[text.index("CEF:"):]
    header, i, cur = [], 0, []
    while len(header) < 7:
        ch = cef[i]
        if ch == "\\":
            assert cef[i + 1] in "\\|", cef[i:i + 2]
            cur.append(cef[i + 1])
            i += 2
        elif ch == "|":
            header.append("".join(cur))
            cur = []
            i += 1
        else:
            cur.append(ch)
            i += 1
    ext_text = cef[i:]
    # keys start after an unescaped space (or at the start) and end at an unescaped '='
    ext: dict[str, str] = {}
    starts = [m for m in re.finditer(r"(?:^| )([A-Za-z0-9]+)=", ext_text) if not _escaped(ext_text, m.start(1) - 1)]
    for n, m in enumerate(starts):
        end = starts[n + 1].start() if n + 1 < len(starts) else len(ext_text)
        raw = ext_text[m.end():end]
        assert not re.search(r"(?<!\\)(?:\\\\)*=", raw.replace("\\=", "")), raw  # every '=' in a value is escaped
        ext[m.group(1)] = re.sub(r"\\(.)", lambda x: {"n": "\n", "r": "\r"}.get(x.group(1), x.group(1)), raw)
    return header, ext


def _escaped(text: str, pos: int) -> bool:
    n = 0
    while pos - 1 - n >= 0 and text[pos - 1 - n] == "\\":
        n += 1
    return n % 2 == 1


def test_cef_alert_escapes_header_and_extension():
    alert = hostile_alert()
    alert["classes"] = ["odd|class\\x"] + alert["classes"]
    alert["rule_names"] = ["pipe|name"] + alert["rule_names"]
    data = syslog("cef").format_alert(alert)
    assert parse_5424(data)["sd_id"] == "-"
    header, ext = parse_cef(data)
    assert header == ["CEF:0", "honeyjet", "honeyjet", "0.1.0", "odd|class\\x", "pipe|name", "8"]
    assert ext["src"] == "203.0.113.9" and ext["dvchost"] == "sensor-1" and ext["app"] == "pjl"
    assert ext["rt"] == "1772366400250"  # 2026-03-01T12:00:00.250Z in ms
    assert ext["cs1Label"] == "rules" and ext["cs1"] == "HJ-FS-020,HJ-FS-010"
    assert ext["cs2Label"] == "classes" and ext["cs2"].startswith("odd|class\\x,")
    assert ext["cs5"] == "; ".join(alert["attribution"])  # '=', '\' and ']' survive the round trip
    assert ext["msg"] == alert["message"] and ext["externalId"] == "ab" * 16


def test_cef_event_newlines_are_escaped():
    ev = dict(verdict(), eventid="honeyjet.pjl.command", message="line1\nline2=x\\y")
    for k in ("classes", "rules", "rule_names", "severity", "attribution", "rerun"):
        del ev[k]
    header, ext = parse_cef(syslog("cef").format_event(ev))
    assert header[4] == "honeyjet.pjl.command" and header[6] == "1"
    assert ext["msg"] == "line1\nline2=x\\y"  # newline sent as \n, '=' and '\' escaped
    assert ext["spt"] == "40000" and ext["dpt"] == "9100" and ext["cs3"] == "0123456789ab"
    assert json.loads(ext["cs5"])["service"] == "pjl"


def test_cef_is_bounded():
    alert = policy().judge(verdict(attribution=["user:" + "=\\" * 120] * 32))
    data = syslog("cef").format_alert(alert)
    assert len(data) <= UDP_MAX
    header, ext = parse_cef(data)
    assert ext["src"] == "203.0.113.9"


# ---------------------------------------------------------------------------- webhook bodies


def webhook(fmt: str) -> WebhookOutput:
    st = settings(webhook={"enabled": True, "url": "http://127.0.0.1:9/hook", "format": fmt})
    return WebhookOutput(st.webhook)


def test_slack_body_escapes_mrkdwn():
    alert = hostile_alert()
    alert["attribution"].append("user:<!channel> <http://evil.example|click> & co")
    body = webhook("slack").render(("alert", alert))
    dumped = json.dumps(body)
    assert "<" not in dumped.replace("\\u003c", "") and ">" not in dumped
    assert "&lt;!channel&gt; &lt;http://evil.example|click&gt; &amp; co" in dumped
    assert body["text"].startswith("honeyjet alert: high file_exfiltration from 203.0.113.9")
    fields = body["blocks"][1]["fields"]
    assert len(fields) <= 10 and any(f["text"].startswith("*Source*\n203.0.113.9") for f in fields)
    assert slack_escape("a<b>&c") == "a&lt;b&gt;&amp;c"


def test_teams_body_is_an_adaptive_card_with_escaped_markdown():
    alert = hostile_alert()
    alert["attribution"] = ["user:[click](http://evil.example) **bold**"]
    body = webhook("teams").render(("alert", alert))
    att = body["attachments"][0]
    assert body["type"] == "message" and att["contentType"] == "application/vnd.microsoft.card.adaptive"
    card = att["content"]
    assert card["type"] == "AdaptiveCard" and card["version"] == "1.4"
    facts = {f["title"]: f["value"] for f in card["body"][1]["facts"]}
    assert facts["Attribution"] == "user:\\[click\\](http://evil.example) \\*\\*bold\\*\\*"
    assert facts["Source"] == "203.0.113.9"
    assert md_escape("a_b`c") == "a\\_b\\`c"


def test_json_body_and_digest_shape():
    alert = hostile_alert()
    assert webhook("json").render(("alert", alert)) == alert
    d = Digest()
    d.add(alert)
    dig = d.take("sensor-1")
    body = webhook("json").render(("digest", dig))
    assert body["digest"] == [alert] and body["count"] == 1
    slack = webhook("slack").render(("digest", dig))
    assert "1 alerts (1 high)" in slack["text"]


# ---------------------------------------------------------------------------- email


def mailer(**kw: Any) -> EmailOutput:
    st = settings(email={"enabled": True, "recipients": ["soc@example.test", "b@example.test"], "starttls": False, **kw})
    return EmailOutput(st.email, sensor_name="sensor-1")


def test_email_message_has_one_line_subject_and_no_injected_headers():
    alert = hostile_alert()
    alert["classes"] = ["evil\r\nBcc: victim@example.test"] + alert["classes"]
    raw = mailer().build(("alert", alert)).as_bytes()
    msg = email.message_from_bytes(raw, policy=email.policy.default)
    assert msg["Subject"] == "[honeyjet] high evil\\x0d\\x0aBcc: victim@example.test from 203.0.113.9"
    assert msg["Bcc"] is None and msg["To"] == "soc@example.test, b@example.test" and msg["From"] == "honeyjet@localhost"
    body = msg.get_content()
    assert "src_ip: 203.0.113.9" in body and "rules: HJ-FS-020, HJ-FS-010" in body
    assert 'attribution: user-agent:"]\\x0a<script>|=\\ x\\x0d\\x0aInjected: yes | host:h=1|2' in body
    assert "\nInjected" not in body
    long = dict(alert, classes=["x" * 1000])
    assert len(alert_subject(long)) <= 200


def test_email_digest_is_one_mail():
    p = policy(throttle=0)
    d = Digest()
    for ip in ("192.0.2.1", "192.0.2.2"):
        d.add(p.judge(verdict(src=ip)))
    msg = email.message_from_bytes(mailer().build(("digest", d.take("sensor-1"))).as_bytes(), policy=email.policy.default)
    assert msg["Subject"] == "[honeyjet] digest: 2 alerts (2 high) from sensor-1"
    body = msg.get_content()
    assert "--- alert 1" in body and "--- alert 2" in body and "src_ip: 192.0.2.2" in body


# ---------------------------------------------------------------------------- building / config errors


@pytest.mark.parametrize("sections, message", [
    ({"alerts": {"enabled": True}}, "alerts.enabled: no channel enabled — enable [syslog], [webhook] or [email]"),
    ({"alerts": {"enabled": True}, "webhook": {"enabled": True, "url": "ftp://x/"}}, "webhook.url: must be an http(s) URL"),
    ({"alerts": {"enabled": True}, "webhook": {"enabled": True, "url": ""}}, "webhook.url: must be an http(s) URL"),
    ({"alerts": {"enabled": True}, "webhook": {"enabled": True, "url": "http://h/", "headers": {"X-A": "b\r\nX-B: c"}}}, "webhook.headers.X-A"),
    ({"alerts": {"enabled": True}, "email": {"enabled": True}}, "email.recipients: at least one recipient is needed"),
    ({"alerts": {"enabled": True}, "email": {"enabled": True, "recipients": ["a@b\r\nBcc: c@d"]}}, "email.recipients: must not contain CR"),
    ({"alerts": {"enabled": True}, "email": {"enabled": True, "recipients": ["nobody"]}}, "email.recipients: 'nobody' is not an e-mail address"),
    ({"alerts": {"enabled": True}, "email": {"enabled": True, "recipients": ["a@b"], "sender": "x\ny@z"}}, "email.sender"),
    ({"alerts": {"enabled": True, "nuisance_networks": ["10.0.0.0/8", "10.0.0.0/33"]}, "syslog": {"enabled": True}},
     "alerts.nuisance_networks: '10.0.0.0/33' is not a network (CIDR)"),
    ({"alerts": {"enabled": True}, "email": {"enabled": True, "recipients": ["a@b"], "password_file": "/nonexistent/pw"}},
     "email.password_file: cannot read /nonexistent/pw"),
    ({"alerts": {"enabled": True}, "email": {"enabled": True, "recipients": ["a@b"], "ca_file": "/nonexistent/ca.pem"}},
     "email.ca_file: cannot load /nonexistent/ca.pem"),
])
def test_bad_config_names_the_key(sections, message):
    with pytest.raises(ValueError) as exc:
        build_alerts(load_settings(env={}, overrides=sections), None)
    assert str(exc.value).startswith(message)
    assert "\n" not in str(exc.value)


def test_build_alerts_sinks(tmp_path):
    pw = tmp_path / "pw"
    pw.write_text("s3cret\n")
    st = load_settings(env={}, overrides={
        "sensor": {"name": "s1"},
        "alerts": {"enabled": True, "nuisance_networks": ["192.0.2.0/24"]},
        "syslog": {"enabled": True, "all_events": True},
        "webhook": {"enabled": True, "url": "https://hooks.example/x", "headers": {"Authorization": "Bearer t"}},
        "email": {"enabled": True, "recipients": ["soc@example.test"], "username": "u", "password_file": str(pw)},
    })
    sinks = build_alerts(st, None)
    assert [s.name for s in sinks] == ["alerts", "syslog-events"]
    alerts, feed = sinks
    assert [c.name for c in alerts.channels] == ["syslog", "webhook", "email"]
    assert feed.channel is alerts.channels[0] and feed.owns is False  # one syslog connection, started by the alert sink
    assert alerts.channels[2].password == "s3cret" and alerts.channels[1].headers["Authorization"] == "Bearer t"
    assert set(alerts.counters) >= {"alerts", "suppressed", "nuisance", "below", "digests"}
    # all_events alone: the feed owns its channel
    only = build_alerts(load_settings(env={}, overrides={"syslog": {"enabled": True, "all_events": True}}), None)
    assert len(only) == 1 and isinstance(only[0], EventFeed) and only[0].owns
    assert [c.name for c in only[0].channels] == ["syslog"] and feed.channels == []  # each channel listed once, for metrics
    assert alerts.depth == 0


async def test_sensor_refuses_to_start_on_bad_alert_settings(data_dir):
    from honeyjet.sensor import Sensor, StartupError

    st = sensor_settings(data_dir, alerts={"enabled": True}, webhook={"enabled": True, "url": "file:///etc/passwd"})
    with pytest.raises(StartupError, match=r"^error: webhook.url: must be an http\(s\) URL$"):
        await Sensor(st).start()


def test_third_party_parsers_read_our_syslog_and_cef():
    """Parsers nobody here wrote (syslog-rfc5424-parser, pycef) read the hostile alert back."""
    import pycef
    from syslog_rfc5424_parser import SyslogMessage

    alert = hostile_alert()
    msg = SyslogMessage.parse(syslog(facility=16).format_alert(alert).decode("utf-8"))
    assert msg.hostname == "sensor_1_" and msg.appname == "honeyjet" and msg.msgid == "ALERT"
    assert msg.severity.name == "err" and msg.facility.name == "local0"
    assert msg.msg == alert["message"]
    sd = msg.sd[SD_ID]
    assert sd["src_ip"] == "203.0.113.9" and sd["severity"] == "high" and sd["rules"] == "HJ-FS-020,HJ-FS-010"
    # a repeated SD-PARAM keeps one value in this parser's dict; it must be one of ours, unmangled
    assert sd["attribution"] in alert["attribution"]

    cef_line = syslog("cef").format_alert(alert).decode("utf-8")
    parsed = pycef.parse(cef_line[cef_line.index("CEF:"):])
    assert parsed is not None
    assert parsed["DeviceVendor"] == "honeyjet" and parsed["DeviceProduct"] == "honeyjet" and parsed["Severity"] == "8"
    # pycef names custom strings by their labels
    assert parsed["src"] == "203.0.113.9" and parsed["rules"] == "HJ-FS-020,HJ-FS-010"
    assert parsed["classes"] == "file_exfiltration,path_traversal" and parsed["dvchost"] == "sensor-1"
    assert parsed["msg"] == alert["message"] and "Injected" not in parsed  # no extension key smuggled in
