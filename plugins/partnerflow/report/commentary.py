"""The officer's commentary for a period's pack: per theme, what the data tells us and what we are doing.

It is written in a file per period beside the partnership file, ``commentary/<period id>.yaml``::

    Front door:
      data: Referrals ending in no further action fell below the 15% target for the first time ...
      doing: The front door's threshold guidance was refreshed in July ...

Both keys are optional; a theme with neither, or missing from the file, or a period with no file, is shown
in the pack as having no commentary (never left blank, so a reader can tell "nothing to say" from "not
written"). A theme the pack does not have is logged as a warning naming the file (a misspelt theme, or one
of another partnership's), and left out.
Commentary is wording, not data: changing it does not make a sent pack "revised".
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import yaml

from partnerflow.core.config import ConfigError, Partnership, config_path
from partnerflow.core.periods import Period

log = logging.getLogger(__name__)

KEYS = {"data": "What the data tells us", "doing": "What we are doing"}


@dataclass(frozen=True)
class ThemeCommentary:
    data: str = ""
    doing: str = ""

    def __bool__(self) -> bool:
        return bool(self.data or self.doing)

    @property
    def parts(self) -> list[tuple[str, str]]:
        """``(heading, text)`` for each part written."""
        return [(KEYS[key], text) for key, text in (("data", self.data), ("doing", self.doing)) if text]


def commentary_dir() -> Path:
    return config_path().parent / "commentary"


def load_commentary(
    partnership: Partnership, period: Period, directory: Path | None = None
) -> dict[str, ThemeCommentary]:
    """The period's commentary by theme; empty when there is no file."""
    path = (directory or commentary_dir()) / f"{period.id}.yaml"
    if not path.is_file():
        return {}
    try:
        document = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML ({exc})") from None
    if not isinstance(document, dict):
        raise ConfigError(f"{path}: expected a mapping of theme to commentary")
    themes = {k.theme for k in partnership.kpis}
    commentary = {}
    for theme, entry in document.items():
        if theme not in themes:
            log.warning("%s: %r is not a theme of the pack (%s): left out", path, theme, ", ".join(sorted(themes)))
            continue
        entry = entry or {}
        if not isinstance(entry, dict) or set(entry) - set(KEYS):
            raise ConfigError(f"{path}: {theme}: give 'data' and/or 'doing', each a paragraph of text")
        commentary[theme] = ThemeCommentary(
            data=" ".join(str(entry.get("data") or "").split()), doing=" ".join(str(entry.get("doing") or "").split())
        )
    return commentary
