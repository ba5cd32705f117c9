"""`enosprov doctor`: prove a profile against its EnOS tenant, read-only (docs/enos-api.md,
"enosprov doctor").

Each check says what it proved, how long it took, the EnOS code and requestId when EnOS
answered with one, and what to do when it failed. Nothing is changed in EnOS. The checks:

1. **gateway**: the API gateway answers over HTTP(S) (TLS verified); its ``Date`` header gives
2. **clock**: how far this computer's clock is from the gateway's (signatures carry timestamps;
   [ENOSPROV] thresholds: up to 60 s passes, up to 5 min warns, more fails);
3. **token**: the access key and secret get an access token;
4. **DPS access**, for each group of the profile: a one-device search in the group (35603: the
   service account has no DPS role); the round trips give
5. **latency** (median);
6. **device endpoint**: the DPS device address (dpsUrl) answers an (invalid, on purpose)
   Bootstrap Device with an EnOS envelope.
"""

from __future__ import annotations

import statistics
import time
from dataclasses import dataclass, field
from email.utils import parsedate_to_datetime
from typing import Any

from ..backends.enos_config import EnosConfig
from ..domain.errors import AuthError, BackendUnavailableError, EnosprovError

SKEW_WARN_S = 60.0  # [ENOSPROV] clock differences up to this pass
SKEW_FAIL_S = 300.0  # and past this fail (EnOS documents no tolerance)

PASS, WARN, FAIL, SKIP = "pass", "warn", "fail", "skip"


@dataclass
class Check:
    name: str
    result: str  # pass | warn | fail | skip
    detail: str
    seconds: float = 0.0
    enos_code: int | None = None
    request_id: str | None = None
    remedy: str | None = None

    def to_dict(self) -> dict:
        return {
            "check": self.name,
            "result": self.result,
            "detail": self.detail,
            "seconds": round(self.seconds, 3),
            "enosCode": self.enos_code,
            "requestId": self.request_id,
            "remedy": self.remedy,
        }


@dataclass
class DoctorReport:
    profile: str | None
    api_url: str
    checks: list[Check] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return all(c.result in (PASS, WARN, SKIP) for c in self.checks)

    @property
    def unreachable(self) -> bool:
        """The gateway could not be reached at all (exit 3: nothing else could be checked)."""
        return any(c.name == "gateway" and c.result == FAIL for c in self.checks)

    def to_dict(self) -> dict:
        return {
            "profile": self.profile,
            "apiUrl": self.api_url,
            "ok": self.ok,
            "checks": [c.to_dict() for c in self.checks],
        }


def run_checks(config: EnosConfig, *, session: Any = None) -> DoctorReport:
    """Every read-only check of ``config`` (a profile's EnosConfig), in order; a check that
    cannot run because an earlier one failed is "skip"."""
    from ..backends.enos import EnosBackend
    from ..backends.http import ApiClient, new_session

    report = DoctorReport(config.profile, config.api_url)
    http = session or new_session(2, config)  # the profile's proxy and CA bundle, as every call
    date = _gateway(report, http, config)
    if report.unreachable:
        report.checks.append(Check("clock", SKIP, "the gateway did not answer"))
        return report
    report.checks.append(_clock(date))
    api = ApiClient(config)
    enos = EnosBackend(config, api=api)
    try:
        if not _token(report, api):
            return report
        times = _groups(report, enos, config)
        report.checks.append(_latency(times))
        if config.groups:
            report.checks.append(_token_shape(http, config))
            report.checks.append(_burst(config))
    finally:
        enos.close()
    report.checks.append(_device_endpoint(http, config))
    return report


def _gateway(report: DoctorReport, http: Any, config: EnosConfig) -> str | None:
    from ..backends.http import describe_failure

    t0 = time.perf_counter()
    try:
        resp = http.get(config.api_url, timeout=config.timeout)
    except Exception as exc:  # every transport failure, in words (describe_failure)
        import requests

        tls = isinstance(exc, requests.exceptions.SSLError)
        report.checks.append(
            Check(
                "gateway", FAIL, f"{config.api_url} did not answer: {describe_failure(exc)}",
                time.perf_counter() - t0,
                remedy="set the profile's ca_bundle to the CA certificate (PEM) the gateway's "
                "certificate is signed with" if tls else
                "check the profile's api_url, the network and its proxy",
            )
        )  # fmt: skip
        return None
    seconds = time.perf_counter() - t0
    scheme = "HTTPS (certificate verified)" if config.api_url.startswith("https") else "HTTP"
    report.checks.append(
        Check(
            "gateway",
            PASS,
            f"{config.api_url} answers over {scheme} (HTTP {resp.status_code})",
            seconds,
        )
    )
    return resp.headers.get("Date")


