"""Turn what a user typed (system sns, deviceSns, a CSV, a batch tag) into devices, all or nothing.

Lifecycle commands act on devices named in several ways; every reference must resolve before
anything changes, and one error names every reference that does not.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from ..errors import InvalidArgumentError, NotFoundError
from ..models import Device, SearchQuery

LOOKUP_SLICE = 500


def read_refs_csv(path: str | Path) -> list[str]:
    """The device references of a CSV: its ``sn`` column (system sns) or else its ``deviceSn``
    column. Blank lines are skipped; an empty cell is an error naming its row."""
    from .csvsource import read_columns

    hint = "the first line is the header; name the column sn or deviceSn"
    return [v[0] for _row, v in read_columns(path, [("sn", "deviceSn")], hint=hint)]


def _unique(refs: Sequence[str]) -> list[str]:
    seen: set[str] = set()
    return [r for r in refs if not (r in seen or seen.add(r))]


def names(items: Sequence[str], limit: int = 10) -> str:
    """``a, b, c and 7 more``."""
    shown = ", ".join(items[:limit])
    return shown + (f" and {len(items) - limit} more" if len(items) > limit else "")


def not_found_error(missing: Sequence[str], group: str | None = None) -> NotFoundError:
    where = f" in group {group}" if group else ""
    return NotFoundError(
        f"no device with system sn or deviceSn {names(missing)}{where}; nothing was changed",
        hint="check the serial numbers (`enosprov devices list`)",
    )


def resolve_devices(
    backend,
    refs: Sequence[str] = (),
    group: str | None = None,
    *,
    csv_path: str | Path | None = None,
    batch_tag: str | None = None,
) -> list[Device]:
    """The devices named by ``refs`` (system sn or deviceSn), the CSV and the batch tag, in the
    order given, each once. Raises NotFoundError naming every reference that does not resolve."""
    wanted = list(refs)
    if csv_path is not None:
        wanted.extend(read_refs_csv(csv_path))
    wanted = _unique(wanted)
    group_id = backend.get_group(group).group_id if group else None
    if not wanted and batch_tag is None:
        raise InvalidArgumentError(
            "no device given",
            hint="name devices (system sn or deviceSn), --csv FILE or --batch-tag",
        )
    found: dict[str, Device] = {}
    if wanted:
        if group_id is not None:
            for start in range(0, len(wanted), LOOKUP_SLICE):
                part = tuple(wanted[start : start + LOOKUP_SLICE])
                q = SearchQuery(group_id=group_id, device_sns=part)
                for dev in backend.iter_devices(q):
                    found.setdefault(dev.device_sn, dev)
        missing, ambiguous = [], []
        for ref in wanted:
            if ref in found:
                continue
            try:
                dev = _lookup(backend, ref, group_id)
            except InvalidArgumentError as err:
                if "several groups" not in err.message:
                    raise
                ambiguous.append(ref)
                continue
            if dev is None:
                missing.append(ref)
            else:
                found[ref] = dev
        if missing:
            raise not_found_error(missing, group)
        if ambiguous:
            raise InvalidArgumentError(
                f"deviceSn {names(ambiguous)} exists in several groups; nothing was changed",
                hint="pass --group, or use the system sn",
            )
    devices = [found[r] for r in wanted]
    if batch_tag is not None:
        q = SearchQuery(group_id=group_id, batch_tag=batch_tag)
        tagged = list(backend.iter_devices(q))
        if not tagged and not wanted:
            raise NotFoundError(
                f"no device with batch tag {batch_tag!r}" + (f" in group {group}" if group else ""),
                hint="list the batch with `enosprov devices list --batch-tag TAG`",
            )
        devices.extend(tagged)
    seen: set[str] = set()
    return [d for d in devices if not (d.sn in seen or seen.add(d.sn))]


def _lookup(backend, ref: str, group_id: str | None) -> Device | None:
    from .. import api

    try:
        dev = api.find_device(backend, ref, group_id)
    except NotFoundError:
        return None
    if group_id is not None and dev.group_id != group_id:
        return None
    return dev


def one_group(devices: Sequence[Device], what: str = "change") -> str:
    """The single registration group of ``devices``; a mixed call is refused as a whole."""
    by_group: dict[str, list[str]] = {}
    for d in devices:
        by_group.setdefault(d.group_id, []).append(d.device_sn)
    if len(by_group) != 1:
        shown = "; ".join(f"{g}: {names(sns, 3)}" for g, sns in by_group.items())
        raise InvalidArgumentError(
            f"the devices to {what} are in {len(by_group)} registration groups ({shown}); "
            "nothing was changed",
            hint=f"{what} the devices of one group at a time (--group G narrows a batch tag, a "
            "CSV or deviceSns to one group)",
        )
    return next(iter(by_group))
