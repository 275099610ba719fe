"""Pulling partners' returns: an SFTP drop (the provider's SFTPHook) or an HTTP API (its HttpHook).

Each source lands what it receives (raw bytes by sha256) and records it in the ledger, then returns the
ledger ids. A run reconciles against the ledger rather than trusting the event that started it, so an
arrival that coalesced with another, or was missed, is still picked up.

An SFTP file is taken only when the feed's completeness rule says it is whole: ``rename`` (the name
matches only once the upload is renamed into place), ``done_marker`` (a ``<name>.done`` manifest exists;
its sha256 is checked after download and its row count before publish) or ``stable_size`` (two polls saw
the same size and mtime, remembered in ``ops.sftp_sightings``, and the file is old enough).

Pitfalls:
    Remote file names never become local paths: bytes land under their sha256. Names with a slash,
    ``..``, control characters or a leading dot are refused even if a server lists them.
    Only regular files are taken (the listing's lstat): symlinks and folders are ignored.
    The host key is pinned by the connection's ``host_key`` extra; paramiko checks it before it
    authenticates, so an unknown or changed key never sees our credentials.
    Each download has an overall deadline (``transfer_timeout_seconds``): a watchdog closes the
    connection, so a server that stalls mid-file fails the run instead of hanging it. Reads are pipelined
    (``PREFETCH_REQUESTS`` in flight) one window at a time, so memory stays flat however big the file.
    Response bodies and file contents are never logged: a partner's error page may repeat personal data.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import errno
import fnmatch
import json
import logging
import posixpath
import re
import stat
import threading
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any, BinaryIO

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from partnerflow import ledger
from partnerflow.archives import ARCHIVE_RULES, ArchiveRefused, archive_kind, expand
from partnerflow.calendar import NOT_ASCII_REASON, Period, ascii_folded, due_date, period_id_regex
from partnerflow.config import Feed, HttpTransport, Partnership, SftpTransport
from partnerflow.landing import LandedFile, land, land_bytes

log = logging.getLogger(__name__)

PERIOD_PATTERN = rf"(?P<period>{period_id_regex()})"  # quarters, months and terms
MANIFEST_SUFFIX = ".done"
MAX_MANIFEST_BYTES = 64 * 1024
PREFETCH_REQUESTS = 256
REQUEST_BYTES = 32 * 1024
WINDOW_BYTES = 8 * 1024 * 1024
CHANNEL_WINDOW_BYTES = 16 * 1024 * 1024
IDLE_TIMEOUT_SECONDS = 60
MAX_NAME_LENGTH = 255
FINISHED_STATES = (ledger.PUBLISHED, ledger.SUPERSEDED)

MANIFEST_RULES = {
    "MAN-001": 'The .done manifest could not be read. It must be JSON: {"sha256": "<64 hex>", "rows": <n>}.',
    "MAN-002": "The file does not match the sha256 in its .done manifest. Upload the file again, then its manifest.",
}


class TransportError(RuntimeError):
    """The partner's server could not be read; retried by Airflow, then alerted. No values inside."""


class TransportRefused(TransportError):
    """The partner's server or we refused the connection (host key, credentials): someone has to act."""


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


def near_miss(name: str, regex: re.Pattern[str]) -> str | None:
    """Why ``name``, which the feed's ``regex`` does not match, nearly matches it, or None if it doesn't.

    A name whose period is written in other digits (``icb_safeguarding_٢٠٢٦Q4.csv``, full-width
    ``…_２０２７Q1.csv``) is never a period, but it is no stray file either: the partner meant it, and an
    operator should hear why it was left alone rather than see nothing happen.
    """
    if regex.match(name) or not regex.match(ascii_folded(name)):
        return None
    return NOT_ASCII_REASON


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


# --- SFTP -----------------------------------------------------------------------------------------


