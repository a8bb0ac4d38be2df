"""The fused max aggregation (bench.nn.aggr): PyG's values and gradients, an N x C argmax as the
only saved tensor, deterministic ties, and the ``aggr_impl`` setting end to end."""

from __future__ import annotations

import pytest
import torch
from torch import Tensor
from torch_geometric.nn import GENConv

import bench.nn.aggr as aggr
from bench.config import TrialConfig
from bench.errors import ConfigError
from bench.harness.spec import point_key
from bench.measure.memory_model import GraphSizes, activation_bytes
from bench.models import ModelConfig, build_model
from bench.models.blocks import ResPlusBlock
from bench.nn.aggr import LeanMaxGENConv, relu_max_aggregate


@pytest.fixture(params=["packed", "float"])
def path(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """Both search paths: one packed integer scatter (small inputs) and two float scatters."""
    if request.param == "float":
        monkeypatch.setattr(aggr, "PACKED_MAX_ELEMENTS", 0)
    return request.param


def _graph(n: int, e: int, seed: int, spare: int = 0) -> Tensor:
    """Random edges among the first n - spare nodes: the last ``spare`` nodes are isolated."""
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, n - spare, (2, e), generator=g)


def _pair(edge_dim: int | None, dtype: torch.dtype) -> tuple[GENConv, LeanMaxGENConv]:
    torch.manual_seed(0)
    ref = GENConv(6, 6, aggr="max", edge_dim=edge_dim, norm="layer", bias=True).to(dtype)
    lean = LeanMaxGENConv(6, 6, edge_dim=edge_dim, norm="layer", bias=True).to(dtype)
    lean.load_state_dict(ref.state_dict())
    return ref, lean


def _both(ref: GENConv, lean: GENConv, x: Tensor, ei: Tensor, ea: Tensor | None) -> list:
    out = []
    for conv in (ref, lean):
        y = conv(x, ei, ea)
        leaves = [x, *([ea] if ea is not None else []), *conv.parameters()]
        w = torch.randn(y.shape, dtype=y.dtype, generator=torch.Generator().manual_seed(1))
        w = w.to(y.device)
        out.append((y, torch.autograd.grad((y * w).sum(), leaves)))
    return out


@pytest.mark.parametrize("edge_features", [True, False])
@pytest.mark.parametrize("duplicates", [False, True])
def test_values_and_gradients_equal_pyg_float64(
    path: str, edge_features: bool, duplicates: bool
) -> None:
    """Without ties (random float64 messages) values and every gradient equal PyG's; nodes 35..39
    have no edges at all, and some others only outgoing ones (no incoming edge)."""
    n = 40
    ei = _graph(n, 160, seed=3, spare=5)
    if duplicates:  # repeated edges: with edge features they carry different messages
        ei = torch.cat([ei, ei[:, :40]], dim=1)
    assert (torch.bincount(ei[1], minlength=n) == 0).sum() > 5  # isolated + no incoming edge
    x = torch.randn(n, 6, dtype=torch.float64, requires_grad=True)
    ea = torch.randn(ei.shape[1], 3, dtype=torch.float64, requires_grad=True)
    ref, lean = _pair(3 if edge_features else None, torch.float64)
    (y_ref, g_ref), (y, g) = _both(ref, lean, x, ei, ea if edge_features else None)
    assert torch.equal(y, y_ref)
    for a, b in zip(g, g_ref, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-14)
    with torch.no_grad():
        assert torch.equal(lean(x, ei, ea if edge_features else None), y_ref)


def test_float32_values_equal_pyg_exactly(path: str) -> None:
    """ReLU and +eps after the max round exactly as before it (monotone rounding)."""
    ei = _graph(60, 400, seed=5, spare=4)
    x = torch.randn(60, 6)
    ea = torch.randn(400, 3)
    ref, lean = _pair(3, torch.float32)
    with torch.no_grad():
        assert torch.equal(lean(x, ei, ea), ref(x, ei, ea))
    assert torch.equal(lean(x, ei, ea), ref(x, ei, ea))


