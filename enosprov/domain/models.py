"""The DPS domain model: master data groups, registration groups, devices and their statuses.

Field names follow the EnOS DPS API (``PvsDevice``) in ``to_dict()``; Python attributes use
snake_case. Secrets are excluded from ``repr()`` and from ``to_dict()`` unless asked for.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any, NamedTuple

# Canonical JSON of master data: sorted keys and no spaces, so equal data gives equal text (the
# local store keeps it so; idempotent re-registration compares it).
canonical_json = json.JSONEncoder(sort_keys=True, ensure_ascii=False, separators=(",", ":")).encode

# -- vocabularies -------------------------------------------------------------------------------

ATTRIBUTE_TYPES = ("Integer", "String", "Enum", "Date")
REPROVISION_METHODS = ("migrate", "initialize", "never")
MODEL_TYPES = ("public", "private")

# PvsDevice statuses. allocateStatus and connectStatus are documented; currentStatus is only
# partly documented ("init"); enosprov uses init -> allocated -> connected.
ALLOCATE_INIT, ALLOCATE_ALLOCATED = "init", "allocated"
CONNECT_INIT, CONNECT_CONNECTED, CONNECT_FAILED = "init", "connected", "failed"
CURRENT_INIT, CURRENT_ALLOCATED, CURRENT_CONNECTED = "init", "allocated", "connected"

# Built-in master data: pre-created by DPS, the same in every OU, accepted by every registration
# group (EnOS "Built-in master data", docs/masterdata.md), with their documented types.
BUILTIN_TYPES: dict[str, str] = {
    "deviceSn": "String",
    "deviceName": "StringI18n",
    "timezone": "String",
    "regionId": "String",  # the environment the device will be allocated to
    "orgId": "String",  # the OU the device will be allocated to
    "modelId": "String",
    "privateModel": "Boolean",
    "assetId": "String",  # set by EnOS after allocation
}
BUILTIN_KEYS = tuple(BUILTIN_TYPES)
# Master data EnOS owns: never copied from one device to another nor sent back in an update.
SYSTEM_OWNED_KEYS = ("assetId",)
# The built-in master data that choose where a device is allocated (by API or bootstrap).
TARGET_KEYS = ("regionId", "orgId")
I18N_LOCALES = ("en_US", "zh_CN")


def string_i18n(default: str | None, i18n: dict[str, str] | None = None) -> dict | None:
    """An EnOS StringI18n value, or None when there is no default and no translation."""
    if default is None and not i18n:
        return None
    return {"defaultValue": default or "", "i18nValue": dict(i18n or {})}


# -- master data --------------------------------------------------------------------------------


@dataclass(frozen=True)
class MasterDataAttribute:
    """One master data item: its identifier (the ``deviceData`` key), type and constraints."""

    identifier: str
    type: str = "String"
    required: bool = False
    values: tuple[str, ...] = ()  # allowed values of an Enum
    max_length: int | None = None  # String only
    name: str = ""

    def to_dict(self) -> dict:
        out: dict[str, Any] = {
            "identifier": self.identifier,
            "type": self.type,
            "required": self.required,
        }
        if self.name:
            out["name"] = self.name
        if self.values:
            out["values"] = list(self.values)
        if self.max_length is not None:
            out["maxLength"] = self.max_length
        return out

    @classmethod
    def from_dict(cls, d: dict) -> MasterDataAttribute:
        return cls(
            identifier=d["identifier"],
            type=d.get("type", "String"),
            required=bool(d.get("required", False)),
            values=tuple(d.get("values", ())),
            max_length=d.get("maxLength"),
            name=d.get("name", ""),
        )


@dataclass(frozen=True)
class MasterDataGroup:
    """A template of master data (EnOS docs also call it a "device group")."""

    id: str
    name: str
    description: str = ""
    attributes: tuple[MasterDataAttribute, ...] = ()
    create_time: int | None = None

    def to_dict(self) -> dict:
        return {
            "id": self.id,
            "name": self.name,
            "description": self.description,
            "attributes": [a.to_dict() for a in self.attributes],
            "createTime": self.create_time,
        }


# -- registration group -------------------------------------------------------------------------


@dataclass(frozen=True)
class RegistrationGroup:
    """A registration group: onboarding configuration shared by the devices registered in it."""

    group_id: str
    name: str
    product_key: str
    masterdata_group_id: str
    group_secret: str = field(repr=False)
    description: str = ""
    region_id: str | None = None  # allocation target: environment / region
    org_id: str | None = None  # allocation target: OU
    reprovision_method: str = "migrate"
    model_type: str = "public"
    manufacturer_org_id: str | None = None
    sign_scheme: str = "sn-ts-secret"
    sn_pattern: str | None = None  # None: the default deviceSn rule (docs/csv-format.md)
    mqtt_url: str | None = None
    http_url: str | None = None
    create_time: int | None = None
    update_time: int | None = None
    # Default timezone of its devices (UTC offset like +08:00 or an IANA name): what a device
    # without deviceData.timezone is burned with, since Bootstrap Device requires one.
    timezone: str | None = None
    # [ENOSPROV] local store only: a retired (replaced) deviceSn may register itself again by
    # Bootstrap Device. Off: such a bootstrap is refused, naming the unit in service. EnOS
    # decides this itself (and may accept it); the emulator never applies the rule.
    allow_retired_bootstrap: bool = False

    def to_dict(self, include_secret: bool = False) -> dict:
        out = {
            "groupId": self.group_id,
            "name": self.name,
            "description": self.description,
            "productKey": self.product_key,
            "masterDataGroupId": self.masterdata_group_id,
            "target": {"regionId": self.region_id, "orgId": self.org_id},
            "reprovisionMethod": self.reprovision_method,
            "modelType": self.model_type,
            "manufacturerOrgId": self.manufacturer_org_id,
            "signScheme": self.sign_scheme,
            "snPattern": self.sn_pattern,
            "mqttUrl": self.mqtt_url,
            "httpUrl": self.http_url,
            "timezone": self.timezone,
            "createTime": self.create_time,
            "updateTime": self.update_time,
            "allowRetiredBootstrap": self.allow_retired_bootstrap,
        }
        if include_secret:
            out["groupSecret"] = self.group_secret
        return out


# -- devices ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class DeviceStatus:
    current_status: str = CURRENT_INIT
    connected_time: int | None = None
    allocated_time: int | None = None
    finished_time: int | None = None
    discarded_time: int | None = None

    def to_dict(self) -> dict:
        return {
            "currentStatus": self.current_status,
            "connectedTime": self.connected_time,
            "allocatedTime": self.allocated_time,
            "finishedTime": self.finished_time,
            "discardedTime": self.discarded_time,
        }


@dataclass(frozen=True)
class Device:
    """A DPS device (EnOS ``PvsDevice``) plus its EnOS triple once allocated."""

    sn: str  # system SN, unique in the store / environment
    group_id: str
    device_sn: str  # manufacturer serial, unique within its group
    product_key: str | None = None
    region_id: str | None = None
    org_id: str | None = None
    batch_order: int | None = None
    batch_tag: dict | None = None  # StringI18n
    device_data: dict = field(default_factory=dict)  # master data, deviceSn included
    desc: str | None = None
    status: DeviceStatus = field(default_factory=DeviceStatus)
    allocate_status: str = ALLOCATE_INIT
    connect_status: str = CONNECT_INIT
    reprovisioning: bool = False
    allocate_error_msg: str = ""
    device_key: str | None = None
    device_secret: str | None = field(default=None, repr=False)
    create_by: str | None = None
    create_time: int | None = None
    update_by: str | None = None
    update_time: int | None = None
    manufacturer_org_id: str | None = None
    reprovision_time: int | None = None  # enosprov extension: when it was last reset

    @property
    def target_region_id(self) -> str | None:
        """Where the device's next allocation goes: deviceData.regionId (built-in master data)."""
        return self.device_data.get("regionId") or None

    @property
    def target_org_id(self) -> str | None:
        return self.device_data.get("orgId") or None

    def copyable_data(self) -> dict:
        """Its master data without deviceSn and the keys EnOS owns (SYSTEM_OWNED_KEYS): what may
        be copied to another device or sent back in an update."""
        return {
            k: v
            for k, v in self.device_data.items()
            if k != "deviceSn" and k not in SYSTEM_OWNED_KEYS
        }

    @property
    def batch_tag_text(self) -> str | None:
        return self.batch_tag.get("defaultValue") if self.batch_tag else None

    @property
    def allocated(self) -> bool:
        return self.allocate_status == ALLOCATE_ALLOCATED

    @classmethod
    def from_dict(cls, d: dict) -> Device:
        """A Device from a PvsDevice JSON object (what the DPS APIs return)."""
        data = dict(d.get("deviceData") or {})
        status = d.get("status") or {}
        return cls(
            sn=d["sn"],
            group_id=d.get("groupId") or "",
            device_sn=d.get("deviceSn") or data.get("deviceSn") or "",
            product_key=d.get("productKey"),
            region_id=d.get("regionId"),
            org_id=d.get("orgId"),
            batch_order=d.get("batchOrder"),
            batch_tag=d.get("batchTag") or None,
            device_data=data,
            desc=d.get("desc"),
            status=DeviceStatus(
                status.get("currentStatus") or CURRENT_INIT,
                status.get("connectedTime"),
                status.get("allocatedTime"),
                status.get("finishedTime"),
                status.get("discardedTime"),
            ),
            allocate_status=d.get("allocateStatus") or ALLOCATE_INIT,
            connect_status=d.get("connectStatus") or CONNECT_INIT,
            reprovisioning=bool(d.get("reprovisioning")),
            allocate_error_msg=d.get("allocateErrorMsg") or "",
            device_key=d.get("deviceKey"),
            device_secret=d.get("deviceSecret"),
            create_by=d.get("createBy"),
            create_time=d.get("createTime"),
            update_by=d.get("updateBy"),
            update_time=d.get("updateTime"),
            manufacturer_org_id=d.get("manufacturerOrgId"),
            reprovision_time=d.get("reprovisionTime"),
        )

    def to_dict(self, include_secret: bool = False) -> dict:
        out = {
            "sn": self.sn,
            "groupId": self.group_id,
            "deviceSn": self.device_sn,
            "regionId": self.region_id,
            "orgId": self.org_id,
            "productKey": self.product_key,
            "deviceKey": self.device_key,
            "batchOrder": self.batch_order,
            "batchTag": self.batch_tag,
            "deviceData": self.device_data,
            "desc": self.desc,
            "status": self.status.to_dict(),
            "reprovisioning": self.reprovisioning,
            "allocateErrorMsg": self.allocate_error_msg,
            "createBy": self.create_by,
            "createTime": self.create_time,
            "updateBy": self.update_by,
            "updateTime": self.update_time,
            "manufacturerOrgId": self.manufacturer_org_id,
            "connectStatus": self.connect_status,
            "allocateStatus": self.allocate_status,
        }
        if self.reprovision_time is not None:  # an enosprov extension
            out["reprovisionTime"] = self.reprovision_time
        if include_secret:
            out["deviceSecret"] = self.device_secret
        return out


