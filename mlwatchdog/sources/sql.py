"""The SQL source: sample windows from a table or a query of any SQLAlchemy database.

The source is a table (`schema.table`, identifiers quoted by SQLAlchemy) or the user's SELECT,
which may use the bound parameters :start and :end (never formatted into the text); either is
wrapped as a subquery, so the window on `timestamp_column`, the filters (equality or IN lists)
and the row cap are added by SQLAlchemy Core with bound values, for tables and queries alike.

One read is one transaction; on PostgreSQL it is REPEATABLE READ and READ ONLY, so the count and
the rows see the same snapshot (a window ending now keeps receiving rows) and a query cannot
write. In it the session's TimeZone is UTC, so a naive `timestamp` column compares with the
window as UTC time, and the server cancels any statement running past what is left of `timeout`
(`statement_timeout`, set local to the transaction; also checked between fetches).

Row cap: count(*) of the window first. Up to `max_rows` rows are all read. Beyond, the server
draws a uniform random sample without replacement, `WHERE random() < p ORDER BY random() LIMIT
max_rows`: the Bernoulli pre-filter keeps about max_rows + 5 sd rows (p from the count), so the
sort is over those only, and only max_rows rows cross the network. Every subset of max_rows rows
is as likely; it is not seeded (a parallel scan reorders rows anyway), and a Reference is built
once per signature, so a fixed reference does not change between evaluations. Rows arrive
`chunk_rows` per fetch from a server-side cursor: the client holds at most max_rows rows.

Types: numbers come back as float64 (Decimal too; integer columns without NULLs stay int64),
other values as strings, and the timestamp column as UTC (naive taken as UTC) like files. Every
failure is a SourceRead with its reason (the URL's password masked), never an exception; a pool
connection broken by a server restart is detected by `pool_pre_ping` and replaced.
"""

from __future__ import annotations

import math
import numbers
import re
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import quote_plus

import pandas as pd
import sqlalchemy as sa
from sqlalchemy.engine import URL, Connection, Engine, make_url
from sqlalchemy.exc import DBAPIError, InterfaceError, OperationalError, SQLAlchemyError

from mlwatchdog.core import DataStatus
from mlwatchdog.errors import InputError
from mlwatchdog.rules import SqlSource, format_duration
from mlwatchdog.sources.base import Filters, SourceRead
from mlwatchdog.sources.files import to_utc

ALIAS = "w"  # the subquery every read selects from
CONNECT_TIMEOUT = 5  # seconds at most, whatever the query timeout
_BIND = re.compile(r"(?<![:\w\\]):(\w+)(?!:)")  # SQLAlchemy's own rule for text() parameters
_QUERY_CANCELED = "57014"  # PostgreSQL's SQLSTATE for a statement cancelled by statement_timeout


class SqlSourceError(Exception):
    """A failure of the source, with a reason fit for logs (no password, no SQL dump)."""


class _Deadline(SqlSourceError):
    """The read ran past the source's timeout between two fetches."""


