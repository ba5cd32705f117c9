"""Retired units: a replaced unit that powers on again, scanning its label, registering it again,
and replacing onto a unit that is already registered. End to end on both backends."""

from __future__ import annotations

import json

import pytest
from conftest import EXAMPLES, make_group, meters_rows
from test_lifecycle import DPS, bootstrap, burn

from enosprov import api
from enosprov.burn.export import Selection
from enosprov.core.batches import show_batch
from enosprov.core.lineage import device_history, look_up_unit, retired_units, retirement
from enosprov.core.onboarding import scanned_devices
from enosprov.core.replacement import ReplaceRequest, plan_replacements, replace_device
from enosprov.core.scan import scan_images
from enosprov.device import bootstrap_device
from enosprov.errors import RefusedError, ValidationFailedError
from enosprov.journal import Actor, Journal
from enosprov.qr.batch import qr_batch
from enosprov.reports.batch_csv import write_batch_csv
from enosprov.reports.batch_html import render_batch_html

OLD, NEW = "SN-000001", "SN-900001"


@pytest.fixture
def audit(backend, tmp_path):
    j = Journal(tmp_path / "journal.db", Actor.current(backend.name, station="van-12"))
    yield j
    j.close()


@pytest.fixture
def fleet(backend, group, write_csv):
    api.register_csv(backend, write_csv(meters_rows(4)), group.group_id, batch_tag="B-1")
    return group


def _label(backend, device_sn, out):
    """OLD's label as a rendered PNG (what a photo of it gives back)."""
    qr_batch(backend, Selection(group="meters-eu", device_sns=(device_sn,)), out)
    rows = json.loads((out / "manifest.json").read_text())
    return out / rows[0]["png"]


def _replaced_unit(backend, tmp_path, audit):
    """OLD in service (burned, labelled, bootstrapped), then replaced by NEW: its old file, its
    label, and the old and new units."""
    cred, _session = bootstrap(backend, OLD, tmp_path)
    label = _label(backend, OLD, tmp_path / "labels")
    old = backend.find_by_device_sn("meters-eu", OLD)
    [done] = replace_device(backend, OLD, NEW, journal=audit).replaced
    return cred, label, old, backend.get(done.new_sn)


# -- the field case: the old unit powered on again ------------------------------------------------


