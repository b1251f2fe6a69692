"""Fixtures of the action tests: the fake API server (every object it holds validated against its
schema at the end, and no reactor or server error) and an audit log."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from mlwatchdog.actions.audit import AuditLog
from tests.kube.apiserver import FakeKubeAPI


@pytest.fixture
def api() -> Iterator[FakeKubeAPI]:
    with FakeKubeAPI() as fake:
        yield fake
    fake.assert_all_valid()  # every object written, by us or the emulated controllers
    assert not fake.reactor_errors, fake.reactor_errors
    assert not fake.internal_errors, fake.internal_errors


@pytest.fixture
def audit(tmp_path: Path) -> AuditLog:
    return AuditLog(tmp_path / "audit.jsonl")
