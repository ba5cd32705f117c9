"""The EnOS backend sends only what the documented EnOS APIs accept, and reads their documented
answers (issue 11).

``CONTRACT`` below is the documented contract, kept here once and written from the EnOS
documentation (the project's reference notes on EnOS DPS), not from the emulator: every request
the client sends in a full lifecycle is recorded on the wire and checked against it (path,
method, query parameters, headers, body keys and value types, deviceData keys and types). The
documented sample responses are then served verbatim and parsed by the client.
"""

from __future__ import annotations

import json
import sqlite3
import time
from urllib.parse import parse_qsl

import pytest
from conftest import APP_KEY, APP_SECRET, enos_backend, make_group

from enosprov.backends.enos import EnosBackend
from enosprov.backends.enos_config import EnosConfig
from enosprov.core.replacement import ReplaceRequest, plan_replacements, replace_devices
from enosprov.core.reprovision import reprovision
from enosprov.domain import signing
from enosprov.domain.models import NewDevice, SearchQuery
from enosprov.emulator.server import start_in_thread

APP_PATH = "/dps-service/v2.5/pvs/device"
DATA = {"max_capacity": 40, "phase": "single"}  # the required master data of METERS
I18N = "StringI18n"

# -- the documented contract --------------------------------------------------------------------
# action -> (HTTP method, required query, optional query, required body, optional body); body
# fields map to their documented types.
CONTRACT = {
    "create": ("POST", {"orgId"}, set(), {"groupId": str, "count": int},
               {"desc": str, "batchTag": I18N, "deviceData": dict}),
    "get": ("GET", {"orgId", "sn"}, set(), {}, {}),
    "search": ("POST", {"orgId"}, set(), {}, {"expression": str, "pagination": dict}),
    "update": ("POST", {"orgId"}, set(), {"sn": str},
               {"desc": str, "batchTag": I18N, "deviceData": dict}),
    "delete": ("POST", {"orgId"}, set(), {"snList": list, "groupId": str}, {}),
    "allocate": ("POST", {"orgId"}, set(), {"sn": str}, {"deviceData": dict}),
    "resetAllocationStatus": ("POST", {"orgId"}, set(), {"groupId": str, "sns": list}, {}),
    "replace": ("POST", {"orgId"}, set(), {"sn": str, "replacementSn": str}, {}),
}  # fmt: skip
PAGINATION = {"pageNo": int, "pageSize": int, "sorters": list}
SORTER = {"field": str, "order": str}
DEVICE_CALLS = {
    "/dev/bootstrap": {"deviceSn": str, "groupId": str, "dpsSignMethod": str,
                       "dpsSignTimestamp": int, "dpsSign": str, "deviceName": I18N,
                       "timezone": str},
    "/dev/get/conn": {"self": dict, "signMethod": str},
}  # fmt: skip
DEVICE_AUTH = {"sn": str, "timestamp": int, "sign": str}
TOKEN = {"appKey": str, "encryption": str, "timestamp": int}
SIGNED_HEADERS = ("apim-accesstoken", "apim-signature", "apim-timestamp")
CONTENT_TYPE = "application/json;charset=UTF-8"
# Built-in master data and their documented types; every other key is OU-created master data,
# whose values are Integer, String, Enum or Date (numbers where the samples show them).
BUILTIN = {"regionId": str, "orgId": str, "modelId": str, "privateModel": bool,
           "timezone": str, "deviceName": I18N, "deviceSn": str}  # fmt: skip
SYSTEM_OWNED = {"assetId"}


def _is(value, kind) -> bool:
    if kind == I18N:
        return (
            isinstance(value, dict)
            and set(value) <= {"defaultValue", "i18nValue"}
            and isinstance(value.get("defaultValue", ""), str)
            and set(value.get("i18nValue") or {}) <= {"en_US", "zh_CN"}
        )
    if kind is int:
        return isinstance(value, int) and not isinstance(value, bool)
    return isinstance(value, kind)


