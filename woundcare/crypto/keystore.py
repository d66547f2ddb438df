"""Where the :class:`~woundcare.crypto.keyring.Keyring` keeps wrapped data keys: an interface,
so the keyring decides what a key is and when a new one is made, and the store (the
``region_keys`` table, :mod:`woundcare.records.region_keys`) only reads and writes rows."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Protocol, TypeVar

T = TypeVar("T")


@dataclass(frozen=True, slots=True, repr=False)
class WrappedKey:
    """One version of a region's data key, as stored: only wrapped by a master key."""

    id: str
    region_id: int
    version: int
    wrapped: bytes | None
    """None once shredded."""
    master_key_id: str
    retired: bool = False
    """A retired key still opens what it sealed but seals nothing new."""

    def __repr__(self) -> str:
        return f"WrappedKey(id={self.id!r}, region_id={self.region_id}, version={self.version})"


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


class KeyStore(Protocol):
    async def write(self, work: Callable[[KeyWrite], Awaitable[T]]) -> T:
        """Run ``work`` in one transaction, again (a few times) if a concurrent writer took
        the key version it added."""
        ...

    async def find(self, key_id: str) -> tuple[WrappedKey, bool] | None:
        """The key ``key_id`` and whether its region is shredded; None for an unknown id."""
        ...

    async def newest_live(self) -> WrappedKey | None:
        """The most recently made key that is not shredded, of any region."""
        ...

    async def rewrap(self, master_key_id: str, rewrap: Callable[[WrappedKey], bytes]) -> int:
        """Wrap every live key not under ``master_key_id`` anew with ``rewrap``, in one
        transaction; a key shredded meanwhile stays shredded. Returns how many changed."""
        ...

    async def shred(self, region_id: int) -> None:
        """Destroy the region's wrapped keys and mark the region shredded."""
        ...
