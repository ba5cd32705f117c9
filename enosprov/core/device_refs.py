"""Turn what a user typed (system sns, deviceSns, short codes, a CSV, a batch tag) into devices,
all or nothing.

Lifecycle commands act on devices named in several ways; every reference must resolve before
anything changes, and one error names every reference that does not, with the nearest deviceSns
("did you mean").

A reference is, in this order: a system sn; a deviceSn (within the group when one is given); a
short code printed on a label (docs/qr-payload.md, "Short code"), tried only when it is
well-formed (valid check character) and matched on the client side against the short code of
every device of the group (or of the store): an exact sn or deviceSn always wins, and a short
code two devices share is refused, naming both.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from ..backends.base import REMOTE_SCAN_LIMIT, Backend
from ..domain.errors import NOT_FOUND_CODES, EnosprovError, InvalidArgumentError, NotFoundError
from ..domain.models import Device, SearchQuery
from ..domain.wording import names

LOOKUP_SLICE = 500
SUGGEST_REFS = 5  # unknown references that get "did you mean" suggestions, per error
SUGGEST_REMOTE_SCAN = REMOTE_SCAN_LIMIT  # devices read from a remote backend (EnOS) for suggestions


def read_refs_csv(path: str | Path) -> list[str]:
    """The device references of a CSV: its ``sn`` column (system sns) or else its ``deviceSn``
    column. Blank lines are skipped; an empty cell is an error naming its row."""
    from ..domain.csvsource import read_columns

    hint = "the first line is the header; name the column sn or deviceSn"
    return [v[0] for _row, v in read_columns(path, [("sn", "deviceSn")], hint=hint)]


def _unique(refs: Sequence[str]) -> list[str]:
    return list(dict.fromkeys(refs))


def not_found_error(
    missing: Sequence[str],
    group: str | None = None,
    suggestions: dict[str, list[str]] | None = None,
    *,
    changing: bool = True,
) -> NotFoundError:
    """The error naming every unknown reference; its hint says which deviceSns they may mean
    (``suggestions``, see :func:`suggest_device_sns`) or else how to check them."""
    where = f" in group {group}" if group else ""
    shown = repr(missing[0]) if len(missing) == 1 else names(missing)
    tail = "; nothing was changed" if changing else ""
    return NotFoundError(
        f"no device with system sn or deviceSn {shown}{where}{tail}",
        hint=did_you_mean(missing, suggestions or {}),
    )


def did_you_mean(missing: Sequence[str], suggestions: dict[str, list[str]]) -> str:
    """``did you mean A, B?`` (one reference) or ``did you mean A (for 'X'); B, C (for 'Y')?``;
    a generic hint when nothing is near."""
    near = [(ref, suggestions[ref]) for ref in missing if suggestions.get(ref)]
    if not near:
        codes = [ref for ref in missing if _parse_code(ref) is not None]
        if codes and len(codes) == len(missing):
            return (
                "no device has this short code; check it against the label, scan the label, "
                "or give the system sn or deviceSn"
            )
        return "check the serial numbers (`enosprov devices list`)"
    if len(missing) == 1:
        return f"did you mean {', '.join(near[0][1])}?"
    return "did you mean " + "; ".join(f"{', '.join(s)} (for {ref!r})" for ref, s in near) + "?"


def resolve_devices(
    backend: Backend,
    refs: Sequence[str] = (),
    group: str | None = None,
    *,
    csv_path: str | Path | None = None,
    batch_tag: str | None = None,
) -> list[Device]:
    """The devices named by ``refs`` (system sn, deviceSn or short code), the CSV and the batch
    tag, in the order given, each once. Raises NotFoundError naming every reference that does
    not resolve (with the nearest deviceSns), InvalidArgumentError for a short code that
    several devices share."""
    wanted = list(refs)
    if csv_path is not None:
        wanted.extend(read_refs_csv(csv_path))
    wanted = _unique(wanted)
    group_id = backend.get_group(group).group_id if group else None
    if not wanted and batch_tag is None:
        raise InvalidArgumentError(
            "no device given",
            hint="name devices (system sn, deviceSn or short code), --csv FILE or --batch-tag",
        )
    found: dict[str, Device] = {}
    if wanted:
        if group_id is not None:
            for start in range(0, len(wanted), LOOKUP_SLICE):
                part = tuple(wanted[start : start + LOOKUP_SLICE])
                q = SearchQuery(group_id=group_id, device_sns=part)
                for hit in backend.iter_devices(q):
                    found.setdefault(hit.device_sn, hit)
        missing: list[str] = []
        ambiguous: list[str] = []
        for ref in wanted:
            if ref in found:
                continue
            try:
                dev = _lookup(backend, ref, group_id)
            except InvalidArgumentError as err:
                if "several groups" not in err.message:
                    raise
                ambiguous.append(ref)
                continue
            if dev is None:
                missing.append(ref)
            else:
                found[ref] = dev
        if missing:
            by_code = match_short_codes(backend, missing, group_id)
            shared = {ref: devs for ref, devs in by_code.items() if len(devs) > 1}
            if shared:
                raise shared_code_error(shared, changing=True)
            found.update({ref: devs[0] for ref, devs in by_code.items() if devs})
            missing = [ref for ref in missing if ref not in found]
        if missing:
            raise not_found_error(missing, group, suggest_device_sns(backend, missing, group_id))
        if ambiguous:
            raise InvalidArgumentError(
                f"deviceSn {names(ambiguous)} exists in several groups; nothing was changed",
                hint="pass --group, or use the system sn",
            )
    devices = [found[r] for r in wanted]
    if batch_tag is not None:
        q = SearchQuery(group_id=group_id, batch_tag=batch_tag)
        tagged = list(backend.iter_devices(q))
        if not tagged and not wanted:
            raise NotFoundError(
                f"no device with batch tag {batch_tag!r}" + (f" in group {group}" if group else ""),
                hint="list the batch with `enosprov devices list --batch-tag TAG`",
            )
        devices.extend(tagged)
    unique: dict[str, Device] = {}  # by system sn, the first of each in the order given
    for d in devices:
        unique.setdefault(d.sn, d)
    return list(unique.values())


def _lookup(backend: Backend, ref: str, group_id: str | None) -> Device | None:
    dev = find_exact(backend, ref, group_id)
    if dev is None or (group_id is not None and dev.group_id != group_id):
        return None
    return dev


def find_exact(backend: Backend, ref: str, group_id: str | None = None) -> Device | None:
    """The device whose system sn is ``ref``, else whose deviceSn is ``ref`` (within
    ``group_id`` when given); None when there is none. InvalidArgumentError when the deviceSn
    exists in several groups."""
    return _by_sn(backend, ref) or _by_device_sn(backend, ref, group_id)


def _by_sn(backend: Backend, ref: str) -> Device | None:
    try:
        return backend.get(ref)
    except EnosprovError as exc:
        if exc.enos_code not in NOT_FOUND_CODES:
            raise
    return None


def _by_device_sn(backend: Backend, ref: str, group_id: str | None) -> Device | None:
    page = backend.search(SearchQuery(group_id=group_id, device_sns=(ref,), page_size=2))
    if not page.items:
        return None
    if page.total > 1:
        raise InvalidArgumentError(
            f"deviceSn {ref!r} exists in several groups",
            hint="pass --group, or use the system sn",
        )
    return page.items[0]


def find_one(backend: Backend, ref: str, group: str | None = None) -> Device:
    """One device by system sn (whatever ``group``), by deviceSn (within ``group``, an id or
    name, when given) or by short code; NotFoundError with the nearest deviceSns when none
    matches, InvalidArgumentError when a short code matches several devices."""
    dev = _by_sn(backend, ref)
    if dev is not None:
        return dev
    group_id = backend.get_group(group).group_id if group else None
    dev = _by_device_sn(backend, ref, group_id)
    if dev is not None:
        return dev
    devs = match_short_codes(backend, [ref], group_id).get(ref, [])
    if len(devs) > 1:
        raise shared_code_error({ref: devs}, changing=False)
    if devs:
        return devs[0]
    raise not_found_error([ref], group, suggest_device_sns(backend, [ref], group_id),
                          changing=False)  # fmt: skip


# -- short codes ---------------------------------------------------------------------------------


def _parse_code(ref: str):
    from ..qr.payload import parse_short_code

    return parse_short_code(ref)


def match_short_codes(
    backend: Backend, refs: Sequence[str], group_id: str | None = None
) -> dict[str, list[Device]]:
    """The devices of each well-formed short code among ``refs`` (others are left out): those of
    the group (of the store without one) whose new (version 2) or old (version 1) short code it
    is. One scan for all the codes; a version 1 code is the code of the label's payload, matched
    with the device's batch tag and with and without its system sn (labels printed before
    registration carry none)."""
    from ..qr.payload import key_code_value, legacy_code_values

    codes = {ref: c for ref in refs if (c := _parse_code(ref)) is not None}
    if not codes:
        return {}
    new = {c.value for c in codes.values() if c.version == 2}
    old = {c.value for c in codes.values() if c.version == 1}
    hits: dict[tuple[int, int], list] = {}
    prefixes: dict[str, bytes] = {}  # groupId -> its UTF-8 bytes and "\n"
    for key, gid, raw, sn, tag in backend.device_sn_rows(group_id, payload=bool(old)):
        if new:
            prefix = prefixes.get(gid) or prefixes.setdefault(gid, gid.encode("utf-8") + b"\n")
            value = key_code_value(prefix + raw)
            if value in new:
                hits.setdefault((2, value), []).append(key)
        if old:
            for value in set(legacy_code_values(gid, raw.decode("utf-8"), sn, tag)):
                if value in old:
                    hits.setdefault((1, value), []).append(key)
    return {
        ref: [backend.device_by_key(key) for key in hits.get((c.version, c.value), [])]
        for ref, c in codes.items()
    }


def shared_code_error(shared: dict[str, list[Device]], *, changing: bool) -> InvalidArgumentError:
    """Two or more devices have the short code given: refused, naming them."""
    parts = [
        f"short code {ref!r} matches {len(devs)} devices: "
        + ", ".join(f"{d.device_sn} (sn {d.sn}, group {d.group_id})" for d in devs)
        for ref, devs in shared.items()
    ]
    return InvalidArgumentError(
        "; ".join(parts) + ("; nothing was changed" if changing else ""),
        hint="name the device by its deviceSn or system sn",
    )


# -- did you mean ------------------------------------------------------------------------------


def suggest_device_sns(
    backend: Backend, refs: Sequence[str], group_id: str | None = None
) -> dict[str, list[str]]:
    """For each unknown reference (the first SUGGEST_REFS; short codes left out), the nearest
    existing deviceSns: at most 3, each within :func:`suggest.max_distance` edits, and only
    the nearest (a deviceSn 2 edits away is left out when one is 1 edit away). One bounded scan, of deviceSns of the same length +-2 only: the group's; the other
    groups' (shown ``SN-1 (group g2)``) only when the group's give fewer than 3."""
    from .suggest import MAX_SUGGESTIONS, Matcher, max_distance

    words = [r for r in refs if r and _parse_code(r) is None][:SUGGEST_REFS]
    if not words:
        return {}
    matchers = [Matcher(w, max_distance(w)) for w in words]
    lengths = [len(w.encode("utf-8")) for w in words]
    span = (max(1, min(lengths) - 2), max(lengths) + 2)
    # per word: text shown -> (from the other groups?, distance, deviceSn)
    found: list[dict[str, tuple[bool, int, str]]] = [{} for _ in words]
    passes = (False, True) if group_id is not None else (False,)
    for others in passes:
        if others and all(len(f) >= MAX_SUGGESTIONS for f in found):
            break
        for gid, raw in backend.device_sns_between(
            group_id, *span, others=others, limit=SUGGEST_REMOTE_SCAN
        ):
            for i, match in enumerate(matchers):
                d = match(raw)
                if d is None or (d == 0 and not others):
                    continue
                device_sn = raw.decode("utf-8", "replace")
                text = f"{device_sn} (group {gid})" if others else device_sn
                found[i].setdefault(text, (others, d, device_sn))
    out: dict[str, list[str]] = {}
    for word, near in zip(words, found, strict=True):
        nearest: dict[bool, int] = {}  # per pass (the group's, the others'), only the nearest ones
        for other, d, _sn in near.values():
            nearest[other] = min(d, nearest.get(other, d))
        ranked = sorted((key for key, (o, d, _sn) in near.items() if d == nearest[o]),
                        key=near.__getitem__)  # fmt: skip
        if ranked:
            out[word] = ranked[:MAX_SUGGESTIONS]
    return out


def one_group(devices: Sequence[Device], what: str = "change") -> str:
    """The single registration group of ``devices``; a mixed call is refused as a whole."""
    by_group: dict[str, list[str]] = {}
    for d in devices:
        by_group.setdefault(d.group_id, []).append(d.device_sn)
    if len(by_group) != 1:
        shown = "; ".join(f"{g}: {names(sns, 3)}" for g, sns in by_group.items())
        raise InvalidArgumentError(
            f"the devices to {what} are in {len(by_group)} registration groups ({shown}); "
            "nothing was changed",
            hint=f"{what} the devices of one group at a time (--group G narrows a batch tag, a "
            "CSV or deviceSns to one group)",
        )
    return next(iter(by_group))
