"""What a convolution no formula knows keeps for backward, measured in one block step.

The memory model counts, per built-in convolution, the tensors autograd saves in one block
(:mod:`bench.measure.memory_model`). A user's factory (``conv = "module:function"``) has no such
count, so it is calibrated: one :class:`~bench.models.blocks.ResPlusBlock` with that
convolution runs one forward and backward on a random graph of ``NODES`` nodes and ``EDGES``
edges on the present device (the trial's, or the CPU where that device is not here), in
float32, and every tensor autograd saves is caught with ``torch.autograd.graph.saved_tensors_hooks``
(each storage once, parameters left out: they are model state). A saved tensor whose first
dimension is the node count grows with nodes, one whose first dimension is the edge count
(or edges plus one self-loop a node) grows with edges, anything else is fixed; the batch's
figure scales each class to its own nodes and edges. The step's largest transient is taken as
the per-edge saved bytes (a message tensor and its product, as for the built-in convolutions).
Blind spots: a convolution whose saved tensors grow otherwise (with the square of the nodes,
say) is misjudged, and mixed precision is scaled from float32 (2 B a float), not measured.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

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
    """Measure one block of ``width`` channels of ``config`` (module doc)."""
    import torch

    from bench.models.blocks import ResPlusBlock

    where = torch.device(_where(device))
    generator = torch.Generator().manual_seed(0)
    block = ResPlusBlock(config, width, edge_width).to(where).train()
    x = torch.randn(NODES, width, generator=generator).to(where).requires_grad_()
    edge_index = torch.randint(0, NODES, (2, EDGES), generator=generator).to(where)
    edge_attr = (torch.randn(EDGES, edge_width, generator=generator).to(where)
                 if edge_width else None)  # fmt: skip
    params = {p.untyped_storage().data_ptr() for p in block.parameters()}
    seen: dict[int, tuple[int, int]] = {}

    def pack(t: torch.Tensor) -> torch.Tensor:
        storage = t.untyped_storage()
        ptr = storage.data_ptr()
        if ptr not in params and ptr not in seen:
            seen[ptr] = (t.shape[0] if t.dim() else 0, storage.nbytes())
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        out = block(x, edge_index, edge_attr)
    out.float().square().mean().backward()
    per_node = per_edge = 0.0
    fixed = 0
    for rows, nbytes in seen.values():
        if rows == NODES:
            per_node += nbytes / NODES
        elif rows in (EDGES, EDGES + NODES):
            per_edge += nbytes / rows
        else:
            fixed += nbytes
    return BlockCost(per_node, per_edge, fixed, where.type)