def _clock(date: str | None) -> Check:
    if not date:
        return Check("clock", SKIP, "the gateway sent no Date header to compare with")
    try:
        server = parsedate_to_datetime(date).timestamp()
    except (TypeError, ValueError):
        return Check("clock", SKIP, f"the gateway's Date header {date!r} is not a date")
    # positive: this computer is ahead. Date drops the gateway's fraction of a second: the
    # difference measured is between the true one and a second more, hence the half second.
    skew = time.time() - server - 0.5
    words = f"this computer's clock is {abs(skew):.0f} s {'ahead of' if skew > 0 else 'behind'}"
    words += " the gateway's (Date header, to the second)"
    if abs(skew) <= SKEW_WARN_S:
        return Check("clock", PASS, words)
    remedy = "synchronize this computer's clock (NTP: w32tm /resync on Windows, timedatectl)"
    if abs(skew) <= SKEW_FAIL_S:
        return Check("clock", WARN, words + "; signatures may be refused", remedy=remedy)
    return Check("clock", FAIL, words + "; signed requests will be refused", remedy=remedy)


def _token(report: DoctorReport, api: Any) -> bool:
    t0 = time.perf_counter()
    try:
        api.token(renew=True)
    except (AuthError, BackendUnavailableError) as err:
        report.checks.append(
            Check(
                "token",
                FAIL,
                err.message,
                time.perf_counter() - t0,
                err.enos_code,
                err.request_id,
                err.hint or "check the profile's access key and secret",
            )
        )
        return False
    report.checks.append(
        Check(
            "token", PASS, "the access key and secret get an access token", time.perf_counter() - t0
        )
    )
    return True


def _groups(report: DoctorReport, enos: Any, config: EnosConfig) -> list[float]:
    times: list[float] = []
    groups = [g.group_id for g in config.groups]
    if not groups:
        report.checks.append(
            Check(
                "DPS access",
                SKIP,
                "the profile names no registration group to search",
                remedy="add one: enosprov config add-group PROFILE GROUP_ID ...",
            )
        )
        return times
    for gid in groups:
        t0 = time.perf_counter()
        try:
            doc = enos.probe_group(gid)
        except EnosprovError as err:
            seconds = time.perf_counter() - t0
            remedy = err.hint
            if err.enos_code == 35603:
                remedy = ("give the service account a DPS role in the EnOS Application Portal "
                          "(35603: Unauthorized to access the resource)")  # fmt: skip
            report.checks.append(
                Check(
                    f"DPS access: {gid}",
                    FAIL,
                    err.message,
                    seconds,
                    err.enos_code,
                    err.request_id,
                    remedy,
                )
            )
            continue
        seconds = time.perf_counter() - t0
        times.append(seconds)
        total = (doc.get("pagination") or {}).get("totalSize")
        devices = f"{total} devices" if isinstance(total, int) else "searchable"
        report.checks.append(
            Check(
                f"DPS access: {gid}",
                PASS,
                f"group {gid}: {devices}",
                seconds,
                doc.get("code"),
                doc.get("requestId"),
            )
        )
    return times


