"""CSV registration end to end: every validation rule with a real file, through the API and CLI.

Also: --skip-invalid, --dry-run, idempotent re-runs and conflicts, batch tags, the results file,
the stored deviceData text, resuming after kill -9 and two stations writing one store at once.
"""

from __future__ import annotations

import contextlib
import csv
import io
import itertools
import json
import os
import re
import signal
import sqlite3
import subprocess
import sys
import time

import pytest
from conftest import METERS_HEADER, ROOT, file_mode, make_group, meters_rows, query_store

from enosprov import api
from enosprov.backends.local import LocalBackend
from enosprov.domain.models import canonical_json
from enosprov.errors import InputFileError, ValidationFailedError

GROUP = "meters-eu"
HEADER_FIELDS = METERS_HEADER.split(",")
RESULTS_HEADER = ["row", "deviceSn", "sn", "outcome", "error", "input.deviceSn", *HEADER_FIELDS[1:]]


# -- helpers ------------------------------------------------------------------------------------


def row(
    sn: str,
    name: str = "Meter",
    tz: str = "+08:00",
    cap: str = "40",
    phase: str = "single",
    date: str = "2026-11-01",
    site: str = "Hall 1",
) -> str:
    """One line in METERS_HEADER order (no quoting: callers pass plain values)."""
    return ",".join([sn, name, tz, cap, phase, date, site])


def csv_text(*lines: str, header: str = METERS_HEADER, newline: str = "\n") -> str:
    return newline.join([header, *lines]) + newline


def count_devices(store) -> int:
    return query_store(store, "SELECT count(*) FROM devices")[0][0]


def sn_map(store) -> dict[str, str]:
    """deviceSn -> system sn of every stored device."""
    return dict(query_store(store, "SELECT device_sn, sn FROM devices"))


def raw_device_data(store, device_sn: str) -> str:
    return query_store(store, "SELECT device_data FROM devices WHERE device_sn=?", (device_sn,))[0][
        0
    ]


def register(cli, path, *extra: str):
    return cli("register", "--csv", str(path), "--group", GROUP, "--json", *extra)


def register_json(cli, path, *extra: str, expect: int = 0) -> dict:
    result = register(cli, path, *extra)
    assert result.exit_code == expect, (result.exit_code, result.stdout, result.stderr)
    return json.loads(result.stdout)


def read_results_csv(path) -> list[list[str]]:
    with open(path, encoding="utf-8-sig", newline="") as fh:  # results CSV: BOM first
        return list(csv.reader(fh))


def issue_pairs(issues) -> list[tuple[int, str | None]]:
    return [(i["row"], i["column"]) if isinstance(i, dict) else (i.row, i.column) for i in issues]


# -- accepted input -----------------------------------------------------------------------------


@pytest.mark.parametrize("bom", [False, True], ids=["no-bom", "bom"])
def test_utf8_with_and_without_bom(store, group, write_csv, bom):
    text = csv_text(row("SN-0001", name="电表一号", site="一号厂房"), row("SN-0002"))
    data = (b"\xef\xbb\xbf" if bom else b"") + text.encode("utf-8")
    report = api.register_csv(store, write_csv(data), GROUP)
    assert (report.rows, report.created, report.invalid) == (2, 2, 0)
    dev = store.find_by_device_sn(GROUP, "SN-0001")
    assert dev.device_data["site"] == "一号厂房"
    assert dev.device_data["deviceName"] == {"defaultValue": "电表一号", "i18nValue": {}}


def test_bom_file_with_explicit_utf8_encoding(cli, group, write_csv, store_location):
    path = write_csv(b"\xef\xbb\xbf" + csv_text(row("SN-0001")).encode("utf-8"))
    out = register_json(cli, path, "--encoding", "utf-8")
    assert out["data"]["created"] == 1
    assert count_devices(store_location) == 1


@pytest.mark.parametrize("delimiter", [",", ";", "\t"], ids=["comma", "semicolon", "tab"])
def test_delimiter_is_detected(store, group, write_csv, delimiter):
    buf = io.StringIO()
    w = csv.writer(buf, delimiter=delimiter, lineterminator="\n")
    w.writerow(HEADER_FIELDS)
    # the site holds the other delimiters: unquoted for , and ; files, so detection must not care
    w.writerow(
        ["SN-0001", "Meter 1", "+08:00", "41", "three", "2026-11-02", "Hall 1, bay 2; row 3"]
    )
    w.writerow(["SN-0002", "Meter 2", "Asia/Shanghai", "42", "single", "", "Hall\t2"])
    report = api.register_csv(store, write_csv(buf.getvalue()), GROUP)
    assert (report.created, report.invalid) == (2, 0)
    one = store.find_by_device_sn(GROUP, "SN-0001").device_data
    assert one["site"] == "Hall 1, bay 2; row 3"
    assert one["max_capacity"] == 41
    assert one["phase"] == "three"
    two = store.find_by_device_sn(GROUP, "SN-0002").device_data
    assert two["site"] == "Hall\t2"
    assert "install_date" not in two


@pytest.mark.parametrize(
    ("option", "delimiter"),
    [("tab", "\t"), ("\\t", "\t"), (";", ";"), (",", ",")],
    ids=["tab-word", "tab-escape", "semicolon", "comma"],
)
def test_delimiter_option(cli, group, write_csv, store_location, option, delimiter):
    text = csv_text(row("SN-0001"), row("SN-0002", cap="7")).replace(",", delimiter)
    out = register_json(cli, write_csv(text), "--delimiter", option)
    assert (out["data"]["created"], out["data"]["rows"]) == (2, 2)
    assert count_devices(store_location) == 2


def test_delimiter_option_overrides_detection(cli, group, write_csv, store_location):
    text = csv_text(row("SN-0001")).replace(",", ";")
    result = register(cli, write_csv(text), "--delimiter", ",")
    assert result.exit_code == 1
    err = json.loads(result.stdout)["error"]
    assert err["code"] == "validation_failed"
    # read with ',' the whole header is one unknown column
    assert issue_pairs(err["issues"])[0] == (1, METERS_HEADER.replace(",", ";"))
    assert count_devices(store_location) == 0


def test_delimiter_option_must_be_one_character(cli, group, write_csv, store_location):
    result = register(cli, write_csv(csv_text(row("SN-0001"))), "--delimiter", "ab")
    assert result.exit_code == 1
    err = json.loads(result.stdout)["error"]
    assert err["code"] == "invalid_input"
    assert "--delimiter" in err["message"]
    assert count_devices(store_location) == 0


def test_crlf_line_endings(store, group, write_csv):
    text = csv_text(row("SN-0001", site="A"), row("SN-0002", site="B"), newline="\r\n")
    report = api.register_csv(store, write_csv(text), GROUP)
    assert report.created == 2
    # no stray \r in the last column or anywhere in the data
    assert store.find_by_device_sn(GROUP, "SN-0001").device_data["site"] == "A"
    assert store.find_by_device_sn(GROUP, "SN-0002").device_data["site"] == "B"


