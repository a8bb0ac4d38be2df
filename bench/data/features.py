"""Node inputs built the way the paper builds them for ogbn-proteins (shared by the synthetic twin).

Proteins nodes have no features of their own. The authors aggregate each node's incident edge
features (8-dim, summed by default: their ``--aggr add``) and concatenate a *learnable linear
map* of the one-hot species. Our model's node encoder is linear, so
``x = [aggregated edge features | one-hot species]`` followed by that encoder spans exactly the
same functions (linear(concat(a, W s)) = linear'(concat(a, s))): we hand over the one-hot.
"""

from __future__ import annotations

import torch
from torch import Tensor
from torch_geometric.utils import scatter

from bench.data.options import NODE_AGGRS


def aggregate_edge_features(
    edge_index: Tensor, edge_attr: Tensor, num_nodes: int, reduce: str = "add"
) -> Tensor:
    """[N, D]: ``reduce`` over each node's incident edges (edges keyed by their source node).

    The edge list holds both directions of every undirected edge, so the edges whose source is
    ``v`` are exactly ``v``'s incident edges. Isolated nodes get zeros.
    """
    if reduce not in NODE_AGGRS:
        raise ValueError(f"node_aggr: unknown {reduce!r}; choose one of {', '.join(NODE_AGGRS)}")
    return scatter(
        edge_attr.float(),
        edge_index[0],
        dim=0,
        dim_size=num_nodes,
        reduce="sum" if reduce == "add" else reduce,
    )


def one_hot_groups(groups: Tensor) -> tuple[Tensor, Tensor]:
    """One-hot of arbitrary group ids (e.g. NCBI taxonomy ids) and the sorted distinct ids."""
    values, index = torch.unique(groups.reshape(-1), sorted=True, return_inverse=True)
    return torch.nn.functional.one_hot(index, values.numel()).float(), values


def proteins_node_features(
    edge_index: Tensor, edge_attr: Tensor, species: Tensor, num_nodes: int, reduce: str = "add"
) -> Tensor:
    """``[aggregated incident edge features | one-hot species]``, float32 [N, D + S]."""
    agg = aggregate_edge_features(edge_index, edge_attr, num_nodes, reduce)
    onehot, _ = one_hot_groups(species)
    return torch.cat([agg, onehot], dim=1).float()
