"""The device simulator: what a device does with its burned credential file.

A device holding a ``bootstrap`` credential (DPS endpoint, groupId, group secret, deviceSn,
deviceName, timezone) signs a Bootstrap Device request with the group secret, sends it with the
burned deviceName and timezone (DPS requires both), receives its EnOS triple and broker URLs, and
logs in to the EnOS MQTT broker with them. Later it can ask for its connection info again (get/conn,
signed over the system sn). A device holding a ``triple`` credential skips DPS and logs in directly.

The backend decides where the DPS calls go: in process for the local store, over HTTP to the
profile's DPS device endpoint for EnOS (or the emulator). The ``dpsUrl`` in the credential file
records where a real device would send them; the simulator does not use it.

MQTT login (EnOS "non-SDK login" page; see :func:`mqtt_login`)::

    clientId = {cid}|securemode={2|3},signmethod=sha256,timestamp={ms}|
    username = {deviceKey}&{productKey}
    password = UPPER(sha256("clientId"+cid+"deviceKey"+dk+"productKey"+pk+"timestamp"+ts+secret))
"""

from __future__ import annotations

import hashlib
import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from .backends.base import Backend, Resigner
from .burn.credential import Credential, missing_message
from .domain import signing
from .domain.errors import EnosprovError, InputFileError, InvalidArgumentError
from .domain.models import ConnectionInfo, string_i18n
from .journal import Journal, journal_or_null

if TYPE_CHECKING:
    from .core.lineage import Retirement

MQTT_STYLES = ("doc", "sdk")
SECURE_MODES = (2, 3)  # 2: static (deviceSecret); 3: dynamic activation (productSecret)
CLIENT_ID_MAX = 64  # documented limit of the inner clientId

# (signmethod label in the clientId, upper-case hex?) per style.
_STYLE = {"doc": ("sha256", True), "sdk": ("hmacsha256", False)}


# -- MQTT login ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class MqttLogin:
    """The three MQTT CONNECT fields, and the timestamp signed into them (ms)."""

    client_id: str
    username: str
    password: str = field(repr=False)
    timestamp: int

    def to_dict(self, include_secret: bool = False) -> dict:
        out = {"clientId": self.client_id, "username": self.username, "timestamp": self.timestamp}
        if include_secret:
            out["password"] = self.password
        return out


def mqtt_login(
    product_key: str,
    device_key: str,
    device_secret: str,
    *,
    client_id: str | None = None,
    timestamp: int | None = None,
    secure_mode: int = 2,
    style: str = "doc",
) -> MqttLogin:
    """The EnOS MQTT login of a device (static activation by default).

    ``style="doc"`` follows the EnOS documentation: ``signmethod=sha256`` in the clientId and an
    upper-case hex password. ``style="sdk"`` reproduces the EnOS Python device SDK
    (``enos-device-sdk-python``): ``signmethod=hmacsha256`` in the clientId although the password is
    the same plain SHA-256 of the same string, written in lower-case hex. The broker is said to
    accept both; that is not verified against a real environment.

    ``client_id`` is the inner identifier (at most 64 characters; default: the deviceKey, as the SDK
    does). ``device_secret`` is the deviceSecret for securemode 2, the productSecret for 3.
    ``timestamp`` is epoch milliseconds (default: now).
    """
    if style not in _STYLE:
        raise InvalidArgumentError(
            f"unknown MQTT login style {style!r}", hint="use one of: " + ", ".join(MQTT_STYLES)
        )
    if secure_mode not in SECURE_MODES:
        raise InvalidArgumentError(
            f"securemode {secure_mode!r} is not supported",
            hint="2 = static activation (deviceSecret), 3 = dynamic activation (productSecret)",
        )
    missing = [
        n
        for n, v in (
            ("productKey", product_key),
            ("deviceKey", device_key),
            ("secret", device_secret),
        )
        if not v
    ]
    if missing:
        raise InvalidArgumentError(f"the MQTT login needs {', '.join(missing)}")
    cid = device_key if client_id is None else client_id
    if not cid or len(cid) > CLIENT_ID_MAX or any(c in cid for c in "|,"):
        raise InvalidArgumentError(
            f"MQTT client id {cid!r} is not usable",
            hint=f"1-{CLIENT_ID_MAX} characters, without '|' or ','",
        )
    ts = int(time.time() * 1000) if timestamp is None else int(timestamp)
    method, upper = _STYLE[style]
    signed = (
        f"clientId{cid}deviceKey{device_key}productKey{product_key}timestamp{ts}{device_secret}"
    )
    digest = hashlib.sha256(signed.encode("utf-8")).hexdigest()
    return MqttLogin(
        client_id=f"{cid}|securemode={secure_mode},signmethod={method},timestamp={ts}|",
        username=f"{device_key}&{product_key}",
        password=digest.upper() if upper else digest,
        timestamp=ts,
    )


