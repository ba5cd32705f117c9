"""The Python API for factory scripts and integrators. The CLI is a thin layer over these functions.

A :class:`Session` is a backend (the local store, or EnOS through a profile) together with the
audit journal the CLI keeps for it; every operation that changes something is journaled in it:

    from enosprov import api

    with api.open_session("line3.db", station="line-3") as session:   # or profile="prod"
        api.create_masterdata_group(session, "meters.toml")
        group = api.create_group(session, name="Meters EU", product_key="pk1",
                                 region_id="eu2", org_id="o123", masterdata_group_id="meters")
        report = api.register_csv(session, "devices.csv", group.group_id, batch_tag="B-1")
        api.burn_export(session, group.group_id, "burn/", batch_tag="B-1")

Every function takes a :class:`Session` or a bare backend (``open_store``) as its first
argument. With a session, ``journal`` defaults to the session's journal; with a bare backend,
nothing is journaled unless ``journal`` is given. docs/python-api.md has a complete example.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO

from .backends.base import Backend
from .backends.local import LocalBackend
from .core import definitions, device_ops, lineage, registration, replacement
from .core import reprovision as _reprovision
from .core.definitions import Ensured
from .core.device_ops import AllocateResult, DeleteReport, UpdateResult
from .core.device_refs import find_one
from .core.exporting import ExportReport, export_devices
from .core.lineage import DeviceHistory
from .core.registration import DEFAULT_CHUNK_SIZE, RegisterReport
from .core.replacement import (
    Outputs,
    PlannedReplacement,
    ReplaceReport,
    ReplaceRequest,
    read_pairs,
)
from .core.reprovision import ReprovisionPlan, ReprovisionResult
from .core.rows import template_columns
from .domain import secrets_gen
from .domain.csvsource import CsvSource
from .domain.errors import NOT_FOUND_CODES as NOT_FOUND_CODES  # a public name of 0.1.0
from .domain.masterdata_file import load_masterdata_group
from .domain.models import Device, MasterDataGroup, Page, RegistrationGroup, SearchQuery, Sorter
from .domain.signing import DEFAULT_SCHEME
from .journal import Entry, Journal, parse_time
from .settings import Settings, open_journal

if TYPE_CHECKING:  # imported on first use (label rendering and reports cost start-up time)
    from .burn.export import BurnReport, Selection
    from .burn.formats import FormatOptions
    from .core.batches import BatchDetail, BatchSummary
    from .qr.batch import QrReport
    from .qr.render import QrOptions

__all__ = [
    "AllocateResult",
    "Backend",
    "BatchDetail",
    "BatchReport",
    "BatchSummary",
    "BurnReport",
    "DeleteReport",
    "Device",
    "DeviceHistory",
    "Ensured",
    "Entry",
    "ExportReport",
    "FormatOptions",
    "Journal",
    "LocalBackend",
    "Outputs",
    "PlannedReplacement",
    "QrOptions",
    "QrReport",
    "RegisterReport",
    "ReplaceReport",
    "ReplaceRequest",
    "ReprovisionPlan",
    "ReprovisionResult",
    "SearchQuery",
    "Selection",
    "Session",
    "Settings",
    "Sorter",
    "UpdateResult",
    "allocate_devices",
    "apply_reprovision",
    "batch_detail",
    "batch_report",
    "batch_summaries",
    "burn_export",
    "create_group",
    "create_masterdata_group",
    "csv_template",
    "delete_devices",
    "device_history",
    "ensure_group",
    "ensure_masterdata_group",
    "export_devices_to",
    "find_device",
    "journal_entries",
    "label_export",
    "list_devices",
    "load_masterdata_group",
    "open_backend",
    "open_journal",
    "open_session",
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
    "update_group",
    "update_masterdata_group",
]

# Types re-exported on first access (PEP 562): importing them costs start-up time.
_LAZY = {
    "BurnReport": ".burn.export",
    "Selection": ".burn.export",
    "FormatOptions": ".burn.formats",
    "BatchDetail": ".core.batches",
    "BatchSummary": ".core.batches",
    "QrReport": ".qr.batch",
    "QrOptions": ".qr.render",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        value = getattr(importlib.import_module(_LAZY[name], __package__), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


ProgressFn = Callable[[str, int, int | None], None]  # (phase, done, total or None)


# -- opening --------------------------------------------------------------------------------------


@dataclass
class Session:
    """A backend and the audit journal the CLI uses with it (the store file itself for the local
    store; ``$ENOSPROV_JOURNAL`` or ``journal.db`` in the user data folder for a profile).

    ``with api.open_session(...) as session:`` closes both; so does :meth:`close`."""

    backend: Backend
    journal: Journal
    settings: Settings

    @property
    def label(self) -> str:
        """``local store`` or ``EnOS profile NAME`` (as the batch report names its source)."""
        if self.settings.backend == "enos":
            return f"EnOS profile {self.settings.profile}"
        return "local store"

    def close(self) -> None:
        try:
            self.backend.close()
        finally:
            self.journal.close()

    def __enter__(self) -> Session:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def open_session(
    store: str | Path | None = None,
    *,
    profile: str | None = None,
    station: str | None = None,
    settings: Settings | None = None,
) -> Session:
    """Open the backend and its journal as ``enosprov [--store PATH | --profile NAME]`` does:
    ``store`` is ``--store``, ``profile`` is ``--profile`` (not both); with neither,
    ``ENOSPROV_PROFILE``, ``ENOSPROV_STORE``, the config file's current profile, then the default
    store decide (:meth:`Settings.resolve`). ``station`` stamps the journal records like
    ``--station`` (default ``$ENOSPROV_STATION``). ``settings``, when given, replaces the
    resolution (``store`` and ``profile`` must then be None)."""
    if settings is None:
        settings = Settings.resolve(store, profile)
    elif store is not None or profile is not None:
        from .domain.errors import InvalidArgumentError

        raise InvalidArgumentError("give settings, or store / profile, not both")
    journal = open_journal(settings, station)
    try:
        backend = settings.create_backend()
    except BaseException:
        journal.close()
        raise
    return Session(backend, journal, settings)


def open_store(path: str | Path | None = None) -> LocalBackend:
    """Open (creating if needed) a local store, without a journal; None resolves
    ENOSPROV_STORE or the default. Profiles are not considered (:func:`open_session` does)."""
    return Settings.local(path).create_backend()


def open_backend(settings: Settings) -> Backend:
    """The bare backend ``settings`` select (no journal: :func:`open_session` opens both)."""
    return settings.create_backend()


def _backend(target: Session | Backend) -> Backend:
    return target.backend if isinstance(target, Session) else target


def _unpack(target: Session | Backend, journal: Journal | None) -> tuple[Backend, Journal | None]:
    """(backend, journal): a session's own journal unless ``journal`` is given."""
    if isinstance(target, Session):
        return target.backend, target.journal if journal is None else journal
    return target, journal


