"""The API gateway access token, kept between processes.

A script that runs ``enosprov --profile P ...`` once per unit would otherwise ask the gateway for a
new token in every process. :class:`TokenCache` keeps the token of each profile in a small file
of the user cache folder (:func:`enosprov.paths.user_cache_dir`), until shortly before it
expires (``TOKEN_MARGIN`` of :mod:`enosprov.backends.http`).

- One file per key, ``tokens/<key>.json``; the key is a SHA-256 of the profile name, the API
  gateway URL and the access key (never the secret), so two profiles, gateways or service
  accounts never share a token.
- The file holds the token, its expiry (epoch seconds, UTC) and, for whoever looks, the profile
  and gateway URL. Never the app secret. It is written owner-only (0600 where the OS has modes)
  and atomically (a temporary file, then ``os.replace``): concurrent processes each write a whole
  file, the last writer wins.
- A file that is missing, unreadable, partial, corrupt, not ours or too large is ignored (the
  client asks the gateway, as without a cache); a file that cannot be written is not an error.
- ``ENOSPROV_TOKEN_CACHE=0`` turns the cache off for the commands (:func:`default_token_cache`).

Nothing here prints or logs a token.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import sys
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TypeGuard

TOKEN_CACHE_ENV = "ENOSPROV_TOKEN_CACHE"  # "0" (or false, no, off): no token file
TOKENS_FOLDER = "tokens"
FORMAT = 1
MAX_FILE_BYTES = 16_384  # a token file is a few hundred bytes: anything larger is not ours
_OFF = ("0", "false", "no", "off")


def cache_key(profile: str | None, api_url: str, access_key: str) -> str:
    """The key of a token: profile name, API gateway URL and access key, hashed (hex)."""
    text = "\n".join(("enosprov-token", profile or "", api_url.rstrip("/"), access_key))
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


@dataclass(frozen=True)
class CachedToken:
    token: str
    expires_at: float  # epoch seconds

    def __repr__(self) -> str:  # a token is a credential: never in a traceback or a log
        return f"CachedToken(expires_at={self.expires_at})"

    def remaining(self, now: float | None = None) -> float:
        """Seconds left before it expires (negative once expired)."""
        return self.expires_at - (time.time() if now is None else now)


class TokenCache:
    """Access tokens in ``folder/tokens/<key>.json``, shared by the processes of one user."""

    def __init__(self, folder: str | os.PathLike) -> None:
        self.folder = Path(folder)

    def __repr__(self) -> str:
        return f"TokenCache({str(self.folder)!r})"

    def path(self, key: str) -> Path:
        return self.folder / TOKENS_FOLDER / f"{key}.json"

    def load(self, key: str) -> CachedToken | None:
        """The cached token of ``key``, or None (no file, or one that cannot be trusted)."""
        try:
            data = _read_private(self.path(key))
            doc = json.loads(data.decode("utf-8"))
        except (OSError, ValueError):
            return None
        if not isinstance(doc, dict) or doc.get("format") != FORMAT or doc.get("key") != key:
            return None
        token, expires_at = doc.get("accessToken"), doc.get("expiresAt")
        if not isinstance(token, str) or not token or not _is_number(expires_at):
            return None
        return CachedToken(token, float(expires_at))

    def save(
        self,
        key: str,
        token: str,
        expires_at: float,
        *,
        profile: str | None = None,
        api_url: str | None = None,
    ) -> bool:
        """Keep ``token`` for ``key`` (replacing any); False when it could not be written."""
        from .atomic import write_bytes
        from .domain.errors import EnosprovError

        doc = {
            "format": FORMAT,
            "key": key,
            "profile": profile,
            "apiUrl": api_url,
            "accessToken": token,
            "expiresAt": round(expires_at, 3),
            "savedAt": round(time.time(), 3),
        }
        data = json.dumps(doc, ensure_ascii=True, indent=1).encode("ascii") + b"\n"
        try:
            folder = self.path(key).parent
            _private_folder(folder)
            write_bytes(self.path(key), data, private=True)
        except (OSError, EnosprovError):
            return False  # a cache: the token still works for this process
        return True

    def forget(self, key: str) -> None:
        """Remove the cached token of ``key`` (nothing when there is none)."""
        with contextlib.suppress(OSError):
            self.path(key).unlink()


def _is_number(value: object) -> TypeGuard[int | float]:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and value == value


def _read_private(path: Path) -> bytes:
    """The bytes of ``path``; OSError when it is not a regular file of this user that only this
    user may read and write (POSIX), or larger than a token file can be."""
    flags = os.O_RDONLY | getattr(os, "O_BINARY", 0) | getattr(os, "O_NOFOLLOW", 0)
    fd = os.open(path, flags)
    try:
        st = os.fstat(fd)
        if not _is_regular(st.st_mode) or st.st_size > MAX_FILE_BYTES:
            raise OSError("not a token file")
        if sys.platform != "win32" and hasattr(os, "getuid"):
            if st.st_uid != os.getuid() or st.st_mode & 0o077:
                raise OSError("a token file others may read or write")
        with os.fdopen(fd, "rb") as fh:
            fd = -1
            return fh.read(MAX_FILE_BYTES + 1)
    finally:
        if fd >= 0:
            os.close(fd)


def _is_regular(mode: int) -> bool:
    import stat

    return stat.S_ISREG(mode)


def _private_folder(folder: Path) -> None:
    """Create ``folder`` (and its parents) if needed; the folder itself owner-only on POSIX."""
    if folder.is_dir():
        return
    folder.parent.mkdir(parents=True, exist_ok=True)
    with contextlib.suppress(FileExistsError):
        folder.mkdir(mode=0o700)


def token_cache_enabled(env: Mapping[str, str] = os.environ) -> bool:
    """False when ``$ENOSPROV_TOKEN_CACHE`` turns the cache off (0, false, no, off)."""
    return env.get(TOKEN_CACHE_ENV, "").strip().lower() not in _OFF


def default_token_cache(env: Mapping[str, str] = os.environ) -> TokenCache | None:
    """The token cache of the commands: the user cache folder, or None when turned off."""
    if not token_cache_enabled(env):
        return None
    from .paths import user_cache_dir

    return TokenCache(user_cache_dir(env))
