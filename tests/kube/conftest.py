"""`kube_api`: a started FakeKubeAPI per test, stopped afterwards.

The teardown fails the test if a reactor raised or the fake hit a bug of its own: both would
otherwise only show up as a puzzling state or a 500 somewhere in the test. A test that provokes
either on purpose clears `kube_api.reactor_errors` / `kube_api.internal_errors` itself.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.kube.apiserver import FakeKubeAPI


@pytest.fixture
def kube_api() -> Iterator[FakeKubeAPI]:
    with FakeKubeAPI() as api:
        yield api
    assert not api.reactor_errors, f"reactors raised: {api.reactor_errors!r}"
    assert not api.internal_errors, f"FakeKubeAPI bugs: {api.internal_errors!r}"
