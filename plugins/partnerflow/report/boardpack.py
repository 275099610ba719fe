"""The Board's MI pack for a period: what it shows, and the files it is made of.

``read_content`` takes one consistent snapshot of every KPI (after disclosure control) and where every
partner's return stands. ``render`` turns that content and an ``Edition`` (which version it is, what it
replaces) into the pack's files: the PDF (``partnerflow.report.pdf``), an accessible HTML copy of the same
content, the phone-friendly HTML summary used as the email body, and a CSV of the figures.

The pack's ``fingerprint`` is a hash of the figures and statuses it shows, not of its bytes: the same data
is the same pack, whatever day it is rendered. Drafts, approval and distribution are in
``partnerflow.report.distribution``.
"""

from __future__ import annotations

import csv
import datetime as dt
import hashlib
import io
import json
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import cache, cached_property
from pathlib import Path
from typing import Any

import jinja2
import sqlalchemy as sa
from markupsafe import Markup, escape
from sqlalchemy.engine import Connection, Engine

from partnerflow.core import clock, wording
from partnerflow.core.config import Partnership
from partnerflow.core.periods import Period, board_meetings, period_label
from partnerflow.core.spreadsheet import spreadsheet_safe
from partnerflow.report import pdf
from partnerflow.report.commentary import load_commentary
from partnerflow.report.content import RAG_LABELS, Edition, PackContent
from partnerflow.report.disclosure import LIMITS, MARKS, NHS_ROUNDING
from partnerflow.report.kpis import TrendPoint, feed_periods, kpi_rows, submission_statuses

TEMPLATES_DIR = Path(__file__).with_name("templates")
PDF_NAME, HTML_NAME, CSV_NAME = "board-pack.pdf", "board-pack.html", "board-pack-figures.csv"
MAX_CHANGES_LISTED = 12


@dataclass(frozen=True, kw_only=True)
class BoardPack:
    """One rendered version of a period's pack."""

    content: PackContent
    edition: Edition
    pdf: bytes
    html: str
    summary_html: str
    csv: bytes
    pages: int = field(default=0)

    @property
    def period(self) -> Period:
        return self.content.period

    @cached_property
    def pdf_sha256(self) -> str:
        return hashlib.sha256(self.pdf).hexdigest()

    def file_stem(self) -> str:
        return f"board-pack-{self.period.id}-v{self.edition.version}"

    def folder(self, var_dir: Path) -> Path:
        """``<var>/boardpack/<period>/v<N>``: where this version is archived."""
        return var_dir / "boardpack" / self.period.id / f"v{self.edition.version}"

    def write(self, var_dir: Path) -> Path:
        """Save the PDF, HTML copy and CSV under ``folder`` (and as the period's latest pack one level up).

        Returns the archived PDF's path.
        """
        folder = self.folder(var_dir)
        archive_files(folder, {PDF_NAME: self.pdf, HTML_NAME: self.html.encode("utf-8"), CSV_NAME: self.csv})
        return folder / PDF_NAME


def archive_files(folder: Path, files: dict[str, bytes]) -> None:
    """Write ``files`` into a version's ``folder`` and, as the period's latest pack, into its parent.

    Each file is replaced atomically, so a reader never sees half a PDF.
    """
    for directory in (folder, folder.parent):
        directory.mkdir(parents=True, exist_ok=True)
        for name, data in files.items():
            _write_atomically(directory / name, data)


def read_content(
    engine: Engine, partnership: Partnership, period: Period | str, *, as_of: dt.date | None = None
) -> PackContent:
    """Read the KPIs and return statuses for ``period`` in one snapshot."""
    period = period if isinstance(period, Period) else Period.from_id(period)
    with engine.connect().execution_options(isolation_level="REPEATABLE READ") as conn, conn.begin():
        return content_on(conn, partnership, period, as_of=as_of)


def content_on(
    conn: Connection, partnership: Partnership, period: Period, *, as_of: dt.date | None = None
) -> PackContent:
    """``read_content`` on an open connection."""
    as_of = as_of or clock.today()
    return PackContent(
        partnership=partnership,
        period=period,
        as_of=as_of,
        rows=tuple(kpi_rows(conn, partnership, period, as_of=as_of)),
        statuses=tuple(submission_statuses(conn, partnership, period, as_of=as_of)),
        commentary=load_commentary(partnership, period),
    )


def render(content: PackContent, edition: Edition) -> BoardPack:
    """The pack's files for ``content`` as ``edition``."""
    context = template_context(content, edition)
    env = _environment()
    document, pages = pdf.render_pdf(content, edition)
    return BoardPack(
        content=content,
        edition=edition,
        pdf=document,
        html=env.get_template("board_pack.html").render(context),
        summary_html=env.get_template("summary.html").render(context),
        csv=figures_csv(content),
        pages=pages,
    )


