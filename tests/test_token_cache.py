"""The API token shared between processes: one token request for a script's many commands, an
owner-only file without a secret, expired or forgotten tokens renewed, broken files ignored."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from conftest import APP_KEY, APP_SECRET, enos_backend, make_group, meters_rows

from enosprov import api
from enosprov.backends.enos import EnosBackend
from enosprov.backends.enos_config import EnosConfig
from enosprov.backends.http import TOKEN_MARGIN, ApiClient
from enosprov.paths import user_cache_dir
from enosprov.settings import Settings
from enosprov.token_cache import (
    TokenCache,
    cache_key,
    default_token_cache,
    token_cache_enabled,
)

POSIX = sys.platform != "win32"
UNITS = 5


def token_lines(lines: list[str]) -> list[str]:
    return [x for x in lines if "/apim-token-service/" in x]


def serve(emulator, store_path):
    """Point the session emulator at this store with a fresh gateway (no token known)."""
    from enosprov.emulator.app import create_app

    lines: list[str] = []
    app = create_app(store_path, app_key=APP_KEY, app_secret=APP_SECRET, log=lines.append)
    emulator.holder["app"] = app
    return lines


@pytest.fixture
def station(emulator, store_path, tmp_path, write_csv, monkeypatch):
    """An emulator holding group meters-eu with UNITS devices, a profile "emu" pointing at it,
    and the environment of the subprocesses (cache in tmp_path/cache)."""
    from typer.testing import CliRunner

    from enosprov.cli import app

    be = enos_backend(emulator, store_path)
    make_group(be)
    api.register_csv(be, write_csv(meters_rows(UNITS)), "meters-eu", batch_tag="B-1")
    be.close()
    monkeypatch.setenv("ENOSPROV_CONFIG", str(tmp_path / "config.toml"))
    monkeypatch.setenv("EMU_SECRET", APP_SECRET)
    monkeypatch.setenv("ENOSPROV_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setenv("ENOSPROV_JOURNAL", str(tmp_path / "journal.db"))
    monkeypatch.delenv("ENOSPROV_TOKEN_CACHE", raising=False)
    runner = CliRunner()
    r = runner.invoke(app, ["config", "create", "emu", "--api-url", emulator.url, "--org", "o1",
                            "--access-key", APP_KEY, "--secret-env", "EMU_SECRET", "--dps-url",
                            emulator.url])  # fmt: skip
    assert r.exit_code == 0, r.stdout + r.stderr
    r = runner.invoke(app, ["config", "add-group", "emu", "meters-eu"])
    assert r.exit_code == 0, r.stdout + r.stderr
    return tmp_path / "cache"


def run_cli(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    """``python -m enosprov ARGS`` in a process of its own."""
    return subprocess.run(
        [sys.executable, "-m", "enosprov", *args],
        capture_output=True, text=True, timeout=60, env={**os.environ, **(env or {})},
    )  # fmt: skip


def list_devices(env: dict | None = None) -> dict:
    r = run_cli("--profile", "emu", "devices", "list", "--group", "meters-eu", "--json", env=env)
    assert r.returncode == 0, r.stdout + r.stderr
    return json.loads(r.stdout)


def token_files(cache: Path) -> list[Path]:
    return sorted((cache / "tokens").glob("*.json")) if (cache / "tokens").is_dir() else []


def test_ten_processes_make_one_token_request(emulator, store_path, station):
    lines = serve(emulator, store_path)
    outputs = []
    for _ in range(10):
        outputs.append(list_devices())
    assert all(o["data"]["pagination"]["total"] == UNITS for o in outputs)
    assert len(token_lines(lines)) == 1  # 10 processes, one token
    assert len([x for x in lines if "/dps-service/" in x]) == 10

    [path] = token_files(station)
    raw = path.read_bytes()
    assert APP_SECRET.encode() not in raw and APP_KEY.encode() not in raw
    doc = json.loads(raw)
    assert path.stem == doc["key"] == cache_key("emu", emulator.url, APP_KEY)
    assert doc["profile"] == "emu" and doc["apiUrl"] == emulator.url.rstrip("/")
    assert doc["expiresAt"] > time.time() + TOKEN_MARGIN
    if POSIX:
        assert path.stat().st_mode & 0o777 == 0o600
        assert (station / "tokens").stat().st_mode & 0o077 == 0
    assert not [p for p in (station / "tokens").iterdir() if p.suffix != ".json"]  # no temp left
    # the token is a credential: never printed, never journaled
    token = doc["accessToken"]
    assert all(token not in json.dumps(o) for o in outputs)
    r = run_cli("--profile", "emu", "log", "--json")
    assert r.returncode == 0 and token not in r.stdout + r.stderr


def test_an_expired_cached_token_is_not_used(emulator, store_path, station):
    lines = serve(emulator, store_path)
    list_devices()
    [path] = token_files(station)
    doc = json.loads(path.read_text())
    for expires_at in (time.time() - 5, time.time() + TOKEN_MARGIN / 2):  # expired, about to
        doc["expiresAt"] = expires_at
        path.write_text(json.dumps(doc))
        os.chmod(path, 0o600)
        before = len(token_lines(lines))
        list_devices()
        assert len(token_lines(lines)) == before + 1
        assert json.loads(path.read_text())["expiresAt"] > time.time() + TOKEN_MARGIN
    assert len(token_lines(lines)) == 3


def test_a_token_the_gateway_forgot_is_renewed_and_the_cache_updated(emulator, store_path, station):
    lines = serve(emulator, store_path)
    list_devices()
    [path] = token_files(station)
    old = json.loads(path.read_text())["accessToken"]
    restarted = serve(emulator, store_path)  # a gateway restart: the cached token is unknown now
    assert list_devices()["data"]["pagination"]["total"] == UNITS
    assert len(token_lines(restarted)) == 1  # renewed once
    refused = [x for x in restarted if "/dps-service/" in x and "status=200 code=0" not in x]
    assert refused, restarted  # the cached token was tried and refused first
    new = json.loads(path.read_text())["accessToken"]
    assert new != old
    list_devices()  # the renewed token is the one shared now
    assert len(token_lines(restarted)) == 1
    assert len(token_lines(lines)) == 1


def test_the_cache_can_be_turned_off(emulator, store_path, station):
    lines = serve(emulator, store_path)
    for _ in range(2):
        list_devices(env={"ENOSPROV_TOKEN_CACHE": "0"})
    assert len(token_lines(lines)) == 2
    assert token_files(station) == []
    assert not token_cache_enabled({"ENOSPROV_TOKEN_CACHE": "off"})
    assert token_cache_enabled({}) and token_cache_enabled({"ENOSPROV_TOKEN_CACHE": "1"})
    assert default_token_cache({"ENOSPROV_TOKEN_CACHE": "0"}) is None


def test_concurrent_processes_all_succeed_and_leave_one_whole_file(emulator, store_path, station):
    lines = serve(emulator, store_path)
    cmd = [sys.executable, "-m", "enosprov", "--profile", "emu", "devices", "list", "--group",
           "meters-eu", "--json"]  # fmt: skip
    procs = [
        subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for _ in range(4)
    ]
    for p in procs:
        out, err = p.communicate(timeout=60)
        assert p.returncode == 0, out + err
    assert 1 <= len(token_lines(lines)) <= 4  # each may fetch before another wrote the file
    [path] = token_files(station)
    assert TokenCache(station).load(path.stem) is not None
    list_devices()
    assert len(token_lines(lines)) <= 4  # the last writer's token serves the next process


# -- the cache on its own ---------------------------------------------------------------------


def test_key_names_profile_gateway_and_access_key_never_the_secret():
    base = cache_key("p", "https://apim.example", "AK1")
    assert base == cache_key("p", "https://apim.example/", "AK1")
    others = {cache_key("q", "https://apim.example", "AK1"),
              cache_key("p", "https://apim2.example", "AK1"),
              cache_key("p", "https://apim.example", "AK2")}  # fmt: skip
    assert base not in others and len(others) == 3
    assert len(base) == 64 and "AK1" not in base


def test_broken_partial_or_foreign_files_are_ignored(tmp_path):
    cache = TokenCache(tmp_path / "c")
    key = cache_key("p", "https://apim.example", "AK1")
    assert cache.load(key) is None  # no file
    assert cache.save(key, "tok-1", time.time() + 3600, profile="p")
    assert cache.load(key).token == "tok-1"
    path = cache.path(key)
    good = path.read_bytes()
    for broken in (b"", good[: len(good) // 2], b"\x00\xff garbage", b"[]", b'{"format": 1}',
                   json.dumps({**json.loads(good), "key": "other"}).encode(),
                   json.dumps({**json.loads(good), "expiresAt": "soon"}).encode(),
                   b" " * 20_000):  # fmt: skip
        path.write_bytes(broken)
        os.chmod(path, 0o600)
        assert cache.load(key) is None, broken[:40]
    if POSIX:
        path.write_bytes(good)
        os.chmod(path, 0o644)  # readable by others: not trusted
        assert cache.load(key) is None
        os.chmod(path, 0o600)
        assert cache.load(key).token == "tok-1"
    assert "tok-1" not in repr(cache.load(key))
    cache.forget(key)
    assert cache.load(key) is None


def test_a_broken_file_is_replaced_by_the_client(emulator, store_path, tmp_path):
    be = enos_backend(emulator, store_path)
    lines = serve(emulator, store_path)
    cache = TokenCache(tmp_path / "c")
    key = cache_key(None, emulator.url, APP_KEY)
    cache.path(key).parent.mkdir(parents=True)
    cache.path(key).write_bytes(b'{"format": 1, "key": "')  # a partial file
    client = ApiClient(be.config, token_cache=cache)
    token = client.token()
    assert cache.load(key).token == token and len(token_lines(lines)) == 1
    second = ApiClient(be.config, token_cache=cache)
    assert second.token() == token and len(token_lines(lines)) == 1
    for c in (client, second, be):
        c.close()


def test_readers_never_see_half_a_file(tmp_path):
    cache = TokenCache(tmp_path / "c")
    key = cache_key("p", "u", "k")
    stop = threading.Event()
    seen: list[str | None] = []

    def write(n: int) -> None:
        i = 0
        while not stop.is_set():
            i += 1
            cache.save(key, f"tok-{n}-{i}-" + "x" * 200, time.time() + 3600)

    def read() -> None:
        while not stop.is_set():
            found = cache.load(key)
            seen.append(found and found.token)

    threads = [threading.Thread(target=write, args=(n,)) for n in range(3)]
    threads += [threading.Thread(target=read) for _ in range(2)]
    for t in threads:
        t.start()
    time.sleep(0.5)
    stop.set()
    for t in threads:
        t.join()
    tokens = [t for t in seen if t is not None]
    assert tokens and all(t.endswith("x" * 200) for t in tokens)
    assert [p.name for p in cache.path(key).parent.iterdir()] == [f"{key}.json"]


def test_a_library_client_writes_no_file(emulator, store_path, tmp_path, monkeypatch):
    monkeypatch.setenv("ENOSPROV_CACHE_DIR", str(tmp_path / "cache"))
    enos_backend(emulator, store_path).close()
    cfg = EnosConfig(api_url=emulator.url, org_id="o1", app_key=APP_KEY, app_secret=APP_SECRET)
    with EnosBackend(cfg) as be:
        assert be.api.token_cache is None
        be.api.token()
    assert not (tmp_path / "cache").exists()


def test_cache_folder_per_os(monkeypatch, tmp_path):
    assert user_cache_dir({"ENOSPROV_CACHE_DIR": str(tmp_path / "x")}) == tmp_path / "x"
    monkeypatch.setattr(sys, "platform", "linux")
    assert user_cache_dir({"XDG_CACHE_HOME": "/xdg"}) == Path("/xdg/enosprov")
    assert user_cache_dir({}) == Path.home() / ".cache" / "enosprov"
    monkeypatch.setattr(sys, "platform", "darwin")
    assert user_cache_dir({}) == Path.home() / "Library" / "Caches" / "enosprov"
    monkeypatch.setattr(sys, "platform", "win32")
    assert user_cache_dir({"LOCALAPPDATA": "L"}) == Path("L") / "enosprov" / "Cache"


def test_profiles_get_the_user_cache(station):
    settings = Settings.resolve(profile="emu")
    with settings.create_backend() as be:
        assert isinstance(be.api.token_cache, TokenCache)
        assert be.api.token_cache.folder == station
    off = Settings.resolve(profile="emu", env={**os.environ, "ENOSPROV_TOKEN_CACHE": "0"})
    with off.create_backend() as be:
        assert be.api.token_cache is None
