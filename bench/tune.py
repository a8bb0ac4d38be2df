"""``python -m bench tune SPEC``: find the best configuration under a memory budget.

A search-space file (``ablations/tune/SPEC.toml``, see :mod:`bench.search_space`) becomes one
Optuna study in the same storage as the ablation sweeps (SQLite ``results/tune-SPEC.db`` by
default, any RDB URL to share it between workers), so a study is resumable, can be worked on
by many processes, and opens unchanged in optuna-dashboard.

Each trial: sample a configuration (TPE, seeded) -> predict its peak memory with the memory
model and prune it *before running* if the prediction is over the budget -> run it in its own
process with ``memory_cap_bytes`` = budget (a measured peak over the budget stops it) ->
report every epoch's validation score so the pruner can stop poor trials early -> store the
whole :class:`~bench.record.TrialRecord` with the Optuna trial. Every prune carries its reason
in the trial's ``prune_reason`` user attribute.

``--multi-objective`` trades score against peak memory (and optionally step time) with
NSGA-II and prints the Pareto front. Both kinds export ``results/tune-SPEC.csv``: the store's
tidy columns plus ``objectives``, ``values_i`` and ``is_pareto``.

Before the study is opened, :mod:`bench.preflight` checks what the space's configurations need
(datasets, device, storage, packages): if anything is missing the command prints one line per
problem and exits 2 with nothing stored. A trial that fails for a reason outside its
configuration (``failure_kind`` = ``environment``: data gone, device gone) does not count
towards ``--n-trials``; the worker stops at the first one (the next would fail alike), and the
next run re-queues its parameters.
"""

from __future__ import annotations

import argparse
import json
import math
import shlex
import subprocess
import sys
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import optuna
from optuna.trial import FrozenTrial, TrialState

from bench import launch, preflight, store
from bench.config import TrialConfig
from bench.errors import ConfigError, is_environment_error
from bench.record import TrialRecord, count_failures
from bench.search_space import (
    OBJECTIVES,
    SearchSpace,
    SearchSpaceError,
    TuneSettings,
    _setting,
    load_search_space,
)
from bench.units import format_bytes

RunFn = Callable[..., TrialRecord]  # (config, timeout=None, on_epoch=None) -> TrialRecord
PredictFn = Callable[[TrialConfig], "int | None"]
PRUNE_REASON = "prune_reason"
POLL_S = 2.0  # how often a worker re-checks trials that other workers are still running


# --- options ----------------------------------------------------------------------------------
@dataclass(frozen=True)
class TuneRun:
    """One invocation: the space, its settings (after command-line overrides) and the storage."""

    space: SearchSpace
    settings: TuneSettings
    multi: bool = False
    storage: str | None = None
    results_dir: Path = Path("results")
    workers: int = 1
    worker_index: int = 0
    heartbeat_interval: int | None = store.DEFAULT_HEARTBEAT_S
    grace_period: int | None = None

    @property
    def study_name(self) -> str:
        return study_name(self.space, self.multi)

    @property
    def url(self) -> str:
        return store.storage_url(self.storage, f"tune-{self.space.name}", self.results_dir)

    @property
    def objective_names(self) -> tuple[str, ...]:
        return self.settings.objective_names(self.multi)


def study_name(space: SearchSpace, multi: bool) -> str:
    """``tune-SPEC`` (score under budget) or ``tune-SPEC-multi`` (Pareto front)."""
    return f"tune-{space.name}" + ("-multi" if multi else "")


# --- memory prediction ------------------------------------------------------------------------
def memory_predictor() -> PredictFn:
    """Predicted peak bytes of a training step of a configuration (:mod:`bench.memory_model`).

    Each dataset is loaded once, and graph sizes are computed once per partitioning: the
    predictions for a whole space cost one load and a few partitions."""
    from bench import memory_model
    from bench.data import load

    datasets: dict[str, Any] = {}
    sizes: dict[str, Any] = {}

    def predict(config: TrialConfig) -> int | None:
        data_key = json.dumps(
            [config.dataset, config.data_root, config.dataset_options], sort_keys=True
        )
        size_key = json.dumps(
            [data_key, config.train_parts, config.eval_parts, config.batching, config.seed]
        )
        if size_key not in sizes:
            if data_key not in datasets:
                datasets[data_key] = load(
                    config.dataset, root=config.data_root, **config.dataset_options
                )
            sizes[size_key] = memory_model.sizes_for(config, datasets[data_key])
        return int(memory_model.predict(config, sizes[size_key]).total_bytes)

    return predict


