"""enosprov's Python API from start to finish (docs/python-api.md).

    python examples/python_api.py demo-out/api-store.db demo-out/api
    python examples/python_api.py - demo-out/api --profile prod

With a local store (a new file) it creates the master data group `meters` and the registration
group `meters-eu` itself. With an EnOS profile (``--profile``) those groups are made in the EnOS
console and named in the profile (`enosprov config add-group PROFILE meters-eu --masterdata
examples/masterdata.toml ...`); the store argument is then not used.

Then: register five meters given as a list of dicts, burn their credential files, make their
labels (one A4 PDF sheet), allocate one unit and reprovision it to another environment and OU,
replace another unit by a new one (with its credential file and label), summarise the batch and
write its HTML and CSV reports, and read back the audit journal of all this.

Every step is journaled in the session's journal, stamped with the station `api-example`. Run it
on a new store: a second run stops at the registration, which refuses the unit the first run
replaced (re-running an old batch does not bring a retired unit back).
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import Any

from enosprov import api
from enosprov.errors import EnosprovError

HERE = Path(__file__).resolve().parent
GROUP = "meters-eu"
BATCH = "B-API-1"
STATION = "api-example"

# One dict per device, with the columns of the registration CSV (docs/csv-format.md).
RECORDS: list[dict[str, object]] = [
    {"deviceSn": f"MTR-API-00000{i}", "deviceName": f"Meter {i}", "timezone": "+01:00",
     "max_capacity": 40 + 20 * i, "phase": "single" if i < 4 else "three", "site": "Plant A"}
    for i in range(1, 6)
]  # fmt: skip
ACTIVATED = "MTR-API-000001"  # allocated, then reprovisioned to another environment and OU
FAULTY, SPARE = "MTR-API-000003", "MTR-API-000103"  # FAULTY is replaced by SPARE


def create_groups(session: api.Session) -> None:
    """The master data group and the registration group (local store only). Safe to run again:
    the same definition already there is "unchanged"."""
    mdg = api.ensure_masterdata_group(session, HERE / "masterdata.toml")
    group = api.ensure_group(
        session,
        group_id=GROUP,
        name="Smart meters EU",
        product_key="demoPK01",
        masterdata_group_id=mdg.value.id,
        region_id="eu2",
        org_id="o15000000000001",
        timezone="+01:00",
    )
    print(f"master data group {mdg.value.id}: {mdg.status}; "
          f"registration group {group.value.group_id}: {group.status}")  # fmt: skip


def main(
    store_path: str | Path | None, out_dir: str | Path, profile: str | None = None
) -> dict[str, Any]:
    """Run every step against the local store ``store_path``, or the EnOS ``profile``; the
    files go to ``out_dir``. Returns what each step reported."""
    out = Path(out_dir)
    results: dict[str, Any] = {}
    store = None if profile else store_path
    with api.open_session(store, profile=profile, station=STATION) as session:
        started = int(time.time() * 1000)
        print(f"backend: {session.label}; journal: {session.journal.path}")
        if profile is None:
            create_groups(session)

        # Register devices given in memory: validated first, idempotent, journaled.
        reg = api.register_records(session, RECORDS, GROUP, batch_tag=BATCH)
        print(f"registered: {reg.created} created, {reg.skipped} already there")
        results["register"] = reg

        # Credential files to burn (JSON, bootstrap content: the group secret), with manifest.
        burn = api.burn_export(session, GROUP, out / "burn", batch_tag=BATCH, fmt="json")
        print(f"credential files: {burn.written} written in {burn.out_dir}")
        results["burn"] = burn

        # QR labels: one A4 sheet of 3 x 8 labels.
        labels = api.label_export(
            session, GROUP, out / "labels", batch_tag=BATCH, fmt="pdf", template="a4-3x8-70x37"
        )
        print(f"labels: {labels.document} ({labels.devices} labels)")
        results["labels"] = labels

        # A unit is activated (a device does it itself when it bootstraps with its file), then
        # moved to another environment and OU: it keeps its group secret and serial number.
        unit = api.find_device(session, ACTIVATED, GROUP)
        results["allocate"] = api.allocate_devices(session, [unit])
        moved = api.reprovision(session, [ACTIVATED], group=GROUP, region_id="cn5", org_id="o2")
        print(f"reprovisioned: {len(moved.targeted)} unit(s) to cn5 / o2")
        results["reprovision"] = moved

        # A faulty unit is swapped for a new one, which keeps its master data and batch; the
        # new unit's credential file and label are written in the same call.
        outputs = api.Outputs(
            burn_dir=out / "replacements",
            label_dir=out / "replacements" / "labels",
            label_format="pdf",
        )
        swap = api.replace_device(session, FAULTY, SPARE, group=GROUP, outputs=outputs)
        for r in swap.replaced:
            print(f"replaced {r.old_device_sn} ({r.old_sn}) by {r.new_device_sn} ({r.new_sn})")
        results["replace"] = swap

        # How far the batch has come, and its report (HTML to open or mail, CSV per device).
        (summary,) = [b for b in api.batch_summaries(session, group=GROUP) if b.batch_tag == BATCH]
        print("batch:", ", ".join(f"{state} {n}" for state, n in summary.counts.items()))
        results["batch"] = summary
        report = api.batch_report(
            session, BATCH, out / "report.html", csv_path=out / "report.csv", group=GROUP
        )
        print(f"report: {report.html} and {report.csv} ({report.csv_rows} rows)")
        results["report"] = report

        # The audit journal: who did what, when, from which station.
        entries = api.journal_entries(session, since=started, station=STATION)
        for e in entries:
            print(f"{e.iso_time}  {e.operation:<17} {e.outcome:<8} {e.device_count} device(s)")
        results["journal"] = entries
    return results


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("store", help="the local store file (not used with --profile)")
    parser.add_argument("out", help="the folder for the files written")
    parser.add_argument("--profile", help="an EnOS profile instead of the local store")
    args = parser.parse_args()
    try:
        main(args.store, args.out, args.profile)
    except EnosprovError as err:  # the message and hint the CLI would print, and its exit code
        print(f"error: {err.message}")
        for issue in getattr(err, "issues", [])[:10]:  # ValidationFailedError: the rows refused
            print(f"  {issue}")
        if err.hint:
            print(f"hint: {err.hint}")
        raise SystemExit(err.exit_code) from None