# -- groups ---------------------------------------------------------------------------------------


def create_masterdata_group(
    target: Session | Backend,
    mdg: MasterDataGroup | str | Path,
    *,
    journal: Journal | None = None,
) -> MasterDataGroup:
    """Create a master data group from a model or a TOML file path (local store only: EnOS
    groups are made in its console); one "masterdata-create" journal record. The same
    definition already there is fine (see :func:`ensure_masterdata_group`)."""
    return ensure_masterdata_group(target, mdg, journal=journal).value


def ensure_masterdata_group(
    target: Session | Backend,
    mdg: MasterDataGroup | str | Path,
    *,
    journal: Journal | None = None,
) -> Ensured[MasterDataGroup]:
    """``enosprov masterdata create``: create the group, or find the same definition already
    there (``status`` "unchanged", nothing journaled); a different definition raises
    DefinitionConflictError (exit code 7) listing the differences."""
    backend, journal = _unpack(target, journal)
    if not isinstance(mdg, MasterDataGroup):
        mdg = load_masterdata_group(mdg)
    ensured = definitions.ensure_masterdata_group(backend, mdg)
    if journal is not None and ensured.created:
        created = ensured.value
        journal.record(
            "masterdata-create",
            detail={"id": created.id, "name": created.name, "attributes": len(created.attributes)},
        )
    return ensured


