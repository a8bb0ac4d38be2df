"""Reversible GNNs: RevGNN (grouped reversible res+ blocks) and its weight-tied variant.

The wiring and the memory-saving backward live in :class:`bench.nn.ReversibleStack`; this file
only decides what the group functions are: each group of layer ``l`` is its own freshly
initialised :class:`ResPlusBlock` of width ``channels / groups`` (the paper authors deep-copy
group 1 into the others, so all groups start identical; we do not). Every group receives the
full-width edge embedding explicitly and re-encodes it inside its convolution (GENConv's
``lin_edge``; GAT's ``lin_edge`` feeds the attention logits; SAGE/GCN take no edge features).

Weight tying (``tie``) is decided here too: the stack gets one entry per layer, and tied layers
are the same modules (``"after-first"``: the first layer's own groups, then one shared block
for every later layer; ``"all"``: one block repeated via ``num_layers``). The engine sums the
gradients of shared parameters over the layers that use them.
"""

from __future__ import annotations

from torch import Tensor

from bench.models.blocks import DeepGNN, ResPlusBlock, block_of_layer, distinct_blocks
from bench.models.config import ModelConfig
from bench.nn.reversible import ReversibleStack


class RevGNN(DeepGNN):
    """Grouped reversible GNN: activation memory independent of depth.

    ``config.tie`` shares blocks (WT-RevGNN): ``"after-first"`` gives the first layer its own
    G group functions and shares one block among all later layers, ``"all"`` uses one block at
    every layer; None gives every layer its own. ``config.share_mask`` uses one dropout mask for
    all layers and groups (the paper's way); otherwise an independent mask per layer and group
    is drawn, replayed from one seed.
    """

    def __init__(self, config: ModelConfig, in_channels: int, edge_dim: int | None,
                 out_channels: int) -> None:  # fmt: skip
        super().__init__(config, in_channels, edge_dim, out_channels)
        layers, groups = config.layers, config.groups
        width = config.channels // groups
        n_blocks = distinct_blocks(layers, config.tie)
        blocks = [[ResPlusBlock(config, width, self.block_edge_dim) for _ in range(groups)]
                  for _ in range(n_blocks)]  # fmt: skip
        if 1 < n_blocks < layers:  # partly tied: one entry per layer, shared ones repeated
            blocks = [blocks[block_of_layer(layer, n_blocks)] for layer in range(layers)]
        self.stack = ReversibleStack(
            blocks, num_layers=layers, dropout=config.dropout, share_mask=bool(config.share_mask)
        )
        self.layers = layers
        self.groups = groups
        self.tie = config.tie

    def body(self, h: Tensor, edge_index: Tensor, edge_attr: Tensor | None) -> Tensor:
        # the edge embedding goes to every group whole, as explicit context (never split)
        return self.stack(h, edge_index, edge_attr)
