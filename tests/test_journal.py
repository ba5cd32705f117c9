"""The audit journal: every change appends one record (never a secret), and `enosprov log`
reads them back. Library functions on both backends; the CLI on the local store and through a
profile against the emulator."""

from __future__ import annotations

import json
import sqlite3
import zlib
from pathlib import Path

import pytest
from conftest import (
    APP_KEY,
    APP_SECRET,
    ROOT,
    enos_backend,
    make_group,
    meters_rows,
    query_store,
    store_journal,
)

from enosprov import api
from enosprov import journal as journal_mod
from enosprov.burn.export import Selection, export_burn_files
from enosprov.core.device_ops import (
    allocate_devices,
    delete_devices,
    resolve_devices,
    update_device,
)
from enosprov.core.onboarding import onboard_devices
from enosprov.device import bootstrap_device, device_conninfo, read_credential
from enosprov.errors import InvalidArgumentError, NotFoundError
from enosprov.journal import Actor, Journal
from enosprov.qr.batch import qr_batch


def log_lines(cli, *args: str, env: dict | None = None) -> list[dict]:
    """`enosprov log --jsonl` parsed: one record per line."""
    result = cli("log", *args, "--jsonl", env=env)
    assert result.exit_code == 0, (result.stdout, result.stderr)
    lines = result.stdout.splitlines()
    return [json.loads(line) for line in lines]


def raw_bytes(path: Path) -> bytes:
    """The journal file and its WAL, as stored (and every compressed device list unpacked)."""
    data = b"".join(p.read_bytes() for p in path.parent.glob(path.name + "*"))
    with sqlite3.connect(path) as conn:
        blobs = [r[0] for r in conn.execute("SELECT device_list FROM journal") if r[0]]
    conn.close()
    return data + b"".join(zlib.decompress(b) for b in blobs)


def setup_cli_group(cli, name: str = "meters-eu", **kw: str | None) -> str:
    """Master data (once) and a group through the CLI; the group secret."""
    cli("masterdata", "create", "--file", str(ROOT / "examples" / "masterdata.toml"))
    args = ["group", "create", "--id", name, "--name", name, "--product-key", "pk1",
            "--masterdata", "meters"]  # fmt: skip
    for k, v in {"region": "eu2", "org": "o1", **kw}.items():
        if v is not None:
            args += [f"--{k}", v]
    assert cli(*args).exit_code == 0
    return cli.json("group", "show", name, "--with-secrets")["data"]["groupSecret"]


# -- the CLI on the local store -------------------------------------------------------------------


