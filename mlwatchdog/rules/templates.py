"""Target templates: a `targets:` entry with `for_each:` stands for one target per item.

`for_each` is a list of mappings of variables (`[{model: fraud-a, ns: team-a}, ...]`); the entry
without it is the template, copied once per item with every `{{variable}}` in its string values
replaced by the item's value. Pure data in, data out: the loader expands the YAML's data before
`${ENV}` interpolation and validation, so each expanded target is checked like a written one, and
maps each problem back to the entry and item (`Origin`).

Bounds: the file as written is bounded by `yaml_bounds`; expansion adds at most MAX_TARGETS
targets, MAX_EXPANDED_VALUES values and MAX_EXPANDED_CHARS characters of strings, checked before
anything that large is built. Items hold scalars only, and a value is substituted once (a `{{`
in a value stays as it is), so nothing expands further.
"""

from __future__ import annotations

import difflib
import re
from dataclasses import dataclass, field
from datetime import date
from typing import Any

from mlwatchdog.rules.secret import MASK, is_secret_key, may_hold_secret

KeyPath = tuple[str | int, ...]
FOR_EACH = "for_each"
PLACEHOLDER = re.compile(r"\{\{\s*([A-Za-z_][A-Za-z0-9_]*)\s*\}\}")
MAX_TARGETS = 10_000  # after expansion; issue 16 asks for 2,000 in one daemon
MAX_EXPANDED_VALUES = 1_000_000  # 10,000 targets of ~100 values (20 columns, two checks)
MAX_EXPANDED_CHARS = 32 << 20  # 10,000 targets of ~1 KB of strings each, with room to spare
_VARIABLE = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")
_SHOWN_CHARS = 40  # an item value longer than this is cut in messages


@dataclass(frozen=True)
class Origin:
    """Where an expanded target was written: its `targets:` entry and for_each item."""

    entry: int
    item: int | None = None  # None: the entry is an ordinary target, written out
    shown: str = ""  # the item's values for messages, `{model: fraud-a}`; secrets masked


@dataclass(frozen=True)
class Template:
    """A `targets:` entry with for_each, as `mlwatchdog check` reports it."""

    entry: int
    name: str  # as written, placeholders and all
    targets: int  # how many it expanded to


@dataclass
class Expansion:
    """The targets' data expanded, each one's origin, and the templates' problems (key paths as
    written in the file)."""

    targets: list[Any] = field(default_factory=list)
    origins: list[Origin] = field(default_factory=list)
    templates: list[Template] = field(default_factory=list)
    problems: list[tuple[KeyPath, str]] = field(default_factory=list)
    skipped: bool = False  # an entry left out for its problems (so `targets` may look short)
    refused: bool = False  # over a bound: the targets are not all there, nothing more to check


def expand_targets(targets: list[Any]) -> Expansion:
    """Each entry of `targets` (the YAML's data), a template's expanded once per item."""
    out = Expansion()
    planned = [_plan(i, entry, out.problems) for i, entry in enumerate(targets)]
    count = sum(1 if p is None else len(p.items) for p in planned)
    values = sum(1 if p is None else len(p.items) * p.values for p in planned)
    if count > MAX_TARGETS or values > MAX_EXPANDED_VALUES:
        what = f"{count:,} targets" if count > MAX_TARGETS else f"{values:,} values"
        bound = f"{MAX_TARGETS:,} targets" if count > MAX_TARGETS else f"{MAX_EXPANDED_VALUES:,}"
        out.problems.append(
            (
                ("targets",),
                f"for_each expands the targets to {what}, more than {bound} a rules file may "
                "hold; split the models across several daemons, each with its own rules file",
            )
        )
        out.refused = True
        return out
    budget = [MAX_EXPANDED_CHARS]
    for i, (entry, plan) in enumerate(zip(targets, planned, strict=True)):
        if plan is None:
            if isinstance(entry, dict) and FOR_EACH in entry:
                out.skipped = True  # its for_each is broken: reported by _plan
                continue
            out.targets.append(entry)
            out.origins.append(Origin(i))
            continue
        if not _expand(i, plan, out, budget):
            return out
    return out


