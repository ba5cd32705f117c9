"""Short codes (version 2 and the old version 1) as device references, and "did you mean"."""

from __future__ import annotations

import random
import re

import pytest
from conftest import METERS_HEADER, make_group, meters_rows
from hypothesis import given, settings
from hypothesis import strategies as st

from enosprov import api
from enosprov.core.device_refs import resolve_devices
from enosprov.core.suggest import Matcher, distance, nearest
from enosprov.errors import InvalidArgumentError, NotFoundError
from enosprov.qr.payload import (
    CHECK_SYMBOLS,
    CROCKFORD,
    DAMM_A,
    GF32_POLY,
    Payload,
    check_short_code,
    damm_interim,
    damm_op,
    device_short_code,
    gf32_mul,
    is_totally_antisymmetric_quasigroup,
    parse_short_code,
    payload_text,
    short_code,
)

GROUP = "meters-eu"
# Two deviceSns of group meters-eu whose version 2 short codes collide (found by a search over
# SN-000001..SN-600000: 35 bits make one such pair likely among ~200,000 devices of a group).
SHARED = ("SN-188732", "SN-241431", "S477-0RSK")


def symbols(code: str) -> list[int]:
    return [CROCKFORD.index(ch) for ch in code.replace("-", "")]


# -- the check character: a proof over the whole symbol space ------------------------------------


def test_gf32_polynomial_is_primitive_and_a_is_not_0_or_1():
    assert GF32_POLY == 0b100101 and DAMM_A not in (0, 1)
    powers, x = [], 1
    for _ in range(31):
        powers.append(x)
        x = gf32_mul(x, 0b10)
    assert x == 1 and sorted(powers) == list(range(1, 32))  # x generates GF(32)*: primitive
    for u in range(32):  # a field: every non-zero element has an inverse
        assert u == 0 or any(gf32_mul(u, v) == 1 for v in range(32))


def test_quasigroup_is_totally_anti_symmetric_and_the_checker_can_tell():
    assert is_totally_antisymmetric_quasigroup(damm_op, 32)
    assert not is_totally_antisymmetric_quasigroup(lambda x, y: x ^ y, 32)  # a = 1: symmetric
    assert not is_totally_antisymmetric_quasigroup(lambda x, y: y, 32)  # a = 0: not a quasigroup


def test_every_single_error_and_neighbour_swap_is_caught_at_every_position():
    """Exhaustive over the symbol space. A code s1..s8 is valid when Damm's interim value
    t_i = t_(i-1) * s_i (t_0 = 0) ends at 0. Any state can precede position i > 1 (0 * x = x);
    so for every position and every state t before it:

    * a substitution x -> y gives t*x != t*y (columns of the table are permutations), and two
      different states stay different through any suffix (rows are permutations), so the code
      ends at a non-zero state;
    * a swap of neighbours x, y gives (t*x)*y != (t*y)*x (total anti-symmetry), same argument.
    """
    table = [[damm_op(x, y) for y in range(32)] for x in range(32)]
    for s in range(32):  # different states stay different, whatever symbol follows
        assert len({table[t][s] for t in range(32)}) == 32
    for position in range(8):
        before = [0] if position == 0 else range(32)
        for t in before:
            row = table[t]
            for x in range(32):
                for y in range(32):
                    if x == y:
                        continue
                    assert row[x] != row[y], (position, t, x, y)
                    if position < 7:
                        assert table[row[x]][y] != table[row[y]][x], (position, t, x, y)


def device_codes(n: int, seed: int = 7) -> list[str]:
    rng = random.Random(seed)
    return [
        device_short_code(f"g{rng.randrange(99)}", f"SN-{rng.randrange(10**9)}") for _ in range(n)
    ]


def old_codes(n: int) -> list[str]:
    return [short_code(Payload("g", f"SN-{i:06d}", f"s{i}", "B-1").text) for i in range(n)]


