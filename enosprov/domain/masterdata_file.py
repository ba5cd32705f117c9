"""Master data groups defined in TOML files (EnOS has no API for them). See docs/masterdata.md."""

from __future__ import annotations

import sys
from pathlib import Path

from .errors import InputFileError
from .models import MasterDataAttribute, MasterDataGroup

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    # a dependency on Python < 3.11 only: mypy checks this branch (python_version 3.10) where
    # it may not be installed
    import tomli as tomllib  # type: ignore[import-not-found, unused-ignore]

_GROUP_KEYS = {"id", "name", "description", "attributes"}
_ATTR_KEYS = {"identifier", "type", "required", "values", "maxLength", "name"}


def load_masterdata_group(path: str | Path) -> MasterDataGroup:
    """Read and structurally check one master data group from a TOML file."""
    path = Path(path)
    try:
        with open(path, "rb") as fh:
            doc = tomllib.load(fh)
    except FileNotFoundError:
        raise InputFileError(f"{path}: no such file") from None
    except tomllib.TOMLDecodeError as exc:
        raise InputFileError(f"{path}: not valid TOML ({exc})") from None
    unknown = set(doc) - _GROUP_KEYS
    if unknown:
        raise InputFileError(
            f"{path}: unknown key(s) {', '.join(sorted(unknown))}",
            hint="allowed: " + ", ".join(sorted(_GROUP_KEYS)),
        )
    for key in ("id", "name"):
        if not isinstance(doc.get(key), str):
            raise InputFileError(f"{path}: '{key}' is required and must be a string")
    attrs = []
    for i, raw in enumerate(doc.get("attributes", []), start=1):
        where = f"{path}: attributes[{i}]"
        if not isinstance(raw, dict):
            raise InputFileError(f"{where} must be a table ([[attributes]])")
        unknown = set(raw) - _ATTR_KEYS
        if unknown:
            raise InputFileError(
                f"{where}: unknown key(s) {', '.join(sorted(unknown))}",
                hint="allowed: " + ", ".join(sorted(_ATTR_KEYS)),
            )
        if not isinstance(raw.get("identifier"), str):
            raise InputFileError(f"{where}: 'identifier' is required")
        if "values" in raw and not (
            isinstance(raw["values"], list) and all(isinstance(v, str) for v in raw["values"])
        ):
            raise InputFileError(f"{where}: 'values' must be a list of strings")
        if "required" in raw and not isinstance(raw["required"], bool):
            raise InputFileError(f"{where}: 'required' must be true or false")
        if "maxLength" in raw and (
            isinstance(raw["maxLength"], bool) or not isinstance(raw["maxLength"], int)
        ):
            raise InputFileError(f"{where}: 'maxLength' must be an integer")
        attrs.append(MasterDataAttribute.from_dict(raw))
    return MasterDataGroup(
        id=doc["id"],
        name=doc["name"],
        description=str(doc.get("description", "")),
        attributes=tuple(attrs),
    )
