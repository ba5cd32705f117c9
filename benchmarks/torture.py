"""`make torture`: the "nothing half-done" promise, tested the hard way.

After kill -9 at any moment, concurrent stations, API faults and hostile input: no device is lost
or duplicated, the audit journal adds up, manifests match their files, no temporary file or
worker process is left behind, and no traceback reaches the user. Every scenario drives the real
CLI (`python -m enosprov ...`) in subprocesses, with its own store, config and journal under
--out, and returns its figures; every figure has a target and the run exits with 1 if any is
missed. What each scenario does and each figure means: docs/torture.md.

1. registration kills   kill -9 during a chunked registration; re-run to completion
2. concurrent stations  several `register --station` processes, overlapping CSVs, one store
3. export kills         kill -9 of `burn export` re-exports and of `qr batch --label-format pdf`
4. replace races        two processes replace the same unit with different new units
5. fuzzed CSVs          hostile CSV files: refused cleanly, or registered; never a traceback
6. API faults           the EnOS backend against `enosprov serve --fail-rate/--drop-rate`
7. emulator hostility   200 MB bodies and 16 concurrent EnOS clients against `enosprov serve`
8. formula cells        every CSV enosprov writes is spreadsheet-safe

Usage: python benchmarks/torture.py [--quick] [--seed N] [--out DIR] [--only NAME ...]
(--quick: the short version run by `make test`, well under a minute on two cores.)
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import functools
import hashlib
import http.client
import json
import os
import random
import shutil
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from urllib.parse import urlsplit

ROOT = Path(__file__).resolve().parent.parent
MASTERDATA = ROOT / "examples" / "masterdata.toml"
LINUX = sys.platform.startswith("linux")
POSIX = os.name == "posix"
GROUP = "g"
ORG = "o1"
APP_KEY, APP_SECRET = "torture-app-key", "torture-app-secret-5e1d"
HEADER = ["deviceSn", "deviceName", "deviceName.zh_CN", "timezone", "desc", "batchTag",
          "max_capacity", "phase", "install_date", "site"]  # fmt: skip
MB = 1024 * 1024
API_CHUNK = 100  # --chunk-size of the registrations through the EnOS backend


# -- sizes ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Sizes:
    reg_rows: int  # 1. rows of the registration killed
    reg_chunk: int
    reg_kills: int
    stations: int  # 2. concurrent register processes
    station_rows: int  # rows per station file (each half shared with the next station)
    station_chunk: int
    burn_devices: int  # 3. devices of the burn export killed
    burn_kills: int
    pdf_labels: int  # labels of the PDF sheet killed (500+ start the worker pool)
    pdf_kills: int
    races: int  # 4. replace races
    fuzz_files: int  # 5.
    api_rows: int  # 6. rows registered at --fail-rate 0.3 (and --drop-rate)
    api_hard_rate: float  # the hard --fail-rate (0.85; lower in quick mode, for time)
    api_hard_rows: int  # rows registered at the hard --fail-rate
    api_hard_retries: int  # the profile's retries there (8 by default)
    api_kills: int  # kill -9 of an EnOS-backend registration, then the settling run
    bodies: int  # 7. concurrent 200 MB POSTs
    clients: int  # concurrent EnOS-backend clients ...
    client_threads: int  # ... each with this many threads
    client_seconds: float
    formula_rows: int  # 8.


FULL = Sizes(reg_rows=100_000, reg_chunk=5000, reg_kills=50,
             stations=6, station_rows=20_000, station_chunk=2000,
             burn_devices=5000, burn_kills=20, pdf_labels=1500, pdf_kills=5,
             races=60, fuzz_files=700,
             api_rows=2000, api_hard_rate=0.85, api_hard_rows=200, api_hard_retries=6,
             api_kills=5,
             bodies=8, clients=16, client_threads=16, client_seconds=30,
             formula_rows=60)  # fmt: skip
QUICK = Sizes(reg_rows=20_000, reg_chunk=2000, reg_kills=4,
              stations=3, station_rows=2000, station_chunk=500,
              burn_devices=600, burn_kills=3, pdf_labels=1000, pdf_kills=1,
              races=3, fuzz_files=50,
              api_rows=100, api_hard_rate=0.6, api_hard_rows=10, api_hard_retries=4,
              api_kills=1,
              bodies=8, clients=16, client_threads=16, client_seconds=5,
              formula_rows=12)  # fmt: skip


# -- figures ----------------------------------------------------------------------------------


@dataclass
class Figure:
    scenario: str
    name: str
    value: float | None  # None: not measured on this platform
    target: float = 0
    kind: str = "max"  # "max": value <= target; "min": value >= target

    @property
    def ok(self) -> bool:
        if self.value is None:
            return True
        return self.value <= self.target if self.kind == "max" else self.value >= self.target


def figures(scenario: str, values: dict, targets: dict | None = None) -> list[Figure]:
    """Figures of a scenario: each name -> value, target 0 (at most) unless ``targets`` says
    name -> (target, kind)."""
    targets = targets or {}
    out = []
    for name, value in values.items():
        target, kind = targets.get(name, (0, "max"))
        out.append(Figure(scenario, name, value, target, kind))
    return out


# -- the harness ------------------------------------------------------------------------------


def has_traceback(text: str) -> bool:
    """Did a Python traceback, or enosprov's "internal error" line, reach the user?"""
    return "Traceback (most recent call last)" in text or "internal error" in text


@dataclass
class Result:
    returncode: int
    stdout: str
    stderr: str
    seconds: float
    killed: bool = False  # by kill -9, as the caller asked
    timed_out: bool = False  # killed because it ran past its time-out
    cmd: tuple[str, ...] = ()

    @property
    def traceback(self) -> bool:
        return has_traceback(self.stdout) or has_traceback(self.stderr)

    def data(self) -> dict:
        try:
            return json.loads(self.stdout)["data"]
        except (ValueError, KeyError, TypeError):
            return {}


