"""The study runner: a way of choosing trials is a strategy behind one small protocol. A toy
strategy runs through it unchanged; the grid queue (``ablate``) and the sampler (``tune``) both
go through :func:`bench.harness.runner.run_study`, and their failure lines and rerun commands
come from the one shared function, each in its own words."""

from __future__ import annotations

import argparse
from collections.abc import Iterator
from pathlib import Path
from typing import Any, ClassVar

import optuna
import pandas as pd
import pytest

from bench.config import TrialConfig
from bench.harness import runner
from bench.harness.progress import command_line, failure_lines
from bench.harness.queue import GRID_WORDING, GridQueue
from bench.harness.source import Counts, RunFn, TrialSource, Turn
from bench.harness.storage import record_of, save_record, storage_url
from bench.harness.sweep import SweepOptions, rerun_command, run_sweep
from bench.harness.worker import WorkerOptions
from bench.record import TrialRecord
from bench.tuning import command as tune_command
from bench.tuning.run import tune
from bench.tuning.sampler import SamplerSource
from bench.tuning.space import load_search_space
from bench.tuning.study import TuneRun

SPEC = """
description = "runner test"
seeds = 1
[base]
epochs = 1
layers = 2
channels = 8
[grid]
layers = [1, 2, 3]
[profiles.cpu]
"""
SPACE = """
description = "runner test"
[base]
epochs = 1
[space]
layers = { low = 1, high = 9 }
[tune]
n_trials = 2
seed = 0
pruner = "none"
"""


def fake_run(
    config: TrialConfig, timeout: float | None = None, on_epoch: Any = None
) -> TrialRecord:
    """No training: three layers or more fail (a configuration failure), fewer score by depth."""
    if config.layers >= 3:
        return TrialRecord("error", config.to_dict(), error="boom", failure_kind="config")
    return TrialRecord("ok", config.to_dict(), metric="rocauc", best_valid=0.1 * config.layers,
                       test_at_best_valid=0.1 * config.layers)  # fmt: skip


class Depths:
    """A toy strategy: one trial per depth in ``depths``, asked and told by hand."""

    spawn: ClassVar[bool] = True
    failure_wording: ClassVar[dict[str, str]] = {
        "config": "{n} depth{s} failed ({shown}): {command}",
        "environment": "{n} depth{s} could not run ({example}): {command}",
    }

    def __init__(self, depths: list[int], results_dir: Path) -> None:
        self.name, self.depths, self.results_dir = "depths", depths, results_dir

    def create(self, storage: Any) -> optuna.Study:
        return optuna.create_study(study_name=self.name, storage=storage, direction="maximize",
                                   load_if_exists=True)  # fmt: skip

    def reconcile(self, study: optuna.Study) -> int:
        return 0

    def step(self, study: optuna.Study, run_fn: RunFn) -> Turn:
        done = {t.user_attrs.get("layers") for t in study.get_trials(deepcopy=False)}
        todo = [d for d in self.depths if d not in done]
        if not todo:
            return Turn.DONE
        trial = study.ask()
        trial.set_user_attr("layers", todo[0])
        record = run_fn(TrialConfig(layers=todo[0]))
        save_record(study, trial, record)
        if record.status == "ok":
            study.tell(trial, record.best_valid)
        else:
            study.tell(trial, state=optuna.trial.TrialState.FAIL)
        return Turn.RAN

    def counts(self, study: optuna.Study) -> Counts:
        trials = study.get_trials(deepcopy=False)
        failed = sum(t.state.name == "FAIL" for t in trials)
        return Counts(len(trials), len(self.depths), failed)

    def failed(self, study: optuna.Study) -> Iterator[TrialRecord | None]:
        return (record_of(t) for t in study.get_trials(deepcopy=False))

    def worker_command(self, index: int, total: int) -> list[str]:
        raise NotImplementedError("the toy runs here only")

    def export(self, study: optuna.Study) -> Path:
        path = self.results_dir / "depths.csv"
        pd.DataFrame([{"trial": t.number, "value": t.value} for t in study.trials]).to_csv(path)
        return path


def test_a_toy_strategy_runs_through_the_runner(tmp_path: Path) -> None:
    source: TrialSource = Depths([1, 2, 3], tmp_path)
    options = runner.RunnerOptions(
        WorkerOptions(f"sqlite:///{tmp_path / 'toy.db'}", heartbeat=None)
    )
    result = runner.run_study(source, options, fake_run)
    assert result.ran_here == 3 and result.total == 3 and result.done == 3 and result.failed == 1
    assert [t.user_attrs["layers"] for t in result.study.trials] == [1, 2, 3]
    assert result.failure_lines("rerun") == ["1 depth failed (1 error): rerun"]
    assert len(pd.read_csv(result.export())) == 3

    again = runner.run_study(source, options, fake_run)  # resumed: nothing left to run
    assert again.ran_here == 0 and len(again.study.trials) == 3


