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
import contextlib
import csv
import io
import itertools
import marshal
import operator
import shutil
import tempfile
from array import array
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO

from ..backends.base import Backend
from ..domain import csvsafe
from ..domain.csvsource import CsvSource
from ..domain.errors import (
    BackendUnavailableError,
    EnosprovError,
    InvalidArgumentError,
    ValidationFailedError,
)
from ..domain.models import RegisterOutcome
from ..journal import NO_JOURNAL, Journal, journal_or_null
from .results import ResultsWriter
from .rows import RowIssue, RowSchema, RowWarning, to_new_device

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
    failed: int = 0
    retired: int = 0  # rows refused because their deviceSn is a retired unit (among invalid)
    dry_run: bool = False
    batch_order: int | None = None
    results_file: str | None = None
    issues: list[RowIssue] = field(default_factory=list)
    issue_count: int = 0
    conflict_samples: list[RegisterOutcome] = field(default_factory=list)
    # values accepted that a spreadsheet would read as formulas (=1+2, -2+3): how many, the
    # first few, the rows they are in (the first few, and how many)
    warnings: int = 0
    warning_samples: list[RowWarning] = field(default_factory=list)
    warning_rows: list[int] = field(default_factory=list)
    warning_row_count: int = 0
    ignored_columns: list[str] = field(default_factory=list)  # --ignore-unknown-columns

    @property
    def complete(self) -> bool:
        return self.conflicts == 0 and self.invalid == 0 and self.failed == 0

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
            "failed": self.failed,
            "retired": self.retired,
            "batchOrder": self.batch_order,
            "resultsFile": self.results_file,
            "issueCount": self.issue_count,
            "issues": [i.to_dict() for i in self.issues],
            "conflictSamples": [
                {"deviceSn": o.device_sn, "sn": o.sn, "error": o.error}
                for o in self.conflict_samples
            ],
            "warnings": self.warnings,
            "warningRows": self.warning_rows,
            "warningSamples": [w.to_dict() for w in self.warning_samples],
            "ignoredColumns": self.ignored_columns,
        }


