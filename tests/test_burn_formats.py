"""Firmware credential formats (enosprov/burn/formats): round trips, exact layouts, detection,
tampering, and the NVS image against esp-idf-nvs-partition-gen's own command."""

from __future__ import annotations

import csv
import dataclasses
import re
import shutil
import struct
import subprocess
import sys
import zlib
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from enosprov.burn.credential import FIELDS, REQUIRED, Credential
from enosprov.burn.formats import FORMATS, FormatOptions, decode_file, detect
from enosprov.burn.formats import nvs as nvs_format
from enosprov.burn.formats.c_header import c_literal, macro_name
from enosprov.burn.formats.intel_hex import read_segment
from enosprov.burn.formats.template import check_template, extension_for
from enosprov.errors import InputFileError, InvalidArgumentError

ROOT = Path(__file__).resolve().parent.parent
DECODABLE = ("json", "ini", "c", "bin", "hex", "nvs")
SETTINGS = settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
OPTS = FormatOptions()

# The sample of docs/burn-formats.md (made-up values).
BOOT = Credential(
    profile="bootstrap",
    device_sn="MTR-000000001",
    sn="5f3a9c1e00000001",
    group_id="meters-eu",
    group_secret="Zq8sK2vN4pR7tW1xY5bC3dF6gH9jL0mA",
    dps_url="https://iot-dps-eu2.envisioniot.com",
    sign_scheme="sn-ts-secret",
    device_name="Meter hall 3",
    timezone="+01:00",
)
TRIPLE = Credential(
    profile="triple",
    device_sn="MTR-000000001",
    sn="5f3a9c1e00000001",
    product_key="demoPK01",
    device_key="fB7vPaY47JZAvDmV",
    device_secret="q3R8sT1uV6wX2yZ9aB4c",
    mqtt_url="tcp://mqtt-eu2.envisioniot.com:11883",
    http_url="https://iot-http-eu2.envisioniot.com",
)
# Everything a format has to escape, in one value.
NASTY = Credential(
    profile="bootstrap",
    device_sn='MTR "1" = #2',
    group_id="g\\1;x",
    group_secret='s3"cr\\et=#ü€😀 ??= é1\t\n\r\x01\x7f\xa0\u2028',
    dps_url="https://dps.example.com/x?a=1&b=2#frag",
    device_name='Zähler "Nord" \\ 北区 ??= é1;#=',
    timezone="Asia/Shanghai",
)

ATTRS = {name: attr for name, attr, _ in FIELDS}
SPECIAL = ('"', "\\", "=", "#", ";", "'", " ", "\t", "\n", "\r", "ü", "€", "😀", "?", "??=", "é1")
SPECIAL += ("\x01", "\x7f", "\x85", "\xa0", "\u2028", "\u3000", "\x00")


@st.composite
def credentials(draw, nul: bool = True):
    text = st.text(st.characters(codec="utf-8"), min_size=1, max_size=16)
    value = st.one_of(text, st.lists(text | st.sampled_from(SPECIAL), min_size=1, max_size=6))
    value = value.map(lambda v: v if isinstance(v, str) else "".join(v))
    if not nul:
        value = value.map(lambda v: v.replace("\0", "0"))
    profile = draw(st.sampled_from(("bootstrap", "triple")))
    kw = {}
    for name, attr, _ in FIELDS[1:]:
        if name in REQUIRED[profile] or draw(st.booleans()):
            kw[attr] = draw(value)
    return Credential(profile=profile, **kw)


# -- round trips -----------------------------------------------------------------------------


@pytest.mark.parametrize("fmt", DECODABLE)
def test_samples_round_trip_and_are_detected(fmt):
    for cred in (BOOT, TRIPLE, NASTY):
        data = FORMATS[fmt].encode(cred, OPTS)
        assert FORMATS[fmt].decode(data, OPTS) == cred
        assert detect(data) == fmt
        assert decode_file(data, "whatever") == (fmt, cred)


def _round_trip(fmt: str, cred: Credential) -> None:
    data = FORMATS[fmt].encode(cred, OPTS)
    assert FORMATS[fmt].decode(data, OPTS) == cred
    assert detect(data) == fmt


