"""The persona file format: one TOML document describing one printer model.

A persona is data, never code. Text that depends on the install (serial, MAC, host
name, memory, page count) is written as ``string.Template`` placeholders
(``${serial}``) and filled from :class:`honeyjet.persona.device.Device`'s values; no
expression is ever evaluated. :func:`load_persona` validates a file and reports the
first problem with its dotted key.
"""

from __future__ import annotations

import re
import string
import tomllib
from importlib import resources
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from honeyjet.persona.model_http import HTTPSection  # noqa: E402
from honeyjet.persona.model_ipp import IPPSection  # noqa: E402
from honeyjet.persona.model_lpd import LPDSection  # noqa: E402
from honeyjet.persona.model_snmp import SNMPSection  # noqa: E402

BUILTIN_PACKAGE = "honeyjet.persona.data"


class PersonaError(Exception):
    """A persona file is missing or invalid (message names the key)."""


class _M(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class PersonaInfo(_M):
    id: str = Field(pattern=r"^[a-z0-9][a-z0-9-]{1,63}$")
    title: str
    schema_version: int = Field(default=1, ge=1, le=1)


class Supply(_M):
    """A consumable whose level every protocol reports alike (web pages, SNMP, IPP).

    The level falls as the page counter rises: ``capacity`` pages per unit, starting
    from a per-install point, so two installs never show the same levels.
    """

    id: str = Field(pattern=r"^[a-z][a-z0-9_]{0,31}$")  # template prefix: ${toner_percent} …
    description: str  # "Black Cartridge HP Q5942X"
    part: str = ""  # "Q5942X"
    capacity: int = Field(gt=0)  # pages


class DeviceInfo(_M):
    manufacturer: str  # "Hewlett-Packard"
    vendor: str  # "HP"
    model: str  # "HP LaserJet 4250"
    product_number: str = ""
    firmware: str = ""
    firmware_datecode: str = ""
    ram_bytes: int = Field(gt=0)
    languages: list[str] = Field(min_length=1)
    # IEEE 1284 device id (SNMP, IPP printer-device-id, web pages), a template
    ieee1284_id: str = ""
    # network interface description (SNMP sysDescr on HP: the JetDirect string), a template
    network_description: str = ""
    location: str = ""
    contact: str = ""
    supplies: list[Supply] = Field(default_factory=list)


class IdentityRules(_M):
    """How a per-install identity is drawn (see :mod:`honeyjet.persona.identity`)."""

    # '@' = letter (no I/O), '#' = digit, anything else literal
    serial_template: str = Field(min_length=4, max_length=32)
    mac_ouis: list[str] = Field(min_length=1)
    hostname_template: str = "NPI${mac_tail}"
    page_count_range: tuple[int, int] = (10000, 200000)
    pages_per_day_range: tuple[float, float] = (5.0, 60.0)

    @field_validator("mac_ouis")
    @classmethod
    def _ouis(cls, v: list[str]) -> list[str]:
        for oui in v:
            if not re.fullmatch(r"[0-9A-F]{2}(:[0-9A-F]{2}){2}", oui):
                raise ValueError(f"OUI {oui!r} must look like 00:1B:78 (upper-case hex)")
        return v

    @model_validator(mode="after")
    def _ranges(self) -> "IdentityRules":
        lo, hi = self.page_count_range
        if not 0 <= lo <= hi:
            raise ValueError("page_count_range must be [low, high] with 0 <= low <= high")
        lo_f, hi_f = self.pages_per_day_range
        if not 0 <= lo_f <= hi_f:
            raise ValueError("pages_per_day_range must be [low, high] with 0 <= low <= high")
        return self


class StatusTexts(_M):
    ready_display: str = "Ready"
    ready_code: int = 10001
    offline_code: int = 10002
    printing_display: str = "Processing job"
    printing_code: int = 10023


class ConfigEntry(_M):
    """One INFO CONFIG entry: ``NAME=value`` or ``NAME [n KIND]`` with option lines."""

    name: str
    value: str | None = None
    kind: str | None = None  # ENUMERATED, RANGE, …
    options: list[str] = Field(default_factory=list)


class Variable(_M):
    """A PJL environment variable (INFO VARIABLES, INQUIRE, SET, DEFAULT)."""

    name: str  # "COPIES" or "LPARM:PCL FONTSOURCE"
    default: str
    kind: Literal["ENUMERATED", "RANGE", "READONLY", "HIDDEN"]
    options: list[str] = Field(default_factory=list)

    @model_validator(mode="after")
    def _shape(self) -> "Variable":
        if self.kind == "RANGE":
            if len(self.options) != 2:
                raise ValueError(f"variable {self.name}: RANGE needs [low, high]")
            float(self.options[0]), float(self.options[1])
        if self.kind == "ENUMERATED" and self.default.upper() not in {o.upper() for o in self.options}:
            raise ValueError(f"variable {self.name}: default {self.default!r} not among its options")
        return self


class PJLSection(_M):
    id: str  # INFO ID answer, without quotes
    status: StatusTexts = StatusTexts()
    pagecount_reply: str = "PAGECOUNT=${pagecount}"
    memory_total: str = "${ram_bytes}"
    config: list[ConfigEntry]
    variables: list[Variable]
    # extra INFO categories answered verbatim (after template substitution), e.g. PRODINFO
    info: dict[str, str] = Field(default_factory=dict)


class PostScriptSection(_M):
    product: str
    version: str
    revision: int
    language_level: int = Field(default=3, ge=1, le=3)


class FileEntry(_M):
    path: str  # "webServer/default/csconfig" (relative to the volume root, '/' separated)
    content: str = ""
    readonly: bool = False


class VolumeSpec(_M):
    name: str = Field(pattern=r"^[0-9]:$")
    total_bytes: int = Field(gt=0)
    label: str = ""
    directories: list[str] = Field(default_factory=list)
    files: list[FileEntry] = Field(default_factory=list)


class FilesystemSection(_M):
    volumes: list[VolumeSpec] = Field(default_factory=list)
    max_name_length: int = Field(default=128, ge=8, le=1024)
    max_entries: int = Field(default=2048, ge=16)


class Persona(_M):
    persona: PersonaInfo
    device: DeviceInfo
    identity: IdentityRules
    pjl: PJLSection
    postscript: PostScriptSection
    filesystem: FilesystemSection
    # one file and one model module per network service (persona/model_<proto>.py)
    http: HTTPSection | None = None
    snmp: SNMPSection | None = None
    ipp: IPPSection | None = None
    lpd: LPDSection | None = None

    @property
    def id(self) -> str:
        return self.persona.id


def render(template: str, values: dict[str, object]) -> str:
    """Fill ``${name}`` placeholders; unknown names are left as written."""
    return string.Template(template).safe_substitute({k: str(v) for k, v in values.items()})


def builtin_ids() -> list[str]:
    root = resources.files(BUILTIN_PACKAGE)
    return sorted(d.name for d in root.iterdir() if d.is_dir() and d.joinpath("persona.toml").is_file())


def _format_error(exc: ValidationError, origin: str) -> str:
    err = exc.errors()[0]
    key = ".".join(str(p) for p in err["loc"]) or "(top level)"
    return f"persona error: {key}: {err['msg']} ({origin})"


def _merge_file(merged: dict[str, Any], text: str, origin: str) -> None:
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise PersonaError(f"persona error: {origin} is not valid TOML: {exc}") from None
    for section, value in data.items():
        if section in merged:
            raise PersonaError(f"persona error: section [{section}] defined twice ({origin})")
        merged[section] = value


def parse_persona(text: str, origin: str) -> Persona:
    """One TOML document holding every section."""
    merged: dict[str, Any] = {}
    _merge_file(merged, text, origin)
    return _validate(merged, origin)


def _validate(merged: dict[str, Any], origin: str) -> Persona:
    try:
        return Persona.model_validate(merged)
    except ValidationError as exc:
        raise PersonaError(_format_error(exc, origin)) from None


def _read_dir(files: list[tuple[str, Any]], origin: str) -> Persona:
    """A persona directory: persona.toml plus one TOML file per protocol (http.toml …)."""
    merged: dict[str, Any] = {}
    for name, entry in sorted(files, key=lambda f: (f[0] != "persona.toml", f[0])):
        try:
            text = entry.read_text("utf-8")
        except UnicodeDecodeError:
            raise PersonaError(f"persona error: {origin}/{name} is not UTF-8 text") from None
        except OSError as exc:
            raise PersonaError(f"persona error: cannot read {origin}/{name}: {exc.strerror}") from None
        _merge_file(merged, text, f"{origin}/{name}")
    return _validate(merged, origin)


def load_persona(name_or_path: str) -> Persona:
    """A built-in persona by id, or a persona directory or single TOML file by path."""
    if name_or_path in builtin_ids():
        root = resources.files(BUILTIN_PACKAGE).joinpath(name_or_path)
        files = [(f.name, f) for f in root.iterdir() if f.name.endswith(".toml")]
        return _read_dir(files, f"built-in persona {name_or_path}")
    path = Path(name_or_path).expanduser()
    if path.is_dir():
        files = [(f.name, f) for f in path.iterdir() if f.suffix == ".toml"]
        if not any(name == "persona.toml" for name, _ in files):
            raise PersonaError(f"persona error: {path} has no persona.toml")
        return _read_dir(files, str(path))
    if path.suffix == ".toml" or path.exists():
        try:
            text = path.read_text("utf-8")
        except OSError as exc:
            raise PersonaError(f"persona error: cannot read {path}: {exc.strerror}") from None
        except UnicodeDecodeError:
            raise PersonaError(f"persona error: {path} is not UTF-8 text") from None
        return parse_persona(text, str(path))
    known = ", ".join(builtin_ids())
    raise PersonaError(f"persona error: sensor.persona = {name_or_path!r}: no such built-in persona (known: {known}), directory or file")
