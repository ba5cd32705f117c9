"""The factory line (issue 13): one unit without a CSV, standard input, and `enosprov station`."""

from __future__ import annotations

import json
import sys
import textwrap

import pytest
from conftest import make_group, meters_rows, query_store

from enosprov.burn.verify import read_credential_file


def _jsonl(text: str) -> list[dict]:
    return [json.loads(line) for line in text.splitlines() if line.strip()]


@pytest.fixture
def line(cli, store):
    make_group(store)
    return cli


def test_register_one_unit_without_a_csv(line, store_location):
    args = ["register", "--group", "meters-eu", "--device-sn", "MTR-2026-000123", "--name",
            "Meter 123", "--timezone", "+01:00", "--set", "max_capacity=60", "--set",
            "phase=single", "--batch-tag", "B-1"]  # fmt: skip
    first = line.json(*args)
    assert (first["data"]["created"], first["data"]["file"]) == (1, "unit MTR-2026-000123")
    again = line.json(*args)
    assert (again["data"]["created"], again["data"]["skipped"]) == (0, 1)
    changed = [a.replace("max_capacity=60", "max_capacity=61") for a in args]
    other = line(*changed, "--json")
    assert other.exit_code == 5 and json.loads(other.stdout)["data"]["conflicts"] == 1
    ((data,),) = query_store(
        store_location, "SELECT device_data FROM devices WHERE device_sn = 'MTR-2026-000123'"
    )
    stored = json.loads(data)
    assert stored["deviceName"]["defaultValue"] == "Meter 123" and stored["max_capacity"] == 60


def test_register_one_unit_is_validated_like_a_row(line):
    bad = line("register", "--group", "meters-eu", "--device-sn", "MTR-2026-000124",
               "--set", "max_capacity=lots", "--set", "phase=single")  # fmt: skip
    assert bad.exit_code == 1 and "max_capacity" in bad.stderr
    both = line("register", "--group", "meters-eu", "--csv", "x.csv", "--device-sn", "A-0001")
    assert both.exit_code == 1 and "either --csv" in both.stderr
    stray = line("register", "--group", "meters-eu", "--csv", "x.csv", "--name", "N")
    assert stray.exit_code == 1 and "--device-sn" in stray.stderr


def test_register_reads_standard_input(line):
    result = line("register", "--group", "meters-eu", "--csv", "-", "--json",
                  input=meters_rows(5))  # fmt: skip
    assert result.exit_code == 0, result.stderr
    data = json.loads(result.stdout)["data"]
    assert (data["created"], data["file"]) == (5, "<stdin>")


def _station(line, units: str, *args: str, expect: int | None = 0):
    result = line("station", "--group", "meters-eu", "--dps-url", "http://dps.example",
                  "--set", "max_capacity=60", "--set", "phase=single", *args, "--jsonl",
                  input=units)  # fmt: skip
    if expect is not None:
        assert result.exit_code == expect, (result.stdout, result.stderr)
    return _jsonl(result.stdout)


def test_station_registers_burns_and_verifies_each_unit_once(line, tmp_path, store_location):
    out = tmp_path / "line"
    units = "".join(f"ST-{i:06d}\n" for i in range(1, 21)) + "\n"  # a blank line is ignored
    lines = _station(line, units, "--out", str(out), "--burn-format", "nvs")
    results, summary = lines[:-1], lines[-1]["summary"]
    assert [r["deviceSn"] for r in results] == [f"ST-{i:06d}" for i in range(1, 21)]
    assert all(r["ok"] and r["done"] == ["register", "burn", "verify"] for r in results)
    assert (summary["units"], summary["ok"], summary["failed"]) == (20, 20, 0)
    for i in (1, 20):
        fmt, cred = read_credential_file(out / f"ST-{i:06d}.nvs.bin")
        assert fmt == "nvs" and cred.device_sn == f"ST-{i:06d}" and cred.timezone == "+08:00"
    # scanned again: nothing registered twice, nothing redone
    again = _station(line, units, "--out", str(out), "--burn-format", "nvs")[:-1]
    assert all(r["ok"] and r["done"] == [] for r in again)
    assert again[0]["alreadyDone"] == ["register", "burn", "verify"]
    assert query_store(store_location, "SELECT count(*) FROM devices") == [(20,)]
    ((journaled,),) = query_store(
        store_location,
        "SELECT coalesce(sum(devices), 0) FROM journal WHERE operation = 'register' "
        "AND outcome <> 'pending'",
    )
    assert journaled == 20


def test_station_values_per_unit_and_declared_columns(line, tmp_path, store):
    out = tmp_path / "line"
    lines = _station(line, "CV-000001,max_capacity=70,site=Hall 9\n", "--out", str(out))
    assert lines[0]["ok"]
    assert store.find_by_device_sn("meters-eu", "CV-000001").device_data["max_capacity"] == 70
    lines = _station(line, 'CV-000002,71,"Hall, 3"\n', "--out", str(out),
                     "--columns", "deviceSn,max_capacity,site")  # fmt: skip
    dev = store.find_by_device_sn("meters-eu", "CV-000002")
    assert lines[0]["ok"] and dev.device_data["site"] == "Hall, 3"


def test_a_failed_unit_never_stops_the_station(line, tmp_path, store):
    out = tmp_path / "line"
    units = "GOOD-000001\nGOOD-000002,max_capacity=lots\nx\nGOOD-000003\nGOOD-000004,phase\n"
    lines = _station(line, units, "--out", str(out), expect=5)
    results, summary = lines[:-1], lines[-1]["summary"]
    assert [r["ok"] for r in results] == [True, False, False, True, False]
    assert results[1]["failedStep"] == "register" and "max_capacity" in results[1]["error"]
    assert results[4]["failedStep"] == "input"
    assert (summary["ok"], summary["failed"]) == (2, 3)
    assert store.find_by_device_sn("meters-eu", "GOOD-000003") is not None


