"""How the API gateway may refuse a request, and what the EnOS client does in each shape.

EnOS documents the token-service codes (1001 duplicated, 1002 appKey not found, 1003 invalid
encryption, 1203 token expired, ...) but not how the gateway reports them on a DPS call. The
client renews its token once for an expired or invalid token whether it comes back as HTTP 401,
HTTP 403, or HTTP 200 with 1203 in ``code`` or ``status``; signs again with a fresh timestamp on
1001; keeps key and secret refusals as authentication errors; and retries a 429 whether it is an
HTTP status or a code inside an HTTP 200 envelope. Device calls are signed afresh on every retry.
"""

from __future__ import annotations

import json
from urllib.parse import parse_qsl

import pytest
from conftest import APP_KEY, APP_SECRET, enos_backend, make_group

from enosprov.backends.enos import EnosBackend
from enosprov.backends.enos_config import EnosConfig
from enosprov.backends.http import ApiClient
from enosprov.emulator.app import Behaviour, Faults, create_app
from enosprov.emulator.server import start_in_thread
from enosprov.errors import AuthError, BackendUnavailableError

DATA = {"max_capacity": 1, "phase": "single"}


def _client(url: str, **kw) -> EnosBackend:
    cfg = EnosConfig(api_url=url, org_id="o1", app_key=APP_KEY, app_secret=APP_SECRET,
                     dps_url=url, **kw)  # fmt: skip
    return EnosBackend(cfg, api=ApiClient(cfg, sleep=lambda s: None))


@pytest.mark.parametrize("shape", ["401", "403", "200-code", "200-status"])
def test_an_expired_token_is_renewed_once_in_every_shape(emulator, store_path, shape):
    be = enos_backend(emulator, store_path)
    group = make_group(be)
    (sn,) = be.create(group.group_id, device_data=DATA)
    lines: list[str] = []

    def restart() -> None:  # a gateway that forgot every token it issued
        emulator.holder["app"] = create_app(store_path, app_key=APP_KEY, app_secret=APP_SECRET,
                                            behaviour=Behaviour(token_refusal=shape),
                                            log=lines.append)  # fmt: skip

    restart()
    with _client(emulator.url) as enos:
        enos.get(sn)
        restart()
        lines.clear()
        assert enos.get(sn).sn == sn  # refused (1203), renewed, retried
    refused = [x for x in lines if "/dps-service/" in x and "code=1203" in x]
    assert len(refused) == 1, lines
    assert f"status={shape[:3]}" in refused[0]
    assert sum("/apim-token-service/" in x for x in lines) == 1
    be.close()


class Scripted:
    """A gateway answering DPS calls from a script of (HTTP status, JSON body), then OK; the
    token service always answers. Keeps the requests it got."""

    def __init__(self, script: list[tuple[int, dict]], ok: dict):
        self.script = list(script)
        self.ok = ok
        self.requests: list[dict] = []

    def __call__(self, environ, start_response):
        length = int(environ.get("CONTENT_LENGTH") or 0)
        body = environ["wsgi.input"].read(length) if length else b""
        path = environ["PATH_INFO"]
        if path.startswith("/apim-token-service/"):
            self.requests.append({"path": path})
            doc = {"status": 0, "msg": "SUCCESS", "business": "apim-token-service",
                   "data": {"accessToken": f"tok{len(self.requests)}", "expire": 7200}}  # fmt: skip
            status = 200
        else:
            self.requests.append({
                "path": path,
                "query": dict(parse_qsl(environ.get("QUERY_STRING", ""))),
                "headers": {k: v for k, v in environ.items() if k.startswith("HTTP_APIM")},
                "body": json.loads(body) if body else None,
            })  # fmt: skip
            status, doc = self.script.pop(0) if self.script else (200, self.ok)
        raw = json.dumps(doc).encode()
        start_response(f"{status} X", [("Content-Type", "application/json"),
                                       ("Content-Length", str(len(raw)))])  # fmt: skip
        return [raw]

    def calls(self) -> list[dict]:
        return [r for r in self.requests if not r["path"].startswith("/apim-token-service/")]

    def tokens(self) -> int:
        return sum(r["path"].startswith("/apim-token-service/") for r in self.requests)


OK_UPDATE = {"code": 0, "msg": "OK", "requestId": "r1", "data": "sn1"}


@pytest.fixture
def scripted():
    servers = []

    def start(script, ok=OK_UPDATE):
        app = Scripted(script, ok)
        server = start_in_thread(app)
        servers.append(server)
        return app, server.url

    yield start
    for s in servers:
        s.stop()


@pytest.mark.parametrize(
    "status, doc",
    [
        (403, {"message": "Forbidden"}),
        (401, {"code": 1203, "msg": "token expired"}),
        (200, {"code": 1203, "msg": "token expired"}),
        (200, {"status": 1203, "msg": "token expired"}),
    ],
    ids=["403 without a code", "401", "200 code", "200 status"],
)
def test_token_refusal_shapes_against_a_scripted_gateway(scripted, status, doc):
    app, url = scripted([(status, doc)])
    with _client(url) as enos:
        assert enos.update("sn1", desc="x") == "sn1"
    assert app.tokens() == 2  # the first, then one renewal
    first, second = app.calls()
    assert first["headers"]["HTTP_APIM_ACCESSTOKEN"] != second["headers"]["HTTP_APIM_ACCESSTOKEN"]


def test_a_token_refused_twice_is_an_auth_error(scripted):
    app, url = scripted([(200, {"code": 1203, "msg": "expired"})] * 3)
    with _client(url) as enos, pytest.raises(AuthError) as exc:
        enos.update("sn1", desc="x")
    assert "refused a new access token" in exc.value.message
    assert app.tokens() == 2 and len(app.calls()) == 2


