"""One trial end to end: complete records for every arch, in-process, via the CLI and via an
isolated child; every failure mode becomes a status; bad input is refused before training;
same seed, same numbers."""

from __future__ import annotations

import dataclasses
import json
import os
import signal
import subprocess
import sys
import time

import pytest
import torch

from bench import cli
from bench.config import TrialConfig
from bench.models import archs as arch_registry
from bench.record import STATUSES, TrialRecord
from bench.trial import FAULT_ENV, parse_bytes, run_trial, run_trial_isolated

TINY = {"num_nodes": 200, "avg_degree": 10, "num_tasks": 8}
BASE = TrialConfig(
    arch="res",
    layers=2,
    channels=8,
    groups=2,
    epochs=2,
    train_parts=2,
    eval_parts=1,
    dataset_options=TINY,
)
CHILD_ENV = {**os.environ, "OMP_NUM_THREADS": "1"}

#: fields every ok record must fill (solver only for deq; error/failed_phase only on failure)
REQUIRED = (
    "metric", "best_valid", "test_at_best_valid", "best_epoch", "params", "peak_memory_bytes",
    "model_state_bytes", "memory_meter", "predicted_params", "predicted_peak_bytes",
    "step_time_s", "epoch_time_s", "device_name", "commit", "wall_time_s",
)  # fmt: skip


def assert_complete(record: TrialRecord, config: TrialConfig) -> None:
    assert record.status == "ok", record.error
    assert record.config == config.to_dict()
    for name in REQUIRED:
        assert getattr(record, name) is not None, name
    assert record.error is None and record.failed_phase is None
    assert record.params == record.predicted_params
    assert record.peak_memory_bytes >= record.model_state_bytes > 0
    assert record.memory_meter == "cpu-live-tensors"
    assert [p["epoch"] for p in record.curve] == list(range(1, config.epochs + 1))
    for point in record.curve:
        assert set(point) == {"epoch", "loss", "valid", "test", "time_s"}
        assert 0.0 <= point["valid"] <= 1.0 and point["loss"] > 0
    best = max(record.curve, key=lambda p: p["valid"])
    assert (record.best_valid, record.test_at_best_valid) == (best["valid"], best["test"])
    assert {"torch", "torch_geometric", "ogb", "optuna", "python", "bench"} <= set(record.versions)
    again = TrialRecord.from_dict(json.loads(record.to_json()))  # JSON round trip
    assert again == record
    if config.arch == "deq":
        assert record.solver is not None
        for key in ("fwd_iters", "fwd_rel_residual", "bwd_iters", "bwd_rel_residual"):
            assert record.solver[f"{key}_mean"] <= record.solver[f"{key}_max"]
        assert 1 <= record.solver["fwd_iters_max"] <= config.model.deq_max_iter
    else:
        assert record.solver is None


@pytest.mark.parametrize("arch", arch_registry.names())
def test_every_arch_gives_a_complete_record_in_process(arch: str) -> None:
    config = BASE.replace(arch=arch, dropout=0.1)
    assert_complete(run_trial(config), config)


