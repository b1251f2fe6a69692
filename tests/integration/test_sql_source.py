"""The SQL source against a real PostgreSQL: exact rows, types and values of a window, its bounds,
queries with :start/:end, filters, sampling past max_rows, a server going down and coming back,
a query past its timeout, the reference signature, and the Observer reading a `type: sql` config.

The database's TimeZone is Asia/Kolkata (+05:30), so a naive `timestamp` column read in the
session's zone instead of as UTC would shift every window by 5.5 hours.
"""

# ruff: noqa: F811  (tests take the imported `postgres` fixture as a parameter of that name)
from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import numpy as np
import pandas as pd
import pytest
import sqlalchemy as sa

from mlwatchdog.core import DataStatus
from mlwatchdog.detectors import Reference
from mlwatchdog.rules import SqlSource, parse_config
from mlwatchdog.sources.base import SourceRead
from mlwatchdog.sources.observe import Observer
from mlwatchdog.sources.sql import SqlReader, SqlSourceError
from tests.servers.postgres import PASSWORD, PostgresServer, postgres  # noqa: F401

T0 = datetime(2026, 3, 10, 12, 0, tzinfo=UTC)
N_EVENTS = 60  # one a minute from T0
REGIONS = ["eu", "us", "apac"]
N_BIG = 20_000
COLUMNS = ["amount", "score", "n_items", "region", "Channel"]
SLOW = 'SELECT "timestamp", amount FROM sales.events CROSS JOIN pg_sleep(5)'  # 5 s, whatever rows


def event(i: int) -> dict[str, Any]:
    """Row i of sales.events: every kind of column the source must map."""
    moment = T0 + timedelta(minutes=i)
    return {
        "timestamp": moment,
        "logged_at": moment.replace(tzinfo=None),  # naive, in UTC
        "amount": Decimal(f"{i}.{i:02d}25"),  # numeric(12,4)
        "score": i / 8,
        "n_items": i % 4,
        "region": REGIONS[i % 3],
        "Channel": "web" if i % 2 else "app",  # mixed case: must be quoted
        "order": i,  # a reserved word: must be quoted
    }


def big_values() -> np.ndarray:
    return np.random.default_rng(7).gamma(2.0, 3.0, size=N_BIG)


@pytest.fixture(scope="module")
def engine(postgres: PostgresServer) -> Iterator[sa.Engine]:
    """The tables, written with a separate engine (the reader must not share it)."""
    engine = sa.create_engine(postgres.url, pool_pre_ping=True)  # tests restart the server
    with engine.begin() as conn:
        conn.exec_driver_sql("ALTER DATABASE mlwatchdog SET timezone TO 'Asia/Kolkata'")
        conn.exec_driver_sql("CREATE SCHEMA IF NOT EXISTS sales")
        conn.exec_driver_sql(
            'CREATE TABLE sales.events ("timestamp" timestamptz, logged_at timestamp, '
            "amount numeric(12,4), score double precision, n_items integer, region text, "
            '"Channel" text, "order" integer)'
        )
        conn.execute(
            sa.text(
                "INSERT INTO sales.events VALUES (:timestamp, :logged_at, :amount, :score, "
                ":n_items, :region, :Channel, :order)"
            ),
            [event(i) for i in range(N_EVENTS)],
        )
        conn.exec_driver_sql(
            'CREATE TABLE sales.big (id integer, "timestamp" timestamptz, x float8)'
        )
        conn.execute(
            sa.text("INSERT INTO sales.big VALUES (:id, :ts, :x)"),
            [
                {"id": i, "ts": T0 + timedelta(seconds=i), "x": float(x)}
                for i, x in enumerate(big_values())
            ],
        )
        conn.exec_driver_sql("CREATE TABLE sales.reference (amount float8, region text)")
        conn.execute(
            sa.text("INSERT INTO sales.reference VALUES (:amount, :region)"),
            [{"amount": float(i), "region": REGIONS[i % 3]} for i in range(300)],
        )
    engine.dispose()  # new sessions pick up the database's TimeZone
    yield engine
    with engine.begin() as conn:  # the server is the session's: leave it as it was
        conn.exec_driver_sql("DROP SCHEMA sales CASCADE")
        conn.exec_driver_sql("ALTER DATABASE mlwatchdog RESET timezone")
    engine.dispose()


