"""``python -m bench ablate SPEC``: run an ablation spec as a resumable, shareable Optuna study.

One study per (spec, profile), named ``<spec>-<profile>``, run by the study runner
(:mod:`bench.harness.runner`) with the grid queue as its way of choosing trials
(:class:`bench.harness.queue.GridQueue`): one or more workers here, or cluster jobs
(:mod:`bench.harness.launch`). Before anything is stored, :mod:`bench.harness.preflight`
checks what the points need. This module is the command: its flags, :class:`SweepOptions`
(the flags as one object), :func:`run_sweep` and what the command prints."""

from __future__ import annotations

import argparse
import dataclasses
import os
import sys
from dataclasses import dataclass
from pathlib import Path

import optuna

from bench.errors import ConfigError, DataError
from bench.exports.paths import file_in
from bench.harness import launch, preflight, runner
from bench.harness.artifacts import artifact_dir, folder_problem
from bench.harness.credentials import ENV_VAR, mask_text, mask_url, storage_from
from bench.harness.progress import command_line, command_words, point_label, summary_table
from bench.harness.queue import GridQueue, study_name
from bench.harness.runner import RunnerOptions, StudyResult
from bench.harness.source import RunFn
from bench.harness.spec import (
    DEFAULT_PROFILE,
    MAX_POINTS,
    MAX_SEEDS,
    Point,
    Spec,
    SpecError,
    load_spec,
)
from bench.harness.storage import (
    DEFAULT_HEARTBEAT_S,
    STORAGE_ERRORS,
    storage_failure,
    storage_url,
)
from bench.harness.worker import POLL_S, WorkerOptions

# the flags that name a sweep's study and seeds (its rerun command and its worker jobs repeat them)
RESUME_FLAGS = ("profile", "results_dir", "seeds", "device", "artifact_dir", "max_points")
RESUME_DEFAULTS = {"results_dir": Path("results"), "device": "auto", "max_points": MAX_POINTS}


@dataclass(frozen=True)
class SweepOptions:
    """One ``ablate`` invocation, named like its flags. ``rerun``: point keys to run again
    whatever their record (``reproduce --rerun-stale``); ``check``: preflight first (a
    :class:`~bench.harness.preflight.PreflightError`, nothing stored, if a need is unmet);
    ``launch``: the launcher options when cluster jobs run the sweep; ``artifact_dir``: where
    each record is uploaded as an artifact (None: beside the storage,
    :func:`bench.harness.artifacts.artifact_dir`); ``replace``: the export rewrites the
    study's table instead of merging into it."""

    spec: str | Path
    profile: str = DEFAULT_PROFILE
    storage: str | None = None
    workers: int | None = None  # default: one per GPU, else 1
    seeds: int | None = None  # seeds 0..N-1 instead of the spec's
    max_points: int = MAX_POINTS  # the most trials the profile may expand to
    retry_failed: bool = False
    results_dir: Path = Path("results")
    device: str = "auto"
    heartbeat: int = DEFAULT_HEARTBEAT_S
    trial_timeout: float | None = None
    progress: bool = True
    poll_s: float = POLL_S
    check: bool = True
    rerun: set[str] | None = None
    launch: argparse.Namespace | None = None
    artifact_dir: Path | None = None
    replace: bool = False

    @classmethod
    def from_args(cls, args: argparse.Namespace, storage: str | None) -> SweepOptions:
        """The command line's options (``storage``: the flag or ``$BENCH_STORAGE``)."""
        return cls(
            spec=args.spec,
            profile=args.profile,
            storage=storage,
            workers=args.workers,
            seeds=args.seeds,
            max_points=args.max_points,
            retry_failed=args.retry_failed,
            results_dir=args.results_dir,
            device=args.device,
            heartbeat=args.heartbeat,
            trial_timeout=args.trial_timeout,
            progress=not args.no_progress,
            launch=args if args.launcher != "local" else None,
            artifact_dir=args.artifact_dir,
            replace=args.replace,
        )


def _resolve_device(device: str) -> str:
    if device != "auto":
        return device
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def _gpu_ids() -> list[str]:
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    if visible:
        return [g for g in visible.split(",") if g.strip()]
    import torch

    return [str(i) for i in range(torch.cuda.device_count())]


