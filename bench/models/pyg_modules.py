"""Where PyG's generated ``propagate`` modules go: one cache folder, one file per distinct module,
instead of a new file in ``/tmp`` from every process.

PyG (2.5 and later) renders a Jinja template into a Python module the first time a process
builds a ``MessagePassing`` class (``torch_geometric.template.module_from_template``) and writes
it with ``tempfile.NamedTemporaryFile(delete=False)``: one new
``/tmp/<module>_<Class>_propagate_<random>.py`` per class per process, never removed. Every
trial runs in its own process, so one session left hundreds behind. :func:`install` points
PyG's message passing at :func:`module_from_template` here, which writes the same text to
``<cache>/pyg-modules/<module name>-<sha256 of the text>.py`` (``<cache>``: the suite's cache
folder, ``$XDG_CACHE_HOME/gnn1000-bench``, the user's own rather than a shared ``/tmp`` folder
another user could fill first), once: a process that finds the file with the same text imports
it as it is; one that does not writes a temporary file beside it and renames it into place, so
processes racing write whole files. The file stays: torch.jit and tracebacks read a module's
source. Where the cache folder cannot be written, PyG's own function runs (its ``/tmp`` file);
a PyG without the template hook is left as it is.
"""

from __future__ import annotations

import hashlib
import importlib.util
import os
import sys
import tempfile
from pathlib import Path
from types import ModuleType
from typing import Any

from bench.data.paths import cache_dir

FOLDER = "pyg-modules"
_pyg_own: Any = None  # PyG's function, for a cache folder that cannot be written


def folder() -> Path:
    """The one folder every process writes PyG's generated modules to."""
    return cache_dir() / FOLDER


def module_from_template(
    module_name: str, template_path: str, tmp_dirname: str, **kwargs: Any
) -> ModuleType:
    """PyG's ``module_from_template`` with the same arguments and result, writing to
    :func:`folder` (``tmp_dirname`` is PyG's name for the kind of module; unused there too)."""
    if module_name in sys.modules:  # loaded already in this process
        return sys.modules[module_name]
    from jinja2 import Environment, FileSystemLoader

    env = Environment(loader=FileSystemLoader(os.path.dirname(template_path)))
    text = env.get_template(os.path.basename(template_path)).render(**kwargs)
    try:
        path = write_once(module_name, text)
    except OSError:
        return _pyg_own(module_name, template_path, tmp_dirname, **kwargs)
    spec = importlib.util.spec_from_file_location(module_name, path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[module_name] = module
    spec.loader.exec_module(module)
    return module


def write_once(module_name: str, text: str) -> Path:
    """``<folder>/<module_name>-<sha256 prefix>.py`` holding ``text``: kept when it holds it
    already, else written whole (a temporary file renamed into place)."""
    digest = hashlib.sha256(text.encode()).hexdigest()[:16]
    target = folder() / f"{module_name}-{digest}.py"
    if target.is_file() and target.read_text() == text:
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(dir=target.parent, prefix=".", suffix=".tmp")
    try:
        with os.fdopen(handle, "w") as out:
            out.write(text)
        os.replace(temporary, target)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
    return target


def install() -> None:
    """Make PyG's ``MessagePassing`` write its generated modules through this module (once per
    process; harmless to repeat)."""
    global _pyg_own
    from torch_geometric.nn.conv import message_passing

    own = getattr(message_passing, "module_from_template", None)
    if own is not None and own is not module_from_template:
        _pyg_own = own
        message_passing.module_from_template = module_from_template  # type: ignore[attr-defined]
