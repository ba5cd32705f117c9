"""Reprovisioning, replacement and device history, end to end on both backends."""

from __future__ import annotations

import json

import pytest
from conftest import make_group, meters_rows

from enosprov import api
from enosprov.burn.export import Selection, export_burn_files
from enosprov.core.lineage import device_history
from enosprov.core.replacement import (
    Outputs,
    ReplaceRequest,
    plan_replacements,
    read_pairs,
    replace_device,
    replace_devices,
)
from enosprov.core.reprovision import apply_reprovision, plan_reprovision, reprovision
from enosprov.device import bootstrap_device, read_credential
from enosprov.errors import (
    ConflictError,
    InvalidArgumentError,
    NotFoundError,
    RefusedError,
    ValidationFailedError,
)
from enosprov.journal import Actor, Journal

DPS = "http://dps.example"


@pytest.fixture
def journal(backend, tmp_path):
    j = Journal(tmp_path / "journal.db", Actor.current(backend.name, station="line-3"))
    yield j
    j.close()


@pytest.fixture
def registered(backend, group, write_csv):
    api.register_csv(backend, write_csv(meters_rows(4)), group.group_id, batch_tag="B-1")
    return group


def burn(backend, device_sn, out, group="meters-eu"):
    export_burn_files(backend, Selection(group=group, device_sns=(device_sn,)), out, dps_url=DPS)
    return read_credential(out / f"{device_sn}.json")


def bootstrap(backend, device_sn, tmp_path, group="meters-eu"):
    cred = burn(backend, device_sn, tmp_path / f"burn-{group}", group)
    return cred, bootstrap_device(backend, cred)


def snapshot(backend, group_id="meters-eu"):
    """Everything that a refused call must leave unchanged."""
    devs = backend.iter_devices(api.SearchQuery(group_id=group_id))
    return sorted(
        (d.sn, d.device_sn, d.allocate_status, d.region_id, d.org_id, d.device_key,
         json.dumps(d.device_data, sort_keys=True), d.reprovisioning)
        for d in devs
    )  # fmt: skip


# -- reprovisioning -------------------------------------------------------------------------------


def test_reprovision_then_the_same_file_lands_in_the_new_ou(backend, registered, tmp_path, journal):
    _cred, first = bootstrap(backend, "SN-000001", tmp_path)
    before = backend.find_by_device_sn("meters-eu", "SN-000001")
    assert (before.region_id, before.org_id) == ("eu2", "o1")

    plan = plan_reprovision(backend, ["SN-000001"], region_id="cn5", org_id="o2")
    assert [i.refused for i in plan.items] == [None]
    assert plan.masterdata == "kept (migrate)"
    result = apply_reprovision(backend, plan, journal=journal)
    assert result.reset == [before.sn]

    waiting = backend.get(before.sn)
    assert not waiting.allocated and waiting.reprovisioning
    # the target travels the documented way: built-in master data regionId/orgId
    assert (waiting.device_data["regionId"], waiting.device_data["orgId"]) == ("cn5", "o2")
    assert result.targeted == [before.sn]
    assert waiting.device_data["max_capacity"] == before.device_data["max_capacity"]  # migrate

    second = bootstrap_device(backend, read_credential(tmp_path / "burn-meters-eu/SN-000001.json"))
    after = backend.get(before.sn)
    assert (after.region_id, after.org_id) == ("cn5", "o2")
    assert (after.sn, after.group_id, after.device_sn) == (before.sn, "meters-eu", "SN-000001")
    assert second.info.device_key == after.device_key != first.info.device_key
    assert second.info.device_secret != first.info.device_secret
    assert "cn5" in second.info.mqtt_url and after.connect_status == "connected"
    assert after.device_data["regionId"] == "cn5"  # master data: it stays with the device

    [entry] = list(journal.entries(operations=["reprovision"]))
    assert entry.devices == [(before.sn, "SN-000001")] and entry.station == "line-3"
    assert entry.detail["target"] == {"regionId": "cn5", "orgId": "o2"}
    assert entry.detail["from"] == [[before.sn, "eu2", "o1"]]
    if backend.name == "enos":
        assert entry.request_id


