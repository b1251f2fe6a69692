"""The rules.yaml schema: sources, targets, checks, timing and rollback, validated by pydantic.

Every model forbids unknown keys, so a typo is an error, not a silently ignored setting. The loader
(`rules.loader`) adds file and line numbers to the errors; cross-references (a check naming a source
or a column that does not exist) are checked in `rules.references`.
"""

from __future__ import annotations

import ipaddress
import os
import re
from datetime import datetime, timedelta
from fractions import Fraction
from typing import Annotated, Any, Literal, get_args

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PlainSerializer,
    ValidationInfo,
    field_validator,
    model_validator,
)

from mlwatchdog.detectors import REGISTRY, Correction, DriftTest, EffectMeasure
from mlwatchdog.rules.secret import Secret, SecretUrl, mask_options

# Go's time.ParseDuration and Prometheus' model.ParseDuration spellings together: one or more
# <number><unit> parts, largest unit first ("1h30m", "1d2h", "90s", "500ms", "1.5h").
_DURATION_UNITS = {
    "y": Fraction(365 * 86400),  # Prometheus: 365 days
    "w": Fraction(604800),
    "d": Fraction(86400),
    "h": Fraction(3600),
    "m": Fraction(60),
    "s": Fraction(1),
    "ms": Fraction(1, 1000),
    "us": Fraction(1, 10**6),
    "\u00b5s": Fraction(1, 10**6),  # Go accepts both micro signs
    "\u03bcs": Fraction(1, 10**6),
    "ns": Fraction(1, 10**9),
}
_DURATION_PART = re.compile(r"\s*(\d+(?:\.\d*)?|\.\d+)\s*(ms|us|\u00b5s|\u03bcs|ns|[ywdhms])")
_UNIT_SECONDS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
_DURATION_HINT = "write e.g. '30s', '5m', '1h30m' or '7d'"


def parse_duration(value: Any) -> timedelta:
    """A duration as Go and Prometheus spell it ('30s', '5m', '1h30m', '1.5h', '1d2h', '500ms'),
    or a number of seconds, as a timedelta (to the microsecond)."""
    if isinstance(value, timedelta):
        return value
    if isinstance(value, bool):
        raise ValueError(f"{value!r} is not a duration; {_DURATION_HINT}")
    if isinstance(value, int | float):
        if not value >= 0:  # NaN too
            raise ValueError(f"{value!r} is not a duration: a number of seconds must be >= 0")
        try:
            return timedelta(seconds=float(value))
        except OverflowError:
            raise ValueError(f"{value!r} is too long a duration") from None
    text = str(value).strip()
    if text.startswith("-"):
        raise ValueError(f"a duration cannot be negative (got {value!r})")
    if text == "0":  # as Go: zero needs no unit
        return timedelta(0)
    seconds, position, units = Fraction(0), 0, list(_DURATION_UNITS)
    last = -1  # index of the previous part's unit: each unit once, largest first
    while position < len(text):
        match = _DURATION_PART.match(text, position)
        if match is None or (match.end() < len(text) and text[match.end()].isalpha()):
            raise ValueError(f"{value!r} is not a duration; {_DURATION_HINT}")
        unit = units.index(match.group(2))
        if unit <= last:
            raise ValueError(
                f"{value!r} is not a duration: its units must go from largest to smallest, "
                f"each once; {_DURATION_HINT}"
            )
        last, position = unit, match.end()
        seconds += Fraction(match.group(1)) * _DURATION_UNITS[match.group(2)]
    if last < 0:
        raise ValueError(f"{value!r} is not a duration; {_DURATION_HINT}")
    try:
        return timedelta(microseconds=round(seconds * 10**6))
    except OverflowError:
        raise ValueError(f"{value!r} is too long a duration") from None


def format_duration(value: timedelta) -> str:
    """The shortest rules.yaml spelling of a duration (inverse of parse_duration)."""
    seconds = value.total_seconds()
    for unit in ("w", "d", "h", "m", "s"):
        size = _UNIT_SECONDS[unit]
        if seconds >= size and seconds % size == 0:
            return f"{int(seconds // size)}{unit}"
    return f"{seconds:.6f}".rstrip("0").rstrip(".") + "s"  # no exponent: parse_duration reads it


# As JSON, a duration is written as rules.yaml spells it ('5m'), so a dumped config loads again.
Duration = Annotated[
    timedelta,
    BeforeValidator(parse_duration),
    PlainSerializer(format_duration, return_type=str, when_used="json"),
]
Name = Annotated[str, Field(pattern=r"^[A-Za-z][A-Za-z0-9_.-]*$", max_length=63)]
# Mappings that may hold credentials (fsspec storage_options, HTTP headers): as JSON, the values
# of credential-like keys (key, secret, token, password, Authorization, ...) are `***`.
SecretOptions = Annotated[
    dict[str, Any], PlainSerializer(mask_options, return_type=dict[str, Any], when_used="json")
]


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


# ---------------------------------------------------------------------------------------- sources


class FilesSource(Strict):
    """Samples in files: a local path, a glob, or an fsspec URL (s3://, gs://, ...)."""

    type: Literal["files"]
    url: SecretUrl = Field(description="a path, a glob, or an fsspec URL (credentials masked)")
    format: Literal["parquet", "csv", "jsonl"] | None = Field(
        None, description="default: from each file's extension"
    )
    timestamp_column: str | None = Field(
        "timestamp", description="rows are windowed on it; null reads every row (a fixed file)"
    )
    revision_column: str | None = Field(
        None, description="the serving revision of each row (canary/stable windows, issue 14)"
    )
    partitioning: str | None = Field(
        None,
        description="strftime template of the sub-directories under url, e.g. "
        "'dt=%Y-%m-%d/hour=%H': a window lists only the partitions it overlaps",
    )
    late_files: Duration = Field(
        timedelta(minutes=5),
        description="a file may be filed in a partition up to this long after its first row "
        "(loggers file a batch when they write it): a window also lists the partitions that "
        "begin that long after it ends",
    )
    storage_options: SecretOptions = Field(default_factory=dict)

    @field_validator("partitioning")
    @classmethod
    def _has_date_fields(cls, value: str | None) -> str | None:
        if value is not None and not re.search(r"%[YmdHM]", value):
            raise ValueError("partitioning needs strftime fields such as %Y, %m, %d or %H")
        return value


