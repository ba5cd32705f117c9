"""Property tests of the spreadsheet-safe CSV cells (enosprov.domain.csvsafe) and of enosprov's readers
taking them back: restore(cell(x)) == x for any text, and cell(x) never starts a formula."""

from __future__ import annotations

import csv
import io
import json

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from enosprov.core.rows import RowSchema
from enosprov.domain import csvsafe, rules
from enosprov.domain.csvsource import read_columns
from enosprov.domain.models import MasterDataAttribute, MasterDataGroup, RegistrationGroup

SETTINGS = settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
TRIGGERS = ("=", "+", "-", "@", "\t", "\r")

# Text that starts like a formula, like enosprov's prefix, like a number, or like anything at all.
LEADS = st.text(st.sampled_from(["'", *TRIGGERS, " ", "1", "."]), max_size=4)
NUMBERS = st.one_of(
    st.integers().map(str),
    st.floats(allow_nan=False, allow_infinity=False).map(str),
    st.builds(
        lambda sign, digits: sign + digits,
        st.sampled_from(["+", "-", ""]),
        st.from_regex(r"[0-9]*\.?[0-9]+([eE][+-]?[0-9]+)?", fullmatch=True),
    ),
)
OFFSETS = st.from_regex(r"[+-][0-9]{2}:[0-9]{2}", fullmatch=True)
TEXTS = st.one_of(
    st.text(),
    st.builds(lambda lead, rest: lead + rest, LEADS, st.text(max_size=12)),
    st.builds(lambda lead, rest: lead + rest, LEADS, NUMBERS | OFFSETS),
    NUMBERS,
    OFFSETS,
)


def is_value(text: str) -> bool:
    """A number (-12, +3.5, 1e5) or a UTC offset (+08:00): a spreadsheet reads it as a value.
    An oracle independent of csvsafe's regular expression."""
    offset_digits = text[1:3] + text[4:]
    if len(text) == 6 and text[0] in "+-" and text[3] == ":" and offset_digits.isdecimal():
        return True
    if text and all(c.isdecimal() or c in "+-.eE" for c in text):
        try:
            float(text)
        except ValueError:
            return False
        return True
    return False


@SETTINGS
@given(TEXTS)
@example("=1+2")
@example("'=1+2")
@example("''-2+3")
@example("'")
@example("'hello")
@example("+08:00")
@example("-12.5")
@example("\t")
def test_restore_gives_back_what_cell_was_given(text):
    assert csvsafe.restore(csvsafe.cell(text)) == text


@SETTINGS
@given(TEXTS)
def test_cell_never_starts_a_formula_unless_a_number_or_offset(text):
    safe = csvsafe.cell(text)
    if safe.startswith(TRIGGERS):
        assert is_value(text) and safe == text
    assert not csvsafe.is_risky(safe)
    if csvsafe.is_risky(text):
        assert safe == "'" + text
    elif not text.startswith("'"):
        assert safe == text  # only risky text and quotes in front of it change


@SETTINGS
@given(st.lists(TEXTS | st.integers() | st.none(), max_size=6))
def test_row_and_raw_row(values):
    assert csvsafe.row(values, raw=True) == values
    assert csvsafe.row(values) == [csvsafe.cell(v) for v in values]
    assert all(v is c for v, c in zip(values, csvsafe.row(values)) if not isinstance(v, str))


@pytest.mark.parametrize(
    ("value", "cell"),
    [
        ("=1+2", "'=1+2"),
        ("-2+3", "'-2+3"),
        ("+x", "'+x"),
        ("@SUM(A1)", "'@SUM(A1)"),
        ("\tx", "'\tx"),
        ("\rx", "'\rx"),
        ("'=1+2", "''=1+2"),  # a quote before risky text is kept through a round trip
        ("-12", "-12"),
        ("+3.5", "+3.5"),
        ("-1e5", "-1e5"),
        ("+08:00", "+08:00"),
        ("-03:30", "-03:30"),
        ("'hello", "'hello"),
        ("plain", "plain"),
        ("", ""),
    ],
)
def test_examples(value, cell):
    assert csvsafe.cell(value) == cell
    assert csvsafe.restore(cell) == value


# -- enosprov's readers -------------------------------------------------------------------------

