"""The event catalogue, the event record and the bus that fans events out to sinks.

Every event id honeyjet can emit is declared here, with each field it may carry. The
documentation (``docs/events.md``) lists the same ids and fields, and
``tests/test_eventids.py`` fails when the two disagree or when code emits an id that
is not in the catalogue.

Identity fields (``session``, ``src_ip`` …) are bound when a session opens (see
:mod:`honeyjet.session`) and always win over anything a protocol engine puts in
``fields``: payload data can never overwrite who sent it.
"""

from __future__ import annotations

import logging
import time
import uuid
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any, Awaitable, Callable, Mapping, Protocol

log = logging.getLogger(__name__)

COMMON_FIELDS: dict[str, str] = {
    "eventid": "Event id from this catalogue, `honeyjet.<area>.<action>`.",
    "event_uuid": "Random UUID of this event (hex, 32 chars); unique across sensors, used for idempotent inserts.",
    "timestamp": "RFC 3339 UTC time with microseconds and `Z`.",
    "sensor": "Sensor name (config `sensor.name`, default: the host name).",
    "session": "Session id (16 hex chars, random), bound when the connection opened; empty for sensor-level events.",
    "protocol": "Service that produced the event: `pjl`, `sensor`, …",
    "src_ip": "Peer address as seen by the sensor; empty for sensor-level events.",
    "src_port": "Peer port; 0 for sensor-level events.",
    "dst_ip": "Local address the peer connected to.",
    "dst_port": "Local port the peer connected to (the real listening port, offset included).",
    "message": "One human-readable sentence; attacker text in it is escaped (`\\xNN`) and bounded.",
}


@dataclass(frozen=True, slots=True)
class EventSpec:
    eventid: str
    description: str
    fields: Mapping[str, str]


def _spec(eventid: str, description: str, **fields: str) -> EventSpec:
    return EventSpec(eventid, description, fields)


_ARTIFACT_FIELDS = {
    "shasum": "sha256 (hex) of the stored bytes; the file is `<data>/artifacts/<shasum>`.",
    "size": "Bytes received (may exceed the stored bytes when truncated).",
    "stored_size": "Bytes stored in the artifact.",
    "truncated": "True when the per-object cap or the disk quota cut the stored copy short.",
    "duplicate": "True when an identical artifact was already stored.",
}

_HTTP_FIELDS = {
    "method": "Request method as sent (escaped).",
    "target": "Request target as sent, path and query (escaped, bounded).",
    "version": "HTTP version as sent.",
    "headers": "List of `[name, value]` pairs in the order sent (escaped, bounded); names are values, never keys.",
    "user_agent": "User-Agent header (escaped).",
    "host": "Host header (escaped).",
    "body_size": "Bytes of request body received.",
    "body_truncated": "True when the body exceeded the bound or the peer stopped mid-body.",
    "status": "HTTP status code sent back.",
    "malformed": "Why the request could not be parsed (empty when it could).",
    "raw": "The raw request head when it was malformed (escaped, bounded).",
}

