"""The command line as an operator meets it: one clear line and a non-zero status on mistakes."""

from __future__ import annotations

import os
import socket
import subprocess
import sys

from conftest import free_offset


def honeyjet(*args: str, env: dict | None = None, timeout: float = 30) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "honeyjet", *args],
        capture_output=True, text=True, timeout=timeout,
        env=dict(os.environ, **{"HONEYJET_SENSOR__USER": "", **(env or {})}),
    )


def one_line_error(result: subprocess.CompletedProcess) -> str:
    assert result.returncode == 2, result
    assert "Traceback" not in result.stderr, result.stderr
    errors = [line for line in result.stderr.splitlines() if line.startswith("honeyjet:")]
    assert len(errors) == 1, result.stderr
    return errors[0]


def test_init_writes_config_and_identity(tmp_path):
    result = honeyjet("init", "--data-dir", str(tmp_path))
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "honeyjet.toml").exists() and (tmp_path / "state" / "identity.json").exists()
    assert "serial" in result.stdout and "NPI" in result.stdout
    again = honeyjet("init", "--data-dir", str(tmp_path))
    assert "kept" in again.stdout and result.stdout.split("serial")[1].split()[0] == again.stdout.split("serial")[1].split()[0]


def test_personas_lists_the_default():
    result = honeyjet("personas")
    assert result.returncode == 0 and "hp-laserjet-4250" in result.stdout


def test_bad_config_value_names_the_key(tmp_path):
    cfg = tmp_path / "bad.toml"
    cfg.write_text("[limits]\nidle_timeout = 0\n")
    err = one_line_error(honeyjet("run", "--config", str(cfg), "--data-dir", str(tmp_path)))
    assert "limits.idle_timeout" in err


def test_bad_environment_names_the_key(tmp_path):
    err = one_line_error(honeyjet("run", "--data-dir", str(tmp_path), env={"HONEYJET_PJL__PORT": "http"}))
    assert "pjl.port" in err


def test_unknown_persona(tmp_path):
    err = one_line_error(honeyjet("run", "--data-dir", str(tmp_path), "--persona", "no-such-device",
                                  "--bind", "127.0.0.1", "--port-offset", str(free_offset())))
    assert "no-such-device" in err


def test_port_in_use_names_the_port(tmp_path):
    offset = free_offset()
    port = 9100 + offset
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", port))
        busy.listen()
        err = one_line_error(honeyjet("run", "--data-dir", str(tmp_path), "--bind", "127.0.0.1", "--port-offset", str(offset)))
    assert f"127.0.0.1:{port}" in err and "address already in use" in err


def test_unwritable_data_dir_names_the_path():
    # /proc refuses new directories even to root, so this holds however CI runs
    target = "/proc/honeyjet-data"
    err = one_line_error(honeyjet("run", "--data-dir", target, "--bind", "127.0.0.1", "--port-offset", str(free_offset())))
    assert target in err and "not writable" in err


def test_data_dir_that_is_a_file_names_the_path(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    err = one_line_error(honeyjet("run", "--data-dir", str(blocker), "--bind", "127.0.0.1", "--port-offset", str(free_offset())))
    assert str(blocker) in err