def test_register_is_journaled_and_found_by_device(cli, write_csv):
    secret = setup_cli_group(cli)
    csv = write_csv(meters_rows(20))
    assert cli("register", "--csv", str(csv), "--group", "meters-eu", "--dry-run").exit_code == 0
    assert [e["operation"] for e in log_lines(cli)] == ["masterdata-create", "group-create"]

    assert cli("register", "--csv", str(csv), "--group", "meters-eu", "--batch-tag", "B-1").exit_code == 0  # fmt: skip
    rerun = cli("register", "--csv", str(csv), "--group", "meters-eu", "--batch-tag", "B-1")
    assert rerun.exit_code == 0  # all skipped
    entries = log_lines(cli)
    assert [e["operation"] for e in entries] == [
        "masterdata-create", "group-create", "register", "register"
    ]  # fmt: skip
    md, grp, first, rerun = entries
    assert md["detail"] == {"id": "meters", "name": "Smart meters", "attributes": 4}
    assert grp["groupId"] == "meters-eu" and grp["detail"]["productKey"] == "pk1"
    assert grp["detail"]["regionId"] == "eu2" and grp["detail"]["reprovisionMethod"] == "migrate"
    assert first["outcome"] == "ok" and first["deviceCount"] == 20
    assert first["groupId"] == "meters-eu" and first["backend"] == "local"
    assert first["detail"]["file"] == str(csv) and first["detail"]["batchTag"] == "B-1"
    assert first["detail"]["batchOrder"] == 1
    assert (first["detail"]["created"], first["detail"]["skipped"]) == (20, 0)
    assert {d["deviceSn"] for d in first["devices"]} == {f"SN-{i:06d}" for i in range(1, 21)}
    assert all(d["sn"] for d in first["devices"])
    assert (rerun["outcome"], rerun["deviceCount"], rerun["detail"]["skipped"]) == ("ok", 0, 20)
    for e in entries:
        assert e["user"] and e["host"] and e["time"].endswith("Z")

    # --device finds the record by deviceSn and by system sn
    found = log_lines(cli, "--device", "SN-000007")
    assert [e["id"] for e in found] == [first["id"]]
    sn = next(d["sn"] for d in first["devices"] if d["deviceSn"] == "SN-000007")
    assert [e["id"] for e in log_lines(cli, "--device", sn)] == [first["id"]]
    assert log_lines(cli, "--device", "SN-999999") == []

    # a run with conflicts is "partial" and lists only what it created
    changed = meters_rows(3, start=19).replace("Hall", "Room")  # 19, 20 conflict; 21 is new
    partial = cli("register", "--csv", str(write_csv(changed, "c.csv")), "--group", "meters-eu",
                  "--batch-tag", "B-1")  # fmt: skip
    assert partial.exit_code == 5
    last = log_lines(cli, "--newest", "--limit", "1")[0]
    assert last["outcome"] == "partial" and last["detail"]["conflicts"] == 2
    assert [d["deviceSn"] for d in last["devices"]] == ["SN-000021"]

    out = cli("log", "--json").stdout + cli("log").stdout
    assert secret not in out


def test_log_human_table_and_out_file(cli, write_csv, tmp_path):
    setup_cli_group(cli)
    cli("register", "--csv", str(write_csv(meters_rows(2))), "--group", "meters-eu")
    text = cli("log")
    assert text.exit_code == 0
    for word in ("register", "group-create", "SN-000001", "SN-000002", "meters-eu"):
        assert word in text.stdout
    out = tmp_path / "audit" / "log.jsonl"
    result = cli("log", "--operation", "register", "--out", str(out))
    assert result.exit_code == 0 and "1 journal record" in result.stdout
    lines = out.read_text(encoding="utf-8").splitlines()
    assert [json.loads(x)["operation"] for x in lines] == ["register"]
    assert not [p for p in out.parent.iterdir() if p.name.endswith(".tmp")]
    bad = cli("log", "--operation", "nonsense")
    assert bad.exit_code == 1 and "unknown operation" in bad.stderr


def test_log_is_read_only(cli, store_path, tmp_path):
    result = cli("log")
    assert result.exit_code == 0 and "no journal records" in result.stderr
    assert log_lines(cli) == []
    assert not store_path.exists()  # reading the journal created no store and no journal
    assert not list(tmp_path.rglob("journal.db"))


def test_station_option_and_env(cli):
    cli("masterdata", "create", "--file", str(ROOT / "examples" / "masterdata.toml"))
    base = ["group", "create", "--product-key", "pk1", "--masterdata", "meters"]
    assert cli("--station", "LINE-3", *base, "--id", "g1", "--name", "g1").exit_code == 0
    env = {"ENOSPROV_STATION": "LINE-7"}
    assert cli(*base, "--id", "g2", "--name", "g2", env=env).exit_code == 0
    assert cli("--station", "LINE-3", *base, "--id", "g3", "--name", "g3", env=env).exit_code == 0
    entries = log_lines(cli, "--operation", "group-create")
    assert [(e["groupId"], e["station"]) for e in entries] == [
        ("g1", "LINE-3"), ("g2", "LINE-7"), ("g3", "LINE-3")
    ]  # fmt: skip
    assert [e["groupId"] for e in log_lines(cli, "--station", "LINE-3")] == ["g1", "g3"]
    assert [e["groupId"] for e in log_lines(cli, "--group", "g2")] == ["g2"]
    assert "LINE-7" in cli("log").stdout


