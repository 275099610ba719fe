"""Disclosure control: what a Board output may show of a count or a rate, so no child can be singled out.

Each KPI names its rule in the configuration (``disclosure:``):

- ``dfe`` (Department for Education practice): counts from 1 to 5 are shown as ``c``. Zero is shown.
- ``nhs`` (NHS Digital practice): counts from 1 to 7 are shown as ``*``; every other count is rounded to
  the nearest 5. Zero is shown.
- ``none``: shown as they are; for aggregate measures with no small-number risk (police incident totals).

A rate or percentage whose numerator or denominator is suppressed is suppressed too, with the same mark.
Rates are computed from the unrounded counts and shown to one decimal place.

A table of counts with totals (``protect_table``) also gets **secondary suppression**: a suppressed cell
that could be worked out from the totals and the cells shown makes further cells hidden, until none can.
The test is exact. Rows, columns and totals are a circulation (row hub → row → column → column hub → row
hub), and a hidden value can be recovered exactly when no alternative table, with every shown figure the
same and every hidden one still at least 1 (zeros are shown, so a reader knows a hidden cell is not 0),
differs in it: that is, when no cycle through it in the residual graph exists. Further cells are chosen
by the cheapest such cycle, preferring small cells to totals. Under the NHS rule the same is done with
the unrounded counts, so rounding only adds to the protection.
"""

from __future__ import annotations

import heapq
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass
from decimal import ROUND_HALF_UP, Decimal
from typing import Literal

Rule = Literal["dfe", "nhs", "none"]
Unit = Literal["percent", "count", "rate", "days"]

MARKS: dict[str, str] = {"dfe": "c", "nhs": "*"}
# The largest count each rule hides (counts 1..limit are suppressed).
LIMITS: dict[str, int] = {"dfe": 5, "nhs": 7}
NHS_ROUNDING = 5
NOT_APPLICABLE = "–"

# Choosing further cells to hide: a total costs far more than any cell, so totals stay visible if possible.
_CELL_COST = 1
_TOTAL_COST = 1_000_000


@dataclass(frozen=True)
class Cell:
    """A number as it may be published: ``text`` to show, ``value`` to chart and compare (None if hidden)."""

    text: str
    value: float | None
    suppressed: bool = False


@dataclass(frozen=True)
class ProtectedKpi:
    """A KPI's numerator, denominator (None for counts) and value after disclosure control."""

    numerator: Cell
    denominator: Cell | None
    value: Cell


@dataclass(frozen=True)
class ProtectedTable:
    """A table of counts after disclosure control: cells by row and column, and the totals it shows.

    ``row_totals``/``column_totals`` are None when the table does not show them; ``grand_total`` is shown
    only with both.
    """

    cells: tuple[tuple[Cell, ...], ...]
    row_totals: tuple[Cell, ...] | None
    column_totals: tuple[Cell, ...] | None
    grand_total: Cell | None

    @property
    def suppressed(self) -> int:
        """How many figures the table hides (primary and secondary)."""
        shown = [c for row in self.cells for c in row]
        shown += [*(self.row_totals or ()), *(self.column_totals or ())]
        shown += [self.grand_total] if self.grand_total else []
        return sum(c.suppressed for c in shown)


def protect_count(count: int, rule: Rule) -> Cell:
    """A count as ``rule`` allows it to be shown."""
    if count < 0:
        raise ValueError("a count cannot be negative")
    if rule != "none" and 1 <= count <= LIMITS[rule]:
        return Cell(MARKS[rule], None, suppressed=True)
    if rule == "nhs":
        count = _round_half_up(count / NHS_ROUNDING) * NHS_ROUNDING
    return Cell(f"{count:,}", float(count))


def protect_rate(value: float | None, parts: tuple[Cell, ...], rule: Rule, *, unit: Unit = "percent") -> Cell:
    """A rate or percentage made from ``parts``: suppressed if any part is, blank when there is none."""
    if rule != "none" and any(part.suppressed for part in parts):
        return Cell(MARKS[rule], None, suppressed=True)
    if value is None:
        return Cell(NOT_APPLICABLE, None)
    rounded = float(Decimal(str(value)).quantize(Decimal("0.1"), rounding=ROUND_HALF_UP))
    return Cell(format_number(rounded, unit), rounded)


def protect_kpi(
    *, unit: Unit, numerator: int, denominator: int | None, value: float | None, rule: Rule
) -> ProtectedKpi:
    """Apply ``rule`` to a KPI: counts directly; percentages, rates and days through their parts."""
    protected_numerator = protect_count(numerator, rule)
    if unit == "count":
        return ProtectedKpi(protected_numerator, None, protected_numerator)
    protected_denominator = protect_count(denominator, rule) if denominator is not None else None
    parts = tuple(c for c in (protected_numerator, protected_denominator) if c is not None)
    return ProtectedKpi(protected_numerator, protected_denominator, protect_rate(value, parts, rule, unit=unit))


