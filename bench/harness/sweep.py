"""``python -m bench ablate SPEC``: run an ablation spec as a resumable, shareable Optuna study.

One study per (spec, profile), named ``<spec>-<profile>``, used as a work queue
(:mod:`bench.harness.queue`) by one or more workers (:mod:`bench.harness.worker`), here or as
cluster jobs (:mod:`bench.harness.launch`). Before anything is stored,
:mod:`bench.harness.preflight` checks what the points need."""

from __future__ import annotations

import argparse
import dataclasses
import multiprocessing
import os
import shlex
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import optuna
from sqlalchemy.exc import SQLAlchemyError

from bench.errors import ConfigError
from bench.harness import launch, preflight
from bench.harness.credentials import ENV_VAR, mask_text, mask_url, storage_from
from bench.harness.export import export_study
from bench.harness.progress import (
    failure_lines,
    point_label,
    progress_counts,
    show_progress,
    summary_table,
)
from bench.harness.queue import POLL_S, metric_name, open_study, reconcile, study_name
from bench.harness.spec import DEFAULT_PROFILE, Point, SpecError, load_spec
from bench.harness.storage import DEFAULT_HEARTBEAT_S, open_storage, storage_url
from bench.harness.worker import RunFn, WorkerOptions, worker_loop, worker_process


@dataclass
class SweepResult:
    study_name: str
    url: str
    total: int
    done: int
    failed: int
    ran_here: int
    seconds: float
    environment: int = 0  # points whose latest record is an environment failure (no result)

    @property
    def complete(self) -> bool:
        """Every point has a result (an environment failure is none)."""
        return self.done == self.total and self.environment == 0

    @classmethod
    def of(
        cls, study: optuna.Study, points: list[Point], url: str, ran: int, started: float
    ) -> SweepResult:
        """Where ``study`` stands now over ``points``; ``started``: ``time.perf_counter()``."""
        counts = progress_counts(study, points)
        return cls(
            study.study_name,
            url,
            len(points),
            counts["done"],
            counts["failed"],
            ran,
            time.perf_counter() - started,
            counts["environment"],
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


def run_sweep(
    spec: str | Path,
    profile: str = DEFAULT_PROFILE,
    storage: str | None = None,
    workers: int | None = None,
    seeds: int | None = None,
    retry_failed: bool = False,
    results_dir: Path = Path("results"),
    device: str = "auto",
    heartbeat: int = DEFAULT_HEARTBEAT_S,
    trial_timeout: float | None = None,
    run_fn: RunFn | None = None,
    progress: bool = True,
    poll_s: float = POLL_S,
    check: bool = True,
    rerun: set[str] | None = None,
) -> SweepResult:
    """Run (or resume) the study of ``spec``/``profile``; see the module docstring.
    ``rerun``: point keys to run again whatever their record (``reproduce --rerun-stale``).

    ``run_fn`` replaces :func:`bench.trial.run_trial_isolated` (it must be a module-level
    function when ``workers > 1``: worker processes are spawned). With ``check`` (the
    default) the points' requirements are checked first and a
    :class:`~bench.harness.preflight.PreflightError` raised, with nothing stored, if any is unmet."""
    clock = time.perf_counter()
    parsed = load_spec(spec)
    points = parsed.points(profile, range(seeds) if seeds else None)
    device = _resolve_device(device)
    gpus = _gpu_ids() if device == "cuda" else []
    if workers is None:
        workers = max(1, len(gpus))
    if workers < 1:
        raise ValueError("--workers must be at least 1")
    name = study_name(parsed.name, profile)
    url = storage_url(storage, parsed.name, results_dir)
    if check:
        # the configs as the workers will run them (device set), unvalidated: a missing
        # device is a preflight problem here, not a ConfigError
        configs = [dataclasses.replace(p.config, device=device) for p in points]
        problems = preflight.check(configs, url, labels=[point_label(p) for p in points])
        if problems:
            raise preflight.PreflightError(problems)
    attrs = {
        "spec": parsed.name,
        "profile": profile,
        "kind": "ablation",
        "description": parsed.profiles[profile].description,
        "reproduces": parsed.reproduces,
    }
    study = open_study(url, name, attrs, heartbeat, metric_name(points))
    reconcile(study, points, retry_failed=retry_failed, retry_environment=True, rerun=rerun)

    def options(i: int) -> WorkerOptions:
        gpu = gpus[i % len(gpus)] if gpus else None
        return WorkerOptions(url, name, points, device, heartbeat, trial_timeout, poll_s, gpu)

    stop = threading.Event()
    monitor = threading.Thread(
        target=show_progress, args=(study, points, stop, progress), daemon=True
    )
    monitor.start()
    ran = 0
    try:
        if workers == 1:
            ran = worker_loop(options(0), run_fn)
        else:
            ctx = multiprocessing.get_context("spawn")
            counter = ctx.Value("i", 0)
            procs = [
                ctx.Process(target=worker_process, args=(options(i), run_fn, counter))
                for i in range(workers)
            ]
            for proc in procs:
                proc.start()
            try:
                for proc in procs:
                    proc.join()
                ran = counter.value
            except KeyboardInterrupt:
                for proc in procs:
                    proc.join(timeout=30)
                raise
    finally:
        stop.set()
        monitor.join()
    return SweepResult.of(study, points, url, ran, clock)


def _resume_words(args: argparse.Namespace) -> list[str]:
    """The ``ablate`` words that resume this sweep (same study and seeds), storage aside."""
    words = ["python", "-m", "bench", "ablate", str(args.spec), "--profile", args.profile]
    if Path(args.results_dir) != Path("results"):
        words += ["--results-dir", str(args.results_dir)]
    if args.seeds:
        words += ["--seeds", str(args.seeds)]
    if args.device != "auto":
        words += ["--device", args.device]
    return words


def rerun_command(args: argparse.Namespace) -> str:
    """The ``ablate`` command that resumes this sweep, to print: ``--storage`` as given, its
    password masked (a storage from ``$BENCH_STORAGE`` needs no flag)."""
    words = _resume_words(args)
    if args.storage:
        words += ["--storage", mask_url(args.storage)]
    return shlex.join(words)


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
    parser.add_argument("--seeds", type=int, help="run seeds 0..N-1 instead of the spec's seeds")
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
        "--dry-run", action="store_true", help="validate and list the points; run nothing"
    )
    # a job of --launcher slurm: work, summarise, but leave the export to the submitter
    parser.add_argument("--worker-job", action="store_true", help=argparse.SUPPRESS)
    launch.add_arguments(parser)