class NewDevice(NamedTuple):
    """One device to register: what a CSV row or a create call provides.

    A NamedTuple rather than a dataclass: batch registration builds one per row.
    """

    device_sn: str
    device_data: dict | None  # master data without deviceSn (None when data_json is given)
    desc: str | None = None
    batch_tag: dict | None = None  # StringI18n
    data_json: str | None = None  # canonical_json(device_data), when already computed

    def data(self) -> dict:
        if self.device_data is not None:
            return self.device_data
        return json.loads(self.data_json) if self.data_json else {}

    def canonical_data(self) -> str:
        return (
            self.data_json if self.data_json is not None else canonical_json(self.device_data or {})
        )


@dataclass(frozen=True)
class ConnectionInfo:
    """What the device receives from bootstrap / get/conn: its triple and the broker URLs."""

    sn: str
    product_key: str
    device_key: str
    device_secret: str = field(repr=False)
    mqtt_url: str | None = None
    http_url: str | None = None

    def to_dict(self, include_secret: bool = False) -> dict:
        out = {
            "sn": self.sn,
            "pk": self.product_key,
            "dk": self.device_key,
            "murl": self.mqtt_url,
            "hurl": self.http_url,
        }
        if include_secret:
            out["ds"] = self.device_secret
        return out

    @classmethod
    def from_dict(cls, d: dict, sn: str = "") -> ConnectionInfo:
        """From a bootstrap / get/conn answer ({pk, dk, ds, murl, hurl}, plus sn when given)."""
        return cls(
            sn=d.get("sn") or sn,
            product_key=d.get("pk") or "",
            device_key=d.get("dk") or "",
            device_secret=d.get("ds") or "",
            mqtt_url=d.get("murl"),
            http_url=d.get("hurl"),
        )


