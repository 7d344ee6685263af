"""The SNMP agent: codec, MIB view, walks, communities, SET, v3 discovery, bounds, and the
UDP service (pseudo-sessions, pacing) over a real socket in-process."""

from __future__ import annotations

import asyncio
import json
import re
import string

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pyasn1.codec.ber import decoder, encoder
from pysnmp.proto import api, rfc1905
from pysnmp.proto.mpmod.rfc3412 import SNMPv3Message
from pysnmp.proto.secmod.rfc3414.service import UsmSecurityParameters

from conftest import exchange, running, sensor_settings
from helpers import corpus, make_device
from honeyjet.events import check_fields
from honeyjet.persona.model import PersonaError, load_persona
from honeyjet.persona.model_snmp import SNMPSection
from honeyjet.protocols.outputs import Emit, Send
from honeyjet.protocols.snmp import EVENT, SNMPAgent

# nmap 7.93 nmap-service-probes: Probe UDP SNMPv1public (long-form BER lengths) and SNMPv3GetRequest
NMAP_V1_PUBLIC = (
    b"0\x82\x00/\x02\x01\x00\x04\x06public\xa0\x82\x00\x20\x02\x04\x4c\x33\xa7\x56\x02\x01\x00\x02\x01\x00"
    b"\x30\x82\x00\x10\x30\x82\x00\x0c\x06\x08\x2b\x06\x01\x02\x01\x01\x05\x00\x05\x00"
)
NMAP_V3_GET = (
    b"\x30\x3a\x02\x01\x03\x30\x0f\x02\x02\x4a\x69\x02\x03\x00\xff\xe3\x04\x01\x04\x02\x01\x03\x04\x10\x30\x0e"
    b"\x04\x00\x02\x01\x00\x02\x01\x00\x04\x00\x04\x00\x04\x00\x30\x12\x04\x00\x04\x00\xa0\x0c\x02\x02\x37\xf0"
    b"\x02\x01\x00\x02\x01\x00\x30\x00"
)
# the match lines nmap applies to the replies
NMAP_V1_MATCH = re.compile(rb"^0.*\x02\x01\x00\x04\x06public\xa2.*\x06\x08\+\x06\x01\x02\x01\x01\x05\x00\x04[^\x00]([^\x00]+)", re.S)
NMAP_V3_SOFTMATCH = re.compile(rb"^..\x02\x01\x030.\x02\x02Ji\x02.{3,4}\x04\x01.\x02\x01\x03\x04", re.S)

SYS_DESCR = (1, 3, 6, 1, 2, 1, 1, 1, 0)
SYS_OBJECT_ID = (1, 3, 6, 1, 2, 1, 1, 2, 0)
SYS_UPTIME = (1, 3, 6, 1, 2, 1, 1, 3, 0)
SYS_NAME = (1, 3, 6, 1, 2, 1, 1, 5, 0)
IF_PHYS = (1, 3, 6, 1, 2, 1, 2, 2, 1, 6, 1)
HR_DEVICE_TYPE = (1, 3, 6, 1, 2, 1, 25, 3, 2, 1, 2, 1)
HR_DEVICE_DESCR = (1, 3, 6, 1, 2, 1, 25, 3, 2, 1, 3, 1)
HR_DEVICE_STATUS = (1, 3, 6, 1, 2, 1, 25, 3, 2, 1, 5, 1)
HR_PRINTER_STATUS = (1, 3, 6, 1, 2, 1, 25, 3, 5, 1, 1, 1)
HR_PRINTER_ERRORS = (1, 3, 6, 1, 2, 1, 25, 3, 5, 1, 2, 1)
PRT_SERIAL = (1, 3, 6, 1, 2, 1, 43, 5, 1, 1, 17, 1)
PRT_LIFE_COUNT = (1, 3, 6, 1, 2, 1, 43, 10, 2, 1, 4, 1, 1)
PRT_DISPLAY = (1, 3, 6, 1, 2, 1, 43, 16, 5, 1, 2, 1, 1)
PRT_INTERPRETER_DESCR = (1, 3, 6, 1, 2, 1, 43, 15, 1, 1, 5, 1)
HP_DEVICE_ID = (1, 3, 6, 1, 4, 1, 11, 2, 3, 9, 1, 1, 7, 0)
HP_PML_SERIAL = (1, 3, 6, 1, 4, 1, 11, 2, 3, 9, 4, 2, 1, 1, 3, 3, 0)
PPM_DEVICE_ID = (1, 3, 6, 1, 4, 1, 2699, 1, 2, 1, 2, 1, 1, 3, 1)
SNMP_BAD_COMMUNITY_NAMES = (1, 3, 6, 1, 2, 1, 11, 4, 0)
ENGINE_BOOTS = (1, 3, 6, 1, 6, 3, 10, 2, 1, 2, 0)


