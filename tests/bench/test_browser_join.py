"""The browser join bench's smoke run, so that it cannot rot: both Chromiums, coturn, the
server, the camera and the floor page come up, every setting is joined and timed, and the
table has every row with its ratio. No figure is checked: timings belong to the bench."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from bench.browser_join import QUICK_JOINS, SETTINGS
from tests.coturn import turnserver_path
from tests.e2e.browser import async_playwright

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.timeout(600)
def test_quick_run_prints_a_row_for_every_setting() -> None:
    turnserver_path()  # a skip (a failure in CI) without coturn
    async_playwright()  # ... or without Chromium and Playwright
    result = subprocess.run(
        [sys.executable, "-m", "bench.browser_join", "--quick"],
        cwd=ROOT, env=dict(os.environ, PYTHONPATH=str(ROOT)), capture_output=True, text=True, timeout=600,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    lines = result.stdout.splitlines()
    keys = [setting.key for setting in SETTINGS]
    rows = {line.split()[0]: line.split() for line in lines if line.split()[:1] and line.split()[0] in keys and line[0] != " "}
    assert list(rows) == keys, result.stdout
    # Joins that never show video are a broken path, not a slow one (a page policy that blocked
    # the delayed socket once made every join of a setting time out).
    assert not [key for key, row in rows.items() if "timeout" in row], result.stdout
    for setting in SETTINGS:
        cells = rows[setting.key]
        assert str(QUICK_JOINS) in cells, cells
        ratio = cells[-1]
        assert ratio == "-" if setting.key == setting.floor else float(ratio) > 0, cells
    verdicts = [line.split()[0] for line in lines if line.startswith("  ")]
    assert verdicts == [s.key for s in SETTINGS if s.key != s.floor], result.stdout
