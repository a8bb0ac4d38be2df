"""The model factory and the non-DEQ architectures: shapes, parameters, errors, memory."""

from __future__ import annotations

import copy

import pytest
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from bench.errors import ConfigError
from bench.measure.meters import PeakMemory, count_parameters, model_state_bytes
from bench.models import ModelConfig, build_model
from bench.models.blocks import DeepGNN, ResPlusBlock
from bench.models.residual import ResGNN
from bench.models.reversible import RevGNN
from bench.paper import HEADLINE, point

NON_DEQ = ["res", "wt-res", "ckpt", "rev", "wt-rev"]


def _graph(n: int, e: int, edge_dim: int | None = 8, seed: int = 0) -> tuple:
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 5, generator=g)
    edge_index = torch.randint(0, n, (2, e), generator=g)
    edge_attr = torch.randn(e, edge_dim, generator=g) if edge_dim else None
    return x, edge_index, edge_attr


def _block_params(model: DeepGNN, skip_edge_encoders: bool = False) -> int:
    """Parameters of the body (everything but encoders and head), each tensor once."""
    outside = {id(p) for m in (model.node_encoder, model.edge_encoder, model.head_norm, model.head)
               if m is not None for p in m.parameters()}  # fmt: skip
    seen: dict[int, int] = {}
    for name, p in model.named_parameters():
        if id(p) in outside or (skip_edge_encoders and "lin_edge" in name):
            continue
        seen[id(p)] = p.numel()
    return sum(seen.values())


@pytest.mark.parametrize("arch", NON_DEQ)
@pytest.mark.parametrize("edge_dim", [8, None])
def test_forward_shapes_and_gradients(arch: str, edge_dim: int | None) -> None:
    torch.manual_seed(0)
    x, edge_index, edge_attr = _graph(15, 50, edge_dim)
    model = build_model(arch, 5, edge_dim, 3, 4, 8, groups=2, dropout=0.1)
    out = model(x, edge_index, edge_attr)
    assert out.shape == (15, 3)
    out.square().mean().backward()
    for name, p in model.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all(), name
    assert (
        model.edge_encoder is None
        if edge_dim is None
        else model.edge_encoder.weight.grad.abs().sum() > 0
    )
    model.eval()
    with torch.no_grad():
        assert model(x, edge_index, edge_attr).shape == (15, 3)


def test_registry_builds_every_arch_and_dispatches_deq() -> None:
    from bench.models import archs as arch_registry

    for arch in arch_registry.names():
        assert build_model(arch, 5, 8, 3, 2, 8).config.arch == arch
    assert isinstance(build_model("wt-rev", 5, 8, 3, 4, 8), RevGNN)
    assert isinstance(build_model("ckpt", 5, 8, 3, 4, 8), ResGNN)
    deq = pytest.importorskip("bench.models.deq")
    model = build_model("deq", 5, 8, 3, 4, 8, deq_solver="fixed_point", deq_max_iter=3)
    assert isinstance(model, deq.DEQGNN)


@pytest.mark.parametrize("arch", ["wt-res", "wt-rev"])
def test_weight_tied_parameters_do_not_grow_with_depth(arch: str) -> None:
    shallow, deep = (count_parameters(build_model(arch, 5, 8, 3, L, 16)) for L in (2, 40))
    assert shallow == deep
    untied = arch.removeprefix("wt-")
    assert count_parameters(build_model(untied, 5, 8, 3, 40, 16)) > 10 * deep


def test_res_and_rev_parameters_grow_linearly() -> None:
    for arch in ("res", "rev", "ckpt"):
        p1, p2, p3 = (count_parameters(build_model(arch, 5, 8, 3, L, 16)) for L in (1, 2, 3))
        assert p3 - p2 == p2 - p1 > 0


