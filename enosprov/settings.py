"""Where the store lives, resolved once: ``--store`` over ``ENOSPROV_STORE`` over the user data folder."""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

STORE_ENV = "ENOSPROV_STORE"
STORE_FILENAME = "store.db"


def user_data_dir(env: Mapping[str, str] = os.environ) -> Path:
    """The per-user data folder: %LOCALAPPDATA%, ~/Library/Application Support or XDG_DATA_HOME."""
    if sys.platform == "win32":
        base = env.get("LOCALAPPDATA") or str(Path.home() / "AppData" / "Local")
        return Path(base) / "enosprov"
    if sys.platform == "darwin":
        return Path.home() / "Library" / "Application Support" / "enosprov"
    base = env.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(base) / "enosprov"


@dataclass(frozen=True)
class Settings:
    store: Path
    store_source: str  # "--store", "ENOSPROV_STORE" or "default"

    @classmethod
    def resolve(cls, store: str | os.PathLike | None = None, env: Mapping[str, str] = os.environ):
        if store:
            return cls(Path(store), "--store")
        if env.get(STORE_ENV):
            return cls(Path(env[STORE_ENV]), STORE_ENV)
        return cls(user_data_dir(env) / STORE_FILENAME, "default")

    def create_backend(self):
        """The backend these settings select (the local store until profiles exist)."""
        from .backends.local import LocalBackend

        return LocalBackend(self.store)