def _check_fields(where: str, body: dict, required: dict, optional: dict) -> list[str]:
    problems = [f"{where}: {k} is missing" for k in required if k not in body]
    for key, value in body.items():
        kind = required.get(key, optional.get(key))
        if kind is None:
            problems.append(f"{where}: {key} is not a documented field")
        elif not _is(value, kind):
            problems.append(f"{where}: {key}={value!r} is not {getattr(kind, '__name__', kind)}")
    return problems


def _check_device_data(where: str, data: dict) -> list[str]:
    problems = []
    for key, value in data.items():
        if key in SYSTEM_OWNED:
            problems.append(f"{where}.deviceData.{key}: owned by EnOS, never sent")
        elif key in BUILTIN:
            if not _is(value, BUILTIN[key]):
                problems.append(f"{where}.deviceData.{key}={value!r}: not {BUILTIN[key]}")
        elif value is None or isinstance(value, bool) or not isinstance(value, (str, int, float)):
            problems.append(f"{where}.deviceData.{key}={value!r}: not Integer/String/Enum/Date")
    return problems


def contract_problems(req: dict) -> list[str]:
    """What is wrong with one recorded request, by the documented contract."""
    path, query, body, headers = req["path"], req["query"], req["body"], req["headers"]
    if path.startswith("/apim-token-service/"):
        return _check_fields(path, body, TOKEN, {"accessToken": str})
    if path in DEVICE_CALLS:
        problems = _check_fields(path, body, DEVICE_CALLS[path], {})
        if "self" in body:
            problems += _check_fields(path + " self", body["self"], DEVICE_AUTH, {})
        return problems + (["device call with a query"] if query else [])
    if path != APP_PATH:
        return [f"{path}: not a documented path"]
    action = query.get("action")
    if action not in CONTRACT:
        return [f"action {action!r} is not documented"]
    method, req_q, opt_q, req_b, opt_b = CONTRACT[action]
    problems = []
    if req["method"] != method:
        problems.append(f"{action}: {req['method']} instead of {method}")
    extra = set(query) - {"action"} - req_q - opt_q
    problems += [f"{action}: query {q} is not documented" for q in sorted(extra)]
    problems += [f"{action}: query {q} is missing" for q in sorted(req_q - set(query))]
    problems += [f"{action}: header {h} is missing" for h in SIGNED_HEADERS if not headers.get(h)]
    if method == "POST" and headers.get("content-type") != CONTENT_TYPE:
        problems.append(f"{action}: Content-Type {headers.get('content-type')!r}")
    problems += _check_fields(action, body, req_b, opt_b)
    if isinstance(body.get("deviceData"), dict):
        problems += _check_device_data(action, body["deviceData"])
    if isinstance(body.get("pagination"), dict):
        pag = body["pagination"]
        problems += _check_fields(f"{action}.pagination", pag, {}, PAGINATION)
        for sorter in pag.get("sorters") or []:
            problems += _check_fields(f"{action}.sorter", sorter, {"field": str}, SORTER)
            if sorter.get("order") not in (None, "ASC", "DESC"):
                problems.append(f"{action}: sorter order {sorter['order']!r}")
    for name in ("snList", "sns"):
        if name in body and not all(isinstance(s, str) for s in body[name]):
            problems.append(f"{action}: {name} must hold strings")
    return problems


# -- recording what goes on the wire -----------------------------------------------------------


class Recorder:
    """WSGI middleware: keeps every request (method, path, query, headers, JSON body)."""

    def __init__(self, app):
        self.app = app
        self.requests: list[dict] = []

    def __call__(self, environ, start_response):
        import io

        length = int(environ.get("CONTENT_LENGTH") or 0)
        raw = environ["wsgi.input"].read(length) if length else b""
        environ["wsgi.input"] = io.BytesIO(raw)
        headers = {
            k[5:].lower().replace("_", "-"): v for k, v in environ.items() if k.startswith("HTTP_")
        }
        headers["content-type"] = environ.get("CONTENT_TYPE", "")
        self.requests.append(
            {
                "method": environ["REQUEST_METHOD"],
                "path": environ["PATH_INFO"],
                "query": dict(parse_qsl(environ.get("QUERY_STRING", ""), keep_blank_values=True)),
                "headers": headers,
                "body": json.loads(raw) if raw else {},
            }
        )
        return self.app(environ, start_response)

    def actions(self) -> list[str]:
        return [r["query"].get("action") or r["path"] for r in self.requests]


