"""rules.yaml: the schema, loading with file/line errors, cross-checks, and the trigger language."""

from mlwatchdog.rules.loader import (
    ConfigIssue,
    Rules,
    config_issues,
    load_config,
    load_rules,
    parse_config,
)
from mlwatchdog.rules.references import drift_columns
from mlwatchdog.rules.schema import (
    Config,
    DriftCheck,
    FilesSource,
    KServeSource,
    MetricCheck,
    PerformanceCheck,
    PrometheusSource,
    SampleSource,
    Sink,
    SqlSource,
    Target,
    format_duration,
    parse_duration,
)
from mlwatchdog.rules.trigger import Trigger, parse_trigger

__all__ = [
    "Config",
    "ConfigIssue",
    "DriftCheck",
    "FilesSource",
    "KServeSource",
    "MetricCheck",
    "PerformanceCheck",
    "PrometheusSource",
    "Rules",
    "SampleSource",
    "Sink",
    "SqlSource",
    "Target",
    "Trigger",
    "config_issues",
    "drift_columns",
    "format_duration",
    "load_config",
    "load_rules",
    "parse_config",
    "parse_duration",
    "parse_trigger",
]
