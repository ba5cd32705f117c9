"""The audit journal in the plant database: ENOSPROV_JOURNAL=postgresql://... gives every
EnOS-backed station one journal, so `log` and `batches` show the same figures everywhere."""

from __future__ import annotations

import json
import threading

import pytest
from conftest import APP_KEY, APP_SECRET, ROOT, enos_backend, make_group, meters_rows

from enosprov.domain.errors import StoreError
from enosprov.journal import INDEXED_DEVICES, Actor
from enosprov.journal_pg import PgJournal
from enosprov.pg_sql import translate


@pytest.fixture
def plant_db(fresh_database):
    """A fresh database on the test server (conftest.fresh_database); its URL."""
    return fresh_database


def _journal(url: str, station: str = "ST-1") -> PgJournal:
    return PgJournal(url, Actor.current("enos", "plant", station, {}))


def test_translation_of_the_shared_statements():
    assert translate("SELECT 1 WHERE a = ? AND b IS ?") == (
        "SELECT 1 WHERE a = %s AND b IS NOT DISTINCT FROM %s"
    )
    assert "(detail::jsonb ->> 'intent')::bigint" in translate(
        "SELECT json_extract(detail, '$.intent') FROM journal"
    )
    assert "ON CONFLICT DO NOTHING" in translate(
        "INSERT OR IGNORE INTO journal_marks (mark, sn) VALUES (?, ?)"
    )


def test_records_marks_intents_as_the_file_journal(plant_db):
    j = _journal(plant_db)
    first = j.record("register", devices=[("s1", "D-1"), ("s2", "D-2")], group_id="g",
                     detail={"batchTag": "B-1"})  # fmt: skip
    big = [(f"s{i}", f"D-{i}") for i in range(INDEXED_DEVICES + 5)]
    j.record("delete", devices=big, group_id="g")  # stored compressed, still found by device
    with j.begin("burn-export", group_id="g") as rec:
        rec.add("s1", "D-1")
        rec.mark("exported", "s1", "D-1", "B-1")
    j.record("burn-export", devices=[("s1", "D-1")], group_id="g")
    with j.begin("label-export", group_id="g", detail={"printer": "tcp://p"}) as rec:
        rec.add("s2", "D-2")
        rec.mark("labelled", "s2", "D-2", "B-1")
    entries = list(j.entries())
    assert [e.operation for e in entries] == [
        "register", "delete", "burn-export", "burn-export", "label-export"
    ]  # fmt: skip
    assert entries[0].id == first and entries[1].device_count == len(big)
    assert [e.operation for e in j.entries(device="D-2")] == ["register", "delete", "label-export"]
    assert [e.operation for e in j.entries(device=f"D-{INDEXED_DEVICES}")] == ["delete"]
    assert {(m[2], m[3]) for m in j.batch_marks("g", "B-1")} == {("exported", 1), ("labelled", 1)}
    assert j.printed("s2") and not j.printed("s1")
    # an intent stays open until a later record names it
    intent = j.record("register", outcome="pending", devices=[("", "D-9")], group_id="g")
    assert [e.id for e in j.open_intents("g")] == [intent]
    j.record("register", devices=[("s9", "D-9")], group_id="g", detail={"intent": intent})
    assert j.open_intents("g") == [] and "s9" in j.recorded_sns("g", 0)
    j.close()


def test_the_journal_is_append_only(plant_db):
    import psycopg

    j = _journal(plant_db)
    j.record("register", devices=[("s1", "D-1")], group_id="g")
    for sql in ("UPDATE journal SET outcome = 'failed'", "DELETE FROM journal_devices"):
        with pytest.raises(psycopg.Error, match="append-only"):
            j._connect(create=True).raw.execute(sql)
    assert [e.outcome for e in j.entries()] == ["ok"]
    j.close()


