"""Batch registration from CSV: validate the whole file, then write it chunk by chunk.

Pass 1 streams the file, checks every row (and duplicates inside the file) and stages the converted
rows in a temporary file (marshal, chunked), without touching the store. Pass 2 streams the staged
rows and hands chunks to ``backend.register_batch``, one transaction each. Rows are never all in
memory; what grows with the file is an 8-byte hash per row for the duplicate check (sorted once,
as Python ints: about 60 MB at 1,000,000 rows).
A killed run leaves whole chunks behind; running it again skips what is there (same data) and
reports conflicts (other data), so every row ends up registered exactly once.
"""

from __future__ import annotations

import collections
import itertools
import marshal
import operator
import tempfile
from array import array
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from ..backends.base import Backend
from ..errors import InvalidArgumentError, ValidationFailedError
from ..journal import NO_JOURNAL, Journal, journal_or_null
from ..models import RegisterOutcome
from .csvsource import CsvSource
from .results import ResultsWriter
from .rows import RowIssue, RowSchema, to_new_device

DEFAULT_CHUNK_SIZE = 10000
STAGE_CHUNK = 1000  # rows per marshal record in the staging file
MAX_REPORTED_ISSUES = 1000  # kept in memory and shown; the count covers them all

ProgressFn = Callable[[str, int, int | None], None]  # (phase, rows done, total rows or None)


@dataclass
class RegisterReport:
    """What a registration run did (or, with dry_run, would do)."""

    file: str
    group_id: str
    rows: int = 0
    created: int = 0
    skipped: int = 0
    conflicts: int = 0
    invalid: int = 0
    dry_run: bool = False
    batch_order: int | None = None
    results_file: str | None = None
    issues: list[RowIssue] = field(default_factory=list)
    issue_count: int = 0
    conflict_samples: list[RegisterOutcome] = field(default_factory=list)

    @property
    def complete(self) -> bool:
        return self.conflicts == 0 and self.invalid == 0

    def to_dict(self) -> dict:
        return {
            "file": self.file,
            "groupId": self.group_id,
            "dryRun": self.dry_run,
            "rows": self.rows,
            "created": self.created,
            "skipped": self.skipped,
            "conflicts": self.conflicts,
            "invalid": self.invalid,
            "batchOrder": self.batch_order,
            "resultsFile": self.results_file,
            "issueCount": self.issue_count,
            "issues": [i.to_dict() for i in self.issues],
            "conflictSamples": [
                {"deviceSn": o.device_sn, "sn": o.sn, "error": o.error}
                for o in self.conflict_samples
            ],
        }


