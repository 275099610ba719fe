"""An SFTP drop, read through the provider's SFTPHook: listing, safe names, manifests and downloads.

This module moves bytes and says what went wrong; what a file means for the ledger is decided by
``partnerflow.pipeline.collect``.

Pitfalls:
    Remote file names never become local paths: bytes land under their sha256. Names with a slash,
    ``..``, control characters or a leading dot are refused even if a server lists them.
    Only regular files are taken (the listing's lstat): symlinks and folders are ignored.
    The host key must be pinned by the connection's ``host_key`` extra (``transport.pinning``): an
    unpinned connection is refused before connecting, and the SSH client trusts the pin only, never
    ``~/.ssh/known_hosts``. paramiko checks the key before it authenticates, so an unknown or changed
    key never sees our credentials.
    Each download has an overall deadline (``transfer_timeout_seconds``): a watchdog closes the
    connection, so a server that stalls mid-file fails the run instead of hanging it. Reads are pipelined
    (``PREFETCH_REQUESTS`` in flight) one window at a time, so memory stays flat however big the file.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import errno
import fnmatch
import json
import re
import stat
import threading
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any, BinaryIO

from partnerflow.core.config import Feed, SftpTransport
from partnerflow.core.periods import NOT_ASCII_REASON, ascii_folded, period_id_regex
from partnerflow.transport.errors import TransportError, TransportRefused
from partnerflow.transport.pinning import HOW_TO_PIN, HostKeyNotPinned, require_pin

PERIOD_PATTERN = rf"(?P<period>{period_id_regex()})"  # quarters, months and terms
MANIFEST_SUFFIX = ".done"
MAX_MANIFEST_BYTES = 64 * 1024
PREFETCH_REQUESTS = 256
REQUEST_BYTES = 32 * 1024
WINDOW_BYTES = 8 * 1024 * 1024
CHANNEL_WINDOW_BYTES = 16 * 1024 * 1024
IDLE_TIMEOUT_SECONDS = 60
MAX_NAME_LENGTH = 255


@dataclass(frozen=True)
class RemoteFile:
    name: str
    size: int
    mtime: dt.datetime
    period_id: str


@dataclass(frozen=True)
class Manifest:
    """What a ``.done`` marker promises about its file."""

    sha256: str
    rows: int


def name_regex(pattern: str) -> re.Pattern[str]:
    """``referrals_{period}.csv`` -> a regex matching exactly those names, capturing the period id."""
    before, after = pattern.split("{period}", 1)
    glob = fnmatch.translate(before)[4:-3] + PERIOD_PATTERN + fnmatch.translate(after)[4:-3]
    return re.compile(rf"^{glob}$")


# Letters from other scripts that look like the Latin ones a file name uses (a partner's keyboard layout).
LOOK_ALIKES = str.maketrans(
    {
        "а": "a", "е": "e", "о": "o", "р": "p", "с": "c", "х": "x", "у": "y", "і": "i", "ѕ": "s", "ј": "j",
        "А": "A", "В": "B", "Е": "E", "К": "K", "М": "M", "Н": "H", "О": "O", "Р": "P", "С": "C", "Т": "T",
        "Х": "X", "ο": "o", "ν": "v", "Ο": "O", "Q": "Q",
    }
)  # fmt: skip
LOOSE_PERIOD = (
    r"(?P<period>[0-9]{2,4}[^A-Za-z0-9]{0,2}[A-Za-z]{0,3}[^A-Za-z0-9]{0,2}[0-9]{1,4}"
    r"|[A-Za-z]{1,3}[^A-Za-z0-9]{0,2}[0-9]{1,2}[^A-Za-z0-9]{0,2}[0-9]{2,4})"
)


def near_miss(name: str, regex: re.Pattern[str]) -> str | None:
    """Why ``name``, which the feed's ``regex`` does not match, nearly matches it, or None if it doesn't.

    A name whose period is written in other digits (``icb_safeguarding_٢٠٢٦Q4.csv``, full-width
    ``…_２０２７Q1.csv``), whose extension or letters are in another case (``.CSV``), that starts with a
    ``-``, has a look-alike letter from another script, or writes the period another way (``2026-Q3``,
    ``Q3_2026``) is never taken, but it is no stray file either: the partner meant it, and they and an
    operator should hear why it was left alone rather than see nothing happen.
    """
    if regex.match(name):
        return None
    if regex.match(ascii_folded(name)):
        return NOT_ASCII_REASON
    if regex.match(name.lstrip("-_ ")):
        return "the name starts with '-' or a space"
    if regex.match(name.translate(LOOK_ALIKES)):
        return "the name has a letter from another alphabet that only looks like a Latin one"
    insensitive = re.compile(regex.pattern, re.IGNORECASE)
    if insensitive.match(name):
        return "the name is in a different case from the one agreed (for example an upper-case extension)"
    loose = re.compile(regex.pattern.replace(PERIOD_PATTERN, LOOSE_PERIOD), re.IGNORECASE)
    if loose.match(name.lstrip("-_ ").translate(LOOK_ALIKES)):
        return "the period is not written the agreed way (like 2026Q3)"
    return None


def safe_name(name: object) -> bool:
    """Whether a listed name is a plain file name: no folders, no ``..``, no control characters."""
    return (
        isinstance(name, str)
        and 0 < len(name) <= MAX_NAME_LENGTH
        and not name.startswith(".")
        and "/" not in name
        and "\\" not in name
        and not any(ord(c) < 32 or ord(c) == 127 for c in name)
    )


def matching_files(entries: Sequence[Any], transport: SftpTransport) -> list[RemoteFile]:
    """Regular files in a directory listing whose safe names match the feed's pattern, oldest first."""
    regex = name_regex(transport.pattern)
    found = []
    for entry in entries:
        if not safe_name(entry.filename) or not stat.S_ISREG(entry.st_mode or 0):
            continue
        match = regex.match(entry.filename)
        if not match:
            continue
        mtime = dt.datetime.fromtimestamp(entry.st_mtime or 0, tz=dt.UTC)  # match["period"] is ASCII: [0-9]
        found.append(RemoteFile(entry.filename, entry.st_size or 0, mtime, match["period"]))
    return sorted(found, key=lambda f: (f.mtime, f.name))