def fetch_sftp(eng: Engine, partnership: Partnership, feed: Feed) -> list[int]:
    """Download every complete, not-yet-received file on the feed's drop; return new ledger ids."""
    transport = feed.transport
    assert isinstance(transport, SftpTransport)
    new_ids: list[int] = []
    with sftp_session(feed) as session:
        entries = session.listdir(transport.directory)
        listed = matching_files(entries, transport)
        refused = [e for e in entries if not safe_name(e.filename)]
        if refused:
            log.warning("%s: ignored %d listed name(s) that are not plain file names", feed.id, len(refused))
        regex = name_regex(transport.pattern)
        for entry in entries:
            reason = near_miss(entry.filename, regex) if safe_name(entry.filename) else None
            if reason:
                log.warning(
                    "%s: ignored %s, which looks like the feed's pattern %s but %s; ask the partner to send it "
                    "again with the period in digits 0-9",
                    feed.id,
                    ascii(entry.filename),
                    transport.pattern,
                    reason,
                )
        for remote in _complete(eng, feed, transport, listed, entries):
            with eng.connect() as conn:
                if ledger.already_received(
                    conn, feed_id=feed.id, source_name=remote.name, size=remote.size, mtime=remote.mtime
                ):
                    continue
            received = _receive(eng, partnership, feed, session, remote)
            if received is not None:
                new_ids.append(received)
        if transport.processed_directory:
            _tidy(eng, feed, session, listed)
    return new_ids


def move_to_processed(feed: Feed, file_ids: Sequence[int]) -> None:
    """Move published files (and their ``.done`` markers) to the feed's processed folder. Best-effort:
    a file that can't be moved now is moved by a later fetch."""
    from partnerflow import warehouse

    try:
        with sftp_session(feed) as session:
            eng = warehouse.engine()
            for file_id in file_ids:
                with eng.connect() as conn:
                    received = ledger.get(conn, file_id)
                _move(eng, feed, session, received)
    except Exception as exc:  # the slice is published; the move is housekeeping
        log.warning("%s: could not move published files to the processed folder (%s)", feed.id, exc)


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
    """Connect to a feed's drop through the provider's SFTPHook, host key pinned, timeouts bounded."""
    from airflow.providers.sftp.hooks.sftp import SFTPHook

    transport = feed.transport
    assert isinstance(transport, SftpTransport)
    seconds = transport.connect_timeout_seconds
    try:
        hook = SFTPHook(
            ssh_conn_id=transport.connection,
            conn_timeout=seconds,
            banner_timeout=seconds,
            auth_timeout=seconds,
            conn_retry_attempts=1,  # Airflow's task retries back off; a refused key should fail fast
        )
        managed = hook.get_managed_conn()
        sftp = managed.__enter__()
    except Exception as exc:
        raise _connect_error(exc, feed, transport) from None
    try:
        sftp.get_channel().settimeout(min(IDLE_TIMEOUT_SECONDS, transport.transfer_timeout_seconds))
        yield SftpSession(sftp=sftp, feed=feed)
    finally:
        with contextlib.suppress(Exception):
            managed.__exit__(None, None, None)


def _connect_error(exc: Exception, feed: Feed, transport: SftpTransport) -> Exception:
    import paramiko

    where = f"{feed.id}: SFTP connection {transport.connection}"
    if isinstance(exc, paramiko.BadHostKeyException):
        return TransportRefused(
            f"{where}: the server's host key is not the pinned one (it changed); refused before logging in. "
            "If the partner really changed it, confirm the new key with them and update the host_key extra"
        )
    if isinstance(exc, paramiko.AuthenticationException):
        return TransportRefused(f"{where}: the server refused our key (revoked or not installed)")
    if isinstance(exc, paramiko.SSHException) and "known_hosts" in str(exc):
        return TransportRefused(
            f"{where}: the server's host key is unknown; refused before logging in. "
            "Pin it with the connection's host_key extra"
        )
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


def _complete(
    eng: Engine, feed: Feed, transport: SftpTransport, listed: list[RemoteFile], entries: Sequence[Any]
) -> list[RemoteFile]:
    """The listed files the feed's completeness rule says are whole."""
    if transport.completeness == "rename":
        return listed
    if transport.completeness == "done_marker":
        markers = {e.filename for e in entries if safe_name(e.filename) and stat.S_ISREG(e.st_mode or 0)}
        return [f for f in listed if f.name + MANIFEST_SUFFIX in markers]
    return _stable(eng, feed, transport, listed)


