"""Reading rules.yaml's YAML within bounds, then its data; called by the loader.

YAML aliases let a few hundred bytes expand to billions of values ("billion laughs"), an alias
inside its own anchor makes the data infinitely deep, and deep nesting exhausts Python's stack.
The composer is extended to count, as it builds the node graph, how many values each node expands
to (memoised per node, so linear in the distinct nodes), and refuses a document over the bounds
before the constructor, the loader's walks or pydantic see the expanded data.
"""

from __future__ import annotations

from typing import Any

import yaml

MAX_BYTES = 1 << 20  # 1 MiB, what a Kubernetes ConfigMap holds; rules.yaml is a few KiB
MAX_VALUES = 100_000  # keys, values and items after alias expansion; rules.yaml has a few hundred
MAX_DEPTH = 100  # nested collections; rules.yaml nests fewer than 10 deep


class YamlRefused(ValueError):
    """YAML over the bounds: `line` (1-based, None if unknown) is where, `message` what to do."""

    def __init__(self, line: int | None, message: str) -> None:
        super().__init__(message)
        self.line = line
        self.message = message


def check_size(n_bytes: int) -> None:
    """Refuse a rules file larger than MAX_BYTES."""
    if n_bytes > MAX_BYTES:
        raise YamlRefused(
            None,
            f"the rules file is larger than {MAX_BYTES:,} bytes (1 MiB, what a Kubernetes "
            "ConfigMap holds); rules are settings, not data: keep data in the sources",
        )


def compose_yaml(text: str) -> yaml.Node | None:
    """The node graph of the single YAML document in `text` (None if it is empty), aliases
    still shared and merge keys (`<<`) not applied yet.

    Raises YamlRefused beyond the bounds and yaml.YAMLError for text that is not YAML.
    """
    check_size(len(text.encode("utf-8", "surrogatepass")))
    loader = _BoundedLoader(text)
    try:
        return loader.get_single_node()
    finally:
        loader.dispose()


def construct_yaml(node: yaml.Node) -> Any:
    """The data of a node graph from `compose_yaml`, as yaml.safe_load gives it. Applies merge
    keys in place (so index the graph first); the data shares what aliases share."""
    constructor = yaml.SafeLoader("")
    try:
        return constructor.construct_document(node)
    finally:
        constructor.dispose()


class _BoundedLoader(yaml.SafeLoader):
    """SafeLoader whose composer counts each node's expanded size and its nesting depth."""

    def __init__(self, text: str) -> None:
        super().__init__(text)
        self._values: dict[yaml.Node, int] = {}  # a finished node -> values it expands to
        self._depth = 0
        self._aliases_used = 0
        self._last_alias_line: int | None = None

    def compose_node(self, parent: yaml.Node | None, index: int) -> yaml.Node | None:
        line, anchor = self._next_event()
        if self.check_event(yaml.AliasEvent):
            node = super().compose_node(parent, index)  # refuses an undefined alias
            if node is not None and node not in self._values:  # its anchor is still open
                raise YamlRefused(
                    line,
                    f"YAML alias *{anchor} is used inside its own anchor &{anchor}, which makes "
                    "the data infinitely deep; remove the alias",
                )
            self._aliases_used += 1
            self._last_alias_line = line
            return node
        self._depth += 1
        if self._depth > MAX_DEPTH:
            raise YamlRefused(
                line,
                f"YAML nested more than {MAX_DEPTH} levels deep; rules need a few levels: "
                "check the indentation and the brackets",
            )
        aliases_before = self._aliases_used
        node = super().compose_node(parent, index)
        self._depth -= 1
        if node is None:
            return None
        count = 1 + sum(self._values[child] for child in _children(node))
        self._values[node] = count
        if count <= MAX_VALUES:
            return node
        if self._aliases_used > aliases_before:  # so the last alias is inside this node
            raise YamlRefused(
                self._last_alias_line,
                f"YAML aliases expand to more than {MAX_VALUES:,} values; an alias repeats its "
                "whole anchor each time it is used: use aliases for shared settings "
                "(`<<: *defaults`), not to multiply data",
            )
        raise YamlRefused(
            line,
            f"the rules hold more than {MAX_VALUES:,} values; rules are settings, not data: "
            "keep data in the sources",
        )

    def _next_event(self) -> tuple[int | None, str | None]:
        """The line (1-based) and the anchor or alias name of the next node's event."""
        event: yaml.NodeEvent = self.peek_event()  # type: ignore[no-untyped-call]
        mark = event.start_mark
        return (mark.line + 1 if mark is not None else None), event.anchor


def _children(node: yaml.Node) -> list[yaml.Node]:
    if isinstance(node, yaml.SequenceNode):
        return list(node.value)
    if isinstance(node, yaml.MappingNode):
        return [part for pair in node.value for part in pair]
    return []
