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

Order (:func:`ordered_devices`): labels come in registration order by default (the local store:
batch order, then registration time, then system sn, which a store write gives consecutively;
EnOS: createTime, then sn), sorted here, not by the backend's search order; or by deviceSn; or
in the order of a ``--csv`` selection.

With a printer (enosprov.printing), the printer decides the format, and every label of the run
is sent to it after the files are written (enosprov.qr.printjob): one result per unit.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from ..atomic import AtomicFile
from ..backends.base import Backend
from ..burn.export import Selection, select_devices
from ..domain.errors import InvalidArgumentError
from ..domain.models import Device, RegistrationGroup
from ..journal import Journal, journal_or_null
from ..outputs import OutputFolder, check_file_names, safe_filename, write_csv_manifest
from .payload import Payload, render_payload
from .render import QrOptions, encode, png_bytes, to_image, to_svg, verify_png

if TYPE_CHECKING:
    from ..printing import Printer
    from .printjob import PrintReport

FORMATS = ("png", "svg", "both")
ORDERS = ("registration", "device-sn", "csv")
STEM_LIMIT = 100  # bytes of a document name's selection part (longer: cut, plus a digest)
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
    document: str = ""  # the labels-<selection>.pdf / .zpl of a sheet format
    order: str = "registration"
    files: list[str] = field(default_factory=list)  # per-device pdf/zpl files (--per-device)
    printing: PrintReport | None = None  # when labels were sent to a printer
    jobs: list = field(default_factory=list, repr=False)  # what a printer is sent (not in JSON)

    def to_dict(self) -> dict:
        return {
            "outDir": self.out_dir,
            "format": self.format,
            "order": self.order,
            "devices": self.devices,
            "written": self.written,
            "unchanged": self.unchanged,
            "verified": self.verified,
            "manifest": self.manifest,
            "seconds": round(self.seconds, 3),
            **({"document": self.document} if self.document else {}),
            **({"files": len(self.files)} if self.files else {}),
            **({"printing": self.printing.to_dict()} if self.printing is not None else {}),
        }


def payload_for(
    group_id: str,
    item: Device | str,
    batch_tag: str | None,
    sn_of: Callable[[Device], str | None] | None = None,
) -> Payload:
    """What a device's label carries; ``sn_of`` (Backend.label_sn_for) says which system sn,
    if any (a device of an imported group not pushed to EnOS yet: none)."""
    if isinstance(item, Device):
        sn = sn_of(item) if sn_of is not None else item.sn
        return Payload(group_id, item.device_sn, sn, item.batch_tag_text)
    return Payload(group_id, item, None, batch_tag)


def caption_for(payload: Payload) -> str:
    return f"{payload.device_sn}  {payload.short_code}"


def _device_sn(item: Device | str) -> str:
    return item.device_sn if isinstance(item, Device) else item


def registration_key(backend: Backend) -> Callable[[Device], tuple]:
    """The sort key of registration order on ``backend``: the local store numbers its batches
    (batch order), and a store write gives its rows one registration time and consecutive system
    sns; EnOS gives createTime, ties broken by sn."""
    return backend.registration_order()


def ordered_devices(
    backend: Backend, group: RegistrationGroup, selection: Selection, order: str = "registration"
) -> list[Device | str]:
    """The selected devices (checked as by burn export: unknown deviceSns, an empty
    selection), in ``order``: "registration" (default), "device-sn" or "csv" (the order of the
    ``--csv`` selection; deviceSns given with ``--device-sn`` first)."""
    if order not in ORDERS:
        raise InvalidArgumentError(f"unknown order {order!r}", hint="one of: " + ", ".join(ORDERS))
    if order == "csv" and not selection.csv_path:
        raise InvalidArgumentError(
            "--order csv needs a --csv selection", hint="give --csv FILE, or another --order"
        )
    items = list(select_devices(backend, group, selection)())
    if order == "csv":
        return items
    if order == "device-sn":
        return sorted(items, key=_device_sn)
    key = registration_key(backend)
    return sorted(items, key=lambda d: key(d) if isinstance(d, Device) else (0, 0, d))


def _name_part(value: str) -> str:
    """``value`` as part of a file name (safe_filename), at most STEM_LIMIT bytes: a longer one
    is cut and followed by 8 hex digits of its SHA-256, so names stay distinct."""
    safe = safe_filename(value)
    if len(safe) <= STEM_LIMIT:
        return safe
    cut = value
    while cut and len(safe_filename(cut)) > STEM_LIMIT - 9:
        cut = cut[:-1]
    return safe_filename(cut) + "-" + hashlib.sha256(value.encode("utf-8")).hexdigest()[:8]


def document_name(selection: Selection, group_id: str, devices: list, fmt: str) -> str:
    """The file name of a run's pdf/zpl document, after its selection: ``labels-<deviceSn>``
    for one unit, else ``labels-<CSV file name>`` for a --csv selection, ``labels-<first
    deviceSn>-and-<n>-more`` for --device-sn, ``labels-<batchTag>`` for a batch tag,
    ``labels-<groupId>`` for a whole group."""
    if len(devices) == 1:
        value = _device_sn(devices[0])
    elif selection.csv_path:
        value = Path(selection.csv_path).stem
    elif selection.device_sns:
        value = f"{_device_sn(devices[0])}-and-{len(devices) - 1}-more"
    elif selection.batch_tag is not None:
        value = selection.batch_tag
    else:
        value = group_id
    return f"labels-{_name_part(value)}.{fmt}"


def other_files(out_dir: Path, outputs: list[tuple[str, bytes]]) -> list[str]:
    """The names of ``outputs`` already in ``out_dir`` with other content (another run's)."""
    found = []
    for name, data in outputs:
        path = out_dir / name
        try:
            st = path.stat()
        except OSError:
            continue
        try:
            same = st.st_size == len(data) and path.read_bytes() == data
        except OSError:
            same = False
        if not same:
            found.append(name)
    return found


