"""The paper's OGB node datasets, read by ``ogb`` from a local folder, never prompting or hanging.

Data root: ``root=`` / ``--data-root``, else ``$BENCH_DATA_ROOT``, else
``$XDG_CACHE_HOME/gnn1000-bench/ogb`` (``~/.cache/gnn1000-bench/ogb``). It holds OGB's own
layout, e.g. ``<root>/ogbn_proteins/{RELEASE_v1.txt, raw/, split/}``: unzip OGB's
``proteins.zip`` / ``arxiv.zip`` / ``products.zip`` there. The folder must be writable (``ogb``
writes ``processed/`` on first load).

A dataset folder that is absent is downloaded by ``ogb`` itself (from OGB's servers) while
downloads are on (the default; ``--offline`` / ``BENCH_OFFLINE=1`` turns them off, and the
dataset option ``download=true|false`` overrides the policy for one load). Missing files of a
folder that exists, or an absent folder with downloads off, raise ``DataError`` naming each file
and where it belongs, *before* ``ogb`` runs. That is
what keeps ``ogb`` away from its interactive paths: with a folder lacking ``RELEASE_v1.txt`` it
calls ``input()`` (and answering "y" deletes the folder), and with any raw file missing PyG
starts a download. With ``download=True`` the server is probed first (5 s timeout) and the
size prompt for large archives is answered "yes" (asking for the download is the consent).

Node inputs: arxiv/products use OGB's features (arxiv made undirected, as usual). Proteins has
none: ``x = [incident edge features aggregated by node_aggr (default add, the authors') |
one-hot species]`` (see ``features.py``); ``y`` is 112 binary tasks as float.
"""

from __future__ import annotations

import contextlib
import os
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import torch

from bench.data.base import GraphDataset, build_dataset
from bench.data.dataset_spec import DatasetSpec
from bench.data.features import proteins_node_features
from bench.data.ogbcompat import import_ogb
from bench.data.paths import ogb_root
from bench.errors import DataError

# Files ogb 1.3.6 + PyG 2.8 read. "a|b": either will do.
_RAW_ALWAYS = {  # PyG's raw_file_names: checked on every load, processed or not
    "ogbn-proteins": ("edge.csv.gz", "edge-feat.csv.gz"),
    "ogbn-arxiv": ("edge.csv.gz", "node-feat.csv.gz"),
    "ogbn-products": ("edge.csv.gz", "node-feat.csv.gz"),
}
_RAW_PROCESS = {  # read only while building processed/
    "ogbn-proteins": ("node-label.csv.gz", "node_species.csv.gz|species.csv.gz"),
    "ogbn-arxiv": ("node-label.csv.gz", "node_year.csv.gz"),
    "ogbn-products": ("node-label.csv.gz",),
}
_PROCESSED = "processed/geometric_data_processed.pt"
_URL_HOST_TIMEOUT_S = 5.0


def _import_ogb() -> Any:
    return import_ogb("ogb.nodeproppred.dataset_pyg")


def dataset_folder(spec: DatasetSpec, root: Path) -> Path:
    """``ogbn_<name>`` (or ``ogbn_<name>_pyg``, which ogb prefers when present)."""
    folder = spec.extra["folder"]
    pyg = root / f"{folder}_pyg"
    return pyg if pyg.is_dir() else root / folder


def missing_files(spec: DatasetSpec, folder: Path) -> list[str]:
    """Files (relative to ``folder``) that ogb would need but cannot find."""
    need = ["RELEASE_v1.txt", *(f"raw/{f}" for f in _RAW_ALWAYS[spec.name])]
    if not (folder / _PROCESSED).is_file():
        need += ["raw/num-node-list.csv.gz", "raw/num-edge-list.csv.gz"]
        need += [f"raw/{f}" for f in _RAW_PROCESS[spec.name]]
    split = f"split/{spec.extra['split']}"
    if not (folder / split / "split_dict.pt").is_file():
        need += [f"{split}/{part}.csv.gz" for part in ("train", "valid", "test")]
    return [f for f in need if not any((folder / alt).is_file() for alt in f.split("|"))]


def _url(spec: DatasetSpec) -> str:
    return f"http://snap.stanford.edu/ogb/data/nodeproppred/{spec.extra['folder'][5:]}.zip"


