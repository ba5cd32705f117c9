"""ZPL II for Zebra printers: one ``^XA ... ^XZ`` label per device in one document.

Per label (layout from the label template, millimetres converted to dots at ``zpl.dpi``)::

    ^XA
    ^CI28                              UTF-8 field data
    ^PW<width dots>^LL<length dots>^LH0,0
    ^FO<x>,<y>^BQN,2,<magnification>^FH_^FD<ec>A,<payload>^FS
    ^FO<x>,<y>^A0N,<h>,<h>^FH_^FD<text line>^FS      (one per non-empty text line)
    ^PQ1
    ^XZ

``^BQN,2,m``: QR Model 2, magnification ``m`` dots per module, the largest that fits the
template's qr.size with its quiet zone. The field data starts with the error-correction level
and ``A`` (automatic input mode) and a comma, e.g. ``MA,``; the payload follows.

Escaping: every field is under ``^FH_``: ``_`` is the escape character, and ``^``, ``~``,
``_``, control characters and every non-ASCII character are written as ``_XX`` per UTF-8 byte
(upper-case hex), so the field data never holds a ZPL command prefix.
"""

from __future__ import annotations

import math
import re

from ..domain.errors import InvalidArgumentError
from .labels import LabelTemplate, label_text

ESCAPE_CHAR = "_"
_PLAIN = re.compile(r"[ -\]`-}]")  # printable ASCII minus ^ (0x5E), _ (0x5F), ~ (0x7E)
_HEX = re.compile(r"_([0-9A-Fa-f]{2})")
MAX_MAGNIFICATION = 10


def zpl_escape(text: str) -> str:
    """Field data for ``^FH_``: ``^ ~ _``, control and non-ASCII characters as ``_XX``."""
    return "".join(
        ch if _PLAIN.fullmatch(ch) else "".join(f"_{b:02X}" for b in ch.encode("utf-8"))
        for ch in text
    )


def zpl_unescape(data: str) -> str:
    """Inverse of :func:`zpl_escape` (what the printer does under ``^FH_`` and ``^CI28``)."""
    out = bytearray()
    i = 0
    while i < len(data):
        m = _HEX.match(data, i)
        if m:
            out.append(int(m.group(1), 16))
            i = m.end()
        else:
            out.extend(data[i].encode("utf-8"))
            i += 1
    return out.decode("utf-8")


def dots(mm: float, dpi: int) -> int:
    return round(mm / 25.4 * dpi)


class ZplDocument:
    """Labels added one by one; ``finish()`` gives the document's bytes (ASCII)."""

    def __init__(self, template: LabelTemplate, ec: str = "M") -> None:
        t = self.t = template
        self.ec = ec
        dpi = t.dpi
        self.header = f"^XA\n^CI28\n^PW{dots(t.label_w, dpi)}\n^LL{dots(t.label_h, dpi)}\n^LH0,0\n"
        self.font_h = max(10, round(t.font_size / 72 * dpi))
        self.text_x = dots(t.text_x, dpi)
        # ^FO of a text field is its top; the template gives the baseline.
        self.text_y = [
            max(0, dots(t.text_y + i * t.line_height, dpi) - round(self.font_h * 0.75))
            for i in range(len(t.lines))
        ]
        self.parts: list[str] = []
        self.count = 0

    def magnification(self, modules: int) -> int:
        t = self.t
        side = t.qr_size / 25.4 * t.dpi
        mag = min(MAX_MAGNIFICATION, math.floor(side / (modules + 2 * t.quiet_zone)))
        if mag < 1:
            raise InvalidArgumentError(
                f"label template {t.path}: qr.size {t.qr_size:g} mm at {t.dpi} dpi is too small "
                f"for a {modules}x{modules} symbol (less than one dot per module)",
                hint="raise qr.size or zpl.dpi, lower --ec or use a shorter payload",
            )
        return mag

    def add(self, modules: int, raw: bytes, lines: list[str], payload: str) -> tuple[int, int, int]:
        """One label; its (label number, 1, 1)."""
        t = self.t
        mag = self.magnification(modules)
        x = dots(t.qr_x, t.dpi) + t.quiet_zone * mag
        y = dots(t.qr_y, t.dpi) + t.quiet_zone * mag
        out = [self.header, f"^FO{x},{y}^BQN,2,{mag}^FH_^FD{self.ec}A,{zpl_escape(payload)}^FS\n"]
        for ty, line in zip(self.text_y, map(label_text, lines)):
            if line:
                out.append(f"^FO{self.text_x},{ty}^A0N,{self.font_h},{self.font_h}"
                           f"^FH_^FD{zpl_escape(line)}^FS\n")  # fmt: skip
        out.append("^PQ1\n^XZ\n")
        self.parts.append("".join(out))
        self.count += 1
        return self.count, 1, 1

    def finish(self) -> bytes:
        return "".join(self.parts).encode("ascii")
