"""One tuning trial: sample a configuration, prune it before running when the memory model
predicts it over the budget, run it in its own process under the budget as a memory cap,
report each epoch to the pruner, store the record."""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from typing import Any

import optuna

from bench.config import TrialConfig
from bench.harness.artifacts import attach_record
from bench.harness.source import RunFn
from bench.harness.storage import config_of, has_record, save_record, set_config
from bench.record import TrialRecord, failure_kind_of
from bench.tuning.settings import OBJECTIVES
from bench.tuning.study import PRUNE_REASON, PredictFn, TuneRun
from bench.units import format_bytes


def memory_predictor() -> PredictFn:
    """Predicted peak bytes of a training step of a configuration (:mod:`bench.measure.memory_model`).

    Each dataset is loaded once, and graph sizes are computed once per partitioning: the
    predictions for a whole space cost one load and a few partitions."""
    from bench.data import load
    from bench.measure import memory_model

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


class TrialFailed(RuntimeError):
    """The trial ran and failed (its record says why): Optuna marks it FAIL."""


class Objective:
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
        except (optuna.TrialPruned, TrialFailed):
            raise
        except Exception as err:  # a bug or bad input here must not leave a record-less trial
            storage = trial.study._storage
            if not has_record(storage, trial._trial_id):
                config = config_of(storage.get_trial(trial._trial_id))
                record = TrialRecord(
                    status="error",
                    config=config,
                    error=f"{type(err).__name__}: {err}",
                    failed_phase="setup",
                    failure_kind=failure_kind_of("error", err),
                )
                self._store(trial, record)
            raise

    def _run(self, trial: optuna.Trial) -> float | list[float]:
        run, budget = self.run, self.run.settings.memory_budget
        suggestion = run.space.suggest(trial)
        config = suggestion.config
        if suggestion.adjusted:
            trial.set_user_attr("adjusted", {k: list(v) for k, v in suggestion.adjusted.items()})
        set_config(trial.storage, trial._trial_id, config.to_dict())
        predicted = self.predict(config) if self.predict else None
        # only the values there are (the dashboard sorts a number only if no trial has None)
        if predicted is not None:
            trial.set_user_attr("predicted_peak_bytes", predicted)
        if budget is not None:
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
        self._store(trial, record)
        if record.status not in ("ok", "timeout"):
            raise TrialFailed(f"trial {record.status}: {record.error}")
        values = [getattr(record, OBJECTIVES[name][0]) for name in self.run.objective_names]
        if any(v is None or not math.isfinite(float(v)) for v in values):
            raise TrialFailed(f"trial produced no value for {self.run.objective_names}: {values}")
        return float(values[0]) if len(values) == 1 else [float(v) for v in values]

    def _prune(
        self, trial: optuna.Trial, record: TrialRecord, reason: str, over_budget: bool = False
    ) -> None:
        if record.status != "pruned" and record.error is None:
            record.error = reason
        self._store(trial, record)
        trial.set_user_attr(PRUNE_REASON, reason)
        trial.set_user_attr("over_budget", over_budget)
        raise optuna.TrialPruned(reason)

    def _store(self, trial: optuna.Trial, record: TrialRecord) -> None:
        """The record in the storage, then as the trial's artifact."""
        save_record(trial.study, trial, record)
        attach_record(trial.study._storage, trial, record, self.run.artifacts)
