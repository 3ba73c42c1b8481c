"""The packages import one way: hub → apikeys/billing → generations → upstreams → workers → accounts.

A module may import its own layer or a lower one, never a higher one; `hub/urls.py` (the
routing table) may import every app's views.
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


def test_apikeys_and_billing_do_not_import_each_other():
    for package, other in (("apikeys", "billing"), ("billing", "apikeys")):
        for path in (ROOT / package).rglob("*.py"):
            assert other not in _imported_packages(path), f"{path.relative_to(ROOT)} imports {other}"
