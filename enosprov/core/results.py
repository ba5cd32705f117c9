"""The per-row results file of a batch run: CSV, or JSON lines when the name ends in .jsonl/.ndjson.

Written to a temporary file beside the target and moved into place at the end (``os.replace``), so
a reader never sees half a file. Input rows never hold secrets; the results file neither.

The input columns hold the values as read (enosprov's spreadsheet-safe ``'`` prefix removed). A
CSV results file is spreadsheet-safe (enosprov.csvsafe: text that would start a formula gets a
leading ``'``) unless ``raw_csv``.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

from ..atomic import AtomicFile
from ..domain import csvsafe
from ..domain.models import RegisterOutcome

RESULT_COLUMNS = ("row", "deviceSn", "sn", "outcome", "error")

# First characters that make a cell worth a closer look: the prefix to remove, or a trigger.
_LOOK = frozenset((csvsafe.PREFIX, *csvsafe.TRIGGERS))


def _values(fields: list[str]) -> list[str]:
    """The input cells as values: enosprov's spreadsheet-safe prefix removed."""
    return [csvsafe.restore(f) if f and f[0] == csvsafe.PREFIX else f for f in fields]


def _safe(cells: list) -> list:
    """The cells spreadsheet-safe: a value read with enosprov's prefix keeps it (restore, then
    csvsafe.cell gives it back); risky text gets it. Only cells that start with ' or a trigger
    go through csvsafe (a cheap test first: the file may have a million rows)."""
    prefix, cell, restore = csvsafe.PREFIX, csvsafe.cell, csvsafe.restore
    return [
        cell(restore(c) if c[0] == prefix else c)
        if c.__class__ is str and c and c[0] in _LOOK
        else c
        for c in cells
    ]


class ResultsWriter:
    def __init__(self, target: str | Path, *, raw_csv: bool = False) -> None:
        self.target = Path(target)
        self.raw_csv = raw_csv
        self.jsonl = self.target.suffix.lower() in (".jsonl", ".ndjson", ".json")
        self._file = AtomicFile(self.target)
        self._header: list[str] = []

    def open(self, input_header: list[str]) -> None:
        self._header = list(input_header)
        self._fh = self._file.open()
        if not self.jsonl:
            self._fh.write(csvsafe.bom(self.raw_csv))
            self._csv = csv.writer(self._fh)
            extra = [f"input.{h}" if h in RESULT_COLUMNS else h for h in self._header]
            self._csv.writerow(csvsafe.row([*RESULT_COLUMNS, *extra], raw=self.raw_csv))

    def write(self, rowno: int, fields: list[str], outcome: RegisterOutcome) -> None:
        if self.jsonl:
            self._fh.write(
                json.dumps(
                    {
                        "row": rowno,
                        "deviceSn": outcome.device_sn,
                        "sn": outcome.sn,
                        "outcome": outcome.outcome,
                        "error": outcome.error,
                        "input": dict(zip(self._header, _values(fields))),
                    },
                    ensure_ascii=False,
                )
                + "\n"
            )
        else:
            head = [rowno, outcome.device_sn, outcome.sn or "", outcome.outcome,
                    outcome.error or ""]  # fmt: skip
            if self.raw_csv:
                self._csv.writerow([*head, *_values(fields)])
            else:
                self._csv.writerow(_safe([*head, *fields]))

    def commit(self) -> str:
        return str(self._file.commit())

    def abort(self) -> None:
        """Remove the temporary file if commit() was not reached."""
        self._file.abort()
