"""TrialConfig: the validated description of one trial. Everything downstream takes one.

Validation happens here, before any data is loaded or any model built, and every error names
the setting at fault (``ConfigError.flag`` gives its command-line flag).
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from typing import Any

from bench.errors import ConfigError, DeviceUnavailable

ARCHS = ("res", "rev", "wt-res", "wt-rev", "deq", "ckpt")
REVERSIBLE_ARCHS = ("rev", "wt-rev")
TIED_ARCHS = ("wt-res", "wt-rev")
# weight tying: "after-first" = an untied first layer, then one block shared by the rest (the
# paper's parameter counts); "all" = one block for every layer
TIES = ("after-first", "all")
DEFAULT_TIE = "after-first"
DEQ_SOLVERS = ("fixed_point", "anderson", "broyden")
DEQ_GRADS = ("implicit", "phantom")
BATCHINGS = ("mini", "full")
DEVICES = ("cpu", "cuda")
# autocast of forward and loss: fp32 = none; bf16 on CPU and CUDA; fp16 with a gradient scaler
PRECISIONS = ("fp32", "bf16", "fp16")
AGGRS = ("max", "softmax", "power", "mean", "add")
# the convolution inside every block (bench.models.convs): GENConv (the paper's proteins block),
# multi-head GAT (RevGAT, arxiv), GraphSAGE (products) and GCN
CONVS = ("gen", "gat", "sage", "gcn")
DEFAULT_CONV = "gen"
EDGE_CONVS = ("gen", "gat")  # the convolutions that read edge features
# aggregations a SAGE block accepts (PyG's SAGEConv; GENConv's learnable softmax/power are not)
SAGE_AGGRS = ("max", "mean", "add")
DEFAULT_HEADS = 1  # GAT attention heads when ``heads`` is unset
# how max aggregation runs: "fused" saves an N x C argmax (bench.nn.aggr); "pyg" is PyG's
# scatter_reduce path (saves two E x C tensors per layer); other aggregations always use PyG's
AGGR_IMPLS = ("fused", "pyg")
NORMS = ("layer", "batch", "none")


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
    # the convolution of every block: gen | gat | sage | gcn (bench.models.convs)
    conv: str = DEFAULT_CONV
    heads: int | None = None  # GAT attention heads (None = 1; an error for other convs)
    aggr_impl: str = "fused"  # fused | pyg: max aggregation's implementation (AGGR_IMPLS)
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
        """The settings as plain data, with ``tie`` resolved for weight-tied archs (so a record
        says which tying it ran even if the default changes)."""
        values = dataclasses.asdict(self)
        values["tie"] = self.tie_mode
        values["heads"] = self.attention_heads
        values["aggr_impl"] = self.aggr_impl_mode
        return values

    def replace(self, **changes: Any) -> TrialConfig:
        if "dataset" in changes and "dataset_hash" not in changes:
            changes["dataset_hash"] = None  # another dataset: its own hash is taken
        return dataclasses.replace(self, **changes).validated()

    @property
    def deterministic_algorithms(self) -> bool:
        """Whether trials use ``torch.use_deterministic_algorithms`` (see the field)."""
        return self.device == "cpu" if self.deterministic is None else self.deterministic

    @property
    def is_deq(self) -> bool:
        return self.arch == "deq"

    @property
    def is_tied(self) -> bool:
        return self.arch in TIED_ARCHS

    @property
    def tie_mode(self) -> str | None:
        """The weight tying in effect: ``tie`` or the default for tied archs, None otherwise."""
        return (self.tie or DEFAULT_TIE) if self.is_tied else None

    @property
    def attention_heads(self) -> int | None:
        """GAT's heads in effect: ``heads`` or the default for ``conv="gat"``, None otherwise."""
        return (self.heads or DEFAULT_HEADS) if self.conv == "gat" else None

    @property
    def aggr_impl_mode(self) -> str:
        """The aggregation implementation that runs: ``aggr_impl`` for GENConv's max, "pyg"
        otherwise (only that has a fused implementation), so a record says what ran."""
        return self.aggr_impl if self.aggr == "max" and self.conv == "gen" else "pyg"

    def deq_settings(self) -> dict[str, Any]:
        """DEQ solver settings with defaults filled in (meaningful for arch 'deq' only).

        For ``deq`` the iteration cap defaults to ``layers``, so "res at L layers vs deq at L
        iterations" is the same grid point on the depth axis."""
        return {
            "solver": self.deq_solver or "anderson",
            "tol": self.deq_tol if self.deq_tol is not None else 1e-4,
            # the depth axis of every ablation doubles as DEQ's iteration cap
            "max_iter": self.deq_max_iter if self.deq_max_iter is not None else self.layers,
            "grad": self.deq_grad or "implicit",
        }

    # --- validation ---------------------------------------------------------------------
    def validated(self, *, check_device: bool = True) -> TrialConfig:
        """Return self if every setting is valid (with a graph file's ``dataset_hash``
        filled in), else raise ConfigError naming the setting. ``check_device=False`` skips
        only the check that the device exists here."""
        from bench.data import dataset_names, is_graph_file  # local: data pulls in heavier modules

        if is_graph_file(self.dataset):
            from bench.data.graph_file import check_setting

            sha256 = check_setting(self.dataset, self.dataset_hash, self.dataset_options)
        else:
            sha256 = None
            names = dataset_names()
            if self.dataset not in names:
                raise ConfigError(
                    "dataset",
                    f"unknown dataset {self.dataset!r}; known: {', '.join(names)}, or a graph "
                    "file PATH.pt",
                )
            if self.dataset_hash is not None:
                raise ConfigError("dataset_hash", "is a graph file's content hash, but "
                                  f"dataset {self.dataset!r} is a registered one")  # fmt: skip
        _choice("arch", self.arch, ARCHS)
        _choice("aggr", self.aggr, AGGRS)
        _choice("aggr_impl", self.aggr_impl, AGGR_IMPLS)
        _choice("norm", self.norm, NORMS)
        _choice("batching", self.batching, BATCHINGS)
        _choice("device", self.device, DEVICES)
        _choice("precision", self.precision, PRECISIONS)
        if self.precision == "fp16" and self.device != "cuda":
            raise ConfigError(
                "precision",
                "fp16 needs --device cuda (its gradient scaler is CUDA's); on CPU use bf16",
            )
        for name in ("layers", "channels", "epochs", "train_parts", "eval_parts", "eval_every"):
            _positive_int(name, getattr(self, name))
        _positive_int("groups", self.groups)
        if self.arch in REVERSIBLE_ARCHS:
            if self.groups < 2:
                raise ConfigError(
                    "groups", f"a reversible arch needs groups >= 2, got {self.groups}"
                )
            if self.channels % self.groups:
                raise ConfigError(
                    "groups",
                    f"channels ({self.channels}) must be divisible by groups ({self.groups})",
                )
        self._check_conv()
        if not (0.0 <= self.dropout < 1.0):
            raise ConfigError("dropout", f"must be in [0, 1), got {self.dropout}")
        _positive_float("lr", self.lr)
        _positive_float("grad_clip", self.grad_clip, allow_inf=True)
        if self.patience is not None:
            _positive_int("patience", self.patience)
        if self.min_delta is not None:
            if self.patience is None:
                raise ConfigError("min_delta", "is an early-stopping setting: give --patience too")
            if (
                isinstance(self.min_delta, bool)
                or not isinstance(self.min_delta, (int, float))
                or not math.isfinite(self.min_delta)
                or self.min_delta < 0
            ):
                raise ConfigError(
                    "min_delta", f"must be a non-negative number, got {self.min_delta!r}"
                )
        if not isinstance(self.seed, int) or isinstance(self.seed, bool) or self.seed < 0:
            raise ConfigError("seed", f"must be a non-negative integer, got {self.seed!r}")
        deq_flags = {
            "deq_solver": self.deq_solver,
            "deq_tol": self.deq_tol,
            "deq_max_iter": self.deq_max_iter,
            "deq_grad": self.deq_grad,
        }
        if not self.is_deq:
            for name, value in deq_flags.items():
                if value is not None:
                    raise ConfigError(
                        name, f"is a DEQ setting, but arch is {self.arch!r} (use --arch deq)"
                    )
        else:
            if self.deq_solver is not None:
                _choice("deq_solver", self.deq_solver, DEQ_SOLVERS)
            if self.deq_grad is not None:
                _choice("deq_grad", self.deq_grad, DEQ_GRADS)
            if self.deq_tol is not None:
                _positive_float("deq_tol", self.deq_tol)
            if self.deq_max_iter is not None:
                _positive_int("deq_max_iter", self.deq_max_iter)
        if self.share_mask is not None:
            if not isinstance(self.share_mask, bool):
                raise ConfigError("share_mask", f"must be true or false, got {self.share_mask!r}")
            if self.arch not in REVERSIBLE_ARCHS:
                raise ConfigError(
                    "share_mask",
                    f"is a reversible-stack setting, but arch is {self.arch!r} "
                    f"(use --arch {' or '.join(REVERSIBLE_ARCHS)})",
                )
        if self.tie is not None:
            if not self.is_tied:
                raise ConfigError(
                    "tie",
                    f"is a weight-tying setting, but arch is {self.arch!r} "
                    f"(use --arch {' or '.join(TIED_ARCHS)})",
                )
            _choice("tie", self.tie, TIES)
        if self.timeout is not None:
            _positive_float("timeout", self.timeout)
        if self.memory_cap_bytes is not None:
            _positive_int("memory_cap_bytes", self.memory_cap_bytes)
        if not isinstance(self.dataset_options, dict):
            raise ConfigError("dataset_options", "must be a mapping of option name to value")
        if not isinstance(self.compile, bool):
            raise ConfigError("compile", f"must be true or false, got {self.compile!r}")
        if self.deterministic is not None and not isinstance(self.deterministic, bool):
            raise ConfigError("deterministic", f"must be true or false, got {self.deterministic!r}")
        if self.device == "cuda" and check_device:
            import torch

            if not torch.cuda.is_available():
                raise DeviceUnavailable(
                    "device", "cuda was asked for, but no CUDA device is available here"
                )
        if sha256 is not None and self.dataset_hash is None:
            return dataclasses.replace(self, dataset_hash=sha256)
        return self

    def _check_conv(self) -> None:
        """``conv`` and ``heads``, and what the chosen convolution cannot do (module CONVS)."""
        _choice("conv", self.conv, CONVS)
        if self.heads is not None:
            if self.conv != "gat":
                raise ConfigError(
                    "heads", f"is a GAT setting, but conv is {self.conv!r} (use --conv gat)"
                )
            _positive_int("heads", self.heads)
        if self.conv == "gat":
            heads = self.attention_heads or DEFAULT_HEADS
            grouped = self.arch in REVERSIBLE_ARCHS
            width = self.channels // self.groups if grouped else self.channels
            if width % heads:
                where = f"channels/groups = {width}" if grouped else f"channels = {width}"
                raise ConfigError(
                    "heads",
                    f"{heads} heads must divide each block's width ({where}): GAT concatenates "
                    "its heads, each width/heads wide",
                )
        if self.conv == "sage" and self.aggr not in SAGE_AGGRS:
            raise ConfigError(
                "aggr", f"SAGE aggregates by {', '.join(SAGE_AGGRS)}, got {self.aggr!r}"
            )
        if self.conv in ("gat", "gcn") and self.aggr != "max":
            raise ConfigError(
                "aggr",
                f"is GENConv's and SAGE's aggregation; {self.conv.upper()} has its own "
                "(attention-weighted / degree-normalised sum): leave aggr at its default",
            )
        if self.conv not in EDGE_CONVS:
            from bench.data.registry import has_edge_features

            if has_edge_features(self.dataset):
                raise ConfigError(
                    "conv",
                    f"{self.conv!r} cannot read edge features and dataset {self.dataset!r} has "
                    f"them: they would be dropped silently; use --conv {' or '.join(EDGE_CONVS)}",
                )


def _choice(name: str, value: Any, allowed: tuple[str, ...]) -> None:
    if value not in allowed:
        raise ConfigError(name, f"unknown value {value!r}; choose one of {', '.join(allowed)}")


def _positive_int(name: str, value: Any) -> None:
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise ConfigError(name, f"must be a positive integer, got {value!r}")


def _positive_float(name: str, value: Any, allow_inf: bool = False) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ConfigError(name, f"must be a positive number, got {value!r}")
    if math.isnan(value) or value <= 0 or (math.isinf(value) and not allow_inf):
        raise ConfigError(name, f"must be a positive number, got {value!r}")
