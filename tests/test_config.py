"""Layered settings and the operator-facing errors they produce."""

from __future__ import annotations

from pathlib import Path

import pytest

from honeyjet.config import ConfigError, env_layer, load_settings


def test_defaults_load(tmp_path):
    s = load_settings(env={}, overrides={"sensor": {"data_dir": str(tmp_path)}})
    assert s.pjl.port == 9100 and s.limits.idle_timeout == 270.0
    assert s.database_url.endswith("honeyjet.db") and s.database_url.startswith("sqlite+aiosqlite:///")


def test_precedence_file_env_cli(tmp_path):
    cfg = tmp_path / "op.toml"
    cfg.write_text('[limits]\nidle_timeout = 30\n[sensor]\nname = "from-file"\nbind = "127.0.0.1"\n')
    env = {"HONEYJET_SENSOR__NAME": "from-env", "HONEYJET_LIMITS__SESSIONS_PER_SOURCE": "5", "HONEYJET_OTHER": "x"}
    s = load_settings(cfg, env=env, overrides={"sensor": {"bind": "::1"}})
    assert s.limits.idle_timeout == 30 and s.sensor.name == "from-env"
    assert s.limits.sessions_per_source == 5 and s.sensor.bind == "::1"


def test_operator_file_in_data_dir_is_found(tmp_path):
    (tmp_path / "honeyjet.toml").write_text("[pjl]\nport = 9200\n")
    s = load_settings(env={}, overrides={"sensor": {"data_dir": str(tmp_path)}})
    assert s.pjl.port == 9200


@pytest.mark.parametrize(
    "text, key",
    [
        ("[limits]\nidle_timeout = -1\n", "limits.idle_timeout"),
        ("[limits]\nidle_timeoutx = 1\n", "limits.idle_timeoutx"),
        ("[nosuch]\nx = 1\n", "[nosuch]"),
        ("[pjl]\nport = 70000\n", "pjl.port"),
        ("[pjl]\nport = 'abc'\n", "pjl.port"),
        ("[limits\n", "not valid TOML"),
    ],
)
def test_bad_config_names_the_key(tmp_path, text, key):
    cfg = tmp_path / "bad.toml"
    cfg.write_text(text)
    with pytest.raises(ConfigError) as err:
        load_settings(cfg, env={})
    msg = str(err.value)
    assert key in msg and "\n" not in msg


def test_bad_env_names_the_key():
    with pytest.raises(ConfigError, match="limits.sessions_total"):
        load_settings(env={"HONEYJET_LIMITS__SESSIONS_TOTAL": "many"})
    with pytest.raises(ConfigError, match="unknown key sensor.nmae"):
        load_settings(env={"HONEYJET_SENSOR__NMAE": "x"})


def test_missing_file():
    with pytest.raises(ConfigError, match="file not found"):
        load_settings(Path("/nonexistent/x.toml"), env={})


def test_env_values_are_typed():
    assert env_layer({"HONEYJET_A__B": "12", "HONEYJET_A__C": "true", "HONEYJET_A__D": "hello world"}) == {
        "a": {"b": 12, "c": True, "d": "hello world"}
    }
