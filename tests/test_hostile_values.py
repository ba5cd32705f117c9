"""Hostile values are inert: control characters, escape sequences, bidi overrides and rich
markup in stored values never reach a terminal raw, never break a label, and a deviceSn cannot
hold them whatever the group's pattern. A store holding secrets is owner-only."""

from __future__ import annotations

import json
import os
import re
import sys

import pytest
from conftest import METERS_HEADER, make_group, meters_rows

from enosprov.backends.local import LocalBackend
from enosprov.cli.output import printable
from enosprov.domain import rules
from enosprov.domain.models import NewDevice

# Everything a terminal obeys (or a reader misreads) and must never receive raw: CSI (colour),
# OSC (window title) ended by BEL, NUL, CR, backspace, DEL, a C1 control (NEL), a bidi override,
# a newline and a tab; plus rich markup and an emoji code that must print literally.
HOSTILE = "A\x1b[31mB\x1b]0;pwned\x07C\x00D\rE\bF\x7fG\x85H\u202eI\nJ\tK[red]L[/] :smile:"
SHOWN = r"A\x1b[31mB\x1b]0;pwned\x07C\x00D\rE\x08F\x7fG\x85H\u202eI\nJ\tK[red]L[/] :smile:"
# Any control character but the newlines that end lines (and draw tables) of human output.
RAW_CONTROL = re.compile(
    r"[\x00-\x09\x0b-\x1f\x7f-\x9f\u061c\u200e\u200f\u2028-\u202e\u2066-\u2069]"
)
WIDE = {"COLUMNS": "400"}  # rich folds long cells at 80 columns when not on a terminal


def inert(*texts: str) -> bool:
    return not any(RAW_CONTROL.search(t) for t in texts)


@pytest.fixture
def hostile_store(store, write_csv, cli):
    """One device SN-000001 registered through the CLI (journal included), then given hostile
    values the way old data or another tool could have left them in the store."""
    make_group(store)
    assert cli("register", "--csv", str(write_csv(meters_rows(1))), "--group", "meters-eu",
               "--batch-tag", "B-1").exit_code == 0  # fmt: skip
    data = {"deviceName": {"defaultValue": HOSTILE}, "max_capacity": 41, "phase": "single",
            "site": HOSTILE, "timezone": "+08:00"}  # fmt: skip
    with store.write() as conn:
        conn.execute(
            "UPDATE devices SET description=?, batch_tag=?, device_data=? WHERE device_sn=?",
            (HOSTILE, HOSTILE, json.dumps(data), "SN-000001"),
        )
    return store.find_by_device_sn("meters-eu", "SN-000001")


# -- the escaping rule ---------------------------------------------------------------------------


def test_printable_escapes_every_control_character():
    assert printable(HOSTILE) == SHOWN
    assert printable("\x1b") == r"\x1b" and printable("\x00") == r"\x00"
    assert printable("\u202e") == r"\u202e" and printable("a\nb") == r"a\nb"
    assert printable("\u2028\u2066\u200f\x9b") == r"\u2028\u2066\u200f\x9b"
    assert printable("Zähler 电表 C:\\data") == "Zähler 电表 C:\\data"  # printable text as is
    assert printable(None) == "" and printable(42) == "42"


# -- human output ----------------------------------------------------------------------------------


@pytest.mark.sqlite_only  # PostgreSQL text cannot hold the NUL these values carry
def test_devices_show_and_list_escape_values_and_json_keeps_them(cli, hostile_store):
    sn = hostile_store.sn
    shown = cli("devices", "show", sn, env=WIDE)
    assert shown.exit_code == 0, shown.output
    assert inert(shown.stdout, shown.stderr)
    # desc, batch tag, deviceName and a master data value, each escaped, markup literal
    assert shown.stdout.count(SHOWN) == 4
    listed = cli("devices", "list", env=WIDE)
    assert listed.exit_code == 0 and inert(listed.stdout, listed.stderr)
    assert SHOWN in listed.stdout  # the batch column
    data = cli.json("devices", "show", sn)["data"]
    assert data["desc"] == HOSTILE and data["batchTag"]["defaultValue"] == HOSTILE
    assert data["deviceData"]["deviceName"]["defaultValue"] == HOSTILE
    assert data["deviceData"]["site"] == HOSTILE
    items = cli.json("devices", "list")["data"]["items"]
    assert items[0]["batchTag"]["defaultValue"] == HOSTILE


