"""Equilibrium engine: find z* = f(z*) and differentiate through it in memory that does not
grow with solver iterations. Model-agnostic: ``f`` is any function of one tensor (closing over
its inputs and parameters), so this file knows nothing about graphs.

Forward: the solver (fixed-point iteration, Anderson acceleration or Broyden,
:mod:`bench.nn.solvers`) runs under ``no_grad``; then ONE evaluation ``f(z*)`` is recorded with
autograd. That evaluation's graph is all the memory the backward needs.

Backward (``grad="implicit"``): for a loss L, dL/dtheta = g^T df/dtheta at z*, where g solves
the adjoint fixed point g = J_f(z*)^T g + dL/dz*. A hook on the output replaces the incoming
gradient by g, found with the same solver family using vector-Jacobian products through the
recorded evaluation; autograd then carries g into the parameters and inputs.
``grad="phantom"`` instead backpropagates through ``phantom_steps`` unrolled applications of
``f`` from z* (the cheap "phantom"/Jacobian-free gradient; it is an approximation).

Solver choices, and why:
* every state is flattened to ONE system [N*d], so the stopping rule is the whole state's
  relative residual ||f(z) - z|| / ||f(z)|| (a per-row stop would treat a node matrix as N
  problems);
* convergence is read back to the host every ``check_every`` evaluations, not every one (the
  solvers' module doc): a solve costs ``ceil(iterations / check_every)`` host reads plus one
  for its statistics, and runs up to ``check_every - 1`` evaluations past convergence;
* Anderson's least-squares system can be singular (locuslab/deq #20): when its solve fails
  (seen at the next check) the solve is redone with Broyden and ``*_fallback`` is set;
* Broyden keeps a low-rank inverse-Jacobian of rank ``history``, not one update per iteration,
  so its memory is flat in the iteration cap too.

Every solve records its iterations (evaluations of ``f`` or of the vjp) and final relative
residual; non-convergence shows as a residual above ``tol`` and ``*_converged = 0``.

Mixed precision (``torch.autocast``): ``f`` runs under the caller's autocast state; the
solver's iterates stay float32 (a low-precision ``z0`` is upcast, every output of ``f`` cast
back) and its own arithmetic -- Anderson's least squares, Broyden's updates, the stopping test --
runs with autocast off, so convergence is measured in float32 (a bf16 ``f`` is itself only
accurate to about one bf16 step, 2**-8, which bounds the residual it can reach). The adjoint
solve runs its vjps and arithmetic with autocast off whatever state is active at
``backward()``; the vjps go through the recorded evaluation, whose ops keep the dtypes autocast
chose in the forward.

Normalisation: the solver's iterations run inside
:func:`bench.nn.state.frozen_running_stats`; only the recorded evaluation at z* (the first
phantom step) updates running statistics: once per training forward, as in the reversible
engine, from the fixed point's statistics.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor, nn

from bench.nn.solvers import CHECK_EVERY, METHODS, solve
from bench.nn.state import (
    AutocastState,
    autocast_off,
    frozen_running_stats,
    upcast_under_autocast,
)

SOLVERS = tuple(METHODS)
GRADS = ("implicit", "phantom")


def _check_settings(solver: str, tol: float, max_iter: int, grad: str) -> None:
    """Raise ValueError naming the argument if any is invalid."""
    if solver not in SOLVERS:
        raise ValueError(f"solver: unknown value {solver!r}; choose one of {', '.join(SOLVERS)}")
    if (
        isinstance(tol, bool)
        or not isinstance(tol, (int, float))
        or not math.isfinite(tol)
        or tol <= 0
    ):
        raise ValueError(f"tol: must be a positive finite number, got {tol!r}")
    if isinstance(max_iter, bool) or not isinstance(max_iter, int) or max_iter < 1:
        raise ValueError(f"max_iter: must be a positive integer, got {max_iter!r}")
    if grad not in GRADS:
        raise ValueError(f"grad: unknown value {grad!r}; choose one of {', '.join(GRADS)}")


def solve_fixed_point(
    f: Callable[[Tensor], Tensor],
    z0: Tensor,
    solver: str = "anderson",
    tol: float = 1e-4,
    max_iter: int = 30,
    history: int = 6,
    check_every: int = CHECK_EVERY,
) -> tuple[Tensor, dict[str, float]]:
    """Solve z = f(z) from ``z0`` as ONE system (whole tensor), without recording autograd.

    Returns the lowest-residual iterate and ``{"iters", "rel_residual", "fallback"}``; ``iters``
    counts evaluations of ``f``. The host reads the device every ``check_every`` evaluations
    and once at the end (:mod:`bench.nn.solvers`).

    Precision: ``f`` runs under the autocast state of the caller; the solver's own arithmetic
    (mixing, least squares, the stopping test) runs with autocast off, on iterates kept in
    ``z0``'s dtype, or float32 if autocast is on and ``z0`` is lower precision (each output of
    ``f`` is cast to it)."""
    z0 = upcast_under_autocast(z0.detach())
    dtype = z0.dtype
    caller = AutocastState.capture(z0.device)

    def g(z: Tensor) -> Tensor:
        with caller.restored():
            out = f(z)
        return out.to(dtype)

    with torch.no_grad(), autocast_off(z0.device):
        found = solve(solver, g, z0, tol, max_iter, check_every, history)
        # one read for both: the residual (>= 0, or NaN), -1 where Anderson's solve failed
        rel = float(torch.where(found.failed, -1.0, found.rel_residual))
        fallback = 0.0
        if rel < 0:
            fallback = 1.0
            found = solve("broyden", g, z0, tol, max_iter, check_every, history)
            rel = float(found.rel_residual)
    return found.z, {"iters": float(found.evaluations), "rel_residual": rel, "fallback": fallback}


class DEQFixedPoint(nn.Module):
    """z* = f(z*) with implicit (or phantom) differentiation; statistics in ``self.stats``.

    Usage: ``z = deq(lambda z: layer(z, x), z0)``; ``f`` must be a fixed function during the
    call (draw dropout masks once, outside ``f``). After forward ``stats`` holds ``fwd_iters``,
    ``fwd_rel_residual``, ``fwd_converged``, ``fwd_fallback``; after backward also ``bwd_*``.
    In eval mode or under ``no_grad`` it only solves (the result carries no gradient).
    """

    def __init__(
        self,
        solver: str = "anderson",
        tol: float = 1e-4,
        max_iter: int = 30,
        grad: str = "implicit",
        bwd_tol: float | None = None,
        bwd_max_iter: int | None = None,
        phantom_steps: int = 1,
        history: int = 6,
        check_every: int = CHECK_EVERY,
    ) -> None:
        super().__init__()
        _check_settings(solver, tol, max_iter, grad)
        self.solver, self.tol, self.max_iter, self.grad = solver, float(tol), max_iter, grad
        self.bwd_tol = float(bwd_tol) if bwd_tol is not None else self.tol
        self.bwd_max_iter = bwd_max_iter if bwd_max_iter is not None else max_iter
        _check_settings(solver, self.bwd_tol, self.bwd_max_iter, grad)
        if phantom_steps < 1:
            raise ValueError(f"phantom_steps: must be a positive integer, got {phantom_steps!r}")
        self.phantom_steps = phantom_steps
        self.history = history
        if isinstance(check_every, bool) or not isinstance(check_every, int) or check_every < 1:
            raise ValueError(f"check_every: must be a positive integer, got {check_every!r}")
        self.check_every = check_every
        self.stats: dict[str, float] = {}

    def extra_repr(self) -> str:
        return f"solver={self.solver}, tol={self.tol:g}, max_iter={self.max_iter}, grad={self.grad}"

    def _solve(
        self, f: Callable[[Tensor], Tensor], z0: Tensor, tol: float, max_iter: int
    ) -> tuple[Tensor, dict[str, float]]:
        return solve_fixed_point(f, z0, self.solver, tol, max_iter, self.history, self.check_every)

    def forward(
        self,
        f: Callable[[Tensor], Tensor],
        z0: Tensor,
        stats_module: nn.Module | None = None,
    ) -> Tensor:
        """Solve z* = f(z*) from ``z0``; in training mode with grad, differentiable.

        ``stats_module``: the module whose norm layers ``f`` uses (defaults to ``f`` itself if
        it is a module). Its running statistics are not updated by the solver's iterations, only
        by the one recorded evaluation at z* (the first phantom step): once per forward, as in
        the reversible engine, and from the statistics of the fixed point, not of the iterates.
        """
        if stats_module is None and isinstance(f, nn.Module):
            stats_module = f
        with frozen_running_stats(stats_module):
            z_star, info = self._solve(f, z0, self.tol, self.max_iter)
        stats = self.stats = {
            "fwd_iters": info["iters"],
            "fwd_rel_residual": info["rel_residual"],
            "fwd_converged": float(info["rel_residual"] <= self.tol),
            "fwd_fallback": info["fallback"],
        }
        if not (torch.is_grad_enabled() and self.training):  # evaluation: just solve
            return z_star
        if self.grad == "phantom":
            z = z_star.detach()
            for step in range(self.phantom_steps):
                with frozen_running_stats(stats_module if step else None):
                    z = f(z).to(z_star.dtype)
            stats["bwd_iters"] = float(self.phantom_steps)  # unrolled steps; no adjoint solve
            stats["bwd_rel_residual"] = float("nan")
            return z
        z_in = z_star.detach().requires_grad_()
        # the one recorded evaluation (its graph is the backward's memory), under the caller's
        # autocast state; its output in the iterates' dtype like every solver evaluation
        z_out = f(z_in).to(z_in.dtype)
        return _ImplicitAdjoint.apply(z_out, z_in, self)


class _ImplicitAdjoint(torch.autograd.Function):
    """Identity on z_out = f(z_in) in forward; in backward replaces dL/dz* by the solution g of
    g = J^T g + dL/dz*, using vjps through z_out's recorded graph w.r.t. z_in only. Autograd
    then carries g on through that same graph into the parameters and inputs of f.

    A Function rather than a tensor hook: a hook closing over z_out would form a reference
    cycle through autograd (leaking the graph when no backward follows); ctx does not."""

    @staticmethod
    def forward(ctx: Any, z_out: Tensor, z_in: Tensor, owner: DEQFixedPoint) -> Tensor:
        ctx.save_for_backward(z_out, z_in)
        ctx.owner = owner
        ctx.stats = owner.stats  # this forward's statistics, even if another forward follows
        return z_out.view_as(z_out)

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> tuple[Tensor, None, None]:
        z_out, z_in = ctx.saved_tensors
        owner: DEQFixedPoint = ctx.owner

        def vjp_step(g: Tensor) -> Tensor:
            with torch.enable_grad():
                (jtg,) = torch.autograd.grad(z_out, z_in, g, retain_graph=True)
            return jtg + grad

        # vjps through the recorded graph, and the solver's arithmetic in the iterates' dtype,
        # whatever autocast state is active when backward() runs
        with autocast_off(grad.device):
            g, info = owner._solve(
                vjp_step, torch.zeros_like(grad), owner.bwd_tol, owner.bwd_max_iter
            )
        ctx.stats.update(
            bwd_iters=info["iters"],
            bwd_rel_residual=info["rel_residual"],
            bwd_converged=float(info["rel_residual"] <= owner.bwd_tol),
            bwd_fallback=info["fallback"],
        )
        return g, None, None
