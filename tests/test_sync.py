"""Offline first (issue 18, first part): a plant imports its tenant's group, registers, burns and
labels on its local store (SQLite or PostgreSQL) while EnOS is out of reach, then pushes to
EnOS (the emulator): idempotent, resumable after kill -9, safe against faults and lost answers;
the offline files bootstrap in EnOS; lifecycle changes in an imported group are refused."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest
from conftest import (
    APP_KEY,
    APP_SECRET,
    ROOT,
    STORES,
    Cli,
    enos_backend,
    make_group,
    meters_rows,
    profile_for,
    query_store,
)

MASTERDATA = ROOT / "examples" / "masterdata.toml"
GROUP = "meters-eu"
N = 1200  # devices of the end-to-end run (over 1,000: pushed in 3 chunks, links written between)


@pytest.fixture(params=STORES)
def plant(request, tmp_path) -> Path | str:
    """The plant's own store: an SQLite file, or a PostgreSQL database."""
    if request.param == "postgres":
        return request.getfixturevalue("fresh_database")
    return tmp_path / "plant.db"


@pytest.fixture
def tenant(emulator, store_path, tmp_path, monkeypatch):
    """The EnOS tenant (the emulator over store_path) with group meters-eu, and a profile
    "prod" that knows the group, its secret and its master data file."""
    be = enos_backend(emulator, store_path)
    profile_for(emulator, make_group(be, product_key="pk1"), tmp_path, monkeypatch)
    yield be
    be.close()


def run(*args: str) -> dict:
    """The CLI without --store (e.g. with the root --profile); its --json data."""
    from typer.testing import CliRunner

    from enosprov.cli import app

    result = CliRunner().invoke(app, [*args, "--json"], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)["data"]


def _in_enos(store_path) -> Counter:
    return Counter(r[0] for r in query_store(store_path, "SELECT device_sn FROM devices"))


def test_offline_plant_pushes_and_its_files_bootstrap_in_enos(
    tenant, plant, store_path, tmp_path, write_csv
):
    """Issue 18's end to end: 1,200 devices registered, burned (NVS) and labelled offline;
    pushed; a unit bootstraps with its offline file; its offline label finds it in EnOS; a
    pull shows it connected in the plant's batch view."""
    cli = Cli(plant)
    first = cli.json("group", "import", GROUP, "--profile", "prod")["data"]
    assert (first["status"], first["masterdataGroupId"]) == ("created", "meters")
    assert cli.json("group", "import", GROUP, "--profile", "prod")["data"]["status"] == "unchanged"
    imports = cli.json("log", "--operation", "group-import")["data"]
    assert [(e["groupId"], e["detail"]["profile"]) for e in imports] == [(GROUP, "prod")]
    # offline: register, burn, label on the plant's store
    reg = cli.json("register", "--csv", str(write_csv(meters_rows(N))), "--group", GROUP,
                   "--batch-tag", "B-1")["data"]  # fmt: skip
    assert reg["created"] == N
    files = tmp_path / "nvs"
    cli.json("burn", "export", "--group", GROUP, "--burn-format", "nvs", "--out", str(files),
             "--dps-url", tenant.config.dps_url)  # fmt: skip
    labels = tmp_path / "labels"
    cli.json("qr", "batch", "--group", GROUP, "--label-format", "png", "--out", str(labels))
    spool = tmp_path / "printer.zpl"  # and printed: a file printer receives every label
    printed = cli.json("qr", "batch", "--group", GROUP, "--label-format", "zpl", "--out",
                       str(tmp_path / "zpl"), "--printer", f"file:{spool}")["data"]  # fmt: skip
    assert spool.read_text(encoding="utf-8").count("^XA") == N, printed
    offline_label = labels / "SN-000007.png"
    scanned = cli.json("qr", "scan", str(offline_label))["data"]
    (code,) = scanned["images"][0]["codes"]
    # an offline label carries no system sn: the store's would mean nothing in EnOS
    assert code["payload"]["deviceSn"] == "SN-000007" and not code["payload"]["sn"]
    assert code["device"]["deviceSn"] == "SN-000007"
    assert _in_enos(store_path) == Counter()  # nothing reached EnOS yet
    status = cli.json("sync", "status", "--profile", "prod", "--group", GROUP)["data"]
    assert status == [{"groupId": GROUP, "batchTag": "B-1", "onlyLocal": N, "onlyEnos": 0,
                       "different": 0, "inSync": 0}]  # fmt: skip

    dry = cli.json("sync", "push", "--profile", "prod", "--group", GROUP, "--dry-run")["data"]
    assert (dry["created"], dry["dryRun"]) == (N, True) and _in_enos(store_path) == Counter()
    pushed = cli.json("sync", "push", "--profile", "prod", "--group", GROUP)["data"]
    assert (pushed["created"], pushed["conflicts"], pushed["failed"]) == (N, 0, 0)
    assert set(_in_enos(store_path).values()) == {1} and len(_in_enos(store_path)) == N
    again = cli.json("sync", "push", "--profile", "prod", "--group", GROUP)["data"]
    assert (again["alreadyPushed"], again["created"]) == (N, 0)
    status = cli.json("sync", "status", "--profile", "prod", "--group", GROUP)["data"]
    assert status[0]["inSync"] == N and status[0]["onlyLocal"] == 0
    # a file burned offline bootstraps against EnOS and lands allocated there
    session = run("--profile", "prod", "device", "bootstrap", str(files / "SN-000007.nvs.bin"))
    assert session["deviceSn"] == "SN-000007"
    in_enos = tenant.find_by_device_sn(GROUP, "SN-000007")
    assert in_enos.allocated and in_enos.device_key == session["deviceKey"]
    # the label printed offline finds the device in EnOS; the store shows both sns
    found = run("--profile", "prod", "qr", "scan", str(offline_label))
    in_enos_sn = tenant.find_by_device_sn(GROUP, "SN-000007").sn
    assert in_enos_sn in json.dumps(found)
    shown = cli.json("devices", "show", "SN-000007")["data"]
    assert shown["enosSn"] == in_enos_sn and shown["sn"] != in_enos_sn
    # a label printed now carries the EnOS sn
    cli.json("qr", "batch", "--group", GROUP, "--label-format", "png", "--device-sn",
             "SN-000007", "--out", str(tmp_path / "after"))  # fmt: skip
    after = cli.json("qr", "scan", str(tmp_path / "after" / "SN-000007.png"))["data"]
    assert in_enos_sn in json.dumps(after)
    # pull: the field comes back into the plant's store, and its batch view
    pulled = cli.json("sync", "pull", "--profile", "prod", "--group", GROUP)["data"]
    assert (pulled["inEnos"], pulled["updated"], pulled["goneFromEnos"]) == (N, 1, 0)
    local = cli.json("devices", "show", "SN-000007")["data"]
    assert (local["allocateStatus"], local["connectStatus"]) == ("allocated", "connected")
    assert local["deviceKey"] == session["deviceKey"]
    batch = cli.json("batches", "show", "B-1", "--group", GROUP)["data"]
    assert (batch["counts"]["allocated"], batch["counts"]["connected"]) == (1, 1)
    again = cli.json("sync", "pull", "--profile", "prod", "--group", GROUP)["data"]
    assert (again["updated"], again["unchanged"]) == (0, N)
    gone = tenant.find_by_device_sn(GROUP, "SN-000009")
    tenant.delete(GROUP, [gone.sn])
    pulled = cli.json("sync", "pull", "--profile", "prod", "--group", GROUP)["data"]
    assert pulled["goneFromEnos"] == 1 and pulled["goneList"][0]["deviceSn"] == "SN-000009"
    # the push was journaled on the plant's store, with the EnOS sns
    log = cli.json("log", "--operation", "sync-push")["data"]
    assert sum(e["deviceCount"] for e in log) == N
    enos_sns = {d["sn"] for e in log for d in e["devices"]}
    assert enos_sns == {r[0] for r in query_store(store_path, "SELECT sn FROM devices")} | {gone.sn}


