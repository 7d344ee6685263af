"""Mutable device state shared by every protocol and persisted across restarts.

A plain JSON document at ``<data>/state/device.json``, replaced atomically. Changes
mark the state dirty; the sensor saves it within a second and at shutdown.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

from honeyjet.fsutil import atomic_write

log = logging.getLogger(__name__)

STATE_VERSION = 1
JOB_LOG_LENGTH = 200


def _fresh() -> dict[str, Any]:
    return {
        "version": STATE_VERSION,
        "ready_message": None,  # RDYMSG text replacing the ready display
        "operator_message": None,  # OPMSG/STMSG text; the device is offline while set
        "printed_pages": 0,
        "defaults": {},  # PJL DEFAULT overrides: NAME -> value
        "jobs": [],  # the job log, newest last
        "next_job": 1,
        "boots": 0,
        "vfs": None,  # VirtualFS.snapshot()
    }


class DeviceState:
    def __init__(self, path: Path | None):
        self.path = path
        self.data: dict[str, Any] = _fresh()
        self.dirty = False
        if path is not None:
            self._load()

    def _load(self) -> None:
        assert self.path is not None
        try:
            raw = json.loads(self.path.read_text("utf-8"))
        except FileNotFoundError:
            return
        except (ValueError, UnicodeDecodeError) as exc:
            # keep the damaged file for the operator, start fresh
            backup = self.path.with_suffix(".corrupt")
            self.path.replace(backup)
            log.error("device state %s was unreadable (%s); kept as %s, starting fresh", self.path, exc, backup)
            return
        if isinstance(raw, dict) and raw.get("version") == STATE_VERSION:
            fresh = _fresh()
            fresh.update({k: v for k, v in raw.items() if k in fresh})
            self.data = fresh

    def __getitem__(self, key: str) -> Any:
        return self.data[key]

    def __setitem__(self, key: str, value: Any) -> None:
        self.data[key] = value
        self.dirty = True

    def touch(self) -> None:
        self.dirty = True

    def save(self) -> None:
        if self.path is None or not self.dirty:
            return
        self.dirty = False
        try:
            atomic_write(self.path, json.dumps(self.data, separators=(",", ":")).encode())
        except OSError:
            self.dirty = True
            raise
