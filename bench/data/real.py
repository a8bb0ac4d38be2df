"""Real graphs, from a local data folder (read-only; never written to) or downloaded into the
cache (:mod:`bench.data.download` says where they are found and how they are fetched).

Their PyG loaders write ``processed/`` next to ``raw/``, so each dataset's raw files are copied
once into ``paths.work_dir()`` (``~/.cache/gnn1000-bench/work`` or ``$BENCH_WORK_DIR``) and
loaded from there, under a file lock so parallel trial processes do not race.

Splits (all seeded by the ``seed`` option, documented here because none but Planetoid's are
official):

* ``cora``, ``citeseer``: ``split="public"`` (Planetoid's 20 per class / 500 / 1000), or
  ``"random"``: 60/20/20.
* ``amazon-*``, ``coauthor-*``: ``split="random"`` 60/20/20 (default), or ``"per-class"``:
  20 per class train, 30 per class valid, the rest test (Shchur et al.'s protocol).
* ``blogcatalog``: ``split="random"`` 60/20/20. No node features exist; its inputs are
  structural and deterministic: log(1 + degree), mean and max
  log(1 + degree) of the neighbours, and ``pe_dim`` Laplacian eigenvectors (the leading
  non-trivial eigenvectors of D^-1/2 A D^-1/2, sign fixed so the largest entry is positive).
  ``pe_dim`` defaults to 64: the spectral "social dimensions" of the dataset's own paper (Tang
  and Liu, KDD 2009); with 8 a 4-layer ResGNN reached validation ROC-AUC 0.52 after 15 epochs,
  with 64 it reached 0.58 (max aggregation) to 0.60 (mean). No edge features (``edge_attr`` is None). Multi-label (39 groups), ROC-AUC like proteins.
"""

from __future__ import annotations

import contextlib
import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import torch
from torch import Tensor
from torch_geometric.data import Data

from bench.data.base import GraphDataset, build_dataset, random_split
from bench.data.dataset_spec import DatasetSpec
from bench.data.paths import work_dir


def _source_file(spec: DatasetSpec, root: str | None) -> Path:
    """The dataset's first file, found (or downloaded) as :mod:`bench.data.download` says."""
    from bench.data.download import ensure

    return ensure(spec.name, root, spec.files) / spec.files[0]


