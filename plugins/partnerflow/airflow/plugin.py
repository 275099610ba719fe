"""partnerflow in the Airflow UI: a "Submissions" page showing where every feed's return stands, period by period.

Registered through the ``airflow.plugins`` entry point. The API server mounts the FastAPI app under
``/partnerflow`` and the UI shows a "Submissions" item in its navigation that embeds the page.

Pitfalls:
    Airflow imports this module in every component (scheduler, dag-processor, triggerer, workers), so it
    imports nothing heavy at the top: FastAPI, Airflow's API security module and the warehouse are imported
    when the API server first reads :attr:`PartnerflowPlugin.fastapi_apps`.
    Apps mounted by plugins are not behind Airflow's login. Every route here depends on
    ``access.requires_submissions_access()``: Airflow's ``get_user`` accepts the JWT the Airflow UI already
    holds (the ``_token`` cookie the browser sends to the embedded page) or an ``Authorization: Bearer``
    header, then the auth manager decides whether that user holds partnerflow's permission
    (``airflow/access.py``); others get 403. The app has no OpenAPI or docs routes, which would not carry
    that dependency.
"""

from __future__ import annotations

import datetime as dt
import logging
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any

from airflow.plugins_manager import AirflowPlugin

from partnerflow.airflow import access
from partnerflow.core import wording

if TYPE_CHECKING:
    from fastapi import FastAPI

    from partnerflow.core.config import Partnership
    from partnerflow.warehouse.status import FileReport, ReturnStatus

log = logging.getLogger(__name__)

URL_PREFIX = "/partnerflow"
SUBMISSIONS_PATH = "/submissions"
TEMPLATES_DIR = Path(__file__).parent / "ui"


def create_app() -> FastAPI:
    """The partnerflow web app: the submissions matrix as a page and as JSON, for holders of its permission."""
    import jinja2
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
        dependencies=[Depends(access.requires_submissions_access())],
        openapi_url=None,
        docs_url=None,
        redoc_url=None,
    )

    @app.get(SUBMISSIONS_PATH, response_class=HTMLResponse)
    def submissions_page() -> HTMLResponse:
        """Every return's status (``warehouse.status``), one table per period, each row expandable."""
        matrix = _load_matrix()
        if matrix is None:
            return HTMLResponse(WAREHOUSE_UNAVAILABLE_HTML, status_code=503)
        config, today, rows = matrix
        page = templates.get_template("submissions.html").render(
            partnership=config, today=today, periods=_by_period(rows)
        )
        return HTMLResponse(page)

    @app.get(f"{SUBMISSIONS_PATH}.json")
    def submissions_json() -> JSONResponse:
        """Every return's status as JSON: one object per feed x period, newest period first."""
        matrix = _load_matrix()
        if matrix is None:
            return JSONResponse({"error": "the warehouse is not reachable"}, status_code=503)
        config, today, rows = matrix
        return JSONResponse(
            {"partnership": config.name, "as_of": today.isoformat(), "submissions": [row.as_dict() for row in rows]}
        )

    @app.get(f"{SUBMISSIONS_PATH}/files/{{file_id}}", response_class=HTMLResponse)
    def file_page(file_id: int) -> HTMLResponse:
        """One file: the value-free report the partner got, its ledger history and the e-mails it caused."""
        found = _load_file(file_id)
        if found is None:
            return HTMLResponse(WAREHOUSE_UNAVAILABLE_HTML, status_code=503)
        config, report = found
        if report is None:
            return HTMLResponse(f"<!DOCTYPE html><title>No file</title><p>There is no file {file_id}.</p>", 404)
        return HTMLResponse(templates.get_template("file.html").render(partnership=config, report=report))

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


def _load_matrix() -> tuple[Partnership, dt.date, list[ReturnStatus]] | None:
    """The configuration, today's date and every return's status; None when the warehouse is unavailable."""
    from sqlalchemy.exc import OperationalError

    from partnerflow import warehouse
    from partnerflow.core import clock
    from partnerflow.core.config import partnership
    from partnerflow.warehouse import status

    config = partnership()
    try:
        rows = status.matrix(warehouse.engine(), config, as_of=clock.today())
    except (warehouse.WarehouseNotConfigured, OperationalError) as exc:
        log.warning("submissions page: the warehouse is unavailable (%s)", type(exc).__name__)
        return None
    return config, clock.today(), rows


def _load_file(file_id: int) -> tuple[Partnership, FileReport | None] | None:
    from sqlalchemy.exc import OperationalError

    from partnerflow import warehouse
    from partnerflow.core.config import partnership
    from partnerflow.warehouse import status

    config = partnership()
    try:
        with warehouse.engine().connect() as conn:
            return config, status.file_report(conn, config, file_id)
    except (warehouse.WarehouseNotConfigured, OperationalError) as exc:
        log.warning("file page: the warehouse is unavailable (%s)", type(exc).__name__)
        return None


def _by_period(rows: list[ReturnStatus]) -> list[dict[str, Any]]:
    """Rows grouped by period, in the matrix's order (newest first)."""
    periods: dict[str, dict[str, Any]] = {}
    for row in rows:
        periods.setdefault(row.period_id, {"id": row.period_id, "label": row.period_label, "rows": []})
        periods[row.period_id]["rows"].append(row)
    return list(periods.values())
