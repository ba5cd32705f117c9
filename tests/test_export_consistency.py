"""Self-consistent export folders (`burn export`, `qr batch`), whatever happens to a run.

- kill -9 at random moments of a re-export into a folder holding a previous export: at no
  moment does a manifest claim a SHA-256 its file does not have; a re-run completes, removes
  the temporary files killed runs left, and skips the files already correct.
- kill -9 of `qr batch --label-format pdf` while its worker pool runs: no worker is alive 5 s later,
  and a caller reading the run's stdout through a pipe gets end of file at once.
- A file name (or path) too long for the file system is refused before anything is written.
- Stale temporary files are recognised by enosprov's own pattern only; CSV manifests are
  spreadsheet-safe unless --raw-csv.
"""

from __future__ import annotations

import csv
import hashlib
import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import METERS_HEADER, make_group, meters_rows, open_store

from enosprov import api
from enosprov.atomic import is_temp_name
from enosprov.burn.export import Selection, export_burn_files
from enosprov.errors import InvalidArgumentError
from enosprov.qr.batch import qr_batch
from enosprov.qr.render import QrOptions

LINUX = sys.platform.startswith("linux")
N_BURN = 2000
N_QR = 1500  # three chunks of 500: the worker pool starts


# `python -m enosprov` with the workers' portable parent watch instead of PR_SET_PDEATHSIG
WITHOUT_PDEATHSIG = (
    "import sys, enosprov.qr.sheet as s; s._set_pdeathsig = lambda: False; "
    "from enosprov.cli import main; sys.argv[0] = 'enosprov'; main()"
)


def _enosprov(store: Path, *args: str, pdeathsig: bool = True) -> subprocess.Popen:
    """`python -m enosprov ...` in its own session (its workers share the session id)."""
    run = ["-m", "enosprov"] if pdeathsig else ["-c", WITHOUT_PDEATHSIG]
    cmd = [sys.executable, *run, "--store", str(store), *args]
    return subprocess.Popen(
        cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True
    )


def _sha(path: Path) -> str | None:
    try:
        return hashlib.sha256(path.read_bytes()).hexdigest()
    except OSError:
        return None


def _manifest_claims(out: Path) -> tuple[int, int]:
    """(SHA-256 values the manifest files claim, how many of them their file does not have)."""
    rows = []
    try:
        rows += json.loads((out / "manifest.json").read_text(encoding="utf-8"))
    except FileNotFoundError:
        pass
    try:
        with open(out / "manifest.csv", encoding="utf-8-sig", newline="") as fh:
            rows += list(csv.DictReader(fh))
    except FileNotFoundError:
        pass
    wrong = sum(1 for r in rows if _sha(out / r["file"]) != r["sha256"])
    return len(rows), wrong


def _temps(folder: Path) -> list[str]:
    return [p.name for p in folder.iterdir() if is_temp_name(p.name)] if folder.exists() else []


def _session(sid: int) -> dict[int, str]:
    """pid -> state of every process of session ``sid`` (Linux /proc)."""
    out = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", "rb") as fh:
                stat = fh.read()
        except OSError:
            continue
        fields = stat[stat.rindex(b")") + 2 :].split()
        if int(fields[3]) == sid:
            out[int(entry)] = fields[0].decode()
    return out


def _alive(pids) -> list[int]:
    """Those of ``pids`` still running (a zombie, dead but not reaped yet, is not)."""
    alive = []
    for pid in pids:
        try:
            with open(f"/proc/{pid}/stat", "rb") as fh:
                stat = fh.read()
        except OSError:
            continue
        if stat[stat.rindex(b")") + 2 :][:1] not in (b"Z", b"X"):
            alive.append(pid)
    return alive


def _register(store_path: Path | str, cli, write_csv, n: int, **group) -> None:
    with open_store(store_path) as be:
        make_group(be, **group)
    res = cli("register", "--group", "meters-eu", "--csv", str(write_csv(meters_rows(n))),
              "--json")  # fmt: skip
    assert res.exit_code == 0, res.stderr


