"""Detection rules kept as data, compiled once, evaluated over session features.

Rules live in TOML files (one per area; the packaged ones are in
``honeyjet/analysis/rules/``, an operator adds files in ``<data>/rules/`` or
``analysis.rules_dir`` without touching code). A file may hold:

* ``[[class]]`` — taxonomy entries (name, severity, priority, description);
* ``[[rule]]`` — id, name, class, severity, priority (default: the class's),
  description, references, tools, and conditions ``all`` / ``any`` / ``none``, each a
  list of predicates ``{ f = "<feature>", <op> = <value> }``; ``fallback = true`` makes
  a rule count only when no other rule fired;
* ``[[path_tag]]``, ``[[lexicon]]``, ``[[probe]]`` — vocabulary that features use.

Predicate operators: ``has``, ``has_any``, ``has_all``, ``subset`` (sets/lists),
``eq``, ``ne``, ``in`` (scalars), ``ge``, ``gt``, ``le``, ``lt`` (numbers; on sets and
lists they compare the size), ``match`` (regular expression, searched in a string or in
any element of a set/list), ``is`` (booleans). Regexes are compiled at load time; the
text they run on is bounded by the features. A bad file is reported as one line naming
the file, the rule and the key.

A verdict lists every rule that fired; its primary class is the class of the rule with
the highest priority, its severity that rule's severity raised to the highest ``high``
or ``critical`` among the others (so a critical act is never hidden behind a more
specific low-severity explanation).
"""

from __future__ import annotations

import re
import tomllib
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any, Callable, Iterable

from honeyjet.analysis.features import FEATURES, Vocab

SEVERITIES = ("info", "low", "medium", "high", "critical")
SEVERITY_RANK = {s: i for i, s in enumerate(SEVERITIES)}
_OPS = ("has", "has_any", "has_all", "subset", "eq", "ne", "in", "ge", "gt", "le", "lt", "match", "is")
_RULE_KEYS = {"id", "name", "class", "severity", "priority", "description", "references", "tools", "all", "any", "none", "fallback"}
_MAX_REGEX = 2000


class RuleError(ValueError):
    """A rules file is wrong; the message names the file, the rule and the key."""


@dataclass(frozen=True)
class ClassInfo:
    name: str
    severity: str
    priority: int
    description: str


@dataclass
class Rule:
    id: str
    name: str
    cls: str
    severity: str
    priority: int
    description: str
    references: list[str]
    tools: list[str]
    fallback: bool
    source: str
    test: Callable[[dict[str, Any]], bool] = field(repr=False)
    guard: str = ""  # a feature that must be non-empty/non-zero for the rule to fire ("" = none known)
    any_guards: tuple[str, ...] = ()  # one of these must be truthy (from an ``any`` list)
    conditions: dict[str, list[dict[str, Any]]] = field(default_factory=dict, repr=False)

    def summary(self) -> dict[str, Any]:
        return {"id": self.id, "name": self.name, "class": self.cls, "severity": self.severity}


@dataclass
class Verdict:
    classes: list[str]
    severity: str
    rules: list[str]
    fired: list[Rule]

    @property
    def primary(self) -> str:
        return self.classes[0] if self.classes else ""


def _feature_getter(fname: str, where: str, features: dict[str, tuple[str, str]]) -> Callable[[dict[str, Any]], Any]:
    if fname.startswith("lexicon.") and "lexicon" in features:
        name = fname.split(".", 1)[1]
        return lambda f: f["lexicon"].get(name, 0)
    if fname not in features or features[fname][0] == "dict":
        close = [n for n in features if n.split("_")[0] == fname.split("_")[0]][:5]
        hint = f" (known: {', '.join(close)})" if close else ""
        raise RuleError(f"{where}: unknown feature {fname!r}{hint}")
    return lambda f: f[fname]


def _size(v: Any) -> Any:
    return len(v) if isinstance(v, (set, frozenset, list, tuple)) else v


