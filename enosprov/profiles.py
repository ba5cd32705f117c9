"""Configuration profiles: how to reach a real EnOS OU, kept in a TOML file in the config folder.

The file (``ENOSPROV_CONFIG``, else ``config.toml`` in the per-user config folder)::

    current = "prod-eu"                       # the selected profile, optional
    [profiles.prod-eu]
    api_url = "https://apim-eu2.envisioniot.com"
    org_id = "o15000000000001"
    access_key = "AK..."
    secret = { env = "ENOS_APP_SECRET" }      # or { file = "~/secrets/enos.txt" } or a string
    dps_url = "https://iot-dps-eu2.envisioniot.com"
    workers = 16                              # optional, and so are the three below
    max_requests_per_second = 20
    timeout = 30
    retries = 5
    [profiles.prod-eu.groups.meters-eu]      # registration groups known to enosprov
    name = "Smart meters EU"                  # every key of a group is optional
    secret = { env = "METERS_GROUP_SECRET" }
    masterdata = "masterdata/meters.toml"     # relative to the config file
    product_key = "pk1"
    sign_scheme = "sn-ts-secret"
    sn_pattern = "^MTR-[0-9]{4}-[0-9]{6}$"
    timezone = "+01:00"                       # default timezone of its devices (burn export)
    [stores.plant]                            # a named store (--store plant), PostgreSQL
    url = "postgresql://station@db.plant.example/enosprov?sslmode=verify-full"

Secrets are referenced, not copied: an environment variable or a file (relative paths are
relative to the config file). A secret stored in the file itself (``inline``) is allowed but
makes :func:`save` write the file owner-only and emit an :class:`InlineSecretWarning`.
Nothing here prints, and :func:`describe` never returns a secret value, only where it comes from.
"""

from __future__ import annotations

import math
import os
import re
import sys
import warnings
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path

from .backends.enos_config import (
    DEFAULT_MAX_RPS,
    DEFAULT_RETRIES,
    DEFAULT_TIMEOUT,
    DEFAULT_WORKERS,
    EnosConfig,
    GroupConfig,
)
from .domain.errors import ConflictError, InputFileError, InvalidArgumentError, NotFoundError
from .paths import user_config_dir
from .plantdb import is_database_url, redact

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    # a dependency on Python < 3.11 only: mypy checks this branch (python_version 3.10) where
    # it may not be installed
    import tomli as tomllib  # type: ignore[import-not-found, unused-ignore]

CONFIG_ENV = "ENOSPROV_CONFIG"
PROFILE_ENV = "ENOSPROV_PROFILE"
CONFIG_FILENAME = "config.toml"

PROFILE_NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")
ENV_NAME_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")

_TOP_KEYS = ("current", "profiles", "stores")
_PROFILE_KEYS = (
    "api_url",
    "org_id",
    "access_key",
    "secret",
    "dps_url",
    "workers",
    "max_requests_per_second",
    "timeout",
    "retries",
    "groups",
    "journal",
    "proxy",
    "ca_bundle",
)
_GROUP_KEYS = (
    "name",
    "secret",
    "masterdata",
    "product_key",
    "sign_scheme",
    "sn_pattern",
    "timezone",
)
_GROUP_TEXT_KEYS = ("name", "masterdata", "product_key", "sign_scheme", "sn_pattern", "timezone")

_HEADER = (
    "# enosprov configuration profiles: see `enosprov config --help`.\n"
    "# enosprov rewrites this file when a `config` command changes it; comments are not kept.\n"
)


class InlineSecretWarning(UserWarning):
    """A secret is stored in the config file itself (the file is then written owner-only)."""


def config_path(env: Mapping[str, str] = os.environ) -> Path:
    """The config file: ``ENOSPROV_CONFIG`` if set, else ``config.toml`` in the config folder."""
    if env.get(CONFIG_ENV):
        return Path(env[CONFIG_ENV]).expanduser()
    return user_config_dir(env) / CONFIG_FILENAME


# --------------------------------------------------------------------------- secrets


