"""Export devices to CSV or JSON lines, streamed, written atomically.

Secrets (device secret) are only written when asked for; such a file is created owner-only.
A CSV export is spreadsheet-safe (enosprov.csvsafe: text that would start a formula, such as a
desc ``=1+2``, gets a leading ``'``) unless ``raw_csv``; ``enosprov register`` reads it back
unchanged.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from ..atomic import AtomicFile
from ..domain import csvsafe
from ..domain.errors import InputFileError
from ..domain.models import Device

# csvsafe.cell changes only text that starts with one of these: a cheap test per cell first
# halves the cost of a spreadsheet-safe export (measured: 100,000 devices).
_LOOK = frozenset((csvsafe.PREFIX, *csvsafe.TRIGGERS))

BASE_COLUMNS = (
    "sn",
    "deviceSn",
    "groupId",
    "productKey",
    "deviceKey",
    "batchTag",
    "batchOrder",
    "regionId",
    "orgId",
    "allocateStatus",
    "connectStatus",
    "currentStatus",
    "reprovisioning",
    "createTime",
    "createTimeUtc",  # ISO 8601 next to the epoch milliseconds, for people
    "updateTime",
    "updateTimeUtc",
    "desc",
    "deviceName",
    "timezone",
)


@dataclass
class ExportReport:
    file: str
    format: str
    devices: int
    include_secrets: bool

    def to_dict(self) -> dict:
        return {
            "file": self.file,
            "format": self.format,
            "devices": self.devices,
            "includeSecrets": self.include_secrets,
        }


def export_format(path: Path, fmt: str | None) -> str:
    if fmt:
        if fmt not in ("csv", "jsonl"):
            raise InputFileError(f"unknown export format {fmt!r}", hint="use csv or jsonl")
        return fmt
    return "jsonl" if path.suffix.lower() in (".jsonl", ".ndjson", ".json") else "csv"


def _csv_row(dev: Device, md_keys: list[str], include_secrets: bool) -> list:
    data = dev.device_data
    name = data.get("deviceName")
    row = [
        dev.sn,
        dev.device_sn,
        dev.group_id,
        dev.product_key or "",
        dev.device_key or "",
        dev.batch_tag_text or "",
        dev.batch_order if dev.batch_order is not None else "",
        dev.region_id or "",
        dev.org_id or "",
        dev.allocate_status,
        dev.connect_status,
        dev.status.current_status,
        "true" if dev.reprovisioning else "false",
        dev.create_time,
        csvsafe.iso_utc(dev.create_time),
        dev.update_time,
        csvsafe.iso_utc(dev.update_time),
        dev.desc or "",
        name.get("defaultValue", "") if isinstance(name, dict) else (name or ""),
        data.get("timezone", ""),
    ]
    row.extend(data.get(k, "") for k in md_keys)
    if include_secrets:
        row.append(dev.device_secret or "")
    return row


def _safe(cells: list) -> list:
    """csvsafe.row(cells), about twice as fast: only cells that start with ' or a trigger go
    through csvsafe.cell."""
    cell = csvsafe.cell
    return [cell(c) if c.__class__ is str and c and c[0] in _LOOK else c for c in cells]


def export_devices(
    devices: Iterable[Device],
    out: str | Path,
    *,
    masterdata_keys: list[str] | None = None,
    fmt: str | None = None,
    include_secrets: bool = False,
    raw_csv: bool = False,
) -> ExportReport:
    """Write ``devices`` to ``out``. Master data keys become CSV columns; JSON lines hold everything.

    A CSV file is for people: it starts with the UTF-8 BOM, epoch-millisecond times have an ISO
    8601 column next to them, and cells are spreadsheet-safe (enosprov.csvsafe); ``raw_csv``
    writes machine CSV (no BOM, cells as they are)."""
    out = Path(out)
    fmt = export_format(out, fmt)
    md_keys = list(masterdata_keys or [])
    count = 0
    with AtomicFile(out, private=include_secrets) as fh:
        if fmt == "csv":
            fh.write(csvsafe.bom(raw_csv))
            writer = csv.writer(fh)
            header = [*BASE_COLUMNS, *md_keys] + (["deviceSecret"] if include_secrets else [])
            writer.writerow(header)
            for dev in devices:
                row = _csv_row(dev, md_keys, include_secrets)
                writer.writerow(row if raw_csv else _safe(row))
                count += 1
        else:
            for dev in devices:
                fh.write(
                    json.dumps(dev.to_dict(include_secret=include_secrets), ensure_ascii=False)
                )
                fh.write("\n")
                count += 1
    return ExportReport(str(out), fmt, count, include_secrets)