@dataclass(frozen=True)
class _Slots:
    """A string with placeholders: literal text and variable names, alternating."""

    parts: tuple[str, ...]  # literal, name, literal, name, ..., literal

    def fill(self, values: dict[str, Any], texts: dict[str, str]) -> Any:
        if len(self.parts) == 3 and self.parts[0] == self.parts[2] == "":
            return values[self.parts[1]]  # the whole string: the value, its type kept
        return "".join(part if k % 2 == 0 else texts[part] for k, part in enumerate(self.parts))

    def size(self, texts: dict[str, str]) -> int:
        return sum(len(p) if k % 2 == 0 else len(texts[p]) for k, p in enumerate(self.parts))


@dataclass
class _Plan:
    template: Any  # the entry without for_each, strings with placeholders as _Slots
    items: list[dict[str, Any]]
    values: int  # values of one expanded target
    secret: set[str]  # variables masked in messages
    name: str  # as written


def _plan(entry_index: int, entry: Any, problems: list[tuple[KeyPath, str]]) -> _Plan | None:
    """The entry compiled into a template, or None if it has no for_each or a broken one
    (its problems added)."""
    if not isinstance(entry, dict) or FOR_EACH not in entry:
        return None
    at: KeyPath = ("targets", entry_index)
    used: dict[str, list[KeyPath]] = {}
    found: list[tuple[KeyPath, str]] = []
    body = {k: v for k, v in entry.items() if k != FOR_EACH}
    template = _compile(body, at, used, found)
    items = _items(entry[FOR_EACH], at + (FOR_EACH,), found)
    if items is None:
        problems += found
        return None
    defined = {name for item in items for name in item}
    secret = {n for n in defined if is_secret_key(n)}
    secret |= {n for n, paths in used.items() if any(map(may_hold_secret, paths))}
    for name, paths in used.items():
        if name not in defined:
            close = difflib.get_close_matches(name, sorted(defined), n=1)
            hint = f"did you mean {{{{{close[0]}}}}}?" if close else "add it to every item"
            found.append(
                (
                    paths[0],
                    f"unknown placeholder {{{{{name}}}}}: no for_each item defines {name} "
                    f"(they define {', '.join(sorted(defined))}); {hint}",
                )
            )
            continue
        missing = [k for k, item in enumerate(items) if name not in item]
        if missing:
            k = missing[0]
            nor = f", nor do {items_named(missing[1:])}" if missing[1:] else ""
            found.append(
                (
                    at + (FOR_EACH, k),
                    f"for_each[{k}] {_shown(items[k], secret)} has no {name}, which the entry "
                    f"uses ({{{{{name}}}}}){nor}; give every item a {name}",
                )
            )
    written = body.get("name")
    if len(items) > 1 and isinstance(template.get("name"), str):
        found.append(
            (
                at + ("name",),
                f"the name {written!r} has no placeholder, so this entry's {len(items):,} "
                "targets would all be named alike; put a variable in it, e.g. name: "
                f'"{written}-{{{{{next(iter(items[0]))}}}}}"',
            )
        )
    problems += found
    if found:
        return None
    return _Plan(template, items, _count(body), secret, str(written))


def _items(
    for_each: Any, at: KeyPath, problems: list[tuple[KeyPath, str]]
) -> list[dict[str, Any]] | None:
    """The for_each items if each is a mapping of variables to scalars; else None, the
    problems added."""
    example = "e.g. for_each: [{model: fraud-a}, {model: fraud-b}]"
    if not isinstance(for_each, list) or not for_each:
        problems.append(
            (at, f"for_each must be a non-empty list of mappings of variables, {example}")
        )
        return None
    before = len(problems)
    for k, item in enumerate(for_each):
        if not isinstance(item, dict) or not item:
            problems.append((at + (k,), f"for_each[{k}] must be a mapping of variables, {example}"))
            continue
        for name, value in item.items():
            where = at + (k, str(name))
            if not isinstance(name, str) or not _VARIABLE.match(name):
                problems.append(
                    (
                        where,
                        f"for_each[{k}]: the variable {str(name)!r} must be a name of letters, "
                        "digits and _ (placeholders are written {{name}})",
                    )
                )
            elif value is None or isinstance(value, list | dict):
                what = "has no value" if value is None else f"is a {type(value).__name__}"
                problems.append(
                    (
                        where,
                        f"for_each[{k}]: {name} {what}; a for_each value must be text, a "
                        "number, true/false or a date",
                    )
                )
    return None if len(problems) > before else list(for_each)


