"""Offline first (issue 18): `sync push` and `sync pull` against the emulator, run by
benchmarks/run.py (skip with --skip-sync), or alone: python benchmarks/sync_bench.py --out DIR.

1. Push. A plant store (`group import` from a profile pointing at the emulator, then 10,000 rows
   registered offline) is pushed with `enosprov sync push --json` (a subprocess, wall time) to
   an emulator adding 20 ms per request. Baseline in the same run: the same devices (same
   master data, batch tag, description) created one request at a time, waiting for each
   answer, in a fresh copy of the tenant at the same latency (enos_bench's naive loop). A
   sequential loop at a fixed latency is linear in its size, so by default it times a sample
   (--naive-rows, 1,000) and extrapolates to 10,000: the key then says "extrapolated". The
   tenant must then hold each deviceSn exactly once (sqlite3 on its store, emulator stopped).
2. Pull. 100,000 devices in a plant store and in the tenant, linked (the plant registers them
   through the CLI; the tenant's rows and the plant's sync_links are copied with SQL, a real
   push of 100,000 would take minutes); a tenth of them allocated and connected in the tenant.
   `enosprov sync pull --json` against the emulator (no added latency): wall time, devices/s,
   peak RSS of the CLI process (started from a small launcher that waits for it: a child of
   this big benchmark process would start its peak at the parent's size), and its report must say inEnos == 100,000, updated == the devices changed.

Fail soft: when the tenant's base store cannot be made, the whole part is skipped with a line
saying why; a push or pull part that fails (its setup, its command, its report) prints why,
records sync_push_failed / sync_pull_failed = 1 (a MISSED row in run.py's table) and the bench
runs on. The emulators are always stopped.
"""

from __future__ import annotations

import argparse
import json
import os
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
MASTERDATA = ROOT / "examples" / "masterdata.toml"
GROUP = "bench"  # the tenant's group (enos_bench._setup_store: product key pk, master data meters)
PROFILE = "tenant"
CLEAN_ENV = ("ENOSPROV_PROFILE", "ENOSPROV_STORE", "ENOSPROV_JOURNAL", "ENOSPROV_STATION",
             "ENOSPROV_TOKEN_CACHE")  # fmt: skip


class Setup:
    """The CLI, its environment (config file, secrets, token cache) and the tenant's base store."""

    def __init__(self, out: Path) -> None:
        from enos_bench import APP_SECRET, _setup_store

        self.out = out
        self.cli = [sys.executable, "-m", "enosprov"]
        self.env = {k: v for k, v in os.environ.items() if k not in CLEAN_ENV}
        self.env.update(ENOSPROV_CONFIG=str(out / "sync-config.toml"),
                        ENOSPROV_CACHE_DIR=str(out / "sync-cache"),
                        SYNC_BENCH_APP_SECRET=APP_SECRET)  # fmt: skip
        self.tenant_base = out / "sync-tenant-base.db"
        _setup_store(self.cli, self.tenant_base, MASTERDATA)
        with sqlite3.connect(self.tenant_base) as conn:
            (secret,) = conn.execute(
                "SELECT group_secret FROM registration_groups WHERE group_id=?", (GROUP,)
            ).fetchone()
        conn.close()
        self.env["SYNC_BENCH_GROUP_SECRET"] = secret

    def tenant(self, name: str) -> Path:
        """A fresh copy of the tenant's store (its group, no devices)."""
        dst = self.out / name
        with sqlite3.connect(self.tenant_base) as src, sqlite3.connect(dst) as to:
            src.backup(to)
        src.close()
        to.close()
        return dst

    def profile(self, url: str) -> None:
        """(Re)point the profile at the emulator at ``url``, with the tenant's group."""
        from enos_bench import APP_KEY

        self.ok(["config", "create", PROFILE, "--api-url", url, "--org", "o1", "--access-key",
                 APP_KEY, "--secret-env", "SYNC_BENCH_APP_SECRET", "--dps-url", url,
                 "--replace"])  # fmt: skip
        self.ok(["config", "add-group", PROFILE, GROUP, "--secret-env", "SYNC_BENCH_GROUP_SECRET",
                 "--masterdata", str(MASTERDATA), "--product-key", "pk", "--replace"])  # fmt: skip

    def ok(self, args: list[str]) -> subprocess.CompletedProcess:
        proc = subprocess.run([*self.cli, *args], capture_output=True, text=True, env=self.env)
        if proc.returncode:
            raise RuntimeError(
                f"`enosprov {' '.join(args[:4])} ...` failed ({proc.returncode}): "
                f"{proc.stdout[-1000:]} {proc.stderr[-1000:]}"
            )
        return proc

    def plant(self, name: str, csv_path: Path, rows: int) -> Path:
        """A plant store: the tenant's group imported, ``csv_path`` registered offline."""
        store = self.out / name
        self.ok(["--store", str(store), "group", "import", GROUP, "--profile", PROFILE, "--json"])
        proc = self.ok(["--store", str(store), "register", "--csv", str(csv_path), "--group",
                        GROUP, "--json"])  # fmt: skip
        created = json.loads(proc.stdout)["data"]["created"]
        if created != rows:
            raise RuntimeError(f"registered {created} of {rows} rows into {store}")
        return store


