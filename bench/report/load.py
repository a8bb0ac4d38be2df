"""Reading the tidy exports under ``results/``: one table, checked, with the derived columns
every figure and claim needs (score, activation memory, depth axis, measurement slice)."""

from __future__ import annotations

import csv
import dataclasses
import io
import json
import math
import pathlib
import re
from typing import Any

import numpy as np
import pandas as pd

from bench.config import TrialConfig
from bench.errors import DataError
from bench.models import archs
from bench.record import STATUSES

CONFIG_COLUMNS: tuple[str, ...] = tuple(f.name for f in dataclasses.fields(TrialConfig))
RECORD_COLUMNS: tuple[str, ...] = (
    "status", "metric", "best_valid", "test_at_best_valid", "params", "peak_memory_bytes",
    "model_state_bytes", "memory_meter", "step_time_s", "device_name",
)  # fmt: skip
# Config fields newer than some exports: filled in by ``derive`` (``tie``) or given
# OPTIONAL_DEFAULTS' value (``precision``) where a table lacks them.
LATER_CONFIG_COLUMNS: tuple[str, ...] = (
    "tie",
    "precision",
    "deterministic",
    "share_mask",
    "patience",
    "min_delta",
    "conv",
    "heads",
    "aggr_impl",
    "dataset_hash",
    "compile",
)
REQUIRED_COLUMNS: tuple[str, ...] = (
    "study", "profile", "trial_number",
    *(c for c in CONFIG_COLUMNS if c not in LATER_CONFIG_COLUMNS), *RECORD_COLUMNS,
)  # fmt: skip
# Optional columns and the value a table without them gets (older exports lack them).
OPTIONAL_DEFAULTS: dict[str, Any] = {
    "spec": None,  # None -> the study name
    "kind": "ablation",
    "precision": "fp32",  # exported before mixed precision: every trial ran in float32
    "deterministic": None,  # exported before the field: the device's default (on for CPU)
    "share_mask": None,  # exported before the field: independent masks per layer and group
    # exported before the metered step was split (only the whole-step peak was recorded)
    "baseline_bytes": np.nan,
    "fwd_bwd_peak_bytes": np.nan,
    "optimizer_peak_bytes": np.nan,
    "step_added_bytes": np.nan,
    "metered_steps": np.nan,
    "patience": np.nan,  # exported before early stopping: every trial ran all its epochs
    "min_delta": np.nan,
    "stopped_epoch": np.nan,
    "stop_reason": None,
    "dataset_hash": None,  # exported before graph files: every dataset was a registered one
    "compile": False,  # exported before compiled blocks: every trial ran eagerly
    "conv": "gen",  # exported before the conv axis: every block was GENConv
    "heads": None,  # GAT's heads; None for the other convs
    "aggr_impl": "pyg",  # exported before the fused max aggregation: PyG's path ran
    "epoch_time_s": np.nan,
    "commit": None,
    "solver_fwd_iters_mean": np.nan,
    "solver_bwd_iters_mean": np.nan,
    "solver_fwd_rel_residual_max": np.nan,
    "solver_bwd_rel_residual_max": np.nan,
}
NUMERIC_COLUMNS: tuple[str, ...] = (
    "trial_number", "layers", "channels", "groups", "heads", "dropout", "lr", "epochs", "seed",
    "train_parts", "eval_parts", "eval_every", "grad_clip", "deq_tol", "deq_max_iter", "timeout",
    "patience", "min_delta", "stopped_epoch",
    "memory_cap_bytes", "best_valid", "test_at_best_valid", "params", "peak_memory_bytes",
    "model_state_bytes", "step_time_s", "epoch_time_s", "solver_fwd_iters_mean", "solver_bwd_iters_mean",
    "solver_fwd_rel_residual_max", "solver_bwd_rel_residual_max", "baseline_bytes",
    "fwd_bwd_peak_bytes", "optimizer_peak_bytes", "step_added_bytes", "metered_steps",
)  # fmt: skip
GRAD_BYTES_PER_PARAM = 4  # float32 gradients: what a step adds besides activations
# what the report calls rows of trials that failed for a reason outside their configuration
ENVIRONMENT_DROPPED = "environment failures (not results; retried next run)"
# The columns that say where a number was measured (graph and device); never averaged or
# drawn across.
SLICE_COLUMNS: tuple[str, ...] = ("dataset", "dataset_options", "device_name", "memory_meter")
# What identifies one configuration: everything but the seed, per study and per device.
GROUP_COLUMNS: tuple[str, ...] = (
    "study", "spec", "kind", "profile",
    *(c for c in CONFIG_COLUMNS if c != "seed"),
    "device_name", "memory_meter",
)  # fmt: skip


