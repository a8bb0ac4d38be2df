"""Datasets: registry, synthetic-proteins, node features, evaluators, partitioner, catalog."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from sklearn.metrics import accuracy_score, roc_auc_score
from torch_geometric.data import Data
from torch_geometric.utils import is_undirected

from bench.data import dataset_names, load
from bench.data.evaluate import accuracy, rocauc
from bench.data.features import aggregate_edge_features, proteins_node_features
from bench.data.partition import partition_batches, random_partition
from bench.errors import ConfigError
from bench.models import ModelConfig

SMALL = {"num_nodes": 400, "avg_degree": 12, "num_tasks": 6, "num_species": 4}


# --- registry ---------------------------------------------------------------------------------
def test_names_cheap_and_complete() -> None:
    names = dataset_names()
    for name in ("synthetic-proteins", "ogbn-proteins", "ogbn-arxiv", "ogbn-products", "cora"):
        assert name in names
    # importing bench.data (as TrialConfig.validated does) must not pull in torch
    code = "import sys, bench.data; bench.data.dataset_names(); print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_unknown_dataset_lists_known() -> None:
    with pytest.raises(ConfigError) as err:
        load("ogbn-protein")
    assert err.value.field == "dataset"
    assert "synthetic-proteins" in err.value.message and "ogbn-proteins" in err.value.message


def test_unknown_option_names_dataset_options() -> None:
    with pytest.raises(ConfigError) as err:
        load("synthetic-proteins", num_node=10)
    assert err.value.field == "dataset_options"
    assert "num_node" in err.value.message and "num_nodes" in err.value.message


@pytest.mark.parametrize(
    "options", [{"num_nodes": 0}, {"label_noise": 0.7}, {"split": "time"}, {"node_aggr": "min"}]
)
def test_bad_synthetic_option_values(options: dict) -> None:
    with pytest.raises(ConfigError) as err:
        load("synthetic-proteins", **options)
    assert err.value.field == "dataset_options"
    assert next(iter(options)) in err.value.message


# --- synthetic-proteins -----------------------------------------------------------------------
def test_synthetic_shape_and_reproducibility() -> None:
    ds = load("synthetic-proteins", **SMALL)
    d = ds.data
    assert (ds.task, ds.metric, ds.edge_dim, ds.num_outputs) == ("multilabel", "rocauc", 8, 6)
    assert ds.num_features == 8 + 4 and d.x.dtype == torch.float32
    assert d.y.dtype == torch.float32 and set(d.y.unique().tolist()) <= {0.0, 1.0}
    assert is_undirected(d.edge_index, d.edge_attr, num_nodes=d.num_nodes)
    assert not (d.edge_index[0] == d.edge_index[1]).any()
    assert ((d.edge_attr > 0) & (d.edge_attr < 1)).all()
    # node input is exactly [summed incident edge features | one-hot species]
    expected = proteins_node_features(d.edge_index, d.edge_attr, d.species, d.num_nodes, "add")
    assert torch.equal(d.x, expected)
    ids = torch.cat(list(ds.split.values()))
    assert ids.numel() == d.num_nodes and ids.unique().numel() == d.num_nodes
    again = load("synthetic-proteins", **SMALL)
    assert torch.equal(again.data.edge_index, d.edge_index) and torch.equal(again.data.y, d.y)
    other = load("synthetic-proteins", **SMALL, seed=1)
    assert not torch.equal(other.data.y, d.y)
    assert ds.info["source"] == "generated" and ds.info["nodes"] == 400


def test_synthetic_species_split() -> None:
    ds = load("synthetic-proteins", **SMALL, split="species")
    sp = ds.data.species
    assert set(sp[ds.split["test"]].tolist()) == {3} and set(sp[ds.split["valid"]].tolist()) == {2}
    assert set(sp[ds.split["train"]].tolist()) == {0, 1}


def test_synthetic_labels_need_the_graph() -> None:
    """Tasks are learnable but noisy: neither trivial (constant) nor saturated."""
    ds = load("synthetic-proteins", **SMALL)
    rates = ds.data.y.mean(0)
    assert (rates > 0.05).all() and (rates < 0.6).all()


# --- node features ----------------------------------------------------------------------------
def test_proteins_aggregation_hand_computed() -> None:
    # path 0 - 1 - 2 stored in both directions; node 3 isolated
    edge_index = torch.tensor([[0, 1, 1, 2], [1, 0, 2, 1]])
    attr = torch.tensor([[1.0, 0.0], [1.0, 0.0], [0.2, 0.6], [0.2, 0.6]])
    add = aggregate_edge_features(edge_index, attr, 4, "add")
    assert torch.allclose(add, torch.tensor([[1.0, 0.0], [1.2, 0.6], [0.2, 0.6], [0.0, 0.0]]))
    mean = aggregate_edge_features(edge_index, attr, 4, "mean")
    assert torch.allclose(mean, torch.tensor([[1.0, 0.0], [0.6, 0.3], [0.2, 0.6], [0.0, 0.0]]))
    mx = aggregate_edge_features(edge_index, attr, 4, "max")
    assert torch.allclose(mx, torch.tensor([[1.0, 0.0], [1.0, 0.6], [0.2, 0.6], [0.0, 0.0]]))
    species = torch.tensor([3702, 9606, 3702, 10090])  # taxonomy ids -> one-hot in sorted order
    x = proteins_node_features(edge_index, attr, species, 4, "add")
    assert torch.equal(x[:, 2:], torch.tensor([[1.0, 0, 0], [0, 1, 0], [1, 0, 0], [0, 0, 1]]))


# --- evaluators -------------------------------------------------------------------------------
def test_rocauc_matches_sklearn_and_skips_one_class_tasks() -> None:
    rng = np.random.default_rng(0)
    y = (rng.random((200, 5)) < 0.3).astype(np.float32)
    y[:, 4] = 0.0  # only negatives: OGB leaves such a task out of the mean
    logits = rng.standard_normal((200, 5)) + 1.5 * y
    expected = np.mean([roc_auc_score(y[:, t], logits[:, t]) for t in range(4)])
    assert rocauc(torch.from_numpy(y), torch.from_numpy(logits)) == pytest.approx(expected)
    sigmoid = 1 / (1 + np.exp(-logits))  # raw logits and probabilities score the same
    assert rocauc(y, sigmoid) == pytest.approx(expected)


def test_rocauc_equals_ogb_proteins_evaluator() -> None:
    from bench.data.ogbcompat import import_ogb

    rng = np.random.default_rng(1)
    y = (rng.random((100, 112)) < 0.2).astype(np.float32)
    s = rng.standard_normal((100, 112)) + y
    ogb = import_ogb("ogb.nodeproppred").Evaluator("ogbn-proteins")
    assert rocauc(y, s) == pytest.approx(ogb.eval({"y_true": y, "y_pred": s})["rocauc"])


def test_accuracy_matches_sklearn() -> None:
    rng = np.random.default_rng(2)
    y = rng.integers(0, 7, 300)
    scores = rng.standard_normal((300, 7))
    scores[np.arange(300), y] += 1.0
    expected = accuracy_score(y, scores.argmax(1))
    assert accuracy(torch.from_numpy(y), torch.from_numpy(scores)) == pytest.approx(expected)
    ds = load("synthetic-proteins", **SMALL)
    assert ds.evaluate(ds.data.y, ds.data.y * 2 - 1) == pytest.approx(1.0)


# --- partitioner ------------------------------------------------------------------------------
@settings(max_examples=60, deadline=None)
@given(n=st.integers(1, 300), data=st.data(), seed=st.integers(0, 2**31 - 1))
def test_random_partition_properties(n: int, data: st.DataObject, seed: int) -> None:
    k = data.draw(st.integers(1, n))
    parts = random_partition(n, k, seed)
    assert len(parts) == k
    joined = torch.cat(parts)
    assert torch.equal(joined.sort().values, torch.arange(n))  # every node exactly once
    sizes = [p.numel() for p in parts]
    assert min(sizes) >= 1 and max(sizes) - min(sizes) <= 1
    assert all(torch.equal(a, b) for a, b in zip(parts, random_partition(n, k, seed), strict=True))


@settings(max_examples=30, deadline=None)
@given(
    n=st.integers(2, 60),
    m=st.integers(0, 300),
    k=st.integers(1, 6),
    seed=st.integers(0, 1000),
)
def test_partition_batches_are_induced_subgraphs(n: int, m: int, k: int, seed: int) -> None:
    k = min(k, n)
    gen = torch.Generator().manual_seed(seed)
    edge_index = torch.randint(0, n, (2, m), generator=gen)
    edge_attr = torch.arange(m, dtype=torch.float32)[:, None].repeat(1, 3)  # edge identity
    data = Data(
        x=torch.randn(n, 4, generator=gen),
        edge_index=edge_index,
        edge_attr=edge_attr,
        y=torch.arange(n),
        num_nodes=n,
    )
    data.train_mask = torch.rand(n, generator=gen) < 0.5
    batches = partition_batches(data, k, seed)
    owner = torch.empty(n, dtype=torch.long)
    for i, b in enumerate(batches):
        owner[b.n_id] = i
    kept = 0
    for b in batches:
        assert b.num_nodes == b.n_id.numel()
        assert torch.equal(b.x, data.x[b.n_id]) and torch.equal(b.y, data.y[b.n_id])
        assert torch.equal(b.train_mask, data.train_mask[b.n_id])
        if b.edge_index.numel():
            assert int(b.edge_index.min()) >= 0 and int(b.edge_index.max()) < b.num_nodes
        glob = b.n_id[b.edge_index]  # back to global ids: must be the original edges, same attrs
        original = edge_index[:, b.edge_attr[:, 0].long()]
        assert torch.equal(glob, original)
        kept += b.edge_index.shape[1]
    assert kept == int((owner[edge_index[0]] == owner[edge_index[1]]).sum())


def test_k_larger_than_nodes_refused() -> None:
    with pytest.raises(ConfigError) as err:
        random_partition(5, 6, 0)
    assert err.value.field == "train_parts" and "5 nodes" in err.value.message
    data = Data(x=torch.zeros(3, 1), edge_index=torch.zeros(2, 0, dtype=torch.long), num_nodes=3)
    with pytest.raises(ConfigError) as err:
        partition_batches(data, 4, 0, field="eval_parts")
    assert err.value.field == "eval_parts"
    with pytest.raises(ConfigError):
        random_partition(5, 0, 0)


# --- catalog ----------------------------------------------------------------------------------
def test_catalog_lists_every_dataset(capsys: pytest.CaptureFixture[str], tmp_path) -> None:
    from bench.cli import main

    assert main(["datasets", "--json", "--data-root", str(tmp_path)]) == 0
    rows = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [r["name"] for r in rows] == dataset_names()
    by_name = {r["name"]: r for r in rows}
    assert by_name["synthetic-proteins"]["available"] is True
    assert by_name["ogbn-proteins"]["available"] is False  # empty root
    assert by_name["ogbn-proteins"]["location"] == str(tmp_path / "ogbn_proteins")
    assert by_name["ogbn-proteins"]["nodes"] == 132_534
    assert main(["datasets"]) == 0
    out = capsys.readouterr().out
    assert "ogbn-arxiv" in out and "multilabel/rocauc" in out


# --- learnability -----------------------------------------------------------------------------
@pytest.mark.slow
def test_synthetic_is_learnable_but_not_saturated() -> None:
    """A small res+ GENConv model beats chance clearly and stays well below a perfect score."""
    from torch import nn

    from bench.models.blocks import DeepGNN, ResPlusBlock

    class Res(DeepGNN):
        def __init__(self, ds, layers: int) -> None:
            config = ModelConfig(arch="res", channels=32)
            super().__init__(config, ds.num_features, ds.edge_dim, ds.num_outputs)
            self.blocks = nn.ModuleList(ResPlusBlock(config, 32, 32) for _ in range(layers))

        def body(self, h, edge_index, e):
            for block in self.blocks:
                h = h + block(h, edge_index, e)
            return h

    torch.manual_seed(0)
    ds = load("synthetic-proteins", num_nodes=1000, avg_degree=20, num_tasks=16)
    d, train = ds.data, ds.split["train"]
    model = Res(ds, 3)
    opt = torch.optim.Adam(model.parameters(), lr=5e-3)
    for _ in range(40):
        loss = nn.functional.binary_cross_entropy_with_logits(
            model(d.x, d.edge_index, d.edge_attr)[train], d.y[train]
        )
        opt.zero_grad()
        loss.backward()
        opt.step()
    model.eval()
    with torch.no_grad():
        out = model(d.x, d.edge_index, d.edge_attr)
    test = ds.split["test"]
    score = ds.evaluate(d.y[test], out[test])
    print(f"synthetic test ROC-AUC after 40 steps: {score:.3f}")
    assert 0.6 < score < 0.95, score


def test_registry_size_of_default_synthetic_is_current() -> None:
    from bench.data.registry import SPECS

    ds = load("synthetic-proteins")
    spec = SPECS["synthetic-proteins"]
    assert (ds.info["nodes"], ds.info["edges"]) == (spec.nodes, spec.edges)


def test_catalog_errors_go_to_stderr(capsys: pytest.CaptureFixture[str]) -> None:
    """An unknown dataset is one line on stderr (stdout stays clean for --json) and exit 2."""
    from bench.cli import main

    assert main(["datasets", "--json", "--dataset", "no-such-graph"]) == 2
    out, err = capsys.readouterr()
    assert out == ""
    assert err.startswith("error: --dataset") and "no-such-graph" in err and err.count("\n") == 1
