"""`enosprov batches`: the store's indexed counts, the CLI, and its errors."""

from __future__ import annotations

import json
import sqlite3

import pytest
from conftest import make_group, meters_rows, store_journal

from enosprov import api
from enosprov.backends.local_schema import BATCH_STATE_WHERE
from enosprov.core import batches as batches_mod
from enosprov.core.batches import list_batches

DPS = "http://dps.example"


class NoIndexes:
    """The local store seen through the generic path (what the EnOS backend uses): the
    capabilities answer as backends/base.py's defaults do."""

    indexed = False

    def __init__(self, store):
        self.store = store

    def batch_summaries(self, group_id=None):
        return None

    def __getattr__(self, name):
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
             "SN-000001", "--device-sn", "SN-000002", "--label-format", "png", "--out",
             str(tmp_path / "labels"))  # fmt: skip
    for sn in ("SN-000001", "SN-000002", "SN-000003"):
        cli.json("device", "bootstrap", str(burn / f"{sn}.json"))
    cli.json("reprovision", "SN-000003", "--group", "meters-eu", "--region", "cn5", "--org",
             "o2", "--yes")  # fmt: skip
    cli.json("devices", "allocate", "SN-000050", "--group", "meters-eu")
    cli.json("replace", "SN-000002", "--group", "meters-eu", "--new-device-sn", "SN-000902", "--out",
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
    if not isinstance(store.conn, sqlite3.Connection):
        return  # PostgreSQL plans by statistics: a few rows are read without any index
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
    bad = cli("batches", "list", "--sort", "size")
    assert bad.exit_code == 2 and "'tag', 'first', 'last'" in bad.stderr


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
                      "--csv-out", str(csv_path))["data"]  # fmt: skip
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
             "--csv-out", str(csv_path))  # fmt: skip
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


# -- production by station ------------------------------------------------------------------------


@pytest.fixture
def stations(cli, store, store_location, write_csv, tmp_path, monkeypatch):
    """Batch B-1 of meters-eu made at several stations, through the CLI (--station), plus B-2."""
    monkeypatch.delenv("ENOSPROV_STATION", raising=False)
    make_group(store)
    cli.json("--station", "line-1", "register", "--csv", str(write_csv(meters_rows(6))),
             "--group", "meters-eu", "--batch-tag", "B-1")  # fmt: skip
    cli.json("--station", "line-2", "register", "--csv",
             str(write_csv(meters_rows(4, start=10), name="l2.csv")), "--group", "meters-eu",
             "--batch-tag", "B-1")  # fmt: skip
    cli.json("--station", "line-2", "register", "--csv",
             str(write_csv(meters_rows(3, start=50), name="b2.csv")), "--group", "meters-eu",
             "--batch-tag", "B-2")  # fmt: skip
    burn = tmp_path / "burn"
    for _ in range(2):  # the same files twice: each unit counts once at that station
        cli.json("--station", "burn-a", "burn", "export", "--group", "meters-eu", "--batch-tag",
                 "B-1", "--out", str(burn), "--dps-url", DPS)  # fmt: skip
    cli.json("--station", "burn-b", "burn", "export", "--group", "meters-eu", "--device-sn",
             "SN-000001", "--device-sn", "SN-000002", "--out", str(tmp_path / "burn-b"),
             "--dps-url", DPS)  # fmt: skip
    cli.json(
        "--station",
        "burn-b",
        "burn",
        "export",
        "--group",
        "meters-eu",
        "--batch-tag",
        "B-2",
        "--out",
        str(tmp_path / "burn-b2"),
        "--dps-url",
        DPS,
    )  # other batch
    cli.json("--station", "pack", "qr", "batch", "--group", "meters-eu", "--batch-tag", "B-1",
             "--device-sn", "SN-000001", "--device-sn", "SN-000002", "--device-sn", "SN-000003",
             "--label-format", "png", "--out", str(tmp_path / "labels"))  # fmt: skip
    monkeypatch.setenv("ENOSPROV_STATION", "pack-env")  # the station from the environment
    cli.json("qr", "batch", "--group", "meters-eu", "--batch-tag", "B-1", "--device-sn",
             "SN-000004", "--label-format", "png", "--out", str(tmp_path / "labels-2"))  # fmt: skip
    monkeypatch.delenv("ENOSPROV_STATION")
    cli.json(
        "qr",
        "batch",
        "--group",
        "meters-eu",
        "--batch-tag",
        "B-1",
        "--device-sn",
        "SN-000005",
        "--label-format",
        "png",
        "--out",
        str(tmp_path / "labels-3"),
    )  # no station
    # labels sent to a printer: two printed (a file printer), one refused (nothing listens)
    cli.json("--station", "pack", "qr", "batch", "--group", "meters-eu", "--device-sn",
             "SN-000001", "--device-sn", "SN-000002", "--printer",
             f"file:{tmp_path / 'spool.zpl'}", "--out", str(tmp_path / "print-1"))  # fmt: skip
    cli.json("--station", "pack", "qr", "batch", "--group", "meters-eu", "--device-sn",
             "SN-000010", "--printer", "tcp://127.0.0.1:1", "--out", str(tmp_path / "print-2"),
             expect=6)  # fmt: skip
    # A registration chunk whose creates failed (EnOS unreachable mid-run), as ChunkAudit
    # records it: the local store never fails a create by itself.
    from enosprov.journal import Actor

    journal = store_journal(store_location, Actor.current("local", station="line-2"))
    journal.record(
        "register", outcome="failed", group_id="meters-eu", error="EnOS did not answer",
        detail={"run": "r1", "part": 1, "batchTag": "B-1", "created": 0, "skipped": 0,
                "conflicts": 0, "failed": 3, "invalid": 0},
    )  # fmt: skip
    journal.close()
    return burn