# -- device sessions ----------------------------------------------------------------------------


@dataclass(frozen=True)
class DeviceSession:
    """What the device ends up with: its connection info (``info``) and MQTT login (``mqtt``).

    ``call`` is the DPS call that produced it (``bootstrap``, ``get/conn``) or ``triple`` when the
    triple came from the credential itself; ``timestamp`` is the signed request time (ms), None
    when no request was made.
    """

    call: str
    device_sn: str
    info: ConnectionInfo
    mqtt: MqttLogin
    timestamp: int | None = None
    # a bootstrap that registered a retired (replaced) deviceSn again: the retirement, so that
    # the caller says so loudly and what to do
    retired: Retirement | None = None

    def to_dict(self, include_secret: bool = False) -> dict:
        """Credential field names (productKey, deviceKey, deviceSecret, mqttUrl, httpUrl), so the
        output with secrets is the content of a ``triple`` credential plus the MQTT login."""
        c = self.info
        out: dict = {
            "call": self.call,
            "deviceSn": self.device_sn,
            "sn": c.sn or None,
            "productKey": c.product_key,
            "deviceKey": c.device_key,
        }
        if include_secret:
            out["deviceSecret"] = c.device_secret
        out.update(mqttUrl=c.mqtt_url, httpUrl=c.http_url, timestamp=self.timestamp)
        out["mqtt"] = self.mqtt.to_dict(include_secret)
        if self.retired is not None:
            out["retiredUnit"] = self.retired.to_dict()
        return out


def bootstrap_device(
    backend: Backend,
    cred: Credential,
    *,
    device_name: str | None = None,
    timezone: str | None = None,
    now_ms: int | None = None,
    journal: Journal | None = None,
) -> DeviceSession:
    """Bootstrap Device as the device does it: sign the deviceSn with the group secret (scheme
    from the credential, default ``signing.DEFAULT_SCHEME``) and call ``backend.bootstrap`` with
    the credential's deviceName (as a StringI18n defaultValue) and timezone; ``device_name`` and
    ``timezone`` override them.

    The DPS registers the device if it is unknown, allocates it if needed and marks it connected;
    a "bootstrap" record in ``journal`` says so.

    A retired deviceSn (its unit was replaced): on the local store, where enosprov is the DPS,
    the bootstrap is refused (RefusedError naming the unit in service) unless its group allows
    returning units (``allow_retired_bootstrap``). EnOS (and the emulator) may accept it: the
    session's ``retired`` then holds the retirement, and the journal record marks the unit as a
    retired unit that came back (``detail.retiredUnitReturned``).
    """
    if cred.profile == "triple":
        raise InvalidArgumentError(
            f"the credential of {cred.device_sn} is a triple credential: it cannot bootstrap",
            hint="a triple device logs in to MQTT with its burned triple directly "
            "(`enosprov device conninfo FILE` shows that login); bootstrap needs a bootstrap "
            "credential (groupId, groupSecret, deviceSn)",
        )
    group_id, group_secret = _need(
        cred, ("groupId", cred.group_id), ("groupSecret", cred.group_secret)
    )
    name = device_name or cred.device_name
    timezone = timezone or cred.timezone
    missing = [n for n, v in (("deviceName", name), ("timezone", timezone)) if not v]
    if missing:
        raise InvalidArgumentError(
            "the " + missing_message(cred.profile, missing, cred.device_sn),
            hint="or pass device_name and timezone",
        )
    ts = _now() if now_ms is None else int(now_ms)
    # [ENOSPROV] a local store refuses a retired unit here (its own rule, on by default; the
    # emulator's store, which answers as EnOS does, has it off: LocalBackend)
    info = backend.bootstrap(
        group_id=group_id,
        device_sn=cred.device_sn,
        timestamp=ts,
        sign=signing.sign(_scheme(cred), cred.device_sn, ts, group_secret),
        sign_method="sha256",
        device_name=string_i18n(name),
        timezone=timezone,
        resign=_resigner(cred, cred.device_sn, ts),
    )
    retired = _came_back(backend, journal, cred, info)
    extra = None
    if retired is not None:
        extra = {"retiredUnitReturned": {
            "replacedBy": retired.replaced_by["deviceSn"],
            "replacedAt": retired.replaced_at,
            "inService": retired.in_service["deviceSn"],
        }}  # fmt: skip
    _journal(journal, backend, "bootstrap", cred, info, extra)
    return _session("bootstrap", cred.device_sn, info, ts, retired=retired)