# --- the study --------------------------------------------------------------------------------
def _sampler(run: TuneRun, n_existing: int) -> optuna.samplers.BaseSampler:
    """Seeded sampler; the seed moves on with the study's size and the worker index, so a
    resumed study or a second worker does not replay the first one's random draws."""
    seed = run.settings.seed + n_existing + 7919 * run.worker_index
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        if run.multi:
            return optuna.samplers.NSGAIISampler(seed=seed)
        return optuna.samplers.TPESampler(
            seed=seed, n_startup_trials=run.settings.n_startup_trials, constant_liar=run.workers > 1
        )


def _pruner(run: TuneRun) -> optuna.pruners.BasePruner:
    if run.multi or run.settings.pruner == "none":
        return optuna.pruners.NopPruner()  # Optuna prunes single-objective studies only
    if run.settings.pruner == "hyperband":
        epochs = run.space.base.get("epochs", TrialConfig.epochs)
        return optuna.pruners.HyperbandPruner(min_resource=1, max_resource=max(2, epochs))
    return optuna.pruners.MedianPruner(
        n_startup_trials=run.settings.n_startup_trials, n_warmup_steps=run.settings.n_warmup_steps
    )


def open_study(run: TuneRun, load_only: bool = False) -> optuna.Study:
    """Create (or load) the study; directions come from the objectives."""
    optuna.logging.set_verbosity(optuna.logging.WARNING)  # we print our own line per trial
    storage = store.open_storage(run.url, run.heartbeat_interval, run.grace_period)
    # a trial whose worker died (heartbeat stale) is failed and its point queued again
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        storage.heartbeat_stale_trial_callback = optuna.storages.RetryHeartbeatStaleTrialCallback()
    if load_only:
        return optuna.load_study(study_name=run.study_name, storage=storage)
    existing = len(_existing_trials(storage, run.study_name))
    study = optuna.create_study(
        study_name=run.study_name,
        storage=storage,
        directions=run.settings.directions(run.multi),
        sampler=_sampler(run, existing),
        pruner=_pruner(run),
        load_if_exists=True,
    )
    if list(study.directions) != [
        optuna.study.StudyDirection.MAXIMIZE
        if d == "maximize"
        else optuna.study.StudyDirection.MINIMIZE
        for d in run.settings.directions(run.multi)
    ]:
        raise ConfigError(
            "objectives",
            f"study {run.study_name} in {run.url} was created with other objectives "
            f"({study.user_attrs.get('objectives')}); use another --storage or keep them",
        )
    attrs = {
        "spec": f"tune-{run.space.name}",
        "kind": "tune",
        "profile": None,
        "objectives": ",".join(run.objective_names),
        "search_space": str(run.space.path),
    }
    for key, value in attrs.items():
        if study.user_attrs.get(key) != value:
            study.set_user_attr(key, value)
    return study


def _existing_trials(storage: optuna.storages.BaseStorage, name: str) -> list[FrozenTrial]:
    try:
        study_id = storage.get_study_id_from_name(name)
    except KeyError:
        return []
    return storage.get_all_trials(study_id, deepcopy=False)


def finished(trial: FrozenTrial) -> bool:
    """A trial that counts towards ``--n-trials``: complete, pruned, or failed with a record
    of its configuration's failure. A FAIL without a record is a lost trial (its worker died;
    its point is queued again); one failed by the environment is not a result either."""
    if trial.state in (TrialState.COMPLETE, TrialState.PRUNED):
        return True
    if trial.state != TrialState.FAIL or store.RECORD_ATTR not in trial.user_attrs:
        return False
    record = store.record_of(trial)
    return record is not None and not record.is_environment_failure


def environment_failure(trial: FrozenTrial) -> bool:
    """A FAIL trial whose record blames the machine (data missing, device gone)."""
    record = store.record_of(trial) if trial.state == TrialState.FAIL else None
    return record is not None and record.is_environment_failure


def requeue_environment_failures(study: optuna.Study) -> int:
    """Queue the parameters of every environment failure not queued again yet (how many).

    Why: the tuner's sampler would not propose them again by itself, and their configuration
    never got its result."""
    trials = study.get_trials(deepcopy=False)
    retried = {t.user_attrs.get("retry_of") for t in trials}
    added = 0
    for trial in trials:
        if environment_failure(trial) and trial.number not in retried:
            study.enqueue_trial(dict(trial.params), user_attrs={"retry_of": trial.number})
            added += 1
    return added