def test_quoted_fields_with_commas_and_newlines(store, group, write_csv, tmp_path):
    text = (
        METERS_HEADER + "\n"
        'SN-0001,"Meter, the first",+08:00,40,single,2026-11-01,"Plant A, hall 3"\n'
        'SN-0002,"Line one\nline two",+08:00,41,single,2026-11-01,"say ""hi""\n\nbye"\n'
        "SN-0003,Meter 3,+08:00,42,three,2026-11-01,Plant B\n"
    )
    results = tmp_path / "res.csv"
    report = api.register_csv(store, write_csv(text), GROUP, results=results)
    assert (report.rows, report.created) == (3, 3)
    one = store.find_by_device_sn(GROUP, "SN-0001").device_data
    assert one["deviceName"]["defaultValue"] == "Meter, the first"
    assert one["site"] == "Plant A, hall 3"
    two = store.find_by_device_sn(GROUP, "SN-0002").device_data
    assert two["deviceName"]["defaultValue"] == "Line one\nline two"
    assert two["site"] == 'say "hi"\n\nbye'
    rows = read_results_csv(results)
    # row numbers count records, not physical lines: the header is row 1
    assert [(r[0], r[1]) for r in rows[1:]] == [
        ("2", "SN-0001"),
        ("3", "SN-0002"),
        ("4", "SN-0003"),
    ]


def test_row_numbers_count_records_across_multiline_fields(store, group, write_csv, store_location):
    text = (
        METERS_HEADER + "\n"
        'SN-0001,"a\nb\nc",+08:00,40,single,2026-11-01,x\n'  # record 2, physical lines 2-4
        'SN-0002,"d\ne",+08:00,40,single,2026-11-01,y\n'  # record 3, lines 5-6
        "SN-0003,M,+08:00,40,double,2026-11-01,z\n"  # record 4, line 7
    )
    with pytest.raises(ValidationFailedError) as exc:
        api.register_csv(store, write_csv(text), GROUP)
    assert issue_pairs(exc.value.issues) == [(4, "phase")]
    assert count_devices(store_location) == 0


def test_chinese_text_in_names_and_master_data(store, group, write_csv):
    header = "deviceSn,deviceName,deviceName.en_US,deviceName.zh_CN,max_capacity,phase,site"
    text = csv_text(
        "SN-0001,电表 1,Meter 1,电表一号,40,single,上海 浦东 一号厂房",
        "SN-0002,,,仅中文,41,three,北京",
        header=header,
    )
    report = api.register_csv(store, write_csv(text), GROUP)
    assert report.created == 2
    one = store.find_by_device_sn(GROUP, "SN-0001").device_data
    assert one["deviceName"] == {
        "defaultValue": "电表 1",
        "i18nValue": {"en_US": "Meter 1", "zh_CN": "电表一号"},
    }
    assert one["site"] == "上海 浦东 一号厂房"
    two = store.find_by_device_sn(GROUP, "SN-0002").device_data
    assert two["deviceName"] == {"defaultValue": "仅中文", "i18nValue": {"zh_CN": "仅中文"}}
    assert two["site"] == "北京"


def test_blank_lines_are_ignored(store, group, write_csv):
    text = (
        METERS_HEADER + "\n"
        "\n" + row("SN-0001") + "\n"
        "\n"
        "   \n" + row("SN-0002") + "\n"
        "\r\n" + row("SN-0003") + "\n"
        "\n\n"
    )
    report = api.register_csv(store, write_csv(text), GROUP)
    assert (report.rows, report.created, report.invalid, report.issue_count) == (3, 3, 0, 0)
    assert store.device_counts() == {GROUP: 3}


def test_blank_lines_still_count_as_spreadsheet_rows(store, group, write_csv, store_location):
    text = METERS_HEADER + "\n" + row("SN-0001") + "\n\n\n" + row("SN-0002", phase="x") + "\n"
    with pytest.raises(ValidationFailedError) as exc:
        api.register_csv(store, write_csv(text), GROUP)
    assert issue_pairs(exc.value.issues) == [(5, "phase")]
    assert count_devices(store_location) == 0


def test_gbk_file_with_encoding_option(cli, group, write_csv, store, store_location):
    header = "deviceSn,deviceName,deviceName.zh_CN,max_capacity,phase,site"
    text = csv_text("SN-0001,电表,电表一号,40,single,上海工厂", header=header)
    path = write_csv(text, encoding="gbk")
    out = register_json(cli, path, "--encoding", "gbk")
    assert out["data"]["created"] == 1
    dev = store.find_by_device_sn(GROUP, "SN-0001").device_data
    assert dev["site"] == "上海工厂"
    assert dev["deviceName"] == {"defaultValue": "电表", "i18nValue": {"zh_CN": "电表一号"}}


def test_gbk_file_without_encoding_is_one_clear_error(cli, group, write_csv, store_location):
    header = "deviceSn,deviceName,max_capacity,phase,site"
    path = write_csv(csv_text("SN-0001,电表,40,single,上海", header=header), encoding="gbk")
    result = register(cli, path)
    assert result.exit_code == 1
    doc = json.loads(result.stdout)  # exactly one JSON document
    assert set(doc) == {"error"}
    err = doc["error"]
    assert err["code"] == "invalid_input"
    assert str(path) in err["message"]
    assert "row " in err["message"]
    assert "not valid utf-8" in err["message"].lower()
    assert "--encoding" in err["hint"]
    # human output: one error line naming the file
    plain = cli("register", "--csv", str(path), "--group", GROUP)
    assert plain.exit_code == 1
    assert plain.stderr.count("error:") == 1
    assert str(path) in plain.stderr
    assert count_devices(store_location) == 0


@pytest.mark.parametrize("bad_row", [600, 1500])
def test_invalid_utf8_error_row_is_where_decoding_failed(
    store, group, write_csv, store_location, bad_row
):
    # docs/csv-format.md: the row named is the one holding the bad byte (the decoder reads in
    # blocks; the file is then scanned line by line to find it)
    lines = meters_rows(2000).encode().split(b"\n")
    lines[bad_row - 1] = lines[bad_row - 1].replace(b"Hall", b"H\xffall")
    path = write_csv(b"\n".join(lines))
    with pytest.raises(InputFileError) as exc:
        api.register_csv(store, path, GROUP)
    match = re.fullmatch(
        re.escape(str(path)) + r", row (\d+): the file is not valid UTF-8 \(byte 0xff, "
        r"character \d+ of its line\)",
        exc.value.message,
    )
    assert match, exc.value.message
    assert int(match.group(1)) == bad_row
    assert count_devices(store_location) == 0


def test_empty_file_is_refused(cli, group, write_csv, store_location):
    for content in ("", "\n" + METERS_HEADER + "\n" + row("SN-0001") + "\n"):
        result = register(cli, write_csv(content))
        assert result.exit_code == 1
        err = json.loads(result.stdout)["error"]
        assert err["code"] == "invalid_input"
        assert "the file is empty or its first line is blank" in err["message"]
    assert count_devices(store_location) == 0


def test_header_only_file_registers_nothing_and_exits_0(cli, group, write_csv, store_location):
    out = register_json(cli, write_csv(METERS_HEADER + "\n"))
    assert (out["data"]["rows"], out["data"]["created"]) == (0, 0)
    assert count_devices(store_location) == 0