class SqlSource(Strict):
    """Samples from a SQL database (SQLAlchemy URL): a table, or a query with :start and :end."""

    type: Literal["sql"]
    url: SecretUrl = Field(
        description="e.g. postgresql+psycopg://user:${PGPASSWORD}@host:5432/db (password masked)"
    )
    table: str | None = Field(None, description="schema.table or table; or give `query`")
    query: str | None = Field(
        None, description="SELECT ... WHERE ts >= :start AND ts < :end (bound, never formatted)"
    )
    timestamp_column: str | None = Field(
        "timestamp", description="rows are windowed on it; null reads every row (a fixed table)"
    )
    revision_column: str | None = Field(
        None, description="the serving revision of each row (canary/stable windows, issue 14)"
    )
    timeout: Duration = Field(
        timedelta(seconds=30), description="per query, enforced by the server"
    )
    chunk_rows: int = Field(50_000, ge=1, description="rows fetched per round trip")
    max_rows: int = Field(
        200_000, ge=1, description="a larger window is sampled down to this many rows"
    )

    @model_validator(mode="after")
    def _table_or_query(self) -> SqlSource:
        if (self.table is None) == (self.query is None):
            raise ValueError("give exactly one of `table` or `query`")
        return self


class KServeSource(Strict):
    """Samples that KServe's payload logger sent to this daemon's sink (see `daemon.sink`)."""

    type: Literal["kserve"]
    inference_service: str | None = Field(None, description="only this InferenceService's events")
    namespace: str | None = None
    component: str | None = Field(None, description="predictor, transformer or explainer")
    input_names: list[str] | None = Field(
        None, description="column names of positional inputs (default: the declared features)"
    )
    output_names: list[str] | None = Field(
        None, description="column names of positional outputs (default: the declared predictions)"
    )
    revision_column: Literal["endpoint"] | None = Field(
        None,
        description="split a canary's rows by the logger's `endpoint` attribute (the predictor "
        "pod's `endpoint` label; see README: per-revision windows)",
    )


class PrometheusSource(Strict):
    """Metric values from a Prometheus-compatible HTTP API."""

    type: Literal["prometheus"]
    url: SecretUrl
    timeout: Duration = timedelta(seconds=10)
    bearer_token: Secret | None = None
    username: str | None = None
    password: Secret | None = None
    verify_tls: bool = True
    ca_file: str | None = Field(None, description="CA bundle for a private TLS certificate")
    headers: SecretOptions = Field(
        default_factory=dict, description="extra headers; Authorization and the like are masked"
    )


Source = Annotated[
    FilesSource | SqlSource | KServeSource | PrometheusSource, Field(discriminator="type")
]
SampleSource = FilesSource | SqlSource | KServeSource  # what samples and references read


# ---------------------------------------------------------------------------------------- targets


WorkloadKind = Literal["argo-rollout", "kserve", "deployment", "flagger-canary", "none"]
WORKLOAD_KINDS: tuple[str, ...] = get_args(WorkloadKind)  # each but none has a driver


class Workload(Strict):
    """What a rollback acts on: an Argo Rollout, a KServe InferenceService, a Deployment, a
    Flagger Canary (Flagger reverts it, asked through its webhook), or none (alert only)."""

    kind: WorkloadKind = "none"
    name: str | None = None
    namespace: str = "default"

    @model_validator(mode="after")
    def _named(self) -> Workload:
        if self.kind != "none" and not self.name:
            raise ValueError(f"workload kind {self.kind} needs a `name:`")
        return self


Scalar = str | int | float | bool


class Revisions(Strict):
    """Which revision values are the canary and the stable one, stated in config (offline,
    replay, tests); otherwise read from the workload while it runs a canary."""

    canary: str
    stable: str


class Samples(Strict):
    """The live window evaluated each time: [now - window, now) of a files source."""

    source: str
    window: Duration = timedelta(minutes=15)
    min_samples: int = Field(100, ge=1)
    filters: dict[str, Scalar | list[Scalar]] = Field(
        default_factory=dict, description="column: value (or list of values) rows must match"
    )
    revisions: Revisions | None = Field(
        None, description="canary and stable revision values (default: read from the workload)"
    )


class ReferenceSpec(Strict):
    """The reference: a whole files source, or a fixed past window [start, end) of one."""

    source: str
    start: datetime | None = None
    end: datetime | None = None

    @model_validator(mode="after")
    def _window(self) -> ReferenceSpec:
        if (self.start is None) != (self.end is None):
            raise ValueError("give both start and end for a reference window, or neither")
        if self.start and self.end:
            if self.start.tzinfo is None or self.end.tzinfo is None:
                raise ValueError("reference start and end need a timezone, e.g. 2026-11-01T00:00Z")
            if self.start >= self.end:
                raise ValueError("reference start must be before end")
        return self


ColumnKindName = Literal["numeric", "categorical"]