def update_masterdata_group(
    target: Session | Backend,
    mdg: MasterDataGroup | str | Path,
    *,
    journal: Journal | None = None,
) -> MasterDataGroup:
    """``enosprov masterdata update``: give an existing master data group a new definition
    that keeps registered devices valid (core.definitions.update_masterdata_group); one
    "masterdata-update" record."""
    backend, journal = _unpack(target, journal)
    if not isinstance(mdg, MasterDataGroup):
        mdg = load_masterdata_group(mdg)
    before = backend.get_masterdata_group(mdg.id)
    updated = definitions.update_masterdata_group(backend, mdg)
    if journal is not None:
        diffs = definitions.masterdata_differences(before, updated)
        journal.record(
            "masterdata-update",
            detail={"id": updated.id, "changed": [d.field for d in diffs]},
        )
    return updated


def create_group(
    target: Session | Backend,
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
    allow_retired_bootstrap: bool = False,
    journal: Journal | None = None,
) -> RegistrationGroup:
    """Create a registration group (local store only); its group secret is drawn from the
    CSPRNG. One "group-create" journal record (never the secret). The same definition
    already there is fine (see :func:`ensure_group`).

    ``timezone`` is the default timezone of its devices (``+08:00``, ``Europe/Berlin``): the one
    burned into the credential file of a device registered without ``deviceData.timezone``.
    """
    return ensure_group(
        target,
        name=name,
        product_key=product_key,
        masterdata_group_id=masterdata_group_id,
        group_id=group_id,
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
        allow_retired_bootstrap=allow_retired_bootstrap,
        journal=journal,
    ).value


def ensure_group(
    target: Session | Backend,
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
    allow_retired_bootstrap: bool = False,
    journal: Journal | None = None,
) -> Ensured[RegistrationGroup]:
    """``enosprov group create``: create the group, or find the same definition already there
    (by ``group_id`` when given, else by name: ``status`` "unchanged", nothing journaled); a
    different definition raises DefinitionConflictError (exit code 7) listing the differences.
    The stored group secret is kept, never compared."""
    backend, journal = _unpack(target, journal)
    ensured = definitions.ensure_group(
        backend,
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
            allow_retired_bootstrap=allow_retired_bootstrap,
        ),
        id_given=group_id is not None,
    )
    group = ensured.value
    if journal is not None and ensured.created:  # the record `enosprov group create` writes
        journal.record(
            "group-create",
            group_id=group.group_id,
            detail={
                "name": group.name,
                "productKey": group.product_key,
                "regionId": group.region_id,
                "orgId": group.org_id,
                "reprovisionMethod": group.reprovision_method,
                "modelType": group.model_type,
                "masterDataGroupId": group.masterdata_group_id,
                "timezone": group.timezone,
                "allowRetiredBootstrap": group.allow_retired_bootstrap,
            },
        )
    return ensured


def update_group(
    target: Session | Backend,
    group: str,
    *,
    journal: Journal | None = None,
    **changes: Any,
) -> RegistrationGroup:
    """``enosprov group update``: change what registered devices do not depend on (name,
    description, target region_id + org_id, reprovision_method, timezone,
    allow_retired_bootstrap, mqtt_url, http_url); one "group-update" record naming the fields
    (never the secret)."""
    backend, journal = _unpack(target, journal)
    updated = definitions.update_group(backend, group, changes)
    if journal is not None:
        journal.record(
            "group-update",
            group_id=updated.group_id,
            detail={definitions.camel(k): v for k, v in changes.items()},
        )
    return updated


def csv_template(target: Session | Backend, group: str) -> list[str]:
    """The CSV header for registering devices into ``group``."""
    backend = _backend(target)
    grp = backend.get_group(group)
    return template_columns(backend.get_masterdata_group(grp.masterdata_group_id))


# -- registration ---------------------------------------------------------------------------------


def register_csv(
    target: Session | Backend,
    path: str | Path | CsvSource,
    group: str,
    *,
    batch_tag: str | None = None,
    skip_invalid: bool = False,
    dry_run: bool = False,
    results: str | Path | None = None,
    chunk_size: int = DEFAULT_CHUNK_SIZE,
    encoding: str | None = None,
    delimiter: str | None = None,
    progress: ProgressFn | None = None,
    raw_csv: bool = False,
    allow_retired: bool = False,
    ignore_unknown_columns: bool = False,
    journal: Journal | None = None,
) -> RegisterReport:
    """Register every device of a CSV file into a registration group (``enosprov register
    --csv``; docs/registration.md): validated whole first, idempotent, one "register" journal
    record per chunk. ``progress`` is called as ``(phase, done, total)``."""
    backend, journal = _unpack(target, journal)
    return registration.register_csv(
        backend, path, group, batch_tag=batch_tag, skip_invalid=skip_invalid, dry_run=dry_run,
        results=results, chunk_size=chunk_size, encoding=encoding, delimiter=delimiter,
        progress=progress, journal=journal, raw_csv=raw_csv, allow_retired=allow_retired,
        ignore_unknown_columns=ignore_unknown_columns,
    )  # fmt: skip