# -- request building and reply parsing (the client side, with the same codec) ----------------
def request(ver: int, kind: str, oids, *, community: bytes = b"public", value=None, nonrep=0, maxrep=10, reqid=4242) -> bytes:
    p = api.PROTOCOL_MODULES[ver]
    if kind == "getbulk":
        pdu = p.GetBulkRequestPDU()
        p.apiBulkPDU.set_defaults(pdu)
        p.apiBulkPDU.set_non_repeaters(pdu, nonrep)
        p.apiBulkPDU.set_max_repetitions(pdu, maxrep)
    else:
        pdu = {"get": p.GetRequestPDU, "getnext": p.GetNextRequestPDU, "set": p.SetRequestPDU}[kind]()
        p.apiPDU.set_defaults(pdu)
    p.apiPDU.set_request_id(pdu, reqid)
    p.apiPDU.set_varbinds(pdu, [(o, value if value is not None else p.Null("")) for o in oids])
    msg = p.Message()
    p.apiMessage.set_defaults(msg)
    p.apiMessage.set_community(msg, community)
    p.apiMessage.set_pdu(msg, pdu)
    return encoder.encode(msg)


class Reply:
    def __init__(self, data: bytes, ver: int):
        p = api.PROTOCOL_MODULES[ver]
        msg, rest = decoder.decode(data, asn1Spec=p.Message())
        assert rest == b""
        pdu = p.apiMessage.get_pdu(msg)
        assert pdu.tagSet == p.GetResponsePDU.tagSet
        self.size = len(data)
        self.community = bytes(p.apiMessage.get_community(msg))
        self.request_id = int(p.apiPDU.get_request_id(pdu))
        self.status = int(p.apiPDU.get_error_status(pdu))
        self.index = int(p.apiPDU.get_error_index(pdu))
        self.varbinds = [(tuple(o), v) for o, v in p.apiPDU.get_varbinds(pdu)]

    def value(self, oid):
        return dict(self.varbinds)[oid]


def run(agent: SNMPAgent, data: bytes):
    outs = agent.datagram(data)
    sends = [o for o in outs if isinstance(o, Send)]
    emits = [o for o in outs if isinstance(o, Emit)]
    assert len(sends) <= 1 and len(emits) == 1 and emits[0].eventid == EVENT
    assert not check_fields(EVENT, emits[0].fields)
    json.dumps(emits[0].fields)  # always serialisable
    return (sends[0].data if sends else None), dict(emits[0].fields)


def ask(agent: SNMPAgent, ver: int, kind: str, oids, **kw) -> Reply:
    data, _ = run(agent, request(ver, kind, oids, **kw))
    assert data is not None, "no reply"
    return Reply(data, ver)


def text(value) -> str:
    return bytes(value).decode("latin-1")


@pytest.fixture
def device():
    return make_device()


@pytest.fixture
def agent(device):
    return SNMPAgent(device)


# -- the persona's table ----------------------------------------------------------------------
def test_every_object_renders_to_a_valid_value(agent):
    values = agent.values()
    placeholders = re.compile(r"\$\{?\w")
    for oid in agent.oids():
        obj = agent._objects[oid]
        rendered = obj.template.safe_substitute(values)
        assert not placeholders.search(rendered), f"{oid}: unresolved {rendered!r}"
        if obj.kind in {"Integer", "Counter32", "Gauge32", "TimeTicks"}:
            int(rendered)
        assert agent.lookup(oid, values) is not None


def test_table_is_ordered_unique_and_looks_like_a_printer(agent):
    oids = agent.oids()
    assert oids == sorted(set(oids))
    assert len(oids) > 300
    prefixes = {o[:7] for o in oids}
    for tree in [(1, 3, 6, 1, 2, 1, 1), (1, 3, 6, 1, 2, 1, 2), (1, 3, 6, 1, 2, 1, 25), (1, 3, 6, 1, 2, 1, 43), (1, 3, 6, 1, 4, 1, 11)]:
        assert tree in prefixes


def test_persona_model_rejects_bad_tables():
    base = {"communities": ["public"]}
    with pytest.raises(ValueError, match="defined twice"):
        SNMPSection.model_validate(base | {"scalars": [{"base": "1.3.6.1", "objects": [["1.0", "Integer", 1], ["1.0", "Integer", 2]]}]})
    with pytest.raises(ValueError, match="not one of"):
        SNMPSection.model_validate(base | {"scalars": [{"base": "1.3.6.1", "objects": [["1.0", "Float", 1]]}]})
    with pytest.raises(ValueError, match="not a valid Integer"):
        SNMPSection.model_validate(base | {"scalars": [{"base": "1.3.6.1", "objects": [["1.0", "Integer", "many"]]}]})
    with pytest.raises(ValueError, match="values for 2 rows"):
        SNMPSection.model_validate(base | {"tables": [{"entry": "1.3.6.1.9", "rows": ["1", "2"], "columns": [[1, "Integer", [1, 2, 3]]]}]})
    with pytest.raises(ValueError, match="SNMPv1 cannot answer"):
        SNMPSection.model_validate(base | {"set_answer_v1": "noAccess"})
    with pytest.raises(ValueError, match="dotted OID"):
        SNMPSection.model_validate(base | {"scalars": [{"base": "1.3.x", "objects": [["1.0", "Integer", 1]]}]})


