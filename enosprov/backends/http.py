"""HTTP plumbing of the EnOS backend: APIM tokens, signed calls, envelopes, retries, rate limit.

Retries are bounded and named (``EnosConfig.retries``), with exponential backoff, full jitter and
``Retry-After`` honoured, on 429, 5xx and connection errors. A call whose outcome is unknown (the
request may have been carried out: a 5xx, a timeout, a cut connection) is only retried here when
it is safe to repeat; otherwise ``OutcomeUnknown`` goes back to the caller, which checks the state
first (a create looks its deviceSn up before trying again). Nothing here prints or exits.
"""

from __future__ import annotations

import json
import random
import threading
import time
from collections.abc import Callable
from typing import Any
from urllib.parse import urlsplit

from ..domain.errors import AuthError, BackendUnavailableError, NotFoundError, enos_error
from ..token_cache import TokenCache, cache_key
from . import apim
from .enos_config import EnosConfig

DPS_PATH = "/dps-service/v2.5/pvs/device"
BACKOFF_BASE = 0.1  # seconds; doubled per attempt, full jitter
BACKOFF_CAP = 5.0
TOKEN_MARGIN = 60.0  # seconds before expiry at which a cached token is renewed
USER_AGENT = "enosprov"


# API gateway codes (EnOS token service, docs/enos-api.md). How a gateway reports a refused
# token is not documented: HTTP 401 or 403, or HTTP 200 with the code in ``code`` or ``status``.
DUPLICATED = 1001  # the same encryption / signature twice: sign again with a fresh timestamp
TOKEN_EXPIRED = 1203  # expired or unknown token: renew once and retry
# Looked up with whatever code an answer carries (any JSON value), hence the object keys.
AUTH_HINTS: dict[object, str] = {
    1002: "check the profile's access key (enosprov config show)",
    1003: "check the profile's access secret, and that nothing rewrites the request body",
    1004: "check the machine's clock: the gateway accepts timestamps within minutes of its own",
}
PERMISSION_CODES = (35603, 99403)  # business refusals: the service account lacks a role


def gateway_code(doc: dict) -> object:
    """The envelope's code: ``code`` (DPS) or ``status`` (token service style)."""
    code = doc.get("code")
    return doc.get("status") if code is None else code


def token_refused(status: int, code: object) -> bool:
    """The token was refused (expired or invalid) in any of the shapes a gateway may use."""
    if code == TOKEN_EXPIRED:
        return True
    if status in (401, 403):
        return code not in AUTH_HINTS and code not in PERMISSION_CODES
    return False


def _message(doc: dict, status: int) -> str:
    code = gateway_code(doc)
    text = doc.get("msg") or f"HTTP {status}"
    return f"{text} ({code})" if isinstance(code, int) else str(text)


class OutcomeUnknown(Exception):
    """The request may or may not have been carried out (its answer was lost)."""


def backoff_delay(attempt: int, retry_after: float | None = None, rnd=random.random) -> float:
    """Seconds to wait before retry number ``attempt`` (0-based)."""
    delay = min(BACKOFF_CAP, BACKOFF_BASE * (2**attempt)) * rnd()
    if retry_after is not None:
        delay = max(delay, retry_after)
    return delay


def _retry_after(resp) -> float | None:
    value = resp.headers.get("Retry-After")
    try:
        return max(0.0, float(value)) if value is not None else None
    except ValueError:
        return None


class RateLimiter:
    """At most ``rate`` calls per second across threads (a token bucket of one second's burst)."""

    def __init__(self, rate: float | None, clock=time.monotonic, sleep=time.sleep) -> None:
        self.rate = rate
        self._clock = clock
        self._sleep = sleep
        self._lock = threading.Lock()
        self._tat = 0.0

    def acquire(self) -> None:
        """Wait until this call fits the rate (GCRA: a theoretical arrival time per call)."""
        if not self.rate:
            return
        with self._lock:
            now = self._clock()
            tat = max(self._tat, now)
            wait = tat - now - 1.0  # calls may run up to one second ahead: the burst
            self._tat = tat + 1.0 / self.rate
        if wait > 0:
            self._sleep(wait)


