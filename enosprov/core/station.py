"""One station of a factory line: one unit at a time, in one process (`enosprov station`).

For each unit scanned (a deviceSn, with optional values), with one backend connection for the
whole run: register it (idempotent, as a CSV row), write its credential file and check it like
`burn verify`, optionally run a per-unit command that flashes the file, render its label (the
QR symbol decoded back first) and send it to the printer. Every step is recorded in the
station's ledger (``station.jsonl`` in the output folder), so a unit scanned again resumes what
it had not finished (the print after a printer failure) and is never registered twice; a
failed step never stops the station. :class:`Station` is the library; the CLI is a thin loop
over standard input.
"""

from __future__ import annotations

import csv
import hashlib
import json
import shlex
import subprocess
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from ..backends.base import Backend
from ..domain.errors import EnosprovError, InputFileError, InvalidArgumentError
from ..journal import Journal, journal_or_null

STEPS = ("register", "burn", "verify", "flash", "label", "print")
LEDGER = "station.jsonl"
FLASH_TIMEOUT = 300.0  # seconds a flashing command may take


@dataclass(frozen=True)
class StationConfig:
    """What a station does to each unit (everything but the units themselves)."""

    group: str
    out_dir: Path
    burn_format: str = "json"
    burn_template: str | Path | None = None
    dps_url: str | None = None
    batch_tag: str | None = None
    defaults: dict[str, str] = field(default_factory=dict)  # master data for every unit
    columns: tuple[str, ...] = ()  # the columns of CSV input lines (no header in the input)
    flash_command: str | None = None  # e.g. "esptool.py write_flash 0x9000 {file}"
    label_format: str | None = None  # None: from the printer, else no label
    label_template: str | Path | None = None
    printer: str | None = None
    allow_retired: bool = False


@dataclass
class UnitResult:
    """What happened to one scanned unit."""

    device_sn: str
    line: int
    sn: str | None = None
    done: list[str] = field(default_factory=list)  # steps done now
    resumed: list[str] = field(default_factory=list)  # steps found done by an earlier scan
    failed: str | None = None  # the step that failed
    error: str | None = None
    ms: float = 0.0
    file: Path | None = None  # its credential file

    @property
    def ok(self) -> bool:
        return self.failed is None

    def to_dict(self) -> dict:
        return {
            "deviceSn": self.device_sn,
            "line": self.line,
            "sn": self.sn,
            "ok": self.ok,
            "done": self.done,
            "alreadyDone": self.resumed,
            "failedStep": self.failed,
            "error": self.error,
            "ms": round(self.ms, 1),
        }


@dataclass
class StationSummary:
    units: int = 0
    ok: int = 0
    failed: int = 0
    printed: int = 0
    started: float = field(default_factory=time.monotonic)

    @property
    def per_hour(self) -> float:
        elapsed = time.monotonic() - self.started
        return self.ok * 3600 / elapsed if elapsed > 0 else 0.0

    def to_dict(self) -> dict:
        return {
            "units": self.units,
            "ok": self.ok,
            "failed": self.failed,
            "printed": self.printed,
            "unitsPerHour": round(self.per_hour, 1),
        }


def parse_line(line: str, columns: Sequence[str]) -> dict[str, str] | None:
    """One input line as the unit's values: ``SN``, ``SN,key=value,...``, or a CSV line whose
    columns were declared (``columns``; the input never holds a header). None for a blank line."""
    text = line.strip().lstrip("\ufeff")
    if not text:
        return None
    fields = next(csv.reader([text]))
    if columns:
        if len(fields) != len(columns):
            raise InputFileError(
                f"{len(fields)} values for {len(columns)} columns ({', '.join(columns)})",
                hint="quote values that contain a comma",
            )
        return {c: v.strip() for c, v in zip(columns, fields) if v.strip()}
    values = {"deviceSn": fields[0].strip()}
    for item in fields[1:]:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise InputFileError(f"{item!r} is not key=value", hint="SN,key=value,...")
        values[key.strip()] = value.strip()
    return values


