"""Batch monitoring on a store of known states, on both backends: the counts of ``list_batches``,
the stuck devices, activations and replacements of ``show_batch``, and the HTML and CSV reports
written from them."""

from __future__ import annotations

import csv
import json
import re
import time
from html.parser import HTMLParser

import pytest
from conftest import meters_rows

from enosprov import api
from enosprov.burn.export import Selection, export_burn_files
from enosprov.core.batches import STATES, find_batch, list_batches, show_batch
from enosprov.core.device_ops import allocate_devices, delete_devices
from enosprov.core.replacement import replace_device
from enosprov.core.reprovision import reprovision
from enosprov.device import bootstrap_device, read_credential
from enosprov.journal import Actor, Journal
from enosprov.qr.batch import qr_batch
from enosprov.reports import render_batch_html, write_batch_csv, write_batch_html
from enosprov.reports.batch_html import activation_columns

DPS = "http://dps.example"
GROUP = "meters-eu"
DAY = 86_400_000
FAR = int(time.time() * 1000) + 3650 * DAY  # every exported/labelled device is stale by then


def sns(*numbers: int) -> tuple[str, ...]:
    return tuple(f"SN-{n:06d}" for n in numbers)


@pytest.fixture
def journal(backend, tmp_path):
    j = Journal(tmp_path / "j.db", Actor.current(backend.name, station="line-3"))
    yield j
    j.close()


@pytest.fixture
def batches(backend, group, write_csv, tmp_path, journal):
    """B-1: SN-000001..8, B-2: SN-000009..10, then:

    exported 1-5, labelled 1, 2, 6, 7; bootstrapped 1, 2, 3; allocated by API 4; reprovisioned 3
    (reset, waiting); 1 replaced by SN-900001 (which inherits B-1, allocated); 8 deleted.
    """
    register = api.register_csv
    register(backend, write_csv(meters_rows(8)), GROUP, batch_tag="B-1", journal=journal)
    register(backend, write_csv(meters_rows(2, start=9), name="b2.csv"), GROUP, batch_tag="B-2",
             journal=journal)  # fmt: skip
    burn = tmp_path / "burn"
    export_burn_files(backend, Selection(GROUP, device_sns=sns(1, 2, 3, 4, 5)), burn,
                      dps_url=DPS, journal=journal)  # fmt: skip
    qr_batch(backend, Selection(GROUP, device_sns=sns(1, 2, 6, 7)), tmp_path / "labels",
             fmt="png", journal=journal)  # fmt: skip
    for device_sn in sns(1, 2, 3):
        bootstrap_device(backend, read_credential(burn / f"{device_sn}.json"), journal=journal)
    allocate_devices(backend, [backend.find_by_device_sn(GROUP, "SN-000004")], journal=journal)
    reprovision(backend, ["SN-000003"], group=GROUP, region_id="cn5", org_id="o2",
                journal=journal)  # fmt: skip
    replace_device(backend, "SN-000001", "SN-900001", journal=journal)
    delete_devices(backend, [backend.find_by_device_sn(GROUP, "SN-000008")], journal=journal)
    return journal


EXPECTED_B1 = {
    "registered": 7,  # 8 - replaced - deleted + the replacement unit
    "exported": 5,
    "labelled": 4,
    "allocated": 3,  # SN-000002, SN-000004, SN-900001
    "connected": 1,  # SN-000002 (SN-000001 was replaced, SN-000003 reset)
    "failed": 0,
    "reprovisioned": 1,
    "replaced": 1,
    "deleted": 1,
}
STUCK = set(sns(4, 5, 6, 7))  # exported or labelled, in DPS, never bootstrapped (3 was reset)


def test_list_batches_counts_every_state_with_its_source(backend, batches):
    found = {b.batch_tag: b for b in list_batches(backend, batches, group=GROUP)}
    assert set(found) == {"B-1", "B-2"}
    assert found["B-1"].counts == EXPECTED_B1
    assert found["B-2"].counts == dict.fromkeys(STATES, 0) | {"registered": 2}
    store = "store" if backend.name == "local" else "DPS search"
    assert found["B-1"].sources == {
        "registered": store, "exported": "journal", "labelled": "journal", "allocated": store,
        "connected": store, "failed": store, "reprovisioned": store, "replaced": "journal",
        "deleted": "journal",
    }  # fmt: skip
    b1 = found["B-1"]
    assert b1.first_activity is not None and b1.first_activity <= b1.last_activity
    assert [b.batch_tag for b in list_batches(backend, batches, sort="registered")] == [
        "B-1", "B-2"
    ]  # fmt: skip


