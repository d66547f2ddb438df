"""The browser join bench's smoke run, so that it cannot rot: both Chromiums, coturn, the
server, the camera and the floor page come up, every setting is joined and timed, and the
table has every row with its ratio, and the steps of every join were timed. No figure is
checked: timings belong to the bench."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from contextlib import suppress
from pathlib import Path

import pytest

from bench.browser_join import QUICK_JOINS, SETTINGS, STEPS
from tests.coturn import turnserver_path
from tests.e2e.browser import async_playwright

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.timeout(600)
def test_quick_run_prints_a_row_for_every_setting() -> None:
    turnserver_path()  # a skip (a failure in CI) without coturn
    async_playwright()  # ... or without Chromium and Playwright
    # A session of its own, so that a bench cut short (the timeout, a killed test run) takes its
    # `woundcare camera` and coturn along instead of leaving them running.
    bench = subprocess.Popen(
        [sys.executable, "-m", "bench.browser_join", "--quick"], cwd=ROOT, env=dict(os.environ, PYTHONPATH=str(ROOT)),
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True,
    )
    try:
        stdout, stderr = bench.communicate(timeout=570)
    finally:
        with suppress(ProcessLookupError):
            os.killpg(bench.pid, signal.SIGKILL)
    assert bench.returncode == 0, stderr[-3000:]
    lines = stdout.splitlines()
    keys = [setting.key for setting in SETTINGS]
    targets = next(i for i, line in enumerate(lines) if line.startswith("targets:"))
    where = next(i for i, line in enumerate(lines) if line.startswith("where the time goes"))
    rows = {line.split()[0]: line.split() for line in lines[:targets] if line.split()[:1] and line.split()[0] in keys}
    assert list(rows) == keys, stdout
    # Joins that never show video are a broken path, not a slow one (a page policy that blocked
    # the delayed socket once made every join of a setting time out).
    assert not [key for key, row in rows.items() if "timeout" in row], stdout
    for setting in SETTINGS:
        cells = rows[setting.key]
        assert str(QUICK_JOINS) in cells, cells
        ratio = cells[-1]
        assert ratio == "-" if setting.key == setting.floor else float(ratio) > 0, cells
    verdicts = [line.split()[0] for line in lines[targets:where] if line.startswith("  ")]
    assert verdicts == [s.key for s in SETTINGS if s.key != s.floor], stdout
    # Where the time goes: every step after the click was seen, the floor's only from the offer
    # on and none on the wire (it has no server). The token and the socket count only when the
    # page had not got them ready before it.
    header, *step_rows = lines[where + 1 :]
    assert header.split()[-len(STEPS) - 1 :] == [*STEPS, "frame"], stdout
    steps = {row.split()[0]: row.split()[1:] for row in step_rows}
    assert list(steps) == keys, stdout
    ahead = {"token", "socket", "open"}
    for setting in SETTINGS:
        seen = [step for step, cell in zip(STEPS, steps[setting.key]) if cell != "-"]
        floor_steps = [step for step in STEPS[STEPS.index("offer"):] if not step.startswith("wire:")]
        if setting.key == setting.floor:
            assert seen == floor_steps, (setting.key, stdout)
        else:
            assert [step for step in seen if step not in ahead] == [s for s in STEPS if s not in ahead], (setting.key, stdout)
