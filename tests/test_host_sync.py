"""No host-device synchronisation inside a step: the ops whose result the host must read, or
whose output size depends on data, do not grow with depth, for every arch and conv (an op log
on CPU); on CUDA the step runs under ``torch.cuda.set_sync_debug_mode``. What is computed once
per batch instead of per layer (GAT's self-loops, GCN's normalisation) equals PyG's own path."""

from __future__ import annotations

import collections
import math
import warnings
from typing import Any

import pytest
import torch
import torch.nn.functional as F
from torch import Tensor
from torch.utils._python_dispatch import TorchDispatchMode
from torch_geometric.nn import GATConv, GCNConv

from bench.models import ModelConfig, build_model
from bench.models import archs as arch_registry
from bench.models.conv_specs import BUILT_IN as _BUILT_IN_CONVS
from bench.models.convs import make_conv, prepare_edges
from bench.nn.solvers import solve

aten = torch.ops.aten
#: ops that read a tensor back to the host (or must, to size their output): each one, on a GPU,
#: blocks the host until the device's queue is drained
HOST_READS = {
    aten._local_scalar_dense,  # .item(), int(t), float(t), bool(t)
    aten.nonzero,
    aten.argwhere,
    aten.bincount,
    aten._unique,
    aten._unique2,
    aten.unique_dim,
    aten.unique_consecutive,
    aten.masked_select,
    aten.equal,
    aten._linalg_check_errors,  # torch.linalg.solve's error check
}


class HostReadLog(TorchDispatchMode):
    """Counts the host-reading ops (``HOST_READS``, boolean-mask indexing, ``repeat_interleave``
    without ``output_size``) among every aten op run inside the block, by name.

    Blind spot: ``tolist()`` and ``numpy()`` of a CPU tensor read its memory without an aten
    op (on CUDA they copy to the host first, which the CUDA tests below catch); the engines
    read with ``.item()``, which the log sees."""

    def __init__(self) -> None:
        super().__init__()
        self.counts: collections.Counter[str] = collections.Counter()

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):  # type: ignore[no-untyped-def]
        kwargs = kwargs or {}
        packet = func.overloadpacket
        if packet in HOST_READS:
            self.counts[str(packet)] += 1
        elif packet is aten.repeat_interleave and kwargs.get("output_size") is None:
            self.counts["repeat_interleave (no output_size)"] += 1
        elif packet in (aten.index, aten.index_put, aten.index_put_) and any(
            isinstance(i, Tensor) and i.dtype in (torch.bool, torch.uint8) for i in args[1]
        ):
            self.counts[f"{packet} (boolean mask)"] += 1
        return func(*args, **kwargs)


def _batch(conv: str, n: int = 40, e: int = 200) -> tuple[Tensor, Tensor, Tensor | None, Tensor]:
    g = torch.Generator().manual_seed(0)
    x = torch.randn(n, 5, generator=g)
    edge_index = torch.randint(0, n, (2, e), generator=g)
    edge_attr = torch.randn(e, 8, generator=g) if conv in ("gen", "gat") else None
    y = (torch.rand(n, 3, generator=g) < 0.5).float()
    return x, edge_index, edge_attr, y


def _model(arch: str, conv: str, depth: int, **kw: Any) -> torch.nn.Module:
    """A small model of ``depth`` layers (DEQ: ``depth`` is the iteration cap, on a block whose
    weights are scaled down and norms off, a contraction for every conv, so both solves converge
    well before either cap)."""
    torch.manual_seed(0)
    deq = {"deq_max_iter": depth, "deq_tol": 1e-4, "norm": "none"} if arch == "deq" else {}
    model = build_model(
        arch, 5, 8 if conv in ("gen", "gat") else None, 3, 1 if arch == "deq" else depth, 8,
        dropout=0.1, conv=conv, heads=2 if conv == "gat" else None, **deq, **kw,
    )  # fmt: skip
    if arch == "deq":
        with torch.no_grad():
            for p in model.block.parameters():
                p.mul_(0.3)
    return model


def _host_reads(arch: str, conv: str, depth: int, **kw: Any) -> tuple[dict[str, int], Any]:
    model = _model(arch, conv, depth, **kw)
    x, edge_index, edge_attr, y = _batch(conv)
    with HostReadLog() as log:
        loss = F.binary_cross_entropy_with_logits(model(x, edge_index, edge_attr), y)
        loss.backward()
    return dict(log.counts), model.solver_stats


VARIANTS = [(arch, conv, {}) for arch in arch_registry.names() for conv in tuple(_BUILT_IN_CONVS)] + [
    (arch, "gen", kw) for arch in ("res", "rev") for kw in ({"aggr_impl": "pyg"}, {"aggr": "softmax"})
]  # fmt: skip


@pytest.mark.parametrize(("arch", "conv", "kw"), VARIANTS)
def test_host_reads_do_not_grow_with_depth(arch: str, conv: str, kw: dict[str, Any]) -> None:
    """The op log of one training forward + backward at two depths: the same host reads. What
    remains is per batch (GAT's and GCN's self-loops, the reversible stack's dropout seed, read
    from a CPU tensor) or, for DEQ, one read per ``check_every`` solver evaluations."""
    depths = (40, 80) if arch == "deq" else (2, 4)
    (shallow, stats_a), (deep, stats_b) = (_host_reads(arch, conv, d, **kw) for d in depths)
    assert shallow == deep, (shallow, deep)
    assert sum(shallow.values()) <= (4 if arch != "deq" else 20), shallow
    if arch == "deq":  # both caps left room: the same solves, the same reads
        assert stats_a == stats_b and stats_a["bwd_iters"] < depths[0], stats_a
        # one read per check (every 4 evaluations) and one for each solve's statistics
        reads = math.ceil(stats_a["fwd_iters"] / 4) + math.ceil(stats_a["bwd_iters"] / 4) + 2
        assert shallow["aten._local_scalar_dense"] == reads


