"""mlwatchdog as the analysis provider: GET /api/v1/analysis/<target> driven exactly as Argo
Rollouts' `web` metric provider drives it, and Flagger's `rollout` webhook exactly as Flagger
calls it, both against the real daemon app over real HTTP, with the daemon's real evaluations
(files source, the bundled rules.yaml) on a clock the test moves.

The Argo caller below is argo-rollouts' code in Python:
- analysis/analysis.go Controller.resolveArgs: an argument's `valueFrom.secretKeyRef` is read
  from the Secret (here the example's own Secret);
- utils/template/template.go ResolveArgs / resolve: `{{args.<name>}}` (tag trimmed of spaces)
  replaced in the URL and header values; an argument without a value is an error;
- metricproviders/webmetric/webmetric.go Provider.Run and parseResponse: GET (no method given)
  with the headers, 10 s timeout by default; a status outside 2xx is a measurement Error; a JSON
  body goes through `jsonPath` (k8s.io/client-go/util/jsonpath; only `{$}` and `{$.a.b}` forms
  here) and getValue takes the first value found, none being an Error;
- utils/evaluate/evaluate.go EvaluateResult (verbatim) and EvalCondition: the expr-lang
  expressions are evaluated by `eval_condition`, which knows only the forms the example uses
  (`result == "<string>"`, `result != "<string>"`) and refuses anything else, so an example
  changed beyond them fails here instead of being judged wrongly.
The AnalysisTemplate and Secret are those of deploy/examples/argo-analysis-web.yaml, the Canary
that of deploy/examples/flagger-canary.yaml, pointed at this server.
"""

from __future__ import annotations

import json
import re
import socket
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest

from mlwatchdog.daemon.app import create_app
from mlwatchdog.daemon.service import Daemon
from mlwatchdog.demo import customers, write_batch
from tests.deploy.manifests import EXAMPLES, load_all, one
from tests.e2e.daemon_process import FOR, TARGET, WINDOW
from tests.integration.test_flagger_webhook import (
    GRAFANA,
    SECRET,
    VIEWER,
    call_webhook,
    canary_at,
    make_daemon,
)
from tests.kube.apiserver import FakeKubeAPI
from tests.servers.limited_http import settings, thread_server

CANARY_HASH = "6d8b7c9f54"  # the canary ReplicaSet's pod-template-hash (podTemplateHashValue)
START = datetime(2026, 12, 5, 12, 0, tzinfo=UTC)


def example() -> tuple[dict[str, Any], dict[str, Any]]:
    docs = load_all(EXAMPLES / "argo-analysis-web.yaml")
    return one(docs, "AnalysisTemplate"), one(docs, "Secret")


# --------------------------------------------------------------------------- Argo, in Python


def resolve_args(text: str, args: dict[str, str | None]) -> str:
    """template.go ResolveArgs: every `{{tag}}` is `args.<name>`, trimmed; unresolved: error."""

    def value(match: re.Match[str]) -> str:
        tag = match[1].strip()
        name = tag.removeprefix("args.")
        if not tag.startswith("args.") or name not in args:
            raise ValueError(f"failed to resolve {{{{{match[1]}}}}}")
        found = args[name]
        if found is None:
            raise ValueError(f'argument "{name}" was not supplied')
        return found

    return re.sub(r"\{\{(.*?)\}\}", value, text)


def analysis_args(
    template: dict[str, Any], secret: dict[str, Any], supplied: dict[str, str]
) -> dict[str, str | None]:
    """The template's args with the Rollout's values, secretKeyRef read from the Secret
    (analysis.go resolveArgs; the API server serves stringData as data)."""
    args: dict[str, str | None] = {}
    for arg in template["spec"]["args"]:
        ref = (arg.get("valueFrom") or {}).get("secretKeyRef")
        if ref is not None:
            assert ref["name"] == secret["metadata"]["name"]
            args[arg["name"]] = secret["stringData"][ref["key"]]
        else:
            args[arg["name"]] = supplied.get(arg["name"], arg.get("value"))
    return args


