"""The dataset table: names, tasks, metrics, options and where each dataset comes from.

Kept free of torch/PyG imports: ``TrialConfig.validated()`` asks for ``dataset_names()`` before
anything heavy is loaded. The loaders themselves live in ``ogb_loader``, ``real``,
``synthetic`` and ``depth_task`` and are imported only when a dataset is loaded. A dataset
setting that is a path ending in ``.pt`` is not in the table: it is a graph file (``graph_file``).
"""

from __future__ import annotations

import importlib
from typing import Any

import bench.data.options as rules
from bench.data.dataset_spec import DatasetSpec
from bench.data.options import tree_size
from bench.errors import ConfigError

_OGB_DESC = {
    "ogbn-proteins": "protein association graph, 8 species, 8-dim edge features, 112 binary tasks",
    "ogbn-arxiv": "arXiv CS citation graph (made undirected), 128-dim features, 40 subject areas",
    "ogbn-products": "Amazon co-purchase graph, 100-dim features, 47 product categories",
}


def _ogb(name: str, task: str, metric: str, nodes: int, edges: int, split: str) -> DatasetSpec:
    folder = name.replace("-", "_")
    return DatasetSpec(
        name=name,
        task=task,
        metric=metric,
        loader="ogb_loader:load_ogb",
        options={"download": None} | ({"node_aggr": "add"} if name == "ogbn-proteins" else {}),
        kind="ogb",
        files=(f"{folder}/RELEASE_v1.txt",),
        nodes=nodes,
        edges=edges,
        description=_OGB_DESC[name],
        edge_features=name == "ogbn-proteins",
        extra={"split": split, "folder": folder},
        rules=rules.ogb,
    )


_REAL_SPLIT = {"split": "random", "seed": 0}
_PLANETOID = rules.real(("public", "random"))  # Planetoid's own split, or 60/20/20
_SHCHUR = rules.real(("random", "per-class"))  # 60/20/20, or Shchur et al.'s 20/30 per class
_SYNTHETIC = {
    "num_nodes": 3000,
    "avg_degree": 24,
    "num_tasks": 32,
    "num_species": 8,
    "hops": 6,
    "label_noise": 0.05,
    "shortcut_prob": 0.05,
    "node_aggr": "add",
    "split": "random",
    "seed": 0,
    "depth_task": 0,  # k > 0: labels from exactly k hops away (the known-depth task)
}

