"""Reading one return from a partner's HTTP API through the provider's HttpHook.

Every request goes through ``HttpHook.run_with_advanced_retry``: a 429 waits for its ``Retry-After``, a
5xx, timeout or dropped connection backs off exponentially with jitter, and all of it fits a per-fetch
budget (``retry_budget_seconds``). A 401 gets one token refresh (OAuth2 client credentials, or the
connection re-read for a bearer token rotated in the secrets backend) and one more try.

A page is accepted only if it is JSON with a list of records: a 200 carrying an HTML sign-in page, an
error object or broken JSON fails the fetch. Pages are followed by number, cursor or ``Link`` header;
a page that repeats an earlier one, a cursor or link seen before, or a total that the records don't add up
to fails the fetch too. Nothing is landed unless every page was read.

Pitfalls:
    HttpHook sends the connection's extras as HTTP headers and, with a login set, basic auth on every
    request: our bearer auth is passed per request, which overrides the session's.
    A ``Link`` to another host is refused: following it would hand our token to that host.
    Response bodies are never logged or put in messages: they may carry personal data.
"""

from __future__ import annotations

import datetime as dt
import email.utils
import hashlib
import json
import logging
import time
from dataclasses import dataclass
from typing import Any
from urllib.parse import urljoin, urlsplit

from partnerflow.core.config import HttpTransport
from partnerflow.transport.errors import PartnerRefused, TransportError, TransportRefused

log = logging.getLogger(__name__)

MAX_PAGES = 10_000
MAX_ATTEMPTS = 8
BACKOFF_MULTIPLIER_SECONDS = 0.5
BACKOFF_MAX_SECONDS = 30
RETRY_STATUSES = frozenset({429, 500, 502, 503, 504})
TOTAL_KEYS = ("total_records", "total")


@dataclass(frozen=True)
class ApiPage:
    """One page as received: its records, and the raw body to land."""

    number: int
    records: list[Any]
    raw: bytes


