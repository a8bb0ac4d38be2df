"""``compile=True``: every block function under ``torch.compile``, and the clock of its compiling.

What is compiled is the unit every architecture repeats: each :class:`ResPlusBlock` (a residual
layer, a reversible group's function, a group of PyG's peer) and the :class:`DEQBlock`. The
engines around them stay eager, so the reversible backward still evaluates each group function
once, with grad, through its compiled graph (AOTAutograd's joint forward/backward), and the DEQ
solver's loop stays ours. Why per block rather than the whole model: a 1001-layer stack traced
as one graph would take minutes to compile, while blocks of one shape share one compiled graph
(parameters are graph inputs), so compile time does not grow with depth.

Settings: ``fullgraph=True`` (a graph break inside a block is an error, not a silent slowdown;
the fused max aggregation is a ``torch.library`` custom op with a fake implementation for it,
:mod:`bench.nn.aggr`) and ``dynamic=True`` (partition sizes change every epoch: one graph serves
every size instead of one recompilation per size). A block is compiled lazily, at its first
call in each mode (training with grad, no-grad forward, evaluation): :class:`CompileClock` adds
up the seconds torch spends compiling, so a record keeps compile time apart from step time.
"""

from __future__ import annotations

import contextlib
import time
from typing import Any

import torch
from torch import nn

from bench.models.blocks import ResPlusBlock

__all__ = ["CompileClock", "compile_blocks", "eager_if"]

#: recompilations allowed per block code before torch falls back to eager: the modes a block
#: meets (grad / no-grad / eval, with and without a dropout mask, frozen norm statistics) need
#: a few each; torch's default of 8 is too tight once tests and benchmarks reuse a process
RECOMPILE_LIMIT = 32


def compiled_types() -> tuple[type[nn.Module], ...]:
    """The block classes :func:`compile_blocks` compiles."""
    from bench.models.deq import DEQBlock  # lazy: the DEQ engine pulls in the solvers

    return (ResPlusBlock, DEQBlock)


def compile_blocks(model: nn.Module) -> int:
    """Compile every block function of ``model`` in place (``nn.Module.compile``); returns how
    many. Outputs and gradients equal the eager ones up to floating-point reassociation (fused
    kernels round differently; float64 tests: ``tests/test_compile.py``)."""
    import torch._dynamo

    limit = max(torch._dynamo.config.recompile_limit, RECOMPILE_LIMIT)
    torch._dynamo.config.recompile_limit = limit
    torch._dynamo.config.accumulated_recompile_limit = max(
        torch._dynamo.config.accumulated_recompile_limit, 64 * limit
    )
    types = compiled_types()
    blocks = [m for m in model.modules() if isinstance(m, types)]
    if any(isinstance(m, types[1]) for m in blocks):
        # DEQ's implicit backward runs vjps through its one recorded evaluation many times
        # (retain_graph=True), which a compiled backward that donates its buffers refuses
        import torch._functorch.config

        torch._functorch.config.donated_buffer = False
    for block in blocks:
        block.compile(fullgraph=True, dynamic=True)
    return len(blocks)


class CompileClock:
    """Seconds spent compiling while the clock is installed (``with CompileClock() as clock``).

    Counts what ``torch._dynamo``'s compile callbacks bracket: tracing a new frame and
    compiling its graph, and a backward graph compiled lazily at its first use; nested
    compilations are counted once. ``seconds`` is 0.0 when nothing was compiled."""

    def __init__(self) -> None:
        self.seconds = 0.0
        self.compilations = 0
        self._started: float | None = None

    def _start(self, _args: Any) -> None:
        self._started = time.perf_counter()

    def _end(self, _args: Any) -> None:
        if self._started is not None:
            self.seconds += time.perf_counter() - self._started
            self.compilations += 1
            self._started = None

    def __enter__(self) -> CompileClock:
        handler = torch._dynamo.callback_handler
        handler.register_start_callback(self._start)
        handler.register_end_callback(self._end)
        return self

    def __exit__(self, *exc: object) -> None:
        handler = torch._dynamo.callback_handler
        handler.remove_start_callback(self._start)
        handler.remove_end_callback(self._end)


def eager_if(condition: bool) -> contextlib.AbstractContextManager[Any]:
    """Compiled blocks run eagerly inside the block when ``condition`` holds: how a step runs
    under a meter that watches ops through a ``TorchDispatchMode`` (the CPU meter, a CUDA
    memory cap), under which torch.compile refuses to run compiled code."""
    if condition:
        return torch.compiler.set_stance("force_eager")
    return contextlib.nullcontext()
