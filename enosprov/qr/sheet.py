"""`qr batch --label-format pdf|zpl`: label sheets from a label template (docs/labels.md).

Same selection and guarantees as the PNG/SVG batch (enosprov.qr.batch): the template is loaded
and checked first, then every selected device's payload is encoded (zxing-cpp, QR Model 2),
the symbol is decoded back from its own module matrix and compared with the payload, and the
label is drawn from that same verified matrix. The whole document is built before anything is
written: a template error, a payload too long, a symbol too small or a failed verification
stops the run with nothing written. The document is then written atomically (not rewritten when
already identical; the PDF is produced in reportlab's invariant mode, so the same input gives
the same bytes), followed by the manifest (deviceSn, payload, file, page, row, column).

File names: one document named after the selection (``labels-<batchTag>.pdf``,
``labels-<groupId>.zpl``, ``labels-<deviceSn>.pdf`` for one unit: qr.batch.document_name), or
with ``per_device`` one ``<deviceSn>.pdf`` / ``.zpl`` per unit. A file of that name that holds
other labels (another run's) is not overwritten without ``force``: the run is refused, naming
it, before anything is written.

Large batches encode and verify in a pool of worker processes (:func:`_pool`). A worker never
outlives the run: on Linux the kernel kills it when its parent dies (PR_SET_PDEATHSIG), even by
SIGKILL; elsewhere a thread in the worker watches the parent and ends the worker within a
second. Workers point their stdin, stdout and stderr at the null device, so a killed run's
caller (``$(enosprov qr batch ...)``) sees end of file at once; results and errors come back
through the pool's own pipes.

The output folder is handled as by `burn export` (enosprov.burn.export.OutputFolder).

PDF: the symbol is vector rectangles (one per run of dark modules in a row) in one path per
label; the text lines are real PDF text in a standard font. Pages are filled row by row,
left to right. ZPL: see enosprov.qr.zpl.
"""

from __future__ import annotations

import contextlib
import io
import itertools
import os
import re
import sys
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING, cast

from ..atomic import pid_running
from ..backends.base import Backend
from ..burn.export import Selection
from ..domain.errors import InvalidArgumentError
from ..domain.wording import names as _shown
from ..outputs import OutputFolder, check_file_names, safe_filename
from .batch import (
    MANIFEST_CSV,
    MANIFEST_JSON,
    QrReport,
    _write_manifest,
    document_name,
    ordered_devices,
    other_files,
    payload_for,
)
from .labels import PT_PER_MM, LabelTemplate, load_template
from .payload import Payload, render_payload
from .render import QrOptions, VerifyError, create_barcode

if TYPE_CHECKING:
    from .zpl import ZplDocument

SHEET_FORMATS = ("pdf", "zpl")
SHEET_MANIFEST_COLUMNS = ("deviceSn", "sn", "batchTag", "payload", "shortCode", "ecLevel",
                          "modules", "file", "page", "row", "column")  # fmt: skip
MIN_MODULE_MM = 0.15  # a smaller module is unreliable to print and to scan
VERIFY_SCALE = 2  # pixels per module of the image decoded back
CHUNK = 500  # labels per worker task
WATCH_SECONDS = 0.5  # how often a worker without PR_SET_PDEATHSIG checks its parent
_DARK_RUN = re.compile(b"\x00+")


def encode_verified(text: str, ec: str, device: str = "") -> tuple[int, bytes]:
    """(modules, matrix) of ``text``, decoded back and compared; VerifyError on a mismatch.

    The matrix is ``modules * modules`` bytes, 0 for a dark module, 255 for a light one.
    """
    import zxingcpp

    barcode = create_barcode(text, ec, device)
    matrix = barcode.to_image(scale=1, add_quiet_zones=False)
    size = matrix.shape[1]
    raw = bytes(memoryview(matrix))
    # Decode the same symbol back (scale 2, standard quiet zone) before it is drawn anywhere.
    image = barcode.to_image(scale=VERIFY_SCALE, add_quiet_zones=True)
    # zxingcpp's stub asks for BarcodeFormats; the binding (and its docstring) takes one format
    qr_only = zxingcpp.BarcodeFormat.QRCodeModel2
    found = [b.text for b in zxingcpp.read_barcodes(image, formats=qr_only)]  # type: ignore[arg-type]
    if found != [text]:
        who = f" of {device}" if device else ""
        got = "nothing" if not found else ", ".join(repr(t) for t in found)
        raise VerifyError(
            f"the QR code{who} does not decode to its payload {text!r} (decoded: {got})",
            hint="nothing was written; try another --ec",
        )
    return size, raw


