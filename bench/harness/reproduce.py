"""``python -m bench reproduce``: every ablation's cpu and real profiles (resuming), then the report.

What ``nox -s reproduce`` runs. Each (spec, profile) study is a sweep (:func:`bench.harness.sweep.run_sweep`,
through the study runner) whose preflight checks what its points need; a study this machine cannot run (a real dataset
that is not here, no GPU) is *skipped*, with the preflight's lines as the reason, and the rest go
on. Nothing is stored for a skipped study, so the report has no error slices for it; instead the
skips are written to ``results/skipped.json``, which the report lists in REPORT.md. A later run
that can run a skipped study removes its entry.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import subprocess
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from bench.errors import DataError
from bench.harness.preflight import PreflightError
from bench.harness.skipped import Skip, write_skipped
from bench.harness.spec import Spec, SpecError, load_spec, spec_dirs

if TYPE_CHECKING:
    from bench.harness.runner import StudyResult

DEFAULT_PROFILES = ("cpu", "real")
QUICK = Path("build") / "quick"  # --quick's results and report: the committed ones stay as they are


@dataclass
class ReproduceResult:
    ran: list[str] = field(default_factory=list)  # studies run (or resumed) to the end
    kept: list[str] = field(default_factory=list)  # --rerun-stale: exported whole, nothing stale
    incomplete: list[str] = field(default_factory=list)  # run, but some points have no result
    skipped: list[Skip] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.incomplete

    def add(self, name: str, outcome: StudyResult | Skip | None) -> None:
        """File one study's outcome (None: kept as exported)."""
        if outcome is None:
            self.kept.append(name)
        elif isinstance(outcome, Skip):
            self.skipped.append(outcome)
        else:
            (self.ran if outcome.complete else self.incomplete).append(name)


def default_specs() -> list[Path]:
    """Every ablation spec (``ablations/*.toml``; search spaces under ``tune/`` are not)."""
    for folder in spec_dirs():
        found = sorted(folder.glob("*.toml"))
        if found:
            return found
    return []


@dataclass(frozen=True)
class ReproduceOptions:
    """One ``reproduce`` invocation: which specs (None: every ablation) and profiles, where the
    results and the report go (``report_dir`` None: no report), whether the report draws its
    figures, the progress bars, local workers per study, and ``--rerun-stale``."""

    specs: Sequence[str | Path] | None = None
    profiles: Sequence[str] = DEFAULT_PROFILES
    results_dir: Path = Path("results")
    report_dir: Path | None = Path("report")
    figures: bool = True
    progress: bool = True
    workers: int | None = None
    rerun_stale: bool = False


def reproduce(
    options: ReproduceOptions,
    run_fn: Callable[..., Any] | None = None,
    log: Callable[[str], None] = print,
) -> ReproduceResult:
    """Run every (spec, profile) study it can, export each spec, record the skips, then build
    the report (unless ``options.report_dir`` is None). ``run_fn`` as in
    :func:`bench.harness.sweep.run_sweep`. With ``rerun_stale``, first run again the points of
    every configuration whose exported trials mix code versions (:mod:`bench.exports.versions`); a
    study with no stored trials is kept as exported, or run in full (:func:`stored`)."""
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    results_dir = Path(options.results_dir)
    result = ReproduceResult()
    attempted: set[tuple[str, str]] = set()
    for path in options.specs if options.specs is not None else default_specs():
        spec = load_spec(path)
        for profile in options.profiles:
            if profile in spec.profiles:
                attempted.add((spec.name, profile))
                result.add(f"{spec.name}-{profile}",
                           _reproduce_study(spec, profile, options, run_fn, log))  # fmt: skip
        export_spec(spec, results_dir)
    write_skipped(results_dir, result.skipped, attempted)
    log(summary(result))
    if options.report_dir is not None:
        log(build_report(results_dir, Path(options.report_dir), options.figures))
    return result


def _reproduce_study(
    spec: Spec,
    profile: str,
    options: ReproduceOptions,
    run_fn: Callable[..., Any] | None,
    log: Callable[[str], None],
) -> StudyResult | Skip | None:
    """Run (or resume) one study; its result, its skip, or None when ``--rerun-stale`` keeps
    its export as it is."""
    from bench.harness.sweep import SweepOptions, rerun_command, run_sweep

    name = f"{spec.name}-{profile}"
    rerun = _stale_keys(spec, profile, options.results_dir, log) if options.rerun_stale else set()
    if rerun is None:
        return None
    sweep = SweepOptions(spec.path, profile, results_dir=Path(options.results_dir),
                         workers=options.workers, progress=options.progress, rerun=rerun)  # fmt: skip
    try:
        done = run_sweep(sweep, run_fn)
    except PreflightError as exc:
        skip = Skip(spec.name, profile, tuple(p.line() for p in exc.problems))
        for reason in skip.reasons:
            log(f"reproduce: skipped {name}: {reason}")
        return skip
    log(f"{name}: {done.done}/{done.total} points have a record ({done.failed} not ok), "
        f"{done.ran_here} run now, {done.seconds:.0f} s")  # fmt: skip
    command = rerun_command(dataclasses.replace(sweep, spec=spec.name))  # its --results-dir too
    for line in done.failure_lines(command):
        log(f"{name}: {line}")
    return done


