"""The event catalogue, the code and docs/events.md cannot drift apart."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

from honeyjet.events import CATALOGUE, COMMON_FIELDS, EventBus, MemorySink, UnknownEvent, catalogue_markdown

ROOT = Path(__file__).resolve().parents[1]
SRC = ROOT / "src" / "honeyjet"
ID_RE = re.compile(r"^honeyjet\.[a-z]+\.[a-z_]+$")


def _string_constants() -> dict[str, list[str]]:
    found: dict[str, list[str]] = {}
    for path in SRC.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Constant) and isinstance(node.value, str) and ID_RE.match(node.value):
                found.setdefault(node.value, []).append(f"{path.relative_to(ROOT)}:{node.lineno}")
    return found


def test_docs_are_generated_from_the_catalogue():
    docs = (ROOT / "docs" / "events.md").read_text()
    assert docs == catalogue_markdown(), "run: python -m honeyjet.events > docs/events.md"


def test_every_event_id_in_code_is_catalogued():
    used = _string_constants()
    def is_module(name: str) -> bool:
        path = SRC.parent / name.replace(".", "/")
        return path.is_dir() or path.with_suffix(".py").exists()

    unknown = {k: v for k, v in used.items() if k not in CATALOGUE and not is_module(k)}
    assert not unknown, f"event ids used in code but not in the catalogue: {unknown}"


def test_every_catalogued_id_is_emitted_somewhere():
    used = _string_constants()
    defined_in_catalogue_only = [e for e in CATALOGUE if len([p for p in used.get(e, []) if "events.py" not in p]) == 0]
    assert not defined_in_catalogue_only, f"catalogued but never emitted: {defined_in_catalogue_only}"


def test_ids_are_well_formed_and_fields_documented():
    for eventid, spec in CATALOGUE.items():
        assert ID_RE.match(eventid)
        assert spec.description.endswith(".")
        for name, doc in spec.fields.items():
            assert name not in COMMON_FIELDS, f"{eventid}.{name} shadows a common field"
            assert doc, f"{eventid}.{name} undocumented"


def test_identity_cannot_be_overwritten_by_fields():
    bus = EventBus("s1", strict=True)
    sink = MemorySink()
    bus.add_sink(sink)
    ident = {"session": "abc", "protocol": "pjl", "src_ip": "198.51.100.7", "src_port": 1, "dst_ip": "x", "dst_port": 9100}
    bus.emit("honeyjet.session.connect", "hi", ident, {"src_ip": "203.0.113.66", "session": "forged"})
    ev = sink.events[0]
    assert ev["src_ip"] == "198.51.100.7" and ev["session"] == "abc"
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z", ev["timestamp"])
    assert set(COMMON_FIELDS) <= set(ev)


def test_strict_bus_rejects_undeclared_fields_lenient_bus_drops_them():
    with pytest.raises(UnknownEvent):
        EventBus("s", strict=True).emit("honeyjet.session.connect", "m", {}, {"evil": 1})
    with pytest.raises(UnknownEvent):
        EventBus("s", strict=True).emit("honeyjet.nope.nope", "m", {}, {})
    bus = EventBus("s")
    sink = MemorySink()
    bus.add_sink(sink)
    bus.emit("honeyjet.session.connect", "m", {}, {"evil": 1})
    assert "evil" not in sink.events[0]


def test_a_failing_sink_does_not_stop_the_others():
    class Broken:
        name = "broken"

        def write(self, event):
            raise OSError("disk on fire")

    bus = EventBus("s")
    good = MemorySink()
    bus.add_sink(Broken())  # type: ignore[arg-type]
    bus.add_sink(good)
    bus.emit("honeyjet.session.connect", "m", {}, {})
    assert len(good.events) == 1 and bus.sink_errors["broken"] == 1
