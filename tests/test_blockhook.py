"""The block hook: a real command and a real aiohttp receiver, once per newly malicious source.

The command is a small Python script that appends its arguments (as JSON) to a file, so
each test sees exactly the argv the hook built.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from conftest import exchange, running, sensor_settings
from honeyjet.config import load_settings
from honeyjet.outputs.blockhook import BlockHook, build_block_hook, hook_address

TRAVERSAL = b'@PJL FSUPLOAD NAME="0:/../../etc/passwd" OFFSET=0 SIZE=100\r\n'
RECORDER = "import json, sys\nwith open(sys.argv[1], 'a') as f:\n    f.write(json.dumps(sys.argv[2:]) + '\\n')\n"
HANGER = (
    "import os, subprocess, sys, time\n"
    "child = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(60)'])\n"  # keeps stderr open too
    "with open(sys.argv[1], 'w') as f:\n    f.write(f'{os.getpid()} {child.pid}')\n"
    "time.sleep(60)\n"
)


@pytest.fixture
def recorder(tmp_path: Path) -> tuple[list[str], Path]:
    script = tmp_path / "record.py"
    script.write_text(RECORDER)
    out = tmp_path / "hooked.jsonl"
    return [sys.executable, str(script), str(out)], out


def recorded(path: Path) -> list[list[str]]:
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def verdict(ip: Any, severity: str = "high", eventid: str = "honeyjet.verdict.session", **extra: Any) -> dict[str, Any]:
    return {"eventid": eventid, "src_ip": ip, "severity": severity, "classes": ["file_exfiltration"], "rules": ["HJ-FS-020"],
            "sensor": "s1", "timestamp": "2024-05-01T10:00:00.000000Z", "session": "abc", **extra}


class Receiver:
    """A real HTTP server on 127.0.0.1: ``/hook`` records JSON bodies, ``/moved`` redirects to it."""

    def __init__(self) -> None:
        self.bodies: list[dict[str, Any]] = []
        self.runner: web.AppRunner | None = None
        self.port = 0

    async def __aenter__(self) -> "Receiver":
        async def hook(request: web.Request) -> web.Response:
            self.bodies.append(await request.json())
            return web.Response(status=204)

        async def moved(request: web.Request) -> web.Response:
            raise web.HTTPFound("/hook")

        app = web.Application()
        app.router.add_post("/hook", hook)
        app.router.add_post("/moved", moved)
        self.runner = web.AppRunner(app)
        await self.runner.setup()
        site = web.TCPSite(self.runner, "127.0.0.1", 0)
        await site.start()
        self.port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        return self

    async def __aexit__(self, *exc: Any) -> None:
        assert self.runner is not None
        await self.runner.cleanup()

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"


async def test_sensor_hooks_a_source_once_by_command_and_url(data_dir, recorder):
    command, out = recorder
    async with Receiver() as receiver:
        settings = sensor_settings(data_dir, block_hook={"enabled": True, "command": [*command, "{ip}"], "url": receiver.url("/hook"),
                                                         "timeout": 5.0})
        log = data_dir / "log" / "honeyjet.json"
        async with running(settings):
            port = settings.listen_port(settings.pjl)
            await exchange(port, b"@PJL INFO ID\r\n")  # judged below high: no hook
            await exchange(port, TRAVERSAL)
            await exchange(port, TRAVERSAL)
            deadline = time.monotonic() + 10
            while time.monotonic() < deadline:
                events = [json.loads(x) for x in log.read_text().splitlines()] if log.exists() else []
                high = [e for e in events if e["eventid"] == "honeyjet.verdict.session" and e["severity"] == "high"]
                if len(high) >= 2:
                    break
                await asyncio.sleep(0.05)
            assert len(high) == 2
        # stopped: the hook drained its queue
        assert recorded(out) == [["127.0.0.1"]]
        assert len(receiver.bodies) == 1
        body = receiver.bodies[0]
    assert body["src_ip"] == "127.0.0.1" and body["severity"] == "high" and body["sensor"] == "test"
    assert body["classes"] == high[0]["classes"] and body["rules"] == high[0]["rules"] and body["verdict"] == "session"
    assert body["timestamp"] == high[0]["timestamp"]
    assert set(body) == {"src_ip", "severity", "classes", "rules", "sensor", "timestamp", "verdict"}


async def test_hostile_addresses_never_reach_the_command(recorder):
    command, out = recorder
    hook = BlockHook(command=[*command, "--addr={ip}", "{ip}"], url="", timeout=5.0)
    await hook.start()
    hostile = ["127.0.0.1 --evil", "-rf", "$(touch /tmp/honeyjet-pwned)", "1.2.3.4\n5.6.7.8", "fe80::1%eth0", "", None, 12345,
               "203.0.113.7;id", "::ffff:192.0.2.5"]
    for value in hostile:
        hook.write(verdict(value, classes=["x'; rm -rf / #", "--help"], rules=["$(id)"]))
    await hook.stop()
    assert recorded(out) == [["--addr=192.0.2.5", "192.0.2.5"]]  # the one real address, IPv4-mapped written as IPv4
    assert hook.counters["skipped"] == len(hostile) - 1 and hook.counters["sent"] == 1
    assert not Path("/tmp/honeyjet-pwned").exists()
    with pytest.raises(ValueError):
        hook.argv("127.0.0.1 --evil")
    assert hook_address("2001:DB8::0001") == "2001:db8::1" and hook_address("::ffff:10.0.0.1") == "10.0.0.1"


async def test_threshold_reruns_exclusions_and_bounded_memory(recorder):
    command, out = recorder
    hook = BlockHook(command=[*command, "{ip}"], url="", min_severity="high", timeout=5.0, max_tracked=2, exclude=["10.0.0.0/8"])
    await hook.start()
    a, b, c = "198.51.100.1", "198.51.100.2", "2001:db8::3"
    hook.write(verdict(a, "medium"))  # below the threshold
    hook.write(verdict(a, "critical", rerun=True))  # `honeyjet analyze`: never hooks
    hook.write(verdict("10.1.2.3", "critical"))  # excluded network
    hook.write({**verdict(a), "eventid": "honeyjet.session.closed"})  # not a verdict
    hook.write(verdict(a, "high", "honeyjet.verdict.source"))  # a source verdict hooks
    hook.write(verdict(a, "critical"))  # already hooked (and now the most recent)
    hook.write(verdict(b))
    hook.write(verdict(c))  # evicts a, the least recently seen
    hook.write(verdict(b))  # still remembered (and now more recent than c)
    hook.write(verdict(a))  # forgotten: hooked again, evicting c
    await hook.stop()
    assert recorded(out) == [[a], [b], [c], [a]]
    assert list(hook.hooked) == [b, a]


async def test_hanging_command_is_killed_at_the_timeout(tmp_path):
    script = tmp_path / "hang.py"
    script.write_text(HANGER)
    pids = tmp_path / "pids"
    hook = BlockHook(command=[sys.executable, str(script), str(pids), "{ip}"], url="", timeout=1.0)
    await hook.start()
    started = time.monotonic()
    hook.write(verdict("192.0.2.9"))
    while hook.counters["failed"] == 0 and time.monotonic() - started < 10:
        await asyncio.sleep(0.05)
    elapsed = time.monotonic() - started
    await hook.stop()
    assert hook.counters["failed"] == 1 and hook.counters["sent"] == 0
    assert 0.9 <= elapsed < 4
    for pid in map(int, pids.read_text().split()):  # the command and the process it started
        assert not _running(pid), pid


def _running(pid: int) -> bool:
    deadline = time.monotonic() + 3  # an orphan is reaped by init shortly after the kill
    while time.monotonic() < deadline:
        try:
            state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except (FileNotFoundError, ProcessLookupError):
            return False
        if state in ("Z", "X"):
            return False
        time.sleep(0.05)
    return True


async def test_url_is_posted_once_and_redirects_are_not_followed(tmp_path):
    async with Receiver() as receiver:
        hook = BlockHook(command=[], url=receiver.url("/hook"), timeout=5.0)
        moved = BlockHook(command=[], url=receiver.url("/moved"), timeout=5.0)
        failing = tmp_path / "fail.py"
        failing.write_text("import sys\nsys.stderr.write('nope\\x1b[31m\\n' * 5000)\nsys.exit(3)\n")
        both = BlockHook(command=[sys.executable, str(failing), "{ip}"], url=receiver.url("/hook"), timeout=5.0)
        for h in (hook, moved, both):
            await h.start()
        hook.write(verdict("2001:db8::9", "critical"))
        hook.write(verdict("2001:db8::9", "critical"))
        moved.write(verdict("192.0.2.10"))
        both.write(verdict("192.0.2.11"))
        deadline = time.monotonic() + 10
        while both.counters["failed"] < 1 and time.monotonic() < deadline:
            await asyncio.sleep(0.02)
        assert "192.0.2.11" not in both.hooked  # not blocked: forgotten, so the next verdict tries again
        both.write(verdict("192.0.2.11"))
        for h in (hook, moved, both):
            await h.stop()
        # never 192.0.2.10 through the redirect
        assert [b["src_ip"] for b in receiver.bodies] == ["2001:db8::9", "192.0.2.11", "192.0.2.11"]
    assert hook.counters["sent"] == 1 and moved.counters["failed"] == 1
    assert both.counters["failed"] == 2  # the command failed (exit 3) each time, the URL was still called


@pytest.mark.parametrize("section, message", [
    ({}, "block_hook: give block_hook.command or block_hook.url"),
    ({"url": "ftp://192.0.2.1/x"}, "block_hook.url: must be an http(s) URL"),
    ({"url": "http://"}, "block_hook.url: must be an http(s) URL"),
    ({"command": ["/nonexistent/blocker", "{ip}"]}, "block_hook.command: program '/nonexistent/blocker' not found"),
    ({"command": ["{ip}"]}, "block_hook.command: the program (first element) may not contain {ip}"),
    ({"command": ["/bin/true"], "exclude": ["10.0.0.0/33"]}, "block_hook.exclude:"),
])
def test_bad_settings_name_the_key(section, message):
    settings = load_settings(env={}, overrides={"block_hook": {"enabled": True, **section}})
    with pytest.raises(ValueError) as err:
        build_block_hook(settings, None)
    assert str(err.value).startswith(message) and "\n" not in str(err.value)


async def test_sensor_refuses_to_start_on_bad_block_hook(data_dir):
    from honeyjet.sensor import Sensor, StartupError

    st = sensor_settings(data_dir, block_hook={"enabled": True, "url": "file:///etc/passwd"})
    sensor = Sensor(st)
    with pytest.raises(StartupError, match=r"^error: block_hook.url: must be an http\(s\) URL$"):
        await sensor.start()
    await sensor.stop()
    assert os.path.exists(data_dir)