def _encode_chunk(texts: list[str], ec: str) -> list[tuple[int, bytes] | None]:
    out: list[tuple[int, bytes] | None] = []
    for text in texts:
        try:
            out.append(encode_verified(text, ec))
        except (InvalidArgumentError, VerifyError):
            out.append(None)  # the parent encodes it again for the full error
    return out


def _encoded(items, group_id: str, selection: Selection, options: QrOptions, sn_of=None):
    """(payload, text, (modules, matrix)) per device, in selection order, every symbol verified.

    Large batches encode and verify in a pool of worker processes (one per core, at most 4),
    a bounded window of chunks at a time; small ones in this process.
    """
    from collections import deque

    def chunks():
        chunk = []
        for item in items:
            p = payload_for(group_id, item, selection.batch_tag, sn_of)
            chunk.append((p, render_payload(p, options.template)))
            if len(chunk) == CHUNK:
                yield chunk
                chunk = []
        if chunk:
            yield chunk

    workers = min(4, os.cpu_count() or 1)
    it = chunks()
    first: list[tuple[Payload, str]] = next(it, [])
    if workers < 2 or len(first) < CHUNK:  # small batch: no pool
        for p, text in first:
            yield p, text, encode_verified(text, options.ec, p.device_sn)
        return
    with _pool(workers) as pool:
        window: deque = deque()
        try:
            for chunk in itertools.chain([first], it):
                texts = [t for _, t in chunk]
                window.append((chunk, pool.submit(_encode_chunk, texts, options.ec)))
                while len(window) > 2 * workers:
                    yield from _drain(window.popleft(), options.ec)
            while window:
                yield from _drain(window.popleft(), options.ec)
        except BaseException:  # an error, or the caller stopped: drop the chunks not started
            pool.shutdown(wait=True, cancel_futures=True)
            raise


def _pool(workers: int):
    """A process pool whose workers end with this process and hold none of its std streams."""
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    ctx = multiprocessing.get_context()
    return ProcessPoolExecutor(
        workers,
        mp_context=ctx,
        initializer=_worker_init,
        initargs=(os.getpid(), ctx.get_start_method()),
    )


def _worker_init(main_pid: int, start_method: str) -> None:
    """Run first in every pool worker. Never raises: a failing initializer breaks the pool."""
    with contextlib.suppress(Exception):
        _detach_std_streams()
    with contextlib.suppress(Exception):
        _end_with_parent(main_pid, start_method)


def _detach_std_streams() -> None:
    """Point fds 0, 1 and 2 at the null device: the worker holds none of the caller's pipes or
    terminal. Results and exceptions still reach the parent through the pool's pipes."""
    fd = os.open(os.devnull, os.O_RDWR)
    try:
        for target in (0, 1, 2):
            os.dup2(fd, target)
    finally:
        if fd > 2:
            os.close(fd)


def _end_with_parent(main_pid: int, start_method: str) -> None:
    """End this worker when the process that made the pool ends, however it ends.

    Linux: the kernel sends the worker SIGKILL when its parent dies (PR_SET_PDEATHSIG; with the
    forkserver start method the parent is the fork server, which ends with ``main_pid``).
    Elsewhere, or when prctl fails: a daemon thread checks the parent every WATCH_SECONDS and
    ends the worker with os._exit.
    """
    parent = main_pid if start_method != "forkserver" else os.getppid()
    if sys.platform.startswith("linux") and _set_pdeathsig():
        if os.getppid() != parent or not pid_running(main_pid):
            os._exit(1)  # the parent died before prctl took effect
        return
    watcher = threading.Thread(
        target=_watch_parent, args=(main_pid, parent), name="enosprov-parent-watch", daemon=True
    )
    watcher.start()


def _set_pdeathsig() -> bool:
    """prctl(PR_SET_PDEATHSIG, SIGKILL) through ctypes (Linux); True when it took effect."""
    import ctypes
    import signal

    try:
        libc = ctypes.CDLL(None, use_errno=True)
        ul = ctypes.c_ulong
        return libc.prctl(ctypes.c_int(1), ul(signal.SIGKILL), ul(0), ul(0), ul(0)) == 0
    except (OSError, AttributeError):
        return False


