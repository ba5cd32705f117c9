"""The documentation: every command is documented, every link resolves (sqlite-utils' test_docs
idea), the README stays a front door."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from conftest import ROOT
from test_cli import all_commands

PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
LINK = re.compile(r"(?<!!)\[[^\]]*\]\(([^)\s]+)\)")
HEADING = re.compile(r"^(#{1,6}) (.+?)\s*$", re.M)
FENCE = re.compile(r"^```.*?^```", re.M | re.S)


def slug(heading: str) -> str:
    """GitHub's anchor of a heading: lower case, markup and punctuation dropped, spaces to -."""
    text = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", heading.strip().lower())
    text = re.sub(r"[^\w\- ]", "", text.replace("`", ""))
    return text.replace(" ", "-")


def anchors(path: Path) -> set[str]:
    text = FENCE.sub("", path.read_text(encoding="utf-8"))
    seen: dict[str, int] = {}
    out = set()
    for m in HEADING.finditer(text):
        base = slug(m.group(2))
        n = seen.get(base, 0)
        seen[base] = n + 1
        out.add(base if n == 0 else f"{base}-{n}")
    return out


def test_every_command_is_in_the_manual():
    """Beyond its generated reference (docs/cli.md), every command is explained with an example
    in the command guide or the page of its topic."""
    guide = "\n".join(
        (ROOT / "docs" / name).read_text(encoding="utf-8")
        for name in ("commands.md", "profiles.md", "emulator.md", "field-engineers.md")
    )
    missing = []
    for command in all_commands():
        name = " ".join(command)
        group_heading = f"## {command[0]}"
        if (
            f"enosprov {name}" not in guide
            and f"`{name}" not in guide
            and not (len(command) > 1 and group_heading in guide and command[-1] in guide)
        ):
            missing.append(name)
    assert missing == []


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.name)
def test_every_link_resolves(page):
    text = FENCE.sub("", page.read_text(encoding="utf-8"))
    broken = []
    for target in LINK.findall(text):
        if re.match(r"^[a-z]+:", target):
            continue
        path, _, anchor = target.partition("#")
        dest = (page.parent / path).resolve() if path else page
        if not dest.exists():
            broken.append(f"{target}: no such file")
        elif anchor and dest.suffix == ".md" and anchor not in anchors(dest):
            broken.append(f"{target}: no heading with that anchor in {dest.name}")
    assert broken == []


def test_the_readme_is_a_front_door():
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    assert len(readme.splitlines()) <= 250
    for must in ("make demo", "make test", "pip install", "docs/cli.md", "docs/python-api.md",
                 "docs/field-engineers.md", "docs/profiles.md", "docs/emulator.md"):  # fmt: skip
        assert must in readme, must


def test_the_slug_rule():
    assert slug("masterdata create | list | show") == "masterdata-create--list--show"
    assert slug("The emulator (`enosprov serve`)") == "the-emulator-enosprov-serve"


def test_the_command_reference_is_generated_from_the_application():
    """docs/cli.md is what `make docs` writes from the Typer application now: a help text
    changed without regenerating it fails here."""
    from enosprov.cli.reference import markdown

    committed = (ROOT / "docs" / "cli.md").read_text(encoding="utf-8")
    assert committed == markdown(), "docs/cli.md is stale: run `make docs`"


def test_the_command_reference_covers_every_command():
    reference = (ROOT / "docs" / "cli.md").read_text(encoding="utf-8")
    missing = [c for c in all_commands() if f"## `enosprov {' '.join(c)}`" not in reference]
    assert missing == []
