"""Output folders shared by every command that writes one file per device (`burn export`,
`qr batch`, `station`): safe file names, names checked against the file system's limits before
anything is written, and :class:`OutputFolder`, whose manifest never lists a wrong file.

A run starts by removing the temporary files killed runs left (enosprov.atomic); the previous
manifest stays while files are only found correct and is removed just before the first file is
written; the run writes its own atomically at the end. CSV manifests are spreadsheet-safe
(enosprov.csvsafe) unless asked raw.
"""

from __future__ import annotations

import csv
import os
import re
from collections.abc import Iterable
from pathlib import Path

from .atomic import AtomicFile, NameLimits, NameProblem, remove_stale_temps, write_bytes
from .domain import csvsafe
from .domain.errors import InputFileError, InvalidArgumentError

MANIFEST_CSV = "manifest.csv"
MANIFEST_JSON = "manifest.json"
_UNSAFE = re.compile(r"[^A-Za-z0-9_.-]")
_WINDOWS_RESERVED = {"CON", "PRN", "AUX", "NUL", *(f"COM{i}" for i in range(1, 10)),
                     *(f"LPT{i}" for i in range(1, 10))}  # fmt: skip


def shown(names: list[str], limit: int = 10) -> str:
    """``a, b, c and 7 more``: a list of names for a message, cut at ``limit``."""
    more = f" and {len(names) - limit} more" if len(names) > limit else ""
    return ", ".join(names[:limit]) + more


def safe_filename(device_sn: str) -> str:
    """A file name for a deviceSn that can never leave the output folder, on any OS.

    Letters, digits, '_', '-' and '.' are kept; every other character becomes %XX (UTF-8), a
    leading '.' too (no hidden files, no '..'); Windows device names get a '_' prefix.
    """
    name = _UNSAFE.sub(lambda m: "".join(f"%{b:02X}" for b in m.group().encode()), device_sn)
    if name.startswith("."):
        name = "%2E" + name[1:]
    if name.split(".")[0].upper() in _WINDOWS_RESERVED:
        name = "_" + name
    return name or "_"


def _check_out_dir(out_dir: Path) -> None:
    if out_dir.exists() and not out_dir.is_dir():
        raise InputFileError(f"{out_dir} exists and is not a folder", hint="choose another --out")
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
        probe = AtomicFile(out_dir / ".enosprov-write-test")
        probe.open()
        probe.abort()
    except (OSError, InputFileError) as exc:
        raise InputFileError(
            f"cannot write into {out_dir}: {exc}", hint="check the folder's permissions"
        ) from None


def check_file_names(
    out_dir: Path, named: Iterable[tuple[str, str]], files: Iterable[str] = ()
) -> None:
    """Refuse, before anything is written, names the file system cannot hold.

    ``named`` gives (deviceSn, file name) for every device's file, ``files`` the run's own files
    (the manifest, a labels document). One error names every deviceSn whose file name (or full
    path, with its temporary file's) is too long, and the limit.
    """
    limits = NameLimits(out_dir)
    bad: dict[str, None] = {}  # deviceSns, in order, once
    worst: dict[str, NameProblem] = {}  # "name" / "path" -> the longest problem of that kind
    for device_sn, name in named:
        problem = limits.problem(name)
        if problem:
            bad[device_sn] = None
            if problem.what not in worst or problem.length > worst[problem.what].length:
                worst[problem.what] = problem
    if bad:
        why = []
        if "name" in worst:
            p = worst["name"]
            why.append(f"{p.length} bytes, at most {p.limit} bytes per file name")
        if "path" in worst:
            p = worst["path"]
            why.append(f"a path of {p.length} {p.unit}, at most {p.limit} {p.unit} per path")
        s = "s" if len(bad) > 1 else ""
        raise InvalidArgumentError(
            f"file name{s} too long for deviceSn{s} {shown(list(bad))} ({'; '.join(why)}): "
            "nothing was written",
            hint="a deviceSn is its file's name, every character but letters, digits, '_', '-' "
            "and '.' written as %XX per UTF-8 byte: give these devices shorter deviceSns"
            + (", or choose a shorter --out path" if "path" in worst else ""),
        )
    for name in files:
        problem = limits.problem(name)
        if problem:
            raise InvalidArgumentError(
                f"the output path is too long: {out_dir / name} would be {problem.length} "
                f"{problem.unit}, at most {problem.limit} {problem.unit}; nothing was written",
                hint="choose a shorter --out path",
            )


class OutputFolder:
    """The output folder of a run, written so that its manifest never lists a wrong file.

    :meth:`open` checks the folder (created if missing) and removes the temporary files that
    killed runs left in it. The previous run's manifest files stay while files are only found
    already correct (they still describe the folder); just before the first file is written
    they are removed (:meth:`drop_manifest`), and the run writes its own atomically at the end.
    A run killed in between leaves no manifest rather than a wrong one.
    """

    def __init__(
        self, path: Path, manifests: tuple[str, ...] = (MANIFEST_CSV, MANIFEST_JSON)
    ) -> None:
        self.path = path
        self.manifests = manifests
        self._dropped = False

    def open(self) -> None:
        _check_out_dir(self.path)
        remove_stale_temps(self.path)

    def store(self, name: str, data: bytes, *, private: bool = False) -> os.stat_result | None:
        """Write file ``name`` unless it already holds ``data``: None when written, else the
        stat of the file found correct."""
        path = self.path / name
        found = _current(path, data)
        if found is None:
            self.drop_manifest()
            write_bytes(path, data, private=private)
        return found

    def drop_manifest(self) -> None:
        """Remove the previous manifest files (once), before a file they describe changes."""
        if self._dropped:
            return
        for name in self.manifests:
            try:
                (self.path / name).unlink(missing_ok=True)
            except OSError as exc:
                raise InputFileError(
                    f"cannot remove the previous {self.path / name}: {exc.strerror or exc}",
                    hint="close it in the program that has it open, or choose another --out",
                ) from None
        self._dropped = True


def _current(path: Path, data: bytes) -> os.stat_result | None:
    """The stat of ``path`` when it holds exactly ``data``, else None."""
    try:
        st = path.stat()
        if st.st_size != len(data):
            return None
        return st if path.read_bytes() == data else None
    except OSError:
        return None


def write_csv_manifest(
    path: Path, rows: Iterable[dict], columns: tuple[str, ...], raw_csv: bool = False
) -> None:
    """``rows`` as a CSV file for people written atomically: the UTF-8 BOM first, text cells
    spreadsheet-safe (csvsafe); ``raw_csv``: machine CSV (no BOM, cells as they are)."""
    with AtomicFile(path) as fh:
        fh.write(csvsafe.bom(raw_csv))
        writer = csv.writer(fh)
        writer.writerow(columns)
        writer.writerows(csvsafe.row((r.get(c, "") for c in columns), raw=raw_csv) for r in rows)
