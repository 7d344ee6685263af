"""The printer's virtual file system (PJL volumes ``0:``, ``1:`` …).

Nothing here touches the host file system by path. Names are parsed, normalised inside
their volume (``..`` never climbs above the volume root; an attempt is flagged as
traversal), looked up case-insensitively in a dictionary, and file contents live in a
content-addressed blob store (the artifact store) under their sha256. Errors are HP
``FILEERROR`` codes.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Callable, Protocol

from honeyjet.persona.model import FilesystemSection, VolumeSpec

# HP FILEERROR codes (PJL status 32000 + n)
GENERAL = 0
VOLUME_NOT_AVAILABLE = 1
DISK_FULL = 2
FILE_NOT_FOUND = 3
INVALID_BYTES = 5
FILE_EXISTS = 6
ILLEGAL_NAME = 7
CANT_DELETE_ROOT = 8
FILE_OP_ON_DIR = 9
DIR_OP_ON_FILE = 10
READ_ONLY = 12
DIRECTORY_FULL = 13
DIR_NOT_EMPTY = 14
BAD_SEEK = 23

FILEERROR_TEXT = {
    GENERAL: "general error",
    VOLUME_NOT_AVAILABLE: "volume not available",
    DISK_FULL: "disk full",
    FILE_NOT_FOUND: "file not found",
    INVALID_BYTES: "invalid number of bytes",
    FILE_EXISTS: "file already exists",
    ILLEGAL_NAME: "illegal name",
    CANT_DELETE_ROOT: "can't delete root",
    FILE_OP_ON_DIR: "file operation on a directory",
    DIR_OP_ON_FILE: "directory operation on a file",
    READ_ONLY: "read only",
    DIRECTORY_FULL: "directory full",
    DIR_NOT_EMPTY: "directory not empty",
    BAD_SEEK: "bad seek",
}

BLOCK = 1024
_BAD_CHARS = re.compile(r"[\x00-\x1f\x7f\"*?<>|]")


class BlobStore(Protocol):
    def put(self, data: bytes) -> str | None:
        """Store bytes; return their sha256, or None when there is no room."""

    def get(self, shasum: str) -> bytes | None: ...


class MemoryBlobs:
    """A BlobStore in a dict (tests, and volumes without persistence)."""

    def __init__(self) -> None:
        import hashlib

        self._h = hashlib.sha256
        self.blobs: dict[str, bytes] = {}

    def put(self, data: bytes) -> str | None:
        sha = self._h(data).hexdigest()
        self.blobs[sha] = bytes(data)
        return sha

    def get(self, shasum: str) -> bytes | None:
        return self.blobs.get(shasum)


class FSError(Exception):
    def __init__(self, code: int):
        super().__init__(FILEERROR_TEXT.get(code, "error"))
        self.code = code


@dataclass(frozen=True, slots=True)
class Resolved:
    """A peer-supplied NAME after parsing."""

    raw: str
    volume: str  # "0:" ("" when none could be parsed)
    parts: tuple[str, ...]  # components below the volume root
    traversal: bool  # '..' tried to leave the root, or the name used another escape
    error: int | None  # FILEERROR when the name itself is unusable

    @property
    def key(self) -> str:
        return "/".join(p.lower() for p in self.parts)

    @property
    def normalized(self) -> str:
        return f"{self.volume}/" + "/".join(self.parts) if self.volume else ""


def resolve(name: str, *, max_name_length: int = 128, max_depth: int = 32) -> Resolved:
    """Parse a PJL NAME (``0:\\dir\\file``, ``0:/dir/file``, ``"0:"``) into a volume path.

    Total: any string in, a :class:`Resolved` out. ``..`` above the root stays at the
    root and sets ``traversal``; a missing or odd volume gives VOLUME_NOT_AVAILABLE.
    """
    raw = name
    name = name.strip().strip('"').strip()
    m = re.match(r"^([0-9]):", name)
    if not m:
        escape = name.startswith(("/", "\\", "~")) or bool(re.match(r"^[A-Za-z]:", name)) or ".." in name
        return Resolved(raw, "", (), escape, VOLUME_NOT_AVAILABLE)
    volume = m.group(1) + ":"
    rest = name[2:]
    parts: list[str] = []
    traversal = False
    error: int | None = None
    for seg in re.split(r"[\\/]+", rest):
        if seg in ("", "."):
            continue
        if seg == "..":
            if parts:
                parts.pop()
            else:
                traversal = True
            continue
        if seg.strip(".") == "" or _BAD_CHARS.search(seg):
            # '...' style components and control characters are escape attempts
            traversal = traversal or seg.strip(".") == ""
            error = ILLEGAL_NAME
            continue
        if len(seg) > max_name_length:
            error = ILLEGAL_NAME
            continue
        parts.append(seg)
        if len(parts) > max_depth:
            error = ILLEGAL_NAME
            break
    return Resolved(raw, volume, tuple(parts), traversal, error)


def _blocks(size: int) -> int:
    return max(1, -(-size // BLOCK)) * BLOCK


class Volume:
    """One volume: a flat dict of lower-cased path → node."""

    def __init__(self, spec: VolumeSpec, nodes: dict[str, dict[str, Any]]):
        self.spec = spec
        self.nodes = nodes  # "" is the root directory

    @property
    def used(self) -> int:
        return sum(_blocks(n.get("size", 0)) for n in self.nodes.values())

    @property
    def free(self) -> int:
        return max(0, self.spec.total_bytes - self.used)


class VirtualFS:
    """All volumes of the device, with PJL semantics.

    ``nodes`` are plain dicts so the device state can persist them as JSON:
    ``{"name": "webServer/home", "type": "dir"|"file", "size": n, "sha": hex|None,
    "seed": path-in-persona|None, "readonly": bool}``.
    """

    def __init__(
        self,
        spec: FilesystemSection,
        blobs: BlobStore,
        *,
        seed_content: Callable[[str, str], bytes],
        saved: dict[str, dict[str, dict[str, Any]]] | None = None,
        on_change: Callable[[], None] | None = None,
    ):
        self.spec = spec
        self.blobs = blobs
        self._seed_content = seed_content
        self._on_change = on_change or (lambda: None)
        self.volumes: dict[str, Volume] = {}
        for vspec in spec.volumes:
            nodes = (saved or {}).get(vspec.name)
            self.volumes[vspec.name] = Volume(vspec, nodes if nodes is not None else self._seed(vspec))

    # -- construction and persistence -------------------------------------------------
    def _seed(self, vspec: VolumeSpec) -> dict[str, dict[str, Any]]:
        nodes: dict[str, dict[str, Any]] = {"": {"name": "", "type": "dir", "size": 0, "readonly": False}}
        for d in vspec.directories:
            nodes[d.lower()] = {"name": d, "type": "dir", "size": 0, "readonly": False}
        for f in vspec.files:
            content = self._seed_content(vspec.name, f.path)
            nodes[f.path.lower()] = {
                "name": f.path,
                "type": "file",
                "size": len(content),
                "sha": None,
                "seed": f.path,
                "readonly": f.readonly,
            }
        return nodes

    def snapshot(self) -> dict[str, dict[str, dict[str, Any]]]:
        return {name: vol.nodes for name, vol in self.volumes.items()}

    def resolve(self, name: str) -> Resolved:
        return resolve(name, max_name_length=self.spec.max_name_length)

    # -- lookups -------------------------------------------------------------------------
    def _volume(self, r: Resolved) -> Volume:
        if r.error is not None:
            raise FSError(r.error)
        vol = self.volumes.get(r.volume)
        if vol is None:
            raise FSError(VOLUME_NOT_AVAILABLE)
        return vol

    def _node(self, r: Resolved) -> tuple[Volume, dict[str, Any]]:
        vol = self._volume(r)
        node = vol.nodes.get(r.key)
        if node is None:
            raise FSError(FILE_NOT_FOUND)
        return vol, node

    def query(self, r: Resolved) -> tuple[str, int]:
        """("FILE", size) or ("DIR", 0)."""
        _, node = self._node(r)
        return ("DIR", 0) if node["type"] == "dir" else ("FILE", node["size"])

    def listdir(self, r: Resolved) -> list[tuple[str, str, int]]:
        """Entries of a directory as (name, type, size), with '.' and '..' first."""
        vol, node = self._node(r)
        if node["type"] != "dir":
            raise FSError(DIR_OP_ON_FILE)
        prefix = r.key + "/" if r.key else ""
        entries: list[tuple[str, str, int]] = [(".", "DIR", 0), ("..", "DIR", 0)]
        children = []
        for key, child in vol.nodes.items():
            if key and key.startswith(prefix) and "/" not in key[len(prefix) :]:
                base = child["name"].rsplit("/", 1)[-1]
                children.append((base, "DIR" if child["type"] == "dir" else "FILE", child.get("size", 0)))
        children.sort(key=lambda e: (e[1] != "DIR", e[0].lower()))
        return entries + children

    def read(self, r: Resolved, offset: int = 0, size: int | None = None) -> bytes:
        vol, node = self._node(r)
        if node["type"] == "dir":
            raise FSError(FILE_OP_ON_DIR)
        if offset < 0 or offset > node["size"]:
            raise FSError(BAD_SEEK)
        data = self._content(vol, node)
        end = len(data) if size is None else min(len(data), offset + max(0, size))
        return data[offset:end]

    def _content(self, vol: Volume, node: dict[str, Any]) -> bytes:
        if node.get("seed"):
            return self._seed_content(vol.spec.name, node["seed"])
        if node.get("sha"):
            return self.blobs.get(node["sha"]) or b""
        return b""

    # -- changes ---------------------------------------------------------------------
    def _parent_ok(self, vol: Volume, r: Resolved) -> None:
        parent_key = "/".join(p.lower() for p in r.parts[:-1])
        parent = vol.nodes.get(parent_key)
        if parent is None:
            raise FSError(FILE_NOT_FOUND)
        if parent["type"] != "dir":
            raise FSError(DIR_OP_ON_FILE)

    def write(self, r: Resolved, data: bytes, *, append: bool = False) -> str | None:
        """Create, replace or append to a file; returns the content's sha256."""
        vol = self._volume(r)
        if not r.parts:
            raise FSError(FILE_OP_ON_DIR)
        existing = vol.nodes.get(r.key)
        if existing is not None:
            if existing["type"] == "dir":
                raise FSError(FILE_OP_ON_DIR)
            if existing.get("readonly"):
                raise FSError(READ_ONLY)
        else:
            self._parent_ok(vol, r)
            if len(vol.nodes) >= self.spec.max_entries:
                raise FSError(DIRECTORY_FULL)
        content = (self._content(vol, existing) if (append and existing) else b"") + data
        freed = _blocks(existing["size"]) if existing else 0
        if _blocks(len(content)) - freed > vol.free:
            raise FSError(DISK_FULL)
        sha = self.blobs.put(content)
        if sha is None:
            raise FSError(DISK_FULL)
        name = existing["name"] if existing else "/".join(r.parts)
        vol.nodes[r.key] = {"name": name, "type": "file", "size": len(content), "sha": sha, "seed": None, "readonly": False}
        self._on_change()
        return sha

    def mkdir(self, r: Resolved) -> None:
        vol = self._volume(r)
        if not r.parts:
            return
        existing = vol.nodes.get(r.key)
        if existing is not None:
            if existing["type"] != "dir":
                raise FSError(FILE_EXISTS)
            return
        self._parent_ok(vol, r)
        if len(vol.nodes) >= self.spec.max_entries:
            raise FSError(DIRECTORY_FULL)
        if BLOCK > vol.free:
            raise FSError(DISK_FULL)
        vol.nodes[r.key] = {"name": "/".join(r.parts), "type": "dir", "size": 0, "readonly": False}
        self._on_change()

    def delete(self, r: Resolved) -> None:
        vol, node = self._node(r)
        if not r.parts:
            raise FSError(CANT_DELETE_ROOT)
        if node.get("readonly"):
            raise FSError(READ_ONLY)
        if node["type"] == "dir":
            prefix = r.key + "/"
            if any(k.startswith(prefix) for k in vol.nodes):
                raise FSError(DIR_NOT_EMPTY)
        del vol.nodes[r.key]
        self._on_change()

    def initialize(self, volume: str) -> None:
        """FSINIT: an empty, freshly formatted volume."""
        vol = self.volumes.get(volume.strip().strip('"').strip().upper()[:2])
        if vol is None:
            raise FSError(VOLUME_NOT_AVAILABLE)
        vol.nodes.clear()
        vol.nodes[""] = {"name": "", "type": "dir", "size": 0, "readonly": False}
        self._on_change()
