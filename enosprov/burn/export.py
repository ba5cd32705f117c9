"""`burn export`: one credential file per device, atomically written, resumable, with a manifest.

Selection: a group, narrowed by batch tag, by explicit deviceSns or by a CSV of deviceSns; or, with
``no_register``, deviceSns straight from a CSV for the configure-only flow (the devices register
themselves on bootstrap). Re-running an export rewrites no file that is already correct, and a
secret is never generated here: it always comes from the store / EnOS.

Output folder: names are checked first (a file name or path longer than the file system allows
is refused, naming the deviceSns, before anything is written); a run starts by removing the
temporary files killed runs left (enosprov.atomic); the previous manifest stays while files are
only found correct and is removed just before the first file is written, the new one written
atomically at the end (:class:`OutputFolder`). So a manifest never lists a SHA-256 its file
does not have, even when a run is killed; a re-run skips files already correct.

A bootstrap file carries the deviceName and timezone Bootstrap Device requires: the registered
deviceName (its defaultValue) else the deviceSn, and deviceData.timezone else the group's default
timezone. A selection with a device that has neither timezone is refused before any file is
written.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import os
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from ..atomic import AtomicFile
from ..backends.base import Backend
from ..domain import signing
from ..domain.errors import InvalidArgumentError, NotFoundError
from ..domain.models import ConnectionInfo, Device, RegistrationGroup, SearchQuery
from ..journal import Journal, journal_or_null
from ..outputs import (  # the output folder, shared with the labels (qr) and the station
    MANIFEST_CSV,
    MANIFEST_JSON,
    OutputFolder,
    check_file_names,
    safe_filename,
    shown,
    write_csv_manifest,
)
from .credential import PROFILES, Credential

MANIFEST_COLUMNS = ("deviceSn", "sn", "file", "format", "profile", "flashAddress", "sha256", "time")
DEFAULT_DPS_URL = "https://iot-dps-{region}.envisioniot.com"  # [DOC] iot-dps-{ENV_ID}
LOOKUP_SLICE = 500
CAN_REFUSE = ("c", "nvs", "template")
WRITERS = 2  # threads creating files
WINDOW = 256  # files encoded ahead of the writers at most  # formats that refuse some values (NUL, sizes, fields)

ProgressFn = Callable[[str, int, int | None], None]


@dataclass
class BurnReport:
    out_dir: str
    format: str
    profile: str
    devices: int = 0
    written: int = 0
    unchanged: int = 0
    manifest: list[str] = field(default_factory=list)
    seconds: float = 0.0

    def to_dict(self) -> dict:
        return {
            "outDir": self.out_dir,
            "format": self.format,
            "profile": self.profile,
            "devices": self.devices,
            "written": self.written,
            "unchanged": self.unchanged,
            "manifest": self.manifest,
            "seconds": round(self.seconds, 3),
        }


@dataclass(frozen=True)
class Selection:
    """Which devices: all of ``group``, narrowed by one of the other fields."""

    group: str
    batch_tag: str | None = None
    device_sns: tuple[str, ...] = ()
    csv_path: str | None = None  # a CSV with a deviceSn column
    no_register: bool = False  # deviceSns from csv_path / device_sns, not looked up


def read_device_sns(path: str | Path) -> list[str]:
    """The deviceSn column of a CSV file (encoding utf-8-sig, delimiter detected)."""
    from ..domain.csvsource import read_columns

    hint = "the first line is the header, with a deviceSn column"
    return [v[0] for _row, v in read_columns(path, [("deviceSn",)], hint=hint)]


def _requested(selection: Selection) -> list[str]:
    sns = list(selection.device_sns)
    if selection.csv_path:
        sns.extend(read_device_sns(selection.csv_path))
    seen, out = set(), []
    for sn in sns:
        if sn not in seen:
            seen.add(sn)
            out.append(sn)
    return out


def select_devices(backend: Backend, group: RegistrationGroup, selection: Selection):
    """A function returning a fresh iterator over the selected devices (Device), or for
    no_register their deviceSns (str). Checked first: every requested deviceSn exists in the
    group (one error naming the missing ones, before anything is written)."""
    requested = _requested(selection)
    if selection.no_register:
        if not requested:
            raise InvalidArgumentError(
                "--no-register needs the deviceSns: --csv FILE or --device-sn"
            )
        from ..domain.rules import sn_problem

        for sn in requested:
            problem = sn_problem(sn, group.sn_pattern)
            if problem:
                raise InvalidArgumentError(problem)
        return lambda: iter(requested)
    if not requested:
        q = SearchQuery(group_id=group.group_id, batch_tag=selection.batch_tag)
        if next(iter(backend.iter_devices(q)), None) is None:
            raise NotFoundError(
                f"no device in group {group.group_id}"
                + (f" with batch tag {selection.batch_tag!r}" if selection.batch_tag else ""),
                hint="register them first, or use --no-register for the configure-only flow",
            )
        return lambda: backend.iter_devices(q)

    def lookup() -> Iterator[Device]:
        for start in range(0, len(requested), LOOKUP_SLICE):
            part = tuple(requested[start : start + LOOKUP_SLICE])
            q = SearchQuery(group_id=group.group_id, device_sns=part, batch_tag=selection.batch_tag)
            by_sn = {dev.device_sn: dev for dev in backend.iter_devices(q)}
            yield from (by_sn[sn] for sn in part if sn in by_sn)

    found = {dev.device_sn for dev in lookup()}
    missing = [sn for sn in requested if sn not in found]
    if missing:
        raise NotFoundError(
            f"not registered in group {group.group_id}: {shown(missing)}",
            hint="check the deviceSns (a device of another group is not exported), or use "
            "--no-register for devices that register themselves",
        )
    return lookup


def device_name_for(dev: Device | None, device_sn: str) -> str:
    """The deviceName burned: the registered deviceName's defaultValue, else the deviceSn.

    Only the default text: the StringI18n translations (i18nValue) are not burned."""
    name = dev.device_data.get("deviceName") if dev is not None else None
    if isinstance(name, dict):
        name = name.get("defaultValue")
    return name if isinstance(name, str) and name.strip() else device_sn


def timezone_for(group: RegistrationGroup, dev: Device | None) -> str | None:
    """The timezone burned: the device's deviceData.timezone, else the group's default."""
    own = dev.device_data.get("timezone") if dev is not None else None
    return own or group.timezone or None


def no_timezone_error(
    group: RegistrationGroup, device_sns: list[str], registered: bool = True
) -> InvalidArgumentError:
    """The refusal of an export in which ``device_sns`` have no timezone to burn."""
    fix = "give the group a default timezone (group create --timezone +08:00; with a profile: "
    fix += "config add-group PROFILE GROUP --replace --timezone +08:00)"
    if registered:
        what = f"device(s) {shown(sorted(device_sns))} of group {group.group_id}"
        why = "neither deviceData.timezone nor a group default timezone"
        fix += ", or the devices one (a timezone column in the registration CSV, or devices "
        fix += "update SN --set timezone=+08:00)"
    else:
        what = f"the {len(device_sns)} unregistered device(s) of group {group.group_id}"
        why = "the group has no default timezone"
    return InvalidArgumentError(
        f"no timezone for {what}: {why}, and Bootstrap Device requires one; nothing was written",
        hint=fix,
    )


def dps_url_for(backend: Backend, group: RegistrationGroup, override: str | None) -> str:
    if override:
        return override
    configured = backend.dps_url
    if configured:
        return configured
    if group.region_id:
        return DEFAULT_DPS_URL.format(region=group.region_id)
    raise InvalidArgumentError(
        f"no DPS device endpoint known for group {group.group_id}",
        hint="pass --dps-url (e.g. https://iot-dps-eu2.envisioniot.com), or give the group a region",
    )


def credential_for(
    backend: Backend,
    group: RegistrationGroup,
    item: Device | str,
    profile: str,
    dps_url: str | None,
) -> Credential:
    """``dps_url``: the endpoint a bootstrap credential carries (unused by the triple profile)."""
    if profile == "bootstrap":
        if not group.group_secret:
            why = backend.group_secret_error(group.group_id)
            raise InvalidArgumentError(
                f"the group secret of {group.group_id} is not available"
                + (f": {why}" if why else ""),
                hint="with a profile, give the group a secret source (config add-group --secret-env)",
            )
        dev, device_sn = (item, item.device_sn) if isinstance(item, Device) else (None, item)
        timezone = timezone_for(group, dev)
        if not timezone:
            raise no_timezone_error(group, [device_sn], registered=dev is not None)
        return Credential(
            profile="bootstrap",
            device_sn=device_sn,
            sn=dev.sn if dev else None,
            group_id=group.group_id,
            group_secret=group.group_secret,
            dps_url=dps_url,
            sign_scheme=group.sign_scheme,
            device_name=device_name_for(dev, device_sn),
            timezone=timezone,
        )
    if not isinstance(item, Device):
        raise InvalidArgumentError("the triple profile needs registered, allocated devices")
    dev = item
    if not dev.allocated:
        raise InvalidArgumentError(
            f"device {dev.device_sn} is not allocated: it has no triple yet",
            hint="allocate it first, or export the bootstrap profile",
        )
    info = connection_info_for(backend, group, dev)
    if info is None:
        raise InvalidArgumentError(
            f"no group secret for group {group.group_id}: the triple of {dev.device_sn} is "
            "asked for as the device, signed with it",
            hint=backend.group_secret_error(group.group_id) or "add the group's secret",
        )
    return Credential(
        profile="triple",
        device_sn=dev.device_sn,
        sn=dev.sn,
        product_key=info.product_key or dev.product_key,
        device_key=info.device_key or dev.device_key,
        device_secret=info.device_secret,
        mqtt_url=info.mqtt_url,
        http_url=info.http_url,
    )


def connection_info_for(
    backend: Backend, group: RegistrationGroup, dev: Device
) -> ConnectionInfo | None:
    """The device's connection info: what the backend stores (the local store: no call, no
    side effect), else EnOS's answer to get/conn signed with the group secret; None when the
    backend stores none and the group secret is not known here."""
    stored = backend.stored_connection_info(dev, group)
    if stored is not None:
        return stored
    if not group.group_secret:
        return None
    ts = int(time.time() * 1000)
    sign = signing.sign(group.sign_scheme, dev.sn, ts, group.group_secret)
    resign = signing.resigner(group.sign_scheme, dev.sn, group.group_secret, ts)
    return backend.get_connection_info(sn=dev.sn, timestamp=ts, sign=sign, resign=resign)


def _previous_times(out_dir: Path) -> dict[tuple[str, str], str]:
    try:
        rows = json.loads((out_dir / MANIFEST_JSON).read_text(encoding="utf-8"))
        return {(r["file"], r["sha256"]): r["time"] for r in rows}
    except (OSError, ValueError, KeyError, TypeError):
        return {}


def export_burn_files(
    backend: Backend,
    selection: Selection,
    out_dir: str | Path,
    *,
    fmt: str = "json",
    profile: str = "bootstrap",
    dps_url: str | None = None,
    options=None,
    progress: ProgressFn | None = None,
    journal: Journal | None = None,
    raw_csv: bool = False,
) -> BurnReport:
    """Write one credential file per selected device into ``out_dir`` plus the manifest.

    manifest.csv is spreadsheet-safe (csvsafe: a deviceSn starting with ``-`` gets a leading
    ``'``) unless ``raw_csv``; manifest.json always holds the values as they are. Appends one
    "burn-export" record to ``journal``: the devices whose file was written or already correct
    (sn "" for ``no_register``), and the folder, format and content profile.
    """
    from .formats import FORMATS, FormatOptions

    t0 = time.perf_counter()
    if fmt not in FORMATS:
        raise InvalidArgumentError(f"unknown format {fmt!r}", hint="one of: " + ", ".join(FORMATS))
    if profile not in PROFILES:
        raise InvalidArgumentError(f"unknown profile {profile!r}", hint="bootstrap or triple")
    options = options or FormatOptions()
    if fmt == "template":
        from .formats.template import check_template

        check_template(options.template or "")
    out_dir = Path(out_dir)
    group = backend.get_group(selection.group)
    url = dps_url_for(backend, group, dps_url) if profile == "bootstrap" else None
    items = select_devices(backend, group, selection)
    if selection.no_register and profile != "bootstrap":
        raise InvalidArgumentError("--no-register exports the bootstrap profile only")
    encoder = FORMATS[fmt]
    extension = encoder.file_extension(options)
    # A first pass, before any file is touched, names every file (a name or path too long for
    # the file system is refused) and checks what can fail per device (an unallocated device
    # for the triple profile; a bootstrap device without a timezone; a value the format
    # refuses, a template field without a value). JSON, INI, binary and HEX accept any
    # credential: when nothing else needs checking and the deviceSns were listed, the names
    # come from the list, with no second pass over the devices.
    needs_timezone = profile == "bootstrap" and not group.timezone
    per_device = profile == "triple" or fmt in CAN_REFUSE or needs_timezone
    no_timezone: list[str] = []

    def first_pass() -> Iterator[str]:
        if not per_device and (selection.device_sns or selection.csv_path):
            yield from _requested(selection)  # exactly the devices select_devices found
            return
        for item in items():
            device_sn = item.device_sn if isinstance(item, Device) else item
            if profile == "triple":
                if not isinstance(item, Device) or not item.allocated:
                    raise InvalidArgumentError(
                        f"device {device_sn} is not allocated: it has no triple yet",
                        hint="allocate it (or let it bootstrap) first, or export the bootstrap "
                        "profile",
                    )
            elif needs_timezone and not timezone_for(group, _device(item)):
                no_timezone.append(device_sn)
            elif fmt in CAN_REFUSE:  # encode and drop: a value the format refuses stops it here
                encoder.encode(credential_for(backend, group, item, profile, url), options)
            yield device_sn

    check_file_names(
        out_dir,
        ((sn, safe_filename(sn) + extension) for sn in first_pass()),
        files=(MANIFEST_CSV, MANIFEST_JSON),
    )
    if no_timezone:
        raise no_timezone_error(group, no_timezone, registered=not selection.no_register)
    folder = OutputFolder(out_dir)
    folder.open()
    report = BurnReport(str(out_dir), fmt, profile)
    previous = _previous_times(out_dir)
    now = dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")
    address = f"0x{options.flash_address:X}" if fmt in ("hex", "nvs") else ""
    manifest = []

    def record(cred: Credential, name: str, digest: str, found: os.stat_result | None) -> None:
        if found is None:
            report.written += 1
            when = now
        else:  # already correct: when the previous manifest says, else when it was written
            report.unchanged += 1
            when = previous.get((name, digest)) or _utc(found.st_mtime)
        manifest.append(
            {"deviceSn": cred.device_sn, "sn": cred.sn or "", "file": name, "format": fmt,
             "profile": profile, "flashAddress": address, "sha256": digest, "time": when}
        )  # fmt: skip
        report.devices += 1
        if progress and report.devices % 1000 == 0:
            progress("export", report.devices, None)

    detail = {"outDir": str(out_dir), "format": fmt, "content": profile}
    tags: dict[str, str | None] = {}  # sn -> batch tag, for the journal's "exported" marks
    with journal_or_null(journal).begin(
        "burn-export", group_id=group.group_id, detail=detail
    ) as rec:
        try:
            # Sequential: two writer threads measured no steadier here (file creation, the
            # dominant cost, is serialised by the file system per folder).
            for item in items():
                if isinstance(item, Device) and journal is not None:
                    tags[item.sn] = item.batch_tag_text
                cred = credential_for(backend, group, item, profile, url)
                data = encoder.encode(cred, options)
                name = safe_filename(cred.device_sn) + extension
                found = folder.store(name, data, private=True)  # every profile holds a secret
                record(cred, name, hashlib.sha256(data).hexdigest(), found)
            report.manifest = _write_manifest(out_dir, manifest, raw_csv)
        finally:  # the files written (or found correct) so far, even when it stopped early
            if journal is not None:
                rec.extend((m["sn"], m["deviceSn"]) for m in manifest)
                for m in manifest:
                    rec.mark("exported", m["sn"], m["deviceSn"], tags.get(m["sn"]))
            rec.detail.update(written=report.written, unchanged=report.unchanged)
    report.seconds = time.perf_counter() - t0
    return report


def _device(item: Device | str) -> Device | None:
    return item if isinstance(item, Device) else None


def _utc(timestamp: float) -> str:
    return dt.datetime.fromtimestamp(timestamp, dt.timezone.utc).isoformat(timespec="seconds")


def _write_manifest(out_dir: Path, rows: Iterable[dict], raw_csv: bool = False) -> list[str]:
    rows = list(rows)
    write_csv_manifest(out_dir / MANIFEST_CSV, rows, MANIFEST_COLUMNS, raw_csv)
    with AtomicFile(out_dir / MANIFEST_JSON) as fh:  # one entry a line: diffable, and fast
        fh.write("[\n" + ",\n".join(json.dumps(r, ensure_ascii=False) for r in rows) + "\n]\n")
    return [str(out_dir / MANIFEST_CSV), str(out_dir / MANIFEST_JSON)]
