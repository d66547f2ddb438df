"""Where the :class:`~woundcare.crypto.keyring.Keyring` keeps wrapped keys: an interface,
so the keyring decides what a key is and when a new one is made, and the store (the
``region_keys`` and ``region_index_keys`` tables, :mod:`woundcare.records.region_keys`) only
reads and writes rows."""

from __future__ import annotations

import enum
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Protocol, TypeVar

T = TypeVar("T")


class KeyKind(str, enum.Enum):
    """What a wrapped key is for; its value is the kind its wrapping is bound to."""

    DATA = "region-key"
    """A version of the region's data key: seals records, rotated."""
    INDEX = "region-index-key"
    """The region's one blind-index key (:mod:`~woundcare.crypto.blind_index`): never rotated."""


INDEX_KEY_VERSION = 1
"""An index key is never rotated: its one version, part of its wrapping's binding."""


@dataclass(frozen=True, slots=True, repr=False)
class WrappedKey:
    """One version of a region's data key, or its index key, as stored: only wrapped by a
    master key."""

    id: str
    region_id: int
    version: int
    wrapped: bytes | None
    """None once shredded."""
    master_key_id: str
    retired: bool = False
    """A retired key still opens what it sealed but seals nothing new."""
    kind: KeyKind = KeyKind.DATA

    def __repr__(self) -> str:
        return f"WrappedKey(id={self.id!r}, region_id={self.region_id}, version={self.version}, kind={self.kind.name})"


class KeyWrite(Protocol):
    """One transaction of a :meth:`KeyStore.write`."""

    async def region_shredded(self, region_id: int) -> bool:
        """Whether the region is shredded; its row stays locked (where the database can) until
        the transaction ends, so no key is made beside a concurrent shred. Raises
        :class:`LookupError` for an unknown region."""
        ...

    async def newest(self, region_id: int) -> WrappedKey | None:
        """The region's key of the highest version, shredded or not."""
        ...

    async def add(self, key: WrappedKey) -> None:
        """Store a new key version; a version another writer took first fails the write."""
        ...

    async def index_key(self, region_id: int) -> WrappedKey | None:
        """The region's index key, shredded or not; None if it has none yet."""
        ...

    async def add_index_key(self, key: WrappedKey) -> None:
        """Store the region's index key; one another writer stored first fails the write."""
        ...


class KeyStore(Protocol):
    async def write(self, work: Callable[[KeyWrite], Awaitable[T]]) -> T:
        """Run ``work`` in one transaction, again (a few times) if a concurrent writer took
        the key version it added."""
        ...

    async def find(self, key_id: str) -> tuple[WrappedKey, bool] | None:
        """The key ``key_id`` and whether its region is shredded; None for an unknown id."""
        ...

    async def find_index_key(self, region_id: int) -> tuple[WrappedKey, bool] | None:
        """The region's index key and whether the region is shredded; None if it has none."""
        ...

    async def newest_live(self) -> WrappedKey | None:
        """The most recently made key that is not shredded, of any region."""
        ...

    async def rewrap(self, master_key_id: str, rewrap: Callable[[WrappedKey], bytes]) -> int:
        """Wrap every live key (data and index keys) not under ``master_key_id`` anew with
        ``rewrap``, in one transaction; a key shredded meanwhile stays shredded. Returns how
        many changed."""
        ...

    async def shred(self, region_id: int) -> None:
        """Destroy the region's wrapped keys (its index key too) and mark the region shredded."""
        ...
