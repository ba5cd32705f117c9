"""The enosprov binary credential (docs/burn-formats.md, "Binary"). All integers little-endian.

    offset  size  content
    0       4     magic b"ENPV"
    4       1     layout version, 2 (1 is read too)
    5       1     profile: 0 bootstrap, 1 triple
    6       1     field count N
    7       ...   N fields: tag u8 (index in FIELDS), length u16, that many UTF-8 bytes
    end-4   4     CRC-32 (zlib.crc32, IEEE 802.3) of every byte before it

Fields come in FIELDS order and only when they have a value. The profile is the header byte, so
tag 0 (``profile``) never appears. Nothing pads or aligns anything.

Layout 2 is layout 1 plus tags 12 (deviceName) and 13 (timezone), which a bootstrap credential
always has; the version byte lets firmware tell them apart. Version 1 files are still read (tags
1-11 only): a bootstrap one then fails with the "lacks deviceName, timezone: re-export" error.
"""

from __future__ import annotations

import struct
import zlib

from ...domain.errors import InputFileError, InvalidArgumentError
from ..credential import FIELD_NAMES, PROFILES, Credential

MAGIC = b"ENPV"
VERSION = 2  # written
LAST_TAG = {1: 11, 2: 13}  # the layout versions read, and the last tag each defines
HEADER = struct.Struct("<4sBBB")
FIELD_HEAD = struct.Struct("<BH")
CRC = struct.Struct("<I")
MIN_SIZE = HEADER.size + CRC.size
MAX_VALUE = 0xFFFF
PROFILE_CODES = {name: code for code, name in enumerate(PROFILES)}
TAGS = {name: tag for tag, name in enumerate(FIELD_NAMES)}


def encode(cred: Credential, opts=None) -> bytes:
    code = PROFILE_CODES.get(cred.profile)
    if code is None:
        raise InvalidArgumentError(f"credential profile {cred.profile!r} has no binary code")
    items = [(n, v) for n, v in cred.items() if n != "profile"]  # the header holds the profile
    parts = [HEADER.pack(MAGIC, VERSION, code, len(items))]
    for name, value in items:
        raw = value.encode("utf-8")
        if len(raw) > MAX_VALUE:
            raise InvalidArgumentError(
                f"{name} of device {cred.device_sn!r} is {len(raw):,} bytes; "
                f"the binary format holds at most {MAX_VALUE:,} a field"
            )
        parts.append(FIELD_HEAD.pack(TAGS[name], len(raw)))
        parts.append(raw)
    body = b"".join(parts)
    return body + CRC.pack(zlib.crc32(body))


def decode(data: bytes, opts=None) -> Credential:
    size = len(data)
    if data[:4] != MAGIC:
        raise InputFileError("not an enosprov binary credential: it does not start with ENPV")
    if size < MIN_SIZE:
        raise InputFileError(f"binary credential truncated: {size} bytes, the smallest is 11")
    _, version, code, count = HEADER.unpack_from(data)
    if version not in LAST_TAG:
        raise InputFileError(
            f"binary credential layout version {version} is not supported "
            f"(this enosprov reads versions {', '.join(map(str, LAST_TAG))})"
        )
    end = size - CRC.size
    fields: list[tuple[int, bytes]] = []
    pos = HEADER.size
    for i in range(count):
        if pos + FIELD_HEAD.size > end:
            raise _truncated(size, i, count)
        tag, length = FIELD_HEAD.unpack_from(data, pos)
        pos += FIELD_HEAD.size
        if pos + length > end:
            raise _truncated(size, i, count)
        fields.append((tag, data[pos : pos + length]))
        pos += length
    if pos != end:
        raise InputFileError(
            f"binary credential has {end - pos} unexpected byte(s) after its {count} fields "
            f"(corrupted, or not one credential)"
        )
    if zlib.crc32(data[:end]) != CRC.unpack_from(data, end)[0]:
        raise InputFileError(
            "binary credential CRC-32 mismatch: the file is corrupted or was modified"
        )
    if code >= len(PROFILES):
        raise InputFileError(f"binary credential has unknown profile code {code}")
    values = {"profile": PROFILES[code]}
    for tag, raw in fields:
        if not 0 < tag <= LAST_TAG[version]:
            raise InputFileError(
                f"binary credential has unknown field tag {tag} (layout version {version})"
            )
        name = FIELD_NAMES[tag]
        if name in values:
            raise InputFileError(f"binary credential has field {name} (tag {tag}) twice")
        try:
            values[name] = raw.decode("utf-8")
        except UnicodeDecodeError:
            raise InputFileError(f"binary credential field {name} is not valid UTF-8") from None
    return Credential.from_dict(values)


def _truncated(size: int, index: int, count: int) -> InputFileError:
    return InputFileError(
        f"binary credential truncated or corrupted: field {index + 1} of {count} runs past "
        f"the end of the {size}-byte file"
    )


def looks_like(data: bytes) -> bool:
    return data[:4] == MAGIC


assert LAST_TAG[VERSION] == len(FIELD_NAMES) - 1  # a new field needs a new layout version
