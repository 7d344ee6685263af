"""Packaging: the Docker image, the compose files, the T-Pot kit, the systemd units and the nftables redirect.

Fast checks that need no Docker engine: the files are parsed (YAML, the unit files, the
Dockerfile's instructions) and held against what honeyjet itself says (its packaged defaults,
its argument parser, its event catalogue), so that a new port, subcommand or event field
that the packaging forgets fails here. The container scripts are run for real: the
entrypoint under ``sh`` with a stand-in ``honeyjet`` on PATH, the health check against a
real sensor process. ``nft -c`` and ``systemd-analyze verify`` check their files where
those tools exist. One ``realclient`` test builds and runs the image where a Docker engine
and the base image are available.
"""

from __future__ import annotations

import fnmatch
import importlib.util
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from helpers import require
from conftest import free_offset, running, sensor_settings
from honeyjet.cli import build_parser
from honeyjet.config import packaged_defaults
from honeyjet.events import CATALOGUE, COMMON_FIELDS

ROOT = Path(__file__).resolve().parent.parent
DEFAULTS = packaged_defaults()

# every section of the packaged defaults with a `port` is one of these
UDP_SERVICES = {"snmp", "browse"}
PRINTER_TCP = {"pjl", "http", "ipp", "lpd"}
OTHER_LISTENERS = {"console", "metrics", "collector"}  # TCP, off by default or other commands
OUTBOUND = {"syslog", "email"}  # ports honeyjet connects to, never listens on


def printer_ports() -> set[tuple[int, str]]:
    """(port, proto) of every printer service in the packaged defaults."""
    return {(DEFAULTS[s]["port"], "udp" if s in UDP_SERVICES else "tcp") for s in PRINTER_TCP | UDP_SERVICES}


def test_every_port_in_the_defaults_is_classified():
    """A new section with a port must be sorted into the lists above (and so into the packaging)."""
    with_port = {name for name, section in DEFAULTS.items() if isinstance(section, dict) and "port" in section}
    assert with_port == PRINTER_TCP | UDP_SERVICES | OTHER_LISTENERS | OUTBOUND


# ---- Dockerfile -------------------------------------------------------------------------------

