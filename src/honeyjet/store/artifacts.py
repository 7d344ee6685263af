"""Content-addressed artifact store: print jobs, uploads and transcripts, named by sha256.

Layout::

    <root>/<sha256 hex>      one file per distinct content, mode 0o640
    <root>/.tmp/<random>     objects larger than ``spill_bytes`` while they stream in

A writer streams bytes in. The first ``spill_bytes`` stay in memory, so small objects
(most of them, and most duplicates) never touch the disk until they are known to be
new. Larger objects spill to a temp file under ``<root>/.tmp/`` (same file system, so
the final ``os.replace`` is atomic). The sha256 is computed while the bytes arrive;
on close the object is either found to exist already (a duplicate: the temp file is
removed) or renamed into place. File names are only ever sha256 hex digests: nothing
an attacker sends can choose a path.

Bounds:

* ``max_object_bytes`` (or the writer's ``max_bytes``) caps one object; bytes past the
  cap are counted in ``size`` but not stored (``truncated``).
* ``quota_bytes`` caps the bytes stored under the root. Bytes a live writer has taken
  are reserved against the quota at once, so concurrent writers together never exceed
  it; a duplicate's reservation is given back on close.
  **Quota policy:** a writer that reaches the quota stops storing and is marked
  ``truncated`` and ``quota_exceeded``; the prefix it already stored fits the quota
  by construction and **is kept** (its sha256 is the prefix's). If the quota left no
  room at all and bytes were offered, nothing is stored: ``path`` is ``None`` and
  ``shasum`` is ``""``. Past the quota cut the writer keeps hashing (CPU only) up to
  the per-object cap, so content that is already stored is still reported as a
  plain duplicate (not truncated, not ``quota_exceeded``) when the disk is full:
  scanners resend identical jobs, and those stay recognisable.
* An empty object (no bytes offered) is stored as the empty file like any other.

Everything here is synchronous: it runs on the event-loop thread and relies on the
page cache (``fsync=True`` syncs each new object and the directory before it becomes
visible). Disk errors never escape ``write``; the object is then reported as not
stored (``path`` None, ``truncated``) and counted in ``counters["errors"]``.
"""

from __future__ import annotations

import errno
import hashlib
import logging
import os
import re
import secrets
from dataclasses import dataclass
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

_HEX64 = re.compile(r"[0-9a-f]{64}")
TMP_DIR = ".tmp"
FILE_MODE = 0o640
DIR_MODE = 0o750

# writer states
_OPEN, _CLOSED, _ABORTED = 0, 1, 2


def is_shasum(value: object) -> bool:
    """True for a 64-character lowercase sha256 hex string."""
    return isinstance(value, str) and _HEX64.fullmatch(value) is not None


@dataclass(frozen=True, slots=True)
class ArtifactInfo:
    shasum: str  # sha256 hex of the STORED bytes; "" when nothing was stored
    size: int  # bytes offered to the writer (may exceed stored_size)
    stored_size: int
    truncated: bool  # the per-object cap, the quota or a disk error cut it short
    duplicate: bool  # an identical artifact already existed
    quota_exceeded: bool
    path: Path | None  # <root>/<shasum>; None when nothing could be stored

    def fields(self) -> dict[str, object]:
        """The artifact fields of the event catalogue (``shasum``, ``size`` …)."""
        return {
            "shasum": self.shasum,
            "size": self.size,
            "stored_size": self.stored_size,
            "truncated": self.truncated,
            "duplicate": self.duplicate,
        }


