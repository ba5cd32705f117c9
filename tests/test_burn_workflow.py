"""Plug-and-play end to end, on both backends: register, burn, verify, bootstrap from the file."""

from __future__ import annotations

import dataclasses
import json
import os
import sys

import pytest
from conftest import METERS_HEADER, file_mode, make_group, meters_rows

from enosprov import api
from enosprov.burn.export import Selection, export_burn_files, safe_filename
from enosprov.burn.verify import verify_files
from enosprov.errors import InputFileError, InvalidArgumentError, NotFoundError

FORMATS = ["json", "ini", "c", "bin", "hex", "nvs"]


@pytest.fixture
def registered(backend, group, write_csv):
    api.register_csv(backend, write_csv(meters_rows(4)), group.group_id, batch_tag="B-1")
    return group


def export(backend, out, **kw):
    sel = kw.pop("selection", None) or Selection(group="meters-eu", **kw.pop("sel", {}))
    return export_burn_files(backend, sel, out, dps_url="http://dps.example", **kw)


@pytest.mark.parametrize("fmt", FORMATS)
def test_register_burn_verify_bootstrap(backend, registered, tmp_path, fmt):
    from enosprov.device import bootstrap_device, read_credential

    out = tmp_path / "burn"
    report = export(backend, out, fmt=fmt)
    assert (report.devices, report.written, report.unchanged) == (4, 4, 0)
    files = sorted(p for p in out.iterdir() if not p.name.startswith("manifest"))
    assert len(files) == 4
    if sys.platform != "win32":
        assert {file_mode(p) for p in files} == {0o600}
    manifest = json.loads((out / "manifest.json").read_text())
    assert {m["deviceSn"] for m in manifest} == {f"SN-{i:06d}" for i in range(1, 5)}
    assert all(m["format"] == fmt and len(m["sha256"]) == 64 and m["sn"] for m in manifest)
    assert (
        (out / "manifest.csv")
        .read_text(encoding="utf-8-sig")
        .splitlines()[0]
        .startswith("deviceSn,sn,file")
    )

    assert verify_files(backend, files).ok
    cred = read_credential(files[0])
    assert cred.profile == "bootstrap" and cred.group_id == "meters-eu"
    session = bootstrap_device(backend, cred)
    dev = backend.get(cred.sn)
    assert dev.allocated and dev.connect_status == "connected"
    assert session.info.device_key == dev.device_key

    again = export(backend, out, fmt=fmt)  # resumable: nothing correct is rewritten
    assert (again.written, again.unchanged) == (0, 4)


def test_triple_profile_needs_allocation_then_verifies(backend, registered, tmp_path):
    out = tmp_path / "t"
    with pytest.raises(InvalidArgumentError, match="not allocated"):
        export(backend, out, profile="triple")
    assert not out.exists() or not any(out.iterdir())  # nothing written
    for dev in backend.iter_devices(api.SearchQuery(group_id="meters-eu")):
        backend.allocate(dev.sn)
    report = export(backend, out, profile="triple", fmt="bin")
    assert report.written == 4
    files = [p for p in out.iterdir() if p.suffix == ".bin"]
    assert verify_files(backend, files).ok
    dev = backend.get(verify_files(backend, files[:1]).checks[0].sn)
    backend.reset_allocation("meters-eu", [dev.sn])  # re-allocation changes the triple
    backend.allocate(dev.sn)
    stale = verify_files(backend, [out / (safe_filename(dev.device_sn) + ".bin")])
    assert not stale.ok and "deviceKey" in " ".join(stale.checks[0].problems)


def test_configure_only_flow_registers_on_bootstrap(backend, group, tmp_path, write_csv):
    from enosprov.device import bootstrap_device, read_credential

    csv_path = write_csv("deviceSn\nNEW-0001\nNEW-0002\n", name="new.csv")
    out = tmp_path / "co"
    report = export(backend, out, selection=Selection(group="meters-eu", csv_path=str(csv_path),
                                                      no_register=True))  # fmt: skip
    assert report.devices == 2
    assert backend.find_by_device_sn("meters-eu", "NEW-0001") is None
    check = verify_files(backend, [out / "NEW-0001.json"]).checks[0]
    assert check.ok and "registers itself" in " ".join(check.notes)
    cred = read_credential(out / "NEW-0001.json")
    assert (cred.device_name, cred.timezone) == ("NEW-0001", "+08:00")  # deviceSn, group default
    session = bootstrap_device(backend, cred)
    dev = backend.find_by_device_sn("meters-eu", "NEW-0001")
    assert dev is not None and dev.allocated and dev.sn == session.info.sn
    # it registered itself with the burned deviceName and timezone
    assert dev.device_data["deviceName"]["defaultValue"] == "NEW-0001"
    assert dev.device_data["timezone"] == "+08:00"