def test_a_group_with_another_secret_is_never_pushed(tenant, plant, write_csv):
    cli = Cli(plant)
    assert cli("masterdata", "create", "--file", str(MASTERDATA)).exit_code == 0
    cli.json("group", "create", "--id", GROUP, "--name", "Meters EU", "--product-key", "pk1",
             "--masterdata", "meters")  # fmt: skip
    cli.json("register", "--csv", str(write_csv(meters_rows(3))), "--group", GROUP)
    refused = cli("sync", "push", "--profile", "prod", "--group", GROUP)
    assert refused.exit_code == 1
    assert "another group secret" in refused.stderr and "fail to bootstrap" in refused.stderr
    imported = cli("group", "import", GROUP, "--profile", "prod", "--json")
    assert imported.exit_code == 7 and "groupSecret" in imported.stdout


def test_conflicts_are_listed_and_overwritten_only_when_asked(tenant, plant, write_csv):
    cli = Cli(plant)
    cli.json("group", "import", GROUP, "--profile", "prod")
    cli.json("register", "--csv", str(write_csv(meters_rows(5))), "--group", GROUP)
    from enosprov import api

    # the tenant already holds SN-000002 with another capacity
    api.register_csv(tenant, write_csv(meters_rows(1, start=2).replace(",42,", ",99,"),
                                       name="t.csv"), GROUP)  # fmt: skip
    result = cli("sync", "push", "--profile", "prod", "--group", GROUP, "--json")
    assert result.exit_code == 5, result.output
    data = json.loads(result.stdout)["data"]
    assert (data["created"], data["conflicts"]) == (4, 1)
    assert data["conflictList"][0]["deviceSn"] == "SN-000002"
    assert "max_capacity" in data["conflictList"][0]["differences"]
    assert tenant.find_by_device_sn(GROUP, "SN-000002").device_data["max_capacity"] == 99
    over = cli.json("sync", "push", "--profile", "prod", "--group", GROUP, "--overwrite")["data"]
    assert (over["overwritten"], over["conflicts"], over["alreadyPushed"]) == (1, 0, 4)
    assert tenant.find_by_device_sn(GROUP, "SN-000002").device_data["max_capacity"] == 42


