"""The convolution axis (``conv``: gen, gat, sage, gcn): exact gradients of every memory-saving
engine for every conv (float64), the memory model per conv, and the settings' checks."""

from __future__ import annotations

import json
import pathlib
import subprocess
import sys

import pandas as pd
import pytest
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from bench.config import TrialConfig
from bench.data.registry import get_spec
from bench.errors import ConfigError
from bench.harness.spec import point_key
from bench.measure.memory_model import GraphSizes, activation_bytes, predict_params
from bench.measure.meters import PeakMemory, count_parameters
from bench.models import ModelConfig, build_model
from bench.models import archs as arch_registry
from bench.models.conv_specs import BUILT_IN as _BUILT_IN_CONVS
from bench.models.convs import prepare_edges
from bench.models.deq import DEQGNN
from bench.nn import ReversibleStack
from bench.report import depth_figures, figures
from bench.report.claims import NOT_SUPPORTED, SUPPORTED, all_claims, claim_verdict
from bench.report.load import derive
from bench.report.select import FIGURE_BY_KEY, ablation_rows

EDGE_DIM = {"gen": 8, "gat": 8, "sage": None, "gcn": None}  # what each conv can read
HEADS = {"gat": 2}


def _deqgnn(in_channels: int, edge_dim: int | None, out_channels: int, channels: int,
            solver: str = "anderson", tol: float = 1e-4, max_iter: int = 30,
            grad: str = "implicit", **settings: object) -> DEQGNN:  # fmt: skip
    """A DEQ-GNN from its sizes and solver settings, through one ModelConfig."""
    config = ModelConfig(arch="deq", layers=max_iter, channels=channels, deq_solver=solver,
                         deq_tol=tol, deq_max_iter=max_iter, deq_grad=grad, **settings)  # fmt: skip
    return DEQGNN(config, in_channels, edge_dim, out_channels)


def _graph(n: int, e: int, seed: int = 0) -> Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, n, (2, e), generator=g)


def _max_rel_err(a: Tensor, b: Tensor) -> float:
    return ((a - b).abs().max() / b.abs().max().clamp_min(1e-300)).item()


def _record_masks(stack: ReversibleStack) -> list[tuple[nn.Module, Tensor | None]]:
    calls: list[tuple[nn.Module, Tensor | None]] = []

    def hook(module: nn.Module, args: tuple, kwargs: dict) -> None:
        calls.append((module, kwargs.get("dropout_mask")))

    for f in {id(f): f for block in stack.blocks for f in block}.values():
        f.register_forward_pre_hook(hook, with_kwargs=True)
    return calls


def _unrolled(stack: ReversibleStack, h: Tensor, ctx: tuple, masks: list) -> Tensor:
    """X'_0 = sum(X_2..X_G), X'_i = X_i + f_i(X'_{i-1}) in plain autograd, written here apart
    from the engine, with the masks the engine used in its forward."""
    G = stack.groups
    xs = list(h.chunk(G, dim=-1))
    for layer in range(stack.num_layers):
        fs = stack.functions(layer)
        prev = sum(xs[1:])
        ys = []
        for i in range(G):
            module, mask = masks[layer * G + i]
            assert module is fs[i]
            prev = xs[i] + fs[i](prev, *ctx, dropout_mask=mask)
            ys.append(prev)
        xs = ys
    return torch.cat(xs, dim=-1)


@pytest.mark.parametrize("conv", tuple(_BUILT_IN_CONVS))
@pytest.mark.parametrize("arch", ["rev", "wt-rev"])
@pytest.mark.parametrize("groups", [2, 3, 4])
def test_reversible_gradients_equal_unrolled_autograd_float64(
    conv: str, arch: str, groups: int
) -> None:
    torch.manual_seed(groups)
    n, layers, channels = 12, 3, 12 if conv != "gat" else 24  # gat: 2 heads per group
    edge_index = _graph(n, 40)
    edge_dim = EDGE_DIM[conv]
    model = build_model(
        arch, 5, edge_dim, 3, layers, channels, groups=groups, dropout=0.3, conv=conv,
        heads=HEADS.get(conv),
    ).double()  # fmt: skip
    stack: ReversibleStack = model.stack
    calls = _record_masks(stack)
    h = torch.randn(n, channels, dtype=torch.float64, requires_grad=True)
    e = (
        torch.randn(edge_index.shape[1], channels, dtype=torch.float64, requires_grad=True)
        if edge_dim
        else None
    )
    ctx = prepare_edges(conv, edge_index, e, n, torch.float64)  # as DeepGNN hands them down
    w = torch.randn(n, channels, dtype=torch.float64)
    params = list(stack.parameters())
    leaves = [h, *([e] if e is not None else []), *params]
    out = stack(h, *ctx)
    grads = torch.autograd.grad((out * w).sum(), leaves, retain_graph=True)  # ctx: again below
    forward_calls = calls[: layers * groups]
    assert len(calls) == 2 * layers * groups  # each (layer, group) once more in backward
    calls.clear()
    ref_out = _unrolled(stack, h, ctx, forward_calls)
    ref = torch.autograd.grad((ref_out * w).sum(), leaves)
    assert _max_rel_err(out, ref_out) <= 1e-12
    names = ["x", *(["edge_embedding"] if e is not None else [])]
    names += [name for name, _ in stack.named_parameters()]
    for name, g, r in zip(names, grads, ref, strict=True):
        assert _max_rel_err(g, r) <= 1e-9, (conv, name)
    if conv == "gat" and edge_dim:  # the edge embedding reaches the attention of every group
        assert grads[1].abs().sum() > 0