def _compile(
    value: Any, path: KeyPath, used: dict[str, list[KeyPath]], found: list[tuple[KeyPath, str]]
) -> Any:
    """`value` with each string holding placeholders made a _Slots; the variables used (with
    where), and a problem for each placeholder in a key."""
    if isinstance(value, dict):
        out = {}
        for key, item in value.items():
            if isinstance(key, str) and PLACEHOLDER.search(key):
                found.append(
                    (
                        path + (key,),
                        f"the key {key!r} holds a placeholder; placeholders are substituted in "
                        "values only (names, URLs, filters, labels...), not in keys",
                    )
                )
            out[key] = _compile(item, path + (str(key),), used, found)
        return out
    if isinstance(value, list):
        return [_compile(item, path + (k,), used, found) for k, item in enumerate(value)]
    if not isinstance(value, str):
        return value
    parts = PLACEHOLDER.split(value)
    if len(parts) == 1:
        return value
    for name in parts[1::2]:
        used.setdefault(name, []).append(path)
    return _Slots(tuple(parts))


def _expand(entry: int, plan: _Plan, out: Expansion, budget: list[int]) -> bool:
    """The plan's targets added to `out`; False (a problem added) if they pass the bound on
    characters."""
    names: dict[str, int] = {}
    again: list[tuple[int, str]] = []  # items naming a target as an earlier one does
    before = len(out.targets)
    for k, item in enumerate(plan.items):
        texts = {name: _text(value) for name, value in item.items()}
        budget[0] -= _size(plan.template, texts)
        if budget[0] < 0:
            out.problems.append(
                (
                    ("targets", entry, FOR_EACH, k),
                    f"for_each expands the targets to more than {MAX_EXPANDED_CHARS:,} "
                    "characters of text; shorten the values, or split the models across several "
                    "daemons, each with its own rules file",
                )
            )
            out.refused = True
            return False
        target = _fill(plan.template, item, texts)
        name = target.get("name")
        if isinstance(name, str) and name in names:
            again.append((k, name))
            continue
        if isinstance(name, str):
            names[name] = k
        out.targets.append(target)
        out.origins.append(Origin(entry, k, _shown(item, plan.secret)))
    if again:
        (k, name), others = again[0], [k for k, _ in again[1:]]
        so_do = f"; so do {items_named(others)}" if others else ""
        out.problems.append(
            (
                ("targets", entry, FOR_EACH, k),
                f"for_each[{k}] {_shown(plan.items[k], plan.secret)} names its target {name!r}, "
                f"as for_each[{names[name]}] does{so_do}; make the variables "
                "in `name` differ",
            )
        )
        out.skipped = True
    out.templates.append(Template(entry, plan.name, len(out.targets) - before))
    return True


def _fill(template: Any, values: dict[str, Any], texts: dict[str, str]) -> Any:
    if isinstance(template, dict):
        return {k: _fill(v, values, texts) for k, v in template.items()}
    if isinstance(template, list):
        return [_fill(v, values, texts) for v in template]
    if isinstance(template, _Slots):
        return template.fill(values, texts)
    return template


def _size(template: Any, texts: dict[str, str]) -> int:
    """Characters of the strings the template gives for these values (before building it)."""
    if isinstance(template, dict):
        return sum(len(str(k)) + _size(v, texts) for k, v in template.items())
    if isinstance(template, list):
        return sum(_size(v, texts) for v in template)
    if isinstance(template, _Slots):
        return template.size(texts)
    return len(template) if isinstance(template, str) else 1


def _count(value: Any) -> int:
    """Values in `value` (keys, values, items), as yaml_bounds counts them."""
    if isinstance(value, dict):
        return 1 + sum(1 + _count(v) for v in value.values())
    if isinstance(value, list):
        return 1 + sum(_count(v) for v in value)
    return 1


def _text(value: Any) -> str:
    """A scalar as it reads in YAML: true/false, numbers, ISO dates."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, date):
        return value.isoformat()
    return str(value)


def items_named(items: list[int]) -> str:
    """`for_each[7], [9], [12] and 5 more`: several items with one problem, in one issue rather
    than one per item."""
    more = f" and {len(items) - 3:,} more" if len(items) > 3 else ""
    return "for_each" + ", ".join(f"[{k}]" for k in items[:3]) + more


def _shown(item: dict[str, Any], secret: set[str]) -> str:
    def one(name: str, value: Any) -> str:
        if name in secret or is_secret_key(str(name)):
            return f"{name}: {MASK}"
        text = _text(value)
        return f"{name}: {text if len(text) <= _SHOWN_CHARS else text[:_SHOWN_CHARS] + '...'}"

    return "{" + ", ".join(one(str(n), v) for n, v in item.items()) + "}"