CATALOGUE: dict[str, EventSpec] = {
    s.eventid: s
    for s in [
        _spec(
            "honeyjet.sensor.start",
            "The sensor started and is listening.",
            version="honeyjet version.",
            persona="Persona id in use.",
            listeners="List of `service:transport:addr:port` strings the sensor listens on.",
            unavailable="Services not started because the sensor may not bind their port (`service:transport:port`).",
        ),
        _spec(
            "honeyjet.sensor.stop",
            "The sensor is shutting down.",
            uptime_s="Seconds since start.",
            counters="Mapping of counter name to value (sessions, drops, limit hits).",
        ),
        _spec(
            "honeyjet.session.connect",
            "A peer opened a connection; always the first event of a session.",
        ),
        _spec(
            "honeyjet.session.closed",
            "The connection ended; always the last event of a session.",
            duration_ms="Session length in milliseconds.",
            bytes_in="Bytes received from the peer.",
            bytes_out="Bytes sent to the peer.",
            reason="Why it ended: `eof` (the peer closed), `done` (the service ended the exchange, as the device does), `idle_timeout`, `session_bytes`, `reset`, `shutdown`, `error`.",
            detail="For `done`: the service's words, e.g. `response complete` or the parse error.",
            transcript_shasum="sha256 of the session transcript artifact (both directions, replayable).",
            transcript_size="Bytes in the transcript artifact.",
            transcript_truncated="True when the transcript cap cut it short.",
            jobs="Number of jobs captured in this session.",
            head="The first 512 bytes the peer sent, escaped (what classification reads for magic numbers and known probes).",
        ),
        _spec(
            "honeyjet.session.rejected",
            "A connection was refused by a concurrency limit (aggregated: at most one event per source and minute).",
            limit="`sessions_total` or `sessions_per_source`.",
            count="Connections refused from this source since the last such event.",
        ),
        _spec(
            "honeyjet.limit.hit",
            "A configured bound was reached inside a session.",
            limit="Which bound: `line_length`, `session_bytes`, `idle_timeout`, `job_bytes`, `disk_quota`, `events_per_session`, `jobs_per_session`, `ps_events`, `control_file`, `replies_per_source` (SNMP), `cpu_share` (SNMP), `packets_per_source` (CUPS browse).",
            value="The configured bound.",
        ),
        _spec(
            "honeyjet.pjl.command",
            "One PJL command line was parsed.",
            command="Command word, upper case (`INFO`, `SET`, `FSUPLOAD`, …), or the raw first word when unknown.",
            argument="Normalised command line without `@PJL ` (escaped, bounded).",
            options="List of `[KEY, value]` pairs as parsed (values escaped, bounded).",
            known="False for commands the printer does not implement (answered with silence).",
            service_mode="True for service/NVRAM commands (SERVICEMODE, DMCMD, CLEARNVRAM, …).",
            replied="True when the command produced a reply.",
            truncated="True when the line exceeded the line-length bound.",
        ),
        _spec(
            "honeyjet.pjl.fs",
            "A PJL file-system operation on the virtual file system.",
            operation="`FSQUERY`, `FSDIRLIST`, `FSUPLOAD`, `FSDOWNLOAD`, `FSAPPEND`, `FSDELETE`, `FSMKDIR` or `FSINIT`.",
            path="The NAME the peer sent (escaped, bounded).",
            normalized="The path inside the volume after normalisation, e.g. `0:/PJL/x`.",
            traversal="True when the path tried to climb above the volume root (`..`) or used another escape.",
            fileerror="HP FILEERROR code (0–27), absent on success.",
            size="Bytes read or written, when applicable.",
            offset="OFFSET for FSUPLOAD.",
            shasum="sha256 of the bytes written (FSDOWNLOAD/FSAPPEND), when stored.",
        ),
        _spec(
            "honeyjet.device.change",
            "A command changed the persistent device state (display, online flag, a default variable).",
            setting="What changed: `display`, `online`, `variable:<NAME>`, `filesystem`.",
            old="Previous value (escaped, bounded).",
            new="New value (escaped, bounded).",
            via="Command that did it (`RDYMSG`, `OPMSG`, `STMSG`, `DEFAULT`, `INITIALIZE`, `FSINIT`, …).",
        ),
        _spec(
            "honeyjet.job.start",
            "A print job began arriving.",
            job="Job number within the device's job log.",
            language="Language as declared or sniffed: `postscript`, `pcl`, `pdf`, `text`, `http`, `binary`, …",
            name="PJL JOB NAME, when given (escaped).",
        ),
        _spec(
            "honeyjet.job.captured",
            "A print job was received completely (or cut off) and stored content-addressed.",
            job="Job number within the device's job log.",
            language="Language as declared or sniffed.",
            name="Job name: PJL JOB NAME, IPP job-name, LPD control file J/N line (escaped).",
            user="User: PJL SET USERNAME / JOBATTR / COMMENT, IPP requesting-user-name, LPD P/L line (escaped).",
            pages="Estimated pages; the page counter rose by this much (0 for query-only jobs).",
            ended_by="What ended it: `uel` (Universal Exit Language), `eof` (the connection ended), `count` (an announced size arrived), `document` (an IPP document ended), `error` (a framing error).",
            **_ARTIFACT_FIELDS,
        ),
        _spec(
            "honeyjet.ps.query",
            "The PostScript interpreter answered a query operator (product, version, …) or printed a value.",
            operator="Operator name.",
            reply="What was sent back (escaped, bounded).",
        ),
        _spec(
            "honeyjet.ps.operator",
            "A notable PostScript operator ran: file access, permanent state changes, loops or password checks.",
            operator="Operator name.",
            category="`file`, `persistent`, `control`, `password`, `device`, `stream`.",
            operands="Short text forms of the operands it consumed (escaped, bounded).",
        ),
        _spec(
            "honeyjet.ps.error",
            "The PostScript interpreter reported an error and flushed the rest of the job.",
            error="PostScript error name (`undefined`, `stackunderflow`, `typecheck`, …).",
            operator="Offending command (escaped, bounded).",
        ),
        _spec(
            "honeyjet.pcl.command",
            "A PCL status-readback command (echo, inquire) was answered.",
            command="Escape sequence in text form, e.g. `ESC*s-123X`.",
            reply="What was sent back (escaped, bounded).",
        ),
        _spec(
            "honeyjet.http.request",
            "One HTTP request to the embedded web server, well-formed or not.",
            page="Which page answered (route id), or `404`.",
            shasum="sha256 of the request body stored as an artifact, when there was one.",
            **_HTTP_FIELDS,
        ),
        _spec(
            "honeyjet.ipp.request",
            "One IPP request (HTTP POST on 631) or other HTTP request to the IPP port.",
            operation="IPP operation name (`Get-Printer-Attributes`, `Print-Job`, …) or `0x….` when unknown.",
            operation_id="IPP operation id as a number.",
            request_id="IPP request id.",
            ipp_version="IPP version of the request, e.g. `2.0`.",
            ipp_status="IPP status code answered, e.g. `successful-ok`.",
            attributes="List of `[group, name, value]` from the request (escaped, bounded).",
            printer_uri="printer-uri operation attribute (escaped); never fetched.",
            document_format="document-format, when given.",
            job_id="Job id the request created or referred to.",
            user="requesting-user-name (escaped).",
            job_name="job-name (escaped).",
            **_HTTP_FIELDS,
        ),
        _spec(
            "honeyjet.lpd.command",
            "One LPD daemon command or receive-job subcommand (RFC 1179).",
            command="`print`, `receive`, `queue_short`, `queue_long`, `remove`, `abort`, `control_file`, `data_file`, or `unknown`.",
            queue="Queue name as sent (escaped).",
            arguments="The rest of the command line (escaped, bounded).",
            size="Announced file size for control/data file subcommands.",
            filename="Announced file name (cfA…/dfA…) (escaped).",
            replied="What was answered, escaped (`\\x00` for an acknowledgement).",
        ),
        _spec(
            "honeyjet.lpd.job",
            "An LPD receive-job finished: the control file's fields and the data files it named.",
            queue="Queue name (escaped).",
            host="H line: originating host (escaped).",
            user="P line: user name (escaped).",
            title="J/N lines: job title or source file name (escaped).",
            control="List of `[code, value]` lines of the control file (escaped, bounded).",
            files="Names of the data files received (escaped).",
            jobs="Job numbers of the data files captured as print jobs.",
            ended_by="`complete`, `abort`, `next job`, `eof` or `error`.",
        ),
        _spec(
            "honeyjet.snmp.request",
            "One SNMP datagram: decoded request, community check and what was answered.",
            version="`1`, `2c` or `3` (v3 only engine discovery is answered).",
            community="Community string as sent (escaped).",
            community_ok="True when the community is one the device answers.",
            pdu="`get`, `getnext`, `getbulk`, `set`, `trap`, …",
            request_id="PDU request id.",
            oids="Requested OIDs (bounded list).",
            values="For `set`: `[oid, value]` pairs (escaped, bounded).",
            error_status="Error status answered (0 = noError).",
            replied="True when a reply was sent.",
            reply_size="Bytes of the reply.",
            malformed="Why the datagram could not be decoded (empty when it could).",
        ),
        _spec(
            "honeyjet.browse.packet",
            "A CUPS browse datagram on UDP 631 (cups-browsed protocol); recorded, never answered, its URI never contacted.",
            size="Bytes in the datagram.",
            valid="True when it parses as `<type> <state> <uri> \"location\" \"info\" \"make-and-model\"`.",
            printer_type="printer-type bits (from hex).",
            printer_state="printer-state (3 idle, 4 processing, 5 stopped).",
            uri="The announced printer URI (escaped); never fetched.",
            location="Announced location (escaped).",
            info="Announced description (escaped).",
            make_model="Announced make and model (escaped).",
            raw="The datagram when it is not a browse line (escaped, bounded).",
        ),
        _spec(
            "honeyjet.job.analyzed",
            "Forensics of one captured job (run out of process, sandboxed): language, text, previews, indicators.",
            job="Job number within the device's job log.",
            shasum="sha256 of the job artifact analysed.",
            language="Language found: `pjl`, `postscript`, `pcl5`, `pclxl`, `pdf`, `text`, `raster`, `html`, `binary`, `empty`.",
            wrappers="Outer layers removed, in order (`http`, `pjl`).",
            magic="libmagic's description (bounded).",
            pjl="PJL header facts: `job_name`, `user`, `host`, `enter_language`, `copies`, `comments`, `jobattr`, `upgrade_size`, `commands` (escaped, bounded).",
            http="For HTTP-wrapped jobs: `method`, `target`, `headers` (`[name, value]` pairs), `body_language` (escaped, bounded).",
            pcl="PCL facts: `font_headers`, `font_anomalies`, `macros`, `permanent`.",
            text="Extracted text (escaped, first 4 KiB); the whole text is the artifact `text_shasum`.",
            text_chars="Characters of extracted text.",
            text_source="Where the text came from: `plain`, `pcl5`, `pclxl`, `ghostscript`, `pdfium`, `none`.",
            text_shasum="sha256 of the full extracted text (UTF-8) stored as an artifact.",
            pages="Pages found by the renderer, when known.",
            entropy="Bits per byte of the payload (first MiB).",
            indicators="List of `{type, value, offset}` (`url`, `domain`, `email`, `phone`, `btc`, `eth`, `xmr`, `ipv4`), values escaped, offsets into the text.",
            simhash="64-bit simhash (hex) of the normalised text, or of the bytes without text; near-duplicates differ in few bits.",
            campaign="Campaign id: jobs whose simhash is within `analysis.campaign_distance` bits share it.",
            previews="sha256 of the PNG previews (first pages) stored as artifacts.",
            sandbox="How the renderer was confined: `bwrap` (namespaces, no network) or `rlimits`.",
            errors="What failed (e.g. `ghostscript: timeout`); the rest of the report stands.",
            duration_ms="Analysis time.",
            cached="True when the report was reused for identical bytes seen before.",
            rerun="True when `honeyjet analyze` produced it from stored events.",
        ),
        _spec(
            "honeyjet.verdict.session",
            "The rules' verdict on a closed session (after its jobs' forensics).",
            classes="Taxonomy classes, primary first.",
            severity="`info`, `low`, `medium`, `high` or `critical`.",
            rules="Ids of every rule that fired, highest priority first.",
            rule_names="Names of those rules, same order.",
            service="Service of the session (`pjl`, `http`, `ipp`, `lpd`, `snmp`, `browse`).",
            attribution="Who is behind it as the session says: `user:`, `host:`, `job:` (PJL/IPP/LPD), `user-agent:`, `origin:` (HTTP, cross-site printing) (escaped, bounded).",
            rerun="True when `honeyjet analyze` produced it from stored events.",
        ),
        _spec(
            "honeyjet.verdict.source",
            "A correlation rule fired over one source's sessions across ports and visits (emitted once per rule and window).",
            classes="Taxonomy classes, primary first.",
            severity="`info` … `critical`.",
            rules="Ids of the source rules that fired, highest priority first.",
            rule_names="Names of those rules.",
            new_rules="The rules that fired for the first time in this window (why this event was emitted).",
            sessions="Sessions of this source in the window.",
            services="Services it used in the window.",
            session_classes="Primary classes of its sessions in the window.",
            sequence="`service:primary-class` of its sessions in time order (bounded).",
            first_seen="First time this source was seen (RFC 3339).",
            jobs="Jobs it sent in the window.",
            campaigns="Campaign ids of its jobs.",
            attribution="Who is behind it as the jobs say: PJL/IPP/LPD users and hosts, HTTP User-Agent/Origin/Referer (escaped, bounded).",
            rerun="True when `honeyjet analyze` produced it from stored events.",
            sensors="Fleet verdicts only (written by the collector, `sensor` = `fleet`): the sensors that saw the source in the window.",
        ),
        _spec(
            "honeyjet.file.stored",
            "A file the peer uploaded to the printer (PJL FSDOWNLOAD/FSAPPEND) was stored content-addressed.",
            operation="`FSDOWNLOAD` or `FSAPPEND`.",
            path="The NAME the peer sent (escaped, bounded).",
            **_ARTIFACT_FIELDS,
        ),
    ]
}

