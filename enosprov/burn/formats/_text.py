"""Helpers shared by the text formats."""

from __future__ import annotations

from ...domain.errors import InputFileError


def text_of(data: bytes, what: str) -> str:
    """``data`` as UTF-8 text (a leading BOM, as Windows editors write, is dropped)."""
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        raise InputFileError(f"{what} is not valid UTF-8 (byte offset {e.start})") from None


def first_line(data: bytes, limit: int = 4096) -> bytes:
    """The first non-blank line of ``data`` (within ``limit`` bytes), stripped."""
    head = data[:limit].removeprefix(b"\xef\xbb\xbf")
    for line in head.splitlines():
        if line.strip():
            return line.strip()
    return b""