def _counts(study: optuna.Study) -> tuple[int, int]:
    """(finished trials, trials running elsewhere)."""
    trials = study.get_trials(deepcopy=False)
    done = sum(finished(t) for t in trials)
    running = sum(t.state == TrialState.RUNNING for t in trials)
    return done, running


class _TrialFailed(RuntimeError):
    """The trial ran and failed (its record says why): Optuna marks it FAIL."""


class _Objective:
    """One trial: sample, check the budget, run, report, store. Raises TrialPruned to prune."""

    def __init__(
        self, run: TuneRun, run_fn: RunFn, predict: PredictFn | None, log: Callable[[str], None]
    ):
        self.run = run
        self.run_fn = run_fn
        self.predict = predict
        self.log = log

    def __call__(self, trial: optuna.Trial) -> float | list[float]:
        try:
            return self._run(trial)
        except (optuna.TrialPruned, _TrialFailed):
            raise
        except Exception as err:  # a bug or bad input here must not leave a record-less trial
            if store.RECORD_ATTR not in trial.study._storage.get_trial_user_attrs(trial._trial_id):
                config = trial.user_attrs.get("config") or {}
                record = TrialRecord(
                    status="error",
                    config=config,
                    error=f"{type(err).__name__}: {err}",
                    failed_phase="setup",
                    failure_kind="environment" if is_environment_error(err) else "config",
                )
                store.save_record(trial.study, trial, record)
            raise

    def _run(self, trial: optuna.Trial) -> float | list[float]:
        run, budget = self.run, self.run.settings.memory_budget
        suggestion = run.space.suggest(trial)
        config = suggestion.config
        if suggestion.adjusted:
            trial.set_user_attr("adjusted", {k: list(v) for k, v in suggestion.adjusted.items()})
        trial.set_user_attr("config", config.to_dict())
        predicted = self.predict(config) if self.predict else None
        trial.set_user_attr("predicted_peak_bytes", predicted)
        trial.set_user_attr("memory_budget_bytes", budget)
        if budget is not None and predicted is not None and predicted > budget:
            reason = f"predicted peak {format_bytes(predicted)} over budget {format_bytes(budget)}"
            record = TrialRecord(
                status="pruned",
                config=config.to_dict(),
                predicted_peak_bytes=predicted,
                error=reason,
                failed_phase="setup",
            )
            self._prune(trial, record, reason, over_budget=True)
        if budget is not None:
            config = config.replace(memory_cap_bytes=budget)
        record = self.run_fn(
            config, timeout=run.settings.trial_timeout, on_epoch=self._reporter(trial)
        )
        if record.predicted_peak_bytes is None and predicted is not None:
            record.predicted_peak_bytes = predicted
        return self._finish(trial, record)

    def _reporter(self, trial: optuna.Trial) -> Callable[[dict[str, Any]], bool]:
        """on_epoch: report the validation score; True tells the runner to stop (pruned)."""

        def on_epoch(event: dict[str, Any]) -> bool:
            valid = event.get("valid")
            if self.run.multi or valid is None or not math.isfinite(valid):
                return False
            trial.report(float(valid), int(event["epoch"]))
            if trial.should_prune():
                trial.set_user_attr(
                    PRUNE_REASON,
                    f"{type(trial.study.pruner).__name__}: valid {valid:.4f} at epoch "
                    f"{event['epoch']} below the other trials",
                )
                return True
            return False

        return on_epoch

    def _finish(self, trial: optuna.Trial, record: TrialRecord) -> float | list[float]:
        budget = self.run.settings.memory_budget
        peak = record.peak_memory_bytes
        if record.status == "oom":
            what = "over budget" if budget is not None else "out of memory"
            reason = f"measured {what}: {record.error or 'memory cap exceeded'}"
            self._prune(trial, record, reason, over_budget=budget is not None)
        if (
            record.status in ("ok", "timeout")
            and budget is not None
            and peak is not None
            and peak > budget
        ):
            reason = f"measured peak {format_bytes(peak)} over budget {format_bytes(budget)}"
            self._prune(trial, record, reason, over_budget=True)
        if record.status == "pruned":
            reason = trial.user_attrs.get(PRUNE_REASON) or record.error or "pruned"
            self._prune(trial, record, reason)
        if record.status == "diverged":
            self._prune(trial, record, f"diverged: {record.error or 'non-finite loss'}")
        store.save_record(trial.study, trial, record)
        if record.status not in ("ok", "timeout"):
            raise _TrialFailed(f"trial {record.status}: {record.error}")
        values = [getattr(record, OBJECTIVES[name][0]) for name in self.run.objective_names]
        if any(v is None or not math.isfinite(float(v)) for v in values):
            raise _TrialFailed(f"trial produced no value for {self.run.objective_names}: {values}")
        return float(values[0]) if len(values) == 1 else [float(v) for v in values]

    def _prune(
        self, trial: optuna.Trial, record: TrialRecord, reason: str, over_budget: bool = False
    ) -> None:
        if record.status != "pruned" and record.error is None:
            record.error = reason
        store.save_record(trial.study, trial, record)
        trial.set_user_attr(PRUNE_REASON, reason)
        trial.set_user_attr("over_budget", over_budget)
        raise optuna.TrialPruned(reason)