@pytest.fixture
def recorded(emulator, store_path):
    """The EnOS backend against the strict emulator, every request recorded."""
    be = enos_backend(emulator, store_path, retries=2)
    recorder = Recorder(be.app)
    emulator.holder["app"] = recorder
    yield be, recorder
    be.close()


def _bootstrap(be, group, device_sn: str):
    ts = int(time.time() * 1000)
    sign = signing.sign(group.sign_scheme, device_sn, ts, group.group_secret)
    return be.bootstrap(
        group_id=group.group_id, device_sn=device_sn, timestamp=ts, sign=sign,
        device_name={"defaultValue": f"Meter {device_sn}"}, timezone="+08:00",
    )  # fmt: skip


def test_every_request_of_a_lifecycle_is_documented(recorded):
    be, rec = recorded
    group = make_group(be, reprovision_method="migrate")
    outcomes = be.register_batch(
        group.group_id,
        [NewDevice(f"SN-{i:04d}", {**DATA, "site": f"Hall {i}"}, "a meter",
                   {"defaultValue": "B-1"}) for i in range(1, 6)],
    )  # fmt: skip
    sns = [o.sn for o in outcomes]
    assert all(o.outcome == "created" for o in outcomes)
    be.get(sns[0])
    list(be.iter_devices(SearchQuery(group_id=group.group_id, batch_tag="B-1")))
    be.search(SearchQuery(group_id=group.group_id, page_size=2))
    dev = be.get(sns[1])
    be.update(sns[1], desc="moved", device_data={**dev.device_data, "site": "Hall 9"})
    be.allocate(sns[1], device_data={"regionId": "cn5", "orgId": "o2"})
    info = _bootstrap(be, group, "SN-0001")  # not registered elsewhere: allocated to the group
    ts = int(time.time() * 1000) + 1
    be.get_connection_info(
        sn=info.sn, timestamp=ts, sign=signing.sign(group.sign_scheme, info.sn, ts,
                                                    group.group_secret),
    )  # fmt: skip
    reprovision(be, ["SN-0001"], group=group.group_id, region_id="us2", org_id="o7")
    again = _bootstrap(be, group, "SN-0001")
    assert "us2" in again.mqtt_url  # the documented target was honoured
    plans = plan_replacements(be, [ReplaceRequest("SN-0003", "SN-0103")], group=group.group_id)
    replace_devices(be, plans)
    be.delete(group.group_id, [sns[4]])

    seen = set(rec.actions())
    assert set(CONTRACT) <= seen, set(CONTRACT) - seen
    assert {"/dev/bootstrap", "/dev/get/conn", "/apim-token-service/v2.0/token/get"} <= seen
    problems = [p for r in rec.requests for p in contract_problems(r)]
    assert problems == []


def test_the_checker_catches_a_drift():
    """The contract check itself can fail (a test that cannot fail is a defect)."""
    base = {"method": "POST", "path": APP_PATH, "headers": {h: "x" for h in SIGNED_HEADERS}}
    base["headers"]["content-type"] = CONTENT_TYPE
    bad = [
        {**base, "query": {"action": "allocate", "orgId": "o"},
         "body": {"sn": "s", "regionId": "cn5"}},
        {**base, "query": {"action": "update", "orgId": "o"},
         "body": {"sn": "s", "deviceData": {"site": None}}},
        {**base, "query": {"action": "replace", "orgId": "o", "extra": "1"},
         "body": {"sn": "s", "replacementSn": "t"}},
        {**base, "query": {"action": "create", "orgId": "o"},
         "body": {"groupId": "g", "count": 1, "deviceData": {"assetId": "a"}}},
        {**base, "path": "/dev/bootstrap", "query": {},
         "body": {"deviceSn": "d", "groupId": "g", "dpsSignMethod": "sha256",
                  "dpsSignTimestamp": "1", "dpsSign": "s"}},
    ]  # fmt: skip
    for req in bad:
        assert contract_problems(req), req


