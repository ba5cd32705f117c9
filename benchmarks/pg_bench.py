"""The store on PostgreSQL (`--store postgresql://...`), run by benchmarks/run.py (skip with
--skip-pg) or alone: python benchmarks/pg_bench.py [--out DIR] [--rows N].

A throwaway server (tests/pgserver.py: the system's initdb / pg_ctl, Unix socket), restarted
with fsync on (pgserver starts it with fsync=off for the tests: commits would cost nothing,
unlike SQLite's synchronous=FULL); a fresh database per measured run.

1. `register --csv` of the 100,000-row file through the CLI (wall time of the child, start-up
   included; median of 3 fresh databases, <= 3 s) and, in the same run, a bare COPY of the same
   rows into the same table (csv.reader + psycopg `copy.write_row`, rows mapped as run.py's
   SQLite baseline maps them, committed; median of 3): their ratio (aim <= 2.5).
2. 8 station processes registering single units at once (625 each, 5,000 in all; one
   `api.register_records` per unit, as `station` and `register --device-sn` do: one
   transaction and its journal record each), started together: units/s, duplicates and
   devices without their "register" journal record (both 0); the same load on an SQLite store.
3. `batches list --json` over 1,000,000 devices in 100 batches (filled by COPY; a tenth
   allocated and connected, a fifth with an "exported" journal mark, as batches_bench.py does
   on SQLite; then VACUUM ANALYZE so that the counts come from index-only scans): median of 3
   after one warm-up, <= 1 s.

If PostgreSQL (initdb) or psycopg is missing, says so and measures nothing.
"""

from __future__ import annotations

import argparse
import csv
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
HERE = Path(__file__).resolve().parent
STATIONS, STATION_UNITS = 8, 5000
BIG_DEVICES, BIG_BATCHES = 1_000_000, 100
GROUP = "bench"


# -- the server ------------------------------------------------------------------------------------


def _start_server():
    """A throwaway server with fsync on, or None (and why) when PostgreSQL is missing."""
    sys.path.insert(0, str(ROOT / "tests"))
    try:
        import psycopg  # noqa: F401
    except ImportError:
        return None, "psycopg is not installed (pip install 'enosprov[postgres]')"
    import pgserver

    try:
        server = pgserver.start()
    except RuntimeError as exc:
        return None, str(exc)
    try:
        _fsync_on(server)
    except BaseException:
        server.stop()
        raise
    return server, None


def _fsync_on(server) -> None:
    """Restart with pgserver's options minus fsync=off: durable commits, as in a plant."""
    import psycopg

    data = server.root / "data"
    options = (
        f"-k {server.socket_dir} -c listen_addresses=127.0.0.1 -p {server.port} "
        "-c max_connections=100"
    )
    subprocess.run(
        [*server.run_as, server.pg_ctl, "-D", str(data), "-l", str(server.root / "server.log"),
         "-o", options, "-m", "fast", "-w", "-t", "60", "restart"],
        check=True, capture_output=True, timeout=120,
    )  # fmt: skip
    deadline = time.monotonic() + 30
    while True:
        try:
            with psycopg.connect(server.url(), connect_timeout=2) as conn:
                fsync = conn.execute("SHOW fsync").fetchone()[0]
            break
        except psycopg.OperationalError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)
    if fsync != "on":
        raise RuntimeError(f"fsync is {fsync} after the restart")


def _fresh_db(server, name: str) -> str:
    import psycopg

    with psycopg.connect(server.url(), autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}"')
        conn.execute(f'CREATE DATABASE "{name}"')
    return server.url(dbname=name)


def _drop_db(server, name: str) -> None:
    import psycopg

    with psycopg.connect(server.url(), autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}"')


def _checkpoint(server) -> None:
    """Start each timed run with no dirty buffers left by the one before (as run.py syncs)."""
    import psycopg

    with psycopg.connect(server.url(), autocommit=True) as conn:
        conn.execute("CHECKPOINT")


# -- 1. register 100,000 rows ----------------------------------------------------------------------


