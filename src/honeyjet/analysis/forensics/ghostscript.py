"""Ghostscript in a sandbox: text (``txtwrite``) and page previews (``png16m``).

Ghostscript only ever runs as a subprocess with an argv list (never a shell), with
``-dSAFER -dBATCH -dNOPAUSE -dNOINTERPOLATE``, the first ``max_pages`` pages, a fixed
letter page (``-dFIXEDMEDIA -dPSFitPage``: a job cannot ask for a huge page), stdin
and stdout closed, stderr into a bounded file, resource limits (``prlimit``: address
space, CPU seconds, file size, open files, no core files) and a wall-clock timeout
after which it is killed.

When bubblewrap works on this host (probed once per process with the real command
shape, then cached) Ghostscript additionally runs in ``bwrap --unshare-all
--die-with-parent --new-session --cap-drop ALL``: a read-only ``/usr``, the job
read-only at ``/in/job``, only the output directory writable, an empty ``/tmp``, no
network and a private PID namespace. Otherwise (no bwrap, user namespaces disabled)
it runs with the limits only; the report's ``sandbox`` field says which.
"""

from __future__ import annotations

import os
import resource
import shutil
import subprocess
import tempfile
import threading
from dataclasses import dataclass, field
from pathlib import Path

from honeyjet.analysis.forensics.report import Limits

BWRAP = "/usr/bin/bwrap"
STDERR_BYTES = 4096
_probe_lock = threading.Lock()
_probe_cache: dict[tuple[str, str], bool] = {}


@dataclass
class GSRun:
    returncode: int | None = None
    timed_out: bool = False
    stderr: str = ""
    error: str = ""  # "" when Ghostscript finished cleanly
    outputs: list[Path] = field(default_factory=list)


def _bwrap_prefix(job: str, outdir: str) -> list[str]:
    argv = [shutil.which("bwrap") or BWRAP, "--ro-bind", "/usr", "/usr"]
    for link, target in (("/lib", "usr/lib"), ("/lib64", "usr/lib64"), ("/bin", "usr/bin"), ("/sbin", "usr/sbin")):
        argv += ["--symlink", target, link]
    for path in ("/etc/alternatives", "/etc/ld.so.cache", "/etc/fonts"):
        argv += ["--ro-bind-try", path, path]
    argv += ["--ro-bind", job, "/in/job", "--bind", outdir, "/out", "--proc", "/proc", "--dev", "/dev", "--tmpfs", "/tmp"]
    argv += ["--unshare-all", "--die-with-parent", "--new-session", "--cap-drop", "ALL", "--chdir", "/tmp", "--"]
    return argv


def _limits_prefix(limits: Limits) -> list[str]:
    """``prlimit`` options, never above what this process may itself use (hard limits)."""
    def cap(kind: int, want: int) -> int:
        _, hard = resource.getrlimit(kind)
        return want if hard == resource.RLIM_INFINITY else min(want, hard)

    mem = cap(resource.RLIMIT_AS, limits.gs_memory_mb << 20)
    cpu = cap(resource.RLIMIT_CPU, max(1, int(limits.gs_cpu)))
    fsize = cap(resource.RLIMIT_FSIZE, limits.gs_output_bytes)
    return [
        shutil.which("prlimit") or "/usr/bin/prlimit",
        f"--as={mem}",
        f"--cpu={cpu}",
        f"--fsize={fsize}",
        "--nofile=64",
        "--core=0",
        "--",
    ]


def _env(tmp: str) -> dict[str, str]:
    return {"PATH": "/usr/bin:/bin", "HOME": tmp, "TMPDIR": tmp, "LC_ALL": "C"}


def bwrap_works(gs_path: str = "/usr/bin/gs") -> bool:
    """Can Ghostscript start inside bubblewrap here? Probed once per process."""
    bwrap = shutil.which("bwrap") or BWRAP
    key = (bwrap, gs_path)
    with _probe_lock:
        if key in _probe_cache:
            return _probe_cache[key]
        ok = False
        if os.access(bwrap, os.X_OK) and os.access(gs_path, os.X_OK):
            try:
                with tempfile.TemporaryDirectory(prefix="honeyjet-probe-") as tmp:
                    probe = _bwrap_prefix("/dev/null", tmp) + [gs_path, "--version"]
                    done = subprocess.run(probe, stdin=subprocess.DEVNULL, capture_output=True, timeout=10, env=_env(tmp))
                ok = done.returncode == 0 and done.stdout[:1].isdigit()
            except (OSError, subprocess.SubprocessError):
                ok = False
        _probe_cache[key] = ok
        return ok


