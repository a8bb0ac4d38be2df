"""Residual baselines: ResGNN (the paper's res+), its weight-tied and checkpointed variants.

All three compute ``h_{l+1} = h_l + f_l(h_l)`` with ``f`` = :class:`ResPlusBlock`; they differ
in which parameters ``f_l`` uses (own per layer / one shared block) and in what autograd keeps
(everything / only each layer's input, recomputing the block in backward).
"""

from __future__ import annotations

import contextlib

from torch import Tensor, nn
from torch.utils.checkpoint import checkpoint

from bench.models.blocks import DeepGNN, ResPlusBlock
from bench.nn.reversible import frozen_running_stats


class ResGNN(DeepGNN):
    """Pre-activation residual GNN: activation memory grows linearly with depth.

    ``tied=True`` shares one block across all layers (WT-ResGNN: parameters independent of
    depth). ``checkpointed=True`` wraps each layer in ``torch.utils.checkpoint`` (non-reentrant,
    RNG restored), the standard memory/compute trade-off users compare reversible models with;
    its recomputation runs under :func:`frozen_running_stats` so BatchNorm statistics are
    updated once per layer call, not twice.
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
        tied: bool = False,
        checkpointed: bool = False,
    ) -> None:
        super().__init__(in_channels, edge_dim, out_channels, channels, dropout, norm)
        n_blocks = 1 if tied else layers
        # the edge embedding is already ``channels`` wide: GENConv uses it without re-encoding
        block_edge_dim = channels if edge_dim else None
        self.blocks = nn.ModuleList(
            ResPlusBlock(channels, block_edge_dim, aggr, norm, dropout) for _ in range(n_blocks)
        )
        self.layers = layers
        self.tied = tied
        self.checkpointed = checkpointed

    def body(self, h: Tensor, edge_index: Tensor, edge_attr: Tensor | None) -> Tensor:
        for layer in range(self.layers):
            block = self.blocks[layer % len(self.blocks)]
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
    """Weight-tied ResGNN: one res+ block applied ``layers`` times."""

    def __init__(self, *args: object, **kwargs: object) -> None:
        super().__init__(*args, **kwargs, tied=True)  # type: ignore[arg-type]


class CheckpointedResGNN(ResGNN):
    """ResGNN with every layer under activation checkpointing."""

    def __init__(self, *args: object, **kwargs: object) -> None:
        super().__init__(*args, **kwargs, checkpointed=True)  # type: ignore[arg-type]