@SETTINGS
@given(credentials())
def test_json_round_trip(cred):
    _round_trip("json", cred)


@SETTINGS
@given(credentials())
def test_ini_round_trip(cred):
    _round_trip("ini", cred)


@SETTINGS
@given(credentials(nul=False))
def test_c_round_trip(cred):
    _round_trip("c", cred)


@SETTINGS
@given(credentials())
def test_bin_round_trip(cred):
    _round_trip("bin", cred)


@SETTINGS
@given(credentials(), st.integers(0, 0xFFFFFFFF - 4096))
def test_hex_round_trip(cred, address):
    data = FORMATS["hex"].encode(cred, FormatOptions(flash_address=address))
    assert FORMATS["hex"].decode(data, OPTS) == cred
    assert read_segment(data)[0] == address
    assert detect(data) == "hex"


@settings(SETTINGS, max_examples=60)
@given(credentials(nul=False))
def test_nvs_round_trip(cred):
    _round_trip("nvs", cred)


@SETTINGS
@given(credentials())
def test_template_renders_values_verbatim(cred):
    opts = FormatOptions(template="{deviceSn}|{profile}\n{{x}}", template_name="a.txt.tmpl")
    out = FORMATS["template"].encode(cred, opts)
    assert out == f"{cred.device_sn}|{cred.profile}\n{{x}}".encode()


# -- deviceName and timezone (credential version 2) -----------------------------------------

NAMES = ("Meter hall 3", "Zähler Nord", "电表 3号", "Compteur « salle 3 » 😀", 'a "quoted" \\ name')
OLD_FILE = (
    "bootstrap credential lacks deviceName, timezone, which Bootstrap Device requires "
    "(a file written before enosprov burned them): re-export it with `enosprov burn export`"
)


@pytest.mark.parametrize("fmt", DECODABLE)
@pytest.mark.parametrize("name", NAMES)
def test_device_name_and_timezone_round_trip(fmt, name):
    for tz in ("+08:00", "-03:30", "Europe/Berlin", "America/Argentina/Buenos_Aires"):
        cred = dataclasses.replace(BOOT, device_name=name, timezone=tz)
        data = FORMATS[fmt].encode(cred, OPTS)
        back = FORMATS[fmt].decode(data, OPTS)
        assert (back.device_name, back.timezone) == (name, tz)
        assert back == cred


def test_template_writes_device_name_and_timezone():
    opts = FormatOptions(template="{deviceName}|{timezone}", template_name="x.txt.tmpl")
    cred = dataclasses.replace(BOOT, device_name="电表 3号", timezone="Asia/Shanghai")
    assert FORMATS["template"].encode(cred, opts) == "电表 3号|Asia/Shanghai".encode()


def _without(cred: Credential, *attrs: str) -> Credential:
    return dataclasses.replace(cred, **dict.fromkeys(attrs))


def _bin_v1(cred: Credential) -> bytes:
    """``cred`` in binary layout version 1 (as enosprov wrote it before deviceName/timezone)."""
    body = bytearray(FORMATS["bin"].encode(cred)[:-4])
    body[4] = 1
    return bytes(body) + struct.pack("<I", zlib.crc32(body))


def _old_file(fmt: str, cred: Credential) -> bytes:
    """A file of ``fmt`` as the enosprov before credential version 2 wrote it."""
    if fmt in ("bin", "hex"):
        blob = _bin_v1(cred)
        if fmt == "bin":
            return blob
        from intelhex import IntelHex

        ih, out = IntelHex(), __import__("io").StringIO()
        ih.frombytes(blob, offset=0x9000)
        ih.write_hex_file(out, write_start_addr=False)
        return out.getvalue().encode()
    data = FORMATS[fmt].encode(cred, OPTS)
    if fmt == "c":
        return data.replace(b"VERSION 2", b"VERSION 1").replace(b"credential v2", b"credential v1")
    return data.replace(b"# enosprov credential v2", b"# enosprov credential v1")