def by_station(production: dict) -> dict:
    return {s["station"]: s for s in production["stations"]}


def test_show_gives_production_by_station(cli, stations):
    data = cli.json("batches", "show", "B-1", "--group", "meters-eu")["data"]
    prod = data["production"]
    assert prod["unit"] == "hour"  # everything happened within two days
    got = by_station(prod)
    assert list(got) == ["burn-a", "burn-b", "line-1", "line-2", "pack", "pack-env", None]
    outputs = ("registered", "burned", "labelled", "printed", "failed")
    table = {k: tuple(v[o] for o in outputs) for k, v in got.items()}
    assert table == {
        "line-1": (6, 0, 0, 0, 0),
        "line-2": (4, 0, 0, 0, 3),  # B-2's three units are another batch
        "burn-a": (0, 10, 0, 0, 0),  # exported twice, ten units
        "burn-b": (0, 2, 0, 0, 0),  # its B-2 export is another batch
        # labels 1, 2, 3 (png), 1, 2 printed, 10: label file written, not printed (failed)
        "pack": (0, 0, 4, 2, 1),
        "pack-env": (0, 0, 1, 0, 0),  # $ENOSPROV_STATION
        None: (0, 0, 1, 0, 0),  # no station: "(none)" in the tables
    }
    assert got["line-2"]["failedRuns"] == 1 and got["pack"]["failedRuns"] == 1
    assert got["line-1"]["failedRuns"] == 0
    assert got["pack"]["units"] == 4 and got["burn-a"]["units"] == 10
    for s in got.values():
        assert s["first"] <= s["last"]
        assert s["unitsPerHour"] is None  # all within a minute: no rate
    # the periods add up to the station totals
    for station, s in got.items():
        rows = [p for p in prod["periods"] if p["station"] == station]
        assert rows and all(p["period"].endswith(":00Z") for p in rows)
        assert {o: sum(p[o] for p in rows) for o in outputs} == {o: s[o] for o in outputs}
    # the same journal, batch B-2: only its own work
    other = by_station(cli.json("batches", "show", "B-2")["data"]["production"])
    assert {k: (v["registered"], v["burned"]) for k, v in other.items()} == {
        "line-2": (3, 0), "burn-b": (0, 3)
    }  # fmt: skip


def test_show_prints_the_production_tables(cli, stations):
    text = cli("batches", "show", "B-1", "--group", "meters-eu").stdout
    assert "production by station" in text and "production per hour (UTC)" in text
    lines = {line.split("│")[1].strip(): line for line in text.splitlines() if "│" in line}
    cells = [c.strip() for c in lines["line-2"].split("│")[2:8]]
    assert cells == ["4", "0", "0", "0", "3", "1"]  # registered..failed, failed runs
    assert "(none)" in lines and "pack-env" in lines


def test_production_counts_replaced_and_deleted_units(cli, lived):
    """Units that left DPS (replaced, deleted) still count where they were made."""
    prod = cli.json("batches", "show", "B-1", "--group", "meters-eu")["data"]["production"]
    [only] = prod["stations"]
    assert only["station"] is None
    # 6 registered (the replacement unit came from `replace`, not a registration), 7 burned
    # (the 6 and the replacement unit's file, `replace --out`), 2 labelled
    assert (only["registered"], only["burned"], only["labelled"]) == (6, 7, 2)


def test_production_per_day_and_units_per_hour(tmp_path, monkeypatch):
    """A batch made within two days is shown per hour, over more days per day; a station's rate
    is its units over the time between its first and last record."""
    import datetime as dt
    import types

    from enosprov import journal as journal_mod
    from enosprov.core.batches import BatchSummary, batch_production
    from enosprov.journal import Actor, Journal

    start = dt.datetime(2026, 9, 21, 8, 30, tzinfo=dt.timezone.utc).timestamp()
    clock = {"now": start}
    monkeypatch.setattr(journal_mod, "time", types.SimpleNamespace(time=lambda: clock["now"]))
    journal = Journal(tmp_path / "j.db", Actor.current("local", station="line-1"))

    def register(first: int, n: int, tag: str = "B", **detail) -> None:
        journal.record("register", group_id="g",
                       devices=[(f"s{i}", f"D{i}") for i in range(first, first + n)],
                       detail={"batchTag": tag, "created": n, **detail})  # fmt: skip

    register(0, 10)
    register(100, 1, tag="other")  # another batch's record
    journal.record(
        "register",
        group_id="g",
        outcome="pending",
        devices=[("", "D99")],
        detail={"batchTag": "B", "part": 3},
    )  # an open intent counts nothing
    clock["now"] = start + 2 * 3600
    register(10, 5, failed=1)
    members = {f"s{i}" for i in range(15)}
    prod = batch_production(journal, BatchSummary("g", "B"), members)
    assert prod.unit == "hour"
    [st] = prod.stations
    assert (st.station, st.counts["registered"], st.counts["failed"], st.units) == (
        "line-1", 15, 1, 15
    )  # fmt: skip
    assert st.units_per_hour == 7.5  # 15 units in two hours
    assert [(p.period, p.counts["registered"], p.counts["failed"]) for p in prod.periods] == [
        ("2026-09-21T08:00Z", 10, 0), ("2026-09-21T10:00Z", 5, 1)
    ]  # fmt: skip

    clock["now"] = start + 50 * 3600
    register(15, 2)
    prod = batch_production(journal, BatchSummary("g", "B"), members | {"s15", "s16"})
    assert prod.unit == "day"
    assert [(p.period, p.counts["registered"]) for p in prod.periods] == [
        ("2026-09-21", 15), ("2026-09-23", 2)
    ]  # fmt: skip
    journal.close()
