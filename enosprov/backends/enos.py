"""The EnOS backend: the DPS v2.5 application and device APIs behind the Backend interface.

Registration groups and master data groups cannot be read from EnOS (console only), so they come
from the profile (``EnosConfig.groups``). Batches fan out over a bounded thread pool
(``EnosConfig.workers``) under an optional client-side rate limit. A create whose answer was lost
is never blindly repeated: the deviceSn is looked up first, so a batch never registers a device
twice. See docs/enos-api.md for every endpoint and what is enosprov's own choice.
"""

from __future__ import annotations

import functools
import threading
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from typing import cast

from ..domain.errors import (
    BackendUnavailableError,
    ConflictError,
    InvalidArgumentError,
    NotFoundError,
    RefusedError,
)
from ..domain.models import (
    OUTCOME_FAILED,
    SORTABLE_FIELDS,
    ConnectionInfo,
    Device,
    MasterDataGroup,
    NewDevice,
    Page,
    RegisterOutcome,
    RegistrationGroup,
    SearchQuery,
    Sorter,
    canonical_json,
)
from . import fql
from .base import MAX_PAGE_SIZE, Backend, ChunkHook, Resigner, compare_registered
from .enos_config import EnosConfig, GroupConfig
from .http import ApiClient, DeviceClient, OutcomeUnknown, backoff_delay

BUILTIN = MasterDataGroup(
    id="builtin", name="Built-in master data", description="the built-in master data only"
)
LOOKUP_SLICE = 500  # deviceSns per search request when classifying a batch
SCAN_ORDER = (Sorter("createTime", "ASC"), Sorter("sn", "ASC"))  # full scans: a stable order


