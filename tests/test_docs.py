"""The README documents every command (sqlite-utils' test_docs idea)."""

from __future__ import annotations

from conftest import ROOT
from test_cli import all_commands


def test_every_command_is_in_the_readme():
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    missing = []
    for command in all_commands():
        name = " ".join(command)
        group_heading = f"### {command[0]}"
        if (
            f"enosprov {name}" not in readme
            and f"`{name}" not in readme
            and not (len(command) > 1 and group_heading in readme and command[-1] in readme)
        ):
            missing.append(name)
    assert missing == []


def test_every_doc_linked_from_the_readme_exists():
    import re

    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    for link in set(re.findall(r"\]\((docs/[^)#]+)", readme)):
        assert (ROOT / link).is_file(), link