def test_a_station_role_without_create_writes_once_the_schema_exists(postgres, plant_db):
    """docs/plant-database.md roles: the administrator's first use creates the schema; a
    station role with only INSERT/SELECT on the journal tables (no CREATE, no UPDATE/DELETE)
    then writes and reads."""
    import psycopg

    _journal(plant_db).record("register", group_id="g")  # the admin's first use
    role = f"st_{id(object()) % 100000}"
    db = plant_db.split("/")[3].split("?")[0]
    with psycopg.connect(plant_db, autocommit=True) as conn:
        conn.execute(f"CREATE ROLE {role} LOGIN PASSWORD 'pw-{role}'")
        conn.execute("REVOKE CREATE ON SCHEMA public FROM PUBLIC")
        conn.execute(f"GRANT SELECT, INSERT ON journal, journal_devices, journal_marks TO {role}")
    station = postgres.url(dbname=db, user=role).replace(f"{role}@", f"{role}:pw-{role}@")
    j = _journal(station, "ST-9")
    j.record("register", devices=[("s1", "D-1")], group_id="g")
    assert [e.station for e in j.entries()] == ["ST-1", "ST-9"]
    j.close()


def test_concurrent_stations_lose_no_record(plant_db):
    """8 stations (own connections) append 50 records each at once: 400 records, no id twice."""
    errors: list[BaseException] = []

    def station(n: int) -> None:
        try:
            j = _journal(plant_db, f"ST-{n}")
            for i in range(50):
                j.record("register", devices=[(f"s{n}-{i}", f"D{n}-{i}")], group_id="g")
            j.close()
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=station, args=(n,)) for n in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    entries = list(_journal(plant_db).entries())
    assert len(entries) == 400 and len({e.id for e in entries}) == 400
    assert {e.station for e in entries} == {f"ST-{n}" for n in range(8)}


def test_an_unreachable_plant_database_is_one_clear_error(tmp_path):
    j = _journal(f"postgresql://station:pw123@/plant?host={tmp_path}&port=1")
    with pytest.raises(Exception) as info:
        j.record("register", group_id="g")
    assert "pw123" not in str(info.value)
    assert isinstance(info.value, (StoreError,)) or info.value.exit_code == 3