def _stale_keys(
    spec: Spec, profile: str, results_dir: Path, log: Callable[[str], None]
) -> set[str] | None:
    """``--rerun-stale``: the point keys to run again whatever their record (those of
    configurations whose exported trials mix code versions), or None to keep the export as it
    is (no stored study, every point exported, none stale)."""
    name = f"{spec.name}-{profile}"
    export = Path(results_dir) / f"{name}.csv"
    exported, rerun = exported_points(export)
    if not stored(results_dir, spec.name, name) and export.exists():
        missing = {p.key for p in spec.points(profile)} - exported
        if not rerun and not missing:
            log(f"{name}: kept {export} (every point exported, none stale)")
            return None
        log(f"{name}: no stored study to rerun points in: all of it runs again")
    elif rerun:
        log(f"{name}: {len(rerun)} points of configurations that mix code versions run again")
    return rerun


def export_spec(spec: Spec, results_dir: Path) -> None:
    """Export every stored study of ``spec`` (each profile's, run now or before) to
    ``RESULTS/<study>.csv``, each with the points of the spec as it is now."""
    import optuna

    from bench.harness.export import export_study
    from bench.harness.storage import open_storage, storage_url, study_names

    if not (Path(results_dir) / f"{spec.name}.db").exists():
        return
    url = storage_url(None, spec.name, results_dir)
    storage = open_storage(url, heartbeat_interval=None)
    for study_name in study_names(url, spec.name):
        study = optuna.load_study(study_name=study_name, storage=storage)
        profile = study.user_attrs.get("profile")
        keys = {p.key for p in spec.points(profile)} if profile in spec.profiles else None
        export_study(study, Path(results_dir) / f"{study_name}.csv", keys=keys)


def check_tables(specs: Sequence[Path], profiles: Sequence[str], results_dir: Path) -> None:
    """Refuse (:class:`~bench.errors.DataError`) before anything runs when a study's export
    would meet a table it cannot merge into (:func:`bench.exports.merge.existing_table`)."""
    from bench.exports.merge import existing_table

    for path in specs:
        name = load_spec(path, validate=False).name
        for profile in profiles:
            table = Path(results_dir) / f"{name}-{profile}.csv"
            if table.exists():
                existing_table(table)


def build_report(results_dir: Path, report_dir: Path, figures: bool) -> str:
    """``python -m bench report`` in its own process, and the line to log. Why a process: the
    harness never imports the report (data flows one way: it runs the report's command as it
    runs trials, through the command line)."""
    command = [sys.executable, "-m", "bench", "report", "--results-dir", str(results_dir),
               "--report-dir", str(report_dir), *([] if figures else ["--no-figures"])]  # fmt: skip
    done = subprocess.run(command, capture_output=True, text=True)
    if done.returncode == 0:
        return f"wrote {report_dir / 'REPORT.md'}"
    why = (done.stderr.strip().splitlines() or [f"exit status {done.returncode}"])[-1]
    return f"reproduce: no report: {why.removeprefix('report: ')}"


def stored(results_dir: Path, spec_name: str, study_name: str) -> bool:
    """Whether ``results_dir/<spec>.db`` holds the study. Why: the SQLite studies are not
    committed, so on a fresh clone ``--rerun-stale`` has only the exports; it keeps an export
    that is whole and of one code version, and runs any other study again in full."""
    from bench.harness.storage import storage_url, study_names

    if not (Path(results_dir) / f"{spec_name}.db").exists():
        return False
    return study_name in study_names(storage_url(None, spec_name, results_dir), spec_name)


def exported_points(export: Path) -> tuple[set[str], set[str]]:
    """The point keys an export has a finished trial for, and those ``--rerun-stale`` runs
    again: the keys of its configurations whose trials come from more than one commit (both
    empty when there is no export yet). One read of the export for both."""
    if not export.exists():
        return set(), set()
    from bench.exports.table import finished, normalise, read_table
    from bench.exports.versions import stale_point_keys

    table = normalise(finished(read_table(export)))
    keys = {str(k) for k in table["point_key"].dropna()} if "point_key" in table else set()
    return keys, stale_point_keys(table)


def stale_points(export: Path) -> set[str]:
    """The point keys ``--rerun-stale`` runs again (see :func:`exported_points`)."""
    return exported_points(export)[1]


