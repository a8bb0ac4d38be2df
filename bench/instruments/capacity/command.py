"""``python -m bench capacity``: the flags, the tables, ``main`` (the package says what it
computes and how)."""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import os
import sys
from typing import Any

from bench.config import TrialConfig
from bench.errors import ConfigError, DataError, cli_exit
from bench.instruments.capacity.search import Row, depth_row, width_row
from bench.instruments.capacity.verify import TOLERANCE, verify
from bench.models import archs as registry
from bench.units import format_bytes, parse_bytes

DEFAULT_CHANNELS = "64,128,256"
DEFAULT_MAX_LAYERS = 10_000
DEFAULT_MAX_CHANNELS = 8192
DEFAULT_CHANNEL_STEP = 8
DEFAULT_VERIFY_TIMEOUT_S = 900.0
#: settings with a flag of their own here (not for --set)
OWN_FLAGS = ("arch", "layers", "channels", "device", "dataset", "dataset_options", "data_root",
             "dataset_hash", "memory_cap_bytes")  # fmt: skip


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--dataset",
        default=TrialConfig.dataset,
        help="a registered dataset or a graph file PATH.pt (default: %(default)s)",
    )
    parser.add_argument(
        "--dataset-option",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="a dataset loader option (repeatable)",
    )
    parser.add_argument("--data-root", default=None, help="the dataset's data folder")
    parser.add_argument(
        "--device",
        choices=("cpu", "cuda"),
        default=None,
        help="the device kind to predict for (default: cuda if this machine has one, else cpu)",
    )
    parser.add_argument(
        "--target-memory",
        default=None,
        metavar="SIZE",
        help="the memory to fit in, e.g. 80GB or 64MiB (default: the GPU's "
        "own memory with --device cuda on a GPU machine, else this machine's)",
    )
    parser.add_argument(
        "--archs", default=None, help="comma-separated archs (default: every registered arch)"
    )
    parser.add_argument(
        "--channels",
        default=DEFAULT_CHANNELS,
        help="comma-separated widths to search depth at (default: %(default)s)",
    )
    parser.add_argument(
        "--layers",
        type=int,
        default=None,
        help="search width instead: the widest width that fits at this depth",
    )
    parser.add_argument(
        "--max-layers",
        type=int,
        default=DEFAULT_MAX_LAYERS,
        help="the depth search's limit (default: %(default)s)",
    )
    parser.add_argument(
        "--max-channels",
        type=int,
        default=DEFAULT_MAX_CHANNELS,
        help="the width search's limit (default: %(default)s)",
    )
    parser.add_argument(
        "--channel-step",
        type=int,
        default=DEFAULT_CHANNEL_STEP,
        help="widths searched are multiples of this (and of the groups; default: %(default)s)",
    )
    parser.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="FIELD=VALUE",
        help="any other trial setting (repeatable), e.g. --set batching=full "
        "--set groups=4 --set precision=bf16",
    )
    parser.add_argument("--json", action="store_true", help="one JSON object on stdout")
    parser.add_argument(
        "--verify",
        action="store_true",
        help="run each row's two boundary points for real on this machine "
        "(one trial each, own process) and print predicted beside measured",
    )
    parser.add_argument(
        "--verify-timeout",
        type=float,
        default=DEFAULT_VERIFY_TIMEOUT_S,
        help="seconds per verified point (default: %(default)s)",
    )


def _value(text: str) -> Any:
    """A setting's value: JSON when it parses (``4``, ``true``, ``0.5``), else the text."""
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return text


def _pairs(items: list[str], flag: str) -> dict[str, Any]:
    out = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise ConfigError(flag, f"{item!r} is not KEY=VALUE")
        out[key.strip()] = _value(value.strip())
    return out


