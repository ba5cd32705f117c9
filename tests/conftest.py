"""Shared fixtures: a real SQLite store on disk, groups, CSV files, and a CLI runner."""

from __future__ import annotations

import dataclasses
import itertools
import json
import os
from collections.abc import Callable
from pathlib import Path

import pytest
from typer.testing import CliRunner

from enosprov import api
from enosprov.backends.enos import EnosBackend
from enosprov.backends.enos_config import EnosConfig
from enosprov.backends.local import LocalBackend
from enosprov.domain.models import MasterDataAttribute, MasterDataGroup, RegistrationGroup

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = ROOT / "examples"

METERS = MasterDataGroup(
    id="meters",
    name="Smart meters",
    attributes=(
        MasterDataAttribute("max_capacity", "Integer", required=True),
        MasterDataAttribute("phase", "Enum", required=True, values=("single", "three")),
        MasterDataAttribute("install_date", "Date"),
        MasterDataAttribute("site", "String", max_length=64),
    ),
)
METERS_HEADER = "deviceSn,deviceName,timezone,max_capacity,phase,install_date,site"


@pytest.fixture(autouse=True)
def _isolated_env(tmp_path, monkeypatch):
    """No test reads or writes the real user data folder or inherits a store from the shell."""
    monkeypatch.delenv("ENOSPROV_STORE", raising=False)
    monkeypatch.delenv("ENOSPROV_PROFILE", raising=False)
    monkeypatch.delenv("ENOSPROV_CONFIG", raising=False)
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "xdg-config"))
    monkeypatch.setenv("APPDATA", str(tmp_path / "appdata"))
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "xdg-data"))
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.setenv("LOCALAPPDATA", str(tmp_path / "localappdata"))


@pytest.fixture
def store_path(tmp_path) -> Path:
    return tmp_path / "store.db"


APP_KEY, APP_SECRET = "test-app-key", "test-app-secret-7f3a"


class EmulatedEnos(EnosBackend):
    """The EnOS backend talking over HTTP to `enosprov serve` on 127.0.0.1.

    Group administration is console-only in EnOS; here it goes straight to the emulator's store,
    as an operator would in the console, and the backend learns the groups from that store the
    way it learns them from a profile in real use.
    """

    def __init__(self, store: LocalBackend, config: EnosConfig, app):
        super().__init__(config)
        self.store = store
        self.app = app

    # The DPS application APIs never return a device secret (only the device side does). The
    # tests compare secrets across operations, so the harness reads them from the emulator's
    # store, as an operator could in the console. The client code itself never sees them here.
    def _reveal(self, dev):
        if dev.device_key:
            dev = dataclasses.replace(dev, device_secret=self.store.get(dev.sn).device_secret)
        return dev

    def get(self, sn):
        return self._reveal(super().get(sn))

    def allocate(self, sn, **kw):
        return self._reveal(super().allocate(sn, **kw))

    def replace(self, sn, replacement_sn):
        return self._reveal(super().replace(sn, replacement_sn))

    def search(self, query):
        page = super().search(query)
        return dataclasses.replace(page, items=[self._reveal(d) for d in page.items])

    def find_by_device_sn(self, group_id, device_sn):
        dev = super().find_by_device_sn(group_id, device_sn)
        return dev and self._reveal(dev)

    def iter_devices(self, query):
        return (self._reveal(d) for d in super().iter_devices(query))

    @property
    def clock_skew_ms(self):  # the emulator's accepted device clock skew
        return self.app.clock_skew_ms

    @clock_skew_ms.setter
    def clock_skew_ms(self, value):
        self.app.clock_skew_ms = value

    def create_masterdata_group(self, mdg):
        return self.store.create_masterdata_group(mdg)

    def create_group(self, group):
        return self.store.create_group(group)

    def get_group(self, group):
        return self.store.get_group(group)

    def list_groups(self):
        return self.store.list_groups()

    def get_masterdata_group(self, mdg_id):
        return self.store.get_masterdata_group(mdg_id)

    def list_masterdata_groups(self):
        return self.store.list_masterdata_groups()

    def close(self):
        super().close()
        self.store.close()


@pytest.fixture(scope="session")
def emulator():
    """One emulator for the session; each test points it at its own store (see backend)."""
    from enosprov.emulator.server import start_in_thread

    holder = {}

    def app(environ, start_response):  # dispatch to the current test's emulator app
        return holder["app"](environ, start_response)

    server = start_in_thread(app, threads=8)
    server.holder = holder
    yield server
    server.stop()


