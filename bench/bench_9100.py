#!/usr/bin/env python3
"""Benchmark of honeyjet's TCP 9100 (PJL) service against a bare asyncio floor.

Run it with the venv that has honeyjet installed::

    /work/venv/bin/python bench/bench_9100.py            # full run (about 3-5 minutes)
    /work/venv/bin/python bench/bench_9100.py --quick    # smoke run (under a minute)
    /work/venv/bin/python bench/bench_9100.py --json results.json

What it measures (see bench/README.md for the details and the targets):

1. ``probe``: INFO ID probe connections per second and p50/p99 latency at each
   concurrency C, against honeyjet (full logging: JSON log, SQLite, artifacts) and,
   interleaved in the same run, against a bare asyncio server that sends the same reply
   bytes (the floor); ratio = honeyjet conn/s / bare conn/s. The floor runs twice: on the
   sensor's loop (uvloop when installed; the stricter floor) and on the standard library's
   asyncio loop; both ratios are reported.
2. ``idle``: a fresh sensor holds N connections that send nothing; its RSS before and
   while holding them; a probe on a fresh connection is still answered.
3. ``job``: a fresh sensor receives one PCL job of 1 GiB on one connection; throughput
   from the first byte until the sensor closes after the EOF (the job is stored and
   hashed by then), its peak RSS (VmHWM) before and after, and the stored artifact
   checked against the ``honeyjet.job.captured`` event and the client's sha256.

Everything is bounded in time (a watchdog alarm ends the run), every process it starts
is killed at the end (and gets PR_SET_PDEATHSIG), and its temp dirs under /tmp are
removed. Only the standard library is used, plus uvloop when importable (the sensor uses
uvloop when it is installed; the first floor and the clients use the same loop, the second
floor the standard asyncio loop).

The same file is also the helper processes (``_child bare|load|idle|job``).
"""

from __future__ import annotations

import argparse
import asyncio
import ctypes
import errno
import datetime as _dt
import hashlib
import json
import math
import os
import platform
import resource
import select
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

UEL = b"\x1b%-12345X"
PROBE = UEL + b"@PJL INFO ID\r\n" + UEL + b"\r\n"
EXPECTED_REPLY = b'@PJL INFO ID\r\n"HP LaserJet 4250"\r\n\x0c'
MB = 1_000_000
MiB = 1 << 20
GiB = 1 << 30
CLK_TCK = os.sysconf("SC_CLK_TCK")
PAGE = os.sysconf("SC_PAGE_SIZE")

TARGET_RATIO = 0.7
TARGET_IDLE_CONNS = 10_000
TARGET_IDLE_RSS = 200 * MB
TARGET_JOB_MBPS = 100.0
# "constant memory" for the job: the peak RSS grows by at most this much during the job,
# and the RSS of the second half of the job is not above the first half's by more than
# JOB_TREND_SLACK (a leak proportional to the job size would show as a rising trend).
JOB_PEAK_GROWTH_MAX = 64 * MiB
JOB_TREND_SLACK = 16 * MiB


# --------------------------------------------------------------------------------------
# small process helpers (used by the orchestrator and the children)
# --------------------------------------------------------------------------------------