def _token_shape(http: Any, config: EnosConfig) -> Check:
    """How the gateway answers a request signed with an invalid token (a token that never
    existed: the same answer as an expired one, without waiting hours), and whether the
    client renews its token on that answer."""
    import json

    from ..backends import apim
    from ..backends.enos import probe_body
    from ..backends.http import DPS_PATH, gateway_code, token_refused

    token, ts = "enosprov-doctor-invalid-token", int(time.time() * 1000)
    params = {"action": "search", "orgId": config.org_id}
    # the documented body (the same request the DPS access check sends), only the token is bad
    body = json.dumps(probe_body(config.groups[0].group_id), separators=(",", ":"))
    headers = {
        apim.HEADER_TOKEN: token,
        apim.HEADER_TIMESTAMP: str(ts),
        apim.HEADER_SIGNATURE: apim.request_signature(token, params, body, ts, config.app_secret),
        "Content-Type": apim.CONTENT_TYPE,
    }
    t0 = time.perf_counter()
    try:
        resp = http.post(config.api_url.rstrip("/") + DPS_PATH, params=params, data=body,
                         headers=headers, timeout=config.timeout)  # fmt: skip
        doc = resp.json() if resp.content else {}
    except Exception as exc:  # the shape could not be seen: not a failure of the tenant
        return Check("token refusal", SKIP, f"no answer to read: {type(exc).__name__}")
    code = gateway_code(doc) if isinstance(doc, dict) else None
    shape = f"HTTP {resp.status_code}, code {code}"
    seconds = time.perf_counter() - t0
    rid = doc.get("requestId") if isinstance(doc, dict) else None
    if token_refused(resp.status_code, code):
        return Check("token refusal", PASS, f"an invalid token is answered {shape}: the "
                     "client recognizes it and renews its token", seconds,
                     code if isinstance(code, int) else None, rid)  # fmt: skip
    return Check("token refusal", FAIL, f"an invalid token is answered {shape}, which the "
                 "client does not take for a refused token: an expired token would not be "
                 "renewed", seconds, code if isinstance(code, int) else None, rid,
                 "report this shape (enosprov doctor --json) so the client can learn it")  # fmt: skip


BURST = 10  # requests sent at once to see whether the gateway limits the rate


def _burst(config: EnosConfig) -> Check:
    """Rate-limit headroom: BURST one-device searches at once, none retried. EnOS documents
    no rate-limit headers, so this is what can be seen: whether that burst is limited (429)."""
    from concurrent.futures import ThreadPoolExecutor
    from dataclasses import replace

    from ..backends.enos import EnosBackend

    probe = replace(config, retries=0, workers=BURST, max_rps=None)
    gid = config.groups[0].group_id
    t0 = time.perf_counter()
    with EnosBackend(probe) as enos, ThreadPoolExecutor(BURST) as pool:
        enos.api.token()  # one token for the burst
        # different pages: requests signed in the same millisecond must still differ (a
        # gateway refuses a signature it has seen)
        outcomes = list(pool.map(lambda i: _limited(enos, gid, i + 1), range(BURST)))
    seconds = time.perf_counter() - t0
    rate = BURST / seconds if seconds > 0 else float("inf")
    limited = sum(o == "limited" for o in outcomes)
    failed = sum(o == "failed" for o in outcomes)
    detail = f"{BURST} searches at once ({rate:.0f} requests/s): {limited} rate limited"
    if failed:
        detail += f", {failed} failed otherwise"
    if limited:
        return Check("rate limit", WARN, detail, seconds, 429,
                     remedy=f"set the profile's max_requests_per_second below {rate:.0f}")  # fmt: skip
    setting = (f"; the profile limits itself to {config.max_rps:g}/s" if config.max_rps
               else "; the profile sets no limit of its own")  # fmt: skip
    return Check("rate limit", PASS if not failed else WARN, detail + setting, seconds)


def _limited(enos: Any, group_id: str, page_no: int) -> str:
    try:
        enos.probe_group(group_id, page_no)
    except BackendUnavailableError as err:
        return "limited" if "rate limit" in err.message or "429" in err.message else "failed"
    except EnosprovError:
        return "failed"
    return "ok"


def _latency(times: list[float]) -> Check:
    if not times:
        return Check("latency", SKIP, "no DPS call succeeded")
    median = statistics.median(times)
    detail = f"median round trip {median * 1000:.0f} ms over {len(times)} call(s)"
    if median > 2.0:
        return Check("latency", WARN, detail + ": slow; batches will take long",
                     median, remedy="raise the profile's workers for batches")  # fmt: skip
    return Check("latency", PASS, detail, median)


def _device_endpoint(http: Any, config: EnosConfig) -> Check:
    from ..backends.http import describe_failure

    if not config.dps_url:
        return Check("device endpoint", SKIP, "the profile has no dps_url",
                     remedy="set it: enosprov config create ... --dps-url URL")  # fmt: skip
    url = config.dps_url.rstrip("/") + "/dev/bootstrap"
    t0 = time.perf_counter()
    try:  # an invalid request on purpose: an EnOS error envelope proves the endpoint is there
        resp = http.post(url, json={}, timeout=config.timeout)
        doc = resp.json()
    except ValueError:
        return Check("device endpoint", FAIL, f"{url} answered, but not with EnOS JSON",
                     time.perf_counter() - t0, remedy="check the profile's dps_url")  # fmt: skip
    except Exception as exc:
        return Check("device endpoint", FAIL, f"{url} did not answer: {describe_failure(exc)}",
                     time.perf_counter() - t0,
                     remedy="check the profile's dps_url (devices use it to bootstrap)")  # fmt: skip
    seconds = time.perf_counter() - t0
    if not isinstance(doc, dict) or "code" not in doc:
        return Check("device endpoint", FAIL, f"{url} answered without an EnOS envelope",
                     seconds, remedy="check the profile's dps_url")  # fmt: skip
    return Check("device endpoint", PASS,
                 f"{config.dps_url} answers (an empty Bootstrap Device: code {doc['code']})",
                 seconds, doc.get("code"), doc.get("requestId"))  # fmt: skip


