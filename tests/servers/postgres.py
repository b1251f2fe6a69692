"""A real PostgreSQL for integration tests: its own cluster in a temporary directory, on loopback.

It never touches a system cluster (Debian's `main`): its own data directory, a free port and the
unix socket in the temporary directory, so it runs beside any installed service. As root it runs
as the `postgres` user (PostgreSQL refuses to run as root). Password authentication over TCP, so
the tests can check that a password never leaks into a reason.
"""

from __future__ import annotations

import glob
import os
import re
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import psycopg
import pytest

from tests.servers.ports import free_port

INSTALL_HINT = "PostgreSQL not installed: run `make test` as root, it apt-get installs postgresql"
USER = "watchdog"
PASSWORD = "pw-Zq7x-never-in-reasons"  # distinctive, so a leak is easy to find
DATABASE = "mlwatchdog"
READY_TIMEOUT = 30


def binaries() -> Path:
    """The bin directory of the newest installed PostgreSQL; skips the test when there is none."""
    found = glob.glob("/usr/lib/postgresql/*/bin/pg_ctl")
    if not found:
        pytest.skip(INSTALL_HINT)
    newest = max(found, key=lambda p: int(re.findall(r"/(\d+)/bin/", p)[0]))
    return Path(newest).parent


def _as_owner(command: list[str]) -> list[str]:
    # initdb and postgres refuse to run as root: run them as the `postgres` user then.
    return ["runuser", "-u", "postgres", "--", *command] if os.geteuid() == 0 else command


@dataclass
class PostgresServer:
    """A running PostgreSQL; `stop()` and `start()` for a server that goes down and comes back."""

    bindir: Path
    workdir: Path
    port: int = 0
    url: str = field(init=False, default="")

    @property
    def data_dir(self) -> Path:
        return self.workdir / "data"

    @property
    def log(self) -> Path:
        return self.workdir / "postgres.log"

    def conninfo(self, database: str = DATABASE) -> str:
        return f"host=127.0.0.1 port={self.port} user={USER} password={PASSWORD} dbname={database}"

    def _pg_ctl(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            _as_owner([str(self.bindir / "pg_ctl"), "-D", str(self.data_dir), *args]),
            capture_output=True,
            text=True,
            timeout=READY_TIMEOUT + 10,
            check=False,
        )

    def init(self) -> None:
        pwfile = self.workdir / "pwfile"
        pwfile.write_text(PASSWORD + "\n", encoding="utf-8")
        if os.geteuid() == 0:
            shutil.chown(self.workdir, "postgres", "postgres")
            shutil.chown(pwfile, "postgres", "postgres")
        initdb = [str(self.bindir / "initdb"), "-D", str(self.data_dir), "-U", USER]
        initdb += [f"--pwfile={pwfile}", "--auth-host=scram-sha-256", "--auth-local=trust"]
        initdb += ["-E", "UTF8", "--locale=C", "--no-sync"]
        done = subprocess.run(
            _as_owner(initdb),
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        if done.returncode != 0:
            raise RuntimeError(f"initdb failed:\n{done.stdout}\n{done.stderr}")

    def start(self) -> None:
        """Start (again) on the same port and data directory; returns once it accepts queries."""
        options = (
            f"-c listen_addresses=127.0.0.1 -p {self.port} -k {self.workdir} "
            "-c fsync=off -c synchronous_commit=off -c full_page_writes=off"
        )
        wait = ["-w", "-t", str(READY_TIMEOUT)]
        done = self._pg_ctl("-l", str(self.log), "-o", options, *wait, "start")
        if done.returncode != 0:
            tail = self.log.read_text(errors="replace")[-2000:] if self.log.exists() else ""
            raise RuntimeError(f"pg_ctl start failed:\n{done.stdout}\n{done.stderr}\n{tail}")

    def stop(self) -> None:
        """Fast shutdown: open sessions are ended, as when a server goes down."""
        if (self.data_dir / "postmaster.pid").exists():
            self._pg_ctl("-m", "fast", "-w", "-t", str(READY_TIMEOUT), "stop")

    def bound_port_failed(self) -> bool:
        text = self.log.read_text(errors="replace") if self.log.exists() else ""
        return "could not bind" in text or "Address already in use" in text


def start_postgres(server: PostgresServer) -> None:
    """Initialise the cluster, start it on a free port and create the `mlwatchdog` database."""
    server.init()
    for attempt in range(3):  # the free port can be taken before PostgreSQL binds it
        server.port = free_port()
        try:
            server.start()
            break
        except RuntimeError:
            if attempt == 2 or not server.bound_port_failed():
                raise
    with psycopg.connect(server.conninfo("postgres"), autocommit=True) as conn:
        conn.execute(f"CREATE DATABASE {DATABASE}")
    server.url = f"postgresql+psycopg://{USER}:{PASSWORD}@127.0.0.1:{server.port}/{DATABASE}"


@pytest.fixture(scope="session")
def postgres() -> Iterator[PostgresServer]:
    """A PostgreSQL for the whole test session; `.url` is its SQLAlchemy URL."""
    server = PostgresServer(binaries(), Path(tempfile.mkdtemp(prefix="mlwatchdog-pg-")))
    try:
        start_postgres(server)
        yield server
    finally:
        server.stop()
        shutil.rmtree(server.workdir, ignore_errors=True)