def test_since_until_and_operation_filters(cli, store, store_location, monkeypatch):
    day = 86400
    t0 = journal_mod.parse_time("2026-01-10")
    journal = store_journal(store_location, Actor.current("local", station="S"))
    for i, op in enumerate(("register", "update", "delete", "allocate")):
        with monkeypatch.context() as m:
            m.setattr(journal_mod.time, "time", lambda i=i: t0 / 1000 + i * day)
            journal.record(op, devices=[(f"sn{i}", f"SN-{i}")], group_id="g")
    journal.record("update", devices=[("sn9", "SN-9")], group_id="g")  # now
    journal.close()

    def ops(*args: str) -> list[str]:
        return [e["operation"] for e in log_lines(cli, *args)]

    assert ops() == ["register", "update", "delete", "allocate", "update"]
    assert ops("--since", "2026-01-11", "--until", "2026-01-13") == ["update", "delete"]
    assert ops("--since", "2026-01-11T00:00:00Z", "--until", "2026-01-12T00:00:00+00:00") == [
        "update"
    ]
    assert ops("--until", "2026-01-11") == ["register"]
    assert ops("--since", "1h") == ["update"]  # only the record written now
    assert ops("--operation", "update") == ["update", "update"]
    assert ops("--operation", "delete", "--operation", "register") == ["register", "delete"]
    assert ops("--operation", "update", "--since", "2026-01-01", "--until", "2026-02-01") == [
        "update"
    ]
    assert ops("--newest", "--limit", "2") == ["update", "allocate"]
    assert ops("--device", "SN-2") == ["delete"]
    bad = cli("log", "--since", "last tuesday")
    assert bad.exit_code == 1 and "--since" in bad.stderr


def test_large_register_keeps_a_compressed_list(cli, write_csv, store_location):
    setup_cli_group(cli)
    n = 1500
    assert cli("register", "--csv", str(write_csv(meters_rows(n))), "--group", "meters-eu",
               "--chunk-size", "2000").exit_code == 0  # fmt: skip
    ((entry, count, blob),) = query_store(
        store_location, "SELECT id, devices, device_list FROM journal WHERE operation='register'"
    )
    rows = query_store(
        store_location, "SELECT count(*) FROM journal_devices WHERE entry=?", (entry,)
    )
    assert rows[0][0] == 0  # no row per device past the indexed limit
    assert count == n and blob is not None
    assert len(zlib.decompress(blob).splitlines()) == n
    (found,) = log_lines(cli, "--device", "SN-000750")
    assert found["deviceCount"] == n and len(found["devices"]) == n
    assert {"SN-000001", "SN-000750", "SN-001500"} <= {d["deviceSn"] for d in found["devices"]}
    assert log_lines(cli, "--device", "SN-001501") == []


def test_journal_is_append_only(tmp_path):
    path = tmp_path / "j.db"
    journal = Journal(path, Actor.current("local"))
    journal.record("delete", devices=[("sn1", "SN-1")], group_id="g")
    journal.close()
    conn = sqlite3.connect(path)
    for sql in (
        "UPDATE journal SET outcome='ok'",
        "DELETE FROM journal",
        "UPDATE journal_devices SET device_sn='x'",
        "DELETE FROM journal_devices",
    ):
        with pytest.raises(sqlite3.DatabaseError, match="append-only"):
            conn.execute(sql)
    conn.close()
    assert [e.devices for e in Journal(path, Actor.current("local")).entries()] == [
        [("sn1", "SN-1")]
    ]


# -- devices update | delete | allocate (CLI, local store) -----------------------------------------


@pytest.fixture
def registered_cli(cli, write_csv):
    secret = setup_cli_group(cli)
    assert cli("register", "--csv", str(write_csv(meters_rows(4))), "--group", "meters-eu").exit_code == 0  # fmt: skip
    return secret