@pytest.mark.parametrize("groups", [2, 4, 8])
def test_grouping_divides_block_parameters(groups: int) -> None:
    """Grouping divides a layer's parameters by G, except the per-group edge re-encoders.

    Without the edge re-encoders (``lin_edge``), a rev layer has 1/G of a res layer's parameters
    up to the O(C) norm/bias terms (tolerance 5% at C = 512). Each group re-encodes the full-width edge
    embedding (C x C/G), so a whole rev layer has (1/G + 1/4) of a res layer's C^2 terms:
    checked within 5% too."""
    C, L = 512, 2  # wide, so the O(C) terms are small next to the O(C^2) ones
    with torch.device("meta"):
        res = build_model("res", 5, 8, 3, L, C)
        rev = build_model("rev", 5, 8, 3, L, C, groups=groups)
    core = _block_params(rev, skip_edge_encoders=True) / _block_params(res, skip_edge_encoders=True)
    assert core == pytest.approx(1 / groups, rel=0.05)
    # res: 4C^2 (MLP) + C^2 (edge re-encoder); rev: 4C^2/G (MLPs) + C^2 (G re-encoders of C x C/G)
    whole = _block_params(rev) / _block_params(res)
    assert whole == pytest.approx((4 / groups + 1) / 5, rel=0.05)


def test_groups_are_initialised_independently_and_get_full_edge_embedding() -> None:
    torch.manual_seed(0)
    model = build_model("rev", 5, 8, 3, 2, 12, groups=3)
    for block in model.stack.blocks:
        weights = [f.conv.mlp[0].weight for f in block]
        assert not torch.equal(weights[0], weights[1]) and not torch.equal(weights[1], weights[2])
        assert all(
            f.conv.lin_edge.in_channels == 12 and f.conv.lin_edge.out_channels == 4 for f in block
        )


def _meta_count(arch: str, in_channels: int, layers: int, channels: int, groups: int) -> int:
    """Exact parameter count of a deep stack from two shallow builds (counts are linear in
    depth, checked above): keeps 1001-layer checks instant."""

    def count(depth: int) -> int:
        with torch.device("meta"):
            model = build_model(arch, in_channels, 8, 112, depth, channels, groups=groups)
        return sum(t.numel() for t in model.parameters())

    one, two = count(1), count(2)
    return one + (layers - 1) * (two - one)


def test_parameter_counts_match_the_paper() -> None:
    """Figure-1 points (112 layers, ogbn-proteins: 8 node inputs here, 112 tasks) within 0.5%;
    the headline models exactly, given the authors' 16-wide node input and their 8 -> 8 species
    embedding (72 parameters) that lives outside our model."""
    for label in ("ResGNN-64", "RevGNN-64", "RevGNN-80", "RevGNN-224"):
        p = point(label)
        count = _meta_count(p.arch, 8, p.layers, p.channels, p.groups or 2)
        assert count == pytest.approx(p.params, rel=0.005), label
    for p in HEADLINE:
        count = _meta_count(p.arch, 16, p.layers, p.channels, p.groups or 2)
        assert count + 8 * 8 + 8 == p.params, p.label


def test_checkpointed_res_equals_res_with_dropout_and_batchnorm() -> None:
    torch.manual_seed(0)
    x, edge_index, edge_attr = _graph(20, 70)
    res = build_model("res", 5, 8, 3, 4, 8, dropout=0.3, norm="batch")
    ckpt = build_model("ckpt", 5, 8, 3, 4, 8, dropout=0.3, norm="batch")
    ckpt.load_state_dict(res.state_dict())
    outs, grads = [], []
    for model in (res, ckpt):
        torch.manual_seed(11)
        out = model(x, edge_index, edge_attr)
        outs.append(out)
        grads.append(torch.autograd.grad(out.square().sum(), list(model.parameters())))
    assert torch.equal(outs[0], outs[1])
    for a, b in zip(*grads, strict=True):
        assert torch.allclose(a, b, rtol=1e-5, atol=1e-6)
    bns = [m for m in ckpt.blocks.modules() if isinstance(m, nn.BatchNorm1d)]
    assert bns and all(int(m.num_batches_tracked) == 1 for m in bns)  # not 2: recompute frozen
    for m, r in zip(
        bns, [m for m in res.blocks.modules() if isinstance(m, nn.BatchNorm1d)], strict=True
    ):
        assert torch.allclose(m.running_mean, r.running_mean, atol=1e-6)