def test_a_registered_target_decides_where_the_device_goes(backend, group, write_csv, tmp_path):
    """regionId/orgId columns register each device's own target (built-in master data); a row
    without one falls back to the group's."""
    rows = (
        "deviceSn,regionId,orgId,max_capacity,phase\nT-0001,cn5,o2,10,single\nT-0002,,,10,single\n"
    )
    report = api.register_csv(backend, write_csv(rows), group.group_id)
    assert report.created == 2
    _cred, _ = bootstrap(backend, "T-0001", tmp_path)
    _cred, _ = bootstrap(backend, "T-0002", tmp_path)
    own = backend.find_by_device_sn(group.group_id, "T-0001")
    default = backend.find_by_device_sn(group.group_id, "T-0002")
    assert (own.region_id, own.org_id) == ("cn5", "o2")
    assert (default.region_id, default.org_id) == ("eu2", "o1")


def test_a_target_needs_both_columns(backend, group, write_csv):
    with pytest.raises(ValidationFailedError) as exc:
        api.register_csv(backend, write_csv("deviceSn,regionId,max_capacity,phase\nT-0009,cn5,1,single\n"),
                         group.group_id)  # fmt: skip
    assert "orgId" in str(exc.value.issues[0])
    with pytest.raises(ValidationFailedError) as exc:
        api.register_csv(backend, write_csv("deviceSn,regionId,orgId,max_capacity,phase\nT-0009,cn5,,1,single\n"),
                         group.group_id)  # fmt: skip
    assert exc.value.issues[0].column == "orgId"
    assert backend.find_by_device_sn(group.group_id, "T-0009") is None


def test_initialize_method_clears_master_data(backend, tmp_path, write_csv):
    make_group(backend, group_id="init-g", name="Init", reprovision_method="initialize")
    api.register_csv(backend, write_csv(meters_rows(1)), "init-g")
    bootstrap(backend, "SN-000001", tmp_path, group="init-g")
    plan = plan_reprovision(backend, ["SN-000001"], group="init-g", region_id="cn5", org_id="o2")
    assert plan.masterdata == "cleared (initialize)"
    apply_reprovision(backend, plan)
    dev = backend.find_by_device_sn("init-g", "SN-000001")
    assert set(dev.device_data) <= {"deviceSn", "regionId", "orgId"}  # the target only


@pytest.mark.parametrize(
    "overrides, reason",
    [({"reprovision_method": "never"}, "does not allow"), ({"model_type": "private"}, "private")],
)
def test_groups_that_cannot_reprovision_refuse_every_device(
    backend, tmp_path, write_csv, overrides, reason
):
    make_group(backend, group_id="fixed", name="Fixed", **overrides)
    api.register_csv(backend, write_csv(meters_rows(2)), "fixed")
    bootstrap(backend, "SN-000001", tmp_path, group="fixed")
    before = snapshot(backend, "fixed")
    plan = plan_reprovision(
        backend, ["SN-000001", "SN-000002"], group="fixed", region_id="cn5", org_id="o2"
    )
    assert all(reason in i.refused for i in plan.items)
    assert apply_reprovision(backend, plan).reset == []
    assert snapshot(backend, "fixed") == before


def test_reprovision_refuses_per_device_and_moves_the_rest(backend, registered, tmp_path):
    bootstrap(backend, "SN-000001", tmp_path)
    bootstrap(backend, "SN-000002", tmp_path)
    never = backend.find_by_device_sn("meters-eu", "SN-000003")
    plan = plan_reprovision(
        backend, ["SN-000001", "SN-000003"], group="meters-eu", region_id="cn5", org_id="o2"
    )
    assert plan.items[1].refused.startswith("never allocated")
    apply_reprovision(backend, plan)
    assert (
        backend.get(never.sn).allocate_status == "init" and not backend.get(never.sn).reprovisioning
    )
    moved = backend.find_by_device_sn("meters-eu", "SN-000001")
    assert moved.reprovisioning and not moved.allocated
    untouched = backend.find_by_device_sn("meters-eu", "SN-000002")
    assert untouched.allocated and not untouched.reprovisioning
    # already at the target: refused
    plan = plan_reprovision(backend, ["SN-000002"], region_id="eu2", org_id="o1")
    assert plan.items[0].refused == "already allocated there"


