"""`enosprov serve`: the EnOS API contract over real HTTP (requests -> waitress on 127.0.0.1)."""

from __future__ import annotations

import dataclasses
import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections import Counter

import pytest
import requests
from conftest import make_group, open_store

from enosprov.backends import apim
from enosprov.backends.local import LocalBackend
from enosprov.domain import signing
from enosprov.emulator import Faults, create_app, start_in_thread

KEY, SECRET = "emu-key", "emu-secret-3d9c1f"
DPS = "/dps-service/v2.5/pvs/device"
METER = {"max_capacity": 40, "phase": "single"}


def now_ms() -> int:
    return int(time.time() * 1000)


class Emu:
    """One running emulator over its own store, and a client that signs like the docs say."""

    def __init__(self, store_path, **kw):
        with LocalBackend(store_path) as be:
            self.group = make_group(be)
        self.store_path = store_path
        self.lines: list[str] = []
        self.app = create_app(
            store_path, app_key=KEY, app_secret=SECRET, log=self.lines.append, **kw
        )
        self.server = start_in_thread(self.app)
        self.url = self.server.url
        self.http = requests.Session()
        self._ts = 0
        self.tok: str | None = None

    def ts(self) -> int:  # strictly increasing: no two signed requests share a millisecond
        self._ts = max(now_ms(), self._ts + 1)
        return self._ts

    # -- token service
    def token_request(self, path=apim.TOKEN_GET_PATH, *, key=KEY, secret=SECRET, ts=None, **extra):
        ts = self.ts() if ts is None else ts
        body = {
            "appKey": key,
            "encryption": apim.token_encryption(key, ts, secret),
            "timestamp": ts,
        }
        return self.http.post(self.url + path, json={**body, **extra})

    def login(self) -> str:
        self.tok = self.token_request().json()["data"]["accessToken"]
        return self.tok

    # -- application API
    def call(self, action, body=None, *, method=None, org="o1", query=None, raw=None,
             signed_raw=None, token=None, ts=None, secret=SECRET, headers=None):  # fmt: skip
        method = method or ("GET" if action == "get" else "POST")
        params = {"action": action, **({"orgId": org} if org is not None else {}), **(query or {})}
        if raw is None:
            raw = "" if body is None else json.dumps(body, separators=(",", ":"))
        token = token or self.tok or self.login()
        ts = self.ts() if ts is None else ts
        sig = apim.request_signature(
            token, params, raw if signed_raw is None else signed_raw, ts, secret
        )
        h = {apim.HEADER_TOKEN: token, apim.HEADER_TIMESTAMP: str(ts),
             apim.HEADER_SIGNATURE: sig, "Content-Type": apim.CONTENT_TYPE}  # fmt: skip
        if headers is not None:
            h = headers
        return self.http.request(
            method, self.url + DPS, params=params, data=raw.encode(), headers=h
        )

    def ok(self, action, body=None, **kw):
        r = self.call(action, body, **kw)
        doc = r.json()
        assert r.status_code == 200 and doc["code"] == 0, (r.status_code, doc)
        return doc

    def code(self, action, body=None, **kw) -> int:
        return self.call(action, body, **kw).json()["code"]

    def create(self, device_sn, **data):
        body = {
            "groupId": "meters-eu",
            "count": 1,
            "deviceData": {"deviceSn": device_sn, **METER, **data},
        }
        return self.ok("create", body)["data"][0]

    # -- device API
    def device(self, path, body):
        return self.http.post(self.url + path, json=body)

    def bootstrap_body(self, device_sn, ts=None, secret=None):
        ts = now_ms() if ts is None else ts
        sign = signing.sign_sn_ts_secret(device_sn, ts, secret or self.group.group_secret)
        return {"deviceSn": device_sn, "groupId": "meters-eu", "dpsSignMethod": "sha256",
                "dpsSignTimestamp": ts, "dpsSign": sign,
                "deviceName": {"defaultValue": "Meter"}, "timezone": "+08:00"}  # fmt: skip

    def conn_body(self, sn, secret=None):
        ts = now_ms()
        sign = signing.sign_sn_ts_secret(sn, ts, secret or self.group.group_secret)
        return {"self": {"sn": sn, "timestamp": ts, "sign": sign}, "signMethod": "sha256"}

    def devices(self) -> int:
        with LocalBackend(self.store_path) as be:
            return sum(be.device_counts().values())

    def stop(self):
        self.http.close()
        self.server.stop()


