"""The one block definition every architecture shares, plus encoders and head.

The paper's "res+" pre-activation block is norm -> ReLU -> dropout -> conv, the conv GENConv
by default or GAT / SAGE / GCN (``conv``; :func:`make_block_conv`, :mod:`bench.models.convs`).
Residual, reversible, weight-tied and equilibrium models differ only in how they wire this
function.
"""

from __future__ import annotations

import functools
from collections.abc import Callable

import torch.nn.functional as F
from torch import Tensor, nn
from torch_geometric.nn import GENConv, Linear

from bench.config import AGGR_IMPLS, AGGRS, DEFAULT_CONV, NORMS, TIES
from bench.errors import ConfigError
from bench.models.convs import make_other_conv, prepare_edges
from bench.nn.aggr import LeanMaxGENConv


def make_norm(kind: str, channels: int) -> nn.Module:
    if kind == "layer":
        return nn.LayerNorm(channels)
    if kind == "batch":
        return nn.BatchNorm1d(channels)
    if kind == "none":
        return nn.Identity()
    raise ConfigError("norm", f"unknown normalisation {kind!r}; choose one of {', '.join(NORMS)}")


def make_conv(
    in_channels: int,
    out_channels: int,
    edge_dim: int | None,
    aggr: str,
    norm: str,
    bias: bool = True,
    aggr_impl: str = "fused",
) -> GENConv:
    """GENConv as in DeeperGCN: learnable softmax temperature / power, 2-layer MLP inside.

    ``edge_dim`` is the width of the (already encoded) edge embedding handed to the layer; when
    it differs from ``in_channels`` GENConv re-encodes it per layer, which is how a grouped block
    gets a full-width edge embedding into each narrower group.

    As in the authors' code, every convolution re-encodes the edge embedding (a biased linear
    map, also when the widths match, where PyG would skip it) and its linear layers have biases:
    with both, parameter counts equal the paper's (ResGNN-64 at 112 layers: 2.37M; RevGNN-64:
    1.46M; RevGNN-80: 2.25M; RevGNN-Deep: 20.03M).

    ``aggr_impl="fused"`` runs max aggregation as :class:`~bench.nn.aggr.LeanMaxGENConv` (same
    values and parameters, an N x C argmax saved instead of two E x C tensors); ``"pyg"`` is
    PyG's own path. Other aggregations always use PyG's.
    """
    if aggr not in AGGRS:
        raise ConfigError("aggr", f"unknown aggregation {aggr!r}; choose one of {', '.join(AGGRS)}")
    if aggr_impl not in AGGR_IMPLS:
        raise ConfigError(
            "aggr_impl", f"unknown value {aggr_impl!r}; choose one of {', '.join(AGGR_IMPLS)}"
        )
    lean = aggr == "max" and aggr_impl == "fused"
    conv = (LeanMaxGENConv if lean else GENConv)(
        in_channels,
        out_channels,
        **({} if lean else {"aggr": aggr}),
        learn_t=aggr == "softmax",
        learn_p=aggr == "power",
        norm=norm if norm != "none" else None,
        num_layers=2,
        bias=bias,
        edge_dim=edge_dim or None,
    )
    if edge_dim and not hasattr(conv, "lin_edge"):  # PyG skips it when edge_dim == out_channels
        conv.lin_edge = Linear(edge_dim, out_channels, bias=bias)
    return conv


def make_block_conv(
    conv: str,
    in_channels: int,
    out_channels: int,
    edge_dim: int | None,
    aggr: str,
    norm: str,
    heads: int | None = None,
    aggr_impl: str = "fused",
) -> nn.Module:
    """The block's convolution by name: GENConv (:func:`make_conv`) or GAT / SAGE / GCN
    (:func:`bench.models.convs.make_other_conv`), each called as ``conv(x, edge_index,
    edge_attr)``. ``norm`` is GENConv's MLP normalisation; the others have no inner MLP."""
    if conv == "gen":
        if heads is not None:
            raise ConfigError("heads", "is a GAT setting, but conv is 'gen'")
        return make_conv(in_channels, out_channels, edge_dim, aggr, norm, aggr_impl=aggr_impl)
    return make_other_conv(conv, in_channels, out_channels, edge_dim, aggr, heads)


