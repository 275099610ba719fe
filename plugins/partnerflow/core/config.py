"""The partnership configuration: partners, datasets, feeds, calendar, KPIs and people, validated.

One YAML file (``config/partnership.yaml`` by default, ``PARTNERFLOW_CONFIG`` to move it) describes a whole
partnership. Adding a partner feed means adding an entry here; the DAGs are generated from it.
"""

from __future__ import annotations

import datetime as dt
import os
import re
from functools import cache
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from partnerflow.core.errors import TerminalError
from partnerflow.core.paths import repo_path

IDENTIFIER = r"^[a-z][a-z0-9_]*$"
EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")


class ConfigError(TerminalError):
    """The configuration file is missing, unreadable or invalid; the message names file and key path.

    Terminal: retrying reads the same file; someone must correct it."""


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Person(_Model):
    name: str
    email: str
    role: str = ""

    @field_validator("email")
    @classmethod
    def _email_shape(cls, value: str) -> str:
        if not EMAIL.match(value):
            raise ValueError("is not an email address")
        return value.lower()


class Agreement(_Model):
    """A data-sharing agreement: a feed is pulled only while its partner's agreement is in force."""

    reference: str
    in_force_from: dt.date
    in_force_to: dt.date | None = None

    def in_force(self, on: dt.date) -> bool:
        return self.in_force_from <= on and (self.in_force_to is None or on <= self.in_force_to)


class Partner(_Model):
    id: Annotated[str, Field(pattern=IDENTIFIER)]
    name: str
    sector: Literal["council", "police", "health", "education", "youth_justice", "probation", "other"]
    contact: Person
    senior_lead: Person
    agreement: Agreement


ColumnType = Literal["text", "code", "date", "integer", "decimal", "boolean"]
Minimise = Literal["keep", "drop", "pseudonymise", "nhs_number", "month", "postcode_sector"]


class Column(_Model):
    """One column of a dataset as partners send it, and how intake treats it.

    ``length`` is a fixed length for identifiers (``0012345`` keeps its zeros: a shorter all-digit value
    is reported as leading zeros lost, not loaded).
    """

    name: Annotated[str, Field(pattern=IDENTIFIER)]
    type: ColumnType = "text"
    required: bool = False
    aliases: tuple[str, ...] = ()
    minimise: Minimise = "keep"
    max_length: int = Field(default=100, ge=1)
    length: int | None = Field(default=None, ge=1)

    @model_validator(mode="after")
    def _minimise_fits_type(self) -> Column:
        if self.minimise == "month" and self.type != "date":
            raise ValueError("minimise: month needs type: date")
        if self.minimise in ("pseudonymise", "nhs_number", "postcode_sector") and self.type not in ("text", "code"):
            raise ValueError(f"minimise: {self.minimise} needs type: text")
        return self

    @property
    def loaded(self) -> bool:
        return self.minimise != "drop"


class Dataset(_Model):
    """The shape of a return (a core table and a contract), shared by every feed that sends it."""

    id: Annotated[str, Field(pattern=IDENTIFIER)]
    title: str
    grain: Literal["record", "aggregate"]
    table: Annotated[str, Field(pattern=r"^core\.[a-z][a-z0-9_]*$")]
    key: tuple[str, ...]
    columns: tuple[Column, ...]
    date_format: str = "%Y-%m-%d"
    contract: str = ""

    @model_validator(mode="after")
    def _key_is_loaded_columns(self) -> Dataset:
        names = [c.name for c in self.columns]
        if len(set(names)) != len(names):
            raise ValueError("column names must be unique")
        loaded = {c.name for c in self.columns if c.loaded}
        missing = [k for k in self.key if k not in loaded]
        if missing:
            raise ValueError(f"key columns {missing} are not loaded columns of this dataset")
        return self

    @property
    def suite_name(self) -> str:
        return self.contract or self.id

    @property
    def loaded_columns(self) -> tuple[Column, ...]:
        return tuple(c for c in self.columns if c.loaded)


