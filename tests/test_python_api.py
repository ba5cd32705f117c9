"""The Python API for integrators (docs/python-api.md): sessions open the backend and the journal
the CLI uses, operations on a session are journaled there, and the example script
(examples/python_api.py) runs as written against the local store and through an EnOS profile
against the emulator, leaving its devices, files, report and journal records."""

from __future__ import annotations

import csv
import importlib.util
import json
import re
from pathlib import Path

import pytest
from conftest import APP_KEY, APP_SECRET, EXAMPLES, ROOT, enos_backend, make_group
from typer.testing import CliRunner

from enosprov import api
from enosprov.errors import InvalidArgumentError

CHANGES = ("register", "burn-export", "label-export", "allocate", "reprovision", "replace")


def _example():
    spec = importlib.util.spec_from_file_location("python_api_example", EXAMPLES / "python_api.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _cli(*args: str) -> list[dict]:
    """`enosprov ARGS log --jsonl`: what the CLI reads from the journal of that backend."""
    from enosprov.cli import app

    result = CliRunner().invoke(app, [*args, "log", "--jsonl"], catch_exceptions=False)
    assert result.exit_code == 0, (result.stdout, result.stderr)
    return [json.loads(line) for line in result.stdout.splitlines() if line]


def _check_run(ex, results: dict, out: Path, session: api.Session, backend: str) -> None:
    """Devices registered, moved and replaced; files and report written; journal records."""
    group, batch = ex.GROUP, ex.BATCH
    assert results["register"].created == 5 and results["register"].complete
    page = api.list_devices(session, api.SearchQuery(group_id=group, batch_tag=batch))
    assert sorted(d.device_sn for d in page.items) == sorted(
        [r["deviceSn"] for r in ex.RECORDS if r["deviceSn"] != ex.FAULTY] + [ex.SPARE]
    )
    # burn export: one file per device and the manifest; the spare's file in the replace run
    burn = results["burn"]
    assert (burn.devices, burn.written) == (5, 5)
    files = sorted(p.name for p in (out / "burn").glob("MTR-API-*.json"))
    assert files == [f"{r['deviceSn']}.json" for r in ex.RECORDS]
    assert json.loads((out / "burn" / "MTR-API-000002.json").read_text())["deviceSn"] == (
        "MTR-API-000002"
    )
    assert (out / "burn" / "manifest.csv").is_file()
    assert (out / "replacements" / f"{ex.SPARE}.json").is_file()
    # labels: one PDF sheet of the batch, and the spare's own label
    labels = results["labels"]
    assert labels.devices == 5 and labels.document.endswith("labels-B-API-1.pdf")
    assert Path(labels.document).read_bytes().startswith(b"%PDF")
    assert (out / "replacements" / "labels" / f"{ex.SPARE}.pdf").read_bytes()[:4] == b"%PDF"
    # reprovisioned: reset, its target set to cn5 / o2 (it moves there when it bootstraps)
    moved = api.find_device(session, ex.ACTIVATED, group)
    assert results["reprovision"].targeted == [moved.sn]
    assert (moved.device_data["regionId"], moved.device_data["orgId"]) == ("cn5", "o2")
    assert not moved.allocated and moved.reprovisioning
    # replaced: the spare carries the faulty unit's master data and batch
    (swap,) = results["replace"].replaced
    assert (swap.old_device_sn, swap.new_device_sn) == (ex.FAULTY, ex.SPARE)
    spare = api.find_device(session, ex.SPARE, group)
    assert spare.batch_tag_text == batch and spare.device_data["max_capacity"] == 100
    # batch summary and report
    counts = results["batch"].counts
    assert (counts["registered"], counts["replaced"], counts["reprovisioned"]) == (5, 1, 1)
    assert counts["exported"] >= 5 and counts["labelled"] >= 5
    html = (out / "report.html").read_text(encoding="utf-8")
    assert html.startswith("<!DOCTYPE html>") and "B-API-1" in html
    label = "local store" if backend == "local" else "EnOS profile emu"
    assert label in html
    with (out / "report.csv").open(encoding="utf-8-sig") as f:
        rows = list(csv.DictReader(f))
    assert results["report"].csv_rows == len(rows) == 6  # 5 in DPS and the unit replaced
    assert {r["deviceSn"] for r in rows} >= {ex.FAULTY, ex.SPARE}
    # the journal: a record of each operation, stamped with the station and the backend
    entries = results["journal"]
    ops = [e.operation for e in entries]
    assert set(CHANGES) <= set(ops), ops
    assert {(e.station, e.backend, e.outcome) for e in entries} == {(ex.STATION, backend, "ok")}
    (register,) = [e for e in entries if e.operation == "register"]
    assert sorted(dsn for _sn, dsn in register.devices) == [r["deviceSn"] for r in ex.RECORDS]
    (reprov,) = [e for e in entries if e.operation == "reprovision"]
    assert reprov.devices == [(moved.sn, ex.ACTIVATED)]
    (replaced,) = [e for e in entries if e.operation == "replace"]
    assert {dsn for _sn, dsn in replaced.devices} == {ex.FAULTY, ex.SPARE}


def test_the_example_runs_on_the_local_store(tmp_path, capsys):
    ex = _example()
    store, out = tmp_path / "api.db", tmp_path / "out"
    results = ex.main(store, out)
    assert "report:" in capsys.readouterr().out
    with api.open_session(store) as session:
        _check_run(ex, results, out, session, "local")
    ops = [e.operation for e in results["journal"]]
    assert ops[:3] == ["masterdata-create", "group-create", "register"]
    # the same journal the CLI reads: the store file itself
    logged = [e["operation"] for e in _cli("--store", str(store)) if e["station"] == ex.STATION]
    assert logged == ops


@pytest.fixture
def emu_profile(emulator, store_path, tmp_path, monkeypatch):
    """Profile `emu` against the emulator; the groups made "in the console" (the emulator's
    store) and named in the profile, as a user does."""
    from enosprov.cli import app

    seed = enos_backend(emulator, store_path)
    make_group(seed)  # meters-eu: target eu2 / o1, master data `meters`
    monkeypatch.setenv("ENOSPROV_CONFIG", str(tmp_path / "config.toml"))
    monkeypatch.setenv("ENOSPROV_JOURNAL", str(tmp_path / "journal.db"))
    monkeypatch.setenv("EMU_SECRET", APP_SECRET)
    monkeypatch.setenv("METERS_SECRET", seed.get_group("meters-eu").group_secret)
    runner = CliRunner()
    for args in (
        ["config", "create", "emu", "--api-url", emulator.url, "--org", "o1", "--access-key",
         APP_KEY, "--secret-env", "EMU_SECRET", "--dps-url", emulator.url],
        ["config", "add-group", "emu", "meters-eu", "--secret-env", "METERS_SECRET",
         "--masterdata", str(EXAMPLES / "masterdata.toml")],
    ):  # fmt: skip
        result = runner.invoke(app, args, catch_exceptions=False)
        assert result.exit_code == 0, (args, result.stdout, result.stderr)
    yield seed
    seed.close()


def test_the_example_runs_through_a_profile_against_the_emulator(emu_profile, tmp_path):
    ex = _example()
    out = tmp_path / "out"
    results = ex.main(None, out, profile="emu")
    with api.open_session(profile="emu") as session:
        assert session.settings.backend == "enos"
        assert session.journal.path == tmp_path / "journal.db"  # $ENOSPROV_JOURNAL, as the CLI
        _check_run(ex, results, out, session, "enos")
    assert {e.profile for e in results["journal"]} == {"emu"}
    # nothing registered in the emulator behind the API's back: EnOS holds the devices
    assert emu_profile.store.find_by_device_sn("meters-eu", ex.SPARE) is not None
    logged = [e["operation"] for e in _cli("--profile", "emu")]
    assert logged == [e.operation for e in results["journal"]]


def test_a_session_is_the_backend_and_journal_the_cli_opens(store_path, tmp_path, monkeypatch):
    monkeypatch.setenv("ENOSPROV_STATION", "line-9")
    with api.open_session(store_path) as session:
        assert isinstance(session.backend, api.LocalBackend)
        assert session.journal.path == store_path and session.label == "local store"
        make_group(session.backend)
        api.register_records(
            session, [{"deviceSn": "SN-1", "max_capacity": 1, "phase": "single"}], "meters-eu"
        )
        (entry,) = api.journal_entries(session, operations=["register"])
        assert (entry.station, entry.devices[0][1]) == ("line-9", "SN-1")
    # closed: the backend's connection and the journal's
    assert session.journal._conn is None
    # station given: over $ENOSPROV_STATION; since as text
    with api.open_session(store_path, station="line-3") as session:
        api.register_records(
            session, [{"deviceSn": "SN-2", "max_capacity": 1, "phase": "single"}], "meters-eu"
        )
        assert [e.station for e in api.journal_entries(session, since="1h")] == ["line-9", "line-3"]
    # ENOSPROV_STORE resolves like the CLI's: the default session opens that store
    monkeypatch.setenv("ENOSPROV_STORE", str(store_path))
    with api.open_session() as session:
        assert session.journal.path == store_path
        assert len(api.journal_entries(session, operations=["register"])) == 2
    with pytest.raises(InvalidArgumentError):
        api.open_session(store_path, profile="emu")
    with pytest.raises(InvalidArgumentError):
        api.open_session(store_path, settings=api.Settings.local(store_path))


def test_a_bare_backend_is_journaled_only_when_given_a_journal(store_path):
    with api.open_session(store_path) as session:
        backend = session.backend
        make_group(backend)
        rows = [{"deviceSn": "SN-1", "max_capacity": 1, "phase": "single"}]
        api.register_records(backend, rows, "meters-eu")  # a bare backend: not journaled
        assert api.journal_entries(session, operations=["register"]) == []
        rows = [{"deviceSn": "SN-2", "max_capacity": 1, "phase": "single"}]
        api.register_records(backend, rows, "meters-eu", journal=session.journal)
        assert len(api.journal_entries(session.journal, operations=["register"])) == 1


def test_the_doc_shows_the_example_as_it_is():
    doc = (ROOT / "docs" / "python-api.md").read_text(encoding="utf-8")
    script = (EXAMPLES / "python_api.py").read_text(encoding="utf-8")
    blocks = re.findall(r"```python\n(.*?)```", doc, flags=re.S)
    assert script in blocks
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    assert "docs/python-api.md" in readme


def test_every_public_name_is_there_and_typed():
    import inspect

    for name in api.__all__:
        obj = getattr(api, name)
        if inspect.isfunction(obj) and obj.__module__ == "enosprov.api":
            sig = inspect.signature(obj)
            assert sig.return_annotation is not inspect.Signature.empty, name
            for p in sig.parameters.values():
                assert p.annotation is not inspect.Parameter.empty, (name, p.name)