@pytest.mark.slow  # a fresh interpreter (torch + PyG imports): ~8 s unloaded
def test_cli_json_in_a_subprocess_is_complete_and_matches_in_process_bit_for_bit() -> None:
    args = [
        "--arch", "rev", "--layers", "3", "--channels", "8", "--epochs", "2", "--train-parts", "2",
        "--eval-parts", "1", "--seed", "3", "--json", "--dataset-option", "num_nodes=200",
        "--dataset-option", "avg_degree=10", "--dataset-option", "num_tasks=8",
    ]  # fmt: skip
    proc = subprocess.run(
        [sys.executable, "-m", "bench", "trial", *args],
        capture_output=True, text=True, env=CHILD_ENV, timeout=300,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    record = TrialRecord.from_dict(json.loads(proc.stdout.strip().splitlines()[-1]))
    config = BASE.replace(arch="rev", layers=3, seed=3)
    assert_complete(record, config)
    assert "epoch 1" in proc.stderr  # progress on stderr (plain lines: not a terminal)
    # another process, same config and seed: identical metrics and curve (timings aside)
    local = run_trial(config)
    strip = [{k: v for k, v in p.items() if k != "time_s"} for p in local.curve]
    assert [{k: v for k, v in p.items() if k != "time_s"} for p in record.curve] == strip
    assert (local.best_valid, local.test_at_best_valid) == (
        record.best_valid,
        record.test_at_best_valid,
    )


@pytest.mark.slow  # a fresh interpreter (torch + PyG imports): ~8 s unloaded
def test_isolated_deq_record_streams_epochs_and_is_complete() -> None:
    config = BASE.replace(arch="deq", deq_max_iter=6, deq_solver="anderson")
    events: list[dict] = []
    record = run_trial_isolated(config, on_epoch=lambda e: events.append(e) and False)
    assert_complete(record, config)
    assert [e["epoch"] for e in events] == [1, 2]
    assert events == record.curve


def test_same_seed_same_curve_bit_for_bit() -> None:
    config = BASE.replace(arch="res", dropout=0.2, epochs=2, seed=7)
    first, second = run_trial(config), run_trial(config)
    drop_time = lambda r: [{k: v for k, v in p.items() if k != "time_s"} for p in r.curve]  # noqa: E731
    assert drop_time(first) == drop_time(second)
    assert (
        first.best_valid == second.best_valid
        and first.test_at_best_valid == second.test_at_best_valid
    )
    other = run_trial(config.replace(seed=8))
    assert drop_time(other) != drop_time(first)  # the seed matters, so equality means something


# --- failures become statuses -----------------------------------------------------------------
def test_memory_cap_gives_oom_with_depth_and_phase() -> None:
    record = run_trial(BASE.replace(layers=4, memory_cap_bytes=100_000))
    assert record.status == "oom"
    assert record.failed_phase == "train"
    assert "at 4 layers" in record.error and "MemoryCapExceeded" in record.error
    json.loads(record.to_json())


def test_huge_learning_rate_diverges() -> None:
    record = run_trial(BASE.replace(lr=1e30, epochs=3))
    assert record.status == "diverged", record.error
    assert "non-finite" in record.error
    assert record.failed_phase in ("train", "eval")


def test_time_budget_ends_the_trial_cleanly_with_a_partial_curve() -> None:
    # the budget is sized from this machine's own pace (setup and two epochs), so a loaded
    # machine still finishes a few epochs inside it
    paced = run_trial(BASE.replace(epochs=2)).wall_time_s
    budget = max(1.5, 3 * paced)
    record = run_trial(BASE.replace(epochs=100_000, timeout=budget))
    assert record.status == "timeout"
    assert 0 < len(record.curve) < 100_000  # partial curve kept
    assert record.best_valid is not None
    assert record.wall_time_s < budget + 30


def test_isolated_child_that_hangs_is_killed_after_its_grace_and_times_out(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv(FAULT_ENV, "hang")  # the child sleeps without checking its budget
    start = time.perf_counter()
    record = run_trial_isolated(BASE, timeout=0.5, grace_s=4.0)
    assert record.status == "timeout"
    assert "killed" in record.error and "0.5 s" in record.error
    assert record.config["timeout"] == 0.5
    assert time.perf_counter() - start < 30


@pytest.mark.slow  # a fresh interpreter (torch + PyG imports): ~8 s unloaded
def test_isolated_child_sigkilled_by_another_process_is_killed_not_oom(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from bench.trial.isolation import oom_kill_count

    monkeypatch.setenv(FAULT_ENV, "sigkill")  # the child SIGKILLs itself: no OOM killer involved
    record = run_trial_isolated(BASE.replace(layers=5))
    assert "SIGKILL" in record.error
    assert record.failed_phase == "train"
    assert record.versions and record.config == BASE.replace(layers=5).to_dict()
    if oom_kill_count() is None:  # no readable cgroup count: the old guess stands
        assert record.status == "oom" and "at 5 layers" in record.error
    else:
        assert record.status == "killed" and record.failure_kind == "environment"


@pytest.mark.parametrize(
    "oom_kills,status,kind",
    [(1, "oom", "config"), (0, "killed", "environment"), (None, "oom", "config")],
)
def test_sigkill_is_oom_only_when_the_oom_killer_counted_a_kill(
    oom_kills: int | None, status: str, kind: str
) -> None:
    from bench.trial.isolation import record_without_child_record

    record = record_without_child_record(
        BASE, -signal.SIGKILL, None, "", [], {}, "train", oom_kills=oom_kills
    )
    assert (record.status, record.failure_kind) == (status, kind)


@pytest.mark.slow  # a fresh interpreter (torch + PyG imports): ~8 s unloaded
def test_isolated_on_epoch_true_prunes_with_the_partial_curve() -> None:
    record = run_trial_isolated(BASE.replace(epochs=1000), on_epoch=lambda e: e["epoch"] >= 2)
    assert record.status == "pruned"
    assert 2 <= len(record.curve) < 1000
    assert record.peak_memory_bytes is not None  # the child stopped itself and reported


def test_setting_only_the_data_can_refuse_is_an_error_record() -> None:
    record = run_trial(BASE.replace(train_parts=500))  # more parts than the 200 nodes
    assert record.status == "error"
    assert "--train-parts" in record.error
    assert record.failed_phase == "setup"


# --- bad input: refused before any training --------------------------------------------------
@pytest.fixture
def no_training(monkeypatch: pytest.MonkeyPatch) -> None:
    def forbidden(*args: object, **kwargs: object) -> None:
        raise AssertionError("training/data loading started for bad input")

    monkeypatch.setattr("bench.trial.training._train", forbidden)
    monkeypatch.setattr("bench.trial.flags.run_trial_isolated", forbidden)
    monkeypatch.setattr("bench.data.load", forbidden)


BAD_INPUT = [
    (["--dataset", "nope"], "--dataset"),
    (["--arch", "mlp"], "--arch"),
    (["--arch", "rev", "--channels", "63", "--groups", "2"], "--groups"),
    (["--epochs", "0"], "--epochs"),
    (["--layers", "-3"], "--layers"),
    (["--lr", "0"], "--lr"),
    (["--lr=-1e-3"], "--lr"),
    (["--arch", "res", "--deq-solver", "anderson"], "--deq-solver"),
    (["--arch", "rev", "--deq-max-iter", "5"], "--deq-max-iter"),
    (["--config-json", '{"layers": 4, "bogus": 1}'], "--bogus"),
]


@pytest.mark.parametrize(("argv", "flag"), BAD_INPUT)
def test_bad_input_is_refused_naming_the_flag(
    argv: list[str], flag: str, no_training: None, capsys: pytest.CaptureFixture[str]
) -> None:
    assert cli.main(["trial", *argv, "--json"]) == 2
    err = capsys.readouterr().err
    assert flag in err and "error" in err


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
def test_cuda_without_cuda_is_refused(
    no_training: None, capsys: pytest.CaptureFixture[str]
) -> None:
    assert cli.main(["trial", "--device", "cuda"]) == 2
    assert "--device" in capsys.readouterr().err


@pytest.mark.parametrize("argv", [["--layers", "two"], ["--memory-cap", "lots"], ["--nope", "1"]])
def test_unparseable_flags_exit_2(argv: list[str], no_training: None) -> None:
    with pytest.raises(SystemExit) as exc:
        cli.main(["trial", *argv])
    assert exc.value.code == 2


def test_bad_input_in_a_subprocess_returns_instantly_with_exit_2() -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "bench", "trial", "--arch", "rev", "--channels", "65"],
        capture_output=True, text=True, env=CHILD_ENV, timeout=120,
    )  # fmt: skip
    assert proc.returncode == 2
    assert "--groups" in proc.stderr and "epoch" not in proc.stderr
    assert proc.stdout == ""


def test_dry_run_predicts_a_1001_layer_revgnn_without_training(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    # the data is loaded (sizes come from it); training must not start
    monkeypatch.setattr("bench.trial.training._train", lambda *a, **k: pytest.fail("trained"))
    start = time.perf_counter()
    code = cli.main(["trial", "--arch", "rev", "--layers", "1001", "--channels", "80", "--dry-run"])
    assert code == 0
    assert time.perf_counter() - start < 20
    out = capsys.readouterr().out
    assert "parameters:" in out and "predicted peak" in out and "MiB" in out


def test_flags_map_onto_config_fields() -> None:
    import argparse

    from bench.trial import add_arguments, config_from_args

    parser = argparse.ArgumentParser()
    add_arguments(parser)
    args = parser.parse_args(
        ["--arch", "deq", "--deq-tol", "1e-3", "--memory-cap", "2GiB", "--dataset-option",
         "num_nodes=300", "--dataset-option", "split=random", "--lr", "0.01", "--timeout", "9"]
    )  # fmt: skip
    config = config_from_args(args)
    assert config.arch == "deq" and config.deq_tol == 1e-3 and config.lr == 0.01
    assert config.memory_cap_bytes == 2 * 1024**3 and config.timeout == 9.0
    assert config.dataset_options == {"num_nodes": 300, "split": "random"}
    # nothing given -> the dataclass defaults
    assert config_from_args(parser.parse_args([])) == TrialConfig()


@pytest.mark.parametrize(
    ("text", "expected"),
    [("4GiB", 4 * 1024**3), ("512MiB", 512 * 1024**2), ("2GB", 2_000_000_000), ("1e9", 10**9),
     ("123", 123), ("1.5KiB", 1536)],
)  # fmt: skip
def test_parse_bytes(text: str, expected: int) -> None:
    assert parse_bytes(text) == expected


def test_statuses_are_the_record_contract() -> None:
    assert set(STATUSES) == {"ok", "oom", "diverged", "timeout", "pruned", "error", "killed"}


def test_isolated_invalid_config_is_an_error_record_naming_the_flag() -> None:
    bad = dataclasses.replace(BASE, arch="rev", channels=9, groups=2)  # skips validation
    record = run_trial_isolated(bad)
    assert record.status == "error"
    assert "--groups" in record.error
    assert record.failed_phase == "setup" and record.curve == []


def test_cpu_step_times_come_only_from_unmetered_epochs() -> None:
    """The live-tensor meter's per-op overhead must not leak into step times: a one-epoch CPU
    trial (all steps metered) reports none; a two-epoch one reports the second epoch's, also
    when a memory cap is set (the cap is enforced in the metered first epoch)."""
    one = run_trial(BASE.replace(epochs=1))
    assert one.status == "ok" and one.peak_memory_bytes
    assert one.step_time_s is None and one.epoch_time_s is None
    two = run_trial(BASE.replace(epochs=2, memory_cap_bytes=2**30))
    assert two.status == "ok" and two.peak_memory_bytes
    assert two.step_time_s is not None and 0 < two.step_time_s < two.epoch_time_s
