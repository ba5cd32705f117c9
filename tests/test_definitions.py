"""A line's set-up runs again safely: `masterdata create` and `group create` report "unchanged"
for the same definition and refuse a different one (exit 7); `masterdata update` and `group
update` make the changes registered devices survive; a TOML file's mistakes come all at once."""

from __future__ import annotations

import json

import pytest
from conftest import ROOT, make_group, meters_rows

from enosprov import api
from enosprov.domain.errors import (
    EXIT_EXISTS_DIFFERENT,
    ConflictError,
    DefinitionConflictError,
    InputFileError,
    InvalidArgumentError,
)

MASTERDATA = ROOT / "examples" / "masterdata.toml"
GROUP = ["group", "create", "--id", "meters-eu", "--name", "Smart meters EU", "--product-key",
         "demoPK01", "--region", "eu2", "--org", "o15000000000001", "--masterdata", "meters",
         "--timezone", "+01:00"]  # fmt: skip


def test_the_line_set_up_runs_twice(cli):
    first = [cli("masterdata", "create", "--file", str(MASTERDATA)), cli(*GROUP)]
    assert [r.exit_code for r in first] == [0, 0]
    assert first[0].stdout.startswith("created: master data group meters")
    secret = cli.json("group", "show", "meters-eu", "--with-secrets")["data"]["groupSecret"]
    again = [cli("masterdata", "create", "--file", str(MASTERDATA)), cli(*GROUP)]
    assert [r.exit_code for r in again] == [0, 0]
    assert again[0].stdout.startswith("unchanged: master data group meters")
    assert again[1].stdout.startswith("unchanged: registration group meters-eu")
    # the stored secret is kept; nothing journaled the second time
    assert cli.json("group", "show", "meters-eu", "--with-secrets")["data"]["groupSecret"] == secret
    ops = [e["operation"] for e in cli.json("log")["data"]]
    assert ops == ["masterdata-create", "group-create"]
    as_json = cli.json(*GROUP)["data"]
    assert as_json["status"] == "unchanged" and "groupSecret" not in as_json


def test_a_group_without_id_is_found_by_its_name(cli):
    cli("masterdata", "create", "--file", str(MASTERDATA))
    args = ["group", "create", "--name", "Meters", "--product-key", "pk1"]
    first = cli.json(*args)["data"]
    second = cli.json(*args)["data"]
    assert second["status"] == "unchanged" and second["groupId"] == first["groupId"]
    assert len(cli.json("group", "list")["data"]) == 1


def test_a_different_definition_is_refused_with_its_differences(cli):
    cli("masterdata", "create", "--file", str(MASTERDATA))
    cli(*GROUP)
    changed = [a if a != "+01:00" else "+02:00" for a in GROUP]
    result = cli(*changed, "--json")
    assert result.exit_code == EXIT_EXISTS_DIFFERENT == 7
    err = json.loads(result.stdout)["error"]
    assert err["code"] == "exists_different"
    assert err["differences"] == [{"field": "timezone", "stored": "+01:00", "given": "+02:00"}]
    assert "enosprov group update" in err["hint"]
    assert cli.json("group", "show", "meters-eu")["data"]["timezone"] == "+01:00"
    # a product key cannot change: the hint says so instead of pointing at group update
    other_pk = [a if a != "demoPK01" else "demoPK02" for a in GROUP]
    refused = cli(*other_pk)
    assert refused.exit_code == 7 and "productKey" in refused.stderr
    assert "cannot change" in refused.stderr and "group update" not in refused.stderr


def test_a_different_masterdata_definition_is_refused(cli, tmp_path):
    cli("masterdata", "create", "--file", str(MASTERDATA))
    other = tmp_path / "m.toml"
    other.write_text(MASTERDATA.read_text(encoding="utf-8").replace("Smart meters", "Meters"),
                     encoding="utf-8")  # fmt: skip
    result = cli("masterdata", "create", "--file", str(other), "--json")
    assert result.exit_code == 7
    diffs = json.loads(result.stdout)["error"]["differences"]
    assert [d["field"] for d in diffs] == ["name"]


def test_ensure_through_the_library(store):
    mdg = api.ensure_masterdata_group(store, MASTERDATA)
    assert mdg.status == "created" and api.ensure_masterdata_group(store, MASTERDATA).status == (
        "unchanged"
    )
    kw = dict(name="G", product_key="pk", masterdata_group_id="meters", group_id="g1")
    assert api.ensure_group(store, **kw).created
    assert api.create_group(store, **kw).group_id == "g1"  # create is idempotent too
    with pytest.raises(DefinitionConflictError) as info:
        api.create_group(store, **{**kw, "product_key": "pk2"})
    assert isinstance(info.value, ConflictError)  # `except ConflictError` still catches it


