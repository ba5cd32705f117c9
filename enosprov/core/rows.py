"""Turn CSV header + rows into validated ``NewDevice`` records, with every problem located.

Columns (docs/csv-format.md): ``deviceSn`` (required), ``deviceName``, ``deviceName.en_US``,
``deviceName.zh_CN``, ``timezone``, ``desc``, ``batchTag``, and one column per master data
attribute of the group's master data group, named by its identifier.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..models import MasterDataGroup, NewDevice, RegistrationGroup
from . import rules

FIXED_COLUMNS = (
    "deviceSn",
    "deviceName",
    "deviceName.en_US",
    "deviceName.zh_CN",
    "timezone",
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


def template_columns(masterdata: MasterDataGroup) -> list[str]:
    """The CSV header for a group: fixed columns, then its master data identifiers."""
    return list(FIXED_COLUMNS) + [a.identifier for a in masterdata.attributes]


class RowSchema:
    """Validates rows against one group's rules; built once per file from its header."""

    def __init__(
        self,
        header: list[str],
        group: RegistrationGroup,
        masterdata: MasterDataGroup,
        *,
        default_batch_tag: str | None = None,
    ) -> None:
        self.header = header
        self.width = len(header)
        self.default_batch_tag = default_batch_tag
        self.header_issues: list[RowIssue] = []
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
            if name not in known:
                hint = "" if name else " (empty column name)"
                self._header_issue(
                    name or f"#{i + 1}",
                    f"unknown column {name!r}{hint}; expected some of: {', '.join(sorted(known))}",
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
        self.i_desc = get("desc")
        self.i_tag = get("batchTag")
        # (index, identifier, required, converter) for the master data columns present.
        self.attr_cols = [
            (seen[a.identifier], a.identifier, a.required, rules.converter_for(a))
            for a in masterdata.attributes
            if a.identifier in seen
        ]

    def _header_issue(self, column: str | None, message: str) -> None:
        self.header_issues.append(RowIssue(1, column, message))

    # -- rows ---------------------------------------------------------------------------------

    def convert(self, rowno: int, fields: list[str]) -> tuple[NewDevice | None, list[RowIssue]]:
        """The record for one row, or None and the row's issues. Blank rows give (None, [])."""
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
        issues: list[RowIssue] = []
        sn = fields[self.i_sn].strip()
        if not self._sn_ok(sn) or len(sn) > rules.DEVICE_SN_MAX:
            problem = rules.sn_problem(sn, self._sn_problem_pattern) or "invalid deviceSn"
            issues.append(RowIssue(rowno, "deviceSn", problem))
        data: dict = {}
        for idx, key, required, convert in self.attr_cols:
            text = fields[idx].strip()
            if not text:
                if required:
                    issues.append(RowIssue(rowno, key, "a value is required"))
                continue
            value, problem = convert(text)
            if problem:
                issues.append(RowIssue(rowno, key, problem))
            else:
                data[key] = value
        name = self._device_name(rowno, fields, issues)
        if name:
            data["deviceName"] = name
        if self.i_tz is not None:
            tz = fields[self.i_tz].strip()
            if tz:
                problem = rules.timezone_problem(tz)
                if problem:
                    issues.append(RowIssue(rowno, "timezone", problem))
                data["timezone"] = tz
        desc = None
        if self.i_desc is not None:
            desc = fields[self.i_desc].strip() or None
            if desc and len(desc) > rules.DEVICE_DESC_MAX:
                issues.append(
                    RowIssue(rowno, "desc", f"desc is {len(desc)} characters; the limit is 512")
                )
        tag = self.default_batch_tag
        if self.i_tag is not None:
            tag = fields[self.i_tag].strip() or tag
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
        batch_tag = {"defaultValue": tag, "i18nValue": {}} if tag else None
        return NewDevice(device_sn=sn, device_data=data, desc=desc, batch_tag=batch_tag), issues

    def _device_name(self, rowno: int, fields: list[str], issues: list[RowIssue]) -> dict | None:
        default = fields[self.i_name].strip() if self.i_name is not None else ""
        i18n = {}
        if self.i_name_en is not None and fields[self.i_name_en].strip():
            i18n["en_US"] = fields[self.i_name_en].strip()
        if self.i_name_zh is not None and fields[self.i_name_zh].strip():
            i18n["zh_CN"] = fields[self.i_name_zh].strip()
        if not default and not i18n:
            return None
        for col, text in (
            ("deviceName", default),
            *((f"deviceName.{k}", v) for k, v in i18n.items()),
        ):
            if len(text) > rules.DEVICE_NAME_MAX:
                issues.append(
                    RowIssue(
                        rowno,
                        col,
                        f"name is {len(text)} characters; the limit is {rules.DEVICE_NAME_MAX}",
                    )
                )
        return {"defaultValue": default or next(iter(i18n.values())), "i18nValue": i18n}
