"""ESP-IDF NVS partition image: one namespace holding every field as a string entry.

Written in process by ``esp-idf-nvs-partition-gen`` (``nvs_open`` / ``write_entry`` /
``nvs_close`` into memory, format version 2, no encryption), exactly as its ``generate``
command would write the same entries. enosprov checks names and sizes first, because the
library accepts keys longer than 15 characters and calls ``sys.exit`` on some bad input.

Read back by ``parse_nvs``, enosprov's own parser of the page format (docs/burn-formats.md):
it checks page header CRCs, the entry state bitmap, entry header CRCs, string data CRCs and
that unused space is erased flash (0xFF), so a modified image is refused, not misread.
"""

from __future__ import annotations

import io
import struct
import zlib
from dataclasses import dataclass

from ...domain.errors import InputFileError, InvalidArgumentError
from ..credential import Credential
from . import NVS_MIN_SIZE, NVS_PAGE, check_nvs_name

ENTRY_SIZE = 32
ENTRIES_PER_PAGE = 126
FIRST_ENTRY = 64  # after the 32-byte page header and the 32-byte entry state bitmap
PAGE_ACTIVE, PAGE_FULL, PAGE_EMPTY = 0xFFFFFFFE, 0xFFFFFFFC, 0xFFFFFFFF
VERSIONS = {0xFE: 2, 0xFF: 1}
ENTRY_EMPTY, ENTRY_WRITTEN, ENTRY_ERASED = 0b11, 0b10, 0b00
TYPE_STR, TYPE_BLOB, TYPE_BLOB_DATA, TYPE_BLOB_IDX = 0x21, 0x41, 0x42, 0x48
PRIMITIVE_TYPES = {0x01: 1, 0x11: 1, 0x02: 2, 0x12: 2, 0x04: 4, 0x14: 4, 0x08: 8, 0x18: 8}
# The generator fails on a string of more than 124 entries (3,968 bytes with its NUL), although
# the ESP-IDF runtime would read up to 4,000: it wants a free entry left in the page.
MAX_STRING_BYTES = 124 * ENTRY_SIZE - 1  # UTF-8 bytes, without the NUL


def _crc(data: bytes) -> int:
    """The CRC-32 NVS uses: zlib's polynomial started at 0xFFFFFFFF (ESP-IDF crc32_le)."""
    return zlib.crc32(data, 0xFFFFFFFF)


# -- writing -------------------------------------------------------------------------------


def _pages_needed(spans: list[int]) -> int:
    """Pages the generator fills with entries of these spans (it never splits a string)."""
    pages, used = 1, 0
    for span in spans:
        if used + span > ENTRIES_PER_PAGE or (span > 1 and used + span == ENTRIES_PER_PAGE):
            pages, used = pages + 1, 0
        used += span
    return pages


