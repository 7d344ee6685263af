"""The queue-and-worker shape every output shares.

``put()`` never blocks and never raises: it enqueues into a bounded queue or, when the
queue is full (or the output stopped), drops the item and counts it. One task per
output takes items and calls :meth:`QueuedOutput.deliver` under a timeout; an exception
or a timeout is logged (throttled) and counted, and the next item is tried. Nothing an
output does can stall the event loop or another output.
"""

from __future__ import annotations

import asyncio
import logging
from abc import ABC, abstractmethod
import math
import time
from typing import Any

from honeyjet.aioutil import cancel_and_wait

log = logging.getLogger(__name__)


class QueuedOutput(ABC):
    """Base of an output: bounded queue, one delivery task, timeout, counters."""

    name = "output"
    log_interval = 60.0  # seconds between repeated failure/drop log lines

    def __init__(self, *, queue: int = 1000, timeout: float = 10.0, drain: float = 5.0) -> None:
        self.maxsize = max(1, int(queue))
        self.timeout = timeout
        self.drain = drain  # seconds stop() waits for queued items
        self.counters: dict[str, int] = {"queued": 0, "sent": 0, "failed": 0, "dropped": 0}
        self._queue: asyncio.Queue[Any] | None = None
        self._task: asyncio.Task[None] | None = None
        self._stopped = False
        self._last_log = -math.inf

    # -- subclass API ---------------------------------------------------------------

    @abstractmethod
    async def deliver(self, item: Any) -> None:
        """Send one item (raise to count a failure)."""

    async def opened(self) -> None:
        """Called once in start(), before the worker runs (bind, connect …)."""

    async def closed(self) -> None:
        """Called once in stop(), after the worker ended."""

    # -- queue ------------------------------------------------------------------------

    @property
    def depth(self) -> int:
        return self._queue.qsize() if self._queue is not None else 0

    def put(self, item: Any) -> bool:
        """Enqueue an item; False (and counted) when it had to be dropped."""
        q = self._queue
        if q is None or self._stopped or q.full():
            self.counters["dropped"] += 1
            self._note("queue full or stopped: dropped an item")
            return False
        q.put_nowait(item)
        self.counters["queued"] += 1
        return True

    def _note(self, message: str, *args: Any) -> None:
        now = time.monotonic()
        if now - self._last_log >= self.log_interval:
            self._last_log = now
            log.warning("output %s: " + message + " (counters %s)", self.name, *args, self.counters)

    async def _run(self) -> None:
        assert self._queue is not None
        q = self._queue
        while True:
            item = await q.get()
            try:
                await asyncio.wait_for(self.deliver(item), self.timeout)
                self.counters["sent"] += 1
            except asyncio.CancelledError:
                raise
            except asyncio.TimeoutError:
                self.counters["failed"] += 1
                self._note("delivery timed out after %.1f s", self.timeout)
            except Exception as exc:  # an output fails alone
                self.counters["failed"] += 1
                self._note("delivery failed: %s", exc)
            finally:
                q.task_done()

    # -- lifecycle (the Sink protocol's start/stop) -------------------------------------

    async def start(self) -> None:
        self._queue = asyncio.Queue(self.maxsize)
        await self.opened()
        self._task = asyncio.create_task(self._run(), name=f"output-{self.name}")

    async def stop(self) -> None:
        if self._stopped:
            return
        self._stopped = True
        if self._queue is not None and self._task is not None:
            try:
                await asyncio.wait_for(self._queue.join(), self.drain)
            except asyncio.TimeoutError:
                log.warning("output %s: %d items not delivered at stop", self.name, self._queue.qsize())
        await cancel_and_wait(self._task)
        self._task = None
        await self.closed()
