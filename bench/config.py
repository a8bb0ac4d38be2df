"""TrialConfig: the validated description of one trial. Everything downstream takes one.

Validation happens here, once, before any data is loaded or any model built: the data and
training settings here, the model's by its :class:`~bench.models.config.ModelConfig` (which
asks the architecture and the convolution). Every error names the setting at fault; the command
line turns it into its flag.
"""

from __future__ import annotations

import dataclasses
import functools
import math
from dataclasses import dataclass, field
from typing import Any

from bench.errors import ConfigError, DeviceUnavailable
from bench.models.config import ModelConfig, positive_number

BATCHINGS = ("mini", "full")
DEVICES = ("cpu", "cuda")
# autocast of forward and loss: fp32 = none; bf16 on CPU and CUDA; fp16 with a gradient scaler
PRECISIONS = ("fp32", "bf16", "fp16")
#: the fields that describe the model (handed to it whole as a ModelConfig)
MODEL_FIELDS = tuple(f.name for f in dataclasses.fields(ModelConfig))


@dataclass(frozen=True)
class TrialConfig:
    """One configuration: data, model, optimisation, measurement. Defaults: the CPU default."""

    dataset: str = "synthetic-proteins"  # a registered name, or a graph file PATH.pt
    # a graph file's content hash (SHA-256 of its bytes), filled in by validation: part of the
    # configuration's identity, and a file changed since is refused (None for registered data)
    dataset_hash: str | None = None
    arch: str = "rev"
    layers: int = 64
    channels: int = 64
    groups: int = 2
    # weight-tied archs only (None = the arch's default, "after-first"; an error for other archs)
    tie: str | None = None
    dropout: float = 0.1
    # reversible archs only: one dropout mask for every layer and group (the paper's way) instead
    # of an independent one per layer and group (None = False: independent masks regularise
    # like ordinary dropout, and replaying them costs nothing extra; the paper profiles set it)
    share_mask: bool | None = None
    aggr: str = "max"  # GENConv's (and SAGE's) neighbourhood aggregation; GAT/GCN: default only
    # the convolution of every block: gen | gat | sage | gcn, or a factory "module:function",
    # which validation pins to its source as "module:function@<sha256 prefix>" (a changed
    # factory is a new configuration; bench.models.conv_specs)
    conv: str = "gen"
    heads: int | None = None  # GAT attention heads (None = 1; an error for other convs)
    # fused | pyg: how GENConv's max aggregation runs (bench.models.config.AGGR_IMPLS)
    aggr_impl: str = "fused"
    norm: str = "layer"
    lr: float = 1e-3
    epochs: int = 5  # the maximum; with ``patience`` training may stop earlier
    # early stopping: stop after this many evaluations without a validation gain of more than
    # ``min_delta`` (None = off: train all ``epochs``, the paper's recipe)
    patience: int | None = None
    min_delta: float | None = None  # None = 0: any gain resets the patience
    seed: int = 0
    device: str = "cpu"
    precision: str = (
        "fp32"  # fp32 | bf16 | fp16 (CUDA only): mixed precision, bench.measure.precision
    )
    batching: str = "mini"  # "mini": random node partitions (the paper's way); "full": whole graph
    train_parts: int = 10
    eval_parts: int = 5
    eval_every: int = 1
    grad_clip: float = 1.0
    # deterministic kernels (slower scatter on CUDA): None = on for CPU (bit-identical reruns),
    # off for CUDA (timings are of the kernels people use); True/False forces it
    deterministic: bool | None = None
    # every block function under torch.compile (bench.models.compiled); compile time is recorded
    # apart from step time
    compile: bool = False
    # DEQ only (None = the arch's default; giving one to a non-DEQ arch is an error)
    deq_solver: str | None = None
    deq_tol: float | None = None
    deq_max_iter: int | None = None
    deq_grad: str | None = None
    # harness
    timeout: float | None = None  # seconds for the whole trial; ends cleanly with a partial curve
    memory_cap_bytes: int | None = None  # fault injection / budget: exceeding it is an OOM
    data_root: str | None = None
    dataset_options: dict[str, Any] = field(default_factory=dict)

    # --- construction -------------------------------------------------------------------
    @classmethod
    def from_dict(cls, values: dict[str, Any], *, check_device: bool = True) -> TrialConfig:
        """``check_device=False`` describes a run for another machine (a dry run predicting a
        GPU from a machine without one); training always checks."""
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ConfigError(
                unknown[0], f"unknown setting; known settings: {', '.join(sorted(known))}"
            )
        return cls(**values).validated(check_device=check_device)

    def to_dict(self) -> dict[str, Any]:
        """The settings as plain data, with ``tie``, ``heads`` and ``aggr_impl`` as they ran
        (so a record says which tying it ran even if the default changes); an invalid model's
        settings as given (nothing was resolved: the record of its failure says why)."""
        values = dataclasses.asdict(self)
        try:
            model = self.model
        except ConfigError:
            return values
        values.update(tie=model.tie, heads=model.heads, aggr_impl=model.aggr_impl)
        return values

    def replace(self, **changes: Any) -> TrialConfig:
        if "dataset" in changes and "dataset_hash" not in changes:
            changes["dataset_hash"] = None  # another dataset: its own hash is taken
        return dataclasses.replace(self, **changes).validated()

    @functools.cached_property
    def model(self) -> ModelConfig:
        """The model's settings, resolved by its architecture (checked when built)."""
        return ModelConfig(**{name: getattr(self, name) for name in MODEL_FIELDS})

    @property
    def architecture(self) -> Any:
        """The registered :class:`~bench.models.archs.Architecture` of ``arch``."""
        return self.model.architecture

    @property
    def deterministic_algorithms(self) -> bool:
        """Whether trials use ``torch.use_deterministic_algorithms`` (see the field)."""
        return self.device == "cpu" if self.deterministic is None else self.deterministic

    # --- validation ---------------------------------------------------------------------
    def validated(self, *, check_device: bool = True) -> TrialConfig:
        """Return self if every setting is valid (with a graph file's ``dataset_hash`` filled in
        and a conv factory pinned to its source), else raise ConfigError naming the setting.
        ``check_device=False`` skips only the check that the device exists here."""
        dataset_hash = self._check_data()
        conv = self._check_model()
        self._check_training()
        self._check_harness()
        if self.device == "cuda" and check_device:
            import torch

            if not torch.cuda.is_available():
                raise DeviceUnavailable(
                    "device", "cuda was asked for, but no CUDA device is available here"
                )
        filled = {k: v for k, v in (("dataset_hash", dataset_hash), ("conv", conv))
                  if v is not None and v != getattr(self, k)}  # fmt: skip
        return dataclasses.replace(self, **filled) if filled else self

    def _check_data(self) -> str | None:
        """The dataset and its options; a graph file's content hash."""
        from bench.data import dataset_names, is_graph_file  # local: data pulls in heavier modules

        if not isinstance(self.dataset_options, dict):
            raise ConfigError("dataset_options", "must be a mapping of option name to value")
        if is_graph_file(self.dataset):
            from bench.data.graph_file import check_setting

            return check_setting(self.dataset, self.dataset_hash, self.dataset_options)
        names = dataset_names()
        if self.dataset not in names:
            raise ConfigError("dataset", f"unknown dataset {self.dataset!r}; known: "
                              f"{', '.join(names)}, or a graph file PATH.pt")  # fmt: skip
        if self.dataset_hash is not None:
            raise ConfigError("dataset_hash", "is a graph file's content hash, but "
                              f"dataset {self.dataset!r} is a registered one")  # fmt: skip
        from bench.data.registry import get_spec, resolve_options

        resolve_options(get_spec(self.dataset), self.dataset_options)  # by the dataset's rules
        return None

    def _check_model(self) -> str:
        """The model's settings (its architecture's and convolution's rules, ModelConfig), and
        what the convolution cannot do with this dataset; ``conv`` pinned to its source."""
        if not isinstance(self.arch, str):
            raise ConfigError("arch", f"must be an architecture name, got {self.arch!r}")
        spec = self.model.conv_spec
        if not spec.reads_edges:
            from bench.data.registry import has_edge_features

            if has_edge_features(self.dataset):
                raise ConfigError("conv", f"{self.conv!r} cannot read edge features and dataset "
                                  f"{self.dataset!r} has them: they would be dropped silently; "
                                  "use gen or gat (or a factory taking edge_dim)")  # fmt: skip
        return spec.pinned

    def _check_training(self) -> None:
        """Optimisation, early stopping, batching, precision."""
        _choice("batching", self.batching, BATCHINGS)
        _choice("device", self.device, DEVICES)
        _choice("precision", self.precision, PRECISIONS)
        if self.precision == "fp16" and self.device != "cuda":
            raise ConfigError("precision", "fp16 needs --device cuda (its gradient scaler is "
                              "CUDA's); on CPU use bf16")  # fmt: skip
        for name in ("epochs", "train_parts", "eval_parts", "eval_every"):
            _positive_int(name, getattr(self, name))
        positive_number("lr", self.lr)
        positive_number("grad_clip", self.grad_clip, allow_inf=True)
        if self.patience is not None:
            _positive_int("patience", self.patience)
        if self.min_delta is not None:
            if self.patience is None:
                raise ConfigError("min_delta", "is an early-stopping setting: give --patience too")
            value = self.min_delta
            if (
                isinstance(value, bool)
                or not isinstance(value, (int, float))
                or not (math.isfinite(value) and value >= 0)
            ):
                raise ConfigError("min_delta", f"must be a non-negative number, got {value!r}")
        if not isinstance(self.seed, int) or isinstance(self.seed, bool) or self.seed < 0:
            raise ConfigError("seed", f"must be a non-negative integer, got {self.seed!r}")

    def _check_harness(self) -> None:
        """Time and memory budgets, switches."""
        if self.timeout is not None:
            positive_number("timeout", self.timeout)
        if self.memory_cap_bytes is not None:
            _positive_int("memory_cap_bytes", self.memory_cap_bytes)
        for name in ("compile", "deterministic"):
            value = getattr(self, name)
            if value is not None and not isinstance(value, bool):
                raise ConfigError(name, f"must be true or false, got {value!r}")


def _choice(name: str, value: Any, allowed: tuple[str, ...]) -> None:
    if value not in allowed:
        raise ConfigError(name, f"unknown value {value!r}; choose one of {', '.join(allowed)}")


def _positive_int(name: str, value: Any) -> None:
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise ConfigError(name, f"must be a positive integer, got {value!r}")
