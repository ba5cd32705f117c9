"""The CLI contract: help with examples, exit codes, the --json envelope, one-line errors."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from conftest import ROOT, file_mode, meters_rows

from enosprov.cli import app

COMMANDS = [
    ["store", "copy"],
    ["sync", "push"],
    ["sync", "pull"],
    ["sync", "status"],
    ["group", "import"],
    ["group", "create"],
    ["group", "update"],
    ["masterdata", "update"],
    ["template", "masterdata"],
    ["group", "list"],
    ["group", "show"],
    ["masterdata", "create"],
    ["masterdata", "list"],
    ["masterdata", "show"],
    ["template", "csv"],
    ["template", "label"],
    ["template", "burn"],
    ["register"],
    ["devices", "list"],
    ["devices", "show"],
    ["devices", "export"],
    ["info"],
    ["doctor"],
    ["burn", "export"],
    ["burn", "verify"],
    ["qr", "batch"],
    ["qr", "scan"],
    ["qr", "print"],
    ["serve"],
    ["config", "create"],
    ["config", "add-group"],
    ["config", "remove-group"],
    ["config", "list"],
    ["config", "show"],
    ["config", "use"],
    ["config", "delete"],
    ["device", "bootstrap"],
    ["device", "conninfo"],
    ["devices", "update"],
    ["devices", "delete"],
    ["devices", "allocate"],
    ["devices", "history"],
    ["reprovision"],
    ["replace"],
    ["log"],
    ["batches", "list"],
    ["batches", "show"],
    ["batches", "report"],
    ["station"],
]


def all_commands(typer_app=app, prefix=()):
    import typer.main

    click_app = typer.main.get_command(typer_app)

    def walk(cmd, path):
        subs = getattr(cmd, "commands", None)
        if subs:
            for name, sub in subs.items():
                yield from walk(sub, (*path, name))
        else:
            yield list(path)

    return list(walk(click_app, prefix))


def test_every_command_is_listed_here():
    assert sorted(map(tuple, all_commands())) == sorted(map(tuple, COMMANDS))


@pytest.mark.parametrize("command", COMMANDS, ids=" ".join)
def test_every_command_has_help_with_an_example(cli, command):
    result = cli(*command, "--help")
    assert result.exit_code == 0
    assert "Example" in result.stdout
    assert "enosprov " in result.stdout.split("Example", 1)[1]


@pytest.mark.parametrize("command", [c for c in COMMANDS if c != ["group", "create"]], ids=" ".join)
def test_every_reporting_command_has_json(cli, command):
    assert "--json" in cli(*command, "--help").stdout


def test_version_and_module_entry_point():
    out = subprocess.run(
        [sys.executable, "-m", "enosprov", "--version"], capture_output=True, text=True, check=True
    )
    assert out.stdout.strip().startswith("enosprov ")


def test_cli_import_stays_light():
    code = (
        "import sys, enosprov.cli; "
        "print(sorted(m for m in ('rich', 'sqlite3', 'requests', 'pydantic', 'enosprov.api') "
        "if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_info_reports_the_store_and_why(cli, store_location, tmp_path, monkeypatch):
    data = cli.json("info")["data"]
    if isinstance(store_location, str):  # the PostgreSQL store: its URL (no password in it)
        assert data["store"] == store_location and data["storeDatabase"].startswith("PostgreSQL")
    else:
        assert data["store"] == str(store_location.resolve())
    assert data["storeSource"] == "--store"
    from typer.testing import CliRunner

    env_store = tmp_path / "from-env.db"
    result = CliRunner().invoke(app, ["info", "--json"], env={"ENOSPROV_STORE": str(env_store)})
    assert json.loads(result.stdout)["data"]["storeSource"] == "ENOSPROV_STORE"
    assert env_store.exists()
    result = CliRunner().invoke(app, ["info", "--json"])
    data = json.loads(result.stdout)["data"]
    assert data["storeSource"] == "default"
    assert data["store"].startswith(str(tmp_path / "xdg-data")) or sys.platform in (
        "win32",
        "darwin",
    )


def test_masterdata_and_group_lifecycle(cli, tmp_path):
    md = cli.json("masterdata", "create", "--file", str(ROOT / "examples" / "masterdata.toml"))
    assert md["data"]["id"] == "meters"
    assert [a["identifier"] for a in md["data"]["attributes"]] == [
        "max_capacity",
        "phase",
        "install_date",
        "site",
    ]
    again = cli("masterdata", "create", "--file", str(ROOT / "examples" / "masterdata.toml"))
    assert again.exit_code == 0 and again.stdout.startswith("unchanged")  # set-up runs again
    created = cli.json(
        "group", "create", "--id", "g1", "--name", "Group one", "--product-key", "pk1",
        "--masterdata", "meters", "--region", "eu2", "--org", "o1",
    )["data"]  # fmt: skip
    assert created["groupId"] == "g1"
    assert "groupSecret" not in created
    listed = cli.json("group", "list")["data"]
    assert [(g["groupId"], g["devices"]) for g in listed] == [("g1", 0)]
    shown = cli.json("group", "show", "Group one")["data"]
    assert shown["groupId"] == "g1" and "groupSecret" not in shown
    secret = cli.json("group", "show", "g1", "--with-secrets")["data"]["groupSecret"]
    assert len(secret) == 32 and secret.isalnum()
    text = cli("group", "show", "g1")
    assert secret not in text.stdout and "hidden" in text.stdout
    assert secret in cli("group", "show", "g1", "--with-secrets").stdout
    assert cli.json("masterdata", "show", "meters")["data"]["name"] == "Smart meters"
    assert {m["id"] for m in cli.json("masterdata", "list")["data"]} == {"builtin", "meters"}


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["--name", "x" * 65, "--product-key", "pk"], "1-64 characters"),
        (["--name", "ok", "--product-key", "pk", "--region", "eu2"], "both a region"),
        (["--name", "ok", "--product-key", "pk", "--masterdata", "nope"], "not found"),
        (["--name", "ok", "--product-key", "bad key"], "product key"),
        (["--name", "ok", "--product-key", "pk", "--sign-scheme", "md5"], "signing scheme"),
        (["--name", "ok", "--product-key", "pk", "--sn-pattern", "(["], "pattern"),
        (["--name", "ok", "--product-key", "pk", "--desc", "d" * 513], "512"),
        (["--name", "ok", "--product-key", "pk", "--timezone", "UTC+8"], "default timezone"),
    ],
)
def test_group_create_refuses_bad_input_with_one_line(cli, args, needle):
    result = cli("group", "create", *args)
    assert result.exit_code == 1
    assert needle in result.stderr
    assert "Traceback" not in result.stderr + result.stdout
    assert result.stderr.lower().startswith("error")
    err = cli.json("group", "create", *args, expect=1)["error"]
    assert needle in err["message"] + err.get("hint", "")
    assert cli.json("group", "list")["data"] == []


@pytest.mark.parametrize(
    ("option", "value", "choices"),
    [("--reprovision", "sometimes", "'migrate', 'initialize', 'never'"),
     ("--model", "shared", "'public', 'private'")],
)  # fmt: skip
def test_group_create_choices_are_usage_errors(cli, option, value, choices):
    # a fixed set of values is a choice of the command line (exit 2), listed in --help
    result = cli("group", "create", "--name", "ok", "--product-key", "pk", option, value)
    assert result.exit_code == 2 and choices in result.stderr
    assert "Traceback" not in result.stderr + result.stdout
    assert cli.json("group", "list")["data"] == []


def test_group_default_timezone(cli):
    created = cli.json("group", "create", "--id", "a", "--name", "A", "--product-key", "pk",
                       "--timezone", "Asia/Shanghai")["data"]  # fmt: skip
    assert created["timezone"] == "Asia/Shanghai"
    cli.json("group", "create", "--id", "b", "--name", "B", "--product-key", "pk")
    assert [g["timezone"] for g in cli.json("group", "list")["data"]] == ["Asia/Shanghai", None]
    assert cli.json("group", "show", "a")["data"]["timezone"] == "Asia/Shanghai"
    assert "default timezone    Asia/Shanghai" in cli("group", "show", "a").stdout


def test_group_names_and_ids_are_unique(cli):
    cli.json("group", "create", "--id", "a", "--name", "A", "--product-key", "pk")
    # the same id or name with another definition: "already exists, different" (exit 7)
    assert cli("group", "create", "--id", "a", "--name", "B", "--product-key", "pk").exit_code == 7
    other_id = cli("group", "create", "--id", "b", "--name", "A", "--product-key", "pk")
    assert other_id.exit_code == 7 and "groupId: 'a' in the store, 'b' given" in other_id.stderr
    assert len(cli.json("group", "list")["data"]) == 1


def test_generated_group_ids_and_secrets_differ(cli):
    one = cli.json("group", "create", "--name", "one", "--product-key", "pk")["data"]
    two = cli.json("group", "create", "--name", "two", "--product-key", "pk")["data"]
    assert one["groupId"] != two["groupId"]
    s1 = cli.json("group", "show", "one", "--with-secrets")["data"]["groupSecret"]
    s2 = cli.json("group", "show", "two", "--with-secrets")["data"]["groupSecret"]
    assert s1 != s2


def test_template_csv_prints_the_groups_header(cli, group, tmp_path):
    result = cli("template", "csv", "--group", "meters-eu")
    assert result.exit_code == 0
    header = result.stdout.strip().split(",")
    assert header[0] == "deviceSn"
    assert header[-4:] == ["max_capacity", "phase", "install_date", "site"]
    out = tmp_path / "t.csv"
    data = cli.json("template", "csv", "--group", "meters-eu", "--out", str(out))["data"]
    assert out.read_text().strip().split(",") == data["columns"] == header
    generic = (ROOT / "templates" / "devices-template.csv").read_text(encoding="utf-8-sig")
    assert generic.strip().split(",") == header[: len(header) - 4]


def test_unknown_group_is_one_clear_error(cli, group, write_csv):
    result = cli("register", "--csv", str(write_csv(meters_rows(1))), "--group", "nope")
    assert result.exit_code == 1
    assert "nope" in result.stderr and "not found" in result.stderr
    assert len(result.stderr.strip().splitlines()) <= 2  # error line + hint line
    assert (
        cli.json("register", "--csv", "missing.csv", "--group", "meters-eu", expect=1)["error"][
            "code"
        ]
        == "invalid_input"
    )


def test_register_json_shape_and_exit_codes(cli, group, write_csv):
    path = write_csv(meters_rows(4))
    data = cli.json("register", "--csv", str(path), "--group", "meters-eu")["data"]
    assert {k: data[k] for k in ("rows", "created", "skipped", "conflicts", "invalid")} == {
        "rows": 4,
        "created": 4,
        "skipped": 0,
        "conflicts": 0,
        "invalid": 0,
    }
    assert data["groupId"] == "meters-eu" and data["dryRun"] is False
    again = cli.json("register", "--csv", str(path), "--group", "meters-eu")["data"]
    assert again["skipped"] == 4
    changed = write_csv(meters_rows(4).replace("Hall 1", "Hall 9"), name="changed.csv")
    conflict = cli.json("register", "--csv", str(changed), "--group", "meters-eu", expect=5)
    assert conflict["data"]["conflicts"] >= 1
    bad = write_csv(meters_rows(2).replace("single", "double"), name="bad.csv")
    err = cli.json("register", "--csv", str(bad), "--group", "meters-eu", expect=1)["error"]
    assert err["code"] == "validation_failed"
    assert {(i["row"], i["column"]) for i in err["issues"]} == {(2, "phase"), (3, "phase")}


def test_devices_list_show_export(cli, group, write_csv, tmp_path):
    cli.json("register", "--csv", str(write_csv(meters_rows(5))), "--group", "meters-eu",
             "--batch-tag", "B-1")  # fmt: skip
    page = cli.json("devices", "list", "--group", "meters-eu", "--limit", "2")["data"]
    assert page["pagination"] == {"pageNo": 1, "pageSize": 2, "total": 5}
    assert len(page["items"]) == 2
    by_sn = cli.json("devices", "list", "--sort", "deviceSn:asc", "--limit", "5")["data"]["items"]
    assert [d["deviceSn"] for d in by_sn] == [f"SN-{i:06d}" for i in range(1, 6)]
    assert all("deviceSecret" not in d for d in by_sn)
    one = cli.json("devices", "show", "SN-000003")["data"]
    assert one["deviceData"]["max_capacity"] == 43 and one["batchTag"]["defaultValue"] == "B-1"
    assert cli.json("devices", "show", one["sn"])["data"]["deviceSn"] == "SN-000003"
    missing = cli("devices", "show", "SN-999999")
    assert missing.exit_code == 1 and "SN-999999" in missing.stderr

    out = tmp_path / "export.csv"
    rep = cli.json("devices", "export", "--group", "meters-eu", "--out", str(out))["data"]
    assert rep["devices"] == 5 and rep["includeSecrets"] is False
    lines = out.read_text(encoding="utf-8-sig").splitlines()
    assert lines[0].split(",")[:2] == ["sn", "deviceSn"] and "deviceSecret" not in lines[0]
    assert lines[0].endswith("max_capacity,phase,install_date,site")
    assert len(lines) == 6
    jl = tmp_path / "export.jsonl"
    cli.json("devices", "export", "--batch-tag", "B-1", "--out", str(jl), "--with-secrets")
    records = [json.loads(x) for x in jl.read_text().splitlines()]
    assert len(records) == 5 and all("deviceSecret" in r for r in records)
    if sys.platform != "win32":
        assert file_mode(jl) == 0o600
        assert file_mode(out) & 0o077 != 0o077  # a file without secrets keeps the umask default
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]


def test_internal_errors_are_one_line_without_debug(cli, monkeypatch):
    import enosprov.backends.local as local

    def boom(self):
        raise RuntimeError("secret-looking detail")

    monkeypatch.setattr(local.LocalBackend, "list_groups", boom)
    result = cli("group", "list")
    assert result.exit_code == 1
    assert "internal error: RuntimeError" in result.stderr
    assert "secret-looking detail" not in result.stderr and "Traceback" not in result.stderr
    with pytest.raises(RuntimeError):
        cli.runner.invoke(
            app, ["--store", str(cli.store), "--debug", "group", "list"], catch_exceptions=False
        )


def test_usage_errors_exit_2(cli):
    assert cli("register").exit_code == 2
    assert cli("no-such-command").exit_code == 2
