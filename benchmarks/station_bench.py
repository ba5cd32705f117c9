"""The factory line (issue 13), run by benchmarks/run.py.

1. `station` on the local store, per unit: register + NVS credential file + verify + ZPL label
   sent to a loopback TCP printer, in one process: the median per unit (after 5 warm-up units).
2. The same cycle as four separate CLI calls per unit (`register --device-sn`, `burn export
   --device-sn --format nvs`, `burn verify`, `qr print --printer`): the median per unit, and the
   ratio to 1 (goal >= 20x).
3. One-shot `register --device-sn ...` through the CLI: median wall time, start-up included.
4. `station` through an EnOS profile against `enosprov serve`: token requests for the whole run
   (goal: 1), DPS requests and time per unit.
"""

from __future__ import annotations

import os
import socket
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path

APP_KEY, APP_SECRET = "bench-key", "bench-secret"
SETS = ["--set", "max_capacity=60", "--set", "phase=single"]


class LoopbackPrinter:
    """A Zebra-compatible printer on 127.0.0.1 that counts the labels it receives."""

    def __init__(self) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(64)
        self.port = self.sock.getsockname()[1]
        self.labels = 0
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            with conn:
                data = b"".join(iter(lambda c=conn: c.recv(65536), b""))
                self.labels += data.count(b"^XA")

    def close(self) -> None:
        self.sock.close()


def _setup(cli: list[str], store: Path, masterdata: Path) -> None:
    for args in (
        ["masterdata", "create", "--file", str(masterdata)],
        ["group", "create", "--id", "line", "--name", "Line", "--product-key", "pk",
         "--region", "eu2", "--org", "o1", "--masterdata", "meters", "--timezone", "+01:00"],
    ):  # fmt: skip
        subprocess.run([*cli, "--store", str(store), *args], check=True, capture_output=True)


def station_in_process(out: Path, cli, masterdata: Path, printer: LoopbackPrinter, units: int):
    from enosprov.backends.local import LocalBackend
    from enosprov.core.station import Station, StationConfig
    from enosprov.journal import Actor, Journal

    store = out / "station.db"
    _setup(cli, store, masterdata)
    config = StationConfig(
        group="line", out_dir=out / "station-files", burn_format="nvs",
        dps_url="http://dps.example", defaults={"max_capacity": "60", "phase": "single"},
        printer=f"tcp://127.0.0.1:{printer.port}", label_template="thermal-62mm",
    )  # fmt: skip
    times = []
    actor = Actor.current("local", station="bench")
    with (
        LocalBackend(store) as be,
        Journal(store, actor) as j,
        Station(be, config, journal=j) as st,
    ):
        for i in range(units):
            t0 = time.perf_counter()
            res = st.process({"deviceSn": f"ST-{i:06d}"}, i + 1)
            times.append((time.perf_counter() - t0) * 1000)
            assert res.ok and "print" in res.done, res.to_dict()
    return statistics.median(times[5:]), times


def four_commands(out: Path, cli, masterdata: Path, printer: LoopbackPrinter, units: int):
    store = out / "four.db"
    _setup(cli, store, masterdata)
    files = out / "four-files"
    base = [*cli, "--store", str(store)]
    per_unit = []
    for i in range(units):
        sn = f"FC-{i:06d}"
        steps = (
            ["register", "--group", "line", "--device-sn", sn, *SETS],
            ["burn", "export", "--group", "line", "--device-sn", sn, "--burn-format", "nvs",
             "--out", str(files), "--dps-url", "http://dps.example"],
            ["burn", "verify", str(files / f"{sn}.nvs.bin")],
            ["qr", "print", sn, "--group", "line", "--printer",
             f"tcp://127.0.0.1:{printer.port}"],
        )  # fmt: skip
        t0 = time.perf_counter()
        for args in steps:
            subprocess.run([*base, *args], check=True, capture_output=True)
        per_unit.append((time.perf_counter() - t0) * 1000)
    return statistics.median(per_unit)