def test_devices_update_cli(cli, registered_cli):
    data = cli.json("devices", "update", "SN-000001", "--set", "max_capacity=61",
                    "--set", "timezone=+01:00", "--unset", "site", "--desc", "hall 3",
                    "--batch-tag", "B-2")["data"]  # fmt: skip
    dev = data["device"]
    assert dev["deviceData"]["max_capacity"] == 61  # typed by the master data (Integer)
    assert dev["deviceData"]["timezone"] == "+01:00" and "site" not in dev["deviceData"]
    assert dev["desc"] == "hall 3" and dev["batchTag"] == {"defaultValue": "B-2", "i18nValue": {}}
    (entry,) = log_lines(cli, "--operation", "update")
    assert entry["devices"] == [{"sn": data["sn"], "deviceSn": "SN-000001"}]
    assert entry["detail"] == {"set": ["max_capacity", "timezone"], "unset": ["site"],
                               "desc": True, "batchTag": "B-2"}  # fmt: skip

    for args, message in (
        (["--set", "max_capacity=lots"], "is not an Integer"),
        (["--set", "phase=four"], "is not one of"),
        (["--unset", "phase"], "required"),
        (["--set", "colour=red"], "not a master data key"),
        (["--set", "deviceSn=X-1"], "cannot be changed"),
        ([], "nothing to update"),
    ):
        bad = cli.json("devices", "update", "SN-000002", *args, expect=1)
        assert message in bad["error"]["message"] + bad["error"].get("hint", "")
    assert cli.json("devices", "show", "SN-000002")["data"]["deviceData"]["phase"] == "single"
    missing = cli("devices", "update", "SN-777777", "--desc", "x")
    assert missing.exit_code == 1 and "SN-777777" in missing.stderr
    assert len(log_lines(cli, "--operation", "update")) == 1


def test_devices_delete_needs_confirmation_and_one_group(cli, registered_cli, write_csv):
    refused = cli("devices", "delete", "SN-000001", "SN-000002")  # stdin is not a terminal
    assert refused.exit_code == 1 and "--yes" in refused.stderr
    assert "nothing was changed" in refused.stderr
    assert cli.json("devices", "list")["data"]["pagination"]["total"] == 4

    setup_cli_group(cli, "other")
    cli("register", "--csv", str(write_csv(meters_rows(1, start=50), "o.csv")), "--group", "other")
    mixed = cli.json("devices", "delete", "SN-000001", "SN-000050", "--yes", expect=1)
    assert "2 registration groups" in mixed["error"]["message"]
    unknown = cli.json("devices", "delete", "SN-000001", "NOPE-1", "--yes", expect=1)
    assert unknown["error"]["code"] == "not_found" and "NOPE-1" in unknown["error"]["message"]
    assert cli.json("devices", "list")["data"]["pagination"]["total"] == 5
    assert log_lines(cli, "--operation", "delete") == []

    sn2 = cli.json("devices", "show", "SN-000002")["data"]["sn"]
    done = cli.json("devices", "delete", "SN-000001", sn2, "SN-000001", "--yes")["data"]
    assert done["groupId"] == "meters-eu"
    assert [d["deviceSn"] for d in done["deleted"]] == ["SN-000001", "SN-000002"]
    assert cli.json("devices", "list")["data"]["pagination"]["total"] == 3
    (entry,) = log_lines(cli, "--operation", "delete")
    assert {d["deviceSn"] for d in entry["devices"]} == {"SN-000001", "SN-000002"}
    assert entry["groupId"] == "meters-eu" and entry["detail"] == {"count": 2}
    assert log_lines(cli, "--device", "SN-000002", "--operation", "delete") == [entry]


def test_devices_delete_asks_on_a_terminal(cli, registered_cli, monkeypatch):
    import click.testing
    import typer.testing

    # the test runner's stdin stands for a terminal here
    wrapper = getattr(typer.testing, "_NamedTextIOWrapper", click.testing._NamedTextIOWrapper)
    monkeypatch.setattr(wrapper, "isatty", lambda self: True)
    no = cli("devices", "delete", "SN-000001", "SN-000002", input="n\n")
    assert no.exit_code == 1 and "SN-000001, SN-000002" in no.stderr
    assert "Delete 2 devices of group meters-eu" in no.stderr and "cancelled" in no.stderr
    assert cli.json("devices", "list")["data"]["pagination"]["total"] == 4
    yes = cli("devices", "delete", "SN-000001", input="y\n")
    assert yes.exit_code == 0 and "SN-000001" in yes.stdout
    assert cli.json("devices", "list")["data"]["pagination"]["total"] == 3
    assert len(log_lines(cli, "--operation", "delete")) == 1


