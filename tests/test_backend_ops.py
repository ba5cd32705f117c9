"""Every backend operation's documented success and error cases, on a real SQLite store on disk.

Operation tests use the ``backend`` fixture (parametrised over backends) so they also run against
the EnOS API backend once it exists; ``store`` is used only for local-only things (the store file,
the replacements table, several OS processes on one file). Error codes follow the EnOS DPS docs
(shared/reference/enos-dps.md §2.1-2.4).
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest
from conftest import METERS, ROOT, file_mode, make_group

from enosprov.domain import signing
from enosprov.domain.models import NewDevice, SearchQuery, Sorter
from enosprov.errors import (
    AuthError,
    ConflictError,
    EnosprovError,
    InvalidArgumentError,
    NotAllocatedError,
    NotFoundError,
    RefusedError,
)

DATA = {"max_capacity": 40, "phase": "single"}  # the required master data of METERS
DEVICE_KEY_RE = re.compile(r"[A-Za-z0-9._-]{4,64}")

PVS_DEVICE_KEYS = {
    # enos-dps.md §2.2, plus deviceSn and deviceKey (enosprov additions)
    "sn",
    "groupId",
    "regionId",
    "orgId",
    "productKey",
    "batchOrder",
    "batchTag",
    "deviceData",
    "desc",
    "status",
    "reprovisioning",
    "allocateErrorMsg",
    "createBy",
    "createTime",
    "updateBy",
    "updateTime",
    "manufacturerOrgId",
    "connectStatus",
    "allocateStatus",
    "deviceSn",
    "deviceKey",
}
STATUS_KEYS = {"currentStatus", "connectedTime", "allocatedTime", "finishedTime", "discardedTime"}


# -- helpers ------------------------------------------------------------------------------------


def now_ms() -> int:
    return int(time.time() * 1000)


def expect(exc_type: type[EnosprovError], enos_code: int):
    """pytest.raises that also checks the EnOS error code."""

    class _Ctx:
        def __enter__(self):
            self._cm = pytest.raises(exc_type)
            self.info = self._cm.__enter__()
            return self.info

        def __exit__(self, *exc):
            handled = self._cm.__exit__(*exc)
            if handled:
                assert self.info.value.enos_code == enos_code, (
                    f"enos_code {self.info.value.enos_code} != {enos_code}: {self.info.value}"
                )
            return handled

    return _Ctx()


def new_device(backend, group_id: str, device_sn: str, **kw) -> str:
    """Create one device with a deviceSn (and the required master data unless given)."""
    data = dict(kw.pop("device_data", DATA))
    data["deviceSn"] = device_sn
    (sn,) = backend.create(group_id, device_data=data, **kw)
    return sn


def all_devices(backend, **filters) -> list:
    return list(backend.iter_devices(SearchQuery(**filters)))


def snapshot(backend, sns) -> dict:
    """Everything observable about these devices (with secrets), to prove nothing changed."""
    return {sn: backend.get(sn).to_dict(include_secret=True) for sn in sns}


# Bootstrap Device requires deviceName and timezone besides the identity and the signature.
NAME_AND_TZ = {"device_name": {"defaultValue": "Meter"}, "timezone": "+08:00"}


def bootstrap(backend, group, device_sn: str, *, secret: str | None = None, ts=None, **kw):
    ts = now_ms() if ts is None else ts
    sign = signing.sign(group.sign_scheme, device_sn, ts, secret or group.group_secret)
    return backend.bootstrap(
        group_id=group.group_id,
        device_sn=device_sn,
        timestamp=ts,
        sign=sign,
        **{**NAME_AND_TZ, **kw},
    )


def conn_info(backend, group, sn: str, *, secret: str | None = None, ts=None, **kw):
    ts = now_ms() if ts is None else ts
    sign = signing.sign(group.sign_scheme, sn, ts, secret or group.group_secret)
    return backend.get_connection_info(sn=sn, timestamp=ts, sign=sign, **kw)


def triple(info) -> tuple[str, str, str]:
    return info.product_key, info.device_key, info.device_secret


# -- groups (read side) -------------------------------------------------------------------------


def test_get_group_by_id_and_name_and_list(backend, group):
    assert backend.get_group("meters-eu").group_id == "meters-eu"
    assert backend.get_group("Meters EU").group_id == "meters-eu"
    got = backend.get_group("meters-eu")
    assert got.group_secret == group.group_secret
    assert (got.region_id, got.org_id, got.product_key) == ("eu2", "o1", "pk1")
    assert [g.group_id for g in backend.list_groups()] == ["meters-eu"]
    with expect(NotFoundError, 35404):
        backend.get_group("nope")


def test_get_masterdata_group(backend, group):
    mdg = backend.get_masterdata_group("meters")
    assert mdg.attributes == METERS.attributes
    with expect(NotFoundError, 35404):
        backend.get_masterdata_group("nope")


# -- create -------------------------------------------------------------------------------------


@pytest.mark.parametrize("count", [0, -1, 1_000_001])
def test_create_count_out_of_bounds(backend, group, count):
    with expect(InvalidArgumentError, 99400):
        backend.create(group.group_id, count=count, device_data=DATA)
    assert all_devices(backend) == []


@pytest.mark.parametrize("group_id", ["", None])
def test_create_without_group_id(backend, group, group_id):
    with expect(InvalidArgumentError, 99400):
        backend.create(group_id, device_data=DATA)


def test_create_unknown_group(backend, group):
    with expect(NotFoundError, 35404):
        backend.create("no-such-group", device_data=DATA)
    assert all_devices(backend) == []


def test_create_with_device_sn(backend, group):
    t0 = now_ms()
    sns = backend.create(
        group.group_id,
        desc="first",
        batch_tag={"defaultValue": "B-1", "i18nValue": {"zh_CN": "批次1"}},
        device_data={"deviceSn": "SN-0001", **DATA, "site": "Hall 1"},
    )
    t1 = now_ms()
    assert len(sns) == 1
    dev = backend.get(sns[0])
    assert dev.sn == sns[0]
    assert dev.group_id == group.group_id
    assert dev.device_sn == "SN-0001"
    assert dev.device_data == {"deviceSn": "SN-0001", **DATA, "site": "Hall 1"}
    assert dev.desc == "first"
    assert dev.batch_tag == {"defaultValue": "B-1", "i18nValue": {"zh_CN": "批次1"}}
    assert dev.product_key == "pk1"
    assert t0 <= dev.create_time <= t1
    assert isinstance(dev.batch_order, int)


def test_create_duplicate_device_sn_conflicts(backend, group):
    first = new_device(backend, group.group_id, "SN-0001")
    with expect(ConflictError, 35601):
        new_device(backend, group.group_id, "SN-0001", device_data={**DATA, "max_capacity": 7})
    devices = all_devices(backend)
    assert [d.sn for d in devices] == [first]
    assert devices[0].device_data["max_capacity"] == 40


def test_create_same_device_sn_in_another_group_is_allowed(backend, group):
    other = make_group(backend, group_id="meters-cn", name="Meters CN")
    a = new_device(backend, group.group_id, "SN-0001")
    b = new_device(backend, other.group_id, "SN-0001")
    assert a != b
    assert backend.get(b).group_id == "meters-cn"


def test_create_device_sn_with_count_above_one_is_refused(backend, group):
    with expect(ConflictError, 35601):
        backend.create(group.group_id, count=2, device_data={"deviceSn": "SN-0001", **DATA})
    assert all_devices(backend) == []


def test_create_blank_devices(backend, group):
    sns = backend.create(group.group_id, count=5, device_data=DATA, batch_tag={"defaultValue": "X"})
    assert len(sns) == 5 and len(set(sns)) == 5
    devices = [backend.get(sn) for sn in sns]
    device_sns = [d.device_sn for d in devices]
    assert all(device_sns) and len(set(device_sns)) == 5
    assert {d.batch_order for d in devices} == {devices[0].batch_order}
    assert all(d.batch_tag_text == "X" for d in devices)
    assert all({k: v for k, v in d.device_data.items() if k != "deviceSn"} == DATA for d in devices)
    later = backend.create(group.group_id, device_data=DATA)
    assert backend.get(later[0]).batch_order != devices[0].batch_order


@pytest.mark.parametrize(
    "bad",
    [
        {"max_capacity": "abc"},
        {"max_capacity": 1.5},
        {"max_capacity": True},
        {"max_capacity": 2**63},
        {"phase": "two"},
        {"phase": 3},
        {"install_date": "2026-13-01"},
        {"install_date": "01/11/2026"},
        {"site": "x" * 65},
        {"timezone": "Mars/Olympus"},
        {"no_such_key": "1"},
    ],
    ids=lambda d: next(iter(d)) + "=" + repr(next(iter(d.values())))[:20],
)
def test_create_master_data_errors(backend, group, bad):
    with expect(InvalidArgumentError, 99400):
        backend.create(group.group_id, device_data={"deviceSn": "SN-0001", **DATA, **bad})
    assert all_devices(backend) == []


@pytest.mark.parametrize("missing", ["max_capacity", "phase"])
def test_create_required_master_data_missing(backend, group, missing):
    data = {k: v for k, v in DATA.items() if k != missing}
    with expect(InvalidArgumentError, 99400):
        backend.create(group.group_id, device_data={"deviceSn": "SN-0001", **data})
    with expect(InvalidArgumentError, 99400):
        backend.create(group.group_id, count=3, device_data=data)
    assert all_devices(backend) == []


@pytest.mark.parametrize("bad_sn", ["abc", "has space", "x" * 65, "bad/char"])
def test_create_invalid_device_sn(backend, group, bad_sn):
    with expect(InvalidArgumentError, 99400):
        new_device(backend, group.group_id, bad_sn)
    assert all_devices(backend) == []


def test_create_accepts_builtin_keys_and_valid_types(backend, group):
    sn = new_device(
        backend,
        group.group_id,
        "AA:BB:CC:DD:EE:01",
        device_data={
            **DATA,
            "deviceName": {"defaultValue": "Meter 1", "i18nValue": {}},
            "timezone": "Asia/Shanghai",
            "install_date": "2026-11-01",
            "phase": "three",
        },
    )
    data = backend.get(sn).device_data
    assert data["timezone"] == "Asia/Shanghai"
    assert data["phase"] == "three"
    assert data["deviceName"]["defaultValue"] == "Meter 1"


def test_create_integer_given_as_string_is_stored_as_integer(backend, group):
    try:
        sn = new_device(
            backend, group.group_id, "SN-0001", device_data={**DATA, "max_capacity": "42"}
        )
    except InvalidArgumentError as exc:  # rejecting it would be fine too
        assert exc.enos_code == 99400
        return
    value = backend.get(sn).device_data["max_capacity"]
    assert value == 42 and isinstance(value, int), repr(value)


# -- get ----------------------------------------------------------------------------------------


def test_get_empty_sn(backend, group):
    with expect(InvalidArgumentError, 35400):
        backend.get("")


def test_get_unknown_sn(backend, group):
    new_device(backend, group.group_id, "SN-0001")
    with expect(EnosprovError, 35601):
        backend.get("0000000000000000")


def test_get_pvs_device_shape(backend, group):
    t0 = now_ms()
    sn = new_device(backend, group.group_id, "SN-0001")
    t1 = now_ms()
    d = backend.get(sn).to_dict()
    assert set(d) == PVS_DEVICE_KEYS
    assert set(d["status"]) == STATUS_KEYS
    assert d["sn"] == sn and d["deviceSn"] == "SN-0001" and d["groupId"] == "meters-eu"
    assert d["deviceData"]["deviceSn"] == "SN-0001"
    # times are epoch milliseconds
    assert t0 <= d["createTime"] <= t1
    assert t0 <= d["updateTime"] <= t1
    # before allocation
    assert d["regionId"] is None and d["orgId"] is None
    assert d["deviceKey"] is None
    assert d["allocateStatus"] == "init"
    assert d["connectStatus"] == "init"
    assert d["status"]["currentStatus"] == "init"
    assert d["status"]["allocatedTime"] is None and d["status"]["connectedTime"] is None
    assert d["reprovisioning"] is False
    assert d["allocateErrorMsg"] == ""
    assert isinstance(d["createBy"], str) and d["createBy"]
    json.dumps(d)  # JSON-serialisable as-is


# -- search -------------------------------------------------------------------------------------


@pytest.fixture
def fleet(backend, group) -> dict:
    """Four devices in two groups, created one after the other (distinct create times).

    a1: EU-0001, B-1, site Hall A, registered
    a2: EU-0002, B-1, site Hall B, allocated to cn5/o9 (explicit target)
    a3: EU-0003, B-2, site Hall B, bootstrapped (allocated to eu2/o1, connected)
    b1: CN-0001 in meters-cn (product pk2), B-1, phase three, registered
    """
    other = make_group(backend, group_id="meters-cn", name="Meters CN", product_key="pk2")
    specs = [
        ("a1", group.group_id, "EU-0001", "B-1", {**DATA, "site": "Hall A"}),
        ("a2", group.group_id, "EU-0002", "B-1", {**DATA, "site": "Hall B"}),
        ("a3", group.group_id, "EU-0003", "B-2", {**DATA, "site": "Hall B"}),
        ("b1", other.group_id, "CN-0001", "B-1", {**DATA, "phase": "three"}),
    ]
    sns = {}
    for name, gid, dsn, tag, data in specs:
        sns[name] = new_device(backend, gid, dsn, device_data=data, batch_tag={"defaultValue": tag})
        time.sleep(0.003)  # distinct createTime (ms) for each device
    backend.allocate(sns["a2"], device_data={"regionId": "cn5", "orgId": "o9"})
    bootstrap(backend, group, "EU-0003")
    return {name: backend.get(sn) for name, sn in sns.items()}


def _names(fleet, devices) -> set[str]:
    by_sn = {d.sn: n for n, d in fleet.items()}
    return {by_sn[d.sn] for d in devices}


SEARCH_CASES = [
    ("no filter", lambda f: {}, {"a1", "a2", "a3", "b1"}),
    ("group_id", lambda f: {"group_id": "meters-eu"}, {"a1", "a2", "a3"}),
    ("group_id other", lambda f: {"group_id": "meters-cn"}, {"b1"}),
    ("sns", lambda f: {"sns": (f["a1"].sn, f["b1"].sn)}, {"a1", "b1"}),
    ("sns unknown", lambda f: {"sns": ("0000000000000000",)}, set()),
    ("device_sns", lambda f: {"device_sns": ("EU-0001", "CN-0001")}, {"a1", "b1"}),
    ("batch_tag", lambda f: {"batch_tag": "B-1"}, {"a1", "a2", "b1"}),
    ("batch_tag+group", lambda f: {"batch_tag": "B-1", "group_id": "meters-eu"}, {"a1", "a2"}),
    ("batch_order", lambda f: {"batch_order": f["a3"].batch_order}, {"a3"}),
    ("product_key", lambda f: {"product_key": "pk2"}, {"b1"}),
    ("region_id cn5", lambda f: {"region_id": "cn5"}, {"a2"}),
    ("region_id eu2", lambda f: {"region_id": "eu2"}, {"a3"}),
    ("allocate allocated", lambda f: {"allocate_status": "allocated"}, {"a2", "a3"}),
    ("allocate init", lambda f: {"allocate_status": "init"}, {"a1", "b1"}),
    ("connect connected", lambda f: {"connect_status": "connected"}, {"a3"}),
    ("connect init", lambda f: {"connect_status": "init"}, {"a1", "a2", "b1"}),
    ("current init", lambda f: {"current_status": "init"}, {"a1", "b1"}),
    ("current allocated", lambda f: {"current_status": "allocated"}, {"a2"}),
    ("current connected", lambda f: {"current_status": "connected"}, {"a3"}),
    ("created_after", lambda f: {"created_after": f["a2"].create_time}, {"a2", "a3", "b1"}),
    ("created_before", lambda f: {"created_before": f["a2"].create_time}, {"a1"}),
    (
        "created window",
        lambda f: {"created_after": f["a2"].create_time, "created_before": f["b1"].create_time},
        {"a2", "a3"},
    ),
    ("data string", lambda f: {"device_data": (("site", "Hall A"),)}, {"a1"}),
    ("data string 2", lambda f: {"device_data": (("site", "Hall B"),)}, {"a2", "a3"}),
    ("data enum", lambda f: {"device_data": (("phase", "three"),)}, {"b1"}),
    ("data deviceSn", lambda f: {"device_data": (("deviceSn", "EU-0002"),)}, {"a2"}),
    (
        "data two keys",
        lambda f: {"device_data": (("site", "Hall B"), ("phase", "single"))},
        {"a2", "a3"},
    ),
    ("data no match", lambda f: {"device_data": (("site", "Hall Z"),)}, set()),
    (
        "combined",
        lambda f: {"group_id": "meters-eu", "batch_tag": "B-1", "allocate_status": "init"},
        {"a1"},
    ),
]


@pytest.mark.parametrize(
    "kwargs, expected", [c[1:] for c in SEARCH_CASES], ids=[c[0] for c in SEARCH_CASES]
)
def test_search_filters(backend, fleet, kwargs, expected):
    page = backend.search(SearchQuery(**kwargs(fleet), page_size=100))
    assert _names(fleet, page.items) == expected
    assert page.total == len(expected)
    assert _names(fleet, backend.iter_devices(SearchQuery(**kwargs(fleet)))) == expected


def test_search_sn_like(backend, fleet):
    target = fleet["a1"].sn
    pattern = target[:10] + "%"
    expected = {n for n, d in fleet.items() if d.sn.startswith(target[:10])}
    assert "a1" in expected and len(expected) < len(fleet)
    page = backend.search(SearchQuery(sn_like=pattern, page_size=100))
    assert _names(fleet, page.items) == expected
    exact = backend.search(SearchQuery(sn_like=target))
    assert [d.sn for d in exact.items] == [target]


def test_search_device_data_integer_value(backend, group):
    sn = new_device(backend, group.group_id, "SN-0001", device_data={**DATA, "max_capacity": 42})
    new_device(backend, group.group_id, "SN-0002", device_data={**DATA, "max_capacity": 43})
    page = backend.search(SearchQuery(device_data=(("max_capacity", "42"),)))
    assert [d.sn for d in page.items] == [sn]


def test_search_default_sort_is_create_time_desc(backend, fleet):
    page = backend.search(SearchQuery())
    assert [d.sn for d in page.items] == [fleet[n].sn for n in ("b1", "a3", "a2", "a1")]
    times = [d.create_time for d in page.items]
    assert times == sorted(times, reverse=True)


@pytest.mark.parametrize(
    "sorter, expected",
    [
        (Sorter("deviceSn", "ASC"), ["b1", "a1", "a2", "a3"]),
        (Sorter("deviceSn", "DESC"), ["a3", "a2", "a1", "b1"]),
        (Sorter("createTime", "ASC"), ["a1", "a2", "a3", "b1"]),
        (Sorter("createTime", "DESC"), ["b1", "a3", "a2", "a1"]),
    ],
    ids=lambda v: f"{v.field}-{v.order}" if isinstance(v, Sorter) else None,
)
def test_search_sorters(backend, fleet, sorter, expected):
    page = backend.search(SearchQuery(sorters=(sorter,)))
    assert [d.sn for d in page.items] == [fleet[n].sn for n in expected]


def test_search_sorter_by_sn(backend, fleet):
    page = backend.search(SearchQuery(sorters=(Sorter("sn", "ASC"),)))
    assert [d.sn for d in page.items] == sorted(d.sn for d in fleet.values())


def test_search_pagination(backend, group):
    sns = backend.create(group.group_id, count=25, device_data=DATA)
    seen = []
    for page_no, size in ((1, 10), (2, 10), (3, 5)):
        page = backend.search(SearchQuery(group_id=group.group_id, page_no=page_no, page_size=10))
        assert (page.page_no, page.page_size, page.total) == (page_no, 10, 25)
        assert len(page.items) == size
        seen += [d.sn for d in page.items]
    assert sorted(seen) == sorted(sns)  # pages are disjoint and cover everything
    beyond = backend.search(SearchQuery(group_id=group.group_id, page_no=4, page_size=10))
    assert beyond.items == [] and beyond.total == 25
    d = backend.search(SearchQuery(page_size=3)).to_dict()
    assert d["pagination"] == {"pageNo": 1, "pageSize": 3, "total": 25}
    assert len(d["items"]) == 3


@pytest.mark.parametrize(
    "kwargs",
    [
        {"page_size": 0},
        {"page_size": 1001},
        {"page_no": 0},
        {"sorters": (Sorter("color", "ASC"),)},
        {"sorters": (Sorter("createTime", "UP"),)},
        {"device_data": (("bad'key", "x"),)},
    ],
    ids=["page_size 0", "page_size 1001", "page_no 0", "unknown sorter", "bad order", "bad key"],
)
def test_search_invalid_arguments(backend, group, kwargs):
    new_device(backend, group.group_id, "SN-0001")
    with expect(InvalidArgumentError, 99400):
        backend.search(SearchQuery(**kwargs))


def test_search_page_size_bounds_accepted(backend, group):
    backend.create(group.group_id, count=3, device_data=DATA)
    assert len(backend.search(SearchQuery(page_size=1)).items) == 1
    assert len(backend.search(SearchQuery(page_size=1000)).items) == 3


def test_iter_devices_yields_every_match_beyond_one_page(backend, group):
    other = make_group(backend, group_id="meters-cn", name="Meters CN")
    sns = backend.create(group.group_id, count=1005, device_data=DATA)
    backend.create(other.group_id, count=3, device_data=DATA)
    got = [d.sn for d in backend.iter_devices(SearchQuery(group_id=group.group_id))]
    assert len(got) == 1005
    assert set(got) == set(sns)
    assert len(list(backend.iter_devices(SearchQuery()))) == 1008


# -- update -------------------------------------------------------------------------------------


def test_update_replaces_device_data(backend, group):
    """[ENOSPROV] deviceData given to update is the device's whole master data afterwards (EnOS
    does not say whether it merges or replaces; enosprov always sends the full map)."""
    sn = new_device(backend, group.group_id, "SN-0001", device_data={**DATA, "site": "Hall 1"})
    before = backend.get(sn)
    time.sleep(0.002)
    full = {
        "deviceSn": "SN-0001",
        "max_capacity": 99,
        "phase": "single",
        "install_date": "2026-01-31",
    }
    assert backend.update(sn, device_data=full) == sn
    after = backend.get(sn)
    assert after.device_data == full  # "site" was not in the map: it is gone
    assert after.desc == before.desc and after.batch_tag == before.batch_tag
    assert after.update_time > before.update_time
    assert after.create_time == before.create_time


@pytest.mark.parametrize(
    "data",
    [{"site": None}, {"deviceName": "plain text"}, {"privateModel": "yes"}, {"assetId": "a1"}],
    ids=["null", "deviceName not StringI18n", "privateModel not Boolean", "assetId"],
)
def test_update_refuses_values_outside_the_contract(backend, group, data):
    sn = new_device(backend, group.group_id, "SN-0001", device_data={**DATA, "site": "Hall 1"})
    with expect(InvalidArgumentError, 99400):
        backend.update(sn, device_data={"deviceSn": "SN-0001", **DATA, **data})
    assert backend.get(sn).device_data == {"deviceSn": "SN-0001", **DATA, "site": "Hall 1"}


def test_update_cannot_remove_required_key(backend, group):
    sn = new_device(backend, group.group_id, "SN-0001")
    with expect(InvalidArgumentError, 99400):
        backend.update(sn, device_data={"max_capacity": 10})  # phase (required) left out
    assert backend.get(sn).device_data["phase"] == "single"


def test_update_desc_and_batch_tag(backend, group):
    sn = new_device(
        backend, group.group_id, "SN-0001", desc="old", batch_tag={"defaultValue": "B-1"}
    )
    backend.update(
        sn, desc="new desc", batch_tag={"defaultValue": "B-2", "i18nValue": {"en_US": "b2"}}
    )
    dev = backend.get(sn)
    assert dev.desc == "new desc"
    assert dev.batch_tag == {"defaultValue": "B-2", "i18nValue": {"en_US": "b2"}}
    assert dev.device_data == {"deviceSn": "SN-0001", **DATA}
    assert backend.search(SearchQuery(batch_tag="B-2")).total == 1
    assert backend.search(SearchQuery(batch_tag="B-1")).total == 0


def test_update_same_device_sn_is_allowed(backend, group):
    sn = new_device(backend, group.group_id, "SN-0001")
    backend.update(sn, device_data={"deviceSn": "SN-0001", **DATA, "site": "x"})
    assert backend.get(sn).device_data["site"] == "x"


@pytest.mark.parametrize("new_sn", ["SN-0002", "SN-0009"])
def test_update_changing_device_sn_is_refused(backend, group, new_sn):
    sn = new_device(backend, group.group_id, "SN-0001")
    new_device(backend, group.group_id, "SN-0002")
    before = snapshot(backend, [sn])
    with expect(ConflictError, 35601):
        backend.update(sn, desc="changed", device_data={"deviceSn": new_sn})
    assert snapshot(backend, [sn]) == before


@pytest.mark.parametrize(
    "bad",
    [{"max_capacity": "lots"}, {"phase": "two"}, {"install_date": "2026-02-30"}, {"unknown": 1}],
    ids=["integer", "enum", "date", "unknown key"],
)
def test_update_bad_master_data(backend, group, bad):
    sn = new_device(backend, group.group_id, "SN-0001")
    before = snapshot(backend, [sn])
    with expect(InvalidArgumentError, 99400):
        backend.update(sn, desc="changed", device_data=bad)
    assert snapshot(backend, [sn]) == before


def test_update_unknown_sn(backend, group):
    with expect(EnosprovError, 35601):
        backend.update("0000000000000000", desc="x")


# -- delete -------------------------------------------------------------------------------------


def test_delete_is_idempotent_and_returns_every_sn(backend, group):
    keep = new_device(backend, group.group_id, "SN-0001")
    a = new_device(backend, group.group_id, "SN-0002")
    b = new_device(backend, group.group_id, "SN-0003")
    asked = [a, "0000000000000000", b]
    assert backend.delete(group.group_id, asked) == asked
    for sn in (a, b):
        with expect(EnosprovError, 35601):
            backend.get(sn)
    assert [d.sn for d in all_devices(backend)] == [keep]
    assert backend.delete(group.group_id, asked) == asked  # again: same answer
    assert [d.sn for d in all_devices(backend)] == [keep]
    # the deviceSn is free again
    new_device(backend, group.group_id, "SN-0002")


def test_delete_sn_of_another_group(backend, group):
    other = make_group(backend, group_id="meters-cn", name="Meters CN")
    mine = new_device(backend, group.group_id, "SN-0001")
    theirs = new_device(backend, other.group_id, "SN-0002")
    with expect(NotFoundError, 35404):
        backend.delete(group.group_id, [mine, theirs])
    assert {d.sn for d in all_devices(backend)} == {mine, theirs}  # nothing deleted


def test_delete_unknown_group(backend, group):
    sn = new_device(backend, group.group_id, "SN-0001")
    with expect(NotFoundError, 35404):
        backend.delete("no-such-group", [sn])
    with expect(InvalidArgumentError, 99400):
        backend.delete("", [sn])
    assert backend.get(sn).sn == sn


# -- allocate -----------------------------------------------------------------------------------


def test_allocate(backend, group):
    sn = new_device(backend, group.group_id, "SN-0001")
    t0 = now_ms()
    dev = backend.allocate(sn)
    t1 = now_ms()
    assert (dev.region_id, dev.org_id) == ("eu2", "o1")
    assert dev.allocate_status == "allocated" and dev.allocated
    assert dev.status.current_status == "allocated"
    assert t0 <= dev.status.allocated_time <= t1
    assert dev.connect_status == "init"
    assert dev.product_key == "pk1"
    assert DEVICE_KEY_RE.fullmatch(dev.device_key)
    assert isinstance(dev.device_secret, str) and len(dev.device_secret) >= 8
    assert backend.get(sn).to_dict(include_secret=True) == dev.to_dict(include_secret=True)


def test_allocate_is_idempotent(backend, group):
    sn = new_device(backend, group.group_id, "SN-0001")
    first = backend.allocate(sn)
    second = backend.allocate(sn)
    assert (second.device_key, second.device_secret) == (first.device_key, first.device_secret)
    assert second.status.allocated_time == first.status.allocated_time


def test_allocate_merges_device_data(backend, group):
    sn = new_device(backend, group.group_id, "SN-0001", device_data={**DATA, "site": "Hall 1"})
    dev = backend.allocate(sn, device_data={"max_capacity": 77, "install_date": "2026-11-01"})
    expected = {
        "deviceSn": "SN-0001",
        "max_capacity": 77,
        "phase": "single",
        "site": "Hall 1",
        "install_date": "2026-11-01",
    }
    assert dev.device_data == expected
    assert backend.get(sn).device_data == expected
    # on an allocated device, data still merges and the key stays
    again = backend.allocate(sn, device_data={"site": "Hall 2"})
    assert again.device_data["site"] == "Hall 2"
    assert again.device_key == dev.device_key


def test_allocate_bad_device_data_changes_nothing(backend, group):
    sn = new_device(backend, group.group_id, "SN-0001")
    before = snapshot(backend, [sn])
    with expect(InvalidArgumentError, 99400):
        backend.allocate(sn, device_data={"phase": "two"})
    assert snapshot(backend, [sn]) == before


def test_allocate_group_without_target(backend, group):
    bare = make_group(backend, group_id="no-target", name="No target", region_id=None, org_id=None)
    sn = new_device(backend, bare.group_id, "SN-0001")
    before = snapshot(backend, [sn])
    with expect(InvalidArgumentError, 99400):
        backend.allocate(sn, device_data={"site": "Hall 9"})
    assert snapshot(backend, [sn]) == before  # not even the data merge was kept
    dev = backend.allocate(sn, device_data={"regionId": "us2", "orgId": "o7"})
    assert (dev.region_id, dev.org_id, dev.allocate_status) == ("us2", "o7", "allocated")


def test_allocate_explicit_target_overrides_group(backend, group):
    sn = new_device(backend, group.group_id, "SN-0001")
    dev = backend.allocate(sn, device_data={"regionId": "cn5", "orgId": "o9"})
    assert (dev.region_id, dev.org_id) == ("cn5", "o9")
    assert backend.get(sn).region_id == "cn5"


def test_allocate_unknown_or_empty_sn(backend, group):
    with expect(EnosprovError, 35601):
        backend.allocate("0000000000000000")
    with expect(InvalidArgumentError, 35400):
        backend.allocate("")


# -- reset allocation (reprovisioning) ----------------------------------------------------------


@pytest.mark.parametrize("method", ["migrate", "initialize"])
def test_reset_allocation(backend, group, method):
    grp = make_group(backend, group_id=f"g-{method}", name=f"G {method}", reprovision_method=method)
    a = new_device(backend, grp.group_id, "SN-0001", device_data={**DATA, "site": "Hall 1"})
    b = new_device(backend, grp.group_id, "SN-0002")
    old_a = backend.allocate(a)
    bootstrap(backend, grp, "SN-0002")
    assert backend.reset_allocation(grp.group_id, [a, b]) == [a, b]
    for sn, dsn in ((a, "SN-0001"), (b, "SN-0002")):
        dev = backend.get(sn)
        assert dev.reprovisioning is True
        assert dev.allocate_status == "init" and not dev.allocated
        assert dev.status.current_status == "init"
        assert dev.connect_status == "init"
        assert dev.region_id is None and dev.org_id is None
        assert dev.device_key is None and dev.device_secret is None
        assert dev.status.allocated_time is None
        assert dev.device_sn == dsn
    data_a = backend.get(a).device_data
    if method == "migrate":
        assert data_a == {"deviceSn": "SN-0001", **DATA, "site": "Hall 1"}
    else:
        assert data_a == {"deviceSn": "SN-0001"}
    # it can be allocated again, and gets a new triple
    again = backend.allocate(a, device_data={"regionId": "cn5", "orgId": "o9"})
    assert again.allocated and again.region_id == "cn5"
    assert again.device_key != old_a.device_key
    assert again.device_secret != old_a.device_secret


@pytest.mark.parametrize(
    "overrides",
    [{"reprovision_method": "never"}, {"model_type": "private"}],
    ids=["never", "private model"],
)
def test_reset_allocation_refused(backend, group, overrides):
    grp = make_group(backend, group_id="refusing", name="Refusing", **overrides)
    a = new_device(backend, grp.group_id, "SN-0001")
    b = new_device(backend, grp.group_id, "SN-0002")
    backend.allocate(a)
    before = snapshot(backend, [a, b])
    with expect(RefusedError, 35603):
        backend.reset_allocation(grp.group_id, [a, b])
    assert snapshot(backend, [a, b]) == before


def test_reset_allocation_is_all_or_nothing(backend, group):
    other = make_group(backend, group_id="meters-cn", name="Meters CN")
    a = new_device(backend, group.group_id, "SN-0001")
    b = new_device(backend, group.group_id, "SN-0002")
    theirs = new_device(backend, other.group_id, "SN-0003")
    for sn in (a, b, theirs):
        backend.allocate(sn)
    before = snapshot(backend, [a, b, theirs])
    with expect(NotFoundError, 35404):
        backend.reset_allocation(group.group_id, [a, "0000000000000000", b])
    assert snapshot(backend, [a, b, theirs]) == before
    with expect(NotFoundError, 35404):
        backend.reset_allocation(group.group_id, [a, b, theirs])
    assert snapshot(backend, [a, b, theirs]) == before


def test_reset_allocation_group_errors(backend, group):
    sn = new_device(backend, group.group_id, "SN-0001")
    with expect(NotFoundError, 35404):
        backend.reset_allocation("no-such-group", [sn])
    with expect(InvalidArgumentError, 99400):
        backend.reset_allocation("", [sn])


# -- replace ------------------------------------------------------------------------------------


def _replace_pair(backend, group):
    old = new_device(
        backend,
        group.group_id,
        "OLD-0001",
        device_data={**DATA, "max_capacity": 55, "site": "Hall 1", "timezone": "+08:00"},
        desc="faulty meter",
        batch_tag={"defaultValue": "B-7", "i18nValue": {"zh_CN": "批次7"}},
    )
    new = new_device(
        backend,
        group.group_id,
        "NEW-0001",
        device_data={**DATA, "phase": "three", "install_date": "2027-01-01"},
        desc="spare",
        batch_tag={"defaultValue": "SPARES"},
    )
    return old, new


def test_replace_unallocated(backend, group, store):
    old, new = _replace_pair(backend, group)
    old_dev = backend.get(old)
    dev = backend.replace(old, new)
    assert dev.sn == new and dev.device_sn == "NEW-0001"
    assert dev.device_data == {
        "deviceSn": "NEW-0001",
        **DATA,
        "max_capacity": 55,
        "site": "Hall 1",
        "timezone": "+08:00",
    }
    assert dev.desc == "faulty meter"
    assert dev.batch_tag == {"defaultValue": "B-7", "i18nValue": {"zh_CN": "批次7"}}
    assert not dev.allocated and dev.device_key is None
    assert backend.get(new).to_dict(include_secret=True) == dev.to_dict(include_secret=True)
    with expect(EnosprovError, 35601):
        backend.get(old)
    # lineage (local store only)
    rows = store.replacements(new)
    assert len(rows) == 1
    row = rows[0]
    assert {k: row[k] for k in ("oldSn", "oldDeviceSn", "newSn", "newDeviceSn", "groupId")} == {
        "oldSn": old,
        "oldDeviceSn": old_dev.device_sn,
        "newSn": new,
        "newDeviceSn": "NEW-0001",
        "groupId": group.group_id,
    }
    assert row["time"] >= old_dev.create_time
    assert store.replacements(old) == rows


def test_replace_allocated_gives_new_triple_at_old_target(backend, group):
    old, new = _replace_pair(backend, group)
    old_dev = backend.allocate(
        old, device_data={"regionId": "cn5", "orgId": "o9"}
    )  # not the group's target
    dev = backend.replace(old, new)
    assert dev.allocated and dev.allocate_status == "allocated"
    assert (dev.region_id, dev.org_id) == ("cn5", "o9")
    assert DEVICE_KEY_RE.fullmatch(dev.device_key)
    assert dev.device_key != old_dev.device_key
    assert dev.device_secret and dev.device_secret != old_dev.device_secret
    # the device can fetch that triple
    info = conn_info(backend, group, new)
    assert triple(info) == ("pk1", dev.device_key, dev.device_secret)


def test_replace_across_groups(backend, group):
    other = make_group(backend, group_id="meters-cn", name="Meters CN")
    old = new_device(backend, group.group_id, "SN-0001")
    new = new_device(backend, other.group_id, "SN-0002")
    before = snapshot(backend, [old, new])
    with expect(InvalidArgumentError, 35400):
        backend.replace(old, new)
    assert snapshot(backend, [old, new]) == before


def test_replace_onto_allocated_device(backend, group, store):
    old, new = _replace_pair(backend, group)
    backend.allocate(new)
    before = snapshot(backend, [old, new])
    with expect(RefusedError, 35603):
        backend.replace(old, new)
    assert snapshot(backend, [old, new]) == before
    assert store.replacements(old) == []


def test_replace_unknown_sn(backend, group):
    sn = new_device(backend, group.group_id, "SN-0001")
    with expect(NotFoundError, 35404):
        backend.replace(sn, "0000000000000000")
    with expect(NotFoundError, 35404):
        backend.replace("0000000000000000", sn)
    assert backend.get(sn).sn == sn


def test_replace_same_or_empty_sn(backend, group):
    sn = new_device(backend, group.group_id, "SN-0001")
    with expect(InvalidArgumentError, 35400):
        backend.replace(sn, sn)
    with expect(InvalidArgumentError, 35400):
        backend.replace(sn, "")
    assert backend.get(sn).sn == sn


# -- bootstrap (device side) --------------------------------------------------------------------


def test_bootstrap_self_registers_unknown_device(backend, group):
    t0 = now_ms()
    info = bootstrap(
        backend,
        group,
        "NEW-0001",
        device_name={"defaultValue": "Meter", "i18nValue": {"en_US": "Meter"}},
        timezone="+08:00",
    )
    t1 = now_ms()
    (dev,) = all_devices(backend, device_sns=("NEW-0001",))
    assert info.sn == dev.sn
    assert triple(info) == ("pk1", dev.device_key, dev.device_secret)
    assert DEVICE_KEY_RE.fullmatch(info.device_key) and info.device_secret
    assert info.mqtt_url and info.http_url
    assert dev.group_id == group.group_id
    assert (dev.region_id, dev.org_id) == ("eu2", "o1")
    assert dev.allocate_status == "allocated"
    assert dev.connect_status == "connected"
    assert dev.status.current_status == "connected"
    assert t0 <= dev.status.connected_time <= t1
    assert t0 <= dev.status.allocated_time <= t1
    assert dev.device_data["timezone"] == "+08:00"
    assert dev.device_data["deviceName"]["defaultValue"] == "Meter"
    d = info.to_dict(include_secret=True)
    assert set(d) >= {"pk", "dk", "ds", "murl", "hurl"}
    assert (d["pk"], d["dk"], d["ds"]) == triple(info)


def test_bootstrap_registered_device_is_allocated(backend, group):
    sn = new_device(backend, group.group_id, "SN-0001")
    info = bootstrap(backend, group, "SN-0001")
    assert info.sn == sn
    dev = backend.get(sn)
    assert dev.allocated and dev.connect_status == "connected"
    assert triple(info) == ("pk1", dev.device_key, dev.device_secret)
    assert len(all_devices(backend)) == 1  # no second registration


def test_bootstrap_allocated_device_keeps_its_triple(backend, group):
    sn = new_device(backend, group.group_id, "SN-0001")
    allocated = backend.allocate(sn)
    first = bootstrap(backend, group, "SN-0001")
    second = bootstrap(backend, group, "SN-0001")
    assert triple(first) == triple(second) == ("pk1", allocated.device_key, allocated.device_secret)
    assert len(all_devices(backend)) == 1


def test_bootstrap_returns_group_urls(backend, group):
    grp = make_group(
        backend,
        group_id="urls",
        name="Urls",
        mqtt_url="tcp://broker.example:11883",
        http_url="https://http.example",
    )
    info = bootstrap(backend, grp, "SN-0001")
    assert (info.mqtt_url, info.http_url) == ("tcp://broker.example:11883", "https://http.example")
    d = info.to_dict()
    assert (d["murl"], d["hurl"]) == ("tcp://broker.example:11883", "https://http.example")


def test_bootstrap_wrong_secret(backend, group):
    with expect(AuthError, 35601):
        bootstrap(backend, group, "SN-0001", secret="not-the-group-secret")
    assert all_devices(backend) == []  # no self-registration either


def test_bootstrap_wrong_secret_on_registered_device(backend, group):
    sn = new_device(backend, group.group_id, "SN-0001")
    before = snapshot(backend, [sn])
    with expect(AuthError, 35601):
        bootstrap(backend, group, "SN-0001", secret="not-the-group-secret")
    assert snapshot(backend, [sn]) == before


@pytest.mark.parametrize("direction", [-1, 1], ids=["past", "future"])
def test_bootstrap_timestamp_outside_clock_skew(backend, group, direction):
    skew = backend.clock_skew_ms
    assert skew and skew > 0
    stale = now_ms() + direction * (skew + 60_000)
    with expect(AuthError, 35601):
        bootstrap(backend, group, "SN-0001", ts=stale)
    assert all_devices(backend) == []
    # inside the skew it is accepted
    bootstrap(backend, group, "SN-0001", ts=now_ms() + direction * (skew - 60_000))


def test_bootstrap_unknown_group(backend, group):
    ts = now_ms()
    sign = signing.sign(group.sign_scheme, "SN-0001", ts, group.group_secret)
    with expect(NotFoundError, 35404):
        backend.bootstrap(
            group_id="no-such-group", device_sn="SN-0001", timestamp=ts, sign=sign, **NAME_AND_TZ
        )


@pytest.mark.parametrize("bad_sn", ["abc", "has space", "x" * 65])
def test_bootstrap_invalid_device_sn(backend, group, bad_sn):
    with expect(InvalidArgumentError, 99400):
        bootstrap(backend, group, bad_sn)
    assert all_devices(backend) == []


def test_bootstrap_invalid_timezone(backend, group):
    with expect(InvalidArgumentError, 99400):
        bootstrap(backend, group, "SN-0001", timezone="Mars/Olympus")
    assert all_devices(backend) == []


@pytest.mark.parametrize("method", ["md5", "sha1", "hmacsha256"])
def test_bootstrap_sign_method_must_be_sha256(backend, group, method):
    with expect(InvalidArgumentError, 99400):
        bootstrap(backend, group, "SN-0001", sign_method=method)
    assert all_devices(backend) == []


def test_bootstrap_group_without_target(backend, group):
    bare = make_group(backend, group_id="no-target", name="No target", region_id=None, org_id=None)
    with expect(InvalidArgumentError, 99400):
        bootstrap(backend, bare, "SN-0001")
    assert all_devices(backend) == []  # the self-registration was rolled back


@pytest.mark.parametrize("scheme", sorted(signing.SCHEMES))
def test_bootstrap_every_sign_scheme(backend, group, scheme):
    grp = make_group(backend, group_id=f"s-{scheme}", name=f"S {scheme}", sign_scheme=scheme)
    assert grp.sign_scheme == scheme
    info = bootstrap(backend, grp, "SN-0001")
    assert info.device_key
    # the same request signed with any other scheme is refused
    for other in sorted(set(signing.SCHEMES) - {scheme}):
        ts = now_ms()
        sign = signing.sign(other, "SN-0002", ts, grp.group_secret)
        with expect(AuthError, 35601):
            backend.bootstrap(
                group_id=grp.group_id, device_sn="SN-0002", timestamp=ts, sign=sign, **NAME_AND_TZ
            )
    # upper-case hex is the same signature
    ts = now_ms()
    sign = signing.sign(scheme, "SN-0003", ts, grp.group_secret).upper()
    assert backend.bootstrap(
        group_id=grp.group_id, device_sn="SN-0003", timestamp=ts, sign=sign, **NAME_AND_TZ
    )


# -- get connection info (device side) ----------------------------------------------------------


def test_get_connection_info_not_allocated(backend, group):
    sn = new_device(backend, group.group_id, "SN-0001")
    with expect(NotAllocatedError, 10000):
        conn_info(backend, group, sn)
    assert backend.get(sn).connect_status == "init"


def test_get_connection_info_after_reset_is_not_allocated(backend, group):
    sn = new_device(backend, group.group_id, "SN-0001")
    backend.allocate(sn)
    backend.reset_allocation(group.group_id, [sn])
    with expect(NotAllocatedError, 10000):
        conn_info(backend, group, sn)


def test_get_connection_info_bad_signature(backend, group):
    sn = new_device(backend, group.group_id, "SN-0001")
    backend.allocate(sn)
    with expect(AuthError, 35601):
        conn_info(backend, group, sn, secret="not-the-group-secret")
    ts = now_ms()  # signed over the deviceSn instead of the system sn
    sign = signing.sign(group.sign_scheme, "SN-0001", ts, group.group_secret)
    with expect(AuthError, 35601):
        backend.get_connection_info(sn=sn, timestamp=ts, sign=sign)
    with expect(AuthError, 35601):
        conn_info(backend, group, sn, ts=now_ms() - backend.clock_skew_ms - 60_000)
    with expect(InvalidArgumentError, 99400):
        conn_info(backend, group, sn, sign_method="md5")
    assert backend.get(sn).connect_status == "init"


def test_get_connection_info_after_allocation(backend, group):
    sn = new_device(backend, group.group_id, "SN-0001")
    dev = backend.allocate(sn)
    info = conn_info(backend, group, sn)
    assert info.sn == sn
    assert triple(info) == ("pk1", dev.device_key, dev.device_secret)
    assert info.mqtt_url and info.http_url
    after = backend.get(sn)
    assert after.connect_status == "connected" and after.status.current_status == "connected"


def test_get_connection_info_matches_bootstrap(backend, group):
    boot = bootstrap(backend, group, "SN-0001")
    info = conn_info(backend, group, boot.sn)
    assert triple(info) == triple(boot)
    assert (info.mqtt_url, info.http_url) == (boot.mqtt_url, boot.http_url)


def test_get_connection_info_unknown_sn(backend, group):
    with expect(EnosprovError, 35601):
        conn_info(backend, group, "0000000000000000")
    with expect(InvalidArgumentError, 35400):
        backend.get_connection_info(sn="", timestamp=now_ms(), sign="x")


# -- bulk registration --------------------------------------------------------------------------


def test_register_batch_outcomes(backend, group):
    recs = [NewDevice(f"SN-{i:04d}", dict(DATA)) for i in range(1, 4)]
    assert backend.register_batch(group.group_id, recs, dry_run=True)[0].outcome == "created"
    assert all_devices(backend) == []  # dry run wrote nothing
    first = backend.register_batch(group.group_id, recs)
    assert [o.outcome for o in first] == ["created"] * 3
    assert all(o.sn for o in first)
    again = backend.register_batch(group.group_id, recs)
    assert [(o.outcome, o.sn) for o in again] == [("skipped", o.sn) for o in first]
    changed = [recs[0]._replace(device_data={**DATA, "max_capacity": 1}), recs[1]]
    outcomes = backend.register_batch(group.group_id, changed)
    assert [o.outcome for o in outcomes] == ["conflict", "skipped"]
    assert "max_capacity" in outcomes[0].error
    assert backend.get(first[0].sn).device_data["max_capacity"] == 40  # untouched
    with expect(NotFoundError, 35404):
        backend.register_batch("no-such-group", recs)
    order = backend.next_batch_order()
    if backend.name == "local":
        assert backend.next_batch_order() == order + 1
    else:
        assert order is None  # EnOS numbers each create call itself


# -- secrets ------------------------------------------------------------------------------------


def test_secrets_stay_out_of_repr_and_to_dict(backend, group):
    secret = group.group_secret
    assert secret and secret not in repr(group) and secret not in str(group)
    assert "groupSecret" not in group.to_dict()
    assert secret not in json.dumps(group.to_dict())
    assert group.to_dict(include_secret=True)["groupSecret"] == secret
    stored = backend.get_group(group.group_id)
    assert secret not in repr(stored)

    sn = new_device(backend, group.group_id, "SN-0001")
    backend.allocate(sn)
    dev = backend.get(sn)
    assert dev.device_secret and dev.device_secret not in repr(dev)
    assert "deviceSecret" not in dev.to_dict()
    assert dev.device_secret not in json.dumps(dev.to_dict())
    assert dev.to_dict(include_secret=True)["deviceSecret"] == dev.device_secret

    info = conn_info(backend, group, sn)
    assert info.device_secret == dev.device_secret
    assert info.device_secret not in repr(info)
    assert "ds" not in info.to_dict()
    assert info.device_secret not in json.dumps(info.to_dict())
    assert info.to_dict(include_secret=True)["ds"] == info.device_secret

    page = backend.search(SearchQuery())
    assert dev.device_secret not in json.dumps(page.to_dict())


def test_error_messages_do_not_leak_the_group_secret(backend, group):
    with pytest.raises(AuthError) as err:
        bootstrap(backend, group, "SN-0001", secret="not-the-group-secret")
    text = str(err.value) + (err.value.hint or "") + json.dumps(err.value.to_dict())
    assert group.group_secret not in text


# -- the store file (local only) ----------------------------------------------------------------


@pytest.mark.skipif(os.name == "nt", reason="POSIX file modes")
@pytest.mark.sqlite_only
def test_store_file_is_owner_only(store, store_path):
    assert store_path.exists()
    assert file_mode(store_path) == 0o600
    make_group(store)  # write something so the WAL exists
    for side in (Path(f"{store_path}-wal"), Path(f"{store_path}-shm")):
        if side.exists():
            assert file_mode(side) == 0o600, side


@pytest.mark.skipif(os.name == "nt", reason="POSIX file modes")
def test_store_file_is_owner_only_even_with_open_umask(tmp_path):
    from enosprov import api

    old = os.umask(0)
    try:
        path = tmp_path / "sub" / "open.db"
        st = api.open_store(path)
        make_group(st)
        st.close()
    finally:
        os.umask(old)
    assert file_mode(path) == 0o600


# -- several processes on one store (local only) ------------------------------------------------

_CHILD = r"""
import json, os, sys, time
from enosprov import api
from enosprov.errors import EnosprovError
from enosprov.domain.models import NewDevice

