"""How long each piece of the backlog takes on a GPU, before it runs.

A trial: the time model (:func:`bench.measure.time_model.estimate_trial`, fitted to the
committed GPU step times). A ``gpu-check`` point: :data:`POINT_S` (its process) plus its steps at
the same model's step time, plus :data:`COMPILE_S` when compiled. The constants say where they
come from; two are estimates, not measurements: :data:`COMPILE_S` (no compile on a GPU was ever
timed) and :data:`PROFILE_EXTRA_S`. Not counted: a first generation of a dataset on a fresh
machine beyond :data:`GPU_CHECK_START_S`, and the trials a partly run study already finished
(a study is predicted whole until its export says otherwise).
"""

from __future__ import annotations

from typing import Any

#: kept back from the budget for ``bench report``: 50 s on this suite's 2-core machine, a margin
REPORT_S = 75.0
#: seconds a gpu-check point takes beyond its steps (process start, imports, CUDA context, the
#: batch's load, building the model), from the committed runs: (351 s - 12 s batch - 103 s of
#: steps) / 16 points on the H100, (218 - 12 - 75) / 10 on the H200: 14.8 and 13.1 s
POINT_S = 14.0
#: a gpu-check call's own start: cutting the proteins part (12 s on the GPU machine), imports
GPU_CHECK_START_S = 20.0
#: torch.compile of a block's graph on a GPU: an estimate (no GPU compile was ever timed)
COMPILE_S = 30.0
#: the profile beyond its 6 steps: the three max-aggregation paths, timed (an estimate)
PROFILE_EXTRA_S = 20.0
#: the CUDA tests: about a minute (issue 38's figure; 9 of them passed on the H100 then)
CUDA_TESTS_S = 60.0
#: timed steps per gpu-check point (after a warm-up and the metered step)
REPEATS = 2


def step_s(arch: str, layers: int, graph: str, channels: int) -> float:
    """One training step's seconds on a gpu-check graph ("paper" or "bench"): the time model's
    fit for the arch's family; PyG's peer at RevGNN's (measured equal: 0.436 against 0.433 s
    on the engines graph)."""
    from bench import paper
    from bench.instruments.gpu_check import ENGINES_GRAPH
    from bench.measure.time_model import calibration
    from bench.models import archs

    kind = archs.get(arch if arch in archs.names() else "rev")
    nodes, edges = paper.proteins_batch() if graph == "paper" else ENGINES_GRAPH
    fit = calibration("cuda")[kind.family]
    return kind.time_factor * fit.step_s(layers, nodes, edges, channels)


def point_seconds(point: Any) -> float:
    """A gpu-check point (:class:`bench.instruments.gpu_check.Point`): its process, a warm-up
    and a metered step, the timed steps (one from ``DEEP_FROM`` layers), a compile."""
    from bench.instruments.gpu_check import DEEP_FROM

    steps = 2 + (1 if point.layers >= DEEP_FROM else REPEATS)
    step = step_s(point.arch, point.layers, point.graph, point.channels)
    return POINT_S + steps * step + (COMPILE_S if point.compile else 0.0)


def profile_seconds() -> float:
    """The RevGNN profile: its process, 2 warm-up steps, one under the sync debugger, 3
    profiled, the aggregation paths; at most its own time limit."""
    from bench.instruments.gpu_check import PROFILE_TIMEOUT_S

    steps = 6 * step_s("rev", 112, "paper", 64)
    return min(PROFILE_TIMEOUT_S, POINT_S + steps + PROFILE_EXTRA_S)


def trial_seconds(config: Any) -> float | None:
    """One trial on a GPU, start-up included (None where the time model does not know it)."""
    from bench.measure.time_model import estimate_trial

    return estimate_trial(config, "cuda")
