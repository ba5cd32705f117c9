"""`burn export`: one credential file per device, atomically written, resumable, with a manifest.

Selection: a group, narrowed by batch tag, by explicit deviceSns or by a CSV of deviceSns; or, with
``no_register``, deviceSns straight from a CSV for the configure-only flow (the devices register
themselves on bootstrap). Re-running an export rewrites no file that is already correct, and a
secret is never generated here: it always comes from the store / EnOS.

A bootstrap file carries the deviceName and timezone Bootstrap Device requires: the registered
deviceName (its defaultValue) else the deviceSn, and deviceData.timezone else the group's default
timezone. A selection with a device that has neither timezone is refused before any file is
written.
"""

from __future__ import annotations

import csv
import datetime as dt
import hashlib
import json
import re
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from .. import signing
from ..atomic import AtomicFile, write_bytes
from ..errors import InputFileError, InvalidArgumentError, NotFoundError
from ..journal import Journal, journal_or_null
from ..models import Device, RegistrationGroup, SearchQuery
from .credential import PROFILES, Credential

MANIFEST_CSV = "manifest.csv"
MANIFEST_JSON = "manifest.json"
MANIFEST_COLUMNS = ("deviceSn", "sn", "file", "format", "profile", "flashAddress", "sha256", "time")
DEFAULT_DPS_URL = "https://iot-dps-{region}.envisioniot.com"  # [DOC] iot-dps-{ENV_ID}
LOOKUP_SLICE = 500
CAN_REFUSE = ("c", "nvs", "template")
WRITERS = 2  # threads creating files
WINDOW = 256  # files encoded ahead of the writers at most  # formats that refuse some values (NUL, sizes, fields)
_UNSAFE = re.compile(r"[^A-Za-z0-9_.-]")
_WINDOWS_RESERVED = {"CON", "PRN", "AUX", "NUL", *(f"COM{i}" for i in range(1, 10)),
                     *(f"LPT{i}" for i in range(1, 10))}  # fmt: skip

ProgressFn = Callable[[str, int, int | None], None]


def safe_filename(device_sn: str) -> str:
    """A file name for a deviceSn that can never leave the output folder, on any OS.

    Letters, digits, '_', '-' and '.' are kept; every other character becomes %XX (UTF-8), a
    leading '.' too (no hidden files, no '..'); Windows device names get a '_' prefix.
    """
    name = _UNSAFE.sub(lambda m: "".join(f"%{b:02X}" for b in m.group().encode()), device_sn)
    if name.startswith("."):
        name = "%2E" + name[1:]
    if name.split(".")[0].upper() in _WINDOWS_RESERVED:
        name = "_" + name
    return name or "_"


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
    from ..core.csvsource import read_columns

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


def select_devices(backend, group: RegistrationGroup, selection: Selection):
    """A function returning a fresh iterator over the selected devices (Device), or for
    no_register their deviceSns (str). Checked first: every requested deviceSn exists in the
    group (one error naming the missing ones, before anything is written)."""
    requested = _requested(selection)
    if selection.no_register:
        if not requested:
            raise InvalidArgumentError(
                "--no-register needs the deviceSns: --csv FILE or --device-sn"
            )
        from ..core.rules import sn_problem

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
            f"not registered in group {group.group_id}: {_shown(missing)}",
            hint="check the deviceSns (a device of another group is not exported), or use "
            "--no-register for devices that register themselves",
        )
    return lookup


def _shown(names: list[str], limit: int = 10) -> str:
    more = f" and {len(names) - limit} more" if len(names) > limit else ""
    return ", ".join(names[:limit]) + more


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
        what = f"device(s) {_shown(sorted(device_sns))} of group {group.group_id}"
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


def dps_url_for(backend, group: RegistrationGroup, override: str | None) -> str:
    if override:
        return override
    configured = getattr(getattr(backend, "config", None), "dps_url", None)
    if configured:
        return configured
    if group.region_id:
        return DEFAULT_DPS_URL.format(region=group.region_id)
    raise InvalidArgumentError(
        f"no DPS device endpoint known for group {group.group_id}",
        hint="pass --dps-url (e.g. https://iot-dps-eu2.envisioniot.com), or give the group a region",
    )


def credential_for(
    backend, group: RegistrationGroup, item: Device | str, profile: str, dps_url: str
) -> Credential:
    if profile == "bootstrap":
        if not group.group_secret:
            why = getattr(backend, "group_secret_error", lambda _g: None)(group.group_id)
            raise InvalidArgumentError(
                f"the group secret of {group.group_id} is not available"
                + (f": {why}" if why else ""),
                hint="with a profile, give the group a secret source (config add-group --secret-env)",
            )
        dev = _device(item)
        device_sn = dev.device_sn if dev else item
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
    info = _connection_info(backend, group, dev)
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


