"""``partnerflow backfill FOLDER``: load a partnership's past returns through the normal ingest path.

Each file in the folder is landed and recorded in the ledger as a fetch would, then staged, checked against
its feed's contract and published or rejected (``pipeline.ingest.decide``), so history passes the same
checks as this quarter's returns and the Board pack's trends and direction of travel rest on it.

Only past periods are loaded: those before the period being collected today. Nobody is e-mailed about
them (no receipt, no rejection: the outbox gets no row, and the ledger notes why), and nothing is moved
on a partner's server. A file for the period being collected, or a later one, is skipped: it belongs in
the feed's normal route, where the partner gets their receipt or rejection report.

Which feed a file is for comes from its name:

- an SFTP feed's file is named by the feed's pattern, as the partner uploads it (``referrals_2026Q1.csv``,
  ``.zip``/``.gz`` archives too, if the pattern allows them);
- an API feed's past return is ``<feed id>_<period id>.json`` (``police_ppn_2026Q1.json``), holding the
  records as the API answers them (a JSON list, or ``{"records": [...]}``).

Files that name no feed are listed and left alone. Running it again adds nothing: the ledger already has
those bytes. Files are loaded oldest period first, so each return's volume is compared with the one before.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import argparse

    from partnerflow.core.config import Feed, Partnership
    from partnerflow.core.periods import Period

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class HistoryFile:
    """One file of the folder, the feed and period its name gives."""

    path: Path
    feed_id: str
    period: Period


@dataclass(frozen=True)
class Replayed:
    """What became of one history file: ``published``, ``rejected``, ``already loaded`` or why it was skipped."""

    name: str
    feed_id: str | None
    period: Period | None
    outcome: str
    rows: int = 0


def history_name(feed: Feed, period: Period) -> str:
    """The name a past return for ``feed`` and ``period`` has in a backfill folder."""
    if feed.transport.kind == "sftp":
        return feed.transport.pattern.format(period=period.id)
    return f"{feed.id}_{period.id}.json"


def classify(
    folder: Path, config: Partnership, feed_ids: list[str] | None = None
) -> tuple[list[HistoryFile], list[str]]:
    """The folder's files that are returns of the chosen feeds (all when None), oldest period first; and the
    names of the files that are no feed's (another feed's files are left out of both)."""
    from partnerflow.core.periods import period_id_regex, period_of_name, schedule

    chosen = {config.feed(f).id for f in feed_ids} if feed_ids else None  # an unknown feed id fails here
    feeds = list(config.feeds)
    found: list[HistoryFile] = []
    unmatched: list[str] = []
    for path in sorted(p for p in folder.iterdir() if p.is_file() and not p.name.startswith(".")):
        match = None
        for feed in feeds:
            if feed.transport.kind == "sftp":
                period = period_of_name(config, feed, path.name)
            else:
                sched = schedule(config, feed)
                id_match = re.fullmatch(rf"{re.escape(feed.id)}_({period_id_regex(sched.kind)})\.json", path.name)
                period = sched.period(id_match[1]) if id_match else None
            if period is not None:
                match = HistoryFile(path, feed.id, period)
                break
        if match:
            if chosen is None or match.feed_id in chosen:
                found.append(match)
        else:
            unmatched.append(path.name)
    found.sort(key=lambda f: (f.period.start, f.feed_id, f.path.name))
    return found, unmatched


def backfill(folder: Path, *, config: Partnership | None = None, feed_ids: list[str] | None = None) -> list[Replayed]:
    """Load every past return in ``folder`` (for ``feed_ids``, or every feed) through fetch → decide."""
    from partnerflow import warehouse
    from partnerflow.core import clock
    from partnerflow.core.config import partnership
    from partnerflow.core.periods import collecting_period
    from partnerflow.pipeline import collect, ingest

    config = config or partnership()
    if not folder.is_dir():
        raise FileNotFoundError(f"{folder} is not a folder")
    files, unmatched = classify(folder, config, feed_ids)
    today = clock.today()
    eng = warehouse.engine()
    results = [Replayed(name, None, None, "skipped: the name is no feed's file name") for name in unmatched]
    for item in files:
        feed = config.feed(item.feed_id)
        current = collecting_period(today, config, feed)
        if not item.period < current:
            results.append(
                Replayed(
                    item.path.name,
                    feed.id,
                    item.period,
                    f"skipped: not a past period ({current.label} is being collected); send it by the feed's "
                    "normal route so the partner gets a receipt",
                )
            )
            continue
        file_id = collect.receive_local(eng, config, feed, item.path, item.period)
        if file_id is None:
            results.append(Replayed(item.path.name, feed.id, item.period, "already loaded"))
            continue
        (outcome,) = ingest.decide(feed.id, [file_id], config=config, history=True)
        results.append(Replayed(item.path.name, feed.id, item.period, outcome["state"], outcome["rows"]))
        log.info("backfill: %s %s: file %s %s", feed.id, item.period.id, file_id, outcome["state"])
    return results


def render(results: list[Replayed]) -> str:
    """One line per file, for a person: the file, what its period id means, and what became of it."""
    lines = []
    for r in results:
        period = f" — {r.period.id} means {r.period.label}" if r.period else ""
        rows = f" ({r.rows:,} rows)" if r.outcome == "published" else ""
        lines.append(f"{r.name}{period}: {r.outcome}{rows}")
    loaded = sum(r.outcome == "published" for r in results)
    rejected = sum(r.outcome == "rejected" for r in results)
    lines.append(f"{loaded} published, {rejected} rejected; no e-mails sent for past periods.")
    return "\n".join(lines)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("folder", type=Path, help="a folder of past returns, named as each feed's files are")
    parser.add_argument("--feed", action="append", dest="feeds", help="only this feed (repeatable; default: all)")


def run(args: Any) -> int:
    """The command: 0 when every feed's file was published (or already loaded), 1 when any was rejected or is
    not of a past period. Files that are no feed's are listed, and do not count."""
    from partnerflow.core.config import partnership

    config = partnership()
    results = backfill(args.folder, config=config, feed_ids=args.feeds)
    print(render(results))
    returns = [r for r in results if r.feed_id is not None]
    return 0 if all(r.outcome in ("published", "already loaded") for r in returns) else 1
