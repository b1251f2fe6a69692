"""What the deploy/ tests share: the manifests, kustomize rendering, CRD schema checks, PromQL
metric names and the daemon's exported metric names.

Rendering uses `kustomize build` or `kubectl kustomize` when either is installed (kubectl 1.21+
embeds kustomize v4+; Debian's kubernetes-client is 1.20, too old for `patches:`), else
`render_python`: a small renderer of the kustomize features deploy/kustomize uses (resources,
configMapGenerator without hash suffix, `patches` by path as strategic merge, `images`).
test_kustomize.py checks that both agree whenever a binary is there.
"""

from __future__ import annotations

import copy
import functools
import re
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import yaml

Object = dict[str, Any]

REPO = Path(__file__).resolve().parents[2]
DEPLOY = REPO / "deploy"
BASE = DEPLOY / "kustomize" / "base"
PRODUCTION = DEPLOY / "kustomize" / "overlays" / "production"
# The KServe sink as its own tier: the component, and production with it.
SINK_COMPONENT = DEPLOY / "kustomize" / "components" / "sink-replicas"
PRODUCTION_SINK = DEPLOY / "kustomize" / "overlays" / "production-sink"
EXAMPLES = DEPLOY / "examples"
DASHBOARD = DEPLOY / "grafana" / "mlwatchdog-dashboard.json"


def load_all(path: Path) -> list[Object]:
    """The YAML documents of a file (empty documents dropped)."""
    with open(path, encoding="utf-8") as f:
        return [doc for doc in yaml.safe_load_all(f) if doc is not None]


def manifest_files() -> list[Path]:
    """Every Kubernetes manifest under deploy/ (not kustomization.yaml, not rules.yaml)."""
    files = sorted((DEPLOY / "kustomize").rglob("*.yaml")) + sorted(EXAMPLES.glob("*.yaml"))
    return [p for p in files if p.name not in ("kustomization.yaml", "rules.yaml")]


def key(obj: Object) -> tuple[str, str, str]:
    meta = obj.get("metadata") or {}
    return obj["kind"], meta.get("namespace", ""), meta["name"]


def by_kind(objs: list[Object], kind: str) -> list[Object]:
    return [o for o in objs if o.get("kind") == kind]


def one(objs: list[Object], kind: str) -> Object:
    found = by_kind(objs, kind)
    assert len(found) == 1, f"expected exactly one {kind}, found {len(found)}"
    return found[0]


# --- kustomize ---------------------------------------------------------------------------------


def kustomize_command() -> list[str] | None:
    """`kustomize build` or `kubectl kustomize`, if one is installed and recent enough."""
    if shutil.which("kustomize"):
        return ["kustomize", "build"]
    kubectl = shutil.which("kubectl")
    if not kubectl:
        return None
    try:
        out = subprocess.run(
            [kubectl, "version", "--client", "-o", "json"],
            capture_output=True,
            text=True,
            timeout=20,
        )
        info = yaml.safe_load(out.stdout) or {}
        version = info.get("kustomizeVersion") or ""
    except (OSError, subprocess.SubprocessError, yaml.YAMLError):
        return None
    match = re.match(r"v?(\d+)", version)
    return [kubectl, "kustomize"] if match and int(match.group(1)) >= 4 else None