class Torture:
    """Where everything goes (under --out), the random source, and how enosprov is run."""

    def __init__(self, out: Path, seed: int, sizes: Sizes, verbose: bool = True) -> None:
        self.out = out
        self.seed = seed
        self.rng = random.Random(seed)
        self.sizes = sizes
        self.verbose = verbose
        self._log = open(out / "torture.log", "a", encoding="utf-8")
        self._lock = threading.Lock()
        self._count = 0
        home = out / "home"
        self.env = {k: v for k, v in os.environ.items() if not k.startswith("ENOSPROV_")}
        self.env.update(
            HOME=str(home), XDG_CONFIG_HOME=str(home / "config"), XDG_DATA_HOME=str(home / "data"),
            XDG_CACHE_HOME=str(home / "cache"),
            APPDATA=str(home / "appdata"), LOCALAPPDATA=str(home / "localappdata"),
            ENOSPROV_CONFIG=str(out / "config.toml"), ENOSPROV_JOURNAL=str(out / "journal.db"),
        )  # fmt: skip
        self._template: Path | None = None
        self._setup_lock = threading.Lock()

    def note(self, text: str) -> None:
        with self._lock:
            self._log.write(text.rstrip() + "\n")
            self._log.flush()

    def say(self, text: str) -> None:
        self.note(text)
        if self.verbose:
            print(text, file=sys.stderr, flush=True)

    def dir(self, name: str) -> Path:
        path = self.out / name
        path.mkdir(parents=True, exist_ok=True)
        return path

    @staticmethod
    def cmd(*args: str, store: Path | None = None, station: str | None = None,
            profile: str | None = None) -> list[str]:  # fmt: skip
        cmd = [sys.executable, "-m", "enosprov"]
        if store is not None:
            cmd += ["--store", str(store)]
        if station is not None:
            cmd += ["--station", station]
        if profile is not None:
            cmd += ["--profile", profile]
        return [*cmd, *args]

    def _files(self) -> tuple[Path, Path]:
        with self._lock:
            self._count += 1
            n = self._count
        logs = self.dir("logs")
        return logs / f"{n:05d}.out", logs / f"{n:05d}.err"

    def run(self, cmd: list[str], *, env: dict | None = None, kill_after: float | None = None,
            kill_when: Callable[[], bool] | None = None, kill_delay: float = 0.0,
            timeout: float = 600, cwd: Path | None = None) -> Result:  # fmt: skip
        """Run ``cmd`` to its end, or kill -9 it: after ``kill_after`` seconds, or ``kill_delay``
        seconds after ``kill_when()`` turns true (polled). A run still going after ``timeout``
        seconds is killed too (``Result.timed_out``). Output goes to files (no pipe to fill
        up), read back afterwards and then removed."""
        out_path, err_path = self._files()
        t0 = time.perf_counter()
        deadline = time.monotonic() + timeout
        kill_at = time.monotonic() + kill_after if kill_after is not None else None
        with open(out_path, "wb") as out, open(err_path, "wb") as err:
            proc = subprocess.Popen(cmd, stdout=out, stderr=err, stdin=subprocess.DEVNULL,
                                    env=env or self.env, cwd=cwd or self.out)  # fmt: skip
            meant = False  # a kill meant by the caller, not a time-out
            while proc.poll() is None:
                now = time.monotonic()
                if kill_at is not None and now >= kill_at:
                    meant = True
                    break
                if kill_when is not None and kill_at is None and kill_when():
                    kill_at = now + kill_delay
                    continue
                if now >= deadline:
                    break
                time.sleep(0.01 if kill_when or kill_at else 0.02)
            if proc.poll() is None:
                proc.kill()
            proc.wait()
        seconds = time.perf_counter() - t0
        killed = proc.returncode == -signal.SIGKILL and meant
        timed_out = proc.returncode == -signal.SIGKILL and not meant
        res = Result(proc.returncode, _read(out_path), _read(err_path), seconds, killed,
                     timed_out, tuple(cmd))  # fmt: skip
        if res.traceback or timed_out:
            self.flag(res, "a traceback" if res.traceback else "timed out")
        out_path.unlink()
        err_path.unlink()
        return res

    def flag(self, res: Result, why: str) -> None:
        """Write what went wrong with a run to torture.log."""
        self.note(f"{why}: $ {_show(list(res.cmd))}\n  exit {res.returncode} after "
                  f"{res.seconds:.2f} s\n  stdout: {res.stdout[-1500:]}\n"
                  f"  stderr: {res.stderr[-3000:]}")  # fmt: skip

    def failed(self, res: Result, allowed: tuple[int, ...] = (0,)) -> int:
        """1 (and the details in torture.log) when ``res`` exited with a code not allowed."""
        if res.returncode in allowed:
            return 0
        self.flag(res, f"exit code {res.returncode}, expected {allowed}")
        return 1

    def template_store(self) -> Path:
        """A store with master data `meters` and registration group `g` (made once)."""
        with self._setup_lock:
            return self._make_template()

    def _make_template(self) -> Path:
        if self._template is None:
            path = self.dir("template") / "store.db"
            for args in (
                ["masterdata", "create", "--file", str(MASTERDATA)],
                ["group", "create", "--id", GROUP, "--name", "Torture", "--product-key", "pk",
                 "--region", "eu2", "--org", ORG, "--masterdata", "meters",
                 "--timezone", "+01:00"],
            ):  # fmt: skip
                res = self.run(self.cmd(*args, store=path))
                if res.returncode:
                    raise RuntimeError(f"store set-up failed: {res.stdout} {res.stderr}")
            self._template = path
        return self._template

    def new_store(self, path: Path) -> Path:
        remove_store(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        src = self.template_store()
        for suffix in ("", "-wal", "-shm"):
            if Path(f"{src}{suffix}").exists():
                shutil.copyfile(f"{src}{suffix}", f"{path}{suffix}")
        return path


def _read(path: Path) -> str:
    return path.read_bytes().decode("utf-8", "replace")


def _show(cmd: list[str]) -> str:
    return " ".join(cmd[2:] if cmd[:2] == [sys.executable, "-m"] else cmd)[:500]


def remove_store(path: Path) -> None:
    for suffix in ("", "-wal", "-shm", "-journal"):
        with contextlib.suppress(FileNotFoundError):
            os.unlink(f"{path}{suffix}")


def in_threads(target: Callable, args: list[tuple]) -> None:
    """``target(*a)`` for each ``a`` of ``args`` in its own thread; the first exception of a
    thread is raised here (a thread's exception would otherwise only be printed)."""
    errors: list[BaseException] = []

    def guarded(*a) -> None:
        try:
            target(*a)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=guarded, args=a) for a in args]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    if errors:
        raise errors[0]


# -- facts read straight from the SQLite files --------------------------------------------------


def _connect(path: Path) -> sqlite3.Connection:
    conn = sqlite3.connect(path, timeout=60)
    conn.execute("PRAGMA busy_timeout = 60000")
    return conn


def device_sns(store: Path, group: str = GROUP) -> list[str]:
    with contextlib.closing(_connect(store)) as conn:
        try:
            rows = conn.execute("SELECT device_sn FROM devices WHERE group_id=?", (group,))
            return [r[0] for r in rows]
        except sqlite3.OperationalError:  # no devices table yet
            return []


def journal_total(journal: Path, group: str = GROUP) -> int:
    """Devices the audit journal says `register` created in ``group``: the sum of the devices
    of its `register` records that are not intents (docs/lifecycle.md)."""
    if not journal.exists():
        return 0
    with contextlib.closing(_connect(journal)) as conn:
        try:
            (total,) = conn.execute(
                "SELECT coalesce(sum(devices), 0) FROM journal WHERE operation='register' "
                "AND outcome<>'pending' AND group_id=?",
                (group,),
            ).fetchone()
        except sqlite3.OperationalError:  # killed before the journal's first record
            return 0
    return total


def journal_rows(journal: Path) -> int:
    if not journal.exists():
        return 0
    with contextlib.closing(_connect(journal)) as conn:
        try:
            return conn.execute("SELECT count(*) FROM journal").fetchone()[0]
        except sqlite3.OperationalError:
            return 0


def batch_order(store: Path) -> str | None:
    with contextlib.closing(_connect(store)) as conn:
        row = conn.execute("SELECT value FROM meta WHERE key='batch_order'").fetchone()
    return row and row[0]


def group_secret(store: Path) -> str:
    with contextlib.closing(_connect(store)) as conn:
        return conn.execute(
            "SELECT group_secret FROM registration_groups WHERE group_id=?", (GROUP,)
        ).fetchone()[0]


def lost_and_duplicated(store: Path, expected: set[str]) -> tuple[int, int]:
    sns = device_sns(store)
    return len(expected - set(sns)), len(sns) - len(set(sns))


# -- CSV files ----------------------------------------------------------------------------------


def sn(prefix: str, i: int) -> str:
    return f"{prefix}-{i:07d}"


def device_row(prefix: str, i: int) -> list[str]:
    """Row ``i``: the same data for the same deviceSn, in every file."""
    return [sn(prefix, i), f"Meter {i}", f"电表 {i}", "+08:00" if i % 2 else "Europe/Berlin",
            "torture unit" if i % 3 == 0 else "", f"B-{i // 10000:03d}", str(40 + i % 60),
            "single" if i % 2 else "three", f"2026-11-{1 + i % 28:02d}",
            f"Plant {i % 7}, hall {i % 5}"]  # fmt: skip


