"""The Board pack as a PDF (fpdf2): a cover, a page of RAG tiles, a page per theme with trend charts and
tables, the data-completeness section and the notes on method and suppression.

Text is set in DejaVu Sans, which matplotlib ships, so every character the pack uses (≥, –, ▲) renders
and reads back out of the PDF. The creation date is the day the pack was built, so the same content
and edition always give the same bytes.
"""

from __future__ import annotations

import datetime as dt
import importlib.util
import io
from collections.abc import Sequence
from pathlib import Path

from fpdf import FPDF
from fpdf.fonts import FontFace

from partnerflow.core import wording
from partnerflow.report.content import Edition, PackContent
from partnerflow.report.disclosure import LIMITS, MARKS, NHS_ROUNDING, format_number
from partnerflow.report.kpis import Breakdown, KpiRow

FONT = "DejaVu"
MARGIN = 15.0
BLACK, GREY, LIGHT, RULE = (11, 12, 12), (80, 90, 95), (243, 242, 241), (177, 180, 182)
BLUE, WHITE = (29, 112, 184), (255, 255, 255)
RAG_COLOURS = {"red": (212, 53, 28), "amber": (244, 119, 56), "green": (0, 112, 60), "none": (177, 180, 182)}
RAG_TEXT = {"red": WHITE, "amber": BLACK, "green": WHITE, "none": BLACK}
TILES_PER_ROW = 4
TILE_HEIGHT = 31.5
BENCHMARK_LINE = 3.2  # a tile's extra height when measures have benchmarks
BENCHMARK_KEY = " Eng: England's figure; SN: our statistical neighbours' (year and source in the notes)."
CHART_WIDTH, CHART_HEIGHT = 86.0, 34.0
CHART_TITLE_LINES, CHART_TITLE_LINE = 2, 3.6  # a chart's title wraps within its own column, never into the next
TILE_TITLE_HEIGHT, TILE_TITLE_SIZES = 9.8, (7.0, 6.5, 6.0, 5.5, 5.0)  # a long tile title is set smaller, never cut
TILE_LINE = 0.443  # a tile title's line height, in mm per point of its size


def render_pdf(content: PackContent, edition: Edition) -> tuple[bytes, int]:
    """The pack's PDF and its number of pages."""
    pdf = _PackPdf(content, edition)
    _cover(pdf, content, edition)
    _summary(pdf, content)
    for theme, rows in content.themes.items():
        _theme(pdf, theme, rows, content)
    _completeness(pdf, content)
    _notes(pdf, content, edition)
    return bytes(pdf.output()), pdf.pages_count