@pytest.mark.parametrize(
    "status, doc, words",
    [
        (401, {"code": 1002, "msg": "appKey not found"}, "access key"),
        (200, {"status": 1003, "msg": "invalid encryption"}, "secret"),
        (401, {"code": 1004, "msg": "timestamp out of range"}, "clock"),
    ],
    ids=["1002", "1003 in 200", "1004"],
)
def test_key_and_secret_refusals_stay_auth_errors(scripted, status, doc, words):
    app, url = scripted([(status, doc)])
    with _client(url) as enos, pytest.raises(AuthError) as exc:
        enos.update("sn1", desc="x")
    assert words in (exc.value.hint or "") and exc.value.enos_code == doc.get(
        "code", doc.get("status")
    )
    assert len(app.calls()) == 1 and app.tokens() == 1  # no renewal, no retry
    assert APP_SECRET not in exc.value.message + (exc.value.hint or "")


def test_a_duplicated_signature_is_signed_again_later(scripted):
    app, url = scripted([(401, {"code": 1001, "msg": "duplicated"})])
    with _client(url) as enos:
        assert enos.update("sn1", desc="x") == "sn1"
    first, second = app.calls()
    assert first["body"] == second["body"]
    assert int(second["headers"]["HTTP_APIM_TIMESTAMP"]) > int(
        first["headers"]["HTTP_APIM_TIMESTAMP"]
    )
    assert second["headers"]["HTTP_APIM_SIGNATURE"] != first["headers"]["HTTP_APIM_SIGNATURE"]
    assert app.tokens() == 1


@pytest.mark.parametrize(
    "doc",
    [{"code": 429, "msg": "too many"}, {"status": 429, "msg": "too many"}],
    ids=["code", "status"],
)
def test_a_429_inside_an_http_200_is_retried(scripted, doc):
    app, url = scripted([(200, doc), (200, doc)])
    with _client(url) as enos:
        assert enos.update("sn1", desc="x") == "sn1"
    assert len(app.calls()) == 3


@pytest.mark.parametrize("shape", ["200-code", "200-status"])
def test_the_emulator_429_in_200_is_retried_without_side_effects(emulator, store_path, shape):
    be = enos_backend(emulator, store_path)
    group = make_group(be)
    lines: list[str] = []
    emulator.holder["app"] = create_app(
        store_path, app_key=APP_KEY, app_secret=APP_SECRET, log=lines.append,
        faults=Faults(fail_rate=0.4, seed=5), behaviour=Behaviour(limit_shape=shape),
    )  # fmt: skip
    with _client(emulator.url, retries=30) as enos:
        sns = [
            enos.create(group.group_id, device_data={"deviceSn": f"L-{i:03d}", **DATA})[0]
            for i in range(15)
        ]
    assert len(set(sns)) == 15
    assert any("fault=429" in x and "status=200" in x for x in lines)
    be.close()


def test_device_retries_are_signed_again_with_later_timestamps(scripted):
    ok = {"pk": "pk", "dk": "dk", "ds": "ds", "murl": "tcp://m", "hurl": "https://h"}
    app, url = scripted([(500, {"code": 99500}), (200, {"code": 429, "msg": "slow down"})], ok)
    stamps = iter([1_700_000_000_001, 1_700_000_000_002])
    with _client(url, retries=3) as enos:
        info = enos.bootstrap(
            group_id="g", device_sn="d", timestamp=1_700_000_000_000, sign="first",
            device_name={"defaultValue": "d"}, timezone="+08:00",
            resign=lambda: (ts := next(stamps), f"sig-{ts}"),
        )  # fmt: skip
    assert info.device_key == "dk"
    bodies = [r["body"] for r in app.calls()]
    assert [b["dpsSignTimestamp"] for b in bodies] == [
        1_700_000_000_000, 1_700_000_000_001, 1_700_000_000_002]  # fmt: skip
    assert len({b["dpsSign"] for b in bodies}) == 3


def test_an_unreachable_token_service_is_not_blamed_on_the_key(scripted):
    """1001 from the token service every time: other clients, not a bad key."""

    class Busy(Scripted):
        def __call__(self, environ, start_response):
            if environ["PATH_INFO"].startswith("/apim-token-service/"):
                raw = json.dumps({"status": 1001, "msg": "duplicated encryption"}).encode()
                start_response("200 OK", [("Content-Type", "application/json"),
                                          ("Content-Length", str(len(raw)))])  # fmt: skip
                return [raw]
            return super().__call__(environ, start_response)

    server = start_in_thread(Busy([], OK_UPDATE))
    try:
        with _client(server.url) as enos, pytest.raises(BackendUnavailableError) as exc:
            enos.update("sn1", desc="x")
        assert "1001" in exc.value.message and "access key" not in (exc.value.hint or "")
    finally:
        server.stop()


def test_the_device_signs_each_retry_with_a_later_timestamp():
    """device.bootstrap_device hands the backend a resigner: each call gives a strictly later
    timestamp than the one before (even within one millisecond) and a signature over it."""
    from enosprov.burn.credential import Credential
    from enosprov.device import _resigner
    from enosprov.domain import signing

    cred = Credential(profile="bootstrap", device_sn="SN-0001", group_id="g",
                      group_secret="s3cret", dps_url="http://d", device_name="m",
                      timezone="+08:00")  # fmt: skip
    first = 4_102_444_800_000  # in the future: later calls must still go up from it
    resign = _resigner(cred, "SN-0001", first)
    stamps = [resign() for _ in range(5)]
    times = [t for t, _ in stamps]
    assert times == sorted(set(times)) and times[0] == first + 1
    assert all(signing.verify(signing.DEFAULT_SCHEME, "SN-0001", t, "s3cret", s) for t, s in stamps)