def read_results(results_dir: str | pathlib.Path) -> pd.DataFrame:
    """All ``*.csv`` tables in ``results_dir`` as one checked frame with derived columns.

    Raises ``DataError`` (with what to do) for a missing or empty folder, a table missing
    required columns, or a status outside the record's vocabulary."""
    folder = pathlib.Path(results_dir)
    if not folder.is_dir():
        raise DataError(f"results folder {str(folder)!r} does not exist; run an ablation and "
                        "`python -m bench export NAME` first, or pass --results DIR")  # fmt: skip
    files = sorted(folder.glob("*.csv"))
    if not files:
        raise DataError(f"no *.csv tables in results folder {str(folder)!r}; export a study with "
                        "`python -m bench export NAME` first")  # fmt: skip
    frames = [read_table(path) for path in files]
    frames = [f for f in frames if len(f)]
    if not frames:
        raise DataError(f"every table in {str(folder)!r} is empty (no trials); nothing to report")
    df = pd.concat(frames, ignore_index=True, sort=False)
    return derive(finished(df))


def finished(df: pd.DataFrame) -> pd.DataFrame:
    """Rows that stand for a finished trial: a status, not an environment failure (data
    missing, device gone: no result; the next sweep retries it) and not superseded by a retry
    (export's ``current`` column). ``attrs['dropped']`` counts what was left out and why."""
    no_status = df["status"].isna() | (df["status"].astype(str).str.strip() == "")
    environment = (
        (df["failure_kind"].astype(str) == "environment") & ~no_status
        if "failure_kind" in df
        else no_status & False
    )
    superseded = (
        ~_truthy(df["current"]) & ~no_status & ~environment
        if "current" in df
        else no_status & False
    )
    keep = df[~no_status & ~environment & ~superseded].copy()
    keep.attrs["dropped"] = {"unfinished (no record)": int(no_status.sum()),
                             "superseded by a retry": int(superseded.sum())}  # fmt: skip
    if environment.any():
        keep.attrs["dropped"][ENVIRONMENT_DROPPED] = int(environment.sum())
    if keep.empty:
        raise DataError("no finished trials in the results tables (every row lacks a status)")
    return keep


def _truthy(values: pd.Series) -> pd.Series:
    return values.astype(str).str.strip().str.lower().isin(("true", "1", "1.0"))


def _check_table(path: pathlib.Path) -> None:
    """Refuse a garbled or truncated table, naming the file and the line, before pandas reads
    it: a parser error is a traceback to a reader, and a table cut mid-row would be read short
    without a word (pandas pads a short last row with NaN). Refused rather than skipped: a
    report missing a table would judge claims on part of the evidence and not say so."""
    text = path.read_text(encoding="utf-8", errors="replace")
    if not text.strip():
        raise DataError(f"{path}: empty file (no header); re-export it")
    if not text.endswith("\n"):
        raise DataError(f"{path}: truncated (no newline after line {text.count(chr(10)) + 1}, "
                        "its last row may be cut); re-export it")  # fmt: skip
    reader = csv.reader(io.StringIO(text))
    try:
        width = len(next(reader))
        for row in reader:
            if row and len(row) != width:
                raise DataError(f"{path}: line {reader.line_num} has {len(row)} fields, the "
                                f"header {width}: a garbled or cut table; re-export it")  # fmt: skip
    except csv.Error as err:
        raise DataError(f"{path}: line {reader.line_num}: {err}; re-export it") from None


