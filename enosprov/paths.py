"""The per-user folders of enosprov on each OS (no other enosprov import: the journal, the
token cache and the settings all read them)."""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping
from pathlib import Path

CACHE_ENV = "ENOSPROV_CACHE_DIR"  # the cache folder (API tokens), over the per-OS default


def user_data_dir(env: Mapping[str, str] = os.environ) -> Path:
    """The per-user data folder: %LOCALAPPDATA%, ~/Library/Application Support or XDG_DATA_HOME."""
    if sys.platform == "win32":
        base = env.get("LOCALAPPDATA") or str(Path.home() / "AppData" / "Local")
        return Path(base) / "enosprov"
    if sys.platform == "darwin":
        return Path.home() / "Library" / "Application Support" / "enosprov"
    base = env.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(base) / "enosprov"


def user_config_dir(env: Mapping[str, str] = os.environ) -> Path:
    """The per-user config folder: %APPDATA%, ~/Library/Application Support or XDG_CONFIG_HOME."""
    if sys.platform == "win32":
        base = env.get("APPDATA") or str(Path.home() / "AppData" / "Roaming")
        return Path(base) / "enosprov"
    if sys.platform == "darwin":
        return Path.home() / "Library" / "Application Support" / "enosprov"
    base = env.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(base) / "enosprov"


def user_cache_dir(env: Mapping[str, str] = os.environ) -> Path:
    """The per-user cache folder (what may be lost at any time): ``$ENOSPROV_CACHE_DIR``, else
    %LOCALAPPDATA%\\enosprov\\Cache, ~/Library/Caches/enosprov or $XDG_CACHE_HOME/enosprov."""
    if env.get(CACHE_ENV):
        return Path(env[CACHE_ENV])
    if sys.platform == "win32":
        base = env.get("LOCALAPPDATA") or str(Path.home() / "AppData" / "Local")
        return Path(base) / "enosprov" / "Cache"
    if sys.platform == "darwin":
        return Path.home() / "Library" / "Caches" / "enosprov"
    base = env.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "enosprov"
