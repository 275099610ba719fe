"""A real SSH/SFTP server (asyncssh) that stands in for a partner's SFTP drop.

It serves one directory as the filesystem root, authenticates clients by public key (and, when
``faults.password`` is set, by password), and can be told at runtime to misbehave the way real servers do
(hang, stall, drop, offer only some ciphers), so that transport-fault handling can be tested.

Pitfalls:
    - The chroot is enforced on resolved paths: `..` is normalised inside the root, and a path whose
      symlinks resolve outside the root is refused. Clients cannot create symlinks or hard links.
    - `authorized_keys` is read again on every authentication attempt, so removing a line revokes
      that key for new connections (open connections stay open).
    - The server runs its own asyncio loop in a background thread; `faults` may be changed from any
      thread and applies to the next connection or read.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import stat
import threading
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path

import asyncssh

from partnerflow_dev.service import Service

HOST = "127.0.0.1"
# The dev connections' `disabled_algorithms` extra: no CBC or 3DES, and no CTR, so paramiko picks AES-GCM,
# which needs no separate MAC pass over every byte (a large download takes about a fifth less CPU).
CLIENT_DISABLED_ALGORITHMS = {
    "ciphers": ["aes128-cbc", "aes192-cbc", "aes256-cbc", "3des-cbc", "aes128-ctr", "aes192-ctr", "aes256-ctr"]
}
CLIENT_LOGIN = "partner"
START_TIMEOUT_SECONDS = 30
STOP_TIMEOUT_SECONDS = 30


@dataclass(frozen=True)
class KeyPaths:
    """The key files of a development SFTP setup, as `ensure_keys` leaves them."""

    host_key: Path
    """The server's private ed25519 host key (OpenSSH format)."""
    host_key_line: str
    """The server's public host key as `ssh-ed25519 AAAA...`: the Airflow connection extra `host_key`."""
    client_key: Path
    """The client's private ed25519 key (OpenSSH format): the Airflow connection extra `key_file`."""
    client_public_key: Path
    authorized_keys: Path
    """An authorized_keys file that admits the client key."""


def ensure_keys(directory: Path) -> KeyPaths:
    """Generate, once, an ed25519 host key and client key pair under `directory`; return their paths.

    Existing keys are kept. An `authorized_keys` file admitting the client key is written if missing.
    """
    directory.mkdir(parents=True, exist_ok=True)
    host_key = directory / "ssh_host_ed25519_key"
    client_key = directory / "client_ed25519_key"
    for private_path in (host_key, client_key):
        if not private_path.exists():
            _write_key_pair(private_path)
    authorized_keys = directory / "authorized_keys"
    if not authorized_keys.exists():
        authorized_keys.write_text(_public_key_file(client_key).read_text())
    return KeyPaths(
        host_key=host_key,
        host_key_line=public_key_line(host_key),
        client_key=client_key,
        client_public_key=_public_key_file(client_key),
        authorized_keys=authorized_keys,
    )


def client_connection(host: str, port: int, keys: KeyPaths) -> dict:
    """The Airflow connection (as JSON-ready data) of a client of the dev SFTP server: host key pinned, key auth.

    Loopback: SSH compression would only spend CPU (on by default in the hook; off per connection).
    """
    return {
        "conn_type": "sftp",
        "host": host,
        "port": port,
        "login": CLIENT_LOGIN,
        "extra": {
            "key_file": str(keys.client_key),
            "host_key": keys.host_key_line,
            "compress": "false",
            "disabled_algorithms": CLIENT_DISABLED_ALGORITHMS,
        },
    }


def public_key_line(private_key: Path) -> str:
    """The public half of `private_key` as `<type> <base64>`, without a comment."""
    key = asyncssh.read_private_key(str(private_key))
    algorithm, data = key.export_public_key("openssh").decode().split()[:2]
    return f"{algorithm} {data}"


