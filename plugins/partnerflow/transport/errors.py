"""What can go wrong reading a partner's server, by whether retrying can help. No values inside."""

from __future__ import annotations

from partnerflow.core.errors import TerminalError, TransientError


class TransportError(TransientError):
    """The partner's server could not be read now (network, timeout, a bad page); retried by Airflow."""


class TransportRefused(TerminalError):
    """The partner's server or we refused the connection (host key, credentials): someone has to act."""


class PartnerRefused(TransportRefused):
    """The partner's server refuses us something only the partner can grant (HTTP 403): the partner must act."""

    partner_must_act = True