def summary(result: ReproduceResult) -> str:
    kept = f", {len(result.kept)} kept as exported" if result.kept else ""
    lines = [f"reproduce: {len(result.ran)} studies complete{kept}, {len(result.incomplete)} "
             f"incomplete, {len(result.skipped)} skipped"]  # fmt: skip
    lines += [f"  incomplete: {name} (run the same command again)" for name in result.incomplete]
    for skip in result.skipped:
        lines += [f"  skipped {skip.study}: {reason}" for reason in skip.reasons]
    return "\n".join(lines)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "specs", nargs="*", help="spec names or paths (default: every ablations/*.toml)"
    )
    parser.add_argument(
        "--profiles",
        "--profile",
        dest="profiles",
        default=None,
        help=f"comma-separated (default: {','.join(DEFAULT_PROFILES)}; with --quick: quick)",
    )
    parser.add_argument(
        "--results-dir",
        type=Path,
        default=None,
        help=f"default: results (--quick: {QUICK}/results)",
    )
    parser.add_argument(
        "--report-dir", type=Path, default=None, help=f"default: report (--quick: {QUICK}/report)"
    )
    parser.add_argument(
        "--quick",
        action="store_true",
        help="the smoke version of every ablation (profile quick) and a complete report, in "
        f"minutes, into {QUICK}/ (results/ and report/ untouched)",
    )
    parser.add_argument(
        "--rerun-stale",
        action="store_true",
        help="first run again the points of configurations whose trials mix code versions; "
        "a study with no stored trials keeps a whole export of one code version and runs "
        "again in full otherwise",
    )
    parser.add_argument(
        "--verify",
        nargs="?",
        type=_positive,
        const=1,
        default=None,
        metavar="N",
        help="instead of running studies: rerun a sample of every committed study's points at "
        "today's code (one per arch, N per study; default 1) and compare them with the "
        "committed rows, into RESULTS/verify.csv (bench.harness.verify); then the report",
    )
    parser.add_argument("--no-report", action="store_true", help="run and export only")
    parser.add_argument("--no-figures", action="store_true", help="report tables and text only")
    parser.add_argument("--no-progress", action="store_true", help="no progress bars")
    parser.add_argument(
        "--workers",
        type=int,
        default=None,
        help="trials run at once per study (default: one per GPU, else 1; each trial is its own "
        "process, one thread on CPU)",
    )


def _in_worker() -> Callable[..., Any]:
    from bench.harness.worker import run_trial_in_worker

    return run_trial_in_worker


def _positive(text: str) -> int:
    if not text.isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"expected a positive number of points, got {text!r}")
    return int(text)


def _verify(args: argparse.Namespace, specs: list[Path] | None, results_dir: Path,
            report_dir: Path | None) -> int:  # fmt: skip
    """``--verify``: 0 when every rerun point reproduces (or cannot run here), 1 otherwise."""
    from bench.errors import DataError
    from bench.harness.verify import DIFFERS, verify

    studies = None
    if specs is not None:
        studies = {f"{load_spec(s).name}-{p}" for s in specs for p in load_spec(s).profiles}
    try:
        table = verify(results_dir, args.verify, args.workers or os.cpu_count() or 1, studies)
    except DataError as exc:
        print(f"reproduce: {exc}", file=sys.stderr)
        return 2
    if report_dir is not None:
        print(build_report(results_dir, report_dir, not args.no_figures))
    return 1 if (table["verdict"] == DIFFERS).any() else 0


def main(args: argparse.Namespace) -> int:
    """``--quick`` trains each trial in its worker's process
    (:func:`bench.harness.worker.run_trial_in_worker`: start-up would be most of a smoke
    trial's time). 0 when every study it could run is complete (skips included), 1 otherwise,
    2 for bad input (an invalid spec, no profile named)."""
    default_profiles = ("quick",) if args.quick else DEFAULT_PROFILES
    text = args.profiles if args.profiles is not None else ",".join(default_profiles)
    profiles = [p.strip() for p in text.split(",") if p.strip()]
    results_dir = args.results_dir or (QUICK / "results" if args.quick else Path("results"))
    report_dir = args.report_dir or (QUICK / "report" if args.quick else Path("report"))
    if not profiles:
        print("reproduce: --profiles: name at least one profile", file=sys.stderr)
        return 2
    try:
        specs = [load_spec(s).path for s in args.specs] if args.specs else None
        check_tables(specs if specs is not None else default_specs(), profiles, results_dir)
    except SpecError as exc:
        print(f"reproduce: {exc}", file=sys.stderr)
        return 2
    except DataError as exc:
        print(f"reproduce: {exc}", file=sys.stderr)
        return 2
    if args.verify is not None:
        return _verify(args, specs, results_dir, None if args.no_report else report_dir)
    options = ReproduceOptions(
        specs,
        profiles,
        results_dir,
        None if args.no_report else report_dir,
        figures=not args.no_figures,
        progress=not args.no_progress,
        workers=args.workers if args.workers is not None else (1 if args.quick else None),
        rerun_stale=args.rerun_stale,
    )
    result = reproduce(options, run_fn=_in_worker() if args.quick else None)
    return 0 if result.ok else 1
