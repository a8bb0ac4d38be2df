"""Modules of a user's own, imported before any command runs: ``BENCH_PLUGINS``.

A researcher extends the suite from outside the package: a module that registers an
architecture (``bench.models.archs.register``) or a claim
(``bench.report.claims.register_claim``). Naming it in ``BENCH_PLUGINS`` (comma-separated module
names, importable from the working directory or ``PYTHONPATH``) makes every command, every trial
process and every sweep worker import it first, since they inherit the environment.
"""

from __future__ import annotations

import importlib
import os

from bench.errors import ConfigError

ENV_VAR = "BENCH_PLUGINS"
_loaded = False


def load() -> None:
    """Import the modules ``BENCH_PLUGINS`` names, once; ConfigError if one does not import."""
    global _loaded
    if _loaded:
        return
    _loaded = True  # first: a plugin that imports the registries must not load itself again
    for module in filter(None, (m.strip() for m in os.environ.get(ENV_VAR, "").split(","))):
        try:
            importlib.import_module(module)
        except ImportError as exc:
            raise ConfigError(
                "plugins", f"{ENV_VAR} names {module!r}, which does not import: {exc}"
            ) from None
