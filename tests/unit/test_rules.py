"""rules.yaml: the bundled example, safe defaults, one precise issue per mistake (file, line, key
path, what to change), every mistake listed at once, ${ENV} interpolation, the trigger language
and durations."""

from __future__ import annotations

import itertools
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from mlwatchdog.errors import ConfigError
from mlwatchdog.rules import (
    Config,
    ConfigIssue,
    DriftCheck,
    FilesSource,
    MetricCheck,
    config_issues,
    format_duration,
    load_config,
    parse_config,
    parse_duration,
    parse_trigger,
)
from mlwatchdog.rules.trigger import TriggerSyntaxError

ROOT = Path(__file__).resolve().parents[2]
FILE = "r.yaml"

VALID = """\
version: 1
sources:
  live:
    type: files
    url: /data/live
    partitioning: "dt=%Y-%m-%d/hour=%H"
  training:
    type: files
    url: /data/reference.parquet
    timestamp_column: null
  prom:
    type: prometheus
    url: http://prometheus:9090
targets:
  - name: credit
    samples:
      source: live
      window: 5m
    reference:
      source: training
    columns:
      features:
        age: numeric
        channel: categorical
      predictions:
        score: numeric
    checks:
      - name: drift
        type: drift
        test: ks
        threshold: 0.01
      - name: mix
        type: drift
        test: chi2
        columns: [channel]
      - name: errors
        type: metric
        source: prom
        query: sum(rate(errors_total[5m]))
        above: 0.02
    trigger: drift and (mix or errors)
"""


def edit(text: str, *changes: tuple[str, str]) -> str:
    """`text` with each `old` replaced (exactly once) by `new`."""
    for old, new in changes:
        assert text.count(old) == 1, f"{old!r} is not unique in the config"
        text = text.replace(old, new)
    return text


def line_of(text: str, needle: str, occurrence: int = 1) -> int:
    """The 1-based line of the `occurrence`-th line containing `needle`."""
    hits = [n for n, line in enumerate(text.splitlines(), start=1) if needle in line]
    return hits[occurrence - 1]


def issues_of(text: str, env: dict[str, str] | None = None) -> list[ConfigIssue]:
    try:
        parse_config(text, FILE, env or {})
    except ConfigError as exc:
        assert exc.issues, "a ConfigError must list its issues"
        return list(exc.issues)
    return []


def parsed(text: str, env: dict[str, str] | None = None) -> Config:
    return parse_config(text, FILE, env or {})


# ------------------------------------------------------------------------------ bundled rules.yaml


def test_bundled_rules_yaml_is_valid_and_means_what_its_comments_say() -> None:
    config = load_config(ROOT / "rules.yaml", env={})
    assert config_issues(ROOT / "rules.yaml", env={}) == []

    assert config.daemon.http.port == 8080  # ${MLWATCHDOG_PORT:-8080}
    live, training = config.sources["live"], config.sources["training"]
    assert isinstance(live, FilesSource) and isinstance(training, FilesSource)
    assert live.timestamp_column == "timestamp"
    assert live.partitioning == "dt=%Y-%m-%d/hour=%H"
    assert training.timestamp_column is None  # a fixed file: every row is the reference

    [target] = config.targets
    assert target.name == "credit-model"
    assert (target.workload.kind, target.workload.name) == ("argo-rollout", "credit-model")
    assert target.interval == timedelta(seconds=10)
    assert target.samples.window == timedelta(minutes=1)
    assert target.samples.min_samples == 200
    assert target.for_ == timedelta(seconds=30)
    assert target.cooldown == timedelta(minutes=10)
    assert target.no_data == "hold"
    assert target.rollback.dry_run is True  # the example never patches a cluster by itself
    assert target.rollback.to == "prior"
    assert [c.name for c in target.checks] == ["feature_drift", "channel_mix", "prediction_drift"]
    for check in target.checks:
        assert isinstance(check, DriftCheck)
        assert check.for_ is None  # inherits the target's `for: 30s`
        assert (check.bins, check.binning) == (10, "quantile")
    feature_drift = target.check("feature_drift")
    assert isinstance(feature_drift, DriftCheck) and str(feature_drift.correction) == "bh"

    trigger = parse_trigger(target.trigger, [c.name for c in target.checks])
    for feature, mix, prediction in itertools.product([False, True], repeat=3):
        firing = {"feature_drift": feature, "channel_mix": mix, "prediction_drift": prediction}
        assert trigger.holds(firing) == (prediction and (feature or mix))