def test_replace_reprovision_delete_are_refused_in_an_imported_group(tenant, plant, write_csv):
    cli = Cli(plant)
    cli.json("group", "import", GROUP, "--profile", "prod")
    cli.json("register", "--csv", str(write_csv(meters_rows(3))), "--group", GROUP)
    for args in (
        ("replace", "SN-000001", "--new-device-sn", "SN-NEW-1", "--group", GROUP, "--yes"),
        ("devices", "delete", "SN-000002", "--group", GROUP, "--yes"),
        ("reprovision", "SN-000003", "--group", GROUP, "--region", "eu2", "--org", "o2", "--yes"),
    ):
        result = cli(*args)
        assert result.exit_code == 1, (args, result.output)
        assert "synced with EnOS profile 'prod'" in result.stderr
        assert "--profile prod" in result.stderr
    assert len(query_store(plant, "SELECT sn FROM devices")) == 3  # nothing changed


def test_push_through_faults_and_kill_9_creates_each_device_once(
    emulator, tenant, store_path, tmp_path, write_csv
):
    """30 % of EnOS calls fail (500/429) or lose their answer; the push is killed with SIGKILL
    mid-run, then run again until done: every device exactly once in EnOS, all linked."""
    from enosprov.emulator.app import Faults, create_app

    plant = tmp_path / "plant.db"
    cli = Cli(plant)
    cli.json("group", "import", GROUP, "--profile", "prod")
    cli.json("register", "--csv", str(write_csv(meters_rows(400))), "--group", GROUP)
    emulator.holder["app"] = create_app(
        store_path, app_key=APP_KEY, app_secret=APP_SECRET,
        faults=Faults(fail_rate=0.2, drop_rate=0.1, seed=7),
    )  # fmt: skip
    cmd = [sys.executable, "-m", "enosprov", "--store", str(plant), "sync", "push", "--profile",
           "prod", "--group", GROUP, "--json"]  # fmt: skip
    killed_at = []
    for at in (40, 150, 290):  # killed three times, at points the faults make random
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                env=os.environ)  # fmt: skip
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and len(_in_enos(store_path)) < at:
            if proc.poll() is not None:  # stopped by the faults: run it again
                proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                        env=os.environ)  # fmt: skip
            time.sleep(0.01)
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
        killed_at.append(len(_in_enos(store_path)))
    assert killed_at[-1] < 400, killed_at  # the last kill came before the end
    for _ in range(5):  # faults may stop a run (retries exhausted): run again until done
        rerun = subprocess.run(cmd, capture_output=True, text=True, env=os.environ, timeout=300)
        if rerun.returncode == 0:
            break
    assert rerun.returncode == 0, rerun.stderr
    in_enos = _in_enos(store_path)
    assert len(in_enos) == 400 and set(in_enos.values()) == {1}
    links = query_store(plant, "SELECT count(*), count(DISTINCT enos_sn) FROM sync_links")
    assert links == [(400, 400)]
    # pull through the same faults: every device's state, once
    for sn in [tenant.find_by_device_sn(GROUP, f"SN-{i:06d}").sn for i in (1, 2, 3)]:
        tenant.store.allocate(sn)  # allocated in EnOS (as a bootstrap leaves it)
    for _ in range(5):
        pulled = cli("sync", "pull", "--profile", "prod", "--group", GROUP, "--json")
        if pulled.exit_code == 0:
            break
    assert pulled.exit_code == 0, pulled.output
    data = json.loads(pulled.stdout)["data"]
    assert (data["inEnos"], data["goneFromEnos"], data["onlyInEnos"]) == (400, 0, 0)
    allocated = query_store(plant, "SELECT count(*) FROM devices WHERE allocate_status='allocated'")
    assert allocated == [(3,)]


def test_links_and_their_journal_record_commit_together(tenant, tmp_path, write_csv, monkeypatch):
    """A push's links and its "sync-push" record are one store transaction: if the record
    cannot be written, no link is kept (the next push finds the devices in EnOS and links them,
    with their record)."""
    from enosprov import api
    from enosprov.core.sync import push
    from enosprov.journal import Journal
    from enosprov.settings import Settings

    plant = tmp_path / "plant.db"
    cli = Cli(plant)
    cli.json("group", "import", GROUP, "--profile", "prod")
    cli.json("register", "--csv", str(write_csv(meters_rows(30))), "--group", GROUP)
    with (
        api.open_session(plant) as s,
        api.open_session(settings=Settings.resolve(profile="prod")) as p,
    ):

        def broken(self, conn, *args, **kw):
            raise RuntimeError("disk full")

        with monkeypatch.context() as m:
            m.setattr(Journal, "record_with", broken)
            with pytest.raises(RuntimeError, match="disk full"):
                push(s.backend, p.backend, GROUP, profile="prod", journal=s.journal)
        assert s.backend.pushed_links(GROUP) == {}
        report = push(s.backend, p.backend, GROUP, profile="prod", journal=s.journal)
        assert (report.created, report.found) == (0, 30)  # created by the first, linked now
    log = cli.json("log", "--operation", "sync-push")["data"]
    assert sum(e["deviceCount"] for e in log) == 30