def register_csv(
    backend: Backend,
    path: str | Path,
    group: str,
    *,
    batch_tag: str | None = None,
    skip_invalid: bool = False,
    dry_run: bool = False,
    results: str | Path | None = None,
    chunk_size: int = DEFAULT_CHUNK_SIZE,
    encoding: str | None = None,
    delimiter: str | None = None,
    progress: ProgressFn | None = None,
    journal: Journal | None = None,
) -> RegisterReport:
    """Register every device of a CSV file into a registration group. See docs/registration.md.

    Raises ValidationFailedError (nothing written) when a row is invalid and skip_invalid is off.
    A run that writes (not ``dry_run``) appends one "register" record to ``journal`` listing the
    devices it created: "ok", "partial" (conflicts or invalid rows), or "failed"/"interrupted"
    with the devices created before it stopped.
    """
    if chunk_size < 1:
        raise InvalidArgumentError("chunk size must be at least 1")
    grp = backend.get_group(group)
    mdg = backend.get_masterdata_group(grp.masterdata_group_id)
    source = CsvSource(path, encoding=encoding, delimiter=delimiter)
    report = RegisterReport(file=str(path), group_id=grp.group_id, dry_run=dry_run)

    # Pass 1: validate everything and stage the converted rows in a temporary file.
    with tempfile.TemporaryFile(prefix="enosprov-stage-") as staging:
        bad_rows, total, header = _validate(
            source, grp, mdg, batch_tag, report, progress, staging, keep_fields=bool(results)
        )
        if 1 in bad_rows:  # a header problem makes every row unusable, even with --skip-invalid
            raise ValidationFailedError(
                f"{path}: the header is invalid; nothing was registered",
                report.issues,
                total=report.issue_count,
                hint="`enosprov template csv --group G` prints the expected header",
            )
        if report.issue_count and not skip_invalid:
            n, r = report.issue_count, len(bad_rows)
            raise ValidationFailedError(
                f"{path}: {n} problem{'s' * (n != 1)} in {r} row{'s' * (r != 1)}; "
                "nothing was registered",
                report.issues,
                total=report.issue_count,
                hint="fix the rows listed, or pass --skip-invalid to register only the valid ones",
            )

        # Pass 2: write (or classify, for a dry run) in chunks, from the staged records.
        if not dry_run:
            report.batch_order = backend.next_batch_order()
        writer = ResultsWriter(results) if results else None
        journal_ = NO_JOURNAL if dry_run else journal_or_null(journal)
        detail = {"file": str(path), "batchOrder": report.batch_order, "batchTag": batch_tag}
        try:
            with journal_.begin("register", group_id=grp.group_id, detail=detail) as rec:
                try:
                    if writer:
                        writer.open(header)
                    _write_chunks(backend, grp.group_id, staging, bad_rows, chunk_size, report,
                                  writer, progress, total,
                                  None if journal_ is NO_JOURNAL else rec)  # fmt: skip
                    if writer:
                        report.results_file = writer.commit()
                finally:
                    rec.detail.update(
                        created=report.created, skipped=report.skipped,
                        conflicts=report.conflicts, invalid=report.invalid,
                    )  # fmt: skip
                rec.commit("ok" if report.complete else "partial")
        finally:
            if writer:
                writer.abort()
    return report


def _write_chunks(backend, group_id, staging, bad_rows, size, report, writer, progress, total,
                  journal_rec):  # fmt: skip
    """Pass 2: hand the staged rows to the backend chunk by chunk (one transaction each).

    Sequential on purpose: a writer thread overlapping SQLite with the Python work measured no
    faster here (GIL contention), and a failed chunk must stop everything after it. Rows left
    out by --skip-invalid travel in their chunk with a ready outcome, so results stay in order.
    The devices each chunk created go to the journal record ``journal_rec`` (when there is one) as soon
    as the chunk is written.
    """
    get_outcome = operator.attrgetter("outcome")
    get_sn, get_device_sn = operator.itemgetter(2), operator.itemgetter(0)  # RegisterOutcome
    for chunk in _chunks(staging, bad_rows, size):
        records = [to_new_device(rec) for _, rec, _, ready in chunk if ready is None]
        outcomes = (
            backend.register_batch(
                group_id, records, batch_order=report.batch_order, dry_run=report.dry_run
            )
            if records
            else []
        )
        if len(records) != len(chunk):  # rows left out as invalid keep their place
            it = iter(outcomes)
            outcomes = [ready or next(it) for _, _, _, ready in chunk]
        counts = collections.Counter(map(get_outcome, outcomes))
        _count(report, outcomes, counts)
        if journal_rec is not None and counts["created"]:
            created = (
                outcomes
                if counts["created"] == len(outcomes)
                else [o for o in outcomes if o.outcome == "created"]
            )
            # zip hands out (sn, deviceSn) without a new tuple per row once unpacked
            journal_rec.extend(zip(map(get_sn, created), map(get_device_sn, created)))
        if writer:
            for (rowno, _, fields, _), outcome in zip(chunk, outcomes):
                writer.write(rowno, fields, outcome)
        if progress:
            progress("register", report.rows, total)


