"""``partnerflow calendar``: what is due when, and which period a partner's file belongs to.

- ``partnerflow calendar``: the next 90 days from today;
- ``partnerflow calendar --from 2026-10-01 --to 2026-12-31 [--feed police_ppn] [--json]``;
- ``partnerflow calendar --which referrals_2026Q3.csv [--feed council_referrals]``.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import sys
from collections.abc import Iterable
from dataclasses import dataclass

from partnerflow.chasing.ladder import ladder_days
from partnerflow.core.config import Feed, Partnership
from partnerflow.core.periods import (
    NOT_ASCII_REASON,
    Period,
    ascii_folded,
    board_meetings,
    iso_day,
    period_of_name,
    schedule,
)
from partnerflow.notify import messages

DEFAULT_DAYS = 90
LOOK_BACK_DAYS = 200  # a period ending this long before the range can still have ladder days inside it

STAGES = (
    (messages.ADVANCE_REMINDER, "advance reminder"),
    (messages.DUE_REMINDER, "return due"),
    (messages.OVERDUE_REMINDER, "overdue reminder"),
    (messages.ESCALATION, "escalation"),
)


@dataclass(frozen=True, order=True)
class CalendarEvent:
    """Something on the partnership's calendar: a period ending, a ladder day, a Board date."""

    day: dt.date
    what: str
    period_id: str = ""
    period_label: str = ""
    feed_id: str = ""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The ``calendar`` subcommand's options."""
    parser.add_argument("--from", dest="start", type=_day_argument, help="first day (default: today)")
    parser.add_argument("--to", dest="end", type=_day_argument, help=f"last day (default: +{DEFAULT_DAYS})")
    parser.add_argument("--feed", help="only this feed")
    parser.add_argument("--which", metavar="FILE_NAME", help="say which feed and period a file name belongs to")
    parser.add_argument("--json", action="store_true", help="machine-readable output")


def _day_argument(text: str) -> dt.date:
    """``--from``/``--to``: YYYY-MM-DD in ASCII digits, or argparse's usage error saying so."""
    try:
        return iso_day(text, "the day")
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def run(args: argparse.Namespace) -> int:
    """Print the calendar or answer ``--which``; 1 (with a message on stderr) when there is no answer."""
    from partnerflow.core import clock
    from partnerflow.core.config import did_you_mean, partnership

    config = partnership()
    try:
        feeds = [config.feed(args.feed)] if args.feed else list(config.feeds)
    except KeyError:
        known = [f.id for f in config.feeds]
        print(f"partnerflow calendar: no feed {args.feed!r}{did_you_mean(args.feed, known)}", file=sys.stderr)
        return 1
    if args.which:
        return _which(config, feeds, args.which, as_json=args.json)
    start = args.start or clock.today()
    end = args.end or start + dt.timedelta(days=DEFAULT_DAYS)
    if end < start:
        print("--to is before --from", file=sys.stderr)
        return 1
    found = events(config, start, end, feeds=feeds)
    if args.json:
        print(json.dumps([{**e.__dict__, "day": e.day.isoformat()} for e in found], indent=2))
    else:
        print(render(config, found, start, end))
    return 0


def events(
    partnership: Partnership, start: dt.date, end: dt.date, *, feeds: Iterable[Feed] | None = None
) -> list[CalendarEvent]:
    """Every period end, ladder day and Board date from ``start`` to ``end`` (inclusive), in date order."""
    found: list[CalendarEvent] = []
    for feed in partnership.feeds if feeds is None else feeds:
        sched = schedule(partnership, feed)
        period = Period.containing(start - dt.timedelta(days=LOOK_BACK_DAYS), sched.kind, terms=sched.terms)
        while period.start <= end:
            days = ladder_days(sched.ladder, sched.due_date(period))
            dated = [(period.end, "period ends")] + [(days[stage], label) for stage, label in STAGES]
            found += [
                CalendarEvent(day, what, period.id, period.short_label, feed.id)
                for day, what in dated
                if start <= day <= end
            ]
            period = period.next()
    for meeting in board_meetings(partnership):
        found += [
            CalendarEvent(day, what)
            for day, what in ((meeting.pack_due, "Board pack due"), (meeting.meeting, "Board meeting"))
            if start <= day <= end
        ]
    return sorted(found)


def render(partnership: Partnership, found: list[CalendarEvent], start: dt.date, end: dt.date) -> str:
    """The events as a plain table, feeds with the same event on the same day on one line."""
    lines = [f"{partnership.short_name}: what is due when, {_day(start)} to {_day(end)}", ""]
    if not found:
        return "\n".join([*lines, "Nothing falls in these dates."])
    grouped: dict[tuple[dt.date, str, str], list[str]] = {}
    for event in found:
        grouped.setdefault((event.day, event.what, event.period_label), []).append(event.feed_id)
    width = max(len(what) for _, what, _ in grouped)
    for (day, what, label), feed_ids in grouped.items():
        feeds = ", ".join(f for f in feed_ids if f)
        detail = f"{label}: {feeds}" if label else ""
        lines.append(f"{_day(day)}  {what.ljust(width)}  {detail}".rstrip())
    return "\n".join(lines)


def _which(partnership: Partnership, feeds: list[Feed], name: str, *, as_json: bool) -> int:
    answers = []
    for feed in feeds:
        period = period_of_name(partnership, feed, name)
        if period is None:
            continue
        sched = schedule(partnership, feed)
        due = sched.due_date(period)
        days = ladder_days(sched.ladder, due)
        answers.append(
            {
                "feed": feed.id,
                "period": period.id,
                "label": period.label,
                "start": period.start.isoformat(),
                "end": period.end.isoformat(),
                "due": due.isoformat(),
                "ladder": {label: days[stage].isoformat() for stage, label in STAGES},
            }
        )
    if not answers:
        expected = "; ".join(f"{f.id}: {_template(f)}" for f in feeds)
        folded = ascii_folded(name)
        if folded != name and any(period_of_name(partnership, feed, folded) for feed in feeds):
            print(f"{ascii(name)} is no period's file: {NOT_ASCII_REASON} ({expected})", file=sys.stderr)
            return 1
        print(f"{name!r} is not a file name any feed expects ({expected})", file=sys.stderr)
        return 1
    if as_json:
        print(json.dumps(answers, indent=2))
        return 0
    for answer in answers:
        print(
            f"{name} is {answer['feed']}'s return for {answer['label']}, "
            f"due {_day(dt.date.fromisoformat(str(answer['due']))).replace('  ', ' ')}"
        )
    return 0


def _template(feed: Feed) -> str:
    return feed.transport.pattern if feed.transport.kind == "sftp" else feed.transport.endpoint


def _day(day: dt.date) -> str:
    return f"{day:%a} {day.day:2d} {day:%b %Y}"