# DEQ: the block must contract for a reference to exist (see tests/test_deq.py, where a lucky
# draw does it); here the block's weights are scaled down (and its LayerNorms off), which makes
# it a contraction for every conv. Tolerances as there: solves to 1e-11, gradients at rtol 1e-7.
TOL, RTOL = 1e-11, 1e-7


@pytest.mark.parametrize("conv", tuple(_BUILT_IN_CONVS))
def test_deq_gradients_match_unrolled_network_for_every_conv(conv: str) -> None:
    torch.manual_seed(0)
    n, e = 30, 120
    x = torch.randn(n, 5, dtype=torch.float64, requires_grad=True)
    edge_index = _graph(n, e)
    edge_dim = EDGE_DIM[conv] and 3
    edge_attr = torch.randn(e, 3, dtype=torch.float64) if edge_dim else None
    model = _deqgnn(
        5, edge_dim, 4, 16, dropout=0.2, norm="none", solver="anderson", tol=TOL, max_iter=300,
        conv=conv, heads=HEADS.get(conv),
    ).double()  # fmt: skip
    with torch.no_grad():
        for p in model.block.parameters():
            p.mul_(0.3)
    residual: list[float] = []

    def unrolled_body(h: Tensor, edge_index: Tensor, edge_attr: Tensor | None) -> Tensor:
        mask = F.dropout(torch.ones_like(h), model.dropout, training=True)
        z = torch.zeros_like(h)
        for _ in range(150):
            z, previous = model.block(z, h, edge_index, edge_attr, mask), z
        residual.append(float((z - previous).detach().norm() / z.detach().norm()))
        return z

    inputs = [x, *model.parameters()]
    torch.manual_seed(7)
    got = torch.autograd.grad(model(x, edge_index, edge_attr).pow(2).sum(), inputs)
    stats = dict(model.solver_stats or {})
    torch.manual_seed(7)  # the same dropout mask
    model.body = unrolled_body  # type: ignore[method-assign]
    ref = torch.autograd.grad(model(x, edge_index, edge_attr).pow(2).sum(), inputs)
    assert residual[0] < 1e-13  # the reference really is at the fixed point
    assert stats["fwd_rel_residual"] <= TOL and stats["bwd_rel_residual"] <= TOL
    for g, r in zip(got, ref, strict=True):
        torch.testing.assert_close(g, r, rtol=RTOL, atol=1e-9)


@pytest.mark.parametrize("conv", tuple(_BUILT_IN_CONVS))
def test_checkpointed_res_equals_res_for_every_conv(conv: str) -> None:
    """``ckpt`` recomputes each block in backward: same gradients as ``res`` (no RNG inside a
    conv, so GAT's recomputation is the forward's)."""
    n = 20
    g = torch.Generator().manual_seed(1)
    x = torch.randn(n, 5, generator=g, dtype=torch.float64)
    edge_index = _graph(n, 60)
    edge_attr = torch.randn(60, 8, generator=g, dtype=torch.float64) if EDGE_DIM[conv] else None
    grads = []
    for arch in ("res", "ckpt"):
        torch.manual_seed(0)
        model = build_model(
            arch, 5, EDGE_DIM[conv], 3, 3, 8, dropout=0.2, conv=conv, heads=HEADS.get(conv)
        ).double()
        torch.manual_seed(1)
        model(x, edge_index, edge_attr).square().sum().backward()
        grads.append([p.grad for p in model.parameters()])
    for a, b in zip(*grads, strict=True):
        assert _max_rel_err(a, b) <= 1e-12