class Columns(Strict):
    """The tested columns and their kinds, as features and predictions."""

    features: dict[str, ColumnKindName] = Field(default_factory=dict)
    predictions: dict[str, ColumnKindName] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _disjoint(self) -> Columns:
        both = sorted(set(self.features) & set(self.predictions))
        if both:
            raise ValueError(f"column(s) {both} are both features and predictions; keep one")
        if not self.features and not self.predictions:
            raise ValueError("declare at least one feature or prediction column")
        return self

    @property
    def all(self) -> dict[str, ColumnKindName]:
        return {**self.features, **self.predictions}


ColumnGroup = Literal["features", "predictions", "all"]


class EffectFloor(Strict):
    """A column drifts only if its effect is at least `min` as well as significant."""

    measure: EffectMeasure = Field(
        description="ks_d or wasserstein (in reference sds) for numeric columns, "
        "jensen_shannon for categorical ones"
    )
    min: float = Field(ge=0)


class DriftCheck(Strict):
    """A drift test over columns; it breaches when at least `drift_share` of them drifted."""

    name: Name
    type: Literal["drift"]
    test: DriftTest
    columns: ColumnGroup | list[str] = "features"
    threshold: float | None = Field(
        None, gt=0, description="alpha for ks/chi2, PSI value for psi (default: the test's)"
    )
    correction: Correction = Correction.NONE
    drift_share: float = Field(0.5, gt=0, le=1)
    bins: int = Field(10, ge=2)
    binning: Literal["quantile", "evidently"] = "quantile"
    effect: EffectFloor | None = Field(None, description="an effect floor, e.g. wasserstein 0.1")
    recent_rows: int | None = Field(
        None,
        ge=0,
        description="also test the most recent m, 2m, 4m... rows (Bonferroni across them); "
        "default max(min_samples, 200); 0: the whole window only",
    )
    for_: Duration | None = Field(None, alias="for", description="default: the target's `for`")


class MetricCheck(Strict):
    """A PromQL query compared with a limit: breaches when the value is above or below it."""

    name: Name
    type: Literal["metric"]
    source: str
    query: str
    above: float | None = None
    below: float | None = None
    labels: dict[str, str] = Field(
        default_factory=dict, description="keep only series with these labels"
    )
    for_: Duration | None = Field(None, alias="for", description="default: the target's `for`")

    @model_validator(mode="after")
    def _one_limit(self) -> MetricCheck:
        if (self.above is None) == (self.below is None):
            raise ValueError("give exactly one of `above` or `below`")
        return self


PerformanceMetric = Literal["accuracy", "precision", "recall", "f1", "roc_auc", "rmse", "mae"]


class PerformanceCheck(Strict):
    """A model performance metric from the delayed labels joined to the predictions (or
    estimated without labels by CBPE), compared with a limit through its confidence interval."""

    name: Name
    type: Literal["performance"]
    metric: PerformanceMetric
    above: float | None = None
    below: float | None = None
    prediction: str | None = Field(
        None,
        description="the predicted class (classification) or value (rmse, mae) column; "
        "default for classification: score >= cutoff is the positive class",
    )
    score: str | None = Field(
        None, description="the predicted probability of the positive class (roc_auc, cbpe)"
    )
    positive: Scalar = Field(1, description="the positive class (precision, recall, f1, ...)")
    cutoff: float = Field(
        0.5, ge=0, le=1, description="without `prediction`: score >= cutoff is predicted positive"
    )
    estimate: Literal["cbpe"] | None = Field(
        None,
        description="cbpe: estimate the metric on the current window without labels, from the "
        "scores calibrated on the reference's labels",
    )
    min_samples: int = Field(100, ge=1, description="fewer labelled rows: insufficient data")
    confidence: float = Field(0.95, gt=0, lt=1, description="of the interval")
    breach_on: Literal["interval", "value"] = Field(
        "interval",
        description="interval: breach only when the whole interval is beyond the limit (no "
        "alarm on noise); value: when the point estimate is",
    )
    for_: Duration | None = Field(None, alias="for", description="default: the target's `for`")

    @model_validator(mode="after")
    def _consistent(self) -> PerformanceCheck:
        if (self.above is None) == (self.below is None):
            raise ValueError("give exactly one of `above` or `below`")
        if self.metric == "roc_auc" and self.score is None:
            raise ValueError("roc_auc needs `score:`, the predicted probability column")
        if self.metric in ("rmse", "mae"):
            if self.prediction is None:
                raise ValueError(f"{self.metric} needs `prediction:`, the predicted value column")
            if self.estimate is not None:
                raise ValueError(f"cbpe estimates classification metrics, not {self.metric}")
        elif self.prediction is None and self.score is None:
            raise ValueError(f"{self.metric} needs `prediction:` (the class) or `score:`")
        if self.estimate == "cbpe":
            if self.score is None:
                raise ValueError("estimate: cbpe needs `score:`, the positive class probability")
            if self.metric == "roc_auc":
                raise ValueError("estimate: cbpe gives accuracy, precision, recall or f1")
        return self


Check = Annotated[DriftCheck | MetricCheck | PerformanceCheck, Field(discriminator="type")]


class LabelJoin(Strict):
    """How a label finds its prediction: the same request id, or the same key nearest in time."""

    on: str | None = Field(None, description="a request id column in both sources")
    on_time: str | None = Field(None, description="a timestamp column in both sources")
    key: str | None = Field(None, description="with on_time: a column both must match")
    tolerance: Duration = Field(
        timedelta(minutes=5), description="with on_time: the label is at most this far off"
    )

    @model_validator(mode="before")
    @classmethod
    def _yaml_on(cls, data: Any) -> Any:
        # YAML 1.1 reads a bare `on:` key as the boolean true; it means the key `on` here.
        if isinstance(data, dict) and True in data and "on" not in data:
            data = {("on" if key is True else key): value for key, value in data.items()}
        return data

    @model_validator(mode="after")
    def _one_way(self) -> LabelJoin:
        if (self.on is None) == (self.on_time is None):
            raise ValueError("give exactly one of `on` (request id) or `on_time` (timestamp)")
        if self.on is not None and self.key is not None:
            raise ValueError("`key` goes with `on_time`; `on` joins on the request id alone")
        return self


