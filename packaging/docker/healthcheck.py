#!/opt/honeyjet/bin/python
"""Container health check: is the running honeyjet command listening on every port it should?

It never connects to a port. A probe of 9100 or 80 would be a honeypot session in the
event log every 30 seconds, so the check reads the container's socket tables
(``/proc/net/tcp*`` and ``/proc/net/udp*``) instead. It finds the ``honeyjet`` process,
parses its command line with honeyjet's own argument parser and loads its settings from
its own environment, exactly as the process did, and then expects:

- ``run``: a listening TCP socket for each enabled TCP service (pjl, http, ipp, lpd, and
  console and metrics when enabled) and a bound UDP socket for snmp and browse, every
  port moved by ``sensor.port_offset``. A service the sensor skipped (port taken, no
  privilege) makes the container unhealthy.
- ``console``: its ``--port``; ``collector``: its ``--port`` or ``collector.port``.
- one-shot commands (``init``, ``analyze``, ``report``, ``export``, token management):
  healthy while they run.

Exit status 0 = healthy, 1 = unhealthy; one line on stdout says why (``docker inspect``
shows it). ``honeyjet-healthcheck PID`` checks that process instead of the oldest honeyjet one.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Iterable, Mapping, Sequence

PROC = Path("/proc")
TCP_LISTEN = "0A"
TCP_SERVICES = ("pjl", "http", "ipp", "lpd")
UDP_SERVICES = ("snmp", "browse")

Target = tuple[str, int]  # ("tcp" | "udp", port)


def listening(proc: Path = PROC) -> set[Target]:
    """Listening TCP ports and bound UDP ports of this network namespace (IPv4 and IPv6)."""
    found: set[Target] = set()
    for proto, names in (("tcp", ("tcp", "tcp6")), ("udp", ("udp", "udp6"))):
        for name in names:
            try:
                lines = (proc / "net" / name).read_text("ascii").splitlines()[1:]
            except OSError:
                continue
            for line in lines:
                fields = line.split()
                if len(fields) < 4:
                    continue
                port = int(fields[1].rpartition(":")[2], 16)
                if proto == "udp" or fields[3] == TCP_LISTEN:
                    found.add((proto, port))
    return found


def sensor_targets(settings) -> list[Target]:
    """Where `honeyjet run` with these settings listens."""
    targets: list[Target] = []
    for proto, names in (("tcp", TCP_SERVICES), ("udp", UDP_SERVICES)):
        for name in names:
            service = getattr(settings, name)
            if service.enabled:
                targets.append((proto, settings.listen_port(service)))
    offset = settings.sensor.port_offset
    for extra in (settings.console, settings.metrics):
        if extra.enabled:
            targets.append(("tcp", extra.port + offset))
    return targets


def targets(argv: Sequence[str], env: Mapping[str, str]) -> list[Target]:
    """Ports the honeyjet command line ``argv`` (without the program name) listens on.

    Settings are loaded with ``env`` as the environment, as the process itself loaded them.
    """
    from honeyjet.cli import _overrides, build_parser
    from honeyjet.config import load_settings

    args = build_parser().parse_args(list(argv))
    if args.command == "run":
        return sensor_targets(load_settings(args.config, env=env, overrides=_overrides(args)))
    if args.command == "console" and not getattr(args, "console_command", None):
        return [("tcp", args.port)]
    if args.command == "collector" and not getattr(args, "collector_command", None):
        if args.port is not None:
            return [("tcp", args.port)]
        over = {"sensor": {"data_dir": str(args.data_dir)}} if args.data_dir else {}
        return [("tcp", load_settings(args.config, env=env, overrides=over).collector.port)]
    return []


def missing(expected: Iterable[Target], bound: set[Target]) -> list[Target]:
    return [t for t in expected if t not in bound]


def _cmdline(pid: str) -> list[str]:
    try:
        raw = (PROC / pid / "cmdline").read_bytes()
    except OSError:
        return []
    return [part.decode("utf-8", "surrogateescape") for part in raw.split(b"\0")[:-1]]


def _arguments(cmdline: list[str]) -> list[str] | None:
    """The arguments after the ``honeyjet`` script (``/opt/honeyjet/bin/python /opt/honeyjet/bin/honeyjet run …``)."""
    for i, part in enumerate(cmdline[:2]):
        if os.path.basename(part) == "honeyjet":
            return cmdline[i + 1:]
    return None


def find_honeyjet(proc: Path = PROC) -> tuple[int, list[str]] | None:
    """The oldest process running the ``honeyjet`` console script: (pid, its arguments)."""
    for pid in sorted(int(p.name) for p in proc.iterdir() if p.name.isdigit()):
        if pid != os.getpid():
            args = _arguments(_cmdline(str(pid)))
            if args is not None:
                return pid, args
    return None


def _environ(pid: int) -> dict[str, str]:
    raw = (PROC / str(pid) / "environ").read_bytes()
    env: dict[str, str] = {}
    for item in raw.split(b"\0"):
        name, sep, value = item.decode("utf-8", "surrogateescape").partition("=")
        if sep:
            env[name] = value
    return env


def main(argv: Sequence[str] | None = None) -> int:
    """``honeyjet-healthcheck [PID]``: check PID, by default the oldest honeyjet process."""
    args = sys.argv[1:] if argv is None else list(argv)
    if args:
        pid = int(args[0])
        found = (pid, _arguments(_cmdline(str(pid))))
    else:
        found = find_honeyjet()
    if found is None or found[1] is None:
        print("unhealthy: no honeyjet process")
        return 1
    pid, argv = found
    try:
        env = _environ(pid)
        os.chdir(PROC / str(pid) / "cwd")  # relative paths in its arguments mean what they meant to it
        expected = targets(argv, env)
    except (OSError, SystemExit, Exception) as exc:  # noqa: BLE001 - a health check reports, never raises
        print(f"unhealthy: cannot read the settings of pid {pid}: {type(exc).__name__}: {exc}")
        return 1
    gone = missing(expected, listening())
    if gone:
        print("unhealthy: not listening on " + ", ".join(f"{port}/{proto}" for proto, port in gone))
        return 1
    print("healthy: " + (", ".join(f"{port}/{proto}" for proto, port in expected) or f"pid {pid} running"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
