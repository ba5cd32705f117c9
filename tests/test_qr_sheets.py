"""QR label sheets: PDF (rendered back and decoded) and ZPL (parsed back), label templates."""

from __future__ import annotations

import json
import os
import re

import pytest
from conftest import meters_rows

from enosprov import api
from enosprov.burn.export import Selection
from enosprov.errors import InvalidArgumentError
from enosprov.qr.batch import qr_batch
from enosprov.qr.labels import TEMPLATES_DIR, load_template
from enosprov.qr.payload import parse_payload
from enosprov.qr.render import QrOptions, read_qr
from enosprov.qr.zpl import zpl_escape, zpl_unescape

TAG = "B^~_1"  # every ZPL special character in the batch tag


@pytest.fixture
def registered30(backend, group, write_csv):
    api.register_csv(backend, write_csv(meters_rows(30)), group.group_id, batch_tag=TAG)
    return group


def _pdfium():
    try:
        import pypdfium2
    except ImportError as exc:  # pragma: no cover
        pytest.skip(f"pypdfium2 is needed to render PDF pages: {exc}")
    return pypdfium2


def _pages(path, dpi=200):
    """[(decoded QR texts with their centre, page text)] per page."""
    pdfium = _pdfium()
    pdf = pdfium.PdfDocument(str(path))
    out = []
    try:
        for i in range(len(pdf)):
            page = pdf[i]
            img = page.render(scale=dpi / 72).to_pil().convert("L")
            codes = []
            for b in read_qr(img):
                p = b.position
                cx = (p.top_left.x + p.bottom_right.x) / 2 / img.width
                cy = (p.top_left.y + p.bottom_right.y) / 2 / img.height
                codes.append((b.text, cx, cy))
            out.append((codes, page.get_textpage().get_text_range()))
    finally:
        pdf.close()
    return out


def registration_order(backend, group_id: str, rows: list[str]) -> list[str]:
    """The deviceSns in the order they were registered: on the local store the batches' rows in
    the order they were given (``rows``); EnOS records a createTime per device (the EnOS backend
    registers a batch's rows in parallel), ties broken by sn."""
    from enosprov.backends.local import LocalBackend
    from enosprov.domain.models import SearchQuery

    if isinstance(backend, LocalBackend):
        return rows
    devices = list(backend.iter_devices(SearchQuery(group_id=group_id)))
    assert sorted(d.device_sn for d in devices) == sorted(rows)
    return [d.device_sn for d in sorted(devices, key=lambda d: (d.create_time, d.sn))]


def test_pdf_a4_sheet_decodes_and_manifest_positions(backend, registered30, tmp_path):
    out = tmp_path / "sheet"
    report = qr_batch(backend, Selection(group="meters-eu"), out, fmt="pdf")
    assert (report.devices, report.verified, report.written) == (30, 30, 1)
    assert report.document == str(out / "labels-meters-eu.pdf")  # named after the selection
    rows = json.loads((out / "manifest.json").read_text())
    assert len(rows) == 30
    # registration order: the sheet starts with the first unit registered
    expected = registration_order(backend, "meters-eu", [f"SN-{i:06d}" for i in range(1, 31)])
    assert [r["deviceSn"] for r in rows] == expected
    assert [(r["page"], r["row"], r["column"]) for r in rows[:4]] == [
        (1, 1, 1), (1, 1, 2), (1, 1, 3), (1, 2, 1)
    ]  # fmt: skip
    pages = _pages(out / "labels-meters-eu.pdf")
    assert len(pages) == 2
    tpl = load_template("a4-3x8-70x37")
    by_payload = {r["payload"]: r for r in rows}
    decoded = set()
    for number, (codes, text) in enumerate(pages, 1):
        for payload, cx, cy in codes:
            r = by_payload[payload]
            assert r["file"] == "labels-meters-eu.pdf" and r["page"] == number
            # the code lies inside the label cell the manifest names
            x0, y0 = tpl.origin(r["row"] - 1, r["column"] - 1)
            assert x0 <= cx * tpl.page_w <= x0 + tpl.label_w
            assert y0 <= cy * tpl.page_h <= y0 + tpl.label_h
            decoded.add(payload)
        for r in rows:
            if r["page"] == number:
                assert r["deviceSn"] in text and r["shortCode"] in text
    assert decoded == set(by_payload)
    assert [len(c) for c, _ in pages] == [24, 6]
    first = min(pages[0][0], key=lambda c: (round(c[2], 2), c[1]))  # top row, leftmost
    assert parse_payload(first[0]).device_sn == expected[0]
    for r in rows:
        p = parse_payload(r["payload"])
        assert p.batch_tag == TAG and p.device_sn == r["deviceSn"]
    # re-run: identical bytes, not rewritten
    again = qr_batch(backend, Selection(group="meters-eu"), out, fmt="pdf")
    assert (again.written, again.unchanged) == (0, 1)