def dockerfile_instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) in order, continuation lines joined, comments dropped."""
    out: list[tuple[str, str]] = []
    pending = ""
    for raw in (ROOT / "Dockerfile").read_text().splitlines():
        line = raw.strip()
        if not pending and (not line or line.startswith("#")):
            continue
        if line.startswith("#"):
            continue
        pending += (" " if pending else "") + line.rstrip("\\").strip()
        if line.endswith("\\"):
            continue
        word, _, rest = pending.partition(" ")
        out.append((word.upper(), rest.strip()))
        pending = ""
    return out


def final_stage() -> list[tuple[str, str]]:
    steps = dockerfile_instructions()
    last_from = max(i for i, (word, _) in enumerate(steps) if word == "FROM")
    return steps[last_from:]


def test_dockerfile_is_multi_stage_on_slim_bookworm_without_compilers():
    steps = dockerfile_instructions()
    args = dict(re.match(r"(\w+)=(\S+)", rest).groups() for word, rest in steps if word == "ARG" and "=" in rest)
    assert args["PYTHON_IMAGE"] == "python:3.11-slim-bookworm"
    froms = [rest for word, rest in steps if word == "FROM"]
    assert len(froms) == 2 and all(f.startswith("${PYTHON_IMAGE}") for f in froms)
    runtime = final_stage()
    installs = " ".join(rest for word, rest in runtime if word == "RUN")
    for package in ("ghostscript", "bubblewrap", "libmagic1", "tini"):
        assert package in installs
    assert not re.search(r"\b(gcc|g\+\+|build-essential|clang)\b", installs)
    copies = [rest for word, rest in runtime if word == "COPY"]
    assert any(c.startswith("--from=build /opt/honeyjet") for c in copies), "the runtime takes the built virtual environment"


def test_dockerfile_runs_as_a_fixed_non_root_user():
    runtime = final_stage()
    users = [rest for word, rest in runtime if word == "USER"]
    assert users, "the image must not run as root"
    uid, _, gid = users[-1].partition(":")
    assert uid.isdigit() and int(uid) != 0 and gid.isdigit() and int(gid) != 0
    created = " ".join(rest for word, rest in runtime if word == "RUN")
    assert f"--uid {uid}" in created and f"--gid {gid}" in created
    assert re.search(rf"install -d -o {uid} -g {gid} .*/data", created), "/data belongs to the image's user"


def test_dockerfile_volumes_env_health_and_signals():
    runtime = final_stage()
    volumes = " ".join(rest for word, rest in runtime if word == "VOLUME")
    assert '"/data"' in volumes
    # /config is mounted read-only by the operator; a VOLUME would add a writable anonymous one
    assert "/config" not in volumes and "install -d -m 0755 /config" in " ".join(rest for word, rest in runtime if word == "RUN")
    env = " ".join(rest for word, rest in runtime if word == "ENV")
    assert "HONEYJET_SENSOR__DATA_DIR=/data" in env
    health = [rest for word, rest in runtime if word == "HEALTHCHECK"]
    assert len(health) == 1 and "honeyjet-healthcheck" in health[0]
    # a probe of a honeypot port would be a session in the event log every interval
    assert not re.search(r"\b(curl|wget|nc|9100)\b", health[0])
    assert ("STOPSIGNAL", "SIGTERM") in runtime
    entry = [rest for word, rest in runtime if word == "ENTRYPOINT"][-1]
    assert entry.startswith('["/usr/bin/tini", "--"') and "honeyjet-entrypoint" in entry
    labels = " ".join(rest for word, rest in runtime if word == "LABEL")
    for key in ("title", "description", "version", "licenses"):
        assert f"org.opencontainers.image.{key}=" in labels


def test_dockerfile_exposes_every_listening_port():
    exposed: set[tuple[int, str]] = set()
    for word, rest in final_stage():
        if word == "EXPOSE":
            for item in rest.split():
                port, _, proto = item.partition("/")
                exposed.add((int(port), proto or "tcp"))
    wanted = printer_ports() | {(DEFAULTS[s]["port"], "tcp") for s in OTHER_LISTENERS}
    assert wanted <= exposed, f"not exposed: {sorted(wanted - exposed)}"
    assert not {(DEFAULTS[s]["port"], "tcp") for s in OUTBOUND} & exposed


def dockerignored(path: str) -> bool:
    """Docker's rule: the last matching pattern wins; `!` re-includes."""
    ignored = False
    for line in (ROOT / ".dockerignore").read_text().splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        negate = line.startswith("!")
        pattern = line[1:] if negate else line
        pattern = pattern.rstrip("/")
        parts = path.split("/")
        prefixes = ["/".join(parts[:i]) for i in range(1, len(parts) + 1)]
        if any(fnmatch.fnmatchcase(p, pattern) or fnmatch.fnmatchcase(p, pattern.replace("**/", "")) for p in prefixes):
            ignored = not negate
    return ignored


def test_dockerignore_keeps_what_the_build_copies():
    for word, rest in dockerfile_instructions():
        if word == "COPY" and not rest.startswith("--from"):
            for source in rest.split()[:-1]:
                files = [p for p in (ROOT / source).rglob("*") if p.is_file()] if (ROOT / source).is_dir() else [ROOT / source]
                assert files, source
                for f in files:
                    rel = f.relative_to(ROOT).as_posix()
                    if "__pycache__" not in rel and ".egg-info/" not in rel:  # local build leftovers, rightly ignored
                        assert not dockerignored(rel), f"{rel} is copied by the Dockerfile but excluded by .dockerignore"
    for rel in (".git/config", "tests/conftest.py", ".venv/bin/python", "src/honeyjet/__pycache__/cli.cpython-311.pyc"):
        assert dockerignored(rel), rel


# ---- the entrypoint, run for real under sh -------------------------------------------------------

ENTRYPOINT = ROOT / "packaging/docker/entrypoint.sh"