class SftpTransport(_Model):
    """A partner's SFTP drop. ``pattern`` is a glob with ``{period}`` where the period id goes.

    ``completeness`` says when a file is whole: ``rename`` (uploaded under another name, then renamed),
    ``done_marker`` (a ``<name>.done`` JSON manifest with its sha256 and row count), or ``stable_size``
    (size and mtime unchanged across two polls and at least ``min_age_seconds`` old). A pattern ending in
    ``.zip`` or ``.gz`` is an archive holding one file.
    """

    kind: Literal["sftp"]
    connection: str
    directory: str
    pattern: str
    completeness: Literal["rename", "done_marker", "stable_size"] = "rename"
    poll_seconds: int = Field(default=10, ge=1)
    min_age_seconds: int = Field(default=60, ge=0)
    processed_directory: str | None = None
    connect_timeout_seconds: int = Field(default=30, ge=1)
    transfer_timeout_seconds: int = Field(default=900, ge=1)

    @field_validator("pattern")
    @classmethod
    def _pattern_has_period(cls, value: str) -> str:
        if "{period}" not in value or "/" in value:
            raise ValueError("must be a file name containing {period}, with no folder")
        return value


class HttpTransport(_Model):
    """A partner's HTTP API. ``endpoint`` contains ``{period}``; ``schedule`` is a cron expression.

    ``auth``: ``bearer`` (the token is the connection's password) or ``oauth2`` client credentials (the
    connection's login and password, exchanged at ``token_endpoint``). Each JSON page holds its rows under
    ``records_key``; ``pagination`` follows ``?page=N``, a ``next_cursor`` or a ``Link: rel="next"`` header.
    """

    kind: Literal["http"]
    connection: str
    endpoint: str
    schedule: str = "0 * * * *"
    pagination: Literal["page", "cursor", "link"] = "page"
    auth: Literal["bearer", "oauth2"] = "bearer"
    token_endpoint: str = "/oauth/token"
    records_key: str = "records"
    timeout_seconds: int = Field(default=60, ge=1)
    retry_budget_seconds: int = Field(default=300, ge=0)

    @field_validator("endpoint")
    @classmethod
    def _endpoint_has_period(cls, value: str) -> str:
        if "{period}" not in value:
            raise ValueError("must contain {period}")
        return value


class FileFormat(_Model):
    """How a feed's files are written: CSV (``encoding``, ``delimiter``), JSON, or XLSX (``sheet``, else the first).

    A CSV's byte order mark decides its encoding over ``encoding``, and its header row may decide its
    delimiter among comma, semicolon and tab (see ``partnerflow.intake.reader``). An XLSX sheet's header row
    may sit below up to ``max_title_rows`` title rows.

    A CSV whose last line has no line ending may be cut off, so it is refused (FILE-012) unless
    ``allow_unterminated_last_line``, which needs ``completeness: done_marker`` (see ``Feed``).
    """

    kind: Literal["csv", "json", "xlsx"]
    encoding: Literal["utf-8", "windows-1252"] = "utf-8"
    delimiter: Annotated[str, Field(min_length=1, max_length=1)] = ","
    sheet: str | None = None
    max_title_rows: int = Field(default=0, ge=0, le=10)
    allow_unterminated_last_line: bool = False

    @model_validator(mode="after")
    def _sheet_only_for_xlsx(self) -> FileFormat:
        if self.sheet is not None and self.kind != "xlsx":
            raise ValueError("sheet applies to xlsx files only")
        if self.max_title_rows and self.kind != "xlsx":
            raise ValueError("max_title_rows applies to xlsx files only")
        if self.allow_unterminated_last_line and self.kind != "csv":
            raise ValueError("allow_unterminated_last_line applies to csv files only")
        return self


PeriodKind = Literal["quarter", "month", "term"]


class LadderOverride(_Model):
    """A feed's own ladder steps, each replacing the partnership's when given."""

    advance_working_days: int | None = Field(default=None, ge=1)
    overdue_working_days: int | None = Field(default=None, ge=1)
    escalation_working_days: int | None = Field(default=None, ge=1)
    still_failing_working_days: int | None = Field(default=None, ge=0)


class FeedCalendar(_Model):
    """A feed's own calendar: its period, due rule and ladder steps, where they differ from the partnership's."""

    period: PeriodKind | None = None
    due_working_days: int | None = Field(default=None, ge=0)
    due_day_of_month: int | None = Field(default=None, ge=1, le=31)
    ladder: LadderOverride = LadderOverride()

    @model_validator(mode="after")
    def _one_due_rule(self) -> FeedCalendar:
        if self.due_working_days is not None and self.due_day_of_month is not None:
            raise ValueError("give due_working_days or due_day_of_month, not both")
        return self