@pytest.mark.parametrize(
    ("name", "pages"), [("letter-3x10", 1), ("thermal-62mm", 4), ("thermal-4x6in", 4)]
)
def test_pdf_other_templates(store, tmp_path, write_csv, name, pages):
    from conftest import make_group

    make_group(store)
    api.register_csv(store, write_csv(meters_rows(4)), "meters-eu", batch_tag="B-1")
    out = tmp_path / name
    qr_batch(store, Selection(group="meters-eu"), out, fmt="pdf", template=name)
    rows = json.loads((out / "manifest.json").read_text())
    got = _pages(out / "labels-meters-eu.pdf", dpi=150 if name != "thermal-4x6in" else 100)
    assert len(got) == pages
    assert sorted(t for codes, _ in got for t, _, _ in codes) == sorted(r["payload"] for r in rows)
    if name != "letter-3x10":
        assert [r["page"] for r in sorted(rows, key=lambda r: r["page"])] == [1, 2, 3, 4]


def parse_zpl(text: str) -> list[dict]:
    """Labels of a ZPL document: size, QR magnification/data, text fields (unescaped)."""
    labels = re.findall(r"\^XA\n(.*?)\^XZ\n", text, re.S)
    assert text == "".join(f"^XA\n{body}^XZ\n" for body in labels)  # nothing outside labels
    out = []
    for body in labels:
        qr = re.findall(r"\^FO(\d+),(\d+)\^BQN,2,(\d+)\^FH_\^FD([HQML])A,([^^~]*)\^FS", body)
        texts = re.findall(r"\^FO\d+,\d+\^A0N,\d+,\d+\^FH_\^FD([^^~]*)\^FS", body)
        assert len(qr) == 1 and "^CI28" in body
        assert body.count("^FD") == 1 + len(texts) == body.count("^FH_")
        out.append({
            "pw": int(re.search(r"\^PW(\d+)", body).group(1)),
            "ll": int(re.search(r"\^LL(\d+)", body).group(1)),
            "mag": int(qr[0][2]), "ec": qr[0][3],
            "payload": zpl_unescape(qr[0][4]), "raw": qr[0][4],
            "texts": [zpl_unescape(t) for t in texts],
        })  # fmt: skip
    return out


def test_zpl_parses_back_and_escapes(backend, registered30, tmp_path):
    out = tmp_path / "zpl"
    sel = Selection(group="meters-eu", device_sns=tuple(f"SN-{i:06d}" for i in range(1, 11)))
    options = QrOptions(ec="Q", template="x^~_{deviceSn}|{batchTag}")
    report = qr_batch(backend, sel, out, fmt="zpl", options=options)
    assert (report.devices, report.verified, report.written) == (10, 10, 1)
    assert re.fullmatch(r"labels-SN-0000\d\d-and-9-more\.zpl", os.path.basename(report.document))
    text = (out / report.document).read_text("ascii")
    labels = parse_zpl(text)
    rows = json.loads((out / "manifest.json").read_text())
    assert [lb["payload"] for lb in labels] == [r["payload"] for r in rows]
    assert [r["page"] for r in rows] == list(range(1, 11))
    tpl = load_template("thermal-62mm", "zpl")
    for lb, r in zip(labels, rows):
        assert lb["payload"].startswith("x^~_") and "^" not in lb["raw"] and lb["ec"] == "Q"
        assert lb["pw"] == round(62 / 25.4 * tpl.dpi) and lb["ll"] == round(29 / 25.4 * tpl.dpi)
        assert lb["texts"][0] == r["deviceSn"] and TAG in lb["texts"]
        assert 1 <= lb["mag"] <= 10


