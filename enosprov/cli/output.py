"""The only code that prints or exits: results, errors, tables and progress.

``--json``: stdout carries exactly one JSON document, ``{"data": ...}`` or ``{"error": {...}}``.
Otherwise results go to stdout and errors, hints and progress to stderr (progress only on a TTY).

Every value shown to a person goes through :func:`printable` here, once: control characters
(C0 including tab and newline, DEL, C1, bidi controls; core.rules.CONTROL_RE) are shown escaped,
``\\n``, ``\\t``, ``\\r``, ``\\x1b``, ``\\u202e``, and values are printed as plain text, never
as rich markup or emoji codes. A cell given as a list is deliberately multi-line: one line per
item. ``--json`` output is exact JSON (its escaping covers control characters).
"""

from __future__ import annotations

import functools
import json
import re
import sys
from collections.abc import Callable
from contextlib import contextmanager
from typing import TYPE_CHECKING, TypeVar

import typer

from ..domain.errors import EXIT_FAILED, EXIT_INTERRUPTED, EnosprovError, ValidationFailedError
from ..domain.rules import CONTROL_RE

T = TypeVar("T")
if TYPE_CHECKING:  # the installed typer (>= 0.28) carries its own copy of click
    from typer._click import ClickException as _ClickException
else:  # typer >= 0.28 carries its own copy of click; older ones use click itself
    _ClickException = (getattr(typer.core, "_click", None) or typer.core.click).ClickException

_NAMED_ESCAPES = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}


def _escape_char(m: re.Match) -> str:
    ch = m.group()
    named = _NAMED_ESCAPES.get(ch)
    if named:
        return named
    code = ord(ch)
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def printable(value: object) -> str:
    """``value`` as one line of inert text for a terminal: every control character (C0 with
    tab and newline, DEL, C1, bidi controls, U+2028/U+2029) shown as an escape, e.g. ESC as
    ``\\x1b``, a newline as ``\\n``, U+202E as ``\\u202e``. None is the empty string."""
    text = "" if value is None else str(value)
    return CONTROL_RE.sub(_escape_char, text)


def _text(value: object, style: str = ""):
    """A rich Text of ``value``: escaped, never parsed as markup or emoji. A list or tuple is
    deliberately multi-line (one line per item, each escaped)."""
    from rich.text import Text

    if isinstance(value, (list, tuple)):
        return Text("\n".join(printable(v) for v in value), style=style)
    return Text(printable(value), style=style)


# --quiet (every command, cli/__init__.py): no tables, summaries, notes or progress; errors
# and their hints are still printed, and --json / --jsonl output is unchanged.
_quiet = False


# Times shown to people: UTC (the default, "2026-12-02 04:43Z") or the computer's local time
# with its offset ("2026-12-02 05:43+01:00"): the root option --utc / --local. --json, CSV files
# and the journal always carry UTC (ISO 8601) and epoch milliseconds.
_local_time = False


def set_local_time(local: bool) -> None:
    global _local_time
    _local_time = local


def show_time(when: int | str | None, *, seconds: bool = True) -> str:
    """A moment for people: epoch milliseconds or an ISO 8601 text, in UTC or local time."""
    import datetime as dt

    if when is None or when == "":
        return ""
    if isinstance(when, str):
        try:
            moment = dt.datetime.fromisoformat(when.replace("Z", "+00:00"))
        except ValueError:
            return when
        if moment.tzinfo is None:
            moment = moment.replace(tzinfo=dt.timezone.utc)
    else:
        moment = dt.datetime.fromtimestamp(when / 1000, dt.timezone.utc)
    if _local_time:
        moment = moment.astimezone()
        offset = moment.strftime("%z")
        zone = f"{offset[:3]}:{offset[3:]}" if offset else ""
    else:
        zone = "Z"
    return moment.strftime("%Y-%m-%d %H:%M:%S" if seconds else "%Y-%m-%d %H:%M") + zone


def set_quiet(quiet: bool) -> None:
    global _quiet
    _quiet = quiet


def is_quiet() -> bool:
    return _quiet


def _console(stderr: bool = False, *, always: bool = False):
    from rich.console import Console

    return Console(stderr=stderr, highlight=False, soft_wrap=True, quiet=_quiet and not always)


