"""The per-row results file of a batch run: CSV, or JSON lines when the name ends in .jsonl/.ndjson.

Written to a temporary file beside the target and moved into place at the end (``os.replace``), so
a reader never sees half a file. Input rows never hold secrets; the results file neither.
"""

from __future__ import annotations

import csv
import json
import os
import tempfile
from pathlib import Path

from ..errors import InputFileError
from ..models import RegisterOutcome

RESULT_COLUMNS = ("row", "deviceSn", "sn", "outcome", "error")


class ResultsWriter:
    def __init__(self, target: str | Path) -> None:
        self.target = Path(target)
        self.jsonl = self.target.suffix.lower() in (".jsonl", ".ndjson", ".json")
        self._fh = None
        self._tmp: str | None = None
        self._header: list[str] = []

    def open(self, input_header: list[str]) -> None:
        self._header = list(input_header)
        try:
            self.target.parent.mkdir(parents=True, exist_ok=True)
            fd, self._tmp = tempfile.mkstemp(
                dir=self.target.parent, prefix=f".{self.target.name}.", suffix=".tmp"
            )
        except OSError as exc:
            raise InputFileError(f"cannot write results file {self.target}: {exc}") from None
        self._fh = os.fdopen(fd, "w", encoding="utf-8", newline="")
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
                [
                    rowno,
                    outcome.device_sn,
                    outcome.sn or "",
                    outcome.outcome,
                    outcome.error or "",
                    *fields,
                ]
            )

    def commit(self) -> str:
        self._fh.close()
        os.replace(self._tmp, self.target)
        self._tmp = None
        return str(self.target)

    def abort(self) -> None:
        """Remove the temporary file if commit() was not reached."""
        if self._tmp:
            if self._fh and not self._fh.closed:
                self._fh.close()
            try:
                os.unlink(self._tmp)
            except OSError:
                pass
            self._tmp = None
