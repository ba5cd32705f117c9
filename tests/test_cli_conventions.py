"""One set of option names (docs/cli-conventions.md): renamed options keep their old spelling as
a hidden alias with a notice; --format of the listing commands; --quiet; -V; tables that keep
whole words at any width."""

from __future__ import annotations

import csv
import io
import json
import re

import pytest
from conftest import ROOT, make_group, meters_rows

NOTICE = re.compile(r"note: (\S+) is deprecated, use (\S+) \(the old spelling goes in enosprov ")


@pytest.fixture
def batch(cli, store, write_csv, tmp_path):
    """A store with master data, a group and a registered batch of 4 devices."""
    make_group(store)
    cli.json("register", "--csv", str(write_csv(meters_rows(4))), "--group", "meters-eu",
             "--batch-tag", "B-1")  # fmt: skip
    return tmp_path


def _notice(result) -> tuple[str, str]:
    m = NOTICE.search(result.stderr)
    assert m, result.stderr
    return m.group(1), m.group(2)


@pytest.mark.parametrize(
    ("old", "new", "value"),
    [(["--format", "nvs"], "--burn-format", "nvs"), (["-f", "ini"], "--burn-format", "ini")],
)
def test_burn_export_old_format_spelling_still_works(cli, batch, old, new, value):
    out = batch / f"burn-{value}"
    result = cli("burn", "export", "--group", "meters-eu", *old, "--out", str(out), "--dps-url",
                 "http://dps.example", "--json")  # fmt: skip
    assert result.exit_code == 0, result.stderr
    assert _notice(result) == ("--format/-f", new)
    assert json.loads(result.stdout)["data"]["format"] == value
    assert len(list(out.glob(f"*.{'nvs.bin' if value == 'nvs' else value}"))) == 4


def test_old_template_spellings_still_work(cli, batch):
    burn = cli("burn", "export", "--group", "meters-eu", "--burn-format", "template",
               "--template", "credentials.h", "--out", str(batch / "b"), "--dps-url",
               "http://dps.example")  # fmt: skip
    assert burn.exit_code == 0 and _notice(burn) == ("--template", "--burn-template")
    assert len(list((batch / "b").glob("*.h"))) == 4
    qr = cli("qr", "batch", "--group", "meters-eu", "--format", "pdf", "--template",
             "thermal-62mm", "--out", str(batch / "q"))  # fmt: skip
    assert qr.exit_code == 0, qr.stderr
    assert qr.stderr.count("is deprecated") == 2
    assert "use --label-format" in qr.stderr and "use --label-template" in qr.stderr
    assert list((batch / "q").glob("*.pdf"))


def test_both_spellings_at_once_is_a_usage_error(cli, batch):
    result = cli("burn", "export", "--group", "meters-eu", "--burn-format", "json", "--format",
                 "nvs", "--out", str(batch / "x"))  # fmt: skip
    assert result.exit_code == 2
    assert "give --burn-format only (--format/-f is its old spelling)" in result.stderr
    assert not (batch / "x").exists()


def test_renamed_secret_and_description_options(cli, batch):
    shown = cli("group", "show", "meters-eu", "--show-secret", "--json")
    assert shown.exit_code == 0 and _notice(shown) == ("--show-secret", "--with-secrets")
    assert json.loads(shown.stdout)["data"]["groupSecret"]
    new = cli.json("group", "show", "meters-eu", "--with-secrets")["data"]["groupSecret"]
    assert new == json.loads(shown.stdout)["data"]["groupSecret"]
    out = batch / "with-secrets.jsonl"
    exported = cli("devices", "export", "--group", "meters-eu", "--out", str(out),
                   "--include-secrets")  # fmt: skip
    assert exported.exit_code == 0 and _notice(exported) == ("--include-secrets", "--with-secrets")
    created = cli("group", "create", "--id", "g2", "--name", "Group 2", "--product-key", "pk2",
                  "--description", "old spelling", "--json")  # fmt: skip
    assert created.exit_code == 0 and _notice(created) == ("--description", "--desc")
    assert json.loads(created.stdout)["data"]["description"] == "old spelling"