def test_bundled_rules_yaml_port_comes_from_the_environment() -> None:
    config = load_config(ROOT / "rules.yaml", env={"MLWATCHDOG_PORT": "9191"})
    assert config.daemon.http.port == 9191


# ---------------------------------------------------------------------------------- safe defaults


def test_unset_keys_get_the_safe_defaults() -> None:
    config = parsed(VALID)
    [target] = config.targets
    # Nothing is patched unless the file says so: dry run, alert-only workload.
    assert target.rollback.dry_run is True
    assert target.rollback.enabled is True
    assert target.rollback.to == "prior"
    assert target.workload.kind == "none"
    # Missing data keeps the state; it never counts as a breach or a recovery.
    assert target.no_data == "hold"
    assert target.interval == timedelta(minutes=1)
    assert target.for_ == timedelta(minutes=5)
    assert target.resolve_after == timedelta(minutes=5)
    assert target.cooldown == timedelta(minutes=30)
    assert target.samples.min_samples == 100
    assert target.samples.filters == {}
    drift = target.check("drift")
    assert isinstance(drift, DriftCheck)
    assert drift.columns == "features"
    assert str(drift.correction) == "none"
    assert drift.drift_share == 0.5
    assert drift.for_ is None
    assert config.daemon.http.host == "127.0.0.1"  # not exposed on every interface
    assert config.daemon.http.port == 8080
    live = config.sources["live"]
    assert isinstance(live, FilesSource) and live.timestamp_column == "timestamp"


def test_a_target_with_only_the_required_keys_is_valid() -> None:
    # No samples.window, verify, rollback, workload, trigger...: the defaults must fit together.
    text = edit(VALID, ("      window: 5m\n", ""), ("    trigger: drift and (mix or errors)\n", ""))
    [target] = parsed(text).targets
    assert target.samples.window == timedelta(minutes=15)
    assert target.rollback.dry_run is True
    assert target.verify_window > target.samples.window  # recovery is judged on fresh windows


def test_default_trigger_is_any_check() -> None:
    config = parsed(edit(VALID, ("    trigger: drift and (mix or errors)\n", "")))
    [target] = config.targets
    assert target.trigger == "any"
    trigger = parse_trigger(target.trigger, [c.name for c in target.checks])
    assert trigger.holds({"errors": True})
    assert not trigger.holds({"drift": False, "mix": False, "errors": False})


def test_turning_rollback_on_does_not_switch_off_dry_run() -> None:
    text = VALID + "    rollback:\n      enabled: true\n      to: prior\n"
    assert parsed(text).targets[0].rollback.dry_run is True
    live = parsed(text + "      dry_run: false\n").targets[0].rollback
    assert live.dry_run is False


# ------------------------------------------------------------------------- one issue per mistake

Case = tuple[list[tuple[str, str]], str, Callable[[str], int], list[str]]

TRIGGER = "    trigger: drift and (mix or errors)"

