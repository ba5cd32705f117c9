"""`make bench`: the performance targets of the issues, measured on this machine.

1. Register 100,000 valid rows (10 columns, 4 of them master data) into an empty store through the
   real CLI, and, in the same run, a bare baseline over the same file (csv.reader + sqlite3
   executemany into the same schema, no validation). Reports the median of 3 runs of each (fresh
   stores) and their ratio (goal <= 2).
2. Peak memory (max RSS of the CLI process) at 100,000 and 1,000,000 rows (goal <= 150 MB).
3. `enosprov --help` wall time (median of 7, goal <= 0.3 s).

QR labels (benchmarks/qr_bench.py, skip with --skip-qr): a 10,000-label A4 PDF (wall <= 10 s,
peak RSS <= 300 MB, file <= 30 MB), 10,000 ZPL labels (<= 3 s), PNG / SVG labels per second.

The factory line (benchmarks/station_bench.py, skip with --skip-station): `station` per unit on
the local store (<= 30 ms, >= 20x the same cycle as four CLI calls), one-shot `register
--device-sn` (<= 0.35 s), `station` through an EnOS profile (one token request for the run).

Offline first (benchmarks/sync_bench.py, skip with --skip-sync; emulators on loopback): `sync
push` of 10,000 devices registered offline, at 20 ms per request, against the same devices
created one request at a time (a --sync-naive-rows sample, extrapolated: >= 8x), each deviceSn
once in EnOS afterwards (0 duplicates); `sync pull` of 100,000 linked devices' state (a tenth
changed in EnOS): devices/s, peak RSS of the CLI process (<= 150 MB), its report checked.

The store on PostgreSQL (benchmarks/pg_bench.py, skip with --skip-pg; a throwaway server from
the system's initdb / pg_ctl, fsync on; skipped with a line saying why when PostgreSQL is not
installed): `--store postgresql://... register --csv` of the same --rows file (median of 3 fresh
databases, <= 3 s) and its ratio to a bare COPY of the same rows (aim <= 2.5); 8 station
processes registering 5,000 single units at once (units/s next to the same load on SQLite; 0
duplicates, 0 devices without their journal record, on both); `batches list` over 1,000,000
devices in 100 batches (<= 1 s, as on SQLite).

Usage: python benchmarks/run.py [--rows N] [--big-rows N] [--skip-big] [--skip-burn] [--skip-qr]
       [--skip-enos] [--skip-sync] [--sync-naive-rows N] [--skip-station] [--skip-pg] [--out DIR]
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import shutil
import sqlite3
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
HEADER = [
    "deviceSn", "deviceName", "deviceName.zh_CN", "timezone", "desc", "batchTag",
    "max_capacity", "phase", "install_date", "site",
]  # fmt: skip


def enosprov_cmd() -> list[str]:
    exe = shutil.which("enosprov", path=str(Path(sys.executable).parent))
    return [exe] if exe else [sys.executable, "-m", "enosprov"]


def make_csv(path: Path, rows: int) -> None:
    with open(path, "w", encoding="utf-8", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(HEADER)
        for i in range(rows):
            w.writerow(
                [
                    f"MTR-{i:09d}",
                    f"Meter {i}",
                    f"电表 {i}",
                    "+08:00" if i % 2 else "Europe/Berlin",
                    "bench unit" if i % 3 == 0 else "",
                    f"B-{i // 10000:03d}",
                    str(40 + i % 60),
                    "single" if i % 2 else "three",
                    f"2026-11-{1 + i % 28:02d}",
                    f"Plant {i % 7}, hall {i % 5}",
                ]
            )


def run(cmd: list[str], **kw) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, capture_output=True, text=True, **kw)


def timed_child(cmd: list[str]) -> tuple[float, float, subprocess.CompletedProcess]:
    """(wall seconds, peak RSS MB of this child) for one command."""
    import resource  # POSIX; the bench is run by developers and CI on Linux

    before = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    t0 = time.perf_counter()
    proc = run(cmd)
    wall = time.perf_counter() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    # ru_maxrss of children is the max over all children so far: measure the big run last.
    peak_kb = max(after, before) if after > before else after
    return wall, peak_kb / 1024, proc


def setup_store(store: Path) -> None:
    cli = [*enosprov_cmd(), "--store", str(store)]
    for args in (
        ["masterdata", "create", "--file", str(ROOT / "examples" / "masterdata.toml")],
        ["group", "create", "--id", "bench", "--name", "Bench", "--product-key", "pk",
         "--region", "eu2", "--org", "o1", "--masterdata", "meters"],
    ):  # fmt: skip
        proc = run(cli + args)
        if proc.returncode:
            sys.exit(f"setup failed: {proc.stderr}")


def bare_baseline(csv_path: Path, store: Path) -> float:
    """csv.reader + executemany into the same schema; same pragmas; no validation."""
    from enosprov.backends.local import LocalBackend
    from enosprov.backends.local_schema import INSERT_DEVICE

    LocalBackend(store).close()  # creates the schema
    conn = sqlite3.connect(store, isolation_level=None)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=FULL")
    conn.execute(
        "INSERT INTO registration_groups (group_id, name, group_secret, product_key, "
        "masterdata_group_id, reprovision_method, model_type, sign_scheme, create_time, "
        "update_time) VALUES ('bench', 'Bench', 's', 'pk', 'builtin', 'migrate', 'public', "
        "'sn-ts-secret', 0, 0)"
    )
    t0 = time.perf_counter()
    with open(csv_path, encoding="utf-8", newline="") as fh:
        reader = csv.reader(fh)
        next(reader)
        conn.execute("BEGIN IMMEDIATE")
        conn.executemany(
            INSERT_DEVICE,
            (
                (f"s{i}", "bench", r[0], "pk", 1, r[5], None, r[9], r[4], "u", 0, "u", 0, None)
                for i, r in enumerate(reader)
            ),
        )
        conn.execute("COMMIT")
    elapsed = time.perf_counter() - t0
    conn.close()
    return elapsed


def register(csv_path: Path, store: Path) -> tuple[float, float, dict]:
    setup_store(store)
    cmd = [*enosprov_cmd(), "--store", str(store), "register", "--csv", str(csv_path),
           "--group", "bench", "--json"]  # fmt: skip
    wall, peak, proc = timed_child(cmd)
    if proc.returncode:
        sys.exit(
            f"register failed ({proc.returncode}): {proc.stdout[-2000:]} {proc.stderr[-2000:]}"
        )
    return wall, peak, json.loads(proc.stdout)["data"]


def help_time() -> float:
    cmd = [*enosprov_cmd(), "--help"]
    run(cmd)  # warm the file cache
    samples = []
    for _ in range(7):
        t0 = time.perf_counter()
        run(cmd)
        samples.append(time.perf_counter() - t0)
    return statistics.median(samples)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, default=100_000)
    ap.add_argument("--big-rows", type=int, default=1_000_000)
    ap.add_argument("--skip-big", action="store_true", help="skip the 1,000,000-row memory run")
    ap.add_argument("--skip-enos", action="store_true", help="skip the EnOS backend runs")
    ap.add_argument("--enos-rows", type=int, default=10_000)
    ap.add_argument(
        "--latency-rows", type=int, default=10_000, help="batch size of the 20 ms latency runs"
    )
    ap.add_argument("--skip-burn", action="store_true", help="skip the burn-file export runs")
    ap.add_argument("--burn-rows", type=int, default=100_000)
    ap.add_argument("--skip-qr", action="store_true", help="skip the QR label (PDF/ZPL) runs")
    ap.add_argument("--skip-sync", action="store_true", help="skip the sync push/pull runs")
    ap.add_argument(
        "--sync-naive-rows", type=int, default=1_000,
        help="naive baseline of the sync push: devices timed (then extrapolated to 10,000)",
    )  # fmt: skip
    ap.add_argument("--skip-station", action="store_true", help="skip the factory-line runs")
    ap.add_argument("--skip-pg", action="store_true", help="skip the PostgreSQL store runs")
    ap.add_argument("--out", type=Path, default=ROOT / "bench-out")
    args = ap.parse_args()
    shutil.rmtree(args.out, ignore_errors=True)
    args.out.mkdir(parents=True)
    results = {}

    small = args.out / f"devices-{args.rows}.csv"
    make_csv(small, args.rows)
    if hasattr(os, "sync"):
        os.sync()  # flush the generated CSV first: writeback would slow the commits' fsyncs
    bare = statistics.median(bare_baseline(small, args.out / f"bare-{i}.db") for i in range(3))
    runs = [register(small, args.out / f"store-{i}.db") for i in range(3)]
    for _, _, report in runs:
        assert report["created"] == args.rows, report
    wall = statistics.median(r[0] for r in runs)  # median of 3 fresh stores, like the baseline
    peak = max(r[1] for r in runs)
    results["register_rows"] = args.rows
    results["register_wall_s"] = round(wall, 3)
    results["register_rows_per_s"] = round(args.rows / wall)
    results["bare_baseline_s"] = round(bare, 3)
    results["ratio_register_to_bare"] = round(wall / bare, 2)
    results["register_peak_rss_mb"] = round(peak, 1)
    results["help_median_s"] = round(help_time(), 3)

    if not args.skip_big:
        big = args.out / f"devices-{args.big_rows}.csv"
        make_csv(big, args.big_rows)
        wall, peak, report = register(big, args.out / "big.db")
        assert report["created"] == args.big_rows, report
        results["big_rows"] = args.big_rows
        results["big_register_wall_s"] = round(wall, 2)
        results["big_register_peak_rss_mb"] = round(peak, 1)
        import batches_bench

        results.update(batches_bench.run(enosprov_cmd(), args.out / "big.db"))

    if not args.skip_burn:
        import burn_bench

        results.update(burn_bench.run(args.out, make_csv, args.burn_rows, 10_000))

    if not args.skip_qr:
        import qr_bench

        results.update(qr_bench.run(args.out, make_csv))

    if not args.skip_enos:
        import enos_bench

        results.update(enos_bench.run(args.out, make_csv, args.enos_rows, args.latency_rows))

    if not args.skip_sync:
        import sync_bench

        results.update(sync_bench.run(args.out, make_csv, naive_rows=args.sync_naive_rows))

    if not args.skip_station:
        import station_bench

        results.update(station_bench.run(args.out))

    if not args.skip_pg:
        import pg_bench

        results.update(pg_bench.run(args.out, small, args.rows))

    # measure -> (target, "max" | "min")
    targets = {
        "register_wall_s": (2.0, "max"),
        "ratio_register_to_bare": (2.0, "max"),
        "register_peak_rss_mb": (150, "max"),
        "big_register_peak_rss_mb": (150, "max"),
        "help_median_s": (0.3, "max"),
        "batches_list_wall_s": (1.0, "max"),
        "enos_devices_per_s": (500, "min"),
        "enos_20ms_speedup": (8, "min"),
        "burn_json_wall_s": (20, "max"),
        "qr_pdf_wall_s": (10, "max"),
        "qr_pdf_peak_rss_mb": (300, "max"),
        "qr_pdf_file_mb": (30, "max"),
        "qr_zpl_wall_s": (3, "max"),
        "sync_push_speedup": (8, "min"),
        "sync_push_duplicates": (0, "max"),
        "sync_push_missing": (0, "max"),
        "sync_push_failed": (0, "max"),
        "sync_pull_peak_rss_mb": (150, "max"),
        "sync_pull_report_mismatch": (0, "max"),
        "sync_pull_failed": (0, "max"),
        "station_ms_per_unit": (30, "max"),
        "station_speedup": (20, "min"),
        "register_one_unit_wall_s": (0.35, "max"),
        "station_enos_token_requests": (1, "max"),
        "pg_register_100k_wall_s": (3.0, "max"),
        "pg_register_ratio": (2.5, "max"),  # an aim, like ratio_register_to_bare
        "pg_stations_duplicates": (0, "max"),
        "pg_stations_lost_journal": (0, "max"),
        "pg_stations_failed_units": (0, "max"),
        "sqlite_stations_duplicates": (0, "max"),
        "sqlite_stations_lost_journal": (0, "max"),
        "sqlite_stations_failed_units": (0, "max"),
        "pg_batches_list_1m_wall_s": (1.0, "max"),
    }
    print(f"{'measure':34} {'value':>12} {'target':>10}")
    for key, value in results.items():
        target, kind = targets.get(key, (None, None))
        if target is None:
            print(f"{key:34} {value:>12}")
            continue
        ok = value <= target if kind == "max" else value >= target
        bound = ("<= " if kind == "max" else ">= ") + str(target)
        print(f"{key:34} {value:>12} {bound:>10}  {'ok' if ok else 'MISSED'}")
    (args.out / "results.json").write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