def test_masterdata_file_short_option_and_report_csv(cli, store, tmp_path):
    created = cli("masterdata", "create", "-f", str(ROOT / "examples" / "masterdata.toml"))
    assert created.exit_code == 0 and _notice(created) == ("-f", "--file")
    missing = cli("masterdata", "create")
    assert missing.exit_code == 2 and "--file FILE" in missing.stderr
    make_group(store)
    csv_path = tmp_path / "r.csv"
    cli.json("register", "--csv", str(_rows(tmp_path)), "--group", "meters-eu", "--batch-tag",
             "B-9")  # fmt: skip
    report = cli("batches", "report", "B-9", "--out", str(tmp_path / "r.html"), "--csv",
                 str(csv_path))  # fmt: skip
    assert report.exit_code == 0 and _notice(report) == ("--csv", "--csv-out")
    assert csv_path.is_file()


def _rows(tmp_path):
    path = tmp_path / "rows.csv"
    path.write_text(meters_rows(2, start=70), encoding="utf-8")
    return path


def test_replace_old_spellings(cli, batch):
    result = cli("replace", "SN-000001", "--group", "meters-eu", "--new-sn", "SN-000901",
                 "--label", "thermal-62mm", "--out", str(batch / "new"), "--dps-url",
                 "http://dps.example", "--yes")  # fmt: skip
    assert result.exit_code == 0, result.stderr
    assert result.stderr.count("is deprecated") == 2
    assert "use --new-device-sn" in result.stderr and "use --label-template" in result.stderr
    assert (batch / "new" / "labels" / "SN-000901.pdf").is_file()


def test_hidden_aliases_stay_out_of_help(cli):
    text = cli("burn", "export", "--help").stdout
    assert "--burn-format" in text and "-f," not in text and "--template " not in text
    assert "[json|ini|c|bin|hex|nvs|template]" in text.replace(" ", "") or "json|ini" in text


def test_version_short_option(cli):
    from enosprov import __version__

    assert cli("-V").stdout.strip() == f"enosprov {__version__}"


# -- --format, --quiet, tables --------------------------------------------------------------------

LISTINGS = [
    ("devices", "list", "--group", "meters-eu"),
    ("group", "list"),
    ("masterdata", "list"),
    ("batches", "list"),
    ("log",),
    ("devices", "history", "SN-000001", "--group", "meters-eu"),
]


@pytest.mark.parametrize("command", LISTINGS, ids=lambda c: " ".join(c[:2]))
def test_listing_formats(cli, batch, command):
    as_json = cli.json(*command, "--format", "json")
    assert as_json == cli.json(*command)
    text = cli(*command, "--format", "csv").stdout
    rows = list(csv.reader(io.StringIO(text)))
    assert len(rows) >= 2 and all(len(r) == len(rows[0]) for r in rows), text
    tsv = cli(*command, "--format", "tsv").stdout.splitlines()
    assert tsv[0].split("\t") == rows[0]
    assert len(tsv) == len(rows)
    quiet = cli(*command, "--quiet")
    assert quiet.exit_code == 0 and quiet.stdout == "" and quiet.stderr == ""
    contradiction = cli(*command, "--json", "--format", "csv")
    assert contradiction.exit_code == 2


def test_devices_csv_pipes_whole_values(cli, batch):
    text = cli("devices", "list", "--group", "meters-eu", "--format", "csv").stdout
    rows = list(csv.DictReader(io.StringIO(text)))
    assert sorted(r["deviceSn"] for r in rows) == [f"SN-00000{i}" for i in range(1, 5)]
    assert all(len(r["sn"]) == 16 for r in rows)


TABLES = [
    *LISTINGS,
    ("batches", "show", "B-1", "--group", "meters-eu"),
    ("group", "show", "meters-eu"),
    ("devices", "show", "SN-000001", "--group", "meters-eu"),
]


@pytest.mark.parametrize("width", [80, 200])
@pytest.mark.parametrize("command", TABLES, ids=lambda c: " ".join(c[:2]))
def test_tables_keep_whole_words_in_headers(cli, batch, command, width):
    """Piped at 80 and 200 columns: every header word appears whole (no 'produc' / 't')."""
    result = cli(*command, env={"COLUMNS": str(width)})
    assert result.exit_code == 0, result.stderr
    text = result.stdout
    headers = [line for line in text.splitlines() if line.startswith("┃")]  # header rows
    assert headers or (command[0] in ("group", "devices") and command[1] == "show"), text
    words = set(re.findall(r"[\w@/()-]+", "\n".join(headers)))
    broken = {w for w in words if len(w) <= 3 and w.isalpha() and w not in _SHORT_WORDS}
    assert not broken, (width, text)
    for needle in _expected_headers(command):
        assert needle in words, (needle, width, text)


