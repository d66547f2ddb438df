"""woundcare: the health side of the wound-care video pilot (records, auth, audit, API)."""

__version__ = "0.1.0"
