"""Builds the sensor from settings and runs it: stores, device, event sinks, listeners.

One asyncio loop (uvloop when installed) serves every port. Start-up problems become
:class:`StartupError` with one line naming the path or port; shutdown is orderly:
listeners close, sessions end with ``session.closed``, sinks drain, state is saved.
"""

from __future__ import annotations

import asyncio
import errno
import gc
import importlib
import logging
import os
import signal
import socket
import time
from pathlib import Path
from typing import Any

from honeyjet import __version__
from honeyjet.config import Settings
from honeyjet.events import EventBus, sensor_identity
from honeyjet.fsutil import ensure_writable_dir
from honeyjet.persona.device import Device
from honeyjet.persona.model import PersonaError
from honeyjet.privileges import PrivilegeError, drop_privileges
from honeyjet.services.base import ServiceContext
from honeyjet.session import ConnectionLimiter, Counters
from honeyjet.store.artifacts import ArtifactStore

log = logging.getLogger(__name__)

STATE_SAVE_INTERVAL = 1.0
# the cyclic garbage collector, once started: a young collection every 20,000 container
# allocations (the default, 700, ran one every few connections: about a tenth of the
# loop's CPU per probe connection), the older generations rarely (sessions make no
# reference cycles; refcounting frees them)
GC_THRESHOLDS = (20_000, 50, 100)

#: (config section, transport, module in honeyjet.services exposing ``factory(ctx)``)
SERVICES = [
    ("pjl", "tcp", "jetdirect"),
    ("http", "tcp", "ews"),
    ("ipp", "tcp", "ipp"),
    ("lpd", "tcp", "lpd"),
    ("snmp", "udp", "snmp"),
    ("browse", "udp", "browse"),
]


def free_port_offset(host: str = "127.0.0.1", low: int = 10000, high: int = 22000) -> int:
    """A port offset at which every service's standard port is free on ``host`` (tests,
    benchmarks, evaluation). Kept below the ephemeral range so client sockets cannot take them."""
    import random

    from honeyjet.config import packaged_defaults

    defaults = packaged_defaults()
    ports = [(defaults[name]["port"], transport) for name, transport, _ in SERVICES]
    rng = random.Random()
    for _ in range(500):
        offset = rng.randrange(low, high)
        if all(_port_free(host, port + offset, transport) for port, transport in ports):
            return offset
    raise RuntimeError("no free port offset found")


def _port_free(host: str, port: int, transport: str) -> bool:
    kind = socket.SOCK_DGRAM if transport == "udp" else socket.SOCK_STREAM
    with socket.socket(socket.AF_INET, kind) as s:
        try:
            s.bind((host, port))
        except OSError:
            return False
    return True


class StartupError(Exception):
    """The sensor cannot start; the message is one line for the operator."""


def build_analyzer(st: Settings, bus: EventBus, artifacts: ArtifactStore | None) -> Any:
    """The analysis sink from settings (rules, optional forensics pool); StartupError on bad rules."""
    from honeyjet.analysis.engine import Analyzer
    from honeyjet.analysis.rules import RuleError, RuleSet

    an = st.analysis
    try:
        rules = RuleSet.load([an.rules_dir] if an.rules_dir else [])
    except RuleError as exc:
        raise StartupError(f"error: analysis rules: {exc}") from None
    pool = None
    if an.forensics and artifacts is not None:
        try:
            from honeyjet.analysis.forensics import ForensicsPool, Limits
        except ImportError as exc:  # a broken install: classify without forensics, say so
            log.warning("job forensics unavailable (%s); verdicts use what the protocols saw", exc)
        else:
            limits = Limits(gs_timeout=min(an.render_timeout, an.forensics_timeout / 2),
                            gs_cpu=max(1, int(min(an.render_timeout, an.forensics_timeout / 2))),
                            phone_regions=tuple(r.upper() for r in an.phone_regions))
            pool = ForensicsPool(max_workers=an.forensics_workers, timeout=an.forensics_timeout,
                                 memory_mb=an.forensics_memory_mb, limits=limits)
    return Analyzer(bus, rules, artifacts=artifacts, forensics=pool, window=an.source_window,
                    max_sources=an.max_sources, campaign_distance=an.campaign_distance)


