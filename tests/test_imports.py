"""The import contract, in the manner of aiohttp's ``tests/test_circular_imports.py``.

- Every module of ``woundcare`` and ``signaling`` imports alone, in an interpreter that has
  imported none of ours: an import cycle that only a lucky import order hides fails here.
- ``signaling`` never imports ``woundcare``: it is the wire and the rooms, usable without it.
- The packages of ``woundcare`` import each other one way only, down :data:`LAYERS` (the
  data flow of docs/architecture.md); no two of them import each other.
- Only ``db`` and ``records`` speak SQL (import SQLAlchemy).

Interpreters are cheap here: one subprocess imports the third-party libraries once, then forks
a child per module, so each child starts with none of our modules and no import is paid twice.
"""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from collections import defaultdict
from collections.abc import Iterator
from functools import cache
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
OURS = ("woundcare", "signaling")

SKIPPED = ("woundcare.__main__", "woundcare.db.migrations")
"""Not importable alone by design: ``__main__`` runs the program, and Alembic loads the
migrations inside its own context."""

LAYERS: dict[str, int] = {
    "woundcare.cli": 100,
    "woundcare.app": 90,
    "woundcare.inflight": 85,
    "woundcare.metrics": 85,
    "woundcare.api": 80,
    "woundcare.appkeys": 75,
    "woundcare.pilot": 70,
    "woundcare.journal": 70,
    "woundcare.demo": 65,
    "woundcare.services": 60,
    "woundcare.camera": 55,
    "woundcare.recording": 50,
    "woundcare.webhooks": 48,
    "woundcare.auth": 45,
    "woundcare.fhir": 42,
    "woundcare.records": 40,
    "woundcare.audit": 35,
    "woundcare.webrtc": 35,
    "woundcare.crypto": 30,
    "woundcare.storage": 20,
    "woundcare.db": 20,
    "woundcare.refs": 16,
    "woundcare.validation": 14,
    "woundcare.errors": 12,
    "woundcare.config": 25,
    "woundcare.logs": 10,
    "signaling": 0,
}
"""A package (or top-level module) may import only those of a lower number: the program and
the app on top, then the API, the services, the records, crypto, and storage and the database
at the bottom. A new package gets its place here."""

SQL_PACKAGES = ("woundcare.db", "woundcare.records")

_DRIVER = r"""
import importlib, json, os, sys, traceback

root, preload, modules = sys.argv[1], sys.argv[2].split(","), sys.argv[3:]
sys.path.insert(0, root)
for name in preload:
    try:
        importlib.import_module(name)
    except Exception:
        pass  # optional dependencies: the child that needs one reports it
ours = ("woundcare", "signaling")
assert not [m for m in sys.modules if m.split(".")[0] in ours], "the driver imported our code"
results = {}
for name in modules:
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.close(read)
        try:
            importlib.import_module(name)
            if name.split(".")[0] == "signaling":
                leaked = sorted(m for m in sys.modules if m.split(".")[0] == "woundcare")
                if leaked:
                    raise ImportError(f"signaling imported woundcare: {leaked}")
        except BaseException:
            os.write(write, traceback.format_exc().encode())
            os._exit(1)
        os._exit(0)
    os.close(write)
    with os.fdopen(read, "rb") as pipe:
        output = pipe.read().decode()
    _, status = os.waitpid(pid, 0)
    results[name] = "" if status == 0 else output or f"exit status {status}"
print(json.dumps(results))
"""