@pytest.fixture
def start(store_path):
    running: list[Emu] = []

    def start(**kw) -> Emu:
        emu = Emu(store_path, **kw)
        running.append(emu)
        return emu

    yield start
    for emu in running:
        emu.stop()


@pytest.fixture
def emu(start) -> Emu:
    return start()


# -- token service --------------------------------------------------------------------------


def test_token_get_refresh_and_every_error_code(emu):
    r = emu.token_request()
    doc = r.json()
    assert r.status_code == 200
    assert (
        doc["status"] == 0 and doc["msg"] == "SUCCESS" and doc["business"] == "apim-token-service"
    )
    token = doc["data"]["accessToken"]
    assert re.fullmatch(r"[0-9a-f]{32}", token) and doc["data"]["expire"] == 7200
    assert r.headers["x-request-id"] == doc["requestId"]
    again = emu.token_request().json()["data"]
    assert again["accessToken"] == token and 7190 < again["expire"] <= 7200  # same token
    assert emu.token_request(ts=str(emu.ts())).json()["status"] == 0  # Go SDK: text timestamp

    def status(**kw):
        return emu.token_request(**kw).json()["status"]

    assert status(secret="wrong") == 1003
    assert status(key="nobody") == 1002
    stale = now_ms() - 11 * 60 * 1000
    assert status(ts=stale) == 1004
    assert status(ts=now_ms() + 11 * 60 * 1000) == 1004
    ts = emu.ts()
    assert status(ts=ts) == 0
    assert status(ts=ts) == 1001  # the same encryption again: replay
    assert (
        emu.http.post(emu.url + apim.TOKEN_GET_PATH, json={"appKey": KEY}).json()["status"] == 1202
    )
    assert emu.http.post(emu.url + apim.TOKEN_GET_PATH, data=b"{not json").json()["status"] == 1004
    assert emu.http.post(emu.url + apim.TOKEN_GET_PATH, data=b"").json()["status"] == 1202

    refreshed = emu.token_request(apim.TOKEN_REFRESH_PATH, accessToken=token).json()
    assert refreshed["status"] == 0
    new = refreshed["data"]["accessToken"]
    assert new != token and refreshed["data"]["expire"] == 7200
    assert status(path=apim.TOKEN_REFRESH_PATH, accessToken="f" * 32) == 1204
    assert status(path=apim.TOKEN_REFRESH_PATH) == 1202
    # both the old and the refreshed token are accepted
    assert emu.call("get", query={"sn": "x"}, token=token).json()["code"] == 35601
    assert emu.call("get", query={"sn": "x"}, token=new).json()["code"] == 35601


# -- application API ------------------------------------------------------------------------