# --- the memory model ---------------------------------------------------------------------------
def _sizes(edge_dim: int | None, n: int = 300, e: int = 3000) -> GraphSizes:
    return GraphSizes(
        nodes=n, edges=e, features=16, edge_dim=edge_dim, outputs=7, batch_nodes=n,
        batch_edges=e, batch_train_nodes=n,
    )  # fmt: skip


def _config(conv: str, **kw: object) -> TrialConfig:
    dataset = "synthetic-proteins" if EDGE_DIM[conv] else "cora"
    return TrialConfig(dataset=dataset, conv=conv, heads=HEADS.get(conv), **kw).validated()  # type: ignore[arg-type]


@pytest.mark.parametrize("conv", tuple(_BUILT_IN_CONVS))
@pytest.mark.parametrize("arch", arch_registry.names())
@pytest.mark.parametrize("layers", [1, 7])
def test_predicted_params_equal_counted_params_for_every_conv(
    conv: str, arch: str, layers: int
) -> None:
    config = _config(conv, arch=arch, layers=layers, channels=12, groups=3 if "rev" in arch else 2)
    sizes = _sizes(EDGE_DIM[conv])
    model = build_model(config.model, sizes.features, sizes.edge_dim, sizes.outputs)
    assert predict_params(config, sizes) == count_parameters(model)


@pytest.mark.parametrize("conv", tuple(_BUILT_IN_CONVS))
@pytest.mark.parametrize(("arch", "depths"), [("res", (2, 8)), ("rev", (2, 16)), ("deq", (4,))])
def test_predicted_activations_within_1_5x_of_the_meter(
    conv: str, arch: str, depths: tuple[int, ...]
) -> None:
    """The same tolerance as GENConv's end-to-end check (tests/test_memory_model.py), here on a
    random 2,000-node, 24,000-edge graph: one training step's activations (the meter's peak
    above the inputs and weights, less the gradients) against ``activation_bytes``. Measured:
    within 0.9-1.4x for every conv and arch."""
    torch.set_num_threads(1)
    n, e, features, outputs = 2000, 24_000, 8, 4
    g = torch.Generator().manual_seed(0)
    x = torch.randn(n, features, generator=g)
    edge_index = torch.randint(0, n, (2, e), generator=g)
    edge_dim = EDGE_DIM[conv]
    edge_attr = torch.randn(e, edge_dim, generator=g) if edge_dim else None
    y = (torch.rand(n, outputs, generator=g) > 0.5).float()
    sizes = GraphSizes(
        nodes=n, edges=e, features=features, edge_dim=edge_dim, outputs=outputs, batch_nodes=n,
        batch_edges=e, batch_train_nodes=n,
    )  # fmt: skip
    measured = []
    for layers in depths:
        config = _config(conv, arch=arch, layers=layers, channels=32, dropout=0.1)
        model = build_model(config.model, features, edge_dim, outputs).train()
        torch.manual_seed(0)
        with PeakMemory("cpu") as meter:
            loss = F.binary_cross_entropy_with_logits(model(x, edge_index, edge_attr), y)
            loss.backward()
        grads = sum(4 * p.numel() for p in model.parameters())
        measured.append(meter.peak_above_baseline - grads)
        ratio = activation_bytes(config, sizes) / measured[-1]
        assert 1 / 1.5 <= ratio <= 1.5, (conv, arch, layers, ratio)
    if arch == "rev":  # flat in depth, for every conv
        assert abs(measured[1] - measured[0]) < 0.05 * measured[0]


# --- settings -----------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("values", "field"),
    [
        ({"conv": "gin"}, "conv"),
        ({"conv": "sage"}, "conv"),  # synthetic-proteins has edge features: refused, not dropped
        ({"conv": "gcn", "dataset": "ogbn-proteins"}, "conv"),
        ({"heads": 2}, "heads"),  # a GAT setting with conv gen
        ({"conv": "gat", "heads": 0}, "heads"),
        ({"conv": "gat", "heads": 3, "channels": 64}, "heads"),  # 3 does not divide 32 per group
        ({"conv": "gat", "aggr": "softmax"}, "aggr"),
        ({"conv": "sage", "dataset": "cora", "aggr": "power"}, "aggr"),
    ],
)
def test_config_refuses_what_a_conv_cannot_do(values: dict, field: str) -> None:
    with pytest.raises(ConfigError) as err:
        TrialConfig.from_dict(values)
    assert err.value.field == field