def run_sweep(options: SweepOptions, run_fn: RunFn | None = None) -> StudyResult:
    """Run (or resume) the study of ``options.spec``/``options.profile``; see the module
    docstring. ``run_fn`` replaces :func:`bench.trial.run_trial_isolated` (it must be a
    module-level function when ``workers > 1``: worker processes are spawned). With jobs
    (``options.launch``) this process checks and queues, then waits for them."""
    spec = load_spec(options.spec, max_points=options.max_points)
    seeds = range(options.seeds) if options.seeds else None
    points = spec.points(options.profile, seeds, options.max_points)
    jobs = options.launch
    if jobs is not None:  # a job's node decides "auto" (cuda where the jobs get GPUs)
        device = "cuda" if options.device == "auto" and jobs.gpus_per_job else options.device
    else:
        device = _resolve_device(options.device)
    gpus = tuple(_gpu_ids()) if device == "cuda" and jobs is None else ()
    workers = options.workers if options.workers is not None else max(1, len(gpus))
    if workers < 1:
        raise ValueError("--workers must be at least 1")
    url = storage_url(options.storage, spec.name, options.results_dir)
    if options.check:
        _preflight(points, device, url)
    source = GridQueue(
        name=study_name(spec.name, options.profile),
        points=points,
        attrs=_attrs(spec, options.profile),
        device=device,
        trial_timeout=options.trial_timeout,
        retry_failed=options.retry_failed,
        rerun=options.rerun,
        command=_job_command(options) if jobs is not None else (),
        results_dir=options.results_dir,
        artifacts=options.artifact_dir or artifact_dir(url, spec.name, options.results_dir),
        replace=options.replace,
    )
    run_options = RunnerOptions(
        worker=WorkerOptions(url, options.heartbeat, poll_s=options.poll_s),
        workers=workers,
        gpus=gpus,
        progress=options.progress and jobs is None,  # jobs: their submitter only waits
        jobs=jobs,
        results_dir=options.results_dir,
    )
    return runner.run_study(source, run_options, run_fn)


def _preflight(points: list[Point], device: str, url: str) -> None:
    """Raise :class:`~bench.harness.preflight.PreflightError` if the points' needs are unmet:
    checked on the configs as the workers will run them (device set), unvalidated, so a
    missing device is a preflight problem here, not a ConfigError."""
    configs = [p.config if device == "auto" else dataclasses.replace(p.config, device=device)
               for p in points]  # fmt: skip
    problems = preflight.check(configs, url, labels=[point_label(p) for p in points])
    if problems:
        raise preflight.PreflightError(problems)


def _attrs(spec: Spec, profile: str) -> dict[str, object]:
    """The study's user attributes: what it is and what it reproduces."""
    return {"spec": spec.name, "profile": profile, "kind": "ablation",
            "description": spec.profiles[profile].description,
            "reproduces": spec.reproduces}  # fmt: skip


def _job_command(options: SweepOptions) -> tuple[str, ...]:
    """What a worker job runs: the ordinary ``ablate`` command (the same study and seeds) as
    a worker; its storage comes in ``$BENCH_STORAGE`` (:mod:`bench.harness.credentials`)."""
    words = command_words("ablate", str(options.spec), options, RESUME_FLAGS, RESUME_DEFAULTS)
    command = [sys.executable, *words[1:], "--worker-job", "--no-progress",
               "--heartbeat", str(options.heartbeat)]  # fmt: skip
    if options.trial_timeout is not None:
        command += ["--trial-timeout", str(options.trial_timeout)]
    gpus = options.launch.gpus_per_job if options.launch is not None else 0
    if gpus > 1:
        command += ["--workers", str(gpus)]  # one worker per GPU of the job
    return tuple(command)