@pytest.mark.sqlite_only  # PostgreSQL text cannot hold the NUL these values carry
def test_batches_list_and_show_escape_the_tag(cli, hostile_store):
    listed = cli("batches", "list", env=WIDE)
    assert listed.exit_code == 0, listed.output
    assert inert(listed.stdout, listed.stderr) and SHOWN in listed.stdout
    shown = cli("batches", "show", HOSTILE, "--group", "meters-eu", env=WIDE)
    assert shown.exit_code == 0, shown.output
    assert inert(shown.stdout, shown.stderr) and SHOWN in shown.stdout
    by_state = cli("batches", "show", HOSTILE, "--state", "registered", env=WIDE)
    assert by_state.exit_code == 0 and inert(by_state.stdout, by_state.stderr)
    assert SHOWN in by_state.stdout  # the table title
    assert HOSTILE in [b["batchTag"] for b in cli.json("batches", "list")["data"]]
    missing = cli("batches", "show", HOSTILE + "x", "--group", "meters-eu")
    assert missing.exit_code != 0 and inert(missing.stdout, missing.stderr)


@pytest.mark.sqlite_only  # PostgreSQL text cannot hold the NUL these values carry
def test_devices_history_escapes_the_device_sn(cli, store, write_csv):
    make_group(store, sn_pattern=".*")
    assert cli("register", "--csv", str(write_csv(meters_rows(1))), "--group",
               "meters-eu").exit_code == 0  # fmt: skip
    dev = store.find_by_device_sn("meters-eu", "SN-000001")
    with store.write() as conn:  # data from before the deviceSn rules
        conn.execute("UPDATE devices SET device_sn=? WHERE sn=?", (HOSTILE, dev.sn))
    result = cli("devices", "history", dev.sn, env=WIDE)
    assert result.exit_code == 0, result.output
    assert inert(result.stdout, result.stderr) and SHOWN in result.stdout
    assert cli.json("devices", "history", dev.sn)["data"]["current"]["deviceSn"] == HOSTILE


def test_error_lines_escape_a_hostile_csv_header(cli, store, write_csv):
    make_group(store)
    path = write_csv(
        b"deviceSn,de\x1b[2J\x00v\x1b]0;t\x07,max_capacity,phase\nSN-0001,x,5,single\n"
    )
    result = cli("register", "--csv", str(path), "--group", "meters-eu")
    assert result.exit_code == 1
    assert inert(result.stdout, result.stderr)
    assert r"de\x1b[2J\x00v\x1b]0;t\x07" in result.stderr
    err = cli.json("register", "--csv", str(path), "--group", "meters-eu", expect=1)["error"]
    assert any(i["column"] == "de\x1b[2J\x00v\x1b]0;t\x07" for i in err["issues"])


def test_error_message_and_hint_never_render_markup(cli, store):
    make_group(store)
    result = cli("devices", "show", "[red]no[/] \x1b[2J\u202e", env=WIDE)
    assert result.exit_code == 1
    assert inert(result.stdout, result.stderr)
    assert r"[red]no[/] \x1b[2J\u202e" in result.stderr


@pytest.mark.sqlite_only  # PostgreSQL text cannot hold the NUL these values carry
def test_qr_scan_escapes_what_the_code_holds(cli, store, write_csv, tmp_path):
    from enosprov.qr.payload import Payload
    from enosprov.qr.render import QrOptions, encode, to_image

    make_group(store)
    assert cli("register", "--csv", str(write_csv(meters_rows(1))), "--group",
               "meters-eu").exit_code == 0  # fmt: skip
    sn = store.find_by_device_sn("meters-eu", "SN-000001").sn
    with store.write() as conn:
        conn.execute("UPDATE devices SET device_sn=? WHERE sn=?", (HOSTILE, sn))
    ours = tmp_path / "ours.png"
    to_image(encode(Payload("meters-eu", HOSTILE).text), QrOptions(module_px=4)).save(ours)
    foreign = tmp_path / "foreign.png"  # not an enosprov payload: its raw text is shown
    to_image(encode("evil[red]x[/]\u202e"), QrOptions(module_px=4)).save(foreign)
    result = cli("qr", "scan", str(ours), str(foreign), env=WIDE)
    assert result.exit_code == 1  # the foreign code
    assert inert(result.stdout, result.stderr)
    assert SHOWN in result.stdout and r"evil[red]x[/]\u202e" in result.stdout
    data = cli.json("qr", "scan", str(ours))["data"]
    assert data["images"][0]["codes"][0]["device"]["deviceSn"] == HOSTILE


