"""C header: one ``#define ENOSPROV_<FIELD>`` string literal per field.

    #ifndef ENOSPROV_CREDENTIAL_H
    #define ENOSPROV_CREDENTIAL_H
    #define ENOSPROV_CREDENTIAL_VERSION 2
    #define ENOSPROV_PROFILE "bootstrap"
    #define ENOSPROV_DEVICE_SN "MTR-000000001"
    ...
    #endif /* ENOSPROV_CREDENTIAL_H */

Literals hold printable ASCII as is; ``"`` ``\\`` newline, CR and tab as ``\\"`` ``\\\\`` ``\\n``
``\\r`` ``\\t``; a ``?`` after a ``?`` as ``\\?`` (no trigraphs); every other byte of the UTF-8
text as ``\\xNN``. A hex escape followed by a hex digit closes the literal and opens another
(``"\\xc3\\xa9" "a"``), since C reads as many hex digits as follow. NUL is refused: C strings
end there. Version 2 adds ENOSPROV_DEVICE_NAME and ENOSPROV_TIMEZONE; version 1 headers are read
too (a bootstrap one then lacks them: re-export).
"""

from __future__ import annotations

import re

from ...domain.errors import InputFileError, InvalidArgumentError
from ..credential import FIELD_NAMES, Credential
from ._text import text_of

GUARD = "ENOSPROV_CREDENTIAL_H"
VERSION_MACRO = "ENOSPROV_CREDENTIAL_VERSION"
VERSION = 2  # written
READ_VERSIONS = ("1", "2")


def macro_name(field: str) -> str:
    """``deviceSn`` -> ``ENOSPROV_DEVICE_SN``."""
    return "ENOSPROV_" + re.sub(r"(?<=[a-z0-9])(?=[A-Z])", "_", field).upper()


MACROS = {macro_name(f): f for f in FIELD_NAMES}
_HEX = frozenset("0123456789abcdefABCDEF")
_SIMPLE = {0x22: '\\"', 0x5C: "\\\\", 0x0A: "\\n", 0x0D: "\\r", 0x09: "\\t"}


def c_literal(value: str) -> str:
    """A C string literal (possibly several, concatenated) holding the UTF-8 bytes of ``value``."""
    out = ['"']
    after_hex = False
    for b in value.encode("utf-8"):
        if b in _SIMPLE:
            piece = _SIMPLE[b]
        elif 0x20 <= b < 0x7F:
            ch = chr(b)
            if after_hex and ch in _HEX:
                out.append('" "')
            piece = "\\?" if ch == "?" and out[-1].endswith("?") else ch
        else:
            out.append(f"\\x{b:02x}")
            after_hex = True
            continue
        out.append(piece)
        after_hex = False
    out.append('"')
    return "".join(out)


def encode(cred: Credential, opts=None) -> bytes:
    items = cred.items()
    for name, value in items:
        if "\0" in value:
            raise InvalidArgumentError(
                f"{name} of device {cred.device_sn!r} contains a NUL character, "
                f"which would end the C string"
            )
    lines = [
        f"/* enosprov credential v{VERSION}, {cred.profile} profile. Generated: do not edit."
        f" Holds secrets. */",
        f"#ifndef {GUARD}",
        f"#define {GUARD}",
        "",
        f"#define {VERSION_MACRO} {VERSION}",
    ]
    lines += [f"#define {macro_name(name)} {c_literal(value)}" for name, value in items]
    lines += ["", f"#endif /* {GUARD} */", ""]
    return "\n".join(lines).encode("ascii")


_DEFINE = re.compile(r"\s*#\s*define\s+(\w+)(.*)")
_OCTAL = frozenset("01234567")
_ESCAPES = {
    '"': 0x22, "'": 0x27, "?": 0x3F, "\\": 0x5C,
    "a": 0x07, "b": 0x08, "f": 0x0C, "n": 0x0A, "r": 0x0D, "t": 0x09, "v": 0x0B,
}  # fmt: skip


def parse_literals(text: str, lineno: int) -> bytes:
    """The bytes of a sequence of C string literals, as in ``"ab" "\\x41"`` (comments may follow)."""
    out = bytearray()
    i, n = 0, len(text)
    seen = False
    while True:
        while i < n and text[i] in " \t":
            i += 1
        if i == n or text.startswith(("/*", "//"), i):
            break
        if text[i] != '"':
            raise InputFileError(f"line {lineno}: expected a C string literal")
        i += 1
        seen = True
        while True:
            if i >= n:
                raise InputFileError(f"line {lineno}: C string literal has no closing quote")
            ch = text[i]
            if ch == '"':
                i += 1
                break
            if ch != "\\":
                out += ch.encode("utf-8")
                i += 1
                continue
            esc = text[i + 1 : i + 2]
            if esc in _ESCAPES:
                out.append(_ESCAPES[esc])
                i += 2
            elif esc == "x":
                j = i + 2
                while j < n and text[j] in _HEX:
                    j += 1
                if j == i + 2 or int(text[i + 2 : j], 16) > 0xFF:
                    raise InputFileError(f"line {lineno}: bad \\x escape")
                out.append(int(text[i + 2 : j], 16))
                i = j
            elif esc in _OCTAL:
                j = i + 1
                while j < n and j < i + 4 and text[j] in _OCTAL:
                    j += 1
                value = int(text[i + 1 : j], 8)
                if value > 0xFF:
                    raise InputFileError(f"line {lineno}: bad octal escape")
                out.append(value)
                i = j
            else:
                raise InputFileError(f"line {lineno}: unknown escape sequence")
    if not seen:
        raise InputFileError(f"line {lineno}: expected a C string literal")
    return bytes(out)


def decode(data: bytes, opts=None) -> Credential:
    text = text_of(data, "C header credential")
    values: dict[str, str] = {}
    version = None
    in_comment = False
    for lineno, line in enumerate(text.split("\n"), 1):
        line = line.removesuffix("\r")
        stripped = line.strip()
        if in_comment:
            in_comment = "*/" not in stripped
            continue
        if not stripped or stripped.startswith("//"):
            continue
        if stripped.startswith("/*"):
            in_comment = "*/" not in stripped[2:]
            continue
        m = _DEFINE.fullmatch(line)
        if not m:
            if stripped.startswith("#"):
                continue  # include guard, #endif, #pragma once
            raise InputFileError(f"line {lineno}: expected a #define")
        macro, rest = m.groups()
        if macro == GUARD:
            continue
        if macro == VERSION_MACRO:
            version = rest.split("/")[0].strip()
            if version not in READ_VERSIONS:
                raise InputFileError(
                    f"C header credential version {version!r} is not supported "
                    f"(this enosprov reads versions {', '.join(READ_VERSIONS)})"
                )
            continue
        field = MACROS.get(macro)
        if field is None:
            raise InputFileError(f"line {lineno}: unknown macro {macro}")
        if field in values:
            raise InputFileError(f"line {lineno}: {macro} is defined twice")
        raw = parse_literals(rest, lineno)
        try:
            values[field] = raw.decode("utf-8")
        except UnicodeDecodeError:
            raise InputFileError(f"line {lineno}: {macro} is not valid UTF-8") from None
    if version is None:
        raise InputFileError(f"C header credential lacks {VERSION_MACRO}")
    return Credential.from_dict(values)


def looks_like(data: bytes) -> bool:
    head = data[:4096]
    return re.search(rb"^[ \t]*#[ \t]*(?:ifndef|define|pragma)\b", head, re.M) is not None
