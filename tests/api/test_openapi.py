"""docs/openapi.json documents exactly the /api/ routes the app serves, with their actions."""

from __future__ import annotations

import json
import re
from pathlib import Path

from woundcare.api.guard import rule_of
from woundcare.app import create_app
from woundcare.auth.policy import Action
from woundcare.config import Settings

SPEC = Path(__file__).parents[2] / "docs" / "openapi.json"
METHODS = {"get", "post", "put", "patch", "delete"}


def canonical(path: str) -> str:
    """``/api/x/{id:\\d+}`` -> ``/api/x/{id}``."""
    return re.sub(r"\{(\w+)(:[^}]*)?\}", r"{\1}", path)


def served(tmp_path: Path) -> dict[tuple[str, str], str]:
    app = create_app(Settings(data_dir=tmp_path, demo=False))
    routes: dict[tuple[str, str], str] = {}
    for route in app.router.routes():
        info = route.resource.get_info() if route.resource is not None else {}
        path = info.get("path") or info.get("formatter") or ""
        if route.method == "HEAD" or not path.startswith("/api/"):
            continue
        rule = rule_of(route.handler)
        routes[(route.method, canonical(path))] = rule.value if isinstance(rule, Action) else str(rule)
    return routes


def documented() -> dict[tuple[str, str], str]:
    spec = json.loads(SPEC.read_text())
    assert spec["openapi"].startswith("3.1")
    return {
        (method.upper(), path): op.get("x-action", "")
        for path, item in spec["paths"].items()
        if path.startswith("/api/")
        for method, op in item.items()
        if method in METHODS
    }


def test_spec_matches_routes(tmp_path: Path) -> None:
    app_routes, spec_routes = served(tmp_path), documented()
    assert app_routes, "no /api/ routes found"
    assert sorted(set(app_routes) - set(spec_routes)) == [], "routes missing from docs/openapi.json"
    assert sorted(set(spec_routes) - set(app_routes)) == [], "documented routes the app does not serve"
    assert {k: v for k, v in spec_routes.items() if app_routes[k] != v} == {}, "x-action differs from @requires"


def test_spec_is_well_formed() -> None:
    spec = json.loads(SPEC.read_text())
    schemes = spec["components"]["securitySchemes"]
    assert schemes["session"] == {**schemes["session"], "type": "apiKey", "in": "cookie", "name": "wc_session"}
    assert schemes["csrf"]["name"] == "X-CSRF-Token" and schemes["bearer"]["scheme"] == "bearer"
    assert "/ws" in spec["paths"]
    for path, item in spec["paths"].items():
        for method, op in item.items():
            assert op["responses"], f"{method} {path} has no responses"
            assert f"`{op['x-action']}`" in op.get("description", "") or path == "/ws"
            for name in re.findall(r"\{(\w+)\}", path):
                params = [p if "$ref" not in p else spec["components"]["parameters"][p["$ref"].rsplit("/", 1)[1]]
                          for p in op.get("parameters", [])]
                assert any(p["in"] == "path" and p["name"] == name for p in params), f"{method} {path}: {name}"
