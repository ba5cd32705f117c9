"""A complete audit trail after any crash (issue 12): every committed change has its journal
record, whatever happens afterwards.

- Local store: each chunk's "register" record commits in the chunk's own transaction, so after a
  kill -9 at any moment the records add up exactly to the devices in the store, without a re-run.
- EnOS: a run that fails midway still counts, journals and writes the results of the rows it got
  to; creates in flight at a kill are settled by the next run from an intent record.
- A CSV without data rows changes nothing.
"""

from __future__ import annotations

import json
import os
import random
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import APP_KEY, APP_SECRET, enos_backend, make_group, meters_rows, query_store

from enosprov import api
from enosprov.backends.enos import EnosBackend
from enosprov.backends.enos_config import EnosConfig
from enosprov.errors import BackendUnavailableError
from enosprov.journal import Actor, Journal


def journal_total(path: Path, group_id: str = "meters-eu") -> int:
    """Devices the "register" records say were created (intents excluded)."""
    with sqlite3.connect(path) as conn:
        if not conn.execute("SELECT 1 FROM sqlite_master WHERE name = 'journal'").fetchone():
            return 0  # killed before its first record
        (total,) = conn.execute(
            "SELECT coalesce(sum(devices), 0) FROM journal WHERE operation = 'register' "
            "AND outcome <> 'pending' AND group_id = ?",
            (group_id,),
        ).fetchone()
    return total


def store_count(path: Path | str, group_id: str = "meters-eu") -> int:
    ((n,),) = query_store(path, "SELECT count(*) FROM devices WHERE group_id = ?", (group_id,))
    return n


def test_kill_during_registration_leaves_journal_equal_to_store(store_path, tmp_path, write_csv):
    """kill -9 at random moments of registrations (1,000-row chunks): after every kill, the
    journal's created devices equal the store's, before any re-run."""
    from enosprov.backends.local import LocalBackend

    with LocalBackend(store_path) as be:
        make_group(be)
    rng = random.Random(12)
    files, kills = [], 0
    for i in range(4):
        csv_path = write_csv(meters_rows(30_000, start=i * 30_000 + 1), name=f"d{i}.csv")
        files.append(csv_path)
        cmd = [sys.executable, "-m", "enosprov", "--store", str(store_path), "register",
               "--csv", str(csv_path), "--group", "meters-eu", "--chunk-size", "1000"]  # fmt: skip
        proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        time.sleep(rng.uniform(0.35, 0.8))
        if proc.poll() is None:
            proc.send_signal(signal.SIGKILL)
            kills += 1
        proc.wait()
        assert journal_total(store_path) == store_count(store_path)
    for csv_path in files:
        subprocess.run([sys.executable, "-m", "enosprov", "--store", str(store_path), "register",
                        "--csv", str(csv_path), "--group", "meters-eu"],
                       check=True, stdout=subprocess.DEVNULL)  # fmt: skip
    assert store_count(store_path) == 120_000 == journal_total(store_path)
    assert kills >= 2  # the test really killed registrations midway


def test_a_csv_without_data_rows_changes_nothing(store, write_csv, cli, store_path):
    make_group(store)
    before = store.conn.execute("SELECT value FROM meta WHERE key='batch_order'").fetchone()
    result = cli("register", "--csv", str(write_csv(meters_rows(0))), "--group", "meters-eu",
                 "--json")  # fmt: skip
    assert result.exit_code == 0, result.stderr
    assert json.loads(result.stdout)["data"]["rows"] == 0
    after = store.conn.execute("SELECT value FROM meta WHERE key='batch_order'").fetchone()
    assert after == before
    journal = Journal(store_path, Actor.current("local"))
    assert list(journal.entries(operations=["register"])) == []


def _client(url: str, **kw) -> EnosBackend:
    cfg = EnosConfig(api_url=url, org_id="o1", app_key=APP_KEY, app_secret=APP_SECRET,
                     dps_url=url, **kw)  # fmt: skip
    return EnosBackend(cfg)