# -- search -------------------------------------------------------------------------------------

SORTABLE_FIELDS = ("createTime", "updateTime", "sn", "deviceSn", "batchOrder")


@dataclass(frozen=True)
class Sorter:
    field: str = "createTime"
    order: str = "DESC"


@dataclass(frozen=True)
class SearchQuery:
    """Device search filters (all optional, combined with AND) and pagination.

    Mirrors the fields the DPS search API can filter on; each filter accepts one value or several
    (``IN``). ``sn_like`` is a SQL LIKE pattern on the system SN.
    """

    group_id: str | None = None
    sns: tuple[str, ...] = ()
    sn_like: str | None = None
    device_sns: tuple[str, ...] = ()
    batch_tag: str | None = None
    batch_order: int | None = None
    product_key: str | None = None
    region_id: str | None = None
    allocate_status: str | None = None
    connect_status: str | None = None
    current_status: str | None = None
    created_after: int | None = None  # ms, inclusive
    created_before: int | None = None  # ms, exclusive
    device_data: tuple[tuple[str, str], ...] = ()  # (key, value) equality on master data
    page_no: int = 1
    page_size: int = 10
    sorters: tuple[Sorter, ...] = (Sorter(),)


@dataclass(frozen=True)
class Page:
    items: list
    page_no: int
    page_size: int
    total: int

    def to_dict(self) -> dict:
        return {
            "items": [i.to_dict() for i in self.items],
            "pagination": {"pageNo": self.page_no, "pageSize": self.page_size, "total": self.total},
        }


# -- batch registration outcome -----------------------------------------------------------------

OUTCOME_CREATED = "created"
OUTCOME_SKIPPED = "skipped"  # already registered with the same data
OUTCOME_CONFLICT = "conflict"  # deviceSn registered with different data; left untouched
OUTCOME_INVALID = "invalid"  # row failed validation (only with --skip-invalid)
OUTCOME_FAILED = "failed"  # the backend could not be reached for it (EnOS); retrying is safe


class RegisterOutcome(NamedTuple):
    """What happened to one row of a batch (one per row: a NamedTuple for speed)."""

    device_sn: str
    outcome: str
    sn: str | None = None
    error: str | None = None
