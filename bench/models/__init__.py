"""The model factory: one entry point from an architecture name to a built :class:`DeepGNN`.

Every setting is checked here, before any module is built, and a bad one raises
:class:`~bench.errors.ConfigError` naming it (so the CLI can point at the flag).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

from bench.config import (
    AGGR_IMPLS,
    AGGRS,
    ARCHS,
    DEFAULT_CONV,
    DEFAULT_HEADS,
    DEFAULT_TIE,
    DEQ_GRADS,
    DEQ_SOLVERS,
    NORMS,
    REVERSIBLE_ARCHS,
    TIED_ARCHS,
    TIES,
    TrialConfig,
)
from bench.errors import ConfigError
from bench.models.blocks import DeepGNN, ResPlusBlock
from bench.models.convs import check_conv
from bench.models.residual import CheckpointedResGNN, ResGNN, WTResGNN
from bench.models.reversible import RevGNN, WTRevGNN

__all__ = [
    "ARCH",
    "CheckpointedResGNN",
    "DeepGNN",
    "ResGNN",
    "ResPlusBlock",
    "RevGNN",
    "WTResGNN",
    "WTRevGNN",
    "build_model",
]


def _deq(**kw: Any) -> DeepGNN:
    from bench.models.deq import DEQGNN  # lazy: the DEQ engine pulls in the solvers

    return DEQGNN(
        kw["in_channels"],
        kw["edge_dim"],
        kw["out_channels"],
        kw["channels"],
        kw["dropout"],
        kw["norm"],
        kw["aggr"],
        solver=kw["deq_solver"],
        tol=kw["deq_tol"],
        max_iter=kw["deq_max_iter"] if kw["deq_max_iter"] is not None else kw["layers"],
        grad=kw["deq_grad"],
        conv=kw["conv"],
        heads=kw["heads"],
        aggr_impl=kw["aggr_impl"],
    )


def _residual(cls: type[ResGNN]) -> Callable[..., DeepGNN]:
    def build(**kw: Any) -> DeepGNN:
        return cls(
            kw["in_channels"], kw["edge_dim"], kw["out_channels"], kw["layers"], kw["channels"],
            dropout=kw["dropout"], aggr=kw["aggr"], norm=kw["norm"], tie=kw["tie"],
            conv=kw["conv"], heads=kw["heads"],
            aggr_impl=kw["aggr_impl"],
        )  # fmt: skip

    return build


def _reversible(cls: type[RevGNN]) -> Callable[..., DeepGNN]:
    def build(**kw: Any) -> DeepGNN:
        return cls(
            kw["in_channels"], kw["edge_dim"], kw["out_channels"], kw["layers"], kw["channels"],
            groups=kw["groups"], dropout=kw["dropout"], aggr=kw["aggr"], norm=kw["norm"],
            tie=kw["tie"], share_mask=bool(kw["share_mask"]), conv=kw["conv"],
            heads=kw["heads"], aggr_impl=kw["aggr_impl"],
        )  # fmt: skip

    return build


#: architecture name -> builder taking build_model's keyword arguments
ARCH: dict[str, Callable[..., DeepGNN]] = {
    "res": _residual(ResGNN),
    "wt-res": _residual(WTResGNN),
    "ckpt": _residual(CheckpointedResGNN),
    "rev": _reversible(RevGNN),
    "wt-rev": _reversible(WTRevGNN),
    "deq": _deq,
}
assert set(ARCH) == set(ARCHS), "the registry must cover bench.config.ARCHS"


def build_model(
    arch: str,
    in_channels: int,
    edge_dim: int | None,
    out_channels: int,
    layers: int,
    channels: int,
    groups: int = 2,
    dropout: float = 0.0,
    aggr: str = "max",
    norm: str = "layer",
    tie: str | None = None,
    share_mask: bool = False,
    deq_solver: str = "anderson",
    deq_tol: float = 1e-4,
    deq_max_iter: int | None = None,
    deq_grad: str = "implicit",
    conv: str = DEFAULT_CONV,
    heads: int | None = None,
    aggr_impl: str = "fused",
) -> DeepGNN:
    """Build ``arch``; ``model(x, edge_index, edge_attr) -> logits [N, out_channels]``.

    ``edge_dim`` None or 0 means the graph has no edge features. ``tie`` is for ``wt-res`` /
    ``wt-rev`` only (None: ``"after-first"``, an untied first layer then one shared block;
    ``"all"``: one block for every layer). For ``deq`` the iteration cap defaults to ``layers``
    (the depth axis doubles as DEQ's iteration budget). ``share_mask`` (``rev`` / ``wt-rev``
    only): one dropout mask for every layer and group, the paper's way.
    ``conv`` is every block's convolution
    (``gen``, ``gat``, ``sage``, ``gcn``); ``heads`` is GAT's (None: 1), an error for the others;
    ``sage``/``gcn`` refuse ``edge_dim`` (they cannot read edge features). ``aggr_impl``: how
    GENConv's max aggregation runs (``"fused"``: an N x C argmax saved per layer,
    :mod:`bench.nn.aggr`; ``"pyg"``: PyG's path)."""
    if arch not in ARCH:
        raise ConfigError("arch", f"unknown architecture {arch!r}; choose one of {', '.join(ARCH)}")
    if aggr not in AGGRS:
        raise ConfigError("aggr", f"unknown aggregation {aggr!r}; choose one of {', '.join(AGGRS)}")
    if aggr_impl not in AGGR_IMPLS:
        raise ConfigError(
            "aggr_impl", f"unknown value {aggr_impl!r}; choose one of {', '.join(AGGR_IMPLS)}"
        )
    if norm not in NORMS:
        raise ConfigError(
            "norm", f"unknown normalisation {norm!r}; choose one of {', '.join(NORMS)}"
        )
    for name, value in (
        ("in_channels", in_channels),
        ("out_channels", out_channels),
        ("layers", layers),
        ("channels", channels),
        ("groups", groups),
    ):
        _positive_int(name, value)
    if edge_dim is not None and (not _is_int(edge_dim) or edge_dim < 0):
        raise ConfigError("edge_dim", f"must be None or a non-negative integer, got {edge_dim!r}")
    check_conv(conv, edge_dim, heads, aggr)
    if conv == "gat":
        width = channels // groups if arch in REVERSIBLE_ARCHS else channels
        if width % (heads or DEFAULT_HEADS):
            raise ConfigError(
                "heads", f"{heads or DEFAULT_HEADS} heads must divide each block's width {width}"
            )
    if isinstance(dropout, bool) or not isinstance(dropout, (int, float)) or not 0 <= dropout < 1:
        raise ConfigError("dropout", f"must be in [0, 1), got {dropout!r}")
    if arch in REVERSIBLE_ARCHS:
        if groups < 2:
            raise ConfigError("groups", f"a reversible arch needs groups >= 2, got {groups}")
        if channels % groups:
            raise ConfigError(
                "groups", f"channels ({channels}) must be divisible by groups ({groups})"
            )
    if arch in TIED_ARCHS:
        tie = DEFAULT_TIE if tie is None else tie
        if tie not in TIES:
            raise ConfigError("tie", f"unknown value {tie!r}; choose one of {', '.join(TIES)}")
    elif tie is not None:
        raise ConfigError("tie", f"is a weight-tying setting, but arch is {arch!r}")
    if share_mask and arch not in REVERSIBLE_ARCHS:
        raise ConfigError("share_mask", f"is a reversible-stack setting, but arch is {arch!r}")
    if arch == "deq":
        if deq_solver not in DEQ_SOLVERS:
            raise ConfigError(
                "deq_solver",
                f"unknown solver {deq_solver!r}; choose one of {', '.join(DEQ_SOLVERS)}",
            )
        if deq_grad not in DEQ_GRADS:
            raise ConfigError(
                "deq_grad", f"unknown gradient {deq_grad!r}; choose one of {', '.join(DEQ_GRADS)}"
            )
        if (
            isinstance(deq_tol, bool)
            or not isinstance(deq_tol, (int, float))
            or math.isnan(deq_tol)
            or deq_tol <= 0
        ):
            raise ConfigError("deq_tol", f"must be a positive number, got {deq_tol!r}")
        if deq_max_iter is not None:
            _positive_int("deq_max_iter", deq_max_iter)
    return ARCH[arch](
        in_channels=in_channels,
        edge_dim=edge_dim or None,
        out_channels=out_channels,
        layers=layers,
        channels=channels,
        groups=groups,
        dropout=float(dropout),
        aggr=aggr,
        norm=norm,
        tie=tie,
        share_mask=bool(share_mask),
        deq_solver=deq_solver,
        deq_tol=deq_tol,
        deq_max_iter=deq_max_iter,
        deq_grad=deq_grad,
        conv=conv,
        heads=heads,
        aggr_impl=aggr_impl,
    )


def build_from_config(
    config: TrialConfig,
    in_channels: int,
    edge_dim: int | None,
    out_channels: int,
    layers: int | None = None,
) -> DeepGNN:
    """``build_model`` with the model settings of a trial config (``layers`` may override)."""
    deq = config.deq_settings() if config.is_deq else {}
    return build_model(
        config.arch,
        in_channels=in_channels,
        edge_dim=edge_dim,
        out_channels=out_channels,
        layers=config.layers if layers is None else layers,
        channels=config.channels,
        groups=config.groups,
        dropout=config.dropout,
        aggr=config.aggr,
        norm=config.norm,
        tie=config.tie_mode,
        share_mask=bool(config.share_mask),
        conv=config.conv,
        heads=config.attention_heads,
        aggr_impl=config.aggr_impl_mode,
        **{f"deq_{key}": value for key, value in deq.items()},
    )


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _positive_int(name: str, value: Any) -> None:
    if not _is_int(value) or value < 1:
        raise ConfigError(name, f"must be a positive integer, got {value!r}")
