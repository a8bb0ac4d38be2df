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

from bench.config import DEFAULT_CONV, DEFAULT_TIE
from bench.errors import ConfigError
from bench.models.blocks import DeepGNN, block_maker, block_of_layer, distinct_blocks
from bench.nn.reversible import ReversibleStack


class RevGNN(DeepGNN):
    """Grouped reversible GNN: activation memory independent of depth.

    ``tie`` shares blocks (WT-RevGNN): ``"after-first"`` gives the first layer its own G group
    functions and shares one block among all later layers, ``"all"`` uses one block at every
    layer; None (the default) gives every layer its own.
    ``share_mask=True`` uses one dropout mask for all layers and groups (the paper's way);
    the default draws an independent mask per layer and group, replayed from one seed.
    """

    def __init__(
        self,
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
        conv: str = DEFAULT_CONV,
        heads: int | None = None,
        aggr_impl: str = "fused",
    ) -> None:
        if groups < 2:
            raise ConfigError("groups", f"a reversible arch needs groups >= 2, got {groups}")
        if channels % groups:
            raise ConfigError(
                "groups", f"channels ({channels}) must be divisible by groups ({groups})"
            )
        super().__init__(in_channels, edge_dim, out_channels, channels, dropout, norm, conv)
        width = channels // groups
        block_edge_dim = channels if edge_dim else None
        n_blocks = distinct_blocks(layers, tie)
        make = block_maker(block_edge_dim, aggr, norm, dropout, conv, heads, aggr_impl)
        blocks = [[make(width) for _ in range(groups)] for _ in range(n_blocks)]
        if 1 < n_blocks < layers:  # partly tied: one entry per layer, shared ones repeated
            blocks = [blocks[block_of_layer(layer, n_blocks)] for layer in range(layers)]
        self.stack = ReversibleStack(
            blocks, num_layers=layers, dropout=dropout, share_mask=share_mask
        )
        self.layers = layers
        self.groups = groups
        self.tie = tie

    def body(self, h: Tensor, edge_index: Tensor, edge_attr: Tensor | None) -> Tensor:
        # the edge embedding goes to every group whole, as explicit context (never split)
        return self.stack(h, edge_index, edge_attr)


class WTRevGNN(RevGNN):
    """Weight-tied RevGNN: an untied first grouped reversible block, then one block for every
    later layer (``tie="after-first"``, the default), or one block for all (``tie="all"``)."""

    def __init__(self, *args: object, tie: str = DEFAULT_TIE, **kwargs: object) -> None:
        super().__init__(*args, **kwargs, tie=tie)  # type: ignore[arg-type]
