"""Storage of record payloads outside the database: blobs on local disk."""

from .blobs import (
    BlobError,
    BlobExists,
    BlobNotFound,
    BlobStore,
    InvalidBlobKey,
    SweepResult,
)

__all__ = [
    "BlobError",
    "BlobExists",
    "BlobNotFound",
    "BlobStore",
    "InvalidBlobKey",
    "SweepResult",
]
