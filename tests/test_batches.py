"""`enosprov batches`: the store's indexed counts, the CLI, and its errors."""

from __future__ import annotations

import json

import pytest
from conftest import make_group, meters_rows

from enosprov import api
from enosprov.backends.local_schema import BATCH_STATE_WHERE
from enosprov.core import batches as batches_mod
from enosprov.core.batches import list_batches

DPS = "http://dps.example"


class NoIndexes:
    """The local store seen through the generic path (what the EnOS backend uses)."""

    def __init__(self, store):
        self.store = store

    def __getattr__(self, name):
        if name == "batch_summaries":
            raise AttributeError(name)
        return getattr(self.store, name)


@pytest.fixture
def lived(cli, store, write_csv, tmp_path):
    """A store with two batches whose devices reached known states, through the CLI."""
    make_group(store)
    make_group(store, group_id="other", name="Other")
    cli.json("register", "--csv", str(write_csv(meters_rows(6))), "--group", "meters-eu",
             "--batch-tag", "B-1")  # fmt: skip
    cli.json("register", "--csv", str(write_csv(meters_rows(3, start=50), name="b2.csv")),
             "--group", "meters-eu", "--batch-tag", "B-2")  # fmt: skip
    cli.json("register", "--csv", str(write_csv(meters_rows(2, start=80), name="o.csv")),
             "--group", "other", "--batch-tag", "B-1")  # fmt: skip
    burn = tmp_path / "burn"
    cli.json("burn", "export", "--group", "meters-eu", "--batch-tag", "B-1", "--out", str(burn),
             "--dps-url", DPS)  # fmt: skip
    cli.json("qr", "batch", "--group", "meters-eu", "--batch-tag", "B-1", "--device-sn",
             "SN-000001", "--device-sn", "SN-000002", "--format", "png", "--out",
             str(tmp_path / "labels"))  # fmt: skip
    for sn in ("SN-000001", "SN-000002", "SN-000003"):
        cli.json("device", "bootstrap", str(burn / f"{sn}.json"))
    cli.json("reprovision", "SN-000003", "--group", "meters-eu", "--region", "cn5", "--org",
             "o2", "--yes")  # fmt: skip
    cli.json("devices", "allocate", "SN-000050", "--group", "meters-eu")
    cli.json("replace", "SN-000002", "--group", "meters-eu", "--new-sn", "SN-000902", "--out",
             str(tmp_path / "new"), "--dps-url", DPS, "--yes")  # fmt: skip
    cli.json("devices", "delete", "SN-000006", "--group", "meters-eu", "--yes")
    return burn


def counts(cli, *args):
    data = cli.json("batches", "list", *args)["data"]
    return {(b["groupId"], b["batchTag"]): b["counts"] for b in data}


def test_list_counts_every_state(cli, lived):
    got = counts(cli)
    assert got[("meters-eu", "B-1")] == {
        "registered": 5,  # 6 - SN-000006 deleted - SN-000002 replaced + SN-000902 (inherits)
        "exported": 7,  # 6 files + the replacement unit's file
        "labelled": 2,
        "allocated": 2,  # SN-000001 and SN-000902 (took over); SN-000003 reset
        "connected": 1,  # SN-000001
        "failed": 0,
        "reprovisioned": 1,
        "replaced": 1,
        "deleted": 1,
    }
    assert got[("meters-eu", "B-2")]["allocated"] == 1
    assert got[("other", "B-1")]["registered"] == 2
    only = counts(cli, "--group", "other")
    assert list(only) == [("other", "B-1")]


def test_generic_path_matches_the_indexed_counts(cli, lived, store):
    indexed = sorted(r[:3] + r[5:9] for r in store.batch_summaries())
    generic = sorted(r[:3] + r[5:9] for r in batches_mod._store_rows(NoIndexes(store), None))
    assert indexed == generic
    plan = store.conn.execute(
        "EXPLAIN QUERY PLAN SELECT group_id, batch_tag, sum(reprovisioning) FROM devices "
        f"WHERE {BATCH_STATE_WHERE} GROUP BY group_id, batch_tag"
    ).fetchall()
    assert "devices_batch_state" in str(plan)


