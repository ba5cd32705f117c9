"""Connection settings of the EnOS backend (built from a profile, or directly by a script)."""

from __future__ import annotations

from dataclasses import dataclass, field

DEFAULT_TIMEOUT = 30.0  # seconds, per HTTP request
DEFAULT_RETRIES = 8  # attempts after the first, on 429 / 5xx / connection errors
DEFAULT_WORKERS = 16  # concurrent requests in a batch
DEFAULT_MAX_RPS: float | None = None  # client-side rate limit (requests per second); None = off


@dataclass(frozen=True)
class GroupConfig:
    """What enosprov knows of a registration group that lives in EnOS (no API lists them)."""

    group_id: str
    name: str | None = None
    secret: str | None = field(default=None, repr=False)  # the group secret, already resolved
    secret_error: str | None = None  # why the secret could not be resolved (env var unset...)
    masterdata_file: str | None = None  # TOML master data definition for CSV validation
    product_key: str | None = None
    sign_scheme: str = "sn-ts-secret"
    sn_pattern: str | None = None
    timezone: str | None = None  # default timezone of its devices, burned when they have none


@dataclass(frozen=True)
class EnosConfig:
    api_url: str  # API gateway, e.g. https://apim-eu2.envisioniot.com
    org_id: str  # the OU (orgId query parameter)
    app_key: str  # service account access key
    app_secret: str = field(repr=False)
    dps_url: str | None = None  # DPS device endpoint, e.g. https://iot-dps-eu2.envisioniot.com
    groups: tuple[GroupConfig, ...] = ()
    timeout: float = DEFAULT_TIMEOUT
    retries: int = DEFAULT_RETRIES
    workers: int = DEFAULT_WORKERS
    max_rps: float | None = DEFAULT_MAX_RPS
    profile: str | None = None  # the profile name it came from, for messages
    proxy: str | None = None  # HTTP(S) proxy for the gateway and the device endpoint
    ca_bundle: str | None = None  # CA certificates (PEM file) that TLS is verified against
