"""What a record says about a training step's memory: the baseline alive before it, what the
forward+backward add, the optimiser step apart; metered only after a warm-up step; and the
settings that go with it (deterministic kernels, the paper's shared dropout mask, a dry run
for a GPU this machine lacks)."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
import torch

from bench.config import TrialConfig
from bench.errors import ConfigError
from bench.measure.memory_model import per_layer_params
from bench.measure.meters import metered_step
from bench.models import build_model
from bench.trial import run_trial

SMALL = {"num_nodes": 200, "avg_degree": 8}


def _trial(**over: object):  # noqa: ANN202 - a TrialRecord
    values = dict(arch="rev", layers=2, channels=8, epochs=2, train_parts=2, eval_parts=1,
                  dataset_options=SMALL)  # fmt: skip
    values.update(over)
    return run_trial(TrialConfig.from_dict(values))


def test_metered_step_splits_forward_backward_from_the_optimiser() -> None:
    model = torch.nn.Linear(64, 64)
    optimizer = torch.optim.Adam(model.parameters())
    x = torch.randn(32, 64)

    def forward_backward() -> None:
        model(x).square().sum().backward()

    _, first = metered_step("cpu", forward_backward, optimizer.step)
    optimizer.zero_grad(set_to_none=True)
    _, second = metered_step("cpu", forward_backward, optimizer.step)
    weights = 4 * (64 * 64 + 64)
    # Adam's two moments exist from the first step on: the second step's baseline holds them
    assert second.baseline_bytes - first.baseline_bytes == 2 * weights
    assert second.peak_bytes == max(second.fwd_bwd_peak_bytes, second.optimizer_peak_bytes)
    assert second.step_added_bytes == second.fwd_bwd_peak_bytes - second.baseline_bytes
    assert second.step_added_bytes >= weights  # the gradients the backward allocates


def test_full_batch_memory_is_metered_after_the_warm_up_step() -> None:
    """Before: a full-batch epoch is one step, metered before Adam's moments existed, so model
    state was subtracted for memory that was not there and activations fell with depth."""
    records = {L: _trial(layers=L, batching="full", epochs=2) for L in (2, 8)}
    for record in records.values():
        assert record.status == "ok", record.error
        assert record.metered_steps == 1  # epoch 2's step, after the warm-up step of epoch 1
        assert record.baseline_bytes >= 12 * record.params  # weights + two Adam moments
        assert record.peak_memory_bytes == max(
            record.fwd_bwd_peak_bytes, record.optimizer_peak_bytes
        )
    acts = {L: r.step_added_bytes - 4 * r.params for L, r in records.items()}
    assert acts[8] >= acts[2] * 0.98  # flat for rev, and never falling with depth


def test_mini_batch_steps_after_the_first_are_metered() -> None:
    record = _trial(train_parts=3, epochs=2)
    assert record.status == "ok" and record.metered_steps == 2  # epoch 1's steps but the first
    assert record.step_time_s is not None  # epoch 2 is unmetered and timed
    assert record.deterministic is True  # the CPU default: bit-identical reruns
    assert record.optimizer_impl.startswith("Adam(")


def test_per_layer_params_match_the_built_model() -> None:
    for arch, groups in (("res", 1), ("rev", 2), ("rev", 3), ("rev", 4)):
        for edge_dim in (8, None):
            with torch.device("meta"):
                two, three = (
                    build_model(arch, 16, edge_dim, 112, L, 48, groups=max(groups, 2))
                    for L in (2, 3)
                )
            built = sum(p.numel() for p in three.parameters()) - sum(
                p.numel() for p in two.parameters()
            )
            assert built == per_layer_params(48, groups, edge_dim is not None), (arch, groups)


def test_share_mask_is_a_reversible_setting() -> None:
    assert TrialConfig(arch="rev", share_mask=True).validated().share_mask is True
    with pytest.raises(ConfigError) as err:
        TrialConfig(arch="res", share_mask=True).validated()
    assert err.value.flag == "--share-mask"
    record = _trial(share_mask=True, epochs=1)
    assert record.status == "ok" and record.config["share_mask"] is True


def test_dry_run_predicts_a_gpu_from_this_machine() -> None:
    """Before: --device cuda was refused on a machine without CUDA, even for a dry run."""
    command = [sys.executable, "-m", "bench", "trial", "--arch", "rev", "--layers", "112",
               "--channels", "64", "--device", "cuda", "--dry-run", "--json",
               "--target-memory", "32GB", "--dataset-option", "num_nodes=300"]  # fmt: skip
    done = subprocess.run(command, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    out = json.loads(done.stdout.strip().splitlines()[-1])
    assert out["config"]["device"] == "cuda" and out["fits"] is True
    assert out["predicted_peak_bytes"] == out["total_bytes"]
    assert out["predicted_fwd_bwd_bytes"] <= out["predicted_peak_bytes"]
    if not torch.cuda.is_available():  # training still needs the device
        train = subprocess.run(command[:-6] + ["--epochs", "1"], capture_output=True, text=True,
                               timeout=300)  # fmt: skip
        assert train.returncode == 2 and "no CUDA device" in train.stderr