CASES: dict[str, Case] = {
    "unknown key, did you mean": (
        [("threshold: 0.01", "treshold: 0.01")],
        "targets[0].checks[0].treshold",
        lambda t: line_of(t, "treshold"),
        ["unknown key 'treshold'", "did you mean 'threshold'?"],
    ),
    "unknown key, nothing close": (
        [("  - name: credit\n", "  - name: credit\n    zzyzx: 1\n")],
        "targets[0].zzyzx",
        lambda t: line_of(t, "zzyzx"),
        ["unknown key 'zzyzx'", "remove it"],
    ),
    "known key in the wrong section": (
        [("  - name: credit\n", "  - name: credit\n    dry_run: false\n")],
        "targets[0].dry_run",
        lambda t: line_of(t, "dry_run"),
        ["unknown key 'dry_run'", "another section"],
    ),
    "wrong type": (
        [("      window: 5m\n", "      window: 5m\n      min_samples: many\n")],
        "targets[0].samples.min_samples",
        lambda t: line_of(t, "min_samples"),
        ["valid integer", "'many'"],
    ),
    "value out of range": (
        [("threshold: 0.01", "threshold: 0.01\n        drift_share: 1.5")],
        "targets[0].checks[0].drift_share",
        lambda t: line_of(t, "drift_share"),
        ["less than or equal to 1", "1.5"],
    ),
    "unknown column kind": (
        [("age: numeric", "age: numbers")],
        "targets[0].columns.features.age",
        lambda t: line_of(t, "age: numbers"),
        ["'numeric' or 'categorical'", "'numbers'"],
    ),
    "bad duration": (
        [("window: 5m", "window: 5 minutes")],
        "targets[0].samples.window",
        lambda t: line_of(t, "window: 5 minutes"),
        ["'5 minutes' is not a duration", "'5m'"],
    ),
    "unknown sample source": (
        [("source: live\n", "source: lives\n")],
        "targets[0].samples.source",
        lambda t: line_of(t, "source: lives"),
        ["no source named 'lives'", "sources:", "'live'", "'training'"],
    ),
    "reference from a metric source": (
        [("source: training", "source: prom")],
        "targets[0].reference.source",
        lambda t: line_of(t, "      source: prom"),
        ["source 'prom' is of type prometheus", "files"],
    ),
    "metric check from a files source": (
        [("        source: prom", "        source: training")],
        "targets[0].checks[2].source",
        lambda t: line_of(t, "        source: training"),
        ["source 'training' is of type files", "prometheus"],
    ),
    "unknown check in trigger": (
        [(TRIGGER, "    trigger: drift and (mix or latency)")],
        "targets[0].trigger",
        lambda t: line_of(t, "trigger:"),
        ["unknown check(s) ['latency']", "'drift'", "'mix'", "'errors'"],
    ),
    "trigger syntax error": (
        [(TRIGGER, "    trigger: drift and (mix or")],
        "targets[0].trigger",
        lambda t: line_of(t, "trigger:"),
        ["cannot parse trigger", "'drift and (mix or'"],
    ),
    "trigger with a function call": (
        [(TRIGGER, "    trigger: drift and len(mix)")],
        "targets[0].trigger",
        lambda t: line_of(t, "trigger:"),
        ["only combine check names with and/or/not", "len(mix)"],
    ),
    "duplicate check names": (
        [("- name: mix", "- name: drift"), (TRIGGER, "    trigger: drift or errors")],
        "targets[0].checks[1].name",
        lambda t: line_of(t, "- name: drift", occurrence=2),
        ["check name 'drift' is used twice"],
    ),
    "duplicate YAML key": (
        [("        test: ks\n", "        test: ks\n        test: psi\n")],
        "targets[0].checks[0].test",
        lambda t: line_of(t, "test: psi"),
        ["'test' appears twice", "keep one"],
    ),
    "column not declared": (
        [("columns: [channel]", "columns: [channel, country]")],
        "targets[0].checks[1].columns",
        lambda t: line_of(t, "country"),
        ["'country' is not declared under `columns:`", "'age'", "'channel'", "'score'"],
    ),
    "ks on a categorical column": (
        [("threshold: 0.01", "threshold: 0.01\n        columns: [age, channel]")],
        "targets[0].checks[0].columns",
        lambda t: line_of(t, "columns: [age, channel]"),
        ["test ks does not take categorical column 'channel'", "psi or chi2"],
    ),
    "chi2 on a group without categorical columns": (
        [("columns: [channel]", "columns: predictions")],
        "targets[0].checks[1].columns",
        lambda t: line_of(t, "columns: predictions"),
        ["no categorical column among `predictions` for test chi2"],
    ),
    "environment variable not set": (
        [("url: /data/live", "url: ${LIVE_URL}/live")],
        "sources.live.url",
        lambda t: line_of(t, "LIVE_URL"),
        ["LIVE_URL is not set", "${LIVE_URL:-default}"],
    ),
    "missing required key": (
        [("    reference:\n      source: training\n", "")],
        "targets[0].reference",
        lambda t: line_of(t, "- name: credit"),
        ["missing required key 'reference'"],
    ),
    "fallback rollback without a fallback": (
        [(TRIGGER, TRIGGER + "\n    rollback:\n      to: fallback")],
        "targets[0].rollback",
        lambda t: line_of(t, "rollback:"),
        ["needs a `fallback:`"],
    ),
}


