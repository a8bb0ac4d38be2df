"""Fixed-point solvers for z = f(z) that read nothing back to the host between checks.

Three methods, each on ONE system (the whole state flattened to a vector of D numbers):

* ``fixed_point``: z_{k+1} = f(z_k);
* ``anderson`` (Anderson acceleration, ``history`` = m past pairs): with G = F - X the last n
  residuals (rows), the weights alpha minimise ||alpha G|| subject to sum(alpha) = 1, found
  from the bordered system [[0, 1^T], [1, G G^T + lam I]] [mu; alpha] = [1; 0]; the next
  iterate is alpha F. The first two steps are plain iterations;
* ``broyden`` (good Broyden on g(z) = f(z) - z, no line search): z += -J^-1 g with the inverse
  Jacobian kept as -I + U V^T of rank ``history`` (the oldest pair is overwritten, so memory
  is flat in the iteration cap).

The residual of an iterate is ||f(z) - z|| / (||f(z)|| + 1e-9) (the whole state's relative
residual); the iterate with the lowest residual so far is kept and returned.

**No host synchronisation per iteration.** Stopping early needs the host to know whether the
residual is below ``tol``; reading a GPU tensor blocks the host until the device has drained
its queue, after which the device idles while the host launches the next kernels: once per
iteration, that serialises host and device time. Here the lowest residual, the kept iterate
and Anderson's failure flag (``torch.linalg.solve_ex``: no error check that would read the
device) stay on the device, and the host reads one two-element tensor every ``check_every``
evaluations. A solve therefore runs up to ``check_every - 1`` evaluations past the one that
converged (their iterates are better, and the lowest-residual one is returned); it stops at
``max_iter`` evaluations whatever ``check_every`` is. What that costs and why 4 is near the
best choice: docs/engines.md ("No host synchronisation inside a step").

The algorithms follow the references torchdeq implements (locuslab/deq; Anderson 1965;
Broyden 1965); torchdeq's own solvers test the stopping rule with a read on every iteration
(and Broyden's NaN clean-up with masked writes, a further read each), which is why they are
not used here. Example::

    import torch
    from bench.nn.solvers import solve

    f = lambda z: 0.5 * torch.tanh(z) + 1.0
    out = solve("anderson", f, torch.zeros(100, 8), tol=1e-6, max_iter=50)
    out.z, out.evaluations, float(out.rel_residual)
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor

__all__ = ["CHECK_EVERY", "METHODS", "Solution", "solve"]

#: evaluations between two reads of the convergence flag (module doc; the cost: docs/engines.md)
CHECK_EVERY = 4
_EPS = 1e-9  # in the residual's denominator (the references' choice)


@dataclass
class Solution:
    """A solve's result: the lowest-residual iterate (shape of ``z0``), how many evaluations of
    ``f`` it took, its relative residual and whether Anderson's least squares failed (0-dim
    tensors on the device: reading them is the caller's one synchronisation)."""

    z: Tensor
    evaluations: int
    rel_residual: Tensor
    failed: Tensor


class _Track:
    """Evaluations, the lowest-residual iterate and the stop rule of one solve (module doc)."""

    def __init__(self, z0: Tensor, tol: float, max_iter: int, check_every: int) -> None:
        self.best = z0
        self.best_res = torch.full((), float("inf"), dtype=z0.dtype, device=z0.device)
        self.failed = torch.zeros((), dtype=torch.bool, device=z0.device)
        self.tol, self.max_iter, self.check_every = tol, max_iter, max(1, check_every)
        self.evaluations = 0

    def offer(self, z: Tensor, fz: Tensor, gz: Tensor | None = None) -> None:
        """``z`` is a candidate whose f-residual is ``fz - z`` (``gz`` if given, with
        ``fz = f(z)``)."""
        gz = fz - z if gz is None else gz
        res = gz.norm() / (fz.norm() + _EPS)
        better = res < self.best_res  # NaN never is
        self.best = torch.where(better, z, self.best)
        self.best_res = torch.where(better, res, self.best_res)

    def stop(self) -> bool:
        if self.evaluations >= self.max_iter:
            return True
        if self.evaluations % self.check_every:
            return False
        return bool(((self.best_res < self.tol) | self.failed).item())  # the one read

    def solution(self, shape: torch.Size) -> Solution:
        return Solution(self.best.reshape(shape), self.evaluations, self.best_res, self.failed)


Fn = Callable[[Tensor], Tensor]


def _counted(f: Fn, track: _Track, shape: torch.Size) -> Fn:
    def g(z: Tensor) -> Tensor:
        track.evaluations += 1
        return f(z.reshape(shape)).reshape(-1)

    return g


