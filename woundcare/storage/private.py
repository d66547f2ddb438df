"""The data folder is the server's alone: folders 0700, files 0600, whoever starts it and
whatever their umask.

The blob store, intents and generated secrets create their files with these modes already;
this covers what others create: the data folder itself and the SQLite database, whose
``-wal`` and ``-shm`` files SQLite creates with the database file's own mode.
"""

from __future__ import annotations

import os
from pathlib import Path

DIR_MODE = 0o700
FILE_MODE = 0o600


def private_dir(path: Path) -> None:
    """Make ``path`` (and missing parents) a folder only its owner can enter; an existing one
    (made by an older version, or by a packager as 0755) is narrowed too."""
    path.mkdir(parents=True, exist_ok=True, mode=DIR_MODE)
    os.chmod(path, DIR_MODE)


def private_file(path: Path, *siblings: str) -> None:
    """Create ``path`` empty if missing, and narrow it and any existing ``path`` + suffix in
    ``siblings`` to 0600."""
    os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_CLOEXEC, FILE_MODE))
    for file in (path, *(path.with_name(path.name + suffix) for suffix in siblings)):
        try:
            os.chmod(file, FILE_MODE)
        except FileNotFoundError:
            pass
