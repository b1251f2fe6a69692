"""The trigger: how a target's checks combine into "act now" (any, all, or a boolean expression).

An expression uses check names with `and`, `or`, `not` and parentheses, e.g.
`drift and (error_rate or latency)`. Parsed once with Python's own grammar and a whitelist of node
types, so nothing but boolean logic over names can be written.
"""

from __future__ import annotations

import ast
from collections.abc import Iterable, Mapping
from dataclasses import dataclass


class TriggerSyntaxError(ValueError):
    """A trigger that is not any/all or a boolean expression over check names."""


@dataclass(frozen=True)
class Trigger:
    """A parsed trigger; `names` are the checks it reads."""

    source: str
    tree: ast.expr
    names: frozenset[str]

    def holds(self, firing: Mapping[str, bool]) -> bool:
        """Whether the trigger is true when `firing[name]` says which checks fire."""
        return _eval(self.tree, firing)


def parse_trigger(text: str, checks: Iterable[str]) -> Trigger:
    """Parse `text` over the check names `checks` ('any' and 'all' expand to all of them)."""
    names = list(checks)
    keyword = text.strip()
    if keyword in ("any", "all"):
        # Built, not parsed: every valid check name (e.g. `feature-drift`) works with any/all.
        if not names:
            raise TriggerSyntaxError(f"trigger {keyword!r} needs at least one check")
        leaves: list[ast.expr] = [ast.Name(id=n, ctx=ast.Load()) for n in names]
        op = ast.Or() if keyword == "any" else ast.And()
        tree: ast.expr = leaves[0] if len(leaves) == 1 else ast.BoolOp(op=op, values=leaves)
        return Trigger(keyword, tree, frozenset(names))
    try:
        tree = ast.parse(text, mode="eval").body
    except SyntaxError as exc:
        raise TriggerSyntaxError(
            f"cannot parse trigger {text!r}: {exc.msg}; write e.g. 'drift and not latency'"
        ) from None
    used = _check_nodes(tree)
    unknown = sorted(used - set(names))
    if unknown:
        raise TriggerSyntaxError(
            f"trigger names unknown check(s) {unknown}; the checks are {names}"
        )
    return Trigger(keyword, tree, frozenset(used))


def _check_nodes(node: ast.expr) -> set[str]:
    if isinstance(node, ast.Name):
        return {node.id}
    if isinstance(node, ast.BoolOp):
        return set().union(*(_check_nodes(v) for v in node.values))
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.Not):
        return _check_nodes(node.operand)
    raise TriggerSyntaxError(
        f"a trigger may only combine check names with and/or/not, found {ast.unparse(node)!r}"
    )


def _eval(node: ast.expr, firing: Mapping[str, bool]) -> bool:
    if isinstance(node, ast.Name):
        return bool(firing.get(node.id, False))
    if isinstance(node, ast.BoolOp):
        results = (_eval(v, firing) for v in node.values)
        return all(results) if isinstance(node.op, ast.And) else any(results)
    assert isinstance(node, ast.UnaryOp)
    return not _eval(node.operand, firing)