def _compile_pred(pred: Any, where: str, features: dict[str, tuple[str, str]]) -> Callable[[dict[str, Any]], bool]:
    if not isinstance(pred, dict):
        raise RuleError(f"{where}: a condition must be a table like {{ f = \"pjl_verbs\", has = \"RDYMSG\" }}")
    fname = pred.get("f")
    if not isinstance(fname, str):
        raise RuleError(f"{where}: condition without 'f' (the feature name)")
    ops = [k for k in pred if k != "f"]
    if len(ops) != 1 or ops[0] not in _OPS:
        raise RuleError(f"{where}: condition on {fname!r} needs exactly one operator of {', '.join(_OPS)}; got {ops}")
    op, arg = ops[0], pred[ops[0]]
    get = _feature_getter(fname, where, features)
    kind = "int" if fname.startswith("lexicon.") else features[fname][0]
    w = f"{where}: {fname} {op}"

    def need(cond: bool, what: str) -> None:
        if not cond:
            raise RuleError(f"{w}: {what}")

    def as_set(v: Any) -> frozenset[str]:
        need(isinstance(v, list) and all(isinstance(x, str) for x in v), "needs a list of strings")
        return frozenset(v)

    if op == "has":
        need(isinstance(arg, str), "needs a string")
        need(kind in ("set", "list"), f"only for sets/lists ({fname} is {kind})")
        return lambda f: arg in get(f)
    if op == "has_any":
        vals = as_set(arg)
        need(kind in ("set", "list"), f"only for sets/lists ({fname} is {kind})")
        return lambda f: any(x in vals for x in get(f))
    if op == "has_all":
        vals = as_set(arg)
        need(kind in ("set", "list"), f"only for sets/lists ({fname} is {kind})")
        return lambda f: vals <= set(get(f))
    if op == "subset":
        vals = as_set(arg)
        need(kind in ("set", "list"), f"only for sets/lists ({fname} is {kind})")
        return lambda f: set(get(f)) <= vals
    if op in ("eq", "ne"):
        need(isinstance(arg, (str, int, float, bool)), "needs a string, number or boolean")
        if op == "eq":
            return lambda f: get(f) == arg
        return lambda f: get(f) != arg
    if op == "in":
        need(isinstance(arg, list), "needs a list")
        vals_l = list(arg)
        return lambda f: get(f) in vals_l
    if op in ("ge", "gt", "le", "lt"):
        need(isinstance(arg, (int, float)) and not isinstance(arg, bool), "needs a number")
        cmp = {"ge": lambda a: a >= arg, "gt": lambda a: a > arg, "le": lambda a: a <= arg, "lt": lambda a: a < arg}[op]
        return lambda f: cmp(_size(get(f)))
    if op == "match":
        need(isinstance(arg, str) and len(arg) <= _MAX_REGEX, f"needs a regular expression (≤ {_MAX_REGEX} chars)")
        try:
            rx = re.compile(arg)
        except re.error as exc:
            raise RuleError(f"{w}: bad regular expression: {exc}") from None
        search = rx.search
        if kind in ("set", "list"):
            return lambda f: any(search(x) for x in get(f))
        need(kind == "str", f"only for strings, sets and lists ({fname} is {kind})")
        return lambda f: search(get(f)) is not None
    # "is"
    need(isinstance(arg, bool), "needs true or false")
    return lambda f: bool(get(f)) is arg


def _compile_rule(raw: dict[str, Any], classes: dict[str, ClassInfo], source: str,
                  features: dict[str, tuple[str, str]] = FEATURES) -> Rule:
    rid = raw.get("id")
    where = f"{source}: rule {rid!r}"
    if not isinstance(rid, str) or not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}", rid):
        raise RuleError(f"{source}: a rule needs an 'id' (letters, digits, '-', '_', '.'); got {rid!r}")
    unknown = set(raw) - _RULE_KEYS
    if unknown:
        raise RuleError(f"{where}: unknown key(s) {', '.join(sorted(unknown))}")
    for key in ("name", "class", "description"):
        if not isinstance(raw.get(key), str) or not raw[key].strip():
            raise RuleError(f"{where}: '{key}' is required (a non-empty string)")
    cls = raw["class"]
    if cls not in classes:
        raise RuleError(f"{where}: class {cls!r} is not in the taxonomy (declare it with [[class]])")
    info = classes[cls]
    severity = raw.get("severity", info.severity)
    if severity not in SEVERITY_RANK:
        raise RuleError(f"{where}: severity must be one of {', '.join(SEVERITIES)}; got {severity!r}")
    priority = raw.get("priority", info.priority)
    if not isinstance(priority, int) or isinstance(priority, bool):
        raise RuleError(f"{where}: priority must be an integer")
    refs = raw.get("references", [])
    tools = raw.get("tools", [])
    for key, val in (("references", refs), ("tools", tools)):
        if not (isinstance(val, list) and all(isinstance(x, str) for x in val)):
            raise RuleError(f"{where}: '{key}' must be a list of strings")
    groups: dict[str, list[Callable[[dict[str, Any]], bool]]] = {}
    for key in ("all", "any", "none"):
        preds = raw.get(key, [])
        if not isinstance(preds, list):
            raise RuleError(f"{where}: '{key}' must be a list of conditions")
        groups[key] = [_compile_pred(p, f"{where}: {key}[{i}]", features) for i, p in enumerate(preds)]
    if not groups["all"] and not groups["any"]:
        raise RuleError(f"{where}: needs at least one condition in 'all' or 'any'")
    all_p, any_p, none_p = groups["all"], groups["any"], groups["none"]

    def test(f: dict[str, Any]) -> bool:
        for p in all_p:
            if not p(f):
                return False
        if any_p and not any(p(f) for p in any_p):
            return False
        for p in none_p:
            if p(f):
                return False
        return True

    fallback = raw.get("fallback", False)
    if not isinstance(fallback, bool):
        raise RuleError(f"{where}: 'fallback' must be true or false")
    return Rule(rid, raw["name"].strip(), cls, severity, priority, " ".join(raw["description"].split()), refs, tools,
                fallback, source, test, conditions={k: raw.get(k, []) for k in ("all", "any", "none")},
                guard=_guard(raw.get("all", []), features), any_guards=_any_guards(raw.get("any", []), features))


