"""``python -m bench trial``: the command line (one flag per ``TrialConfig`` field, generated
from the dataclass so it cannot drift), the dry run, and the child side of the protocol
(``--events``)."""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import signal
import sys
import threading
import types
import typing
from typing import Any

from bench import units
from bench.config import TrialConfig
from bench.data.graph_file import is_graph_file, summary_of
from bench.errors import ConfigError, DataError, cli_exit
from bench.models import archs
from bench.record import TrialRecord
from bench.trial.display import log_epoch
from bench.trial.isolation import run_trial_isolated
from bench.trial.protocol import (
    CONFIG_ERROR_PREFIX,
    EVENT_PREFIX,
    PARENT_ENV,
    PHASE_PREFIX,
    START_PREFIX,
    STOP_COMMAND,
    emit,
)
from bench.trial.training import run_trial

#: extra spellings of fields whose natural flag reads better than the field name
_FLAG_ALIASES: dict[str, tuple[str, ...]] = {
    "memory_cap_bytes": ("--memory-cap",),
    "dataset_options": ("--dataset-option",),
}


def parse_bytes(text: str | int) -> int:
    """``--memory-cap`` values: ``4GiB``, ``500MB``, ``1e9`` (see :func:`bench.units.parse_bytes`)."""
    try:
        return units.parse_bytes(text, "memory_cap_bytes")
    except ConfigError as err:
        raise argparse.ArgumentTypeError(err.message) from None


def _option_value(text: str) -> Any:
    """A dataset option's value: JSON when it parses (``200``, ``true``, ``0.5``), else text."""
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return text


def _key_value(text: str) -> tuple[str, Any]:
    key, sep, value = text.partition("=")
    if not sep or not key.strip():
        raise argparse.ArgumentTypeError(f"{text!r} is not KEY=VALUE")
    return key.strip(), _option_value(value.strip())


def _bool(text: str) -> bool:
    """A yes/no flag value: ``true``/``false`` (also ``1``/``0``, ``yes``/``no``, ``on``/``off``)."""
    value = text.strip().lower()
    if value in ("true", "1", "yes", "on"):
        return True
    if value in ("false", "0", "no", "off"):
        return False
    raise argparse.ArgumentTypeError(f"expected true or false, got {text!r}")


