"""``python -m bench report``: the command's flags and ``main``; the work is
:func:`bench.report.build.build_report`."""

from __future__ import annotations

import argparse
import pathlib
import sys

from bench.errors import DataError
from bench.report.build import build_report

__all__ = ["add_arguments", "main"]  # the command's entry points (bench.cli)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--results-dir", "--results", dest="results_dir", default="results",
                        metavar="DIR", help="folder of exported tables (*.csv) (default: results; "
                        "--results is the old spelling)")  # fmt: skip
    parser.add_argument(
        "--report-dir",
        "--out",
        dest="report_dir",
        default="report",
        metavar="DIR",
        help="folder to (re)write: REPORT.md, tables/, figures/ (default: report)",
    )
    parser.add_argument("--no-figures", action="store_true",
                        help="write tables and REPORT.md only (fast; figures are the slow part)")  # fmt: skip


def main(args: argparse.Namespace) -> int:
    """Exit 0 with the list of written files; exit 2 with one clear line for bad input."""
    try:
        written = build_report(
            pathlib.Path(args.results_dir),
            pathlib.Path(args.report_dir),
            draw_figures=not args.no_figures,
        )
    except DataError as exc:
        print(f"report: {exc}", file=sys.stderr)
        return 2
    for path in written:
        print(path)
    return 0
