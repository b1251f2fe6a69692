"""rules.yaml is read within bounds: an alias bomb, an alias inside its own anchor, deep nesting,
too many values or bytes are refused at once, with file, line and what to do, before anything
walks the expanded data; ordinary anchors and aliases (`<<: *defaults`) still work."""

from __future__ import annotations

import time
import tracemalloc
from collections.abc import Callable
from pathlib import Path

import pytest

from mlwatchdog.errors import ConfigError
from mlwatchdog.rules import ConfigIssue, config_issues, load_config, parse_config
from mlwatchdog.rules.yaml_bounds import MAX_BYTES, MAX_VALUES
from tests.unit.test_rules import VALID, line_of

ALIASES = f"YAML aliases expand to more than {MAX_VALUES:,} values"


def list_bomb(levels: int = 6, width: int = 10) -> str:
    """Billion laughs: each level is a list of `width` aliases of the level below."""
    lines = ["l0: &l0 [" + ", ".join(["lol"] * width) + "]"]
    lines += [f"l{i}: &l{i} [" + ", ".join([f"*l{i - 1}"] * width) + "]" for i in range(1, levels)]
    return "\n".join(lines) + "\n"


def merge_bomb(levels: int = 20) -> str:
    """Each level merges the level below twice: 2**levels keys after `<<` merging."""
    lines = ["m0: &m0 {a: 1, b: 2}"]
    lines += [f"m{i}: &m{i} {{<<: [*m{i - 1}, *m{i - 1}]}}" for i in range(1, levels)]
    return "\n".join(lines) + "\n"


def measured(load: Callable[[], list[ConfigIssue]]) -> tuple[list[ConfigIssue], float, int]:
    """What `load` returns, the seconds it took, and the peak bytes it allocated."""
    start = time.perf_counter()
    issues = load()
    seconds = time.perf_counter() - start
    tracemalloc.start()
    try:
        load()
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    return issues, seconds, peak


@pytest.mark.parametrize(
    ("bomb", "offending"),
    [(list_bomb(), "l4: &l4"), (merge_bomb(), "m14: &m14")],  # the first over 100,000
    ids=["aliases", "merge-keys"],
)
def test_an_alias_bomb_is_refused_at_once_in_little_memory(
    tmp_path: Path, bomb: str, offending: str
) -> None:
    path = tmp_path / "bomb.yaml"
    path.write_text(VALID + bomb)
    assert len(path.read_bytes()) < 2_000  # a few hundred bytes of bomb

    issues, seconds, peak = measured(lambda: config_issues(path))

    text = path.read_text()
    [issue] = issues
    assert (issue.file, issue.line) == (str(path), line_of(text, offending))
    assert issue.message.startswith(ALIASES)
    assert "use aliases for shared settings (`<<: *defaults`)" in issue.message
    assert seconds < 1.0
    assert peak < 50 << 20


def test_an_alias_inside_its_own_anchor_is_refused() -> None:
    text = VALID + "loop:\n  - &me [1, 2, *me]\n"
    with pytest.raises(ConfigError) as caught:
        parse_config(text, "r.yaml")
    [issue] = caught.value.issues
    assert issue.line == line_of(text, "*me")
    assert issue.message.startswith("YAML alias *me is used inside its own anchor &me")


@pytest.mark.parametrize("text", ["[" * 5_000 + "]" * 5_000, "{a: " * 2_000 + "1" + "}" * 2_000])
def test_deep_nesting_is_refused_not_a_crash(text: str) -> None:
    with pytest.raises(ConfigError, match="YAML nested more than 100 levels deep"):
        parse_config(text, "r.yaml")


def test_more_values_than_the_bound_without_aliases_are_refused() -> None:
    items = ", ".join(["1"] * (MAX_VALUES + 1))
    text = VALID + f"extra: [{items}]\n"
    assert len(text.encode()) < MAX_BYTES
    with pytest.raises(ConfigError) as caught:
        parse_config(text, "r.yaml")
    [issue] = caught.value.issues
    assert issue.line == line_of(text, "extra:")
    assert issue.message.startswith(f"the rules hold more than {MAX_VALUES:,} values")


def test_a_file_over_1_mib_is_refused_without_reading_it_all(tmp_path: Path) -> None:
    path = tmp_path / "huge.yaml"
    with path.open("wb") as stream:
        stream.write(VALID.encode())
        stream.truncate(64 << 20)  # sparse: 64 MiB that take no disk

    issues, seconds, peak = measured(lambda: config_issues(path))

    [issue] = issues
    assert (issue.file, issue.line) == (str(path), None)
    assert issue.message.startswith("the rules file is larger than 1,048,576 bytes (1 MiB")
    assert seconds < 1.0 and peak < 50 << 20
    with pytest.raises(ConfigError, match="larger than 1,048,576 bytes"):
        parse_config(VALID + "#" * MAX_BYTES, "r.yaml")


def test_a_file_just_under_1_mib_loads(tmp_path: Path) -> None:
    path = tmp_path / "rules.yaml"
    padding = MAX_BYTES - len(VALID.encode())
    path.write_text(VALID + "#" * (padding - 1) + "\n")
    assert path.stat().st_size == MAX_BYTES
    assert [t.name for t in load_config(path, env={}).targets] == ["credit"]


def test_anchors_aliases_and_merge_keys_still_work() -> None:
    shared = VALID.replace(
        "  - name: credit\n",
        "  - &credit\n    name: credit\n",
    ).replace("    checks:\n", "    checks: &checks\n")
    text = shared + (
        "  - <<: *credit\n"
        "    name: credit-eu\n"
        "    samples: {source: live, window: 10m}\n"
        "    checks: *checks\n"
    )
    config = parse_config(text, "r.yaml", {})
    first, second = config.targets
    assert (first.name, second.name) == ("credit", "credit-eu")
    assert second.samples.window.total_seconds() == 600  # overridden beside the merge key
    assert second.checks == first.checks and second.trigger == first.trigger
    assert second.columns == first.columns
    # An issue in an overriding key points at the override, one in a merged key at its anchor.
    broken = text.replace("{source: live, window: 10m}", "{source: live, window: 10 min}")
    broken = broken.replace("test: chi2", "test: chi3")
    with pytest.raises(ConfigError) as caught:
        parse_config(broken, "r.yaml", {})
    found = {(i.path, i.line) for i in caught.value.issues}
    assert ("targets[1].samples.window", line_of(broken, "10 min")) in found
    assert ("targets[1].checks[1].test", line_of(broken, "chi3")) in found