@dataclass(frozen=True)
class SecretRef:
    """Where a secret comes from: exactly one of an environment variable, a file, or inline."""

    env: str | None = None
    file: str | None = None
    value: str | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        if sum(x is not None for x in (self.env, self.file, self.value)) != 1:
            raise InvalidArgumentError("a secret needs exactly one source: env, file or a value")
        if self.env is not None and not ENV_NAME_RE.fullmatch(self.env):
            raise InvalidArgumentError(f"{self.env!r} is not an environment variable name")
        if self.file is not None and not self.file.strip():
            raise InvalidArgumentError("a secret file path cannot be empty")
        if self.value is not None and not self.value.strip():
            raise InvalidArgumentError("a secret cannot be empty")

    @classmethod
    def from_env(cls, var: str) -> SecretRef:
        return cls(env=var)

    @classmethod
    def from_file(cls, path: str | os.PathLike) -> SecretRef:
        return cls(file=str(path))

    @classmethod
    def inline(cls, value: str) -> SecretRef:
        return cls(value=value.strip())

    @property
    def kind(self) -> str:
        return "env" if self.env is not None else "file" if self.file is not None else "inline"

    def to_toml(self):
        if self.env is not None:
            return {"env": self.env}
        if self.file is not None:
            return {"file": self.file}
        return self.value

    def file_path(self, base: Path) -> Path:
        """The secret file; a relative path is relative to the config file's folder."""
        assert self.file is not None
        path = Path(self.file).expanduser()
        return path if path.is_absolute() else base / path

    def source(self, base: Path, env: Mapping[str, str] = os.environ) -> str:
        """Where the secret comes from, for display: never the secret itself."""
        if self.env is not None:
            return f"env:{self.env} ({'set' if env.get(self.env) else 'NOT SET'})"
        if self.file is not None:
            state = "exists" if self.file_path(base).is_file() else "MISSING"
            return f"file:{self.file} ({state})"
        return "inline (stored in the config file)"

    def resolve(self, base: Path, env: Mapping[str, str], what: str) -> str:
        """The secret value. ``what`` names its owner in errors, e.g. "profile 'prod-eu'"."""
        if self.env is not None:
            value = env.get(self.env, "")
            if not value.strip():
                state = "is empty" if self.env in env else "is not set"
                raise InvalidArgumentError(
                    f"environment variable {self.env} {state}; {what} reads its secret from it",
                    hint=f"export {self.env}=... before running enosprov",
                )
            return value.strip()
        if self.file is not None:
            path = self.file_path(base)
            try:
                value = path.read_text(encoding="utf-8").strip()
            except FileNotFoundError:
                raise InputFileError(
                    f"secret file {path} not found; {what} reads its secret from it"
                ) from None
            except (OSError, UnicodeDecodeError) as exc:
                reason = getattr(exc, "strerror", None) or exc
                raise InputFileError(f"cannot read secret file {path} ({what}): {reason}") from None
            if not value:
                raise InputFileError(f"secret file {path} is empty ({what})")
            return value
        assert self.value is not None
        return self.value


# --------------------------------------------------------------------------- model


@dataclass(frozen=True)
class GroupEntry:
    """A registration group that lives in EnOS, as the config file knows it."""

    group_id: str
    name: str | None = None
    secret: SecretRef | None = None
    masterdata: str | None = None  # as written; relative to the config file
    product_key: str | None = None
    sign_scheme: str | None = None
    sn_pattern: str | None = None
    timezone: str | None = None  # default timezone of its devices (UTC offset or IANA name)

    def to_toml(self) -> dict:
        out: dict = {}
        for key in _GROUP_KEYS:
            value = getattr(self, key)
            if value is not None:
                out[key] = value.to_toml() if key == "secret" else value
        return out