class EnosBackend(Backend):
    name = "enos"
    label = "EnOS"

    def __init__(self, config: EnosConfig, *, api: ApiClient | None = None) -> None:
        self.config = config
        self.api = api or ApiClient(config)
        self._device: DeviceClient | None = None
        self._pool: ThreadPoolExecutor | None = None
        self._lock = threading.Lock()
        self._mdg_cache: dict[str, MasterDataGroup] = {}
        self.last_request_id: str | None = None  # of the last single-request change

    def close(self) -> None:
        if self._pool:
            self._pool.shutdown(wait=True)
        self.api.close()
        if self._device:
            self._device.close()

    def __enter__(self) -> EnosBackend:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # -- groups (from the profile) ---------------------------------------------------------------

    def _call(self, action: str, body: dict, **kw) -> dict:
        """A single-request change; its EnOS requestId is kept for the audit journal."""
        envelope = self.api.call(action, body, **kw)
        self.last_request_id = envelope.get("requestId")
        return envelope

    def _group_config(self, group: str) -> GroupConfig | None:
        for g in self.config.groups:
            if group in (g.group_id, g.name):
                return g
        return None

    def get_group(self, group: str) -> RegistrationGroup:
        g = self._group_config(group)
        if g is None:
            # Not in the profile: usable for the application APIs, with built-in master data.
            g = GroupConfig(group_id=group)
        return RegistrationGroup(
            group_id=g.group_id,
            name=g.name or g.group_id,
            product_key=g.product_key or "",
            masterdata_group_id=f"file:{g.masterdata_file}" if g.masterdata_file else "builtin",
            group_secret=g.secret or "",
            sign_scheme=g.sign_scheme,
            sn_pattern=g.sn_pattern,
            timezone=g.timezone,
        )

    def list_groups(self) -> list[RegistrationGroup]:
        return [self.get_group(g.group_id) for g in self.config.groups]

    @property
    def dps_url(self) -> str | None:
        return self.config.dps_url

    def group_secret_error(self, group: str) -> str | None:
        """Why the profile could not supply the group's secret, if it could not."""
        g = self._group_config(group)
        return g.secret_error if g else None

    def create_group(self, group: RegistrationGroup) -> RegistrationGroup:
        raise RefusedError(
            "EnOS has no API to create registration groups: create it in the EnOS console",
            hint="then add it to the profile: enosprov config add-group PROFILE GROUP_ID ...",
        )

    def create_masterdata_group(self, mdg: MasterDataGroup) -> MasterDataGroup:
        raise RefusedError(
            "EnOS has no API to create master data groups: create it in the EnOS console",
            hint="describe it in a TOML file and name it in the profile (config add-group "
            "--masterdata FILE)",
        )

    def get_masterdata_group(self, mdg_id: str) -> MasterDataGroup:
        if mdg_id == "builtin":
            return BUILTIN
        if not mdg_id.startswith("file:"):
            raise NotFoundError(
                f"master data group {mdg_id!r} not found",
                hint="with a profile, master data comes from the group's `masterdata` TOML file",
            )
        if mdg_id not in self._mdg_cache:
            from ..domain.masterdata_file import load_masterdata_group

            self._mdg_cache[mdg_id] = load_masterdata_group(mdg_id[5:])
        return self._mdg_cache[mdg_id]

    def list_masterdata_groups(self) -> list[MasterDataGroup]:
        seen = {"builtin": BUILTIN}
        for g in self.list_groups():
            seen.setdefault(g.masterdata_group_id, self.get_masterdata_group(g.masterdata_group_id))
        return list(seen.values())

    def device_counts(self) -> dict[str, int]:
        return {
            g.group_id: self.search(SearchQuery(group_id=g.group_id, page_size=1)).total
            for g in self.config.groups
        }

    # -- application API ------------------------------------------------------------------------

    def create(
        self,
        group_id: str,
        *,
        count: int = 1,
        desc: str | None = None,
        batch_tag: dict | None = None,
        device_data: dict | None = None,
    ) -> list[str]:
        body = _drop_none(
            {
                "groupId": group_id,
                "count": count,
                "desc": desc,
                "batchTag": batch_tag,
                "deviceData": device_data,
            }
        )
        device_sn = (device_data or {}).get("deviceSn")
        if device_sn is None or count != 1:
            try:
                return list(self.api.call("create", body, safe_to_repeat=False)["data"] or [])
            except OutcomeUnknown as exc:
                raise BackendUnavailableError(
                    f"the outcome of creating {count} blank device(s) is unknown ({exc})",
                    hint="search the group before retrying: blank devices cannot be deduplicated",
                ) from None
        return [self._create_one(group_id, device_sn, body)]

    def _create_one(self, group_id: str, device_sn: str, body: dict) -> str:
        """Create one device; after a lost answer, look its deviceSn up before trying again."""
        retries = self.config.retries
        for attempt in range(retries + 1):
            try:
                return self.api.call("create", body, safe_to_repeat=False)["data"][0]
            except OutcomeUnknown:
                found = self.find_by_device_sn(group_id, device_sn)
                if found is not None:
                    return found.sn
                if attempt < retries:
                    self.api._sleep(backoff_delay(attempt))
        raise BackendUnavailableError(
            f"could not create deviceSn {device_sn} after {retries + 1} attempts",
            hint="retrying the batch is safe: registered rows are skipped",
        )

    def find_by_device_sn(self, group_id: str, device_sn: str) -> Device | None:
        page = self.search(SearchQuery(group_id=group_id, device_sns=(device_sn,), page_size=2))
        return page.items[0] if page.items else None

    def get(self, sn: str) -> Device:
        if not sn:
            raise InvalidArgumentError("OrgId/sn is required", enos_code=35400)
        return Device.from_dict(self.api.call("get", query={"sn": sn}, method="GET")["data"])

    def search(self, query: SearchQuery) -> Page:
        if not 1 <= query.page_size <= MAX_PAGE_SIZE:
            raise InvalidArgumentError(
                f"Invalid Argument pageSize must be between 1 and {MAX_PAGE_SIZE}", enos_code=99400
            )
        for sorter in query.sorters:
            if sorter.field not in SORTABLE_FIELDS or sorter.order not in ("ASC", "DESC"):
                raise InvalidArgumentError(
                    f"Invalid Argument sorters: cannot sort by {sorter.field} {sorter.order}",
                    hint=f"sort by one of {', '.join(SORTABLE_FIELDS)}, ASC or DESC",
                    enos_code=99400,
                )
        expression, rest = fql.render(query)
        if _has_filters(rest) or not _server_sortable(query):
            # DPS cannot search or sort by these: scan every match, then sort and page here.
            matches = list(self.iter_devices(query))
            for s in reversed(query.sorters):
                matches.sort(
                    key=functools.partial(_sort_key, name=s.field), reverse=s.order == "DESC"
                )
            start = (query.page_no - 1) * query.page_size
            return Page(matches[start : start + query.page_size], query.page_no,
                        query.page_size, len(matches))  # fmt: skip
        doc = self.api.call("search", _search_body(expression, query))
        raw, total = doc.get("data") or [], _total(doc)
        if total is None:
            total = (query.page_no - 1) * query.page_size + len(raw)
        want = min(query.page_size, max(0, total - (query.page_no - 1) * query.page_size))
        if raw and len(raw) < want:  # the server serves shorter pages than asked
            raw = self._fill_page(expression, query, total, raw)
        return Page([Device.from_dict(d) for d in raw], query.page_no, query.page_size, total)

    def probe_group(self, group_id: str, page_no: int = 1) -> dict:
        """One Search Device request for one device of ``group_id`` (page ``page_no``): its
        envelope (code, requestId, pagination), for `enosprov doctor`. Raises as every call
        does."""
        return self.api.call("search", probe_body(group_id, page_no))

    def _fill_page(self, expression: str, query: SearchQuery, total: int, first: list) -> list:
        """Page ``query.page_no`` of ``query.page_size`` read from a server that serves at most
        ``s`` devices a page (``s`` found by asking for page 1)."""
        if query.page_no == 1:
            served = len(first)
        else:
            doc = self.api.call("search", _search_body(expression, replace(query, page_no=1)))
            served = len(doc.get("data") or []) or len(first)
        start = (query.page_no - 1) * query.page_size
        end = min(start + query.page_size, total)
        rows: list = []
        for k in range(start // served, (end - 1) // served + 1):
            page = replace(query, page_no=k + 1, page_size=served)
            rows.extend(self.api.call("search", _search_body(expression, page)).get("data") or [])
        skip = start - (start // served) * served
        return rows[skip : skip + (end - start)]

    def iter_devices(self, query: SearchQuery) -> Iterator[Device]:
        """Every match, oldest first (createTime, then sn: a stable order while devices are
        added), each sn once. Reads until ``pagination.totalSize`` devices were seen or a page
        comes back empty; a server that serves shorter pages than asked is read at its own page
        size, never stopped at the first short page."""
        expression, rest = fql.render(query)
        size, page_no = MAX_PAGE_SIZE, 1
        seen: set[str] = set()
        while True:
            page_query = replace(query, page_no=page_no, page_size=size, sorters=SCAN_ORDER)
            doc = self.api.call("search", _search_body(expression, page_query))
            items = doc.get("data") or []
            total = _total(doc)
            fresh = 0
            for raw in items:
                dev = Device.from_dict(raw)
                if dev.sn in seen:
                    continue
                seen.add(dev.sn)
                fresh += 1
                if _matches(dev, rest):
                    yield dev
            if not items or not fresh or (total is not None and len(seen) >= total):
                return
            if page_no == 1 and len(items) < size:
                if total is None or len(items) >= total:
                    return  # everything fitted on one page
                size = len(items)  # the server's own page size: read on at that size
            page_no += 1

    def update(
        self,
        sn: str,
        *,
        desc: str | None = None,
        batch_tag: dict | None = None,
        device_data: dict | None = None,
    ) -> str:
        body = _drop_none(
            {"sn": sn, "desc": desc, "batchTag": batch_tag, "deviceData": device_data}
        )
        return self._call("update", body)["data"]

    def delete(self, group_id: str, sns: Sequence[str]) -> list[str]:
        return list(self._call("delete", {"groupId": group_id, "snList": list(sns)})["data"])

    def allocate(self, sn: str, *, device_data: dict | None = None) -> Device:
        """Allocate DPS Device: ``{"sn", "deviceData"?}`` [DOC]. The target, when the caller
        chooses one, travels as the built-in master data deviceData.regionId/orgId."""
        body = _drop_none({"sn": sn, "deviceData": device_data or None})
        return Device.from_dict(self._call("allocate", body)["data"])

    def reset_allocation(self, group_id: str, sns: Sequence[str]) -> list[str]:
        """Reset Device Allocation Status: ``{"groupId", "sns"}`` [DOC]."""
        body = {"groupId": group_id, "sns": list(sns)}
        return list(self._call("resetAllocationStatus", body)["data"])

    def replace(self, sn: str, replacement_sn: str) -> Device:
        body = {"sn": sn, "replacementSn": replacement_sn}
        try:
            return Device.from_dict(self._call("replace", body, safe_to_repeat=False)["data"])
        except OutcomeUnknown:
            # Done if the original is gone and the replacement exists.
            new = self.get(replacement_sn)
            try:
                self.get(sn)
            except NotFoundError:
                return new
            return Device.from_dict(self._call("replace", body)["data"])

    # -- bulk registration ----------------------------------------------------------------------

    def next_batch_order(self) -> int | None:
        return None  # EnOS numbers each create call itself

    def register_batch(
        self,
        group_id: str,
        records: Sequence[NewDevice],
        *,
        batch_order: int | None = None,
        dry_run: bool = False,
        on_commit: ChunkHook | None = None,
    ) -> list[RegisterOutcome]:
        existing = self._existing(group_id, [r.device_sn for r in records])
        outcomes: list[RegisterOutcome | None] = []
        todo: list[tuple[int, NewDevice]] = []
        seen: dict[str, tuple] = {}
        for rec in records:
            data = rec.canonical_data()
            tag = rec.batch_tag.get("defaultValue") if rec.batch_tag else None
            prior = existing.get(rec.device_sn) or seen.get(rec.device_sn)
            if prior is None:
                seen[rec.device_sn] = (None, data, rec.desc, tag)
                outcomes.append(RegisterOutcome(rec.device_sn, "created") if dry_run else None)
                todo.append((len(outcomes) - 1, rec))
                continue
            outcomes.append(compare_registered(rec.device_sn, prior, data, rec.desc, tag))
        if dry_run:  # every row has its outcome: no None was appended
            return cast("list[RegisterOutcome]", outcomes)
        pool = self._executor()
        futures = [(i, rec, pool.submit(self._register_one, group_id, rec)) for i, rec in todo]
        for i, rec, fut in futures:
            try:
                outcomes[i] = fut.result()
            except (ConflictError, BackendUnavailableError) as exc:
                # the others of the chunk still count (and reach the journal)
                outcomes[i] = RegisterOutcome(rec.device_sn, OUTCOME_FAILED, None, exc.message)
        # the None slots were todo's, each filled above (or its exception propagated)
        done = cast("list[RegisterOutcome]", outcomes)
        if on_commit is not None:
            on_commit(None, done)
        return done

    def _register_one(self, group_id: str, rec: NewDevice) -> RegisterOutcome:
        body = _drop_none(
            {
                "groupId": group_id,
                "count": 1,
                "desc": rec.desc,
                "batchTag": rec.batch_tag,
                "deviceData": {"deviceSn": rec.device_sn, **rec.data()},
            }
        )
        try:
            return RegisterOutcome(
                rec.device_sn, "created", self._create_one(group_id, rec.device_sn, body)
            )
        except ConflictError:
            # Registered meanwhile (another station): same data is skipped, other data a conflict.
            dev = self.find_by_device_sn(group_id, rec.device_sn)
            if dev is None:
                raise
            tag = rec.batch_tag.get("defaultValue") if rec.batch_tag else None
            return compare_registered(
                rec.device_sn, _prior(dev), rec.canonical_data(), rec.desc, tag
            )

    def _existing(self, group_id: str, device_sns: list[str]) -> dict[str, tuple]:
        found: dict[str, tuple] = {}
        for start in range(0, len(device_sns), LOOKUP_SLICE):
            part = tuple(device_sns[start : start + LOOKUP_SLICE])
            for dev in self.iter_devices(SearchQuery(group_id=group_id, device_sns=part)):
                found[dev.device_sn] = _prior(dev)
        return found

    def _executor(self) -> ThreadPoolExecutor:
        with self._lock:
            if self._pool is None:
                self._pool = ThreadPoolExecutor(
                    max_workers=max(1, self.config.workers), thread_name_prefix="enosprov-enos"
                )
            return self._pool

    # -- device side ----------------------------------------------------------------------------

    def _device_client(self) -> DeviceClient:
        if not self.config.dps_url:
            raise InvalidArgumentError(
                "the profile has no DPS device endpoint",
                hint="set it: enosprov config create ... --dps-url https://iot-dps-ENV.envisioniot.com",
            )
        with self._lock:
            if self._device is None:
                self._device = DeviceClient(
                    self.config.dps_url, timeout=self.config.timeout,
                    retries=self.config.retries, config=self.config,
                )  # fmt: skip
            return self._device

    def bootstrap(
        self,
        *,
        group_id: str,
        device_sn: str,
        timestamp: int,
        sign: str,
        sign_method: str = "sha256",
        device_name: dict | None = None,
        timezone: str | None = None,
        resign: Resigner | None = None,
    ) -> ConnectionInfo:
        def body(ts: int, sig: str) -> dict:
            return _drop_none(
                {
                    "deviceSn": device_sn,
                    "groupId": group_id,
                    "dpsSignMethod": sign_method,
                    "dpsSignTimestamp": ts,
                    "dpsSign": sig,
                    "deviceName": device_name,
                    "timezone": timezone,
                }
            )

        data = self._device_client().post("/dev/bootstrap", _signed(body, timestamp, sign, resign))
        return ConnectionInfo.from_dict(data)

    def get_connection_info(
        self,
        *,
        sn: str,
        timestamp: int,
        sign: str,
        sign_method: str = "sha256",
        resign: Resigner | None = None,
    ) -> ConnectionInfo:
        def body(ts: int, sig: str) -> dict:
            return {"self": {"sn": sn, "timestamp": ts, "sign": sig}, "signMethod": sign_method}

        data = self._device_client().post("/dev/get/conn", _signed(body, timestamp, sign, resign))
        return ConnectionInfo.from_dict(data, sn=sn)


def _signed(body, timestamp: int, sign: str, resign: Resigner | None):
    """Bodies for each attempt of a device call: the caller's signature first, then (when the
    caller can sign again) a fresh signature with a strictly later timestamp per retry."""
    first = True

    def make() -> dict:
        nonlocal first
        if first or resign is None:
            first = False
            return body(timestamp, sign)
        return body(*resign())

    return make


def probe_body(group_id: str, page_no: int = 1) -> dict:
    """The documented Search Device body for one device of ``group_id`` (page ``page_no``)."""
    query = SearchQuery(group_id=group_id, page_size=1, page_no=page_no)
    expression, _rest = fql.render(query)
    return _search_body(expression, query)


def _drop_none(d: dict) -> dict:
    return {k: v for k, v in d.items() if v is not None}


def _search_body(expression: str, q: SearchQuery) -> dict:
    return {
        "expression": expression,
        "pagination": {
            "pageNo": q.page_no,
            "pageSize": q.page_size,
            "sorters": [{"field": s.field, "order": s.order} for s in q.sorters],
        },
    }


def _total(doc: dict) -> int | None:
    """``pagination.totalSize`` of a search answer (``total`` from older gateways), if any."""
    pag = doc.get("pagination") or {}
    total = pag.get("totalSize", pag.get("total"))
    return int(total) if isinstance(total, (int, str)) and str(total).isdigit() else None


def _server_sortable(query: SearchQuery) -> bool:
    return all(s.field in fql.SORT_FIELDS for s in query.sorters)


def _sort_key(dev: Device, name: str):
    value = {
        "createTime": dev.create_time,
        "updateTime": dev.update_time,
        "sn": dev.sn,
        "deviceSn": dev.device_sn,
        "batchOrder": dev.batch_order,
    }.get(name)
    return (value is None, value if value is not None else 0)


def _has_filters(rest: SearchQuery) -> bool:
    return any(getattr(rest, name) is not None for name in fql.CLIENT_SIDE)


def _matches(dev: Device, rest: SearchQuery) -> bool:
    return (
        (rest.batch_tag is None or dev.batch_tag_text == rest.batch_tag)
        and (rest.allocate_status is None or dev.allocate_status == rest.allocate_status)
        and (rest.connect_status is None or dev.connect_status == rest.connect_status)
    )


def _prior(dev: Device) -> tuple:
    data = {k: v for k, v in dev.device_data.items() if k != "deviceSn"}
    return (dev.sn, canonical_json(data), dev.desc, dev.batch_tag_text)