def test_replace_never_sends_asset_id(recorded, store_path):
    """assetId is set by EnOS after allocation; copying OLD's details never carries it."""
    be, rec = recorded
    group = make_group(be)
    (old,) = be.register_batch(group.group_id, [NewDevice("SN-0001", dict(DATA))])
    with sqlite3.connect(store_path) as conn:  # EnOS gave OLD an asset id
        conn.execute(
            "UPDATE devices SET device_data=json_set(device_data, '$.assetId', 'asset-1') "
            "WHERE sn=?",
            (old.sn,),
        )
    assert be.get(old.sn).device_data["assetId"] == "asset-1"
    plans = plan_replacements(be, [ReplaceRequest("SN-0001", "SN-0002")], group=group.group_id)
    replace_devices(be, plans)
    sent = [r["body"] for r in rec.requests if r["query"].get("action") in ("create", "update")]
    assert sent and all("assetId" not in (b.get("deviceData") or {}) for b in sent)
    new = be.find_by_device_sn(group.group_id, "SN-0002")
    assert "assetId" not in new.device_data and new.device_data["phase"] == DATA["phase"]


# -- the documented sample responses, served verbatim -------------------------------------------

SAMPLE_DEVICE = {  # Get DPS Device sample (abridged in the reference notes; values as there)
    "sn": "yourSn", "groupId": "yourGroupId", "regionId": None, "orgId": None,
    "productKey": "yourProductKey", "batchOrder": 2,
    "batchTag": {"defaultValue": "11", "i18nValue": {}},
    "deviceData": {"deviceSn": "yourDeviceSn", "timezone": "+09:00", "assetId": "yourAssetId",
                   "deviceName": {}},
    "desc": "11",
    "status": {"currentStatus": "init", "connectedTime": None, "allocatedTime": None,
               "finishedTime": None, "discardedTime": None},
    "reprovisioning": True, "allocateErrorMsg": "", "createBy": "userId1",
    "createTime": 1666845767197, "updateBy": "userId1", "updateTime": 1666845767197,
}  # fmt: skip
SAMPLES = {
    "token": {"status": 0, "msg": "SUCCESS", "business": "apim-token-service",
              "data": {"accessToken": "tok", "expire": 7200}},
    "get": {"code": 0, "msg": "OK", "requestId": "r-get", "data": SAMPLE_DEVICE},
    "search": {"code": 0, "msg": "OK", "requestId": "r-s", "data": [SAMPLE_DEVICE],
               "pagination": {"pageNo": 1, "pageSize": 50, "totalSize": 1}},
    "create": {"code": 0, "msg": "OK", "requestId": "r-c", "data": ["sn-created"]},
    "update": {"code": 0, "msg": "OK", "requestId": "r-u", "data": "yourSn"},
    "delete": {"code": 0, "msg": "OK", "requestId": "r-d", "data": ["sn1", "sn2", "sn3"]},
    "resetAllocationStatus": {"code": 0, "msg": "OK", "requestId": "r-r", "data": ["sn1"]},
    "allocate": {"code": 0, "msg": "OK", "requestId": "r-a",
                 "data": {**SAMPLE_DEVICE, "regionId": "eu2", "orgId": "o1",
                          "allocateStatus": "allocated"}},
    "/dev/bootstrap": {"pk": "ProductKey", "dk": "DeviceKey", "ds": "DeviceSecret",
                       "murl": "tcp://mqtt-eu2.envisioniot.com:11883",
                       "hurl": "https://iot-http-eu2.envisioniot.com"},
}  # fmt: skip


