"""key=value lines (INI without sections, or a .env file).

    # enosprov credential v2
    profile=bootstrap
    deviceSn=MTR-000000001
    groupSecret="a b#c"

Values are written bare unless they contain whitespace, a quote, ``#``, ``;``, ``=``, a
backslash or a non-printable character; then they are double-quoted with backslash escapes
(``\\"`` ``\\\\`` ``\\n`` ``\\r`` ``\\t`` ``\\xNN`` ``\\uNNNN`` ``\\UNNNNNNNN``). A bare value is
taken literally. The decoder skips blank lines and ``#``/``;`` comments and refuses unknown or
repeated keys.
"""

from __future__ import annotations

import re

from ...domain.errors import InputFileError
from ..credential import FIELD_NAMES, Credential
from ._text import first_line, text_of

HEADER = "# enosprov credential v2"  # a comment: the reader ignores it (v1 files read too)

_NEEDS_QUOTES = re.compile(r"""[\s"'#=;\\]""")
_ESCAPES = {'"': '\\"', "\\": "\\\\", "\n": "\\n", "\r": "\\r", "\t": "\\t"}
_UNESCAPES = {'"': '"', "\\": "\\", "n": "\n", "r": "\r", "t": "\t"}
_LINE = re.compile(r"\s*([A-Za-z_][A-Za-z0-9_.-]*)\s*=\s*(.*?)\s*")
_HEX_LEN = {"x": 2, "u": 4, "U": 8}


def _quote(value: str) -> str:
    if value.isprintable() and not _NEEDS_QUOTES.search(value):
        return value
    out = []
    for ch in value:
        if ch in _ESCAPES:
            out.append(_ESCAPES[ch])
        elif ch.isprintable():
            out.append(ch)
        elif 0xD800 <= ord(ch) <= 0xDFFF:
            ch.encode("utf-8")  # a lone surrogate: raises UnicodeEncodeError like other formats
        elif ord(ch) < 0x100:
            out.append(f"\\x{ord(ch):02x}")
        elif ord(ch) < 0x10000:
            out.append(f"\\u{ord(ch):04x}")
        else:
            out.append(f"\\U{ord(ch):08x}")
    return '"' + "".join(out) + '"'


def encode(cred: Credential, opts=None) -> bytes:
    lines = [HEADER] + [f"{name}={_quote(value)}" for name, value in cred.items()]
    return ("\n".join(lines) + "\n").encode("utf-8")


def _unquote(raw: str, lineno: int) -> str:
    """The value of a double-quoted string that starts ``raw``; only a comment may follow it."""
    out: list[str] = []
    i, n = 1, len(raw)
    while i < n:
        ch = raw[i]
        if ch == '"':
            rest = raw[i + 1 :].strip()
            if rest and not rest.startswith("#"):
                raise InputFileError(f"line {lineno}: unexpected text after the closing quote")
            return "".join(out)
        if ch != "\\":
            out.append(ch)
            i += 1
            continue
        esc = raw[i + 1 : i + 2]
        if esc in _UNESCAPES:
            out.append(_UNESCAPES[esc])
            i += 2
        elif esc in _HEX_LEN:
            digits = raw[i + 2 : i + 2 + _HEX_LEN[esc]]
            if len(digits) != _HEX_LEN[esc] or not all(
                c in "0123456789abcdefABCDEF" for c in digits
            ):
                raise InputFileError(f"line {lineno}: bad \\{esc} escape")
            code = int(digits, 16)
            if code > 0x10FFFF or 0xD800 <= code <= 0xDFFF:
                raise InputFileError(f"line {lineno}: \\{esc} escape is not a Unicode character")
            out.append(chr(code))
            i += 2 + len(digits)
        else:
            raise InputFileError(f"line {lineno}: unknown escape sequence in a quoted value")
    raise InputFileError(f"line {lineno}: quoted value has no closing quote")


def decode(data: bytes, opts=None) -> Credential:
    text = text_of(data, "key=value credential")
    values: dict[str, str] = {}
    for lineno, line in enumerate(text.split("\n"), 1):
        line = line.removesuffix("\r")
        stripped = line.strip()
        if not stripped or stripped[0] in "#;":
            continue
        m = _LINE.fullmatch(line)
        if not m:
            raise InputFileError(f"line {lineno}: expected key=value")
        key, raw = m.groups()
        if key not in FIELD_NAMES:
            raise InputFileError(
                f"line {lineno}: unknown key {key!r} (known: {', '.join(FIELD_NAMES)})"
            )
        if key in values:
            raise InputFileError(f"line {lineno}: key {key!r} is given twice")
        values[key] = _unquote(raw, lineno) if raw.startswith('"') else raw
    return Credential.from_dict(values)


def looks_like(data: bytes) -> bool:
    """The first line that is not a comment is key=value."""
    head = data[:4096].removeprefix(b"\xef\xbb\xbf")
    for line in head.splitlines():
        line = line.strip()
        if line and line[:1] not in (b"#", b";"):
            return re.match(rb"[A-Za-z_][A-Za-z0-9_.-]*\s*=", line) is not None
    return first_line(data).startswith(b"# enosprov credential")
