"""The plant database: connecting to PostgreSQL (docs/plant-database.md).

Connection URLs are libpq's (``postgresql://USER@HOST:PORT/DB?sslmode=verify-full``, or
``postgresql:///DB?service=plant`` for a service file entry). A password belongs in the
environment (``PGPASSWORD``), ``~/.pgpass`` (``PGPASSFILE``) or a service file, not in the URL;
one given in the URL still works, and is never printed: :func:`redact` is applied to every URL
and every error message this module lets out. TLS is libpq's: ``sslmode``, ``sslrootcert``...
in the URL or the ``PG*`` environment.

psycopg 3 is an optional dependency (``pip install 'enosprov[postgres]'``), imported only when a
PostgreSQL URL is used: the SQLite store never loads it.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qsl, urlsplit

from .domain.errors import AuthError, BackendUnavailableError, InvalidArgumentError

if TYPE_CHECKING:
    import psycopg

SCHEMES = ("postgresql://", "postgres://")
HIDDEN = "***"
INSTALL_HINT = "install the PostgreSQL extra: pip install 'enosprov[postgres]'"

# user:password@ in the authority part, and password=... as a URL query or a libpq keyword
_AUTH_PASSWORD = re.compile(r"(?P<head>://[^:/?#@\s]*):(?P<pw>[^@/?#\s]*)@")
_QUERY_PASSWORD = re.compile(r"(?P<head>[?&\s]password=)(?P<pw>[^&\s]*)", re.IGNORECASE)


def is_database_url(text: str | os.PathLike | None) -> bool:
    """Whether ``text`` names a PostgreSQL database rather than a store file."""
    return isinstance(text, str) and text.lower().startswith(SCHEMES)


def redact(text: str) -> str:
    """``text`` with every password of a connection URL (or ``password=`` keyword) replaced."""
    text = _AUTH_PASSWORD.sub(lambda m: f"{m['head']}:{HIDDEN}@", text)
    return _QUERY_PASSWORD.sub(lambda m: f"{m['head']}{HIDDEN}", text)


def has_password(url: str) -> bool:
    """``url`` carries a password itself (user:password@, or ?password=)."""
    parts = urlsplit(url)
    return bool(parts.password) or "password" in dict(parse_qsl(parts.query))


def password_source(url: str, env: Mapping[str, str] | None = None) -> str:
    """Where libpq takes the password from for ``url``, never the password: "URL" (works, but
    shows in shell history: prefer the others), "PGPASSWORD", "password file" (``PGPASSFILE``
    or ~/.pgpass, when it exists), "service file", or "none" (trust, peer or certificate
    authentication)."""
    env = os.environ if env is None else env
    query = dict(parse_qsl(urlsplit(url).query))
    if has_password(url):
        return "URL"
    if env.get("PGPASSWORD"):
        return "PGPASSWORD"
    passfile = query.get("passfile") or env.get("PGPASSFILE") or str(Path.home() / ".pgpass")
    if Path(passfile).is_file():
        return "password file"
    if query.get("service") or env.get("PGSERVICE"):
        return "service file"
    return "none"


def describe(url: str, env: Mapping[str, str] | None = None) -> dict[str, Any]:
    """What `enosprov info` shows of a database URL: where it points and how it authenticates,
    never a password."""
    parts = urlsplit(url)
    query = dict(parse_qsl(parts.query))
    return {
        "url": redact(url),
        "host": query.get("host") or parts.hostname or "(local socket)",
        "port": query.get("port") or parts.port or 5432,
        "database": parts.path.lstrip("/") or query.get("dbname") or "(the user's)",
        "user": parts.username or query.get("user") or "(the OS user)",
        "sslmode": query.get("sslmode") or (env or os.environ).get("PGSSLMODE") or "prefer",
        "password": password_source(url, env),
    }


def connect(url: str, *, connect_timeout: float = 10, **kwargs: Any) -> psycopg.Connection:
    """A psycopg connection to ``url``; errors are enosprov errors with the URL redacted:
    InvalidArgumentError without psycopg or for a malformed URL, AuthError when the server
    refuses the credentials, BackendUnavailableError when it cannot be reached."""
    if not is_database_url(url):
        raise InvalidArgumentError(
            f"{redact(str(url))!r} is not a PostgreSQL URL",
            hint="postgresql://USER@HOST:5432/DATABASE (password in PGPASSWORD or ~/.pgpass)",
        )
    try:
        import psycopg
    except ImportError:
        raise InvalidArgumentError(
            "the PostgreSQL store needs psycopg, which is not installed", hint=INSTALL_HINT
        ) from None
    try:
        return psycopg.connect(
            url, connect_timeout=max(1, round(connect_timeout)), application_name="enosprov",
            **kwargs,
        )  # fmt: skip
    except psycopg.ProgrammingError as exc:  # a malformed URL or option
        raise InvalidArgumentError(
            f"cannot use the database URL {redact(url)}: {redact(_first_line(exc))}",
            hint="postgresql://USER@HOST:5432/DATABASE?sslmode=verify-full",
        ) from None
    except psycopg.OperationalError as exc:
        text = redact(_first_line(exc))
        where = describe(url)
        target = f"{where['user']}@{where['host']}:{where['port']}/{where['database']}"
        if "invalid" in text.lower() and ("value" in text.lower() or "option" in text.lower()):
            raise InvalidArgumentError(
                f"cannot use the database URL {redact(url)}: {text}",
                hint="see libpq's connection parameters (sslmode: disable, require, "
                "verify-ca, verify-full...)",
            ) from None
        if _auth_failure(text):
            raise AuthError(
                f"PostgreSQL refused {target}: {text}",
                hint="check the role and its password (PGPASSWORD, ~/.pgpass or a service "
                f"file; password taken from: {where['password']})",
            ) from None
        raise BackendUnavailableError(
            f"PostgreSQL could not be reached at {target}: {text}",
            hint="check the host, port, sslmode and that the server runs; retrying is safe",
        ) from None


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def _auth_failure(text: str) -> bool:
    lowered = text.lower()
    return any(
        m in lowered
        for m in ("password authentication failed", "no password supplied", "role", "pg_hba")
    )