def test_a_retired_unit_that_bootstraps_again(backend, fleet, tmp_path, audit):
    cred, label, old, new = _replaced_unit(backend, tmp_path, audit)

    if backend.name == "local":  # enosprov is the DPS here: its rule refuses, naming NEW
        with pytest.raises(RefusedError) as exc:
            bootstrap_device(backend, cred, journal=audit)
        assert "retired unit" in exc.value.message and NEW in exc.value.message
        assert new.sn in exc.value.message and "in service: SN-900001" in exc.value.message
        assert "--allow-retired-bootstrap" in exc.value.hint and "local store" in exc.value.hint
        assert backend.find_by_device_sn("meters-eu", OLD) is None
        returned = None
    else:  # EnOS (the emulator, as EnOS documents) accepts the old unit: flagged everywhere
        session = bootstrap_device(backend, cred, journal=audit)
        returned = backend.find_by_device_sn("meters-eu", OLD)
        assert returned is not None and returned.sn == session.info.sn != old.sn
        assert returned.batch_tag_text is None  # registered itself: no batch, no master data
        assert session.retired is not None and session.retired.returned.sn == returned.sn
        assert session.to_dict()["retiredUnit"]["status"] == "returned"
        [record] = list(audit.entries(operations=["bootstrap"], device=returned.sn))
        assert record.detail["retiredUnitReturned"]["replacedBy"] == NEW

    # history keeps the whole chain, asked by the old deviceSn, its sn or the new unit
    for ident in (OLD, old.sn, NEW, *([returned.sn] if returned else [])):
        h = device_history(backend, ident, journal=audit)
        assert [u["deviceSn"] for u in h.chain] == [OLD, NEW], ident
        assert h.current.sn == new.sn and h.chain[0]["retired"] and not h.chain[1]["retired"]
        if returned is None:
            assert h.returned == [] and h.chain[0]["returnedAs"] is None
        else:
            [back] = h.returned
            assert back.returned.sn == returned.sn and h.chain[0]["returnedAs"] == returned.sn
            assert "RETIRED UNIT CAME BACK" in back.returned_text()
            assert f"devices delete {returned.sn}" in back.advice()
            assert f"replace {NEW} --new-device-sn {OLD}" in back.advice()
            assert h.to_dict()["returned"][0]["returned"]["sn"] == returned.sn
    h = device_history(backend, OLD, journal=audit)
    assert h.retired is not None and h.retired.describe().startswith(f"replaced by {NEW}")

    # devices show / lookup
    seen = look_up_unit(backend, audit, OLD, "meters-eu")
    if returned is None:
        assert seen.device is None and seen.retired.status == "retired"
        assert seen.to_dict()["state"] == "retired"
    else:
        assert seen.device.sn == returned.sn and seen.retired.status == "returned"
    assert seen.retired.in_service["deviceSn"] == NEW
    assert look_up_unit(backend, audit, NEW, "meters-eu").retired is None

    # batches: the batch counts it and lists it; the returning unit's own (untagged) batch too
    detail = show_batch(backend, audit, "B-1", group="meters-eu")
    [line] = detail.lineage
    assert line["oldDeviceSn"] == OLD and line["returnedAs"] == (returned.sn if returned else None)
    assert detail.to_dict()["returnedCount"] == (1 if returned else 0)
    if returned is not None:
        assert [r.returned.sn for r in detail.returned] == [returned.sn]
        untagged = show_batch(backend, audit, "(none)", group="meters-eu")
        assert [r.device_sn for r in untagged.returned] == [OLD]
        page = render_batch_html(detail, generated_ms=0, backend_label="test")
        assert "Retired units that came back" in page and returned.sn in page
        write_batch_csv(backend, audit, detail, tmp_path / "b1.csv")
        text = (tmp_path / "b1.csv").read_text(encoding="utf-8-sig")
        assert f"registered again as sn {returned.sn}" in text

    # qr scan of OLD's label follows the replacement; --onboard refuses it, naming NEW
    (result,) = scan_images(backend, [label], journal=audit)
    assert result.ok, result.problems
    [code] = result.codes
    assert code.status == ("returned" if returned else "retired")
    assert f"replaced by {NEW} ({new.sn}) on " in code.result
    assert code.result.endswith(f"in service: {NEW}")
    assert code.to_dict()["retired"]["inService"]["deviceSn"] == NEW
    with pytest.raises(RefusedError, match=f"in service: {NEW}"):
        scanned_devices(result.codes)

    units = retired_units(backend, audit, group_id="meters-eu")
    assert [(r.device_sn, r.in_service["deviceSn"]) for r in units] == [(OLD, NEW)]


def test_the_emulator_accepts_a_retired_unit_even_when_the_store_refuses(
    backend, fleet, tmp_path, audit
):
    """The rule is the local store's own (on by default); the emulator answers /dev/bootstrap
    through the same store file opened without it, as EnOS does."""
    from enosprov.backends.local import LocalBackend
    from enosprov.backends.pg_store import PgStore
    from enosprov.domain.signing import sign
    from enosprov.emulator import actions

    cred, _label_path, _old, _new = _replaced_unit(backend, tmp_path, audit)
    plain = backend if backend.name == "local" else backend.store
    assert not plain.get_group("meters-eu").allow_retired_bootstrap
    assert plain.refuse_retired_bootstrap
    # as the emulator opens its store (emulator/app.py)
    if isinstance(plain, PgStore):
        store: LocalBackend = PgStore(plain.url, refuse_retired_bootstrap=False)
    else:
        store = LocalBackend(plain.path, durable=False, refuse_retired_bootstrap=False)
    ts = int(__import__("time").time() * 1000)
    body = {"groupId": "meters-eu", "deviceSn": OLD, "dpsSignTimestamp": ts,
            "dpsSign": sign("sn-ts-secret", OLD, ts, cred.group_secret),
            "deviceName": {"defaultValue": "Meter 1"}, "timezone": "+08:00"}  # fmt: skip
    info = actions.bootstrap(store, body)
    assert store.get(info["sn"]).device_sn == OLD
    store.close()