@dataclass(frozen=True)
class Profile:
    name: str
    api_url: str
    org_id: str
    access_key: str
    secret: SecretRef
    dps_url: str | None = None
    workers: int | None = None
    max_rps: float | None = None
    timeout: float | None = None
    retries: int | None = None
    groups: dict[str, GroupEntry] = field(default_factory=dict)
    # the audit journal in a plant database: a postgresql:// URL or a [stores] name
    journal: str | None = None
    proxy: str | None = None  # HTTP(S) proxy for EnOS, e.g. http://proxy.plant:3128
    ca_bundle: str | None = None  # CA certificates (PEM) for TLS; relative to the config file

    def to_toml(self) -> dict:
        out: dict = {
            "api_url": self.api_url,
            "org_id": self.org_id,
            "access_key": self.access_key,
            "secret": self.secret.to_toml(),
        }
        for key, attr in (
            ("dps_url", "dps_url"),
            ("workers", "workers"),
            ("max_requests_per_second", "max_rps"),
            ("timeout", "timeout"),
            ("retries", "retries"),
            ("journal", "journal"),
            ("proxy", "proxy"),
            ("ca_bundle", "ca_bundle"),
        ):
            value = getattr(self, attr)
            if value is not None:
                out[key] = value
        if self.groups:
            out["groups"] = {gid: g.to_toml() for gid, g in self.groups.items()}
        return out

    def inline_secrets(self) -> list[str]:
        """What stores its secret in the file: "profile 'x'", "group 'g' of profile 'x'"."""
        found = [f"profile {self.name!r}"] if self.secret.kind == "inline" else []
        found += [
            f"group {gid!r} of profile {self.name!r}"
            for gid, g in self.groups.items()
            if g.secret is not None and g.secret.kind == "inline"
        ]
        return found


@dataclass
class Config:
    """The whole config file: the profiles and which one is current."""

    path: Path
    current: str | None = None
    profiles: dict[str, Profile] = field(default_factory=dict)
    # named stores: name -> a postgresql:// URL ([stores.NAME] url = ...; --store NAME)
    stores: dict[str, str] = field(default_factory=dict)

    @property
    def base(self) -> Path:
        """The folder relative paths in the file are relative to."""
        return self.path.parent

    def get(self, name: str) -> Profile:
        try:
            return self.profiles[name]
        except KeyError:
            raise unknown_profile(name, self) from None

    def to_toml(self) -> dict:
        out: dict = {}
        if self.current is not None:
            out["current"] = self.current
        if self.profiles:
            out["profiles"] = {name: p.to_toml() for name, p in self.profiles.items()}
        if self.stores:
            out["stores"] = {name: {"url": url} for name, url in self.stores.items()}
        return out


def unknown_profile(name: str, config: Config, how: str = "") -> NotFoundError:
    known = ", ".join(sorted(config.profiles)) or "none"
    return NotFoundError(
        f"profile {name!r}{how} not found in {config.path} (known: {known})",
        hint="create it with `enosprov config create`, or list them with `enosprov config list`",
    )


# --------------------------------------------------------------------------- validation


def _check_name(name: str) -> str:
    if not isinstance(name, str) or not PROFILE_NAME_RE.fullmatch(name):
        raise InvalidArgumentError(
            f"profile name {name!r} is not allowed",
            hint="use 1-64 letters, digits, '.', '_' or '-', starting with a letter or digit",
        )
    return name


def _check_url(value: str, what: str) -> str:
    if not isinstance(value, str) or not re.fullmatch(r"https?://[^\s/]+(/\S*)?", value):
        raise InvalidArgumentError(
            f"{what} {value!r} is not an http(s) URL", hint="e.g. https://apim-eu2.envisioniot.com"
        )
    return value.rstrip("/")


def _check_text(value: str, what: str) -> str:
    if not isinstance(value, str) or not value.strip() or any(c.isspace() for c in value):
        raise InvalidArgumentError(f"{what} {value!r} must be non-empty, without spaces")
    return value


def _check_number(value, what: str, *, minimum: float, integer: bool, inclusive: bool = True):
    ok = isinstance(value, int) if integer else isinstance(value, (int, float))
    if isinstance(value, bool) or not ok or (isinstance(value, float) and not math.isfinite(value)):
        kind = "an integer" if integer else "a number"
        raise InvalidArgumentError(f"{what} must be {kind}, not {value!r}")
    if value < minimum or (not inclusive and value == minimum):
        op = ">=" if inclusive else ">"
        raise InvalidArgumentError(f"{what} must be {op} {minimum:g}, not {value!r}")
    return value


