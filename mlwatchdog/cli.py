"""The `mlwatchdog` command: parses arguments and calls the library; no logic of its own."""

from __future__ import annotations

import dataclasses
import json
import sys
from collections.abc import Iterable, Iterator
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from importlib import metadata
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import quote

import httpx
import typer
from rich import box
from rich.console import Console
from rich.padding import Padding
from rich.progress import Progress
from rich.table import Table
from rich.text import Text

from mlwatchdog.core import DataStatus
from mlwatchdog.daemon.logs import LogFormat, configure_logging
from mlwatchdog.daemon.service import serve
from mlwatchdog.demo import PARTITIONING, LiveWriter, backfill, fresh_workdir
from mlwatchdog.detectors import DEFAULT_MIN_SAMPLES, ColumnResult, Correction, DriftTest, Reference
from mlwatchdog.errors import ConfigError, MlwatchdogError, StartupError
from mlwatchdog.replay import (
    BundleError,
    alarm_rates,
    changed_target,
    list_bundles,
    load_bundle,
    parse_changes,
    step_times,
)
from mlwatchdog.replay import replay as run_replay
from mlwatchdog.rules import (
    Config,
    config_issues,
    format_duration,
    load_config,
    load_rules,
    parse_duration,
)
from mlwatchdog.rules.secret import Redactor, SecretUrl, secret_values
from mlwatchdog.sources.probe import TargetFound, probe
from mlwatchdog.sources.tables import read_table

app = typer.Typer(
    help="mlwatchdog keeps deployed ML models honest: drift checks, safe rollback, replay.",
    no_args_is_help=True,
    add_completion=False,
)


def _version(value: bool) -> None:
    if value:
        try:
            version = metadata.version("mlwatchdog")
        except metadata.PackageNotFoundError:  # run from a source tree without installing
            from mlwatchdog import __version__ as version
        typer.echo(f"mlwatchdog {version}")
        raise typer.Exit()


@app.callback()
def _group(
    version: Annotated[
        bool,
        typer.Option(
            "--version", callback=_version, is_eager=True, help="Print the version and exit."
        ),
    ] = False,
) -> None:
    """mlwatchdog keeps deployed ML models honest: drift checks, safe rollback, replay."""


class OutputFormat(StrEnum):
    TABLE = "table"
    JSON = "json"


# Every command that prints takes --format: a table (or lines) for people, or one JSON document
# on stdout for programs (errors stay one `error:` line on stderr, logs never go to stdout).
FormatOption = Annotated[
    OutputFormat, typer.Option("--format", help="table (for people) or json (for programs).")
]


def _print_json(data: object) -> None:
    print(json.dumps(data, indent=2, default=_jsonable))


def _jsonable(value: object) -> object:
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, timedelta):
        return format_duration(value)
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return dataclasses.asdict(value)
    return str(value)


class BinningChoice(StrEnum):
    QUANTILE = "quantile"
    EVIDENTLY = "evidently"


# Exit statuses (the README's table): 0 ok; 1 an error (bad input, invalid rules, a refusal);
# 2 a usage error (typer's); EXIT_DRIFT; EXIT_STARTUP.
EXIT_DRIFT = 3  # with --fail-on-drift, so a pipeline can tell drift from an error (1)
EXIT_STARTUP = 4  # run/demo: the HTTP port is in use or not allowed (nothing was started)


@app.command()
def evaluate(
    reference: Annotated[Path, typer.Option(help="Reference sample: .parquet, .csv or .jsonl.")],
    current: Annotated[Path, typer.Option(help="Current sample, same columns as the reference.")],
    test: Annotated[
        list[DriftTest] | None,
        typer.Option(help="Drift test to run, repeatable (default: ks, psi, chi2)."),
    ] = None,
    column: Annotated[
        list[str] | None, typer.Option(help="Column to test, repeatable (default: all).")
    ] = None,
    alpha: Annotated[float | None, typer.Option(help="Alpha for KS and chi2 [0.05].")] = None,
    psi_threshold: Annotated[float | None, typer.Option(help="PSI drift threshold [0.1].")] = None,
    correction: Annotated[
        Correction, typer.Option(help="Multiple-testing correction across columns.")
    ] = Correction.NONE,
    min_samples: Annotated[
        int, typer.Option(help="Fewer usable values make a column 'insufficient'.")
    ] = DEFAULT_MIN_SAMPLES,
    bins: Annotated[int, typer.Option(help="PSI quantile bins.")] = 10,
    binning: Annotated[
        BinningChoice, typer.Option(help="PSI binning: quantile, or evidently's exactly.")
    ] = BinningChoice.QUANTILE,
    output: FormatOption = OutputFormat.TABLE,
    fail_on_drift: Annotated[
        bool, typer.Option(help=f"Exit {EXIT_DRIFT} when any column drifted.")
    ] = False,
) -> None:
    """Compare a current sample with a reference, column by column, and print the drift table."""
    # Piped output (make run, CI logs) gets room for the whole table instead of rich's 80 columns.
    console = Console() if sys.stdout.isatty() else Console(width=120)
    try:
        ref_frame = read_table(reference)
        cur_frame = read_table(current)
        columns = column or list(ref_frame.columns)
        ref = Reference(ref_frame[_existing(ref_frame.columns, columns, reference)])
        sample = ref.prepare(cur_frame)
        rows: list[ColumnResult] = []
        for name in test or list(DriftTest):
            threshold = psi_threshold if name is DriftTest.PSI else alpha
            result = ref.test(
                sample,
                name,
                threshold=threshold,
                correction=correction,
                min_samples=min_samples,
                bins=bins,
                binning=binning.value,
            )
            rows.extend(result.rows())
    except MlwatchdogError as exc:
        typer.echo(f"error: {exc}", err=True)  # plain: no wrapping inside paths
        raise typer.Exit(1) from None
    rows.sort(key=lambda r: (columns.index(r.column), list(DriftTest).index(r.test)))
    if output is OutputFormat.JSON:
        print(json.dumps([_row_dict(r) for r in rows], indent=2))
    else:
        console.print(_table(rows, ref, reference, current, correction))
        console.print(_summary(rows), highlight=False)
    if fail_on_drift and any(r.drifted for r in rows):
        raise typer.Exit(EXIT_DRIFT)


