"""The persona's `[snmp]` section (file `snmp.toml` in a persona directory).

The agent's MIB view is data: groups of scalars and tables of columns, each object an
OID, a type and a value template (``${pagecount}``, ``${display}`` …) filled from the
device's live values when a request arrives. Values that need a mapping (device state
to ``hrPrinterStatus``) or a counter that grows with uptime or with the page count are
declared as *derived* values, by a fixed formula named by ``kind``; nothing is evaluated.

Compact forms::

    [[snmp.scalars]]                 # objects under one base OID
    name = "system"
    base = "1.3.6.1.2.1.1"
    objects = [["1.0", "DisplayString", "${network_description}"], …]

    [[snmp.tables]]                  # columns of a conceptual table
    name = "ifTable"
    entry = "1.3.6.1.2.1.2.2.1"      # the …Entry OID: objects are entry.<column>.<row>
    rows = ["1"]                     # row index suffixes
    columns = [[2, "DisplayString", "HP ETHERNET"], [5, "Gauge32", ["100000000"]], …]

A column value is one template for every row or a list with one template per row.
"""

from __future__ import annotations

import re
from typing import Iterator, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator


class _M(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


#: value types an object may have (the SNMPv2-SMI base types plus text/hex conveniences)
#: DisplayString: text, cut at 255 octets · OctetString: text, uncut · HexString/Bits: bytes
#: written in hex (``00:1B:78…`` or ``001b78``) · DateAndTime: hex too (see ``${date_and_time}``)
VALUE_TYPES = frozenset(
    """DisplayString OctetString HexString Bits Integer Counter32 Counter64 Gauge32 TimeTicks
    ObjectIdentifier IpAddress""".split()
)
#: error answers a SET may get (RFC 1157 / RFC 3416 error-status names), or no reply at all
SetAnswer = Literal[
    "noSuchName", "readOnly", "badValue", "genErr", "noAccess", "notWritable", "noCreation",
    "authorizationError", "drop",
]
#: what the v1 protocol can express (SNMPv1 has only error statuses 0-5)
V1_SET_ANSWERS = frozenset({"noSuchName", "readOnly", "badValue", "genErr", "drop"})

_OID_RE = re.compile(r"^[0-2](\.(0|[1-9][0-9]{0,9}))+$")
_SUFFIX_RE = re.compile(r"^(0|[1-9][0-9]{0,9})(\.(0|[1-9][0-9]{0,9}))*$")
_PLACEHOLDER = re.compile(r"\$\{[^}]*\}|\$[A-Za-z_]")
_NAME_RE = re.compile(r"^[a-z][a-z0-9_]{0,63}$")


def parse_oid(text: str) -> tuple[int, ...]:
    """``"1.3.6.1"`` → ``(1, 3, 6, 1)`` (arcs below 2**32; ValueError otherwise)."""
    arcs = tuple(int(a) for a in text.split("."))
    if any(a >= 2**32 for a in arcs):
        raise ValueError(f"OID {text!r} has an arc of 2**32 or more")
    return arcs


def _check_oid(text: str, what: str) -> str:
    text = text.strip().lstrip(".")
    if not _OID_RE.match(text):
        raise ValueError(f"{what} {text!r} is not a dotted OID such as 1.3.6.1.2.1.1")
    parse_oid(text)
    return text


def _static_ok(kind: str, value: str) -> None:
    """Reject a value without placeholders that cannot be of its type (caught at load)."""
    if _PLACEHOLDER.search(value):
        return
    try:
        if kind in {"Integer", "Counter32", "Counter64", "Gauge32", "TimeTicks"}:
            int(value)
        elif kind == "ObjectIdentifier":
            _check_oid(value, "value")
        elif kind == "IpAddress":
            parts = value.split(".")
            if len(parts) != 4 or not all(p.isdigit() and int(p) < 256 for p in parts):
                raise ValueError
        elif kind in {"HexString", "Bits"}:
            bytes.fromhex(value.replace(":", "").replace(" ", "").replace("-", ""))
    except ValueError:
        raise ValueError(f"value {value!r} is not a valid {kind}") from None


def _check_type(kind: str) -> str:
    if kind not in VALUE_TYPES:
        raise ValueError(f"type {kind!r} is not one of {', '.join(sorted(VALUE_TYPES))}")
    return kind


Scalar = tuple[str, str, str | int]
Column = tuple[int, str, str | int | list[str | int]]


class Derived(_M):
    """A template value computed from another one by a fixed formula.

    * ``map``: ``map[str(source)]``, else ``default`` (device state → status codes);
    * ``linear``: ``int(offset + scale * source)`` (counters that grow with uptime);
    * ``countdown``: ``period - (source + offset) % period`` (a supply level that falls as
      the page count rises and is "replaced" every ``period`` pages).
    """

    kind: Literal["map", "linear", "countdown"]
    source: str = Field(min_length=1, max_length=64)
    map: dict[str, str] = Field(default_factory=dict)
    default: str = ""
    scale: float = 1.0
    offset: float = 0.0
    period: int = Field(default=1, ge=1)


class Scalars(_M):
    """Objects under one base OID: ``[suffix, type, value]`` each."""

    name: str = ""
    base: str
    objects: list[Scalar] = Field(min_length=1)

    @field_validator("base")
    @classmethod
    def _base(cls, v: str) -> str:
        return _check_oid(v, "base")

    @field_validator("objects")
    @classmethod
    def _objects(cls, v: list[Scalar]) -> list[Scalar]:
        out = []
        for suffix, kind, value in v:
            if not _SUFFIX_RE.match(suffix):
                raise ValueError(f"suffix {suffix!r} must be dotted numbers such as 1.0")
            _check_type(kind)
            _static_ok(kind, str(value))
            out.append((suffix, kind, str(value)))
        return out


class Table(_M):
    """Columns of a conceptual table: object ``entry.<column>.<row>`` for every row."""

    name: str = ""
    entry: str
    rows: list[str] = Field(min_length=1)
    columns: list[Column] = Field(min_length=1)

    @field_validator("entry")
    @classmethod
    def _entry(cls, v: str) -> str:
        return _check_oid(v, "entry")

    @field_validator("rows")
    @classmethod
    def _rows(cls, v: list[str]) -> list[str]:
        for row in v:
            if not _SUFFIX_RE.match(row):
                raise ValueError(f"row index {row!r} must be dotted numbers such as 1 or 1.2")
        if len(set(v)) != len(v):
            raise ValueError("row indexes repeat")
        return v

    @model_validator(mode="after")
    def _columns(self) -> "Table":
        seen = set()
        for number, kind, value in self.columns:
            if not 0 <= number < 2**32:
                raise ValueError(f"column {number} out of range")
            if number in seen:
                raise ValueError(f"column {number} appears twice")
            seen.add(number)
            _check_type(kind)
            values = value if isinstance(value, list) else [value] * len(self.rows)
            if len(values) != len(self.rows):
                raise ValueError(f"column {number}: {len(values)} values for {len(self.rows)} rows")
            for item in values:
                _static_ok(kind, str(item))
        return self


class SNMPSection(_M):
    """What the SNMP agent of this device answers."""

    # read-only communities (v1/v2c); every other community gets no reply at all
    communities: list[str] = Field(default_factory=list)
    # how a SET from a read community is answered (v1 can only say noSuchName … genErr)
    set_answer_v1: SetAnswer = "noSuchName"
    set_answer_v2c: SetAnswer = "noAccess"
    # SNMPv3: engine ID template in hex (e.g. "80:00:00:0B:03:${mac}"); empty = v3 ignored.
    # Discovery gets a usmStatsUnknownEngineIDs report, anything else usmStatsUnknownUserNames.
    engine_id: str = ""
    derived: dict[str, Derived] = Field(default_factory=dict)
    scalars: list[Scalars] = Field(default_factory=list)
    tables: list[Table] = Field(default_factory=list)

    @field_validator("set_answer_v1")
    @classmethod
    def _v1(cls, v: str) -> str:
        if v not in V1_SET_ANSWERS:
            raise ValueError(f"SNMPv1 cannot answer {v!r}; use one of {', '.join(sorted(V1_SET_ANSWERS))}")
        return v

    @field_validator("derived")
    @classmethod
    def _derived_names(cls, v: dict[str, Derived]) -> dict[str, Derived]:
        for name in v:
            if not _NAME_RE.match(name):
                raise ValueError(f"derived value name {name!r} must be lower-case letters, digits and _")
        return v

    @model_validator(mode="after")
    def _unique(self) -> "SNMPSection":
        seen: set[tuple[int, ...]] = set()
        for oid, _, _ in self.objects():
            key = parse_oid(oid)
            if key in seen:
                raise ValueError(f"OID {oid} is defined twice")
            seen.add(key)
        return self

    def objects(self) -> Iterator[tuple[str, str, str]]:
        """Every object as ``(oid, type, value template)``, in file order."""
        for group in self.scalars:
            for suffix, kind, value in group.objects:
                yield f"{group.base}.{suffix}", kind, str(value)
        for table in self.tables:
            for number, kind, value in table.columns:
                values = value if isinstance(value, list) else [value] * len(table.rows)
                for row, item in zip(table.rows, values):
                    yield f"{table.entry}.{number}.{row}", kind, str(item)