def test_a_group_can_let_retired_units_register_again(store, tmp_path, write_csv):
    make_group(store)
    api.register_csv(store, write_csv(meters_rows(2)), "meters-eu", batch_tag="B-1")
    audit = Journal(tmp_path / "j.db", Actor.current("local"))
    cred = burn(store, OLD, tmp_path / "burn")
    replace_device(store, OLD, NEW, journal=audit)
    assert store.set_allow_retired_bootstrap("meters-eu", True).allow_retired_bootstrap
    session = bootstrap_device(store, cred, journal=audit)
    assert session.retired is not None and session.retired.in_service["deviceSn"] == NEW
    assert device_history(store, OLD, journal=audit).returned[0].returned.sn == session.info.sn
    audit.close()


# -- register refuses a retired deviceSn -----------------------------------------------------------


def test_register_refuses_a_retired_unit_unless_allowed(backend, fleet, write_csv, audit):
    [done] = replace_device(backend, OLD, NEW, journal=audit).replaced
    again = write_csv(meters_rows(4), name="rerun.csv")  # the old batch file, run again
    with pytest.raises(ValidationFailedError) as exc:
        api.register_csv(backend, again, "meters-eu", batch_tag="B-1", journal=audit)
    [issue] = exc.value.issues
    assert issue.row == 2 and issue.column == "deviceSn"
    assert "retired unit" in issue.message and f"{NEW} ({done.new_sn})" in issue.message
    assert "--allow-retired" in exc.value.hint
    assert backend.find_by_device_sn("meters-eu", OLD) is None

    skipped = api.register_csv(backend, again, "meters-eu", batch_tag="B-1", journal=audit,
                               skip_invalid=True)  # fmt: skip
    assert (skipped.created, skipped.invalid, skipped.retired) == (0, 1, 1)
    with pytest.raises(ValidationFailedError, match="retired unit") as exc:
        api.register_records(backend, [{"deviceSn": OLD, "max_capacity": 5, "phase": "single"}],
                             "meters-eu", name=f"unit {OLD}", journal=audit)  # fmt: skip
    assert "--allow-retired" in exc.value.hint

    allowed = api.register_csv(backend, again, "meters-eu", batch_tag="B-1", journal=audit,
                               allow_retired=True)  # fmt: skip
    assert allowed.created == 1
    back = backend.find_by_device_sn("meters-eu", OLD)
    assert retirement(backend, audit, OLD, group_id="meters-eu").returned.sn == back.sn


def test_a_unit_put_back_into_service_is_no_longer_retired(backend, fleet, audit):
    replace_device(backend, OLD, NEW, journal=audit)
    assert retirement(backend, audit, OLD) is not None
    replace_device(backend, NEW, OLD, journal=audit)  # the repaired old unit goes back
    assert retirement(backend, audit, OLD) is None
    assert retirement(backend, audit, NEW).in_service["deviceSn"] == OLD
    h = device_history(backend, OLD, journal=audit)
    assert [u["deviceSn"] for u in h.chain] == [OLD, NEW, OLD] and h.returned == []


# -- replace onto a registered unit ----------------------------------------------------------------


def test_replace_plan_names_a_registered_new_units_batch_and_marks(
    backend, fleet, write_csv, tmp_path, audit
):
    api.register_csv(backend, write_csv(meters_rows(1, start=900001), name="spare.csv"),
                     "meters-eu", batch_tag="B-2")  # fmt: skip
    burn_dir = tmp_path / "spare"
    from enosprov.burn.export import export_burn_files

    export_burn_files(backend, Selection(group="meters-eu", device_sns=(NEW,)), burn_dir,
                      dps_url=DPS, journal=audit)  # fmt: skip
    qr_batch(backend, Selection(group="meters-eu", device_sns=(NEW,)), tmp_path / "l",
             journal=audit)  # fmt: skip
    [plan] = plan_replacements(backend, [ReplaceRequest(OLD, NEW)], journal=audit)
    assert plan.consumes_new and plan.new_text() == "batch B-2, burned, labelled"
    new = plan.to_dict()["new"]
    assert (new["batchTag"], new["burned"], new["labelled"]) == ("B-2", True, True)
    [plan] = plan_replacements(backend, [ReplaceRequest("SN-000002", "SN-000003")], journal=audit)
    assert plan.new_text() == "batch B-1, not burned or labelled"