def parse_manifest(data: bytes) -> Manifest:
    """Read a ``.done`` manifest: JSON with ``sha256`` (64 hex digits) and ``rows`` (a whole number)."""
    try:
        document = json.loads(data.decode("utf-8-sig"))
        sha256, rows = str(document["sha256"]).strip().lower(), document["rows"]
    except (ValueError, KeyError, TypeError, UnicodeDecodeError):
        raise ValueError("unreadable manifest") from None
    if not re.fullmatch(r"[0-9a-f]{64}", sha256) or not isinstance(rows, int) or isinstance(rows, bool) or rows < 0:
        raise ValueError("unreadable manifest")
    return Manifest(sha256=sha256, rows=rows)


class SftpSession:
    """One SFTP connection through the provider's hook, with our timeouts and error messages."""

    def __init__(self, *, sftp: Any, feed: Feed):
        self.sftp = sftp
        self.feed = feed
        self.transport: SftpTransport = feed.transport  # type: ignore[assignment]

    def listdir(self, directory: str) -> list[Any]:
        try:
            with self._errors("list " + directory):
                return self.sftp.listdir_attr(directory)
        except FileNotFoundError:
            raise TransportError(
                f"{self.feed.id}: there is no folder {directory} on {self.transport.connection}'s server"
            ) from None

    def lstat(self, path: str) -> Any | None:
        """The attributes of ``path`` itself (not a link's target), or None if it is gone."""
        with self._errors("look at a file"):
            try:
                return self.sftp.lstat(path)
            except OSError as exc:
                if exc.errno == errno.ENOENT:
                    return None
                raise

    def read_small(self, path: str, limit: int) -> bytes:
        with self._errors("read a manifest"), self.sftp.open(path, "rb") as handle:
            data = handle.read(limit + 1)
        if len(data) > limit:
            raise ValueError("manifest too large")
        return data

    def download(self, path: str, out: BinaryIO) -> None:
        """Copy a remote file into ``out`` with bounded read-ahead, within the transfer deadline."""
        deadline = self.transport.transfer_timeout_seconds
        ssh_transport = self.sftp.get_channel().get_transport()
        expired = threading.Event()

        def expire() -> None:
            expired.set()
            ssh_transport.close()

        watchdog = threading.Timer(deadline, expire)
        watchdog.daemon = True
        watchdog.start()
        try:
            with self._errors("download a file"):
                self._copy(path, out)
        except TransportError:
            if expired.is_set():
                raise TransportError(
                    f"{self.feed.id}: a download did not finish within {deadline}s; the connection was closed "
                    "and nothing was recorded"
                ) from None
            raise
        finally:
            watchdog.cancel()
        if expired.is_set():
            raise TransportError(f"{self.feed.id}: a download did not finish within {deadline}s")

    def _copy(self, path: str, out: BinaryIO) -> None:
        # paramiko's whole-file prefetch (getfo) let memory grow with the file and slowed down as its
        # read-ahead buffer grew (300 MB: +128 MB RSS, 34 s); pipelined reads a window at a time keep
        # both flat. The download gets an SFTP channel of its own on the hook's SSH connection, with a
        # 16 MB SSH window: with paramiko's default 2 MB the server keeps stopping for window updates
        # (229 MB on loopback: 8.4 s; with 16 MB and 256 reads in flight, 2.2 s).
        import paramiko

        bulk = paramiko.SFTPClient.from_transport(
            self.sftp.get_channel().get_transport(), window_size=CHANNEL_WINDOW_BYTES
        )
        try:
            bulk.get_channel().settimeout(self.sftp.get_channel().gettimeout())
            with bulk.open(path, "rb") as remote:
                size = remote.stat().st_size
                for start in range(0, size, WINDOW_BYTES):
                    end = min(size, start + WINDOW_BYTES)
                    requests = [
                        (offset, min(REQUEST_BYTES, end - offset)) for offset in range(start, end, REQUEST_BYTES)
                    ]
                    for data in remote.readv(requests, PREFETCH_REQUESTS):
                        out.write(data)
        finally:
            bulk.close()

    def rename(self, source: str, target: str) -> None:
        with self._errors("move a file"):
            self.sftp.rename(source, target)

    def ensure_directory(self, path: str) -> None:
        with self._errors("create the processed folder"):
            try:
                self.sftp.stat(path)
            except OSError:
                self.sftp.mkdir(path)

    @contextlib.contextmanager
    def _errors(self, doing: str) -> Iterator[None]:
        try:
            yield
        except (TimeoutError, EOFError, OSError) as exc:
            if isinstance(exc, OSError) and exc.errno == errno.ENOENT:
                raise
            raise TransportError(
                f"{self.feed.id}: the connection to {self.transport.connection} failed while trying to {doing} "
                f"({type(exc).__name__}); nothing was recorded for that file"
            ) from None
        except Exception as exc:
            import paramiko

            if isinstance(exc, paramiko.SSHException):
                raise TransportError(
                    f"{self.feed.id}: the connection to {self.transport.connection} failed while trying to "
                    f"{doing} ({type(exc).__name__}); nothing was recorded for that file"
                ) from None
            raise


