"""The EnOS backend's resilience against the emulator over a real socket: tokens, retries,
lost answers, rate limits, bad credentials, and the CLI driven through a profile."""

from __future__ import annotations

import json
import sqlite3
import time

import pytest
from conftest import APP_KEY, APP_SECRET, enos_backend, make_group, meters_rows

from enosprov import api
from enosprov.backends.enos import EnosBackend
from enosprov.backends.enos_config import EnosConfig
from enosprov.domain.models import SearchQuery
from enosprov.errors import AuthError, BackendUnavailableError

DATA = {"max_capacity": 1, "phase": "single"}


def serve(emulator, store_path, **kw):
    """Point the session emulator at this test's store with these options."""
    from enosprov.emulator.app import create_app

    lines: list[str] = []
    app = create_app(store_path, app_key=APP_KEY, app_secret=APP_SECRET, log=lines.append, **kw)
    emulator.holder["app"] = app
    return app, lines


def client(emulator, **kw) -> EnosBackend:
    cfg = dict(api_url=emulator.url, org_id="o1", app_key=APP_KEY, app_secret=APP_SECRET,
               dps_url=emulator.url)  # fmt: skip
    cfg.update(kw)
    return EnosBackend(EnosConfig(**cfg))


def dps_lines(lines):
    return [x for x in lines if "/dps-service/" in x]


def token_lines(lines):
    return [x for x in lines if "/apim-token-service/" in x]


def test_faults_still_register_every_device_exactly_once(emulator, store_path, write_csv):
    from enosprov.emulator.app import Faults

    be = enos_backend(emulator, store_path)
    make_group(be)
    _, lines = serve(emulator, store_path,
                     faults=Faults(fail_rate=0.2, drop_rate=0.1, seed=7))  # fmt: skip
    with client(emulator, workers=16, retries=12) as enos:
        enos_groups = be  # same emulator store: groups and master data as the console shows them
        report = api.register_csv(
            _WithGroups(enos, enos_groups), write_csv(meters_rows(2000)), "meters-eu"
        )
    assert report.created + report.skipped == 2000 and report.conflicts == 0
    faults = [x for x in lines if "fault=" in x]
    assert any("fault=429" in x for x in faults) and any("fault=500" in x for x in faults)
    assert any("drop-after" in x for x in faults)  # some creates were done and their answer lost
    with sqlite3.connect(store_path) as conn:
        rows = conn.execute("SELECT device_sn, count(*) FROM devices GROUP BY device_sn").fetchall()
    assert len(rows) == 2000 and {n for _, n in rows} == {1}
    be.close()


class _WithGroups:
    """An EnosBackend whose group definitions come from the emulator's store (as a profile
    would name them), everything else over HTTP."""

    def __init__(self, enos, groups):
        self._enos, self._groups = enos, groups

    def __getattr__(self, name):
        return getattr(self._enos, name)

    def get_group(self, group):
        return self._groups.get_group(group)

    def get_masterdata_group(self, mdg_id):
        return self._groups.get_masterdata_group(mdg_id)


def test_one_token_for_many_calls_and_renewal_when_the_gateway_forgets_it(emulator, store_path):
    be = enos_backend(emulator, store_path)
    group = make_group(be)
    _app, lines = serve(emulator, store_path)
    with client(emulator) as enos:
        sns = enos.create(group.group_id, count=3, device_data=DATA)
        for sn in sns:
            enos.get(sn)
        assert len(token_lines(lines)) == 1
        serve(emulator, store_path)  # a restarted gateway: the cached token is unknown (1203)
        _, lines2 = serve(emulator, store_path)
        assert enos.get(sns[0]).sn == sns[0]
        assert len(token_lines(lines2)) == 1  # renewed once, then the call went through
        assert any("status=401" in x and "code=1203" in x for x in lines2)
    be.close()


def test_wrong_secret_is_one_auth_error_without_retries(emulator, store_path):
    be = enos_backend(emulator, store_path)
    _, lines = serve(emulator, store_path)
    with client(emulator, app_secret="wrong") as enos, pytest.raises(AuthError) as exc:
        enos.get("anything")
    assert "wrong" not in str(exc.value) and APP_SECRET not in str(exc.value)
    assert len(token_lines(lines)) == 1
    be.close()


def test_unreachable_gateway_is_backend_unavailable(tmp_path):
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # nothing listens here once closed
    cfg = EnosConfig(api_url=f"http://127.0.0.1:{port}", org_id="o1", app_key="k",
                     app_secret="s", retries=1, timeout=2)  # fmt: skip
    slept = []
    from enosprov.backends.http import ApiClient

    enos = EnosBackend(cfg, api=ApiClient(cfg, sleep=slept.append))
    with pytest.raises(BackendUnavailableError) as exc:
        enos.get("x")
    assert exc.value.exit_code == 3
    assert len(slept) == 1  # one pause between the two attempts, none after the last
    enos.close()