def _came_back(
    backend: Backend, journal, cred: Credential, info: ConnectionInfo
) -> Retirement | None:
    """The retirement of the deviceSn that just bootstrapped as a new registration (a retired
    unit that came back), or None."""
    from .core.lineage import retirement

    found = retirement(backend, journal, cred.device_sn, group_id=cred.group_id)
    if found is None or found.returned is None:
        return None
    if info.sn and found.returned.sn != info.sn:
        return None
    return found


def device_conninfo(
    backend: Backend, cred: Credential, *, now_ms: int | None = None, journal: Journal | None = None
) -> DeviceSession:
    """Get Device Connection Info as the device does it: sign the system sn with the group secret
    and call ``backend.get_connection_info``. The device must be allocated. The call marks the
    device connected: ``journal`` gets a "bootstrap" record (detail call "get/conn")."""
    if cred.profile == "triple":
        raise InvalidArgumentError(
            f"the credential of {cred.device_sn} is a triple credential: it has no group secret "
            "to sign get/conn with",
            hint="use session_from_triple(cred): the device logs in with its burned triple",
        )
    if not cred.sn:
        raise InvalidArgumentError(
            f"the credential of {cred.device_sn} has no system sn: get/conn is signed over it",
            hint="bootstrap first (enosprov device bootstrap FILE), or export the credential "
            "with the sn of the registered device",
        )
    (group_secret,) = _need(cred, ("groupSecret", cred.group_secret))
    ts = _now() if now_ms is None else int(now_ms)
    info = backend.get_connection_info(
        sn=cred.sn,
        timestamp=ts,
        sign=signing.sign(_scheme(cred), cred.sn, ts, group_secret),
        sign_method="sha256",
        resign=_resigner(cred, cred.sn, ts),
    )
    _journal(journal, backend, "get/conn", cred, info)
    return _session("get/conn", cred.device_sn, info, ts)


def _resigner(cred: Credential, identity: str, first_ts: int) -> Resigner:
    """Signs a retry of a device call again, with a strictly later timestamp each time."""
    (group_secret,) = _need(cred, ("groupSecret", cred.group_secret))
    return signing.resigner(_scheme(cred), identity, group_secret, first_ts)


def _journal(
    journal,
    backend: Backend,
    call: str,
    cred: Credential,
    info: ConnectionInfo,
    extra: dict | None = None,
) -> None:
    """One "bootstrap" record for a device-side call (never the secrets of its answer)."""
    dps_url = backend.dps_url
    journal_or_null(journal).record(
        "bootstrap",
        devices=[(info.sn or cred.sn or "", cred.device_sn)],
        group_id=cred.group_id or None,
        detail={
            "call": call,
            "backend": backend.name,
            "dpsUrl": dps_url,
            **(extra or {}),
        },
    )


