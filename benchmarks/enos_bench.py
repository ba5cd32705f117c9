"""EnOS backend benchmarks (issue 3), run by benchmarks/run.py.

- Register N devices through the EnOS backend against `enosprov serve` on loopback (the server is
  a separate process, so client and server CPU can be told apart): devices/s and where the time
  goes (client CPU, server CPU, HTTP requests, mean server time per request).
- The same batch with the emulator adding 20 ms per request (a WAN round trip), against a naive
  loop that sends one create at a time, at the same latency: the speed-up.
"""

from __future__ import annotations

import os
import re
import resource
import socket
import subprocess
import sys
import time
from pathlib import Path

APP_KEY, APP_SECRET = "bench-key", "bench-secret"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Emulator:
    def __init__(self, cli: list[str], store: Path, log: Path, latency_ms: int = 0) -> None:
        self.port = _free_port()
        env = dict(os.environ, ENOSPROV_SERVE_APP_KEY=APP_KEY, ENOSPROV_SERVE_APP_SECRET=APP_SECRET)
        self.log = log
        self._fh = open(log, "w", encoding="utf-8")
        self.proc = subprocess.Popen(
            [*cli, "--store", str(store), "serve", "--port", str(self.port), "--threads", "16",
             "--latency-ms", str(latency_ms)],
            env=env, stdout=self._fh, stderr=subprocess.STDOUT,
        )  # fmt: skip
        self.url = f"http://127.0.0.1:{self.port}"
        self._wait()

    def _wait(self) -> None:
        import requests

        deadline = time.time() + 20
        while time.time() < deadline:
            try:
                requests.post(self.url + "/apim-token-service/v2.0/token/get", json={}, timeout=1)
                return
            except requests.ConnectionError:
                time.sleep(0.05)
        raise SystemExit(f"the emulator did not start; see {self.log}")

    def stop(self) -> float:
        """Stop it; return the CPU seconds it used."""
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        self.proc.terminate()
        self.proc.wait(timeout=20)
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        self._fh.close()
        return (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)

    def request_stats(self) -> tuple[int, float]:
        """(DPS requests logged, mean server ms per request) from the emulator's log."""
        durations = [
            float(m.group(1))
            for line in self.log.read_text(encoding="utf-8").splitlines()
            if "/dps-service/" in line and (m := re.search(r"\bms=([\d.]+)", line))
        ]
        return len(durations), (sum(durations) / len(durations) if durations else 0.0)


def _setup_store(cli: list[str], store: Path, masterdata: Path) -> None:
    for args in (
        ["masterdata", "create", "--file", str(masterdata)],
        ["group", "create", "--id", "bench", "--name", "Bench", "--product-key", "pk",
         "--region", "eu2", "--org", "o1", "--masterdata", "meters"],
    ):  # fmt: skip
        subprocess.run([*cli, "--store", str(store), *args], check=True, capture_output=True)


def _backend(url: str, masterdata: Path, workers: int):
    from enosprov.backends.enos import EnosBackend
    from enosprov.backends.enos_config import EnosConfig, GroupConfig

    cfg = EnosConfig(
        api_url=url, org_id="o1", app_key=APP_KEY, app_secret=APP_SECRET, dps_url=url,
        groups=(GroupConfig("bench", masterdata_file=str(masterdata)),), workers=workers,
    )  # fmt: skip
    return EnosBackend(cfg)


def register_through_emulator(cli, out: Path, csv_path: Path, masterdata: Path, rows: int,
                              latency_ms: int = 0, workers: int = 16) -> dict:  # fmt: skip
    from enosprov import api

    store = out / f"emulator-{latency_ms}ms.db"
    _setup_store(cli, store, masterdata)
    emu = Emulator(cli, store, out / f"serve-{latency_ms}ms.log", latency_ms)
    try:
        with _backend(emu.url, masterdata, workers) as backend:
            t0, c0 = time.perf_counter(), time.process_time()
            report = api.register_csv(backend, csv_path, "bench", chunk_size=2000)
            wall, client_cpu = time.perf_counter() - t0, time.process_time() - c0
    finally:
        server_cpu = emu.stop()
    assert report.created == rows, report.to_dict()
    requests_, mean_ms = emu.request_stats()
    return {
        "wall_s": round(wall, 2),
        "devices_per_s": round(rows / wall),
        "client_cpu_s": round(client_cpu, 2),
        "server_cpu_s": round(server_cpu, 2),
        "http_requests": requests_,
        "server_ms_per_request": round(mean_ms, 2),
    }


def naive_loop(
    cli, out: Path, csv_path: Path, masterdata: Path, rows: int, latency_ms: int
) -> float:
    """One create at a time, no pool, no lookup: the loop a quick script would write."""
    import csv

    from enosprov.backends.http import ApiClient

    store = out / "naive.db"
    _setup_store(cli, store, masterdata)
    emu = Emulator(cli, store, out / "serve-naive.log", latency_ms)
    try:
        client = ApiClient(_backend(emu.url, masterdata, 1).config)
        t0 = time.perf_counter()
        with open(csv_path, encoding="utf-8", newline="") as fh:
            for row in csv.DictReader(fh):
                client.call(
                    "create",
                    {"groupId": "bench", "count": 1,
                     "deviceData": {"deviceSn": row["deviceSn"], "max_capacity": int(row["max_capacity"]),
                                    "phase": row["phase"]}},
                    safe_to_repeat=False,
                )  # fmt: skip
        wall = time.perf_counter() - t0
        client.close()
    finally:
        emu.stop()
    return wall


def run(out: Path, make_csv, rows: int, latency_rows: int, latency_ms: int = 20) -> dict:
    root = Path(__file__).resolve().parent.parent
    masterdata = root / "examples" / "masterdata.toml"
    cli = [sys.executable, "-m", "enosprov"]
    results: dict = {}
    csv_path = out / f"enos-{rows}.csv"
    make_csv(csv_path, rows)
    for key, value in register_through_emulator(cli, out, csv_path, masterdata, rows).items():
        results[f"enos_{key}"] = value
    lat_csv = out / f"enos-latency-{latency_rows}.csv"
    make_csv(lat_csv, latency_rows)
    pooled = register_through_emulator(cli, out, lat_csv, masterdata, latency_rows, latency_ms)
    naive = naive_loop(cli, out, lat_csv, masterdata, latency_rows, latency_ms)
    results[f"enos_{latency_ms}ms_rows"] = latency_rows
    results[f"enos_{latency_ms}ms_pooled_wall_s"] = pooled["wall_s"]
    results[f"enos_{latency_ms}ms_naive_wall_s"] = round(naive, 2)
    results[f"enos_{latency_ms}ms_speedup"] = round(naive / pooled["wall_s"], 1)
    return results
