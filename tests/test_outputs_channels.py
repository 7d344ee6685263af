"""Alert channels end to end against real receivers started by the test.

A UDP and a TCP syslog receiver (plain sockets, RFC 6587 octet counting), an aiohttp web
server taking webhook POSTs and aiosmtpd's SMTP server (plain and STARTTLS with a
certificate made by ``openssl`` for the test) — each gets the alert for a high-severity
session from an in-process sensor once per throttle window.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
import shutil
import ssl
import subprocess
import time
from email import message_from_bytes
from email.policy import default as email_policy
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from aiosmtpd.smtp import SMTP
from helpers import require
from conftest import exchange, free_port, running, sensor_settings
from test_outputs_alerts import parse_5424, parse_cef, verdict

from honeyjet.config import load_settings
from honeyjet.outputs.alerts import AlertPolicy, AlertSink
from honeyjet.outputs.mail import EmailOutput
from honeyjet.outputs.syslog import SyslogOutput
from honeyjet.outputs.webhook import WebhookOutput

pytestmark = pytest.mark.timeout(30)

# judged high: FSUPLOAD (file read) of a host path through a traversal
HIGH = b'\x1b%-12345X@PJL FSUPLOAD NAME="0:/../../etc/passwd" OFFSET=0 SIZE=100\r\n\x1b%-12345X'
LOW = b"@PJL INFO ID\r\n"


# ---------------------------------------------------------------------------- receivers


class UdpSyslog(asyncio.DatagramProtocol):
    def __init__(self) -> None:
        self.messages: list[bytes] = []

    def datagram_received(self, data: bytes, addr: Any) -> None:
        self.messages.append(data)


class TcpSyslog:
    """Octet-counting (RFC 6587) receiver; ``drop()`` closes every open connection."""

    def __init__(self) -> None:
        self.messages: list[bytes] = []
        self.connections = 0
        self.writers: list[asyncio.StreamWriter] = []
        self.server: asyncio.AbstractServer | None = None
        self.port = 0

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        self.writers.append(writer)
        try:
            while True:
                count = await reader.readuntil(b" ")
                assert re.fullmatch(rb"[1-9][0-9]* ", count), count
                self.messages.append(await reader.readexactly(int(count)))
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()

    async def start(self, port: int = 0) -> None:
        self.server = await asyncio.start_server(self.handle, "127.0.0.1", port)
        self.port = self.server.sockets[0].getsockname()[1]

    def drop(self) -> None:
        for w in self.writers:
            w.close()
        self.writers.clear()

    async def stop(self) -> None:
        self.drop()
        if self.server is not None:
            self.server.close()
            await self.server.wait_closed()


class Hook:
    """An aiohttp server collecting POSTed bodies and their headers."""

    def __init__(self) -> None:
        self.bodies: list[Any] = []
        self.headers: list[dict[str, str]] = []
        self.hits: dict[str, int] = {}
        self.runner: web.AppRunner | None = None
        self.port = 0

    async def collect(self, request: web.Request) -> web.Response:
        self.hits[request.path] = self.hits.get(request.path, 0) + 1
        self.headers.append(dict(request.headers))
        self.bodies.append(await request.json())
        return web.Response(status=204)

    async def fail(self, request: web.Request) -> web.Response:
        self.hits[request.path] = self.hits.get(request.path, 0) + 1
        return web.Response(status=500, text="nope")

    async def moved(self, request: web.Request) -> web.Response:
        self.hits[request.path] = self.hits.get(request.path, 0) + 1
        raise web.HTTPFound("/hook")

    async def start(self) -> None:
        app = web.Application()
        app.router.add_post("/hook", self.collect)
        app.router.add_post("/fail", self.fail)
        app.router.add_post("/moved", self.moved)
        self.runner = web.AppRunner(app)
        await self.runner.setup()
        site = web.TCPSite(self.runner, "127.0.0.1", 0)
        await site.start()
        self.port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]

    def url(self, path: str = "/hook") -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    async def stop(self) -> None:
        if self.runner is not None:
            await self.runner.cleanup()


class Mailbox:
    """aiosmtpd handler: keeps each message and whether it came over TLS."""

    def __init__(self) -> None:
        self.mails: list[dict[str, Any]] = []

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        self.mails.append({"from": envelope.mail_from, "to": list(envelope.rcpt_tos), "tls": session.ssl is not None,
                           "msg": message_from_bytes(envelope.original_content, policy=email_policy)})
        return "250 OK"


@contextlib.asynccontextmanager
async def smtp_server(tls_context: ssl.SSLContext | None = None, require_starttls: bool = False):
    box = Mailbox()
    loop = asyncio.get_running_loop()
    server = await loop.create_server(
        lambda: SMTP(box, hostname="mx.example.test", tls_context=tls_context, require_starttls=require_starttls, loop=loop),
        "127.0.0.1", 0)
    box.port = server.sockets[0].getsockname()[1]  # type: ignore[attr-defined]
    try:
        yield box
    finally:
        server.close()
        await server.wait_closed()


@contextlib.asynccontextmanager
async def receivers():
    loop = asyncio.get_running_loop()
    udp_transport, udp = await loop.create_datagram_endpoint(UdpSyslog, local_addr=("127.0.0.1", 0))
    udp.port = udp_transport.get_extra_info("sockname")[1]  # type: ignore[attr-defined]
    tcp = TcpSyslog()
    await tcp.start()
    hook = Hook()
    await hook.start()
    async with smtp_server() as box:
        try:
            yield udp, tcp, hook, box
        finally:
            udp_transport.close()
            await tcp.stop()
            await hook.stop()


# ---------------------------------------------------------------------------- helpers


def log_events(data_dir: Path, eventid: str) -> list[dict[str, Any]]:
    path = data_dir / "log" / "honeyjet.json"
    if not path.exists():
        return []
    out = []
    for line in path.read_text("utf-8").splitlines():
        with contextlib.suppress(ValueError):
            ev = json.loads(line)
            if ev.get("eventid") == eventid:
                out.append(ev)
    return out


async def wait_for(predicate, timeout: float = 10.0, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.05)


def alert_sink(sensor: Any) -> AlertSink:
    return next(s for s in sensor.bus.sinks if s.name == "alerts")


async def drained(sink: AlertSink) -> None:
    """Every channel has finished with everything it was given."""
    await wait_for(lambda: all(c.depth == 0 and c.counters["sent"] + c.counters["failed"] == c.counters["queued"] for c in sink.channels),
                   what="channels to drain")


async def sessions_judged(data_dir: Path, count: int) -> list[dict[str, Any]]:
    await wait_for(lambda: len(log_events(data_dir, "honeyjet.verdict.session")) >= count, what=f"{count} session verdicts")
    return log_events(data_dir, "honeyjet.verdict.session")


def sections(udp: Any, tcp: TcpSyslog, hook: Hook, box: Any, *, transport: str = "udp", fmt: str = "rfc5424") -> dict[str, dict[str, Any]]:
    return {
        "alerts": {"enabled": True, "throttle": 3600},
        "syslog": {"enabled": True, "port": udp.port if transport == "udp" else tcp.port, "transport": transport, "format": fmt},
        "webhook": {"enabled": True, "url": hook.url(), "headers": {"Authorization": "Bearer test-token"}},
        "email": {"enabled": True, "port": box.port, "starttls": False, "recipients": ["soc@example.test"]},
    }


# ---------------------------------------------------------------------------- acceptance


@pytest.mark.parametrize("transport, fmt", [("udp", "rfc5424"), ("tcp", "cef")])
async def test_each_receiver_gets_one_alert_per_throttle_window(data_dir, transport, fmt):
    async with receivers() as (udp, tcp, hook, box):
        st = sensor_settings(data_dir, **sections(udp, tcp, hook, box, transport=transport, fmt=fmt))
        async with running(st) as sensor:
            port = st.listen_port(st.pjl)
            for _ in range(2):
                assert b"FILEERROR" in await exchange(port, HIGH)
            verdicts = await sessions_judged(data_dir, 2)
            assert [v["severity"] for v in verdicts] == ["high", "high"]
            assert "HJ-FS-020" in verdicts[0]["rules"]
            sink = alert_sink(sensor)
            assert sink.counters["alerts"] == 1 and sink.counters["suppressed"] == 1
            await drained(sink)
            syslog_msgs = udp.messages if transport == "udp" else tcp.messages
            await wait_for(lambda: syslog_msgs and hook.bodies and box.mails, what="every receiver")
            await asyncio.sleep(0.3)  # nothing else arrives
            assert len(syslog_msgs) == 1 and len(hook.bodies) == 1 and len(box.mails) == 1
            assert [c.counters["sent"] for c in sink.channels] == [1, 1, 1]

        # syslog
        if fmt == "rfc5424":
            msg = parse_5424(syslog_msgs[0])
            params = dict(msg["params"])
            assert msg["msgid"] == "ALERT" and msg["host"] == "test" and int(msg["pri"]) == 16 * 8 + 3
            assert params["src_ip"] == "127.0.0.1" and "HJ-FS-020" in params["rules"].split(",")
            assert params["session"] == verdicts[0]["session"] and params["event_uuid"] == verdicts[0]["event_uuid"]
        else:
            assert tcp.connections == 1
            header, ext = parse_cef(syslog_msgs[0])
            assert header[4] == verdicts[0]["classes"][0] and header[6] == "8"
            assert ext["src"] == "127.0.0.1" and "HJ-FS-020" in ext["cs1"].split(",") and ext["dvchost"] == "test"
        # webhook
        body = hook.bodies[0]
        assert body["src_ip"] == "127.0.0.1" and "HJ-FS-020" in body["rules"] and body["severity"] == "high"
        assert body["kind"] == "session" and body["session"] == verdicts[0]["session"] and body["suppressed"] == 0
        assert hook.headers[0]["Authorization"] == "Bearer test-token"
        # email
        mail = box.mails[0]
        assert mail["to"] == ["soc@example.test"] and mail["from"] == "honeyjet@localhost" and not mail["tls"]
        assert mail["msg"]["Subject"] == f"[honeyjet] high {verdicts[0]['classes'][0]} from 127.0.0.1"
        text = mail["msg"].get_content()
        assert "src_ip: 127.0.0.1" in text and "HJ-FS-020" in text


async def test_low_severity_probe_alerts_nowhere(data_dir):
    async with receivers() as (udp, tcp, hook, box):
        st = sensor_settings(data_dir, **sections(udp, tcp, hook, box))
        async with running(st) as sensor:
            assert b"LaserJet" in await exchange(st.listen_port(st.pjl), LOW)
            verdicts = await sessions_judged(data_dir, 1)
            assert verdicts[0]["severity"] == "low"
            sink = alert_sink(sensor)
            assert sink.counters["below"] == 1 and sink.counters["alerts"] == 0
            await drained(sink)
            await asyncio.sleep(0.3)
            assert udp.messages == [] and hook.bodies == [] and box.mails == []
            assert all(c.counters["queued"] == 0 for c in sink.channels)


async def test_a_channel_whose_receiver_is_down_fails_alone(data_dir):
    async with receivers() as (udp, tcp, hook, box):
        over = sections(udp, tcp, hook, box)
        over["webhook"]["url"] = f"http://127.0.0.1:{free_port()}/hook"  # nothing listens there
        st = sensor_settings(data_dir, **over)
        async with running(st) as sensor:
            port = st.listen_port(st.pjl)
            await exchange(port, HIGH)
            await sessions_judged(data_dir, 1)
            sink = alert_sink(sensor)
            await drained(sink)
            await wait_for(lambda: udp.messages and box.mails, what="the working channels")
            counters = {c.name: dict(c.counters) for c in sink.channels}
            assert counters["webhook"]["failed"] == 1 and counters["webhook"]["sent"] == 0
            assert counters["syslog"]["sent"] == 1 and counters["email"]["sent"] == 1
            assert dict(parse_5424(udp.messages[0])["params"])["src_ip"] == "127.0.0.1"
            # the sensor still serves
            assert b"LaserJet" in await exchange(port, LOW)


async def test_syslog_all_events_sends_every_event(data_dir):
    loop = asyncio.get_running_loop()
    transport, udp = await loop.create_datagram_endpoint(UdpSyslog, local_addr=("127.0.0.1", 0))
    try:
        port = transport.get_extra_info("sockname")[1]
        st = sensor_settings(data_dir, syslog={"enabled": True, "port": port, "all_events": True})
        async with running(st) as sensor:
            assert not any(s.name == "alerts" for s in sensor.bus.sinks)
            await exchange(st.listen_port(st.pjl), LOW)
            await sessions_judged(data_dir, 1)
            await wait_for(lambda: any(parse_5424(m)["msgid"] == "honeyjet.verdict.session" for m in udp.messages), what="the verdict")
        ids = [parse_5424(m)["msgid"] for m in udp.messages]
        assert ids[0] == "honeyjet.sensor.start"
        for eid in ("honeyjet.session.connect", "honeyjet.pjl.command", "honeyjet.session.closed", "honeyjet.verdict.session"):
            assert eid in ids
        cmd = next(parse_5424(m) for m in udp.messages if parse_5424(m)["msgid"] == "honeyjet.pjl.command")
        assert dict(cmd["params"])["src_ip"] == "127.0.0.1" and dict(cmd["params"])["command"] == "INFO"
        assert all(len(m) <= 2048 for m in udp.messages)
    finally:
        transport.close()


# ---------------------------------------------------------------------------- channels on their own


def settings(**sections: dict[str, Any]):
    return load_settings(env={}, overrides={"sensor": {"name": "sensor-1"}, **sections})


def an_alert(src: str = "198.51.100.7") -> dict[str, Any]:
    st = settings(alerts={"enabled": True, "throttle": 0})
    alert = AlertPolicy(st.alerts, "sensor-1").judge(verdict(src=src))
    assert alert is not None
    return alert


async def test_tcp_syslog_reconnects_after_the_receiver_closed_or_was_down():
    tcp = TcpSyslog()
    await tcp.start()
    port = tcp.port
    out = SyslogOutput(settings(syslog={"enabled": True, "transport": "tcp", "port": port, "timeout": 2}).syslog, hostname="s1")
    await out.start()
    try:
        out.put(("alert", an_alert("192.0.2.1")))
        await wait_for(lambda: len(tcp.messages) == 1, what="first message")
        tcp.drop()  # the receiver closes the connection
        await asyncio.sleep(0.1)
        out.put(("alert", an_alert("192.0.2.2")))
        await wait_for(lambda: len(tcp.messages) == 2, what="message after reconnect")
        assert tcp.connections == 2
        await tcp.stop()  # the receiver is down: that item fails and is counted
        await asyncio.sleep(0.1)  # (the closed connection's FIN reaches the sender)
        out.put(("alert", an_alert("192.0.2.3")))
        await wait_for(lambda: out.counters["failed"] >= 1, what="a failure")
        await tcp.start(port)  # back up: the next item connects again
        out.put(("alert", an_alert("192.0.2.4")))
        await wait_for(lambda: len(tcp.messages) == 3, what="message after the receiver came back")
        srcs = [dict(parse_5424(m)["params"])["src_ip"] for m in tcp.messages]
        assert srcs == ["192.0.2.1", "192.0.2.2", "192.0.2.4"]
        assert out.counters["sent"] == 3 and out.counters["failed"] == 1
    finally:
        await out.stop()
        await tcp.stop()


async def test_udp_syslog_to_a_closed_port_counts_failures_not_exceptions():
    out = SyslogOutput(settings(syslog={"enabled": True, "port": free_port(), "timeout": 2}).syslog, hostname="s1")
    await out.start()
    try:
        for i in range(3):
            out.put(("alert", an_alert(f"192.0.2.{i}")))
            await wait_for(lambda: out.depth == 0 and out.counters["sent"] + out.counters["failed"] == out.counters["queued"], what="delivery")
            await asyncio.sleep(0.05)  # let the ICMP "port unreachable" arrive
        # the first datagram leaves; the kernel reports the unreachable port on a later send
        assert out.counters["sent"] >= 1 and out.counters["failed"] >= 1
    finally:
        await out.stop()


async def test_webhook_non_2xx_and_redirects_are_failures():
    hook = Hook()
    await hook.start()
    outs = []
    try:
        for path, fmt in (("/fail", "json"), ("/moved", "json"), ("/hook", "slack")):
            out = WebhookOutput(settings(webhook={"enabled": True, "url": hook.url(path), "format": fmt, "timeout": 3}).webhook)
            outs.append(out)
            await out.start()
            out.put(("alert", an_alert()))
            await wait_for(lambda: out.counters["sent"] + out.counters["failed"] == 1, what=f"delivery to {path}")
        assert [o.counters["failed"] for o in outs] == [1, 1, 0]
        assert [o.last_status for o in outs] == [500, 302, 204]
        assert hook.hits == {"/fail": 1, "/moved": 1, "/hook": 1}  # the redirect was not followed
        assert hook.bodies[0]["text"].startswith("honeyjet alert: high file_exfiltration from 198.51.100.7")
        assert hook.headers[0]["User-Agent"].startswith("honeyjet/")
    finally:
        for out in outs:
            await out.stop()
        await hook.stop()


async def test_webhook_digest_end_to_end():
    hook = Hook()
    await hook.start()
    st = settings(alerts={"enabled": True, "throttle": 0, "digest": 0.3}, webhook={"enabled": True, "url": hook.url()})
    sink = AlertSink(AlertPolicy(st.alerts, "sensor-1"), [WebhookOutput(st.webhook)], digest=st.alerts.digest, sensor_name="sensor-1")
    await sink.start()
    try:
        for ip in ("192.0.2.1", "192.0.2.2", "192.0.2.3"):
            sink.write(verdict(src=ip))
        await wait_for(lambda: hook.bodies, what="the digest")
        await asyncio.sleep(0.5)
        assert len(hook.bodies) == 1
        body = hook.bodies[0]
        assert body["count"] == 3 and [a["src_ip"] for a in body["digest"]] == ["192.0.2.1", "192.0.2.2", "192.0.2.3"]
        sink.write(verdict(src="192.0.2.9"))
    finally:
        await sink.stop()
        await hook.stop()
    assert len(hook.bodies) == 2 and hook.bodies[1]["digest"][0]["src_ip"] == "192.0.2.9"  # flushed at stop


# ---------------------------------------------------------------------------- STARTTLS


@pytest.fixture(scope="module")
def certificate(tmp_path_factory) -> tuple[Path, Path]:
    require(shutil.which("openssl"), "openssl is not installed")
    d = tmp_path_factory.mktemp("tls")
    cert, key = d / "cert.pem", d / "key.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(key), "-out", str(cert), "-days", "2",
                    "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1,DNS:localhost"],
                   check=True, capture_output=True, timeout=30)
    return cert, key


def server_tls(certificate: tuple[Path, Path]) -> ssl.SSLContext:
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.load_cert_chain(*certificate)
    return ctx


async def mail_one_alert(port: int, **email: Any) -> dict[str, int]:
    """Send one alert through an EmailOutput; its counters once it is done."""
    st = settings(email={"enabled": True, "port": port, "recipients": ["soc@example.test"], "timeout": 5, **email})
    out = EmailOutput(st.email, sensor_name="sensor-1")
    await out.start()
    try:
        out.put(("alert", an_alert()))
        await wait_for(lambda: out.counters["sent"] + out.counters["failed"] == 1, what="the mail")
    finally:
        await out.stop()
    return out.counters


async def test_email_starttls_with_a_pinned_ca(certificate):
    async with smtp_server(server_tls(certificate), require_starttls=True) as box:
        counters = await mail_one_alert(box.port, starttls=True, ca_file=str(certificate[0]))
        assert counters["sent"] == 1
        assert len(box.mails) == 1 and box.mails[0]["tls"]
        assert box.mails[0]["msg"]["Subject"] == "[honeyjet] high file_exfiltration from 198.51.100.7"


async def test_email_starttls_required_fails_without_it_or_with_an_unknown_ca(certificate):
    # a server that offers no STARTTLS never gets the alert in clear
    async with smtp_server() as box:
        assert (await mail_one_alert(box.port, starttls=True))["failed"] == 1
        assert box.mails == []
    # a self-signed certificate the system CAs do not know is refused
    async with smtp_server(server_tls(certificate), require_starttls=True) as box:
        assert (await mail_one_alert(box.port, starttls=True))["failed"] == 1
        assert box.mails == []
