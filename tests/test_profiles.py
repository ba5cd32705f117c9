"""Configuration profiles: the TOML file, secret sources, backend selection, `enosprov config`."""

from __future__ import annotations

import json
import os
import re
import sys
from pathlib import Path

import pytest
import tomllib
from conftest import ROOT, file_mode
from typer.testing import CliRunner

from enosprov import api, profiles
from enosprov.errors import ConflictError, InputFileError, InvalidArgumentError, NotFoundError
from enosprov.profiles import InlineSecretWarning, SecretRef
from enosprov.settings import Settings

# Distinctive values: none of them may ever appear in anything enosprov prints.
APP_SECRET = "APPSECRET-e1f9c0d2b7a4"
GROUP_SECRET_ENV = "GRPSECRET-ENV-5a8b3c"
GROUP_SECRET_FILE = "GRPSECRET-FILE-9d2e7f"
GROUP_SECRET_INLINE = "GRPSECRET-INLINE-4c6a1b"
SECRETS = (APP_SECRET, GROUP_SECRET_ENV, GROUP_SECRET_FILE, GROUP_SECRET_INLINE)

PROFILE = dict(
    api_url="https://apim-eu2.envisioniot.com",
    org_id="o15000000000001",
    access_key="AK-test-0001",
    dps_url="https://iot-dps-eu2.envisioniot.com",
)
CREATE_ARGS = [
    "--api-url", PROFILE["api_url"], "--org", PROFILE["org_id"],
    "--access-key", PROFILE["access_key"], "--dps-url", PROFILE["dps_url"],
]  # fmt: skip


@pytest.fixture(autouse=True)
def config_file(tmp_path, monkeypatch) -> Path:
    """Every test has its own config file, and no profile or config comes from the shell."""
    path = tmp_path / "cfg" / "config.toml"
    monkeypatch.setenv("ENOSPROV_CONFIG", str(path))
    monkeypatch.delenv("ENOSPROV_PROFILE", raising=False)
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "xdg-config"))
    monkeypatch.setenv("APPDATA", str(tmp_path / "appdata"))
    monkeypatch.delenv("ENOS_APP_SECRET", raising=False)
    return path


def run(*args: str, input: str | None = None):
    from enosprov.cli import app

    return CliRunner().invoke(app, list(args), input=input, catch_exceptions=False)


def run_json(*args: str, expect: int = 0):
    result = run(*args, "--json")
    assert result.exit_code == expect, (result.exit_code, result.stdout, result.stderr)
    return json.loads(result.stdout)


def make_profile(name="prod-eu", secret=None, **kw):
    return profiles.create_profile(
        name, secret=secret or SecretRef.from_env("ENOS_APP_SECRET"), **{**PROFILE, **kw}
    )


def env_with(**variables) -> dict:
    """An environment of only these variables, and the test's config file."""
    return {"ENOSPROV_CONFIG": os.environ["ENOSPROV_CONFIG"], **variables}


def umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


# --------------------------------------------------------------------------- the file


def test_config_path_env_and_per_user_folders(tmp_path, monkeypatch):
    assert profiles.config_path() == tmp_path / "cfg" / "config.toml"
    monkeypatch.delenv("ENOSPROV_CONFIG")
    monkeypatch.setattr(sys, "platform", "linux")
    assert profiles.config_path() == tmp_path / "xdg-config" / "enosprov" / "config.toml"
    monkeypatch.setenv("XDG_CONFIG_HOME", "")
    assert profiles.config_path() == tmp_path / "home" / ".config" / "enosprov" / "config.toml"
    monkeypatch.setattr(sys, "platform", "darwin")
    assert profiles.config_path() == (
        tmp_path / "home" / "Library" / "Application Support" / "enosprov" / "config.toml"
    )
    monkeypatch.setattr(sys, "platform", "win32")
    assert profiles.config_path() == tmp_path / "appdata" / "enosprov" / "config.toml"


def test_missing_file_is_an_empty_config(config_file):
    config = profiles.load()
    assert (config.path, config.current, config.profiles) == (config_file, None, {})
    assert profiles.list_profiles() == []
    assert not config_file.exists()


