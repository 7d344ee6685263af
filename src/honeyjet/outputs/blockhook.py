"""The block hook: black-hole a source the first time its verdict reaches ``block_hook.min_severity``.

A bus sink (:class:`BlockHook`, a :class:`~honeyjet.outputs.base.QueuedOutput`). For each
``honeyjet.verdict.session`` or ``honeyjet.verdict.source`` event (not a ``rerun`` of
``honeyjet analyze``) at or above the threshold whose address it has not hooked before, it

* runs ``block_hook.command``: an argv list, each ``{ip}`` in an element replaced by the
  address (validated with :mod:`ipaddress`, IPv4-mapped IPv6 written as IPv4). No shell,
  stdin from ``/dev/null``, stdout discarded, the first KiB of stderr kept for the log, its
  own process group killed at ``block_hook.timeout``; and/or
* POSTs ``{"src_ip", "severity", "classes", "rules", "sensor", "timestamp", "verdict"}`` as
  JSON to ``block_hook.url`` (aiohttp, redirects not followed, same timeout).

Nothing from the attacker reaches the command line but the validated address. Addresses
already hooked are remembered in a bounded set (``block_hook.max_tracked``, least recently
seen evicted), so a source is hooked once per run of the sensor; a hook that failed or was
dropped is forgotten, so the source's next verdict tries again. Addresses in
``block_hook.exclude`` (your own networks) are never hooked.
"""

from __future__ import annotations

import asyncio
import collections
import ipaddress
import os
import shutil
import signal
from typing import Any
from urllib.parse import urlsplit

from honeyjet.console.queries import SEVERITY_RANK
from honeyjet.outputs.base import QueuedOutput
from honeyjet.outputs.export import canonical_ip as hook_address  # plain address, IPv4-mapped as IPv4, no scope
from honeyjet.text import escape

VERDICTS = {"honeyjet.verdict.session": "session", "honeyjet.verdict.source": "source"}
PLACEHOLDER = "{ip}"
STDERR_KEPT = 1024  # bytes of the command's stderr kept for the failure log line