def emit(data: T, as_json: bool, render: Callable[[T], None] | None = None) -> None:
    """Print a command's result: ``{"data": ...}`` with --json, else through ``render``."""
    if as_json:
        payload = data.to_dict() if hasattr(data, "to_dict") else data
        sys.stdout.write(json.dumps({"data": payload}, ensure_ascii=False, default=str) + "\n")
    elif render is not None:
        render(data)


def print_error(err: EnosprovError, as_json: bool) -> None:
    if as_json:
        sys.stdout.write(json.dumps({"error": err.to_dict()}, ensure_ascii=False) + "\n")
        return
    from rich.text import Text

    out = _console(stderr=True, always=True)
    if isinstance(err, ValidationFailedError):
        for issue in err.issues:
            out.print(_text(f"  {issue}"))
        if err.total > len(err.issues):
            out.print(_text(f"  ... and {err.total - len(err.issues)} more"))
    code = f" [{err.enos_code}]" if err.enos_code is not None else ""
    out.print(Text.assemble(_text(f"error{code}:", "bold red"), " ", _text(err.message)))
    if err.hint:
        out.print(Text.assemble(_text("hint:", "dim"), " ", _text(err.hint, "dim")))


def handled(fn):
    """Decorate a command: user errors become one clear line and a stable exit code."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        as_json = bool(kwargs.get("json_", False)) or kwargs.get("fmt") == "json"
        try:
            return fn(*args, **kwargs)
        except EnosprovError as err:
            print_error(err, as_json)
            raise typer.Exit(err.exit_code) from None
        except KeyboardInterrupt:
            say("interrupted", stderr=True)
            raise typer.Exit(EXIT_INTERRUPTED) from None
        except BrokenPipeError:  # the reader left (`enosprov log --format csv | head`)
            _silence_stdout()
            raise typer.Exit(EXIT_BROKEN_PIPE) from None
        except (typer.Exit, typer.Abort, SystemExit, _ClickException):
            raise  # a usage error raised by a command (typer.BadParameter): Click prints it
        except Exception as exc:
            if _debug(kwargs.get("ctx")):
                raise
            internal = EnosprovError(
                f"internal error: {type(exc).__name__}",
                hint="run again with --debug for a traceback, and report it",
            )
            print_error(internal, as_json)
            raise typer.Exit(EXIT_FAILED) from None

    return wrapper


EXIT_BROKEN_PIPE = 141  # 128 + SIGPIPE, as a shell reports a writer whose reader left


def _silence_stdout() -> None:
    """After a broken pipe: what is still buffered for stdout goes nowhere, so that Python's
    own flush at exit does not fail again."""
    import os

    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError):  # stdout without a file descriptor (a test runner)
        return


def _debug(ctx) -> bool:
    obj = ctx.find_root().obj if ctx is not None else None
    return bool(getattr(obj, "debug", False))


# Identifiers people copy (system sn, deviceSn, group id) are never wrapped or cut: their column
# keeps its full width and the other columns give way.
KEEP_WHOLE = {"sn", "deviceSn", "group id"}

# --format of the listing commands (cli/options.py FormatOpt): "table", or "csv" / "tsv", which
# every table() of the command writes as a header line and one line per row instead.
TABLE_FORMATS = ("table", "json", "csv", "tsv")
_table_format = "table"


def set_table_format(fmt: str) -> None:
    global _table_format
    _table_format = fmt


def table(
    title: str | None,
    columns: list[str],
    rows: list[list],
    *,
    no_wrap: frozenset[str] | set[str] = frozenset(),
    wide: bool = False,
) -> None:
    """A table, as wide as the terminal (80 columns when the output is not a terminal and
    COLUMNS is not set; ``wide``: as wide as the rows need there, for grep). Words are never
    broken: cells wrap at spaces, and a word longer than its column ends with an ellipsis;
    a header keeps at least the width of its longest word; identifiers and ``no_wrap`` columns
    never wrap. With --format csv|tsv: delimited lines instead, every value whole."""
    if _table_format in ("csv", "tsv"):
        _delimited(columns, rows, "," if _table_format == "csv" else "\t")
        return
    from rich.table import Table

    cells = [[_text(v) for v in r] for r in rows]
    t = Table(title=_text(title) if title else None, show_lines=False, header_style="bold")
    for i, c in enumerate(columns):
        if c in KEEP_WHOLE:
            width = max([len(c), *(_width(r[i]) for r in cells)])
            t.add_column(_text(c), no_wrap=True, min_width=width)
        else:
            longest_word = max((len(w) for w in c.split()), default=1)
            t.add_column(_text(c), no_wrap=c in no_wrap, overflow="ellipsis",
                         min_width=longest_word)  # fmt: skip
    for r in cells:
        t.add_row(*r)
    console = _console()
    if wide and not console.is_terminal:
        console.width = max(console.width, 400)
    console.print(t)


def _delimited(columns: list[str], rows: list[list], delimiter: str) -> None:
    """CSV (RFC 4180 quoting) or TSV (tab, newline and other control characters escaped as
    \\t, \\n...) on stdout: the header, then one line per row; a list cell is joined with
    spaces. Cells that a spreadsheet would run as a formula get a leading ' (docs/csv-format.md,
    "Spreadsheet-safe output"), as in every CSV enosprov writes for people."""
    import csv

    from ..domain.csvsafe import cell as safe_cell

    def one(value: object) -> str:
        text = " ".join(map(str, value)) if isinstance(value, (list, tuple)) else value
        text = "" if text is None else str(text)
        return str(safe_cell(printable(text) if delimiter == "\t" else text))

    if _quiet:
        return
    if delimiter == "\t":
        for line in [columns, *rows]:
            sys.stdout.write("\t".join(one(v) for v in line) + "\n")
        return
    writer = csv.writer(sys.stdout, lineterminator="\n")
    writer.writerow([one(c) for c in columns])
    writer.writerows([one(v) for v in r] for r in rows)


def _width(text) -> int:
    """Terminal columns of a Text's widest line."""
    from rich.cells import cell_len

    return max(cell_len(line) for line in text.plain.split("\n"))