def test_malformed_quoting_stops_the_run(cli, group, write_csv, store_location):
    text = csv_text(row("SN-0001"), '"SN-0002"x,M,+08:00,40,single,2026-11-01,h')
    result = register(cli, write_csv(text), "--skip-invalid")
    assert result.exit_code == 1
    err = json.loads(result.stdout)["error"]
    assert err["code"] == "invalid_input"
    assert ", row 3: malformed CSV" in err["message"]
    assert count_devices(store_location) == 0


def test_a_row_of_only_delimiters_is_skipped_like_a_blank_line(
    store, group, write_csv, store_location
):
    # docs/csv-format.md "Blank lines": spreadsheets write ',,,' for an empty row
    text = csv_text(row("SN-0001"), ",,,,,,", " , ,,,,,", row("SN-0002"))
    report = api.register_csv(store, write_csv(text), GROUP)
    assert (report.rows, report.created) == (2, 2)
    assert count_devices(store_location) == 2
    with pytest.raises(ValidationFailedError) as exc:  # an empty deviceSn with data is still bad
        api.register_csv(store, write_csv(csv_text(",M,+08:00,40,single,,")), GROUP)
    assert issue_pairs(exc.value.issues) == [(2, "deviceSn")]
    assert count_devices(store_location) == 2


# -- rejected input -----------------------------------------------------------------------------

OK2 = row("SN-0001")  # a valid row 2 before the bad one: nothing at all must be written
DESC_HEADER = METERS_HEADER + ",desc,batchTag"

REJECTED = [
    # (content, row, column, text in the message, column name the issue must show)
    pytest.param(
        csv_text("SN-0001,40,single", header="deviceName,max_capacity,phase"),
        1, None, "required column 'deviceSn' is missing", "deviceSn",
        id="missing-deviceSn-column",
    ),
    pytest.param(
        csv_text("SN-0001,M,40", header="deviceSn,deviceName,max_capacity"),
        1, None, "required master data column 'phase' is missing", "phase",
        id="missing-required-masterdata-column",
    ),
    pytest.param(
        csv_text(OK2 + ",red", header=METERS_HEADER + ",colour"),
        1, "colour", "unknown column 'colour'", "colour",
        id="unknown-column",
    ),
    pytest.param(
        csv_text("SN-0001,40,single,a,b", header="deviceSn,max_capacity,phase,site,site"),
        1, "site", "column 'site' appears twice", "site",
        id="duplicate-column",
    ),
    pytest.param(csv_text(OK2, row("SN1")), 3, "deviceSn", "'SN1' is not allowed", "deviceSn",
                 id="deviceSn-too-short"),
    pytest.param(csv_text(OK2, row("S" * 65)), 3, "deviceSn", "65 characters long; the limit is 64",
                 "deviceSn", id="deviceSn-too-long"),
    pytest.param(csv_text(OK2, row("SN 0002")), 3, "deviceSn", "'SN 0002' is not allowed",
                 "deviceSn", id="deviceSn-space"),
    pytest.param(csv_text(OK2, row("SN#0002")), 3, "deviceSn", "'SN#0002' is not allowed",
                 "deviceSn", id="deviceSn-hash"),
    pytest.param(csv_text(OK2, row("序列号0002")), 3, "deviceSn", "is not allowed", "deviceSn",
                 id="deviceSn-non-ascii"),
    pytest.param(csv_text(OK2, row("")), 3, "deviceSn", "deviceSn is empty", "deviceSn",
                 id="deviceSn-empty"),
    pytest.param(csv_text(OK2, row("   ")), 3, "deviceSn", "deviceSn is empty", "deviceSn",
                 id="deviceSn-blank"),
    pytest.param(csv_text(OK2, row("SN-0002"), row("SN-0001")), 4, "deviceSn",
                 "deviceSn 'SN-0001' duplicates row 2", "deviceSn", id="deviceSn-duplicate"),
    pytest.param(csv_text(OK2, row("SN-0002", cap="forty")), 3, "max_capacity",
                 "'forty' is not an Integer", "max_capacity", id="integer-word"),
    pytest.param(csv_text(OK2, row("SN-0002", cap="4.5")), 3, "max_capacity",
                 "'4.5' is not an Integer", "max_capacity", id="integer-decimal"),
    pytest.param(csv_text(OK2, row("SN-0002", cap="9223372036854775808")), 3, "max_capacity",
                 "'9223372036854775808' is not an Integer", "max_capacity", id="integer-over-int64"),
    pytest.param(csv_text(OK2, row("SN-0002", cap="-9223372036854775809")), 3, "max_capacity",
                 "'-9223372036854775809' is not an Integer", "max_capacity",
                 id="integer-under-int64"),
    pytest.param(csv_text(OK2, row("SN-0002", cap="123456789012345678901")), 3, "max_capacity",
                 "is not an Integer", "max_capacity", id="integer-21-digits"),
    pytest.param(csv_text(OK2, row("SN-0002", phase="Single")), 3, "phase",
                 "'Single' is not one of: single, three", "phase", id="enum-case"),
    pytest.param(csv_text(OK2, row("SN-0002", phase="two")), 3, "phase",
                 "'two' is not one of: single, three", "phase", id="enum-unknown"),
    pytest.param(csv_text(OK2, row("SN-0002", date="2026/11/01")), 3, "install_date",
                 "'2026/11/01' is not a Date (YYYY-MM-DD)", "install_date", id="date-slashes"),
    pytest.param(csv_text(OK2, row("SN-0002", date="2026-1-5")), 3, "install_date",
                 "is not a Date", "install_date", id="date-short"),
    pytest.param(csv_text(OK2, row("SN-0002", date="2026-02-30")), 3, "install_date",
                 "'2026-02-30' is not a Date", "install_date", id="date-impossible"),
    pytest.param(csv_text(OK2, row("SN-0002", date="2026-13-01")), 3, "install_date",
                 "is not a Date", "install_date", id="date-month-13"),
    pytest.param(csv_text(OK2, row("SN-0002", site="x" * 65)), 3, "site",
                 "65 characters long; the limit is 64", "site", id="string-too-long"),
    pytest.param(csv_text(OK2, row("SN-0002", cap="")), 3, "max_capacity", "a value is required",
                 "max_capacity", id="required-integer-empty"),
    pytest.param(csv_text(OK2, row("SN-0002", phase="  ")), 3, "phase", "a value is required",
                 "phase", id="required-enum-blank"),
    pytest.param(csv_text(OK2, row("SN-0002", tz="+25:00")), 3, "timezone", "'+25:00' is neither",
                 "timezone", id="timezone-offset"),
    pytest.param(csv_text(OK2, row("SN-0002", tz="Mars/Base")), 3, "timezone",
                 "'Mars/Base' is neither", "timezone", id="timezone-name"),
    pytest.param(csv_text(OK2 + ",,", row("SN-0002") + "," + "d" * 513 + ",", header=DESC_HEADER),
                 3, "desc", "desc is 513 characters; the limit is 512", "desc", id="desc-513"),
    pytest.param(csv_text(OK2 + ",,", row("SN-0002") + ",," + "t" * 65, header=DESC_HEADER),
                 3, "batchTag", "batch tag is 65 characters; the limit is 64", "batchTag",
                 id="batchTag-65"),
    pytest.param(csv_text(OK2, row("SN-0002") + ",extra"), 3, None,
                 "row has 8 fields but the header has 7", None, id="too-many-fields"),
    pytest.param(csv_text(OK2, "SN-0002,M,+08:00,40"), 3, None,
                 "row has 4 fields but the header has 7", None, id="too-few-fields"),
    pytest.param(
        csv_text(OK2, "SN-0002,,,40,single,," + "N" * 129,
                 header="deviceSn,deviceName,deviceName.en_US,max_capacity,phase,site,deviceName.zh_CN"),
        3, "deviceName.zh_CN", "name is 129 characters; the limit is 128", "deviceName.zh_CN",
        id="deviceName-zh-129",
    ),
]  # fmt: skip


