"""Shared fixtures: a real SQLite store on disk, groups, CSV files, and a CLI runner."""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path

import pytest
from typer.testing import CliRunner

from enosprov import api
from enosprov.backends.local import LocalBackend
from enosprov.models import MasterDataAttribute, MasterDataGroup, RegistrationGroup

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
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "xdg-data"))
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.setenv("LOCALAPPDATA", str(tmp_path / "localappdata"))


@pytest.fixture
def store_path(tmp_path) -> Path:
    return tmp_path / "store.db"


@pytest.fixture(params=["local"])
def backend(request, store_path) -> LocalBackend:
    """Every backend the workflows must work on. Issue 3 adds the EnOS API backend here."""
    be = LocalBackend(store_path)
    yield be
    be.close()


@pytest.fixture
def store(store_path) -> LocalBackend:
    be = LocalBackend(store_path)
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

    def __init__(self, store: Path):
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
def cli(store_path) -> Cli:
    return Cli(store_path)


def file_mode(path: Path) -> int:
    return os.stat(path).st_mode & 0o777
