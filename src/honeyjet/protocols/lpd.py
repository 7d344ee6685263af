"""The LPD port (RFC 1179, TCP 515) as an HP JetDirect answers it.

Sans-IO: :meth:`LPDEngine.feed` takes whatever bytes arrived and returns the replies, the
events and the captured job bytes (see :mod:`honeyjet.protocols.outputs`); the output
depends only on the byte sequence, never on how it was chunked. Every buffer is bounded:
a command line by ``max_line``, a control file
by the persona's ``max_control_bytes``, a data file's undecided head by
:class:`~honeyjet.protocols.jobs.JobCapture`; data files themselves stream into captures.

Daemon commands (one line each, the first byte is the command):

* ``\\x01queue`` print any waiting jobs: RFC 1179 defines no reply. The persona's
  ``print_waiting_reply`` (one NUL byte for the HP persona, what network printers send and
  what nmap's ``LPDString`` probe matches as ``printer``) is sent, then the connection closes.
* ``\\x02queue`` receive a job: ``\\0``, then subcommands until the peer closes:
  ``\\x01`` abort, ``\\x02<count> cfA…`` control file, ``\\x03<count> dfA…`` data file. Each file
  subcommand is acknowledged with ``\\0``, then exactly ``count`` bytes and one NUL byte
  follow, acknowledged with ``\\0`` again (a non-NUL byte there is refused with ``\\x01``).
  A data-file count of 0 means "until the connection ends" (LPRng's extension; Windows and
  CUPS' stream mode announce a huge count and close instead, which ends the same way).
* ``\\x03queue [list]`` / ``\\x04queue [list]`` short / long queue state: text, then close.
* ``\\x05queue agent [list]`` remove jobs: the persona's ``remove_reply`` (none), then close.

Any other first byte closes the connection at once, without a word (an unknown
subcommand inside a receive-job gets the refusal byte first); so does an over-long line.

Jobs. Control and data files may come in either order, several jobs per connection. The
files of one job form a *group*: its control file (host, user, title, …) and the data
files. A data file is a print job (:class:`JobCapture`); when the control file came
first it names the job, and when it comes later the data file's capture is held open
until it arrives so the job still gets its name and user. A group is finished (and
``honeyjet.lpd.job`` emitted) when its control file and every data file it names have
arrived, on abort, when a new control file begins another job, or when the connection ends.

The queue listing is the device's job log seen through a print engine of the persona's
speed: a job stays listed while the engine would still be printing it, whichever
protocol delivered it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from honeyjet.persona.device import Device
from honeyjet.persona.model import render
from honeyjet.persona.model_lpd import LPDSection
from honeyjet.protocols.jobs import JobCapture
from honeyjet.protocols.outputs import Close, Emit, Output, Send
from honeyjet.text import escape

ACK = b"\x00"
COMMANDS = {1: "print", 2: "receive", 3: "queue_short", 4: "queue_long", 5: "remove"}
SUBCOMMANDS = {1: "abort", 2: "control_file", 3: "data_file"}
#: control-file lines that print a data file (RFC 1179 §7: c d f g l n o p r t v; k and z
#: are used by some spoolers)
PRINT_CODES = frozenset(b"cdfgklnoprtvz")
_FIRST_WINS = frozenset(b"CHIJLMNPSTW")
CONTROL_LINES_MAX = 64  # [code, value] pairs carried by the job event
FILES_MAX = 64  # data-file names remembered per job group
_COUNT = re.compile(rb"[ \t]*([0-9]{1,32})(?:[ \t]+(.*))?", re.DOTALL)
_QUEUE = re.compile(rb"[ \t]*([^ \t]*)[ \t]*(.*)", re.DOTALL)  # queue name, then the rest


def _printable(data: bytes, limit: int = 32) -> str:
    """Attacker text fit to be echoed in a reply: printable ASCII only, bounded."""
    return bytes(b for b in data[:limit] if 0x21 <= b <= 0x7E).decode("ascii")


def _ordinal(n: int) -> str:
    suffix = "th" if 10 <= n % 100 <= 20 else {1: "st", 2: "nd", 3: "rd"}.get(n % 10, "th")
    return f"{n}{suffix}"


class QueueBook:
    """Jobs LPD clients removed (``lprm``): shared by the sessions of one service, bounded."""

    def __init__(self, limit: int = 1000):
        self.limit = limit
        self._removed: dict[int, None] = {}

    def remove(self, job: int) -> None:
        self._removed[job] = None
        while len(self._removed) > self.limit:
            del self._removed[next(iter(self._removed))]

    def __contains__(self, job: object) -> bool:
        return job in self._removed


def queue_entries(device: Device, section: LPDSection, book: QueueBook, now: float) -> list[dict[str, Any]]:
    """Jobs of the device's job log the print engine would still be busy with at ``now``.

    The engine takes jobs in arrival order at ``pages_per_minute``, plus
    ``first_page_seconds`` whenever it starts from idle.
    """
    per_page = 60.0 / section.pages_per_minute
    busy_until = float("-inf")
    entries: list[dict[str, Any]] = []
    jobs = device.state["jobs"]
    for rec in jobs if isinstance(jobs, list) else []:
        if not isinstance(rec, dict):
            continue
        try:
            ts = float(rec.get("ts", 0.0))
            pages = max(0, int(rec.get("pages", 0)))
            number = int(rec.get("job", 0))
            size = max(0, int(rec.get("size", 0)))
        except (TypeError, ValueError, OverflowError):
            continue
        start = ts + section.first_page_seconds if ts >= busy_until else busy_until
        busy_until = start + pages * per_page
        if busy_until <= now or number in book:
            continue
        entries.append(
            {
                "job": number,
                "owner": str(rec.get("user") or "") or section.unknown_user,
                "files": str(rec.get("name") or "") or section.unknown_file,
                "size": size,
                "pages": pages,
                "language": str(rec.get("language") or ""),
            }
        )
    return entries


@dataclass
class _File:
    """A control or data file being received."""

    kind: str  # "control" | "data"
    name: bytes
    remaining: int | None  # None: until the connection ends (count 0)
    received: int = 0
    body: bytearray = field(default_factory=bytearray)  # control file, up to the bound
    capture: JobCapture | None = None  # data file captured as a print job
    over: bool = False  # control file longer than the bound


@dataclass
class _Group:
    """The files of one job inside a receive-job."""

    control: list[tuple[int, bytes]] | None = None  # (code, value) lines, None: none yet
    fields: dict[int, bytes] = field(default_factory=dict)  # first H, P, J, N, L, C, … value
    names: dict[bytes, None] = field(default_factory=dict)  # data files the control file prints
    files: list[bytes] = field(default_factory=list)  # data files received (bounded)
    received: dict[bytes, None] = field(default_factory=dict)
    jobs: list[int] = field(default_factory=list)
    pending: JobCapture | None = None  # data-file capture waiting for the control file
    nfiles: int = 0

    def empty(self) -> bool:
        return self.control is None and self.nfiles == 0

    def complete(self) -> bool:
        return self.control is not None and bool(self.names) and all(n in self.received for n in self.names)

    @property
    def title(self) -> bytes:
        return self.fields.get(ord("J")) or self.fields.get(ord("N")) or b""

    @property
    def user(self) -> bytes:
        return self.fields.get(ord("P")) or self.fields.get(ord("L")) or b""


class LPDEngine:
    """One port-515 connection."""

    def __init__(
        self,
        device: Device,
        section: LPDSection | None = None,
        *,
        max_line: int = 8192,
        max_jobs: int = 1000,
        book: QueueBook | None = None,
    ):
        self.device = device
        self.section = section or device.persona.lpd or LPDSection()
        self.max_line = max(64, max_line)
        self.max_jobs = max_jobs
        self.book = book if book is not None else QueueBook()
        self._buf = bytearray()
        self._mode = "command"  # command | sub | file | trailer | closed
        self._queue = b""
        self._family = ""
        self._file: _File | None = None
        self._group = _Group()
        self.jobs_done = 0  # data files seen (captured or past the limit)

    # -- public API ----------------------------------------------------------------------
    @property
    def buffered_bytes(self) -> int:
        held = len(self._buf)
        f = self._file
        if f is not None:
            held += len(f.body) + (f.capture.buffered_bytes if f.capture else 0)
        if self._group.pending is not None:
            held += self._group.pending.buffered_bytes
        return held

    @property
    def closed(self) -> bool:
        return self._mode == "closed"

    def feed(self, data: bytes) -> list[Output]:
        out: list[Output] = []
        if self._mode == "closed" or not data:
            return out
        self._buf += data
        while self._buf and self._mode != "closed":
            if not self._step(out, final=False):
                break
        if self._mode == "closed":
            self._buf.clear()
        return out

    def eof(self) -> list[Output]:
        """The peer closed its side (or the connection ended): settle everything."""
        out: list[Output] = []
        while self._buf and self._mode != "closed":
            if not self._step(out, final=True):
                break
        self._buf.clear()
        self._end_receive(out, "eof")
        self._mode = "closed"
        return out

    # -- the byte loop ---------------------------------------------------------------------
    def _step(self, out: list[Output], *, final: bool) -> bool:
        """Consume a decidable prefix of the buffer. False = need more bytes."""
        mode = self._mode
        if mode == "file":
            return self._step_file(out)
        if mode == "trailer":
            return self._step_trailer(out)
        if mode == "sub":
            return self._step_sub(out, final)
        return self._step_command(out, final)

    def _line(self, final: bool, limit: int) -> tuple[bytes, str] | None:
        """The next line: (bytes without LF/CR, how) with how = ``lf``, ``long`` or ``eof``."""
        buf = self._buf
        nl = buf.find(b"\n", 0, limit + 1)
        if nl != -1:
            line = bytes(buf[:nl])
            del buf[: nl + 1]
            return (line[:-1] if line.endswith(b"\r") else line), "lf"
        if len(buf) > limit:
            line = bytes(buf[:limit])
            del buf[:limit]
            return line, "long"
        if final:
            line = bytes(buf)
            buf.clear()
            return line, "eof"
        return None

    def _close(self, out: list[Output], reason: str) -> None:
        self._end_receive(out, "error")
        self._mode = "closed"
        out.append(Close(reason))

    # -- daemon commands ----------------------------------------------------------------------
    def _step_command(self, out: list[Output], final: bool) -> bool:
        code = self._buf[0]
        name = COMMANDS.get(code)
        if name is None:  # the first byte already says this is not LPD
            self._event(out, "unknown", "", escape(bytes([code])), reply=b"", note="not an LPD command")
            self._close(out, "lpd unknown command")
            return True
        got = self._line(final, self.max_line)
        if got is None:
            return False
        line, how = got
        m = _QUEUE.fullmatch(line, 1)
        assert m is not None  # the pattern matches any bytes
        queue, rest = m.group(1), m.group(2).rstrip(b" \t")
        if how != "lf":
            if how == "long":
                out.append(Emit("honeyjet.limit.hit", f"LPD command line longer than {self.max_line} bytes", {"limit": "line_length", "value": self.max_line}))
            self._event(out, name, queue, escape(rest, 512), reply=b"", note="not executed")
            if how == "long":
                self._close(out, "lpd line too long")
            else:
                self._mode = "closed"
            return True
        getattr(self, "_cmd_" + name)(out, queue, rest)
        return True

    def _cmd_print(self, out: list[Output], queue: bytes, rest: bytes) -> None:
        reply = self.section.print_waiting_reply.encode("latin-1")
        self._event(out, "print", queue, escape(rest, 512), reply=reply)
        if reply:
            out.append(Send(reply))
        self._close(out, "lpd print waiting jobs")

    def _cmd_receive(self, out: list[Output], queue: bytes, rest: bytes) -> None:
        family = self.section.family_of(queue.decode("latin-1"))
        if family is None:
            reply = self.section.refuse_reply.encode("latin-1")
            self._event(out, "receive", queue, escape(rest, 512), reply=reply, note="unknown queue refused")
            out.append(Send(reply))
            self._close(out, "lpd queue refused")
            return
        self._event(out, "receive", queue, escape(rest, 512), reply=ACK, note=f"{family} queue")
        out.append(Send(ACK))
        self._queue = queue
        self._family = family
        self._mode = "sub"

    def _cmd_queue_short(self, out: list[Output], queue: bytes, rest: bytes) -> None:
        self._queue_state(out, "queue_short", queue, rest)

    def _cmd_queue_long(self, out: list[Output], queue: bytes, rest: bytes) -> None:
        self._queue_state(out, "queue_long", queue, rest)

    def _cmd_remove(self, out: list[Output], queue: bytes, rest: bytes) -> None:
        words = rest.split()
        agent = words[0] if words else b""
        wanted = words[1:]
        removed: list[int] = []
        if self.section.family_of(queue.decode("latin-1")) is not None:
            entries = queue_entries(self.device, self.section, self.book, self.device.clock())
            if not wanted:
                entries = entries[:1]  # the active job
            for entry in entries:
                if not wanted or self._selected(entry, wanted):
                    self.book.remove(entry["job"])
                    removed.append(entry["job"])
        reply = render(self.section.remove_reply, self._values(queue)).encode("latin-1", "replace")
        note = f"agent {escape(agent, 64)}, removed {removed or 'nothing'}"
        self._event(out, "remove", queue, escape(rest, 512), reply=reply, note=note)
        if reply:
            out.append(Send(reply))
        self._close(out, "lpd remove jobs")

    @staticmethod
    def _selected(entry: dict[str, Any], wanted: list[bytes]) -> bool:
        for w in wanted:
            if w.isdigit():
                if int(w) == entry["job"]:
                    return True
            elif w.decode("latin-1") == entry["owner"]:
                return True
        return False

    # -- queue state -------------------------------------------------------------------------
    def _values(self, queue: bytes) -> dict[str, Any]:
        return self.device.values(queue=_printable(queue))

    def queue_text(self, queue: bytes, rest: bytes, *, long: bool) -> bytes:
        """The queue-state reply (short or long format) for ``queue`` and the request list."""
        sec = self.section
        values = self._values(queue)
        if sec.family_of(queue.decode("latin-1")) is None:
            return render(sec.unknown_queue_text, values).encode("latin-1", "replace")
        entries = queue_entries(self.device, sec, self.book, self.device.clock())
        wanted = rest.split()
        if wanted:
            entries = [e for e in entries if self._selected(e, wanted)]
        state = self.device.state_name()
        if state == "idle" and entries:
            state = "printing"
        parts = [render(sec.header[state], values)]
        if not entries:
            parts.append(render(sec.long_empty if long else sec.short_empty, values))
        else:
            if not long:
                parts.append(render(sec.short_columns, values))
            for i, e in enumerate(entries[: sec.max_listed]):
                rank = "active" if i == 0 else _ordinal(i)
                owner, files = e["owner"][:32], e["files"][:128]
                row = dict(
                    values,
                    rank=rank,
                    owner=owner,
                    job=e["job"],
                    job3=f"{e['job'] % 1000:03d}",
                    files=files,
                    size=e["size"],
                    pages=e["pages"],
                    language=e["language"],
                    rank_col=rank.ljust(7),
                    owner_col=owner[:10].ljust(11),
                    job_col=str(e["job"]).ljust(5),
                    files_col=(files[:37] + " ").ljust(38),
                    head_col=f"{owner}: {rank}".ljust(40),
                )
                parts.append(render(sec.long_entry if long else sec.short_entry, row))
        return "".join(parts).encode("latin-1", "replace")

    def _queue_state(self, out: list[Output], command: str, queue: bytes, rest: bytes) -> None:
        text = self.queue_text(queue, rest, long=command == "queue_long")
        self._event(out, command, queue, escape(rest, 512), reply=text)
        if text:
            out.append(Send(text))
        self._close(out, "lpd queue state sent")

    # -- receive-job subcommands ----------------------------------------------------------------
    def _step_sub(self, out: list[Output], final: bool) -> bool:
        code = self._buf[0]
        name = SUBCOMMANDS.get(code)
        refuse = self.section.refuse_reply.encode("latin-1")
        if name is None:
            self._event(out, "unknown", self._queue, escape(bytes([code])), reply=refuse, note="not a receive-job subcommand")
            out.append(Send(refuse))
            self._close(out, "lpd unknown subcommand")
            return True
        got = self._line(final, self.max_line)
        if got is None:
            return False
        line, how = got
        body = line[1:]
        if how != "lf":
            if how == "long":
                out.append(Emit("honeyjet.limit.hit", f"LPD subcommand line longer than {self.max_line} bytes", {"limit": "line_length", "value": self.max_line}))
            self._event(out, name, self._queue, escape(body, 512), reply=b"", note="not executed")
            if how == "long":
                self._close(out, "lpd line too long")
            return True
        if name == "abort":
            self._event(out, "abort", self._queue, escape(body, 512), reply=b"")
            self._end_group(out, "abort")
            return True
        m = _COUNT.fullmatch(body)
        if m is None:
            self._event(out, name, self._queue, escape(body, 512), reply=refuse, note="malformed count")
            out.append(Send(refuse))
            self._close(out, "lpd malformed subcommand")
            return True
        count = int(m.group(1))
        filename = (m.group(2) or b"").strip(b" \t")
        fields = {"size": count, "filename": escape(filename, 128)}
        if name == "control_file":
            if self._group.control is not None:  # a second control file: the next job begins
                self._end_group(out, "next job")
            self._event(out, name, self._queue, escape(body, 512), reply=ACK, extra=fields)
            out.append(Send(ACK))
            self._file = _File("control", filename, count)
        else:
            self._end_pending(out)
            note = "until the connection ends" if count == 0 else ""
            self._event(out, name, self._queue, escape(body, 512), reply=ACK, extra=fields, note=note)
            out.append(Send(ACK))
            self._file = _File("data", filename, count or None)
            self._start_capture(out, self._file)
        # a control file of 0 bytes is just its NUL; a data file of 0 bytes runs to the end
        self._mode = "trailer" if count == 0 and name == "control_file" else "file"
        return True

    def _start_capture(self, out: list[Output], f: _File) -> None:
        if self.jobs_done >= self.max_jobs:
            if self.jobs_done == self.max_jobs:
                out.append(Emit("honeyjet.limit.hit", f"session sent {self.max_jobs} jobs; later jobs are not captured", {"limit": "jobs_per_session", "value": self.max_jobs}))
            self.jobs_done += 1
            return
        self.jobs_done += 1
        g = self._group
        language = self.section.families.get(self._family, "")
        f.capture = JobCapture(
            self.device,
            language=language,
            name=g.title.decode("latin-1") if g.control is not None else "",
            user=g.user.decode("latin-1") if g.control is not None else "",
        )
        g.jobs.append(f.capture.number)
        if language:
            out.extend(f.capture.open_now()[0])

    def _step_file(self, out: list[Output]) -> bool:
        f = self._file
        assert f is not None
        buf = self._buf
        take = len(buf) if f.remaining is None else min(f.remaining, len(buf))
        if take:
            chunk = bytes(buf[:take])
            del buf[:take]
            f.received += take
            if f.kind == "control":
                room = self.section.max_control_bytes - len(f.body)
                if room > 0:
                    f.body += chunk[:room]
                if take > room and not f.over:
                    f.over = True
                    limit = self.section.max_control_bytes
                    out.append(Emit("honeyjet.limit.hit", f"LPD control file longer than {limit} bytes; the rest is not parsed", {"limit": "control_file", "value": limit}))
            elif f.capture is not None:
                out.extend(f.capture.feed(chunk)[0])
            if f.remaining is not None:
                f.remaining -= take
        if f.remaining == 0:
            self._mode = "trailer"
            return True
        return False

    def _step_trailer(self, out: list[Output]) -> bool:
        f = self._file
        assert f is not None
        ok = self._buf[0] == 0
        del self._buf[:1]
        self._file = None
        self._mode = "sub"
        if ok:
            out.append(Send(ACK))
        else:
            refuse = self.section.refuse_reply.encode("latin-1")
            command = "control_file" if f.kind == "control" else "data_file"
            self._event(out, command, self._queue, "", reply=refuse, extra={"size": f.received, "filename": escape(f.name, 128)}, note="file not followed by a NUL byte")
            out.append(Send(refuse))
        self._file_done(out, f, "count" if ok else "error")
        return True

    # -- job groups ----------------------------------------------------------------------------
    def _file_done(self, out: list[Output], f: _File, ended_by: str) -> None:
        """A file was received (completely or not): add it to the current group."""
        g = self._group
        if f.kind == "control":
            self._parse_control(g, bytes(f.body))
            if g.pending is not None:
                self._end_capture(out, g.pending, "count")
                g.pending = None
        else:
            g.nfiles += 1
            if len(g.files) < FILES_MAX:
                g.files.append(f.name)
                g.received[f.name] = None
            if f.capture is not None:
                if g.control is None and ended_by == "count":
                    g.pending = f.capture  # the control file may still name it
                else:
                    self._end_capture(out, f.capture, ended_by)
        if g.complete():
            self._end_group(out, "complete")

    def _parse_control(self, g: _Group, body: bytes) -> None:
        g.control = []
        for raw in body.split(b"\n"):
            line = raw[:-1] if raw.endswith(b"\r") else raw
            if not line or line == b"\x00":
                continue
            code, value = line[0], line[1:]
            if len(g.control) < CONTROL_LINES_MAX:
                g.control.append((code, value))
            if code in _FIRST_WINS and code not in g.fields:
                g.fields[code] = value
            if code in PRINT_CODES and len(g.names) < FILES_MAX:
                g.names[value] = None

    def _end_capture(self, out: list[Output], capture: JobCapture, ended_by: str) -> None:
        g = self._group
        if g.control is not None:
            capture.name = g.title.decode("latin-1")
            capture.user = g.user.decode("latin-1")
        out.extend(capture.end(ended_by))

    def _end_pending(self, out: list[Output]) -> None:
        g = self._group
        if g.pending is not None:
            self._end_capture(out, g.pending, "count")
            g.pending = None

    def _end_group(self, out: list[Output], why: str) -> None:
        self._end_pending(out)
        g = self._group
        self._group = _Group()
        if g.empty():
            return
        fields = {
            "queue": escape(self._queue, 128),
            "host": escape(g.fields.get(ord("H"), b""), 256),
            "user": escape(g.user, 256),
            "title": escape(g.title, 256),
            "control": [[escape(bytes([c]), 4), escape(v, 256)] for c, v in (g.control or [])],
            "files": [escape(n, 128) for n in g.files],
            "jobs": list(g.jobs),
            "ended_by": why,
        }
        who = f"{fields['user'] or '?'}@{fields['host'] or '?'}"
        control = "control file" if g.control is not None else "no control file"
        msg = f"LPD job for queue {fields['queue']!r} from {who}: {g.nfiles} data file(s), {control} ({why})"
        out.append(Emit("honeyjet.lpd.job", msg, fields))

    def _end_receive(self, out: list[Output], why: str) -> None:
        """The receive-job is over (connection ended or closed): settle the file and group."""
        f = self._file
        if f is not None:
            self._file = None
            self._file_done(out, f, why)
        self._end_group(out, why)

    # -- events ------------------------------------------------------------------------------
    def _event(
        self,
        out: list[Output],
        command: str,
        queue: bytes | str,
        arguments: str,
        *,
        reply: bytes,
        extra: dict[str, Any] | None = None,
        note: str = "",
    ) -> None:
        q = escape(queue, 128)
        fields: dict[str, Any] = {"command": command, "queue": q, "arguments": arguments}
        if extra:
            fields.update(extra)
        fields["replied"] = escape(reply, 256)
        what = f"LPD {command} queue {q!r}"
        if arguments:
            what += f" {arguments[:128]}"
        if note:
            what += f" ({note})"
        out.append(Emit("honeyjet.lpd.command", what, fields))