def _pred_guard(p: dict[str, Any], features: dict[str, tuple[str, str]]) -> str:
    """A feature that must be truthy for this condition to hold ("" when there is none)."""
    name = p.get("f", "")
    op = next((k for k in p if k != "f"), "")
    arg = p.get(op)
    if name.startswith("lexicon.") and op in ("ge", "gt") and isinstance(arg, (int, float)) and arg > 0:
        return "job_text"  # lexicon terms are counted in the job text (panel messages included)
    kind = features.get(name, ("", ""))[0]
    if kind not in ("set", "list", "int", "float", "bool", "str"):
        return ""
    if op in ("has", "has_any", "has_all") and arg:
        return name
    if op == "match" and kind in ("set", "list"):
        return name
    if op == "match" and kind == "str" and isinstance(arg, str) and not re.search(arg, ""):
        return name
    if op == "is" and arg is True:
        return name
    if op == "eq" and arg and not isinstance(arg, bool) or op == "eq" and arg is True:
        return name
    if op == "in" and isinstance(arg, list) and arg and all(arg):
        return name
    if op == "ge" and isinstance(arg, (int, float)) and arg > 0 or op == "gt" and isinstance(arg, (int, float)) and arg >= 0:
        return name
    return ""


def _guard(preds: list[dict[str, Any]], features: dict[str, tuple[str, str]]) -> str:
    """A feature an ``all`` condition needs to be truthy (lets evaluation skip the rule cheaply)."""
    for p in preds:
        g = _pred_guard(p, features)
        if g:
            return g
    return ""


def _any_guards(preds: list[dict[str, Any]], features: dict[str, tuple[str, str]]) -> tuple[str, ...]:
    """Features of which one must be truthy for an ``any`` list to hold (empty: unknown)."""
    guards = tuple(_pred_guard(p, features) for p in preds)
    return guards if guards and all(guards) else ()


def _decode_probe(text: str) -> bytes:
    """Probe bytes are written as TOML strings; code points ≤ 0xFF are the bytes."""
    return text.encode("latin-1")