def test_a_persona_file_with_a_broken_snmp_section_names_the_key(tmp_path):
    src = load_persona("hp-laserjet-4250")
    del src
    root = tmp_path / "p"
    root.mkdir()
    from importlib import resources

    builtin = resources.files("honeyjet.persona.data").joinpath("hp-laserjet-4250")
    (root / "persona.toml").write_text(builtin.joinpath("persona.toml").read_text())
    (root / "snmp.toml").write_text('[snmp]\ncommunities = ["public"]\nset_answer_v2c = "yes"\n')
    with pytest.raises(PersonaError, match="snmp.set_answer_v2c"):
        load_persona(str(root))


# -- identity and live state --------------------------------------------------------------------
@pytest.mark.parametrize("ver", [0, 1])
def test_identity_oids_agree_with_the_device(agent, device, ver):
    r = ask(agent, ver, "get", [SYS_DESCR, SYS_OBJECT_ID, SYS_NAME, IF_PHYS, HR_DEVICE_TYPE, HR_DEVICE_DESCR,
                                PRT_SERIAL, PRT_LIFE_COUNT, PRT_DISPLAY, HP_DEVICE_ID, HP_PML_SERIAL, PPM_DEVICE_ID])
    assert r.status == 0 and r.request_id == 4242
    v = device.values()
    assert text(r.value(SYS_DESCR)) == v["network_description"]
    assert tuple(r.value(SYS_OBJECT_ID)) == (1, 3, 6, 1, 4, 1, 11, 2, 3, 9, 1)
    assert text(r.value(SYS_NAME)) == device.hostname == "NPI" + device.mac.replace(":", "")[-6:]
    assert bytes(r.value(IF_PHYS)) == bytes.fromhex(device.mac.replace(":", ""))
    assert tuple(r.value(HR_DEVICE_TYPE)) == (1, 3, 6, 1, 2, 1, 25, 3, 1, 5)
    assert text(r.value(HR_DEVICE_DESCR)) == device.model == device.persona.pjl.id
    assert text(r.value(PRT_SERIAL)) == text(r.value(HP_PML_SERIAL)) == device.serial
    assert int(r.value(PRT_LIFE_COUNT)) == device.page_count()
    assert text(r.value(PRT_DISPLAY)) == device.status().display == "Ready"
    assert text(r.value(HP_DEVICE_ID)) == text(r.value(PPM_DEVICE_ID)) == v["ieee1284_id"]
    assert "MDL:HP LaserJet 4250;" in text(r.value(HP_DEVICE_ID))


def test_interpreters_match_the_persona_languages(agent, device):
    descr = []
    oid = PRT_INTERPRETER_DESCR
    while True:
        r = ask(agent, 1, "getnext", [oid])
        oid, value = r.varbinds[0]
        if oid[: len(PRT_INTERPRETER_DESCR)] != PRT_INTERPRETER_DESCR:
            break
        descr.append(text(value))
    names = {"POSTSCRIPT": "PostScript", "PCL": "PCL", "PCLXL": "PCL XL"}
    for lang in device.persona.device.languages:
        assert any(names[lang] in d for d in descr), (lang, descr)
    assert "PJL" in descr


def test_display_status_and_page_count_are_live(agent, device):
    device.set_ready_message("INSERT COIN")
    r = ask(agent, 1, "get", [PRT_DISPLAY, HR_PRINTER_STATUS, HR_DEVICE_STATUS])
    assert text(r.value(PRT_DISPLAY)) == "INSERT COIN"
    assert (int(r.value(HR_PRINTER_STATUS)), int(r.value(HR_DEVICE_STATUS))) == (3, 2)  # idle, running

    before = int(ask(agent, 0, "get", [PRT_LIFE_COUNT]).value(PRT_LIFE_COUNT))
    device.job_begin()
    r = ask(agent, 1, "get", [HR_PRINTER_STATUS, PRT_DISPLAY])
    assert int(r.value(HR_PRINTER_STATUS)) == 4  # printing
    assert text(r.value(PRT_DISPLAY)) == device.persona.pjl.status.printing_display
    device.job_end({"pages": 3})
    assert int(ask(agent, 0, "get", [PRT_LIFE_COUNT]).value(PRT_LIFE_COUNT)) == before + 3

    device.set_operator_message("OFFLINE NOW")
    r = ask(agent, 1, "get", [PRT_DISPLAY, HR_PRINTER_STATUS, HR_DEVICE_STATUS, HR_PRINTER_ERRORS])
    assert text(r.value(PRT_DISPLAY)) == "OFFLINE NOW"
    assert (int(r.value(HR_PRINTER_STATUS)), int(r.value(HR_DEVICE_STATUS))) == (1, 5)  # other, down
    assert bytes(r.value(HR_PRINTER_ERRORS)) == b"\x02"  # offline bit


def test_display_strings_are_bounded_and_keep_bytes(agent, device):
    device.set_ready_message("\xe9" + "x" * 600)
    value = bytes(ask(agent, 1, "get", [PRT_DISPLAY]).value(PRT_DISPLAY))
    assert len(value) == 255 and value.startswith(b"\xe9x")