def source(server: PostgresServer, **options: Any) -> SqlReader:
    spec = SqlSource.model_validate({"type": "sql", "url": server.url, **options})
    return SqlReader("warehouse", spec)


def events(server: PostgresServer, **options: Any) -> SqlReader:
    return source(server, **{"table": "sales.events", **options})


def minutes(a: int, b: int) -> tuple[datetime, datetime]:
    return T0 + timedelta(minutes=a), T0 + timedelta(minutes=b)


def ok(read: SourceRead) -> pd.DataFrame:
    assert read.status is DataStatus.OK, read.reason
    assert read.frame is not None
    return read.frame


# ------------------------------------------------------------------------------------ a window


def test_window_has_the_exact_rows_types_and_values(
    postgres: PostgresServer,
    engine: sa.Engine,
) -> None:
    frame = ok(events(postgres).read(COLUMNS, *minutes(10, 20)))
    frame = frame.sort_values("timestamp", ignore_index=True)
    assert list(frame.columns) == [*COLUMNS, "timestamp"]
    assert str(frame["timestamp"].dtype) == "datetime64[ns, UTC]"
    assert frame["timestamp"].tolist() == [
        pd.Timestamp(T0 + timedelta(minutes=i)) for i in range(10, 20)
    ]
    assert frame["amount"].dtype == np.float64  # numeric(12,4): Decimal -> float
    assert frame["amount"].tolist() == [float(Decimal(f"{i}.{i:02d}25")) for i in range(10, 20)]
    assert frame["score"].dtype == np.float64
    assert frame["score"].tolist() == [i / 8 for i in range(10, 20)]
    assert pd.api.types.is_integer_dtype(frame["n_items"])
    assert frame["n_items"].tolist() == [i % 4 for i in range(10, 20)]
    assert frame["region"].tolist() == [REGIONS[i % 3] for i in range(10, 20)]
    assert all(isinstance(v, str) for v in frame["Channel"])
    assert frame["Channel"].tolist() == ["web" if i % 2 else "app" for i in range(10, 20)]


def test_naive_timestamp_column_is_taken_as_utc(
    postgres: PostgresServer,
    engine: sa.Engine,
) -> None:
    reader = events(postgres, timestamp_column="logged_at")
    frame = ok(reader.read(["order"], *minutes(10, 20))).sort_values("logged_at")
    assert frame["order"].tolist() == list(range(10, 20))
    assert frame["logged_at"].tolist() == [
        pd.Timestamp(T0 + timedelta(minutes=i)) for i in range(10, 20)
    ]


@pytest.mark.parametrize("column", ["timestamp", "logged_at"])
def test_window_is_half_open(
    postgres: PostgresServer,
    engine: sa.Engine,
    column: str,
) -> None:
    reader = events(postgres, timestamp_column=column)
    frame = ok(reader.read(["order"], *minutes(10, 12)))
    assert sorted(frame["order"]) == [10, 11]  # 10:00 in, 12:00 out
    just_after = T0 + timedelta(minutes=10, microseconds=1)
    assert sorted(ok(reader.read(["order"], just_after, T0 + timedelta(minutes=12)))["order"]) == [
        11
    ]


def test_empty_window_is_no_data(postgres: PostgresServer, engine: sa.Engine) -> None:
    read = events(postgres).read(["amount"], T0 - timedelta(hours=1), T0)
    assert read.status is DataStatus.NO_DATA
    assert read.frame is None
    assert (
        read.reason == "no rows in [2026-03-10 11:00:00, 2026-03-10 12:00:00) of table sales.events"
    )


