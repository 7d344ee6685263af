"""The persona's `[ipp]` section (file `ipp.toml` in a persona directory)."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict


class _M(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class IPPSection(_M):
    """What the IPP service of this device answers. Filled in with the service."""
