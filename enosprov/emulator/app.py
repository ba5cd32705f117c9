"""The emulator as a plain WSGI application: the EnOS API contract over a local store.

Paths (docs/enos-api.md):

- ``POST /apim-token-service/v2.0/token/get`` and ``.../token/refresh``: the token service
  (enosprov.emulator.auth); answers ``{"status", "msg", "business", "data"}`` with HTTP 200, also
  when ``status`` is an error code.
- ``/dps-service/v2.5/pvs/device?action=ACTION&orgId=ORG``: the DPS application API. A request the
  gateway refuses (headers, token, timestamp, signature, replay) gets HTTP 401 and the APIM code in
  the envelope; business errors get HTTP 200 and the EnOS code; an unexpected failure HTTP 500
  and 99500 (logged here, never a traceback to the client).
- ``POST /dev/bootstrap`` and ``/dev/get/conn``: the DPS device API, no gateway token; ``data``
  is the connection info with the device secret (pk, dk, ds, murl, hurl, sn).

Every response carries a ``requestId`` (uuid4) in its body and in the ``x-request-id`` header.

Faults (``Faults``) apply to the DPS application and device calls only, never to the token
service: ``latency_ms`` is slept first; a ``fail_rate`` share is answered 429 (``Retry-After: 0``)
or 500, half each, without carrying out the call; a ``drop_rate`` share has its connection cut,
half before the call is carried out and half after it (its response is lost). A cut takes one of
two forms, half each and independent of before/after, so that no exception class tells the client
whether the call happened. Seen by ``requests`` (measured, see tests/test_emulator.py):

- *reset*: the socket is closed with nothing sent -> ``requests.exceptions.ConnectionError``
  (``RemoteDisconnected('Remote end closed connection without response')``);
- *truncated*: status line and headers sent, ``Content-Length`` announces the whole body but only
  its first half is sent, then the socket is closed -> ``requests.exceptions.ChunkedEncodingError``
  (``IncompleteRead``); note it is *not* a subclass of ``ConnectionError``.

The reset form needs waitress (it raises waitress's ``ClientDisconnected``). With a ``seed`` the
fault decisions follow a fixed sequence in the order requests arrive (five draws per call).

Limits [ENOSPROV]: a request announcing a body larger than ``max_body_bytes`` (default 1 MiB) is
refused with HTTP 413 and 99400 before its body is read (waitress refuses it even earlier, with
its own 413, when started by enosprov.emulator.server); a body without ``Content-Length`` is read
as empty. A device signature (bootstrap ``dpsSign``, get/conn ``self.sign``, for that identity and
timestamp) is used once: sent again while its timestamp is still accepted, it is refused with 35601
"Verify not pass: signature already used", and no secret is returned.
"""

from __future__ import annotations

import contextlib
import json
import logging
import random
import re
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import parse_qsl

from ..backends import apim
from ..backends.local import DEFAULT_CLOCK_SKEW_MS, LocalBackend
from ..domain.errors import EnosprovError, InvalidArgumentError, NotFoundError
from ..domain.models import RegistrationGroup
from ..plantdb import is_database_url, redact
from . import contract
from .actions import ACTIONS, DEVICE_CALLS
from .auth import INVALID_PARAMETER, TOKEN_EXPIRED, Gateway, Rejected, SeenRecently

APP_PATH = "/dps-service/v2.5/pvs/device"
TOKEN_PATHS = (apim.TOKEN_GET_PATH, apim.TOKEN_REFRESH_PATH)
KNOWN_PATHS = (APP_PATH, *TOKEN_PATHS, *DEVICE_CALLS)
CONTENT_TYPE = apim.CONTENT_TYPE
DEFAULT_MAX_BODY_BYTES = 1024 * 1024  # [ENOSPROV] the largest request body accepted: 1 MiB
SIGNATURE_USED = "Verify not pass: signature already used"
logger = logging.getLogger("enosprov.serve")

