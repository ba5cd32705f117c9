"""Replacement: a faulty unit (OLD) is swapped for a new one (NEW) that keeps OLD's details.

For each pair, NEW is registered in OLD's group when it is not registered yet, then DPS
``replace`` copies OLD's master data, batch tag and description onto NEW, deletes OLD, and NEW
takes over OLD's allocation (a new device key and secret in the same OU). The lineage OLD -> NEW
is written to the audit journal (and, on the local store, its ``replacements`` table). In the same
run the caller can write NEW's credential file and label (:func:`replace_devices`).

Everything is checked before anything changes (:func:`plan_replacements`): OLD unknown, NEW in
another group, NEW already allocated, NEW == OLD, OLD already replaced, and in a file of pairs a
duplicate, a chain or a cycle. A pair whose OLD was already replaced by the same NEW is "done" and
skipped, so a run that stopped midway can be run again.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..backends.base import Backend
from ..domain.errors import (
    ConflictError,
    EnosprovError,
    InputFileError,
    InvalidArgumentError,
    NotFoundError,
    RefusedError,
    ValidationFailedError,
)
from ..domain.models import Device, SearchQuery
from ..journal import Journal, journal_or_null
from .lineage import replaced_by
from .rows import RowIssue

if TYPE_CHECKING:
    from ..qr.printjob import PrintReport

OLD_COLUMNS = ("old", "oldSn", "old_sn")
NEW_COLUMNS = ("new", "newSn", "new_sn")


@dataclass(frozen=True)
class ReplaceRequest:
    old: str  # system sn or deviceSn of the unit taken out
    new: str  # deviceSn (serial) of the unit put in
    row: int | None = None  # row in the pairs file


@dataclass
class PlannedReplacement:
    request: ReplaceRequest
    old: Device | None  # None when the pair is already done
    new: Device | None  # NEW when it is registered already
    done: bool = False  # OLD was already replaced by this NEW
    link: dict | None = None  # that earlier replacement, when done
    new_marks: tuple[str, ...] = ()  # a registered NEW's journal marks: exported, labelled

    @property
    def group_id(self) -> str:
        unit = self.old if self.old is not None else self.new
        if unit is None:  # plan_replacements gives every pair OLD, or NEW when it is done
            raise ValueError(f"the replacement of {self.request.old!r} names no unit")
        return unit.group_id

    @property
    def consumes_new(self) -> bool:
        """NEW is a registered unit (a spare or production unit with its own label or file):
        the replacement consumes its own registration (it takes OLD's details and batch)."""
        return self.new is not None and not self.done

    def new_text(self) -> str:
        """``batch B-2, burned, labelled`` of a registered NEW (what its registration was)."""
        if self.new is None:
            return ""
        burned, labelled = "exported" in self.new_marks, "labelled" in self.new_marks
        marks = [w for w, on in (("burned", burned), ("labelled", labelled)) if on]
        return ", ".join([f"batch {self.new.batch_tag_text or '(none)'}",
                          *(marks or ["not burned or labelled"])])  # fmt: skip

    def to_dict(self) -> dict:
        old = self.old
        new: dict[str, Any] = {
            "sn": self.new.sn if self.new else None,
            "deviceSn": self.request.new,
        }
        if self.new is not None and self.consumes_new:
            new.update(batchTag=self.new.batch_tag_text, burned="exported" in self.new_marks,
                       labelled="labelled" in self.new_marks)  # fmt: skip
        return {
            "old": {"sn": old.sn, "deviceSn": old.device_sn} if old else {"ref": self.request.old},
            "new": new,
            "registerNew": self.new is None,
            "consumesNewRegistration": self.consumes_new,
            "alreadyDone": self.done,
        }


@dataclass
class Replaced:
    old_sn: str
    old_device_sn: str
    new_sn: str
    new_device_sn: str
    group_id: str
    registered_new: bool
    allocation: str | None  # "region / org" NEW took over, or None
    already_done: bool = False
    journal_id: int | None = None
    request_id: str | None = None

    def to_dict(self) -> dict:
        return {
            "old": {"sn": self.old_sn, "deviceSn": self.old_device_sn},
            "new": {"sn": self.new_sn, "deviceSn": self.new_device_sn},
            "groupId": self.group_id,
            "registeredNew": self.registered_new,
            "allocation": self.allocation,
            "alreadyDone": self.already_done,
            "journalId": self.journal_id,
            "requestId": self.request_id,
        }


@dataclass
class ReplaceReport:
    replaced: list[Replaced] = field(default_factory=list)
    burn: list = field(default_factory=list)  # BurnReport per group: the new units' files
    labels: list = field(default_factory=list)  # QrReport per group: their labels
    printing: PrintReport | None = None  # their labels sent to a printer

    def to_dict(self) -> dict:
        return {
            "replaced": [r.to_dict() for r in self.replaced],
            "burn": [b.to_dict() for b in self.burn],
            "labels": [q.to_dict() for q in self.labels],
            **({"printing": self.printing.to_dict()} if self.printing is not None else {}),
        }


def read_pairs(path: str | Path) -> list[ReplaceRequest]:
    """The (old, new) pairs of a CSV with columns ``old`` and ``new``."""
    from ..domain.csvsource import read_columns

    hint = (
        "the header is `old,new`: the old unit (system sn or deviceSn) and the new unit's "
        "serial number (deviceSn)"
    )
    pairs = [
        ReplaceRequest(old, new, rowno)
        for rowno, (old, new) in read_columns(path, [OLD_COLUMNS, NEW_COLUMNS], hint=hint)
    ]
    if not pairs:
        raise InputFileError(f"{path}: no pairs", hint="one `old,new` pair per row")
    return pairs


class _Problems:
    """Collects every refusal; raised together so the user fixes the whole file at once."""

    def __init__(self, source: str | None) -> None:
        self.source = source
        self.items: list[tuple[ReplaceRequest, type[EnosprovError], str, str | None]] = []

    def add(self, req, cls, message, hint=None) -> None:
        self.items.append((req, cls, message, hint))

    def raise_if_any(self, count: int) -> None:
        if not self.items:
            return
        if self.source is None and count == 1:
            _req, cls, message, hint = self.items[0]
            raise cls(message + "; nothing was changed", hint=hint)
        issues = [RowIssue(req.row or i + 1, None, msg) for i, (req, _c, msg, _h) in
                  enumerate(self.items)]  # fmt: skip
        issues.sort(key=lambda issue: issue.row)
        where = self.source or "the replacement pairs"
        raise ValidationFailedError(
            f"{where}: {len(issues)} pair{'s' if len(issues) > 1 else ''} refused; nothing was "
            "changed",
            issues,
            hint="fix these rows and run again",
        )


def _check_pairs(requests: Sequence[ReplaceRequest], problems: _Problems) -> None:
    first_old: dict[str, ReplaceRequest] = {}
    first_new: dict[str, ReplaceRequest] = {}
    for req in requests:
        where = lambda r: f"row {r.row}" if r.row else repr(r.old)  # noqa: E731
        if req.old == req.new:
            problems.add(req, InvalidArgumentError, f"the new unit {req.new!r} is the old unit",
                         "the new unit has its own serial number")  # fmt: skip
        if req.old in first_old:
            problems.add(req, InvalidArgumentError,
                         f"old unit {req.old!r} appears twice (also {where(first_old[req.old])})")  # fmt: skip
        if req.new in first_new:
            problems.add(req, InvalidArgumentError,
                         f"new unit {req.new!r} appears twice (also {where(first_new[req.new])})")  # fmt: skip
        first_old.setdefault(req.old, req)
        first_new.setdefault(req.new, req)
    for req in requests:
        other = first_new.get(req.old)
        if other is not None and other is not req:
            kind = "a cycle" if first_old.get(req.new) is other else "a chain"
            problems.add(req, InvalidArgumentError,
                         f"{req.old!r} is the new unit of another pair and the old unit here: "
                         f"{kind}", "replace a unit only once per run")  # fmt: skip


def plan_replacements(
    backend: Backend,
    requests: Sequence[ReplaceRequest],
    *,
    group: str | None = None,
    journal: Journal | None = None,
    source: str | None = None,
) -> list[PlannedReplacement]:
    """Check every pair; nothing is changed. Raises the refusal (one pair) or a
    ValidationFailedError listing every refused row (a file of pairs)."""
    if not requests:
        raise InvalidArgumentError(
            "no replacement given", hint="OLD --new-device-sn NEW, or --csv FILE"
        )
    from .device_refs import find_one

    audit = journal_or_null(journal)
    problems = _Problems(source)
    _check_pairs(requests, problems)
    group_id = backend.get_group(group).group_id if group else None
    plans: list[PlannedReplacement] = []
    flagged = {id(item[0]) for item in problems.items}
    for req in requests:
        if id(req) in flagged:  # one clear problem per pair is enough
            continue
        unknown_hint: str | None = "give its system sn or deviceSn (`enosprov devices list`)"
        try:
            old = find_one(backend, req.old, group_id)
        except NotFoundError as missed:
            old = None
            unknown_hint = missed.hint if "did you mean" in (missed.hint or "") else unknown_hint
        if old is None:
            link = replaced_by(backend, audit, req.old)
            if link is not None and req.new in (link["newDeviceSn"], link["newSn"]):
                new = _find_new(backend, link["groupId"], req.new)
                if new is not None:
                    plans.append(PlannedReplacement(req, None, new, done=True, link=link))
                    continue
            if link is not None:
                problems.add(req, RefusedError,
                             f"{req.old!r} was already replaced by {link['newDeviceSn']} "
                             f"({link['newSn']}) on {link['time'][:10]}",
                             f"see `enosprov devices history {link['newSn']}`")  # fmt: skip
            else:
                problems.add(req, NotFoundError, f"old unit {req.old!r} is unknown"
                             + (f" in group {group}" if group else ""),
                             unknown_hint)  # fmt: skip
            continue
        refusal = backend.offline_refusal(old.group_id, "a replacement")
        if refusal is not None:
            problems.add(req, RefusedError, refusal.message.removesuffix("; nothing was changed"),
                         refusal.hint)  # fmt: skip
            continue
        if req.new in (old.device_sn, old.sn):
            problems.add(req, InvalidArgumentError, f"the new unit {req.new!r} is the old unit")
            continue
        elsewhere = [
            d for d in backend.search(SearchQuery(device_sns=(req.new,), page_size=10)).items
            if d.group_id != old.group_id
        ]  # fmt: skip
        if elsewhere:
            problems.add(req, ConflictError,
                         f"new unit {req.new!r} is registered in group {elsewhere[0].group_id}, "
                         f"not in {old.group_id}", "a replacement stays in the old unit's group")  # fmt: skip
            continue
        new = _find_new(backend, old.group_id, req.new)
        if new is not None and new.allocated:
            problems.add(req, RefusedError,
                         f"new unit {req.new!r} is already allocated to {new.region_id} / "
                         f"{new.org_id}", "a replacement unit must be fresh (not allocated)")  # fmt: skip
            continue
        if new is None:
            from ..domain.rules import sn_problem

            problem = sn_problem(req.new, backend.get_group(old.group_id).sn_pattern)
            if problem:
                problems.add(req, InvalidArgumentError, f"new unit {req.new!r}: {problem}")
                continue
        plans.append(PlannedReplacement(req, old, new))
    problems.raise_if_any(len(requests))
    _mark_registered_new(audit, plans)
    return plans


def _mark_registered_new(journal, plans: list[PlannedReplacement]) -> None:
    """The journal marks (credential file exported, label made) of every registered NEW, read
    once per batch."""
    # (group, batch tag) -> sn of NEW -> its plan
    by_batch: dict[tuple[str, str | None], dict[str, PlannedReplacement]] = {}
    for plan in plans:
        new = plan.new
        if new is not None and plan.consumes_new:
            by_batch.setdefault((new.group_id, new.batch_tag_text), {})[new.sn] = plan
    for (group_id, tag), wanted in by_batch.items():
        marks: dict[str, set[str]] = {}
        for mark, sn, _dsn, _ms in journal.marked(group_id, tag, ("exported", "labelled")):
            if sn in wanted:
                marks.setdefault(sn, set()).add(mark)
        for sn, plan in wanted.items():
            plan.new_marks = tuple(m for m in ("exported", "labelled") if m in marks.get(sn, ()))


def _find_new(backend: Backend, group_id: str, device_sn: str) -> Device | None:
    return backend.find_by_device_sn(group_id, device_sn)


def apply_replacement(
    backend: Backend, plan: PlannedReplacement, *, journal: Journal | None = None
) -> Replaced:
    """Register NEW if needed, then replace OLD by NEW; one journal record."""
    audit = journal_or_null(journal)
    if plan.done:
        new = plan.new
        if new is None:  # plan_replacements marks a pair done only when it found NEW
            raise ValueError(f"the replacement of {plan.request.old!r} is done but names no NEW")
        link = plan.link or {}
        return Replaced(link.get("oldSn", ""), link.get("oldDeviceSn", plan.request.old), new.sn,
                        new.device_sn, new.group_id, False,
                        f"{new.region_id} / {new.org_id}" if new.allocated else None,
                        already_done=True)  # fmt: skip
    old = plan.old
    if old is None:  # plan_replacements gives every pair that is not done its OLD
        raise ValueError(f"the replacement of {plan.request.old!r} names no OLD")
    detail = {
        "old": {"sn": old.sn, "deviceSn": old.device_sn},
        "new": {"sn": plan.new.sn if plan.new else None, "deviceSn": plan.request.new},
        "registeredNew": plan.new is None,
    }
    with audit.begin("replace", group_id=old.group_id, detail=detail) as rec:
        rec.add(old.sn, old.device_sn)
        new_sn = plan.new.sn if plan.new else None
        try:
            if new_sn is None:
                # OLD's master data without the keys EnOS owns (assetId), under NEW's serial
                data = {**old.copyable_data(), "deviceSn": plan.request.new}
                new_sn = backend.create(
                    old.group_id, desc=old.desc, batch_tag=old.batch_tag, device_data=data
                )[0]
                rec.detail["new"]["sn"] = new_sn
            new = backend.replace(old.sn, new_sn)
        except EnosprovError as exc:
            registered_now = plan.new is None and new_sn is not None
            raise _failed(backend, audit, old, plan, new_sn, registered_now, exc, rec) from None
        rec.mark("replaced", old.sn, old.device_sn, old.batch_tag_text)
        rec.request_id = backend.last_request_id
        rec.add(new.sn, new.device_sn)
        allocation = f"{new.region_id} / {new.org_id}" if new.allocated else None
        rec.detail["allocation"] = allocation
    return Replaced(old.sn, old.device_sn, new.sn, new.device_sn, old.group_id,
                    plan.new is None, allocation, journal_id=rec.committed,
                    request_id=rec.request_id)  # fmt: skip


def _failed(backend: Backend, journal, old: Device, plan: PlannedReplacement, new_sn: str | None,
            registered_now: bool, exc: EnosprovError, rec) -> EnosprovError:  # fmt: skip
    """The error to raise when registering NEW or `replace` failed: says whether OLD was just
    replaced by another station (and by which unit), and removes the NEW this run registered,
    or says plainly that it stays registered and how to continue."""
    new_device_sn = plan.request.new
    message, hint = f"replacing {old.device_sn} by {new_device_sn} failed: {exc.message}", None
    rival = _replaced_meanwhile(backend, journal, old)
    if rival is not None:
        message = f"{old.device_sn} was just replaced by another station: {rival}"
        hint = f"nothing to do for {old.device_sn}; see `enosprov devices history {old.device_sn}`"
    if registered_now and new_sn is not None:  # registered_now: this run registered new_sn
        try:
            backend.delete(old.group_id, [new_sn])
        except EnosprovError:
            rec.detail["newLeftRegistered"] = True
            rec.add(new_sn, new_device_sn)
            message += (
                f"; {new_device_sn} (sn {new_sn}), registered by this run with "
                f"{old.device_sn}'s details, stays registered"
            )
            hint = (
                f"delete it (enosprov devices delete {new_sn} --yes)"
                if rival
                else f"run the same replace again to finish it (it reuses {new_device_sn}), "
                "or delete it"
            )
        else:
            rec.detail["newRemoved"] = True
            message += f"; {new_device_sn}, registered by this run, was removed again"
            hint = hint or "nothing else was changed; fix the cause and run the same replace again"
    return type(exc)(message, hint=hint or exc.hint, enos_code=exc.enos_code,
                     request_id=exc.request_id)  # fmt: skip


def _replaced_meanwhile(backend: Backend, journal, old: Device) -> str | None:
    """ "NEW (sn) at TIME" when OLD is gone because another run replaced it; "a run elsewhere"
    when OLD is gone and this machine's records do not say by which unit; None when OLD is
    still there."""
    try:
        backend.get(old.sn)
        return None
    except NotFoundError:
        link = replaced_by(backend, journal, old.sn)  # gone: replaced, or deleted
    except EnosprovError:
        return None  # cannot tell: say nothing rather than guess
    if link is not None:
        return f"{link['newDeviceSn']} ({link['newSn']}) at {link['time']}"
    return "it is no longer registered (replaced or deleted by a run elsewhere)"


@dataclass(frozen=True)
class Outputs:
    """What to write for the new units in the same run."""

    burn_dir: str | Path | None = None  # credential files (None: none)
    burn_format: str = "json"
    burn_options: object | None = None  # burn.formats.FormatOptions
    dps_url: str | None = None
    label_dir: str | Path | None = None  # labels, one <new deviceSn>.<ext> each (None: none)
    label_format: str = "pdf"
    label_template: str | Path | None = None
    printer: str | None = None  # a printer URI (enosprov.printing): each new unit's label


def replace_devices(
    backend: Backend,
    plans: Sequence[PlannedReplacement],
    *,
    journal: Journal | None = None,
    outputs: Outputs | None = None,
    progress=None,
) -> ReplaceReport:
    """Apply every planned replacement, then write the new units' credential files and labels
    (``labels/<new deviceSn>.<ext>``: a unit's own file, rewritten when its label changed, never
    another unit's), then print their labels on ``outputs.printer``.

    A printer URI, and the template it prints with (a single-label one), are checked before
    anything is replaced."""
    outputs = outputs or Outputs()
    if outputs.burn_dir is not None:
        _check_burnable(backend, plans)
    printer = None
    if outputs.printer:
        from ..printing import open_printer
        from ..qr.unit import unit_template

        printer = open_printer(outputs.printer)
        try:
            unit_template(outputs.label_template, printer.label_format)
        except BaseException:
            printer.close()
            raise
    try:
        report = _replace_and_write(backend, plans, journal, outputs, progress)
        if printer is not None:
            from ..qr.printjob import print_devices

            new_units = [backend.get(r.new_sn) for r in report.replaced]
            report.printing = print_devices(
                backend, new_units, printer, template=outputs.label_template, journal=journal
            )
    finally:
        if printer is not None:
            printer.close()
    return report


def _replace_and_write(
    backend: Backend, plans, journal, outputs: Outputs, progress
) -> ReplaceReport:
    report = ReplaceReport()
    for i, plan in enumerate(plans):
        report.replaced.append(apply_replacement(backend, plan, journal=journal))
        if progress:
            progress("replace", i + 1, len(plans))
    by_group: dict[str, list[str]] = {}
    for r in report.replaced:
        by_group.setdefault(r.group_id, []).append(r.new_device_sn)
    if outputs.burn_dir is not None or outputs.label_dir is not None:
        from ..burn.export import Selection

        several = len(by_group) > 1  # then one sub-folder per group (one manifest each)
        for group_id, device_sns in by_group.items():
            selection = Selection(group=group_id, device_sns=tuple(device_sns))
            if outputs.burn_dir is not None:
                from ..burn.export import export_burn_files

                out = Path(outputs.burn_dir) / group_id if several else outputs.burn_dir
                report.burn.append(export_burn_files(
                    backend, selection, out, fmt=outputs.burn_format,
                    profile="bootstrap", dps_url=outputs.dps_url, options=outputs.burn_options,
                    journal=journal,
                ))  # fmt: skip
            if outputs.label_dir is not None:
                from ..qr.batch import qr_batch

                out = Path(outputs.label_dir) / group_id if several else outputs.label_dir
                report.labels.append(qr_batch(
                    backend, selection, out, fmt=outputs.label_format,
                    template=outputs.label_template, journal=journal, per_device=True,
                    force=True,  # <new deviceSn>.<ext>: the unit's own label, never another's
                ))  # fmt: skip
    return report


def _check_burnable(backend: Backend, plans: Sequence[PlannedReplacement]) -> None:
    """Every NEW credential file can be written (a timezone to burn: OLD's, which NEW takes
    over, or the group's), checked before anything is replaced."""
    from ..burn.export import no_timezone_error, timezone_for

    lacking: dict[str, list[str]] = {}
    for plan in plans:
        if plan.done:
            continue
        group = backend.get_group(plan.group_id)
        if timezone_for(group, plan.old) is None:
            lacking.setdefault(plan.group_id, []).append(plan.request.new)
    for group_id, device_sns in lacking.items():
        err = no_timezone_error(backend.get_group(group_id), device_sns)
        raise type(err)(
            err.message.replace("nothing was written", "nothing was replaced"), hint=err.hint
        )


def replace_device(
    backend: Backend,
    old: str,
    new_device_sn: str,
    *,
    group: str | None = None,
    journal: Journal | None = None,
    outputs: Outputs | None = None,
) -> ReplaceReport:
    """One unit: plan (refusing with nothing changed) and apply."""
    plans = plan_replacements(
        backend, [ReplaceRequest(old, new_device_sn)], group=group, journal=journal
    )
    return replace_devices(backend, plans, journal=journal, outputs=outputs)