class ArtifactBlobs:
    """The virtual file system's blob store, backed by the artifact store."""

    def __init__(self, store: ArtifactStore, max_bytes: int):
        self.store = store
        self.max_bytes = max_bytes

    def put(self, data: bytes) -> str | None:
        info = self.store.put(data)
        return None if info.truncated or info.path is None else info.shasum

    def get(self, shasum: str) -> bytes | None:
        return self.store.read(shasum)


def raise_open_files(sessions_total: int) -> int:
    """Raise the soft open-file limit to the hard one (containers often start at 1024); returns it.

    Each session holds one descriptor; the stores, forensics workers and outputs need some more.
    A hard limit below that is logged, not fatal: past it, connections are refused by the kernel.
    """
    import resource

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = hard if hard != resource.RLIM_INFINITY else max(soft, sessions_total + 1024)
    if soft < want:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))
            soft = want
        except (ValueError, OSError) as exc:
            log.warning("cannot raise the open-file limit from %d to %d: %s", soft, want, exc)
    if soft != resource.RLIM_INFINITY and soft < sessions_total + 256:
        log.warning("open-file limit %d is below limits.sessions_total (%d) + 256: raise it (ulimit -n, LimitNOFILE=)",
                    soft, sessions_total)
    return soft


def bind_socket(host: str, port: int, transport: str) -> socket.socket:
    """A bound (and for TCP listening) non-blocking socket for ``host:port``."""
    kind = socket.SOCK_DGRAM if transport == "udp" else socket.SOCK_STREAM
    family, _, _, _, addr = socket.getaddrinfo(host, port, type=kind, flags=socket.AI_PASSIVE)[0]
    sock = socket.socket(family, kind)
    try:
        if kind == socket.SOCK_STREAM:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(addr)
        if kind == socket.SOCK_STREAM:
            sock.listen(1024)
        sock.setblocking(False)
    except BaseException:
        sock.close()
        raise
    return sock


def _close_all(sockets: list) -> None:
    for entry in sockets:
        entry[-1].close()


def data_paths(data_dir: Path) -> dict[str, Path]:
    return {
        "state": data_dir / "state",
        "log": data_dir / "log",
        "artifacts": data_dir / "artifacts",
        "json_log": data_dir / "log" / "honeyjet.json",
    }


