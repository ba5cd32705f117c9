"""The device simulator: MQTT login, bootstrap and get/conn from a burned credential file."""

from __future__ import annotations

import hashlib
import json
import re
import time
from dataclasses import replace

import pytest
from conftest import APP_KEY, APP_SECRET, enos_backend, make_group

from enosprov.burn.credential import Credential
from enosprov.device import (
    bootstrap_device,
    device_conninfo,
    mqtt_login,
    read_credential,
    session_from_triple,
)
from enosprov.domain import signing
from enosprov.errors import AuthError, InputFileError, InvalidArgumentError, NotFoundError

DATA = {"max_capacity": 60, "phase": "single"}
DOC_SIGNED = "clientId123456deviceKeytestproductKey654321timestamp1548753362502abcdefg"


def register(backend, group_id: str, device_sn: str) -> str:
    (sn,) = backend.create(group_id, device_data={**DATA, "deviceSn": device_sn})
    return sn


# What enosprov burns besides the identity: the deviceName and timezone Bootstrap Device requires.
BURNED = {"deviceName": "Burned name", "timezone": "+01:00"}


def write_cred(tmp_path, name: str = "cred.json", **fields) -> object:
    path = tmp_path / name
    content = {"profile": "bootstrap", "dpsUrl": "http://dps.invalid", **BURNED, **fields}
    path.write_text(json.dumps(content, ensure_ascii=False), encoding="utf-8")
    return path


def bootstrap_cred(tmp_path, group, device_sn: str, **extra):
    return write_cred(
        tmp_path,
        groupId=group.group_id,
        groupSecret=group.group_secret,
        deviceSn=device_sn,
        **extra,
    )


# -- MQTT login ---------------------------------------------------------------------------------


def test_mqtt_login_documented_worked_example():
    login = mqtt_login("654321", "test", "abcdefg", client_id="123456", timestamp=1548753362502)
    assert login.client_id == "123456|securemode=2,signmethod=sha256,timestamp=1548753362502|"
    assert login.username == "test&654321"
    assert login.password == hashlib.sha256(DOC_SIGNED.encode()).hexdigest().upper()
    assert login.timestamp == 1548753362502
    assert "abcdefg" not in repr(login) and login.password not in repr(login)
    assert "password" not in login.to_dict()


def test_mqtt_login_sdk_style_and_defaults():
    sdk = mqtt_login(
        "654321", "test", "abcdefg", client_id="123456", timestamp=1548753362502, style="sdk"
    )
    assert sdk.client_id == "123456|securemode=2,signmethod=hmacsha256,timestamp=1548753362502|"
    assert sdk.password == hashlib.sha256(DOC_SIGNED.encode()).hexdigest()  # lower case
    # default inner client id: the deviceKey; securemode 3 (productSecret) in the clientId
    dyn = mqtt_login("pk", "dk-1", "psecret", timestamp=5, secure_mode=3)
    assert dyn.client_id == "dk-1|securemode=3,signmethod=sha256,timestamp=5|"
    signed = "clientIddk-1deviceKeydk-1productKeypktimestamp5psecret"
    assert dyn.password == hashlib.sha256(signed.encode()).hexdigest().upper()
    for kw in ({"style": "x"}, {"secure_mode": 4}, {"client_id": "a|b"}, {"client_id": "c" * 65}):
        with pytest.raises(InvalidArgumentError):
            mqtt_login("pk", "dk", "ds", **kw)
    with pytest.raises(InvalidArgumentError, match="deviceKey"):
        mqtt_login("pk", "", "ds")


# -- the device flows, on both backends ---------------------------------------------------------


