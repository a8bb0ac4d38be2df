"""TrialRecord: everything one trial produced, and the one declaration of its schema.

The record is the only thing sweeps, the tuner and the report see. Every table of records
derives from the declaration below, so a field added here appears everywhere at once:

* **export columns** (:meth:`TrialRecord.flat`, :func:`record_columns`): ``config`` gives one
  column per :class:`~bench.config.TrialConfig` field, unprefixed; a plain field is a column of
  its own name; a dict field one column per key, named with its prefix (``solver_``,
  ``version_``); ``curve`` one column, its length (``epochs_done``). A field's :class:`Columns`
  metadata says which; a field without it is a plain column. (``deterministic`` is both a
  setting and a field: the export's column is the record's, what ran.)
* **numeric columns** (:func:`numeric_columns`): those whose type is ``int`` or ``float`` (for
  a dict field, its values' type), never ``bool``; readers parse them as numbers.
* **flat attributes** (:meth:`TrialRecord.flat_attrs`): the fields declared with
  :func:`flat_attr`, short values the Optuna dashboard shows whole on each trial, under the
  field's name or the one its declaration gives (``params``, the parameter count, is
  ``param_count`` there: Optuna's own "Params" are the trial's grid axes). A value the record
  lacks (None, or a number that is not finite) is left out, never stored empty: the dashboard
  sorts and plots an attribute only if it is a number in every trial that has it.

``failure_kind`` is decided in one place, :func:`failure_kind_of`: whoever builds a record
passes it the status and what ended the trial. Tables of records (their version, reading,
writing, migration) are :mod:`bench.exports`.

Example::

    record = TrialRecord("oom", {"arch": "res", "layers": 64}, error="out of memory ...")
    record.failure_kind = failure_kind_of(record.status, record.error)  # "config"
    record.flat()["layers"], record.flat_attrs()["status"]  # 64, "oom"
"""

from __future__ import annotations

import dataclasses
import functools
import json
import math
import typing
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from bench.errors import is_environment_error

# "killed": the trial process got SIGKILL from another process (not the kernel's OOM killer)
STATUSES = ("ok", "oom", "diverged", "timeout", "pruned", "error", "killed")
# why a trial failed: its configuration (final) or the machine it ran on (retried next run)
FAILURE_KINDS = ("config", "environment")
# error messages of environment failures (a message starts with the exception's class name):
# how a record read back without ``failure_kind`` (stored before the field) is classified
_ENVIRONMENT_ERRORS = ("DataError:", "DeviceUnavailable:")


def failure_kind_of(
    status: str, cause: BaseException | str | None = None, *, outside: bool = False
) -> str | None:
    """Why a trial with ``status`` failed: ``"config"`` (final: its configuration's doing),
    ``"environment"`` (data missing, device gone, killed from outside: the next run retries
    it), or None when it did not fail (``ok``, ``pruned``, or no status yet).

    ``cause``: the exception that ended the trial, or its error message; ``outside``: another
    process ended it (a signal). Why one function: trial, isolation, worker and tuner each see
    a different cause, and a retried point must not depend on which of them saw it."""
    if not status or status in ("ok", "pruned"):  # no status: not finished, so not failed
        return None
    if outside or status == "killed":
        return "environment"
    if isinstance(cause, BaseException):
        return "environment" if is_environment_error(cause) else "config"
    return "environment" if (cause or "").startswith(_ENVIRONMENT_ERRORS) else "config"


@dataclass(frozen=True)
class Columns:
    """How a record field becomes columns of a tidy table and attributes of its trial.

    A field without this metadata is one column of its own name and no flat attribute."""

    flat: bool = False  # also a flat attribute of its trial (a value the dashboard shows whole)
    attr: str | None = None  # the flat attribute's name, where it is not the field's
    expand: bool = False  # a configuration: one column per TrialConfig field, unprefixed
    prefix: str | None = None  # a dict: one column per key, ``prefix + key``
    # a dict: the keys readers may rely on (a table has them only where some trial wrote them)
    # and those of them that are flat attributes too
    keys: tuple[str, ...] = ()
    flat_keys: tuple[str, ...] = ()
    length: str | None = None  # a list: one column holding its length

    @property
    def group(self) -> int:
        """Column groups in an export row, in order: configuration, plain fields, dict keys,
        lengths (the order exports have always had)."""
        return 0 if self.expand else 3 if self.length else 2 if self.prefix else 1


_PLAIN = Columns()
_FLAT = {"columns": Columns(flat=True)}


def flat_attr(default: Any = None, *, attr: str | None = None) -> Any:
    """A plain field that is also a flat attribute of its trial (named ``attr`` there, if
    given: a name that would read as something else beside Optuna's own fields)."""
    return field(default=default, metadata={"columns": Columns(flat=True, attr=attr)})


