"""Master keys and the per-region data keys they wrap.

Each region has data keys (DEKs, 32 random bytes) in a :class:`~woundcare.crypto.keystore.KeyStore`
(the ``region_keys`` table), versioned: the newest
version seals new records (a new one is made if it was retired), older ones still open what
they sealed. A DEK is stored only wrapped, sealed with the master key in an
:mod:`~woundcare.crypto.aead` envelope bound to the region, the key id and the version, so a
wrapped key copied to another row does not unwrap. The master key lives outside the database
(a file or an environment variable); its id is stored beside each wrapped key.

Each region also has one blind-index key (:mod:`~woundcare.crypto.blind_index`), random and
wrapped the same way but bound to its own kind: data-key rotation leaves it alone (the
stored indexes must keep matching), master-key rotation re-wraps it.

Shredding a region deletes its wrapped keys, the index key too; what they sealed is
unreadable from then on, and no index of the region can be computed or matched.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import hashlib
import os
import secrets
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from ..storage.files import create_once
from .aead import Binding, key_id_of, open_with, seal, seal_into, sealed_size
from .blind_index import IndexKey
from .errors import KeyShreddedError, MasterKeyError, RecordIntegrityError
from .keystore import INDEX_KEY_VERSION, KeyKind, KeyStore, KeyWrite, WrappedKey
from .sealing import KEY_SIZE, Bytes

_MASTER_ID_DOMAIN = b"woundcare/master-key-id/v1\x00"


@dataclass(frozen=True, slots=True, eq=False, repr=False)
class MasterKey:
    """The key that wraps every region's data keys. ``repr`` shows its id, never the key."""

    secret: bytes
    id: str = field(init=False)
    """First 16 hex digits of a domain-separated SHA-256 of the key: names it, reveals nothing."""

    def __post_init__(self) -> None:
        if len(self.secret) != KEY_SIZE:
            raise MasterKeyError(f"master key must be {KEY_SIZE} bytes (got {len(self.secret)})")
        digest = hashlib.sha256(_MASTER_ID_DOMAIN + self.secret).hexdigest()
        object.__setattr__(self, "id", digest[:16])

    def __repr__(self) -> str:
        return f"MasterKey(id={self.id!r}, secret=**********)"

    @classmethod
    def from_env_value(cls, value: str) -> MasterKey:
        """A master key from its base64 text, as kept in an environment variable."""
        try:
            secret = base64.b64decode(value.strip(), validate=True)
        except (binascii.Error, ValueError):
            # No chaining: the decoder's message could quote part of the value.
            raise MasterKeyError("master key is not valid base64") from None
        return cls(secret)

    @classmethod
    def from_file(cls, path: str | os.PathLike[str], *, create: bool = False) -> MasterKey:
        """The master key in ``path`` (base64 text), made there with mode 0600 if ``create``."""
        file = Path(path)
        if create and not file.exists():
            _create_key_file(file)
        try:
            text = file.read_text(encoding="ascii")
        except FileNotFoundError:
            raise MasterKeyError(f"no master key file at {file}") from None
        except UnicodeDecodeError:
            raise MasterKeyError(f"master key file {file} is not base64 text") from None
        return cls.from_env_value(text)


def _create_key_file(path: Path) -> None:
    text = base64.b64encode(os.urandom(KEY_SIZE)) + b"\n"
    # Created once, never replaced: losing the race to another process means using its key,
    # not silently orphaning data sealed under it.
    with contextlib.suppress(FileExistsError):
        create_once(path, text)


@dataclass(frozen=True, slots=True, eq=False, repr=False)
class _DataKey:
    key_id: str
    region_id: int
    version: int
    secret: bytes
    loaded_at: float
    """``time.monotonic()`` when read from the database, for the cache's time to live."""

    def __repr__(self) -> str:
        return (
            f"_DataKey(key_id={self.key_id!r}, region_id={self.region_id}, version={self.version})"
        )


@dataclass(frozen=True, slots=True, eq=False, repr=False)
class Sealer:
    """A region's current data key, to seal with synchronously: in a worker thread, beside
    the write of what it seals, rather than on the event loop."""

    _key: _DataKey

    def __repr__(self) -> str:
        return f"Sealer(key_id={self.key_id!r}, region_id={self._key.region_id})"

    @property
    def key_id(self) -> str:
        return self._key.key_id

    def seal(self, binding: Binding, plaintext: bytes) -> bytes:
        return seal(self._key.secret, self._key.key_id, self._check(binding), plaintext)

    def sealed_size(self, plaintext_size: int) -> int:
        return sealed_size(self._key.key_id, plaintext_size)

    def seal_into(self, binding: Binding, plaintext: Bytes, out: memoryview) -> int:
        """:func:`~woundcare.crypto.aead.seal_into` with this key."""
        return seal_into(self._key.secret, self._key.key_id, self._check(binding), plaintext, out)

    def _check(self, binding: Binding) -> Binding:
        if binding.region_id != self._key.region_id:
            raise ValueError(f"sealer of region {self._key.region_id} given region {binding.region_id}")
        return binding