def _stable(eng: Engine, feed: Feed, transport: SftpTransport, listed: list[RemoteFile]) -> list[RemoteFile]:
    """Files whose size and mtime an earlier poll saw too, and old enough; this poll's sightings are kept."""
    now = dt.datetime.now(dt.UTC)  # transport time: the partnership's settable clock is for the calendar
    stable = []
    with eng.begin() as conn:
        conn.execute(
            sa.text("DELETE FROM ops.sftp_sightings WHERE feed_id = :f AND NOT (source_name = ANY(:names))"),
            {"f": feed.id, "names": [f.name for f in listed]},
        )
        for remote in listed:
            seen = conn.execute(
                sa.text(
                    "SELECT source_size, source_mtime FROM ops.sftp_sightings WHERE feed_id = :f AND source_name = :n"
                ),
                {"f": feed.id, "n": remote.name},
            ).first()
            unchanged = seen is not None and (seen[0], seen[1]) == (remote.size, remote.mtime)
            conn.execute(
                sa.text(
                    "INSERT INTO ops.sftp_sightings"
                    " (feed_id, source_name, source_size, source_mtime, first_seen_at, last_seen_at)"
                    " VALUES (:f, :n, :s, :m, :now, :now) ON CONFLICT (feed_id, source_name) DO UPDATE SET"
                    " first_seen_at = CASE WHEN :unchanged THEN ops.sftp_sightings.first_seen_at ELSE :now END,"
                    " source_size = :s, source_mtime = :m, last_seen_at = :now"
                ),
                {
                    "f": feed.id,
                    "n": remote.name,
                    "s": remote.size,
                    "m": remote.mtime,
                    "now": now,
                    "unchanged": unchanged,
                },
            )
            old_enough = (now - remote.mtime).total_seconds() >= transport.min_age_seconds
            if unchanged and old_enough:
                stable.append(remote)
    return stable


def _receive(eng: Engine, partnership: Partnership, feed: Feed, session: SftpSession, remote: RemoteFile) -> int | None:
    """Download one complete file, check it against its manifest, expand it if archived, record it."""
    transport = session.transport
    path = posixpath.join(transport.directory, remote.name)
    attrs = session.lstat(path)
    if attrs is None or not stat.S_ISREG(attrs.st_mode or 0):
        log.info("%s: %s went away or stopped being a regular file before download", feed.id, remote.name)
        return None
    rejection: tuple[str, str] | None = None
    manifest: Manifest | None = None
    if transport.completeness == "done_marker":
        try:
            manifest = parse_manifest(session.read_small(path + MANIFEST_SUFFIX, MAX_MANIFEST_BYTES))
        except (ValueError, OSError):
            rejection = ("MAN-001", MANIFEST_RULES["MAN-001"])
    try:
        raw = land(lambda out: session.download(path, out))
    except FileNotFoundError:
        log.info("%s: %s went away before download", feed.id, remote.name)
        return None
    if raw.size != remote.size:
        raise TransportError(
            f"{feed.id}: {remote.name} changed while it was downloaded "
            f"({remote.size} bytes listed, {raw.size} received); it will be fetched again"
        )
    if manifest is not None and raw.sha256 != manifest.sha256:
        rejection = ("MAN-002", MANIFEST_RULES["MAN-002"])
    content, archive = raw, None
    kind = archive_kind(remote.name)
    if kind and rejection is None:
        try:
            content, archive = land(lambda out: expand(raw.path, kind, out)), raw
        except ArchiveRefused as refused:
            log.warning("%s: %s refused: %s", feed.id, remote.name, refused.detail)
            rejection = (refused.code, ARCHIVE_RULES[refused.code])
    return _record(
        eng,
        partnership,
        feed,
        period_id=remote.period_id,
        source_name=remote.name,
        landed=content,
        mtime=remote.mtime,
        size=remote.size,
        archive=archive,
        declared_rows=manifest.rows if manifest and rejection is None else None,
        rejection=rejection,
    )


def _tidy(eng: Engine, feed: Feed, session: SftpSession, listed: list[RemoteFile]) -> None:
    """Move listed files the ledger has finished with (published, superseded, or a duplicate of one)."""
    for remote in listed:
        with eng.connect() as conn:
            received = ledger.latest_for_listing(
                conn, feed_id=feed.id, source_name=remote.name, size=remote.size, mtime=remote.mtime
            )
            if received is None:
                continue
            state = received.state
            if state == ledger.DUPLICATE and received.duplicate_of is not None:
                state = ledger.get(conn, received.duplicate_of).state
        if state in FINISHED_STATES:
            _move(eng, feed, session, received)


