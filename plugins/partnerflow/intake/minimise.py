"""Data minimisation at intake (docs/personal-data.md): what leaves this module is all partnerflow ever stores.

Identifiers become keyed pseudonyms (HMAC-SHA256 with a secret key, never a plain hash), dates of birth
become the first of the month, postcodes become sectors, and dropped columns are never read further.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import os
import re
from collections.abc import Callable

from partnerflow.core.errors import TerminalError

KEY_ENV = "PARTNERFLOW_PSEUDONYM_KEY"
MIN_KEY_BYTES = 32
POSTCODE = re.compile(r"^([A-Z]{1,2}[0-9][A-Z0-9]?)\s*([0-9])[A-Z]{2}$")


class MinimisationError(ValueError):
    """A value could not be minimised; intake fails closed and loads nothing of the file."""


class PseudonymKeyMissing(TerminalError):
    """No pseudonymisation key is configured: nothing may be loaded."""


def pseudonym_key() -> bytes:
    """The secret key from ``PARTNERFLOW_PSEUDONYM_KEY`` (hex, at least 32 bytes)."""
    raw = os.environ.get(KEY_ENV, "")
    try:
        key = bytes.fromhex(raw)
    except ValueError:
        key = b""
    if len(key) < MIN_KEY_BYTES:
        raise PseudonymKeyMissing(
            f"{KEY_ENV} must hold a secret of at least {MIN_KEY_BYTES} bytes, hex-encoded; "
            "refusing to load identifiable data without it"
        )
    return key


def pseudonymise(key: bytes, namespace: str, value: str) -> str:
    """A stable keyed pseudonym; the same identifier in the same namespace always maps to the same value."""
    normalised = value.strip().upper()
    return hmac.new(key, f"{namespace}:{normalised}".encode(), hashlib.sha256).hexdigest()


class Pseudonymiser:
    """``pseudonymise`` with the key bound once, for the millions of values of a large file.

    ``for_namespace`` gives a function of the value alone: the same pseudonyms as ``pseudonymise``, with the
    key and namespace absorbed into HMAC's inner and outer SHA-256 states once (RFC 2104), so each value costs
    two state copies instead of a full HMAC set-up.
    """

    def __init__(self, key: bytes):
        if len(key) < MIN_KEY_BYTES:
            raise PseudonymKeyMissing(f"a pseudonym key must be at least {MIN_KEY_BYTES} bytes")
        block = hashlib.sha256().block_size
        padded = (hashlib.sha256(key).digest() if len(key) > block else key).ljust(block, b"\0")
        self._inner = hashlib.sha256(bytes(b ^ 0x36 for b in padded))
        self._outer = hashlib.sha256(bytes(b ^ 0x5C for b in padded))
        self._nhs_number = self.for_namespace("nhs_number")  # runs for every NHS number of a file

    def __call__(self, namespace: str, value: str) -> str:
        return self.for_namespace(namespace)(value)

    def for_namespace(self, namespace: str) -> Callable[[str], str]:
        inner, outer = self._inner.copy(), self._outer
        inner.update(f"{namespace}:".encode())

        def pseudonym(value: str) -> str:
            step = inner.copy()
            step.update(value.strip().upper().encode())
            last = outer.copy()
            last.update(step.digest())
            return last.hexdigest()

        return pseudonym

    def nhs_number(self, value: str) -> str:
        """The pseudonym of a check-digit-valid NHS number; raises MinimisationError for any other value."""
        return self._nhs_number(nhs_number_digits(value))


def nhs_number_valid(value: str) -> bool:
    """Whether ``value`` is an NHS number: ten ASCII digits whose modulus 11 check digit is right (a check
    digit of 10 means no number), and not one digit ten times.

    Every repeated digit (0000000000, 1111111111, … 9999999999) passes the modulus 11 check, yet none is
    ever issued: they are placeholders that would pseudonymise to one child shared by every record that
    holds one. Allocation ranges are deliberately not checked: Scottish CHI and Northern Irish H&C numbers
    share the scheme and turn up in English health records, and partners test with the 999 range.
    """
    digits = value.replace(" ", "").replace("-", "")
    if len(digits) != 10 or not digits.isdigit() or not digits.isascii():
        return False
    if digits == digits[0] * 10:
        return False
    total = sum(int(d) * w for d, w in zip(digits[:9], range(10, 1, -1), strict=True))
    check = 11 - total % 11
    check = 0 if check == 11 else check
    return check != 10 and check == int(digits[9])


def nhs_number_digits(value: str) -> str:
    """The ten digits of a valid NHS number written with or without spaces or hyphens; else MinimisationError."""
    if not nhs_number_valid(value):
        raise MinimisationError("not a valid NHS number")
    return value.replace(" ", "").replace("-", "")


def month_only(day: dt.date) -> dt.date:
    return day.replace(day=1)


def postcode_sector(value: str) -> str:
    """``AB1 2CD`` -> ``AB1 2``; raises MinimisationError when the value is not a full UK postcode."""
    match = POSTCODE.match(value.strip().upper())
    if not match:
        raise MinimisationError("not a full UK postcode")
    return f"{match[1]} {match[2]}"
