"""``honeyjet collector``: serve the fleet ingest API; ``honeyjet collector token add|revoke|list``."""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
import sys
from pathlib import Path
from typing import Any

from honeyjet.config import load_settings

EXIT_USAGE = 2
log = logging.getLogger(__name__)


def _settings(args: argparse.Namespace) -> Any:
    over: dict[str, dict[str, Any]] = {}
    if getattr(args, "data_dir", None):
        over["sensor"] = {"data_dir": str(args.data_dir)}
    return load_settings(args.config, overrides=over)


async def _tokens(settings: Any, url: str, action: str, name: str | None) -> int:
    from honeyjet.fleet.collector import TokenBook
    from honeyjet.store.database import Database

    db = Database(url)
    await db.open()
    try:
        book = TokenBook(db)
        if action == "add":
            assert name is not None
            token = await book.add(name)
            print(token)
            print(f"token for sensor {name!r} (shown once; put it in that sensor's forward.token_file)", file=sys.stderr)
        elif action == "revoke":
            assert name is not None
            if not await book.revoke(name):
                print(f"honeyjet: no active token for sensor {name!r}", file=sys.stderr)
                return EXIT_USAGE
            print(f"revoked the token of sensor {name!r}")
        else:
            for row in await book.rows():
                state = f"revoked {row['revoked']:%Y-%m-%d %H:%M}" if row["revoked"] else "active"
                seen = f"{row['last_seen']:%Y-%m-%d %H:%M:%S}" if row["last_seen"] else "never"
                print(f"{row['name']:32} {state:24} last seen {seen:20} events {row['events']}")
    finally:
        await db.close()
    return 0


def cmd_collector(args: argparse.Namespace) -> int:
    from honeyjet.console.cli import database_url, is_loopback
    from honeyjet.store.database import SchemaError

    settings = _settings(args)
    url = database_url(settings, central=True, override=args.database_url)
    if getattr(args, "collector_command", None) == "token":
        if args.action != "list" and not args.name:
            print(f"honeyjet: collector token {args.action} NAME: the sensor's name is missing", file=sys.stderr)
            return EXIT_USAGE
        try:
            return asyncio.run(_tokens(settings, url, args.action, args.name))
        except ValueError as exc:
            print(f"honeyjet: {exc}", file=sys.stderr)
            return EXIT_USAGE
        except (OSError, SchemaError) as exc:
            print(f"honeyjet: cannot open database {url}: {exc}", file=sys.stderr)
            return EXIT_USAGE
    cs = settings.collector
    bind = args.bind or cs.bind
    port = cs.port if args.port is None else args.port
    cert, key = args.tls_cert or cs.tls_cert, args.tls_key or cs.tls_key
    tls = None
    if bool(cert) != bool(key):
        print("honeyjet: collector.tls_cert and collector.tls_key go together", file=sys.stderr)
        return EXIT_USAGE
    if cert:
        from honeyjet.tlsutil import server_context

        try:
            tls = server_context(cert, key)
        except ValueError as exc:
            print(f"honeyjet: collector.tls_cert/tls_key: {exc}", file=sys.stderr)
            return EXIT_USAGE
    elif not is_loopback(bind):
        print(f"honeyjet: collector.bind = {bind!r}: plain HTTP only on a loopback address (tokens travel in it); "
              "give --tls-cert and --tls-key", file=sys.stderr)
        return EXIT_USAGE
    from honeyjet.fleet.collector import serve

    async def main() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)

        def ready(bound: int) -> None:
            print(f"honeyjet collector on {'https' if tls else 'http'}://{bind}:{bound}/ -> {url.split('@')[-1]}", flush=True)

        await serve(settings, database_url=url, data_dir=settings.data_dir, bind=bind, port=port, tls=tls, stop=stop, ready=ready)

    try:
        asyncio.run(main())
    except OSError as exc:
        print(f"honeyjet: collector on {bind}:{port}: {exc.strerror or exc}", file=sys.stderr)
        return EXIT_USAGE
    except SchemaError as exc:
        print(f"honeyjet: database {url.split('@')[-1]}: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except ValueError as exc:  # e.g. [alerts] settings that cannot work
        print(f"honeyjet: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    return 0


def register(subparsers: Any) -> argparse.ArgumentParser:
    p = subparsers.add_parser("collector", help="serve a fleet's ingest API (sensors forward to it); `collector token …` manages sensor tokens")
    p.add_argument("--config", type=Path, help="operator TOML file (default: <data-dir>/honeyjet.toml if present)")
    p.add_argument("--data-dir", type=Path, help="where received job files are kept (artifacts/), and the config")
    p.add_argument("--database-url", help="the central database (default: collector.database_url, else store.database_url)")
    p.add_argument("--bind", help="address to listen on (default collector.bind, 127.0.0.1)")
    p.add_argument("--port", type=int, help="port (default collector.port, 8443)")
    p.add_argument("--tls-cert", help="PEM certificate chain: serve HTTPS (required off loopback)")
    p.add_argument("--tls-key", help="PEM private key for --tls-cert")
    p.set_defaults(func=cmd_collector)
    sub = p.add_subparsers(dest="collector_command")
    tok = sub.add_parser("token", help="add, revoke or list sensor tokens")
    tok.add_argument("action", choices=["add", "revoke", "list"])
    tok.add_argument("name", nargs="?", help="the sensor's name (its sensor.name)")
    # also accepted after `token` (SUPPRESS: an absent option keeps the value given before `token`)
    tok.add_argument("--config", type=Path, default=argparse.SUPPRESS, help=argparse.SUPPRESS)
    tok.add_argument("--data-dir", type=Path, default=argparse.SUPPRESS, help=argparse.SUPPRESS)
    tok.add_argument("--database-url", default=argparse.SUPPRESS, help="the central database")
    tok.set_defaults(func=cmd_collector)
    return p