def test_create_writes_the_documented_layout(config_file, tmp_path):
    make_profile(workers=8, max_rps=20, timeout=12.5, retries=2, select=True)
    profiles.add_group(
        "prod-eu",
        "meters-eu",
        name="Smart meters EU",
        secret=SecretRef.from_env("METERS_GROUP_SECRET"),
        masterdata="masterdata/meters.toml",
        product_key="pk1",
        sign_scheme="secret-sn-ts",
        sn_pattern="^MTR-[0-9]+$",
    )
    profiles.add_group("prod-eu", "plain", secret=SecretRef.from_file("~/secrets/plain.txt"))
    text = config_file.read_text()
    assert 'current = "prod-eu"\n' in text
    assert "[profiles.prod-eu]\n" in text
    assert 'secret = { env = "ENOS_APP_SECRET" }\n' in text
    assert "[profiles.prod-eu.groups.meters-eu]\n" in text
    assert 'secret = { file = "~/secrets/plain.txt" }\n' in text
    assert tomllib.loads(text) == {
        "current": "prod-eu",
        "profiles": {
            "prod-eu": {
                "api_url": PROFILE["api_url"],
                "org_id": PROFILE["org_id"],
                "access_key": PROFILE["access_key"],
                "secret": {"env": "ENOS_APP_SECRET"},
                "dps_url": PROFILE["dps_url"],
                "workers": 8,
                "max_requests_per_second": 20,
                "timeout": 12.5,
                "retries": 2,
                "groups": {
                    "meters-eu": {
                        "name": "Smart meters EU",
                        "secret": {"env": "METERS_GROUP_SECRET"},
                        "masterdata": "masterdata/meters.toml",
                        "product_key": "pk1",
                        "sign_scheme": "secret-sn-ts",
                        "sn_pattern": "^MTR-[0-9]+$",
                    },
                    "plain": {"secret": {"file": "~/secrets/plain.txt"}},
                },
            }
        },
    }
    # No secret in the file: the usual permissions, not owner-only.
    assert file_mode(config_file) == 0o666 & ~umask()
    config = profiles.load()
    assert config.current == "prod-eu"
    assert config.profiles["prod-eu"].groups["meters-eu"].masterdata == "masterdata/meters.toml"


def test_a_hand_written_file_loads(config_file):
    config_file.parent.mkdir(parents=True)
    config_file.write_text(
        """
current = "prod-eu"
[profiles.prod-eu]
api_url = "https://apim-eu2.envisioniot.com"
org_id = "o15000000000001"
access_key = "AK..."
secret = { env = "ENOS_APP_SECRET" }
dps_url = "https://iot-dps-eu2.envisioniot.com"
workers = 16
max_requests_per_second = 20
[profiles.prod-eu.groups.meters-eu]
name = "Smart meters EU"
secret = { env = "METERS_GROUP_SECRET" }
masterdata = "masterdata/meters.toml"
"""
    )
    prof = profiles.get_profile("prod-eu")
    assert (prof.workers, prof.max_rps, list(prof.groups)) == (16, 20, ["meters-eu"])
    assert prof.secret == SecretRef(env="ENOS_APP_SECRET")


@pytest.mark.parametrize(
    ("text", "needles"),
    [
        ("current = [", ["not valid TOML"]),
        ('colour = "red"', ["unknown key(s) colour"]),
        ('[profiles.p]\napi_url = "https://a"\norg_id = "o"\naccess_key = "k"\nsecret = "s"\n'
         "colour = 1", ["profiles.p", "unknown key(s) colour", ]),
        ('[profiles.p]\napi_url = "https://a"\norg_id = "o"\naccess_key = "k"\nsecret = "s"\n'
         "[profiles.p.groups.g]\nsecrets = 1", ["profiles.p.groups.g", "unknown key(s) secrets"]),
        ('[profiles.p]\napi_url = "https://a"\norg_id = "o"\naccess_key = "k"',
         ["profiles.p", "'secret' is required"]),
        ('[profiles.p]\napi_url = "https://a"\norg_id = "o"\naccess_key = "k"\n'
         'secret = { vault = "x" }', ["profiles.p.secret", "env", "file"]),
        ('[profiles.p]\napi_url = "ftp://a"\norg_id = "o"\naccess_key = "k"\nsecret = "s"',
         ["profiles.p", "http(s) URL"]),
        ('[profiles.p]\napi_url = "https://a"\norg_id = "o"\naccess_key = "k"\nsecret = "s"\n'
         "workers = 0", ["profiles.p", "workers must be >= 1"]),
        ("current = 3", ["current", "must be a profile name"]),
    ],
)  # fmt: skip
def test_malformed_files_give_one_clear_error(config_file, text, needles):
    config_file.parent.mkdir(parents=True)
    config_file.write_text(text)
    with pytest.raises(InputFileError) as exc:
        profiles.load()
    assert str(config_file) in exc.value.message
    for needle in needles:
        assert needle in exc.value.message
    result = run("config", "list")
    assert result.exit_code == 1
    assert str(config_file) in result.stderr and "Traceback" not in result.stderr