def read_table(path: pathlib.Path) -> pd.DataFrame:
    """One export, checked (:func:`_check_table`, required columns); the file name is kept
    for messages."""
    _check_table(path)
    try:
        df = pd.read_csv(path, keep_default_na=True)
    except pd.errors.EmptyDataError:
        raise DataError(f"{path}: empty file (no header); re-export it") from None
    except pd.errors.ParserError as err:
        raise DataError(f"{path}: unreadable table ({str(err).strip()}); re-export it") from None
    missing = [c for c in REQUIRED_COLUMNS if c not in df.columns]
    if missing:
        raise DataError(f"{path}: missing required column(s) {', '.join(missing)}; is it a "
                        "`python -m bench export` table? re-export it with this version")  # fmt: skip
    df["source_file"] = path.name
    return df


def derive(df: pd.DataFrame) -> pd.DataFrame:
    """Types, defaults and the derived columns (score, activation, depth, slice, config_id)."""
    dropped = df.attrs.get("dropped", {})
    df = df.copy()
    df.attrs["dropped"] = dropped
    for column, default in OPTIONAL_DEFAULTS.items():
        if column not in df.columns:
            df[column] = default
    if "tie" not in df.columns:  # exported before the field: weight tying shared one block
        df["tie"] = df["arch"].map(lambda arch: "all" if arch in archs.names(tied=True) else None)
    df["kind"] = df["kind"].fillna("ablation")
    df["spec"] = df["spec"].where(df["spec"].notna(), df["study"])
    df["profile"] = df["profile"].where(df["profile"].notna(), df["kind"])  # tuning: no profile
    for column in NUMERIC_COLUMNS:
        df[column] = pd.to_numeric(df[column], errors="coerce")
    bad = sorted(set(df["status"].astype(str)) - set(STATUSES))
    if bad:
        raise DataError(f"unknown trial status(es) {', '.join(bad)}; expected one of "
                        f"{', '.join(STATUSES)}")  # fmt: skip
    df["device_name"] = df["device_name"].where(
        df["device_name"].notna(), df["device"].astype(str) + " (device not recorded)"
    )
    df["memory_meter"] = _fill_meter(df)
    df["score"] = df["test_at_best_valid"]
    # activations: what forward+backward add to the step's baseline, less the gradients they
    # allocate (exact when every gradient exists at the peak: a reversible backward peaks at its
    # end; a residual one is under-counted by at most its gradients, < 1% of its activations
    # here). Older exports: peak minus model state (diluted by the host data of the CPU meter).
    step_acts = df["step_added_bytes"] - GRAD_BYTES_PER_PARAM * df["params"]
    df["activation_bytes"] = step_acts.where(
        df["step_added_bytes"].notna(), df["peak_memory_bytes"] - df["model_state_bytes"]
    )
    is_deq = df["arch"] == "deq"
    df["depth"] = df["layers"].where(~is_deq | df["deq_max_iter"].isna(), df["deq_max_iter"])
    df["slice"] = slice_names(df)
    df["config_id"] = df.apply(config_id, axis=1)
    df.attrs["dropped"] = dropped
    return df


def _fill_meter(df: pd.DataFrame) -> pd.Series:
    """A failed trial may lack its meter: take the one its ok peers on the same device used."""
    meter = df["memory_meter"].astype(object).copy()
    peers = df[df["memory_meter"].notna()].groupby(["study", "profile", "device_name"])
    known = peers["memory_meter"].agg(lambda s: s.iloc[0] if s.nunique() == 1 else None)
    for idx in df.index[meter.isna()]:
        key = (df.at[idx, "study"], df.at[idx, "profile"], df.at[idx, "device_name"])
        meter.at[idx] = known.get(key) or "meter not recorded"
    return meter


def graph_key(row: pd.Series) -> str:
    """One graph: the dataset with the options it was generated or split with."""
    options = row["dataset_options"]
    options = json.loads(options) if isinstance(options, str) and options else (options or {})
    if not isinstance(options, dict):
        options = {}
    return json.dumps([row["dataset"], {k: canonical(v) for k, v in sorted(options.items())}])


def device_key(row: pd.Series) -> str:
    """One device and the meter that read it."""
    return json.dumps([row["device_name"], row["memory_meter"]])


# the words of a device name that say which machine it is (the rest is vendor boilerplate)
_DEVICE_WORDS = re.compile(
    r"(H100|H200|A100|A10G?|V100|L40S?|L4|T4|RTX ?\w+|MI\d+\w*|Xeon|EPYC|Ryzen|Core\(TM\) i\d|M\d (?:Pro|Max|Ultra)?)"
)


