"""What can go wrong reading a partner's server, by whether retrying can help. No values inside."""

from __future__ import annotations

from partnerflow.core.errors import TerminalError, TransientError


class TransportError(TransientError):
    """The partner's server could not be read now (network, timeout, a bad page); retried by Airflow."""


class TransportRefused(TerminalError):
    """The partner's server or we refused the connection (host key, credentials): someone has to act."""
