"""The Redis broker the Celery tests run on: CI's at 127.0.0.1:6379, else one started from ``redis-server``.

Without either, the tests skip outside CI, and say so loudly (a red line in the terminal and a warning in
the summary); with ``CI=true`` they fail instead, so CI never passes without having run them.
"""

from __future__ import annotations

import contextlib
import os
import warnings
from collections.abc import Iterator

import pytest

from partnerflow_dev.redis_server import RedisServer, RedisUnavailable


def in_ci() -> bool:
    return os.environ.get("CI", "").strip().lower() in ("true", "1", "yes")


def skip_loudly_unless_ci(request: pytest.FixtureRequest, reason: str) -> None:
    """Fail under CI=true; elsewhere print ``reason`` in red, warn, and skip."""
    if in_ci():
        pytest.fail(f"CI=true, so this test may not skip: {reason}", pytrace=False)
    message = f"SKIPPED, NOT TESTED: the Celery tests need Redis. {reason}"
    reporter = request.config.pluginmanager.get_plugin("terminalreporter")
    capture = request.config.pluginmanager.get_plugin("capturemanager")
    if reporter is not None:
        with capture.global_and_fixture_disabled() if capture is not None else contextlib.nullcontext():
            reporter.write_line("")
            reporter.write_line(f"!!! {message}", red=True, bold=True)
    warnings.warn(message, stacklevel=1)
    pytest.skip(message)


@pytest.fixture(scope="module")
def redis_url(request: pytest.FixtureRequest) -> Iterator[str]:
    """A Redis URL for one test module's Celery broker."""
    server = RedisServer()
    unavailable = None
    try:
        server.start()
    except RedisUnavailable as error:
        unavailable = str(error)
    if unavailable is not None:
        skip_loudly_unless_ci(request, unavailable)
    try:
        yield server.url
    finally:
        server.stop()
