"""The trigger: how a target's checks combine into "act now" (any, all, or a boolean expression).

An expression uses check names with `and`, `or`, `not` and parentheses, e.g.
`drift and (error_rate or latency)`. Parsed once with Python's own grammar and a whitelist of node
types, so nothing but boolean logic over names can be written. Parsed by the loader's cross-checks
(`check`, reload) and by the core's `decide`.

A check is firing (True), quiet (False) or unknown (None: it has no data now), and the expression
is evaluated in Kleene's three-valued logic: `not` unknown is unknown, `and` is false if any part
is false, `or` is true if any part is true, else unknown wins over the other value. A trigger holds
only when it is definitely true, so a check without data can never make it hold, whether it is
written plainly or after a `not`. A trigger that would hold with every check quiet is refused:
with no check firing it could only roll back a healthy model.
"""

from __future__ import annotations

import ast
from collections.abc import Iterable, Mapping
from dataclasses import dataclass


class TriggerSyntaxError(ValueError):
    """A trigger that is not any/all or a boolean expression over check names, or one that would
    hold while no check fires."""


@dataclass(frozen=True)
class Trigger:
    """A parsed trigger; `names` are the checks it reads."""

    source: str
    tree: ast.expr
    names: frozenset[str]

    def holds(self, firing: Mapping[str, bool | None]) -> bool:
        """Whether the trigger is definitely true when `firing[name]` says whether each check
        fires (True), is quiet (False) or is unknown (None); a name missing from it is unknown."""
        return _eval(self.tree, firing) is True


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
    # With every check quiet it must not hold. That covers every evaluation in which no check
    # fires: Kleene's logic is monotone (a definite result stays whatever the unknowns turn out
    # to be), so what holds with some checks unknown and the rest quiet holds with all quiet.
    quiet = dict.fromkeys(used, False)
    if _eval(tree, quiet) is True:
        negation = _culprit(tree, quiet)
        raise TriggerSyntaxError(
            f"a trigger must not hold when no check fires, and {keyword!r} does: "
            f"`{ast.unparse(negation)}` would roll back whenever "
            f"`{ast.unparse(negation.operand)}` is quiet; write the checks that must fire, with "
            "`not` only beside them (e.g. 'drift and not maintenance')"
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


def _eval(node: ast.expr, firing: Mapping[str, bool | None]) -> bool | None:
    """Kleene's three-valued logic; None is unknown."""
    if isinstance(node, ast.Name):
        return firing.get(node.id)
    if isinstance(node, ast.BoolOp):
        results = [_eval(v, firing) for v in node.values]
        decisive = isinstance(node.op, ast.Or)  # the value that settles it: True for `or`
        if decisive in results:
            return decisive
        return None if None in results else not decisive
    assert isinstance(node, ast.UnaryOp)
    operand = _eval(node.operand, firing)
    return None if operand is None else not operand


def _culprit(node: ast.expr, firing: Mapping[str, bool | None]) -> ast.UnaryOp:
    """A `not` that makes `node` true under `firing` (where `node` is true)."""
    if isinstance(node, ast.BoolOp):
        return _culprit(next(v for v in node.values if _eval(v, firing) is True), firing)
    assert isinstance(node, ast.UnaryOp)  # a name is not true with every check quiet
    return node