@pytest.mark.parametrize("fmt", DECODABLE)
def test_old_files_without_name_and_timezone_say_to_re_export(fmt):
    old = _old_file(fmt, _without(BOOT, "device_name", "timezone"))
    with pytest.raises(InputFileError) as err:
        FORMATS[fmt].decode(old, OPTS)
    assert str(err.value) == OLD_FILE
    only_tz = FORMATS[fmt].encode(_without(BOOT, "timezone"), OPTS)  # a current file, edited
    with pytest.raises(InputFileError, match=r"lacks timezone, which Bootstrap Device requires"):
        FORMATS[fmt].decode(only_tz, OPTS)
    # a triple credential never had them: an old triple file still reads
    assert FORMATS[fmt].decode(_old_file(fmt, TRIPLE), OPTS) == TRIPLE


def test_bin_versions():
    assert FORMATS["bin"].encode(TRIPLE)[4] == 2  # every file is written as layout 2
    v1 = bytearray(_bin_v1(BOOT)[:-4])  # tags 12 and 13 did not exist in layout 1
    with pytest.raises(InputFileError, match=r"unknown field tag 12 \(layout version 1\)"):
        FORMATS["bin"].decode(bytes(v1) + struct.pack("<I", zlib.crc32(v1)))
    v3 = bytearray(FORMATS["bin"].encode(BOOT)[:-4])
    v3[4] = 3
    with pytest.raises(InputFileError, match=r"version 3 is not supported \(this enosprov reads "
                       r"versions 1, 2\)"):  # fmt: skip
        FORMATS["bin"].decode(bytes(v3) + struct.pack("<I", zlib.crc32(v3)))


def test_c_header_versions():
    old = FORMATS["c"].encode(TRIPLE).replace(b"VERSION 2", b"VERSION 1")
    assert FORMATS["c"].decode(old) == TRIPLE
    with pytest.raises(InputFileError, match="version '3' is not supported"):
        FORMATS["c"].decode(FORMATS["c"].encode(TRIPLE).replace(b"VERSION 2", b"VERSION 3"))


# -- exact layouts ---------------------------------------------------------------------------

BOOT_BIN = (
    "454e5056 02 00 08"  # magic, version 2, bootstrap, 8 fields
    " 01 0d00 4d54522d303030303030303031"  # deviceSn
    " 02 1000 35663361396331653030303030303031"  # sn
    " 03 0900 6d65746572732d6575"  # groupId
    " 04 2000 5a7138734b32764e34705237745731785935624333644636674839"
    "6a4c306d41"  # groupSecret
    " 05 2300 68747470733a2f2f696f742d6470732d6575322e656e766973696f"
    "6e696f742e636f6d"  # dpsUrl
    " 06 0c00 736e2d74732d736563726574"  # signScheme
    " 0c 0c00 4d657465722068616c6c2033"  # deviceName
    " 0d 0600 2b30313a3030"  # timezone
)


def test_bin_golden_bytes():
    body = bytes.fromhex(BOOT_BIN)
    expected = body + struct.pack("<I", zlib.crc32(body))
    assert expected[-4:] == bytes.fromhex("8ee19c46")
    assert FORMATS["bin"].encode(BOOT) == expected


def test_json_layout():
    text = FORMATS["json"].encode(NASTY).decode()
    assert text.endswith("}\n") and '\n  "profile": "bootstrap",\n' in text
    assert list(re.findall(r'^  "(\w+)"', text, re.M)) == [n for n, _ in NASTY.items()]
    assert "ü€😀" in text  # UTF-8, not \u escapes


def test_ini_layout_and_quoting():
    lines = FORMATS["ini"].encode(NASTY).decode().splitlines()
    assert lines[0] == "# enosprov credential v2"
    assert lines[1:3] == ["profile=bootstrap", 'deviceSn="MTR \\"1\\" = #2"']
    assert lines[3] == 'groupId="g\\\\1;x"'
    assert lines[4] == 'groupSecret="s3\\"cr\\\\et=#ü€😀 ??= é1\\t\\n\\r\\x01\\x7f\\xa0\\u2028"'
    assert FORMATS["ini"].encode(BOOT).decode().splitlines()[6] == (
        "dpsUrl=https://iot-dps-eu2.envisioniot.com"
    )


