"""docs/detection.md lists every feature, class and packaged rule exactly as the code has them."""

from __future__ import annotations

from pathlib import Path

from honeyjet.analysis.docs import BEGIN, END, reference

DOC = Path(__file__).resolve().parents[1] / "docs" / "detection.md"


def test_reference_block_is_current() -> None:
    text = DOC.read_text(encoding="utf-8")
    block = text[text.index(BEGIN) + len(BEGIN): text.index(END)]
    want = reference().removeprefix(BEGIN).removesuffix(END)
    assert block.strip() == want.strip(), "run: python -m honeyjet.analysis.docs --update docs/detection.md"