@pytest.mark.parametrize(("content", "rowno", "column", "message", "named"), REJECTED)
def test_rejected_input(
    store, group, write_csv, cli, store_location, content, rowno, column, message, named
):
    # the valid row 2 alone would be accepted: the rejection is about the bad line only
    path = write_csv(content)
    with pytest.raises(ValidationFailedError) as exc:
        api.register_csv(store, path, GROUP)
    issues = exc.value.issues
    assert issue_pairs(issues) == [(rowno, column)]
    assert exc.value.total == 1
    assert message in issues[0].message
    shown = str(issues[0])
    assert shown.startswith(f"row {rowno}")
    if named is not None:  # the column is named, in the issue's column or in its message
        assert named in shown
    assert "nothing was registered" in exc.value.message
    assert count_devices(store_location) == 0

    result = register(cli, path)
    assert result.exit_code == 1, result.stdout
    doc = json.loads(result.stdout)
    assert set(doc) == {"error"}
    err = doc["error"]
    assert err["code"] == "validation_failed"
    assert err["issueCount"] == 1
    assert err["issues"] == [{"row": rowno, "column": column, "message": issues[0].message}]
    assert count_devices(store_location) == 0


def test_human_output_locates_the_problem(cli, group, write_csv, store_location):
    path = write_csv(csv_text(OK2, row("SN-0002", phase="two")))
    result = cli("register", "--csv", str(path), "--group", GROUP)
    assert result.exit_code == 1
    assert "row 3, column phase: 'two' is not one of: single, three" in result.stderr
    assert "nothing was registered" in result.stderr
    assert count_devices(store_location) == 0


def test_every_error_is_reported_not_only_the_first(cli, store, group, write_csv, store_location):
    text = csv_text(
        row("SN-0001"),  # 2 ok
        row("ab"),  # 3 deviceSn
        row("SN-0004", cap="x", phase="two"),  # 4 two problems
        row("SN-0005"),  # 5 ok
        row("SN-0006", date="2026-02-30"),  # 6
        row("SN-0007", tz="Mars/Base"),  # 7
        row("SN-0008", site="s" * 65),  # 8
        row("SN-0009") + ",extra",  # 9 field count
        row("SN-0001"),  # 10 duplicate of row 2
    )
    path = write_csv(text)
    expected = {
        (3, "deviceSn"),
        (4, "max_capacity"),
        (4, "phase"),
        (6, "install_date"),
        (7, "timezone"),
        (8, "site"),
        (9, None),
        (10, "deviceSn"),
    }
    with pytest.raises(ValidationFailedError) as exc:
        api.register_csv(store, path, GROUP)
    assert set(issue_pairs(exc.value.issues)) == expected
    assert exc.value.total == len(exc.value.issues) == 8
    assert "8 problems in 7 rows" in exc.value.message

    err = json.loads(register(cli, path).stdout)["error"]
    assert err["issueCount"] == 8
    pairs = issue_pairs(err["issues"])
    assert len(pairs) == 8
    assert set(pairs) == expected
    dup = next(i for i in err["issues"] if i["row"] == 10)
    assert "duplicates row 2" in dup["message"]
    assert count_devices(store_location) == 0


# -- --skip-invalid -----------------------------------------------------------------------------


def test_skip_invalid_registers_only_valid_rows(cli, group, write_csv, store_location, tmp_path):
    text = csv_text(
        row("SN-0001"),
        row("SN-0002", phase="two"),
        row("SN-0003"),
        row("SN-0004", cap="many"),
        row("SN-0001", cap="41"),  # duplicate of row 2 in the file
        row("SN-0006"),
    )
    results = tmp_path / "results.csv"
    result = register(cli, write_csv(text), "--skip-invalid", "--results", str(results))
    assert result.exit_code == 5, result.stdout
    data = json.loads(result.stdout)["data"]
    assert (data["rows"], data["created"], data["invalid"], data["conflicts"]) == (6, 3, 3, 0)
    assert data["issueCount"] == 3
    assert set(issue_pairs(data["issues"])) == {(3, "phase"), (5, "max_capacity"), (6, "deviceSn")}
    assert sorted(sn_map(store_location)) == ["SN-0001", "SN-0003", "SN-0006"]

    rows = read_results_csv(results)
    assert rows[0] == RESULTS_HEADER
    by_row = {int(r[0]): r for r in rows[1:]}
    assert sorted(by_row) == [2, 3, 4, 5, 6, 7]
    outcomes = {n: r[3] for n, r in by_row.items()}
    assert outcomes == {
        2: "created",
        3: "invalid",
        4: "created",
        5: "invalid",
        6: "invalid",
        7: "created",
    }
    assert by_row[3][1] == "SN-0002"
    assert by_row[3][2] == ""  # no system sn for an invalid row
    assert "phase" in by_row[3][4] and "'two'" in by_row[3][4]
    assert "max_capacity" in by_row[5][4]
    assert "duplicates" in by_row[6][4]
    # the stored device of SN-0001 is row 2's, not the duplicate's
    assert by_row[2][2] == sn_map(store_location)["SN-0001"]


def test_skip_invalid_with_only_valid_rows_exits_0(cli, group, write_csv):
    out = register_json(cli, write_csv(csv_text(row("SN-0001"))), "--skip-invalid")
    assert (out["data"]["created"], out["data"]["invalid"]) == (1, 0)


def test_header_errors_abort_even_with_skip_invalid(cli, store, group, write_csv, store_location):
    path = write_csv(csv_text(OK2 + ",x", header=METERS_HEADER + ",bogus"))
    result = register(cli, path, "--skip-invalid")
    assert result.exit_code == 1
    err = json.loads(result.stdout)["error"]
    assert err["code"] == "validation_failed"
    assert issue_pairs(err["issues"]) == [(1, "bogus")]
    with pytest.raises(ValidationFailedError, match="header is invalid"):
        api.register_csv(store, path, GROUP, skip_invalid=True)
    assert count_devices(store_location) == 0


# -- --dry-run ----------------------------------------------------------------------------------


def _batch_order_counter(store_location) -> str:
    return query_store(store_location, "SELECT value FROM meta WHERE key='batch_order'")[0][0]


