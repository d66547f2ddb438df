"""The pages' JSDoc types hold, as mypy holds the Python's: TypeScript's checker over
``web/jsconfig.json`` (``checkJs``, ``strict``, no output). Types that nothing checks drift.

The checker is pinned in ``tests/jsdoc/package.json`` and installed there with npm on first
use, outside ``web/`` so that the deploy image (which copies ``web/``) never carries it.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest

from tests.services import missing

ROOT = Path(__file__).resolve().parents[1]
CONFIG = ROOT / "web" / "jsconfig.json"
CHECKER = ROOT / "tests" / "jsdoc"
TSC = CHECKER / "node_modules" / ".bin" / "tsc"
INSTALL_LOCK = Path(tempfile.gettempdir()) / f"woundcare-jsdoc-{hashlib.sha256(bytes(CHECKER)).hexdigest()[:16]}.lock"
"""Outside the checkout (it stays clean), one per checkout."""

pytestmark = pytest.mark.xdist_group("jsdoc")


@pytest.fixture(scope="module")
def tsc() -> Path:
    npm = shutil.which("npm")
    if npm is None or shutil.which("node") is None:
        missing("node and npm are needed for TypeScript's checker")
    # Workers that meet here wait for the one installing: two `npm ci` at once remove each
    # other's files, and a half-installed tree already has its `tsc`.
    with open(INSTALL_LOCK, "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not (CHECKER / "node_modules" / ".installed").exists():
            command = [npm, "ci", "--no-audit", "--no-fund", "--loglevel=error"]
            subprocess.run(command, cwd=CHECKER, check=True, stdout=subprocess.DEVNULL, timeout=170)
            (CHECKER / "node_modules" / ".installed").touch()
    return TSC


def _check(tsc: Path, config: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([tsc, "-p", config, *args], capture_output=True, text=True, timeout=120)


def test_every_page_module_is_checked(tsc: Path) -> None:
    listed = _check(tsc, CONFIG, "--listFilesOnly")
    assert listed.returncode == 0, listed.stdout[-3000:]
    checked = {Path(line).resolve() for line in listed.stdout.splitlines()}
    modules = set((ROOT / "web" / "js").glob("*.js"))
    assert modules and modules <= checked


def test_the_jsdoc_types_hold(tsc: Path) -> None:
    result = _check(tsc, CONFIG)
    assert result.returncode == 0, result.stdout[-3000:]


def test_a_wrong_type_fails_the_check(tsc: Path, tmp_path: Path) -> None:
    """The settings find errors at all: a JSDoc type the code contradicts."""
    wrong = tmp_path / "wrong.js"
    wrong.write_text("/** @type {number} */\nexport const count = 'three';\n")
    config = tmp_path / "jsconfig.json"
    config.write_text(json.dumps({"extends": str(CONFIG), "include": [str(wrong)]}))
    result = _check(tsc, config)
    assert result.returncode != 0 and "TS2322" in result.stdout, result.stdout[-3000:]
