"""The emulated API gateway (APIM): the token service and the check of every signed request.

Rules (docs/enos-api.md): ``encryption = sha256_hex(appKey + timestamp + appSecret)`` for a token,
``apim-signature = sha256_hex(token + paramsData + timestamp + appSecret)`` for a request, both
timestamps in ms and accepted within +-10 minutes of the emulator's clock, and a value already seen
within that window is a replay (1001).

Token choices [ENOSPROV]: tokens are ``secrets.token_hex(16)`` kept in memory (a restart forgets
them). ``token/get`` returns the current token again, with its remaining lifetime as ``expire``,
while at least half of its lifetime is left (EnOS documents "the same token before expiry"); after
that it issues a new one, so a client never receives a token about to expire. ``token/refresh``
always issues a new token with the full lifetime; the old one stays valid until it expires. A
refresh names a token: unknown gives 1204, expired 1203. Tokens are valid only with the one app key.
"""

from __future__ import annotations

import heapq
import hmac
import math
import secrets
import threading
import time
from collections.abc import Callable, Mapping

from ..backends import apim

WINDOW_MS = 10 * 60 * 1000  # timestamps accepted within +-10 min; replays remembered as long
SUCCESS = 0
DUPLICATED = 1001
APP_KEY_NOT_FOUND = 1002
INVALID_ENCRYPTION = 1003
INVALID_PARAMETER = 1004
EMPTY_PARAMETER = 1202
TOKEN_EXPIRED = 1203
REFRESH_FAILED = 1204