def test_ini_decoder_skips_comments_and_refuses_unknown_or_repeated_keys():
    ok = b'\xef\xbb\xbf; comment\r\n\r\nprofile = triple\ndeviceSn=A\nproductKey="p k" # c\n'
    ok += b"deviceKey=k\ndeviceSecret=s\n"
    cred = FORMATS["ini"].decode(ok)
    assert (cred.profile, cred.product_key, cred.device_secret) == ("triple", "p k", "s")
    with pytest.raises(InputFileError, match=r"line 2: unknown key 'colour'"):
        FORMATS["ini"].decode(b"profile=triple\ncolour=red\n")
    with pytest.raises(InputFileError, match="line 2: key 'deviceSn' is given twice"):
        FORMATS["ini"].decode(b"deviceSn=a\ndeviceSn=b\n")
    with pytest.raises(InputFileError, match="no closing quote"):
        FORMATS["ini"].decode(b'profile="triple\n')


def test_c_header_layout():
    text = FORMATS["c"].encode(BOOT).decode()
    assert text.splitlines()[1:5] == [
        "#ifndef ENOSPROV_CREDENTIAL_H",
        "#define ENOSPROV_CREDENTIAL_H",
        "",
        "#define ENOSPROV_CREDENTIAL_VERSION 2",
    ]
    assert '#define ENOSPROV_DEVICE_SN "MTR-000000001"\n' in text
    assert text.endswith("#endif /* ENOSPROV_CREDENTIAL_H */\n")
    assert [macro_name(n) for n in ("deviceSn", "sn", "dpsUrl", "mqttUrl")] == [
        "ENOSPROV_DEVICE_SN", "ENOSPROV_SN", "ENOSPROV_DPS_URL", "ENOSPROV_MQTT_URL",
    ]  # fmt: skip
    assert c_literal("é1") == '"\\xc3\\xa9" "1"'  # a hex digit after \xNN opens a new literal
    assert c_literal("??=?") == '"?\\?=?"'  # no trigraph
    assert c_literal('a"\\\n') == '"a\\"\\\\\\n"'


@pytest.mark.skipif(not shutil.which("cc"), reason="no C compiler")
def test_c_header_compiles_to_the_same_bytes(tmp_path):
    (tmp_path / "cred.h").write_bytes(FORMATS["c"].encode(NASTY))
    program = '#include <stdio.h>\n#include "cred.h"\nint main(void) {\n'
    for name, _ in NASTY.items():
        program += f"  fputs({macro_name(name)}, stdout); putchar(0);\n"
    (tmp_path / "main.c").write_text(program + "  return 0;\n}\n")
    exe = tmp_path / "main"
    cc = ["cc", "-std=c99", "-trigraphs", "-Wall", "-Werror", "-o", str(exe), "main.c"]
    subprocess.run(cc, cwd=tmp_path, check=True)
    out = subprocess.run([str(exe)], check=True, capture_output=True).stdout
    assert out == b"".join(v.encode() + b"\0" for _, v in NASTY.items())


def test_hex_uses_extended_linear_address_records_above_64k():
    low = FORMATS["hex"].encode(BOOT).decode()
    assert low.startswith(":10900000454E5056020008") and low.endswith(":00000001FF\n")
    high = FORMATS["hex"].encode(BOOT, FormatOptions(flash_address=0x3FFFF0)).decode()
    assert high.splitlines()[0] == ":02000004003FBB"
    assert ":020000040040BA" in high  # the binary crosses into the next 64 KiB
    assert FORMATS["hex"].decode(high.encode()) == BOOT


# -- detection -------------------------------------------------------------------------------


def test_detect_by_content_then_extension():
    for fmt in DECODABLE:
        assert detect(FORMATS[fmt].encode(TRIPLE), "x.txt") == fmt
    assert detect(b"", "a.json") == "json"
    assert detect(b"garbage", "a.nvs.bin") == "nvs"
    assert detect(b"EN", "dev.bin") == "bin"
    with pytest.raises(InputFileError, match=r"cannot tell the credential format of dev\.yaml"):
        detect(b"enos:\n  deviceSn: x\n", "dev.yaml")