def device_short(device: object) -> str:
    if not isinstance(device, str) or "not recorded" in device:
        return "device not recorded"
    found = _DEVICE_WORDS.search(device)
    kind = "GPU" if device.startswith("cuda") else "CPU"
    return (
        f"{found.group(1).replace('(TM)', '').strip()} {kind}" if found else device.split(" (")[0]
    )


def _graph_short(key: str) -> str:
    """A generated graph by its size (and the hops k its task needs, where known)."""
    from bench.data.registry import SPECS, graph_size, needed_hops

    dataset, options = json.loads(key)
    spec = SPECS.get(dataset)
    if spec is None or spec.kind != "generated":
        return dataset
    size = graph_size(dataset, options)
    nodes = size[0] if size is not None else spec.nodes
    name = (
        f"{dataset} {nodes / 1000:g}k"
        if nodes >= 1000 and nodes % 100 == 0
        else f"{dataset} {nodes:,}"
    )
    k = needed_hops(dataset, options)
    return name if k is None or dataset != "synthetic-depth" else f"{name} k={k}"


def slice_names(df: pd.DataFrame) -> pd.Series:
    """Each row's measurement slice by a short name: its graph (dataset, size) and its device,
    e.g. ``synthetic-proteins 1k · Xeon CPU``. Two graphs (other options) or two devices never
    share a name: a name that would repeat gets ``#2``, ``#3``; :func:`slice_table` defines each
    name once in full."""
    graphs = df.apply(graph_key, axis=1)
    devices = df.apply(device_key, axis=1)
    names: dict[tuple[str, str], str] = {}
    taken: dict[str, int] = {}
    for graph, device in sorted(set(zip(graphs, devices, strict=True))):
        base = f"{_graph_short(graph)} · {device_short(json.loads(device)[0])}"
        taken[base] = taken.get(base, 0) + 1
        names[(graph, device)] = base if taken[base] == 1 else f"{base} #{taken[base]}"
    return pd.Series([names[k] for k in zip(graphs, devices, strict=True)], index=df.index)


def slice_table(df: pd.DataFrame) -> pd.DataFrame:
    """One row per slice name: the graph in full (dataset and options), the device by its
    short name (:func:`device_table` defines it), the commits and the studies behind it."""
    rows = []
    for name, g in df.groupby("slice", sort=True):
        first = g.iloc[0]
        dataset, options = json.loads(graph_key(first))
        shown = ", ".join(f"{k}={v}" for k, v in options.items())
        commits = ", ".join(sorted(g["commit"].dropna().astype(str).str[:7].unique())) or "—"
        rows.append({"slice": name, "graph": f"{dataset} ({shown})" if shown else dataset,
                     "device": device_short(first["device_name"]), "commits": commits,
                     "trials": len(g), "studies": ", ".join(sorted(g["study"].astype(str).unique()))})  # fmt: skip
    return pd.DataFrame(rows)


def device_table(df: pd.DataFrame) -> pd.DataFrame:
    """Each device once: its short name (as slices use it), full name, meter, library versions."""
    rows = []
    version_cols = sorted(c for c in df.columns if c.startswith("version_"))
    for (device, meter), g in df.groupby(["device_name", "memory_meter"], sort=True):
        versions = ", ".join(
            f"{c.removeprefix('version_')} {'/'.join(sorted(g[c].dropna().astype(str).unique()))}"
            for c in version_cols if g[c].notna().any()
        )  # fmt: skip
        rows.append({"device": device_short(device), "as recorded": device, "meter": meter,
                     "library versions": versions or "—"})  # fmt: skip
    return pd.DataFrame(rows)


def canonical(value: Any) -> Any:
    """A JSON-stable form of a cell: NaN -> None, whole floats -> int, numpy -> python."""
    if value is None:
        return None
    if isinstance(value, (np.generic,)):
        value = value.item()
    if isinstance(value, float):
        if math.isnan(value):
            return None
        return int(value) if value.is_integer() else value
    return value


def as_key(values: pd.Series) -> pd.Series:
    """Cells as JSON strings ('null' for missing), so grouping and counting never drop NaN."""
    return values.map(lambda v: json.dumps(canonical(v), sort_keys=True)).astype(object)