def test_selection_errors_change_nothing(backend, registered, tmp_path):
    other = make_group(backend, group_id="other", name="Other")
    api.create_group  # noqa: B018 (other group exists for the cross-group check)
    out = tmp_path / "x"
    with pytest.raises(NotFoundError, match="NOPE-1"):
        export(backend, out, sel={"device_sns": ("SN-000001", "NOPE-1")})
    sn_other = backend.create(other.group_id, device_data={"deviceSn": "OTHER-01",
                                                           "max_capacity": 1, "phase": "single"})  # fmt: skip
    assert sn_other
    with pytest.raises(NotFoundError, match="OTHER-01"):
        export(backend, out, sel={"device_sns": ("OTHER-01",)})
    assert not out.exists()
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(InputFileError, match="not a folder"):
        export(backend, blocker)


def test_tampered_or_foreign_files_fail_verification(backend, registered, tmp_path):
    out = tmp_path / "v"
    export(backend, out, fmt="bin")
    export(backend, out, fmt="json")
    good = out / "SN-000001.bin"
    data = bytearray(good.read_bytes())
    data[12] ^= 0x01
    bad = tmp_path / "bad.bin"
    bad.write_bytes(bytes(data))
    short = tmp_path / "short.bin"
    short.write_bytes(good.read_bytes()[:-3])
    wrong = tmp_path / "wrong.json"
    doc = json.loads((out / "SN-000002.json").read_text())
    doc["groupSecret"] = "not-the-secret"
    wrong.write_text(json.dumps(doc))
    report = verify_files(backend, [good, bad, short, wrong])
    assert [c.ok for c in report.checks] == [True, False, False, False]
    assert "group secret" in report.checks[3].problems[0]
    assert "not-the-secret" not in json.dumps(report.to_dict())


def test_file_names_never_leave_the_folder():
    for sn, name in [("a/b", "a%2Fb"), ("..", "%2E."), ("CON", "_CON"), ("x:y", "x%3Ay"),
                     ("../../etc", "%2E.%2F..%2Fetc")]:  # fmt: skip
        assert safe_filename(sn) == name
        assert os.sep not in safe_filename(sn) and "/" not in safe_filename(sn)


def test_cli_burn_export_and_verify(cli, backend, registered, tmp_path):
    out = tmp_path / "cli"
    data = cli.json("burn", "export", "--group", "meters-eu", "--batch-tag", "B-1",
                    "--burn-format", "hex", "--out", str(out), "--dps-url", "http://dps.example")["data"]  # fmt: skip
    assert data["devices"] == 4 and data["format"] == "hex"
    files = sorted(str(p) for p in out.glob("*.hex"))
    ok = cli.json("burn", "verify", *files)["data"]
    assert ok["ok"] and ok["files"] == 4
    secret = backend.get_group("meters-eu").group_secret
    text = cli("burn", "verify", *files)
    assert secret not in text.stdout + text.stderr
    bad = tmp_path / "bad.hex"
    lines = (out / "SN-000001.hex").read_text().splitlines()
    lines[1] = lines[1][:-3] + ("0" if lines[1][-3] != "0" else "1") + lines[1][-2:]
    bad.write_text("\n".join(lines) + "\n")
    result = cli("burn", "verify", str(bad), "--json")
    assert result.exit_code == 4


def test_template_export_and_unknown_field(backend, registered, tmp_path):
    from enosprov.burn.formats import FormatOptions
    from enosprov.burn.formats.template import read_template

    text, name = read_template("credentials.h")  # the shipped one
    opts = FormatOptions(template=text, template_name=name)
    out = tmp_path / "tmpl"
    report = export(backend, out, fmt="template", options=opts)
    assert report.written == 4
    header = (out / "SN-000001.h").read_text(encoding="utf-8")
    assert "SN-000001" in header and backend.get_group("meters-eu").group_secret in header
    with pytest.raises(InvalidArgumentError, match="colour"):
        FormatOptions(template="id={deviceSn} {colour}", template_name="x.txt")


def test_cli_bootstrap_from_burned_file_shows_connected(cli, backend, registered, tmp_path):
    out = tmp_path / "nvs"
    cli.json("burn", "export", "--group", "meters-eu", "--burn-format", "nvs", "--out", str(out),
             "--dps-url", "http://dps.example")  # fmt: skip
    image = out / "SN-000002.nvs.bin"
    session = cli.json("device", "bootstrap", str(image))["data"]
    assert session["deviceSn"] == "SN-000002" and "deviceSecret" not in session
    shown = cli.json("devices", "show", "SN-000002")["data"]
    assert (shown["allocateStatus"], shown["connectStatus"]) == ("allocated", "connected")
    assert shown["deviceKey"] == session["deviceKey"]


# -- deviceName and timezone -------------------------------------------------------------------


def _register(backend, write_csv, *rows: str) -> None:
    api.register_csv(backend, write_csv("\n".join([METERS_HEADER, *rows]) + "\n"), "meters-eu")


