"""Reversible GNNs: RevGNN (grouped reversible res+ blocks) and its weight-tied variant.

The wiring and the memory-saving backward live in :class:`bench.nn.ReversibleStack`; this file
only decides what the group functions are: each group of layer ``l`` is its own freshly
initialised :class:`ResPlusBlock` of width ``channels / groups`` (the paper authors deep-copy
group 1 into the others, so all groups start identical; we do not). Every group receives the
full-width edge embedding explicitly and re-encodes it inside its GENConv.
"""

from __future__ import annotations

from torch import Tensor

from bench.errors import ConfigError
from bench.models.blocks import DeepGNN, ResPlusBlock
from bench.nn.reversible import ReversibleStack


class RevGNN(DeepGNN):
    """Grouped reversible GNN: activation memory independent of depth.

    ``tied=True`` uses one block (its G group functions) at every layer (WT-RevGNN).
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
        tied: bool = False,
        share_mask: bool = False,
    ) -> None:
        if groups < 2:
            raise ConfigError("groups", f"a reversible arch needs groups >= 2, got {groups}")
        if channels % groups:
            raise ConfigError(
                "groups", f"channels ({channels}) must be divisible by groups ({groups})"
            )
        super().__init__(in_channels, edge_dim, out_channels, channels, dropout, norm)
        width = channels // groups
        block_edge_dim = channels if edge_dim else None
        blocks = [
            [ResPlusBlock(width, block_edge_dim, aggr, norm, dropout) for _ in range(groups)]
            for _ in range(1 if tied else layers)
        ]
        self.stack = ReversibleStack(
            blocks, num_layers=layers, dropout=dropout, share_mask=share_mask
        )
        self.layers = layers
        self.groups = groups
        self.tied = tied

    def body(self, h: Tensor, edge_index: Tensor, edge_attr: Tensor | None) -> Tensor:
        # the edge embedding goes to every group whole, as explicit context (never split)
        return self.stack(h, edge_index, edge_attr)


class WTRevGNN(RevGNN):
    """Weight-tied RevGNN: one grouped reversible block applied ``layers`` times."""

    def __init__(self, *args: object, **kwargs: object) -> None:
        super().__init__(*args, **kwargs, tied=True)  # type: ignore[arg-type]
