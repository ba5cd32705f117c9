"""`burn verify`: decode credential files of any format and check them against the backend."""

from __future__ import annotations

import hmac
from dataclasses import dataclass, field
from pathlib import Path

from ..backends.base import Backend
from ..domain.errors import EnosprovError
from .credential import Credential


@dataclass
class FileCheck:
    file: str
    format: str | None = None
    profile: str | None = None
    device_sn: str | None = None
    sn: str | None = None
    ok: bool = False
    problems: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict:
        return {
            "file": self.file,
            "format": self.format,
            "profile": self.profile,
            "deviceSn": self.device_sn,
            "sn": self.sn,
            "ok": self.ok,
            "problems": self.problems,
            "notes": self.notes,
        }


@dataclass
class VerifyReport:
    checks: list[FileCheck]

    @property
    def ok(self) -> bool:
        return all(c.ok for c in self.checks)

    def to_dict(self) -> dict:
        return {
            "ok": self.ok,
            "files": len(self.checks),
            "failed": sum(not c.ok for c in self.checks),
            "checks": [c.to_dict() for c in self.checks],
        }


def read_credential_file(path: str | Path, options=None) -> tuple[str, Credential]:
    """(format name, credential) of a file in any supported format."""
    from ..domain.errors import InputFileError
    from .formats import FORMATS, FormatOptions, detect

    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise InputFileError(f"{path}: {exc.strerror or exc}") from None
    name = detect(data, path.name)
    try:
        return name, FORMATS[name].decode(data, options or FormatOptions())
    except EnosprovError as exc:
        raise InputFileError(f"{path}: {exc.message}") from None


def _same(a: str | None, b: str | None) -> bool:
    if not a or not b:
        return False
    return hmac.compare_digest(a.encode(), b.encode())


def check_credential(backend: Backend, cred: Credential, check: FileCheck) -> None:
    """Fill ``check.problems`` with every way ``cred`` disagrees with the backend."""
    from ..domain.errors import NotFoundError

    group_id = cred.group_id
    dev = None
    if cred.sn:
        try:
            dev = backend.get(cred.sn)
        except NotFoundError:
            check.problems.append(f"system sn {cred.sn} is not registered")
            return
        if dev.device_sn != cred.device_sn:
            check.problems.append(
                f"system sn {cred.sn} belongs to deviceSn {dev.device_sn}, not {cred.device_sn}"
            )
        group_id = group_id or dev.group_id
        if cred.group_id and dev.group_id != cred.group_id:
            check.problems.append(
                f"device is in group {dev.group_id}, the file says {cred.group_id}"
            )
    if cred.profile == "bootstrap":
        if group_id is None:  # a bootstrap file names its group (Credential.from_dict requires it)
            check.problems.append("the file names no registration group")
            return
        try:
            group = backend.get_group(group_id)
        except NotFoundError:
            check.problems.append(f"registration group {group_id} does not exist")
            return
        if not group.group_secret:
            check.notes.append("group secret not available here: not checked")
        elif not _same(cred.group_secret, group.group_secret):
            check.problems.append("the group secret does not match")
        if dev is None:
            dev = backend.find_by_device_sn(group.group_id, cred.device_sn)
            if dev is None:
                check.notes.append("not registered yet: the device registers itself on bootstrap")
        if cred.sign_scheme and cred.sign_scheme != group.sign_scheme:
            check.problems.append(
                f"signing scheme {cred.sign_scheme} differs from the group's {group.sign_scheme}"
            )
        _check_name_and_timezone(cred, dev, check)
        return
    # triple
    if dev is None:
        check.problems.append("a triple file must carry the system sn")
        return
    if not dev.allocated:
        check.problems.append("the device is not allocated (reset or never allocated)")
        return
    if dev.device_key != cred.device_key:
        check.problems.append("the deviceKey does not match (re-allocated since the export?)")
    if dev.product_key and dev.product_key != cred.product_key:
        check.problems.append("the productKey does not match")
    group = backend.get_group(dev.group_id)
    from .export import connection_info_for

    info = connection_info_for(backend, group, dev)
    if info is not None:
        if not _same(cred.device_secret, info.device_secret):
            check.problems.append("the deviceSecret does not match")
    else:
        check.notes.append("device secret not checked: no group secret for get/conn")


def _check_name_and_timezone(cred: Credential, dev, check: FileCheck) -> None:
    """The timezone must be one DPS accepts; a registered device keeps its own name and timezone
    (the values burned are used when the device registers itself), so a difference is a note."""
    from ..domain.rules import timezone_problem
    from .export import device_name_for

    problem = timezone_problem(cred.timezone or "")
    if problem:
        check.problems.append(f"the {problem}")
    if dev is None:
        return
    registered_tz = dev.device_data.get("timezone")
    if registered_tz and registered_tz != cred.timezone:
        check.notes.append(
            f"timezone {cred.timezone} differs from the device's deviceData.timezone "
            f"{registered_tz}"
        )
    name = device_name_for(dev, dev.device_sn)
    if name != cred.device_name:
        check.notes.append(f"deviceName {cred.device_name!r} differs from the registered {name!r}")


def verify_files(backend: Backend, paths, options=None) -> VerifyReport:
    checks = []
    for path in paths:
        check = FileCheck(file=str(path))
        try:
            check.format, cred = read_credential_file(path, options)
        except EnosprovError as exc:
            check.problems.append(exc.message)
            checks.append(check)
            continue
        check.profile, check.device_sn, check.sn = cred.profile, cred.device_sn, cred.sn
        try:
            check_credential(backend, cred, check)
        except EnosprovError as exc:
            check.problems.append(exc.message)
        check.ok = not check.problems
        checks.append(check)
    return VerifyReport(checks)
