"""Fuzz and abuse tests (issue #10), with budgets bounded for CI.

The environment raises the budgets for a longer run (see docs/protocol.md, "Fuzzing and
abuse tests"):

- ``WOUNDCARE_FUZZ_EXAMPLES``: hypothesis examples per property (CI: 200).
- ``WOUNDCARE_FUZZ_FRAMES``: raw frames sent to the live server (CI: 2000).
"""

from __future__ import annotations

import os

EXAMPLES = int(os.environ.get("WOUNDCARE_FUZZ_EXAMPLES", "200"))
FRAMES = int(os.environ.get("WOUNDCARE_FUZZ_FRAMES", "2000"))