def rerun_command(args: argparse.Namespace | SweepOptions) -> str:
    """The ``ablate`` command that resumes this sweep, to print: ``--storage`` as given, its
    password masked (a storage from ``$BENCH_STORAGE`` needs no flag)."""
    flags = (*RESUME_FLAGS, "storage")
    return command_line("ablate", str(args.spec), args, flags, RESUME_DEFAULTS)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("spec", help="spec name (ablations/NAME.toml) or path to a .toml file")
    parser.add_argument(
        "--profile", default=DEFAULT_PROFILE, help="cpu (default), real, paper, ..."
    )
    parser.add_argument(
        "--storage",
        help="Optuna storage URL (default: $BENCH_STORAGE, else sqlite:///RESULTS/SPEC.db); "
        "e.g. postgresql+psycopg2://user@host/db to share one study across machines (keep "
        "the password out of it: libpq reads PGPASSWORD, ~/.pgpass, PGPASSFILE)",
    )
    parser.add_argument(
        "--workers", type=int, help="local worker processes (default: one per GPU, else 1)"
    )
    parser.add_argument(
        "--seeds",
        type=int,
        help=f"run seeds 0..N-1 instead of the spec's seeds (at most {MAX_SEEDS:,})",
    )
    parser.add_argument(
        "--max-points",
        type=int,
        default=MAX_POINTS,
        metavar="N",
        help="the most trials a profile may expand to, a guard against a grid typed too large "
        "(default: %(default)s)",
    )
    parser.add_argument(
        "--retry-failed",
        action="store_true",
        help="run again the points whose latest record is oom/diverged/timeout/error",
    )
    parser.add_argument(
        "--skip-missing-profile",
        action="store_true",
        help="exit quietly (0) when the spec has no such profile",
    )
    parser.add_argument(
        "--results-dir", type=Path, default=Path("results"), help="default: results"
    )
    parser.add_argument(
        "--artifact-dir",
        type=Path,
        help="where each trial's record is kept as a file for optuna-dashboard --artifact-dir "
        "(default: beside the storage, e.g. RESULTS/SPEC.artifacts)",
    )
    parser.add_argument(
        "--device",
        choices=("auto", "cpu", "cuda"),
        default="auto",
        help="where trials run (default: cuda if available)",
    )
    parser.add_argument(
        "--heartbeat",
        type=int,
        default=DEFAULT_HEARTBEAT_S,
        help="seconds between worker heartbeats; a trial silent for 3 beats is "
        f"taken as lost (default {DEFAULT_HEARTBEAT_S})",
    )
    parser.add_argument("--trial-timeout", type=float, help="hard wall-clock limit per trial (s)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    parser.add_argument(
        "--replace",
        action="store_true",
        help="rewrite the study's table from the study alone (default: merge into the table "
        "there, keeping the rows of points the study does not hold)",
    )
    parser.add_argument(
        "--dry-run", action="store_true", help="validate and list the points; run nothing"
    )
    # a job of --launcher slurm: work, summarise, but leave the export to the submitter
    parser.add_argument("--worker-job", action="store_true", help=argparse.SUPPRESS)
    launch.add_arguments(parser)


def main(args: argparse.Namespace) -> int:
    loaded = _spec_points(args)
    if isinstance(loaded, int):
        return loaded
    spec, points = loaded
    for line in preflight.graph_file_notes(p.config for p in points):  # what a file's y says
        print(f"ablate: dataset {line}")
    if args.dry_run:
        return _dry_run(spec, points, args)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    try:
        storage = storage_from(args.storage, "ablate")
        if args.worker_job and storage is None:
            raise ConfigError("worker_job", f"no storage named; a job gets it in ${ENV_VAR} "
                              "from the submitting command (check that the scheduler passes "
                              "the environment on)")  # fmt: skip
        launch.validate(args, storage)  # before anything is checked or stored
        if not (args.replace or args.worker_job):  # the table the export will merge into
            _check_table(args.results_dir, study_name(spec.name, args.profile))
    except ConfigError as exc:
        print(f"ablate: {exc.for_cli()}", file=sys.stderr)
        return 2
    except DataError as exc:
        print(f"ablate: {exc}", file=sys.stderr)
        return 2
    try:
        result = run_sweep(SweepOptions.from_args(args, storage))
    except preflight.PreflightError as exc:
        preflight.report(exc.problems, "ablate")
        return 2
    except STORAGE_ERRORS as exc:  # the storage went away mid-sweep: nothing finished is lost
        print(
            f"ablate: the storage failed mid-sweep ({mask_text(storage_failure(exc), storage)}); "
            "finished trials are kept, the running one is retried: once it is reachable again, "
            f"run the same command: {rerun_command(args)}",
            file=sys.stderr,
        )
        return 1
    except KeyboardInterrupt:
        print(
            "\nablate: interrupted; finished trials are kept, run the same command to resume",
            file=sys.stderr,
        )
        return 130
    return _close(result, points, args)


