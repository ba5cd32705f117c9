"""Turn CSV header + rows into validated ``NewDevice`` records, with every problem located.

Columns (docs/csv-format.md): ``deviceSn`` (required), ``deviceName``, ``deviceName.en_US``,
``deviceName.zh_CN``, ``timezone``, ``regionId`` and ``orgId`` (together), ``desc``,
``batchTag``, and one column per master data attribute of the group's master data group, named
by its identifier.

Cells enosprov itself wrote with the spreadsheet-safe ``'`` prefix (enosprov.csvsafe) read back as
the value it was given. Text values a spreadsheet would take for a formula (``=1+2``, ``-2+3``)
are accepted and counted as warnings (``RowSchema.warning_count``, a few in ``warnings``).
"""

from __future__ import annotations

import functools
import json
from dataclasses import dataclass

from ..domain import csvsafe, rules
from ..domain.models import TARGET_KEYS, MasterDataGroup, NewDevice, RegistrationGroup
from ..domain.regions import region_problem

# The string escaper json uses with ensure_ascii=False (C-accelerated where available).
_json_str = json.encoder.encode_basestring
_CACHE_LIMIT = 4096  # distinct values remembered per column
MAX_WARNING_SAMPLES = 5  # warnings kept as examples; the count covers them all
MAX_WARNING_ROWS = 10  # rows with warnings listed; warning_row_count covers them all

# A cell is looked at closer only when its first character asks for it (a cheap guard per cell):
# "'" may be enosprov's spreadsheet-safe prefix, a trigger may start a formula.
_PREFIX = csvsafe.PREFIX
_TRIGGERS = frozenset(csvsafe.TRIGGERS)
_LOOK = _TRIGGERS | {_PREFIX}
_restore = csvsafe.restore
_is_risky = csvsafe.is_risky

FIXED_COLUMNS = (
    "deviceSn",
    "deviceName",
    "deviceName.en_US",
    "deviceName.zh_CN",
    "timezone",
    "regionId",
    "orgId",
    "desc",
    "batchTag",
)


@dataclass(frozen=True)
class RowIssue:
    """One validation problem: where it is (row, column) and what is wrong."""

    row: int
    column: str | None
    message: str

    def __str__(self) -> str:
        where = f"row {self.row}" + (f", column {self.column}" if self.column else "")
        return f"{where}: {self.message}"

    def to_dict(self) -> dict:
        return {"row": self.row, "column": self.column, "message": self.message}


@dataclass(frozen=True)
class RowWarning:
    """A value registered as it is that a spreadsheet would read as a formula."""

    row: int
    column: str
    value: str

    def __str__(self) -> str:
        # escaped as a JSON string: a leading tab or carriage return stays visible
        return f"row {self.row}, column {self.column}: {_json_str(self.value)}"

    def to_dict(self) -> dict:
        return {"row": self.row, "column": self.column, "value": self.value}


def template_columns(masterdata: MasterDataGroup) -> list[str]:
    """The CSV header for a group: fixed columns (without the optional per-device target
    regionId/orgId), then its master data identifiers."""
    fixed = [c for c in FIXED_COLUMNS if c not in TARGET_KEYS]
    return fixed + [a.identifier for a in masterdata.attributes]


