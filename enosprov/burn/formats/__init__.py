"""Firmware credential file formats: one module per format and the ``FORMATS`` registry.

Every format turns a :class:`~enosprov.burn.credential.Credential` into the bytes of one file
(``Format.encode``) and, except ``template``, back (``Format.decode``). ``detect`` tells which
format a file is in from its content, for ``enosprov burn verify``. Layouts: docs/burn-formats.md.

Format modules are imported on first use, and the third-party packages they need (``intelhex``,
``esp-idf-nvs-partition-gen``) only inside the functions that need them, so importing this
package (for the names of the formats, say) costs nothing.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from functools import cache
from pathlib import PurePath

from ...domain.errors import InputFileError, InvalidArgumentError
from ..credential import FIELDS, Credential

NVS_NAME_MAX = 15  # NVS keys and namespace names: at most 15 bytes (16 with the NUL)
NVS_PAGE = 4096
NVS_MIN_SIZE = 0x3000  # a read/write NVS partition: 2 pages + 1 reserved for garbage collection
NVS_MAX_SIZE = 0x1000000  # 16 MiB: larger than any flash an NVS partition lives in


def check_nvs_name(what: str, name: object) -> None:
    """An NVS key or namespace name: 1 to 15 printable ASCII characters."""
    if not isinstance(name, str) or not name:
        raise InvalidArgumentError(f"{what} must be a non-empty string")
    if not (name.isascii() and name.isprintable()):
        raise InvalidArgumentError(f"{what} {name!r} must be printable ASCII")
    if len(name) > NVS_NAME_MAX:
        raise InvalidArgumentError(
            f"{what} {name!r} is {len(name)} characters; NVS allows at most {NVS_NAME_MAX}"
        )


@dataclass(frozen=True)
class FormatOptions:
    """Options of the formats that need any. Checked when built: bad values fail at once.

    - ``flash_address``: where the ``hex`` image places the binary credential in flash.
    - ``nvs_namespace``: the NVS namespace holding the fields (1-15 printable ASCII characters).
    - ``nvs_size``: the NVS partition size in bytes, a multiple of 4096, at least 0x3000.
    - ``template``: the text of a user template (``template`` format), ``template_name`` its file
      name: the output extension comes from it (``credentials.h.tmpl`` -> ``.h``).
    """

    flash_address: int = 0x9000
    nvs_namespace: str = "enosprov"
    nvs_size: int = 0x3000
    template: str | None = None
    template_name: str | None = None

    def __post_init__(self) -> None:
        addr = self.flash_address
        if isinstance(addr, bool) or not isinstance(addr, int) or not 0 <= addr <= 0xFFFFFFFF:
            raise InvalidArgumentError(
                f"flash address {addr!r} is not a 32-bit address (0x0 to 0xFFFFFFFF)"
            )
        check_nvs_name("NVS namespace", self.nvs_namespace)
        size = self.nvs_size
        if (
            isinstance(size, bool)
            or not isinstance(size, int)
            or size % NVS_PAGE
            or not NVS_MIN_SIZE <= size <= NVS_MAX_SIZE
        ):
            raise InvalidArgumentError(
                f"NVS partition size {size!r} must be a multiple of 4096 (0x1000) "
                f"from 0x3000 to 0x1000000",
                hint="the size of the nvs partition in your partition table, e.g. 0x6000",
            )
        if self.template is not None:
            from .template import check_template

            check_template(self.template)


DEFAULT_OPTIONS = FormatOptions()


@cache
def _module(name: str):
    return importlib.import_module(f"{__name__}.{name}")


@dataclass(frozen=True)
class Format:
    """One credential file format. ``encode``/``decode`` are the only entry points."""

    name: str
    extension: str  # of the files written, with its dot
    module: str  # formats/<module>.py defines encode(cred, opts) and decode(data, opts)
    description: str
    decodable: bool = True

    def encode(self, cred: Credential, opts: FormatOptions = DEFAULT_OPTIONS) -> bytes:
        """The file content. Raises InvalidArgumentError if this credential cannot be written."""
        try:
            return _module(self.module).encode(cred, opts)
        except UnicodeEncodeError:
            bad = [n for n, v in cred.items() if not _is_utf8_encodable(v)]
            raise InvalidArgumentError(
                f"{', '.join(bad) or 'a field'} of device {cred.device_sn!r} is not valid "
                f"Unicode text (lone surrogate)"
            ) from None

    def decode(self, data: bytes, opts: FormatOptions = DEFAULT_OPTIONS) -> Credential:
        """The credential in ``data``. Raises InputFileError if it is malformed or tampered."""
        if not self.decodable:
            raise InvalidArgumentError(
                f"the {self.name} format is write-only: files made from a template cannot be "
                f"read back",
                hint="verify the json, ini, c, bin, hex or nvs files instead",
            )
        try:
            return _module(self.module).decode(bytes(data), opts)
        except UnicodeDecodeError as e:
            raise InputFileError(
                f"{self.name} credential file is not valid UTF-8 (byte offset {e.start})"
            ) from None

    def file_extension(self, opts: FormatOptions = DEFAULT_OPTIONS) -> str:
        """The extension of the files written with these options (a template's comes from it)."""
        if self.name == "template" and opts.template_name:
            return _module(self.module).extension_for(opts.template_name)
        return self.extension

    def looks_like(self, data: bytes) -> bool:
        return self.decodable and _module(self.module).looks_like(data)


def _is_utf8_encodable(value: str) -> bool:
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


FORMATS: dict[str, Format] = {
    f.name: f
    for f in (
        Format("json", ".json", "json_format", "JSON object, fields in the documented order"),
        Format("ini", ".ini", "ini", "key=value lines (INI / .env)"),
        Format("c", ".h", "c_header", "C header of #define string literals"),
        Format("bin", ".bin", "binary", "compact binary: magic, length-prefixed fields, CRC32"),
        Format("hex", ".hex", "intel_hex", "Intel HEX of the binary at a flash address"),
        Format("nvs", ".nvs.bin", "nvs", "ESP-IDF NVS partition image"),
        Format("template", ".txt", "template", "user text template", decodable=False),
    )
}

# Content checks in this order: the binary layouts first, then text from the most specific.
_DETECT_ORDER = ("bin", "nvs", "hex", "json", "c", "ini")
_BY_EXTENSION = {
    ".json": "json",
    ".ini": "ini",
    ".env": "ini",
    ".h": "c",
    ".bin": "bin",
    ".hex": "hex",
}


def detect(data: bytes, filename: str | None = None) -> str:
    """The name of the format ``data`` is in, from its content (then the file name's extension).

    Raises InputFileError naming the file when no decodable format matches.
    """
    for name in _DETECT_ORDER:
        if FORMATS[name].looks_like(data):
            return name
    if filename:
        path = PurePath(filename)
        if "".join(path.suffixes[-2:]) == ".nvs.bin":
            return "nvs"
        by_ext = _BY_EXTENSION.get(path.suffix.lower())
        if by_ext:
            return by_ext
    where = f" {filename}" if filename else ""
    raise InputFileError(
        f"cannot tell the credential format of{where}: not JSON, key=value, C header, "
        f"enosprov binary, Intel HEX or NVS image",
        hint="files written from a template cannot be verified",
    )


def decode_file(data: bytes, filename: str | None = None, opts: FormatOptions = DEFAULT_OPTIONS):
    """Detect the format of ``data`` and decode it: ``(format name, Credential)``."""
    name = detect(data, filename)
    return name, FORMATS[name].decode(data, opts)


# NVS keys are the field names: fail at import, not on a factory line, if one grows too long.
assert all(len(name) <= NVS_NAME_MAX for name, _, _ in FIELDS)
