"""Master data groups and registration groups in the local store (EnOS keeps these console-only)."""

from __future__ import annotations

import json
import sqlite3
from typing import TYPE_CHECKING

from ..domain import rules
from ..domain.errors import ConflictError, InvalidArgumentError, enos_error
from ..domain.masterdata_file import masterdata_problems
from ..domain.models import (
    BUILTIN_KEYS,
    MODEL_TYPES,
    REPROVISION_METHODS,
    MasterDataAttribute,
    MasterDataGroup,
    RegistrationGroup,
)
from ..domain.regions import region_problem
from ..domain.signing import get_signer
from .local_schema import BUILTIN_MASTERDATA_GROUP

if TYPE_CHECKING:
    # One row of SELECT _GROUP_COLUMNS: the registration_groups columns (local_schema), in order.
    GroupRow = tuple[
        str, str, str, str, str, str, str | None, str | None, str, str, str | None, str,
        str | None, str | None, str | None, int, int, str | None, int,
    ]  # fmt: skip

_GROUP_COLUMNS = (
    "group_id, name, product_key, masterdata_group_id, group_secret, description, region_id, "
    "org_id, reprovision_method, model_type, manufacturer_org_id, sign_scheme, sn_pattern, "
    "mqtt_url, http_url, create_time, update_time, timezone, allow_retired_bootstrap"
)


def ensure_builtin(conn: sqlite3.Connection, now: int) -> None:
    conn.execute(
        "INSERT OR IGNORE INTO masterdata_groups (id, name, description, attributes, create_time) "
        "VALUES (?, 'Built-in master data', 'the built-in master data only', '[]', ?)",
        (BUILTIN_MASTERDATA_GROUP, now),
    )


# -- master data groups --------------------------------------------------------------------------


def validate_masterdata_group(mdg: MasterDataGroup) -> None:
    problems = masterdata_problems(mdg)
    if problems:
        raise InvalidArgumentError(
            f"master data group {mdg.id!r}: " + "; ".join(problems),
            hint="fix them all (docs/masterdata.md)",
        )


def create_masterdata_group(conn, mdg: MasterDataGroup, now: int) -> MasterDataGroup:
    validate_masterdata_group(mdg)
    if conn.execute("SELECT 1 FROM masterdata_groups WHERE id=?", (mdg.id,)).fetchone():
        raise ConflictError(f"master data group {mdg.id!r} already exists")
    conn.execute(
        "INSERT INTO masterdata_groups (id, name, description, attributes, create_time) "
        "VALUES (?, ?, ?, ?, ?)",
        (
            mdg.id,
            mdg.name,
            mdg.description,
            json.dumps([a.to_dict() for a in mdg.attributes], ensure_ascii=False),
            now,
        ),
    )
    return get_masterdata_group(conn, mdg.id)


def _mdg(row) -> MasterDataGroup:
    return MasterDataGroup(
        id=row[0],
        name=row[1],
        description=row[2],
        attributes=tuple(MasterDataAttribute.from_dict(a) for a in json.loads(row[3])),
        create_time=row[4],
    )


def get_masterdata_group(conn, mdg_id: str) -> MasterDataGroup:
    row = conn.execute(
        "SELECT id, name, description, attributes, create_time FROM masterdata_groups WHERE id=?",
        (mdg_id,),
    ).fetchone()
    if row is None:
        raise enos_error(
            35404,
            f"master data group {mdg_id!r} not found",
            hint="list them with `enosprov masterdata list`",
        )
    return _mdg(row)


def list_masterdata_groups(conn) -> list[MasterDataGroup]:
    rows = conn.execute(
        "SELECT id, name, description, attributes, create_time FROM masterdata_groups ORDER BY id"
    )
    return [_mdg(r) for r in rows]


# -- registration groups -------------------------------------------------------------------------