def _check_profile(p: Profile) -> Profile:
    _check_name(p.name)
    _check_url(p.api_url, "api_url")
    _check_text(p.org_id, "org_id")
    _check_text(p.access_key, "access_key")
    if p.dps_url is not None:
        _check_url(p.dps_url, "dps_url")
    if p.proxy is not None:
        _check_url(p.proxy, "proxy")
    for what, url, hint in (("proxy", p.proxy, _PROXY_PASSWORD_HINT),
                            ("journal", p.journal, _DB_PASSWORD_HINT)):  # fmt: skip
        problem = _password_problem(what, url) if url else None
        if problem:
            raise InvalidArgumentError(problem, hint=hint)
    if p.workers is not None:
        _check_number(p.workers, "workers", minimum=1, integer=True)
    if p.max_rps is not None:
        _check_number(
            p.max_rps, "max_requests_per_second", minimum=0, integer=False, inclusive=False
        )
    if p.timeout is not None:
        _check_number(p.timeout, "timeout", minimum=0, integer=False, inclusive=False)
    if p.retries is not None:
        _check_number(p.retries, "retries", minimum=0, integer=True)
    return p


def _check_group(g: GroupEntry) -> GroupEntry:
    if not isinstance(g.group_id, str) or not g.group_id or any(c.isspace() for c in g.group_id):
        raise InvalidArgumentError(f"group id {g.group_id!r} must be non-empty, without spaces")
    for key in _GROUP_TEXT_KEYS:
        value = getattr(g, key)
        if value is not None and (not isinstance(value, str) or not value.strip()):
            raise InvalidArgumentError(f"group {g.group_id!r}: {key} must be a non-empty string")
    if g.product_key is not None:
        from .domain.rules import PRODUCT_KEY_RE

        if not PRODUCT_KEY_RE.fullmatch(g.product_key):
            raise InvalidArgumentError(
                f"product key {g.product_key!r} is not allowed",
                hint="1-64 letters, digits, '_' or '-'",
            )
    if g.sign_scheme is not None:
        from .domain.signing import get_signer

        get_signer(g.sign_scheme)
    if g.sn_pattern is not None:
        try:
            re.compile(g.sn_pattern)
        except re.error as exc:
            raise InvalidArgumentError(f"deviceSn pattern {g.sn_pattern!r}: {exc}") from None
    if g.timezone is not None:
        from .domain.rules import timezone_problem

        problem = timezone_problem(g.timezone)
        if problem:
            raise InvalidArgumentError(f"group {g.group_id!r}: default {problem}")
    return g


# --------------------------------------------------------------------------- load / save


def _fail(path: Path, where: str, message: str, hint: str | None = None) -> InputFileError:
    return InputFileError(
        f"{path}: {where}: {message}" if where else f"{path}: {message}", hint=hint
    )


def _unknown(path: Path, where: str, table: Mapping, allowed) -> None:
    unknown = sorted(set(table) - set(allowed))
    if unknown:
        raise _fail(
            path,
            where,
            f"unknown key(s) {', '.join(unknown)}",
            hint="allowed: " + ", ".join(allowed),
        )


def _parse_secret(path: Path, where: str, raw) -> SecretRef:
    try:
        if isinstance(raw, str):
            return SecretRef(value=raw.strip())
        if isinstance(raw, dict) and len(raw) == 1:
            (kind, value), *_ = raw.items()
            if kind in ("env", "file") and isinstance(value, str):
                return SecretRef(**{kind: value})
    except InvalidArgumentError as exc:
        raise _fail(path, where, exc.message) from None
    raise _fail(
        path,
        where,
        'must be { env = "VAR" }, { file = "PATH" } or a string',
    )


