"""Datasets: a registry of graphs, loaded into one ``GraphDataset`` shape.

``dataset_names()`` is cheap (no torch import). ``load(name, root=None, **options)`` returns a
``GraphDataset``; option names are per dataset (``python -m bench datasets`` lists them) and an
unknown one is a ``ConfigError("dataset_options", ...)``.

Datasets: ``synthetic-proteins`` (the embedded, seeded default), ``synthetic-depth`` (the
ground-truth depth task: labels that need exactly k message-passing hops), ``ogbn-proteins`` /
``ogbn-arxiv`` / ``ogbn-products`` (the paper's, read with ``ogb`` from a local root: ``root=``,
``$BENCH_DATA_ROOT`` or ``~/.cache/gnn1000-bench/ogb``; no download unless ``download=True``),
and real graphs that work offline from the shared data folder (``blogcatalog``, ``cora``,
``citeseer``, ``amazon-computers``, ``amazon-photo``, ``coauthor-cs``, ``coauthor-physics``).
A name that is a path ending in ``.pt`` is a graph file of your own (:mod:`bench.data.graph_file`:
the format, the checks, its content hash).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from bench.data.graph_file import is_graph_file
from bench.data.registry import dataset_names
from bench.data.registry import load as _load

if TYPE_CHECKING:
    from bench.data.base import GraphDataset

__all__ = ["GraphDataset", "dataset_names", "is_graph_file", "load"]


def load(name: str, root: str | None = None, **options: Any) -> GraphDataset:
    """Load a dataset by name. ``root`` overrides the dataset's data folder."""
    return _load(name, root, **options)


def __getattr__(attr: str) -> Any:
    # GraphDataset needs torch; import it only when asked for, so `import bench.data` stays cheap.
    if attr == "GraphDataset":
        from bench.data.base import GraphDataset

        return GraphDataset
    raise AttributeError(f"module 'bench.data' has no attribute {attr!r}")