@pytest.mark.parametrize("case", list(CASES), ids=list(CASES))
def test_each_mistake_gives_one_issue_with_line_path_and_fix(case: str) -> None:
    changes, path, line, fragments = CASES[case]
    text = edit(VALID, *changes)
    issues = issues_of(text)
    assert len(issues) == 1, "\n".join(map(str, issues))
    [issue] = issues
    assert issue.file == FILE
    assert issue.path == path
    assert issue.line == line(text), str(issue)
    for fragment in fragments:
        assert fragment in issue.message, str(issue)
    assert str(issue) == f"{FILE}:{issue.line}: {path}: {issue.message}"


def test_duplicate_target_names_point_at_the_second_one() -> None:
    text = VALID + VALID.split("targets:\n", 1)[1]
    [issue] = issues_of(text)
    assert issue.path == "targets[1].name"
    assert issue.line == line_of(text, "- name: credit", occurrence=2)
    assert "target name 'credit' is used twice" in issue.message


def test_a_valid_file_has_no_issues_and_loads(tmp_path: Path) -> None:
    path = tmp_path / "rules.yaml"
    path.write_text(VALID)
    assert config_issues(path, env={}) == []
    config = load_config(path, env={})
    assert [c.name for c in config.targets[0].checks] == ["drift", "mix", "errors"]
    assert isinstance(config.targets[0].check("errors"), MetricCheck)


def test_issues_name_the_file_they_came_from(tmp_path: Path) -> None:
    path = tmp_path / "team" / "rules.yaml"
    path.parent.mkdir()
    path.write_text(edit(VALID, ("window: 5m", "window: soon")))
    [issue] = config_issues(path, env={})
    assert issue.file == str(path)
    assert str(issue).startswith(f"{path}:{line_of(path.read_text(), 'window: soon')}: ")


# ---------------------------------------------------------------------- every mistake at once


def test_every_schema_mistake_in_a_file_is_listed() -> None:
    text = edit(
        VALID,
        ("threshold: 0.01", "treshold: 0.01"),
        ("window: 5m", "window: 5 minutes"),
        ("        test: chi2\n", "        test: chi2\n        test: psi\n"),
        ("url: /data/live", "url: ${LIVE_URL}"),
        ("    url: http://prometheus:9090\n", "    url: http://prometheus:9090\n    tls: yes\n"),
    )
    issues = issues_of(text)
    by_path = {i.path: i for i in issues}
    assert sorted(by_path) == sorted(
        [
            "targets[0].checks[0].treshold",
            "targets[0].samples.window",
            "targets[0].checks[1].test",
            "sources.live.url",
            "sources.prom.tls",
        ]
    ), "\n".join(map(str, issues))
    assert by_path["sources.prom.tls"].line == line_of(text, "tls: yes")
    assert by_path["targets[0].checks[1].test"].line == line_of(text, "test: psi")


def test_every_cross_reference_mistake_in_a_file_is_listed() -> None:
    text = edit(
        VALID,
        ("source: live\n", "source: lives\n"),
        ("columns: [channel]", "columns: [channel, country]"),
        (TRIGGER, "    trigger: drift and latency"),
    )
    text += VALID.split("targets:\n", 1)[1]
    issues = issues_of(text)
    assert sorted(i.path for i in issues) == sorted(
        [
            "targets[0].samples.source",
            "targets[0].checks[1].columns",
            "targets[0].trigger",
            "targets[1].name",
        ]
    ), "\n".join(map(str, issues))


def test_config_error_message_lists_every_issue() -> None:
    text = edit(VALID, ("threshold: 0.01", "treshold: 0.01"), ("window: 5m", "window: 5 minutes"))
    with pytest.raises(ConfigError) as caught:
        parse_config(text, FILE, {})
    message = str(caught.value)
    assert "2 problem(s)" in message
    for issue in caught.value.issues:
        assert str(issue) in message