def test_devices_allocate_cli(cli, registered_cli):
    data = cli.json("devices", "allocate", "SN-000001", "SN-000002", "--region", "us2",
                    "--org", "o9")["data"]  # fmt: skip
    assert [(d["result"], d["regionId"], d["orgId"]) for d in data] == [("allocated", "us2", "o9")] * 2  # fmt: skip
    again = cli.json("devices", "allocate", "SN-000002", "SN-000003")["data"]
    assert [(d["deviceSn"], d["result"]) for d in again] == [
        ("SN-000002", "already allocated"), ("SN-000003", "allocated")
    ]  # fmt: skip
    assert again[0]["regionId"] == "us2" and again[1]["regionId"] == "eu2"  # left / group target
    first, second = log_lines(cli, "--operation", "allocate")
    assert [d["deviceSn"] for d in first["devices"]] == ["SN-000001", "SN-000002"]
    assert first["detail"]["regionId"] == "us2" and first["detail"]["orgId"] == "o9"
    assert [d["deviceSn"] for d in second["devices"]] == ["SN-000003"]
    assert second["detail"]["alreadyAllocated"] == 1
    text = cli("devices", "allocate", "SN-000003")
    assert text.exit_code == 0 and "already allocated" in text.stdout


def test_allocate_without_a_target_changes_nothing(cli, write_csv):
    setup_cli_group(cli, "notarget", region=None, org=None)
    cli("register", "--csv", str(write_csv(meters_rows(2))), "--group", "notarget")
    bad = cli.json("devices", "allocate", "SN-000001", "SN-000002", expect=1)
    assert "no allocation target" in bad["error"]["message"] and "--region" in bad["error"]["hint"]
    assert cli.json("devices", "list", "--allocate-status", "allocated")["data"]["items"] == []
    assert log_lines(cli, "--operation", "allocate") == []
    done = cli.json("devices", "allocate", "SN-000001", "--region", "ppe1", "--org", "o5")["data"]
    assert (done[0]["result"], done[0]["regionId"]) == ("allocated", "ppe1")


def test_cli_exports_and_bootstrap_never_journal_a_secret(cli, registered_cli, tmp_path):
    secret = registered_cli
    burn = tmp_path / "burn"
    assert cli("burn", "export", "--group", "meters-eu", "--out", str(burn), "--dps-url",
               "http://dps.example").exit_code == 0  # fmt: skip
    assert cli("burn", "export", "--group", "meters-eu", "--out", str(burn), "--dps-url",
               "http://dps.example").exit_code == 0  # fmt: skip
    assert cli("qr", "batch", "--group", "meters-eu", "--out", str(tmp_path / "qr")).exit_code == 0  # fmt: skip
    boot = cli.json("device", "bootstrap", str(burn / "SN-000001.json"), "--with-secrets")["data"]
    conn = cli.json("device", "conninfo", str(burn / "SN-000001.json"), "--with-secrets")["data"]
    exports = log_lines(cli, "--operation", "burn-export")
    assert [e["detail"]["written"] for e in exports] == [4, 0]
    assert [e["detail"]["unchanged"] for e in exports] == [0, 4]
    assert all(e["deviceCount"] == 4 for e in exports)
    assert (
        exports[0]["detail"]["content"] == "bootstrap" and exports[0]["detail"]["format"] == "json"
    )
    assert exports[0]["detail"]["outDir"] == str(burn)
    (labels,) = log_lines(cli, "--operation", "label-export")
    assert labels["deviceCount"] == 4 and labels["detail"]["format"] == "png"
    boots = log_lines(cli, "--operation", "bootstrap")
    assert [e["detail"]["call"] for e in boots] == ["bootstrap", "get/conn"]
    assert all(e["devices"] == [{"sn": boot["sn"], "deviceSn": "SN-000001"}] for e in boots)
    assert boots[0]["detail"]["backend"] == "local"
    out = cli("log", "--json").stdout + cli("log").stdout
    for value in (secret, boot["deviceSecret"], conn["deviceSecret"], boot["mqtt"]["password"]):
        assert value and value not in out