def _existing(available: object, wanted: list[str], path: Path) -> list[str]:
    names = [str(c) for c in available]  # type: ignore[attr-defined]
    missing = [c for c in wanted if c not in names]
    if missing:
        raise MlwatchdogError(f"{path}: no column(s) {missing}; it has {names}.")
    return wanted


def _row_dict(row: ColumnResult) -> dict[str, object]:
    return {k: str(v) if k in ("test", "status") else v for k, v in row.__dict__.items()}


def _fmt(value: float | None) -> str:
    if value is None:
        return "-"
    return f"{value:.2e}" if value < 1e-3 else f"{value:.4f}"


def _table(
    rows: list[ColumnResult], ref: Reference, reference: Path, current: Path, correction: Correction
) -> Table:
    pcol = "p-value" if correction is Correction.NONE else f"p-value ({correction})"
    table = Table(title=f"Drift of {current} against {reference}")
    for header, justify in [
        ("column", "left"),
        ("kind", "left"),
        ("test", "left"),
        ("n ref", "right"),
        ("n cur", "right"),
        ("dropped", "right"),
        ("statistic", "right"),
        (pcol, "right"),
        ("drift", "left"),
    ]:
        table.add_column(header, justify=justify)  # type: ignore[arg-type]
    kinds = dict(zip(ref.columns, ref.kinds, strict=True))
    for r in rows:
        if r.drifted is None:
            drift = "[yellow]insufficient data[/yellow]"
        else:
            drift = "[bold red]yes[/bold red]" if r.drifted else "[green]no[/green]"
        pvalue = r.pvalue_adjusted if correction is not Correction.NONE else r.pvalue
        table.add_row(
            r.column,
            str(kinds[r.column]),
            str(r.test),
            str(r.n_reference),
            str(r.n_current),
            str(r.n_dropped),
            _fmt(r.statistic),
            _fmt(pvalue),
            drift,
        )
    return table


def _summary(rows: list[ColumnResult]) -> str:
    drifted: dict[str, list[str]] = {}
    for r in rows:
        if r.drifted:
            drifted.setdefault(r.column, []).append(str(r.test))
    n_columns = len({r.column for r in rows})
    if not drifted:
        return f"No drift in {n_columns} column(s)."
    detail = ", ".join(f"{c} ({', '.join(t)})" for c, t in drifted.items())
    return f"Drift in {len(drifted)} of {n_columns} column(s): {detail}."


