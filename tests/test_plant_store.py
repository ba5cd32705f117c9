"""The store on PostgreSQL shared by several stations (issue 17's "done when"): station processes
that register, replace and journal at once behave like one store; a registration killed with
SIGKILL and run again registers every row exactly once; the store is chosen by URL, by
ENOSPROV_STORE or by a name in the config file, and its password is never shown."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections import Counter

import pytest
from conftest import ROOT, Cli, meters_rows, query_store

from enosprov import api
from enosprov.backends.pg_store import PgStore

pytestmark = pytest.mark.skipif(
    os.environ.get("ENOSPROV_TEST_POSTGRES") == "skip", reason="ENOSPROV_TEST_POSTGRES=skip"
)

GROUP = "meters-eu"
MASTERDATA = ROOT / "examples" / "masterdata.toml"


def _cli(url: str, *args: str, check: bool = True, **kw) -> subprocess.CompletedProcess:
    proc = subprocess.run(
        [sys.executable, "-m", "enosprov", "--store", url, *args],
        capture_output=True, text=True, timeout=300, **kw,
    )  # fmt: skip
    if check:
        assert proc.returncode == 0, (args, proc.stdout, proc.stderr)
    return proc


def _set_up(url: str) -> None:
    from conftest import make_group

    with PgStore(url) as store:
        make_group(store)


# A station process: registers, replaces or registers unit by unit through the library, as the
# `register` / `replace` / `station` commands do, stamping its journal records with its name.
WORKER = r"""
import sys, time
from pathlib import Path
from enosprov import api
url, role, station, arg, go = sys.argv[1:6]
while not Path(go).exists():  # every station starts at once
    time.sleep(0.005)
with api.open_session(url, station=station) as s:
    if role == "csv":
        api.register_csv(s, arg, "meters-eu", chunk_size=25)
    elif role == "units":
        for i in range(int(arg)):
            api.register_records(s, [{"deviceSn": f"{station}-{i:04d}", "max_capacity": "50",
                                      "phase": "single"}], "meters-eu")
    elif role == "replace":
        for i in range(int(arg)):
            api.replace_device(s, f"BASE-{i + 1:06d}", f"NEW-{i + 1:04d}", group="meters-eu")
"""


def test_several_stations_on_one_postgresql_store(fresh_database, tmp_path):
    url = fresh_database
    _set_up(url)
    base = tmp_path / "base.csv"
    base.write_text(meters_rows(40, prefix="BASE"), encoding="utf-8")
    with api.open_session(url, station="setup") as s:
        assert api.register_csv(s, base, GROUP).created == 40
    # two lines register overlapping files (rows 1-300 and 151-450), two stations register units
    # one by one, one replaces 20 base units: all at the same time
    first, second = tmp_path / "a.csv", tmp_path / "b.csv"
    first.write_text(meters_rows(300, prefix="LINE"), encoding="utf-8")
    second.write_text(meters_rows(300, start=151, prefix="LINE"), encoding="utf-8")
    go = tmp_path / "go"
    roles = [("csv", "L1", str(first)), ("csv", "L2", str(second)), ("units", "U1", "60"),
             ("units", "U2", "60"), ("replace", "R1", "20")]  # fmt: skip
    procs = [
        subprocess.Popen([sys.executable, "-c", WORKER, url, role, station, arg, str(go)],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for role, station, arg in roles
    ]  # fmt: skip
    time.sleep(0.5)
    go.touch()
    for proc in procs:
        _out, err = proc.communicate(timeout=300)
        assert proc.returncode == 0, err

    device_sns = Counter(r[0] for r in query_store(url, "SELECT device_sn FROM devices"))
    expected = (
        {f"LINE-{i:06d}" for i in range(1, 451)}
        | {f"U{n}-{i:04d}" for n in (1, 2) for i in range(60)}
        | {f"BASE-{i:06d}" for i in range(21, 41)}  # BASE-000001..20 replaced
        | {f"NEW-{i:04d}" for i in range(1, 21)}
    )
    assert set(device_sns) == expected
    assert max(device_sns.values()) == 1  # no deviceSn twice

    # the journal: every created device in exactly one "register" record, the units one record
    # each, 20 "replace" records; no record lost, none twice
    with api.open_session(url) as s:
        entries = list(s.journal.entries())
    assert len({e.id for e in entries}) == len(entries)
    created = Counter(
        dsn for e in entries if e.operation == "register" and e.outcome == "ok"
        for _, dsn in e.devices
    )  # fmt: skip
    assert set(created) == {d for d in expected if not d.startswith("NEW-")} | {
        f"BASE-{i:06d}" for i in range(1, 21)
    }
    assert max(created.values()) == 1
    units = [e for e in entries if e.operation == "register" and e.station in ("U1", "U2")]
    assert len(units) == 120 and all(e.device_count == 1 for e in units)
    replaced = [e for e in entries if e.operation == "replace"]
    assert len(replaced) == 20 and {e.station for e in replaced} == {"R1"}
    lines = {e.station for e in entries if e.operation == "register"}
    assert {"L1", "L2", "U1", "U2", "setup"} <= lines
    # the lineage of every replacement is in the store
    with PgStore(url) as store:
        links = store.replacement_links(GROUP)
    assert len(links) == 20


KILLED = r"""
import sys
from enosprov import api
url, csv_path = sys.argv[1:3]
with api.open_session(url, station="K") as s:
    api.register_csv(s, csv_path, "meters-eu", chunk_size=50)