ALL_EVENT_IDS = frozenset(CATALOGUE)


def rfc3339(ts: float) -> str:
    """``2026-11-27T10:39:59.123456Z`` for a POSIX time."""
    return datetime.fromtimestamp(ts, timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


class _Clock:
    """RFC 3339 timestamps at a fraction of strftime's cost: the text up to the second is
    reused while the second lasts."""

    __slots__ = ("second", "prefix")

    def __init__(self) -> None:
        self.second = -1
        self.prefix = ""

    def stamp(self, ts: float) -> str:
        second = int(ts)
        if second != self.second:
            self.second = second
            self.prefix = datetime.fromtimestamp(second, timezone.utc).strftime("%Y-%m-%dT%H:%M:%S")
        return f"{self.prefix}.{int((ts - second) * 1_000_000):06d}Z"


class UnknownEvent(ValueError):
    pass


_ALLOWED = {eid: frozenset(spec.fields) | frozenset(COMMON_FIELDS) for eid, spec in CATALOGUE.items()}


def check_fields(eventid: str, fields: Mapping[str, Any]) -> list[str]:
    """Names in ``fields`` that the catalogue does not declare for ``eventid``."""
    allowed = _ALLOWED.get(eventid)
    if allowed is None:
        raise UnknownEvent(eventid)
    return [] if fields.keys() <= allowed else [k for k in fields if k not in allowed]


class Sink(Protocol):
    """An event consumer. ``write`` must not block and must not raise for long."""

    name: str

    def write(self, event: dict[str, Any]) -> None: ...

    # optional: ``write_line(event, line)`` takes the event with its JSON line (see EventBus)

    async def start(self) -> None: ...

    async def stop(self) -> None: ...


class EventBus:
    """Builds events and hands each sink its own copy.

    A failing sink is isolated: its exception is logged (throttled) and counted, and
    the other sinks still receive the event. ``strict`` makes catalogue violations
    raise (tests); otherwise undeclared fields are dropped with a logged warning.

    With an ``encoder`` (event -> JSON line bytes), each event is serialised once and
    sinks that have ``write_line(event, line)`` get that line with the bus's own event
    dict, which they must not change; the others get ``write()`` with a copy.
    """

    def __init__(self, sensor: str, *, strict: bool = False, clock: Callable[[], float] = time.time):
        self.sensor = sensor
        self.strict = strict
        self.clock = clock
        self.sinks: list[Sink] = []
        self.sink_errors: dict[str, int] = {}
        self.emitted = 0
        self._warned: set[tuple[str, str]] = set()
        # event_uuid = a random 64-bit prefix per bus + a counter: unique across sensors and
        # restarts, and much cheaper than uuid4() per event
        self._uuid_prefix = uuid.uuid4().hex[:16]
        self._uuid_next = 0
        self._clock = _Clock()
        self.encoder: Callable[[dict[str, Any]], bytes] | None = None

    def add_sink(self, sink: Sink) -> None:
        self.sinks.append(sink)

    async def start(self) -> None:
        for sink in self.sinks:
            await sink.start()

    async def stop(self) -> None:
        for sink in reversed(self.sinks):
            try:
                await sink.stop()
            except Exception:  # a sink that fails to stop must not stop the others
                log.exception("sink %s failed to stop", sink.name)

    def emit(self, eventid: str, message: str, identity: Mapping[str, Any], fields: Mapping[str, Any]) -> dict[str, Any]:
        """Build, validate and publish one event; returns the event dict."""
        extra = check_fields(eventid, fields)
        if extra:
            if self.strict:
                raise UnknownEvent(f"{eventid}: undeclared fields {extra}")
            for name in extra:
                if (eventid, name) not in self._warned:
                    self._warned.add((eventid, name))
                    log.warning("event %s: dropping undeclared field %s", eventid, name)
            fields = {k: v for k, v in fields.items() if k not in extra}
        self._uuid_next += 1
        # identity last: it always wins over payload-derived fields
        event: dict[str, Any] = {
            **fields,
            **identity,
            "eventid": eventid,
            "event_uuid": f"{self._uuid_prefix}{self._uuid_next:016x}",
            "timestamp": self._clock.stamp(self.clock()),
            "sensor": self.sensor,
            "message": message,
        }
        self.publish(event)
        return event

    def publish(self, event: dict[str, Any]) -> None:
        self.emitted += 1
        encoder = self.encoder
        line = None
        for sink in self.sinks:
            try:
                write_line = getattr(sink, "write_line", None) if encoder is not None else None
                if write_line is None:
                    sink.write(dict(event))
                else:
                    if line is None:
                        line = encoder(event)
                    write_line(event, line)
            except Exception:
                count = self.sink_errors.get(sink.name, 0) + 1
                self.sink_errors[sink.name] = count
                if count & (count - 1) == 0:  # 1, 2, 4, 8 …: throttled
                    log.exception("sink %s failed (%d failures so far)", sink.name, count)


class MemorySink:
    """Keeps events in a list; for tests and for the replay command."""

    name = "memory"

    def __init__(self) -> None:
        self.events: list[dict[str, Any]] = []

    def write(self, event: dict[str, Any]) -> None:
        self.events.append(event)

    async def start(self) -> None:
        return None

    async def stop(self) -> None:
        return None

    def of(self, eventid: str) -> list[dict[str, Any]]:
        return [e for e in self.events if e["eventid"] == eventid]


def sensor_identity(protocol: str = "sensor") -> dict[str, Any]:
    """Identity fields for sensor-level events (no peer)."""
    return {"session": "", "protocol": protocol, "src_ip": "", "src_port": 0, "dst_ip": "", "dst_port": 0}


# re-exported for type hints elsewhere
EventHook = Callable[[dict[str, Any]], Awaitable[None] | None]
__all__ = [
    "CATALOGUE",
    "COMMON_FIELDS",
    "ALL_EVENT_IDS",
    "EventSpec",
    "EventBus",
    "MemorySink",
    "Sink",
    "check_fields",
    "rfc3339",
    "sensor_identity",
]


def catalogue_markdown() -> str:
    """docs/events.md, generated from the catalogue (``python -m honeyjet.events``)."""
    out = [
        "# Events",
        "",
        "<!-- generated by `python -m honeyjet.events > docs/events.md`; tests/test_eventids.py keeps it in step -->",
        "",
        "honeyjet writes one JSON object per line to `<data>/log/honeyjet.json` and the same events to the",
        "database (`events` table, plus `sessions`, `jobs` and `artifacts` derived from them). Field names follow",
        "Cowrie/T-Pot conventions, so the log drops into an ELK or T-Pot pipeline unchanged.",
        "",
        "Rules that hold for every event:",
        "",
        "- Identity fields are bound when the connection opens; no payload can overwrite them.",
        "- Attacker-chosen strings are values, never keys, and are escaped (`\\xNN`) and bounded.",
        "- Long or binary data is stored in the artifact store and referenced by sha256 (`shasum`).",
        "- A session's first event is `honeyjet.session.connect` and its last `honeyjet.session.closed`.",
        "",
        "## Fields on every event",
        "",
        "| field | meaning |",
        "|---|---|",
    ]
    out += [f"| `{name}` | {doc} |" for name, doc in COMMON_FIELDS.items()]
    for spec in CATALOGUE.values():
        out += ["", f"## `{spec.eventid}`", "", spec.description, ""]
        if spec.fields:
            out += ["| field | meaning |", "|---|---|"]
            out += [f"| `{name}` | {doc} |" for name, doc in spec.fields.items()]
        else:
            out.append("No fields beyond the common ones.")
    return "\n".join(out) + "\n"


if __name__ == "__main__":  # pragma: no cover
    print(catalogue_markdown(), end="")