def register_csv(
    backend: Backend,
    path: str | Path | CsvSource,
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
    raw_csv: bool = False,
    allow_retired: bool = False,
    ignore_unknown_columns: bool = False,
) -> RegisterReport:
    """Register every device of a CSV file (a path, or a :class:`CsvSource` such as one built
    by :func:`register_records`) into a registration group. See docs/registration.md.

    A row whose deviceSn is a retired unit (replaced; known from ``journal`` and, on the local
    store, its replacements table) is invalid, its issue naming the unit in service, unless
    ``allow_retired``: re-running an old batch file must not bring a replaced unit back.

    Text values a spreadsheet would read as formulas (``=1+2``) are registered as they are and
    counted in ``report.warnings``. A CSV ``results`` file is spreadsheet-safe (enosprov.csvsafe)
    unless ``raw_csv``. A column that is neither a fixed column nor a master data identifier is
    an error, unless ``ignore_unknown_columns`` (then left out, named in ``report.ignored_columns``).

    Raises ValidationFailedError (nothing written) when a row is invalid and skip_invalid is off;
    a ``results`` file then lists every row with its error (the valid ones "not-registered").
    A run that writes (not ``dry_run``) appends one "register" record to ``journal`` per chunk
    (see :class:`ChunkAudit`), listing the devices the chunk created: "ok", "partial"
    (conflicts or invalid rows) or "failed" (rows the backend could not be reached for: the
    run then stops with its counts in BackendUnavailableError and the results so far). A file
    without data rows changes nothing (no batch order is taken, nothing is journaled).
    """
    if chunk_size < 1:
        raise InvalidArgumentError("chunk size must be at least 1")
    grp = backend.get_group(group)
    mdg = backend.get_masterdata_group(grp.masterdata_group_id)
    if isinstance(path, CsvSource):
        source = path
    else:
        source = CsvSource(path, encoding=encoding, delimiter=delimiter)
    path = source.name
    report = RegisterReport(file=path, group_id=grp.group_id, dry_run=dry_run)

    retired = None if allow_retired else _RetiredRows(backend, journal, grp.group_id)

    # Pass 1: validate everything and stage the converted rows in a temporary file.
    with tempfile.TemporaryFile(prefix="enosprov-stage-") as staging:
        bad_rows, total, header = _validate(
            source, grp, mdg, batch_tag, report, progress, staging, keep_fields=bool(results),
            retired=retired, ignore_unknown=ignore_unknown_columns,
        )  # fmt: skip
        if 1 in bad_rows:  # a header problem makes every row unusable, even with --skip-invalid
            raise ValidationFailedError(
                f"{path}: the header is invalid; nothing was registered",
                report.issues,
                total=report.issue_count,
                hint="`enosprov template csv --group G` prints the expected header",
            )
        if report.issue_count and not skip_invalid:
            n, r = report.issue_count, len(bad_rows)
            hint = "fix the rows listed, or pass --skip-invalid to register only the valid ones"
            if report.retired:
                hint += "; a retired unit is registered again only with --allow-retired"
            if results:  # every row with its error, the valid ones "not registered"
                hint += f"; every row with its error in {_refused_results(results, raw_csv, header, staging, bad_rows)}"
            raise ValidationFailedError(
                f"{path}: {n} problem{'s' * (n != 1)} in {r} row{'s' * (r != 1)}; "
                "nothing was registered",
                report.issues,
                total=report.issue_count,
                hint=hint,
            )

        # Pass 2: write (or classify, for a dry run) in chunks, from the staged records.
        to_write = total - len(bad_rows)
        writer = ResultsWriter(results, raw_csv=raw_csv) if results else None
        audit = None
        try:
            if writer:  # a results file that cannot be written is refused before any change
                writer.open(header)
            if not dry_run and to_write > 0:  # no data rows: nothing changes
                report.batch_order = backend.next_batch_order()
            journal_ = NO_JOURNAL if dry_run or to_write == 0 else journal_or_null(journal)
            audit = ChunkAudit(journal_, backend, grp.group_id, {
                "file": str(path), "batchOrder": report.batch_order, "batchTag": batch_tag,
            })  # fmt: skip
            _write_chunks(backend, grp.group_id, staging, bad_rows, chunk_size, report, writer,
                          progress, total, audit)  # fmt: skip
            if writer:
                report.results_file = writer.commit()
        except KeyboardInterrupt:
            if audit is not None:
                audit.stopped("interrupted", "interrupted")
            raise
        except EnosprovError as exc:
            if audit is not None:
                audit.stopped("failed", exc.message)
            if isinstance(exc, BackendUnavailableError):  # the rows done so far still count
                raise _stopped(exc, report, writer) from None
            raise
        finally:
            if writer:
                writer.abort()
    return report


def register_records(
    backend: Backend,
    records: Iterable[Mapping[str, object]],
    group: str,
    *,
    name: str = "<records>",
    **kw,
) -> RegisterReport:
    """Register devices given in memory, one mapping per device with the CSV columns
    (docs/csv-format.md: ``deviceSn``, ``deviceName``, ``timezone``, ``batchTag``, ``desc``,
    master data identifiers...), with exactly the validation, idempotency and journal of a
    CSV row. ``kw`` as for :func:`register_csv` (``batch_tag``, ``journal``, ...)."""
    rows = [{k: "" if v is None else str(v) for k, v in r.items()} for r in records]
    columns = list(dict.fromkeys(k for r in rows for k in r))
    buf = io.StringIO()
    out = csv.writer(buf, lineterminator="\n")
    out.writerow(columns)
    for r in rows:  # written spreadsheet-safe: the reader gives every value back exactly
        out.writerow(csvsafe.row(r.get(c, "") for c in columns))
    try:
        return register_csv(backend, CsvSource.from_text(buf.getvalue(), name), group, **kw)
    except ValidationFailedError as exc:
        if len(rows) != 1:
            raise
        # one record: its problems in one line, by field name (no rows, no header talk)
        problems = "; ".join(_field_problem(i) for i in exc.issues)
        hint = "give the values as --set key=value (a station: SN,key=value on the line)"
        if any(RETIRED_ISSUE in i.message for i in exc.issues):
            hint = "take the old unit out of service, or register it anyway with --allow-retired"
        raise ValidationFailedError(
            f"{name}: {problems}; nothing was registered", [], hint=hint
        ) from None


