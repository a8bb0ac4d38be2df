"""The equilibrium engine and DEQ-GNN: implicit gradients equal autograd through a converged
unrolled iteration (float64), statistics are recorded, memory is flat in iterations."""

from __future__ import annotations

import pytest
import torch
from torch import Tensor, nn

from bench.errors import ConfigError
from bench.measure.meters import PeakMemory
from bench.models import ModelConfig
from bench.models.deq import DEQGNN
from bench.nn.deq import DEQFixedPoint, solve_fixed_point

# Solver tolerance for the gradient checks. The forward and adjoint solves stop at a relative
# residual <= TOL; for a map with Lipschitz constant L < 1 the distance to the true fixed point
# is <= TOL * |z| / (1 - L), and the gradient inherits errors of that order from both solves.
# With L about 0.5-0.6 (measured: ~17 iterations per 1e-4), errors stay below ~1e-10, so
# comparing at rtol 1e-7 leaves three orders of margin while still catching any wrong term
# (a missing adjoint solve, i.e. the 1-step gradient, is off by tens of percent).
TOL = 1e-11
RTOL = 1e-7


def _deqgnn(in_channels: int, edge_dim: int | None, out_channels: int, channels: int,
            solver: str = "anderson", tol: float = 1e-4, max_iter: int = 30,
            grad: str = "implicit", **settings: object) -> DEQGNN:  # fmt: skip
    """A DEQ-GNN from its sizes and solver settings, through one ModelConfig."""
    config = ModelConfig(arch="deq", layers=max_iter, channels=channels, deq_solver=solver,
                         deq_tol=tol, deq_max_iter=max_iter, deq_grad=grad, **settings)  # fmt: skip
    return DEQGNN(config, in_channels, edge_dim, out_channels)


class TanhCell(nn.Module):
    """f(z, x) = tanh(z W + x U + b) with ||W||_2 = 0.5: a contraction, so z* is unique."""

    def __init__(self, d: int) -> None:
        super().__init__()
        w = torch.randn(d, d, dtype=torch.float64)
        self.w = nn.Parameter(0.5 * w / torch.linalg.matrix_norm(w, 2))
        self.u = nn.Parameter(torch.randn(d, d, dtype=torch.float64) / d**0.5)
        self.b = nn.Parameter(torch.randn(d, dtype=torch.float64))

    def forward(self, z: Tensor, x: Tensor) -> Tensor:
        return torch.tanh(z @ self.w + x @ self.u + self.b)


def _grads(loss: Tensor, tensors: list[Tensor]) -> list[Tensor]:
    return list(torch.autograd.grad(loss, tensors))


@pytest.mark.parametrize("solver", ["fixed_point", "anderson", "broyden"])
def test_implicit_gradient_matches_unrolled_autograd(solver: str) -> None:
    torch.manual_seed(0)
    cell = TanhCell(6)
    x = torch.randn(20, 6, dtype=torch.float64, requires_grad=True)
    target = torch.randn(20, 6, dtype=torch.float64)
    inputs = [x, *cell.parameters()]

    z = torch.zeros_like(x)
    for _ in range(120):  # 0.5**120: converged to machine precision
        z = cell(z, x)
    reference = _grads(((z - target) ** 2).sum(), inputs)

    engine = DEQFixedPoint(solver=solver, tol=TOL, max_iter=200)
    z = engine(lambda z: cell(z, x), torch.zeros_like(x))
    got = _grads(((z - target) ** 2).sum(), inputs)
    for g, r in zip(got, reference, strict=True):
        torch.testing.assert_close(g, r, rtol=RTOL, atol=1e-9)
    stats = engine.stats
    assert stats["fwd_converged"] == 1.0 and stats["fwd_rel_residual"] <= TOL
    assert 1 <= stats["fwd_iters"] < 200
    assert stats["bwd_converged"] == 1.0 and stats["bwd_rel_residual"] <= TOL
    assert 1 <= stats["bwd_iters"] < 200