path, gid, mode, start, count, order, go = sys.argv[1:8]
start, count = int(start), int(count)
numbers = list(range(start, start + count))
if order == "reverse":
    numbers.reverse()
data = {"max_capacity": 40, "phase": "single"}
store = api.open_store(path)
deadline = time.monotonic() + 30
while not os.path.exists(go):
    if time.monotonic() > deadline:
        raise SystemExit("never got the go signal")
    time.sleep(0.001)
counts, sns, errors = {}, {}, []
if mode == "batch":
    for k in range(0, len(numbers), 100):
        recs = [NewDevice(f"CC-{i:06d}", dict(data)) for i in numbers[k:k + 100]]
        for o in store.register_batch(gid, recs):
            counts[o.outcome] = counts.get(o.outcome, 0) + 1
            sns[o.device_sn] = o.sn
        time.sleep(0.002)  # let the other process in between transactions
else:
    for i in numbers:
        dsn = f"CC-{i:06d}"
        try:
            (sns[dsn],) = store.create(gid, device_data={"deviceSn": dsn, **data})
            counts["created"] = counts.get("created", 0) + 1
        except EnosprovError as exc:
            if exc.enos_code != 35601:
                errors.append(f"{type(exc).__name__} {exc.enos_code}: {exc}")
            counts["duplicate"] = counts.get("duplicate", 0) + 1
        time.sleep(0.0005)
