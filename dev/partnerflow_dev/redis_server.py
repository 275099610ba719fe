"""A Redis broker for running Airflow's CeleryExecutor locally (the Celery tests).

``RedisServer.start()`` uses the Redis that answers on 127.0.0.1:6379 (CI's machine has one), and
otherwise starts ``redis-server`` from PATH on a free loopback port, in a folder of its own, keeping
nothing on disk; ``stop()`` stops only a server it started. With neither, ``start()`` raises
``RedisUnavailable`` and the caller decides (the tests skip loudly, or fail under ``CI=true``).

A shared Redis may serve other Celery apps: an ``AirflowStack`` on Celery therefore sends its tasks to a
queue of its own and its workers listen on that queue only.
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path

import redis

from partnerflow_dev.service import Service

SHARED_URL = "redis://127.0.0.1:6379/0"
START_TIMEOUT = 30.0


class RedisUnavailable(RuntimeError):
    """No Redis answers on 127.0.0.1:6379 and there is no ``redis-server`` to start."""


class RedisServer(Service):
    """The shared Redis at ``shared_url`` if it answers, else a private ``redis-server`` on a free port."""

    def __init__(self, *, shared_url: str = SHARED_URL, binary: str | None = None) -> None:
        self.shared_url = shared_url
        self.binary = binary if binary is not None else shutil.which("redis-server")
        self.url = ""
        self._process: subprocess.Popen[bytes] | None = None
        self._home: Path | None = None

    @property
    def started_here(self) -> bool:
        """Whether this object started its own ``redis-server`` (rather than using the shared one)."""
        return self._process is not None

    def start(self) -> None:
        if answers(self.shared_url):
            self.url = self.shared_url
            return
        if self.binary is None:
            raise RedisUnavailable(
                f"no Redis answers at {self.shared_url} and redis-server is not on PATH "
                "(install it, e.g. `apt-get install redis-server`, or start one on 127.0.0.1:6379)"
            )
        self._home = Path(tempfile.mkdtemp(prefix="partnerflow-redis-"))
        port = _free_port()
        options = {"bind": "127.0.0.1", "port": str(port), "dir": str(self._home), "save": "", "appendonly": "no"}
        options["logfile"] = str(self._home / "redis.log")
        self._process = subprocess.Popen(
            [self.binary, *(item for name, value in options.items() for item in (f"--{name}", value))],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        self.url = f"redis://127.0.0.1:{port}/0"
        deadline = time.monotonic() + START_TIMEOUT
        while not answers(self.url):
            if self._process.poll() is not None or time.monotonic() > deadline:
                log = (self._home / "redis.log").read_text(errors="replace")[-2000:] if self._home else ""
                self.stop()
                raise RedisUnavailable(f"redis-server did not answer on port {port}:\n{log}")
            time.sleep(0.1)

    def stop(self) -> None:
        if self._process is not None:
            self._process.terminate()
            try:
                self._process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self._process.kill()
                self._process.wait(timeout=10)
            self._process = None
        if self._home is not None:
            shutil.rmtree(self._home, ignore_errors=True)
            self._home = None


def answers(url: str) -> bool:
    """Whether a Redis server answers PING at ``url``."""
    client = redis.Redis.from_url(url, socket_connect_timeout=1, socket_timeout=2)
    try:
        return bool(client.ping())
    except (redis.RedisError, OSError):
        return False
    finally:
        client.close()


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]