def new_session(pool: int, config: EnosConfig | None = None):
    """A pooled session; with ``config``, through its proxy and verifying TLS against its CA
    bundle (else the system's, and the usual HTTPS_PROXY/REQUESTS_CA_BUNDLE variables)."""
    import requests
    from requests.adapters import HTTPAdapter

    s = requests.Session()
    if config is not None and config.proxy:
        s.proxies = {"http": config.proxy, "https": config.proxy}
    if config is not None and config.ca_bundle:
        s.verify = config.ca_bundle
    adapter = HTTPAdapter(pool_connections=4, pool_maxsize=max(pool, 4), max_retries=0)
    s.mount("http://", adapter)
    s.mount("https://", adapter)
    s.headers["User-Agent"] = USER_AGENT
    return s


def _transport_errors() -> tuple[type[Exception], ...]:
    import requests

    return (requests.ConnectionError, requests.Timeout, requests.exceptions.ChunkedEncodingError)


class ApiClient:
    """Signed calls to the EnOS application APIs through the API gateway.

    The access token is kept in memory; with a ``token_cache`` (:class:`TokenCache`) it is also
    shared with other processes: read from the cache before asking the gateway, and written
    there whenever a new one is fetched (a token the gateway refused is replaced). Without one
    (a library user constructing the client), nothing is written to disk."""

    def __init__(
        self,
        config: EnosConfig,
        *,
        sleep: Callable[[float], None] = time.sleep,
        token_cache: TokenCache | None = None,
    ):
        self.config = config
        self.base = config.api_url.rstrip("/")
        self._sleep = sleep
        self._session = new_session(config.workers + 2, config)
        self._limiter = RateLimiter(config.max_rps, sleep=sleep)
        self._token_lock = threading.Lock()
        self._token: str | None = None
        self._token_expiry = 0.0
        self.token_cache = token_cache
        # the requestId of the last call EnOS answered (one thread's view; `enosprov doctor`)
        self.last_request_id: str | None = None
        self._cache_key = (
            cache_key(config.profile, self.base, config.app_key) if token_cache else ""
        )

    def close(self) -> None:
        self._session.close()

    # -- tokens -------------------------------------------------------------------------------

    def token(self, renew: bool = False) -> str:
        """A valid access token: this client's, the token cache's, or a new one from the
        gateway; ``renew`` (the gateway refused the current one) always asks the gateway."""
        with self._token_lock:
            if not renew and self._token and time.monotonic() <= self._token_expiry - TOKEN_MARGIN:
                return self._token
            cached = None if renew else self._cached_token()
            if cached is not None:
                token, ttl = cached
            else:
                token, ttl = self._fetch_token()
                self._cache_token(token, ttl)
            self._token = token
            self._token_expiry = time.monotonic() + ttl
            return token

    def _cached_token(self) -> tuple[str, float] | None:
        """(token, seconds left) from the token cache, when it holds one valid for longer
        than TOKEN_MARGIN."""
        if self.token_cache is None:
            return None
        found = self.token_cache.load(self._cache_key)
        if found is None:
            return None
        left = found.remaining()
        return (found.token, left) if left > TOKEN_MARGIN else None

    def _cache_token(self, token: str, ttl: float) -> None:
        if self.token_cache is not None:
            self.token_cache.save(
                self._cache_key, token, time.time() + ttl,
                profile=self.config.profile, api_url=self.base,
            )  # fmt: skip

    def _fetch_token(self) -> tuple[str, float]:
        cfg = self.config

        def body() -> dict:  # a fresh timestamp (and encryption) for every attempt
            ts = int(time.time() * 1000)
            return {
                "appKey": cfg.app_key,
                "encryption": apim.token_encryption(cfg.app_key, ts, cfg.app_secret),
                "timestamp": ts,
            }

        for _ in range(5):
            try:
                resp = _post_repeatable(
                    self._session, self.base + apim.TOKEN_GET_PATH, body,
                    timeout=cfg.timeout, retries=cfg.retries, sleep=self._sleep,
                )  # fmt: skip
            except _Exhausted as exc:
                raise BackendUnavailableError(
                    exc.message(self.base, "getting an access token"),
                    hint="check the API gateway URL (and proxy) of the profile and the network; "
                    "retrying later is safe",
                ) from None
            doc = _json(resp)
            status = doc.get("status", doc.get("code"))
            if status == 0 and isinstance(doc.get("data"), dict):
                data = doc["data"]
                return str(data["accessToken"]), float(data.get("expire") or 7200)
            if status != 1001:
                break
            # same encryption twice (another client in the same millisecond): a new timestamp
            self._sleep(0.002 + random.random() * 0.01)
        if status == DUPLICATED:  # not a key problem: other clients keep colliding with us
            raise BackendUnavailableError(
                "the token service kept answering 'duplicated encryption' (1001): other "
                "clients sign with the same access key in the same milliseconds",
                hint="retrying is safe",
                enos_code=DUPLICATED,
            )
        raise AuthError(
            f"the API gateway refused the access key: {doc.get('msg') or status} ({status})",
            hint=AUTH_HINTS.get(status, "check the profile's access key and secret")
            + " (enosprov config show)",
            enos_code=status if isinstance(status, int) else None,
        )

    # -- signed calls -------------------------------------------------------------------------

    def call(
        self,
        action: str,
        body: dict | None = None,
        *,
        query: dict | None = None,
        method: str = "POST",
        safe_to_repeat: bool = True,
    ) -> dict:
        """Call one DPS action; return the envelope (``code`` 0). Raises enosprov errors."""
        cfg = self.config
        params = {"action": action, "orgId": cfg.org_id, **(query or {})}
        raw = "" if body is None else json.dumps(body, ensure_ascii=False, separators=(",", ":"))
        renewed = False
        what = "no answer"
        started = time.monotonic()
        attempts = cfg.retries + 1
        for attempt in range(attempts):
            self._limiter.acquire()
            token = self.token()
            ts = int(time.time() * 1000)
            headers = {
                apim.HEADER_TOKEN: token,
                apim.HEADER_TIMESTAMP: str(ts),
                apim.HEADER_SIGNATURE: apim.request_signature(
                    token, params, raw, ts, cfg.app_secret
                ),
                "Content-Type": apim.CONTENT_TYPE,
            }
            try:
                resp = self._session.request(
                    method,
                    self.base + DPS_PATH,
                    params=params,
                    data=raw.encode("utf-8") if body is not None else None,
                    headers=headers,
                    timeout=cfg.timeout,
                )
            except _transport_errors() as exc:
                what = describe_failure(exc, cfg.timeout)
                if not safe_to_repeat:
                    raise OutcomeUnknown(what) from None
                _pause(self._sleep, self.base, what, attempt, attempts, backoff_delay(attempt))
                continue
            status = resp.status_code
            if status >= 500:
                what = _status_words(status)
                if not safe_to_repeat:
                    raise OutcomeUnknown(what)
                delay = backoff_delay(attempt, _retry_after(resp))
                _pause(self._sleep, self.base, what, attempt, attempts, delay)
                continue
            doc = {} if status == 429 else _json(resp)
            code = gateway_code(doc)
            if status == 429 or code == 429:  # rate limited, refused before doing anything
                what = _status_words(429)
                delay = backoff_delay(attempt, _retry_after(resp))
                _pause(self._sleep, self.base, what, attempt, attempts, delay)
                continue
            if code == DUPLICATED:  # the same signature seen twice: sign again, later
                what = "the gateway saw the same signature twice (1001)"
                self._sleep(0.002 + random.random() * 0.003)
                continue
            if token_refused(status, code):
                if renewed:
                    raise AuthError(
                        f"the API gateway refused a new access token: {_message(doc, status)}",
                        hint="check the profile's access key and secret, and the clock",
                        enos_code=code if isinstance(code, int) else None,
                        request_id=doc.get("requestId"),
                    )
                renewed = True  # expired or invalid token: get a new one, once
                self.token(renew=True)
                continue
            if (status in (401, 403) and code not in PERMISSION_CODES) or code in AUTH_HINTS:
                raise AuthError(
                    f"the API gateway refused the request: {_message(doc, status)}",
                    hint=AUTH_HINTS.get(code, "check the access key/secret and the clock"),
                    enos_code=code if isinstance(code, int) else None,
                    request_id=doc.get("requestId"),
                )
            envelope = _envelope(doc, status)
            self.last_request_id = envelope.get("requestId")
            return envelope
        raise BackendUnavailableError(
            _unreachable(self.base, what, attempts, started, action),
            hint="retrying later is safe; lower the profile's workers or rate if this persists",
        )