def test_client_side_rate_limit(emulator, store_path):
    be = enos_backend(emulator, store_path)
    group = make_group(be)
    (sn,) = be.create(group.group_id, device_data=DATA)
    serve(emulator, store_path)
    with client(emulator, max_rps=40) as enos:
        enos.get(sn)  # token and first call
        t0 = time.perf_counter()
        for _ in range(80):
            enos.get(sn)
        elapsed = time.perf_counter() - t0
    assert elapsed >= 80 / 40 - 1.1  # one second of burst, then 40 per second
    be.close()


def test_retry_after_and_429_are_retried_without_side_effects(emulator, store_path):
    from enosprov.emulator.app import Faults

    be = enos_backend(emulator, store_path)
    group = make_group(be)
    _, lines = serve(emulator, store_path, faults=Faults(fail_rate=0.5, seed=3))
    with client(emulator, retries=20) as enos:
        sns = [enos.create(group.group_id, device_data={"deviceSn": f"R-{i:04d}", "max_capacity": 1,
                                                      "phase": "single"})[0] for i in range(20)]  # fmt: skip
    assert len(set(sns)) == 20
    assert be.search(SearchQuery(group_id=group.group_id, page_size=100)).total == 20
    assert any("fault=" in x for x in dps_lines(lines))
    be.close()


def test_cli_registers_through_a_profile(emulator, store_path, tmp_path, write_csv, monkeypatch):
    from typer.testing import CliRunner

    from enosprov.cli import app

    be = enos_backend(emulator, store_path)
    make_group(be)
    serve(emulator, store_path)
    md = tmp_path / "meters.toml"
    md.write_text(
        'id = "meters"\nname = "Smart meters"\n'
        '[[attributes]]\nidentifier = "max_capacity"\ntype = "Integer"\nrequired = true\n'
        '[[attributes]]\nidentifier = "phase"\ntype = "Enum"\nvalues = ["single", "three"]\n'
        "required = true\n"
        '[[attributes]]\nidentifier = "install_date"\ntype = "Date"\n'
        '[[attributes]]\nidentifier = "site"\ntype = "String"\nmaxLength = 64\n',
        encoding="utf-8",
    )
    monkeypatch.setenv("ENOSPROV_CONFIG", str(tmp_path / "config.toml"))
    monkeypatch.setenv("EMU_SECRET", APP_SECRET)
    monkeypatch.setenv("METERS_SECRET", be.get_group("meters-eu").group_secret)
    runner = CliRunner()

    def run(*args):
        result = runner.invoke(app, list(args), catch_exceptions=False)
        return result

    r = run("config", "create", "emu", "--api-url", emulator.url, "--org", "o1",
            "--access-key", APP_KEY, "--secret-env", "EMU_SECRET", "--dps-url", emulator.url)  # fmt: skip
    assert r.exit_code == 0, r.stderr
    r = run("config", "add-group", "emu", "meters-eu", "--secret-env", "METERS_SECRET",
            "--masterdata", str(md))  # fmt: skip
    assert r.exit_code == 0, r.stderr
    path = write_csv(meters_rows(50))
    r = run("--profile", "emu", "register", "--csv", str(path), "--group", "meters-eu", "--json")
    assert r.exit_code == 0, r.stdout + r.stderr
    assert json.loads(r.stdout)["data"]["created"] == 50
    r = run("--profile", "emu", "register", "--csv", str(path), "--group", "meters-eu", "--json")
    assert json.loads(r.stdout)["data"]["skipped"] == 50
    r = run("--profile", "emu", "devices", "list", "--group", "meters-eu", "--json")
    assert json.loads(r.stdout)["data"]["pagination"]["total"] == 50
    r = run("--profile", "emu", "devices", "show", "SN-000007", "--group", "meters-eu", "--json")
    assert json.loads(r.stdout)["data"]["deviceData"]["max_capacity"] == 47
    for out in (r.stdout, r.stderr):
        assert APP_SECRET not in out
    be.close()


def test_group_administration_is_refused_with_a_hint(emulator, store_path):
    from enosprov.errors import RefusedError

    with client(emulator) as enos:
        with pytest.raises(RefusedError) as exc:
            api.create_group(enos, name="x", product_key="pk")
        assert "console" in str(exc.value) and "add-group" in exc.value.hint
        with pytest.raises(RefusedError):
            enos.create_masterdata_group(None)