# -- the library on both backends -----------------------------------------------------------------


@pytest.fixture
def jr(backend, tmp_path):
    journal = Journal(tmp_path / "j.db", Actor.current(backend.name, station="T-1"))
    yield journal
    journal.close()


def test_library_changes_are_journaled_on_every_backend(backend, group, jr, write_csv, tmp_path):
    report = api.register_csv(backend, write_csv(meters_rows(6)), group.group_id, journal=jr)
    assert report.created == 6
    api.register_csv(backend, write_csv(meters_rows(6)), group.group_id, dry_run=True, journal=jr)
    burn = export_burn_files(backend, Selection(group="meters-eu"), tmp_path / "burn",
                             dps_url="http://dps.example", journal=jr)  # fmt: skip
    assert burn.written == 6
    qr_batch(backend, Selection(group="meters-eu", device_sns=("SN-000001", "SN-000002")),
             tmp_path / "qr", journal=jr)  # fmt: skip
    update_device(backend, "SN-000001", values={"max_capacity": "70"}, journal=jr)
    devs = resolve_devices(backend, ["SN-000002", "SN-000003"])
    results = allocate_devices(backend, devs, journal=jr)
    assert [r.result for r in results] == ["allocated", "allocated"]
    onboard_devices(backend, [backend.find_by_device_sn(group.group_id, "SN-000004")],
                    timezone="+08:00", values={"site": "Hall 9"}, journal=jr)  # fmt: skip
    delete_devices(backend, resolve_devices(backend, ["SN-000006"]), journal=jr)
    cred = read_credential(tmp_path / "burn" / "SN-000005.json")
    session = bootstrap_device(backend, cred, journal=jr)
    cred = read_credential(tmp_path / "burn" / "SN-000002.json")
    again = device_conninfo(backend, cred, journal=jr)

    entries = list(jr.entries())
    ops = [e.operation for e in entries]
    assert ops == [
        "register",
        "burn-export",
        "label-export",
        "update",
        "allocate",
        "onboard",
        "delete",
        "bootstrap",
        "bootstrap",
    ]  # fmt: skip  (no dry-run record)
    by_op = {e.operation: e for e in entries}
    assert all(e.backend == backend.name and e.station == "T-1" for e in entries)
    assert all(e.outcome == "ok" and e.group_id == "meters-eu" for e in entries)
    assert {dsn for _, dsn in by_op["register"].devices} == {f"SN-{i:06d}" for i in range(1, 7)}
    assert by_op["burn-export"].device_count == 6 and all(sn for sn, _ in by_op["burn-export"].devices)  # fmt: skip
    # registration order: on EnOS createTime then sn, and a batch creates its devices at once
    assert sorted(dsn for _, dsn in by_op["label-export"].devices) == ["SN-000001", "SN-000002"]
    assert [dsn for _, dsn in by_op["allocate"].devices] == ["SN-000002", "SN-000003"]
    onboard = by_op["onboard"]
    assert [dsn for _, dsn in onboard.devices] == ["SN-000004"]
    assert onboard.detail["masterDataKeys"] == ["site"] and onboard.detail["timezone"] is True
    assert onboard.detail["deviceName"] is False and onboard.detail["allocatedNow"] == 1
    assert [dsn for _, dsn in by_op["delete"].devices] == ["SN-000006"]
    assert entries[-2].devices == [(session.info.sn, "SN-000005")]
    assert entries[-1].detail["call"] == "get/conn" and entries[-1].devices[0][1] == "SN-000002"
    if backend.name == "enos":  # single-request changes carry the EnOS requestId
        for op in ("update", "delete", "onboard"):
            assert by_op[op].request_id, op
        assert entries[-2].detail["dpsUrl"] == backend.config.dps_url
    else:
        assert all(e.request_id is None for e in entries)

    # never a secret: the group secret, device secrets, the MQTT password
    secrets = [group.group_secret, session.info.device_secret, again.info.device_secret,
               session.mqtt.password]  # fmt: skip
    secrets += [backend.get(r.device.sn).device_secret for r in results]
    jr.close()
    stored = raw_bytes(jr.path)
    text = "\n".join(json.dumps(e.to_dict()) for e in Journal(jr.path, jr.actor).entries())
    for secret in secrets:
        assert secret and secret.encode() not in stored and secret not in text


