"""The device: persona + per-install identity + persistent state, as every protocol sees it.

Protocol engines read identity and status only from here, so PJL ``INFO ID``, the
PostScript ``product``, and (later) SNMP, HTTP and IPP can never disagree, and a change
made over one connection (display message, page count, a file) is what the next
connection sees.
"""

from __future__ import annotations

import hashlib
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable

from honeyjet.persona.identity import Identity, IdentityStore
from honeyjet.persona.model import Persona, Variable, load_persona, render
from honeyjet.persona.state import JOB_LOG_LENGTH, DeviceState
from honeyjet.persona.vfs import BlobStore, MemoryBlobs, VirtualFS


@dataclass(frozen=True, slots=True)
class Status:
    code: int
    display: str
    online: bool


def variable_key(name: str) -> str:
    """Canonical variable name: upper case, single spaces, ``LPARM:PCL X`` form."""
    name = " ".join(name.upper().split())
    return name.replace(" :", ":").replace(": ", ":")


class Device:
    def __init__(
        self,
        persona: Persona,
        identity: Identity,
        state: DeviceState,
        blobs: BlobStore,
        *,
        clock: Callable[[], float] = time.time,
    ):
        self.persona = persona
        self.identity = identity
        self.state = state
        self.clock = clock
        self.boot_time = clock()
        self.active_jobs = 0
        self._variables = {variable_key(v.name): v for v in persona.pjl.variables}
        state["boots"] = int(state["boots"]) + 1
        self.vfs = VirtualFS(
            persona.filesystem,
            blobs,
            seed_content=self._seed_content,
            saved=state["vfs"],
            on_change=self._vfs_changed,
        )
        if state["vfs"] is None:
            state["vfs"] = self.vfs.snapshot()

    # -- construction ---------------------------------------------------------------------
    @classmethod
    def open(cls, persona_name: str, state_dir: Path, blobs: BlobStore, **kw: Any) -> "Device":
        persona = load_persona(persona_name)
        identity, _ = IdentityStore(state_dir / "identity.json").load_or_create(persona)
        state = DeviceState(state_dir / f"device-{persona.id}.json")
        return cls(persona, identity, state, blobs, **kw)

    @classmethod
    def ephemeral(cls, persona_name: str = "hp-laserjet-4250", **kw: Any) -> "Device":
        """A device with a fresh identity and in-memory state (tests, replays)."""
        from honeyjet.persona.identity import draw_identity

        persona = load_persona(persona_name)
        return cls(persona, draw_identity(persona), DeviceState(None), MemoryBlobs(), **kw)

    def _vfs_changed(self) -> None:
        self.state["vfs"] = self.vfs.snapshot()

    def _seed_content(self, volume: str, path: str) -> bytes:
        for vspec in self.persona.filesystem.volumes:
            if vspec.name == volume:
                for f in vspec.files:
                    if f.path == path:
                        return render(f.content, self.values()).encode("utf-8")
        return b""

    # -- identity ------------------------------------------------------------------------
    @property
    def model(self) -> str:
        return self.persona.device.model

    @property
    def serial(self) -> str:
        return self.identity.serial

    @property
    def mac(self) -> str:
        return self.identity.mac

    @property
    def hostname(self) -> str:
        return self.identity.hostname

    def values(self, **extra: Any) -> dict[str, Any]:
        """Template values for persona text (``extra``: per-request values such as ``ip``).

        Identity: model, manufacturer, vendor, product_number, firmware, firmware_datecode,
        ram_bytes, serial, mac, mac_tail, hostname, location, contact. Live state:
        pagecount, display, status_code, online (TRUE/FALSE), state (idle, printing,
        offline), uptime_s, uptime_ticks (1/100 s), boots; per consumable ``<id>_``
        description, part, capacity, level (= pages_left), percent, pages_used. Derived
        templates: ieee1284_id, network_description.
        """
        d = self.persona.device
        st = self.status()
        base = {
            "model": d.model,
            "manufacturer": d.manufacturer,
            "vendor": d.vendor,
            "product_number": d.product_number,
            "firmware": d.firmware,
            "firmware_datecode": d.firmware_datecode,
            "ram_bytes": d.ram_bytes,
            "serial": self.identity.serial,
            "mac": self.identity.mac,
            "mac_tail": self.identity.mac_tail,
            "hostname": self.identity.hostname,
            "location": d.location,
            "contact": d.contact,
            "pagecount": self.page_count(),
            "display": st.display,
            "status_code": st.code,
            "online": "TRUE" if st.online else "FALSE",
            "state": self.state_name(),
            "uptime_s": self.uptime_ms() // 1000,
            "uptime_ticks": self.uptime_ms() // 10,
            "boots": int(self.state["boots"]),
            "ip": "",
        }
        for supply in self.supplies(base["pagecount"]):
            sid = supply["id"]
            for key in ("description", "part", "capacity", "level", "percent", "pages_left", "pages_used"):
                base[f"{sid}_{key}"] = supply[key]
        base.update(extra)
        base["ieee1284_id"] = render(d.ieee1284_id, base)
        base["network_description"] = render(d.network_description, base)
        return base

    def supplies(self, pagecount: int | None = None) -> list[dict[str, Any]]:
        """Consumable levels from the page counter: the same numbers on every port.

        Each unit lasts ``capacity`` pages; where in its life this install's unit is comes
        from the install id, so levels differ between installs but never between reads.
        """
        pages = self.page_count() if pagecount is None else int(pagecount)
        out = []
        for s in self.persona.device.supplies:
            salt = int.from_bytes(hashlib.sha256(f"{self.identity.install_id}:{s.id}".encode()).digest()[:4], "big")
            used = (pages + salt) % s.capacity
            left = s.capacity - used
            out.append(
                {
                    "id": s.id,
                    "description": s.description,
                    "part": s.part,
                    "capacity": s.capacity,
                    "level": left,
                    "percent": max(1, left * 100 // s.capacity),
                    "pages_left": left,
                    "pages_used": used,
                }
            )
        return out

    def state_name(self) -> str:
        """``idle``, ``printing`` or ``offline``: what SNMP, IPP and the web pages report."""
        if self.state["operator_message"] is not None:
            return "offline"
        return "printing" if self.active_jobs > 0 else "idle"

    # -- counters and clocks -------------------------------------------------------------------
    def page_count(self) -> int:
        ident = self.identity
        days = max(0.0, self.clock() - ident.created) / 86400.0
        return ident.page_count_origin + int(ident.pages_per_day * days) + int(self.state["printed_pages"])

    def uptime_ms(self) -> int:
        return int(max(0.0, self.clock() - self.boot_time) * 1000)

    def now(self) -> datetime:
        return datetime.fromtimestamp(self.clock(), timezone.utc)

    # -- status and display ----------------------------------------------------------------
    def status(self) -> Status:
        st = self.persona.pjl.status
        op = self.state["operator_message"]
        if op is not None:
            return Status(st.offline_code, op, False)
        if self.active_jobs > 0:
            return Status(st.printing_code, st.printing_display, True)
        ready = self.state["ready_message"]
        return Status(st.ready_code, st.ready_display if ready is None else ready, True)

    def set_ready_message(self, text: str) -> tuple[str, str]:
        """RDYMSG: replaces the ready text (empty restores the default); stays online."""
        old = self.status().display
        self.state["ready_message"] = text or None
        return old, self.status().display

    def set_operator_message(self, text: str) -> tuple[str, str]:
        """OPMSG/STMSG: shows ``text`` and takes the device offline."""
        old = self.status().display
        self.state["operator_message"] = text
        return old, text

    # -- PJL variables ---------------------------------------------------------------------
    def variable(self, name: str) -> Variable | None:
        return self._variables.get(variable_key(name))

    @property
    def variables(self) -> list[Variable]:
        return list(self.persona.pjl.variables)

    def default_value(self, var: Variable) -> str:
        return self.state["defaults"].get(variable_key(var.name), var.default)

    @staticmethod
    def normalize_value(var: Variable, value: str) -> str | None:
        """The value as the device would store it, or None when it is not acceptable."""
        value = value.strip().strip('"')
        if var.kind == "READONLY":
            return None
        if var.kind == "ENUMERATED":
            for opt in var.options:
                if opt.upper() == value.upper():
                    return opt
            return None
        if var.kind == "RANGE":
            try:
                num = float(value)
                lo, hi = float(var.options[0]), float(var.options[1])
            except ValueError:
                return None
            if not lo <= num <= hi:
                return None
            return value if "." in var.options[0] else str(int(num))
        return value[:255]  # HIDDEN: free text, bounded

    def set_default(self, var: Variable, value: str) -> tuple[str, str]:
        key = variable_key(var.name)
        old = self.default_value(var)
        defaults = dict(self.state["defaults"])
        defaults[key] = value
        self.state["defaults"] = defaults
        return old, value

    def reset_defaults(self) -> None:
        """INITIALIZE: factory defaults for every PJL variable."""
        self.state["defaults"] = {}

    # -- jobs ------------------------------------------------------------------------------
    def job_begin(self) -> int:
        number = int(self.state["next_job"])
        self.state["next_job"] = number + 1
        self.active_jobs += 1
        return number

    def job_end(self, record: dict[str, Any]) -> None:
        self.active_jobs = max(0, self.active_jobs - 1)
        pages = max(0, int(record.get("pages", 0)))
        self.state["printed_pages"] = int(self.state["printed_pages"]) + pages
        jobs = list(self.state["jobs"])[-(JOB_LOG_LENGTH - 1) :]
        jobs.append(dict(record, ts=self.clock()))
        self.state["jobs"] = jobs

    # -- PostScript's view (see protocols.postscript.PSDevice) ---------------------------------
    @property
    def product(self) -> str:
        return self.persona.postscript.product

    @property
    def ps_version(self) -> str:
        return self.persona.postscript.version

    @property
    def ps_revision(self) -> int:
        return self.persona.postscript.revision

    @property
    def serial_number(self) -> str:
        return self.identity.serial

    @property
    def language_level(self) -> int:
        return self.persona.postscript.language_level

    @property
    def printer_name(self) -> str:
        return self.identity.hostname

    @property
    def ram_bytes(self) -> int:
        return self.persona.device.ram_bytes

    def disks(self) -> list[tuple[str, int, int]]:
        """Mass-storage volumes as PostScript sees them (RAM disk 0: is not one)."""
        return [(f"%disk{v[0]}%", vol.spec.total_bytes, vol.free) for v, vol in self.vfs.volumes.items() if v != "0:"]
