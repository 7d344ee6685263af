"""``honeyjet console``: serve the analyst console; ``honeyjet console adduser NAME``;
``honeyjet report``: a self-contained HTML or Markdown report of a period.

The console is meant for a loopback address (an SSH tunnel or a TLS reverse proxy in
front of it) or for TLS of its own (``--tls-cert``/``--tls-key``). Over plain HTTP on
a loopback address the session cookie goes without ``Secure`` (browsers would not send
it back otherwise) unless ``--behind-tls-proxy`` says the browser talks HTTPS to a
proxy; any other address without TLS is refused. The login rate limit counts the
address the console sees: behind a proxy that is the proxy's (``X-Forwarded-For`` is
not trusted), so the per-name limit is what protects an account there.

``--central`` serves the console of a fleet's central store (sensor picker, sensor
columns, ``/sensors``) over ``collector.database_url``, else ``store.database_url``;
``--database-url`` names the database in either mode.
"""

from __future__ import annotations

import argparse
import asyncio
import getpass
import ipaddress
import logging
import signal
import ssl
import sys
from pathlib import Path
from typing import Any, Sequence

from honeyjet.config import load_settings

DEFAULT_BIND = "127.0.0.1"
DEFAULT_PORT = 8080
EXIT_USAGE = 2
log = logging.getLogger(__name__)


def _settings(args: argparse.Namespace) -> Any:
    over = {"sensor": {"data_dir": str(args.data_dir)}} if getattr(args, "data_dir", None) else {}
    return load_settings(args.config, overrides=over)


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def cmd_adduser(args: argparse.Namespace) -> int:
    from honeyjet.console.auth import UserFileError, add_user, users_path

    settings = _settings(args)
    if args.password_stdin:
        password = sys.stdin.readline().rstrip("\r\n")
    else:
        password = getpass.getpass(f"password for {args.name}: ")
        if getpass.getpass("again: ") != password:
            print("honeyjet: the passwords differ", file=sys.stderr)
            return EXIT_USAGE
    path = users_path(settings.data_dir)
    try:
        replaced = add_user(path, args.name, password)
    except (UserFileError, OSError) as exc:
        print(f"honeyjet: {exc}", file=sys.stderr)
        return EXIT_USAGE
    print(f"{'changed the password of' if replaced else 'added'} console user {args.name} in {path}")
    return 0


class DatabaseUnavailable(Exception):
    """The console's database could not be opened (the message is safe to print: no URL, no password)."""


def database_url(settings: Any, *, central: bool = False, override: str | None = None) -> str:
    """The database the console reads: ``override``, else (``central``) ``collector.database_url``,
    else ``store.database_url`` (the sensor's own SQLite by default)."""
    if override:
        return override
    if central and settings.collector.database_url:
        return settings.collector.database_url
    return settings.database_url


async def serve(settings: Any, *, bind: str, port: int, tls: ssl.SSLContext | None, secure_cookies: bool,
                stop: asyncio.Event | None = None, central: bool = False, url: str | None = None) -> None:
    from aiohttp import web

    from honeyjet.console.app import build_app
    from honeyjet.store.database import Database

    from sqlalchemy.exc import ArgumentError, SQLAlchemyError

    from honeyjet.store.database import SchemaError

    database = Database(database_url(settings, central=central, override=url))
    try:
        await database.open()
    except ArgumentError:
        raise DatabaseUnavailable("not a database URL (sqlite+aiosqlite:///PATH or postgresql+asyncpg://USER@HOST/DB)") from None
    except (SQLAlchemyError, SchemaError, OSError) as exc:
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise DatabaseUnavailable(first) from None
    runner = None
    try:
        app = build_app(settings, database=database, data_dir=settings.data_dir, secure_cookies=secure_cookies, central=central)
        runner = web.AppRunner(app, access_log=log, handle_signals=False)
        await runner.setup()
        site = web.TCPSite(runner, bind, port, ssl_context=tls)
        await site.start()
        scheme = "https" if tls else "http"
        print(f"honeyjet console{' (central)' if central else ''} on {scheme}://{bind if ':' not in bind else '[' + bind + ']'}:{port}/",
              flush=True)
        stop = stop or asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            try:
                loop.add_signal_handler(sig, stop.set)
            except (NotImplementedError, RuntimeError):
                pass
        await stop.wait()
    finally:
        if runner is not None:
            await runner.cleanup()
        await database.close()


def cmd_console(args: argparse.Namespace) -> int:
    if getattr(args, "console_command", None) == "adduser":
        return cmd_adduser(args)
    settings = _settings(args)
    tls = None
    if bool(args.tls_cert) != bool(args.tls_key):
        print("honeyjet: --tls-cert and --tls-key go together", file=sys.stderr)
        return EXIT_USAGE
    if args.tls_cert:
        from honeyjet.tlsutil import server_context

        try:
            tls = server_context(args.tls_cert, args.tls_key)
        except ValueError as exc:
            print(f"honeyjet: --tls-cert/--tls-key: {exc}", file=sys.stderr)
            return EXIT_USAGE
    elif not is_loopback(args.bind):
        print(f"honeyjet: --bind {args.bind}: plain HTTP is only allowed on a loopback address; "
              "give --tls-cert and --tls-key, or bind 127.0.0.1 behind a TLS proxy or an SSH tunnel", file=sys.stderr)
        return EXIT_USAGE
    from honeyjet.console.auth import UserFileError, load_users, users_path

    try:
        if not load_users(users_path(settings.data_dir)):
            print(f"honeyjet: no console users yet; add one with `honeyjet console adduser NAME` "
                  f"(file {users_path(settings.data_dir)})", file=sys.stderr)
    except UserFileError as exc:
        print(f"honeyjet: {exc}", file=sys.stderr)
        return EXIT_USAGE
    try:
        asyncio.run(serve(settings, bind=args.bind, port=args.port, tls=tls, secure_cookies=tls is not None or args.behind_tls_proxy,
                          central=args.central, url=args.database_url))
    except DatabaseUnavailable as exc:
        print(f"honeyjet: console database: {exc}", file=sys.stderr)
        return 1
    except OSError as exc:
        print(f"honeyjet: console on {args.bind}:{args.port}: {exc.strerror or exc}", file=sys.stderr)
        return EXIT_USAGE
    return 0