def main(args: argparse.Namespace) -> int:
    try:
        spec = load_spec(args.spec)
    except SpecError as exc:
        print(f"ablate: {exc}", file=sys.stderr)
        return 2
    if args.profile not in spec.profiles:
        if args.skip_missing_profile:
            print(f"ablate: {spec.name} has no profile {args.profile!r}; skipped")
            return 0
        print(
            f"ablate: {spec.path}: profiles.{args.profile}: no such profile "
            f"(this spec has: {', '.join(spec.profiles)})",
            file=sys.stderr,
        )
        return 2
    if args.workers is not None and args.workers < 1:
        print("ablate: --workers: must be at least 1", file=sys.stderr)
        return 2
    if args.seeds is not None and args.seeds < 1:
        print("ablate: --seeds: must be at least 1", file=sys.stderr)
        return 2
    points = spec.points(args.profile, range(args.seeds) if args.seeds else None)
    for line in preflight.graph_file_notes(p.config for p in points):  # what a file's y says
        print(f"ablate: dataset {line}")
    if args.dry_run:
        for point in points:
            shown = ", ".join(f"{k}={v}" for k, v in point.varying.items())
            print(f"{point.index:4d} {point.key} {point.label or ''} {shown}")
        print(f"{len(points)} trials in {study_name(spec.name, args.profile)}")
        from bench.measure.time_model import plan_lines

        for line in plan_lines([p.config for p in points], args.workers):
            print(line)
        return 0
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    storage = storage_from(args.storage, "ablate")
    if args.worker_job and storage is None:
        print(
            f"ablate: --worker-job: no storage named; a job gets it in ${ENV_VAR} from the "
            "submitting command (check that the scheduler passes the environment on)",
            file=sys.stderr,
        )
        return 2
    if args.launcher != "local":
        try:
            launch.validate(args, storage)
        except ConfigError as exc:
            print(f"ablate: {exc.for_cli()}", file=sys.stderr)
            return 2
    try:
        if args.launcher != "local":
            result = launch_sweep(spec.path, args, storage)
        else:
            result = run_sweep(
                spec.path,
                args.profile,
                storage,
                args.workers,
                args.seeds,
                args.retry_failed,
                args.results_dir,
                args.device,
                args.heartbeat,
                args.trial_timeout,
                progress=not args.no_progress,
            )
    except preflight.PreflightError as exc:
        preflight.report(exc.problems, "ablate")
        return 2
    except SQLAlchemyError as exc:  # the storage went away mid-sweep: nothing finished is lost
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        first = mask_text(first, storage)
        print(
            f"ablate: the storage failed mid-sweep ({first}); finished trials are kept, the "
            f"running one is retried: once it is reachable again, run {rerun_command(args)}",
            file=sys.stderr,
        )
        return 1
    except KeyboardInterrupt:
        print(
            "\nablate: interrupted; finished trials are kept, run the same command to resume",
            file=sys.stderr,
        )
        return 130
    storage = open_storage(result.url, heartbeat_interval=None)
    study = optuna.load_study(study_name=result.study_name, storage=storage)
    print(summary_table(study, points))
    print(
        f"{result.study_name}: {result.done}/{result.total} points have a record "
        f"({result.failed} not ok), {result.ran_here} run now, {result.seconds:.0f} s; "
        f"storage {mask_url(result.url)}"
    )
    for line in failure_lines(study, points, rerun_command(args)):
        print(line)
    if result.complete and not args.worker_job:
        export_study(study, args.results_dir / f"{result.study_name}.csv",
                     keys={p.key for p in points})  # fmt: skip
    return 0 if result.complete else 1