@pytest.mark.parametrize("make", [device_codes, old_codes], ids=["version 2", "version 1"])
def test_no_typo_of_a_code_reads_as_a_code_of_either_version(make):
    """Brute force over real codes: all 8 positions x 31 substitutions (any letter or digit,
    and for version 1 codes the check symbols too) and all 7 neighbour swaps."""
    alphabet = CROCKFORD + "*~$=U"
    for code in make(2000):
        c = code.replace("-", "")
        assert parse_short_code(code) is not None
        for i in range(8):
            for ch in alphabet:
                if ch != c[i]:
                    assert not check_short_code(c[:i] + ch + c[i + 1 :]), (code, i, ch)
        for i in range(7):
            if c[i] != c[i + 1]:
                assert not check_short_code(c[:i] + c[i + 1] + c[i] + c[i + 2 :]), (code, i)


def test_new_codes_pass_damm_and_versions_are_told_by_the_first_character():
    for code in device_codes(300):
        assert damm_interim(symbols(code)) == 0
        assert code[0] not in "0123" and parse_short_code(code).version == 2
    for code in old_codes(300):
        assert code[0] in "0123" and parse_short_code(code).version == 1
    assert any(c[-1] in "*~$=U" for c in old_codes(300))  # old labels do carry them


@settings(max_examples=300, deadline=None)
@given(st.text(min_size=1, max_size=40), st.text(min_size=1, max_size=64))
def test_new_codes_are_letters_and_digits_only(group_id, device_sn):
    code = device_short_code(group_id, device_sn)
    assert re.fullmatch(r"[0-9A-HJKMNP-TV-Z]{4}-[0-9A-HJKMNP-TV-Z]{4}", code)
    assert not set(code) & set("*~$=UILO")
    parsed = parse_short_code(code.lower().replace("-", ""))
    assert parsed is not None and parsed.version == 2 and parsed.text == code
    # depends on groupId and deviceSn only: the payload's sn and batch tag do not change it
    assert Payload(group_id, device_sn, "sn-1", "B-9").short_code == code


def test_look_alikes_and_spacing_are_accepted():
    code = next(c for c in device_codes(500) if "0" in c[1:] and "1" in c[1:])
    typed = code.replace("0", "o").replace("1", "l").replace("-", " ").lower()
    assert parse_short_code(typed).text == code
    assert parse_short_code(f" {code[:4]}-{code[4:]} ").text == code


def test_payload_template_short_code_is_the_new_one():
    p = Payload(GROUP, "SN-1", "s1", "B-1")
    assert p.short_code == device_short_code(GROUP, "SN-1") == p.to_dict()["shortCode"]
    assert p.text == payload_text(GROUP, "SN-1", "s1", "B-1")  # the payload is unchanged
    assert p.text.startswith("ENP1:") and set(CHECK_SYMBOLS) >= set(CROCKFORD)


# -- resolving short codes, both backends ----------------------------------------------------------


@pytest.fixture
def registered(backend, group, write_csv):
    api.register_csv(backend, write_csv(meters_rows(5)), group.group_id, batch_tag="B-1")
    return group


def test_find_device_by_new_and_old_short_code(backend, registered):
    dev = backend.find_by_device_sn(GROUP, "SN-000003")
    new = device_short_code(GROUP, "SN-000003")
    for typed in (new, new.lower(), new.replace("-", ""), new.lower().replace("-", " ")):
        assert api.find_device(backend, typed).sn == dev.sn
        assert api.find_device(backend, typed, GROUP).sn == dev.sn
    # old labels: printed after registration (sn in the payload) or before (none)
    for printed in (
        Payload(GROUP, "SN-000003", dev.sn, "B-1"),
        Payload(GROUP, "SN-000003", None, "B-1"),
    ):
        assert api.find_device(backend, short_code(printed.text)).sn == dev.sn
    # the new code survives a batch tag edit; an old code of the old payload does not
    old_code = short_code(Payload(GROUP, "SN-000003", dev.sn, "B-1").text)
    backend.update(dev.sn, batch_tag={"defaultValue": "B-2", "i18nValue": {}})
    assert api.find_device(backend, new).sn == dev.sn
    with pytest.raises(NotFoundError) as err:
        api.find_device(backend, old_code)
    assert "no device has this short code" in err.value.hint


def test_resolve_devices_takes_short_codes(backend, registered):
    codes = [device_short_code(GROUP, f"SN-00000{i}") for i in (1, 4)]
    devs = resolve_devices(backend, [codes[0], "SN-000002", codes[1].lower()], GROUP)
    assert [d.device_sn for d in devs] == ["SN-000001", "SN-000002", "SN-000004"]
    assert [d.device_sn for d in resolve_devices(backend, codes)] == ["SN-000001", "SN-000004"]


