"""The persona's `[snmp]` section (file `snmp.toml` in a persona directory)."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict


class _M(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class SNMPSection(_M):
    """What the SNMP service of this device answers. Filled in with the service."""