def test_inline_secret_makes_the_file_owner_only_and_warns(config_file):
    make_profile()
    assert file_mode(config_file) != 0o600 or umask() == 0o077
    with pytest.warns(InlineSecretWarning, match="group 'g1' of profile 'prod-eu'"):
        profiles.add_group("prod-eu", "g1", secret=SecretRef.inline(GROUP_SECRET_INLINE))
    assert file_mode(config_file) == 0o600
    assert GROUP_SECRET_INLINE in config_file.read_text()
    assert GROUP_SECRET_INLINE not in repr(profiles.load())
    # Later writes keep it owner-only while the secret is there...
    with pytest.warns(InlineSecretWarning):
        profiles.select("prod-eu")
    assert file_mode(config_file) == 0o600
    # ... and the file opens up again once it is gone.
    profiles.remove_group("prod-eu", "g1")
    assert file_mode(config_file) == 0o666 & ~umask()


def test_cli_inline_secret_from_stdin_warns_on_stderr(config_file):
    result = run("config", "create", "prod-eu", *CREATE_ARGS, "--secret-stdin",
                 input=APP_SECRET + "\n")  # fmt: skip
    assert result.exit_code == 0, result.stderr
    assert "warning:" in result.stderr and "owner only" in result.stderr
    assert file_mode(config_file) == 0o600
    assert tomllib.loads(config_file.read_text())["profiles"]["prod-eu"]["secret"] == APP_SECRET
    assert APP_SECRET not in result.stdout + result.stderr


# --------------------------------------------------------------------------- secrets


def test_env_and_file_secrets_resolve(config_file, tmp_path):
    make_profile(workers=4, max_rps=12.5, timeout=7, retries=1)
    secret_file = tmp_path / "cfg" / "group.txt"
    secret_file.write_text(f"  {GROUP_SECRET_FILE}\n\n")
    profiles.add_group("prod-eu", "by-env", secret=SecretRef.from_env("GRP_SECRET"),
                       masterdata="masterdata/meters.toml", sign_scheme="sorted-kv")  # fmt: skip
    profiles.add_group(
        "prod-eu", "by-file", name="By file", secret=SecretRef.from_file("group.txt")
    )
    profiles.add_group("prod-eu", "no-secret", masterdata=str(ROOT / "examples/masterdata.toml"))
    env = env_with(ENOS_APP_SECRET=f"{APP_SECRET}\n", GRP_SECRET=GROUP_SECRET_ENV)
    cfg = profiles.to_enos_config("prod-eu", env=env)
    assert (cfg.api_url, cfg.org_id, cfg.app_key, cfg.dps_url) == (
        PROFILE["api_url"], PROFILE["org_id"], PROFILE["access_key"], PROFILE["dps_url"],
    )  # fmt: skip
    assert cfg.app_secret == APP_SECRET
    assert (cfg.workers, cfg.max_rps, cfg.timeout, cfg.retries, cfg.profile) == (
        4, 12.5, 7.0, 1, "prod-eu",
    )  # fmt: skip
    groups = {g.group_id: g for g in cfg.groups}
    assert list(groups) == ["by-env", "by-file", "no-secret"]
    assert groups["by-env"].secret == GROUP_SECRET_ENV
    assert groups["by-env"].sign_scheme == "sorted-kv"
    assert groups["by-env"].masterdata_file == str(tmp_path / "cfg" / "masterdata" / "meters.toml")
    assert groups["by-file"].secret == GROUP_SECRET_FILE and groups["by-file"].name == "By file"
    assert groups["by-file"].sign_scheme == "sn-ts-secret"
    assert groups["no-secret"].secret is None
    assert groups["no-secret"].masterdata_file == str(ROOT / "examples/masterdata.toml")
    assert APP_SECRET not in repr(cfg) and GROUP_SECRET_ENV not in repr(cfg)


