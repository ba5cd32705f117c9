"""The QR payload: ``ENP1:<groupId>:<deviceSn>:<sn>:<batchTag>``; the short code; templates.

Format (version 1, documented in docs/qr-payload.md):

* five fields separated by ``:``; the first is the version tag ``ENP1``;
* each value is percent-escaped: ``A-Z a-z 0-9 . _ -`` stay as they are, every other character
  (``:`` and ``%`` included) becomes ``%XX`` per UTF-8 byte, upper-case hex. The text is
  therefore plain ASCII, round-trips any value, and is also safe inside a URL;
* ``sn`` (the EnOS system sn) and ``batchTag`` are empty when unknown; groupId and deviceSn
  are required.

The payload identifies a device only: it never holds a group secret, device key or secret.

Short code: what a person types when a label cannot be scanned. The last 8 hex digits of the
SHA-256 of the default payload (32 bits) in Crockford base32 (7 characters, zero-padded) plus
Crockford's mod-37 check character, shown as two groups of four (e.g. ``7K3M-9QXA``). The check character catches every
single-character typo and every swap of two neighbouring characters.
"""

from __future__ import annotations

import hashlib
import re
import string
from dataclasses import dataclass

from ..errors import InvalidArgumentError

VERSION = "ENP1"
SEPARATOR = ":"
FIELDS = ("groupId", "deviceSn", "sn", "batchTag", "shortCode")
_SAFE = re.compile(r"[A-Za-z0-9._-]")
_VALUE = re.compile(r"(?:[A-Za-z0-9._-]|%[0-9A-F]{2})*")
CROCKFORD = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
CHECK_SYMBOLS = CROCKFORD + "*~$=U"  # Crockford's check alphabet (mod 37)
_NORMALISE = str.maketrans({"O": "0", "I": "1", "L": "1"})


class ForeignCodeError(InvalidArgumentError):
    """A code that is not an enosprov payload (another vendor's, a URL, garbage)."""

    code = "foreign_code"


def escape(value: str) -> str:
    return "".join(
        ch if _SAFE.fullmatch(ch) else "".join(f"%{b:02X}" for b in ch.encode("utf-8"))
        for ch in value
    )


def unescape(text: str) -> str:
    """Inverse of :func:`escape`; raises ValueError on anything escape() cannot produce."""
    if not _VALUE.fullmatch(text):
        raise ValueError(f"bad characters in {text!r}")
    out = bytearray()
    i = 0
    while i < len(text):
        if text[i] == "%":
            out.append(int(text[i + 1 : i + 3], 16))
            i += 3
        else:
            out.append(ord(text[i]))
            i += 1
    return out.decode("utf-8")  # UnicodeDecodeError is a ValueError


@dataclass(frozen=True)
class Payload:
    """What a label says about its device."""

    group_id: str
    device_sn: str
    sn: str | None = None
    batch_tag: str | None = None
    version: str = VERSION

    def __post_init__(self) -> None:
        if not self.group_id or not self.device_sn:
            raise InvalidArgumentError("a QR payload needs a groupId and a deviceSn")

    @property
    def text(self) -> str:
        parts = (self.group_id, self.device_sn, self.sn or "", self.batch_tag or "")
        return SEPARATOR.join((self.version, *map(escape, parts)))

    @property
    def short_code(self) -> str:
        return short_code(self.text)

    def values(self) -> dict[str, str]:
        """The template fields (raw, unescaped values)."""
        return {
            "groupId": self.group_id,
            "deviceSn": self.device_sn,
            "sn": self.sn or "",
            "batchTag": self.batch_tag or "",
            "shortCode": self.short_code,
        }

    def to_dict(self) -> dict:
        return {
            "version": self.version,
            "groupId": self.group_id,
            "deviceSn": self.device_sn,
            "sn": self.sn,
            "batchTag": self.batch_tag,
            "shortCode": self.short_code,
        }


