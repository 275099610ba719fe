"""The SFTP arrival watcher: an event trigger that fires when a partner's drop has a file we haven't seen.

It runs in Airflow's triggerer (so it lives in the installed package, not the DAGs folder) and drives an
``AssetWatcher``. An event only starts an ingest run; the run itself reconciles the drop against the ledger,
so two arrivals that coalesce into one run, or an event lost in a triggerer restart, lose nothing.

Pitfalls:
    Trigger kwargs are hashed to identify the trigger: keep them static (no dates, no secrets).
    Names seen are kept in memory only; after a restart the watcher fires once for what is on the drop,
    and the ingest run finds nothing new. That costs one idle run, never a lost file.
"""

from __future__ import annotations

import asyncio
import stat
from collections.abc import AsyncIterator
from typing import Any

from airflow.triggers.base import BaseEventTrigger, TriggerEvent


class SftpArrivalTrigger(BaseEventTrigger):
    """Fires with the names of complete files on ``directory`` matching ``pattern`` not seen before."""

    def __init__(self, *, sftp_conn_id: str, directory: str, pattern: str, poll_seconds: int = 10):
        super().__init__()
        self.sftp_conn_id = sftp_conn_id
        self.directory = directory
        self.pattern = pattern
        self.poll_seconds = poll_seconds

    def serialize(self) -> tuple[str, dict[str, Any]]:
        return (
            f"{type(self).__module__}.{type(self).__qualname__}",
            {
                "sftp_conn_id": self.sftp_conn_id,
                "directory": self.directory,
                "pattern": self.pattern,
                "poll_seconds": self.poll_seconds,
            },
        )

    async def run(self) -> AsyncIterator[TriggerEvent]:
        from airflow.providers.sftp.hooks.sftp import SFTPHookAsync

        from partnerflow.sources import name_regex

        regex = name_regex(self.pattern)
        seen: set[tuple[str, int, float]] = set()
        hook = SFTPHookAsync(sftp_conn_id=self.sftp_conn_id)
        while True:
            try:
                entries = await hook.read_directory(self.directory) or []
            except Exception as exc:  # a partner's server being down must not kill the watcher
                self.log.warning("cannot list %s on %s: %s", self.directory, self.sftp_conn_id, type(exc).__name__)
                entries = []
            arrived = []
            for entry in entries:
                attrs = entry.attrs
                signature = (entry.filename, attrs.size or 0, attrs.mtime or 0)
                if regex.match(entry.filename) and stat.S_ISREG(attrs.permissions or 0) and signature not in seen:
                    seen.add(signature)
                    arrived.append(entry.filename)
            if arrived:
                yield TriggerEvent({"directory": self.directory, "files": sorted(arrived)})
            await asyncio.sleep(self.poll_seconds)