def test_uptime_and_engine_boots_follow_the_device():
    clock = [1_790_000_000.0]
    from honeyjet.persona.device import Device
    from honeyjet.persona.state import DeviceState
    from honeyjet.persona.vfs import MemoryBlobs
    from helpers import fixed_identity

    dev = Device(load_persona("hp-laserjet-4250"), fixed_identity(), DeviceState(None), MemoryBlobs(), clock=lambda: clock[0])
    agent = SNMPAgent(dev)
    clock[0] += 123.45
    r = ask(agent, 1, "get", [SYS_UPTIME, ENGINE_BOOTS])
    assert int(r.value(SYS_UPTIME)) == 12345 == dev.values()["uptime_ticks"]
    assert int(r.value(ENGINE_BOOTS)) == dev.values()["boots"]


# -- the nmap probes ------------------------------------------------------------------------------
def test_nmap_v1_probe_with_long_form_lengths_gets_sysname(agent, device):
    data, ev = run(agent, NMAP_V1_PUBLIC)
    m = NMAP_V1_MATCH.match(data)
    assert m and m.group(1) == device.hostname.encode()
    r = Reply(data, 0)
    assert r.request_id == 0x4C33A756 and r.status == 0
    assert ev["version"] == "1" and ev["pdu"] == "get" and ev["oids"] == ["1.3.6.1.2.1.1.5.0"]
    assert ev["community"] == "public" and ev["community_ok"] is True and ev["replied"] is True
    assert ev["reply_size"] == len(data) and ev["request_id"] == 0x4C33A756


def test_nmap_v3_probe_gets_an_hp_engine_discovery_report(agent, device):
    data, ev = run(agent, NMAP_V3_GET)
    assert NMAP_V3_SOFTMATCH.match(data)
    msg, _ = decoder.decode(data, asn1Spec=SNMPv3Message())
    assert int(msg["msgGlobalData"]["msgID"]) == 0x4A69
    assert bytes(msg["msgGlobalData"]["msgFlags"]) == b"\x00"
    usm, _ = decoder.decode(bytes(msg["msgSecurityParameters"]), asn1Spec=UsmSecurityParameters())
    engine = bytes(usm["msgAuthoritativeEngineId"])
    # HP enterprise 11, format 3 (MAC), the device's MAC: what nmap's snmp-info decodes
    assert engine == bytes.fromhex("8000000b03" + device.mac.replace(":", ""))
    assert int(usm["msgAuthoritativeEngineBoots"]) == device.values()["boots"]
    assert int(usm["msgAuthoritativeEngineTime"]) == device.values()["uptime_s"]
    pdu = msg["msgData"]["plaintext"]["data"].getComponent()
    assert pdu.tagSet == rfc1905.ReportPDU.tagSet and int(pdu["request-id"]) == 0x37F0
    (oid, value), = api.v2c.apiPDU.get_varbinds(pdu)
    assert tuple(oid) == (1, 3, 6, 1, 6, 3, 15, 1, 1, 4, 0) and int(value) == 1
    assert ev["version"] == "3" and ev["replied"] is True and ev["community_ok"] is False


def test_v3_to_this_engine_gets_unknown_user_name(agent):
    usm = UsmSecurityParameters()
    usm["msgAuthoritativeEngineId"] = agent.engine_id
    usm["msgAuthoritativeEngineBoots"] = 1
    usm["msgAuthoritativeEngineTime"] = 10
    usm["msgUserName"] = b"admin"
    usm["msgAuthenticationParameters"] = b""
    usm["msgPrivacyParameters"] = b""
    msg, _ = decoder.decode(NMAP_V3_GET, asn1Spec=SNMPv3Message())
    msg["msgSecurityParameters"] = encoder.encode(usm)
    data, ev = run(agent, encoder.encode(msg))
    reply, _ = decoder.decode(data, asn1Spec=SNMPv3Message())
    pdu = reply["msgData"]["plaintext"]["data"].getComponent()
    (oid, _), = api.v2c.apiPDU.get_varbinds(pdu)
    assert tuple(oid) == (1, 3, 6, 1, 6, 3, 15, 1, 1, 3, 0)
    assert "admin" in agent.datagram(encoder.encode(msg))[-1].message


def test_v3_without_the_reportable_flag_is_not_answered(agent):
    msg, _ = decoder.decode(NMAP_V3_GET, asn1Spec=SNMPv3Message())
    msg["msgGlobalData"]["msgFlags"] = b"\x00"
    data, ev = run(agent, encoder.encode(msg))
    assert data is None and ev["replied"] is False


# -- walks ----------------------------------------------------------------------------------------
def test_v2c_getnext_walk_visits_every_object_once_and_ends(agent):
    seen, oid = [], (1, 3)
    for _ in range(len(agent.oids()) + 2):
        r = ask(agent, 1, "getnext", [oid])
        (oid, value), = r.varbinds
        if value.tagSet == rfc1905.EndOfMibView.tagSet:
            break
        seen.append(oid)
    else:
        pytest.fail("walk did not end")
    assert seen == agent.oids()


def test_v1_getnext_walk_ends_with_no_such_name(agent):
    oid, count = (1, 3, 6, 1), 0
    while True:
        r = ask(agent, 0, "getnext", [oid])
        if r.status:
            assert (r.status, r.index) == (2, 1) and r.varbinds[0][0] == oid
            break
        oid = r.varbinds[0][0]
        count += 1
        assert count <= len(agent.oids())
    assert count == len(agent.oids())