class DeviceClient:
    """The device-side DPS calls (no API gateway): bootstrap and get/conn."""

    def __init__(
        self,
        dps_url: str,
        *,
        timeout: float,
        retries: int,
        sleep=time.sleep,
        config: EnosConfig | None = None,
    ) -> None:
        self.base = dps_url.rstrip("/")
        self.timeout = timeout
        self.retries = retries
        self._sleep = sleep
        self._session = new_session(4, config)  # the profile's proxy and CA bundle

    def close(self) -> None:
        self._session.close()

    def post(self, path: str, make_body: Callable[[], dict]) -> dict:
        """POST to /dev/...; returns the response data (envelope or flat object).

        ``make_body`` is called for every attempt: a retry carries a body signed afresh, never
        the same signed body twice."""
        try:  # bootstrap and get/conn are safe to repeat
            resp = _post_repeatable(
                self._session, self.base + path, make_body,
                timeout=self.timeout, retries=self.retries, sleep=self._sleep,
            )  # fmt: skip
        except _Exhausted as exc:
            raise BackendUnavailableError(
                exc.message(self.base, f"the DPS device endpoint, {path}"),
                hint="check the DPS URL (profile dps_url) and the network; retrying is safe",
            ) from None
        doc = _json(resp)
        if "code" not in doc and "pk" in doc:  # a flat answer, as the overview example shows
            return doc
        return _envelope(doc, resp.status_code).get("data") or {}