def protect_table(
    counts: Sequence[Sequence[int]],
    rule: Rule,
    *,
    row_totals: bool = True,
    column_totals: bool = True,
) -> ProtectedTable:
    """A table of counts (rows x columns) with its totals, after primary and secondary suppression.

    Totals are worked out from ``counts``; the table shows row totals and/or column totals as asked (and
    the grand total with both). Totals it does not show stay unknown to a reader, which the secondary
    suppression takes into account.
    """
    grid = [list(row) for row in counts]
    if not grid or not grid[0] or any(len(row) != len(grid[0]) for row in grid):
        raise ValueError("a table needs at least one row and column, every row the same length")
    if any(v < 0 for row in grid for v in row):
        raise ValueError("a count cannot be negative")
    network = _Network(grid, row_totals=row_totals, column_totals=column_totals)
    if rule != "none":
        network.suppress_small(LIMITS[rule])
        network.suppress_until_safe()
    return network.published(rule)


def hidden_values_recoverable(table: ProtectedTable, counts: Sequence[Sequence[int]]) -> list[tuple[str, int, int]]:
    """Which suppressed figures of ``table`` a reader could work out exactly (an empty list when none).

    Each is ``(kind, row, column)`` with kind ``cell``, ``row_total``, ``column_total`` or ``grand_total``.
    ``counts`` are the true values the table was made from.
    """
    network = _Network(
        [list(row) for row in counts],
        row_totals=table.row_totals is not None,
        column_totals=table.column_totals is not None,
    )
    for entry in network.entries:
        network.status[entry.index] = _status_in(table, entry)
    return [
        (e.kind, e.row, e.column)
        for e in network.entries
        if network.status[e.index] == _SUPPRESSED and network.pinned(e)
    ]


def format_number(value: float, unit: Unit) -> str:
    """How a published value reads: ``23.4%``, ``1,204``, ``12.5 days``."""
    if unit == "percent":
        return f"{value:.1f}%"
    if unit == "count":
        return f"{value:,.0f}"
    if unit == "days":
        return f"{value:.1f} days"
    return f"{value:,.1f}"


def _round_half_up(x: float) -> int:
    return int(Decimal(str(x)).quantize(Decimal("1"), rounding=ROUND_HALF_UP))


# --- secondary suppression ------------------------------------------------------------------------------

_SHOWN, _SUPPRESSED, _HIDDEN = "shown", "suppressed", "hidden"
_ROW_HUB, _COLUMN_HUB = ("hub", "rows"), ("hub", "columns")


@dataclass(frozen=True)
class _Entry:
    """One figure of the table as an arc of the circulation, carrying its value as flow."""

    index: int
    kind: str
    row: int
    column: int
    value: int
    tail: tuple
    head: tuple


