"""The peer row: PyG's ``GroupAddRev`` around our own res+ block, so only the reversible
engine differs from RevGNN (same parameters, same function)."""

from __future__ import annotations

from torch import Tensor, nn

from bench.models.blocks import DeepGNN, ResPlusBlock
from bench.models.config import ModelConfig


class _FullEdgeGroup(nn.Module):
    """One group's function for the peer: our :class:`ResPlusBlock`, fed the full edge
    embedding. GroupAddRev splits every extra tensor whose last dimension equals the channel
    count across groups (a silent trap: each group would get a slice of the embedding); the
    embedding is therefore handed over as [E, channels, 1], which GroupAddRev replicates, and
    squeezed back here. Parameters and function are then exactly those of our RevGNN's groups."""

    def __init__(self, block: ResPlusBlock) -> None:
        super().__init__()
        self.block = block

    def forward(self, x: Tensor, edge_index: Tensor, edge_attr: Tensor | None = None) -> Tensor:
        return self.block(x, edge_index, edge_attr.squeeze(-1) if edge_attr is not None else None)


class PygGroupAddRevGNN(DeepGNN):
    """The peer: PyG's ``GroupAddRev`` around the same res+ block (one per group),
    ``config.layers`` times (``config``: a RevGNN's). PyG's dropout is plain ``nn.functional.dropout`` inside the block (no mask replay),
    so with dropout its reconstruction is inexact; its cost, which is what is measured, is not
    affected."""

    def __init__(self, config: ModelConfig, in_channels: int, edge_dim: int | None,
                 out_channels: int) -> None:  # fmt: skip
        from torch_geometric.nn import GroupAddRev

        super().__init__(config, in_channels, edge_dim, out_channels)
        width = config.channels // config.groups
        self.layers = nn.ModuleList(
            GroupAddRev(nn.ModuleList(_FullEdgeGroup(ResPlusBlock(config, width, self.block_edge_dim))
                                      for _ in range(config.groups)))
            for _ in range(config.layers)
        )  # fmt: skip

    def body(self, h: Tensor, edge_index: Tensor, edge_attr: Tensor | None) -> Tensor:
        if edge_attr is None:
            for layer in self.layers:
                h = layer(h, edge_index)
            return h
        edge_attr = edge_attr.unsqueeze(-1)  # replicated to every group, not split
        for layer in self.layers:
            h = layer(h, edge_index, edge_attr)
        return h
