"""Rendering the Board pack's emails (the pack itself and the pre-briefs) in partnerflow's shared layout.

The templates are ``report/templates/email_*.{txt,html}``; they extend ``base.txt``/``base.html`` from
``notify/templates``, so every email partnerflow sends looks the same. HTML is autoescaped, text is not.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from functools import cache
from typing import Any

import jinja2

from partnerflow.core import wording
from partnerflow.core.periods import period_label
from partnerflow.notify.messages import TEMPLATES_DIR as NOTIFY_TEMPLATES
from partnerflow.report.boardpack import TEMPLATES_DIR


def render_email(template: str, context: Mapping[str, Any]) -> tuple[str, str]:
    """The plain-text and HTML parts of ``email_<template>``; ``context`` needs partnership, subject and key."""
    env = _environment()
    text = env.get_template(f"email_{template}.txt").render(context)
    html = env.get_template(f"email_{template}.html").render(context)
    return re.sub(r"\n{3,}", "\n\n", text).strip() + "\n", html


@cache
def _environment() -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader([TEMPLATES_DIR, NOTIFY_TEMPLATES]),
        autoescape=jinja2.select_autoescape(enabled_extensions=("html",), default_for_string=True, default=False),
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
    )
    env.filters.update(wording.FILTERS)
    env.filters["period_label"] = period_label
    return env
