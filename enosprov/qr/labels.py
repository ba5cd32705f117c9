"""Label templates (TOML) for PDF sheets and ZPL: page, grid, label, QR, text lines, font, dpi.

Format: docs/labels.md. Lengths are millimetres, font sizes points. A template is checked as a
whole when loaded (unknown sections, keys or text fields; a grid larger than its page; a QR code
or a text line outside its label): one :class:`InvalidArgumentError` naming the file and the
key, raised before anything is written.
"""

from __future__ import annotations

import functools
import string
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn

from .. import templates as _shipped
from ..domain.errors import InvalidArgumentError
from ..domain.rules import CONTROL_RE

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    # a dependency on Python < 3.11 only: mypy checks this branch (python_version 3.10) where
    # it may not be installed
    import tomli as tomllib  # type: ignore[import-not-found, unused-ignore]

if TYPE_CHECKING:
    from importlib.abc import Traversable

# The shipped templates: package data (enosprov/templates/labels/), read with importlib.resources.
TEMPLATES_DIR = _shipped.folder(_shipped.LABELS)
DEFAULT_TEMPLATES = {"pdf": "a4-3x8-70x37", "zpl": "thermal-62mm"}
TEXT_FIELDS = ("deviceSn", "shortCode", "batchTag", "groupId", "sn")
PAGE_SIZES = {"A4": (210.0, 297.0), "LETTER": (215.9, 279.4)}
# The 14 standard PDF fonts: real text without embedding a font file.
STANDARD_FONTS = (
    "Courier", "Courier-Bold", "Courier-Oblique", "Courier-BoldOblique",
    "Helvetica", "Helvetica-Bold", "Helvetica-Oblique", "Helvetica-BoldOblique",
    "Times-Roman", "Times-Bold", "Times-Italic", "Times-BoldItalic", "Symbol", "ZapfDingbats",
)  # fmt: skip
ZPL_DPIS = (152, 203, 300, 600)
PT_PER_MM = 72 / 25.4
EPS = 1e-6

# section -> {key: (kind, required, default)}
_SCHEMA: dict[str, dict[str, tuple[str, bool, object]]] = {
    "": {"name": ("str", False, "")},
    "page": {
        "size": ("size", True, None),
        "columns": ("int", False, 1),
        "rows": ("int", False, 1),
        "margin_left": ("mm", False, 0.0),
        "margin_top": ("mm", False, 0.0),
        "gap_x": ("mm", False, 0.0),
        "gap_y": ("mm", False, 0.0),
    },
    "label": {"width": ("mm+", True, None), "height": ("mm+", True, None)},
    "qr": {
        "size": ("mm+", True, None),
        "x": ("mm", False, 0.0),
        "y": ("mm", False, 0.0),
        "quiet_zone": ("int", False, 2),
    },
    "text": {
        "font": ("str", False, "Helvetica"),
        "size": ("mm+", False, 8.0),
        "x": ("mm", False, 0.0),
        "y": ("mm", False, 0.0),
        "line_height": ("mm+", False, 4.0),
        "lines": ("lines", False, []),
    },
    "zpl": {"dpi": ("int", False, 203)},
}


@dataclass(frozen=True)
class LabelTemplate:
    path: str
    name: str
    page_w: float
    page_h: float
    columns: int
    rows: int
    margin_left: float
    margin_top: float
    gap_x: float
    gap_y: float
    label_w: float
    label_h: float
    qr_size: float
    qr_x: float
    qr_y: float
    quiet_zone: int
    font: str
    font_size: float  # points
    text_x: float
    text_y: float  # baseline of the first line, from the label's top edge
    line_height: float
    lines: tuple[str, ...]
    dpi: int

    @property
    def per_page(self) -> int:
        return self.columns * self.rows

    def origin(self, row: int, column: int) -> tuple[float, float]:
        """Top-left corner (mm, from the page's top-left) of the label at ``row``, ``column``
        (0-based)."""
        return (
            self.margin_left + column * (self.label_w + self.gap_x),
            self.margin_top + row * (self.label_h + self.gap_y),
        )

    def text_lines(self, values: dict[str, str]) -> list[str]:
        """The template's text lines filled with ``values``; each one line (:func:`label_text`).
        A line whose fields are all empty for this device is left out: "sn {sn}" on the label
        of a device not in EnOS yet (docs/sync.md), "batch {batchTag}" without a batch."""
        return [
            label_text(line.format(**values))
            for line in self.lines
            if not (fields := _fields(line)) or any(values.get(f) for f in fields)
        ]

    def module_mm(self, modules: int) -> float:
        """Module width of a ``modules``-wide symbol in the reserved square (quiet zone in)."""
        return self.qr_size / (modules + 2 * self.quiet_zone)

    def to_dict(self) -> dict:
        return {"path": self.path, "name": self.name, "page": [self.page_w, self.page_h],
                "grid": [self.columns, self.rows], "label": [self.label_w, self.label_h],
                "qrSize": self.qr_size, "dpi": self.dpi}  # fmt: skip