def register_records(
    target: Session | Backend,
    records: Iterable[Mapping[str, object]],
    group: str,
    *,
    name: str = "<records>",
    batch_tag: str | None = None,
    skip_invalid: bool = False,
    dry_run: bool = False,
    results: str | Path | None = None,
    chunk_size: int = DEFAULT_CHUNK_SIZE,
    progress: ProgressFn | None = None,
    raw_csv: bool = False,
    allow_retired: bool = False,
    ignore_unknown_columns: bool = False,
    journal: Journal | None = None,
) -> RegisterReport:
    """Register devices given in memory, one mapping per device with the CSV columns
    (docs/csv-format.md: ``deviceSn``, ``deviceName``, ``timezone``, ``batchTag``, ``desc``,
    master data identifiers; values are turned into text), with exactly the validation,
    idempotency and journal of a CSV row. ``name`` stands for the file in reports."""
    backend, journal = _unpack(target, journal)
    return registration.register_records(
        backend, records, group, name=name, batch_tag=batch_tag, skip_invalid=skip_invalid,
        dry_run=dry_run, results=results, chunk_size=chunk_size, progress=progress,
        journal=journal, raw_csv=raw_csv, allow_retired=allow_retired,
        ignore_unknown_columns=ignore_unknown_columns,
    )  # fmt: skip


def register_stream(
    target: Session | Backend,
    stream: BinaryIO,
    group: str,
    *,
    name: str = "<stdin>",
    batch_tag: str | None = None,
    skip_invalid: bool = False,
    dry_run: bool = False,
    results: str | Path | None = None,
    chunk_size: int = DEFAULT_CHUNK_SIZE,
    encoding: str | None = None,
    delimiter: str | None = None,
    progress: ProgressFn | None = None,
    raw_csv: bool = False,
    allow_retired: bool = False,
    ignore_unknown_columns: bool = False,
    journal: Journal | None = None,
) -> RegisterReport:
    """Register the CSV read from a binary ``stream`` (``enosprov register --csv -``)."""
    backend, journal = _unpack(target, journal)
    return registration.register_stream(
        backend, stream, group, name=name, batch_tag=batch_tag, skip_invalid=skip_invalid,
        dry_run=dry_run, results=results, chunk_size=chunk_size, encoding=encoding,
        delimiter=delimiter, progress=progress, journal=journal, raw_csv=raw_csv,
        allow_retired=allow_retired, ignore_unknown_columns=ignore_unknown_columns,
    )  # fmt: skip


# -- devices --------------------------------------------------------------------------------------


def find_device(target: Session | Backend, ident: str, group: str | None = None) -> Device:
    """A device by system sn, by deviceSn (within ``group`` when given), or by the short code
    printed on its label (either version, any case, with or without the hyphen; matched within
    ``group``, else the whole store). An exact sn or deviceSn wins over a short code.

    NotFoundError when nothing matches (its hint names the nearest deviceSns: "did you mean");
    InvalidArgumentError when a deviceSn is in several groups or two devices share the code.
    """
    return find_one(_backend(target), ident, group)


def list_devices(target: Session | Backend, query: SearchQuery) -> Page:
    """One page of the devices matching ``query``."""
    return _backend(target).search(query)


def export_devices_to(
    target: Session | Backend,
    out: str | Path,
    query: SearchQuery,
    *,
    fmt: str | None = None,
    include_secrets: bool = False,
    raw_csv: bool = False,
) -> ExportReport:
    """Stream the devices matching ``query`` into a CSV / JSON lines file (a CSV one
    spreadsheet-safe unless ``raw_csv``: docs/csv-format.md, "Spreadsheet-safe output")."""
    backend = _backend(target)
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


def update_device(
    target: Session | Backend,
    ident: str,
    *,
    group: str | None = None,
    desc: str | None = None,
    batch_tag: str | None = None,
    values: dict[str, str] | None = None,
    unset: Sequence[str] = (),
    journal: Journal | None = None,
) -> UpdateResult:
    """Update one device's description, batch tag and master data (``enosprov devices
    update``); one "update" journal record."""
    backend, journal = _unpack(target, journal)
    return device_ops.update_device(
        backend, ident, group=group, desc=desc, batch_tag=batch_tag, values=values, unset=unset,
        journal=journal,
    )  # fmt: skip