def _validate(source, grp, mdg, batch_tag, report, progress, staging, keep_fields):
    """Pass 1: check every row and stage it; return (rows to leave out, row count, header)."""
    bad_rows: set[int] = set()
    hashes = array("q")
    count = 0
    with source.rows() as rows:
        schema = RowSchema(source.header, grp, mdg, default_batch_tag=batch_tag)
        for issue in schema.header_issues:
            _add_issue(report, issue)
        if schema.header_issues:
            return {1}, 0, source.header
        convert = schema.convert
        i_sn = schema.i_sn
        chunk: list[tuple] = []
        for rowno, fields in rows:
            record, issues = convert(rowno, fields)
            if issues:
                bad_rows.add(rowno)
                for issue in issues:
                    _add_issue(report, issue)
                sn = fields[i_sn].strip() if len(fields) > i_sn else ""
                record = (sn, None, None, _describe(issues))
            elif record is None:  # blank line
                continue
            else:
                hashes.append(hash(record[0]))
            chunk.append((rowno, record, fields if keep_fields else None))
            count += 1
            if len(chunk) >= STAGE_CHUNK:
                _stage(staging, chunk)
                chunk = []
                if progress:
                    progress("validate", count, None)
        if chunk:
            _stage(staging, chunk)
    _find_duplicates(staging, hashes, bad_rows, report)
    return bad_rows, count, source.header


def _describe(issues: list[RowIssue]) -> str:
    return "; ".join(i.message if i.column is None else f"{i.column}: {i.message}" for i in issues)


def _stage(staging, chunk: list[tuple]) -> None:
    blob = marshal.dumps(chunk)
    staging.write(len(blob).to_bytes(8, "little"))
    staging.write(blob)


def _staged(staging) -> Iterator[list[tuple]]:
    """The staged chunks, in order (length-prefixed: marshal.load on a file reads piecemeal)."""
    staging.seek(0)
    read = staging.read
    while True:
        size = read(8)
        if not size:
            return
        yield marshal.loads(read(int.from_bytes(size, "little")))


def _find_duplicates(staging, hashes, bad_rows, report) -> None:
    """Report deviceSns that appear twice. Hashes narrow the candidates; a rescan confirms."""
    ordered = sorted(hashes)
    del hashes
    candidates = {a for a, b in itertools.pairwise(ordered) if a == b}
    del ordered
    if not candidates:
        return
    first_row: dict[str, int] = {}
    for chunk in _staged(staging):
        for rowno, record, _ in chunk:
            if rowno in bad_rows or hash(record[0]) not in candidates:
                continue
            sn = record[0]
            if sn in first_row:
                bad_rows.add(rowno)
                _add_issue(
                    report,
                    RowIssue(rowno, "deviceSn", f"deviceSn {sn!r} duplicates row {first_row[sn]}"),
                )
            else:
                first_row[sn] = rowno


def _add_issue(report: RegisterReport, issue: RowIssue) -> None:
    report.issue_count += 1
    if len(report.issues) < MAX_REPORTED_ISSUES:
        report.issues.append(issue)


def _chunks(staging, bad_rows: set[int], size: int) -> Iterator[list[tuple]]:
    """Staged rows in order, in chunks of ``size`` valid rows, as (row, record, fields, ready):
    ``ready`` is the outcome of a row left out as invalid, None for a row to register."""
    chunk: list[tuple] = []
    valid = 0
    for staged in _staged(staging):
        for rowno, record, fields in staged:
            if rowno in bad_rows:
                error = record[3] if record[1] is None else "deviceSn duplicates an earlier row"
                chunk.append(
                    (rowno, record, fields, RegisterOutcome(record[0], "invalid", None, error))
                )
                continue
            chunk.append((rowno, record, fields, None))
            valid += 1
            if valid >= size:
                yield chunk
                chunk, valid = [], 0
    if chunk:
        yield chunk


def _count(report: RegisterReport, outcomes: list[RegisterOutcome], counts) -> None:
    report.rows += len(outcomes)
    report.created += counts["created"]
    report.skipped += counts["skipped"]
    report.invalid += counts["invalid"]
    report.conflicts += counts["conflict"]
    if counts["conflict"] and len(report.conflict_samples) < 20:
        conflicts = [o for o in outcomes if o.outcome == "conflict"]
        report.conflict_samples.extend(conflicts[: 20 - len(report.conflict_samples)])
