"""The only code that prints or exits: results, errors, tables and progress.

``--json``: stdout carries exactly one JSON document, ``{"data": ...}`` or ``{"error": {...}}``.
Otherwise results go to stdout and errors, hints and progress to stderr (progress only on a TTY).
"""

from __future__ import annotations

import functools
import json
import sys
from collections.abc import Callable
from contextlib import contextmanager

import typer

from ..errors import EXIT_FAILED, EXIT_INTERRUPTED, EnosprovError, ValidationFailedError


def _console(stderr: bool = False):
    from rich.console import Console

    return Console(stderr=stderr, highlight=False, soft_wrap=True)


def emit(data, as_json: bool, render: Callable[[object], None] | None = None) -> None:
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
    out = _console(stderr=True)
    if isinstance(err, ValidationFailedError):
        for issue in err.issues:
            out.print(f"  {issue}", markup=False)
        if err.total > len(err.issues):
            out.print(f"  ... and {err.total - len(err.issues)} more", markup=False)
    code = f" [{err.enos_code}]" if err.enos_code is not None else ""
    out.print(f"[bold red]error{code}:[/] ", end="")
    out.print(err.message, markup=False)
    if err.hint:
        out.print("[dim]hint:[/] ", end="")
        out.print(err.hint, markup=False, style="dim")


def handled(fn):
    """Decorate a command: user errors become one clear line and a stable exit code."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        as_json = bool(kwargs.get("json_", False))
        try:
            return fn(*args, **kwargs)
        except EnosprovError as err:
            print_error(err, as_json)
            raise typer.Exit(err.exit_code) from None
        except KeyboardInterrupt:
            _console(stderr=True).print("interrupted", markup=False)
            raise typer.Exit(EXIT_INTERRUPTED) from None
        except (typer.Exit, typer.Abort, SystemExit):
            raise
        except Exception as exc:
            if _debug(kwargs.get("ctx")):
                raise
            err = EnosprovError(
                f"internal error: {type(exc).__name__}",
                hint="run again with --debug for a traceback, and report it",
            )
            print_error(err, as_json)
            raise typer.Exit(EXIT_FAILED) from None

    return wrapper


def _debug(ctx) -> bool:
    obj = ctx.find_root().obj if ctx is not None else None
    return bool(getattr(obj, "debug", False))


# Identifiers people copy (system sn, deviceSn, group id) are never wrapped or cut: their column
# keeps its full width and the other columns fold instead.
KEEP_WHOLE = {"sn", "deviceSn", "group id"}


def table(
    title: str | None,
    columns: list[str],
    rows: list[list],
    *,
    no_wrap: frozenset[str] | set[str] = frozenset(),
    wide: bool = False,
) -> None:
    """A table; ``no_wrap`` columns (and identifiers) never wrap. ``wide``: when the output is
    not a terminal (a file, a pipe, grep), as wide as the rows need instead of 80 columns."""
    from rich.table import Table

    cells = [["" if v is None else str(v) for v in r] for r in rows]
    t = Table(title=title, show_lines=False, header_style="bold")
    for i, c in enumerate(columns):
        if c in KEEP_WHOLE:
            width = max([len(c), *(len(r[i]) for r in cells)])
            t.add_column(c, no_wrap=True, min_width=width)
        else:
            t.add_column(c, no_wrap=c in no_wrap, overflow="fold")
    for r in cells:
        t.add_row(*r)
    console = _console()
    if wide and not console.is_terminal:
        console.width = max(console.width, 400)
    console.print(t)


def say(text: str, stderr: bool = False) -> None:
    _console(stderr=stderr).print(text, markup=False)


def key_values(pairs: list[tuple[str, object]]) -> None:
    from rich.table import Table

    t = Table.grid(padding=(0, 2))
    t.add_column(style="bold")
    t.add_column(overflow="fold")
    for k, v in pairs:
        t.add_row(k, "" if v is None else str(v))
    _console().print(t)


@contextmanager
def progress_bar(enabled: bool, description: str):
    """A progress callback ``(phase, done, total)`` drawn on stderr when it is a terminal."""
    if not enabled or not sys.stderr.isatty():
        yield None
        return
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    with Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=_console(stderr=True),
        transient=True,
    ) as bar:
        tasks: dict[str, int] = {}

        def update(phase: str, done: int, total: int | None) -> None:
            if phase not in tasks:
                tasks[phase] = bar.add_task(f"{description}: {phase}", total=total)
            bar.update(tasks[phase], completed=done, total=total)

        yield update


def confirm_or_refuse(question: str, *, yes: bool, what: str, dry_run: bool = True) -> None:
    """Ask ``question`` (on stderr) on a terminal unless ``yes``; without a terminal, refuse
    without --yes. ``what`` names the change in the refusal, e.g. "reprovision 3 devices";
    ``dry_run``: the command has --dry-run (the hint says so)."""
    from ..errors import RefusedError

    if yes:
        return
    if not sys.stdin.isatty():
        raise RefusedError(
            f"not going to {what} without confirmation; nothing was changed",
            hint="pass --yes (there is no terminal to ask on)"
            + (", or --dry-run to see the plan" if dry_run else ""),
        )
    if not typer.confirm(question, default=False, err=True):
        raise RefusedError(f"cancelled: nothing was changed (did not {what})")
