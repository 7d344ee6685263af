"""The SNMP agent of the printer: one datagram in, the reply datagram (or none) and events out.

Sans-IO: :meth:`SNMPAgent.datagram` takes the bytes of one UDP datagram and returns
``[Send(reply)?, Emit("honeyjet.snmp.request", …)]``. It never raises, whatever the
bytes, and its work is bounded: requests larger than ``max_request_bytes`` are not
decoded, and a reply is built only up to ``max_reply_bytes``.

BER comes from pysnmp's protocol modules (``pysnmp.proto.api`` v1/v2c message types,
the SNMPv3 message and USM parameter types) and pyasn1's BER codec; the agent logic
is ours, because pysnmp's own agent announces pysnmp's enterprise in its engine ID and
drops bad-community requests before an application sees them.

What it answers, all read from the persona's ``[snmp]`` section and the live device:

* **v1 / v2c** with a read community: GET, GETNEXT, GETBULK (v2c) over the MIB view,
  an ordered table of objects whose values are templates filled at request time, so
  the page count, the display, the uptime and the status are always the device's.
  v1 gets ``noSuchName`` where v2c gets ``noSuchObject``/``noSuchInstance``/``endOfMibView``;
  Counter64 objects are not in the v1 view. SET gets the error the persona declares.
  Any other community: no reply (recorded, and counted in snmpInBadCommunityNames).
* **v3**: engine discovery only. A request for another engine ID gets a
  usmStatsUnknownEngineIDs report carrying the HP-style engine ID, boots and time;
  one addressed to this engine gets usmStatsUnknownUserNames (there are no users).
* **Sizes**: a GETBULK answer is cut to the varbinds that fit in ``max_reply_bytes``
  (``tooBig`` if not even one does); GET/GETNEXT/SET answers that do not fit are
  ``tooBig`` (v2c: empty varbinds; v1: the request's varbinds, or silence when even
  that would not fit). No datagram longer than ``max_reply_bytes`` is ever returned.
"""

from __future__ import annotations

import bisect
import string
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from pyasn1.codec.ber import decoder, encoder
from pyasn1.type import univ
from pysnmp.proto import api, rfc1905
from pysnmp.proto.mpmod.rfc3412 import SNMPv3Message
from pysnmp.proto.secmod.rfc3414.service import UsmSecurityParameters

from honeyjet.persona.device import Device
from honeyjet.persona.model_snmp import SNMPSection, parse_oid
from honeyjet.protocols.outputs import Emit, Output, Send
from honeyjet.text import escape

EVENT = "honeyjet.snmp.request"

V1, V2C, V3 = 0, 1, 3
VERSION_NAMES = {V1: "1", V2C: "2c", V3: "3"}
PDU_NAMES = {
    "get-request": "get",
    "get-next-request": "getnext",
    "get-bulk-request": "getbulk",
    "set-request": "set",
    "get-response": "response",
    "response": "response",
    "trap": "trap",
    "snmpV2-trap": "trap2",
    "inform-request": "inform",
    "report": "report",
}
#: error-status numbers (RFC 1157 0-5, RFC 3416 6-18)
ERROR_STATUS = {
    "noError": 0, "tooBig": 1, "noSuchName": 2, "badValue": 3, "readOnly": 4, "genErr": 5,
    "noAccess": 6, "wrongType": 7, "wrongLength": 8, "wrongEncoding": 9, "wrongValue": 10,
    "noCreation": 11, "inconsistentValue": 12, "resourceUnavailable": 13, "commitFailed": 14,
    "undoFailed": 15, "authorizationError": 16, "notWritable": 17, "inconsistentName": 18,
}
USM_UNKNOWN_USER_NAMES = (1, 3, 6, 1, 6, 3, 15, 1, 1, 3, 0)
USM_UNKNOWN_ENGINE_IDS = (1, 3, 6, 1, 6, 3, 15, 1, 1, 4, 0)
V3_REPORTABLE = 0x04

