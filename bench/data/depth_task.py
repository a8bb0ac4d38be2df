"""``synthetic-depth``: a forest of rooted trees whose label needs exactly k message-passing hops.

The ground-truth depth task (after Tree-NeighborsMatch, Alon & Yahav, ICLR 2021: information
placed only at distance r from the labelled node; the idea is borrowed, not the code).
Options: ``depth`` = k (the hops needed), ``branching`` = b (children per inner node; 1 gives
chains, so k can be hundreds), ``num_trees``, ``noise_features``, ``label_noise``, ``seed``.

Construction, all from one seed:

1. ``num_trees`` identical complete b-ary trees of depth k (b = 1: chains of k + 1 nodes),
   each ``S = 1 + b + ... + b^k`` nodes laid out in heap order (tree t holds nodes
   ``t*S .. t*S + S - 1``, its root first; the parent of local node j >= 1 is ``(j - 1) // b``).
   Edges join each node to its parent, both directions; there are no edge features.
2. Half of the trees (a seeded permutation, so the classes are balanced exactly) are
   positive. In each positive tree ONE of its ``b^k`` depth-k nodes, drawn uniformly, carries
   the marker; no other node of any tree does. Node inputs: that 0/1 marker, then
   ``noise_features`` N(0, 1) distractor columns on every node, drawn from their own random
   stream (independent of the labels).
3. Only roots are labelled: the root's label is 1 iff a node at depth k of its tree carries
   the marker (an OR of the depth-k markers, which max aggregation computes exactly; a sum
   computes their count, here 0 or 1), then flipped with probability ``label_noise``. Non-root
   nodes carry label 0 and belong to no split. The roots are split 60/20/20 (train/valid/test)
   by a seeded permutation.

Ground truth, each property tested in ``tests/test_depth_task.py``:

* **Fewer than k hops carry no information.** For L < k, the L-hop neighbourhood of every
  root is the same graph (the first L levels of the same tree) with the same inputs for both
  classes: markers all 0, distractors (if any) drawn alike for both. Without distractors it is
  identical, so any model whose receptive field is under k hops gives every root the same
  score (ROC-AUC 0.5 exactly), whatever its width or training. No degree, feature-sum or
  position leak: the trees are identical but for one marker at depth k.
* **k hops determine the label** (up to ``label_noise``): the OR of the markers at distance
  exactly k from the root is the label. Nothing farther exists (a tree's radius from its
  root is k).
* **Batches never cut a tree.** ``data.component`` holds each node's tree; the random node
  partition (:func:`bench.data.partition.random_partition`) splits whole components, so
  mini-batching keeps every root's k-hop neighbourhood inside its batch.

Receptive fields in hops (``bench.trial.hops``): ResGNN L, RevGNN and WT-RevGNN G x L, DEQ-GNN
2 n - 1 after n solver iterations from the zero state.

**What a score means here.** Without distractors the two classes are two inputs: valid and
test roots are the same two inputs, so a model whose output margin is vanishingly small but
of the right sign scores 1.0, and the test score at the best validation epoch is 1.0 as soon
as the sign is right in any epoch. Measured (CPU, chains, k = 8, 32 channels, lr 0.001, 10
mini-batch parts, 5 seeds): RevGNN at 8 hops "scored" 1.000 while its test score was 1.0 in
27% of epochs and 0.0 in 26%, training loss ln 2 (0.69) throughout; ResGNN at k = 3 likewise
in 30 full-batch epochs at lr 0.01. Only ResGNN at k = 4 learned in that time (loss 0.45 after
16 epochs). So use ``noise_features`` >= 1 where a score must mean the rule was learned: the
distractors make every root's input its own, and a high test score then needs the marker
weighed above them. Measured with one distractor (full batch, 1,000 chains, 32 channels, lr
0.001, 300 epochs, seed 0): ResGNN k = 4 with 4 layers 1.000 (best epoch 294), RevGNN 2 layers
(4 hops) 0.999 (epoch 177), DEQ-GNN 3 iterations (5 hops) 0.576; k = 2, 300 chains, lr 0.01:
ResGNN 1 layer 0.461, 2 layers 1.000 (loss 0.004 by epoch 40). The ``accuracy`` spec's
profiles (``ablations/accuracy.toml``) use one distractor; their numbers are in the export.

**Scale.** Everything is vectorised: a million nodes (``depth`` 8, 111,112 chains) are made in
about 0.5 s on one CPU thread, so the same task scales to a GPU-sized graph; at most
``MAX_FOREST_NODES`` (50 million) nodes in all (:mod:`bench.data.options`: the rules of the
options).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor
from torch_geometric.data import Data

from bench.data.base import GraphDataset, build_dataset
from bench.data.dataset_spec import DatasetSpec
from bench.data.options import forest, tree_size

SPLIT_FRACTIONS = (0.6, 0.2)  # train, valid (test: the rest), over the roots
NOISE_SEED_OFFSET = 15_485_863  # the distractor features' own random stream


def check_options(
    depth: Any, branching: Any, num_trees: Any, noise_features: Any, label_noise: Any, seed: Any
) -> None:
    """Every option's type and range (:func:`bench.data.options.forest`, the registry's rules);
    a ConfigError naming ``dataset_options`` and the option."""
    forest({"depth": depth, "branching": branching, "num_trees": num_trees,
            "noise_features": noise_features, "label_noise": label_noise, "seed": seed})  # fmt: skip


def generate(
    depth: int,
    branching: int,
    num_trees: int,
    noise_features: int,
    label_noise: float,
    seed: int,
) -> dict[str, Tensor]:
    """The forest as tensors: ``edge_index`` [2, E] (both directions), ``x`` [N, 1 + noise]
    (the marker, then the distractors), ``y`` [N, 1] (root labels, noise applied; 0 elsewhere),
    ``clean`` [T] (each tree's label before noise), ``roots`` [T], ``component`` [N] (tree id),
    ``level`` [N] (depth in the tree), ``split_perm`` [T] (the trees in split order)."""
    check_options(depth, branching, num_trees, noise_features, label_noise, seed)
    gen = torch.Generator().manual_seed(seed)
    size = tree_size(depth, branching)
    n = num_trees * size
    local = torch.arange(size)
    parent_local = (local[1:] - 1).div(branching, rounding_mode="floor")
    # heap order: level d holds local ids tree_size(d - 1) .. tree_size(d) - 1
    starts = torch.tensor([tree_size(d, branching) for d in range(depth)])
    level = torch.searchsorted(starts, local, right=True)
    offsets = (torch.arange(num_trees) * size)[:, None]
    child = (offsets + local[1:]).reshape(-1)
    parent = (offsets + parent_local).reshape(-1)
    edge_index = torch.stack([torch.cat([parent, child]), torch.cat([child, parent])])

    positive = torch.zeros(num_trees, dtype=torch.bool)
    positive[torch.randperm(num_trees, generator=gen)[: num_trees // 2]] = True
    first_leaf = size - branching**depth
    leaf = first_leaf + torch.randint(0, branching**depth, (num_trees,), generator=gen)
    x = torch.zeros(n, 1 + noise_features)
    # the distractors: their own stream, drawn whatever the labels (independent of them)
    noise_gen = torch.Generator().manual_seed(seed + NOISE_SEED_OFFSET)
    x[:, 1:] = torch.randn(n, noise_features, generator=noise_gen)
    marked = torch.arange(num_trees)[positive] * size + leaf[positive]
    x[marked, 0] = 1.0
    roots = torch.arange(num_trees) * size
    flip = torch.rand(num_trees, generator=gen) < label_noise
    y = torch.zeros(n, 1)
    y[roots, 0] = (positive ^ flip).float()
    return {
        "edge_index": edge_index,
        "x": x,
        "y": y,
        "clean": positive.float(),
        "roots": roots,
        "component": torch.arange(num_trees).repeat_interleave(size),
        "level": level.repeat(num_trees),
        "split_perm": torch.randperm(num_trees, generator=gen),
    }


def load_depth_task(
    spec: DatasetSpec,
    root: str | None,
    *,
    depth: int,
    branching: int,
    num_trees: int,
    noise_features: int,
    label_noise: float,
    seed: int,
) -> GraphDataset:
    """Build ``synthetic-depth`` (``root`` is ignored: the forest is generated in memory)."""
    parts = generate(depth, branching, num_trees, noise_features, label_noise, seed)
    n = parts["x"].shape[0]
    data = Data(x=parts["x"], edge_index=parts["edge_index"], y=parts["y"], num_nodes=n)
    data.component = parts["component"]  # the partitioner keeps each tree whole
    roots = parts["roots"][parts["split_perm"]]
    n_train = int(round(SPLIT_FRACTIONS[0] * num_trees))
    n_valid = int(round(SPLIT_FRACTIONS[1] * num_trees))
    split = {
        "train": roots[:n_train].sort().values,
        "valid": roots[n_train : n_train + n_valid].sort().values,
        "test": roots[n_train + n_valid :].sort().values,
    }
    return build_dataset(
        spec, data, split, "generated", needed_hops=depth, trees=num_trees,
        tree_nodes=tree_size(depth, branching),
        positive_rate=round(float(parts["y"][parts["roots"]].mean()), 4),
    )  # fmt: skip