def _watch_parent(main_pid: int, parent: int) -> None:
    """Return never: end the process once its parent is gone (reparented, or not running)."""
    while os.getppid() == parent and pid_running(main_pid):
        time.sleep(WATCH_SECONDS)
    os._exit(1)


def _drain(entry, ec: str):
    chunk, future = entry
    for (p, text), result in zip(chunk, future.result()):
        yield p, text, result if result is not None else encode_verified(text, ec, p.device_sn)


def _sn(item) -> str:
    return item if isinstance(item, str) else item.device_sn


def dark_runs(size: int, raw: bytes):
    """(x, y, length) of every horizontal run of dark modules."""
    for y in range(size):
        for m in _DARK_RUN.finditer(raw, y * size, (y + 1) * size):
            yield m.start() - y * size, y, m.end() - m.start()


class PdfSheet:
    """A PDF of label pages; labels are added in grid order, one page shown at a time."""

    def __init__(self, template: LabelTemplate, title: str = "enosprov QR labels") -> None:
        from reportlab.pdfgen.canvas import Canvas

        self.t = template
        self.buf = io.BytesIO()
        self.canvas = Canvas(
            self.buf,
            pagesize=(template.page_w * PT_PER_MM, template.page_h * PT_PER_MM),
            invariant=1,  # no date or random id: the same labels give the same bytes
            pageCompression=1,
        )
        self.canvas.setTitle(title)
        self.canvas.setCreator("enosprov")
        self.count = 0

    def add(self, modules: int, raw: bytes, lines: list[str], payload: str) -> tuple[int, int, int]:
        """Draw one label (the symbol of ``payload``); its (page, row, column), 1-based."""
        t, c = self.t, self.canvas
        index = self.count % t.per_page
        if index == 0 and self.count:
            c.showPage()
        if index == 0:
            c.setFont(t.font, t.font_size)
        self.count += 1
        row, column = divmod(index, t.columns)
        ox, oy = t.origin(row, column)
        page_h = t.page_h
        module = t.module_mm(modules)
        if module < MIN_MODULE_MM:
            raise InvalidArgumentError(
                f"label template {t.path}: qr.size {t.qr_size:g} mm gives {module:.3f} mm "
                f"modules for a {modules}x{modules} symbol (at least {MIN_MODULE_MM} mm)",
                hint="raise qr.size, lower --ec or use a shorter payload",
            )
        m = module * PT_PER_MM
        x0 = (ox + t.qr_x + t.quiet_zone * module) * PT_PER_MM
        y0 = (page_h - oy - t.qr_y - t.quiet_zone * module) * PT_PER_MM
        # Module units, y down from the symbol's top-left corner; one path of row runs.
        ops = [f"q 0 g {m:.4f} 0 0 {-m:.4f} {x0:.3f} {y0:.3f} cm"]
        ops.extend(f"{x} {y} {n} 1 re" for x, y, n in dark_runs(modules, raw))
        ops.append("f Q")
        c.addLiteral("\n".join(ops))
        tx = (ox + t.text_x) * PT_PER_MM
        for i, line in enumerate(lines):
            if line:
                ty = (page_h - oy - t.text_y - i * t.line_height) * PT_PER_MM
                c.drawString(tx, ty, line)
        return (self.count - 1) // t.per_page + 1, row + 1, column + 1

    def finish(self) -> bytes:
        if self.count == 0:
            self.canvas.showPage()
        self.canvas.save()
        return self.buf.getvalue()


