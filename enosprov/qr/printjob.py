"""Sending labels to a printer, one result per unit: `qr print`, and `--printer` of `qr batch`
and `replace` (docs/labels.md#printers).

Every label is rendered and verified before the first byte is sent. The printer's status is
asked once before sending (a Zebra's ``~HS``: paper out, paused, head open, ribbon out) and
once after an error, never per unit. A printer that reports a problem at the start gets
nothing, and every unit fails with that reason. The first label the printer does not take
stops the run: that unit fails with the printer's error, every later one fails as "not sent",
so a broken printer costs one timeout, not one per unit. A unit is "printed" once the printer
took all of its bytes. Fix the printer and reprint the failed units with `qr print`.

Journal: one "label-export" record per registration group, detail ``printer`` (the URI without
user or password), ``format``, ``template``, ``printed`` and ``failed``; its devices, and their
"labelled" marks, are the units printed. Outcome ``ok``, ``partial`` (some failed) or
``failed`` (none printed).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from ..backends.base import Backend
from ..domain.errors import PrinterError
from ..domain.models import Device
from ..journal import Journal
from .labels import LabelTemplate

if TYPE_CHECKING:
    from ..printing import Printer
    from .render import QrOptions

MAX_LISTED = 100  # deviceSns not printed, listed in a journal record's detail


@dataclass
class PrintResult:
    """One unit: printed, or the reason it was not."""

    device_sn: str
    sn: str
    group_id: str
    batch_tag: str | None = None
    printed: bool = False
    error: str | None = None

    def to_dict(self) -> dict:
        return {"deviceSn": self.device_sn, "sn": self.sn, "groupId": self.group_id,
                "printed": self.printed, "error": self.error}  # fmt: skip


@dataclass
class PrintJob:
    """Bytes sent in one :meth:`~enosprov.printing.Printer.send`: one unit's label, or a
    document of several units' labels (a PDF sheet sent through ``lp``)."""

    units: list[PrintResult]
    data: bytes
    what: str  # how errors name it: a deviceSn, a file name


@dataclass
class PrintReport:
    printer: str  # the URI, without user or password
    format: str
    template: str | None = None
    status: str | None = None  # the problem the printer reported (at the start, after an error)
    results: list[PrintResult] = field(default_factory=list)

    @property
    def printed(self) -> int:
        return sum(r.printed for r in self.results)

    @property
    def failed(self) -> int:
        return len(self.results) - self.printed

    @property
    def ok(self) -> bool:
        return self.failed == 0

    def to_dict(self) -> dict:
        return {
            "printer": self.printer,
            "format": self.format,
            "template": self.template,
            "printed": self.printed,
            "failed": self.failed,
            "status": self.status,
            "results": [r.to_dict() for r in self.results],
        }


def unit_of(dev: Device) -> PrintResult:
    return PrintResult(dev.device_sn, dev.sn, dev.group_id, dev.batch_tag_text)


def send_jobs(printer: Printer, jobs: Sequence[PrintJob], report: PrintReport) -> None:
    """Send ``jobs`` in order, filling in their units' results (see the module docstring)."""
    problem = printer.status()
    if problem:
        report.status = problem
        for job in jobs:
            for unit in job.units:
                unit.error = f"label not printed: printer {printer.name} reports {problem}"
        return
    for i, job in enumerate(jobs):
        try:
            printer.send(job.data, what=job.what)
        except PrinterError as exc:
            reason = exc.message
            problem = printer.status()  # after an error: what the printer says, if it can
            if problem:
                report.status = problem
                reason += f" (the printer reports {problem})"
            for unit in job.units:
                unit.error = reason
            for later in jobs[i + 1 :]:
                for unit in later.units:
                    unit.error = f"not sent: the printer failed on {job.what}"
            return
        for unit in job.units:
            unit.printed = True


def print_jobs(
    printer: Printer,
    jobs: Sequence[PrintJob],
    *,
    template: str | None = None,
    journal: Journal | None = None,
) -> PrintReport:
    """Send ``jobs`` to ``printer`` (an open :class:`~enosprov.printing.Printer`); the report,
    journaled per group when ``journal`` is given."""
    report = PrintReport(printer.uri, printer.label_format, template)
    report.results = [unit for job in jobs for unit in job.units]
    try:
        send_jobs(printer, jobs, report)
    except BaseException:
        if journal is not None:
            journal_prints(journal, report, interrupted=True)
        raise
    if journal is not None:
        journal_prints(journal, report)
    return report


def journal_prints(journal: Journal, report: PrintReport, *, interrupted: bool = False) -> None:
    """One "label-export" record per group of ``report``: the units printed, marked labelled."""
    by_group: dict[str, list[PrintResult]] = {}
    for r in report.results:
        by_group.setdefault(r.group_id, []).append(r)
    for group_id, units in by_group.items():
        printed = [u for u in units if u.printed]
        failed = [u for u in units if not u.printed]
        detail: dict = {"printer": report.printer, "format": report.format,
                        "template": report.template, "printed": len(printed),
                        "failed": len(failed)}  # fmt: skip
        if failed:
            detail["notPrinted"] = [u.device_sn for u in failed[:MAX_LISTED]]
        if report.status:
            detail["printerStatus"] = report.status
        rec = journal.begin("label-export", group_id=group_id, detail=detail)
        rec.extend((u.sn, u.device_sn) for u in printed)
        for u in printed:
            rec.mark("labelled", u.sn, u.device_sn, u.batch_tag)
        if interrupted:
            rec.commit("interrupted", error="interrupted")
        elif failed:
            error = next((u.error for u in failed if u.error), None)
            rec.commit("partial" if printed else "failed", error=error)
        else:
            rec.commit()


def print_devices(
    backend: Backend,
    devices: Sequence[Device],
    printer: Printer,
    *,
    template: str | Path | LabelTemplate | None = None,
    options: QrOptions | None = None,
    journal: Journal | None = None,
) -> PrintReport:
    """Render the label of every unit of ``devices`` in ``printer``'s format (each symbol
    decoded back first: nothing is sent when one fails), then send them, one per unit."""
    from .unit import render_unit_label, template_name, unit_template

    fmt = printer.label_format
    tpl = unit_template(template, fmt)  # a sheet template is refused before anything is sent
    groups: dict = {}
    jobs = []
    for dev in devices:
        group = groups.get(dev.group_id)
        if group is None:
            group = groups[dev.group_id] = backend.get_group(dev.group_id)
        data = render_unit_label(backend, group, dev, label_format=fmt, template=tpl,
                                 options=options)  # fmt: skip
        jobs.append(PrintJob([unit_of(dev)], data, dev.device_sn))
    return print_jobs(printer, jobs, template=template_name(template, fmt), journal=journal)
