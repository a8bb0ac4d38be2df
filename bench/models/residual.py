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

from bench.models.blocks import DeepGNN, ResPlusBlock, block_of_layer, distinct_blocks
from bench.models.config import ModelConfig
from bench.nn.reversible import frozen_running_stats


class ResGNN(DeepGNN):
    """Pre-activation residual GNN: activation memory grows linearly with depth.

    ``config.tie`` shares blocks (WT-ResGNN: parameters independent of depth):
    ``"after-first"`` keeps the first layer untied and shares one block among the rest,
    ``"all"`` shares one block among every layer; None gives every layer its own.
    """

    checkpointed = False

    def __init__(self, config: ModelConfig, in_channels: int, edge_dim: int | None,
                 out_channels: int) -> None:  # fmt: skip
        super().__init__(config, in_channels, edge_dim, out_channels)
        n_blocks = distinct_blocks(config.layers, config.tie)
        # the edge embedding is already ``channels`` wide: GENConv uses it without re-encoding
        self.blocks = nn.ModuleList(
            ResPlusBlock(config, config.channels, self.block_edge_dim) for _ in range(n_blocks)
        )
        self.layers = config.layers
        self.tie = config.tie

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


class CheckpointedResGNN(ResGNN):
    """ResGNN with every layer under ``torch.utils.checkpoint`` (non-reentrant, RNG restored),
    the standard memory/compute trade-off users compare reversible models with; its
    recomputation runs under :func:`frozen_running_stats` so BatchNorm statistics are updated
    once per layer call, not twice."""

    checkpointed = True