@pytest.mark.parametrize("limit", [484, 700, 1472, 8000])
@pytest.mark.parametrize("maxrep", [1, 10, 50, 10_000])
def test_getbulk_walk_terminates_and_fits(device, limit, maxrep):
    agent = SNMPAgent(device, max_reply_bytes=limit)
    seen, oid = [], (1, 3)
    for _ in range(len(agent.oids()) + 2):
        data, _ = run(agent, request(1, "getbulk", [oid], maxrep=maxrep))
        assert data is not None and len(data) <= limit
        r = Reply(data, 1)
        assert r.status == 0 and r.varbinds
        ended = False
        for oid, value in r.varbinds:
            if value.tagSet == rfc1905.EndOfMibView.tagSet:
                ended = True
                break
            seen.append(oid)
        if ended:
            break
    else:
        pytest.fail("bulk walk did not end")
    assert seen == agent.oids()


def test_getbulk_non_repeaters_and_repeaters(agent):
    r = ask(agent, 1, "getbulk", [SYS_DESCR, (1, 3, 6, 1, 2, 1, 2, 2, 1, 1), (1, 3, 6, 1, 2, 1, 2, 2, 1, 2)], nonrep=1, maxrep=3)
    oids = [o for o, _ in r.varbinds]
    assert oids[0] == SYS_OBJECT_ID
    assert oids[1:] == [
        (1, 3, 6, 1, 2, 1, 2, 2, 1, 1, 1), (1, 3, 6, 1, 2, 1, 2, 2, 1, 2, 1),
        (1, 3, 6, 1, 2, 1, 2, 2, 1, 2, 1), (1, 3, 6, 1, 2, 1, 2, 2, 1, 3, 1),
        (1, 3, 6, 1, 2, 1, 2, 2, 1, 3, 1), (1, 3, 6, 1, 2, 1, 2, 2, 1, 4, 1),
    ]


def test_getbulk_past_the_end_stops_after_one_row(agent):
    last = agent.oids()[-1]
    r = ask(agent, 1, "getbulk", [last, last], maxrep=500)
    assert len(r.varbinds) == 2 and all(v.tagSet == rfc1905.EndOfMibView.tagSet for _, v in r.varbinds)


def test_v2c_get_missing_objects_and_instances(agent):
    r = ask(agent, 1, "get", [(1, 3, 6, 1, 2, 1, 1, 1, 1), (1, 3, 6, 1, 2, 1, 99, 1, 0), (1, 3, 6, 1, 2, 1, 1, 1)])
    kinds = [v.tagSet for _, v in r.varbinds]
    assert kinds == [rfc1905.NoSuchInstance.tagSet, rfc1905.NoSuchObject.tagSet, rfc1905.NoSuchInstance.tagSet]


def test_v1_get_missing_is_no_such_name_with_index(agent):
    r = ask(agent, 0, "get", [SYS_DESCR, (1, 3, 6, 1, 2, 1, 1, 99, 0)])
    assert (r.status, r.index) == (2, 2)
    assert [o for o, _ in r.varbinds] == [SYS_DESCR, (1, 3, 6, 1, 2, 1, 1, 99, 0)]


def test_counter64_is_not_in_the_v1_view(device):
    section = SNMPSection.model_validate({
        "communities": ["public"],
        "scalars": [{"base": "1.3.6.1.4.1.99", "objects": [["1.0", "Integer", 1], ["2.0", "Counter64", 2**40], ["3.0", "Integer", 3]]}],
    })
    agent = SNMPAgent(device, section)
    assert ask(agent, 0, "getnext", [(1, 3, 6, 1, 4, 1, 99, 1, 0)]).varbinds[0][0] == (1, 3, 6, 1, 4, 1, 99, 3, 0)
    assert ask(agent, 0, "get", [(1, 3, 6, 1, 4, 1, 99, 2, 0)]).status == 2
    assert int(ask(agent, 1, "get", [(1, 3, 6, 1, 4, 1, 99, 2, 0)]).varbinds[0][1]) == 2**40


# -- sizes ------------------------------------------------------------------------------------------
def test_too_big_when_one_varbind_cannot_fit(device):
    section = SNMPSection.model_validate({
        "communities": ["public"],
        "scalars": [{"base": "1.3.6.1.4.1.99", "objects": [["1.0", "OctetString", "x" * 1000], ["2.0", "Integer", 7]]}],
    })
    agent = SNMPAgent(device, section, max_reply_bytes=484)
    big = (1, 3, 6, 1, 4, 1, 99, 1, 0)
    r = ask(agent, 1, "get", [big])
    assert (r.status, r.index, r.varbinds) == (1, 0, [])
    r = ask(agent, 0, "get", [big])
    assert r.status == 1 and [o for o, _ in r.varbinds] == [big]  # v1 echoes the request
    r = ask(agent, 1, "getbulk", [(1, 3, 6, 1, 4, 1, 99)], maxrep=5)
    assert r.status == 1 and r.varbinds == []
    r = ask(agent, 1, "getbulk", [(1, 3, 6, 1, 4, 1, 99, 1, 0)], maxrep=5)  # starts after the big one: fits
    assert r.status == 0 and int(r.varbinds[0][1]) == 7


