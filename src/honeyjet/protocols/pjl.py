"""The TCP 9100 stream as an HP printer sees it: PJL commands, print jobs, file uploads.

Sans-IO: :meth:`PJLEngine.feed` takes whatever bytes arrived and returns the replies
to send, the events to record and the captured job/file bytes (see
:mod:`honeyjet.protocols.outputs`). Output depends only on the byte sequence, never on
how it was chunked: the engine keeps an undecided tail (a partial line, a possible
UEL prefix, the first bytes of a job being sniffed) until more bytes decide it, and
every buffer has a bound.

Modes:

* **pjl** – between jobs. ``@PJL`` lines are commands (reply formats of the HP PJL
  Technical Reference); a UEL (``ESC%-12345X``) ends the PJL job scope; whitespace is
  held back; any other byte starts a print job (PERSONALITY=AUTO).
* **job** – print data up to the next UEL (or end of stream), captured byte-exact.
  PostScript is also fed to the safe interpreter, PCL to the status-readback scanner.
* **data** – the SIZE bytes following FSDOWNLOAD/FSAPPEND, captured as a file.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from honeyjet.persona.device import Device, variable_key
from honeyjet.persona.vfs import FILEERROR_TEXT, FSError, Resolved
from honeyjet.protocols.outputs import CaptureData, CaptureEnd, CaptureStart, Emit, Output, Send
from honeyjet.protocols.jobs import JobCapture
from honeyjet.protocols.pcl import PCLScanner
from honeyjet.protocols.pjl_grammar import Command, Option, parse_line
from honeyjet.protocols.postscript import PostScriptInterpreter
from honeyjet.text import escape

UEL = b"\x1b%-12345X"
FF = b"\x0c"
CRLF = b"\r\n"
_WS = frozenset(b" \t\r\n\x00\x0c\x04")
_PAGE_MESSAGES_MAX = 1000

#: commands a LaserJet of this era implements
KNOWN_COMMANDS = frozenset(
    """COMMENT ECHO ENTER INFO INQUIRE DINQUIRE SET DEFAULT RESET INITIALIZE JOB EOJ RDYMSG
    OPMSG STMSG USTATUS USTATUSOFF FSQUERY FSDIRLIST FSUPLOAD FSDOWNLOAD FSAPPEND FSDELETE
    FSMKDIR FSINIT""".split()
)
#: service / NVRAM / maintenance commands: accepted silently, flagged in events
SERVICE_COMMANDS = frozenset(
    "DMCMD DMINFO CLEARNVRAM NVRAMINIT RNVRAM WNVRAM LNVRAM EXECUTE SERVICEMODE FWUPDATE UPGRADE".split()
)
#: variables that only exist in service mode or for service tools
SERVICE_VARIABLES = frozenset(
    "SERVICEMODE OEM PAGES PRINTPAGECOUNT SERIALNUMBER TESTPAGE ENGINETEST CLEARNVRAM DEVICEID".split()
)
#: variables a driver sets per job that are not in the printer's variable table
JOB_VARIABLES = frozenset(
    """USERNAME JOBATTR JOBNAME HOLD HOLDKEY HOLDTYPE DATE TIME STRINGCODESET JOBID
    OWNER QTY FINISH OUTBIN EDGETOEDGE""".split()
)
_LANGUAGES = {"POSTSCRIPT": "postscript", "PCL": "pcl", "PCLXL": "pclxl", "PDF": "pdf"}
_USTATUS_OPTIONS = {"DEVICE": ("OFF", "ON", "VERBOSE"), "JOB": ("OFF", "ON"), "PAGE": ("OFF", "ON")}


def _uel_prefix(buf: bytearray) -> int:
    """Length of the longest suffix of ``buf`` that could begin a UEL."""
    tail = bytes(buf[-(len(UEL) - 1) :])
    for k in range(len(tail), 0, -1):
        if UEL.startswith(tail[-k:]):
            return k
    return 0


@dataclass
class _Job:
    capture: JobCapture | None  # None: past the session's job limit, read but not captured
    ps: PostScriptInterpreter | None = None
    pcl: PCLScanner | None = None


@dataclass
class _Upload:
    command: Command
    resolved: Resolved
    remaining: int
    append: bool
    keep: bool  # buffer for the virtual file system
    received: int = 0
    buf: bytearray = field(default_factory=bytearray)


class PJLEngine:
    """One 9100 connection's interpreter state (per-channel settings, job scope)."""

    def __init__(self, device: Device, *, max_line: int = 8192, max_file_bytes: int = 8 * 2**20, max_jobs: int = 1000):
        self.device = device
        self.max_line = max_line
        self.max_file_bytes = max_file_bytes
        self.max_jobs = max_jobs
        self._buf = bytearray()  # undecided bytes
        self._mode = "pjl"
        self._ws = bytearray()  # whitespace held back between commands
        self._overlong = False  # discarding the rest of an over-long line
        self._job: _Job | None = None
        self._upload: _Upload | None = None
        self._lang_next = ""  # ENTER LANGUAGE for the job that follows
        # job scope (PJL JOB ... EOJ, or until UEL when no JOB is open)
        self._set: dict[str, str] = {}
        self._job_name = ""
        self._job_user = ""
        self._in_pjl_job = False
        self._pjl_job_pages = 0
        # unsolicited status settings of this channel
        self.ustatus = {"DEVICE": "OFF", "JOB": "OFF", "PAGE": "OFF"}
        self.timed_interval = 0
        self.jobs_done = 0

    # -- public API --------------------------------------------------------------------
    @property
    def buffered_bytes(self) -> int:
        held = len(self._buf) + len(self._ws)
        job = self._job
        if job is not None:
            held += job.capture.buffered_bytes if job.capture else 0
            held += (job.ps.buffered_bytes if job.ps else 0) + (job.pcl.buffered_bytes if job.pcl else 0)
        if self._upload is not None:
            held += len(self._upload.buf)
        return held

    def feed(self, data: bytes) -> list[Output]:
        out: list[Output] = []
        self._buf += data
        while self._buf:
            if not self._step(out, final=False):
                break
        return out

    def eof(self) -> list[Output]:
        """The peer closed its side: settle everything still undecided."""
        out: list[Output] = []
        while self._buf:
            if not self._step(out, final=True):
                break
        if self._upload is not None:
            self._finish_upload(out, complete=False)
        if self._job is not None:
            self._end_job(out, "eof")
        self._ws.clear()
        return out

    def timed_status(self) -> list[Output]:
        """The periodic message of ``USTATUS TIMED=n`` (the transport calls it every n s)."""
        if not self.timed_interval:
            return []
        return [Send(self._status_block("@PJL USTATUS TIMED"))]

    # -- the byte loop -----------------------------------------------------------------------
    def _step(self, out: list[Output], *, final: bool) -> bool:
        """Consume a decidable prefix of the buffer. False = need more bytes."""
        if self._mode == "data":
            return self._step_data(out)
        if self._mode == "job":
            return self._step_job(out, final)
        return self._step_pjl(out, final)

    def _step_pjl(self, out: list[Output], final: bool) -> bool:
        buf = self._buf
        if self._overlong:
            return self._skip_overlong(final)
        b0 = buf[0]
        if b0 in _WS:
            i = 1
            while i < len(buf) and buf[i] in _WS:
                i += 1
            self._ws += buf[:i]
            del buf[:i]
            if len(self._ws) > self.max_line:  # a flood of blank bytes: forget the oldest
                del self._ws[: -self.max_line]
            return True
        if b0 == 0x1B:  # UEL, or the ESC that starts a PCL job
            if len(buf) < len(UEL) and UEL.startswith(bytes(buf)) and not final:
                return False
            if buf.startswith(UEL):
                del buf[: len(UEL)]
                self._ws.clear()
                self._uel(out)
                return True
            self._start_job(out)
            return True
        if b0 == 0x40:  # '@'
            if len(buf) < 5 and b"@PJL ".startswith(bytes(buf)) and not final:
                return False
            cmd_probe = bytes(buf[:5])
            if cmd_probe.startswith(b"@PJL") and (len(cmd_probe) == 4 or cmd_probe[4:5] in (b" ", b"\t", b"\r", b"\n")):
                return self._take_line(out, final)
        self._start_job(out)
        return True

    def _take_line(self, out: list[Output], final: bool) -> bool:
        buf = self._buf
        limit = self.max_line
        nl = buf.find(b"\n", 0, limit + 1)
        esc = buf.find(UEL, 0, limit + len(UEL))
        if esc != -1 and (nl == -1 or esc < nl):
            # a UEL inside the line ends it unexecuted (status 20006), then acts as UEL
            line = bytes(buf[:esc])
            del buf[:esc]
            self._ws.clear()
            self._record_command(out, line)
            return True
        if nl != -1:
            line = bytes(buf[:nl])
            del buf[: nl + 1]
            self._ws.clear()
            if line.endswith(b"\r"):
                line = line[:-1]
            self._run_line(out, line)
            return True
        if len(buf) >= limit + len(UEL):
            line = bytes(buf[:limit])
            del buf[:limit]
            self._overlong = True
            out.append(Emit("honeyjet.limit.hit", f"PJL line longer than {limit} bytes", {"limit": "line_length", "value": limit}))
            self._record_command(out, line, truncated=True)
            return True
        if final:
            line = bytes(buf)
            buf.clear()
            self._record_command(out, line)
        return False

    def _skip_overlong(self, final: bool) -> bool:
        """Discard the rest of an over-long line, up to its LF or a UEL."""
        buf = self._buf
        nl = buf.find(b"\n")
        esc = buf.find(UEL)
        if esc != -1 and (nl == -1 or esc < nl):
            del buf[:esc]
            self._overlong = False
            return True
        if nl != -1:
            del buf[: nl + 1]
            self._overlong = False
            return True
        keep = 0 if final else _uel_prefix(buf)
        del buf[: len(buf) - keep]
        return False

    # -- jobs --------------------------------------------------------------------------------
    def _start_job(self, out: list[Output]) -> None:
        """Non-PJL bytes in PJL mode: a print job starts (with the held whitespace)."""
        language = self._lang_next
        self._lang_next = ""
        self._mode = "job"
        lead = bytes(self._ws)
        self._ws.clear()
        if self.jobs_done >= self.max_jobs:
            if self.jobs_done == self.max_jobs:
                out.append(Emit("honeyjet.limit.hit", f"session opened {self.max_jobs} jobs; later jobs are not captured", {"limit": "jobs_per_session", "value": self.max_jobs}))
            self.jobs_done += 1
            self._job = _Job(None)
            return
        self._job = _Job(JobCapture(self.device, language=language, name=self._job_name, user=self._job_user))
        if language:
            self._released(out, *self._job.capture.open_now())  # type: ignore[union-attr]
        if lead:
            self._job_data(out, lead)

    def _released(self, out: list[Output], outputs: list[Output], data: bytes) -> None:
        """Outputs of the capture, then interpreters for the bytes it released."""
        job = self._job
        assert job is not None and job.capture is not None
        out.extend(outputs)
        if any(isinstance(o, CaptureStart) for o in outputs):
            # the language is known now: start its interpreter, report the busy device
            if job.capture.language == "postscript":
                job.ps = PostScriptInterpreter(self.device)
            elif job.capture.language == "pcl":
                job.pcl = PCLScanner(self._memory_free())
            if self.ustatus["DEVICE"] != "OFF":
                out.append(Send(self._status_block("@PJL USTATUS DEVICE")))
        if data:
            if job.ps is not None:
                out.extend(job.ps.feed(data))
            elif job.pcl is not None:
                out.extend(job.pcl.feed(data))

    def _job_data(self, out: list[Output], data: bytes) -> None:
        job = self._job
        assert job is not None
        if job.capture is not None:
            self._released(out, *job.capture.feed(data))

    def _step_job(self, out: list[Output], final: bool) -> bool:
        buf = self._buf
        at = buf.find(UEL)
        if at != -1:
            if at:
                self._job_data(out, bytes(buf[:at]))
            del buf[: at + len(UEL)]
            self._end_job(out, "uel")
            self._uel(out)
            return True
        # keep a possible UEL prefix at the end undecided
        keep = 0 if final else _uel_prefix(buf)
        cut = len(buf) - keep
        if cut:
            self._job_data(out, bytes(buf[:cut]))
            del buf[:cut]
        return False

    def _end_job(self, out: list[Output], ended_by: str) -> None:
        job = self._job
        assert job is not None
        self._job = None
        self._mode = "pjl"
        capture = job.capture
        if capture is None:
            return
        if not capture.opened:
            self._job = job  # interpreters start as the language is decided
            self._released(out, *capture.open_now())
            self._job = None
        if job.ps is not None:
            out.extend(job.ps.end_of_job())
        if job.pcl is not None:
            out.extend(job.pcl.end())
        end = capture.end(ended_by)
        out.extend(end)
        pages = end[-1].meta["pages"]  # type: ignore[union-attr]
        self.jobs_done += 1
        self._pjl_job_pages += pages
        if self.ustatus["PAGE"] == "ON":
            for n in range(1, min(pages, _PAGE_MESSAGES_MAX) + 1):
                out.append(Send(b"@PJL USTATUS PAGE\r\n%d\r\n\x0c" % n))
        if self.ustatus["DEVICE"] != "OFF":
            out.append(Send(self._status_block("@PJL USTATUS DEVICE")))

    def _uel(self, out: list[Output]) -> None:
        """UEL: back to PJL; without an open PJL JOB the job scope ends here."""
        self._lang_next = ""
        if not self._in_pjl_job:
            self._end_scope()

    def _end_scope(self) -> None:
        self._set.clear()
        self._job_name = ""
        self._job_user = ""
        self._pjl_job_pages = 0

    # -- FSDOWNLOAD / FSAPPEND payload ----------------------------------------------------------
    def _step_data(self, out: list[Output]) -> bool:
        up = self._upload
        assert up is not None
        take = min(up.remaining, len(self._buf))
        chunk = bytes(self._buf[:take])
        del self._buf[:take]
        up.remaining -= take
        up.received += take
        if chunk:
            out.append(CaptureData(chunk))
            if up.keep:
                up.buf += chunk
        if up.remaining == 0:
            self._finish_upload(out, complete=True)
            return True
        return False

    def _finish_upload(self, out: list[Output], *, complete: bool) -> None:
        up = self._upload
        assert up is not None
        self._upload = None
        self._mode = "pjl"
        out.append(CaptureEnd({}))
        fields = self._fs_fields(up.command.command, up.resolved)
        fields["size"] = up.received
        error: int | None = None
        if not complete:
            error = 5  # invalid number of bytes: the stream ended early
        elif up.resolved.error is not None:
            error = up.resolved.error
        elif not up.keep:
            error = 2  # more than the volume can hold
        else:
            try:
                fields["shasum"] = self.device.vfs.write(up.resolved, bytes(up.buf), append=up.append)
            except FSError as exc:
                error = exc.code
        if error is not None:
            self._fs_error_status(out, error)
        self._fs_event(out, fields, error)

    # -- command dispatch ----------------------------------------------------------------------
    def _record_command(self, out: list[Output], line: bytes, *, truncated: bool = False) -> Command | None:
        """A line that is recorded but not executed (cut by UEL, over-long, unterminated)."""
        cmd = parse_line(line, truncated=truncated)
        if cmd is None:
            return None
        self._command_event(out, cmd, known=cmd.command in KNOWN_COMMANDS, replied=False, note="not executed")
        return cmd

    def _command_event(self, out: list[Output], cmd: Command, *, known: bool, replied: bool, note: str = "") -> None:
        service = cmd.command in SERVICE_COMMANDS or any(
            variable_key(o.key) in SERVICE_VARIABLES for o in cmd.options if cmd.command in ("SET", "DEFAULT")
        )
        text = escape(cmd.normalized(), 512)
        fields = {
            "command": escape(cmd.command, 64),
            "argument": text,
            "options": [[escape(o.key, 64), escape(o.value or "", 256)] for o in cmd.options[:32]],
            "known": known or service,
            "service_mode": service,
            "replied": replied,
            "truncated": cmd.truncated,
        }
        msg = f"PJL {text}" + (f" ({note})" if note else "")
        out.append(Emit("honeyjet.pjl.command", msg, fields))

    def _run_line(self, out: list[Output], line: bytes) -> None:
        cmd = parse_line(line)
        if cmd is None:  # cannot happen: _take_line is only called on '@PJL' lines
            return
        handler = getattr(self, f"_cmd_{cmd.command.lower()}", None) if cmd.command in KNOWN_COMMANDS else None
        before = len(out)
        if handler is not None:
            handler(out, cmd)
            replied = any(isinstance(o, Send) for o in out[before:])
            self._command_event(out, cmd, known=True, replied=replied)
            # keep the order "command event, then what it caused" for readers of the log
            out[before:] = out[-1:] + out[before:-1]
            return
        self._command_event(out, cmd, known=cmd.command == "", replied=False)
        if cmd.command and cmd.command not in SERVICE_COMMANDS and self.ustatus["DEVICE"] == "VERBOSE":
            out.append(Send(self._status_block("@PJL USTATUS DEVICE", code=20002)))

    # replies ----------------------------------------------------------------------------
    @staticmethod
    def _reply(first_line: str, lines: list[str] | None = None) -> Send:
        body = first_line + "\r\n" + "".join(line + "\r\n" for line in (lines or []))
        return Send(body.encode("latin-1", "replace") + FF)

    def _status_block(self, head: str, code: int | None = None) -> bytes:
        st = self.device.status()
        return (
            f'{head}\r\nCODE={code or st.code}\r\nDISPLAY="{st.display}"\r\nONLINE={"TRUE" if st.online else "FALSE"}\r\n'
        ).encode("latin-1", "replace") + FF

    def _memory_free(self) -> int:
        total = self.device.ram_bytes * 29 // 100
        return total - (total % 16) - 4096 * self.device.active_jobs

    # INFO -----------------------------------------------------------------------------------
    def _cmd_info(self, out: list[Output], cmd: Command) -> None:
        cat = (cmd.words[0] if cmd.words else (cmd.options[0].key if cmd.options else "")).upper()
        head = f"@PJL INFO {cat}".rstrip()
        builder = getattr(self, f"_info_{cat.lower()}", None) if cat.isalpha() else None
        if builder is not None:
            result = builder()
            if isinstance(result, bytes):
                out.append(Send(result))
            else:
                out.append(self._reply(head, result))
            return
        extra = self.device.persona.pjl.info.get(cat)
        if extra is not None:
            from honeyjet.persona.model import render

            out.append(self._reply(head, render(extra, self.device.values()).splitlines()))
            return
        out.append(self._reply(head, ['"?"']))

    def _info_id(self) -> list[str]:
        return [f'"{self.device.persona.pjl.id}"']

    def _info_status(self) -> bytes:
        return self._status_block("@PJL INFO STATUS")

    def _info_config(self) -> list[str]:
        from honeyjet.persona.model import render

        values = self.device.values()
        lines: list[str] = []
        for entry in self.device.persona.pjl.config:
            if entry.kind:
                lines.append(f"{entry.name} [{len(entry.options)} {entry.kind}]")
                lines.extend(f"\t{render(o, values)}" for o in entry.options)
            else:
                lines.append(f"{entry.name}={render(entry.value or '', values)}")
        return lines

    def _info_variables(self) -> list[str]:
        lines: list[str] = []
        for var in self.device.variables:
            if var.kind == "HIDDEN":
                continue
            current = self._current(var)
            if var.kind == "READONLY":
                lines.append(f"{var.name}={current} [1 READONLY]")
                continue
            lines.append(f"{var.name}={current} [{len(var.options)} {var.kind}]")
            lines.extend(f"\t{o}" for o in var.options)
        return lines

    def _info_ustatus(self) -> list[str]:
        lines: list[str] = []
        for name, opts in _USTATUS_OPTIONS.items():
            lines.append(f"{name}={self.ustatus[name]} [{len(opts)} ENUMERATED]")
            lines.extend(f"\t{o}" for o in opts)
        lines += [f"TIMED={self.timed_interval} [2 RANGE]", "\t5", "\t300"]
        return lines

    def _info_memory(self) -> list[str]:
        free = self._memory_free()
        return [f"TOTAL={free}", f"LARGEST={free - 256}"]

    def _info_pagecount(self) -> list[str]:
        from honeyjet.persona.model import render

        return [render(self.device.persona.pjl.pagecount_reply, {"pagecount": self.device.page_count()})]

    def _info_filesys(self) -> bytes:
        if not self.device.vfs.volumes:  # no file-system firmware: an unknown category
            return self._reply("@PJL INFO FILESYS", ['"?"']).data
        rows = ["\tVOLUME\tTOTAL SIZE\tFREE SPACE\tLOCATION\tLABEL\tSTATUS"]
        for name, vol in self.device.vfs.volumes.items():
            location = "RAM" if name == "0:" else "DISK"
            rows.append(f"\t{name}\t{vol.spec.total_bytes}\t{vol.free}\t{location}\t{vol.spec.label}\tREAD-WRITE")
        return self._reply(f"@PJL INFO FILESYS [{len(rows)} TABLE]", rows).data

    # ECHO, COMMENT ---------------------------------------------------------------------------
    def _cmd_echo(self, out: list[Output], cmd: Command) -> None:
        out.append(self._reply(f"@PJL ECHO {cmd.rest}".rstrip()))

    def _cmd_comment(self, out: list[Output], cmd: Command) -> None:
        low = cmd.rest.lower()
        if "username:" in low and not self._job_user:
            self._job_user = cmd.rest[low.index("username:") + 9 :].split(";")[0].strip().strip('"')[:128]

    # variables ---------------------------------------------------------------------------
    def _current(self, var: Any) -> str:
        return self._set.get(variable_key(var.name), self.device.default_value(var))

    def _var_name(self, cmd: Command, key: str) -> str:
        return f"{cmd.modifier_text} {key}" if cmd.modifier else key

    def _cmd_inquire(self, out: list[Output], cmd: Command, *, default: bool = False) -> None:
        word = cmd.words[0] if cmd.words else (cmd.options[0].key if cmd.options else "")
        name = self._var_name(cmd, word.upper())
        verb = "DINQUIRE" if default else "INQUIRE"
        var = self.device.variable(name)
        if var is None:
            value = '"?"'
        elif default:
            value = self.device.default_value(var)
        else:
            value = self._current(var)
        out.append(self._reply(f"@PJL {verb} {name}".rstrip(), [value]))

    def _cmd_dinquire(self, out: list[Output], cmd: Command) -> None:
        self._cmd_inquire(out, cmd, default=True)

    def _assignments(self, out: list[Output], cmd: Command, *, persist: bool) -> None:
        for opt in cmd.options:
            name = self._var_name(cmd, opt.key)
            key = variable_key(name)
            value = (opt.value or "").strip()
            if key in ("USERNAME", "JOBATTR") and not self._job_user and value:
                user = value.split("=", 1)[1] if key == "JOBATTR" and "=" in value else value
                self._job_user = user[:128]
            if key == "JOBNAME" and value and not self._job_name:
                self._job_name = value[:128]
            var = self.device.variable(name)
            if var is None:
                continue  # unknown variable: ignored, but recorded in the command event
            norm = self.device.normalize_value(var, value)
            if norm is None:
                if self.ustatus["DEVICE"] == "VERBOSE":
                    out.append(Send(self._status_block("@PJL USTATUS DEVICE", code=25005 if persist else 27004)))
                continue
            if persist:
                old, new = self.device.set_default(var, norm)
                out.append(
                    Emit(
                        "honeyjet.device.change",
                        f"default {escape(var.name, 64)} changed to {escape(new, 64)}",
                        {"setting": f"variable:{var.name}", "old": escape(old, 256), "new": escape(new, 256), "via": "DEFAULT"},
                    )
                )
            else:
                self._set[key] = norm

    def _cmd_set(self, out: list[Output], cmd: Command) -> None:
        self._assignments(out, cmd, persist=False)

    def _cmd_default(self, out: list[Output], cmd: Command) -> None:
        self._assignments(out, cmd, persist=True)

    def _cmd_reset(self, out: list[Output], cmd: Command) -> None:
        self._set.clear()

    def _cmd_initialize(self, out: list[Output], cmd: Command) -> None:
        self._set.clear()
        self.device.reset_defaults()
        out.append(
            Emit("honeyjet.device.change", "PJL variables reset to factory defaults", {"setting": "variables", "old": "", "new": "factory defaults", "via": "INITIALIZE"})
        )

    # jobs ----------------------------------------------------------------------------------
    def _cmd_job(self, out: list[Output], cmd: Command) -> None:
        self._in_pjl_job = True
        self._pjl_job_pages = 0
        name = cmd.value("NAME")
        if name is not None:
            self._job_name = name[:128]
        if self.ustatus["JOB"] == "ON":
            out.append(self._reply("@PJL USTATUS JOB", ["START", f'NAME="{self._job_name}"']))

    def _cmd_eoj(self, out: list[Output], cmd: Command) -> None:
        if self.ustatus["JOB"] == "ON":
            name = cmd.value("NAME") or self._job_name
            out.append(self._reply("@PJL USTATUS JOB", ["END", f'NAME="{name}"', f"PAGES={self._pjl_job_pages}"]))
        self._in_pjl_job = False
        self._end_scope()

    def _cmd_enter(self, out: list[Output], cmd: Command) -> None:
        lang = (cmd.value("LANGUAGE") or "").upper()
        if lang in _LANGUAGES and lang in {x.upper() for x in self.device.persona.device.languages}:
            self._lang_next = _LANGUAGES[lang]
            # the job starts right after this line, whatever its first bytes are
            self._start_job(out)
        elif self.ustatus["DEVICE"] == "VERBOSE":
            out.append(Send(self._status_block("@PJL USTATUS DEVICE", code=20004)))

    # display --------------------------------------------------------------------------------
    def _display_change(self, out: list[Output], via: str, old: str, new: str) -> None:
        out.append(
            Emit(
                "honeyjet.device.change",
                f"display changed by {via} to {escape(new, 64)}",
                {"setting": "display", "old": escape(old, 256), "new": escape(new, 256), "via": via},
            )
        )

    def _cmd_rdymsg(self, out: list[Output], cmd: Command) -> None:
        text = (cmd.value("DISPLAY") or "")[:255]
        old, new = self.device.set_ready_message(text)
        self._display_change(out, "RDYMSG", old, new)

    def _cmd_opmsg(self, out: list[Output], cmd: Command) -> None:
        text = (cmd.value("DISPLAY") or "")[:255]
        old, new = self.device.set_operator_message(text)
        self._display_change(out, cmd.command, old, new)
        if self.ustatus["DEVICE"] != "OFF":
            out.append(Send(self._status_block("@PJL USTATUS DEVICE")))

    _cmd_stmsg = _cmd_opmsg

    # unsolicited status ---------------------------------------------------------------------
    def _cmd_ustatus(self, out: list[Output], cmd: Command) -> None:
        for opt in cmd.options:
            value = (opt.value or "").upper()
            if opt.key in _USTATUS_OPTIONS and value in _USTATUS_OPTIONS[opt.key]:
                self.ustatus[opt.key] = value
            elif opt.key == "TIMED" and value.isdigit():
                n = int(value)
                self.timed_interval = 0 if n == 0 else min(300, max(5, n))

    def _cmd_ustatusoff(self, out: list[Output], cmd: Command) -> None:
        self.ustatus = {k: "OFF" for k in self.ustatus}
        self.timed_interval = 0

    # file system ----------------------------------------------------------------------------
    def _fs_fields(self, operation: str, r: Resolved) -> dict[str, Any]:
        return {
            "operation": operation,
            "path": escape(r.raw, 512),
            "normalized": escape(r.normalized, 512),
            "traversal": r.traversal,
        }

    def _fs_event(self, out: list[Output], fields: dict[str, Any], error: int | None) -> None:
        op, path = fields["operation"], fields["path"]
        if error is not None:
            fields["fileerror"] = error
            msg = f"{op} {path}: FILEERROR={error} ({FILEERROR_TEXT.get(error, 'error')})"
        else:
            msg = f"{op} {path}"
        if fields["traversal"]:
            msg += " [path traversal]"
        out.append(Emit("honeyjet.pjl.fs", msg, fields))

    def _fs_error_status(self, out: list[Output], code: int) -> None:
        """Errors of commands without a reply are reported only as unsolicited status."""
        if self.ustatus["DEVICE"] != "OFF":
            out.append(Send(self._status_block("@PJL USTATUS DEVICE", code=32000 + code)))

    def _name(self, cmd: Command) -> tuple[str, Resolved]:
        raw = cmd.value("NAME")
        if raw is None:
            raw = cmd.words[0] if cmd.words else ""
        return raw, self.device.vfs.resolve(raw)

    @staticmethod
    def _int(cmd: Command, key: str, default: int | None = None) -> int | None:
        raw = cmd.value(key)
        if raw is None:
            return default
        raw = raw.strip()
        if not raw.isdigit() or len(raw) > 12:
            return None
        return int(raw)

    def _cmd_fsquery(self, out: list[Output], cmd: Command) -> None:
        raw, r = self._name(cmd)
        head = f'@PJL FSQUERY NAME="{raw}"'
        fields = self._fs_fields("FSQUERY", r)
        try:
            kind, size = self.device.vfs.query(r)
        except FSError as exc:
            out.append(self._reply(head, [f"FILEERROR={exc.code}"]))
            self._fs_event(out, fields, exc.code)
            return
        out.append(self._reply(f"{head} TYPE=DIR" if kind == "DIR" else f"{head} TYPE=FILE SIZE={size}"))
        if kind == "FILE":
            fields["size"] = size
        self._fs_event(out, fields, None)

    def _cmd_fsdirlist(self, out: list[Output], cmd: Command) -> None:
        raw, r = self._name(cmd)
        entry = self._int(cmd, "ENTRY", 1) or 1
        count = self._int(cmd, "COUNT", 65535)
        head = f'@PJL FSDIRLIST NAME="{raw}" ENTRY={entry}'
        fields = self._fs_fields("FSDIRLIST", r)
        try:
            entries = self.device.vfs.listdir(r)
        except FSError as exc:
            out.append(self._reply(f'@PJL FSDIRLIST NAME="{raw}"', [f"FILEERROR={exc.code}"]))
            self._fs_event(out, fields, exc.code)
            return
        chosen = entries[entry - 1 : entry - 1 + (count if count is not None else 65535)]
        lines = [f"{n} TYPE=DIR" if t == "DIR" else f"{n} TYPE=FILE SIZE={s}" for n, t, s in chosen]
        out.append(self._reply(head, lines))
        fields["size"] = len(chosen)
        self._fs_event(out, fields, None)

    def _cmd_fsupload(self, out: list[Output], cmd: Command) -> None:
        raw, r = self._name(cmd)
        offset = self._int(cmd, "OFFSET", 0)
        size = self._int(cmd, "SIZE", None)
        fields = self._fs_fields("FSUPLOAD", r)
        try:
            if offset is None or (cmd.value("SIZE") is not None and size is None):
                raise FSError(17)  # invalid parameter
            data = self.device.vfs.read(r, offset, size)
        except FSError as exc:
            out.append(self._reply(f'@PJL FSUPLOAD NAME="{raw}"', [f"FILEERROR={exc.code}"]))
            self._fs_event(out, fields, exc.code)
            return
        head = f'@PJL FSUPLOAD FORMAT:BINARY NAME="{raw}" OFFSET={offset} SIZE={len(data)}\r\n'
        out.append(Send(head.encode("latin-1", "replace") + data + FF))
        fields.update(size=len(data), offset=offset)
        self._fs_event(out, fields, None)

    def _cmd_fsdownload(self, out: list[Output], cmd: Command, *, append: bool = False) -> None:
        raw, r = self._name(cmd)
        size = self._int(cmd, "SIZE", None)
        op = "FSAPPEND" if append else "FSDOWNLOAD"
        if size is None:
            self._fs_error_status(out, 5)
            self._fs_event(out, self._fs_fields(op, r), 5)
            return
        keep = size <= self.max_file_bytes and r.error is None and r.parts != ()
        self._upload = _Upload(cmd, r, size, append, keep)
        out.append(CaptureStart("file", {"operation": op, "path": escape(raw, 512)}))
        if size == 0:
            self._finish_upload(out, complete=True)
            return
        self._mode = "data"

    def _cmd_fsappend(self, out: list[Output], cmd: Command) -> None:
        self._cmd_fsdownload(out, cmd, append=True)

    def _silent_fs(self, out: list[Output], op: str, r: Resolved, action: Any) -> bool:
        """Run a file-system change that has no reply; errors go to unsolicited status."""
        fields = self._fs_fields(op, r)
        try:
            action()
        except FSError as exc:
            self._fs_error_status(out, exc.code)
            self._fs_event(out, fields, exc.code)
            return False
        self._fs_event(out, fields, None)
        return True

    def _cmd_fsdelete(self, out: list[Output], cmd: Command) -> None:
        _, r = self._name(cmd)
        self._silent_fs(out, "FSDELETE", r, lambda: self.device.vfs.delete(r))

    def _cmd_fsmkdir(self, out: list[Output], cmd: Command) -> None:
        _, r = self._name(cmd)
        self._silent_fs(out, "FSMKDIR", r, lambda: self.device.vfs.mkdir(r))

    def _cmd_fsinit(self, out: list[Output], cmd: Command) -> None:
        volume = cmd.value("VOLUME") or (cmd.words[0] if cmd.words else "")
        r = self.device.vfs.resolve(volume)
        if self._silent_fs(out, "FSINIT", r, lambda: self.device.vfs.initialize(volume)):
            out.append(
                Emit(
                    "honeyjet.device.change",
                    f"volume {escape(volume, 16)} initialised",
                    {"setting": "filesystem", "old": "", "new": escape(volume, 16), "via": "FSINIT"},
                )
            )


__all__ = ["PJLEngine", "UEL", "KNOWN_COMMANDS", "SERVICE_COMMANDS", "Option"]
