"""Loading rules.yaml: YAML with line numbers, ${ENV} interpolation, schema and cross-checks.

The YAML is read within bounds first (`yaml_bounds`: size, alias expansion, nesting), so nothing
below walks more than a bounded number of values; `targets:` entries with `for_each` are then
expanded, within bounds of their own (`templates`), before ${ENV} and validation.

Every problem becomes a `ConfigIssue` with file, line, key path and what to change; `load_config`
raises one `ConfigError` listing all of them (the daemon then keeps its last good config), and
`mlwatchdog check` prints them like `promtool check rules`.
"""

from __future__ import annotations

import difflib
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ValidationError

from mlwatchdog.errors import ConfigError
from mlwatchdog.rules import schema
from mlwatchdog.rules.references import partial_reference_problems, reference_problems
from mlwatchdog.rules.secret import may_hold_secret
from mlwatchdog.rules.templates import (
    FOR_EACH,
    Expansion,
    Origin,
    Template,
    expand_targets,
    items_named,
)
from mlwatchdog.rules.yaml_bounds import (
    MAX_BYTES,
    YamlRefused,
    check_size,
    compose_yaml,
    construct_yaml,
)

KeyPath = tuple[str | int, ...]
_MERGE = "tag:yaml.org,2002:merge"  # the tag of a `<<` key
_ENV = re.compile(r"\$\$|\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")


@dataclass(frozen=True)
class ConfigIssue:
    """One problem in a rules file, where it is, and what to do about it."""

    file: str
    line: int | None
    path: str
    message: str

    def __str__(self) -> str:
        where = f"{self.file}:{self.line}" if self.line else self.file
        return f"{where}: {self.path or '(top)'}: {self.message}"


@dataclass(frozen=True)
class Rules:
    """A valid rules file: the config, and its `for_each` entries with what they expanded to."""

    config: schema.Config
    templates: list[Template]


def load_config(path: str | Path, env: Mapping[str, str] | None = None) -> schema.Config:
    """The validated config in `path`; raises ConfigError listing every issue."""
    return load_rules(path, env).config


def load_rules(path: str | Path, env: Mapping[str, str] | None = None) -> Rules:
    """The validated config in `path` and its templates; raises ConfigError listing every
    issue."""
    path = Path(path)
    try:
        with path.open("rb") as stream:
            raw = stream.read(MAX_BYTES + 1)  # never more, whatever the file holds
        check_size(len(raw))
        text = raw.decode("utf-8")
    except YamlRefused as exc:
        issue = ConfigIssue(str(path), None, "", exc.message)
        raise ConfigError(f"{path}: {exc.message}", issues=[issue]) from None
    except (OSError, UnicodeDecodeError) as exc:
        if isinstance(exc, OSError):
            why = exc.strerror or str(exc)
        else:
            why = f"it is not UTF-8 text ({exc.reason} at byte {exc.start})"
        message = f"cannot read the rules file: {why}"
        issue = ConfigIssue(str(path), None, "", message)
        raise ConfigError(f"{path}: {message}", issues=[issue]) from None
    return _rules(text, str(path), env)


def parse_config(
    text: str, file: str = "rules.yaml", env: Mapping[str, str] | None = None
) -> schema.Config:
    """The validated config in the YAML `text` (named `file` in messages)."""
    return _rules(text, file, env).config


def _rules(text: str, file: str, env: Mapping[str, str] | None) -> Rules:
    config, issues, expansion = _parse(text, file, os.environ if env is None else env)
    if issues or config is None:
        raise ConfigError(
            f"{file}: {len(issues)} problem(s):\n" + "\n".join(f"  {i}" for i in issues),
            issues=issues,
        )
    return Rules(config, expansion.templates)


def config_issues(path: str | Path, env: Mapping[str, str] | None = None) -> list[ConfigIssue]:
    """Every problem in the rules file at `path`; empty when it is valid."""
    try:
        load_config(path, env)
    except ConfigError as exc:
        return list(exc.issues) or [ConfigIssue(str(path), None, "", str(exc))]
    return []