def _check_reachable(url: str) -> None:
    parsed = urlparse(url)
    host = parsed.hostname or ""
    port = parsed.port or (443 if parsed.scheme == "https" else 80)
    try:
        with socket.create_connection((host, port), timeout=_URL_HOST_TIMEOUT_S):
            pass
    except OSError as exc:
        raise DataError(
            f"the data is not here and downloading failed ({host} is not reachable: {exc}); to "
            f"fix: download {url} elsewhere and unzip it into the data root (--data-root / "
            "$BENCH_DATA_ROOT)"
        ) from exc


def _prepare(spec: DatasetSpec, root: Path, download: bool) -> None:
    """Raise DataError unless ogb can load ``spec`` from ``root`` without prompting."""
    folder = dataset_folder(spec, root)
    url = _url(spec)
    if download and not folder.exists():
        root.mkdir(parents=True, exist_ok=True)
        _check_reachable(url)
        return
    missing = missing_files(spec, folder)
    if missing:
        hint = (
            f"download {url} and unzip it into {root} (it creates {folder.name}/), point "
            "--data-root / $BENCH_DATA_ROOT at a folder that has it"
        )
        hint += (
            f", or remove the incomplete {folder} and pass download=True"
            if folder.exists()
            else ", or allow downloads (drop --offline / BENCH_OFFLINE=1) where the network is "
            "reachable"
        )
        raise DataError(
            f"{spec.name}: {len(missing)} file(s) missing under {folder}: "
            f"{', '.join(missing)}. To fix: {hint}."
        )
    if not (folder / _PROCESSED).is_file() and not os.access(folder, os.W_OK):
        raise DataError(
            f"{spec.name}: {folder} is read-only and has no processed/ yet; ogb must write "
            "processed/ on first load: copy the folder to a writable data root"
        )


def _allow_pyg_unpickling() -> None:
    """torch >= 2.6 loads with weights_only=True; ogb's processed file pickles a PyG Data."""
    from torch_geometric.data.data import DataEdgeAttr, DataTensorAttr
    from torch_geometric.data.storage import GlobalStorage

    torch.serialization.add_safe_globals([DataEdgeAttr, DataTensorAttr, GlobalStorage])


def load_ogb(
    spec: DatasetSpec, root: str | None, *, download: bool | None, node_aggr: str = "add"
) -> GraphDataset:
    """Load an ``ogbn-*`` dataset through ``ogb.nodeproppred.PygNodePropPredDataset``."""
    if download is None:  # the policy: on unless --offline / BENCH_OFFLINE=1
        from bench.data.download import downloads_allowed

        download = downloads_allowed()
    base = ogb_root(root)
    _prepare(spec, base, download)
    dataset_pyg = _import_ogb()
    _allow_pyg_unpickling()
    patch = (
        contextlib.nullcontext()
        if not download
        else _patched(dataset_pyg, "decide_download", lambda url: True)
    )
    with patch:
        ds = dataset_pyg.PygNodePropPredDataset(name=spec.name, root=str(base))
    raw = ds[0]
    split = {k: v.reshape(-1).long() for k, v in ds.get_idx_split().items()}
    n = int(raw.num_nodes)
    folder = dataset_folder(spec, base)

    from torch_geometric.data import Data

    if spec.name == "ogbn-proteins":
        species = raw.node_species.reshape(-1)
        x = proteins_node_features(raw.edge_index, raw.edge_attr, species, n, node_aggr)
        data = Data(
            x=x,
            edge_index=raw.edge_index,
            edge_attr=raw.edge_attr.float(),
            y=raw.y.float(),
            num_nodes=n,
        )
        data.species = species
    else:
        from torch_geometric.utils import to_undirected

        edge_index = raw.edge_index
        if spec.name == "ogbn-arxiv":
            edge_index = to_undirected(edge_index, num_nodes=n)
        data = Data(x=raw.x.float(), edge_index=edge_index, y=raw.y.reshape(-1).long(), num_nodes=n)
    return build_dataset(spec, data, split, folder)


@contextlib.contextmanager
def _patched(obj: Any, name: str, value: Any) -> Iterator[None]:
    old = getattr(obj, name)
    setattr(obj, name, value)
    try:
        yield
    finally:
        setattr(obj, name, old)
