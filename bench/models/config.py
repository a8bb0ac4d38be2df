"""ModelConfig: one model's settings, checked once and handed whole to the model and its blocks.

Every architecture, block and convolution reads what it needs from the one object (as
nanoGPT's ``Block(config)``), so a setting is threaded through no signature. Construction
checks every setting, delegating architecture rules to the architecture
(:mod:`bench.models.archs`) and convolution rules to the convolution
(:mod:`bench.models.conv_specs`); a bad one raises ConfigError naming it. Settings an
architecture fills in when unset (tying, DEQ solver, GAT heads, which max aggregation runs)
are resolved here, so a built model and its record say what ran. Light: no torch.

    from bench.models import ModelConfig, build_model
    config = ModelConfig(arch="rev", layers=1001, channels=80, groups=2)
    model = build_model(config, in_channels=8, edge_dim=8, out_channels=112)
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import bench.models.archs as archs
from bench.errors import ConfigError
from bench.models.conv_specs import AGGRS, DEFAULT_AGGR, DEFAULT_CONV, ConvSpec, conv_spec

NORMS = ("layer", "batch", "none")
#: how max aggregation runs: "fused" saves an N x C argmax (bench.nn.aggr); "pyg" is PyG's
#: scatter_reduce path (two E x C tensors per layer); other aggregations always run PyG's
AGGR_IMPLS = ("fused", "pyg")


@dataclass(frozen=True)
class ModelConfig:
    """The settings of one model (their meaning: the same fields of
    ``bench.config.TrialConfig``, which builds one per trial)."""

    arch: str = "rev"
    layers: int = 64
    channels: int = 64
    groups: int = 2
    tie: str | None = None
    share_mask: bool | None = None
    dropout: float = 0.0  # a library default; a trial's default is TrialConfig's
    aggr: str = DEFAULT_AGGR
    aggr_impl: str = "fused"
    norm: str = "layer"
    conv: str = DEFAULT_CONV
    heads: int | None = None
    deq_solver: str | None = None
    deq_tol: float | None = None
    deq_max_iter: int | None = None
    deq_grad: str | None = None

    def __post_init__(self) -> None:
        self._check()
        resolved = self.architecture.resolved(self)
        resolved["heads"] = (self.heads or 1) if self.conv_spec.heads else None
        # only GENConv's max has a fused implementation: a record says what ran
        if not (self.aggr == "max" and self.conv == "gen"):
            resolved["aggr_impl"] = "pyg"
        for name, value in resolved.items():
            object.__setattr__(self, name, value)

    @property
    def architecture(self) -> archs.Architecture:
        return archs.get(self.arch)

    @property
    def conv_spec(self) -> ConvSpec:
        return conv_spec(self.conv)

    @property
    def block_width(self) -> int:
        """The width one block (a reversible group function) works at."""
        return self.architecture.block_width(self)

    @property
    def depth(self) -> int:
        """What the depth axis counts: layers, or an equilibrium model's iteration cap."""
        return self.architecture.depth(self)

    def _check(self) -> None:
        for name in ("layers", "channels", "groups"):
            _positive_int(name, getattr(self, name))
        _choice("aggr", self.aggr, AGGRS)
        _choice("aggr_impl", self.aggr_impl, AGGR_IMPLS)
        _choice("norm", self.norm, NORMS)
        dropout = self.dropout
        if (
            isinstance(dropout, bool)
            or not isinstance(dropout, (int, float))
            or not (0.0 <= dropout < 1.0)
        ):
            raise ConfigError("dropout", f"must be in [0, 1), got {dropout}")
        self.architecture.check(self)
        self.conv_spec.check(self.aggr, self.heads, self.architecture.block_width(self))


def _choice(name: str, value: Any, allowed: tuple[str, ...]) -> None:
    if value not in allowed:
        raise ConfigError(name, f"unknown value {value!r}; choose one of {', '.join(allowed)}")


def _positive_int(name: str, value: Any) -> None:
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise ConfigError(name, f"must be a positive integer, got {value!r}")


def positive_number(name: str, value: Any, allow_inf: bool = False) -> None:
    """Raise ConfigError unless ``value`` is a positive number (``inf`` only if allowed)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ConfigError(name, f"must be a positive number, got {value!r}")
    if math.isnan(value) or value <= 0 or (math.isinf(value) and not allow_inf):
        raise ConfigError(name, f"must be a positive number, got {value!r}")
