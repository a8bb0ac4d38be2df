"""The convolutions a block can hold besides GENConv: multi-head GAT, GraphSAGE and GCN.

Every one is called as ``conv(x, edge_index, edge_attr=None)`` so the block
(:class:`~bench.models.blocks.ResPlusBlock`) and every engine wire them alike. What each does
with the block's width ``C`` and the (already encoded) edge embedding:

* ``gat`` -- PyG's ``GATConv`` with ``heads`` heads of ``C / heads`` channels, concatenated
  (RevGAT's layout: the authors' ogbn-arxiv block is 3 heads x 256, split into 2 groups of
  3 x 128). Edge features enter the attention logits through ``edge_dim`` (a bias-free linear
  map of the edge embedding per layer, as PyG does). Self-loops are added, their edge features
  the mean of the node's incoming ones: once per batch (:func:`prepare_edges`), not by every
  layer as GATConv would. Attention dropout is not offered: GATConv draws it
  from the global RNG, which the reversible backward cannot replay, so a rebuilt input would
  not be the forward's (the authors' RevGAT asserts ``attn_drop == 0`` for the same reason);
  node dropout (``--dropout``) applies as for every conv.
* ``sage`` -- PyG's ``SAGEConv`` (root weight + neighbour aggregation ``aggr``: max, mean or
  add), the block of PyG's RevGNN example on ogbn-products.
* ``gcn`` -- PyG's ``GCNConv`` (symmetric degree normalisation with self-loops); the
  normalised edge weights are computed once per batch (:func:`prepare_edges`) and handed to
  every layer in the edge slot, instead of by every layer.

**Per-batch preparation.** Adding self-loops and normalising by degree is the same for every
layer of a batch, and it reads the device back to the host (masks select the existing loops,
``nonzero`` underneath): inside each layer that is one stall of the GPU's queue per layer, and
one recomputation of tensors autograd then keeps per layer. :func:`prepare_edges` does it once
per forward (``DeepGNN.forward``), with PyG's own utilities, so values equal GATConv's and
GCNConv's own path (tests/test_host_sync.py) and a step's host reads do not grow with depth.

SAGE and GCN cannot read edge features: :class:`~bench.config.TrialConfig` refuses a dataset
that has them (the features would be dropped silently) and so does ``build_model``.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn
from torch_geometric.nn import GATConv, GCNConv, SAGEConv
from torch_geometric.nn.conv.gcn_conv import gcn_norm
from torch_geometric.utils import add_self_loops, remove_self_loops

from bench.config import CONVS, DEFAULT_HEADS, EDGE_CONVS, SAGE_AGGRS
from bench.errors import ConfigError


class _NoEdgeFeatures:
    """Gives an edge-free PyG conv the shared call signature; refuses edge features given."""

    def forward(self, x: Tensor, edge_index: Tensor, edge_attr: Tensor | None = None) -> Tensor:
        if edge_attr is not None:
            raise ValueError(
                f"{type(self).__name__} cannot read edge features; build the model without "
                "them (edge_dim=None)"
            )
        return super().forward(x, edge_index)  # type: ignore[misc]


class SAGEBlockConv(_NoEdgeFeatures, SAGEConv):
    """``SAGEConv`` called as ``conv(x, edge_index, edge_attr=None)`` (edge_attr must be None)."""


class GCNBlockConv(GCNConv):
    """``GCNConv(normalize=False)`` called as ``conv(x, edge_index, edge_weight)``: the edge
    slot carries the normalised weights of the self-looped graph (:func:`prepare_edges`)."""

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__(in_channels, out_channels, normalize=False)

    def forward(self, x: Tensor, edge_index: Tensor, edge_attr: Tensor | None = None) -> Tensor:
        if edge_attr is None:
            raise ValueError(
                "GCNBlockConv reads the normalised edge weights of prepare_edges('gcn', ...) "
                "in its edge slot; got none"
            )
        return super().forward(x, edge_index, edge_attr)


def prepare_edges(
    conv: str, edge_index: Tensor, edge_attr: Tensor | None, num_nodes: int, dtype: torch.dtype
) -> tuple[Tensor, Tensor | None]:
    """What every layer of a batch reads, computed once (module doc): for ``gat`` the graph
    with self-loops (existing ones removed, one per node added, its edge features the mean of
    the node's incoming ones), for ``gcn`` the self-looped graph and its symmetric degree
    normalisation (weights in ``dtype``); ``gen`` and ``sage`` get the batch as it is."""
    if conv == "gat":
        edge_index, edge_attr = remove_self_loops(edge_index, edge_attr)
        return add_self_loops(edge_index, edge_attr, fill_value="mean", num_nodes=num_nodes)
    if conv == "gcn":
        if edge_attr is not None:
            raise ValueError("gcn cannot read edge features; build the model without them")
        return gcn_norm(edge_index, None, num_nodes, False, True, "source_to_target", dtype)
    return edge_index, edge_attr


def check_conv(conv: str, edge_dim: int | None, heads: int | None, aggr: str) -> None:
    """Refuse settings a convolution cannot honour (ConfigError naming the setting)."""
    if conv not in CONVS:
        raise ConfigError("conv", f"unknown convolution {conv!r}; choose one of {', '.join(CONVS)}")
    if heads is not None and conv != "gat":
        raise ConfigError("heads", f"is a GAT setting, but conv is {conv!r}")
    if heads is not None and (not isinstance(heads, int) or isinstance(heads, bool) or heads < 1):
        raise ConfigError("heads", f"must be a positive integer, got {heads!r}")
    if edge_dim and conv not in EDGE_CONVS:
        raise ConfigError(
            "conv",
            f"{conv!r} cannot read edge features (edge_dim={edge_dim}): they would be dropped; "
            f"use {' or '.join(EDGE_CONVS)}",
        )
    if conv == "sage" and aggr not in SAGE_AGGRS:
        raise ConfigError("aggr", f"SAGE aggregates by {', '.join(SAGE_AGGRS)}, got {aggr!r}")


def make_other_conv(
    conv: str,
    in_channels: int,
    out_channels: int,
    edge_dim: int | None,
    aggr: str = "mean",
    heads: int | None = None,
) -> nn.Module:
    """A ``gat`` / ``sage`` / ``gcn`` convolution from ``in_channels`` to ``out_channels``."""
    check_conv(conv, edge_dim, heads, aggr)
    if conv == "gat":
        heads = heads or DEFAULT_HEADS
        if out_channels % heads:
            raise ConfigError("heads", f"{heads} heads must divide the block width {out_channels}")
        return GATConv(
            in_channels, out_channels // heads, heads=heads, concat=True, dropout=0.0,
            edge_dim=edge_dim or None, add_self_loops=False,  # prepare_edges adds them
        )  # fmt: skip
    if conv == "sage":
        return SAGEBlockConv(in_channels, out_channels, aggr=aggr)
    if conv == "gcn":
        return GCNBlockConv(in_channels, out_channels)
    raise ConfigError("conv", f"{conv!r} is built by make_conv (GENConv), not here")