def test_many_varbinds_get_too_big_and_the_reply_is_bounded(device):
    agent = SNMPAgent(device, max_reply_bytes=484)
    data, ev = run(agent, request(1, "get", [SYS_DESCR] * 60))
    assert len(data) <= 484 and Reply(data, 1).status == 1
    # a v1 tooBig echo that itself would not fit is dropped, never sent oversized
    data, ev = run(agent, request(0, "get", [SYS_DESCR] * 40, value=api.v1.OctetString(b"y" * 20)))
    assert data is None and ev["replied"] is False
    assert len(ev["oids"]) == 33 and ev["oids"][-1] == "… 8 more"
    assert int(ask(agent, 1, "get", [(1, 3, 6, 1, 2, 1, 11, 31, 0)]).varbinds[0][1]) == 1  # snmpSilentDrops


def test_oversized_requests_are_not_decoded(agent):
    data, ev = run(agent, request(1, "get", [SYS_DESCR] * 400))
    assert data is None and ev["malformed"].startswith("oversized")


# -- communities and SET ----------------------------------------------------------------------------
@pytest.mark.parametrize("ver", [0, 1])
def test_wrong_community_is_recorded_not_answered(agent, ver):
    data, ev = run(agent, request(ver, "get", [SYS_NAME], community=b"priv\x00ate\xff"))
    assert data is None
    assert ev["community_ok"] is False and ev["replied"] is False and ev["community"] == "priv\\x00ate\\xff"
    assert ev["oids"] == ["1.3.6.1.2.1.1.5.0"] and ev["pdu"] == "get"
    assert int(ask(agent, 1, "get", [SNMP_BAD_COMMUNITY_NAMES]).varbinds[0][1]) == 1


def test_hplip_fallback_community_is_answered(agent):
    r = ask(agent, 0, "get", [HP_DEVICE_ID], community=b"public.1")
    assert text(r.varbinds[0][1]).startswith("MFG:Hewlett-Packard;")


@pytest.mark.parametrize("ver,status", [(0, 2), (1, 6)])
def test_set_is_answered_as_the_persona_declares_and_recorded(agent, ver, status):
    p = api.PROTOCOL_MODULES[ver]
    data, ev = run(agent, request(ver, "set", [SYS_NAME], value=p.OctetString(b"pwned\n")))
    r = Reply(data, ver)
    assert (r.status, r.index) == (status, 1)
    assert ev["pdu"] == "set" and ev["values"] == [["1.3.6.1.2.1.1.5.0", "pwned\\n"]] and ev["error_status"] == status
    assert text(ask(agent, 1, "get", [SYS_NAME]).varbinds[0][1]) == agent.device.hostname  # unchanged


def test_set_with_a_wrong_community_gets_nothing(agent):
    data, ev = run(agent, request(1, "set", [SYS_NAME], community=b"private", value=api.v2c.Integer(1)))
    assert data is None and ev["values"] == [["1.3.6.1.2.1.1.5.0", "1"]]


def test_set_answer_drop(device):
    section = device.persona.snmp.model_copy(update={"set_answer_v2c": "drop"})
    data, ev = run(SNMPAgent(device, section), request(1, "set", [SYS_NAME], value=api.v2c.Integer(1)))
    assert data is None and ev["replied"] is False


def test_a_persona_without_snmp_answers_nothing(device):
    agent = SNMPAgent(device, SNMPSection())
    data, ev = run(agent, NMAP_V1_PUBLIC)
    assert data is None and ev["community_ok"] is False
    data, ev = run(agent, NMAP_V3_GET)
    assert data is None


# -- malformed and arbitrary input --------------------------------------------------------------
@pytest.mark.parametrize(
    "payload,reason",
    [
        (b"", "empty datagram"),
        (b"GET / HTTP/1.0\r\n\r\n", "not an SNMP message"),
        (b"\x30\x03\x02\x01\x02", "unsupported SNMP version"),
        (b"\x30\x05\x02\x01\x01\x04\x00", "undecodable SNMPv2c message"),
        (NMAP_V1_PUBLIC[:-3], "undecodable SNMPv1 message"),
        (b"\x30\x06\x02\x01\x03\x30\x01\x00", "undecodable SNMPv3 message"),
    ],
    ids=["empty", "http", "v2u", "v2c-no-pdu", "truncated", "v3-garbage"],
)
def test_malformed_datagrams_are_recorded(agent, payload, reason):
    data, ev = run(agent, payload)
    assert data is None and ev["malformed"] == reason and ev["replied"] is False


def test_traps_and_responses_are_not_answered(agent):
    p = api.v2c
    pdu = p.ResponsePDU()
    p.apiPDU.set_defaults(pdu)
    p.apiPDU.set_varbinds(pdu, [(SYS_NAME, p.OctetString(b"x"))])
    msg = p.Message()
    p.apiMessage.set_defaults(msg)
    p.apiMessage.set_community(msg, b"public")
    p.apiMessage.set_pdu(msg, pdu)
    data, ev = run(agent, encoder.encode(msg))
    assert data is None and ev["pdu"] == "response"


