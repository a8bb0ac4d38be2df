"""The convolution inside every block, built from the model's configuration.

Every one is called as ``conv(x, edge_index, edge_attr=None)`` so the block
(:class:`~bench.models.blocks.ResPlusBlock`) and every engine wire them alike. What each does
with the block's width ``C`` and the (already encoded) edge embedding (what each can read:
:mod:`bench.models.conv_specs`):

* ``gen`` -- GENConv as in DeeperGCN: learnable softmax temperature / power, 2-layer MLP inside.
  As in the authors' code, every convolution re-encodes the edge embedding (a biased linear map,
  also when the widths match, where PyG would skip it) and its linear layers have biases: with
  both, parameter counts equal the paper's (ResGNN-64 at 112 layers: 2.37M; RevGNN-64: 1.46M;
  RevGNN-80: 2.25M; RevGNN-Deep: 20.03M). A grouped block's narrower convolution re-encodes the
  full-width edge embedding this way. ``aggr_impl="fused"`` runs max aggregation as
  :class:`~bench.nn.aggr.LeanMaxGENConv` (same values and parameters, an N x C argmax saved
  instead of two E x C tensors); ``"pyg"`` is PyG's own path.
* ``gat`` -- PyG's ``GATConv`` with ``heads`` heads of ``C / heads`` channels, concatenated
  (RevGAT's layout: the authors' ogbn-arxiv block is 3 heads x 256, split into 2 groups of
  3 x 128). Edge features enter the attention logits through ``edge_dim``. Self-loops are
  added once per batch (:func:`prepare_edges`), their edge features the mean of the node's
  incoming ones. Attention dropout is not offered: GATConv draws it from the global RNG, which
  the reversible backward cannot replay (the authors' RevGAT asserts ``attn_drop == 0`` too);
  node dropout applies as for every conv.
* ``sage`` -- PyG's ``SAGEConv`` (root weight + neighbour aggregation ``aggr``), the block of
  PyG's RevGNN example on ogbn-products.
* ``gcn`` -- PyG's ``GCNConv``; the normalised edge weights of the self-looped graph are
  computed once per batch (:func:`prepare_edges`) and handed to every layer in the edge slot.
* ``module:factory`` -- a user's own (:mod:`bench.models.conv_specs`), wrapped so it is called
  like the others.

**Per-batch preparation.** Adding self-loops and normalising by degree is the same for every
layer of a batch, and it reads the device back to the host (masks select the existing loops,
``nonzero`` underneath): inside each layer that is one stall of the GPU's queue per layer, and
one recomputation of tensors autograd then keeps per layer. :func:`prepare_edges` does it once
per forward, with PyG's own utilities, so values equal GATConv's and GCNConv's own path
(tests/test_host_sync.py) and a step's host reads do not grow with depth.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn
from torch_geometric.nn import GATConv, GCNConv, GENConv, Linear, SAGEConv
from torch_geometric.nn.conv.gcn_conv import gcn_norm
from torch_geometric.utils import add_self_loops, remove_self_loops

from bench.models import pyg_modules
from bench.models.config import ModelConfig
from bench.models.conv_specs import FactorySpec
from bench.nn.aggr import LeanMaxGENConv

pyg_modules.install()  # PyG's generated propagate modules: one cache folder, not /tmp per process


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


class FactoryConv(nn.Module):
    """A user's convolution (``module:factory``) called as ``conv(x, edge_index, edge_attr)``:
    the edge embedding goes to it only if its factory takes ``edge_dim``."""

    def __init__(self, spec: FactorySpec, in_channels: int, out_channels: int,
                 edge_dim: int | None) -> None:  # fmt: skip
        super().__init__()
        options = {"edge_dim": edge_dim} if spec.reads_edges and edge_dim else {}
        self.inner = spec.factory(in_channels, out_channels, **options)
        self.reads_edges = bool(options)

    def forward(self, x: Tensor, edge_index: Tensor, edge_attr: Tensor | None = None) -> Tensor:
        if self.reads_edges:
            return self.inner(x, edge_index, edge_attr)
        return self.inner(x, edge_index)


def make_gen_conv(config: ModelConfig, in_channels: int, out_channels: int,
                  edge_dim: int | None, bias: bool = True) -> GENConv:  # fmt: skip
    """GENConv with the model's aggregation and normalisation (module doc)."""
    aggr = config.aggr
    lean = aggr == "max" and config.aggr_impl == "fused"
    conv = (LeanMaxGENConv if lean else GENConv)(
        in_channels,
        out_channels,
        **({} if lean else {"aggr": aggr}),
        learn_t=aggr == "softmax",
        learn_p=aggr == "power",
        norm=config.norm if config.norm != "none" else None,
        num_layers=2,
        bias=bias,
        edge_dim=edge_dim or None,
    )
    if edge_dim and not hasattr(conv, "lin_edge"):  # PyG skips it when edge_dim == out_channels
        conv.lin_edge = Linear(edge_dim, out_channels, bias=bias)
    return conv


def make_conv(config: ModelConfig, in_channels: int, out_channels: int,
              edge_dim: int | None) -> nn.Module:  # fmt: skip
    """The block's convolution from ``in_channels`` to ``out_channels`` (``config.conv``),
    called as ``conv(x, edge_index, edge_attr)``; ``edge_dim``: the edge embedding's width."""
    spec = config.conv_spec
    if isinstance(spec, FactorySpec):
        return FactoryConv(spec, in_channels, out_channels, edge_dim)
    if spec.name == "gen":
        return make_gen_conv(config, in_channels, out_channels, edge_dim)
    if spec.name == "gat":
        heads = config.heads or 1
        return GATConv(
            in_channels, out_channels // heads, heads=heads, concat=True, dropout=0.0,
            edge_dim=edge_dim or None, add_self_loops=False,  # prepare_edges adds them
        )  # fmt: skip
    if edge_dim:
        raise ValueError(f"{spec.display} cannot read edge features (edge_dim={edge_dim})")
    if spec.name == "sage":
        return SAGEBlockConv(in_channels, out_channels, aggr=config.aggr)
    return GCNBlockConv(in_channels, out_channels)


def prepare_edges(
    conv: str, edge_index: Tensor, edge_attr: Tensor | None, num_nodes: int, dtype: torch.dtype
) -> tuple[Tensor, Tensor | None]:
    """What every layer of a batch reads, computed once (module doc): for ``gat`` the graph
    with self-loops (existing ones removed, one per node added, its edge features the mean of
    the node's incoming ones), for ``gcn`` the self-looped graph and its symmetric degree
    normalisation (weights in ``dtype``); other convolutions get the batch as it is."""
    if conv == "gat":
        edge_index, edge_attr = remove_self_loops(edge_index, edge_attr)
        return add_self_loops(edge_index, edge_attr, fill_value="mean", num_nodes=num_nodes)
    if conv == "gcn":
        if edge_attr is not None:
            raise ValueError("gcn cannot read edge features; build the model without them")
        return gcn_norm(edge_index, None, num_nodes, False, True, "source_to_target", dtype)
    return edge_index, edge_attr