def test_defaults_come_from_enos_config():
    from enosprov.backends import enos_config

    make_profile()
    cfg = profiles.to_enos_config("prod-eu", env=env_with(ENOS_APP_SECRET=APP_SECRET))
    assert (cfg.workers, cfg.max_rps, cfg.timeout, cfg.retries, cfg.groups) == (
        enos_config.DEFAULT_WORKERS,
        enos_config.DEFAULT_MAX_RPS,
        enos_config.DEFAULT_TIMEOUT,
        enos_config.DEFAULT_RETRIES,
        (),
    )


@pytest.mark.parametrize("value", [None, "", "   "])
def test_missing_or_empty_env_secret_names_variable_and_profile(value):
    make_profile()
    env = env_with() if value is None else env_with(ENOS_APP_SECRET=value)
    with pytest.raises(InvalidArgumentError) as exc:
        profiles.to_enos_config("prod-eu", env=env)
    assert "ENOS_APP_SECRET" in exc.value.message and "'prod-eu'" in exc.value.message
    assert ("not set" if value is None else "empty") in exc.value.message


def test_group_env_secret_error_names_the_group_but_does_not_stop_registration():
    from enosprov.backends.enos import EnosBackend

    make_profile()
    profiles.add_group("prod-eu", "meters-eu", secret=SecretRef.from_env("METERS_SECRET"))
    cfg = profiles.to_enos_config("prod-eu", env=env_with(ENOS_APP_SECRET=APP_SECRET))
    (group,) = cfg.groups
    assert group.secret is None
    assert re.search(r"METERS_SECRET.*group 'meters-eu'", group.secret_error)
    with EnosBackend(cfg) as backend:
        assert backend.get_group("meters-eu").group_secret == ""
        assert "METERS_SECRET" in backend.group_secret_error("meters-eu")


def test_missing_or_empty_secret_file_names_the_path(tmp_path):
    missing = tmp_path / "nowhere" / "secret.txt"
    make_profile(secret=SecretRef.from_file(missing))
    with pytest.raises(InputFileError) as exc:
        profiles.to_enos_config("prod-eu", env=env_with())
    assert str(missing) in exc.value.message and "not found" in exc.value.message
    missing.parent.mkdir()
    missing.write_text(" \n")
    with pytest.raises(InputFileError, match="is empty"):
        profiles.to_enos_config("prod-eu", env=env_with())


def test_secret_sources_are_checked():
    with pytest.raises(InvalidArgumentError, match="not an environment variable name"):
        SecretRef.from_env("NOT A VAR")
    with pytest.raises(InvalidArgumentError, match="exactly one source"):
        SecretRef(env="A", file="b")
    with pytest.raises(InvalidArgumentError, match="cannot be empty"):
        SecretRef.inline("  ")


def test_describe_shows_sources_never_values(tmp_path, monkeypatch):
    secret_file = tmp_path / "app.txt"
    secret_file.write_text(APP_SECRET)
    make_profile(secret=SecretRef.from_file(secret_file))
    profiles.add_group("prod-eu", "g-env", secret=SecretRef.from_env("G_ENV"))
    profiles.add_group("prod-eu", "g-unset", secret=SecretRef.from_env("G_UNSET"))
    profiles.add_group("prod-eu", "g-missing", secret=SecretRef.from_file(tmp_path / "nope"))
    profiles.add_group("prod-eu", "g-none")
    with pytest.warns(InlineSecretWarning):
        profiles.add_group("prod-eu", "g-inline", secret=SecretRef.inline(GROUP_SECRET_INLINE))
    monkeypatch.setenv("G_ENV", GROUP_SECRET_ENV)
    d = profiles.describe("prod-eu")
    assert d["secret"] == f"file:{secret_file} (exists)"
    assert {g["groupId"]: g["secret"] for g in d["groups"]} == {
        "g-env": "env:G_ENV (set)",
        "g-unset": "env:G_UNSET (NOT SET)",
        "g-missing": f"file:{tmp_path / 'nope'} (MISSING)",
        "g-inline": "inline (stored in the config file)",
        "g-none": None,
    }
    dumped = json.dumps(d)
    assert not any(s in dumped for s in SECRETS)


# --------------------------------------------------------------------------- operations