@contextlib.contextmanager
def sftp_session(feed: Feed) -> Iterator[SftpSession]:
    """Connect to a feed's drop, host key pinned (``transport.pinning``), timeouts bounded.

    The provider's SFTPHook reads the Airflow connection (login, key, password, algorithms); the SSH
    client is ours: it trusts the pinned key and nothing else (no ``~/.ssh/known_hosts``, no policy that
    adds or ignores keys), so no setting of the connection can make it log in to an unpinned server.
    """
    from airflow.providers.sftp.hooks.sftp import SFTPHook

    transport = feed.transport
    assert isinstance(transport, SftpTransport)
    seconds = transport.connect_timeout_seconds
    try:
        connection = SFTPHook.get_connection(transport.connection)
    except Exception as exc:
        raise TransportRefused(
            f"{feed.id}: there is no Airflow connection {transport.connection} ({type(exc).__name__})"
        ) from None
    require_pin(transport.connection, connection.extra_dejson, feed_id=feed.id)
    hook = None
    try:
        hook = SFTPHook(
            ssh_conn_id=transport.connection,
            conn_timeout=seconds,
            banner_timeout=seconds,
            auth_timeout=seconds,
            conn_retry_attempts=1,  # Airflow's task retries back off; a refused key should fail fast
        )
        client = pinned_client(hook)
    except Exception as exc:
        raise _connect_error(exc, feed, transport, hook=hook) from None
    try:
        sftp = client.open_sftp()
    except Exception as exc:
        client.close()
        raise _connect_error(exc, feed, transport, hook=hook) from None
    try:
        sftp.get_channel().settimeout(min(IDLE_TIMEOUT_SECONDS, transport.transfer_timeout_seconds))
        yield SftpSession(sftp=sftp, feed=feed)
    finally:
        with contextlib.suppress(Exception):
            sftp.close()
        with contextlib.suppress(Exception):
            client.close()