def raise_nofile() -> int:
    """RLIMIT_NOFILE soft -> hard; returns the new soft limit."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY:
        hard = 1 << 20
    if soft < hard:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
            soft = hard
        except (ValueError, OSError):
            pass
    return soft


def uvloop_module():
    if os.environ.get("BENCH_LOOP") == "asyncio":
        return None
    try:
        import uvloop  # type: ignore[import-not-found]
    except ImportError:
        return None
    return uvloop


def run_loop(coro):
    uv = uvloop_module()
    if uv is not None:
        return uv.run(coro)
    return asyncio.run(coro)


_libc = None


def _child_setup(cpus: set[int] | None):
    """preexec_fn: die with the parent, raise the fd limit, pin to ``cpus``."""

    def setup() -> None:
        global _libc
        try:
            if _libc is None:
                _libc = ctypes.CDLL(None, use_errno=True)
            _libc.prctl(1, signal.SIGKILL, 0, 0, 0)  # PR_SET_PDEATHSIG
        except Exception:
            pass
        raise_nofile()
        if cpus:
            try:
                os.sched_setaffinity(0, cpus)
            except OSError:
                pass

    return setup


def proc_cpu(pid: int) -> float:
    """utime+stime of a whole process (all threads), seconds."""
    with open(f"/proc/{pid}/stat", "rb") as f:
        data = f.read()
    rest = data[data.rfind(b")") + 2 :].split()
    return (int(rest[11]) + int(rest[12])) / CLK_TCK


def thread_cpu(pid: int) -> dict[str, float]:
    """CPU seconds per thread: 'main' (the event loop) and 'other' (all the others)."""
    out = {"main": 0.0, "other": 0.0}
    try:
        tids = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return out
    for tid in tids:
        try:
            with open(f"/proc/{pid}/task/{tid}/stat", "rb") as f:
                data = f.read()
        except OSError:
            continue
        rest = data[data.rfind(b")") + 2 :].split()
        cpu = (int(rest[11]) + int(rest[12])) / CLK_TCK
        out["main" if int(tid) == pid else "other"] += cpu
    return out


def proc_status(pid: int) -> dict[str, int]:
    """VmRSS, VmHWM (bytes) and Threads of a process."""
    out: dict[str, int] = {}
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            key, _, value = line.partition(":")
            if key in ("VmRSS", "VmHWM"):
                out[key] = int(value.split()[0]) * 1024
            elif key == "Threads":
                out[key] = int(value)
    return out


def machine_cpu() -> dict[str, float]:
    """Machine-wide CPU seconds from /proc/stat: busy (user+nice+system), steal, softirq."""
    with open("/proc/stat") as f:
        v = [int(x) for x in f.readline().split()[1:]]
    v += [0] * (8 - len(v))
    return {"busy": (v[0] + v[1] + v[2]) / CLK_TCK, "softirq": (v[5] + v[4]) / CLK_TCK, "steal": v[7] / CLK_TCK}


def listen_drops() -> int:
    """TcpExt ListenDrops (SYNs/accepts dropped by full listen queues, machine-wide)."""
    try:
        with open("/proc/net/netstat") as f:
            lines = f.read().splitlines()
    except OSError:
        return 0
    for i in range(0, len(lines) - 1, 2):
        if lines[i].startswith("TcpExt:"):
            keys, vals = lines[i].split()[1:], lines[i + 1].split()[1:]
            return int(dict(zip(keys, vals)).get("ListenDrops", 0))
    return 0


def fd_count(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


def percentile(sorted_values: list[float], p: float) -> float | None:
    """Nearest-rank percentile of an ascending list."""
    if not sorted_values:
        return None
    k = max(0, min(len(sorted_values) - 1, math.ceil(p / 100.0 * len(sorted_values)) - 1))
    return sorted_values[k]


def free_port(lo: int = 10000, hi: int = 32000) -> int:
    """A TCP port on 127.0.0.1 that is free now (below the ephemeral range)."""
    import random

    for _ in range(200):
        port = random.randrange(lo, hi)
        s = socket.socket()
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            continue
        finally:
            s.close()
        return port
    raise RuntimeError("no free port found")


def probe_once(port: int, timeout: float = 5.0) -> tuple[bytes, float]:
    """One INFO ID probe on a fresh connection: (reply bytes, seconds connect->EOF)."""
    t0 = time.perf_counter()
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
        s.sendall(PROBE)
        s.shutdown(socket.SHUT_WR)
        chunks = []
        while True:
            d = s.recv(65536)
            if not d:
                break
            chunks.append(d)
    return b"".join(chunks), time.perf_counter() - t0


def reply_ok(data: bytes) -> bool:
    return data.startswith(b"@PJL INFO ID\r\n") and data.endswith(b"\x0c")


# --------------------------------------------------------------------------------------
# child: bare server (the floor)
# --------------------------------------------------------------------------------------


class _BareProto(asyncio.Protocol):
    """The minimal printer: wait for the probe bytes (or EOF), send the reply, close on EOF."""

    __slots__ = ("tr", "buf", "replied")
    reply = EXPECTED_REPLY

    def connection_made(self, transport):
        self.tr = transport
        self.buf = b""
        self.replied = False

    def data_received(self, data):
        if self.replied:
            return
        self.buf += data
        if PROBE in self.buf:
            self.replied = True
            self.buf = b""
            self.tr.write(self.reply)

    def eof_received(self):
        if not self.replied:
            self.replied = True
            self.tr.write(self.reply)
        self.tr.close()  # flushes the reply, then closes
        return True


async def _bare_main(reply: bytes) -> None:
    loop = asyncio.get_running_loop()
    _BareProto.reply = reply
    server = await loop.create_server(_BareProto, "127.0.0.1", 0, reuse_address=True, backlog=1024)
    port = server.sockets[0].getsockname()[1]
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)

    # the parent closing our stdin (it exited) also stops us
    class _Stdin(asyncio.Protocol):
        def connection_lost(self, exc):
            stop.set()

    await loop.connect_read_pipe(_Stdin, sys.stdin)
    sys.stdout.write(json.dumps({"ready": True, "port": port, "uvloop": uvloop_module() is not None}) + "\n")
    sys.stdout.flush()
    await stop.wait()
    server.close()


# --------------------------------------------------------------------------------------
# child: load client
# --------------------------------------------------------------------------------------


# The load clients connect from 16 loopback source addresses, round-robin. From one
# source address the 4-tuples to one server port are ~28k ephemeral ports, each held in
# TIME_WAIT for 60 s by the client (it half-closes first); at >10k conn/s connect()
# then spends most of its time searching for a reusable port (tcp_tw_reuse), which
# made the client, not the server, the bottleneck (~14k conn/s at 99 % client CPU,
# p99 > 150 ms at C=128 against the bare server). Both servers see the same clients.
SOURCE_ADDRS = [f"127.0.0.{i}" for i in range(2, 18)]
IP_BIND_ADDRESS_NO_PORT = getattr(socket, "IP_BIND_ADDRESS_NO_PORT", 24)


def usable_sources() -> list[str]:
    out = []
    for a in SOURCE_ADDRS:
        s = socket.socket()
        try:
            s.setsockopt(socket.IPPROTO_IP, IP_BIND_ADDRESS_NO_PORT, 1)
            s.bind((a, 0))
            out.append(a)
        except OSError:
            pass
        finally:
            s.close()
    return out


def _load_main(port: int, conc: int, start_wall: float, warmup: float, duration: float, timeout: float) -> dict:
    """``conc`` concurrent probe connections in a loop, on one epoll (no event-loop
    framework: the client's own overhead per connection is a few microseconds of Python,
    so what it measures is the server and the kernel).

    Each connection: non-blocking connect, send the probe, shutdown(SHUT_WR), read until
    the server's EOF, close, start the next one. Latency = start of connect -> EOF.
    Connections that complete inside [start+warmup, start+warmup+duration] are counted.
    """
    ep = select.epoll()
    addr = ("127.0.0.1", port)
    sources = usable_sources()
    EPOLLIN, EPOLLOUT = select.EPOLLIN, select.EPOLLOUT
    perf = time.perf_counter
    offset = time.time() - perf()
    t_start = start_wall - offset
    m0 = t_start + warmup
    m1 = m0 + duration
    grace_end = m1 + 3.0
    conns: dict[int, list] = {}  # fd -> [sock, t0, reply bytearray, sent?]
    latencies: list[float] = []
    errors: dict[str, int] = {}
    counts = {"ok_window": 0, "ok_total": 0, "err_window": 0}
    sample_bad = b""
    ru: dict[str, float] = {}

    def mark(name: str) -> None:
        r = resource.getrusage(resource.RUSAGE_SELF)
        ru[name] = r.ru_utime + r.ru_stime
        ru[name + "_wall"] = perf()

    def error(kind: str, now: float) -> None:
        errors[kind] = errors.get(kind, 0) + 1
        if m0 <= now <= m1:
            counts["err_window"] += 1

    def finish(fd: int, s: socket.socket) -> None:
        del conns[fd]
        try:
            ep.unregister(fd)
        except OSError:
            pass
        s.close()

    def send_probe(s: socket.socket) -> None:
        s.send(PROBE)  # 38 bytes into an empty socket buffer: never partial
        s.shutdown(socket.SHUT_WR)

    src_i = [0]

    def start() -> None:
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        s.setblocking(False)
        if sources:
            # spread the 4-tuples over several loopback source addresses (see SOURCE_ADDRS)
            s.setsockopt(socket.IPPROTO_IP, IP_BIND_ADDRESS_NO_PORT, 1)
            src_i[0] = (src_i[0] + 1) % len(sources)
            s.bind((sources[src_i[0]], 0))
        t0 = perf()
        e = s.connect_ex(addr)
        if e not in (0, errno.EINPROGRESS):
            s.close()
            error(errno.errorcode.get(e, str(e)), perf())
            return
        fd = s.fileno()
        try:  # on loopback the handshake is usually done by now
            send_probe(s)
            conns[fd] = [s, t0, bytearray(), True]
            ep.register(fd, EPOLLIN)
        except BlockingIOError:
            conns[fd] = [s, t0, bytearray(), False]
            ep.register(fd, EPOLLOUT)
        except OSError as exc:
            s.close()
            error(type(exc).__name__, perf())

    delay = t_start - perf()
    if delay > 0:
        time.sleep(delay)
    for _ in range(conc):
        start()
    next_timeout_scan = perf() + 0.5
    failed_starts = 0
    while True:
        now = perf()
        if "m0" not in ru and now >= m0:
            mark("m0")
        if "m1" not in ru and now >= m1:
            mark("m1")
        if now >= grace_end or (now >= m1 and not conns):
            break
        if not conns:  # every start failed (e.g. refused): back off a little, retry
            failed_starts += 1
            time.sleep(0.005)
            for _ in range(conc):
                start()
            continue
        events = ep.poll(0.05)
        for fd, ev in events:
            c = conns.get(fd)
            if c is None:
                continue
            s = c[0]
            if not c[3]:
                err = s.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
                if err:
                    finish(fd, s)
                    error(errno.errorcode.get(err, str(err)), perf())
                else:
                    try:
                        send_probe(s)
                    except OSError as exc:
                        finish(fd, s)
                        error(type(exc).__name__, perf())
                    else:
                        c[3] = True
                        ep.modify(fd, EPOLLIN)
                        continue
            else:
                try:
                    while True:
                        d = s.recv(65536)
                        if d:
                            c[2] += d
                            continue
                        t = perf()  # EOF from the server
                        finish(fd, s)
                        if reply_ok(bytes(c[2])):
                            counts["ok_total"] += 1
                            if m0 <= t <= m1:
                                counts["ok_window"] += 1
                                latencies.append(t - c[1])
                        else:
                            error("bad_reply", t)
                            if not sample_bad:
                                sample_bad = bytes(c[2][:200]) or b"<empty>"
                        break
                except BlockingIOError:
                    continue
                except OSError as exc:
                    finish(fd, s)
                    error(type(exc).__name__, perf())
            if perf() < m1:
                start()
        now = perf()
        if now >= next_timeout_scan:
            next_timeout_scan = now + 0.5
            for fd, c in list(conns.items()):
                if now - c[1] > timeout:
                    finish(fd, c[0])
                    error("timeout", now)
                    if now < m1:
                        start()
    unfinished = len(conns)
    for fd, c in list(conns.items()):
        finish(fd, c[0])
    ep.close()
    if "m0" not in ru:
        mark("m0")
    if "m1" not in ru:
        mark("m1")
    return {
        "conc": conc,
        "ok_in_window": counts["ok_window"],
        "ok_total": counts["ok_total"],
        "errors": errors,
        "errors_in_window": counts["err_window"],
        "unfinished": unfinished,
        "latencies": [round(x, 7) for x in latencies],
        "cpu_s": round(ru["m1"] - ru["m0"], 3),
        "wall_s": round(ru["m1_wall"] - ru["m0_wall"], 3),
        "sample_bad_reply": sample_bad.decode("latin-1"),
        "source_addresses": len(sources) or 1,
    }


# --------------------------------------------------------------------------------------
# child: idle connections
# --------------------------------------------------------------------------------------


class _IdleProto(asyncio.Protocol):
    __slots__ = ("st", "tr", "holding")

    def __init__(self, st):
        self.st = st
        self.tr = None
        self.holding = False

    def connection_made(self, transport):
        self.tr = transport

    def data_received(self, data):
        self.st["bytes_received"] += len(data)

    def connection_lost(self, exc):
        if self.holding:
            self.st["lost_while_held"] += 1


async def _idle_main(port: int, count: int, parallel: int, max_hold: float) -> None:
    loop = asyncio.get_running_loop()
    st = {"opened": 0, "errors": 0, "lost_while_held": 0, "bytes_received": 0}
    errors: dict[str, int] = {}
    protos: list[_IdleProto] = []
    sem = asyncio.Semaphore(parallel)

    async def one() -> None:
        async with sem:
            p = _IdleProto(st)
            try:
                await asyncio.wait_for(loop.create_connection(lambda: p, "127.0.0.1", port), 30)
            except (OSError, asyncio.TimeoutError) as exc:
                st["errors"] += 1
                errors[type(exc).__name__] = errors.get(type(exc).__name__, 0) + 1
                return
            p.holding = True
            st["opened"] += 1
            protos.append(p)

    t0 = time.perf_counter()
    await asyncio.gather(*(one() for _ in range(count)))
    opened_s = time.perf_counter() - t0
    sys.stdout.write(json.dumps({"opened": st["opened"], "errors": errors, "open_s": round(opened_s, 3)}) + "\n")
    sys.stdout.flush()
    # hold until the parent says so (a line on stdin, or stdin closing), at most max_hold
    try:
        await asyncio.wait_for(loop.run_in_executor(None, sys.stdin.readline), max_hold)
    except asyncio.TimeoutError:
        pass
    lost = st["lost_while_held"]
    for p in protos:
        p.holding = False
        if p.tr is not None:
            p.tr.close()
    await asyncio.sleep(0.2)
    sys.stdout.write(json.dumps({"closed": len(protos), "lost_while_held": lost, "bytes_received": st["bytes_received"]}) + "\n")
    sys.stdout.flush()


# --------------------------------------------------------------------------------------
# child: the 1 GiB job
# --------------------------------------------------------------------------------------


def pcl_block(size: int = MiB) -> bytes:
    """``size`` bytes of PCL 5 pages, each exactly 4096 bytes and ending in a form feed."""
    page_size = 4096
    head = b"\x1bE\x1b&l0O\x1b&l2A\x1b(10U\x1b(s0p12h10v0s0b3T"
    lines = []
    for i in range(60):
        lines.append(b"\x1b*p150x%dY" % (150 + 50 * i) + b"honeyjet benchmark line %02d: the quick brown fox jumps over the lazy dog" % i)
    body = head + b"\r\n".join(lines)
    body = body[: page_size - 1].ljust(page_size - 1, b" ") + b"\x0c"
    assert len(body) == page_size and b"\x1b*s" not in body and UEL not in body
    reps = size // page_size + 1
    return (body * reps)[:size]


def _job_main(port: int, total: int, cap_s: float) -> dict:
    header = UEL + b"@PJL JOB NAME=\"bench\"\r\n@PJL ENTER LANGUAGE=PCL\r\n"
    footer = UEL + b"@PJL EOJ NAME=\"bench\"\r\n" + UEL
    block = pcl_block(MiB)
    h = hashlib.sha256()
    s = socket.create_connection(("127.0.0.1", port), timeout=cap_s)
    t0 = time.perf_counter()
    deadline = t0 + cap_s
    s.sendall(header)
    sent = 0
    complete = True
    while sent < total:
        chunk = block if total - sent >= len(block) else block[: total - sent]
        s.sendall(chunk)
        h.update(chunk)
        sent += len(chunk)
        if time.perf_counter() > deadline:
            complete = False
            break
    s.sendall(footer)
    t_sent = time.perf_counter()
    s.shutdown(socket.SHUT_WR)
    reply = bytearray()
    eof = False
    s.settimeout(max(1.0, deadline + 60 - time.perf_counter()))
    try:
        while True:
            d = s.recv(65536)
            if not d:
                eof = True
                break
            reply += d
    except socket.timeout:
        pass
    t_end = time.perf_counter()
    s.close()
    r = resource.getrusage(resource.RUSAGE_SELF)
    return {
        "payload_bytes": sent,
        "wire_bytes": len(header) + sent + len(footer),
        "complete": complete,
        "eof": eof,
        "sha256": h.hexdigest(),
        "send_s": round(t_sent - t0, 4),
        "total_s": round(t_end - t0, 4),
        "reply": bytes(reply[:200]).decode("latin-1"),
        "client_cpu_s": round(r.ru_utime + r.ru_stime, 3),
    }


def child_main(argv: list[str]) -> int:
    raise_nofile()
    p = argparse.ArgumentParser(prog="bench_9100.py _child")
    p.add_argument("mode", choices=["bare", "load", "idle", "job"])
    p.add_argument("--port", type=int, default=0)
    p.add_argument("--reply-hex", default="")
    p.add_argument("--conc", type=int, default=1)
    p.add_argument("--start", type=float, default=0.0)
    p.add_argument("--warmup", type=float, default=1.0)
    p.add_argument("--duration", type=float, default=5.0)
    p.add_argument("--timeout", type=float, default=10.0)
    p.add_argument("--count", type=int, default=0)
    p.add_argument("--parallel", type=int, default=256)
    p.add_argument("--max-hold", type=float, default=120.0)
    p.add_argument("--bytes", type=int, default=GiB)
    p.add_argument("--cap", type=float, default=120.0)
    a = p.parse_args(argv)
    if a.mode == "bare":
        run_loop(_bare_main(bytes.fromhex(a.reply_hex) if a.reply_hex else EXPECTED_REPLY))
        return 0
    if a.mode == "load":
        res = _load_main(a.port, a.conc, a.start, a.warmup, a.duration, a.timeout)
    elif a.mode == "idle":
        run_loop(_idle_main(a.port, a.count, a.parallel, a.max_hold))
        return 0
    else:
        res = _job_main(a.port, a.bytes, a.cap)
    sys.stdout.write(json.dumps(res) + "\n")
    sys.stdout.flush()
    return 0


# --------------------------------------------------------------------------------------
# orchestrator
# --------------------------------------------------------------------------------------


# `honeyjet run` with uvloop made unimportable: run_sensor() then uses asyncio.run()
NO_UVLOOP_LAUNCHER = (
    "import sys; sys.modules['uvloop'] = None; "
    "from honeyjet.cli import main; sys.exit(main())"
)


class BenchError(Exception):
    pass


class PortInUse(Exception):
    pass


class Watchdog(Exception):
    pass


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def read_json_line(proc: subprocess.Popen, timeout: float, what: str) -> dict:
    """Next JSON line from a child's stdout, within ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    fd = proc.stdout.fileno()
    buf = getattr(proc, "_bench_buf", b"")
    while b"\n" not in buf:
        left = deadline - time.monotonic()
        if left <= 0:
            raise BenchError(f"{what}: no answer within {timeout:g} s")
        r, _, _ = select.select([fd], [], [], min(left, 0.5))
        if r:
            d = os.read(fd, 1 << 20)
            if not d:
                raise BenchError(f"{what}: exited (status {proc.wait(5)}) without answering")
            buf += d
    line, _, rest = buf.partition(b"\n")
    proc._bench_buf = rest  # type: ignore[attr-defined]
    return json.loads(line)