def test_zpl_escape_round_trip():
    for s in ["plain", "^~_", "a_5Fb", "Ünï 序列号", "x\ny\t", "%41_41"]:
        e = zpl_escape(s)
        assert e.isascii() and not set(e) & set("^~\n\t") and zpl_unescape(e) == s
    assert zpl_escape("A^B~C_D") == "A_5EB_7EC_5FD"


def _write_tpl(tmp_path, change):
    text = (TEMPLATES_DIR / "a4-3x8-70x37.toml").read_text()
    path = tmp_path / "bad.toml"
    path.write_text(change(text))
    return path


@pytest.mark.parametrize(
    ("change", "match"),
    [
        (lambda t: t.replace('"{groupId}"', '"{colour}"'), r"text\.lines.*colour"),
        (lambda t: t.replace("[label]", "[label]\ncolour = 1"), r"label\.colour"),
        (lambda t: t.replace("rows = 8", "rows = 9"), "taller than"),
        (lambda t: t.replace("columns = 3", "columns = 4"), "wider than"),
        (lambda t: t.replace("size = 33 ", "size = 40 "), "does not fit"),
        (lambda t: t.replace('font = "Helvetica"', 'font = "Comic"'), "standard PDF font"),
    ],
)
def test_bad_templates_write_nothing(store, tmp_path, write_csv, change, match):
    from conftest import make_group

    make_group(store)
    api.register_csv(store, write_csv(meters_rows(2)), "meters-eu")
    path = _write_tpl(tmp_path, change)
    out = tmp_path / "none"
    for fmt in ("pdf", "zpl"):
        with pytest.raises(InvalidArgumentError, match=match) as err:
            qr_batch(store, Selection(group="meters-eu"), out, fmt=fmt, template=str(path))
        assert str(path) in str(err.value)
    assert not out.exists()


def test_cli_pdf_and_bad_template(store_path, tmp_path, write_csv):
    from conftest import Cli, make_group

    from enosprov.backends.local import LocalBackend

    be = LocalBackend(store_path)
    make_group(be)
    api.register_csv(be, write_csv(meters_rows(3)), "meters-eu")
    be.close()
    cli = Cli(store_path)
    out = tmp_path / "cli"
    data = cli.json("qr", "batch", "--group", "meters-eu", "--label-format", "zpl", "--out", str(out),
                    "--label-template", "thermal-4x6in")["data"]  # fmt: skip
    assert data["devices"] == 3 and (out / "labels-meters-eu.zpl").exists()
    bad = _write_tpl(tmp_path, lambda t: t.replace("rows = 8", "rows = 20"))
    res = cli("qr", "batch", "--group", "meters-eu", "--label-format", "pdf", "--out",
              str(tmp_path / "bad-out"), "--label-template", str(bad))  # fmt: skip
    assert res.exit_code != 0 and "taller than" in (res.stdout + res.stderr)
    assert not (tmp_path / "bad-out").exists()


