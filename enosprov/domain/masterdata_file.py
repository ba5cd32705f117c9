"""Master data groups defined in TOML files (EnOS has no API for them). See docs/masterdata.md."""

from __future__ import annotations

import sys
from pathlib import Path

from . import rules
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


def masterdata_problems(mdg: MasterDataGroup) -> list[str]:
    """Every reason ``mdg`` is not a valid master data group (empty when it is): its id, its
    name, each attribute's definition, identifiers defined twice."""
    problems = []
    if not rules.GROUP_ID_RE.fullmatch(mdg.id or ""):
        problems.append(f"id {mdg.id!r} is not allowed (use 1-64 letters, digits, '-' or '_')")
    if not mdg.name or len(mdg.name) > rules.GROUP_NAME_MAX:
        problems.append(f"name must have 1-{rules.GROUP_NAME_MAX} characters")
    seen = set()
    for i, attr in enumerate(mdg.attributes, start=1):
        problem = rules.check_attribute_definition(attr)
        if problem:
            problems.append(f"attributes[{i}] ({attr.identifier}): {problem}")
        if attr.identifier in seen:
            problems.append(f"attributes[{i}]: identifier {attr.identifier!r} is defined twice")
        seen.add(attr.identifier)
    return problems


def load_masterdata_group(path: str | Path) -> MasterDataGroup:
    """Read and check one master data group from a TOML file. Every mistake of the file is
    reported at once: one InputFileError listing them all (its structure first: unknown keys,
    wrong value types; then the rules: the id, the name, each attribute)."""
    path = Path(path)
    try:
        with open(path, "rb") as fh:
            doc = tomllib.load(fh)
    except FileNotFoundError:
        raise InputFileError(f"{path}: no such file") from None
    except tomllib.TOMLDecodeError as exc:
        raise InputFileError(f"{path}: not valid TOML ({exc})") from None
    problems: list[str] = []
    problems += _unknown_keys(doc, _GROUP_KEYS)
    for key in ("id", "name"):
        if not isinstance(doc.get(key), str):
            problems.append(f"'{key}' is required and must be a string")
    attrs = []
    raw_attrs = doc.get("attributes", [])
    if not isinstance(raw_attrs, list):
        problems.append("'attributes' must be a list of tables ([[attributes]])")
        raw_attrs = []
    for i, raw in enumerate(raw_attrs, start=1):
        where = f"attributes[{i}]"
        if not isinstance(raw, dict):
            problems.append(f"{where} must be a table ([[attributes]])")
            continue
        found = _attribute_structure(raw)
        if isinstance(raw.get("identifier"), str):
            where += f" ({raw['identifier']})"
        problems += [f"{where}: {p}" for p in found]
        if not found:
            attrs.append(MasterDataAttribute.from_dict(raw))
    # the rules, on what could be read: an id or name that is not a string is reported above
    # (a valid stand-in keeps it from being reported twice), attributes that did not read are
    # left out
    mdg = MasterDataGroup(
        id=doc["id"] if isinstance(doc.get("id"), str) else "id",
        name=doc["name"] if isinstance(doc.get("name"), str) else "name",
        description=str(doc.get("description", "")),
        attributes=tuple(attrs),
    )
    problems += masterdata_problems(mdg)
    if not problems:
        return mdg
    count = f"{len(problems)} problems" if len(problems) > 1 else "1 problem"
    raise InputFileError(
        f"{path}: {count}: " + "; ".join(problems),
        hint="fix them all, then run the command again (format: docs/masterdata.md; a "
        "commented starter: enosprov template masterdata)",
    )


def _unknown_keys(table: dict, allowed: set[str]) -> list[str]:
    unknown = sorted(set(table) - allowed)
    if not unknown:
        return []
    return [f"unknown key(s) {', '.join(unknown)} (allowed: {', '.join(sorted(allowed))})"]


def _attribute_structure(raw: dict) -> list[str]:
    out = _unknown_keys(raw, _ATTR_KEYS)
    if not isinstance(raw.get("identifier"), str):
        out.append("'identifier' is required")
    if "type" in raw and not isinstance(raw["type"], str):
        out.append("'type' must be a string")
    if "values" in raw and not (
        isinstance(raw["values"], list) and all(isinstance(v, str) for v in raw["values"])
    ):
        out.append("'values' must be a list of strings")
    if "required" in raw and not isinstance(raw["required"], bool):
        out.append("'required' must be true or false")
    if "maxLength" in raw and (
        isinstance(raw["maxLength"], bool) or not isinstance(raw["maxLength"], int)
    ):
        out.append("'maxLength' must be an integer")
    if "name" in raw and not isinstance(raw["name"], str):
        out.append("'name' must be a string")
    return out
