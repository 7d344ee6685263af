"""The console inside `honeyjet run`: off by default, on loopback, its port moved by the offset."""

from __future__ import annotations

import urllib.error
import urllib.request

import pytest

from conftest import free_port, running, sensor_settings
from honeyjet.sensor import Sensor, StartupError


async def test_console_is_off_by_default(data_dir) -> None:
    async with running(sensor_settings(data_dir)) as sensor:
        assert not any(x.startswith("console:") for x in sensor.listeners)


async def test_console_served_by_the_sensor(data_dir) -> None:
    settings = sensor_settings(data_dir)
    offset = settings.sensor.port_offset
    port = free_port()
    settings = sensor_settings(data_dir, sensor={"port_offset": offset}, console={"enabled": True, "port": port - offset})
    async with running(settings) as sensor:
        assert f"console:tcp:127.0.0.1:{port}" in sensor.listeners
        import asyncio

        def get(path: str):
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as r:
                    return r.status, r.headers, r.read()
            except urllib.error.HTTPError as e:
                return e.code, e.headers, e.read()

        status, headers, body = await asyncio.to_thread(get, "/login")
        assert status == 200 and b"<form" in body
        assert "script-src 'self'" in headers["Content-Security-Policy"] and "Server" not in headers
        status, _, _ = await asyncio.to_thread(get, "/api/feed")
        assert status == 401  # login required


@pytest.mark.parametrize(
    "console, store, words",
    [
        ({"enabled": True, "bind": "0.0.0.0"}, {}, ["console.bind", "tls_cert"]),
        ({"enabled": True, "tls_cert": "/nonexistent.pem"}, {}, ["console.tls_cert", "tls_key"]),
        ({"enabled": True}, {"database": False}, ["console.enabled", "store.database"]),
    ],
)
async def test_console_misconfiguration_is_one_line(data_dir, console, store, words) -> None:
    sensor = Sensor(sensor_settings(data_dir, console=console, store=store))
    with pytest.raises(StartupError) as err:
        await sensor.start()
    msg = str(err.value)
    assert "\n" not in msg and all(w in msg for w in words), msg
