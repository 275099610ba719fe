"""Collecting partners' returns into the ledger: what an SFTP drop or an HTTP API has that is new and whole.

Each source's bytes are landed (raw, by sha256) and recorded in the ledger, and the ledger ids returned. A
run reconciles against the ledger rather than trusting the event that started it, so an arrival that
coalesced with another, or was missed, is still picked up.

An SFTP file is taken only when the feed's completeness rule says it is whole: ``rename`` (the name
matches only once the upload is renamed into place), ``done_marker`` (a ``<name>.done`` manifest exists;
its sha256 is checked after download and its row count before publish) or ``stable_size`` (two polls saw
the same size and mtime, remembered in ``ops.sftp_sightings``, and the file is old enough).

Response bodies and file contents are never logged: a partner's error page may repeat personal data.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import logging
import posixpath
import re
import stat
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from partnerflow import warehouse
from partnerflow.core import clock, metrics
from partnerflow.core.config import Feed, HttpTransport, Partnership, SftpTransport
from partnerflow.core.periods import Period, ascii_folded, due_date, schedule
from partnerflow.notify import messages
from partnerflow.notify.outbox import enqueue
from partnerflow.transport.archives import ARCHIVE_RULES, ArchiveRefused, archive_kind, expand
from partnerflow.transport.errors import TransportError
from partnerflow.transport.http import PartnerApiReader
from partnerflow.transport.landing import LandedFile, land, land_bytes
from partnerflow.transport.sftp import (
    MANIFEST_SUFFIX,
    MAX_MANIFEST_BYTES,
    Manifest,
    RemoteFile,
    SftpSession,
    matching_files,
    name_regex,
    near_miss,
    parse_manifest,
    safe_name,
    sftp_session,
)
from partnerflow.warehouse import ledger
from partnerflow.warehouse.publish import failure_report, quarantine_in

log = logging.getLogger(__name__)

FINISHED_STATES = (ledger.PUBLISHED, ledger.SUPERSEDED)

MANIFEST_RULES = {
    "MAN-001": 'The .done manifest could not be read. It must be JSON: {"sha256": "<64 hex>", "rows": <n>}.',
    "MAN-002": "The file does not match the sha256 in its .done manifest. Upload the file again, then its manifest.",
}


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
            if not safe_name(entry.filename) or not stat.S_ISREG(entry.st_mode or 0):
                continue
            reason = near_miss(entry.filename, regex)
            if reason:
                _record_near_miss(eng, partnership, feed, entry.filename, reason)
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


def _record_near_miss(eng: Engine, partnership: Partnership, feed: Feed, name: str, reason: str) -> None:
    """A file that nearly matches the feed's pattern: logged, recorded once as ignored, the partner told once."""
    transport = feed.transport
    assert isinstance(transport, SftpTransport)
    period = _period_meant(partnership, feed, name)
    expected = transport.pattern.replace("{period}", period.id)
    digest = hashlib.sha256(name.encode("utf-8", "surrogateescape")).hexdigest()[:16]
    message = messages.near_miss(
        partnership, feed, period, source_name=name, reason=reason, expected_name=expected, name_digest=digest
    )
    with eng.begin() as conn:
        new = ledger.record_ignored(
            conn,
            feed_id=feed.id,
            period_id=period.id,
            source_name=name,
            reason=reason,
            expected_name=expected,
            notification_key=message.key,
        )
        if new:
            enqueue(conn, message)
    if new:
        metrics.count("files_ignored", feed.id)
    log.warning(
        "%s: ignored %s, which looks like the feed's pattern %s but %s; expected %s (%s)",
        feed.id,
        ascii(name),
        transport.pattern,
        reason,
        expected,
        "recorded, the partner is told once" if new else "recorded before",
    )


def _period_meant(partnership: Partnership, feed: Feed, name: str) -> Period:
    """The period a near-miss name seems meant for (a year and quarter in it), else the one being collected."""
    sched = schedule(partnership, feed)
    folded = ascii_folded(name).upper()
    year = re.search(r"(20[0-9]{2})", folded)
    number = re.search(
        r"(?<![0-9])[QMT]?[-_ ]?([0-9]{1,2})(?![0-9])", folded.replace(year.group(1), "") if year else ""
    )
    if year and number:
        letter = {"quarter": "Q", "month": "M", "term": "T"}.get(sched.kind, "Q")
        try:
            return sched.period(
                f"{year.group(1)}{letter}{int(number.group(1)):02d}"
                if letter == "M"
                else f"{year.group(1)}{letter}{int(number.group(1))}"
            )
        except ValueError:
            pass
    return sched.collecting_period(clock.today())