class _Exhausted(Exception):
    def __init__(self, what: str, attempts: int, started: float) -> None:
        super().__init__(what)
        self.what, self.attempts, self.started = what, attempts, started

    def message(self, url: str, doing: str) -> str:
        return _unreachable(url, self.what, self.attempts, self.started, doing)


def _post_repeatable(session, url: str, make_body, *, timeout, retries, sleep):
    """POST a call that is safe to repeat: retry cut connections, 429 and 5xx with backoff
    (honouring Retry-After); return the first other response, or raise _Exhausted."""
    started = time.monotonic()
    what = "no answer"
    for attempt in range(retries + 1):
        try:
            resp = session.post(url, json=make_body(), timeout=timeout)
        except _transport_errors() as exc:
            what = describe_failure(exc, timeout)
            _pause(sleep, url, what, attempt, retries + 1, backoff_delay(attempt))
            continue
        if resp.status_code == 429 or resp.status_code >= 500 or _rate_limited_in_body(resp):
            what = _status_words(429 if _rate_limited_in_body(resp) else resp.status_code)
            delay = backoff_delay(attempt, _retry_after(resp))
            _pause(sleep, url, what, attempt, retries + 1, delay)
            continue
        return resp
    raise _Exhausted(what, retries + 1, started)


def _rate_limited_in_body(resp) -> bool:
    """A 429 reported inside an HTTP 200 envelope (``code`` or ``status``)."""
    try:
        doc = resp.json()
    except ValueError:
        return False
    return isinstance(doc, dict) and gateway_code(doc) == 429


def _json(resp) -> dict[str, Any]:
    try:
        doc = resp.json()
    except ValueError:
        raise BackendUnavailableError(
            f"EnOS answered HTTP {resp.status_code} with a body that is not JSON",
            hint="check the API gateway URL in the profile",
        ) from None
    if not isinstance(doc, dict):
        raise BackendUnavailableError("EnOS answered with an unexpected JSON document")
    return doc


def _envelope(doc: dict, status: int) -> dict:
    code = doc.get("code")
    if code == 0:
        return doc
    if code is None:
        raise BackendUnavailableError(f"EnOS answered HTTP {status} without an envelope code")
    msg = str(doc.get("msg") or f"EnOS error {code}")
    raise enos_error(
        int(code), msg, cls=_class_for(int(code), msg), request_id=doc.get("requestId")
    )


def _class_for(code: int, msg: str):
    """EnOS reuses 35601 for "sn not found", "Verify not pass" and "DeviceSn duplicated"."""
    if code != 35601:
        return None
    text = msg.lower()
    if "not found" in text:
        return NotFoundError
    if "verify not pass" in text:
        return AuthError
    return None