class _PackPdf(FPDF):
    def __init__(self, content: PackContent, edition: Edition):
        super().__init__(orientation="portrait", unit="mm", format="A4")
        self.content, self.edition = content, edition
        fonts = _font_dir()
        self.add_font(FONT, "", str(fonts / "DejaVuSans.ttf"))
        self.add_font(FONT, "B", str(fonts / "DejaVuSans-Bold.ttf"))
        self.add_font(FONT, "I", str(fonts / "DejaVuSans-Oblique.ttf"))
        self.set_margins(MARGIN, MARGIN, MARGIN)
        self.set_auto_page_break(auto=True, margin=MARGIN + 3)
        partnership, period = content.partnership, content.period
        title = f"{partnership.short_name} Board performance pack, {period.label}, version {edition.version}"
        self.set_title(title)
        self.set_author(partnership.short_name)
        self.set_subject(f"Multi-agency performance information for {partnership.board.name}")
        self.set_creator("partnerflow")
        self.set_lang("en-GB")
        self.set_creation_date(dt.datetime.combine(edition.built_on, dt.time(12), tzinfo=dt.UTC))
        self.set_text_color(*BLACK)

    def header(self) -> None:
        if self.page_no() == 1:
            return
        self.set_font(FONT, "", 7.5)
        self.set_text_color(*GREY)
        left = f"{self.content.partnership.short_name} · Board performance pack · {self.content.period.short_label}"
        right = f"Version {self.edition.version}" + (" (revised)" if self.edition.revised else "")
        self.cell(self.epw / 2, 5, left)
        self.cell(self.epw / 2, 5, right, align="R", new_x="LMARGIN", new_y="NEXT")
        self.set_draw_color(*RULE)
        self.line(MARGIN, self.get_y(), self.w - MARGIN, self.get_y())
        self.ln(4)
        self.set_text_color(*BLACK)

    def footer(self) -> None:
        self.set_y(-MARGIN)
        self.set_font(FONT, "", 7.5)
        self.set_text_color(*GREY)
        self.cell(0, 5, f"Page {self.page_no()} of {{nb}}", align="C")
        self.set_text_color(*BLACK)

    def heading(self, text: str, size: float = 16) -> None:
        self.set_font(FONT, "B", size)
        self.multi_cell(0, size * 0.5, text, align="L", new_x="LMARGIN", new_y="NEXT")
        self.ln(2)

    def para(self, text: str, size: float = 9.5, *, colour: tuple[int, int, int] = BLACK, style: str = "") -> None:
        self.set_font(FONT, style, size)
        self.set_text_color(*colour)
        self.multi_cell(0, size * 0.5, text, align="L", new_x="LMARGIN", new_y="NEXT")
        self.set_text_color(*BLACK)

    def bullets(self, items: Sequence[str], size: float = 9.5) -> None:
        self.set_font(FONT, "", size)
        for item in items:
            self.set_x(MARGIN + 2)
            self.cell(4, size * 0.5, "•")
            self.multi_cell(0, size * 0.5, item, align="L", new_x="LMARGIN", new_y="NEXT")
            self.ln(0.8)

    def panel(self, lines: Sequence[str], *, colour: tuple[int, int, int], title: str) -> None:
        """A shaded panel with a coloured left edge: a bold title and bullet lines."""
        self.ln(1)
        top = self.get_y()
        self.set_x(MARGIN + 4)
        self.set_font(FONT, "B", 9.5)
        self.multi_cell(self.epw - 6, 5, title, align="L", new_x="LMARGIN", new_y="NEXT")
        self.set_font(FONT, "", 9)
        for line in lines:
            self.set_x(MARGIN + 4)
            self.multi_cell(self.epw - 6, 4.6, f"• {line}", align="L", new_x="LMARGIN", new_y="NEXT")
        bottom = self.get_y() + 1.5
        self.set_fill_color(*colour)
        self.rect(MARGIN, top - 1.5, 1.6, bottom - top + 1.5, style="F")
        self.set_y(bottom + 2)


def _cover(pdf: _PackPdf, content: PackContent, edition: Edition) -> None:
    partnership, period = content.partnership, content.period
    pdf.add_page()
    pdf.set_fill_color(*BLUE)
    pdf.rect(0, 0, pdf.w, 78, style="F")
    pdf.set_text_color(*WHITE)
    pdf.set_xy(MARGIN, 18)
    pdf.set_font(FONT, "", 11)
    pdf.multi_cell(0, 6, partnership.board.name, align="L", new_x="LMARGIN", new_y="NEXT")
    pdf.ln(4)
    pdf.set_font(FONT, "B", 28)
    pdf.multi_cell(0, 12, "Performance pack", align="L", new_x="LMARGIN", new_y="NEXT")
    pdf.set_font(FONT, "", 16)
    pdf.multi_cell(0, 9, period.label, align="L", new_x="LMARGIN", new_y="NEXT")
    pdf.set_text_color(*BLACK)
    pdf.set_y(88)
    if edition.revised:
        pdf.panel(
            edition.changes or ("The figures or the returns behind them changed after the last version was sent.",),
            colour=RAG_COLOURS["red"],
            title=edition.banner + ". What changed:",
        )
    facts = [f"Version {edition.version}, built {wording.long_date(edition.built_on)}."]
    if content.data_as_at:
        facts.append(f"Data as at {wording.long_date(content.data_as_at)} (the latest return published).")
    if edition.meeting:
        facts.append(f"For the Board meeting on {wording.long_date(edition.meeting)}.")
    pdf.para(" ".join(facts), 10.5)
    pdf.ln(3)
    counts = content.rag_counts
    headline = (
        f"{len(content.rows)} measures: {counts['red']} red, {counts['amber']} amber, {counts['green']} green"
        + (f", {counts['none']} without a target or a figure." if counts["none"] else ".")
    )
    pdf.para(headline, 12, style="B")
    pdf.ln(2)
    attention = content.attention
    if attention:
        pdf.panel(
            [f"{s.partner_name}, {s.feed_title}: {s.summary}" for s in attention],
            colour=RAG_COLOURS["red"],
            title=f"Data missing, late or rejected for {period.short_label}:",
        )
    else:
        pdf.panel(
            ["Nothing is missing from this pack."], colour=RAG_COLOURS["green"], title="Every return arrived on time."
        )
    pdf.ln(2)
    pdf.para("Contents", 11, style="B")
    sections = ["At a glance", *content.themes, "Data completeness", "Notes on method and suppression"]
    pdf.bullets(sections, 10)
    pdf.ln(4)
    officer = partnership.officer
    pdf.para(
        f"Prepared by partnerflow for {partnership.short_name}. Questions to {officer.name}"
        f" ({officer.role or 'performance officer'}), {officer.email}. Small numbers are hidden to protect"
        " children's identities: see the notes at the end.",
        8.5,
        colour=GREY,
    )