class _Network:
    """A table's figures as a circulation: row hub → row i (row total), row i → column j (cell),
    column j → column hub (column total), column hub → row hub (grand total). Flow is conserved at every
    node exactly when the totals add up."""

    def __init__(self, grid: list[list[int]], *, row_totals: bool, column_totals: bool):
        entries: list[_Entry] = []

        def add(kind: str, row: int, column: int, value: int, tail: tuple, head: tuple) -> None:
            entries.append(_Entry(len(entries), kind, row, column, value, tail, head))

        for i, row in enumerate(grid):
            for j, value in enumerate(row):
                add("cell", i, j, value, ("row", i), ("column", j))
        for i, row in enumerate(grid):
            add("row_total", i, -1, sum(row), _ROW_HUB, ("row", i))
        for j in range(len(grid[0])):
            add("column_total", -1, j, sum(row[j] for row in grid), ("column", j), _COLUMN_HUB)
        add("grand_total", -1, -1, sum(map(sum, grid)), _COLUMN_HUB, _ROW_HUB)
        shown_kinds = (
            {"cell"} | ({"row_total"} if row_totals else set()) | ({"column_total"} if column_totals else set())
        )
        if row_totals and column_totals:
            shown_kinds.add("grand_total")
        self.grid = grid
        self.row_totals, self.column_totals = row_totals, column_totals
        self.entries = entries
        self.status = [_SHOWN if e.kind in shown_kinds else _HIDDEN for e in entries]

    def suppress_small(self, limit: int) -> None:
        for entry in self.entries:
            if self.status[entry.index] == _SHOWN and 1 <= entry.value <= limit:
                self.status[entry.index] = _SUPPRESSED

    def suppress_until_safe(self) -> None:
        """Hide further figures until no suppressed one can be worked out. Each round puts one recoverable
        figure on a residual cycle; figures already safe stay safe (hiding more only adds arcs)."""
        while True:
            exposed = next((e for e in self.entries if self.status[e.index] == _SUPPRESSED and self.pinned(e)), None)
            if exposed is None:
                return
            for index in self._cheapest_cover(exposed):
                self.status[index] = _SUPPRESSED

    def pinned(self, entry: _Entry) -> bool:
        """Whether every table consistent with what is shown has the same value for ``entry``."""
        arcs = self._residual_arcs(skip=entry.index)
        can_increase = _reachable(arcs, entry.head, entry.tail)
        can_decrease = entry.value - 1 >= self._lower_bound(entry) and _reachable(arcs, entry.tail, entry.head)
        return not (can_increase or can_decrease)

    def published(self, rule: Rule) -> ProtectedTable:
        def cell(entry: _Entry) -> Cell:
            if self.status[entry.index] == _SUPPRESSED:
                return Cell(MARKS[rule], None, suppressed=True)
            return protect_count(entry.value, "nhs" if rule == "nhs" else "none")

        by_kind: dict[str, list[_Entry]] = {}
        for entry in self.entries:
            by_kind.setdefault(entry.kind, []).append(entry)
        columns = len(self.grid[0])
        cells = tuple(
            tuple(cell(e) for e in by_kind["cell"][i * columns : (i + 1) * columns]) for i in range(len(self.grid))
        )
        return ProtectedTable(
            cells=cells,
            row_totals=tuple(cell(e) for e in by_kind["row_total"]) if self.row_totals else None,
            column_totals=tuple(cell(e) for e in by_kind["column_total"]) if self.column_totals else None,
            grand_total=cell(by_kind["grand_total"][0]) if self.row_totals and self.column_totals else None,
        )

    def _lower_bound(self, entry: _Entry) -> int:
        # A reader knows a suppressed figure is at least 1 (zeros are shown); a total the table does not show
        # at all could be anything from 0.
        return 1 if self.status[entry.index] == _SUPPRESSED else 0

    def _residual_arcs(self, *, skip: int) -> dict[tuple, list[tuple]]:
        """Directions in which unknown figures can move while the table stays consistent."""
        arcs: dict[tuple, list[tuple]] = {}
        for entry in self.entries:
            if entry.index == skip or self.status[entry.index] == _SHOWN:
                continue
            arcs.setdefault(entry.tail, []).append(entry.head)
            if entry.value - 1 >= self._lower_bound(entry):
                arcs.setdefault(entry.head, []).append(entry.tail)
        return arcs

    def _cheapest_cover(self, exposed: _Entry) -> list[int]:
        """The shown figures to hide so ``exposed`` lies on a residual cycle, at the least cost."""
        best: tuple[int, list[int]] | None = None
        routes = [(exposed.head, exposed.tail)]
        if exposed.value - 1 >= self._lower_bound(exposed):
            routes.append((exposed.tail, exposed.head))
        for start, goal in routes:
            found = self._cheapest_path(start, goal, skip=exposed.index)
            if found is not None and (best is None or found[0] < best[0]):
                best = found
        if best is None:  # cannot happen for a table of non-negative counts; fail loudly rather than leak
            raise RuntimeError("no way to protect a suppressed figure was found")
        return best[1]

    def _cheapest_path(self, start: tuple, goal: tuple, *, skip: int) -> tuple[int, list[int]] | None:
        """Dijkstra over unknown figures (free) and shown non-zero figures (the cost of hiding them)."""
        arcs: dict[tuple, list[tuple[tuple, int, int | None]]] = {}
        for entry in self.entries:
            if entry.index == skip:
                continue
            status = self.status[entry.index]
            if status == _SHOWN:
                if entry.value == 0:
                    continue  # hiding a zero would break the "a hidden figure is at least 1" a reader relies on
                cost = (_CELL_COST if entry.kind == "cell" else _TOTAL_COST) + entry.value
                arcs.setdefault(entry.tail, []).append((entry.head, cost, entry.index))
                if entry.value >= 2:
                    arcs.setdefault(entry.head, []).append((entry.tail, cost, entry.index))
            else:
                arcs.setdefault(entry.tail, []).append((entry.head, 0, None))
                if entry.value - 1 >= self._lower_bound(entry):
                    arcs.setdefault(entry.head, []).append((entry.tail, 0, None))
        queue: list[tuple[int, int, tuple, list[int]]] = [(0, 0, start, [])]
        settled: set[tuple] = set()
        counter = 0
        while queue:
            cost, _, node, hidden = heapq.heappop(queue)
            if node == goal:
                return cost, hidden
            if node in settled:
                continue
            settled.add(node)
            for head, step, index in arcs.get(node, ()):
                if head not in settled:
                    counter += 1
                    more = hidden + [index] if index is not None and index not in hidden else hidden
                    heapq.heappush(queue, (cost + step, counter, head, more))
        return None


def _reachable(arcs: dict[tuple, list[tuple]], start: tuple, goal: tuple) -> bool:
    seen, queue = {start}, deque([start])
    while queue:
        node = queue.popleft()
        if node == goal:
            return True
        for head in arcs.get(node, ()):
            if head not in seen:
                seen.add(head)
                queue.append(head)
    return False


def _status_in(table: ProtectedTable, entry: _Entry) -> str:
    cell: Cell | None
    if entry.kind == "cell":
        cell = table.cells[entry.row][entry.column]
    elif entry.kind == "row_total":
        cell = table.row_totals[entry.row] if table.row_totals else None
    elif entry.kind == "column_total":
        cell = table.column_totals[entry.column] if table.column_totals else None
    else:
        cell = table.grand_total
    if cell is None:
        return _HIDDEN
    return _SUPPRESSED if cell.suppressed else _SHOWN