def test_schema_and_cross_reference_mistakes_are_listed_together() -> None:
    text = edit(
        VALID, ("threshold: 0.01", "treshold: 0.01"), (TRIGGER, "    trigger: drift or latency")
    )
    paths = {i.path for i in issues_of(text)}
    assert paths == {"targets[0].checks[0].treshold", "targets[0].trigger"}


# ------------------------------------------------------------------------------------ YAML itself


@pytest.mark.parametrize(
    ("change", "needle"),
    [
        (("    url: /data/live\n", "    url: /data/live: here\n"), "/data/live: here"),
        (("        test: ks\n", "\ttest: ks\n"), "\ttest: ks"),
        (("      window: 5m\n", "      window: 5m\n     min_samples: 5\n"), "min_samples"),
    ],
    ids=["colon in a plain value", "tab indentation", "bad indentation"],
)
def test_yaml_syntax_error_gives_its_line(change: tuple[str, str], needle: str) -> None:
    text = edit(VALID, change)
    [issue] = issues_of(text)
    assert issue.message.startswith("not valid YAML")
    assert issue.line == line_of(text, needle), str(issue)


@pytest.mark.parametrize("text", ["", "- a\n- b\n", "just text\n"], ids=["empty", "list", "scalar"])
def test_a_file_that_is_not_a_mapping_says_what_it_must_be(text: str) -> None:
    [issue] = issues_of(text)
    assert issue.line == 1
    assert "`sources:` and `targets:`" in issue.message


# ------------------------------------------------------------------------- ${ENV} interpolation


def url_of(config: Config, source: str = "live") -> str:
    spec = config.sources[source]
    assert isinstance(spec, FilesSource)
    return spec.url.reveal()


@pytest.mark.parametrize(
    ("env", "url"),
    [
        ({}, "/mnt/data/live"),
        ({"LIVE_ROOT": "s3://bucket"}, "s3://bucket/live"),
        ({"LIVE_ROOT": ""}, "/mnt/data/live"),  # like the shell, :- also covers an empty value
    ],
    ids=["unset", "set", "empty"],
)
def test_env_default(env: dict[str, str], url: str) -> None:
    text = edit(VALID, ("url: /data/live", "url: ${LIVE_ROOT:-/mnt/data}/live"))
    assert url_of(parsed(text, env)) == url


def test_env_variable_is_substituted_and_dollar_dollar_is_a_literal_dollar() -> None:
    text = edit(VALID, ("url: /data/live", "url: /$${HOME}/${BUCKET}/$$cost$$"))
    assert url_of(parsed(text, {"BUCKET": "b1", "HOME": "/root"})) == "/${HOME}/b1/$cost$"


def test_empty_default_and_variable_set_to_empty_are_allowed() -> None:
    text = edit(VALID, ("url: /data/live", "url: /data${SUFFIX:-}/live${EXTRA}"))
    assert url_of(parsed(text, {"EXTRA": ""})) == "/data/live"


def test_env_in_a_number_field_is_converted_and_checked() -> None:
    text = VALID + 'daemon:\n  http:\n    port: "${PORT:-9100}"\n'
    assert parsed(text).daemon.http.port == 9100
    assert parsed(text, {"PORT": "9200"}).daemon.http.port == 9200
    [issue] = issues_of(text, {"PORT": "http"})
    assert issue.path == "daemon.http.port"
    assert issue.line == line_of(text, "port:")
    assert "'http'" in issue.message


def test_process_environment_is_used_by_default(monkeypatch: pytest.MonkeyPatch) -> None:
    text = edit(VALID, ("url: /data/live", "url: ${MLWATCHDOG_TEST_LIVE}"))
    monkeypatch.setenv("MLWATCHDOG_TEST_LIVE", "gs://bucket/live")
    assert url_of(parse_config(text)) == "gs://bucket/live"
    monkeypatch.delenv("MLWATCHDOG_TEST_LIVE")
    with pytest.raises(ConfigError, match="MLWATCHDOG_TEST_LIVE is not set"):
        parse_config(text)


# ---------------------------------------------------------------------------------------- trigger

NAMES = ["drift", "mix", "errors"]