def sandbox_mode(limits: Limits) -> str:
    """"bwrap" or "rlimits" (or "unavailable": bwrap was required but does not work)."""
    if limits.sandbox == "rlimits":
        return "rlimits"
    works = bwrap_works(limits.gs_path)
    if limits.sandbox == "bwrap" and not works:
        return "unavailable"
    return "bwrap" if works else "rlimits"


def run(job: Path, outdir: Path, device_args: list[str], output_name: str, limits: Limits, mode: str) -> GSRun:
    """Run Ghostscript once over ``job``; outputs land in ``outdir`` (names from ``output_name``)."""
    result = GSRun()
    if mode == "unavailable":
        result.error = "ghostscript: bwrap required but not usable"
        return result
    if not os.access(limits.gs_path, os.X_OK):
        result.error = "ghostscript: not installed"
        return result
    outdir.mkdir(parents=True, exist_ok=True)
    if mode == "bwrap":
        in_job, out = "/in/job", "/out"
        prefix = _bwrap_prefix(str(job), str(outdir))
    else:
        in_job, out = str(job), str(outdir)
        prefix = []
    gs = [
        limits.gs_path, "-q", "-dSAFER", "-dBATCH", "-dNOPAUSE", "-dNOINTERPOLATE", "-dNOPROMPT",
        "-dFirstPage=1", f"-dLastPage={max(1, limits.max_pages)}",
        *device_args, f"-sOutputFile={out}/{output_name}", in_job,
    ]
    argv = _limits_prefix(limits) + prefix + gs
    err_path = outdir.parent / f"{outdir.name}.stderr"
    try:
        with open(err_path, "wb") as err:
            # PostScript error reports go to stdout: both streams share one bounded file
            proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=err, stderr=err,
                                    env=_env(str(outdir)), cwd=str(outdir), close_fds=True)
            try:
                result.returncode = proc.wait(timeout=limits.gs_timeout)
            except subprocess.TimeoutExpired:
                result.timed_out = True
                proc.kill()  # bwrap --die-with-parent takes the sandbox with it
                proc.wait()
        with open(err_path, "rb") as err:
            result.stderr = err.read(STDERR_BYTES).decode("utf-8", "replace")
    except OSError as exc:
        result.error = f"ghostscript: {type(exc).__name__}: {exc.strerror or exc}"
        return result
    finally:
        try:
            err_path.unlink()
        except OSError:
            pass
    result.outputs = sorted(p for p in outdir.iterdir() if p.is_file())
    result.error = _diagnose(result)
    return result


def _diagnose(result: GSRun) -> str:
    if result.timed_out:
        return "ghostscript: timeout"
    rc = result.returncode
    if rc == 0:
        return ""
    if rc is not None and rc < 0:
        return "ghostscript: cpu limit" if rc in (-9, -24) else f"ghostscript: killed by signal {-rc}"
    lines = [ln.strip() for ln in result.stderr.splitlines() if ln.strip()]
    detail = next((ln for ln in lines if ln.startswith("Error:")), "")
    detail = detail or next((ln for ln in lines if "Unrecoverable error" in ln), lines[0] if lines else "")
    return f"ghostscript: exit {rc}" + (f": {detail[:200]}" if detail else "")


def text_args() -> list[str]:
    return ["-sDEVICE=txtwrite"]


def png_args(limits: Limits) -> list[str]:
    return [
        "-sDEVICE=png16m", f"-r{max(10, min(limits.preview_dpi, 150))}",
        "-sPAPERSIZE=letter", "-dFIXEDMEDIA", "-dPSFitPage", "-dPDFFitPage",
        "-dTextAlphaBits=4", "-dGraphicsAlphaBits=4",
    ]