def test_reprovision_by_batch_tag_and_csv(backend, registered, tmp_path, write_csv):
    for sn in ("SN-000001", "SN-000002"):
        bootstrap(backend, sn, tmp_path)
    result = reprovision(backend, batch_tag="B-1", group="meters-eu", region_id="cn5", org_id="o2")
    assert len(result.reset) == 2 and len(result.plan.refused) == 2
    csv = write_csv("deviceSn\nSN-000001\n\nSN-000002\n", name="refs.csv")
    plan = plan_reprovision(backend, csv_path=csv, region_id="us2", org_id="o3")
    assert [i.device.device_sn for i in plan.accepted] == ["SN-000001", "SN-000002"]


def test_reprovision_calls_refused_as_a_whole_change_nothing(
    backend, registered, tmp_path, write_csv
):
    bootstrap(backend, "SN-000001", tmp_path)
    make_group(backend, group_id="other", name="Other")
    api.register_csv(backend, write_csv(meters_rows(1, start=50)), "other")
    bootstrap(backend, "SN-000050", tmp_path, group="other")
    before = snapshot(backend), snapshot(backend, "other")
    with pytest.raises(InvalidArgumentError, match="--org is missing"):
        plan_reprovision(backend, ["SN-000001"], region_id="cn5", org_id=None)
    with pytest.raises(NotFoundError, match="NOPE-1, NOPE-2"):
        plan_reprovision(backend, ["SN-000001", "NOPE-1", "NOPE-2"], region_id="cn5", org_id="o")
    with pytest.raises(InvalidArgumentError, match="2 registration groups"):
        plan_reprovision(backend, ["SN-000001", "SN-000050"], region_id="cn5", org_id="o")
    assert (snapshot(backend), snapshot(backend, "other")) == before


# -- replacement ----------------------------------------------------------------------------------


def test_replace_new_unit_bootstraps_with_its_own_file_and_carries_old_details(
    backend, registered, tmp_path, journal
):
    _cred, old_session = bootstrap(backend, "SN-000001", tmp_path)
    backend.update(backend.find_by_device_sn("meters-eu", "SN-000001").sn, desc="north hall meter")
    old = backend.find_by_device_sn("meters-eu", "SN-000001")
    out = tmp_path / "replacement"
    report = replace_device(
        backend, "SN-000001", "SN-900001", journal=journal,
        outputs=Outputs(burn_dir=out, dps_url=DPS, label_dir=out / "labels", label_format="png"),
    )  # fmt: skip
    [done] = report.replaced
    assert done.registered_new and (done.old_sn, done.new_device_sn) == (old.sn, "SN-900001")
    with pytest.raises(NotFoundError):
        backend.get(old.sn)
    new = backend.get(done.new_sn)
    assert new.allocated and (new.region_id, new.org_id) == ("eu2", "o1")
    assert new.device_key != old.device_key and new.device_secret != old_session.info.device_secret
    keep = lambda d: {k: v for k, v in d.device_data.items() if k != "deviceSn"}  # noqa: E731
    assert keep(new) == keep(old) and new.desc == "north hall meter"
    assert new.batch_tag_text == "B-1"

    assert (out / "SN-900001.json").is_file() and (out / "labels/SN-900001.png").is_file()
    assert "SN-900001.json" in (out / "manifest.csv").read_text()
    session = bootstrap_device(backend, read_credential(out / "SN-900001.json"))
    assert session.info.sn == new.sn and session.info.device_key == new.device_key
    assert backend.get(new.sn).connect_status == "connected"

    replace_entries = list(journal.entries(operations=["replace"]))
    assert [e.devices for e in replace_entries] == [[(old.sn, "SN-000001"), (new.sn, "SN-900001")]]
    assert {e.operation for e in journal.entries(device="SN-900001")} >= {
        "replace", "burn-export", "label-export"
    }  # fmt: skip

    history = device_history(backend, "SN-000001", journal=journal)
    assert [u["deviceSn"] for u in history.chain] == ["SN-000001", "SN-900001"]
    assert history.current.sn == new.sn
    assert history.chain[0]["replacedBy"] == new.sn
    ops = [e.operation for e in history.events]
    assert "replace" in ops and "burn-export" in ops