class ArtifactStore:
    """See the module docstring. Create one per artifact directory."""

    def __init__(
        self,
        root: Path,
        *,
        max_object_bytes: int,
        quota_bytes: int,
        spill_bytes: int = 65536,
        fsync: bool = False,
    ) -> None:
        self.root = Path(root)
        self.max_object_bytes = max(0, int(max_object_bytes))
        self.quota_bytes = max(0, int(quota_bytes))
        self.spill_bytes = max(0, int(spill_bytes))
        self.fsync = fsync
        self.tmp = self.root / TMP_DIR
        self.counters: dict[str, int] = {
            "stored": 0,  # new objects written
            "duplicates": 0,  # objects that already existed
            "truncated": 0,  # objects cut short (cap, quota or error)
            "quota_drops": 0,  # objects the quota cut short or dropped entirely
            "bytes_stored": 0,  # bytes of new objects
            "bytes_dropped": 0,  # bytes offered but not stored
            "errors": 0,  # disk errors (object not stored)
            "aborted": 0,
        }
        self._reserved = 0  # bytes held by open writers
        # sha256 -> its path, insertion-ordered: the oldest is forgotten first
        self._recent: dict[str, Path] = {}
        self._errors_logged = 0
        self.root.mkdir(mode=DIR_MODE, parents=True, exist_ok=True)
        self.tmp.mkdir(mode=DIR_MODE, exist_ok=True)
        self._clean_tmp()
        self._usage = self._scan()

    # -- start-up ------------------------------------------------------------------

    def _clean_tmp(self) -> None:
        """Remove what a previous run left half-written."""
        with os.scandir(self.tmp) as it:
            for entry in it:
                try:
                    if entry.is_dir(follow_symlinks=False):
                        continue
                    os.unlink(entry.path)
                except OSError as exc:
                    log.warning("artifacts: cannot remove stale temp file %s: %s", entry.path, exc)

    def _scan(self) -> int:
        total = 0
        with os.scandir(self.root) as it:
            for entry in it:
                try:
                    if entry.is_file(follow_symlinks=False):
                        total += entry.stat(follow_symlinks=False).st_size
                except OSError:
                    continue
        return total

    # -- queries -------------------------------------------------------------------

    @property
    def usage_bytes(self) -> int:
        """Bytes stored under the root (scanned at start, then tracked)."""
        return self._usage

    @property
    def free_bytes(self) -> int:
        """Quota left for new objects, net of what open writers hold."""
        return max(0, self.quota_bytes - self._usage - self._reserved)

    def path(self, shasum: str) -> Path | None:
        """``<root>/<shasum>`` for a well-formed sha256 hex digest, else None (no I/O)."""
        if not is_shasum(shasum):
            return None
        return self.root / shasum

    RECENT = 4096  # sha256s known to be on disk, kept to skip a stat for repeated content

    def _known(self, shasum: str) -> Path | None:
        return self._recent.get(shasum)

    def _remember(self, shasum: str, path: Path) -> None:
        recent = self._recent
        recent[shasum] = path
        if len(recent) > self.RECENT:
            del recent[next(iter(recent))]

    def exists(self, shasum: str) -> bool:
        p = self.path(shasum)
        return p is not None and p.is_file()

    def read(self, shasum: str, offset: int = 0, size: int | None = None) -> bytes | None:
        """Bytes of a stored object (a slice with ``offset``/``size``), None when absent."""
        p = self.path(shasum)
        if p is None or offset < 0 or (size is not None and size < 0):
            return None
        try:
            with open(p, "rb") as f:
                if offset:
                    f.seek(offset)
                return f.read() if size is None else f.read(size)
        except (FileNotFoundError, IsADirectoryError):
            return None

    # -- writing -------------------------------------------------------------------

    def writer(self, max_bytes: int | None = None) -> ArtifactWriter:
        """A streaming writer; ``max_bytes`` overrides ``max_object_bytes`` for this object."""
        cap = self.max_object_bytes if max_bytes is None else max(0, int(max_bytes))
        return ArtifactWriter(self, cap)

    def put(self, data: bytes, max_bytes: int | None = None) -> ArtifactInfo:
        """Store ``data`` in one go (``max_bytes`` as for :meth:`writer`).

        Content this store has recently seen stored (a repeated scan's transcript) is
        recognised from its sha256 alone; the result is what a writer would report.
        """
        n = len(data)
        cap = self.max_object_bytes if max_bytes is None else max(0, int(max_bytes))
        if 0 < n <= min(cap, self.spill_bytes) and n <= self.quota_bytes - self._usage - self._reserved:
            shasum = hashlib.sha256(data).hexdigest()
            known = self._recent.get(shasum)
            if known is not None:
                self.counters["duplicates"] += 1
                return ArtifactInfo(shasum, n, n, False, True, False, known)
        w = self.writer(max_bytes)
        w.write(data)
        return w.close()

    def _error(self, what: str, exc: BaseException) -> None:
        self.counters["errors"] += 1
        n = self.counters["errors"]
        if n & (n - 1) == 0:  # 1, 2, 4, 8 …
            log.error("artifacts: %s failed (%d errors so far): %s", what, n, exc)

    def _new_tmp(self) -> tuple[int, str]:
        """Open a fresh temp file (exclusive create); returns (fd, path)."""
        self.tmp.mkdir(mode=DIR_MODE, exist_ok=True)
        while True:
            name = os.path.join(self.tmp, secrets.token_hex(16))
            try:
                fd = os.open(name, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0), 0o600)
            except FileExistsError:  # pragma: no cover - 128 random bits
                continue
            return fd, name

    def _sync_dir(self) -> None:
        try:
            fd = os.open(self.root, os.O_RDONLY)
        except OSError:
            return
        try:
            os.fsync(fd)
        except OSError:
            pass
        finally:
            os.close(fd)