def test_worker_pool_gives_the_same_document(store, tmp_path, write_csv, monkeypatch):
    from conftest import make_group

    from enosprov.qr import sheet

    make_group(store)
    api.register_csv(store, write_csv(meters_rows(30)), "meters-eu")
    serial = qr_batch(store, Selection(group="meters-eu"), tmp_path / "a", fmt="zpl")
    monkeypatch.setattr(sheet, "CHUNK", 4)  # 30 labels: 8 chunks through the pool
    monkeypatch.setattr(sheet.os, "cpu_count", lambda: 2)
    pooled = qr_batch(store, Selection(group="meters-eu"), tmp_path / "b", fmt="zpl")
    assert serial.verified == pooled.verified == 30
    assert (tmp_path / "a" / "labels-meters-eu.zpl").read_bytes() == (
        tmp_path / "b" / "labels-meters-eu.zpl"
    ).read_bytes()
    assert (tmp_path / "a" / "manifest.csv").read_bytes() == (
        tmp_path / "b" / "manifest.csv"
    ).read_bytes()


# -- order, file names, --force, --per-device -----------------------------------------------------


def _rows(numbers) -> str:
    from conftest import METERS_HEADER

    lines = [f"SN-{i:06d},Meter {i},+08:00,{40 + i},single,2026-11-01,Hall 1" for i in numbers]
    return "\n".join([METERS_HEADER, *lines]) + "\n"


@pytest.fixture
def scrambled(backend, group, write_csv):
    """Two batches registered in an order that is not the deviceSn order: 5, 2, 9 then 1, 7."""
    api.register_csv(backend, write_csv(_rows([5, 2, 9]), name="a.csv"), "meters-eu",
                     batch_tag="B-1")  # fmt: skip
    api.register_csv(backend, write_csv(_rows([1, 7]), name="b.csv"), "meters-eu",
                     batch_tag="B-2")  # fmt: skip
    return group


def _zpl_sns(path) -> list[str]:
    """The deviceSn of every label of a ZPL file, in order (from its ^FD payload)."""
    return [parse_payload(lb["payload"]).device_sn for lb in parse_zpl(path.read_text("ascii"))]


def test_label_order_registration_device_sn_csv(backend, scrambled, tmp_path, write_csv):
    sel = Selection(group="meters-eu")
    # batch order, then the order of the rows
    rows = ["SN-000005", "SN-000002", "SN-000009", "SN-000001", "SN-000007"]
    expected = registration_order(backend, "meters-eu", rows)
    zpl = qr_batch(backend, sel, tmp_path / "reg", fmt="zpl")
    got = _zpl_sns(tmp_path / "reg" / "labels-meters-eu.zpl")
    assert got == expected and zpl.order == "registration"
    pdf = qr_batch(backend, sel, tmp_path / "pdf", fmt="pdf")
    rows = json.loads((tmp_path / "pdf" / "manifest.json").read_text())
    assert [r["deviceSn"] for r in rows] == expected and pdf.devices == 5
    assert (rows[0]["page"], rows[0]["row"], rows[0]["column"]) == (1, 1, 1)
    codes = _pages(tmp_path / "pdf" / "labels-meters-eu.pdf", dpi=120)[0][0]
    top_left = min(codes, key=lambda c: (round(c[2], 2), c[1]))
    assert parse_payload(top_left[0]).device_sn == expected[0]

    qr_batch(backend, sel, tmp_path / "sn", fmt="zpl", order="device-sn")
    got = _zpl_sns(tmp_path / "sn" / "labels-meters-eu.zpl")
    assert got == ["SN-000001", "SN-000002", "SN-000005", "SN-000007", "SN-000009"]

    picks = write_csv("deviceSn\nSN-000007\nSN-000002\nSN-000009\n", name="picks.csv")
    by_csv = Selection(group="meters-eu", csv_path=str(picks))
    qr_batch(backend, by_csv, tmp_path / "csv", fmt="zpl", order="csv")
    got = _zpl_sns(tmp_path / "csv" / "labels-picks.zpl")
    assert got == ["SN-000007", "SN-000002", "SN-000009"]
    with pytest.raises(InvalidArgumentError, match="--order csv needs a --csv"):
        qr_batch(backend, sel, tmp_path / "x", fmt="zpl", order="csv")
    with pytest.raises(InvalidArgumentError, match="unknown order"):
        qr_batch(backend, sel, tmp_path / "x", fmt="zpl", order="random")
    assert not (tmp_path / "x").exists()


