"""``python -m bench datasets``: every dataset, its task and metric, whether it is here, from where.

Sizes come from the registry's static table (nothing is loaded), except with ``--load NAME``,
which loads one dataset and prints what it really holds. ``--dataset PATH.pt`` checks a graph
file of your own and describes it the same way (plus its content hash, the task and metric
inferred from its ``y``, and its split); ``--file-format`` prints the format, with an example
that writes one (:mod:`bench.data.graph_file`).
"""

from __future__ import annotations

import argparse
import json

from bench.data.registry import SPECS, get_spec
from bench.errors import ConfigError, DataError, cli_exit


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--data-root",
        default=None,
        help="data folder to check (OGB root for ogbn-*, shared folder for the real graphs); "
        "default: $BENCH_DATA_ROOT / $BENCH_SHARED_DATA / the cache and ../shared/data",
    )
    parser.add_argument("--json", action="store_true", help="one JSON object per dataset")
    parser.add_argument(
        "--load", metavar="NAME", default=None, help="load this dataset and print its real sizes"
    )
    parser.add_argument(
        "--dataset",
        metavar="PATH",
        default=None,
        help="a graph file (PATH.pt) or a registered name: check it and describe it alone",
    )
    parser.add_argument(
        "--file-format",
        action="store_true",
        help="print the graph file format (--dataset PATH.pt), with an example that writes one",
    )


def rows(root: str | None = None) -> list[dict[str, object]]:
    """One dict per dataset: name, task, metric, available, location, nodes, edges, options."""
    out = []
    for spec in SPECS.values():
        # --data-root applies to the kind of folder each dataset reads
        out.append(
            {
                "name": spec.name,
                "task": spec.task,
                "metric": spec.metric,
                "available": spec.available(root),
                "location": spec.location(root),
                "nodes": spec.nodes,
                "edges": spec.edges,
                "edge_features": spec.edge_features,
                "options": spec.options,
                "description": spec.description,
            }
        )
    return out


def file_row(path: str) -> dict[str, object]:
    """A graph file as a row of the table (checked and read: raises ConfigError naming the
    file and the field at fault), with what only a file has: hash, features, outputs, split."""
    from bench.data.graph_file import OPTIONS, check_options, inspect

    info = inspect(path)
    check_options(path, {}, info)  # a random split the default seed leaves unusable: refused
    return {
        "name": path,
        "task": info.task,
        "metric": info.metric,
        "available": True,
        "location": f"graph file, sha256 {info.sha256}",
        "nodes": info.nodes,
        "edges": info.edges,
        "edge_features": info.edge_dim is not None,
        "options": dict(OPTIONS),
        "description": info.summary(),
        "sha256": info.sha256,
        "features": info.features,
        "edge_dim": info.edge_dim,
        "outputs": info.outputs,
        "unlabelled_targets": info.unlabelled,
        "split": info.split_rule(OPTIONS["seed"]),
    }


def _fmt(n: object) -> str:
    return f"{n:,}" if isinstance(n, int) else "?"


def main(args: argparse.Namespace) -> int:
    if args.file_format:
        from bench.data import graph_file

        print(graph_file.__doc__)
        return 0
    if args.load:
        from bench.data import load

        try:
            get_spec(args.load)
            ds = load(args.load, root=args.data_root)
        except (ConfigError, DataError) as exc:
            return cli_exit(exc)
        print(json.dumps(ds.info, indent=2, default=str) if args.json else repr(ds))
        return 0
    table = rows(args.data_root)
    if args.dataset:
        from bench.data.graph_file import is_graph_file

        try:
            table = (
                [file_row(args.dataset)]
                if is_graph_file(args.dataset)
                else [r for r in table if r["name"] == get_spec(args.dataset).name]
            )
        except ConfigError as exc:
            return cli_exit(exc)
    if args.json:
        for row in table:
            print(json.dumps(row))
        return 0
    header = ("dataset", "task/metric", "here", "nodes", "edges", "edge feat.", "from")
    body = [
        (
            str(r["name"]),
            f"{r['task']}/{r['metric']}",
            "yes" if r["available"] else "no",
            _fmt(r["nodes"]),
            _fmt(r["edges"]),
            "yes" if r["edge_features"] else "no",
            str(r["location"]),
        )
        for r in table
    ]
    widths = [max(len(row[i]) for row in (header, *body)) for i in range(len(header))]
    for row in (header, *body):
        print("  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip())
    if args.dataset:
        print(f"\n{table[0]['description']}")
        return 0
    print("\nedges: directed (both directions of each undirected edge), as loaded.")
    for spec in SPECS.values():  # generated data: what the labels are (their ground truth)
        if spec.kind == "generated":
            print(f"{spec.name}: {spec.description}.")
    print(
        "edge feat.: --conv gen and gat read edge features; sage and gcn cannot, and refuse a "
        "dataset that has them (rather than drop them)."
    )
    print("options: python -m bench datasets --json; set with the trial's dataset options.")
    print(
        "your own graph: --dataset PATH.pt, a torch_geometric Data saved with torch.save (x, "
        "edge_index, y; optional edge_attr and masks); python -m bench datasets --file-format "
        "shows the format and an example"
    )
    return 0
