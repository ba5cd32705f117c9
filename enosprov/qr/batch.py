"""`qr batch`: one label per selected device (PNG and/or SVG), verified, atomic, resumable.

Mirrors `burn export`: the selection is checked first (unknown deviceSns, an empty batch), then
a first pass encodes every payload (a template field or a payload too long for the symbol stops
the run before any file is touched). The second pass renders each label, decodes it back and
compares it with its payload, and only then writes its files atomically; a file already correct
is not rewritten. One label at a time is held in memory. The manifest (manifest.csv and
manifest.json) lists deviceSn, sn, payload, short code and file names, to reprint one label.

The output folder is handled as by `burn export` (enosprov.burn.export.OutputFolder): file names
too long for the file system are refused in the first pass, temporary files of killed runs are
removed, and the previous manifest is removed before the first file changes, so that it never
describes files that are no longer what it says. manifest.csv is spreadsheet-safe (csvsafe)
unless ``raw_csv``.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path

from ..atomic import AtomicFile
from ..burn.export import (
    OutputFolder,
    Selection,
    check_file_names,
    safe_filename,
    select_devices,
    write_csv_manifest,
)
from ..errors import InvalidArgumentError
from ..journal import Journal, journal_or_null
from ..models import Device
from .payload import Payload, render_payload
from .render import QrOptions, encode, png_bytes, to_image, to_svg, verify_png

FORMATS = ("png", "svg", "both")
MANIFEST_CSV = "manifest.csv"
MANIFEST_JSON = "manifest.json"
MANIFEST_COLUMNS = ("deviceSn", "sn", "batchTag", "payload", "shortCode", "ecLevel", "modules",
                    "png", "svg")  # fmt: skip


@dataclass
class QrReport:
    out_dir: str
    format: str
    devices: int = 0
    written: int = 0  # files written
    unchanged: int = 0  # files already correct
    verified: int = 0  # symbols decoded back and compared
    manifest: list[str] = field(default_factory=list)
    seconds: float = 0.0
    document: str = ""  # labels.pdf / labels.zpl of a sheet format

    def to_dict(self) -> dict:
        return {
            "outDir": self.out_dir,
            "format": self.format,
            "devices": self.devices,
            "written": self.written,
            "unchanged": self.unchanged,
            "verified": self.verified,
            "manifest": self.manifest,
            "seconds": round(self.seconds, 3),
            **({"document": self.document} if self.document else {}),
        }


def payload_for(group_id: str, item: Device | str, batch_tag: str | None) -> Payload:
    if isinstance(item, Device):
        return Payload(group_id, item.device_sn, item.sn, item.batch_tag_text)
    return Payload(group_id, item, None, batch_tag)


def caption_for(payload: Payload) -> str:
    return f"{payload.device_sn}  {payload.short_code}"


def qr_batch(
    backend,
    selection: Selection,
    out_dir: str | Path,
    *,
    fmt: str = "png",
    options: QrOptions | None = None,
    progress=None,
    template=None,
    journal: Journal | None = None,
    raw_csv: bool = False,
) -> QrReport:
    """Write one label per selected device into ``out_dir`` plus the manifest.

    ``fmt`` "pdf" or "zpl" writes one document of labels laid out by ``template`` (see
    :func:`enosprov.qr.sheet.qr_sheet`). manifest.csv is spreadsheet-safe (a batch tag
    starting with ``=`` gets a leading ``'``) unless ``raw_csv``. Appends one "label-export"
    record to ``journal``: the devices labelled, the folder, the format and the label template
    (pdf/zpl).
    """
    if fmt in ("pdf", "zpl"):
        return _sheet(
            backend, selection, out_dir, fmt, template, options, progress, journal, raw_csv
        )
    t0 = time.perf_counter()
    if fmt not in FORMATS:
        raise InvalidArgumentError(
            f"unknown format {fmt!r}", hint="one of: " + ", ".join((*FORMATS, "pdf", "zpl"))
        )
    options = options or QrOptions()  # validates the template up front
    out_dir = Path(out_dir)
    group = backend.get_group(selection.group)
    items = select_devices(backend, group, selection)

    def payloads():
        for item in items():
            p = payload_for(group.group_id, item, selection.batch_tag)
            yield p, render_payload(p, options.template)

    extensions = {"png": (".png",), "svg": (".svg",), "both": (".png", ".svg")}[fmt]

    def first_pass():
        """Every payload fits its symbol at this size; (deviceSn, file name) of every file."""
        for p, text in payloads():
            symbol = encode(text, options.ec, p.device_sn)
            options.scale(symbol.size, p.device_sn)
            base = safe_filename(p.device_sn)
            yield from ((p.device_sn, base + ext) for ext in extensions)

    # Nothing is written before the first pass is through.
    check_file_names(out_dir, first_pass(), files=(MANIFEST_CSV, MANIFEST_JSON))
    folder = OutputFolder(out_dir, (MANIFEST_CSV, MANIFEST_JSON))
    folder.open()
    report = QrReport(str(out_dir), fmt)
    manifest = []

    def store(name: str, data: bytes) -> None:
        if folder.store(name, data) is None:  # a label holds no secret
            report.written += 1
        else:
            report.unchanged += 1

    detail = _detail(out_dir, fmt, None, options)
    with journal_or_null(journal).begin(
        "label-export", group_id=group.group_id, detail=detail
    ) as rec:
        try:
            for p, text in payloads():
                symbol = encode(text, options.ec, p.device_sn)
                caption = caption_for(p)
                base = safe_filename(p.device_sn)
                png = png_bytes(to_image(symbol, options, caption, p.device_sn))
                verify_png(png, text, p.device_sn)  # before anything of this device is written
                report.verified += 1
                names = {"png": "", "svg": ""}
                if fmt in ("png", "both"):
                    names["png"] = base + ".png"
                    store(names["png"], png)
                if fmt in ("svg", "both"):
                    names["svg"] = base + ".svg"
                    store(names["svg"], to_svg(symbol, options, caption))
                manifest.append(
                    {"deviceSn": p.device_sn, "sn": p.sn or "", "batchTag": p.batch_tag or "",
                     "payload": text, "shortCode": p.short_code, "ecLevel": options.ec,
                     "modules": symbol.size, **names}
                )  # fmt: skip
                report.devices += 1
                if progress and report.devices % 100 == 0:
                    progress("qr", report.devices, None)
            report.manifest = _write_manifest(out_dir, manifest, raw_csv=raw_csv)
        finally:  # the devices labelled so far, even when it stopped early
            if journal is not None:
                _record_labels(rec, manifest)
            rec.detail.update(written=report.written, unchanged=report.unchanged)
    report.seconds = time.perf_counter() - t0
    return report


def _record_labels(rec, rows: list[dict]) -> None:
    """The labelled devices of a manifest, and their "labelled" marks for batch monitoring."""
    rec.extend((r["sn"], r["deviceSn"]) for r in rows)
    for r in rows:
        rec.mark("labelled", r["sn"], r["deviceSn"], r.get("batchTag") or None)


def _detail(out_dir, fmt: str, template: str | None, options: QrOptions | None) -> dict:
    detail: dict = {"outDir": str(out_dir), "format": fmt, "template": template}
    if options is not None and options.template:
        detail["payloadTemplate"] = options.template
    return detail


def _sheet(
    backend, selection, out_dir, fmt, template, options, progress, journal, raw_csv=False
) -> QrReport:
    """A pdf/zpl document of labels, journaled from the manifest it wrote."""
    from .labels import LabelTemplate, load_template
    from .sheet import qr_sheet

    tpl = template if isinstance(template, LabelTemplate) else load_template(template, fmt)
    group = backend.get_group(selection.group)
    detail = _detail(out_dir, fmt, tpl.name or tpl.path, options)
    with journal_or_null(journal).begin(
        "label-export", group_id=group.group_id, detail=detail
    ) as rec:
        report = qr_sheet(backend, selection, out_dir, fmt=fmt, template=tpl, options=options,
                          progress=progress, raw_csv=raw_csv)  # fmt: skip
        rec.detail.update(written=report.written, unchanged=report.unchanged)
        if journal is not None:
            rows = json.loads(Path(report.manifest[-1]).read_text(encoding="utf-8"))
            _record_labels(rec, rows)
    return report


def _write_manifest(
    out_dir: Path,
    rows: list[dict],
    columns: tuple[str, ...] = MANIFEST_COLUMNS,
    *,
    raw_csv: bool = False,
) -> list[str]:
    write_csv_manifest(out_dir / MANIFEST_CSV, rows, columns, raw_csv)
    with AtomicFile(out_dir / MANIFEST_JSON) as fh:
        fh.write("[\n" + ",\n".join(json.dumps(r, ensure_ascii=False) for r in rows) + "\n]\n")
    return [str(out_dir / MANIFEST_CSV), str(out_dir / MANIFEST_JSON)]
