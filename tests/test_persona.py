"""Personas: validation, per-install identity, persistent device state."""

from __future__ import annotations

import json
import re

import pytest

from helpers import make_device
from honeyjet.persona.device import Device
from honeyjet.persona.identity import IdentityStore, draw_identity
from honeyjet.persona.model import PersonaError, builtin_ids, load_persona, parse_persona
from honeyjet.persona.state import DeviceState
from honeyjet.persona.vfs import MemoryBlobs


@pytest.mark.parametrize("pid", builtin_ids())
def test_builtin_personas_validate(pid):
    p = load_persona(pid)
    assert p.id == pid
    assert p.pjl.id and p.postscript.product


def test_hp_identity_formats():
    p = load_persona("hp-laserjet-4250")
    seen = set()
    for _ in range(50):
        ident = draw_identity(p)
        assert re.fullmatch(r"CN[A-HJ-NP-Z]{3}\d{5}", ident.serial)
        assert ident.mac[:8] in p.identity.mac_ouis
        assert ident.hostname == "NPI" + ident.mac.replace(":", "")[-6:]
        assert p.identity.page_count_range[0] <= ident.page_count_origin <= p.identity.page_count_range[1]
        seen.add((ident.serial, ident.mac))
    assert len(seen) == 50  # no shared defaults across installs


def test_identity_persists(tmp_path):
    p = load_persona("hp-laserjet-4250")
    store = IdentityStore(tmp_path / "identity.json")
    first, created = store.load_or_create(p)
    again, created2 = IdentityStore(tmp_path / "identity.json").load_or_create(p)
    assert created and not created2 and first == again


def test_corrupt_identity_is_a_clear_error(tmp_path):
    path = tmp_path / "identity.json"
    path.write_text("{not json")
    with pytest.raises(ValueError, match="identity.json is corrupt"):
        IdentityStore(path).load_or_create(load_persona("hp-laserjet-4250"))


def test_persona_errors_name_the_key():
    with pytest.raises(PersonaError, match="persona.id"):
        parse_persona('[persona]\nid = "BAD ID"\ntitle = "x"\n', "test")
    with pytest.raises(PersonaError, match="no such built-in persona"):
        load_persona("no-such-printer")


def test_state_survives_restart_and_page_count_grows(tmp_path):
    state = DeviceState(tmp_path / "dev.json")
    dev = make_device(state=state)
    start = dev.page_count()
    n = dev.job_begin()
    dev.job_end({"job": n, "pages": 5})
    dev.set_ready_message("HELLO")
    state.save()
    dev2 = make_device(state=DeviceState(tmp_path / "dev.json"))
    assert dev2.page_count() == start + 5
    assert dev2.status().display == "HELLO"
    assert dev2.state["boots"] == 2
    assert json.loads((tmp_path / "dev.json").read_text())["jobs"][0]["pages"] == 5


def test_corrupt_state_is_kept_aside(tmp_path):
    (tmp_path / "dev.json").write_text("garbage")
    state = DeviceState(tmp_path / "dev.json")
    assert state["printed_pages"] == 0 and (tmp_path / "dev.corrupt").exists()


def test_open_draws_and_keeps_identity(tmp_path):
    d1 = Device.open("hp-laserjet-4250", tmp_path, MemoryBlobs())
    d2 = Device.open("hp-laserjet-4250", tmp_path, MemoryBlobs())
    assert d1.serial == d2.serial and d1.mac == d2.mac
