"""Receptive field in message-passing hops: how far from a node its prediction can see.

A node's output depends on the inputs of nodes at most ``r`` hops away, where ``r`` counts the
convolutions on the longest input-to-output path of the model (encoders and head are per node:
0 hops). Each architecture says its own (:meth:`bench.models.archs.Architecture.receptive_hops`):

* residual (ResGNN, WT-ResGNN, checkpointed): one convolution per layer, ``r = L``;
* reversible (RevGNN, WT-RevGNN): within a layer, group i reads group i - 1's *new* output and
  group 1 reads the previous layer's groups 2..G, so each layer passes messages G times in
  sequence: ``r = G x L`` (the groups' receptive fields differ by one; the head reads them all);
* equilibrium (DEQ-GNN): an iteration passes messages twice, but the solver starts from
  ``z = 0``, so the first iteration's first convolution reads no node's state: n iterations
  see ``2 n - 1`` hops (the evaluation forward, which the scores come from; a training
  forward adds one recorded evaluation at z*: 2 n + 1). The solver may stop before its cap
  once converged: the cap gives the most it can reach, the record's solver iterations what it
  did reach (:func:`deq_hops`). At an exact fixed point, z* depends on the whole component.

GAT, SAGE and GCN blocks pass messages once per convolution too, so these counts hold for
every built-in ``conv``.
"""

from __future__ import annotations

from collections.abc import Mapping
from types import SimpleNamespace
from typing import Any

from bench.errors import ConfigError
from bench.models import archs


def deq_hops(iterations: float) -> int:
    """Hops a DEQ-GNN's evaluation forward reaches after ``iterations`` solver iterations."""
    return max(0, 2 * int(iterations) - 1)


def receptive_hops(config: Any) -> int | None:
    """The receptive field in hops of a config (a ``TrialConfig``, or a mapping of its fields
    such as a results row); None for an unknown arch or a missing depth."""
    if not isinstance(config, Mapping):
        try:
            return config.architecture.receptive_hops(config.model)
        except ConfigError:  # an invalid configuration (its record says why): no model
            return None
    fields = {k: _int(config.get(k)) for k in ("layers", "groups", "deq_max_iter")}
    if fields["layers"] is None or config.get("arch") not in archs.names():
        return None
    try:
        return archs.get(str(config["arch"])).receptive_hops(SimpleNamespace(**fields))
    except TypeError:  # a field the arch needs is missing (a reversible row without groups)
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
