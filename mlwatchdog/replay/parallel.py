"""Replay's measuring, in this process or on Dask: observe and measure each time's window (the
expensive half of an evaluation, independent per time), in chunks of times; `replay` folds the
results through `decide` in time order. Called by `replay.timeline.replay` only.

One function measures a run of times (`measure_times`): serially with one Observer for the whole
range, on Dask inside `measure_chunk`, one task per target and chunk, each with its own Observer.
Windows are read one at a time and dropped once measured; only the check results (without their
per-column rows, which the timeline does not carry) come back. dask is imported on use only.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any

from mlwatchdog.core import CheckResult, measure
from mlwatchdog.errors import MlwatchdogError
from mlwatchdog.rules import Config, Target
from mlwatchdog.sources.observe import Observer

EXECUTORS = ("serial", "dask")
MAX_CHUNK = 1_000  # times per task at most: tasks of seconds, not hours, and small results
TASKS_PER_WORKER = 4  # the default chunk gives each worker thread about this many tasks
AHEAD_PER_WORKER = 2  # chunks submitted or held unfolded, per worker thread

Results = tuple[CheckResult, ...]  # one target's check results at one time
Step = tuple[Results, ...]  # every target's, in the order of the targets replayed


@dataclass(frozen=True)
class Plan:
    """How a replay measures: the executor, its tasks and where they run."""

    executor: str
    tasks: int = 0  # 0: in this process, no tasks
    chunk: int = 0  # times per task
    workers: int = 0  # worker threads of the Dask cluster
    scheduler: str = ""  # its address
    local: bool = False  # a LocalCluster started for this run

    def __str__(self) -> str:
        if self.executor == "serial":
            return "executor serial: in this process"
        where = "a LocalCluster for this run" if self.local else "an existing scheduler"
        return (
            f"executor dask: {self.tasks} task(s) of up to {self.chunk} time(s) on "
            f"{self.workers} worker thread(s), {where} at {self.scheduler}"
        )


def measure_times(
    observer: Observer, target: Target, times: Iterable[datetime]
) -> Iterator[Results]:
    """The target's check results at each time, in order: observe one window, measure it, drop
    it. Per-column rows are left out (the timeline has one row per check)."""
    for now in times:
        results = measure(target, observer.observe(target, now))
        yield tuple(replace(result, columns=()) for result in results)


def measure_chunk(config: dict[str, Any], target: str, times: list[datetime]) -> list[Results]:
    """A Dask task: `config` (`Config.model_dump(by_alias=True)`, plain data) rebuilt, an
    Observer of its own, and the results of `target` at `times`."""
    rules = Config.model_validate(config)
    return list(measure_times(Observer(rules), rules.target(target), times))


def default_chunk(times: int, workers: int) -> int:
    """At least TASKS_PER_WORKER tasks per worker thread, of at most MAX_CHUNK times, and as
    many tasks for every worker thread (none idles while another runs a last round alone)."""
    workers = max(workers, 1)
    rounds = max(TASKS_PER_WORKER, math.ceil(times / (workers * MAX_CHUNK)))
    return max(1, math.ceil(times / (workers * rounds)))


@contextmanager
def measuring(
    config: Config,
    targets: Sequence[Target],
    times: Sequence[datetime],
    *,
    executor: str = "serial",
    scheduler: str | None = None,
    chunk: int | None = None,
    on_plan: Callable[[Plan], None] | None = None,
) -> Iterator[Iterator[Step]]:
    """Every target's results at each of `times`, in time order, measured by `executor`.

    dask: `scheduler` is the address of a running scheduler (its workers must read the same
    sources); None starts a LocalCluster (a worker process per CPU, one thread each) and closes
    it after. `chunk` is the number of times per task (default: `default_chunk`).
    """
    if executor not in EXECUTORS:
        raise ValueError(f"executor must be one of {', '.join(EXECUTORS)}, not {executor!r}")
    if chunk is not None and chunk < 1:
        raise ValueError(f"chunk must be at least 1, not {chunk}")
    report = on_plan or (lambda plan: None)
    if not targets:  # nothing to measure, on any executor
        report(Plan(executor))
        yield (() for _ in times)
        return
    if executor == "serial":
        observer = Observer(config)
        report(Plan("serial"))
        yield zip(*(measure_times(observer, target, times) for target in targets), strict=True)
        return
    payload = config.model_dump(by_alias=True)
    if Config.model_validate(payload) != config:  # what the workers rebuild is what runs here
        raise MlwatchdogError("the config does not survive model_dump/model_validate; use serial")
    with _client(scheduler) as (client, address, local):
        workers = sum(client.nthreads().values())
        size = chunk or default_chunk(len(times), workers)
        chunks = [list(times[i : i + size]) for i in range(0, len(times), size)]
        report(Plan("dask", len(chunks) * len(targets), size, workers, address, local))
        names = [target.name for target in targets]
        yield _in_order(client, payload, names, chunks, ahead=AHEAD_PER_WORKER * workers)


def _in_order(
    client: Any, payload: dict[str, Any], names: list[str], chunks: list[list[datetime]], ahead: int
) -> Iterator[Step]:
    """The chunks' results as they complete, yielded in time order. At most `ahead` chunks are
    submitted but not yet yielded, so the driver holds a bounded number of results."""
    from distributed import as_completed

    done = as_completed()
    task_of: dict[Any, tuple[int, int]] = {}  # future -> (chunk, target)
    results: dict[int, dict[int, list[Results]]] = {}  # completed, not yet yielded
    submitted = folded = 0

    def top_up() -> None:
        nonlocal submitted
        while submitted < len(chunks) and submitted - folded < max(ahead, 1):
            for j, name in enumerate(names):
                future = client.submit(measure_chunk, payload, name, chunks[submitted], pure=False)
                task_of[future] = (submitted, j)
                done.add(future)
            submitted += 1

    top_up()
    for future in done:
        index, j = task_of.pop(future)
        results.setdefault(index, {})[j] = future.result()
        future.release()
        while len(results.get(folded, ())) == len(names):
            per_target = results.pop(folded)
            yield from zip(*(per_target[j] for j in range(len(names))), strict=True)
            folded += 1
            top_up()


@contextmanager
def _client(scheduler: str | None) -> Iterator[tuple[Any, str, bool]]:
    """A Client of the scheduler at `scheduler`, or of a LocalCluster started (and closed) here."""
    try:
        from distributed import Client, LocalCluster
    except ImportError as exc:
        raise MlwatchdogError(
            f"executor dask needs dask.distributed ({exc}): pip install 'mlwatchdog[dask]'"
        ) from None
    if scheduler is None:
        cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
        with (
            LocalCluster(
                n_workers=cpus or 1,
                threads_per_worker=1,
                processes=True,
                dashboard_address=None,
            ) as cluster,
            Client(cluster) as client,
        ):
            yield client, cluster.scheduler_address, True
        return
    try:
        client = Client(scheduler, timeout="30s")
    except (OSError, TimeoutError, ValueError) as exc:
        raise MlwatchdogError(f"cannot reach the Dask scheduler at {scheduler}: {exc}") from None
    with client:
        if not client.nthreads():
            try:
                client.wait_for_workers(1, timeout=30)
            except TimeoutError:
                raise MlwatchdogError(
                    f"the Dask scheduler at {scheduler} has no workers (waited 30 s)"
                ) from None
        yield client, scheduler, False