def test_bootstrap_then_conninfo(backend, group, tmp_path):
    sn = register(backend, group.group_id, "DEV-000001")
    cred = read_credential(bootstrap_cred(tmp_path, group, "DEV-000001"))
    now = int(time.time() * 1000)
    session = bootstrap_device(backend, cred, now_ms=now)
    dev = backend.get(sn)
    assert dev.allocated and dev.connect_status == "connected"
    info = session.info
    assert (info.sn, info.product_key) == (sn, "pk1")
    assert (info.device_key, info.device_secret) == (dev.device_key, dev.device_secret)
    assert info.mqtt_url and info.http_url
    assert (session.call, session.device_sn, session.timestamp) == ("bootstrap", "DEV-000001", now)
    assert session.mqtt == mqtt_login(
        "pk1", dev.device_key, dev.device_secret, timestamp=session.timestamp
    )
    assert dev.device_secret not in repr(session) and session.mqtt.password not in repr(session)

    again = device_conninfo(backend, replace(cred, sn=sn))
    assert again.call == "get/conn"
    assert again.info == info
    assert again.mqtt.username == session.mqtt.username


def test_bootstrap_registers_an_unknown_device_with_the_burned_name_and_timezone(
    backend, group, tmp_path
):
    path = bootstrap_cred(tmp_path, group, "NEW-000041", deviceName="电表 41 «Nord»",
                          timezone="Asia/Shanghai")  # fmt: skip
    session = bootstrap_device(backend, read_credential(path))
    dev = backend.find_by_device_sn(group.group_id, "NEW-000041")
    assert dev is not None and dev.sn == session.info.sn
    assert dev.allocated and dev.connect_status == "connected"
    assert dev.device_data["deviceName"]["defaultValue"] == "电表 41 «Nord»"
    assert dev.device_data["timezone"] == "Asia/Shanghai"


def test_bootstrap_name_and_timezone_arguments_override_the_burned_ones(backend, group, tmp_path):
    cred = read_credential(bootstrap_cred(tmp_path, group, "NEW-000042"))
    assert (cred.device_name, cred.timezone) == ("Burned name", "+01:00")
    session = bootstrap_device(backend, cred, device_name="Meter 42", timezone="+08:00")
    dev = backend.find_by_device_sn(group.group_id, "NEW-000042")
    assert dev is not None and dev.sn == session.info.sn
    assert dev.allocated and dev.connect_status == "connected"
    assert dev.device_data["deviceName"]["defaultValue"] == "Meter 42"
    assert dev.device_data["timezone"] == "+08:00"
    only_tz = read_credential(bootstrap_cred(tmp_path, group, "NEW-000043"))
    bootstrap_device(backend, only_tz, timezone="Europe/Berlin")
    data = backend.find_by_device_sn(group.group_id, "NEW-000043").device_data
    assert (data["deviceName"]["defaultValue"], data["timezone"]) == (
        "Burned name",
        "Europe/Berlin",
    )


def _raw_bootstrap(backend, group, device_sn: str, **kw):
    ts = int(time.time() * 1000)
    sign = signing.sign(group.sign_scheme, device_sn, ts, group.group_secret)
    return backend.bootstrap(
        group_id=group.group_id, device_sn=device_sn, timestamp=ts, sign=sign, **kw
    )


@pytest.mark.parametrize(
    "kw, message",
    [
        ({"timezone": "+08:00"}, "Invalid Argument deviceName:deviceName is missing"),
        ({"device_name": {"defaultValue": ""}, "timezone": "+08:00"}, "deviceName is missing"),
        ({"device_name": {"defaultValue": "M"}}, "Invalid Argument timezone:timezone is missing"),
        ({"device_name": {"defaultValue": "M"}, "timezone": ""}, "timezone is missing"),
        ({"device_name": {"defaultValue": "M"}, "timezone": "Mars/Olympus"}, "Mars/Olympus"),
    ],
)
def test_the_dps_requires_device_name_and_timezone(backend, group, kw, message):
    register(backend, group.group_id, "DEV-000009")
    for device_sn in ("NEW-000009", "DEV-000009"):  # unregistered or registered: refused alike
        with pytest.raises(InvalidArgumentError, match=re.escape(message)) as err:
            _raw_bootstrap(backend, group, device_sn, **kw)
        assert err.value.enos_code == 99400
    assert backend.find_by_device_sn(group.group_id, "NEW-000009") is None
    assert not backend.find_by_device_sn(group.group_id, "DEV-000009").allocated


