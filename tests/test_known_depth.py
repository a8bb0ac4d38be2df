"""The known-depth option of ``synthetic-proteins`` (``depth_task`` = k): labels are a function
of the markers within k hops and of nothing farther, and a model shallower than k scores
measurably worse than one k layers deep."""

from __future__ import annotations

import pytest
import torch
from scipy.sparse import csr_matrix
from scipy.sparse.csgraph import shortest_path

from bench.config import TrialConfig
from bench.data import load
from bench.data.synthetic import ball_sums, depth_markers
from bench.errors import ConfigError
from bench.trial import run_trial

OPTIONS = {"num_nodes": 300, "avg_degree": 4, "shortcut_prob": 0.2, "num_tasks": 4,
           "label_noise": 0.0}  # fmt: skip


def _distances(edge_index: torch.Tensor, n: int) -> torch.Tensor:
    src, dst = edge_index.numpy()
    adj = csr_matrix(([1.0] * src.size, (src, dst)), shape=(n, n))
    return torch.from_numpy(shortest_path(adj, unweighted=True))


@pytest.mark.parametrize("k", [1, 3])
def test_labels_are_markers_within_k_hops(k: int) -> None:
    ds = load("synthetic-proteins", depth_task=k, **OPTIONS)
    n, tasks = OPTIONS["num_nodes"], OPTIONS["num_tasks"]
    markers = ds.data.x[:, -tasks:]
    assert torch.equal(markers, depth_markers(n, tasks, 0))  # the inputs carry the markers
    dist = _distances(ds.data.edge_index, n)
    within = ((dist >= 1) & (dist <= k)).double()
    assert torch.equal(ds.data.y, ((within @ markers.double()) > 0).float())
    # nothing beyond k hops matters: markers moved on nodes farther than k from node 0
    # leave node 0's labels as they were
    far = dist[0] > k
    moved = markers.clone()
    moved[far] = 1.0 - moved[far]
    assert torch.equal((ball_sums(ds.data.edge_index, n, k, moved)[0] > 0).float(), ds.data.y[0])
    assert 0.05 < float(ds.data.y.mean()) < 0.95


def test_needed_depth_is_k_for_an_oracle() -> None:
    """The markers within L hops (what L message-passing layers can see) give the labels
    exactly at L = k only: fewer hops miss markers, more hops add markers that do not count."""
    k = 3
    ds = load("synthetic-proteins", depth_task=k, **OPTIONS)
    ei, tasks = ds.data.edge_index, OPTIONS["num_tasks"]
    markers = ds.data.x[:, -tasks:]
    for hops in range(1, k + 2):
        exact = torch.equal((ball_sums(ei, markers.size(0), hops, markers) > 0).float(), ds.data.y)
        assert exact == (hops == k)


def test_bad_options_name_dataset_options() -> None:
    with pytest.raises(ConfigError, match="depth_task"):
        load("synthetic-proteins", depth_task=-1)
    with pytest.raises(ConfigError, match="num_nodes"):
        load("synthetic-proteins", depth_task=2, num_nodes=60_000)


def test_default_graph_is_unchanged_by_the_option() -> None:
    a = load("synthetic-proteins", num_nodes=300, avg_degree=6)
    b = load("synthetic-proteins", num_nodes=300, avg_degree=6, depth_task=0)
    assert torch.equal(a.data.y, b.data.y) and torch.equal(a.data.x, b.data.x)


def test_a_model_shallower_than_k_scores_worse() -> None:
    # measured at this seed: 1 layer 0.731, 2 layers 0.846 test ROC-AUC
    options = {"num_nodes": 600, "avg_degree": 4, "shortcut_prob": 0.2, "depth_task": 2,
               "num_tasks": 2, "label_noise": 0.0}  # fmt: skip
    base = TrialConfig(arch="res", channels=32, epochs=100, lr=0.03, dropout=0.0,
                       batching="full", train_parts=1, eval_parts=1, seed=0,
                       dataset_options=options)  # fmt: skip
    shallow, deep = (run_trial(base.replace(layers=layers)) for layers in (1, 2))
    assert shallow.status == deep.status == "ok"
    assert deep.test_at_best_valid > shallow.test_at_best_valid + 0.05