def test_phantom_gradient_is_an_approximation_and_says_so() -> None:
    torch.manual_seed(1)
    cell = TanhCell(5)
    x = torch.randn(10, 5, dtype=torch.float64, requires_grad=True)
    implicit = DEQFixedPoint(solver="anderson", tol=TOL, max_iter=200)
    phantom = DEQFixedPoint(solver="anderson", tol=TOL, max_iter=200, grad="phantom")
    (g_imp,) = torch.autograd.grad(implicit(lambda z: cell(z, x), torch.zeros_like(x)).sum(), x)
    (g_ph,) = torch.autograd.grad(phantom(lambda z: cell(z, x), torch.zeros_like(x)).sum(), x)
    assert phantom.stats["bwd_iters"] == 1.0
    assert torch.isnan(torch.tensor(phantom.stats["bwd_rel_residual"]))
    assert not torch.allclose(g_imp, g_ph, rtol=1e-3)  # it is not the exact gradient


def test_deqgnn_gradients_match_unrolled_network_with_dropout() -> None:
    torch.manual_seed(0)
    n, e = 30, 120
    x = torch.randn(n, 5, dtype=torch.float64, requires_grad=True)
    edge_index = torch.randint(0, n, (2, e))
    edge_attr = torch.randn(e, 3, dtype=torch.float64)
    # 32 channels: at 8-16 channels this block is not a contraction on such a tiny graph and
    # plain iteration cycles (Anderson stalls near 5e-4), so there is no reference to compare to
    model = _deqgnn(5, 3, 4, 32, dropout=0.2, solver="anderson", tol=TOL, max_iter=300).double()
    unrolled_residual: list[float] = []

    def unrolled_body(h: Tensor, edge_index: Tensor, edge_attr: Tensor | None) -> Tensor:
        mask = torch.nn.functional.dropout(torch.ones_like(h), model.dropout, training=True)
        z = torch.zeros_like(h)
        for _ in range(150):
            z, previous = model.block(z, h, edge_index, edge_attr, mask), z
        unrolled_residual.append(float((z - previous).detach().norm() / z.detach().norm()))
        return z

    inputs = [x, *model.parameters()]
    torch.manual_seed(7)
    out = model(x, edge_index, edge_attr)
    got = _grads(out.pow(2).sum(), inputs)
    stats = dict(model.solver_stats or {})
    torch.manual_seed(7)  # the same dropout masks
    model.body = unrolled_body  # type: ignore[method-assign]
    reference = _grads(model(x, edge_index, edge_attr).pow(2).sum(), inputs)
    for g, r in zip(got, reference, strict=True):
        torch.testing.assert_close(g, r, rtol=RTOL, atol=1e-9)
    assert unrolled_residual[0] < 1e-13  # the reference really is at the fixed point
    assert stats["fwd_rel_residual"] <= TOL and stats["bwd_rel_residual"] <= TOL
    assert stats["fwd_iters"] < 300 and stats["bwd_iters"] < 300


def test_stats_show_non_convergence_and_eval_only_solves() -> None:
    torch.manual_seed(0)
    model = _deqgnn(4, None, 2, 8, solver="fixed_point", tol=1e-12, max_iter=3)
    x, edge_index = torch.randn(20, 4), torch.randint(0, 20, (2, 60))
    model(x, edge_index).sum().backward()
    stats = model.solver_stats
    assert stats is not None
    assert stats["fwd_iters"] == 3 and stats["fwd_converged"] == 0.0
    assert stats["fwd_rel_residual"] > 1e-12
    assert stats["bwd_iters"] == 3 and stats["bwd_converged"] == 0.0
    model.eval()
    with torch.no_grad():
        out = model(x, edge_index)
    assert out.shape == (20, 2) and "bwd_iters" not in model.solver_stats


def test_anderson_falls_back_to_broyden_on_singular_system(monkeypatch: pytest.MonkeyPatch) -> None:
    """A failed least-squares solve (``solve_ex``'s info, read at the next check) makes the
    solve start again with Broyden."""

    def singular(a: Tensor, b: Tensor) -> tuple[Tensor, Tensor]:
        return torch.full_like(b, float("nan")), torch.ones((), dtype=torch.int32)

    monkeypatch.setattr(torch.linalg, "solve_ex", singular)
    z, info = solve_fixed_point(
        lambda z: 0.5 * z + 1.0, torch.zeros(3, 2, dtype=torch.float64), tol=1e-10
    )
    assert info["fallback"] == 1.0 and info["rel_residual"] <= 1e-10
    torch.testing.assert_close(z, torch.full((3, 2), 2.0, dtype=torch.float64))