def test_bootstrap_device_needs_a_name_and_timezone(backend, group):
    cred = Credential("bootstrap", "NEW-000044", group_id=group.group_id,
                      group_secret=group.group_secret, dps_url="http://dps.invalid")  # fmt: skip
    with pytest.raises(InvalidArgumentError, match="lacks deviceName, timezone") as err:
        bootstrap_device(backend, cred)
    assert group.group_secret not in str(err.value.to_dict())
    assert backend.find_by_device_sn(group.group_id, "NEW-000044") is None
    bootstrap_device(backend, cred, device_name="Meter 44", timezone="+08:00")
    assert backend.find_by_device_sn(group.group_id, "NEW-000044").allocated


def test_bootstrap_with_another_sign_scheme(backend, tmp_path):
    grp = make_group(backend, group_id="kv", name="KV", sign_scheme="sorted-kv")
    cred = read_credential(bootstrap_cred(tmp_path, grp, "KV-000001", signScheme="sorted-kv"))
    assert bootstrap_device(backend, cred).info.product_key == "pk1"
    wrong = replace(cred, sign_scheme=signing.DEFAULT_SCHEME)
    with pytest.raises(AuthError):
        bootstrap_device(backend, wrong)


def test_bootstrap_refusals(backend, group, tmp_path):
    cred = read_credential(
        write_cred(tmp_path, groupId=group.group_id, groupSecret="wrong-7Hq", deviceSn="BAD-01")
    )
    with pytest.raises(AuthError) as err:
        bootstrap_device(backend, cred)
    assert err.value.enos_code == 35601
    assert backend.find_by_device_sn(group.group_id, "BAD-01") is None
    unknown = replace(cred, group_id="no-such-group")
    with pytest.raises(NotFoundError):
        bootstrap_device(backend, unknown)


def test_conninfo_needs_the_system_sn_and_a_bootstrap_credential(backend, group, tmp_path):
    cred = read_credential(bootstrap_cred(tmp_path, group, "DEV-000001"))
    with pytest.raises(InvalidArgumentError, match="no system sn") as err:
        device_conninfo(backend, cred)
    assert "bootstrap first" in err.value.hint
    triple = Credential(
        "triple", "DEV-000001", product_key="pk", device_key="dk", device_secret="s"
    )
    with pytest.raises(InvalidArgumentError, match="triple"):
        bootstrap_device(backend, triple)
    with pytest.raises(InvalidArgumentError, match="triple"):
        device_conninfo(backend, triple)


# -- triple credentials and files ---------------------------------------------------------------


def test_session_from_triple(tmp_path):
    path = tmp_path / "t.json"
    path.write_text(
        json.dumps(
            {
                "profile": "triple",
                "deviceSn": "T-1",
                "productKey": "pkT",
                "deviceKey": "dkT",
                "deviceSecret": "dsT-secret",
                "mqttUrl": "tcp://broker:11883",
            }
        )
    )
    session = session_from_triple(read_credential(path), now_ms=1000)
    assert session.call == "triple" and session.timestamp is None
    assert session.mqtt == mqtt_login("pkT", "dkT", "dsT-secret", timestamp=1000)
    assert session.info.mqtt_url == "tcp://broker:11883"
    assert "dsT-secret" not in json.dumps(session.to_dict())
    assert session.to_dict(include_secret=True)["deviceSecret"] == "dsT-secret"


