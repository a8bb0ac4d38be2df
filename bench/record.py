"""TrialRecord: everything one trial produced. The only thing sweeps, tuner and report see."""

from __future__ import annotations

import dataclasses
import json
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

# "killed": the trial process got SIGKILL from another process (not the kernel's OOM killer)
STATUSES = ("ok", "oom", "diverged", "timeout", "pruned", "error", "killed")
# why a trial failed: its configuration (final) or the machine it ran on (retried next run)
FAILURE_KINDS = ("config", "environment")
# error prefixes of environment failures in records written before ``failure_kind`` existed
_ENVIRONMENT_ERRORS = ("DataError:", "DeviceUnavailable:")


@dataclass
class TrialRecord:
    """A finished (or failed) trial.

    ``status``: ``ok``; ``oom`` (out of memory: real, or over ``memory_cap_bytes``);
    ``diverged`` (non-finite loss); ``timeout`` (ended by its time budget, with the partial
    curve kept; ``best_valid`` is then the best seen so far); ``pruned`` (stopped by a tuner
    from its intermediate scores); ``error`` (anything else, with
    ``error`` holding the message).
    """

    status: str
    config: dict[str, Any]
    metric: str | None = None  # "rocauc" or "acc"
    # how the nodes were split, where the loader says: a graph file's "the file's train/val/test
    # masks" or "random 60/20/20, seed 0"; a real graph's split option ("public", "random")
    dataset_split: str | None = None
    best_valid: float | None = None
    test_at_best_valid: float | None = None
    best_epoch: int | None = None
    curve: list[dict[str, float]] = field(
        default_factory=list
    )  # per epoch: epoch, loss, valid, test, time_s
    params: int | None = None
    peak_memory_bytes: int | None = None  # whole-step peak (max of the two below): the headline
    model_state_bytes: int | None = None  # parameters + gradients + optimiser state
    memory_meter: str | None = None  # "cuda-allocator" or "cpu-live-tensors"
    # the metered step, split (see bench.measure.meters.StepMemory); maxima over the metered steps
    # taken after the first (warm-up) step, so Adam's moments exist in every one of them
    baseline_bytes: int | None = None  # live at the step's entry (model state, data)
    fwd_bwd_peak_bytes: int | None = None  # absolute peak of forward + backward
    optimizer_peak_bytes: int | None = None  # absolute peak of clipping + optimiser step
    step_added_bytes: int | None = None  # fwd_bwd peak - baseline: what the step itself adds
    reserved_peak_bytes: int | None = None  # CUDA: the caching allocator's reserved peak
    device_memory_bytes: int | None = None  # CUDA: the device's total memory
    metered_steps: int | None = None  # metered steps after the warm-up step
    optimizer_impl: str | None = None  # e.g. "Adam(foreach)" on CUDA, "Adam(for-loop)" on CPU
    deterministic: bool | None = None  # torch.use_deterministic_algorithms was on
    predicted_params: int | None = None
    predicted_peak_bytes: int | None = None
    step_time_s: float | None = None  # mean training step after warm-up
    epoch_time_s: float | None = None  # mean training epoch after warm-up
    compile_time_s: float | None = None  # compile=True: seconds spent compiling (not timed)
    solver: dict[str, Any] | None = None  # DEQ: fwd/bwd iterations and relative residuals
    error: str | None = None
    failed_phase: str | None = None  # "setup", "train", "eval" for non-ok statuses
    device_name: str | None = (
        None  # e.g. "cpu (AMD EPYC ..., 2 threads)" or "cuda (NVIDIA H100 ...)"
    )
    versions: dict[str, str] = field(default_factory=dict)
    commit: str | None = None
    wall_time_s: float | None = None
    # "config" (oom, diverged, timeout, invalid: final) or "environment" (data missing, device
    # gone, killed from outside: the next run retries it); None when ok or pruned
    failure_kind: str | None = None
    # the last epoch trained and why training ended: "patience" (early stopping),
    # "max-epochs", or the status that ended it early ("timeout", "pruned", "diverged", ...)
    stopped_epoch: int | None = None
    stop_reason: str | None = None
    # depth in message-passing hops (bench.trial.hops): how far the model sees, from its config
    # (ResGNN L, RevGNN G x L, DEQ 2n - 1 at its iteration cap), and how far the task needs, where
    # that is a fact of the dataset (synthetic-depth's ``depth``); None where not known
    receptive_hops: int | None = None
    needed_hops: int | None = None

    def kind_of_failure(self) -> str | None:
        """``failure_kind``, or for records stored before the field existed, what it would be."""
        if self.status in ("ok", "pruned"):
            return None
        if self.failure_kind in FAILURE_KINDS:
            return self.failure_kind
        if (self.error or "").startswith(_ENVIRONMENT_ERRORS):
            return "environment"
        return "config"

    @property
    def is_environment_failure(self) -> bool:
        """Not a result: the machine failed, not the configuration (see ``failure_kind``)."""
        return self.kind_of_failure() == "environment"

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True, allow_nan=True)

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> TrialRecord:
        known = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in values.items() if k in known})

    def flat(self) -> dict[str, Any]:
        """One flat row for tidy tables: config keys unprefixed, solver keys prefixed."""
        row: dict[str, Any] = {}
        for key, value in self.config.items():
            row[key] = json.dumps(value, sort_keys=True) if isinstance(value, dict) else value
        for f in dataclasses.fields(self):
            if f.name in ("config", "curve", "solver", "versions"):
                continue
            row[f.name] = getattr(self, f.name)
        for key, value in (self.solver or {}).items():
            row[f"solver_{key}"] = value
        for key, value in self.versions.items():
            row[f"version_{key}"] = value
        row["epochs_done"] = len(self.curve)
        return row


@dataclass
class FailureCount:
    """Failed records of one kind (configuration or environment): how many of each status,
    and the first error line seen (an example for the summary)."""

    statuses: Counter[str] = field(default_factory=Counter)
    example: str = ""

    @property
    def total(self) -> int:
        return sum(self.statuses.values())

    def shown(self) -> str:
        return ", ".join(f"{n} {status}" for status, n in self.statuses.most_common())


def count_failures(records: Iterable[TrialRecord | None]) -> dict[str, FailureCount]:
    """Failed records by kind of failure (``config``, ``environment``), in that order; a kind
    with none is left out. Sweeps and tuning print one line per kind from it."""
    counts = {kind: FailureCount() for kind in FAILURE_KINDS}
    for record in records:
        kind = record.kind_of_failure() if record is not None else None
        if record is None or kind is None:
            continue
        counts[kind].statuses[record.status] += 1
        counts[kind].example = (
            counts[kind].example or ((record.error or record.status).strip().splitlines()[0])
        )
    return {kind: count for kind, count in counts.items() if count.total}
