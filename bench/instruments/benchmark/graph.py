"""The graph a measured point trains on: a seeded synthetic graph each process builds itself,
or a batch saved to a file (how the GPU check hands a proteins part to its points)."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import Tensor


@dataclass
class Graph:
    x: Tensor
    edge_index: Tensor
    edge_attr: Tensor | None
    y: Tensor

    def to(self, device: torch.device | str) -> Graph:
        return Graph(*(t.to(device) if t is not None else None for t in
                       (self.x, self.edge_index, self.edge_attr, self.y)))  # type: ignore[arg-type]  # fmt: skip


@dataclass(frozen=True)
class GraphSource:
    """How a measured process gets its graph: a seeded synthetic graph it generates itself, or a
    batch saved with ``torch.save`` (a :class:`Graph`'s four tensors). Each process builds or
    loads its own copy on its own device: a CUDA tensor handed to a spawned child arrives
    through inter-process sharing, allocated by the parent, so the child's allocator
    statistics would leave the graph out while the CPU meter counts it."""

    nodes: int = 0
    edges: int = 0
    edge_dim: int = 8
    features: int = 8
    outputs: int = 112
    seed: int = 0
    path: str | None = None

    def load(self, device: torch.device | str) -> Graph:
        if self.path is not None:
            saved = torch.load(self.path, weights_only=True)
            graph = Graph(saved["x"], saved["edge_index"], saved.get("edge_attr"), saved["y"])
        else:
            graph = synthetic_graph(self.nodes, self.edges, self.edge_dim, self.features,
                                    self.outputs, self.seed)  # fmt: skip
        return graph.to(device)


def save_graph(graph: Graph, path: str | Path) -> None:
    """Write a batch for :class:`GraphSource` (atomically: a partial file is never read)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tensors = {"x": graph.x, "edge_index": graph.edge_index, "y": graph.y}
    if graph.edge_attr is not None:
        tensors["edge_attr"] = graph.edge_attr
    torch.save(tensors, tmp)
    os.replace(tmp, path)


def synthetic_graph(
    nodes: int, edges: int, edge_dim: int, features: int, outputs: int, seed: int
) -> Graph:
    """A seeded random graph with proteins-like shapes (multi-label binary targets)."""
    gen = torch.Generator().manual_seed(seed)
    return Graph(
        x=torch.randn(nodes, features, generator=gen),
        edge_index=torch.randint(0, nodes, (2, edges), generator=gen),
        edge_attr=torch.rand(edges, edge_dim, generator=gen) if edge_dim else None,
        y=(torch.rand(nodes, outputs, generator=gen) < 0.3).float(),
    )
