"""The report's view of the tidy exports under ``results/``: every table read and checked
(:mod:`bench.exports`, shared with the harness), then the columns every figure and claim
needs (score, activation memory, depth axis, measurement slice) and the reader's words."""

from __future__ import annotations

import json
import pathlib
import re
from typing import Any

import pandas as pd

from bench.errors import DataError
from bench.exports.table import (
    CONFIG_COLUMNS,
    canonical,
    export_paths,
    finished,
    normalise,
    read_table,
)
from bench.models import archs

GRAD_BYTES_PER_PARAM = 4  # float32 gradients: what a step adds besides activations
# The columns that say where a number was measured (graph and device); never averaged or
# drawn across.
SLICE_COLUMNS: tuple[str, ...] = ("dataset", "dataset_options", "device_name", "memory_meter")


def read_results(results_dir: str | pathlib.Path) -> pd.DataFrame:
    """All ``*.csv`` tables in ``results_dir`` as one checked frame with derived columns.

    Raises ``DataError`` (with what to do) for a missing or empty folder, a table of another
    schema version or missing columns, or a status outside the record's vocabulary."""
    folder = pathlib.Path(results_dir)
    if not folder.is_dir():
        raise DataError(f"results folder {str(folder)!r} does not exist; run an ablation and "
                        "`python -m bench export NAME` first, or pass --results DIR")  # fmt: skip
    files = export_paths(folder)
    if not files:
        raise DataError(f"no *.csv tables in results folder {str(folder)!r}; export a study with "
                        "`python -m bench export NAME` first")  # fmt: skip
    frames = [read_table(path) for path in files]
    frames = [f for f in frames if len(f)]
    if not frames:
        raise DataError(f"every table in {str(folder)!r} is empty (no trials); nothing to report")
    df = pd.concat(frames, ignore_index=True, sort=False)
    return derive(finished(df))


def derive(df: pd.DataFrame) -> pd.DataFrame:
    """:func:`bench.exports.table.normalise` (types, fills, ``config_id``), then the columns
    the report derives (score, activation memory, depth axis, slice)."""
    df = normalise(df)
    dropped = df.attrs["dropped"]
    df["score"] = df["test_at_best_valid"]
    # activations: what forward+backward add to the step's baseline, less the gradients they
    # allocate (exact when every gradient exists at the peak: a reversible backward peaks at its
    # end; a residual one is under-counted by at most its gradients, < 1% of its activations
    # here). Exports without the split step: peak minus model state (diluted by the host data
    # of the CPU meter).
    step_acts = df["step_added_bytes"] - GRAD_BYTES_PER_PARAM * df["params"]
    df["activation_bytes"] = step_acts.where(
        df["step_added_bytes"].notna(), df["peak_memory_bytes"] - df["model_state_bytes"]
    )
    iterated = df["arch"].isin(archs.names(depth_unit="iteration"))
    df["depth"] = df["layers"].where(~iterated | df["deq_max_iter"].isna(), df["deq_max_iter"])
    df["slice"] = slice_names(df)
    df.attrs["dropped"] = dropped
    return df


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
        commits = ", ".join(sorted({_short_commit(c) for c in g["commit"].dropna()})) or "—"
        rows.append({"slice": name, "graph": f"{dataset} ({shown})" if shown else dataset,
                     "device": device_short(first["device_name"]), "commits": commits,
                     "trials": len(g), "studies": ", ".join(sorted(g["study"].astype(str).unique()))})  # fmt: skip
    return pd.DataFrame(rows)


def _short_commit(commit: object) -> str:
    """A commit's first 7 characters, ``-dirty`` kept: uncommitted code must say so."""
    text = str(commit)
    return text[:7] + ("-dirty" if text.endswith("-dirty") else "")


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


def as_key(values: pd.Series) -> pd.Series:
    """Cells as JSON strings ('null' for missing), so grouping and counting never drop NaN."""
    return values.map(lambda v: json.dumps(canonical(v), sort_keys=True)).astype(object)


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