def write_devices(path: Path, prefix: str, start: int, stop: int) -> set[str]:
    with open(path, "w", encoding="utf-8", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(HEADER)
        w.writerows(device_row(prefix, i) for i in range(start, stop))
    return {sn(prefix, i) for i in range(start, stop)}


def register(t: Torture, store: Path, path: Path, *extra: str, **kw) -> Result:
    return t.run(t.cmd("register", "--csv", str(path), "--group", GROUP, "--json", *extra,
                       store=store), **kw)  # fmt: skip


# -- processes (Linux /proc) --------------------------------------------------------------------


def _state(pid: int) -> str | None:
    try:
        with open(f"/proc/{pid}/stat", "rb") as fh:
            stat = fh.read()
    except OSError:
        return None
    return stat[stat.rindex(b")") + 2 :][:1].decode()


def alive(pids) -> list[int]:
    """Those of ``pids`` still running (a zombie, dead but not reaped, is not)."""
    return [p for p in pids if _state(p) not in (None, "Z", "X")]


def children(pid: int) -> set[int]:
    kids: set[int] = set()
    try:
        tasks = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return kids
    for tid in tasks:
        try:
            with open(f"/proc/{pid}/task/{tid}/children") as fh:
                kids.update(int(x) for x in fh.read().split())
        except OSError:
            continue
    return kids


def descendants(pid: int) -> set[int]:
    found: set[int] = set()
    todo = [pid]
    while todo:
        for kid in children(todo.pop()) - found:
            found.add(kid)
            todo.append(kid)
    return found


# -- 1. registration kills ----------------------------------------------------------------------


def registration_kills(t: Torture) -> list[Figure]:
    """kill -9 at random moments of `register --chunk-size N` over one large CSV; after each
    kill the journal must add up to the store; each store is then registered to completion."""
    s = t.sizes
    work = t.dir("1-register")
    csv_path = work / "devices.csv"
    expected = write_devices(csv_path, "MTR", 0, s.reg_rows)
    chunk = ("--chunk-size", str(s.reg_chunk))
    f = dict.fromkeys(["kills", "lost", "duplicated", "journal gaps", "tracebacks",
                       "spurious errors"], 0)  # fmt: skip
    # One complete run gives the span to pick kill moments from.
    store = t.new_store(work / "timing.db")
    res = register(t, store, csv_path, *chunk)
    wall = res.seconds
    f["spurious errors"] += t.failed(res) or res.data().get("created") != s.reg_rows
    f["tracebacks"] += res.traceback
    remove_store(store)
    t.say(f"  a complete run of {s.reg_rows} rows takes {wall:.2f} s")
    rounds = runs = 0
    while f["kills"] < s.reg_kills and runs < 20 * s.reg_kills:
        rounds += 1
        store = t.new_store(work / f"round-{rounds}.db")
        for _ in range(50):  # the same file into this store until a run completes
            runs += 1
            kill_at = t.rng.uniform(0.05, 1.0) * wall if f["kills"] < s.reg_kills else None
            res = register(t, store, csv_path, *chunk, kill_after=kill_at)
            f["tracebacks"] += res.traceback
            gap = abs(len(device_sns(store)) - journal_total(store))
            f["journal gaps"] += gap
            if gap:
                t.note(f"registration kill: journal gap {gap} in {store} (killed={res.killed})")
            if res.killed:
                f["kills"] += 1
                continue
            f["spurious errors"] += t.failed(res)
            if res.returncode == 0:
                break
        lost, dup = lost_and_duplicated(store, expected)
        f["lost"] += lost
        f["duplicated"] += dup
        if f["kills"] < s.reg_kills:
            remove_store(store)  # keep the last one to look at
    t.say(f"  {f['kills']} kills in {runs} runs over {rounds} stores")
    return figures("registration kills", f, {"kills": (s.reg_kills, "min")})


# -- 2. concurrent stations ---------------------------------------------------------------------


def concurrent_stations(t: Torture) -> list[Figure]:
    """Several `register --station S<i>` at once on one store; file i shares half its rows with
    file i+1 (same deviceSns, same data)."""
    s = t.sizes
    work = t.dir("2-stations")
    store = t.new_store(work / "store.db")
    expected: set[str] = set()
    files = []
    for i in range(s.stations):
        start = i * s.station_rows // 2
        path = work / f"station-{i}.csv"
        expected |= write_devices(path, "STN", start, start + s.station_rows)
        files.append(path)
    results: list[Result] = []
    lock = threading.Lock()

    def station(i: int) -> None:
        res = t.run(t.cmd("register", "--csv", str(files[i]), "--group", GROUP,
                          "--chunk-size", str(s.station_chunk), "--json", store=store,
                          station=f"S{i}"))  # fmt: skip
        with lock:
            results.append(res)

    in_threads(station, [(i,) for i in range(s.stations)])
    lost, dup = lost_and_duplicated(store, expected)
    created = sum(r.data().get("created", 0) for r in results)
    t.say(f"  {s.stations} stations, {len(expected)} distinct devices, {created} created, "
          f"slowest {max(r.seconds for r in results):.1f} s")  # fmt: skip
    f = {
        "lost": lost,
        "duplicated": dup,
        "journal gaps": abs(len(device_sns(store)) - journal_total(store))
        + abs(created - len(expected)),
        "tracebacks": sum(r.traceback for r in results),
        "spurious errors": sum(t.failed(r) for r in results),
    }
    return figures("concurrent stations", f)


# -- 3. export kills ----------------------------------------------------------------------------


def _sha(path: Path) -> str | None:
    try:
        return hashlib.sha256(path.read_bytes()).hexdigest()
    except OSError:
        return None


def manifests(folder: Path) -> tuple[dict[str, list[dict]], int]:
    """The rows of each manifest present (manifest.json, manifest.csv), and how many of them
    cannot be read (a half-written manifest)."""
    from enosprov.domain.csvsafe import restore

    found: dict[str, list[dict]] = {}
    broken = 0
    try:
        found["manifest.json"] = json.loads((folder / "manifest.json").read_text("utf-8"))
    except FileNotFoundError:
        pass  # no manifest: nothing claimed
    except ValueError:
        broken += 1
    try:  # a CSV for people: it starts with a byte order mark
        with open(folder / "manifest.csv", encoding="utf-8-sig", newline="") as fh:
            found["manifest.csv"] = [
                {k: restore(v or "") for k, v in r.items()} for r in csv.DictReader(fh)
            ]
    except FileNotFoundError:
        pass  # no manifest: nothing claimed
    except (ValueError, csv.Error):
        broken += 1
    return found, broken


def burn_manifest_mismatches(folder: Path, complete: bool = False) -> int:
    """SHA-256 values the manifests claim that their file does not have (plus unreadable
    manifests); with ``complete``, also a missing manifest, files a manifest does not list and
    rows without a file."""
    found, wrong = manifests(folder)
    for rows in found.values():
        wrong += sum(1 for r in rows if _sha(folder / r["file"]) != r.get("sha256"))
    if complete:
        from enosprov.atomic import is_temp_name

        files = {p.name for p in folder.iterdir() if p.is_file() and not is_temp_name(p.name)}
        files -= {"manifest.csv", "manifest.json"}
        for name in ("manifest.json", "manifest.csv"):
            listed = [r["file"] for r in found.get(name, [])]
            wrong += name not in found
            wrong += len(files ^ set(listed)) + len(listed) - len(set(listed))
    return wrong


def temp_files(folder: Path) -> list[str]:
    from enosprov.atomic import is_temp_name

    return [p.name for p in folder.iterdir() if is_temp_name(p.name)] if folder.exists() else []


def export_kills(t: Torture) -> list[Figure]:
    """kill -9 of `burn export` re-exports and of `qr batch --label-format pdf` runs: manifests that
    never lie, no temporary file left, no worker process left, no caller left waiting."""
    s = t.sizes
    work = t.dir("3-exports")
    f = dict.fromkeys(["kills", "manifest mismatches", "temp files left", "orphans", "stalls",
                       "tracebacks", "spurious errors"], 0)  # fmt: skip

    # burn export: a complete export with URL A, then a re-export with URL B (every file
    # changes) killed at a random moment; the manifests must never claim a wrong SHA-256.
    store = t.new_store(work / "burn.db")
    write_devices(work / "burn.csv", "BRN", 0, s.burn_devices)
    res = register(t, store, work / "burn.csv")
    f["spurious errors"] += t.failed(res)
    out = work / "burn"

    def export(url: str, **kw) -> Result:
        return t.run(t.cmd("burn", "export", "--group", GROUP, "--out", str(out), "--dps-url",
                           url, "--json", store=store), **kw)  # fmt: skip

    wall = None
    burn_kills = 0
    for _ in range(4 * s.burn_kills):
        if burn_kills >= s.burn_kills:
            break
        res = export("http://dps-a.example")  # the previous export, complete
        f["spurious errors"] += t.failed(res)
        f["tracebacks"] += res.traceback
        if wall is None:
            wall = export("http://dps-b.example").seconds  # the span of a full re-export
            t.say(f"  a re-export of {s.burn_devices} files takes {wall:.2f} s")
            continue
        res = export("http://dps-b.example", kill_after=t.rng.uniform(0.05, 1.0) * wall)
        f["tracebacks"] += res.traceback
        burn_kills += res.killed
        f["spurious errors"] += 0 if res.killed else t.failed(res)
        wrong = burn_manifest_mismatches(out)
        if wrong:
            t.note(f"burn export kill: {wrong} manifest claims wrong in {out}")
        f["manifest mismatches"] += wrong
    f["kills"] += burn_kills
    res = export("http://dps-b.example")  # the final re-run completes and cleans up
    f["spurious errors"] += t.failed(res)
    f["tracebacks"] += res.traceback
    f["temp files left"] += len(temp_files(out))
    f["manifest mismatches"] += burn_manifest_mismatches(out, complete=True)
    f["manifest mismatches"] += res.data().get("devices") != s.burn_devices

    # qr batch --label-format pdf: its worker pool must end with it, and a caller reading its output
    # through a pipe (subprocess.run(stdout=PIPE)) must get it back at once.
    for key, value in _pdf_kills(t, work, s).items():
        f[key] = None if value is None else f[key] + value
    planned = s.burn_kills + (s.pdf_kills if LINUX else 0)
    return figures("export kills", f, {"kills": (planned, "min")})


def _pdf_kills(t: Torture, work: Path, s: Sizes) -> dict:
    f = dict.fromkeys(["kills", "manifest mismatches", "temp files left", "orphans", "stalls",
                       "tracebacks", "spurious errors"], 0)  # fmt: skip
    if not LINUX:
        t.say("  qr batch --label-format pdf kills skipped: finds the workers in /proc (Linux)")
        f["orphans"] = None
        return f
    store = t.new_store(work / "pdf.db")
    write_devices(work / "pdf.csv", "PDF", 0, s.pdf_labels)
    f["spurious errors"] += t.failed(register(t, store, work / "pdf.csv"))
    out = work / "labels"

    def batch(folder: Path, ec: str) -> list[str]:  # --force: each run changes the sheet
        return t.cmd("qr", "batch", "--group", GROUP, "--label-format", "pdf", "--ec", ec, "--out",
                     str(folder), "--force", store=store)  # fmt: skip

    reference = {}
    for ec in ("M", "Q"):  # what the document holds after a complete run of each
        res = t.run(batch(work / f"labels-{ec}", ec))
        f["spurious errors"] += t.failed(res)
        (doc,) = (manifests(work / f"labels-{ec}")[0]["manifest.json"][0]["file"],)
        reference[ec] = (work / f"labels-{ec}" / doc).read_bytes()
    for _ in range(3 * s.pdf_kills):  # a run may end before its pool is seen: try again
        if f["kills"] >= s.pdf_kills:
            break
        res = t.run(batch(out, "M"))  # the previous sheet, complete
        f["spurious errors"] += t.failed(res)
        f["tracebacks"] += res.traceback
        kill = _run_and_kill_pool(t, batch(out, "Q"))
        f["kills"] += kill["killed"]
        f["orphans"] += kill["orphans"]
        f["stalls"] += kill["stalled"]
        f["tracebacks"] += kill["traceback"]
        f["spurious errors"] += kill["failed"]
        t.say(f"  qr batch pdf: {kill['workers']} workers, pipe EOF {kill['eof_s']:.2f} s "
              f"after the kill, {kill['orphans']} alive 5 s later")  # fmt: skip
        # the document is complete; a manifest, when there is one, describes it
        sheet = (out / doc).read_bytes() if (out / doc).exists() else None
        ec = next((k for k, v in reference.items() if v == sheet), None)
        found, wrong = manifests(out)
        wrong += sheet is not None and ec is None
        for rows in found.values():
            wrong += len(rows) != s.pdf_labels
            wrong += sum(1 for r in rows if r.get("ecLevel") != ec)
        if wrong:
            t.note(f"qr batch pdf kill: {wrong} manifest mismatches in {out}")
        f["manifest mismatches"] += wrong
    res = t.run(batch(out, "Q"))
    f["spurious errors"] += t.failed(res)
    f["temp files left"] += len(temp_files(out))
    found, broken = manifests(out)
    f["manifest mismatches"] += broken + 2 - len(found)
    for rows in found.values():
        f["manifest mismatches"] += len(rows) != s.pdf_labels
        f["manifest mismatches"] += sum(1 for r in rows if r.get("ecLevel") != "Q")
    f["manifest mismatches"] += (out / doc).read_bytes() != reference["Q"]
    return f


def _run_and_kill_pool(t: Torture, cmd: list[str]) -> dict:
    """subprocess.run(cmd, stdout=PIPE) in a thread; kill -9 of the run once its worker pool
    runs; how long run() took to return after the kill, and the workers alive 5 s later."""
    report = {"killed": 0, "orphans": 0, "stalled": 0, "traceback": 0, "failed": 0,
              "workers": 0, "eof_s": 0.0}  # fmt: skip
    box: dict = {}
    before = children(os.getpid())

    def caller() -> None:
        try:
            box["result"] = subprocess.run(  # noqa: UP022 (the pipes are the point)
                cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL,
                env=t.env, timeout=120,
            )  # fmt: skip
        except subprocess.TimeoutExpired:
            box["result"] = None
        box["returned"] = time.monotonic()

    thread = threading.Thread(target=caller, daemon=True)
    thread.start()
    deadline = time.monotonic() + 60
    pid = None
    while pid is None and time.monotonic() < deadline and thread.is_alive():
        new = children(os.getpid()) - before
        pid = min(new) if new else None
        time.sleep(0.002)
    workers: set[int] = set()
    while pid and not workers and time.monotonic() < deadline and _state(pid) not in (None, "Z"):
        workers = descendants(pid)
        time.sleep(0.005)
    if not workers:  # it ended (or failed) before its pool was seen: not a kill
        t.note(f"qr batch pdf: no worker pool seen ({_show(cmd)})")
        thread.join(130)
        res = box.get("result")
        report["failed"] = int(res is None or res.returncode != 0)
        return report
    time.sleep(t.rng.uniform(0, 0.2))
    workers |= descendants(pid)
    report["workers"] = len(workers)
    os.kill(pid, signal.SIGKILL)
    killed_at = time.monotonic()
    thread.join(30)
    if thread.is_alive() or box.get("result") is None:
        report["stalled"] = 1
        report["eof_s"] = time.monotonic() - killed_at
    else:
        report["eof_s"] = box["returned"] - killed_at
        report["stalled"] = int(report["eof_s"] > 5)
        res = box["result"]
        report["killed"] = int(res.returncode == -signal.SIGKILL)
        report["traceback"] = int(has_traceback(res.stderr.decode("utf-8", "replace")))
    while alive(workers) and time.monotonic() - killed_at < 5:
        time.sleep(0.05)
    report["orphans"] = len(alive(workers))
    if report["orphans"]:
        t.note(f"qr batch pdf: workers alive 5 s after the kill: {alive(workers)}")
    return report


# -- 4. replace races ---------------------------------------------------------------------------


def _contender(t: Torture, store: Path, old: str, results: dict, new: str, station: str,
               delay: float) -> None:  # fmt: skip
    """One side of a replace race."""
    time.sleep(delay)
    results[new] = t.run(t.cmd("replace", old, "--new-device-sn", new, "--group", GROUP, "--yes",
                               "--no-burn", "--json", store=store, station=station))  # fmt: skip


def replace_races(t: Torture) -> list[Figure]:
    """Two stations replace the same OLD at once, with different NEW units: one wins, the
    other is refused and leaves nothing registered."""
    s = t.sizes
    work = t.dir("4-replace")
    store = t.new_store(work / "store.db")
    write_devices(work / "old.csv", "OLD", 0, s.races)
    f = dict.fromkeys(["orphans", "lost", "journal gaps", "tracebacks", "spurious errors"], 0)
    f["spurious errors"] += t.failed(register(t, store, work / "old.csv"))
    for i in range(s.races):
        old = sn("OLD", i)
        news = [f"NEWA-{i:05d}", f"NEWB-{i:05d}"]
        results: dict[str, Result] = {}
        delays = [0.0, t.rng.uniform(0, 0.05)]
        t.rng.shuffle(delays)
        in_threads(
            functools.partial(_contender, t, store, old, results),
            [(new, f"R{j}", delays[j]) for j, new in enumerate(news)],
        )
        present = set(device_sns(store)) & {old, *news}
        registered = present & set(news)
        winners = [new for new in news if results[new].returncode == 0]
        f["tracebacks"] += sum(r.traceback for r in results.values())
        f["spurious errors"] += sum(t.failed(r, (0, 1)) for r in results.values())
        # exactly one run says it replaced OLD, and its NEW is the one registered
        f["spurious errors"] += len(winners) != 1 or not set(winners) <= registered
        # OLD gone: one NEW, the replacement; OLD still there: none
        f["orphans"] += max(0, len(registered) - (old not in present))
        f["lost"] += old not in present and not registered
        with contextlib.closing(_connect(store)) as conn:
            (records,) = conn.execute(
                "SELECT count(*) FROM journal WHERE operation='replace' AND outcome='ok' AND "
                "json_extract(detail, '$.old.deviceSn')=?",
                (old,),
            ).fetchone()
        f["journal gaps"] += abs(records - (old not in present))
        if len(winners) != 1 or len(present) != 1 or old in present:
            t.note(f"replace race {i}: present {sorted(present)}, exit codes "
                   f"{ {k: r.returncode for k, r in results.items()} }")  # fmt: skip
    return figures("replace races", f)


# -- 5. fuzzed CSVs -----------------------------------------------------------------------------

HOSTILE = [
    "=1+2", "+SUM(A1:A9)", "-A1", "@cmd", "\t=x", "\r=x", "=cmd|' /C calc'!A0", "\x00", "a\x00b",
    "\x1b[31mred", "\u202eevil", "\ufeff", "\u2028", "\x7f", "\x85", "𝔘𝔫𝔦𝔠𝔬𝔡𝔢", "a\nb", "a\r\nb",
    '"', '""', ",", ";", "\\", "%s%n%x", "${jndi:ldap://x/a}", "' OR 1=1 --", "../../etc/passwd",
    "NaN", "1e400", "-0", "+5", "007", "99999999999999999999999", "-9223372036854775809",
    "0x10", "１２", "٣", "2026-02-30", "2026-13-01", "9999-12-31", "Mars/Olympus", "+14:01",
    "+08:00", "Z", "UTC+8", "", " ", "  padded  ", "single ", "SINGLE", "x" * 65, "y" * 300,
    "电表" * 70,
]  # fmt: skip
ENCODINGS = ["utf-8", "utf-8-sig", "utf-16", "utf-16-le", "utf-32", "gbk", "latin-1", "cp1252",
             "shift_jis", "cp037"]  # fmt: skip


@dataclass
class FuzzCase:
    name: str
    data: bytes
    options: list[str]
    usage_error_ok: bool = False  # options that are allowed to be refused by Click (exit 2)


def _good_rows(rng: random.Random, prefix: str, n: int) -> list[list[str]]:
    start = rng.randrange(0, 50)
    return [device_row(prefix, start + i) for i in range(n)]


def _csv_text(header: list[str], rows: list[list[str]], delimiter: str = ",",
              lineterminator: str = "\r\n") -> str:  # fmt: skip
    import io

    buf = io.StringIO()
    w = csv.writer(buf, delimiter=delimiter, lineterminator=lineterminator)
    w.writerow(header)
    w.writerows(rows)
    return buf.getvalue()


def fuzz_case(rng: random.Random, n: int) -> FuzzCase:
    """One hostile CSV file (and options), reproducible from ``rng``."""
    prefix = rng.choice(["FZ", "FZ", f"F{n:04d}", "MTR"])  # shared prefixes: skips, conflicts
    rows = _good_rows(rng, prefix, rng.randint(1, 30))
    header = list(HEADER)
    kind = rng.choice([
        "empty", "header only", "random bytes", "hostile cells", "encoding", "control chars",
        "huge field", "many columns", "missing columns", "duplicate headers", "formulas",
        "ragged rows", "quoting", "line ends", "delimiters", "byte flips", "duplicate rows",
        "i18n columns", "numbers", "options", "bom", "truncated utf-8", "blank and junk lines",
    ])  # fmt: skip
    options: list[str] = []
    usage_ok = False
    text: str | None = None
    data: bytes | None = None
    if kind == "empty":
        data = rng.choice([b"", b"\n", b"\r\n\r\n", b"\xef\xbb\xbf", b" "])
    elif kind == "header only":
        text = _csv_text(rng.choice([header, header[:1], ["deviceSn", "max_capacity", "phase"]]),
                         [])  # fmt: skip
    elif kind == "random bytes":
        data = rng.randbytes(rng.randint(1, 4096))
    elif kind == "hostile cells":
        for row in rows:
            for _ in range(rng.randint(1, 4)):
                row[rng.randrange(len(row))] = rng.choice(HOSTILE)
    elif kind == "encoding":
        rows[0][1] = rng.choice(["Zähler é ß", "电表 一号", "メーター", "Счётчик"])
        text = _csv_text(header, rows)
        enc = rng.choice(ENCODINGS)
        data = text.encode(enc, "replace")
        if rng.random() < 0.6:
            options += ["--encoding", rng.choice([enc, *ENCODINGS, "no-such-codec", "rot13"])]
    elif kind == "control chars":
        for row in rows:
            col = rng.randrange(len(row))
            row[col] = row[col] + chr(rng.choice([*range(0, 32), 127, *range(0x80, 0xA0),
                                                  0x200E, 0x202E, 0x2066]))  # fmt: skip
    elif kind == "huge field":
        size = rng.choice([70_000, 1 * MB, 3 * MB])
        rows[rng.randrange(len(rows))][rng.randrange(len(header))] = "A" * size
    elif kind == "many columns":
        header = header + [f"extra{i}" for i in range(rng.choice([50, 5000]))]
        rows = [r + ["v"] * (len(header) - len(r)) for r in rows]
    elif kind == "missing columns":
        drop = rng.sample(range(len(header)), rng.randint(1, 4))
        header = [h for i, h in enumerate(header) if i not in drop]
        rows = [[c for i, c in enumerate(r) if i not in drop] for r in rows]
    elif kind == "duplicate headers":
        i = rng.randrange(len(header))
        header = [*header, rng.choice([header[i], header[i].upper(), " " + header[i], ""])]
        rows = [[*r, r[i]] for r in rows]
    elif kind == "formulas":
        for row in rows:
            for col in (1, 4, 5, 9):
                row[col] = rng.choice(["=", "+", "-", "@"]) + row[col]
    elif kind == "ragged rows":
        for row in rows:
            del row[rng.randrange(len(row)) :]
            if rng.random() < 0.5:
                row.extend(["extra"] * rng.randint(1, 5))
    elif kind == "quoting":
        text = _csv_text(header, rows)
        pos = rng.randrange(len(text))
        text = text[:pos] + rng.choice(['"', '""', '"a"b', '\\"']) + text[pos:]
    elif kind == "line ends":
        text = _csv_text(header, rows, lineterminator=rng.choice(["\r", "\n\r", "\n", "\x85"]))
    elif kind == "delimiters":
        delim = rng.choice([";", "\t", "|"])
        text = _csv_text(header, rows, delimiter=delim)
        options += ["--delimiter", rng.choice([";", "tab", "|", ",", "x", ",,", "", "\\t"])]
        usage_ok = True
    elif kind == "byte flips":
        raw = bytearray(_csv_text(header, rows).encode())
        for _ in range(rng.randint(1, 10)):
            raw[rng.randrange(len(raw))] = rng.randrange(256)
        data = bytes(raw)
    elif kind == "duplicate rows":
        rows = rows + [list(rng.choice(rows)) for _ in range(rng.randint(1, 5))]
        if rng.random() < 0.5:
            rows[-1][6] = "1"  # same deviceSn, other data
    elif kind == "i18n columns":
        header = [*header, rng.choice(["deviceName.xx_YY", "deviceName.", "deviceName..",
                                       "deviceName.zh_CN.x", "deviceName.en-US",
                                       "site.zh_CN"])]  # fmt: skip
        rows = [[*r, "name"] for r in rows]
    elif kind == "numbers":
        for row in rows:
            row[6] = rng.choice(HOSTILE[28:40])
    elif kind == "options":
        options += rng.choice([
            ["--batch-tag", rng.choice(["B" * 65, "=1+2", "\x1b", "tab\there", "", " "])],
            ["--chunk-size", rng.choice(["1", "0", "-5", "99999999999999999999"])],
            ["--skip-invalid"], ["--dry-run"], ["--results", rng.choice(["r.csv", "r.jsonl", "."])],
        ])  # fmt: skip
        usage_ok = True
        for row in rows:
            if rng.random() < 0.3:
                row[rng.randrange(len(row))] = rng.choice(HOSTILE)
    elif kind == "bom":
        text = _csv_text(header, rows)
        pos = rng.choice([0, 0, rng.randrange(len(text))])
        text = text[:pos] + "\ufeff" * rng.randint(1, 2) + text[pos:]
    elif kind == "truncated utf-8":
        rows[-1][1] = "电表"
        data = _csv_text(header, rows).encode()[: -rng.randint(3, 6)]
    elif kind == "blank and junk lines":
        text = _csv_text(header, rows)
        lines = text.split("\r\n")
        for _ in range(rng.randint(1, 5)):
            lines.insert(rng.randrange(1, len(lines) + 1), rng.choice(["", ",,,,", " ", "#x"]))
        text = "\r\n".join(lines)
    if rng.random() < 0.15 and "--skip-invalid" not in options:
        options.append("--skip-invalid")
    if data is None:
        data = (text if text is not None else _csv_text(header, rows)).encode("utf-8", "replace")
    return FuzzCase(f"{n:04d}-{kind.replace(' ', '-')}", data, options, usage_ok)


def fuzzed_csvs(t: Torture) -> list[Figure]:
    """Hostile CSV files registered one by one (two lanes, each with its own store): a refused
    file changes nothing, an accepted one keeps the journal in step; never a traceback."""
    s = t.sizes
    work = t.dir("5-fuzz")
    rng = random.Random(t.seed)
    cases = [fuzz_case(rng, n) for n in range(s.fuzz_files)]
    f = dict.fromkeys(["tracebacks", "refused yet changed", "journal gaps", "stalls",
                       "spurious errors"], 0)  # fmt: skip
    lock = threading.Lock()
    codes: dict[int, int] = {}

    def lane(k: int) -> None:
        store = t.new_store(work / f"lane-{k}.db")
        balance = 0  # devices minus the journal's total: stays 0
        for case in cases[k::2]:
            path = work / f"case-{case.name}.csv"
            path.write_bytes(case.data)
            before = (len(device_sns(store)), batch_order(store), journal_rows(store))
            res = t.run(t.cmd("register", "--csv", path.name, "--group", GROUP, "--json",
                              *case.options, store=store), cwd=work, timeout=120)  # fmt: skip
            after = (len(device_sns(store)), batch_order(store), journal_rows(store))
            gap = abs(after[0] - journal_total(store) - balance)  # this file's part
            balance = after[0] - journal_total(store)
            bad = {
                "tracebacks": res.traceback,
                "refused yet changed": res.returncode in (1, 2) and before != after,
                "journal gaps": gap,
                "stalls": res.seconds > 60,
                "spurious errors": res.returncode not in (0, 1, 5)
                and not (res.returncode == 2 and case.usage_error_ok),
            }
            with lock:
                codes[res.returncode] = codes.get(res.returncode, 0) + 1
                for key, value in bad.items():
                    f[key] += value
            if any(bad.values()):
                t.note(f"fuzz case {case.name} {case.options}: exit {res.returncode}, "
                       f"{before} -> {after}, {bad}\n  {res.stderr[-1500:]}")  # fmt: skip
            else:
                path.unlink()  # keep only the files that broke something
            for extra in ("r.csv", "r.jsonl"):
                with contextlib.suppress(FileNotFoundError):
                    (work / extra).unlink()

    t.template_store()
    in_threads(lane, [(0,), (1,)])
    t.say(f"  {len(cases)} files, exit codes {dict(sorted(codes.items()))}")
    return figures("fuzzed CSVs", f)


# -- 6. API faults ------------------------------------------------------------------------------


@contextlib.contextmanager
def emulator(t: Torture, store: Path, log: Path, *args: str) -> Iterator[tuple]:
    """`enosprov serve --port 0 --json` over ``store``: (process, its start-up data)."""
    env = dict(t.env, ENOSPROV_SERVE_APP_SECRET=APP_SECRET)
    with open(log, "wb") as err:
        proc = subprocess.Popen(
            t.cmd("serve", "--port", "0", "--json", "--app-key", APP_KEY, *args, store=store),
            stdout=subprocess.PIPE, stderr=err, stdin=subprocess.DEVNULL, env=env, text=True,
        )  # fmt: skip
    try:
        line = proc.stdout.readline()
        if not line:
            raise RuntimeError(f"enosprov serve did not start: {_read(log)[-2000:]}")
        yield proc, json.loads(line)["data"]
    finally:
        proc.send_signal(signal.SIGTERM if POSIX else signal.SIGINT)
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        proc.stdout.close()


def make_profile(t: Torture, work: Path, url: str, store: Path, retries: int = 8) -> dict:
    """A profile `emu` for the emulator at ``url``: the environment that selects it."""
    env = dict(t.env, ENOSPROV_CONFIG=str(work / "config.toml"),
               ENOSPROV_JOURNAL=str(work / "journal.db"), EMU_SECRET=APP_SECRET,
               GROUP_SECRET=group_secret(store))  # fmt: skip
    for args in (
        ["config", "create", "emu", "--api-url", url, "--org", ORG, "--access-key", APP_KEY,
         "--secret-env", "EMU_SECRET", "--dps-url", url, "--retries", str(retries)],
        ["config", "add-group", "emu", GROUP, "--secret-env", "GROUP_SECRET", "--masterdata",
         str(MASTERDATA), "--timezone", "+01:00"],
    ):  # fmt: skip
        res = t.run(t.cmd(*args), env=env)
        if res.returncode:
            raise RuntimeError(f"profile set-up failed: {res.stderr}")
    return env


def _register_until_done(t: Torture, env: dict, path: Path, f: dict, **kill) -> int:
    """`--profile emu register` until it exits 0 (3, EnOS unavailable, is allowed; anything
    else is a spurious error); the first run gets the ``kill`` arguments of Torture.run.
    How many runs it took."""
    for runs in range(1, 61):
        res = t.run(t.cmd("register", "--csv", str(path), "--group", GROUP, "--chunk-size",
                          str(API_CHUNK), "--json", profile="emu"), env=env,
                    **(kill if runs == 1 else {}))  # fmt: skip
        f["tracebacks"] += res.traceback
        if res.killed:
            f["kills"] += 1
        elif res.returncode == 0:
            return runs
        else:
            f["spurious errors"] += t.failed(res, (3,))
    f["spurious errors"] += 1  # never finished
    return 60


def _intents(journal: Path, path: Path) -> int:
    """Intent records (outcome pending) written for the CSV file ``path``."""
    if not journal.exists():
        return 0
    with contextlib.closing(_connect(journal)) as conn:
        try:
            return conn.execute(
                "SELECT count(*) FROM journal WHERE outcome='pending' AND "
                "json_extract(detail, '$.file')=?",
                (str(path),),
            ).fetchone()[0]
        except sqlite3.OperationalError:
            return 0


def api_faults(t: Torture) -> list[Figure]:
    """Registration through the EnOS backend against `enosprov serve` with faults: re-run
    until done; then kill -9 runs mid-way and check that the next run settles the journal.
    The two fault settings run at the same time (they mostly wait in backoff)."""
    s = t.sizes
    settings = [
        ("fail-0.3", ["--fail-rate", "0.3", "--drop-rate", "0.1"], s.api_rows, 8, s.api_kills),
        (f"fail-{s.api_hard_rate:g}", ["--fail-rate", str(s.api_hard_rate), "--drop-rate",
         "0.05"], s.api_hard_rows, s.api_hard_retries, 0),
    ]  # fmt: skip
    found: list[dict] = []
    in_threads(lambda *a: found.append(_fault_setting(t, *a)), settings)
    f = {key: sum(part[key] for part in found) for key in found[0]}
    return figures("API faults", f, {"kills": (s.api_kills, "min")})


def _fault_setting(t: Torture, name: str, faults: list[str], rows: int, retries: int,
                   kills: int) -> dict:  # fmt: skip
    f = dict.fromkeys(["kills", "lost", "duplicated", "journal gaps", "tracebacks",
                       "spurious errors"], 0)  # fmt: skip
    here = t.dir(f"6-api/{name}")
    store = t.new_store(here / "emulator.db")
    journal = here / "journal.db"
    log = here / "serve.log"

    def balance() -> int:  # devices in EnOS minus the journal's total: 0 when it adds up
        return len(device_sns(store)) - journal_total(journal)

    with emulator(t, store, log, *faults, "--seed", str(t.seed)) as (_proc, data):
        env = make_profile(t, here, data["url"], store, retries=retries)
        path = here / "devices.csv"
        expected = write_devices(path, "API", 0, rows)
        t0 = time.perf_counter()
        runs = _register_until_done(t, env, path, f)
        t.say(f"  {name}: {rows} devices in {runs} runs, {time.perf_counter() - t0:.1f} s")
        gap = abs(balance())
        f["journal gaps"] += gap
        if gap:
            t.note(f"API faults {name}: journal gap {gap} once registered")
        for k in range(4 * kills):
            if f["kills"] >= kills:
                break
            # kill -9 mid-way through a new batch, once the intent of a random chunk is
            # written (its creates in flight); the runs that follow must settle it
            before = balance()
            path = here / f"kill-{k}.csv"
            expected |= write_devices(path, f"K{k}", 0, rows)
            chunk = t.rng.randint(1, -(-rows // API_CHUNK))
            started = functools.partial(lambda p, n: _intents(journal, p) >= n, path, chunk)
            _register_until_done(t, env, path, f, kill_when=started,
                                 kill_delay=t.rng.uniform(0, 0.5))  # fmt: skip
            gap = abs(balance() - before)
            f["journal gaps"] += gap
            if gap:
                t.note(f"API faults {name}, kill {k}: journal gap {gap} after the settling run")
        lost, dup = lost_and_duplicated(store, expected)
        f["lost"] += lost
        f["duplicated"] += dup
    f["tracebacks"] += has_traceback(_read(log))
    return f


# -- 7. emulator hostility ----------------------------------------------------------------------


def _peak_rss_mb(pid: int) -> float:
    text = Path(f"/proc/{pid}/status").read_text()
    kb = next(int(line.split()[1]) for line in text.splitlines() if line.startswith("VmHWM:"))
    return kb / 1024


def _post_huge(url: str, size: int, outcome: list) -> None:
    """POST a body of ``size`` bytes made on the fly (never held whole), with Content-Length."""
    parts = urlsplit(url)
    conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=30)
    chunk = b"\0" * MB

    def body():
        for _ in range(size // MB):
            yield chunk

    try:
        try:
            conn.request("POST", "/dev/bootstrap", body=body(),
                         headers={"Content-Length": str(size),
                                  "Content-Type": "application/json"})  # fmt: skip
        except (BrokenPipeError, ConnectionResetError):
            pass  # the server answered and closed: read what it said
        try:
            outcome.append(conn.getresponse().status)
        except (OSError, http.client.HTTPException):
            outcome.append("reset")
    except OSError as exc:
        outcome.append(repr(exc))
    finally:
        conn.close()


def emulator_hostility(t: Torture) -> list[Figure]:
    from enosprov.backends import apim
    from enosprov.backends.enos import EnosBackend
    from enosprov.backends.enos_config import EnosConfig

    s = t.sizes
    work = t.dir("7-hostility")
    store = t.new_store(work / "emulator.db")
    log = work / "serve.log"
    f: dict = {"peak RSS MB": None, "stalls": 0, "tracebacks": 0, "spurious errors": 0}
    with emulator(t, store, log) as (proc, data):
        url = data["url"]
        outcome: list = []
        threads = [threading.Thread(target=_post_huge, args=(url, 200 * MB, outcome))
                   for _ in range(s.bodies)]  # fmt: skip
        t0 = time.monotonic()
        for th in threads:
            th.start()
        for th in threads:
            th.join(120)
        f["stalls"] += sum(th.is_alive() for th in threads)
        if LINUX:
            f["peak RSS MB"] = round(_peak_rss_mb(proc.pid), 1)
        t.say(f"  {s.bodies} x 200 MB bodies: {time.monotonic() - t0:.1f} s, answers {outcome}, "
              f"peak RSS {f['peak RSS MB']} MB")  # fmt: skip
        f["spurious errors"] += sum(o not in (413, "reset") for o in outcome)
        ts = int(time.time() * 1000)
        body = {"appKey": APP_KEY, "encryption": apim.token_encryption(APP_KEY, ts, APP_SECRET),
                "timestamp": ts}  # fmt: skip
        try:  # still serving
            conn = http.client.HTTPConnection(urlsplit(url).hostname, urlsplit(url).port, 10)
            conn.request("POST", apim.TOKEN_GET_PATH, body=json.dumps(body),
                         headers={"Content-Type": "application/json"})  # fmt: skip
            f["spurious errors"] += json.loads(conn.getresponse().read())["status"] != 0
            conn.close()
        except (OSError, ValueError, KeyError) as exc:
            t.note(f"emulator hostility: not serving after the large bodies: {exc!r}")
            f["spurious errors"] += 1

        # Many EnOS-backend clients, each with its pool of workers, registering and reading.
        cfg = dict(api_url=url, org_id=ORG, app_key=APP_KEY, app_secret=APP_SECRET,
                   dps_url=url, workers=s.client_threads, retries=0, timeout=30.0)  # fmt: skip
        clients = [EnosBackend(EnosConfig(**cfg)) for _ in range(s.clients)]
        latencies: list[float] = []
        errors: list[str] = []
        lock = threading.Lock()
        stop = time.monotonic() + s.client_seconds

        def work_(enos, name: str) -> None:
            i = 0
            while time.monotonic() < stop:
                i += 1
                dev = {"deviceSn": f"{name}-{i:05d}", "max_capacity": 1, "phase": "single"}
                try:
                    t0 = time.perf_counter()
                    new = enos.create(GROUP, count=1, device_data=dev)[0]
                    t1 = time.perf_counter()
                    ok = enos.get(new).sn == new
                    t2 = time.perf_counter()
                except Exception as exc:  # counted; this worker goes on
                    with lock:
                        errors.append(f"{name}: {exc!r}"[:300])
                    continue
                with lock:
                    latencies.extend((t1 - t0, t2 - t1))
                    if not ok:
                        errors.append(f"{name}: get returned another device")

        threads = [threading.Thread(target=work_, args=(enos, f"C{c:02d}T{k:02d}"), daemon=True)
                   for c, enos in enumerate(clients) for k in range(s.client_threads)]  # fmt: skip
        for th in threads:
            th.start()
        for th in threads:
            th.join(s.client_seconds + 60)
        hung = sum(th.is_alive() for th in threads)
        for enos in clients:
            enos.close()
    latencies.sort()
    slowest = latencies[-1] if latencies else 0.0
    t.say(f"  {s.clients} clients x {s.client_threads} threads for {s.client_seconds:g} s: "
          f"{len(latencies)} requests, {len(errors)} errors, slowest {slowest:.2f} s")  # fmt: skip
    for err in errors[:10]:
        t.note(f"emulator hostility client error: {err}")
    f["stalls"] += hung + sum(1 for x in latencies if x > 10)
    f["spurious errors"] += len(errors) + (not latencies)
    f["tracebacks"] += has_traceback(_read(log))
    return figures("emulator hostility", f, {"peak RSS MB": (300, "max")})


# -- 8. formula cells ---------------------------------------------------------------------------


def formula_cells(t: Torture) -> list[Figure]:
    """Values that start with = + - @ registered as they are; every CSV enosprov writes from
    them must be spreadsheet-safe (csvsafe.is_risky on every cell)."""
    from enosprov.domain.csvsafe import is_risky

    s = t.sizes
    work = t.dir("8-formulas")
    inputs = t.dir("8-formulas/inputs")
    out = t.dir("8-formulas/outputs")
    store = t.new_store(work / "store.db")
    tag = "=B-1+1"
    triggers = ["=", "+", "-", "@"]
    rows = []
    for i in range(s.formula_rows):
        trig = triggers[i % 4]
        rows.append([
            f"-F{i:04d}" if i % 2 else f"F-{i:04d}",  # a deviceSn may start with '-'
            f'{trig}HYPERLINK("http://x.example/{i}")', f"{triggers[(i + 1) % 4]}1+{i}",
            "+08:00" if i % 2 else "-03:30", f"{triggers[(i + 2) % 4]}SUM(A1:A{i + 1})", tag,
            str(-5 - i), "single", "2026-11-02", f"{triggers[(i + 3) % 4]}A{i}",
        ])  # fmt: skip
    good = inputs / "devices.csv"
    good.write_text(_csv_text(HEADER, rows), encoding="utf-8")
    conflicts = inputs / "conflicts.csv"  # same deviceSns, another site: every row a conflict
    conflicts.write_text(_csv_text(HEADER, [[*r[:9], "@other"] for r in rows]), encoding="utf-8")
    invalid = inputs / "invalid.csv"  # a formula where a number belongs, and new good rows
    invalid.write_text(_csv_text(HEADER, [[*r[:6], "=1+2", *r[7:]] for r in rows[:2]]
                                 + [[f"-G{i:04d}", *r[1:]] for i, r in enumerate(rows)]),
                       encoding="utf-8")  # fmt: skip
    old, new = rows[1][0], "-N0001"
    commands = [
        (["register", "--csv", str(good), "--group", GROUP, "--results", str(out / "r1.csv")],
         (0,)),
        (["register", "--csv", str(conflicts), "--group", GROUP, "--results",
          str(out / "r2.csv")], (5,)),
        (["register", "--csv", str(invalid), "--group", GROUP, "--skip-invalid", "--results",
          str(out / "r3.csv")], (5,)),
        (["devices", "export", "--group", GROUP, "--out", str(out / "devices.csv")], (0,)),
        (["burn", "export", "--group", GROUP, "--out", str(out / "burn"), "--dps-url",
          "http://dps.example"], (0,)),
        (["qr", "batch", "--group", GROUP, "--label-format", "zpl", "--out", str(out / "zpl")], (0,)),
        (["qr", "batch", "--group", GROUP, "--label-format", "pdf", "--out", str(out / "pdf")], (0,)),
        (["qr", "batch", "--group", GROUP, "--label-format", "png", "--batch-tag", tag, "--out",
          str(out / "png")], (0,)),
        (["replace", f"--new-device-sn={new}", "--group", GROUP, "--yes", "--out",
          str(out / "replaced"), "--dps-url", "http://dps.example", "--", old], (0,)),
        (["batches", "report", tag, "--group", GROUP, "--out", str(out / "report.html"),
          "--csv", str(out / "report.csv")], (0,)),
    ]  # fmt: skip
    f = {"formula cells": 0, "tracebacks": 0, "spurious errors": 0}
    for args, codes in commands:
        res = t.run(t.cmd(*args, store=store))
        f["tracebacks"] += res.traceback
        if res.returncode not in codes:
            f["spurious errors"] += 1
            t.note(f"formula cells: {_show(args)} exited {res.returncode}: {res.stderr[-1500:]}")
    files = sorted(out.rglob("*.csv"))
    cells = 0
    for path in files:
        with open(path, encoding="utf-8-sig", newline="") as fh:
            for rowno, row in enumerate(csv.reader(fh), 1):
                cells += len(row)
                for cell in row:
                    if is_risky(cell):
                        f["formula cells"] += 1
                        t.note(f"formula cell in {path.relative_to(out)} row {rowno}: {cell!r}")
    expected = {"r1.csv", "r2.csv", "r3.csv", "devices.csv", "manifest.csv", "report.csv"}
    missing = expected - {p.name for p in files}
    f["spurious errors"] += len(missing)
    t.say(f"  {len(files)} CSV files, {cells} cells checked"
          + (f"; missing: {sorted(missing)}" if missing else ""))  # fmt: skip
    return figures("formula cells", f)


# -- the runner ---------------------------------------------------------------------------------

SCENARIOS: dict[str, Callable[[Torture], list[Figure]]] = {
    "register": registration_kills,
    "stations": concurrent_stations,
    "exports": export_kills,
    "replace": replace_races,
    "fuzz": fuzzed_csvs,
    "api": api_faults,
    "hostility": emulator_hostility,
    "formulas": formula_cells,
}


def print_table(results: list[Figure]) -> None:
    print(f"{'scenario / figure':46} {'value':>10} {'target':>10}")
    for fig in results:
        label = f"{fig.scenario}: {fig.name}"
        if fig.value is None:
            print(f"{label:46} {'skipped':>10}")
            continue
        bound = ("<= " if fig.kind == "max" else ">= ") + f"{fig.target:g}"
        print(f"{label:46} {fig.value:>10g} {bound:>10}  {'ok' if fig.ok else 'MISSED'}")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="the short version (make test)")
    ap.add_argument("--seed", type=int, default=None, help="random seed (default: a new one)")
    ap.add_argument("--out", type=Path, default=ROOT / "torture-out")
    ap.add_argument("--only", action="append", choices=list(SCENARIOS),
                    help="run only this scenario (repeatable)")  # fmt: skip
    ap.add_argument("--size", action="append", default=[], metavar="NAME=N",
                    help="override a size of the mode (fuzz_files=300; see Sizes)")  # fmt: skip
    ap.add_argument("--quiet", action="store_true", help="no progress lines on stderr")
    args = ap.parse_args(argv)
    if not POSIX:
        print("torture: needs kill -9 (POSIX)", file=sys.stderr)
        return 2
    seed = args.seed if args.seed is not None else random.randrange(1 << 30)
    sizes = QUICK if args.quick else FULL
    for item in args.size:
        name, _, value = item.partition("=")
        if name not in Sizes.__dataclass_fields__:
            ap.error(f"--size: unknown size {name!r}")
        sizes = replace(sizes, **{name: type(getattr(sizes, name))(value)})
    shutil.rmtree(args.out, ignore_errors=True)
    args.out.mkdir(parents=True)
    t = Torture(args.out.resolve(), seed, sizes, verbose=not args.quiet)
    t.say(f"torture ({'quick' if args.quick else 'full'}), seed {seed}, out {args.out}")
    results: list[Figure] = []
    timings = {}
    started = time.perf_counter()
    for name, scenario in SCENARIOS.items():
        if args.only and name not in args.only:
            continue
        t.say(f"[{name}]")
        t0 = time.perf_counter()
        try:
            results += scenario(t)
        except Exception as exc:  # a broken scenario is a missed target, not a crash
            import traceback

            t.note(traceback.format_exc())
            results.append(Figure(name, f"scenario failed: {exc!r}"[:60], 1))
        timings[name] = round(time.perf_counter() - t0, 1)
        t.say(f"  ({timings[name]} s)")
    total = round(time.perf_counter() - started, 1)
    print_table(results)
    missed = [fig for fig in results if not fig.ok]
    print(f"seed {seed}, {total} s, {len(missed)} missed"
          + ("" if not missed else f" (details in {args.out / 'torture.log'})"))  # fmt: skip
    (args.out / "results.json").write_text(json.dumps({
        "mode": "quick" if args.quick else "full", "seed": seed, "seconds": total,
        "timings": timings, "sizes": asdict(sizes),
        "figures": [dict(asdict(fig), ok=fig.ok) for fig in results],
    }, indent=2))  # fmt: skip
    return 1 if missed else 0


if __name__ == "__main__":
    sys.exit(main())