def _parse_profile(path: Path, name: str, raw) -> Profile:
    where = f"profiles.{name}"
    if not isinstance(raw, dict):
        raise _fail(path, where, "must be a table")
    _unknown(path, where, raw, _PROFILE_KEYS)
    for key in ("api_url", "org_id", "access_key", "secret"):
        if key not in raw:
            raise _fail(path, where, f"'{key}' is required")
    for key in ("api_url", "org_id", "access_key", "dps_url", "journal", "proxy", "ca_bundle"):
        if key in raw and not isinstance(raw[key], str):
            raise _fail(path, f"{where}.{key}", "must be a string")
    groups_raw = raw.get("groups", {})
    if not isinstance(groups_raw, dict):
        raise _fail(path, f"{where}.groups", "must be a table of groups")
    groups = {}
    for gid, graw in groups_raw.items():
        gwhere = f"{where}.groups.{gid}"
        if not isinstance(graw, dict):
            raise _fail(path, gwhere, "must be a table")
        _unknown(path, gwhere, graw, _GROUP_KEYS)
        for key in _GROUP_TEXT_KEYS:
            if key in graw and not isinstance(graw[key], str):
                raise _fail(path, f"{gwhere}.{key}", "must be a string")
        secret = (
            _parse_secret(path, f"{gwhere}.secret", graw["secret"]) if "secret" in graw else None
        )
        group = GroupEntry(
            group_id=gid,
            name=graw.get("name"),
            secret=secret,
            masterdata=graw.get("masterdata"),
            product_key=graw.get("product_key"),
            sign_scheme=graw.get("sign_scheme"),
            sn_pattern=graw.get("sn_pattern"),
            timezone=graw.get("timezone"),
        )
        try:
            groups[gid] = _check_group(group)
        except InvalidArgumentError as exc:
            raise _fail(path, gwhere, exc.message, exc.hint) from None
    profile = Profile(
        name=name,
        api_url=raw["api_url"],
        org_id=raw["org_id"],
        access_key=raw["access_key"],
        secret=_parse_secret(path, f"{where}.secret", raw["secret"]),
        dps_url=raw.get("dps_url"),
        workers=raw.get("workers"),
        max_rps=raw.get("max_requests_per_second"),
        timeout=raw.get("timeout"),
        retries=raw.get("retries"),
        groups=groups,
        journal=raw.get("journal"),
        proxy=raw.get("proxy"),
        ca_bundle=raw.get("ca_bundle"),
    )
    try:
        return _check_profile(profile)
    except InvalidArgumentError as exc:
        raise _fail(path, where, exc.message, exc.hint) from None


def load(path: str | os.PathLike | None = None, env: Mapping[str, str] = os.environ) -> Config:
    """Read the config file (``path``, else :func:`config_path`). A missing file is empty."""
    path = Path(path) if path is not None else config_path(env)
    try:
        with open(path, "rb") as fh:
            doc = tomllib.load(fh)
    except FileNotFoundError:
        return Config(path)
    except IsADirectoryError:
        raise InputFileError(f"{path}: is a folder, not a config file") from None
    except tomllib.TOMLDecodeError as exc:
        raise InputFileError(f"{path}: not valid TOML ({exc})") from None
    except OSError as exc:
        raise InputFileError(f"cannot read {path}: {exc.strerror or exc}") from None
    _unknown(path, "", doc, _TOP_KEYS)
    current = doc.get("current")
    if current is not None and not isinstance(current, str):
        raise _fail(path, "current", "must be a profile name (a string)")
    profiles_raw = doc.get("profiles", {})
    if not isinstance(profiles_raw, dict):
        raise _fail(path, "profiles", "must be a table of profiles")
    profiles = {}
    for name, raw in profiles_raw.items():
        try:
            _check_name(name)
        except InvalidArgumentError as exc:
            raise _fail(path, f"profiles.{name}", exc.message, exc.hint) from None
        profiles[name] = _parse_profile(path, name, raw)
    stores = _parse_stores(path, doc.get("stores", {}))
    for name, prof in profiles.items():
        journal = prof.journal
        if journal is not None and not is_database_url(journal) and journal not in stores:
            raise _fail(
                path,
                f"profiles.{name}.journal",
                f"{prof.journal!r} is neither a postgresql:// URL nor a store of [stores]",
                hint='journal = "postgresql://USER@HOST/DB", or the name of a '
                "[stores.NAME] table of this file",
            )
    return Config(path, current or None, profiles, stores)


_DB_PASSWORD_HINT = "the password goes in PGPASSWORD, ~/.pgpass or a service file"
_PROXY_PASSWORD_HINT = (
    "leave proxy out of the profile and set HTTPS_PROXY=http://USER:PASSWORD@HOST:PORT in the "
    "environment instead"
)


def _password_problem(what: str, url: str) -> str | None:
    """A config file is readable: a URL in it holds no password."""
    from .plantdb import has_password

    return (
        f"{what} holds a password ({redact(url)}): not in a config file"
        if has_password(url)
        else None
    )


