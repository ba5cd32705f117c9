"""Through an EnOS profile against the strict emulator, as a user drives it (issue 11):

- a server serving 50 devices a page still gives all 60 of 60 devices to `devices list`,
  `devices export`, `burn export`, `qr batch`, `batches` and `register`'s look-ups;
- a device bootstrapped in one OU, reprovisioned with --region/--org, lands in the new OU when
  the same burned file bootstraps again; `devices allocate --region/--org` allocates there too.
"""

from __future__ import annotations

import csv
import json

import pytest
from conftest import APP_KEY, APP_SECRET, enos_backend, make_group, meters_rows
from typer.testing import CliRunner

from enosprov.emulator.app import Behaviour, create_app

MASTERDATA_TOML = (
    'id = "meters"\nname = "Smart meters"\n'
    '[[attributes]]\nidentifier = "max_capacity"\ntype = "Integer"\nrequired = true\n'
    '[[attributes]]\nidentifier = "phase"\ntype = "Enum"\nvalues = ["single", "three"]\n'
    "required = true\n"
    '[[attributes]]\nidentifier = "install_date"\ntype = "Date"\n'
    '[[attributes]]\nidentifier = "site"\ntype = "String"\nmaxLength = 64\n'
)


@pytest.fixture
def profile_cli(emulator, store_path, tmp_path, monkeypatch):
    """`enosprov --profile emu ...` against the strict emulator serving 50 devices a page."""
    from enosprov.cli import app

    seed = enos_backend(emulator, store_path)
    make_group(seed)  # the console's work: group eu2/o1 with its secret
    lines: list[str] = []
    emulator.holder["app"] = create_app(
        store_path, app_key=APP_KEY, app_secret=APP_SECRET, log=lines.append,
        behaviour=Behaviour(page_size=50),
    )  # fmt: skip
    md = tmp_path / "meters.toml"
    md.write_text(MASTERDATA_TOML, encoding="utf-8")
    monkeypatch.setenv("ENOSPROV_CONFIG", str(tmp_path / "config.toml"))
    monkeypatch.setenv("ENOSPROV_JOURNAL", str(tmp_path / "journal.db"))
    monkeypatch.setenv("EMU_SECRET", APP_SECRET)
    monkeypatch.setenv("METERS_SECRET", seed.get_group("meters-eu").group_secret)
    runner = CliRunner()

    def run(*args: str, expect: int = 0):
        result = runner.invoke(app, [*args], catch_exceptions=False)
        assert result.exit_code == expect, (args, result.stdout, result.stderr)
        return result

    run("config", "create", "emu", "--api-url", emulator.url, "--org", "o1",
        "--access-key", APP_KEY, "--secret-env", "EMU_SECRET", "--dps-url", emulator.url)  # fmt: skip
    run("config", "add-group", "emu", "meters-eu", "--secret-env", "METERS_SECRET",
        "--masterdata", str(md))  # fmt: skip

    def emu(*args: str, expect: int = 0):
        return run("--profile", "emu", *args, expect=expect)

    emu.lines = lines
    yield emu
    seed.close()


def _data(result) -> dict:
    return json.loads(result.stdout)["data"]


