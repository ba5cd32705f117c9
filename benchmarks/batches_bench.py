"""`enosprov batches list` over the big store (1,000,000 devices in 100 batches).

Before timing, a tenth of the devices are given a life after registration (allocated and
connected, as bootstraps would leave them) and a fifth get an "exported" journal mark, so the
store's partial index and the journal's marks table hold something to count.
"""

from __future__ import annotations

import json
import statistics
import subprocess
import time
from pathlib import Path


def activity(store: Path | str) -> None:
    """A tenth allocated and connected, a fifth with an "exported" journal mark, in the store at
    ``store`` (an SQLite file, or a PostgreSQL URL: the same statements, through the store)."""
    from enosprov.settings import Settings, open_journal

    settings = Settings.local(store)
    with settings.create_backend() as be:
        with be.write() as conn:
            conn.execute(
                "UPDATE devices SET allocate_status='allocated', connect_status='connected', "
                "current_status='connected', region_id='eu2', org_id='o1', "
                "allocated_time=create_time + 3600000 * (rowid % 240), "
                "connected_time=create_time + 3600000 * (rowid % 240), "
                "update_time=update_time + 1000 WHERE rowid % 10 = 0"
            )
        marks = be.conn.execute(
            "SELECT 'exported', sn, device_sn, group_id, batch_tag FROM devices WHERE rowid % 5 = 0"
        ).fetchall()
    journal = open_journal(settings, "bench")
    for start in range(0, len(marks), 50_000):
        journal._write_marks([tuple(m) for m in marks[start : start + 50_000]])
    journal.close()


def run(cmd: list[str], store: Path, rounds: int = 3) -> dict:
    activity(store)
    walls = []
    out = None
    for _ in range(rounds + 1):  # the first run opens the store once (cache warm-up)
        t0 = time.perf_counter()
        proc = subprocess.run([*cmd, "--store", str(store), "batches", "list", "--json"],
                              capture_output=True, text=True)  # fmt: skip
        walls.append(time.perf_counter() - t0)
        if proc.returncode:
            raise SystemExit(f"batches list failed: {proc.stderr}")
        out = json.loads(proc.stdout)["data"]
    registered = sum(b["counts"]["registered"] for b in out)
    return {
        "batches_list_batches": len(out),
        "batches_list_devices": registered,
        "batches_list_wall_s": round(statistics.median(walls[1:]), 3),
        "batches_list_first_wall_s": round(walls[0], 3),
    }