class Feed(_Model):
    """One partner sending one dataset by one transport: one ingest DAG."""

    id: Annotated[str, Field(pattern=IDENTIFIER)]
    partner: str
    dataset: str
    title: str
    transport: Annotated[SftpTransport | HttpTransport, Field(discriminator="kind")]
    format: FileFormat
    calendar: FeedCalendar = FeedCalendar()

    @model_validator(mode="after")
    def _unterminated_only_with_a_manifest(self) -> Feed:
        transport = self.transport
        if self.format.allow_unterminated_last_line and not (
            isinstance(transport, SftpTransport) and transport.completeness == "done_marker"
        ):
            raise ValueError(
                "allow_unterminated_last_line needs completeness: done_marker (the manifest's sha256 and row "
                "count are what show such a file is whole)"
            )
        return self


class Ladder(_Model):
    """The reminder ladder, in working days relative to the due date.

    ``still_failing_working_days``: from that many working days before the due date, a return whose latest
    version was rejected gets one "still not accepted" notice.
    """

    advance_working_days: int = Field(default=5, ge=1)
    overdue_working_days: int = Field(default=3, ge=1)
    escalation_working_days: int = Field(default=5, ge=1)
    still_failing_working_days: int = Field(default=2, ge=0)

    @model_validator(mode="after")
    def _escalation_after_overdue(self) -> Ladder:
        if self.escalation_working_days < self.overdue_working_days:
            raise ValueError("escalation_working_days must not be before overdue_working_days")
        return self

    def merged(self, override: LadderOverride) -> Ladder:
        """This ladder with a feed's own steps in place of the partnership's."""
        changes = {name: value for name, value in override.model_dump().items() if value is not None}
        return Ladder.model_validate({**self.model_dump(), **changes})


class TermStarts(_Model):
    """The day ("MM-DD") each school term starts; a term ends the day before the next one starts."""

    spring: str = "01-01"
    summer: str = "04-01"
    autumn: str = "09-01"

    @model_validator(mode="after")
    def _in_order(self) -> TermStarts:
        days = []
        for name in ("spring", "summer", "autumn"):
            value = getattr(self, name)
            try:
                days.append(dt.date.fromisoformat(f"2001-{value}"))
            except ValueError:
                raise ValueError(f"{name}: {value!r} is not a day of the year like 09-01") from None
        if not days[0] < days[1] < days[2]:
            raise ValueError("terms must start in the order spring, summer, autumn within the year")
        return self


class Calendar(_Model):
    """The partnership's calendar: periods, due rule, bank holidays, the ladder and the Board's meetings.

    A return is due ``due_working_days`` after its period ends or, when ``due_day_of_month`` is given, on
    that day of the month after the period ends (the next working day if it is not one). The Board pack is
    due ``board_pack_working_days`` before each Board meeting.
    """

    period: PeriodKind = "quarter"
    due_working_days: int = Field(default=15, ge=0)
    due_day_of_month: int | None = Field(default=None, ge=1, le=31)
    bank_holidays: Literal["england-and-wales"] = "england-and-wales"
    terms: TermStarts = TermStarts()
    ladder: Ladder = Ladder()
    board_meetings: tuple[dt.date, ...] = ()
    board_pack_working_days: int = Field(default=5, ge=0)


class Benchmark(_Model):
    """A published figure to compare a measure with: England's, or the statistical neighbours' average."""

    name: Literal["England", "Statistical neighbours"]
    value: float
    year: str = Field(min_length=4, max_length=9)  # "2024" or "2023/24"
    source: str = Field(min_length=1)


