"""Input that forgives nothing silently but helps: region ids checked against the known EnOS
environments (with an escape hatch), a results file for refused and dry runs, unknown columns
that can be left out, a decode error at the row of the bad byte."""

from __future__ import annotations

import csv
import json

import pytest
from conftest import make_group, meters_rows

from enosprov.domain.regions import DOCUMENTED_REGIONS, REGIONS_ENV, region_problem


def test_region_rule():
    assert region_problem("eu2") is None
    problem = region_problem("eu9")
    assert "did you mean eu2?" in problem and f"{REGIONS_ENV}=eu9" in problem
    assert region_problem("eu9", {REGIONS_ENV: "cn6, eu9"}) is None
    assert region_problem("anything", {REGIONS_ENV: "*"}) is None
    assert set(DOCUMENTED_REGIONS) == {"cn5", "eu2", "us2", "ppe1"}


def test_a_typo_in_a_region_is_caught_everywhere_before_any_change(cli, store, write_csv):
    make_group(store)
    cli.json("register", "--csv", str(write_csv(meters_rows(2))), "--group", "meters-eu")
    group = cli("group", "create", "--name", "G2", "--product-key", "pk", "--region", "eu9",
                "--org", "o1")  # fmt: skip
    assert group.exit_code == 1 and "did you mean eu2?" in group.stderr
    alloc = cli("devices", "allocate", "SN-000001", "--group", "meters-eu", "--region", "eu9",
                "--org", "o1")  # fmt: skip
    assert alloc.exit_code == 1 and "not a known EnOS environment" in alloc.stderr
    assert not store.find_by_device_sn("meters-eu", "SN-000001").allocated
    rows = "deviceSn,max_capacity,phase,regionId,orgId\nSN-000077,60,single,eu9,o1\n"
    bad = write_csv(rows, name="region.csv")
    reg = cli("register", "--csv", str(bad), "--group", "meters-eu")
    assert reg.exit_code == 1 and "row 2, column regionId" in reg.stderr
    assert store.find_by_device_sn("meters-eu", "SN-000077") is None
    # the escape hatch of a private deployment
    ok = cli("register", "--csv", str(bad), "--group", "meters-eu", env={REGIONS_ENV: "eu9"})
    assert ok.exit_code == 0, ok.stderr
    assert store.find_by_device_sn("meters-eu", "SN-000077").target_region_id == "eu9"


def test_a_refused_run_writes_every_row_with_its_error(cli, store, write_csv, tmp_path):
    make_group(store)
    rows = meters_rows(3) + "SN-000004,Meter 4,+08:00,not-a-number,single,2026-11-01,Hall 1\n"
    path = write_csv(rows)
    out = tmp_path / "results.csv"
    result = cli("register", "--csv", str(path), "--group", "meters-eu", "--results", str(out))
    assert result.exit_code == 1 and str(out) in result.stderr
    with open(out, encoding="utf-8") as fh:
        got = list(csv.DictReader(fh))
    assert [r["outcome"] for r in got] == ["not-registered"] * 3 + ["invalid"]
    assert "max_capacity" in got[3]["error"] and "not registered" in got[0]["error"]
    assert store.device_counts().get("meters-eu", 0) == 0
    # a dry run writes its results too
    dry = tmp_path / "dry.jsonl"
    cli("register", "--csv", str(write_csv(meters_rows(2), name="ok.csv")), "--group",
        "meters-eu", "--dry-run", "--results", str(dry))  # fmt: skip
    assert [json.loads(x)["outcome"] for x in dry.read_text().splitlines()] == ["created"] * 2


def test_unknown_columns_are_an_error_unless_left_out(cli, store, write_csv):
    make_group(store)
    text = meters_rows(2).replace("deviceSn,", "deviceSn,colour,", 1)
    lines = text.splitlines()
    text = "\n".join([lines[0], *(line.replace(",", ",red,", 1) for line in lines[1:])]) + "\n"
    path = write_csv(text)
    refused = cli("register", "--csv", str(path), "--group", "meters-eu")
    assert refused.exit_code == 1 and "--ignore-unknown-columns" in refused.stderr
    data = cli.json("register", "--csv", str(path), "--group", "meters-eu",
                    "--ignore-unknown-columns")["data"]  # fmt: skip
    assert data["created"] == 2 and data["ignoredColumns"] == ["colour"]
    dev = store.find_by_device_sn("meters-eu", "SN-000001")
    assert "colour" not in dev.device_data


@pytest.mark.parametrize("bad_row", [2, 40, 2600])
def test_a_decode_error_names_the_row_of_the_bad_byte(cli, store, tmp_path, bad_row):
    make_group(store)
    lines = [f"SN-{i:06d},60,single" for i in range(1, 3000)]
    lines[bad_row - 2] = lines[bad_row - 2].replace("single", "caf\xe9")
    path = tmp_path / "latin1.csv"
    path.write_bytes(("deviceSn,max_capacity,phase\n" + "\n".join(lines) + "\n").encode("latin-1"))
    result = cli("register", "--csv", str(path), "--group", "meters-eu")
    assert result.exit_code == 1
    assert f"row {bad_row}: the file is not valid UTF-8 (byte 0xe9" in result.stderr
    assert "cp1252" in result.stderr and "latin-1" in result.stderr and "gbk" in result.stderr
    assert store.device_counts().get("meters-eu", 0) == 0
