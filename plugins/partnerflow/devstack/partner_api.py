"""A partner's HTTP API for returns: bearer-token auth, JSON, paginated, with injectable faults.

A return is "submitted" by writing `root/{dataset}/{period}.json`, a JSON list of record objects
(write it to a temporary name and rename, so a request never sees half a file). It is then served at

    GET /v1/returns/{dataset}/{period}?page=N      (N from 1, default 1)

as `{"dataset", "period", "page", "total_pages", "total_records", "records"}`. An empty return has one
page with no records. Errors are JSON `{"error": code, "message": text}`: 401 for a missing or wrong
token, 404 `not_submitted` when there is no file, 400 for a bad page number.

Queued faults (`PartnerApi.faults`) apply to authorised requests to that endpoint, one per response.
"""

from __future__ import annotations

import hmac
import json
import math
import re
from enum import Enum
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

from partnerflow.devstack._http import BackgroundHttpServer, FaultQueue, JsonRequestHandler

RETURNS_PATH = re.compile(r"^/v1/returns/(?P<dataset>[^/]+)/(?P<period>[^/]+)$")
SAFE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")

LOGIN_PAGE = b"""<!DOCTYPE html>
<html lang="en"><head><title>Sign in</title></head>
<body><h1>Sign in to the partner portal</h1>
<form method="post" action="/login"><label>Username <input name="username"></label>
<label>Password <input name="password" type="password"></label><button>Sign in</button></form>
</body></html>
"""


class ApiFault(Enum):
    """Ways the partner API can misbehave on one response (queue them on `PartnerApi.faults`)."""

    RATE_LIMITED = "rate_limited"
    """429 with a `Retry-After` header (`PartnerApi.retry_after_seconds`)."""
    SERVER_ERROR = "server_error"
    """500 with a JSON error body."""
    LOGIN_PAGE = "login_page"
    """200 with an HTML sign-in page instead of JSON (an expired session behind a proxy)."""
    TRUNCATED_JSON = "truncated_json"
    """200 with the page's JSON cut off half way."""
    REPEATED_PAGE = "repeated_page"
    """200 with the previous page's records again, labelled as the page asked for."""
    TOKEN_EXPIRED = "token_expired"
    """401 `invalid_token` although the token is right."""


class _PartnerApiHandler(JsonRequestHandler):
    server_version = "PartnerReturnsAPI/1.0"

    @property
    def api(self) -> PartnerApi:
        return self.server.service

    def do_GET(self) -> None:
        url = urlsplit(self.path)
        match = RETURNS_PATH.match(url.path)
        if match is None:
            self._error(404, "not_found", "No such endpoint")
            return
        if not self._authorised():
            return
        fault = self.api.faults.take()
        if fault is ApiFault.TOKEN_EXPIRED:
            self._unauthorised("invalid_token", "The access token expired")
            return
        if fault is ApiFault.RATE_LIMITED:
            self.send_json(
                429,
                {"error": "rate_limited", "message": "Too many requests"},
                {"Retry-After": str(self.api.retry_after_seconds)},
            )
            return
        if fault is ApiFault.SERVER_ERROR:
            self._error(500, "internal_error", "An internal error occurred")
            return
        if fault is ApiFault.LOGIN_PAGE:
            self.send_bytes(200, LOGIN_PAGE, "text/html; charset=utf-8")
            return
        self._serve_page(match["dataset"], match["period"], parse_qs(url.query), fault)

    def do_POST(self) -> None:
        self._error(405, "method_not_allowed", "Only GET is supported")

    def _serve_page(self, dataset: str, period: str, query: dict[str, list[str]], fault: ApiFault | None) -> None:
        if not (SAFE_NAME.match(dataset) and SAFE_NAME.match(period)):
            self._error(400, "bad_request", "Invalid dataset or period")
            return
        page_values = query.get("page", ["1"])
        if len(page_values) != 1 or not page_values[0].isdigit() or int(page_values[0]) < 1:
            self._error(400, "bad_request", "page must be a positive integer")
            return
        page = int(page_values[0])
        try:
            records = json.loads(self.api.return_path(dataset, period).read_text())
        except FileNotFoundError:
            self._error(404, "not_submitted", f"No return submitted for {dataset} {period}")
            return
        except (OSError, ValueError):
            self._error(500, "internal_error", "The return could not be read")
            return
        size = self.api.page_size
        total_pages = max(1, math.ceil(len(records) / size))
        if page > total_pages:
            self._error(400, "bad_request", f"page must be between 1 and {total_pages}")
            return
        served_page = max(1, page - 1) if fault is ApiFault.REPEATED_PAGE else page
        body = json.dumps(
            {
                "dataset": dataset,
                "period": period,
                "page": page,
                "total_pages": total_pages,
                "total_records": len(records),
                "records": records[(served_page - 1) * size : served_page * size],
            }
        ).encode()
        if fault is ApiFault.TRUNCATED_JSON:
            body = body[: len(body) // 2]
        self.send_bytes(200, body, "application/json")

    def _authorised(self) -> bool:
        header = self.headers.get("Authorization", "")
        scheme, _, token = header.partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            self._unauthorised("unauthorized", "A bearer token is required")
            return False
        if not hmac.compare_digest(token.strip().encode(), self.api.token.encode()):
            self._unauthorised("invalid_token", "The access token is not valid")
            return False
        return True

    def _unauthorised(self, code: str, message: str) -> None:
        challenge = 'Bearer realm="partner-returns"'
        if code == "invalid_token":
            challenge += ', error="invalid_token"'
        self.send_json(401, {"error": code, "message": message}, {"WWW-Authenticate": challenge})

    def _error(self, status: int, code: str, message: str) -> None:
        self.send_json(status, {"error": code, "message": message})


class PartnerApi(BackgroundHttpServer):
    """The partner returns API on 127.0.0.1, serving the files under `root`.

    Usage::

        with PartnerApi(root=Path("var/police_api"), token="s3cret") as api:
            api.faults.add(ApiFault.RATE_LIMITED, times=2)
            ...  # GET f"{api.url}/v1/returns/ppn/2026-Q1?page=1" with "Authorization: Bearer s3cret"
    """

    handler_class = _PartnerApiHandler

    def __init__(
        self,
        *,
        root: Path,
        token: str,
        page_size: int = 100,
        port: int | None = None,
        retry_after_seconds: int = 1,
    ) -> None:
        if page_size < 1:
            raise ValueError("page_size must be at least 1")
        super().__init__(port=port)
        self.root = Path(root)
        self.token = token
        self.page_size = page_size
        self.retry_after_seconds = retry_after_seconds
        self.faults: FaultQueue[ApiFault] = FaultQueue()

    def start(self) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        super().start()

    def return_path(self, dataset: str, period: str) -> Path:
        """Where the records of `dataset` for `period` are read from."""
        return self.root / dataset / f"{period}.json"

    def submit(self, dataset: str, period: str, records: list[dict[str, Any]]) -> Path:
        """Publish `records` as the partner's return for `dataset` and `period` (atomically)."""
        path = self.return_path(dataset, period)
        path.parent.mkdir(parents=True, exist_ok=True)
        partial = path.with_name(f".{path.name}.partial")
        partial.write_text(json.dumps(records))
        partial.replace(path)
        return path