def entrypoint_lists() -> tuple[set[str], set[str]]:
    text = ENTRYPOINT.read_text()
    with_config = re.search(r"^\s*([a-z|]+)\)\s*\n\s*wants_config=yes", text, re.M)
    without = re.search(r"^\s*([a-z|]+)\|-\*\)\s*\n\s*wants_config=no", text, re.M)
    assert with_config and without
    return set(with_config.group(1).split("|")), set(without.group(1).split("|"))


def subcommands() -> set[str]:
    parser = build_parser()
    sub = next(a for a in parser._actions if a.__class__.__name__ == "_SubParsersAction")
    return set(sub.choices)


# the smallest valid command line of each subcommand that reads the operator file
MINIMAL = {
    "run": ["run"], "init": ["init"], "analyze": ["analyze"], "report": ["report"], "console": ["console", "adduser", "ana"],
    "collector": ["collector", "token", "list"], "export": ["export", "blocklist"],
}


def test_entrypoint_knows_every_subcommand_and_config_is_accepted_where_it_adds_it():
    with_config, without = entrypoint_lists()
    assert with_config | without == subcommands(), "a new subcommand must be listed in packaging/docker/entrypoint.sh"
    assert not with_config & without
    for name in with_config:
        args = build_parser().parse_args([*MINIMAL[name], "--config", "/config/honeyjet.toml"])
        assert args.config == Path("/config/honeyjet.toml"), name


@pytest.fixture
def fake_honeyjet(tmp_path: Path) -> dict[str, str]:
    """PATH with a `honeyjet` that prints its arguments, one per line."""
    bindir = tmp_path / "bin"
    bindir.mkdir()
    stub = bindir / "honeyjet"
    stub.write_text('#!/bin/sh\nfor a in "$@"; do echo "$a"; done\n')
    stub.chmod(0o755)
    return {"PATH": f"{bindir}:/usr/bin:/bin", "HONEYJET_CONFIG_FILE": str(tmp_path / "config" / "honeyjet.toml")}


def entry(env: dict[str, str], *args: str) -> list[str]:
    done = subprocess.run(["sh", str(ENTRYPOINT), *args], env=env, capture_output=True, text=True, timeout=10)
    assert done.returncode == 0, done.stderr
    return done.stdout.splitlines()


def test_entrypoint_without_a_config_file(fake_honeyjet):
    assert entry(fake_honeyjet) == ["run"]
    assert entry(fake_honeyjet, "run", "--port-offset", "5") == ["run", "--port-offset", "5"]


def test_entrypoint_adds_the_mounted_config(fake_honeyjet):
    config = Path(fake_honeyjet["HONEYJET_CONFIG_FILE"])
    config.parent.mkdir()
    config.write_text("[sensor]\n")
    assert entry(fake_honeyjet) == ["run", "--config", str(config)]
    assert entry(fake_honeyjet, "console", "adduser", "ana", "--password-stdin") == [
        "console", "adduser", "ana", "--password-stdin", "--config", str(config)]
    # given on the command line: left alone (both spellings)
    assert entry(fake_honeyjet, "run", "--config", "/other.toml") == ["run", "--config", "/other.toml"]
    assert entry(fake_honeyjet, "run", "--config=/other.toml") == ["run", "--config=/other.toml"]
    # commands without --config, and options before the subcommand, pass through
    assert entry(fake_honeyjet, "personas") == ["personas"]
    assert entry(fake_honeyjet, "--version") == ["--version"]


def test_entrypoint_runs_other_programs_as_they_are(fake_honeyjet):
    assert entry(fake_honeyjet, "sh", "-c", "echo not honeyjet") == ["not honeyjet"]


# ---- the health check, against real sensors -----------------------------------------------------