class Bench:
    def __init__(self, args: argparse.Namespace):
        self.args = args
        self.python = args.python
        self.script = str(Path(__file__).resolve())
        self.children: list[subprocess.Popen] = []
        self.root = Path(tempfile.mkdtemp(prefix="honeyjet-bench-", dir="/tmp"))
        # run as root, the sensor drops to an unprivileged user that must reach its data dir
        os.chmod(self.root, 0o711)
        ncpu = sorted(os.sched_getaffinity(0))
        self.server_cpus: set[int] | None = None
        self.client_cpus: set[int] | None = None
        if args.pin == "split" and len(ncpu) >= 2:
            self.server_cpus = {ncpu[0]}
            self.client_cpus = set(ncpu[1:])
        elif args.pin == "clients" and len(ncpu) >= 2:
            self.client_cpus = {ncpu[-1]}
        self.results: dict[str, Any] = {}
        self.retry_budget = args.retry_budget  # repeated probe runs in the whole benchmark

    # -- processes ---------------------------------------------------------------------
    def spawn(self, cmd: list[str], *, cpus: set[int] | None, env: dict | None = None, stdout=subprocess.PIPE,
              stderr=None, stdin=subprocess.PIPE) -> subprocess.Popen:
        proc = subprocess.Popen(
            cmd, stdin=stdin, stdout=stdout, stderr=stderr, env=env, preexec_fn=_child_setup(cpus), close_fds=True
        )
        self.children.append(proc)
        return proc

    def child(self, mode: str, *extra: str, cpus: set[int] | None, loop: str | None = None) -> subprocess.Popen:
        env = dict(os.environ, BENCH_LOOP=loop or self.args.loop)
        return self.spawn([self.python, self.script, "_child", mode, *extra], cpus=cpus, env=env)

    def kill_all(self) -> None:
        for p in self.children:
            if p.poll() is None:
                try:
                    p.terminate()
                except OSError:
                    pass
        deadline = time.monotonic() + 5
        for p in self.children:
            try:
                p.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
        for p in self.children:
            for f in (p.stdin, p.stdout):
                try:
                    if f:
                        f.close()
                except OSError:
                    pass
        self.children.clear()

    def cleanup(self) -> None:
        self.kill_all()
        shutil.rmtree(self.root, ignore_errors=True)

    # -- the sensor --------------------------------------------------------------------
    def sensor_env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("HONEYJET_")}
        big = str(2 * GiB)
        env.update(
            HONEYJET_SENSOR__NAME="bench",
            HONEYJET_STORE__JSON_LOG="true",
            HONEYJET_STORE__DATABASE="true",
            HONEYJET_LIMITS__SESSIONS_TOTAL="20000",
            HONEYJET_LIMITS__SESSIONS_PER_SOURCE="20000",
            HONEYJET_LIMITS__IDLE_TIMEOUT="600",
            HONEYJET_LIMITS__JOB_BYTES=big,
            HONEYJET_LIMITS__SESSION_BYTES=big,
        )
        for item in self.args.sensor_env:  # experiments, e.g. HONEYJET_STORE__DATABASE=false
            key, _, value = item.partition("=")
            env[key] = value
        return env

    def start_sensor(self, name: str) -> dict[str, Any]:
        """Start a sensor with a fresh data dir; another port offset when a port is taken."""
        for attempt in range(5):
            try:
                return self._start_sensor(name)
            except PortInUse as exc:
                log(f"sensor {name}: {exc}; trying another port offset")
                shutil.rmtree(self.root / name, ignore_errors=True)
        raise BenchError(f"sensor {name}: no free port offset found")

    def _start_sensor(self, name: str) -> dict[str, Any]:
        data = self.root / name
        offset = free_port(19000, 31000) - 9100
        port = 9100 + offset
        errf = open(self.root / f"{name}.stderr", "wb")
        cmd = [self.python, *self.args.python_opt]
        if self.args.loop == "asyncio":  # the sensor's run_sensor() falls back to asyncio.run()
            cmd += ["-c", NO_UVLOOP_LAUNCHER]
        else:
            cmd += ["-m", "honeyjet"]
        cmd += ["run", "--data-dir", str(data), "--bind", "127.0.0.1", "--port-offset", str(offset)]
        proc = self.spawn(cmd, cpus=self.server_cpus, env=self.sensor_env(), stdout=subprocess.DEVNULL, stderr=errf,
                          stdin=subprocess.DEVNULL)
        errf.close()
        t0 = time.monotonic()
        reply = b""
        while True:
            if proc.poll() is not None:
                self.children.remove(proc)
                tail = self.stderr_tail(name)
                if "cannot listen on" in tail and "in use" in tail:
                    raise PortInUse(tail.strip().splitlines()[-1])
                raise BenchError(f"sensor {name} exited with status {proc.returncode}:\n{tail}")
            try:
                reply, _ = probe_once(port, timeout=2)
                if reply_ok(reply):
                    break
            except OSError:
                pass
            if time.monotonic() - t0 > 30:
                tail = self.stderr_tail(name)
                hint = ""
                if "connection_made" in tail and "AssertionError" in tail:
                    hint = ("\nhint: the sensor rejects uvloop's transport (assert isinstance(transport, "
                            "asyncio.Transport)); run with --python-opt=-O (asserts off) or --loop asyncio")
                raise BenchError(f"sensor {name} did not answer a probe within 30 s:\n{tail}{hint}")
            time.sleep(0.1)
        startup = time.monotonic() - t0
        self.quiesce(proc.pid, max_wait=10)
        log(f"sensor {name}: pid {proc.pid}, port {port}, up after {startup:.2f} s")
        return {"name": name, "proc": proc, "pid": proc.pid, "port": port, "data": data, "reply": reply,
                "startup_s": round(startup, 3)}

    def check_alive(self, s: dict[str, Any]) -> None:
        if s["proc"].poll() is not None:
            raise BenchError(f"sensor {s['name']} died (status {s['proc'].returncode}):\n{self.stderr_tail(s['name'])}")

    def stderr_tail(self, name: str, n: int = 2000) -> str:
        try:
            return (self.root / f"{name}.stderr").read_bytes()[-n:].decode("utf-8", "replace")
        except OSError:
            return ""

    def stop_sensor(self, s: dict[str, Any], timeout: float = 60.0) -> dict[str, Any]:
        proc: subprocess.Popen = s["proc"]
        t0 = time.monotonic()
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
                return {"stop_s": round(time.monotonic() - t0, 2), "clean": False, "status": "killed after timeout"}
        return {"stop_s": round(time.monotonic() - t0, 2), "clean": proc.returncode == 0, "status": proc.returncode}

    def quiesce(self, pid: int, max_wait: float, interval: float = 0.5, threshold: float = 0.05) -> float:
        """Wait until ``pid`` uses < threshold of a core over ``interval``; seconds waited."""
        t0 = time.monotonic()
        last = proc_cpu(pid)
        while time.monotonic() - t0 < max_wait:
            time.sleep(interval)
            now = proc_cpu(pid)
            if now - last < threshold * interval:
                break
            last = now
        return time.monotonic() - t0

    # -- phase 1: probes ---------------------------------------------------------------
    def run_load(self, target: str, port: int, server_pid: int, conc: int) -> dict[str, Any]:
        a = self.args
        nclients = max(1, min(a.clients, conc))
        shares = [conc // nclients + (1 if i < conc % nclients else 0) for i in range(nclients)]
        start = time.time() + 0.6  # time for the clients to import and start their loop
        procs = [
            self.child("load", "--port", str(port), "--conc", str(c), "--start", repr(start), "--warmup", str(a.warmup),
                       "--duration", str(a.duration), "--timeout", "10", cpus=self.client_cpus)
            for c in shares
        ]
        m0 = start + a.warmup
        m1 = m0 + a.duration
        time.sleep(max(0.0, m0 - time.time()))
        cpu0, thr0, w0 = proc_cpu(server_pid), thread_cpu(server_pid), time.perf_counter()
        mc0, ld0, ccpu0 = machine_cpu(), listen_drops(), [proc_cpu(p.pid) for p in procs]
        time.sleep(max(0.0, m1 - time.time()))
        cpu1, thr1, w1 = proc_cpu(server_pid), thread_cpu(server_pid), time.perf_counter()
        mc1, ld1, ccpu1 = machine_cpu(), listen_drops(), [proc_cpu(p.pid) for p in procs]
        results = [read_json_line(p, a.duration + a.warmup + 30, f"load client ({target}, C={conc})") for p in procs]
        for p in procs:
            p.wait(10)
            self.children.remove(p)
        drain = self.quiesce(server_pid, max_wait=a.drain_max)
        lat = sorted(x for r in results for x in r["latencies"])
        ok = sum(r["ok_in_window"] for r in results)
        errors: dict[str, int] = {}
        for r in results:
            for k, v in r["errors"].items():
                errors[k] = errors.get(k, 0) + v
        wall = w1 - w0
        server_cpu = (cpu1 - cpu0) / wall
        main_cpu = (thr1["main"] - thr0["main"]) / wall
        other_cpu = (thr1["other"] - thr0["other"]) / wall
        client_cpu = [r["cpu_s"] / r["wall_s"] if r["wall_s"] else 0.0 for r in results]
        # CPU used on this machine during the window by processes that are not ours (others'
        # tests on a shared machine): machine busy time minus the server's and the clients'
        ours = (cpu1 - cpu0) + sum(b - a for a, b in zip(ccpu0, ccpu1))
        foreign = max(0.0, (mc1["busy"] - mc0["busy"]) - ours) / wall
        # a Python server is saturated at ~1 core (the GIL), whichever thread uses it
        if main_cpu >= 0.9 or server_cpu >= 0.9:
            bound = "server"
        elif max(client_cpu) >= 0.9:
            bound = "client"
        else:
            bound = "latency"
        row = {
            "target": target,
            "conc": conc,
            "client_processes": nclients,
            "conn_per_s": round(ok / a.duration, 1),
            "ok": ok,
            "ok_total": sum(r["ok_total"] for r in results),
            "p50_ms": round(percentile(lat, 50) * 1000, 3) if lat else None,
            "p99_ms": round(percentile(lat, 99) * 1000, 3) if lat else None,
            "max_ms": round(lat[-1] * 1000, 3) if lat else None,
            "errors_in_window": sum(r["errors_in_window"] for r in results),
            "errors_total": errors,
            "unfinished": sum(r["unfinished"] for r in results),
            "server_cpu": round(server_cpu, 3),
            "server_loop_thread_cpu": round(main_cpu, 3),
            "server_other_threads_cpu": round(other_cpu, 3),
            "client_cpu": [round(c, 3) for c in client_cpu],
            "bound": bound,
            "drain_s": round(drain, 2),
            "foreign_cpu": round(foreign, 3),
            "steal_cpu": round((mc1["steal"] - mc0["steal"]) / wall, 3),
            "listen_drops": ld1 - ld0,
        }
        bad = [r["sample_bad_reply"] for r in results if r["sample_bad_reply"]]
        if bad:
            row["sample_bad_reply"] = bad[0]
        row["_lat"] = lat
        log(
            f"  {target:8} C={conc:<4} {row['conn_per_s']:>9.1f} conn/s  p50 {row['p50_ms']} ms  p99 {row['p99_ms']} ms  "
            f"err {row['errors_in_window']}  server cpu {server_cpu:.0%} (loop {main_cpu:.0%})  "
            f"client cpu {'/'.join(f'{c:.0%}' for c in client_cpu)}  other procs {foreign:.0%}  drain {drain:.1f}s"
        )
        return row

    def phase_probe(self) -> None:
        a = self.args
        log(f"phase probe: C={a.conc}, {a.warmup:g} s warm-up + {a.duration:g} s measured per run, "
            f"server CPUs {sorted(self.server_cpus) if self.server_cpus else 'any'}, "
            f"client CPUs {sorted(self.client_cpus) if self.client_cpus else 'any'}")
        sensor = self.start_sensor("probe")
        # the floors: "bare" runs on the sensor's loop (uvloop when importable: the stricter floor);
        # "bare-asyncio" on the standard library's loop, measured too when the sensor uses uvloop
        floors: list[tuple[str, subprocess.Popen, int]] = []
        floor_loops: dict[str, str] = {}
        for name, loop in (("bare", None), ("bare-asyncio", "asyncio")):
            if loop is not None and a.loop == "asyncio":
                continue
            proc = self.child("bare", "--reply-hex", sensor["reply"].hex(), cpus=self.server_cpus, loop=loop)
            info = read_json_line(proc, 15, f"floor {name}")
            floor_loops[name] = "uvloop" if info.get("uvloop") else "asyncio"
            breply, _ = probe_once(info["port"])
            if breply != sensor["reply"]:
                raise BenchError(f"the floor's ({name}) reply differs from the sensor's")
            floors.append((name, proc, info["port"]))
        self.results["floor_uvloop"] = floor_loops["bare"] == "uvloop"
        self.results["floor_loops"] = floor_loops
        targets = [(name, port, proc.pid) for name, proc, port in floors] + [("honeyjet", sensor["port"], sensor["pid"])]
        rows: list[dict[str, Any]] = []
        runs: list[dict[str, Any]] = []
        ratios: list[dict[str, Any]] = []
        hw_before = proc_status(sensor["pid"])
        sensor_sessions = 1  # the start-up probe
        for conc in a.conc:
            per: dict[str, list[dict[str, Any]]] = {t[0]: [] for t in targets}
            for rnd in range(a.rounds):  # interleaved: floor(s), honeyjet, floor(s), honeyjet ...
                for target, port, pid in targets:
                    for attempt in range(1 + a.retry_disturbed):
                        if a.wait_quiet:
                            wait_quiet(min(a.wait_quiet, 15.0), quiet=True)
                        r = self.run_load(target, port, pid, conc)
                        if target == "honeyjet":  # every session, repeated runs included
                            sensor_sessions += r["ok_total"]
                        if r["foreign_cpu"] <= DISTURBED:
                            break
                        if attempt >= a.retry_disturbed or self.retry_budget <= 0:
                            break
                        self.retry_budget -= 1
                        log(f"  (other processes used {r['foreign_cpu']:.0%} of a core meanwhile: run repeated)")
                    r["round"] = rnd
                    r["attempts"] = attempt + 1
                    self.check_alive(sensor)
                    per[target].append(r)
            agg = {t: aggregate(per[t]) for t in per}
            rows += [agg[t] for t in per]
            for target_runs in per.values():
                for r in target_runs:
                    r.pop("_lat", None)
                    runs.append(r)
            rh = agg["honeyjet"]
            for name, _proc, _port in floors:
                rb = agg[name]
                ratio = rh["conn_per_s"] / rb["conn_per_s"] if rb["conn_per_s"] else None
                per_round = [h["conn_per_s"] / b["conn_per_s"]
                             for b, h in zip(per[name], per["honeyjet"]) if b["conn_per_s"]]
                ratios.append({
                    "conc": conc,
                    "floor": name,
                    "floor_loop": floor_loops[name],
                    "ratio": round(ratio, 3) if ratio is not None else None,
                    "ratio_per_round": [round(x, 3) for x in per_round],
                    "met": ratio is not None and ratio >= TARGET_RATIO and rh["errors_in_window"] == 0,
                    "floor_bound": rb["bound"],
                })
                log(f"  ratio C={conc} vs {floor_loops[name]} floor: {ratio:.3f} "
                    f"(rounds {', '.join(f'{x:.3f}' for x in per_round)})"
                    if ratio is not None else f"  ratio C={conc} vs {floor_loops[name]} floor: n/a")
        status = proc_status(sensor["pid"])
        for _name, proc, _port in floors:
            proc.terminate()
            proc.wait(5)
            self.children.remove(proc)
        stop = self.stop_sensor(sensor, timeout=a.drain_max + 30)
        logging_check = self.check_logs(sensor["data"], sensor_sessions)
        shutil.rmtree(sensor["data"], ignore_errors=True)
        self.results["probe"] = {
            "reply": sensor["reply"].decode("latin-1"),
            "rows": rows,
            "runs": runs,
            "ratios": ratios,
            "sensor_rss_before": hw_before.get("VmRSS"),
            "sensor_rss_after": status.get("VmRSS"),
            "sensor_hwm_after": status.get("VmHWM"),
            "sensor_stop": stop,
            "logging": logging_check,
        }
        log(f"  sensor stop {stop}; logging check {logging_check}")

    def check_logs(self, data: Path, sessions_expected: int) -> dict[str, Any]:
        """Did full logging keep up? Count session.closed in the JSON log and the database."""
        out: dict[str, Any] = {"sessions_completed_by_clients": sessions_expected}
        jl = data / "log" / "honeyjet.json"
        needle = b'"eventid":"honeyjet.session.closed"'
        lines = closed = 0
        try:
            with open(jl, "rb") as f:
                tail = b""
                while True:
                    chunk = f.read(8 * MiB)
                    if not chunk:
                        break
                    buf = tail + chunk
                    cut = buf.rfind(b"\n") + 1
                    part, tail = buf[:cut], buf[cut:]
                    lines += part.count(b"\n")
                    closed += part.count(needle)
            out["json_lines"] = lines
            out["json_session_closed"] = closed
            out["json_log_bytes"] = jl.stat().st_size
        except OSError as exc:
            out["json_error"] = str(exc)
        db = data / "honeyjet.db"
        try:
            con = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=10)
            try:
                out["db_events"] = con.execute("select count(*) from events").fetchone()[0]
                out["db_session_closed"] = con.execute(
                    "select count(*) from events where eventid = 'honeyjet.session.closed'").fetchone()[0]
            finally:
                con.close()
        except sqlite3.Error as exc:
            out["db_error"] = str(exc)
        return out

    # -- phase 2: idle -----------------------------------------------------------------
    def phase_idle(self) -> None:
        a = self.args
        n = a.idle
        log(f"phase idle: {n} idle connections")
        sensor = self.start_sensor("idle")
        pid = sensor["pid"]
        base = proc_status(pid)
        base_fds = fd_count(pid)
        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        per_proc = max(100, soft - 200)
        nproc = max(2, math.ceil(n / per_proc))
        shares = [n // nproc + (1 if i < n % nproc else 0) for i in range(nproc)]
        t0 = time.monotonic()
        procs = [self.child("idle", "--port", str(sensor["port"]), "--count", str(c), "--parallel", "128",
                            "--max-hold", str(a.idle_hold + 120), cpus=self.client_cpus) for c in shares]
        opened = [read_json_line(p, 90, "idle client") for p in procs]
        n_open = sum(o["opened"] for o in opened)
        errors: dict[str, int] = {}
        for o in opened:
            for k, v in o["errors"].items():
                errors[k] = errors.get(k, 0) + v
        # wait until the sensor has accepted all of them (one fd each)
        accepted_s = None
        while time.monotonic() - t0 < 90:
            if fd_count(pid) - base_fds >= n_open:
                accepted_s = time.monotonic() - t0
                break
            time.sleep(0.2)
        settle = self.quiesce(pid, max_wait=a.drain_max)
        held = proc_status(pid)
        held_fds = fd_count(pid) - base_fds
        # a fresh probe must still be answered while they are held
        try:
            reply, lat = probe_once(sensor["port"], timeout=10)
            probe = {"ok": reply_ok(reply), "latency_ms": round(lat * 1000, 3)}
        except OSError as exc:
            probe = {"ok": False, "error": f"{type(exc).__name__}: {exc}"}
        time.sleep(a.idle_hold)
        self.check_alive(sensor)
        held2 = proc_status(pid)
        held2_fds = fd_count(pid) - base_fds
        t_close = time.monotonic()
        closed = []
        for p in procs:
            p.stdin.write(b"close\n")
            p.stdin.flush()
        for p in procs:
            closed.append(read_json_line(p, 60, "idle client (close)"))
            p.wait(10)
            self.children.remove(p)
        while time.monotonic() - t_close < 60 and fd_count(pid) > base_fds:
            time.sleep(0.2)
        closed_s = time.monotonic() - t_close
        drain = self.quiesce(pid, max_wait=a.drain_max)
        after = proc_status(pid)
        stop = self.stop_sensor(sensor, timeout=a.drain_max + 30)
        shutil.rmtree(sensor["data"], ignore_errors=True)
        rss_held = max(held["VmRSS"], held2["VmRSS"])
        res = {
            "requested": n,
            "client_processes": nproc,
            "opened_by_clients": n_open,
            "client_errors": errors,
            "accepted_by_sensor": held_fds,
            "still_held_after_s": a.idle_hold,
            "still_held": held2_fds,
            "lost_while_held": sum(c["lost_while_held"] for c in closed),
            "all_accepted_after_s": round(accepted_s, 2) if accepted_s is not None else None,
            "settle_s": round(settle, 2),
            "rss_base": base["VmRSS"],
            "rss_held": rss_held,
            "rss_per_conn_bytes": round((rss_held - base["VmRSS"]) / max(1, held_fds)),
            "hwm_held": held2["VmHWM"],
            "rss_after_close": after["VmRSS"],
            "probe_while_held": probe,
            "close_all_s": round(closed_s, 2),
            "drain_after_close_s": round(drain, 2),
            "sensor_stop": stop,
        }
        # linear estimate for 10,000 (only informative when fewer were opened)
        res["rss_estimate_10000"] = round(base["VmRSS"] + res["rss_per_conn_bytes"] * TARGET_IDLE_CONNS)
        if n < TARGET_IDLE_CONNS:
            res["met"] = None  # scaled down (--quick / --idle): no verdict
        else:
            res["met"] = held2_fds >= TARGET_IDLE_CONNS and rss_held < TARGET_IDLE_RSS and probe.get("ok", False)
        self.results["idle"] = res
        log(f"  held {held2_fds}/{n}, RSS {base['VmRSS'] / MiB:.1f} -> {rss_held / MiB:.1f} MiB "
            f"({res['rss_per_conn_bytes']} B/conn), probe while held {probe}, close {closed_s:.1f}s")

    # -- phase 3: the big job ----------------------------------------------------------
    def phase_job(self) -> None:
        a = self.args
        total = a.job_bytes
        log(f"phase job: {total} bytes ({total / MiB:.0f} MiB) of PCL on one connection")
        sensor = self.start_sensor("job")
        pid = sensor["pid"]
        before = proc_status(pid)
        proc = self.child("job", "--port", str(sensor["port"]), "--bytes", str(total), "--cap", str(a.job_cap),
                          cpus=self.client_cpus)
        samples: list[tuple[float, int]] = []
        cpu0, thr0, t0, mc0 = proc_cpu(pid), thread_cpu(pid), time.monotonic(), machine_cpu()
        fd = proc.stdout.fileno()
        while True:
            r, _, _ = select.select([fd], [], [], 0.1)
            try:
                samples.append((time.monotonic() - t0, proc_status(pid)["VmRSS"]))
            except OSError:
                pass
            if r or proc.poll() is not None:
                break
            if time.monotonic() - t0 > a.job_cap + 90:
                raise BenchError("job client did not finish in time")
        cpu1, thr1, t1, mc1 = proc_cpu(pid), thread_cpu(pid), time.monotonic(), machine_cpu()
        cres = read_json_line(proc, 30, "job client")
        proc.wait(10)
        self.children.remove(proc)
        self.check_alive(sensor)
        after = proc_status(pid)
        # the sensor's record of the job
        event = None
        jl = sensor["data"] / "log" / "honeyjet.json"
        deadline = time.monotonic() + 15
        while event is None and time.monotonic() < deadline:
            try:
                with open(jl, "rb") as f:
                    for line in f:
                        if b"honeyjet.job.captured" in line:
                            ev = json.loads(line)
                            if ev.get("eventid") == "honeyjet.job.captured":
                                event = ev
            except OSError:
                pass
            if event is None:
                time.sleep(0.3)
        artifact_size = None
        if event and event.get("shasum"):
            try:
                artifact_size = (sensor["data"] / "artifacts" / event["shasum"]).stat().st_size
            except OSError:
                artifact_size = None
        stop = self.stop_sensor(sensor, timeout=60)
        shutil.rmtree(sensor["data"], ignore_errors=True)
        secs = cres["total_s"]
        mbps = cres["wire_bytes"] / secs / MB if secs else 0.0
        job_window = [rss for ts, rss in samples]
        half = len(job_window) // 2
        first_half = max(job_window[:half]) if half else None
        second_half = max(job_window[half:]) if job_window[half:] else None
        growth = after["VmHWM"] - before["VmHWM"]
        verified = bool(
            event
            and event.get("size") == cres["payload_bytes"]
            and event.get("stored_size") == cres["payload_bytes"]
            and event.get("shasum") == cres["sha256"]
            and artifact_size == cres["payload_bytes"]
        )
        constant = growth <= JOB_PEAK_GROWTH_MAX and (
            first_half is None or second_half is None or second_half <= first_half + JOB_TREND_SLACK
        )
        wall = t1 - t0
        res = {
            "payload_bytes": cres["payload_bytes"],
            "wire_bytes": cres["wire_bytes"],
            "client_complete": cres["complete"],
            "sensor_closed_after_eof": cres["eof"],
            "seconds": secs,
            "send_s": cres["send_s"],
            "mb_per_s": round(mbps, 1),
            "mib_per_s": round(cres["wire_bytes"] / secs / MiB, 1) if secs else 0.0,
            "rss_before": before["VmRSS"],
            "hwm_before": before["VmHWM"],
            "hwm_after": after["VmHWM"],
            "hwm_growth": growth,
            "rss_max_first_half": first_half,
            "rss_max_second_half": second_half,
            "rss_samples": len(samples),
            "sensor_cpu": round((cpu1 - cpu0) / wall, 3) if wall else None,
            "sensor_loop_thread_cpu": round((thr1["main"] - thr0["main"]) / wall, 3) if wall else None,
            "client_cpu_s": cres["client_cpu_s"],
            "foreign_cpu": round(max(0.0, mc1["busy"] - mc0["busy"] - (cpu1 - cpu0) - cres["client_cpu_s"]) / wall, 3)
            if wall else None,
            "event": {k: event.get(k) for k in ("size", "stored_size", "shasum", "truncated", "duplicate", "pages",
                                                "language", "ended_by")} if event else None,
            "client_sha256": cres["sha256"],
            "artifact_size": artifact_size,
            "verified": verified,
            "constant_memory": constant,
            "sensor_stop": stop,
        }
        if total < GiB:
            res["met"] = None  # scaled down (--quick / --job-bytes): no verdict
        else:
            res["met"] = bool(verified and constant and mbps >= TARGET_JOB_MBPS and cres["complete"] and cres["eof"])
        self.results["job"] = res
        log(f"  {cres['wire_bytes']} bytes in {secs:.2f} s = {mbps:.1f} MB/s; VmHWM {before['VmHWM'] / MiB:.1f} -> "
            f"{after['VmHWM'] / MiB:.1f} MiB; verified={verified}")


# --------------------------------------------------------------------------------------
# report
# --------------------------------------------------------------------------------------


DISTURBED = 0.15  # cores used by other processes during a run above which it is repeated


def wait_quiet(max_wait: float, threshold: float = DISTURBED, quiet: bool = False) -> float:
    """Wait (at most ``max_wait`` s) until the machine's busy CPU over 1 s is below
    ``threshold`` cores (nothing of ours runs yet); returns the last load seen, in cores."""
    t0 = time.monotonic()
    while True:
        a = machine_cpu()["busy"]
        time.sleep(1.0)
        load = machine_cpu()["busy"] - a
        if load < threshold or time.monotonic() - t0 >= max_wait:
            if load >= threshold:
                log(f"warning: other processes use {load:.2f} cores on this machine; results will be noisy")
            return round(load, 3)
        if not quiet:
            log(f"waiting for a quiet machine: other processes use {load:.2f} cores")


def aggregate(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """Pool the rounds of one (target, C): conn/s over the summed windows, pooled latencies."""
    lat = sorted(x for r in runs for x in r["_lat"])
    n = len(runs)
    ok = sum(r["ok"] for r in runs)
    errors: dict[str, int] = {}
    for r in runs:
        for k, v in r["errors_total"].items():
            errors[k] = errors.get(k, 0) + v
    window = sum(r["ok"] / r["conn_per_s"] for r in runs if r["conn_per_s"])  # = rounds x duration
    bounds = [r["bound"] for r in runs]
    return {
        "target": runs[0]["target"],
        "conc": runs[0]["conc"],
        "rounds": n,
        "conn_per_s": round(ok / window, 1) if window else 0.0,
        "conn_per_s_rounds": [r["conn_per_s"] for r in runs],
        "ok": ok,
        "p50_ms": round(percentile(lat, 50) * 1000, 3) if lat else None,
        "p99_ms": round(percentile(lat, 99) * 1000, 3) if lat else None,
        "max_ms": round(lat[-1] * 1000, 3) if lat else None,
        "errors_in_window": sum(r["errors_in_window"] for r in runs),
        "errors_total": errors,
        "unfinished": sum(r["unfinished"] for r in runs),
        "server_cpu": round(sum(r["server_cpu"] for r in runs) / n, 3),
        "server_loop_thread_cpu": round(sum(r["server_loop_thread_cpu"] for r in runs) / n, 3),
        "server_other_threads_cpu": round(sum(r["server_other_threads_cpu"] for r in runs) / n, 3),
        "client_cpu": [round(sum(r["client_cpu"][i] for r in runs) / n, 3) for i in range(len(runs[0]["client_cpu"]))],
        "bound": max(set(bounds), key=bounds.count),
        "drain_s": max(r["drain_s"] for r in runs),
        "foreign_cpu": round(sum(r["foreign_cpu"] for r in runs) / n, 3),
        "foreign_cpu_max": max(r["foreign_cpu"] for r in runs),
        "steal_cpu": round(sum(r["steal_cpu"] for r in runs) / n, 3),
        "listen_drops": sum(r["listen_drops"] for r in runs),
        "repeated_runs": sum(r.get("attempts", 1) - 1 for r in runs),
    }


def source_info(python: str) -> dict[str, Any]:
    """Which honeyjet was measured: its path, the sha256 over its .py/.toml files, the newest mtime."""
    path = subprocess.run([python, "-c", "import honeyjet, os; print(os.path.dirname(honeyjet.__file__))"],
                          capture_output=True, text=True).stdout.strip()
    h = hashlib.sha256()
    newest = 0.0
    if path:
        for f in sorted(Path(path).rglob("*")):
            if f.suffix in (".py", ".toml") and f.is_file():
                h.update(str(f.relative_to(path)).encode() + b"\0" + f.read_bytes())
                newest = max(newest, f.stat().st_mtime)
    return {
        "package_dir": path,
        "sources_sha256": h.hexdigest()[:16],
        "newest_source_mtime": _dt.datetime.fromtimestamp(newest, _dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
        if newest else None,
    }


def machine_info(python: str) -> dict[str, Any]:
    model = ""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    model = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    mem = 0
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemTotal:"):
                    mem = int(line.split()[1]) * 1024
    except OSError:
        pass
    pyver = subprocess.run([python, "-c", "import sys; print(sys.version.split()[0])"], capture_output=True,
                           text=True).stdout.strip()
    uv = subprocess.run([python, "-c", "import uvloop; print(uvloop.__version__)"], capture_output=True,
                        text=True).stdout.strip()
    return {
        "cpu_model": model,
        "cores": os.cpu_count(),
        "ram_bytes": mem,
        "kernel": platform.release(),
        "python": pyver,
        "uvloop": uv or None,
        "date_utc": _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "nofile_limit": resource.getrlimit(resource.RLIMIT_NOFILE)[0],
    }


def yesno(v: bool | None) -> str:
    return "n/a" if v is None else ("MET" if v else "NOT MET")


def fmt_ms(v: float | None) -> str:
    return "-" if v is None else f"{v:.2f}"


def report(res: dict[str, Any]) -> str:
    out: list[str] = []
    m = res["machine"]
    quick = res["config"]["quick"]
    out.append(f"honeyjet 9100 benchmark ({'QUICK smoke run: scaled down, targets indicative only' if quick else 'full run'})")
    out.append(f"machine: {m['cpu_model']}, {m['cores']} cores, {m['ram_bytes'] / GiB:.1f} GiB RAM, kernel {m['kernel']}, "
               f"Python {m['python']}, uvloop {m['uvloop'] or 'not installed'}, {m['date_utc']}")
    cfg = res["config"]
    hj = res.get("honeyjet", {})
    out.append(f"honeyjet: {hj.get('package_dir')} (sources sha256 {hj.get('sources_sha256')}, newest file "
               f"{hj.get('newest_source_mtime')})")
    out.append(f"loop: {'uvloop' if cfg.get('uvloop_used') else 'asyncio (standard)'} for the sensor, the first floor and "
               f"the clients{'; second floor: asyncio (standard)' if cfg.get('uvloop_used') else ''}; "
               f"sensor interpreter options {cfg.get('sensor_python_opts') or 'none'}")
    out.append(f"pinning: server CPUs {cfg['server_cpus']}, client CPUs {cfg['client_cpus']}; "
               f"other processes' CPU before the start: {res.get('machine_load_at_start')} cores")
    if cfg.get("sensor_env_extra"):
        out.append(f"NOTE: sensor environment changed for an experiment: {cfg['sensor_env_extra']}")
    if "probe" in res:
        p = res["probe"]
        out.append("")
        out.append(f"INFO ID probe: {cfg['rounds']} interleaved round(s) per C of {cfg['warmup']:g} s warm-up + "
                   f"{cfg['duration']:g} s measured; conn/s and latency pooled over the rounds; latency = connect -> server EOF")
        out.append(f"{'C':>4} {'server':13} {'conn/s':>9} {'p50 ms':>8} {'p99 ms':>8} {'errors':>6} {'srv cpu':>8} {'loop':>6} "
                   f"{'client cpu':>10} {'bound':>7} {'others':>6} {'drain s':>7}")
        loops = res.get("floor_loops", {})
        for r in p["rows"]:
            label = f"floor {loops.get(r['target'], '')}".strip() if r["target"].startswith("bare") else r["target"]
            out.append(
                f"{r['conc']:>4} {label:13} {r['conn_per_s']:>9.1f} {fmt_ms(r['p50_ms']):>8} {fmt_ms(r['p99_ms']):>8} "
                f"{r['errors_in_window']:>6} {r['server_cpu']:>8.0%} {r['server_loop_thread_cpu']:>6.0%} "
                f"{'/'.join(f'{c:.0%}' for c in r['client_cpu']):>10} {r['bound']:>7} {r['foreign_cpu']:>6.0%} {r['drain_s']:>7.1f}"
            )
        out.append("(srv cpu: whole server process, in cores; loop: its event-loop thread; others: CPU used meanwhile by "
                   "processes that are not part of the benchmark)")
        for q in p["ratios"]:
            out.append(f"ratio C={q['conc']:<4} vs {q.get('floor_loop', '?'):7} floor {q['ratio']}  (rounds {q['ratio_per_round']}; target >= {TARGET_RATIO}: "
                       f"{yesno(q['met'])}; floor was {q['floor_bound']}-bound)")
        lg = p["logging"]
        out.append(f"logging: clients completed {lg.get('sessions_completed_by_clients')} sessions; JSON log "
                   f"session.closed {lg.get('json_session_closed')}, DB session.closed {lg.get('db_session_closed')} "
                   f"(JSON {lg.get('json_lines')} lines, DB {lg.get('db_events')} events); sensor stop {p['sensor_stop']['stop_s']} s")
    if "idle" in res:
        i = res["idle"]
        out.append("")
        out.append(f"idle: {i['still_held']} of {i['requested']} held after {i['still_held_after_s']:g} s; sensor RSS "
                   f"{i['rss_base'] / MiB:.1f} MiB -> {i['rss_held'] / MiB:.1f} MiB ({i['rss_held'] / MB:.1f} MB, "
                   f"{i['rss_per_conn_bytes']} B/conn); probe while held: {i['probe_while_held']}")
        out.append(f"      opened+accepted in {i['all_accepted_after_s']} s, closed in {i['close_all_s']} s; "
                   f"target {TARGET_IDLE_CONNS} idle under {TARGET_IDLE_RSS // MB} MB: {yesno(i['met'])}"
                   + (f" (scaled down; linear estimate for {TARGET_IDLE_CONNS}: {i['rss_estimate_10000'] / MB:.0f} MB)"
                      if i["met"] is None else ""))
    if "job" in res:
        j = res["job"]
        out.append("")
        out.append(f"job: {j['payload_bytes']} bytes payload ({j['wire_bytes']} on the wire) in {j['seconds']:.2f} s = "
                   f"{j['mb_per_s']:.1f} MB/s ({j['mib_per_s']:.1f} MiB/s); sensor CPU {j['sensor_cpu']:.0%} "
                   f"(loop thread {j['sensor_loop_thread_cpu']:.0%}); other processes {j['foreign_cpu']:.0%}")
        out.append(f"     VmHWM {j['hwm_before'] / MiB:.1f} -> {j['hwm_after'] / MiB:.1f} MiB (growth {j['hwm_growth'] / MiB:.1f} MiB); "
                   f"RSS max 1st half {(j['rss_max_first_half'] or 0) / MiB:.1f} MiB, 2nd half {(j['rss_max_second_half'] or 0) / MiB:.1f} MiB")
        out.append(f"     stored artifact verified (size, stored_size, sha256, file): {j['verified']}; event {j['event']}")
        out.append(f"     target 1 GiB at constant memory >= {TARGET_JOB_MBPS:g} MB/s: {yesno(j['met'])}"
                   + (" (scaled down)" if j["met"] is None else ""))
    return "\n".join(out)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv and argv[0] == "_child":
        return child_main(argv[1:])
    p = argparse.ArgumentParser(description="Benchmark honeyjet's TCP 9100 service (see bench/README.md).")
    p.add_argument("--quick", action="store_true", help="short smoke run (under a minute, scaled down)")
    p.add_argument("--json", type=Path, help="write the results as JSON to this file")
    p.add_argument("--python", default=sys.executable, help="interpreter with honeyjet installed (default: this one)")
    p.add_argument("--conc", type=lambda s: [int(x) for x in s.split(",")], help="concurrencies (default 1,16,128)")
    p.add_argument("--duration", type=float, help="measured seconds per probe run (full 5, quick 2)")
    p.add_argument("--warmup", type=float, help="warm-up seconds per probe run (full 1, quick 0.5)")
    p.add_argument("--rounds", type=int, help="interleaved floor(s)/honeyjet rounds per C (full 3, quick 1)")
    p.add_argument("--clients", type=int, default=1, help="load-client processes per probe run (default 1)")
    p.add_argument("--idle", type=int, help="idle connections (full 10000, quick 2000)")
    p.add_argument("--idle-hold", type=float, help="seconds to hold them after they are all accepted (full 5, quick 1)")
    p.add_argument("--job-bytes", type=int, help="job payload bytes (full 1 GiB, quick 128 MiB)")
    p.add_argument("--job-cap", type=float, default=150.0, help="give up sending the job after this many seconds")
    p.add_argument("--drain-max", type=float, default=30.0, help="longest wait for the sensor to go idle after a run")
    p.add_argument("--loop", choices=["auto", "asyncio"], default="auto",
                   help="auto: uvloop when importable (what `honeyjet run` does) for the sensor, the floor and the "
                        "clients; asyncio: the standard loop everywhere")
    p.add_argument("--python-opt", action="append", default=[],
                   help="interpreter option for the sensor process, e.g. --python-opt=-O (repeatable)")
    p.add_argument("--pin", choices=["split", "clients", "none"], default="split",
                   help="split (default): servers on the first CPU, clients on the others; clients: only the clients "
                        "on the last CPU, servers anywhere; none: no pinning")
    p.add_argument("--sensor-env", action="append", default=[], metavar="KEY=VALUE",
                   help="extra environment for the sensor (experiments; e.g. HONEYJET_STORE__DATABASE=false "
                        "is no longer full logging)")
    p.add_argument("--wait-quiet", type=float, default=0.0,
                   help="wait up to this many seconds for other processes to stop using the CPU before starting")
    p.add_argument("--retry-disturbed", type=int, default=2,
                   help=f"repeat a probe run up to N times when other processes used > {DISTURBED} cores meanwhile")
    p.add_argument("--retry-budget", type=int, default=6, help="at most this many repeated runs in total")
    p.add_argument("--phases", default="probe,idle,job", help="comma-separated subset of probe,idle,job")
    p.add_argument("--time-limit", type=float, help="watchdog: abort the whole run after this many seconds")
    a = p.parse_args(argv)
    q = a.quick
    a.conc = a.conc or [1, 16, 128]
    a.duration = a.duration if a.duration is not None else (2.0 if q else 5.0)
    a.warmup = a.warmup if a.warmup is not None else (0.5 if q else 1.0)
    a.rounds = a.rounds if a.rounds is not None else (1 if q else 3)
    a.idle = a.idle if a.idle is not None else (2000 if q else TARGET_IDLE_CONNS)
    a.idle_hold = a.idle_hold if a.idle_hold is not None else (1.0 if q else 5.0)
    a.job_bytes = a.job_bytes if a.job_bytes is not None else (128 * MiB if q else GiB)
    if q:
        a.drain_max = min(a.drain_max, 10.0)
    phases = [x.strip() for x in a.phases.split(",") if x.strip()]
    time_limit = a.time_limit or (150 if q else 900)

    raise_nofile()
    bench = Bench(a)

    def on_signal(signum, frame):
        raise KeyboardInterrupt(f"signal {signum}")

    def on_alarm(signum, frame):
        raise Watchdog(f"time limit of {time_limit:g} s reached")

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGALRM, on_alarm)
    signal.alarm(int(time_limit))
    t0 = time.monotonic()
    status = 0
    res: dict[str, Any] = {
        "config": {
            "quick": q,
            "conc": a.conc,
            "duration": a.duration,
            "warmup": a.warmup,
            "rounds": a.rounds,
            "clients": a.clients,
            "idle": a.idle,
            "idle_hold": a.idle_hold,
            "job_bytes": a.job_bytes,
            "pin": a.pin,
            "server_cpus": sorted(bench.server_cpus) if bench.server_cpus else "any",
            "client_cpus": sorted(bench.client_cpus) if bench.client_cpus else "any",
            "sensor_env": {k: v for k, v in bench.sensor_env().items() if k.startswith("HONEYJET_")},
            "loop": a.loop,
            "sensor_python_opts": a.python_opt,
            "sensor_env_extra": a.sensor_env,
        }
    }
    try:
        res["machine"] = machine_info(a.python)
        res["honeyjet"] = source_info(a.python)
        res["machine_load_at_start"] = wait_quiet(a.wait_quiet)
        res["config"]["uvloop_used"] = bool(a.loop == "auto" and res["machine"]["uvloop"])
        bench.results = res
        if "probe" in phases:
            bench.phase_probe()
        if "idle" in phases:
            if a.wait_quiet:
                wait_quiet(a.wait_quiet)
            bench.phase_idle()
        if "job" in phases:
            if a.wait_quiet:
                wait_quiet(a.wait_quiet)
            bench.phase_job()
    except (BenchError, Watchdog, KeyboardInterrupt) as exc:
        log(f"benchmark aborted: {type(exc).__name__}: {exc}")
        res["aborted"] = f"{type(exc).__name__}: {exc}"
        status = 1
    finally:
        signal.alarm(0)
        bench.cleanup()
    res["elapsed_s"] = round(time.monotonic() - t0, 1)
    res["targets"] = {
        "ratio_ge_0.7": [{"conc": r["conc"], "floor_loop": r.get("floor_loop"), "ratio": r["ratio"], "met": r["met"]}
                         for r in res.get("probe", {}).get("ratios", [])],
        "idle_10000_under_200MB": res.get("idle", {}).get("met"),
        "job_1GiB_constant_memory_ge_100MBps": res.get("job", {}).get("met"),
    }
    if "machine" in res:
        print(report(res))
    print(f"elapsed {res['elapsed_s']} s")
    if a.json:
        a.json.write_text(json.dumps(res, indent=2) + "\n")
        log(f"wrote {a.json}")
    return status


if __name__ == "__main__":
    sys.exit(main())