class Kpi(_Model):
    """A Board measure: what it counts, which feeds it needs, its local target and who answers for it.

    Its figures come from a view in ``sql/marts`` (``mart``, default ``marts.kpi_<id>``) with one row per
    period: ``period_id, numerator[, denominator]``; with ``breakdown``, one row per period and
    ``category``; with ``within_working_days``, rows of ``period_id, start_date, end_date, cases`` counted
    in working days here. A ``ledger`` measure is the partnership's own (returns on time, passed first
    time), worked out from the submissions ledger for ``source_feeds`` (all feeds when empty).
    """

    id: Annotated[str, Field(pattern=IDENTIFIER)]
    title: str
    theme: str
    source_feeds: tuple[str, ...] = ()
    unit: Literal["percent", "count", "rate", "days"]
    target: float | None = None
    tolerance: float = Field(default=0.0, ge=0)
    polarity: Literal["higher_is_better", "lower_is_better", "none"] = "none"
    disclosure: Literal["dfe", "nhs", "none"] = "dfe"
    method: str = ""
    mart: Annotated[str, Field(pattern=r"^marts\.[a-z][a-z0-9_]*$")] | None = None
    breakdown: str | None = None
    categories: tuple[str, ...] = ()
    within_working_days: int | None = Field(default=None, ge=1)
    rate_per: int = Field(default=10_000, ge=1)
    ledger: Literal["on_time", "first_time_pass"] | None = None
    lead_partner: str | None = None
    benchmarks: tuple[Benchmark, ...] = ()

    @model_validator(mode="after")
    def _one_kind_of_figures(self) -> Kpi:
        if self.ledger and (self.mart or self.breakdown or self.within_working_days):
            raise ValueError("a ledger measure has no mart, breakdown or within_working_days")
        if self.ledger and self.unit != "percent":
            raise ValueError("a ledger measure is a percentage (unit: percent)")
        if self.breakdown and self.unit != "count":
            raise ValueError("a breakdown is a table of counts (unit: count)")
        if self.within_working_days and self.unit != "percent":
            raise ValueError("within_working_days gives a percentage (unit: percent)")
        if not self.ledger and not self.source_feeds:
            raise ValueError("source_feeds: a measure from a mart needs the feeds its figures come from")
        return self

    @property
    def mart_view(self) -> str:
        """The view holding this measure's figures (unused for a ledger measure)."""
        return self.mart or f"marts.kpi_{self.id}"


class Incidents(_Model):
    """Engineers' alerts: one per DAG x period while it keeps failing, repeated at most every ``cooldown_hours``."""

    cooldown_hours: float = Field(default=6.0, gt=0)


class FallbackRoute(_Model):
    """The second route when SendGrid itself is failing: an SMTP server, named by an Airflow connection.

    The officer and the engineers hear of it once a message is dead-lettered or has failed
    ``after_attempts`` times, at most every ``incidents.cooldown_hours``.
    """

    smtp_connection: str = "partnerflow_smtp"
    after_attempts: int = Field(default=3, ge=1)


class Notifications(_Model):
    """Who emails come from, who a non-production setup may email at all, and how failures are reported."""

    sender: Person
    allow_list: tuple[str, ...] = Field(
        default=(), description="addresses or '@domain' suffixes; outside production nothing else is sent"
    )
    incidents: Incidents = Incidents()
    fallback: FallbackRoute = FallbackRoute()

    def allowed(self, email: str) -> bool:
        """Whether ``email`` is on the allow-list: the address itself, or ``@domain`` (and its subdomains)."""
        email = email.lower()
        domain = email.rpartition("@")[2]
        for entry in (e.lower() for e in self.allow_list):
            if entry.startswith("@"):
                if domain == entry[1:] or domain.endswith("." + entry[1:]):
                    return True
            elif email == entry:
                return True
        return False


class PackRules(_Model):
    """How a Board pack goes out: pre-briefs first, then approval, then the Board.

    Partner leads get their pre-brief ``prebrief_working_days`` before the pack may go. The officer approves
    the pack (``partnerflow approve-pack``); with ``auto_approve`` an unapproved pack is approved when that
    day comes. The pack is built once every return is published, or, with returns still missing, from
    ``build_working_days`` before the next Board meeting's pack date (or that many working days after the
    returns were due, when no meeting is set).
    """

    prebrief_working_days: int = Field(default=3, ge=0)
    auto_approve: bool = False
    build_working_days: int = Field(default=10, ge=0)


class Board(_Model):
    name: str
    recipients: tuple[Person, ...]
    pack: PackRules = PackRules()