# Starts the measured command from a small process and reports its peak RSS: on Linux a child
# forked from a big parent (this benchmark, after filling stores in process) starts its
# ru_maxrss at the parent's size, which is not the command's own memory.
_LAUNCH = (
    "import os, subprocess, sys\n"
    "p = subprocess.Popen(sys.argv[1:])\n"
    "_, status, usage = os.wait4(p.pid, 0)\n"
    "sys.stderr.write(f'\\nMAXRSS_KB {usage.ru_maxrss}\\n')\n"
    "sys.exit(os.waitstatus_to_exitcode(status))\n"
)


def timed(cmd: list[str], env: dict, log: Path) -> tuple[float, float, int, str]:
    """(wall s, peak RSS MB of this command alone, exit code, stdout) of one command."""
    err_path = log.with_suffix(".err")
    with open(log, "w+", encoding="utf-8") as out, open(err_path, "w") as err:
        t0 = time.perf_counter()
        proc = subprocess.run([sys.executable, "-c", _LAUNCH, *cmd], stdout=out, stderr=err,
                              env=env)  # fmt: skip
        wall = time.perf_counter() - t0
        out.seek(0)
        text = out.read()
    marks = [ln for ln in err_path.read_text(encoding="utf-8").splitlines()
             if ln.startswith("MAXRSS_KB ")]  # fmt: skip
    peak = int(marks[-1].split()[1]) / 1024 if marks else float("nan")
    return wall, peak, proc.returncode, text


def _json(text: str, what: str, log: Path) -> dict:
    try:
        return json.loads(text)["data"]
    except (ValueError, KeyError):
        err = log.with_suffix(".err").read_text(encoding="utf-8")[-1500:]
        raise RuntimeError(f"{what}: no JSON report: {text[-500:]} {err}") from None


# -- push ----------------------------------------------------------------------------------------


def naive_creates(url: str, devices: list[tuple[str, str, str | None, str | None]]) -> float:
    """enos_bench's naive loop: one Create Device request per device, each answer awaited."""
    from enos_bench import APP_KEY, APP_SECRET

    from enosprov.backends.enos_config import EnosConfig
    from enosprov.backends.http import ApiClient

    config = EnosConfig(api_url=url, org_id="o1", app_key=APP_KEY, app_secret=APP_SECRET,
                        dps_url=url, workers=1)  # fmt: skip
    client = ApiClient(config)
    try:
        t0 = time.perf_counter()
        for device_sn, data, desc, tag in devices:
            body = {"groupId": GROUP, "count": 1,
                    "deviceData": {"deviceSn": device_sn, **json.loads(data)}}  # fmt: skip
            if desc:
                body["desc"] = desc
            if tag:
                body["batchTag"] = {"defaultValue": tag}
            client.call("create", body, safe_to_repeat=False)
        return time.perf_counter() - t0
    finally:
        client.close()