def bare_copy(csv_path: Path, url: str) -> float:
    """csv.reader + COPY into the same schema (PgStore's), rows mapped as run.py's SQLite
    baseline maps them; no validation. One transaction, committed."""
    import psycopg

    from enosprov.backends.local_schema import COPY_DEVICES
    from enosprov.backends.pg_store import PgStore

    PgStore(url).close()  # creates the schema (and the journal's)
    with psycopg.connect(url) as conn:
        conn.execute(
            "INSERT INTO registration_groups (group_id, name, group_secret, product_key, "
            "masterdata_group_id, reprovision_method, model_type, sign_scheme, create_time, "
            "update_time) VALUES ('bench', 'Bench', 's', 'pk', 'builtin', 'migrate', 'public', "
            "'sn-ts-secret', 0, 0)"
        )
        conn.commit()
        t0 = time.perf_counter()
        with open(csv_path, encoding="utf-8", newline="") as fh:
            reader = csv.reader(fh)
            next(reader)
            with conn.cursor() as cur, cur.copy(COPY_DEVICES) as copy:
                for i, r in enumerate(reader):
                    copy.write_row(
                        (f"s{i}", "bench", r[0], "pk", 1, r[5], None, r[9], r[4], "u", 0, "u", 0,
                         None, "init", "init", "init")
                    )  # fmt: skip
        conn.commit()
        return time.perf_counter() - t0


def register_cli(csv_path: Path, url: str, rows: int) -> float:
    from run import enosprov_cmd, setup_store, timed_child

    setup_store(url)  # its str() is the --store value: a URL works as a path does
    cmd = [*enosprov_cmd(), "--store", url, "register", "--csv", str(csv_path),
           "--group", GROUP, "--json"]  # fmt: skip
    wall, _, proc = timed_child(cmd)
    if proc.returncode:
        raise SystemExit(
            f"register on PostgreSQL failed ({proc.returncode}): {proc.stdout[-2000:]} "
            f"{proc.stderr[-2000:]}"
        )
    report = json.loads(proc.stdout)["data"]
    assert report["created"] == rows, report
    return wall


def register_100k(server, csv_path: Path, rows: int) -> dict:
    bare, walls = [], []
    for i in range(3):
        _checkpoint(server)
        bare.append(bare_copy(csv_path, _fresh_db(server, f"bare{i}")))
        _drop_db(server, f"bare{i}")
    for i in range(3):
        _checkpoint(server)
        walls.append(register_cli(csv_path, _fresh_db(server, f"reg{i}"), rows))
        _drop_db(server, f"reg{i}")
    wall, base = statistics.median(walls), statistics.median(bare)
    return {
        "pg_register_rows": rows,
        "pg_register_100k_wall_s": round(wall, 3),
        "pg_register_rows_per_s": round(rows / wall),
        "pg_bare_copy_100k_wall_s": round(base, 3),
        "pg_register_ratio": round(wall / base, 2),
    }


# -- 2. 8 stations registering single units --------------------------------------------------------


def worker(store: str, station: str, first: int, count: int, ready: Path, go: Path) -> None:
    """One station process: register units one at a time once ``go`` exists; print a JSON
    line (start and end epoch seconds, units created, failures)."""
    from enosprov import api
    from enosprov.domain.errors import EnosprovError

    def row(n: int) -> dict:
        return {"deviceSn": f"ST-{n:07d}", "timezone": "+01:00", "max_capacity": "60",
                "phase": "single"}  # fmt: skip

    with api.open_session(store=store, station=station) as session:
        # loads the registration code and checks the group, writing nothing (no journal record)
        api.register_records(session, [row(first)], GROUP, dry_run=True)
        ready.touch()
        while not go.exists():
            time.sleep(0.001)
        t0 = time.time()
        created, errors = 0, []
        for n in range(first, first + count):
            try:
                report = api.register_records(session, [row(n)], GROUP, name=f"unit ST-{n:07d}")
                created += report.created
            except EnosprovError as exc:
                errors.append(str(exc))
        t1 = time.time()
    print(json.dumps({"start": t0, "end": t1, "created": created, "errors": errors[:5],
                      "failed": len(errors)}))  # fmt: skip