class Partnership(_Model):
    """The whole configuration."""

    name: str
    short_name: str
    go_live: dt.date | None = None
    """The day the partnership started using partnerflow: periods that ended before it are never chased or
    reported as missing (their returns were collected some other way)."""
    officer: Person
    engineers: tuple[Person, ...]
    calendar: Calendar = Calendar()
    notifications: Notifications
    board: Board
    partners: tuple[Partner, ...]
    datasets: tuple[Dataset, ...]
    feeds: tuple[Feed, ...]
    kpis: tuple[Kpi, ...] = ()

    @model_validator(mode="after")
    def _references_resolve(self) -> Partnership:
        for label, items in (
            ("partner", self.partners),
            ("dataset", self.datasets),
            ("feed", self.feeds),
            ("kpi", self.kpis),
        ):
            ids = [item.id for item in items]
            duplicates = sorted({i for i in ids if ids.count(i) > 1})
            if duplicates:
                raise ValueError(f"{label} ids must be unique; repeated: {', '.join(duplicates)}")
        partners = {p.id for p in self.partners}
        datasets = {d.id for d in self.datasets}
        feeds = {f.id for f in self.feeds}
        for feed in self.feeds:
            if feed.partner not in partners:
                raise ValueError(f"feed {feed.id!r} names partner {feed.partner!r}, which is not defined")
            if feed.dataset not in datasets:
                raise ValueError(f"feed {feed.id!r} names dataset {feed.dataset!r}, which is not defined")
        for kpi in self.kpis:
            unknown = [f for f in kpi.source_feeds if f not in feeds]
            if unknown:
                raise ValueError(f"kpi {kpi.id!r} names feeds that are not defined: {', '.join(unknown)}")
            if kpi.lead_partner is not None and kpi.lead_partner not in partners:
                raise ValueError(f"kpi {kpi.id!r} names lead_partner {kpi.lead_partner!r}, which is not defined")
        return self

    @model_validator(mode="after")
    def _feed_ladders_valid(self) -> Partnership:
        for feed in self.feeds:
            try:
                self.calendar.ladder.merged(feed.calendar.ladder)
            except ValidationError as exc:
                raise ValueError(f"feed {feed.id!r} calendar.ladder: {exc.errors()[0]['msg']}") from None
        return self

    def partner(self, partner_id: str) -> Partner:
        return next(p for p in self.partners if p.id == partner_id)

    def dataset(self, dataset_id: str) -> Dataset:
        return next(d for d in self.datasets if d.id == dataset_id)

    def feed(self, feed_id: str) -> Feed:
        for feed in self.feeds:
            if feed.id == feed_id:
                return feed
        raise KeyError(f"no feed {feed_id!r} in the configuration")

    def due_working_days(self, feed: Feed) -> int:
        own = feed.calendar.due_working_days
        return self.calendar.due_working_days if own is None else own


def config_path() -> Path:
    """The configuration file in use: ``PARTNERFLOW_CONFIG`` or ``config/partnership.yaml``."""
    return Path(os.environ.get("PARTNERFLOW_CONFIG", repo_path("config", "partnership.yaml")))


class _Loader(yaml.SafeLoader):
    """YAML without implicit dates: ``2026-13-01`` reaches validation as text, which then names its key and
    line, instead of failing inside the parser."""


_Loader.yaml_implicit_resolvers = {
    first: [(tag, regex) for tag, regex in resolvers if tag != "tag:yaml.org,2002:timestamp"]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}


def load_config(path: Path | None = None) -> Partnership:
    """Read and validate a partnership file; raise ConfigError naming the file, and for each problem (all of
    them, in one message) its line and key path, with "did you mean" for an id that is not defined."""
    path = path or config_path()
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read the file ({exc.strerror})") from None
    except UnicodeDecodeError:
        raise ConfigError(f"{path}: is not UTF-8 text") from None
    try:
        raw = yaml.load(text, Loader=_Loader)  # noqa: S506 - a SafeLoader without timestamps
        tree = yaml.compose(text, Loader=_Loader)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"{path}:{mark.line + 1}:{mark.column + 1}" if mark else str(path)
        raise ConfigError(f"{where}: not valid YAML ({getattr(exc, 'problem', None) or exc})") from None
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: the top level must be a mapping of keys")
    problems = _reference_problems(raw)
    try:
        config = Partnership.model_validate(raw)
    except ValidationError as exc:
        for error in exc.errors():
            if not error["loc"] and problems and "not defined" in error["msg"]:
                continue  # the same unknown id, already said with its key path
            problems.append((tuple(error["loc"]), error["msg"].removeprefix("Value error, ")))
    else:
        if not problems:
            return config
    lines = []
    for loc, message in problems:
        line = _line_of(tree, loc)
        lines.append(f"  {path}:{line}: {_key_path(raw, loc)}: {message}" if line else f"  {path}: {message}")
    raise ConfigError(f"{path}: {len(lines)} problem(s)\n" + "\n".join(lines))


