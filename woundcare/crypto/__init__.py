"""Encryption of patient records: AES-256-GCM envelopes under per-region data keys."""

from .aead import Binding, aad, key_id_of, open_with, seal
from .blind_index import IndexKey
from .errors import CryptoError, KeyShreddedError, MasterKeyError, RecordIntegrityError
from .keyring import Keyring, MasterKey, Sealer

__all__ = [
    "Binding",
    "CryptoError",
    "IndexKey",
    "KeyShreddedError",
    "Keyring",
    "MasterKey",
    "MasterKeyError",
    "RecordIntegrityError",
    "Sealer",
    "aad",
    "key_id_of",
    "open_with",
    "seal",
]
