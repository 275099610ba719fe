"""A local SMTP server that keeps every message it accepts as files: the fallback route's stand-in.

It speaks enough of RFC 5321 for ``smtplib`` and Airflow's SMTP provider (EHLO/HELO, MAIL, RCPT, DATA,
RSET, NOOP, VRFY, QUIT), without TLS or authentication: point an Airflow connection at it with
``{"conn_type": "smtp", "host": "127.0.0.1", "port": <port>, "extra": {"disable_tls": true,
"disable_ssl": true}}``. Each accepted message is written to ``out_dir`` as ``<seq>.eml`` (the data as
received) and ``<seq>.json`` (the envelope), the ``.json`` last, so its presence means the pair is complete.

Pitfalls:
    - A development double: no TLS, no AUTH, no size or recipient limits, and every address is accepted.
    - ``refuse_next`` makes the next DATA fail with 554, to test what a caller does when the server refuses.
"""

from __future__ import annotations

import json
import socketserver
import threading
from dataclasses import dataclass
from email import message_from_bytes, policy
from email.message import EmailMessage
from pathlib import Path

from partnerflow_dev.service import Service

HOST = "127.0.0.1"
HOSTNAME = "smtp-sink.invalid"
MAX_LINE = 1000 * 64
STOP_TIMEOUT_SECONDS = 30


@dataclass(frozen=True)
class SmtpMail:
    """One accepted message: the envelope and the parsed message."""

    mail_from: str
    rcpt_tos: tuple[str, ...]
    message: EmailMessage


class _Server(socketserver.ThreadingTCPServer):
    daemon_threads = True
    allow_reuse_address = True
    sink: SmtpSink

    def handle_error(self, request, client_address) -> None:
        pass  # a client that hung up mid-session is not an error worth printing


class _SmtpSession(socketserver.StreamRequestHandler):
    server: _Server
    timeout = 60

    def handle(self) -> None:
        self._reset()
        self._reply(220, f"{HOSTNAME} partnerflow SMTP sink")
        while True:
            line = self.rfile.readline(MAX_LINE)
            if not line:
                return
            command, _, argument = line.decode("utf-8", "replace").rstrip("\r\n").partition(" ")
            verb = command.upper()
            if verb == "QUIT":
                self._reply(221, "Bye")
                return
            handler = getattr(self, f"_{verb.lower()}", None) if verb.isalpha() else None
            if handler is None:
                self._reply(502, "Command not implemented")
            else:
                handler(argument.strip())

    def _ehlo(self, argument: str) -> None:
        self.wfile.write(f"250-{HOSTNAME}\r\n250-8BITMIME\r\n250 SIZE 52428800\r\n".encode())

    def _helo(self, argument: str) -> None:
        self._reply(250, HOSTNAME)

    def _mail(self, argument: str) -> None:
        self._reset()
        self._mail_from = _address(argument, "FROM:")
        self._reply(250, "OK")

    def _rcpt(self, argument: str) -> None:
        if self._mail_from is None:
            self._reply(503, "Need MAIL before RCPT")
            return
        self._rcpt_tos.append(_address(argument, "TO:"))
        self._reply(250, "OK")

    def _data(self, argument: str) -> None:
        if not self._rcpt_tos:
            self._reply(503, "Need RCPT before DATA")
            return
        self._reply(354, "End data with <CR><LF>.<CR><LF>")
        lines = []
        while True:
            line = self.rfile.readline(MAX_LINE)
            if not line or line in (b".\r\n", b".\n"):
                break
            lines.append(line[1:] if line.startswith(b"..") else line)
        if self.server.sink.take_refusal():
            self._reply(554, "Transaction failed")
        else:
            number = self.server.sink._store(self._mail_from or "", tuple(self._rcpt_tos), b"".join(lines))
            self._reply(250, f"OK: queued as {number}")
        self._reset()

    def _rset(self, argument: str) -> None:
        self._reset()
        self._reply(250, "OK")

    def _noop(self, argument: str) -> None:
        self._reply(250, "OK")

    def _vrfy(self, argument: str) -> None:
        self._reply(252, "Cannot VRFY user, but will accept message")

    def _reset(self) -> None:
        self._mail_from: str | None = None
        self._rcpt_tos: list[str] = []

    def _reply(self, code: int, text: str) -> None:
        self.wfile.write(f"{code} {text}\r\n".encode())