def test_runs_never_overwrite_each_others_documents(store, tmp_path, write_csv):
    from conftest import make_group

    make_group(store)
    api.register_csv(store, write_csv(meters_rows(3)), "meters-eu", batch_tag="B-1")
    api.register_csv(store, write_csv(meters_rows(2, start=4)), "meters-eu", batch_tag="B-2")
    out = tmp_path / "labels"
    b1 = qr_batch(store, Selection(group="meters-eu", batch_tag="B-1"), out, fmt="pdf")
    b2 = qr_batch(store, Selection(group="meters-eu", batch_tag="B-2"), out, fmt="pdf")
    one = qr_batch(store, Selection(group="meters-eu", device_sns=("SN-000002",)), out, fmt="pdf")
    several = qr_batch(store, Selection(group="meters-eu", device_sns=("SN-000003", "SN-000001")),
                       out, fmt="zpl")  # fmt: skip
    names = [b1.document, b2.document, one.document, several.document]
    assert [os.path.basename(n) for n in names] == [
        "labels-B-1.pdf", "labels-B-2.pdf", "labels-SN-000002.pdf",
        "labels-SN-000001-and-1-more.zpl",
    ]  # fmt: skip
    assert all(os.path.isfile(n) for n in names)
    rows = json.loads((out / "manifest.json").read_text())  # the last run's labels
    assert [(r["deviceSn"], r["file"]) for r in rows] == [
        ("SN-000001", "labels-SN-000001-and-1-more.zpl"),
        ("SN-000003", "labels-SN-000001-and-1-more.zpl"),
    ]
    # Another run whose labels differ (here: another error-correction level) is refused.
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    with pytest.raises(
        InvalidArgumentError, match=r"labels-B-1\.pdf already holds other labels"
    ) as e:
        qr_batch(store, Selection(group="meters-eu", batch_tag="B-1"), out, fmt="pdf",
                 options=QrOptions(ec="Q"))  # fmt: skip
    assert "--force" in e.value.hint
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before  # nothing written
    forced = qr_batch(store, Selection(group="meters-eu", batch_tag="B-1"), out, fmt="pdf",
                      options=QrOptions(ec="Q"), force=True)  # fmt: skip
    assert forced.written == 1
    rows = json.loads((out / "manifest.json").read_text())
    assert {r["ecLevel"] for r in rows} == {"Q"} and {r["file"] for r in rows} == {"labels-B-1.pdf"}
    # The same run again: already correct, nothing to force.
    again = qr_batch(store, Selection(group="meters-eu", batch_tag="B-1"), out, fmt="pdf",
                     options=QrOptions(ec="Q"))  # fmt: skip
    assert (again.written, again.unchanged) == (0, 1)


def test_per_device_files(backend, group, tmp_path, write_csv):
    api.register_csv(backend, write_csv(meters_rows(3)), "meters-eu", batch_tag="B-1")
    out = tmp_path / "units"
    pdf = qr_batch(backend, Selection(group="meters-eu"), out, fmt="pdf", per_device=True,
                   template="thermal-62mm")  # fmt: skip
    zpl = qr_batch(backend, Selection(group="meters-eu"), out, fmt="zpl", per_device=True)
    assert (pdf.written, zpl.written, pdf.document) == (3, 3, "")
    rows = json.loads((out / "manifest.json").read_text())
    assert [r["file"] for r in rows] == [f"{r['deviceSn']}.zpl" for r in rows]
    for r in rows:
        (label,) = parse_zpl((out / r["file"]).read_text("ascii"))
        assert label["payload"] == r["payload"]
        ((codes, text),) = _pages(out / f"{r['deviceSn']}.pdf", dpi=200)
        assert [c[0] for c in codes] == [r["payload"]] and r["deviceSn"] in text
    assert sorted(p.name for p in out.iterdir() if p.suffix in (".pdf", ".zpl")) == sorted(
        f"SN-{i:06d}{ext}" for i in range(1, 4) for ext in (".pdf", ".zpl")
    )
    again = qr_batch(backend, Selection(group="meters-eu"), out, fmt="zpl", per_device=True)
    assert (again.written, again.unchanged) == (0, 3)
    with pytest.raises(InvalidArgumentError, match="already hold other labels") as err:
        qr_batch(backend, Selection(group="meters-eu"), out, fmt="zpl", per_device=True,
                 template="thermal-4x6in")  # fmt: skip
    assert all(f"SN-00000{i}.zpl" in err.value.message for i in (1, 2, 3))


