"""Import ``ogb`` without side effects on the network.

``import ogb`` starts a (non-daemon) thread that asks PyPI whether ogb is outdated, via the
``outdated`` package: a network attempt on every import, and a warning where there is no
network. Hiding ``outdated`` during the import makes ogb skip that check (it handles the
ImportError itself); nothing else changes.
"""

from __future__ import annotations

import importlib
import sys
from types import ModuleType


def import_ogb(module: str) -> ModuleType:
    """``importlib.import_module(module)`` for an ``ogb.*`` module, minus the version check."""
    added = "ogb" not in sys.modules and "outdated" not in sys.modules
    if added:
        sys.modules["outdated"] = None  # type: ignore[assignment]  # import -> ImportError
    try:
        return importlib.import_module(module)
    finally:
        if added and "outdated" in sys.modules and sys.modules["outdated"] is None:
            del sys.modules["outdated"]