def test_template_files_cannot_be_decoded():
    with pytest.raises(InvalidArgumentError, match="write-only"):
        FORMATS["template"].decode(b"x")


# -- tampering and truncation ----------------------------------------------------------------


def test_bin_any_changed_byte_or_truncation_is_refused():
    data = FORMATS["bin"].encode(NASTY)
    for i in range(len(data)):
        for mask in (0x01, 0x80, 0xFF):
            bad = bytearray(data)
            bad[i] ^= mask
            with pytest.raises(InputFileError):
                FORMATS["bin"].decode(bytes(bad))
    for size in range(len(data)):
        with pytest.raises(InputFileError):
            FORMATS["bin"].decode(data[:size])
    with pytest.raises(InputFileError, match="CRC-32 mismatch"):
        FORMATS["bin"].decode(data[:-5] + bytes([data[-5] ^ 1]) + data[-4:])
    with pytest.raises(InputFileError, match="truncated"):
        FORMATS["bin"].decode(data[:-6])
    with pytest.raises(InputFileError, match="unexpected byte"):
        FORMATS["bin"].decode(data + b"\0")


def test_hex_changed_or_truncated_file_is_refused():
    data = FORMATS["hex"].encode(NASTY)
    for i, ch in enumerate(data):
        if chr(ch) in "0123456789ABCDEF":
            bad = bytearray(data)
            bad[i] = ord("0") if ch != ord("0") else ord("1")
            with pytest.raises(InputFileError):
                FORMATS["hex"].decode(bytes(bad))
    cuts = [m.start() for m in re.finditer(rb"\n", data)][:-1]
    for size in [c + 1 for c in cuts] + [c - 3 for c in cuts] + [len(data) - 4]:
        with pytest.raises(InputFileError):
            FORMATS["hex"].decode(data[:size])
    with pytest.raises(InputFileError, match="invalid checksum"):
        FORMATS["hex"].decode(data.replace(b":10900000454E", b":10900000454F", 1))
    lines = data.decode().splitlines(keepends=True)
    with pytest.raises(InputFileError, match="2 separate segments"):  # a gap
        FORMATS["hex"].decode("".join(lines[:2] + lines[3:]).encode())


def test_nvs_any_flipped_bit_or_truncation_is_refused():
    data = FORMATS["nvs"].encode(NASTY)
    for i in range(len(data)):
        bad = bytearray(data)
        bad[i] ^= 0x01
        with pytest.raises(InputFileError):
            FORMATS["nvs"].decode(bytes(bad))
    for size in (0, 4096, 8192, len(data) - 1, len(data) - 4096 + 7):
        with pytest.raises(InputFileError):
            FORMATS["nvs"].decode(data[:size])


def test_nvs_tampering_messages():
    data = bytearray(FORMATS["nvs"].encode(BOOT))
    value_at = data.index(b"Zq8sK2vN")  # the group secret's data
    bad = bytearray(data)
    bad[value_at] ^= 0x20
    with pytest.raises(InputFileError, match=r"page 0 entry \d+: data CRC mismatch for key"):
        FORMATS["nvs"].decode(bytes(bad))
    bad = bytearray(data)
    bad[64 + 8] ^= 0x20  # the namespace entry's key
    with pytest.raises(InputFileError, match="page 0 entry 0: entry header CRC mismatch"):
        FORMATS["nvs"].decode(bytes(bad))
    bad = bytearray(data)
    bad[4] = 9  # page sequence number
    with pytest.raises(InputFileError, match="page 0: page header CRC mismatch"):
        FORMATS["nvs"].decode(bytes(bad))