def _ints(text: str, flag: str) -> list[int]:
    try:
        values = [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise ConfigError(flag, f"expected comma-separated integers, got {text!r}") from None
    if not values or min(values) < 1:
        raise ConfigError(flag, f"expected positive integers, got {text!r}")
    return values


def base_config(args: argparse.Namespace, arch: str) -> TrialConfig:
    """The settings every row shares (validated for ``arch``; the device need not be here)."""
    settings = _pairs(args.set, "set")
    known = [f.name for f in dataclasses.fields(TrialConfig)]
    for name in settings:
        if name in OWN_FLAGS:
            flag = "--" + name.replace("_", "-")
            raise ConfigError("set", f"{name}: give it with its own flag here ({flag}), not --set")
        if name not in known:
            shown = ", ".join(n for n in known if n not in OWN_FLAGS)
            raise ConfigError("set", f"{name}: unknown trial setting; known: {shown}")
    values = {**settings, "dataset": args.dataset, "arch": arch, "device": args.device}
    if args.dataset_option:
        values["dataset_options"] = _pairs(args.dataset_option, "dataset_option")
    if args.data_root is not None:
        values["data_root"] = args.data_root
    try:
        return TrialConfig.from_dict(values, check_device=False)
    except ConfigError as exc:
        if exc.field in settings:  # name the flag the value came from
            raise ConfigError(
                "set", f"{exc.field}={settings[exc.field]!r}: {exc.message}"
            ) from None
        raise


def target_memory(args: argparse.Namespace) -> tuple[int, str]:
    """The memory to fit in, and where that number came from."""
    if args.target_memory is not None:
        return parse_bytes(args.target_memory, "target_memory"), "--target-memory"
    if args.device == "cuda":
        import torch

        if not torch.cuda.is_available():
            raise ConfigError(
                "target_memory",
                "no CUDA device here to read its memory from: "
                "give the GPU's, e.g. --target-memory 80GB",
            )
        props = torch.cuda.get_device_properties(0)
        return int(props.total_memory), f"this GPU's memory, {props.name}"
    return os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE"), "this machine's memory"


def main(args: argparse.Namespace) -> int:
    """Exit 0 (verified points all confirmed), 1 (one was not, or the data failed), 2 (bad
    input: nothing predicted or run)."""
    import torch

    if args.device is None:
        args.device = "cuda" if torch.cuda.is_available() else "cpu"
    try:
        known = registry.names()
        archs = [a.strip() for a in (args.archs or ",".join(known)).split(",") if a.strip()]
        unknown = [a for a in archs if a not in known]
        if unknown or not archs:
            raise ConfigError(
                "archs", f"unknown arch {(unknown or [''])[0]!r}; choose from {', '.join(known)}"
            )
        widths = _ints(args.channels, "channels")
        for flag in ("layers", "max_layers", "max_channels", "channel_step"):
            value = getattr(args, flag)
            if value is not None and value < 1:
                raise ConfigError(flag, f"must be a positive integer, got {value}")
        if not (math.isfinite(args.verify_timeout) and args.verify_timeout > 0):
            raise ConfigError("verify_timeout", f"must be a positive number of seconds, got "
                              f"{args.verify_timeout:g}")  # fmt: skip
        base = base_config(args, archs[0])
        budget, source = target_memory(args)
        if args.verify and args.device == "cuda" and not torch.cuda.is_available():
            raise ConfigError(
                "verify",
                "runs on this machine's device, and it has no CUDA "
                "device: verify on the GPU machine, or pass --device cpu",
            )
    except ConfigError as exc:
        return cli_exit(exc)
    from bench.data import is_graph_file, load
    from bench.data.graph_file import summary_of
    from bench.measure.memory_model import sizes_for

    try:
        dataset = load(base.dataset, root=base.data_root, **base.dataset_options)
    except (ConfigError, DataError) as exc:
        return cli_exit(exc)
    sizes = sizes_for(base, dataset)
    if args.layers is None:
        rows = [
            depth_row(base, a, c, sizes, budget, args.max_layers) for a in archs for c in widths
        ]
    else:
        rows = [
            width_row(base, a, args.layers, sizes, budget, args.channel_step, args.max_channels)
            for a in archs
        ]
    described = (
        summary_of(base.dataset, base.dataset_options)
        if is_graph_file(base.dataset)
        else f"{base.dataset}: {dataset.info.get('description', '')}"
    )
    header = {
        "dataset": base.dataset,
        "dataset_hash": base.dataset_hash,
        "dataset_summary": described,
        "device": base.device,
        "target_memory_bytes": budget,
        "target_source": source,
        "search": "depth" if args.layers is None else "width",
        "layers": args.layers,
        "graph": dataclasses.asdict(sizes),
        "tolerance": TOLERANCE,
    }
    if not args.json:
        print(_table(rows, header, base))
    if args.verify:
        verify(rows, sizes, budget, args.verify_timeout, _log)
        if not args.json:
            print(_verify_table(rows, header))
    if args.json:
        print(json.dumps({**header, "rows": [r.to_dict(budget) for r in rows]}, default=str))
    return 0 if all(r.verdict["confirmed"] for r in rows if r.verdict) else 1


def _log(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


def _cells(rows: list[list[str]]) -> str:
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    return "\n".join(
        "  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in rows
    )


def _table(rows: list[Row], header: dict[str, Any], base: TrialConfig) -> str:
    budget = header["target_memory_bytes"]
    g = header["graph"]
    depth = header["search"] == "depth"
    lines = [
        f"capacity on {header['device']}: fit in {format_bytes(budget)} ({header['target_source']})",
        f"dataset: {header['dataset_summary']}",
        f"graph: {g['nodes']:,} nodes, {g['edges']:,} edges; largest training batch "
        f"{g['batch_nodes']:,} nodes, {g['batch_edges']:,} edges ({base.batching}-batch"
        + (f", {base.train_parts} parts)" if base.batching == "mini" else ")"),
        "predicted peak of a training step (bench.measure.memory_model: "
        + ("CUDA allocator)" if base.device == "cuda" else "CPU live-tensor meter)"),
        "",
    ]
    table = [
        [
            "arch",
            "channels" if depth else "layers",
            "deepest" if depth else "widest",
            "params",
            "predicted peak",
            "of target",
            "note",
        ]
    ]
    for r in rows:
        found = r.layers if depth else r.channels
        shown = {"none": "none", "limit": f">={found}", "flat": "any"}.get(r.bound, str(found))
        table.append(
            [
                r.arch,
                str(r.channels if depth else r.layers),
                shown,
                f"{r.params:,}" if r.params is not None else "-",
                format_bytes(r.peak_bytes),
                f"{r.peak_bytes / budget:.0%}" if r.peak_bytes is not None else "-",
                r.error or r.note,
            ]
        )
    return "\n".join([*lines, _cells(table)])


def _verify_table(rows: list[Row], header: dict[str, Any]) -> str:
    budget = header["target_memory_bytes"]
    checks = [c for r in rows for c in r.checks]
    if not checks:
        return (
            "\nverify: no row has a boundary to run (each fits at the search limit or is invalid)"
        )
    table = [["arch", "channels", "layers", "point", "predicted", "measured", "error",
              f"fits {format_bytes(budget)}", "as predicted"]]  # fmt: skip
    for c in checks:
        measured = c["measured_peak_bytes"]
        fits = {True: "yes", False: "no", None: "-"}[c["fits_measured"]]
        table.append(
            [
                c["arch"],
                str(c["channels"]),
                str(c["layers"]),
                c["point"],
                format_bytes(c["predicted_peak_bytes"]),
                format_bytes(measured) if measured is not None else c["status"],
                f"{c['error']:+.1%}" if c["error"] is not None else "-",
                fits
                if measured is not None or c["message"] is None
                else f"{fits} ({c['message']})",
                "yes" if c["confirmed"] else "NO",
            ]
        )
    judged = [r for r in rows if r.verdict]
    verdicts = [f"  {r.arch} {_row_name(r)}: {r.verdict['text']}" for r in judged]  # type: ignore[index]
    done = sum(r.verdict["confirmed"] for r in judged)  # type: ignore[index]
    meter = next((c["meter"] for c in checks if c["meter"]), "the trial's meter")
    return (
        f"\nverify on {header['device']} (one trial per point, each in its own process; "
        f"measured by the {meter} meter, error = predicted / measured - 1):\n"
        + _cells(table)
        + "\n"
        + "\n".join(verdicts)
        + f"\n{done} of {len(judged)} boundaries confirmed (each point measured on the side "
        "of the target the model put it)"
    )


def _row_name(row: Row) -> str:
    """'128 channels' (a depth row) or '12 layers' (a width row)."""
    if row.over is not None and "channels" in row.over:
        return f"{row.layers} layers"
    return f"{row.channels} channels"