def check_credential(cred: Credential, opts) -> list[tuple[str, str]]:
    """The (key, value) entries of ``cred``, or InvalidArgumentError if NVS cannot hold them."""
    items = cred.items()
    spans = [1]  # the namespace entry
    for name, value in items:
        check_nvs_name("NVS key", name)
        if "\0" in value:
            raise InvalidArgumentError(
                f"{name} of device {cred.device_sn!r} contains a NUL character, "
                f"which would end the NVS string"
            )
        size = len(value.encode("utf-8"))
        if size > MAX_STRING_BYTES:
            raise InvalidArgumentError(
                f"{name} of device {cred.device_sn!r} is {size:,} bytes; an NVS string "
                f"written by esp-idf-nvs-partition-gen holds at most {MAX_STRING_BYTES:,}"
            )
        spans.append(1 + (size + 1 + ENTRY_SIZE - 1) // ENTRY_SIZE)
    pages = _pages_needed(spans)
    usable = opts.nvs_size // NVS_PAGE - 1  # the last page stays free for garbage collection
    if pages > usable:
        raise InvalidArgumentError(
            f"the credential of device {cred.device_sn!r} needs {pages} NVS pages; a "
            f"0x{opts.nvs_size:X}-byte partition has {usable}",
            hint=f"pass an NVS size of at least 0x{(pages + 1) * NVS_PAGE:X}",
        )
    return items


def encode(cred: Credential, opts) -> bytes:
    items = check_credential(cred, opts)
    from esp_idf_nvs_partition_gen import nvs_partition_gen as gen

    out = io.BytesIO()
    try:
        # What `generate` does for a read/write partition: the last page is kept free.
        nvs = gen.nvs_open(out, opts.nvs_size - NVS_PAGE, gen.Page.VERSION2)
        gen.write_entry(nvs, opts.nvs_namespace, "namespace", "", None)
        for name, value in items:
            gen.write_entry(nvs, name, "data", "string", value)
        gen.nvs_close(nvs)
    except (Exception, SystemExit) as e:  # SystemExit: some of its checks call sys.exit
        raise InvalidArgumentError(
            f"esp-idf-nvs-partition-gen could not write the credential of device "
            f"{cred.device_sn!r} ({type(e).__name__})"
        ) from None
    image = out.getvalue()
    if len(image) != opts.nvs_size:
        raise InvalidArgumentError(
            f"esp-idf-nvs-partition-gen wrote {len(image)} bytes for a "
            f"0x{opts.nvs_size:X}-byte partition"
        )
    return image


# -- reading -------------------------------------------------------------------------------


@dataclass(frozen=True)
class NvsEntry:
    """One item of an NVS image: where it is, its header fields, and its value.

    ``value`` is an int for the integer types, the data bytes (with the NUL of a string) for
    strings and blob chunks, and None for a blob index.
    """

    page: int
    slot: int
    ns: int
    type: int
    span: int
    chunk: int
    key: str
    value: int | bytes | None


def _bad(page: int, slot: int | None, what: str) -> InputFileError:
    where = f"page {page}" if slot is None else f"page {page} entry {slot}"
    return InputFileError(f"NVS image {where}: {what} (corrupted or modified)")


def _parse_entry(page_no: int, page: bytes, slot: int, states: list[int]) -> NvsEntry:
    off = FIRST_ENTRY + slot * ENTRY_SIZE
    head = page[off : off + ENTRY_SIZE]
    ns, typ, span, chunk, crc = struct.unpack_from("<BBBBI", head)
    if _crc(head[0:4] + head[8:32]) != crc:
        raise _bad(page_no, slot, "entry header CRC mismatch")
    if span < 1 or slot + span > ENTRIES_PER_PAGE:
        raise _bad(page_no, slot, f"entry span {span} does not fit the page")
    if any(states[s] != ENTRY_WRITTEN for s in range(slot + 1, slot + span)):
        raise _bad(page_no, slot, "entry data is not marked written")
    raw_key = head[8:24]
    end = raw_key.find(0)
    if end < 1 or not raw_key[:end].isascii():
        raise _bad(page_no, slot, "entry key is empty, too long or not ASCII")
    key = raw_key[:end].decode("ascii")
    value: int | bytes | None
    if typ in (TYPE_STR, TYPE_BLOB, TYPE_BLOB_DATA):
        size, data_crc = struct.unpack_from("<H2xI", head, 24)
        if span != 1 + (size + ENTRY_SIZE - 1) // ENTRY_SIZE:
            raise _bad(page_no, slot, f"data size {size} does not match span {span}")
        payload = page[off + ENTRY_SIZE : off + span * ENTRY_SIZE]
        value = payload[:size]
        if payload[size:].strip(b"\xff"):
            raise _bad(page_no, slot, "bytes after the data are not erased")
        if _crc(value) != data_crc:
            raise _bad(page_no, slot, f"data CRC mismatch for key {key!r}")
    elif typ in PRIMITIVE_TYPES:
        if span != 1:
            raise _bad(page_no, slot, f"integer entry with span {span}")
        value = int.from_bytes(head[24 : 24 + PRIMITIVE_TYPES[typ]], "little", signed=typ > 0x10)
    elif typ == TYPE_BLOB_IDX:
        if span != 1:
            raise _bad(page_no, slot, f"blob index with span {span}")
        value = None
    else:
        raise _bad(page_no, slot, f"unknown entry type 0x{typ:02X}")
    return NvsEntry(page_no, slot, ns, typ, span, chunk, key, value)


def _parse_page(page_no: int, page: bytes) -> list[NvsEntry]:
    state, _seq, version = struct.unpack_from("<IIB", page)
    if state == PAGE_EMPTY:
        if page.strip(b"\xff"):
            raise _bad(page_no, None, "page marked empty holds data")
        return []
    if state not in (PAGE_ACTIVE, PAGE_FULL):
        raise _bad(page_no, None, f"page state 0x{state:08X} is not active or full")
    if _crc(page[4:28]) != struct.unpack_from("<I", page, 28)[0]:
        raise _bad(page_no, None, "page header CRC mismatch")
    if version not in VERSIONS:
        raise _bad(page_no, None, f"unknown NVS format version byte 0x{version:02X}")
    bitmap = page[32:64]
    if bitmap[31] & 0xF0 != 0xF0:
        raise _bad(page_no, None, "unused bits of the entry state bitmap are set")
    states = [(bitmap[s // 4] >> (s % 4 * 2)) & 3 for s in range(ENTRIES_PER_PAGE)]
    entries = []
    slot = 0
    while slot < ENTRIES_PER_PAGE and states[slot] != ENTRY_EMPTY:
        if states[slot] != ENTRY_WRITTEN:
            # A fresh image never holds erased entries; a flash dump of a used device may.
            what = "erased" if states[slot] == ENTRY_ERASED else "invalid"
            raise _bad(page_no, slot, f"entry marked {what}; enosprov reads fresh images only")
        entry = _parse_entry(page_no, page, slot, states)
        entries.append(entry)
        slot += entry.span
    for rest in range(slot, ENTRIES_PER_PAGE):
        off = FIRST_ENTRY + rest * ENTRY_SIZE
        if states[rest] != ENTRY_EMPTY or page[off : off + ENTRY_SIZE].strip(b"\xff"):
            raise _bad(page_no, rest, "data after the last written entry")
    return entries


def parse_nvs(data: bytes) -> tuple[dict[str, int], list[NvsEntry]]:
    """The namespaces (name -> index) and the entries of an NVS partition image, checked."""
    size = len(data)
    if size % NVS_PAGE or size < NVS_MIN_SIZE:
        raise InputFileError(
            f"NVS image is {size:,} bytes: not a whole number of 4096-byte pages, "
            f"at least 3 (truncated?)"
        )
    entries: list[NvsEntry] = []
    for page_no in range(size // NVS_PAGE):
        entries += _parse_page(page_no, data[page_no * NVS_PAGE : (page_no + 1) * NVS_PAGE])
    namespaces: dict[str, int] = {}
    for e in entries:
        if e.ns == 0:
            if e.type != 0x01 or not isinstance(e.value, int) or not 0 < e.value < 0xFF:
                raise _bad(e.page, e.slot, "namespace 0 holds something else than a namespace")
            if e.key in namespaces or e.value in namespaces.values():
                raise _bad(e.page, e.slot, f"namespace {e.key!r} or its index is defined twice")
            namespaces[e.key] = e.value
    return namespaces, entries


def decode(data: bytes, opts) -> Credential:
    namespaces, entries = parse_nvs(data)
    index = namespaces.get(opts.nvs_namespace)
    if index is None:
        found = ", ".join(repr(n) for n in namespaces) or "none"
        raise InputFileError(
            f"NVS image has no namespace {opts.nvs_namespace!r} (found: {found})",
            hint="pass the NVS namespace the image was written with",
        )
    values: dict[str, str] = {}
    for e in entries:
        if e.ns != index:
            continue
        if e.type != TYPE_STR:
            raise _bad(e.page, e.slot, f"key {e.key!r} has type 0x{e.type:02X}, not a string")
        if e.key in values:
            raise _bad(e.page, e.slot, f"key {e.key!r} appears twice")
        raw = e.value
        assert isinstance(raw, bytes)
        if not raw.endswith(b"\0") or b"\0" in raw[:-1]:
            raise _bad(e.page, e.slot, f"string {e.key!r} is not one NUL-terminated string")
        try:
            values[e.key] = raw[:-1].decode("utf-8")
        except UnicodeDecodeError:
            raise _bad(e.page, e.slot, f"string {e.key!r} is not valid UTF-8") from None
    return Credential.from_dict(values)


def looks_like(data: bytes) -> bool:
    """The start of a used NVS page: active or full state, a known version byte."""
    return (
        len(data) >= FIRST_ENTRY
        and struct.unpack_from("<I", data)[0] in (PAGE_ACTIVE, PAGE_FULL)
        and data[8] in VERSIONS
    )
