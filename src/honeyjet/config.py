"""Typed settings: packaged defaults < operator TOML file < environment < command line.

Every layer is a nested mapping ``{section: {key: value}}``. Layers are merged key by
key, then validated once. Any problem becomes a :class:`ConfigError` whose message
names the offending key and where it came from, in one line.
"""

from __future__ import annotations

import os
import socket
import tomllib
from importlib import resources
from pathlib import Path
from typing import Any, Mapping

from pydantic import BaseModel, ConfigDict, Field, ValidationError

ENV_PREFIX = "HONEYJET_"


class ConfigError(Exception):
    """A configuration problem, phrased for the operator (one line)."""


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class SensorSettings(_Section):
    name: str = Field(default="", max_length=128)
    data_dir: str = ""  # "" = default_data_dir()
    bind: str = Field(default="0.0.0.0", min_length=1)
    port_offset: int = Field(default=0, ge=-65535, le=65535)
    persona: str = Field(default="hp-laserjet-4250", min_length=1)
    strict_events: bool = False
    user: str = Field(default="nobody", max_length=64)


class LimitSettings(_Section):
    sessions_total: int = Field(default=4096, ge=1)
    sessions_per_source: int = Field(default=64, ge=1)
    idle_timeout: float = Field(default=270.0, gt=0)
    session_bytes: int = Field(default=256 * 2**20, ge=1024)
    line_length: int = Field(default=8192, ge=256, le=2**20)
    job_bytes: int = Field(default=64 * 2**20, ge=0)
    transcript_bytes: int = Field(default=64 * 2**20, ge=0)
    disk_quota: int = Field(default=10 * 2**30, ge=0)
    events_per_session: int = Field(default=20000, ge=10)
    jobs_per_session: int = Field(default=1000, ge=1)
    cpu_share: float = Field(default=0.25, gt=0, le=1)
    cpu_burst: float = Field(default=0.5, ge=0)


class ServiceSettings(_Section):
    enabled: bool = True
    port: int = Field(ge=1, le=65535)


class SNMPSettings(ServiceSettings):
    # replies to one source address per second, and bytes per reply: the agent must not
    # be usable as a reflector (the rest is dropped and counted)
    replies_per_source: int = Field(default=50, ge=1)
    max_reply_bytes: int = Field(default=1472, ge=484, le=65507)
    session_idle: float = Field(default=60.0, gt=0)


class BrowseSettings(ServiceSettings):
    # CUPS browse datagrams (UDP): recorded, never answered, no URI is ever fetched
    max_packets_per_source: int = Field(default=20, ge=1)


class AnalysisSettings(_Section):
    enabled: bool = True
    # a directory of operator rule files (*.toml) added to the packaged rules
    rules_dir: str = ""
    # job forensics in sandboxed worker processes (Ghostscript, PDF, text, indicators)
    forensics: bool = True
    forensics_workers: int = Field(default=2, ge=1, le=64)
    forensics_timeout: float = Field(default=60.0, gt=0)
    forensics_memory_mb: int = Field(default=512, ge=64)
    # seconds one Ghostscript run (text, then previews) may take inside the analysis
    render_timeout: float = Field(default=20.0, gt=0)
    # regions phone numbers are recognised for (ISO 3166 codes)
    phone_regions: list[str] = Field(default_factory=lambda: ["US", "GB", "DE", "FR", "IN"], min_length=1)
    # seconds a source's sessions are correlated over, and sources kept in memory
    source_window: float = Field(default=3600.0, gt=0)
    max_sources: int = Field(default=100000, ge=100)
    # largest simhash distance (of 64 bits) for two jobs to count as one campaign
    campaign_distance: int = Field(default=3, ge=0, le=3)


class ConsoleSettings(_Section):
    # the analyst console inside `honeyjet run` (also: `honeyjet console` on its own)
    enabled: bool = False
    bind: str = Field(default="127.0.0.1", min_length=1)
    port: int = Field(default=8080, ge=1, le=65535)  # sensor.port_offset is added, like every port
    tls_cert: str = ""  # PEM chain and key: serve HTTPS (required on a non-loopback bind)
    tls_key: str = ""
    behind_tls_proxy: bool = False  # loopback behind an HTTPS reverse proxy: keep the Secure cookie