def test_every_action_over_http(emu):
    sn = emu.create("SN-000001", site="Hall 1")
    spare = {"groupId": "meters-eu", "count": 2, "desc": "spare", "deviceData": METER}
    blank = emu.ok("create", spare)["data"]
    assert len(blank) == 2

    doc = emu.ok("get", query={"sn": sn})
    dev = doc["data"]
    assert dev["sn"] == sn and dev["deviceSn"] == "SN-000001" and dev["groupId"] == "meters-eu"
    assert dev["deviceData"]["site"] == "Hall 1" and dev["allocateStatus"] == "init"
    assert "deviceSecret" not in dev and set(doc) == {"code", "msg", "requestId", "data"}

    found = emu.ok(
        "search",
        {"expression": "groupId = 'meters-eu' and deviceData.deviceSn in ('SN-000001', 'x')",
         "pagination": {"pageNo": 1, "pageSize": 10, "sorters": [{"field": "sn"}]}},
    )  # fmt: skip
    assert [d["sn"] for d in found["data"]] == [sn]
    assert found["pagination"] == {"pageNo": 1, "pageSize": 10, "totalSize": 1}
    page = emu.ok("search", {"expression": "groupId = 'meters-eu'",
                             "pagination": {"pageNo": 2, "pageSize": 2}})  # fmt: skip
    assert page["pagination"] == {"pageNo": 2, "pageSize": 2, "totalSize": 3}
    assert len(page["data"]) == 1
    assert emu.ok("search", {})["pagination"]["totalSize"] == 3  # no expression: everything

    assert emu.ok("update", {"sn": sn, "desc": "east wall"})["data"] == sn
    assert emu.ok("get", query={"sn": sn})["data"]["desc"] == "east wall"

    allocated = emu.ok("allocate", {"sn": sn})["data"]
    assert allocated["allocateStatus"] == "allocated" and allocated["regionId"] == "eu2"
    assert allocated["orgId"] == "o1" and allocated["deviceKey"]
    assert "deviceSecret" not in allocated

    new = emu.ok("replace", {"sn": sn, "replacementSn": blank[0]})["data"]
    assert new["sn"] == blank[0] and new["allocateStatus"] == "allocated"
    assert new["desc"] == "east wall" and new["deviceData"]["site"] == "Hall 1"
    assert emu.code("get", query={"sn": sn}) == 35601  # the original is gone

    assert emu.ok("resetAllocationStatus", {"groupId": "meters-eu", "sns": [blank[0]]})["data"] == [
        blank[0]
    ]
    reset = emu.ok("get", query={"sn": blank[0]})["data"]
    assert reset["allocateStatus"] == "init" and reset["reprovisioning"] is True

    gone = emu.ok("delete", {"groupId": "meters-eu", "snList": [blank[1], "absent"]})["data"]
    assert gone == [blank[1], "absent"]  # deleted or absent: idempotent
    assert emu.devices() == 1


def test_business_errors_carry_the_enos_codes(emu):
    sn = emu.create("SN-000001")
    assert emu.code("get", query={"sn": "nope"}) == 35601
    assert emu.code("get") == 35400
    assert emu.code("create", {"groupId": "nope", "count": 1}) == 35404
    assert emu.code("create", {"groupId": "meters-eu", "count": 1,
                               "deviceData": {"deviceSn": "SN-000001", **METER}}) == 35601  # fmt: skip
    assert emu.code("create", {"groupId": "meters-eu"}) == 99400  # count missing
    assert emu.code("create", {"count": 1}) == 99400  # groupId missing
    assert emu.code("create", {"groupId": "meters-eu", "count": "1"}) == 99400
    assert emu.code("create", raw="{not json") == 99400
    assert emu.code("create", raw="[1, 2]") == 99400
    assert emu.code("allocate", {}) == 35400
    assert emu.code("delete", {"groupId": "meters-eu", "snList": "x"}) == 99400
    assert emu.code("replace", {"sn": sn, "replacementSn": "nope"}) == 35404
    assert emu.code("search", {"expression": "sn = 'a' or sn = 'b'"}) == 99400
    assert emu.code("search", {"expression": "groupId ="}) == 99400
    assert emu.code("search", {"pagination": {"pageSize": 5000}}) == 99400
    assert emu.code("search", {"pagination": {"sorters": [{"field": "colour"}]}}) == 99400
    assert emu.code("frobnicate", {}) == 99400
    assert emu.code("create", {"groupId": "meters-eu", "count": 1}, org=None) == 35400
    wrong = emu.call("get", query={"sn": sn}, method="POST")
    assert wrong.status_code == 405 and wrong.json()["code"] == 99400
    r = emu.http.get(emu.url + "/no/such/path")
    assert r.status_code == 404 and r.json()["code"] == 99404
    r = emu.call("get", query={"sn": sn})
    assert r.status_code == 200 and r.headers["x-request-id"] == r.json()["requestId"]
    assert r.headers["Content-Type"].startswith("application/json")


def test_an_unexpected_failure_is_500_without_a_traceback(emu, monkeypatch, caplog):
    from enosprov.emulator import actions

    def boom(be, query, body, behaviour):
        raise RuntimeError("disk on fire at /secret/path")

    monkeypatch.setitem(actions.ACTIONS, "get", ("GET", boom))
    r = emu.call("get", query={"sn": "x"})
    assert r.status_code == 500 and r.json()["code"] == 99500
    assert "fire" not in r.text and "Traceback" not in r.text
    assert "disk on fire" in caplog.text  # logged on the server side
    assert "status=500 code=99500" in emu.lines[-1]