def stations(store: str, work: Path) -> dict:
    """Run the 8 stations against ``store``; their figures and the store's checks."""
    work.mkdir(parents=True, exist_ok=True)
    go = work / "go"
    go.unlink(missing_ok=True)
    share = STATION_UNITS // STATIONS
    procs, readies = [], []
    for i in range(STATIONS):
        ready = work / f"ready-{i}"
        ready.unlink(missing_ok=True)
        readies.append(ready)
        cmd = [sys.executable, str(Path(__file__).resolve()), "--worker", "--store", store,
               "--station", f"st{i}", "--first", str(i * share), "--count", str(share),
               "--ready", str(ready), "--go", str(go)]  # fmt: skip
        procs.append(subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE))
    outs = []
    try:
        deadline = time.monotonic() + 120
        while not all(r.exists() for r in readies):
            if any(p.poll() is not None for p in procs) or time.monotonic() > deadline:
                for p in procs:
                    p.kill()
                errs = [p.communicate()[1].decode()[-1500:] for p in procs]
                raise SystemExit(f"a station did not start: {' | '.join(e for e in errs if e)}")
            time.sleep(0.01)
        start = time.time()
        go.touch()
        for p in procs:
            stdout, stderr = p.communicate(timeout=600)
            if p.returncode:
                raise SystemExit(f"a station failed ({p.returncode}): {stderr.decode()[-2000:]}")
            outs.append(json.loads(stdout.decode().strip().splitlines()[-1]))
    finally:
        for p in procs:  # on an error: no station left running
            if p.poll() is None:
                p.kill()
                p.wait()
    wall = max(o["end"] for o in outs) - start
    failed = sum(o["failed"] for o in outs)
    if failed:
        print(f"  station errors ({failed}): {[e for o in outs for e in o['errors']][:3]}")
    checks = _check_store(store)
    return {
        "units_per_s": round(STATION_UNITS / wall, 1),
        "wall_s": round(wall, 2),
        "failed_units": failed,
        **checks,
    }


def _check_store(store: str) -> dict:
    """Devices, duplicates (store rows per deviceSn, journal listings per device) and devices
    that no "register" record lists ("lost" journal records)."""
    queries = {
        "devices": "SELECT count(*) FROM devices WHERE group_id = 'bench'",
        "distinct": "SELECT count(*) FROM (SELECT DISTINCT group_id, device_sn FROM devices "
        "WHERE group_id = 'bench') AS d",
        "records": "SELECT count(*) FROM journal WHERE operation = 'register' AND outcome = 'ok' "
        "AND devices > 0",
        "listed": "SELECT count(*) FROM journal_devices jd JOIN journal j ON j.id = jd.entry "
        "WHERE j.operation = 'register' AND j.outcome = 'ok'",
        "listed_distinct": "SELECT count(DISTINCT jd.sn) FROM journal_devices jd JOIN journal j "
        "ON j.id = jd.entry WHERE j.operation = 'register' AND j.outcome = 'ok'",
        "unlisted": "SELECT count(*) FROM devices d WHERE group_id = 'bench' AND NOT EXISTS "
        "(SELECT 1 FROM journal_devices jd JOIN journal j ON j.id = jd.entry "
        "WHERE jd.sn = d.sn AND j.operation = 'register' AND j.outcome = 'ok')",
    }
    if store.startswith("postgresql://"):
        import psycopg

        with psycopg.connect(store) as conn:
            got = {k: conn.execute(q).fetchone()[0] for k, q in queries.items()}
    else:
        import sqlite3

        conn = sqlite3.connect(store)
        got = {k: conn.execute(q).fetchone()[0] for k, q in queries.items()}
        conn.close()
    # units that a station registered but that are not stored count as lost too
    missing = max(0, STATION_UNITS - got["distinct"])
    return {
        "devices": got["devices"],
        "journal_records": got["records"],
        "duplicates": (got["devices"] - got["distinct"]) + (got["listed"] - got["listed_distinct"]),
        "lost_journal": got["unlisted"] + missing,
    }


def stations_both(server, out: Path) -> dict:
    from run import setup_store

    url = _fresh_db(server, "stations")
    setup_store(url)
    _checkpoint(server)
    pg = stations(url, out / "pg-stations")
    sqlite_store = out / "pg-stations-sqlite.db"
    for suffix in ("", "-wal", "-shm"):
        Path(f"{sqlite_store}{suffix}").unlink(missing_ok=True)
    setup_store(sqlite_store)
    lite = stations(str(sqlite_store), out / "sqlite-stations")
    results = {"pg_stations_units": STATION_UNITS}
    for prefix, res in (("pg", pg), ("sqlite", lite)):
        results[f"{prefix}_stations_8x_units_per_s"] = res["units_per_s"]
    for prefix, res in (("pg", pg), ("sqlite", lite)):
        for key in ("duplicates", "lost_journal", "failed_units", "devices", "journal_records"):
            results[f"{prefix}_stations_{key}"] = res[key]
    _drop_db(server, "stations")
    return results


# -- 3. batches list over 1,000,000 devices --------------------------------------------------------