def _describe(trial: FrozenTrial) -> str:
    record = store.record_of(trial)
    params = " ".join(f"{k}={_short(v)}" for k, v in trial.params.items())
    if trial.state == TrialState.PRUNED:
        outcome = f"pruned ({trial.user_attrs.get(PRUNE_REASON, '')})"
    elif trial.state == TrialState.COMPLETE:
        peak = format_bytes(record.peak_memory_bytes) if record else "-"
        values = ", ".join(f"{v:.4g}" for v in trial.values)
        outcome = f"values {values} (peak {peak})"
    else:
        outcome = f"{trial.state.name.lower()} ({record.error if record else 'no record'})"
    return f"trial {trial.number}: {outcome}; {params}"


def _short(value: Any) -> str:
    return f"{value:.3g}" if isinstance(value, float) else str(value)


def run_worker(
    run: TuneRun,
    run_fn: RunFn | None = None,
    predict: PredictFn | None = None,
    log: Callable[[str], None] = print,
) -> optuna.Study:
    """Run trials until the study holds ``n_trials`` finished trials (or the timeout passes).

    Resumable: trials already in the study count, lost ones (dead worker) are re-queued by
    the storage's heartbeat, and trials other workers are running are waited for, not
    duplicated."""
    if run_fn is None:
        from bench.trial import run_trial_isolated

        run_fn = run_trial_isolated
    study = open_study(run)
    objective = _Objective(run, run_fn, predict, log)
    deadline = time.monotonic() + run.settings.timeout if run.settings.timeout else math.inf
    target = run.settings.n_trials
    ended: list[FrozenTrial] = []

    def note(_study: optuna.Study, trial: FrozenTrial) -> None:
        ended.append(trial)
        log(_describe(trial))

    while time.monotonic() < deadline:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            optuna.storages.fail_stale_trials(study)
        done, running = _counts(study)
        if done >= target:
            break
        if done + running >= target:
            time.sleep(POLL_S)  # the last trials are running elsewhere: wait, don't overshoot
            continue
        before = len(ended)
        study.optimize(
            objective,
            n_trials=1,
            catch=(Exception,),
            callbacks=[note],
            gc_after_trial=True,
        )
        if len(ended) > before and environment_failure(ended[-1]):
            log(f"stopping: trial {ended[-1].number} failed for a reason outside its "
                "configuration; fix that and run the same command again")  # fmt: skip
            break
    return study