class BlockHook(QueuedOutput):
    """Runs a command and/or calls a URL once per newly malicious source."""

    name = "block_hook"

    def __init__(self, *, command: list[str], url: str, min_severity: str = "high", timeout: float = 10.0,
                 queue: int = 1000, max_tracked: int = 100_000, exclude: list[str] | None = None) -> None:
        # the base timeout only backs up the per-step ones, which kill the command first
        super().__init__(queue=queue, timeout=2 * timeout + 5.0, drain=timeout + 2.0)
        if not command and not url:
            raise ValueError("block_hook: give block_hook.command or block_hook.url (or set block_hook.enabled = false)")
        if command:
            if not all(isinstance(a, str) and "\x00" not in a for a in command) or not command[0]:
                raise ValueError("block_hook.command: must be a list of strings, the program first")
            if PLACEHOLDER in command[0]:
                raise ValueError("block_hook.command: the program (first element) may not contain {ip}")
            if shutil.which(command[0]) is None:
                raise ValueError(f"block_hook.command: program {command[0]!r} not found or not executable")
        if url:
            parts = urlsplit(url)
            if parts.scheme not in ("http", "https") or not parts.hostname or any(c in url for c in "\r\n\t "):
                raise ValueError("block_hook.url: must be an http(s) URL")
        try:
            self.exclude = [ipaddress.ip_network(n, strict=False) for n in exclude or []]
        except ValueError as exc:
            raise ValueError(f"block_hook.exclude: {exc}") from None
        self.command = list(command)
        self.url = url
        self.min_rank = SEVERITY_RANK[min_severity]
        self.step_timeout = timeout
        self.max_tracked = max(1, int(max_tracked))
        self.hooked: collections.OrderedDict[str, None] = collections.OrderedDict()
        self.counters.update({"skipped": 0})
        self._http: Any = None

    # -- the sink ---------------------------------------------------------------------------

    def write_line(self, event: dict[str, Any], line: bytes | None) -> None:
        """The bus's own event (read, never changed or kept): no per-event copy on the hot path."""
        self.write(event)

    def write(self, event: dict[str, Any]) -> None:
        kind = VERDICTS.get(event.get("eventid", ""))
        if kind is None or event.get("rerun"):
            return
        severity = event.get("severity")
        if not isinstance(severity, str) or SEVERITY_RANK.get(severity, -1) < self.min_rank:
            return
        ip = hook_address(event.get("src_ip"))
        if ip is None:
            self.counters["skipped"] += 1
            return
        if ip in self.hooked:
            self.hooked.move_to_end(ip)
            return
        if any(ipaddress.ip_address(ip) in net for net in self.exclude):
            return
        self.hooked[ip] = None
        while len(self.hooked) > self.max_tracked:
            self.hooked.popitem(last=False)
        classes = event.get("classes")
        rules = event.get("rules")
        queued = self.put({
            "src_ip": ip,
            "severity": severity,
            "classes": [c for c in classes if isinstance(c, str)] if isinstance(classes, list) else [],
            "rules": [r for r in rules if isinstance(r, str)] if isinstance(rules, list) else [],
            "sensor": event.get("sensor"),
            "timestamp": event.get("timestamp"),
            "verdict": kind,
        })
        if not queued:  # dropped (queue full): a later verdict tries again
            self.hooked.pop(ip, None)

    # -- delivery ------------------------------------------------------------------------------

    async def opened(self) -> None:
        if self.url:
            import aiohttp

            self._http = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=self.step_timeout))

    async def closed(self) -> None:
        if self._http is not None:
            await self._http.close()
            self._http = None

    async def deliver(self, item: dict[str, Any]) -> None:
        errors = []
        if self.command:
            try:
                await self.run_command(item["src_ip"])
            except Exception as exc:  # the URL is still called
                errors.append(f"command: {exc}")
        if self.url:
            try:
                await self.post(item)
            except Exception as exc:
                errors.append(f"url: {exc or type(exc).__name__}")
        if errors:
            self.hooked.pop(item["src_ip"], None)  # not blocked: the source's next verdict tries again
            raise RuntimeError(f"{item['src_ip']}: " + "; ".join(errors))

    def argv(self, ip: str) -> list[str]:
        """The command line for ``ip`` (which must come from :func:`hook_address`)."""
        if hook_address(ip) != ip:
            raise ValueError(f"not an IP address: {escape(str(ip), 64)}")
        return [arg.replace(PLACEHOLDER, ip) for arg in self.command]

    async def run_command(self, ip: str) -> None:
        proc = await asyncio.create_subprocess_exec(
            *self.argv(ip), stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.PIPE, start_new_session=True)
        kept = bytearray()

        async def drain() -> None:
            assert proc.stderr is not None
            while chunk := await proc.stderr.read(65536):
                if len(kept) < STDERR_KEPT:
                    kept.extend(chunk[: STDERR_KEPT - len(kept)])

        finished = False
        try:
            await asyncio.wait_for(asyncio.gather(drain(), proc.wait()), self.step_timeout)
            finished = True
        except asyncio.TimeoutError:
            raise RuntimeError(f"killed after {self.step_timeout:g} s") from None
        finally:
            if not finished:  # timed out or cancelled (stop): the command and what it started
                _kill_group(proc.pid)
                if proc.returncode is None:
                    await proc.wait()
        if proc.returncode != 0:
            raise RuntimeError(f"exit status {proc.returncode}: {escape(bytes(kept), STDERR_KEPT)}")

    async def post(self, item: dict[str, Any]) -> None:
        assert self._http is not None
        async with self._http.post(self.url, json=item, allow_redirects=False) as resp:
            if resp.status >= 300:
                raise RuntimeError(f"HTTP {resp.status}")


def _kill_group(pid: int) -> None:
    try:
        os.killpg(pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass


def build_block_hook(settings: Any, sensor: Any = None) -> BlockHook:
    """The block hook the ``[block_hook]`` settings describe (ValueError naming the key when unusable)."""
    cfg = settings.block_hook
    return BlockHook(command=list(cfg.command), url=cfg.url, min_severity=cfg.min_severity, timeout=cfg.timeout,
                     queue=cfg.queue, max_tracked=cfg.max_tracked, exclude=list(cfg.exclude))