def qr_sheet(
    backend: Backend,
    selection: Selection,
    out_dir: str | Path,
    *,
    fmt: str = "pdf",
    template: str | Path | LabelTemplate | None = None,
    options: QrOptions | None = None,
    progress=None,
    raw_csv: bool = False,
    order: str = "registration",
    per_device: bool = False,
    force: bool = False,
    collect: bool = False,
) -> QrReport:
    """Write one pdf or zpl document of labels (one label per selected device), named after the
    selection (``labels-<...>.pdf``, :func:`enosprov.qr.batch.document_name`), or with
    ``per_device`` one ``<deviceSn>.pdf`` / ``.zpl`` per device, plus the manifest.

    ``template`` is a label template file, the name of a shipped one (enosprov/templates/labels/)
    or None for the default of the format. Of ``options``, the error-correction level and the
    payload template apply; the symbol's size and quiet zone come from the label template.
    Labels come in ``order`` (qr.batch.ordered_devices). A file that holds other labels is
    refused without ``force``. manifest.csv is spreadsheet-safe (csvsafe) unless ``raw_csv``.
    ``collect`` keeps, in ``report.jobs``, what a printer is sent: each ZPL label on its own,
    a PDF document whole.
    """
    t0 = time.perf_counter()
    if fmt not in SHEET_FORMATS:
        raise InvalidArgumentError(
            f"unknown sheet format {fmt!r}", hint="one of: " + ", ".join(SHEET_FORMATS)
        )
    options = options or QrOptions()
    tpl = template if isinstance(template, LabelTemplate) else load_template(template, fmt)
    out_dir = Path(out_dir)
    group = backend.get_group(selection.group)
    devices = ordered_devices(backend, group, selection, order)
    ext = "." + fmt
    if per_device:
        named = [(d, safe_filename(d) + ext) for d in (_sn(x) for x in devices)]
        check_file_names(out_dir, named, files=(MANIFEST_CSV, MANIFEST_JSON))
        name = ""
    else:
        name = document_name(selection, group.group_id, devices, fmt)
        check_file_names(out_dir, (), files=(name, MANIFEST_CSV, MANIFEST_JSON))

    def new_writer() -> PdfSheet | ZplDocument:
        if fmt == "pdf":
            return PdfSheet(tpl)
        from .zpl import ZplDocument

        return ZplDocument(tpl, ec=options.ec)

    if collect:
        from .printjob import PrintJob, PrintResult
    report = QrReport(str(out_dir), fmt, order=order)
    manifest = []
    outputs: list[tuple[str, bytes]] = []  # (file name, bytes), in order
    units = []  # the print results of the document's labels, in order
    writer = None if per_device else new_writer()
    sn_of = backend.label_sn_for(group.group_id)
    for p, text, (modules, raw) in _encoded(devices, group.group_id, selection, options, sn_of):
        report.verified += 1
        one = new_writer() if writer is None else writer  # None: per device
        page, row, column = one.add(modules, raw, tpl.text_lines(p.values()), text)
        file = safe_filename(p.device_sn) + ext if per_device else name
        manifest.append(
            {"deviceSn": p.device_sn, "sn": p.sn or "", "batchTag": p.batch_tag or "",
             "payload": text, "shortCode": p.short_code, "ecLevel": options.ec,
             "modules": modules, "file": file, "page": page, "row": row, "column": column}
        )  # fmt: skip
        if collect:
            units.append(PrintResult(p.device_sn, p.sn or "", group.group_id, p.batch_tag))
        if per_device:
            outputs.append((file, one.finish()))
            if collect:
                report.jobs.append(PrintJob([units[-1]], outputs[-1][1], p.device_sn))
        report.devices += 1
        if progress and report.devices % 100 == 0:
            progress("qr", report.devices, None)
    if writer is not None:  # one document
        outputs.append((name, writer.finish()))
        if collect and fmt == "zpl":  # every label on its own: one result per unit
            parts = cast("ZplDocument", writer).parts  # new_writer's for zpl
            report.jobs.extend(PrintJob([u], part.encode("ascii"), u.device_sn)
                               for u, part in zip(units, parts))  # fmt: skip
        elif collect:  # a PDF document is printed whole
            report.jobs.append(PrintJob(units, outputs[0][1], name))
    # Everything is built and verified: only now is the folder looked at, then touched.
    taken = [] if force else other_files(out_dir, outputs)
    if taken:
        s = "s" if len(taken) > 1 else ""
        raise InvalidArgumentError(
            f"{out_dir}: {_shown(taken)} already hold{'' if s else 's'} other labels (another "
            "run's): nothing was written",
            hint="pass --force to overwrite "
            + ("them" if s else "it")
            + ", or choose another --out or selection",
        )
    folder = OutputFolder(out_dir, (MANIFEST_CSV, MANIFEST_JSON))
    folder.open()
    for file, data in outputs:
        if folder.store(file, data) is None:
            report.written += 1
        else:
            report.unchanged += 1
    if per_device:
        report.files = [str(out_dir / file) for file, _ in outputs]
    else:
        report.document = str(out_dir / name)
    report.manifest = _write_manifest(out_dir, manifest, SHEET_MANIFEST_COLUMNS, raw_csv=raw_csv)
    report.seconds = time.perf_counter() - t0
    return report