def delete_devices(
    target: Session | Backend, devices: Sequence[Device], *, journal: Journal | None = None
) -> DeleteReport:
    """Delete ``devices`` (all of one group) in one request; one "delete" journal record."""
    backend, journal = _unpack(target, journal)
    return device_ops.delete_devices(backend, devices, journal=journal)


def allocate_devices(
    target: Session | Backend,
    devices: Sequence[Device],
    *,
    region_id: str | None = None,
    org_id: str | None = None,
    journal: Journal | None = None,
) -> list[AllocateResult]:
    """Allocate each device to ``region_id``/``org_id`` (both, or neither: its own or its
    group's target), as ``enosprov devices allocate``; one "allocate" journal record."""
    backend, journal = _unpack(target, journal)
    return device_ops.allocate_devices(
        backend, devices, region_id=region_id, org_id=org_id, journal=journal
    )


def device_history(
    target: Session | Backend,
    ident: str,
    *,
    group: str | None = None,
    journal: Journal | None = None,
) -> DeviceHistory:
    """The chain of units ``ident`` belongs to and every journal event of those units."""
    backend, journal = _unpack(target, journal)
    return lineage.device_history(backend, ident, group=group, journal=journal)


# -- credential files and labels ------------------------------------------------------------------


def _selection(
    group: str,
    batch_tag: str | None,
    device_sns: Sequence[str],
    csv_path: str | Path | None,
    no_register: bool = False,
) -> Selection:
    from .burn.export import Selection

    return Selection(
        group=group,
        batch_tag=batch_tag,
        device_sns=tuple(device_sns),
        csv_path=str(csv_path) if csv_path is not None else None,
        no_register=no_register,
    )


def burn_export(
    target: Session | Backend,
    group: str,
    out: str | Path,
    *,
    fmt: str = "json",
    content: str = "bootstrap",
    batch_tag: str | None = None,
    device_sns: Sequence[str] = (),
    csv_path: str | Path | None = None,
    no_register: bool = False,
    dps_url: str | None = None,
    options: FormatOptions | None = None,
    progress: ProgressFn | None = None,
    raw_csv: bool = False,
    journal: Journal | None = None,
) -> BurnReport:
    """Write one credential file per selected device into ``out`` plus manifest.csv /
    manifest.json (``enosprov burn export``; docs/burn-formats.md).

    The devices: all of ``group``, narrowed by ``batch_tag``, ``device_sns`` and/or a CSV with
    a deviceSn column (``csv_path``); ``no_register`` exports listed deviceSns that register
    themselves on bootstrap. ``fmt``: json, ini, c, bin, hex, nvs or template (``options``:
    flash address, NVS namespace and size, template text). ``content``: "bootstrap" (group
    secret) or "triple" (device secret). One "burn-export" journal record."""
    from .burn.export import export_burn_files

    backend, journal = _unpack(target, journal)
    return export_burn_files(
        backend, _selection(group, batch_tag, device_sns, csv_path, no_register), out,
        fmt=fmt, profile=content, dps_url=dps_url, options=options, progress=progress,
        journal=journal, raw_csv=raw_csv,
    )  # fmt: skip


def label_export(
    target: Session | Backend,
    group: str,
    out: str | Path,
    *,
    fmt: str | None = None,
    template: str | Path | None = None,
    batch_tag: str | None = None,
    device_sns: Sequence[str] = (),
    csv_path: str | Path | None = None,
    order: str = "registration",
    per_device: bool = False,
    force: bool = False,
    options: QrOptions | None = None,
    printer: str | None = None,
    progress: ProgressFn | None = None,
    raw_csv: bool = False,
    journal: Journal | None = None,
) -> QrReport:
    """Write one QR label per selected device into ``out`` plus the manifest (``enosprov qr
    batch``; docs/labels.md), selected as by :func:`burn_export`.

    ``fmt``: png (default), svg, both, or pdf / zpl: one document laid out by the label
    ``template`` (a shipped name such as ``a4-3x8-70x37`` or a TOML file), named after the
    selection (``report.document``), or one file per unit with ``per_device``. ``order``:
    registration, device-sn or csv. ``printer`` (``tcp://HOST``, ``lp:QUEUE``, ``file:PATH``)
    also prints every label; its results are in ``report.printing``. One "label-export"
    journal record (and one more for the printer)."""
    from .qr.batch import qr_batch

    backend, journal = _unpack(target, journal)
    return qr_batch(
        backend, _selection(group, batch_tag, device_sns, csv_path), out, fmt=fmt,
        options=options, progress=progress, template=str(template) if template else None,
        journal=journal, raw_csv=raw_csv, order=order, per_device=per_device, force=force,
        printer=printer,
    )  # fmt: skip