@functools.lru_cache(maxsize=256)
def _fields(line: str) -> tuple[str, ...]:
    """The names of the fields of a template line ("sn {sn}" -> ("sn",)); parsed once."""
    return tuple(name for _, name, _, _ in string.Formatter().parse(line) if name)


def label_text(value: str) -> str:
    """``value`` as text printed on a label: one line, every control character (newline, tab,
    ESC, bidi controls...: core.rules.CONTROL_RE) replaced by a space. Stored values may predate
    the deviceSn rules, and a text field is drawn as given, so a newline would otherwise break
    the layout (or the renderer)."""
    return CONTROL_RE.sub(" ", value)


def resolve_template(spec: str | Path | None, fmt: str) -> Path | Traversable:
    """A template: ``spec`` as a file, or the name of a shipped one (enosprov/templates/labels/,
    a Traversable), or the default of ``fmt``."""
    if spec is None or str(spec) == "":
        return TEMPLATES_DIR / f"{DEFAULT_TEMPLATES[fmt]}.toml"
    path = Path(spec)
    if path.is_file():
        return path
    if path.parent == Path(".") and path.suffix in ("", ".toml"):
        named = _shipped.find(_shipped.LABELS, path.stem)
        if named is not None:
            return named
    known = _shipped.names(_shipped.LABELS)
    raise InvalidArgumentError(
        f"label template {str(spec)!r} not found",
        hint="give a TOML file or one of: " + ", ".join(known) if known else None,
    )


def load_template(spec: str | Path | None, fmt: str = "pdf") -> LabelTemplate:
    path = resolve_template(spec, fmt)
    try:
        with path.open("rb") as fh:
            doc = tomllib.load(fh)
    except OSError as exc:
        raise InvalidArgumentError(f"cannot read label template {path}: {exc}") from None
    except tomllib.TOMLDecodeError as exc:
        raise InvalidArgumentError(f"label template {path} is not valid TOML: {exc}") from None
    return parse_template(doc, str(path))