class _Groups:
    """The EnOS client with the groups of the emulator's store (the console's side)."""

    def __init__(self, enos, store):
        self._enos, self._store = enos, store

    def __getattr__(self, name):
        return getattr(self._enos, name)

    def get_group(self, group):
        return self._store.get_group(group)

    def get_masterdata_group(self, mdg):
        return self._store.get_masterdata_group(mdg)


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_an_enos_run_that_fails_midway_keeps_its_counts_results_and_journal(
    emulator, store_path, tmp_path, write_csv, seed
):
    """EnOS answers the first chunk, then 85 % of calls fail: the run stops with its counts,
    the results of the rows it got to, and a journal that adds up to what EnOS holds."""
    from enosprov.emulator.app import Faults, create_app

    store = enos_backend(emulator, store_path)
    make_group(store)
    faulty = create_app(store_path, app_key=APP_KEY, app_secret=APP_SECRET,
                        faults=Faults(fail_rate=0.85, seed=seed))  # fmt: skip

    def progress(phase, done, total):
        if phase == "register":
            emulator.holder["app"] = faulty  # from the second chunk on

    journal = Journal(tmp_path / "journal.db", Actor.current("enos"))
    results = tmp_path / "results.csv"
    rows = write_csv(meters_rows(600))
    with (
        _client(emulator.url, retries=1, workers=8) as enos,
        pytest.raises(BackendUnavailableError) as exc,
    ):
        api.register_csv(_Groups(enos, store), rows, "meters-eu", chunk_size=100,
                         results=results, journal=journal, progress=progress)  # fmt: skip
    message = exc.value.message
    assert "the run stopped after" in message and "created" in message, message
    assert exc.value.exit_code == 3
    in_enos = store_count(store_path)
    assert in_enos >= 100
    assert journal_total(tmp_path / "journal.db") == in_enos  # every created device journaled
    rows = results.read_text(encoding="utf-8").splitlines()[1:]  # the rows it got to
    assert len(rows) >= 100 and sum(",created," in r for r in rows) <= in_enos
    store.close()


def test_creates_in_flight_at_a_kill_are_settled_by_the_next_run(
    emulator, store_path, tmp_path, write_csv
):
    """An intent left by a killed run is settled: its devices that EnOS holds are journaled."""
    seed = enos_backend(emulator, store_path)
    make_group(seed)
    journal = Journal(tmp_path / "journal.db", Actor.current("enos"))
    # what a run killed mid-chunk leaves: an intent, and some of its devices created in EnOS
    intent = journal.record_with(None, "register", outcome="pending", group_id="meters-eu",
                                 devices=[("", f"SN-{i:06d}") for i in range(1, 6)],
                                 detail={"run": "killed", "part": 1})  # fmt: skip
    api.register_csv(seed, write_csv(meters_rows(3)), "meters-eu")  # 3 of the 5 reached EnOS
    with _client(emulator.url) as enos:
        report = api.register_csv(_Groups(enos, seed), write_csv(meters_rows(5), name="b.csv"),
                                  "meters-eu", journal=journal)  # fmt: skip
    assert (report.created, report.skipped) == (2, 3)
    [settle] = [e for e in journal.entries(operations=["register"])
                if e.detail.get("settles") == intent]  # fmt: skip
    assert sorted(dsn for _, dsn in settle.devices) == ["SN-000001", "SN-000002", "SN-000003"]
    assert journal_total(tmp_path / "journal.db") == store_count(store_path) == 5
    assert journal.open_intents("meters-eu") == []
    seed.close()


@pytest.mark.skipif(os.name != "posix", reason="kill -9")
def test_kill_of_an_enos_run_is_settled_without_double_counting(
    emulator, store_path, tmp_path, write_csv, monkeypatch
):
    """A CLI run through a profile, killed while creates are in flight, then run again."""
    from enosprov.emulator.app import Faults, create_app

    seed = enos_backend(emulator, store_path)
    make_group(seed)
    emulator.holder["app"] = create_app(store_path, app_key=APP_KEY, app_secret=APP_SECRET,
                                        faults=Faults(latency_ms=15))  # fmt: skip
    env = {**os.environ, "ENOSPROV_CONFIG": str(tmp_path / "config.toml"),
           "ENOSPROV_JOURNAL": str(tmp_path / "journal.db"), "EMU_SECRET": APP_SECRET,
           "G_SECRET": seed.get_group("meters-eu").group_secret}  # fmt: skip
    md = tmp_path / "meters.toml"
    md.write_text(
        'id = "meters"\nname = "m"\n[[attributes]]\nidentifier = "max_capacity"\n'
        'type = "Integer"\nrequired = true\n[[attributes]]\nidentifier = "phase"\n'
        'type = "Enum"\nvalues = ["single", "three"]\nrequired = true\n'
        '[[attributes]]\nidentifier = "install_date"\ntype = "Date"\n'
        '[[attributes]]\nidentifier = "site"\ntype = "String"\n',
        encoding="utf-8",
    )
    run = [sys.executable, "-m", "enosprov"]
    subprocess.run([*run, "config", "create", "emu", "--api-url", emulator.url, "--org", "o1",
                    "--access-key", APP_KEY, "--secret-env", "EMU_SECRET", "--dps-url",
                    emulator.url], env=env, check=True,
                   stdout=subprocess.DEVNULL)  # fmt: skip
    subprocess.run([*run, "config", "add-group", "emu", "meters-eu", "--secret-env", "G_SECRET",
                    "--masterdata", str(md)], env=env, check=True,
                   stdout=subprocess.DEVNULL)  # fmt: skip
    csv_path = write_csv(meters_rows(1500))
    cmd = [*run, "--profile", "emu", "register", "--csv", str(csv_path), "--group", "meters-eu",
           "--chunk-size", "500"]  # fmt: skip
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    time.sleep(2.0)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    subprocess.run(cmd, env=env, check=True, stdout=subprocess.DEVNULL)
    assert store_count(store_path) == 1500
    assert journal_total(tmp_path / "journal.db") == 1500  # settled, never counted twice
    seed.close()


