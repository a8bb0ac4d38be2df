"""The rules of every registered dataset's options, and the memory a generated graph takes.

Torch-free, so that a configuration's ``dataset_options`` are checked where it is validated
(:meth:`bench.config.TrialConfig.validated`: spec validation, preflight, ``--dry-run`` and the
trial alike), before anything heavy is imported or any graph built: ``num_nodes = -5`` or an
unknown option name is one ``ConfigError("dataset_options", ...)`` there, not a failure inside
the trial. Each :class:`~bench.data.dataset_spec.DatasetSpec` names its rules (``rules``); its
loader receives options that passed them.

A generated graph is built in this process's memory, so one too large for this machine is
refused before it is built (:func:`check_fits`, called when it is loaded and by a trial's
checks before it starts): ``num_nodes = 10**12`` is one line, not a ``MemoryError`` minutes
later. What building one takes was measured as the peak resident memory of generating it
(``ru_maxrss`` after the imports, one CPU thread): ``synthetic-proteins`` 282 MiB at 100,000
nodes and 2.4M directed edges, 484 MiB at 4.8M edges, 424 MiB at 400,000 nodes, 1.6M edges and
8 tasks, so about 85 bytes per directed edge, 800 per node and 25 per node and task;
``synthetic-depth`` 163 MiB at 1.8M nodes, 3.2M edges and 4 distractors (the estimate below,
32 bytes per edge and 48 + 4 per input column per node, over-predicts it by a third).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

from bench.errors import ConfigError

NODE_AGGRS = ("add", "mean", "max")  # how incident edge features are summed into node inputs
MAX_SEED = 2**32 - 1  # a dataset's seed (numpy's range; torch's generators take it too)
# node ids are sorted as int32 while a synthetic-proteins graph is laid out
MAX_RING_NODES = 2**31 - 1
DEPTH_TASK_MAX_NODES = 50_000  # the known-depth labels need a breadth-first search from each node
MAX_FOREST_NODES = 50_000_000  # synthetic-depth: about 1.6 GB of edge index
#: bytes generating synthetic-proteins takes at its peak (measured: module docstring)
RING_BYTES = {"edge": 85, "node": 800, "node_task": 25}
Rules = Callable[[dict[str, Any]], None]


def fail(message: str) -> ConfigError:
    return ConfigError("dataset_options", message)


def integer(values: dict[str, Any], name: str, low: int, high: int | None = None) -> int:
    """``values[name]``, which must be an integer in [low, high]."""
    value = values[name]
    if isinstance(value, bool) or not isinstance(value, int) or value < low:
        raise fail(f"{name} must be an integer >= {low}, got {value!r}")
    if high is not None and value > high:
        raise fail(f"{name} must be an integer <= {high:,}, got {value:,}")
    return value


def probability(values: dict[str, Any], name: str) -> float:
    """``values[name]``, which must be a number in [0, 0.5) (a label flip or rewiring rate)."""
    value = values[name]
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value < 0.5:
        raise fail(f"{name} must be a number in [0, 0.5), got {value!r}")
    return float(value)


def choice(values: dict[str, Any], name: str, allowed: tuple[str, ...], of: str = "") -> str:
    value = values[name]
    if value not in allowed:
        raise fail(f"{of}{name} must be one of {', '.join(allowed)}, got {value!r}")
    return value


def seed(values: dict[str, Any]) -> int:
    return integer(values, "seed", 0, MAX_SEED)


# --- the rules, one set per loader ----------------------------------------------------------------
def ring(values: dict[str, Any]) -> None:
    """``synthetic-proteins``: a ring graph per species, shortcuts, multi-hop labels."""
    species = integer(values, "num_species", 1)
    nodes = integer(values, "num_nodes", 3 * species, MAX_RING_NODES)
    integer(values, "avg_degree", 2)
    integer(values, "num_tasks", 1)
    integer(values, "hops", 0)
    seed(values)
    if integer(values, "depth_task", 0) and nodes > DEPTH_TASK_MAX_NODES:
        raise fail(f"depth_task needs num_nodes <= {DEPTH_TASK_MAX_NODES:,} (its labels come "
                   f"from an all-sources breadth-first search), got {nodes:,}")  # fmt: skip
    probability(values, "label_noise")
    probability(values, "shortcut_prob")
    choice(values, "node_aggr", NODE_AGGRS)
    if choice(values, "split", ("species", "random")) == "species" and species < 3:
        raise fail(f"split='species' needs num_species >= 3, got {species}")


def forest(values: dict[str, Any]) -> None:
    """``synthetic-depth``: a forest of identical trees whose roots need exactly k hops."""
    depth = integer(values, "depth", 1)
    branching = integer(values, "branching", 1)
    trees = integer(values, "num_trees", 5)  # at least one root per split
    integer(values, "noise_features", 0)
    seed(values)
    probability(values, "label_noise")
    nodes = trees * tree_size(depth, branching)
    if nodes > MAX_FOREST_NODES:
        raise fail(f"num_trees={trees:,} trees of depth {depth}, branching {branching} make "
                   f"{nodes:,} nodes; at most {MAX_FOREST_NODES:,}")  # fmt: skip


def real(splits: tuple[str, ...], pe_dim: bool = False) -> Rules:
    """A real graph's rules: its ``split`` among ``splits``, ``seed``; BlogCatalog's ``pe_dim``
    (Laplacian eigenvectors as inputs) in [0, 64]."""

    def rules(values: dict[str, Any]) -> None:
        choice(values, "split", splits)
        seed(values)
        if pe_dim:
            integer(values, "pe_dim", 0, 64)

    return rules


def ogb(values: dict[str, Any]) -> None:
    """``ogbn-*``: ``download`` (None: the download policy), proteins' ``node_aggr``."""
    if values["download"] is not None and not isinstance(values["download"], bool):
        raise fail(f"download must be true or false, got {values['download']!r}")
    if "node_aggr" in values:
        choice(values, "node_aggr", NODE_AGGRS)


def tree_size(depth: int, branching: int) -> int:
    """Nodes in one complete tree of ``synthetic-depth``: 1 + b + ... + b^k (k + 1 for chains)."""
    return depth + 1 if branching == 1 else (branching ** (depth + 1) - 1) // (branching - 1)


# --- what building a generated graph takes ----------------------------------------------------------
def build_bytes(size: str, values: dict[str, Any]) -> int:
    """Peak bytes of generating a graph of construction ``size`` ("ring": synthetic-proteins,
    "forest": synthetic-depth) with the (checked) options ``values``."""
    if size == "ring":
        nodes, edges = values["num_nodes"], values["num_nodes"] * values["avg_degree"]
        per_node = RING_BYTES["node"] + RING_BYTES["node_task"] * values["num_tasks"]
        return RING_BYTES["edge"] * edges + per_node * nodes
    nodes = values["num_trees"] * tree_size(values["depth"], values["branching"])
    edges = 2 * (nodes - values["num_trees"])
    return 32 * edges + (48 + 4 * (1 + values["noise_features"])) * nodes


def machine_memory() -> int:
    """This machine's physical memory in bytes."""
    return os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")


def check_fits(name: str, size: str, values: dict[str, Any]) -> None:
    """Refuse (``ConfigError``) a generated graph whose building would take more than this
    machine's memory."""
    from bench.units import format_bytes

    need, have = build_bytes(size, values), machine_memory()
    if need > have:
        knobs = "num_nodes or avg_degree" if size == "ring" else "num_trees, depth or branching"
        raise fail(f"{name} with these options takes about {format_bytes(need)} to generate "
                   f"and this machine has {format_bytes(have)} of memory: lower {knobs}")  # fmt: skip