class RowSchema:
    """Validates rows against one group's rules; built once per file from its header."""

    def __init__(
        self,
        header: list[str],
        group: RegistrationGroup,
        masterdata: MasterDataGroup,
        *,
        default_batch_tag: str | None = None,
        ignore_unknown: bool = False,
    ) -> None:
        self.header = header
        self.ignore_unknown = ignore_unknown
        self.ignored_columns: list[str] = []  # unknown columns left out (ignore_unknown)
        self.width = len(header)
        self.default_batch_tag = default_batch_tag
        self._default_tag_risky = bool(default_batch_tag and _is_risky(default_batch_tag))
        self.header_issues: list[RowIssue] = []
        self.warning_count = 0  # values of valid rows that start a spreadsheet formula
        self.warnings: list[RowWarning] = []  # the first MAX_WARNING_SAMPLES of them
        self.warning_row_count = 0  # rows with such values
        self.warning_rows: list[int] = []  # the first MAX_WARNING_ROWS of them
        self._sn_problem_pattern = group.sn_pattern
        self._sn_ok = rules.sn_matcher(group.sn_pattern)
        self._build(header, masterdata)

    # -- header -------------------------------------------------------------------------------

    def _build(self, header: list[str], masterdata: MasterDataGroup) -> None:
        attrs = {a.identifier: a for a in masterdata.attributes}
        known = set(FIXED_COLUMNS) | set(attrs)
        seen: dict[str, int] = {}
        for i, name in enumerate(header):
            if name in seen:
                self._header_issue(name, f"column {name!r} appears twice")
            seen.setdefault(name, i)
            if name not in known and self.ignore_unknown:
                self.ignored_columns.append(name or f"#{i + 1}")
            elif name not in known:
                hint = "" if name else " (empty column name)"
                self._header_issue(
                    name or f"#{i + 1}",
                    f"unknown column {name!r}{hint}; expected some of: {', '.join(sorted(known))} "
                    "(--ignore-unknown-columns leaves such columns out)",
                )
        if "deviceSn" not in seen:
            self._header_issue(None, "required column 'deviceSn' is missing")
        for a in masterdata.attributes:
            if a.required and a.identifier not in seen:
                self._header_issue(None, f"required master data column {a.identifier!r} is missing")
        get = seen.get
        self.i_sn = get("deviceSn")
        self.i_name = get("deviceName")
        self.i_name_en = get("deviceName.en_US")
        self.i_name_zh = get("deviceName.zh_CN")
        self.i_tz = get("timezone")
        self.i_region, self.i_org = get("regionId"), get("orgId")
        if (self.i_region is None) != (self.i_org is None):
            self._header_issue(
                "regionId" if self.i_region is None else "orgId",
                "the allocation target needs both columns, regionId and orgId",
            )
        self.i_desc = get("desc")
        self.i_tag = get("batchTag")
        self.has_name = any(i is not None for i in (self.i_name, self.i_name_en, self.i_name_zh))
        # (index, identifier, required, converter, cache) for the master data columns present.
        # The cache maps raw cell text to the JSON fragment '"key":value' of its converted value:
        # batches repeat values a lot, and building canonical JSON from fragments is much faster
        # than a dict plus json.dumps (tests check both give the same text).
        self.attr_cols: list[tuple[int, str, bool, rules.Converter, dict[str, str]]] = [
            (seen[a.identifier], a.identifier, a.required, rules.converter_for(a), {})
            for a in masterdata.attributes
            if a.identifier in seen
        ]
        self._tz_fragments: dict[str, str] = {}

    def _header_issue(self, column: str | None, message: str) -> None:
        self.header_issues.append(RowIssue(1, column, message))

    # -- rows ---------------------------------------------------------------------------------

    def convert(self, rowno: int, fields: list[str]) -> tuple[tuple | None, list[RowIssue]]:
        """Validate one row.

        Returns ``((deviceSn, deviceData as canonical JSON, desc, batchTag), [])`` for a valid
        row, ``(None, issues)`` for an invalid one and ``(None, [])`` for a blank line. The
        deviceData JSON excludes deviceSn.
        """
        if len(fields) != self.width:
            if not any(f.strip() for f in fields):
                return None, []
            return None, [
                RowIssue(
                    rowno,
                    None,
                    f"row has {len(fields)} fields but the header has {self.width}; "
                    "quote fields that contain the delimiter",
                )
            ]
        if "\x00" in "\x1f".join(fields):  # no store keeps a NUL (PostgreSQL text cannot)
            return None, [
                RowIssue(rowno, self.header[i], "holds a NUL character (U+0000); remove it")
                for i, f in enumerate(fields)
                if "\x00" in f
            ]
        i_sn = self.i_sn
        if i_sn is None:  # the header has no deviceSn column: see header_issues
            raise ValueError("rows cannot be converted: the header has no deviceSn column")
        issues: list[RowIssue] = []
        risky: list[tuple[str, str]] = []  # (column, value) a spreadsheet would run
        sn = fields[i_sn].strip()
        if not sn and not any(f.strip() for f in fields):
            return None, []  # a row of empty cells, as spreadsheets write for empty lines
        if sn and sn[0] in _LOOK:
            sn = _cell_value("deviceSn", sn, risky)
        if not self._sn_ok(sn) or len(sn) > rules.DEVICE_SN_MAX:
            sn_issue = rules.sn_problem(sn, self._sn_problem_pattern) or "invalid deviceSn"
            issues.append(RowIssue(rowno, "deviceSn", sn_issue))
        frags: dict[str, str] = {}  # master data key -> '"key":value' JSON fragment
        for idx, key, required, convert, cache in self.attr_cols:
            raw = fields[idx]
            frag = cache.get(raw)
            if frag is not None:
                frags[key] = frag
                continue
            text = raw.strip()
            if not text:
                if required:
                    issues.append(RowIssue(rowno, key, "a value is required"))
                continue
            flagged = False
            if text[0] in _LOOK:
                n = len(risky)
                text = _cell_value(key, text, risky)
                flagged = len(risky) > n  # not cached: every row with it is counted
            value, problem = convert(text)
            if problem:
                issues.append(RowIssue(rowno, key, problem))
            else:
                frag = _fragment(key, value)
                frags[key] = frag
                if not flagged and len(cache) < _CACHE_LIMIT:
                    cache[raw] = frag
        if self.has_name:
            name = self._device_name(rowno, fields, issues, risky)
            if name:
                frags["deviceName"] = name
        if self.i_tz is not None:
            raw = fields[self.i_tz]
            frag = self._tz_fragments.get(raw)
            if frag is None and raw.strip():
                tz = raw.strip()
                if tz[0] == _PREFIX:
                    tz = _restore(tz)
                problem = rules.timezone_problem(tz)
                if problem:
                    issues.append(RowIssue(rowno, "timezone", problem))
                else:
                    frag = _fragment("timezone", tz)
                    if len(self._tz_fragments) < _CACHE_LIMIT:
                        self._tz_fragments[raw] = frag
            if frag is not None:
                frags["timezone"] = frag
        if self.i_region is not None and self.i_org is not None:
            self._target(rowno, fields[self.i_region], fields[self.i_org], frags, issues)
        desc = None
        if self.i_desc is not None:
            desc = fields[self.i_desc].strip() or None
            if desc and desc[0] in _LOOK:
                desc = _cell_value("desc", desc, risky)
            if desc and len(desc) > rules.DEVICE_DESC_MAX:
                issues.append(
                    RowIssue(
                        rowno,
                        "desc",
                        f"desc is {len(desc)} characters; the limit is {rules.DEVICE_DESC_MAX}",
                    )
                )
        tag = self.default_batch_tag
        text = fields[self.i_tag].strip() if self.i_tag is not None else ""
        if text:
            tag = _cell_value("batchTag", text, risky) if text[0] in _LOOK else text
        elif tag and self._default_tag_risky:  # (a risky default tag is never empty)
            risky.append(("batchTag", tag))
        if tag and len(tag) > rules.BATCH_TAG_MAX:
            issues.append(
                RowIssue(
                    rowno,
                    "batchTag",
                    f"batch tag is {len(tag)} characters; the limit is {rules.BATCH_TAG_MAX}",
                )
            )
        if issues:
            return None, issues
        if risky:
            self._warn(rowno, risky)
        data_json = "{" + ",".join([frags[k] for k in sorted(frags)]) + "}"
        return (sn, data_json, desc, tag), issues

    def _warn(self, rowno: int, risky: list[tuple[str, str]]) -> None:
        self.warning_count += len(risky)
        self.warning_row_count += 1
        if len(self.warning_rows) < MAX_WARNING_ROWS:
            self.warning_rows.append(rowno)
        room = MAX_WARNING_SAMPLES - len(self.warnings)
        if room > 0:
            self.warnings.extend(RowWarning(rowno, col, value) for col, value in risky[:room])

    def _target(
        self, rowno: int, region: str, org: str, frags: dict, issues: list[RowIssue]
    ) -> None:
        """A row's own allocation target from its regionId and orgId cells, built-in master data
        regionId/orgId (both or none: then the group's target applies)."""
        region, org = region.strip(), org.strip()
        if region[:1] == _PREFIX:
            region = _restore(region)
        if org[:1] == _PREFIX:
            org = _restore(org)
        if bool(region) != bool(org):
            column = "orgId" if region else "regionId"
            issues.append(RowIssue(rowno, column, "give regionId and orgId together, or neither"))
        elif region and (problem := region_problem(region)):
            issues.append(RowIssue(rowno, "regionId", problem))
        elif region:
            frags["regionId"] = _fragment("regionId", region)
            frags["orgId"] = _fragment("orgId", org)

    def _device_name(
        self, rowno: int, fields: list[str], issues: list[RowIssue], risky: list
    ) -> str | None:
        """The deviceName StringI18n as a JSON fragment, or None when the row names nothing.
        Names a spreadsheet would run as formulas go to ``risky`` as (column, value)."""
        default = fields[self.i_name].strip() if self.i_name is not None else ""
        en = fields[self.i_name_en].strip() if self.i_name_en is not None else ""
        zh = fields[self.i_name_zh].strip() if self.i_name_zh is not None else ""
        if not (default or en or zh):
            return None
        if default and default[0] in _LOOK:
            default = _cell_value("deviceName", default, risky)
        if en and en[0] in _LOOK:
            en = _cell_value("deviceName.en_US", en, risky)
        if zh and zh[0] in _LOOK:
            zh = _cell_value("deviceName.zh_CN", zh, risky)
        limit = rules.DEVICE_NAME_MAX
        if len(default) > limit or len(en) > limit or len(zh) > limit:
            for col, text in (
                ("deviceName", default),
                ("deviceName.en_US", en),
                ("deviceName.zh_CN", zh),
            ):
                if len(text) > limit:
                    issues.append(
                        RowIssue(
                            rowno, col, f"name is {len(text)} characters; the limit is {limit}"
                        )
                    )
        i18n = []
        if en:
            i18n.append('"en_US":' + _json_str(en))
        if zh:
            i18n.append('"zh_CN":' + _json_str(zh))
        return (
            '"deviceName":{"defaultValue":'
            + _json_str(default or en or zh)
            + ',"i18nValue":{'
            + ",".join(i18n)
            + "}}"
        )


def _cell_value(column: str, text: str, risky: list) -> str:
    """The value of a non-empty cell ``text`` that starts with ``'`` or a trigger: enosprov's
    spreadsheet-safe prefix removed, and (column, value) added to ``risky`` when the value would
    start a formula in a spreadsheet."""
    if text[0] == _PREFIX:
        text = _restore(text)
    if text[0] in _TRIGGERS and _is_risky(text):
        risky.append((column, text))
    return text


def _fragment(key: str, value: object) -> str:
    """'"key":value' exactly as canonical_json writes it (ints as digits, strings escaped)."""
    return _json_str(key) + ":" + (_json_str(value) if isinstance(value, str) else str(value))


def to_new_device(record: tuple) -> NewDevice:
    """A NewDevice from the tuple ``RowSchema.convert`` returns."""
    sn, data_json, desc, tag = record
    return NewDevice(sn, None, desc, _batch_tag(tag) if tag else None, data_json)


@functools.lru_cache(maxsize=256)
def _batch_tag(tag: str) -> dict:
    # Shared between the rows of a batch: treat it as read-only.
    return {"defaultValue": tag, "i18nValue": {}}