def validate_group(group: RegistrationGroup) -> None:
    if not rules.GROUP_ID_RE.fullmatch(group.group_id or ""):
        raise InvalidArgumentError(
            f"group id {group.group_id!r} is not allowed",
            hint="use 1-64 letters, digits, '-' or '_'",
        )
    if not group.name or len(group.name) > rules.GROUP_NAME_MAX:
        raise InvalidArgumentError(
            f"a registration group name must have 1-{rules.GROUP_NAME_MAX} characters "
            f"(got {len(group.name or '')})"
        )
    if len(group.description or "") > rules.GROUP_DESCRIPTION_MAX:
        raise InvalidArgumentError(
            f"a group description may have at most {rules.GROUP_DESCRIPTION_MAX} characters "
            f"(got {len(group.description)})"
        )
    if not rules.PRODUCT_KEY_RE.fullmatch(group.product_key or ""):
        raise InvalidArgumentError(
            f"product key {group.product_key!r} is not allowed",
            hint="use the EnOS product key: letters, digits, '-' or '_'",
        )
    if group.reprovision_method not in REPROVISION_METHODS:
        raise InvalidArgumentError(
            f"reprovision method {group.reprovision_method!r} is not one of "
            + ", ".join(REPROVISION_METHODS)
        )
    if group.model_type not in MODEL_TYPES:
        raise InvalidArgumentError(
            f"model type {group.model_type!r} is not one of " + ", ".join(MODEL_TYPES)
        )
    if bool(group.region_id) != bool(group.org_id):
        raise InvalidArgumentError(
            "an allocation target needs both a region (environment) and an OU",
            hint="pass --region and --org together",
        )
    if group.region_id and (problem := region_problem(group.region_id)):
        raise InvalidArgumentError(problem)
    get_signer(group.sign_scheme)
    if group.sn_pattern:
        rules.sn_matcher(group.sn_pattern)
    if group.timezone is not None:
        problem = rules.timezone_problem(group.timezone)
        if problem:
            raise InvalidArgumentError(
                f"group default {problem}", hint="pass --timezone +08:00 or Europe/Berlin"
            )


def create_group(conn, group: RegistrationGroup, now: int) -> RegistrationGroup:
    validate_group(group)
    get_masterdata_group(conn, group.masterdata_group_id)
    clash = conn.execute(
        "SELECT group_id FROM registration_groups WHERE group_id=? OR name=? OR group_id=? "
        "OR name=?",
        (group.group_id, group.name, group.name, group.group_id),
    ).fetchone()
    if clash:
        raise ConflictError(
            f"a registration group with id or name {group.group_id!r} / {group.name!r} already exists",
            hint="group ids and names are unique in a store (either can be used with --group)",
        )
    conn.execute(
        f"INSERT INTO registration_groups ({_GROUP_COLUMNS}) VALUES ({', '.join('?' * 19)})",
        (
            group.group_id,
            group.name,
            group.product_key,
            group.masterdata_group_id,
            group.group_secret,
            group.description,
            group.region_id,
            group.org_id,
            group.reprovision_method,
            group.model_type,
            group.manufacturer_org_id,
            group.sign_scheme,
            group.sn_pattern,
            group.mqtt_url,
            group.http_url,
            now,
            now,
            group.timezone,
            int(bool(group.allow_retired_bootstrap)),
        ),
    )
    return get_group(conn, group.group_id)


def get_group(conn, group: str, by_name: bool = True) -> RegistrationGroup:
    """A registration group by id (or, unless by_name is False, by name)."""
    row = conn.execute(
        f"SELECT {_GROUP_COLUMNS} FROM registration_groups WHERE group_id=?", (group,)
    ).fetchone()
    if row is None and by_name:
        row = conn.execute(
            f"SELECT {_GROUP_COLUMNS} FROM registration_groups WHERE name=?", (group,)
        ).fetchone()
    if row is None:
        raise enos_error(
            35404,
            f"registration group {group!r} not found",
            hint="list them with `enosprov group list`",
        )
    return _group(row)


def _group(row: GroupRow) -> RegistrationGroup:
    return RegistrationGroup(*row[:-1], allow_retired_bootstrap=bool(row[-1]))


def list_groups(conn) -> list[RegistrationGroup]:
    rows = conn.execute(f"SELECT {_GROUP_COLUMNS} FROM registration_groups ORDER BY create_time")
    return [_group(r) for r in rows]


def set_allow_retired_bootstrap(conn, group: str, allow: bool, now: int) -> RegistrationGroup:
    """[ENOSPROV] Whether a retired (replaced) deviceSn of ``group`` may register itself again
    through Bootstrap Device on the local store."""
    found = get_group(conn, group)
    conn.execute(
        "UPDATE registration_groups SET allow_retired_bootstrap=?, update_time=? WHERE group_id=?",
        (int(bool(allow)), now, found.group_id),
    )
    return get_group(conn, found.group_id)


