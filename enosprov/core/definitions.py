"""A line's set-up, safe to run again: master data groups and registration groups as definitions.

``ensure_masterdata_group`` and ``ensure_group`` create what does not exist yet, answer
"unchanged" for a definition that is already there exactly (nothing written, nothing journaled),
and refuse a different one with the list of differences (DefinitionConflictError, exit code 7):
a set-up script can run every time a station starts. ``update_masterdata_group`` and
``update_group`` make the changes that cannot break registered devices (docs/masterdata.md,
"Changing a group").
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any, Generic, TypeVar

from ..backends.base import Backend
from ..domain import rules
from ..domain.errors import (
    ConflictError,
    DefinitionConflictError,
    InvalidArgumentError,
    NotFoundError,
)
from ..domain.models import MasterDataAttribute, MasterDataGroup, RegistrationGroup

T = TypeVar("T", MasterDataGroup, RegistrationGroup)

# The fields of a registration group that its definition sets (not its secret, not its times).
GROUP_FIELDS = (
    "name",
    "product_key",
    "masterdata_group_id",
    "description",
    "region_id",
    "org_id",
    "reprovision_method",
    "model_type",
    "manufacturer_org_id",
    "sign_scheme",
    "sn_pattern",
    "mqtt_url",
    "http_url",
    "timezone",
    "allow_retired_bootstrap",
)
# What `group update` may change: the rest (product key, master data group, signature scheme,
# model type) is what registered devices and burned files depend on.
GROUP_UPDATABLE = (
    "name",
    "description",
    "region_id",
    "org_id",
    "reprovision_method",
    "timezone",
    "allow_retired_bootstrap",
    "mqtt_url",
    "http_url",
)


@dataclass(frozen=True)
class Ensured(Generic[T]):
    """The group as it is now, and whether this call created it ("created") or found the same
    definition there ("unchanged")."""

    value: T
    status: str  # "created" | "unchanged"

    @property
    def created(self) -> bool:
        return self.status == "created"

    def to_dict(self) -> dict:
        return {**self.value.to_dict(), "status": self.status}


@dataclass(frozen=True)
class Difference:
    field: str
    stored: Any
    given: Any

    def to_dict(self) -> dict:
        return {"field": self.field, "stored": self.stored, "given": self.given}

    def __str__(self) -> str:
        return f"{self.field}: {_show(self.stored)} in the store, {_show(self.given)} given"


def _show(value: Any) -> str:
    if value is None or value == "":
        return "(none)"
    return repr(value) if isinstance(value, str) else str(value)


def camel(name: str) -> str:
    """A field's name as the JSON of a group spells it (masterdata_group_id: masterDataGroupId)."""
    if name == "masterdata_group_id":
        return "masterDataGroupId"
    head, *rest = name.split("_")
    return head + "".join(part.capitalize() for part in rest)


# -- master data groups ---------------------------------------------------------------------------


def masterdata_differences(stored: MasterDataGroup, given: MasterDataGroup) -> list[Difference]:
    """What differs between two definitions of one master data group, attribute by attribute."""
    out = [
        Difference(f, getattr(stored, f), getattr(given, f))
        for f in ("name", "description")
        if getattr(stored, f) != getattr(given, f)
    ]
    old = {a.identifier: a for a in stored.attributes}
    new = {a.identifier: a for a in given.attributes}
    for key in [*old, *(k for k in new if k not in old)]:
        a, b = old.get(key), new.get(key)
        if a != b:
            out.append(
                Difference(
                    f"attributes.{key}",
                    a.to_dict() if a else None,
                    b.to_dict() if b else None,
                )
            )
    if [a.identifier for a in stored.attributes if a.identifier in new] != [
        a.identifier for a in given.attributes if a.identifier in old
    ]:
        out.append(Difference("attributes (order)", list(old), list(new)))
    return out


def ensure_masterdata_group(backend: Backend, mdg: MasterDataGroup) -> Ensured[MasterDataGroup]:
    """Create ``mdg``, or find the same definition already there; a different one is refused
    with its differences (DefinitionConflictError), nothing changed."""
    try:
        return Ensured(backend.create_masterdata_group(mdg), "created")
    except DefinitionConflictError:
        raise
    except ConflictError:
        stored = backend.get_masterdata_group(mdg.id)
    diffs = masterdata_differences(stored, mdg)
    if not diffs:
        return Ensured(stored, "unchanged")
    raise _conflict(f"master data group {mdg.id!r}", diffs, "enosprov masterdata update --file")


