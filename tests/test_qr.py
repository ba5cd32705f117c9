"""QR labels: payload format, short code, batch on both backends, verification, scanning."""

from __future__ import annotations

import json

import pytest
from conftest import meters_rows
from hypothesis import given, settings
from hypothesis import strategies as st

from enosprov import api
from enosprov.burn.export import Selection
from enosprov.core.scan import scan_images
from enosprov.errors import InvalidArgumentError, NotFoundError
from enosprov.qr.batch import qr_batch
from enosprov.qr.payload import (
    CROCKFORD,
    ForeignCodeError,
    Payload,
    check_short_code,
    check_template,
    parse_payload,
    render_payload,
    short_code,
)
from enosprov.qr.render import QrOptions, decode_texts, encode, to_image

values = st.text(st.characters(blacklist_categories=("Cs",)), min_size=1, max_size=64)
odd = ["AA:BB:CC:DD:EE:FF", "a%41b", "x y", "ENP1:x", "Ünïcödé-序列号", "....", "::::", "%%%%"]


@settings(max_examples=100, deadline=None)
@given(values, st.one_of(values, st.sampled_from(odd)), st.none() | values, st.none() | values)
def test_payload_round_trips(group_id, device_sn, sn, batch_tag):
    p = Payload(group_id, device_sn, sn, batch_tag)
    text = p.text
    assert text.isascii() and text.startswith("ENP1:") and text.count(":") == 4
    assert parse_payload(text) == p


@pytest.mark.parametrize(
    "text",
    ["hello", "https://example.com/x", "ENP1:a:b", "ENP1:a:b:c:d:e", "ENP1::SN-1::",
     "ENP1:a:b c::", "ENP1:a:b%4::", "ENP1:a:%FF::", ""],
)  # fmt: skip
def test_foreign_text_is_refused(text):
    with pytest.raises(ForeignCodeError):
        parse_payload(text)


def test_future_version_is_named():
    with pytest.raises(ForeignCodeError, match="ENP2"):
        parse_payload("ENP2:a:b::")


def test_short_code_catches_single_typos():
    codes = [short_code(Payload("g", f"SN-{i:06d}").text) for i in range(200)]
    for code in codes:
        assert len(code) == 9 and code[4] == "-" and check_short_code(code)
        assert check_short_code(code.lower().replace("-", " "))
        c = code.replace("-", "")
        for i in range(8):
            for ch in CROCKFORD:
                if ch != c[i]:
                    assert not check_short_code(c[:i] + ch + c[i + 1 :]), (c, i, ch)
        for i in range(7):  # neighbour swaps
            if c[i] != c[i + 1]:
                assert not check_short_code(c[:i] + c[i + 1] + c[i] + c[i + 2 :])


def test_templates():
    p = Payload("meters-eu", "AA:BB", "s1", "B-1")
    url = render_payload(p, "https://x.example/d/{deviceSn}?g={groupId}&c={shortCode}")
    assert url == f"https://x.example/d/AA%3ABB?g=meters-eu&c={p.short_code}"
    for bad in ["{deviceSn} {colour}", "{deviceSn!r}", "{deviceSn:>10}", "{deviceSn", "{0}",
                "{groupId}"]:  # fmt: skip
        with pytest.raises(InvalidArgumentError):
            check_template(bad)


def test_payload_too_long_is_one_clear_error():
    with pytest.raises(InvalidArgumentError, match="too long"):
        encode("x" * 3000, "H", "SN-1")


@pytest.fixture
def registered(backend, group, write_csv):
    api.register_csv(backend, write_csv(meters_rows(4)), group.group_id, batch_tag="B-1")
    return group


def test_batch_png_svg_manifest_and_resume(backend, registered, tmp_path):
    from PIL import Image

    out = tmp_path / "labels"
    report = qr_batch(backend, Selection(group="meters-eu", batch_tag="B-1"), out, fmt="both")
    assert (report.devices, report.verified, report.written, report.unchanged) == (4, 4, 8, 0)
    rows = json.loads((out / "manifest.json").read_text())
    assert {r["deviceSn"] for r in rows} == {f"SN-{i:06d}" for i in range(1, 5)}
    csv_head = (out / "manifest.csv").read_text(encoding="utf-8-sig").splitlines()[0]
    assert csv_head.startswith("deviceSn,sn,batchTag,payload,shortCode")
    for r in rows:
        p = parse_payload(r["payload"])
        dev = backend.get(r["sn"])
        assert (p.group_id, p.device_sn, p.sn, p.batch_tag) == ("meters-eu", dev.device_sn,
                                                                dev.sn, "B-1")  # fmt: skip
        assert r["shortCode"] == p.short_code and check_short_code(r["shortCode"])
        with Image.open(out / r["png"]) as img:
            assert img.mode == "1"
            assert decode_texts(img) == [r["payload"]]
        svg = (out / r["svg"]).read_text()
        assert svg.startswith("<?xml") and r["deviceSn"] in svg and "<path" in svg
    secret = backend.get_group("meters-eu").group_secret
    assert secret
    for f in out.iterdir():
        assert secret.encode() not in f.read_bytes()

    mtimes = {f.name: f.stat().st_mtime_ns for f in out.iterdir() if f.suffix in (".png", ".svg")}
    again = qr_batch(backend, Selection(group="meters-eu", batch_tag="B-1"), out, fmt="both")
    assert (again.written, again.unchanged) == (0, 8)
    assert mtimes == {n: (out / n).stat().st_mtime_ns for n in mtimes}


