"""Target templates: a `targets:` entry with `for_each:` loads as the targets written out, one per
item; each mistake in a template is one issue at the entry (file:line: path: message) naming the
item and what to do; expansion is bounded; 2,000 targets fit in a rules file through it."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from mlwatchdog.rules import config_issues, load_config, load_rules, parse_config, templates
from mlwatchdog.rules.templates import MAX_EXPANDED_CHARS, MAX_EXPANDED_VALUES, MAX_TARGETS
from mlwatchdog.rules.yaml_bounds import MAX_BYTES, MAX_VALUES
from tests.unit.test_rules import FILE, edit, issues_of, line_of, parsed
from tests.unit.test_yaml_bounds import measured

SOURCES = """\
version: 1
sources:
  live: {type: files, url: /data/live}
  training: {type: files, url: /data/reference.parquet, timestamp_column: null}
  prom: {type: prometheus, url: http://prometheus:9090}
targets:
"""

TEMPLATE = (
    SOURCES
    + """\
  - for_each:
      - {model: fraud-a, ns: team-a, alpha: 0.01, shard: 1}
      - {model: fraud-b, ns: team-b, alpha: 0.05, shard: 2}
    name: "{{model}}-drift"
    workload: {kind: argo-rollout, name: "{{ model }}", namespace: "{{ns}}"}
    samples: {source: live, window: 5m, filters: {model: "{{model}}", shard: "{{shard}}"}}
    reference: {source: training}
    columns: {features: {age: numeric}}
    checks:
      - {name: drift, type: drift, test: ks, threshold: "{{alpha}}"}
      - {name: errors, type: metric, source: prom, above: 0.02,
         query: 'sum(rate(errors_total{namespace="{{ns}}", rollout="{{model}}"}[5m]))'}
    rollback:
      to: fallback
      fallback: {image: "registry/{{model}}:stable", args: ["--team={{ns}}"]}
"""
)

WRITTEN = (
    SOURCES
    + """\
  - name: fraud-a-drift
    workload: {kind: argo-rollout, name: fraud-a, namespace: team-a}
    samples: {source: live, window: 5m, filters: {model: fraud-a, shard: 1}}
    reference: {source: training}
    columns: {features: {age: numeric}}
    checks:
      - {name: drift, type: drift, test: ks, threshold: 0.01}
      - {name: errors, type: metric, source: prom, above: 0.02,
         query: 'sum(rate(errors_total{namespace="team-a", rollout="fraud-a"}[5m]))'}
    rollback:
      to: fallback
      fallback: {image: "registry/fraud-a:stable", args: ["--team=team-a"]}
  - {name: fraud-b-drift, workload: {kind: argo-rollout, name: fraud-b, namespace: team-b},
     samples: {source: live, window: 5m, filters: {model: fraud-b, shard: 2}},
     reference: {source: training}, columns: {features: {age: numeric}},
     checks: [{name: drift, type: drift, test: ks, threshold: 0.05},
              {name: errors, type: metric, source: prom, above: 0.02,
               query: 'sum(rate(errors_total{namespace="team-b", rollout="fraud-b"}[5m]))'}],
     rollback: {to: fallback, fallback: {image: "registry/fraud-b:stable", args: [--team=team-b]}}}
"""
)


# -------------------------------------------------------------------------------- expansion


def test_a_template_loads_as_the_targets_written_out() -> None:
    config = parsed(TEMPLATE)
    assert config == parsed(WRITTEN)
    # A value that is the whole string keeps its type: a number, an integer filter.
    assert config.targets[1].samples.filters == {"model": "fraud-b", "shard": 2}
    assert [t.workload.namespace for t in config.targets] == ["team-a", "team-b"]


def test_templates_and_written_targets_mix_in_order(tmp_path: Path) -> None:
    written_c = (
        WRITTEN.split("targets:\n")[1].replace("fraud-a", "fraud-c").split("  - {name: fraud-b")
    )
    text = edit(TEMPLATE, ("targets:\n", "targets:\n" + written_c[0])) + (
        "  - for_each: [{model: fraud-d}]\n"  # one item: no placeholder needed in its name
        "    name: fraud-d\n"
        "    samples: {source: live, filters: {model: '{{model}}'}}\n"
        "    reference: {source: training}\n"
        "    columns: {features: {age: numeric}}\n"
        "    checks: [{name: drift, type: drift, test: ks}]\n"
    )
    path = tmp_path / "rules.yaml"
    path.write_text(text)
    rules = load_rules(path, env={})
    assert [t.name for t in rules.config.targets] == [
        "fraud-c-drift",
        "fraud-a-drift",
        "fraud-b-drift",
        "fraud-d",
    ]
    assert [(t.entry, t.name, t.targets) for t in rules.templates] == [
        (1, "{{model}}-drift", 2),
        (2, "fraud-d", 1),
    ]


def test_env_is_interpolated_after_expansion_and_its_values_are_not_templates() -> None:
    text = edit(
        TEMPLATE,
        ("ns: team-a,", "ns: '${TEAM_A:-team-a}',"),
        ("source: live, window: 5m", "source: live, window: '${WINDOW}'"),
    )
    config = parsed(text, {"WINDOW": "5m"})
    assert config == parsed(WRITTEN)
    # An environment value (a secret, say) is never searched for placeholders.
    config = parsed(text, {"WINDOW": "5m", "TEAM_A": "x{{model}}"})
    assert config.targets[0].workload.namespace == "x{{model}}"


# ------------------------------------------------------------------- one issue per mistake

ITEMS = """\
  - for_each:
      - {model: fraud-a, ns: team-a, alpha: 0.01, shard: 1}
      - {model: fraud-b, ns: team-b, alpha: 0.05, shard: 2}
"""
ITEM_B = "{model: fraud-b, ns: team-b, alpha: 0.05, shard: 2}"
WRITTEN_B = (
    "  - {name: fraud-b-drift, samples: {source: live}, reference: {source: training},\n"
    "     columns: {features: {age: numeric}}, checks: [{name: d, type: drift, test: ks}]}\n"
)
SCALAR = "a for_each value must be text, a number, true/false or a date"
# changes to TEMPLATE; the issue's line (a text on it, which occurrence), key path and message
Case = tuple[list[tuple[str, str]], tuple[str, int], str, str]
CASES: dict[str, Case] = {
    "unknown placeholder": (
        [('namespace: "{{ns}}"', 'namespace: "{{nss}}"')],
        ("{{nss}}", 1),
        "targets[0].workload.namespace",
        "unknown placeholder {{nss}}: no for_each item defines nss (they define alpha, model, "
        "ns, shard); did you mean {{ns}}?",
    ),
    "item missing a variable": (
        [("ns: team-b, ", "")],
        ("model: fraud-b", 1),
        "targets[0].for_each[1]",
        "for_each[1] {model: fraud-b, alpha: 0.05, shard: 2} has no ns, which the entry uses "
        "({{ns}}); give every item a ns",
    ),
    "a list value": (
        [("shard: 2}", "shard: [1, 2]}")],
        ("model: fraud-b", 1),
        "targets[0].for_each[1].shard",
        f"for_each[1]: shard is a list; {SCALAR}",
    ),
    "a mapping value": (
        [("shard: 2}", "shard: {a: 1}}")],
        ("model: fraud-b", 1),
        "targets[0].for_each[1].shard",
        f"for_each[1]: shard is a dict; {SCALAR}",
    ),
    "no value": (
        [("shard: 2}", "shard: null}")],
        ("model: fraud-b", 1),
        "targets[0].for_each[1].shard",
        f"for_each[1]: shard has no value; {SCALAR}",
    ),
    "a variable name that is not a name": (
        [("shard: 2}", "my-shard: 2}")],
        ("model: fraud-b", 1),
        "targets[0].for_each[1].my-shard",
        "for_each[1]: the variable 'my-shard' must be a name of letters, digits and _ "
        "(placeholders are written {{name}})",
    ),
    "items naming their targets alike": (
        [("model: fraud-b", "model: fraud-a")],
        ("model: fraud-a", 2),
        "targets[0].for_each[1]",
        "for_each[1] {model: fraud-a, ns: team-b, alpha: 0.05, shard: 2} names its target "
        "'fraud-a-drift', as for_each[0] does; make the variables in `name` differ",
    ),
    "several items missing a variable": (
        [
            (
                ITEM_B,
                "{model: fraud-b, alpha: 0.05, shard: 2}\n      - {model: c, alpha: 1, shard: 3}",
            )
        ],
        ("model: fraud-b", 1),
        "targets[0].for_each[1]",
        "for_each[1] {model: fraud-b, alpha: 0.05, shard: 2} has no ns, which the entry uses "
        "({{ns}}), nor do for_each[2]; give every item a ns",
    ),
    "several items naming their targets alike": (
        [(ITEM_B, "\n      - ".join(["{model: fraud-a, ns: b, alpha: 1, shard: 2}"] * 5))],
        ("model: fraud-a", 2),
        "targets[0].for_each[1]",
        "for_each[1] {model: fraud-a, ns: b, alpha: 1, shard: 2} names its target "
        "'fraud-a-drift', as for_each[0] does; so do for_each[2], [3], [4] and 1 more; make the "
        "variables in `name` differ",
    ),
    "a written target named alike": (
        [("targets:\n", "targets:\n" + WRITTEN_B)],
        ('"{{model}}-drift"', 1),
        "targets[1].name",
        f"target name 'fraud-b-drift' is used twice (for_each[1] {ITEM_B})",
    ),
    "several items, a name without placeholder": (
        [('name: "{{model}}-drift"', "name: fraud")],
        ("name: fraud", 1),
        "targets[0].name",
        "the name 'fraud' has no placeholder, so this entry's 2 targets would all be named "
        'alike; put a variable in it, e.g. name: "fraud-{{model}}"',
    ),
    "a placeholder in a key": (
        [("features: {age: numeric}", "features: {'{{model}}_age': numeric}")],
        ("_age", 1),
        "targets[0].columns.features.{{model}}_age",
        "the key '{{model}}_age' holds a placeholder; placeholders are substituted in values "
        "only (names, URLs, filters, labels...), not in keys",
    ),
    "a mistake of one item": (
        [("alpha: 0.05", "alpha: high")],
        ("threshold:", 1),
        "targets[0].checks[0].threshold",
        "Input should be a valid number, unable to parse string as a number (got 'high') "
        "(for_each[1] {model: fraud-b, ns: team-b, alpha: high, shard: 2})",
    ),
    "an unquoted leading placeholder": (
        [('name: "{{model}}-drift"', "name: {{model}}")],
        ("name: {{model}}", 1),
        "",
        "not valid YAML: found unhashable key: a value that starts with a {{placeholder}} must "
        'be quoted, "{{model}}"',
    ),
    "for_each elsewhere": (
        [("{source: training}", "{source: training, for_each: [{a: 1}]}")],
        ("reference:", 1),
        "targets[0].reference.for_each",
        "unknown key 'for_each' here; it belongs to another section (check its indentation) "
        "(all 2 targets of its for_each)",
    ),
    # Not also "targets: List should have at least 1 item" (the entry is left out).
    "an empty for_each": (
        [(ITEMS, "  - for_each: []\n")],
        ("for_each:", 1),
        "targets[0].for_each",
        "for_each must be a non-empty list of mappings of variables, e.g. for_each: "
        "[{model: fraud-a}, {model: fraud-b}]",
    ),
    "for_each a mapping": (
        [(ITEMS, "  - for_each: {model: fraud-a}\n")],
        ("for_each:", 1),
        "targets[0].for_each",
        "for_each must be a non-empty list of mappings of variables, e.g. for_each: "
        "[{model: fraud-a}, {model: fraud-b}]",
    ),
    "an item that is not a mapping": (
        [(ITEM_B, "fraud-b")],
        ("- fraud-b", 1),
        "targets[0].for_each[1]",
        "for_each[1] must be a mapping of variables, e.g. for_each: "
        "[{model: fraud-a}, {model: fraud-b}]",
    ),
}


@pytest.mark.parametrize("case", list(CASES), ids=list(CASES))
def test_each_template_mistake_gives_one_issue_at_the_entry_or_item(case: str) -> None:
    changes, (needle, occurrence), path, message = CASES[case]
    text = edit(TEMPLATE, *changes)
    issues = issues_of(text)
    assert len(issues) == 1, "\n".join(map(str, issues))
    [issue] = issues
    assert (issue.file, issue.line, issue.path) == (FILE, line_of(text, needle, occurrence), path)
    assert issue.message == message


def test_a_mistake_of_every_item_is_listed_once() -> None:
    items = "".join(f"      - {{model: m{k}, ns: n, alpha: 0.01, shard: {k}}}\n" for k in range(50))
    text = edit(
        TEMPLATE,
        ("      - {model: fraud-a, ns: team-a, alpha: 0.01, shard: 1}\n", items),
        ("      - {model: fraud-b, ns: team-b, alpha: 0.05, shard: 2}\n", ""),
        ("test: ks", "test: kss"),
        ("window: 5m", "window: '${WINDOW}'"),
    )
    issues = issues_of(text)
    assert [(i.line, i.path, i.message) for i in issues] == [
        (
            line_of(text, "window:"),
            "targets[0].samples.window",
            "environment variable WINDOW is not set; set it or write ${WINDOW:-default} "
            "(all 50 targets of its for_each)",
        ),
        (
            line_of(text, "window:"),
            "targets[0].samples.window",
            "'${WINDOW}' is not a duration; write e.g. '30s', '5m', '1h30m' or '7d' "
            "(all 50 targets of its for_each)",
        ),
        (
            line_of(text, "kss"),
            "targets[0].checks[0].test",
            "Input should be 'ks', 'psi' or 'chi2' (got 'kss') (all 50 targets of its for_each)",
        ),
    ]
    some = edit(text, ("test: kss", "test: ks"), ("window: '${WINDOW}'", "window: '{{ns}}'"))
    some = some.replace("ns: n, alpha: 0.01, shard: 4}", "ns: 5m, alpha: 0.01, shard: 4}")
    [issue] = issues_of(some)
    assert issue.path == "targets[0].samples.window"
    assert issue.message.endswith("(for_each[0], [1], [2] and 46 more)")


def test_item_values_used_where_secrets_go_are_masked_in_messages() -> None:
    text = edit(
        TEMPLATE,
        ("alpha: 0.05, shard: 2}", "alpha: 0.05, shard: 2, api: hunter2, db_password: hunter3}"),
        ("alpha: 0.01, shard: 1}", "alpha: 0.01, shard: 1, api: hunter1}"),
        ('args: ["--team={{ns}}"]', 'args: ["--team={{ns}}"], env: {API: "{{api}}"}'),
        ("alpha: 0.05", "alpha: high"),
    )
    [issue] = issues_of(text)
    assert issue.message.endswith(
        "(for_each[1] {model: fraud-b, ns: team-b, alpha: high, shard: 2, api: ***, "
        "db_password: ***})"
    )
    assert "hunter" not in str(issue)


# ------------------------------------------------------------------------------------- bounds


def fleet(n: int, body: str = "") -> str:
    """A rules file with one template entry of `n` items."""
    items = ", ".join(f"{{m: {k}}}" for k in range(n))
    return SOURCES + (
        f"  - for_each: [{items}]\n"
        "    name: 'm{{m}}'\n"
        "    samples: {source: live}\n"
        "    reference: {source: training}\n"
        + (body or "    columns: {features: {age: numeric}}\n")
        + "    checks: [{name: drift, type: drift, test: ks}]\n"
    )


def test_more_targets_than_the_bound_are_refused_before_expanding(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    text = fleet(MAX_TARGETS + 1)
    [issue] = issues_of(text)
    assert (issue.line, issue.path) == (line_of(text, "targets:"), "targets")
    assert issue.message == (
        f"for_each expands the targets to {MAX_TARGETS + 1:,} targets, more than "
        f"{MAX_TARGETS:,} targets a rules file may hold; split the models across several "
        "daemons, each with its own rules file"
    )
    monkeypatch.setattr(templates, "MAX_TARGETS", 5)  # the bound itself is allowed
    assert len(parsed(fleet(5)).targets) == 5
    assert issues_of(fleet(6))[0].message.startswith("for_each expands the targets to 6 targets")


def test_more_values_than_the_bound_are_refused_before_expanding() -> None:
    columns = ", ".join(f"c{k}: numeric" for k in range(1_000))  # 2,000 values a target
    text = fleet(MAX_EXPANDED_VALUES // 2_000 + 1, f"    columns: {{features: {{{columns}}}}}\n")
    issues, seconds, peak = measured(lambda: issues_of(text))
    [issue] = issues
    assert issue.path == "targets"
    assert re.fullmatch(
        r"for_each expands the targets to 1,0\d\d,\d{3} values, more than 1,000,000 a rules file "
        r"may hold; split the models across several daemons, each with its own rules file",
        issue.message,
    )
    assert seconds < 2.0 and peak < 50 << 20


def test_more_text_than_the_bound_is_refused_before_building_it() -> None:
    query = "{{v}}" * 20_000  # 100 KB of placeholders
    value = "x" * 500  # each 500 characters: 10 MB a target
    items = ", ".join(f"{{m: {k}, v: {value}}}" for k in range(4))
    text = SOURCES + (
        f"  - for_each: [{items}]\n"
        "    name: 'm{{m}}'\n"
        "    samples: {source: live}\n"
        "    reference: {source: training}\n"
        "    columns: {features: {age: numeric}}\n"
        f"    checks: [{{name: q, type: metric, source: prom, above: 1, query: '{query}'}}]\n"
    )
    assert 3 * 20_000 * 500 < MAX_EXPANDED_CHARS < 4 * 20_000 * 500
    issues, seconds, peak = measured(lambda: issues_of(text))
    [issue] = issues
    assert (issue.line, issue.path) == (line_of(text, "for_each:"), "targets[0].for_each[3]")
    assert issue.message == (
        f"for_each expands the targets to more than {MAX_EXPANDED_CHARS:,} characters of text; "
        "shorten the values, or split the models across several daemons, each with its own "
        "rules file"
    )
    assert seconds < 5.0 and peak < 50 << 20  # three targets' 10 MB, not the fourth's


FLEET_ENTRY = """\
    name: "{{model}}"
    workload: {kind: argo-rollout, name: "{{model}}", namespace: "{{team}}"}
    interval: 1m
    samples: {source: live, window: 1m, min_samples: 100, filters: {model: "{{model}}"}}
    reference: {source: training}
    columns:
      features: {FEATURES}
    checks:
      - {name: feature_drift, type: drift, test: ks, columns: features, threshold: 0.01,
         correction: bh, drift_share: 0.3}
      - {name: feature_psi, type: drift, test: psi, columns: features, threshold: 0.2,
         drift_share: 0.3}
""".replace("FEATURES", ", ".join(f"f{k:02d}: numeric" for k in range(20)))


def test_2000_targets_fit_in_a_rules_file_through_a_template(tmp_path: Path) -> None:
    models = [(f"model-{k:04d}", f"team-{k % 7}") for k in range(2_000)]
    items = "".join(f"      - {{model: {m}, team: {t}}}\n" for m, t in models)
    template = tmp_path / "template.yaml"
    template.write_text(SOURCES + "  - for_each:\n" + items + FLEET_ENTRY)
    written = tmp_path / "written.yaml"
    entries = [
        FLEET_ENTRY.replace("{{model}}", m)
        .replace("{{team}}", t)
        .replace("    name:", "  - name:", 1)
        for m, t in models
    ]
    written.write_text(SOURCES + "".join(entries))

    assert template.stat().st_size < MAX_BYTES // 10
    config = load_config(template, env={})
    assert [t.name for t in config.targets] == [m for m, _ in models]
    [issue] = config_issues(written, env={})  # the same written out is over the file's bounds
    assert issue.message.startswith(
        (f"the rules hold more than {MAX_VALUES:,} values", "the rules file is larger than")
    )
    one = parse_config(SOURCES + entries[1234], FILE, {})
    assert config.targets[1234] == one.targets[0]