def load_healthcheck():
    spec = importlib.util.spec_from_file_location("honeyjet_healthcheck", ROOT / "packaging/docker/healthcheck.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


async def test_healthcheck_targets_are_where_the_sensor_listens(data_dir: Path):
    hc = load_healthcheck()
    settings = sensor_settings(data_dir)
    offset = settings.sensor.port_offset
    argv = ["run", "--bind", "127.0.0.1", "--port-offset", str(offset), "--data-dir", str(data_dir)]
    expected = hc.targets(argv, {})
    assert expected == hc.sensor_targets(settings)
    assert sorted(expected) == sorted({(proto, port + offset) for port, proto in printer_ports()})
    async with running(settings):
        assert hc.missing(expected, hc.listening()) == []
        # the log path the T-Pot kit reads, relative to the data directory
        assert (data_dir / "log" / "honeyjet.json").is_file()
    # ports closed: every one is missing again
    assert sorted(hc.missing(expected, hc.listening())) == sorted(expected)


def test_healthcheck_targets_follow_the_environment_and_other_commands():
    hc = load_healthcheck()
    env = {"HONEYJET_SNMP__ENABLED": "false", "HONEYJET_METRICS__ENABLED": "true", "HONEYJET_SENSOR__PORT_OFFSET": "7"}
    got = hc.targets(["run"], env)
    assert ("udp", 161 + 7) not in got and ("tcp", 9464 + 7) in got and ("tcp", 9100 + 7) in got
    assert hc.targets(["console", "--port", "18080"], {}) == [("tcp", 18080)]
    assert hc.targets(["console", "adduser", "ana"], {}) == []
    assert hc.targets(["collector"], {"HONEYJET_COLLECTOR__PORT": "9443"}) == [("tcp", 9443)]
    assert hc.targets(["collector", "token", "list"], {}) == []
    assert hc.targets(["report"], {}) == []


def test_healthcheck_script_on_a_real_sensor_process(tmp_path: Path):
    """The script as Docker runs it: finds the process's arguments and environment in /proc."""
    offset = free_offset()
    env = {**os.environ, "HONEYJET_SENSOR__USER": "", "HONEYJET_SENSOR__NAME": "hc-test", "HONEYJET_ANALYSIS__FORENSICS": "false"}
    honeyjet = Path(sys.executable).with_name("honeyjet")
    cmd = [sys.executable, str(honeyjet), "run", "--bind", "127.0.0.1", "--port-offset", str(offset), "--data-dir", str(tmp_path / "data")]
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True)
    script = [sys.executable, str(ROOT / "packaging/docker/healthcheck.py"), str(proc.pid)]
    try:
        deadline = time.monotonic() + 30
        while True:  # unhealthy while the sensor starts; no connection is ever made
            done = subprocess.run(script, capture_output=True, text=True, timeout=30)
            if done.returncode == 0 or time.monotonic() > deadline or proc.poll() is not None:
                break
            time.sleep(0.3)
        assert proc.poll() is None, proc.stderr.read().decode()
        assert done.returncode == 0, done.stdout
        assert done.stdout.startswith("healthy: ") and f"{9100 + offset}/tcp" in done.stdout and f"{161 + offset}/udp" in done.stdout
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=30)
    gone = subprocess.run(script, capture_output=True, text=True, timeout=30)
    assert gone.returncode == 1 and gone.stdout.startswith("unhealthy")


# ---- compose ----------------------------------------------------------------------------------

def compose(path: str = "docker-compose.yml") -> dict:
    return yaml.safe_load((ROOT / path).read_text())


def published(service: dict) -> list[tuple[str, int, int, str]]:
    """(host ip, host port, container port, proto) of each short-syntax port."""
    out = []
    for item in service.get("ports", []):
        spec, _, proto = str(item).partition("/")
        parts = spec.split(":")
        ip = parts[0] if len(parts) == 3 else ""
        out.append((ip, int(parts[-2]), int(parts[-1]), proto or "tcp"))
    return out


def test_compose_sensor_is_hardened():
    sensor = compose()["services"]["honeyjet"]
    assert sensor["read_only"] is True
    assert any(t.split(":")[0] == "/tmp" for t in sensor["tmpfs"])
    assert sensor["cap_drop"] == ["ALL"] and "cap_add" not in sensor
    assert "no-new-privileges:true" in sensor["security_opt"]
    assert str(sensor["sysctls"]["net.ipv4.ip_unprivileged_port_start"]) == "0"
    assert sensor["restart"] == "unless-stopped"
    assert "honeyjet-data:/data" in sensor["volumes"] and "./config:/config:ro" in sensor["volumes"]
    assert "user" not in sensor, "the image's non-root user"