@app.command()
def check(
    files: Annotated[list[Path], typer.Argument(help="rules.yaml file(s) to check.")],
    sources: Annotated[
        bool,
        typer.Option(
            "--sources",
            help="Also read each target's sources once, as the daemon would (samples window, "
            "reference, metric checks), and show what was found; exit 1 if any is missing.",
        ),
    ] = False,
    at: Annotated[
        str | None,
        typer.Option(help="With --sources: read the window ending then, ISO 8601 (default now)."),
    ] = None,
    output: FormatOption = OutputFormat.TABLE,
) -> None:
    """Check rules files, like `promtool check rules`: exit 0 if all are valid, else 1. With
    --sources, also read every target's samples window, reference and metric checks once, as
    the daemon would (nothing is written), and exit 1 if any of them is missing."""
    failed = False
    moment = _utc(at) if at else datetime.now(UTC)
    as_json = output is OutputFormat.JSON
    checked: list[dict[str, Any]] = []  # --format json: one entry per file
    for path in files:
        issues = config_issues(path)
        entry: dict[str, Any] = {"file": str(path), "valid": not issues}
        checked.append(entry)
        if issues:
            failed = True
            entry["problems"] = [dataclasses.asdict(issue) for issue in issues]
            if not as_json:
                typer.echo(f"Checking {path}\n  FAILED: {len(issues)} problem(s):", err=True)
                for issue in issues:
                    typer.echo(f"    {issue}", err=True)
            continue
        rules = load_rules(path)
        config = rules.config
        n_checks = sum(len(t.checks) for t in config.targets)
        entry.update(targets=len(config.targets), checks=n_checks, sources=len(config.sources))
        if rules.templates:
            entry["templates"] = [dataclasses.asdict(t) for t in rules.templates]
        if not as_json:
            typer.echo(
                f"Checking {path}\n  SUCCESS: {len(config.targets)} target(s), "
                f"{n_checks} check(s), {len(config.sources)} source(s)"
            )
            for template in rules.templates:
                typer.echo(
                    f"    targets[{template.entry}] {template.name!r}: for_each expanded to "
                    f"{template.targets:,} target(s)"
                )
        if sources:
            try:
                found = probe(config, moment)
            except (MlwatchdogError, ImportError) as exc:  # a reader that cannot start
                scrub = Redactor(secret_values(config)).text
                entry["sources_error"] = f"cannot read the sources: {scrub(str(exc))}"
                if not as_json:
                    typer.echo(f"  error: {entry['sources_error']}", err=True)
                failed = True
                continue
            entry["found"] = [{**dataclasses.asdict(t), "problems": t.problems} for t in found]
            missing = any(t.problems for t in found)
            if not as_json:
                _print_probe(found)
            failed = failed or missing
    if as_json:
        _print_json(checked)
    raise typer.Exit(1 if failed else 0)


def _print_probe(found: list[TargetFound]) -> bool:
    """One table per target of what its sources gave; True when something is missing."""
    console = Console() if sys.stdout.isatty() else Console(width=160)
    missing = False
    for target in found:
        start = target.at - target.window
        table = Table(
            title=f"{target.target}: window [{start:%Y-%m-%d %H:%M:%S}, {target.at:%H:%M:%S}) "
            f"UTC, {format_duration(target.window)}",
            title_justify="left",
        )
        for header in ("input", "source", "status", "rows", "found"):
            table.add_column(header, justify="right" if header == "rows" else "left")
        samples, reference = target.samples, target.reference
        unused = "" if samples.used else " (unused: no drift check)"
        found_samples = [samples.reason]
        if samples.first and samples.last:
            found_samples.insert(0, f"{samples.first:%H:%M:%S} to {samples.last:%H:%M:%S}")
        if samples.columns_missing:
            found_samples.append(f"no column(s) {', '.join(samples.columns_missing)}")
        fingerprint = f"fingerprint {reference.fingerprint[:12]}" if reference.fingerprint else ""
        rows = [
            ("samples" + unused, samples.source, samples.status, str(samples.rows),
             found_samples),
            ("reference" + unused, reference.source, reference.status, str(reference.rows),
             [fingerprint, reference.reason]),
        ]  # fmt: skip
        for metric in target.metrics:
            value = "" if metric.value is None else f"value {metric.value:g}"
            reading = [value, metric.reason]
            rows.append((f"metric {metric.check}", metric.source, metric.status, "-", reading))
        labels = target.labels
        if labels is not None:
            rows.append(("labels", labels.source, labels.status, str(labels.rows), [labels.reason]))
            if labels.reference_status is not None:
                rows.append(("reference labels", reference.source, labels.reference_status, "-",
                             [labels.reference_reason]))  # fmt: skip
        for name, source, status, count, parts in rows:
            mark = str(status) if status is DataStatus.OK else f"{status} !"
            text = "; ".join(part for part in parts if part)
            table.add_row(*(Text(cell) for cell in (name, source, mark, count, text)))
        console.print(table)
        for problem in target.problems:
            missing = True
            console.print(Text(f"  MISSING {target.target}: {problem}"))
    return missing


def _load_or_exit(path: Path) -> Config:
    try:
        return load_config(path)
    except ConfigError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(1) from None


LogFormatOption = Annotated[
    LogFormat | None,
    typer.Option(
        envvar="MLWATCHDOG_LOG_FORMAT",
        help="json (one object per line) or console (for people); default: console on a "
        "terminal, else json (or $MLWATCHDOG_LOG_FORMAT).",
        show_default=False,
    ),
]


@app.command()
def run(
    config: Annotated[Path, typer.Option(help="The rules file.")] = Path("rules.yaml"),
    host: Annotated[str | None, typer.Option(help="HTTP address (default: daemon.http).")] = None,
    port: Annotated[int | None, typer.Option(help="HTTP port (default: daemon.http).")] = None,
    log_format: LogFormatOption = None,
) -> None:
    """Run the daemon: evaluate every target on its schedule and serve /healthz, /metrics."""
    _serve(config, host, port, log_format, sink_only=False)