def test_fixed_table_without_window_reads_every_row(
    postgres: PostgresServer,
    engine: sa.Engine,
) -> None:
    reader = source(postgres, table="sales.reference", timestamp_column=None)
    frame = ok(reader.read(["amount", "region"]))
    assert len(frame) == 300
    assert sorted(frame["amount"]) == [float(i) for i in range(300)]


def test_missing_column_is_an_error_naming_it(
    postgres: PostgresServer,
    engine: sa.Engine,
) -> None:
    read = events(postgres).read(["amount", "income"], *minutes(0, 10))
    assert read.status is DataStatus.ERROR
    assert "['income']" in read.reason and "table sales.events" in read.reason
    assert "'amount'" in read.reason and "'Channel'" in read.reason  # what it has
    query = source(postgres, query='SELECT amount, "timestamp" FROM sales.events')
    read = query.read(["income"], *minutes(0, 10))
    assert read.status is DataStatus.ERROR
    assert "['income']" in read.reason and "query" in read.reason and "'amount'" in read.reason


def test_missing_table_is_an_error(postgres: PostgresServer, engine: sa.Engine) -> None:
    read = source(postgres, table="sales.nope").read(["amount"], *minutes(0, 10))
    assert read.status is DataStatus.ERROR
    assert 'relation "sales.nope" does not exist' in read.reason


def test_timestamp_column_of_another_type_is_an_error(
    postgres: PostgresServer,
    engine: sa.Engine,
) -> None:
    read = events(postgres, timestamp_column="region").read(["amount"], *minutes(0, 10))
    assert read.status is DataStatus.ERROR
    assert "text >= timestamp with time zone" in read.reason


# ------------------------------------------------------------------------------------- queries


def test_query_with_bound_start_and_end(postgres: PostgresServer, engine: sa.Engine) -> None:
    text = (
        'SELECT "timestamp", amount, region FROM sales.events\n'
        'WHERE "timestamp" >= :start AND "timestamp" < :end;'
    )
    frame = ok(source(postgres, query=text).read(["amount", "region"], *minutes(5, 8)))
    assert sorted(frame["amount"]) == [5.0525, 6.0625, 7.0725]
    # Without a timestamp column, the query alone windows the rows.
    only_query = source(postgres, query=text, timestamp_column=None)
    frame = ok(only_query.read(["amount"], *minutes(5, 8)))
    assert list(frame.columns) == ["amount"] and len(frame) == 3


def test_query_without_parameters_is_windowed_on_its_timestamp(
    postgres: PostgresServer,
    engine: sa.Engine,
) -> None:
    text = 'SELECT "order", "timestamp" FROM sales.events WHERE region <> \'apac\''
    frame = ok(source(postgres, query=text).read(["order"], *minutes(0, 6)))
    assert sorted(frame["order"]) == [0, 1, 3, 4]


def test_query_without_a_way_to_window_is_an_error(
    postgres: PostgresServer,
    engine: sa.Engine,
) -> None:
    reader = source(postgres, query="SELECT amount FROM sales.events", timestamp_column=None)
    read = reader.read(["amount"], *minutes(0, 6))
    assert read.status is DataStatus.ERROR and "timestamp_column" in read.reason
    assert len(ok(reader.read(["amount"]))) == N_EVENTS  # fine as a fixed reference


# ------------------------------------------------------------------------------------- filters


@pytest.mark.parametrize(
    ("filters", "orders"),
    [
        ({"region": "eu"}, [0, 3, 6, 9]),
        ({"region": ["eu", "us"]}, [0, 1, 3, 4, 6, 7, 9]),
        ({"region": ["eu", "us"], "Channel": "web"}, [1, 3, 7, 9]),
        ({"n_items": 2}, [2, 6]),
        ({"region": "eu' OR '1'='1"}, []),  # bound, never formatted into the SQL
    ],
)
def test_filters_apply_in_sql(
    postgres: PostgresServer,
    engine: sa.Engine,
    filters: dict[str, Any],
    orders: list[int],
) -> None:
    for reader in (
        events(postgres),
        source(postgres, query='SELECT * FROM sales.events WHERE "timestamp" < :end'),
    ):
        read = reader.read(["order"], *minutes(0, 10), filters)
        if not orders:
            assert read.status is DataStatus.NO_DATA, read.reason
            continue
        assert sorted(ok(read)["order"]) == orders