class Labels(Strict):
    """Delayed ground truth: a sample source's label column joined to the predictions."""

    source: str
    column: str = Field(description="the realised label (or value, for rmse and mae)")
    join: LabelJoin
    delay: Duration = Field(
        timedelta(0),
        description="labels arrive up to this late: performance is judged on the predictions "
        "of [now - window - delay, now - delay)",
    )


class Fallback(Strict):
    """What 'rollback to fallback' installs: a pod template change (Argo) or a model (KServe)."""

    image: str | None = None
    env: dict[str, Secret] = Field(
        default_factory=dict, description="values are secrets: shown as *** everywhere"
    )
    args: list[str] | None = None
    storage_uri: str | None = None
    runtime: str | None = None
    labels: dict[str, str | None] = Field(
        default_factory=dict,
        description="KServe: InferenceService labels set with the fallback (null removes one), "
        "e.g. the model version; the policy's approval key is removed unless given here",
    )
    annotations: dict[str, str | None] = Field(
        default_factory=dict,
        description="KServe: InferenceService annotations set with the fallback (null removes one)",
    )


class Approval(Strict):
    """A label or annotation the candidate must carry, as a model registry or an approval
    workflow sets it (on the Argo ReplicaSet or its pod template, on the KServe revision)."""

    label: str | None = None
    annotation: str | None = None
    value: str = "true"

    @model_validator(mode="after")
    def _one_key(self) -> Approval:
        if (self.label is None) == (self.annotation is None):
            raise ValueError("give exactly one of `label` or `annotation`")
        return self


class Policy(Strict):
    """What a rollback may go to; anything else is refused (and recorded) instead of sent.

    Patterns are shell-style globs (`registry.example.com/fraud:1.*`). An empty policy allows all.
    """

    allowed_images: list[str] = Field(
        default_factory=list, description="every container image of the candidate must match one"
    )
    allowed_storage_uris: list[str] = Field(
        default_factory=list, description="the candidate model's storageUri must match one"
    )
    approval: Approval | None = None


class Confirm(Strict):
    """A person approves each rollback (POST /api/v1/incidents/{incident}/approve, or reject)
    before it is carried out; without an answer within `timeout`, `on_timeout` applies."""

    timeout: Duration = Field(timedelta(minutes=15), description="how long to wait for an answer")
    on_timeout: Literal["act", "escalate"] = Field(
        "escalate", description="no answer in time: roll back anyway (act) or escalate"
    )

    @field_validator("timeout")
    @classmethod
    def _positive_timeout(cls, value: timedelta) -> timedelta:
        if value <= timedelta(0):
            raise ValueError("confirm.timeout must be positive")
        return value


class GitOps(Strict):
    """The workload is managed by Argo CD or Flux, whose self-heal would put a patched object
    back to what Git says: how to roll back anyway (issue 13; `actions/gitops`).

    - `pause-sync`: switch the Argo CD Application's automated sync off (or `spec.suspend: true`
      on the Flux Kustomization / HelmRelease), recording what it was, then patch the workload;
      sync is restored when a person resolves the incident (`mlwatchdog resolve INCIDENT`).
    - `git`: patch nothing; commit the revert to the manifests repository on a branch named
      after the incident and open a pull request (GitHub) or merge request (GitLab).
    - `patch`: patch the workload as if unmanaged (self-heal is off, or the
      `app.kubernetes.io/instance` label is Helm's, not Argo CD's).
    """

    mode: Literal["pause-sync", "git", "patch"]
    argocd_namespace: str = Field(
        "argocd",
        description="where Argo CD Applications live (pause-sync), unless the tracking "
        "id names one (<namespace>_<app>)",
    )
    repo: SecretUrl | None = Field(None, description="git: the manifests repository (https URL)")
    branch: str = Field("main", description="git: the branch the pull request goes into")
    path: str | None = Field(None, description="git: the manifest file, relative to the repo")
    provider: Literal["github", "gitlab"] | None = None
    api_url: str | None = Field(
        None, description="git: default https://api.github.com or https://gitlab.com/api/v4"
    )
    project: str | None = Field(
        None,
        description="git: owner/repo (GitHub) or the project path or id (GitLab); "
        "default: the repo URL's path",
    )
    token: Secret | None = Field(None, description="git: pushes and opens the pull request")
    author: str = Field("mlwatchdog <mlwatchdog@users.noreply.local>", description="git author")

    @model_validator(mode="after")
    def _mode_keys(self) -> GitOps:
        git_keys = ("repo", "path", "provider", "token")
        if self.mode == "git":
            missing = [k for k in git_keys if getattr(self, k) is None]
            if missing:
                raise ValueError(
                    f"rollback.gitops.mode git needs {', '.join(missing)}: the manifests repo "
                    "(https URL), the manifest file's path in it, provider (github or gitlab) "
                    "and a token that may push and open pull requests"
                )
            if self.path is not None and (self.path.startswith("/") or ".." in self.path):
                raise ValueError("rollback.gitops.path is relative to the repository, no '..'")
        else:
            given = [k for k in (*git_keys, "api_url", "project") if getattr(self, k) is not None]
            if given:
                raise ValueError(
                    f"rollback.gitops.{given[0]} is only for mode git (mode is {self.mode})"
                )
        return self