def _connection_info(backend, group: RegistrationGroup, dev: Device):
    """The device's connection info: the local store reads it; EnOS answers get/conn."""
    if hasattr(backend, "connection_info"):  # the local store: no call, no side effect
        return backend.connection_info(dev, group)
    ts = int(time.time() * 1000)
    sign = signing.sign(group.sign_scheme, dev.sn, ts, group.group_secret)
    return backend.get_connection_info(sn=dev.sn, timestamp=ts, sign=sign)


def _check_out_dir(out_dir: Path) -> None:
    if out_dir.exists() and not out_dir.is_dir():
        raise InputFileError(f"{out_dir} exists and is not a folder", hint="choose another --out")
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
        probe = AtomicFile(out_dir / ".enosprov-write-test")
        probe.open()
        probe.abort()
    except (OSError, InputFileError) as exc:
        raise InputFileError(
            f"cannot write into {out_dir}: {exc}", hint="check the folder's permissions"
        ) from None


def _previous_times(out_dir: Path) -> dict[tuple[str, str], str]:
    try:
        rows = json.loads((out_dir / MANIFEST_JSON).read_text(encoding="utf-8"))
        return {(r["file"], r["sha256"]): r["time"] for r in rows}
    except (OSError, ValueError, KeyError, TypeError):
        return {}


def export_burn_files(
    backend,
    selection: Selection,
    out_dir: str | Path,
    *,
    fmt: str = "json",
    profile: str = "bootstrap",
    dps_url: str | None = None,
    options=None,
    progress: ProgressFn | None = None,
    journal: Journal | None = None,
) -> BurnReport:
    """Write one credential file per selected device into ``out_dir`` plus the manifest.

    Appends one "burn-export" record to ``journal``: the devices whose file was written or
    already correct (sn "" for ``no_register``), and the folder, format and content profile.
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
    # A first pass checks what can fail per device (an unallocated device for the triple
    # profile; a bootstrap device without a timezone; a value the format refuses, a template
    # field without a value) before any file is touched. JSON, INI, binary and HEX accept any
    # credential: no pass is needed for them when the group has a default timezone.
    needs_timezone = profile == "bootstrap" and not group.timezone
    if profile == "triple" or fmt in CAN_REFUSE or needs_timezone:
        no_timezone: list[str] = []
        for item in items():
            if profile == "triple":
                if not isinstance(item, Device) or not item.allocated:
                    name = item.device_sn if isinstance(item, Device) else item
                    raise InvalidArgumentError(
                        f"device {name} is not allocated: it has no triple yet",
                        hint="allocate it (or let it bootstrap) first, or export the bootstrap "
                        "profile",
                    )
            elif needs_timezone and not timezone_for(group, _device(item)):
                no_timezone.append(item.device_sn if isinstance(item, Device) else item)
            elif fmt in CAN_REFUSE:  # encode and drop: a value the format refuses stops it here
                encoder.encode(credential_for(backend, group, item, profile, url), options)
        if no_timezone:
            raise no_timezone_error(group, no_timezone, registered=not selection.no_register)
    _check_out_dir(out_dir)
    report = BurnReport(str(out_dir), fmt, profile)
    previous = _previous_times(out_dir)
    now = dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")
    address = f"0x{options.flash_address:X}" if fmt in ("hex", "nvs") else ""
    manifest = []

    def store(path: Path, data: bytes) -> bool:
        """Write unless already correct; True when written."""
        if _same_content(path, data):
            return False
        write_bytes(path, data, private=True)  # every profile holds a secret
        return True

    def record(cred: Credential, name: str, digest: str, written: bool) -> None:
        if written:
            report.written += 1
            when = now
        else:
            report.unchanged += 1
            when = previous.get((name, digest), now)
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
                record(cred, name, hashlib.sha256(data).hexdigest(), store(out_dir / name, data))
            report.manifest = _write_manifest(out_dir, manifest)
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


def _same_content(path: Path, data: bytes) -> bool:
    try:
        if path.stat().st_size != len(data):
            return False
        return path.read_bytes() == data
    except OSError:
        return False


def _write_manifest(out_dir: Path, rows: Iterable[dict]) -> list[str]:
    rows = list(rows)
    with AtomicFile(out_dir / MANIFEST_CSV) as fh:
        writer = csv.DictWriter(fh, fieldnames=MANIFEST_COLUMNS)
        writer.writeheader()
        writer.writerows(rows)
    with AtomicFile(out_dir / MANIFEST_JSON) as fh:  # one entry a line: diffable, and fast
        fh.write("[\n" + ",\n".join(json.dumps(r, ensure_ascii=False) for r in rows) + "\n]\n")
    return [str(out_dir / MANIFEST_CSV), str(out_dir / MANIFEST_JSON)]