@pytest.mark.parametrize(
    "content, needle",
    [
        (b"\x00\x01 not a credential", "cred.bin"),
        (b'{"profile": "bootstrap", "deviceSn": "X"}', "groupId"),
        (b'{"profile": "bootstrap", "colour": "red"}', "colour"),
        (
            b'{"profile": "bootstrap", "deviceSn": "X", "groupId": "g", "groupSecret": "s", '
            b'"dpsUrl": "u"}',
            "lacks deviceName, timezone, which Bootstrap Device requires (a file written before "
            "enosprov burned them): re-export it with `enosprov burn export`",
        ),
        (b"[1, 2]", "cred.bin"),
    ],
)
def test_unreadable_credential_files_name_the_file(tmp_path, content, needle):
    path = tmp_path / "cred.bin"
    path.write_bytes(content)
    with pytest.raises(InputFileError) as err:
        read_credential(path)
    assert "cred.bin" in str(err.value) and needle in str(err.value)
    with pytest.raises(InputFileError, match=r"missing\.json"):
        read_credential(tmp_path / "missing.json")


# -- CLI ----------------------------------------------------------------------------------------


SECRET_MARKERS = ("GrpSecret-ZZ9plural", "dsT-Zq81x")


def test_cli_bootstrap_hides_secrets_unless_asked(cli, store, tmp_path):
    group = make_group(store)
    group_secret = group.group_secret
    path = bootstrap_cred(tmp_path, group, "CLI-000001")
    result = cli("device", "bootstrap", str(path), "--json")
    assert result.exit_code == 0, result.stdout + result.stderr
    data = json.loads(result.stdout)["data"]
    dev = store.find_by_device_sn(group.group_id, "CLI-000001")
    assert (data["sn"], data["deviceKey"], data["productKey"]) == (dev.sn, dev.device_key, "pk1")
    assert data["mqtt"]["username"] == f"{dev.device_key}&pk1"
    assert data["mqtt"]["clientId"].startswith(dev.device_key + "|securemode=2,")
    assert "deviceSecret" not in data and "password" not in data["mqtt"]
    password = mqtt_login(
        "pk1", dev.device_key, dev.device_secret, timestamp=data["mqtt"]["timestamp"]
    ).password
    for secret in (dev.device_secret, group_secret, password):
        assert secret not in result.stdout + result.stderr

    text = cli("device", "bootstrap", str(path))
    assert text.exit_code == 0
    assert "(hidden; --with-secrets)" in text.stdout and dev.device_key in text.stdout
    assert dev.device_secret not in text.stdout + text.stderr
    assert "get/conn needs the system sn" in text.stderr

    shown = cli.json("device", "bootstrap", str(path), "--with-secrets")["data"]
    assert shown["deviceSecret"] == dev.device_secret
    assert (
        shown["mqtt"]["password"]
        == mqtt_login(
            "pk1", dev.device_key, dev.device_secret, timestamp=shown["mqtt"]["timestamp"]
        ).password
    )

    with_sn = bootstrap_cred(tmp_path, group, "CLI-000001", sn=dev.sn)
    conn = cli.json("device", "conninfo", str(with_sn))["data"]
    assert (conn["call"], conn["sn"], conn["deviceKey"]) == ("get/conn", dev.sn, dev.device_key)
    assert dev.device_secret not in json.dumps(conn)