class Rollback(Strict):
    """What to do when the trigger holds: revert to the prior version, a named revision, or a
    fallback."""

    enabled: bool = True
    to: Literal["prior", "fallback", "revision"] = "prior"
    revision: int | None = Field(
        None, ge=1, description="Argo `rollout.argoproj.io/revision` to go to, with to: revision"
    )
    fallback: Fallback | None = None
    policy: Policy = Field(default_factory=Policy)
    dry_run: bool = Field(True, description="log the exact patch instead of sending it")
    gitops: GitOps | None = Field(
        None, description="Argo CD / Flux manage the workload: pause-sync, git or patch"
    )
    confirm: Confirm | None = Field(
        None, description="wait for a person's approval before each rollback (None: act at once)"
    )

    @model_validator(mode="after")
    def _fallback_given(self) -> Rollback:
        if self.to == "fallback" and self.fallback is None:
            raise ValueError("rollback to fallback needs a `fallback:` (image or storage_uri)")
        if self.to == "revision" and self.revision is None:
            raise ValueError("rollback to revision needs a `revision:` (an Argo revision number)")
        return self


class Verify(Strict):
    """After acting: how long the checks have to recover before the incident is escalated."""

    window: Duration | None = Field(
        None,
        description="default: samples.window + resolve_after, so the last resolve_after of it "
        "judges windows of samples taken wholly after the rollback",
    )


class AlertMatch(Strict):
    """Which incoming alerts (Grafana or Alertmanager webhooks) investigate this target: every
    label given must match. Without it, an alert labelled `target` (or `mlwatchdog_target`) with
    the target's name does."""

    labels: dict[str, str] = Field(default_factory=dict, description="label: exact value")
    labels_re: dict[str, str] = Field(
        default_factory=dict, description="label: regular expression the whole value must match"
    )

    @field_validator("labels_re")
    @classmethod
    def _compiles(cls, value: dict[str, str]) -> dict[str, str]:
        for label, pattern in value.items():
            try:
                re.compile(pattern)
            except re.error as exc:
                raise ValueError(f"labels_re.{label}: {pattern!r} is not a regex: {exc}") from None
        return value


class FalseAlarms(Strict):
    """The false-alarm rate a target tolerates on data that has not drifted: at most one drift
    breach per `every` on average. Its ks/chi2 checks' alpha is then calibrated on the reference
    (bootstrap windows drawn from its rows) instead of set."""

    every: Duration = Field(description="e.g. 28d: the expected time between false alarms")
    bootstrap: int = Field(400, ge=100, le=100_000, description="replicates per calibration")


class Target(Strict):
    """One watched model: its samples, reference, checks, and what to do when they breach."""

    name: Name
    workload: Workload = Field(default_factory=Workload)
    interval: Duration = timedelta(minutes=1)
    samples: Samples
    reference: ReferenceSpec
    columns: Columns
    checks: list[Check] = Field(min_length=1)
    labels: Labels | None = Field(None, description="delayed labels, for performance checks")
    trigger: str = Field("any", description="any, all, or e.g. 'drift and (errors or latency)'")
    for_: Duration = Field(timedelta(minutes=5), alias="for")
    resolve_after: Duration = Field(
        timedelta(minutes=5), description="a firing check resolves after this long without breach"
    )
    cooldown: Duration = timedelta(minutes=30)
    no_data: Literal["hold", "reset"] = Field(
        "hold", description="on no data a check keeps its state (hold) or goes inactive (reset)"
    )
    rollback: Rollback = Field(default_factory=Rollback)
    verify: Verify = Field(default_factory=Verify)
    alerts: AlertMatch | None = None
    false_alarms: FalseAlarms | None = Field(
        None, description="a stated false-alarm rate; calibrates the drift checks' alpha"
    )

    @model_validator(mode="after")
    def _calibrated_alpha(self) -> Target:
        if self.false_alarms is None:
            return self
        if self.false_alarms.every <= self.interval:
            raise ValueError(
                f"false_alarms.every ({self.false_alarms.every}) must be longer than the "
                f"interval ({self.interval}): it is the expected time between false alarms"
            )
        for check in self.checks:
            if not isinstance(check, DriftCheck) or not REGISTRY[check.test].has_pvalue:
                continue
            if check.threshold is not None:
                raise ValueError(
                    f"check {check.name!r} sets threshold {check.threshold} but the target states "
                    "false_alarms, which calibrates it: remove one of the two"
                )
        return self

    @field_validator("interval")
    @classmethod
    def _positive_interval(cls, value: timedelta) -> timedelta:
        if value <= timedelta(0):
            raise ValueError("interval must be positive")
        return value

    @property
    def verify_window(self) -> timedelta:
        """How long after acting the checks have to recover (see `Verify.window`)."""
        return self.verify.window or self.samples.window + self.resolve_after

    def check(self, name: str) -> DriftCheck | MetricCheck | PerformanceCheck:
        return next(c for c in self.checks if c.name == name)


# ----------------------------------------------------------------------------------------- daemon


class Http(Strict):
    """The HTTP server: where it listens, and the limits every connection lives within."""

    host: str = "127.0.0.1"
    port: int = Field(8080, ge=0, le=65535)
    max_header_bytes: int = Field(
        65_536, ge=1024, le=1_048_576, description="request line and headers; more gets 431"
    )
    header_timeout: Duration = Field(
        timedelta(seconds=10), description="the request line and headers must arrive within this"
    )
    body_timeout: Duration = Field(
        timedelta(seconds=30), description="the whole body must arrive within this"
    )
    max_body_bytes: int = Field(
        1_048_576, ge=1024, description="API and webhook bodies (the sink: sink.max_event_bytes)"
    )
    max_connections: int = Field(
        512, ge=8, description="open connections at most; more are answered 503 and closed"
    )
    keep_alive: Duration = Field(
        timedelta(seconds=5), description="an idle kept-alive connection is closed after this"
    )

    @field_validator("header_timeout", "body_timeout", "keep_alive")
    @classmethod
    def _positive(cls, value: timedelta) -> timedelta:
        if value <= timedelta(0):
            raise ValueError("must be positive, e.g. 10s")
        return value