@pytest.mark.skipif(os.name != "posix", reason="SIGKILL")
def test_killed_re_exports_never_leave_a_wrong_manifest(store_location, tmp_path, cli, write_csv):
    """Each round: a complete export with URL A in the folder, then a re-export with URL B
    (every file changes) killed at a random moment, then the check."""
    _register(store_location, cli, write_csv, N_BURN)
    out = tmp_path / "burn"
    sel = Selection(group="meters-eu")
    seed = random.randrange(1 << 30)
    rng = random.Random(seed)
    stats = {"kills": 0, "completed": 0, "old manifest kept": 0, "claims checked": 0,
             "mismatches": 0, "temps left": 0}  # fmt: skip
    for i in range(5):
        with open_store(store_location) as be:  # the previous export, complete
            export_burn_files(be, sel, out, dps_url="http://dps-a.example")
        previous = (out / "manifest.json").read_bytes()
        proc = _enosprov(store_location, "burn", "export", "--group", "meters-eu", "--out",
                         str(out), "--dps-url", "http://dps-b.example")  # fmt: skip
        if i % 2:  # a random moment from the start
            time.sleep(rng.uniform(0.05, 0.6))
        else:  # a random moment once it writes (the previous manifest is gone then)
            deadline = time.monotonic() + 10
            while (out / "manifest.json").exists() and proc.poll() is None:
                assert time.monotonic() < deadline
                time.sleep(0.002)
            time.sleep(rng.uniform(0, 0.3))
        proc.kill()  # SIGKILL; nothing when it has ended already
        proc.communicate(timeout=10)
        stats["kills" if proc.returncode == -signal.SIGKILL else "completed"] += 1
        claims, wrong = _manifest_claims(out)
        json_manifest = out / "manifest.json"  # a kill between the two manifests leaves one
        if claims and json_manifest.exists() and json_manifest.read_bytes() == previous:
            stats["old manifest kept"] += 1  # killed before its first write: still true
        stats["claims checked"] += claims
        stats["mismatches"] += wrong
        stats["temps left"] += len(_temps(out))
        assert wrong == 0, (f"seed {seed}, round {i}", stats)
    print(f"\nburn export kill test (seed {seed}): {stats}")
    assert stats["kills"] >= 3, stats

    # The re-run completes, cleans up, and skips the files the killed run already wrote.
    url_a = {r["file"]: r["sha256"] for r in json.loads(previous)}
    done = sum(1 for name, digest in url_a.items() if _sha(out / name) != digest)
    rerun = _enosprov(store_location, "burn", "export", "--group", "meters-eu", "--out", str(out),
                      "--dps-url", "http://dps-b.example", "--json")  # fmt: skip
    stdout, stderr = rerun.communicate(timeout=60)
    assert rerun.returncode == 0, stderr
    again = json.loads(stdout)["data"]
    assert again["devices"] == N_BURN and again["unchanged"] == done
    assert again["written"] == N_BURN - done
    assert _temps(out) == []
    assert _manifest_claims(out) == (2 * N_BURN, 0)
    times = {r["file"]: r["time"] for r in json.loads((out / "manifest.json").read_text())}
    once_more = cli.json("burn", "export", "--group", "meters-eu", "--out", str(out),
                         "--dps-url", "http://dps-b.example")["data"]  # fmt: skip
    assert once_more["written"] == 0 and once_more["unchanged"] == N_BURN
    assert {r["file"]: r["time"] for r in json.loads((out / "manifest.json").read_text())} == times