# -- write checks on a test group (--write-test) ----------------------------------------------

DOCTOR_PREFIX = "enosprov-doctor-"
SIGNATURE_REFUSED = 35601  # Verify not pass: the scheme (or the clock) is not the tenant's
_SAMPLE = {"Integer": 1, "String": "doctor", "Date": None}  # Date: today; Enum: its first value


@dataclass
class WriteOutcome:
    checks: list[Check]
    device_sn: str
    accepted_scheme: str | None  # the device signature scheme the tenant accepted, if any
    profile_scheme: str
    cleaned: bool


def write_checks(
    enos: Any,
    config: EnosConfig,
    group: str,
    *,
    journal: Any,
    region: str | None = None,
) -> WriteOutcome:
    """Register a throwaway device in ``group`` (a group the user named safe for tests), then
    get, search, update, allocate it with a target in deviceData, bootstrap it as the device
    (each known signature scheme until the tenant accepts one, the profile's first), get its
    connection info, reset and delete it. The delete always runs; a journal record written
    before the device is created, and settled after its delete, lets `doctor --cleanup` find
    what an interrupted run left."""
    import secrets as _secrets

    from ..domain.signing import SCHEMES, sign

    grp = enos.get_group(group)
    device_sn = DOCTOR_PREFIX + _secrets.token_hex(6)
    checks: list[Check] = []
    intent = journal.record("doctor-test", outcome="pending", group_id=grp.group_id,
                            detail={"deviceSn": device_sn})  # fmt: skip
    sn: str | None = None
    accepted: str | None = None
    cleaned = False

    def step(name: str, fn, detail: str) -> Any:
        t0 = time.perf_counter()
        enos.api.last_request_id = None
        try:
            value = fn()
        except EnosprovError as err:
            checks.append(Check(name, FAIL, err.message, time.perf_counter() - t0,
                                err.enos_code, err.request_id, err.hint))  # fmt: skip
            return None
        checks.append(Check(name, PASS, detail, time.perf_counter() - t0, 0,
                            enos.api.last_request_id))  # fmt: skip
        return value if value is not None else True

    try:
        data = {"deviceSn": device_sn, **_sample_data(enos, grp)}
        created = step("write: register", lambda: enos.create(
            grp.group_id, count=1, desc="enosprov doctor (throwaway)", device_data=data
        ), f"registered {device_sn}")  # fmt: skip
        if not created:
            return WriteOutcome(checks, device_sn, None, grp.sign_scheme, cleaned=True)
        sn = created[0]
        step("write: get", lambda: enos.get(sn), f"got {sn}")
        step("write: search", lambda: _found(enos.find_by_device_sn(grp.group_id, device_sn)),
             "found by deviceSn")  # fmt: skip
        step("write: update", lambda: enos.update(sn, desc="enosprov doctor (updated)",
             device_data=data), "master data and description updated")  # fmt: skip
        target_region = region or region_of(config.api_url)
        if target_region:
            target = {**data, "regionId": target_region, "orgId": config.org_id}
            step("write: allocate", lambda: enos.allocate(sn, device_data=target),
                 f"allocated to {target_region} / {config.org_id} (target in deviceData)")  # fmt: skip
        else:
            checks.append(Check("write: allocate", SKIP, "no region known for the target",
                                remedy="pass --region (e.g. eu2)"))  # fmt: skip
        order = [grp.sign_scheme, *(s for s in SCHEMES if s != grp.sign_scheme)]
        tried: list[str] = []
        for scheme in order:
            ts = int(time.time() * 1000)
            t0 = time.perf_counter()
            try:
                enos.bootstrap(group_id=grp.group_id, device_sn=device_sn, timestamp=ts,
                               sign=sign(scheme, device_sn, ts, grp.group_secret),
                               device_name={"defaultValue": device_sn},
                               timezone=data.get("timezone") or grp.timezone or "+00:00")  # fmt: skip
            except EnosprovError as err:
                if err.enos_code != SIGNATURE_REFUSED:  # not about the signature: say so
                    checks.append(Check("write: bootstrap", FAIL, err.message,
                                        time.perf_counter() - t0, err.enos_code,
                                        err.request_id, err.hint))  # fmt: skip
                    tried = []
                    break
                tried.append(f"{scheme} ({err.enos_code})")
                continue
            accepted = scheme
            checks.append(Check("write: bootstrap", PASS,
                                f"the tenant accepts the device signature scheme {scheme}"
                                + (f" (refused: {', '.join(tried)})" if tried else ""),
                                time.perf_counter() - t0))  # fmt: skip
            break
        if accepted is None and tried:
            checks.append(Check(
                "write: bootstrap", FAIL,
                "the tenant accepted none of the known device signature schemes "
                f"({', '.join(tried)}): burned files will not bootstrap on this tenant",
                remedy="the scheme must be found out (docs/signing.md) and added",
            ))  # fmt: skip
        elif accepted is not None:
            scheme = accepted
            step("write: connection info", lambda: _conn(enos, sn, scheme, grp.group_secret),
                 "the device gets its connection info")  # fmt: skip
        step("write: reset", lambda: enos.reset_allocation(grp.group_id, [sn]),
             "allocation reset (reprovisioning)")  # fmt: skip
    finally:
        if sn is not None:
            cleaned = bool(step("write: delete (clean-up)",
                                lambda: enos.delete(grp.group_id, [sn]), f"{device_sn} deleted"))  # fmt: skip
        else:
            cleaned = True
        if cleaned:
            journal.record("doctor-test", group_id=grp.group_id,
                           detail={"deviceSn": device_sn, "settles": intent})  # fmt: skip
    return WriteOutcome(checks, device_sn, accepted, grp.sign_scheme, cleaned)