def test_errors_never_quote_a_secret():
    secret = BOOT.group_secret
    for fmt in DECODABLE:
        data = FORMATS[fmt].encode(BOOT)
        at = data.index(secret[:8].encode()) if fmt != "hex" else data.index(b"5A71")
        for bad in (data[: at + 3], data[:at] + b'\xff"\\' + data[at + 3 :]):
            with pytest.raises(InputFileError) as err:
                FORMATS[fmt].decode(bad)
            assert secret[:8] not in str(err.value), fmt


@pytest.mark.parametrize("fmt", list(FORMATS))
def test_lone_surrogate_is_refused_by_every_format(fmt):
    cred = dataclasses.replace(BOOT, group_secret="ab\udc80")
    opts = FormatOptions(template="{groupSecret}")
    with pytest.raises(InvalidArgumentError, match="groupSecret of device 'MTR-000000001'"):
        FORMATS[fmt].encode(cred, opts)


# -- NVS and the library ---------------------------------------------------------------------


def test_nvs_image_is_what_the_generate_command_writes(tmp_path):
    # The command reads its CSV in text mode, which turns a CR into a LF: leave CRs out.
    cred = dataclasses.replace(NASTY, group_secret=NASTY.group_secret.replace("\r", ""))
    rows = [["key", "type", "encoding", "value"], ["enosprov", "namespace", "", ""]]
    rows += [[name, "data", "string", value] for name, value in cred.items()]
    with open(tmp_path / "in.csv", "w", newline="", encoding="utf-8") as fh:
        csv.writer(fh).writerows(rows)
    cmd = [sys.executable, "-m", "esp_idf_nvs_partition_gen", "generate", "in.csv", "out.bin"]
    subprocess.run([*cmd, "0x4000"], cwd=tmp_path, check=True, capture_output=True)
    ours = FORMATS["nvs"].encode(cred, FormatOptions(nvs_size=0x4000))
    assert ours == (tmp_path / "out.bin").read_bytes()


def _nvs_entry(ns: int, typ: int, span: int, key: str, data: bytes) -> bytes:
    """An NVS entry header; its CRC-32 (seed 0xFFFFFFFF) covers bytes 0-3 and 8-31."""
    head = bytes([ns, typ, span, 0xFF]), key.encode().ljust(16, b"\0") + data
    return head[0] + struct.pack("<I", zlib.crc32(head[0] + head[1], 0xFFFFFFFF)) + head[1]


