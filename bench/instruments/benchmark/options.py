"""The benchmark's command line: what it measures (archs, depths, graphs, rounds) and the
constants its plan and ratios share."""

from __future__ import annotations

import argparse
import os

from bench.errors import ConfigError
from bench.models import archs as registry
from bench.models.conv_specs import conv_spec
from bench.units import parse_bytes

PEER = "pyg-groupaddrev"
DEQ_RATIO_ITERS = (5, 50)
MAIN = "main"  # the ``graph`` of the rows on the --nodes/--edges graph
AGGR_IMPLS = ("fused", "pyg")
#: --compare-compile: where res, rev and the peer also run with the other compile setting
COMPARE_COMPILE = ("none", "small", "all")


def _ints(text: str) -> list[int]:
    try:
        values = [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected comma-separated integers, got {text!r}"
        ) from None
    if any(v < 1 for v in values):
        raise argparse.ArgumentTypeError(f"depths must be positive, got {text!r}")
    return values


def _ints_or_none(text: str) -> list[int]:
    return _ints(text) if text.strip() else []


def _graphs(text: str) -> list[tuple[int, int]]:
    out = []
    for item in (v.strip() for v in text.split(",") if v.strip()):
        nodes, _, edges = item.lower().partition("x")
        if not (nodes.isdigit() and edges.isdigit() and int(nodes) > 0 and int(edges) > 0):
            raise argparse.ArgumentTypeError(f"expected NODESxEDGES (e.g. 500x2500), got {item!r}")
        out.append((int(nodes), int(edges)))
    return out


def _archs(text: str) -> list[str]:
    values = [v.strip() for v in text.split(",") if v.strip()]
    bad = [v for v in values if v not in registry.names()]
    if bad:
        raise argparse.ArgumentTypeError(
            f"unknown arch {bad[0]!r}; choose from {', '.join(registry.names())}"
        )
    return values


def _conv(text: str) -> str:
    """A built-in convolution or a factory ``module:function`` (pinned to its source)."""
    try:
        return conv_spec(text).pinned
    except ConfigError as err:
        raise argparse.ArgumentTypeError(err.message) from None


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The benchmark's flags, in the order ``--help`` lists them."""
    _graph_arguments(parser)
    _model_arguments(parser)
    _side_by_side_arguments(parser)
    _point_arguments(parser)
    _run_arguments(parser)


def _graph_arguments(parser: argparse.ArgumentParser) -> None:
    """The main seeded synthetic graph."""
    parser.add_argument(
        "--nodes", type=int, default=10_000, help="synthetic graph nodes (default 10000)"
    )
    parser.add_argument(
        "--edges", type=int, default=100_000, help="synthetic graph edges (default 100000)"
    )
    parser.add_argument("--edge-dim", type=int, default=8, help="edge feature width; 0 for none")
    parser.add_argument("--features", type=int, default=8, help="node feature width")
    parser.add_argument(
        "--outputs", type=int, default=112, help="binary targets per node (proteins: 112)"
    )


def _model_arguments(parser: argparse.ArgumentParser) -> None:
    """Every row's model and precision."""
    parser.add_argument("--channels", type=int, default=64)
    parser.add_argument("--groups", type=int, default=2)
    parser.add_argument("--dropout", type=float, default=0.1)
    parser.add_argument("--aggr", default="max")
    parser.add_argument(
        "--conv",
        default="gen",
        type=_conv,
        help="every block's convolution: gen (default), gat, sage, gcn or module:function",
    )
    parser.add_argument("--heads", type=int, default=None, help="GAT's heads (--conv gat only)")
    parser.add_argument(
        "--precision",
        default="fp32",
        choices=("fp32", "bf16", "fp16"),
        help="every row's precision: forward and loss under autocast (bf16 on CPU or CUDA, fp16 "
        "with a gradient scaler on CUDA only); one run per precision, the CSV says which",
    )
    parser.add_argument(
        "--aggr-impl",
        default="fused",
        choices=AGGR_IMPLS,
        help="max aggregation of the main rows: fused (N x C argmax saved, bench.nn.aggr) or "
        "pyg (PyG's scatter_reduce path); default fused",
    )