def parse_payload(text: str) -> Payload:
    """The Payload of a default enosprov QR text; ForeignCodeError for anything else."""
    parts = text.split(SEPARATOR)
    if parts[0] != VERSION:
        if re.fullmatch(r"ENP\d+", parts[0]):
            raise ForeignCodeError(
                f"enosprov payload version {parts[0]} is not supported (this enosprov reads "
                f"{VERSION})",
                hint="upgrade enosprov",
            )
        raise ForeignCodeError(f"not an enosprov payload: {_preview(text)}")
    if len(parts) != 5:
        raise ForeignCodeError(
            f"not an enosprov payload ({len(parts)} fields, expected 5): {_preview(text)}"
        )
    try:
        group_id, device_sn, sn, batch_tag = (unescape(p) for p in parts[1:])
    except ValueError:
        raise ForeignCodeError(
            f"not an enosprov payload (bad escaping): {_preview(text)}"
        ) from None
    if not group_id or not device_sn:
        raise ForeignCodeError(f"enosprov payload without groupId or deviceSn: {_preview(text)}")
    return Payload(group_id, device_sn, sn or None, batch_tag or None)


def _preview(text: str, limit: int = 60) -> str:
    shown = text if len(text) <= limit else text[:limit] + "..."
    return repr(shown)


# -- short code ---------------------------------------------------------------------------------


def short_code(payload: str) -> str:
    """Two groups of four characters (``7K3M-9QXA``): 32 bits of SHA-256(payload) in Crockford base32 plus a check character."""
    value = int(hashlib.sha256(payload.encode("utf-8")).hexdigest()[-8:], 16)
    digits = ""
    for _ in range(7):
        value, r = divmod(value, 32)
        digits = CROCKFORD[r] + digits
    code = digits + _check_symbol(digits)
    return code[:4] + "-" + code[4:]


def _check_symbol(digits: str) -> str:
    return CHECK_SYMBOLS[int_value(digits) % 37]


def int_value(digits: str) -> int:
    n = 0
    for ch in digits:
        n = n * 32 + CROCKFORD.index(ch)
    return n


def normalise_short_code(code: str) -> str:
    """Upper case, separators dropped, Crockford's look-alikes mapped (O->0, I/L->1)."""
    cleaned = re.sub(r"[\s-]", "", code).upper()
    return cleaned[:7].translate(_NORMALISE) + cleaned[7:]


def check_short_code(code: str) -> bool:
    """True when ``code`` is a well-formed short code whose check character matches."""
    c = normalise_short_code(code)
    if len(c) != 8 or any(ch not in CROCKFORD for ch in c[:7]) or c[7] not in CHECK_SYMBOLS:
        return False
    return _check_symbol(c[:7]) == c[7]


# -- templates ----------------------------------------------------------------------------------


def check_template(template: str) -> list[str]:
    """The fields a payload template uses; InvalidArgumentError for unknown or malformed ones."""
    try:
        parsed = list(string.Formatter().parse(template))
    except ValueError as exc:
        raise InvalidArgumentError(
            f"payload template {template!r} is malformed: {exc}",
            hint="write a literal brace as {{ or }}",
        ) from None
    used = []
    for _, name, spec, conv in parsed:
        if name is None:
            continue
        if name not in FIELDS or spec or conv:
            raise InvalidArgumentError(
                f"unknown field {{{name}{'!' + conv if conv else ''}{':' + spec if spec else ''}}} "
                "in the payload template",
                hint="fields: " + ", ".join("{" + f + "}" for f in FIELDS),
            )
        used.append(name)
    if "deviceSn" not in used and "sn" not in used and "shortCode" not in used:
        raise InvalidArgumentError(
            "the payload template must identify the device",
            hint="use {deviceSn}, {sn} or {shortCode}",
        )
    return used


def render_payload(payload: Payload, template: str | None = None) -> str:
    """The QR text: the default payload, or ``template`` with its fields filled in.

    Template values are percent-escaped like the default payload (a URL template stays a valid
    URL); ``{shortCode}`` is the short code of the default payload.
    """
    if not template:
        return payload.text
    check_template(template)
    values = {k: (v if k == "shortCode" else escape(v)) for k, v in payload.values().items()}
    return template.format(**values)