def describe_failure(exc: Exception | None, timeout: float | None = None) -> str:
    """What went wrong, in words: never a library's message cut off mid-sentence."""
    if exc is None:
        return "no answer"
    if isinstance(exc, BackendUnavailableError):
        return exc.message
    import requests

    chain = _chain_text(exc)
    secs = f" {timeout:g} s" if timeout else ""
    if isinstance(exc, requests.exceptions.SSLError):
        if "CERTIFICATE_VERIFY_FAILED" in chain or "certificate verify failed" in chain:
            return "its TLS certificate is not trusted (a proxy or a private CA: set the profile's CA bundle)"
        return "the TLS handshake failed"
    if isinstance(exc, requests.exceptions.ProxyError):
        return "the proxy refused or failed the connection"
    if isinstance(exc, requests.exceptions.ConnectTimeout):
        return f"connecting timed out after{secs}"
    if isinstance(exc, requests.exceptions.ReadTimeout):
        return f"no answer within{secs}"
    if isinstance(exc, requests.exceptions.ChunkedEncodingError):
        return "the answer was cut off"
    lowered = chain.lower()
    if any(m in lowered for m in _DNS_MARKS):
        return "the host name does not resolve (DNS)"
    if any(m in lowered for m in _REFUSED_MARKS):
        return "the connection was refused (nothing listens there)"
    if any(m in lowered for m in _CUT_MARKS):
        return "the connection was cut"
    if any(m in lowered for m in _UNREACHABLE_MARKS):
        return "the network is unreachable"
    return f"the connection failed ({type(exc).__name__})"


_DNS_MARKS = ("name or service not known", "nodename nor servname", "getaddrinfo failed",
              "nameresolutionerror", "temporary failure in name resolution",
              "no address associated")  # fmt: skip
_REFUSED_MARKS = ("connection refused", "errno 111", "winerror 10061", "errno 61")
_CUT_MARKS = ("connection reset", "connection aborted", "remotedisconnected", "broken pipe",
              "errno 104", "winerror 10054")  # fmt: skip
_UNREACHABLE_MARKS = ("network is unreachable", "no route to host", "errno 101", "errno 113")


def _chain_text(exc: BaseException) -> str:
    """The text of an exception and of the ones it wraps (requests -> urllib3 -> OSError)."""
    parts, seen = [], set()
    stack: list[BaseException | None] = [exc]
    while stack:
        e = stack.pop()
        if e is None or id(e) in seen:
            continue
        seen.add(id(e))
        parts.append(f"{type(e).__name__}: {e}")
        stack += [e.__cause__, e.__context__, *(a for a in e.args if isinstance(a, BaseException))]
        reason = getattr(e, "reason", None)
        if isinstance(reason, BaseException):
            stack.append(reason)
    return " | ".join(parts)


def _status_words(status: int) -> str:
    if status == 429:
        return "it is rate limiting (HTTP 429)"
    return f"it answered HTTP {status} (a server error)"


def _host(url: str) -> str:
    return urlsplit(url).netloc or url


# The CLI shows retries on a terminal (the library itself never prints): a listener is called
# before each pause with (host, what failed, the attempt that failed, attempts allowed, seconds
# of the pause).
RetryListener = Callable[[str, str, int, int, float], None]
_retry_listener: RetryListener | None = None


def set_retry_listener(listener: RetryListener | None) -> None:
    global _retry_listener
    _retry_listener = listener


def _pause(sleep, url: str, what: str, attempt: int, attempts: int, delay: float) -> None:
    """Before the next attempt: announce it, then wait. After the last one: nothing (the
    caller gives up at once, instead of waiting for an attempt that will not come)."""
    if attempt + 1 >= attempts:
        return
    if _retry_listener is not None:
        _retry_listener(_host(url), what, attempt + 1, attempts, delay)
    sleep(delay)


def _unreachable(url: str, what: str, attempts: int, started: float, doing: str) -> str:
    """One line: which host, what failed, after how many attempts and seconds."""
    took = time.monotonic() - started
    return (
        f"EnOS could not be reached at {_host(url)} ({doing}): {what}, after {attempts} "
        f"attempt{'s' * (attempts != 1)} in {took:.1f} s"
    )
