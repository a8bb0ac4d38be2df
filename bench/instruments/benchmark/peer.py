"""The peer row: PyG's ``GroupAddRev`` around our own res+ block, so only the reversible
engine differs from RevGNN (same parameters, same function)."""

from __future__ import annotations

from torch import Tensor, nn

from bench.models.blocks import DeepGNN, ResPlusBlock, block_maker


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
    """The peer: PyG's ``GroupAddRev`` around the same res+ block (one per group), ``layers``
    times. PyG's dropout is plain ``nn.functional.dropout`` inside the block (no mask replay),
    so with dropout its reconstruction is inexact; its cost, which is what is measured, is not
    affected."""

    def __init__(
        self, in_channels: int, edge_dim: int | None, out_channels: int, layers: int, channels: int,
        groups: int = 2, dropout: float = 0.0, aggr: str = "max", norm: str = "layer",
        conv: str = "gen", heads: int | None = None,
        aggr_impl: str = "fused",
    ) -> None:  # fmt: skip
        from torch_geometric.nn import GroupAddRev

        super().__init__(in_channels, edge_dim, out_channels, channels, dropout, norm, conv)
        width = channels // groups
        block_edge_dim = channels if edge_dim else None
        make = block_maker(block_edge_dim, aggr, norm, dropout, conv, heads, aggr_impl)
        self.layers = nn.ModuleList(
            GroupAddRev(nn.ModuleList(_FullEdgeGroup(make(width)) for _ in range(groups)))
            for _ in range(layers)
        )

    def body(self, h: Tensor, edge_index: Tensor, edge_attr: Tensor | None) -> Tensor:
        if edge_attr is None:
            for layer in self.layers:
                h = layer(h, edge_index)
            return h
        edge_attr = edge_attr.unsqueeze(-1)  # replicated to every group, not split
        for layer in self.layers:
            h = layer(h, edge_index, edge_attr)
        return h
