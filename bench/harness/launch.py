"""Worker jobs on a cluster through ``submitit`` (the launcher Hydra uses): ``--launcher slurm``.

``python -m bench ablate SPEC --launcher slurm --jobs 8 --storage URL`` (and ``tune``) checks
the requirements and queues the study here, then submits ``--jobs`` jobs as one SLURM job
array; each job runs the ordinary command as a worker (``python -m bench ablate SPEC ...``,
the storage URL in its environment as ``BENCH_STORAGE``, never in its arguments, submitit's
pickles or logs: :mod:`bench.harness.credentials`): it claims points from the shared study until every point has a record, so
jobs that start late, die or time out lose nothing (their points are claimed again once their
heartbeat goes stale). The submitting command waits for the jobs, then prints the summary and
exports as a local sweep does. The storage must be one every job reaches: PostgreSQL
(``postgresql+psycopg2://user@host/db``) or a journal file on a shared filesystem
(``journal:///shared/fs/NAME.log``); a SQLite file is refused (it is not safe across machines).

``--launcher submitit-local`` runs the same jobs as local processes through submitit's local
executor (what the tests use; handy to try a set-up before a cluster). Job logs go to
``--job-dir`` (default ``results/jobs/``).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from bench.errors import ConfigError
from bench.harness import credentials

LAUNCHERS = ("local", "slurm", "submitit-local")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The launcher options, shared by ``ablate`` and ``tune``."""
    group = parser.add_argument_group("cluster jobs (submitit)")
    group.add_argument(
        "--launcher",
        choices=LAUNCHERS,
        default="local",
        help="local: workers on this machine (default); slurm: --jobs SLURM jobs through "
        "submitit; submitit-local: the same jobs as local processes",
    )
    group.add_argument("--jobs", type=int, default=1, help="worker jobs to submit (default 1)")
    group.add_argument("--partition", help="SLURM partition of the jobs")
    group.add_argument(
        "--gpus-per-job", type=int, default=0, help="GPUs each job asks for (default 0)"
    )
    group.add_argument(
        "--time-limit", type=int, default=240, help="minutes each job may run (default 240)"
    )
    group.add_argument(
        "--array-parallelism",
        type=int,
        help="at most this many jobs of the array run at once (default: all)",
    )
    group.add_argument("--job-dir", type=Path, help="submitit's logs (default: RESULTS/jobs)")


def validate(args: argparse.Namespace, storage: str | None) -> None:
    """Refuse launcher settings that cannot work, naming the flag (before anything runs)."""
    if args.launcher == "local":
        return
    if args.jobs < 1:
        raise ConfigError("jobs", f"must be at least 1, got {args.jobs}")
    if args.gpus_per_job < 0:
        raise ConfigError("gpus_per_job", f"must be 0 or more, got {args.gpus_per_job}")
    if args.time_limit < 1:
        raise ConfigError("time_limit", f"must be at least 1 minute, got {args.time_limit}")
    if args.array_parallelism is not None and args.array_parallelism < 1:
        raise ConfigError("array_parallelism", "must be at least 1")
    if not storage or storage.startswith("sqlite"):
        raise ConfigError(
            "storage",
            f"--launcher {args.launcher} needs a storage every job reaches: "
            "postgresql+psycopg2://user@host/db, or journal:///shared/fs/NAME.log on a "
            "filesystem the jobs share (a SQLite file is not safe across machines)",
        )
    try:
        import submitit  # noqa: F401
    except ImportError:
        raise ConfigError(
            "launcher", "needs submitit: python -m pip install 'gnn1000-bench[cluster]'"
        ) from None


def executor(args: argparse.Namespace, name: str, results_dir: Path) -> Any:
    """A submitit executor for the launcher options."""
    import submitit

    folder = args.job_dir or Path(results_dir) / "jobs"
    cluster = "local" if args.launcher == "submitit-local" else "slurm"
    ex = submitit.AutoExecutor(folder=str(folder / "%j"), cluster=cluster)
    params: dict[str, Any] = {"name": name, "timeout_min": args.time_limit, "nodes": 1}
    if args.gpus_per_job:
        params["gpus_per_node"] = args.gpus_per_job
    if cluster == "slurm":
        if args.partition:
            params["slurm_partition"] = args.partition
        if args.array_parallelism:
            params["slurm_array_parallelism"] = args.array_parallelism
    ex.update_parameters(**params)
    return ex


def run_jobs(
    args: argparse.Namespace,
    name: str,
    commands: list[list[str]],
    results_dir: Path,
    storage: str,
) -> list[int]:
    """Submit one job per command (one job array), wait for them; their exit codes (0: ok).

    The jobs open ``storage`` (a URL) from ``$BENCH_STORAGE``, which they inherit."""
    import submitit

    ex = executor(args, name, results_dir)
    with credentials.exported(storage):
        jobs = ex.map_array(_run_command, commands)  # one array: --array-parallelism applies
    print(
        f"{name}: submitted {len(jobs)} {args.launcher} job(s) "
        f"({', '.join(j.job_id for j in jobs)}); logs in {ex.folder.parent}",
        file=sys.stderr,
        flush=True,
    )
    codes = []
    for job in jobs:
        try:
            codes.append(int(job.result()))
        except (submitit.core.utils.FailedJobState, submitit.core.utils.UncompletedJobError) as exc:
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            print(
                f"{name}: job {job.job_id} failed: {credentials.mask_text(first, storage)}",
                file=sys.stderr,
            )
            codes.append(1)
    return codes


def _run_command(command: list[str]) -> int:
    """A job's body: the ordinary command as a worker; its exit code (stdout/err to the log)."""
    import subprocess

    return subprocess.run(command, check=False).returncode