def one_shot_register(out: Path, cli, masterdata: Path, runs: int = 7) -> float:
    store = out / "oneshot.db"
    _setup(cli, store, masterdata)
    walls = []
    for i in range(runs):
        t0 = time.perf_counter()
        subprocess.run([*cli, "--store", str(store), "register", "--group", "line",
                        "--device-sn", f"OS-{i:06d}", *SETS], check=True, capture_output=True)  # fmt: skip
        walls.append(time.perf_counter() - t0)
    return statistics.median(walls)


def station_through_enos(out: Path, cli, masterdata: Path, units: int) -> dict:
    from enos_bench import Emulator

    store = out / "station-emulator.db"
    _setup(cli, store, masterdata)
    emu = Emulator(cli, store, out / "serve-station.log")
    env = dict(os.environ, ENOSPROV_CONFIG=str(out / "config.toml"),
               ENOSPROV_JOURNAL=str(out / "station-journal.db"),
               ENOSPROV_CACHE_DIR=str(out / "cache"), BENCH_SECRET=APP_SECRET)  # fmt: skip
    try:
        from enosprov.backends.local import LocalBackend

        with LocalBackend(store) as be:
            env["LINE_SECRET"] = be.get_group("line").group_secret
        for args in (
            ["config", "create", "bench", "--api-url", emu.url, "--org", "o1", "--access-key",
             APP_KEY, "--secret-env", "BENCH_SECRET", "--dps-url", emu.url],
            ["config", "add-group", "bench", "line", "--secret-env", "LINE_SECRET",
             "--masterdata", str(masterdata), "--timezone", "+01:00"],
        ):  # fmt: skip
            subprocess.run([*cli, *args], check=True, capture_output=True, env=env)
        lines = "".join(f"EN-{i:06d}\n" for i in range(units))
        t0 = time.perf_counter()
        done = subprocess.run(
            [*cli, "--profile", "bench", "station", "--group", "line", "--out",
             str(out / "station-enos-files"), "--burn-format", "nvs", *SETS, "--jsonl"],
            input=lines.encode(), capture_output=True, env=env, check=True,
        )  # fmt: skip
        wall = time.perf_counter() - t0
    finally:
        emu.stop()
    results = [line for line in done.stdout.decode().splitlines() if '"deviceSn"' in line]
    assert len(results) == units and all('"ok": true' in r for r in results), done.stdout[:500]
    log = emu.log.read_text(encoding="utf-8").splitlines()
    # tokens issued (not the emulator's readiness probe, answered 1202 empty parameter)
    tokens = sum("POST /apim-token-service/" in line and "code=0" in line for line in log)
    dps = sum("POST /dps-service/" in line or "GET /dps-service/" in line for line in log)
    return {
        "station_enos_units": units,
        "station_enos_token_requests": tokens,
        "station_enos_dps_requests_per_unit": round(dps / units, 1),
        "station_enos_ms_per_unit": round(wall * 1000 / units, 1),
    }


def run(out: Path, units: int = 200, cli_units: int = 10) -> dict:
    root = Path(__file__).resolve().parent.parent
    masterdata = root / "examples" / "masterdata.toml"
    cli = [sys.executable, "-m", "enosprov"]
    printer = LoopbackPrinter()
    try:
        median_ms, _ = station_in_process(out, cli, masterdata, printer, units)
        four_ms = four_commands(out, cli, masterdata, printer, cli_units)
    finally:
        printer.close()
    results = {
        "station_units": units,
        "station_ms_per_unit": round(median_ms, 1),
        "four_commands_ms_per_unit": round(four_ms),
        "station_speedup": round(four_ms / median_ms, 1),
        "register_one_unit_wall_s": round(one_shot_register(out, cli, masterdata), 3),
    }
    results.update(station_through_enos(out, cli, masterdata, 30))
    return results