@pytest.mark.parametrize(
    ("text", "truth"),
    [
        ("any", lambda d, m, e: d or m or e),
        ("  all ", lambda d, m, e: d and m and e),
        ("drift", lambda d, m, e: d),
        ("errors and not drift", lambda d, m, e: e and not d),
        ("drift and mix", lambda d, m, e: d and m),
        ("drift or mix and errors", lambda d, m, e: d or (m and e)),
        ("(drift or mix) and errors", lambda d, m, e: (d or m) and e),
        ("drift and (mix or errors)", lambda d, m, e: d and (m or e)),
        ("not (drift or mix) and errors", lambda d, m, e: (not (d or m)) and e),
        ("drift and not mix or errors", lambda d, m, e: (d and not m) or e),
        ("not not drift", lambda d, m, e: d),
    ],
)
def test_trigger_truth_table(text: str, truth: Callable[[bool, bool, bool], bool]) -> None:
    trigger = parse_trigger(text, NAMES)
    for values in itertools.product([False, True], repeat=3):
        firing = dict(zip(NAMES, values, strict=True))
        assert trigger.holds(firing) == truth(*values), (text, firing)


def test_trigger_reads_only_the_checks_it_names() -> None:
    assert parse_trigger("drift and not mix", NAMES).names == {"drift", "mix"}
    assert parse_trigger("any", NAMES).names == set(NAMES)
    # A check missing from the firing map is unknown: neither firing nor quiet.
    assert not parse_trigger("drift", NAMES).holds({})
    assert not parse_trigger("mix and not drift", NAMES).holds({"mix": True})


@pytest.mark.parametrize("keyword", ["any", "all"])
def test_any_and_all_work_with_every_valid_check_name(keyword: str) -> None:
    names = ["feature-drift", "p.drift", "None"]  # valid check names, but not Python names
    trigger = parse_trigger(keyword, names)
    for values in itertools.product([False, True], repeat=3):
        expected = any(values) if keyword == "any" else all(values)
        assert trigger.holds(dict(zip(names, values, strict=True))) == expected


def test_config_with_dashed_check_name_and_default_trigger_is_valid() -> None:
    text = edit(
        VALID,
        ("- name: drift", "- name: feature-drift"),
        ("    trigger: drift and (mix or errors)\n", ""),
    )
    target = parsed(text).targets[0]
    assert parse_trigger(target.trigger, [c.name for c in target.checks]).holds(
        {"feature-drift": True}
    )


@pytest.mark.parametrize(
    "text",
    [
        "len(drift)",
        "__import__('os')",
        "drift.real",
        "drift and 1",
        "1",
        "True",
        "drift == mix",
        "drift + mix",
        "drift & mix",
        "drift | mix",
        "-drift",
        "drift[0]",
        "drift if mix else errors",
        "lambda: drift",
        "'drift'",
        "[drift]",
    ],
)
def test_forbidden_trigger_constructs_are_refused(text: str) -> None:
    with pytest.raises(TriggerSyntaxError, match="only combine check names with and/or/not"):
        parse_trigger(text, NAMES)


@pytest.mark.parametrize("text", ["drift and", "(drift", "drift mix", "and", "", "drift;mix"])
def test_trigger_syntax_errors_are_refused(text: str) -> None:
    with pytest.raises(TriggerSyntaxError, match="cannot parse trigger"):
        parse_trigger(text, NAMES)


def test_trigger_naming_an_unknown_check_is_refused() -> None:
    with pytest.raises(TriggerSyntaxError, match=r"unknown check\(s\) \['latency'\]"):
        parse_trigger("drift or latency", NAMES)


# -------------------------------------------------------------------------------------- durations


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("500ms", timedelta(milliseconds=500)),
        ("30s", timedelta(seconds=30)),
        ("5m", timedelta(minutes=5)),
        ("1.5h", timedelta(minutes=90)),
        ("7d", timedelta(days=7)),
        ("2w", timedelta(days=14)),
        (" 10 m ", timedelta(minutes=10)),
        (90, timedelta(seconds=90)),
        (0.25, timedelta(milliseconds=250)),
        ("0s", timedelta(0)),
        ("0", timedelta(0)),
        ("1h30m", timedelta(minutes=90)),
        ("1d2h", timedelta(hours=26)),
        ("1h0m0s", timedelta(hours=1)),
        ("2h45m30.5s", timedelta(hours=2, minutes=45, seconds=30.5)),
        ("1m30s250ms", timedelta(seconds=90.25)),
        ("1h 30m", timedelta(minutes=90)),
        ("1y", timedelta(days=365)),
        ("1500us", timedelta(microseconds=1500)),
        ("2000ns", timedelta(microseconds=2)),
    ],
)
def test_parse_duration(text: str | float, expected: timedelta) -> None:
    assert parse_duration(text) == expected


