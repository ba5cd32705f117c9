"""Identifiers and secrets, all drawn from the operating system's CSPRNG (``secrets``)."""

from __future__ import annotations

import secrets
import string

_ALNUM = string.ascii_letters + string.digits


def _alnum(length: int) -> str:
    return "".join(secrets.choice(_ALNUM) for _ in range(length))


def system_sn() -> str:
    """A system SN: 16 lowercase hex digits (64 random bits)."""
    return secrets.token_hex(8)


def system_sns(count: int) -> list[str]:
    """``count`` system SNs for one batch: a random 40-bit prefix and a 24-bit sequence.

    Consecutive keys keep the store's index inserts local (random keys cost ~35 % more per
    batch). System SNs identify, they authenticate nothing; a clash of prefixes is caught by
    the store's primary key and the batch retried with a new prefix.
    """
    if count > 1 << 24:
        raise ValueError("at most 16,777,216 system SNs per batch")
    prefix = secrets.token_hex(5)
    return [f"{prefix}{i:06x}" for i in range(count)]


def group_id() -> str:
    """A registration group ID when the user gives none: 'g' + 12 hex digits."""
    return "g" + secrets.token_hex(6)


def group_secret() -> str:
    """A group secret: 32 letters and digits (about 190 bits)."""
    return _alnum(32)


def device_key() -> str:
    """An EnOS deviceKey: 16 letters and digits (inside the 4-64 [A-Za-z0-9._-] rule)."""
    return _alnum(16)


def device_secret() -> str:
    """An EnOS deviceSecret: 20 letters and digits."""
    return _alnum(20)