def enos_backend(emulator, store_path, behaviour=None, **config) -> EmulatedEnos:
    """The EnOS backend against the strict emulator over the store at ``store_path``;
    ``behaviour`` (emulator.Behaviour) sets the emulator's [ENOSPROV] options."""
    from enosprov.emulator.app import create_app

    app = create_app(store_path, app_key=APP_KEY, app_secret=APP_SECRET, behaviour=behaviour)
    emulator.holder["app"] = app
    cfg = EnosConfig(api_url=emulator.url, org_id="o1", app_key=APP_KEY, app_secret=APP_SECRET,
                     dps_url=emulator.url, **config)  # fmt: skip
    return EmulatedEnos(LocalBackend(store_path), cfg, app)


BACKENDS = ["local", "postgres", "enos"]
if os.environ.get("ENOSPROV_TEST_ENOS", "1") != "1":
    BACKENDS.remove("enos")
if os.environ.get("ENOSPROV_TEST_POSTGRES") == "skip":
    BACKENDS.remove("postgres")


@pytest.fixture(params=BACKENDS)
def backend(request, store_path):
    """Every backend the workflows must work on: the local store on SQLite, the same store on
    PostgreSQL (a fresh database on the suite's server), and the EnOS API backend against the
    emulator over a real socket. Same tests, same expectations."""
    if request.param == "local":
        be = LocalBackend(store_path)
    elif request.param == "postgres":
        from enosprov.backends.pg_store import PgStore

        be = PgStore(request.getfixturevalue("fresh_database"))
    else:
        be = enos_backend(request.getfixturevalue("emulator"), store_path, retries=3)
    yield be
    be.close()


STORES = ["sqlite"] + (["postgres"] if "postgres" in BACKENDS else [])


def pytest_configure(config):
    config.addinivalue_line(
        "markers", "sqlite_only: the test is about the SQLite file itself (not run on PostgreSQL)"
    )


def pytest_generate_tests(metafunc):
    """A test on the local store (the ``store`` or ``cli`` fixture) without a ``backend`` runs on
    the store in SQLite and in PostgreSQL: the ``store_kind`` parameter."""
    names = metafunc.fixturenames
    if "backend" in names or "store_kind" not in names:
        return
    sqlite_only = metafunc.definition.get_closest_marker("sqlite_only") is not None
    metafunc.parametrize("store_kind", ["sqlite"] if sqlite_only else STORES, indirect=True)


@pytest.fixture
def store_kind(request) -> str:
    return getattr(request, "param", "sqlite")


@pytest.fixture
def store_location(request, store_path, store_kind) -> str | Path:
    """The store the CLI opens (``--store``): the PostgreSQL store's URL when the test runs on
    the postgres backend or store kind, else the SQLite file (also the emulator's store for the
    enos backend)."""
    callspec = getattr(request.node, "callspec", None)
    params = callspec.params if callspec is not None else {}
    if params.get("backend") == "postgres" or store_kind == "postgres":
        return request.getfixturevalue("fresh_database")
    return store_path


@pytest.fixture
def store(store_location) -> LocalBackend:
    """The store under the test's backend: the SQLite file (also the emulator's), or the
    PostgreSQL store on the postgres backend."""
    if isinstance(store_location, str):
        from enosprov.backends.pg_store import PgStore

        be: LocalBackend = PgStore(store_location)
    else:
        be = LocalBackend(store_location)
    yield be
    be.close()


def make_group(backend, **overrides) -> RegistrationGroup:
    try:
        backend.get_masterdata_group("meters")
    except Exception:
        backend.create_masterdata_group(METERS)
    kw = dict(
        group_id="meters-eu",
        name="Meters EU",
        product_key="pk1",
        masterdata_group_id="meters",
        region_id="eu2",
        org_id="o1",
        timezone="+08:00",  # burned for devices registered without one (no_register, say)
    )
    kw.update(overrides)
    return api.create_group(backend, **kw)


@pytest.fixture
def group(backend) -> RegistrationGroup:
    return make_group(backend)


@pytest.fixture
def write_csv(tmp_path) -> Callable[..., Path]:
    """Write text (or rows) to a CSV file in tmp_path, bytes exactly as given."""

    def write(content: str | bytes, name: str = "devices.csv", encoding: str = "utf-8") -> Path:
        path = tmp_path / name
        data = content if isinstance(content, bytes) else content.encode(encoding)
        path.write_bytes(data)
        return path

    return write