def test_say_and_key_values_and_table_escape(capsys, monkeypatch):
    from enosprov.cli.output import key_values, say, table

    monkeypatch.setenv("COLUMNS", "400")

    say(HOSTILE)
    say(HOSTILE, stderr=True)
    key_values([("k", HOSTILE), (HOSTILE, None)])
    table(HOSTILE, ["deviceSn", "other"], [[HOSTILE, ["line 1\x1b", "line 2"]]], wide=True)
    out = capsys.readouterr()
    assert inert(out.out, out.err)
    assert out.out.count(SHOWN) == 5 and out.err.count(SHOWN) == 1
    assert "line 1\\x1b" in out.out and "line 2" in out.out  # a list cell: one line per item


# -- deviceSn rules --------------------------------------------------------------------------------

REFUSED = ["", "SN-1\n", "SN\n1", "\tSN-1", "SN-1\t", " SN-1", "SN-1 ", "SN\x1b1", "SN\u202e1",
           "SN\x001", "SN\x851", "\u00a0SN-1"]  # fmt: skip


@pytest.mark.parametrize("value", REFUSED, ids=repr)
@pytest.mark.parametrize("pattern", [".*", r"[\s\S]*", None])
def test_sn_refused_whatever_the_pattern(value, pattern):
    problem = rules.sn_problem(value, pattern)
    assert problem is not None
    assert not rules.sn_matcher(pattern)(value)
    if value == "":
        assert problem == "deviceSn is empty"
    elif rules.CONTROL_RE.search(value):
        assert "control character" in problem
    elif pattern:
        assert "whitespace" in problem


def test_a_permissive_pattern_still_takes_ordinary_serials():
    for value in ("x", "SN 1", "序列号-1", "a:b/c"):
        assert rules.sn_problem(value, ".*") is None and rules.sn_matcher(".*")(value)


def test_csv_with_permissive_pattern_refuses_empty_and_multiline_serials(cli, store, write_csv):
    make_group(store, sn_pattern=".*")
    header = METERS_HEADER
    rows = [",Meter 1,+08:00,41,single,,", '"SN\n2",Meter 2,+08:00,42,single,,',
            '"SN\x1b3",Meter 3,+08:00,43,single,,', "SN-4,Meter 4,+08:00,44,single,,"]  # fmt: skip
    path = write_csv(header + "\n" + "\n".join(rows) + "\n")
    err = cli.json("register", "--csv", str(path), "--group", "meters-eu", expect=1)["error"]
    issues = {i["row"]: i["message"] for i in err["issues"] if i["column"] == "deviceSn"}
    assert issues[2] == "deviceSn is empty"
    assert "control character (U+000A)" in issues[3]
    assert "control character (U+001B)" in issues[4]
    assert 5 not in issues and err["issueCount"] == 3
    human = cli("register", "--csv", str(path), "--group", "meters-eu")
    assert human.exit_code == 1 and inert(human.stdout, human.stderr)
    assert store.find_by_device_sn("meters-eu", "SN-4") is None  # nothing was registered


def test_library_register_refuses_a_newline_serial_with_a_permissive_pattern(store):
    from enosprov.errors import EnosprovError

    make_group(store, sn_pattern=".*")
    for bad in ("", "SN\n1", "SN-1\t"):
        with pytest.raises(EnosprovError, match="deviceSn"):
            store.register_batch("meters-eu", [NewDevice(device_sn=bad, device_data={
                "max_capacity": 41, "phase": "single"})])  # fmt: skip
    assert store.find_by_device_sn("meters-eu", "SN\n1") is None