def test_nodes_without_incoming_edges_get_zero_and_no_gradient(path: str) -> None:
    msg = torch.tensor([[1.0, -2.0], [3.0, -1.0], [0.5, 4.0]], requires_grad=True)
    index = torch.tensor([0, 0, 2])  # node 1: nothing arrives; node 0 channel 1: max < 0
    out = relu_max_aggregate(msg, index, 3, eps=1e-7)
    assert torch.equal(out, torch.tensor([[3.0 + 1e-7, 1e-7], [0.0, 0.0], [0.5 + 1e-7, 4.0]]))
    (g,) = torch.autograd.grad(out.sum(), msg)
    # the maxima get the gradient; a flat ReLU (max <= 0) and the empty node give none
    assert torch.equal(g, torch.tensor([[0.0, 0.0], [1.0, 0.0], [1.0, 1.0]]))
    empty = relu_max_aggregate(torch.zeros(0, 2, requires_grad=True), torch.zeros(0).long(), 3)
    assert torch.equal(empty, torch.zeros(3, 2))


def test_ties_send_the_whole_gradient_to_the_lowest_edge_index(path: str) -> None:
    """Deterministic ties (documented): PyG splits the gradient evenly instead; the gradient
    reaching the source node is the same when the tied edges are duplicates."""
    msg = torch.tensor([[2.0], [5.0], [5.0], [5.0], [1.0]], requires_grad=True)
    index = torch.tensor([0, 0, 0, 1, 1])
    (g,) = torch.autograd.grad(relu_max_aggregate(msg, index, 2).sum(), msg)
    assert torch.equal(g, torch.tensor([[0.0], [1.0], [0.0], [1.0], [0.0]]))
    # duplicate edges, no edge features: exact ties; x's gradient equals PyG's even split
    ei = torch.tensor([[0, 0, 1, 2, 2], [1, 1, 2, 0, 0]])
    x = torch.randn(3, 6, dtype=torch.float64, requires_grad=True)
    ref, lean = _pair(None, torch.float64)
    (y_ref, g_ref), (y, g_lean) = _both(ref, lean, x, ei, None)
    assert torch.equal(y, y_ref)
    for a, b in zip(g_lean, g_ref, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-14)


def test_bf16_packed_and_float_paths_agree(monkeypatch: pytest.MonkeyPatch) -> None:
    msg = torch.randn(500, 8).bfloat16().requires_grad_()  # bf16: many exact ties
    index = _graph(80, 500, seed=2, spare=3)[1]
    results = []
    for limit in (1 << 19, 0):
        monkeypatch.setattr(aggr, "PACKED_MAX_ELEMENTS", limit)
        out = relu_max_aggregate(msg, index, 80)
        results.append((out, *torch.autograd.grad(out.float().sum(), msg)))
    assert all(torch.equal(a, b) for a, b in zip(*results, strict=True))


def test_only_an_n_by_c_argmax_is_saved_and_the_memory_model_counts_it(path: str) -> None:
    """What autograd keeps for one ResPlusBlock, counted tensor by tensor, equals the memory
    model's per-layer bytes for both implementations: nothing per edge with ``fused``."""
    n, e, c = 60, 500, 8
    ei = _graph(n, e, seed=4)
    ea = torch.randn(e, c)
    x = torch.randn(n, c, requires_grad=True)
    sizes = GraphSizes(nodes=n, edges=e, features=c, edge_dim=c, outputs=2, batch_nodes=n,
                       batch_edges=e, batch_train_nodes=n)  # fmt: skip
    for impl in ("fused", "pyg"):
        torch.manual_seed(0)
        config = ModelConfig(arch="res", channels=c, dropout=0.1, aggr_impl=impl)
        block = ResPlusBlock(config, c, c).train()
        outside = {t.untyped_storage().data_ptr() for t in (ei, ea, *block.parameters())}
        saved: dict[int, tuple[int, tuple[int, ...]]] = {}

        def pack(t: Tensor, saved: dict = saved, outside: set = outside) -> Tensor:
            storage = t.untyped_storage()
            if storage.data_ptr() not in outside:
                saved[storage.data_ptr()] = (storage.nbytes(), tuple(t.shape))
            return t

        with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
            block(x, ei, ea)
        if impl == "fused":
            assert all(shape[0] != e for _, shape in saved.values())  # no per-edge tensor
        config = TrialConfig(arch="res", layers=2, channels=c, dropout=0.1, aggr_impl=impl)
        per_layer = activation_bytes(config, sizes) - activation_bytes(
            config.replace(layers=1), sizes
        )
        assert sum(nbytes for nbytes, _ in saved.values()) == per_layer, impl