def render_binary(directory: Path) -> list[Object]:
    command = kustomize_command()
    assert command is not None
    done = subprocess.run(
        [*command, str(directory)], capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 0, f"{' '.join(command)} {directory} failed:\n{done.stderr}"
    return [doc for doc in yaml.safe_load_all(done.stdout) if doc is not None]


@functools.cache
def _rendered(directory: Path) -> tuple[str, list[Object]]:
    if kustomize_command():
        return "binary", render_binary(directory)
    return "python", render_python(directory)


def render(directory: Path) -> list[Object]:
    """The rendered objects of a kustomization (a fresh copy each call)."""
    return copy.deepcopy(_rendered(directory)[1])


def renderer_used(directory: Path) -> str:
    return _rendered(directory)[0]


def render_python(directory: Path, objs: list[Object] | None = None) -> list[Object]:
    """A kustomization's objects; a Component adds to and patches `objs`, what its parent
    has accumulated (kustomize applies components after the parent's resources)."""
    kustomization = load_all(directory / "kustomization.yaml")[0]
    supported = {
        "apiVersion", "kind", "resources", "components", "configMapGenerator", "patches", "images"
    }  # fmt: skip
    unsupported = set(kustomization) - supported
    assert not unsupported, f"render_python does not support {sorted(unsupported)}: extend it"
    objs = [] if objs is None else objs
    for resource in kustomization.get("resources", []):
        path = directory / resource
        objs += render_python(path) if path.is_dir() else load_all(path)
    for component in kustomization.get("components", []):
        render_python(directory / component, objs)
    for generator in kustomization.get("configMapGenerator", []):
        _generate_config_map(directory, generator, objs)
    for patch in kustomization.get("patches", []):
        assert set(patch) == {"path"}, f"render_python supports patches by path only: {patch}"
        for doc in load_all(directory / patch["path"]):
            matches = [o for o in objs if key(o) == key(doc)]
            assert len(matches) == 1, f"patch {patch['path']} matches {len(matches)} objects"
            _strategic_merge(matches[0], doc)
    for image in kustomization.get("images", []):
        for container in _containers(objs):
            _set_image(container, image)
    return objs


def _generate_config_map(directory: Path, generator: Object, objs: list[Object]) -> None:
    options = generator.get("options") or {}
    assert options.get("disableNameSuffixHash"), "render_python does not compute name hashes"
    data: dict[str, str] = {}
    for entry in generator.get("files", []):
        name, _, source = entry.partition("=") if "=" in entry else (Path(entry).name, "", entry)
        data[name] = (directory / source).read_text(encoding="utf-8")
    for literal in generator.get("literals", []):
        name, _, value = literal.partition("=")
        data[name] = value
    metadata: Object = {"name": generator["name"]}
    if generator.get("namespace"):
        metadata["namespace"] = generator["namespace"]
    if options.get("labels"):
        metadata["labels"] = dict(options["labels"])
    config_map = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": metadata, "data": data}
    behavior = generator.get("behavior", "create")
    existing = [o for o in objs if key(o) == key(config_map)]
    if behavior == "create":
        assert not existing, f"ConfigMap {generator['name']} exists already: use behavior"
        objs.append(config_map)
    else:
        assert len(existing) == 1, f"ConfigMap {generator['name']} to {behavior} is missing"
        if behavior == "replace":
            existing[0]["data"] = data
        else:
            existing[0].setdefault("data", {}).update(data)


def _strategic_merge(target: Any, patch: Any) -> Any:
    """Maps merge key by key; lists of named objects (containers, env, volumes) by name, in
    kustomize's order: the patch's items first (merged into their namesakes), then the target's
    items the patch does not name."""
    if isinstance(target, dict) and isinstance(patch, dict):
        for k, v in patch.items():
            target[k] = _strategic_merge(target[k], v) if k in target else copy.deepcopy(v)
        return target
    if (
        isinstance(target, list)
        and isinstance(patch, list)
        and all(isinstance(i, dict) and "name" in i for i in target + patch)
    ):
        named = {i["name"]: i for i in target}
        merged = [
            _strategic_merge(named[i["name"]], i) if i["name"] in named else copy.deepcopy(i)
            for i in patch
        ]
        patched = {i["name"] for i in patch}
        return merged + [i for i in target if i["name"] not in patched]
    return copy.deepcopy(patch)


def _containers(objs: list[Object]) -> Iterator[Object]:
    for obj in objs:
        pod = ((obj.get("spec") or {}).get("template") or {}).get("spec") or {}
        for field in ("initContainers", "containers"):
            yield from pod.get(field) or []


def _set_image(container: Object, image: Object) -> None:
    ref = container["image"]
    name, digest = ref.split("@", 1) if "@" in ref else (ref, None)
    tag = None
    if ":" in name.rsplit("/", 1)[-1]:
        name, tag = name.rsplit(":", 1)
    if name != image["name"]:
        return
    name = image.get("newName", name)
    if image.get("digest"):
        container["image"] = f"{name}@{image['digest']}"
    elif image.get("newTag"):
        container["image"] = f"{name}:{image['newTag']}"
    else:
        container["image"] = name + (f":{tag}" if tag else "") + (f"@{digest}" if digest else "")


# --- CRD schemas -------------------------------------------------------------------------------


def undeclared_fields(value: Any, schema: Object, path: str = "") -> list[str]:
    """Fields the apiserver would prune (silently drop) from a custom resource: not declared by
    the structural schema. Typos end up here, not in jsonschema's errors."""
    if not isinstance(schema, dict) or schema.get("x-kubernetes-preserve-unknown-fields"):
        return []
    found: list[str] = []
    if isinstance(value, dict):
        props = schema.get("properties")
        extra = schema.get("additionalProperties")
        if props is None and extra is None:
            return []  # free-form (metadata here; checked on its own)
        for k, item in value.items():
            sub = (props or {}).get(k)
            if sub is None and isinstance(extra, dict):
                sub = extra
            where = f"{path}.{k}" if path else k
            if sub is None:
                if extra is not True:
                    found.append(where)
                continue
            found += undeclared_fields(item, sub, where)
    elif isinstance(value, list) and isinstance(schema.get("items"), dict):
        for i, item in enumerate(value):
            found += undeclared_fields(item, schema["items"], f"{path}[{i}]")
    return found


# --- PromQL ------------------------------------------------------------------------------------

# Split word lists (noqa: SIM905) read better here than a hundred one-word lines.
PROMQL_FUNCTIONS = frozenset(
    """
    abs absent absent_over_time acos acosh asin asinh atan atanh avg_over_time ceil changes
    clamp clamp_max clamp_min cos cosh count_over_time day_of_month day_of_week day_of_year
    days_in_month deg delta deriv double_exponential_smoothing exp floor histogram_avg
    histogram_count histogram_fraction histogram_quantile histogram_stddev histogram_stdvar
    histogram_sum holt_winters hour idelta increase irate label_join label_replace
    last_over_time ln log10 log2 mad_over_time max_over_time min_over_time minute month pi
    predict_linear present_over_time quantile_over_time rad rate resets round scalar sgn sin
    sinh sort sort_by_label sort_by_label_desc sort_desc sqrt stddev_over_time stdvar_over_time
    sum_over_time tan tanh time timestamp vector year
    """.split()  # noqa: SIM905
)
PROMQL_AGGREGATIONS = frozenset(
    """
    sum min max avg group stddev stdvar count count_values bottomk topk quantile limitk
    limit_ratio
    """.split()  # noqa: SIM905
)
PROMQL_KEYWORDS = frozenset("and or unless bool offset inf nan atan2".split())  # noqa: SIM905
_GROUPING = re.compile(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^()]*\)")
_IDENT = re.compile(r"(?<![\w.:])([A-Za-z_:][A-Za-z0-9_:]*)(\s*\()?")