def push_bench(s: Setup, make_csv, rows: int, naive_rows: int, latency_ms: int) -> dict:
    from enos_bench import Emulator

    csv_path = s.out / f"sync-push-{rows}.csv"
    make_csv(csv_path, rows)
    results: dict = {}
    k = f"{rows // 1000}k" if rows % 1000 == 0 else str(rows)
    tenant = s.tenant("sync-tenant-push.db")
    emu = Emulator(s.cli, tenant, s.out / "serve-sync-push.log", latency_ms)
    try:
        s.profile(emu.url)
        plant = s.plant("sync-plant-push.db", csv_path, rows)
        log = s.out / "sync-push.json"
        cmd = [*s.cli, "--store", str(plant), "sync", "push", "--profile", PROFILE, "--group",
               GROUP, "--json"]  # fmt: skip
        wall, _, code, text = timed(cmd, s.env, log)
    finally:
        emu.stop()
    report = _json(text, f"sync push (exit {code})", log)
    if (report["created"], report["conflicts"], report["failed"]) != (rows, 0, 0):
        raise RuntimeError(f"sync push did not create {rows} devices: {report}")
    with sqlite3.connect(tenant) as conn:
        total, distinct = conn.execute(
            "SELECT count(*), count(DISTINCT device_sn) FROM devices WHERE group_id=?", (GROUP,)
        ).fetchone()
    conn.close()
    requests_, mean_ms = emu.request_stats()
    results[f"sync_push_{k}_wall_s"] = round(wall, 2)
    results["sync_push_devices_per_s"] = round(rows / wall)
    results["sync_push_http_requests"] = requests_
    results["sync_push_server_ms_per_request"] = round(mean_ms, 2)
    results["sync_push_enos_devices"] = total
    results["sync_push_duplicates"] = total - distinct
    if distinct != rows:
        results["sync_push_missing"] = rows - distinct

    # the naive baseline: the same devices, one create at a time, in a fresh tenant
    sample = min(naive_rows, rows)
    with sqlite3.connect(plant) as conn:
        devices = conn.execute(
            "SELECT device_sn, device_data, description, batch_tag FROM devices "
            "WHERE group_id=? ORDER BY rowid LIMIT ?",
            (GROUP, sample),
        ).fetchall()
    conn.close()
    emu = Emulator(s.cli, s.tenant("sync-tenant-naive.db"), s.out / "serve-sync-naive.log",
                   latency_ms)  # fmt: skip
    try:
        naive = naive_creates(emu.url, devices)
    finally:
        emu.stop()
    if sample == rows:
        results[f"sync_push_naive_{k}_wall_s"] = round(naive, 2)
    else:
        naive = naive * rows / sample
        results["sync_push_naive_sample_rows"] = sample
        results[f"sync_push_naive_{k}_extrapolated_s"] = round(naive, 1)
    results["sync_push_speedup"] = round(naive / wall, 1)
    return results


# -- pull ----------------------------------------------------------------------------------------


def fill_tenant(tenant: Path, plant: Path, every: int) -> int:
    """Copy the plant's devices into the tenant (EnOS sns of their own), link them in the plant,
    and give every ``every``-th device an allocated, connected state in the tenant; return how
    many were changed."""
    now = int(time.time() * 1000)
    conn = sqlite3.connect(tenant, isolation_level=None)
    try:
        conn.execute("ATTACH DATABASE ? AS plant", (str(plant),))
        conn.execute("BEGIN IMMEDIATE")
        cols = [r[1] for r in conn.execute("PRAGMA main.table_info(devices)")]
        rest = ", ".join(c for c in cols if c != "sn")
        conn.execute(
            f"INSERT INTO main.devices (sn, {rest}) SELECT printf('e%015x', rowid), {rest} "
            "FROM plant.devices WHERE group_id=?",
            (GROUP,),
        )
        conn.execute(
            "INSERT INTO plant.sync_links (group_id, device_sn, local_sn, enos_sn, pushed_time) "
            "SELECT d.group_id, d.device_sn, d.sn, t.sn, ? FROM plant.devices d "
            "JOIN main.devices t ON t.group_id = d.group_id AND t.device_sn = d.device_sn "
            "WHERE d.group_id=?",
            (now, GROUP),
        )
        changed = conn.execute(
            "UPDATE main.devices SET allocate_status='allocated', current_status='allocated', "
            "connect_status='connected', allocated_time=?, connected_time=?, region_id='eu2', "
            "org_id='o1', device_key='dk' || rowid, device_secret='ds-' || sn, update_time=? "
            "WHERE group_id=? AND rowid % ? = 0",
            (now, now, now, GROUP, every),
        ).rowcount
        conn.execute("COMMIT")
    finally:
        conn.close()
    return changed