@app.command()
def sink(
    config: Annotated[Path, typer.Option(help="The rules file.")] = Path("rules.yaml"),
    host: Annotated[str | None, typer.Option(help="HTTP address (default: daemon.http).")] = None,
    port: Annotated[int | None, typer.Option(help="HTTP port (default: daemon.http).")] = None,
    log_format: LogFormatOption = None,
) -> None:
    """Serve only the KServe sink (POST /sink/kserve, /healthz, /readyz, /metrics): no
    evaluation, no leader election, no rollback. Run as many as the traffic needs, storing in
    daemon.sink.path where `mlwatchdog run` reads (a shared folder or an object store)."""
    _serve(config, host, port, log_format, sink_only=True)


def _serve(
    config: Path, host: str | None, port: int | None, log_format: LogFormat | None, sink_only: bool
) -> None:
    rules = _load_or_exit(config)
    redactor = Redactor(secret_values(rules))
    log = configure_logging(rules.daemon.log_level, redactor, log_format)
    try:
        serve(rules, log, host, port, config_path=config, redactor=redactor, sink_only=sink_only)
    except ConfigError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(1) from None
    except StartupError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(EXIT_STARTUP) from None


@app.command()
def status(
    url: Annotated[
        str | None,
        typer.Option(help="The daemon's address (default: daemon.http of --config)."),
    ] = None,
    config: Annotated[Path, typer.Option(help="The rules file.")] = Path("rules.yaml"),
    output: FormatOption = OutputFormat.TABLE,
    token: Annotated[
        str | None,
        typer.Option(
            envvar="MLWATCHDOG_TOKEN",
            help="A bearer token of daemon.auth with the read role (or $MLWATCHDOG_TOKEN).",
            show_default=False,
        ),
    ] = None,
    deprecated_output: Annotated[
        OutputFormat | None, typer.Option("--output", hidden=True, help="Use --format.")
    ] = None,
) -> None:
    """Show every target of a running daemon: state, incident and checks (GET /api/v1/targets)."""
    output = deprecated_output or output  # --output was the option's name until 0.1
    if url is None:
        http = _load_or_exit(config).daemon.http
        host = "127.0.0.1" if http.host in ("0.0.0.0", "::") else http.host
        url = f"http://{host}:{http.port}"
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    try:
        response = httpx.get(url.rstrip("/") + "/api/v1/targets", timeout=10, headers=headers)
    except httpx.HTTPError as exc:
        typer.echo(f"error: cannot read {url}/api/v1/targets: {exc}", err=True)
        raise typer.Exit(1) from None
    if response.status_code in (401, 403):
        what = "needs credentials" if response.status_code == 401 else "refused this token"
        typer.echo(
            f"error: {url} {what}: give a token of daemon.auth with the read role in "
            "$MLWATCHDOG_TOKEN (or --token)",
            err=True,
        )
        raise typer.Exit(1)
    if response.is_error:
        typer.echo(f"error: {url}/api/v1/targets answered {response.status_code}", err=True)
        raise typer.Exit(1)
    targets = response.json()
    if output is OutputFormat.JSON:
        _print_json(targets)
        return
    _print_status(url, targets)


def _print_status(url: str, targets: list[dict[str, Any]]) -> None:
    """Each target as a heading line (state, since, incident) over a table of its checks:
    five narrow columns, so the whole fits a terminal of 80 columns."""
    console = Console()  # the terminal's width; $COLUMNS or 80 when piped
    console.print(Text(f"mlwatchdog at {url}", style="bold"))
    colours = {"healthy": "green", "degraded": "yellow", "escalated": "bold red"}
    for target in targets:
        phase = target["phase"] or "not evaluated"
        styled = f"[{colours.get(phase, 'magenta')}]{phase}[/]"
        if target.get("blind"):  # its drift checks judge nothing: say so before the phase
            styled = f"[bold red]blind[/] ({styled})"
        heading = Text.from_markup(f"\n[bold]{target['name']}[/]: {styled}")
        if target.get("since"):
            heading.append(f" since {_time(target['since'])}")
        console.print(heading)
        if target.get("incident"):
            console.print(Text(f"  incident {target['incident']}"))
        table = Table(box=box.SIMPLE_HEAD, show_edge=False, pad_edge=False)
        table.add_column("check", overflow="fold")
        table.add_column("state", no_wrap=True)
        table.add_column("data", no_wrap=True)
        table.add_column("value", justify="right", no_wrap=True)
        table.add_column("threshold", justify="right", no_wrap=True)
        for check in target["checks"] or []:
            table.add_row(
                check.get("name", "-"),
                check.get("state", "-"),
                check.get("status") or "-",
                _fmt(check.get("value")),
                _fmt(check.get("threshold")),
            )
        console.print(Padding(table, (0, 0, 0, 2), expand=False))
        if target.get("blind"):
            since, why = _time(target.get("blind_since") or "?"), target.get("blind_reason")
            console.print(Text(f"{target['name']} is blind since {since}: {why}"))
        for line in _people_lines(target):  # paused, silenced, waiting for approval
            console.print(Text(line))


