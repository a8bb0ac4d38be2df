"""What a tuning study gives back: one log line per trial, the tidy export with objectives and
the Pareto front, the best trial as a ``trial`` command or as an ablation spec."""

from __future__ import annotations

import json
import math
import shlex
from pathlib import Path
from typing import Any

import optuna
from optuna.trial import FrozenTrial, TrialState

from bench.config import TrialConfig
from bench.errors import ConfigError
from bench.harness.export import LEAD_COLUMNS, trial_rows
from bench.harness.storage import (
    open_storage,
    record_of,
)
from bench.tuning.study import PRUNE_REASON, TuneRun, study_name
from bench.units import format_bytes


def describe_trial(trial: FrozenTrial) -> str:
    record = record_of(trial)
    params = " ".join(f"{k}={short_value(v)}" for k, v in trial.params.items())
    if trial.state == TrialState.PRUNED:
        outcome = f"pruned ({trial.user_attrs.get(PRUNE_REASON, '')})"
    elif trial.state == TrialState.COMPLETE:
        peak = format_bytes(record.peak_memory_bytes) if record else "-"
        values = ", ".join(f"{v:.4g}" for v in trial.values)
        outcome = f"values {values} (peak {peak})"
    else:
        outcome = f"{trial.state.name.lower()} ({record.error if record else 'no record'})"
    return f"trial {trial.number}: {outcome}; {params}"


def short_value(value: Any) -> str:
    return f"{value:.3g}" if isinstance(value, float) else str(value)


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
    rows = trial_rows(study, {"kind": "tune"})
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
    lead = [c for c in LEAD_COLUMNS if c in frame.columns]
    rest = [c for c in frame.columns if c not in lead and c not in tune_columns]
    return frame[lead + tune_columns + rest]


def export(run: TuneRun) -> Path:
    """Write ``results/tune-SPEC.csv``: every tuning study of this spec in the storage."""
    import pandas as pd

    from bench.exports.table import write_table

    storage = open_storage(run.url, heartbeat_interval=None)
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
    return write_table(frame, run.results_dir / f"tune-{run.space.name}.csv")


def front_table(study: optuna.Study, only_front: bool = True) -> str:
    """A plain-text table of the Pareto front (or every complete trial), best score first."""
    import pandas as pd

    front = pareto_numbers(study)
    rows = []
    for trial in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)):
        if only_front and trial.number not in front:
            continue
        record = record_of(trial)
        row: dict[str, Any] = {
            "trial": trial.number,
            **{k: short_value(v) for k, v in trial.params.items()},
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
    record = record_of(trial)
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
    """The best configuration as an ablation spec (``bench.harness.spec`` format): one point, rerun
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
    from bench.harness.spec import SpecError, load_spec

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
