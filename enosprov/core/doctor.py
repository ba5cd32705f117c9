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
    finally:
        enos.close()
    report.checks.append(_device_endpoint(http, config))
    return report


def _gateway(report: DoctorReport, http: Any, config: EnosConfig) -> str | None:
    from ..backends.http import describe_failure

    t0 = time.perf_counter()
    try:
        resp = http.get(config.api_url, timeout=config.timeout)
    except Exception as exc:  # every transport failure, in words
        tls = "certificate" in str(exc).lower() or "ssl" in type(exc).__name__.lower()
        report.checks.append(
            Check(
                "gateway", FAIL, f"{config.api_url} did not answer: {describe_failure(exc)}",
                time.perf_counter() - t0,
                remedy="check the profile's api_url, the network and any proxy"
                + ("; the gateway's TLS certificate is not trusted here: install the CA "
                   "certificate, or set REQUESTS_CA_BUNDLE" if tls else ""),
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
