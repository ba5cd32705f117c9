"""QR label sheets: PDF (rendered back and decoded) and ZPL (parsed back), label templates."""

from __future__ import annotations

import json
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


def test_pdf_a4_sheet_decodes_and_manifest_positions(backend, registered30, tmp_path):
    out = tmp_path / "sheet"
    report = qr_batch(backend, Selection(group="meters-eu"), out, fmt="pdf")
    assert (report.devices, report.verified, report.written) == (30, 30, 1)
    assert report.document == str(out / "labels.pdf")
    rows = json.loads((out / "manifest.json").read_text())
    assert len(rows) == 30
    pages = _pages(out / "labels.pdf")
    assert len(pages) == 2
    tpl = load_template("a4-3x8-70x37")
    by_payload = {r["payload"]: r for r in rows}
    decoded = set()
    for number, (codes, text) in enumerate(pages, 1):
        for payload, cx, cy in codes:
            r = by_payload[payload]
            assert r["file"] == "labels.pdf" and r["page"] == number
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
    got = _pages(out / "labels.pdf", dpi=150 if name != "thermal-4x6in" else 100)
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
    text = (out / "labels.zpl").read_text("ascii")
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
    data = cli.json("qr", "batch", "--group", "meters-eu", "--format", "zpl", "--out", str(out),
                    "--template", "thermal-4x6in")["data"]  # fmt: skip
    assert data["devices"] == 3 and (out / "labels.zpl").exists()
    bad = _write_tpl(tmp_path, lambda t: t.replace("rows = 8", "rows = 20"))
    res = cli("qr", "batch", "--group", "meters-eu", "--format", "pdf", "--out",
              str(tmp_path / "bad-out"), "--template", str(bad))  # fmt: skip
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
    assert (tmp_path / "a" / "labels.zpl").read_bytes() == (
        tmp_path / "b" / "labels.zpl"
    ).read_bytes()
    assert (tmp_path / "a" / "manifest.csv").read_bytes() == (
        tmp_path / "b" / "manifest.csv"
    ).read_bytes()