class SqlReader:
    """Reads one `type: sql` source; one instance (and engine) per source, shared by targets."""

    def __init__(self, name: str, spec: SqlSource) -> None:
        self.name = name
        self.spec = spec
        self._engine: Engine | None = None
        self._lock = threading.Lock()
        self._what = f"table {spec.table}" if spec.table else "query"
        try:
            url = make_url(spec.url.reveal())
            self._masked = url.render_as_string(hide_password=True)
            self._secrets = (
                [str(url.password), quote_plus(str(url.password))] if url.password else []
            )
        except (SQLAlchemyError, ValueError):
            self._masked, self._secrets = "<unparsable url>", []

    # ------------------------------------------------------------------------------- protocol

    def signature(self, start: datetime | None = None, end: datetime | None = None) -> Any:
        """count(*) and min/max of the timestamp of [start, end); for a source read whole, the
        count and (PostgreSQL) the sum of the rows' hashes, since a reloaded reference table can
        keep its row count. Raises SqlSourceError (the Observer makes it the reference's reason)."""
        windowed = start is not None and end is not None
        ts = self.spec.timestamp_column if windowed else None
        try:
            with self._transaction() as (conn, deadline):
                source = self._source(conn, deadline, start, end)
                measures: list[Any] = [sa.func.count()]
                if ts is not None:
                    measures += [sa.func.min(source.c[ts]), sa.func.max(source.c[ts])]
                elif conn.dialect.name == "postgresql":
                    measures.append(sa.func.sum(sa.text(f"hashtext({ALIAS}::text)")))
                query = sa.select(*measures).select_from(source)
                query = query.where(*self._window(source, start, end))
                _limit(conn, deadline)
                return tuple(conn.execute(query).one())
        except (SQLAlchemyError, SqlSourceError) as exc:
            raise SqlSourceError(self._reason(exc)) from None

    def read(
        self,
        columns: Sequence[str],
        start: datetime | None = None,
        end: datetime | None = None,
        filters: Filters | None = None,
    ) -> SourceRead:
        """Rows of [start, end) (every row without a window) with `columns`, filtered in SQL."""
        ts = self.spec.timestamp_column
        windowed = start is not None and end is not None
        if windowed and ts is None and not self._binds():
            return self._error(f"source {self.name!r} has no timestamp_column to window on")
        wanted = list(
            dict.fromkeys([*columns, *(filters or {}), *([ts] if windowed and ts else [])])
        )
        try:
            with self._transaction() as (conn, deadline):
                source = self._source(conn, deadline, start, end, wanted)
                rows = sa.select(*(source.c[c] for c in wanted)).where(
                    *self._window(source, start, end), *_filters(source, filters or {})
                )
                _limit(conn, deadline)
                total = conn.execute(
                    sa.select(sa.func.count()).select_from(rows.subquery())
                ).scalar_one()
                if total == 0:
                    return SourceRead(None, DataStatus.NO_DATA, self._no_rows(start, end))
                sampled = total > self.spec.max_rows
                if sampled:
                    rows = _sample(rows, total, self.spec.max_rows)
                frame = self._fetch(conn, deadline, rows, wanted)
            if windowed and ts:
                frame[ts] = to_utc(frame[ts], self._what, ts)  # naive is UTC, as in files
        except (SQLAlchemyError, SqlSourceError, InputError) as exc:
            return self._error(self._reason(exc))
        if sampled:
            return SourceRead(frame, DataStatus.OK, f"{len(frame)} of {total} rows (sampled)")
        return SourceRead(frame, DataStatus.OK, f"{len(frame)} rows")

    # -------------------------------------------------------------------------------- queries

    @property
    def engine(self) -> Engine:
        """The source's engine, made on first use (a config can name a server not up yet)."""
        with self._lock:
            if self._engine is None:
                url = make_url(self.spec.url.reveal())
                self._engine = sa.create_engine(
                    url,
                    pool_pre_ping=True,  # a connection broken by a server restart is replaced
                    pool_size=2,
                    connect_args=_connect_args(url, self.spec.timeout),
                )
            return self._engine

    @contextmanager
    def _transaction(self) -> Iterator[tuple[Connection, float]]:
        """A connection in a read-only snapshot transaction (PostgreSQL), rolled back at the end;
        with the monotonic deadline of the read."""
        deadline = time.monotonic() + self.spec.timeout.total_seconds()
        with self.engine.connect() as conn:
            if conn.dialect.name == "postgresql":
                conn.execute(sa.text("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY"))
                conn.execute(sa.text("SELECT set_config('TimeZone', 'UTC', true)"))
            yield conn, deadline  # closing returns it to the pool, which rolls back

    def _source(
        self,
        conn: Connection,
        deadline: float,
        start: datetime | None,
        end: datetime | None,
        wanted: Sequence[str] = (),
    ) -> sa.FromClause:
        """The table or the query as a FROM clause whose columns are those it really has;
        a column of `wanted` it lacks is an error naming it and the columns there are."""
        if self.spec.table is not None:
            schema, _, table = self.spec.table.rpartition(".")
            bare: sa.FromClause = sa.table(table, schema=schema or None)
        else:
            bare = self._query(start, end).columns().subquery(ALIAS)
        _limit(conn, deadline)
        probe: sa.Select[Any] = sa.select(sa.literal_column("*")).select_from(bare).limit(0)
        names = list(conn.execute(probe).keys())
        windowed = start is not None and end is not None
        needed = [*wanted, *([self.spec.timestamp_column] if windowed else [])]
        missing = [c for c in dict.fromkeys(needed) if c and c not in names]
        if missing:
            raise SqlSourceError(f"column(s) {missing} not in {self._what}; it has {names}")
        columns: list[sa.ColumnClause[Any]] = [sa.column(n) for n in names]
        if self.spec.table is not None:
            return sa.table(table, *columns, schema=schema or None).alias(ALIAS)
        return self._query(start, end).columns(*columns).subquery(ALIAS)

    def _query(self, start: datetime | None, end: datetime | None) -> sa.TextClause:
        """The user's query with :start and :end bound (the window's bounds, or NULL)."""
        text = sa.text((self.spec.query or "").strip().rstrip(";"))
        values = {"start": _utc(start), "end": _utc(end)}
        binds = [
            sa.bindparam(k, values[k], type_=sa.DateTime(timezone=True)) for k in self._binds()
        ]
        return text.bindparams(*binds)

    def _binds(self) -> list[str]:
        """Which of :start and :end the query uses."""
        used = set(_BIND.findall(self.spec.query or ""))
        return [k for k in ("start", "end") if k in used]

    def _window(
        self, source: sa.FromClause, start: datetime | None, end: datetime | None
    ) -> list[sa.ColumnElement[bool]]:
        ts = self.spec.timestamp_column
        if start is None or end is None or ts is None:
            return []
        stamp = source.c[ts]
        lower = sa.bindparam("window_start", _utc(start), type_=sa.DateTime(timezone=True))
        upper = sa.bindparam("window_end", _utc(end), type_=sa.DateTime(timezone=True))
        return [stamp >= lower, stamp < upper]

    def _fetch(
        self, conn: Connection, deadline: float, rows: sa.Select[Any], names: list[str]
    ) -> pd.DataFrame:
        """The rows, `chunk_rows` per fetch from a server-side cursor, as typed columns."""
        _limit(conn, deadline)
        chunks = []
        streamed = conn.execution_options(stream_results=True, max_row_buffer=self.spec.chunk_rows)
        with streamed.execute(rows) as result:
            for part in result.partitions(self.spec.chunk_rows):
                chunks.append(_typed(pd.DataFrame.from_records(part, columns=names)))
                if time.monotonic() > deadline:
                    raise _Deadline(self._timed_out())
        return pd.concat(chunks, ignore_index=True)

    # -------------------------------------------------------------------------------- reasons

    def _error(self, reason: str) -> SourceRead:
        return SourceRead(None, DataStatus.ERROR, reason)

    def _no_rows(self, start: datetime | None, end: datetime | None) -> str:
        if start is None or end is None:
            return f"no rows in {self._what}"
        return f"no rows in [{start:%Y-%m-%d %H:%M:%S}, {end:%Y-%m-%d %H:%M:%S}) of {self._what}"

    def _timed_out(self) -> str:
        limit = format_duration(self.spec.timeout)
        return f"query on {self._what} timed out after {limit} (the source's timeout)"

    def _reason(self, exc: Exception) -> str:
        """A one-line reason: the server's message, never the SQL or the password."""
        cancelled = (
            isinstance(exc, DBAPIError) and getattr(exc.orig, "sqlstate", None) == _QUERY_CANCELED
        )
        if cancelled or isinstance(exc, _Deadline):
            reason = self._timed_out()
        elif isinstance(exc, DBAPIError) and exc.orig is not None:
            message = _first_line(str(exc.orig)) or type(exc.orig).__name__
            if isinstance(exc, OperationalError | InterfaceError):
                reason = f"{self._masked}: {message}"  # connection trouble: say which server
            else:
                reason = f"{self._what}: {message}"
        else:
            reason = _first_line(str(exc)) or type(exc).__name__
        for secret in self._secrets:  # in case a driver echoes its connection string
            reason = reason.replace(secret, "***")
        return reason