def _time(iso: str) -> str:
    """An ISO 8601 time from the API as status shows times: 2026-11-25 09:02:20 UTC."""
    try:
        moment = datetime.fromisoformat(iso)
    except ValueError:
        return iso
    if moment.tzinfo is not None:
        moment = moment.astimezone(UTC)
    return f"{moment:%Y-%m-%d %H:%M:%S} UTC"


# --- GitOps (issue 13): resolving an incident restores the Argo CD / Flux sync paused for it --
@app.command()
def resolve(
    incident: Annotated[str, typer.Argument(help="The incident id (see GET /api/v1/incidents).")],
    url: Annotated[
        str | None,
        typer.Option(help="The daemon's address (default: daemon.http of --config)."),
    ] = None,
    config: Annotated[Path, typer.Option(help="The rules file.")] = Path("rules.yaml"),
    token: Annotated[
        str | None,
        typer.Option(
            envvar="MLWATCHDOG_TOKEN",
            help="A bearer token of daemon.auth with the operate role (or $MLWATCHDOG_TOKEN).",
            show_default=False,
        ),
    ] = None,
    output: FormatOption = OutputFormat.TABLE,
) -> None:
    """Resolve an incident: restore the Argo CD / Flux sync paused for its rollback
    (POST /api/v1/incidents/INCIDENT/resolve). Safe to repeat."""
    if url is None:
        http = _load_or_exit(config).daemon.http
        host = "127.0.0.1" if http.host in ("0.0.0.0", "::") else http.host
        url = f"http://{host}:{http.port}"
    endpoint = f"{url.rstrip('/')}/api/v1/incidents/{quote(incident, safe='')}/resolve"
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    try:
        response = httpx.post(endpoint, timeout=60, headers=headers)
    except httpx.HTTPError as exc:
        typer.echo(f"error: cannot reach {endpoint}: {exc}", err=True)
        raise typer.Exit(1) from None
    if response.status_code in (401, 403):
        what = "needs credentials" if response.status_code == 401 else "refused this token"
        typer.echo(
            f"error: {url} {what}: give a token of daemon.auth with the operate role in "
            "$MLWATCHDOG_TOKEN (or --token)",
            err=True,
        )
        raise typer.Exit(1)
    if response.is_error:
        try:
            detail = response.json().get("detail")
        except ValueError:
            detail = response.text[:300]
        typer.echo(f"error: {endpoint} answered {response.status_code}: {detail}", err=True)
        raise typer.Exit(1)
    answer = response.json()
    if output is OutputFormat.JSON:
        _print_json(answer)
        return
    for result in answer["results"]:
        print(f"{result['target']}: {result['result']}: {result['detail']}")
    print(answer["message"])


# --- end GitOps ---------------------------------------------------------------------------------


@app.command()
def demo(
    config: Annotated[Path, typer.Option(help="The rules file.")] = Path("rules.yaml"),
    workdir: Annotated[Path, typer.Option(help="The demo's own folder (emptied).")] = Path(".demo"),
    drift_after: Annotated[float, typer.Option(help="Seconds until samples drift.")] = 60.0,
    port: Annotated[int | None, typer.Option(help="HTTP port (default: daemon.http).")] = None,
    log_format: LogFormatOption = None,
) -> None:
    """Run the daemon on live demo samples that drift after a minute (what `make run` does)."""
    rules = _load_or_exit(config)
    log = configure_logging(rules.daemon.log_level, log_format=log_format)
    live, state = fresh_workdir(workdir)
    source = rules.targets[0].samples.source
    rules = rules.model_copy(
        update={
            "sources": {**rules.sources, source: rules.sources[source].model_copy(
                update={"url": SecretUrl(str(live)), "partitioning": PARTITIONING}
            )},
            "daemon": rules.daemon.model_copy(update={"state_dir": str(state)}),
        }
    )  # fmt: skip
    backfill(live, rules.targets[0].samples.window.total_seconds() / 60 * 1.5)
    writer = LiveWriter(live, log, drift_after=drift_after)
    writer.start()
    log.info(
        "demo: writing live samples; they drift after "
        f"{drift_after:g}s. Watch the log, or curl localhost:{port or rules.daemon.http.port}"
        "/metrics. Ctrl-C stops.",
        live=str(live),
    )
    try:
        serve(rules, log, port=port)
    except StartupError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(EXIT_STARTUP) from None
    finally:
        writer.stop()


def _duration(text: str | None) -> str | None:
    """A duration option checked as rules.yaml's are (1h30m, 90s, 7d); sent or parsed later."""
    if text is not None:
        try:
            parse_duration(text)
        except ValueError as exc:
            raise typer.BadParameter(str(exc)) from None
    return text