def test_replace_registered_unallocated_new_unit_and_rerun_is_done(backend, registered, journal):
    old = backend.find_by_device_sn("meters-eu", "SN-000001")
    new = backend.find_by_device_sn("meters-eu", "SN-000002")
    [done] = replace_device(backend, old.sn, "SN-000002", journal=journal).replaced
    assert not done.registered_new and done.new_sn == new.sn and done.allocation is None
    again = replace_device(backend, old.sn, "SN-000002", journal=journal).replaced[0]
    assert again.already_done and again.new_sn == new.sn
    assert len(list(journal.entries(operations=["replace"]))) == 1


def test_replace_refusals_change_nothing(backend, registered, tmp_path, write_csv, journal):
    bootstrap(backend, "SN-000002", tmp_path)
    make_group(backend, group_id="other", name="Other")
    api.register_csv(backend, write_csv(meters_rows(1, start=70)), "other")
    replace_device(backend, "SN-000004", "SN-000099", journal=journal)
    before = snapshot(backend), snapshot(backend, "other")
    cases = [
        (("NOPE", "SN-800001"), NotFoundError, "unknown"),
        (("SN-000001", "SN-000001"), InvalidArgumentError, "is the old unit"),
        (("SN-000001", "SN-000070"), ConflictError, "group other"),
        (("SN-000001", "SN-000002"), RefusedError, "already allocated"),
        (("SN-000004", "SN-800002"), RefusedError, "already replaced by SN-000099"),
    ]
    for (old, new), cls, text in cases:
        with pytest.raises(cls, match=text):
            replace_device(backend, old, new, journal=journal)
    assert (snapshot(backend), snapshot(backend, "other")) == before
    assert len(list(journal.entries(operations=["replace"]))) == 1


def test_pairs_file_is_validated_as_a_whole(backend, registered, write_csv, journal):
    before = snapshot(backend)
    bad = write_csv(
        "old,new\nSN-000001,SN-800001\nSN-000001,SN-800002\nSN-000002,SN-800001\n"
        "SN-800003,SN-000003\nSN-000003,SN-800003\nNOPE,SN-800009\n",
        name="pairs.csv",
    )
    with pytest.raises(ValidationFailedError) as err:
        plan_replacements(backend, read_pairs(bad), source=str(bad))
    text = [str(i) for i in err.value.issues]
    assert any(t.startswith("row 3") and "appears twice" in t for t in text)
    assert any(t.startswith("row 4") and "new unit 'SN-800001' appears twice" in t for t in text)
    assert any("cycle" in t for t in text)
    assert any(t.startswith("row 7") and "unknown" in t for t in text)
    assert snapshot(backend) == before

    chain = write_csv("old,new\nSN-000001,SN-800001\nSN-800001,SN-800002\n", name="chain.csv")
    with pytest.raises(ValidationFailedError, match="1 pair refused") as err:
        plan_replacements(backend, read_pairs(chain), source=str(chain))
    assert "chain" in str(err.value.issues[0])

    good = write_csv("old,new\nSN-000001,SN-800001\nSN-000002,SN-800002\n", name="ok.csv")
    plans = plan_replacements(backend, read_pairs(good), source=str(good))
    report = replace_devices(backend, plans, journal=journal)
    assert [r.new_device_sn for r in report.replaced] == ["SN-800001", "SN-800002"]
    rerun_plan = plan_replacements(backend, read_pairs(good), journal=journal)
    rerun = replace_devices(backend, rerun_plan, journal=journal)
    assert all(r.already_done for r in rerun.replaced)