def test_create_list_select_delete_round_trip(config_file):
    make_profile("prod-eu")
    make_profile("staging", api_url="https://apim-staging.example.com", select=True)
    assert [p.name for p in profiles.list_profiles()] == ["prod-eu", "staging"]
    assert profiles.load().current == "staging"
    with pytest.raises(ConflictError, match="already exists"):
        make_profile("prod-eu")
    profiles.add_group("prod-eu", "g1", name="Group one")
    make_profile("prod-eu", org_id="o2", replace_existing=True)
    prof = profiles.get_profile("prod-eu")
    assert prof.org_id == "o2" and list(prof.groups) == ["g1"]  # --replace keeps the groups
    with pytest.raises(ConflictError):
        profiles.add_group("prod-eu", "g1")
    with pytest.raises(ConflictError, match="id or name 'Group one'"):
        profiles.add_group("prod-eu", "g2", name="Group one")
    profiles.add_group("prod-eu", "g1", name="Renamed", replace_existing=True)
    assert profiles.get_profile("prod-eu").groups["g1"].name == "Renamed"
    with pytest.raises(NotFoundError, match="no group 'nope'"):
        profiles.remove_group("prod-eu", "nope")
    profiles.select("prod-eu")
    assert profiles.load().current == "prod-eu"
    assert profiles.delete_profile("prod-eu") is True
    config = profiles.load()
    assert (config.current, list(config.profiles)) == (None, ["staging"])
    assert profiles.delete_profile("staging") is False
    profiles.select(None)
    assert "current" not in tomllib.loads(config_file.read_text())


@pytest.mark.parametrize(
    ("kw", "needle"),
    [
        ({"api_url": "apim-eu2.envisioniot.com"}, "is not an http"),
        ({"dps_url": "not a url"}, "is not an http"),
        ({"org_id": ""}, "org_id"),
        ({"workers": 0}, "workers"),
        ({"max_rps": 0}, "max_requests_per_second"),
        ({"timeout": -1}, "timeout"),
        ({"retries": -1}, "retries"),
    ],
)
def test_bad_profile_settings_are_refused(config_file, kw, needle):
    with pytest.raises(InvalidArgumentError, match=needle):
        make_profile(**kw)
    assert not config_file.exists()


def test_bad_names_and_group_settings_are_refused():
    with pytest.raises(InvalidArgumentError, match="profile name"):
        make_profile("bad name")
    make_profile()
    for kw, needle in [
        ({"sign_scheme": "md5"}, "signing scheme"),
        ({"sn_pattern": "(["}, "pattern"),
        ({"product_key": "bad key"}, "product key"),
        ({"timezone": "Mars/Olympus"}, "default timezone 'Mars/Olympus' is neither"),
        ({"timezone": " "}, "timezone must be a non-empty string"),
    ]:
        with pytest.raises(InvalidArgumentError, match=needle):
            profiles.add_group("prod-eu", "g1", **kw)


def test_group_default_timezone_reaches_the_enos_backend(config_file):
    from enosprov.backends.enos import EnosBackend

    make_profile()
    profiles.add_group("prod-eu", "meters-eu", timezone="Europe/Berlin")
    profiles.add_group("prod-eu", "no-tz")
    text = config_file.read_text()
    assert 'timezone = "Europe/Berlin"\n' in text and text.count("timezone") == 1
    assert [g["timezone"] for g in profiles.describe("prod-eu")["groups"]] == [
        "Europe/Berlin",
        None,
    ]
    cfg = profiles.to_enos_config("prod-eu", env=env_with(ENOS_APP_SECRET="x"))
    backend = EnosBackend(cfg)
    try:
        assert backend.get_group("meters-eu").timezone == "Europe/Berlin"
        assert backend.get_group("no-tz").timezone is None
        assert backend.get_group("meters-eu").to_dict()["timezone"] == "Europe/Berlin"
    finally:
        backend.close()
    config_file.write_text(text.replace('"Europe/Berlin"', "8"))
    with pytest.raises(InputFileError, match=r"groups\.meters-eu\.timezone: must be a string"):
        profiles.load()


def test_unknown_profile_lists_the_known_ones():
    make_profile("prod-eu")
    make_profile("staging")
    for call in (
        lambda: profiles.describe("prod-us"),
        lambda: profiles.to_enos_config("prod-us"),
        lambda: profiles.select("prod-us"),
        lambda: profiles.delete_profile("prod-us"),
        lambda: Settings.resolve(profile="prod-us"),
    ):
        with pytest.raises(NotFoundError) as exc:
            call()
        assert "'prod-us'" in exc.value.message
        assert "known: prod-eu, staging" in exc.value.message