def config_id(row: pd.Series) -> str:
    """One string per configuration (everything but the seed): the key rows are grouped by."""
    return json.dumps({c: canonical(row[c]) for c in GROUP_COLUMNS}, sort_keys=True)


def varying_columns(df: pd.DataFrame, exclude: tuple[str, ...] = ()) -> list[str]:
    """Config columns (seed aside) that take more than one value in ``df``."""
    out = []
    for column in CONFIG_COLUMNS:
        if column == "seed" or column in exclude or column not in df.columns:
            continue
        if as_key(df[column]).nunique() > 1:
            out.append(column)
    return out


def variant_labels(df: pd.DataFrame, exclude: tuple[str, ...]) -> pd.Series:
    """A label per row naming the config columns that differ within ``df`` (besides ``exclude``
    and those fixed per arch, which the arch already names): lines with different labels are
    different configurations and are never merged."""
    columns = [
        c for c in varying_columns(df, exclude=exclude)
        if df.groupby("arch")[c].agg(lambda s: as_key(s).nunique()).max() > 1
    ]  # fmt: skip
    columns = _drop_redundant(df, columns)
    if not columns:
        return pd.Series("", index=df.index, dtype=object)
    return df.apply(
        lambda r: ", ".join(
            part for c in columns if (part := readable(c, canonical(r[c]))) is not None
        ),
        axis=1,
    ).astype(object)


_WORDS: dict[str, dict[Any, str]] = {
    "deq_solver": {"anderson": "Anderson", "broyden": "Broyden", "fixed_point": "fixed-point"},
    "deq_grad": {"implicit": "implicit gradient", "phantom": "phantom gradient"},
    "batching": {"mini": "mini-batch", "full": "full-batch"},
    "tie": {"after-first": "tied after the first layer", "all": "one block for all layers"},
    "share_mask": {True: "one dropout mask", False: "a mask per layer"},
    "norm": {"layer": "LayerNorm", "batch": "BatchNorm", "none": "no norm"},
    "deterministic": {True: "deterministic kernels", False: "fast kernels"},
    "conv": {"gen": "GENConv", "gat": "GAT", "sage": "GraphSAGE", "gcn": "GCN"},
    "aggr_impl": {"fused": "fused max", "pyg": "PyG's max"},
}
_UNITS: dict[str, str] = {
    "channels": "{} channels", "groups": "{} groups", "layers": "{} layers",
    "train_parts": "{} training parts", "eval_parts": "{} eval parts", "epochs": "{} epochs",
    "dropout": "dropout {}", "lr": "lr {}", "aggr": "{} aggregation", "deq_tol": "tolerance {}",
    "deq_max_iter": "at most {} iterations", "precision": "{}", "grad_clip": "clip {}",
    "heads": "{} heads",
}  # fmt: skip


def readable(column: str, value: Any) -> str | None:
    """A config value in a reader's words (legends, panel titles): ``64 MiB budget``,
    ``Anderson``, ``2 training parts``; None for an unset value (nothing to say)."""
    if value is None:
        return None
    if column == "memory_cap_bytes":
        from bench.units import format_bytes

        return f"{format_bytes(int(value))} budget"
    if value in _WORDS.get(column, {}):
        return _WORDS[column][value]
    if column in _UNITS:
        return _UNITS[column].format(_short(value))
    return f"{column.replace('_', ' ')} {_short(value)}"


def _short(value: Any) -> str:
    return "-" if value is None else (f"{value:g}" if isinstance(value, float) else str(value))


def _drop_redundant(df: pd.DataFrame, columns: list[str]) -> list[str]:
    """Drop a column whose values map one-to-one onto an earlier kept column's (e.g.
    train_parts with batching): the label stays short and still tells the configs apart."""
    kept: list[str] = []
    for column in columns:
        values = as_key(df[column])
        if not any(_one_to_one(as_key(df[k]), values) for k in kept):
            kept.append(column)
    return kept


def _one_to_one(a: pd.Series, b: pd.Series) -> bool:
    pairs = pd.DataFrame({"a": a, "b": b}).drop_duplicates()
    return pairs["a"].is_unique and pairs["b"].is_unique
