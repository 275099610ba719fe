"""The SFTP arrival watcher: an event trigger that fires when a partner's drop has a complete file we haven't seen.

It runs in Airflow's triggerer (so it lives in the installed package, not the DAGs folder) and drives an
``AssetWatcher``. An event only starts an ingest run; the run itself reconciles the drop against the ledger,
so two arrivals that coalesce into one run, or an event lost in a triggerer restart, lose nothing.

A file counts as arrived by the feed's completeness rule, as the ingest run will judge it: a name matching
the pattern (``rename``), a matching ``.done`` marker (``done_marker``), or the same size and mtime on two
polls and old enough (``stable_size``). A file that changes (new size, mtime or marker) arrives again.

Pitfalls:
    Trigger kwargs are hashed to identify the trigger: keep them static (no dates, no secrets).
    What was seen is kept in memory only; after a restart the watcher fires once for what is on the drop,
    and the ingest run finds nothing new. That costs one idle run, never a lost file.
"""

from __future__ import annotations

import asyncio
import stat
import time
from collections.abc import AsyncIterator, Iterable
from dataclasses import dataclass
from typing import Any

from airflow.triggers.base import BaseEventTrigger, TriggerEvent

MANIFEST_SUFFIX = ".done"


@dataclass(frozen=True)
class Listed:
    """One directory entry as the watcher needs it."""

    name: str
    regular: bool
    size: int
    mtime: float


class ArrivalWatch:
    """Which files on a drop have newly become complete, poll after poll. No I/O: fed listings."""

    def __init__(self, *, pattern: str, completeness: str = "rename", min_age_seconds: int = 0):
        from partnerflow.transport.sftp import name_regex

        self.regex = name_regex(pattern)
        self.completeness = completeness
        self.min_age_seconds = min_age_seconds
        self._previous: dict[str, tuple[int, float]] = {}
        self._fired: dict[str, tuple[Any, ...]] = {}

    def arrivals(self, listing: Iterable[Listed], now: float) -> list[str]:
        """Names complete in this listing that have not fired with the same signature before."""
        from partnerflow.transport.sftp import safe_name

        files = {e.name: e for e in listing if e.regular and safe_name(e.name)}
        arrived = []
        for name, entry in files.items():
            if not self.regex.match(name):
                continue
            signature: tuple[Any, ...] = (entry.size, entry.mtime)
            if self.completeness == "done_marker":
                marker = files.get(name + MANIFEST_SUFFIX)
                if marker is None:
                    continue
                signature += (marker.size, marker.mtime)
            elif self.completeness == "stable_size":
                if self._previous.get(name) != signature or now - entry.mtime < self.min_age_seconds:
                    continue
            if self._fired.get(name) != signature:
                self._fired[name] = signature
                arrived.append(name)
        self._previous = {name: (e.size, e.mtime) for name, e in files.items()}
        return sorted(arrived)


class SftpArrivalTrigger(BaseEventTrigger):
    """Fires with the names of complete files on ``directory`` matching ``pattern`` not seen before."""

    def __init__(
        self,
        *,
        sftp_conn_id: str,
        directory: str,
        pattern: str,
        poll_seconds: int = 10,
        completeness: str = "rename",
        min_age_seconds: int = 0,
    ):
        super().__init__()
        self.sftp_conn_id = sftp_conn_id
        self.directory = directory
        self.pattern = pattern
        self.poll_seconds = poll_seconds
        self.completeness = completeness
        self.min_age_seconds = min_age_seconds

    def serialize(self) -> tuple[str, dict[str, Any]]:
        return (
            f"{type(self).__module__}.{type(self).__qualname__}",
            {
                "sftp_conn_id": self.sftp_conn_id,
                "directory": self.directory,
                "pattern": self.pattern,
                "poll_seconds": self.poll_seconds,
                "completeness": self.completeness,
                "min_age_seconds": self.min_age_seconds,
            },
        )

    async def listing(self, hook: Any | None = None) -> list[Listed]:
        """One listing of the drop, through a hook that connects only with the pinned host key.

        Raises ``HostKeyNotPinned`` (before connecting) when the connection does not pin the key.
        """
        hook = hook or pinned_async_hook(self.sftp_conn_id)
        entries = await hook.read_directory(self.directory) or []
        return [
            Listed(
                name=str(entry.filename),
                regular=stat.S_ISREG(entry.attrs.permissions or 0),
                size=entry.attrs.size or 0,
                mtime=float(entry.attrs.mtime or 0),
            )
            for entry in entries
        ]

    async def run(self) -> AsyncIterator[TriggerEvent]:
        from partnerflow.transport.errors import TransportRefused

        watch = ArrivalWatch(pattern=self.pattern, completeness=self.completeness, min_age_seconds=self.min_age_seconds)
        hook = pinned_async_hook(self.sftp_conn_id)
        refused: str | None = None
        while True:
            try:
                listing = await self.listing(hook)
                refused = None
            except TransportRefused as exc:  # someone must act; said once per cause, then checked each poll
                if str(exc) != refused:
                    self.log.error("%s", exc)
                refused, listing = str(exc), []
            except Exception as exc:  # a partner's server being down must not kill the watcher
                self.log.warning("cannot list %s on %s: %s", self.directory, self.sftp_conn_id, type(exc).__name__)
                listing = []
            arrived = watch.arrivals(listing, now=time.time())
            if arrived:
                yield TriggerEvent({"directory": self.directory, "files": arrived})
            await asyncio.sleep(self.poll_seconds)


def pinned_async_hook(conn_id: str) -> Any:
    """The provider's async SFTP hook, refusing (``HostKeyNotPinned``) any connection that does not pin the
    server's host key; a pinned one trusts exactly that key (the hook's ``known_hosts`` becomes the pin, so
    neither ``~/.ssh/known_hosts`` nor a ``known_hosts`` extra is read)."""
    from airflow.providers.sftp.hooks.sftp import SFTPHookAsync

    from partnerflow.transport.pinning import require_pin

    class PinnedSFTPHookAsync(SFTPHookAsync):
        def _parse_extras(self, conn: Any) -> None:
            require_pin(conn_id, conn.extra_dejson)
            super()._parse_extras(conn)
            host_key = " ".join(str(conn.extra_dejson["host_key"]).split()[:2])
            host = self.host or conn.host
            port = self.port or conn.port or 22
            self.known_hosts = f"{host if port == 22 else f'[{host}]:{port}'} {host_key}".encode()

    return PinnedSFTPHookAsync(sftp_conn_id=conn_id, no_host_key_check=False)