# --- workers ----------------------------------------------------------------------------------
def run_study(
    run: TuneRun,
    run_fn: RunFn | None = None,
    predict: PredictFn | None = None,
    log: Callable[[str], None] = print,
    jobs: argparse.Namespace | None = None,
) -> optuna.Study:
    """Check the space against the budget, then tune with ``run.workers`` processes, or with
    ``jobs.jobs`` cluster jobs (``--launcher slurm``, see :mod:`bench.launch`)."""
    if predict is not None:
        key = (
            "--memory-budget"
            if run.settings.memory_budget != run.space.settings.memory_budget
            else "tune.memory_budget"
        )
        run.space.check_budget(run.settings.memory_budget, predict, key)
    requeued = requeue_environment_failures(open_study(run))
    if requeued:
        log(f"re-queued {requeued} trial(s) that failed for a reason outside their configuration")
    if run.workers <= 1 and jobs is None:
        return run_worker(run, run_fn, predict, log)
    argv = [
        sys.executable, "-m", "bench", "tune", str(run.space.path),
        "--storage", run.url, "--n-trials", str(run.settings.n_trials),
        "--memory-budget", str(run.settings.memory_budget or "none"), "--no-export",
        "--heartbeat", str(run.heartbeat_interval or store.DEFAULT_HEARTBEAT_S),
        "--seed", str(run.settings.seed), "--device", str(run.space.base.get("device", "cpu")),
    ] + (["--multi-objective"] if run.multi else []) + (
        ["--timeout", str(run.settings.timeout)] if run.settings.timeout else []
    )  # fmt: skip
    if jobs is not None:  # each job: one ordinary tune worker on the shared storage
        total = str(jobs.jobs)
        commands = [
            [*argv, "--worker-index", str(i), "--workers-total", total] for i in range(jobs.jobs)
        ]
        codes = launch.run_jobs(jobs, run.study_name, commands, run.results_dir)
        if any(codes):
            log(f"warning: job exit codes {codes}")
        return open_study(run, load_only=True)
    procs = [
        subprocess.Popen([*argv, "--worker-index", str(i), "--workers-total", str(run.workers)])
        for i in range(run.workers)
    ]
    codes = [p.wait() for p in procs]
    if any(codes):
        log(f"warning: worker exit codes {codes}")
    return open_study(run, load_only=True)


# --- results ----------------------------------------------------------------------------------
def pareto_numbers(study: optuna.Study) -> set[int]:
    """Trial numbers on the Pareto front (multi-objective) or of the best trial."""
    if not any(t.state == TrialState.COMPLETE for t in study.get_trials(deepcopy=False)):
        return set()
    if len(study.directions) > 1:
        return {t.number for t in study.best_trials}
    return {study.best_trial.number}


def study_frame(study: optuna.Study) -> Any:
    """The store's tidy rows plus objectives, values_i, is_pareto and the prune reason."""
    import pandas as pd

    objectives = study.user_attrs.get("objectives", "valid_score")
    rows = store.trial_rows(study, {"kind": "tune"})
    front = pareto_numbers(study)
    trials = {t.number: t for t in study.get_trials(deepcopy=False)}
    names = objectives.split(",")
    for row in rows:
        trial = trials[row["trial_number"]]
        row["objectives"] = objectives
        for i in range(len(names)):
            values = trial.values if trial.state == TrialState.COMPLETE else None
            row[f"values_{i}"] = values[i] if values else math.nan
        row["is_pareto"] = trial.number in front
        row[PRUNE_REASON] = trial.user_attrs.get(PRUNE_REASON)
        row["memory_budget_bytes"] = trial.user_attrs.get("memory_budget_bytes")
        adjusted = trial.user_attrs.get("adjusted")
        row["adjusted"] = json.dumps(adjusted, sort_keys=True) if adjusted else None
    frame = pd.DataFrame(rows)
    if frame.empty:
        return frame
    tune_columns = [
        "objectives",
        *(f"values_{i}" for i in range(len(names))),
        "is_pareto",
        PRUNE_REASON,
    ]
    lead = [c for c in store.LEAD_COLUMNS if c in frame.columns]
    rest = [c for c in frame.columns if c not in lead and c not in tune_columns]
    return frame[lead + tune_columns + rest]


def export(run: TuneRun) -> Path:
    """Write ``results/tune-SPEC.csv``: every tuning study of this spec in the storage."""
    import pandas as pd

    storage = store.open_storage(run.url, heartbeat_interval=None)
    names = [study_name(run.space, False), study_name(run.space, True)]
    present = set(optuna.study.get_all_study_names(storage=storage))
    frames = [
        study_frame(optuna.load_study(study_name=name, storage=storage))
        for name in names
        if name in present
    ]
    frame = (
        pd.concat([f for f in frames if not f.empty], ignore_index=True)
        if frames
        else pd.DataFrame()
    )
    out = run.results_dir / f"tune-{run.space.name}.csv"
    out.parent.mkdir(parents=True, exist_ok=True)
    frame.to_csv(out, index=False)
    return out