def test_short_code_of_another_group_is_not_found_in_this_one(backend, registered, write_csv):
    make_group(backend, group_id="meters-b", name="Meters B")
    api.register_csv(backend, write_csv(meters_rows(1, 7), name="b.csv"), "meters-b")
    code = device_short_code("meters-b", "SN-000007")
    assert api.find_device(backend, code).group_id == "meters-b"
    with pytest.raises(NotFoundError):
        api.find_device(backend, code, GROUP)


def test_exact_device_sn_wins_over_a_short_code(backend, registered, write_csv):
    code = device_short_code(GROUP, "SN-000002")
    rows = meters_rows(1).splitlines()[1].replace("SN-000001", code)
    api.register_csv(backend, write_csv(f"{METERS_HEADER}\n{rows}\n", name="x.csv"), GROUP)
    assert api.find_device(backend, code).device_sn == code
    assert api.find_device(backend, code.replace("-", "")).device_sn == "SN-000002"
    [dev] = resolve_devices(backend, [code], GROUP)
    assert dev.device_sn == code


def test_a_shared_short_code_is_refused_naming_both(backend, group, write_csv):
    a, b, code = SHARED
    assert device_short_code(GROUP, a) == device_short_code(GROUP, b) == code
    lines = [METERS_HEADER] + [f"{sn},Meter,+08:00,40,single,2026-11-01,Hall" for sn in (a, b)]
    api.register_csv(backend, write_csv("\n".join(lines) + "\n"), GROUP)
    with pytest.raises(InvalidArgumentError, match=f"{code}.*2 devices.*{a}.*{b}|{b}.*{a}"):
        api.find_device(backend, code)
    with pytest.raises(InvalidArgumentError, match="nothing was changed") as err:
        resolve_devices(backend, [code.lower()], GROUP)
    assert a in err.value.message and b in err.value.message


# -- did you mean --------------------------------------------------------------------------------


@pytest.fixture
def inverters(backend, group, write_csv):
    sns = ["INV-2026-01979", "INV-2026-01998", "INV-2026-05000", "INV-2027-99999", "XY-1"]
    lines = [METERS_HEADER] + [f"{sn},Inv,+08:00,40,single,2026-11-01,Hall" for sn in sns]
    api.register_csv(backend, write_csv("\n".join(lines) + "\n"), GROUP)
    return sns


def test_unknown_device_suggests_the_nearest_device_sns(backend, inverters):
    with pytest.raises(NotFoundError) as err:
        api.find_device(backend, "INV-2026-01997")
    assert err.value.message == "no device with system sn or deviceSn 'INV-2026-01997'"
    assert err.value.hint == "did you mean INV-2026-01979, INV-2026-01998?"
    with pytest.raises(NotFoundError) as err:
        api.find_device(backend, "INV-2026-01997", GROUP)
    assert err.value.hint == "did you mean INV-2026-01979, INV-2026-01998?"
    with pytest.raises(NotFoundError) as err:
        api.find_device(backend, "nothing-like-it")
    assert "did you mean" not in err.value.hint and "devices list" in err.value.hint


def test_resolve_devices_suggests_for_each_unknown_reference(backend, inverters):
    with pytest.raises(NotFoundError) as err:
        resolve_devices(backend, ["INV-2026-01979", "INV-2026-1998", "XY-2"], GROUP)
    assert "nothing was changed" in err.value.message
    assert err.value.hint == (
        "did you mean INV-2026-01998 (for 'INV-2026-1998'); XY-1 (for 'XY-2')?"
    )


def test_same_group_first_then_other_groups_named(store, write_csv):
    make_group(store)
    make_group(store, group_id="meters-b", name="Meters B")
    for gid, sns in (
        (GROUP, ["INV-2026-01998"]),
        ("meters-b", ["INV-2026-01979", "INV-2026-01997"]),
    ):
        lines = [METERS_HEADER] + [f"{sn},Inv,+08:00,40,single,2026-11-01,Hall" for sn in sns]
        api.register_csv(store, write_csv("\n".join(lines) + "\n", name=f"{gid}.csv"), gid)
    with pytest.raises(NotFoundError) as err:
        resolve_devices(store, ["INV-2026-01997"], GROUP)
    # the nearest of the group, then the nearest of the others
    assert err.value.hint == "did you mean INV-2026-01998, INV-2026-01997 (group meters-b)?"