def test_rev_matches_a_plain_residual_wiring_with_zero_dropout() -> None:
    """Sanity of the model wiring (not the engine): rev's body equals the documented recurrence."""
    torch.manual_seed(0)
    x, edge_index, edge_attr = _graph(10, 30)
    model = build_model("rev", 5, 8, 3, 2, 8, groups=2)
    h, e = model.node_encoder(x), model.edge_encoder(edge_attr)
    x1, x2 = h.chunk(2, dim=-1)
    for block in model.stack.blocks:
        y1 = x1 + block[0](x2, edge_index, e)
        y2 = x2 + block[1](y1, edge_index, e)
        x1, x2 = y1, y2
    assert torch.allclose(model.stack(h, edge_index, e), torch.cat([x1, x2], -1), atol=1e-6)


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"arch": "resnet"}, "arch"),
        ({"aggr": "median"}, "aggr"),
        ({"norm": "group"}, "norm"),
        ({"arch": "rev", "channels": 10, "groups": 3}, "groups"),
        ({"arch": "wt-rev", "groups": 1}, "groups"),
        ({"layers": 0}, "layers"),
        ({"channels": 0}, "channels"),
        ({"dropout": 1.0}, "dropout"),
        ({"dropout": -0.1}, "dropout"),
        ({"arch": "deq", "deq_tol": 0.0}, "deq_tol"),
        ({"arch": "deq", "deq_solver": "newton"}, "deq_solver"),
        ({"arch": "deq", "deq_max_iter": 0}, "deq_max_iter"),
        ({"tie": "all"}, "tie"),
        ({"arch": "wt-res", "tie": "none"}, "tie"),
        ({"share_mask": True}, "share_mask"),
        ({"deq_grad": "implicit"}, "deq_grad"),
        ({"conv": "sage", "aggr": "softmax"}, "aggr"),
        ({"conv": "gen", "heads": 2}, "heads"),
    ],
)
def test_model_config_errors_name_the_setting(kwargs: dict, field: str) -> None:
    """A ModelConfig is checked once, when made: each bad setting is named (the CLI turns the
    name into its flag); building then checks nothing again."""
    with pytest.raises(ConfigError) as err:
        ModelConfig(**({"arch": "res", "layers": 2, "channels": 8} | kwargs))
    assert err.value.field == field


@pytest.mark.parametrize("name", ["in_channels", "out_channels", "edge_dim"])
def test_a_model_refuses_bad_sizes_naming_its_argument(name: str) -> None:
    sizes = {"in_channels": 5, "edge_dim": 8, "out_channels": 3} | {name: -2}
    with pytest.raises(ValueError, match=f"^{name}:"):
        build_model(ModelConfig(arch="res", layers=2, channels=8), **sizes)


def _activation_peak(model: DeepGNN, graph: tuple, y: Tensor) -> int:
    """Peak live bytes of one training step minus model state (weights + gradients)."""
    model.zero_grad(set_to_none=True)
    torch.manual_seed(0)
    with PeakMemory("cpu") as meter:
        loss = F.binary_cross_entropy_with_logits(model(*graph), y)
        loss.backward()
    assert meter.meter == "cpu-live-tensors"
    return meter.peak_bytes - model_state_bytes(model)


def test_rev_activation_memory_is_flat_in_depth_while_res_grows() -> None:
    torch.manual_seed(0)
    graph = _graph(300, 2400)
    y = (torch.rand(300, 3) > 0.5).float()
    peaks = {}
    for arch in ("rev", "wt-rev", "res", "ckpt"):
        for layers in (4, 32):
            model = build_model(arch, 5, 8, 3, layers, 16, dropout=0.1)
            peaks[arch, layers] = _activation_peak(model, graph, y)
    print({f"{a}@{L}": round(b / 2**20, 2) for (a, L), b in peaks.items()}, "MiB")
    for arch in ("rev", "wt-rev"):
        assert peaks[arch, 32] <= 1.10 * peaks[arch, 4], arch
    assert peaks["res", 32] > 4 * peaks["res", 4]
    assert peaks["ckpt", 4] < peaks["ckpt", 32] < peaks["res", 32] / 2
    assert peaks["rev", 32] < peaks["res", 32] / 5


def test_res_plus_block_is_the_shared_function() -> None:
    model = build_model("wt-res", 5, 8, 3, 6, 8, tie="all")
    assert len(model.blocks) == 1 and isinstance(model.blocks[0], ResPlusBlock)
    model = build_model("wt-res", 5, 8, 3, 6, 8)  # after-first: the first layer's own, one shared
    assert len(model.blocks) == 2 and all(isinstance(b, ResPlusBlock) for b in model.blocks)
    assert copy.deepcopy(model).layers == 6