def session_from_triple(cred: Credential, *, now_ms: int | None = None) -> DeviceSession:
    """The session of a device whose triple is burned in: no DPS call, only the MQTT login."""
    product_key, device_key, device_secret = _need(
        cred,
        ("productKey", cred.product_key),
        ("deviceKey", cred.device_key),
        ("deviceSecret", cred.device_secret),
    )
    info = ConnectionInfo(
        sn=cred.sn or "",
        product_key=product_key,
        device_key=device_key,
        device_secret=device_secret,
        mqtt_url=cred.mqtt_url,
        http_url=cred.http_url,
    )
    return _session("triple", cred.device_sn, info, None, mqtt_ts=now_ms)


def _session(
    call: str,
    device_sn: str,
    info: ConnectionInfo,
    ts: int | None,
    mqtt_ts: int | None = None,
    retired: Retirement | None = None,
) -> DeviceSession:
    login = mqtt_login(
        info.product_key,
        info.device_key,
        info.device_secret,
        timestamp=ts if mqtt_ts is None else mqtt_ts,
    )
    return DeviceSession(call, device_sn, info, login, ts, retired)


def _need(cred: Credential, *pairs: tuple[str, str | None]) -> list[str]:
    """The values of the (field name, value) ``pairs``, in order; an error names every field
    that is missing or empty."""
    missing = [name for name, value in pairs if not value]
    if missing:
        raise InvalidArgumentError(
            f"the {cred.profile} credential of {cred.device_sn} lacks {', '.join(missing)}"
        )
    return [value for _name, value in pairs if value]


def _scheme(cred: Credential) -> str:
    return cred.sign_scheme or signing.DEFAULT_SCHEME


def _now() -> int:
    return int(time.time() * 1000)


# -- credential files ---------------------------------------------------------------------------


def read_credential(path: str | Path) -> Credential:
    """Read a burned credential file, whatever its format (detected from content and name).

    Uses ``enosprov.burn.formats`` when it is installed; without it only the JSON format (an
    object whose keys are the credential field names) is read.
    """
    p = Path(path)
    try:
        data = p.read_bytes()
    except OSError as exc:
        raise InputFileError(f"cannot read credential file {p}: {exc.strerror or exc}") from None
    try:
        return _decode(data, p.name)
    except EnosprovError as err:
        if str(p) not in err.message and p.name not in err.message:
            err.message = f"{p}: {err.message}"
            err.args = (err.message,)
        raise
    except ValueError as exc:  # a parse error a decoder let through (its text may quote secrets)
        raise InputFileError(
            f"{p}: not a readable credential file ({type(exc).__name__})"
        ) from None


def _decode(data: bytes, filename: str) -> Credential:
    import importlib.util

    if importlib.util.find_spec(__package__ + ".burn.formats") is None:
        return _decode_json(data)
    from .burn import formats

    name = formats.detect(data, filename)
    if not name:
        raise InputFileError("unknown credential file format")
    options = formats.FormatOptions()  # the defaults of every format
    return formats.FORMATS[name].decode(data, options)


def _decode_json(data: bytes) -> Credential:
    """The JSON format alone: one object keyed by the credential field names."""
    try:
        obj = json.loads(data.decode("utf-8-sig"))
    except (UnicodeDecodeError, json.JSONDecodeError):
        raise InputFileError(
            "not a JSON credential file",
            hint="only JSON credential files can be read until enosprov.burn.formats is installed",
        ) from None
    if not isinstance(obj, dict):
        raise InputFileError("a JSON credential file holds one object of credential fields")
    bad = sorted(k for k, v in obj.items() if not isinstance(v, str))
    if bad:
        raise InputFileError(f"credential field(s) {', '.join(bad)} must be strings")
    return Credential.from_dict(obj)  # refuses unknown names and missing required fields
