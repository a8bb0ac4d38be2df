"""The time estimate of ``ablate --dry-run`` (``bench.measure.time_model``), and the shape of the
GPU profiles it plans: their dry run from a machine without a GPU, and their points run on CPU
at a small size."""

from __future__ import annotations

import dataclasses
import json
import re
import subprocess
import sys

import pytest

from bench.config import TrialConfig
from bench.harness.spec import load_spec
from bench.measure.time_model import batch_size, calibration, estimate_trial, plan_lines
from bench.trial import run_trial

GPU_BUDGET_MIN = 8.0  # issue 25: the two gpu profiles together, on an H200


@pytest.mark.parametrize("device", ["cuda", "cpu"])
def test_each_fit_matches_its_calibration_points(device: str) -> None:
    fits = calibration(device)
    assert set(fits) == {"residual", "reversible", "equilibrium"}  # one fit per family
    for fit in fits.values():
        assert fit.points >= 2 and fit.overhead >= 0 and fit.cost > 0
        assert fit.worst_ratio < 1.6  # stated in the dry run's line
    if device == "cuda":  # a 112-layer ResGNN-64 step on a proteins part: gpu-check's 0.45 s
        assert fits["residual"].step_s(112, 13_254, 788_824, 64) == pytest.approx(0.45, rel=0.25)


def test_estimates_grow_with_depth_epochs_and_batches() -> None:
    base = TrialConfig(dataset="synthetic-depth", arch="res", layers=4, epochs=10,
                       dataset_options={"depth": 4, "num_trees": 10_000})  # fmt: skip
    t = estimate_trial(base, "cpu")
    assert t is not None and t > 0
    assert estimate_trial(base.replace(layers=8), "cpu") > t
    assert estimate_trial(base.replace(epochs=20), "cpu") > t
    assert estimate_trial(base.replace(arch="rev"), "cpu") > t  # a reversible step costs more
    assert estimate_trial(base, "cuda") < t
    # a random partition keeps E / k^2 edges a part, whole trees keep E / k
    assert batch_size("synthetic-proteins", 1000, 10_000, 10) == (100, 100)
    assert batch_size("synthetic-depth", 1000, 10_000, 10) == (100, 1000)
    assert estimate_trial(base.replace(dataset="cora", dataset_options={}), "cpu") is not None
    one, two = plan_lines([base] * 4, workers=1), plan_lines([base] * 4, workers=2)
    assert "2 workers" in two[1] and _minutes(two[1]) < _minutes(one[1])


def _minutes(line: str) -> float:
    number, unit = re.search(r": ([0-9.]+) (s|min|h) for", line).groups()
    return float(number) * {"s": 1 / 60, "min": 1, "h": 60}[unit]


def _dry_run(spec: str) -> list[str]:
    out = subprocess.run(
        [sys.executable, "-m", "bench", "ablate", spec, "--profile", "gpu", "--dry-run"],
        capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip
    return out.strip().splitlines()


def test_gpu_profiles_dry_run_anywhere_and_fit_the_gpu_budget() -> None:
    total = 0.0
    for spec, trials in (("accuracy", 8), ("depth", 6)):
        lines = _dry_run(spec)
        assert f"{trials} trials in {spec}-gpu" in lines
        gpu = next(line for line in lines if line.startswith("predicted time on one GPU"))
        assert "gpu-check.csv" in gpu and f"for {trials} trials" in gpu
        total += _minutes(gpu)
    assert total <= GPU_BUDGET_MIN


def test_accuracy_gpu_profile_is_the_cpu_task_scaled() -> None:
    spec = load_spec("accuracy")
    cpu, gpu = (spec.points(p) for p in ("cpu", "gpu"))
    assert {p.config.dataset for p in gpu} == {"synthetic-depth"}
    options = {json.dumps({**p.config.dataset_options, "num_trees": None}) for p in gpu}
    assert options == {json.dumps({**p.config.dataset_options, "num_trees": None}) for p in cpu}
    k = {p.config.dataset_options["depth"] for p in gpu}
    assert {p.config.memory_cap_bytes for p in gpu} == {14_000_000_000}
    # res stays short of the k hops under the budget only if its deepest point needs them
    assert max(p.config.layers for p in gpu if p.config.arch == "res") >= max(k)


@pytest.mark.parametrize("spec", ["accuracy", "depth"])
def test_gpu_profile_points_run_on_cpu_at_a_small_size(spec: str) -> None:
    """Each arch of the profile, shrunk (a small graph, few layers, one epoch), trains here."""
    points = load_spec(spec).points("gpu")
    first = {p.config.arch: p.config for p in points}  # one point per arch
    for arch, config in first.items():
        small = dataclasses.replace(
            config, layers=2, epochs=1, memory_cap_bytes=None,
            dataset="synthetic-depth" if spec == "accuracy" else "synthetic-proteins",
            dataset_options={"depth": 2, "num_trees": 30} if spec == "accuracy"
            else {"num_nodes": 200, "avg_degree": 4, "num_tasks": 4},
            train_parts=min(config.train_parts, 2), eval_parts=1,
        ).validated()  # fmt: skip
        record = run_trial(small)
        assert record.status == "ok", (arch, record.error)
        assert record.receptive_hops == (4 if arch in ("rev", "wt-rev") else 3 if arch == "deq"
                                         else 2)  # fmt: skip