@pytest.mark.parametrize("method", ["fixed_point", "anderson", "broyden"])
@pytest.mark.parametrize("check_every", [1, 4])
def test_a_solve_reads_the_host_once_per_check(method: str, check_every: int) -> None:
    """A solve reads one flag every ``check_every`` evaluations: the count of reads is the
    count of checks, and the solve runs at most ``check_every - 1`` evaluations past the first
    one that converged (found with ``check_every=1``)."""
    w = torch.randn(6, 6, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    w = 0.6 * w / torch.linalg.matrix_norm(w, 2)
    x = torch.randn(30, 6, dtype=torch.float64, generator=torch.Generator().manual_seed(1))

    def f(z: Tensor) -> Tensor:
        return torch.tanh(z @ w + x)

    z0 = torch.zeros(30, 6, dtype=torch.float64)
    first = solve(method, f, z0, tol=1e-9, max_iter=200, check_every=1).evaluations
    with HostReadLog() as log:
        found = solve(method, f, z0, tol=1e-9, max_iter=200, check_every=check_every)
    assert float(found.rel_residual) <= 1e-9
    assert first <= found.evaluations < first + check_every
    assert found.evaluations % check_every == 0
    assert dict(log.counts) == {"aten._local_scalar_dense": found.evaluations // check_every}


def test_prepared_edges_equal_pygs_own_self_loops_and_normalisation() -> None:
    """GAT with the batch's self-loops added once equals GATConv adding them itself (existing
    loops removed, fill 'mean'); GCN with the weights normalised once equals GCNConv's own."""
    n = 30
    x = torch.randn(n, 8, dtype=torch.float64)
    edge_index = torch.cat([torch.randint(0, n, (2, 120)), torch.tensor([[3, 5], [3, 5]])], 1)
    edge_attr = torch.randn(edge_index.shape[1], 8, dtype=torch.float64)
    ours = make_conv(ModelConfig(conv="gat", heads=2, channels=8), 8, 8, 8).double()
    theirs = GATConv(8, 4, heads=2, edge_dim=8).double()
    theirs.load_state_dict(ours.state_dict())
    prepared = prepare_edges("gat", edge_index, edge_attr, n, torch.float64)
    torch.testing.assert_close(ours(x, *prepared), theirs(x, edge_index, edge_attr))
    ours = make_conv(ModelConfig(conv="gcn", channels=8), 8, 8, None).double()
    theirs = GCNConv(8, 8).double()
    theirs.load_state_dict(ours.state_dict())
    prepared = prepare_edges("gcn", edge_index, None, n, torch.float64)
    torch.testing.assert_close(ours(x, *prepared), theirs(x, edge_index))
    with pytest.raises(ValueError, match="normalised edge weights"):
        ours(x, edge_index)  # a GCN block needs the prepared weights


# --- on a GPU -----------------------------------------------------------------------------------
def _cuda_step(model: torch.nn.Module, batch: tuple, optimizer: torch.optim.Optimizer) -> None:
    """forward, loss over every node, backward, clipping, Adam: a step with nothing read."""
    x, edge_index, edge_attr, y = batch
    optimizer.zero_grad(set_to_none=True)
    F.binary_cross_entropy_with_logits(model(x, edge_index, edge_attr), y).backward()
    torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
    optimizer.step()


def _cuda_syncs(arch: str, conv: str, depth: int, **kw: Any) -> int:
    """Synchronisations ``set_sync_debug_mode("warn")`` reports in one step after a warm-up."""
    model = _model(arch, conv, depth, **kw).cuda()
    optimizer = torch.optim.Adam(model.parameters())
    batch = tuple(t.cuda() if t is not None else None for t in _batch(conv, 400, 4000))
    _cuda_step(model, batch, optimizer)  # warm-up: lazy initialisation, Adam's state
    torch.cuda.synchronize()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        torch.cuda.set_sync_debug_mode("warn")
        try:
            _cuda_step(model, batch, optimizer)
        finally:
            torch.cuda.set_sync_debug_mode("default")
    return sum("synchroniz" in str(w.message) for w in caught)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@pytest.mark.parametrize("arch", ["res", "ckpt", "wt-res", "rev", "wt-rev"])
@pytest.mark.parametrize(("conv", "kw"), [("gen", {}), ("sage", {}), ("gen", {"aggr_impl": "pyg"})])
def test_cuda_step_never_synchronises(arch: str, conv: str, kw: dict[str, Any]) -> None:
    """A whole training step with ``set_sync_debug_mode("error")``: any synchronising CUDA call
    (an ``.item()``, a ``nonzero``, a blocking copy to the host) raises."""
    model = _model(arch, conv, 4, **kw).cuda()
    optimizer = torch.optim.Adam(model.parameters())
    batch = tuple(t.cuda() if t is not None else None for t in _batch(conv, 400, 4000))
    _cuda_step(model, batch, optimizer)
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode("error")
    try:
        _cuda_step(model, batch, optimizer)
    finally:
        torch.cuda.set_sync_debug_mode("default")


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@pytest.mark.parametrize(("arch", "conv"), [(a, c) for a in arch_registry.names() for c in ("gat", "gcn")]
                         + [("deq", "gen")])  # fmt: skip
def test_cuda_synchronisations_do_not_grow_with_depth(arch: str, conv: str) -> None:
    """Where a step reads the device at all (the batch's self-loops, DEQ's checks), it reads it
    as often at twice the depth."""
    depths = (40, 80) if arch == "deq" else (2, 4)
    shallow, deep = (_cuda_syncs(arch, conv, d) for d in depths)
    assert shallow == deep