_MOVED_TO_AUTH = (
    "{keys} moved to daemon.auth, the one place for credentials: write e.g. daemon.auth.tokens: "
    "[{{name: grafana, token: '${{GRAFANA_WEBHOOK_TOKEN}}', roles: [{role}]}}]"
)


def _refuse_moved(data: Any, keys: tuple[str, ...], role: str) -> Any:
    if isinstance(data, dict):
        moved = [k for k in keys if k in data]
        if moved:
            raise ValueError(_MOVED_TO_AUTH.format(keys=", ".join(moved), role=role))
    return data


class Sink(Strict):
    """The KServe payload-logger sink: an endpoint of the daemon (POST /sink/kserve) that stores
    the request and response events it receives, for `type: kserve` sources to read."""

    path: str = Field(
        ".mlwatchdog/sink",
        description="where events are stored (partitioned): a folder, local or shared by every "
        "replica (a ReadWriteMany volume), or an fsspec URL (s3://, gs://, az://)",
    )
    storage_options: SecretOptions = Field(
        default_factory=dict,
        description="fsspec options for a path URL (credentials: ${ENV} values, never logged)",
    )
    commit_interval: Duration = Field(
        timedelta(0),
        description="at least this long between two commits of one writer, gathering the events "
        "that come meanwhile: fewer objects on an object store, but each event waits up to that "
        "long for its 200, so a sender with N requests in flight gets at most N / interval "
        "events per second",
    )
    max_event_bytes: int = Field(1_048_576, ge=1, description="larger events get a 413")
    retention: Duration = Field(timedelta(days=7), description="older partitions are deleted")
    pair_timeout: Duration = Field(
        timedelta(minutes=5),
        description="a request without its response (or the reverse) older than this is used alone",
    )
    max_clock_skew: Duration = Field(
        timedelta(minutes=5),
        description="an event whose ce-time is further ahead of the daemon's clock is refused",
    )
    max_event_age: Duration = Field(
        timedelta(hours=1),
        description="an event whose ce-time is older than this is refused (a wrong clock, or a "
        "sender that held it back)",
    )

    @model_validator(mode="before")
    @classmethod
    def _moved(cls, data: Any) -> Any:
        return _refuse_moved(data, ("bearer_token",), "sink")

    @model_validator(mode="after")
    def _retention_outlasts_writes(self) -> Sink:
        # Writers (every replica) still append to partitions as old as max_event_age, and the
        # retention of any replica deletes partitions that ended `retention` ago: an hour apart,
        # a partition is never deleted while a writer may still append to it.
        if self.retention < self.max_event_age + timedelta(hours=1):
            raise ValueError(
                f"retention ({format_duration(self.retention)}) must be at least max_event_age "
                f"({format_duration(self.max_event_age)}) plus 1h: a partition would be deleted "
                "while events for it are still taken; raise retention or lower max_event_age"
            )
        return self


class Grafana(Strict):
    """Where investigations are announced as Grafana annotations (POST /api/annotations)."""

    url: SecretUrl = Field(description="e.g. https://grafana.example.com")
    token: Secret | None = Field(None, description="a service account token: ${GRAFANA_TOKEN}")
    timeout: Duration = timedelta(seconds=5)
    tags: list[str] = Field(default_factory=lambda: ["mlwatchdog"])


class Alerts(Strict):
    """POST /api/v1/alerts: Grafana or Alertmanager webhooks that start an investigation (who
    may call it is set in daemon.auth)."""

    external_url: str | None = Field(
        None,
        description="base of report links, e.g. https://mlwatchdog.example.com (default: links "
        "relative to the daemon, never taken from the request's Host header)",
    )
    grafana: Grafana | None = None

    @model_validator(mode="before")
    @classmethod
    def _moved(cls, data: Any) -> Any:
        return _refuse_moved(data, ("bearer_token", "username", "password"), "alerts")


# What a credential may do: read (targets, incidents, reports, the audit trail, the API docs),
# alerts (POST /api/v1/alerts), operate (evaluate now, reload), sink (POST /sink/kserve).
Role = Literal["read", "alerts", "operate", "sink"]
ROLES: tuple[Role, ...] = ("read", "alerts", "operate", "sink")
MIN_TOKEN_LENGTH = 16


def _all_roles() -> list[Role]:
    return list(ROLES)


def redacted(info: ValidationInfo) -> bool:
    """Whether this validation reads a config recorded with its secrets as *** (a bundle's):
    then the rules about the secrets' values cannot apply."""
    return bool(info.context and info.context.get("redacted"))


def _long_enough(value: Secret | None, what: str, info: ValidationInfo) -> Secret | None:
    if redacted(info):
        return value
    if value is not None and len(value) < MIN_TOKEN_LENGTH:
        raise ValueError(
            f"{what} needs at least {MIN_TOKEN_LENGTH} characters (e.g. `openssl rand -hex 24`)"
        )
    return value


