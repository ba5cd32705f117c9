"""The torture suite's quick mode: kill -9 at random moments, concurrent stations, replace races,
API faults, hostile CSV files and emulator abuse, every figure at its target.

It runs `benchmarks/torture.py --quick` as a subprocess (about 45 s on two cores; `make torture`
runs the full mode, docs/torture.md explains every figure). The seed is new on every run and
printed with the figures; set ENOSPROV_TORTURE_SEED to replay one.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.skipif(os.name != "posix", reason="kills with SIGKILL")
def test_quick_torture_meets_every_target(tmp_path):
    out = tmp_path / "torture"
    cmd = [sys.executable, str(ROOT / "benchmarks" / "torture.py"), "--quick", "--quiet",
           "--out", str(out)]  # fmt: skip
    if os.environ.get("ENOSPROV_TORTURE_SEED"):
        cmd += ["--seed", os.environ["ENOSPROV_TORTURE_SEED"]]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600, cwd=ROOT)
    results_file = out / "results.json"
    assert results_file.exists(), f"the torture run broke:\n{proc.stdout}\n{proc.stderr[-5000:]}"
    results = json.loads(results_file.read_text(encoding="utf-8"))
    print(proc.stdout)
    missed = [f"{f['scenario']}: {f['name']} = {f['value']} (target {f['target']})"
              for f in results["figures"] if not f["ok"]]  # fmt: skip
    log = (out / "torture.log").read_text(encoding="utf-8", errors="replace")
    assert not missed and proc.returncode == 0, (
        f"seed {results['seed']} (ENOSPROV_TORTURE_SEED={results['seed']} replays it), "
        f"missed: {missed}\n{proc.stdout}\n--- torture.log (end):\n{log[-6000:]}"
    )
    # every scenario reported its figures
    scenarios = {f["scenario"] for f in results["figures"]}
    assert len(scenarios) == 8, scenarios