def update_masterdata_group(backend: Backend, mdg: MasterDataGroup) -> MasterDataGroup:
    """Change a master data group to the definition ``mdg`` where registered devices stay
    valid: a new name or description, new optional attributes (appended), a display name, more
    Enum values, a longer maxLength. Refused, listing each reason, with nothing changed: a
    removed attribute, another type, optional made required, Enum values removed, a shorter
    maxLength."""
    if mdg.id == "builtin":
        raise InvalidArgumentError(
            "the builtin master data group cannot change",
            hint="create a master data group of your own (enosprov masterdata create)",
        )
    stored = backend.get_masterdata_group(mdg.id)
    old = {a.identifier: a for a in stored.attributes}
    new = {a.identifier: a for a in mdg.attributes}
    problems: list[str] = []
    for key, a in old.items():
        b = new.get(key)
        if b is None:
            problems.append(f"{key}: an attribute cannot be removed (devices may carry it)")
            continue
        problems += _attribute_problems(a, b)
    for key, b in new.items():
        if key not in old and b.required:
            problems.append(
                f"{key}: a new attribute must be optional (registered devices do not have it)"
            )
    if problems:
        raise InvalidArgumentError(
            f"master data group {mdg.id!r} cannot change that way: " + "; ".join(problems),
            hint="nothing was changed; a different group needs another id (masterdata create)",
        )
    ordered = tuple(new[k] for k in old) + tuple(b for k, b in new.items() if k not in old)
    return backend.update_masterdata_group(replace(mdg, attributes=ordered))


def _attribute_problems(a: MasterDataAttribute, b: MasterDataAttribute) -> list[str]:
    key = a.identifier
    out = []
    if a.type != b.type:
        out.append(f"{key}: its type cannot change ({a.type} to {b.type})")
    if b.required and not a.required:
        out.append(f"{key}: an optional attribute cannot become required")
    if set(a.values) - set(b.values):
        gone = ", ".join(sorted(set(a.values) - set(b.values)))
        out.append(f"{key}: Enum values cannot be removed ({gone})")
    before = a.max_length or rules.STRING_VALUE_MAX  # no maxLength: the default limit
    after = b.max_length or rules.STRING_VALUE_MAX
    if a.type == b.type == "String" and after < before:
        out.append(f"{key}: maxLength cannot get shorter ({before} to {after})")
    return out


# -- registration groups --------------------------------------------------------------------------


def group_differences(
    stored: RegistrationGroup, given: RegistrationGroup, *, compare_id: bool
) -> list[Difference]:
    names = (("group_id",) if compare_id else ()) + GROUP_FIELDS
    return [
        Difference(camel(f), getattr(stored, f), getattr(given, f))
        for f in names
        if (getattr(stored, f) or None) != (getattr(given, f) or None)
    ]


def ensure_group(
    backend: Backend, group: RegistrationGroup, *, id_given: bool
) -> Ensured[RegistrationGroup]:
    """Create ``group`` (its secret fresh from the CSPRNG), or find the same definition already
    there: by id when ``id_given``, else by name. A different one is refused with its
    differences (DefinitionConflictError); the stored secret is never compared nor shown."""
    try:
        return Ensured(backend.create_group(group), "created")
    except DefinitionConflictError:
        raise
    except ConflictError:
        try:
            stored = backend.get_group(group.group_id if id_given else group.name)
        except NotFoundError:  # the id is free, the name belongs to another group
            stored = backend.get_group(group.name)
    diffs = group_differences(stored, group, compare_id=id_given)
    if not diffs:
        return Ensured(stored, "unchanged")
    fixed = [d.field for d in diffs if d.field not in map(camel, GROUP_UPDATABLE)]
    if fixed:
        raise _conflict(
            f"registration group {stored.group_id!r}",
            diffs,
            hint=f"nothing was changed; {', '.join(fixed)} of a group cannot change (devices "
            "and burned files depend on it): give the stored definition, or create another "
            "group with another --id and --name",
        )
    raise _conflict(f"registration group {stored.group_id!r}", diffs, "enosprov group update")


def update_group(backend: Backend, group: str, changes: Mapping[str, Any]) -> RegistrationGroup:
    """Change what registered devices do not depend on (GROUP_UPDATABLE); the target is both
    region and org or neither. Returns the group as stored."""
    unknown = [k for k in changes if k not in GROUP_UPDATABLE]
    if unknown:
        raise InvalidArgumentError(
            f"a registration group's {', '.join(map(camel, unknown))} cannot be changed",
            hint="devices and burned files depend on it: create another group instead",
        )
    if not changes:
        raise InvalidArgumentError(
            "nothing to change", hint="give at least one option (enosprov group update --help)"
        )
    stored = backend.get_group(group)
    if ("region_id" in changes) != ("org_id" in changes):
        raise InvalidArgumentError(
            "an allocation target is a region and an OU: give --region and --org together"
        )
    return backend.update_group(stored.group_id, dict(changes))


def _conflict(
    what: str, diffs: list[Difference], update: str = "", *, hint: str | None = None
) -> DefinitionConflictError:
    return DefinitionConflictError(
        f"{what} already exists with a different definition: " + "; ".join(map(str, diffs)),
        differences=[d.to_dict() for d in diffs],
        hint=hint
        or f"nothing was changed; to change it use `{update}`, or give the stored definition",
    )