@pytest.mark.skipif(not LINUX, reason="finds the workers in /proc")
def test_killed_pdf_batch_leaves_no_worker_and_no_open_pipe(
    store_location, tmp_path, cli, write_csv
):
    if (os.cpu_count() or 1) < 2:
        pytest.skip("the worker pool needs 2 cores")
    _register(store_location, cli, write_csv, N_QR)
    out = tmp_path / "labels"
    with open_store(store_location) as be:  # the previous export: error correction M
        qr_batch(be, Selection(group="meters-eu"), out, fmt="pdf")
    document = out / "labels-meters-eu.pdf"  # named after the selection (the group)
    reference = document.read_bytes()
    seed = random.randrange(1 << 30)
    rng = random.Random(seed)
    stats = {"kills": 0, "workers seen": 0, "alive after 5 s": 0, "pipe EOF s": 0.0,
             "workers gone s (prctl)": 0.0, "workers gone s (watch thread)": 0.0,
             "temps left": 0}  # fmt: skip
    for pdeathsig in (True, False):
        proc = _enosprov(store_location, "qr", "batch", "--group", "meters-eu", "--out", str(out),
                         "--label-format", "pdf", "--ec", "Q", "--force", pdeathsig=pdeathsig)  # fmt: skip
        deadline = time.monotonic() + 20
        workers: list[int] = []
        while len(workers) < 2:  # the pool's workers: the run's session, but not the run
            assert proc.poll() is None and time.monotonic() < deadline, "no worker pool seen"
            workers = [p for p in _session(proc.pid) if p != proc.pid]
            time.sleep(0.005)
        time.sleep(rng.uniform(0, 0.15))
        workers = [p for p in _session(proc.pid) if p != proc.pid]
        os.kill(proc.pid, signal.SIGKILL)
        t0 = time.monotonic()
        proc.communicate(timeout=10)  # stdout and stderr are pipes: returns at their EOF
        stats["pipe EOF s"] = max(stats["pipe EOF s"], round(time.monotonic() - t0, 3))
        assert proc.returncode == -signal.SIGKILL
        stats["kills"] += 1
        stats["workers seen"] += len(workers)
        while _alive(workers) and time.monotonic() - t0 < 5:
            time.sleep(0.01)
        key = "workers gone s (prctl)" if pdeathsig else "workers gone s (watch thread)"
        stats[key] = round(time.monotonic() - t0, 3)
        stats["alive after 5 s"] += len(_alive(workers))
        stats["temps left"] += len(_temps(out))
        # The manifest, when there is one, describes the document that is there.
        if (out / "manifest.json").exists():
            rows = json.loads((out / "manifest.json").read_text(encoding="utf-8"))
            ec = "M" if document.read_bytes() == reference else "Q"
            assert len(rows) == N_QR and {r["ecLevel"] for r in rows} == {ec}
    print(f"\nqr batch --label-format pdf kill test (seed {seed}): {stats}")
    assert stats["alive after 5 s"] == 0, stats
    assert stats["workers seen"] >= 4

    with open_store(store_location) as be:
        report = qr_batch(
            be, Selection(group="meters-eu"), out, fmt="pdf", options=QrOptions(ec="Q"), force=True
        )
    assert report.devices == N_QR and _temps(out) == []
    rows = json.loads((out / "manifest.json").read_text(encoding="utf-8"))
    assert {r["ecLevel"] for r in rows} == {"Q"} and len(rows) == N_QR


def test_a_file_name_too_long_is_refused_before_anything_is_written(
    store, tmp_path, write_csv, cli
):
    make_group(store, sn_pattern=r".{1,64}")
    long_sn = "電" * 64  # 64 characters, 576 bytes once %XX-encoded
    rows = [METERS_HEADER, "SN-000001,Meter 1,+08:00,40,single,,",
            f"{long_sn},Meter 2,+08:00,40,single,,"]  # fmt: skip
    api.register_csv(store, write_csv("\n".join(rows) + "\n"), "meters-eu")
    out = tmp_path / "out"
    with pytest.raises(InvalidArgumentError) as err:
        export_burn_files(store, Selection(group="meters-eu"), out, dps_url="http://d.example")
    assert long_sn in err.value.message and "at most 255 bytes" in err.value.message
    assert "SN-000001" not in err.value.message and not out.exists()
    for fmt in ("png", "svg", "both"):
        with pytest.raises(InvalidArgumentError, match="at most 255 bytes"):
            qr_batch(store, Selection(group="meters-eu"), out, fmt=fmt)
        assert not out.exists()
    res = cli("burn", "export", "--group", "meters-eu", "--out", str(out), "--dps-url", "http://d")
    assert res.exit_code != 0 and long_sn in res.stderr and not out.exists()
    # A path longer than the OS allows (PATH_MAX on Linux) is refused the same way.
    if LINUX:
        deep = tmp_path.joinpath(*["d" * 250] * 17)
        with pytest.raises(InvalidArgumentError, match="per path"):
            export_burn_files(store, Selection(group="meters-eu", device_sns=("SN-000001",)),
                              deep, dps_url="http://d.example")  # fmt: skip
        with pytest.raises(InvalidArgumentError, match="output path is too long"):
            qr_batch(store, Selection(group="meters-eu"), deep, fmt="pdf")
        assert not (tmp_path / ("d" * 250)).exists()
    # The PDF sheet has no per-device file name: the long deviceSn is labelled.
    report = qr_batch(store, Selection(group="meters-eu"), tmp_path / "sheet", fmt="pdf")
    assert report.devices == 2