def test_group_update(cli, store, write_csv):
    make_group(store)
    cli("register", "--csv", str(write_csv(meters_rows(2))), "--group", "meters-eu")
    data = cli.json("group", "update", "meters-eu", "--region", "cn5", "--org", "o2",
                    "--timezone", "+08:00", "--name", "Meters CN")["data"]  # fmt: skip
    target = data["target"]
    assert (target["regionId"], target["orgId"], data["timezone"], data["name"]) == (
        "cn5", "o2", "+08:00", "Meters CN"
    )  # fmt: skip
    assert cli.json("group", "show", "Meters CN")["data"]["groupId"] == "meters-eu"
    half = cli("group", "update", "meters-eu", "--region", "eu2")
    assert half.exit_code == 1 and "--region and --org together" in half.stderr
    nothing = cli("group", "update", "meters-eu")
    assert nothing.exit_code == 1 and "nothing to change" in nothing.stderr
    bad_tz = cli("group", "update", "meters-eu", "--timezone", "Mars/Olympus")
    assert bad_tz.exit_code == 1
    assert cli.json("group", "show", "meters-eu")["data"]["timezone"] == "+08:00"
    make_group(store, group_id="other", name="Other")
    clash = cli("group", "update", "meters-eu", "--name", "Other")
    assert clash.exit_code == 1 and "already called 'Other'" in clash.stderr
    entries = cli.json("log", "--operation", "group-update")["data"]
    assert len(entries) == 1 and entries[0]["detail"]["regionId"] == "cn5"
    assert "groupSecret" not in json.dumps(entries)


def test_masterdata_update_keeps_devices_valid(cli, tmp_path):
    cli("masterdata", "create", "--file", str(MASTERDATA))
    text = MASTERDATA.read_text(encoding="utf-8")
    added = tmp_path / "added.toml"
    added.write_text(text + '\n[[attributes]]\nidentifier = "firmware"\ntype = "String"\n',
                     encoding="utf-8")  # fmt: skip
    data = cli.json("masterdata", "update", "--file", str(added))["data"]
    assert data["attributes"][-1]["identifier"] == "firmware"
    # refused, every reason at once, nothing changed
    bad = tmp_path / "bad.toml"
    bad.write_text(
        text.replace('type = "Integer"', 'type = "String"', 1)
        + '\n[[attributes]]\nidentifier = "mandatory_new"\ntype = "String"\nrequired = true\n',
        encoding="utf-8",
    )
    refused = cli("masterdata", "update", "--file", str(bad))
    assert refused.exit_code == 1
    assert "type cannot change" in refused.stderr
    assert "firmware: an attribute cannot be removed" in refused.stderr
    assert "mandatory_new: a new attribute must be optional" in refused.stderr
    stored = cli.json("masterdata", "show", "meters")["data"]
    assert [a["identifier"] for a in stored["attributes"]][-1] == "firmware"
    with pytest.raises(InvalidArgumentError):
        api.update_masterdata_group(_backend(cli), _builtin())


def test_masterdata_update_max_length_against_the_default(cli, tmp_path):
    """No maxLength means the default limit (256): 300 is longer, 100 shorter."""
    base = 'id = "m2"\nname = "M2"\n[[attributes]]\nidentifier = "site"\ntype = "String"\n'
    first = tmp_path / "m2.toml"
    first.write_text(base, encoding="utf-8")
    cli("masterdata", "create", "--file", str(first))
    longer = tmp_path / "longer.toml"
    longer.write_text(base + "maxLength = 300\n", encoding="utf-8")
    assert cli("masterdata", "update", "--file", str(longer)).exit_code == 0
    shorter = tmp_path / "shorter.toml"
    shorter.write_text(base + "maxLength = 100\n", encoding="utf-8")
    refused = cli("masterdata", "update", "--file", str(shorter))
    assert refused.exit_code == 1 and "maxLength cannot get shorter (300 to 100)" in refused.stderr


def _backend(cli):
    from enosprov.backends.local import LocalBackend

    return LocalBackend(cli.store)


def _builtin():
    from enosprov.domain.models import MasterDataGroup

    return MasterDataGroup(id="builtin", name="Built-in")


def test_every_mistake_of_a_toml_file_at_once(tmp_path, cli):
    bad = tmp_path / "bad.toml"
    bad.write_text(
        'id = "bad group!"\nname = ""\n'
        '[[attributes]]\nidentifier = "a"\ntype = "Integr"\n'
        '[[attributes]]\nidentifier = "b"\ntype = "Enum"\n'
        '[[attributes]]\nidentifier = "a"\nrequired = "yes"\n',
        encoding="utf-8",
    )
    with pytest.raises(InputFileError) as info:
        _load(bad)
    message = info.value.message
    assert "5 problems" in message, message
    for part in ("attributes[3] (a): 'required' must be true or false",
                 "id 'bad group!' is not allowed", "name must have", "'Integr'",
                 "needs a non-empty"):  # fmt: skip
        assert part in message, message
    result = cli("masterdata", "create", "--file", str(bad))
    assert result.exit_code == 1 and result.stderr.count("error") == 1
    fixed = bad.read_text(encoding="utf-8").replace('required = "yes"', "required = true")
    bad.write_text(fixed, encoding="utf-8")
    again = cli("masterdata", "create", "--file", str(bad)).stderr
    assert "5 problems" in again and "defined twice" in again, again


def _load(path):
    from enosprov.domain.masterdata_file import load_masterdata_group

    return load_masterdata_group(path)


def test_the_starter_file_creates_a_group(cli, tmp_path):
    out = tmp_path / "starter.toml"
    assert cli("template", "masterdata", "--out", str(out)).exit_code == 0
    assert out.read_text(encoding="utf-8").startswith("# A master data group")
    created = cli.json("masterdata", "create", "--file", str(out))["data"]
    assert created["status"] == "created" and len(created["attributes"]) == 4
    assert cli("template", "masterdata", "nope").exit_code == 1