class Keyring:
    """Seals and opens records with their region's data key.

    ``master_keys[0]`` wraps new and re-wrapped keys; the others only unwrap, so a master key
    rotation is: start with ``[new, old]``, :meth:`rewrap_all`, then drop ``old``.

    Unwrapped data keys are cached in memory. This keyring's own :meth:`shred` and :meth:`rotate`
    take effect at once; another process's within ``cache_ttl`` seconds.
    """

    def __init__(
        self,
        store: KeyStore,
        master_keys: Sequence[MasterKey],
        *,
        cache_ttl: float = 60.0,
    ) -> None:
        if not master_keys:
            raise MasterKeyError("no master key given")
        self._store = store
        self._master = master_keys[0]
        self._masters = {key.id: key for key in master_keys}
        self._cache_ttl = cache_ttl
        self._keys: dict[str, _DataKey] = {}
        self._current: dict[int, _DataKey] = {}
        self._index_keys: dict[int, _DataKey] = {}
        # Bumped by shred and rotate, so a lookup that raced one of them does not cache its result.
        self._epoch = 0

    async def ensure_region_key(self, region_id: int) -> str:
        """The id of the region's current data key, made (version 1) if the region has none."""
        return (await self._current_key(region_id)).key_id

    async def seal(self, binding: Binding, plaintext: bytes) -> bytes:
        """Seal ``plaintext`` for ``binding`` with its region's current data key."""
        return (await self.sealer(binding.region_id)).seal(binding, plaintext)

    async def sealer(self, region_id: int) -> Sealer:
        """The region's current data key as a :class:`Sealer`, for sealing off the event loop.

        Hold it for one record only: a :meth:`rotate` or :meth:`shred` does not reach it.
        """
        return Sealer(await self._current_key(region_id))

    async def open(self, binding: Binding, envelope: bytes) -> bytes:
        """Open ``envelope`` sealed for ``binding``, with the key named in it.

        Raises :class:`RecordIntegrityError` if the envelope does not belong to ``binding`` (or
        its key to the binding's region), :class:`KeyShreddedError` if the key was destroyed.
        """
        key = await self._key_for(binding, key_id_of(envelope, binding))
        return open_with(key.secret, binding, envelope)

    async def index_key(self, region_id: int) -> IndexKey:
        """The region's blind-index key, made if the region has none yet.

        Raises :class:`KeyShreddedError` if the region was shredded.
        """
        cached = self._index_keys.get(region_id)
        if cached is None or not self._is_fresh(cached):
            epoch = self._epoch
            cached = await self._store.write(lambda write: self._find_or_create_index_key(write, region_id))
            self._remember_index_key(cached, epoch)
        return IndexKey(region_id, cached.secret)

    async def existing_index_key(self, region_id: int) -> IndexKey | None:
        """The region's blind-index key, None if it has none yet (so nothing is indexed there).

        Raises :class:`KeyShreddedError` if the region was shredded.
        """
        cached = self._index_keys.get(region_id)
        if cached is None or not self._is_fresh(cached):
            epoch = self._epoch
            found = await self._store.find_index_key(region_id)
            if found is None:
                return None
            stored, shredded = found
            if shredded:
                raise KeyShreddedError(region_id, stored.id)
            cached = self._unwrap(stored)
            self._remember_index_key(cached, epoch)
        return IndexKey(region_id, cached.secret)

    async def rotate(self, region_id: int) -> str:
        """Make a new data key version the region's current one; returns its id.

        Older keys keep opening what they sealed; :meth:`reseal` moves records to the new key.
        """
        key = await self._store.write(lambda write: self._new_version(write, region_id))
        self._epoch += 1
        self._remember(key, self._epoch, current=True)
        return key.key_id

    async def reseal(self, binding: Binding, envelope: bytes) -> bytes:
        """``envelope`` sealed again under the region's current key, for a re-encryption pass.

        An envelope already under the current key is returned as it is, unopened, so a pass
        that is resumed skips the records it has done.
        """
        current = await self._current_key(binding.region_id)
        if key_id_of(envelope, binding) == current.key_id:
            return envelope
        plaintext = await self.open(binding, envelope)
        return seal(current.secret, current.key_id, binding, plaintext)

    async def check(self) -> None:
        """Unwrap the newest live data key, so a wrong or missing master key shows in a
        readiness check rather than on a patient's record; raises :class:`MasterKeyError`."""
        newest = await self._store.newest_live()
        if newest is not None:
            self._unwrap(newest)

    async def rewrap_all(self) -> int:
        """Wrap every live data key and index key under the current master key; returns how
        many changed."""
        return await self._store.rewrap(
            self._master.id, lambda stored: self._wrap(self._unwrap(stored), stored.kind)
        )

    async def shred(self, region_id: int) -> None:
        """Destroy every data key of the region, and its index key, and mark it shredded; other
        regions keep theirs."""
        await self._store.shred(region_id)
        self._epoch += 1
        self._current.pop(region_id, None)
        self._index_keys.pop(region_id, None)
        for key_id in [k.key_id for k in self._keys.values() if k.region_id == region_id]:
            del self._keys[key_id]

    async def _current_key(self, region_id: int) -> _DataKey:
        cached = self._current.get(region_id)
        if cached is not None and self._is_fresh(cached):
            return cached
        epoch = self._epoch
        key = await self._store.write(lambda write: self._find_or_create_current(write, region_id))
        self._remember(key, epoch, current=True)
        return key

    async def _find_or_create_current(self, write: KeyWrite, region_id: int) -> _DataKey:
        await _lock_live_region(write, region_id)
        newest = await write.newest(region_id)
        # A retired key still opens what it sealed but seals nothing new.
        if newest is None or newest.retired:
            return await self._create_key(write, region_id, _next_version(newest))
        return self._unwrap(newest)

    async def _find_or_create_index_key(self, write: KeyWrite, region_id: int) -> _DataKey:
        await _lock_live_region(write, region_id)
        stored = await write.index_key(region_id)
        if stored is not None:
            return self._unwrap(stored)
        key = _new_key(region_id, INDEX_KEY_VERSION)
        # Two first registrations in a region at once: the second add fails on the region's
        # primary key and write() runs this again, which then finds the first one's key.
        await write.add_index_key(
            WrappedKey(key.key_id, region_id, key.version, self._wrap(key, KeyKind.INDEX), self._master.id,
                       kind=KeyKind.INDEX)
        )
        return key

    async def _new_version(self, write: KeyWrite, region_id: int) -> _DataKey:
        await _lock_live_region(write, region_id)
        newest = await write.newest(region_id)
        return await self._create_key(write, region_id, _next_version(newest))

    async def _create_key(self, write: KeyWrite, region_id: int, version: int) -> _DataKey:
        key = _new_key(region_id, version)
        await write.add(WrappedKey(key.key_id, region_id, version, self._wrap(key), self._master.id))
        return key

    async def _key_for(self, binding: Binding, key_id: str) -> _DataKey:
        key = self._keys.get(key_id)
        if key is None or not self._is_fresh(key):
            epoch = self._epoch
            key = await self._load(binding, key_id)
            self._remember(key, epoch, current=False)
        if key.region_id != binding.region_id:
            raise RecordIntegrityError.about("key belongs to another region", binding, key_id)
        return key

    async def _load(self, binding: Binding, key_id: str) -> _DataKey:
        found = await self._store.find(key_id)
        if found is None:
            raise RecordIntegrityError.about("unknown key id", binding, key_id)
        stored, shredded = found
        if shredded:
            raise KeyShreddedError(stored.region_id, key_id)
        return self._unwrap(stored)

    def _remember(self, key: _DataKey, epoch: int, *, current: bool) -> None:
        if epoch != self._epoch:
            return
        self._keys[key.key_id] = key
        if current:
            self._current[key.region_id] = key

    def _remember_index_key(self, key: _DataKey, epoch: int) -> None:
        if epoch == self._epoch:
            self._index_keys[key.region_id] = key

    def _is_fresh(self, key: _DataKey) -> bool:
        return time.monotonic() - key.loaded_at < self._cache_ttl

    def _wrap(self, key: _DataKey, kind: KeyKind = KeyKind.DATA) -> bytes:
        binding = _wrap_binding(key.region_id, key.key_id, key.version, kind)
        return seal(self._master.secret, self._master.id, binding, key.secret)

    def _unwrap(self, row: WrappedKey) -> _DataKey:
        if row.wrapped is None:
            raise KeyShreddedError(row.region_id, row.id)
        master = self._masters.get(row.master_key_id)
        if master is None:
            raise MasterKeyError(
                "wrapped by a master key that is not loaded",
                master_key_id=row.master_key_id,
                key_id=row.id,
            )
        try:
            secret = open_with(
                master.secret, _wrap_binding(row.region_id, row.id, row.version, row.kind), row.wrapped
            )
        except RecordIntegrityError:
            raise MasterKeyError(
                "master key does not unwrap this key (wrong key or altered row)",
                master_key_id=master.id,
                key_id=row.id,
            ) from None
        return _DataKey(row.id, row.region_id, row.version, secret, time.monotonic())


def _wrap_binding(region_id: int, key_id: str, version: int, kind: KeyKind) -> Binding:
    # Key ids are URL-safe base64, without "/", so "id/version" names one row only; the kind
    # keeps an index key from passing for a data key (and back) if copied between tables.
    return Binding(region_id=region_id, kind=kind.value, record_id=f"{key_id}/{version}")


def _new_key(region_id: int, version: int) -> _DataKey:
    return _DataKey(
        key_id=secrets.token_urlsafe(18),
        region_id=region_id,
        version=version,
        secret=os.urandom(KEY_SIZE),
        loaded_at=time.monotonic(),
    )


def _next_version(newest: WrappedKey | None) -> int:
    return 1 if newest is None else newest.version + 1


async def _lock_live_region(write: KeyWrite, region_id: int) -> None:
    if await write.region_shredded(region_id):
        raise KeyShreddedError(region_id)