def test_show_batch_stuck_activations_and_lineage(backend, batches):
    detail = show_batch(backend, batches, "B-1", now=FAR)
    assert detail.stuck_count == len(detail.stuck) == len(STUCK)
    assert {s.device_sn for s in detail.stuck} == STUCK
    by_sn = {s.device_sn: s for s in detail.stuck}
    assert by_sn["SN-000006"].mark == "labelled" and by_sn["SN-000004"].mark == "exported"
    assert by_sn["SN-000004"].allocate_status == "allocated"
    assert sum(detail.activations.values()) == EXPECTED_B1["allocated"]
    [replacement] = detail.lineage
    assert (replacement["oldDeviceSn"], replacement["newDeviceSn"]) == ("SN-000001", "SN-900001")
    assert replacement["station"] == "line-3"

    capped = show_batch(backend, batches, "B-1", now=FAR, stuck_limit=2)
    assert capped.stuck_count == 4 and len(capped.stuck) == 2
    fresh = show_batch(backend, batches, "B-1", stale="7d")  # everything happened just now
    assert fresh.stuck == [] and fresh.stuck_count == 0
    assert show_batch(backend, batches, "B-2").lineage == []


class CountReader(HTMLParser):
    """The ``td.count`` figures, every src/href, and whether there is a script."""

    def __init__(self) -> None:
        super().__init__()
        self.counts: dict[str, str] = {}
        self.links: list[str] = []
        self.scripts = 0
        self._state: str | None = None

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        self.scripts += tag == "script"
        self.links += [v for k, v in attrs if k in ("src", "href") and v]
        if tag == "td" and "count" in (a.get("class") or "").split():
            self._state = a["data-state"]
            self.counts[self._state] = ""

    def handle_data(self, data):
        if self._state:
            self.counts[self._state] += data

    def handle_endtag(self, tag):
        if tag == "td":
            self._state = None


def test_html_report_reads_back_and_is_self_contained(backend, batches, tmp_path):
    detail = show_batch(backend, batches, "B-1", now=FAR)
    path = write_batch_html(detail, tmp_path / "out/report.html", generated_ms=FAR,
                            backend_label=backend.name)  # fmt: skip
    text = path.read_text(encoding="utf-8")
    assert text == render_batch_html(detail, generated_ms=FAR, backend_label=backend.name)
    reader = CountReader()
    reader.feed(text)
    reader.close()
    assert {s: int(n) for s, n in reader.counts.items()} == detail.summary.counts == EXPECTED_B1
    assert reader.scripts == 0 and "<script" not in text.lower()
    assert not [u for u in reader.links if u.startswith(("http://", "https://", "//"))]
    assert "url(" not in text and "@import" not in text and "@font-face" not in text
    assert (
        text.startswith("<!DOCTYPE html>") and "<title>Batch B-1 — group meters-eu</title>" in text
    )
    for device_sn in STUCK:
        assert f'data-device-sn="{device_sn}"' in text
    assert "SN-000001" in text and "SN-900001" in text and "line-3" in text
    assert "<svg" in text and "Activations per day" in text
    assert list(tmp_path.joinpath("out").iterdir()) == [path]  # no temporary file left


def test_html_report_escapes_data_and_shows_empty_states(backend, batches):
    detail = show_batch(backend, batches, "B-2")
    detail.summary.batch_tag = "<b>B&2</b>"
    detail.lineage = [{"time": "2026-11-03T08:00:00.000Z", "oldSn": "o", "oldDeviceSn": "<x>",
                       "newSn": "n", "newDeviceSn": "y", "station": '"s"', "user": "u"}]  # fmt: skip
    text = render_batch_html(detail, generated_ms=0, backend_label="<local>")
    assert "<b>B&2</b>" not in text and "&lt;b&gt;B&amp;2&lt;/b&gt;" in text
    assert "<x>" not in text and "&lt;local&gt;" in text and "&quot;s&quot;" in text
    assert "none</td>" in text  # no stuck device
    assert "No device of this batch has been allocated yet." in text