store.close()
print(json.dumps({"counts": counts, "sns": sns, "errors": errors}))
"""


def _race(store_path: Path | str, group_id: str, mode: str, jobs: list[tuple[int, int, str]], tmp):
    """Run one child per (start, count, order) job, released at the same instant."""
    go = tmp / f"go-{mode}"
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    procs = [
        subprocess.Popen(
            [
                sys.executable,
                "-c",
                _CHILD,
                str(store_path),
                group_id,
                mode,
                str(s),
                str(n),
                o,
                str(go),
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
        )
        for s, n, o in jobs
    ]
    time.sleep(0.3)  # let both import enosprov and open the store
    go.touch()
    results = []
    for p in procs:
        out, err = p.communicate(timeout=120)
        assert "locked" not in err and "busy" not in err, err
        assert p.returncode == 0, err
        results.append(json.loads(out))
    return results


def test_two_processes_register_overlapping_batches(store, store_location, tmp_path):
    grp = make_group(store)
    # 2 x 3000 records, 1000 overlapping (CC-002000..CC-002999); the second process walks its
    # records backwards so that both reach the overlap at about the same time.
    a, b = _race(
        store_location,
        grp.group_id,
        "batch",
        [(0, 3000, "forward"), (2000, 3000, "reverse")],
        tmp_path,
    )
    for r in (a, b):
        assert set(r["counts"]) <= {"created", "skipped"}, r["counts"]
        assert sum(r["counts"].values()) == 3000
    created = a["counts"].get("created", 0) + b["counts"].get("created", 0)
    skipped = a["counts"].get("skipped", 0) + b["counts"].get("skipped", 0)
    assert (created, skipped) == (5000, 1000)
    overlap = [f"CC-{i:06d}" for i in range(2000, 3000)]
    assert all(a["sns"][d] == b["sns"][d] for d in overlap)  # both name the one device
    devices = list(store.iter_devices(SearchQuery(group_id=grp.group_id)))
    per_sn = Counter(d.device_sn for d in devices)
    assert len(per_sn) == 5000 and set(per_sn.values()) == {1}
    assert per_sn.keys() == {f"CC-{i:06d}" for i in range(5000)}
    assert {d.sn for d in devices} == set(a["sns"].values()) | set(b["sns"].values())


def test_two_processes_create_overlapping_device_sns(store, store_location, tmp_path):
    grp = make_group(store)
    a, b = _race(
        store_location,
        grp.group_id,
        "create",
        [(0, 300, "forward"), (200, 300, "reverse")],
        tmp_path,
    )
    assert a["errors"] == [] and b["errors"] == []
    created = a["counts"].get("created", 0) + b["counts"].get("created", 0)
    dups = a["counts"].get("duplicate", 0) + b["counts"].get("duplicate", 0)
    assert (created, dups) == (500, 100)
    assert sum(a["counts"].values()) == sum(b["counts"].values()) == 300
    devices = list(store.iter_devices(SearchQuery(group_id=grp.group_id)))
    per_sn = Counter(d.device_sn for d in devices)
    assert len(per_sn) == 500 and set(per_sn.values()) == {1}
    assert {d.sn for d in devices} == set(a["sns"].values()) | set(b["sns"].values())


def test_update_device_unset_sends_the_full_map_and_checks_it_took(backend, group):
    """`devices update --unset` never sends null: the full map without the key, then a check."""
    from enosprov.core.device_ops import update_device
    from enosprov.errors import RefusedError

    sn = new_device(backend, group.group_id, "SN-0001", device_data={**DATA, "site": "Hall 1"})
    res = update_device(backend, sn, unset=["site"], values={"max_capacity": "55"})
    assert res.device.device_data == {"deviceSn": "SN-0001", **DATA, "max_capacity": 55}

    class Merging:  # a tenant whose Update Device merges deviceData into what it has
        def __init__(self, inner):
            self.inner = inner

        def __getattr__(self, name):
            return getattr(self.inner, name)

        def update(self, sn, *, device_data=None, **kw):
            if device_data is not None:
                device_data = {**self.inner.get(sn).device_data, **device_data}
            return self.inner.update(sn, device_data=device_data, **kw)

    backend.update(sn, device_data={"deviceSn": "SN-0001", **DATA, "site": "Hall 2"})
    with pytest.raises(RefusedError) as exc:
        update_device(Merging(backend), sn, unset=["site"], desc="kept")
    assert "kept deviceData site" in exc.value.message and "console" in exc.value.hint
    assert backend.get(sn).desc == "kept"  # the other changes were made