@pytest.fixture
def canned():
    """A server answering each call with the documented sample, whatever was asked."""

    def app(environ, start_response):
        path = environ["PATH_INFO"]
        query = dict(parse_qsl(environ.get("QUERY_STRING", "")))
        if path.startswith("/apim-token-service/"):
            doc = SAMPLES["token"]
        else:
            doc = SAMPLES.get(query.get("action") or path)
        body = json.dumps(doc).encode()
        start_response("200 OK", [("Content-Type", CONTENT_TYPE),
                                  ("Content-Length", str(len(body)))])  # fmt: skip
        return [body]

    server = start_in_thread(app)
    cfg = EnosConfig(api_url=server.url, org_id="o1", app_key=APP_KEY, app_secret=APP_SECRET,
                     dps_url=server.url, retries=0)  # fmt: skip
    be = EnosBackend(cfg)
    yield be
    be.close()
    server.stop()


def test_documented_sample_responses_are_read(canned):
    be = canned
    dev = be.get("yourSn")
    assert (dev.sn, dev.group_id, dev.device_sn, dev.product_key) == (
        "yourSn", "yourGroupId", "yourDeviceSn", "yourProductKey")  # fmt: skip
    assert dev.batch_tag_text == "11" and dev.desc == "11" and dev.reprovisioning
    assert dev.device_data["timezone"] == "+09:00" and not dev.allocated
    assert dev.create_time == 1666845767197 and dev.status.current_status == "init"
    assert be.last_request_id is None  # a read: not journaled
    page = be.search(SearchQuery(group_id="yourGroupId", page_size=50))
    assert page.total == 1 and [d.sn for d in page.items] == ["yourSn"]
    assert [d.sn for d in be.iter_devices(SearchQuery(group_id="yourGroupId"))] == ["yourSn"]
    assert be.create("yourGroupId", count=3) == ["sn-created"]
    assert be.update("yourSn", desc="x") == "yourSn" and be.last_request_id == "r-u"
    assert be.delete("yourGroupId", ["sn1", "sn2", "sn3"]) == ["sn1", "sn2", "sn3"]
    assert be.reset_allocation("yourGroupId", ["sn1"]) == ["sn1"]
    allocated = be.allocate("yourSn")
    assert allocated.allocated and (allocated.region_id, allocated.org_id) == ("eu2", "o1")
    info = be.bootstrap(group_id="g", device_sn="d", timestamp=1, sign="s",
                        device_name={"defaultValue": "d"}, timezone="+08:00")  # fmt: skip
    assert (info.product_key, info.device_key, info.device_secret) == (
        "ProductKey", "DeviceKey", "DeviceSecret")  # fmt: skip
    assert info.mqtt_url.startswith("tcp://mqtt-eu2")


def test_a_tenant_that_ignores_the_target_is_told_plainly():
    """If a tenant allocates elsewhere than deviceData.regionId/orgId asked, the result says so."""
    import dataclasses

    from enosprov.core.device_ops import allocate_devices
    from enosprov.domain.models import Device

    dev = Device(sn="s1", group_id="g", device_sn="SN-0001")

    class IgnoresTarget:
        name = "enos"
        last_request_id = None
        knows_group_targets = False  # as backends/base.py declares for EnOS

        def __init__(self):
            self.sent = []

        def allocate(self, sn, *, device_data=None):
            self.sent.append(device_data)
            return dataclasses.replace(dev, allocate_status="allocated", region_id="eu2",
                                       org_id="o1")  # fmt: skip

    backend = IgnoresTarget()
    (res,) = allocate_devices(backend, [dev], region_id="cn5", org_id="o2")
    assert backend.sent == [{"regionId": "cn5", "orgId": "o2"}]
    assert "not to the requested cn5 / o2" in res.note
    assert res.to_dict()["requested"] == {"regionId": "cn5", "orgId": "o2"}