# what a DEQ trial's solver records (bench.trial.step): per solve (fwd, bwd) the iterations
# and the relative residual, mean and max over the training steps; and how many steps
SOLVER_KEYS = (
    *(f"{solve}_{stat}_{agg}" for solve in ("bwd", "fwd")
      for stat in ("iters", "rel_residual") for agg in ("max", "mean")),
    "steps",
)  # fmt: skip


@dataclass
class TrialRecord:
    """A finished (or failed) trial.

    ``status``: ``ok``; ``oom`` (out of memory: real, or over ``memory_cap_bytes``);
    ``diverged`` (non-finite loss); ``timeout`` (ended by its time budget, with the partial
    curve kept; ``best_valid`` is then the best seen so far); ``pruned`` (stopped by a tuner
    from its intermediate scores); ``error`` (anything else, with
    ``error`` holding the message).
    """

    status: str = field(metadata=_FLAT)
    config: dict[str, Any] = field(metadata={"columns": Columns(expand=True)})
    metric: str | None = None  # "rocauc" or "acc"
    # how the nodes were split, where the loader says: a graph file's "the file's train/val/test
    # masks" or "random 60/20/20, seed 0"; a real graph's split option ("public", "random")
    dataset_split: str | None = None
    best_valid: float | None = flat_attr()
    test_at_best_valid: float | None = flat_attr()
    best_epoch: int | None = None
    # per epoch: epoch, loss, valid, test, time_s
    curve: list[dict[str, float]] = field(
        default_factory=list, metadata={"columns": Columns(length="epochs_done")}
    )
    params: int | None = flat_attr(attr="param_count")  # the export's column keeps "params"
    # the whole step's peak (the max of the two phases below): the headline
    peak_memory_bytes: int | None = flat_attr()
    model_state_bytes: int | None = None  # parameters + gradients + optimiser state
    memory_meter: str | None = None  # "cuda-allocator" or "cpu-live-tensors"
    # the metered step, split (see bench.measure.meters.StepMemory); maxima over the metered steps
    # taken after the first (warm-up) step, so Adam's moments exist in every one of them
    baseline_bytes: int | None = flat_attr()  # live at the step's entry (model state, data)
    fwd_bwd_peak_bytes: int | None = flat_attr()  # absolute peak of forward + backward
    optimizer_peak_bytes: int | None = flat_attr()  # absolute peak of clipping + optimiser step
    step_added_bytes: int | None = flat_attr()  # fwd_bwd peak - baseline: what the step adds
    reserved_peak_bytes: int | None = None  # CUDA: the caching allocator's reserved peak
    device_memory_bytes: int | None = None  # CUDA: the device's total memory
    metered_steps: int | None = None  # metered steps after the warm-up step
    optimizer_impl: str | None = None  # e.g. "Adam(foreach)" on CUDA, "Adam(for-loop)" on CPU
    deterministic: bool | None = None  # torch.use_deterministic_algorithms was on
    predicted_params: int | None = None
    predicted_peak_bytes: int | None = None
    step_time_s: float | None = flat_attr()  # mean training step after warm-up
    epoch_time_s: float | None = flat_attr()  # mean training epoch after warm-up
    compile_time_s: float | None = None  # compile=True: seconds spent compiling (not timed)
    # DEQ: fwd/bwd iterations and relative residuals (SOLVER_KEYS)
    solver: dict[str, float] | None = field(
        default=None,
        metadata={"columns": Columns(prefix="solver_", keys=SOLVER_KEYS, flat_keys=(
            "fwd_iters_mean", "fwd_rel_residual_max", "bwd_iters_mean", "bwd_rel_residual_max"))},
    )  # fmt: skip
    error: str | None = flat_attr()
    failed_phase: str | None = None  # "setup", "train", "eval" for non-ok statuses
    device_name: str | None = (
        None  # e.g. "cpu (AMD EPYC ..., 2 threads)" or "cuda (NVIDIA H100 ...)"
    )
    versions: dict[str, str] = field(
        default_factory=dict, metadata={"columns": Columns(prefix="version_")}
    )
    commit: str | None = None  # "-dirty": edits under bench/ not committed
    # the trial code's content hash (bench.measure.provenance.source_hash): which code measured,
    # also where the commit cannot say (a -dirty tree)
    source_hash: str | None = None
    wall_time_s: float | None = None
    # "config" (oom, diverged, timeout, invalid: final) or "environment" (data missing, device
    # gone, killed from outside: the next run retries it); None when ok or pruned. Set with
    # failure_kind_of; tables and flat attributes hold kind_of_failure()
    failure_kind: str | None = flat_attr()
    # the last epoch trained and why training ended: "patience" (early stopping),
    # "max-epochs", or the status that ended it early ("timeout", "pruned", "diverged", ...)
    stopped_epoch: int | None = None
    stop_reason: str | None = flat_attr()
    # depth in message-passing hops (bench.trial.hops): how far the model sees, from its config
    # (ResGNN L, RevGNN G x L, DEQ 2n - 1 at its iteration cap), and how far the task needs, where
    # that is a fact of the dataset (synthetic-depth's ``depth``); None where not known
    receptive_hops: int | None = None
    needed_hops: int | None = None

    def kind_of_failure(self) -> str | None:
        """``failure_kind`` as stored, or for a record stored without it, what it would be.
        A stored environment failure stands: it was decided from what the message may not say
        (a signal from another process, the exception's class)."""
        stored = self.failure_kind == "environment"
        return failure_kind_of(self.status, self.error, outside=stored)

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

    def _value(self, name: str) -> Any:
        return self.kind_of_failure() if name == "failure_kind" else getattr(self, name)

    def flat(self) -> dict[str, Any]:
        """One flat row for tidy tables (see the module docstring): config keys unprefixed
        (dict values as JSON), dict fields' keys prefixed, the curve by its length."""
        row: dict[str, Any] = {}
        for f, how in _fields():
            value = self._value(f.name)
            if how.expand:
                row.update({k: json.dumps(v, sort_keys=True) if isinstance(v, dict) else v
                            for k, v in value.items()})  # fmt: skip
            elif how.prefix:
                row.update({f"{how.prefix}{k}": v for k, v in (value or {}).items()})
            elif how.length:
                row[how.length] = len(value)
            else:
                row[f.name] = value
        return row

    def flat_attrs(self) -> dict[str, Any]:
        """The record's flat attributes: its ``flat`` fields (under their ``attr`` name), and a
        dict's ``flat_keys`` where the dict was recorded (prefixed, a DEQ trial's solver).
        Values the record lacks are left out (see the module docstring)."""
        attrs: dict[str, Any] = {}
        for f, how in _fields():
            value = self._value(f.name)
            if how.flat:
                attrs[how.attr or f.name] = value
            elif how.flat_keys and value:
                attrs.update({f"{how.prefix}{k}": value.get(k) for k in how.flat_keys})
        return {k: v for k, v in attrs.items() if _present(v)}