def pinned_client(hook: Any) -> Any:
    """A connected ``paramiko.SSHClient`` for an SSH/SFTP hook's parsed connection, trusting only its pin.

    What the provider's ``SSHHook.get_conn`` does, minus its fallbacks: it loads ``~/.ssh/known_hosts``
    (whose entries win over the pin in paramiko), and with ``no_host_key_check`` or
    ``allow_host_key_change`` accepts any key. Here the one trusted key is ``hook.host_key`` and any other
    key is refused before authenticating (``RejectPolicy``; ``BadHostKeyException`` for a changed key).
    """
    import paramiko

    if hook.host_key is None or hook.no_host_key_check or hook.allow_host_key_change:
        raise HostKeyNotPinned(f"SFTP connection {hook.ssh_conn_id}: the host key is not pinned. {HOW_TO_PIN}")
    client = paramiko.SSHClient()
    client.set_missing_host_key_policy(paramiko.RejectPolicy())
    name = hook.remote_host if hook.port == 22 else f"[{hook.remote_host}]:{hook.port}"
    client.get_host_keys().add(name, hook.host_key.get_name(), hook.host_key)
    options: dict[str, Any] = {
        "hostname": hook.remote_host,
        "port": hook.port,
        "username": hook.username,
        "timeout": hook.conn_timeout,
        "banner_timeout": hook.banner_timeout,
        "auth_timeout": hook.auth_timeout,
        "compress": hook.compress,
        "sock": hook.host_proxy,
        "look_for_keys": hook.look_for_keys,
        "allow_agent": False,  # only what the connection names: its key and/or its password
    }
    if hook.password:
        options["password"] = hook.password.strip()
    if hook.pkey:
        options["pkey"] = hook.pkey
    if hook.key_file:
        options["key_filename"] = hook.key_file
    if hook.disabled_algorithms:
        options["disabled_algorithms"] = hook.disabled_algorithms
    try:
        client.connect(**options)
    except BaseException:
        client.close()
        raise
    if hook.keepalive_interval:
        client.get_transport().set_keepalive(hook.keepalive_interval)
    if hook.ciphers:
        client.get_transport().get_security_options().ciphers = hook.ciphers
    return client


