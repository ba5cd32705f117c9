"""The DPS calls the emulator answers, each mapped onto a LocalBackend operation.

Every handler takes ``(backend, query, body, behaviour)`` (``body`` is the parsed JSON object,
``{}`` for a GET; ``behaviour`` the emulator's [ENOSPROV] options) and returns ``(data, extra)``:
the envelope's ``data`` and any further top-level keys (``pagination`` on search). Fields and
types outside the documented contract were refused before (enosprov.emulator.contract); missing
fields raise the EnOS error a real DPS gives: 99400 (invalid argument) or 35400 (a required
sn/orgId missing).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import TYPE_CHECKING

from ..backends import fql
from ..backends.local import LocalBackend
from ..domain.errors import enos_error
from ..domain.models import Sorter

if TYPE_CHECKING:
    from .app import Behaviour

_KINDS = {
    "str": (lambda v: isinstance(v, str), "a string"),
    "int": (lambda v: isinstance(v, int) and not isinstance(v, bool), "an integer"),
    "dict": (lambda v: isinstance(v, dict), "an object"),
    "strs": (
        lambda v: isinstance(v, list) and all(isinstance(i, str) for i in v),
        "a list of strings",
    ),
}


def _value(body: dict, name: str, kind: str, *, required: bool = False, code: int = 99400):
    """Field ``name`` of ``body`` checked against ``kind`` (str, int, dict, strs), or None."""
    value = body.get(name)
    if value is None or (required and value == ""):
        if not required:
            return None
        if code == 35400:
            raise enos_error(35400, f"OrgId/{name} is required")
        raise enos_error(99400, f"Invalid Argument {name}:{name} is missing")
    check, expected = _KINDS[kind]
    if not check(value):
        raise enos_error(99400, f"Invalid Argument {name}:{name} must be {expected}")
    return value


def _timestamp(body: dict, name: str) -> int:
    """A required Long: epoch milliseconds as a JSON integer (the contract checked its type)."""
    return _value(body, name, "int", required=True)


# -- application API (v2.5) -------------------------------------------------------------------


def create(be: LocalBackend, query: dict, body: dict, behaviour: Behaviour):
    group_id = _value(body, "groupId", "str", required=True)
    count = _value(body, "count", "int", required=True)
    sns = be.create(
        group_id,
        count=count,
        desc=_value(body, "desc", "str"),
        batch_tag=_value(body, "batchTag", "dict"),
        device_data=_value(body, "deviceData", "dict"),
    )
    return sns, {}


def get(be: LocalBackend, query: dict, body: dict, behaviour: Behaviour):
    sn = query.get("sn") or ""
    if not sn:
        raise enos_error(35400, "OrgId/sn is required")
    return be.get(sn).to_dict(), {}


def search(be: LocalBackend, query: dict, body: dict, behaviour: Behaviour):
    expression = _value(body, "expression", "str") or ""
    paging = _value(body, "pagination", "dict") or {}
    page_no = _value(paging, "pageNo", "int")
    page_size = _value(paging, "pageSize", "int")
    sorters = paging.get("sorters")
    q = fql.parse(expression)
    changes: dict = {}
    if page_no is not None:
        changes["page_no"] = page_no
    if page_size is not None:
        changes["page_size"] = page_size
    if sorters:  # none given: the DPS default, createTime descending
        if not isinstance(sorters, list) or not all(isinstance(s, dict) for s in sorters):
            raise enos_error(99400, "Invalid Argument sorters must be a list of objects")
        changes["sorters"] = tuple(
            Sorter(
                _value(s, "field", "str", required=True),
                _value(s, "order", "str") or "ASC",  # documented default
            )
            for s in sorters
        )
    if behaviour.page_size is not None and changes.get("page_size", 10) > behaviour.page_size:
        # [ENOSPROV] --page-size: a server that serves shorter pages than asked
        changes["page_size"] = behaviour.page_size
    page = be.search(dataclasses.replace(q, **changes))
    pagination = {"pageNo": page.page_no, "pageSize": page.page_size, "totalSize": page.total}
    return [d.to_dict() for d in page.items], {"pagination": pagination}


def update(be: LocalBackend, query: dict, body: dict, behaviour: Behaviour):
    sn = _value(body, "sn", "str", required=True, code=35400)
    return be.update(
        sn,
        desc=_value(body, "desc", "str"),
        batch_tag=_value(body, "batchTag", "dict"),
        device_data=_value(body, "deviceData", "dict"),
    ), {}


def delete(be: LocalBackend, query: dict, body: dict, behaviour: Behaviour):
    group_id = _value(body, "groupId", "str", required=True)
    sns = _value(body, "snList", "strs", required=True)
    return be.delete(group_id, sns), {}


def allocate(be: LocalBackend, query: dict, body: dict, behaviour: Behaviour):
    sn = _value(body, "sn", "str", required=True, code=35400)
    # the target: deviceData.regionId/orgId (built-in master data), else the device's, else
    # the group's
    dev = be.allocate(sn, device_data=_value(body, "deviceData", "dict"))
    return dev.to_dict(), {}


def reset_allocation_status(be: LocalBackend, query: dict, body: dict, behaviour: Behaviour):
    group_id = _value(body, "groupId", "str", required=True)
    sns = _value(body, "sns", "strs", required=True)
    return be.reset_allocation(group_id, sns), {}


def replace(be: LocalBackend, query: dict, body: dict, behaviour: Behaviour):
    sn = _value(body, "sn", "str", required=True, code=35400)
    new = _value(body, "replacementSn", "str", required=True, code=35400)
    return be.replace(sn, new).to_dict(), {}


Handler = Callable[[LocalBackend, dict, dict, "Behaviour"], tuple[object, dict]]

# action -> (HTTP method, handler)
ACTIONS: dict[str, tuple[str, Handler]] = {
    "create": ("POST", create),
    "get": ("GET", get),
    "search": ("POST", search),
    "update": ("POST", update),
    "delete": ("POST", delete),
    "allocate": ("POST", allocate),
    "resetAllocationStatus": ("POST", reset_allocation_status),
    "replace": ("POST", replace),
}


# -- device API -------------------------------------------------------------------------------


def bootstrap(be: LocalBackend, body: dict) -> dict:
    info = be.bootstrap(
        group_id=_value(body, "groupId", "str", required=True),
        device_sn=_value(body, "deviceSn", "str", required=True),
        sign_method=_value(body, "dpsSignMethod", "str") or "sha256",
        timestamp=_timestamp(body, "dpsSignTimestamp"),
        sign=_value(body, "dpsSign", "str", required=True),
        device_name=_value(body, "deviceName", "dict"),
        timezone=_value(body, "timezone", "str"),
    )
    return info.to_dict(include_secret=True)


def get_conn(be: LocalBackend, body: dict) -> dict:
    if body.get("sub") is not None:
        raise enos_error(99400, "Invalid Argument sub: the emulator does not serve sub-devices")
    auth = _value(body, "self", "dict", required=True)
    info = be.get_connection_info(
        sn=_value(auth, "sn", "str", required=True, code=35400),
        timestamp=_timestamp(auth, "timestamp"),
        sign=_value(auth, "sign", "str", required=True),
        sign_method=_value(body, "signMethod", "str") or "sha256",
    )
    return info.to_dict(include_secret=True)


DEVICE_CALLS: dict[str, Callable[[LocalBackend, dict], dict]] = {
    "/dev/bootstrap": bootstrap,
    "/dev/get/conn": get_conn,
}