def test_label_sheet_is_journaled(backend, group, jr, write_csv, tmp_path):
    api.register_csv(backend, write_csv(meters_rows(3)), group.group_id)
    report = qr_batch(backend, Selection(group="meters-eu"), tmp_path / "sheet", fmt="pdf",
                      template="a4-3x8-70x37", journal=jr)  # fmt: skip
    assert report.devices == 3
    (entry,) = jr.entries()
    assert (entry.operation, entry.group_id, entry.device_count) == ("label-export", "meters-eu", 3)
    assert sorted(dsn for _, dsn in entry.devices) == ["SN-000001", "SN-000002", "SN-000003"]
    assert all(sn for sn, _ in entry.devices)
    assert entry.detail["format"] == "pdf" and entry.detail["template"]
    assert entry.detail["outDir"] == str(tmp_path / "sheet") and entry.detail["written"] == 1


def test_failed_run_records_what_it_did(backend, group, jr, write_csv, monkeypatch):
    """A registration stopped by an error after a chunk records the devices created so far."""
    real = backend.register_batch
    calls = []

    def flaky(*args, **kw):
        calls.append(1)
        if len(calls) == 2:
            raise InvalidArgumentError("the backend gave up")
        return real(*args, **kw)

    monkeypatch.setattr(backend, "register_batch", flaky)
    with pytest.raises(InvalidArgumentError):
        api.register_csv(backend, write_csv(meters_rows(5)), group.group_id, chunk_size=2,
                         journal=jr)  # fmt: skip
    entries = list(jr.entries())
    done, stop = entries[0], entries[-1]  # (between them: the open intent of the failed chunk)
    assert (done.operation, done.outcome, done.detail["part"]) == ("register", "ok", 1)
    assert [dsn for _, dsn in done.devices] == ["SN-000001", "SN-000002"]
    assert done.detail["created"] == 2
    assert (stop.operation, stop.outcome, stop.error) == ("register", "failed", "the backend gave up")  # fmt: skip
    assert stop.devices == [] and stop.detail["run"] == done.detail["run"]
    assert sum(e.device_count for e in entries if e.outcome != "pending") == 2


def test_resolution_errors_change_nothing(backend, group, jr, write_csv):
    api.register_csv(backend, write_csv(meters_rows(2)), group.group_id)
    other = make_group(backend, group_id="other", name="Other")
    api.register_csv(backend, write_csv(meters_rows(1, start=9), "o.csv"), other.group_id)
    with pytest.raises(NotFoundError, match="NOPE-1"):
        resolve_devices(backend, ["SN-000001", "NOPE-1"])
    with pytest.raises(InvalidArgumentError, match="2 registration groups"):
        delete_devices(backend, resolve_devices(backend, ["SN-000001", "SN-000009"]), journal=jr)
    assert backend.find_by_device_sn(group.group_id, "SN-000001") is not None
    assert list(jr.entries()) == []
    assert not jr.path.exists()


# -- the CLI through an EnOS profile (emulator) ---------------------------------------------------


