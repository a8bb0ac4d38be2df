"""The paper's figure-1 points beside the memory model's CUDA prediction and, where
``python -m bench gpu-check`` has run, the GPU's measurement (``results/gpu/gpu-check.csv``).

The prediction needs no GPU and no dataset: the dry run's model on the expected size of one
ogbn-proteins training part (:func:`bench.paper.proteins_batch`). The measurement is its own
slice (device and meter named), never mixed with the CPU trials.
"""

from __future__ import annotations

import math
import pathlib

import pandas as pd

from bench import paper
from bench.report.fmt import markdown_table

GPU_CSV = pathlib.Path("gpu") / "gpu-check.csv"
EARLIER_CSV = pathlib.Path("gpu") / "pyg-max" / "gpu-check.csv"  # PyG's max path, older engines

WHY = (
    "Why the predictions and the paper differ: the authors' GENConv used "
    "`torch_scatter.scatter_max`, whose backward keeps an N x C argmax, but kept the message "
    "ReLU's E x C output; PyG 2.8 without `torch_scatter` uses `torch.scatter_reduce(..., "
    "'amax')`, whose backward keeps its whole E x C input and its output, about 0.2 GB each per "
    "layer on a proteins part at 64 channels; the suite's fused max (`--aggr-impl fused`, the "
    "default, `bench.nn.aggr`) keeps only the N x C argmax. So ResGNN's prediction is far above "
    "the paper's 27.1 GB on PyG's path and far below it fused, with the authors' code between. "
    "RevGNN keeps one group's block at a time, so its predictions are close to the paper's "
    "(lower: the authors' number is read after a whole epoch, allocator blocks included, never "
    "reset)."
)


def read_gpu(results_dir: pathlib.Path, csv: pathlib.Path = GPU_CSV) -> pd.DataFrame | None:
    """The GPU check's rows, or None when it has not run."""
    path = results_dir / csv
    return pd.read_csv(path) if path.exists() else None


def _measured_gb(gpu: pd.DataFrame | None, label: str) -> float | None:
    if gpu is None:
        return None
    row = gpu[(gpu["label"] == label) & (gpu["status"] == "ok")]
    return float(row["peak_bytes"].iloc[0]) / 1e9 if len(row) else None


def measured_note(gpu: pd.DataFrame | None, earlier: pd.DataFrame | None) -> str:
    """What the GPU run says against the paper, from its own rows: the memory model's largest
    miss, and RevGNN-64's advantage over ResGNN-64 at 112 layers (and on PyG's path, where an
    earlier run on it is kept in ``results/gpu/pyg-max/``)."""
    if gpu is None:
        return ""
    ok = gpu[(gpu["status"] == "ok") & gpu["group"].isin(["figure 1", "headline"])]
    miss = (ok["predicted_peak_bytes"] / ok["peak_bytes"] - 1).abs().max()
    text = (f" The measured column ran {', '.join(dict.fromkeys(ok['aggr_impl']))} max "
            f"aggregation; the memory model predicted every figure-1 and headline point within "
            f"{miss:.0%} of the measurement (*predicted GB at the run*).")  # fmt: skip
    res, rev = _measured_gb(gpu, "ResGNN-64"), _measured_gb(gpu, "RevGNN-64")
    paper_res, paper_rev = (paper.point(k).peak_memory_gb for k in ("ResGNN-64", "RevGNN-64"))
    if res and rev and paper_res and paper_rev:
        text += (f" RevGNN-64 needs {rev:.2f} GB against ResGNN-64's {res:.2f} GB at 112 layers: "
                 f"{res / rev:.1f}x less, where the paper measured {paper_res / paper_rev:.1f}x "
                 f"against its heavier ResGNN ({paper_res:.1f} GB).")  # fmt: skip
    old_res = _measured_gb(earlier, "ResGNN-64")
    if old_res and res:
        text += (f" An earlier run on PyG's path, kept in [results/gpu/pyg-max/]"
                 f"(../results/gpu/pyg-max/SUMMARY.md), measured ResGNN-64 at {old_res:.2f} GB "
                 f"({old_res / res:.1f}x today's).")  # fmt: skip
    return text


