"""Where partnerflow keeps its files: the repository's config, contracts, SQL, and the var/ folder."""

from __future__ import annotations

import os
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[3]


def repo_path(*parts: str) -> Path:
    """A path inside the repository (config/, expectations/, sql/, dags/)."""
    return REPO_ROOT.joinpath(*parts)


def var_dir() -> Path:
    """The working folder for landed files, reports, the mail sink and the dev stack.

    ``PARTNERFLOW_VAR`` moves it (a volume in production); the default is ``var/`` in the repository.
    """
    path = Path(os.environ.get("PARTNERFLOW_VAR", REPO_ROOT / "var"))
    path.mkdir(parents=True, exist_ok=True)
    return path
