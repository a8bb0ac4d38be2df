"""``DatasetSpec``: the static facts about one registered dataset, enough to list it, find its
files and say where it comes from without loading it.

Its own module because two sides need it: the table of datasets (:mod:`bench.data.registry`,
which imports the graph-file checks) and the loaders' common shape (:mod:`bench.data.base`,
which those checks import). Kept free of torch/PyG imports, as the registry is.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench.data.paths import ogb_root, work_dir

# Generated graphs with at least this many expected directed edges are cached on disk
# (``bench.data.cache``); smaller ones regenerate in well under a second.
CACHE_MIN_EDGES = 2_000_000


@dataclass(frozen=True)
class DatasetSpec:
    """Static facts about one dataset (enough to list it without loading it)."""

    name: str
    task: str  # "multilabel" | "multiclass"
    metric: str  # "rocauc" | "acc"
    loader: str  # "module:function" under bench.data, called as fn(root, **options)
    options: dict[str, Any]  # option name -> default
    kind: str  # "ogb" | "shared" (a real graph: local folder, cache or download) | "generated"
    files: tuple[str, ...] = ()  # paths relative to the data root that must exist
    nodes: int | None = None
    edges: int | None = None  # directed edges as the loader returns them (both directions)
    description: str = ""
    # whether the graph carries edge features (convs that cannot read them refuse it: config)
    edge_features: bool = False
    extra: dict[str, Any] = field(default_factory=dict)
    # the options' rules (bench.data.options): each value's type and range, given all options
    # with defaults filled in; a ConfigError("dataset_options", ...) names the one at fault
    rules: Callable[[dict[str, Any]], None] | None = None

    def root(self, root: str | None = None) -> Path | None:
        """The folder this dataset is read from (None: generated, or a real graph not here)."""
        if self.kind == "ogb":
            return ogb_root(root)
        if self.kind == "shared":
            from bench.data.download import locate

            return locate(self.name, root, self.files)
        return None

    def available(self, root: str | None = None) -> bool:
        """Whether loading would find its files here (generated data is always available)."""
        if self.kind == "generated":
            return True
        base = self.root(root)
        if base is None:
            return False
        return all(_exists_any(base, f) for f in self.files)

    def location(self, root: str | None = None) -> str:
        if self.kind == "generated":
            if (self.edges or 0) >= CACHE_MIN_EDGES:
                return f"generated (seeded), cached in {work_dir() / 'generated'}"
            return "generated (seeded, in memory)"
        base = self.root(root)
        if base is None:  # a real graph in none of the folders searched
            from bench.data.download import describe_source, downloads_allowed

            if downloads_allowed():
                return f"downloaded on first use ({describe_source(self.name)})"
            return (
                "not here and downloading is off (BENCH_OFFLINE): point BENCH_SHARED_DATA at "
                "a local data folder"
            )
        first = self.files[0].split("|")[0]
        # ogb: the dataset folder (ogbn_x); real graphs: the folder holding the file (or its raw/)
        folder = Path(first).parent
        if folder.name == "raw":
            folder = folder.parent
        return str(base / folder)


def _exists_any(base: Path, pattern: str) -> bool:
    """``a|b`` means either file will do (e.g. OGB's ``ogbn_x`` or ``ogbn_x_pyg`` folder)."""
    return any((base / alt).exists() for alt in pattern.split("|"))
