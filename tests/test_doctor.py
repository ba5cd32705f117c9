"""`enosprov doctor` (issue 19, read-only checks) against the emulator configured to differ
from the defaults: each failure found, with its remedy; nothing changed in EnOS."""

from __future__ import annotations

import json

import pytest
from conftest import APP_KEY, APP_SECRET, enos_backend, make_group, query_store

from enosprov import profiles
from enosprov.profiles import SecretRef


def doctor(*args: str):
    from typer.testing import CliRunner

    from enosprov.cli import app

    result = CliRunner().invoke(app, ["doctor", "--profile", "prod", "--json", *args])
    data = json.loads(result.stdout)["data"] if result.stdout.startswith('{"data"') else None
    return result, data


def results(data) -> dict[str, str]:
    return {c["check"]: c["result"] for c in data["checks"]}


@pytest.fixture
def tenant(emulator, store_path, tmp_path, monkeypatch):
    be = enos_backend(emulator, store_path)
    group = make_group(be)
    monkeypatch.setenv("ENOSPROV_CONFIG", str(tmp_path / "config.toml"))
    monkeypatch.setenv("ENOS_APP_SECRET", APP_SECRET)
    monkeypatch.setenv("METERS_SECRET", group.group_secret)
    profiles.create_profile("prod", api_url=emulator.url, org_id="o1", access_key=APP_KEY,
                            secret=SecretRef.from_env("ENOS_APP_SECRET"),
                            dps_url=emulator.url)  # fmt: skip
    profiles.add_group("prod", "meters-eu", secret=SecretRef.from_env("METERS_SECRET"))
    yield be
    be.close()


def _use(emulator, store_path, **kw):
    from enosprov.emulator.app import create_app

    emulator.holder["app"] = create_app(store_path, app_key=APP_KEY, app_secret=APP_SECRET, **kw)


def test_a_good_profile_passes_every_check_and_changes_nothing(tenant, store_path):
    before = query_store(store_path, "SELECT count(*) FROM devices")
    result, data = doctor()
    assert result.exit_code == 0, result.output
    assert results(data) == {
        "gateway": "pass", "clock": "pass", "token": "pass", "DPS access: meters-eu": "pass",
        "latency": "pass", "device endpoint": "pass",
    }  # fmt: skip
    assert data["ok"] is True
    assert query_store(store_path, "SELECT count(*) FROM devices") == before
    assert APP_SECRET not in result.stdout  # --json is for support tickets: no secret


def test_a_wrong_secret_fails_the_token_check(tenant, monkeypatch):
    monkeypatch.setenv("ENOS_APP_SECRET", "not-the-secret")
    result, data = doctor()
    assert result.exit_code == 8
    token = next(c for c in data["checks"] if c["check"] == "token")
    assert token["result"] == "fail" and "secret" in token["remedy"]
    assert "not-the-secret" not in result.stdout


def test_a_service_account_without_dps_role_is_named(tenant, emulator, store_path):
    _use(emulator, store_path, org_id="another-ou")  # DPS answers 35603 to this account
    result, data = doctor()
    assert result.exit_code == 8
    access = next(c for c in data["checks"] if c["check"] == "DPS access: meters-eu")
    assert (access["result"], access["enosCode"]) == ("fail", 35603)
    assert "DPS role" in access["remedy"] and access["requestId"]


def test_a_skewed_clock_is_measured(tenant, emulator, store_path):
    from enosprov.emulator.app import Behaviour

    _use(emulator, store_path, behaviour=Behaviour(date_skew_s=-900))
    result, data = doctor()
    assert result.exit_code == 8
    clock = next(c for c in data["checks"] if c["check"] == "clock")
    assert clock["result"] == "fail" and "900 s ahead of the gateway" in clock["detail"]
    assert "NTP" in clock["remedy"]
    _use(emulator, store_path, behaviour=Behaviour(date_skew_s=120))
    result, data = doctor()
    assert result.exit_code == 0 and results(data)["clock"] == "warn"


def test_an_unreachable_gateway_or_device_endpoint(tenant, monkeypatch, tmp_path):
    profiles.create_profile("prod", api_url="http://127.0.0.1:9", org_id="o1",
                            access_key=APP_KEY, secret=SecretRef.from_env("ENOS_APP_SECRET"),
                            dps_url="http://127.0.0.1:9", replace_existing=True)  # fmt: skip
    result, data = doctor()
    assert result.exit_code == 3
    assert results(data)["gateway"] == "fail" and "refused" in data["checks"][0]["detail"]


def test_an_unreachable_device_endpoint_fails_alone(tenant, emulator):
    config = profiles.load()
    import dataclasses

    config.profiles["prod"] = dataclasses.replace(
        config.profiles["prod"], dps_url="http://127.0.0.1:9"
    )
    profiles.save(config)
    result, data = doctor()
    assert result.exit_code == 8
    got = results(data)
    assert got["device endpoint"] == "fail" and got["token"] == "pass"


class _Proxy:
    """A forwarding HTTP proxy on 127.0.0.1 that remembers the URLs it carried."""

    def __init__(self) -> None:
        import http.server
        import threading

        import requests

        seen = self.seen = []

        class Handler(http.server.BaseHTTPRequestHandler):
            def _forward(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else None
                seen.append(self.path)  # an absolute URL: the client spoke to a proxy
                headers = {k: v for k, v in self.headers.items()
                           if k.lower() not in ("host", "proxy-connection", "connection")}  # fmt: skip
                resp = requests.request(self.command, self.path, data=body, headers=headers,
                                        timeout=10)  # fmt: skip
                self.send_response(resp.status_code)
                for k, v in resp.headers.items():
                    if k.lower() not in ("transfer-encoding", "connection", "content-length"):
                        self.send_header(k, v)
                self.send_header("Content-Length", str(len(resp.content)))
                self.end_headers()
                self.wfile.write(resp.content)

            do_GET = do_POST = _forward

            def log_message(self, *args) -> None:
                return None  # quiet

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def test_the_profiles_proxy_carries_every_request(tenant, emulator, tmp_path, monkeypatch):
    """profiles gain `proxy` and `ca_bundle`: doctor and the EnOS calls go through the proxy."""
    import dataclasses

    monkeypatch.delenv("NO_PROXY", raising=False)
    monkeypatch.delenv("no_proxy", raising=False)
    proxy = _Proxy()
    try:
        config = profiles.load()
        config.profiles["prod"] = dataclasses.replace(
            config.profiles["prod"], proxy=proxy.url, ca_bundle="certs/plant-ca.pem"
        )
        profiles.save(config)
        enos = profiles.to_enos_config("prod")
        assert enos.ca_bundle == str(tmp_path / "certs" / "plant-ca.pem")  # next to the file
        assert profiles.describe("prod")["proxy"] == proxy.url
        result, _data = doctor()
        assert result.exit_code == 0, result.output
        assert any("/dps-service/" in u for u in proxy.seen)  # the DPS calls
        assert any("/dev/bootstrap" in u for u in proxy.seen)  # the device endpoint
        assert all(u.startswith(emulator.url) for u in proxy.seen)
    finally:
        proxy.close()