def test_dry_run_reports_and_writes_nothing(cli, store, group, write_csv, store_location, tmp_path):
    first = csv_text(row("SN-0001"), row("SN-0002"), row("SN-0003"))
    register_json(cli, write_csv(first, name="first.csv"))
    before_sns = sn_map(store_location)
    before_order = _batch_order_counter(store_location)
    before_data = raw_device_data(store_location, "SN-0003")

    second = csv_text(
        row("SN-0001"),  # same -> skipped
        row("SN-0002"),  # same -> skipped
        row("SN-0003", cap="99"),  # other data -> conflict
        row("SN-0004"),  # new -> created
        row("SN-0005"),  # new -> created
    )
    results = tmp_path / "dry.jsonl"
    result = register(
        cli, write_csv(second, name="second.csv"), "--dry-run", "--results", str(results)
    )
    assert result.exit_code == 5  # a conflict: not complete
    data = json.loads(result.stdout)["data"]
    assert data["dryRun"] is True
    assert (data["rows"], data["created"], data["skipped"], data["conflicts"]) == (5, 2, 2, 1)
    assert data["batchOrder"] is None
    assert [c["deviceSn"] for c in data["conflictSamples"]] == ["SN-0003"]
    lines = [json.loads(x) for x in results.read_text(encoding="utf-8").splitlines()]
    assert [x["outcome"] for x in lines] == ["skipped", "skipped", "conflict", "created", "created"]
    assert [x["sn"] for x in lines[:3]] == [
        before_sns[s] for s in ("SN-0001", "SN-0002", "SN-0003")
    ]
    assert lines[3]["sn"] is None  # nothing was created, so no system sn

    assert sn_map(store_location) == before_sns
    assert _batch_order_counter(store_location) == before_order
    assert raw_device_data(store_location, "SN-0003") == before_data

    # dry run of new rows only: everything "would be created", complete -> exit 0, still nothing
    report = api.register_csv(
        store, write_csv(csv_text(row("SN-0009")), name="third.csv"), GROUP, dry_run=True
    )
    assert (report.created, report.skipped, report.conflicts, report.complete) == (1, 0, 0, True)
    assert sn_map(store_location) == before_sns


# -- idempotent re-runs and conflicts -----------------------------------------------------------


def test_rerun_skips_everything(cli, group, write_csv, store_location, tmp_path):
    path = write_csv(csv_text(row("SN-0001"), row("SN-0002", name="电表"), row("SN-0003")))
    first = register_json(cli, path, "--batch-tag", "B-1")
    assert first["data"]["created"] == 3
    sns = sn_map(store_location)
    assert len(set(sns.values())) == 3

    results = tmp_path / "again.csv"
    second = register_json(cli, path, "--batch-tag", "B-1", "--results", str(results))
    d = second["data"]
    assert (d["rows"], d["created"], d["skipped"], d["conflicts"], d["invalid"]) == (3, 0, 3, 0, 0)
    assert sn_map(store_location) == sns
    assert count_devices(store_location) == 3
    rows = read_results_csv(results)
    assert [(r[1], r[2], r[3]) for r in rows[1:]] == [
        (s, sns[s], "skipped") for s in ("SN-0001", "SN-0002", "SN-0003")
    ]


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"cap": "77"}, "max_capacity"),
        ({"site": "Hall 9"}, "site"),
        ({"name": "Renamed"}, "deviceName"),
        ({"tz": "Asia/Shanghai"}, "timezone"),
        ({"date": ""}, "install_date"),
    ],
    ids=["integer", "string", "name", "timezone", "removed-date"],
)
def test_changed_row_is_a_conflict_and_not_overwritten(
    cli, store, group, write_csv, store_location, changes, field
):
    register_json(cli, write_csv(csv_text(row("SN-0001"), row("SN-0002")), name="a.csv"))
    sns = sn_map(store_location)
    stored = raw_device_data(store_location, "SN-0002")

    changed = write_csv(csv_text(row("SN-0001"), row("SN-0002", **changes)), name="b.csv")
    result = register(cli, changed)
    assert result.exit_code == 5, result.stdout
    d = json.loads(result.stdout)["data"]
    assert (d["created"], d["skipped"], d["conflicts"]) == (0, 1, 1)
    sample = d["conflictSamples"]
    assert len(sample) == 1
    assert sample[0]["deviceSn"] == "SN-0002"
    assert sample[0]["sn"] == sns["SN-0002"]
    assert sample[0]["error"] == f"already registered with a different deviceData ({field})"
    assert raw_device_data(store_location, "SN-0002") == stored
    assert sn_map(store_location) == sns

    report = api.register_csv(store, changed, GROUP)
    assert (report.conflicts, report.complete) == (1, False)


def test_changed_batch_tag_is_a_conflict(cli, store, group, write_csv, store_location):
    path = write_csv(csv_text(row("SN-0001")))
    register_json(cli, path, "--batch-tag", "B-1")
    d = register_json(cli, path, "--batch-tag", "B-2", expect=5)["data"]
    assert d["conflicts"] == 1
    assert d["conflictSamples"][0]["error"] == "already registered with a different batchTag"
    assert store.find_by_device_sn(GROUP, "SN-0001").batch_tag_text == "B-1"


# -- batch tags ---------------------------------------------------------------------------------


def test_batch_tag_option_and_column(store, group, write_csv):
    header = METERS_HEADER + ",batchTag"
    text = csv_text(row("SN-0001") + ",", row("SN-0002") + ",FROM-COLUMN", header=header)
    report = api.register_csv(store, write_csv(text), GROUP, batch_tag="B-OPTION")
    assert report.created == 2
    one = store.find_by_device_sn(GROUP, "SN-0001")
    two = store.find_by_device_sn(GROUP, "SN-0002")
    assert one.batch_tag == {"defaultValue": "B-OPTION", "i18nValue": {}}
    assert two.batch_tag == {"defaultValue": "FROM-COLUMN", "i18nValue": {}}
    assert one.batch_order == two.batch_order == report.batch_order


def test_batch_tag_option_without_column(cli, store, group, write_csv):
    register_json(cli, write_csv(csv_text(row("SN-0001"), row("SN-0002"))), "--batch-tag", "B-7")
    tags = {s: store.find_by_device_sn(GROUP, s).batch_tag_text for s in ("SN-0001", "SN-0002")}
    assert tags == {"SN-0001": "B-7", "SN-0002": "B-7"}


def test_no_batch_tag_anywhere_stores_none(store, group, write_csv):
    api.register_csv(store, write_csv(csv_text(row("SN-0001"))), GROUP)
    assert store.find_by_device_sn(GROUP, "SN-0001").batch_tag is None


# -- results file -------------------------------------------------------------------------------


