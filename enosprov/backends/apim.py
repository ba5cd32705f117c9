"""EnOS API gateway (APIM) authentication, exactly as documented (docs/enos-api.md).

- Token request: ``encryption = sha256_hex(appKey + timestamp + appSecret)`` (lowercase hex).
- Request signature: ``sha256_hex(accessToken + paramsData + timestamp + appSecret)`` where
  ``paramsData`` is every query parameter sorted by key in ASCII order as ``key1value1key2value2``
  followed by the exact body string that is sent.

Shared by the EnOS client and the emulator, so both sides compute the same bytes.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping

TOKEN_GET_PATH = "/apim-token-service/v2.0/token/get"
TOKEN_REFRESH_PATH = "/apim-token-service/v2.0/token/refresh"
HEADER_TOKEN = "apim-accesstoken"
HEADER_SIGNATURE = "apim-signature"
HEADER_TIMESTAMP = "apim-timestamp"
CONTENT_TYPE = "application/json;charset=UTF-8"


def sha256_hex(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def token_encryption(app_key: str, timestamp: int, app_secret: str) -> str:
    """The ``encryption`` field of a token request."""
    return sha256_hex(f"{app_key}{timestamp}{app_secret}")


def params_data(query: Mapping[str, object], body: str | bytes | None) -> str:
    """Sorted ``key+value`` pairs of the query, then the exact body (the documented rule)."""
    if isinstance(body, bytes):
        body = body.decode("utf-8")
    pairs = "".join(f"{k}{'' if query[k] is None else query[k]}" for k in sorted(query))
    return pairs + (body or "")


def request_signature(
    token: str,
    query: Mapping[str, object],
    body: str | bytes | None,
    timestamp: int | str,
    secret: str,
) -> str:
    """The ``apim-signature`` header value (``timestamp``: epoch ms, or the header's text as a
    request carried it, which the emulator checks against)."""
    return sha256_hex(f"{token}{params_data(query, body)}{timestamp}{secret}")
