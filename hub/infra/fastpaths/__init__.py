"""The places where the hub steps around a library's public API, one module each.

Each module says what it replaces and declares a `FastPath`: the library (its distribution name)
and the version the bypass was checked against. Its code asks `path.on()` before taking the
bypass and otherwise takes the library's own way, which is the way when
- `HUB_FAST_PATHS=false` (every path off) or `HUB_FAST_PATH_<NAME>=false` (that one), or
- the installed library is not the version the path was checked against: a bypass of a library's
  internals may break silently on another release, so it steps aside, and says so once per
  process (one warning line).
tests/fastpaths runs each path both ways and compares what users see; docs/architecture.md says
why each path is kept (bench/RESULTS.md has the figures).
"""

import functools
import importlib.metadata
import logging
from dataclasses import dataclass

from django.conf import settings
from django.core.signals import setting_changed
from django.dispatch import receiver

logger = logging.getLogger(__name__)


@dataclass(frozen=True, eq=False)  # hashed by identity: each path is one module-level object
class FastPath:
    name: str  # NAME of its HUB_FAST_PATH_<NAME> switch
    library: str  # the distribution it steps around, as importlib.metadata names it
    checked: str  # the version it was checked against

    def on(self) -> bool:
        """Whether to take the bypass now: switched on, and the library the checked version."""
        return _on(self)


@functools.cache
def _on(path: FastPath) -> bool:
    """FastPath.on's answer, kept until a setting changes (tests switch paths with
    override_settings): an async submit asks 11 times (the PG_WAIT path at each of psycopg's
    waits), and reading the switches each time — two lookups on Django's lazy settings and a
    dataclass hash — was ~0.15 of its ~12 ms under cProfile (bench stages)."""
    return settings.FAST_PATHS and settings.FAST_PATH_SWITCHES[path.name] and _library_checked(path)


@receiver(setting_changed)
def _switches_changed(*, setting: str, **kwargs) -> None:
    if setting in ("FAST_PATHS", "FAST_PATH_SWITCHES"):
        _on.cache_clear()


@functools.cache
def _library_checked(path: FastPath) -> bool:
    """Whether the installed library is the checked one; the first call of a process that finds it
    is not logs the one warning (the answer is kept for the process's life)."""
    try:
        installed = importlib.metadata.version(path.library)
    except importlib.metadata.PackageNotFoundError:
        installed = None
    if installed == path.checked:
        return True
    logger.warning(
        "fast path %s off: it was checked against %s %s, %s is installed; taking %s's own way",
        path.name,
        path.library,
        path.checked,
        installed or "none",
        path.library,
    )
    return False