def test_aggr_impl_setting_builds_selects_and_records() -> None:
    fused = build_model("res", 4, 3, 2, 2, 8)
    pyg = build_model("res", 4, 3, 2, 2, 8, aggr_impl="pyg")
    assert isinstance(fused.blocks[0].conv, LeanMaxGENConv)
    assert type(pyg.blocks[0].conv) is GENConv
    softmax = build_model("rev", 4, 3, 2, 2, 8, aggr="softmax")  # only max has a fused path
    assert type(softmax.stack.blocks[0][0].conv) is GENConv
    with pytest.raises(ConfigError) as err:
        build_model("res", 4, 3, 2, 2, 8, aggr_impl="scatter")
    assert err.value.flag == "--aggr-impl"
    with pytest.raises(ConfigError) as err:
        TrialConfig(aggr_impl="scatter").validated()
    assert err.value.flag == "--aggr-impl"
    # the record says what ran; the stored (PyG-path) points keep their keys
    assert TrialConfig().to_dict()["aggr_impl"] == "fused"
    assert TrialConfig(aggr="softmax").to_dict()["aggr_impl"] == "pyg"
    old = point_key(TrialConfig(aggr_impl="pyg"))
    assert old != point_key(TrialConfig())
    values = TrialConfig(aggr_impl="pyg").to_dict()
    del values["aggr_impl"]  # a key computed before the field existed
    import hashlib
    import json

    from bench.harness.spec import KEY_EXCLUDED_FIELDS

    kept = {k: v for k, v in values.items() if k not in KEY_EXCLUDED_FIELDS and v is not None}
    kept.pop("precision"), kept.pop("conv"), kept.pop("compile")  # later fields, at defaults
    blob = json.dumps(kept, sort_keys=True, default=str)
    assert old == hashlib.sha256(blob.encode()).hexdigest()[:16]


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_values_gradients_and_ties_equal_the_cpu_rule(path: str) -> None:
    """On a GPU (atomic scatters) the fused max still equals PyG in float64 and sends a tie's
    whole gradient to the lowest edge index, as on the CPU."""
    ei = _graph(40, 200, seed=7, spare=4).cuda()
    x = torch.randn(40, 6, dtype=torch.float64, device="cuda", requires_grad=True)
    ea = torch.randn(200, 3, dtype=torch.float64, device="cuda", requires_grad=True)
    ref, lean = _pair(3, torch.float64)
    ref, lean = ref.cuda(), lean.cuda()
    (y_ref, g_ref), (y, g) = _both(ref, lean, x, ei, ea)
    assert torch.equal(y, y_ref)
    for a, b in zip(g, g_ref, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-14)
    msg = torch.full((64, 3), 5.0, device="cuda", requires_grad=True)  # 64 tied edges per node
    index = torch.zeros(64, dtype=torch.long, device="cuda")
    (g,) = torch.autograd.grad(relu_max_aggregate(msg, index, 1).sum(), msg)
    expected = torch.zeros(64, 3, device="cuda")
    expected[0] = 1.0
    assert torch.equal(g, expected)