def paper_vs_predicted(gpu: pd.DataFrame | None) -> pd.DataFrame:
    """One row per paper point (figure 1 and the headline models), raw values."""
    from bench.instruments.gpu_check import Point, paper_sizes, predict

    sizes = paper_sizes()
    measured = {}
    if gpu is not None:
        for _, row in gpu[gpu["group"].isin(["figure 1", "headline"])].iterrows():
            measured[row["label"]] = row
    rows = []
    for p in (*paper.FIGURE1, *paper.HEADLINE):
        point = Point("figure 1", p.label, p.arch, p.layers, p.channels, p.groups or 2)
        pred = predict(point, sizes, "pyg")
        fused = predict(point, sizes, "fused")
        m = measured.get(p.label)
        ok = m is not None and m.get("status") == "ok"
        rows.append({
            "model": p.label, "layers": p.layers, "channels": p.channels,
            "paper params": p.params, "our params": pred.params,
            "paper GB (V100)": "OOM" if p.oom else p.peak_memory_gb,
            "predicted GB (PyG max)": pred.total_bytes / 1e9,
            "predicted GB (fused max)": fused.total_bytes / 1e9,
            "measured GB": (m["peak_bytes"] / 1e9 if ok else m["status"]) if m is not None else None,
            "measured reserved GB": m["reserved_peak_bytes"] / 1e9 if ok else None,
            "predicted GB at the run": m["predicted_peak_bytes"] / 1e9 if m is not None else None,
            "measured on": (f"{m['device']}, {m.get('aggr_impl', 'pyg')} max")
            if m is not None else None,
        })  # fmt: skip
    return pd.DataFrame(rows)


def display(table: pd.DataFrame) -> pd.DataFrame:
    """Display strings (GB to two decimals, counts with separators)."""

    def gb(v: object) -> str:
        if v is None or (isinstance(v, float) and math.isnan(v)):
            return "—"
        return f"{v:.2f}" if isinstance(v, (int, float)) else str(v)

    def count(v: object) -> str:
        if v is None or (isinstance(v, float) and math.isnan(v)):
            return "—"
        return f"{int(v):,}"

    out = table.copy()
    for col in ("paper params", "our params"):
        out[col] = out[col].map(count)
    for col in (
        "paper GB (V100)",
        "predicted GB (PyG max)",
        "predicted GB (fused max)",
        "measured GB",
        "measured reserved GB",
    ):
        out[col] = out[col].map(gb)
    out["measured on"] = out["measured on"].fillna("not run (`python -m bench gpu-check`)")
    return out


def section(
    table: pd.DataFrame, gpu: pd.DataFrame | None, earlier: pd.DataFrame | None = None
) -> str:
    """REPORT.md's section: the table, where the numbers come from, and why they differ."""
    nodes, edges = paper.proteins_batch()
    where = (
        f"Measured by `python -m bench gpu-check` on {gpu['device'].iloc[0]} "
        f"(torch {gpu['torch'].iloc[0]}, CUDA {gpu['cuda'].iloc[0]}; meter `cuda-allocator`, "
        "`max_memory_allocated` of one training step after a warm-up step) on one training part "
        "of `synthetic-proteins-paper`; the whole run is in [results/gpu/SUMMARY.md]"
        "(../results/gpu/SUMMARY.md)."
        if gpu is not None
        else "No GPU measurement yet: `python -m bench gpu-check` on a CUDA machine fills the "
        "measured column."
    )
    return (
        "## The paper's points: paper, prediction, GPU\n\n"
        f"Predicted by the memory model for CUDA on the expected size of one ogbn-proteins "
        f"training part ({nodes:,} nodes, {edges:,} edges, 10 parts). {where}\n\n"
        + markdown_table(display(table))
        + "\n"
        + WHY
        + measured_note(gpu, earlier)
        + "\n"
    )