def _move(eng: Engine, feed: Feed, session: SftpSession, received: ledger.ReceivedFile) -> None:
    """Move one file (and its marker) to the processed folder, if it is still the bytes we recorded."""
    transport = session.transport
    assert transport.processed_directory
    path = posixpath.join(transport.directory, received.source_name)
    attrs = session.lstat(path)
    if attrs is None or not stat.S_ISREG(attrs.st_mode or 0):
        return
    mtime = dt.datetime.fromtimestamp(attrs.st_mtime or 0, tz=dt.UTC)
    if (attrs.st_size, mtime) != (received.source_size, received.source_mtime):
        return  # the partner has uploaded a new version under the same name: leave it for the next fetch
    session.ensure_directory(transport.processed_directory)
    target = posixpath.join(transport.processed_directory, f"{received.id}-{received.source_name}")
    session.rename(path, target)
    marker = path + MANIFEST_SUFFIX
    if transport.completeness == "done_marker" and session.lstat(marker) is not None:
        session.rename(marker, target + MANIFEST_SUFFIX)
    with eng.begin() as conn:
        ledger.note(conn, received.id, f"moved to {target} on the partner's server")
    log.info("%s: moved file %s to the processed folder", feed.id, received.id)


# --- HTTP -----------------------------------------------------------------------------------------


def fetch_http(eng: Engine, partnership: Partnership, feed: Feed, period: Period) -> list[int]:
    """Read every page of the feed's return for ``period``; land each response and the combined document.

    Returns the new ledger id; nothing when the partner has not published the return yet, or when it is
    the same as the last poll's (a schedule polling an unchanged API adds no rows).
    """
    from partnerflow.partner_http import PartnerApiReader

    transport = feed.transport
    assert isinstance(transport, HttpTransport)
    endpoint = transport.endpoint.format(period=period.id)
    pages = PartnerApiReader(feed_id=feed.id, transport=transport).read(endpoint)
    if pages is None:
        log.info("%s: no return for %s published by the partner yet", feed.id, period.id)
        return []
    responses = [land_bytes(page.raw) for page in pages]
    document = {
        "endpoint": endpoint,
        "pages": [
            {"page": page.number, "records": page.records, "response_sha256": landed.sha256}
            for page, landed in zip(pages, responses, strict=True)
        ],
    }
    landed = land_bytes(json.dumps(document, sort_keys=True).encode())
    with eng.connect() as conn:
        unchanged = ledger.latest_sha256(conn, feed_id=feed.id, period_id=period.id, source_name=endpoint)
    if unchanged == landed.sha256:
        log.info("%s: the partner's return for %s is unchanged since the last poll", feed.id, period.id)
        return []
    return [
        _record(
            eng,
            partnership,
            feed,
            period_id=period.id,
            source_name=endpoint,
            landed=landed,
            mtime=None,
            size=None,
        )
    ]


# --- recording ------------------------------------------------------------------------------------


def _record(
    eng: Engine,
    partnership: Partnership,
    feed: Feed,
    *,
    period_id: str,
    source_name: str,
    landed: LandedFile,
    mtime: dt.datetime | None,
    size: int | None,
    archive: LandedFile | None = None,
    declared_rows: int | None = None,
    rejection: tuple[str, str] | None = None,
) -> int:
    """One ledger row for a landed file; a file refused on arrival is rejected in the same transaction."""
    from partnerflow.publish import failure_report, quarantine_in

    with eng.begin() as conn:
        received = ledger.record_received(
            conn,
            feed_id=feed.id,
            period_id=period_id,
            source_name=source_name,
            landed=landed,
            source_mtime=mtime,
            source_size=size,
            due_date=due_date(partnership, feed, Period.from_id(period_id)),
            archive=archive,
            declared_rows=declared_rows,
        )
        state = received.state
        if rejection is not None and state == ledger.RECEIVED:
            code, message = rejection
            state = quarantine_in(
                conn,
                partnership,
                file_id=received.id,
                feed=feed,
                dataset=partnership.dataset(feed.dataset),
                report=failure_report(code, message),
            ).state
    log.info("%s: received %s for %s as file %s (%s)", feed.id, source_name, period_id, received.id, state)
    return received.id