def _utc(text: str) -> datetime:
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise typer.BadParameter(
            f"{text!r} is not an ISO 8601 time, e.g. 2026-11-25T06:00Z"
        ) from None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


@app.command()
def replay(
    config: Annotated[Path, typer.Option(help="The rules file.")] = Path("rules.yaml"),
    start: Annotated[str, typer.Option("--from", help="Start, ISO 8601 (UTC if no zone).")] = "",
    end: Annotated[str, typer.Option("--to", help="End, ISO 8601 (inclusive).")] = "",
    step: Annotated[
        str, typer.Option(help="Virtual clock step, e.g. 30s, 1m.", callback=_duration)
    ] = "1m",
    target: Annotated[
        list[str] | None, typer.Option(help="Replay only this target (repeatable).")
    ] = None,
    out: Annotated[Path, typer.Option(help="Timeline file (.parquet or .csv).")] = Path(
        "timeline.parquet"
    ),
    executor: Annotated[
        str, typer.Option(help="Where windows are measured: serial, or dask (parallel tasks).")
    ] = "serial",
    scheduler: Annotated[
        str | None,
        typer.Option(help="Dask scheduler address (tcp://host:8786); default: a LocalCluster."),
    ] = None,
    bundle: Annotated[
        str | None,
        typer.Option(
            help="Replay an incident bundle (or every bundle in a folder) instead of a range."
        ),
    ] = None,
    set_: Annotated[
        list[str] | None,
        typer.Option(
            "--set",
            help="What if: change a target setting, e.g. for=10m, "
            "checks.feature_drift.threshold=0.2 (repeatable).",
        ),
    ] = None,
    output: FormatOption = OutputFormat.TABLE,
) -> None:
    """Re-run the decisions over historical windows with a virtual clock (or from incident
    bundles); write the timeline."""
    try:
        changes = parse_changes(set_ or [])
    except BundleError as exc:
        raise typer.BadParameter(str(exc)) from None
    if bundle is not None:
        raise typer.Exit(_replay_bundles(bundle, changes, output))
    if not start or not end:
        raise typer.BadParameter("give both --from and --to (or --bundle)")
    rules = _load_or_exit(config)
    if changes:
        try:
            rules = rules.model_copy(update={"targets": [
                changed_target(t, changes) if not target or t.name in target else t
                for t in rules.targets
            ]})  # fmt: skip
        except BundleError as exc:
            typer.echo(f"error: {exc}", err=True)
            raise typer.Exit(1) from None
    t0, t1 = _utc(start), _utc(end)
    step_length = parse_duration(step)  # checked by _duration
    try:
        times = step_times(t0, t1, step_length)
        with Progress(console=Console(stderr=True), transient=False) as bar:
            task = bar.add_task("replaying", total=len(times))

            def advance(items: Iterable[datetime]) -> Iterator[datetime]:
                for item in items:
                    yield item
                    bar.advance(task)

            plans: list[object] = []
            timeline = run_replay(
                rules,
                t0,
                t1,
                step_length,
                target,
                advance,
                executor=executor,
                scheduler=scheduler,
                on_plan=plans.append,
            )
    except (ValueError, MlwatchdogError) as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(1) from None
    if out.suffix == ".csv":
        timeline.to_csv(out, index=False)
    else:
        timeline.to_parquet(out, index=False)
    decided = timeline[timeline["decision"] != ""]
    # On a period known to be quiet, these are false alarms: the measured rate.
    rates = alarm_rates(timeline, rules)
    if output is OutputFormat.JSON:
        _print_json({
            "steps": len(times), "rows": len(timeline), "out": str(out),
            "plans": [str(plan) for plan in plans],
            "decisions": [
                {"time": row.time, "target": row.target, "decision": row.decision,
                 "incident": row.incident}
                for row in decided.itertuples()
            ],
            "drift_alarms": [
                {"target": r.target, "alarms": r.alarms, "seconds": r.span.total_seconds(),
                 "stated_every_seconds": r.stated.total_seconds() if r.stated else None}
                for r in rates
            ],
        })  # fmt: skip
        return
    typer.echo(f"{len(times)} step(s), {len(timeline)} row(s) written to {out}")
    for plan in plans:  # which executor ran, and its tasks
        typer.echo(str(plan))
    for row in decided.itertuples():
        typer.echo(f"  {row.time:%Y-%m-%d %H:%M:%S} {row.target}: {row.decision} ({row.incident})")
    if decided.empty:
        typer.echo("  no decisions")
    for rate in rates:
        typer.echo(f"  {rate}")
    if any(parse_duration(step) != t.interval for t in rules.targets if t.false_alarms):
        typer.echo("  (the replay's --step is not the targets' interval: rates differ from live)")


