"""One unit's label, in one printer's format: what `qr print`, `replace --printer` and a station
send to a printer (docs/labels.md#printers).

:func:`render_unit_label` reuses the batch renderers: the symbol is encoded and **decoded back
and compared with its payload** before it is drawn (PDF and ZPL as `qr batch --label-format pdf|zpl`,
from the same verified module matrix; PNG decoded back from the image itself, SVG drawn from
the verified symbol). PDF and ZPL are laid out by a single-label template (one label per
page: thermal-62mm by default, thermal-4x6in, or a TOML file with ``columns = rows = 1``); a
sheet template (A4 3 x 8...) is refused for one unit, naming the single-label templates. PNG
and SVG take no label template.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from ..backends.base import Backend
from ..domain.errors import InvalidArgumentError, NotFoundError
from ..domain.models import Device, RegistrationGroup
from .batch import caption_for, payload_for
from .labels import LabelTemplate, load_template
from .payload import render_payload
from .render import QrOptions, encode, png_bytes, to_image, to_svg, verify_png

if TYPE_CHECKING:
    from .zpl import ZplDocument

UNIT_FORMATS = ("zpl", "pdf", "png", "svg")
DEFAULT_UNIT_TEMPLATE = "thermal-62mm"


def single_label_templates() -> list[str]:
    """The shipped label templates with one label per page (for one unit at a time)."""
    from .. import templates as shipped

    names = []
    for name in shipped.names(shipped.LABELS):
        try:
            if load_template(name).per_page == 1:
                names.append(name)
        except InvalidArgumentError:
            continue
    return names or [DEFAULT_UNIT_TEMPLATE]


def unit_template(
    template: str | Path | LabelTemplate | None, label_format: str
) -> LabelTemplate | None:
    """The label template of one unit's ``label_format`` label, checked: None for png/svg,
    else ``template`` (default thermal-62mm), refused when it has several labels per page."""
    if label_format not in UNIT_FORMATS:
        raise InvalidArgumentError(
            f"unknown label format {label_format!r}", hint="one of: " + ", ".join(UNIT_FORMATS)
        )
    if label_format in ("png", "svg"):
        if template:
            raise InvalidArgumentError(
                f"a label template lays out pdf and zpl labels, not {label_format}",
                hint="leave out the label template, or print pdf or zpl labels",
            )
        return None
    if isinstance(template, LabelTemplate):
        tpl, shown = template, template.name or template.path
    else:
        tpl = load_template(template or DEFAULT_UNIT_TEMPLATE, label_format)
        shown = str(template or DEFAULT_UNIT_TEMPLATE)
    if tpl.per_page > 1:
        singles = single_label_templates()
        raise InvalidArgumentError(
            f"label template {shown} is a sheet of {tpl.columns} x {tpl.rows} labels: one unit "
            "is printed with a single-label template",
            hint="use " + " or ".join(singles) + ", or a TOML file with one label per page "
            "(columns = rows = 1)",
        )
    return tpl


def template_name(template: str | Path | LabelTemplate | None, label_format: str) -> str | None:
    """How reports and journals name the template of a unit label (None for png/svg)."""
    if label_format in ("png", "svg"):
        return None
    if isinstance(template, LabelTemplate):
        return template.name or template.path
    return str(template or DEFAULT_UNIT_TEMPLATE)


def render_unit_label(
    backend: Backend,
    group: RegistrationGroup | str,
    device: Device | str,
    *,
    label_format: str,
    template: str | Path | LabelTemplate | None = None,
    options: QrOptions | None = None,
) -> bytes:
    """The label of one registered unit as ``label_format`` bytes (``zpl``, ``pdf``, ``png``,
    ``svg``), its QR symbol verified by decoding it back.

    ``group`` is the unit's registration group (an object, or its id or name); ``device`` the
    unit or its deviceSn in that group. ``template`` lays out pdf/zpl (default thermal-62mm;
    a sheet template is refused); of ``options``, the error-correction level and the payload
    template apply to every format, the PNG/SVG sizes to those."""
    tpl = unit_template(template, label_format)
    grp = group if isinstance(group, RegistrationGroup) else backend.get_group(group)
    if isinstance(device, Device):
        dev = device
        if dev.group_id and dev.group_id != grp.group_id:
            raise InvalidArgumentError(
                f"device {dev.device_sn} is in group {dev.group_id}, not {grp.group_id}"
            )
    else:
        found = backend.find_by_device_sn(grp.group_id, device)
        if found is None:
            raise NotFoundError(
                f"deviceSn {device!r} is not registered in group {grp.group_id}",
                hint="register it first (a label carries the system sn)",
            )
        dev = found
    options = options or QrOptions()
    p = payload_for(grp.group_id, dev, None, backend.label_sn_for(grp.group_id))
    text = render_payload(p, options.template)
    if tpl is not None:
        from .sheet import PdfSheet, encode_verified

        modules, raw = encode_verified(text, options.ec, p.device_sn)
        writer: PdfSheet | ZplDocument
        if label_format == "pdf":
            writer = PdfSheet(tpl)
        else:
            from .zpl import ZplDocument

            writer = ZplDocument(tpl, ec=options.ec)
        writer.add(modules, raw, tpl.text_lines(p.values()), text)
        return writer.finish()
    symbol = encode(text, options.ec, p.device_sn)
    caption = caption_for(p)
    png = png_bytes(to_image(symbol, options, caption, p.device_sn))
    verify_png(png, text, p.device_sn)
    return png if label_format == "png" else to_svg(symbol, options, caption)
