"""Who may open the Submissions page and its JSON: Airflow's auth manager decides, on partnerflow's permission.

The permission is ``can_read`` on the custom view ``Partnerflow Submissions``. Every route of the plugin's app
depends on :func:`requires_submissions_access`, which asks the configured auth manager through its supported
API, ``is_authorized_custom_view(method="GET", resource_name=RESOURCE, user=...)``:

- **FAB auth manager** (the compose deployment): a user has it when one of their roles holds
  ``can_read`` on ``Partnerflow Submissions``. :func:`grant_fab_permission` (run by ``airflow-init``:
  ``python -m partnerflow.airflow.access``) creates the permission and gives it to ``Admin`` and ``Op``; any
  other role gets it with ``airflow roles add-perms ROLE -r "Partnerflow Submissions" -a can_read``.
- **SimpleAuthManager** (the demo and tests): it has roles, not permissions, and admits every role, viewer
  included, to every custom view. Here the page also needs the ``OP`` or ``ADMIN`` role
  (``AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS=officer:OP``).

A signed-in user without it gets 403; a request without a valid token 401 (Airflow's own ``get_user``).

Pitfalls:
    Nothing heavy at the top: this module is imported by the plugin, which every Airflow component imports.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from airflow.api_fastapi.auth.managers.base_auth_manager import BaseAuthManager
    from airflow.api_fastapi.auth.managers.models.base_user import BaseUser

RESOURCE = "Partnerflow Submissions"
"""The custom view's name, as FAB lists it under Security > Permissions."""
FAB_ACTION = "can_read"
"""FAB's name for the GET method (``get_fab_action_from_method_map``)."""
DEFAULT_FAB_ROLES = ("Admin", "Op")
SIMPLE_MINIMUM_ROLE = "OP"


def is_allowed(manager: BaseAuthManager[Any], user: BaseUser) -> bool:
    """Whether ``user`` may read the Submissions page and its JSON, as the configured auth manager says."""
    if not manager.is_authorized_custom_view(method="GET", resource_name=RESOURCE, user=user):
        return False
    from airflow.api_fastapi.auth.managers.simple.simple_auth_manager import (
        SimpleAuthManager,
        SimpleAuthManagerRole,
    )

    if isinstance(manager, SimpleAuthManager):
        # SimpleAuthManager grants every custom view to every role; the page holds partners' returns.
        role = (getattr(user, "role", None) or "").upper()
        known = SimpleAuthManagerRole.__members__
        return role in known and known[role].order >= known[SIMPLE_MINIMUM_ROLE].order
    return True


def requires_submissions_access() -> Callable[..., None]:
    """A FastAPI dependency: 401 without a valid Airflow token, 403 without partnerflow's permission."""
    from airflow.api_fastapi.app import get_auth_manager
    from airflow.api_fastapi.core_api.security import get_user
    from fastapi import Depends, HTTPException, status

    # Not the ``GetUserDep`` alias: this module's annotations are strings that FastAPI resolves in its globals.
    signed_in_user = Depends(get_user)

    def inner(user: Any = signed_in_user) -> None:
        if not is_allowed(get_auth_manager(), user):
            raise HTTPException(
                status.HTTP_403_FORBIDDEN,
                f"Forbidden: the Submissions page needs the {FAB_ACTION} permission on {RESOURCE!r}"
                " (or the Admin or Op role)",
            )

    return inner


def grant_fab_permission(roles: Sequence[str] = DEFAULT_FAB_ROLES) -> list[str]:
    """Create ``can_read`` on ``Partnerflow Submissions`` in FAB's tables and give it to ``roles``.

    Safe to repeat. Returns the roles that hold it afterwards. Raises ``LookupError`` for a role FAB does not
    know (create it first: ``airflow roles create NAME``).
    """
    from airflow.providers.fab.auth_manager.cli_commands.utils import get_application_builder

    with get_application_builder() as appbuilder:
        security = appbuilder.sm
        missing = [name for name in roles if security.find_role(name) is None]
        if missing:
            raise LookupError(f"no such Airflow role: {', '.join(missing)}")
        permission = security.create_permission(FAB_ACTION, RESOURCE)
        for name in roles:
            security.add_permission_to_role(security.find_role(name), permission)
        return [name for name in roles if permission in security.find_role(name).permissions]


def fab_is_configured() -> bool:
    from airflow.configuration import conf

    return conf.get("core", "auth_manager").rsplit(".", 1)[-1] == "FabAuthManager"


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m partnerflow.airflow.access [ROLE ...]``: register the permission with the FAB auth manager."""
    parser = argparse.ArgumentParser(
        prog="python -m partnerflow.airflow.access",
        description=(
            f"Create the {FAB_ACTION} permission on {RESOURCE!r} in the FAB auth manager's tables and grant it"
            " to the given roles (default: Admin Op). Safe to repeat; run after `airflow db migrate`."
            " Exit codes: 0 done or nothing to do (another auth manager), 1 an unknown role."
        ),
        epilog='Example: python -m partnerflow.airflow.access Admin Op "Performance officer"',
    )
    parser.add_argument("roles", nargs="*", default=list(DEFAULT_FAB_ROLES), metavar="ROLE")
    args = parser.parse_args(argv)
    if not fab_is_configured():
        print(
            "Nothing to do: Airflow's auth manager is not FAB. With SimpleAuthManager, users with the OP or"
            " ADMIN role see the Submissions page."
        )
        return 0
    try:
        holders = grant_fab_permission(args.roles)
    except LookupError as exc:
        print(f"{exc}; create it with `airflow roles create NAME` first.")
        return 1
    print(f"{FAB_ACTION} on {RESOURCE!r} is held by: {', '.join(holders)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