def test_solver_is_one_system_per_graph() -> None:
    # rows converge at very different speeds; a per-row (batched) stop would report the
    # first row's iterations; one system keeps iterating until the whole state converges
    rates = torch.tensor([[0.01], [0.9]], dtype=torch.float64)
    z, info = solve_fixed_point(lambda z: rates * z + 1.0, torch.zeros(2, 3, dtype=torch.float64),
                                solver="fixed_point", tol=1e-8, max_iter=500)  # fmt: skip
    torch.testing.assert_close(z, (1 / (1 - rates)).expand(2, 3), rtol=1e-6, atol=0)
    assert info["iters"] > 100


def test_memory_flat_in_iterations() -> None:
    torch.manual_seed(0)
    n, e = 400, 4000
    x, edge_index, edge_attr = torch.randn(n, 8), torch.randint(0, n, (2, e)), torch.randn(e, 8)

    def step_peak(iters: int) -> tuple[int, dict[str, float]]:
        torch.manual_seed(0)
        model = _deqgnn(8, 8, 4, 32, dropout=0.1, solver="anderson", tol=1e-30, max_iter=iters)
        with PeakMemory("cpu") as meter:
            model(x, edge_index, edge_attr).sum().backward()
        return meter.peak_above_baseline, dict(model.solver_stats or {})

    peak5, stats5 = step_peak(5)
    peak50, stats50 = step_peak(50)
    assert stats5["fwd_iters"] == 5 and stats50["fwd_iters"] == 50  # it really iterated
    assert stats50["bwd_iters"] == 50
    assert peak50 <= 1.10 * peak5, (peak5, peak50)


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"tol": 0.0}, "tol"),
        ({"tol": -1e-3}, "tol"),
        ({"solver": "newton"}, "solver"),
        ({"max_iter": 0}, "max_iter"),
        ({"grad": "exact"}, "grad"),
    ],
)
def test_bad_settings_name_the_parameter(kwargs: dict[str, object], field: str) -> None:
    """The model's settings are checked when its ModelConfig is made (naming the setting, the
    CLI's flag); the engine, used alone, raises ValueError naming its own argument."""
    with pytest.raises(ConfigError) as info:
        ModelConfig(arch="deq", **{f"deq_{k}": v for k, v in kwargs.items()})  # type: ignore[arg-type]
    assert info.value.field == f"deq_{field}"
    with pytest.raises(ValueError, match=f"^{field}:"):
        DEQFixedPoint(**kwargs)  # type: ignore[arg-type]


# --- defects found by review (issue 13): each test failed before its fix ---------------------


def _small_deq_graph() -> tuple[Tensor, Tensor, Tensor]:
    n, e = 60, 300
    return torch.randn(n, 5), torch.randint(0, n, (2, e)), torch.randn(e, 3)


def test_solver_runs_in_float32_under_bf16_autocast() -> None:
    """The function runs under autocast; the solver's arithmetic, iterates and convergence test
    stay float32. Before the fix the iterates became bf16 (stalling at a residual of 5e-3, the
    bf16 resolution) and the backward solve crashed (``lu_cpu`` has no bf16 kernel)."""
    torch.manual_seed(0)
    x, edge_index, edge_attr = _small_deq_graph()
    # f itself is only bf16-accurate (its output is rounded to bf16), so no iterate gets
    # closer than about one bf16 step (2**-8 = 3.9e-3) to a fixed point: tolerance 1e-2
    model = _deqgnn(5, 3, 4, 32, solver="anderson", tol=1e-2, max_iter=50)
    seen: list[torch.dtype] = []
    model.block.register_forward_pre_hook(lambda m, args: seen.append(args[0].dtype))
    with torch.autocast("cpu", dtype=torch.bfloat16):
        h = model.node_encoder(x)
        assert h.dtype == torch.bfloat16  # what the engine is handed under autocast
        z = model.deq(lambda z: model.block(z, h, edge_index, model.edge_encoder(edge_attr)),
                      torch.zeros(h.shape))  # fmt: skip
    assert z.dtype == torch.float32 and set(seen) == {torch.float32}
    assert model.deq.stats["fwd_converged"] == 1.0, model.deq.stats
    z.square().sum().backward()
    assert model.deq.stats["bwd_converged"] == 1.0, model.deq.stats
    grads = [p.grad for p in model.block.parameters()]
    assert all(g is not None and torch.isfinite(g).all() for g in grads)


