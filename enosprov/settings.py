"""Which backend to use, resolved once.

- ``--profile`` over ``ENOSPROV_PROFILE`` over the config file's ``current`` profile select the
  EnOS API backend (:mod:`enosprov.profiles`);
- otherwise the local store: ``--store`` over ``ENOSPROV_STORE`` over the user data folder.
  A store is an SQLite file, a ``postgresql://`` URL (the store in a plant database,
  docs/plant-database.md), or the name of a ``[stores.NAME]`` entry of the config file.

An explicit store (``--store`` or ``ENOSPROV_STORE``) wins over the config file's ``current``
profile, and the ``--store`` option over ``ENOSPROV_PROFILE``: what is typed on the command line
beats the environment. ``--profile`` together with ``--store`` is an error.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .journal import Journal

from .paths import user_data_dir

STORE_ENV = "ENOSPROV_STORE"
STORE_FILENAME = "store.db"
PROFILE_ENV = "ENOSPROV_PROFILE"  # also profiles.PROFILE_ENV (kept here: no import at start-up)


def _store_at(value: str | os.PathLike, env: Mapping[str, str]) -> Path | str:
    """A --store / ENOSPROV_STORE value: a database URL as it is; a name the config file's
    ``[stores]`` table defines, its URL; anything else, a file path."""
    from .plantdb import is_database_url

    text = os.fspath(value)
    if is_database_url(text):
        return text
    if not any(sep in text for sep in ("/", "\\")) and Path(text).suffix == "":
        from . import profiles

        if profiles.PROFILE_NAME_RE.fullmatch(text):
            named = profiles.load(env=env).stores.get(text)
            if named is not None:
                return named
    return Path(text)


@dataclass(frozen=True)
class Settings:
    store: Path | str  # the local store: a file, or a postgresql:// URL (backend "local")
    store_source: str  # "--store", "ENOSPROV_STORE" or "default"
    backend: str = "local"  # "local" or "enos"
    profile: str | None = None  # the EnOS profile, when backend == "enos"
    profile_source: str | None = None  # "--profile", "ENOSPROV_PROFILE" or "current"
    config_path: Path | None = None  # the config file the profile is read from
    # the profile's `journal` setting as a database URL (read with the profile), or None
    profile_journal: str | None = field(default=None, repr=False)
    env: Mapping[str, str] | None = field(default=None, repr=False, compare=False)

    @classmethod
    def local(cls, store: str | os.PathLike | None = None, env: Mapping[str, str] = os.environ):
        """The local store only (profiles are not considered): ``api.open_store``."""
        if store:
            return cls(_store_at(store, env), "--store", env=env)
        if env.get(STORE_ENV):
            return cls(_store_at(env[STORE_ENV], env), STORE_ENV, env=env)
        return cls(user_data_dir(env) / STORE_FILENAME, "default", env=env)

    @classmethod
    def resolve(
        cls,
        store: str | os.PathLike | None = None,
        profile: str | None = None,
        env: Mapping[str, str] = os.environ,
    ):
        """The backend a command uses: the arguments are the ``--store`` and ``--profile`` options."""
        if store and profile:
            from .domain.errors import InvalidArgumentError

            raise InvalidArgumentError(
                "--profile and --store cannot be used together",
                hint="--profile selects an EnOS profile, --store a local store file: pass one",
            )
        local = cls.local(store, env)
        if profile:
            chosen = (profile, "--profile")
        elif store:
            return local
        elif env.get(PROFILE_ENV):
            chosen = (env[PROFILE_ENV], PROFILE_ENV)
        elif env.get(STORE_ENV):
            return local
        else:
            chosen = None
        from . import profiles

        config = profiles.load(env=env)
        if chosen is None:
            if config.current is None:
                return local
            chosen = (config.current, "current")
        name, source = chosen
        if name not in config.profiles:
            how = {
                "--profile": " (--profile)",
                PROFILE_ENV: f" ({PROFILE_ENV})",
                "current": " (the current profile)",
            }[source]
            err = profiles.unknown_profile(name, config, how)
            if source == "current":
                err.hint = (
                    "select another with `enosprov config use NAME`, "
                    "or the local store with `enosprov config use --local`"
                )
            raise err
        journal = profiles.journal_url(config.profiles[name], config)
        return cls(local.store, local.store_source, "enos", name, source, config.path,
                   journal, env=env)  # fmt: skip

    def create_backend(self):
        """The backend these settings select: the local store, or EnOS through a profile."""
        if self.backend == "enos":
            from . import profiles

            env = os.environ if self.env is None else self.env
            config = profiles.to_enos_config(self.profile, self.config_path, env)
            try:
                from .backends.enos import EnosBackend
            except ModuleNotFoundError as exc:
                if exc.name != "enosprov.backends.enos":
                    raise
                from .domain.errors import EnosprovError

                raise EnosprovError(
                    "this enosprov has no EnOS API backend yet",
                    hint="use the local store: `enosprov config use --local` or --store",
                ) from None
            from .backends.http import ApiClient
            from .token_cache import default_token_cache

            # the access token is shared by this user's processes (ENOSPROV_TOKEN_CACHE=0: not)
            return EnosBackend(config, api=ApiClient(config, token_cache=default_token_cache(env)))
        if isinstance(self.store, str):
            from .backends.pg_store import PgStore

            return PgStore(self.store)
        from .backends.local import LocalBackend

        return LocalBackend(self.store)

    @property
    def store_in_database(self) -> bool:
        """The local store is in a PostgreSQL database (a URL), not an SQLite file."""
        return self.backend == "local" and isinstance(self.store, str)


def _journal_database(settings: Settings) -> str | None:
    """The plant database that holds the journal of ``settings``, if any: the store's own
    database; for a profile, ``$ENOSPROV_JOURNAL`` when it is a database URL, else the profile's
    ``journal`` setting (a URL or a [stores] name). None: a file."""
    from .journal import JOURNAL_ENV
    from .plantdb import is_database_url

    if settings.backend == "local":
        return str(settings.store) if settings.store_in_database else None
    env = os.environ if settings.env is None else settings.env
    if env.get(JOURNAL_ENV):
        return env[JOURNAL_ENV] if is_database_url(env[JOURNAL_ENV]) else None
    return settings.profile_journal


def open_journal(settings: Settings, station: str | None = None) -> Journal:
    """The audit journal of ``settings``: the local store's own (in the store file or its
    database); for a profile, ``$ENOSPROV_JOURNAL`` (a file, or a ``postgresql://`` plant
    database every station shares: :class:`enosprov.journal_pg.PgJournal`), else the profile's
    ``journal`` setting, else journal.db in the user data folder."""
    from .journal import Actor, Journal, journal_path

    env = os.environ if settings.env is None else settings.env
    actor = Actor.current(settings.backend, settings.profile, station, env)
    database = _journal_database(settings)
    if database is not None:
        from .journal_pg import PgJournal

        return PgJournal(database, actor)
    return Journal(journal_path(settings), actor)


def journal_location(settings: Settings) -> str:
    """Where the audit journal of ``settings`` is, for people (never a password): a file, or
    the plant database's URL with its password hidden. Nothing is opened."""
    from .journal import journal_path
    from .plantdb import redact

    database = _journal_database(settings)
    if settings.store_in_database:
        return f"{redact(str(settings.store))} (in the store's database)"
    if database is not None:
        return f"{redact(database)} (plant database, shared by every station)"
    if settings.backend == "local":
        return f"{journal_path(settings)} (in the store file)"
    return str(journal_path(settings))
