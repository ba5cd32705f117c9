"""Device search on the local store: SearchQuery -> SQL, rows -> Device."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Iterator

from ..domain.errors import enos_error
from ..domain.models import BUILTIN_KEYS, SORTABLE_FIELDS, Device, DeviceStatus, Page, SearchQuery
from ..domain.rules import IDENTIFIER_RE
from .base import MAX_PAGE_SIZE
from .local_schema import DEVICE_COLUMNS

_SORT_COLUMNS = {
    "createTime": "create_time",
    "updateTime": "update_time",
    "sn": "sn",
    "deviceSn": "device_sn",
    "batchOrder": "batch_order",
}
assert set(_SORT_COLUMNS) == set(SORTABLE_FIELDS)


def to_device(row) -> Device:
    (
        sn,
        group_id,
        device_sn,
        product_key,
        region_id,
        org_id,
        batch_order,
        batch_tag,
        batch_tag_i18n,
        device_data,
        description,
        current_status,
        connected_time,
        allocated_time,
        finished_time,
        discarded_time,
        allocate_status,
        connect_status,
        reprovisioning,
        allocate_error_msg,
        device_key,
        device_secret,
        create_by,
        create_time,
        update_by,
        update_time,
        manufacturer_org_id,
        reprovision_time,
    ) = row
    tag = None
    if batch_tag is not None or batch_tag_i18n:
        tag = {
            "defaultValue": batch_tag or "",
            "i18nValue": json.loads(batch_tag_i18n) if batch_tag_i18n else {},
        }
    return Device(
        sn=sn,
        group_id=group_id,
        device_sn=device_sn,
        product_key=product_key,
        region_id=region_id,
        org_id=org_id,
        batch_order=batch_order,
        batch_tag=tag,
        device_data={"deviceSn": device_sn, **json.loads(device_data)},
        desc=description,
        status=DeviceStatus(
            current_status, connected_time, allocated_time, finished_time, discarded_time
        ),
        allocate_status=allocate_status,
        connect_status=connect_status,
        reprovisioning=bool(reprovisioning),
        allocate_error_msg=allocate_error_msg,
        device_key=device_key,
        device_secret=device_secret,
        create_by=create_by,
        create_time=create_time,
        update_by=update_by,
        update_time=update_time,
        manufacturer_org_id=manufacturer_org_id,
        reprovision_time=reprovision_time,
    )


def _in(column: str, values, where: list, params: list) -> None:
    where.append(f"{column} IN (SELECT value FROM json_each(?))")
    params.append(json.dumps(list(values)))


def build_where(q: SearchQuery) -> tuple[str, list]:
    where: list[str] = []
    params: list = []
    for column, value in (
        ("group_id", q.group_id),
        ("batch_tag", q.batch_tag),
        ("batch_order", q.batch_order),
        ("product_key", q.product_key),
        ("region_id", q.region_id),
        ("allocate_status", q.allocate_status),
        ("connect_status", q.connect_status),
        ("current_status", q.current_status),
    ):
        if value is not None:
            where.append(f"{column} = ?")
            params.append(value)
    if q.sns:
        _in("sn", q.sns, where, params)
    if q.device_sns:
        _in("device_sn", q.device_sns, where, params)
    if q.sn_like:
        where.append("sn LIKE ?")
        params.append(q.sn_like)
    if q.created_after is not None:
        where.append("create_time >= ?")
        params.append(q.created_after)
    if q.created_before is not None:
        where.append("create_time < ?")
        params.append(q.created_before)
    for key, value in q.device_data:
        if key == "deviceSn":
            where.append("device_sn = ?")
            params.append(value)
            continue
        if not (IDENTIFIER_RE.fullmatch(key) or key in BUILTIN_KEYS):
            raise enos_error(99400, f"Invalid Argument deviceData key {key!r}")
        # Compare as text so that ("max_capacity", "42") finds the Integer 42.
        where.append("CAST(json_extract(device_data, ?) AS TEXT) = ?")
        params.extend((f'$."{key}"', str(value)))
    return (" WHERE " + " AND ".join(where)) if where else "", params


def order_by(q: SearchQuery) -> str:
    parts = []
    for s in q.sorters:
        column = _SORT_COLUMNS.get(s.field)
        if column is None:
            raise enos_error(
                99400,
                f"Invalid Argument sorter field {s.field!r}",
                hint="sortable: " + ", ".join(SORTABLE_FIELDS),
            )
        order = (s.order or "ASC").upper()
        if order not in ("ASC", "DESC"):
            raise enos_error(99400, f"Invalid Argument sorter order {s.order!r}")
        parts.append(f"{column} {order}")
    parts.append(
        "rowid " + ("DESC" if q.sorters and q.sorters[0].order.upper() == "DESC" else "ASC")
    )
    return " ORDER BY " + ", ".join(parts)


def search(conn, q: SearchQuery) -> Page:
    if not 1 <= q.page_size <= MAX_PAGE_SIZE:
        raise enos_error(99400, f"Invalid Argument pageSize must be between 1 and {MAX_PAGE_SIZE}")
    if q.page_no < 1:
        raise enos_error(99400, "Invalid Argument pageNo must be >= 1")
    where, params = build_where(q)
    total = conn.execute(f"SELECT count(*) FROM devices{where}", params).fetchone()[0]
    rows = conn.execute(
        f"SELECT {DEVICE_COLUMNS} FROM devices{where}{order_by(q)} LIMIT ? OFFSET ?",
        (*params, q.page_size, (q.page_no - 1) * q.page_size),
    ).fetchall()
    return Page([to_device(r) for r in rows], q.page_no, q.page_size, total)


def iter_devices(rows: Callable[[str, list], Iterable[tuple]], q: SearchQuery) -> Iterator[Device]:
    """Every matching device, streamed by ``rows(sql, params)`` (no paging, constant memory)."""
    where, params = build_where(q)
    for row in rows(f"SELECT {DEVICE_COLUMNS} FROM devices{where}{order_by(q)}", params):
        yield to_device(row)


def device_pages(conn, q: SearchQuery, size: int) -> Iterator[list[Device]]:
    """Every matching device in insertion order, ``size`` at a time, each page read whole
    (keyset on rowid): no cursor stays open between pages, so the caller may write to the
    store meanwhile (an open SQLite read would keep its snapshot and never get the write
    lock)."""
    where, params = build_where(q)
    where = (where + " AND" if where else " WHERE") + " rowid > ?"
    last = -1
    while True:
        rows = conn.execute(
            f"SELECT rowid, {DEVICE_COLUMNS} FROM devices{where} ORDER BY rowid LIMIT ?",
            (*params, last, size),
        ).fetchall()
        if not rows:
            return
        last = rows[-1][0]
        yield [to_device(r[1:]) for r in rows]
