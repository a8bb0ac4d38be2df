"""Real offline graphs from the shared folder, loaded from a temporary working copy."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch
from torch_geometric.utils import is_undirected

from bench.data import load
from bench.data.paths import shared_root
from bench.data.real import per_class_split
from bench.errors import ConfigError, DataError

SHARED = shared_root()
pytestmark = pytest.mark.skipif(
    SHARED is None or not (SHARED / "Planetoid").is_dir(),
    reason="no shared data folder (set BENCH_SHARED_DATA)",
)


@pytest.fixture(autouse=True)
def work_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("BENCH_WORK_DIR", str(tmp_path / "work"))
    return tmp_path / "work"


def _tree_mtimes(folder: Path) -> dict[str, float]:
    return {str(p): p.stat().st_mtime for p in folder.rglob("*")}


def test_cora_public_split_and_sizes(work_dir: Path) -> None:
    before = _tree_mtimes(SHARED / "Planetoid")
    ds = load("cora")
    d = ds.data
    assert (d.num_nodes, d.edge_index.shape[1], ds.num_features, ds.num_outputs) == (
        2708,
        10556,
        1433,
        7,
    )
    assert [len(ds.split[k]) for k in ("train", "valid", "test")] == [140, 500, 1000]
    assert ds.edge_dim is None and ds.metric == "acc"
    assert (work_dir / "Planetoid/Cora/processed").is_dir()
    assert _tree_mtimes(SHARED / "Planetoid") == before  # shared folder untouched
    rnd = load("cora", split="random", seed=3)
    assert len(rnd.split["train"]) == round(0.6 * 2708)
    with pytest.raises(ConfigError, match="split"):
        load("cora", split="per-class")


def test_blogcatalog_multilabel_structural_inputs() -> None:
    ds = load("blogcatalog", pe_dim=4)
    d = ds.data
    assert (d.num_nodes, d.edge_index.shape[1], d.y.shape) == (10312, 667966, (10312, 39))
    assert is_undirected(d.edge_index) and d.edge_attr is None
    assert ds.num_features == 3 + 4 and torch.isfinite(d.x).all()
    assert (d.y.sum(1) >= 1).all() and ds.metric == "rocauc"
    deg = torch.bincount(d.edge_index[0], minlength=d.num_nodes).float()
    assert torch.allclose(d.x[:, 0], torch.log1p(deg))
    assert torch.equal(load("blogcatalog", pe_dim=4).data.x, d.x)  # deterministic features
    # a degree-only scorer is informative but far from perfect on the test split
    test = ds.split["test"]
    assert 0.5 < ds.evaluate(d.y[test], d.x[test, :1].repeat(1, 39)) < 0.9


def test_amazon_photo_and_per_class_split() -> None:
    ds = load("amazon-photo", split="per-class", seed=1)
    d = ds.data
    assert (d.num_nodes, d.edge_index.shape[1], ds.num_features, ds.num_outputs) == (
        7650,
        238162,
        745,
        8,
    )
    counts = torch.bincount(d.y[ds.split["train"]], minlength=8)
    assert (counts == 20).all()
    assert len(ds.split["valid"]) == 30 * 8
    assert len(ds.split["test"]) == 7650 - 50 * 8


def test_per_class_split_disjoint_and_covering() -> None:
    y = torch.arange(100) % 4
    split = per_class_split(y, seed=0, train=5, valid=5)
    ids = torch.cat(list(split.values()))
    assert torch.equal(ids.sort().values, torch.arange(100))


def test_missing_file_named(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BENCH_SHARED_DATA", str(tmp_path / "empty"))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.setenv("BENCH_OFFLINE", "1")
    with pytest.raises(DataError) as err:
        load("coauthor-cs")
    assert "ms_academic_cs.npz" in str(err.value) and str(tmp_path / "empty") in str(err.value)
    assert "downloading is off" in str(err.value)


def test_an_explicit_data_root_is_authoritative(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A dataset missing from ``--data-root`` is an error naming that folder, even where the
    local data folder holds it and downloads are on: no silent fallback."""
    from bench.config import TrialConfig
    from bench.data.download import files_of
    from bench.harness.preflight import check_dataset, requirements

    shared = tmp_path / "shared"
    for name in files_of("cora"):
        (shared / name).parent.mkdir(parents=True, exist_ok=True)
        (shared / name).write_bytes(b"")
    monkeypatch.setenv("BENCH_SHARED_DATA", str(shared))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.delenv("BENCH_OFFLINE", raising=False)
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(DataError) as err:
        load("cora", root=str(empty))
    assert f"not in --data-root {empty}" in str(err.value) and "shared" not in str(err.value)
    need = next(r for r in requirements(TrialConfig(dataset="cora", data_root=str(empty)))
                if r.kind == "dataset")  # fmt: skip
    problem = check_dataset(need)
    assert problem is not None and str(empty) in problem.line()
    assert check_dataset(next(r for r in requirements(TrialConfig(dataset="cora"))
                              if r.kind == "dataset")) is None  # fmt: skip


@pytest.mark.skipif(os.environ.get("BENCH_ALL_REAL") != "1", reason="set BENCH_ALL_REAL=1")
@pytest.mark.parametrize(
    "name,nodes,edges,classes",
    [
        ("citeseer", 3327, 9104, 6),
        ("amazon-computers", 13752, 491722, 10),
        ("coauthor-cs", 18333, 163788, 15),
        ("coauthor-physics", 34493, 495924, 5),
    ],
)
def test_other_real_sizes(name: str, nodes: int, edges: int, classes: int) -> None:
    ds = load(name)
    assert (ds.data.num_nodes, ds.data.edge_index.shape[1], ds.num_outputs) == (
        nodes,
        edges,
        classes,
    )