def test_list_sort_and_time_filters(cli, lived):
    tags = [b["batchTag"] for b in cli.json("batches", "list", "--sort", "registered")["data"]]
    assert tags[0] == "B-1"
    assert cli.json("batches", "list", "--since", "2000-01-01")["data"]
    assert cli.json("batches", "list", "--until", "2000-01-01")["data"] == []
    assert cli.json("batches", "list", "--since", "1d")["data"]
    bad = cli.json("batches", "list", "--sort", "size", expect=1)
    assert "one of: tag, first" in bad["error"]["hint"]


def test_show_stuck_states_and_pages(cli, lived):
    fresh = cli.json("batches", "show", "B-1", "--group", "meters-eu")["data"]
    assert fresh["stuckCount"] == 0 and fresh["counts"]["registered"] == 5
    stuck = cli.json("batches", "show", "B-1", "--group", "meters-eu", "--stale", "0m")["data"]
    # exported and never bootstrapped: 4, 5 and 902 (took over an allocation, never connected);
    # 1 connected, 3 connected before its reprovisioning reset, 2 replaced, 6 deleted
    assert sorted(s["deviceSn"] for s in stuck["stuck"]) == ["SN-000004", "SN-000005", "SN-000902"]
    assert sum(stuck["activationsPerDay"].values()) == 2
    assert [r["newDeviceSn"] for r in stuck["replacements"]] == ["SN-000902"]

    page1 = cli.json("batches", "show", "B-1", "-g", "meters-eu", "--state", "exported",
                     "--limit", "4")["data"]  # fmt: skip
    page2 = cli.json("batches", "show", "B-1", "-g", "meters-eu", "--state", "exported",
                     "--limit", "4", "--page", "2")["data"]  # fmt: skip
    assert page1["total"] == 7 and len(page1["devices"]) == 4 and len(page2["devices"]) == 3
    names = {d["deviceSn"] for d in page1["devices"] + page2["devices"]}
    assert len(names) == 7
    connected = cli.json("batches", "show", "B-1", "-g", "meters-eu", "--state", "connected")
    assert [d["deviceSn"] for d in connected["data"]["devices"]] == ["SN-000001"]

    text = cli("batches", "show", "B-1", "-g", "meters-eu", "--stale", "0m").stdout
    assert "stuck" in text and "SN-000004" in text and "activations per day" in text


def test_untagged_devices_are_a_batch_of_their_own(cli, lived, write_csv):
    cli.json("register", "--csv", str(write_csv(meters_rows(2, start=90), name="u.csv")),
             "--group", "meters-eu")  # fmt: skip
    listed = [b for b in cli.json("batches", "list")["data"] if b["batchTag"] is None]
    assert [b["counts"]["registered"] for b in listed] == [2]
    shown = cli.json("batches", "show", "(none)", "--group", "meters-eu", "--state", "registered")
    assert sorted(d["deviceSn"] for d in shown["data"]["devices"]) == ["SN-000090", "SN-000091"]


def test_show_errors(cli, lived):
    ambiguous = cli.json("batches", "show", "B-1", expect=1)
    assert "2 groups" in ambiguous["error"]["message"]
    assert cli.json("batches", "show", "NOPE", expect=1)["error"]["code"] == "not_found"
    bad = cli.json("batches", "show", "B-2", "--stale", "soon", expect=1)
    assert "--stale" in bad["error"]["message"]
    state = cli.json("batches", "show", "B-2", "--state", "happy", expect=1)
    assert "unknown state" in state["error"]["message"]


def test_report_writes_html_and_csv(cli, lived, tmp_path):
    out, csv_path = tmp_path / "r" / "b1.html", tmp_path / "b1.csv"
    out.parent.mkdir()
    result = cli.json("batches", "report", "B-1", "-g", "meters-eu", "--out", str(out),
                      "--csv", str(csv_path))["data"]  # fmt: skip
    html = out.read_text(encoding="utf-8")
    assert "<script" not in html.lower() and "B-1" in html
    assert result["csvRows"] == 7  # 5 in DPS + 1 replaced + 1 deleted
    lines = csv_path.read_text(encoding="utf-8-sig").splitlines()
    assert len(lines) == 8 and lines[0].startswith("deviceSn")


