"""Per-install identity: serial number, MAC, host name and counters' origin.

Drawn once from the persona's rules with a CSPRNG and persisted, so every install
looks different (a shared default serial or MAC is a fingerprint) while one install
stays the same device across connections and restarts.
"""

from __future__ import annotations

import json
import secrets
import time
import uuid
from dataclasses import asdict, dataclass
from pathlib import Path

from honeyjet.fsutil import atomic_write
from honeyjet.persona.model import IdentityRules, Persona, render

_LETTERS = "ABCDEFGHJKLMNPQRSTUVWXYZ"  # no I or O, as on HP labels
_DIGITS = "0123456789"


@dataclass(frozen=True, slots=True)
class Identity:
    persona: str
    install_id: str
    serial: str
    mac: str  # "00:1B:78:41:9F:6E"
    hostname: str
    page_count_origin: int
    pages_per_day: float
    created: float  # POSIX time the identity was drawn

    @property
    def mac_tail(self) -> str:
        return self.mac.replace(":", "")[-6:]


def _draw_serial(template: str, rng: secrets.SystemRandom) -> str:
    out = []
    for ch in template:
        if ch == "@":
            out.append(rng.choice(_LETTERS))
        elif ch == "#":
            out.append(rng.choice(_DIGITS))
        else:
            out.append(ch)
    return "".join(out)


def draw_identity(persona: Persona, *, now: float | None = None) -> Identity:
    rules: IdentityRules = persona.identity
    rng = secrets.SystemRandom()
    oui = rng.choice(rules.mac_ouis)
    mac = oui + "".join(f":{rng.randrange(256):02X}" for _ in range(3))
    lo, hi = rules.page_count_range
    plo, phi = rules.pages_per_day_range
    created = time.time() if now is None else now
    tail = mac.replace(":", "")[-6:]
    return Identity(
        persona=persona.id,
        install_id=uuid.uuid4().hex,
        serial=_draw_serial(rules.serial_template, rng),
        mac=mac,
        hostname=render(rules.hostname_template, {"mac_tail": tail}),
        page_count_origin=rng.randint(lo, hi),
        pages_per_day=round(rng.uniform(plo, phi), 2),
        created=created,
    )


class IdentityStore:
    """``<state_dir>/identity.json``: one identity per persona id ever used here."""

    def __init__(self, path: Path):
        self.path = path

    def _read(self) -> dict[str, dict]:
        try:
            data = json.loads(self.path.read_text("utf-8"))
        except FileNotFoundError:
            return {}
        except (ValueError, UnicodeDecodeError) as exc:
            raise ValueError(f"state error: {self.path} is corrupt ({exc}); move it away to draw a new identity") from None
        return data if isinstance(data, dict) else {}

    def load(self, persona: Persona) -> Identity | None:
        raw = self._read().get(persona.id)
        if raw is None:
            return None
        try:
            return Identity(**raw)
        except TypeError as exc:
            raise ValueError(f"state error: {self.path}: bad identity for {persona.id}: {exc}") from None

    def load_or_create(self, persona: Persona) -> tuple[Identity, bool]:
        """The persisted identity for ``persona``, drawing and saving one if absent."""
        found = self.load(persona)
        if found is not None:
            return found, False
        ident = draw_identity(persona)
        data = self._read()
        data[persona.id] = asdict(ident)
        atomic_write(self.path, json.dumps(data, indent=2, sort_keys=True).encode())
        return ident, True