def _no_password(path: Path, where: str, url: str, hint: str) -> None:
    problem = _password_problem("the URL", url)
    if problem:
        raise _fail(path, where, problem, hint=hint)


def journal_url(prof: Profile, config: Config) -> str | None:
    """Where a profile's audit journal is: its ``journal`` setting as a database URL (a
    [stores] name resolved), or None (journal.db on this PC)."""
    if prof.journal is None:
        return None
    return prof.journal if is_database_url(prof.journal) else config.stores[prof.journal]


def _parse_stores(path: Path, raw) -> dict[str, str]:
    """``[stores.NAME]`` tables: a name for a plant database (``url = "postgresql://..."``)."""
    if not isinstance(raw, dict):
        raise _fail(path, "stores", "must be a table of named stores")
    stores = {}
    for name, table in raw.items():
        where = f"stores.{name}"
        try:
            _check_name(name)
        except InvalidArgumentError as exc:
            raise _fail(path, where, exc.message, exc.hint) from None
        if "." in name:  # --store NAME.x is a file
            raise _fail(path, where, "a store name has no dot", hint="e.g. [stores.plant]")
        if not isinstance(table, dict):
            raise _fail(path, where, 'must be a table with a url (url = "postgresql://...")')
        _unknown(path, where, table, ("url",))
        url = table.get("url")
        if not isinstance(url, str) or not is_database_url(url):
            shown = redact(url) if isinstance(url, str) else url
            raise _fail(
                path,
                f"{where}.url",
                f"must be a postgresql:// URL (got {shown!r})",
                hint="postgresql://USER@HOST:5432/DATABASE?sslmode=verify-full; the password "
                "goes in PGPASSWORD or ~/.pgpass, not in the file",
            )
        _no_password(path, f"{where}.url", url, _DB_PASSWORD_HINT)
        stores[name] = url
    return stores


def _tomli_w():
    import tomli_w

    return tomli_w


def _key(key: str) -> str:
    return _tomli_w().dumps({key: 0}).rsplit(" = ", 1)[0]


def _literal(value) -> str:
    if isinstance(value, dict):
        return "{ " + ", ".join(f"{_key(k)} = {_literal(v)}" for k, v in value.items()) + " }"
    return _tomli_w().dumps({"v": value})[len("v = ") :].rstrip("\n")


def dumps(config: Config) -> str:
    """The config file's text, in the documented layout (secrets as inline tables)."""
    doc = config.to_toml()
    lines = [_HEADER]
    if "current" in doc:
        lines.append(f"current = {_literal(doc['current'])}\n")

    def section(header: str, table: dict) -> None:
        lines.append(f"\n[{header}]\n")
        for k, v in table.items():
            if k != "groups":
                lines.append(f"{_key(k)} = {_literal(v)}\n")

    for name, ptable in doc.get("profiles", {}).items():
        pheader = f"profiles.{_key(name)}"
        section(pheader, ptable)
        for gid, gtable in ptable.get("groups", {}).items():
            section(f"{pheader}.groups.{_key(gid)}", gtable)
    for name, stable in doc.get("stores", {}).items():
        section(f"stores.{_key(name)}", stable)
    text = "".join(lines)
    assert tomllib.loads(text) == doc, "config file rendering does not round-trip"
    return text


def save(config: Config) -> Path:
    """Write the config file atomically; owner-only (and a warning) when it holds a secret."""
    from .atomic import write_text

    inline = [w for p in config.profiles.values() for w in p.inline_secrets()]
    path = write_text(config.path, dumps(config), private=bool(inline))
    if inline:
        warnings.warn(
            InlineSecretWarning(
                f"{config.path} stores the secret of {', '.join(inline)}; the file is now "
                "readable by its owner only. Prefer an environment variable or a secret file."
            ),
            stacklevel=3,  # the caller of create_profile, add_group, ...
        )
    return path


# --------------------------------------------------------------------------- operations


def list_profiles(path=None, env: Mapping[str, str] = os.environ) -> list[Profile]:
    return list(load(path, env).profiles.values())


def get_profile(name: str, path=None, env: Mapping[str, str] = os.environ) -> Profile:
    return load(path, env).get(name)


