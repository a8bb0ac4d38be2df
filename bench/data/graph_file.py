"""Graph files: your own graph as a dataset, ``--dataset PATH.pt`` (trials, specs, tuning spaces).

**Format.** One ``torch_geometric.data.Data`` written with ``torch.save(data, "name.pt")``:

* ``x``: node features [N, F], floating point (stored as float32), all finite.
* ``edge_index``: directed edges [2, E], integer node ids in [0, N). An undirected graph lists
  both directions (``torch_geometric.utils.to_undirected``), as the registered graphs do.
* ``edge_attr`` (optional): edge features [E, D], floating point, finite. Only ``--conv gen``
  and ``gat`` read them; ``sage`` and ``gcn`` refuse a file that has them.
* ``y``: the task, inferred from its type and printed:
  class ids, an integer tensor [N] (or [N, 1]) -> multiclass, scored by accuracy; or
  0/1 targets [N, T], float (NaN = unlabelled: left out of the loss and the score) or
  integer/bool -> multilabel (T binary tasks), scored by ROC-AUC averaged over the tasks.
  A single binary task is a float [N, 1].
* ``train_mask``, ``val_mask``, ``test_mask`` (optional, all three or none): bool [N],
  non-empty, disjoint. Without them the nodes are split 60/20/20 at random, seeded by the
  dataset option ``seed`` (default 0; ``--dataset-option seed=1``); the record's
  ``dataset_split`` says which.

Any other attribute is ignored. Example (a 1,000-node graph whose classes follow its features)::

    import torch
    from torch_geometric.data import Data
    from torch_geometric.utils import to_undirected

    n, features, classes = 1000, 16, 4
    x = torch.randn(n, features)
    edge_index = to_undirected(torch.randint(0, n, (2, 4000)), num_nodes=n)
    y = x[:, :classes].argmax(1)  # class ids [N]: accuracy (0/1 floats [N, T]: ROC-AUC)
    torch.save(Data(x=x, edge_index=edge_index, y=y), "my-graph.pt")

**Safety.** The file is read with ``torch.load(weights_only=True)``: only tensors, plain
containers and PyG's own data classes (its safe globals, plus the storage classes a pickled
``Data`` names) can be rebuilt, so a file cannot run code; anything else is refused.

**Checks.** Every problem is one ``ConfigError("dataset", "PATH: FIELD: what is wrong")``,
raised when a configuration is validated (:meth:`bench.config.TrialConfig.validated`), before
any training: not a ``Data``, a missing field, a wrong shape or dtype, NaN/inf features, edge
ids out of range, labels out of range, an empty or overlapping split, a split that multilabel
targets leave unusable (no labelled target to train on; for valid and test, no task with both
a labelled 0 and a labelled 1, without which ROC-AUC cannot score it). A random split is
checked for the split seed a configuration gives.

**Identity.** A graph file's name says little (two ``graph.pt`` may differ), so configurations
carry its content hash, ``dataset_hash`` (SHA-256 of the file's bytes), beside its path:
point keys, records and exports hold both, and a configuration whose file has changed since is
refused. A relative path is relative to the working directory (of every command and worker).
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from bench.errors import ConfigError

if TYPE_CHECKING:
    from torch import Tensor
    from torch_geometric.data import Data

    from bench.data.base import GraphDataset

SUFFIX = ".pt"
MASKS = {"train": "train_mask", "valid": "val_mask", "test": "test_mask"}
RANDOM_SPLIT = (0.6, 0.2)  # train, valid; the rest is test (bench.data.base.random_split)
OPTIONS = {"seed": 0}  # dataset options of a graph file -> default
METRIC_NAMES = {"acc": "accuracy", "rocauc": "ROC-AUC"}


def is_graph_file(name: str) -> bool:
    """Whether a dataset setting names a graph file (a path ending in ``.pt``), not a registered
    dataset. Cheap: no file access."""
    return isinstance(name, str) and name.endswith(SUFFIX)


@dataclass(frozen=True)
class GraphFileInfo:
    """What a checked graph file holds (enough to validate a configuration and describe it)."""

    path: str
    sha256: str
    task: str  # "multiclass" | "multilabel"
    metric: str  # "acc" | "rocauc"
    nodes: int
    edges: int
    features: int
    edge_dim: int | None
    outputs: int  # classes (multiclass) or tasks (multilabel)
    unlabelled: int  # multilabel: NaN targets (node-task pairs left out)
    masks: tuple[int, int, int] | None  # the file's own split sizes (train, valid, test)

    def split_rule(self, seed: int) -> str:
        """How the nodes are split, in words (the record's ``dataset_split``)."""
        if self.masks is not None:
            return "the file's train/val/test masks"
        train, valid = (round(f * 100) for f in RANDOM_SPLIT)
        return f"random {train}/{valid}/{100 - train - valid}, seed {seed}"

    def task_line(self) -> str:
        """'multiclass, 7 classes: accuracy' (what was inferred from ``y``)."""
        if self.task == "multiclass":
            what = f"multiclass, {self.outputs} classes"
        else:
            what = f"multilabel, {self.outputs} binary task{'s' if self.outputs != 1 else ''}"
            if self.unlabelled:
                share = self.unlabelled / (self.nodes * self.outputs)
                what += f" ({share:.1%} of the labels unlabelled)"
        return f"{what}: {METRIC_NAMES[self.metric]}"

    def summary(self, seed: int = OPTIONS["seed"]) -> str:
        """One line for a person: sizes, the inferred task and metric, the split."""
        edge = f", {self.edge_dim}-dim edge features" if self.edge_dim else ""
        sizes = " ({:,}/{:,}/{:,} nodes)".format(*self.masks) if self.masks else ""
        return (
            f"{self.path} (sha256 {self.sha256[:12]}): {self.nodes:,} nodes, {self.edges:,} "
            f"edges, {self.features} features{edge}; y -> {self.task_line()}; split: "
            f"{self.split_rule(seed)}{sizes}"
        )


# --- reading ----------------------------------------------------------------------------------
def file_sha256(path: str | os.PathLike[str]) -> str:
    """SHA-256 of the file's bytes (read in 1 MiB chunks)."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _existing(path: str) -> Path:
    p = Path(path).expanduser()
    if not p.exists():
        raise ConfigError("dataset", f"no graph file at {path}")
    if not p.is_file():
        raise ConfigError("dataset", f"{path} is not a file")
    return p


def _torch_load(path: str, p: Path) -> Any:
    """The file's object, read so that no code can run (:mod:`bench.data.safe_load`); a
    refusal names every global the file holds that is not allowed, sorted."""
    from bench.data.safe_load import NotTorchSave, Refused, load_data

    try:
        return load_data(p)
    except NotTorchSave:
        raise ConfigError("dataset", f"{path}: not a file written by torch.save") from None
    except Refused as exc:
        held = f" (it names {', '.join(exc.names)})" if exc.names else ""
        if exc.names and all(name.startswith("torch_geometric.") for name in exc.names):
            raise ConfigError("dataset", f"{path}: not a torch_geometric.data.Data of tensors"
                              f"{held}; save one with torch.save(Data(x=..., edge_index=..., "
                              "y=...), path)") from None  # fmt: skip
        raise ConfigError("dataset", f"{path}: refused: holds objects other than tensors and "
                          f"PyG data{held}; graph files are read with torch.load(weights_only="
                          "True), so a file cannot run code") from None  # fmt: skip


def _fail(path: str, field: str, message: str) -> ConfigError:
    return ConfigError("dataset", f"{path}: {field}: {message}")


def _tensor(path: str, raw: Any, field: str, required: bool = True) -> Tensor | None:
    import torch

    value = raw.get(field) if hasattr(raw, "get") else None
    if value is None:
        if required:
            raise _fail(path, field, "missing")
        return None
    if not isinstance(value, torch.Tensor):
        raise _fail(path, field, f"must be a tensor, got {type(value).__name__}")
    if value.is_sparse or value.layout != torch.strided:
        raise _fail(path, field, "must be a dense tensor")
    return value.as_subclass(torch.Tensor)  # PyG's EdgeIndex/Index: their plain values


def _shape(t: Tensor) -> str:
    return "[" + ", ".join(str(s) for s in t.shape) + "]"


def _finite(path: str, field: str, t: Tensor) -> None:
    import torch

    bad = ~torch.isfinite(t)
    if bool(bad.any()):
        first = int(bad.reshape(t.shape[0], -1).any(1).nonzero()[0])
        raise _fail(path, field, f"{int(bad.sum()):,} NaN/inf values (the first in row {first})")


def _labels(path: str, y: Tensor, n: int) -> tuple[str, Tensor, int, int]:
    """(task, y as GraphDataset holds it, outputs, unlabelled count) inferred from ``y``."""
    import torch

    if y.shape[0] != n:
        raise _fail(path, "y", f"{y.shape[0]:,} rows for {n:,} nodes (x has {n:,} rows)")
    integer = not y.is_floating_point() and y.dtype != torch.bool and not y.is_complex()
    if integer and (y.dim() == 1 or (y.dim() == 2 and y.shape[1] == 1)):
        y = y.reshape(-1).long()
        low, high = int(y.min()), int(y.max())
        if low < 0:
            raise _fail(path, "y", f"class id {low} out of range: class ids are 0..C-1")
        if high >= n:
            raise _fail(path, "y", f"class id {high} out of range for {n:,} nodes: ids are 0..C-1")
        if high < 1:
            raise _fail(path, "y", "a single class (0): a classification needs at least two")
        return "multiclass", y, high + 1, 0
    if y.dim() != 2 or y.shape[1] < 1:
        hint = " (class ids: an integer tensor [N]; 0/1 targets: a float tensor [N, T])"
        raise _fail(path, "y", f"shape {_shape(y)} with dtype {y.dtype}: not labels{hint}")
    if y.is_complex():
        raise _fail(path, "y", f"dtype {y.dtype}: expected 0/1 targets")
    y = y.float()
    unlabelled = torch.isnan(y)
    known = y[~unlabelled]
    bad = known[(known != 0) & (known != 1)]
    if bad.numel():
        raise _fail(
            path,
            "y",
            f"target {float(bad[0]):g} out of range: 0/1 targets [N, T] "
            "hold 0, 1 or NaN (unlabelled)",
        )
    if int(unlabelled.sum()) == y.numel():
        raise _fail(path, "y", "every target is NaN (unlabelled)")
    return "multilabel", y, int(y.shape[1]), int(unlabelled.sum())


def _masks(path: str, raw: Any, n: int) -> dict[str, Tensor] | None:
    """The file's own split as node ids, or None (a random split then)."""
    import torch

    given = {key: _tensor(path, raw, name, required=False) for key, name in MASKS.items()}
    if all(m is None for m in given.values()):
        return None
    split = {}
    for key, mask in given.items():
        name = MASKS[key]
        if mask is None:
            raise _fail(
                path,
                name,
                "missing: give train_mask, val_mask and test_mask together "
                "(or none, for a seeded random 60/20/20 split)",
            )
        if mask.dtype != torch.bool or mask.shape != (n,):
            raise _fail(path, name, f"a bool mask [N] = [{n}], got {mask.dtype} {_shape(mask)}")
        if not bool(mask.any()):
            raise _fail(path, name, "empty split (no node)")
        split[key] = mask.nonzero().reshape(-1)
    for a, b in (("train", "valid"), ("train", "test"), ("valid", "test")):
        shared = int((given[a] & given[b]).sum())  # type: ignore[operator]
        if shared:
            raise _fail(path, MASKS[a], f"shares {shared:,} nodes with {MASKS[b]}")
    return split


def read(path: str) -> tuple[Data, dict[str, Tensor] | None, GraphFileInfo]:
    """Load and check a graph file: the graph (only the fields above, in the dtypes
    :class:`~bench.data.base.GraphDataset` holds), its own split (or None), what it holds.
    The checks run in the order of the fields above; the first problem is the error."""
    from torch_geometric.data import Data

    p = _existing(path)
    sha256 = file_sha256(p)
    raw = _graph_object(path, p)
    x = _features(path, raw)
    n = int(x.shape[0])
    edge_index = _edges(path, raw, n)
    e = int(edge_index.shape[1])
    edge_attr = _edge_features(path, raw, e)
    y_raw = _tensor(path, raw, "y")
    assert y_raw is not None
    task, y, outputs, unlabelled = _labels(path, y_raw, n)
    split = _masks(path, raw, n)
    if split is not None and task == "multilabel":
        problem = split_problem(y, split)
        if problem is not None:
            raise _fail(path, "y", f"{problem}; label more of its nodes, or change the masks")
    if split is None and min(_random_sizes(n)) < 1:
        raise _fail(
            path,
            "train_mask",
            f"none given, and {n} nodes are too few for a "
            "random 60/20/20 split with every part non-empty",
        )
    data = Data(x=x.float().contiguous(), edge_index=edge_index.contiguous(), y=y, num_nodes=n)
    if edge_attr is not None:
        data.edge_attr = edge_attr
    info = GraphFileInfo(
        path=path,
        sha256=sha256,
        task=task,
        metric="acc" if task == "multiclass" else "rocauc",
        nodes=n,
        edges=e,
        features=int(x.shape[1]),
        edge_dim=None if edge_attr is None else int(edge_attr.shape[1]),
        outputs=outputs,
        unlabelled=unlabelled,
        masks=None if split is None else tuple(int(v.numel()) for v in split.values()),  # type: ignore[arg-type]
    )
    return data, split, info


def _graph_object(path: str, p: Path) -> Data:
    """The file's object, which must be a ``Data``."""
    from torch_geometric.data import Data

    raw = _torch_load(path, p)
    if not isinstance(raw, Data):
        kind = type(raw).__name__
        raise ConfigError(
            "dataset",
            f"{path}: not a torch_geometric.data.Data (got {kind}); save one with "
            "torch.save(Data(x=..., edge_index=..., y=...), path)",
        )
    return raw


def _features(path: str, raw: Data) -> Tensor:
    """``x``: [N, F] floating point, finite."""
    x = _tensor(path, raw, "x")
    assert x is not None
    if x.dim() != 2 or x.shape[0] < 1 or x.shape[1] < 1:
        raise _fail(path, "x", f"node features [N, F] with N, F >= 1, got shape {_shape(x)}")
    if not x.is_floating_point():
        raise _fail(path, "x", f"dtype {x.dtype}: node features must be floating point")
    _finite(path, "x", x)
    return x


def _edges(path: str, raw: Data, n: int) -> Tensor:
    """``edge_index``: [2, E] integer node ids in [0, N), as int64."""
    import torch

    edge_index = _tensor(path, raw, "edge_index")
    assert edge_index is not None
    if edge_index.dim() != 2 or edge_index.shape[0] != 2:
        raise _fail(path, "edge_index", f"shape {_shape(edge_index)}: expected [2, E]")
    if edge_index.is_floating_point() or edge_index.dtype == torch.bool:
        raise _fail(path, "edge_index", f"dtype {edge_index.dtype}: node ids must be integers")
    edge_index = edge_index.long()
    if edge_index.numel():
        low, high = int(edge_index.min()), int(edge_index.max())
        if low < 0 or high >= n:
            out = low if low < 0 else high
            raise _fail(
                path, "edge_index", f"node id {out} out of range [0, {n}) (x has {n:,} rows)"
            )
    return edge_index


def _edge_features(path: str, raw: Data, e: int) -> Tensor | None:
    """``edge_attr`` (optional): [E, D] floating point, finite, as contiguous float32."""
    edge_attr = _tensor(path, raw, "edge_attr", required=False)
    if edge_attr is None:
        return None
    if edge_attr.dim() != 2 or edge_attr.shape[0] != e or edge_attr.shape[1] < 1:
        raise _fail(
            path,
            "edge_attr",
            f"edge features [E, D] = [{e}, D], got shape "
            f"{_shape(edge_attr)} (a weight per edge: edge_attr.view(-1, 1))",
        )
    if not edge_attr.is_floating_point():
        raise _fail(path, "edge_attr", f"dtype {edge_attr.dtype}: must be floating point")
    _finite(path, "edge_attr", edge_attr)
    return edge_attr.float().contiguous()


def _random_sizes(n: int) -> tuple[int, int, int]:
    train, valid = (int(round(f * n)) for f in RANDOM_SPLIT)
    return train, valid, n - train - valid


def split_problem(y: Tensor, split: dict[str, Tensor]) -> str | None:
    """Multilabel targets ``y`` [N, T] (NaN: unlabelled): why a split cannot be used, or None.
    Training needs a labelled target; ROC-AUC on valid and test needs a task with both a
    labelled 0 and a labelled 1 (OGB's evaluator raises without one, after the training)."""
    for key, ids in split.items():
        part = y[ids]
        if key == "train" and bool(part.isnan().all()):
            return f"the train split ({ids.numel():,} nodes) holds no labelled target"
        if key != "train" and not bool(((part == 0).any(0) & (part == 1).any(0)).any()):
            return (f"the {key} split ({ids.numel():,} nodes) has no task with both a labelled 0 "
                    "and a labelled 1, so ROC-AUC cannot score it")  # fmt: skip
    return None


_INFO: dict[tuple[str, int, int], GraphFileInfo] = {}
# (file version, split seed) -> why that random split of a multilabel file is unusable, or None
_RANDOM_SPLITS: dict[tuple[tuple[str, int, int], int], str | None] = {}


def _version(path: str) -> tuple[str, int, int]:
    """A file version's key: (resolved path, size, mtime)."""
    p = _existing(path)
    stat = p.stat()
    return str(p.resolve()), stat.st_size, stat.st_mtime_ns


def inspect(path: str) -> GraphFileInfo:
    """Check a graph file and say what it holds; cached per file version (path, size, mtime),
    so validating many configurations reads it once."""
    key = _version(path)
    if key not in _INFO:
        data, split, info = read(path)
        _INFO[key] = dataclasses.replace(info, path=path)
        if split is None and info.task == "multilabel":  # the default seed's split, read once
            seed = OPTIONS["seed"]
            parts = _random_parts(info.nodes, seed)
            _RANDOM_SPLITS[key, seed] = split_problem(data.y, parts)
    return dataclasses.replace(_INFO[key], path=path)


def _random_parts(nodes: int, seed: int) -> dict[str, Tensor]:
    from bench.data.base import random_split

    return random_split(nodes, seed, RANDOM_SPLIT)


def _check_random_split(path: str, info: GraphFileInfo, seed: int) -> None:
    """A multilabel file without masks: its random split by ``seed`` must be usable."""
    if info.task != "multilabel" or info.masks is not None:
        return
    key = (_version(path), seed)
    if key not in _RANDOM_SPLITS:
        _RANDOM_SPLITS[key] = split_problem(read(path)[0].y, _random_parts(info.nodes, seed))
    if _RANDOM_SPLITS[key] is not None:
        raise _fail(path, "y", f"{_RANDOM_SPLITS[key]} (random split, seed {seed}); label more "
                    "nodes, give the file its own masks, or another --dataset-option seed")  # fmt: skip


def check_options(path: str, options: dict[str, Any], info: GraphFileInfo) -> dict[str, Any]:
    """The dataset options of a graph file with defaults filled in (``seed`` only)."""
    unknown = sorted(set(options) - set(OPTIONS))
    if unknown:
        raise ConfigError(
            "dataset_options",
            f"unknown option {unknown[0]!r} for graph file "
            f"{path}; its options: {', '.join(OPTIONS)}",
        )
    seed = options.get("seed", OPTIONS["seed"])
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise ConfigError("dataset_options", f"seed must be a non-negative integer, got {seed!r}")
    if "seed" in options and info.masks is not None:
        raise ConfigError(
            "dataset_options",
            f"seed: {path} has its own train/val/test masks, so there is no random split to seed",
        )
    _check_random_split(path, info, seed)
    return {**OPTIONS, **options}


def summary_of(path: str, options: dict[str, Any] | None = None) -> str:
    """:meth:`GraphFileInfo.summary` of a dataset setting (its split seed from ``options``)."""
    info = inspect(path)
    return info.summary(check_options(path, options or {}, info)["seed"])


def check_setting(path: str, sha256: str | None, options: Any) -> str:
    """A configuration's graph file (``TrialConfig.validated``): well-formed, unchanged since
    ``sha256`` was taken (when given), its options known; returns the file's hash."""
    info = inspect(path)
    if sha256 is not None and sha256 != info.sha256:
        raise ConfigError(
            "dataset_hash",
            f"{path} has changed since this configuration was made (its sha256 is "
            f"{info.sha256[:12]}..., the configuration's {str(sha256)[:12]}...)",
        )
    if isinstance(options, dict):
        check_options(path, options, info)
    return info.sha256


def load_graph_file(path: str, **options: Any) -> GraphDataset:
    """A graph file as a :class:`~bench.data.base.GraphDataset` (``bench.data.load(path)``)."""
    from bench.data.base import GraphDataset

    info = inspect(path)  # the hash (cached), and a clear error before anything else
    seed = check_options(path, options, info)["seed"]
    data, split, _ = read(path)
    if split is None:
        split = _random_parts(info.nodes, seed)
    return GraphDataset(
        name=path,
        data=data,
        split=split,
        task=info.task,
        metric=info.metric,
        info={
            "source": str(Path(path).expanduser().resolve()),
            "sha256": info.sha256,
            "description": f"graph file; y -> {info.task_line()}",
            "split_rule": info.split_rule(seed),
            **({"unlabelled_targets": info.unlabelled} if info.task == "multilabel" else {}),
        },
        num_classes=info.outputs if info.task == "multiclass" else None,
    )