def front_table(study: optuna.Study, only_front: bool = True) -> str:
    """A plain-text table of the Pareto front (or every complete trial), best score first."""
    import pandas as pd

    front = pareto_numbers(study)
    rows = []
    for trial in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)):
        if only_front and trial.number not in front:
            continue
        record = store.record_of(trial)
        row: dict[str, Any] = {
            "trial": trial.number,
            **{k: _short(v) for k, v in trial.params.items()},
        }
        if record is not None:
            row["valid"] = record.best_valid
            row["test"] = record.test_at_best_valid
            row["peak"] = format_bytes(record.peak_memory_bytes)
            row["step_s"] = record.step_time_s
            row["params_n"] = record.params
        rows.append(row)
    if not rows:
        return "(no complete trials)"
    frame = pd.DataFrame(rows).sort_values("valid", ascending=False)
    return frame.to_string(index=False, float_format=lambda v: f"{v:.4f}")


def best_trial(study: optuna.Study) -> FrozenTrial:
    """The best trial: single objective, the best score; multi, the front's best score."""
    complete = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    if not complete:
        raise ConfigError("best", f"study {study.study_name} has no complete trial yet")
    if len(study.directions) == 1:
        return study.best_trial
    return max(study.best_trials, key=lambda t: t.values[0])


def best_config(run: TuneRun, trial: FrozenTrial) -> TrialConfig:
    """The configuration the trial ran (from its record), without the tuner's memory cap."""
    record = store.record_of(trial)
    values = dict(record.config) if record else run.space.build(dict(trial.params)).config.to_dict()
    values["memory_cap_bytes"] = None
    return TrialConfig.from_dict(values)


def trial_command(config: TrialConfig) -> str:
    """``python -m bench trial ...`` that reruns ``config`` (only non-default settings)."""
    defaults = TrialConfig()
    words = ["python", "-m", "bench", "trial"]
    for name, value in config.to_dict().items():
        if value == getattr(defaults, name):
            continue
        flag = "--" + name.replace("_", "-")
        if isinstance(value, dict):
            for key, item in value.items():
                shown = item if isinstance(item, str) else json.dumps(item)
                words += ["--dataset-option", f"{key}={shown}"]
        else:
            words += [flag, str(value)]
    return shlex.join(words)


def spec_text(run: TuneRun, trial: FrozenTrial, config: TrialConfig, seeds: int = 3) -> str:
    """The best configuration as an ablation spec (``bench.spec`` format): one point, rerun
    over ``seeds`` seeds so the score gets an error bar. Profile ``cpu`` or ``paper`` by device."""
    values = {
        k: v
        for k, v in config.to_dict().items()
        if v is not None and k not in ("seed", "device", "memory_cap_bytes") and v != {}
    }
    profile = "cpu" if config.device == "cpu" else "paper"
    shown = ", ".join(
        f"{n} {v:.6g}" for n, v in zip(run.objective_names, trial.values, strict=True)
    )
    lines = [
        f"description = {_toml(f'best configuration of tuning study {run.study_name} (trial {trial.number}: {shown}), rerun over {seeds} seeds')}",
        f"reproduces = {_toml(f'python -m bench tune {run.space.name} --best')}",
        f"seeds = {seeds}",
        "",
        "[base]",
        *(f"{k} = {_toml(v)}" for k, v in values.items()),
        "",
        f"[profiles.{profile}]",
        f"description = {_toml(f'the tuned configuration ({config.device})')}",
        "",
    ]
    return "\n".join(lines)


