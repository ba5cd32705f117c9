"""One label: a QR Code Model 2 symbol (zxing-cpp) as a 1-bit PNG (Pillow) and as SVG.

The human-readable line (deviceSn and short code) sits under the symbol, always one line:
control characters in it (a newline, say) are drawn as spaces (labels.label_text). Every raster
label is decoded back with zxing-cpp, restricted to QR Model 2 (the generic setting also accepts
Micro QR), and compared with its payload; a mismatch raises :class:`VerifyError`.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from functools import lru_cache
from xml.sax.saxutils import escape as xml_escape

from ..domain.errors import EnosprovError, InvalidArgumentError
from .labels import label_text

EC_LEVELS = ("L", "M", "Q", "H")
MM_PER_INCH = 25.4


class VerifyError(EnosprovError):
    """A rendered symbol did not decode to its payload."""

    code = "verify_failed"


@dataclass(frozen=True)
class QrOptions:
    ec: str = "M"  # error-correction level L, M, Q or H
    quiet_zone: int = 4  # modules of white around the symbol (the standard asks for 4)
    module_px: int | None = None  # pixels per module; default 8 unless size_mm is given
    size_mm: float | None = None  # printed symbol width (quiet zone excluded) at dpi
    dpi: int = 300
    label: bool = True  # the human-readable line under the symbol
    template: str | None = None  # payload template; None = the default payload

    def __post_init__(self) -> None:
        if self.ec.upper() not in EC_LEVELS:
            raise InvalidArgumentError(
                f"unknown error-correction level {self.ec!r}", hint="one of: L, M, Q, H"
            )
        object.__setattr__(self, "ec", self.ec.upper())
        if self.quiet_zone < 0 or self.quiet_zone > 40:
            raise InvalidArgumentError("--quiet-zone must be 0 to 40 modules")
        if self.module_px is not None and self.size_mm is not None:
            raise InvalidArgumentError("give --module-px or --size-mm, not both")
        if self.module_px is not None and not 1 <= self.module_px <= 100:
            raise InvalidArgumentError("--module-px must be 1 to 100")
        if self.size_mm is not None and self.size_mm <= 0:
            raise InvalidArgumentError("--size-mm must be positive")
        if not 50 <= self.dpi <= 4800:
            raise InvalidArgumentError("--dpi must be 50 to 4800")
        if self.template is not None:
            from .payload import check_template

            check_template(self.template)

    def scale(self, modules: int, device: str = "") -> int:
        """Pixels per module for a symbol of ``modules`` modules."""
        if self.size_mm is None:
            return self.module_px or 8
        px = int(self.size_mm / MM_PER_INCH * self.dpi / modules)
        if px < 1:
            raise InvalidArgumentError(
                f"{self.size_mm} mm at {self.dpi} dpi is too small for the {modules}x{modules} "
                f"symbol{' of ' + device if device else ''}",
                hint="raise --size-mm or --dpi, or lower --ec",
            )
        return px

    def to_dict(self) -> dict:
        return {"ec": self.ec, "quietZone": self.quiet_zone, "modulePx": self.module_px,
                "sizeMm": self.size_mm, "dpi": self.dpi, "template": self.template}  # fmt: skip


@dataclass(frozen=True)
class Symbol:
    """The module matrix: ``rows[y][x]`` True for a dark module."""

    text: str
    size: int
    rows: tuple[tuple[bool, ...], ...]
    raw: bytes  # size*size bytes, 0 = dark, 255 = light (zxing-cpp's bitmap at scale 1)


def create_barcode(text: str, ec: str = "M", device: str = ""):
    """zxing-cpp's QR Code Model 2 barcode of ``text``; one clear error when it does not fit."""
    import zxingcpp

    try:
        return zxingcpp.create_barcode(text, zxingcpp.BarcodeFormat.QRCode, ec_level=ec)
    except ValueError as exc:
        who = f" of {device}" if device else ""
        raise InvalidArgumentError(
            f"the payload{who} ({len(text)} characters) is too long for a QR code at "
            f"error-correction level {ec}: {exc}",
            hint="use a shorter payload template, or a lower --ec",
        ) from None


def encode(text: str, ec: str = "M", device: str = "") -> Symbol:
    """The QR Code Model 2 symbol of ``text``; one clear error when it does not fit."""
    image = create_barcode(text, ec, device).to_image(scale=1, add_quiet_zones=False)
    height, width = image.shape
    raw = bytes(memoryview(image))
    rows = tuple(tuple(raw[y * width + x] == 0 for x in range(width)) for y in range(height))
    return Symbol(text, width, rows, raw)