def pull_bench(s: Setup, make_csv, rows: int) -> dict:
    from enos_bench import Emulator

    csv_path = s.out / f"sync-pull-{rows}.csv"
    make_csv(csv_path, rows)
    k = f"{rows // 1000}k" if rows % 1000 == 0 else str(rows)
    tenant = s.tenant("sync-tenant-pull.db")
    emu = Emulator(s.cli, tenant, s.out / "serve-sync-pull-setup.log")
    try:
        s.profile(emu.url)
        plant = s.plant("sync-plant-pull.db", csv_path, rows)
    finally:
        emu.stop()  # the tenant's rows are written with SQL, the emulator stopped
    t0 = time.perf_counter()
    changed = fill_tenant(tenant, plant, every=10)
    setup_s = time.perf_counter() - t0
    emu = Emulator(s.cli, tenant, s.out / "serve-sync-pull.log")
    try:
        s.profile(emu.url)
        log = s.out / "sync-pull.json"
        cmd = [*s.cli, "--store", str(plant), "sync", "pull", "--profile", PROFILE, "--group",
               GROUP, "--json"]  # fmt: skip
        wall, peak, code, text = timed(cmd, s.env, log)
    finally:
        emu.stop()
    report = _json(text, f"sync pull (exit {code})", log)
    requests_, _ = emu.request_stats()
    results = {
        f"sync_pull_{k}_wall_s": round(wall, 2),
        "sync_pull_devices_per_s": round(rows / wall),
        "sync_pull_peak_rss_mb": round(peak, 1),
        "sync_pull_http_requests": requests_,
        "sync_pull_in_enos": report["inEnos"],
        "sync_pull_updated": report["updated"],
        "sync_pull_changed_in_enos": changed,
        "sync_pull_sql_setup_s": round(setup_s, 2),
    }
    if report["inEnos"] != rows or report["updated"] != changed:
        results["sync_pull_report_mismatch"] = 1
        print(f"sync pull: expected inEnos {rows}, updated {changed}; got {report}")
    return results


def run(out: Path, make_csv, push_rows: int = 10_000, naive_rows: int = 1_000,
        pull_rows: int = 100_000, latency_ms: int = 20) -> dict:  # fmt: skip
    """The sync measures; on a failed setup, a line saying why and what was measured so far."""
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    results: dict = {}
    t0 = time.perf_counter()
    failures = (RuntimeError, OSError, subprocess.SubprocessError, SystemExit, AssertionError)
    try:
        s = Setup(out)
    except failures as exc:
        print(f"sync benchmark skipped: {exc}")
        return results
    for part, bench in (
        ("push", lambda: push_bench(s, make_csv, push_rows, naive_rows, latency_ms)),
        ("pull", lambda: pull_bench(s, make_csv, pull_rows)),
    ):
        try:
            results.update(bench())
        except failures as exc:  # the bench runs on: the table shows the failure as MISSED
            print(f"sync {part} benchmark failed: {exc}")
            results[f"sync_{part}_failed"] = 1
    results["sync_bench_total_s"] = round(time.perf_counter() - t0, 1)
    return results


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=ROOT / "bench-out" / "sync")
    ap.add_argument("--push-rows", type=int, default=10_000)
    ap.add_argument("--naive-rows", type=int, default=1_000,
                    help="size of the timed naive sample (= --push-rows: the full loop)")  # fmt: skip
    ap.add_argument("--pull-rows", type=int, default=100_000)
    args = ap.parse_args()
    import shutil

    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from run import make_csv

    shutil.rmtree(args.out, ignore_errors=True)
    args.out.mkdir(parents=True)
    results = run(args.out, make_csv, args.push_rows, args.naive_rows, args.pull_rows)
    for key, value in results.items():
        print(f"{key:36} {value:>12}")
    (args.out / "results.json").write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