def test_replace_takes_over_a_pending_reprovision_target(backend, registered, tmp_path):
    bootstrap(backend, "SN-000001", tmp_path)
    reprovision(backend, ["SN-000001"], region_id="cn5", org_id="o2")
    [done] = replace_device(backend, "SN-000001", "SN-900001").replaced
    cred = burn(backend, "SN-900001", tmp_path / "b2")
    bootstrap_device(backend, cred)
    new = backend.get(done.new_sn)
    assert (new.region_id, new.org_id) == ("cn5", "o2")


# -- CLI ------------------------------------------------------------------------------------------


@pytest.fixture
def cli_registered(cli, store, group_on_store, write_csv, tmp_path):
    cli.json("register", "--csv", str(write_csv(meters_rows(3))), "--group", "meters-eu",
             "--batch-tag", "B-1")  # fmt: skip
    out = tmp_path / "burn"
    cli.json("burn", "export", "--group", "meters-eu", "--out", str(out), "--dps-url", DPS)
    cli.json("device", "bootstrap", str(out / "SN-000001.json"))
    return out


@pytest.fixture
def group_on_store(store):
    return make_group(store)


def test_cli_reprovision_plan_confirm_and_state(cli, cli_registered):
    dry = cli.json("reprovision", "SN-000001", "--region", "cn5", "--org", "o2", "--dry-run")
    assert dry["data"]["accepted"] == 1 and dry["data"]["masterData"] == "kept (migrate)"
    refused = cli("reprovision", "SN-000001", "--region", "cn5", "--org", "o2")
    assert refused.exit_code == 1 and "--yes" in refused.stderr
    assert cli.json("devices", "show", "SN-000001")["data"]["allocateStatus"] == "allocated"

    partial = cli.json("reprovision", "SN-000001", "SN-000002", "--region", "cn5", "--org", "o2",
                       "--yes", expect=5)  # fmt: skip
    assert len(partial["data"]["reset"]) == 1 and partial["data"]["refused"] == 1
    shown = cli("devices", "show", "SN-000001")
    assert "reset, waiting for the device" in shown.stdout and "cn5 / o2" in shown.stdout
    cli.json("device", "bootstrap", str(cli_registered / "SN-000001.json"))
    shown = cli.json("devices", "show", "SN-000001")["data"]
    assert (shown["regionId"], shown["orgId"], shown["reprovisioning"]) == ("cn5", "o2", True)
    assert "re-allocated" in cli("devices", "show", "SN-000001").stdout

    nothing = cli.json("reprovision", "SN-000003", "--region", "cn5", "--org", "o2", "--yes",
                       expect=1)  # fmt: skip
    assert nothing["data"]["accepted"] == 0


def test_cli_replace_writes_files_and_history(cli, cli_registered, tmp_path):
    out = tmp_path / "new-unit"
    refused = cli("replace", "SN-000001", "--new-device-sn", "SN-900001", "--out", str(out))
    assert refused.exit_code == 1 and "--yes" in refused.stderr and not out.exists()
    result = cli.json("--station", "field-7", "replace", "SN-000001", "--new-device-sn", "SN-900001",
                      "--out", str(out), "--dps-url", DPS, "--label-template", "thermal-62mm", "--yes")  # fmt: skip
    [r] = result["data"]["replaced"]
    assert r["new"]["deviceSn"] == "SN-900001" and r["allocation"] == "eu2 / o1"
    assert (out / "SN-900001.json").is_file() and list(out.glob("labels/*.pdf"))
    session = cli.json("device", "bootstrap", str(out / "SN-900001.json"))["data"]
    assert session["sn"] == r["new"]["sn"]

    hist = cli.json("devices", "history", "SN-000001")["data"]
    assert [u["deviceSn"] for u in hist["chain"]] == ["SN-000001", "SN-900001"]
    assert hist["current"]["deviceSn"] == "SN-900001"
    replace_event = next(e for e in hist["events"] if e["operation"] == "replace")
    assert replace_event["station"] == "field-7"
    text = cli("devices", "history", "SN-900001").stdout
    assert "SN-000001" in text and "SN-000001 -> SN-900001" in text

    again = cli.json("replace", "SN-000001", "--new-device-sn", "SN-900002", "--yes", expect=1)
    assert again["error"]["code"] == "refused" and "already replaced" in again["error"]["message"]


