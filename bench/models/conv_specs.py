"""The convolutions a block can hold, by name: the four built-in ones and a user's own factory.

A :class:`ConvSpec` says what a convolution can do (read edge features, which aggregations,
attention heads) so a configuration is checked before anything is built; ``bench.models.convs``
builds them. This module is light: a built-in name needs no torch.

**Your own convolution**: ``conv = "mymodule:factory"`` (``--conv``, a spec's grid, a tuning
space), where ``factory(in_channels, out_channels, **options)`` returns a module called as
``conv(x, edge_index)`` -> ``[num_nodes, out_channels]`` (a PyG ``MessagePassing`` layer, say).
If the factory takes an ``edge_dim`` keyword it reads edge features: it is built with
``edge_dim=`` the edge embedding's width and called as ``conv(x, edge_index, edge_attr)``;
otherwise a dataset with edge features is refused (they would be dropped silently). The
factory runs through every architecture; the memory model calibrates it with one measured
block step (``bench.measure.calibration``). Checked before any training, each failure one line:
the import, the factory's signature, and a probe build and forward on a 5-node graph (the
output's shape). Validation pins the factory to its source: ``conv`` becomes
``module:function@<digest>``, the first 16 hex digits of the SHA-256 of its module's source file,
so the record names the factory and its code, and a changed factory is a new configuration (a
pinned value whose source has changed since is refused).
"""

from __future__ import annotations

import functools
import hashlib
import importlib
import inspect
import re
from dataclasses import dataclass
from typing import Any

from bench.errors import ConfigError

#: neighbourhood aggregations GENConv learns or takes (SAGE takes max / mean / add)
AGGRS = ("max", "softmax", "power", "mean", "add")
DEFAULT_AGGR = "max"
_FACTORY = re.compile(r"^[A-Za-z_][\w.]*:[A-Za-z_]\w*$")
DIGEST_CHARS = 16  # of a factory's source SHA-256 in its pinned name
PROBE_NODES, PROBE_IN, PROBE_OUT = 5, 8, 6


@dataclass(frozen=True)
class ConvSpec:
    """What one convolution can do. ``aggrs``: the aggregations it takes (its own, fixed one:
    only the default); ``heads``: it has attention heads (``heads`` setting)."""

    name: str
    display: str
    reads_edges: bool
    aggrs: tuple[str, ...] = (DEFAULT_AGGR,)
    heads: bool = False
    #: prepares the batch once for every layer (self-loops, degree normalisation)
    prepared: bool = False

    def check(self, aggr: str, heads: int | None, width: int) -> None:
        """Raise ConfigError naming the setting this convolution cannot honour."""
        if heads is not None:
            if not self.heads:
                raise ConfigError("heads", f"is a GAT setting, but conv is {self.name!r} "
                                  "(use conv gat)")  # fmt: skip
            if isinstance(heads, bool) or not isinstance(heads, int) or heads < 1:
                raise ConfigError("heads", f"must be a positive integer, got {heads!r}")
        if self.heads and width % (heads or 1):
            raise ConfigError("heads", f"{heads} heads must divide each block's width ({width}): "
                              "GAT concatenates its heads, each width/heads wide")  # fmt: skip
        if aggr not in self.aggrs:
            if self.aggrs == (DEFAULT_AGGR,):
                raise ConfigError("aggr", f"is GENConv's and SAGE's aggregation; {self.display} "
                                  "has its own: leave aggr at its default")  # fmt: skip
            raise ConfigError("aggr", f"{self.display} aggregates by {', '.join(self.aggrs)}, "
                              f"got {aggr!r}")  # fmt: skip

    @property
    def pinned(self) -> str:
        """The ``conv`` value a record keeps: the name, with a factory's source digest."""
        return self.name


BUILT_IN: dict[str, ConvSpec] = {
    # GENConv, the paper's proteins block; multi-head GAT (RevGAT, arxiv); GraphSAGE (products)
    "gen": ConvSpec("gen", "GENConv", True, AGGRS),
    "gat": ConvSpec("gat", "GAT", True, heads=True, prepared=True),
    "sage": ConvSpec("sage", "GraphSAGE", False, ("max", "mean", "add")),
    "gcn": ConvSpec("gcn", "GCN", False, prepared=True),
}
DEFAULT_CONV = "gen"


@dataclass(frozen=True)
class FactorySpec(ConvSpec):
    """A user's ``module:factory`` (module doc), imported and probed when looked up."""

    factory: Any = None
    digest: str = ""

    @property
    def pinned(self) -> str:
        return f"{self.name}@{self.digest}"


