"""How the daemon reaches the Kubernetes API: in-cluster, kubeconfig, or offline (no cluster)."""

from __future__ import annotations

from pathlib import Path

import pytest
from kubernetes.config import incluster_config

from mlwatchdog.actions import kube_api
from mlwatchdog.actions.kube_api import KubeApi, in_cluster_namespace, load_api_client
from mlwatchdog.errors import ConfigError
from mlwatchdog.rules.schema import Kubernetes
from tests.kube.apiserver import FakeKubeAPI
from tests.kube.objects import argo_canary


@pytest.fixture
def no_cluster(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
    monkeypatch.setenv("KUBECONFIG", str(tmp_path / "absent"))
    monkeypatch.setattr(kube_api, "SERVICE_ACCOUNT", tmp_path / "no-service-account")
    return tmp_path


def test_offline_and_auto_without_a_cluster_give_no_client(no_cluster: Path) -> None:
    assert load_api_client(Kubernetes(mode="offline")) is None
    assert load_api_client(Kubernetes()) is None  # auto: nothing found -> offline


def test_a_missing_kubeconfig_is_a_config_error_naming_it(no_cluster: Path) -> None:
    with pytest.raises(ConfigError, match=r"kubeconfig: .*/absent does not exist"):
        load_api_client(Kubernetes(mode="kubeconfig"))
    with pytest.raises(ConfigError, match="mode is in-cluster"):
        load_api_client(Kubernetes(mode="in-cluster"))


def test_kubeconfig_reaches_the_api(no_cluster: Path) -> None:
    with FakeKubeAPI() as api:
        api.seed(argo_canary().objects)
        path = api.write_kubeconfig(no_cluster / "kubeconfig", namespace="models")
        client = load_api_client(Kubernetes(mode="auto", kubeconfig=str(path)))
        assert client is not None
        rollout = KubeApi(client).get(
            "/apis/argoproj.io/v1alpha1/namespaces/models/rollouts/fraud-model"
        )
        assert rollout["kind"] == "Rollout"


def test_in_cluster_uses_the_service_account(
    no_cluster: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    account = no_cluster / "serviceaccount"
    account.mkdir()
    (account / "token").write_text("in-cluster-token")
    (account / "ca.crt").write_text("-----BEGIN CERTIFICATE-----\n")
    (account / "namespace").write_text("mlwatchdog\n")
    monkeypatch.setattr(kube_api, "SERVICE_ACCOUNT", account)
    monkeypatch.setattr(incluster_config, "SERVICE_TOKEN_FILENAME", str(account / "token"))
    monkeypatch.setattr(incluster_config, "SERVICE_CERT_FILENAME", str(account / "ca.crt"))
    monkeypatch.setenv("KUBERNETES_SERVICE_HOST", "10.96.0.1")
    monkeypatch.setenv("KUBERNETES_SERVICE_PORT", "443")

    client = load_api_client(Kubernetes())  # auto: in a pod, in-cluster wins over kubeconfig
    assert client is not None
    configuration = client.configuration
    assert configuration.host == "https://10.96.0.1:443"
    assert configuration.ssl_ca_cert == str(account / "ca.crt")
    token = configuration.get_api_key_with_prefix("BearerToken")
    assert token.lower() == "bearer in-cluster-token"  # the header param_serialize sends
    assert configuration.retries == 0  # KubeApi bounds the attempts itself
    assert in_cluster_namespace() == "mlwatchdog"