def test_files_carry_the_registered_name_else_the_serial_and_a_timezone(
    backend, tmp_path, write_csv
):
    from enosprov.device import read_credential

    make_group(backend, timezone="Europe/Berlin")
    _register(backend, write_csv, "NAMED-0001,Zähler «Nord» 1,+05:30,60,single,,",
              "BARE-0002,,,60,single,,")  # fmt: skip
    out = tmp_path / "names"
    for fmt in FORMATS:
        export(backend, out / fmt, fmt=fmt)
        named = read_credential(next((out / fmt).glob("NAMED-0001.*")))
        assert (named.device_name, named.timezone) == ("Zähler «Nord» 1", "+05:30")
        bare = read_credential(next((out / fmt).glob("BARE-0002.*")))
        assert (bare.device_name, bare.timezone) == ("BARE-0002", "Europe/Berlin")
        assert verify_files(backend, sorted((out / fmt).glob("*A*-000*"))).ok


@pytest.mark.parametrize("fmt", ["json", "nvs"])  # nvs: the first pass also encodes
def test_export_without_a_timezone_is_refused_and_writes_nothing(backend, tmp_path, write_csv, fmt):
    make_group(backend, timezone=None)
    _register(backend, write_csv, "TZ-0001,Meter 1,+08:00,60,single,,",
              "NOTZ-0002,Meter 2,,60,single,,", "NOTZ-0003,,,60,single,,")  # fmt: skip
    out = tmp_path / "out"
    out.mkdir()
    (out / "keep.txt").write_text("x")
    with pytest.raises(InvalidArgumentError) as err:
        export(backend, out, fmt=fmt)
    assert err.value.message == (
        "no timezone for device(s) NOTZ-0002, NOTZ-0003 of group meters-eu: neither "
        "deviceData.timezone nor a group default timezone, and Bootstrap Device requires one; "
        "nothing was written"
    )
    for fix in ("group create --timezone", "config add-group", "timezone column", "devices update"):
        assert fix in err.value.hint
    assert [p.name for p in out.iterdir()] == ["keep.txt"]
    co = tmp_path / "co"
    with pytest.raises(InvalidArgumentError) as err:
        export(backend, co, fmt=fmt, selection=Selection(
            group="meters-eu", device_sns=("NEW-0001", "NEW-0002"), no_register=True))  # fmt: skip
    assert err.value.message == (
        "no timezone for the 2 unregistered device(s) of group meters-eu: the group has no default "
        "timezone, and Bootstrap Device requires one; nothing was written"
    )
    assert not co.exists()
    assert export(backend, out, fmt=fmt, sel={"device_sns": ("TZ-0001",)}).written == 1


def test_cli_export_refusal_names_the_fix(cli, store, tmp_path):
    make_group(store, timezone=None)
    out = tmp_path / "cli"
    err = cli.json("burn", "export", "--group", "meters-eu", "--out", str(out), "--no-register",
                   "--device-sn", "NEW-0001", "--dps-url", "http://dps.example", expect=1)["error"]  # fmt: skip
    assert err["code"] == "invalid_argument"
    assert "no timezone for the 1 unregistered device(s) of group meters-eu" in err["message"]
    assert "group create --timezone" in err["hint"]
    assert not out.exists()


def test_old_or_bad_files_fail_verification_with_the_fix(backend, registered, tmp_path):
    import struct
    import zlib

    from enosprov.burn.formats import FORMATS
    from enosprov.device import read_credential

    out = tmp_path / "v"
    export(backend, out, fmt="json")
    doc = json.loads((out / "SN-000001.json").read_text(encoding="utf-8"))
    cred = read_credential(out / "SN-000001.json")
    old_json = tmp_path / "old.json"
    old_json.write_text(json.dumps({k: v for k, v in doc.items() if k not in ("deviceName",
                                                                             "timezone")}))  # fmt: skip
    body = bytearray(FORMATS["bin"].encode(
        dataclasses.replace(cred, device_name=None, timezone=None))[:-4])  # fmt: skip
    body[4] = 1  # binary layout version 1, as enosprov wrote it before deviceName and timezone
    old_bin = tmp_path / "old.bin"
    old_bin.write_bytes(bytes(body) + struct.pack("<I", zlib.crc32(body)))
    bad_tz = tmp_path / "bad-tz.json"
    bad_tz.write_text(json.dumps({**doc, "timezone": "Mars/Olympus"}))
    renamed = tmp_path / "renamed.json"
    renamed.write_text(json.dumps({**doc, "deviceName": "Other name", "timezone": "+09:00"}))
    report = verify_files(backend, [old_json, old_bin, bad_tz, renamed])
    assert [c.ok for c in report.checks] == [False, False, False, True]
    for check, path in zip(report.checks[:2], (old_json, old_bin)):
        assert check.problems == [
            f"{path}: bootstrap credential lacks deviceName, timezone, which Bootstrap Device "
            "requires (a file written before enosprov burned them): re-export it with "
            "`enosprov burn export`"
        ]
    assert "Mars/Olympus" in report.checks[2].problems[0]
    notes = " ".join(report.checks[3].notes)  # a registered device keeps its own: notes only
    assert "+09:00 differs" in notes and "'Other name' differs" in notes
    assert doc["groupSecret"] not in json.dumps(report.to_dict())