def is_factory(name: str) -> bool:
    """Whether a ``conv`` value names a user factory (``module:factory``)."""
    return isinstance(name, str) and ":" in name


def conv_spec(name: str) -> ConvSpec:
    """The convolution ``name`` stands for; ConfigError naming ``conv`` if it is unknown or a
    factory that fails its checks (module doc)."""
    if not isinstance(name, str) or not is_factory(name) and name not in BUILT_IN:
        raise ConfigError("conv", f"unknown value {name!r}; choose one of "
                          f"{', '.join(BUILT_IN)}, or a factory module:function")  # fmt: skip
    if name in BUILT_IN:
        return BUILT_IN[name]
    ref, _, digest = name.partition("@")
    spec = _factory_spec(ref)
    if digest and digest != spec.digest:
        raise ConfigError("conv", f"{ref} has changed since this configuration was made (its "
                          f"source's digest is {spec.digest}, the configuration's {digest})")  # fmt: skip
    return spec


@functools.cache
def _factory_spec(name: str) -> FactorySpec:
    if not _FACTORY.match(name):
        raise ConfigError("conv", f"{name!r} is not module:function (e.g. mymodule:make_conv)")
    module_name, _, attr = name.partition(":")
    try:
        module = importlib.import_module(module_name)
    except Exception as exc:  # noqa: BLE001 - any failure of the user's import is one line
        raise ConfigError("conv", f"{name}: cannot import {module_name!r}: "
                          f"{type(exc).__name__}: {_first_line(exc)}") from None  # fmt: skip
    factory = getattr(module, attr, None)
    if not callable(factory):
        raise ConfigError("conv", f"{name}: module {module_name!r} has no function {attr!r}")
    reads_edges = _check_signature(name, factory)
    spec = FactorySpec(name, attr, reads_edges, AGGRS, factory=factory,
                       digest=_source_digest(module))  # fmt: skip
    _probe(spec)
    return spec


def _source_digest(module: Any) -> str:
    """The first hex digits of the SHA-256 of a module's source file ("" without one)."""
    path = getattr(module, "__file__", None)
    if not path:
        return ""
    with open(path, "rb") as handle:
        return hashlib.sha256(handle.read()).hexdigest()[:DIGEST_CHARS]


def _check_signature(name: str, factory: Any) -> bool:
    """Whether ``factory(in_channels, out_channels, ...)`` can be called; whether it takes
    ``edge_dim`` (then it reads edge features)."""
    try:
        signature = inspect.signature(factory)
    except (TypeError, ValueError):
        return False  # a builtin or C callable: trust it, the probe tells
    try:
        signature.bind(PROBE_IN, PROBE_OUT)
    except TypeError:
        raise ConfigError("conv", f"{name}: the factory must take (in_channels, out_channels, "
                          f"**options); its signature is {signature}") from None  # fmt: skip
    return "edge_dim" in signature.parameters


def _probe(spec: FactorySpec) -> None:
    """Build the factory's convolution and run it once on a 5-node graph; its output must be
    ``[5, out_channels]``."""
    import torch

    n = PROBE_NODES
    edge_index = torch.tensor([[0, 1, 2, 3, 4, 0], [1, 2, 3, 4, 0, 2]])
    kwargs = {"edge_dim": PROBE_IN} if spec.reads_edges else {}
    args = (torch.randn(edge_index.size(1), PROBE_IN),) if spec.reads_edges else ()
    try:
        conv = spec.factory(PROBE_IN, PROBE_OUT, **kwargs)
        out = conv(torch.randn(n, PROBE_IN), edge_index, *args)
    except Exception as exc:  # noqa: BLE001 - the user's code: its failure is one line
        raise ConfigError("conv", f"{spec.name}: a probe build and forward failed: "
                          f"{type(exc).__name__}: {_first_line(exc)}") from None  # fmt: skip
    shape = tuple(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__
    if shape != (n, PROBE_OUT):
        raise ConfigError("conv", f"{spec.name}: factory({PROBE_IN}, {PROBE_OUT}) on {n} nodes "
                          f"returned {shape}, expected ({n}, {PROBE_OUT}): a tensor of one row "
                          "per node and out_channels columns")  # fmt: skip


def _first_line(exc: BaseException) -> str:
    return (str(exc).strip().splitlines() or [""])[0]