def cleanup(enos: Any, journal: Any) -> list[str]:
    """Delete what interrupted write checks left: every throwaway device of a "doctor-test"
    record that no later record settles. Returns the deviceSns deleted (or found gone)."""
    pending: dict[int, tuple[str, str]] = {}
    settled: set[int] = set()
    for e in journal.entries(operations=("doctor-test",)):
        if e.outcome == "pending":
            pending[e.id] = (e.group_id or "", e.detail.get("deviceSn", ""))
        elif isinstance(e.detail.get("settles"), int):
            settled.add(e.detail["settles"])
    done = []
    for entry, (group_id, device_sn) in pending.items():
        if entry in settled or not device_sn.startswith(DOCTOR_PREFIX):
            continue
        dev = enos.find_by_device_sn(group_id, device_sn)
        if dev is not None:
            enos.delete(group_id, [dev.sn])
        journal.record("doctor-test", group_id=group_id,
                       detail={"deviceSn": device_sn, "settles": entry, "cleanup": True})  # fmt: skip
        done.append(device_sn)
    return done


def region_of(api_url: str) -> str | None:
    """The EnOS environment in a gateway address (apim-eu2.envisioniot.com -> eu2), if any."""
    import re

    m = re.match(r"https?://apim-([a-z0-9]+)\.", api_url)
    return m.group(1) if m else None


def _found(dev: Any) -> Any:
    if dev is None:
        raise EnosprovError("the device just registered is not found by its deviceSn")
    return dev


def _conn(enos: Any, sn: str, scheme: str, secret: str) -> Any:
    from ..domain.signing import sign

    ts = int(time.time() * 1000)
    return enos.get_connection_info(sn=sn, timestamp=ts, sign=sign(scheme, sn, ts, secret))


def _sample_data(enos: Any, grp: Any) -> dict:
    """A value for each required master data attribute of the group (from the profile's
    master data file), and a timezone."""
    import datetime

    data: dict[str, Any] = {"timezone": grp.timezone or "+00:00"}
    mdg = enos.get_masterdata_group(grp.masterdata_group_id)
    for a in mdg.attributes:
        if not a.required:
            continue
        if a.type == "Enum":
            data[a.identifier] = a.values[0]
        elif a.type == "Date":
            data[a.identifier] = datetime.date.today().isoformat()
        else:
            data[a.identifier] = _SAMPLE.get(a.type, "doctor")
    return data
