"""The Board's MI pack: a self-contained HTML report per period, its email summary, and its distribution.

The pack shows every configured KPI after disclosure control (RAG tiles, a table per theme with an inline
SVG trend), names every partner whose data is missing, late or rejected, and explains method and
suppression. The same data always renders the same bytes (no build timestamp inside), so a rebuild only
makes a new version in ``ops.board_packs`` when something changed.

Pitfalls:
    ``distribute`` sends one Board email per period (the outbox key is the period). Rebuilding later
    records a new version and rewrites the file, but does not send again; re-issuing a corrected pack
    is a deliberate, separate step (not built yet).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import os
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cache, cached_property
from pathlib import Path

import jinja2
import sqlalchemy as sa
from markupsafe import Markup, escape
from sqlalchemy.engine import Connection, Engine

from partnerflow import paths
from partnerflow.calendar import Period
from partnerflow.config import Partnership
from partnerflow.notify import messages, outbox
from partnerflow.report.disclosure import LIMITS, MARKS, NHS_ROUNDING
from partnerflow.report.kpis import FeedStatus, KpiRow, TrendPoint, kpi_rows, submission_statuses

TEMPLATES_DIR = Path(__file__).with_name("templates")
PACK_FILENAME = "board-pack.html"
# Any fixed number: with the period's hash it serialises concurrent distributions of one period.
BOARD_PACK_LOCK = 7_212_004
RAG_LABELS = {"red": "Red", "amber": "Amber", "green": "Green", "none": "No target"}


@dataclass(frozen=True, kw_only=True)
class BoardPack:
    """One period's Board pack: the full HTML report, the email summary, and what they were built from."""

    partnership: Partnership
    period: Period
    rows: tuple[KpiRow, ...]
    statuses: tuple[FeedStatus, ...]
    html: str
    summary_html: str

    @cached_property
    def sha256(self) -> str:
        return hashlib.sha256(self.html.encode("utf-8")).hexdigest()

    @property
    def attention(self) -> tuple[FeedStatus, ...]:
        """Feeds whose data is missing, late or was rejected for the period."""
        return tuple(s for s in self.statuses if s.needs_attention)

    def relative_path(self) -> Path:
        return Path("boardpack", self.period.id, PACK_FILENAME)

    def write(self, var_dir: Path) -> Path:
        """Save the pack as ``<var_dir>/boardpack/<period>/board-pack.html`` (replaced atomically)."""
        path = var_dir / self.relative_path()
        path.parent.mkdir(parents=True, exist_ok=True)
        partial = path.with_name(f".{PACK_FILENAME}.{os.getpid()}.part")
        partial.write_text(self.html, encoding="utf-8")
        os.replace(partial, path)
        return path


@dataclass(frozen=True)
class Distribution:
    """What ``distribute`` did: where the pack is, its version, and whether the email was newly queued."""

    path: Path
    version: int
    sha256: str
    enqueued: bool


def build_board_pack(
    engine: Engine, partnership: Partnership, period: Period | str, *, as_of: dt.date | None = None
) -> BoardPack:
    """Read the KPIs and submission states for ``period`` in one snapshot and render the pack."""
    period = period if isinstance(period, Period) else Period.from_id(period)
    with engine.connect().execution_options(isolation_level="REPEATABLE READ") as conn, conn.begin():
        return render_board_pack(conn, partnership, period, as_of=as_of)


def render_board_pack(
    conn: Connection, partnership: Partnership, period: Period, *, as_of: dt.date | None = None
) -> BoardPack:
    """``build_board_pack`` on an open connection."""
    rows = tuple(kpi_rows(conn, partnership, period, as_of=as_of))
    statuses = tuple(submission_statuses(conn, partnership, period, as_of=as_of))
    context = _context(partnership, period, rows, statuses)
    env = _environment()
    return BoardPack(
        partnership=partnership,
        period=period,
        rows=rows,
        statuses=statuses,
        html=env.get_template("board_pack.html").render(context),
        summary_html=env.get_template("summary.html").render(context),
    )


def distribute(
    engine: Engine,
    partnership: Partnership,
    period: Period | str,
    *,
    var_dir: Path | None = None,
    as_of: dt.date | None = None,
) -> Distribution:
    """Build and save the pack, record its version, and queue the one Board email for the period."""
    pack = build_board_pack(engine, partnership, period, as_of=as_of)
    root = var_dir or paths.var_dir()
    with engine.begin() as conn:
        conn.execute(
            sa.text("SELECT pg_advisory_xact_lock(:lock, hashtext(:period))"),
            {"lock": BOARD_PACK_LOCK, "period": pack.period.id},
        )
        path = pack.write(root)
        version = record_pack(conn, pack)
        message = messages.board_pack(
            partnership,
            pack.period,
            html_summary=pack.summary_html,
            attachments=[
                outbox.Attachment(f"board-pack-{pack.period.id}.html", pack.html.encode("utf-8"), "text/html")
            ],
        )
        enqueued = outbox.enqueue(conn, message)
        if enqueued:
            conn.execute(
                sa.text("UPDATE ops.board_packs SET distributed_at = now() WHERE period_id = :p AND version = :v"),
                {"p": pack.period.id, "v": version},
            )
    return Distribution(path=path, version=version, sha256=pack.sha256, enqueued=enqueued)