def _field_problem(issue: RowIssue) -> str:
    message = issue.message
    if message.startswith("required master data column"):
        return f"{message.split(chr(39))[1]}: a value is required"
    return f"{issue.column}: {message}" if issue.column else message


def register_stream(
    backend: Backend, stream: BinaryIO, group: str, *, name: str = "<stdin>", **kw
) -> RegisterReport:
    """Register the CSV read from ``stream`` (standard input): copied to a temporary file as
    it arrives (never whole in memory), then registered like a file."""
    with tempfile.TemporaryDirectory(prefix="enosprov-stdin-") as tmp:
        path = Path(tmp) / "input.csv"
        with open(path, "wb") as fh:
            shutil.copyfileobj(stream, fh, 1 << 20)
        source = CsvSource(path, encoding=kw.pop("encoding", None),
                           delimiter=kw.pop("delimiter", None))  # fmt: skip
        source.name = name
        return register_csv(backend, source, group, **kw)


class ChunkAudit:
    """The audit trail of a registration: one "register" journal record per chunk, with the
    devices that chunk created, its counts and the run it belongs to (``detail.run``,
    ``detail.part``), so that every committed device has its record whatever happens next.

    On the local store, whose journal is in the store file, the record is written through the
    store's connection inside the chunk's own transaction: the devices and their record commit
    together. Elsewhere (EnOS), an intent record (outcome "pending", the chunk's deviceSns) is
    written before the chunk's creates and referenced by the chunk's record; an intent left
    without one (a kill while creates were in flight) is settled by the next run of the group
    (:func:`settle_intents`), which records the devices EnOS holds.
    """

    def __init__(self, journal, backend: Backend, group_id: str, detail: dict) -> None:
        import secrets

        self.journal = journal
        self.group_id = group_id
        self.detail = {**detail, "run": secrets.token_hex(6)}
        self.part = 0
        self.invalid = 0  # rows of the current chunk left out as invalid
        self.intent: int | None = None
        self.last: str | None = None  # outcome of the last chunk record
        # Probe for the one case where the record can share the change's transaction.
        self.atomic = journal is NO_JOURNAL or journal.is_in(backend.journal_connection)
        if not self.atomic:
            try:
                settle_intents(backend, journal, group_id)
            except BackendUnavailableError:
                pass  # EnOS unreachable for the look-up: the intents stay open for a later run

    def before(self, records, invalid: int) -> None:
        self.part += 1
        self.invalid = invalid
        self.intent = None
        if not self.atomic and records:
            self.intent = self.journal.record_with(
                None, "register", outcome="pending", group_id=self.group_id,
                devices=[("", r.device_sn) for r in records],
                detail={**self.detail, "part": self.part},
            )  # fmt: skip

    def __call__(self, conn, outcomes: list[RegisterOutcome]) -> None:
        """The chunk's record (the backend's on_commit hook)."""
        counts = collections.Counter(o.outcome for o in outcomes)
        created = [(o.sn, o.device_sn) for o in outcomes if o.outcome == "created"]
        if counts["failed"]:
            outcome = "failed"
        elif counts["conflict"] or self.invalid:
            outcome = "partial"
        else:
            outcome = "ok"
        detail = {**self.detail, "part": self.part, "created": counts["created"],
                  "skipped": counts["skipped"], "conflicts": counts["conflict"],
                  "failed": counts["failed"], "invalid": self.invalid}  # fmt: skip
        if self.intent is not None and not counts["failed"]:
            # completed; a row that failed may still have been created (its answer was lost):
            # the intent then stays open, and the next run records what EnOS holds
            detail["intent"] = self.intent
        error = next((o.error for o in outcomes if o.outcome == "failed"), None)
        self.journal.record_with(conn, "register", outcome=outcome, devices=created,
                                 group_id=self.group_id, detail=detail, error=error)  # fmt: skip
        self.last = outcome

    def stopped(self, outcome: str, error: str) -> None:
        """The run stopped (an error, Ctrl-C): the chunks done have their records; one more
        says where and why it stopped, unless the last chunk's record already says it failed.
        An intent of the chunk in progress stays open, to be settled by the next run."""
        if self.last == "failed":
            return
        with contextlib.suppress(Exception):  # best effort: the error that stopped it matters more
            self.journal.record_with(None, "register", outcome=outcome, group_id=self.group_id,
                                     error=error, detail={**self.detail, "part": self.part})  # fmt: skip