def _side_by_side_arguments(parser: argparse.ArgumentParser) -> None:
    """Rows measured beside the main ones in the same run: the other aggregation, the other
    compile setting (and ``--compile`` itself), the small graphs."""
    parser.add_argument(
        "--compare-aggr-depths",
        type=_ints_or_none,
        default=[16, 64],
        help="depths at which res and rev also run with the other aggregation implementation "
        "('' for none; default 16,64)",
    )
    parser.add_argument(
        "--compile",
        action="store_true",
        help="every row's block functions under torch.compile (bench.models.compiled); compile "
        "time is its own column (compile_time_s), not part of the step time",
    )
    parser.add_argument(
        "--compare-compile",
        default=None,
        choices=COMPARE_COMPILE,
        help="res, rev and the peer again with the other compile setting, in every round, at "
        "the small graphs' depth ('small') and also at the main graph's ratio depth ('all', the "
        "default; 'none' with --quick); 'none' for no such rows",
    )
    parser.add_argument(
        "--small-graphs",
        type=_graphs,
        default=[(500, 2500), (1000, 10_000)],
        help="extra graphs NODESxEDGES (comma-separated; '' for none) measured with res, rev "
        "and the peer at --small-depth and --small-channels (default 500x2500,1000x10000)",
    )
    parser.add_argument("--small-channels", type=int, default=16)
    parser.add_argument("--small-depth", type=int, default=64)
    parser.add_argument(
        "--small-repeats", type=int, default=10, help="timed steps per small-graph point"
    )


def _point_arguments(parser: argparse.ArgumentParser) -> None:
    """Which archs at which depths, and how many timed steps and rounds each point gets."""
    parser.add_argument("--archs", type=_archs, default=list(registry.names()),
                        help="comma-separated (default: every registered arch)")  # fmt: skip
    parser.add_argument("--depths", type=_ints, default=[16, 64, 256], help="depths for every arch")
    parser.add_argument(
        "--deep-depths", type=_ints, default=[1001], help="extra depths for rev, wt-rev, deq"
    )
    parser.add_argument(
        "--peer-depths", type=_ints, default=[16, 64], help="depths for PyG GroupAddRev"
    )
    parser.add_argument(
        "--deq-solver", default="anderson", choices=("fixed_point", "anderson", "broyden")
    )
    parser.add_argument(
        "--repeats", type=int, default=2, help="timed steps per point (after warm-up)"
    )
    parser.add_argument("--deep-repeats", type=int, default=1, help="timed steps beyond --depths")
    parser.add_argument(
        "--time-rounds",
        type=int,
        default=5,
        help="rounds of the step-time ratio points (res, rev, peer at the ratio depth of each "
        "graph), each point a fresh process; the time verdicts read the interval over the "
        "rounds (default 5; 1 for single points and no time verdicts)",
    )


def _run_arguments(parser: argparse.ArgumentParser) -> None:
    """Seed, device, output, the smoke run, the memory cap, the progress bar."""
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--device", default="cpu", choices=("cpu", "cuda"))
    parser.add_argument(
        "--out",
        default="results/benchmark/benchmark.csv",
        help="CSV to write (a subfolder: results/*.csv are trial tables the report reads)",
    )
    parser.add_argument("--quick", action="store_true", help="tiny smoke run (seconds)")
    parser.add_argument(
        "--memory-cap",
        default="auto",
        help="CPU only: a point whose live tensors exceed this is recorded as oom (e.g. 12GiB; "
        "'auto': 60%% of the memory available at start; 'none')",
    )
    parser.add_argument("--no-progress", action="store_true")


def memory_cap(text: str) -> int | None:
    if text == "none":
        return None
    if text == "auto":
        available = os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
        return int(0.6 * available)
    return parse_bytes(text, "memory_cap")