class TokenCredential(Strict):
    """A bearer token (`Authorization: Bearer <token>`), given inline (from ${ENV}) or as a
    file (a mounted Secret: re-read when it changes, so a rotated token needs no restart)."""

    name: Name = Field(description="who: shown in the log and the audit trail")
    token: Secret | None = None
    file: str | None = Field(None, description="a file holding the token (surrounding space cut)")
    roles: list[Role] = Field(default_factory=_all_roles, min_length=1)

    @model_validator(mode="after")
    def _one_source(self, info: ValidationInfo) -> TokenCredential:
        if (self.token is None) == (self.file is None):
            raise ValueError("give exactly one of `token` or `file`")
        _long_enough(self.token, "a token", info)
        return self


class BasicCredential(Strict):
    """HTTP Basic auth (Alertmanager's and Grafana's webhooks can send it)."""

    username: Name
    password: Secret
    roles: list[Role] = Field(default_factory=_all_roles, min_length=1)

    @field_validator("password")
    @classmethod
    def _strong(cls, value: Secret, info: ValidationInfo) -> Secret:
        _long_enough(value, "a password", info)
        return value


class ServiceAccountRule(Strict):
    """Callers in the cluster that prove who they are with their ServiceAccount token."""

    service_account: str = Field(
        pattern=r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?:(\*|[a-z0-9]([-.a-z0-9]*[a-z0-9])?)$",
        description="namespace:name, or namespace:* for every ServiceAccount of a namespace",
    )
    roles: list[Role] = Field(min_length=1)


class KubernetesAuth(Strict):
    """ServiceAccount tokens checked with a TokenReview against the Kubernetes API, so a Grafana
    or Alertmanager in the cluster needs no shared secret (RBAC: create tokenreviews)."""

    service_accounts: list[ServiceAccountRule] = Field(min_length=1)
    audiences: list[str] = Field(
        default_factory=list,
        description="audiences the token must be for (default: the API server's own)",
    )
    cache: Duration = Field(
        timedelta(seconds=60), description="a reviewed token is trusted this long"
    )


def _path_secret(value: Secret, what: str, info: ValidationInfo) -> Secret:
    """A secret that goes in a URL path: long enough, and only characters a path keeps as is."""
    if redacted(info):
        return value
    _long_enough(value, what, info)
    if not all(ch.isalnum() or ch in "-_." for ch in value.reveal()):
        raise ValueError(f"{what} may hold letters, digits, '-', '_' and '.' only")
    return value


class SinkPath(Strict):
    """KServe's payload logger cannot send headers: a secret in its URL instead,
    `.../sink/kserve/<secret>`, good for this one InferenceService's events only."""

    inference_service: str
    namespace: str
    secret: Secret

    @field_validator("secret")
    @classmethod
    def _strong(cls, value: Secret, info: ValidationInfo) -> Secret:
        return _path_secret(value, "a sink path secret", info)


class FlaggerPath(Strict):
    """Flagger's webhooks cannot send headers (fluxcd/flagger CanaryWebhook has no header
    field): a secret in the URL instead, `.../flagger/<hook>/<secret>`, good for this one
    Canary's calls only."""

    canary: str
    namespace: str
    secret: Secret

    @field_validator("secret")
    @classmethod
    def _strong(cls, value: Secret, info: ValidationInfo) -> Secret:
        return _path_secret(value, "a flagger path secret", info)


class Auth(Strict):
    """How callers prove who they are. Once any credential is set, every endpoint that acts or
    reveals needs one (checked before the body is read); /healthz, /readyz and /metrics stay
    open."""

    tokens: list[TokenCredential] = Field(default_factory=list)
    basic: list[BasicCredential] = Field(default_factory=list)
    kubernetes: KubernetesAuth | None = None
    sink_paths: list[SinkPath] = Field(default_factory=list)
    flagger_paths: list[FlaggerPath] = Field(default_factory=list)
    anonymous: bool = Field(
        False,
        description="serve without credentials on an address other hosts can reach (refused "
        "unless this is true)",
    )

    @property
    def enabled(self) -> bool:
        return bool(
            self.tokens or self.basic or self.kubernetes or self.sink_paths or self.flagger_paths
        )

    @model_validator(mode="after")
    def _unique(self, info: ValidationInfo) -> Auth:
        names = [t.name for t in self.tokens] + [b.username for b in self.basic]
        twice = sorted({n for n in names if names.count(n) > 1})
        if twice:
            raise ValueError(f"credential name(s) {twice} are used twice; names say who acted")
        secrets = [p.secret for p in self.sink_paths]
        if len(set(secrets)) != len(secrets) and not redacted(info):
            raise ValueError("two sink_paths share a secret; give each InferenceService its own")
        secrets += [p.secret for p in self.flagger_paths]
        if len(set(secrets)) != len(secrets) and not redacted(info):
            raise ValueError(
                "a flagger_paths secret is used twice (or also in sink_paths); give each Canary "
                "its own"
            )
        return self


class Reports(Strict):
    """Investigation reports: a folder each (mlwatchdog's page and Evidently's), newest kept."""

    path: str | None = Field(
        None, description="a folder; default: `reports` beside daemon.state_dir"
    )
    keep: int = Field(200, ge=1, description="older reports are deleted")
    max_rows: int = Field(
        20_000, ge=100, description="rows of each sample given to Evidently (sampled above)"
    )


class Bundles(Strict):
    """Incident bundles: on every state change and action, what replays the decision offline."""

    enabled: bool = True
    path: SecretUrl | None = Field(
        None,
        description="a folder, or an fsspec URL (s3://...); default: `bundles` beside "
        "daemon.state_dir",
    )
    storage_options: SecretOptions = Field(default_factory=dict)
    keep: int = Field(1000, ge=1, description="newest bundles kept")
    max_age: Duration = Field(timedelta(days=30), description="older bundles are deleted")
    max_reference_cells: int = Field(
        2_000_000,
        ge=0,
        description="a larger reference is recorded by fingerprint and source, not copied",
    )