def test_compose_publishes_every_printer_port_unchanged():
    ports = published(compose()["services"]["honeyjet"])
    assert {(container, proto) for _, _, container, proto in ports} == printer_ports()
    assert all(host == container for _, host, container, _ in ports), "no offset: events and replies carry the real ports"


def test_compose_environment_names_real_settings():
    """Every HONEYJET_<SECTION>__<KEY> in the compose files exists in the packaged defaults."""
    for path in ("docker-compose.yml", "docs/tpot/docker-compose.tpot.yml"):
        for name, service in compose(path)["services"].items():
            env = service.get("environment", {})
            keys = env.keys() if isinstance(env, dict) else [e.partition("=")[0] for e in env]
            if "honeyjet" not in service["image"].lower():
                continue  # postgres
            for key in keys:
                m = re.fullmatch(r"HONEYJET_([A-Z_]+?)__([A-Z_]+)", key)
                assert m, (path, name, key)
                section, option = m.group(1).lower(), m.group(2).lower()
                assert option in DEFAULTS.get(section, {}), f"{path}: {name}: {key} is not a setting"


def test_compose_profiles_console_and_fleet():
    doc = compose()
    services = doc["services"]
    assert "profiles" not in services["honeyjet"]
    console, collector, postgres = services["console"], services["collector"], services["postgres"]
    assert console["profiles"] == ["console"] and collector["profiles"] == ["fleet"] and postgres["profiles"] == ["fleet"]
    assert postgres["image"] == "postgres:15"
    assert collector["image"] == services["honeyjet"]["image"] == console["image"]
    assert collector["command"][0] == "collector" and "--tls-cert" in collector["command"]
    assert console["command"][0] == "console" and "--tls-cert" in console["command"]
    assert all(ip == "127.0.0.1" for ip, *_ in published(console)), "the console is published on loopback only"
    for svc in (console, collector):
        assert svc["read_only"] is True and svc["cap_drop"] == ["ALL"] and "no-new-privileges:true" in svc["security_opt"]
    env = services["honeyjet"]["environment"]
    assert env["HONEYJET_FORWARD__TOKEN_FILE"] == "/run/secrets/sensor_token"
    assert "sensor_token" in services["honeyjet"]["secrets"]
    assert "postgres:5432" in collector["environment"]["HONEYJET_COLLECTOR__DATABASE_URL"]
    for name, svc in services.items():
        for secret in svc.get("secrets", []):
            assert secret in doc["secrets"], (name, secret)


def test_docker_compose_config_accepts_the_file():
    tool = shutil.which("docker-compose")
    require(tool, "docker-compose is not installed")
    done = subprocess.run([tool, "-f", str(ROOT / "docker-compose.yml"), "--profile", "fleet", "--profile", "console", "config", "-q"],
                          capture_output=True, text=True, timeout=60, env={**os.environ, "HONEYJET_DB_PASSWORD": "x"})
    assert done.returncode == 0, done.stderr


# ---- T-Pot kit --------------------------------------------------------------------------------

LOGSTASH = ROOT / "docs/tpot/honeyjet.conf"


def logstash_code() -> str:
    """The pipeline without comments (a # inside a quoted string is kept)."""
    lines = []
    for line in LOGSTASH.read_text().splitlines():
        quoted = False
        for i, ch in enumerate(line):
            if ch == '"':
                quoted = not quoted
            elif ch == "#" and not quoted:
                line = line[:i]
                break
        lines.append(line)
    return "\n".join(lines)


def test_logstash_pipeline_reads_the_json_log_as_tpot_does():
    code = logstash_code()
    assert code.count("{") == code.count("}") and code.count('"') % 2 == 0
    assert re.search(r'file\s*\{\s*path\s*=>\s*\["/data/honeyjet/log/honeyjet\.json"\]\s*codec\s*=>\s*json\s*type\s*=>\s*"Honeyjet"', code)
    assert re.search(r'date\s*\{\s*match\s*=>\s*\[\s*"timestamp",\s*"ISO8601"\s*\]', code)
    assert re.search(r'"dst_ip"\s*=>\s*"dest_ip"', code) and re.search(r'"dst_port"\s*=>\s*"dest_port"', code)
    assert re.search(r'geoip\s*\{\s*source\s*=>\s*"src_ip"', code)
    assert re.search(r'elasticsearch\s*\{\s*hosts\s*=>', code) and 'index => "logstash-%{+YYYY.MM.dd}"' in code
    for section in ("input", "filter", "output"):
        assert re.search(rf"^{section} \{{", code, re.M)


