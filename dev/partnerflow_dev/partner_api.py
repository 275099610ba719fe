"""A partner's HTTP API for returns: bearer-token or OAuth2 auth, JSON, paginated, with injectable faults.

A return is "submitted" by writing `root/{dataset}/{period}.json`, a JSON list of record objects
(write it to a temporary name and rename, so a request never sees half a file). It is then served at

    GET /v1/returns/{dataset}/{period}?page=N      (N from 1, default 1)
    GET /v1/returns/{dataset}/{period}?cursor=C    (C from the previous page's `next_cursor`)

as `{"dataset", "period", "page", "total_pages", "total_records", "next_cursor", "records"}`, with a
`Link: <...?page=N+1>; rel="next"` header while there are more pages: page, cursor and link clients all
work. An empty return has one page with no records. Errors are JSON `{"error": code, "message": text}`:
401 for a missing, wrong or expired token, 404 `not_submitted` when there is no file, 400 for a bad page.

Tokens: the fixed bearer `token`, or one issued by `POST /oauth/token` (client credentials grant, HTTP
basic auth with `client_id`/`client_secret`); `expire_tokens()` makes every issued token expire.

Queued faults (`PartnerApi.faults`) apply to authorised requests to that endpoint, one per response.
"""

from __future__ import annotations

import base64
import binascii
import hmac
import json
import math
import re
import secrets
import threading
from enum import Enum
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

from partnerflow_dev._http import BackgroundHttpServer, FaultQueue, JsonRequestHandler

RETURNS_PATH = re.compile(r"^/v1/returns/(?P<dataset>[^/]+)/(?P<period>[^/]+)$")
TOKEN_PATH = "/oauth/token"
HANG_LIMIT_SECONDS = 300
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
    SKIPPED_PAGE = "skipped_page"
    """200 with the next page's records, labelled as the page asked for."""
    EARLY_END = "early_end"
    """200 with this page's records but no next page (no cursor, no link, total_pages = this page), while
    total_records still counts the whole return."""
    ERROR_OBJECT = "error_object"
    """200 with a JSON error object and no records (a gateway that always says 200)."""
    HANG = "hang"
    """Accept the request and never answer (until the server stops)."""


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
        if fault is ApiFault.ERROR_OBJECT:
            self.send_json(200, {"error": "upstream_unavailable", "message": "Try again later"})
            return
        if fault is ApiFault.HANG:
            self.api.stopping.wait(HANG_LIMIT_SECONDS)
            return
        self._serve_page(match["dataset"], match["period"], parse_qs(url.query), fault, url.path)

    def do_POST(self) -> None:
        if urlsplit(self.path).path != TOKEN_PATH:
            self._error(405, "method_not_allowed", "Only GET is supported")
            return
        form = parse_qs(self.read_body().decode("ascii", "replace"))
        client_id, client_secret = self._client_credentials(form)
        if form.get("grant_type") != ["client_credentials"]:
            self._error(400, "unsupported_grant_type", "Only client_credentials is supported")
            return
        if not (
            self.api.client_id
            and hmac.compare_digest(client_id.encode(), self.api.client_id.encode())
            and hmac.compare_digest(client_secret.encode(), self.api.client_secret.encode())
        ):
            self._error(401, "invalid_client", "Client authentication failed")
            return
        token = self.api.issue_token()
        self.send_json(200, {"access_token": token, "token_type": "Bearer", "expires_in": 3600})

    def _client_credentials(self, form: dict[str, list[str]]) -> tuple[str, str]:
        scheme, _, encoded = self.headers.get("Authorization", "").partition(" ")
        if scheme.lower() == "basic":
            try:
                user, _, password = base64.b64decode(encoded.strip()).decode().partition(":")
            except (binascii.Error, UnicodeDecodeError):
                return "", ""
            return user, password
        return form.get("client_id", [""])[0], form.get("client_secret", [""])[0]

    def _serve_page(
        self, dataset: str, period: str, query: dict[str, list[str]], fault: ApiFault | None, path: str
    ) -> None:
        if not (SAFE_NAME.match(dataset) and SAFE_NAME.match(period)):
            self._error(400, "bad_request", "Invalid dataset or period")
            return
        if "cursor" in query:
            page_values = [_page_of_cursor(query["cursor"][0])]
        else:
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
        served_page = page
        if fault is ApiFault.REPEATED_PAGE:
            served_page = max(1, page - 1)
        elif fault is ApiFault.SKIPPED_PAGE:
            served_page = min(total_pages, page + 1)
        more = page < total_pages and fault is not ApiFault.EARLY_END
        body = json.dumps(
            {
                "dataset": dataset,
                "period": period,
                "page": page,
                "total_pages": total_pages if more or page == total_pages else page,
                "total_records": len(records),
                "next_cursor": _cursor_of_page(page + 1) if more else None,
                "records": records[(served_page - 1) * size : served_page * size],
            }
        ).encode()
        if fault is ApiFault.TRUNCATED_JSON:
            body = body[: len(body) // 2]
        headers = {"Link": f'<{path}?page={page + 1}>; rel="next"'} if more else None
        self.send_bytes(200, body, "application/json", headers)

    def _authorised(self) -> bool:
        header = self.headers.get("Authorization", "")
        scheme, _, token = header.partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            self._unauthorised("unauthorized", "A bearer token is required")
            return False
        if not (hmac.compare_digest(token.strip().encode(), self.api.token.encode()) or self.api.valid(token.strip())):
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
        client_id: str = "",
        client_secret: str = "",
    ) -> None:
        """``client_id``/``client_secret`` enable ``POST /oauth/token`` (client credentials)."""
        if page_size < 1:
            raise ValueError("page_size must be at least 1")
        super().__init__(port=port)
        self.root = Path(root)
        self.token = token
        self.page_size = page_size
        self.retry_after_seconds = retry_after_seconds
        self.client_id = client_id
        self.client_secret = client_secret
        self.faults: FaultQueue[ApiFault] = FaultQueue()
        self.tokens_issued = 0
        self._issued: set[str] = set()
        self._issued_lock = threading.Lock()

    def issue_token(self) -> str:
        """A new OAuth2 access token, valid until `expire_tokens()`."""
        token = secrets.token_urlsafe(24)
        with self._issued_lock:
            self._issued.add(token)
            self.tokens_issued += 1
        return token

    def valid(self, token: str) -> bool:
        with self._issued_lock:
            return token in self._issued

    def expire_tokens(self) -> None:
        """Every token issued so far expires now (the next request with one gets 401 invalid_token)."""
        with self._issued_lock:
            self._issued.clear()

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


def _cursor_of_page(page: int) -> str:
    return base64.urlsafe_b64encode(json.dumps({"p": page}).encode()).decode().rstrip("=")


def _page_of_cursor(cursor: str) -> str:
    """The page number a cursor stands for, as text; "" for a cursor we did not issue."""
    try:
        page = json.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))["p"]
    except (ValueError, KeyError, TypeError, binascii.Error):
        return ""
    return str(page) if isinstance(page, int) else ""