def create_profile(
    name: str,
    *,
    api_url: str,
    org_id: str,
    access_key: str,
    secret: SecretRef,
    dps_url: str | None = None,
    workers: int | None = None,
    max_rps: float | None = None,
    timeout: float | None = None,
    retries: int | None = None,
    replace_existing: bool = False,
    select: bool = False,
    path=None,
    env: Mapping[str, str] = os.environ,
) -> Profile:
    """Create a profile, or with ``replace_existing`` replace one's settings (keeping its groups)."""
    config = load(path, env)
    old = config.profiles.get(name)
    if old is not None and not replace_existing:
        raise ConflictError(
            f"profile {name!r} already exists in {config.path}",
            hint="pass --replace to change its settings (its groups are kept)",
        )
    profile = _check_profile(
        Profile(
            name=name,
            api_url=_check_url(api_url, "API URL"),
            org_id=org_id,
            access_key=access_key,
            secret=secret,
            dps_url=_check_url(dps_url, "DPS URL") if dps_url is not None else None,
            workers=workers,
            max_rps=max_rps,
            timeout=timeout,
            retries=retries,
            groups=dict(old.groups) if old is not None else {},
        )
    )
    config.profiles[name] = profile
    if select:
        config.current = name
    save(config)
    return profile


def add_group(
    profile: str,
    group_id: str,
    *,
    name: str | None = None,
    secret: SecretRef | None = None,
    masterdata: str | None = None,
    product_key: str | None = None,
    sign_scheme: str | None = None,
    sn_pattern: str | None = None,
    timezone: str | None = None,
    replace_existing: bool = False,
    path=None,
    env: Mapping[str, str] = os.environ,
) -> GroupEntry:
    """Add (or with ``replace_existing`` replace) a registration group of a profile.

    ``timezone`` is the default timezone of the group's devices (``+08:00``, ``Europe/Berlin``),
    burned into the credential file of a device registered without one."""
    config = load(path, env)
    prof = config.get(profile)
    if group_id in prof.groups and not replace_existing:
        raise ConflictError(
            f"profile {profile!r} already has group {group_id!r}",
            hint="pass --replace to replace it",
        )
    group = _check_group(
        GroupEntry(
            group_id=group_id,
            name=name,
            secret=secret,
            masterdata=masterdata,
            product_key=product_key,
            sign_scheme=sign_scheme,
            sn_pattern=sn_pattern,
            timezone=timezone,
        )
    )
    if name is not None:
        for gid, other in prof.groups.items():
            if gid != group_id and name in (gid, other.name):
                raise ConflictError(
                    f"profile {profile!r} already has a group with id or name {name!r}",
                    hint="group names are unique within a profile; --group finds by id or name",
                )
    groups = dict(prof.groups)
    groups[group_id] = group
    config.profiles[profile] = replace(prof, groups=groups)
    save(config)
    return group


def remove_group(
    profile: str, group_id: str, path=None, env: Mapping[str, str] = os.environ
) -> None:
    config = load(path, env)
    prof = config.get(profile)
    if group_id not in prof.groups:
        known = ", ".join(prof.groups) or "none"
        raise NotFoundError(f"profile {profile!r} has no group {group_id!r} (known: {known})")
    groups = {gid: g for gid, g in prof.groups.items() if gid != group_id}
    config.profiles[profile] = replace(prof, groups=groups)
    save(config)


def set_sign_scheme(
    profile: str, group_id: str, scheme: str, path=None, env: Mapping[str, str] = os.environ
) -> GroupEntry:
    """Record the device signature scheme the tenant accepts for a group of a profile (what
    `enosprov doctor --write-test` learned); burn export and device bootstrap then use it."""
    from .domain.signing import get_signer

    get_signer(scheme)  # a known scheme
    config = load(path, env)
    prof = config.get(profile)
    entry = prof.groups.get(group_id) or GroupEntry(group_id=group_id)
    entry = replace(entry, sign_scheme=scheme)
    config.profiles[profile] = replace(prof, groups={**prof.groups, group_id: entry})
    save(config)
    return entry


def delete_profile(name: str, path=None, env: Mapping[str, str] = os.environ) -> bool:
    """Delete a profile; returns whether it was the current one (``current`` is then cleared)."""
    config = load(path, env)
    config.get(name)
    del config.profiles[name]
    was_current = config.current == name
    if was_current:
        config.current = None
    save(config)
    return was_current


