"""Residual baselines: ResGNN (the paper's res+), its weight-tied and checkpointed variants.

All three compute ``h_{l+1} = h_l + f_l(h_l)`` with ``f`` = :class:`ResPlusBlock`; they differ
in which parameters ``f_l`` uses (own per layer / shared, see
:func:`~bench.models.blocks.distinct_blocks`) and in what autograd keeps (everything / only each
layer's input, recomputing the block in backward).
"""

from __future__ import annotations

import contextlib

from torch import Tensor, nn
from torch.utils.checkpoint import checkpoint

from bench.config import DEFAULT_CONV, DEFAULT_TIE
from bench.models.blocks import DeepGNN, block_maker, block_of_layer, distinct_blocks
from bench.nn.reversible import frozen_running_stats


class ResGNN(DeepGNN):
    """Pre-activation residual GNN: activation memory grows linearly with depth.

    ``tie`` shares blocks (WT-ResGNN: parameters independent of depth): ``"after-first"`` keeps
    the first layer untied and shares one block among the rest, ``"all"`` shares one block among
    every layer; None (the default) gives every layer its own. ``checkpointed=True`` wraps each
    layer in ``torch.utils.checkpoint`` (non-reentrant, RNG restored), the standard
    memory/compute trade-off users compare reversible models with; its recomputation runs under
    :func:`frozen_running_stats` so BatchNorm statistics are updated once per layer call, not
    twice.
    """

    def __init__(
        self,
        in_channels: int,
        edge_dim: int | None,
        out_channels: int,
        layers: int,
        channels: int,
        dropout: float = 0.0,
        aggr: str = "max",
        norm: str = "layer",
        tie: str | None = None,
        checkpointed: bool = False,
        conv: str = DEFAULT_CONV,
        heads: int | None = None,
        aggr_impl: str = "fused",
    ) -> None:
        n_blocks = distinct_blocks(layers, tie)
        super().__init__(in_channels, edge_dim, out_channels, channels, dropout, norm, conv)
        # the edge embedding is already ``channels`` wide: GENConv uses it without re-encoding
        block_edge_dim = channels if edge_dim else None
        make = block_maker(block_edge_dim, aggr, norm, dropout, conv, heads, aggr_impl)
        self.blocks = nn.ModuleList(make(channels) for _ in range(n_blocks))
        self.layers = layers
        self.tie = tie
        self.checkpointed = checkpointed

    def body(self, h: Tensor, edge_index: Tensor, edge_attr: Tensor | None) -> Tensor:
        for layer in range(self.layers):
            block = self.blocks[block_of_layer(layer, len(self.blocks))]
            if self.checkpointed:
                out = checkpoint(
                    block,
                    h,
                    edge_index,
                    edge_attr,
                    use_reentrant=False,
                    context_fn=lambda b=block: (contextlib.nullcontext(), frozen_running_stats(b)),
                )
            else:
                out = block(h, edge_index, edge_attr)
            h = h + out
        return h


class WTResGNN(ResGNN):
    """Weight-tied ResGNN: an untied first res+ block, then one block for every later layer
    (``tie="after-first"``, the default), or one block for all layers (``tie="all"``)."""

    def __init__(self, *args: object, tie: str = DEFAULT_TIE, **kwargs: object) -> None:
        super().__init__(*args, **kwargs, tie=tie)  # type: ignore[arg-type]


class CheckpointedResGNN(ResGNN):
    """ResGNN with every layer under activation checkpointing."""

    def __init__(self, *args: object, **kwargs: object) -> None:
        super().__init__(*args, **kwargs, checkpointed=True)  # type: ignore[arg-type]