def _parse(
    text: str, file: str, env: Mapping[str, str]
) -> tuple[schema.Config | None, list[ConfigIssue], Expansion]:
    lines: dict[KeyPath, int] = {}
    expansion = Expansion()
    try:
        node = compose_yaml(text)
        # Indexed before construction, which applies merge keys (`<<`) to the nodes in place.
        duplicates = _index(node, (), lines) if node is not None else []
        data = construct_yaml(node) if node is not None else None
    except YamlRefused as exc:
        return None, [ConfigIssue(file, exc.line, "", exc.message)], expansion
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = mark.line + 1 if mark is not None else None
        problem = getattr(exc, "problem", None) or str(exc)
        if problem == "found unhashable key" and line and "{{" in text.splitlines()[line - 1]:
            problem += ': a value that starts with a {{placeholder}} must be quoted, "{{model}}"'
        return None, [ConfigIssue(file, line, "", f"not valid YAML: {problem}")], expansion
    if node is None or not isinstance(data, dict):
        message = "the file must be a mapping with `sources:` and `targets:`"
        return None, [ConfigIssue(file, 1, "", message)], expansion
    issues = [ConfigIssue(file, line, _dotted(p), m) for p, line, m in duplicates]
    # Templates are expanded as written, before ${ENV}: an environment value (a secret) is never
    # searched for placeholders, and an item's value may hold ${ENV}.
    if isinstance(data.get("targets"), list):
        expansion = expand_targets(data["targets"])
        data = {**data, "targets": expansion.targets}
        issues += [ConfigIssue(file, _line(lines, p), _dotted(p), m) for p, m in expansion.problems]
        if expansion.refused:  # over a bound: nothing more is walked, as for yaml_bounds
            return None, issues, expansion
    data, env_problems = _interpolate(data, (), env)
    issues += _located(file, lines, expansion, env_problems)
    # Validate even after the problems above, so one run lists everything to fix.
    try:
        config = schema.Config.model_validate(data)
    except ValidationError as exc:
        problems = [_problem(data, e) for e in exc.errors()]
        if expansion.skipped:  # `targets` may be short of the entries left out, not empty
            problems = [(p, m) for p, m in problems if p != ("targets",)]
        problems += partial_reference_problems(data)
        return None, issues + _located(file, lines, expansion, problems), expansion
    issues += _located(file, lines, expansion, reference_problems(config))
    return (None if issues else config), issues, expansion


def _located(
    file: str, lines: dict[KeyPath, int], expansion: Expansion, problems: list[tuple[KeyPath, str]]
) -> list[ConfigIssue]:
    """Issues for problems of the expanded data: a problem in an expanded target is put at its
    template entry (the line a fix goes to), naming the item; one in several of an entry's
    targets alike is listed once, naming how many."""
    found: dict[tuple[KeyPath, str], list[Origin]] = {}
    for path, message in problems:
        at = path[1] if len(path) > 1 and path[0] == "targets" else None
        if isinstance(at, int) and at < len(expansion.origins):
            origin = expansion.origins[at]
            path = ("targets", origin.entry, *path[2:])
            found.setdefault((path, message), []).append(origin)
        else:
            found.setdefault((path, message), [])
    sizes = {t.entry: t.targets for t in expansion.templates}
    return [
        ConfigIssue(file, _line(lines, p), _dotted(p), m + _in_items(origins, sizes))
        for (p, m), origins in found.items()
    ]


def _in_items(origins: list[Origin], sizes: dict[int, int]) -> str:
    """Which of a template's targets an issue was found in: ` (for_each[3] {model: x})`."""
    items = [o for o in origins if o.item is not None]
    if not items:
        return ""
    if len(items) == 1:
        return f" (for_each[{items[0].item}] {items[0].shown})"
    if len(items) == sizes.get(items[0].entry):
        return f" (all {len(items):,} targets of its for_each)"
    return f" ({items_named([o.item for o in items if o.item is not None])})"


def _index(
    node: yaml.Node, path: KeyPath, lines: dict[KeyPath, int]
) -> list[tuple[KeyPath, int, str]]:
    """Record the line of every key and item; report duplicate keys (YAML keeps the last)."""
    lines[path] = node.start_mark.line + 1
    problems: list[tuple[KeyPath, int, str]] = []
    if isinstance(node, yaml.MappingNode):
        # Keys merged with `<<` first, the earlier mappings winning, then the mapping's own keys,
        # which override merged ones (not duplicates). A merged key's line is where it is written.
        entries = [(k, v) for k, v in node.value if k.tag != _MERGE]
        for key_node, value_node in node.value:
            if key_node.tag == _MERGE:
                merged = (
                    value_node.value if isinstance(value_node, yaml.SequenceNode) else [value_node]
                )
                for mapping in reversed(merged):
                    if isinstance(mapping, yaml.MappingNode):  # else construction says why
                        _index(mapping, path, lines)  # its duplicates: reported where written
        lines[path] = node.start_mark.line + 1
        seen: set[str] = set()
        for key_node, value_node in entries:
            key = str(key_node.value) if isinstance(key_node, yaml.ScalarNode) else "?"
            line = key_node.start_mark.line + 1
            if key in seen:
                problems.append((path + (key,), line, f"key {key!r} appears twice; keep one"))
            seen.add(key)
            problems += _index(value_node, path + (key,), lines)
            lines[path + (key,)] = line
    elif isinstance(node, yaml.SequenceNode):
        for i, item in enumerate(node.value):
            problems += _index(item, path + (i,), lines)
    return problems


