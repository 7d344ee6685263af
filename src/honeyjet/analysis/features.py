"""Session features: the normalised facts that detection rules read.

A :class:`SessionFeatures` is fed the events of one session in order (live from the
event bus, or from the store when re-analysing) and turns them into a flat mapping of
named features — PJL verbs and arguments after the engine's case/whitespace/UEL
normalisation, decoded file-system paths, PostScript operators as the tokenizer saw
them (never substrings of string literals), first-byte magic, job facts and
indicators. :data:`FEATURES` documents every name; ``docs/detection.md`` lists them and
a test keeps the two in step.

Everything here is bounded: sets and lists stop growing at :data:`MAX_ITEMS`, text at
:data:`MAX_TEXT` characters, so a session with a million commands costs no more than
the cap.
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass, field
from typing import Any, Callable

from honeyjet.analysis.paths import decode_path
from honeyjet.protocols.sniff import sniff
from honeyjet.text import unescape

MAX_ITEMS = 256
MAX_TEXT = 65536
MAX_PASSWORDS = 10000  # distinct JOB PASSWORD values counted (the count saturates there)

# name -> (type, description); types: str, int, float, bool, set (of str), list (of str)
FEATURES: dict[str, tuple[str, str]] = {
    # the connection
    "service": ("str", "Service that handled the session: `pjl` (9100), `http` (80), `ipp`, `lpd`, `snmp`, `browse`."),
    "src_ip": ("str", "Source address."),
    "src_private": ("bool", "Source is loopback, RFC 1918, link-local or unique-local."),
    "bytes_in": ("int", "Bytes the peer sent."),
    "bytes_out": ("int", "Bytes the sensor sent."),
    "duration_ms": ("int", "Session length."),
    "close_reason": ("str", "Why the session ended (`eof`, `done`, `idle_timeout`, …)."),
    "head": ("str", "The first 512 bytes the peer sent, as latin-1 text (exact bytes)."),
    "magic": ("str", "Language/protocol of the first bytes: `empty`, `pjl`, `postscript`, `pcl`, `pclxl`, `pdf`, `http`, `tls`, `socks`, `telnet`, `giop`, `text`, `binary`."),
    "probe": ("str", "Name of the known probe (rules data `[[probe]]`) the whole session input equals, e.g. `nmap:GenericLines`; empty if none."),
    "limits_hit": ("set", "Bounds the session reached (`line_length`, `session_bytes`, …)."),
    # PJL
    "pjl_count": ("int", "PJL command lines parsed."),
    "pjl_verbs": ("set", "PJL command words, upper case (`INFO`, `SET`, `FSUPLOAD`, …; empty `@PJL` lines are ``)."),
    "pjl_commands": ("list", "Normalised PJL lines without `@PJL `, upper case, in order (bounded)."),
    "pjl_options": ("set", "`KEY=VALUE` of every PJL option, upper case (`DISPLAY=…`, `COUNT=65535`)."),
    "pjl_option_keys": ("set", "Option keys, upper case."),
    "pjl_info": ("set", "INFO categories asked for (`ID`, `STATUS`, `PRODINFO`, …)."),
    "pjl_queries": ("set", "Distinct queries: `INFO x`, `INQUIRE v`, `DINQUIRE v`, `USTATUS x` without a value."),
    "pjl_query_count": ("int", "Number of distinct queries."),
    "pjl_ustatus_on": ("set", "Unsolicited-status subscriptions (`DEVICE`, `JOB`, `PAGE`, `TIMED`) set to a value."),
    "pjl_set_vars": ("set", "Variables changed with SET (per job)."),
    "pjl_default_vars": ("set", "Variables changed with DEFAULT (persistent, NVRAM)."),
    "pjl_default_writes": ("int", "DEFAULT commands (each is an NVRAM write on a real printer)."),
    "pjl_job_passwords": ("int", "Distinct `JOB PASSWORD=` values tried."),
    "pjl_default_password": ("set", "Values written with `DEFAULT PASSWORD=`."),
    "pjl_display": ("list", "Messages set with RDYMSG/STMSG/OPMSG."),
    "pjl_enter_language": ("set", "Languages entered with `ENTER LANGUAGE=`."),
    "pjl_echo_delimiter": ("int", "`ECHO DELIMITER<digits>` lines (PRET's framing)."),
    "pjl_max_value_len": ("int", "Longest option value or argument (escaped text; cut at 512)."),
    "pjl_max_number": ("int", "Largest option value that is a plain number."),
    "pjl_format_string": ("bool", "A printf-style conversion (`%n`, `%s`, `%x`, `%p`) in an argument."),
    "pjl_truncated": ("bool", "A PJL line exceeded the line-length bound."),
    "pjl_unknown": ("set", "Command words the printer does not implement."),
    "pjl_service_mode": ("bool", "A service/NVRAM command (SERVICEMODE, DMCMD, CLEARNVRAM, …)."),
    # PJL file system
    "fs_ops": ("set", "File-system operations (`FSQUERY`, `FSDIRLIST`, `FSUPLOAD`, …)."),
    "fs_paths": ("list", "File names after decoding (URL, double URL, overlong UTF-8, full-width, backslashes)."),
    "fs_traversal": ("bool", "A file name climbs above its volume after decoding, or the engine saw an escape."),
    "fs_encoded": ("bool", "A file name needed decoding (URL/overlong/full-width)."),
    "fs_tags": ("set", "Tags of the file names (rules data `[[path_tag]]`: `saved_jobs`, `web_root`, `host_system`, …)."),
    "fs_errors": ("set", "FILEERROR codes answered."),
    # PostScript
    "ps_operators": ("set", "Notable PostScript operators executed or refused (from the tokenizer/evaluator)."),
    "ps_categories": ("set", "Their categories: `file`, `persistent`, `control`, `password`, `device`, `stream`."),
    "ps_query_ops": ("set", "Device queries answered (`product`, `version`, `serialnumber`, …)."),
    "ps_printed": ("list", "What the job printed back with print/=/== (escaped, bounded)."),
    "ps_redefined": ("set", "Names defined in a persistent context (`/showpage`, `/show`, …)."),
    "ps_param_keys": ("set", "Keys passed to setpagedevice/setsystemparams/setuserparams/setdevparams (`BeginPage`, `Password`, …)."),
    "ps_loop_bodies": ("list", "Procedures handed to `loop` (text, cut at 256 characters)."),
    "ps_errors": ("set", "PostScript errors raised (`undefined`, `timeout` when the step budget ran out, …)."),
    "ps_file_paths": ("list", "File names given to file operators, decoded."),
    "ps_traversal": ("bool", "A PostScript file name climbs above its device after decoding."),
    "ps_file_tags": ("set", "Tags of those file names (`[[path_tag]]`)."),
    # PCL
    "pcl_commands": ("set", "PCL status-readback commands answered."),
    # jobs
    "job_count": ("int", "Print jobs captured."),
    "job_languages": ("set", "Their languages as sniffed/declared (`postscript`, `pcl`, `pdf`, `text`, `http`, `binary`, …)."),
    "job_bytes": ("int", "Total job bytes received."),
    "job_pages": ("int", "Estimated pages."),
    "job_names": ("list", "Job names (PJL JOB NAME, IPP job-name, LPD J/N)."),
    "job_users": ("list", "Users (PJL USERNAME/JOBATTR, IPP requesting-user-name, LPD P)."),
    "job_ended_by": ("set", "How jobs ended (`uel`, `eof`, `count`, `document`, `error`)."),
    "job_truncated": ("bool", "A stored job copy was cut by a cap."),
    # job forensics (honeyjet.job.analyzed)
    "job_analyzed": ("int", "Jobs with forensics results."),
    "job_kinds": ("set", "Languages found by forensics (`postscript`, `pcl5`, `pclxl`, `pdf`, `text`, `raster`, `binary`, …)."),
    "job_wrappers": ("set", "Outer layers forensics removed (`pjl`, `http`)."),
    "job_magic": ("list", "libmagic descriptions."),
    "job_text": ("str", "Extracted text of the jobs (bounded)."),
    "job_text_len": ("int", "Characters of extracted text."),
    "job_entropy": ("float", "Highest payload entropy (bits/byte)."),
    "job_indicator_types": ("set", "Indicator types found in job text (`url`, `domain`, `email`, `phone`, `btc`, `eth`, `xmr`, `ipv4`)."),
    "job_indicators": ("list", "Indicator values (`type:value`)."),
    "job_http_headers": ("set", "Header names of an HTTP-wrapped job (lower case)."),
    "job_pjl_commands": ("set", "PJL verbs found inside job bytes by forensics (e.g. inside an HTTP body)."),
    "job_upgrade_size": ("int", "Size announced by `@PJL UPGRADE SIZE=` (0 if none)."),
    "pcl_font_headers": ("int", "PCL soft-font headers downloaded (`ESC)s#W`)."),
    "pcl_font_anomalies": ("int", "Font headers whose size fields contradict the download (declared descriptor size beyond the data, below the minimum, unknown format)."),
    "pcl_macros": ("int", "PCL macro definitions."),
    "pcl_permanent": ("bool", "A font or macro made permanent (`ESC*c5F`, `ESC&f10X`)."),
    # HTTP on any port (port 80 requests, IPP's HTTP layer, HTTP sent to 9100)
    "http_methods": ("set", "Request methods."),
    "http_targets": ("list", "Request targets as sent."),
    "http_versions": ("set", "HTTP versions."),
    "http_user_agents": ("list", "User-Agent values."),
    "http_headers": ("set", "Header names, lower case."),
    "http_origin": ("list", "Origin and Referer values."),
    "http_absolute_target": ("bool", "A request target in absolute form (`http://host/…`) or authority form (CONNECT)."),
    "http_request_count": ("int", "HTTP requests."),
    "http_body_magic": ("set", "Language of request bodies / HTTP-wrapped job bodies (`pjl`, `postscript`, …)."),
    "http_malformed": ("bool", "A request could not be parsed."),
    # IPP
    "ipp_operations": ("set", "IPP operations (`Get-Printer-Attributes`, `Print-Job`, …)."),
    "ipp_versions": ("set", "IPP versions of the requests."),
    "ipp_count": ("int", "IPP requests."),
    "ipp_methods": ("set", "HTTP methods that carried IPP (PRET sends GET with a body)."),
    "ipp_request_ids": ("set", "IPP request ids (decimal)."),
    "ipp_printer_uris": ("list", "printer-uri values."),
    "ipp_document_formats": ("set", "document-format values."),
    "ipp_users": ("list", "requesting-user-name values."),
    "ipp_requested_attributes": ("int", "Values of requested-attributes."),
    # LPD
    "lpd_commands": ("set", "LPD commands (`receive`, `queue_short`, …)."),
    "lpd_queues": ("set", "Queue names."),
    "lpd_hosts": ("list", "Control-file H lines."),
    "lpd_users": ("list", "Control-file P lines."),
    # SNMP
    "snmp_pdus": ("set", "PDU types (`get`, `getnext`, `getbulk`, `set`, …)."),
    "snmp_versions": ("set", "SNMP versions."),
    "snmp_communities": ("set", "Community strings tried."),
    "snmp_bad_community": ("bool", "A community the device does not answer was tried."),
    "snmp_oids": ("list", "OIDs asked for (bounded)."),
    "snmp_requests": ("int", "SNMP requests."),
    # CUPS browsing (UDP 631)
    "browse_uris": ("list", "Printer URIs announced in CUPS browse packets."),
    "browse_private_uri": ("bool", "Every announced URI points at a private/loopback address."),
    "browse_packets": ("int", "CUPS browse packets."),
    # text of the job checked against rule lexicons
    "lexicon": ("dict", "`lexicon.<name>`: distinct terms of lexicon `<name>` (rules data `[[lexicon]]`) found in the job text and display messages."),
}

_EMPTY: dict[str, Any] = {"set": frozenset(), "list": (), "int": 0, "float": 0.0, "bool": False, "str": "", "dict": {}}
_DEFAULTS: dict[str, Any] = {name: _EMPTY[kind] for name, (kind, _) in FEATURES.items()}


def _private(ip: str) -> bool:
    try:
        addr = ipaddress.ip_address(ip)
    except ValueError:
        return False
    if addr.version == 6 and addr.ipv4_mapped:  # type: ignore[union-attr]
        addr = addr.ipv4_mapped  # type: ignore[union-attr]
    return addr.is_private or addr.is_loopback or addr.is_link_local


def _text(value: Any) -> str:
    """Event text (escaped) back to latin-1 text of the exact bytes."""
    if not isinstance(value, str):
        return "" if value is None else str(value)
    return unescape(value).decode("latin-1") if "\\" in value else value


_NUM = re.compile(r"-?\d{1,40}")
_FMT = re.compile(r"%[-+ #0-9.]*[nspx]", re.I)
_ECHO_DELIM = re.compile(r"^ECHO\s+DELIMITER\d+", re.I)
_PS_NAME = re.compile(r"/([A-Za-z][A-Za-z0-9_.-]{0,63})")
_PS_STRING = re.compile(r"^\((.*)\)$", re.S)


@dataclass
class Vocab:
    """Data the rules files declare that features are computed with."""

    path_tags: list[tuple[str, re.Pattern[str]]] = field(default_factory=list)
    lexicons: dict[str, re.Pattern[str]] = field(default_factory=dict)
    probes: dict[bytes, str] = field(default_factory=dict)

    def tag_path(self, path: str) -> set[str]:
        return {tag for tag, rx in self.path_tags if rx.search(path)}


class _Bag:
    """A bounded set/list pair."""

    __slots__ = ("items", "seen")

    def __init__(self) -> None:
        self.items: list[str] = []
        self.seen: set[str] = set()


class SessionFeatures:
    """Accumulates the events of one session into features (see :data:`FEATURES`)."""

    def __init__(self, vocab: Vocab):
        self.vocab = vocab
        self.f: dict[str, Any] = {}
        self.sets: dict[str, set[str]] = {}
        self.lists: dict[str, list[str]] = {}
        self.texts: list[str] = []
        self.text_len = 0
        self.head = b""
        self.job_passwords: set[str] = set()
        self.jobs_pending: dict[str, int] = {}  # shasum -> job number of captured jobs awaiting forensics
        self.campaigns: list[str] = []
        self.closed = False
        self.session = ""
        self.identity: dict[str, Any] = {}
        self.events = 0

    # -- accumulation helpers ----------------------------------------------------------
    def _add(self, name: str, value: str) -> None:
        s = self.sets.get(name)
        if s is None:
            s = self.sets[name] = set()
        if len(s) < MAX_ITEMS:
            s.add(value)

    def _append(self, name: str, value: str) -> None:
        lst = self.lists.get(name)
        if lst is None:
            lst = self.lists[name] = []
        if len(lst) < MAX_ITEMS:
            lst.append(value)

    def _inc(self, name: str, n: int = 1) -> None:
        self.f[name] = self.f.get(name, 0) + n

    def _max(self, name: str, value: int | float) -> None:
        if value > self.f.get(name, 0):
            self.f[name] = value

    def _flag(self, name: str) -> None:
        self.f[name] = True

    def _add_text(self, text: str) -> None:
        if text and self.text_len < MAX_TEXT:
            text = text[: MAX_TEXT - self.text_len]
            self.texts.append(text)
            self.text_len += len(text)

    # -- events ------------------------------------------------------------------------
    def add(self, event: dict[str, Any]) -> None:
        self.events += 1
        if not self.session:
            self.session = str(event.get("session") or "")
            self.identity = {k: event.get(k) for k in ("session", "protocol", "src_ip", "src_port", "dst_ip", "dst_port", "sensor")}
            self.f["service"] = str(event.get("protocol") or "")
            ip = str(event.get("src_ip") or "")
            self.f["src_ip"] = ip
            self.f["src_private"] = _private(ip)
        handler = _HANDLERS.get(event.get("eventid", ""))
        if handler is not None:
            handler(self, event)

    def _closed(self, e: dict[str, Any]) -> None:
        self.closed = True
        for k in ("bytes_in", "bytes_out", "duration_ms"):
            v = e.get(k)
            if isinstance(v, int):
                self.f[k] = v
        self.f["close_reason"] = str(e.get("reason") or "")
        head = e.get("head")
        if isinstance(head, str):
            self.head = unescape(head)

    def _limit(self, e: dict[str, Any]) -> None:
        self._add("limits_hit", str(e.get("limit") or ""))

    def _pjl(self, e: dict[str, Any]) -> None:
        self._inc("pjl_count")
        verb = _text(e.get("command")).upper()
        arg = _text(e.get("argument"))
        arg_u = arg.upper()
        self._add("pjl_verbs", verb)
        self._append("pjl_commands", arg_u[:512])
        if e.get("known") is False:
            self._add("pjl_unknown", verb)
        if e.get("service_mode"):
            self._flag("pjl_service_mode")
        if e.get("truncated"):
            self._flag("pjl_truncated")
        self._max("pjl_max_value_len", len(arg) - len(verb) - 1)
        if _FMT.search(arg):
            self._flag("pjl_format_string")
        options = e.get("options") or []
        values: dict[str, str] = {}
        for pair in options if isinstance(options, list) else []:
            if not (isinstance(pair, (list, tuple)) and len(pair) == 2):
                continue
            key, value = _text(pair[0]).upper(), _text(pair[1])
            values[key] = value
            self._add("pjl_option_keys", key)
            self._add("pjl_options", f"{key}={value.upper()}"[:256])
            self._max("pjl_max_value_len", len(value))
            if _NUM.fullmatch(value.strip()):
                self._max("pjl_max_number", int(value.strip()))
        words = arg_u.split()
        second = words[1] if len(words) > 1 else ""
        if verb == "INFO":
            self._add("pjl_info", second)
            self._add("pjl_queries", f"INFO {second}")
        elif verb in ("INQUIRE", "DINQUIRE"):
            self._add("pjl_queries", f"{verb} {second}")
        elif verb == "USTATUS":
            if values:
                for key in values:
                    self._add("pjl_ustatus_on", key)
            elif "=" in arg_u:
                self._add("pjl_ustatus_on", second.split("=")[0])
            else:
                self._add("pjl_queries", f"USTATUS {second}")
        elif verb == "SET":
            for key in values:
                self._add("pjl_set_vars", key)
        elif verb == "DEFAULT":
            self._inc("pjl_default_writes")
            for key, value in values.items():
                self._add("pjl_default_vars", key)
                if key == "PASSWORD":
                    self._add("pjl_default_password", value.strip())
        elif verb in ("RDYMSG", "STMSG", "OPMSG"):
            msg = values.get("DISPLAY", arg[len(verb):].strip())
            self._append("pjl_display", msg[:256])
            self._add_text(msg)
        elif verb == "ENTER":
            lang = values.get("LANGUAGE")
            if lang:
                self._add("pjl_enter_language", lang.strip().upper())
        elif verb == "ECHO":
            if _ECHO_DELIM.match(arg):
                self._inc("pjl_echo_delimiter")
        if verb == "JOB" and "PASSWORD" in values and len(self.job_passwords) < MAX_PASSWORDS:
            self.job_passwords.add(values["PASSWORD"][:64])
        if verb in ("SERVICEMODE", "DMCMD", "CLEARNVRAM", "RNVRAM", "NVRAMINIT"):
            self._flag("pjl_service_mode")
        if "SERVICEMODE" in values:
            self._flag("pjl_service_mode")

    def _path(self, raw: str, prefix: str, engine_traversal: bool = False) -> None:
        p = decode_path(raw)
        self._append(f"{prefix}_paths", (p.volume + "/" + p.decoded)[:512])
        if p.traversal or engine_traversal:
            self._flag(f"{prefix}_traversal")
        if p.encoded and prefix == "fs":
            self._flag("fs_encoded")
        tag_feature = "fs_tags" if prefix == "fs" else "ps_file_tags"
        for tag in self.vocab.tag_path("/" + p.decoded):
            self._add(tag_feature, tag)

    def _fs(self, e: dict[str, Any]) -> None:
        self._add("fs_ops", _text(e.get("operation")).upper())
        raw = e.get("path")
        self._path(raw if isinstance(raw, str) else "", "fs", bool(e.get("traversal")))
        if e.get("fileerror") is not None:
            self._add("fs_errors", str(e.get("fileerror")))

    def _ps_query(self, e: dict[str, Any]) -> None:
        op = _text(e.get("operator"))
        self._add("ps_operators", op)
        if op in ("print", "=", "==", "flush", "pstack", "stack"):
            self._append("ps_printed", _text(e.get("reply"))[:256])
        else:
            self._add("ps_query_ops", op)

    def _ps_operator(self, e: dict[str, Any]) -> None:
        op = _text(e.get("operator"))
        cat = _text(e.get("category"))
        self._add("ps_operators", op)
        self._add("ps_categories", cat)
        operands = e.get("operands") or []
        operands = [_text(o) for o in operands if isinstance(o, str)] if isinstance(operands, list) else []
        if op in ("def", "store", "put") and cat == "persistent" and operands:
            self._add("ps_redefined", operands[0].lstrip("/")[:64])
        if op in ("setpagedevice", "setsystemparams", "setuserparams", "setdevparams"):
            for text in operands:
                for name in _PS_NAME.findall(text[:2048]):
                    self._add("ps_param_keys", name)
        if op == "loop" and operands:
            self._append("ps_loop_bodies", operands[-1][:256])
        if cat == "file":
            for text in operands:
                m = _PS_STRING.match(text.strip())
                if m:
                    self._path(m.group(1), "ps", False)

    def _ps_error(self, e: dict[str, Any]) -> None:
        self._add("ps_errors", _text(e.get("error")))
        op = _text(e.get("operator"))
        if op:
            self._add("ps_operators", op)

    def _pcl(self, e: dict[str, Any]) -> None:
        self._add("pcl_commands", _text(e.get("command"))[:64])

    def _job_start(self, e: dict[str, Any]) -> None:
        self._add("job_languages", _text(e.get("language")))

    def _job_captured(self, e: dict[str, Any]) -> None:
        self._inc("job_count")
        self._add("job_languages", _text(e.get("language")))
        self._add("job_ended_by", _text(e.get("ended_by")))
        for key, feat in (("size", "job_bytes"), ("pages", "job_pages")):
            v = e.get(key)
            if isinstance(v, int):
                self._inc(feat, v)
        if e.get("truncated"):
            self._flag("job_truncated")
        for key, feat in (("name", "job_names"), ("user", "job_users")):
            v = _text(e.get(key))
            if v:
                self._append(feat, v[:256])
        sha = e.get("shasum")
        if isinstance(sha, str) and sha and len(self.jobs_pending) < MAX_ITEMS:
            job = e.get("job")
            self.jobs_pending[sha] = job if isinstance(job, int) else 0

    def _job_analyzed(self, e: dict[str, Any]) -> None:
        self._inc("job_analyzed")
        sha = e.get("shasum")
        if isinstance(sha, str):
            self.jobs_pending.pop(sha, None)
        campaign = e.get("campaign")
        if isinstance(campaign, str) and campaign and campaign not in self.campaigns:
            self.campaigns.append(campaign)
        add_job_report(self, e)

    def _http(self, e: dict[str, Any]) -> None:
        self._inc("http_request_count")
        method = _text(e.get("method"))
        target = _text(e.get("target"))
        if method:
            self._add("http_methods", method.upper())
        if target:
            self._append("http_targets", target[:512])
            if "://" in target[:16] or (method.upper() == "CONNECT"):
                self._flag("http_absolute_target")
        version = _text(e.get("version"))
        if version:
            self._add("http_versions", version)
        if e.get("malformed"):
            self._flag("http_malformed")
        headers = e.get("headers") or []
        for pair in headers if isinstance(headers, list) else []:
            if not (isinstance(pair, (list, tuple)) and len(pair) == 2):
                continue
            name, value = _text(pair[0]).lower(), _text(pair[1])
            self._add("http_headers", name)
            if name == "user-agent":
                self._append("http_user_agents", value[:256])
            elif name in ("origin", "referer"):
                self._append("http_origin", value[:256])

    def _ipp(self, e: dict[str, Any]) -> None:
        self._http(e)
        self._inc("ipp_count")
        self._add("ipp_operations", _text(e.get("operation")))
        self._add("ipp_versions", _text(e.get("ipp_version")))
        self._add("ipp_methods", _text(e.get("method")).upper())
        rid = e.get("request_id")
        if isinstance(rid, int):
            self._add("ipp_request_ids", str(rid))
        for key, feat in (("printer_uri", "ipp_printer_uris"), ("user", "ipp_users")):
            v = _text(e.get(key))
            if v:
                self._append(feat, v[:256])
        fmt = _text(e.get("document_format"))
        if fmt:
            self._add("ipp_document_formats", fmt.lower())
        attrs = e.get("attributes") or []
        for attr in attrs if isinstance(attrs, list) else []:
            if isinstance(attr, (list, tuple)) and len(attr) == 3 and attr[1] == "requested-attributes":
                self._inc("ipp_requested_attributes")

    def _lpd_command(self, e: dict[str, Any]) -> None:
        self._add("lpd_commands", _text(e.get("command")))
        q = _text(e.get("queue"))
        if q:
            self._add("lpd_queues", q[:64])

    def _lpd_job(self, e: dict[str, Any]) -> None:
        for key, feat in (("host", "lpd_hosts"), ("user", "lpd_users")):
            v = _text(e.get(key))
            if v:
                self._append(feat, v[:256])

    def _snmp(self, e: dict[str, Any]) -> None:
        self._inc("snmp_requests")
        self._add("snmp_pdus", _text(e.get("pdu")))
        self._add("snmp_versions", _text(e.get("version")))
        community = _text(e.get("community"))
        self._add("snmp_communities", community[:64])
        if e.get("community_ok") is False:
            self._flag("snmp_bad_community")
        oids = e.get("oids") or []
        for oid in oids if isinstance(oids, list) else []:
            self._append("snmp_oids", str(oid)[:128])

    def _browse(self, e: dict[str, Any]) -> None:
        self._inc("browse_packets")
        uri = _text(e.get("uri"))
        if uri:
            self._append("browse_uris", uri[:512])
            host = re.sub(r"^[a-z]+://(?:[^@/]*@)?", "", uri, flags=re.I).split("/")[0].rsplit(":", 1)[0].strip("[]")
            private = _private(host) or host in ("localhost", "")
            self.f["browse_private_uri"] = self.f.get("browse_private_uri", True) and private

    # -- result ------------------------------------------------------------------------
    def finish(self) -> dict[str, Any]:
        """The feature mapping (every name of :data:`FEATURES` present, typed)."""
        out = dict(_DEFAULTS)
        for name, values in self.sets.items():
            out[name] = frozenset(values)
        for name, items in self.lists.items():
            out[name] = list(items)
        out.update(self.f)
        out["pjl_job_passwords"] = len(self.job_passwords)
        out["pjl_query_count"] = len(out["pjl_queries"])
        head = self.head
        out["head"] = head.decode("latin-1")
        out["magic"] = sniff(head) if head else "empty"
        whole = head if out["bytes_in"] <= len(head) else None
        out["probe"] = self.vocab.probes.get(whole, "") if whole is not None else ""
        if "http" in (out["magic"],) and out["service"] == "pjl":
            _head_http(out, head)
        text = "\n".join(self.texts)
        out["job_text"] = text
        out["job_text_len"] = max(out["job_text_len"], len(text))
        out["lexicon"] = {name: len({m.group(0).lower() for m in rx.finditer(text)}) for name, rx in self.vocab.lexicons.items()}
        return out


def add_job_report(feats: SessionFeatures, e: dict[str, Any]) -> None:
    """Fold one ``honeyjet.job.analyzed`` event (a forensics report) into the features."""
    kind = e.get("language")
    if isinstance(kind, str) and kind:
        feats._add("job_kinds", kind)
    for w in e.get("wrappers") or []:
        if isinstance(w, str):
            feats._add("job_wrappers", w)
    magic = e.get("magic")
    if isinstance(magic, str) and magic:
        feats._append("job_magic", magic[:256])
    text = e.get("_text_full")  # live: the whole extracted text; stored events keep 4 KiB, escaped
    if not isinstance(text, str):
        text = _text(e.get("text"))
    feats._add_text(text)
    tl = e.get("text_chars")
    if isinstance(tl, int):
        feats._inc("job_text_len", tl)
    ent = e.get("entropy")
    if isinstance(ent, (int, float)):
        feats._max("job_entropy", float(ent))
    for ind in e.get("indicators") or []:
        if isinstance(ind, dict) and isinstance(ind.get("type"), str):
            feats._add("job_indicator_types", ind["type"])
            feats._append("job_indicators", f"{ind['type']}:{str(ind.get('value', ''))[:200]}")
    http = e.get("http") or {}
    if isinstance(http, dict):
        method = http.get("method")
        if isinstance(method, str) and method:
            feats._add("http_methods", method.upper())
        for pair in http.get("headers") or []:
            if isinstance(pair, (list, tuple)) and len(pair) == 2 and isinstance(pair[0], str):
                name = pair[0].lower()
                feats._add("job_http_headers", name)
                feats._add("http_headers", name)
                if name in ("origin", "referer"):
                    feats._append("http_origin", str(pair[1])[:256])
                elif name == "user-agent":
                    feats._append("http_user_agents", str(pair[1])[:256])
        body = http.get("body_language")
        if isinstance(body, str) and body:
            feats._add("http_body_magic", body)
    pjl = e.get("pjl") or {}
    if isinstance(pjl, dict):
        for verb in pjl.get("commands") or []:
            if isinstance(verb, str):
                feats._add("job_pjl_commands", verb.upper())
        size = pjl.get("upgrade_size")
        if isinstance(size, int):
            feats._max("job_upgrade_size", size)
    pcl = e.get("pcl") or {}
    if isinstance(pcl, dict):
        for key, feat in (("font_headers", "pcl_font_headers"), ("font_anomalies", "pcl_font_anomalies"), ("macros", "pcl_macros")):
            v = pcl.get(key)
            if isinstance(v, int):
                feats._inc(feat, v)
        if pcl.get("permanent"):
            feats._flag("pcl_permanent")


_HTTP_LINE = re.compile(rb"^([A-Z]{3,10}) (\S{1,2048}) (HTTP/\d\.\d)\r?\n", re.I)


def _head_http(out: dict[str, Any], head: bytes) -> None:
    """HTTP sent to the raw port: the request line and headers from the first bytes."""
    data = head.lstrip(b"\r\n\t ")
    m = _HTTP_LINE.match(data)
    if not m:
        return
    method, target, version = (g.decode("latin-1") for g in m.groups())
    out["http_methods"] = out["http_methods"] | {method.upper()}
    out["http_targets"] = list(out["http_targets"]) + [target]
    out["http_versions"] = out["http_versions"] | {version}
    out["http_request_count"] = max(out["http_request_count"], 1)
    if "://" in target[:16] or method.upper() == "CONNECT":
        out["http_absolute_target"] = True
    names = set(out["http_headers"])
    agents, origins = list(out["http_user_agents"]), list(out["http_origin"])
    head_end = data.find(b"\r\n\r\n")
    block = data[m.end(): head_end if head_end >= 0 else len(data)]
    for line in block.split(b"\n"):
        name, sep, value = line.partition(b":")
        if not sep:
            continue
        n = name.strip().decode("latin-1").lower()
        v = value.strip().decode("latin-1")
        names.add(n)
        if n == "user-agent" and v not in agents:
            agents.append(v)
        elif n in ("origin", "referer") and v not in origins:
            origins.append(v)
    out["http_headers"] = frozenset(names)
    out["http_user_agents"], out["http_origin"] = agents, origins
    if head_end >= 0:
        body = data[head_end + 4:]
        if body:
            out["http_body_magic"] = out["http_body_magic"] | {_body_magic(body)}


def _body_magic(body: bytes) -> str:
    b = body.lstrip(b"\r\n\t ")
    if b.startswith(b"\x1b%-12345X") or b.startswith(b"@PJL"):
        return "pjl"
    return sniff(b)


_HANDLERS: dict[str, Callable[[SessionFeatures, dict[str, Any]], None]] = {
    "honeyjet.session.closed": SessionFeatures._closed,
    "honeyjet.limit.hit": SessionFeatures._limit,
    "honeyjet.pjl.command": SessionFeatures._pjl,
    "honeyjet.pjl.fs": SessionFeatures._fs,
    "honeyjet.ps.query": SessionFeatures._ps_query,
    "honeyjet.ps.operator": SessionFeatures._ps_operator,
    "honeyjet.ps.error": SessionFeatures._ps_error,
    "honeyjet.pcl.command": SessionFeatures._pcl,
    "honeyjet.job.start": SessionFeatures._job_start,
    "honeyjet.job.captured": SessionFeatures._job_captured,
    "honeyjet.job.analyzed": SessionFeatures._job_analyzed,
    "honeyjet.http.request": SessionFeatures._http,
    "honeyjet.ipp.request": SessionFeatures._ipp,
    "honeyjet.lpd.command": SessionFeatures._lpd_command,
    "honeyjet.lpd.job": SessionFeatures._lpd_job,
    "honeyjet.snmp.request": SessionFeatures._snmp,
    "honeyjet.browse.packet": SessionFeatures._browse,
}