def _write_all(fd: int, data) -> None:
    view = memoryview(data)
    while view:
        n = os.write(fd, view)
        if n <= 0:
            raise OSError(errno.EIO, "write made no progress")
        view = view[n:]


class ArtifactWriter:
    """One object streaming into an :class:`ArtifactStore`.

    ``write`` never raises for size reasons; ``close`` returns the :class:`ArtifactInfo`
    (a second ``close`` returns the same one); ``abort`` drops the object. Used as a
    context manager, leaving the block without ``close`` aborts. Writing through a
    closed or aborted writer does nothing.
    """

    __slots__ = (
        "_store",
        "_cap",
        "_state",
        "_hash",
        "_buf",
        "_fd",
        "_tmp",
        "_stored",
        "_full",
        "_quota_hit",
        "_prefix_hash",
        "_hashed",
        "_hash_only",
        "_failed",
        "_info",
        "size",
    )

    def __init__(self, store: ArtifactStore, cap: int) -> None:
        self._store = store
        self._cap = cap
        self._state = _OPEN
        self._hash = hashlib.sha256()
        self._buf: bytearray | None = bytearray()
        self._fd = -1
        self._tmp: str | None = None
        self._stored = 0  # bytes taken (and reserved against the quota)
        self._full = False  # stopped storing: cap, quota or error
        self._quota_hit = False
        self._prefix_hash: Any = None  # sha256 state at the quota cut
        self._hashed = 0  # bytes hashed, within the cap (after a quota cut)
        self._hash_only = False  # past the quota cut: hash, do not store
        self._failed = False
        self._info: ArtifactInfo | None = None
        self.size = 0  # bytes offered

    # -- context manager -------------------------------------------------------------

    def __enter__(self) -> ArtifactWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        if self._state == _OPEN:
            self.abort()

    @property
    def stored_size(self) -> int:
        return self._stored

    @property
    def closed(self) -> bool:
        return self._state != _OPEN

    # -- hot path --------------------------------------------------------------------

    def write(self, data: bytes) -> None:
        n = len(data)
        if not n or self._state:  # not _OPEN
            return
        self.size += n
        if self._full:
            if self._hash_only:
                self._hash_more(data, n)
            return
        store = self._store
        room = self._cap - self._stored
        if n > room or n > store.quota_bytes - store._usage - store._reserved:
            self._cut(data, n, room)
        else:
            self._take(data, n)

    def _take(self, data, n: int) -> None:
        """Store ``n`` bytes (already known to fit the cap and the quota)."""
        store = self._store
        self._stored += n
        store._reserved += n
        self._hash.update(data)
        buf = self._buf
        if buf is not None:
            if len(buf) + n <= store.spill_bytes:
                buf += data
                return
            self._spill()
        if self._fd >= 0:
            try:
                _write_all(self._fd, data)
            except OSError as exc:
                self._fail("writing an artifact", exc)

    def _cut(self, data, n: int, room: int) -> None:
        """The cap or the quota ends the stored copy inside this write."""
        store = self._store
        self._full = True
        quota_room = store.quota_bytes - store._usage - store._reserved
        take = max(0, min(room, quota_room))
        view = memoryview(data)
        if take:
            self._take(view[:take], take)
        if quota_room < room:
            # The quota, not the cap, cut it. Keep hashing up to the cap (CPU only, no
            # storage) so that content already stored is still recognised as a duplicate.
            self._quota_hit = True
            self._prefix_hash = self._hash.copy()
            self._hashed = self._stored
            self._hash_only = True
            self._hash_more(view[take:], n - take)

    def _hash_more(self, data, n: int) -> None:
        room = self._cap - self._hashed
        if n >= room:
            self._hash_only = False
            data = memoryview(data)[:room]
            n = room
        if n:
            self._hash.update(data)
            self._hashed += n

    def _spill(self) -> None:
        buf = self._buf
        self._buf = None
        try:
            self._fd, self._tmp = self._store._new_tmp()
            if buf:
                _write_all(self._fd, buf)
        except OSError as exc:
            self._fail("spilling an artifact to disk", exc)

    def _fail(self, what: str, exc: OSError) -> None:
        """A disk error: stop storing, drop the object (reported as not stored)."""
        self._store._error(what, exc)
        self._failed = True
        self._full = True
        self._discard_tmp()

    def _discard_tmp(self) -> None:
        if self._fd >= 0:
            try:
                os.close(self._fd)
            except OSError:
                pass
            self._fd = -1
        if self._tmp is not None:
            try:
                os.unlink(self._tmp)
            except OSError:
                pass
            self._tmp = None
        self._buf = None

    # -- end -------------------------------------------------------------------------

    def abort(self) -> None:
        if self._state != _OPEN:
            return
        self._state = _ABORTED
        self._discard_tmp()
        self._store._reserved -= self._stored
        self._store.counters["aborted"] += 1

    def close(self) -> ArtifactInfo:
        if self._info is not None:
            return self._info
        store = self._store
        counters = store.counters
        if self._state == _ABORTED:
            self._info = ArtifactInfo("", self.size, 0, self.size > 0, False, self._quota_hit, None)
            return self._info
        self._state = _CLOSED
        store._reserved -= self._stored
        stored = self._stored
        quota_exceeded = self._quota_hit
        duplicate = False
        path: Path | None = None
        shasum = ""
        if self._failed:
            stored = 0
        elif quota_exceeded and os.path.exists(store.root / (full := self._hash.hexdigest())):
            # the whole object (up to the cap) is already stored: the quota cut nothing
            shasum, stored, quota_exceeded, duplicate = full, self._hashed, False, True
            path = store.root / full
            counters["duplicates"] += 1
        elif stored == 0 and self.size > 0:
            pass  # nothing fitted: nothing stored
        else:
            shasum = (self._prefix_hash if quota_exceeded else self._hash).hexdigest()
            known = store._known(shasum)
            dest = known if known is not None else store.root / shasum
            if known is not None or os.path.exists(dest):
                duplicate = True
                path = dest
                counters["duplicates"] += 1
                store._remember(shasum, dest)
            else:
                try:
                    self._commit(dest)
                    path = dest
                    store._usage += stored
                    counters["stored"] += 1
                    counters["bytes_stored"] += stored
                    store._remember(shasum, dest)
                except OSError as exc:
                    store._error("storing an artifact", exc)
                    shasum, stored = "", 0
        self._discard_tmp()
        truncated = stored < self.size
        if truncated:
            counters["truncated"] += 1
            counters["bytes_dropped"] += self.size - stored
        if quota_exceeded:
            counters["quota_drops"] += 1
        self._info = ArtifactInfo(shasum, self.size, stored, truncated, duplicate, quota_exceeded, path)
        return self._info

    def _commit(self, dest: Path) -> None:
        store = self._store
        if self._fd < 0:  # still in memory: write it out now that we know it is new
            buf = self._buf if self._buf is not None else b""
            self._fd, self._tmp = store._new_tmp()
            _write_all(self._fd, buf)
            self._buf = None
        fd = self._fd
        os.fchmod(fd, FILE_MODE)
        if store.fsync:
            os.fsync(fd)
        self._fd = -1
        os.close(fd)
        assert self._tmp is not None
        os.replace(self._tmp, dest)
        self._tmp = None
        if store.fsync:
            store._sync_dir()


__all__ = ["ArtifactInfo", "ArtifactStore", "ArtifactWriter", "is_shasum"]