class ForwardSettings(_Section):
    # store-and-forward to a central collector; the local SQLite database is the spool
    enabled: bool = False
    url: str = ""  # the collector's base URL, e.g. https://collector.example:8443
    token: str = ""  # this sensor's token (`honeyjet collector token add NAME`), or:
    token_file: str = ""
    ca_file: str = ""  # PEM CA bundle that signs the collector's certificate (else the system's)
    batch: int = Field(default=500, ge=1, le=10000)
    interval: float = Field(default=2.0, gt=0)  # seconds between polls when nothing is pending
    timeout: float = Field(default=30.0, gt=0)
    retry_max: float = Field(default=300.0, gt=0)  # longest back-off after failures
    artifact_bytes: int = Field(default=16 * 2**20, ge=0)  # largest job file sent; 0 = metadata only
    transcripts: bool = False  # also send session transcripts (within artifact_bytes)


class CollectorSettings(_Section):
    # `honeyjet collector`: the authenticated ingest API of a fleet's central store
    bind: str = Field(default="127.0.0.1", min_length=1)
    port: int = Field(default=8443, ge=1, le=65535)
    tls_cert: str = ""
    tls_key: str = ""
    database_url: str = ""  # the central PostgreSQL; empty = store.database_url
    max_request_bytes: int = Field(default=64 * 2**20, ge=2**16)
    max_artifact_bytes: int = Field(default=64 * 2**20, ge=0)
    # a fleet verdict (HJ-FLEET-001) when one source is seen by this many sensors within fleet_window
    fleet_sensors: int = Field(default=2, ge=2, le=10000)
    fleet_window: float = Field(default=86400.0, gt=0)
    fleet_max_sources: int = Field(default=100000, ge=100)


_SEVERITIES = ("info", "low", "medium", "high", "critical")


class AlertSettings(_Section):
    # which verdicts become alerts, and how often (syslog/webhook/email deliver them)
    enabled: bool = False
    min_severity: str = Field(default="high", pattern="^(info|low|medium|high|critical)$")
    classes: list[str] = Field(default_factory=list)  # empty = every class
    source_verdicts: bool = True  # also alert on source-level (correlation) verdicts
    throttle: float = Field(default=3600.0, ge=0)  # one alert per (source, rule) per window
    nuisance_networks: list[str] = Field(default_factory=list)  # CIDRs: recorded, never alerted
    nuisance_user_agents: list[str] = Field(default_factory=list)  # substrings, case-insensitive
    digest: float = Field(default=0.0, ge=0)  # > 0: one digest per this many seconds
    max_tracked: int = Field(default=100000, ge=100)  # (source, rule) windows kept in memory


class OutputSettings(_Section):
    enabled: bool = False
    queue: int = Field(default=1000, ge=1, le=1000000)  # bounded: a full queue drops and counts
    timeout: float = Field(default=10.0, gt=0)


class SyslogSettings(OutputSettings):
    host: str = "127.0.0.1"
    port: int = Field(default=514, ge=1, le=65535)
    transport: str = Field(default="udp", pattern="^(udp|tcp)$")
    format: str = Field(default="rfc5424", pattern="^(rfc5424|cef)$")
    facility: int = Field(default=16, ge=0, le=23)  # local0
    all_events: bool = False  # every event, not only alerts


class WebhookSettings(OutputSettings):
    url: str = ""
    format: str = Field(default="json", pattern="^(json|slack|teams)$")
    headers: dict[str, str] = Field(default_factory=dict)


class EmailSettings(OutputSettings):
    host: str = "127.0.0.1"
    port: int = Field(default=587, ge=1, le=65535)
    starttls: bool = True
    tls: bool = False  # implicit TLS (port 465)
    ca_file: str = ""
    username: str = ""
    password: str = ""
    password_file: str = ""
    sender: str = "honeyjet@localhost"
    recipients: list[str] = Field(default_factory=list)


class MetricsSettings(_Section):
    # Prometheus /metrics on its own port (moves with sensor.port_offset)
    enabled: bool = False
    bind: str = Field(default="127.0.0.1", min_length=1)
    port: int = Field(default=9464, ge=1, le=65535)


class BlockHookSettings(_Section):
    # HoneyPoint-style black-holing: per new high-severity source, run a command or call a URL
    enabled: bool = False
    min_severity: str = Field(default="high", pattern="^(info|low|medium|high|critical)$")
    command: list[str] = Field(default_factory=list)  # argv; "{ip}" is replaced (no shell)
    url: str = ""  # POSTed {"src_ip": …, "severity": …, "classes": […]}
    timeout: float = Field(default=10.0, gt=0)
    queue: int = Field(default=1000, ge=1)
    max_tracked: int = Field(default=100000, ge=100)  # sources remembered as hooked (oldest forgotten)
    exclude: list[str] = Field(default_factory=list)  # CIDRs never hooked (your own networks)


class StoreSettings(_Section):
    json_log: bool = True
    database: bool = True
    database_url: str = ""
    fsync: bool = False