class Rejected(Exception):
    """A token request or a signed request the gateway refuses; ``code`` is the APIM code."""

    def __init__(self, code: int, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


class SeenRecently:
    """Values seen while their timestamp is still acceptable (thread-safe, memory bounded).

    A value signed at ``ts_ms`` is remembered until ``ts_ms + window_ms`` (plus one second), after
    which the timestamp check refuses it anyway. Used for the gateway's token encryptions and
    request signatures (1001) and for the device signatures of bootstrap and get/conn (35601).
    """

    def __init__(self, clock: Callable[[], float], window_ms: int = WINDOW_MS) -> None:
        self.clock = clock
        self.window_ms = window_ms
        self._seen: dict[str, float] = {}  # value -> forget after (epoch seconds)
        self._expiry: list[tuple[float, str]] = []  # heap of (forget after, value)
        self._lock = threading.Lock()

    def __len__(self) -> int:
        with self._lock:
            return len(self._seen)

    def add(self, value: str, ts_ms: int, window_ms: int | None = None) -> bool:
        """Remember ``value`` signed at ``ts_ms``; False if it is remembered already. It is kept
        until its timestamp leaves the window (``window_ms``, default the instance's)."""
        now = self.clock()
        window = self.window_ms if window_ms is None else window_ms
        forget_after = (ts_ms + window) / 1000 + 1
        with self._lock:
            self._prune(now)
            if value in self._seen:
                return False
            self._seen[value] = forget_after
            heapq.heappush(self._expiry, (forget_after, value))
            return True

    def discard(self, value: str) -> None:
        """Forget ``value`` (a call that was refused after all: its signature was not used)."""
        with self._lock:
            self._seen.pop(value, None)

    def _prune(self, now: float) -> None:
        while self._expiry and self._expiry[0][0] < now:
            forget_after, value = heapq.heappop(self._expiry)
            if self._seen.get(value) == forget_after:  # not discarded and added again since
                del self._seen[value]


def _timestamp(value: object) -> int:
    """A ms timestamp given as a JSON integer or a string of digits (the Go SDK sends text)."""
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    if isinstance(value, str) and value.isascii() and value.isdigit():
        return int(value)
    raise Rejected(INVALID_PARAMETER, "invalid parameter: timestamp must be epoch milliseconds")


def _same(a: str, b: str) -> bool:
    return hmac.compare_digest(a.encode("utf-8"), b.encode("utf-8"))


class Gateway:
    """Token issuing and request verification for one app key / secret pair."""

    def __init__(
        self,
        app_key: str,
        app_secret: str,
        *,
        token_ttl: int = 7200,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if not app_key or not app_secret:
            raise ValueError("the emulator needs an app key and an app secret")
        if token_ttl < 1:
            raise ValueError("token_ttl must be at least 1 second")
        self.app_key = app_key
        self._secret = app_secret
        self.token_ttl = token_ttl
        self.clock = clock
        self._tokens: dict[str, float] = {}  # token -> expiry (epoch seconds)
        self._current: str | None = None
        self._lock = threading.Lock()
        self._encryptions = SeenRecently(clock)
        self._signatures = SeenRecently(clock)

    def __repr__(self) -> str:  # never the secret
        return f"Gateway(app_key={self.app_key!r}, token_ttl={self.token_ttl})"

    # -- token service ------------------------------------------------------------------------

    def get_token(self, body: Mapping) -> dict:
        """``token/get``: ``data`` of a success, or raise Rejected."""
        self._check_encryption(body)
        with self._lock:
            now = self.clock()
            self._prune(now)
            current = self._current
            if current is not None and self._tokens.get(current, 0) - now >= self.token_ttl / 2:
                return {"accessToken": current, "expire": math.ceil(self._tokens[current] - now)}
            return self._issue(now)

    def refresh_token(self, body: Mapping) -> dict:
        """``token/refresh``: a new token for a known, unexpired one, or raise Rejected."""
        old = body.get("accessToken")
        if old is None or old == "":
            raise Rejected(EMPTY_PARAMETER, "empty parameter: accessToken")
        if not isinstance(old, str):
            raise Rejected(INVALID_PARAMETER, "invalid parameter: accessToken must be a string")
        self._check_encryption(body)
        with self._lock:
            now = self.clock()
            expiry = self._tokens.get(old)
            if expiry is None:
                raise Rejected(REFRESH_FAILED, "refresh failed: unknown accessToken")
            if expiry <= now:
                raise Rejected(TOKEN_EXPIRED, "token expired")
            return self._issue(now)

    def _check_encryption(self, body: Mapping) -> None:
        for name in ("appKey", "encryption", "timestamp"):
            if body.get(name) is None or body.get(name) == "":
                raise Rejected(EMPTY_PARAMETER, f"empty parameter: {name}")
        app_key, encryption = body["appKey"], body["encryption"]
        if not isinstance(app_key, str) or not isinstance(encryption, str):
            raise Rejected(
                INVALID_PARAMETER, "invalid parameter: appKey/encryption must be strings"
            )
        ts = _timestamp(body["timestamp"])
        if not _same(app_key, self.app_key):
            raise Rejected(APP_KEY_NOT_FOUND, "appKey not found")
        self._check_window(ts)
        # signed over the timestamp as sent (a JSON number or its text)
        expected = apim.token_encryption(app_key, body["timestamp"], self._secret)
        if not _same(encryption, expected):
            raise Rejected(INVALID_ENCRYPTION, "invalid encryption")
        if not self._encryptions.add(encryption, ts):
            raise Rejected(DUPLICATED, "duplicated encryption")

    def _check_window(self, ts_ms: int) -> None:
        if abs(self.clock() * 1000 - ts_ms) > WINDOW_MS:
            raise Rejected(
                INVALID_PARAMETER, "invalid parameter: timestamp is outside +-10 minutes"
            )

    def _issue(self, now: float) -> dict:
        token = secrets.token_hex(16)
        self._tokens[token] = now + self.token_ttl
        self._current = token
        return {"accessToken": token, "expire": self.token_ttl}

    def _prune(self, now: float) -> None:
        # expired tokens are kept one window longer so that refresh can say 1203, not 1204
        horizon = now - WINDOW_MS / 1000
        for token in [t for t, exp in self._tokens.items() if exp < horizon]:
            del self._tokens[token]

    # -- application requests -----------------------------------------------------------------

    def verify_request(self, headers: Mapping[str, str], query: Mapping, body: bytes) -> None:
        """Check the three apim headers of a request; raise Rejected (sent as HTTP 401)."""
        values = {}
        for name in (apim.HEADER_TOKEN, apim.HEADER_TIMESTAMP, apim.HEADER_SIGNATURE):
            value = headers.get(name, "")
            if not value:
                raise Rejected(EMPTY_PARAMETER, f"empty parameter: header {name} is missing")
            values[name] = value
        token = values[apim.HEADER_TOKEN]
        ts_text = values[apim.HEADER_TIMESTAMP]
        with self._lock:
            expiry = self._tokens.get(token)
        if expiry is None or expiry <= self.clock():
            raise Rejected(TOKEN_EXPIRED, "token expired or unknown")
        ts = _timestamp(ts_text)
        self._check_window(ts)
        text = body.decode("utf-8", "replace")
        expected = apim.request_signature(token, query, text, ts_text, self._secret)
        signature = values[apim.HEADER_SIGNATURE]
        if not _same(signature, expected):
            raise Rejected(INVALID_ENCRYPTION, "signature mismatch")
        if not self._signatures.add(signature, ts):
            raise Rejected(DUPLICATED, "duplicated signature (replayed request)")