def _template_name(template, fmt: str) -> str:
    from .labels import DEFAULT_TEMPLATES, LabelTemplate

    if isinstance(template, LabelTemplate):
        return template.name or template.path
    return str(template or DEFAULT_TEMPLATES[fmt])


def _format_for(fmt: str | None, printer: Printer | None) -> str:
    """The label format: the printer's when there is one (``fmt``, if given, must agree)."""
    if printer is None:
        return fmt or "png"
    if fmt is None or fmt == printer.label_format:
        return printer.label_format
    raise InvalidArgumentError(
        f"--label-format {fmt} does not match the printer {printer.uri}, which takes "
        f"{printer.label_format} labels",
        hint="leave --label-format out: the printer decides the label format",
    )


def qr_batch(
    backend: Backend,
    selection: Selection,
    out_dir: str | Path,
    *,
    fmt: str | None = None,
    options: QrOptions | None = None,
    progress=None,
    template=None,
    journal: Journal | None = None,
    raw_csv: bool = False,
    order: str = "registration",
    per_device: bool = False,
    force: bool = False,
    printer: str | Printer | None = None,
) -> QrReport:
    """Write one label per selected device into ``out_dir`` plus the manifest.

    ``fmt`` "png", "svg" or "both" (default "png") writes one file per device; "pdf" or "zpl"
    one document of labels laid out by ``template``, named after the selection
    (:func:`document_name`), or with ``per_device`` one ``<deviceSn>.pdf`` / ``.zpl`` per
    device (see :func:`enosprov.qr.sheet.qr_sheet`). A pdf/zpl file another run wrote with
    other content is not overwritten without ``force``. ``order``: "registration" (default),
    "device-sn" or "csv". manifest.csv is spreadsheet-safe (a batch tag starting with ``=``
    gets a leading ``'``) unless ``raw_csv``. Appends one "label-export" record to ``journal``:
    the devices labelled, the folder, the format and the label template (pdf/zpl).

    ``printer`` (a URI or an open enosprov.printing.Printer): the printer decides the format
    (``fmt``, if given, must be the same); after the files are written, every label is sent to
    it (:mod:`enosprov.qr.printjob`), the results in ``report.printing``, journaled as their own
    "label-export" record with the printer.
    """
    own = None
    if isinstance(printer, str):
        from ..printing import open_printer

        printer = own = open_printer(printer)
    try:
        fmt = _format_for(fmt, printer)
        if fmt in ("pdf", "zpl"):
            report = _sheet(backend, selection, out_dir, fmt, template, options, progress,
                            journal, raw_csv, order=order, per_device=per_device, force=force,
                            collect=printer is not None)  # fmt: skip
        else:
            report = _files(backend, selection, out_dir, fmt, options, progress, journal,
                            raw_csv, order, collect=printer is not None)  # fmt: skip
        if printer is not None:
            from .printjob import print_jobs

            tpl = _template_name(template, fmt) if fmt in ("pdf", "zpl") else None
            report.printing = print_jobs(printer, report.jobs, template=tpl, journal=journal)
        return report
    finally:
        if own is not None:
            own.close()


def _files(
    backend: Backend,
    selection,
    out_dir,
    fmt,
    options,
    progress,
    journal,
    raw_csv,
    order,
    collect=False,
) -> QrReport:
    """PNG and/or SVG, one file per device."""
    t0 = time.perf_counter()
    if fmt not in FORMATS:
        raise InvalidArgumentError(
            f"unknown format {fmt!r}", hint="one of: " + ", ".join((*FORMATS, "pdf", "zpl"))
        )
    options = options or QrOptions()  # validates the template up front
    out_dir = Path(out_dir)
    group = backend.get_group(selection.group)
    devices = ordered_devices(backend, group, selection, order)

    sn_of = backend.label_sn_for(group.group_id)

    def payloads():
        for item in devices:
            p = payload_for(group.group_id, item, selection.batch_tag, sn_of)
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
    report = QrReport(str(out_dir), fmt, order=order)
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
                svg: bytes | None = None
                if fmt in ("svg", "both"):
                    names["svg"] = base + ".svg"
                    svg = to_svg(symbol, options, caption)
                    store(names["svg"], svg)
                if collect:
                    from .printjob import PrintJob, PrintResult

                    unit = PrintResult(p.device_sn, p.sn or "", group.group_id, p.batch_tag)
                    label = png if svg is None else svg  # fmt png: no svg; svg, both: the svg
                    report.jobs.append(PrintJob([unit], label, p.device_sn))
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
    backend: Backend, selection, out_dir, fmt, template, options, progress, journal, raw_csv=False,
    *, order="registration", per_device=False, force=False, collect=False,
) -> QrReport:  # fmt: skip
    """A pdf/zpl document of labels (or one per device), journaled from the manifest it
    wrote."""
    from .labels import LabelTemplate, load_template
    from .sheet import qr_sheet

    tpl = template if isinstance(template, LabelTemplate) else load_template(template, fmt)
    group = backend.get_group(selection.group)
    detail = _detail(out_dir, fmt, tpl.name or tpl.path, options)
    if per_device:
        detail["perDevice"] = True
    with journal_or_null(journal).begin(
        "label-export", group_id=group.group_id, detail=detail
    ) as rec:
        report = qr_sheet(backend, selection, out_dir, fmt=fmt, template=tpl, options=options,
                          progress=progress, raw_csv=raw_csv, order=order,
                          per_device=per_device, force=force, collect=collect)  # fmt: skip
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