def launch_sweep(spec_path: Path, args: argparse.Namespace, storage: str | None) -> SweepResult:
    """``--launcher slurm|submitit-local``: check and queue here, then ``--jobs`` worker jobs
    (each the ordinary ``ablate`` command on the shared storage, which it finds in its
    environment: see :mod:`bench.harness.credentials`); see :mod:`bench.harness.launch`."""
    clock = time.perf_counter()
    parsed = load_spec(spec_path)
    points = parsed.points(args.profile, range(args.seeds) if args.seeds else None)
    name = study_name(parsed.name, args.profile)
    url = storage_url(storage, parsed.name, args.results_dir)
    device = "cuda" if args.device == "auto" and args.gpus_per_job else args.device
    configs = (
        [dataclasses.replace(p.config, device=device) for p in points]
        if device != "auto"
        else [p.config for p in points]
    )
    problems = preflight.check(configs, url, labels=[point_label(p) for p in points])
    if problems:
        raise preflight.PreflightError(problems)
    attrs = {
        "spec": parsed.name,
        "profile": args.profile,
        "kind": "ablation",
        "description": parsed.profiles[args.profile].description,
        "reproduces": parsed.reproduces,
    }
    study = open_study(url, name, attrs, args.heartbeat, metric_name(points))
    reconcile(study, points, retry_failed=args.retry_failed, retry_environment=True)
    command = [sys.executable, *_resume_words(args)[1:]]
    command += ["--worker-job", "--no-progress", "--heartbeat", str(args.heartbeat)]
    if args.trial_timeout is not None:
        command += ["--trial-timeout", str(args.trial_timeout)]
    if args.gpus_per_job > 1:
        command += ["--workers", str(args.gpus_per_job)]  # one worker per GPU of the job
    codes = launch.run_jobs(args, name, [command] * args.jobs, args.results_dir, url)
    return SweepResult.of(study, points, url, sum(1 for c in codes if c == 0), clock)