class Kubernetes(Strict):
    """How the daemon reaches the Kubernetes API (for rollbacks, dry-run reads and the Lease)."""

    mode: Literal["auto", "in-cluster", "kubeconfig", "offline"] = Field(
        "auto",
        description="auto: in-cluster when running in a pod, else the kubeconfig if there is "
        "one, else offline; offline: nothing is read or sent, dry-run logs the planned requests",
    )
    kubeconfig: str | None = Field(None, description="default: $KUBECONFIG or ~/.kube/config")
    context: str | None = None
    timeout: Duration = Field(timedelta(seconds=10), description="per request")
    attempts: int = Field(
        4, ge=1, le=10, description="tries for a request that fails for a temporary reason"
    )
    server_dry_run: bool = Field(
        True,
        description="dry-run sends the exact requests with dryRun=All, so admission and RBAC "
        "answer too; false: dry-run only logs them (for admission webhooks that refuse dry-run)",
    )


class LeaderElection(Strict):
    """One actor among replicas: only the holder of this coordination.k8s.io Lease patches."""

    enabled: bool | None = Field(
        None, description="default: on when some target has dry_run: false and Kubernetes is used"
    )
    lease: str = "mlwatchdog"
    shards: int = Field(
        1,
        ge=1,
        le=64,
        description="targets split over this many shards (fnv-1a of the target name), each led "
        "through its own Lease `<lease>-<i>`: a replica evaluates and acts only for the targets "
        "of the shards it leads; 1: one Lease `<lease>`, every replica evaluates, the leader acts",
    )
    namespace: str | None = Field(None, description="default: the pod's namespace, or default")
    identity: str | None = Field(None, description="default: $POD_NAME, or hostname-pid")
    lease_duration: Duration = timedelta(seconds=15)
    renew_deadline: Duration = timedelta(seconds=10)
    retry_period: Duration = timedelta(seconds=2)

    @model_validator(mode="after")
    def _ordered(self) -> LeaderElection:
        # What kubernetes.leaderelection requires (it exits the process otherwise).
        times = (self.retry_period, self.renew_deadline, self.lease_duration)
        if any(t.total_seconds() < 1 or t.total_seconds() % 1 for t in times):
            raise ValueError("retry_period, renew_deadline and lease_duration are whole seconds")
        if not 1.2 * self.retry_period < self.renew_deadline < self.lease_duration:
            raise ValueError("need 1.2 x retry_period < renew_deadline < lease_duration")
        return self


class DaemonSettings(Strict):
    """How the daemon runs: HTTP address, where state lives, logging."""

    http: Http = Field(default_factory=Http)
    state_dir: str = ".mlwatchdog/state"
    log_level: Literal["debug", "info", "warning", "error"] = "info"
    jitter: Duration = Field(
        timedelta(seconds=2), description="random delay added to each run so targets spread out"
    )
    reload_interval: Duration = Field(
        timedelta(seconds=5),
        description="how often `run` checks the rules file for changes (mtime, size, content) "
        "and reloads it; 0 disables polling (SIGHUP still reloads)",
    )
    sink: Sink = Field(default_factory=Sink)
    kubernetes: Kubernetes = Field(default_factory=Kubernetes)
    leader_election: LeaderElection = Field(default_factory=LeaderElection)
    auth: Auth = Field(default_factory=Auth)
    alerts: Alerts = Field(default_factory=Alerts)
    reports: Reports = Field(default_factory=Reports)
    bundles: Bundles = Field(default_factory=Bundles)
    audit_log: SecretUrl = Field(
        SecretUrl(".mlwatchdog/audit.jsonl"),
        description="the audit trail, one JSON record per action or refusal: a local file "
        "(JSON lines, fsynced; put it on a volume that outlives the pod) or an fsspec URL "
        "(s3://bucket/audit/: one object per record)",
    )
    audit_storage_options: SecretOptions = Field(
        default_factory=dict, description="fsspec options for an audit_log URL"
    )

    def beside_state(self, name: str) -> str:
        """The default folder of reports and bundles: `.demo/state` -> `.demo/<name>`."""
        return os.path.join(os.path.dirname(os.path.normpath(self.state_dir)), name)

    @field_validator("reload_interval")
    @classmethod
    def _not_busy(cls, value: timedelta) -> timedelta:
        if timedelta(0) < value < timedelta(milliseconds=100):
            raise ValueError("reload_interval is 0s (no polling) or at least 100ms")
        return value

    @model_validator(mode="after")
    def _closed_by_default(self) -> DaemonSettings:
        problem = exposed_without_auth(self.http.host, self.auth)
        if problem:
            raise ValueError(problem)
        return self


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False  # a name (or 0.0.0.0, ::): other hosts may reach it


def exposed_without_auth(host: str, auth: Auth) -> str:
    """Why serving on `host` with `auth` is refused ('' when it is not): an address other hosts
    can reach needs credentials, unless anonymous access is asked for by name."""
    if is_loopback(host) or auth.enabled or auth.anonymous:
        return ""
    return (
        f"daemon.http.host {host} can be reached from other hosts, and daemon.auth sets no "
        "credential: anyone who reaches it could evaluate, reload and read every target. Set "
        "daemon.auth (tokens, basic, kubernetes), or write daemon.auth.anonymous: true to "
        "serve it open on purpose"
    )


class Config(Strict):
    """A whole rules.yaml."""

    version: Literal[1] = 1
    daemon: DaemonSettings = Field(default_factory=DaemonSettings)
    sources: dict[Name, Source]
    targets: list[Target] = Field(min_length=1)

    def target(self, name: str) -> Target:
        return next(t for t in self.targets if t.name == name)