def _toml(value: Any) -> str:
    """A TOML literal for the values a TrialConfig holds (strings, numbers, bools, tables)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value) if math.isfinite(value) else ("inf" if value > 0 else "-inf")
    if isinstance(value, str):
        return json.dumps(value)
    if isinstance(value, dict):
        return "{ " + ", ".join(f"{k} = {_toml(v)}" for k, v in value.items()) + " }"
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_toml(v) for v in value) + "]"
    raise ConfigError("write_spec", f"cannot write {value!r} as TOML")


def write_spec(path: Path, run: TuneRun, trial: FrozenTrial, config: TrialConfig) -> Path:
    """Write the best configuration as an ablation spec; refuse to leave an invalid one."""
    from bench.spec import SpecError, load_spec

    path = Path(path)
    if path.suffix != ".toml":
        raise ConfigError("write_spec", f"an ablation spec is a .toml file, got {path}")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(spec_text(run, trial, config))
    try:
        load_spec(path)
    except SpecError as err:
        path.unlink()
        raise ConfigError("write_spec", f"the written spec did not validate: {err}") from None
    return path


# --- the command ------------------------------------------------------------------------------
def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "spec", help="search space: a name in ablations/tune/ or a path to a TOML file"
    )
    parser.add_argument(
        "--storage", help="Optuna storage URL (default: sqlite:///results/tune-SPEC.db)"
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
        "--heartbeat",
        type=int,
        default=store.DEFAULT_HEARTBEAT_S,
        help="seconds between a worker's heartbeats; a trial silent for 3 heartbeats (its worker "
        f"died) is queued again (default {store.DEFAULT_HEARTBEAT_S})",
    )
    parser.add_argument("--no-export", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--worker-index", type=int, default=0, help=argparse.SUPPRESS)
    parser.add_argument("--workers-total", type=int, default=1, help=argparse.SUPPRESS)
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
            settings = replace(settings, **{name: _setting(name, value)})
    if args.heartbeat < 1:
        raise ConfigError("heartbeat", f"must be at least 1 second, got {args.heartbeat}")
    if args.workers < 1:
        raise ConfigError("workers", f"must be at least 1, got {args.workers}")
    if args.write_spec and not args.best:
        raise ConfigError("write_spec", "only makes sense with --best")
    return TuneRun(
        space=space,
        settings=settings,
        multi=args.multi_objective,
        storage=args.storage,
        results_dir=args.results_dir,
        workers=max(args.workers, args.workers_total),
        worker_index=args.worker_index,
        heartbeat_interval=args.heartbeat,
    )


def main(args: argparse.Namespace) -> int:
    try:
        run = run_from_args(args)
        if args.launcher != "local" and not args.best:
            launch.validate(args, args.storage)  # before anything is checked or stored
        if args.best:
            return _show_best(run, args.write_spec)
        if not (args.worker_index or args.workers_total > 1):  # the parent checks, once
            configs = list(run.space.corner_configs())
            preflight.report_and_exit(preflight.check(configs, run.url), prog="tune")
        predict = memory_predictor() if run.settings.memory_budget is not None else None
        if args.worker_index or args.workers_total > 1:
            run_worker(run, predict=predict)
            return 0
        budget = format_bytes(run.settings.memory_budget) if run.settings.memory_budget else "none"
        print(
            f"tuning {run.space.path} -> study {run.study_name} in {run.url}; "
            f"{run.settings.n_trials} trials, budget {budget}, objectives {','.join(run.objective_names)}"
        )
        jobs = args if args.launcher != "local" else None
        study = run_study(run, predict=predict, jobs=jobs)
    except SearchSpaceError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    except ConfigError as err:
        print(f"error: {err.for_cli()}", file=sys.stderr)
        return 2
    done, running = _counts(study)
    print(f"\n{done} finished trials ({running} still running elsewhere)")
    print("Pareto front:" if run.multi else "best trial:")
    print(front_table(study))
    for line in failure_lines(study, rerun_command(args)):
        print(line)
    if not args.no_export:
        print(f"wrote {export(run)}")
    return 0


def failure_lines(study: optuna.Study, command: str) -> list[str]:
    """One line per kind of failed trial (configuration, environment) and what reruns them."""
    failed_trials = study.get_trials(deepcopy=False, states=(TrialState.FAIL,))
    lines = []
    for kind, failed in count_failures(store.record_of(t) for t in failed_trials).items():
        if kind == "config":
            lines.append(f"configuration failures: {failed.total} trial(s) ({failed.shown()}) "
                         f"are final and count towards --n-trials; to sample more, raise it: "
                         f"{command}")  # fmt: skip
        else:
            lines.append(f"environment failures: {failed.total} trial(s) ({failed.shown()}) "
                         f"are not results and do not count; once fixed, a plain rerun retries "
                         f"them: {command}")  # fmt: skip
    return lines


def rerun_command(args: argparse.Namespace) -> str:
    """The ``tune`` command that resumes this study (same storage, budget and objectives)."""
    words = ["python", "-m", "bench", "tune", str(args.spec)]
    for flag in ("storage", "n_trials", "memory_budget", "device", "seed"):
        value = getattr(args, flag)
        if value is not None:
            words += ["--" + flag.replace("_", "-"), str(value)]
    if Path(args.results_dir) != Path("results"):
        words += ["--results-dir", str(args.results_dir)]
    if args.multi_objective:
        words.append("--multi-objective")
    return shlex.join(words)


def _show_best(run: TuneRun, spec_path: Path | None) -> int:
    try:
        study = open_study(run, load_only=True)
    except KeyError:
        raise ConfigError(
            "best", f"no study {run.study_name} in {run.url}; tune it first"
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