def cmd_report(args: argparse.Namespace) -> int:
    from datetime import datetime, timezone

    from sqlalchemy.exc import ArgumentError, SQLAlchemyError

    from honeyjet.cli import parse_since
    from honeyjet.config import ConfigError
    from honeyjet.console.report import build_report
    from honeyjet.store.database import SchemaError

    try:
        since = datetime.fromtimestamp(parse_since(args.since), timezone.utc)
    except (ConfigError, ValueError, OverflowError, OSError) as exc:
        print(f"honeyjet: {exc}" if isinstance(exc, ConfigError) else f"honeyjet: --since {args.since!r}: {exc}", file=sys.stderr)
        return EXIT_USAGE
    settings = _settings(args)
    try:
        text = asyncio.run(build_report(settings, since=since, fmt=args.format, sensor=(args.sensor or "").strip(),
                                        url=database_url(settings, central=args.central, override=args.database_url)))
    except ArgumentError:
        print("honeyjet: report: not a database URL (sqlite+aiosqlite:///PATH or postgresql+asyncpg://USER@HOST/DB)", file=sys.stderr)
        return 1
    except (SQLAlchemyError, SchemaError, OSError) as exc:
        print(f"honeyjet: report: {str(exc).splitlines()[0] if str(exc) else type(exc).__name__}", file=sys.stderr)
        return 1
    if args.output is None:
        sys.stdout.write(text)
        return 0
    try:
        args.output.write_text(text, encoding="utf-8")
    except OSError as exc:
        print(f"honeyjet: -o {args.output}: {exc.strerror or exc}", file=sys.stderr)
        return 1
    return 0


def _common(q: argparse.ArgumentParser, default: Any = None) -> None:
    q.add_argument("--config", type=Path, default=default, help="operator TOML file (default: <data-dir>/honeyjet.toml if present)")
    q.add_argument("--data-dir", type=Path, default=default, help="the sensor's data directory (database, artifacts, users file)")


def _central(q: argparse.ArgumentParser, what: str = "read a fleet's central store (collector.database_url)") -> None:
    q.add_argument("--central", action="store_true", help=what)
    q.add_argument("--database-url", metavar="URL",
                   help="the database to read (default: collector.database_url with --central, else store.database_url)")


def register(subparsers: Any) -> argparse.ArgumentParser:
    """Add ``console`` (and ``console adduser``) and ``report`` to a ``honeyjet`` argparse sub-parser set."""
    from honeyjet.console.report import FORMATS

    report = subparsers.add_parser("report", help="write an HTML or Markdown report of a period (stdout by default)")
    _common(report)
    report.add_argument("--since", default="7d", help="start of the period: 7d, 24h, 30m or an ISO date (default 7d)")
    report.add_argument("--format", choices=FORMATS, default="html", help="html (self-contained, no scripts) or md")
    report.add_argument("-o", "--output", type=Path, help="write the report to this file (default: stdout)")
    _central(report)
    report.add_argument("--sensor", help="only this sensor's sessions, jobs and verdicts (a fleet's central store)")
    report.set_defaults(func=cmd_report)

    p = subparsers.add_parser("console", help="serve the analyst console (web UI); `console adduser NAME` adds a user")
    _common(p)
    p.add_argument("--bind", default=DEFAULT_BIND, help=f"address to listen on (default {DEFAULT_BIND})")
    p.add_argument("--port", type=int, default=DEFAULT_PORT, help=f"port (default {DEFAULT_PORT})")
    p.add_argument("--tls-cert", type=Path, help="PEM certificate chain: serve HTTPS (required off loopback)")
    p.add_argument("--tls-key", type=Path, help="PEM private key for --tls-cert")
    p.add_argument("--behind-tls-proxy", action="store_true",
                   help="bound to loopback behind an HTTPS reverse proxy: keep the Secure cookie flag")
    _central(p, "a fleet's console over the central store (collector.database_url): sensor filter, sensor columns, /sensors")
    sub = p.add_subparsers(dest="console_command")
    add = sub.add_parser("adduser", help="add a console user or change its password (file mode 0600)")
    _common(add, argparse.SUPPRESS)  # given before or after `adduser`
    add.add_argument("name", help="user name: letters, digits, '.', '_' or '-'")
    add.add_argument("--password-stdin", action="store_true", help="read the password from the first line of stdin")
    p.set_defaults(func=cmd_console)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m honeyjet.console …`` = ``honeyjet console …``."""
    from honeyjet.cli import main as honeyjet_main

    return honeyjet_main(["console", *(sys.argv[1:] if argv is None else argv)])