class PartnerApiReader:
    """Reads every page of one return, or None when the partner has not published it (404 on page 1)."""

    def __init__(self, *, feed_id: str, transport: HttpTransport):
        self.feed_id = feed_id
        self.transport = transport
        self._token: str | None = None
        self._deadline = 0.0
        self._base = ""

    def read(self, endpoint: str) -> list[ApiPage] | None:
        from airflow.providers.http.hooks.http import HttpHook

        self._deadline = time.monotonic() + self.transport.retry_budget_seconds
        hook = HttpHook(method="GET", http_conn_id=self.transport.connection)
        self._base = hook.url_from_endpoint("")
        pages: list[ApiPage] = []
        seen_pages: dict[str, int] = {}
        seen_next: set[str] = set()
        request: tuple[str, dict[str, Any] | None] | None = (endpoint, self._first_params())
        reported_total: int | None = None
        while request is not None:
            number = len(pages) + 1
            if number > MAX_PAGES:
                raise self._error(f"more than {MAX_PAGES} pages")
            path, params = request
            response = self._get(hook, path, params)
            if response.status_code == 404 and number == 1:
                return None
            if response.status_code != 200:
                raise self._error(f"answered HTTP {response.status_code} on page {number}")
            body = self._json_body(response, number)
            records = body[self.transport.records_key]
            self._check_page_label(body, number)
            fingerprint = hashlib.sha256(json.dumps(records, sort_keys=True).encode()).hexdigest()
            if records and fingerprint in seen_pages:
                raise self._error(f"page {number} repeats page {seen_pages[fingerprint]}; nothing was loaded")
            seen_pages.setdefault(fingerprint, number)
            reported_total = _reported_total(body, reported_total)
            pages.append(ApiPage(number=number, records=records, raw=response.content))
            request = self._next(body, response, path, number, seen_next)
        received = sum(len(p.records) for p in pages)
        if reported_total is not None and received != reported_total:
            raise self._error(
                f"reported {reported_total} records but sent {received} across {len(pages)} pages "
                "(a page was skipped or repeated); nothing was loaded"
            )
        return pages

    # --- paging -------------------------------------------------------------------------------

    def _first_params(self) -> dict[str, Any] | None:
        return {"page": 1} if self.transport.pagination == "page" else None

    def _next(
        self, body: dict[str, Any], response: Any, path: str, number: int, seen: set[str]
    ) -> tuple[str, dict[str, Any] | None] | None:
        mode = self.transport.pagination
        if mode == "page":
            total_pages = body.get("total_pages")
            if total_pages is None:
                return (path, {"page": number + 1}) if body[self.transport.records_key] else None
            if not isinstance(total_pages, int) or total_pages < 1:
                raise self._error(f"page {number} has no usable total_pages")
            return (path, {"page": number + 1}) if number < total_pages else None
        if mode == "cursor":
            cursor = body.get("next_cursor")
            if not cursor:
                return None
            if not isinstance(cursor, str):
                raise self._error(f"page {number} has an unusable next_cursor")
            if cursor in seen:
                raise self._error(f"the cursor after page {number} was seen before (the pages loop)")
            seen.add(cursor)
            return path, {"cursor": cursor}
        link = response.links.get("next", {}).get("url")
        if not link:
            return None
        target = urljoin(self._base + path, link)
        if _origin(target) != _origin(self._base):
            raise self._error(f"page {number} links to another host; not followed")
        parts = urlsplit(target)
        next_path = parts.path + (f"?{parts.query}" if parts.query else "")
        if next_path in seen:
            raise self._error(f"the link after page {number} was followed before (the pages loop)")
        seen.add(next_path)
        return next_path, None

    def _check_page_label(self, body: dict[str, Any], number: int) -> None:
        label = body.get("page")
        if self.transport.pagination == "page" and label is not None and label != number:
            raise self._error(f"returned page {label} when page {number} was asked for")

    # --- requests -----------------------------------------------------------------------------

    def _get(self, hook: Any, path: str, params: dict[str, Any] | None) -> Any:
        """One GET with retries; on a 401, one token refresh and one more try."""
        response = self._send(hook, path, params, self._bearer())
        if response.status_code == 401:
            log.info("%s: partner API refused the token; refreshing it once", self.feed_id)
            self._token = None
            response = self._send(hook, path, params, self._bearer())
            if response.status_code == 401:
                raise TransportRefused(
                    f"{self.feed_id}: partner API refused our credentials even after a refresh "
                    f"(connection {self.transport.connection})"
                )
        if response.status_code == 403:
            raise PartnerRefused(f"{self.feed_id}: partner API forbids us this return (HTTP 403)")
        return response

    def _send(self, hook: Any, path: str, params: dict[str, Any] | None, auth: Any) -> Any:
        import requests
        import tenacity

        retry_args = {
            "retry": tenacity.retry_if_result(lambda r: r.status_code in RETRY_STATUSES)
            | tenacity.retry_if_exception_type((requests.ConnectionError, requests.Timeout)),
            "wait": self._wait,
            "stop": self._stop,
            "retry_error_callback": lambda state: state.outcome.result(),
            "before_sleep": self._log_retry,
        }
        started = time.monotonic()
        try:
            response = hook.run_with_advanced_retry(
                retry_args,
                path,
                data=params,
                headers={"Accept": "application/json"},
                extra_options={"check_response": False, "timeout": self.transport.timeout_seconds},
                auth=auth,
            )
        except (requests.ConnectionError, requests.Timeout) as exc:
            raise self._error(
                f"did not answer ({type(exc).__name__}) within the retry budget "
                f"({time.monotonic() - started:.0f}s); nothing was loaded"
            ) from None
        if response.status_code in RETRY_STATUSES:
            raise self._error(
                f"still answered HTTP {response.status_code} when the retry budget ran out; nothing was loaded"
            )
        return response

    def _wait(self, state: Any) -> float:
        import tenacity

        outcome = state.outcome
        if not outcome.failed and outcome.result().status_code == 429:
            retry_after = _retry_after_seconds(outcome.result().headers.get("Retry-After"))
            if retry_after is not None:
                return retry_after
        backoff = tenacity.wait_random_exponential(multiplier=BACKOFF_MULTIPLIER_SECONDS, max=BACKOFF_MAX_SECONDS)
        return backoff(state)

    def _stop(self, state: Any) -> bool:
        return state.attempt_number >= MAX_ATTEMPTS or time.monotonic() + state.upcoming_sleep > self._deadline

    def _log_retry(self, state: Any) -> None:
        outcome = state.outcome
        what = type(outcome.exception()).__name__ if outcome.failed else f"HTTP {outcome.result().status_code}"
        log.warning(
            "%s: partner API %s; retry %d in %.1fs", self.feed_id, what, state.attempt_number, state.upcoming_sleep
        )

    def _bearer(self) -> Any:
        if self._token is None:
            self._token = self._oauth2_token() if self.transport.auth == "oauth2" else self._connection_token()
        return _BearerAuth(self._token)

    def _connection_token(self) -> str:
        from airflow.providers.http.hooks.http import HttpHook

        token = HttpHook.get_connection(self.transport.connection).password
        if not token:
            raise TransportRefused(f"{self.feed_id}: connection {self.transport.connection} has no token (password)")
        return token

    def _oauth2_token(self) -> str:
        """A fresh access token by the client-credentials grant (the connection's login and password)."""
        from airflow.providers.http.hooks.http import HttpHook

        token_hook = HttpHook(method="POST", http_conn_id=self.transport.connection)
        response = self._send(token_hook, self.transport.token_endpoint, {"grant_type": "client_credentials"}, None)
        if response.status_code in (400, 401, 403):
            raise TransportRefused(
                f"{self.feed_id}: the partner's token endpoint refused our client credentials "
                f"(HTTP {response.status_code}, connection {self.transport.connection})"
            )
        if response.status_code != 200:
            raise self._error(f"token endpoint answered HTTP {response.status_code}")
        try:
            token = response.json()["access_token"]
        except (ValueError, KeyError, TypeError):
            raise self._error("token endpoint sent no access_token") from None
        if not isinstance(token, str) or not token:
            raise self._error("token endpoint sent no access_token")
        return token

    # --- bodies -------------------------------------------------------------------------------

    def _json_body(self, response: Any, number: int) -> dict[str, Any]:
        content_type = response.headers.get("Content-Type", "").lower()
        head = response.content[:64].lstrip().lower()
        if "html" in content_type or head.startswith((b"<!doctype", b"<html", b"<")):
            raise self._error(
                f"sent an HTML page instead of JSON on page {number} (a sign-in page?); nothing was loaded"
            )
        if "json" not in content_type:
            raise self._error(f"sent something other than JSON on page {number}; nothing was loaded")
        try:
            body = json.loads(response.content)
        except (ValueError, UnicodeDecodeError):
            raise self._error(f"sent malformed or truncated JSON on page {number}; nothing was loaded") from None
        if not isinstance(body, dict):
            raise self._error(f"page {number} is not a JSON object")
        records = body.get(self.transport.records_key)
        if not isinstance(records, list):
            if "error" in body or "errors" in body:
                raise self._error(f"sent an error object instead of records on page {number}; nothing was loaded")
            raise self._error(f"page {number} has no list of {self.transport.records_key!r}")
        return body

    def _error(self, what: str) -> TransportError | TransportRefused:
        return TransportError(f"{self.feed_id}: partner API ({self.transport.connection}) {what}")


class _BearerAuth:
    """requests auth that sets ``Authorization: Bearer``; None sends no auth at all (token endpoint)."""

    def __init__(self, token: str):
        self._token = token

    def __call__(self, request: Any) -> Any:
        request.headers["Authorization"] = f"Bearer {self._token}"
        return request


def _reported_total(body: dict[str, Any], previous: int | None) -> int | None:
    for key in TOTAL_KEYS:
        value = body.get(key)
        if isinstance(value, int) and not isinstance(value, bool):
            return value
    return previous


def _retry_after_seconds(value: str | None) -> float | None:
    """``Retry-After`` as seconds: a number, or an HTTP date."""
    if not value:
        return None
    value = value.strip()
    if value.isascii() and value.isdigit():  # str.isdigit and float() also take other scripts' digits
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=dt.UTC)
    return max(0.0, (when - dt.datetime.now(dt.UTC)).total_seconds())


def _origin(url: str) -> tuple[str, str]:
    parts = urlsplit(url)
    return parts.scheme.lower(), parts.netloc.lower()