def jsonpath(data: Any, path: str) -> list[Any]:
    """k8s.io/client-go/util/jsonpath FindResults for `{$}` and `{$.a.b}` (or `{.a.b}`)."""
    match = re.fullmatch(r"\{\$?((?:\.[A-Za-z_][\w-]*)*)\}", path)
    if match is None:
        raise ValueError(f"jsonPath {path!r} is beyond this port")
    for key in [k for k in match[1].split(".") if k]:
        if not isinstance(data, dict) or key not in data:
            return []
        data = data[key]
    return [data]


def eval_condition(result: Any, condition: str) -> bool:
    """evaluate.go EvalCondition, for `result == "<string>"` and `result != "<string>"` only."""
    match = re.fullmatch(r'\s*result\s*(==|!=)\s*"([^"\\]*)"\s*', condition)
    if match is None:
        raise ValueError(f"condition {condition!r} is beyond this port")
    equal = result == match[2]
    return equal if match[1] == "==" else not equal


def evaluate_result(result: Any, metric: dict[str, Any]) -> str:
    """evaluate.go EvaluateResult, line by line."""
    success_text, failure_text = (
        metric.get("successCondition", ""),
        metric.get("failureCondition", ""),
    )
    success = eval_condition(result, success_text) if success_text else False
    failure = eval_condition(result, failure_text) if failure_text else False
    if not success_text and not failure_text:
        return "Successful"
    if success_text and not failure_text:
        failure = not success
    elif failure_text and not success_text:
        success = not failure
    if failure:
        return "Failed"
    if not failure and not success:
        return "Inconclusive"
    return "Successful"


def run_web_metric(metric: dict[str, Any], args: dict[str, str | None]) -> tuple[str, str]:
    """webmetric.go Run + parseResponse: (the measurement's phase, its value or error)."""
    web = metric["provider"]["web"]
    method = web.get("method", "GET")
    assert method == "GET" and "body" not in web and "jsonBody" not in web
    url = resolve_args(web["url"], args)
    headers = {h["key"]: resolve_args(h["value"], args) for h in web.get("headers", [])}
    timeout = web.get("timeoutSeconds") or 10
    response = httpx.request(method, url, headers=headers, timeout=timeout)
    if not 200 <= response.status_code < 300:
        return "Error", f"received non 2xx response code: {response.status_code}"
    try:
        data = json.loads(response.content)
    except ValueError:
        return evaluate_result(response.text, metric), response.text
    found = jsonpath(data, web.get("jsonPath") or "{$}")
    if not found:
        return "Error", "result of web metric produced no value"
    return evaluate_result(found[0], metric), json.dumps(found[0])


def argo_measures(port: int, target: str = TARGET) -> tuple[str, str]:
    """One measurement of the example's metric, its URL pointed at this daemon, its Secret
    holding the daemon's `read` token (the placeholder replaced, as the example says)."""
    template, secret = example()
    assert secret["stringData"]["token"] == "CHANGE-ME-openssl-rand-hex-24"
    secret = {**secret, "stringData": {"token": VIEWER}}
    [metric] = template["spec"]["metrics"]
    supplied = {
        "target": target,
        "revision": CANARY_HASH,
        "mlwatchdog-url": f"http://127.0.0.1:{port}",
    }
    return run_web_metric(metric, analysis_args(template, secret, supplied))


# ------------------------------------------------------------------------ Flagger, in Python


def run_analysis_hooks(canary: dict[str, Any]) -> bool:
    """scheduler.go runAnalysis: every webhook of type "" or `rollout` must answer without
    error, else the advancement halts and a failed check is counted."""
    for hook in canary["spec"]["analysis"]["webhooks"]:
        rollout = hook.get("type", "") in ("", "rollout")
        if rollout and call_webhook(hook["url"], canary, "Progressing", hook) is not None:
            return False
    return True