def test_cli_on_enos_journals_locally_with_request_ids(
    emulator, store_path, tmp_path, write_csv, monkeypatch
):
    from typer.testing import CliRunner

    from enosprov import profiles
    from enosprov.cli import app
    from enosprov.profiles import SecretRef

    be = enos_backend(emulator, store_path)
    try:
        group = make_group(be)
        monkeypatch.setenv("ENOSPROV_CONFIG", str(tmp_path / "cfg.toml"))
        monkeypatch.setenv("ENOS_APP_SECRET", APP_SECRET)
        monkeypatch.setenv("METERS_SECRET", group.group_secret)
        monkeypatch.setenv("ENOSPROV_STATION", "ENOS-LINE")
        profiles.create_profile("emu", api_url=emulator.url, org_id="o1", access_key=APP_KEY,
                                secret=SecretRef.from_env("ENOS_APP_SECRET"),
                                dps_url=emulator.url)  # fmt: skip
        runner = CliRunner()

        def run(*args: str):
            result = runner.invoke(app, ["--profile", "emu", *args], catch_exceptions=False)
            assert result.exit_code == 0, result.stdout + result.stderr
            return result

        assert runner.invoke(app, ["config", "add-group", "emu", "meters-eu", "--secret-env",
                                   "METERS_SECRET", "--masterdata",
                                   str(ROOT / "examples" / "masterdata.toml")]).exit_code == 0  # fmt: skip
        csv = write_csv(meters_rows(3, prefix="E"))
        run("register", "--csv", str(csv), "--group", "meters-eu")
        run("devices", "update", "E-000001", "--group", "meters-eu", "--desc", "first")
        allocated = json.loads(run("devices", "allocate", "E-000001", "--json").stdout)["data"]
        run("devices", "delete", "E-000003", "--group", "meters-eu", "--yes")
        burn = tmp_path / "burn"
        run("burn", "export", "--group", "meters-eu", "--out", str(burn))
        run("device", "bootstrap", str(burn / "E-000002.json"))

        journal_file = tmp_path / "xdg-data" / "enosprov" / "journal.db"
        assert journal_file.exists()
        lines = run("log", "--jsonl").stdout.splitlines()
        entries = [json.loads(x) for x in lines]
        assert [e["operation"] for e in entries] == [
            "register", "update", "allocate", "delete", "burn-export", "bootstrap"
        ]  # fmt: skip
        assert all(e["backend"] == "enos" and e["profile"] == "emu" for e in entries)
        assert all(e["station"] == "ENOS-LINE" for e in entries)
        for e in entries[1:4]:
            assert e["requestId"], e["operation"]
        assert entries[0]["deviceCount"] == 3
        assert entries[-1]["detail"]["dpsUrl"] == emulator.url
        about_e3 = run("log", "--device", "E-000003", "--jsonl").stdout.splitlines()
        assert [json.loads(x)["operation"] for x in about_e3] == ["register", "delete"]

        secrets = [group.group_secret, APP_SECRET]
        secrets += [be.store.get(d["sn"]).device_secret for d in allocated]
        secrets += [be.store.find_by_device_sn("meters-eu", "E-000002").device_secret]
        stored = raw_bytes(journal_file)
        for secret in secrets:
            assert secret and secret.encode() not in stored
            assert secret not in "\n".join(lines)
        assert store_path.exists() and b"ENOS-LINE" not in store_path.read_bytes()
    finally:
        be.close()


def test_log_json_is_one_document_like_every_command(cli, store, write_csv):
    """--json prints {"data": [...]} as every other command does; --jsonl streams the lines."""
    make_group(store)
    cli("register", "--csv", str(write_csv(meters_rows(2))), "--group", "meters-eu")
    doc = json.loads(cli("log", "--json").stdout)
    assert list(doc) == ["data"] and [e["operation"] for e in doc["data"]] == ["register"]
    lines = cli("log", "--jsonl").stdout.splitlines()
    assert [json.loads(x) for x in lines] == doc["data"]
    both = cli("log", "--json", "--jsonl")
    assert both.exit_code == 1 and "cannot be used together" in both.stdout + both.stderr
