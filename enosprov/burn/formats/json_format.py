"""JSON: one object, fields in the documented order, 2-space indent, UTF-8, trailing newline."""

from __future__ import annotations

import json

from ...domain.errors import InputFileError
from ..credential import Credential
from ._text import first_line, text_of

_str = json.encoder.encode_basestring  # json's own string escaper (ensure_ascii=False)


def encode(cred: Credential, opts=None) -> bytes:
    # Exactly json.dumps(cred.to_dict(), indent=2, ensure_ascii=False) + "\n" (a test checks),
    # built directly: json's indenting encoder is pure Python and 3x slower.
    body = ",\n".join(f"  {_str(k)}: {_str(v)}" for k, v in cred.items())
    return ("{\n" + body + "\n}\n").encode("utf-8")


def _no_duplicates(pairs: list[tuple[str, object]]) -> dict:
    out: dict = {}
    for key, value in pairs:
        if key in out:
            raise InputFileError(f"JSON credential has the key {key!r} twice")
        out[key] = value
    return out


def decode(data: bytes, opts=None) -> Credential:
    text = text_of(data, "JSON credential")
    try:
        obj = json.loads(text, object_pairs_hook=_no_duplicates)
    except json.JSONDecodeError as e:
        # e.msg says what is wrong without quoting the document (which holds secrets).
        raise InputFileError(
            f"JSON credential is malformed: {e.msg} (line {e.lineno}, column {e.colno})"
        ) from None
    if not isinstance(obj, dict):
        raise InputFileError("JSON credential must be an object of field names to strings")
    bad = sorted(k for k, v in obj.items() if not isinstance(v, str))
    if bad:
        raise InputFileError(f"JSON credential field(s) {', '.join(bad)} must be strings")
    return Credential.from_dict(obj)


def looks_like(data: bytes) -> bool:
    return first_line(data).startswith(b"{")