def test_build_model_refuses_edge_features_for_edge_free_convs() -> None:
    """A configuration is refused by its settings (ConfigError naming the setting); the layer
    itself refuses edge features it cannot read (ValueError)."""
    for conv in ("sage", "gcn"):
        with pytest.raises(ValueError, match="cannot read edge features"):
            build_model("rev", 5, 8, 3, 2, 8, conv=conv)
        with pytest.raises(ConfigError) as err:
            TrialConfig(conv=conv, dataset="synthetic-proteins").validated()
        assert err.value.field == "conv"
    with pytest.raises(ConfigError) as err:
        build_model("res", 5, None, 3, 2, 8, conv="gen", heads=2)
    assert err.value.field == "heads"


def test_registry_marks_the_graphs_with_edge_features() -> None:
    assert get_spec("synthetic-proteins").edge_features
    assert get_spec("ogbn-proteins").edge_features
    assert not any(get_spec(n).edge_features for n in ("cora", "ogbn-arxiv", "ogbn-products"))


def test_default_conv_leaves_keys_and_records_as_they_were() -> None:
    """``conv = gen`` and unset ``heads`` are left out of a point's key (stored trials keep
    theirs); GAT records carry the heads in effect."""
    import hashlib

    config = TrialConfig(arch="res", layers=4).validated()
    values = {k: v for k, v in config.to_dict().items() if v is not None}
    for dropped in ("device", "data_root", "precision", "conv", "compile"):  # later fields
        values.pop(dropped, None)
    legacy = hashlib.sha256(json.dumps(values, sort_keys=True, default=str).encode()).hexdigest()
    assert point_key(config) == legacy[:16]
    gat = config.replace(conv="gat")
    assert gat.to_dict()["heads"] == 1 and point_key(gat) != point_key(config)
    assert point_key(gat) != point_key(gat.replace(heads=2))
    assert config.to_dict()["heads"] is None


def test_cli_trial_gat_with_edge_features_records_conv_and_prediction(tmp_path: object) -> None:
    """``--conv gat --dataset synthetic-proteins``: GAT reads the edge features (the edge
    encoder is built and trained) and the record carries conv, heads and the prediction."""
    cmd = [
        sys.executable, "-m", "bench", "trial", "--conv", "gat", "--heads", "2", "--arch", "rev",
        "--layers", "3", "--channels", "16", "--epochs", "1", "--train-parts", "4",
        "--eval-parts", "2", "--dataset-option", "num_nodes=300", "--json", "--no-progress",
    ]  # fmt: skip
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    record = json.loads(done.stdout.strip().splitlines()[-1])
    assert record["status"] == "ok"
    assert record["config"]["conv"] == "gat" and record["config"]["heads"] == 2
    assert record["params"] == record["predicted_params"]
    assert record["predicted_peak_bytes"] > 0
    config = TrialConfig.from_dict({**record["config"], "dataset_options": {"num_nodes": 300}})
    model = build_model(config.model, 16, 8, 32)
    assert model.edge_encoder is not None
    assert all(b.conv.lin_edge is not None for blocks in model.stack.blocks for b in blocks)


def test_cli_refuses_sage_on_a_graph_with_edge_features_naming_the_flag() -> None:
    cmd = [sys.executable, "-m", "bench", "trial", "--conv", "sage", "--dry-run"]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert done.returncode == 2
    assert "--conv" in done.stderr and "edge features" in done.stderr


# --- report: one panel per conv, and the claim judged per conv ---------------------------------
def _conv_rows(rev_grows: str | None = None) -> pd.DataFrame:
    from test_report import depth_rows  # the report tests' hand-made export rows

    rows = []
    for conv in tuple(_BUILT_IN_CONVS):
        over = {"conv": conv, "heads": HEADS.get(conv), "dataset": "cora"}
        part = depth_rows("conv", ("res", "rev"), [2, 8, 32], **over)
        for r in part:
            if r["arch"] == "rev" and conv == rev_grows:  # a conv whose rev is not flat
                r["peak_memory_bytes"] += r["layers"] * 2**20
        rows += part
    return derive(pd.DataFrame(rows))


def test_conv_flat_claim_is_judged_for_each_conv() -> None:
    claims = [c for c in all_claims(_conv_rows()) if c.key == "conv-flat"]
    assert len(claims) == len(tuple(_BUILT_IN_CONVS))
    assert all(c.verdict == SUPPORTED for c in claims), [c.evidence for c in claims]
    names = {"gen": "GENConv", "gat": "GAT", "sage": "GraphSAGE", "gcn": "GCN"}
    assert all(any(f"({names[conv]}" in c.case for c in claims) for conv in tuple(_BUILT_IN_CONVS))
    broken = [c for c in all_claims(_conv_rows(rev_grows="sage")) if c.key == "conv-flat"]
    verdicts = {("(GraphSAGE" in c.case): c.verdict for c in broken}
    assert verdicts == {True: NOT_SUPPORTED, False: SUPPORTED}
    assert claim_verdict(broken, "conv-flat") == NOT_SUPPORTED


