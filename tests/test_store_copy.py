"""`enosprov store copy`: a station's store, journal included, from SQLite to PostgreSQL and back
(core/store_copy.py): the same devices, groups and secrets, replacements, journal and batch
counter; a second run copies nothing; a target with other data under the same ids is refused
with nothing written; --dry-run writes nothing; a password never shows."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from conftest import Cli, make_group, meters_rows, query_store

from enosprov import api
from enosprov.backends.local import LocalBackend
from enosprov.core.store_copy import (
    TABLES,
    CopyMismatchError,
    copy_store,
    remap_detail,
    table_counts,
)
from enosprov.domain.errors import (
    EXIT_EXISTS_DIFFERENT,
    DefinitionConflictError,
    InvalidArgumentError,
)
from enosprov.domain.models import SearchQuery
from enosprov.journal import Actor, Journal
from enosprov.journal_pg import PgJournal


def open_store(location: Path | str) -> LocalBackend:
    if isinstance(location, str):
        from enosprov.backends.pg_store import PgStore

        return PgStore(location)
    return LocalBackend(location)


def open_journal(location: Path | str) -> Journal:
    actor = Actor.current("local", station="t")
    return PgJournal(location, actor) if isinstance(location, str) else Journal(location, actor)


def register(location: Path | str, tmp_path: Path, n: int, *, start: int = 1, group="meters-eu",
             tag: str = "B1", prefix: str = "SN") -> None:  # fmt: skip
    csv = tmp_path / f"devices-{prefix}-{start}-{n}.csv"
    csv.write_text(meters_rows(n, start=start, prefix=prefix), encoding="utf-8")
    with open_store(location) as be:
        journal = open_journal(location)
        try:
            report = api.register_csv(be, csv, group, batch_tag=tag, journal=journal)
        finally:
            journal.close()
    assert report.created == n


@pytest.fixture
def station(tmp_path) -> Path:
    """A station's SQLite store: two groups, 1,220 devices (one register record of 1,200, kept
    as a compressed list, one of 20, one device row each), an allocated device, a replacement,
    label marks and a plain journal record."""
    path = tmp_path / "station.db"
    with LocalBackend(path) as be:
        make_group(be)
        make_group(be, group_id="meters-us", name="Meters US", region_id=None, org_id=None)
    register(path, tmp_path, 1200)
    register(path, tmp_path, 20, group="meters-us", tag="US-1", prefix="US")
    with LocalBackend(path) as be:
        journal = open_journal(path)
        try:
            be.allocate(be.find_by_device_sn("meters-eu", "SN-000002").sn)
            api.replace_device(be, "SN-000001", "SN-900001", journal=journal)
            with journal.begin("label-export", group_id="meters-eu") as rec:
                for i in range(3, 13):
                    dev = be.find_by_device_sn("meters-eu", f"SN-{i:06d}")
                    rec.add(dev.sn, dev.device_sn)
                    rec.mark("labelled", dev.sn, dev.device_sn, "B1")
            journal.record("group-update", group_id="meters-us", detail={"note": "timezone"})
        finally:
            journal.close()
    return path


def snapshot(location: Path | str) -> dict:
    """Everything a copy must carry, as comparable values (journal ids left out: the target
    numbers its own records)."""
    with open_store(location) as be:
        devices = sorted(
            (d.to_dict(include_secret=True) for d in be.iter_devices(SearchQuery())),
            key=lambda d: d["sn"],
        )
        groups = [g.to_dict(include_secret=True) for g in be.list_groups()]
        masterdata = [
            {k: v for k, v in m.to_dict().items() if m.id != "builtin" or k != "createTime"}
            for m in be.list_masterdata_groups()
        ]
        replacements = be.replacement_links()
    journal = open_journal(location)
    try:
        entries = [{k: v for k, v in e.to_dict().items() if k != "id"} for e in journal.entries()]
        marks = journal.batch_marks()
    finally:
        journal.close()
    return {
        "devices": devices,
        "order": [r[0] for r in query_store(location, "SELECT sn FROM devices ORDER BY rowid")],
        "groups": groups,
        "masterdata": masterdata,
        "replacements": replacements,
        "journal": entries,
        "marks": sorted(marks),
        "mark_rows": sorted(query_store(location, "SELECT * FROM journal_marks")),
        "batch_order": query_store(location, "SELECT value FROM meta WHERE key='batch_order'"),
    }


def counts(location: Path | str) -> dict[str, int]:
    with open_store(location) as be:
        return table_counts(be)


def store_copy(*args: str):
    """`enosprov store copy ARGS` in process (the root --store is not used by it)."""
    return Cli("unused.db")("store", "copy", *args)


def copy_json(source: Path | str, target: Path | str, *more: str, expect: int = 0) -> dict:
    result = store_copy("--from", str(source), "--to", str(target), "--json", *more)
    assert result.exit_code == expect, (result.stdout, result.stderr)
    return json.loads(result.stdout)


def by_table(report: dict) -> dict[str, dict]:
    return {t["table"]: t for t in report["tables"]}


# -- the round trip -------------------------------------------------------------------------------


def test_sqlite_to_postgresql_and_back_carries_everything(station, fresh_database, tmp_path):
    before = snapshot(station)
    assert len(before["devices"]) == 1220 and len(before["replacements"]) == 1
    assert any(d["deviceSecret"] for d in before["devices"])
    assert {e["operation"] for e in before["journal"]} >= {"register", "replace", "label-export"}
    assert max(e["deviceCount"] for e in before["journal"]) == 1200  # the compressed list

    there = copy_json(station, fresh_database)["data"]
    assert there["verified"] and not there["dryRun"]
    tables = by_table(there)
    assert tables["devices"] == {"table": "devices", "source": 1220, "copied": 1220,
                                 "alreadyThere": 0, "target": 1220}  # fmt: skip
    assert tables["registration_groups"]["copied"] == 2
    assert tables["masterdata_groups"]["alreadyThere"] == 1  # the built-in one
    assert snapshot(fresh_database) == before

    back = tmp_path / "back.db"
    assert not back.exists()
    copy_json(fresh_database, back)
    assert snapshot(back) == before
    assert counts(back) == counts(station)


def test_a_second_run_copies_nothing(station, fresh_database):
    copy_json(station, fresh_database)
    after_first = counts(fresh_database)
    again = copy_json(station, fresh_database)["data"]
    assert again["copied"] == 0 and again["verified"]
    assert all(t["copied"] == 0 and t["alreadyThere"] == t["source"] for t in again["tables"])
    assert counts(fresh_database) == after_first == counts(station)


def test_an_interrupted_copy_writes_nothing_and_a_rerun_completes_it(station, fresh_database):
    def interrupt(phase: str, done: int, total: int | None) -> None:
        if phase == "copy" and done > 500:
            raise KeyboardInterrupt

    empty = counts(fresh_database)
    with (
        open_store(station) as source,
        open_store(fresh_database) as target,
        pytest.raises(KeyboardInterrupt),
    ):
        copy_store(source, target, progress=interrupt, chunk_size=100)
    assert counts(fresh_database) == empty  # one transaction: rolled back whole
    copy_json(station, fresh_database)
    assert snapshot(fresh_database) == snapshot(station)


def test_only_what_is_missing_is_added(station, tmp_path):
    target = tmp_path / "target.db"
    copy_json(station, target)
    register(station, tmp_path, 30, start=5001)  # the station went on working
    journal = open_journal(station)
    journal.record("group-update", group_id="meters-eu", detail={"note": "later"})
    journal.close()
    report = by_table(copy_json(station, target)["data"])
    assert report["devices"]["copied"] == 30 and report["devices"]["alreadyThere"] == 1220
    assert report["journal"]["copied"] == 2  # the register record and the new one
    assert report["journal_devices"]["copied"] == 30
    assert snapshot(target) == snapshot(station)
    assert counts(target) == counts(station)


def test_a_store_that_never_wrote_a_journal_record(tmp_path):
    source, target = tmp_path / "plain.db", tmp_path / "target.db"
    with LocalBackend(source) as be:
        make_group(be)
        api.register_csv(be, _csv(tmp_path, 5), "meters-eu")  # no journal given
    copy_json(source, target)
    assert counts(target) == counts(source)
    assert not query_store(target, "SELECT name FROM sqlite_master WHERE name='journal'")
    # and into a store without journal tables, from one with a journal: they are created
    journal = open_journal(source)
    journal.record("group-update", group_id="meters-eu", detail={"note": "x"})
    journal.close()
    assert by_table(copy_json(source, target)["data"])["journal"]["copied"] == 1
    assert counts(target) == counts(source)


def _csv(tmp_path: Path, n: int) -> Path:
    path = tmp_path / f"rows-{n}.csv"
    path.write_text(meters_rows(n), encoding="utf-8")
    return path


# -- conflicts ------------------------------------------------------------------------------------


def test_a_group_with_another_secret_is_refused_and_nothing_is_written(station, tmp_path):
    target = tmp_path / "other.db"
    with LocalBackend(target) as be:
        make_group(be)  # same id and definition, its own secret
        theirs = be.get_group("meters-eu").group_secret
    with LocalBackend(station) as be:
        ours = be.get_group("meters-eu").group_secret
    before = counts(target)
    result = store_copy("--from", str(station), "--to", str(target))
    assert result.exit_code == EXIT_EXISTS_DIFFERENT
    assert "meters-eu" in result.stderr and "group_secret" in result.stderr
    assert "nothing was copied" in result.stderr
    assert "Traceback" not in result.stderr + result.stdout
    for secret in (ours, theirs):
        assert secret not in result.stderr + result.stdout
    error = copy_json(station, target, expect=EXIT_EXISTS_DIFFERENT)["error"]
    assert error["code"] == "exists_different"
    assert error["differences"][0] == {
        "table": "registration_groups", "id": "meters-eu", "columns": ["group_secret"]
    }  # fmt: skip
    assert ours not in json.dumps(error) and theirs not in json.dumps(error)
    assert counts(target) == before


def test_a_group_name_taken_by_another_group_is_refused(station, tmp_path):
    target = tmp_path / "other.db"
    with LocalBackend(target) as be:
        make_group(be, group_id="eu-meters")  # another id, the same name "Meters EU"
    before = counts(target)
    error = copy_json(station, target, expect=EXIT_EXISTS_DIFFERENT)["error"]
    assert "'eu-meters' has that id or name" in error["message"]
    assert counts(target) == before


def test_a_device_with_other_data_is_refused(station, fresh_database, tmp_path):
    copy_json(station, fresh_database)
    with open_store(fresh_database) as be:
        sn = be.find_by_device_sn("meters-eu", "SN-000500").sn
        be.update(sn, desc="changed in the plant database")
    before = counts(fresh_database)
    error = copy_json(station, fresh_database, expect=EXIT_EXISTS_DIFFERENT)["error"]
    assert f"device {sn} (SN-000500) has other data" in error["message"]
    assert "description" in error["message"]
    assert counts(fresh_database) == before


def test_a_device_sn_registered_under_another_sn_is_refused(station, tmp_path):
    target = tmp_path / "target.db"
    copy_json(station, target)
    register(station, tmp_path, 2, start=7001)  # the same deviceSns, registered twice over:
    register(target, tmp_path, 2, start=7001)  # different system sns
    before = counts(target)
    with (
        open_store(station) as source,
        open_store(target) as into,
        pytest.raises(DefinitionConflictError) as refused,
    ):
        copy_store(source, into)
    message = refused.value.message
    assert "2 rows" in message and "deviceSn SN-007001 of group 'meters-eu' is device" in message
    assert [d["columns"] for d in refused.value.differences] == [["device_sn"]] * 2
    assert counts(target) == before


# -- dry run, output, refusals --------------------------------------------------------------------


def test_dry_run_writes_nothing(station, fresh_database, tmp_path):
    before = counts(fresh_database)
    data = copy_json(station, fresh_database, "--dry-run")["data"]
    assert data["dryRun"] and not data["verified"]
    tables = by_table(data)
    assert tables["devices"]["copied"] == 1220 and tables["devices"]["target"] == 1220
    (order,) = query_store(
        station, "SELECT CAST(value AS INTEGER) FROM meta WHERE key='batch_order'"
    )
    assert data["batchOrder"] == {"source": order[0], "targetBefore": 0, "target": order[0]}
    assert counts(fresh_database) == before
    new = tmp_path / "new.db"
    data = copy_json(station, new, "--dry-run")["data"]
    assert data["target"] == f"{new} (new)" and by_table(data)["journal"]["copied"] > 0
    assert not new.exists()  # not even an empty store
    human = store_copy("--from", str(station), "--to", str(new), "--dry-run")
    assert human.exit_code == 0 and "dry run: nothing was written" in human.stdout
    assert "to copy" in human.stdout and not new.exists()


def test_human_summary(station, tmp_path):
    target = tmp_path / "t.db"
    result = store_copy("--from", str(station), "--to", str(target))
    assert result.exit_code == 0, result.stderr
    out = result.stdout
    assert f"copied {station} -> {target}" in out
    for label in ("registration groups", "devices", "journal records", "batch marks"):
        assert label in out
    assert "checked: every source row is in the target" in out
    again = store_copy("--from", str(station), "--to", str(target))
    assert "nothing to copy" in again.stdout


def test_json_report(station, tmp_path):
    data = copy_json(station, tmp_path / "t.db")["data"]
    assert set(data) == {"source", "target", "dryRun", "tables", "copied", "batchOrder",
                         "verified"}  # fmt: skip
    assert [t["table"] for t in data["tables"]] == list(TABLES)
    assert set(data["tables"][0]) == {"table", "source", "copied", "alreadyThere", "target"}
    assert data["copied"] == sum(t["copied"] for t in data["tables"])
    assert data["source"] == str(station)


def test_a_password_never_shows(station):
    url = "postgresql://u:hunter2@127.0.0.1:1/x?connect_timeout=2"
    for args in (("--from", str(station), "--to", url), ("--from", url, "--to", str(station))):
        result = store_copy(*args)
        assert result.exit_code == 3, (result.stdout, result.stderr)
        assert "hunter2" not in result.stdout + result.stderr
        assert "127.0.0.1" in result.stderr  # where, without the password
        result = store_copy(*args, "--json")
        assert result.exit_code == 3 and "hunter2" not in result.stdout + result.stderr
        assert json.loads(result.stdout)["error"]["code"] in ("backend_unavailable",
                                                               "store_unavailable")  # fmt: skip


def test_the_same_store_twice_and_a_missing_source_are_refused(station, tmp_path, monkeypatch):
    result = store_copy("--from", str(station), "--to", str(station))
    assert result.exit_code == 1 and "the same store" in result.stderr
    monkeypatch.chdir(station.parent)
    result = store_copy("--from", str(station), "--to", f"./{station.name}")
    assert result.exit_code == 1 and "the same store" in result.stderr
    missing = tmp_path / "missing.db"
    result = store_copy("--from", str(missing), "--to", str(tmp_path / "t.db"))
    assert result.exit_code == 1 and f"no store file {missing}" in result.stderr
    assert not missing.exists() and not (tmp_path / "t.db").exists()


def test_the_same_database_under_two_urls_is_refused(fresh_database):
    other_spelling = fresh_database + ("&" if "?" in fresh_database else "?") + "application_name=x"
    with (
        open_store(fresh_database) as a,
        open_store(other_spelling) as b,
        pytest.raises(InvalidArgumentError, match="the same store"),
    ):
        copy_store(a, b)


# -- many devices ---------------------------------------------------------------------------------


def test_thousands_of_devices_go_in_chunks(tmp_path, fresh_database):
    source = tmp_path / "big.db"
    with LocalBackend(source) as be:
        make_group(be)
    register(source, tmp_path, 3000)
    seen: dict[str, list[int]] = {}
    with open_store(source) as src, open_store(fresh_database) as dst:
        report = copy_store(src, dst, chunk_size=700,
                            progress=lambda phase, done, total: seen.setdefault(phase, []).append(done))  # fmt: skip
    assert report.tables["devices"].copied == 3000 and report.verified
    assert list(seen) == ["check", "copy", "verify"]
    assert len(seen["copy"]) >= 5  # 3,000 devices in chunks of 700, then the journal
    assert seen["copy"][-1] == sum(table_counts(LocalBackend(source)).values())
    assert snapshot(fresh_database) == snapshot(source)
    assert query_store(fresh_database, "SELECT sn FROM devices ORDER BY rowid") == query_store(
        source, "SELECT sn FROM devices ORDER BY rowid"
    )


# -- the pieces -----------------------------------------------------------------------------------


def test_journal_references_follow_the_new_ids():
    assert remap_detail('{"intent": 7, "run": "r"}', {7: 12}) == '{"intent": 12, "run": "r"}'
    assert remap_detail('{"intent": 7, "settles": 7}', {7: 3}) == '{"intent": 3, "settles": 3}'
    same = '{"run":  "r", "intent": 7}'
    assert remap_detail(same, {7: 7}) is same and remap_detail(same, {}) is same
    assert remap_detail(None, {1: 2}) is None


def test_a_source_that_changes_during_the_copy_is_caught(station, tmp_path):
    target = tmp_path / "t.db"
    changed = []

    def change(phase: str, done: int, total: int | None) -> None:
        if phase == "copy" and done == total and not changed:  # a station registers one more
            with LocalBackend(station) as other:
                data = {"deviceSn": "LATE-1", "max_capacity": 1, "phase": "single"}
                changed.extend(other.create("meters-eu", device_data=data))

    with open_store(station) as source, open_store(target) as into:
        before = table_counts(into)
        with pytest.raises(CopyMismatchError) as caught:
            copy_store(source, into, progress=change)
        assert changed
        assert "rolled back, nothing was written" in caught.value.message
        assert caught.value.exit_code == 4
        assert table_counts(into) == before


def test_a_record_that_refers_to_another_follows_its_new_id(tmp_path):
    source, target = tmp_path / "s.db", tmp_path / "t.db"
    with LocalBackend(source) as be:
        make_group(be)
    with LocalBackend(target) as be:
        make_group(be, group_id="other", name="Other")
    journal = open_journal(target)
    for note in ("a", "b", "c"):  # the target numbers its records further on
        journal.record("group-update", group_id="other", detail={"note": note})
    journal.close()
    journal = open_journal(source)
    intent = journal.record("register", outcome="pending", group_id="meters-eu",
                            devices=[("", "SN-1")], detail={"run": "r1"})  # fmt: skip
    journal.record("register", group_id="meters-eu", detail={"run": "r1", "intent": intent})
    journal.close()
    copy_json(source, target)
    (pending,) = query_store(target, "SELECT id FROM journal WHERE outcome='pending'")
    assert pending[0] == intent + 3
    journal = open_journal(target)
    try:
        (done,) = journal.entries(operations=["register"])  # the settled intent is not shown
        assert done.detail["intent"] == pending[0]
        assert journal.open_intents("meters-eu") == []  # settled there as it was here
    finally:
        journal.close()
    assert copy_json(source, target)["data"]["copied"] == 0  # and a re-run finds both


def test_rows_missing_here_and_there_are_found_across_chunks(station, tmp_path):
    target = tmp_path / "target.db"
    copy_json(station, target)
    with LocalBackend(target) as be:  # the target lost every 7th device of the big batch
        gone = [be.find_by_device_sn("meters-eu", f"SN-{i:06d}").sn for i in range(3, 1201, 7)]
        be.delete("meters-eu", gone)
    with open_store(station) as source, open_store(target) as into:
        report = copy_store(source, into, chunk_size=50)
    assert report.tables["devices"].copied == len(gone) == 172
    assert report.tables["devices"].present == 1220 - len(gone)
    assert report.verified
    mine, theirs = snapshot(station), snapshot(target)
    assert theirs["order"][-len(gone) :] == gone  # appended, in the source's order
    assert {k: v for k, v in theirs.items() if k != "order"} == {
        k: v for k, v in mine.items() if k != "order"
    }


def test_the_sync_state_comes_along(station, fresh_database, tmp_path):
    """A plant's store that pushed to EnOS (docs/sync.md): its imported groups and its links
    store sn -> EnOS sn are copied, identical ones skipped, another link a conflict."""
    with LocalBackend(station) as be:
        be.mark_imported("meters-eu", "prod")
        devices = list(be.iter_devices(SearchQuery(group_id="meters-eu")))[:600]
        be.link_pushed("meters-eu", [(d.device_sn, d.sn, f"E{i:015d}") for i, d in
                                     enumerate(devices)])  # fmt: skip
    with open_store(station) as source, open_store(fresh_database) as target:
        report = copy_store(source, target, chunk_size=250)
        assert (report.tables["sync_groups"].copied, report.tables["sync_links"].copied) == (1, 600)
        assert target.imported_from("meters-eu") == "prod"
        assert target.pushed_links("meters-eu") == source.pushed_links("meters-eu")
        again = copy_store(source, target)
        assert (again.tables["sync_links"].copied, again.tables["sync_links"].present) == (0, 600)
        # the target links one device to another EnOS sn: refused, nothing written
        target.link_pushed("meters-eu", [(devices[5].device_sn, devices[5].sn, "OTHER")])
        with pytest.raises(DefinitionConflictError, match="linked to another EnOS sn"):
            copy_store(source, target)
