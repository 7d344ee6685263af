"""Dropping root after binding the printer ports.

Ports below 1024 (80, 161, 515, 631) need root or CAP_NET_BIND_SERVICE. When the
sensor starts as root it binds every port first, hands the data directory to the
unprivileged user, and switches to it for good before reading a single byte from the
network. Started as any other user it changes nothing (use CAP_NET_BIND_SERVICE or
``--port-offset``).
"""

from __future__ import annotations

import grp
import logging
import os
import pwd
from pathlib import Path

log = logging.getLogger(__name__)


class PrivilegeError(Exception):
    """The configured user cannot be switched to (message names the key)."""


def _chown_tree(root: Path, uid: int, gid: int) -> int:
    """Give ``root`` and everything below it to uid:gid (only entries that differ)."""
    changed = 0
    for dirpath, dirnames, filenames in os.walk(root):
        for name in [dirpath, *(os.path.join(dirpath, n) for n in dirnames + filenames)]:
            st = os.lstat(name)
            if st.st_uid != uid or st.st_gid != gid:
                os.lchown(name, uid, gid)
                changed += 1
    return changed


def warm_up() -> None:
    """Load what the code would otherwise load lazily, while files are still readable.

    After the switch, the interpreter's own files may be out of the new user's reach
    (e.g. a Python installed under /root), so codecs and data files are loaded now, and
    a short probe runs through the 9100 engine's PJL, PostScript and PCL paths on a
    throw-away device.
    """
    import codecs

    for name in ("ascii", "latin-1", "utf-8", "idna", "utf-16", "cp437"):
        codecs.lookup(name)
    from honeyjet.persona.device import Device
    from honeyjet.protocols.pjl import PJLEngine

    engine = PJLEngine(Device.ephemeral())
    engine.feed(
        b"\x1b%-12345X@PJL INFO ID\r\n@PJL INFO STATUS\r\n@PJL ENTER LANGUAGE=POSTSCRIPT\r\n"
        b"%!\nproduct print (x) = foo\n\x1b%-12345X@PJL ENTER LANGUAGE=PCL\r\n\x1b*s1X\x1b%-12345X"
        b"GET / HTTP/1.1\r\n\r\n"
    )
    engine.eof()


def drop_privileges(user: str, data_dir: Path) -> None:
    """As root: chown ``data_dir`` to ``user`` and become ``user`` (no way back)."""
    if os.geteuid() != 0:
        return
    warm_up()
    if not user:
        log.warning("running as root because sensor.user is empty; set sensor.user to drop privileges")
        return
    try:
        pw = pwd.getpwnam(user)
    except KeyError:
        raise PrivilegeError(
            f"error: sensor.user = {user!r}: no such user (create it, e.g. `useradd --system --no-create-home {user}`)"
        ) from None
    if pw.pw_uid == 0:
        raise PrivilegeError(f"error: sensor.user = {user!r} is root; choose an unprivileged user")
    # every directory above data_dir must let the user through
    for parent in [data_dir, *data_dir.parents]:
        mode = parent.stat().st_mode
        if parent != data_dir and not (mode & 0o001 or (mode & 0o010 and parent.stat().st_gid == pw.pw_gid)):
            raise PrivilegeError(f"error: sensor.user {user!r} cannot reach {data_dir}: {parent} is not searchable by it")
    changed = _chown_tree(data_dir, pw.pw_uid, pw.pw_gid)
    if changed:
        log.info("gave %d entries under %s to %s", changed, data_dir, user)
    os.setgroups([])
    os.setgid(pw.pw_gid)
    os.setuid(pw.pw_uid)
    os.umask(0o027)
    if os.getuid() == 0 or os.geteuid() == 0:  # pragma: no cover - would be a kernel surprise
        raise PrivilegeError("error: could not drop root privileges")
    log.info("running as %s (uid %d, group %s)", user, pw.pw_uid, grp.getgrgid(pw.pw_gid).gr_name)
