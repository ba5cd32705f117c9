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