SPECS: dict[str, DatasetSpec] = {
    s.name: s
    for s in (
        DatasetSpec(
            name="synthetic-proteins",
            task="multilabel",
            metric="rocauc",
            loader="synthetic:load_synthetic",
            options=dict(_SYNTHETIC),
            kind="generated",
            nodes=3000,
            edges=71_994,  # with the default options
            description="seeded proteins-shaped multi-label graph; labels depend on up to 6-hop "
            "neighbourhoods (the CPU default). Option depth_task=k: the known-depth task, each "
            "label is 1 where a node 1..k hops away carries that task's visible marker, so "
            "exactly k layers are needed and nothing farther matters",
            edge_features=True,
            extra={"needed_hops": "depth_task", "size": "ring"},
            rules=rules.ring,
        ),
        DatasetSpec(
            name="synthetic-proteins-paper",
            task="multilabel",
            metric="rocauc",
            loader="synthetic:load_synthetic",
            options=_SYNTHETIC
            | {"num_nodes": 132_534, "avg_degree": 597, "num_tasks": 112, "split": "species"},
            kind="generated",
            nodes=132_534,
            edges=79_085_610,  # with the default options (ogbn-proteins: 79,122,504)
            description="synthetic-proteins at ogbn-proteins' sizes: 8 species, 8-dim edge "
            "features, 112 tasks, species split (for the paper's memory figures without the data)",
            edge_features=True,
            extra={"size": "ring"},
            rules=rules.ring,
        ),
        DatasetSpec(
            name="synthetic-depth",
            task="multilabel",
            metric="rocauc",
            loader="depth_task:load_depth_task",
            options={
                "depth": 4,
                "branching": 1,
                "num_trees": 1000,
                "noise_features": 0,
                "label_noise": 0.0,
                "seed": 0,
            },  # fmt: skip
            kind="generated",
            nodes=5_000,  # with the default options: 1,000 chains of 5 nodes
            edges=8_000,
            description="the ground-truth depth task: a forest of identical trees of depth k "
            "(option depth; branching 1 = chains), one marker at depth k in half of them, the "
            "root's label = whether its tree carries it. Needs exactly k message-passing hops: "
            "under k every root looks the same (ROC-AUC 0.5), at k the label is determined; "
            "option noise_features adds distractor inputs (then a high score needs learning)",
            extra={"needed_hops": "depth", "size": "forest"},
            rules=rules.forest,
        ),
        _ogb("ogbn-proteins", "multilabel", "rocauc", 132_534, 79_122_504, "species"),
        _ogb("ogbn-arxiv", "multiclass", "acc", 169_343, 2_315_598, "time"),
        _ogb("ogbn-products", "multiclass", "acc", 2_449_029, 123_718_280, "sales_ranking"),
        DatasetSpec(
            name="blogcatalog",
            task="multilabel",
            metric="rocauc",
            loader="real:load_blogcatalog",
            options={"split": "random", "seed": 0, "pe_dim": 64},
            kind="shared",
            files=("BlogCatalog/blogcatalog.mat",),
            nodes=10_312,
            edges=667_966,
            description="BlogCatalog social graph, 39 overlapping groups; structural node inputs",
            rules=rules.real(("random",), pe_dim=True),
        ),
        DatasetSpec(
            name="cora",
            task="multiclass",
            metric="acc",
            loader="real:load_planetoid",
            options={"split": "public", "seed": 0},
            kind="shared",
            files=("Planetoid/Cora/raw/ind.cora.graph",),
            nodes=2_708,
            edges=10_556,
            description="Cora citation graph (Planetoid), 7 classes",
            extra={"pyg_name": "Cora"},
            rules=_PLANETOID,
        ),
        DatasetSpec(
            name="citeseer",
            task="multiclass",
            metric="acc",
            loader="real:load_planetoid",
            options={"split": "public", "seed": 0},
            kind="shared",
            files=("Planetoid/CiteSeer/raw/ind.citeseer.graph",),
            nodes=3_327,
            edges=9_104,
            description="CiteSeer citation graph (Planetoid), 6 classes",
            extra={"pyg_name": "CiteSeer"},
            rules=_PLANETOID,
        ),
        DatasetSpec(
            name="amazon-computers",
            task="multiclass",
            metric="acc",
            loader="real:load_shchur",
            options=dict(_REAL_SPLIT),
            kind="shared",
            files=("Amazon/Computers/raw/amazon_electronics_computers.npz",),
            nodes=13_752,
            edges=491_722,
            description="Amazon Computers co-purchase graph, 10 classes",
            extra={"family": "Amazon", "pyg_name": "Computers"},
            rules=_SHCHUR,
        ),
        DatasetSpec(
            name="amazon-photo",
            task="multiclass",
            metric="acc",
            loader="real:load_shchur",
            options=dict(_REAL_SPLIT),
            kind="shared",
            files=("Amazon/Photo/raw/amazon_electronics_photo.npz",),
            nodes=7_650,
            edges=238_162,
            description="Amazon Photo co-purchase graph, 8 classes",
            extra={"family": "Amazon", "pyg_name": "Photo"},
            rules=_SHCHUR,
        ),
        DatasetSpec(
            name="coauthor-cs",
            task="multiclass",
            metric="acc",
            loader="real:load_shchur",
            options=dict(_REAL_SPLIT),
            kind="shared",
            files=("Coauthor/CS/raw/ms_academic_cs.npz",),
            nodes=18_333,
            edges=163_788,
            description="Coauthor CS co-authorship graph, 15 fields",
            extra={"family": "Coauthor", "pyg_name": "CS"},
            rules=_SHCHUR,
        ),
        DatasetSpec(
            name="coauthor-physics",
            task="multiclass",
            metric="acc",
            loader="real:load_shchur",
            options=dict(_REAL_SPLIT),
            kind="shared",
            files=("Coauthor/Physics/raw/ms_academic_phy.npz",),
            nodes=34_493,
            edges=495_924,
            description="Coauthor Physics co-authorship graph, 5 fields",
            extra={"family": "Coauthor", "pyg_name": "Physics"},
            rules=_SHCHUR,
        ),
    )
}


