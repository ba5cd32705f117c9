"""docs/cli.md, the command reference, generated from the Typer application itself.

``python -m enosprov.cli.reference docs/cli.md`` (or ``make docs``) writes it; tests/test_docs.py
fails when the committed file differs from what the application says, so the help texts are the
one source of truth.
"""

from __future__ import annotations

import sys
from pathlib import Path

HEADER = """\
<!-- Generated from the application by `make docs` (python -m enosprov.cli.reference
docs/cli.md). Do not edit: change the help texts in enosprov/cli/ and regenerate.
tests/test_docs.py fails when this file is stale. -->

"""


def markdown() -> str:
    """The whole command tree as Markdown: every command's help, usage and options."""
    import typer
    from typer.cli import get_docs_for_click

    from . import app

    command = typer.main.get_command(app)
    ctx = typer.Context(command)
    body = get_docs_for_click(obj=command, ctx=ctx, name="enosprov", title="Command reference")
    lines = [line.rstrip() for line in body.strip().splitlines()]
    return HEADER + "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    text = markdown()
    if not args or args[0] == "-":
        sys.stdout.write(text)
        return 0
    from ..atomic import write_text

    write_text(Path(args[0]), text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
