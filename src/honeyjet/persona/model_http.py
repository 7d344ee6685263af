"""The persona's `[http]` section (file `http.toml` in a persona directory)."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict


class _M(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class HTTPSection(_M):
    """What the HTTP service of this device answers. Filled in with the service."""