def test_cli_order_force_per_device(cli, store, tmp_path, write_csv):
    from conftest import make_group

    make_group(store)
    api.register_csv(store, write_csv(_rows([3, 1, 2])), "meters-eu", batch_tag="B-1")
    out = tmp_path / "cli"
    base = ["qr", "batch", "--group", "meters-eu", "--label-format", "zpl", "--out", str(out)]
    data = cli.json(*base)["data"]
    assert data["order"] == "registration" and data["document"].endswith("labels-meters-eu.zpl")
    got = _zpl_sns(out / "labels-meters-eu.zpl")
    assert got == ["SN-000003", "SN-000001", "SN-000002"]
    refused = cli.json(*base, "--order", "device-sn", expect=1)
    assert "already holds other labels" in refused["error"]["message"]
    cli.json(*base, "--order", "device-sn", "--force")
    got = _zpl_sns(out / "labels-meters-eu.zpl")
    assert got == ["SN-000001", "SN-000002", "SN-000003"]
    per = cli.json(*base, "--per-device")["data"]
    assert per["files"] == 3 and (out / "SN-000002.zpl").is_file()
    assert cli.json(*base, "--order", "csv", expect=1)["error"]["code"] == "invalid_argument"


def test_replace_label_is_named_after_the_new_unit(backend, group, tmp_path, write_csv):
    from enosprov.core.replacement import Outputs, replace_device

    api.register_csv(backend, write_csv(meters_rows(3)), "meters-eu")
    out = tmp_path / "replacements" / "labels"
    outputs = Outputs(label_dir=out, label_format="pdf", label_template="thermal-62mm")
    replace_device(backend, "SN-000001", "SN-900001", outputs=outputs)
    first = (out / "SN-900001.pdf").read_bytes()
    report = replace_device(backend, "SN-000002", "SN-900002", outputs=outputs)
    assert report.labels[0].files == [str(out / "SN-900002.pdf")]
    assert (out / "SN-900001.pdf").read_bytes() == first  # the other unit's label stays
    ((codes, _),) = _pages(out / "SN-900002.pdf", dpi=200)
    assert [parse_payload(c[0]).device_sn for c in codes] == ["SN-900002"]
    rows = json.loads((out / "manifest.json").read_text())
    assert [(r["deviceSn"], r["file"]) for r in rows] == [("SN-900002", "SN-900002.pdf")]
    zpl = Outputs(label_dir=out, label_format="zpl")
    replace_device(backend, "SN-000003", "SN-900003", outputs=zpl)
    assert (out / "SN-900003.zpl").is_file() and not list(out.glob("labels*"))


def test_a_template_line_whose_fields_are_all_empty_is_left_out():
    """The label of a device not in EnOS yet carries no sn (docs/sync.md): no bare "sn" line;
    nor a bare "batch" line for a device without a batch tag. Literal lines stay."""
    from enosprov.qr.labels import load_template

    tpl = load_template("thermal-4x6in", "pdf")
    full = {"deviceSn": "SN-1", "shortCode": "ABCD-EFGH", "batchTag": "B-7", "groupId": "g",
            "sn": "44b16a03fa000000"}  # fmt: skip
    assert tpl.text_lines(full)[-2:] == ["group g", "sn 44b16a03fa000000"]
    offline = tpl.text_lines({**full, "sn": "", "batchTag": ""})
    assert offline == ["SN-1", "ABCD-EFGH", "group g"]