def test_conv_figure_has_one_panel_per_conv(
    tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    df = _conv_rows()
    rows, note = ablation_rows(df, FIGURE_BY_KEY["fig9"])
    assert note == "" and len(rows) == len(df)
    drawn = []
    save = figures.save
    monkeypatch.setattr(figures, "save", lambda fig, *a: drawn.append(fig) or save(fig, *a))
    figures.style()
    paths = depth_figures.memory_vs_depth_per_conv(rows, FIGURE_BY_KEY["fig9"], tmp_path)
    assert [p.suffix for p in paths] == [".png", ".svg"] and all(p.stat().st_size for p in paths)
    titles = [ax.get_title() for ax in drawn[0].axes]
    assert len(titles) == 2 * len(tuple(_BUILT_IN_CONVS))  # activation memory and score, per conv
    for name in ("GENConv", "GAT (2 heads)", "GraphSAGE", "GCN"):  # titles its column's top panel
        assert sum(t.startswith(name) for t in titles) == 1, titles


# --- tuning dimension ---------------------------------------------------------------------------
CONV_SPACE = """
description = "conv as a tuning dimension"
[base]
dataset = "cora"
epochs = 1
[space]
arch = { choices = ["res", "rev"] }
conv = { choices = ["gen", "gat", "sage", "gcn"] }
heads = { choices = [1, 2, 3] }
channels = { choices = [24, 32, 48] }
groups = { choices = [2, 4] }
"""


def test_search_space_samples_heads_for_gat_only_and_repairs_channels() -> None:
    import optuna
    import tomllib

    from bench.tuning.space import parse_search_space

    space = parse_search_space(tomllib.loads(CONV_SPACE))
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    seen = set()
    for _ in range(80):
        trial = study.ask()
        config = space.suggest(trial).config  # always valid: heads divide each block's width
        assert ("heads" in trial.params) == (config.conv == "gat")
        width = config.channels // (config.groups if config.arch == "rev" else 1)
        assert width % (config.model.heads or 1) == 0
        seen.add((config.conv, config.model.heads))
        study.tell(trial, 0.0)
    assert {("gen", None), ("sage", None), ("gcn", None), ("gat", 3)} <= seen


def test_search_space_refuses_heads_without_gat() -> None:
    import tomllib

    from bench.tuning.params import SearchSpaceError
    from bench.tuning.space import parse_search_space

    text = CONV_SPACE.replace('"gen", "gat", "sage", "gcn"', '"gen", "sage"')
    with pytest.raises(SearchSpaceError) as info:
        parse_search_space(tomllib.loads(text))
    assert "[space.heads]" in str(info.value)


# --- paper numbers and the benchmark flag -------------------------------------------------------
def test_arxiv_profile_has_the_papers_revgat_shape() -> None:
    from bench import paper
    from bench.harness.spec import load_spec

    revgat = next(p for p in paper.ARXIV if p.label == "RevGAT")
    assert (revgat.test_score, revgat.test_std, revgat.params) == (74.02, 0.18, None)
    points = [p for p in load_spec("conv").points("arxiv") if p.label == "RevGAT"]
    for pt in points:
        c = pt.config
        assert (c.conv, c.model.heads, c.layers, c.channels) == (
            revgat.conv,
            revgat.heads,
            revgat.layers,
            revgat.channels,
        )
    assert {p.config.arch for p in points} == {"res", "rev"}
    assert all(p not in paper.ALL_POINTS for p in paper.OTHER_DATASETS)


@pytest.mark.parametrize(
    ("argv", "flag"),
    [(["--conv", "sage"], "--conv"), (["--heads", "2"], "--heads"),
     (["--conv", "gat", "--heads", "3"], "--heads")],  # 3 does not divide 64 / 2
)  # fmt: skip
def test_benchmark_refuses_what_a_conv_cannot_do(
    argv: list[str], flag: str, capsys: pytest.CaptureFixture[str]
) -> None:
    import argparse

    from bench.instruments.benchmark.command import main
    from bench.instruments.benchmark.options import add_arguments

    parser = argparse.ArgumentParser()
    add_arguments(parser)
    assert main(parser.parse_args(argv)) == 2
    assert capsys.readouterr().err.startswith(flag)