_REASONS = {200: "OK", 401: "Unauthorized", 403: "Forbidden", 404: "Not Found",
            405: "Method Not Allowed", 413: "Request Entity Too Large",
            429: "Too Many Requests", 500: "Internal Server Error"}  # fmt: skip


@dataclass(frozen=True)
class Faults:
    """Injected faults for client tests and demos (DPS calls only)."""

    latency_ms: int = 0
    fail_rate: float = 0.0
    drop_rate: float = 0.0
    seed: int | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.latency_ms, int) or self.latency_ms < 0:
            raise InvalidArgumentError("latency must be a whole number of ms, 0 or more")
        for name in ("fail_rate", "drop_rate"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise InvalidArgumentError(f"{name.replace('_', ' ')} must be between 0 and 1")

    @property
    def active(self) -> bool:
        return bool(self.latency_ms or self.fail_rate or self.drop_rate)

    def describe(self) -> str:
        if not self.active:
            return "none"
        parts = [
            f"latency {self.latency_ms} ms",
            f"fail rate {self.fail_rate:g} (429/500)",
            f"drop rate {self.drop_rate:g} (cut before/after the call)",
        ]
        if self.seed is not None:
            parts.append(f"seed {self.seed}")
        return ", ".join(parts)


TOKEN_REFUSAL_SHAPES = ("401", "403", "200-code", "200-status")
LIMIT_SHAPES = ("http", "200-code", "200-status")


@dataclass(frozen=True)
class Behaviour:
    """[ENOSPROV] choices where EnOS documents nothing, each an option of ``enosprov serve``
    whose default serves the documented contract (docs/enos-api.md).

    ``page_size``: search serves at most this many devices a page, whatever was asked (None:
    as asked, up to the documented 1,000). ``token_refusal``: how an expired or unknown token is
    answered: HTTP 401 or 403 with ``code`` 1203, or HTTP 200 with ``code`` or ``status`` 1203.
    ``limit_shape``: how the ``fail_rate`` 429s are answered: HTTP 429, or HTTP 200 with ``code``
    or ``status`` 429.
    """

    page_size: int | None = None
    token_refusal: str = "401"
    limit_shape: str = "http"
    date_skew_s: int = 0  # the Date header of every answer is this far off (doctor's clock test)

    def __post_init__(self) -> None:
        if self.page_size is not None and not 1 <= self.page_size <= 1000:
            raise InvalidArgumentError("page size must be between 1 and 1000")
        if self.token_refusal not in TOKEN_REFUSAL_SHAPES:
            raise InvalidArgumentError(
                f"token refusal must be one of {', '.join(TOKEN_REFUSAL_SHAPES)}"
            )
        if self.limit_shape not in LIMIT_SHAPES:
            raise InvalidArgumentError(f"limit shape must be one of {', '.join(LIMIT_SHAPES)}")

    def describe(self) -> str:
        skew = f", Date header {self.date_skew_s:+d} s" if self.date_skew_s else ""
        return (
            f"page size {self.page_size or 'as asked'}, expired token answered "
            f"{self.token_refusal}, 429 answered {self.limit_shape}{skew}"
        )


def _in_shape(shape: str, status: int, code: int, msg: str, rid: str, headers=()) -> _Reply:
    """An error ``code`` as HTTP ``status``, or as HTTP 200 with it in ``code`` or ``status``."""
    if shape.endswith("-status"):
        return _Reply(200, {"status": code, "msg": msg, "requestId": rid, "data": None})
    if shape.endswith("-code"):
        return _Reply(200, _envelope(code, msg, rid))
    return _Reply(status, _envelope(code, msg, rid), headers)


@dataclass
class _Reply:
    status: int
    body: dict
    headers: tuple[tuple[str, str], ...] = ()

    @property
    def code(self) -> object:
        return self.body.get("code", self.body.get("status", "-"))


@dataclass(frozen=True)
class _Plan:
    """What the faults do to one DPS call."""

    fail: int | None = None  # 429 or 500
    drop: str | None = None  # "before" or "after"
    form: str = "reset"  # "reset" or "truncated"

    @property
    def label(self) -> str | None:
        if self.fail:
            return str(self.fail)
        return f"drop-{self.drop}/{self.form}" if self.drop else None


def _envelope(code: int, msg: str, rid: str, data: object = None, **extra) -> dict:
    return {"code": code, "msg": msg, "requestId": rid, "data": data, **extra}


def _enos_code(err: EnosprovError) -> int:
    if err.enos_code is not None:
        return err.enos_code
    if isinstance(err, InvalidArgumentError):
        return 99400
    if isinstance(err, NotFoundError):
        return 99404
    return 99500


def _json_object(body: bytes) -> dict | None:
    try:
        value = json.loads(body)
    except (ValueError, UnicodeDecodeError):
        return None
    return value if isinstance(value, dict) else None


def _content_length(environ: dict) -> int:
    """The announced body length; 0 when absent or not a number (the body is then not read)."""
    try:
        return max(int(environ.get("CONTENT_LENGTH") or 0), 0)
    except ValueError:
        return 0


def _read_body(environ: dict, length: int) -> bytes:
    stream = environ.get("wsgi.input")
    if stream is None or length <= 0:
        return b""
    return stream.read(length)


def _device_signature(path: str, body: dict) -> tuple[str, int] | None:
    """``(key, timestamp)`` naming the signature of a device call (identity, timestamp and
    signature; hex compared case-blind, as the check does), or None when a field is missing."""
    auth: object
    if path == "/dev/bootstrap":
        auth, names = body, ("deviceSn", "dpsSignTimestamp", "dpsSign")
    else:
        auth, names = body.get("self"), ("sn", "timestamp", "sign")
    if not isinstance(auth, dict):
        return None
    identity, ts, sign = (auth.get(n) for n in names)
    if not (isinstance(identity, str) and isinstance(sign, str) and sign):
        return None
    if not isinstance(ts, int) or isinstance(ts, bool):
        return None
    return f"{identity}\n{ts}\n{sign.lower()}", ts


def _safe(text: str) -> str:
    """A query value fit for a log line (no control characters, bounded)."""
    return re.sub(r"[^A-Za-z0-9_.-]", "?", text)[:40]


class EmulatorApp:
    """The WSGI callable. Thread-safe: one LocalBackend per server thread."""

    def __init__(
        self,
        store_path: str | Path,
        *,
        app_key: str,
        app_secret: str,
        token_ttl: int = 7200,
        org_id: str | None = None,
        faults: Faults | None = None,
        behaviour: Behaviour | None = None,
        clock_skew_ms: int | None = DEFAULT_CLOCK_SKEW_MS,
        log: Callable[[str], None] | None = None,
        max_body_bytes: int = DEFAULT_MAX_BODY_BYTES,
    ) -> None:
        if isinstance(max_body_bytes, bool) or not isinstance(max_body_bytes, int):
            raise InvalidArgumentError("the body size limit must be a whole number of bytes")
        if max_body_bytes < 1:
            raise InvalidArgumentError("the body size limit must be at least 1 byte")
        self.max_body_bytes = max_body_bytes
        # a file, or the store in a PostgreSQL database (its URL as given)
        self.store_path: str | Path = (
            store_path if is_database_url(store_path) else Path(store_path)
        )
        self.behaviour = behaviour or Behaviour()
        self.gateway = Gateway(app_key, app_secret, token_ttl=token_ttl)
        self.org_id = org_id or None
        self.faults = faults or Faults()
        self.clock_skew_ms = clock_skew_ms
        self.log = log or logger.info
        self._rng = random.Random(self.faults.seed)
        self._rng_lock = threading.Lock()
        self._device_signatures = SeenRecently(time.time, DEFAULT_CLOCK_SKEW_MS)
        self._local = threading.local()
        self._backends: list[LocalBackend] = []
        self._backends_lock = threading.Lock()
        self._backend()  # open (and migrate) the store now: a bad path fails at start-up

    def __repr__(self) -> str:
        return f"EmulatorApp(store={redact(str(self.store_path))!r}, gateway={self.gateway!r})"

    # -- resources --------------------------------------------------------------------------

    def _backend(self) -> LocalBackend:
        be = getattr(self._local, "backend", None)
        if be is None:
            if is_database_url(self.store_path):  # the store in a PostgreSQL database
                from ..backends.pg_store import PgStore

                be = PgStore(
                    str(self.store_path),
                    clock_skew_ms=self.clock_skew_ms,
                    refuse_retired_bootstrap=False,
                )
            else:
                be = LocalBackend(
                    self.store_path,
                    durable=False,
                    clock_skew_ms=self.clock_skew_ms,
                    refuse_retired_bootstrap=False,
                )
            self._local.backend = be
            with self._backends_lock:
                self._backends.append(be)
        be.clock_skew_ms = self.clock_skew_ms  # an attribute tests may change while serving
        return be

    def groups(self) -> list[RegistrationGroup]:
        """The registration groups the emulator serves (those of its store)."""
        return self._backend().list_groups()

    def close(self) -> None:
        """Close every store connection (call once the server has stopped)."""
        with self._backends_lock:
            backends, self._backends = self._backends, []
        for be in backends:
            with contextlib.suppress(Exception):  # best effort: the server is already down
                be.close()
        self._local = threading.local()

    # -- WSGI -------------------------------------------------------------------------------

    def __call__(self, environ: dict, start_response):
        started = time.perf_counter()
        rid = str(uuid.uuid4())
        method = environ.get("REQUEST_METHOD", "GET")
        path = environ.get("PATH_INFO") or "/"
        query = dict(parse_qsl(environ.get("QUERY_STRING", ""), keep_blank_values=True))
        plan = _Plan()
        length = _content_length(environ)
        try:
            if length > self.max_body_bytes:  # refused unread: the announced length suffices
                msg = f"Invalid Argument: request body larger than {self.max_body_bytes} bytes"
                reply = _Reply(413, _envelope(99400, msg, rid))
            else:
                body = _read_body(environ, length)
                reply, plan = self._route(method, path, query, body, environ, rid)
        except Exception:
            logger.exception("internal error (requestId %s)", rid)
            reply = _Reply(500, _envelope(99500, "Internal error", rid))
        payload = json.dumps(reply.body, ensure_ascii=False, separators=(",", ":")).encode()
        label = path if path in KNOWN_PATHS else re.sub(r"[^\x21-\x7e]", "?", path)[:100]
        label += f" action={_safe(query['action'])}" if "action" in query else ""
        status = "-" if plan.drop else reply.status
        code = "-" if plan.drop == "before" else reply.code
        ms = (time.perf_counter() - started) * 1000
        fault = f" fault={plan.label}" if plan.label else ""
        self.log(f"{method} {label} status={status} code={code} ms={ms:.1f} requestId={rid}{fault}")
        headers = [
            ("Content-Type", CONTENT_TYPE),
            ("Content-Length", str(len(payload))),
            ("x-request-id", rid),
            *reply.headers,
        ]
        if self.behaviour.date_skew_s:  # a gateway whose clock is off (else the server's Date)
            from email.utils import formatdate

            headers.append(
                ("Date", formatdate(time.time() + self.behaviour.date_skew_s, usegmt=True))
            )
        if plan.drop and plan.form == "reset":
            _reset_connection()
        start_response(f"{reply.status} {_REASONS.get(reply.status, 'OK')}", headers)
        if plan.drop:  # truncated: Content-Length promises more than is sent; waitress then closes
            return [payload[: len(payload) // 2]]
        return [payload]

    def _route(self, method, path, query, body, environ, rid) -> tuple[_Reply, _Plan]:
        if path in TOKEN_PATHS:
            return self._token(method, path, body, rid), _Plan()
        if path != APP_PATH and path not in DEVICE_CALLS:
            return _Reply(404, _envelope(99404, f"Not found: {path}", rid)), _Plan()
        plan = self._plan()
        if plan.fail == 429:
            msg = "Too many requests (emulator fault)"
            shape = self.behaviour.limit_shape
            return _in_shape(shape, 429, 429, msg, rid, (("Retry-After", "0"),)), plan
        if plan.fail == 500:
            return _Reply(500, _envelope(99500, "Internal error (emulator fault)", rid)), plan
        if plan.drop == "before":
            return _Reply(200, _envelope(99500, "connection dropped (emulator fault)", rid)), plan
        if path == APP_PATH:
            return self._application(method, query, body, environ, rid), plan
        return self._device(method, path, body, rid), plan

    def _plan(self) -> _Plan:
        f = self.faults
        if not f.active:
            return _Plan()
        if f.latency_ms:
            time.sleep(f.latency_ms / 1000)
        with self._rng_lock:
            r_fail, r_status, r_drop, r_when, r_form = (self._rng.random() for _ in range(5))
        form = "reset" if r_form < 0.5 else "truncated"
        if r_fail < f.fail_rate:
            return _Plan(fail=429 if r_status < 0.5 else 500)
        if r_drop < f.drop_rate:
            return _Plan(drop="before" if r_when < 0.5 else "after", form=form)
        return _Plan()

    # -- token service ----------------------------------------------------------------------

    def _token(self, method: str, path: str, body: bytes, rid: str) -> _Reply:
        def answer(status: int, msg: str, data: object = None, http: int = 200) -> _Reply:
            out = {"status": status, "msg": msg, "business": "apim-token-service", "data": data}
            return _Reply(http, {**out, "requestId": rid})

        if method != "POST":
            return answer(INVALID_PARAMETER, "invalid parameter: use POST", http=405)
        if not body.strip():
            return answer(1202, "empty parameter: no body")
        request = _json_object(body)
        if request is None:
            return answer(INVALID_PARAMETER, "invalid parameter: the body must be a JSON object")
        try:
            if path == apim.TOKEN_GET_PATH:
                data = self.gateway.get_token(request)
            else:
                data = self.gateway.refresh_token(request)
        except Rejected as r:
            return answer(r.code, r.message)
        return answer(0, "SUCCESS", data)

    # -- application API --------------------------------------------------------------------

    def _application(self, method, query, body, environ, rid) -> _Reply:
        headers = {
            name: environ.get("HTTP_" + name.upper().replace("-", "_"), "")
            for name in (apim.HEADER_TOKEN, apim.HEADER_TIMESTAMP, apim.HEADER_SIGNATURE)
        }
        try:
            self.gateway.verify_request(headers, query, body)
        except Rejected as r:
            if r.code == TOKEN_EXPIRED:
                shape = self.behaviour.token_refusal
                return _in_shape(shape, 403 if shape == "403" else 401, r.code, r.message, rid)
            return _Reply(401, _envelope(r.code, r.message, rid))
        org = query.get("orgId", "")
        if not org:
            return _Reply(200, _envelope(35400, "OrgId is required", rid))
        if self.org_id and org != self.org_id:
            return _Reply(200, _envelope(35603, "Unauthorized to access the resource", rid))
        action = query.get("action", "")
        entry = ACTIONS.get(action)
        if entry is None:
            msg = f"Invalid Argument action: unknown action {_safe(action)!r}"
            return _Reply(200, _envelope(99400, msg, rid))
        want, handler = entry
        if method != want:
            msg = f"Invalid Argument: action {action} needs {want}, not {_safe(method)}"
            return _Reply(405, _envelope(99400, msg, rid), (("Allow", want),))
        request: dict = {}
        if want == "POST":
            posted = _json_object(body)
            if posted is None:
                msg = "Invalid Argument: the body must be a JSON object"
                return _Reply(200, _envelope(99400, msg, rid))
            request = posted
        try:
            contract.check_query(action, query)
            contract.check_body(contract.BODY[action], request)
            data, extra = handler(self._backend(), query, request, self.behaviour)
        except EnosprovError as err:
            return _Reply(200, _envelope(_enos_code(err), err.message, rid))
        return _Reply(200, _envelope(0, "OK", rid, data, **extra))

    # -- device API -------------------------------------------------------------------------

    def _device(self, method: str, path: str, body: bytes, rid: str) -> _Reply:
        if method != "POST":
            msg = f"Invalid Argument: {path} needs POST"
            return _Reply(405, _envelope(99400, msg, rid), (("Allow", "POST"),))
        request = _json_object(body)
        if request is None:
            msg = "Invalid Argument: the body must be a JSON object"
            return _Reply(200, _envelope(99400, msg, rid))
        try:
            contract.check_body(contract.DEVICE_BODY[path], request)
        except EnosprovError as err:
            return _Reply(200, _envelope(_enos_code(err), err.message, rid))
        signature = _device_signature(path, request)
        if signature is not None and not self._use_signature(*signature):
            return _Reply(200, _envelope(35601, SIGNATURE_USED, rid))
        try:
            data = DEVICE_CALLS[path](self._backend(), request)
        except BaseException as err:
            if signature is not None:  # refused or failed: the signature was not used
                self._device_signatures.discard(signature[0])
            if isinstance(err, EnosprovError):
                return _Reply(200, _envelope(_enos_code(err), err.message, rid))
            raise
        return _Reply(200, _envelope(0, "OK", rid, data))

    def _use_signature(self, key: str, ts_ms: int) -> bool:
        """Reserve a device signature: False if it was used (or is in use) already. It is
        remembered while its timestamp is within the accepted skew; with the skew check off,
        for the default skew after it was used."""
        skew = self.clock_skew_ms
        if not skew:
            skew, ts_ms = DEFAULT_CLOCK_SKEW_MS, max(ts_ms, int(time.time() * 1000))
        return self._device_signatures.add(key, ts_ms, skew)


def _reset_connection() -> None:
    """Make waitress close the connection without sending anything."""
    try:
        from waitress.channel import ClientDisconnected
    except ImportError:  # another server: it answers 500 or closes, either is a failure
        raise ConnectionAbortedError("connection dropped (emulator fault)") from None
    raise ClientDisconnected("connection dropped (emulator fault)")


def create_app(
    store_path: str | Path,
    *,
    app_key: str,
    app_secret: str,
    token_ttl: int = 7200,
    org_id: str | None = None,
    faults: Faults | None = None,
    behaviour: Behaviour | None = None,
    clock_skew_ms: int | None = DEFAULT_CLOCK_SKEW_MS,
    log: Callable[[str], None] | None = None,
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES,
) -> EmulatorApp:
    """The emulator WSGI application over the store at ``store_path`` (created if missing).

    ``log`` receives one line per request (default: the ``enosprov.serve`` logger at INFO);
    ``clock_skew_ms`` is the accepted skew of device signature timestamps; a request announcing
    a body over ``max_body_bytes`` is refused (413, 99400) without reading it (the servers of
    enosprov.emulator.server take the same limit from the app).
    """
    return EmulatorApp(
        store_path,
        app_key=app_key,
        app_secret=app_secret,
        token_ttl=token_ttl,
        org_id=org_id,
        faults=faults,
        behaviour=behaviour,
        clock_skew_ms=clock_skew_ms,
        log=log,
        max_body_bytes=max_body_bytes,
    )
