"""`qr scan --onboard`: on-site onboarding from a scanned label, on both backends."""

from __future__ import annotations

import json

import pytest
from conftest import meters_rows

from enosprov import api
from enosprov.burn.export import Selection
from enosprov.core.onboarding import onboard_device, onboard_devices, parse_sets
from enosprov.core.scan import scan_images
from enosprov.errors import InvalidArgumentError
from enosprov.qr.batch import qr_batch


@pytest.fixture
def labels(backend, group, write_csv, tmp_path):
    """Two registered devices and their labels (PNG), made by the qr batch library."""
    api.register_csv(backend, write_csv(meters_rows(2)), group.group_id, batch_tag="B-1")
    out = tmp_path / "labels"
    qr_batch(backend, Selection(group="meters-eu"), out)
    rows = json.loads((out / "manifest.json").read_text())
    return {r["deviceSn"]: out / r["png"] for r in rows}


def _sheet(paths, dest):
    from PIL import Image

    imgs = [Image.open(p).convert("L") for p in paths]
    sheet = Image.new("L", (sum(i.width for i in imgs) + 60 * (len(imgs) + 1), 500), 255)
    x = 60
    for img in imgs:
        sheet.paste(img, (x, 60))
        x += img.width + 60
    sheet.save(dest)
    return dest


def _scanned(backend, path):
    (result,) = scan_images(backend, [path])
    assert result.ok, result.problems
    return [c.device for c in result.codes]


def test_onboard_scanned_label(backend, labels):
    (dev,) = _scanned(backend, labels["SN-000001"])
    assert not dev.allocated
    after = onboard_device(backend, dev, name="Hall 3 meter", timezone="Europe/Berlin",
                           values={"max_capacity": "75", "site": "Hall 3"},
                           region_id="cn5", org_id="o7")  # fmt: skip
    assert after.allocated and (after.region_id, after.org_id) == ("cn5", "o7")
    got = backend.get(dev.sn)
    assert got.device_data["deviceName"]["defaultValue"] == "Hall 3 meter"
    assert got.device_data["timezone"] == "Europe/Berlin"
    assert got.device_data["max_capacity"] == 75 and got.device_data["site"] == "Hall 3"
    assert got.device_data["phase"] == "single"  # untouched values stay
    # Again: allocation is idempotent; the device stays where it is, and the result says so.
    (res,) = onboard_devices(backend, [got], timezone="+01:00", region_id="eu2", org_id="o1")
    assert not res.allocated_now and "stays there" in res.note and "not moved" in res.note
    assert (res.device.region_id, res.device.org_id) == ("cn5", "o7")
    assert backend.get(dev.sn).device_data["timezone"] == "+01:00"


def test_onboard_defaults_to_group_target(backend, labels):
    (dev,) = _scanned(backend, labels["SN-000002"])
    after = onboard_device(backend, dev)
    assert after.allocated and (after.region_id, after.org_id) == ("eu2", "o1")


@pytest.mark.parametrize(
    "kw, message",
    [
        ({"timezone": "Mars/Olympus"}, "timezone"),
        ({"values": {"colour": "red"}}, "'colour' is not a master data key"),
        ({"values": {"max_capacity": "lots"}}, "is not an Integer"),
        ({"values": {"phase": "four"}}, "is not one of"),
        ({"name": "x" * 200}, "deviceName"),
    ],
)
def test_bad_details_change_nothing(backend, labels, kw, message):
    (dev,) = _scanned(backend, labels["SN-000001"])
    before = backend.get(dev.sn)
    # a valid timezone alongside the bad value must not be applied either
    kw = {"timezone": "+08:00", **kw} if "timezone" not in kw else kw
    with pytest.raises(InvalidArgumentError, match=message):
        onboard_device(backend, dev, **kw)
    after = backend.get(dev.sn)
    assert after.device_data == before.device_data and not after.allocated


def test_several_devices_validated_before_any_change(backend, labels, tmp_path):
    devs = _scanned(backend, _sheet(labels.values(), tmp_path / "sheet.png"))
    assert len(devs) == 2
    with pytest.raises(InvalidArgumentError, match="names one device"):
        onboard_devices(backend, devs, name="same")
    with pytest.raises(InvalidArgumentError, match="max_capacity"):
        onboard_devices(backend, devs, values={"max_capacity": "9" * 30})
    assert not any(backend.get(d.sn).allocated for d in devs)


def test_parse_sets():
    assert parse_sets(["a=1", "b=x=y"]) == {"a": "1", "b": "x=y"}
    for bad in (["a"], ["=1"], ["a=1", "a=2"]):
        with pytest.raises(InvalidArgumentError):
            parse_sets(bad)


def test_cli_onboard(cli, backend, labels, tmp_path):
    sheet = _sheet(labels.values(), tmp_path / "sheet.png")
    # several devices, no terminal, no --yes: refused, nothing changed
    refused = cli("qr", "scan", str(sheet), "--onboard", "--timezone", "+08:00", "--json")
    assert refused.exit_code == 1
    err = json.loads(refused.stdout)["error"]
    assert "without confirmation" in err["message"] and "--yes" in err["hint"]
    assert not any(backend.get(d.sn).allocated for d in _scanned(backend, sheet))
    # onboarding options without --onboard are refused
    assert cli("qr", "scan", str(sheet), "--timezone", "+08:00").exit_code == 1
    # bad master data: one clear error, nothing changed
    bad = cli("qr", "scan", str(sheet), "--onboard", "--yes", "--set", "max_capacity=x")
    assert bad.exit_code == 1 and "max_capacity" in bad.stderr
    assert not any(backend.get(d.sn).allocated for d in _scanned(backend, sheet))
    # happy path
    data = cli.json("qr", "scan", str(sheet), "--onboard", "--yes", "--timezone", "Asia/Tokyo",
                    "--set", "site=Roof", "--region", "eu2", "--org", "o9")["data"]  # fmt: skip
    assert data["ok"] and len(data["onboarded"]) == 2
    for o in data["onboarded"]:
        assert o["allocatedNow"] and (o["regionId"], o["orgId"]) == ("eu2", "o9")
        assert set(o["updated"]) == {"timezone", "site"}
        dev = backend.get(o["sn"])
        assert dev.device_data["timezone"] == "Asia/Tokyo" and dev.device_data["site"] == "Roof"
    # one device, named, human output; already allocated: stays
    one = cli("qr", "scan", str(labels["SN-000001"]), "--onboard", "--name", "Roof meter")
    assert one.exit_code == 0, one.stderr
    assert "onboarded" in one.stdout and "stays there" in one.stderr
    named = backend.find_by_device_sn("meters-eu", "SN-000001")
    assert named.device_data["deviceName"]["defaultValue"] == "Roof meter"
    assert (named.region_id, named.org_id) == ("eu2", "o9")
