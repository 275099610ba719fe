"""What the embedded HTTP services share: a stdlib server in a background thread, and a fault queue."""

from __future__ import annotations

import json
import threading
from collections import deque
from enum import Enum
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Generic, TypeVar

from partnerflow_dev.service import Service

HOST = "127.0.0.1"
STOP_TIMEOUT_SECONDS = 30

FaultT = TypeVar("FaultT", bound=Enum)


class FaultQueue(Generic[FaultT]):
    """The faults the next responses will show, oldest first; safe to change from any thread."""

    def __init__(self) -> None:
        self._queue: deque[FaultT] = deque()
        self._lock = threading.Lock()

    def add(self, fault: FaultT, times: int = 1) -> None:
        """Make the next `times` responses (after those already queued) show `fault`."""
        with self._lock:
            self._queue.extend([fault] * times)

    def clear(self) -> None:
        with self._lock:
            self._queue.clear()

    def pending(self) -> list[FaultT]:
        with self._lock:
            return list(self._queue)

    def take(self) -> FaultT | None:
        """The fault for the response being made now, or None to behave normally."""
        with self._lock:
            return self._queue.popleft() if self._queue else None


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    service: Any

    def handle_error(self, request: Any, client_address: Any) -> None:
        # A client that gave up (timeout, dropped connection) is expected here, not an error to print.
        pass


class JsonRequestHandler(BaseHTTPRequestHandler):
    """A request handler with JSON helpers that never logs requests (they may carry personal data)."""

    server: _Server
    error_content_type = "application/json"
    error_message_format = '{"error": "%(message)s"}'

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def send_json(self, status: int, body: Any, headers: dict[str, str] | None = None) -> None:
        self.send_bytes(status, json.dumps(body).encode(), "application/json", headers)

    def send_bytes(self, status: int, body: bytes, content_type: str, headers: dict[str, str] | None = None) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.end_headers()
        if body:
            self.wfile.write(body)

    def read_body(self) -> bytes:
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length > 0 else b""


class BackgroundHttpServer(Service):
    """A ThreadingHTTPServer on 127.0.0.1 run in a daemon thread; handlers reach us as `server.service`."""

    handler_class: type[JsonRequestHandler]

    def __init__(self, *, port: int | None = None) -> None:
        self._requested_port = port or 0
        self._httpd: _Server | None = None
        self._thread: threading.Thread | None = None
        self.stopping = threading.Event()

    @property
    def host(self) -> str:
        return HOST

    @property
    def port(self) -> int:
        if self._httpd is None:
            raise RuntimeError(f"{type(self).__name__} has not been started")
        return int(self._httpd.server_address[1])

    @property
    def url(self) -> str:
        """The base URL, without a trailing slash."""
        return f"http://{HOST}:{self.port}"

    def start(self) -> None:
        """Start serving; returns once the port is bound and requests are accepted."""
        if self._httpd is not None:
            return
        self.stopping.clear()
        httpd = _Server((HOST, self._requested_port), self.handler_class)
        httpd.service = self
        self._httpd = httpd
        self._thread = threading.Thread(
            target=httpd.serve_forever, name=f"partnerflow-{type(self).__name__}", daemon=True
        )
        self._thread.start()

    def stop(self) -> None:
        """Stop serving and release any response that is being held back."""
        if self._httpd is None:
            return
        self.stopping.set()
        self._httpd.shutdown()
        self._httpd.server_close()
        if self._thread is not None:
            self._thread.join(STOP_TIMEOUT_SECONDS)
        self._httpd = None
        self._thread = None