def check_device_data(
    conn, group: RegistrationGroup, data: dict, *, before: dict | None = None
) -> dict:
    """Validate master data given through the library/API (the CSV path validates per row);
    return it with values in their stored types. Every required key must be there; with
    ``before`` (an update), only those the device had: an update cannot remove one, but a device
    whose master data was cleared (reprovision method initialize) can be updated."""
    mdg = get_masterdata_group(conn, group.masterdata_group_id)
    attrs = {a.identifier: a for a in mdg.attributes}
    out = {}
    for key, value in data.items():
        if key in BUILTIN_KEYS:
            problem = rules.builtin_value_problem(key, value)
            if problem:
                raise enos_error(99400, f"Invalid Argument deviceData.{key}: {problem}")
            out[key] = value
            continue
        attr = attrs.get(key)
        if attr is None:
            raise enos_error(
                99400,
                f"Invalid Argument deviceData.{key}: not a master data key of group {group.group_id}",
                hint="known keys: " + ", ".join(list(BUILTIN_KEYS) + list(attrs)),
            )
        value, problem = rules.normalize_value(attr, value)
        if problem:
            raise enos_error(99400, f"Invalid Argument deviceData.{key}: {problem}")
        out[key] = value
    # Required master data is enforced at registration; an update cannot remove it either.
    for attr in mdg.attributes:
        needed = before is None or attr.identifier in before
        if attr.required and needed and attr.identifier not in out:
            raise enos_error(
                99400, f"Invalid Argument deviceData.{attr.identifier}: a value is required"
            )
    return out


# Columns a registration group's update may set (core.definitions.GROUP_UPDATABLE), by field.
_UPDATABLE_COLUMNS = {
    "name": "name",
    "description": "description",
    "region_id": "region_id",
    "org_id": "org_id",
    "reprovision_method": "reprovision_method",
    "timezone": "timezone",
    "allow_retired_bootstrap": "allow_retired_bootstrap",
    "mqtt_url": "mqtt_url",
    "http_url": "http_url",
}


def update_group(conn, group_id: str, changes: dict, now: int) -> RegistrationGroup:
    """Set ``changes`` (field -> value) on the group, validated as a new group is; a name
    another group has is refused."""
    import dataclasses

    stored = get_group(conn, group_id, by_name=False)
    unknown = [k for k in changes if k not in _UPDATABLE_COLUMNS]
    if unknown:
        raise InvalidArgumentError(f"cannot change {', '.join(unknown)} of a registration group")
    changed = dataclasses.replace(stored, **changes)
    validate_group(changed)
    if "name" in changes:
        clash = conn.execute(
            "SELECT group_id FROM registration_groups WHERE (name=? OR group_id=?) "
            "AND group_id != ?",
            (changed.name, changed.name, stored.group_id),
        ).fetchone()
        if clash:
            raise ConflictError(
                f"another registration group is already called {changed.name!r} ({clash[0]})",
                hint="group ids and names are unique in a store",
            )
    sets = ", ".join(f"{_UPDATABLE_COLUMNS[k]}=?" for k in changes)
    values = [int(bool(v)) if k == "allow_retired_bootstrap" else v for k, v in changes.items()]
    conn.execute(
        f"UPDATE registration_groups SET {sets}, update_time=? WHERE group_id=?",
        (*values, now, stored.group_id),
    )
    return get_group(conn, stored.group_id, by_name=False)


def update_masterdata_group(conn, mdg: MasterDataGroup) -> MasterDataGroup:
    """Store the new definition of an existing master data group (its checks are
    core.definitions')."""
    validate_masterdata_group(mdg)
    get_masterdata_group(conn, mdg.id)  # not found -> NotFoundError
    conn.execute(
        "UPDATE masterdata_groups SET name=?, description=?, attributes=? WHERE id=?",
        (
            mdg.name,
            mdg.description,
            json.dumps([a.to_dict() for a in mdg.attributes], ensure_ascii=False),
            mdg.id,
        ),
    )
    return get_masterdata_group(conn, mdg.id)
