"""Counts the relay keeps for monitoring: plain integers, so the hot path pays an
increment and nothing more; an exporter reads them when it is scraped."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field


@dataclass(slots=True)
class Stats:
    relayed: int = 0
    """Frames routed from a joined participant."""
    errors: Counter[str] = field(default_factory=Counter)
    """Error frames and refusals sent, by error code."""
