"""Command line: ``honeyjet init``, ``run``, ``analyze``, ``evaluate``, ``console``, ``report``, ``collector``, ``export``, ``personas``.

Every operator mistake (bad config, port in use, unwritable directory) ends with one
line on stderr naming the key, port or path, and exit status 2; never a traceback.
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path
from typing import Any, Sequence

from honeyjet import __version__
from honeyjet.config import ConfigError, Settings, load_settings

EXIT_USAGE = 2

OPERATOR_TEMPLATE = """\
# honeyjet operator configuration, written by `honeyjet init`.
# Only keys you change belong here; every key and its default is listed in the
# packaged defaults (honeyjet/defaults.toml). Environment variables
# HONEYJET_<SECTION>__<KEY> override this file; command-line flags override both.

[sensor]
persona = "{persona}"
# name = "printer-dmz-1"
# bind = "0.0.0.0"
# port_offset = 0

[limits]
# idle_timeout = 270.0
# sessions_per_source = 64
# job_bytes = 67108864
# disk_quota = 10737418240

# Alerts for high-severity verdicts (docs/outputs.md); enable at least one channel.
# [alerts]
# enabled = true
# [webhook]
# enabled = true
# url = "https://hooks.example/honeyjet"

# Forward everything to a fleet's collector (docs/fleet.md).
# [forward]
# enabled = true
# url = "https://collector.example:8443"
# token_file = "/etc/honeyjet/sensor.token"
"""


def _overrides(args: argparse.Namespace) -> dict[str, dict[str, Any]]:
    sensor: dict[str, Any] = {}
    for flag, key in (("data_dir", "data_dir"), ("bind", "bind"), ("port_offset", "port_offset"), ("persona", "persona")):
        value = getattr(args, flag, None)
        if value is not None:
            sensor[key] = str(value) if isinstance(value, Path) else value
    return {"sensor": sensor} if sensor else {}


def _settings(args: argparse.Namespace) -> Settings:
    return load_settings(args.config, overrides=_overrides(args))


def cmd_run(args: argparse.Namespace) -> int:
    from honeyjet.sensor import StartupError, run_sensor

    settings = _settings(args)
    try:
        run_sensor(settings)
    except StartupError as exc:
        print(f"honeyjet: {exc}", file=sys.stderr)
        return EXIT_USAGE
    return 0


def cmd_init(args: argparse.Namespace) -> int:
    from honeyjet.fsutil import atomic_write, ensure_writable_dir
    from honeyjet.persona.identity import IdentityStore
    from honeyjet.persona.model import PersonaError, load_persona

    settings = _settings(args)
    data_dir = settings.data_dir
    try:
        ensure_writable_dir(data_dir / "state")
    except OSError as exc:
        print(f"honeyjet: error: data directory {data_dir} is not writable: {exc.strerror or exc}", file=sys.stderr)
        return EXIT_USAGE
    try:
        persona = load_persona(settings.sensor.persona)
    except PersonaError as exc:
        print(f"honeyjet: {exc}", file=sys.stderr)
        return EXIT_USAGE
    config_path = data_dir / "honeyjet.toml"
    if config_path.exists() and not args.force:
        print(f"kept existing {config_path} (use --force to rewrite it)")
    else:
        atomic_write(config_path, OPERATOR_TEMPLATE.format(persona=persona.id).encode())
        print(f"wrote {config_path}")
    try:
        identity, created = IdentityStore(data_dir / "state" / "identity.json").load_or_create(persona)
    except ValueError as exc:
        print(f"honeyjet: {exc}", file=sys.stderr)
        return EXIT_USAGE
    print(f"{'drew' if created else 'kept'} identity for {persona.persona.title}:")
    print(f"  serial   {identity.serial}")
    print(f"  MAC      {identity.mac}")
    print(f"  hostname {identity.hostname}")
    print(f"  pages    {identity.page_count_origin} (+{identity.pages_per_day}/day)")
    return 0


def cmd_personas(args: argparse.Namespace) -> int:
    from honeyjet.persona.model import PersonaError, builtin_ids, load_persona

    for pid in builtin_ids():
        try:
            p = load_persona(pid)
        except PersonaError as exc:
            print(f"{pid:24} INVALID: {exc}")
            continue
        print(f"{pid:24} {p.device.model:28} {p.persona.title}")
    return 0


def parse_since(text: str) -> float:
    """``7d``, ``24h``, ``30m``, ``90s`` ago, or an ISO date/time; returns a UNIX time."""
    import re
    import time
    from datetime import datetime, timezone

    m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([smhdw])\s*", text)
    if m:
        unit = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}[m.group(2)]
        return time.time() - float(m.group(1)) * unit
    try:
        dt = datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    except ValueError:
        raise ConfigError(f"--since {text!r}: use a duration such as 7d, 24h, 30m or an ISO date") from None
    return (dt if dt.tzinfo else dt.replace(tzinfo=timezone.utc)).timestamp()


def cmd_analyze(args: argparse.Namespace) -> int:
    import asyncio

    from honeyjet.analysis.rerun import rerun
    from honeyjet.sensor import StartupError

    settings = _settings(args)
    since = parse_since(args.since) if args.since else 0.0
    try:
        counters = asyncio.run(rerun(settings, since=since, show_progress=not args.quiet))
    except (StartupError, FileNotFoundError) as exc:
        print(f"honeyjet: {exc}", file=sys.stderr)
        return EXIT_USAGE
    print(f"analysed {counters['sessions']} sessions: {counters['verdicts']} verdicts, "
          f"{counters['jobs_analyzed']} jobs through forensics, {counters['errors']} errors")
    return 0


def cmd_evaluate(args: argparse.Namespace) -> int:
    import asyncio
    import platform

    from honeyjet.analysis.evaluate import evaluate, markdown
    from honeyjet.analysis.rerun import progress_bar

    bars: dict[str, Any] = {}

    def progress(label: str, done: int, total: int) -> None:
        bars.setdefault(label, progress_bar(label))(done, total)

    corpus = args.corpus
    if corpus is None:
        print("honeyjet: --corpus FILE is required (the labelled probes.json)", file=sys.stderr)
        return EXIT_USAGE
    if not Path(corpus).is_file():
        print(f"honeyjet: --corpus {corpus}: no such file", file=sys.stderr)
        return EXIT_USAGE
    result = asyncio.run(evaluate(corpus, with_variants=not args.no_variants, progress=None if args.quiet else progress))
    machine = f"{platform.machine()}, Python {platform.python_version()}"
    text = markdown(result, command="honeyjet evaluate --corpus " + str(corpus), machine=machine)
    if args.update_doc:
        from honeyjet.analysis.docs import replace_block

        replace_block(Path(args.update_doc), "evaluation", text)
    elif args.output:
        Path(args.output).write_text(text + "\n", encoding="utf-8")
    else:
        print(text)
    ok = all(result[k].macro_f1 >= 0.95 and result[k].severity_accuracy >= 0.95 for k in ("corpus", "variants") if k in result)
    return 0 if ok else 1


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="honeyjet", description="Network-printer honeypot.")
    parser.add_argument("--version", action="version", version=f"honeyjet {__version__}")
    parser.add_argument("--log-level", default="INFO", choices=["DEBUG", "INFO", "WARNING", "ERROR"])
    sub = parser.add_subparsers(dest="command", required=True)

    def common(p: argparse.ArgumentParser) -> None:
        p.add_argument("--config", type=Path, help="operator TOML file (default: <data-dir>/honeyjet.toml if present)")
        p.add_argument("--data-dir", type=Path, help="state, logs, database and artifacts (default: ./honeyjet-data)")
        p.add_argument("--persona", help="built-in persona id or persona TOML file")

    run = sub.add_parser("run", help="run the sensor in the foreground")
    common(run)
    run.add_argument("--bind", help="address to listen on (default 0.0.0.0)")
    run.add_argument("--port-offset", type=int, help="add N to every standard port (9100 -> 9100+N)")
    run.set_defaults(func=cmd_run)

    init = sub.add_parser("init", help="write an operator config and draw this install's identity")
    common(init)
    init.add_argument("--force", action="store_true", help="rewrite an existing operator config")
    init.set_defaults(func=cmd_init)

    analyze = sub.add_parser("analyze", help="re-run job forensics and the rules over the stored events")
    common(analyze)
    analyze.add_argument("--since", help="only events newer than this (7d, 24h, 30m or an ISO date)")
    analyze.add_argument("--quiet", action="store_true", help="no progress bar")
    analyze.set_defaults(func=cmd_analyze)

    evaluate_p = sub.add_parser("evaluate", help="replay a labelled corpus through a sensor and score the verdicts")
    evaluate_p.add_argument("--corpus", type=Path, help="labelled probes.json")
    evaluate_p.add_argument("--no-variants", action="store_true", help="only the corpus payloads, not their variants")
    evaluate_p.add_argument("-o", "--output", type=Path, help="write the Markdown report here (default: stdout)")
    evaluate_p.add_argument("--update-doc", type=Path, help="replace the evaluation block of this Markdown file (docs/detection.md)")
    evaluate_p.add_argument("--quiet", action="store_true", help="no progress bars")
    evaluate_p.set_defaults(func=cmd_evaluate)

    from honeyjet.console.cli import register as register_console

    register_console(sub)

    from honeyjet.outputs.export import register as register_export

    register_export(sub)

    from honeyjet.fleet.cli import register as register_collector

    register_collector(sub)

    personas = sub.add_parser("personas", help="list built-in personas")
    personas.set_defaults(func=cmd_personas)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=args.log_level, stream=sys.stderr, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        return int(args.func(args))
    except ConfigError as exc:
        print(f"honeyjet: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