def test_journal_marks_are_append_only_and_first_time_wins(store_path, tmp_path):
    import sqlite3

    from enosprov.journal import Actor, Journal

    j = Journal(tmp_path / "j.db", Actor.current("local"))
    rec = j.begin("burn-export", group_id="g")
    rec.add("s1", "D1")
    rec.mark("exported", "s1", "D1", "B")
    rec.commit()
    first = j.marked("g", "B", ("exported",))
    rec = j.begin("burn-export", group_id="g")
    rec.mark("exported", "s1", "D1", "B")
    rec.commit()
    assert j.marked("g", "B", ("exported",)) == first
    with pytest.raises(sqlite3.DatabaseError, match="append-only"):
        j._conn.execute("DELETE FROM journal_marks")
    assert json.dumps(j.batch_marks("g"))  # (group, tag, mark, count, first, last)
    assert j.batch_marks("g")[0][:4] == ("g", "B", "exported", 1)


def test_batches_on_the_enos_backend_come_from_dps_search(backend, group, write_csv, tmp_path):
    from enosprov.journal import Actor, Journal

    j = Journal(tmp_path / "j.db", Actor.current(backend.name))
    api.register_csv(backend, write_csv(meters_rows(3)), group.group_id, batch_tag="B-9")
    backend.allocate(backend.find_by_device_sn(group.group_id, "SN-000001").sn)
    [b] = list_batches(backend, j)
    assert b.counts["registered"] == 3 and b.counts["allocated"] == 1
    expected = "store" if backend.name == "local" else "DPS search"
    assert b.sources["allocated"] == expected and b.sources["exported"] == "journal"


def test_failed_devices_are_counted_and_reported(cli, lived, store, tmp_path):
    # Neither the store nor the emulator fails a device by itself: set what EnOS would report.
    sn = store.find_by_device_sn("meters-eu", "SN-000004").sn
    store.conn.execute(
        "UPDATE devices SET allocate_error_msg='quota exceeded', update_time=update_time+1 "
        "WHERE sn=?",
        (sn,),
    )
    assert counts(cli)[("meters-eu", "B-1")]["failed"] == 1
    failed = cli.json("batches", "show", "B-1", "-g", "meters-eu", "--state", "failed")["data"]
    assert [d["deviceSn"] for d in failed["devices"]] == ["SN-000004"]
    csv_path = tmp_path / "f.csv"
    cli.json("batches", "report", "B-1", "-g", "meters-eu", "--out", str(tmp_path / "f.html"),
             "--csv", str(csv_path))  # fmt: skip
    rows = [line.split(",") for line in csv_path.read_text(encoding="utf-8-sig").splitlines()]
    assert [r[2] for r in rows if r[0] == "SN-000004"] == ["failed"]
    html = (tmp_path / "f.html").read_text(encoding="utf-8")
    assert 'data-state="failed">1<' in html


def test_show_counts_in_its_own_pass_match_list(backend, group, write_csv, tmp_path):
    """With --group on a backend without indexes, show counts during its one pass over the
    batch; the figures are those of list."""
    from enosprov.core.batches import show_batch
    from enosprov.errors import NotFoundError
    from enosprov.journal import Actor, Journal

    j = Journal(tmp_path / "j.db", Actor.current(backend.name))
    api.register_csv(backend, write_csv(meters_rows(4)), group.group_id, batch_tag="B-7",
                     journal=j)  # fmt: skip
    api.register_csv(backend, write_csv(meters_rows(2, start=20), name="u.csv"), group.group_id)
    backend.allocate(backend.find_by_device_sn(group.group_id, "SN-000002").sn)
    for tag in ("B-7", "(none)"):
        [listed] = [b for b in list_batches(backend, j) if b.tag_text == tag]
        shown = show_batch(backend, j, tag, group=group.group_id).summary
        assert shown.to_dict() == listed.to_dict()
    with pytest.raises(NotFoundError):
        show_batch(backend, j, "B-404", group=group.group_id)