def build_board_pack(
    engine: Engine,
    partnership: Partnership,
    period: Period | str,
    *,
    as_of: dt.date | None = None,
    edition: Edition | None = None,
) -> BoardPack:
    """Read and render a period's pack (as a first version built today unless ``edition`` says otherwise)."""
    content = read_content(engine, partnership, period, as_of=as_of)
    return render(content, edition or Edition(built_on=content.as_of, meeting=next_meeting(partnership, content)))


def next_meeting(partnership: Partnership, content: PackContent) -> dt.date | None:
    """The first Board meeting whose pack is due once the period's returns are due."""
    latest_due = max((s.due_date for s in content.statuses), default=content.period.end)
    return next((m.meeting for m in board_meetings(partnership) if m.pack_due >= latest_due), None)


def changes_between(before: dict[str, Any], after: dict[str, Any]) -> tuple[str, ...]:
    """What a revised pack shows differently from the version sent, in plain lines (figures as shown)."""
    lines: list[str] = []
    old_kpis = {k["id"]: k for k in before.get("kpis", [])}
    for kpi in after.get("kpis", []):
        old = old_kpis.get(kpi["id"])
        if old is None:
            lines.append(f"{kpi['title']}: new measure, {kpi['display']}.")
        elif old["display"] != kpi["display"] or old.get("breakdown") != kpi.get("breakdown"):
            lines.append(f"{kpi['title']}: now {kpi['display']} (was {old['display']}).")
    old_returns = {(r["feed_id"], r["period"]): r for r in before.get("returns", [])}
    for status in after.get("returns", []):
        old = old_returns.get((status["feed_id"], status["period"]))
        if old is not None and old["summary"] != status["summary"]:
            lines.append(f"{status['partner']}, {status['feed']}: {status['summary']} (was: {old['summary']})")
    if len(lines) > MAX_CHANGES_LISTED:
        more = len(lines) - MAX_CHANGES_LISTED + 1
        lines = [*lines[: MAX_CHANGES_LISTED - 1], f"And {more} more changes: see the pack."]
    return tuple(lines)


def figures_csv(content: PackContent) -> bytes:
    """The pack's figures as CSV (one row per measure, period and category), safe to open in a spreadsheet."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\r\n")
    writer.writerow(["measure_id", "measure", "theme", "period", "category", "value", "target", "rag", "note"])
    for row in content.rows:
        for point in row.trend:
            current = point.period == content.period
            writer.writerow(
                spreadsheet_safe(cell)
                for cell in (
                    row.id,
                    row.title,
                    row.theme,
                    point.period.id,
                    "",
                    point.cell.text if point.cell else ("" if not current else row.display),
                    row.target_text if current else "",
                    row.rag_label if current else "",
                    row.note if current else "",
                )
            )
        if row.breakdown is not None:
            for i, category in enumerate(row.breakdown.categories):
                for j, period in enumerate(row.breakdown.periods):
                    cell = row.breakdown.table.cells[i][j]
                    writer.writerow(
                        spreadsheet_safe(v)
                        for v in (row.id, row.title, row.theme, period.id, category, cell.text, "", "", "")
                    )
    return ("\ufeff" + buffer.getvalue()).encode("utf-8")  # the BOM makes Excel read UTF-8


def template_context(content: PackContent, edition: Edition) -> dict[str, Any]:
    """What the HTML templates (the pack copy and the email summary) are rendered with."""
    return {
        "partnership": content.partnership,
        "period": content.period,
        "content": content,
        "edition": edition,
        "rows": content.rows,
        "themes": content.themes,
        "statuses": content.statuses,
        "attention": content.attention,
        "rag_counts": content.rag_counts,
        "data_as_at": content.data_as_at,
        "suppression_rules": content.suppression_rules,
        "marks": MARKS,
        "limits": LIMITS,
        "nhs_rounding": NHS_ROUNDING,
        "rag_labels": RAG_LABELS,
    }


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

    label = "Trend: " + ", ".join(f"{p.period.id} {p.text}" for p in points)
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


def inputs_digest(conn: Connection, partnership: Partnership, period: Period) -> str:
    """A digest of where the period's returns stand in the ledger (state and published file of each).

    It changes whenever a return for the period is received, rejected or published, which is when a draft
    waiting to go to the Board may no longer show the latest data.
    """
    wanted = sorted({(f.id, p.id) for f in partnership.feeds for p in feed_periods(partnership, f, period)})
    rows = conn.execute(
        sa.text(
            "SELECT feed_id, period_id, state, published_file_id FROM ops.submissions"
            " WHERE period_id = ANY(:periods) ORDER BY feed_id, period_id"
        ),
        {"periods": sorted({p for _, p in wanted})},
    ).all()
    state = [[r.feed_id, r.period_id, r.state, r.published_file_id] for r in rows if (r.feed_id, r.period_id) in wanted]
    return hashlib.sha256(json.dumps(state).encode("utf-8")).hexdigest()


def _write_atomically(path: Path, data: bytes) -> None:
    partial = path.with_name(f".{path.name}.{os.getpid()}.part")
    partial.write_bytes(data)
    os.replace(partial, path)


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
    env.filters.update(wording.FILTERS)
    env.filters["period_label"] = period_label
    return env