def say(text: str, stderr: bool = False) -> None:
    """One line of text (control characters escaped, no markup); on stderr when stdout carries
    --format csv|tsv rows."""
    _console(stderr=stderr or _table_format in ("csv", "tsv")).print(_text(text))


def notice(text: str) -> None:
    """One line on stderr that --quiet does not silence (a deprecated option spelling)."""
    _console(stderr=True, always=True).print(_text(text))


def status_line(text: str, ok: bool) -> None:
    """One result line, green or red on a terminal (plain text in a pipe), flushed at once."""
    _console().print(_text(text, style="green" if ok else "bold red"))
    sys.stdout.flush()


def key_values(pairs: list[tuple[str, object]]) -> None:
    from rich.table import Table

    if _table_format in ("csv", "tsv"):
        _delimited(["key", "value"], [[k, v] for k, v in pairs], "," if _table_format == "csv"
                   else "\t")  # fmt: skip
        return
    t = Table.grid(padding=(0, 2))
    t.add_column(style="bold")
    t.add_column(overflow="fold")
    for k, v in pairs:
        t.add_row(_text(k), _text(v))
    _console().print(t)


@contextmanager
def progress_bar(enabled: bool, description: str):
    """A progress callback ``(phase, done, total)`` drawn on stderr when it is a terminal."""
    if not enabled or _quiet or not sys.stderr.isatty():
        yield None
        return
    from rich.markup import escape
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TaskID,
        TextColumn,
        TimeElapsedColumn,
    )

    with Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=_console(stderr=True),
        transient=True,
    ) as bar:
        tasks: dict[str, TaskID] = {}

        def update(phase: str, done: int, total: int | None) -> None:
            if phase not in tasks:
                label = escape(printable(f"{description}: {phase}"))  # a markup column
                tasks[phase] = bar.add_task(label, total=total)
            bar.update(tasks[phase], completed=done, total=total)

        yield update


def confirm_or_refuse(question: str, *, yes: bool, what: str, dry_run: bool = True) -> None:
    """Ask ``question`` (on stderr) on a terminal unless ``yes``; without a terminal, refuse
    without --yes. ``what`` names the change in the refusal, e.g. "reprovision 3 devices";
    ``dry_run``: the command has --dry-run (the hint says so)."""
    from ..domain.errors import RefusedError

    if yes:
        return
    if not sys.stdin.isatty():
        raise RefusedError(
            f"not going to {what} without confirmation; nothing was changed",
            hint="pass --yes (there is no terminal to ask on)"
            + (", or --dry-run to see the plan" if dry_run else ""),
        )
    if not typer.confirm(printable(question), default=False, err=True):
        raise RefusedError(f"cancelled: nothing was changed (did not {what})")
