from __future__ import annotations

import asyncio
import contextlib
import socket
import sys
from pathlib import Path
from typing import Any, AsyncIterator

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

from honeyjet.config import load_settings  # noqa: E402
from honeyjet.sensor import Sensor, free_port_offset  # noqa: E402


BOTH_LOOPS = {"test_service"}


def pytest_collection_modifyitems(config, items):
    """Property tests (hypothesis) carry the ``fuzz`` marker, so the quick loop can skip them."""
    for item in items:
        if getattr(getattr(item, "obj", None), "is_hypothesis_test", False):
            item.add_marker(pytest.mark.fuzz)


def pytest_asyncio_loop_factories(config, item):
    """Service tests run on the stdlib loop and on uvloop (which `honeyjet run` uses)."""
    loops = {"asyncio": asyncio.new_event_loop}
    if item.module.__name__ in BOTH_LOOPS:
        try:
            import uvloop
        except ImportError:
            return loops
        loops["uvloop"] = uvloop.new_event_loop
    return loops


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def free_offset() -> int:
    """A port offset whose every shifted service port is free (see honeyjet.sensor.free_port_offset)."""
    return free_port_offset()


def sensor_settings(data_dir: Path, **sections: dict[str, Any]):
    """Settings for an in-process sensor on 127.0.0.1 with every service on free ports."""
    over: dict[str, dict[str, Any]] = {
        "sensor": {"data_dir": str(data_dir), "bind": "127.0.0.1", "port_offset": free_offset(), "strict_events": True, "name": "test",
                   "user": ""},  # in-process: never drop the test runner's privileges
    }
    # a hanging PostScript job costs a forensics worker this long; tests do not wait 20 s at stop
    over["analysis"] = {"render_timeout": 3.0}
    for name, values in sections.items():
        over.setdefault(name, {}).update(values)
    return load_settings(env={}, overrides=over)


@contextlib.asynccontextmanager
async def running(settings) -> AsyncIterator[Sensor]:
    sensor = Sensor(settings)
    await sensor.start()
    try:
        yield sensor
    finally:
        await sensor.stop()


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    return tmp_path / "data"


async def exchange(port: int, payload: bytes | list[bytes], *, read_timeout: float = 2.0, until: bytes | None = None, shut: bool = True) -> bytes:
    """Send payload (chunks are separate writes), optionally half-close, read the replies."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    sock = writer.get_extra_info("socket")
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    chunks = payload if isinstance(payload, list) else [payload]
    try:
        for chunk in chunks:
            writer.write(chunk)
            await writer.drain()
            if len(chunks) > 1:
                await asyncio.sleep(0)
        if shut:
            writer.write_eof()
    except (ConnectionError, OSError):
        pass  # the sensor refused or closed the connection; read what it sent
    got = b""
    try:
        while True:
            try:
                part = await asyncio.wait_for(reader.read(65536), read_timeout)
            except (ConnectionError, OSError):
                break
            if not part:
                break
            got += part
            if until is not None and got.endswith(until):
                break
    except asyncio.TimeoutError:
        pass
    writer.close()
    with contextlib.suppress(Exception):
        await writer.wait_closed()
    return got