def parse_template(doc: dict, path: str = "<template>") -> LabelTemplate:
    def fail(key: str, problem: str, hint: str | None = None) -> NoReturn:
        raise InvalidArgumentError(f"label template {path}: {key}: {problem}", hint=hint)

    values: dict[str, Any] = {}  # each of the kind _SCHEMA gives it (checked by _check)
    for key in doc:
        if key in _SCHEMA and key and not isinstance(doc[key], dict):
            fail(key, f"must be a table ([{key}])")
    for section, keys in _SCHEMA.items():
        if section:
            table = doc.get(section, {})
        else:  # top level: the name, and only known sections
            table = {k: v for k, v in doc.items() if k not in _SCHEMA or not k}
            keys = {**keys, **{k: ("", False, None) for k in _SCHEMA if k}}
        for key in table:
            if key not in keys:
                fail(f"{section + '.' if section else ''}{key}", "unknown key",
                     "keys: " + ", ".join(keys))  # fmt: skip
        for key, (kind, required, default) in keys.items():
            if not kind:
                continue
            full = f"{section + '.' if section else ''}{key}"
            if key not in table:
                if required:
                    fail(full, "missing")
                values[full] = default
                continue
            values[full] = _check(table[key], kind, full, fail)

    page_w, page_h = values["page.size"]
    columns, rows = values["page.columns"], values["page.rows"]
    for key in ("page.columns", "page.rows"):
        if not 1 <= values[key] <= 100:
            fail(key, f"must be 1 to 100, not {values[key]}")
    if not 0 <= values["qr.quiet_zone"] <= 10:
        fail("qr.quiet_zone", "must be 0 to 10 modules")
    if values["zpl.dpi"] not in ZPL_DPIS:
        fail("zpl.dpi", f"must be one of {', '.join(map(str, ZPL_DPIS))}")
    if values["text.font"] not in STANDARD_FONTS:
        fail("text.font", f"{values['text.font']!r} is not a standard PDF font",
             "one of: " + ", ".join(STANDARD_FONTS))  # fmt: skip
    t = LabelTemplate(
        path=path, name=str(values["name"]), page_w=page_w, page_h=page_h,
        columns=columns, rows=rows,
        margin_left=values["page.margin_left"], margin_top=values["page.margin_top"],
        gap_x=values["page.gap_x"], gap_y=values["page.gap_y"],
        label_w=values["label.width"], label_h=values["label.height"],
        qr_size=values["qr.size"], qr_x=values["qr.x"], qr_y=values["qr.y"],
        quiet_zone=values["qr.quiet_zone"], font=values["text.font"],
        font_size=values["text.size"], text_x=values["text.x"], text_y=values["text.y"],
        line_height=values["text.line_height"], lines=tuple(values["text.lines"]),
        dpi=values["zpl.dpi"],
    )  # fmt: skip

    right = t.margin_left + t.columns * t.label_w + (t.columns - 1) * t.gap_x
    bottom = t.margin_top + t.rows * t.label_h + (t.rows - 1) * t.gap_y
    if right > t.page_w + EPS:
        fail("page", f"{t.columns} columns of {t.label_w} mm reach {right:g} mm, wider than "
             f"the {t.page_w:g} mm page", "fewer columns, smaller labels, gaps or margins")  # fmt: skip
    if bottom > t.page_h + EPS:
        fail("page", f"{t.rows} rows of {t.label_h} mm reach {bottom:g} mm, taller than the "
             f"{t.page_h:g} mm page", "fewer rows, smaller labels, gaps or margins")  # fmt: skip
    if t.qr_x + t.qr_size > t.label_w + EPS or t.qr_y + t.qr_size > t.label_h + EPS:
        fail("qr", f"a {t.qr_size:g} mm code at ({t.qr_x:g}, {t.qr_y:g}) does not fit the "
             f"{t.label_w:g} x {t.label_h:g} mm label", "lower qr.size or move it")  # fmt: skip
    if t.lines:
        last = t.text_y + (len(t.lines) - 1) * t.line_height
        if (
            t.text_x >= t.label_w
            or last > t.label_h + EPS
            or t.text_y < t.font_size / PT_PER_MM * 0.7
        ):
            fail("text", f"{len(t.lines)} lines from ({t.text_x:g}, {t.text_y:g}) mm do not fit "
                 f"the {t.label_w:g} x {t.label_h:g} mm label", "move them or use fewer lines")  # fmt: skip
    return t


def _check(value, kind: str, key: str, fail):
    if kind == "str":
        if not isinstance(value, str):
            fail(key, "must be a string")
        return value
    if kind == "int":
        if isinstance(value, bool) or not isinstance(value, int):
            fail(key, f"must be a whole number, not {value!r}")
        return value
    if kind in ("mm", "mm+"):
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            fail(key, f"must be a number, not {value!r}")
        if value < 0 or (kind == "mm+" and value <= 0) or value > 2000:
            fail(key, f"{value!r} is out of range")
        return float(value)
    if kind == "size":
        if isinstance(value, str):
            if value.upper() not in PAGE_SIZES:
                fail(key, f"unknown page size {value!r}", "A4, Letter or [width_mm, height_mm]")
            return PAGE_SIZES[value.upper()]
        if (
            isinstance(value, list)
            and len(value) == 2
            and all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in value)
            and all(0 < v <= 2000 for v in value)
        ):
            return float(value[0]), float(value[1])
        fail(key, f"must be A4, Letter or [width_mm, height_mm], not {value!r}")
    if kind == "lines":
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            fail(key, "must be a list of strings")
        for line in value:
            _check_fields(line, key, fail)
        return value
    raise AssertionError(kind)


def _check_fields(line: str, key: str, fail) -> None:
    hint = "fields: " + ", ".join("{" + f + "}" for f in TEXT_FIELDS) + "; a literal brace: {{ }}"
    try:
        parsed = list(string.Formatter().parse(line))
    except ValueError as exc:
        fail(key, f"malformed line {line!r}: {exc}", hint)
    for _, name, spec, conv in parsed:
        if name is not None and (name not in TEXT_FIELDS or spec or conv):
            fail(key, f"unknown field {{{name}}} in {line!r}", hint)