def _present(value: Any) -> bool:
    """A value worth an attribute: not None, and a finite number where it is a float."""
    return value is not None and not (isinstance(value, float) and not math.isfinite(value))


@functools.cache
def _fields() -> tuple[tuple[dataclasses.Field[Any], Columns], ...]:
    """The record's fields with how each becomes columns, in export order (stable by group)."""
    pairs = [(f, f.metadata.get("columns", _PLAIN)) for f in dataclasses.fields(TrialRecord)]
    return tuple(sorted(pairs, key=lambda pair: pair[1].group))


def _config_fields() -> list[str]:
    from bench.config import TrialConfig

    return sorted(f.name for f in dataclasses.fields(TrialConfig))  # as records store them


@functools.cache
def record_columns() -> tuple[str, ...]:
    """The columns :meth:`TrialRecord.flat` writes for every record with a whole configuration,
    in its order (configuration keys sorted, as stored records hold them)."""
    names: list[str] = []
    for f, how in _fields():
        if how.expand:
            names += _config_fields()
        elif how.length:
            names.append(how.length)
        elif not how.prefix:
            names.append(f.name)
    return tuple(dict.fromkeys(names))  # a field named like a setting shares its column


@functools.cache
def keyed_columns() -> tuple[str, ...]:
    """The dict fields' declared columns (``solver_...``): in a table only where some trial
    wrote them (a table without a DEQ trial has none); readers give them empty."""
    return tuple(f"{how.prefix}{k}" for _, how in _fields() for k in how.keys)


def _is_number(hint: Any) -> bool:
    kinds = {a for a in (typing.get_args(hint) or (hint,)) if a is not type(None)}
    return bool(kinds) and kinds <= {int, float}


def _value_type(hint: Any) -> Any:
    """The value type of ``dict[str, V] | None``."""
    for arg in typing.get_args(hint) or (hint,):
        if typing.get_origin(arg) is dict:
            return typing.get_args(arg)[1]
    return None


@functools.cache
def _numeric_names() -> tuple[frozenset[str], tuple[str, ...]]:
    """Numeric column names, and the prefixes whose every column is numeric."""
    from bench.config import TrialConfig

    hints = typing.get_type_hints(TrialRecord)
    config_hints = typing.get_type_hints(TrialConfig)
    names: set[str] = set()
    prefixes: list[str] = []
    for f, how in _fields():
        if how.expand:
            names |= {name for name, hint in config_hints.items() if _is_number(hint)}
        elif how.length:
            names.add(how.length)
        elif how.prefix:
            if _is_number(_value_type(hints[f.name])):
                prefixes.append(how.prefix)
        elif _is_number(hints[f.name]):
            names.add(f.name)
    return frozenset(names), tuple(prefixes)


def numeric_columns(columns: Iterable[str]) -> list[str]:
    """Which of ``columns`` hold numbers, by the type of the field (or setting) behind each."""
    names, prefixes = _numeric_names()
    return [c for c in columns if c in names or c.startswith(prefixes)]


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