@contextlib.contextmanager
def _locked(folder: Path) -> Iterator[None]:
    """Exclusive lock on ``folder`` (POSIX), so concurrent trials copy/process once."""
    folder.mkdir(parents=True, exist_ok=True)
    try:
        import fcntl
    except ImportError:  # pragma: no cover - non-POSIX: no lock
        yield
        return
    with open(folder / ".lock", "w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _copy_raw(src_raw: Path, dst_raw: Path) -> None:
    """Copy every file of ``src_raw`` missing (or of a different size) in ``dst_raw``."""
    dst_raw.mkdir(parents=True, exist_ok=True)
    for f in sorted(src_raw.iterdir()):
        target = dst_raw / f.name
        if f.is_file() and (not target.is_file() or target.stat().st_size != f.stat().st_size):
            tmp = target.with_suffix(target.suffix + ".part")
            shutil.copyfile(f, tmp)
            os.replace(tmp, target)


def per_class_split(y: Tensor, seed: int, train: int = 20, valid: int = 30) -> dict[str, Tensor]:
    """``train``/``valid`` nodes per class at random, the rest test (seeded)."""
    gen = torch.Generator().manual_seed(seed + 104729)
    parts: dict[str, list[Tensor]] = {"train": [], "valid": [], "test": []}
    for c in torch.unique(y):
        idx = (y == c).nonzero().view(-1)
        idx = idx[torch.randperm(idx.numel(), generator=gen)]
        parts["train"].append(idx[:train])
        parts["valid"].append(idx[train : train + valid])
        parts["test"].append(idx[train + valid :])
    return {k: torch.cat(v).sort().values for k, v in parts.items()}


def _pyg_dataset(
    spec: DatasetSpec, root: str | None, cls_name: str, family: str
) -> tuple[Data, Path]:
    """Copy ``<family>/<Name>/raw`` to the work dir and load it with the PyG dataset class."""
    import torch_geometric.datasets as pyg_datasets

    src = _source_file(spec, root)
    name = spec.extra["pyg_name"]
    work = work_dir() / family
    with _locked(work / name):
        _copy_raw(src.parent, work / name / "raw")
        if cls_name == "Amazon":  # Amazon's raw dir is <root>/<name.capitalize()>/raw
            assert name == name.capitalize()
        dataset = getattr(pyg_datasets, cls_name)(str(work), name)
    return dataset[0], src


def load_planetoid(spec: DatasetSpec, root: str | None, *, split: str, seed: int) -> GraphDataset:
    raw, src = _pyg_dataset(spec, root, "Planetoid", "Planetoid")
    n = int(raw.num_nodes)
    if split == "public":
        parts = {
            "train": raw.train_mask.nonzero().view(-1),
            "valid": raw.val_mask.nonzero().view(-1),
            "test": raw.test_mask.nonzero().view(-1),
        }
    else:
        parts = random_split(n, seed)
    data = Data(x=raw.x.float(), edge_index=raw.edge_index, y=raw.y.long(), num_nodes=n)
    return build_dataset(spec, data, parts, src.parent.parent, split_rule=split)


def load_shchur(spec: DatasetSpec, root: str | None, *, split: str, seed: int) -> GraphDataset:
    family = spec.extra["family"]
    raw, src = _pyg_dataset(spec, root, family, family)
    n = int(raw.num_nodes)
    y = raw.y.long()
    parts = random_split(n, seed) if split == "random" else per_class_split(y, seed)
    data = Data(x=raw.x.float(), edge_index=raw.edge_index, y=y, num_nodes=n)
    return build_dataset(spec, data, parts, src.parent.parent, split_rule=split)


def structural_features(edge_index: Tensor, num_nodes: int, pe_dim: int) -> Tensor:
    """[N, 3 + pe_dim]: log-degree, neighbours' mean and max log-degree, Laplacian PEs.

    (Clustering coefficients would be natural but cost ~20 s here: BlogCatalog has hubs.)
    """
    import scipy.sparse as sp
    from scipy.sparse.linalg import eigsh

    row, col = edge_index.numpy()
    adj = sp.csr_matrix((np.ones(row.size), (row, col)), shape=(num_nodes, num_nodes))
    adj.data[:] = 1.0  # binary, even if an edge was listed twice
    deg = np.asarray(adj.sum(1)).ravel()
    logdeg = np.log1p(deg)
    nbr_logdeg = np.divide(adj @ logdeg, deg, out=np.zeros_like(deg), where=deg > 0)
    # max over neighbours: per row of the CSR matrix, the largest neighbour log-degree
    weighted = adj.multiply(logdeg[None, :]).tocsr()
    nbr_max = np.asarray(weighted.max(axis=1).todense()).ravel()
    columns = [logdeg, nbr_logdeg, nbr_max]
    if pe_dim > 0:
        inv_sqrt = np.divide(1.0, np.sqrt(deg), out=np.zeros_like(deg), where=deg > 0)
        norm_adj = sp.diags(inv_sqrt) @ adj @ sp.diags(inv_sqrt)
        v0 = np.random.default_rng(0).standard_normal(num_nodes)  # deterministic Lanczos start
        vals, vecs = eigsh(norm_adj, k=pe_dim + 1, which="LA", v0=v0, tol=1e-6)
        vecs = vecs[:, np.argsort(-vals)][:, 1:]  # drop the trivial top eigenvector
        signs = np.sign(vecs[np.abs(vecs).argmax(0), np.arange(pe_dim)])
        vecs = vecs * signs * np.sqrt(num_nodes)  # unit-variance-ish scale
        columns.extend(vecs.T)
    return torch.from_numpy(np.stack(columns, axis=1)).float()


def load_blogcatalog(
    spec: DatasetSpec, root: str | None, *, split: str, seed: int, pe_dim: int
) -> GraphDataset:
    from scipy.io import loadmat

    src = _source_file(spec, root)
    mat = loadmat(str(src))
    adj = mat["network"].tocoo()
    n = int(adj.shape[0])
    edge_index = torch.from_numpy(np.stack([adj.row, adj.col])).long()
    from torch_geometric.utils import coalesce

    edge_index = coalesce(edge_index, num_nodes=n)
    y = torch.from_numpy(np.asarray(mat["group"].todense())).float()
    x = structural_features(edge_index, n, pe_dim)
    data = Data(x=x, edge_index=edge_index, y=y, num_nodes=n)
    return build_dataset(
        spec,
        data,
        random_split(n, seed),
        src,
        split_rule=split,
        node_inputs=f"log-degree, neighbour mean/max log-degree, {pe_dim} Laplacian PEs",
    )
