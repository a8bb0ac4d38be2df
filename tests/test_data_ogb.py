"""OGB path: tiny folders in OGB's exact on-disk layout, read by the real ``ogb`` code, offline."""

from __future__ import annotations

import socket
import urllib.request
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from bench.data import load
from bench.data.features import proteins_node_features
from bench.errors import DataError

N_PROT, N_ARXIV = 30, 40


def _csv(path: Path, rows: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    pd.DataFrame(rows).to_csv(path, header=False, index=False, compression="gzip")


def make_proteins(root: Path, n: int = N_PROT, seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    folder = root / "ogbn_proteins"
    edges = np.array([(u, v) for u in range(n) for v in range(u + 1, n) if rng.random() < 0.2])
    feat = rng.random((len(edges), 8)).round(3)
    labels = (rng.random((n, 112)) < 0.3).astype(int)
    species = rng.choice([3702, 4932, 9606], size=(n, 1))
    (folder).mkdir(parents=True)
    (folder / "RELEASE_v1.txt").write_text("fixture\n")
    _csv(folder / "raw/edge.csv.gz", edges)
    _csv(folder / "raw/edge-feat.csv.gz", feat)
    _csv(folder / "raw/node-label.csv.gz", labels)
    _csv(folder / "raw/node_species.csv.gz", species)
    _csv(folder / "raw/num-node-list.csv.gz", np.array([[n]]))
    _csv(folder / "raw/num-edge-list.csv.gz", np.array([[len(edges)]]))
    perm = rng.permutation(n)
    for name, part in zip(
        ("train", "valid", "test"), np.split(perm, [n // 2, 3 * n // 4]), strict=True
    ):
        _csv(folder / f"split/species/{name}.csv.gz", part[:, None])
    return {"edges": edges, "feat": feat, "labels": labels, "species": species, "perm": perm}


def make_arxiv(root: Path, n: int = N_ARXIV, seed: int = 1) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    folder = root / "ogbn_arxiv"
    edges = rng.integers(0, n, (3 * n, 2))
    edges = edges[edges[:, 0] != edges[:, 1]]
    folder.mkdir(parents=True)
    (folder / "RELEASE_v1.txt").write_text("fixture\n")
    _csv(folder / "raw/edge.csv.gz", edges)
    _csv(folder / "raw/node-feat.csv.gz", rng.standard_normal((n, 128)).round(4))
    _csv(folder / "raw/node-label.csv.gz", rng.integers(0, 40, (n, 1)))
    _csv(folder / "raw/node_year.csv.gz", rng.integers(2010, 2020, (n, 1)))
    _csv(folder / "raw/num-node-list.csv.gz", np.array([[n]]))
    _csv(folder / "raw/num-edge-list.csv.gz", np.array([[len(edges)]]))
    for name, part in zip(
        ("train", "valid", "test"), np.split(np.arange(n), [20, 30]), strict=True
    ):
        _csv(folder / f"split/time/{name}.csv.gz", part[:, None])
    return {"edges": edges}


@pytest.fixture
def offline(monkeypatch: pytest.MonkeyPatch) -> None:
    """Any network attempt fails the test loudly."""

    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError(f"network access attempted: {args!r}")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
    monkeypatch.setattr(urllib.request, "urlopen", refuse)
    monkeypatch.setattr("builtins.input", refuse)  # ogb's prompts must never be reached


def test_proteins_fixture_through_ogb(tmp_path: Path, offline: None) -> None:
    facts = make_proteins(tmp_path)
    ds = load("ogbn-proteins", root=str(tmp_path))
    d = ds.data
    n_edges = len(facts["edges"])
    assert d.num_nodes == N_PROT and d.edge_index.shape == (2, 2 * n_edges)  # ogb adds inverses
    assert (ds.task, ds.metric, ds.edge_dim, ds.num_outputs) == ("multilabel", "rocauc", 8, 112)
    assert d.y.dtype == torch.float32 and torch.equal(d.y, torch.tensor(facts["labels"]).float())
    # node input: summed incident edge features (both directions present) + one-hot species
    agg = np.zeros((N_PROT, 8))
    for (u, v), f in zip(facts["edges"], facts["feat"], strict=True):
        agg[u] += f
        agg[v] += f
    assert torch.allclose(d.x[:, :8], torch.tensor(agg, dtype=torch.float32), atol=1e-5)
    species = torch.tensor(facts["species"][:, 0])
    assert torch.equal(d.x, proteins_node_features(d.edge_index, d.edge_attr, species, N_PROT))
    assert ds.num_features == 8 + 3
    assert torch.equal(ds.split["train"], torch.tensor(facts["perm"][: N_PROT // 2]))
    assert (tmp_path / "ogbn_proteins/processed/geometric_data_processed.pt").is_file()
    again = load("ogbn-proteins", root=str(tmp_path), node_aggr="mean")  # from processed/
    deg = torch.bincount(d.edge_index[0], minlength=N_PROT).clamp_min(1)[:, None]
    assert torch.allclose(again.data.x[:, :8], d.x[:, :8] / deg, atol=1e-5)
    y, score = d.y[ds.split["test"]], torch.randn(len(ds.split["test"]), 112)
    assert 0.0 < ds.evaluate(y, score) < 1.0


def test_arxiv_fixture_made_undirected(tmp_path: Path, offline: None, monkeypatch) -> None:
    facts = make_arxiv(tmp_path)
    monkeypatch.setenv("BENCH_DATA_ROOT", str(tmp_path))  # root from the environment
    ds = load("ogbn-arxiv")
    d = ds.data
    assert (ds.task, ds.metric, ds.edge_dim) == ("multiclass", "acc", None)
    assert ds.num_outputs == 40 and d.y.dtype == torch.long and d.x.shape == (N_ARXIV, 128)
    pairs = {tuple(e) for e in facts["edges"].tolist()}
    pairs |= {(v, u) for u, v in pairs}
    assert set(map(tuple, d.edge_index.t().tolist())) == pairs
    assert [len(ds.split[k]) for k in ("train", "valid", "test")] == [20, 10, 10]
    assert ds.evaluate(d.y, torch.nn.functional.one_hot(d.y, 40).float()) == 1.0


def test_missing_files_named_without_prompt_or_network(tmp_path: Path, offline: None) -> None:
    with pytest.raises(DataError) as err:
        load("ogbn-proteins", root=str(tmp_path))
    msg = str(err.value)
    assert "RELEASE_v1.txt" in msg and "raw/edge-feat.csv.gz" in msg and "proteins.zip" in msg
    assert str(tmp_path / "ogbn_proteins") in msg

    make_proteins(tmp_path)  # now a truncated folder: no RELEASE file, one raw file gone
    (tmp_path / "ogbn_proteins/RELEASE_v1.txt").unlink()
    (tmp_path / "ogbn_proteins/raw/edge-feat.csv.gz").unlink()
    (tmp_path / "ogbn_proteins/split/species/test.csv.gz").unlink()
    with pytest.raises(DataError) as err:
        load("ogbn-proteins", root=str(tmp_path))
    msg = str(err.value)
    assert "3 file(s) missing" in msg and "split/species/test.csv.gz" in msg
    assert "raw/edge.csv.gz" not in msg.split("missing under")[1].split(". To fix")[0]
    assert (tmp_path / "ogbn_proteins/raw/edge.csv.gz").is_file()  # nothing was deleted


def test_download_refused_when_server_unreachable(tmp_path: Path, monkeypatch) -> None:
    def unreachable(*args: object, **kwargs: object) -> None:
        raise OSError("network is unreachable")

    monkeypatch.setattr(socket, "create_connection", unreachable)
    with pytest.raises(DataError, match="not reachable"):
        load("ogbn-arxiv", root=str(tmp_path / "fresh"), download=True)