def test_cli_bootstrap_sends_the_burned_or_given_name_and_timezone(cli, store, tmp_path):
    group = make_group(store)
    burned = bootstrap_cred(
        tmp_path, group, "CLI-000010", deviceName="Zähler 10", timezone="+05:30"
    )
    cli.json("device", "bootstrap", str(burned))
    data = store.find_by_device_sn(group.group_id, "CLI-000010").device_data
    assert (data["deviceName"], data["timezone"]) == ({"defaultValue": "Zähler 10",
                                                       "i18nValue": {}}, "+05:30")  # fmt: skip
    given = bootstrap_cred(tmp_path, group, "CLI-000011")
    cli.json("device", "bootstrap", str(given), "--name", "Meter 11", "--timezone", "Europe/Paris")
    data = store.find_by_device_sn(group.group_id, "CLI-000011").device_data
    assert (data["deviceName"]["defaultValue"], data["timezone"]) == ("Meter 11", "Europe/Paris")

    old = tmp_path / "old.json"  # written before credential version 2: no deviceName, timezone
    old.write_text(json.dumps({"profile": "bootstrap", "deviceSn": "CLI-000012",
                               "groupId": group.group_id, "groupSecret": group.group_secret,
                               "dpsUrl": "http://dps.invalid"}))  # fmt: skip
    err = cli.json("device", "bootstrap", str(old), "--name", "x", "--timezone", "+08:00",
                   expect=1)["error"]  # fmt: skip
    assert err["code"] == "invalid_input"
    assert err["message"] == (
        f"{old}: bootstrap credential lacks deviceName, timezone, which Bootstrap Device requires "
        "(a file written before enosprov burned them): re-export it with `enosprov burn export`"
    )
    assert group.group_secret not in json.dumps(err)
    assert store.find_by_device_sn(group.group_id, "CLI-000012") is None


def test_cli_errors_and_triple_files(cli, store, tmp_path):
    group = make_group(store)
    no_sn = bootstrap_cred(tmp_path, group, "CLI-000002")
    err = cli.json("device", "conninfo", str(no_sn), expect=1)["error"]
    assert err["code"] == "invalid_argument" and "bootstrap first" in err["hint"]
    bad = write_cred(
        tmp_path, "bad.json", groupId=group.group_id, groupSecret=SECRET_MARKERS[0], deviceSn="X-1"
    )
    err = cli.json("device", "bootstrap", str(bad), expect=1)["error"]
    assert (err["code"], err["enosCode"]) == ("auth_failed", 35601)
    assert SECRET_MARKERS[0] not in json.dumps(err)
    assert cli.json("device", "bootstrap", str(tmp_path / "nope.json"), expect=1)["error"][
        "code"
    ] == ("invalid_input")

    triple = tmp_path / "triple.json"
    triple.write_text(
        json.dumps(
            {
                "profile": "triple",
                "deviceSn": "T-1",
                "productKey": "pkT",
                "deviceKey": "dkT",
                "deviceSecret": SECRET_MARKERS[1],
            }
        )
    )
    out = cli("device", "conninfo", str(triple))
    assert out.exit_code == 0 and "none (triple in the file)" in out.stdout
    assert SECRET_MARKERS[1] not in out.stdout + out.stderr
    assert cli.json("device", "bootstrap", str(triple), expect=1)["error"]["code"] == (
        "invalid_argument"
    )


def test_cli_with_a_profile_goes_to_the_dps_endpoint(emulator, store_path, tmp_path, monkeypatch):
    """The same command with --profile: the request goes over HTTP to the emulator."""
    from typer.testing import CliRunner

    from enosprov import profiles
    from enosprov.cli import app
    from enosprov.profiles import SecretRef

    be = enos_backend(emulator, store_path)
    try:
        group = make_group(be)
        monkeypatch.setenv("ENOSPROV_CONFIG", str(tmp_path / "cfg.toml"))
        monkeypatch.setenv("ENOS_APP_SECRET", APP_SECRET)
        profiles.create_profile(
            "emu",
            api_url=emulator.url,
            org_id="o1",
            access_key=APP_KEY,
            secret=SecretRef.from_env("ENOS_APP_SECRET"),
            dps_url=emulator.url,
        )
        path = bootstrap_cred(tmp_path, group, "HTTP-000001")
        result = CliRunner().invoke(
            app, ["--profile", "emu", "device", "bootstrap", str(path), "--json"]
        )
        assert result.exit_code == 0, result.stdout + result.stderr
        data = json.loads(result.stdout)["data"]
        dev = be.store.find_by_device_sn(group.group_id, "HTTP-000001")
        assert dev is not None and dev.connect_status == "connected"
        assert (data["sn"], data["deviceKey"]) == (dev.sn, dev.device_key)
    finally:
        be.close()
