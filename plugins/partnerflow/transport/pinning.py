"""The host-key pin every SFTP connection must carry, checked before anything connects.

partnerflow logs in to a partner's server only if the Airflow connection pins the server's host key in
its ``host_key`` extra. Nothing else counts: not ``~/.ssh/known_hosts`` (the provider's hooks would read
it when no key is pinned), not a ``known_hosts`` extra, and never ``no_host_key_check`` or
``allow_host_key_change`` (the provider would then accept whatever key the server shows). The fetch
(``transport.sftp``), the arrival watcher (``transport.arrival``) and ``partnerflow check-config`` all ask
``pin_problem`` first and refuse with ``HOW_TO_PIN``.

Pitfalls:
    Extras come from the connection as strings or JSON values: ``"true"``, ``true`` and ``"True"`` all
    switch a check off in the provider, so every truthy spelling is refused here.
    The message never repeats the extra's values (a key line is harmless, but a mistyped extra may hold
    anything).
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Mapping
from typing import Any
from urllib.parse import parse_qsl, urlsplit

from partnerflow.transport.errors import TransportRefused

KEY_TYPES = ("ssh-ed25519", "ecdsa-sha2-nistp256", "ecdsa-sha2-nistp384", "ecdsa-sha2-nistp521", "ssh-rsa")
SWITCHES_OFF = ("no_host_key_check", "ignore_hostkey_verification", "allow_host_key_change")

HOW_TO_PIN = (
    "To pin it: run `ssh-keyscan -t ed25519 HOST` (add `-p PORT` for another port) from a trusted network, "
    "compare the key's fingerprint (`ssh-keygen -lf FILE`) with the one the partner gives you out of band "
    "(by phone or a signed e-mail), then put the key line, e.g. `ssh-ed25519 AAAA...`, in the connection's "
    "`host_key` extra"
)


class HostKeyNotPinned(TransportRefused):
    """The connection does not pin the server's host key, or switches the check off: nothing connects."""


def pin_problem(extra: Mapping[str, Any] | None) -> str | None:
    """What is wrong with a connection's host-key settings (``extra``), or None if the key is pinned."""
    extra = extra or {}
    switched = [name for name in SWITCHES_OFF if _truthy(extra.get(name))]
    if switched:
        return f"its {' and '.join(switched)} extra switches the host-key check off, which partnerflow never allows"
    host_key = extra.get("host_key")
    if host_key is None or not str(host_key).strip():
        return "it does not pin the server's host key (no host_key extra); ~/.ssh/known_hosts is never used"
    parts = str(host_key).split()
    if len(parts) < 2 or parts[0] not in KEY_TYPES:
        return "its host_key extra is not a key line `TYPE BASE64` with TYPE one of " + ", ".join(KEY_TYPES)
    try:
        base64.b64decode(parts[1], validate=True)
    except (binascii.Error, ValueError):
        return "its host_key extra's key data is not base64"
    return None


def require_pin(conn_id: str, extra: Mapping[str, Any] | None, *, feed_id: str | None = None) -> None:
    """Raise ``HostKeyNotPinned`` (terminal) unless ``extra`` pins the host key and leaves the check on."""
    problem = pin_problem(extra)
    if problem:
        where = f"{feed_id}: SFTP connection {conn_id}" if feed_id else f"SFTP connection {conn_id}"
        raise HostKeyNotPinned(f"{where} was refused before connecting: {problem}. {HOW_TO_PIN}")


def connection_extra_from_env(value: str) -> dict[str, Any]:
    """The extras of an ``AIRFLOW_CONN_<ID>`` value, in JSON form or URI form (``sftp://u@h:22?host_key=...``).

    Raises ValueError when neither form can be read.
    """
    text = value.strip()
    if text.startswith("{"):
        document = json.loads(text)
        extra = document.get("extra") or {}
        if isinstance(extra, str):
            extra = json.loads(extra) if extra.strip() else {}
        if not isinstance(extra, dict):
            raise ValueError("the connection's extra is not an object")
        return extra
    parts = urlsplit(text)
    if not parts.scheme:
        raise ValueError("neither JSON nor a connection URI")
    query = dict(parse_qsl(parts.query, keep_blank_values=True))
    if "__extra__" in query:
        extra = json.loads(query["__extra__"])
        if not isinstance(extra, dict):
            raise ValueError("the connection's __extra__ is not an object")
        return extra
    return query


def _truthy(value: object) -> bool:
    return value is True or str(value).strip().lower() in ("true", "1", "yes", "on")
