"""The QR payload: ``ENP1:<groupId>:<deviceSn>:<sn>:<batchTag>``; the short code; templates.

Format (version 1, documented in docs/qr-payload.md):

* five fields separated by ``:``; the first is the version tag ``ENP1``;
* each value is percent-escaped: ``A-Z a-z 0-9 . _ -`` stay as they are, every other character
  (``:`` and ``%`` included) becomes ``%XX`` per UTF-8 byte, upper-case hex. The text is
  therefore plain ASCII, round-trips any value, and is also safe inside a URL;
* ``sn`` (the EnOS system sn) and ``batchTag`` are empty when unknown; groupId and deviceSn
  are required.

The payload identifies a device only: it never holds a group secret, device key or secret.

Short code: what a person types when a label cannot be scanned, shown as two groups of four
(``44NH-W69G``); docs/qr-payload.md, "Short code", defines both versions:

* version 2 (new labels): derived from groupId and deviceSn only (it survives a batch tag edit
  or a new system sn), 7 Crockford base32 characters whose first is never 0-3, plus a Damm check
  character over GF(32) (letters and digits only);
* version 1 (labels printed before): derived from the whole default payload, first character
  0-3, Crockford's mod-37 check character (``* ~ $ = U`` possible).

The first character tells the versions apart. Each check catches every single-character typo
and every swap of two neighbouring characters, and no such typo of a code of one version reads
as a well-formed code of the other.
"""

from __future__ import annotations

import hashlib
import re
import string
from collections.abc import Callable
from dataclasses import dataclass

from ..domain.errors import InvalidArgumentError

VERSION = "ENP1"
SEPARATOR = ":"
FIELDS = ("groupId", "deviceSn", "sn", "batchTag", "shortCode")
_SAFE = re.compile(r"[A-Za-z0-9._-]")
_VALUE_SAFE = re.compile(r"[A-Za-z0-9._-]*")
_VALUE = re.compile(r"(?:[A-Za-z0-9._-]|%[0-9A-F]{2})*")
CROCKFORD = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
CHECK_SYMBOLS = CROCKFORD + "*~$=U"  # Crockford's check alphabet (mod 37): version 1 only
_NORMALISE = str.maketrans({"O": "0", "I": "1", "L": "1"})
V1_FIRST = "0123"  # a version 1 code holds 32 bits: its first base32 digit is 0-3


class ForeignCodeError(InvalidArgumentError):
    """A code that is not an enosprov payload (another vendor's, a URL, garbage)."""

    code = "foreign_code"


def escape(value: str) -> str:
    if _VALUE_SAFE.fullmatch(value):
        return value
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
        """The short code printed on new labels (version 2: groupId and deviceSn only)."""
        return device_short_code(self.group_id, self.device_sn)

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


def payload_text(
    group_id: str, device_sn: str, sn: str | None = None, batch_tag: str | None = None
) -> str:
    """The default (version 1) payload text of these values."""
    parts = (group_id, device_sn, sn or "", batch_tag or "")
    return SEPARATOR.join((VERSION, *map(escape, parts)))


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


# -- short code --------------------------------------------------------------------------------

# Version 2 (new labels): 7 Crockford base32 characters of a number drawn from
# SHA-256(f"{groupId}\n{deviceSn}") plus a Damm check character over GF(32). Version 1 (older
# labels): 32 bits of SHA-256(payload text) plus Crockford's mod-37 check character. A version 1
# number is below 2**32, so its first base32 digit is 0-3; a version 2 code never starts with
# 0-3. See docs/qr-payload.md, "Short code".

GF32_POLY = 0b100101  # x^5 + x^2 + 1, primitive: GF(32) = GF(2)[x] / (x^5 + x^2 + 1)
DAMM_A = 0b00010  # the element x; a * y = DAMM_A·x XOR y is totally anti-symmetric (a != 0, 1)
_V2_LOW = 4 << 30  # the smallest 35-bit number whose first base32 digit is 4
_LOW30 = (1 << 30) - 1
_LOW25 = (1 << 25) - 1
_P30 = (1 << 30) % 37  # the weight of the first of seven base32 digits, modulo 37