@pytest.mark.parametrize("given_by", ["ENOSPROV_JOURNAL", "profile"])
def test_two_stations_on_enos_share_one_journal(
    emulator, store_path, tmp_path, write_csv, monkeypatch, plant_db, given_by
):
    """Two PCs (own data folders) with one EnOS profile and the journal on the plant
    database (ENOSPROV_JOURNAL, or the profile's ``journal`` naming a [stores] entry): what one
    station did, `log` and `batches show` show on the other."""
    from typer.testing import CliRunner

    from enosprov import profiles
    from enosprov.cli import app
    from enosprov.profiles import SecretRef

    be = enos_backend(emulator, store_path)
    try:
        group = make_group(be)
        monkeypatch.setenv("ENOSPROV_CONFIG", str(tmp_path / "cfg.toml"))
        monkeypatch.setenv("ENOS_APP_SECRET", APP_SECRET)
        monkeypatch.setenv("METERS_SECRET", group.group_secret)
        profiles.create_profile("emu", api_url=emulator.url, org_id="o1", access_key=APP_KEY,
                                secret=SecretRef.from_env("ENOS_APP_SECRET"),
                                dps_url=emulator.url)  # fmt: skip
        if given_by == "ENOSPROV_JOURNAL":
            monkeypatch.setenv("ENOSPROV_JOURNAL", plant_db)
        else:  # journal = "plant", and [stores.plant] url = ...
            import dataclasses

            config = profiles.load()
            config.stores["plant"] = plant_db
            config.profiles["emu"] = dataclasses.replace(config.profiles["emu"], journal="plant")
            profiles.save(config)
            described = profiles.describe("emu")
            assert described["journal"] == plant_db  # no password in it to hide
        runner = CliRunner()
        assert runner.invoke(app, ["config", "add-group", "emu", "meters-eu", "--secret-env",
                                   "METERS_SECRET", "--masterdata",
                                   str(ROOT / "examples" / "masterdata.toml")]).exit_code == 0  # fmt: skip

        def on(station: str, *args: str):
            env = {"ENOSPROV_STATION": station, "XDG_DATA_HOME": str(tmp_path / station)}
            result = runner.invoke(app, ["--profile", "emu", *args], env=env,
                                   catch_exceptions=False)  # fmt: skip
            assert result.exit_code == 0, result.stdout + result.stderr
            return result

        on("PC-A", "register", "--csv", str(write_csv(meters_rows(4, prefix="P"))), "--group",
           "meters-eu", "--batch-tag", "B-7")  # fmt: skip
        on("PC-A", "burn", "export", "--group", "meters-eu", "--batch-tag", "B-7", "--out",
           str(tmp_path / "burn"))  # fmt: skip
        on("PC-B", "qr", "batch", "--group", "meters-eu", "--batch-tag", "B-7", "--out",
           str(tmp_path / "labels"))  # fmt: skip
        logs = [json.loads(on(pc, "log", "--json").stdout)["data"] for pc in ("PC-A", "PC-B")]
        assert logs[0] == logs[1]
        assert [(e["operation"], e["station"]) for e in logs[0]] == [
            ("register", "PC-A"), ("burn-export", "PC-A"), ("label-export", "PC-B")
        ]  # fmt: skip
        shows = [json.loads(on(pc, "batches", "show", "B-7", "--group", "meters-eu", "--json")
                            .stdout)["data"] for pc in ("PC-A", "PC-B")]  # fmt: skip
        for show in shows:
            counts = show["counts"]
            assert (counts["exported"], counts["labelled"]) == (4, 4), counts
        assert not (tmp_path / "PC-A" / "enosprov" / "journal.db").exists()
    finally:
        be.close()


def _unreachable_profile(tmp_path, monkeypatch) -> None:
    """Profile "emu" of an EnOS that is not there (the journal is what these tests look at)."""
    from enosprov import profiles
    from enosprov.profiles import SecretRef

    monkeypatch.setenv("ENOSPROV_CONFIG", str(tmp_path / "cfg.toml"))
    monkeypatch.setenv("ENOS_APP_SECRET", APP_SECRET)
    profiles.create_profile("emu", api_url="http://127.0.0.1:9", org_id="o1",
                            access_key=APP_KEY, secret=SecretRef.from_env("ENOS_APP_SECRET"),
                            dps_url="http://127.0.0.1:9")  # fmt: skip


def test_the_journal_password_never_shows(tmp_path, monkeypatch):
    """An EnOS station whose plant database is down: one error line, the password hidden."""
    from typer.testing import CliRunner

    from enosprov.cli import app

    _unreachable_profile(tmp_path, monkeypatch)
    url = f"postgresql://station:Hunter2-secret@/plant?host={tmp_path}&port=1"
    monkeypatch.setenv("ENOSPROV_JOURNAL", url)
    result = CliRunner().invoke(app, ["--profile", "emu", "log"])
    assert result.exit_code == 3, result.stdout + result.stderr
    assert "Hunter2" not in result.stdout + result.stderr
    assert "station@" in result.stderr and "could not be reached" in result.stderr


def test_info_says_where_the_journal_is_without_its_password(tmp_path, monkeypatch):
    from typer.testing import CliRunner

    from enosprov.cli import app

    _unreachable_profile(tmp_path, monkeypatch)
    monkeypatch.setenv("ENOSPROV_JOURNAL", "postgresql://station:Hunter2@db.plant/enosprov")
    result = CliRunner().invoke(app, ["--profile", "emu", "info", "--json"])
    assert result.exit_code == 0
    journal = json.loads(result.stdout)["data"]["journal"]
    assert journal.startswith("postgresql://station:***@db.plant/enosprov")
    assert "Hunter2" not in result.stdout
