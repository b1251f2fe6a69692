"""Who may call the daemon (`mlwatchdog.daemon.auth`): each kind of credential, the roles each
request needs, what is refused, and the rule that keeps an exposed daemon closed."""

from __future__ import annotations

import base64
import os
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from mlwatchdog.daemon.auth import (
    ANONYMOUS,
    Authenticator,
    NeedsIO,
    Review,
    Unavailable,
    route_role,
)
from mlwatchdog.rules.schema import Auth, DaemonSettings
from mlwatchdog.rules.secret import Redactor

GRAFANA = "grafana-token-0123456789"
OPS = "ops-token-abcdefghijklmnop"
SINK_SECRET = "credit-sink-secret-42x"
SA_TOKEN = "eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJncmFmYW5hIn0.c2lnbmF0dXJl"  # JWT-shaped


def basic(user: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


def auth(**settings: Any) -> Auth:
    return Auth.model_validate(settings)


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def authenticator(settings: Auth, review: Any = None, **kwargs: Any) -> Authenticator:
    return Authenticator(lambda: settings, review, **kwargs)


def test_open_until_a_credential_is_set() -> None:
    assert authenticator(auth()).authenticate(None, "/api/v1/targets") is ANONYMOUS
    closed = authenticator(auth(tokens=[{"name": "ops", "token": OPS}]))
    assert closed.authenticate(None, "/api/v1/targets") is None


def test_bearer_tokens_with_roles() -> None:
    settings = auth(
        tokens=[
            {"name": "grafana", "token": GRAFANA, "roles": ["alerts"]},
            {"name": "ops", "token": OPS},
        ]
    )
    check = authenticator(settings).authenticate
    grafana = check(f"Bearer {GRAFANA}", "/api/v1/alerts")
    assert grafana is not None and grafana.name == "grafana"
    assert grafana.roles == {"alerts"}
    ops = check(f"bearer  {OPS} ", "/-/reload")  # scheme case and spaces as RFC 7235 allows
    assert ops is not None and ops.roles == {"read", "alerts", "operate", "sink"}
    for wrong in (f"Bearer {GRAFANA}x", f"Bearer {GRAFANA[:-1]}", "Bearer", "Bearer ", GRAFANA, ""):
        assert check(wrong, "/api/v1/alerts") is None, wrong
    assert check(f"Token {OPS}", "/api/v1/targets") is None


@pytest.mark.parametrize(
    "header",
    [
        "Basic !!notbase64",
        "Basic " + "é" * 8,  # not ASCII: base64 decoding raises ValueError, not binascii.Error
        "Basic " + base64.b64encode(b"\xff\xfe:\xff").decode(),  # not UTF-8
        "Basic " + base64.b64encode(b"no-colon").decode(),
        "Basic =",
        "Basic",
    ],
)
def test_a_malformed_basic_header_is_refused_never_an_error(header: str) -> None:
    settings = auth(basic=[{"username": "alertmanager", "password": "am-password-123456"}])
    assert authenticator(settings).authenticate(header, "/api/v1/alerts") is None


def test_basic_users() -> None:
    settings = auth(
        basic=[{"username": "alertmanager", "password": "am-password-123456", "roles": ["alerts"]}]
    )
    check = authenticator(settings).authenticate
    found = check(basic("alertmanager", "am-password-123456"), "/api/v1/alerts")
    assert found is not None and found.kind == "basic" and found.roles == {"alerts"}
    assert check(basic("alertmanager", "am-password-12345"), "/api/v1/alerts") is None
    assert check(basic("grafana", "am-password-123456"), "/api/v1/alerts") is None
    assert (
        check(basic("alertmanager", "am-password-123456:extra"), "/api/v1/alerts") is None
    )  # the password is everything after the first colon


def test_token_files_are_read_and_reread_when_they_change(tmp_path: Path) -> None:
    secret_file = tmp_path / "ops-token"
    secret_file.write_text(OPS + "\n")
    clock = Clock()
    seen: list[str] = []
    redactor = Redactor()

    def on_secret(values: Any) -> None:
        values = list(values)
        seen.extend(values)
        redactor.add(values)

    check = authenticator(
        auth(tokens=[{"name": "ops", "file": str(secret_file)}]), on_secret=on_secret, clock=clock
    ).authenticate
    assert check(f"Bearer {OPS}", "/-/reload") is not None
    assert seen == [OPS] and redactor.text(f"x {OPS} y") == "x *** y"

    rotated = "rotated-token-zyxwvutsrq"
    secret_file.write_text(rotated)
    os.utime(secret_file, ns=(1, 1))  # a new mtime even within the file system's resolution
    assert check(f"Bearer {OPS}", "/-/reload") is not None  # within the re-check interval
    clock.now += 10
    assert check(f"Bearer {OPS}", "/-/reload") is None
    assert check(f"Bearer {rotated}", "/-/reload") is not None
    assert redactor.text(OPS + rotated) == "******"  # both stay secret

    secret_file.unlink()
    clock.now += 10
    assert check(f"Bearer {rotated}", "/-/reload") is None


def test_a_missing_token_file_refuses_its_credential_only(tmp_path: Path) -> None:
    settings = auth(
        tokens=[
            {"name": "ops", "file": str(tmp_path / "absent")},
            {"name": "grafana", "token": GRAFANA},
        ]
    )
    check = authenticator(settings).authenticate
    assert check(f"Bearer {GRAFANA}", "/api/v1/alerts") is not None
    assert check("Bearer anything-at-all-here", "/api/v1/alerts") is None


def test_sink_path_secrets_name_their_inference_service() -> None:
    settings = auth(
        sink_paths=[{"inference_service": "credit", "namespace": "models", "secret": SINK_SECRET}]
    )
    check = authenticator(settings).authenticate
    found = check(None, f"/sink/kserve/{SINK_SECRET}")
    assert found is not None and found.roles == {"sink"}
    assert found.inference_service == ("models", "credit")
    assert check(None, f"/sink/kserve/{SINK_SECRET}x") is None
    assert check(None, "/sink/kserve") is None
    assert check(None, f"/api/v1/targets/{SINK_SECRET}") is None  # only in the sink's path


def test_serviceaccount_tokens_are_reviewed_once_per_cache_period() -> None:
    asked: list[tuple[str, list[str]]] = []
    users = {SA_TOKEN: "system:serviceaccount:monitoring:grafana"}

    def review(token: str, audiences: list[str]) -> Review:
        asked.append((token, audiences))
        return Review(token in users, users.get(token, ""))

    settings = auth(
        kubernetes={
            "service_accounts": [
                {"service_account": "monitoring:grafana", "roles": ["alerts"]},
                {"service_account": "monitoring:*", "roles": ["read"]},
                {"service_account": "other:grafana", "roles": ["operate"]},
            ],
            "audiences": ["mlwatchdog"],
            "cache": "60s",
        }
    )
    clock = Clock()
    check = authenticator(settings, review, clock=clock).authenticate
    found = check(f"Bearer {SA_TOKEN}", "/api/v1/alerts")
    assert found is not None and found.name == "monitoring:grafana"
    assert found.roles == {"alerts", "read"}
    assert check(f"Bearer {SA_TOKEN}", "/api/v1/alerts") == found
    assert asked == [(SA_TOKEN, ["mlwatchdog"])]  # cached
    clock.now += 61
    check(f"Bearer {SA_TOKEN}", "/api/v1/alerts")
    assert len(asked) == 2
    stranger = SA_TOKEN.replace("c2ln", "eHh4")
    assert check(f"Bearer {stranger}", "/api/v1/alerts") is None
    assert check(f"Bearer {stranger}", "/api/v1/alerts") is None
    assert len(asked) == 3  # a rejected token is not asked about again at once
    assert check("Bearer not-a-jwt-so-not-reviewed", "/api/v1/alerts") is None
    assert len(asked) == 3


def test_on_the_event_loop_only_what_needs_no_file_or_review(tmp_path: Path) -> None:
    """AuthMiddleware checks with io=False on the event loop (the sink's path secrets, inline
    tokens, remembered files and reviews) and in a thread only on NeedsIO."""
    secret_file = tmp_path / "ops-token"
    secret_file.write_text(OPS)
    asked: list[str] = []

    def review(token: str, audiences: list[str]) -> Review:
        asked.append(token)
        return Review(True, "system:serviceaccount:monitoring:grafana")

    settings = auth(
        tokens=[{"name": "ops", "file": str(secret_file)}],
        sink_paths=[{"inference_service": "credit", "namespace": "models", "secret": SINK_SECRET}],
        kubernetes={
            "service_accounts": [{"service_account": "monitoring:grafana", "roles": ["read"]}]
        },
    )
    clock = Clock()
    check = authenticator(settings, review, clock=clock).authenticate
    found = check(None, f"/sink/kserve/{SINK_SECRET}", io=False)
    assert found is not None and found.inference_service == ("models", "credit")
    with pytest.raises(NeedsIO):  # the file was never read
        check(f"Bearer {OPS}", "/-/reload", io=False)
    assert check(f"Bearer {OPS}", "/-/reload") is not None
    assert check(f"Bearer {OPS}", "/-/reload", io=False) is not None  # remembered
    with pytest.raises(NeedsIO):
        check(f"Bearer {SA_TOKEN}", "/api/v1/targets", io=False)
    assert asked == []
    assert check(f"Bearer {SA_TOKEN}", "/api/v1/targets") is not None
    assert check(f"Bearer {SA_TOKEN}", "/api/v1/targets", io=False) is not None
    assert asked == [SA_TOKEN]
    clock.now += 10  # the file is due for another look
    with pytest.raises(NeedsIO):
        check(f"Bearer {OPS}", "/-/reload", io=False)


def test_an_authenticated_serviceaccount_no_rule_names_is_refused() -> None:
    def review(token: str, audiences: list[str]) -> Review:
        return Review(True, "system:serviceaccount:default:curious")

    settings = auth(
        kubernetes={"service_accounts": [{"service_account": "monitoring:*", "roles": ["read"]}]}
    )
    assert authenticator(settings, review).authenticate(f"Bearer {SA_TOKEN}", "/x") is None

    def user(token: str, audiences: list[str]) -> Review:
        return Review(True, "jane@example.com")  # a person's token: not a ServiceAccount

    assert authenticator(settings, user).authenticate(f"Bearer {SA_TOKEN}", "/x") is None


def test_an_unreachable_api_is_unavailable_not_a_refusal() -> None:
    def down(token: str, audiences: list[str]) -> Review:
        return Review(False, error="TokenReview failed: connection refused")

    settings = auth(
        kubernetes={"service_accounts": [{"service_account": "monitoring:*", "roles": ["read"]}]}
    )
    with pytest.raises(Unavailable, match="connection refused"):
        authenticator(settings, down).authenticate(f"Bearer {SA_TOKEN}", "/api/v1/targets")


@pytest.mark.parametrize(
    ("method", "path", "role"),
    [
        ("GET", "/healthz", None),
        ("GET", "/readyz", None),
        ("GET", "/metrics", None),
        ("POST", "/metrics", None),
        ("GET", "/api/v1/targets", "read"),
        ("GET", "/api/v1/targets/credit", "read"),
        ("GET", "/targets", "read"),
        ("GET", "/api/v1/incidents", "read"),
        ("GET", "/api/v1/audit", "read"),
        ("GET", "/api/v1/status", "read"),  # which targets this replica evaluates
        ("GET", "/reports/credit-1/index.html", "read"),
        ("GET", "/reports/", "read"),
        ("GET", "/openapi.json", "read"),
        ("GET", "/docs", "read"),
        ("GET", "/", "read"),
        ("GET", "/healthz/", "read"),
        ("GET", "/api/v1/alerts", "read"),
        ("POST", "/api/v1/alerts", "alerts"),
        ("POST", "/api/v1/targets/credit/evaluate", "operate"),
        ("POST", "/-/reload", "operate"),
        ("POST", "/sink/kserve", "sink"),
        ("POST", "/sink/kserve/some-secret", "sink"),
        ("POST", "/sink/kservex", "read"),
    ],
)
def test_the_role_each_request_needs(method: str, path: str, role: str | None) -> None:
    assert route_role(method, path) == role


def test_credentials_are_validated_in_rules_yaml() -> None:
    with pytest.raises(ValidationError, match="at least 16 characters"):
        auth(tokens=[{"name": "ops", "token": "short"}])
    with pytest.raises(ValidationError, match="exactly one of `token` or `file`"):
        auth(tokens=[{"name": "ops"}])
    with pytest.raises(ValidationError, match="used twice"):
        auth(
            tokens=[{"name": "ops", "token": OPS}],
            basic=[{"username": "ops", "password": "am-password-123456"}],
        )
    with pytest.raises(ValidationError, match="letters, digits"):
        auth(sink_paths=[{"inference_service": "a", "namespace": "b", "secret": "a/b" * 8}])
    with pytest.raises(ValidationError, match="roles"):
        auth(tokens=[{"name": "ops", "token": OPS, "roles": ["admin"]}])


@pytest.mark.parametrize("host", ["0.0.0.0", "::", "10.1.2.3", "mlwatchdog.example.com"])
def test_an_address_others_can_reach_needs_credentials(host: str) -> None:
    with pytest.raises(ValidationError, match="anyone who reaches it"):
        DaemonSettings.model_validate({"http": {"host": host}})
    DaemonSettings.model_validate({"http": {"host": host}, "auth": {"anonymous": True}})
    DaemonSettings.model_validate(
        {"http": {"host": host}, "auth": {"tokens": [{"name": "ops", "token": OPS}]}}
    )


@pytest.mark.parametrize("host", ["127.0.0.1", "127.0.0.2", "::1", "localhost"])
def test_loopback_may_stay_open(host: str) -> None:
    DaemonSettings.model_validate({"http": {"host": host}})


def test_old_credential_settings_say_where_they_moved() -> None:
    with pytest.raises(ValidationError, match=r"moved to daemon\.auth"):
        DaemonSettings.model_validate({"alerts": {"bearer_token": GRAFANA}})
    with pytest.raises(ValidationError, match=r"moved to daemon\.auth"):
        DaemonSettings.model_validate({"sink": {"bearer_token": GRAFANA}})