def dataset_names() -> list[str]:
    """Every registered dataset name (cheap: no file access, no heavy imports)."""
    return list(SPECS)


def get_spec(name: str) -> DatasetSpec:
    try:
        return SPECS[name]
    except KeyError:
        raise ConfigError(
            "dataset", f"unknown dataset {name!r}; known: {', '.join(dataset_names())}"
        ) from None


def needed_hops(name: str, options: dict[str, Any] | None = None) -> int | None:
    """The message-passing hops a dataset's labels need, where that is a known fact: the
    value of the option its spec names in ``extra["needed_hops"]`` (``synthetic-depth``'s
    ``depth``; ``synthetic-proteins``' ``depth_task``, where 0 means no known depth); None for
    every other dataset or an unknown name."""
    spec = SPECS.get(name)
    option = spec.extra.get("needed_hops") if spec is not None else None
    if option is None:
        return None
    value = {**spec.options, **(options or {})}.get(option)
    return int(value) if isinstance(value, (int, float)) and value > 0 else None


def graph_size(name: str, options: dict[str, Any] | None = None) -> tuple[int, int] | None:
    """(nodes, directed edges) a dataset will have with ``options``, without loading it: the
    table's sizes, or for generated graphs their construction's (``synthetic-proteins``: the
    mean degree times the nodes, as generated); None where unknown."""
    spec = SPECS.get(name)
    if spec is None:
        return None
    values = {**spec.options, **(options or {})}
    if spec.extra.get("size") == "forest":
        nodes = values["num_trees"] * tree_size(values["depth"], values["branching"])
        return nodes, 2 * (nodes - values["num_trees"])
    if spec.extra.get("size") == "ring":
        return values["num_nodes"], values["num_nodes"] * values["avg_degree"]
    if spec.nodes is None or spec.edges is None:
        return None
    return spec.nodes, spec.edges


def resolve_options(spec: DatasetSpec, options: dict[str, Any]) -> dict[str, Any]:
    """Defaults overlaid with the given options, checked by the dataset's own rules
    (:mod:`bench.data.options`); an unknown option name or a bad value is a ConfigError."""
    unknown = sorted(set(options) - set(spec.options))
    if unknown:
        known = ", ".join(sorted(spec.options)) or "none"
        raise ConfigError(
            "dataset_options",
            f"unknown option {unknown[0]!r} for dataset {spec.name!r}; its options: {known}",
        )
    resolved = {**spec.options, **options}
    if spec.rules is not None:
        spec.rules(resolved)
    return resolved


def check_fits(name: str, options: dict[str, Any] | None = None) -> None:
    """Refuse (ConfigError) a generated dataset too large to build on this machine
    (:func:`bench.data.options.check_fits`); nothing for any other dataset."""
    spec = SPECS.get(name)
    if spec is not None and spec.kind == "generated":
        rules.check_fits(name, spec.extra["size"], resolve_options(spec, options or {}))


def has_edge_features(name: str) -> bool:
    """Whether dataset ``name`` (registered, or a graph file: checked, cached) has edge features."""
    from bench.data.graph_file import inspect, is_graph_file

    if is_graph_file(name):
        return inspect(name).edge_dim is not None
    return get_spec(name).edge_features


def load(name: str, root: str | None = None, **options: Any) -> Any:
    """Load dataset ``name`` (see ``bench.data.load``); a path ending in ``.pt`` is a graph
    file (:mod:`bench.data.graph_file`; ``root`` does not apply)."""
    from bench.data.graph_file import is_graph_file, load_graph_file

    if is_graph_file(name):
        return load_graph_file(name, **options)
    spec = get_spec(name)
    resolved = resolve_options(spec, options)
    if spec.kind == "generated":  # built here, in this process: refused if it cannot be
        rules.check_fits(name, spec.extra["size"], resolved)
    module_name, func_name = spec.loader.split(":")
    module = importlib.import_module(f"bench.data.{module_name}")
    return getattr(module, func_name)(spec, root, **resolved)