_SHORT_WORDS = {"sn", "id", "of", "by", "tag", "key", "to", "at", "ok", "B", "age", "set"}


def _expected_headers(command: tuple[str, ...]) -> list[str]:
    return {
        ("group", "list"): ["product", "reprovision", "timezone", "devices"],
        ("devices", "list"): ["deviceSn", "batch", "state", "created"],
        ("log",): ["operation", "outcome", "devices"],
    }.get(command[:2] if command[0] != "log" else command[:1], [])


# -- files and times for people -----------------------------------------------------------------


def test_every_csv_file_for_people_is_excel_friendly_the_same_way(cli, batch):
    """UTF-8 with a BOM, ISO 8601 next to epoch milliseconds; --raw-csv: machine CSV."""
    out = batch
    cli.json("devices", "export", "--group", "meters-eu", "--out", str(out / "devices.csv"))
    cli.json("burn", "export", "--group", "meters-eu", "--out", str(out / "burn"), "--dps-url",
             "http://dps.example")  # fmt: skip
    cli.json("qr", "batch", "--group", "meters-eu", "--out", str(out / "labels"))
    cli.json("batches", "report", "B-1", "--group", "meters-eu", "--out", str(out / "r.html"),
             "--csv-out", str(out / "report.csv"))  # fmt: skip
    cli.json("register", "--csv", str(_rows(out)), "--group", "meters-eu", "--results",
             str(out / "results.csv"))  # fmt: skip
    files = ["devices.csv", "burn/manifest.csv", "labels/manifest.csv", "report.csv",
             "results.csv"]  # fmt: skip
    for name in files:
        assert (out / name).read_bytes()[:3] == b"\xef\xbb\xbf", name
    with open(out / "devices.csv", encoding="utf-8-sig", newline="") as fh:
        rows = list(csv.DictReader(fh))
    header = list(rows[0])
    assert header.index("createTimeUtc") == header.index("createTime") + 1
    assert header.index("updateTimeUtc") == header.index("updateTime") + 1
    import datetime as dt

    ms = int(rows[0]["createTime"])
    iso = dt.datetime.fromtimestamp(ms / 1000, dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
    assert rows[0]["createTimeUtc"] == iso
    raw = out / "raw.csv"
    cli.json("devices", "export", "--group", "meters-eu", "--out", str(raw), "--raw-csv")
    assert raw.read_bytes()[:3] == b"sn,"
    # stdout for pipes never has a BOM
    assert cli("devices", "list", "--format", "csv").stdout.startswith("sn,")


@pytest.mark.skipif(not hasattr(__import__("time"), "tzset"), reason="TZ is read by tzset (POSIX)")
def test_times_for_people_in_utc_or_local(cli, batch, monkeypatch):
    import time

    monkeypatch.setenv("TZ", "Asia/Shanghai")
    time.tzset()
    try:
        utc = cli("log", env={"COLUMNS": "200"}).stdout
        local = cli("--local", "log", env={"COLUMNS": "200"}).stdout
    finally:
        monkeypatch.delenv("TZ")
        time.tzset()
    assert re.search(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\dZ", utc)
    assert re.search(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\+08:00", local)
    doc = cli.json("--local", "log")["data"]
    assert doc[0]["time"].endswith("Z")  # JSON stays UTC


def test_a_reader_that_leaves_the_pipe_early_is_not_an_error(cli, store, write_csv, store_location):
    """`enosprov devices list --format csv | head -1`: exit 141 (SIGPIPE), no internal error."""
    import subprocess
    import sys

    make_group(store)
    cli.json("register", "--csv", str(write_csv(meters_rows(1500))), "--group", "meters-eu")
    proc = subprocess.Popen(
        [sys.executable, "-m", "enosprov", "--store", str(store_location), "devices", "list",
         "--group", "meters-eu", "--limit", "1000", "--format", "csv"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    )  # fmt: skip
    assert proc.stdout is not None and proc.stdout.readline().startswith(b"sn,")
    proc.stdout.close()  # like `head -1`
    stderr = proc.stderr.read().decode() if proc.stderr else ""
    assert proc.wait(timeout=60) in (0, 141), stderr
    assert "internal error" not in stderr and "Traceback" not in stderr