def gf32_mul(x: int, y: int) -> int:
    """The product of ``x`` and ``y`` (0-31, bit i the coefficient of x^i) in GF(32)."""
    product = 0
    while y:
        if y & 1:
            product ^= x
        y >>= 1
        x <<= 1
        if x & 0b100000:
            x ^= GF32_POLY
    return product


_TIMES_A = tuple(gf32_mul(DAMM_A, x) for x in range(32))


def damm_op(x: int, y: int) -> int:
    """The quasigroup operation of the version 2 check: ``x * y = a·x XOR y`` in GF(32)."""
    return _TIMES_A[x] ^ y


def damm_interim(symbols: list[int], start: int = 0) -> int:
    """Damm's interim value after ``symbols`` (each 0-31): a code is valid when it ends at 0."""
    t = start
    for s in symbols:
        t = _TIMES_A[t] ^ s
    return t


def _damm_check_of_digits(value: int) -> int:
    """The check symbol (0-31) of the seven base32 digits of ``value``: the ``c`` that brings
    the interim value back to 0, i.e. ``a·t`` for the interim value ``t`` of the digits."""
    t = 0
    for shift in (30, 25, 20, 15, 10, 5, 0):
        t = _TIMES_A[t] ^ ((value >> shift) & 31)
    return _TIMES_A[t]


# The check symbol is XOR-linear in the 35 bits of the number (x * y = a·x XOR y is linear over
# GF(2) and starts from 0): five tables of 7-bit slices give it in five look-ups.
_CHECK_TABLES = tuple(
    tuple(_damm_check_of_digits(b << (7 * k)) for b in range(128)) for k in range(5)
)


def _damm_check_of(value: int) -> int:
    """:func:`_damm_check_of_digits`, by table."""
    t0, t1, t2, t3, t4 = _CHECK_TABLES
    return (
        t0[value & 127]
        ^ t1[(value >> 7) & 127]
        ^ t2[(value >> 14) & 127]
        ^ t3[(value >> 21) & 127]
        ^ t4[(value >> 28) & 127]
    )


# (check - rest) % 37 for which "the first character mistyped as 0-3" passes the mod-37 check
_V1_CLASH = frozenset(first * _P30 % 37 for first in range(4))


def _v2_accepted(value: int) -> bool:
    """Whether ``value`` (35 bits) is a version 2 code number: its first digit is not 0-3, and
    no code one typo away that a reader takes for version 1 passes the version 1 check. The
    typos that change the version are those of the first character (to 0-3, or O/I/L) and the
    swap of the first two; refusing these numbers keeps every single typo and neighbour swap of
    either version detectable."""
    if value < _V2_LOW or value >> 35:
        return False
    check = _damm_check_of(value)
    if (check - (value & _LOW30)) % 37 in _V1_CLASH:  # the first character mistyped as 0-3
        return False
    second = (value >> 25) & 31
    if second < 4:  # the first two characters swapped
        swapped = (second << 30) | ((value >> 30) << 25) | (value & _LOW25)
        if swapped % 37 == check:
            return False
    return True


def device_code_value(group_id: str, device_sn: str) -> int:
    """The number behind the version 2 short code of a device: the first accepted number among
    the top 35 bits of each 64-bit chunk of SHA-256(groupId "\\n" deviceSn), then of the SHA-256
    of that digest, and so on (about 1.3 chunks on average)."""
    return key_code_value(f"{group_id}\n{device_sn}".encode())


def key_code_value(key: bytes) -> int:
    """:func:`device_code_value` of the UTF-8 bytes of ``groupId "\\n" deviceSn`` (bulk
    resolvers build the key from bytes)."""
    digest = hashlib.sha256(key).digest()
    value = int.from_bytes(digest[:8], "big") >> 29
    if _v2_accepted(value):  # about 78 % of devices
        return value
    while True:
        for i in (8, 16, 24):
            value = int.from_bytes(digest[i : i + 8], "big") >> 29
            if _v2_accepted(value):
                return value
        digest = hashlib.sha256(digest).digest()
        value = int.from_bytes(digest[:8], "big") >> 29
        if _v2_accepted(value):
            return value