def _write_key_pair(private_path: Path) -> None:
    key = asyncssh.generate_private_key("ssh-ed25519", comment=f"partnerflow-dev-{private_path.name}")
    fd = os.open(private_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as handle:
        handle.write(key.export_private_key("openssh"))
    _public_key_file(private_path).write_bytes(key.export_public_key("openssh"))


def _public_key_file(private_path: Path) -> Path:
    return private_path.with_name(private_path.name + ".pub")


@dataclass
class SftpFaults:
    """Misbehaviour to inject; change the fields at runtime, `reset()` to behave again."""

    drop_after_bytes: int | None = None
    """Abort the connection once a session has served this many bytes of file content."""
    hang: bool = False
    """Accept new TCP connections but never answer (not even the SSH banner)."""
    stall_reads: bool = False
    """Complete the handshake, then never answer file reads (a server that hangs mid-download)."""
    extra_names: list[str] = field(default_factory=list)
    """Names to add to every directory listing as regular files that don't exist (``../x``, ``/etc/x``):
    what a hostile or broken server might list."""
    password: str | None = None
    """Accept password logins with this password (as well as keys); None: keys only, as by default."""
    ciphers: list[str] | None = None
    """Offer only these ciphers to new connections (e.g. ``["aes256-ctr"]``, a ctr-only server); None: all."""

    def reset(self) -> None:
        self.drop_after_bytes = None
        self.hang = False
        self.stall_reads = False
        self.extra_names = []
        self.password = None
        self.ciphers = None


class SftpServer(Service):
    """An SFTP server on 127.0.0.1 serving `root`, for key-authenticated clients.

    Usage::

        keys = ensure_keys(Path("var/ssh"))
        with SftpServer(root=drop, host_key=keys.host_key, authorized_keys=keys.authorized_keys) as server:
            ...  # connect to 127.0.0.1:server.port, pinning keys.host_key_line
    """

    def __init__(
        self,
        *,
        root: Path,
        host_key: Path,
        authorized_keys: Path,
        port: int | None = None,
    ) -> None:
        self.root = Path(root)
        self.host_key = Path(host_key)
        self.authorized_keys = Path(authorized_keys)
        self.faults = SftpFaults()
        self._requested_port = port or 0
        self._port: int | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._ready = threading.Event()
        self._startup_error: BaseException | None = None
        self._listener: socket.socket | None = None
        self._host_key: asyncssh.SSHKey | None = None
        self._connections: set[asyncssh.SSHServerConnection] = set()
        self._held_sockets: list[socket.socket] = []
        self.auth_attempts = 0
        """How many clients have asked to authenticate: a client that refuses our host key never does."""

    @property
    def host(self) -> str:
        return HOST

    @property
    def port(self) -> int:
        if self._port is None:
            raise RuntimeError("the SFTP server has not been started")
        return self._port

    def start(self) -> None:
        """Start serving in a background thread; returns once connections are accepted."""
        if self._thread is not None:
            return
        self.root.mkdir(parents=True, exist_ok=True)
        self._ready.clear()
        self._startup_error = None
        self._thread = threading.Thread(target=self._run, name="partnerflow-sftp", daemon=True)
        self._thread.start()
        if not self._ready.wait(START_TIMEOUT_SECONDS):
            raise RuntimeError("the SFTP server did not start in time")
        if self._startup_error is not None:
            self._thread.join()
            self._thread = None
            raise RuntimeError("the SFTP server could not start") from self._startup_error

    def stop(self) -> None:
        """Close every connection and stop listening."""
        if self._thread is None or self._loop is None:
            return
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(STOP_TIMEOUT_SECONDS)
        self._thread = None
        self._port = None

    def _run(self) -> None:
        loop = asyncio.new_event_loop()
        self._loop = loop
        try:
            loop.run_until_complete(self._listen())
        except BaseException as exc:
            self._startup_error = exc
            self._ready.set()
            loop.close()
            return
        self._ready.set()
        try:
            loop.run_forever()
        finally:
            loop.run_until_complete(self._shut_down())
            loop.close()

    async def _listen(self) -> None:
        listener = socket.create_server((HOST, self._requested_port), reuse_port=False)
        listener.setblocking(False)
        self._listener = listener
        self._port = listener.getsockname()[1]
        self._host_key = asyncssh.read_private_key(str(self.host_key))
        asyncio.get_running_loop().create_task(self._accept_forever(listener))

    async def _accept_forever(self, listener: socket.socket) -> None:
        loop = asyncio.get_running_loop()
        while True:
            client, _ = await loop.sock_accept(listener)
            if self.faults.hang:
                self._held_sockets.append(client)
                continue
            loop.create_task(self._serve(client))

    async def _serve(self, client: socket.socket) -> None:
        ciphers = {"encryption_algs": list(self.faults.ciphers)} if self.faults.ciphers else {}
        with contextlib.suppress(asyncssh.Error, OSError):
            await asyncssh.run_server(
                client,
                server_factory=lambda: _KeyOnlyServer(self),
                server_host_keys=[self._host_key],
                sftp_factory=lambda channel: _ChrootedSftp(channel, server=self),
                allow_scp=False,
                login_timeout=30,
                **ciphers,
            )

    async def _shut_down(self) -> None:
        if self._listener is not None:
            self._listener.close()
        for connection in list(self._connections):
            connection.abort()
        for held in self._held_sockets:
            held.close()
        self._held_sockets.clear()
        current = asyncio.current_task()
        pending = [task for task in asyncio.all_tasks() if task is not current]
        for task in pending:
            task.cancel()
        await asyncio.gather(*pending, return_exceptions=True)


class _KeyOnlyServer(asyncssh.SSHServer):
    """Public-key authentication against the server's authorized_keys file, read per attempt."""

    def __init__(self, owner: SftpServer) -> None:
        self._owner = owner
        self._connection: asyncssh.SSHServerConnection | None = None

    def connection_made(self, conn: asyncssh.SSHServerConnection) -> None:
        self._connection = conn
        self._owner._connections.add(conn)

    def connection_lost(self, exc: Exception | None) -> None:
        if self._connection is not None:
            self._owner._connections.discard(self._connection)

    def begin_auth(self, username: str) -> bool:
        assert self._connection is not None
        self._owner.auth_attempts += 1
        try:
            self._connection.set_authorized_keys(str(self._owner.authorized_keys))
        except (OSError, ValueError):
            self._connection.set_authorized_keys(asyncssh.import_authorized_keys(""))
        return True

    def password_auth_supported(self) -> bool:
        return self._owner.faults.password is not None

    def validate_password(self, username: str, password: str) -> bool:
        expected = self._owner.faults.password
        return expected is not None and username == CLIENT_LOGIN and password == expected

    def kbdint_auth_supported(self) -> bool:
        return False


class _ChrootedSftp(asyncssh.SFTPServer):
    """SFTP confined to the owner's root, with the owner's faults applied to reads."""

    def __init__(self, channel: asyncssh.SSHServerChannel, *, server: SftpServer) -> None:
        super().__init__(channel, chroot=str(server.root).encode())
        self._faults = server.faults
        self._bytes_served = 0
        self._root = os.path.realpath(server.root).encode()

    def map_path(self, path: bytes) -> bytes:
        local = super().map_path(path)
        resolved = os.path.realpath(local)
        if resolved != self._root and not resolved.startswith(self._root + b"/"):
            raise asyncssh.SFTPPermissionDenied("Path is outside the served directory")
        return local

    async def scandir(self, path: bytes) -> AsyncIterator[asyncssh.SFTPName]:
        async for entry in super().scandir(path):
            yield entry
        for name in list(self._faults.extra_names):
            attrs = asyncssh.SFTPAttrs(permissions=stat.S_IFREG | 0o644, size=1, mtime=int(time.time()))
            yield asyncssh.SFTPName(name.encode(), attrs=attrs)

    def symlink(self, oldpath: bytes, newpath: bytes) -> None:
        raise asyncssh.SFTPOpUnsupported("Links are not supported")

    def link(self, oldpath: bytes, newpath: bytes) -> None:
        raise asyncssh.SFTPOpUnsupported("Links are not supported")

    async def read(self, file_obj: object, offset: int, size: int) -> bytes:
        if self._faults.stall_reads:
            await asyncio.Event().wait()
        data = super().read(file_obj, offset, size)
        assert isinstance(data, bytes)
        limit = self._faults.drop_after_bytes
        if limit is not None:
            remaining = limit - self._bytes_served
            if remaining <= 0:
                self.connection.abort()
                raise asyncssh.SFTPConnectionLost("Connection dropped (injected fault)")
            data = data[:remaining]
        self._bytes_served += len(data)
        return data