def test_logstash_pipeline_fits_the_event_catalogue():
    fields = set(COMMON_FIELDS)
    for spec in CATALOGUE.values():
        fields |= set(spec.fields)
    # Logstash's own fields: a `type` in an event would win over the input's "Honeyjet"
    assert not fields & {"type", "tags", "@timestamp", "@version"}
    # the renames' targets are free
    assert not fields & {"dest_ip", "dest_port", "honeyjet_host", "honeyjet_path"}
    assert {"timestamp", "src_ip", "dst_ip", "dst_port"} <= fields
    code = logstash_code()
    # the file input's own `host` and `path`: every event field of that name is moved aside
    for name in fields & {"host", "path"}:
        assert f"if [{name}] and [{name}] != [@metadata][{name}]" in code and f'"{name}" => "honeyjet_{name}"' in code


def test_tpot_compose_snippet_follows_tpot():
    doc = compose("docs/tpot/docker-compose.tpot.yml")
    assert "honeyjet_local" in doc["networks"]
    svc = doc["services"]["honeyjet"]
    assert svc["container_name"] == "honeyjet" and svc["restart"] == "always"
    assert svc["depends_on"] == {"tpotinit": {"condition": "service_healthy"}}
    assert svc["networks"] == ["honeyjet_local"] and svc["read_only"] is True and svc["pull_policy"] == "never"
    assert svc["user"] == "2000:2000" and any(t.startswith("/tmp:") for t in svc["tmpfs"])
    # T-Pot's Logstash mounts ${TPOT_DATA_PATH} on /data: the pipeline's path must be this volume's log
    assert svc["volumes"] == ["${TPOT_DATA_PATH}/honeyjet:/data"]
    assert '"/data/honeyjet/log/honeyjet.json"' in logstash_code()
    ports = {(container, proto) for _, _, container, proto in published(svc)}
    assert {(9100, "tcp"), (631, "tcp"), (631, "udp"), (515, "tcp")} <= ports
    text = (ROOT / "docs/tpot/docker-compose.tpot.yml").read_text()
    # 80 and 161/udp belong to other T-Pot honeypots by default: offered, commented out
    assert '# - "80:80"' in text and '# - "161:161/udp"' in text


# ---- systemd ------------------------------------------------------------------------------------

def unit(path: str) -> list[tuple[str, str, str]]:
    """(section, key, value) in order; repeated keys are kept."""
    out, section = [], ""
    for line in (ROOT / path).read_text().splitlines():
        line = line.strip()
        if not line or line.startswith(("#", ";")):
            continue
        if line.startswith("["):
            section = line.strip("[]")
            continue
        key, _, value = line.partition("=")
        out.append((section, key.strip(), value.strip()))
    return out


def values(entries, key: str) -> list[str]:
    return [v for s, k, v in entries if s == "Service" and k == key]


def test_sensor_unit_is_hardened():
    u = unit("packaging/systemd/honeyjet.service")
    one = {k: v for s, k, v in u if s == "Service"}
    assert one["User"] == "honeyjet" and one["Group"] == "honeyjet"
    assert one["ExecStart"].split()[1:3] == ["run", "--data-dir"] and "/var/lib/honeyjet" in one["ExecStart"]
    assert one["AmbientCapabilities"] == one["CapabilityBoundingSet"] == "CAP_NET_BIND_SERVICE"
    for key, want in (("NoNewPrivileges", "yes"), ("ProtectSystem", "strict"), ("ReadWritePaths", "/var/lib/honeyjet"),
                      ("PrivateTmp", "yes"), ("PrivateDevices", "yes"), ("ProtectHome", "yes"), ("RestrictNamespaces", "yes"),
                      ("RestrictSUIDSGID", "yes"), ("MemoryDenyWriteExecute", "yes"), ("SystemCallArchitectures", "native")):
        assert one[key] == want, key
    assert set(one["RestrictAddressFamilies"].split()) == {"AF_INET", "AF_INET6", "AF_UNIX"}
    filters = values(u, "SystemCallFilter")
    assert filters[0] == "@system-service" and any(f.startswith("~") and "@privileged" in f for f in filters)
    assert int(one["LimitNOFILE"]) > DEFAULTS["limits"]["sessions_total"]
    assert one["ExecReload"].endswith("-HUP $MAINPID")