def test_results_csv(cli, group, write_csv, store_location, tmp_path):
    text = (
        METERS_HEADER + "\n" + row("SN-0001") + "\n"
        'SN-0002,"Two, lines\nhere",+08:00,41,three,,"Hall ""B"""\n'
    )
    results = tmp_path / "out" / "results.csv"
    out = register_json(cli, write_csv(text), "--results", str(results))
    assert out["data"]["resultsFile"] == str(results)
    rows = read_results_csv(results)
    sns = sn_map(store_location)
    assert rows == [
        RESULTS_HEADER,
        ["2", "SN-0001", sns["SN-0001"], "created", "", *row("SN-0001").split(",")],
        [
            "3", "SN-0002", sns["SN-0002"], "created", "",
            "SN-0002", "Two, lines\nhere", "+08:00", "41", "three", "", 'Hall "B"',
        ],
    ]  # fmt: skip
    assert os.listdir(results.parent) == ["results.csv"]
    assert results.read_bytes()[:6] == b"\xef\xbb\xbfrow"  # a CSV for people: UTF-8 with a BOM
    if sys.platform != "win32":  # no secrets inside: the usual permissions, not owner-only
        mask = os.umask(0)
        os.umask(mask)
        assert file_mode(results) == 0o666 & ~mask


def test_results_jsonl(cli, group, write_csv, store_location, tmp_path):
    text = csv_text(row("SN-0001", name="电表"), row("SN-0002", phase="two"))
    results = tmp_path / "out" / "results.jsonl"
    register_json(cli, write_csv(text), "--results", str(results), "--skip-invalid", expect=5)
    lines = results.read_text(encoding="utf-8-sig").splitlines()
    docs = sorted((json.loads(x) for x in lines), key=lambda d: d["row"])
    sns = sn_map(store_location)
    assert docs == [
        {
            "row": 2,
            "deviceSn": "SN-0001",
            "sn": sns["SN-0001"],
            "outcome": "created",
            "error": None,
            "input": dict(zip(HEADER_FIELDS, row("SN-0001", name="电表").split(","))),
        },
        {
            "row": 3,
            "deviceSn": "SN-0002",
            "sn": None,
            "outcome": "invalid",
            "error": "phase: 'two' is not one of: single, three",
            "input": dict(zip(HEADER_FIELDS, row("SN-0002", phase="two").split(","))),
        },
    ]
    assert os.listdir(results.parent) == ["results.jsonl"]


def test_results_file_after_validation_failure_lists_every_row(cli, group, write_csv, tmp_path):
    # a refused run writes the results file too (issue 16): every row with its error, and
    # nothing else in the folder (no temporary file)
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    results = out_dir / "results.csv"
    result = register(cli, write_csv(csv_text(row("SN-0001", cap="x"))), "--results", str(results))
    assert result.exit_code == 1
    assert os.listdir(out_dir) == ["results.csv"]
    text = results.read_text(encoding="utf-8-sig")
    assert ",SN-0001,,invalid," in text and "max_capacity" in text


def _fail_on_second_chunk(store, monkeypatch) -> list[int]:
    """Make store.register_batch raise on its second call; return the list of call sizes."""
    real = store.register_batch
    calls: list[int] = []

    def failing(group_id, records, **kwargs):
        calls.append(len(records))
        if len(calls) == 2:
            raise RuntimeError("backend went away")
        return real(group_id, records, **kwargs)

    monkeypatch.setattr(store, "register_batch", failing)
    return calls


def test_results_file_is_atomic_when_the_write_pass_fails(
    store, group, write_csv, store_location, tmp_path, monkeypatch
):
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    results = out_dir / "results.csv"
    results.write_text("previous run\n", encoding="utf-8")
    calls = _fail_on_second_chunk(store, monkeypatch)
    path = write_csv(csv_text(*(row(f"SN-{i:04d}") for i in range(1, 6))))
    with pytest.raises(RuntimeError, match="backend went away"):
        api.register_csv(store, path, GROUP, results=results, chunk_size=2)
    assert len(calls) >= 2
    assert "SN-0001" in sn_map(store_location)  # the first chunk was committed
    assert os.listdir(out_dir) == ["results.csv"]  # no .tmp left behind
    assert results.read_text(encoding="utf-8") == "previous run\n"  # old file intact


def test_no_chunk_is_written_after_a_failing_one(
    store, group, write_csv, store_location, monkeypatch
):
    calls = _fail_on_second_chunk(store, monkeypatch)
    path = write_csv(csv_text(*(row(f"SN-{i:04d}") for i in range(1, 6))))
    with pytest.raises(RuntimeError, match="backend went away"):
        api.register_csv(store, path, GROUP, chunk_size=2)
    # rows 1-2 committed, 3-4 failed; 5 must not be written behind the caller's back
    assert sorted(sn_map(store_location)) == ["SN-0001", "SN-0002"]
    assert calls == [2, 2]


# -- what is stored -----------------------------------------------------------------------------


def test_stored_device_data_is_canonical_json(store, backend, group, write_csv, store_location):
    header = (
        "deviceSn,deviceName,deviceName.en_US,deviceName.zh_CN,timezone,desc,"
        "max_capacity,phase,install_date,site"
    )
    text = (
        header + "\n"
        'SN-0001,"Meter ""1""",Meter one,电表 😀,Asia/Shanghai,"a desc, with comma",'
        '9223372036854775807,three,2026-11-01,"back\\slash ""q"" / é"\n'
        "SN-0002,,,,,,-9223372036854775808,single,,\n"
        "SN-0003,,,,-05:30,,+0042,single,,\n"
    )
    report = api.register_csv(store, write_csv(text), GROUP)
    assert report.created == 3
    expected = {
        "SN-0001": {
            "deviceName": {
                "defaultValue": 'Meter "1"',
                "i18nValue": {"en_US": "Meter one", "zh_CN": "电表 😀"},
            },
            "timezone": "Asia/Shanghai",
            "max_capacity": 9223372036854775807,
            "phase": "three",
            "install_date": "2026-11-01",
            "site": 'back\\slash "q" / é',
        },
        "SN-0002": {"max_capacity": -9223372036854775808, "phase": "single"},
        "SN-0003": {"timezone": "-05:30", "max_capacity": 42, "phase": "single"},
    }
    for device_sn, data in expected.items():
        assert raw_device_data(store_location, device_sn) == canonical_json(data)
        dev = backend.find_by_device_sn(GROUP, device_sn)
        fetched = backend.get(dev.sn)
        assert fetched.device_data == {"deviceSn": device_sn, **data}
        assert type(fetched.device_data["max_capacity"]) is int
        assert api.find_device(store, device_sn, GROUP).sn == dev.sn
    assert backend.find_by_device_sn(GROUP, "SN-0001").desc == "a desc, with comma"
    assert backend.find_by_device_sn(GROUP, "SN-0002").desc is None


# -- kill -9 and concurrent stations ------------------------------------------------------------


def _register_cmd(store, path, *extra: str) -> list[str]:
    return [
        sys.executable, "-m", "enosprov", "--store", str(store),
        "register", "--csv", str(path), "--group", GROUP, *extra,
    ]  # fmt: skip


def _new_store(path) -> None:
    with LocalBackend(path) as be:
        make_group(be)