def _summary(pdf: _PackPdf, content: PackContent) -> None:
    pdf.add_page()
    pdf.heading("At a glance")
    benchmarked = any(row.kpi.benchmarks for row in content.rows)
    pdf.para(
        f"Each measure for {content.period.short_label} against its local target: green on target, amber within"
        " tolerance, red beyond it. The arrow compares it with the quarter before."
        + (BENCHMARK_KEY if benchmarked else ""),
        9,
        colour=GREY,
    )
    pdf.ln(3)
    gap = 2.5 if benchmarked else 3.0
    width = (pdf.epw - gap * (TILES_PER_ROW - 1)) / TILES_PER_ROW
    height = TILE_HEIGHT + (BENCHMARK_LINE if benchmarked else 0.0)
    top = pdf.get_y()
    for index, row in enumerate(content.rows):
        column = index % TILES_PER_ROW
        if column == 0:
            pdf.set_y(top if index == 0 else top + height + gap)
            if pdf.will_page_break(height):
                pdf.add_page()
            top = pdf.get_y()
        _tile(pdf, row, MARGIN + column * (width + gap), top, width, height)
    pdf.set_y(top + height + gap)


def _tile(pdf: _PackPdf, row: KpiRow, x: float, y: float, width: float, height: float = TILE_HEIGHT) -> None:
    pdf.set_draw_color(*RULE)
    pdf.rect(x, y, width, height)
    pdf.set_fill_color(*RAG_COLOURS[row.rag])
    pdf.rect(x, y, width, 2.2, style="F")
    inner = width - 4
    size = _fitting_size(pdf, row.title, inner, TILE_TITLE_SIZES)
    pdf.set_font(FONT, "B", size)
    pdf.set_xy(x + 2, y + 3.3)
    title = _fit_lines(pdf, row.title, inner, _tile_title_lines(size))  # cut only if the smallest size can't hold it
    pdf.multi_cell(inner, size * TILE_LINE, title, align="L", new_x="LEFT", new_y="NEXT")
    pdf.set_xy(x + 2, y + 13.4)
    pdf.set_font(FONT, "B", 13 if row.value is not None else 9.5)
    pdf.set_text_color(*(BLACK if row.value is not None else RAG_COLOURS["red"]))
    pdf.cell(inner - 16, 6, row.display)
    pdf.set_text_color(*BLACK)
    if row.value is not None:
        pdf.set_font(FONT, "B", 6.5)
        pdf.set_xy(x + width - 2 - pdf.get_string_width(row.rag_label) - 3, y + 14.4)
        _badge(pdf, row.rag, row.rag_label)
    pdf.set_font(FONT, "", 6.3)
    pdf.set_text_color(*GREY)
    pdf.set_xy(x + 2, y + 20.8)
    target = f"Target {row.target_text}" if row.target_text else "No target set"
    pdf.multi_cell(inner, 2.8, _fit_lines(pdf, target, inner, 2), align="L", new_x="LEFT", new_y="NEXT")
    if row.kpi.benchmarks:
        pdf.set_xy(x + 2, y + 26.6)
        short = {"England": "Eng", "Statistical neighbours": "SN"}
        text = " · ".join(f"{short[b.name]} {format_number(b.value, row.kpi.unit)}" for b in row.kpi.benchmarks)
        pdf.cell(inner, 3, _fit_lines(pdf, text, inner, 1))
    pdf.set_xy(x + 2, y + height - 4.5)
    travel = f"{_arrow(row)} {row.travel_text}" if row.direction != "none" else "No comparison with last quarter"
    pdf.cell(inner, 3, travel)
    pdf.set_text_color(*BLACK)