def device_short_code(group_id: str, device_sn: str) -> str:
    """The short code new labels print (version 2): two groups of four letters and digits,
    e.g. ``44NH-W69G``; it depends on the groupId and the deviceSn only."""
    value = device_code_value(group_id, device_sn)
    code = _base32(value) + CROCKFORD[_damm_check_of(value)]
    return code[:4] + "-" + code[4:]


def short_code(payload: str) -> str:
    """The version 1 short code of a payload text (labels printed before version 2): 32 bits of
    SHA-256(payload) in Crockford base32 plus Crockford's mod-37 check character."""
    value = legacy_code_value(payload)
    digits = _base32(value)
    code = digits + _check_symbol(digits)
    return code[:4] + "-" + code[4:]


def legacy_code_value(payload: str) -> int:
    """The number behind the version 1 short code of ``payload``: the last 32 bits of its
    SHA-256."""
    return int.from_bytes(hashlib.sha256(payload.encode("utf-8")).digest()[-4:], "big")


def legacy_code_values(
    group_id: str, device_sn: str, sn: str | None, batch_tag: str | None
) -> tuple[int, int]:
    """The numbers of the version 1 short codes a label of this device may carry: of the
    payload with its system sn, and without (a label printed before registration)."""
    head = f"{VERSION}:{escape(group_id)}:{escape(device_sn)}:"
    tail = ":" + escape(batch_tag or "")
    sha = hashlib.sha256
    return (
        int.from_bytes(sha(f"{head}{escape(sn or '')}{tail}".encode()).digest()[-4:], "big"),
        int.from_bytes(sha(f"{head}{tail}".encode()).digest()[-4:], "big"),
    )


def _base32(value: int) -> str:
    digits = ""
    for _ in range(7):
        value, r = divmod(value, 32)
        digits = CROCKFORD[r] + digits
    return digits


def _check_symbol(digits: str) -> str:
    return CHECK_SYMBOLS[int_value(digits) % 37]


def int_value(digits: str) -> int:
    n = 0
    for ch in digits:
        n = n * 32 + CROCKFORD.index(ch)
    return n


def normalise_short_code(code: str) -> str:
    """Upper case, spaces and hyphens dropped, Crockford's look-alikes mapped (O->0, I/L->1)."""
    return re.sub(r"[\s-]", "", code).upper().translate(_NORMALISE)


@dataclass(frozen=True)
class ShortCode:
    """A well-formed short code: its version (1 or 2), its number and its printed form."""

    version: int
    value: int
    text: str


def parse_short_code(code: str) -> ShortCode | None:
    """The short code ``code`` spells (any case, with or without the hyphen, look-alikes
    mapped), or None unless it is well-formed with a matching check character. The first
    character tells the version: 0-3 version 1, any other version 2."""
    c = normalise_short_code(code)
    if len(c) != 8 or any(ch not in CROCKFORD for ch in c[:7]):
        return None
    value = int_value(c[:7])
    if c[0] in V1_FIRST:
        ok = c[7] == CHECK_SYMBOLS[value % 37]
        version = 1
    else:
        ok = c[7] in CROCKFORD and CROCKFORD.index(c[7]) == _damm_check_of(value)
        ok = ok and _v2_accepted(value)
        version = 2
    return ShortCode(version, value, c[:4] + "-" + c[4:]) if ok else None


def check_short_code(code: str) -> bool:
    """True when ``code`` is a well-formed short code of either version whose check character
    matches."""
    return parse_short_code(code) is not None


def is_totally_antisymmetric_quasigroup(op: Callable[[int, int], int], order: int) -> bool:
    """Whether ``op`` on ``range(order)`` is a quasigroup (a Latin square: every row and every
    column a permutation) that is totally anti-symmetric: ``(c*x)*y == (c*y)*x`` only when
    ``x == y``. Damm's scheme over such a quasigroup detects every single-symbol error and every
    swap of neighbours."""
    symbols = range(order)
    table = [[op(x, y) for y in symbols] for x in symbols]
    for x in symbols:
        if sorted(table[x]) != list(symbols) or sorted(r[x] for r in table) != list(symbols):
            return False
    for c in symbols:
        row = table[c]
        for x in symbols:
            after_x = table[row[x]]
            for y in symbols:
                if x != y and after_x[y] == table[row[y]][x]:
                    return False
    return True


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