@settings(max_examples=400, deadline=None)
@given(st.text("ab-1Z", max_size=9), st.text("ab-1Z", max_size=9), st.sampled_from([1, 2]))
def test_fast_matcher_agrees_with_the_distance_table(word, cand, limit):
    d = distance(word, cand)
    assert Matcher(word, limit)(cand.encode()) == (d if d <= limit else None)


def test_distance_counts_a_neighbour_swap_as_one_edit():
    assert distance("INV-2026-01997", "INV-2026-01979") == 1
    assert distance("abc", "") == 3 and distance("kitten", "sitting") == 3
    assert nearest("devics", ["devices", "device", "groups"]) == ["device", "devices"]


# -- the command line --------------------------------------------------------------------------


@pytest.fixture
def on_store(cli, store, write_csv):
    make_group(store)
    cli.json("register", "--csv", str(write_csv(meters_rows(3))), "--group", GROUP,
             "--batch-tag", "B-1")  # fmt: skip
    return store


def test_cli_devices_show_by_short_code(cli, on_store):
    code = device_short_code(GROUP, "SN-000002")
    shown = cli.json("devices", "show", code.lower().replace("-", ""))["data"]
    assert shown["deviceSn"] == "SN-000002"
    dev = on_store.find_by_device_sn(GROUP, "SN-000002")
    old = short_code(Payload(GROUP, "SN-000002", dev.sn, "B-1").text)
    assert cli.json("devices", "show", old, "--group", GROUP)["data"]["sn"] == dev.sn


def test_cli_replace_by_short_code(cli, on_store, tmp_path):
    code = device_short_code(GROUP, "SN-000001")
    result = cli.json("replace", code, "--new-device-sn", "SN-900001", "--no-burn", "--yes",
                      "--out", str(tmp_path / "r"))  # fmt: skip
    [r] = result["data"]["replaced"]
    assert r["old"]["deviceSn"] == "SN-000001" and r["new"]["deviceSn"] == "SN-900001"


def test_api_replace_by_short_code_on_both_backends(backend, registered):
    old = backend.find_by_device_sn(GROUP, "SN-000002")
    code = device_short_code(GROUP, "SN-000002")
    report = api.replace_device(backend, code, "SN-900002", group=GROUP)
    [done] = report.replaced
    assert (done.old_sn, done.new_device_sn) == (old.sn, "SN-900002")


def test_cli_did_you_mean_for_devices(cli, on_store):
    missing = cli("devices", "show", "SN-00002")
    assert missing.exit_code == 1
    assert "no device with system sn or deviceSn 'SN-00002'" in missing.stderr
    assert "did you mean SN-000002?" in missing.stderr
    replaced = cli.json("replace", "SN-0000001", "--new-device-sn", "SN-900001", "--yes", expect=1)
    assert "did you mean SN-000001?" in str(replaced["error"])
    history = cli("devices", "history", "SN-00003")
    assert history.exit_code == 1 and "did you mean SN-000003?" in history.stderr


@pytest.mark.parametrize(
    ("typed", "meant"),
    [
        (["device", "list"], "'devices list'"),
        (["devics", "list"], "'devices list'"),
        (["devices", "lst"], "'devices list'"),
        (["qr", "prnt"], "'qr print'"),
        (["history", "SN-1"], "'devices history'"),
        (["devics"], "'device' or 'devices'"),
    ],
)
def test_unknown_command_suggests_the_nearest_command_path(cli, typed, meant):
    result = cli(*typed)
    assert result.exit_code == 2 and not result.stdout
    assert "no such command" in result.stderr.lower()
    assert f"did you mean {meant}?" in result.stderr.lower()


def test_unknown_command_without_anything_near_says_so_only(cli):
    result = cli("zzzzzz")
    assert result.exit_code == 2 and "No such command 'zzzzzz'." in result.stderr
    assert "did you mean" not in result.stderr.lower()
