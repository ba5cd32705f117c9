"""How messages name things: short lists that stay readable on a factory terminal."""

from __future__ import annotations

from collections.abc import Sequence


def names(items: Sequence[str], limit: int = 10) -> str:
    """``a, b, c and 7 more``."""
    shown = ", ".join(items[:limit])
    return shown + (f" and {len(items) - limit} more" if len(items) > limit else "")