# ----------------------------------------------------------------------------------- the daemon


class Clock:
    def __init__(self) -> None:
        self.now = START

    def __call__(self) -> datetime:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def daemon(tmp_path: Path, clock: Clock) -> Iterator[Daemon]:
    with FakeKubeAPI() as kube:
        made = make_daemon(tmp_path, kube, dry_run=True)
        for runner in made.runners.values():
            runner.clock = clock
        yield made


@pytest.fixture
def port(daemon: Daemon) -> Iterator[int]:
    with thread_server(create_app(daemon), settings(), "httptools+uvloop") as server:
        yield server.port


def feed(tmp_path: Path, at: datetime, rows: int, drifted: bool, seed: int) -> None:
    """`rows` samples over the window before `at`, as the model's logger writes them."""
    rng = np.random.default_rng(seed)
    frame = customers(rng, rows, drifted)
    offsets = rng.uniform(0, WINDOW - 1, rows)
    frame.insert(0, "timestamp", [at - timedelta(seconds=s) for s in offsets])
    write_batch(tmp_path / "live", frame, at)


def evaluate(daemon: Daemon, clock: Clock, at: datetime) -> None:
    clock.now = at
    assert daemon.runners[TARGET].run_once() is not None


def analysis(port: int, token: str = VIEWER, **params: str) -> httpx.Response:
    return httpx.get(
        f"http://127.0.0.1:{port}/api/v1/analysis/{TARGET}",
        params=params,
        headers={"Authorization": f"Bearer {token}"},
        timeout=10,
    )


# ------------------------------------------------------------------------------------ verdicts


def test_the_verdict_through_argo_and_flagger_follows_the_evaluations(
    daemon: Daemon, port: int, clock: Clock, tmp_path: Path
) -> None:
    canary = canary_at(port)
    # Never evaluated: inconclusive (the Rollout pauses), never a pass.
    assert argo_measures(port) == ("Inconclusive", '"inconclusive"')
    assert run_analysis_hooks(canary) is False
    body = analysis(port, revision=CANARY_HASH).json()
    assert body["state"] is None and body["window"]["rows"] is None
    assert (
        body["revision"] == CANARY_HASH and analysis(port, revision="").json()["revision"] is None
    )

    # Evaluated on an empty window: no data is inconclusive too.
    evaluate(daemon, clock, START)
    assert argo_measures(port)[0] == "Inconclusive"
    body = analysis(port).json()
    assert body["verdict"] == "inconclusive" and "no data to judge" in body["reason"]
    assert body["window"]["status"] == "no_data"
    assert run_analysis_hooks(canary) is False

    # Samples like the reference: pass, with the figures that say why.
    at = START + timedelta(seconds=2)
    feed(tmp_path, at, 400, drifted=False, seed=1)
    evaluate(daemon, clock, at)
    assert argo_measures(port) == ("Successful", '"pass"')
    assert run_analysis_hooks(canary) is True
    body = analysis(port, revision=CANARY_HASH).json()
    assert body["revision"] == CANARY_HASH and body["scope"] == "target"
    assert body["state"] == "healthy" and body["evaluated_at"] == at.isoformat().replace(
        "+00:00", "Z"
    )
    assert body["window"] == {"rows": 400, "status": "ok", "reason": "400 rows"}
    drift = {c["name"]: c for c in body["checks"]}["prediction_drift"]
    assert drift["status"] == "ok" and drift["state"] == "inactive"
    assert drift["value"] is not None and drift["threshold"] is not None
    assert drift["rows"] == 400

    # A drifted window: the checks breach, pending first (their `for` says a shorter breach is
    # noise: still a pass), then firing: the trigger holds and the canary fails.
    at = at + timedelta(seconds=WINDOW)
    feed(tmp_path, at, 1200, drifted=True, seed=2)
    evaluate(daemon, clock, at)
    assert {c["state"] for c in analysis(port).json()["checks"]} >= {"pending"}
    assert argo_measures(port)[0] == "Successful"
    at = at + timedelta(seconds=FOR + 1)
    feed(tmp_path, at, 1200, drifted=True, seed=3)
    evaluate(daemon, clock, at)
    assert argo_measures(port) == ("Failed", '"fail"')
    assert run_analysis_hooks(canary) is False
    hook = next(h for h in canary["spec"]["analysis"]["webhooks"] if h["type"] == "rollout")
    failed = call_webhook(hook["url"], canary, "Progressing", hook)
    assert failed is not None and json.loads(failed)["verdict"] == "fail"
    body = analysis(port).json()
    assert body["reason"].startswith("trigger 'prediction_drift and (feature_drift or channel")
    assert {c["name"]: c["state"] for c in body["checks"]}["prediction_drift"] == "firing"

    # No evaluation for longer than 3 intervals (the daemon is not evaluating it): inconclusive.
    clock.now = at + 3 * daemon.runners[TARGET].target.interval + timedelta(seconds=1)
    assert argo_measures(port)[0] == "Inconclusive"
    assert "the daemon is not evaluating it" in analysis(port).json()["reason"]