def _replay_bundles(path: str, changes: dict[str, object], output: OutputFormat) -> int:
    """Replay each bundle at `path`; the exit status: 1 if one did not replay as recorded."""
    found = [path] if _is_bundle(path) else list_bundles(path)
    if not found:
        typer.echo(f"error: no incident bundle at {path}", err=True)
        return 1
    differs = 0
    replayed_all: list[dict[str, object]] = []  # --format json
    for each in found:
        try:
            loaded = load_bundle(each)
            replayed = loaded.what_if(**changes) if changes else loaded.replay()
        except BundleError as exc:
            typer.echo(f"error: {exc}", err=True)
            return 1
        recorded = ", ".join(str(d.kind) for d in loaded.recorded.evaluation.decisions) or "none"
        now = ", ".join(str(d.kind) for d in replayed.evaluation.decisions) or "none"
        phase = f"{loaded.recorded.state_after.phase} -> {replayed.state_after.phase}"
        differences = replayed.differences()
        if changes:
            verdict = f"what if {changes}: decisions {recorded} -> {now}, state {phase}"
        elif differences:
            verdict = f"DIFFERENT from the recording: {', '.join(differences)}"
            differs += 1
        else:
            verdict = f"same as recorded (decisions: {recorded}; state {phase})"
        if output is OutputFormat.JSON:
            replayed_all.append(
                {
                    "bundle": each,
                    "changes": changes,
                    "differences": differences,
                    "decisions": {
                        "recorded": [str(d.kind) for d in loaded.recorded.evaluation.decisions],
                        "replayed": [str(d.kind) for d in replayed.evaluation.decisions],
                    },
                    "state": {
                        "recorded": loaded.recorded.state_after.phase,
                        "replayed": replayed.state_after.phase,
                    },
                }
            )
        else:
            typer.echo(f"{Path(each).name}: {verdict}")
    if output is OutputFormat.JSON:
        _print_json(replayed_all)
    return 1 if differs else 0


def _is_bundle(path: str) -> bool:
    try:
        load_bundle(path)
    except BundleError:
        return False
    return True


# --- A person in the loop (issue 13): pause, resume, silence, unsilence, approve, reject ---------

UrlOption = Annotated[
    str | None, typer.Option(help="The daemon's address (default: daemon.http of --config).")
]
ConfigOption = Annotated[Path, typer.Option(help="The rules file.")]
OperateToken = Annotated[
    str | None,
    typer.Option(
        envvar="MLWATCHDOG_TOKEN",
        help="A bearer token of daemon.auth with the operate role (or $MLWATCHDOG_TOKEN).",
        show_default=False,
    ),
]
ReasonOption = Annotated[str, typer.Option("--reason", help="Why (audited).")]


def _operate(
    url: str | None,
    config: Path,
    token: str | None,
    path: str,
    body: dict[str, object],
    output: OutputFormat = OutputFormat.TABLE,
) -> None:
    """POST a person's command to the daemon and print what it left; exit 1 on a refusal."""
    from urllib.parse import quote

    if url is None:
        http = _load_or_exit(config).daemon.http
        host = "127.0.0.1" if http.host in ("0.0.0.0", "::") else http.host
        url = f"http://{host}:{http.port}"
    kind, name, verb = path.split("/")
    endpoint = f"{url.rstrip('/')}/api/v1/{kind}/{quote(name, safe='')}/{verb}"
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    try:
        response = httpx.post(endpoint, json=body, timeout=60, headers=headers)
    except httpx.HTTPError as exc:
        typer.echo(f"error: cannot reach {endpoint}: {exc}", err=True)
        raise typer.Exit(1) from None
    if response.status_code in (401, 403):
        what = "needs credentials" if response.status_code == 401 else "refused this token"
        typer.echo(
            f"error: {url} {what}: give a token of daemon.auth with the operate role in "
            "$MLWATCHDOG_TOKEN (or --token)",
            err=True,
        )
        raise typer.Exit(1)
    if response.is_error:
        try:
            detail = response.json().get("detail")
        except ValueError:
            detail = response.text[:300]
        typer.echo(f"error: {verb} refused ({response.status_code}): {detail}", err=True)
        raise typer.Exit(1)
    answer = response.json()
    if output is OutputFormat.JSON:
        _print_json(answer)
        return
    print(answer["message"])
    for decision in answer.get("decisions") or []:
        print(f"decision: {decision['kind']} ({decision['incident']})")


def _people_lines(target: dict[str, Any]) -> list[str]:
    """`mlwatchdog status`'s lines on a target's pause, silence and approval."""
    lines, name = [], target["name"]
    for what, verb in (("paused", "paused"), ("silenced", "silenced")):
        hold = target.get(what)
        if hold:
            until = f"until {hold['until'][:19]}" if hold.get("until") else "until resumed"
            why = f": {hold['reason']}" if hold.get("reason") else ""
            lines.append(f"{name} is {verb} by {hold['by']} {until}{why}")
    approval = target.get("approval")
    if approval and approval.get("waiting"):
        lines.append(
            f"{name}: incident {approval['incident']} waits for approval until "
            f"{approval['deadline'][:19]}: mlwatchdog approve|reject {approval['incident']}"
        )
    elif approval and approval.get("answer"):
        lines.append(f"{name}: incident {approval['incident']} {approval['answer']} by "
                     f"{approval['by']}")  # fmt: skip
    return lines