def test_collector_unit_has_no_capability():
    u = unit("packaging/systemd/honeyjet-collector.service")
    one = {k: v for s, k, v in u if s == "Service"}
    assert one["User"] == "honeyjet" and one["ExecStart"].split()[1] == "collector"
    assert one["CapabilityBoundingSet"] == "" and one["AmbientCapabilities"] == ""
    assert one["NoNewPrivileges"] == "yes" and one["ProtectSystem"] == "strict"
    assert one["ReadWritePaths"] == "/var/lib/honeyjet-collector"


def test_bubblewrap_dropin_relaxes_only_what_bubblewrap_needs():
    drop = unit("packaging/systemd/bubblewrap.conf")
    assert {s for s, _, _ in drop} == {"Service"}
    keys = {k for _, k, _ in drop}
    assert keys == {"RestrictNamespaces", "RestrictAddressFamilies", "ProtectKernelTunables", "ProtectKernelLogs",
                    "ProtectProc", "ProcSubset", "SystemCallFilter"}
    filters = values(drop, "SystemCallFilter")
    assert filters[0] == "", "the unit's filter is reset before it is restated"
    allowed = set(filters[1].split())
    assert allowed == {"@system-service", "@mount", "capset"}
    denied = set(" ".join(f[1:] for f in filters[2:]).split())
    assert "@privileged" not in denied and not {"mount", "umount2", "pivot_root", "capset"} & denied
    assert {"@setuid", "@chown", "@module", "@raw-io", "bpf", "chroot"} <= denied
    assert "AF_NETLINK" in values(drop, "RestrictAddressFamilies")[0]


def test_units_pass_systemd_analyze_verify(tmp_path: Path):
    tool = shutil.which("systemd-analyze")
    require(tool, "systemd-analyze is not installed (package systemd)")
    honeyjet = Path(sys.executable).with_name("honeyjet")
    sensor = (ROOT / "packaging/systemd/honeyjet.service").read_text()
    dropin = (ROOT / "packaging/systemd/bubblewrap.conf").read_text().replace("[Service]\n", "")
    main, sep, install = sensor.partition("[Install]")
    files = {
        "honeyjet.service": sensor,
        "honeyjet-collector.service": (ROOT / "packaging/systemd/honeyjet-collector.service").read_text(),
        "honeyjet-bwrap.service": main + dropin + "\n" + sep + install,  # the sensor unit with the drop-in applied
    }
    for name, text in files.items():
        path = tmp_path / name
        # ExecStart must name an existing program: this test's honeyjet
        path.write_text(text.replace("/opt/honeyjet/bin/honeyjet", str(honeyjet)))
        done = subprocess.run([tool, "verify", str(path)], capture_output=True, text=True, timeout=60)
        problems = [line for line in done.stderr.splitlines() if "sysinit.target" not in line and line.strip()]
        assert done.returncode == 0 or not problems, (name, done.stderr)
        assert not problems, (name, problems)


# ---- nftables ---------------------------------------------------------------------------------

NFT = ROOT / "packaging/nftables/honeyjet-redirect.nft"


def test_nftables_redirects_every_printer_port_by_the_documented_offset():
    text = NFT.read_text()
    offset = int(re.search(r"--port-offset (\d+)", text).group(1))
    rules = re.findall(r"^\s*(tcp|udp) dport (\d+) redirect to :(\d+)", text, re.M)
    assert {(int(port), proto) for proto, port, _ in rules} == printer_ports()
    assert all(int(to) == int(port) + offset for _, port, to in rules)
    assert "type nat hook prerouting priority dstnat" in text


