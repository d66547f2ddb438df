"""The recording bench's smoke run, so that it cannot rot: the server, two cameras and their
pages come up, every phase is measured (one and two calls recorded, each between unrecorded
ones), every recording is finished and counted, and the table has a row per level. No figure
is checked against the target: timings belong to the bench."""

from __future__ import annotations

import pytest

from bench.recording import measure, render


@pytest.mark.timeout(600)
async def test_quick_run_measures_every_phase() -> None:
    phases = await measure(2, (320, 180), 3.0, 1)
    assert [p.recorded for p in phases] == [0, 1, 0, 2, 0]
    for phase in phases:
        assert len(phase.uplink) == 2 and all(u > 0 for u in phase.uplink) and phase.pings, phase
    assert all(p.stored > 0 and p.decoded > 0 for p in phases if p.recorded), phases
    # Chromium's pages store the camera's VP8 frames as received: no video encoder in the page.
    assert all(p.passed_through == p.recorded for p in phases), phases
    table = render(phases, 2, (320, 180), 3.0).splitlines()
    assert [line.split()[0] for line in table[2:5]] == ["0", "1", "2"]
