"""The officer's commentary file per period: read per theme, missing means none, a wrong theme is an error."""

from __future__ import annotations

import pytest

from partnerflow.core.config import ConfigError, load_config
from partnerflow.core.periods import Period
from partnerflow.report.commentary import load_commentary

Q3 = Period.from_id("2026Q3")


def test_a_theme_with_words_and_themes_without(tmp_path):
    (tmp_path / "2026Q3.yaml").write_text("Front door:\n  data: Fewer\n    referrals.\nHealth: {doing: A plan.}\n")
    commentary = load_commentary(load_config(), Q3, tmp_path)
    assert commentary["Front door"].parts == [("What the data tells us", "Fewer referrals.")]
    assert commentary["Health"].parts == [("What we are doing", "A plan.")]
    assert "Police" not in commentary
    assert load_commentary(load_config(), Q3.next(), tmp_path) == {}  # no file: no commentary, not an error


def test_a_misspelt_theme_is_named_in_the_log_and_a_wrong_key_is_an_error(tmp_path, caplog):
    (tmp_path / "2026Q3.yaml").write_text("Frontdoor:\n  data: x\n")
    assert load_commentary(load_config(), Q3, tmp_path) == {}
    assert "2026Q3.yaml: 'Frontdoor' is not a theme of the pack" in caplog.text
    (tmp_path / "2026Q3.yaml").write_text("Health:\n  summary: x\n")
    with pytest.raises(ConfigError, match="give 'data' and/or 'doing'"):
        load_commentary(load_config(), Q3, tmp_path)
