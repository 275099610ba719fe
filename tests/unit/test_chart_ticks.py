"""The trend charts' y-axis ticks: evenly spaced at round steps, each labelled exactly."""

from __future__ import annotations

import pytest

from partnerflow.report.charts import y_ticks


@pytest.mark.parametrize(
    ("bottom", "top", "unit"),
    [(20.4, 26.6, "percent"), (83.1, 86.9, "percent"), (79.2, 88.3, "percent"), (0, 100, "percent"),
     (0, 12.6, "count"), (190, 230, "count"), (0.2, 0.9, "rate"), (21.2, 22.9, "percent")],
)  # fmt: skip
def test_labels_are_the_exact_values_at_even_steps(bottom, top, unit):
    ticks = y_ticks(bottom, top, unit)
    assert 2 <= len(ticks) <= 5
    values = [value for value, _ in ticks]
    assert all(bottom <= v <= top for v in values)
    steps = {round(b - a, 9) for a, b in zip(values, values[1:], strict=False)}
    assert len(steps) == 1
    for value, label in ticks:
        number = float(label.rstrip("%").replace(",", ""))
        assert number == pytest.approx(value, abs=1e-9)  # "22%" is never printed for 21.5
    assert len({label for _, label in ticks}) == len(ticks)


def test_a_narrow_percentage_scale_gets_decimals_and_counts_never_do():
    assert [label for _, label in y_ticks(21.2, 22.9, "percent")] == ["21.5%", "22.0%", "22.5%"]
    assert [label for _, label in y_ticks(0, 3.2, "count")] == ["0", "1", "2", "3"]