class Ledger:
    """The steps each unit has done at this station (``station.jsonl``, append-only)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.steps: dict[str, set[str]] = {}
        if path.exists():
            with path.open(encoding="utf-8") as fh:
                for line in fh:
                    try:
                        entry = json.loads(line)
                    except ValueError:
                        continue  # a line cut by a crash
                    self._note(entry["deviceSn"], entry["step"])
        self._fh = path.open("a", encoding="utf-8")

    def done(self, device_sn: str, step: str) -> bool:
        return step in self.steps.get(device_sn, ())

    def _note(self, device_sn: str, step: str) -> None:
        if step == "register":  # a (new) registration: every later step is to do
            self.steps[device_sn] = {step}
        else:
            self.steps.setdefault(device_sn, set()).add(step)

    def add(self, device_sn: str, step: str, **extra) -> None:
        self._note(device_sn, step)
        entry = {"deviceSn": device_sn, "step": step, "time": int(time.time() * 1000), **extra}
        self._fh.write(json.dumps(entry, ensure_ascii=False) + "\n")
        self._fh.flush()

    def forget(self, device_sn: str, step: str) -> None:
        """A step to do again (a reprint), in this run."""
        self.steps.get(device_sn, set()).discard(step)

    def forget_unit(self, device_sn: str) -> None:
        """Every step of a unit to do again (it is no longer registered)."""
        self.steps.pop(device_sn, None)

    def close(self) -> None:
        self._fh.close()


class Station:
    """A station's run: open once, :meth:`process` each unit, :meth:`close` at the end."""

    def __init__(self, backend: Backend, config: StationConfig, *, journal: Journal | None = None):
        from ..burn.export import dps_url_for
        from ..burn.formats import FORMATS, FormatOptions

        self.backend = backend
        self.config = config
        self.journal = journal_or_null(journal)
        self.group = backend.get_group(config.group)
        if config.burn_format not in FORMATS:
            raise InvalidArgumentError(
                f"unknown burn format {config.burn_format!r}", hint="one of: " + ", ".join(FORMATS)
            )
        self.format = FORMATS[config.burn_format]
        template: str | None = None  # a user template's text and file name
        template_name: str | None = None
        if config.burn_format == "template":
            if not config.burn_template:
                raise InvalidArgumentError("--burn-format template needs --burn-template FILE")
            from ..burn.formats.template import check_template, read_template

            template, template_name = read_template(config.burn_template)
            check_template(template)
        self.options = FormatOptions(template=template, template_name=template_name)
        self.dps_url = dps_url_for(backend, self.group, config.dps_url)
        self.out = Path(config.out_dir)
        self.out.mkdir(parents=True, exist_ok=True)
        self.printer = None
        self.label_format = config.label_format
        if config.printer:
            from ..printing import open_printer

            self.printer = open_printer(config.printer)
            self.label_format = self.printer.label_format
        self.printer_problem = self.printer.status() if self.printer else None
        self.ledger = Ledger(self.out / LEDGER)
        self.summary = StationSummary()
        if config.flash_command:
            shlex.split(config.flash_command)  # a malformed command fails now, not per unit

    def close(self) -> None:
        self.ledger.close()
        if self.printer is not None:
            self.printer.close()

    def __enter__(self) -> Station:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # -- one unit ---------------------------------------------------------------------------

    def process(self, values: dict[str, str], line: int = 0, *, reprint: bool = False):
        """Every step not done yet for one unit; never raises for the unit's own failures."""
        t0 = time.perf_counter()
        res = UnitResult(values.get("deviceSn", ""), line)
        step = "register"
        try:
            if not res.device_sn:
                raise InvalidArgumentError("no deviceSn on this line")
            if reprint:
                dev = self._registered(res.device_sn)
                res.sn = dev.sn
                self.ledger.forget(res.device_sn, "print")
                step = "print"
                self._label(dev, res, force=True)
            else:
                dev = self._register(values, res)
                res.sn = dev.sn
                steps = (("burn", self._burn), ("flash", self._flash), ("label", self._label))
                for name, run in steps:
                    step = name  # the step a failure is reported at
                    run(dev, res)
        except EnosprovError as exc:
            if step == "label" and "label" in res.done:
                step = "print"  # rendered, not printed
            res.failed, res.error = step, exc.message
        except OSError as exc:  # a disk or pipe problem of this unit's step
            res.failed, res.error = step, f"{type(exc).__name__}: {exc.strerror or exc}"
        res.ms = (time.perf_counter() - t0) * 1000
        self._count(res)
        return res

    def refuse_line(self, line: int, error: str) -> UnitResult:
        """An input line that names no unit (malformed): counted as a failed unit."""
        res = UnitResult("", line, failed="input", error=error)
        self._count(res)
        return res

    def _count(self, res: UnitResult) -> None:
        s = self.summary
        s.units += 1
        s.ok += res.ok
        s.failed += not res.ok
        s.printed += "print" in res.done
        if not res.ok and self.printer is not None and res.failed == "print":
            self.printer_problem = self.printer.status()  # after an error, not per unit

    def _registered(self, device_sn: str):
        dev = self.backend.find_by_device_sn(self.group.group_id, device_sn)
        if dev is None:
            raise InvalidArgumentError(f"{device_sn} is not registered in {self.group.group_id}")
        return dev

    def _register(self, values: dict[str, str], res: UnitResult):
        from .lineage import replaced_by
        from .registration import register_records

        device_sn = res.device_sn
        if not self.config.allow_retired:
            link = replaced_by(self.backend, self.journal, device_sn)
            if link is not None:
                raise InvalidArgumentError(
                    f"{device_sn} is a retired unit: replaced by {link['newDeviceSn']} on "
                    f"{link['time'][:10]}",
                    hint="take it off the line, or run the station with --allow-retired",
                )
        if self.ledger.done(device_sn, "register"):
            dev = self.backend.find_by_device_sn(self.group.group_id, device_sn)
            if dev is not None:
                res.resumed.append("register")
                return dev
            self.ledger.forget_unit(device_sn)  # deleted or replaced since: start again
        row = {**self.config.defaults, **values}
        report = register_records(self.backend, [row], self.group.group_id,
                                  name=f"unit {device_sn}", batch_tag=self.config.batch_tag,
                                  journal=self.journal,
                                  allow_retired=self.config.allow_retired)  # fmt: skip
        if report.conflicts:
            sample = report.conflict_samples[0]
            raise InvalidArgumentError(
                f"{device_sn} is registered with other data: {sample.error}",
                hint="check the scanned values, or update the unit (enosprov devices update)",
            )
        (res.done if report.created else res.resumed).append("register")
        dev = self._registered(device_sn)
        self.ledger.add(device_sn, "register", sn=dev.sn)
        return dev

    def _burn(self, dev, res: UnitResult) -> None:
        from .. import atomic
        from ..burn.export import credential_for
        from ..burn.verify import FileCheck, check_credential
        from ..outputs import safe_filename

        path = self.out / (safe_filename(dev.device_sn) + self.format.file_extension(self.options))
        res.file = path
        if self.ledger.done(dev.device_sn, "verify") and path.exists():
            res.resumed += ["burn", "verify"]
            return
        cred = credential_for(self.backend, self.group, dev, "bootstrap", self.dps_url)
        data = self.format.encode(cred, self.options)
        atomic.write_bytes(path, data, private=True)
        res.done.append("burn")
        if self.format.decodable:  # checked like `burn verify`: read back, then compared
            check = FileCheck(str(path), self.format.name)
            check_credential(self.backend, self.format.decode(path.read_bytes(), self.options),
                             check)  # fmt: skip
            if check.problems:
                raise InvalidArgumentError(f"{path.name}: " + "; ".join(check.problems))
            res.done.append("verify")
        self.ledger.add(dev.device_sn, "verify", file=path.name,
                        sha256=hashlib.sha256(data).hexdigest())  # fmt: skip
        detail = {"station": True, "format": self.format.name, "folder": str(self.out)}
        rec = self.journal.begin("burn-export", group_id=self.group.group_id, detail=detail)
        rec.add(dev.sn, dev.device_sn)
        rec.mark("exported", dev.sn, dev.device_sn, dev.batch_tag_text)
        rec.commit()

    def _flash(self, dev, res: UnitResult) -> None:
        command = self.config.flash_command
        if not command:
            return
        if self.ledger.done(dev.device_sn, "flash"):
            res.resumed.append("flash")
            return
        path = res.file
        args = [a.format(file=str(path), deviceSn=dev.device_sn, sn=dev.sn)
                for a in shlex.split(command)]  # fmt: skip
        try:
            done = subprocess.run(args, capture_output=True, timeout=FLASH_TIMEOUT, check=False)
        except FileNotFoundError:
            raise InvalidArgumentError(f"flash command not found: {args[0]}") from None
        except subprocess.TimeoutExpired:
            raise InvalidArgumentError(f"flash command took over {FLASH_TIMEOUT:.0f} s") from None
        if done.returncode != 0:
            tail = (done.stderr or done.stdout).decode("utf-8", "replace").strip()
            raise InvalidArgumentError(
                f"flash command exited with {done.returncode}"
                + (f": {tail.splitlines()[-1][:200]}" if tail else "")
            )
        res.done.append("flash")
        self.ledger.add(dev.device_sn, "flash")

    def _label(self, dev, res: UnitResult, force: bool = False) -> None:
        if not self.label_format:
            return
        from ..qr.unit import render_unit_label

        if self.printer is not None:  # printed here, or reprinted since with `qr print`
            done_before = self.ledger.done(dev.device_sn, "print") or self.journal.printed(dev.sn)
        else:
            done_before = self.ledger.done(dev.device_sn, "label")
        if done_before and not force:
            res.resumed.append("print" if self.printer else "label")
            return
        data = render_unit_label(self.backend, self.group, dev, label_format=self.label_format,
                                 template=self.config.label_template)  # fmt: skip
        if self.printer is None:
            from .. import atomic
            from ..outputs import safe_filename

            labels = self.out / "labels"
            labels.mkdir(exist_ok=True)
            atomic.write_bytes(labels / f"{safe_filename(dev.device_sn)}.{self.label_format}",
                               data)  # fmt: skip
            res.done.append("label")
            self.ledger.add(dev.device_sn, "label")
            self._journal_label(dev, None)
            return
        res.done.append("label")
        self.printer.send(data, what=dev.device_sn)
        res.done.append("print")
        self.ledger.add(dev.device_sn, "print")
        self._journal_label(dev, self.config.printer)

    def _journal_label(self, dev, printer: str | None) -> None:
        detail = {"station": True, "format": self.label_format}
        if printer:
            from ..printing import public_uri

            detail["printer"] = public_uri(printer)
        rec = self.journal.begin("label-export", group_id=self.group.group_id, detail=detail)
        rec.add(dev.sn, dev.device_sn)
        rec.mark("labelled", dev.sn, dev.device_sn, dev.batch_tag_text)
        rec.commit()


def read_units(lines, columns: Sequence[str]) -> Iterator[tuple[int, dict | None, str | None]]:
    """(line number, values or None, error or None) for every non-blank input line."""
    for number, line in enumerate(lines, 1):
        try:
            values = parse_line(line, columns)
        except EnosprovError as exc:
            yield number, None, exc.message
            continue
        if values is not None:
            yield number, values, None
