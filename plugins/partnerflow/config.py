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

from partnerflow.paths import repo_path

IDENTIFIER = r"^[a-z][a-z0-9_]*$"
EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")


class ConfigError(Exception):
    """The configuration file is missing, unreadable or invalid; the message names file and key path."""


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
    """One column of a dataset as partners send it, and how intake treats it."""

    name: Annotated[str, Field(pattern=IDENTIFIER)]
    type: ColumnType = "text"
    required: bool = False
    aliases: tuple[str, ...] = ()
    minimise: Minimise = "keep"
    max_length: int = 100

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
    """A partner's SFTP drop. ``pattern`` is a glob with ``{period}`` where the period id goes."""

    kind: Literal["sftp"]
    connection: str
    directory: str
    pattern: str
    completeness: Literal["rename", "done_marker", "stable_size"] = "rename"
    poll_seconds: int = Field(default=10, ge=1)

    @field_validator("pattern")
    @classmethod
    def _pattern_has_period(cls, value: str) -> str:
        if "{period}" not in value or "/" in value:
            raise ValueError("must be a file name containing {period}, with no folder")
        return value


class HttpTransport(_Model):
    """A partner's HTTP API. ``endpoint`` contains ``{period}``; ``schedule`` is a cron expression."""

    kind: Literal["http"]
    connection: str
    endpoint: str
    schedule: str = "0 * * * *"

    @field_validator("endpoint")
    @classmethod
    def _endpoint_has_period(cls, value: str) -> str:
        if "{period}" not in value:
            raise ValueError("must contain {period}")
        return value


class FileFormat(_Model):
    kind: Literal["csv", "json", "xlsx"]
    encoding: Literal["utf-8", "windows-1252"] = "utf-8"
    delimiter: str = ","


class Feed(_Model):
    """One partner sending one dataset by one transport: one ingest DAG."""

    id: Annotated[str, Field(pattern=IDENTIFIER)]
    partner: str
    dataset: str
    title: str
    transport: Annotated[SftpTransport | HttpTransport, Field(discriminator="kind")]
    format: FileFormat
    due_working_days: int | None = Field(default=None, ge=0)


class Ladder(_Model):
    """The reminder ladder, in working days relative to the due date."""

    advance_working_days: int = Field(default=5, ge=1)
    overdue_working_days: int = Field(default=3, ge=1)
    escalation_working_days: int = Field(default=5, ge=1)


class Calendar(_Model):
    period: Literal["quarter"] = "quarter"
    due_working_days: int = Field(default=15, ge=0)
    bank_holidays: Literal["england-and-wales"] = "england-and-wales"
    ladder: Ladder = Ladder()
    board_meetings: tuple[dt.date, ...] = ()


class Kpi(_Model):
    """A Board measure: what it counts, which feeds it needs, and its local target."""

    id: Annotated[str, Field(pattern=IDENTIFIER)]
    title: str
    theme: str
    source_feeds: tuple[str, ...]
    unit: Literal["percent", "count", "rate", "days"]
    target: float | None = None
    tolerance: float = 0.0
    polarity: Literal["higher_is_better", "lower_is_better", "none"] = "none"
    disclosure: Literal["dfe", "nhs", "none"] = "dfe"


class Notifications(_Model):
    """Who emails come from, and who a non-production setup may email at all."""

    sender: Person
    allow_list: tuple[str, ...] = Field(
        default=(), description="addresses or '@domain' suffixes; outside production nothing else is sent"
    )

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


class Board(_Model):
    name: str
    recipients: tuple[Person, ...]


class Partnership(_Model):
    """The whole configuration."""

    name: str
    short_name: str
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
        return self.calendar.due_working_days if feed.due_working_days is None else feed.due_working_days


def config_path() -> Path:
    """The configuration file in use: ``PARTNERFLOW_CONFIG`` or ``config/partnership.yaml``."""
    return Path(os.environ.get("PARTNERFLOW_CONFIG", repo_path("config", "partnership.yaml")))


def load_config(path: Path | None = None) -> Partnership:
    """Read and validate a partnership file; raise ConfigError naming the file and the key path."""
    path = path or config_path()
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read the file ({exc.strerror})") from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        raise ConfigError(f"{path}:{where} is not valid YAML ({getattr(exc, 'problem', exc)})") from None
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: the top level must be a mapping of keys")
    try:
        return Partnership.model_validate(raw)
    except ValidationError as exc:
        problems = "\n".join(f"  {_key_path(raw, e['loc'])}: {e['msg']}" for e in exc.errors())
        raise ConfigError(f"{path}: {exc.error_count()} problem(s)\n{problems}") from None


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
