"""Burn-file export benchmarks (issue 4), run by benchmarks/run.py.

Exports credential files for N registered devices through the library (what `burn export` does:
selection, credentials, encoding, atomic owner-only writes, SHA-256, manifest) and, for each
format, compares with a bare loop that writes the same bytes to the same number of files.
"""

from __future__ import annotations

import os
import shutil
import time
from pathlib import Path


def _bare_write(out: Path, blobs: list[tuple[str, bytes]]) -> float:
    out.mkdir(parents=True)
    if hasattr(os, "sync"):
        os.sync()
    t0 = time.perf_counter()
    for name, data in blobs:
        with open(out / name, "wb") as fh:
            fh.write(data)
    return time.perf_counter() - t0


def run(out: Path, make_csv, rows: int, per_format_rows: int) -> dict:
    from enosprov import api
    from enosprov.burn.export import Selection, export_burn_files
    from enosprov.burn.formats import FORMATS, FormatOptions

    root = Path(__file__).resolve().parent.parent
    store = api.open_store(out / "burn-store.db")
    api.create_masterdata_group(store, root / "examples" / "masterdata.toml")
    api.create_group(store, group_id="bench", name="Bench", product_key="pk", region_id="eu2",
                     org_id="o1", masterdata_group_id="meters")  # fmt: skip
    csv_path = out / f"burn-{rows}.csv"
    make_csv(csv_path, rows)
    api.register_csv(store, csv_path, "bench")
    results: dict = {}
    for fmt in ("json", "ini", "c", "bin", "hex", "nvs"):
        n = rows if fmt == "json" else per_format_rows
        sel = (
            Selection(group="bench")
            if n == rows
            else Selection(group="bench", device_sns=tuple(f"MTR-{i:09d}" for i in range(n)))
        )
        folder = out / f"burn-{fmt}"
        if hasattr(os, "sync"):
            os.sync()  # start each run with no writeback pending
        t0 = time.perf_counter()
        report = export_burn_files(store, sel, folder, fmt=fmt, options=FormatOptions())
        wall = time.perf_counter() - t0
        assert report.written == n, report.to_dict()
        blobs = [
            (p.name, p.read_bytes()) for p in folder.iterdir() if not p.name.startswith("manifest")
        ]
        bare = _bare_write(out / f"bare-{fmt}", blobs)
        results[f"burn_{fmt}_files"] = n
        results[f"burn_{fmt}_wall_s"] = round(wall, 2)
        results[f"burn_{fmt}_files_per_s"] = round(n / wall)
        results[f"burn_{fmt}_ratio_to_bare"] = round(wall / bare, 1)
    store.close()
    for fmt in ("json", "ini", "c", "bin", "hex", "nvs"):  # deleting at the end: deletions
        shutil.rmtree(out / f"burn-{fmt}")  # (discards) would slow the next run's writes
        shutil.rmtree(out / f"bare-{fmt}")
    assert set(FORMATS) >= {"json", "nvs"}
    return results
