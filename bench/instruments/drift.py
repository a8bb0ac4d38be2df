"""``python -m bench drift``: how far a reversible stack's rebuilt inputs drift from the true
ones, layer by layer, in float32 and under bf16 (or fp16) autocast.

The backward of :class:`bench.nn.ReversibleStack` never stores a layer's input: it rebuilds it
from the layer's output (``x_i = y_i - f_i(y_{i-1})``), from the last layer down. Rounding
makes each rebuilt input a little wrong, and the next layer down is rebuilt from it, so the
error can grow with the number of layers inverted. Mixed precision is where that could go wrong
(peers recompute bf16 functions in float32, and the rebuilt inputs fall apart within layers);
this measures it directly.

One run = one seeded random graph, one model (``build_model``: encoders + stack, dropout on,
train mode), one forward under the precision's autocast, the true layer inputs from a second
forward with the same dropout masks (``layer_inputs``), and one backward whose
``reconstruction_hook`` compares every rebuilt input with the true one. One row per layer:

* ``inverted``: layers inverted to rebuild this input (``layers - layer``; 1 = the last layer);
* ``max_abs_error``: max |rebuilt - true| over the layer input;
* ``rel_error``: that divided by max |true| (relative to the input's scale);
* ``rms_rel_error``: ||rebuilt - true|| / ||true||.

Written to ``results/drift/drift.csv`` (a subfolder: ``results/*.csv`` are trial tables the
report reads); ``bench.report.drift.drift_figure`` draws it. CPU by default; ``--device cuda``
measures the same on a GPU (fp16 only there).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any

import pandas as pd
import torch
from torch import Tensor

from bench.config import PRECISIONS
from bench.measure.meters import device_description
from bench.measure.precision import MixedPrecision
from bench.models import archs as registry
from bench.models import build_model

COLUMNS = (
    "arch", "precision", "seed", "layers", "channels", "groups", "nodes", "edges", "dropout",
    "device", "device_name", "layer", "inverted", "max_abs_error", "rel_error", "rms_rel_error",
)  # fmt: skip


def measure(
    arch: str = "rev",
    precision: str = "fp32",
    layers: int = 1000,
    channels: int = 32,
    groups: int = 2,
    nodes: int = 500,
    edges: int = 5000,
    dropout: float = 0.1,
    seed: int = 0,
    device: str = "cpu",
) -> pd.DataFrame:
    """One run: the reconstruction error of every layer's input (see the module doc)."""
    torch.manual_seed(seed)
    dev = torch.device(device)
    features, edge_dim, outputs = 8, 8, 8
    x = torch.randn(nodes, features, device=dev)
    edge_index = torch.randint(0, nodes, (2, edges), device=dev)
    edge_attr = torch.randn(edges, edge_dim, device=dev)
    model = build_model(arch, features, edge_dim, outputs, layers, channels, groups=groups,
                        dropout=dropout).to(dev).train()  # fmt: skip
    stack = model.stack
    amp = MixedPrecision.for_config(precision, dev)
    with amp.autocast():  # the encoders' outputs in the precision the stack is handed in training
        h = model.node_encoder(x)
        e = model.edge_encoder(edge_attr)
        out = stack(h, edge_index, e)
        true_inputs = stack.layer_inputs(h.detach(), edge_index, e.detach(), seed=stack.last_seed)
    errors: dict[int, tuple[float, float, float]] = {}

    def compare(layer: int, rebuilt: Tensor) -> None:
        true = true_inputs[layer]
        diff = (rebuilt - true).float()
        max_abs = diff.abs().max().item()
        scale = true.float().abs().max().item()
        rms = (diff.norm() / true.float().norm()).item()
        errors[layer] = (max_abs, max_abs / scale, rms)

    stack.reconstruction_hook = compare
    try:
        weights = torch.randn(out.shape, device=dev)
        (out.float() * weights).sum().backward()
    finally:
        stack.reconstruction_hook = None
    meta: dict[str, Any] = {
        "arch": arch, "precision": precision, "seed": seed, "layers": layers,
        "channels": channels, "groups": groups, "nodes": nodes, "edges": edges,
        "dropout": dropout, "device": device, "device_name": device_description(dev),
    }  # fmt: skip
    rows = [
        {
            **meta,
            "layer": k,
            "inverted": layers - k,
            "max_abs_error": a,
            "rel_error": r,
            "rms_rel_error": m,
        }  # fmt: skip
        for k, (a, r, m) in sorted(errors.items())
    ]
    return pd.DataFrame(rows, columns=list(COLUMNS))


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--archs", default="rev,wt-rev", help="comma-separated: rev, wt-rev")
    parser.add_argument(
        "--precisions", default="fp32,bf16", help="comma-separated: fp32, bf16, fp16 (CUDA)"
    )
    parser.add_argument("--layers", type=int, default=1000)
    parser.add_argument("--channels", type=int, default=32)
    parser.add_argument("--groups", type=int, default=2)
    parser.add_argument("--nodes", type=int, default=500)
    parser.add_argument("--edges", type=int, default=5000)
    parser.add_argument("--dropout", type=float, default=0.1)
    parser.add_argument("--seeds", default="0,1,2", help="comma-separated seeds")
    parser.add_argument("--device", default="cpu", choices=("cpu", "cuda"))
    parser.add_argument("--out", default="results/drift/drift.csv", help="CSV to write")