@pytest.mark.skipif(sys.platform == "win32", reason="SIGKILL is POSIX only")
def test_kill_9_then_rerun_registers_every_row_once(tmp_path, write_csv):
    for attempt, n_rows in enumerate((20_000, 60_000, 150_000)):
        store = tmp_path / f"kill-{attempt}.db"
        _new_store(store)
        path = write_csv(meters_rows(n_rows), name=f"kill-{attempt}.csv")
        proc = subprocess.Popen(
            _register_cmd(store, path, "--chunk-size", "50"),
            cwd=ROOT,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        seen = 0
        with contextlib.closing(sqlite3.connect(store, timeout=60)) as con:
            deadline = time.monotonic() + 120
            while time.monotonic() < deadline and proc.poll() is None:
                seen = con.execute("SELECT count(*) FROM devices").fetchone()[0]
                if n_rows // 20 <= seen < n_rows:  # several chunks in, far from done
                    os.kill(proc.pid, signal.SIGKILL)
                    break
                time.sleep(0.001)
        proc.wait(timeout=120)
        proc.stderr.close()
        if proc.returncode == -signal.SIGKILL:
            break
        # the run finished before it could be killed: try again with a bigger file
        assert proc.returncode == 0
    else:
        pytest.fail("could not kill the registration mid-batch, even with 150,000 rows")

    after_kill = count_devices(store)
    assert n_rows // 20 <= seen <= after_kill < n_rows  # killed mid-batch
    assert after_kill % 50 == 0  # whole chunks only

    rerun = subprocess.run(
        _register_cmd(store, path, "--chunk-size", "500", "--json"),
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert rerun.returncode == 0, rerun.stdout + rerun.stderr
    data = json.loads(rerun.stdout)["data"]
    assert data["skipped"] == after_kill
    assert data["created"] == n_rows - after_kill
    assert (data["conflicts"], data["invalid"]) == (0, 0)
    with contextlib.closing(sqlite3.connect(store)) as con:
        total, distinct = con.execute(
            "SELECT count(*), count(DISTINCT device_sn) FROM devices"
        ).fetchone()
    assert total == distinct == n_rows


def _insertion_switches(store) -> int:
    """How often consecutive inserted rows (in insertion order) change batch: 1 = one after the
    other, more = the two runs' transactions interleaved."""
    with contextlib.closing(sqlite3.connect(store)) as con:
        orders = [r[0] for r in con.execute("SELECT batch_order FROM devices ORDER BY rowid")]
    return sum(1 for a, b in itertools.pairwise(orders) if a != b)


def test_two_stations_register_into_one_store_at_once(tmp_path, write_csv):
    n, overlap = 20_000, 10_000
    a = write_csv(meters_rows(n, start=1), name="station-a.csv")
    b = write_csv(meters_rows(n, start=n - overlap + 1), name="station-b.csv")
    for attempt in range(3):
        store = tmp_path / f"shared-{attempt}.db"
        _new_store(store)
        procs = [
            subprocess.Popen(
                _register_cmd(store, p, "--chunk-size", "20", "--json"),
                cwd=ROOT,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )
            for p in (a, b)
        ]
        outs = [p.communicate(timeout=180) for p in procs]
        for proc, (stdout, stderr) in zip(procs, outs):
            assert proc.returncode in (0, 5), (proc.returncode, stdout, stderr)
            assert "locked" not in stdout + stderr
        if _insertion_switches(store) >= 2:
            break  # the two stations really wrote at the same time
    else:
        pytest.fail("the two registrations never overlapped in time")

    datas = [json.loads(stdout)["data"] for stdout, _ in outs]
    for d in datas:
        assert d["created"] + d["skipped"] == d["rows"] == n
        assert (d["conflicts"], d["invalid"]) == (0, 0)  # the overlap has identical data
    assert datas[0]["created"] + datas[1]["created"] == 2 * n - overlap
    assert datas[0]["skipped"] + datas[1]["skipped"] == overlap
    with contextlib.closing(sqlite3.connect(store)) as con:
        total, distinct = con.execute(
            "SELECT count(*), count(DISTINCT device_sn) FROM devices"
        ).fetchone()
        batch_orders = {r[0] for r in con.execute("SELECT DISTINCT batch_order FROM devices")}
    assert total == distinct == 2 * n - overlap
    assert batch_orders == {datas[0]["batchOrder"], datas[1]["batchOrder"]}


def test_results_keep_input_order_with_skip_invalid(store, group, write_csv, tmp_path):
    lines = [row(f"SN-{i:04d}") if i % 3 else row(f"SN-{i:04d}").replace("single", "bad")
             for i in range(1, 13)]  # fmt: skip
    results = tmp_path / "order.csv"
    report = api.register_csv(
        store, write_csv(csv_text(*lines)), GROUP, skip_invalid=True, results=results,
        chunk_size=2,
    )  # fmt: skip
    assert (report.created, report.invalid) == (8, 4)
    with open(results, encoding="utf-8-sig", newline="") as fh:
        got = [(int(r["row"]), r["outcome"]) for r in csv.DictReader(fh)]
    assert got == [(i + 1, "created" if i % 3 else "invalid") for i in range(1, 13)]


# -- spreadsheet-safe output (CSV formula injection) --------------------------------------------

FORMULA_HEADER = METERS_HEADER + ",desc,batchTag"
FORMULA_ROWS = [  # values that start with = + - @ in every text column, and values that must not
    '-SN-0001,=1+2,+08:00,-5,single,2026-11-01,"=HYPERLINK(""http://x"")",@SUM(A1),-2+3',
    "SN-0002,+Meter,-03:30,40,three,,@site,-12.5,=B1",
    "SN-0003,Meter 3,+08:00,41,single,,Hall 1,plain,B-1",
]
TRIGGERS = ("=", "+", "-", "@", "\t", "\r")
VALUE_RE = re.compile(r"[+-]?(\d+(\.\d*)?|\.\d+)([eE][+-]?\d+)?|[+-]\d\d:\d\d")


def formula_cells(path, encoding: str = "utf-8") -> list[str]:
    """The cells of a CSV file a spreadsheet would run as formulas."""
    with open(path, encoding=encoding, newline="") as fh:
        cells = [c for r in csv.reader(fh) for c in r]
    return [c for c in cells if c.startswith(TRIGGERS) and not VALUE_RE.fullmatch(c)]


def csv_dicts(path, encoding: str = "utf-8") -> list[dict]:
    with open(path, encoding=encoding, newline="") as fh:
        return list(csv.DictReader(fh))


def test_results_and_export_csv_are_spreadsheet_safe(cli, group, write_csv, tmp_path):
    src = write_csv(csv_text(*FORMULA_ROWS, header=FORMULA_HEADER))
    results = tmp_path / "results.csv"
    data = register_json(cli, src, "--results", str(results))["data"]
    assert data["created"] == 3
    export = tmp_path / "export.csv"
    cli.json("devices", "export", "--group", GROUP, "--out", str(export))
    for path in (results, export):
        assert formula_cells(path) == [], path
    by_sn = {r["deviceSn"]: r for r in csv_dicts(export)}
    first = by_sn["'-SN-0001"]
    assert [first[c] for c in ("deviceName", "desc", "batchTag")] == ["'=1+2", "'@SUM(A1)", "'-2+3"]
    assert first["site"] == """'=HYPERLINK("http://x")"""
    # numbers and UTC offsets stay as they are: spreadsheets read them as values
    assert (first["timezone"], first["max_capacity"]) == ("+08:00", "-5")
    assert (by_sn["SN-0002"]["timezone"], by_sn["SN-0002"]["desc"]) == ("-03:30", "-12.5")
    assert by_sn["SN-0003"]["desc"] == "plain"
    rows = csv_dicts(results)
    assert [r["deviceSn"] for r in rows] == ["'-SN-0001", "SN-0002", "SN-0003"]
    assert [r["input.deviceSn"] for r in rows] == ["'-SN-0001", "SN-0002", "SN-0003"]
    assert (rows[0]["deviceName"], rows[0]["timezone"], rows[0]["max_capacity"]) == (
        "'=1+2", "+08:00", "-5"
    )  # fmt: skip
    assert [rows[1][c] for c in ("batchTag", "desc", "timezone")] == ["'=B1", "-12.5", "-03:30"]


def test_raw_csv_writes_cells_as_they_are(cli, group, write_csv, tmp_path):
    src = write_csv(csv_text(*FORMULA_ROWS, header=FORMULA_HEADER))
    results = tmp_path / "results.csv"
    register_json(cli, src, "--results", str(results), "--raw-csv")
    export = tmp_path / "export.csv"
    cli.json("devices", "export", "--group", GROUP, "--out", str(export), "--raw-csv")
    first = {r["deviceSn"]: r for r in csv_dicts(export)}["-SN-0001"]
    assert (first["deviceName"], first["desc"], first["batchTag"]) == ("=1+2", "@SUM(A1)", "-2+3")
    assert csv_dicts(results)[1]["deviceName"] == "+Meter"
    assert len(formula_cells(export)) == 8  # deviceSn, deviceName, site, desc, batchTag ...
    assert len(formula_cells(results)) == 9  # ... and input.deviceSn


def test_results_echo_values_read_from_a_safe_file(store, group, write_csv, tmp_path):
    # a file enosprov wrote (prefixed) gives the same results file as the raw one
    safe_lines = ["'-SN-0001,'=1+2,+08:00,-5,single,,'+x,'@d,'-2+3"]
    raw_lines = ["-SN-0001,=1+2,+08:00,-5,single,,+x,@d,-2+3"]
    outputs = []
    for name, lines in (("safe", safe_lines), ("raw", raw_lines)):
        results = tmp_path / f"{name}.csv"
        api.register_csv(store, write_csv(csv_text(*lines, header=FORMULA_HEADER), f"{name}-in.csv"),
                         GROUP, results=results)  # fmt: skip
        outputs.append(csv_dicts(results))
        jsonl = tmp_path / f"{name}.jsonl"
        api.register_csv(store, write_csv(csv_text(*lines, header=FORMULA_HEADER), f"{name}-in.csv"),
                         GROUP, results=jsonl)  # fmt: skip
        line = json.loads(jsonl.read_text(encoding="utf-8"))
        assert line["input"]["deviceName"] == "=1+2" and line["outcome"] == "skipped"
    assert outputs[0][0]["outcome"] == "created" and outputs[1][0]["outcome"] == "skipped"
    for key in ("deviceSn", "input.deviceSn", "deviceName", "site", "desc", "batchTag"):
        assert outputs[0][0][key] == outputs[1][0][key]
    assert outputs[0][0]["site"] == "'+x"


def _registration_copy(export, target) -> None:
    """The registration columns of an export file, cells copied as they are (with their ')."""
    rows = csv_dicts(export)
    columns = FORMULA_HEADER.split(",")
    with open(target, "w", encoding="utf-8", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(columns)
        writer.writerows([r[c] for c in columns] for r in rows)


def test_export_reads_back_through_register_unchanged(cli, store, group, write_csv, tmp_path):
    src = write_csv(csv_text(*FORMULA_ROWS, header=FORMULA_HEADER))
    register_json(cli, src)
    before = {d.device_sn: d.to_dict() for d in store.iter_devices(api.SearchQuery())}
    export = tmp_path / "export.csv"
    cli.json("devices", "export", "--group", GROUP, "--out", str(export))
    again = tmp_path / "again.csv"
    _registration_copy(export, again)
    assert "'=1+2" in again.read_text(encoding="utf-8")
    data = register_json(cli, again)["data"]
    assert (data["rows"], data["skipped"], data["conflicts"], data["created"]) == (3, 3, 0, 0)
    assert {d.device_sn: d.to_dict() for d in store.iter_devices(api.SearchQuery())} == before
    assert before["-SN-0001"]["desc"] == "@SUM(A1)"


def test_export_reads_back_through_the_library(store, group, write_csv, tmp_path):
    report = api.register_csv(
        store, write_csv(csv_text(*FORMULA_ROWS, header=FORMULA_HEADER)), GROUP
    )
    assert report.created == 3
    export = tmp_path / "export.csv"
    api.export_devices_to(store, export, api.SearchQuery(group_id=GROUP))
    assert formula_cells(export) == []
    again = tmp_path / "again.csv"
    _registration_copy(export, again)
    report = api.register_csv(store, again, GROUP)
    assert (report.skipped, report.conflicts) == (3, 0)
    raw = tmp_path / "raw.csv"
    api.export_devices_to(store, raw, api.SearchQuery(group_id=GROUP), raw_csv=True)
    assert "=1+2" in formula_cells(raw)


def test_values_spreadsheets_would_run_are_registered_with_a_warning(cli, group, write_csv):
    src = write_csv(csv_text(*FORMULA_ROWS, header=FORMULA_HEADER))
    data = register_json(cli, src)["data"]
    assert data["created"] == 3 and data["issueCount"] == 0
    # row 2: deviceSn, site, deviceName, desc, batchTag; row 3: site, deviceName, batchTag
    assert data["warnings"] == 8
    assert data["warningRows"] == [2, 3]
    assert data["warningSamples"] == [
        {"row": 2, "column": "deviceSn", "value": "-SN-0001"},
        {"row": 2, "column": "site", "value": '=HYPERLINK("http://x")'},
        {"row": 2, "column": "deviceName", "value": "=1+2"},
        {"row": 2, "column": "desc", "value": "@SUM(A1)"},
        {"row": 2, "column": "batchTag", "value": "-2+3"},
    ]
    result = cli("register", "--csv", str(src), "--group", GROUP)  # again: skipped, same warning
    assert result.exit_code == 0, result.stderr
    assert (
        "warning: 8 values start with = + - @ (rows 2, 3): spreadsheets may read them as "
        "formulas; enosprov's CSV files prefix them with '"
    ) in " ".join(result.stderr.split())
    assert "warning" not in result.stdout


def test_no_warning_for_numbers_offsets_and_plain_text(cli, group, write_csv):
    src = write_csv(csv_text(row("SN-0001", tz="-03:30", cap="-7"), row("SN-0002", site="'quoted")))
    data = register_json(cli, src)["data"]
    assert (data["warnings"], data["warningRows"], data["warningSamples"]) == (0, [], [])
    result = cli("register", "--csv", str(src), "--group", GROUP)
    assert result.exit_code == 0 and "warning" not in result.stderr