def normalize_promql(expr: str) -> str:
    """Templating out: Argo's {{args.x}} and Grafana's $var / ${var} / $__interval."""
    expr = re.sub(r"\{\{.*?\}\}", "x", expr)
    expr = re.sub(r"\$__\w+", "5m", expr)
    return re.sub(r"\$\{\w+\}|\$\w+", "x", expr)


def promql_names(expr: str) -> tuple[set[str], set[str]]:
    """(metric names, called functions) of a PromQL expression.

    Strings, label matchers, ranges and grouping clauses are removed first; what remains is
    identifiers: a function or aggregation when followed by `(`, a keyword, or a metric name.
    """
    text = normalize_promql(expr)
    text = re.sub(r'"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\'|`[^`]*`', '""', text)
    assert "__name__" not in text, f"selecting by __name__ hides the metric name: {expr}"
    text = re.sub(r"\{[^{}]*\}", " ", text)
    text = re.sub(r"\[[^\[\]]*\]", " ", text)
    text = _GROUPING.sub(" ", text)
    metrics: set[str] = set()
    calls: set[str] = set()
    for match in _IDENT.finditer(text):
        name, call = match.group(1), match.group(2)
        if call:
            calls.add(name)
        elif name not in PROMQL_KEYWORDS:
            metrics.add(name)
    return metrics, calls


def unknown_functions(calls: set[str]) -> set[str]:
    return calls - PROMQL_FUNCTIONS - PROMQL_AGGREGATIONS


def exported_metric_names() -> set[str]:
    """The series names the daemon's /metrics can have, from its live registry: counters as
    `<name>_total` (and `_created`), histograms as `_bucket` / `_sum` / `_count`."""
    from mlwatchdog.daemon.metrics import DaemonMetrics

    names: set[str] = set()
    for family in DaemonMetrics().registry.collect():
        if family.type == "counter":
            names |= {f"{family.name}_total", f"{family.name}_created"}
        elif family.type in ("histogram", "gaugehistogram"):
            names |= {f"{family.name}_{s}" for s in ("bucket", "sum", "count", "created")}
        elif family.type == "summary":
            names |= {family.name, *(f"{family.name}_{s}" for s in ("sum", "count", "created"))}
        elif family.type == "info":
            names.add(f"{family.name}_info")
        else:
            names.add(family.name)
    return names
