"""The paper's mini-batching: random node partitions, and multi-view evaluation.

Neighbour sampling does not fit reversible blocks (a block needs the same node set in and out);
a random node partition does. Each epoch, the nodes are split uniformly at random into ``k``
clusters; each cluster's induced subgraph (with its edge features) is one batch. Full-batch is
``k=1``. Evaluation averages each node's scores over several independent partitions ("views").

A graph whose ``data.component`` gives each node a component id (``synthetic-depth``'s trees)
is partitioned by component instead: the components are split uniformly at random into ``k``
groups of near-equal count, so no batch cuts a component (a tree's root keeps its whole k-hop
neighbourhood). Components of equal size give parts of equal size.
"""

from __future__ import annotations

import torch
from torch import Tensor
from torch_geometric.data import Data
from torch_geometric.utils import subgraph

from bench.errors import ConfigError


def _check_k(count: int, k: int, field: str, what: str = "nodes") -> None:
    if isinstance(k, bool) or not isinstance(k, int) or k < 1:
        raise ConfigError(field, f"number of parts must be a positive integer, got {k!r}")
    if k > count:
        raise ConfigError(
            field, f"cannot split {count} {what} into {k} non-empty parts (k > number of {what})"
        )


def random_partition(
    num_nodes: int,
    k: int,
    seed: int,
    field: str = "train_parts",
    component: Tensor | None = None,
) -> list[Tensor]:
    """Split ``range(num_nodes)`` into ``k`` random clusters of near-equal size (sorted ids).

    A seeded permutation cut in ``k`` slices: every node in exactly one cluster, sizes differ by
    at most one (the authors draw a cluster per node, which can leave clusters empty or lopsided;
    equal sizes keep per-step memory predictable). ``field`` names the setting in errors.
    With ``component`` (a component id per node, ids ``0..C-1``) the permutation is of the
    components, and each cluster holds whole components (near-equal counts of them).
    """
    if component is None:
        _check_k(num_nodes, k, field)
        gen = torch.Generator().manual_seed(int(seed))
        perm = torch.randperm(num_nodes, generator=gen)
        return [part.sort().values for part in perm.tensor_split(k)]
    count = int(component.max()) + 1 if component.numel() else 0
    _check_k(count, k, field, "components (trees)")
    gen = torch.Generator().manual_seed(int(seed))
    cluster_of = torch.empty(count, dtype=torch.long)
    for i, comps in enumerate(torch.randperm(count, generator=gen).tensor_split(k)):
        cluster_of[comps] = i
    node_cluster = cluster_of[component]
    order = torch.sort(node_cluster, stable=True).indices  # node ids ascending within a cluster
    sizes = torch.bincount(node_cluster, minlength=k).tolist()
    return list(order.split(sizes))


def induced_batch(data: Data, nodes: Tensor) -> Data:
    """The subgraph induced by ``nodes``: local ``edge_index``, its ``edge_attr``, ``n_id``.

    Every node-level attribute of ``data`` (``x``, ``y``, masks...) is sliced to the batch.
    """
    edge_index, _, edge_mask = subgraph(
        nodes, data.edge_index, relabel_nodes=True, num_nodes=data.num_nodes, return_edge_mask=True
    )
    return _batch(data, nodes, edge_index, edge_mask.nonzero().view(-1))


def partition_batches(data: Data, k: int, seed: int, field: str = "train_parts") -> list[Data]:
    """One random partition of ``data`` into ``k`` induced subgraphs (the paper's batches).

    Equal to ``[induced_batch(data, part) for part in random_partition(...)]`` (same edges,
    same order), but one pass over the edges serves every part: an edge belongs to the part
    of its source if its target is in the same part. At ogbn-proteins' size (79M edges, 10
    parts) that is a few seconds instead of ``k`` passes of PyG's ``subgraph``.
    """
    n = data.num_nodes
    parts = random_partition(n, k, seed, field, data.get("component"))
    if k == 1:
        return [induced_batch(data, parts[0])]
    part_of = torch.empty(n, dtype=torch.int16 if k <= 2**15 else torch.int32)
    local = torch.empty(n, dtype=torch.long)  # a node's id within its part (parts are sorted)
    for i, nodes in enumerate(parts):
        part_of[nodes] = i
        local[nodes] = torch.arange(nodes.numel())
    src_part = part_of[data.edge_index[0]]
    inside = (src_part == part_of[data.edge_index[1]]).nonzero().view(-1)
    edge_part = src_part[inside]
    del src_part
    # group the kept edges by part, keeping their order (a stable sort of small integers)
    inside = inside[torch.sort(edge_part, stable=True).indices]
    counts = torch.bincount(edge_part.long(), minlength=k).tolist()
    batches = []
    for nodes, edges in zip(parts, inside.split(counts), strict=True):
        batches.append(_batch(data, nodes, local[data.edge_index[:, edges]], edges))
    return batches


def _batch(data: Data, nodes: Tensor, edge_index: Tensor, edges: Tensor) -> Data:
    """A batch of ``nodes`` with its (already relabelled) ``edge_index``; slices the rest."""
    n = data.num_nodes
    edge_attr = None if data.edge_attr is None else data.edge_attr[edges]
    batch = Data(edge_index=edge_index, edge_attr=edge_attr, n_id=nodes, num_nodes=nodes.numel())
    for key, value in data.items():
        if key in ("edge_index", "edge_attr", "num_nodes") or not isinstance(value, Tensor):
            continue
        if value.dim() > 0 and value.shape[0] == n and data.is_node_attr(key):
            batch[key] = value[nodes]
    return batch


def derived_seed(seed: int, *salt: int) -> int:
    """Independent, reproducible seeds from a trial seed (``salt``: what the draw is for, e.g.
    ``(1, epoch)`` for an epoch's training partition, ``(0,)`` for the evaluation one)."""
    import numpy as np

    return int(np.random.SeedSequence([seed, *salt]).generate_state(1)[0])


def full_batch(data: Data) -> Data:
    """The whole graph as one batch (``n_id`` = every node), for ``batching="full"``."""
    batch = data.clone()
    batch.n_id = torch.arange(data.num_nodes)
    return batch


def trial_batches(
    data: Data, parts: int, seed: int, batching: str, field: str = "train_parts"
) -> list[Data]:
    """A trial's batches: one random ``parts``-partition (``batching="mini"``) or the whole
    graph (``"full"``). Trials, the memory model and the GPU check draw the same batches."""
    if batching == "full":
        return [full_batch(data)]
    return partition_batches(data, parts, seed, field)