def test_configured_org_refuses_other_orgs(start):
    emu = start(org_id="o1")
    assert emu.code("get", query={"sn": "x"}) == 35601
    assert emu.code("get", query={"sn": "x"}, org="o2") == 35603


def test_gateway_rejects_with_401_and_the_apim_code(start):
    emu = start(token_ttl=1)
    token = emu.login()

    def rejected(**kw) -> int:
        r = emu.call("get", query={"sn": "x"}, **kw)
        assert r.status_code == 401, r.text
        doc = r.json()
        assert doc["data"] is None and doc["requestId"] == r.headers["x-request-id"]
        return doc["code"]

    assert rejected(headers={}) == 1202
    assert (
        rejected(headers={apim.HEADER_TOKEN: token, apim.HEADER_TIMESTAMP: str(now_ms())}) == 1202
    )
    assert rejected(token="0" * 32) == 1203
    assert rejected(secret="wrong") == 1003
    assert rejected(ts=now_ms() - 11 * 60 * 1000) == 1004
    assert rejected(headers={apim.HEADER_TOKEN: token, apim.HEADER_TIMESTAMP: "soon",
                             apim.HEADER_SIGNATURE: "x"}) == 1004  # fmt: skip
    ts = emu.ts()
    assert emu.call("get", query={"sn": "x"}, ts=ts).status_code == 200
    assert rejected(ts=ts) == 1001  # the same signed request again: replay
    time.sleep(1.05)
    assert rejected(token=token) == 1203  # expired
    assert emu.token_request().json()["data"]["accessToken"] != token


def test_the_signature_covers_the_exact_bytes(emu):
    body = {"groupId": "meters-eu", "count": 1, "deviceData": {"deviceSn": "SN-000001", **METER}}
    compact = json.dumps(body, separators=(",", ":"))
    spaced = json.dumps(body, indent=2)
    r = emu.call("create", raw=spaced, signed_raw=compact)  # same JSON, other bytes
    assert (r.status_code, r.json()["code"]) == (401, 1003)
    r = emu.call("get", query={"sn": "x", "extra": "1"}, signed_raw="x")
    assert r.json()["code"] == 1003
    assert emu.devices() == 0
    assert emu.ok("create", raw=spaced)["data"]  # signed as sent: accepted


def test_concurrent_calls_use_one_store_connection_per_thread(emu):
    emu.login()
    sns, errors, lock = [], [], threading.Lock()

    def one(s, n, i):
        raw = json.dumps({"groupId": "meters-eu", "count": 1,
                          "deviceData": {"deviceSn": f"T{n}-{i:04d}", **METER}})  # fmt: skip
        params = {"action": "create", "orgId": "o1"}
        with lock:
            ts = emu.ts()
        sig = apim.request_signature(emu.tok, params, raw, ts, SECRET)
        h = {apim.HEADER_TOKEN: emu.tok, apim.HEADER_TIMESTAMP: str(ts), apim.HEADER_SIGNATURE: sig}
        doc = s.post(emu.url + DPS, params=params, data=raw.encode(), headers=h).json()
        with lock:
            (sns if doc["code"] == 0 else errors).append(doc)

    def worker(n):
        with requests.Session() as s:
            for i in range(8):
                one(s, n, i)

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == [] and len(sns) == 48
    assert emu.devices() == 48


# -- device API -----------------------------------------------------------------------------


