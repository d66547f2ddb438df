"""The load bench's smoke run, so that it cannot rot: all three servers start, every
client connects, both phases relay, every client leaves, and the table comes out with its
ratios, the CPU per join and per leave and the settings the bench changed."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

from tests.services import missing

ROOT = Path(__file__).resolve().parents[2]


def test_quick_run_prints_the_table_for_all_three_servers() -> None:
    if shutil.which("node") is None or shutil.which("npm") is None:
        missing("node and npm are needed for the PeerJS server")
    result = subprocess.run(
        [sys.executable, "-m", "bench.signaling_load", "--quick"],
        cwd=ROOT, env=dict(os.environ, PYTHONPATH=str(ROOT)), capture_output=True, text=True, timeout=170,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    rows = {line.split()[1]: line.split() for line in result.stdout.splitlines() if line.startswith("20 ")}
    assert set(rows) == {"woundcare", "peerjs", "bare"}, result.stdout
    for cells in rows.values():
        frames_per_second = float(cells[5].replace(",", ""))
        assert frames_per_second > 0, result.stdout
    ratios = [line for line in result.stdout.splitlines() if line.strip().startswith("N=20") and " vs " in line]
    assert len(ratios) == 2 and all("nan" not in line for line in ratios), result.stdout
    for cells in rows.values():  # all in, CPU per join and per leave: measured, not left out
        assert all(float(cell) >= 0 for cell in cells[-3:]), result.stdout
    assert float(rows["woundcare"][-2]) > 0, result.stdout  # a join costs something
    costs = [line for line in result.stdout.splitlines() if line.strip().startswith("N=20") and "join" in line]
    assert len(costs) == 1 and "leave" in costs[0], result.stdout
    assert "WOUNDCARE_RATE_PER_SECOND=100000" in result.stdout, result.stdout