# --------------------------------------------------------------------------- backend choice


def test_without_a_profile_the_local_store_is_used(tmp_path):
    s = Settings.resolve()
    assert (s.backend, s.profile, s.store_source) == ("local", None, "default")
    make_profile()  # a profile exists, but none is selected
    assert Settings.resolve().backend == "local"


@pytest.mark.parametrize(
    ("store", "profile", "env", "expect"),
    [
        (None, None, {}, ("enos", "current-p", "current")),
        (None, None, {"ENOSPROV_PROFILE": "env-p"}, ("enos", "env-p", "ENOSPROV_PROFILE")),
        (None, "flag-p", {"ENOSPROV_PROFILE": "env-p"}, ("enos", "flag-p", "--profile")),
        (None, "flag-p", {"ENOSPROV_STORE": "x.db"}, ("enos", "flag-p", "--profile")),
        (None, None, {"ENOSPROV_STORE": "x.db", "ENOSPROV_PROFILE": "env-p"},
         ("enos", "env-p", "ENOSPROV_PROFILE")),
        ("s.db", None, {}, ("local", None, None)),  # an explicit store beats `current`
        (None, None, {"ENOSPROV_STORE": "x.db"}, ("local", None, None)),
        ("s.db", None, {"ENOSPROV_PROFILE": "env-p"}, ("local", None, None)),  # flag beats env
        (None, None, {"ENOSPROV_PROFILE": ""}, ("enos", "current-p", "current")),
    ],
)  # fmt: skip
def test_backend_precedence(config_file, store, profile, env, expect):
    for name in ("current-p", "env-p", "flag-p"):
        make_profile(name)
    profiles.select("current-p")
    s = Settings.resolve(store, profile, env={"ENOSPROV_CONFIG": str(config_file), **env})
    assert (s.backend, s.profile, s.profile_source) == expect
    if s.backend == "enos":
        assert s.config_path == config_file
    elif store:
        assert (s.store, s.store_source) == (Path(store), "--store")
    else:
        assert (s.store, s.store_source) == (Path("x.db"), "ENOSPROV_STORE")


def test_profile_and_store_together_is_a_usage_error(tmp_path):
    make_profile()
    with pytest.raises(InvalidArgumentError, match="--profile and --store"):
        Settings.resolve("s.db", "prod-eu")
    result = run("--profile", "prod-eu", "--store", str(tmp_path / "s.db"), "info")
    assert result.exit_code == 2
    errors = [line for line in result.stderr.splitlines() if line.startswith("Error")]
    assert errors == [
        "Error: --profile and --store cannot be used together (--profile selects an EnOS "
        "profile, --store a local store file)"
    ]
    assert not (tmp_path / "s.db").exists()


def test_a_current_profile_that_is_gone_says_how_to_fix_it(config_file):
    make_profile()
    text = config_file.read_text().replace(
        "[profiles.prod-eu]", 'current = "old"\n[profiles.prod-eu]'
    )
    config_file.write_text(text.replace("# enosprov", "#", 1))
    with pytest.raises(NotFoundError) as exc:
        Settings.resolve()
    assert "'old' (the current profile)" in exc.value.message
    assert "config use --local" in exc.value.hint
    result = run("devices", "list")
    assert result.exit_code == 1 and "known: prod-eu" in result.stderr


def test_open_store_ignores_profiles(tmp_path):
    make_profile(select=True)
    with api.open_store(tmp_path / "api.db") as store:
        assert type(store).__name__ == "LocalBackend"
    with api.open_store() as store:
        assert type(store).__name__ == "LocalBackend"


def test_create_backend_builds_the_enos_backend(monkeypatch, tmp_path):
    try:
        from enosprov.backends.enos import EnosBackend
    except ImportError as exc:  # the EnOS backend lands separately
        pytest.skip(f"enosprov.backends.enos is not importable yet: {exc}")
    make_profile(select=True, workers=3)
    profiles.add_group("prod-eu", "g1", secret=SecretRef.from_env("G1_SECRET"))
    monkeypatch.setenv("ENOS_APP_SECRET", APP_SECRET)
    monkeypatch.setenv("G1_SECRET", GROUP_SECRET_ENV)
    backend = Settings.resolve().create_backend()  # builds clients; sends nothing
    try:
        assert isinstance(backend, EnosBackend)
        assert backend.config.app_secret == APP_SECRET and backend.config.workers == 3
        assert [(g.group_id, g.secret) for g in backend.config.groups] == [("g1", GROUP_SECRET_ENV)]
    finally:
        backend.close()


