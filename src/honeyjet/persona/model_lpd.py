"""The persona's `[lpd]` section (file `lpd.toml` in a persona directory)."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict


class _M(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class LPDSection(_M):
    """What the LPD service of this device answers. Filled in with the service."""