@app.command()
def pause(
    target: Annotated[str, typer.Argument(help="The target to pause.")],
    for_: Annotated[
        str | None,
        typer.Option(
            "--for", help="How long, e.g. 2h (default: until resumed).", callback=_duration
        ),
    ] = None,
    reason: ReasonOption = "",
    url: UrlOption = None,
    config: ConfigOption = Path("rules.yaml"),
    token: OperateToken = None,
    output: FormatOption = OutputFormat.TABLE,
) -> None:
    """Pause a target: still evaluated and reported, but it takes no action (its rollbacks are
    held and audited) until `mlwatchdog resume` or the end of --for."""
    body: dict[str, object] = {"reason": reason}
    if for_ is not None:
        body["for"] = for_
    _operate(url, config, token, f"targets/{target}/pause", body, output)


@app.command()
def resume(
    target: Annotated[str, typer.Argument(help="The paused target.")],
    reason: ReasonOption = "",
    url: UrlOption = None,
    config: ConfigOption = Path("rules.yaml"),
    token: OperateToken = None,
    output: FormatOption = OutputFormat.TABLE,
) -> None:
    """End a target's pause: it is evaluated at once and acts again."""
    _operate(url, config, token, f"targets/{target}/resume", {"reason": reason}, output)


@app.command()
def silence(
    target: Annotated[str, typer.Argument(help="The target to silence.")],
    for_: Annotated[
        str,
        typer.Option(
            "--for", help="How long, e.g. 1h30m (a silence always ends).", callback=_duration
        ),
    ],
    reason: ReasonOption = "",
    url: UrlOption = None,
    config: ConfigOption = Path("rules.yaml"),
    token: OperateToken = None,
    output: FormatOption = OutputFormat.TABLE,
) -> None:
    """Silence a target for a while: no action and no escalation; it ends by itself."""
    _operate(
        url, config, token, f"targets/{target}/silence", {"for": for_, "reason": reason}, output
    )


@app.command()
def unsilence(
    target: Annotated[str, typer.Argument(help="The silenced target.")],
    reason: ReasonOption = "",
    url: UrlOption = None,
    config: ConfigOption = Path("rules.yaml"),
    token: OperateToken = None,
    output: FormatOption = OutputFormat.TABLE,
) -> None:
    """End a target's silence before its time."""
    _operate(url, config, token, f"targets/{target}/unsilence", {"reason": reason}, output)


@app.command()
def approve(
    incident: Annotated[str, typer.Argument(help="The incident waiting for approval.")],
    reason: ReasonOption = "",
    url: UrlOption = None,
    config: ConfigOption = Path("rules.yaml"),
    token: OperateToken = None,
    output: FormatOption = OutputFormat.TABLE,
) -> None:
    """Approve the rollback an incident waits for (rollback.confirm): it is carried out now."""
    _operate(url, config, token, f"incidents/{incident}/approve", {"reason": reason}, output)


@app.command()
def reject(
    incident: Annotated[str, typer.Argument(help="The incident waiting for approval.")],
    reason: ReasonOption = "",
    url: UrlOption = None,
    config: ConfigOption = Path("rules.yaml"),
    token: OperateToken = None,
    output: FormatOption = OutputFormat.TABLE,
) -> None:
    """Reject the rollback an incident waits for: no rollback, the incident is escalated."""
    _operate(url, config, token, f"incidents/{incident}/reject", {"reason": reason}, output)


# --- end of a person in the loop ----------------------------------------------------------------


# --- Reports (issue 15) -------------------------------------------------------------------------


@app.command()
def report(
    source: Annotated[
        str,
        typer.Argument(
            help="An incident bundle (folder or URL), or a replay timeline "
            "(.parquet or .csv from `mlwatchdog replay --out`)."
        ),
    ],
    out: Annotated[Path, typer.Option(help="The HTML page to write.")] = Path("report.html"),
    config: Annotated[
        Path, typer.Option(help="For a timeline: the rules file it was replayed with.")
    ] = Path("rules.yaml"),
    target: Annotated[
        str | None, typer.Option(help="For a timeline of several targets: which one.")
    ] = None,
) -> None:
    """Build the investigation report's page offline, as the daemon writes it: from a bundle
    (plots per column, timeline from the bundles beside it) or a replay timeline."""
    from mlwatchdog.report import build

    try:
        if source.endswith((".parquet", ".csv")):
            page = build.from_timeline(source, _load_or_exit(config), target)
        else:
            page = build.from_bundle(source)
    except (MlwatchdogError, OSError) as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(1) from None
    out.write_text(page, encoding="utf-8")
    typer.echo(f"wrote {out}")


# --- end of reports -----------------------------------------------------------------------------


def main() -> None:
    app()