def test_activation_columns_fill_gaps_and_bucket_long_spans():
    cols, unit = activation_columns({"2026-11-01": 2, "2026-11-04": 5})
    assert unit == "day" and [n for _d, n in cols] == [2, 0, 0, 5]
    long = {"2026-01-05": 1, "2026-03-16": 2, "2026-03-17": 3}  # 72 days
    cols, unit = activation_columns(long)
    assert unit == "week" and len(cols) == 11 and sum(n for _d, n in cols) == 6
    assert cols[0][0].isoformat() == "2026-01-05" and cols[-1][1] == 5
    cols, unit = activation_columns({"2020-01-01": 1, "2026-01-01": 1})
    assert unit == "month" and len(cols) == 73
    assert activation_columns({}) == ([], "day")


def test_csv_has_one_row_per_unit_with_its_state(backend, batches, tmp_path):
    detail = show_batch(backend, batches, "B-1", now=FAR)
    path = tmp_path / "devices.csv"
    written = write_batch_csv(backend, batches, detail, path)
    assert path.read_bytes().startswith(b"\xef\xbb\xbfdeviceSn,sn,state,")
    with path.open(encoding="utf-8-sig", newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert written == len(rows) == EXPECTED_B1["registered"] + 2
    by_dsn = {r["deviceSn"]: r for r in rows}
    assert {d: r["state"] for d, r in by_dsn.items()} == {
        "SN-000002": "connected", "SN-000003": "reprovisioned", "SN-000004": "allocated",
        "SN-000005": "registered", "SN-000006": "registered", "SN-000007": "registered",
        "SN-900001": "allocated", "SN-000001": "replaced", "SN-000008": "deleted",
    }  # fmt: skip
    assert {d for d, r in by_dsn.items() if r["stuck"] == "yes"} == STUCK
    assert by_dsn["SN-000001"]["replacedBy"] == "SN-900001"
    assert [r["deviceSn"] for r in rows[-2:]] == ["SN-000001", "SN-000008"]  # left DPS, in order
    two = by_dsn["SN-000002"]
    assert all(two[c].endswith("Z") for c in ("registered", "exported", "labelled", "allocated",
                                              "connected"))  # fmt: skip
    assert two["reprovisioned"] == "" and by_dsn["SN-000003"]["reprovisioned"].endswith("Z")
    assert by_dsn["SN-000003"]["connected"] == by_dsn["SN-000003"]["allocated"] == ""
    assert by_dsn["SN-000006"]["exported"] == "" and by_dsn["SN-000006"]["labelled"]
    assert by_dsn["SN-000001"]["exported"] and by_dsn["SN-000001"]["registered"] == ""

    fresh = show_batch(backend, batches, "B-1")
    write_batch_csv(backend, batches, fresh, path)
    with path.open(encoding="utf-8-sig", newline="") as fh:
        assert {r["stuck"] for r in csv.DictReader(fh)} == {"no"}


def test_unknown_batch_is_not_found(backend, batches):
    from enosprov.errors import NotFoundError

    with pytest.raises(NotFoundError, match="no batch 'B-9'"):
        find_batch(backend, batches, "B-9")


# -- spreadsheet-safe CSV (CSV formula injection) -----------------------------------------------

FORMULA_TAG = "-2+3"
VALUE_RE = re.compile(r"[+-]?(\d+(\.\d*)?|\.\d+)([eE][+-]?\d+)?|[+-]\d\d:\d\d")


def _formula_cells(path) -> list[str]:
    with path.open(encoding="utf-8-sig", newline="") as fh:
        cells = [c for r in csv.reader(fh) for c in r]
    triggers = ("=", "+", "-", "@", "\t", "\r")
    return [c for c in cells if c.startswith(triggers) and not VALUE_RE.fullmatch(c)]


@pytest.fixture
def formula_batch(backend, group, write_csv, journal):
    """Batch "-2+3": deviceSns -SN-0001 (replaced by -R-0001), SN-0002, -1234 (a number)."""
    text = (
        "deviceSn,deviceName,desc,max_capacity,phase,site\n"
        "-SN-0001,=1+2,@x,-5,single,+x\n"
        "SN-0002,+Meter,=B1,40,three,@site\n"
        "-1234,Meter,plain,40,three,\n"
    )
    api.register_csv(backend, write_csv(text), GROUP, batch_tag=FORMULA_TAG, journal=journal)
    replace_device(backend, "-SN-0001", "-R-0001", journal=journal)
    return journal


def test_batch_csv_is_spreadsheet_safe(backend, formula_batch, tmp_path):
    detail = show_batch(backend, formula_batch, FORMULA_TAG)
    path = tmp_path / "safe.csv"
    assert write_batch_csv(backend, formula_batch, detail, path) == 4
    assert _formula_cells(path) == []
    with path.open(encoding="utf-8-sig", newline="") as fh:
        rows = {r["deviceSn"]: r for r in csv.DictReader(fh)}
    assert set(rows) == {"'-R-0001", "SN-0002", "-1234", "'-SN-0001"}  # a number stays raw
    assert rows["'-SN-0001"]["state"] == "replaced"
    assert rows["'-SN-0001"]["replacedBy"] == "'-R-0001"

    raw = tmp_path / "raw.csv"
    write_batch_csv(backend, formula_batch, detail, raw, raw_csv=True)
    assert sorted(_formula_cells(raw)) == ["-R-0001", "-R-0001", "-SN-0001"]


def test_batches_report_cli_csv_and_raw_csv(backend, formula_batch, cli, tmp_path):
    # the CLI reads the store's own journal (not the test's): the units now in DPS only
    safe, raw = tmp_path / "safe.csv", tmp_path / "raw.csv"
    for path, extra in ((safe, ()), (raw, ("--raw-csv",))):
        result = cli("batches", "report", "--out", str(tmp_path / "r.html"), "--csv-out", str(path),
                     *extra, "--json", "--", FORMULA_TAG)  # fmt: skip
        assert result.exit_code == 0, result.stderr
        assert json.loads(result.stdout)["data"]["csvRows"] == 3
    assert _formula_cells(safe) == []
    assert _formula_cells(raw) == ["-R-0001"]


# -- production by station ------------------------------------------------------------------------


class ProductionReader(HTMLParser):
    """The production section: ``tr.station`` rows (station -> output -> text) and
    ``tr.period`` rows ((period, station) -> output -> text)."""

    def __init__(self) -> None:
        super().__init__()
        self.stations: dict[str, dict[str, str]] = {}
        self.periods: dict[tuple[str, str], dict[str, str]] = {}
        self.charts: list[str] = []
        self._row: dict[str, str] | None = None
        self._cell: str | None = None

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        classes = (a.get("class") or "").split()
        if tag == "svg":
            self.charts += classes
        if tag == "tr" and "station" in classes:
            self._row = self.stations.setdefault(a["data-station"], {})
        elif tag == "tr" and "period" in classes:
            self._row = self.periods.setdefault((a["data-period"], a["data-station"]), {})
        elif tag == "td" and self._row is not None and a.get("data-output"):
            self._cell = a["data-output"]
            self._row[self._cell] = ""

    def handle_data(self, data):
        if self._row is not None and self._cell:
            self._row[self._cell] += data

    def handle_endtag(self, tag):
        if tag == "td":
            self._cell = None
        elif tag == "tr":
            self._row = None


OUTPUTS = ("registered", "burned", "labelled", "printed", "failed")


@pytest.fixture
def stations(backend, batches, tmp_path):
    """The batches of ``batches`` (all at station line-3), then more work on B-1 at other
    stations: pack-1 labels 2 and 3 and prints 2 (a record shaped as printing writes it),
    burn-2 burns 6 and 7 and, out of B-1, 9."""
    pack = Journal(batches.path, Actor.current(backend.name, station="pack-1"))
    burn = Journal(batches.path, Actor.current(backend.name, station="burn-2"))
    qr_batch(backend, Selection(GROUP, device_sns=sns(2, 3)), tmp_path / "labels-pack",
             fmt="png", journal=pack)  # fmt: skip
    two = backend.find_by_device_sn(GROUP, "SN-000002")
    pack.record("label-export", group_id=GROUP, devices=[(two.sn, two.device_sn)],
                detail={"outDir": "-", "format": "zpl", "printer": "zebra-1"})  # fmt: skip
    export_burn_files(backend, Selection(GROUP, device_sns=sns(6, 7, 9)), tmp_path / "burn-2",
                      dps_url=DPS, journal=burn)  # fmt: skip
    yield batches
    pack.close()
    burn.close()


def test_show_batch_production_by_station(backend, stations):
    detail = show_batch(backend, stations, "B-1", now=FAR)
    got = {s.station: {o: s.counts[o] for o in OUTPUTS} for s in detail.production.stations}
    assert got == {
        # 8 registered (1 since replaced, 8 deleted: still made here), 5 burned, 4 labelled
        "line-3": {"registered": 8, "burned": 5, "labelled": 4, "printed": 0, "failed": 0},
        "pack-1": {"registered": 0, "burned": 0, "labelled": 2, "printed": 1, "failed": 0},
        "burn-2": {"registered": 0, "burned": 2, "labelled": 0, "printed": 0, "failed": 0},
    }
    assert list(got) == ["burn-2", "line-3", "pack-1"]  # by station name
    data = detail.to_dict()["production"]
    assert data["unit"] == "hour" and [s["station"] for s in data["stations"]] == list(got)
    b2 = {s.station: s.counts["burned"] for s in show_batch(backend, stations, "B-2")
          .production.stations}  # fmt: skip
    assert b2 == {"burn-2": 1, "line-3": 0}  # B-2: registered at line-3, 9 burned at burn-2


def test_html_report_has_production_by_station(backend, stations):
    detail = show_batch(backend, stations, "B-1", now=FAR)
    text = render_batch_html(detail, generated_ms=FAR, backend_label=backend.name)
    reader = ProductionReader()
    reader.feed(text)
    reader.close()
    expected = {
        s.station_text: {o: str(s.counts[o]) for o in OUTPUTS} for s in detail.production.stations
    }
    assert {k: {o: v[o] for o in OUTPUTS} for k, v in reader.stations.items()} == expected
    assert reader.stations["pack-1"]["printed"] == "1"
    assert reader.stations["line-3"]["unitsPerHour"] == "—"  # all within a minute
    assert len(reader.periods) == len(detail.production.periods)
    for period, station in reader.periods:
        assert period.endswith(":00Z") and station in expected
    totals = {o: sum(int(r[o]) for r in reader.periods.values()) for o in OUTPUTS}
    assert totals == {o: sum(int(v[o]) for v in expected.values()) for o in OUTPUTS}
    assert "stations" in reader.charts and "Production by station" in text
    assert "<script" not in text.lower()


def test_html_report_without_production_says_so(backend, batches):
    from enosprov.journal import NO_JOURNAL

    detail = show_batch(backend, NO_JOURNAL, "B-1")
    assert detail.production.stations == []
    text = render_batch_html(detail, generated_ms=0, backend_label="x")
    assert "No production of this batch is recorded in this journal." in text
    assert detail.to_dict()["production"] == {"unit": "day", "stations": [], "periods": []}


def test_failed_registrations_count_at_their_station(backend, group, write_csv, tmp_path):
    """EnOS failing every call: the run stops before any create, with a failed record of the
    batch (a failed run at its station; no row has a failed count: none was attempted)."""
    if backend.name != "enos":
        pytest.skip("the emulator's faults make the registration fail")
    from enosprov.emulator.app import Faults
    from enosprov.errors import BackendUnavailableError

    journal = Journal(tmp_path / "j.db", Actor.current(backend.name, station="line-9"))
    api.register_csv(backend, write_csv(meters_rows(3)), GROUP, batch_tag="B-F", journal=journal)
    backend.app.faults = Faults(fail_rate=1.0, seed=1)
    with pytest.raises(BackendUnavailableError):
        api.register_csv(backend, write_csv(meters_rows(4, start=20), name="f.csv"), GROUP,
                         batch_tag="B-F", journal=journal)  # fmt: skip
    backend.app.faults = Faults()
    [st] = show_batch(backend, journal, "B-F", group=GROUP).production.stations
    assert (st.station, st.counts["registered"], st.counts["failed"]) == ("line-9", 3, 0)
    assert st.failed_runs == 1
    assert [p.counts["registered"] for p in show_batch(backend, journal, "B-F").production.periods
            ] == [3]  # fmt: skip
    journal.close()
