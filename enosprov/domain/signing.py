"""Device-side request signatures (``dpsSign`` for bootstrap, ``sign`` for get/conn).

EnOS documents only the ingredients (SHA-256 over the group secret, the serial number and the
timestamp), not their order. The scheme is therefore pluggable: each scheme is a function
``(identity, timestamp_ms, group_secret) -> lowercase hex``. The local store and the emulator accept
the scheme configured on the registration group; the named default is ``sn-ts-secret``, which follows
the EnOS token-service convention ``sha256(appKey + timestamp + appSecret)``. See docs/signing.md.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Callable

from .errors import InvalidArgumentError

Signer = Callable[[str, int, str], str]

DEFAULT_SCHEME = "sn-ts-secret"


def _sha256(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def sign_sn_ts_secret(identity: str, timestamp: int, secret: str) -> str:
    """sha256(identity + timestamp + secret): the token-service shape. The default."""
    return _sha256(f"{identity}{timestamp}{secret}")


def sign_secret_sn_ts(identity: str, timestamp: int, secret: str) -> str:
    """sha256(secret + identity + timestamp): the order in which EnOS's docs list the inputs."""
    return _sha256(f"{secret}{identity}{timestamp}")


def sign_sorted_kv(identity: str, timestamp: int, secret: str) -> str:
    """sha256("sn" + identity + "timestamp" + timestamp + secret): the MQTT-login shape."""
    return _sha256(f"sn{identity}timestamp{timestamp}{secret}")


SCHEMES: dict[str, Signer] = {
    "sn-ts-secret": sign_sn_ts_secret,
    "secret-sn-ts": sign_secret_sn_ts,
    "sorted-kv": sign_sorted_kv,
}


def get_signer(scheme: str) -> Signer:
    try:
        return SCHEMES[scheme]
    except KeyError:
        raise InvalidArgumentError(
            f"unknown signing scheme {scheme!r}",
            hint="use one of: " + ", ".join(sorted(SCHEMES)),
        ) from None


def register_scheme(name: str, signer: Signer) -> None:
    """Add a scheme (e.g. the one a real EnOS environment turns out to accept)."""
    SCHEMES[name] = signer


def sign(scheme: str, identity: str, timestamp: int, secret: str) -> str:
    return get_signer(scheme)(identity, timestamp, secret)


def verify(scheme: str, identity: str, timestamp: int, secret: str, signature: str) -> bool:
    """Constant-time check of a signature; hex case is ignored."""
    expected = sign(scheme, identity, timestamp, secret).lower()
    return hmac.compare_digest(expected.encode(), (signature or "").lower().encode())


def resigner(
    scheme: str, identity: str, secret: str, first_ts: int
) -> Callable[[], tuple[int, str]]:
    """What a device does to retry a call: sign again, each time with a strictly later
    timestamp than the one before (never the same signed body twice). () -> (timestamp, sign)."""
    import time

    last = first_ts

    def resign() -> tuple[int, str]:
        nonlocal last
        last = max(int(time.time() * 1000), last + 1)
        return last, sign(scheme, identity, last, secret)

    return resign