def _check(args: argparse.Namespace) -> str | None:
    """The first bad flag, as 'flag: message' (before any model is built), or None."""
    archs, precisions = args.archs.split(","), args.precisions.split(",")
    reversible = registry.names(family="reversible")
    bad = [a for a in archs if a not in reversible]
    if bad:
        return f"--archs: {bad[0]!r} is not reversible; choose from {', '.join(reversible)}"
    bad = [p for p in precisions if p not in PRECISIONS]
    if bad:
        return f"--precisions: unknown {bad[0]!r}; choose from {', '.join(PRECISIONS)}"
    if "fp16" in precisions and args.device != "cuda":
        return "--precisions: fp16 needs --device cuda (on CPU use bf16)"
    if args.device == "cuda" and not torch.cuda.is_available():
        return "--device: cuda was asked for, but no CUDA device is available here"
    for name in ("layers", "channels", "nodes", "edges"):
        if getattr(args, name) < 1:
            return f"--{name}: must be a positive integer"
    if args.groups < 2 or args.channels % args.groups:
        return f"--groups: must be >= 2 and divide channels ({args.channels})"
    if not 0.0 <= args.dropout < 1.0:
        return "--dropout: must be in [0, 1)"
    try:
        args.seed_list = [int(s) for s in args.seeds.split(",")]
    except ValueError:
        return f"--seeds: not a comma-separated list of integers: {args.seeds!r}"
    return None


def main(args: argparse.Namespace) -> int:
    problem = _check(args)
    if problem is not None:
        print(f"error: {problem}", file=sys.stderr)
        return 2
    frames = []
    for arch in args.archs.split(","):
        for precision in args.precisions.split(","):
            for seed in args.seed_list:
                start = time.perf_counter()
                run = measure(arch, precision, args.layers, args.channels, args.groups,
                              args.nodes, args.edges, args.dropout, seed, args.device)  # fmt: skip
                deepest = run.loc[run["inverted"].idxmax()]
                print(
                    f"{arch} {precision} seed {seed}: rebuilt input after {args.layers} layers "
                    f"off by {deepest['rel_error']:.2e} of its scale (max over layers "
                    f"{run['rel_error'].max():.2e}); {time.perf_counter() - start:.1f} s",
                    file=sys.stderr,
                )
                frames.append(run)
    table = pd.concat(frames, ignore_index=True)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    table.to_csv(out, index=False)
    print(f"wrote {out} ({len(table)} rows)", file=sys.stderr)
    return 0