def test_station_flash_command_is_a_counted_step(line, tmp_path):
    out = tmp_path / "line"
    log = tmp_path / "flashed.txt"
    flasher = tmp_path / "flash.py"
    flasher.write_text(textwrap.dedent(f"""
        import sys
        if "FAIL" in sys.argv[2]:
            sys.stderr.write("A fatal error occurred: no serial port\\n")
            sys.exit(2)
        open({str(log)!r}, "a").write(sys.argv[1] + "\\n")
    """), encoding="utf-8")  # fmt: skip
    command = f"{sys.executable} {flasher} {{file}} {{deviceSn}}"
    lines = _station(line, "FL-000001\nFL-FAIL-0002\n", "--out", str(out),
                     "--flash-command", command, expect=5)  # fmt: skip
    ok, failed = lines[0], lines[1]
    assert ok["done"] == ["register", "burn", "verify", "flash"]
    assert failed["failedStep"] == "flash" and "no serial port" in failed["error"]
    assert log.read_text().splitlines() == [str(out / "FL-000001.json")]
    # the failed unit scanned again after fixing the cable: only the flash is redone
    flasher.write_text(f"open({str(log)!r}, 'a').write('again\\n')\n", encoding="utf-8")
    (retry,) = _station(line, "FL-FAIL-0002\n", "--out", str(out),
                        "--flash-command", command)[:-1]  # fmt: skip
    assert retry["done"] == ["flash"] and "burn" in retry["alreadyDone"]


def test_station_refuses_a_retired_unit(line, tmp_path, store):
    out = tmp_path / "line"
    _station(line, "RT-000001\n", "--out", str(out))
    assert line("replace", "RT-000001", "--new-device-sn", "RT-000901", "--group", "meters-eu",
                "--no-burn", "--yes").exit_code == 0  # fmt: skip
    (res,) = _station(line, "RT-000001\n", "--out", str(out), expect=5)[:-1]
    assert (
        res["failedStep"] == "register"
        and "retired" in res["error"]
        and "RT-000901" in res["error"]
    )
    (res,) = _station(line, "RT-000001\n", "--out", str(out), "--allow-retired")[:-1]
    assert res["ok"]


class LoopbackPrinter:
    """A Zebra-compatible printer on 127.0.0.1: records every job's bytes; while ``down`` it
    accepts and closes at once (the label is not printed)."""

    def __init__(self):
        import socket
        import threading

        self.jobs: list[bytes] = []
        self.down = False
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.port = self.sock.getsockname()[1]
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self):
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            with conn:
                if self.down:
                    continue
                chunks = []
                while data := conn.recv(65536):
                    chunks.append(data)
                if chunks:
                    self.jobs.append(b"".join(chunks))

    def device_sns(self) -> list[str]:
        """The deviceSn of every label received, in order (from the ZPL payloads)."""
        import re

        found = []
        for job in self.jobs:
            found += re.findall(rb"\^FDMA,ENP1:[^:]*:([^:]+):", job)
        return [f.decode() for f in found]

    def close(self):
        self.sock.close()


@pytest.fixture
def printer():
    p = LoopbackPrinter()
    yield p
    p.close()


def test_a_simulated_line_of_200_units_with_a_printer_that_goes_down(line, tmp_path, printer):
    import time

    out = tmp_path / "line"
    uri = f"tcp://127.0.0.1:{printer.port}"
    sns = [f"LN-{i:06d}" for i in range(1, 201)]

    def scan(units, *args, expect=None):
        return _station(line, "".join(u + "\n" for u in units), "--out", str(out),
                        "--burn-format", "nvs", "--printer", uri, *args, expect=expect)[:-1]  # fmt: skip

    first = scan(sns[:90], expect=0)
    printer.down = True
    down = scan(sns[90:110], expect=5)
    printer.down = False
    rest = scan(sns[110:], expect=0)
    assert all(r["ok"] for r in first + rest)
    assert all(r["failedStep"] == "print" and "not printed" in r["error"] for r in down)
    assert all(r["done"] == ["register", "burn", "verify", "label"] for r in down)
    time.sleep(0.2)
    assert printer.device_sns() == sns[:90] + sns[110:]  # in scan order, none of the 20
    # the 20 are reprinted later with `qr print`
    reprint = line("qr", "print", *sns[90:110], "--group", "meters-eu", "--printer", uri, "--json")
    assert reprint.exit_code == 0, reprint.stderr
    time.sleep(0.2)
    assert printer.device_sns() == sns[:90] + sns[110:] + sns[90:110]
    # the same 200 scanned again: nothing registered, nothing printed
    labels = len(printer.device_sns())
    again = scan(sns, expect=0)
    assert all(r["done"] == [] for r in again)  # 0 registered, 0 printed
    time.sleep(0.2)
    assert len(printer.device_sns()) == labels
    assert len(list(out.glob("LN-*.nvs.bin"))) == 200


def test_station_reprint_prints_again_without_registering(line, tmp_path, printer, store_location):
    import time

    out = tmp_path / "line"
    uri = f"tcp://127.0.0.1:{printer.port}"
    _station(line, "RP-000001\n", "--out", str(out), "--printer", uri)
    (res,) = _station(line, "RP-000001\n", "--out", str(out), "--printer", uri, "--reprint")[:-1]
    assert res["done"] == ["label", "print"]
    time.sleep(0.2)
    assert printer.device_sns() == ["RP-000001", "RP-000001"]
    assert query_store(store_location, "SELECT count(*) FROM devices") == [(1,)]
