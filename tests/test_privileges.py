"""Started as root, the sensor binds its ports, gives the data directory away and drops root."""

from __future__ import annotations

import os
import pwd
import tempfile
from pathlib import Path

import pytest

from conftest import free_offset
from test_realclients import ID_PROBE, SensorProcess

pytestmark = [
    pytest.mark.realclient,
    pytest.mark.skipif(os.geteuid() != 0, reason="only root can drop privileges; CI runs as root"),
]


def _uid_of(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("Uid:"):
            return int(line.split()[2])  # effective uid
    raise AssertionError("no Uid line")


def test_root_start_drops_to_the_configured_user():
    nobody = pwd.getpwnam("nobody")
    base = Path(tempfile.mkdtemp(prefix="honeyjet-priv-", dir="/tmp"))
    base.chmod(0o755)
    sensor = SensorProcess(base / "data", HONEYJET_SENSOR__USER="nobody").start()
    try:
        assert _uid_of(sensor.proc.pid) == nobody.pw_uid
        assert sensor.query(ID_PROBE) == b'@PJL INFO ID\r\n"HP LaserJet 4250"\r\n\x0c'
        # the PostScript, PCL and HTTP-on-9100 paths still work once the interpreter's own files
        # may be out of reach (nothing is imported lazily after the switch)
        ps = sensor.query(b"\x1b%-12345X@PJL ENTER LANGUAGE=POSTSCRIPT\r\n%!\nproduct print (x) = foo\n")
        assert ps.startswith(b"HP LaserJet 4250x\n%%[ Error: undefined; OffendingCommand: foo ]%%")
        assert sensor.query(b"\x1b%-12345X@PJL ENTER LANGUAGE=PCL\r\n\x1b*s7X") == b"PCL\r\nECHO 7\r\n\x0c"
        assert (base / "data" / "log" / "honeyjet.json").stat().st_uid == nobody.pw_uid
        assert (base / "data" / "state" / "identity.json").stat().st_uid == nobody.pw_uid
    finally:
        sensor.stop()
    import sqlite3

    with sqlite3.connect(base / "data" / "honeyjet.db") as db:  # the database kept working as nobody
        assert db.execute("select count(*) from events where eventid = 'honeyjet.pjl.command'").fetchone()[0] == 3
    assert any(e["eventid"] == "honeyjet.sensor.stop" for e in sensor.events())


def test_unknown_user_is_a_one_line_error(tmp_path):
    import subprocess
    import sys

    result = subprocess.run(
        [sys.executable, "-m", "honeyjet", "run", "--data-dir", str(tmp_path), "--bind", "127.0.0.1", "--port-offset", str(free_offset())],
        capture_output=True, text=True, timeout=30, env=dict(os.environ, HONEYJET_SENSOR__USER="no-such-user-x"),
    )
    assert result.returncode == 2 and "sensor.user = 'no-such-user-x'" in result.stderr and "Traceback" not in result.stderr


def test_the_open_file_limit_is_raised_to_the_hard_limit():
    import resource
    import subprocess
    import sys

    code = ("import resource; from honeyjet.sensor import raise_open_files; "
            "soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE); resource.setrlimit(resource.RLIMIT_NOFILE, (256, hard)); "
            "got = raise_open_files(4096); print(got, resource.getrlimit(resource.RLIMIT_NOFILE)[0], hard)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    got, soft, hard = out.stdout.split()
    expected = hard if int(hard) != resource.RLIM_INFINITY else str(4096 + 1024)
    assert got == soft == expected