def _valid_requests() -> list[bytes]:
    return [
        NMAP_V1_PUBLIC, NMAP_V3_GET,
        request(1, "getbulk", [(1, 3, 6)], maxrep=40), request(0, "getnext", [SYS_DESCR, PRT_DISPLAY]),
        request(1, "set", [SYS_NAME], value=api.v2c.OctetString(b"x")),
    ]


FUZZ_AGENT = SNMPAgent(make_device())  # shared by the property tests (only its counters change)
SMALL_AGENT = SNMPAgent(make_device(), max_reply_bytes=484)
SMALL_AGENT_600 = SNMPAgent(make_device(), max_reply_bytes=600)


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.binary(max_size=700))
def test_arbitrary_datagrams_never_raise(data):
    agent = FUZZ_AGENT
    reply, ev = run(agent, data)
    assert reply is None or len(reply) <= agent.max_reply_bytes


@settings(max_examples=600, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    base=st.sampled_from(_valid_requests()),
    edits=st.lists(st.tuples(st.integers(0, 200), st.integers(0, 255)), min_size=1, max_size=6),
    cut=st.integers(0, 300),
    tail=st.binary(max_size=8),
)
def test_mutated_requests_never_raise(base, edits, cut, tail):
    data = bytearray(base)
    for pos, byte in edits:
        data[pos % len(data)] = byte
    data = bytes(data[: max(cut, 1)]) + tail
    reply, ev = run(SMALL_AGENT, data)
    assert reply is None or len(reply) <= 484


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    oids=st.lists(st.lists(st.integers(0, 2**32 - 1), min_size=2, max_size=20).map(lambda a: (1, 3) + tuple(a)), min_size=1, max_size=8),
    kind=st.sampled_from(["get", "getnext", "getbulk"]),
    ver=st.sampled_from([0, 1]),
    maxrep=st.integers(0, 5000),
)
def test_arbitrary_oids_are_answered_within_bounds(oids, kind, ver, maxrep):
    if kind == "getbulk" and ver == 0:
        kind = "getnext"
    reply, ev = run(SMALL_AGENT_600, request(ver, kind, oids, maxrep=maxrep))
    assert reply is not None and len(reply) <= 600
    Reply(reply, ver)


def test_every_corpus_payload_is_harmless_as_a_datagram(agent):
    # the corpus has no UDP 161 entry today; every payload (161 ones included, when they
    # come) is thrown at the agent as a datagram
    for entry in corpus():
        run(agent, entry["payload"][:65507])


# -- the UDP service in-process -----------------------------------------------------------------
class Client(asyncio.DatagramProtocol):
    def __init__(self) -> None:
        self.replies: list[tuple[float, bytes]] = []
        self.got = asyncio.Event()

    def datagram_received(self, data, addr) -> None:
        self.replies.append((asyncio.get_running_loop().time(), data))
        self.got.set()


async def udp(port: int):
    loop = asyncio.get_running_loop()
    return await loop.create_datagram_endpoint(Client, remote_addr=("127.0.0.1", port))


async def query(port: int, payload: bytes, timeout: float = 2.0) -> bytes | None:
    transport, client = await udp(port)
    try:
        transport.sendto(payload)
        try:
            await asyncio.wait_for(client.got.wait(), timeout)
        except asyncio.TimeoutError:
            return None
        return client.replies[0][1]
    finally:
        transport.close()


def snmp_port(sensor) -> int:
    return sensor.settings.listen_port(sensor.settings.snmp)


def json_events(data_dir):
    return [json.loads(line) for line in (data_dir / "log" / "honeyjet.json").read_text().splitlines()]


async def test_service_pseudo_session_lifecycle(data_dir):
    settings_ = sensor_settings(data_dir, snmp={"session_idle": 0.3})
    async with running(settings_) as sensor:
        port = snmp_port(sensor)
        transport, client = await udp(port)
        transport.sendto(NMAP_V1_PUBLIC)
        transport.sendto(request(1, "get", [SYS_NAME], community=b"wrong"))
        await asyncio.wait_for(client.got.wait(), 2)
        await asyncio.sleep(0.8)  # idle: the pseudo-session closes
        transport.sendto(NMAP_V1_PUBLIC)  # same peer again: a new pseudo-session
        await asyncio.sleep(0.2)
        transport.close()
        assert len(client.replies) == 2
    events = [e for e in json_events(data_dir) if e["protocol"] == "snmp"]
    verdicts = [e for e in events if e["eventid"] == "honeyjet.verdict.session"]
    assert [v["classes"][0] for v in verdicts] == ["scanner_banner_grab"] * 2  # SNMP GETs, one with a bad community
    events = [e for e in events if e not in verdicts]
    sessions: dict[str, list] = {}
    for e in events:
        sessions.setdefault(e["session"], []).append(e)
    assert len(sessions) == 2
    first, second = sessions.values()
    assert [e["eventid"] for e in first] == [
        "honeyjet.session.connect", EVENT, EVENT, "honeyjet.session.closed",
    ]
    assert first[1]["community_ok"] is True and first[2]["community_ok"] is False and first[2]["replied"] is False
    closed = first[-1]
    assert closed["reason"] == "idle_timeout" and closed["bytes_in"] == len(NMAP_V1_PUBLIC) + len(request(1, "get", [SYS_NAME], community=b"wrong"))
    assert closed["bytes_out"] == first[1]["reply_size"]
    assert second[-1]["eventid"] == "honeyjet.session.closed" and second[-1]["reason"] == "shutdown"
    assert all(e["src_ip"] == "127.0.0.1" and e["dst_port"] == port for e in events)


