"""Every environment variable hub/settings/ reads is listed in .env.example and in the settings
table of docs/operations.md, the operators' reference."""

import ast
import re

from tests.conftest import ROOT, settings_source

ENV_READERS = {"str", "int", "float", "bool", "list", "db", "url", "json", "path"}
# Set per test run by deploy/test.sh; not a setting of the hub.
INTERNAL = {"HUB_TEST_DATABASE_NAME"}


def _settings_read() -> set[str]:
    names = set()
    for node in ast.walk(ast.parse(settings_source())):
        if isinstance(node, ast.Call) and node.args and isinstance(node.args[0], ast.Constant):
            func = node.func
            env_call = (
                isinstance(func, ast.Attribute)
                and isinstance(func.value, ast.Name)
                and func.value.id == "env"
                and func.attr in ENV_READERS
            )
            envbool = isinstance(func, ast.Name) and func.id == "envbool"
            environ_get = (  # os.environ.get("X") / os.getenv("X")
                isinstance(func, ast.Attribute)
                and func.attr in ("get", "getenv")
                and ast.unparse(func.value) in ("os.environ", "os")
            )
            if env_call or envbool or environ_get:
                names.add(node.args[0].value)
        elif isinstance(node, ast.Subscript) and ast.unparse(node.value) == "os.environ":  # os.environ["X"]
            if isinstance(node.slice, ast.Constant):
                names.add(node.slice.value)
    return names - INTERNAL


def _env_example() -> set[str]:
    return set(re.findall(r"^#?\s*([A-Z][A-Z0-9_]*)=", (ROOT / ".env.example").read_text(), re.MULTILINE))


def _operations_settings_table() -> set[str]:
    operations = (ROOT / "docs" / "operations.md").read_text()
    section = operations.split("\n## Settings\n", 1)[1].split("\n## ", 1)[0]
    names = set()
    for row in re.findall(r"^\|([^|\n]+)\|", section, re.MULTILINE):
        names.update(re.findall(r"`([A-Z][A-Z0-9_]*)`", row))
    return names


def test_the_settings_reader_is_found():
    assert {"DATABASE_URL", "DJANGO_SECRET_KEY", "HUB_BEHIND_TLS_PROXY", "MEDIA_ROOT"} <= _settings_read()


def test_env_example_lists_every_setting():
    assert sorted(_settings_read() - _env_example()) == []


def test_the_operations_settings_table_lists_every_setting():
    assert sorted(_settings_read() - _operations_settings_table()) == []