def _reference_problems(raw: dict[str, Any]) -> list[tuple[tuple[Any, ...], str]]:
    """Ids that name something not defined (a feed's partner or dataset, a KPI's feeds or lead partner)."""

    def ids(key: str) -> list[str]:
        items = raw.get(key)
        return [str(i["id"]) for i in items if isinstance(i, dict) and "id" in i] if isinstance(items, list) else []

    partners, datasets, feeds = ids("partners"), ids("datasets"), ids("feeds")
    problems: list[tuple[tuple[Any, ...], str]] = []

    def check(loc: tuple[Any, ...], value: Any, known: list[str], what: str) -> None:
        if isinstance(value, str) and value not in known:
            problems.append((loc, f"{value!r} is not a defined {what}{did_you_mean(value, known)}"))

    for i, feed in enumerate(raw.get("feeds") or []):
        if isinstance(feed, dict):
            check(("feeds", i, "partner"), feed.get("partner"), partners, "partner")
            check(("feeds", i, "dataset"), feed.get("dataset"), datasets, "dataset")
    for i, kpi in enumerate(raw.get("kpis") or []):
        if isinstance(kpi, dict):
            for j, feed_id in enumerate(kpi.get("source_feeds") or []):
                check(("kpis", i, "source_feeds", j), feed_id, feeds, "feed")
            if kpi.get("lead_partner") is not None:
                check(("kpis", i, "lead_partner"), kpi.get("lead_partner"), partners, "partner")
    return problems


def did_you_mean(value: str, known: list[str] | tuple[str, ...]) -> str:
    """``; did you mean 'council'?`` when one known id is close to ``value``; else the known ids."""
    import difflib

    close = difflib.get_close_matches(value, list(known), n=1)
    if close:
        return f"; did you mean {close[0]!r}?"
    return f" (known: {', '.join(known)})" if known else ""


def _line_of(tree: Any, loc: tuple[Any, ...]) -> int | None:
    """The 1-based line of the YAML node at ``loc`` (or of its nearest parent that exists)."""
    node, line = tree, (tree.start_mark.line + 1 if tree is not None else None)
    for step in loc:
        if isinstance(node, yaml.MappingNode):
            match = next(((k, v) for k, v in node.value if getattr(k, "value", None) == step), None)
            if match is None:
                break
            line, node = match[0].start_mark.line + 1, match[1]
        elif isinstance(node, yaml.SequenceNode) and isinstance(step, int) and step < len(node.value):
            node = node.value[step]
            line = node.start_mark.line + 1
        elif step in {"sftp", "http"}:
            continue
        else:
            break
    return line


@cache
def partnership() -> Partnership:
    """The configuration in use, read once per process (DAG parsing and tasks call this)."""
    return load_config()


def _key_path(raw: Any, loc: tuple[Any, ...]) -> str:
    """``feeds[police_ppn].transport.endpoint`` from pydantic's location tuple, naming list items by id."""
    parts: list[str] = []
    node = raw
    for step in loc:
        if isinstance(step, int):
            item = node[step] if isinstance(node, list) and step < len(node) else None
            label = item.get("id") if isinstance(item, dict) and item.get("id") else step
            parts[-1] = f"{parts[-1]}[{label}]" if parts else f"[{label}]"
            node = item
        elif step in {"sftp", "http"} and isinstance(node, dict) and node.get("kind") == step:
            continue
        else:
            parts.append(str(step))
            node = node.get(step) if isinstance(node, dict) else None
    return ".".join(parts) or "(top level)"
