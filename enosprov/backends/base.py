"""The one backend interface, modelled on the EnOS DPS operations.

Application side (what the DPS application APIs offer): create, get, search, update, delete,
allocate, reset allocation status, replace. Device side: bootstrap and get connection info.
Registration and master data groups are console-only in EnOS; a backend exposes what it knows of
them (the local store keeps them; the EnOS backend reads them from a profile).

``register_batch`` is the bulk, idempotent form of create that batch registration uses: one call per
chunk of rows, each row classified as created, skipped (same data) or conflict (other data).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator, Sequence
from typing import Any

from ..domain.errors import EnosprovError, RefusedError
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
# devices a backend without indexes (EnOS) reads to find "did you mean" suggestions
REMOTE_SCAN_LIMIT = 5000

# A device-side caller's way to sign its request again for a retry: () -> (timestamp, sign),
# each call with a strictly later timestamp than the one before.
Resigner = Callable[[], "tuple[int, str]"]
# Called by register_batch with the chunk's outcomes before they are final: the local store
# passes its connection inside the chunk's transaction (so an audit record written through it
# commits with the devices); a backend without one passes None once the calls are done.
ChunkHook = Callable[[Any, "list[RegisterOutcome]"], None]


class Backend(ABC):
    """What every workflow may ask of a backend: the DPS operations (abstract: each backend
    implements them) and the optional capabilities below them, declared here with the default
    a backend without that capability gets (workflows call them; they never probe)."""

    name: str = ""  # "local" or "enos": for messages and journal records, never for decisions
    label: str = ""  # where the devices live, as people are told: "local store", "EnOS"
    # The EnOS requestId of the last single-request change (None where there is none, as on
    # the local store): the audit journal records it.
    last_request_id: str | None = None
    # Batch summaries and deviceSn look-ups come from the backend's own indexes (the local
    # store); False: workflows count and look up through iter_devices (one scan).
    indexed: bool = False
    # The registration group's allocation target is known here (the local store keeps it);
    # False: EnOS applies the target configured on the group, which no API reads.
    knows_group_targets: bool = False

    @property
    def dps_url(self) -> str | None:
        """The DPS device endpoint this backend knows (a profile's dps_url), or None."""
        return None

    def group_secret_error(self, group: str) -> str | None:
        """Why the group's secret is not available here (an unset environment variable...),
        or None."""
        return None

    # -- groups (read side; the local store also creates them) --------------------------------
    @abstractmethod
    def create_group(self, group: RegistrationGroup) -> RegistrationGroup:
        """Create ``group`` (local store); EnOS refuses (groups are made in its console)."""

    @abstractmethod
    def create_masterdata_group(self, mdg: MasterDataGroup) -> MasterDataGroup:
        """Create ``mdg`` (local store); EnOS refuses (made in its console)."""

    @abstractmethod
    def get_group(self, group: str) -> RegistrationGroup: ...
    @abstractmethod
    def list_groups(self) -> list[RegistrationGroup]: ...
    @abstractmethod
    def get_masterdata_group(self, mdg_id: str) -> MasterDataGroup: ...
    @abstractmethod
    def list_masterdata_groups(self) -> list[MasterDataGroup]: ...
    @abstractmethod
    def device_counts(self) -> dict[str, int]: ...  # groupId -> number of devices

    # -- application API ------------------------------------------------------------------------
    @abstractmethod
    def create(
        self,
        group_id: str,
        *,
        count: int = 1,
        desc: str | None = None,
        batch_tag: dict | None = None,
        device_data: dict | None = None,
    ) -> list[str]: ...

    @abstractmethod
    def get(self, sn: str) -> Device: ...
    @abstractmethod
    def find_by_device_sn(self, group_id: str, device_sn: str) -> Device | None: ...
    @abstractmethod
    def search(self, query: SearchQuery) -> Page: ...
    @abstractmethod
    def iter_devices(self, query: SearchQuery) -> Iterator[Device]: ...

    @abstractmethod
    def update(
        self,
        sn: str,
        *,
        desc: str | None = None,
        batch_tag: dict | None = None,
        device_data: dict | None = None,
    ) -> str: ...

    @abstractmethod
    def delete(self, group_id: str, sns: Sequence[str]) -> list[str]: ...
    @abstractmethod
    def allocate(self, sn: str, *, device_data: dict | None = None) -> Device:
        """Allocate (and activate) ``sn``; the target, when chosen, is the built-in master data
        ``device_data["regionId"]``/``["orgId"]``, else the device's own, else the group's."""

    @abstractmethod
    def reset_allocation(self, group_id: str, sns: Sequence[str]) -> list[str]: ...
    @abstractmethod
    def replace(self, sn: str, replacement_sn: str) -> Device: ...

    # -- bulk registration ------------------------------------------------------------------
    @abstractmethod
    def next_batch_order(self) -> int | None: ...
    @abstractmethod
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

    # -- device side ----------------------------------------------------------------------------
    @abstractmethod
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

    @abstractmethod
    def get_connection_info(
        self,
        *,
        sn: str,
        timestamp: int,
        sign: str,
        sign_method: str = "sha256",
        resign: Resigner | None = None,
    ) -> ConnectionInfo: ...

    @abstractmethod
    def close(self) -> None: ...

    # -- optional capabilities (defaults: what a backend without them answers) ------------------
    def update_masterdata_group(self, mdg: MasterDataGroup) -> MasterDataGroup:
        """Store the new definition of an existing master data group (core.definitions checks
        that registered devices stay valid first). EnOS: made in its console."""
        raise RefusedError(
            "EnOS has no API to change master data groups: change it in the EnOS console",
            hint="then update the TOML file the profile names (config add-group --masterdata)",
        )

    def update_group(self, group_id: str, changes: dict[str, Any]) -> RegistrationGroup:
        """Change fields of a registration group (core.definitions.GROUP_UPDATABLE, by field
        name). EnOS: made in its console."""
        raise RefusedError(
            "EnOS has no API to change registration groups: change it in the EnOS console",
            hint="then update the profile (enosprov config add-group ...)",
        )

    def stored_connection_info(
        self, dev: Device, group: RegistrationGroup
    ) -> ConnectionInfo | None:
        """The device's connection info read without acting as the device (no call, no side
        effect), or None where it can only be asked for with the group secret (EnOS: Get
        Connection Info, signed as the device)."""
        return None

    @property
    def journal_connection(self) -> Any:
        """The database connection an audit journal may share, so that a record commits in the
        same transaction as the change it describes (the local store's), or None."""
        return None

    def label_sn_for(self, group_id: str) -> Callable[[Device], str | None]:
        """The system sn a label of a device of ``group_id`` carries (in its QR code and as
        ``{sn}``): its own. The local store leaves it out for a device of a group imported
        from EnOS that is not pushed yet, and gives the EnOS sn once it is (docs/sync.md)."""
        return lambda dev: dev.sn

    def enos_sn(self, sn: str) -> str | None:
        """The EnOS system sn of the store device ``sn`` once pushed (docs/sync.md); None where
        the backend is EnOS itself or the device is not pushed."""
        return None

    def offline_refusal(self, group_id: str, what: str) -> EnosprovError | None:
        """Why ``what`` (a replacement, a reprovisioning, a deletion) may not be done in
        ``group_id`` on this backend: the local store refuses it in a group imported from an
        EnOS tenant (docs/sync.md). None: it may be done."""
        return None

    def replacements(self, sn: str) -> list[dict]:
        """Replacement links the backend itself keeps that involve ``sn`` as old or new unit
        (oldSn, oldDeviceSn, newSn, newDeviceSn, groupId, time); none where EnOS keeps none."""
        return []

    def replacement_links(self, group_id: str | None = None) -> list[dict]:
        """Every replacement link the backend keeps (of one group)."""
        return []

    def batch_summaries(self, group_id: str | None = None) -> list[tuple] | None:
        """Per (group, batch tag) counts from the backend's indexes, or None: count through
        iter_devices (core.batches does)."""
        return None

    def registration_order(self) -> Callable[[Device], tuple]:
        """The sort key of registration order: createTime, ties broken by sn (EnOS)."""
        return lambda d: (d.create_time or 0, d.sn)

    def device_sn_rows(self, group_id: str | None, *, payload: bool) -> Iterator[tuple]:
        """(key, groupId, deviceSn as UTF-8 bytes, sn, batch tag) of every device of the group
        (of every group without one), for short-code look-ups; :meth:`device_by_key` gets the
        device of a key back. ``payload``: the sn and batch tag are needed (else they may be
        None). By default one scan through iter_devices, the key being the Device itself."""
        for dev in self.iter_devices(SearchQuery(group_id=group_id)):
            yield dev, dev.group_id, dev.device_sn.encode("utf-8"), dev.sn, dev.batch_tag_text

    def device_by_key(self, key: Any) -> Device:
        """The device of a key of :meth:`device_sn_rows`."""
        return key

    def device_sns_between(
        self,
        group_id: str | None,
        shortest: int,
        longest: int,
        *,
        others: bool = False,
        limit: int = REMOTE_SCAN_LIMIT,
    ) -> Iterator[tuple[str, bytes]]:
        """(groupId, deviceSn as UTF-8 bytes) of the devices of the group (of every group
        without one; of the other groups with ``others``) whose deviceSn is ``shortest`` to
        ``longest`` characters long, for "did you mean". By default only the first ``limit``
        devices of one scan through iter_devices, and never the other groups."""
        if others:
            return
        for i, dev in enumerate(self.iter_devices(SearchQuery(group_id=group_id))):
            if i >= limit:
                return
            if shortest <= len(dev.device_sn) <= longest:
                yield dev.group_id, dev.device_sn.encode("utf-8")


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