def _modules() -> Iterator[tuple[str, Path]]:
    for top in OURS:
        for path in sorted((ROOT / top).rglob("*.py")):
            parts = list(path.relative_to(ROOT).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts.pop()
            name = ".".join(parts)
            if not name.startswith(SKIPPED):
                yield name, path


MODULES = dict(_modules())


def _imports(name: str, path: Path) -> Iterator[str]:
    """Every module ``name`` imports, at any depth of its code (a lazy import is a dependency
    too), as absolute names."""
    package = name.split(".") if path.name == "__init__.py" else name.split(".")[:-1]
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level == 0:
                base = node.module or ""
            else:
                base = ".".join([*package[: len(package) - node.level + 1], *([node.module] if node.module else [])])
            if node.module is None:
                yield from (f"{base}.{alias.name}" for alias in node.names)
            else:
                yield base


def _unit(module: str) -> str:
    """The package a module belongs to: ``woundcare.<package or module>``, or ``signaling``."""
    parts = module.split(".")
    return ".".join(parts[:2]) if parts[0] == "woundcare" else parts[0]


@cache
def _edges() -> dict[tuple[str, str], list[str]]:
    """(importer package, imported package) -> the importing modules."""
    edges: dict[tuple[str, str], list[str]] = defaultdict(list)
    for name, path in MODULES.items():
        for target in _imports(name, path):
            if target.split(".")[0] in OURS and target != "woundcare" and _unit(name) != _unit(target):
                edges[_unit(name), _unit(target)].append(name)
    return edges


@cache
def _import_alone() -> dict[str, str]:
    """Each module's traceback when imported alone; empty when it imports."""
    preload = sorted(
        {
            target.split(".")[0]
            for name, path in MODULES.items()
            for target in _imports(name, path)
            if target.split(".")[0] not in OURS and target.split(".")[0] not in sys.stdlib_module_names
        }
    )
    result = subprocess.run(
        [sys.executable, "-I", "-c", _DRIVER, str(ROOT), ",".join(preload), *MODULES],
        capture_output=True,
        text=True,
        timeout=300,
        check=True,
    )
    found: dict[str, str] = json.loads(result.stdout.splitlines()[-1])
    return found


def test_the_modules_are_found() -> None:
    assert {"signaling.protocol", "woundcare.app", "woundcare.services", "woundcare.records.pilot"} <= set(MODULES)


# The first of these runs the whole subprocess (about 45 s alone on the 2-core machine): at the
# start of a CI run, beside two other workers and their browsers, it once took past the suite's
# 180 s. Its own bound is the subprocess's 300 s.
@pytest.mark.timeout(330)
@pytest.mark.parametrize("module", sorted(MODULES))
def test_imports_alone(module: str) -> None:
    assert _import_alone()[module] == ""


def test_signaling_never_imports_woundcare() -> None:
    found = {module for (importer, imported), modules in _edges().items() if importer == "signaling" for module in modules}
    assert not found, "signaling must not import woundcare"


def test_only_db_and_records_speak_sql() -> None:
    speaking = {
        name
        for name, path in MODULES.items()
        if not name.startswith(SQL_PACKAGES) and any(t.split(".")[0] == "sqlalchemy" for t in _imports(name, path))
    }
    assert not speaking


def test_every_package_has_a_layer() -> None:
    assert {unit for pair in _edges() for unit in pair} <= set(LAYERS)


def test_packages_import_down_the_layers_only() -> None:
    upward = {
        f"{importer} -> {imported} ({', '.join(sorted(set(modules)))})"
        for (importer, imported), modules in _edges().items()
        if LAYERS.get(importer, 0) <= LAYERS.get(imported, 0)
    }
    assert not upward


def test_no_package_cycles() -> None:
    graph: dict[str, set[str]] = {}
    for importer, imported in _edges():
        graph.setdefault(importer, set()).add(imported)

    def reaches(start: str, goal: str) -> bool:
        seen, todo = set(), [start]
        while todo:
            unit = todo.pop()
            if unit == goal:
                return True
            if unit not in seen:
                seen.add(unit)
                todo.extend(graph.get(unit, ()))
        return False

    cycles = sorted(f"{a} <-> {b}" for a in graph for b in graph[a] if reaches(b, a))
    assert not cycles


CAMERA_AND_RECORDER_ONLY = ("aiortc", "aioice", "av")
"""What only the head camera (WebRTC, ICE, codecs) and the recordings' finishing worker (PyAV,
in its own process: ``woundcare/recording/remux.py``) use: tens of MB resident that the
server's process does not pay."""

NOTE_EXPORT_ONLY = ("fpdf", "fontTools")
"""What only a journal note's PDF uses (``woundcare/journal/pdf.py``), loaded at the first
export: some 17 MB resident and 220 modules."""


def _held_after(libraries: tuple[str, ...], *modules: str) -> list[str]:
    """Which of ``libraries`` a fresh interpreter holds after importing ``modules``."""
    probe = (
        f"import sys; sys.path.insert(0, {str(ROOT)!r}); import {', '.join(modules)}; "
        f"print(json.dumps(sorted({{m.split('.')[0] for m in sys.modules}} & set({libraries!r}))))"
    )
    result = subprocess.run(
        [sys.executable, "-I", "-c", f"import json; {probe}"], capture_output=True, text=True, timeout=120, check=True
    )
    found: list[str] = json.loads(result.stdout)
    return found


def test_the_server_does_not_import_the_media_stack_or_the_pdf_writer() -> None:
    """``woundcare serve`` imports the CLI, which builds the app; PyAV is loaded only by the
    worker process that finishes recordings, fpdf2 at the first note exported."""
    assert _held_after(CAMERA_AND_RECORDER_ONLY + NOTE_EXPORT_ONLY, "woundcare.cli", "woundcare.app") == []


def test_the_check_sees_a_recorder_and_a_note_writer() -> None:
    """The check above can fail: the camera's peer imports what the server must not, and so
    does the note's writer."""
    assert _held_after(CAMERA_AND_RECORDER_ONLY, "woundcare.webrtc.peer") == sorted(CAMERA_AND_RECORDER_ONLY)
    assert _held_after(NOTE_EXPORT_ONLY, "woundcare.journal.pdf") == sorted(NOTE_EXPORT_ONLY)