def test_cli_replace_pairs_csv_errors_name_rows(cli, cli_registered, write_csv):
    pairs = write_csv("old,new\nSN-000002,SN-800001\nSN-000003,SN-800001\n", name="pairs.csv")
    bad = cli.json("replace", "--csv", str(pairs), "--yes", expect=1)
    assert bad["error"]["code"] == "validation_failed"
    assert bad["error"]["issues"][0]["row"] == 3
    assert cli.json("devices", "show", "SN-000002")["data"]["deviceSn"] == "SN-000002"
    missing = cli("replace", "SN-000002")
    assert missing.exit_code == 1 and "--new-device-sn" in missing.stderr


@pytest.mark.skipif(
    __import__("sqlite3").sqlite_version_info < (3, 35), reason="needs ALTER TABLE DROP COLUMN"
)
def test_a_schema_1_store_is_upgraded_on_open(store_path, write_csv):
    import sqlite3

    from enosprov.backends.local import LocalBackend
    from enosprov.backends.local_schema import SCHEMA_VERSION

    with LocalBackend(store_path) as be:
        make_group(be)
        api.register_csv(be, write_csv(meters_rows(2)), "meters-eu")
    conn = sqlite3.connect(store_path)  # make it look like a store written by schema 1
    conn.execute("ALTER TABLE devices DROP COLUMN reprovision_time")
    conn.execute("ALTER TABLE registration_groups DROP COLUMN timezone")
    conn.execute("UPDATE meta SET value='1' WHERE key='schema_version'")
    conn.commit()
    conn.close()
    with LocalBackend(store_path) as be:
        version = be.conn.execute("SELECT value FROM meta WHERE key='schema_version'").fetchone()
        assert version == (str(SCHEMA_VERSION),)
        dev = be.find_by_device_sn("meters-eu", "SN-000001")
        assert dev.target_region_id is None
        be.allocate(dev.sn)
        be.reset_allocation("meters-eu", [dev.sn])
        assert be.get(dev.sn).reprovision_time is not None


def test_a_schema_3_reprovision_target_moves_into_device_data(store_path, write_csv):
    """Schema 2-3 kept the target of a reset device in columns; schema 4 keeps it where EnOS
    documents it (deviceData.regionId/orgId), so the next bootstrap still lands there."""
    import sqlite3

    from enosprov.backends.local import LocalBackend

    with LocalBackend(store_path) as be:
        make_group(be)
        api.register_csv(be, write_csv(meters_rows(2)), "meters-eu")
        sn = be.find_by_device_sn("meters-eu", "SN-000001").sn
    conn = sqlite3.connect(store_path)  # as schema 3 left a device reset towards cn5/o2
    conn.execute("ALTER TABLE devices ADD COLUMN target_region_id TEXT")
    conn.execute("ALTER TABLE devices ADD COLUMN target_org_id TEXT")
    conn.execute(
        "UPDATE devices SET target_region_id='cn5', target_org_id='o2', reprovisioning=1 "
        "WHERE sn=?",
        (sn,),
    )
    conn.execute("UPDATE meta SET value='3' WHERE key='schema_version'")
    conn.commit()
    conn.close()
    with LocalBackend(store_path) as be:
        dev = be.get(sn)
        assert (dev.device_data["regionId"], dev.device_data["orgId"]) == ("cn5", "o2")
        assert be.conn.execute(
            "SELECT count(*) FROM devices WHERE target_region_id IS NOT NULL"
        ).fetchone() == (0,)
        assert (be.allocate(sn).region_id, be.get(sn).org_id) == ("cn5", "o2")