def _connect_error(exc: Exception, feed: Feed, transport: SftpTransport, *, hook: Any = None) -> Exception:
    """What a failed connection means, one message per cause, terminal when retrying cannot help."""
    import paramiko
    from paramiko.ssh_exception import BadAuthenticationType, IncompatiblePeer

    where = f"{feed.id}: SFTP connection {transport.connection}"
    if isinstance(exc, TransportRefused):
        return exc
    if isinstance(exc, ValueError) and hook is None:  # the provider refusing the connection's extras
        return TransportRefused(f"{where}: the connection's settings are invalid ({exc})")
    if isinstance(exc, paramiko.BadHostKeyException):
        pinned, offered = exc.expected_key.get_name(), exc.key.get_name()
        if pinned != offered:
            return TransportRefused(
                f"{where}: the server's host key is unknown: it offered a {offered} key and the pin is a "
                f"{pinned} key, so nothing identifies this server; refused before logging in. {HOW_TO_PIN}"
            )
        return TransportRefused(
            f"{where}: the server's host key is not the pinned one (it changed); refused before logging in. "
            "If the partner really changed it, confirm the new key's fingerprint with them and update the "
            "host_key extra"
        )
    if isinstance(exc, paramiko.SSHException) and "not found in known_hosts" in str(exc):
        return TransportRefused(f"{where}: the server's host key is unknown; refused before logging in. {HOW_TO_PIN}")
    if isinstance(exc, BadAuthenticationType):
        offered = "a password" if hook is not None and hook.password and not _has_key(hook) else "our key"
        allowed = ", ".join(exc.allowed_types) or "nothing"
        return TransportRefused(
            f"{where}: the server does not accept logins by {offered} (it allows: {allowed}); "
            "agree the login method with the partner and set the connection's key or password accordingly"
        )
    if isinstance(exc, paramiko.AuthenticationException):
        has_key, has_password = _has_key(hook), bool(hook is not None and hook.password)
        if has_password and not has_key:
            return TransportRefused(
                f"{where}: the server refused the password (wrong, expired or the account locked); "
                "check the connection's password with the partner"
            )
        if has_key and has_password:
            return TransportRefused(
                f"{where}: the server refused both our key and the password; check which login the partner "
                "expects and that the key is installed for the connection's login"
            )
        return TransportRefused(
            f"{where}: the server refused our key (revoked or not installed for the connection's login); "
            "send the partner our public key again"
        )
    if isinstance(exc, IncompatiblePeer) or (
        isinstance(exc, paramiko.SSHException)
        and ("no acceptable" in str(exc) or "incompatible ssh" in str(exc).lower())
    ):
        what = _missing_algorithm(str(exc))
        return TransportRefused(
            f"{where}: the server and this connection share no {what}, so no SSH session can be set up; "
            "compare the connection's disabled_algorithms extra with what the partner's server offers "
            "(`ssh -vv` or `ssh-audit` from a trusted host)"
        )
    if isinstance(exc, paramiko.SSHException) and "No authentication methods available" in str(exc):
        return TransportRefused(f"{where}: the connection has neither a key nor a password to log in with")
    if isinstance(exc, (TimeoutError, paramiko.SSHException)):
        # paramiko reports a server that never sends its banner as a timeout, a banner error or a bare
        # "Negotiation failed", depending on timing.
        return TransportError(
            f"{where}: the server did not complete the SSH handshake within "
            f"{transport.connect_timeout_seconds}s ({type(exc).__name__}); nothing was fetched"
        )
    if isinstance(exc, (OSError, EOFError)):
        return TransportError(f"{where}: could not connect ({type(exc).__name__}); nothing was fetched")
    return exc


def _has_key(hook: Any) -> bool:
    return hook is not None and bool(hook.pkey or hook.key_file)


def _missing_algorithm(message: str) -> str:
    """``Incompatible ssh server (no acceptable ciphers)`` -> ``cipher``; kex, host key, MAC, compression."""
    match = re.search(r"no acceptable ([a-z ]+)", message)
    kinds = {"ciphers": "cipher", "macs": "MAC", "kex algorithm": "key-exchange algorithm", "host key": "host-key type"}
    return kinds.get(match[1].strip(), match[1].strip()) if match else "algorithm"