@pytest.mark.parametrize(
    "text",
    ["5 minutes", "5", "5M", "m", "", "-5m", "-1h30m", "1h30", "5mo", "1x", "h30m", True, -1],
)
def test_parse_duration_refuses_what_is_not_a_duration(text: str | int | bool) -> None:
    with pytest.raises(ValueError, match="duration") as refused:
        parse_duration(text)
    assert repr(text) in str(refused.value)  # the message names the bad value


@pytest.mark.parametrize("text", ["30m1h", "1h1h", "5s1m"])
def test_duration_units_go_from_largest_to_smallest_once(text: str) -> None:
    with pytest.raises(ValueError, match="largest to smallest"):
        parse_duration(text)


@given(
    st.lists(
        st.tuples(
            st.sampled_from(["h", "m", "s", "ms", "us", "ns"]),
            st.integers(0, 10_000),
            st.none() | st.integers(0, 999),
        ),
        min_size=1,
        max_size=6,
        unique_by=lambda part: part[0],
    )
)
def test_go_durations_read_as_go_reads_them(parts: list[tuple[str, int, int | None]]) -> None:
    """durationpy (installed with kubernetes) implements Go's time.ParseDuration: the oracle."""
    durationpy = pytest.importorskip("durationpy")
    order = ["h", "m", "s", "ms", "us", "ns"]
    text = "".join(
        f"{whole}{'' if fraction is None else f'.{fraction:03d}'}{unit}"
        for unit, whole, fraction in sorted(parts, key=lambda part: order.index(part[0]))
    )
    expected = durationpy.from_str(text)
    # Go counts nanoseconds, timedelta microseconds: equal to the microsecond.
    assert abs(parse_duration(text) - expected) <= timedelta(microseconds=1), text


def test_a_compound_duration_is_read_in_rules_yaml() -> None:
    config = parsed(edit(VALID, ("window: 5m", "window: 1h30m")))
    assert config.targets[0].samples.window == timedelta(minutes=90)


@pytest.mark.parametrize(
    ("text", "canonical"),
    [
        ("30s", "30s"),
        ("90s", "90s"),
        ("60m", "1h"),
        ("1.5h", "90m"),
        ("24h", "1d"),
        ("14d", "2w"),
        ("500ms", "0.5s"),
        ("1000ms", "1s"),
        ("1000000.5s", "1000000.5s"),
        ("0.00001s", "0.00001s"),
    ],
)
def test_format_duration_is_the_shortest_spelling(text: str, canonical: str) -> None:
    assert format_duration(parse_duration(text)) == canonical
    assert parse_duration(canonical) == parse_duration(text)


@given(st.timedeltas(min_value=timedelta(0), max_value=timedelta(days=3650)))
def test_duration_round_trip(value: timedelta) -> None:
    assert parse_duration(format_duration(value)) == value


def test_sink_retention_must_outlast_the_oldest_event_taken() -> None:
    """Every replica prunes: a partition must never go while writers may still append to it."""
    text = VALID.replace(
        "version: 1\n", "version: 1\ndaemon:\n  sink: {retention: 2h, max_event_age: 3h}\n", 1
    )
    with pytest.raises(
        ConfigError, match=r"retention \(2h\) must be at least max_event_age \(3h\) plus 1h"
    ):
        parse_config(text, FILE, {})
    fine = VALID.replace(
        "version: 1\n", "version: 1\ndaemon:\n  sink: {retention: 4h, max_event_age: 3h}\n", 1
    )
    assert parse_config(fine, FILE, {}).daemon.sink.retention == timedelta(hours=4)