def _fill(url: str, devices: int, batches: int) -> None:
    """``devices`` registered devices in ``batches`` batch tags of the bench group, by COPY."""
    import psycopg

    from enosprov.backends.local_schema import COPY_DEVICES

    per_batch = devices // batches
    base = int(time.time() * 1000) - 30 * 86_400_000
    data = json.dumps({"max_capacity": 60, "phase": "single", "site": "Plant 1, hall 2",
                       "timezone": "+01:00"}, sort_keys=True)  # fmt: skip
    with psycopg.connect(url) as conn:
        with conn.cursor() as cur, cur.copy(COPY_DEVICES) as copy:
            for i in range(devices):
                b = i // per_batch
                t = base + b * 3_600_000 + (i % per_batch) * 10
                copy.write_row(
                    (f"BIG{i:013d}", GROUP, f"MTR-{i:09d}", "pk", b + 1, f"B-{b:03d}", None, data,
                     None, "bench", t, "bench", t, None, "init", "init", "init")
                )  # fmt: skip
        conn.execute("UPDATE meta SET value = %s WHERE key = 'batch_order'", (str(batches),))
        conn.commit()


def _activity(url: str) -> None:
    """batches_bench.activity (through the store, as on SQLite), then VACUUM ANALYZE so that
    the counts come from index-only scans, as autovacuum would leave them."""
    import psycopg
    from batches_bench import activity

    activity(url)
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("VACUUM ANALYZE devices")  # visibility map: index-only scans
        conn.execute("VACUUM ANALYZE journal_marks")
        conn.execute("ANALYZE")


def batches_1m(server, rounds: int = 3) -> dict:
    from run import enosprov_cmd, setup_store

    url = _fresh_db(server, "big")
    setup_store(url)  # the schema (PgStore's), master data and the group, as on SQLite
    t0 = time.perf_counter()
    _fill(url, BIG_DEVICES, BIG_BATCHES)
    _activity(url)
    fill = time.perf_counter() - t0
    _checkpoint(server)
    walls, out = [], None
    for _ in range(rounds + 1):  # the first run warms the server's and the OS's caches
        t0 = time.perf_counter()
        proc = subprocess.run([*enosprov_cmd(), "--store", url, "batches", "list", "--json"],
                              capture_output=True, text=True)  # fmt: skip
        walls.append(time.perf_counter() - t0)
        if proc.returncode:
            raise SystemExit(f"batches list on PostgreSQL failed: {proc.stderr[-2000:]}")
        out = json.loads(proc.stdout)["data"]
    registered = sum(b["counts"]["registered"] for b in out)
    assert len(out) == BIG_BATCHES and registered == BIG_DEVICES, (len(out), registered)
    _drop_db(server, "big")
    return {
        "pg_batches_list_batches": len(out),
        "pg_batches_list_devices": registered,
        "pg_batches_list_1m_wall_s": round(statistics.median(walls[1:]), 3),
        "pg_batches_list_first_wall_s": round(walls[0], 3),
        "pg_big_fill_s": round(fill, 1),
    }


# -- entry points ----------------------------------------------------------------------------------


def run(out: Path, csv_path: Path, rows: int) -> dict:
    """Every PostgreSQL measure ({} when PostgreSQL is not there: a line says why)."""
    if str(HERE) not in sys.path:
        sys.path.insert(0, str(HERE))
    server, why = _start_server()
    if server is None:
        print(f"PostgreSQL benchmarks skipped: {why}")
        return {}
    try:
        import psycopg

        with psycopg.connect(server.url()) as conn:
            version = conn.execute("SHOW server_version").fetchone()[0].split()[0]
        results: dict = {"pg_server": f"{version} fsync=on"}
        results.update(register_100k(server, csv_path, rows))
        results.update(stations_both(server, out))
        results.update(batches_1m(server))
        return results
    finally:
        server.stop()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=ROOT / "bench-out")
    ap.add_argument("--rows", type=int, default=100_000)
    ap.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    for name in ("--store", "--station", "--ready", "--go"):
        ap.add_argument(name, help=argparse.SUPPRESS)
    ap.add_argument("--first", type=int, help=argparse.SUPPRESS)
    ap.add_argument("--count", type=int, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.worker:
        worker(args.store, args.station, args.first, args.count, Path(args.ready), Path(args.go))
        return
    sys.path.insert(0, str(HERE))
    from run import make_csv

    args.out.mkdir(parents=True, exist_ok=True)
    csv_path = args.out / f"devices-{args.rows}.csv"
    if not csv_path.exists():
        make_csv(csv_path, args.rows)
    t0 = time.perf_counter()
    results = run(args.out, csv_path, args.rows)
    for key, value in results.items():
        print(f"{key:34} {value:>12}")
    print(f"(PostgreSQL part: {time.perf_counter() - t0:.0f} s)")
    (args.out / "pg-results.json").write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
