"""What a convolution no formula knows keeps for backward, measured in one block step.

The memory model counts, per built-in convolution, the tensors autograd saves in one block
(:mod:`bench.measure.memory_model`). A user's factory (``conv = "module:function"``) has no such
count, so it is calibrated: one :class:`~bench.models.blocks.ResPlusBlock` with that
convolution runs a forward and backward on random graphs on the present device (the trial's, or
the CPU where that device is not here), in float32, and every tensor autograd saves is caught
with ``torch.autograd.graph.saved_tensors_hooks`` (each storage once; parameters left out: they
are model state). Three graphs -- ``NODES`` nodes and ``EDGES`` edges, then twice the nodes,
then twice the edges -- give the saved bytes per node, per edge and fixed, whatever shapes the
convolution's tensors have (self-loops it adds count per node); the batch's figure scales them
to its own nodes and edges. The step's largest transient is taken as the per-edge bytes (a
message tensor and its product, as for the built-in convolutions). Blind spots: saved tensors
that grow otherwise (with the square of the nodes, say) are misjudged, and mixed precision is
scaled from float32 (2 B a float), not measured.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Any

from bench.models.config import ModelConfig

NODES, EDGES = 256, 1024  # the calibration graph: big enough that nodes and edges tell apart


@dataclass(frozen=True)
class BlockCost:
    """Saved bytes of one block, by what they grow with (module doc)."""

    per_node: float
    per_edge: float
    fixed: int
    device: str

    def saved_bytes(self, nodes: int, edges: int) -> float:
        return self.per_node * nodes + self.per_edge * edges + self.fixed

    def edge_bytes(self, edges: int) -> float:
        return self.per_edge * edges


def calibration_note(conv: str, device: str) -> str:
    """The line a prediction prints to say its activations were calibrated, and how."""
    return (f"activations calibrated: {conv} is a user's convolution, so one block's saved "
            f"tensors were measured in one forward+backward on {_where(device)} ({NODES} nodes, "
            f"{EDGES} edges) and scaled per node and per edge")  # fmt: skip


def _where(device: str) -> str:
    import torch

    return "cuda" if device == "cuda" and torch.cuda.is_available() else "cpu"


@functools.cache
def calibrate_block(config: ModelConfig, width: int, edge_width: int | None,
                    device: str) -> BlockCost:  # fmt: skip
    """Measure one block of ``width`` channels of ``config`` on three graphs (module doc)."""
    import torch

    where = torch.device(_where(device))
    base = _saved_bytes(config, width, edge_width, where, NODES, EDGES)
    per_node = (_saved_bytes(config, width, edge_width, where, 2 * NODES, EDGES) - base) / NODES
    per_edge = (_saved_bytes(config, width, edge_width, where, NODES, 2 * EDGES) - base) / EDGES
    per_node, per_edge = max(per_node, 0.0), max(per_edge, 0.0)
    fixed = max(0, int(base - per_node * NODES - per_edge * EDGES))
    return BlockCost(per_node, per_edge, fixed, where.type)


def _saved_bytes(config: ModelConfig, width: int, edge_width: int | None, where: Any,
                 nodes: int, edges: int) -> int:  # fmt: skip
    """Bytes of the distinct storages autograd saves in one forward of one block."""
    import torch

    from bench.models.blocks import ResPlusBlock

    generator = torch.Generator().manual_seed(0)
    block = ResPlusBlock(config, width, edge_width).to(where).train()
    x = torch.randn(nodes, width, generator=generator).to(where).requires_grad_()
    source = torch.randint(0, nodes, (edges,), generator=generator)
    shift = torch.randint(1, nodes, (edges,), generator=generator)  # no self-loops
    edge_index = torch.stack([source, (source + shift) % nodes]).to(where)
    edge_attr = (torch.randn(edges, edge_width, generator=generator).to(where)
                 if edge_width else None)  # fmt: skip
    params = {p.untyped_storage().data_ptr() for p in block.parameters()}
    seen: dict[int, int] = {}

    def pack(t: torch.Tensor) -> torch.Tensor:
        storage = t.untyped_storage()
        if storage.data_ptr() not in params:
            seen.setdefault(storage.data_ptr(), storage.nbytes())
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        out = block(x, edge_index, edge_attr)
    out.float().square().mean().backward()
    return sum(seen.values())