def test_adjoint_solve_ignores_the_autocast_state_at_backward() -> None:
    """The adjoint solve (vjps and solver arithmetic) of a float32 forward runs in float32 even
    when backward() is called inside a bf16 autocast block. Before the fix it ran in bf16:
    the adjoint stalled at a residual of 3e-3 and the gradient was off.

    Checked on the gradient of an input that reaches f through elementwise ops only: autograd's
    own kernels after the adjoint (a matmul's backward, say) follow the ambient autocast state
    like in any PyTorch backward, which is why backward under autocast is not recommended."""
    torch.manual_seed(0)
    d = 16
    w = torch.randn(d, d) * 0.6 / d**0.5
    x = torch.randn(40, d, requires_grad=True)
    engine = DEQFixedPoint(solver="anderson", tol=1e-6, max_iter=60)
    z = engine(lambda z: torch.tanh(z @ w + x), torch.zeros(40, d))
    loss = (z * torch.randn(40, d)).sum()
    (plain,) = torch.autograd.grad(loss, x, retain_graph=True)
    plain_stats = dict(engine.stats)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        (inside,) = torch.autograd.grad(loss, x)
    assert plain_stats["bwd_converged"] == 1.0
    assert engine.stats == plain_stats
    assert torch.equal(plain, inside)


@pytest.mark.parametrize("grad", ["implicit", "phantom"])
def test_batchnorm_running_stats_updated_once_per_step(grad: str) -> None:
    """Solver iterations leave running statistics alone; the one recorded evaluation at the
    fixed point updates them (before the fix: 21 updates for 20 iterations)."""
    torch.manual_seed(0)
    x, edge_index, edge_attr = _small_deq_graph()
    model = _deqgnn(5, 3, 4, 16, norm="batch", solver="fixed_point", tol=1e-30, max_iter=20,
                   grad=grad)  # fmt: skip
    model.deq.phantom_steps = 3
    bns = [m for m in model.block.modules() if isinstance(m, nn.BatchNorm1d)]
    assert bns
    updating: dict[nn.Module, list[Tensor]] = {bn: [] for bn in bns}

    def record(m: nn.Module, args: tuple) -> None:
        if m.momentum:  # an evaluation that updates the running statistics
            updating[m].append(args[0].detach())

    for bn in bns:
        bn.register_forward_pre_hook(record)
    model(x, edge_index, edge_attr).sum().backward()
    assert model.solver_stats["fwd_iters"] == 20
    for bn in bns:
        assert int(bn.num_batches_tracked) == 1 and len(updating[bn]) == 1
        # one update from zero: running_mean = momentum * (mean of the batch it was made on)
        torch.testing.assert_close(bn.running_mean, 0.1 * updating[bn][0].mean(0))


@pytest.mark.parametrize("method", ["fixed_point", "anderson", "broyden"])
def test_solvers_follow_torchdeqs_algorithms(method: str) -> None:
    """Checking every evaluation, our solvers take torchdeq's steps (the same algorithm, our
    code): the same fixed point, in the same number of evaluations (Broyden: torchdeq does not
    count its first evaluation); checking every 4 costs at most 3 more."""
    from torchdeq.solver import anderson_solver, broyden_solver, fixed_point_iter

    from bench.nn.solvers import solve

    torch.manual_seed(0)
    cell = TanhCell(6)
    x = torch.randn(40, 6, dtype=torch.float64)

    def f(z: Tensor) -> Tensor:
        return cell(z, x)

    reference = {"fixed_point": fixed_point_iter, "anderson": anderson_solver,
                 "broyden": broyden_solver}[method]  # fmt: skip
    options = (
        {"m": 6} if method == "anderson" else {"LBFGS_thres": 6} if method == "broyden" else {}
    )
    with torch.no_grad():
        z_ref, _, info = reference(lambda z: f(z.reshape(40, 6)).reshape(1, -1),
                                   torch.zeros(1, 240, dtype=torch.float64), max_iter=100,
                                   tol=1e-10, stop_mode="rel", **options)  # fmt: skip
        ours = solve(method, f, torch.zeros(40, 6, dtype=torch.float64), 1e-10, 100, 1)
        every4 = solve(method, f, torch.zeros(40, 6, dtype=torch.float64), 1e-10, 100, 4)
    torch.testing.assert_close(ours.z, z_ref.reshape(40, 6), rtol=0, atol=1e-9)
    steps = int(info["nstep"].max())
    assert ours.evaluations == steps + (1 if method == "broyden" else 0)
    assert ours.evaluations <= every4.evaluations < ours.evaluations + 4
    assert float(every4.rel_residual) <= float(ours.rel_residual) <= 1e-10
