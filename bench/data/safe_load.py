"""Reading a ``torch.save`` file nobody vouches for (a graph file): no code can run, and a
refusal names every global the file asks for that is not allowed.

The file is read with ``torch.load(weights_only=True)`` and PyG's data classes allowed, so only
tensors, plain containers and ``Data`` can be rebuilt. When torch refuses it, the refusal names
the disallowed globals, all of them, sorted (``builtins.eval, posix.system``): torch's own
``get_unsafe_globals_in_checkpoint`` reads only zip checkpoints and the ``GLOBAL`` opcode and
returns a set in hash order, so a caller that showed "the first three" showed three that varied
from run to run and could leave out the dangerous one. Here the pickle is disassembled
statically (:mod:`pickletools`; nothing is imported or called): ``GLOBAL`` and ``INST`` name
theirs, ``STACK_GLOBAL`` takes the last two strings pushed (or fetched from the memo), in the
zip format's ``data.pkl``, the legacy format's first pickles or a bare pickle.
"""

from __future__ import annotations

import io
import pickletools
import zipfile
from _compat_pickle import IMPORT_MAPPING, NAME_MAPPING
from pathlib import Path
from typing import Any

#: pickles read from the front of a non-zip file: the legacy format's magic number, protocol,
#: system info, object and storage keys (raw storage bytes follow and are never read)
LEGACY_PICKLES = 5
_STRINGS = {"SHORT_BINUNICODE", "BINUNICODE", "BINUNICODE8", "UNICODE", "SHORT_BINSTRING",
            "BINSTRING", "STRING"}  # fmt: skip
_MEMO_PUT = {"PUT", "BINPUT", "LONG_BINPUT", "MEMOIZE"}
_MEMO_GET = {"GET", "BINGET", "LONG_BINGET"}


class Refused(Exception):
    """torch refused a global of the file: ``names`` are the disallowed ones, sorted (none
    when the file cannot be disassembled)."""

    def __init__(self, names: list[str]) -> None:
        self.names = names
        super().__init__(", ".join(names))


class NotTorchSave(Exception):
    """The file is not something ``torch.save`` wrote (or not readable as such)."""


def load_data(p: Path) -> Any:
    """``torch.load(p, weights_only=True)`` with PyG's data classes allowed (registered only for
    the call: PyG's own safe globals stay as they were for everyone else). Raises
    :class:`Refused` or :class:`NotTorchSave`."""
    import pickle
    import warnings

    import torch

    allowed = _pyg_classes()
    try:
        with warnings.catch_warnings(), torch.serialization.safe_globals(allowed):
            warnings.simplefilter("ignore")  # e.g. a pickle protocol note from the unpickler
            return torch.load(p, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        with torch.serialization.safe_globals(allowed):
            names = disallowed_globals(p)
        if names or "GLOBAL" in str(exc):  # a class or function it refused
            raise Refused(names) from None
        raise NotTorchSave(type(exc).__name__) from None  # not a pickle at all
    except Exception as exc:  # noqa: BLE001 - any other unreadable file
        raise NotTorchSave(type(exc).__name__) from None


def _pyg_classes() -> list[Any]:
    """PyG's data classes a pickled ``Data`` names, less those allowed already."""
    import torch
    from torch_geometric.data import Data  # registers PyG's safe globals
    from torch_geometric.data.data import DataEdgeAttr, DataTensorAttr
    from torch_geometric.data.storage import GlobalStorage

    registered = set(torch.serialization.get_safe_globals())
    return [g for g in (Data, DataEdgeAttr, DataTensorAttr, GlobalStorage) if g not in registered]


def disallowed_globals(p: Path) -> list[str]:
    """Every global the file names that ``weights_only`` loading does not allow, sorted."""
    from torch import _weights_only_unpickler as unpickler

    allowed = set(unpickler._get_allowed_globals()) | set(unpickler._get_user_allowed_globals())
    return sorted(file_globals(p) - allowed)


def file_globals(p: Path) -> set[str]:
    """Every ``module.name`` the pickles of a ``torch.save`` file (or a bare pickle) name."""
    if zipfile.is_zipfile(p):
        with zipfile.ZipFile(p) as archive:
            return set().union(*(pickle_globals(io.BytesIO(archive.read(name)), 1)
                                 for name in archive.namelist() if name.endswith(".pkl")))  # fmt: skip
    with open(p, "rb") as handle:
        return pickle_globals(handle, LEGACY_PICKLES)


def pickle_globals(stream: Any, count: int) -> set[str]:
    """The globals named by up to ``count`` successive pickles of ``stream``; a pickle that
    breaks off ends the scan with what it named so far (its code would have run that far)."""
    found: set[str] = set()
    for _ in range(count):
        try:
            _scan(stream, found)
        except Exception:  # noqa: BLE001 - malformed or ended: what was named so far stands
            break
    return found


def _scan(stream: Any, found: set[str]) -> None:
    """One pickle: add its globals to ``found`` (statically; nothing is imported)."""
    strings: list[str] = []  # the strings pushed so far, for STACK_GLOBAL
    memo: dict[Any, str | None] = {}
    pushed: str | None = None  # the string the previous opcode pushed, if it pushed one
    for opcode, arg, _ in pickletools.genops(stream):
        name, top, pushed = opcode.name, pushed, None
        if name in ("GLOBAL", "INST"):  # Python 2 names read as Python 3's, as torch does
            module, _, attr = str(arg).partition(" ")
            module, attr = NAME_MAPPING.get((module, attr), (module, attr))
            found.add(f"{IMPORT_MAPPING.get(module, module)}.{attr}")
        elif name == "STACK_GLOBAL" and len(strings) >= 2:
            found.add(f"{strings[-2]}.{strings[-1]}")
        elif name in _STRINGS:
            pushed = arg.decode("latin-1") if isinstance(arg, bytes) else str(arg)
        elif name in _MEMO_PUT:
            memo[len(memo) if arg is None else arg] = pushed = top
        elif name in _MEMO_GET:
            pushed = memo.get(arg)
        if pushed is not None and name not in _MEMO_PUT:
            strings.append(pushed)
