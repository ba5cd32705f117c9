"""A user text template for any other firmware format: ``{field}`` placeholders.

The syntax is Python's ``str.format``: ``{deviceSn}`` is replaced by the value, ``{{`` and ``}}``
are literal braces, and a format spec such as ``{deviceSn:>16}`` is allowed. Only the field
names of docs/burn-formats.md may appear: no positional ``{}``, attributes or indexes. Values
are inserted verbatim (no quoting or escaping). Templates are write-only.
"""

from __future__ import annotations

from functools import lru_cache
from os import PathLike
from pathlib import Path, PurePath
from string import Formatter

from ...domain.errors import InputFileError, InvalidArgumentError
from ..credential import FIELD_NAMES, Credential

_FORMATTER = Formatter()
TEMPLATE_SUFFIX = ".tmpl"


@lru_cache(maxsize=16)
def check_template(text: str) -> tuple[str, ...]:
    """The field names ``text`` uses, in order of first use.

    Raises InvalidArgumentError for a syntax error or a name that is not a credential field,
    naming it and listing the allowed ones, so a bad template fails before any device.
    """
    if not isinstance(text, str):
        raise InvalidArgumentError("a template must be text")
    used: list[str] = []
    try:
        parsed = list(_FORMATTER.parse(text))
    except ValueError as e:
        raise InvalidArgumentError(
            f"template syntax error: {e}", hint="write {{ and }} for literal braces"
        ) from None
    for _, name, spec, _ in parsed:
        if name is None:
            continue
        if name not in FIELD_NAMES:
            shown = "{}" if name == "" else "{" + name + "}"
            raise InvalidArgumentError(
                f"template placeholder {shown} is not a credential field; "
                f"allowed: {', '.join(FIELD_NAMES)}",
                hint="write {{ and }} for literal braces",
            )
        if spec and "{" in spec:
            raise InvalidArgumentError(f"template placeholder {{{name}:...}} nests a field")
        if name not in used:
            used.append(name)
    return tuple(used)


def encode(cred: Credential, opts) -> bytes:
    if opts.template is None:
        raise InvalidArgumentError("the template format needs a template file")
    used = check_template(opts.template)
    values = cred.to_dict()
    missing = [name for name in used if name not in values]
    if missing:
        raise InvalidArgumentError(
            f"the template uses {', '.join(missing)}, which the {cred.profile} credential of "
            f"device {cred.device_sn!r} does not have"
        )
    try:
        text = opts.template.format_map(values)
    except ValueError as e:  # a format spec that does not apply to text, e.g. {deviceSn:d}
        raise InvalidArgumentError(f"template format spec error: {e}") from None
    return text.encode("utf-8")


def decode(data: bytes, opts=None) -> Credential:  # never called: Format.decode refuses first
    raise InvalidArgumentError("the template format is write-only")


def looks_like(data: bytes) -> bool:
    return False


def extension_for(template_name: str) -> str:
    """The extension of the files written from a template file: its own without ``.tmpl``."""
    name = PurePath(template_name).name
    if name.lower().endswith(TEMPLATE_SUFFIX):
        name = name[: -len(TEMPLATE_SUFFIX)]
    return PurePath(name).suffix or ".txt"


def read_template(spec: str | PathLike) -> tuple[str, str]:
    """The text and file name of the template ``spec``: a file, or else the name of a shipped
    one (enosprov/templates/burn/, with or without ``.tmpl``: ``credentials.h``).

    A file given on the command line wins over a shipped template of the same name. Raises
    InputFileError for a file that cannot be read or a name that is neither, listing the
    shipped names.
    """
    path = Path(spec)
    if not path.is_file():
        from ... import templates as shipped

        entry = shipped.find(shipped.BURN, str(spec)) if path.parent == Path(".") else None
        if entry is not None:
            return entry.read_text(encoding="utf-8"), entry.name
        if not path.exists():
            names = shipped.names(shipped.BURN)
            raise InputFileError(
                f"template {str(spec)!r} not found",
                hint="give a template file or one of: " + ", ".join(names) if names else None,
            )
    try:
        return path.read_text(encoding="utf-8"), path.name
    except OSError as exc:
        raise InputFileError(f"{spec}: {exc.strerror or exc}") from None
    except UnicodeDecodeError as exc:
        raise InputFileError(f"{spec}: not UTF-8 text ({exc.reason})") from None
