"""``python -m bench tune SPEC``: the command line of a tuning study (settings from the file
overridden by flags), its closing summary, and ``--best``."""

from __future__ import annotations

import argparse
import sys
from dataclasses import replace
from pathlib import Path

from bench.errors import ConfigError, cli_exit
from bench.harness import launch, preflight
from bench.harness.artifacts import folder_problem
from bench.harness.credentials import ENV_VAR, mask_url, storage_from
from bench.harness.progress import command_line
from bench.harness.runner import StudyResult
from bench.harness.storage import DEFAULT_HEARTBEAT_S
from bench.tuning.objective import memory_predictor
from bench.tuning.params import SearchSpaceError
from bench.tuning.results import (
    best_config,
    best_trial,
    front_table,
    trial_command,
    write_spec,
)
from bench.tuning.run import run_worker, tune
from bench.tuning.settings import parse_setting
from bench.tuning.space import load_search_space
from bench.tuning.study import TuneRun, load_study
from bench.units import format_bytes

# the flags that name a tuning study, its budget and objectives (its rerun command repeats them)
RESUME_FLAGS = ("storage", "n_trials", "memory_budget", "device", "seed", "results_dir",
                "artifact_dir", "multi_objective")  # fmt: skip


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "spec", help="search space: a name in ablations/tune/ or a path to a TOML file"
    )
    parser.add_argument(
        "--storage",
        help="Optuna storage URL (default: $BENCH_STORAGE, else sqlite:///RESULTS/tune-SPEC.db; "
        "keep the password out of it: libpq reads PGPASSWORD, ~/.pgpass, PGPASSFILE)",
    )
    parser.add_argument("--n-trials", type=int, help="total finished trials the study should hold")
    parser.add_argument("--timeout", type=float, help="seconds: start no new trial after this")
    parser.add_argument(
        "--memory-budget",
        help="peak training memory allowed, e.g. 16GiB or 500MB ('none': no budget)",
    )
    parser.add_argument("--workers", type=int, default=1, help="local worker processes (default 1)")
    parser.add_argument(
        "--multi-objective", action="store_true", help="Pareto front of score vs memory (NSGA-II)"
    )
    parser.add_argument("--device", choices=("cpu", "cuda"), help="override the spec's device")
    parser.add_argument("--seed", type=int, help="sampler seed (default: the spec's)")
    parser.add_argument(
        "--best", action="store_true", help="print the best configuration as a trial command"
    )
    parser.add_argument("--write-spec", type=Path, help="with --best: write it as an ablation spec")
    parser.add_argument(
        "--results-dir", type=Path, default=Path("results"), help="default: results"
    )
    parser.add_argument(
        "--artifact-dir",
        type=Path,
        help="where each trial's record is kept as a file for optuna-dashboard --artifact-dir "
        "(default: beside the storage, e.g. RESULTS/tune-SPEC.artifacts)",
    )
    parser.add_argument(
        "--heartbeat",
        type=int,
        default=DEFAULT_HEARTBEAT_S,
        help="seconds between a worker's heartbeats; a trial silent for 3 heartbeats (its worker "
        f"died) is queued again (default {DEFAULT_HEARTBEAT_S})",
    )
    parser.add_argument("--no-export", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--worker-index", type=int, default=0, help=argparse.SUPPRESS)
    parser.add_argument("--workers-total", type=int, default=1, help=argparse.SUPPRESS)
    # a worker process or job started by run_study: its storage comes in $BENCH_STORAGE
    parser.add_argument("--worker-job", action="store_true", help=argparse.SUPPRESS)
    launch.add_arguments(parser)


def run_from_args(args: argparse.Namespace) -> TuneRun:
    """Settings = the spec's [tune] table overridden by the command line (validated)."""
    space = load_search_space(args.spec)
    if args.device:
        space = space.with_device(args.device)
    next(iter(space.corner_configs()))  # e.g. a CUDA spec on a machine without CUDA
    settings = space.settings
    overrides = {
        "n_trials": args.n_trials,
        "timeout": args.timeout,
        "memory_budget": args.memory_budget,
        "seed": args.seed,
    }
    for name, value in overrides.items():
        if value is not None:
            settings = replace(settings, **{name: parse_setting(name, value)})
    if args.heartbeat < 1:
        raise ConfigError("heartbeat", f"must be at least 1 second, got {args.heartbeat}")
    if args.workers < 1:
        raise ConfigError("workers", f"must be at least 1, got {args.workers}")
    if args.write_spec and not args.best:
        raise ConfigError("write_spec", "only makes sense with --best")
    problem = folder_problem(args.artifact_dir) if args.artifact_dir is not None else None
    if problem is not None:
        raise ConfigError("artifact_dir", problem)
    storage = storage_from(args.storage, "tune")
    if args.worker_job and storage is None:
        raise ConfigError(
            "storage",
            f"none named; a worker job gets it in ${ENV_VAR} from the submitting command "
            "(check that the scheduler passes the environment on)",
        )
    return TuneRun(
        space=space,
        settings=settings,
        multi=args.multi_objective,
        storage=storage,
        results_dir=args.results_dir,
        workers=max(args.workers, args.workers_total),
        worker_index=args.worker_index,
        heartbeat_interval=args.heartbeat,
        artifact_dir=args.artifact_dir,
    )


def main(args: argparse.Namespace) -> int:
    try:
        run = run_from_args(args)
        if args.launcher != "local" and not args.best:
            launch.validate(args, run.storage)  # before anything is checked or stored
        if args.best:
            return _show_best(run, args.write_spec)
        if not (args.worker_index or args.workers_total > 1):  # the parent checks, once
            configs = list(run.space.corner_configs())
            preflight.report_and_exit(preflight.check(configs, run.url), prog="tune")
            for line in preflight.graph_file_notes(configs):  # what a file's y says
                print(f"tune: dataset {line}")
        predict = memory_predictor() if run.settings.memory_budget is not None else None
        if args.worker_index or args.workers_total > 1:
            run_worker(run, predict=predict)
            return 0
        budget = format_bytes(run.settings.memory_budget) if run.settings.memory_budget else "none"
        print(
            f"tuning {run.space.path} -> study {run.study_name} in {mask_url(run.url)}; "
            f"{run.settings.n_trials} trials, budget {budget}, objectives {','.join(run.objective_names)}"
        )
        result = tune(run, predict=predict, jobs=args if args.launcher != "local" else None)
    except SearchSpaceError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    except ConfigError as err:
        return cli_exit(err)
    return _close(result, run, args)


def _close(result: StudyResult, run: TuneRun, args: argparse.Namespace) -> int:
    """The counts, the front (or best trial), one line per failure kind, the export."""
    print(f"\n{result.done} finished trials ({result.counts.running} still running elsewhere)")
    print("Pareto front:" if run.multi else "best trial:")
    print(front_table(result.study))
    for line in result.failure_lines(rerun_command(args)):
        print(line)
    if not args.no_export:
        print(f"wrote {result.export()}")
    return 0


def rerun_command(args: argparse.Namespace) -> str:
    """The ``tune`` command that resumes this study (same storage, budget and objectives), to
    print: ``--storage`` as given, its password masked (``$BENCH_STORAGE`` needs no flag)."""
    return command_line("tune", args.spec, args, RESUME_FLAGS, {"results_dir": Path("results")})


def _show_best(run: TuneRun, spec_path: Path | None) -> int:
    try:
        study = load_study(run)
    except KeyError:
        raise ConfigError(
            "best", f"no study {run.study_name} in {mask_url(run.url)}; tune it first"
        ) from None
    trial = best_trial(study)
    config = best_config(run, trial)
    values = ", ".join(
        f"{n}={v:.6g}" for n, v in zip(run.objective_names, trial.values, strict=True)
    )
    print(f"# best of {run.study_name}: trial {trial.number} ({values})")
    print(trial_command(config))
    if spec_path is not None:
        print(f"wrote {write_spec(spec_path, run, trial, config)}")
    return 0