def _interpolate(
    value: Any, path: KeyPath, env: Mapping[str, str]
) -> tuple[Any, list[tuple[KeyPath, str]]]:
    """Replace ${VAR} and ${VAR:-default} in strings ($$ is a literal $)."""
    if isinstance(value, dict):
        out, problems = {}, []
        for k, v in value.items():
            out[k], found = _interpolate(v, path + (str(k),), env)
            problems += found
        return out, problems
    if isinstance(value, list):
        items = [_interpolate(v, path + (i,), env) for i, v in enumerate(value)]
        return [v for v, _ in items], [p for _, found in items for p in found]
    if not isinstance(value, str):
        return value, []
    missing: list[str] = []

    def substitute(match: re.Match[str]) -> str:
        if match.group(0) == "$$":
            return "$"
        name, default = match.group(1), match.group(2)
        if name in env and (env[name] or default is None):
            return env[name]  # like the shell, ${VAR:-default} also replaces an empty VAR
        if default is not None:
            return default
        missing.append(name)
        return match.group(0)

    result = _ENV.sub(substitute, value)
    return result, [
        (path, f"environment variable {name} is not set; set it or write ${{{name}:-default}}")
        for name in missing
    ]


def validation_problems(data: Any, exc: ValidationError) -> list[tuple[KeyPath, str]]:
    """Each error of validating `data` as (key path in `data`, what to change), worded as
    `mlwatchdog check` words them (for values that do not come from a file: `replay --set`)."""
    return [_problem(data, error) for error in exc.errors()]


def _problem(data: Any, error: Mapping[str, Any]) -> tuple[KeyPath, str]:
    kind = error["type"]
    path = _data_path(data, tuple(error["loc"]), kind in ("missing", "extra_forbidden"))
    if kind == "extra_forbidden":
        key = str(path[-1])
        message = f"unknown key {key!r}"
        words = _vocabulary()
        close = difflib.get_close_matches(key, words, n=1)
        if key in words:  # a real key, in the wrong section: suggesting itself would not help
            message += " here; it belongs to another section (check its indentation)"
        else:
            message += f"; did you mean {close[0]!r}?" if close else "; remove it"
    elif kind == "missing":
        message = f"missing required key {str(path[-1])!r}"
    else:
        message = str(error["msg"]).removeprefix("Value error, ")
        given = error.get("input")
        shown = isinstance(given, str | int | float | bool) and kind not in ("value_error",)
        if shown and not may_hold_secret(path):  # a wrong password is still a password
            message += f" (got {given!r})"
    return path, message


def _data_path(data: Any, loc: KeyPath, names_key: bool) -> KeyPath:
    """The location in the YAML data: pydantic's loc minus union tags like 'drift' or 'files'."""
    path: list[str | int] = []
    here = data
    for i, part in enumerate(loc):
        if isinstance(here, dict):
            if part in here:
                here = here[part]
                path.append(part)
            elif names_key and i == len(loc) - 1:
                path.append(part)  # the missing or unknown key itself
            # otherwise a union tag, not a key of the file
        elif isinstance(here, list) and isinstance(part, int) and part < len(here):
            here = here[part]
            path.append(part)
        else:
            path.append(part)
    return tuple(path)


def _line(lines: dict[KeyPath, int], path: KeyPath) -> int | None:
    for end in range(len(path), -1, -1):
        if path[:end] in lines:
            return lines[path[:end]]
    return None


def _dotted(path: KeyPath) -> str:
    out = ""
    for part in path:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


def _vocabulary() -> list[str]:
    words: set[str] = set()
    for model in vars(schema).values():
        if isinstance(model, type) and issubclass(model, BaseModel):
            for name, field in model.model_fields.items():
                words.add(field.alias or name)
    return sorted(words | {FOR_EACH})
