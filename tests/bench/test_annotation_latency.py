"""The telestration latency bench's smoke run, so that it cannot rot: both calls come up, every
stroke of both paths is timed from pointer-up to the nurse's paint (the bench itself checks that
the channel carried the first path and not the second), and the table has both rows. No figure
is checked against the target: timings belong to the bench."""

from __future__ import annotations

import pytest

from bench.annotation_latency import QUICK_STROKES, measure, render


@pytest.mark.timeout(300)
async def test_quick_run_times_every_stroke_of_both_paths() -> None:
    results = await measure(QUICK_STROKES)
    assert {path: len(values) for path, values in results.items()} == {"data channel": QUICK_STROKES, "signaling": QUICK_STROKES}
    # A paint before its pointer-up would be a clock error, not a fast path.
    assert all(value > 0 for values in results.values() for value in values), results
    table = render(results, "now", ("0", "0")).splitlines()
    assert [line.split()[0] for line in table if line.startswith(("data channel", "signaling"))] == ["data", "signaling"]