def _check_table(results_dir: Path, name: str) -> None:
    """Refuse (:class:`~bench.errors.DataError`) before anything runs when the export would
    meet a table it cannot merge into (:func:`bench.exports.merge.existing_table`)."""
    from bench.exports.merge import existing_table

    path = file_in(results_dir, name, ".csv", "study")
    if path.exists():
        existing_table(path)


def _spec_points(args: argparse.Namespace) -> tuple[Spec, list[Point]] | int:
    """The spec and its profile's points, or the exit code of a refusal (message printed)."""
    refused = _refuse(args)
    if refused is not None:
        return refused
    try:
        spec = load_spec(args.spec, max_points=args.max_points)
        refused = _refuse_profile(spec, args)
        if refused is not None:
            return refused
        seeds = range(args.seeds) if args.seeds else None
        return spec, spec.points(args.profile, seeds, args.max_points)
    except SpecError as exc:
        print(f"ablate: {exc}", file=sys.stderr)
        return 2


def _refuse(args: argparse.Namespace) -> int | None:
    """2 for a count out of range (message printed), else None; before the spec is read."""
    limits = (("workers", args.workers, None), ("seeds", args.seeds, MAX_SEEDS),
              ("max_points", args.max_points, None))  # fmt: skip
    for flag, value, most in limits:
        if value is not None and value < 1:
            print(f"ablate: --{flag.replace('_', '-')}: must be at least 1", file=sys.stderr)
            return 2
        if value is not None and most is not None and value > most:
            print(f"ablate: --{flag}: at most {most:,}, got {value:,}", file=sys.stderr)
            return 2
    problem = folder_problem(args.artifact_dir) if args.artifact_dir is not None else None
    if problem is not None:
        print(f"ablate: --artifact-dir: {problem}", file=sys.stderr)
        return 2
    return None


def _refuse_profile(spec: Spec, args: argparse.Namespace) -> int | None:
    """The exit code for a profile the spec lacks (message printed), else None."""
    if args.profile in spec.profiles:
        return None
    if args.skip_missing_profile:
        print(f"ablate: {spec.name} has no profile {args.profile!r}; skipped")
        return 0
    print(f"ablate: {spec.path}: profiles.{args.profile}: no such profile "
          f"(this spec has: {', '.join(spec.profiles)})", file=sys.stderr)  # fmt: skip
    return 2


def _dry_run(spec: Spec, points: list[Point], args: argparse.Namespace) -> int:
    """List the points, then the plan's predicted time; run nothing."""
    from bench.measure.time_model import plan_lines

    for point in points:
        shown = ", ".join(f"{k}={v}" for k, v in point.varying.items())
        print(f"{point.index:4d} {point.key} {point.label or ''} {shown}")
    print(f"{len(points)} trials in {study_name(spec.name, args.profile)}")
    for line in plan_lines([p.config for p in points], args.workers):
        print(line)
    return 0


def _close(result: StudyResult, points: list[Point], args: argparse.Namespace) -> int:
    """The closing table, the counts, one line per failure kind; export when complete."""
    print(summary_table(result.study, points))
    print(
        f"{result.study_name}: {result.done}/{result.total} points have a record "
        f"({result.failed} not ok), {result.ran_here} run now, {result.seconds:.0f} s; "
        f"storage {mask_url(result.url)}"
    )
    for line in result.failure_lines(rerun_command(args)):
        print(line)
    if result.complete and not args.worker_job:  # a job leaves the export to the submitter
        try:
            result.export()
        except DataError as exc:  # the table changed while the sweep ran; the study keeps all
            print(f"ablate: {exc}", file=sys.stderr)
            return 1
    return 0 if result.complete else 1