def move_to_processed(feed: Feed, file_ids: Sequence[int]) -> None:
    """Move published files (and their ``.done`` markers) to the feed's processed folder. Best-effort:
    a file that can't be moved now is moved by a later fetch."""
    try:
        with sftp_session(feed) as session:
            eng = warehouse.engine()
            for file_id in file_ids:
                with eng.connect() as conn:
                    received = ledger.get(conn, file_id)
                _move(eng, feed, session, received)
    except Exception as exc:  # the slice is published; the move is housekeeping
        log.warning("%s: could not move published files to the processed folder (%s)", feed.id, exc)


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


# --- HTTP -------------------------------------------------------------------------------------------------


def fetch_http(eng: Engine, partnership: Partnership, feed: Feed, period: Period) -> list[int]:
    """Read every page of the feed's return for ``period``; land each response and the combined document.

    Returns the new ledger id; nothing when the partner has not published the return yet, or when it is
    the same as the last poll's (a schedule polling an unchanged API adds no rows).
    """
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


# --- recording --------------------------------------------------------------------------------------------


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
    metrics.count("files_received", feed.id)
    if state == ledger.REJECTED:
        metrics.count("files_rejected", feed.id)
    log.info("%s: received %s for %s as file %s (%s)", feed.id, source_name, period_id, received.id, state)
    return received.id


# --- a folder of past returns (partnerflow backfill) ---------------------------------------------------


def receive_local(eng: Engine, partnership: Partnership, feed: Feed, path: Path, period: Period) -> int | None:
    """Land one past return from a local folder and record it in the ledger, as a fetch would have.

    A file for an SFTP feed is the partner's file as they would have uploaded it (a zip or gzip is expanded
    as on arrival); for an API feed it is the records the API would have answered, as a JSON list (or
    ``{"records": [...]}``), recorded as one page of that period's endpoint. Returns the new ledger id, or
    None when the ledger already has these bytes for the feed and period (a backfill run twice adds nothing).
    """
    raw = land(lambda out: out.write(path.read_bytes()))
    if isinstance(feed.transport, HttpTransport):
        records = _local_records(path)
        endpoint = feed.transport.endpoint.format(period=period.id)
        document = {"endpoint": endpoint, "pages": [{"page": 1, "records": records, "response_sha256": raw.sha256}]}
        content, archive, source_name = land_bytes(json.dumps(document, sort_keys=True).encode()), None, endpoint
    else:
        content, archive, source_name = raw, None, path.name
        kind = archive_kind(path.name)
        if kind:
            try:
                content, archive = land(lambda out: expand(raw.path, kind, out)), raw
            except ArchiveRefused as refused:
                log.warning("%s: %s refused: %s", feed.id, path.name, refused.detail)
                return _record_history(
                    eng, partnership, feed, period, source_name, raw, (refused.code, ARCHIVE_RULES[refused.code])
                )
    with eng.connect() as conn:
        if ledger.latest_sha256(conn, feed_id=feed.id, period_id=period.id, source_name=source_name) == content.sha256:
            log.info("%s: %s for %s is already in the ledger", feed.id, path.name, period.id)
            return None
    return _record(
        eng,
        partnership,
        feed,
        period_id=period.id,
        source_name=source_name,
        landed=content,
        mtime=dt.datetime.fromtimestamp(path.stat().st_mtime, tz=dt.UTC),
        size=path.stat().st_size,
        archive=archive,
    )


def _record_history(
    eng: Engine,
    partnership: Partnership,
    feed: Feed,
    period: Period,
    source_name: str,
    landed: LandedFile,
    rejection: tuple[str, str],
) -> int:
    """A past return refused as it is landed: recorded and rejected, with no e-mail to the partner."""
    with eng.begin() as conn:
        received = ledger.record_received(
            conn,
            feed_id=feed.id,
            period_id=period.id,
            source_name=source_name,
            landed=landed,
            source_mtime=None,
            source_size=landed.size,
            due_date=due_date(partnership, feed, period),
        )
        if received.state == ledger.RECEIVED:
            code, message = rejection
            quarantine_in(
                conn,
                partnership,
                file_id=received.id,
                feed=feed,
                dataset=partnership.dataset(feed.dataset),
                report=failure_report(code, message),
                notify=False,
            )
    return received.id


def _local_records(path: Path) -> Any:
    """The records of an API feed's past return saved as JSON; what is not JSON is left for intake to refuse."""
    try:
        document = json.loads(path.read_bytes())
    except ValueError:
        return None
    if isinstance(document, dict) and "records" in document:
        return document["records"]
    return document