MAX_LOGGED_OIDS = 32
MAX_OID_TEXT = 200
MAX_VALUE_TEXT = 200
DISPLAY_STRING_MAX = 255
#: counters the agent keeps (snmp group of MIB-II, usmStats); ``${snmp_in_pkts}`` … in templates
STAT_NAMES = (
    "snmp_in_pkts", "snmp_out_pkts", "snmp_in_bad_versions", "snmp_in_bad_community_names",
    "snmp_in_bad_community_uses", "snmp_in_asn_parse_errs", "snmp_in_total_req_vars",
    "snmp_in_get_requests", "snmp_in_get_nexts", "snmp_in_set_requests", "snmp_out_too_bigs",
    "snmp_out_no_such_names", "snmp_out_bad_values", "snmp_out_gen_errs", "snmp_out_get_responses",
    "snmp_silent_drops", "usm_unknown_engine_ids", "usm_unknown_user_names",
)


def oid_text(oid: tuple[int, ...] | Any) -> str:
    """Dotted text of an OID, bounded (attacker OIDs can have thousands of arcs)."""
    text = ".".join(str(a) for a in tuple(oid)[:64])
    if len(tuple(oid)) > 64 or len(text) > MAX_OID_TEXT:
        text = text[:MAX_OID_TEXT] + "…"
    return text


def _bytes_of_text(text: str) -> bytes:
    try:
        return text.encode("latin-1")  # PJL strings are latin-1 decoded bytes: give them back as sent
    except UnicodeEncodeError:
        return text.encode("utf-8", "replace")


def _int(text: str) -> int:
    try:
        return int(text.strip())
    except ValueError:
        try:
            return int(float(text))
        except (ValueError, OverflowError):
            return 0


def _hex(text: str) -> bytes:
    try:
        return bytes.fromhex(text.replace(":", "").replace(" ", "").replace("-", ""))
    except ValueError:
        return b""


def _oid_value(text: str) -> tuple[int, ...]:
    try:
        oid = parse_oid(text.strip().lstrip("."))
        if len(oid) >= 2 and oid[0] <= 2:
            return oid
    except ValueError:
        pass
    return (0, 0)


def _ip(text: str) -> str:
    parts = text.strip().split(".")
    if len(parts) == 4 and all(p.isdigit() and int(p) < 256 for p in parts):
        return ".".join(str(int(p)) for p in parts)
    return "0.0.0.0"


def _clamp(n: int, lo: int, hi: int) -> int:
    return lo if n < lo else hi if n > hi else n


def make_value(p: Any, kind: str, text: str) -> Any:
    """The ASN.1 value of an object of ``kind`` from its rendered template (never raises)."""
    if kind == "DisplayString":
        return p.OctetString(_bytes_of_text(text)[:DISPLAY_STRING_MAX])
    if kind == "OctetString":
        return p.OctetString(_bytes_of_text(text))
    if kind in ("HexString", "Bits"):
        return p.OctetString(_hex(text))
    if kind == "Integer":
        return p.Integer(_clamp(_int(text), -(2**31), 2**31 - 1))
    if kind == "Counter32":
        return (p.Counter if p is api.v1 else p.Counter32)(_int(text) % 2**32)
    if kind == "Gauge32":
        return (p.Gauge if p is api.v1 else p.Gauge32)(_clamp(_int(text), 0, 2**32 - 1))
    if kind == "TimeTicks":
        return p.TimeTicks(_int(text) % 2**32)
    if kind == "Counter64":
        return api.v2c.Counter64(_int(text) % 2**64)
    if kind == "ObjectIdentifier":
        return p.ObjectIdentifier(_oid_value(text))
    if kind == "IpAddress":
        return p.IpAddress(_ip(text))
    return p.OctetString(_bytes_of_text(text))