def settle_intents(backend: Backend, journal, group_id: str) -> int:
    """Record the devices that runs killed with creates in flight left in the backend: for each
    intent of ``group_id`` that no chunk record references, the intended deviceSns that exist,
    were created after the intent and are listed by no other record are recorded as created
    (``detail.settles``). One look-up pass covers every open intent. Returns how many devices
    were recorded."""
    from ..domain.models import SearchQuery

    intents = journal.open_intents(group_id)
    if not intents:
        return 0
    wanted = list(dict.fromkeys(dsn for i in intents for _, dsn in i.devices))
    existing: dict[str, tuple[str, int | None]] = {}
    for start in range(0, len(wanted), 500):
        query = SearchQuery(group_id=group_id, device_sns=tuple(wanted[start : start + 500]))
        existing.update((d.device_sn, (d.sn, d.create_time)) for d in backend.iter_devices(query))
    # devices another record already lists (an earlier run's, a settlement's) count once
    recorded = journal.recorded_sns(group_id, min(i.time for i in intents) - INTENT_SKEW_MS)
    settled = 0
    for intent in intents:
        found: list[tuple[str, str]] = []
        for _, dsn in intent.devices:
            sn, created = existing.get(dsn, (None, None))
            if sn is None or sn in recorded:
                continue
            if created is None or created >= intent.time - INTENT_SKEW_MS:
                found.append((sn, dsn))
                recorded.add(sn)
        kept = {k: intent.detail.get(k) for k in ("run", "part", "file", "batchOrder", "batchTag")}
        detail = {**kept, "intent": intent.id, "settles": intent.id, "created": len(found)}
        journal.record_with(
            None, "register", outcome="ok", devices=found, group_id=group_id, detail=detail
        )
        settled += len(found)
    return settled


INTENT_SKEW_MS = 60_000  # a device created up to a minute before its intent's clock still counts


def _write_chunks(backend: Backend, group_id, staging, bad_rows, size, report, writer, progress, total,
                  audit):  # fmt: skip
    """Pass 2: hand the staged rows to the backend chunk by chunk (one transaction each).

    Sequential on purpose: a writer thread overlapping SQLite with the Python work measured no
    faster here (GIL contention), and a failed chunk must stop everything after it. Rows left
    out by --skip-invalid travel in their chunk with a ready outcome, so results stay in order.
    Each chunk's journal record is written by ``audit`` (in the chunk's transaction where the
    backend allows it). A chunk whose rows could not all be registered (EnOS unreachable) is
    counted, journaled and written to the results, then the run stops with its counts.
    """
    get_outcome = operator.attrgetter("outcome")
    for chunk in _chunks(staging, bad_rows, size):
        records = [to_new_device(rec) for _, rec, _, ready in chunk if ready is None]
        if not report.dry_run:
            audit.before(records, len(chunk) - len(records))
        outcomes = (
            backend.register_batch(
                group_id,
                records,
                batch_order=report.batch_order,
                dry_run=report.dry_run,
                on_commit=None if report.dry_run else audit,
            )
            if records
            else []
        )
        if len(records) != len(chunk):  # rows left out as invalid keep their place
            it = iter(outcomes)
            outcomes = [ready or next(it) for _, _, _, ready in chunk]
        counts = collections.Counter(map(get_outcome, outcomes))
        _count(report, outcomes, counts)
        if writer:
            for (rowno, _, fields, _), outcome in zip(chunk, outcomes):
                writer.write(rowno, fields, outcome)
        if progress:
            progress("register", report.rows, total)
        if counts["failed"]:
            _stop_failed(report, outcomes)


