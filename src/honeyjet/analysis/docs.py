"""The generated reference of ``docs/detection.md``: features, classes and every packaged rule.

``python -m honeyjet.analysis.docs`` prints it; ``python -m honeyjet.analysis.docs --update
docs/detection.md`` replaces the block between the ``<!-- reference:begin -->`` and
``<!-- reference:end -->`` markers. A test fails when the document and the code disagree.
"""

from __future__ import annotations

import sys
from pathlib import Path

from honeyjet.analysis.features import FEATURES
from honeyjet.analysis.rules import RuleSet
from honeyjet.analysis.sources import SOURCE_FEATURES

BEGIN, END = "<!-- reference:begin -->", "<!-- reference:end -->"


def _cell(text: str) -> str:
    return " ".join(str(text).split()).replace("|", "\\|")


def _conds(conditions: dict) -> str:
    parts = []
    for key in ("all", "any", "none"):
        preds = conditions.get(key) or []
        if preds:
            body = "; ".join(f"`{p['f']}` {k} `{v!r}`" for p in preds for k, v in p.items() if k != "f")
            parts.append(f"{key}: {body}")
    return _cell(" — ".join(parts))


def reference() -> str:
    rules = RuleSet.load()
    out = [BEGIN, "", "### Session features", "", "| feature | type | meaning |", "| --- | --- | --- |"]
    out += [f"| `{n}` | {k} | {_cell(d)} |" for n, (k, d) in FEATURES.items()]
    out += ["", "### Source features (for `[[source_rule]]`)", "", "| feature | type | meaning |", "| --- | --- | --- |"]
    out += [f"| `{n}` | {k} | {_cell(d)} |" for n, (k, d) in SOURCE_FEATURES.items()]
    out += ["", "### Classes", "", "| class | default severity | priority | meaning |", "| --- | --- | ---: | --- |"]
    for c in sorted(rules.classes.values(), key=lambda c: -c.priority):
        out.append(f"| `{c.name}` | {c.severity} | {c.priority} | {_cell(c.description)} |")
    for title, items in (("Session rules", rules.rules), ("Source rules", rules.source_rules)):
        out += ["", f"### {title}", "", "| id | name | class | severity | priority | conditions | references |",
                "| --- | --- | --- | --- | ---: | --- | --- |"]
        for r in items:
            refs = "; ".join(r.references + [f"tool: {t}" for t in r.tools])
            out.append(f"| `{r.id}` | {_cell(r.name)}{' (fallback)' if r.fallback else ''} | `{r.cls}` | {r.severity} | "
                       f"{r.priority} | {_conds(r.conditions)} | {_cell(refs)} |")
    out += ["", END]
    return "\n".join(out)


def replace_block(path: Path, name: str, body: str) -> bool:
    """Replace what stands between ``<!-- name:begin -->`` and ``<!-- name:end -->``."""
    begin, end = f"<!-- {name}:begin -->", f"<!-- {name}:end -->"
    text = path.read_text(encoding="utf-8")
    start, stop = text.index(begin) + len(begin), text.index(end)
    new = text[:start] + "\n" + body.strip("\n") + "\n" + text[stop:]
    if new != text:
        path.write_text(new, encoding="utf-8")
        return True
    return False


def update(path: Path) -> bool:
    return replace_block(path, "reference", reference().removeprefix(BEGIN).removesuffix(END))


def main(argv: list[str]) -> int:
    if len(argv) == 2 and argv[0] == "--update":
        print("updated" if update(Path(argv[1])) else "current")
        return 0
    print(reference())
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