class Settings(_Section):
    sensor: SensorSettings
    limits: LimitSettings
    pjl: ServiceSettings
    http: ServiceSettings
    ipp: ServiceSettings
    lpd: ServiceSettings
    snmp: SNMPSettings
    browse: BrowseSettings
    analysis: AnalysisSettings
    console: ConsoleSettings
    store: StoreSettings
    forward: ForwardSettings
    collector: CollectorSettings
    alerts: AlertSettings
    syslog: SyslogSettings
    webhook: WebhookSettings
    email: EmailSettings
    metrics: MetricsSettings
    block_hook: BlockHookSettings

    @property
    def sensor_name(self) -> str:
        return self.sensor.name or socket.gethostname()

    @property
    def data_dir(self) -> Path:
        return Path(self.sensor.data_dir or default_data_dir()).expanduser().resolve()

    def listen_port(self, service: ServiceSettings) -> int:
        return service.port + self.sensor.port_offset

    @property
    def database_url(self) -> str:
        return self.store.database_url or f"sqlite+aiosqlite:///{self.data_dir / 'honeyjet.db'}"


def default_data_dir() -> str:
    """``/var/lib/honeyjet`` for root (reachable by the user it drops to), else ``./honeyjet-data``."""
    return "/var/lib/honeyjet" if os.geteuid() == 0 else "honeyjet-data"


def packaged_defaults() -> dict[str, Any]:
    text = resources.files("honeyjet").joinpath("defaults.toml").read_text("utf-8")
    return tomllib.loads(text)


def _merge(base: dict[str, Any], layer: Mapping[str, Any], origin: str) -> None:
    for section, values in layer.items():
        if section not in base:
            raise ConfigError(f"config error: unknown section [{section}] ({origin})")
        if not isinstance(values, Mapping):
            raise ConfigError(f"config error: [{section}] must be a table ({origin})")
        for key, value in values.items():
            if key not in base[section]:
                raise ConfigError(f"config error: unknown key {section}.{key} ({origin})")
            base[section][key] = value


def read_toml_file(path: Path) -> dict[str, Any]:
    try:
        with open(path, "rb") as fh:
            return tomllib.load(fh)
    except FileNotFoundError:
        raise ConfigError(f"config error: file not found: {path}") from None
    except PermissionError:
        raise ConfigError(f"config error: cannot read {path}: permission denied") from None
    except IsADirectoryError:
        raise ConfigError(f"config error: {path} is a directory, not a TOML file") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"config error: {path} is not valid TOML: {exc}") from None
    except UnicodeDecodeError:
        raise ConfigError(f"config error: {path} is not UTF-8 text") from None


def _env_value(raw: str) -> Any:
    try:
        return tomllib.loads(f"v = {raw}")["v"]
    except tomllib.TOMLDecodeError:
        return raw


def env_layer(env: Mapping[str, str]) -> dict[str, dict[str, Any]]:
    """``HONEYJET_<SECTION>__<KEY>`` variables as a layer (other HONEYJET_* are ignored)."""
    layer: dict[str, dict[str, Any]] = {}
    for name, raw in env.items():
        if not name.startswith(ENV_PREFIX) or "__" not in name:
            continue
        section, _, key = name[len(ENV_PREFIX) :].lower().partition("__")
        layer.setdefault(section, {})[key] = _env_value(raw)
    return layer


def load_settings(
    config_file: Path | None = None,
    *,
    env: Mapping[str, str] | None = None,
    overrides: Mapping[str, Mapping[str, Any]] | None = None,
) -> Settings:
    """Build validated settings from every layer.

    ``config_file`` is the operator file; when None, ``<data_dir>/honeyjet.toml`` is used
    if it exists (data_dir as set by the environment or ``overrides``, else the default).
    """
    env = os.environ if env is None else env
    merged = packaged_defaults()
    env_cfg = env_layer(env)
    over = {s: dict(v) for s, v in (overrides or {}).items()}
    if config_file is None:
        data_dir = over.get("sensor", {}).get("data_dir") or env_cfg.get("sensor", {}).get("data_dir")
        candidate = Path(str(data_dir or merged["sensor"]["data_dir"] or default_data_dir())).expanduser() / "honeyjet.toml"
        if candidate.is_file():
            config_file = candidate
    if config_file is not None:
        _merge(merged, read_toml_file(config_file), str(config_file))
    _merge(merged, env_cfg, "environment")
    _merge(merged, over, "command line")
    try:
        return Settings.model_validate(merged)
    except ValidationError as exc:
        err = exc.errors()[0]
        key = ".".join(str(p) for p in err["loc"])
        value = err.get("input")
        origin = f" (file {config_file})" if config_file else ""
        raise ConfigError(f"config error: {key} = {value!r}: {err['msg']}{origin}") from None