def test_flagger_pre_rollout_and_rollout_answers(daemon: Daemon, port: int) -> None:
    """503 while inconclusive (Flagger: a failed check, as for its metrics without values);
    the body is the same analysis answer, with the Canary."""
    canary = canary_at(port)
    for hook_type in ("pre-rollout", "rollout"):
        response = httpx.post(
            f"http://127.0.0.1:{port}/flagger/{hook_type}/{SECRET}",
            json={"name": "credit", "namespace": "models", "phase": "Progressing", "checksum": ""},
            timeout=10,
        )
        assert response.status_code == 503
        body = response.json()
        assert body["canary"] == "models/credit" and body["target"] == TARGET
        assert body["verdict"] == "inconclusive"
    assert run_analysis_hooks(canary) is False


# ---------------------------------------------------------------------------------- credentials


def test_argo_without_valid_credentials_measures_an_error(port: int) -> None:
    template, secret = example()
    wrong = {**secret, "stringData": {"token": "not-the-token-0123456789"}}
    [metric] = template["spec"]["metrics"]
    url = f"http://127.0.0.1:{port}"
    args = analysis_args(
        template, wrong, {"target": TARGET, "revision": CANARY_HASH, "mlwatchdog-url": url}
    )
    assert run_web_metric(metric, args) == ("Error", "received non 2xx response code: 401")
    assert analysis(port, token=GRAFANA).status_code == 403  # alerts only: no `read`
    # Refused on the headers alone: not a byte of a (250 MiB) body is waited for.
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        head = (f"GET /api/v1/analysis/{TARGET} HTTP/1.1\r\nHost: mlwatchdog\r\n"
                "Content-Length: 262144000\r\n\r\n")  # fmt: skip
        sock.sendall(head.encode())
        assert sock.recv(65536).startswith(b"HTTP/1.1 401")
    # Flagger's rollout hook with a wrong path secret: 401, a failed check.
    canary = canary_at(port, "not-the-secret-0123456789")
    assert run_analysis_hooks(canary) is False
    hook = next(h for h in canary["spec"]["analysis"]["webhooks"] if h["type"] == "rollout")
    assert "credentials needed" in (call_webhook(hook["url"], canary, "Progressing", hook) or "")


def test_an_unknown_target_is_an_error_saying_which_exist(port: int) -> None:
    phase, value = argo_measures(port, target="no-such-model")
    assert (phase, value) == ("Error", "received non 2xx response code: 404")
    response = httpx.get(
        f"http://127.0.0.1:{port}/api/v1/analysis/no-such-model",
        headers={"Authorization": f"Bearer {VIEWER}"},
        timeout=10,
    )
    assert response.json()["detail"] == f"no target 'no-such-model'; targets: ['{TARGET}']"
