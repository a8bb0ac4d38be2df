"""The architectures, each one registered object: what the suite knows of it, in one place.

An :class:`Architecture` knows its name (the ``--arch`` value), display name and colour (figures,
tables), family, its own rules (which settings it takes), how its model is built from one
:class:`~bench.models.config.ModelConfig`, its receptive field in message-passing hops, and the
activations its body keeps for the memory model. Nothing else in the suite lists architectures:
figures, claims, the benchmark, ``capacity``, the GPU check and the time model read
:func:`registered`. This module is light (no torch): configurations validate without it; the
model class is imported when a model is built.

A family (:class:`ResidualArch`, :class:`ReversibleArch`, :class:`EquilibriumArch`) holds what
its members share; a member is one instance. Adding an architecture is one module that builds its
model and registers it (a family instance, or a subclass of :class:`Architecture` for a new
family); outside the package, name that module in ``BENCH_PLUGINS`` (:mod:`bench.plugins`)::

    # mymodels.py, then: BENCH_PLUGINS=mymodels python -m bench trial --arch wide-res
    from torch import nn
    from bench.models.archs import ResidualArch, register
    from bench.models.residual import ResGNN

    class WideRes(ResGNN):  # any nn.Module(config, in_channels, edge_dim, out_channels)
        pass

    register(ResidualArch("wide-res", "WideResGNN", "#8c564b", model=WideRes))
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from bench import plugins
from bench.errors import ConfigError

FLOAT = 4  # bytes per float32

#: weight tying: "after-first" = an untied first layer, then one block shared by the rest (the
#: paper's parameter counts); "all" = one block for every layer
TIES = ("after-first", "all")
DEQ_SOLVERS = ("fixed_point", "anderson", "broyden")
DEQ_GRADS = ("implicit", "phantom")
#: settings only some architectures take: (what kind of setting, which archs take it)
OPTIONAL: dict[str, tuple[str, dict[str, Any]]] = {
    "tie": ("weight-tying", {"tied": True}),
    "share_mask": ("reversible-stack", {"family": "reversible"}),
    **{
        f"deq_{k}": ("DEQ", {"family": "equilibrium"})
        for k in ("solver", "tol", "max_iter", "grad")
    },
}


@dataclass(frozen=True)
class BodyInputs:
    """What an architecture's activation formula reads (filled by the memory model).

    ``block(width, act)`` is the bytes autograd keeps for one block of ``width`` channels with
    ``act`` bytes per saved float; ``transient(width, act)`` the step's largest op at that width.
    ``act`` is the encoders' bytes per float (2 under bf16/fp16 autocast), ``edge_emb`` the edge
    embedding's bytes, ``loop_rows`` the extra rows a conv's self-loops add to it."""

    nodes: int
    channels: int
    layers: int
    groups: int
    act: int
    edge_emb: int
    loop_rows: int
    mask: int
    deq_max_iter: int | None
    block: Callable[[int, int], int]
    transient: Callable[[int, int], int]


@dataclass(frozen=True)
class Architecture:
    """One architecture. Subclasses (families) implement the rules and formulas; an instance
    is one member: its name, display name, figure colour and model class."""

    name: str
    display: str
    colour: str
    #: the model class (or ``"module:Class"``, imported when built), called as
    #: ``model(config, in_channels, edge_dim, out_channels)``
    model: Any
    family: str = "residual"
    #: what the depth axis counts ("layer", or "iteration" for an equilibrium model)
    depth_unit: str = "layer"
    #: activation memory independent of depth (the memory-efficient families)
    flat_memory: bool = False
    #: state kept in float32 under autocast (reversible stream, equilibrium iterates)
    float32_state: bool = False
    #: step time relative to its family's fitted time model (checkpointing recomputes)
    time_factor: float = 1.0
    tied: bool = False

    # --- settings ---------------------------------------------------------------------------
    def accepts(self) -> frozenset[str]:
        """The settings this architecture takes beyond the common ones: the optional ones
        (``OPTIONAL``) and ``groups`` where it splits channels."""
        return frozenset({"tie"} if self.tied else ())

    def check(self, config: Any) -> None:
        """Raise ConfigError naming a setting this architecture cannot take or a bad value."""
        for setting, (what, owners) in OPTIONAL.items():
            if getattr(config, setting) is not None and setting not in self.accepts():
                raise ConfigError(setting, f"is a {what} setting, but arch is {self.name!r} "
                                  f"(use arch {' or '.join(names(**owners))})")  # fmt: skip
        if config.tie is not None and config.tie not in TIES:
            raise ConfigError(
                "tie", f"unknown value {config.tie!r}; choose one of {', '.join(TIES)}"
            )

    def resolved(self, config: Any) -> dict[str, Any]:
        """The settings this architecture fills in when left unset (its defaults)."""
        return {"tie": (config.tie or TIES[0]) if self.tied else None, "share_mask": False}

    def block_width(self, config: Any) -> int:
        """The width one block (one group function) works at."""
        return config.channels

    # --- what it is -------------------------------------------------------------------------
    @property
    def flat_params(self) -> bool:
        """Parameters independent of depth (one block shared by every layer, or iterated)."""
        return self.tied

    def depth(self, config: Any) -> int:
        """The depth its depth axis counts (layers, or an equilibrium model's iteration cap)."""
        return config.layers

    def receptive_hops(self, config: Any) -> int:
        """How many message-passing hops from a node its prediction can see (one convolution
        per layer: L)."""
        return config.layers

    def body_bytes(self, x: BodyInputs) -> tuple[int, int]:
        """(bytes the body keeps at a step's peak, the largest transient op)."""
        return x.layers * x.block(x.channels, x.act), x.transient(x.channels, x.act)

    def released_bytes(self, x: BodyInputs) -> int:
        """Bytes of the body the backward pass frees layer by layer as it makes the gradients,
        so that the two never exist together: a stack that keeps one block per layer frees
        each as it passes it (its step peaks where the backward starts, or, where parameters
        outweigh activations, where it ends). None here: the body stays alive through the
        backward (a reversible stack's and an equilibrium solve's do)."""
        return 0

    # --- building ---------------------------------------------------------------------------
    def model_class(self) -> Any:
        if isinstance(self.model, str):
            module, _, cls = self.model.partition(":")
            return getattr(importlib.import_module(module), cls)
        return self.model

    def build(self, config: Any, in_channels: int, edge_dim: int | None, out_channels: int) -> Any:
        """The model (a ``bench.models.blocks.DeepGNN``) for a validated ModelConfig."""
        return self.model_class()(config, in_channels, edge_dim or None, out_channels)


@dataclass(frozen=True)
class ResidualArch(Architecture):
    """``h_{l+1} = h_l + f_l(h_l)``: activations grow linearly with depth (one block per layer);
    ``checkpointed`` keeps only each layer's input and rebuilds one block in the backward."""

    checkpointed: bool = False

    def body_bytes(self, x: BodyInputs) -> tuple[int, int]:
        block = x.block(x.channels, x.act)
        if self.checkpointed:
            return x.layers * x.act * x.nodes * x.channels + block, x.transient(x.channels, x.act)
        return x.layers * block, x.transient(x.channels, x.act)

    def released_bytes(self, x: BodyInputs) -> int:
        # every layer's block (checkpointed: its saved input; the rebuilt block stays one)
        if self.checkpointed:
            return x.layers * x.act * x.nodes * x.channels
        return x.layers * x.block(x.channels, x.act)


@dataclass(frozen=True)
class ReversibleArch(Architecture):
    """Grouped reversible layers (G groups of width C/G, each group reading the previous one's
    new output: G hops a layer): activations constant in depth."""

    family: str = "reversible"
    flat_memory: bool = True
    float32_state: bool = True

    def accepts(self) -> frozenset[str]:
        return super().accepts() | {"share_mask", "groups"}

    def check(self, config: Any) -> None:
        super().check(config)
        if config.share_mask is not None and not isinstance(config.share_mask, bool):
            raise ConfigError("share_mask", f"must be true or false, got {config.share_mask!r}")
        if config.groups < 2:
            raise ConfigError("groups", f"a reversible arch needs groups >= 2, got {config.groups}")
        if config.channels % config.groups:
            raise ConfigError("groups", f"channels ({config.channels}) must be divisible by "
                              f"groups ({config.groups})")  # fmt: skip

    def resolved(self, config: Any) -> dict[str, Any]:
        return {**super().resolved(config), "share_mask": bool(config.share_mask)}

    def block_width(self, config: Any) -> int:
        return config.channels // config.groups

    def receptive_hops(self, config: Any) -> int:
        return config.groups * config.layers

    def body_bytes(self, x: BodyInputs) -> tuple[int, int]:
        # the stack output and one group's block rebuilt at a time; the running output
        # gradients (G + 2 tensors) and the edge embedding's gradient sums (in its dtype)
        w = x.channels // x.groups
        grads = FLOAT * x.nodes * x.channels * (x.groups + 2)
        if x.edge_emb:
            grads += 2 * (x.edge_emb + x.loop_rows)
        body = FLOAT * x.nodes * x.channels + x.block(w, FLOAT) + grads
        return body, x.transient(w, FLOAT)  # the largest ops run one group at a time


@dataclass(frozen=True)
class EquilibriumArch(Architecture):
    """One weight-tied block iterated to its fixed point; ``layers`` is the iteration cap unless
    ``deq_max_iter`` is set. Activations constant in the iteration cap."""

    family: str = "equilibrium"
    depth_unit: str = "iteration"
    flat_memory: bool = True
    float32_state: bool = True
    solver: str = "anderson"
    tol: float = 1e-4
    grad: str = "implicit"
    #: the solver's history (Anderson's m / Broyden's rank), bench.nn.deq's default
    history: int = 6

    def accepts(self) -> frozenset[str]:
        return super().accepts() | {"deq_solver", "deq_tol", "deq_max_iter", "deq_grad"}

    def check(self, config: Any) -> None:
        super().check(config)
        if config.deq_solver is not None and config.deq_solver not in DEQ_SOLVERS:
            raise ConfigError("deq_solver", f"unknown value {config.deq_solver!r}; choose one of "
                              f"{', '.join(DEQ_SOLVERS)}")  # fmt: skip
        if config.deq_grad is not None and config.deq_grad not in DEQ_GRADS:
            raise ConfigError("deq_grad", f"unknown value {config.deq_grad!r}; choose one of "
                              f"{', '.join(DEQ_GRADS)}")  # fmt: skip
        tol = config.deq_tol
        if tol is not None and (isinstance(tol, bool) or not isinstance(tol, (int, float))
                                or not tol > 0 or tol == float("inf")):  # fmt: skip
            raise ConfigError("deq_tol", f"must be a positive number, got {tol!r}")
        cap = config.deq_max_iter
        if cap is not None and (isinstance(cap, bool) or not isinstance(cap, int) or cap < 1):
            raise ConfigError("deq_max_iter", f"must be a positive integer, got {cap!r}")

    def resolved(self, config: Any) -> dict[str, Any]:
        """The solver settings with this arch's defaults; the iteration cap defaults to
        ``layers``, so "res at L layers vs deq at L iterations" is one point of a depth axis."""
        return {
            **super().resolved(config),
            "deq_solver": config.deq_solver or self.solver,
            "deq_tol": config.deq_tol if config.deq_tol is not None else self.tol,
            "deq_max_iter": config.deq_max_iter or config.layers,
            "deq_grad": config.deq_grad or self.grad,
        }

    @property
    def flat_params(self) -> bool:
        return True

    def depth(self, config: Any) -> int:
        return config.deq_max_iter or config.layers

    def receptive_hops(self, config: Any) -> int:
        """An iteration passes messages twice, but the first reads ``z = 0``: n iterations of
        the evaluation forward see 2n - 1 hops (``bench.trial.hops``)."""
        return max(0, 2 * self.depth(config) - 1)

    def body_bytes(self, x: BodyInputs) -> tuple[int, int]:
        # one recorded evaluation of the two-convolution block, and the solver's history
        # (at most m past iterates, no more than the cap lets it run) for both solves
        history = min(self.history, x.deq_max_iter or x.layers)
        n_c = FLOAT * x.nodes * x.channels
        f_eval = 2 * x.block(x.channels, FLOAT) + 3 * n_c
        solver = 2 * (2 * history + 4) * n_c
        return f_eval + solver + x.mask, x.transient(x.channels, FLOAT)


_REGISTRY: dict[str, Architecture] = {}


def register(arch: Architecture) -> Architecture:
    """Add ``arch`` (its name must be new); returns it, so a module can keep a handle."""
    if not isinstance(arch, Architecture):
        raise TypeError(f"register() takes an Architecture, got {type(arch).__name__}")
    if arch.name in _REGISTRY and _REGISTRY[arch.name] != arch:
        raise ValueError(f"architecture {arch.name!r} is registered already")
    _REGISTRY[arch.name] = arch
    return arch


def unregister(name: str) -> None:
    """Remove a registered architecture (tests that register a toy one clean up with it)."""
    _REGISTRY.pop(name, None)


def registered() -> Iterator[Architecture]:
    """Every architecture, in registration order (the order of figures and tables)."""
    plugins.load()
    return iter(list(_REGISTRY.values()))


def names(**having: Any) -> tuple[str, ...]:
    """The names of the architectures whose attributes equal ``having`` (all without it),
    e.g. ``names(family="reversible")``, ``names(tied=True)``."""
    return tuple(a.name for a in registered()
                 if all(getattr(a, k) == v for k, v in having.items()))  # fmt: skip


def get(name: str) -> Architecture:
    """The architecture called ``name``; ConfigError naming ``arch`` otherwise."""
    plugins.load()
    if name not in _REGISTRY:
        raise ConfigError("arch", f"unknown value {name!r}; choose one of {', '.join(names())}")
    return _REGISTRY[name]


def by_display(display: str) -> Architecture:
    """The architecture a display name stands for (``"WT-RevGNN"``), e.g. in the paper's labels."""
    for arch in registered():
        if arch.display == display:
            return arch
    raise KeyError(display)


# The built-in six, in the order figures and tables list them.
register(ResidualArch("res", "ResGNN", "#0173b2", "bench.models.residual:ResGNN"))
register(ReversibleArch("rev", "RevGNN", "#de8f05", "bench.models.reversible:RevGNN"))
register(ResidualArch("wt-res", "WT-ResGNN", "#029e73", "bench.models.residual:ResGNN", tied=True))
register(ReversibleArch("wt-rev", "WT-RevGNN", "#cc78bc", "bench.models.reversible:RevGNN",
                        tied=True))  # fmt: skip
register(EquilibriumArch("deq", "DEQ-GNN", "#6a3d9a", "bench.models.deq:DEQGNN"))
register(ResidualArch("ckpt", "ResGNN (checkpointed)", "#949494",
                      "bench.models.residual:CheckpointedResGNN", time_factor=4 / 3,
                      checkpointed=True))  # fmt: skip
