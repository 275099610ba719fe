"""partnerflow in the Airflow UI: a "Submissions" page showing where every feed's return stands, period by period.

Registered through the ``airflow.plugins`` entry point. The API server mounts the FastAPI app under
``/partnerflow`` and the UI shows a "Submissions" item in its navigation that embeds the page.

Pitfalls:
    Airflow imports this module in every component (scheduler, dag-processor, triggerer, workers), so it
    imports nothing heavy at the top: FastAPI, Airflow's API security module and the warehouse are imported
    when the API server first reads :attr:`PartnerflowPlugin.fastapi_apps`.
    Apps mounted by plugins are not behind Airflow's login. Every route here depends on
    ``requires_authenticated()``, which accepts the JWT the Airflow UI already holds (the ``_token`` cookie
    the browser sends to the embedded page) or an ``Authorization: Bearer`` header. The app has no
    OpenAPI or docs routes, which would not carry that dependency.
"""

from __future__ import annotations

import datetime as dt
import logging
from dataclasses import asdict
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any

from airflow.plugins_manager import AirflowPlugin

from partnerflow.core import wording

if TYPE_CHECKING:
    from fastapi import FastAPI

    from partnerflow.core.config import Partnership
    from partnerflow.warehouse.status import SliceStatus

log = logging.getLogger(__name__)

URL_PREFIX = "/partnerflow"
SUBMISSIONS_PATH = "/submissions"
TEMPLATES_DIR = Path(__file__).parent / "ui"


def create_app() -> FastAPI:
    """The partnerflow web app: the submissions matrix as a page and as JSON, for signed-in Airflow users only."""
    import jinja2
    from airflow.api_fastapi.core_api.security import requires_authenticated
    from fastapi import Depends, FastAPI
    from fastapi.responses import HTMLResponse, JSONResponse

    templates = jinja2.Environment(
        loader=jinja2.FileSystemLoader(TEMPLATES_DIR),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    templates.filters.update(wording.FILTERS)

    app = FastAPI(
        title="partnerflow",
        dependencies=[Depends(requires_authenticated())],
        openapi_url=None,
        docs_url=None,
        redoc_url=None,
    )

    @app.get(SUBMISSIONS_PATH, response_class=HTMLResponse)
    def submissions_page() -> HTMLResponse:
        """The submissions matrix as an HTML page, one table per period."""
        matrix = _load_matrix()
        if matrix is None:
            return HTMLResponse(WAREHOUSE_UNAVAILABLE_HTML, status_code=503)
        config, today, rows = matrix
        page = templates.get_template("submissions.html").render(
            partnership=config, today=today, periods=_by_period(config, today, rows)
        )
        return HTMLResponse(page)

    @app.get(f"{SUBMISSIONS_PATH}.json")
    def submissions_json() -> JSONResponse:
        """The submissions matrix as JSON: one object per feed x period, newest period first."""
        matrix = _load_matrix()
        if matrix is None:
            return JSONResponse({"error": "the warehouse is not reachable"}, status_code=503)
        config, today, rows = matrix
        return JSONResponse(
            {
                "partnership": config.name,
                "as_of": today.isoformat(),
                "submissions": [{**row.as_dict(), "overdue": _overdue(row, today)} for row in rows],
            }
        )

    return app


class PartnerflowPlugin(AirflowPlugin):
    """Adds the Submissions page to the Airflow API server and a link to it in the UI's navigation."""

    name = "partnerflow"
    external_views = [
        {
            "name": "Submissions",
            "href": f"{URL_PREFIX}{SUBMISSIONS_PATH}",
            "destination": "nav",
            "url_route": "partnerflow-submissions",
            "nav_top_level": True,
        }
    ]

    @cached_property
    def fastapi_apps(self) -> list[dict[str, Any]]:  # type: ignore[override]
        # A property, so that only the API server, which reads it, pays for importing FastAPI and the warehouse.
        return [{"app": create_app(), "url_prefix": URL_PREFIX, "name": "partnerflow"}]


WAREHOUSE_UNAVAILABLE_HTML = """<!DOCTYPE html>
<html lang="en-GB"><head><meta charset="utf-8"><title>Submissions</title></head>
<body><main><h1>Submissions</h1>
<p>The warehouse is not reachable just now, so the submissions matrix cannot be shown. Check
PARTNERFLOW_WAREHOUSE_URL on the API server and that the database is up, then reload.</p></main></body></html>
"""


def _load_matrix() -> tuple[Partnership, dt.date, list[SliceStatus]] | None:
    """The configuration, today's date and the matrix; None when the warehouse is not configured or reachable."""
    from sqlalchemy.exc import OperationalError

    from partnerflow import warehouse
    from partnerflow.core import clock
    from partnerflow.core.config import partnership
    from partnerflow.warehouse import status

    config = partnership()
    try:
        rows = status.matrix(warehouse.engine(), config)
    except (warehouse.WarehouseNotConfigured, OperationalError) as exc:
        log.warning("submissions page: the warehouse is unavailable (%s)", type(exc).__name__)
        return None
    return config, clock.today(), rows


def _overdue(row: SliceStatus, today: dt.date) -> bool:
    return row.state != "published" and row.due_date is not None and row.due_date < today


def _by_period(config: Partnership, today: dt.date, rows: list[SliceStatus]) -> list[dict[str, Any]]:
    """Rows grouped by period (in the matrix's order, newest first), with what the page shows beside them."""
    from partnerflow.core.periods import Period

    titles = {feed.id: feed.title for feed in config.feeds}
    periods: dict[str, dict[str, Any]] = {}
    for row in rows:
        if row.period_id not in periods:
            try:
                label = Period.from_id(row.period_id).label
            except ValueError:
                label = row.period_id
            periods[row.period_id] = {"id": row.period_id, "label": label, "rows": []}
        periods[row.period_id]["rows"].append(
            {**asdict(row), "feed_title": titles.get(row.feed_id, row.feed_id), "overdue": _overdue(row, today)}
        )
    return list(periods.values())
