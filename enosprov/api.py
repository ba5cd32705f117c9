"""The Python API for factory scripts. The CLI is a thin layer over these functions.

from enosprov import api
store = api.open_store("line3.db")
api.create_masterdata_group(store, api.load_masterdata_group("meters.toml"))
group = api.create_group(store, name="Meters EU", product_key="pk1", region_id="eu2",
                         org_id="o123", masterdata_group_id="meters")
report = api.register_csv(store, "devices.csv", group.group_id, batch_tag="B-1")
"""

from __future__ import annotations

from pathlib import Path

from . import secrets_gen
from .backends.base import Backend
from .backends.local import LocalBackend
from .core.device_ops import allocate_devices, delete_devices, update_device
from .core.device_refs import find_one
from .core.exporting import ExportReport, export_devices
from .core.lineage import device_history
from .core.masterdata_file import load_masterdata_group
from .core.registration import RegisterReport, register_csv, register_records, register_stream
from .core.replacement import (
    Outputs,
    ReplaceRequest,
    plan_replacements,
    read_pairs,
    replace_device,
    replace_devices,
)
from .core.reprovision import apply_reprovision, plan_reprovision, reprovision
from .core.rows import template_columns
from .journal import Journal, open_journal
from .models import (
    Device,
    MasterDataGroup,
    Page,
    RegistrationGroup,
    SearchQuery,
    Sorter,
)
from .settings import Settings
from .signing import DEFAULT_SCHEME

__all__ = [
    "Backend",
    "ExportReport",
    "Journal",
    "LocalBackend",
    "Outputs",
    "RegisterReport",
    "ReplaceRequest",
    "SearchQuery",
    "Settings",
    "Sorter",
    "allocate_devices",
    "apply_reprovision",
    "create_group",
    "create_masterdata_group",
    "csv_template",
    "delete_devices",
    "device_history",
    "export_devices_to",
    "find_device",
    "list_devices",
    "load_masterdata_group",
    "open_backend",
    "open_journal",
    "open_store",
    "plan_replacements",
    "plan_reprovision",
    "read_pairs",
    "register_csv",
    "register_records",
    "register_stream",
    "replace_device",
    "replace_devices",
    "reprovision",
    "update_device",
]


def open_store(path: str | Path | None = None) -> LocalBackend:
    """Open (creating if needed) a local store; None resolves ENOSPROV_STORE or the default.

    Profiles are not considered: ``open_backend(Settings.resolve(profile=...))`` opens EnOS.
    """
    return Settings.local(path).create_backend()


def open_backend(settings: Settings) -> Backend:
    return settings.create_backend()


def create_masterdata_group(
    store: LocalBackend, mdg: MasterDataGroup | str | Path
) -> MasterDataGroup:
    """Create a master data group from a model or a TOML file path."""
    if not isinstance(mdg, MasterDataGroup):
        mdg = load_masterdata_group(mdg)
    return store.create_masterdata_group(mdg)


def create_group(
    store: LocalBackend,
    *,
    name: str,
    product_key: str,
    masterdata_group_id: str = "builtin",
    group_id: str | None = None,
    description: str = "",
    region_id: str | None = None,
    org_id: str | None = None,
    reprovision_method: str = "migrate",
    model_type: str = "public",
    manufacturer_org_id: str | None = None,
    sign_scheme: str = DEFAULT_SCHEME,
    sn_pattern: str | None = None,
    mqtt_url: str | None = None,
    http_url: str | None = None,
    timezone: str | None = None,
) -> RegistrationGroup:
    """Create a registration group; its group secret is drawn from the CSPRNG.

    ``timezone`` is the default timezone of its devices (``+08:00``, ``Europe/Berlin``): the one
    burned into the credential file of a device registered without ``deviceData.timezone``.
    """
    return store.create_group(
        RegistrationGroup(
            group_id=group_id or secrets_gen.group_id(),
            name=name,
            product_key=product_key,
            masterdata_group_id=masterdata_group_id,
            group_secret=secrets_gen.group_secret(),
            description=description,
            region_id=region_id,
            org_id=org_id,
            reprovision_method=reprovision_method,
            model_type=model_type,
            manufacturer_org_id=manufacturer_org_id,
            sign_scheme=sign_scheme,
            sn_pattern=sn_pattern,
            mqtt_url=mqtt_url,
            http_url=http_url,
            timezone=timezone,
        )
    )


def csv_template(backend: Backend, group: str) -> list[str]:
    """The CSV header for registering devices into ``group``."""
    grp = backend.get_group(group)
    return template_columns(backend.get_masterdata_group(grp.masterdata_group_id))


# How a get by system sn says "no such sn": EnOS documents 35601 "Verify not pass/sn not found"
# and 35404; a gateway may also answer the generic 99404.
NOT_FOUND_CODES = (35601, 35404, 99404)


def find_device(backend: Backend, ident: str, group: str | None = None) -> Device:
    """A device by system sn, by deviceSn (within ``group`` when given), or by the short code
    printed on its label (either version, any case, with or without the hyphen; matched within
    ``group``, else the whole store). An exact sn or deviceSn wins over a short code.

    NotFoundError when nothing matches (its hint names the nearest deviceSns: "did you mean");
    InvalidArgumentError when a deviceSn is in several groups or two devices share the code.
    """
    return find_one(backend, ident, group)


def list_devices(backend: Backend, query: SearchQuery) -> Page:
    return backend.search(query)


def export_devices_to(
    backend: Backend,
    out: str | Path,
    query: SearchQuery,
    *,
    fmt: str | None = None,
    include_secrets: bool = False,
    raw_csv: bool = False,
) -> ExportReport:
    """Stream the devices matching ``query`` into a CSV / JSON lines file (a CSV one
    spreadsheet-safe unless ``raw_csv``: docs/csv-format.md, "Spreadsheet-safe output")."""
    keys: list[str] = []
    if query.group_id:
        grp = backend.get_group(query.group_id)
        query = SearchQuery(**{**query.__dict__, "group_id": grp.group_id})
        keys = [
            a.identifier for a in backend.get_masterdata_group(grp.masterdata_group_id).attributes
        ]
    return export_devices(
        backend.iter_devices(query),
        out,
        masterdata_keys=keys,
        fmt=fmt,
        include_secrets=include_secrets,
        raw_csv=raw_csv,
    )