# -- the CLI --------------------------------------------------------------------------------------


@pytest.fixture
def line(cli, store, write_csv, tmp_path):
    """The local store through the CLI: OLD registered, burned, labelled and bootstrapped."""
    make_group(store)
    cli.json("register", "--csv", str(write_csv(meters_rows(3))), "--group", "meters-eu",
             "--batch-tag", "B-1")  # fmt: skip
    out = tmp_path / "burn"
    cli.json("burn", "export", "--group", "meters-eu", "--out", str(out), "--dps-url", DPS)
    cli.json("qr", "batch", "--group", "meters-eu", "--out", str(tmp_path / "labels"))
    cli.json("device", "bootstrap", str(out / f"{OLD}.json"))
    return out, tmp_path / "labels" / f"{OLD}.png"


def test_cli_retired_unit_on_the_local_store(cli, line):
    burned, label = line
    cli.json("replace", OLD, "--new-device-sn", NEW, "--no-burn", "--yes")
    refused = cli("device", "bootstrap", str(burned / f"{OLD}.json"))
    assert refused.exit_code == 1
    assert "retired unit" in refused.stderr and f"in service: {NEW}" in refused.stderr

    shown = cli("devices", "show", OLD)
    assert shown.exit_code == 0 and "retired (replaced)" in shown.stdout
    assert f"in service: {NEW}" in shown.stdout
    data = cli.json("devices", "show", OLD)["data"]
    assert data["state"] == "retired" and data["retired"]["inService"]["deviceSn"] == NEW

    scanned = cli.json("qr", "scan", str(label))["data"]  # exit 0
    [code] = scanned["images"][0]["codes"]
    assert scanned["ok"] and code["status"] == "retired"
    assert (
        code["result"].startswith(f"replaced by {NEW} (") and f"in service: {NEW}" in code["result"]
    )
    text = cli("qr", "scan", str(label))
    assert text.exit_code == 0 and f"replaced by {NEW}" in text.stdout
    onboard = cli.json("qr", "scan", str(label), "--onboard", "--timezone", "+01:00", expect=1)
    assert (
        onboard["error"]["code"] == "refused"
        and f"in service: {NEW}" in onboard["error"]["message"]
    )

    retired = cli.json("devices", "list", "--retired")["data"]
    assert [(r["deviceSn"], r["inService"]["deviceSn"]) for r in retired["items"]] == [(OLD, NEW)]
    assert cli.json("devices", "list", "--retired", "--batch-tag", "B-2")["data"]["items"] == []

    register = cli("register", "--group", "meters-eu", "--device-sn", OLD, "--set",
                   "max_capacity=5", "--set", "phase=single")  # fmt: skip
    assert register.exit_code == 1 and "retired unit" in register.stderr
    assert "--allow-retired" in register.stderr and NEW in register.stderr
    allowed = cli.json("register", "--group", "meters-eu", "--device-sn", OLD, "--set",
                       "max_capacity=5", "--set", "phase=single", "--allow-retired")  # fmt: skip
    assert allowed["data"]["created"] == 1


