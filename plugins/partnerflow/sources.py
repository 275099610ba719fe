"""Pulling partners' returns: an SFTP drop (the provider's SFTPHook) or an HTTP API (its HttpHook).

Each source lands what it receives (raw bytes by sha256) and records it in the ledger, then returns the
ledger ids. A run reconciles against the ledger rather than trusting the event that started it, so an
arrival that coalesced with another, or was missed, is still picked up.

Pitfalls:
    Remote file names never become local paths: bytes land under their sha256.
    Only regular files whose name matches the feed's pattern are taken; ``.part``/``.tmp`` uploads and
    symlinks are ignored until the partner renames them into place.
    Response bodies are never logged: a partner API's error page may repeat personal data.
"""

from __future__ import annotations

import datetime as dt
import fnmatch
import json
import logging
import posixpath
import re
import stat
from dataclasses import dataclass

from sqlalchemy.engine import Engine

from partnerflow import ledger
from partnerflow.calendar import Period, due_date
from partnerflow.config import Feed, HttpTransport, Partnership, SftpTransport
from partnerflow.landing import land, land_bytes

log = logging.getLogger(__name__)

PERIOD_PATTERN = r"(?P<period>\d{4}Q[1-4])"
SFTP_TIMEOUT_SECONDS = 600
PREFETCH_REQUESTS = 64
HTTP_TIMEOUT_SECONDS = 60
MAX_PAGES = 10_000


class TransportError(RuntimeError):
    """The partner's server could not be read; retried by Airflow, then alerted. No values inside."""


@dataclass(frozen=True)
class RemoteFile:
    name: str
    size: int
    mtime: dt.datetime
    period_id: str


def name_regex(pattern: str) -> re.Pattern[str]:
    """``referrals_{period}.csv`` -> a regex matching exactly those names, capturing the period id."""
    before, after = pattern.split("{period}", 1)
    glob = fnmatch.translate(before)[4:-3] + PERIOD_PATTERN + fnmatch.translate(after)[4:-3]
    return re.compile(rf"^{glob}$")


def matching_files(entries, transport: SftpTransport) -> list[RemoteFile]:
    """Regular files in a directory listing whose names match the feed's pattern, oldest first."""
    regex = name_regex(transport.pattern)
    found = []
    for entry in entries:
        match = regex.match(entry.filename)
        if not match or not stat.S_ISREG(entry.st_mode or 0):
            continue
        mtime = dt.datetime.fromtimestamp(entry.st_mtime or 0, tz=dt.UTC)
        found.append(RemoteFile(entry.filename, entry.st_size or 0, mtime, match["period"]))
    return sorted(found, key=lambda f: (f.mtime, f.name))


def fetch_sftp(eng: Engine, partnership: Partnership, feed: Feed) -> list[int]:
    """Download every complete, not-yet-received file on the feed's drop; return new ledger ids."""
    from airflow.providers.sftp.hooks.sftp import SFTPHook

    transport = feed.transport
    assert isinstance(transport, SftpTransport)
    hook = SFTPHook(ssh_conn_id=transport.connection)
    new_ids: list[int] = []
    with hook.get_managed_conn() as sftp:
        sftp.get_channel().settimeout(SFTP_TIMEOUT_SECONDS)
        for remote in matching_files(sftp.listdir_attr(transport.directory), transport):
            with eng.connect() as conn:
                if ledger.already_received(
                    conn, feed_id=feed.id, source_name=remote.name, size=remote.size, mtime=remote.mtime
                ):
                    continue
            path = posixpath.join(transport.directory, remote.name)
            landed = land(
                lambda out, path=path: sftp.getfo(
                    path, out, prefetch=True, max_concurrent_prefetch_requests=PREFETCH_REQUESTS
                )
            )
            if landed.size != remote.size:
                raise TransportError(
                    f"{feed.id}: {remote.name} changed while it was downloaded "
                    f"({remote.size} bytes listed, {landed.size} received); it will be fetched again"
                )
            new_ids.append(_record(eng, partnership, feed, remote.period_id, remote.name, landed, remote.mtime))
    return new_ids


def fetch_http(eng: Engine, partnership: Partnership, feed: Feed, period: Period) -> list[int]:
    """Read every page of the feed's return for ``period``; land them as one document; return new ids."""
    from airflow.providers.http.hooks.http import HttpHook

    transport = feed.transport
    assert isinstance(transport, HttpTransport)
    hook = HttpHook(method="GET", http_conn_id=transport.connection)
    token = hook.get_connection(transport.connection).password
    endpoint = transport.endpoint.format(period=period.id)
    headers = {"Accept": "application/json", "Authorization": f"Bearer {token}"}
    pages: list[dict] = []
    page_number, total_pages = 1, 1
    while page_number <= total_pages:
        response = hook.run(
            endpoint,
            data={"page": page_number},
            headers=headers,
            extra_options={"check_response": False, "timeout": HTTP_TIMEOUT_SECONDS},
        )
        if response.status_code == 404 and page_number == 1:
            log.info("%s: no return for %s published by the partner yet", feed.id, period.id)
            return []
        if response.status_code != 200:
            raise TransportError(f"{feed.id}: partner API answered HTTP {response.status_code} on page {page_number}")
        page = _json_page(feed, response, page_number)
        total_pages = int(page.get("total_pages", 1))
        if total_pages > MAX_PAGES:
            raise TransportError(f"{feed.id}: partner API reports {total_pages} pages, more than allowed")
        pages.append(page)
        page_number += 1
    document = json.dumps({"endpoint": endpoint, "pages": pages}, sort_keys=True).encode()
    landed = land_bytes(document)
    return [_record(eng, partnership, feed, period.id, endpoint, landed, None)]


def _json_page(feed: Feed, response, page_number: int) -> dict:
    if "json" not in response.headers.get("Content-Type", ""):
        raise TransportError(f"{feed.id}: partner API sent something other than JSON on page {page_number}")
    try:
        page = response.json()
    except ValueError:
        raise TransportError(f"{feed.id}: partner API sent malformed JSON on page {page_number}") from None
    if not isinstance(page, dict) or not isinstance(page.get("records"), list):
        raise TransportError(f"{feed.id}: partner API page {page_number} has no list of records")
    if int(page.get("page", page_number)) != page_number:
        raise TransportError(f"{feed.id}: partner API returned page {page.get('page')} for page {page_number}")
    return page


def _record(eng, partnership, feed, period_id, source_name, landed, mtime) -> int:
    with eng.begin() as conn:
        received = ledger.record_received(
            conn,
            feed_id=feed.id,
            period_id=period_id,
            source_name=source_name,
            landed=landed,
            source_mtime=mtime,
            due_date=due_date(partnership, feed, Period.from_id(period_id)),
        )
    log.info("%s: received %s for %s as file %s (%s)", feed.id, source_name, period_id, received.id, received.state)
    return received.id