NOT_REGISTERED = "not registered: the file has invalid rows (fix them, or --skip-invalid)"


def _refused_results(results, raw_csv: bool, header, staging, bad_rows: set[int]) -> str:
    """The results file of a run refused for its invalid rows: each invalid row with its error
    (outcome "invalid"), each valid one as "not-registered"; nothing was registered."""
    writer = ResultsWriter(results, raw_csv=raw_csv)
    try:
        writer.open(header)
        for chunk in _chunks(staging, bad_rows, DEFAULT_CHUNK_SIZE):
            for rowno, record, fields, ready in chunk:
                outcome = ready or RegisterOutcome(
                    record[0], "not-registered", None, NOT_REGISTERED
                )
                writer.write(rowno, fields, outcome)
        return writer.commit()
    finally:
        writer.abort()


def _stop_failed(report: RegisterReport, outcomes: list[RegisterOutcome]) -> None:
    """Stop after a chunk some of whose rows failed (EnOS could not be reached for them)."""
    first = next(o for o in outcomes if o.outcome == "failed")
    raise BackendUnavailableError(
        f"{report.failed} row(s) could not be registered ({first.device_sn}: {first.error})"
    )


def _stopped(exc: BackendUnavailableError, report: RegisterReport, writer):
    """The error that stops a run, with its counts and the results of the rows it got to."""
    if writer and report.rows:
        report.results_file = writer.commit()
    where = f"; results so far in {report.results_file}" if report.results_file else ""
    return type(exc)(
        f"{exc.message}; the run stopped after {report.rows} rows: {report.created} created, "
        f"{report.skipped} skipped, {report.conflicts} conflicts, {report.failed} failed{where}",
        hint="running the same file again is safe: registered rows are skipped",
        enos_code=exc.enos_code,
        request_id=exc.request_id,
    )


RETIRED_ISSUE = "is a retired unit"


class _RetiredRows:
    """The retired deviceSns of a group (read once), and the issue of a row that names one."""

    def __init__(self, backend: Backend, journal, group_id: str) -> None:
        from .lineage import retired_links

        self.backend, self.journal, self.group_id = backend, journal, group_id
        self.links = {dsn: link for (_g, dsn), link in
                      retired_links(backend, journal, group_id).items()}  # fmt: skip

    def issue(self, rowno: int, device_sn: str) -> RowIssue | None:
        link = self.links.get(device_sn)
        if link is None:
            return None
        from .lineage import retirement_from_link

        r = retirement_from_link(self.backend, self.journal, link, returned=None)
        return RowIssue(rowno, "deviceSn", f"{device_sn} {RETIRED_ISSUE}: {r.describe()}")


def _validate(source, grp, mdg, batch_tag, report, progress, staging, keep_fields, retired=None,
              ignore_unknown=False):  # fmt: skip
    """Pass 1: check every row and stage it; return (rows to leave out, row count, header)."""
    bad_rows: set[int] = set()
    hashes = array("q")
    count = 0
    with source.rows() as rows:
        schema = RowSchema(source.header, grp, mdg, default_batch_tag=batch_tag,
                           ignore_unknown=ignore_unknown)  # fmt: skip
        report.ignored_columns = schema.ignored_columns
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
                sn = csvsafe.restore(fields[i_sn].strip()) if len(fields) > i_sn else ""
                record = (sn, None, None, _describe(issues))
            elif record is None:  # blank line
                continue
            elif retired is not None and record[0] in retired.links:
                issue = retired.issue(rowno, record[0])
                bad_rows.add(rowno)
                _add_issue(report, issue)
                report.retired += 1
                record = (record[0], None, None, _describe([issue]))
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
        report.warnings, report.warning_samples = schema.warning_count, schema.warnings
        report.warning_rows = schema.warning_rows
        report.warning_row_count = schema.warning_row_count
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
    report.failed += counts["failed"]
    if counts["conflict"] and len(report.conflict_samples) < 20:
        conflicts = [o for o in outcomes if o.outcome == "conflict"]
        report.conflict_samples.extend(conflicts[: 20 - len(report.conflict_samples)])