def _tile_title_lines(size: float) -> int:
    """How many lines of a tile title at ``size`` fit above the tile's figure."""
    return int(TILE_TITLE_HEIGHT // (size * TILE_LINE))


def _fitting_size(pdf: _PackPdf, text: str, width: float, sizes: Sequence[float]) -> float:
    """The largest of ``sizes`` (bold) at which ``text`` fits the tile's title lines of ``width``."""
    for size in sizes:
        pdf.set_font(FONT, "B", size)
        wrapped = pdf.multi_cell(width, 3, text, dry_run=True, output="LINES")
        if len(wrapped) <= _tile_title_lines(size):  # type: ignore[arg-type]
            return size
    return sizes[-1]


def _fit_lines(pdf: _PackPdf, text: str, width: float, lines: int) -> str:
    """``text`` cut (with an ellipsis) to what fits in ``lines`` lines of ``width`` in the current font."""
    wrapped: list[str] = pdf.multi_cell(width, 3, text, dry_run=True, output="LINES")  # type: ignore[assignment]
    if len(wrapped) <= lines:
        return text
    kept = " ".join(wrapped[:lines])
    while kept and len(pdf.multi_cell(width, 3, kept + "…", dry_run=True, output="LINES")) > lines:  # type: ignore[arg-type]
        kept = kept.rsplit(" ", 1)[0]
    return kept + "…"


def _badge(pdf: _PackPdf, rag: str, label: str) -> None:
    pdf.set_font(FONT, "B", 6.5)
    width = pdf.get_string_width(label) + 3
    pdf.set_fill_color(*RAG_COLOURS[rag])
    pdf.set_text_color(*RAG_TEXT[rag])
    pdf.cell(width, 4, label, align="C", fill=True)
    pdf.set_text_color(*BLACK)


def _theme(pdf: _PackPdf, theme: str, rows: list[KpiRow], content: PackContent) -> None:
    pdf.add_page()
    pdf.heading(theme)
    headings = ("Measure", content.period.short_label, "Count", "Target", "RAG", "Since last quarter")
    pdf.set_fill_color(*WHITE)  # a table takes its background from the current fill colour
    with pdf.table(
        col_widths=(62, 20, 24, 32, 15, 27),
        text_align=("LEFT", "RIGHT", "RIGHT", "LEFT", "CENTER", "LEFT"),
        borders_layout="HORIZONTAL_LINES",
        line_height=4.2,
        padding=1.2,
        headings_style=FontFace(emphasis="BOLD", color=GREY, size_pt=7.5),
        first_row_as_headings=True,
    ) as table:
        pdf.set_font(FONT, "", 8)
        table.row(headings)
        for row in rows:
            cells = table.row()
            title = row.title + (f"\n{row.note}" if row.note else "")
            title += f"\n{row.benchmarks_text}" if row.benchmarks_text else ""
            cells.cell(title)
            cells.cell(row.display, style=FontFace(emphasis="BOLD", color=BLACK if row.value else RAG_COLOURS["red"]))
            cells.cell(row.parts_text)
            cells.cell(row.target_text or "None set")
            cells.cell(row.rag_label, style=FontFace(fill_color=RAG_COLOURS[row.rag], color=RAG_TEXT[row.rag]))
            cells.cell(row.travel_text)
    pdf.ln(3)
    _commentary(pdf, content, theme)
    # The charts and breakdown tables start on the next page if they would not all fit on this one and this
    # one is already a third full: better two well-filled pages than a last one with a table alone on it.
    with pdf.offset_rendering() as trial:
        _theme_figures(trial, rows)  # type: ignore[arg-type]
    if trial.page_break_triggered and pdf.get_y() > pdf.t_margin + pdf.eph / 3:
        pdf.add_page()
    _theme_figures(pdf, rows)


def _theme_figures(pdf: _PackPdf, rows: list[KpiRow]) -> None:
    """A theme's trend charts, then its breakdown tables."""
    charted = [row for row in rows if any(p.value is not None for p in row.trend)]
    if charted:
        pdf.para(
            f"Trends over the last {len(rows[0].trend)} quarters. Gaps are quarters with data missing (–) or a"
            " figure hidden to protect identities; the dashed line is the target, the dotted line the amber limit.",
            8,
            colour=GREY,
        )
        pdf.ln(2)
        _charts(pdf, charted)
    for row in rows:
        if row.breakdown is not None:
            _breakdown(pdf, row, row.breakdown)


def _commentary(pdf: _PackPdf, content: PackContent, theme: str) -> None:
    """The officer's commentary on the theme, or a plain statement that there is none."""
    commentary = content.commentary_for(theme)
    if not commentary:
        pdf.para(f"No commentary on {theme.lower()} was written for {content.period.short_label}.", 8.5, colour=GREY)
        pdf.ln(3)
        return
    for heading, text in commentary.parts:
        pdf.para(heading, 9, style="B")
        pdf.para(text, 9)
        pdf.ln(1.5)
    pdf.ln(2)


def _charts(pdf: _PackPdf, rows: list[KpiRow]) -> None:
    from partnerflow.report.charts import trend_chart

    title_height = CHART_TITLE_LINES * CHART_TITLE_LINE
    block = title_height + 1 + CHART_HEIGHT + 4
    gap = pdf.epw - 2 * CHART_WIDTH
    top = pdf.get_y()
    for index, row in enumerate(rows):
        column = index % 2
        if column == 0:
            pdf.set_y(top if index == 0 else top + block)
            if pdf.will_page_break(block):
                pdf.add_page()
            top = pdf.get_y()
        x = MARGIN + column * (CHART_WIDTH + gap)
        pdf.set_xy(x, top)
        pdf.set_font(FONT, "B", 7.5)
        title = _fit_lines(pdf, row.title, CHART_WIDTH, CHART_TITLE_LINES)
        pdf.multi_cell(CHART_WIDTH, CHART_TITLE_LINE, title, align="L", new_x="LEFT", new_y="NEXT")
        chart = trend_chart(row.trend, row.kpi, width_mm=CHART_WIDTH, height_mm=CHART_HEIGHT)
        pdf.image(io.BytesIO(chart), x=x, y=top + title_height + 1, w=CHART_WIDTH, h=CHART_HEIGHT)
    pdf.set_y(top + block)
    pdf.ln(2)


def _breakdown(pdf: _PackPdf, row: KpiRow, breakdown: Breakdown) -> None:
    """The breakdown table, on this page if it fits whole (measured by drawing it off the page first)."""
    with pdf.offset_rendering() as trial:
        _breakdown_table(trial, row, breakdown)  # type: ignore[arg-type]
    if trial.page_break_triggered:
        pdf.add_page()
    _breakdown_table(pdf, row, breakdown)


def _breakdown_table(pdf: _PackPdf, row: KpiRow, breakdown: Breakdown) -> None:
    columns = len(breakdown.periods)
    pdf.set_font(FONT, "B", 9.5)
    pdf.multi_cell(
        0,
        5,
        f"{row.title}: {breakdown.title.lower() if breakdown.title else 'by category'}",
        align="L",
        new_x="LMARGIN",
        new_y="NEXT",
    )
    pdf.ln(1)
    label_width = 52.0
    cell_width = min((pdf.epw - label_width) / columns, 22.0)
    pdf.set_fill_color(*WHITE)  # a table takes its background from the current fill colour
    with pdf.table(
        col_widths=(label_width, *([cell_width] * columns)),
        width=label_width + cell_width * columns,
        align="LEFT",
        text_align=("LEFT", *(["RIGHT"] * columns)),
        borders_layout="HORIZONTAL_LINES",
        line_height=4,
        padding=1,
        headings_style=FontFace(emphasis="BOLD", color=GREY, size_pt=7),
    ) as table:
        pdf.set_font(FONT, "", 7.5)
        table.row(["", *(p.short_label for p in breakdown.periods)])
        for i, category in enumerate(breakdown.categories):
            table.row([category, *(cell.text for cell in breakdown.table.cells[i])])
        totals = breakdown.table.column_totals or ()
        total_row = table.row(style=FontFace(emphasis="BOLD"))
        total_row.cell("Total")
        for cell in totals:
            total_row.cell(cell.text)
    pdf.ln(2)


def _completeness(pdf: _PackPdf, content: PackContent) -> None:
    pdf.add_page()
    pdf.heading("Data completeness")
    attention = content.attention
    if attention:
        names = ", ".join(dict.fromkeys(s.partner_name for s in attention))
        pdf.para(f"Returns missing, late or rejected for {content.period.short_label}: {names}.", 10, style="B")
    else:
        pdf.para("Every partner's return for the period arrived on time and passed its checks.", 10, style="B")
    pdf.ln(2)
    pdf.set_fill_color(*WHITE)  # a table takes its background from the current fill colour
    with pdf.table(
        col_widths=(34, 38, 19, 19, 14, 14, 42),
        text_align=("LEFT", "LEFT", "LEFT", "LEFT", "CENTER", "CENTER", "LEFT"),
        borders_layout="HORIZONTAL_LINES",
        line_height=4,
        padding=1.2,
        headings_style=FontFace(emphasis="BOLD", color=GREY, size_pt=7.5),
    ) as table:
        pdf.set_font(FONT, "", 7.5)
        table.row(("Partner", "Return", "Due", "Received", "On time", "First time", "Status"))
        for status in content.statuses:
            style = FontFace(color=RAG_COLOURS["red"]) if status.needs_attention else None
            row = table.row()
            row.cell(status.partner_name)
            row.cell(status.feed_title + (f" ({status.period.label})" if status.period != content.period else ""))
            row.cell(wording.short_date(status.due_date))
            row.cell(wording.short_date(status.received_on) or "–")
            row.cell(_yes_no(status.on_time))
            row.cell(_yes_no(status.first_time_pass))
            row.cell(status.summary, style=style)
    pdf.ln(3)
    pdf.para(
        "On time: the data accepted for the period arrived by the due date. First time: the partner's first file"
        " passed every data-contract check. Lateness is counted in working days after the due date (weekends and"
        " England and Wales bank holidays excluded). A measure is shown only when every return it depends on is"
        " published; otherwise it names the partner whose data is missing.",
        8,
        colour=GREY,
    )


def _notes(pdf: _PackPdf, content: PackContent, edition: Edition) -> None:
    pdf.add_page()
    pdf.heading("Notes on method and suppression")
    pdf.para("How each measure is calculated", 11, style="B")
    pdf.ln(1)
    for row in content.rows:
        target = f" Local target {row.target_text}." if row.target_text else ""
        pdf.para(row.title, 8.5, style="B")
        pdf.para(row.method + target, 8)
        for b in row.kpi.benchmarks:
            value = format_number(b.value, row.kpi.unit)
            pdf.para(f"{b.name}: {value} in {b.year}. Source: {b.source}", 8, colour=GREY)
        pdf.ln(1.5)
    pdf.ln(2)
    pdf.para("Small numbers", 11, style="B")
    pdf.ln(1)
    rules = content.suppression_rules
    items = []
    if "dfe" in rules:
        items.append(
            f"Council, education and youth justice figures follow Department for Education practice: counts from 1"
            f" to {LIMITS['dfe']} are shown as {MARKS['dfe']}."
        )
    if "nhs" in rules:
        items.append(
            f"Health figures follow NHS practice: counts from 1 to {LIMITS['nhs']} are shown as {MARKS['nhs']} and"
            f" other counts are rounded to the nearest {NHS_ROUNDING}."
        )
    items += [
        "In a table with totals, further figures are hidden where needed (secondary suppression), so that no hidden"
        " figure can be worked out from the totals and the figures shown.",
        "A percentage or rate made from a hidden count is hidden too. RAG ratings, directions of travel and trends"
        " use only the figures shown here.",
    ]
    pdf.bullets(items, 8.5)
    pdf.ln(2)
    pdf.para("Versions", 11, style="B")
    pdf.ln(1)
    version_note = (
        f"This is version {edition.version}. If data for the period changes after a pack is sent, a revised version"
        " is sent, marked on its cover with the version it supersedes and what changed."
    )
    pdf.para(version_note, 8.5)
    pdf.ln(1)
    pdf.para(
        "An HTML copy of this pack, and its figures as CSV, are kept with it for screen readers and analysis.",
        8.5,
    )


def _arrow(row: KpiRow) -> str:
    return {"up": "▲", "down": "▼", "same": "▶"}.get(row.direction, "")


def _yes_no(value: bool | None) -> str:
    return "–" if value is None else ("Yes" if value else "No")


def _font_dir() -> Path:
    """matplotlib's bundled fonts, found without importing matplotlib."""
    spec = importlib.util.find_spec("matplotlib")
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError("matplotlib is not installed; the Board pack PDF needs its DejaVu fonts")
    return Path(next(iter(spec.submodule_search_locations))) / "mpl-data" / "fonts" / "ttf"