def test_device_bootstrap_and_get_conn(emu):
    r = emu.device("/dev/bootstrap", emu.bootstrap_body("SN-000777"))
    doc = r.json()
    assert r.status_code == 200 and doc["code"] == 0 and doc["msg"] == "OK"
    assert r.headers["x-request-id"] == doc["requestId"]
    info = doc["data"]
    assert set(info) == {"sn", "pk", "dk", "ds", "murl", "hurl"}
    assert info["pk"] == "pk1" and info["dk"] and info["ds"]
    assert info["murl"].startswith("tcp://") and "eu2" in info["murl"]
    conn = emu.device("/dev/get/conn", emu.conn_body(info["sn"])).json()
    assert conn["code"] == 0 and conn["data"] == info
    dev = emu.ok("get", query={"sn": info["sn"]})["data"]
    assert dev["connectStatus"] == "connected" and dev["deviceKey"] == info["dk"]

    def code(path, body):
        return emu.device(path, body).json()["code"]

    assert code("/dev/bootstrap", emu.bootstrap_body("SN-000778", secret="wrong")) == 35601
    assert code("/dev/get/conn", emu.conn_body(info["sn"], secret="wrong")) == 35601
    stale = emu.bootstrap_body("SN-000778", ts=now_ms() - 60 * 60 * 1000)
    assert code("/dev/bootstrap", stale) == 35601
    assert code("/dev/bootstrap", {"groupId": "meters-eu"}) == 99400
    assert code("/dev/get/conn", {"self": {"sn": "nope", "timestamp": 1, "sign": "x"}}) == 35601
    registered = emu.create("SN-000779")
    assert code("/dev/get/conn", emu.conn_body(registered)) == 10000  # not allocated
    assert emu.http.post(emu.url + "/dev/bootstrap", data=b"nope").json()["code"] == 99400
    assert emu.http.get(emu.url + "/dev/bootstrap").status_code == 405


def test_a_device_signature_is_used_once(emu):
    body = emu.bootstrap_body("SN-000801")
    first = emu.device("/dev/bootstrap", body).json()
    assert first["code"] == 0 and first["data"]["ds"]
    used = "Verify not pass: signature already used"
    again = emu.device("/dev/bootstrap", body)
    doc = again.json()
    assert (again.status_code, doc["code"], doc["msg"], doc["data"]) == (200, 35601, used, None)
    assert first["data"]["ds"] not in again.text
    upper = {**body, "dpsSign": body["dpsSign"].upper()}  # the same signature in other letters
    assert emu.device("/dev/bootstrap", upper).json()["msg"] == used
    fresh = emu.bootstrap_body("SN-000801", ts=body["dpsSignTimestamp"] + 1)
    assert emu.device("/dev/bootstrap", fresh).json()["data"] == first["data"]

    sn = first["data"]["sn"]
    conn = emu.conn_body(sn)
    assert emu.device("/dev/get/conn", conn).json()["data"] == first["data"]
    assert emu.device("/dev/get/conn", conn).json()["msg"] == used

    # a refused call does not use its signature: the same body is refused for its own reason
    registered = emu.create("SN-000802")
    not_allocated = emu.conn_body(registered)
    assert emu.device("/dev/get/conn", not_allocated).json()["code"] == 10000
    assert emu.device("/dev/get/conn", not_allocated).json()["code"] == 10000
    wrong = emu.bootstrap_body("SN-000803", secret="wrong")
    for _ in range(2):
        doc = emu.device("/dev/bootstrap", wrong).json()
        assert doc["code"] == 35601 and "does not match" in doc["msg"]
    assert all("signature" not in line.lower() for line in emu.lines)


def test_seen_recently_forgets_after_the_window_and_on_discard():
    from enosprov.emulator.auth import SeenRecently

    now = [1000.0]
    seen = SeenRecently(lambda: now[0], window_ms=60_000)
    ts = 1_000_000
    assert seen.add("a", ts) and not seen.add("a", ts)
    assert seen.add("b", ts, window_ms=600_000)  # a longer window for this one
    seen.discard("a")
    assert seen.add("a", ts) and not seen.add("a", ts)  # used again after a discard
    now[0] = ts / 1000 + 62  # past a's window, within b's
    assert seen.add("c", ts + 61_000) and len(seen) == 2  # a forgotten, b and c kept
    assert not seen.add("b", ts) and seen.add("a", ts)