class Sensor:
    def __init__(self, settings: Settings):
        self.settings = settings
        self.counters = Counters()
        self.bus = EventBus(settings.sensor_name, strict=settings.sensor.strict_events)
        self.servers: list[tuple[str, asyncio.AbstractServer]] = []
        self.endpoints: list[asyncio.BaseTransport] = []
        self.skipped: list[str] = []  # services without the privilege to bind their port
        self.listeners: list[str] = []
        self.ctx: ServiceContext | None = None
        self.device: Device | None = None
        self.artifacts: ArtifactStore | None = None
        self.database: Any = None
        self.db_sink: Any = None  # the DatabaseSink (queue depth, drops)
        self.forwarder: Any = None  # store-and-forward to a collector ([forward])
        self.json_sink: Any = None
        self.analyzer: Any = None
        self._console_sock: socket.socket | None = None
        self._console_runner: Any = None
        self.started = 0.0
        self._stop = asyncio.Event()
        self._saver: asyncio.Task | None = None

    # -- start ------------------------------------------------------------------------------
    def _prepare_dirs(self) -> dict[str, Path]:
        data_dir = self.settings.data_dir
        paths = data_paths(data_dir)
        for name in ("state", "log", "artifacts"):
            try:
                ensure_writable_dir(paths[name])
            except OSError as exc:
                raise StartupError(f"error: data directory {paths[name]} is not writable: {exc.strerror or exc}") from None
        return paths

    async def start(self) -> None:
        """Bind every port (as root if need be), drop privileges, open stores, then serve.

        Ports are bound before anything is written, so a busy port fails fast; nothing
        is served until the stores and sinks are ready.
        """
        st = self.settings
        paths = self._prepare_dirs()
        raise_open_files(st.limits.sessions_total)
        sockets = self._bind()
        try:
            self._console_sock = self._bind_console()
        except StartupError:
            _close_all(sockets)
            raise
        try:
            # open files and import code while still privileged (after the switch the
            # interpreter's own files may be out of reach), then drop, then serve
            await self._open(paths)
            factories = [importlib.import_module(f"honeyjet.services.{module}") for _, _, module, _ in sockets]
            try:
                drop_privileges(st.sensor.user, st.data_dir)
            except PrivilegeError as exc:
                raise StartupError(str(exc)) from None
            await self._serve(sockets, factories)
            await self._serve_console()
        except StartupError:
            _close_all(sockets)
            if self._console_sock is not None:
                self._console_sock.close()
            await self._close_servers()
            await self.bus.stop()
            raise
        self.started = time.time()
        assert self.device is not None
        self.device.state.save()
        self._saver = asyncio.create_task(self._save_state_loop())
        self.bus.emit(
            "honeyjet.sensor.start",
            f"honeyjet {__version__} listening as {self.device.model} ({', '.join(self.listeners)})",
            sensor_identity(),
            {
                "version": __version__,
                "persona": self.device.persona.id,
                "listeners": list(self.listeners),
                "unavailable": list(self.skipped),
            },
        )

    async def _open(self, paths: dict[str, Path]) -> None:
        st = self.settings
        self.artifacts = ArtifactStore(
            paths["artifacts"], max_object_bytes=st.limits.job_bytes, quota_bytes=st.limits.disk_quota, fsync=st.store.fsync
        )
        try:
            self.device = Device.open(st.sensor.persona, paths["state"], ArtifactBlobs(self.artifacts, st.limits.job_bytes))
        except PersonaError as exc:
            raise StartupError(str(exc)) from None
        except (ValueError, OSError) as exc:  # corrupt or unreadable identity/state
            raise StartupError(str(exc)) from None
        limiter = ConnectionLimiter(
            self.bus, self.counters, total=st.limits.sessions_total, per_source=st.limits.sessions_per_source
        )
        self.ctx = ServiceContext(st, self.bus, self.device, self.artifacts, self.counters, limiter)
        await self._start_sinks(paths)

    async def _start_sinks(self, paths: dict[str, Path]) -> None:
        st = self.settings
        from honeyjet.store.jsonlog import JsonLinesSink, dumps_line

        # each event is serialised once, for the JSON log and the database's data column
        self.bus.encoder = dumps_line
        if st.store.json_log:
            self.json_sink = JsonLinesSink(paths["json_log"])
            self.bus.encoder = self.json_sink.encode
            self.bus.add_sink(self.json_sink)
        if st.store.database:
            from honeyjet.store.database import Database, DatabaseSink

            self.database = Database(st.database_url)
            try:
                await self.database.open()
            except Exception as exc:
                raise StartupError(f"error: cannot open database {st.database_url}: {exc}") from None
            self.db_sink = DatabaseSink(self.database)
            self.bus.add_sink(self.db_sink)
        from honeyjet.outputs import build_outputs

        try:
            for sink in build_outputs(st, self):
                self.bus.add_sink(sink)
        except ValueError as exc:  # an output's settings that validation alone cannot check
            raise StartupError(f"error: {exc}") from None
        if st.analysis.enabled:
            self.analyzer = build_analyzer(st, self.bus, self.artifacts)
            self.bus.add_sink(self.analyzer)  # last: it sees each event after the stores have it
        if st.forward.enabled:
            self.forwarder = self._build_forwarder()
        await self.bus.start()
        if self.forwarder is not None:
            await self.forwarder.start()

    def _build_forwarder(self) -> Any:
        from sqlalchemy.engine import make_url

        from honeyjet.store.forwarder import Forwarder, ForwardError

        st = self.settings
        url = make_url(st.database_url)
        if not st.store.database or url.get_backend_name() != "sqlite" or not url.database:
            raise StartupError("error: forward.enabled needs the embedded SQLite database (store.database = true, "
                               "store.database_url empty or sqlite): it is the spool")
        try:
            return Forwarder(st, Path(url.database), self.artifacts)
        except ForwardError as exc:
            raise StartupError(f"error: {exc}") from None

    def _bind(self) -> list[tuple[str, str, str, socket.socket]]:
        """Bound sockets for every enabled service: (name, transport, module, socket)."""
        st = self.settings
        bound: list[tuple[str, str, str, socket.socket]] = []
        for name, transport, module in SERVICES:
            svc = getattr(st, name)
            if not svc.enabled:
                continue
            port = st.listen_port(svc)
            if not 0 < port < 65536:
                _close_all(bound)
                raise StartupError(f"error: {name}.port {svc.port} + sensor.port_offset {st.sensor.port_offset} = {port} is not a valid port")
            try:
                bound.append((name, transport, module, bind_socket(st.sensor.bind, port, transport)))
            except PermissionError:
                if port < 1024 and os.geteuid() != 0:
                    # not allowed to be the whole printer: serve what we may, say so loudly
                    log.warning(
                        "%s not started: port %d/%s needs root or CAP_NET_BIND_SERVICE "
                        "(or run with --port-offset and redirect the port)", name, port, transport
                    )
                    self.skipped.append(f"{name}:{transport}:{port}")
                    continue
                _close_all(bound)
                raise StartupError(f"error: cannot listen on {st.sensor.bind}:{port}/{transport} for {name}: permission denied") from None
            except OSError as exc:
                _close_all(bound)
                reason = {
                    errno.EADDRINUSE: "address already in use",
                    errno.EACCES: "permission denied (ports below 1024 need root or CAP_NET_BIND_SERVICE; see --port-offset)",
                    errno.EADDRNOTAVAIL: "address not available on this host",
                }.get(exc.errno or 0, exc.strerror or str(exc))
                raise StartupError(f"error: cannot listen on {st.sensor.bind}:{port}/{transport} for {name}: {reason}") from None
            except socket.gaierror as exc:
                _close_all(bound)
                raise StartupError(f"error: sensor.bind = {st.sensor.bind!r}: {exc.strerror}") from None
        return bound

    async def _serve(self, sockets: list[tuple[str, str, str, socket.socket]], modules: list) -> None:
        ctx = self.ctx
        assert ctx is not None
        loop = asyncio.get_running_loop()
        for (name, transport, _, sock), module in zip(sockets, modules):
            try:
                factory = module.factory(ctx)
            except PersonaError as exc:  # e.g. the persona has no section for this service
                raise StartupError(f"{exc} (service {name}; disable it with {name}.enabled = false)") from None
            addr = sock.getsockname()
            if transport == "udp":
                endpoint, _ = await loop.create_datagram_endpoint(factory, sock=sock)
                self.endpoints.append(endpoint)
            else:
                server = await loop.create_server(factory, sock=sock, backlog=1024)
                self.servers.append((name, server))
            self.listeners.append(f"{name}:{transport}:{addr[0]}:{addr[1]}")

    def _bind_console(self) -> socket.socket | None:
        """The console's socket, bound with the others (before privileges are dropped)."""
        cs = self.settings.console
        if not cs.enabled:
            return None
        from honeyjet.console.cli import is_loopback
        if not self.settings.store.database:
            raise StartupError("error: console.enabled needs store.database = true (the console reads the database)")
        if bool(cs.tls_cert) != bool(cs.tls_key):
            raise StartupError("error: console.tls_cert and console.tls_key go together")
        if not cs.tls_cert and not is_loopback(cs.bind):
            raise StartupError(f"error: console.bind = {cs.bind!r}: plain HTTP only on a loopback address; "
                               "set console.tls_cert and console.tls_key")
        port = cs.port + self.settings.sensor.port_offset
        if not 0 < port < 65536:
            raise StartupError(f"error: console.port {cs.port} + sensor.port_offset = {port} is not a valid port")
        try:
            return bind_socket(cs.bind, port, "tcp")
        except OSError as exc:
            raise StartupError(f"error: cannot listen on {cs.bind}:{port}/tcp for console.port: "
                               f"{exc.strerror or exc}") from None

    async def _serve_console(self) -> None:
        sock = self._console_sock
        if sock is None:
            return
        cs = self.settings.console

        from aiohttp import web

        from honeyjet.console.app import build_app

        tls = None
        if cs.tls_cert:
            from honeyjet.tlsutil import server_context

            try:
                tls = server_context(cs.tls_cert, cs.tls_key)
            except ValueError as exc:
                raise StartupError(f"error: console.tls_cert/tls_key: {exc}") from None
        app = build_app(self.settings, database=self.database, data_dir=self.settings.data_dir,
                        secure_cookies=tls is not None or cs.behind_tls_proxy)
        self._console_runner = web.AppRunner(app, handle_signals=False, access_log=None)
        await self._console_runner.setup()
        await web.SockSite(self._console_runner, sock, ssl_context=tls).start()
        addr = sock.getsockname()
        self.listeners.append(f"console:tcp:{addr[0]}:{addr[1]}")

    async def _save_state_loop(self) -> None:
        assert self.device is not None
        while True:
            await asyncio.sleep(STATE_SAVE_INTERVAL)
            try:
                self.device.state.save()
            except OSError as exc:
                log.error("cannot save device state: %s", exc)

    # -- stop -------------------------------------------------------------------------------
    async def _close_servers(self) -> None:
        for endpoint in self.endpoints:
            endpoint.close()
        if self.endpoints:
            await asyncio.sleep(0)  # let datagram protocols run connection_lost (close pseudo-sessions)
        self.endpoints.clear()
        for _, server in self.servers:
            server.close()
        for _, server in self.servers:
            await server.wait_closed()
        self.servers.clear()

    async def stop(self) -> None:
        for _, server in self.servers:
            server.close()
        if self.ctx is not None:
            for sess in list(self.ctx.sessions):
                sess.abort("shutdown")
            # give connection_lost callbacks a chance to run
            for _ in range(50):
                if not self.ctx.sessions:
                    break
                await asyncio.sleep(0.01)
        await self._close_servers()
        if self._console_runner is not None:
            await self._console_runner.cleanup()
            self._console_runner = None
        if self._saver is not None:
            self._saver.cancel()
        if self.device is not None:
            try:
                self.device.state.save()
            except OSError as exc:
                log.error("cannot save device state: %s", exc)
        self.bus.emit(
            "honeyjet.sensor.stop",
            "honeyjet stopping",
            sensor_identity(),
            {"uptime_s": round(time.time() - self.started, 3) if self.started else 0, "counters": dict(self.counters)},
        )
        await self.bus.stop()  # the database sink drains, then closes the database
        if self.forwarder is not None:
            await self.forwarder.stop()  # a last bounded push; the cursor keeps the rest for next time

    def request_stop(self) -> None:
        self._stop.set()

    async def run(self) -> None:
        """Start, serve until SIGINT/SIGTERM, stop."""
        await self.start()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, self.request_stop)
        if self.json_sink is not None:
            loop.add_signal_handler(signal.SIGHUP, self.json_sink.reopen)
        log.info("listening: %s", ", ".join(self.listeners))
        # what start-up built (persona, modules, settings) lives as long as the process:
        # the collector need not walk it again; then fewer, larger young collections
        gc.collect()
        gc.freeze()
        thresholds = gc.get_threshold()
        gc.set_threshold(*GC_THRESHOLDS)
        try:
            await self._stop.wait()
        finally:
            gc.set_threshold(*thresholds)
            gc.unfreeze()
            log.info("stopping")
            await self.stop()


def run_sensor(settings: Settings) -> None:
    """Run in the foreground on one loop (uvloop if installed)."""
    try:
        import uvloop  # type: ignore[import-not-found]
    except ImportError:
        asyncio.run(Sensor(settings).run())
    else:
        uvloop.run(Sensor(settings).run())