@lru_cache(maxsize=8)
def _font(size: int):
    from PIL import ImageFont

    try:
        return ImageFont.load_default(size=size)
    except (TypeError, ImportError, OSError):  # Pillow without FreeType: the bitmap font
        return ImageFont.load_default()


def to_image(symbol: Symbol, options: QrOptions, caption: str | None = None, device: str = ""):
    """A 1-bit Pillow image: symbol, quiet zone, and the caption line under it."""
    from PIL import Image, ImageDraw

    scale = options.scale(symbol.size, device)
    q = options.quiet_zone
    core = Image.frombytes("L", (symbol.size, symbol.size), symbol.raw)
    side = (symbol.size + 2 * q) * scale
    core = core.resize((symbol.size * scale,) * 2, Image.Resampling.NEAREST)
    text_h = 0
    font = None
    width = side
    caption = label_text(caption or "")
    if caption and options.label:
        font = _font(max(10, min(48, 2 * scale + 6)))
        box = font.getbbox(caption)
        pad = max(2, scale)
        text_h = box[3] + 2 * pad
        width = max(side, box[2] + 2 * pad)
    img = Image.new("L", (width, side + text_h), 255)
    img.paste(core, ((width - side) // 2 + q * scale, q * scale))
    if font is not None:
        draw = ImageDraw.Draw(img)
        draw.fontmode = "1"  # no anti-aliasing: the output is 1-bit
        draw.text((width // 2, side + max(2, scale) // 2), caption, fill=0, font=font, anchor="mt")
    return img.convert("1", dither=Image.Dither.NONE)


def png_bytes(image) -> bytes:
    buf = io.BytesIO()
    image.save(buf, format="PNG", optimize=False)
    return buf.getvalue()


def verify_png(data: bytes, expected: str, device: str = "") -> None:
    """Decode ``data`` (a PNG) as QR Model 2 and compare with ``expected``; VerifyError if not."""
    from PIL import Image

    found = decode_texts(Image.open(io.BytesIO(data)))
    if found != [expected]:
        who = f" of {device}" if device else ""
        got = "nothing" if not found else ", ".join(repr(t) for t in found)
        raise VerifyError(
            f"the QR code{who} does not decode to its payload {expected!r} (decoded: {got})",
            hint="nothing was written for this device; try a larger --module-px or another --ec",
        )


def decode_texts(image) -> list[str]:
    return [b.text for b in read_qr(image)]


def read_qr(image):
    """Every QR Code Model 2 symbol in a Pillow image (rotations included)."""
    import zxingcpp

    if image.mode not in ("L", "RGB"):
        image = image.convert("L")
    return zxingcpp.read_barcodes(image, formats=zxingcpp.BarcodeFormat.QRCodeModel2)


def to_svg(symbol: Symbol, options: QrOptions, caption: str | None = None) -> bytes:
    """An SVG label: one path of dark runs (crisp edges) and the caption as a text element.

    Units are modules (viewBox); width/height are millimetres with --size-mm, else pixels.
    """
    q = options.quiet_zone
    side = symbol.size + 2 * q
    caption = label_text(caption or "")
    text_h = 3 if caption and options.label else 0
    caption_w = 0.62 * 1.6 * len(caption) + 2 if text_h else 0
    width = max(side, caption_w)
    x0 = (width - side) / 2 + q
    parts = []
    for y, row in enumerate(symbol.rows):
        x = 0
        while x < symbol.size:
            if row[x]:
                start = x
                while x < symbol.size and row[x]:
                    x += 1
                parts.append(f"M{_n(x0 + start)} {y + q}h{x - start}v1h-{x - start}z")
            else:
                x += 1
    if options.size_mm is not None:
        unit, per_module = "mm", options.size_mm / symbol.size
    else:
        unit, per_module = "px", options.scale(symbol.size)
    height = side + text_h
    out = [
        '<?xml version="1.0" encoding="UTF-8"?>\n',
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{_n(width * per_module)}{unit}" '
        f'height="{_n(height * per_module)}{unit}" viewBox="0 0 {_n(width)} {height}" '
        'shape-rendering="crispEdges">\n',
        f'<rect width="{_n(width)}" height="{height}" fill="#fff"/>\n',
        f'<path fill="#000" d="{"".join(parts)}"/>\n',
    ]
    if text_h:
        out.append(
            f'<text x="{_n(width / 2)}" y="{side + 2}" font-family="monospace" font-size="1.6" '
            f'text-anchor="middle" fill="#000">{xml_escape(caption)}</text>\n'
        )
    out.append("</svg>\n")
    return "".join(out).encode("utf-8")


def _n(value: float) -> str:
    return f"{value:.3f}".rstrip("0").rstrip(".")