# -- labels ----------------------------------------------------------------------------------------


@pytest.fixture
def multiline_device(store, write_csv):
    """A stored device whose deviceSn and batch tag hold a newline and other controls."""
    from enosprov import api

    make_group(store, sn_pattern=".*")
    api.register_csv(store, write_csv(meters_rows(1)), "meters-eu", batch_tag="B-1")
    dev = store.find_by_device_sn("meters-eu", "SN-000001")
    with store.write() as conn:
        conn.execute("UPDATE devices SET device_sn=?, batch_tag=? WHERE sn=?",
                     ("SN\n1\x1b[31m\u202e", "B\r\n1\t\x00", dev.sn))  # fmt: skip
    return store.get(dev.sn)


@pytest.mark.parametrize("fmt", ["png", "svg", "pdf", "zpl"])
@pytest.mark.sqlite_only  # PostgreSQL text cannot hold the NUL these values carry
def test_labels_render_values_with_newlines_on_one_line(cli, multiline_device, tmp_path, fmt):
    from enosprov.qr.payload import parse_payload

    out = tmp_path / fmt
    result = cli("qr", "batch", "--group", "meters-eu", "--label-format", fmt, "--out", str(out))
    assert result.exit_code == 0, result.output
    assert "internal error" not in result.output and inert(result.stdout, result.stderr)
    rows = json.loads((out / "manifest.json").read_text(encoding="utf-8"))
    assert [parse_payload(r["payload"]).device_sn for r in rows] == [multiline_device.device_sn]
    (label,) = [p for p in out.iterdir() if p.suffix == f".{fmt}"]
    if fmt == "png":
        from PIL import Image

        from enosprov.qr.render import decode_texts

        assert decode_texts(Image.open(label)) == [rows[0]["payload"]]
    elif fmt == "svg":
        import xml.etree.ElementTree as ET

        root = ET.fromstring(label.read_bytes())  # well-formed: no raw control character
        (text,) = [e.text for e in root.iter() if e.tag.endswith("text")]
        assert text.startswith("SN 1 [31m ") and inert(text)
    elif fmt == "zpl":
        data = label.read_text(encoding="ascii")
        fields = re.findall(r"\^A0N[^\^]*\^FH_\^FD(.*?)\^FS", data)
        from enosprov.qr.zpl import zpl_unescape

        texts = [zpl_unescape(f) for f in fields]
        assert texts[0] == "SN 1 [31m " and texts[2] == "B  1  "
        assert all(inert(t) for t in texts)
    else:
        pdfium = pytest.importorskip("pypdfium2")
        pdf = pdfium.PdfDocument(str(label))
        try:
            text = pdf[0].get_textpage().get_text_range()
        finally:
            pdf.close()
        assert "SN 1 [31m" in text and "\x1b" not in text


def test_label_text_and_template_lines_are_one_line():
    from enosprov.qr.labels import label_text, load_template

    assert label_text("a\nb\r\tc\x1bd\u202ee") == "a b  c d e"
    tpl = load_template(None, "pdf")
    lines = tpl.text_lines({"deviceSn": "SN\n1", "shortCode": "X", "batchTag": "B\x00",
                            "groupId": "g", "sn": ""})  # fmt: skip
    assert lines[0] == "SN 1" and all("\n" not in line and inert(line) for line in lines)


# -- store permissions -------------------------------------------------------------------------


@pytest.mark.skipif(sys.platform == "win32", reason="POSIX file modes")
def test_an_existing_store_is_narrowed_to_owner_only(tmp_path):
    from conftest import file_mode

    path = tmp_path / "wide.db"
    first = LocalBackend(path)  # keeps the WAL files open
    make_group(first)
    parts = [path, tmp_path / "wide.db-wal", tmp_path / "wide.db-shm"]
    assert all(p.exists() for p in parts)
    for p in parts:
        os.chmod(p, 0o644)
    second = LocalBackend(path)
    try:
        assert [file_mode(p) for p in parts] == [0o600] * 3
        assert second.get_group("meters-eu").group_secret  # still the same, working store
    finally:
        second.close()
        first.close()
    os.chmod(path, 0o640)
    LocalBackend(path).close()
    assert file_mode(path) == 0o600
