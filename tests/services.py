"""Real database servers for tests: PostgreSQL and Redis, started in temp dirs on 127.0.0.1.

Each server runs from Debian's packages (`apt-get install postgresql redis-server`; .ci/run
installs them) on a free loopback port with its own data folder, so a system service (e.g.
Debian's cluster on 5432) is neither needed nor touched. Tests skip, naming the package, when
a binary is missing.

Use the session fixtures by importing them into a test module:

    from tests.services import postgres_server, redis_server  # noqa: F401 - pytest fixtures
"""

from __future__ import annotations

import glob
import inspect
import os
import shutil
import socket
import subprocess
import tempfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from tests.ports import free_port

_START_TIMEOUT_S = 60.0


def rerun_tests(module: ModuleType, fixtures: set[str], skip: set[str] = frozenset()) -> dict[str, Any]:
    """The test functions of `module` that request any of `fixtures`: imported into another test
    module, they run again with that module's fixtures (e.g. a PostgreSQL `location`)."""
    return {
        name: fn
        for name, fn in vars(module).items()
        if name.startswith("test_")
        and name not in skip
        and callable(fn)
        and fixtures & set(inspect.signature(fn).parameters)
    }




def _wait_for_port(port: int, proc: subprocess.Popen | None, what: str, log: Path) -> None:
    deadline = time.monotonic() + _START_TIMEOUT_S
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"{what} exited with {proc.returncode}: {log.read_text()[-2000:]}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"{what} did not listen on 127.0.0.1:{port} within {_START_TIMEOUT_S:.0f} s")



def fixtures_of(module: ModuleType, skip: set[str]) -> dict[str, Any]:
    """The pytest fixtures defined in `module` (but `skip`), for a module rerunning its tests."""
    return {
        name: obj
        for name, obj in vars(module).items()
        if name not in skip
        and (type(obj).__name__ == "FixtureFunctionDefinition" or hasattr(obj, "_pytestfixturefunction"))
    }


# ---- PostgreSQL ---------------------------------------------------------------------------------


def postgres_bindir() -> Path | None:
    """Where initdb and pg_ctl live: `pg_config --bindir`, else Debian's /usr/lib/postgresql/<n>/bin."""
    try:
        out = subprocess.run(["pg_config", "--bindir"], capture_output=True, text=True, check=True).stdout.strip()
        if (Path(out) / "pg_ctl").exists():
            return Path(out)
    except (OSError, subprocess.CalledProcessError):
        pass
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/pg_ctl"), key=lambda p: int(Path(p).parts[-3]))
    return Path(found[-1]).parent if found else None


class PostgresServer:
    """A throwaway PostgreSQL cluster: `initdb` in a temp dir, `pg_ctl` on 127.0.0.1:<free port>.

    PostgreSQL refuses to run as root, so as root the cluster belongs to the `postgres` user
    (Debian's package creates it) and every server command runs through `runuser`.
    """

    def __init__(self, bindir: Path) -> None:
        self.bindir = bindir
        self.root = Path(tempfile.mkdtemp(prefix="ds-pg-", dir="/tmp"))
        self.data = self.root / "data"
        self.log = self.root / "server.log"
        self.port = free_port()
        self._as_postgres = os.geteuid() == 0
        if self._as_postgres:
            shutil.chown(self.root, "postgres", "postgres")
        self._run("initdb", "-D", str(self.data), "-U", "postgres", "--auth=trust", "-E", "UTF8", "--no-sync")
        self.start()

    def _run(self, tool: str, *args: str) -> None:
        cmd = [str(self.bindir / tool), *args]
        if self._as_postgres:
            cmd = ["runuser", "-u", "postgres", "--", *cmd]
        proc = subprocess.run(cmd, capture_output=True, text=True, cwd=self.root)
        if proc.returncode != 0:
            log = self.log.read_text()[-2000:] if self.log.exists() else ""
            raise RuntimeError(f"{' '.join(cmd)} failed ({proc.returncode}): {proc.stderr[-2000:]}\n{log}")

    def _pg_ctl(self, action: str) -> None:
        # fsync off: a test cluster needs no durability against power loss; a clean restart
        # (fast shutdown writes a checkpoint) keeps everything committed.
        options = (
            f"-p {self.port} -c listen_addresses=127.0.0.1 -c unix_socket_directories={self.root} "
            "-c fsync=off -c full_page_writes=off -c max_connections=300"
        )
        self._run("pg_ctl", action, "-D", str(self.data), "-l", str(self.log), "-w", "-t", "60", "-m", "fast",
                  "-o", options)

    def start(self) -> None:
        self._pg_ctl("start")

    def restart(self) -> None:
        """Stop (fast: open connections are cut) and start again on the same port and data."""
        self._pg_ctl("restart")

    def stop(self) -> None:
        self._run("pg_ctl", "stop", "-D", str(self.data), "-w", "-t", "60", "-m", "fast")

    def url(self, database: str = "postgres") -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/{database}"

    def create_database(self, prefix: str = "t") -> str:
        """A new empty database; returns its URL."""
        import psycopg

        name = f"{prefix}_{uuid.uuid4().hex[:12]}"
        with psycopg.connect(self.url(), autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        return self.url(name)

    def close(self) -> None:
        try:
            self.stop()
        finally:
            shutil.rmtree(self.root, ignore_errors=True)


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresServer]:
    """One PostgreSQL server for the session (about a second to start)."""
    bindir = postgres_bindir()
    if bindir is None:
        pytest.skip("no PostgreSQL server binaries (apt-get install postgresql)")
    server = PostgresServer(bindir)
    try:
        yield server
    finally:
        server.close()


@pytest.fixture
def postgres_url(postgres_server: PostgresServer) -> str:
    """A fresh, empty database on the session server."""
    return postgres_server.create_database()


# ---- Redis --------------------------------------------------------------------------------------


class RedisServer:
    """`redis-server` on 127.0.0.1:<free port>, no persistence (no RDB, no AOF), in a temp dir."""

    def __init__(self, binary: str) -> None:
        self.binary = binary
        self.root = Path(tempfile.mkdtemp(prefix="ds-redis-", dir="/tmp"))
        self.log = self.root / "server.log"
        self.port = free_port()
        self.proc: subprocess.Popen | None = None
        self.start()

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        """Start (again, on the same port: a restarted Redis comes back empty)."""
        args = [self.binary, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
                "--dir", str(self.root), "--logfile", str(self.log), "--daemonize", "no"]
        self.proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT, cwd=self.root)
        _wait_for_port(self.port, self.proc, "redis-server", self.log)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None

    def close(self) -> None:
        try:
            self.stop()
        finally:
            shutil.rmtree(self.root, ignore_errors=True)


@pytest.fixture(scope="session")
def redis_server() -> Iterator[RedisServer]:
    binary = shutil.which("redis-server")
    if binary is None:
        pytest.skip("no redis-server binary (apt-get install redis-server)")
    server = RedisServer(binary)
    try:
        yield server
    finally:
        server.close()
