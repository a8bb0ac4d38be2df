"""``python -m bench COMMAND``: a thin dispatcher. Each command lives in the module that does
the work, which provides ``add_arguments(parser)`` and ``main(args) -> int``; only the chosen
command's module is imported, so ``--help`` is instant."""

from __future__ import annotations

import argparse
import importlib
import sys
from typing import NoReturn

from bench import plugins
from bench.errors import ConfigError

COMMANDS: dict[str, tuple[str, str]] = {
    "trial": ("bench.trial", "train one configuration in its own process; print its record"),
    "ablate": (
        "bench.harness.sweep",
        "run an ablation spec (ablations/*.toml) as a resumable Optuna study",
    ),
    "export": ("bench.harness.export", "write stored trials as tidy CSV tables under results/"),
    "migrate-results": (
        "bench.exports.migrate",
        "rewrite older exports under results/ as this schema version, once",
    ),
    "tune": ("bench.tuning.command", "tune a search space under a memory budget with Optuna"),
    "report": (
        "bench.report.command",
        "regenerate report/ (tables, figures, REPORT.md) from results/",
    ),
    "datasets": (
        "bench.data.catalog",
        "list datasets, where they come from, whether they are here",
    ),
    "bench": (
        "bench.instruments.benchmark.command",
        "the engines side by side: memory, time, params",
    ),
    "gpu-check": (
        "bench.instruments.gpu_check",
        "the paper's memory numbers at its scale on one GPU, in minutes (results/gpu/)",
    ),
    "gpu-backlog": (
        "bench.instruments.gpu_backlog.command",
        "the GPU work still missing at today's code, in priority order, inside one call's budget",
    ),
    "reproduce": (
        "bench.harness.reproduce",
        "every ablation's cpu and real profiles it can run here, then the report",
    ),
    "drift": ("bench.instruments.drift", "reversible reconstruction error vs depth, fp32 and bf16"),
    "capacity": (
        "bench.instruments.capacity.command",
        "how deep (or wide) each arch fits on a graph and a device, from the memory model",
    ),
}


# commands that may load a real dataset: they take --offline (no downloads; BENCH_OFFLINE=1)
DATA_COMMANDS = ("trial", "ablate", "tune", "datasets", "reproduce", "capacity")


class OneLineParser(argparse.ArgumentParser):
    """argparse with its errors on one line: what is wrong and where the options are listed
    (argparse's own prints the whole usage block first: 11 lines for ``ablate``). Exit 2."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message} ({self.prog} --help lists the options)\n")


def _overview() -> str:
    width = max(map(len, COMMANDS))
    lines = [f"  {name:<{width}}  {help_}" for name, (_, help_) in COMMANDS.items()]
    return (
        "usage: python -m bench COMMAND [options]\n\ncommands:\n"
        + "\n".join(lines)
        + ("\n\n'python -m bench COMMAND --help' shows a command's options.")
    )


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help"):
        print(_overview())
        return 0
    name, rest = argv[0], argv[1:]
    if name not in COMMANDS:
        print(f"error: unknown command {name!r}; commands: {', '.join(COMMANDS)} "
              "(python -m bench --help says what each does)", file=sys.stderr)  # fmt: skip
        return 2
    module_name, help_ = COMMANDS[name]
    try:
        plugins.load()
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    module = importlib.import_module(module_name)
    parser = OneLineParser(prog=f"python -m bench {name}", description=help_)
    module.add_arguments(parser)
    if name in DATA_COMMANDS:
        parser.add_argument(
            "--offline",
            action="store_true",
            help="never download a dataset (same as BENCH_OFFLINE=1); without it, a real graph "
            "that is not here is fetched into the cache",
        )
    args = parser.parse_args(rest)
    if getattr(args, "offline", False):
        from bench.data.download import set_offline

        set_offline(True)  # through the environment, so trial child processes inherit it
    return int(module.main(args) or 0)