class _FailingReplace:
    """The backend, except that DPS `replace` fails (and `delete` too, when asked)."""

    def __init__(self, backend, delete_fails: bool = False):
        self._backend = backend
        self._delete_fails = delete_fails

    def __getattr__(self, name):
        return getattr(self._backend, name)

    def replace(self, sn, replacement_sn):
        raise RefusedError("Replacement device is allocated", enos_code=35603)

    def delete(self, group_id, sns):
        if self._delete_fails:
            raise RefusedError("no", enos_code=35603)
        return self._backend.delete(group_id, sns)


@pytest.mark.parametrize("delete_fails", [False, True], ids=["new removed", "new kept"])
def test_a_failed_replace_removes_the_new_unit_it_registered_or_says_so(
    backend, registered, journal, delete_fails
):
    failing = _FailingReplace(backend, delete_fails)
    with pytest.raises(RefusedError) as exc:
        replace_device(failing, "SN-000001", "SN-900001", group="meters-eu", journal=journal)
    new = backend.find_by_device_sn("meters-eu", "SN-900001")
    old = backend.find_by_device_sn("meters-eu", "SN-000001")
    assert old is not None  # OLD untouched
    if delete_fails:
        assert new is not None and "stays registered" in exc.value.message
        assert "run the same replace again" in exc.value.hint
    else:
        assert new is None and "was removed again" in exc.value.message
    [entry] = list(journal.entries(operations=["replace"]))
    assert entry.outcome == "failed"
    assert entry.detail.get("newLeftRegistered" if delete_fails else "newRemoved") is True


def test_replace_with_burn_refuses_first_when_no_timezone_is_known(backend, tmp_path, write_csv):
    make_group(backend, timezone=None)
    rows = "deviceSn,max_capacity,phase\nNOTZ-0001,10,single\n"
    api.register_csv(backend, write_csv(rows), "meters-eu")
    with pytest.raises(InvalidArgumentError) as exc:
        replace_device(backend, "NOTZ-0001", "NOTZ-0901", group="meters-eu",
                       outputs=Outputs(burn_dir=tmp_path / "out", dps_url=DPS))  # fmt: skip
    assert "NOTZ-0901" in exc.value.message and "nothing was replaced" in exc.value.message
    assert backend.find_by_device_sn("meters-eu", "NOTZ-0001") is not None
    assert backend.find_by_device_sn("meters-eu", "NOTZ-0901") is None
    assert not (tmp_path / "out").exists()


def test_concurrent_replaces_of_one_unit_leave_no_orphan(store_path, write_csv):
    """Two stations replace the same unit at once: one wins, the loser removes the unit it
    registered and names the winner."""
    import threading

    from enosprov.backends.local import LocalBackend

    rounds, losers = 8, 0
    with LocalBackend(store_path) as be:
        make_group(be)
        api.register_csv(be, write_csv(meters_rows(rounds)), "meters-eu")
    for i in range(1, rounds + 1):
        old = f"SN-{i:06d}"
        errors: list[Exception] = []
        barrier = threading.Barrier(2)

        def station(new: str, old=old, errors=errors, barrier=barrier) -> None:
            with LocalBackend(store_path) as be:
                plans = plan_replacements(be, [ReplaceRequest(old, new)], group="meters-eu")
                barrier.wait()
                try:
                    replace_devices(be, plans)
                except Exception as exc:  # the loser
                    errors.append(exc)

        news = (f"NA-{i:06d}", f"NB-{i:06d}")
        threads = [threading.Thread(target=station, args=(n,)) for n in news]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        with LocalBackend(store_path) as be:
            alive = [n for n in news if be.find_by_device_sn("meters-eu", n)]
            assert be.find_by_device_sn("meters-eu", old) is None
        assert len(alive) == 1, (old, alive, errors)  # one winner, no orphan
        (err,) = errors  # both planned before either applied: exactly one loser
        assert "was just replaced by another station" in err.message, err.message
        assert alive[0] in err.message and "was removed again" in err.message
        losers += 1
    assert losers == rounds
