"""partnerflow's error types, by what should happen next.

- ``PartnerDataError``: the partner's file or data is at fault. The file is rejected with a report and the
  partner is told; retrying the task cannot change the answer.
- ``TerminalError``: someone must act (a configuration, a key, a credential, a contract). Retrying cannot
  help, so the task fails at once and the alert says who must act.
- ``TransientError``: the world may be different in a minute (a network blip, a busy table). The task's
  retries with backoff apply.

Every partnerflow exception derives from one of them, so a caller (the DAGs' retry policy, the CLI) can
decide by type, not by message.
"""

from __future__ import annotations


class PartnerflowError(Exception):
    """The base of every error partnerflow raises on purpose."""


class PartnerDataError(PartnerflowError):
    """The partner's data is at fault: reject the file, tell the partner, do not retry."""


class TerminalError(PartnerflowError):
    """Someone must act before this can work: fail at once, no retries.

    ``partner_must_act``: the partner, not the data team, must act (e.g. give us access again); the alert
    then names the partner's contact. Otherwise (a connection, a credential, a setting) the data team acts.
    """

    partner_must_act: bool = False


class TransientError(PartnerflowError):
    """May succeed later by itself: retry with backoff."""
