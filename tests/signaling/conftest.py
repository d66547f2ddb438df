from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from tests.coturn import Coturn, running_coturn


@pytest.fixture
async def coturn(tmp_path: Path) -> AsyncIterator[Coturn]:
    """A real coturn on loopback with its own random ``static-auth-secret``; its log is
    ``<tmp_path>/coturn/turnserver.log``. Skipped (failed in CI) when coturn is missing."""
    async with running_coturn(tmp_path / "coturn") as turn:
        yield turn
