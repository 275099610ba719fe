"""Disclosure control: small counts hidden or rounded, and rates made from hidden counts hidden too."""

import pytest

from partnerflow.report.disclosure import (
    hidden_values_recoverable,
    protect_count,
    protect_kpi,
    protect_rate,
    protect_table,
)


@pytest.mark.parametrize("count", [1, 2, 5])
def test_dfe_hides_counts_from_one_to_five_as_c(count):
    cell = protect_count(count, "dfe")
    assert (cell.text, cell.value, cell.suppressed) == ("c", None, True)


@pytest.mark.parametrize(("count", "text"), [(0, "0"), (6, "6"), (1234, "1,234")])
def test_dfe_shows_zero_and_counts_above_five_exactly(count, text):
    cell = protect_count(count, "dfe")
    assert (cell.text, cell.value, cell.suppressed) == (text, float(count), False)


@pytest.mark.parametrize("count", [1, 7])
def test_nhs_hides_counts_from_one_to_seven_as_star(count):
    assert protect_count(count, "nhs").text == "*"


@pytest.mark.parametrize(
    ("count", "text"), [(0, "0"), (8, "10"), (12, "10"), (13, "15"), (17, "15"), (18, "20"), (1002, "1,000")]
)
def test_nhs_rounds_other_counts_to_the_nearest_five(count, text):
    cell = protect_count(count, "nhs")
    assert cell.text == text
    assert cell.value == float(text.replace(",", ""))


def test_no_rule_shows_every_count():
    assert protect_count(3, "none").text == "3"


def test_a_negative_count_is_refused():
    with pytest.raises(ValueError):
        protect_count(-1, "dfe")


def test_a_percentage_from_a_suppressed_numerator_is_suppressed():
    protected = protect_kpi(unit="percent", numerator=3, denominator=40, value=7.5, rule="dfe")
    assert protected.numerator.text == "c"
    assert protected.denominator.text == "40"
    assert (protected.value.text, protected.value.value, protected.value.suppressed) == ("c", None, True)


def test_a_percentage_from_a_suppressed_denominator_is_suppressed():
    protected = protect_kpi(unit="percent", numerator=0, denominator=4, value=0.0, rule="dfe")
    assert protected.numerator.text == "0"
    assert protected.value.text == "c"


def test_a_percentage_from_shown_counts_is_shown_to_one_decimal_place():
    protected = protect_kpi(unit="percent", numerator=9, denominator=40, value=22.5, rule="dfe")
    assert (protected.value.text, protected.value.value) == ("22.5%", 22.5)
    protected = protect_kpi(unit="percent", numerator=1, denominator=3, value=100 / 3, rule="none")
    assert protected.value.text == "33.3%"


def test_nhs_rates_are_suppressed_from_small_parts_and_computed_from_unrounded_counts():
    assert protect_kpi(unit="percent", numerator=6, denominator=60, value=10.0, rule="nhs").value.text == "*"
    protected = protect_kpi(unit="percent", numerator=12, denominator=48, value=25.0, rule="nhs")
    assert (protected.numerator.text, protected.denominator.text, protected.value.text) == ("10", "50", "25.0%")


def test_a_count_kpi_is_its_numerator_protected():
    protected = protect_kpi(unit="count", numerator=4, denominator=None, value=4.0, rule="dfe")
    assert protected.denominator is None
    assert protected.value.text == "c"
    assert protect_kpi(unit="count", numerator=4, denominator=None, value=4.0, rule="none").value.text == "4"


def test_a_rate_with_no_cases_is_shown_as_not_applicable():
    cell = protect_rate(None, (protect_count(0, "dfe"), protect_count(0, "dfe")), "dfe")
    assert (cell.text, cell.value, cell.suppressed) == ("–", None, False)


def test_half_values_round_up_as_published_tables_do():
    assert protect_rate(22.25, (), "none").text == "22.3%"
    assert protect_count(10, "nhs").text == "10"
    assert protect_count(15, "nhs").text == "15"


# --- tables: primary and secondary suppression -------------------------------------------------------


def test_a_small_cell_in_a_table_with_totals_takes_a_second_cell_with_it():
    # Row 0 has a 3: shown alone, it could be worked out as 23 - 20 from the row total.
    table = protect_table([[3, 20], [10, 12]], "dfe")
    texts = [[c.text for c in row] for row in table.cells]
    assert texts[0][0] == "c"
    assert sum(c.suppressed for row in table.cells for c in row) >= 2
    assert hidden_values_recoverable(table, [[3, 20], [10, 12]]) == []
    # Totals stay visible when cells can protect each other.
    assert [c.text for c in table.row_totals] == ["23", "22"]
    assert [c.text for c in table.column_totals] == ["13", "32"]
    assert table.grand_total.text == "45"


def test_secondary_suppression_hides_as_little_as_it_can():
    # The 4 needs a partner in its row, one in its column and the corner closing the rectangle:
    # 9 + 30 + 60 = 99 hides less than 9 + 7 + 90 = 106, and no total is hidden.
    counts = [[4, 50, 9], [30, 40, 60], [7, 80, 90]]
    table = protect_table(counts, "dfe")
    hidden = {(i, j) for i, row in enumerate(table.cells) for j, c in enumerate(row) if c.suppressed}
    assert hidden == {(0, 0), (0, 2), (1, 0), (1, 2)}
    assert table.suppressed == 4
    assert hidden_values_recoverable(table, counts) == []


def test_a_column_with_only_a_total_needs_two_hidden_cells():
    counts = [[2], [40], [11]]
    table = protect_table(counts, "dfe", row_totals=False, column_totals=True)
    assert [row[0].text for row in table.cells] == ["c", "40", "c"]
    assert table.column_totals[0].text == "53"
    assert table.row_totals is None and table.grand_total is None


def test_zeros_are_shown_and_never_hidden_to_protect_another_cell():
    counts = [[3, 0], [0, 30]]
    table = protect_table(counts, "dfe")
    assert [[c.text for c in row] for row in table.cells][0][1] == "0"
    assert table.cells[1][0].text == "0"
    assert hidden_values_recoverable(table, counts) == []


def test_a_small_total_is_hidden_too():
    table = protect_table([[1, 2], [0, 0]], "dfe")
    assert table.row_totals[0].suppressed and table.grand_total.suppressed
    assert hidden_values_recoverable(table, [[1, 2], [0, 0]]) == []


def test_nhs_tables_hide_up_to_seven_and_round_what_they_show():
    counts = [[7, 52], [13, 21]]
    table = protect_table(counts, "nhs")
    assert table.cells[0][0].text == "*"
    shown = [c for row in table.cells for c in row if not c.suppressed]
    assert all(c.value % 5 == 0 for c in shown)
    assert hidden_values_recoverable(table, counts) == []


def test_no_rule_shows_the_table_as_it_is():
    table = protect_table([[1, 2], [3, 4]], "none")
    assert table.suppressed == 0
    assert [c.text for c in table.column_totals] == ["4", "6"]


def test_a_ragged_or_negative_table_is_refused():
    with pytest.raises(ValueError):
        protect_table([[1, 2], [3]], "dfe")
    with pytest.raises(ValueError):
        protect_table([[-1]], "dfe")
