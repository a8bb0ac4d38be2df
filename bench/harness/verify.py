"""``python -m bench reproduce --verify [N]``: do the committed numbers reproduce at today's code?

A committed export is evidence only if the code that measured it can be run again and gives the
same numbers. This reruns a deterministic sample of every committed study's points at HEAD,
each in a fresh process (:func:`bench.trial.run_trial_isolated`, one thread), and compares the
new record with the committed row; ``results/verify.csv`` gets one row per rerun point, and
the report states per slice what was verified at which code (``bench.report``).

**The sample.** Per study: for every architecture in it, its cheapest point by recorded wall
time that ended ok (a failed one where none did), then the cheapest others by a hash of their key
until the study has ``N`` points (default 1, so one per architecture). Cheapest, because what is
checked is the code, and a cheap point runs the same code as a dear one of its architecture.
GPU rows are listed as not run here (no CUDA device; the GPU backlog reruns them), and so are
trials a tuner pruned (their end depended on the other trials of their study).

**What must agree** (the tolerances, and why):

* status and parameter count: exactly (the code decides them);
* peak and step memory (``peak_memory_bytes``, ``step_added_bytes``): within ``MEMORY_TOLERANCE``
  (1%): the live-tensor meter counts the tensors a deterministic program allocates, which do not
  depend on the CPU; 1% leaves room for a library's workspace tensor of a different size;
* scores (``best_valid``, ``test_at_best_valid``): within ``SCORE_TOLERANCE`` (0.01, the margin
  the report's score claims use, so a difference under it cannot by itself move a verdict).
  CPU trials run deterministic algorithms, so on one machine a rerun is bit for bit; but
  floating-point kernels differ in their last bits between CPU models, training amplifies that,
  and a virtual machine's CPU name does not tell models apart: measured here, an
  ``accuracy-real`` point recorded on a "cpu (AMD EPYC, 1 thread, 2 cores)" scored 0.9549, and
  0.9588 when rerun on another "AMD EPYC" at its own commit and at today's. ``identical`` says
  where every number came back bit for bit.

Verdicts: ``reproduces`` (``identical`` says whether every number came back bit for bit);
``differs`` (naming each quantity that does not); ``not run here`` (a device or dataset this
machine lacks).
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import dataclasses
import hashlib
import json
import math
import os
import typing
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pandas as pd

from bench.config import TrialConfig
from bench.errors import ConfigError, DataError
from bench.exports.table import VERIFY_FILE, export_paths, finished, read_table
from bench.record import TrialRecord

MEMORY_TOLERANCE = 0.01
SCORE_TOLERANCE = 0.01
REPRODUCES, DIFFERS, NOT_RUN = "reproduces", "differs", "not run here"
MEMORY = ("peak_memory_bytes", "step_added_bytes")
SCORES = ("best_valid", "test_at_best_valid")
COLUMNS = (
    "study", "point_key", "seed", "arch", "layers", "channels", "verdict", "identical", "differs",
    "commit_then", "source_then", "commit_now", "source_now", "device_then", "device_now",
    "status_then", "status_now", "params_then", "params_now",
    *(f"{q}_{when}" for q in (*MEMORY, *SCORES) for when in ("then", "now")),
)  # fmt: skip
RunFn = Callable[[TrialConfig], TrialRecord]


def sample(table: pd.DataFrame, per_study: int = 1) -> pd.DataFrame:
    """The rows of one study's export to rerun (module doc): one per architecture, cheapest ok
    first, then the cheapest others by key hash up to ``per_study``."""
    rows = finished(table)
    rows = rows[rows["status"] != "pruned"]  # a tuner's decision, not the trial's (module doc)
    rows = rows.assign(_ok=rows["status"].eq("ok"), _wall=pd.to_numeric(rows["wall_time_s"]))
    rows = rows.assign(_hash=[_key_hash(r) for _, r in rows.iterrows()])
    ordered = rows.sort_values(["_ok", "_wall", "_hash"], ascending=[False, True, True])
    chosen = ordered.groupby("arch", sort=False).head(1)
    rest = rows.drop(index=chosen.index).sort_values("_hash")
    extra = rest.head(max(0, per_study - len(chosen)))
    out = pd.concat([chosen, extra]).drop(columns=["_ok", "_wall", "_hash"])
    return out.sort_values(["arch", "layers", "seed"], kind="stable")


def _key_hash(row: pd.Series) -> str:
    text = f"{row['study']}/{row.get('point_key')}/{row.get('seed')}"
    return hashlib.sha256(text.encode()).hexdigest()


def config_of(row: pd.Series) -> TrialConfig:
    """The configuration an export row recorded, validated as today's code reads it."""
    hints = typing.get_type_hints(TrialConfig)
    values: dict[str, Any] = {}
    for f in dataclasses.fields(TrialConfig):
        cell = row.get(f.name)
        if cell is None or (isinstance(cell, float) and math.isnan(cell)) or cell == "":
            continue
        values[f.name] = _typed(cell, hints[f.name])
    return TrialConfig.from_dict(values, check_device=False)