# -- batches --------------------------------------------------------------------------------------


def batch_summaries(
    target: Session | Backend,
    *,
    group: str | None = None,
    since: str | int | None = None,
    until: str | int | None = None,
    sort: str = "tag",
    journal: Journal | None = None,
) -> list[BatchSummary]:
    """Every batch (group + batch tag) with its devices per state and first/last activity
    (``enosprov batches list``; docs/batches.md). The exported, labelled, replaced and deleted
    counts come from the journal. ``since``/``until``: epoch ms, or ``7d``, ``2026-11-01``...;
    ``sort``: tag, first, last, registered or connected."""
    from .core.batches import list_batches

    backend, journal = _unpack(target, journal)
    return list_batches(backend, journal, group=group, since=since, until=until, sort=sort)


def batch_detail(
    target: Session | Backend,
    tag: str,
    *,
    group: str | None = None,
    stale: str = "7d",
    stuck_limit: int = 50,
    journal: Journal | None = None,
) -> BatchDetail:
    """One batch (``enosprov batches show``): its summary, the devices stuck (exported or
    labelled longer than ``stale`` ago and never bootstrapped), activations per day,
    replacements, retired units that came back, and production by station. ``group`` is
    needed when the tag is in several groups (and saves a pass over EnOS)."""
    from .core.batches import show_batch

    backend, journal = _unpack(target, journal)
    return show_batch(backend, journal, tag, group=group, stale=stale, stuck_limit=stuck_limit)


@dataclass
class BatchReport:
    """The files :func:`batch_report` wrote, and the batch they describe."""

    html: Path
    csv: Path | None
    csv_rows: int | None
    detail: BatchDetail

    def to_dict(self) -> dict:
        """What ``enosprov batches report --json`` prints."""
        return {
            "html": str(self.html),
            "csv": str(self.csv) if self.csv else None,
            "csvRows": self.csv_rows,
            "batch": self.detail.summary.to_dict(),
            "returnedCount": len(self.detail.returned),
            "returned": [r.to_dict() for r in self.detail.returned],
        }


def batch_report(
    target: Session | Backend,
    tag: str,
    out: str | Path,
    *,
    csv_path: str | Path | None = None,
    group: str | None = None,
    stale: str = "7d",
    raw_csv: bool = False,
    journal: Journal | None = None,
) -> BatchReport:
    """Write the self-contained HTML report of one batch to ``out`` and, with ``csv_path``, its
    per-device CSV (spreadsheet-safe unless ``raw_csv``), as ``enosprov batches report``."""
    from .core.batches import show_batch
    from .reports.batch_csv import write_batch_csv
    from .reports.batch_html import write_batch_html

    backend, journal = _unpack(target, journal)
    label = target.label if isinstance(target, Session) else backend.label
    detail = show_batch(backend, journal, tag, group=group, stale=stale, stuck_limit=1000)
    html = write_batch_html(detail, out, generated_ms=int(time.time() * 1000), backend_label=label)
    rows = None
    if csv_path is not None:
        rows = write_batch_csv(backend, journal, detail, csv_path, raw_csv=raw_csv)
    return BatchReport(Path(html), Path(csv_path) if csv_path is not None else None, rows, detail)


# -- replacement ----------------------------------------------------------------------------------


def plan_replacements(
    target: Session | Backend,
    requests: Sequence[ReplaceRequest],
    *,
    group: str | None = None,
    source: str | None = None,
    journal: Journal | None = None,
) -> list[PlannedReplacement]:
    """Check every (old, new) pair; nothing is changed (``enosprov replace --dry-run``). The
    journal tells which units were already replaced. Raises the refusal (one pair) or a
    ValidationFailedError listing every refused pair."""
    backend, journal = _unpack(target, journal)
    return replacement.plan_replacements(
        backend, requests, group=group, journal=journal, source=source
    )