def test_nftables_file_parses():
    nft = shutil.which("nft")
    require(nft, "nft is not installed")
    done = subprocess.run([nft, "-c", "-f", str(NFT)], capture_output=True, text=True, timeout=30)
    require(done.returncode == 0 or "Operation not permitted" not in done.stderr, "nft -c needs CAP_NET_ADMIN")
    assert done.returncode == 0, done.stderr


# ---- the image, built and run (needs a Docker engine) -----------------------------------------

def docker_ready(base: str) -> bool:
    if shutil.which("docker") is None:
        return False
    try:
        if subprocess.run(["docker", "info"], capture_output=True, timeout=20).returncode != 0:
            return False
        return subprocess.run(["docker", "image", "inspect", base], capture_output=True, timeout=20).returncode == 0
    except (OSError, subprocess.SubprocessError):
        return False


@pytest.mark.realclient
def test_image_builds_and_serves_read_only(tmp_path: Path):
    """Build, run --read-only with no capability, ask 9100 for INFO ID, find the event in /data.

    The base image must already be local (HONEYJET_DOCKER_BASE, default python:3.11-slim-bookworm):
    the test never pulls.
    """
    base = os.environ.get("HONEYJET_DOCKER_BASE", "python:3.11-slim-bookworm")
    if not docker_ready(base):
        pytest.skip(f"no Docker engine, or base image {base} not present locally")
    tag, name, volume = "honeyjet:pytest", f"honeyjet-pytest-{os.getpid()}", f"honeyjet-pytest-{os.getpid()}"
    build = subprocess.run(["docker", "build", "-q", "--build-arg", f"PYTHON_IMAGE={base}", "-t", tag, str(ROOT)],
                           capture_output=True, text=True, timeout=150, env={**os.environ, "DOCKER_BUILDKIT": "0"})
    assert build.returncode == 0, build.stderr[-2000:]
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        host_port = s.getsockname()[1]
    run = ["docker", "run", "-d", "--name", name, "--read-only", "--tmpfs", "/tmp", "--cap-drop", "ALL",
           "--security-opt", "no-new-privileges", "--sysctl", "net.ipv4.ip_unprivileged_port_start=0",
           "-v", f"{volume}:/data", "-p", f"127.0.0.1:{host_port}:9100", tag]
    try:
        assert subprocess.run(run, capture_output=True, text=True, timeout=30).returncode == 0
        reply, deadline = b"", time.monotonic() + 30
        while b"INFO ID" not in reply and time.monotonic() < deadline:
            try:
                with socket.create_connection(("127.0.0.1", host_port), timeout=3) as c:
                    c.sendall(b"\x1b%-12345X@PJL INFO ID\r\n")
                    c.settimeout(3)
                    reply = c.recv(4096)
            except OSError:
                time.sleep(0.5)
        assert reply.startswith(b"@PJL INFO ID\r\n\"")
        log, deadline = "", time.monotonic() + 15
        while "honeyjet.pjl.command" not in log and time.monotonic() < deadline:
            log = subprocess.run(["docker", "exec", name, "cat", "/data/log/honeyjet.json"], capture_output=True, text=True, timeout=15).stdout
            time.sleep(0.5)
        assert "honeyjet.pjl.command" in log
        health = subprocess.run(["docker", "exec", name, "/opt/honeyjet/bin/python", "/usr/local/bin/honeyjet-healthcheck"],
                                capture_output=True, text=True, timeout=30)
        assert health.returncode == 0 and health.stdout.startswith("healthy: 9100/tcp"), health.stdout
        stop = subprocess.run(["docker", "stop", "-t", "30", name], capture_output=True, timeout=60)
        assert stop.returncode == 0
        code = subprocess.run(["docker", "inspect", "--format", "{{.State.ExitCode}}", name], capture_output=True, text=True, timeout=15)
        assert code.stdout.strip() == "0"
    finally:
        subprocess.run(["docker", "rm", "-f", "-v", name], capture_output=True, timeout=30)
        subprocess.run(["docker", "volume", "rm", "-f", volume], capture_output=True, timeout=30)
