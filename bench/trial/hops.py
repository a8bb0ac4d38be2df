"""Receptive field in message-passing hops: how far from a node its prediction can see.

A node's output depends on the inputs of nodes at most ``r`` hops away, where ``r`` counts the
convolutions on the longest input-to-output path of the model (encoders and head are per node:
0 hops). From the code in ``bench/models/``:

* ResGNN, WT-ResGNN, checkpointed ResGNN (``residual.py``): ``h_{l+1} = h_l + f_l(h_l)``, one
  convolution per layer: ``r = L``.
* RevGNN, WT-RevGNN (``reversible.py``, ``bench.nn.reversible``): within a layer, group i reads
  group i - 1's *new* output (``y_i = x_i + f_i(y_{i-1})``), and group 1 reads the previous
  layer's groups 2..G. Each layer passes messages G times in sequence: ``r = G x L``. (The
  groups' receptive fields differ by one; the head reads them all.)
* DEQ-GNN (``deq.py``): an iteration of ``f(z, x) = norm2(relu(conv2(h) + u))`` with
  ``u = conv1(z)``, ``h = relu(norm1(u + x))`` passes messages twice. The solver starts from
  ``z = 0``, so the first iteration's ``conv1`` reads no node's state and only ``conv2`` adds
  a hop: n iterations see ``2 n - 1`` hops, not 2 n. This is the evaluation forward (which
  the scores come from); a training forward adds one recorded evaluation at z* (2 n + 1).
  The solver may stop before its cap (``deq_max_iter``, default ``layers``) once converged:
  the cap gives the most it can reach, the record's solver iterations what it did reach
  (:func:`deq_hops`). At an exact fixed point, z* depends on the whole component.

GAT, SAGE and GCN blocks pass messages once per convolution too, so these counts hold for
every ``conv``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

RESIDUAL = ("res", "wt-res", "ckpt")
REVERSIBLE = ("rev", "wt-rev")


def deq_hops(iterations: float) -> int:
    """Hops a DEQ-GNN's evaluation forward reaches after ``iterations`` solver iterations."""
    return max(0, 2 * int(iterations) - 1)


def receptive_hops(config: Any) -> int | None:
    """The receptive field in hops of a config (a ``TrialConfig`` or a mapping of its fields,
    e.g. a results row); None for an unknown arch or a missing depth."""
    get = config.get if isinstance(config, Mapping) else lambda k, d=None: getattr(config, k, d)
    arch, layers = get("arch"), _int(get("layers"))
    if layers is None:
        return None
    if arch in RESIDUAL:
        return layers
    if arch in REVERSIBLE:
        groups = _int(get("groups"))
        return None if groups is None else groups * layers
    if arch == "deq":
        cap = _int(get("deq_max_iter"))
        return deq_hops(cap if cap is not None else layers)
    return None


def record_hops(config: Any) -> dict[str, int | None]:
    """The record's two depth fields for a ``TrialConfig``: ``receptive_hops`` (the model's)
    and ``needed_hops`` (the task's, where the dataset knows it)."""
    from bench.data.registry import needed_hops

    return {
        "receptive_hops": receptive_hops(config),
        "needed_hops": needed_hops(config.dataset, config.dataset_options),
    }


def _int(value: Any) -> int | None:
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return int(number) if number == number else None  # NaN (a missing cell) -> None