def _unwrap_optional(hint: Any) -> tuple[Any, bool]:
    """``int | None`` -> (int, True); ``int`` -> (int, False)."""
    args = typing.get_args(hint)
    if typing.get_origin(hint) in (typing.Union, types.UnionType) and type(None) in args:
        rest = [a for a in args if a is not type(None)]
        return rest[0], True
    return hint, False


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options generated from ``TrialConfig``'s fields (one flag per field, defaults from the
    dataclass), so the CLI can never drift from the config; then the harness options."""
    hints = typing.get_type_hints(TrialConfig)
    settings = parser.add_argument_group("trial settings (one per TrialConfig field)")
    for f in dataclasses.fields(TrialConfig):
        _add_setting(settings, f, hints[f.name])
    _add_harness_arguments(parser.add_argument_group("harness"))


def _add_setting(group: Any, f: dataclasses.Field, hint: Any) -> None:
    """One field's flag: its name (and a friendlier alias, shown first, where the name reads
    badly as a flag), its type, and its default in the help (None: the flag was not given)."""
    flags = [*_FLAG_ALIASES.get(f.name, ()), "--" + f.name.replace("_", "-")]
    if f.name == "dataset_options":
        group.add_argument(*flags, dest=f.name, action="append", type=_key_value, default=None,
                           metavar="KEY=VALUE", help="a dataset loader option (repeatable), "
                           "e.g. --dataset-option num_nodes=200")  # fmt: skip
        return
    base, optional = _unwrap_optional(hint)
    default = f.default_factory() if f.default is dataclasses.MISSING else f.default  # type: ignore[misc]
    kind = parse_bytes if f.name == "memory_cap_bytes" else _bool if base is bool else base
    metavar = "BYTES" if f.name == "memory_cap_bytes" else f.name.upper()
    shown = "the arch's default" if optional and f.name in archs.OPTIONAL else default
    if f.name == "heads":
        shown = "1 (--conv gat only)"
    group.add_argument(*flags, dest=f.name, type=kind, default=None, metavar=metavar,
                       help=f"default: {shown}")  # fmt: skip


def _add_harness_arguments(harness: Any) -> None:
    """How the trial runs and what it prints (not part of its configuration)."""
    harness.add_argument(
        "--config-json",
        metavar="JSON",
        help="the whole TrialConfig as a JSON object (flags given as well override it)",
    )
    harness.add_argument(
        "--json",
        action="store_true",
        help="print the record as one JSON object, the last stdout line",
    )
    harness.add_argument(
        "--events",
        action="store_true",
        help="child protocol: print @phase/@start/@epoch lines on stdout and accept 'stop' on stdin",
    )
    harness.add_argument(
        "--dry-run",
        action="store_true",
        help="print the predicted parameters and peak memory, train nothing "
        "(with --device cuda: a GPU run predicted from any machine)",
    )
    harness.add_argument(
        "--target-memory",
        type=parse_bytes,
        default=None,
        metavar="BYTES",
        help="with --dry-run: the target device's memory (e.g. 32GB for a V100): says whether "
        "the predicted peak fits",
    )
    mode = harness.add_mutually_exclusive_group()
    mode.add_argument(
        "--in-process",
        action="store_true",
        help="train in this process (the default: the CLI invocation is itself a fresh process)",
    )
    mode.add_argument(
        "--isolated",
        action="store_true",
        help="train in a child process (survives crashes and the kernel's OOM killer)",
    )
    harness.add_argument(
        "--no-progress", action="store_true", help="no progress bar or log lines on stderr"
    )
    harness.add_argument(
        "--memory-snapshot",
        metavar="DIR",
        default=None,
        help="CUDA only, in-process: write a torch.cuda.memory snapshot of a metered step to "
        "DIR/step.pickle (open it in PyTorch's memory visualiser)",
    )


def config_from_args(args: argparse.Namespace, *, check_device: bool = True) -> TrialConfig:
    """The validated config the flags describe. Raises ConfigError naming the flag at fault.
    ``check_device=False`` (dry runs) lets ``--device cuda`` describe a GPU this machine lacks."""
    values: dict[str, Any] = {}
    if getattr(args, "config_json", None):
        try:
            values = json.loads(args.config_json)
        except json.JSONDecodeError as exc:
            raise ConfigError("config_json", f"not valid JSON: {exc}") from None
        if not isinstance(values, dict):
            raise ConfigError("config_json", "must be a JSON object of settings")
    for f in dataclasses.fields(TrialConfig):
        given = getattr(args, f.name, None)
        if given is None:
            continue
        if f.name == "dataset_options":
            values["dataset_options"] = {**values.get("dataset_options", {}), **dict(given)}
        else:
            values[f.name] = given
    return TrialConfig.from_dict(values, check_device=check_device)


def main(args: argparse.Namespace) -> int:
    """``python -m bench trial``: 0 when the trial ends ``ok``, 1 for any other status (the
    record is printed all the same), 2 for bad input (nothing is loaded or trained)."""
    try:
        config = config_from_args(args, check_device=not args.dry_run)
    except ConfigError as exc:
        return cli_exit(exc)
    if args.target_memory is not None and not args.dry_run:
        print("error: --target-memory: only with --dry-run", file=sys.stderr)
        return 2
    if is_graph_file(config.dataset) and not args.events:  # what was inferred from the file
        print(f"dataset: {summary_of(config.dataset, config.dataset_options)}", file=sys.stderr)
    if args.dry_run:
        try:
            return _dry_run(config, as_json=args.json, target_memory=args.target_memory)
        except (ConfigError, DataError) as exc:
            return cli_exit(exc)
    if not args.events:  # a child of a sweep records a missing dataset; a person gets one line
        problem = _data_problem(config)
        if problem is not None:
            print(f"error: {problem}", file=sys.stderr)
            return 2
    progress = not args.no_progress and not args.events
    if args.memory_snapshot is not None and (config.device != "cuda" or args.isolated):
        why = "needs --device cuda" if config.device != "cuda" else "runs in-process only"
        print(f"error: --memory-snapshot: {why} (it records CUDA's caching allocator)",
              file=sys.stderr)  # fmt: skip
        return 2
    if args.isolated:
        record = run_trial_isolated(config, on_epoch=log_epoch if progress else None)
    elif args.events:
        record = run_child(config)
    else:
        record = run_trial(config, progress=progress, memory_snapshot=args.memory_snapshot)
    refused = record.status == "error" and (record.error or "").startswith(CONFIG_ERROR_PREFIX)
    if args.json:
        print(record.to_json(), flush=True)
    elif not refused:  # a refused setting is said once, below
        print(_summary(record), flush=True)
    if refused:
        print(f"error: {record.error[len(CONFIG_ERROR_PREFIX) :]}", file=sys.stderr)
        return 2
    return 0 if record.status == "ok" else 1


def _data_problem(config: TrialConfig) -> str | None:
    """Why the graph cannot be had here: a real graph not here (downloading off or failed), a
    generated one too large to build on this machine; or None. Fetches a real graph into the
    cache first when it may (see :mod:`bench.data.download`)."""
    from bench.data.download import ensure
    from bench.data.registry import check_fits, get_spec

    if is_graph_file(config.dataset):  # checked when the configuration was validated
        return None
    spec = get_spec(config.dataset)
    if spec.kind == "generated":
        try:
            check_fits(spec.name, config.dataset_options)
        except ConfigError as exc:
            return exc.for_cli()
    if spec.kind != "shared":
        return None
    try:
        ensure(spec.name, config.data_root, spec.files)
    except DataError as exc:
        return str(exc)
    return None


def _dry_run(config: TrialConfig, as_json: bool, target_memory: int | None = None) -> int:
    """Predict without training: data sizes (loads the dataset), then a meta-device model.

    ``--device cuda`` predicts a GPU run from any machine (the batch alone on the device,
    CUDA's dropout masks and foreach Adam); ``--target-memory`` says whether it fits."""
    from bench.data import load
    from bench.measure import memory_model

    dataset = load(config.dataset, root=config.data_root, **config.dataset_options)
    sizes = memory_model.sizes_for(config, dataset)
    prediction = memory_model.predict(config, sizes)
    fits = None if target_memory is None else prediction.total_bytes <= target_memory
    if as_json:
        extra = {} if fits is None else {"target_memory_bytes": target_memory, "fits": fits}
        print(
            json.dumps(
                {"config": config.to_dict(), **prediction.to_dict(), **extra}, sort_keys=True
            )
        )
    else:
        print(prediction.describe(config))
        if target_memory is not None:
            share = prediction.total_bytes / target_memory
            verdict = "fits" if fits else "does NOT fit"
            print(f"  target: {units.format_bytes(target_memory)} -> {verdict} ({share:.0%} of it)")
    return 0


def _summary(record: TrialRecord) -> str:
    from bench.units import format_bytes

    cfg = record.config
    parts = [
        f"{record.status}: {cfg['arch']} L={cfg['layers']} C={cfg['channels']} on {cfg['dataset']}"
    ]
    if record.best_valid is not None:
        parts.append(
            f"best valid {record.metric} {record.best_valid:.4f} at epoch {record.best_epoch}, "
            f"test {record.test_at_best_valid:.4f}"
        )
    if record.peak_memory_bytes is not None:
        predicted = (
            f" (predicted {format_bytes(record.predicted_peak_bytes)})"
            if record.predicted_peak_bytes
            else ""
        )
        parts.append(
            f"peak {format_bytes(record.peak_memory_bytes)} [{record.memory_meter}]{predicted}"
        )
    if record.params is not None:
        parts.append(f"{record.params:,} params")
    if record.step_time_s is not None:
        parts.append(f"{record.step_time_s:.3f} s/step")
    if record.error:
        parts.append(f"error: {record.error.splitlines()[0]}")
    return "; ".join(parts)


def run_child(config: TrialConfig) -> TrialRecord:
    """``--events``: run in-process, narrating on stdout; ``stop`` on stdin ends the trial,
    and so, at once, does stdin closing when a parent watches (``PARENT_ENV``: it died)."""
    stop = threading.Event()
    watched = bool(os.environ.get(PARENT_ENV))

    def listen() -> None:
        for line in sys.stdin:  # read on after a stop: its closing still says the parent died
            if line.strip() == STOP_COMMAND:
                stop.set()
        if watched:  # stdin closed: the parent is gone, and with it whoever reads the record
            os.kill(os.getpid(), signal.SIGKILL)

    threading.Thread(target=listen, daemon=True, name="stop-listener").start()
    return run_trial(
        config,
        on_epoch=lambda event: emit(EVENT_PREFIX, event),
        stop=stop,
        on_start=lambda info: emit(START_PREFIX, info),
        on_phase=lambda phase: emit(PHASE_PREFIX, phase),
    )
