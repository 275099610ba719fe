"""Trend charts for the Board pack: one small PNG per measure, drawn with matplotlib's Agg renderer.

Only disclosure-controlled values are drawn. A suppressed period is a gap marked with its suppression
mark, a period with missing data a gap marked "–", so a chart never hints at a hidden figure. The same
figures always give the same bytes (no timestamp in the PNG), which keeps pack versions stable.

matplotlib is imported when a chart is drawn, never at import time: DAG parsing imports this package.
"""

from __future__ import annotations

import io
import math
from collections.abc import Sequence
from functools import lru_cache

from partnerflow.core.config import Kpi
from partnerflow.report.kpis import TrendPoint

MM_PER_INCH = 25.4
DPI = 170
BLUE, BLACK, GREY, LIGHT_GREY, AMBER = "#1d70b8", "#0b0c0c", "#505a5f", "#b1b4b6", "#f47738"


def trend_chart(points: Sequence[TrendPoint], kpi: Kpi, *, width_mm: float = 86, height_mm: float = 44) -> bytes:
    """A PNG of ``points`` (oldest first) with the measure's target and amber limit, sized for the PDF."""
    return _drawn(tuple(points), kpi, width_mm, height_mm)


@lru_cache(maxsize=256)  # rebuilding a pack for unchanged figures redraws nothing
def _drawn(points: tuple[TrendPoint, ...], kpi: Kpi, width_mm: float, height_mm: float) -> bytes:
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import ticker
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=(width_mm / MM_PER_INCH, height_mm / MM_PER_INCH), dpi=DPI)
    FigureCanvasAgg(figure)
    axes = figure.add_axes((0.13, 0.22, 0.84, 0.72))
    values = [p.value for p in points]
    xs = list(range(len(points)))

    segment_x: list[int] = []
    segment_y: list[float] = []
    for x, value in zip(xs, values, strict=True):
        if value is None:
            if segment_x:
                axes.plot(segment_x, segment_y, color=BLUE, linewidth=1.6, marker="o", markersize=2.6)
            segment_x, segment_y = [], []
        else:
            segment_x.append(x)
            segment_y.append(value)
    if segment_x:
        axes.plot(segment_x, segment_y, color=BLUE, linewidth=1.6, marker="o", markersize=2.6)

    known = [v for v in values if v is not None]
    scale = known + [v for v in (kpi.target, _amber_limit(kpi)) if v is not None]
    low, high = (min(scale), max(scale)) if scale else (0.0, 1.0)
    pad = (high - low) * 0.15 or max(abs(high) * 0.1, 1.0)
    bottom, top = low - pad, high + 2 * pad  # room above for the latest value's label
    if kpi.unit in ("percent", "count", "rate", "days"):
        bottom = max(bottom, 0.0)
    if kpi.unit == "percent":
        top = min(top, 100.0 + pad / 2)
    if top <= bottom:
        top = bottom + 1.0
    axes.set_ylim(bottom, top)
    axes.set_xlim(-0.5, len(points) - 0.5)

    if kpi.target is not None and kpi.polarity != "none":
        axes.axhline(kpi.target, color=GREY, linewidth=0.9, linestyle=(0, (4, 2)))
        # At the left end: the right end is where the latest value's label goes.
        axes.text(-0.5, kpi.target, " target", fontsize=5.5, color=GREY, va="bottom", ha="left")
        amber = _amber_limit(kpi)
        if amber is not None and amber != kpi.target:
            axes.axhline(amber, color=AMBER, linewidth=0.7, linestyle=(0, (1, 2)))

    for x, point in zip(xs, points, strict=True):
        if point.value is None:
            mark = point.cell.text if point.cell is not None else "–"
            axes.text(x, bottom + (top - bottom) * 0.04, mark, fontsize=6.5, color=GREY, ha="center", va="bottom")
    if values and values[-1] is not None:
        axes.plot([xs[-1]], [values[-1]], color=BLACK, marker="o", markersize=3.6)
        axes.annotate(
            points[-1].text,
            (xs[-1], values[-1]),
            textcoords="offset points",
            xytext=(0, 5),
            ha="center",
            fontsize=6.5,
            fontweight="bold",
            color=BLACK,
        )

    axes.set_xticks(xs, [_tick_label(p) for p in points], fontsize=5.5, color=GREY)
    axes.tick_params(axis="y", labelsize=5.5, colors=GREY, length=2)
    axes.tick_params(axis="x", length=0)
    ticks = y_ticks(bottom, top, kpi.unit)
    axes.yaxis.set_major_locator(ticker.FixedLocator([value for value, _ in ticks]))
    axes.yaxis.set_major_formatter(ticker.FixedFormatter([label for _, label in ticks]))
    axes.grid(axis="y", color="#f3f2f1", linewidth=0.6)
    for side in ("top", "right", "left"):
        axes.spines[side].set_visible(False)
    axes.spines["bottom"].set_color(LIGHT_GREY)

    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=DPI, metadata={"Software": None})
    return buffer.getvalue()


def y_ticks(bottom: float, top: float, unit: str) -> list[tuple[float, str]]:
    """Up to five evenly spaced ticks on the scale ``bottom``..``top`` at round steps (1, 2, 2.5 or 5 times a
    power of ten), each labelled with exactly as many decimals as the step needs: 21.5% is never shown as
    "22%", so evenly spaced ticks read as evenly spaced, and the target line sits at its own label."""
    span = top - bottom
    if span <= 0:
        return []
    raw = span / 4
    power = 10 ** math.floor(math.log10(raw))
    step = next(m * power for m in (1, 2, 2.5, 5, 10) if m * power >= raw)
    if unit == "count":
        step = max(1.0, math.ceil(step))
    decimals = 0
    while decimals < 6 and abs(round(step, decimals) - step) > step * 1e-9:
        decimals += 1
    first = math.ceil(bottom / step - 1e-9) * step
    suffix = "%" if unit == "percent" else ""
    ticks = []
    value = first
    while value <= top + step * 1e-9:
        shown = round(value, decimals)
        ticks.append((shown, f"{shown:,.{decimals}f}{suffix}"))
        value += step
    return ticks


def _amber_limit(kpi: Kpi) -> float | None:
    if kpi.target is None or kpi.polarity == "none":
        return None
    return kpi.target - kpi.tolerance if kpi.polarity == "higher_is_better" else kpi.target + kpi.tolerance


def _tick_label(point: TrendPoint) -> str:
    """``Q2`` over ``26/27`` for a quarter; the period id otherwise."""
    label = point.period.short_label
    if point.period.kind == "quarter":
        quarter, years = label.split(" ")
        return f"{quarter}\n{years[2:]}"
    return point.period.id
