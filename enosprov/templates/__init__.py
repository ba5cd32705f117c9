"""Templates shipped inside the package: label templates (``labels/*.toml``, docs/labels.md),
burn templates (``burn/*.tmpl``, docs/burn-formats.md) and master data starters
(``masterdata/*.toml``, docs/masterdata.md).

They are package data, read with :mod:`importlib.resources`, never through a path computed
from ``__file__``, so they are found the same way from a source checkout, an editable install,
a wheel or a zip. A shipped template is a :class:`~importlib.abc.Traversable`: read it with
``.open()``, ``.read_text()`` or ``.read_bytes()``; where a real file is needed (a copy, a
program that takes a path), wrap it in :func:`importlib.resources.as_file`.

Not imported at start-up: only the commands that load a template import this module.
"""

from __future__ import annotations

from importlib.resources import files
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # importlib.resources.abc from Python 3.11; this one still exists
    from importlib.abc import Traversable

LABELS = "labels"
BURN = "burn"
MASTERDATA = "masterdata"  # commented starter files for `masterdata create` (docs/masterdata.md)
SUFFIXES = {LABELS: ".toml", BURN: ".tmpl", MASTERDATA: ".toml"}


def folder(kind: str) -> Traversable:
    """The folder of the shipped templates of ``kind`` (:data:`LABELS` or :data:`BURN`)."""
    return files(__name__) / kind


def names(kind: str) -> list[str]:
    """The names of the shipped templates of ``kind``, without their suffix, sorted."""
    suffix = SUFFIXES[kind]
    where = folder(kind)
    if not where.is_dir():
        return []
    return sorted(
        entry.name[: -len(suffix)]
        for entry in where.iterdir()
        if entry.name.endswith(suffix) and entry.is_file()
    )


def find(kind: str, name: str) -> Traversable | None:
    """The shipped template of ``kind`` called ``name`` (with or without its suffix), or None.

    Only a bare name matches: anything with a path separator, or starting with a dot, does not.
    """
    suffix = SUFFIXES[kind]
    if not name or "/" in name or "\\" in name or name.startswith("."):
        return None
    base = name[: -len(suffix)] if name.endswith(suffix) else name
    if not base:
        return None
    entry = folder(kind) / (base + suffix)
    return entry if entry.is_file() else None