def test_only_stale_enosprov_temp_files_are_removed(store, tmp_path, write_csv):
    make_group(store)
    api.register_csv(store, write_csv(meters_rows(2)), "meters-eu")
    out = tmp_path / "out"
    out.mkdir()
    stale = [
        ".SN-000001.json.enosprov-99999999-abc12_9z.tmp",
        ".manifest.csv.enosprov-99999999-7.tmp",
    ]
    live = f".SN-000002.json.enosprov-{os.getppid()}-3.tmp"  # a running process: kept
    users = [".notes.tmp", "draft.tmp", "SN.enosprov-1-a.tmp", ".x.enosprov-1-a.tmp.bak",
             ".x.enosprov-a-1.tmp", "manifest.csv.bak"]  # fmt: skip
    for name in [*stale, live, *users]:
        (out / name).write_text("x")
    (out / ".dir.enosprov-99999999-1.tmp").mkdir()  # not a file: kept
    export_burn_files(store, Selection(group="meters-eu"), out, dps_url="http://d.example")
    names = {p.name for p in out.iterdir()}
    assert not names & set(stale)
    assert {live, *users, ".dir.enosprov-99999999-1.tmp"} <= names
    assert all(not is_temp_name(n) for n in users) and all(map(is_temp_name, stale))


def test_an_unchanged_re_run_keeps_the_manifest_until_it_replaces_it(
    store, tmp_path, write_csv, monkeypatch
):
    """The previous manifest goes just before the first file changes, not before."""
    from enosprov import outputs as burn  # the output folder of burn export and qr batch

    make_group(store)
    api.register_csv(store, write_csv(meters_rows(3)), "meters-eu")
    out = tmp_path / "out"
    export_burn_files(store, Selection(group="meters-eu"), out, dps_url="http://a.example")
    seen = []
    original = burn.write_bytes

    def spy(path, data, **kw):
        seen.append(((out / "manifest.json").exists(), (out / "manifest.csv").exists()))
        return original(path, data, **kw)

    monkeypatch.setattr(burn, "write_bytes", spy)
    export_burn_files(store, Selection(group="meters-eu"), out, dps_url="http://a.example")
    assert seen == []  # nothing written: the old manifest stayed all along
    export_burn_files(store, Selection(group="meters-eu"), out, dps_url="http://b.example")
    assert seen == [(False, False)] * 3
    assert _manifest_claims(out) == (6, 0)


def test_csv_manifests_are_spreadsheet_safe_unless_raw(store, tmp_path, write_csv, cli):
    make_group(store)
    rows = [METERS_HEADER, "-SN-0001,Meter 1,+08:00,40,single,,",
            "SN-0002,Meter 2,+08:00,40,single,,"]  # fmt: skip
    api.register_csv(store, write_csv("\n".join(rows) + "\n"), "meters-eu", batch_tag="=1+2")
    sel = Selection(group="meters-eu")

    def cells(folder: Path) -> dict[str, dict]:
        """The manifest.csv rows by the deviceSn of the manifest.json row in the same place."""
        sns = [r["deviceSn"] for r in json.loads((folder / "manifest.json").read_text())]
        with open(folder / "manifest.csv", encoding="utf-8-sig", newline="") as fh:
            return dict(zip(sns, csv.DictReader(fh), strict=True))

    export_burn_files(store, sel, tmp_path / "b", dps_url="http://d.example")
    got = cells(tmp_path / "b")
    assert (
        got["-SN-0001"]["deviceSn"] == "'-SN-0001" and got["-SN-0001"]["file"] == "'-SN-0001.json"
    )
    assert got["SN-0002"]["deviceSn"] == "SN-0002" and got["SN-0002"]["file"] == "SN-0002.json"
    export_burn_files(store, sel, tmp_path / "b", dps_url="http://d.example", raw_csv=True)
    assert cells(tmp_path / "b")["-SN-0001"]["deviceSn"] == "-SN-0001"

    for fmt in ("png", "pdf"):
        qr_batch(store, sel, tmp_path / fmt, fmt=fmt)
        got = cells(tmp_path / fmt)["-SN-0001"]
        assert got["deviceSn"] == "'-SN-0001" and got["batchTag"] == "'=1+2"
        assert got["modules"].isdigit() and got["payload"].startswith("ENP1:")
    res = cli("qr", "batch", "--group", "meters-eu", "--out", str(tmp_path / "raw"), "--raw-csv")
    assert res.exit_code == 0, res.stderr
    assert cells(tmp_path / "raw")["-SN-0001"]["batchTag"] == "=1+2"
    res = cli("burn", "export", "--group", "meters-eu", "--out", str(tmp_path / "rb"),
              "--dps-url", "http://d", "--raw-csv")  # fmt: skip
    assert res.exit_code == 0, res.stderr
    assert cells(tmp_path / "rb")["-SN-0001"]["file"] == "-SN-0001.json"