"""


def test_kill_9_during_a_registration_then_rerun_registers_every_row_once(fresh_database, tmp_path):
    url = fresh_database
    _set_up(url)
    path = tmp_path / "devices.csv"
    rows = 3000
    path.write_text(meters_rows(rows), encoding="utf-8")
    proc = subprocess.Popen([sys.executable, "-c", KILLED, url, str(path)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)  # fmt: skip
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:  # kill it mid-run: some chunks committed, not all
        done = query_store(url, "SELECT count(*) FROM devices")[0][0]
        if done >= 200:
            break
        time.sleep(0.01)
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    after_kill = query_store(url, "SELECT count(*) FROM devices")[0][0]
    assert 0 < after_kill < rows, "the kill came too late or too early to test anything"
    assert after_kill % 50 == 0  # whole chunks only: a chunk and its record commit together

    result = json.loads(
        _cli(url, "register", "--csv", str(path), "--group", GROUP, "--json").stdout
    )["data"]
    assert result["created"] == rows - after_kill and result["skipped"] == after_kill
    counts = query_store(
        url, "SELECT count(*), count(DISTINCT device_sn) FROM devices WHERE group_id=?", (GROUP,)
    )[0]
    assert counts == (rows, rows)
    # the journal lists every device exactly once, the killed run's chunks included
    with api.open_session(url) as s:
        created = Counter(
            dsn for e in s.journal.entries() if e.operation == "register" for _, dsn in e.devices
        )
    assert len(created) == rows and set(created.values()) == {1}


def test_store_by_url_env_and_name_and_the_password_is_never_shown(
    fresh_database, tmp_path, monkeypatch
):
    url = fresh_database
    _set_up(url)
    # ENOSPROV_STORE
    env = {**os.environ, "ENOSPROV_STORE": url}
    info = json.loads(
        subprocess.run([sys.executable, "-m", "enosprov", "info", "--json"], env=env,
                       capture_output=True, text=True, check=True).stdout
    )["data"]  # fmt: skip
    assert info["storeDatabase"].startswith("PostgreSQL ") and info["groups"] == 1
    assert info["storeSource"] == "ENOSPROV_STORE" and "in the store's database" in info["journal"]
    # a named store in the config file
    config = tmp_path / "config.toml"
    config.write_text(f'[stores.plant]\nurl = "{url}"\n', encoding="utf-8")
    monkeypatch.setenv("ENOSPROV_CONFIG", str(config))
    cli = Cli("plant")
    listed = cli.json("group", "list")
    assert [g["groupId"] for g in listed["data"]] == [GROUP]
    # a password written into a URL is never shown (here a server that is not there: exit 3)
    refused = Cli("postgresql://station:hunter2@127.0.0.1:1/plant?connect_timeout=2")("info")
    assert refused.exit_code == 3, refused.output
    assert "hunter2" not in refused.output and "station@127.0.0.1:1/plant" in refused.output


def test_a_named_store_must_be_a_database_url(tmp_path, monkeypatch):
    config = tmp_path / "config.toml"
    config.write_text('[stores.plant]\nurl = "plant.db"\n', encoding="utf-8")
    monkeypatch.setenv("ENOSPROV_CONFIG", str(config))
    result = Cli("plant")("info")
    assert result.exit_code == 1
    assert "stores.plant.url" in result.output and "postgresql://" in result.output


def test_the_cli_workflow_on_postgresql(fresh_database, tmp_path):
    """register, list, export, batches and log through the CLI on the PostgreSQL store."""
    url = fresh_database
    cli = Cli(url)
    assert cli("masterdata", "create", "--file", str(MASTERDATA)).exit_code == 0
    out = cli.json("group", "create", "--id", GROUP, "--name", "Meters", "--product-key", "pk",
                   "--masterdata", "meters", "--region", "eu2", "--org", "o1")  # fmt: skip
    assert out["data"]["groupId"] == GROUP
    csv_path = tmp_path / "d.csv"
    csv_path.write_text(meters_rows(120), encoding="utf-8")
    reg = cli.json("register", "--csv", str(csv_path), "--group", GROUP, "--batch-tag", "B-1")
    assert reg["data"]["created"] == 120
    assert cli.json("register", "--csv", str(csv_path), "--group", GROUP,
                    "--batch-tag", "B-1")["data"]["skipped"] == 120  # fmt: skip
    listed = cli.json("devices", "list", "--group", GROUP, "--limit", "1000")
    assert len(listed["data"]["items"]) == 120 and listed["data"]["pagination"]["total"] == 120
    batches = cli.json("batches", "list")
    assert [(b["batchTag"], b["counts"]["registered"]) for b in batches["data"]] == [("B-1", 120)]
    export = tmp_path / "export.csv"
    assert cli("devices", "export", "--group", GROUP, "--out", str(export)).exit_code == 0
    assert len(export.read_text(encoding="utf-8-sig").splitlines()) == 121
    log = cli.json("log")
    assert [e["operation"] for e in log["data"]][-1] == "register"


def test_a_nul_character_is_refused_where_it_is(cli, store, write_csv, store_location):
    """No store keeps a NUL (PostgreSQL text cannot): the row is invalid, named by row and
    column, on SQLite and PostgreSQL alike; a NUL that reaches the store another way is an
    input error, not a store failure."""
    from conftest import make_group

    make_group(store)
    text = meters_rows(2).replace("Hall 2", "Hall\x002")
    result = cli("register", "--csv", str(write_csv(text)), "--group", GROUP, "--json")
    assert result.exit_code == 1
    issues = json.loads(result.stdout)["error"]["issues"]
    assert [(i["row"], i["column"]) for i in issues] == [(3, "site")]
    assert "NUL" in issues[0]["message"]
    assert query_store(store_location, "SELECT count(*) FROM devices") == [(0,)]
    if isinstance(store_location, str):
        from enosprov.errors import InvalidArgumentError

        sn = api.register_csv(store, write_csv(meters_rows(1), name="ok.csv"), GROUP).created
        assert sn == 1
        dev = store.find_by_device_sn(GROUP, "SN-000001")
        with pytest.raises(InvalidArgumentError, match="NUL"):
            store.update(dev.sn, desc="bad\x00desc")


def test_a_station_role_with_the_documented_grants_works_and_cannot_rewrite_history(
    postgres, fresh_database, tmp_path
):
    """docs/plant-database.md, roles: once the administrator's first use created the tables, a
    station role with exactly the documented grants (no CREATE) registers, replaces and
    journals; it cannot change or delete a journal record."""
    import psycopg

    admin = fresh_database
    _set_up(admin)
    role = f"station_{os.getpid()}"
    db = admin.split("/")[3].split("?")[0]
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f"CREATE ROLE {role} LOGIN PASSWORD 'pw-{role}'")
        conn.execute("REVOKE CREATE ON SCHEMA public FROM PUBLIC")
        conn.execute(
            "GRANT SELECT, INSERT, UPDATE, DELETE ON meta, masterdata_groups, "
            f"registration_groups, devices, replacements, sync_groups, sync_links TO {role}"
        )
        conn.execute(f"GRANT SELECT, INSERT ON journal, journal_devices, journal_marks TO {role}")
    try:
        station = postgres.url(dbname=db, user=role).replace(f"{role}@", f"{role}:pw-{role}@")
        path = tmp_path / "d.csv"
        path.write_text(meters_rows(30), encoding="utf-8")
        with api.open_session(station, station="ST-1") as s:
            assert api.register_csv(s, path, GROUP).created == 30
            api.replace_device(s, "SN-000001", "SN-NEW-1", group=GROUP)
            assert {e.operation for e in s.journal.entries()} == {"register", "replace"}
        with psycopg.connect(station) as conn, pytest.raises(psycopg.Error):
            conn.execute("UPDATE journal SET outcome = 'ok'")
    finally:
        with psycopg.connect(postgres.url(dbname=db), autocommit=True) as conn:
            conn.execute(f"DROP OWNED BY {role}")
            conn.execute(f"DROP ROLE {role}")


def test_named_stores_survive_a_config_command_rewriting_the_file(tmp_path, monkeypatch):
    from enosprov import profiles

    config = tmp_path / "config.toml"
    url = "postgresql://station@db.plant.example/enosprov?sslmode=verify-full"
    config.write_text(f'[stores.plant]\nurl = "{url}"\n', encoding="utf-8")
    monkeypatch.setenv("ENOSPROV_CONFIG", str(config))
    profiles.create_profile("prod", api_url="https://apim.example", org_id="o1",
                            access_key="AK", secret=profiles.SecretRef.from_env("S"))  # fmt: skip
    again = profiles.load()
    assert again.stores == {"plant": url} and list(again.profiles) == ["prod"]
    for bad, message in (
        ('[stores."plant.eu"]\nurl = "postgresql://h/d"\n', "has no dot"),
        ('[stores.plant]\nurl = "postgresql://h/d"\nuser = "x"\n', "user"),
        ("[stores]\nplant = 3\n", "must be a table"),
        (
            '[profiles.p]\napi_url = "https://a"\norg_id = "o"\naccess_key = "k"\n'
            'secret = { env = "S" }\njournal = "nowhere"\n',
            "profiles.p.journal",
        ),
        # a config file is readable: no password in a URL of it
        ('[stores.plant]\nurl = "postgresql://st:Hunter2@db/enos"\n', "PGPASSWORD"),
        (
            '[profiles.p]\napi_url = "https://a"\norg_id = "o"\naccess_key = "k"\n'
            'secret = { env = "S" }\njournal = "postgresql://st:Hunter2@db/enos"\n',
            "pgpass",
        ),
        (
            '[profiles.p]\napi_url = "https://a"\norg_id = "o"\naccess_key = "k"\n'
            'secret = { env = "S" }\nproxy = "http://me:Hunter2@proxy:3128"\n',
            "HTTPS_PROXY",
        ),
    ):
        config.write_text(bad, encoding="utf-8")
        with pytest.raises(Exception) as refused:
            profiles.load()
        shown = f"{refused.value} {getattr(refused.value, 'hint', '')}"
        assert message in shown and "Hunter2" not in shown


def test_a_lost_connection_is_a_store_error_saying_where(fresh_database):
    """The server ends the store's connection (a restart, a cut): the next read and the next
    write are one clear StoreError (exit 3, retrying is safe), never a driver traceback."""
    import psycopg

    from enosprov.errors import StoreError

    store = PgStore(fresh_database)
    pid = store.conn.raw.info.backend_pid
    with psycopg.connect(fresh_database, autocommit=True) as admin:
        admin.execute("SELECT pg_terminate_backend(%s)", (pid,))
    with pytest.raises(StoreError) as lost:
        store.list_groups()
    assert lost.value.exit_code == 3 and "could not be reached" in lost.value.message
    with pytest.raises(StoreError):
        store.next_batch_order()
    store.close()
