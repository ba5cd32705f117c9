"""The plant database connection (enosprov.plantdb) against a real PostgreSQL server started by
the suite (tests/pgserver.py): passwords from the environment or ~/.pgpass, never printed; TLS
settings honoured; clear errors; the SQLite store never loads psycopg."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from enosprov import plantdb
from enosprov.domain.errors import AuthError, BackendUnavailableError, InvalidArgumentError

SECRET = "s3cr3t-Pa55:w@rd"


def test_redact_every_spelling_of_a_password():
    cases = {
        "postgresql://station:hunter2@db.plant:5432/enos": "postgresql://station:***@db.plant:5432/enos",
        "postgres://u:p%40ss@h/d?sslmode=require": "postgres://u:***@h/d?sslmode=require",
        "postgresql://h/d?user=u&password=hunter2&sslmode=verify-full":
            "postgresql://h/d?user=u&password=***&sslmode=verify-full",
        "connection failed: host=h password=hunter2 user=u": "connection failed: host=h password=*** user=u",
        "postgresql://station@db.plant/enos": "postgresql://station@db.plant/enos",
    }  # fmt: skip
    for given, shown in cases.items():
        assert plantdb.redact(given) == shown
        assert "hunter2" not in plantdb.redact(given)
    assert plantdb.is_database_url("postgresql://h/d") and plantdb.is_database_url("postgres://x")
    assert not plantdb.is_database_url("store.db") and not plantdb.is_database_url(None)


@pytest.fixture
def station_role(postgres):
    """A database and a role with a password, as plant IT would create them."""
    import psycopg

    name = f"station_{os.getpid()}_{id(object()) % 10000}"
    with psycopg.connect(postgres.url(), autocommit=True) as conn:
        conn.execute(f"CREATE ROLE {name} LOGIN PASSWORD '{SECRET}'")
        conn.execute(f"CREATE DATABASE {name} OWNER {name}")
    yield name
    with psycopg.connect(postgres.url(), autocommit=True) as conn:
        conn.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
        conn.execute(f"DROP ROLE IF EXISTS {name}")


def _url(postgres, role: str, password: str | None = None) -> str:
    url = postgres.url(dbname=role, user=role)
    if password is not None:
        url = url.replace(f"{role}@", f"{role}:{password.replace('@', '%40').replace(':', '%3A')}@")
    return url


def test_password_from_the_environment(postgres, station_role, monkeypatch):
    url = _url(postgres, station_role)
    monkeypatch.delenv("PGPASSWORD", raising=False)
    with pytest.raises(AuthError) as refused:
        plantdb.connect(url)
    assert "password" in refused.value.message.lower()
    assert "password taken from: none" in refused.value.hint
    monkeypatch.setenv("PGPASSWORD", SECRET)
    with plantdb.connect(url) as conn:
        assert conn.execute("SELECT current_user").fetchone()[0] == station_role
    assert plantdb.password_source(url) == "PGPASSWORD"


def test_password_from_a_pgpass_file(postgres, station_role, monkeypatch, tmp_path):
    monkeypatch.delenv("PGPASSWORD", raising=False)
    passfile = tmp_path / "pgpass"
    escaped = SECRET.replace("\\", "\\\\").replace(":", "\\:")  # the .pgpass escapes
    passfile.write_text(f"*:*:{station_role}:{station_role}:{escaped}\n", encoding="utf-8")
    passfile.chmod(0o600)
    monkeypatch.setenv("PGPASSFILE", str(passfile))
    url = _url(postgres, station_role)
    with plantdb.connect(url) as conn:
        assert conn.execute("SELECT 1").fetchone() == (1,)
    info = plantdb.describe(url)
    assert info["password"] == "password file" and info["user"] == station_role
    assert SECRET not in repr(info)


def test_a_wrong_password_in_the_url_is_never_printed(postgres, station_role):
    wrong = "Wr0ng-" + SECRET
    url = _url(postgres, station_role, wrong)
    with pytest.raises(AuthError) as info:
        plantdb.connect(url)
    text = info.value.message + (info.value.hint or "") + repr(info.value.to_dict())
    assert wrong not in text and "Wr0ng" not in text
    assert f"{station_role}@" in info.value.message
    assert plantdb.password_source(url) == "URL"
    assert plantdb.describe(url)["url"].count("***") == 1
    right = _url(postgres, station_role, SECRET)
    with plantdb.connect(right) as conn:
        assert conn.execute("SELECT current_database()").fetchone()[0] == station_role


def test_tls_is_honoured(postgres):
    # the test server has no TLS: over TCP, sslmode=require must refuse, not silently go plain
    with pytest.raises(BackendUnavailableError) as info:
        plantdb.connect(postgres.url(tcp=True, sslmode="require"))
    assert "SSL" in info.value.message or "ssl" in info.value.message
    assert plantdb.describe(postgres.url(sslmode="verify-full"))["sslmode"] == "verify-full"
    with plantdb.connect(postgres.url(tcp=True, sslmode="disable")) as conn:
        assert conn.execute("SELECT 1").fetchone() == (1,)


def test_unreachable_and_malformed(postgres, tmp_path):
    nowhere = f"postgresql://u@/d?host={tmp_path}&port=1"
    with pytest.raises(BackendUnavailableError) as info:
        plantdb.connect(nowhere, connect_timeout=1)
    assert "could not be reached" in info.value.message and "retrying is safe" in info.value.hint
    with pytest.raises(InvalidArgumentError):
        plantdb.connect("store.db")
    with pytest.raises(InvalidArgumentError):
        plantdb.connect(postgres.url(sslmode="sometimes"))


def test_without_psycopg_the_error_says_what_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "psycopg", None)
    with pytest.raises(InvalidArgumentError) as info:
        plantdb.connect("postgresql://u@h/d")
    assert "pip install 'enosprov[postgres]'" in info.value.hint


def test_the_sqlite_store_never_imports_psycopg(tmp_path):
    code = (
        "import sys; from enosprov.cli import main; sys.argv = ['enosprov', '--store', "
        f"{str(tmp_path / 's.db')!r}, 'group', 'list', '--json']\n"
        "try:\n    main()\nexcept SystemExit:\n    pass\n"
        "sys.stderr.write('psycopg' in sys.modules and 'LOADED' or 'clean')"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert proc.stderr.endswith("clean"), proc.stderr
