"""`enosprov doctor` (issue 19, read-only checks) against the emulator configured to differ
from the defaults: each failure found, with its remedy; nothing changed in EnOS."""

from __future__ import annotations

import json

import pytest
from conftest import APP_KEY, APP_SECRET, enos_backend, make_group, profile_for, query_store

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
    profile_for(emulator, make_group(be), tmp_path, monkeypatch, masterdata=False)
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
        "latency": "pass", "token refusal": "pass", "rate limit": "pass",
        "device endpoint": "pass",
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


def cli_run(*args: str, expect: int | None = 0):
    from typer.testing import CliRunner

    from enosprov.cli import app

    result = CliRunner().invoke(app, list(args))
    if expect is not None:
        assert result.exit_code == expect, (args, result.output)
    return result


@pytest.fixture
def other_scheme_tenant(emulator, store_path, tmp_path, monkeypatch):
    """A tenant whose group accepts the device signature scheme secret-sn-ts, and a profile
    that (by default) says sn-ts-secret."""
    be = enos_backend(emulator, store_path)
    profile_for(emulator, make_group(be, sign_scheme="secret-sn-ts"), tmp_path, monkeypatch)
    yield be
    be.close()


def _doctor_devices(store_path) -> list:
    return query_store(
        store_path, "SELECT device_sn FROM devices WHERE device_sn LIKE 'enosprov-doctor-%'"
    )


def test_write_checks_learn_the_signature_scheme_and_burned_files_then_bootstrap(
    other_scheme_tenant, store_path, tmp_path
):
    """Issue 19's done-when: with a non-default scheme, a burned file does not bootstrap;
    doctor --write-test detects the scheme and saves it; then burn export + device bootstrap
    succeed; the test group holds no throwaway device afterwards."""
    cli_run("--profile", "prod", "register", "--group", "meters-eu", "--device-sn", "MTR-1",
            "--set", "max_capacity=60", "--set", "phase=single", "--timezone", "+01:00")  # fmt: skip
    files = tmp_path / "files"
    cli_run("--profile", "prod", "burn", "export", "--group", "meters-eu", "--device-sn",
            "MTR-1", "--burn-format", "json", "--out", str(files))  # fmt: skip
    refused = cli_run("--profile", "prod", "device", "bootstrap", str(files / "MTR-1.json"),
                      expect=None)  # fmt: skip
    assert refused.exit_code != 0

    result = cli_run("doctor", "--profile", "prod", "--write-test", "meters-eu", "--yes",
                     "--region", "eu2", "--save-scheme", "--json")  # fmt: skip
    data = json.loads(result.stdout)["data"]
    got = {c["check"]: c for c in data["checks"]}
    for step in ("register", "get", "search", "update", "allocate", "bootstrap",
                 "connection info", "reset", "delete (clean-up)"):  # fmt: skip
        assert got[f"write: {step}"]["result"] == "pass", got[f"write: {step}"]
    assert "secret-sn-ts" in got["write: bootstrap"]["detail"]
    assert "refused: sn-ts-secret" in got["write: bootstrap"]["detail"]
    assert got["write: register"]["requestId"]  # each step names its EnOS requestId
    assert got["signature scheme"]["result"] == "pass"
    assert profiles.load().profiles["prod"].groups["meters-eu"].sign_scheme == "secret-sn-ts"
    assert _doctor_devices(store_path) == []  # nothing left behind

    cli_run("--profile", "prod", "burn", "export", "--group", "meters-eu", "--device-sn",
            "MTR-1", "--burn-format", "json", "--out", str(tmp_path / "again"))  # fmt: skip
    session = json.loads(cli_run("--profile", "prod", "device", "bootstrap",
                                 str(tmp_path / "again" / "MTR-1.json"), "--json").stdout)  # fmt: skip
    assert session["data"]["deviceSn"] == "MTR-1"


def test_write_checks_ask_first_and_cleanup_removes_what_an_interrupted_run_left(
    other_scheme_tenant, store_path, tmp_path
):
    refused = cli_run("doctor", "--profile", "prod", "--write-test", "meters-eu", expect=None)
    assert refused.exit_code == 1 and "--yes" in refused.output  # no terminal to ask on
    # an interrupted run: its journal intent written, its device created, nothing settled
    from enosprov.journal import Actor, Journal

    journal = Journal(tmp_path / "xdg-data" / "enosprov" / "journal.db",
                      Actor.current("enos", "prod"))  # fmt: skip
    journal.record("doctor-test", outcome="pending", group_id="meters-eu",
                   detail={"deviceSn": "enosprov-doctor-abc123"})  # fmt: skip
    journal.close()
    other_scheme_tenant.create("meters-eu", device_data={
        "deviceSn": "enosprov-doctor-abc123", "max_capacity": 1, "phase": "single"})  # fmt: skip
    assert len(_doctor_devices(store_path)) == 1
    done = json.loads(cli_run("doctor", "--profile", "prod", "--cleanup", "--json").stdout)
    assert done["data"]["removed"] == ["enosprov-doctor-abc123"]
    assert _doctor_devices(store_path) == []
    again = json.loads(cli_run("doctor", "--profile", "prod", "--cleanup", "--json").stdout)
    assert again["data"]["removed"] == []


