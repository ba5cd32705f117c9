"""QR label benchmarks, run by benchmarks/run.py (or alone: python benchmarks/qr_bench.py OUT).

Registers N devices into a fresh local store, then measures in a child process each (so the
peak RSS is the run's own): a 10,000-label A4 PDF (3 x 8 per page, every symbol decoded back
before writing), 10,000 ZPL labels, and PNG / SVG labels per second on 1,000 labels.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

_CHILD = r"""
import json, resource, sys, time
from enosprov import api
from enosprov.burn.export import Selection
from enosprov.qr.batch import qr_batch
store, out, fmt, n = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
be = api.open_store(store)
sel = Selection(group="bench", device_sns=tuple(f"MTR-{i:09d}" for i in range(n)))
base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
t0 = time.perf_counter()
report = qr_batch(be, sel, out, fmt=fmt)
wall = time.perf_counter() - t0
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
assert report.devices == n and report.verified == n, report.to_dict()
print(json.dumps({"wall": wall, "peak_mb": peak / 1024, "delta_mb": (peak - base) / 1024}))
"""


def _child(store: Path, out: Path, fmt: str, n: int) -> dict:
    proc = subprocess.run([sys.executable, "-c", _CHILD, str(store), str(out), fmt, str(n)],
                          capture_output=True, text=True)  # fmt: skip
    if proc.returncode:
        sys.exit(f"qr bench {fmt} failed: {proc.stderr[-2000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def _document(folder: Path, suffix: str) -> Path:
    """The one label document of a run (named after its selection: labels-<group>.pdf)."""
    (path,) = folder.glob(f"labels*{suffix}")
    return path


def run(out: Path, make_csv, labels: int = 10_000, per_image: int = 1_000) -> dict:
    from enosprov import api

    store_path = out / "qr-store.db"
    store = api.open_store(store_path)
    api.create_masterdata_group(store, ROOT / "examples" / "masterdata.toml")
    api.create_group(store, group_id="bench", name="Bench", product_key="pk", region_id="eu2",
                     org_id="o1", masterdata_group_id="meters")  # fmt: skip
    csv_path = out / f"qr-{labels}.csv"
    make_csv(csv_path, labels)
    api.register_csv(store, csv_path, "bench")
    store.close()
    results: dict = {}
    pdf = _child(store_path, out / "qr-pdf", "pdf", labels)
    results["qr_pdf_labels"] = labels
    results["qr_pdf_wall_s"] = round(pdf["wall"], 2)
    results["qr_pdf_peak_rss_mb"] = round(pdf["peak_mb"], 1)
    results["qr_pdf_rss_delta_mb"] = round(pdf["delta_mb"], 1)
    results["qr_pdf_file_mb"] = round(_document(out / "qr-pdf", ".pdf").stat().st_size / 1e6, 2)
    zpl = _child(store_path, out / "qr-zpl", "zpl", labels)
    results["qr_zpl_labels"] = labels
    results["qr_zpl_wall_s"] = round(zpl["wall"], 2)
    results["qr_zpl_file_mb"] = round(_document(out / "qr-zpl", ".zpl").stat().st_size / 1e6, 2)
    for fmt in ("png", "svg"):
        r = _child(store_path, out / f"qr-{fmt}", fmt, per_image)
        results[f"qr_{fmt}_labels_per_s"] = round(per_image / r["wall"])
    results["qr_pdf_labels_per_s"] = round(labels / pdf["wall"])
    results["qr_zpl_labels_per_s"] = round(labels / zpl["wall"])
    results.update(phase_shares(out, per_image))
    return results


def phase_shares(out: Path, n: int) -> dict:
    """Where the time of one PNG label goes: encode, render, verify (decode back), write."""
    from enosprov.atomic import write_bytes
    from enosprov.qr.payload import Payload
    from enosprov.qr.render import QrOptions, encode, png_bytes, to_image, verify_png

    folder = out / "qr-phases"
    folder.mkdir(parents=True, exist_ok=True)
    options = QrOptions()
    spent = dict.fromkeys(("encode", "render", "verify", "write"), 0.0)
    for i in range(n):
        text = Payload("bench", f"MTR-{i:09d}", f"{i:016x}", "B-000").text
        t0 = time.perf_counter()
        symbol = encode(text, options.ec)
        t1 = time.perf_counter()
        data = png_bytes(to_image(symbol, options, f"MTR-{i:09d}"))
        t2 = time.perf_counter()
        verify_png(data, text)
        t3 = time.perf_counter()
        write_bytes(folder / f"{i}.png", data)
        t4 = time.perf_counter()
        for key, dt in zip(spent, (t1 - t0, t2 - t1, t3 - t2, t4 - t3)):
            spent[key] += dt
    total = sum(spent.values())
    return {f"qr_png_share_{k}_pct": round(100 * v / total) for k, v in spent.items()}


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from run import make_csv

    target = Path(sys.argv[1] if len(sys.argv) > 1 else ROOT / "bench-out" / "qr")
    target.mkdir(parents=True, exist_ok=True)
    print(json.dumps(run(target, make_csv), indent=2))
