"""Metrics, computed by OGB's own evaluator code so every dataset scores the way the paper does.

``rocauc``: ROC-AUC per task over the nodes labelled for it, averaged over the tasks that have
both classes present (OGB's semantic; ``ogb.nodeproppred.Evaluator``). ``acc``: accuracy of the
arg-max class. Scores may be raw logits: both metrics are invariant to the sigmoid/softmax.
Non-OGB datasets reuse the same ``Evaluator`` with its task count set to theirs.
"""

from __future__ import annotations

from functools import cache
from typing import Any

import numpy as np
import torch
from torch import Tensor

from bench.data.ogbcompat import import_ogb

METRICS = ("rocauc", "acc")
_OGB_NAME = {"rocauc": "ogbn-proteins", "acc": "ogbn-arxiv"}


@cache
def _evaluator(metric: str, num_tasks: int) -> Any:
    evaluator = import_ogb("ogb.nodeproppred").Evaluator(_OGB_NAME[metric])
    evaluator.num_tasks = num_tasks  # same code, other task count (proteins: 112, arxiv: 1)
    return evaluator


def _numpy(a: Tensor | np.ndarray) -> np.ndarray:
    if isinstance(a, Tensor):
        return a.detach().to("cpu", torch.float64 if a.is_floating_point() else a.dtype).numpy()
    return np.asarray(a)


def rocauc(y_true: Tensor | np.ndarray, y_score: Tensor | np.ndarray) -> float:
    """Mean ROC-AUC over tasks with both classes (NaN labels are unlabelled), via OGB."""
    t, s = _numpy(y_true), _numpy(y_score)
    if t.ndim == 1:
        t, s = t[:, None], s[:, None]
    if t.shape != s.shape:
        raise ValueError(f"rocauc: y_true {t.shape} and y_score {s.shape} differ in shape")
    return float(_evaluator("rocauc", t.shape[1]).eval({"y_true": t, "y_pred": s})["rocauc"])


def accuracy(y_true: Tensor | np.ndarray, y_score: Tensor | np.ndarray) -> float:
    """Accuracy of arg-max over class scores [N, C] (or given class ids [N]) vs labels [N]."""
    t, s = _numpy(y_true).reshape(-1), _numpy(y_score)
    pred = s.argmax(axis=-1) if s.ndim == 2 else s.reshape(-1)
    if pred.shape[0] != t.shape[0]:
        raise ValueError(f"accuracy: {t.shape[0]} labels but {pred.shape[0]} predictions")
    out = _evaluator("acc", 1).eval({"y_true": t[:, None], "y_pred": pred[:, None]})
    return float(out["acc"])


def evaluate(metric: str, y_true: Tensor | np.ndarray, y_score: Tensor | np.ndarray) -> float:
    if metric == "rocauc":
        return rocauc(y_true, y_score)
    if metric == "acc":
        return accuracy(y_true, y_score)
    raise ValueError(f"unknown metric {metric!r}; choose one of {', '.join(METRICS)}")