def test_nvs_entries_decode_to_what_the_library_wrote():
    data = FORMATS["nvs"].encode(BOOT)
    namespaces, entries = nvs_format.parse_nvs(data)
    assert namespaces == {"enosprov": 1}
    assert [(e.ns, e.type, e.key) for e in entries] == [(0, 0x01, "enosprov")] + [
        (1, 0x21, name) for name, _ in BOOT.items()
    ]
    assert [e.value for e in entries[1:]] == [v.encode() + b"\0" for _, v in BOOT.items()]
    # Rebuild page 0 from the layout of docs/burn-formats.md and compare byte for byte.
    body = _nvs_entry(0, 0x01, 1, "enosprov", b"\x01" + b"\xff" * 7)
    for name, value in BOOT.items():
        raw = value.encode() + b"\0"
        span = 1 + (len(raw) + 31) // 32
        size_crc = struct.pack("<HHI", len(raw), 0xFFFF, zlib.crc32(raw, 0xFFFFFFFF))
        body += _nvs_entry(1, 0x21, span, name, size_crc) + raw.ljust((span - 1) * 32, b"\xff")
    bitmap = bytearray(b"\xff" * 32)
    for slot in range(len(body) // 32):
        bitmap[slot // 4] &= ~(1 << (slot % 4 * 2)) & 0xFF  # 0b10: written
    header = struct.pack("<II", 0xFFFFFFFE, 0) + b"\xfe" + b"\xff" * 19  # active, seq 0, v2
    page = header + struct.pack("<I", zlib.crc32(header[4:], 0xFFFFFFFF)) + bitmap + body
    assert data[:4096] == page.ljust(4096, b"\xff")
    assert data[4096:] == b"\xff" * (len(data) - 4096)


def test_nvs_namespace_option():
    opts = FormatOptions(nvs_namespace="cred_ns_15chars", nvs_size=0x6000)
    data = FORMATS["nvs"].encode(TRIPLE, opts)
    assert len(data) == 0x6000
    assert FORMATS["nvs"].decode(data, opts) == TRIPLE
    with pytest.raises(
        InputFileError, match=r"no namespace 'enosprov' \(found: 'cred_ns_15chars'\)"
    ):
        FORMATS["nvs"].decode(data, OPTS)


class _LongKey(Credential):
    def items(self):
        return [*super().items(), ("sixteenCharsKey!", "x")]


@pytest.mark.parametrize(
    "make",
    [
        lambda: FormatOptions(nvs_namespace="sixteen_chars_ns"),
        lambda: FormatOptions(nvs_namespace=""),
        lambda: FormatOptions(nvs_namespace="név"),
        lambda: FormatOptions(nvs_size=0x3001),
        lambda: FormatOptions(nvs_size=0x2000),
        lambda: FormatOptions(nvs_size=0),
        lambda: FormatOptions(flash_address=-1),
        lambda: FormatOptions(flash_address=1 << 32),
        lambda: FORMATS["nvs"].encode(_LongKey(profile="triple", device_sn="a", product_key="b",
                                               device_key="c", device_secret="d")),
        lambda: FORMATS["nvs"].encode(Credential("triple", "a", product_key="b", device_key="c",
                                                 device_secret="x" * 3968)),
        lambda: FORMATS["nvs"].encode(Credential("triple", "a", product_key="b", device_key="c",
                                                 device_secret="ü" * 1984)),
        lambda: FORMATS["nvs"].encode(Credential("triple", "a\0b", product_key="b", device_key="c",
                                                 device_secret="d")),
        lambda: FORMATS["c"].encode(Credential("triple", "a\0b", product_key="b", device_key="c",
                                               device_secret="d")),
        lambda: FORMATS["hex"].encode(BOOT, FormatOptions(flash_address=0xFFFFFFF0)),
        lambda: FORMATS["bin"].encode(Credential("triple", "a", product_key="b", device_key="c",
                                                 device_secret="x" * 65536)),
        lambda: FORMATS["json"].encode(Credential("triple", "a\ud800", product_key="b",
                                                  device_key="c", device_secret="d")),
        lambda: FORMATS["ini"].encode(Credential("triple", "a\ud800", product_key="b",
                                                  device_key="c", device_secret="d")),
    ],
)  # fmt: skip
def test_bad_options_and_values_are_invalid_arguments(make):
    with pytest.raises(InvalidArgumentError):
        make()


def test_nvs_largest_string_and_page_count():
    big = "x" * nvs_format.MAX_STRING_BYTES
    cred = Credential("triple", "a", product_key="b", device_key="c", device_secret=big)
    assert FORMATS["nvs"].decode(FORMATS["nvs"].encode(cred)) == cred
    two_big = Credential("triple", "a", product_key=big, device_key="c", device_secret=big)
    # Pages: namespace, profile, deviceSn | productKey (125 entries) | deviceKey | deviceSecret
    with pytest.raises(InvalidArgumentError, match="needs 4 NVS pages; a 0x3000-byte") as err:
        FORMATS["nvs"].encode(two_big)
    assert err.value.hint == "pass an NVS size of at least 0x5000"
    opts = FormatOptions(nvs_size=0x5000)
    assert FORMATS["nvs"].decode(FORMATS["nvs"].encode(two_big, opts)) == two_big


@settings(SETTINGS, max_examples=40)
@given(st.lists(st.integers(0, 2000), min_size=3, max_size=11))
def test_nvs_page_estimate_matches_the_library(sizes):
    kw = {attr: "v" * size for (_, attr, _), size in zip(FIELDS[1:], sizes)}
    cred = Credential("bootstrap", **{**kw, "device_sn": "s", "group_id": "g", "group_secret": "x",
                                      "dps_url": "u", "device_name": "n", "timezone": "+08:00"})  # fmt: skip
    spans = [1] + [1 + (len(v.encode()) + 32) // 32 for _, v in cred.items()]
    data = FORMATS["nvs"].encode(cred, FormatOptions(nvs_size=0x10000))
    used = sum(data[p : p + 4] != b"\xff\xff\xff\xff" for p in range(0, len(data), 4096))
    assert used == nvs_format._pages_needed(spans)


def test_library_failures_become_invalid_arguments(monkeypatch):
    from esp_idf_nvs_partition_gen import nvs_partition_gen as gen

    def boom(*a, **k):
        raise SystemExit(2)

    monkeypatch.setattr(gen, "nvs_open", boom)
    with pytest.raises(InvalidArgumentError, match=r"could not write .* \(SystemExit\)"):
        FORMATS["nvs"].encode(BOOT)


# -- templates -------------------------------------------------------------------------------


def test_template_unknown_field_is_refused_before_encoding():
    with pytest.raises(InvalidArgumentError, match=r"\{devicesn\} is not a credential field"
                       r"; allowed: profile, deviceSn,"):  # fmt: skip
        FormatOptions(template="sn={devicesn}")
    for bad in ("{}", "{0}", "{deviceSn.upper}", "{deviceSn[0]}", "a } b", "{deviceSn:{sn}}"):
        with pytest.raises(InvalidArgumentError):
            check_template(bad)
    assert check_template("{sn}{deviceSn:>4}{sn}{{literal}}") == ("sn", "deviceSn")


def test_template_field_without_value():
    opts = FormatOptions(template="{productKey}")
    with pytest.raises(InvalidArgumentError, match="uses productKey, which the bootstrap"):
        FORMATS["template"].encode(BOOT, opts)
    with pytest.raises(InvalidArgumentError, match="needs a template"):
        FORMATS["template"].encode(BOOT)


@pytest.mark.parametrize("name", ["credentials.h.tmpl", "credentials.conf.tmpl",
                                  "credentials.yaml.tmpl"])  # fmt: skip
def test_example_templates(name):
    from enosprov.burn.formats.template import read_template

    text, shipped_name = read_template(name)  # shipped in the package (enosprov/templates/burn/)
    assert shipped_name == name
    opts = FormatOptions(template=text, template_name=name)
    out = FORMATS["template"].encode(BOOT, opts).decode()
    assert BOOT.group_secret in out and BOOT.dps_url in out and "{" not in out
    assert f'"{BOOT.device_name}"' in out and f'"{BOOT.timezone}"' in out
    assert (
        FORMATS["template"].file_extension(opts) == extension_for(name) == "." + name.split(".")[1]
    )


# -- docs ------------------------------------------------------------------------------------


def xxd(data: bytes, start: int = 0) -> str:
    """``xxd``'s layout: offset, 16 bytes in groups of two, the printable ASCII."""
    lines = []
    for at in range(0, len(data), 16):
        chunk = data[at : at + 16]
        hexes = " ".join(chunk[i : i + 2].hex() for i in range(0, len(chunk), 2))
        text = "".join(chr(b) if 0x20 <= b < 0x7F else "." for b in chunk)
        lines.append(f"{start + at:08x}: {hexes:<39}  {text}")
    return "\n".join(lines)


def test_docs_show_the_current_bytes():
    doc = (ROOT / "docs" / "burn-formats.md").read_text(encoding="utf-8")
    assert xxd(FORMATS["bin"].encode(BOOT)) in doc
    assert FORMATS["hex"].encode(BOOT).decode() in doc
    assert xxd(FORMATS["nvs"].encode(BOOT)[:0x100]) in doc
    for fmt in ("json", "ini", "c"):
        assert FORMATS[fmt].encode(BOOT).decode() in doc


def test_json_encoder_matches_json_dumps_exactly():
    import json

    from enosprov.burn.credential import Credential
    from enosprov.burn.formats import FORMATS

    cred = Credential("bootstrap", 'S"N\\1', group_id="g\u00e9", group_secret="s\n\t\x01",
                      dps_url="http://x", sn="abc")  # fmt: skip
    expected = json.dumps(cred.to_dict(), indent=2, ensure_ascii=False) + "\n"
    assert FORMATS["json"].encode(cred) == expected.encode("utf-8")