def _address(argument: str, prefix: str) -> str:
    """``FROM:<a@b> SIZE=10`` -> ``a@b``."""
    value = argument[len(prefix) :] if argument.upper().startswith(prefix) else argument
    return value.strip().split(" ", 1)[0].strip("<>")


class SmtpSink(Service):
    """An SMTP server on 127.0.0.1 in a background thread that writes each accepted message under ``out_dir``.

    Usage::

        with SmtpSink(out_dir=Path("var/smtp")) as sink:
            smtplib.SMTP(sink.host, sink.port).sendmail("a@example.org", ["b@example.org"], "Subject: hi\\r\\n\\r\\nhi")
            sink.messages()  # [SmtpMail(...)]
    """

    def __init__(self, *, out_dir: Path, port: int | None = None) -> None:
        self.out_dir = Path(out_dir)
        self._requested_port = port or 0
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        self._last_seq = 0
        self._refusals = 0

    @property
    def host(self) -> str:
        return HOST

    @property
    def port(self) -> int:
        if self._server is None:
            raise RuntimeError("SmtpSink has not been started")
        return int(self._server.server_address[1])

    def connection(self) -> dict:
        """An Airflow connection (as for ``AIRFLOW_CONN_<ID>``) that reaches this sink."""
        return {
            "conn_type": "smtp",
            "host": HOST,
            "port": self.port,
            "extra": {"disable_tls": True, "disable_ssl": True, "timeout": 10, "retry_limit": 0},
        }

    def refuse_next(self, times: int = 1) -> None:
        """Make the next ``times`` messages fail at DATA with 554."""
        with self._lock:
            self._refusals += times

    def take_refusal(self) -> bool:
        with self._lock:
            if self._refusals:
                self._refusals -= 1
                return True
            return False

    def start(self) -> None:
        """Start serving; returns once the port is bound."""
        if self._server is not None:
            return
        self.out_dir.mkdir(parents=True, exist_ok=True)
        self._last_seq = max((int(p.stem) for p in self.out_dir.glob("*.json") if p.stem.isdigit()), default=0)
        server = _Server((HOST, self._requested_port), _SmtpSession)
        server.sink = self
        self._server = server
        self._thread = threading.Thread(target=server.serve_forever, name="partnerflow-SmtpSink", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        if self._server is None:
            return
        self._server.shutdown()
        self._server.server_close()
        if self._thread is not None:
            self._thread.join(STOP_TIMEOUT_SECONDS)
        self._server = None
        self._thread = None

    def messages(self) -> list[SmtpMail]:
        """Every accepted message, in arrival order."""
        found = []
        for envelope_path in sorted(self.out_dir.glob("*.json"), key=lambda p: int(p.stem)):
            envelope = json.loads(envelope_path.read_text())
            raw = envelope_path.with_suffix(".eml").read_bytes()
            message = message_from_bytes(raw, policy=policy.default)
            found.append(SmtpMail(envelope["mail_from"], tuple(envelope["rcpt_tos"]), message))  # type: ignore[arg-type]
        return found

    def _store(self, mail_from: str, rcpt_tos: tuple[str, ...], data: bytes) -> int:
        with self._lock:
            self._last_seq += 1
            number = self._last_seq
            (self.out_dir / f"{number:06d}.eml").write_bytes(data)
            partial = self.out_dir / f".{number:06d}.json.partial"
            partial.write_text(json.dumps({"mail_from": mail_from, "rcpt_tos": list(rcpt_tos)}))
            partial.replace(self.out_dir / f"{number:06d}.json")
        return number