def test_grid_and_sampler_go_through_the_same_runner(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    seen: list[TrialSource] = []
    run_study = runner.run_study

    def spy(source: TrialSource, *args: Any) -> runner.StudyResult:
        seen.append(source)
        return run_study(source, *args)

    monkeypatch.setattr(runner, "run_study", spy)
    spec = tmp_path / "mini.toml"
    spec.write_text(SPEC)
    swept = run_sweep(SweepOptions(spec, results_dir=tmp_path, progress=False, device="cpu"),
                      fake_run)  # fmt: skip
    space_path = tmp_path / "space.toml"
    space_path.write_text(SPACE.replace("low = 1, high = 9", "low = 3, high = 4"))
    space = load_search_space(space_path)
    run = TuneRun(space=space, settings=space.settings, results_dir=tmp_path)
    tuned = tune(run, fake_run, log=lambda _: None)
    assert [type(s) for s in seen] == [GridQueue, SamplerSource]

    # one failure_lines, each strategy's words
    assert swept.failure_lines("ablate-again") == failure_lines(
        seen[0], swept.study, "ablate-again"
    )
    assert swept.failure_lines("X") == [GRID_WORDING["config"].format(
        n=1, s="", shown="1 error", command="X")]  # fmt: skip
    assert tuned.failure_lines("Y") == [
        "configuration failures: 2 trial(s) (2 error) are final and count towards --n-trials; "
        "to sample more, raise it: Y"
    ]
    assert tuned.failure_lines("Y") == failure_lines(seen[1], tuned.study, "Y")
    assert (
        swept.export() == tmp_path / "mini-cpu.csv"
        and tuned.export() == tmp_path / "tune-space.csv"
    )


def test_rerun_commands_are_built_once_and_read_as_before() -> None:
    ablate = argparse.Namespace(spec="depth", profile="cpu", storage=None, seeds=3,
                                results_dir=Path("r"), device="cpu")  # fmt: skip
    assert rerun_command(ablate) == (
        "python -m bench ablate depth --profile cpu --results-dir r --seeds 3 --device cpu"
    )
    plain = argparse.Namespace(spec="depth", profile="cpu", storage="sqlite:///x y.db",
                               seeds=None, results_dir=Path("results"), device="auto")  # fmt: skip
    assert (
        rerun_command(plain)
        == "python -m bench ablate depth --profile cpu --storage 'sqlite:///x y.db'"
    )
    assert (
        rerun_command(SweepOptions("depth", "cpu")) == "python -m bench ablate depth --profile cpu"
    )

    parser = argparse.ArgumentParser()
    tune_command.add_arguments(parser)
    args = parser.parse_args(["proteins-small", "--n-trials", "5", "--seed", "0",
                              "--multi-objective", "--results-dir", "out"])  # fmt: skip
    assert tune_command.rerun_command(args) == (
        "python -m bench tune proteins-small --n-trials 5 --seed 0 --results-dir out "
        "--multi-objective"
    )
    assert command_line("tune", "x", args, ("workers",), {"workers": 1}) == "python -m bench tune x"


def test_sweep_options_mirror_the_ablate_flags() -> None:
    """SweepOptions is the ablate command line as one object: its fields are the flags."""
    from bench.harness import sweep

    parser = argparse.ArgumentParser()
    sweep.add_arguments(parser)
    args = parser.parse_args(["depth", "--workers", "2", "--seeds", "3", "--retry-failed",
                              "--device", "cpu", "--trial-timeout", "9", "--no-progress"])  # fmt: skip
    options = SweepOptions.from_args(args, storage=None)
    assert (options.spec, options.workers, options.seeds, options.retry_failed) == (
        "depth",
        2,
        3,
        True,
    )
    assert (options.device, options.trial_timeout, options.progress) == ("cpu", 9.0, False)
    assert options.launch is None
    assert (
        storage_url(options.storage, "depth", options.results_dir) == "sqlite:///results/depth.db"
    )


def test_reproduce_names_its_results_folder_in_rerun_commands(tmp_path: Path) -> None:
    """A rerun hint must reach the same storage: reproduce into another folder (``--quick``'s
    build/quick/results) says ``--results-dir``."""
    from bench.harness.reproduce import ReproduceOptions, reproduce

    spec = tmp_path / "mini.toml"
    spec.write_text(SPEC)
    lines: list[str] = []
    options = ReproduceOptions([spec], ("cpu",), tmp_path / "elsewhere", None, progress=False)
    reproduce(options, run_fn=fake_run, log=lines.append)
    (hint,) = [line for line in lines if "configuration failures" in line]
    assert hint.endswith(
        f"python -m bench ablate mini --profile cpu --results-dir {tmp_path / 'elsewhere'} "
        "--retry-failed"
    )
