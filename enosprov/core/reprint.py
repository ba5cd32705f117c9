"""`qr print`: reprint the labels of registered units, named by system sn or deviceSn, on a
printer (docs/labels.md#printers). A workflow over :mod:`enosprov.qr.printjob`, which renders
and sends the labels of devices already looked up."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from ..backends.base import Backend
from ..domain.errors import InvalidArgumentError
from ..journal import Journal
from ..printing import open_printer
from ..qr.labels import LabelTemplate
from ..qr.printjob import PrintReport, print_devices
from ..qr.unit import unit_template
from .device_refs import resolve_devices

if TYPE_CHECKING:
    from ..qr.render import QrOptions


def print_labels(
    backend: Backend,
    refs: Sequence[str],
    printer_uri: str,
    *,
    group: str | None = None,
    template: str | Path | LabelTemplate | None = None,
    journal: Journal | None = None,
    options: QrOptions | None = None,
) -> PrintReport:
    """Reprint the labels of registered units named by system sn or deviceSn (``group``
    narrows deviceSns to one group) on the printer of ``printer_uri``; one result per unit.

    Refused with nothing sent: a bad printer URI, an unknown unit, a sheet template. The
    report's ``ok`` is False when any unit was not printed (the CLI exits with 6)."""

    if not refs:
        raise InvalidArgumentError("no unit given", hint="name units by system sn or deviceSn")
    with open_printer(printer_uri) as printer:
        unit_template(template, printer.label_format)  # refused before any lookup
        devices = resolve_devices(backend, refs, group)
        return print_devices(backend, devices, printer, template=template, options=options,
                             journal=journal)  # fmt: skip