class RuleSet:
    """Compiled rules plus the vocabulary (path tags, lexicons, probes) features need."""

    def __init__(self, classes: dict[str, ClassInfo], rules: list[Rule], vocab: Vocab, sources: list[str],
                 source_rules: list[Rule] | None = None):
        self.classes = classes
        self.rules = sorted(rules, key=lambda r: (-r.priority, -SEVERITY_RANK[r.severity], r.id))
        self.source_rules = sorted(source_rules or [], key=lambda r: (-r.priority, -SEVERITY_RANK[r.severity], r.id))
        self.by_id = {r.id: r for r in self.rules + self.source_rules}
        self.vocab = vocab
        self.sources = sources
        self._normal = [r for r in self.rules if not r.fallback]
        self._fallback = [r for r in self.rules if r.fallback]

    @classmethod
    def load(cls, extra_dirs: Iterable[Path | str] = ()) -> "RuleSet":
        """The packaged rules, then every ``*.toml`` of ``extra_dirs`` (operator rules)."""
        docs: list[tuple[str, str]] = []
        pkg = resources.files("honeyjet.analysis") / "rules"
        for entry in sorted(pkg.iterdir(), key=lambda e: e.name):
            if entry.name.endswith(".toml"):
                docs.append((f"rules/{entry.name}", entry.read_text(encoding="utf-8")))
        for d in extra_dirs:
            path = Path(d)
            if not path.is_dir():
                raise RuleError(f"rules directory {str(path)!r} does not exist")
            for file in sorted(path.glob("*.toml")):
                try:
                    docs.append((str(file), file.read_text(encoding="utf-8")))
                except (OSError, UnicodeDecodeError) as exc:
                    raise RuleError(f"{file}: cannot read: {exc}") from None
        return cls.from_texts(docs)

    @classmethod
    def from_texts(cls, docs: list[tuple[str, str]]) -> "RuleSet":
        parsed: list[tuple[str, dict[str, Any]]] = []
        for source, text in docs:
            try:
                parsed.append((source, tomllib.loads(text)))
            except tomllib.TOMLDecodeError as exc:
                raise RuleError(f"{source}: not valid TOML: {exc}") from None
        classes: dict[str, ClassInfo] = {}
        vocab = Vocab()
        lexicon_words: dict[str, list[str]] = {}
        for source, doc in parsed:
            unknown = set(doc) - {"class", "rule", "source_rule", "path_tag", "lexicon", "probe"}
            if unknown:
                raise RuleError(f"{source}: unknown table(s) {', '.join(sorted(unknown))}")
            for c in doc.get("class", []):
                name = c.get("name")
                sev = c.get("severity")
                prio = c.get("priority")
                if not isinstance(name, str) or sev not in SEVERITY_RANK or not isinstance(prio, int):
                    raise RuleError(f"{source}: class {name!r} needs name, severity ({'/'.join(SEVERITIES)}) and priority")
                classes[name] = ClassInfo(name, sev, prio, " ".join(str(c.get("description", "")).split()))
            for t in doc.get("path_tag", []):
                tag, rx = t.get("tag"), t.get("match")
                if not isinstance(tag, str) or not isinstance(rx, str):
                    raise RuleError(f"{source}: path_tag needs 'tag' and 'match'")
                try:
                    vocab.path_tags.append((tag, re.compile(rx)))
                except re.error as exc:
                    raise RuleError(f"{source}: path_tag {tag!r}: bad regular expression: {exc}") from None
            for lx in doc.get("lexicon", []):
                name, words = lx.get("name"), lx.get("terms")
                if not isinstance(name, str) or not re.fullmatch(r"[a-z0-9_]+", name) or not (
                        isinstance(words, list) and all(isinstance(w, str) and w.strip() for w in words)):
                    raise RuleError(f"{source}: lexicon needs 'name' (a-z0-9_) and 'terms' (list of strings)")
                lexicon_words.setdefault(name, []).extend(words)
            for pr in doc.get("probe", []):
                name, data = pr.get("name"), pr.get("bytes")
                if not isinstance(name, str) or not isinstance(data, str):
                    raise RuleError(f"{source}: probe needs 'name' and 'bytes'")
                try:
                    vocab.probes[_decode_probe(data)] = name
                except UnicodeEncodeError:
                    raise RuleError(f"{source}: probe {name!r}: bytes must use code points ≤ \\u00ff") from None
        for name, words in lexicon_words.items():
            alts = "|".join(sorted({re.escape(" ".join(w.lower().split())).replace(r"\ ", r"\s+") for w in words}, key=len, reverse=True))
            vocab.lexicons[name] = re.compile(rf"(?<![\w]){'(?:' + alts + ')'}(?![\w])", re.I)
        from honeyjet.analysis.sources import SOURCE_FEATURES

        compiled: dict[str, list[Rule]] = {"rule": [], "source_rule": []}
        seen: dict[str, str] = {}
        for source, doc in parsed:
            for table, features in (("rule", FEATURES), ("source_rule", SOURCE_FEATURES)):
                for raw in doc.get(table, []):
                    if not isinstance(raw, dict):
                        raise RuleError(f"{source}: [[{table}]] entries must be tables")
                    rule = _compile_rule(raw, classes, source, features)
                    if rule.id in seen:
                        raise RuleError(f"{source}: rule id {rule.id!r} already defined in {seen[rule.id]}")
                    seen[rule.id] = source
                    compiled[table].append(rule)
        return cls(classes, compiled["rule"], vocab, [s for s, _ in docs], compiled["source_rule"])

    def evaluate(self, features: dict[str, Any]) -> Verdict:
        """The verdict of the session rules on one session's features."""
        return _verdict(_fire(self._normal, features) or _fire(self._fallback, features))

    def evaluate_source(self, features: dict[str, Any]) -> Verdict:
        """The verdict of the source (correlation) rules on one source's features."""
        return _verdict(_fire(self.source_rules, features))


def _fire(rules: list[Rule], features: dict[str, Any]) -> list[Rule]:
    return [r for r in rules if (not r.guard or features[r.guard])
            and (not r.any_guards or any(features[g] for g in r.any_guards)) and r.test(features)]


def _verdict(fired: list[Rule]) -> Verdict:
    if not fired:
        return Verdict([], "info", [], [])
    classes: list[str] = []
    for r in fired:  # already in priority order
        if r.cls not in classes:
            classes.append(r.cls)
    rank = SEVERITY_RANK[fired[0].severity]
    for r in fired[1:]:
        if SEVERITY_RANK[r.severity] >= SEVERITY_RANK["high"]:
            rank = max(rank, SEVERITY_RANK[r.severity])
    return Verdict(classes, SEVERITIES[rank], [r.id for r in fired], fired)