def test_a_run_stopped_before_its_creates_is_not_counted_twice(
    emulator, store_path, tmp_path, write_csv
):
    """Register 3 through EnOS; the next run finds EnOS unreachable at its look-up (its intent
    stays open); the run after settles that intent without counting the 3 again."""
    from enosprov.emulator.app import Faults, create_app

    seed = enos_backend(emulator, store_path)
    make_group(seed)
    journal = Journal(tmp_path / "journal.db", Actor.current("enos"))
    rows = write_csv(meters_rows(3))
    healthy = emulator.holder["app"]
    with _client(emulator.url, retries=0) as enos:
        api.register_csv(_Groups(enos, seed), rows, "meters-eu", journal=journal)
        emulator.holder["app"] = create_app(store_path, app_key=APP_KEY, app_secret=APP_SECRET,
                                            faults=Faults(fail_rate=1.0, seed=1))  # fmt: skip
        with pytest.raises(BackendUnavailableError):
            api.register_csv(_Groups(enos, seed), rows, "meters-eu", journal=journal)
        emulator.holder["app"] = healthy
        api.register_csv(_Groups(enos, seed), rows, "meters-eu", journal=journal)
    assert journal_total(tmp_path / "journal.db") == store_count(store_path) == 3
    assert journal.open_intents("meters-eu") == []
    seed.close()


@pytest.mark.parametrize("results", ["folder", "parent-is-a-file"])
def test_a_results_file_that_cannot_be_written_changes_nothing(
    store, cli, store_location, tmp_path, write_csv, results
):
    make_group(store)
    target = tmp_path / "out"
    target.mkdir()
    if results == "parent-is-a-file":
        (tmp_path / "f").write_text("x")
        target = tmp_path / "f" / "results.csv"
    order = store.conn.execute("SELECT value FROM meta WHERE key='batch_order'").fetchone()
    result = cli("register", "--csv", str(write_csv(meters_rows(3))), "--group", "meters-eu",
                 "--results", str(target))  # fmt: skip
    assert result.exit_code == 1 and "internal error" not in result.stderr, result.stderr
    assert store_count(store_location) == 0
    assert store.conn.execute("SELECT value FROM meta WHERE key='batch_order'").fetchone() == order


def test_an_encoding_that_cannot_start_is_one_clear_error(store, cli, write_csv):
    make_group(store)
    path = write_csv("deviceSn,max_capacity,phase\nSN-000001,1,single\n")
    result = cli("register", "--csv", str(path), "--group", "meters-eu", "--encoding", "utf-16")
    assert result.exit_code == 1 and "not valid utf-16" in result.stderr, result.stderr


def test_a_create_whose_answer_was_lost_is_recorded_by_the_next_run(
    emulator, store_path, tmp_path, write_csv, monkeypatch
):
    """A row reported failed may have been created (its answer lost, the look-up failing
    too): its chunk leaves the intent open, and the next run records what EnOS holds."""
    seed = enos_backend(emulator, store_path)
    make_group(seed)
    journal = Journal(tmp_path / "journal.db", Actor.current("enos"))
    rows = write_csv(meters_rows(4))
    real = EnosBackend._register_one

    def lost_answer(self, group_id, rec):
        outcome = real(self, group_id, rec)  # created in EnOS ...
        if rec.device_sn == "SN-000002":
            raise BackendUnavailableError("the answer was lost")  # ... but not known here
        return outcome

    with _client(emulator.url, retries=0) as enos:
        monkeypatch.setattr(EnosBackend, "_register_one", lost_answer)
        with pytest.raises(BackendUnavailableError):
            api.register_csv(_Groups(enos, seed), rows, "meters-eu", journal=journal)
        monkeypatch.setattr(EnosBackend, "_register_one", real)
        assert journal_total(tmp_path / "journal.db") == 3 and store_count(store_path) == 4
        api.register_csv(_Groups(enos, seed), rows, "meters-eu", journal=journal)
    assert journal_total(tmp_path / "journal.db") == store_count(store_path) == 4
    seed.close()