def _connect_args(url: URL, timeout: timedelta) -> dict[str, Any]:
    """libpq options for PostgreSQL, unless the URL's query string sets them: a down server must
    not hold a read for long (libpq's minimum connect_timeout is 2 s)."""
    if url.get_backend_name() != "postgresql":
        return {}
    wait = max(2, min(CONNECT_TIMEOUT, math.ceil(timeout.total_seconds())))
    defaults = {"connect_timeout": wait, "application_name": "mlwatchdog"}
    return {k: v for k, v in defaults.items() if k not in url.query}


def _sample(rows: sa.Select[Any], total: int, size: int) -> sa.Select[Any]:
    """A uniform sample of `size` of the `total` rows: a Bernoulli pre-filter keeping ~size + 5 sd
    (rarely fewer than size: then all of those), then a random `size` of what it kept."""
    keep = min(1.0, (size + 5 * math.sqrt(size) + 10) / total)
    return rows.where(sa.func.random() < keep).order_by(sa.func.random()).limit(size)


def _filters(source: sa.FromClause, filters: Filters) -> list[sa.ColumnElement[bool]]:
    """column = value, or column IN (values), with bound values."""
    found: list[sa.ColumnElement[bool]] = []
    for column, value in filters.items():
        if isinstance(value, list):
            found.append(source.c[column].in_(value))
        else:
            found.append(source.c[column] == value)
    return found


def _typed(frame: pd.DataFrame) -> pd.DataFrame:
    """Object columns as float64 when they hold numbers (Decimal), else as strings."""
    for name in frame.columns:
        column = frame[name]
        if column.dtype != object:
            continue
        kinds = {type(v) for v in column if v is not None}  # a SQL column has one type
        if all(issubclass(k, numbers.Number) and not issubclass(k, bool) for k in kinds):
            frame[name] = column.astype("float64")  # Decimal too; all NULL is NaN
        elif kinds - {str}:
            frame[name] = column.map(str, na_action="ignore")
    return frame


def _limit(conn: Connection, deadline: float) -> None:
    """Let the server cancel the next statement when the read's time is up (PostgreSQL)."""
    left_ms = math.ceil((deadline - time.monotonic()) * 1000)
    if left_ms <= 0:
        raise _Deadline("timed out")
    if conn.dialect.name == "postgresql":
        setting = sa.text("SELECT set_config('statement_timeout', :ms, true)")
        conn.execute(setting, {"ms": str(left_ms)})


def _utc(moment: datetime | None) -> datetime | None:
    if moment is None or moment.tzinfo is not None:
        return moment
    return moment.replace(tzinfo=UTC)  # naive bounds are UTC, like naive timestamps


def _first_line(text: str) -> str:
    return next((line.strip() for line in text.splitlines() if line.strip()), "")