def test_identical_concurrent_bootstraps_return_the_secret_once(emu):
    body = emu.bootstrap_body("SN-000810")
    barrier = threading.Barrier(8)
    docs = []

    def post():
        with requests.Session() as s:
            barrier.wait()
            docs.append(s.post(emu.url + "/dev/bootstrap", json=body, timeout=10).json())

    threads = [threading.Thread(target=post) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(d["code"] for d in docs) == [0] + [35601] * 7
    assert sum(d["data"] is not None for d in docs) == 1


def test_device_retries_after_a_lost_answer_are_accepted(start, tmp_path):
    """A bootstrap carried out whose answer is lost is retried by the client with a new
    signature: accepted (the used one would not be)."""
    from enosprov.backends.enos import EnosBackend
    from enosprov.backends.enos_config import EnosConfig
    from enosprov.burn.credential import Credential
    from enosprov.device import bootstrap_device, device_conninfo

    emu = start(faults=Faults(drop_rate=0.5, seed=3))
    cfg = EnosConfig(api_url=emu.url, org_id="o1", app_key=KEY, app_secret=SECRET,
                     dps_url=emu.url, retries=12)  # fmt: skip
    with EnosBackend(cfg) as enos:
        for i in range(8):
            cred = Credential("bootstrap", f"SN-00082{i}", group_id="meters-eu",
                              group_secret=emu.group.group_secret, dps_url=emu.url,
                              device_name="Meter", timezone="+08:00")  # fmt: skip
            session = bootstrap_device(enos, cred)
            assert session.info.device_secret
            again = device_conninfo(enos, dataclasses.replace(cred, sn=session.info.sn))
            assert again.info == session.info
    lost = [x for x in emu.lines if "/dev/" in x and "fault=drop-after" in x]
    assert lost  # some calls were carried out and their answer lost, then retried
    assert not any("code=35601" in x for x in emu.lines)


# -- faults ---------------------------------------------------------------------------------


def test_fail_rate_answers_429_or_500_and_does_nothing(start):
    emu = start(faults=Faults(fail_rate=1.0, seed=11))
    assert emu.token_request().json()["status"] == 0  # the token service is never faulted
    seen = Counter()
    for i in range(16):
        r = emu.call("create", {"groupId": "meters-eu", "count": 1,
                                "deviceData": {"deviceSn": f"F-{i:04d}", **METER}})  # fmt: skip
        seen[r.status_code] += 1
        if r.status_code == 429:
            assert r.headers["Retry-After"] == "0" and r.json()["code"] == 429
        else:
            assert r.json()["code"] == 99500
    r = emu.device("/dev/bootstrap", emu.bootstrap_body("SN-000001"))
    seen[r.status_code] += 1
    assert set(seen) == {429, 500}
    assert emu.devices() == 0


def test_drop_rate_cuts_connections_before_or_after_the_call(start):
    emu = start(faults=Faults(drop_rate=1.0, seed=5))
    assert emu.token_request().json()["status"] == 0
    errors = Counter()
    for i in range(24):
        with pytest.raises(
            (requests.ConnectionError, requests.exceptions.ChunkedEncodingError)
        ) as exc:
            emu.call("create", {"groupId": "meters-eu", "count": 1,
                                "deviceData": {"deviceSn": f"D-{i:04d}", **METER}})  # fmt: skip
        errors[type(exc.value).__name__] += 1
    assert set(errors) == {"ConnectionError", "ChunkedEncodingError"}
    cut = [line for line in emu.lines if "fault=" in line]
    assert len(cut) == 24 and all("status=- " in line for line in cut)
    faults = Counter(re.search(r"fault=(drop-\w+)", line)[1] for line in cut)
    assert faults["drop-before"] > 0 and faults["drop-after"] > 0
    assert emu.devices() == faults["drop-after"]  # carried out, response lost


def test_same_seed_same_faults(start, tmp_path):
    def sequence(emu):
        out = []
        for _ in range(12):
            try:
                out.append(emu.call("get", query={"sn": "x"}).status_code)
            except requests.RequestException as exc:
                out.append(type(exc).__name__)
        return out

    one = start(faults=Faults(fail_rate=0.3, drop_rate=0.3, seed=42))
    first = sequence(one)
    one.stop()
    two = Emu(tmp_path / "other.db", faults=Faults(fail_rate=0.3, drop_rate=0.3, seed=42))
    try:
        assert sequence(two) == first
    finally:
        two.stop()
    assert len(set(first)) > 1


def test_latency_is_added_to_dps_calls(start):
    emu = start(faults=Faults(latency_ms=150))
    emu.login()
    t = time.perf_counter()
    assert emu.call("get", query={"sn": "x"}).json()["code"] == 35601
    assert time.perf_counter() - t >= 0.15


# -- logging, server, CLI -------------------------------------------------------------------


def test_one_log_line_per_request_without_secrets(emu):
    info = emu.device("/dev/bootstrap", emu.bootstrap_body("SN-000001")).json()["data"]
    sn = emu.create("SN-000002")
    emu.ok("get", query={"sn": sn})
    emu.call("get", query={"sn": sn}, secret="wrong")
    text = "\n".join(emu.lines)
    assert len(emu.lines) == 5  # bootstrap, token, create, get, rejected get
    for line in emu.lines:
        assert re.fullmatch(
            r"(GET|POST) /\S+( action=\w+)? status=\d+ code=\d+ ms=[\d.]+ requestId=[0-9a-f-]{36}",
            line,
        ), line
    assert "action=create status=200 code=0" in text and "status=401 code=1003" in text
    for secret in (SECRET, emu.tok, emu.group.group_secret, info["ds"], "apim-signature"):
        assert secret not in text
    signatures = [apim.request_signature(emu.tok, {"action": "get", "orgId": "o1", "sn": sn},
                                         "", emu._ts, SECRET)]  # fmt: skip
    assert not any(s in text for s in signatures)


def test_stop_closes_the_port(store_path):
    app = create_app(store_path, app_key=KEY, app_secret=SECRET, log=lambda line: None)
    server = start_in_thread(app)
    assert requests.get(server.url + "/x").status_code == 404
    server.stop()
    assert not server.thread.is_alive()
    with pytest.raises(requests.ConnectionError):
        requests.get(server.url + "/x", timeout=2)


def test_serve_command_refuses_to_start_without_key_and_secret(cli, monkeypatch):
    monkeypatch.delenv("ENOSPROV_SERVE_APP_KEY", raising=False)
    monkeypatch.delenv("ENOSPROV_SERVE_APP_SECRET", raising=False)
    result = cli("serve", "--app-key", "k", "--port", "0")
    assert result.exit_code == 1
    assert "app key and an app secret" in result.stderr and "Traceback" not in result.stderr


def test_serve_command_as_a_process(store_location):
    """`serve` as a process, on an SQLite store and on the store in PostgreSQL."""
    with open_store(store_location) as be:
        make_group(be)
    env = dict(os.environ, ENOSPROV_SERVE_APP_KEY=KEY, ENOSPROV_SERVE_APP_SECRET=SECRET)
    proc = subprocess.Popen(
        [sys.executable, "-m", "enosprov", "--store", str(store_location), "serve", "--port", "0",
         "--json", "--latency-ms", "1"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
    )  # fmt: skip
    try:
        line = proc.stdout.readline()
        assert line, proc.communicate(timeout=10)
        data = json.loads(line)["data"]
        url = data["url"]
        assert re.fullmatch(r"http://127\.0\.0\.1:\d+", url) and data["dps"] == url
        assert data["groups"] == [{"groupId": "meters-eu", "name": "Meters EU"}]
        ts = now_ms()
        body = {
            "appKey": KEY,
            "encryption": apim.token_encryption(KEY, ts, SECRET),
            "timestamp": ts,
        }
        doc = requests.post(url + apim.TOKEN_GET_PATH, json=body, timeout=5).json()
        assert doc["status"] == 0 and doc["data"]["accessToken"]
    finally:
        if sys.platform == "win32":
            proc.terminate()
        else:
            proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=10)
    if sys.platform != "win32":
        assert proc.returncode == 0, err
    shown = store_location if isinstance(store_location, str) else str(store_location.resolve())
    assert url in err and shown in err and "meters-eu" in err
    assert "16 threads, 1000 connections" in err and "bodies up to 1048576 bytes" in err
    assert data["limits"]["connectionLimit"] == 1000 and data["limits"]["maxBodyBytes"] == 1048576
    assert "token/get status=200 code=0" in err
    assert SECRET not in err + out and doc["data"]["accessToken"] not in err


# -- the strict contract ----------------------------------------------------------------------


@pytest.mark.parametrize(
    "action, body, query, named",
    [
        ("allocate", {"sn": "x", "regionId": "cn5"}, None, "regionId"),
        ("resetAllocationStatus", {"groupId": "meters-eu", "sns": ["x"], "orgId": "o2"}, None,
         "orgId"),
        ("create", {"groupId": "meters-eu", "count": "1"}, None, "count"),
        ("create", {"groupId": "meters-eu", "count": 1, "batchTag": "B-1"}, None, "batchTag"),
        ("create", {"groupId": "meters-eu", "count": 1, "batchTag": {"defaultValue": "B",
                                                                      "i18nValue": {"fr": "b"}}},
         None, "batchTag.i18nValue.fr"),
        ("update", {"sn": "x", "deviceData": {"site": None}}, None, "deviceData.site"),
        ("update", {"sn": "x", "deviceData": {"site": True}}, None, "deviceData.site"),
        ("update", {"sn": "x", "deviceData": {"deviceName": "plain"}}, None,
         "deviceData.deviceName"),
        ("update", {"sn": "x", "deviceData": {"privateModel": "true"}}, None,
         "deviceData.privateModel"),
        ("update", {"sn": "x", "deviceData": {"a b": 1}}, None, "deviceData.a b"),
        ("search", {"pagination": {"pageNo": 1, "pageSize": 5, "limit": 3}}, None,
         "pagination.limit"),
        ("search", {"pagination": {"sorters": [{"field": "deviceSn", "order": "ASC"}]}}, None,
         "pagination.sorters[0].field"),
        ("search", {"pagination": {"sorters": [{"field": "sn", "order": "up"}]}}, None,
         "pagination.sorters[0].order"),
        ("replace", {"sn": "x", "replacementSn": "y"}, {"force": "1"}, "force"),
        ("get", None, {"sn": "x", "groupId": "g"}, "groupId"),
    ],
)  # fmt: skip
def test_the_emulator_refuses_what_the_docs_do_not_have(emu, action, body, query, named):
    before = emu.devices()
    doc = emu.call(action, body, query=query).json()
    assert doc["code"] == 99400, doc
    assert f"Invalid Argument {named}:" in doc["msg"], doc["msg"]
    assert emu.devices() == before


@pytest.mark.parametrize(
    "change, named",
    [
        ({"dpsSignTimestamp": "1700000000000"}, "dpsSignTimestamp"),
        ({"deviceName": "Meter"}, "deviceName"),
        ({"regionId": "cn5"}, "regionId"),
        ({"deviceName": None}, "deviceName:deviceName is missing"),
        ({"timezone": None}, "timezone:timezone is missing"),
    ],
)
def test_the_emulator_bootstrap_takes_the_documented_body_only(emu, change, named):
    body = {**emu.bootstrap_body("SN-000901"), **change}
    body = {k: v for k, v in body.items() if v is not None}
    doc = emu.device("/dev/bootstrap", body).json()
    assert doc["code"] == 99400 and named in doc["msg"], doc
    assert emu.devices() == 0


def test_the_emulator_allocates_to_device_data_region_and_org(emu):
    sn = emu.create("SN-000950")
    dev = emu.ok("allocate", {"sn": sn, "deviceData": {"regionId": "cn5", "orgId": "o2"}})["data"]
    assert (dev["regionId"], dev["orgId"]) == ("cn5", "o2")
    assert dev["deviceData"]["regionId"] == "cn5"


def test_the_emulator_page_size_option_serves_short_pages(start):
    from enosprov.emulator import Behaviour

    emu = start(behaviour=Behaviour(page_size=3))
    for i in range(7):
        emu.create(f"SN-00096{i}")
    page = emu.ok("search", {"expression": "groupId = 'meters-eu'",
                             "pagination": {"pageNo": 1, "pageSize": 50}})  # fmt: skip
    assert len(page["data"]) == 3 and page["pagination"]["totalSize"] == 7
    assert page["pagination"]["pageSize"] == 3
    last = emu.ok("search", {"pagination": {"pageNo": 3, "pageSize": 50}})
    assert len(last["data"]) == 1
