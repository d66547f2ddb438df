"""Blind index: find a record by a value (a national id) that is stored only sealed.

::

    index = HMAC-SHA256(region's index key, normalized value)

The index key is 32 random bytes, one per region, stored only wrapped by the master key, as
the region's data keys are (:class:`~woundcare.crypto.keyring.Keyring`). It is not a data
key: a data-key rotation leaves it as it is (every stored index must keep matching), a
master-key rotation re-wraps it, and shredding the region destroys it, after which no index
of that region can be computed or matched.

Without the key an index is 32 pseudorandom bytes: not the value, not a plain hash of it
(which anyone could compute for every one of the few billion possible numbers), and the
same value gives unrelated indexes in two regions.
"""

from __future__ import annotations

import hashlib
import hmac
from dataclasses import dataclass

INDEX_SIZE = 32


@dataclass(frozen=True, slots=True, eq=False, repr=False)
class IndexKey:
    """A region's index key, unwrapped. ``repr`` names the region, never the key."""

    region_id: int
    _secret: bytes

    def __repr__(self) -> str:
        return f"IndexKey(region_id={self.region_id}, secret=**********)"

    def index(self, normalized: str) -> bytes:
        """The blind index of ``normalized`` (already in its one canonical form)."""
        return hmac.new(self._secret, normalized.encode(), hashlib.sha256).digest()
