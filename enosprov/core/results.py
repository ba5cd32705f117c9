"""The per-row results file of a batch run: CSV, or JSON lines when the name ends in .jsonl/.ndjson.

Written to a temporary file beside the target and moved into place at the end (``os.replace``), so
a reader never sees half a file. Input rows never hold secrets; the results file neither.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

from ..atomic import AtomicFile
from ..models import RegisterOutcome

RESULT_COLUMNS = ("row", "deviceSn", "sn", "outcome", "error")


class ResultsWriter:
    def __init__(self, target: str | Path) -> None:
        self.target = Path(target)
        self.jsonl = self.target.suffix.lower() in (".jsonl", ".ndjson", ".json")
        self._file = AtomicFile(self.target)
        self._header: list[str] = []

    def open(self, input_header: list[str]) -> None:
        self._header = list(input_header)
        self._fh = self._file.open()
        if not self.jsonl:
            self._csv = csv.writer(self._fh)
            extra = [f"input.{h}" if h in RESULT_COLUMNS else h for h in self._header]
            self._csv.writerow([*RESULT_COLUMNS, *extra])

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
                        "input": dict(zip(self._header, fields)),
                    },
                    ensure_ascii=False,
                )
                + "\n"
            )
        else:
            self._csv.writerow(
                [rowno, outcome.device_sn, outcome.sn or "", outcome.outcome, outcome.error or "",
                 *fields]
            )  # fmt: skip

    def commit(self) -> str:
        return str(self._file.commit())

    def abort(self) -> None:
        """Remove the temporary file if commit() was not reached."""
        self._file.abort()