def test_sixty_devices_served_fifty_a_page_reach_every_command(profile_cli, tmp_path, write_csv):
    emu = profile_cli
    path = write_csv(meters_rows(60))
    assert _data(emu("register", "--csv", str(path), "--group", "meters-eu",
                     "--batch-tag", "B-60", "--json"))["created"] == 60  # fmt: skip
    # register's look-ups: every row found again
    again = _data(emu("register", "--csv", str(path), "--group", "meters-eu",
                      "--batch-tag", "B-60", "--json"))  # fmt: skip
    assert again["skipped"] == 60 and again["created"] == 0
    assert any("/dps-service/" in x and "action=search" in x for x in emu.lines)

    listed = _data(emu("devices", "list", "--group", "meters-eu", "--limit", "100", "--json"))
    assert len(listed["items"]) == 60 and listed["pagination"]["total"] == 60
    assert len({d["sn"] for d in listed["items"]}) == 60
    second = _data(emu("devices", "list", "--group", "meters-eu", "--limit", "40", "--page", "2",
                       "--json"))  # fmt: skip
    assert len(second["items"]) == 20

    out = tmp_path / "devices.csv"
    emu("devices", "export", "--group", "meters-eu", "--out", str(out))
    with out.open(encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 60 and len({r["deviceSn"] for r in rows}) == 60

    burn = _data(emu("burn", "export", "--group", "meters-eu", "--batch-tag", "B-60",
                     "--out", str(tmp_path / "burn"), "--json"))  # fmt: skip
    assert len(list((tmp_path / "burn").glob("SN-*.json"))) == 60, burn

    emu("qr", "batch", "--group", "meters-eu", "--batch-tag", "B-60", "--label-format", "svg",
        "--out", str(tmp_path / "labels"))  # fmt: skip
    assert len(list((tmp_path / "labels").glob("*.svg"))) == 60

    batches = _data(emu("batches", "list", "--json"))
    (b60,) = [b for b in batches if b.get("batchTag") == "B-60"]
    assert b60["counts"]["registered"] == 60 and b60["counts"]["exported"] == 60, b60


def test_reprovision_and_allocate_move_devices_the_documented_way(profile_cli, tmp_path, write_csv):
    emu = profile_cli
    emu("register", "--csv", str(write_csv(meters_rows(3))), "--group", "meters-eu")
    emu("burn", "export", "--group", "meters-eu", "--out", str(tmp_path / "burn"))
    file = str(tmp_path / "burn" / "SN-000001.json")

    emu("device", "bootstrap", file)  # OU A: the group's target
    dev = _data(emu("devices", "show", "SN-000001", "--group", "meters-eu", "--json"))
    assert (dev["regionId"], dev["orgId"]) == ("eu2", "o1")

    moved = emu("reprovision", "SN-000001", "--group", "meters-eu", "--region", "cn5",
                "--org", "o2", "--yes")  # fmt: skip
    assert "deviceData.regionId/orgId" in moved.stdout + moved.stderr
    waiting = _data(emu("devices", "show", "SN-000001", "--group", "meters-eu", "--json"))
    assert waiting["allocateStatus"] == "init"
    assert (waiting["deviceData"]["regionId"], waiting["deviceData"]["orgId"]) == ("cn5", "o2")
    assert waiting["deviceData"]["max_capacity"] == 41  # migrate kept the master data

    emu("device", "bootstrap", file)  # the same file, again
    dev = _data(emu("devices", "show", "SN-000001", "--group", "meters-eu", "--json"))
    assert (dev["regionId"], dev["orgId"]) == ("cn5", "o2")

    allocated = _data(emu("devices", "allocate", "SN-000002", "--group", "meters-eu",
                          "--region", "us2", "--org", "o7", "--json"))  # fmt: skip
    assert (allocated[0]["regionId"], allocated[0]["orgId"]) == ("us2", "o7")
    emu("device", "bootstrap", str(tmp_path / "burn" / "SN-000002.json"))
    dev = _data(emu("devices", "show", "SN-000002", "--group", "meters-eu", "--json"))
    assert (dev["regionId"], dev["orgId"], dev["connectStatus"]) == ("us2", "o7", "connected")

    entries = [json.loads(line) for line in emu("log", "--jsonl").stdout.splitlines() if line]
    reprov = [e for e in entries if e.get("operation") == "reprovision"]
    assert reprov and "deviceData.regionId/orgId" in json.dumps(reprov[0])
    # one half only is refused before anything changes
    half = emu("devices", "allocate", "SN-000003", "--group", "meters-eu", "--region", "us2",
               expect=1)  # fmt: skip
    assert "both" in half.stderr
    dev = _data(emu("devices", "show", "SN-000003", "--group", "meters-eu", "--json"))
    assert dev["allocateStatus"] == "init"
