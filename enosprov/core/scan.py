"""`qr scan`: decode every QR code in photos or scans, parse it, and look its device up.

Each image gets a :class:`ScanResult`: the codes found (rotated, skewed and several per image
are handled by zxing-cpp; only QR Code Model 2 is read) and its problems: an unreadable image,
no code at all, a code that is not an enosprov payload, or a device that is not registered.

The label of a retired unit (one that a replacement took out) is not a problem: its code says
``replaced by NEW (sn) on DATE; in service: NEW`` (status ``retired``), or, when the retired
deviceSn is registered again, that the retired unit came back (status ``returned``), with what
to do.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from ..backends.base import Backend
from ..domain.errors import EnosprovError, is_not_found
from ..qr.payload import ForeignCodeError, Payload, parse_payload

if TYPE_CHECKING:
    from ..domain.models import Device
    from .lineage import Retirement


@dataclass
class ScannedCode:
    text: str
    payload: Payload | None = None
    device: Device | None = None  # a returning unit's new registration too
    problem: str | None = None
    retired: Retirement | None = None  # the label of a retired unit

    @property
    def status(self) -> str:
        """``ok``, ``retired`` (replaced), ``returned`` (a retired unit registered again) or
        ``problem``."""
        if self.problem:
            return "problem"
        return self.retired.status if self.retired is not None else "ok"

    @property
    def result(self) -> str:
        """One line: ok, the problem, or what the retirement says."""
        if self.problem:
            return self.problem
        r = self.retired
        if r is None:
            return "ok"
        if r.returned is not None:
            return f"RETIRED UNIT CAME BACK as sn {r.returned.sn}: {r.describe()}"
        return r.describe()

    def to_dict(self) -> dict:
        dev = self.device
        return {
            "text": self.text,
            "payload": self.payload.to_dict() if self.payload else None,
            "device": None if dev is None else {
                "sn": dev.sn, "groupId": dev.group_id, "deviceSn": dev.device_sn,
                "batchTag": dev.batch_tag_text, "allocateStatus": dev.allocate_status,
                "connectStatus": dev.connect_status},
            "status": self.status,
            "result": self.result,
            "retired": self.retired.to_dict() if self.retired is not None else None,
            "problem": self.problem,
        }  # fmt: skip


@dataclass
class ScanResult:
    path: str
    codes: list[ScannedCode] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)  # image-level and per-code problems

    @property
    def ok(self) -> bool:
        return not self.problems

    def to_dict(self) -> dict:
        return {"path": self.path, "ok": self.ok, "codes": [c.to_dict() for c in self.codes],
                "problems": self.problems}  # fmt: skip


@dataclass
class ScanReport:
    images: list[ScanResult]

    @property
    def ok(self) -> bool:
        return all(r.ok for r in self.images)

    def to_dict(self) -> dict:
        return {"ok": self.ok, "images": [r.to_dict() for r in self.images]}


def lookup(backend: Backend, payload: Payload) -> tuple[Device | None, str | None]:
    """(device, problem): by system sn when the label has one, else by group + deviceSn."""
    dev: Device | None
    try:
        if payload.sn:
            try:
                dev = backend.get(payload.sn)
            except EnosprovError as err:
                pushed = _pushed_device(backend, payload) if is_not_found(err) else None
                if pushed is None:  # a plant's store knows a pushed device's EnOS sn
                    raise
                return pushed, None
            if dev.device_sn != payload.device_sn or dev.group_id != payload.group_id:
                return None, (
                    f"sn {payload.sn} belongs to {dev.group_id}/{dev.device_sn}, not to "
                    f"{payload.group_id}/{payload.device_sn}"
                )
            return dev, None
        dev = backend.find_by_device_sn(payload.group_id, payload.device_sn)
    except EnosprovError as err:
        if not is_not_found(err):
            raise
        dev = None
    if dev is None:
        return None, f"unknown device {payload.group_id}/{payload.device_sn}" + (
            f" (sn {payload.sn})" if payload.sn else ""
        )
    return dev, None


def _pushed_device(backend: Backend, payload: Payload) -> Device | None:
    """The store's device whose EnOS sn the label carries (labels printed after `sync push`
    carry the EnOS sn; docs/sync.md), or None."""
    dev = backend.find_by_device_sn(payload.group_id, payload.device_sn)
    if dev is not None and dev.sn != payload.sn and backend.enos_sn(dev.sn) == payload.sn:
        return dev
    return None


def retired_lookup(
    backend: Backend, journal, payload: Payload, device: Device | None, problem: str | None
) -> tuple[Device | None, str | None, Retirement | None]:
    """(device, problem, retirement) of a label once its device was looked up: a label whose
    device is unknown but was replaced is a retired unit (no problem); a device registered under
    a retired deviceSn is a returning unit."""
    from .lineage import retirement

    if problem is not None and device is None and not problem.startswith("unknown device"):
        return device, problem, None
    found = None
    if device is not None:
        found = retirement(backend, journal, device.device_sn, group_id=device.group_id,
                           device=device)  # fmt: skip
        return device, problem, found if found is not None and found.returned else None
    for ident in dict.fromkeys(i for i in (payload.sn, payload.device_sn) if i):
        found = retirement(backend, journal, ident, group_id=payload.group_id)
        if found is not None:
            return found.returned, None, found
    return device, problem, None


def scan_images(backend: Backend, paths, *, journal=None) -> list[ScanResult]:
    """Decode and look up every code of every image. ``journal`` (the audit journal) finds the
    replacements that retired a unit (the local store also has its own records)."""
    from PIL import Image, UnidentifiedImageError

    from ..qr.render import read_qr

    results = []
    for path in paths:
        result = ScanResult(str(path))
        results.append(result)
        try:
            with Image.open(Path(path)) as img:
                img.load()
                barcodes = read_qr(img)
        except (OSError, UnidentifiedImageError, ValueError) as exc:
            result.problems.append(f"cannot read the image: {exc}")
            continue
        if not barcodes:
            result.problems.append("no QR code found")
            continue
        for bc in barcodes:
            code = ScannedCode(bc.text)
            result.codes.append(code)
            try:
                code.payload = parse_payload(bc.text)
            except ForeignCodeError as err:
                code.problem = err.message
            else:
                device, problem = lookup(backend, code.payload)
                code.device, code.problem, code.retired = retired_lookup(
                    backend, journal, code.payload, device, problem
                )
            if code.problem:
                result.problems.append(code.problem)
    return results
