"""Out-of-process analysis for the event loop: :class:`ForensicsPool`."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import resource
import shutil
import signal
import sys
import tempfile
from pathlib import Path
from typing import Any

from honeyjet.analysis.forensics import ghostscript
from honeyjet.analysis.forensics.report import JobReport, Limits

STDOUT_BYTES = 8 << 20  # largest report accepted from a worker
STDERR_BYTES = 16 << 10
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def _worker_limits(memory_mb: int, cpu_seconds: int, fsize: int) -> list[tuple[int, int]]:
    return [
        (resource.RLIMIT_AS, memory_mb << 20),
        (resource.RLIMIT_CPU, cpu_seconds),
        (resource.RLIMIT_FSIZE, fsize),
        (resource.RLIMIT_CORE, 0),
    ]


def _signal_name(rc: int) -> str:
    try:
        return signal.Signals(-rc).name
    except ValueError:
        return f"signal {-rc}"


async def _read_bounded(stream: asyncio.StreamReader | None, limit: int) -> tuple[bytes, bool]:
    """Everything the stream sends, keeping at most ``limit`` bytes (and saying if more came)."""
    if stream is None:
        return b"", False
    buf = bytearray()
    over = False
    while True:
        chunk = await stream.read(65536)
        if not chunk:
            return bytes(buf), over
        room = limit - len(buf)
        if len(chunk) > room:
            over = True
        if room > 0:
            buf += chunk[:room]


class ForensicsPool:
    """Analyse stored jobs in worker processes, at most ``max_workers`` at a time.

    ``await pool.analyze(path)`` never raises (cancellation aside) and never blocks the
    loop: a worker that crashes, runs out of memory or outlives ``timeout`` seconds
    (its process group is killed) yields a :class:`JobReport` whose ``errors`` say so.
    """

    def __init__(
        self,
        max_workers: int = 2,
        timeout: float = 60.0,
        memory_mb: int = 512,
        *,
        cpu_seconds: int | None = None,
        render: bool = True,
        limits: Limits | None = None,
        python: str | None = None,
        tmp_dir: str | None = None,
    ):
        self.max_workers = max(1, int(max_workers))
        self.timeout = float(timeout)
        self.memory_mb = int(memory_mb)
        self.cpu_seconds = int(cpu_seconds if cpu_seconds is not None else max(1, int(self.timeout)))
        self.render = render
        self.limits = limits or Limits()
        self.python = python or sys.executable
        self.tmp_dir = tmp_dir
        self.active = 0
        self.peak = 0  # most workers that ran at once
        self.completed = 0
        self._sem = asyncio.Semaphore(self.max_workers)
        self._procs: set[asyncio.subprocess.Process] = set()
        self._sandbox: str | None = None
        self._sandbox_lock = asyncio.Lock()
        self._closed = False

    @property
    def sandbox(self) -> str | None:
        """How Ghostscript runs in the workers ("bwrap" / "rlimits"), once probed."""
        return self._sandbox

    async def _probe(self) -> str:
        async with self._sandbox_lock:
            if self._sandbox is None:
                loop = asyncio.get_running_loop()
                self._sandbox = await loop.run_in_executor(None, ghostscript.sandbox_mode, self.limits)
            return self._sandbox

    async def analyze(self, path: str | os.PathLike[str]) -> JobReport:
        if self._closed:
            return _failed("pool: closed")
        try:
            async with self._sem:
                if self._closed:
                    return _failed("pool: closed")
                self.active += 1
                self.peak = max(self.peak, self.active)
                try:
                    return await self._run(Path(path))
                finally:
                    self.active -= 1
                    self.completed += 1
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # noqa: BLE001 - never raises
            return _failed(f"pool: {type(exc).__name__}: {str(exc)[:200]}")

    def _argv(self, path: Path, outdir: str, sandbox: str) -> tuple[list[str], list[str]]:
        limits = Limits.from_dict(self.limits.to_dict())
        limits.sandbox = sandbox if sandbox in ("bwrap", "rlimits") else limits.sandbox
        fsize = max(limits.max_read, limits.gs_output_bytes) + (16 << 20)
        rlimits = _worker_limits(self.memory_mb, self.cpu_seconds, fsize)
        worker = [self.python, "-m", "honeyjet.analysis.forensics", str(path), outdir, "--limits", json.dumps(limits.to_dict())]
        if not self.render:
            worker.append("--no-render")
        prlimit = shutil.which("prlimit")
        if prlimit:
            names = {resource.RLIMIT_AS: "as", resource.RLIMIT_CPU: "cpu", resource.RLIMIT_FSIZE: "fsize", resource.RLIMIT_CORE: "core"}
            return [prlimit, *(f"--{names[k]}={v}" for k, v in rlimits), "--", *worker], []
        # no prlimit binary: the worker applies the same limits to itself before reading the job
        return worker, [f"--rlimit={k}:{v}" for k, v in rlimits]

    async def _run(self, path: Path) -> JobReport:
        sandbox = await self._probe()
        outdir = tempfile.mkdtemp(prefix="honeyjet-forensics-", dir=self.tmp_dir)
        proc: asyncio.subprocess.Process | None = None
        try:
            argv, extra = self._argv(path, outdir, sandbox)
            env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "LC_ALL": "C.UTF-8", "TMPDIR": outdir, "HOME": outdir,
                   "PYTHONDONTWRITEBYTECODE": "1"}
            if os.environ.get("PYTHONPATH"):
                env["PYTHONPATH"] = os.environ["PYTHONPATH"]
            proc = await asyncio.create_subprocess_exec(
                *argv, *extra, stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE, start_new_session=True, env=env, cwd=outdir,
            )
            self._procs.add(proc)
            try:
                (out, over), (err, _) = await asyncio.wait_for(
                    asyncio.gather(_read_bounded(proc.stdout, STDOUT_BYTES), _read_bounded(proc.stderr, STDERR_BYTES)),
                    self.timeout,
                )
                rc = await asyncio.wait_for(proc.wait(), 5)
            except asyncio.TimeoutError:
                self._kill(proc)
                await proc.wait()
                return _failed(f"worker: timeout after {self.timeout:g} s")
            return self._report(out, over, err, rc, Path(outdir))
        finally:
            if proc is not None:
                if proc.returncode is None:
                    self._kill(proc)
                    with contextlib.suppress(Exception):
                        await asyncio.shield(proc.wait())
                self._procs.discard(proc)
            shutil.rmtree(outdir, ignore_errors=True)

    def _report(self, out: bytes, over: bool, err: bytes, rc: int, outdir: Path) -> JobReport:
        report: JobReport | None = None
        if not over:
            try:
                data: Any = json.loads(out.decode("utf-8"))
                if isinstance(data, dict):
                    report = JobReport.from_dict(data)
            except (UnicodeDecodeError, ValueError):
                report = None
        if report is None:
            report = _failed("worker: no report" + (" (output too large)" if over else ""))
        if rc != 0:
            why = _signal_name(rc) if rc < 0 else f"exit {rc}"
            tail = [ln for ln in err.decode("utf-8", "replace").splitlines() if ln.strip()]
            report.add_error(f"worker: {why}" + (f": {tail[-1][:200]}" if tail else ""))
        report.previews = self._previews(outdir)
        report.preview_count = len(report.previews)
        return report

    def _previews(self, outdir: Path) -> list[bytes]:
        out: list[bytes] = []
        for index in range(self.limits.max_previews):
            path = outdir / f"preview-{index}.png"
            try:
                if not path.is_file() or path.is_symlink() or path.stat().st_size > self.limits.preview_bytes:
                    continue
                data = path.read_bytes()
            except OSError:
                continue
            if data.startswith(PNG_SIGNATURE):
                out.append(data)
        return out

    def _kill(self, proc: asyncio.subprocess.Process) -> None:
        """SIGKILL the worker's process group (the worker, Ghostscript, bwrap)."""
        if proc.returncode is not None:
            return
        try:
            os.killpg(proc.pid, signal.SIGKILL)  # the worker leads its own session and group
        except (ProcessLookupError, PermissionError):
            with contextlib.suppress(ProcessLookupError):
                proc.kill()

    async def close(self) -> None:
        """Refuse new work, kill running workers and wait for them."""
        self._closed = True
        procs = list(self._procs)
        for proc in procs:
            self._kill(proc)
        for proc in procs:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(proc.wait(), 5)

    async def __aenter__(self) -> ForensicsPool:
        return self

    async def __aexit__(self, *exc: Any) -> None:
        await self.close()


def _failed(message: str) -> JobReport:
    """A report for a job the worker could not explain (its language is unknown: ``binary``)."""
    report = JobReport(language="binary")
    report.add_error(message)
    return report
