"""The one block definition every architecture shares, plus encoders and head.

The paper's "res+" pre-activation block is norm -> ReLU -> dropout -> conv, the conv GENConv
by default or GAT / SAGE / GCN or a user's own (``conv``; :mod:`bench.models.convs`).
Residual, reversible, weight-tied and equilibrium models differ only in how they wire this
function. Every piece takes the model's :class:`~bench.models.config.ModelConfig` whole.
"""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor, nn

from bench.models.config import ModelConfig
from bench.models.convs import make_conv, prepare_edges


def make_norm(kind: str, channels: int) -> nn.Module:
    """``kind``: "layer", "batch" or "none"."""
    if kind == "layer":
        return nn.LayerNorm(channels)
    if kind == "batch":
        return nn.BatchNorm1d(channels)
    if kind == "none":
        return nn.Identity()
    raise ValueError(f"kind: unknown normalisation {kind!r}; choose layer, batch or none")


def distinct_blocks(layers: int, tie: str | None) -> int:
    """How many distinct blocks a stack of ``layers`` holds: L untied (``tie`` None), 1 for
    ``"all"``, and for ``"after-first"`` an untied first layer plus one block shared by every
    later layer (2 from L = 2 on: the paper's weight-tied parameter counts)."""
    if tie is None:
        return layers
    if tie not in ("after-first", "all"):
        raise ValueError(f"tie: unknown value {tie!r}; choose after-first or all")
    return 1 if tie == "all" else min(layers, 2)


def block_of_layer(layer: int, n_blocks: int) -> int:
    """The block layer ``layer`` uses, for any tying: its own, the shared one after the first
    (or the only one). Layers beyond the last distinct block reuse it."""
    return min(layer, n_blocks - 1)


class ResPlusBlock(nn.Module):
    """f(x) = conv(dropout(relu(norm(x)))): the pre-activation function of one layer/group of
    ``width`` channels (``config.conv``; its norm also GENConv's MLP normalisation).

    ``dropout_mask`` lets an engine replay a mask it drew itself (already scaled by 1/(1-p));
    without one, ordinary dropout is used. ``edge_dim``: the edge embedding's width (None
    without edge features).
    """

    def __init__(self, config: ModelConfig, width: int, edge_dim: int | None,
                 out_channels: int | None = None) -> None:  # fmt: skip
        super().__init__()
        self.norm = make_norm(config.norm, width)
        self.conv = make_conv(config, width, out_channels or width, edge_dim)
        self.dropout = config.dropout

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


class DeepGNN(nn.Module):
    """Encoders -> body (what each architecture defines) -> norm/ReLU/dropout/linear head.

    Node features of any width are encoded to ``channels``; edge features (if any) are encoded
    once to ``channels`` and handed to every layer, with what the convolution needs of the graph
    computed once per batch (self-loops, degree normalisation: ``conv``,
    :func:`~bench.models.convs.prepare_edges`). Nothing dataset-specific lives here.
    ``block_edge_dim`` is what a block receives: the encoded edge embedding's width, or None.
    """

    def __init__(self, config: ModelConfig, in_channels: int, edge_dim: int | None,
                 out_channels: int) -> None:  # fmt: skip
        super().__init__()
        for name, value in (("in_channels", in_channels), ("out_channels", out_channels),
                            ("edge_dim", 1 if edge_dim is None else edge_dim + 1)):  # fmt: skip
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(
                    f"{name}: must be a positive integer, got {value!r}"
                    + (" (None: no edge features)" if name == "edge_dim" else "")
                )
        channels = config.channels
        self.config = config
        self.channels = channels
        self.conv_name = config.conv
        self.dropout = config.dropout
        self.node_encoder = nn.Linear(in_channels, channels)
        self.edge_encoder = nn.Linear(edge_dim, channels) if edge_dim else None
        self.block_edge_dim = channels if edge_dim else None
        self.head_norm = make_norm(config.norm, channels)
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
