"""The packages import one way: hub → apikeys/billing → generations → upstreams → workers → accounts.

A module may import its own layer or a lower one, never a higher one; `hub/urls.py` (the
routing table) may import every app's views.

Inside hub, too: hub.infra (storage, Redis, metrics, logs, process lifetime) → hub.http (errors,
parsers, middleware, health) → the project's wiring at hub/'s top (settings, urls, the WSGI/ASGI
and Celery apps). hub.infra imports neither hub.http nor the wiring, hub.http not the wiring —
except the Celery app (hub.celery), through which both reach the broker.
"""

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
LAYERS = {"hub": 0, "apikeys": 1, "billing": 1, "generations": 2, "upstreams": 3, "workers": 4, "accounts": 5}
EXEMPT = {"hub/urls.py"}


def _imported_packages(path: Path) -> set[str]:
    names = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            names.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module.split(".")[0])
    return names & LAYERS.keys()


def _modules():
    for package in LAYERS:
        for path in sorted((ROOT / package).rglob("*.py")):
            rel = path.relative_to(ROOT).as_posix()
            if rel not in EXEMPT:
                yield pytest.param(package, path, id=rel)


@pytest.mark.parametrize(("package", "path"), list(_modules()))
def test_module_imports_no_higher_layer(package, path):
    higher = {name for name in _imported_packages(path) if LAYERS[name] > LAYERS[package]}
    assert not higher, f"{path.relative_to(ROOT)} imports {sorted(higher)}, above {package}"


INNER = {"hub.infra": ("hub.infra",), "hub.http": ("hub.infra", "hub.http")}
REACHABLE_WIRING = {"hub.celery"}


def _imported_hub_modules(path: Path) -> set[str]:
    """The hub modules `path` imports, by full name (`from hub import celery` is hub.celery)."""
    names = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module)
            if node.module == "hub":
                names.update(f"hub.{alias.name}" for alias in node.names)
    return {name for name in names if name.startswith("hub.")}


def _inner_modules():
    for package in INNER:
        for path in sorted((ROOT / package.replace(".", "/")).rglob("*.py")):
            yield pytest.param(package, path, id=path.relative_to(ROOT).as_posix())


@pytest.mark.parametrize(("package", "path"), list(_inner_modules()))
def test_hub_infra_and_http_import_one_way(package, path):
    allowed = INNER[package]
    outside = {
        name
        for name in _imported_hub_modules(path)
        if name not in REACHABLE_WIRING and not any(name == a or name.startswith(a + ".") for a in allowed)
    }
    assert not outside, f"{path.relative_to(ROOT)} imports {sorted(outside)}: {package} may import only {allowed}"


def test_apikeys_and_billing_do_not_import_each_other():
    for package, other in (("apikeys", "billing"), ("billing", "apikeys")):
        for path in (ROOT / package).rglob("*.py"):
            assert other not in _imported_packages(path), f"{path.relative_to(ROOT)} imports {other}"
