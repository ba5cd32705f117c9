"""Intel HEX of the binary credential placed at ``FormatOptions.flash_address``.

Written by ``intelhex``: 16 data bytes a record, an extended linear address record (type 04)
wherever the upper 16 address bits change, an end-of-file record, LF line ends. The decoder
takes the address from the file, needs exactly one contiguous segment and the EOF record, and
decodes that segment as a binary credential.
"""

from __future__ import annotations

import io
import re

from ...domain.errors import InputFileError, InvalidArgumentError
from ..credential import Credential
from . import binary
from ._text import first_line

EOF_RECORD = ":00000001FF"


def encode(cred: Credential, opts) -> bytes:
    from intelhex import IntelHex

    blob = binary.encode(cred)
    if opts.flash_address + len(blob) > 1 << 32:
        raise InvalidArgumentError(
            f"a {len(blob)}-byte credential at 0x{opts.flash_address:X} runs past the 4 GiB "
            f"that Intel HEX can address"
        )
    ih = IntelHex()
    ih.frombytes(blob, offset=opts.flash_address)
    out = io.StringIO()
    ih.write_hex_file(out, write_start_addr=False)
    return out.getvalue().encode("ascii")


def read_segment(data: bytes) -> tuple[int, bytes]:
    """(start address, bytes) of the one contiguous segment in an Intel HEX file."""
    from intelhex import IntelHex, IntelHexError

    try:
        text = data.decode("ascii")
    except UnicodeDecodeError:
        raise InputFileError("Intel HEX file holds non-ASCII bytes (corrupted?)") from None
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    if not lines or lines[-1].upper() != EOF_RECORD:
        raise InputFileError("Intel HEX file has no end-of-file record at its end: truncated?")
    try:
        ih = IntelHex(io.StringIO(text))
    except IntelHexError as e:
        # intelhex says which line and what (bad checksum, bad record); no data is quoted.
        raise InputFileError(f"Intel HEX file is corrupted: {e}") from None
    segments = ih.segments()
    if not segments:
        raise InputFileError("Intel HEX file holds no data")
    if len(segments) > 1:
        gaps = ", ".join(f"0x{a:X}-0x{b - 1:X}" for a, b in segments)
        raise InputFileError(
            f"Intel HEX file has {len(segments)} separate segments ({gaps}); "
            f"a credential is one contiguous block"
        )
    start, stop = segments[0]
    return start, ih.tobinstr(start, stop - 1)


def decode(data: bytes, opts=None) -> Credential:
    _, blob = read_segment(data)
    return binary.decode(blob)


def looks_like(data: bytes) -> bool:
    return re.fullmatch(rb":[0-9A-Fa-f]{10,}", first_line(data)) is not None