@pytest.mark.parametrize("shape", ["401", "403", "200-code", "200-status"])
def test_the_token_refusal_shape_is_recorded(tenant, emulator, store_path, shape):
    """How the gateway answers an invalid token (as an expired one), seen without waiting
    hours, and checked against what the client renews on."""
    from enosprov.emulator.app import Behaviour

    _use(emulator, store_path, behaviour=Behaviour(token_refusal=shape))
    result, data = doctor()
    assert result.exit_code == 0, result.output
    check = next(c for c in data["checks"] if c["check"] == "token refusal")
    status = "200" if shape.startswith("200") else shape
    assert check["result"] == "pass" and f"HTTP {status}" in check["detail"]
    assert "renews" in check["detail"]


def test_a_rate_limited_burst_is_reported_with_a_setting_to_use(tenant, emulator, store_path):
    from enosprov.emulator.app import Faults

    _use(emulator, store_path, faults=Faults(fail_rate=1.0, seed=3))  # every call: 429 or 500
    _result, data = doctor()
    check = next(c for c in data["checks"] if c["check"] == "rate limit")
    assert check["result"] == "warn"
    assert "rate limited" in check["detail"] and "max_requests_per_second" in check["remedy"]


def test_write_checks_killed_mid_run_leave_what_cleanup_removes(
    other_scheme_tenant, emulator, store_path, tmp_path
):
    """kill -9 between the throwaway device's creation and its delete, then --cleanup."""
    import os
    import signal
    import subprocess
    import sys
    import time

    from enosprov.emulator.app import Faults

    _use(emulator, store_path, faults=Faults(latency_ms=300))
    proc = subprocess.Popen(
        [sys.executable, "-m", "enosprov", "doctor", "--profile", "prod", "--write-test",
         "meters-eu", "--yes", "--region", "eu2"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=os.environ,
    )  # fmt: skip
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and not _doctor_devices(store_path):
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    assert len(_doctor_devices(store_path)) == 1  # left behind by the kill
    _use(emulator, store_path)
    done = json.loads(cli_run("doctor", "--profile", "prod", "--cleanup", "--json").stdout)
    assert len(done["data"]["removed"]) == 1
    assert _doctor_devices(store_path) == []


@pytest.fixture
def tls_gateway(tmp_path):
    """An HTTPS server on 127.0.0.1 whose certificate no system CA signed (a plant's own CA);
    its certificate file."""
    import http.server
    import shutil
    import ssl
    import subprocess
    import threading

    if not shutil.which("openssl"):
        pytest.skip("openssl is needed to make a certificate")
    cert, key = tmp_path / "gw.pem", tmp_path / "gw.key"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
                    "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1",
                    "-keyout", str(key), "-out", str(cert)], check=True, capture_output=True)  # fmt: skip

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(404)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args) -> None:
            return None

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    server.socket = context.wrap_socket(server.socket, server_side=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"https://127.0.0.1:{server.server_address[1]}", cert
    server.shutdown()
    server.server_close()


def test_an_untrusted_certificate_is_named_and_the_profiles_ca_bundle_trusts_it(
    tls_gateway, tmp_path, monkeypatch
):
    import dataclasses

    url, cert = tls_gateway
    monkeypatch.setenv("ENOSPROV_CONFIG", str(tmp_path / "config.toml"))
    monkeypatch.setenv("ENOS_APP_SECRET", APP_SECRET)
    monkeypatch.delenv("REQUESTS_CA_BUNDLE", raising=False)
    monkeypatch.delenv("CURL_CA_BUNDLE", raising=False)
    profiles.create_profile("prod", api_url=url, org_id="o1", access_key=APP_KEY,
                            secret=SecretRef.from_env("ENOS_APP_SECRET"))  # fmt: skip
    result, data = doctor()
    gateway = data["checks"][0]
    assert result.exit_code == 3 and gateway["result"] == "fail"
    assert "not trusted" in gateway["detail"] and "ca_bundle" in gateway["remedy"]
    config = profiles.load()
    config.profiles["prod"] = dataclasses.replace(config.profiles["prod"], ca_bundle=str(cert))
    profiles.save(config)
    _result, data = doctor()
    gateway = data["checks"][0]
    assert gateway["result"] == "pass" and "certificate verified" in gateway["detail"]