def replace_devices(
    target: Session | Backend,
    plans: Sequence[PlannedReplacement],
    *,
    outputs: Outputs | None = None,
    progress: ProgressFn | None = None,
    journal: Journal | None = None,
) -> ReplaceReport:
    """Apply planned replacements, then write the new units' credential files and labels
    (``outputs``); one "replace" journal record per unit (and the exports' own)."""
    backend, journal = _unpack(target, journal)
    return replacement.replace_devices(
        backend, plans, journal=journal, outputs=outputs, progress=progress
    )


def replace_device(
    target: Session | Backend,
    old: str,
    new_device_sn: str,
    *,
    group: str | None = None,
    outputs: Outputs | None = None,
    journal: Journal | None = None,
) -> ReplaceReport:
    """Replace one unit (``enosprov replace OLD --new-device-sn NEW``): ``old`` is a system sn,
    deviceSn or short code; the new unit keeps its master data, batch tag and allocation.
    Refused with nothing changed when the pair cannot be done; reported as already done when
    it was."""
    backend, journal = _unpack(target, journal)
    return replacement.replace_device(
        backend, old, new_device_sn, group=group, journal=journal, outputs=outputs
    )


# -- reprovisioning -------------------------------------------------------------------------------


def plan_reprovision(
    target: Session | Backend,
    refs: Sequence[str] = (),
    *,
    region_id: str | None,
    org_id: str | None,
    group: str | None = None,
    csv_path: str | Path | None = None,
    batch_tag: str | None = None,
) -> ReprovisionPlan:
    """Resolve and check a reprovisioning; nothing is changed (``enosprov reprovision
    --dry-run``)."""
    return _reprovision.plan_reprovision(
        _backend(target), refs, region_id=region_id, org_id=org_id, group=group,
        csv_path=csv_path, batch_tag=batch_tag,
    )  # fmt: skip


def apply_reprovision(
    target: Session | Backend, plan: ReprovisionPlan, *, journal: Journal | None = None
) -> ReprovisionResult:
    """Reset the accepted devices of ``plan`` and set their new target; one "reprovision"
    journal record."""
    backend, journal = _unpack(target, journal)
    return _reprovision.apply_reprovision(backend, plan, journal=journal)


def reprovision(
    target: Session | Backend,
    refs: Sequence[str] = (),
    *,
    region_id: str,
    org_id: str,
    group: str | None = None,
    csv_path: str | Path | None = None,
    batch_tag: str | None = None,
    journal: Journal | None = None,
) -> ReprovisionResult:
    """Move devices (system sn, deviceSn or short code; or a CSV, or a batch tag) to another
    environment and OU (``enosprov reprovision --yes``): plan, then apply. Devices refused one
    by one are in ``result.plan.refused``."""
    backend, journal = _unpack(target, journal)
    return _reprovision.reprovision(
        backend, refs, region_id=region_id, org_id=org_id, group=group, csv_path=csv_path,
        batch_tag=batch_tag, journal=journal,
    )  # fmt: skip


# -- the journal ----------------------------------------------------------------------------------


def journal_entries(
    target: Session | Journal,
    *,
    device: str | None = None,
    operations: Sequence[str] = (),
    since: str | int | None = None,
    until: str | int | None = None,
    station: str | None = None,
    group: str | None = None,
    limit: int | None = None,
    newest_first: bool = False,
) -> list[Entry]:
    """The audit journal records matching every filter given (``enosprov log``), oldest first
    unless ``newest_first``. ``device``: a system sn or deviceSn; ``operations``: e.g.
    ``("register", "replace")``; ``since``/``until``: epoch ms, or ``7d``, ``12h``,
    ``2026-11-01`` or an ISO date-time; ``group``: a registration group id. For a journal too
    large for a list, iterate ``session.journal.entries(...)`` instead."""
    journal = target.journal if isinstance(target, Session) else target
    start = parse_time(since, option="since") if isinstance(since, str) else since
    end = parse_time(until, option="until") if isinstance(until, str) else until
    return list(
        journal.entries(
            device=device,
            operations=tuple(operations),
            since=start,
            until=end,
            station=station,
            group_id=group,
            limit=limit,
            newest_first=newest_first,
        )
    )
