"""Which blobs an instance is writing but has not yet committed a row for.

An intent is an empty file named for the blob key, in a folder of its own per instance. It is
made before the blob and removed after the row commits, so when an instance starts again its
leftover intents name exactly the blobs a crash may have orphaned. The files are not fsynced:
a killed process's writes survive in the page cache, which is the crash recovered exactly;
after a power loss, a blob without a row is still found by the age-based sweep.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable
from pathlib import Path

from .private import DIR_MODE, FILE_MODE

_UNSAFE = re.compile(r"[^A-Za-z0-9_.-]")


class Intents:
    def __init__(self, root: Path, owner: str) -> None:
        self._dir = root / _UNSAFE.sub("_", owner)

    def add(self, keys: Iterable[str]) -> None:
        # Not parents=True: that would make the shared folder with the umask's mode.
        self._dir.parent.mkdir(exist_ok=True, mode=DIR_MODE)
        self._dir.mkdir(exist_ok=True, mode=DIR_MODE)
        for key in keys:
            os.close(os.open(self._dir / key, os.O_WRONLY | os.O_CREAT | os.O_CLOEXEC, FILE_MODE))

    def remove(self, keys: Iterable[str]) -> None:
        for key in keys:
            (self._dir / key).unlink(missing_ok=True)

    def list(self) -> list[str]:
        try:
            return [entry.name for entry in os.scandir(self._dir) if entry.is_file()]
        except FileNotFoundError:
            return []