def meters_rows(n: int, start: int = 1, prefix: str = "SN") -> str:
    lines = [METERS_HEADER]
    for i in range(start, start + n):
        lines.append(
            f"{prefix}-{i:06d},Meter {i},+08:00,{40 + i % 50},single,2026-11-01,Hall {i % 3}"
        )
    return "\n".join(lines) + "\n"


class Cli:
    """Runs the real Typer app in process against one store; parses --json output."""

    def __init__(self, store: Path | str):
        self.store = store
        self.runner = CliRunner()

    def __call__(self, *args: str, input: str | None = None, env: dict | None = None):
        from enosprov.cli import app

        return self.runner.invoke(
            app, ["--store", str(self.store), *args], input=input, env=env, catch_exceptions=False
        )

    def json(self, *args: str, expect: int | None = 0) -> dict:
        result = self(*args, "--json")
        if expect is not None:
            assert result.exit_code == expect, (result.exit_code, result.stdout, result.stderr)
        return json.loads(result.stdout)


@pytest.fixture
def cli(store_location) -> Cli:
    return Cli(store_location)


def query_store(location: Path | str, sql: str, params: tuple = ()) -> list[tuple]:
    """Rows of ``sql`` (SQLite spelling) read straight from a store: an SQLite file, or the
    PostgreSQL store at a URL (the statement translated as the store translates its own)."""
    if isinstance(location, str):
        import psycopg

        from enosprov.pg_sql import translate

        with psycopg.connect(location) as conn:
            return conn.execute(translate(sql), params).fetchall()
    import contextlib
    import sqlite3

    with contextlib.closing(sqlite3.connect(location, timeout=60)) as con:
        return con.execute(sql, params).fetchall()


def open_store(location: Path | str) -> LocalBackend:
    """The store at ``location``: an SQLite file, or the PostgreSQL store at a URL."""
    return api.open_store(location)


def store_journal(location: Path | str, actor):
    """The journal of the store at ``location`` (in the file, or in the same database)."""
    if isinstance(location, str):
        from enosprov.journal_pg import PgJournal

        return PgJournal(location, actor)
    from enosprov.journal import Journal

    return Journal(location, actor)


def file_mode(path: Path) -> int:
    return os.stat(path).st_mode & 0o777


@pytest.fixture(scope="session")
def postgres():
    """A real PostgreSQL server for the session (tests/pgserver.py), started on first use."""
    import pgserver

    if os.environ.get("ENOSPROV_TEST_POSTGRES") == "skip":
        pytest.skip("ENOSPROV_TEST_POSTGRES=skip")
    server = pgserver.start()
    yield server
    server.stop()


_databases = itertools.count(1)


@pytest.fixture
def fresh_database(postgres) -> str:
    """A new, empty database on the suite's PostgreSQL server (dropped afterwards); its URL."""
    import psycopg

    name = f"t{os.getpid()}_{next(_databases)}"
    with psycopg.connect(postgres.url(), autocommit=True) as conn:
        conn.execute(f"CREATE DATABASE {name} STRATEGY FILE_COPY")
    yield postgres.url(dbname=name)
    with psycopg.connect(postgres.url(), autocommit=True) as conn:
        conn.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


def profile_for(
    emulator, group: RegistrationGroup, config_dir: Path, monkeypatch, *, masterdata: bool = True
) -> None:
    """A config file in ``config_dir`` with profile "prod" for the emulator's tenant, knowing
    ``group`` (its secret from METERS_SECRET; the example master data file and product key)."""
    from enosprov import profiles
    from enosprov.profiles import SecretRef

    monkeypatch.setenv("ENOSPROV_CONFIG", str(config_dir / "config.toml"))
    monkeypatch.setenv("ENOS_APP_SECRET", APP_SECRET)
    monkeypatch.setenv("METERS_SECRET", group.group_secret)
    profiles.create_profile("prod", api_url=emulator.url, org_id="o1", access_key=APP_KEY,
                            secret=SecretRef.from_env("ENOS_APP_SECRET"),
                            dps_url=emulator.url)  # fmt: skip
    extra = dict(masterdata=str(EXAMPLES / "masterdata.toml"), product_key=group.product_key)
    profiles.add_group("prod", group.group_id, secret=SecretRef.from_env("METERS_SECRET"),
                       **(extra if masterdata else {}))  # fmt: skip