# ------------------------------------------------------------------------------------ sampling


def test_window_beyond_max_rows_is_sampled_uniformly(
    postgres: PostgresServer,
    engine: sa.Engine,
) -> None:
    reader = source(postgres, table="sales.big", max_rows=2000, chunk_rows=300)
    start, end = T0 + timedelta(seconds=1000), T0 + timedelta(seconds=19_000)
    read = reader.read(["id", "x"], start, end)
    frame = ok(read)
    assert len(frame) == 2000
    assert read.reason == "2000 of 18000 rows (sampled)"
    assert frame["id"].is_unique and frame["id"].between(1000, 18_999).all()
    window = big_values()[1000:19_000]
    stderr = window.std() / np.sqrt(2000)
    assert abs(frame["x"].mean() - window.mean()) < 5 * stderr
    # Uniform over the window: the sampled ids spread evenly, not the first rows of a scan.
    quarters = np.histogram(frame["id"], bins=4, range=(1000, 19_000))[0]
    assert all(abs(q - 500) < 5 * np.sqrt(500) for q in quarters), quarters


def test_window_at_max_rows_is_read_whole(postgres: PostgresServer, engine: sa.Engine) -> None:
    reader = source(postgres, table="sales.big", max_rows=500, chunk_rows=64)
    read = reader.read(["id"], T0, T0 + timedelta(seconds=500))
    assert sorted(ok(read)["id"]) == list(range(500))
    assert read.reason == "500 rows"


# ----------------------------------------------------------------------------------- failures


def test_server_down_is_an_error_then_reads_recover(
    postgres: PostgresServer,
    engine: sa.Engine,
) -> None:
    reader = events(postgres)
    assert len(ok(reader.read(["amount"], *minutes(0, 10)))) == 10  # a pooled connection now
    postgres.stop()
    try:
        began = time.monotonic()
        read = reader.read(["amount"], *minutes(0, 10))
        assert read.status is DataStatus.ERROR
        assert read.frame is None
        assert "127.0.0.1" in read.reason and PASSWORD not in read.reason
        assert time.monotonic() - began < 5
        with pytest.raises(SqlSourceError):
            reader.signature(*minutes(0, 10))
    finally:
        postgres.start()
    assert len(ok(reader.read(["amount"], *minutes(0, 10)))) == 10
    # A restart between two reads: the pooled connection is dead, and replaced unseen.
    postgres.stop()
    postgres.start()
    assert len(ok(reader.read(["amount"], *minutes(0, 10)))) == 10


def test_slow_query_times_out_on_the_server(postgres: PostgresServer, engine: sa.Engine) -> None:
    reader = source(postgres, query=SLOW, timeout="1s")
    began = time.monotonic()
    read = reader.read(["amount"], *minutes(0, 10))
    took = time.monotonic() - began
    assert read.status is DataStatus.ERROR
    assert "timed out after 1s" in read.reason
    assert took < 2.0, took
    # The cancelled statement leaves the connection usable.
    fast = source(postgres, table="sales.events", timeout="1s")
    assert len(ok(fast.read(["amount"], *minutes(0, 10)))) == 10


def test_password_never_appears_in_a_reason(postgres: PostgresServer, engine: sa.Engine) -> None:
    wrong = postgres.url.replace(PASSWORD, PASSWORD + "-wrong")
    unused_port = postgres.url.replace(f":{postgres.port}/", ":1/")
    cases = [
        SqlReader("s", SqlSource(type="sql", url=wrong, table="sales.events")),
        SqlReader("s", SqlSource(type="sql", url=unused_port, table="sales.events")),
        source(postgres, table="sales.nope"),
        source(postgres, query="SELEC broken"),
        source(postgres, query=SLOW.replace("5", "3"), timeout="500ms"),
        events(postgres),
    ]
    reasons = [reader.read(["amount"], *minutes(0, 10)).reason for reader in cases]
    reasons.append(events(postgres).read(["income"], *minutes(0, 10)).reason)
    for reader in cases[:3]:
        with pytest.raises(SqlSourceError) as raised:
            reader.signature()
        reasons.append(str(raised.value))
    assert "password authentication failed" in reasons[0]
    assert "***" in reasons[0] and "***" in reasons[1]
    assert "timed out" in reasons[4]
    assert all(PASSWORD not in r for r in reasons), reasons