def fixed_point(f: Fn, z0: Tensor, tol: float, max_iter: int, check_every: int,
                history: int = 6) -> Solution:  # fmt: skip
    """Plain iteration; the candidate of step k is f(z_k). ``history`` is unused."""
    track = _Track(z0.reshape(-1), tol, max_iter, check_every)
    g = _counted(f, track, z0.shape)
    z = z0.reshape(-1)
    while True:
        fz = g(z)
        track.offer(fz, fz, fz - z)
        if track.stop():
            return track.solution(z0.shape)
        z = fz


def anderson(f: Fn, z0: Tensor, tol: float, max_iter: int, check_every: int,
             history: int = 6, lam: float = 1e-4) -> Solution:  # fmt: skip
    """Anderson acceleration with ``history`` past pairs (module doc); the candidate of a step
    is f of its mixed iterate. Needs ``max_iter`` > 2 to mix at all."""
    track = _Track(z0.reshape(-1), tol, max_iter, check_every)
    g = _counted(f, track, z0.shape)
    m, dim = history, z0.numel()
    X = z0.new_zeros(m, dim)  # noqa: N806 - the references' names
    F = z0.new_zeros(m, dim)  # noqa: N806
    X[0] = z0.reshape(-1)
    F[0] = g(X[0])
    track.offer(F[0], F[0], F[0] - X[0])
    if track.stop():
        return track.solution(z0.shape)
    X[1] = F[0]
    F[1] = g(X[1])
    track.offer(F[1], F[1], F[1] - X[1])
    # bordered system [[0, 1^T], [1, G G^T + lam I]]: only its lower-right block changes
    H = z0.new_zeros(m + 1, m + 1)  # noqa: N806
    H[0, 1:] = H[1:, 0] = 1
    rhs = z0.new_zeros(m + 1, 1)
    rhs[0] = 1
    k = 2
    while not track.stop():
        n = min(k, m)
        G = F[:n] - X[:n]  # noqa: N806
        H[1 : n + 1, 1 : n + 1] = G @ G.T + lam * torch.eye(n, dtype=z0.dtype, device=z0.device)
        solved, info = torch.linalg.solve_ex(H[: n + 1, : n + 1], rhs[: n + 1])
        alpha = solved[1 : n + 1, 0]
        track.failed = track.failed | (info != 0) | ~torch.isfinite(alpha).all()
        slot = k % m
        X[slot] = alpha @ F[:n]
        F[slot] = g(X[slot])
        track.offer(F[slot], F[slot], F[slot] - X[slot])
        k += 1
    return track.solution(z0.shape)


def broyden(f: Fn, z0: Tensor, tol: float, max_iter: int, check_every: int,
            history: int = 6) -> Solution:  # fmt: skip
    """Good Broyden without line search, inverse Jacobian -I + U V^T of rank ``history``; the
    candidate of a step is its iterate z (residual f(z) - z)."""
    track = _Track(z0.reshape(-1), tol, max_iter, check_every)
    f_flat = _counted(f, track, z0.shape)
    z = z0.reshape(-1)
    fz = f_flat(z)
    gz = fz - z
    track.offer(z, fz, gz)
    U = z0.new_zeros(z.numel(), history)  # noqa: N806 - unused columns are 0: no effect
    VT = z0.new_zeros(history, z.numel())  # noqa: N806
    step = gz  # -J^-1 g with J^-1 = -I
    n_updates = 0
    while not track.stop():
        z = z + step
        fz = f_flat(z)
        gz_new = fz - z
        dz, dg = step, gz_new - gz
        gz = gz_new
        track.offer(z, fz, gz)
        # rank-one update of the inverse Jacobian so that J^-1 dg = dz
        vT = -dz + (dz @ U) @ VT  # noqa: N806 - dz^T J^-1
        u = (dz - (-dg + U @ (VT @ dg))) / (vT @ dg)
        slot = n_updates % history
        VT[slot] = torch.where(torch.isnan(vT), 0.0, vT)  # a zero update where it is undefined
        U[:, slot] = torch.where(torch.isnan(u), 0.0, u)
        n_updates += 1
        step = -(-gz + U @ (VT @ gz))
    return track.solution(z0.shape)


METHODS: dict[str, Callable[..., Solution]] = {
    "fixed_point": fixed_point,
    "anderson": anderson,
    "broyden": broyden,
}


def solve(method: str, f: Fn, z0: Tensor, tol: float, max_iter: int,
          check_every: int = CHECK_EVERY, history: int = 6) -> Solution:  # fmt: skip
    """Solve z = f(z) from ``z0`` with ``method`` (``METHODS``); see the module doc."""
    if method == "anderson" and max_iter <= 2:  # two plain steps come before any mixing
        method = "fixed_point"
    return METHODS[method](f, z0, tol, max_iter, check_every, history=history)
