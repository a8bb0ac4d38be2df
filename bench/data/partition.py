"""The paper's mini-batching: random node partitions, and multi-view evaluation.

Neighbour sampling does not fit reversible blocks (a block needs the same node set in and out);
a random node partition does. Each epoch, the nodes are split uniformly at random into ``k``
clusters; each cluster's induced subgraph (with its edge features) is one batch. Full-batch is
``k=1``. Evaluation averages each node's scores over several independent partitions ("views").
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor
from torch_geometric.data import Data
from torch_geometric.utils import subgraph

from bench.errors import ConfigError


def _check_k(num_nodes: int, k: int, field: str) -> None:
    if isinstance(k, bool) or not isinstance(k, int) or k < 1:
        raise ConfigError(field, f"number of parts must be a positive integer, got {k!r}")
    if k > num_nodes:
        raise ConfigError(
            field, f"cannot split {num_nodes} nodes into {k} non-empty parts (k > number of nodes)"
        )


def random_partition(num_nodes: int, k: int, seed: int, field: str = "train_parts") -> list[Tensor]:
    """Split ``range(num_nodes)`` into ``k`` random clusters of near-equal size (sorted ids).

    A seeded permutation cut in ``k`` slices: every node in exactly one cluster, sizes differ by
    at most one (the authors draw a cluster per node, which can leave clusters empty or lopsided;
    equal sizes keep per-step memory predictable). ``field`` names the setting in errors.
    """
    _check_k(num_nodes, k, field)
    gen = torch.Generator().manual_seed(int(seed))
    perm = torch.randperm(num_nodes, generator=gen)
    return [part.sort().values for part in perm.tensor_split(k)]


def induced_batch(data: Data, nodes: Tensor) -> Data:
    """The subgraph induced by ``nodes``: local ``edge_index``, its ``edge_attr``, ``n_id``.

    Every node-level attribute of ``data`` (``x``, ``y``, masks...) is sliced to the batch.
    """
    n = data.num_nodes
    edge_index, edge_attr = subgraph(
        nodes, data.edge_index, data.edge_attr, relabel_nodes=True, num_nodes=n
    )
    batch = Data(edge_index=edge_index, edge_attr=edge_attr, n_id=nodes, num_nodes=nodes.numel())
    for key, value in data.items():
        if key in ("edge_index", "edge_attr", "num_nodes") or not isinstance(value, Tensor):
            continue
        if value.dim() > 0 and value.shape[0] == n and data.is_node_attr(key):
            batch[key] = value[nodes]
    return batch


def partition_batches(data: Data, k: int, seed: int, field: str = "train_parts") -> list[Data]:
    """One random partition of ``data`` into ``k`` induced subgraphs (the paper's batches)."""
    return [induced_batch(data, part) for part in random_partition(data.num_nodes, k, seed, field)]


@torch.no_grad()
def multiview_scores(
    data: Data,
    score_fn: Callable[[Data], Tensor],
    k: int,
    views: int = 1,
    seed: int = 0,
    field: str = "eval_parts",
) -> Tensor:
    """Average of ``score_fn(batch)`` over ``views`` random ``k``-partitions -> [N, out].

    ``score_fn`` maps a batch (as from ``partition_batches``) to scores for its nodes, in batch
    order. View ``v`` uses seed ``seed + v``, so evaluation is reproducible. ``k=1, views=1`` is
    plain full-graph inference.
    """
    if isinstance(views, bool) or not isinstance(views, int) or views < 1:
        raise ConfigError("views", f"must be a positive integer, got {views!r}")
    total: Tensor | None = None
    for v in range(views):
        for batch in partition_batches(data, k, seed + v, field):
            scores = score_fn(batch)
            if total is None:
                total = scores.new_zeros((data.num_nodes, *scores.shape[1:]), dtype=torch.float32)
            total[batch.n_id] += scores.float()
    assert total is not None
    return total / views


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