def test_cli_flags_a_returning_unit_everywhere(cli, write_csv, tmp_path):
    cli.json("masterdata", "create", "--file", str(EXAMPLES / "masterdata.toml"))
    group = cli.json("group", "create", "--id", "meters-eu", "--name", "Meters", "--product-key",
                     "pk1", "--region", "eu2", "--org", "o1", "--masterdata", "meters",
                     "--timezone", "+01:00", "--allow-retired-bootstrap")["data"]  # fmt: skip
    assert group["allowRetiredBootstrap"] is True
    assert "may register themselves again" in cli("group", "show", "meters-eu").stdout
    cli.json("register", "--csv", str(write_csv(meters_rows(2))), "--group", "meters-eu",
             "--batch-tag", "B-1")  # fmt: skip
    out = tmp_path / "burn"
    cli.json("burn", "export", "--group", "meters-eu", "--out", str(out), "--dps-url", DPS)
    cli.json("replace", OLD, "--new-device-sn", NEW, "--no-burn", "--yes")
    came = cli("device", "bootstrap", str(out / f"{OLD}.json"))
    assert came.exit_code == 0 and "RETIRED UNIT CAME BACK" in came.stderr
    back = cli.json("devices", "show", OLD)["data"]
    assert back["retired"]["status"] == "returned" and back["sn"] != back["retired"]["sn"]

    history = cli("devices", "history", OLD)
    assert (
        f"replacement chain: {OLD}" in history.stdout and "RETIRED UNIT CAME BACK" in history.stdout
    )
    assert f"devices delete {back['sn']}" in history.stdout
    data = cli.json("devices", "history", OLD)["data"]
    assert [u["deviceSn"] for u in data["chain"]] == [OLD, NEW]
    assert data["returned"][0]["returned"]["sn"] == back["sn"]
    listed = cli("devices", "list")
    assert "RETIRED" in listed.stdout and "RETIRED UNIT CAME BACK" in listed.stderr
    items = cli.json("devices", "list")["data"]["items"]
    assert [i["retired"]["status"] for i in items if i["retired"]] == ["returned"]
    batch = cli("batches", "show", "B-1")
    assert "RETIRED UNITS THAT CAME BACK: 1" in batch.stdout and back["sn"] in batch.stdout
    assert cli.json("batches", "show", "B-1")["data"]["returnedCount"] == 1
    report = cli.json("batches", "report", "B-1", "--out", str(tmp_path / "b1.html"))["data"]
    assert report["returnedCount"] == 1
    assert "Retired units that came back" in (tmp_path / "b1.html").read_text()


def test_cli_replace_onto_a_registered_unit_asks_naming_its_batch(cli, line, write_csv, tmp_path):
    cli.json("register", "--csv", str(write_csv(meters_rows(1, start=900001), name="spare.csv")),
             "--group", "meters-eu", "--batch-tag", "B-2")  # fmt: skip
    cli.json("qr", "batch", "--group", "meters-eu", "--device-sn", NEW, "--out",
             str(tmp_path / "spare-label"))  # fmt: skip
    refused = cli("replace", OLD, "--new-device-sn", NEW, "--no-burn")  # no terminal, no --yes
    assert refused.exit_code == 1
    assert "registered: batch B-2, labelled" in refused.stdout  # the plan
    assert f"{NEW} is already registered (batch B-2, labelled)" in refused.stderr
    assert f"consuming the registration of {NEW} (batch B-2, labelled)" in refused.stderr
    assert "--yes" in refused.stderr
    assert cli.json("devices", "show", OLD)["data"]["retired"] is None  # nothing changed

    dry = cli.json("replace", OLD, "--new-device-sn", NEW, "--dry-run")["data"]["plan"][0]
    assert dry["consumesNewRegistration"] and dry["new"]["batchTag"] == "B-2"
    assert (dry["new"]["burned"], dry["new"]["labelled"]) == (False, True)
    done = cli.json("replace", OLD, "--new-device-sn", NEW, "--no-burn", "--yes")["data"]
    assert done["replaced"][0]["new"]["deviceSn"] == NEW
    assert cli.json("devices", "show", NEW)["data"]["batchTag"]["defaultValue"] == "B-1"


@pytest.mark.skipif(
    __import__("sqlite3").sqlite_version_info < (3, 35), reason="needs ALTER TABLE DROP COLUMN"
)
def test_a_schema_4_store_gets_the_group_setting(store_path):
    import sqlite3

    from enosprov.backends.local import LocalBackend
    from enosprov.backends.local_schema import SCHEMA_VERSION

    with LocalBackend(store_path) as be:
        make_group(be)
    conn = sqlite3.connect(store_path)
    conn.execute("ALTER TABLE registration_groups DROP COLUMN allow_retired_bootstrap")
    conn.execute("UPDATE meta SET value='4' WHERE key='schema_version'")
    conn.commit()
    conn.close()
    with LocalBackend(store_path) as be:
        version = be.conn.execute("SELECT value FROM meta WHERE key='schema_version'").fetchone()
        assert version == (str(SCHEMA_VERSION),)
        assert be.get_group("meters-eu").allow_retired_bootstrap is False
        assert be.set_allow_retired_bootstrap("meters-eu", True).allow_retired_bootstrap
        assert be.get_group("meters-eu").to_dict()["allowRetiredBootstrap"] is True
