"""Property tests: in any small table with totals, nothing a Board pack hides can be worked out from what it shows.

For random tables (hypothesis), the reader is modelled as an attacker with a linear-programming solver
(scipy's HiGHS, independent of partnerflow's own check): they know every figure shown (exactly under the
DfE rule; to within the rounding under the NHS rule), that a hidden figure is at least 1 (zeros are always
shown) and that a total the table does not print is at least 0, and that rows and columns add up. For
each hidden figure they find the least and the greatest value it could take. The rows and columns form a
network matrix, so both are whole numbers: if they differ, the figure could be either, and is not
disclosed.
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from scipy.optimize import linprog

from partnerflow.report.disclosure import (
    LIMITS,
    Cell,
    ProtectedTable,
    hidden_values_recoverable,
    protect_count,
    protect_kpi,
    protect_table,
)

SMALL_COUNTS = st.one_of(st.integers(0, 9), st.integers(0, 9), st.integers(0, 60))
SETTINGS = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@st.composite
def tables(draw) -> tuple[list[list[int]], bool, bool]:
    rows = draw(st.integers(1, 4))
    columns = draw(st.integers(1, 4))
    counts = draw(st.lists(st.lists(SMALL_COUNTS, min_size=columns, max_size=columns), min_size=rows, max_size=rows))
    row_totals, column_totals = draw(st.sampled_from([(True, True), (False, True), (True, False), (False, False)]))
    return counts, row_totals, column_totals


def entries(counts: list[list[int]], table: ProtectedTable) -> list[tuple[str, int, Cell | None, tuple, tuple]]:
    """Every figure of the table as (kind, true value, what is printed or None, from-node, to-node)."""
    rows, columns = len(counts), len(counts[0])
    found = []
    for i in range(rows):
        for j in range(columns):
            found.append(("cell", counts[i][j], table.cells[i][j], ("row", i), ("column", j)))
    for i in range(rows):
        printed = table.row_totals[i] if table.row_totals else None
        found.append(("row total", sum(counts[i]), printed, ("hub", "rows"), ("row", i)))
    for j in range(columns):
        printed = table.column_totals[j] if table.column_totals else None
        found.append(("column total", sum(r[j] for r in counts), printed, ("column", j), ("hub", "columns")))
    found.append(("grand total", sum(map(sum, counts)), table.grand_total, ("hub", "columns"), ("hub", "rows")))
    return found


def reader_bounds(printed: Cell | None, rule: str) -> tuple[float, float | None]:
    """What a reader knows of one figure from the page."""
    if printed is None:
        return 0, None  # a total the table does not print
    if printed.suppressed:
        return 1, None  # hidden, so not zero; primary or secondary, the reader can't tell
    if rule == "nhs":
        shown = int(printed.value)
        return (0, 0) if shown == 0 else (max(shown - 2, LIMITS["nhs"] + 1), shown + 2)
    return printed.value, printed.value


def disclosed(counts: list[list[int]], table: ProtectedTable, rule: str) -> list[tuple[str, int]]:
    """Hidden figures whose least and greatest possible values coincide: what the reader can work out."""
    figures = entries(counts, table)
    nodes = sorted({f[3] for f in figures} | {f[4] for f in figures}, key=repr)
    flow = np.zeros((len(nodes), len(figures)))
    for k, (_, _, _, tail, head) in enumerate(figures):
        flow[nodes.index(tail), k] -= 1
        flow[nodes.index(head), k] += 1
    bounds = [reader_bounds(printed, rule) for _, _, printed, _, _ in figures]
    found = []
    for k, (kind, value, printed, _, _) in enumerate(figures):
        if printed is None or not printed.suppressed:
            continue
        objective = np.zeros(len(figures))
        objective[k] = 1
        low = linprog(objective, A_eq=flow, b_eq=np.zeros(len(nodes)), bounds=bounds, method="highs")
        high = linprog(-objective, A_eq=flow, b_eq=np.zeros(len(nodes)), bounds=bounds, method="highs")
        assert low.status == 0, "the true table must satisfy what the reader knows"
        if high.status == 0 and -high.fun - low.fun < 0.5:
            found.append((kind, value))
    return found


@SETTINGS
@given(tables(), st.sampled_from(["dfe", "nhs"]))
def test_no_hidden_figure_can_be_worked_out_from_the_totals(example, rule):
    counts, row_totals, column_totals = example
    table = protect_table(counts, rule, row_totals=row_totals, column_totals=column_totals)
    assert disclosed(counts, table, rule) == []
    assert hidden_values_recoverable(table, counts) == []


@SETTINGS
@given(tables(), st.sampled_from(["dfe", "nhs"]))
def test_small_numbers_are_never_printed_and_zeros_never_hidden(example, rule):
    counts, row_totals, column_totals = example
    table = protect_table(counts, rule, row_totals=row_totals, column_totals=column_totals)
    for _, value, printed, _, _ in entries(counts, table):
        if printed is None:
            continue
        if value == 0:
            assert not printed.suppressed and printed.text == "0"
        elif value <= LIMITS[rule]:
            assert printed.suppressed and printed.value is None
        if not printed.suppressed:
            assert printed.value is not None
            if rule == "dfe":
                assert printed.value == value
            else:
                assert printed.value % 5 == 0 and abs(printed.value - value) <= 2


@SETTINGS
@given(tables())
def test_primary_suppression_alone_would_leak_and_the_check_agrees_with_the_solver(example):
    """The attacker model has teeth: without secondary suppression, the solver and partnerflow's own exact
    check find the same recoverable figures (whenever there are any)."""
    counts, row_totals, column_totals = example
    printed = protect_table(counts, "none", row_totals=row_totals, column_totals=column_totals)

    def primary(cell: Cell, value: int) -> Cell:
        return protect_count(value, "dfe") if 1 <= value <= LIMITS["dfe"] else cell

    only_primary = ProtectedTable(
        cells=tuple(tuple(primary(c, counts[i][j]) for j, c in enumerate(row)) for i, row in enumerate(printed.cells)),
        row_totals=tuple(primary(c, sum(counts[i])) for i, c in enumerate(printed.row_totals))
        if printed.row_totals
        else None,
        column_totals=tuple(primary(c, sum(r[j] for r in counts)) for j, c in enumerate(printed.column_totals))
        if printed.column_totals
        else None,
        grand_total=primary(printed.grand_total, sum(map(sum, counts))) if printed.grand_total else None,
    )
    by_solver = disclosed(counts, only_primary, "dfe")
    by_partnerflow = hidden_values_recoverable(only_primary, counts)
    assert len(by_solver) == len(by_partnerflow)


def test_the_classic_leak_is_caught():
    """A single small cell in a row with a total is exactly its total minus the rest."""
    counts = [[3, 20], [10, 12]]
    leaky = ProtectedTable(
        cells=((protect_count(3, "dfe"), Cell("20", 20.0)), (Cell("10", 10.0), Cell("12", 12.0))),
        row_totals=(Cell("23", 23.0), Cell("22", 22.0)),
        column_totals=(Cell("13", 13.0), Cell("32", 32.0)),
        grand_total=Cell("45", 45.0),
    )
    assert disclosed(counts, leaky, "dfe") == [("cell", 3)]
    assert hidden_values_recoverable(leaky, counts) == [("cell", 0, 0)]
    assert disclosed(counts, protect_table(counts, "dfe"), "dfe") == []


@SETTINGS
@given(
    st.integers(0, 60),
    st.integers(0, 60),
    st.sampled_from(["dfe", "nhs"]),
    st.sampled_from(["percent", "rate", "days"]),
)
def test_a_rate_made_from_a_hidden_count_is_hidden(numerator, extra, rule, unit):
    denominator = numerator + extra
    value = None if denominator == 0 else 100 * numerator / denominator
    protected = protect_kpi(unit=unit, numerator=numerator, denominator=denominator, value=value, rule=rule)
    if protected.numerator.suppressed or protected.denominator.suppressed:
        assert protected.value.suppressed and protected.value.value is None
        assert protected.value.text == {"dfe": "c", "nhs": "*"}[rule]
    elif value is not None:
        assert protected.value.value == pytest.approx(value, abs=0.05 + 1e-9)  # shown to 1 decimal place, half up