def _typed(cell: Any, hint: Any) -> Any:
    """A cell as its field's type (CSV cells come back as numbers or text)."""
    if typing.get_origin(hint) is dict:
        return json.loads(cell) if isinstance(cell, str) else dict(cell)
    kinds = set(typing.get_args(hint)) or {hint}
    if bool in kinds:
        return cell if isinstance(cell, bool) else str(cell).strip().lower() in ("true", "1", "1.0")
    if int in kinds and float not in kinds:
        return int(float(cell))
    if float in kinds:
        return float(cell)
    return str(cell)


def compare(row: pd.Series, record: TrialRecord) -> dict[str, Any]:
    """One verify row: the committed row then, the rerun now, and the verdict."""
    now = record.flat()
    out: dict[str, Any] = {
        "study": row["study"], "point_key": row.get("point_key"), "seed": row.get("seed"),
        "arch": row["arch"], "layers": row.get("layers"), "channels": row.get("channels"),
        "commit_then": row.get("commit"), "source_then": row.get("source_hash"),
        "commit_now": record.commit, "source_now": record.source_hash,
        "device_then": row.get("device_name"), "device_now": record.device_name,
        "status_then": row["status"], "status_now": record.status,
        "params_then": row.get("params"), "params_now": record.params,
    }  # fmt: skip
    for quantity in (*MEMORY, *SCORES):
        out[f"{quantity}_then"], out[f"{quantity}_now"] = row.get(quantity), now.get(quantity)
    differs = _differences(out)
    out["verdict"] = DIFFERS if differs else REPRODUCES
    out["differs"] = "; ".join(differs)
    out["identical"] = not differs and all(
        _number(out[f"{q}_then"]) == _number(out[f"{q}_now"])
        or math.isnan(_number(out[f"{q}_then"]))
        and math.isnan(_number(out[f"{q}_now"]))
        for q in (*MEMORY, *SCORES)
    )
    return out


def _differences(out: dict[str, Any]) -> list[str]:
    found = []
    if out["status_then"] != out["status_now"]:
        found.append(f"status {out['status_then']} -> {out['status_now']}")
    if _number(out["params_then"]) != _number(out["params_now"]):
        found.append(f"params {out['params_then']} -> {out['params_now']}")
    for quantity in MEMORY:
        then, now = _number(out[f"{quantity}_then"]), _number(out[f"{quantity}_now"])
        if not _within(then, now, MEMORY_TOLERANCE * abs(then) if then == then else 0):
            found.append(f"{quantity} {then:.0f} -> {now:.0f} (> {MEMORY_TOLERANCE:.0%})")
    for quantity in SCORES:
        then, now = _number(out[f"{quantity}_then"]), _number(out[f"{quantity}_now"])
        if not _within(then, now, SCORE_TOLERANCE):
            found.append(f"{quantity} {then:.6g} -> {now:.6g} (> {SCORE_TOLERANCE:g})")
    return found


def _number(value: Any) -> float:
    try:
        return float(value)
    except (TypeError, ValueError):
        return math.nan


def _within(then: float, now: float, tolerance: float) -> bool:
    """Both missing, or both numbers within ``tolerance``."""
    if math.isnan(then) or math.isnan(now):
        return math.isnan(then) and math.isnan(now)
    return abs(then - now) <= tolerance


