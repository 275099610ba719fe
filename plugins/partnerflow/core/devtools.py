"""The optional development tools (the ``partnerflow-dev`` package), found by entry point, never imported.

A production install has none of them; a checkout's virtual environment has them all (the demo, the demo's
warehouse for ``partnerflow status``, a throwaway PostgreSQL for ``partnerflow validate``).
"""

from __future__ import annotations

from importlib.metadata import entry_points
from typing import Any

GROUP = "partnerflow.dev"


def dev_tool(name: str) -> Any | None:
    """The development tool registered as ``name``, or None when partnerflow-dev is not installed."""
    for entry in entry_points(group=GROUP, name=name):
        return entry.load()
    return None