async def test_service_reply_rate_is_bounded_and_the_limit_recorded(data_dir):
    settings_ = sensor_settings(data_dir)
    rate = settings_.snmp.replies_per_source
    async with running(settings_) as sensor:
        port = snmp_port(sensor)
        transport, client = await udp(port)
        loop = asyncio.get_running_loop()
        start = loop.time()
        bulk = request(1, "getbulk", [(1, 3, 6)], maxrep=1000)
        for _ in range(200):
            transport.sendto(bulk)
        await asyncio.sleep(2.3)
        transport.close()
        counters = dict(sensor.counters)
    in_first_second = [t for t, _ in client.replies if t - start < 1.0]
    assert 0 < len(in_first_second) <= rate
    assert len(client.replies) <= 2 * rate + 1  # what arrived early waited its turn; the rest was dropped
    assert all(len(d) <= settings_.snmp.max_reply_bytes for _, d in client.replies)
    assert max(len(d) for _, d in client.replies) > settings_.snmp.max_reply_bytes - 200  # bulk filled up
    assert counters["limit_replies_per_source"] >= 200 - 2 * rate - 1
    events = json_events(data_dir)
    hits = [e for e in events if e["eventid"] == "honeyjet.limit.hit" and e["protocol"] == "snmp"]
    assert len(hits) == 1 and hits[0]["limit"] == "replies_per_source" and hits[0]["value"] == rate
    requests = [e for e in events if e["eventid"] == EVENT]
    assert len(requests) == len(client.replies)


async def test_service_paces_a_sequential_walker_instead_of_dropping(data_dir):
    async with running(sensor_settings(data_dir, snmp={"replies_per_source": 20})) as sensor:
        port = snmp_port(sensor)
        oid, answered = (1, 3, 6, 1, 2, 1), 0
        for _ in range(45):  # more than twice the rate, one at a time
            reply = await query(port, request(1, "getnext", [oid]), timeout=1.0)
            assert reply is not None, f"request {answered + 1} timed out"
            oid = Reply(reply, 1).varbinds[0][0]
            answered += 1
    assert not [e for e in json_events(data_dir) if e["eventid"] == "honeyjet.limit.hit"]


async def test_service_bounds_pseudo_sessions_per_source(data_dir):
    async with running(sensor_settings(data_dir, limits={"sessions_per_source": 2})) as sensor:
        port = snmp_port(sensor)
        replies = [await query(port, NMAP_V1_PUBLIC, timeout=0.5) for _ in range(3)]
        assert [r is not None for r in replies] == [True, True, False]
        assert sensor.counters["rejected_sessions_per_source"] == 1
    rejected = [e for e in json_events(data_dir) if e["eventid"] == "honeyjet.session.rejected"]
    assert rejected and rejected[0]["protocol"] == "snmp" and rejected[0]["limit"] == "sessions_per_source"


async def test_service_cpu_share_bounds_all_snmp_work(data_dir):
    settings_ = sensor_settings(data_dir, limits={"cpu_share": 0.0001, "cpu_burst": 0.0})
    async with running(settings_) as sensor:
        port = snmp_port(sensor)
        replies = [await query(port, request(1, "getbulk", [(1, 3, 6)], maxrep=50), timeout=0.3) for _ in range(4)]
        assert replies[0] is not None and replies[1:] == [None, None, None]
        assert sensor.counters["snmp_cpu_dropped"] == 3
    hits = [e for e in json_events(data_dir) if e["eventid"] == "honeyjet.limit.hit" and e["protocol"] == "snmp"]
    assert [h["limit"] for h in hits] == ["cpu_share"]


async def test_service_display_follows_pjl_rdymsg(data_dir):
    async with running(sensor_settings(data_dir)) as sensor:
        pjl = sensor.settings.listen_port(sensor.settings.pjl)
        await exchange(pjl, b'@PJL RDYMSG DISPLAY="HELLO SNMP"\r\n')
        reply = await query(snmp_port(sensor), request(1, "get", [PRT_DISPLAY]))
        assert text(Reply(reply, 1).varbinds[0][1]) == "HELLO SNMP"


def test_templates_use_only_known_names(agent):
    """A typo in snmp.toml (``${pagecont}``) would otherwise ship as literal text."""
    known = set(agent.values())
    for oid in agent.oids():
        tpl: string.Template = agent._objects[oid].template
        for match in tpl.pattern.finditer(tpl.template):
            name = match.group("named") or match.group("braced")
            if name:
                assert name in known, f"{oid}: unknown placeholder {name}"