def not_run(row: pd.Series, why: str) -> dict[str, Any]:
    """The verify row of a point this machine cannot rerun."""
    out = {c: None for c in COLUMNS}
    out.update(study=row["study"], point_key=row.get("point_key"), seed=row.get("seed"),
               arch=row["arch"], layers=row.get("layers"), channels=row.get("channels"),
               commit_then=row.get("commit"), source_then=row.get("source_hash"),
               device_then=row.get("device_name"), status_then=row["status"],
               verdict=NOT_RUN, differs=why)  # fmt: skip
    return out


def plan(results_dir: Path, per_study: int = 1, studies: set[str] | None = None) -> pd.DataFrame:
    """Every study's sample (``studies``: only those), in study order."""
    parts = []
    for path in export_paths(results_dir):
        if studies and path.stem not in studies:
            continue
        parts.append(sample(read_table(path), per_study))
    if not parts:
        raise DataError(f"{results_dir}: no exported study to verify")
    return pd.concat(parts, ignore_index=True)


def verify(
    results_dir: Path,
    per_study: int = 1,
    workers: int = 1,
    studies: set[str] | None = None,
    run_fn: RunFn | None = None,
    log: Callable[[str], None] = print,
) -> pd.DataFrame:
    """Rerun the plan at HEAD, write ``RESULTS/verify.csv`` (rows of other studies kept), and
    return this run's rows."""
    todo = plan(results_dir, per_study, studies)
    log(f"verify: {len(todo)} points of {todo['study'].nunique()} studies, {workers} at a time")
    rows = []
    with _one_thread(), concurrent.futures.ThreadPoolExecutor(max(1, workers)) as pool:
        jobs = [pool.submit(_check, row, run_fn) for _, row in todo.iterrows()]
        for n, job in enumerate(concurrent.futures.as_completed(jobs), 1):
            rows.append(job.result())
            log(_progress_line(rows[-1], n, len(jobs)))
    table = pd.DataFrame(rows, columns=list(COLUMNS))
    _write(Path(results_dir) / VERIFY_FILE, table)
    for verdict, n in table["verdict"].value_counts().items():
        log(f"verify: {n} {verdict}")
    return table


def _progress_line(row: dict[str, Any], n: int, total: int) -> str:
    """One line per rerun point as it finishes: which point, and its verdict."""
    what = row["verdict"] + (" bit for bit" if row.get("identical") else "")
    if row["differs"]:
        what += f": {row['differs']}"
    return (f"verify [{n}/{total}] {row['study']} {row['arch']} {row['layers']} layers x "
            f"{row['channels']} seed {row['seed']}: {what}")  # fmt: skip


def _check(row: pd.Series, run_fn: RunFn | None) -> dict[str, Any]:
    if str(row.get("device")) != "cpu":
        return not_run(row, f"recorded on {row.get('device')}: needs that device")
    try:
        config = config_of(row)
    except (ConfigError, DataError) as exc:
        return not_run(row, f"not a configuration today's code runs: {exc}")
    if run_fn is None:
        from bench.trial import run_trial_isolated

        run_fn = run_trial_isolated
    record = run_fn(config)
    if record.is_environment_failure:
        return not_run(row, (record.error or record.status).splitlines()[0])
    return compare(row, record)


@contextlib.contextmanager
def _one_thread() -> Iterator[None]:
    """Trial processes on one thread each, as the committed trials ran (``--workers``' rule)."""
    had = os.environ.get("OMP_NUM_THREADS")
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    try:
        yield
    finally:
        if had is None:
            os.environ.pop("OMP_NUM_THREADS", None)


def _write(path: Path, table: pd.DataFrame) -> None:
    """This run's rows replace every earlier row of the studies it verified (a study's sample
    is drawn anew: a row of a point no longer sampled, or compared with rows no longer
    committed, would vouch for nothing); other studies' rows stay."""
    if path.exists():
        old = pd.read_csv(path)
        table = pd.concat([old[~old["study"].isin(set(table["study"]))], table], ignore_index=True)
    table = table.sort_values(["study", "arch", "layers", "seed"], kind="stable")
    table.to_csv(path, index=False)