def distinct_blocks(layers: int, tie: str | None) -> int:
    """How many distinct blocks a stack of ``layers`` holds: L untied (``tie`` None), 1 for
    ``"all"``, and for ``"after-first"`` an untied first layer plus one block shared by every
    later layer (2 from L = 2 on: the paper's weight-tied parameter counts)."""
    if tie is None:
        return layers
    if tie not in TIES:
        raise ConfigError("tie", f"unknown value {tie!r}; choose one of {', '.join(TIES)}")
    return 1 if tie == "all" else min(layers, 2)


def block_of_layer(layer: int, n_blocks: int) -> int:
    """The block layer ``layer`` uses, for any tying: its own, the shared one after the first
    (or the only one). Layers beyond the last distinct block reuse it."""
    return min(layer, n_blocks - 1)


class ResPlusBlock(nn.Module):
    """f(x) = conv(dropout(relu(norm(x)))): the pre-activation function of one layer/group
    (``conv``: GENConv by default, or GAT / SAGE / GCN; see :func:`make_block_conv`).

    ``dropout_mask`` lets an engine replay a mask it drew itself (already scaled by 1/(1-p));
    without one, ordinary dropout is used.
    """

    def __init__(
        self,
        channels: int,
        edge_dim: int | None,
        aggr: str = "max",
        norm: str = "layer",
        dropout: float = 0.0,
        out_channels: int | None = None,
        conv: str = DEFAULT_CONV,
        heads: int | None = None,
        aggr_impl: str = "fused",
    ) -> None:
        super().__init__()
        self.norm = make_norm(norm, channels)
        self.conv = make_block_conv(
            conv, channels, out_channels or channels, edge_dim, aggr, norm, heads, aggr_impl
        )
        self.dropout = dropout

    def forward(
        self,
        x: Tensor,
        edge_index: Tensor,
        edge_attr: Tensor | None = None,
        dropout_mask: Tensor | None = None,
    ) -> Tensor:
        h = F.relu(self.norm(x))
        if dropout_mask is not None:
            h = h * dropout_mask
        else:
            h = F.dropout(h, self.dropout, self.training)
        return self.conv(h, edge_index, edge_attr)


def block_maker(
    edge_dim: int | None,
    aggr: str,
    norm: str,
    dropout: float,
    conv: str = DEFAULT_CONV,
    heads: int | None = None,
    aggr_impl: str = "fused",
) -> Callable[[int], ResPlusBlock]:
    """``make(width)`` builds one block with a model's settings: residual layers, reversible
    groups and the PyG peer's groups differ only in their width."""
    return functools.partial(ResPlusBlock, edge_dim=edge_dim, aggr=aggr, norm=norm,
                             dropout=dropout, conv=conv, heads=heads, aggr_impl=aggr_impl)  # fmt: skip


class DeepGNN(nn.Module):
    """Encoders -> body (what each architecture defines) -> norm/ReLU/dropout/linear head.

    Node features of any width are encoded to ``channels``; edge features (if any) are encoded
    once to ``channels`` and handed to every layer, with what the convolution needs of the graph
    computed once per batch (self-loops, degree normalisation: ``conv``,
    :func:`~bench.models.convs.prepare_edges`). Nothing dataset-specific lives here.
    """

    def __init__(
        self,
        in_channels: int,
        edge_dim: int | None,
        out_channels: int,
        channels: int,
        dropout: float,
        norm: str,
        conv: str = DEFAULT_CONV,
    ) -> None:
        super().__init__()
        self.channels = channels
        self.conv_name = conv
        self.dropout = dropout
        self.node_encoder = nn.Linear(in_channels, channels)
        self.edge_encoder = nn.Linear(edge_dim, channels) if edge_dim else None
        self.head_norm = make_norm(norm, channels)
        self.head = nn.Linear(channels, out_channels)
        #: statistics of the last forward/backward (DEQ solvers fill it); None for other archs
        self.solver_stats: dict[str, float] | None = None

    def body(self, h: Tensor, edge_index: Tensor, edge_attr: Tensor | None) -> Tensor:
        raise NotImplementedError

    def forward(self, x: Tensor, edge_index: Tensor, edge_attr: Tensor | None = None) -> Tensor:
        h = self.node_encoder(x)
        e = (
            self.edge_encoder(edge_attr)
            if self.edge_encoder is not None and edge_attr is not None
            else None
        )
        edge_index, e = prepare_edges(self.conv_name, edge_index, e, x.shape[0], x.dtype)
        h = self.body(h, edge_index, e)
        h = F.dropout(F.relu(self.head_norm(h)), self.dropout, self.training)
        return self.head(h)