def select(name: str | None, path=None, env: Mapping[str, str] = os.environ) -> Config:
    """Make ``name`` the current profile; ``None`` clears it (the local store is used)."""
    config = load(path, env)
    if name is not None:
        config.get(name)
    if config.current != name:
        config.current = name
        save(config)
    return config


def to_enos_config(name: str, path=None, env: Mapping[str, str] = os.environ) -> EnosConfig:
    """The EnOS backend settings of a profile, with every secret resolved."""
    config = load(path, env)
    prof = config.get(name)
    base = config.base
    groups = []
    for gid, g in prof.groups.items():
        # A group secret is needed only by device-side work (burn, device calls): a station
        # that only registers runs without it; the error is kept for whoever needs it.
        secret, secret_error = None, None
        if g.secret is not None:
            try:
                secret = g.secret.resolve(base, env, f"group {gid!r} of profile {name!r}")
            except (InvalidArgumentError, InputFileError) as exc:
                secret_error = exc.message
        masterdata = None
        if g.masterdata is not None:
            md = Path(g.masterdata).expanduser()
            masterdata = str(md if md.is_absolute() else base / md)
        kw = {"sign_scheme": g.sign_scheme} if g.sign_scheme is not None else {}
        groups.append(
            GroupConfig(
                group_id=gid,
                name=g.name,
                secret=secret,
                secret_error=secret_error,
                masterdata_file=masterdata,
                product_key=g.product_key,
                sn_pattern=g.sn_pattern,
                timezone=g.timezone,
                **kw,
            )
        )
    return EnosConfig(
        api_url=prof.api_url,
        org_id=prof.org_id,
        app_key=prof.access_key,
        app_secret=prof.secret.resolve(base, env, f"profile {name!r}"),
        dps_url=prof.dps_url,
        groups=tuple(groups),
        timeout=float(prof.timeout) if prof.timeout is not None else DEFAULT_TIMEOUT,
        retries=prof.retries if prof.retries is not None else DEFAULT_RETRIES,
        workers=prof.workers if prof.workers is not None else DEFAULT_WORKERS,
        max_rps=float(prof.max_rps) if prof.max_rps is not None else DEFAULT_MAX_RPS,
        profile=name,
        proxy=prof.proxy,
        ca_bundle=str(base / Path(prof.ca_bundle).expanduser()) if prof.ca_bundle else None,
    )


def describe_profile(prof: Profile, config: Config, env: Mapping[str, str] = os.environ) -> dict:
    """A profile for display: settings with their effective values, secrets only by source."""
    base = config.base
    return {
        "name": prof.name,
        "current": config.current == prof.name,
        "configFile": str(config.path),
        "apiUrl": prof.api_url,
        "orgId": prof.org_id,
        "accessKey": prof.access_key,
        "secret": prof.secret.source(base, env),
        "dpsUrl": prof.dps_url,
        "workers": prof.workers if prof.workers is not None else DEFAULT_WORKERS,
        "maxRequestsPerSecond": prof.max_rps if prof.max_rps is not None else DEFAULT_MAX_RPS,
        "timeout": prof.timeout if prof.timeout is not None else DEFAULT_TIMEOUT,
        "retries": prof.retries if prof.retries is not None else DEFAULT_RETRIES,
        "journal": redact(url) if (url := journal_url(prof, config)) else None,
        "proxy": redact(prof.proxy) if prof.proxy else None,
        "caBundle": prof.ca_bundle,
        "groups": [
            {
                "groupId": gid,
                "name": g.name,
                "secret": g.secret.source(base, env) if g.secret is not None else None,
                "masterdata": g.masterdata,
                "productKey": g.product_key,
                "signScheme": g.sign_scheme or GroupConfig.sign_scheme,
                "snPattern": g.sn_pattern,
                "timezone": g.timezone,
            }
            for gid, g in prof.groups.items()
        ],
    }


def describe(name: str, path=None, env: Mapping[str, str] = os.environ) -> dict:
    """:func:`describe_profile` of the profile ``name``: safe to print, holds no secret."""
    config = load(path, env)
    return describe_profile(config.get(name), config, env)
