"""The persona's `[lpd]` section (file `lpd.toml` in a persona directory).

What the LPD service (RFC 1179, TCP 515) of the device answers and how it treats queue
names. Text replies are ``${placeholder}`` templates (see :func:`honeyjet.persona.model.render`)
filled from :meth:`honeyjet.persona.device.Device.values` plus, for queue listings:

* ``queue`` – the queue name the peer asked for (printable ASCII only, at most 32 characters);
* per entry of a listing: ``rank`` (``active``, ``1st``, ``2nd`` …), ``owner``, ``job`` (the
  device job number), ``job3`` (job number modulo 1000, three digits, as in ``cfA042``),
  ``files``, ``size`` (bytes), ``pages``, ``language``, and the same padded to the classic BSD
  ``lpq`` columns: ``rank_col`` (7), ``owner_col`` (11), ``job_col`` (5), ``files_col`` (38),
  ``head_col`` (``owner: rank`` padded to 40, the long format's first line).

Every reply string is sent latin-1 encoded; ``\\u0000`` in TOML is the single NUL byte.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

STATES = ("idle", "printing", "offline")


class _M(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def _latin1(value: str, what: str) -> str:
    try:
        value.encode("latin-1")
    except UnicodeEncodeError:
        raise ValueError(f"{what} must be latin-1 text (it is sent as bytes)") from None
    return value


class LPDSection(_M):
    """What the LPD service of this device answers."""

    # -- queues --------------------------------------------------------------------------
    #: HP JetDirect accepts any queue name (unknown names go to the default family)
    accept_any_queue: bool = True
    #: queue family -> job language it declares ("" = autosense, as PERSONALITY=AUTO does).
    #: A queue name is matched case-insensitively with trailing digits removed (raw1 -> raw).
    families: dict[str, str] = Field(
        default_factory=lambda: {"raw": "", "auto": "", "text": "text", "binps": "postscript"}
    )
    #: explicitly configured (user-defined) queue names -> family
    queues: dict[str, str] = Field(default_factory=dict)
    #: family of a name that matches nothing above (JetDirect J7949E: AUTO)
    default_family: str = "auto"

    # -- replies -------------------------------------------------------------------------
    #: answer to 0x01 "print any waiting jobs" (RFC 1179 defines none; see docs)
    print_waiting_reply: str = "\u0000"
    #: answer to 0x05 "remove jobs" before the connection closes
    remove_reply: str = ""
    #: the non-zero acknowledgement sent when a command or file is refused
    refuse_reply: str = "\u0001"
    #: queue-state reply for a queue that is refused (only when accept_any_queue is false)
    unknown_queue_text: str = "${queue}: unknown printer\n"

    # -- queue state (0x03 short, 0x04 long) ------------------------------------------------
    #: first line, by device state (idle, printing, offline)
    header: dict[str, str] = Field(
        default_factory=lambda: {
            "idle": "${queue} is ready\n",
            "printing": "${queue} is ready and printing\n",
            "offline": "${queue} is down: ${display}\n",
        }
    )
    short_empty: str = "no entries\n"
    short_columns: str = "Rank   Owner      Job  Files                                 Total Size\n"
    short_entry: str = "${rank_col}${owner_col}${job_col}${files_col}${size} bytes\n"
    long_empty: str = "no entries\n"
    long_entry: str = "\n${head_col} [job ${job3}${hostname}]\n\t${files_col}${size} bytes\n"
    unknown_user: str = "unknown"
    unknown_file: str = "(standard input)"
    #: at most this many entries are listed
    max_listed: int = Field(default=50, ge=1, le=1000)

    # -- the print engine (how long a received job stays in the queue) ------------------------
    pages_per_minute: float = Field(default=43.0, gt=0)
    #: seconds from receiving a job to the first page (warm-up, formatting)
    first_page_seconds: float = Field(default=9.0, ge=0)

    # -- bounds ------------------------------------------------------------------------------
    #: bytes of a control file kept and parsed (the rest is read and dropped)
    max_control_bytes: int = Field(default=65536, ge=256, le=16 * 2**20)

    @field_validator("families", "queues")
    @classmethod
    def _lower_keys(cls, v: dict[str, str]) -> dict[str, str]:
        return {k.lower(): val for k, val in v.items()}

    @field_validator(
        "print_waiting_reply", "remove_reply", "refuse_reply", "unknown_queue_text", "short_empty",
        "short_columns", "short_entry", "long_empty", "long_entry",
    )
    @classmethod
    def _bytes_ok(cls, v: str) -> str:
        return _latin1(v, "an LPD reply")

    @field_validator("refuse_reply")
    @classmethod
    def _refuse(cls, v: str) -> str:
        if len(v) != 1 or v == "\u0000":
            raise ValueError("refuse_reply must be one non-zero byte")
        return v

    @model_validator(mode="after")
    def _consistent(self) -> "LPDSection":
        missing = [s for s in STATES if s not in self.header]
        if missing:
            raise ValueError(f"header needs an entry for {', '.join(missing)}")
        for text in self.header.values():
            _latin1(text, "an LPD header")
        if self.default_family.lower() not in self.families:
            raise ValueError(f"default_family {self.default_family!r} is not among families")
        for name, family in self.queues.items():
            if family.lower() not in self.families:
                raise ValueError(f"queue {name!r}: family {family!r} is not among families")
        return self

    def family_of(self, queue: str) -> str | None:
        """The family a queue name belongs to; None when the name is refused."""
        name = queue.lower()
        if name in self.queues:
            return self.queues[name].lower()
        base = name.rstrip("0123456789")
        if base in self.families:
            return base
        return self.default_family.lower() if self.accept_any_queue else None