def test_batch_errors_write_nothing(backend, registered, tmp_path):
    out = tmp_path / "none"
    with pytest.raises(InvalidArgumentError, match="colour"):
        qr_batch(backend, Selection(group="meters-eu"), out,
                 options=QrOptions(template="{deviceSn}-{colour}"))  # fmt: skip
    with pytest.raises(NotFoundError, match="NOPE-1"):
        qr_batch(backend, Selection(group="meters-eu", device_sns=("NOPE-1",)), out)
    with pytest.raises(InvalidArgumentError, match="too long"):
        qr_batch(backend, Selection(group="meters-eu"), out,
                 options=QrOptions(ec="H", template="{deviceSn}" + "x" * 1400))  # fmt: skip
    with pytest.raises(InvalidArgumentError, match="too small"):
        qr_batch(backend, Selection(group="meters-eu"), out, options=QrOptions(size_mm=1, dpi=100))
    assert not out.exists()


def _label(text: str, caption: str = ""):
    return to_image(encode(text), QrOptions(module_px=4), caption).convert("L")


def test_scan_several_labels_one_rotated(backend, registered, tmp_path):
    from PIL import Image

    out = tmp_path / "labels"
    qr_batch(backend, Selection(group="meters-eu"), out)
    rows = json.loads((out / "manifest.json").read_text())[:3]
    labels = [Image.open(out / r["png"]).convert("L") for r in rows]
    labels[1] = labels[1].rotate(90, expand=True)
    sheet = Image.new("L", (sum(i.width for i in labels) + 200, 600), 255)
    x = 40
    for img in labels:
        sheet.paste(img, (x, 60))
        x += img.width + 60
    photo = tmp_path / "photo.jpg"
    sheet.convert("RGB").save(photo, quality=90)
    (result,) = scan_images(backend, [photo])
    assert result.ok, result.problems
    assert sorted(c.device.device_sn for c in result.codes) == sorted(r["deviceSn"] for r in rows)


def test_scan_a_skewed_tilted_photo(backend, registered, tmp_path):
    from PIL import Image

    out = tmp_path / "labels"
    qr_batch(backend, Selection(group="meters-eu"), out)
    row = json.loads((out / "manifest.json").read_text())[0]
    label = Image.open(out / row["png"]).convert("L")
    # a photo taken at an angle: sheared by 20 %, tilted 17 degrees, then blurred by JPEG
    sheared = label.transform(
        (int(label.width * 1.25), label.height), Image.Transform.AFFINE,
        (1, 0.2, -label.height * 0.2, 0, 1, 0), fillcolor=255,
    )  # fmt: skip
    photo = Image.new("L", (sheared.width + 200, sheared.height + 200), 255)
    photo.paste(sheared.rotate(17, expand=True, fillcolor=255), (60, 60))
    path = tmp_path / "skewed.jpg"
    photo.convert("RGB").save(path, quality=80)
    (result,) = scan_images(backend, [path])
    assert result.ok, result.problems
    assert [c.device.device_sn for c in result.codes] == [row["deviceSn"]]


def test_scan_problems(backend, registered, tmp_path):
    from PIL import Image

    blank = tmp_path / "blank.png"
    Image.new("L", (300, 300), 255).save(blank)
    foreign = tmp_path / "foreign.png"
    _label("https://example.com/not-ours").save(foreign)
    unknown = tmp_path / "unknown.png"
    _label(Payload("meters-eu", "GHOST-0001").text).save(unknown)
    broken = tmp_path / "broken.png"
    broken.write_bytes(b"not an image")
    results = scan_images(backend, [blank, foreign, unknown, broken])
    assert [r.ok for r in results] == [False] * 4
    assert results[0].problems == ["no QR code found"]
    assert "not an enosprov payload" in results[1].problems[0]
    assert "unknown device meters-eu/GHOST-0001" in results[2].problems[0]
    assert "cannot read" in results[3].problems[0]


def test_cli_qr_batch_and_scan(cli, backend, registered, tmp_path):
    out = tmp_path / "cli"
    data = cli.json("qr", "batch", "--group", "meters-eu", "--device-sn", "SN-000002",
                    "--label-format", "svg", "--ec", "Q", "--size-mm", "15", "--dpi", "300",
                    "--out", str(out))["data"]  # fmt: skip
    assert data["devices"] == 1 and data["written"] == 1
    assert (out / "SN-000002.svg").exists() and not (out / "SN-000002.png").exists()
    bad = cli("qr", "batch", "--group", "meters-eu", "--payload-template", "{nope}",
              "--out", str(tmp_path / "bad"), "--json")  # fmt: skip
    assert bad.exit_code == 1 and "nope" in json.loads(bad.stdout)["error"]["message"]
    assert not (tmp_path / "bad").exists()
    png = tmp_path / "one.png"
    _label(Payload("meters-eu", "SN-000003").text).save(png)
    scanned = cli.json("qr", "scan", str(png))["data"]
    assert scanned["ok"] and scanned["images"][0]["codes"][0]["device"]["deviceSn"] == "SN-000003"
    blank = tmp_path / "blank.png"
    _label("other").save(blank)
    result = cli("qr", "scan", str(png), str(blank))
    assert result.exit_code == 1 and "not an enosprov payload" in result.stderr
