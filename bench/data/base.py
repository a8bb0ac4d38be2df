"""``GraphDataset``: the one shape every loader returns, whatever the source."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch import Tensor
from torch_geometric.data import Data

from bench.data.evaluate import evaluate as _evaluate

if TYPE_CHECKING:
    from bench.data.dataset_spec import DatasetSpec

SPLITS = ("train", "valid", "test")


@dataclass
class GraphDataset:
    """A node-prediction graph with its split, task and metric.

    ``data``: PyG ``Data`` with ``x`` float32 [N, F], ``edge_index`` long [2, E], ``edge_attr``
    float32 [E, D] or None, ``y`` (multilabel: float32 0/1 [N, T]; multiclass: long [N]).
    ``split``: "train"/"valid"/"test" -> node ids. ``info``: provenance and sizes.
    """

    name: str
    data: Data
    split: dict[str, Tensor]
    task: str
    metric: str
    info: dict[str, Any] = field(default_factory=dict)
    num_classes: int | None = None  # multiclass: set when a class may be absent from y

    def __post_init__(self) -> None:
        # Catch a loader bug here rather than as a shape error deep inside training.
        d = self.data
        n = d.num_nodes
        assert d.x is not None and d.x.dtype == torch.float32 and d.x.shape[0] == n
        assert d.edge_index.dtype == torch.long and d.edge_index.shape[0] == 2
        if d.edge_attr is not None:
            assert d.edge_attr.dtype == torch.float32
            assert d.edge_attr.shape[0] == d.edge_index.shape[1]
        if self.task == "multilabel":
            assert d.y.dtype == torch.float32 and d.y.dim() == 2 and d.y.shape[0] == n
        elif self.task == "multiclass":
            assert d.y.dtype == torch.long and d.y.dim() == 1 and d.y.shape[0] == n
        else:
            raise AssertionError(f"unknown task {self.task!r}")
        assert set(self.split) == set(SPLITS), f"split keys {sorted(self.split)}"
        self.info = {
            "nodes": int(n),
            "edges": int(d.edge_index.shape[1]),
            "features": self.num_features,
            "edge_dim": self.edge_dim,
            "outputs": self.num_outputs,
            **{f"{k}_nodes": int(v.numel()) for k, v in self.split.items()},
            **self.info,
        }

    @property
    def num_features(self) -> int:
        return int(self.data.x.shape[1])

    @property
    def edge_dim(self) -> int | None:
        ea = self.data.edge_attr
        return None if ea is None else int(ea.shape[1])

    @property
    def num_outputs(self) -> int:
        """Logits the model must produce: tasks (multilabel) or classes (multiclass)."""
        y = self.data.y
        if self.task == "multilabel":
            return int(y.shape[1])
        return self.num_classes if self.num_classes is not None else int(y.max()) + 1

    def evaluate(self, y_true: Tensor | np.ndarray, y_score: Tensor | np.ndarray) -> float:
        """The dataset's metric on raw scores/logits (OGB evaluator semantics)."""
        return _evaluate(self.metric, y_true, y_score)

    def __repr__(self) -> str:
        i = self.info
        return (
            f"GraphDataset({self.name!r}, nodes={i['nodes']}, edges={i['edges']}, "
            f"features={i['features']}, edge_dim={i['edge_dim']}, outputs={i['outputs']}, "
            f"task={self.task!r}, metric={self.metric!r})"
        )


def build_dataset(
    spec: DatasetSpec, data: Data, split: dict[str, Tensor], source: Path | str, **info: Any
) -> GraphDataset:
    """A loaded graph as a GraphDataset: task and metric from its spec, provenance in ``info``."""
    return GraphDataset(
        name=spec.name,
        data=data,
        split=split,
        task=spec.task,
        metric=spec.metric,
        info={"source": str(source), "description": spec.description, **info},
        num_classes=int(data.y.max()) + 1 if spec.task == "multiclass" else None,
    )


def random_split(
    num_nodes: int, seed: int, fractions: tuple[float, float] = (0.6, 0.2)
) -> dict[str, Tensor]:
    """Seeded random 60/20/20 node split (sorted ids)."""
    perm = torch.randperm(num_nodes, generator=torch.Generator().manual_seed(seed + 7919))
    n_train = int(round(fractions[0] * num_nodes))
    n_valid = int(round(fractions[1] * num_nodes))
    return {
        "train": perm[:n_train].sort().values,
        "valid": perm[n_train : n_train + n_valid].sort().values,
        "test": perm[n_train + n_valid :].sort().values,
    }