MDG = MasterDataGroup(
    id="safe",
    name="safe",
    attributes=(
        MasterDataAttribute("label", "String"),
        MasterDataAttribute("count", "Integer"),
    ),
)
GROUP = RegistrationGroup(
    group_id="g1", name="g1", product_key="pk", masterdata_group_id="safe", group_secret="s"
)
HEADER = ["deviceSn", "deviceName", "desc", "batchTag", "label", "count"]
SCHEMA = RowSchema(HEADER, GROUP, MDG)  # one schema for all examples: its caches get exercised

# Values as registration keeps them: trimmed, not empty (an empty cell is "no value").
VALUE = (
    st.builds(lambda lead, rest: lead + rest, LEADS, st.text(max_size=20))
    .map(str.strip)
    .filter(lambda v: v and "\x00" not in v)
)


def through_csv(cells: list) -> list[str]:
    """``cells`` written by csv.writer and read back by csv.reader, as a file would be."""
    buf = io.StringIO()
    csv.writer(buf).writerow(cells)
    return next(csv.reader(io.StringIO(buf.getvalue(), newline="")))


@SETTINGS
@given(
    st.from_regex(rules.DEFAULT_SN_PATTERN, fullmatch=True),
    VALUE,
    VALUE,
    VALUE,
    VALUE,
    st.integers(-1000, 1000),
)
def test_registration_reads_safe_cells_back_as_the_values(sn, name, desc, tag, label, count):
    values = [sn, name, desc, tag, label, count]
    before = SCHEMA.warning_count
    record, issues = SCHEMA.convert(2, through_csv(csvsafe.row(values)))
    assert issues == []
    out_sn, data_json, out_desc, out_tag = record
    assert (out_sn, out_desc, out_tag) == (sn, desc, tag)
    data = json.loads(data_json)
    assert (data["deviceName"]["defaultValue"], data["label"], data["count"]) == (
        name,
        label,
        count,
    )
    # every value a spreadsheet would run is counted, once
    risky = [v for v in (sn, name, desc, tag, label) if csvsafe.is_risky(v)]
    assert SCHEMA.warning_count - before == len(risky)
    if not any(v.startswith("'") for v in values[:5]):  # else the raw file means other values
        assert SCHEMA.convert(2, through_csv(values)) == (record, [])


@SETTINGS
@given(st.lists(st.from_regex(rules.DEFAULT_SN_PATTERN, fullmatch=True), min_size=1, max_size=5))
def test_read_columns_reads_safe_cells_back(tmp_path_factory, sns):
    path = tmp_path_factory.mktemp("cols") / "sns.csv"
    with path.open("w", encoding="utf-8", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(["deviceSn"])
        writer.writerows([csvsafe.cell(sn)] for sn in sns)
    read = [v[0] for _row, v in read_columns(path, [("deviceSn",)], hint="")]
    assert read == sns


def test_warnings_count_risky_values_of_valid_rows_only():
    schema = RowSchema(HEADER, GROUP, MDG, default_batch_tag="=TAG")
    rows = [
        ["SN-0001", "=1+2", "-2+3", "", "@x", "-5"],  # 4: name, desc, default tag, label
        ["SN-0002", "Meter", "'=quoted", "B-1", "+08:00", "7"],  # 1: the desc read back
        ["SN-0003", "=bad", "", "B-1", "", "x"],  # invalid row (count): no warnings
        ["-SN-0004", "", "-12.5", "B-1", "@y", ""],  # 2: deviceSn, label (cache not used)
        ["SN-0005", "", "", "B-1", "@y", ""],  # 1: label again
    ]
    results = [schema.convert(i, fields) for i, fields in enumerate(rows, 2)]
    assert [bool(issues) for _, issues in results] == [False, False, True, False, False]
    assert results[1][0][2] == "=quoted"
    assert schema.warning_count == 8
    assert schema.warning_rows == [2, 3, 5, 6] and schema.warning_row_count == 4
    assert [(w.row, w.column, w.value) for w in schema.warnings] == [
        (2, "label", "@x"),
        (2, "deviceName", "=1+2"),
        (2, "desc", "-2+3"),
        (2, "batchTag", "=TAG"),
        (3, "desc", "=quoted"),
    ]
    assert str(schema.warnings[0]) == 'row 2, column label: "@x"'
