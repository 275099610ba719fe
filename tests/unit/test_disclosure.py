"""Disclosure control: small counts hidden or rounded, and rates made from hidden counts hidden too."""

import pytest

from partnerflow.report.disclosure import protect_count, protect_kpi, protect_rate


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
