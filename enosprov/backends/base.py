"""The one backend interface, modelled on the EnOS DPS operations.

Application side (what the DPS application APIs offer): create, get, search, update, delete,
allocate, reset allocation status, replace. Device side: bootstrap and get connection info.
Registration and master data groups are console-only in EnOS; a backend exposes what it knows of
them (the local store keeps them; the EnOS backend reads them from a profile).

``register_batch`` is the bulk, idempotent form of create that batch registration uses: one call per
chunk of rows, each row classified as created, skipped (same data) or conflict (other data).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from typing import Any, Protocol, runtime_checkable

from ..domain.models import (
    ConnectionInfo,
    Device,
    MasterDataGroup,
    NewDevice,
    Page,
    RegisterOutcome,
    RegistrationGroup,
    SearchQuery,
)

MAX_PAGE_SIZE = 1000  # documented DPS search limit
MAX_CREATE_COUNT = 1_000_000  # documented DPS create limit

# A device-side caller's way to sign its request again for a retry: () -> (timestamp, sign),
# each call with a strictly later timestamp than the one before.
Resigner = Callable[[], "tuple[int, str]"]
# Called by register_batch with the chunk's outcomes before they are final: the local store
# passes its connection inside the chunk's transaction (so an audit record written through it
# commits with the devices); a backend without one passes None once the calls are done.
ChunkHook = Callable[[Any, "list[RegisterOutcome]"], None]


@runtime_checkable
class Backend(Protocol):
    name: str
    # The EnOS requestId of the last single-request change (None where there is none, as on
    # the local store): the audit journal records it.
    last_request_id: str | None
    # The DPS device endpoint this backend knows (a profile's dps_url), or None.
    dps_url: str | None

    def group_secret_error(self, group: str) -> str | None:
        """Why the group's secret is not available here (an unset environment variable...),
        or None."""
        ...

    # -- groups (read side; the local store also creates them) --------------------------------
    def get_group(self, group: str) -> RegistrationGroup: ...
    def list_groups(self) -> list[RegistrationGroup]: ...
    def get_masterdata_group(self, mdg_id: str) -> MasterDataGroup: ...
    def list_masterdata_groups(self) -> list[MasterDataGroup]: ...
    def device_counts(self) -> dict[str, int]: ...  # groupId -> number of devices

    # -- application API ------------------------------------------------------------------------
    def create(
        self,
        group_id: str,
        *,
        count: int = 1,
        desc: str | None = None,
        batch_tag: dict | None = None,
        device_data: dict | None = None,
    ) -> list[str]: ...

    def get(self, sn: str) -> Device: ...
    def find_by_device_sn(self, group_id: str, device_sn: str) -> Device | None: ...
    def search(self, query: SearchQuery) -> Page: ...
    def iter_devices(self, query: SearchQuery) -> Iterator[Device]: ...

    def update(
        self,
        sn: str,
        *,
        desc: str | None = None,
        batch_tag: dict | None = None,
        device_data: dict | None = None,
    ) -> str: ...

    def delete(self, group_id: str, sns: Sequence[str]) -> list[str]: ...
    def allocate(self, sn: str, *, device_data: dict | None = None) -> Device:
        """Allocate (and activate) ``sn``; the target, when chosen, is the built-in master data
        ``device_data["regionId"]``/``["orgId"]``, else the device's own, else the group's."""
        ...

    def reset_allocation(self, group_id: str, sns: Sequence[str]) -> list[str]: ...
    def replace(self, sn: str, replacement_sn: str) -> Device: ...

    # -- bulk registration ------------------------------------------------------------------
    def next_batch_order(self) -> int | None: ...
    def register_batch(
        self,
        group_id: str,
        records: Sequence[NewDevice],
        *,
        batch_order: int | None = None,
        dry_run: bool = False,
        on_commit: ChunkHook | None = None,
    ) -> list[RegisterOutcome]:
        """Register ``records`` (idempotent): one outcome per record, in order: created,
        skipped (same data), conflict (other data) or failed (the backend could not be reached
        for it; only backends that send one call per device report it: the rest of the chunk
        is still reported). ``on_commit`` sees the outcomes (see ChunkHook)."""
        ...

    # -- device side ----------------------------------------------------------------------------
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
    ) -> ConnectionInfo: ...

    def get_connection_info(
        self,
        *,
        sn: str,
        timestamp: int,
        sign: str,
        sign_method: str = "sha256",
        resign: Resigner | None = None,
    ) -> ConnectionInfo: ...

    def close(self) -> None: ...


def compare_registered(
    device_sn: str, prior: tuple, data: str, desc: str | None, tag: str | None
) -> RegisterOutcome:
    """Classify a row against the stored device ``prior`` = (sn, canonical deviceData JSON,
    desc, batch tag): "skipped" when equal, "conflict" naming what differs otherwise."""
    import json

    sn, p_data, p_desc, p_tag = prior
    diffs = []
    if p_data != data:
        old, new = json.loads(p_data), json.loads(data)
        keys = sorted(k for k in set(old) | set(new) if old.get(k) != new.get(k))
        diffs.append("deviceData (" + ", ".join(keys) + ")")
    if (p_desc or None) != (desc or None):
        diffs.append("desc")
    if (p_tag or None) != (tag or None):
        diffs.append("batchTag")
    if diffs:
        return RegisterOutcome(
            device_sn, "conflict", sn, "already registered with a different " + ", ".join(diffs)
        )
    return RegisterOutcome(device_sn, "skipped", sn)