# ---------------------------------------------------------------------------------- signature


def test_signature_changes_only_when_the_window_changes(
    postgres: PostgresServer,
    engine: sa.Engine,
) -> None:
    with engine.begin() as conn:
        conn.exec_driver_sql('CREATE TABLE sales.sig ("timestamp" timestamptz, x float8)')
        conn.execute(
            sa.text("INSERT INTO sales.sig VALUES (:ts, :x)"),
            [{"ts": T0 + timedelta(minutes=i), "x": float(i)} for i in range(10)],
        )
    reader = source(postgres, table="sales.sig")
    window = minutes(0, 5)
    first = reader.signature(*window)
    assert reader.signature(*window) == first
    insert = sa.text("INSERT INTO sales.sig VALUES (:ts, 1.0)")
    with engine.begin() as conn:  # outside the window: no change
        conn.execute(insert, {"ts": T0 + timedelta(minutes=7)})
    assert reader.signature(*window) == first
    with engine.begin() as conn:
        conn.execute(insert, {"ts": T0 + timedelta(minutes=2, seconds=30)})
    second = reader.signature(*window)
    assert second != first
    assert reader.signature(*window) == second
    # Read whole, a value changed in place (same row count) changes it too.
    fixed = source(postgres, table="sales.sig", timestamp_column=None)
    before = fixed.signature()
    assert fixed.signature() == before
    with engine.begin() as conn:
        conn.exec_driver_sql("UPDATE sales.sig SET x = x + 1 WHERE x = 3")
    assert fixed.signature() != before


# ------------------------------------------------------------------------------------ observer

RULES = """\
sources:
  warehouse:
    type: sql
    url: "${PG_URL}"
    table: sales.events
    timeout: 5s
  training:
    type: sql
    url: "${PG_URL}"
    query: SELECT amount, region FROM sales.reference
    timestamp_column: null
targets:
  - name: model
    samples: {source: warehouse, window: 15m, filters: {region: [eu, us]}}
    reference: {source: training}
    columns:
      features: {amount: numeric, region: categorical}
    checks:
      - {name: drift, type: drift, test: ks}
"""


def test_observer_reads_sql_samples_and_reference(
    postgres: PostgresServer,
    engine: sa.Engine,
) -> None:
    config = parse_config(RULES, env={"PG_URL": postgres.url})
    observer = Observer(config)
    now = T0 + timedelta(minutes=30)
    seen = observer.observe(config.targets[0], now)
    assert seen.samples_status is DataStatus.OK, seen.samples_reason
    assert sorted(seen.samples["amount"]) == [
        float(Decimal(f"{i}.{i:02d}25")) for i in range(15, 30) if i % 3 != 2
    ]
    assert seen.reference_status is DataStatus.OK, seen.reference_reason
    assert isinstance(seen.reference, Reference)
    assert seen.reference.columns == ("amount", "region")
    again = observer.observe(config.targets[0], now)
    assert again.reference is seen.reference and observer.reference_builds == 1

    postgres.stop()
    try:
        down = observer.observe(config.targets[0], now)
    finally:
        postgres.start()
    assert down.samples_status is DataStatus.ERROR and down.samples is None
    assert down.reference_status is DataStatus.ERROR and down.reference is None
    assert PASSWORD not in down.samples_reason + down.reference_reason

    back = observer.observe(config.targets[0], now)
    assert back.samples_status is DataStatus.OK, back.samples_reason
    assert back.reference_status is DataStatus.OK, back.reference_reason