def test_commands_with_a_profile_report_secret_errors_in_one_line():
    make_profile(select=True)
    result = run("devices", "list")
    assert result.exit_code == 1
    assert "ENOS_APP_SECRET is not set" in result.stderr and "'prod-eu'" in result.stderr
    assert "Traceback" not in result.stderr
    data = run_json("--profile", "prod-eu", "devices", "list", expect=1)
    assert data["error"]["code"] == "invalid_argument"


# --------------------------------------------------------------------------- info


def test_info_reports_the_profile_without_contacting_enos(tmp_path, monkeypatch):
    make_profile(api_url="http://127.0.0.1:9", select=True)  # nothing listens on port 9
    monkeypatch.setenv("ENOS_APP_SECRET", APP_SECRET)
    data = run_json("info")["data"]
    assert data["backend"] == "enos"
    assert (data["profile"], data["profileSource"]) == ("prod-eu", "current")
    assert (data["apiUrl"], data["orgId"]) == ("http://127.0.0.1:9", PROFILE["org_id"])
    assert data["secret"] == "env:ENOS_APP_SECRET (set)"
    assert "store" not in data
    assert run_json("--profile", "prod-eu", "info")["data"]["profileSource"] == "--profile"
    monkeypatch.setenv("ENOSPROV_PROFILE", "prod-eu")
    text = run("info")
    assert text.exit_code == 0
    assert "EnOS API" in text.stdout and "ENOSPROV_PROFILE variable" in text.stdout
    assert APP_SECRET not in text.stdout + text.stderr
    assert not (tmp_path / "xdg-data").exists()  # no local store was created
    local = run_json("--store", str(tmp_path / "s.db"), "info")["data"]
    assert (local["backend"], local["profile"], local["storeSource"]) == ("local", None, "--store")


# --------------------------------------------------------------------------- the commands