def value_text(value: Any) -> str:
    """A request value as bounded text for events (SET values are attacker data)."""
    try:
        name = value.__class__.__name__
        if name == "IpAddress":
            raw = bytes(value)
            return ".".join(str(b) for b in raw) if len(raw) == 4 else escape(raw, MAX_VALUE_TEXT)
        if isinstance(value, univ.OctetString):
            return escape(bytes(value), MAX_VALUE_TEXT)
        if isinstance(value, univ.ObjectIdentifier):
            return oid_text(tuple(value))
        if isinstance(value, univ.Integer):
            return escape(str(int(value)), MAX_VALUE_TEXT)
        return name
    except Exception:  # exotic or half-decoded value: name its type only
        return value.__class__.__name__


def date_and_time_hex(now: datetime) -> str:
    """SNMPv2-TC DateAndTime (11 octets, UTC) as hex."""
    octets = bytes(
        [now.year >> 8, now.year & 0xFF, now.month, now.day, now.hour, now.minute, now.second,
         now.microsecond // 100000, ord("+"), 0, 0]
    )
    return octets.hex()


@dataclass(frozen=True, slots=True)
class MibObject:
    oid: tuple[int, ...]
    kind: str
    template: string.Template


@dataclass(slots=True)
class _Request:
    """What was learnt about one datagram, for its event."""

    version: str = ""
    community: bytes = b""
    community_ok: bool = False
    pdu: str = ""
    request_id: int | None = None
    oids: list[str] | None = None
    values: list[list[str]] | None = None
    error_status: int = 0
    reply: bytes = b""
    malformed: str = ""
    note: str = ""  # v3: which report
    user: bytes | None = None  # v3: msgUserName


class SNMPAgent:
    """The device's SNMP agent. One per device; it keeps the agent's counters."""

    def __init__(
        self,
        device: Device,
        section: SNMPSection | None = None,
        *,
        max_reply_bytes: int = 1472,
        max_request_bytes: int = 1472,
    ):
        self.device = device
        self.section = section if section is not None else (device.persona.snmp or SNMPSection())
        self.max_reply_bytes = max_reply_bytes
        self.max_request_bytes = max(max_request_bytes, 484)
        self.communities = frozenset(c.encode("utf-8") for c in self.section.communities)
        self.stats: dict[str, int] = dict.fromkeys(STAT_NAMES, 0)
        self._objects: dict[tuple[int, ...], MibObject] = {}
        self._columns: set[tuple[int, ...]] = set()  # object OIDs whose instances are below them
        templates: dict[str, string.Template] = {}
        for group in self.section.scalars:
            base = parse_oid(group.base)
            for suffix, kind, value in group.objects:
                oid = base + parse_oid(suffix)
                self._objects[oid] = MibObject(oid, kind, templates.setdefault(str(value), string.Template(str(value))))
                self._columns.add(oid[:-1] if oid[-1] == 0 else oid)
        for table in self.section.tables:
            entry = parse_oid(table.entry)
            for number, kind, value in table.columns:
                values = value if isinstance(value, list) else [value] * len(table.rows)
                self._columns.add(entry + (number,))
                for row, item in zip(table.rows, values):
                    oid = entry + (number,) + parse_oid(row)
                    self._objects[oid] = MibObject(oid, kind, templates.setdefault(str(item), string.Template(str(item))))
        self._order: list[tuple[int, ...]] = sorted(self._objects)
        self._longest_column = max((len(c) for c in self._columns), default=0)
        self.engine_id = self._engine_id()

    # -- the view ---------------------------------------------------------------------------
    def _engine_id(self) -> bytes:
        text = string.Template(self.section.engine_id).safe_substitute(
            {k: str(v) for k, v in self.device.values().items()}
        )
        raw = _hex(text)
        return raw if 5 <= len(raw) <= 32 else b""

    def values(self) -> dict[str, str]:
        """Template values for this request: device values, the agent's own, derived ones."""
        vals = {k: str(v) for k, v in self.device.values().items()}
        vals["engine_id"] = self.engine_id.hex()
        vals["max_message_size"] = str(self.max_reply_bytes)
        vals["date_and_time"] = date_and_time_hex(self.device.now())
        for name, count in self.stats.items():
            vals[name] = str(count)
        for name, spec in self.section.derived.items():
            src = vals.get(spec.source, "")
            if spec.kind == "map":
                vals[name] = spec.map.get(src, spec.default)
            elif spec.kind == "linear":
                try:
                    vals[name] = str(int(spec.offset + spec.scale * float(src)))
                except (ValueError, OverflowError):
                    vals[name] = "0"
            else:  # countdown
                n = _int(src)
                vals[name] = str(spec.period - (n + int(spec.offset)) % spec.period)
        return vals

    def lookup(self, oid: tuple[int, ...], values: dict[str, str], p: Any = api.v2c) -> Any | None:
        """The value of ``oid`` in the view (None when absent)."""
        obj = self._objects.get(oid)
        if obj is None or (p is api.v1 and obj.kind == "Counter64"):
            return None
        return make_value(p, obj.kind, obj.template.safe_substitute(values))

    def next_oid(self, oid: tuple[int, ...], v1: bool = False) -> tuple[int, ...] | None:
        """The first OID of the view after ``oid`` in lexicographic order."""
        order = self._order
        i = bisect.bisect_right(order, oid)
        while i < len(order):
            key = order[i]
            if not (v1 and self._objects[key].kind == "Counter64"):
                return key
            i += 1
        return None

    def oids(self) -> list[tuple[int, ...]]:
        return list(self._order)

    def _missing(self, oid: tuple[int, ...]) -> Any:
        """v2c exception for a GET of an absent OID: an instance of a known object, or not."""
        for k in range(min(len(oid), self._longest_column), 0, -1):
            if oid[:k] in self._columns:
                return rfc1905.noSuchInstance
        return rfc1905.noSuchObject

    # -- entry point ------------------------------------------------------------------------
    def datagram(self, data: bytes) -> list[Output]:
        """Handle one datagram: ``[Send(reply)]`` when answered, then its event."""
        req = _Request()
        self.stats["snmp_in_pkts"] += 1
        try:
            self._handle(data, req)
        except Exception:  # a codec corner we did not foresee: record it, stay silent
            req.malformed = req.malformed or "unexpected structure"
            req.reply = b""
        if len(req.reply) > self.max_reply_bytes:  # the invariant, whatever happened above
            req.reply = b""
        out: list[Output] = []
        if req.reply:
            self.stats["snmp_out_pkts"] += 1
            out.append(Send(req.reply))
        out.append(self._event(req))
        return out

    def _handle(self, data: bytes, req: _Request) -> None:
        if not data:
            req.malformed = "empty datagram"
            return
        if len(data) > self.max_request_bytes:
            req.malformed = f"oversized datagram ({len(data)} bytes)"
            self.stats["snmp_in_asn_parse_errs"] += 1
            return
        try:
            version = int(api.decodeMessageVersion(data))
        except Exception:
            req.malformed = "not an SNMP message"
            self.stats["snmp_in_asn_parse_errs"] += 1
            return
        if version in (V1, V2C):
            req.version = VERSION_NAMES[version]
            self._community(data, version, req)
        elif version == V3:
            req.version = "3"
            self._v3(data, req)
        else:
            req.version = str(version) if -(2**31) <= version < 2**31 else "?"
            req.malformed = "unsupported SNMP version"
            self.stats["snmp_in_bad_versions"] += 1

    # -- v1 / v2c ---------------------------------------------------------------------------
    def _community(self, data: bytes, version: int, req: _Request) -> None:
        p = api.PROTOCOL_MODULES[version]
        try:
            msg, _ = decoder.decode(data, asn1Spec=p.Message())
            req.community = bytes(p.apiMessage.get_community(msg))
            choice = msg.getComponentByPosition(2)
            kind = choice.getName()
            pdu = choice.getComponent()
            if kind == "trap":  # v1 trap: no request id
                varbinds = list(p.apiTrapPDU.get_varbinds(pdu))
            else:
                req.request_id = _bounded_id(int(pdu.getComponentByPosition(0)))
                varbinds = list(p.apiPDU.get_varbinds(pdu))
            oids = [tuple(o) for o, _ in varbinds]
        except Exception:
            req.malformed = f"undecodable SNMPv{req.version} message"
            self.stats["snmp_in_asn_parse_errs"] += 1
            return
        req.pdu = PDU_NAMES.get(kind, kind)
        req.oids = _logged_oids(oids)
        if req.pdu == "set":
            req.values = [[oid_text(o), value_text(v)] for o, v in varbinds[:MAX_LOGGED_OIDS]]
        req.community_ok = req.community in self.communities
        if not req.community_ok:
            self.stats["snmp_in_bad_community_names"] += 1
            return
        if req.pdu not in ("get", "getnext", "getbulk", "set"):
            return  # responses, traps, informs: an agent does not answer them
        rsp = p.apiMessage.get_response(msg)
        rpdu = p.apiMessage.get_pdu(rsp)
        if req.pdu == "set":
            self.stats["snmp_in_set_requests"] += 1
            self.stats["snmp_in_bad_community_uses"] += 1
            answer = self.section.set_answer_v1 if version == V1 else self.section.set_answer_v2c
            if answer == "drop":
                return
            status = ERROR_STATUS[answer]
            self._finish(req, p, rsp, rpdu, status, 1 if varbinds else 0, None, echo=varbinds)
            return
        values = self.values()
        if req.pdu == "get":
            self.stats["snmp_in_get_requests"] += 1
            self._get(req, p, rsp, rpdu, oids, varbinds, values)
        elif req.pdu == "getnext":
            self.stats["snmp_in_get_nexts"] += 1
            self._getnext(req, p, rsp, rpdu, oids, varbinds, values)
        else:
            nonrep = _int(str(pdu.getComponentByPosition(1)))
            maxrep = _int(str(pdu.getComponentByPosition(2)))
            self._getbulk(req, p, rsp, rpdu, oids, values, nonrep, maxrep)

    def _budget(self, p: Any, rsp: Any, rpdu: Any) -> int:
        """Bytes left for varbinds in a reply (with room for longer length fields)."""
        _set_varbinds(rpdu, [])
        return self.max_reply_bytes - len(encoder.encode(rsp)) - 6

    def _varbind(self, p: Any, oid: tuple[int, ...], value: Any) -> tuple[Any, int]:
        vb = p.VarBind()
        p.apiVarBind.set_oid_value(vb, (oid, value))
        return vb, len(encoder.encode(vb))

    def _get(self, req, p, rsp, rpdu, oids, varbinds, values) -> None:
        budget = self._budget(p, rsp, rpdu)
        out = []
        used = 0
        for i, oid in enumerate(oids):
            value = self.lookup(oid, values, p)
            if value is None:
                if p is api.v1:
                    self.stats["snmp_out_no_such_names"] += 1
                    self._finish(req, p, rsp, rpdu, ERROR_STATUS["noSuchName"], i + 1, None, echo=varbinds)
                    return
                value = self._missing(oid)
            else:
                self.stats["snmp_in_total_req_vars"] += 1
            vb, size = self._varbind(p, oid, value)
            used += size
            if used > budget:
                self._too_big(req, p, rsp, rpdu, varbinds)
                return
            out.append(vb)
        self._finish(req, p, rsp, rpdu, 0, 0, out)

    def _getnext(self, req, p, rsp, rpdu, oids, varbinds, values) -> None:
        budget = self._budget(p, rsp, rpdu)
        out = []
        used = 0
        v1 = p is api.v1
        for i, oid in enumerate(oids):
            nxt = self.next_oid(oid, v1)
            if nxt is None:
                if v1:
                    self.stats["snmp_out_no_such_names"] += 1
                    self._finish(req, p, rsp, rpdu, ERROR_STATUS["noSuchName"], i + 1, None, echo=varbinds)
                    return
                vb, size = self._varbind(p, oid, rfc1905.endOfMibView)
            else:
                self.stats["snmp_in_total_req_vars"] += 1
                vb, size = self._varbind(p, nxt, self.lookup(nxt, values, p))
            used += size
            if used > budget:
                self._too_big(req, p, rsp, rpdu, varbinds)
                return
            out.append(vb)
        self._finish(req, p, rsp, rpdu, 0, 0, out)

    def _getbulk(self, req, p, rsp, rpdu, oids, values, nonrep: int, maxrep: int) -> None:
        """RFC 3416 4.2.3: non-repeaters once, then rows of the repeaters, cut to fit."""
        budget = self._budget(p, rsp, rpdu)
        nonrep = _clamp(nonrep, 0, len(oids))
        maxrep = max(0, maxrep)
        out = []
        used = 0
        full = True

        def add(oid: tuple[int, ...]) -> tuple[int, ...] | None:
            """Append the successor of ``oid``; returns it (``oid`` itself past the end),
            or None when the reply is full."""
            nonlocal used, full
            nxt = self.next_oid(oid)
            if nxt is None:
                vb, size = self._varbind(p, oid, rfc1905.endOfMibView)
            else:
                vb, size = self._varbind(p, nxt, self.lookup(nxt, values, p))
            if used + size > budget:
                full = False
                return None
            used += size
            out.append(vb)
            if nxt is None:
                return oid
            self.stats["snmp_in_total_req_vars"] += 1
            return nxt

        for oid in oids[:nonrep]:
            if add(oid) is None:
                break
        cursor = list(oids[nonrep:])
        rep = 0
        while full and cursor and rep < maxrep:
            before = list(cursor)
            for j, oid in enumerate(cursor):
                nxt = add(oid)
                if nxt is None:
                    break
                cursor[j] = nxt
            rep += 1
            if cursor == before:  # every repeater is past the end: the rest would be endOfMibView too
                break
        if not out and (oids[:nonrep] or (cursor and maxrep)):
            self._too_big(req, p, rsp, rpdu, None)
            return
        self._finish(req, p, rsp, rpdu, 0, 0, out)

    def _too_big(self, req, p, rsp, rpdu, varbinds) -> None:
        """tooBig: v2c with no varbinds; v1 with the request's varbinds (RFC 1157 4.1.2)."""
        self.stats["snmp_out_too_bigs"] += 1
        if p is api.v1 and varbinds is not None:
            self._finish(req, p, rsp, rpdu, ERROR_STATUS["tooBig"], 0, None, echo=varbinds)
        else:
            self._finish(req, p, rsp, rpdu, ERROR_STATUS["tooBig"], 0, [])

    def _finish(self, req, p, rsp, rpdu, status: int, index: int, out, *, echo=None) -> None:
        """Encode the reply; ``echo`` = the request's varbinds are sent back (errors)."""
        p.apiPDU.set_error_status(rpdu, status)
        p.apiPDU.set_error_index(rpdu, index)
        try:
            if echo is not None:
                p.apiPDU.set_varbinds(rpdu, [(o, v) for o, v in echo])
            else:
                _set_varbinds(rpdu, out or [])
            reply = encoder.encode(rsp)
        except Exception:  # a request value that will not re-encode (echo of odd types)
            _set_varbinds(rpdu, [])
            reply = encoder.encode(rsp)
        req.error_status = status
        if len(reply) > self.max_reply_bytes:
            self.stats["snmp_silent_drops"] += 1
            return
        self.stats["snmp_out_get_responses"] += 1
        req.reply = reply

    # -- v3 ---------------------------------------------------------------------------------
    def _v3(self, data: bytes, req: _Request) -> None:
        try:
            msg, _ = decoder.decode(data, asn1Spec=SNMPv3Message())
            header = msg["msgGlobalData"]
            msg_id = int(header["msgID"])
            flags = bytes(header["msgFlags"])[0]
            model = int(header["msgSecurityModel"])
        except Exception:
            req.malformed = "undecodable SNMPv3 message"
            self.stats["snmp_in_asn_parse_errs"] += 1
            return
        if model != 3:
            req.malformed = "unsupported security model"
            return
        try:
            usm, _ = decoder.decode(bytes(msg["msgSecurityParameters"]), asn1Spec=UsmSecurityParameters())
            engine = bytes(usm["msgAuthoritativeEngineId"])
            user = bytes(usm["msgUserName"])
        except Exception:
            req.malformed = "undecodable USM security parameters"
            self.stats["snmp_in_asn_parse_errs"] += 1
            return
        req.community = b""
        req.user = user
        context = b""
        request_id = 0
        data_choice = msg["msgData"]
        if data_choice.getName() == "plaintext":
            scoped = data_choice.getComponent()
            context = bytes(scoped["contextName"])
            pdu_choice = scoped["data"]
            req.pdu = PDU_NAMES.get(pdu_choice.getName(), pdu_choice.getName())
            pdu = pdu_choice.getComponent()
            request_id = int(pdu.getComponentByPosition(0))
            req.request_id = _bounded_id(request_id)
            req.oids = _logged_oids([tuple(o) for o, _ in api.v2c.apiPDU.get_varbinds(pdu)])
        else:
            req.pdu = "encrypted"
        if not self.engine_id or not flags & V3_REPORTABLE or req.pdu in ("response", "report", "trap2"):
            return
        if engine != self.engine_id:
            self.stats["usm_unknown_engine_ids"] += 1
            counter = (USM_UNKNOWN_ENGINE_IDS, self.stats["usm_unknown_engine_ids"])
            req.note = "report usmStatsUnknownEngineIDs"
        else:
            self.stats["usm_unknown_user_names"] += 1
            counter = (USM_UNKNOWN_USER_NAMES, self.stats["usm_unknown_user_names"])
            req.note = "report usmStatsUnknownUserNames"
        req.reply = self._report(msg_id, user, context, request_id, counter)

    def _report(self, msg_id: int, user: bytes, context: bytes, request_id: int, counter) -> bytes:
        vals = self.device.values()
        rsp = SNMPv3Message()
        rsp["msgVersion"] = 3
        header = rsp["msgGlobalData"]
        header["msgID"] = msg_id
        header["msgMaxSize"] = self.max_reply_bytes
        header["msgFlags"] = b"\x00"
        header["msgSecurityModel"] = 3
        usm = UsmSecurityParameters()
        usm["msgAuthoritativeEngineId"] = self.engine_id
        usm["msgAuthoritativeEngineBoots"] = _clamp(int(vals["boots"]), 0, 2**31 - 1)
        usm["msgAuthoritativeEngineTime"] = _clamp(int(vals["uptime_s"]), 0, 2**31 - 1)
        usm["msgUserName"] = user[:32]
        usm["msgAuthenticationParameters"] = b""
        usm["msgPrivacyParameters"] = b""
        rsp["msgSecurityParameters"] = encoder.encode(usm)
        report = rfc1905.ReportPDU()
        api.v2c.apiPDU.set_defaults(report)
        api.v2c.apiPDU.set_request_id(report, request_id)
        api.v2c.apiPDU.set_varbinds(report, [(counter[0], api.v2c.Counter32(counter[1] % 2**32))])
        scoped = rsp["msgData"]["plaintext"]
        scoped["contextEngineId"] = self.engine_id
        scoped["contextName"] = context
        scoped["data"]["report"] = report
        return encoder.encode(rsp)

    # -- the event --------------------------------------------------------------------------
    def _event(self, req: _Request) -> Emit:
        replied = bool(req.reply)
        fields: dict[str, Any] = {
            "version": req.version,
            "community": escape(req.community, 64),
            "community_ok": req.community_ok,
            "pdu": req.pdu,
            "request_id": req.request_id,
            "oids": req.oids or [],
            "error_status": req.error_status,
            "replied": replied,
            "reply_size": len(req.reply),
            "malformed": req.malformed,
        }
        if req.values is not None:
            fields["values"] = req.values
        if req.malformed:
            what = f"undecodable datagram ({req.malformed})"
        else:
            first = (req.oids or ["no varbinds"])[0]
            more = f" (+{len(req.oids) - 1})" if req.oids and len(req.oids) > 1 else ""
            if req.user is not None:
                who = f"user '{escape(req.user, 32)}'" if req.user else "no user (engine discovery)"
            else:
                who = f"community '{fields['community']}'"
            what = f"SNMPv{req.version} {req.pdu or '?'} {first}{more}, {who}"
        if replied and req.note:
            result = f"answered with a {req.note} ({len(req.reply)} bytes)"
        elif replied:
            status = [k for k, v in ERROR_STATUS.items() if v == req.error_status]
            result = f"answered ({status[0] if status else req.error_status}, {len(req.reply)} bytes)"
        else:
            result = "not answered"
        return Emit(EVENT, f"{what}: {result}", fields)


def _set_varbinds(pdu: Any, varbinds: list[Any]) -> None:
    """Put ready-made VarBind objects into a PDU (pysnmp's helper only knows v1's class)."""
    vbl = pdu.setComponentByPosition(3).getComponentByPosition(3)
    vbl.clear()
    for i, vb in enumerate(varbinds):
        vbl.setComponentByPosition(i, vb)


def _bounded_id(n: int) -> int | None:
    """Request ids are 32-bit on the wire in practice; anything absurd is not logged as a number."""
    return n if -(2**63) <= n < 2**63 else None


def _logged_oids(oids: list[tuple[int, ...]]) -> list[str]:
    logged = [oid_text(o) for o in oids[:MAX_LOGGED_OIDS]]
    if len(oids) > MAX_LOGGED_OIDS:
        logged.append(f"… {len(oids) - MAX_LOGGED_OIDS} more")
    return logged


def _warm_up() -> None:
    """Run every codec path once at import time.

    The sensor imports service modules while still privileged and may then switch to a
    user that cannot read the interpreter's own files; anything the codec would import
    lazily on a first request must be loaded by then.
    """
    for p in (api.v1, api.v2c):
        values = [make_value(p, kind, "1") for kind in
                  ("DisplayString", "HexString", "Integer", "Counter32", "Gauge32", "TimeTicks", "ObjectIdentifier", "IpAddress")]
        if p is api.v2c:
            values += [api.v2c.Counter64(1), rfc1905.noSuchObject, rfc1905.noSuchInstance, rfc1905.endOfMibView]
        msg = p.Message()
        p.apiMessage.set_defaults(msg)
        pdu = p.GetResponsePDU()
        p.apiPDU.set_defaults(pdu)
        p.apiPDU.set_varbinds(pdu, [((1, 3, 6, 1, i), v) for i, v in enumerate(values)])
        p.apiMessage.set_pdu(msg, pdu)
        data = encoder.encode(msg)
        decoded, _ = decoder.decode(data, asn1Spec=p.Message())
        for _, v in p.apiPDU.get_varbinds(p.apiMessage.get_pdu(decoded)):
            value_text(v)
        api.decodeMessageVersion(data)
    usm = UsmSecurityParameters()
    for name, value in (("msgAuthoritativeEngineId", b"\x80\x00\x00\x0b\x03"), ("msgAuthoritativeEngineBoots", 1),
                        ("msgAuthoritativeEngineTime", 1), ("msgUserName", b""), ("msgAuthenticationParameters", b""),
                        ("msgPrivacyParameters", b"")):
        usm[name] = value
    decoder.decode(encoder.encode(usm), asn1Spec=UsmSecurityParameters())
    escape(b"\x00\xff", 8)


_warm_up()