def record_pack(conn: Connection, pack: BoardPack) -> int:
    """The pack's version in ``ops.board_packs``: the latest if its content is unchanged, else a new one."""
    latest = conn.execute(
        sa.text("SELECT version, sha256 FROM ops.board_packs WHERE period_id = :p ORDER BY version DESC LIMIT 1"),
        {"p": pack.period.id},
    ).first()
    if latest is not None and latest.sha256 == pack.sha256:
        return int(latest.version)
    version = 1 if latest is None else int(latest.version) + 1
    conn.execute(
        sa.text("INSERT INTO ops.board_packs (period_id, version, sha256, path) VALUES (:p, :v, :sha, :path)"),
        {"p": pack.period.id, "v": version, "sha": pack.sha256, "path": pack.relative_path().as_posix()},
    )
    return version


def sparkline(
    points: Sequence[TrendPoint], *, target: float | None = None, width: int = 120, height: int = 32
) -> Markup:
    """An inline SVG line of the trend, with gaps for missing or suppressed periods and a dashed target."""
    pad = 4
    values = [p.value for p in points]
    known = [v for v in values if v is not None]
    scale = known + ([target] if target is not None and known else [])
    low, high = (min(scale), max(scale)) if scale else (0.0, 1.0)
    span = (high - low) or 1.0
    step = (width - 2 * pad) / max(len(points) - 1, 1)

    def x(i: int) -> float:
        return round(pad + i * step, 1)

    def y(value: float) -> float:
        return round(height - pad - (value - low) / span * (height - 2 * pad), 1)

    label = "Trend: " + ", ".join(f"{p.period.id} {p.cell.text if p.cell else 'missing'}" for p in points)
    parts = [
        f'<svg class="spark" role="img" width="{width}" height="{height}" viewBox="0 0 {width} {height}">',
        f"<title>{escape(label)}</title>",
    ]
    if target is not None and known:
        parts.append(
            f'<line x1="{pad}" x2="{width - pad}" y1="{y(target)}" y2="{y(target)}" '
            'stroke="#505a5f" stroke-width="1" stroke-dasharray="3 2"/>'
        )
    segments: list[list[tuple[float, float]]] = [[]]
    for i, value in enumerate(values):
        if value is None:
            segments.append([])
        else:
            segments[-1].append((x(i), y(value)))
    for segment in segments:
        if len(segment) > 1:
            coords = " ".join(f"{sx},{sy}" for sx, sy in segment)
            parts.append(f'<polyline points="{coords}" fill="none" stroke="#1d70b8" stroke-width="2"/>')
        elif segment:
            parts.append(f'<circle cx="{segment[0][0]}" cy="{segment[0][1]}" r="2" fill="#1d70b8"/>')
    if values and values[-1] is not None:
        parts.append(f'<circle cx="{x(len(values) - 1)}" cy="{y(values[-1])}" r="3" fill="#0b0c0c"/>')
    parts.append("</svg>")
    return Markup("".join(parts))  # noqa: S704 - numbers and an escaped label only


def _context(
    partnership: Partnership, period: Period, rows: tuple[KpiRow, ...], statuses: tuple[FeedStatus, ...]
) -> dict[str, object]:
    themes: dict[str, list[KpiRow]] = {}
    for row in rows:
        themes.setdefault(row.theme, []).append(row)
    published = [s.published_on for s in statuses if s.published_on is not None]
    rules = sorted({row.kpi.disclosure for row in rows} - {"none"})
    return {
        "partnership": partnership,
        "period": period,
        "rows": rows,
        "themes": themes,
        "statuses": statuses,
        "attention": [s for s in statuses if s.needs_attention],
        "rag_counts": {rag: sum(1 for r in rows if r.rag == rag) for rag in RAG_LABELS},
        "data_as_at": max(published) if published else None,
        "suppression_rules": rules,
        "marks": MARKS,
        "limits": LIMITS,
        "nhs_rounding": NHS_ROUNDING,
        "rag_labels": RAG_LABELS,
    }


@cache
def _environment() -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(TEMPLATES_DIR),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.globals["sparkline"] = sparkline
    env.filters["day"] = lambda day: f"{day.day} {day:%B %Y}" if day else ""
    env.filters["short_day"] = lambda day: f"{day.day} {day:%b %Y}" if day else ""
    return env
