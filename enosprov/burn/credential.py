"""The content of a credential file, independent of its format.

Two content profiles (docs/burn-formats.md):
- ``bootstrap``: the long-lived values that survive reprovisioning: DPS device endpoint, groupId,
  group secret, deviceSn, the system sn when the device is registered, the signing scheme, and the
  deviceName and timezone that Bootstrap Device requires (the name is the StringI18n
  ``defaultValue`` only: its translations are not burned).
- ``triple``: what an allocated device connects with: productKey, deviceKey, deviceSecret, and the
  MQTT and HTTP broker URLs (plus deviceSn and sn, to trace the unit).

Field names are the same in every format (JSON keys, INI keys, C macro suffixes, binary tags,
NVS keys: all at most 15 characters, the NVS key limit). A new field goes at the end of FIELDS:
binary tags are indexes into it, so the tags of older files stay valid.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from typing import Any

PROFILES = ("bootstrap", "triple")

# (field name in files, attribute, secret?) in the order every format writes them.
FIELDS: tuple[tuple[str, str, bool], ...] = (
    ("profile", "profile", False),
    ("deviceSn", "device_sn", False),
    ("sn", "sn", False),
    ("groupId", "group_id", False),
    ("groupSecret", "group_secret", True),
    ("dpsUrl", "dps_url", False),
    ("signScheme", "sign_scheme", False),
    ("productKey", "product_key", False),
    ("deviceKey", "device_key", False),
    ("deviceSecret", "device_secret", True),
    ("mqttUrl", "mqtt_url", False),
    ("httpUrl", "http_url", False),
    # credential version 2 (binary layout 2): what Bootstrap Device requires besides the above
    ("deviceName", "device_name", False),
    ("timezone", "timezone", False),
)
FIELD_NAMES = tuple(f[0] for f in FIELDS)
SECRET_FIELDS = tuple(f[0] for f in FIELDS if f[2])
REQUIRED = {
    "bootstrap": ("deviceSn", "groupId", "groupSecret", "dpsUrl", "deviceName", "timezone"),
    "triple": ("deviceSn", "productKey", "deviceKey", "deviceSecret"),
}
# Fields added by credential version 2: a file written before lacks them.
ADDED_IN_V2 = ("deviceName", "timezone")
REEXPORT = "re-export it with `enosprov burn export`"


@dataclass(frozen=True)
class Credential:
    profile: str
    device_sn: str
    sn: str | None = None
    group_id: str | None = None
    group_secret: str | None = field(default=None, repr=False)
    dps_url: str | None = None
    sign_scheme: str | None = None
    product_key: str | None = None
    device_key: str | None = None
    device_secret: str | None = field(default=None, repr=False)
    mqtt_url: str | None = None
    http_url: str | None = None
    device_name: str | None = None  # deviceName.defaultValue; translations are not burned
    timezone: str | None = None

    def items(self) -> list[tuple[str, str]]:
        """(field name, value) of every field that has a value, in the documented order."""
        out = []
        for name, attr, _ in FIELDS:
            value = getattr(self, attr)
            if value is not None and value != "":
                out.append((name, str(value)))
        return out

    def to_dict(self) -> dict[str, str]:
        return dict(self.items())

    @classmethod
    def from_dict(cls, d: dict) -> Credential:
        """From field names to values (as every decoder produces); unknown names are refused."""
        from ..domain.errors import InputFileError

        unknown = set(d) - set(FIELD_NAMES)
        if unknown:
            raise InputFileError(f"unknown credential field(s): {', '.join(sorted(unknown))}")
        kw: dict[str, Any] = {
            attr: d.get(name) for name, attr, _ in FIELDS if d.get(name) not in (None, "")
        }
        if kw.get("profile") not in PROFILES:
            raise InputFileError(
                f"credential profile {kw.get('profile')!r} is not one of {', '.join(PROFILES)}"
            )
        missing = [n for n in REQUIRED[kw["profile"]] if not d.get(n)]
        if missing:
            raise InputFileError(missing_message(kw["profile"], missing))
        return cls(**kw)


def missing_message(profile: str, missing: list[str], device_sn: str | None = None) -> str:
    """Why a credential lacking ``missing`` fields cannot be used, and the fix, in one line."""
    whose = f" of {device_sn}" if device_sn else ""
    why = ""
    if set(missing) <= set(ADDED_IN_V2):
        why = ", which Bootstrap Device requires (a file written before enosprov burned them)"
    return f"{profile} credential{whose} lacks {', '.join(missing)}{why}: {REEXPORT}"


assert [f.name for f in fields(Credential)] == [a for _, a, _ in FIELDS]