def test_cli_round_trip(config_file, tmp_path, monkeypatch):
    created = run_json("config", "create", "prod-eu", *CREATE_ARGS, "--secret-env",
                       "ENOS_APP_SECRET", "--workers", "8", "--rate", "20", "--select")["data"]  # fmt: skip
    assert created["name"] == "prod-eu" and created["current"] is True
    assert created["secret"] == "env:ENOS_APP_SECRET (NOT SET)"
    assert created["workers"] == 8 and created["maxRequestsPerSecond"] == 20
    assert "max_requests_per_second = 20\n" in config_file.read_text()  # not 20.0
    run_json("config", "create", "staging", *CREATE_ARGS, "--secret-file", "staging.txt")
    stored = profiles.get_profile("staging").secret.file
    assert stored == str(Path.cwd() / "staging.txt")  # a path typed here is kept absolute
    again = run("config", "create", "staging", *CREATE_ARGS, "--secret-env", "X")
    assert again.exit_code == 1 and "already exists" in again.stderr and "--replace" in again.stderr

    group = run_json("config", "add-group", "prod-eu", "meters-eu", "--name", "Smart meters EU",
                     "--secret-env", "METERS_GROUP_SECRET", "--masterdata",
                     str(ROOT / "examples" / "masterdata.toml"), "--product-key", "pk1",
                     "--timezone", "+01:00")["data"]  # fmt: skip
    assert group["groups"][0]["groupId"] == "meters-eu"
    assert group["groups"][0]["timezone"] == "+01:00"
    bad_tz = run("config", "add-group", "prod-eu", "g2", "--timezone", "CET+1")
    assert bad_tz.exit_code == 1 and "neither a UTC offset" in bad_tz.stderr
    assert group["groups"][0]["masterdata"] == str(ROOT / "examples" / "masterdata.toml")
    bad_md = run("config", "add-group", "prod-eu", "g2", "--masterdata", str(tmp_path / "no.toml"))
    assert bad_md.exit_code == 1 and "no such file" in bad_md.stderr

    listed = run_json("config", "list")["data"]
    assert [(p["name"], p["current"], p["groups"]) for p in listed] == [
        ("prod-eu", True, ["meters-eu"]),
        ("staging", False, []),
    ]
    table = run("config", "list")
    assert "prod-eu" in table.stdout and "meters-eu" in table.stdout

    assert run_json("config", "show")["data"]["name"] == "prod-eu"  # the current one
    assert run_json("config", "show", "staging")["data"]["name"] == "staging"
    assert run_json("--profile", "staging", "config", "show")["data"]["name"] == "staging"
    monkeypatch.setenv("ENOSPROV_PROFILE", "staging")
    assert run_json("config", "show")["data"]["name"] == "staging"
    used = run("config", "use", "prod-eu")
    assert used.exit_code == 0 and "ENOSPROV_PROFILE=staging" in used.stderr
    monkeypatch.delenv("ENOSPROV_PROFILE")

    assert run_json("config", "use", "staging")["data"]["current"] == "staging"
    assert run_json("config", "use", "--local")["data"]["current"] is None
    assert Settings.resolve().backend == "local"
    assert run("config", "use").exit_code == 1
    assert run("config", "use", "prod-eu", "--local").exit_code == 1
    nothing = run("config", "show")
    assert nothing.exit_code == 1 and "no profile selected" in nothing.stderr
    run_json("config", "use", "prod-eu")

    removed = run_json("config", "remove-group", "prod-eu", "meters-eu")["data"]
    assert removed == {"profile": "prod-eu", "removed": "meters-eu"}

    refused = run("config", "delete", "prod-eu")  # no terminal to ask on
    assert refused.exit_code == 1
    assert "without confirmation" in refused.stderr and "--yes" in refused.stderr
    assert "prod-eu" in profiles.load().profiles
    deleted = run_json("config", "delete", "prod-eu", "--yes")["data"]
    assert deleted == {"deleted": "prod-eu", "wasCurrent": True}
    assert profiles.load().current is None
    missing = run_json("config", "delete", "prod-eu", "--yes", expect=1)
    assert missing["error"]["code"] == "not_found"
    assert "known: staging" in missing["error"]["message"]


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        ([], "a secret is required"),
        (["--secret-env", "A", "--secret-file", "b"], "exactly one of"),
        (["--secret-env", "A B"], "not an environment variable name"),
        (["--secret-env", "A", "--dps-url", "nope"], "is not an http"),
        (["--secret-env", "A", "--timeout", "0"], "timeout must be > 0"),
    ],
)
def test_cli_create_refuses_bad_input_with_one_line(config_file, args, needle):
    result = run("config", "create", "p", *CREATE_ARGS, *args)  # a repeated option: last wins
    assert result.exit_code == 1
    assert needle in result.stderr and "Traceback" not in result.stderr
    assert not config_file.exists()


def test_cli_never_prints_a_secret(tmp_path, monkeypatch):
    monkeypatch.setenv("ENOS_APP_SECRET", APP_SECRET)
    monkeypatch.setenv("GRP_ENV", GROUP_SECRET_ENV)
    secret_file = tmp_path / "grp.txt"
    secret_file.write_text(GROUP_SECRET_FILE + "\n")
    outputs = []

    def call(*args, input=None):
        result = run(*args, input=input)
        assert result.exit_code == 0, (args, result.stdout, result.stderr)
        outputs.append(result.stdout + result.stderr)

    call("config", "create", "prod-eu", *CREATE_ARGS, "--secret-env", "ENOS_APP_SECRET",
         "--select")  # fmt: skip
    call("config", "add-group", "prod-eu", "g-env", "--secret-env", "GRP_ENV")
    call("config", "add-group", "prod-eu", "g-file", "--secret-file", str(secret_file))
    call("config", "add-group", "prod-eu", "g-inline", "--secret-stdin",
         input=GROUP_SECRET_INLINE)  # fmt: skip
    for as_json in ([], ["--json"]):
        call("config", "list", *as_json)
        call("config", "show", *as_json)
        call("config", "show", "prod-eu", *as_json)
        call("info", *as_json)
        call("config", "use", "prod-eu", *as_json)
    everything = "\n".join(outputs)
    assert "env:GRP_ENV (set)" in everything and "inline (stored in the config file)" in everything
    for secret in SECRETS:
        assert secret not in everything
