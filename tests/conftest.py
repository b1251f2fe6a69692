"""The long tests first. pytest-xdist hands tests out in collection order (and, with `--dist
worksteal`, an idle worker takes the tail of a busy one's queue), so the notebooks, end-to-end,
fault and Dask tests, a minute or more each and mostly waiting on a daemon's clock, start early
and the quick unit tests fill the gaps, instead of a few long ones running last on an otherwise
idle machine."""

from __future__ import annotations

import pytest

LONG_FIRST = (
    "tests/notebooks/",
    "tests/e2e/",
    "tests/integration/test_replay_dask.py",
    "tests/faults/",
    "tests/integration/",
)


def _rank(item: pytest.Item) -> int:
    return next(
        (i for i, prefix in enumerate(LONG_FIRST) if item.nodeid.startswith(prefix)),
        len(LONG_FIRST),
    )


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    items.sort(key=_rank)  # stable: each group keeps its files' order
