"""Weight tying (``tie``): the paper's counts, exact gradients, depth-independent parameters,
and the setting's path through config, CLI, spec keys, search spaces and the memory model."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys

import pytest
import torch
from torch import Tensor, nn

from bench import cli, paper
from bench.config import TrialConfig
from bench.errors import ConfigError
from bench.harness.spec import KEY_EXCLUDED_FIELDS, load_spec, point_key
from bench.measure.memory_model import GraphSizes, predict_params
from bench.measure.meters import count_parameters
from bench.models import archs as arch_registry
from bench.models import build_model
from bench.nn import ReversibleStack
from bench.tuning.params import SearchSpaceError
from bench.tuning.space import parse_search_space

# the paper's proteins input: 16 node features (8 summed edge features + 8 species one-hot),
# 8 edge features, 112 binary tasks
PROTEINS = GraphSizes(
    nodes=300, edges=3000, features=16, edge_dim=8, outputs=112,
    batch_nodes=30, batch_edges=30, batch_train_nodes=20,
)  # fmt: skip
# issue 18's table: 112 layers, untied first layer + one tied block (what the paper counts)
PAPER_COUNTS = {
    "WT-RevGNN-64": 34_928,
    "WT-RevGNN-80": 51_312,
    "WT-RevGNN-224": 337_008,
    "WT-ResGNN-64": 51_312,
}
ONE_BLOCK = {"WT-RevGNN-64": 22_000, "WT-ResGNN-64": 30_192}  # tie="all", for contrast


def _meta_count(arch: str, layers: int, channels: int, tie: str | None = None) -> int:
    with torch.device("meta"):
        model = build_model(arch, 16, 8, 112, layers, channels, groups=2, tie=tie)
    return count_parameters(model)


@pytest.mark.parametrize("label", sorted(PAPER_COUNTS))
def test_after_first_reproduces_the_papers_weight_tied_counts(label: str) -> None:
    pt = paper.point(label)
    ours = _meta_count(pt.arch, pt.layers, pt.channels, tie="after-first")
    assert ours == PAPER_COUNTS[label]
    assert ours == pytest.approx(pt.params, rel=0.0025)  # the paper prints 3 digits (35.0K)
    config = TrialConfig(arch=pt.arch, layers=pt.layers, channels=pt.channels)
    assert config.model.tie == "after-first"  # the default is the paper's count
    assert predict_params(config, PROTEINS) == ours
    if label in ONE_BLOCK:
        all_tied = _meta_count(pt.arch, pt.layers, pt.channels, tie="all")
        assert all_tied == ONE_BLOCK[label] and all_tied < 0.65 * pt.params


def test_report_compares_every_papers_count_with_ours() -> None:
    from bench.report.tables import parameter_count_rows

    rows = parameter_count_rows().set_index("quantity")
    assert rows.loc["WT-RevGNN-64 (L112) parameters", "ours"] == "34,928 (-0.21%)"
    assert "tie after-first" in rows.loc["WT-ResGNN-64 (L112) parameters", "our setting"]
    assert len(rows) == sum(p.params is not None for p in paper.ALL_POINTS)
    for quantity, text in rows["ours"].items():  # every count within 0.25% of the paper's
        assert abs(float(text.split("(")[1].rstrip("%)"))) <= 0.25, quantity


def test_dry_run_prints_the_papers_wt_revgnn_64_count() -> None:
    """The issue's acceptance command, as a user runs it (synthetic proteins: 16 features)."""
    argv = ["--arch", "wt-rev", "--layers", "112", "--channels", "64", "--tie", "after-first",
            "--dataset-option", "num_tasks=112", "--dry-run"]  # fmt: skip
    proc = subprocess.run(
        [sys.executable, "-m", "bench", "trial", *argv],
        capture_output=True, text=True, timeout=300, env={**os.environ, "OMP_NUM_THREADS": "1"},
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert "parameters:   34,928" in proc.stdout


@pytest.mark.parametrize("arch", ["wt-res", "wt-rev"])
def test_after_first_count_equals_a_two_layer_untied_model_at_every_depth(arch: str) -> None:
    untied = arch.removeprefix("wt-")
    for channels in (16, 64):
        two = _meta_count(untied, 2, channels)
        for layers in (2, 3, 4, 5, 8, 17, 112, 1001):
            assert _meta_count(arch, layers, channels, tie="after-first") == two, (layers, channels)
        # tie="all" is one block: a 1-layer untied model, at every depth
        one = _meta_count(untied, 1, channels)
        for layers in (1, 2, 7, 112):
            assert _meta_count(arch, layers, channels, tie="all") == one
        assert _meta_count(arch, 1, channels, tie="after-first") == one  # nothing to tie yet


@pytest.mark.parametrize("arch", ["wt-res", "wt-rev"])
@pytest.mark.parametrize("tie", arch_registry.TIES)
def test_memory_model_counts_tied_models_exactly(arch: str, tie: str) -> None:
    for layers in (1, 2, 3, 4, 7, 112):  # > 3: the depth extrapolation path
        config = TrialConfig(arch=arch, layers=layers, channels=12, groups=3, tie=tie)
        with torch.device("meta"):
            model = build_model(arch, 16, 8, 112, layers, 12, groups=3, tie=tie)
        assert predict_params(config, PROTEINS) == count_parameters(model), layers


# --- gradients ----------------------------------------------------------------------------------
def _max_rel_err(a: Tensor, b: Tensor) -> float:
    return ((a - b).abs().max() / b.abs().max().clamp_min(1e-300)).item()


def _unique_groups(stack: ReversibleStack) -> list[nn.Module]:
    return list({id(f): f for block in stack.blocks for f in block}.values())


@pytest.mark.parametrize("tie", arch_registry.TIES)
@pytest.mark.parametrize("groups", [2, 3, 4])
def test_wt_rev_gradients_equal_unrolled_autograd_float64(tie: str, groups: int) -> None:
    """The engine's gradients (inputs rebuilt from outputs, shared weights summed over layers)
    equal plain autograd through an independently written unrolled stack whose layer 0 uses
    the first block and every later layer the shared one (or, for "all", one block)."""
    torch.manual_seed(groups)
    n, layers, channels = 12, 4, 12
    g = torch.Generator().manual_seed(0)
    edge_index = torch.randint(0, n, (2, 40), generator=g)
    model = build_model("wt-rev", 5, 8, 3, layers, channels, groups=groups, dropout=0.3, tie=tie)
    stack: ReversibleStack = model.double().stack
    distinct = _unique_groups(stack)
    assert len(distinct) == groups * (2 if tie == "after-first" else 1)
    first, shared = distinct[:groups], distinct[-groups:]
    masks: dict[int, list[Tensor]] = {}

    def hook(module: nn.Module, args: tuple, kwargs: dict) -> None:
        masks.setdefault(id(module), []).append(kwargs["dropout_mask"])

    for f in distinct:
        f.register_forward_pre_hook(hook, with_kwargs=True)
    h = torch.randn(n, channels, dtype=torch.float64, requires_grad=True)
    e = torch.randn(40, channels, dtype=torch.float64, requires_grad=True)
    w = torch.randn(n, channels, dtype=torch.float64)
    params = list(stack.parameters())
    assert len(params) == sum(len(list(f.parameters())) for f in distinct)  # each tensor once
    out = stack(h, edge_index, e)
    grads = torch.autograd.grad((out * w).sum(), [h, e, *params])
    # the masks each module got, in call order: the forward's uses first, then the backward's
    forward_masks = {key: list(v) for key, v in masks.items()}

    def ref_stack() -> Tensor:
        taken = {key: 0 for key in forward_masks}
        xs = list(h.chunk(groups, dim=-1))
        for layer in range(layers):
            fs = first if layer == 0 else shared
            prev = sum(xs[1:])
            ys = []
            for i in range(groups):
                key = id(fs[i])
                mask = forward_masks[key][taken[key]]
                taken[key] += 1
                prev = xs[i] + fs[i](prev, edge_index, e, dropout_mask=mask)
                ys.append(prev)
            xs = ys
        return torch.cat(xs, dim=-1)

    ref_out = ref_stack()
    ref = torch.autograd.grad((ref_out * w).sum(), [h, e, *params])
    assert _max_rel_err(out, ref_out) <= 1e-12
    names = ["x", "edge_embedding"] + [name for name, _ in stack.named_parameters()]
    for name, a, b in zip(names, grads, ref, strict=True):
        assert _max_rel_err(a, b) <= 1e-9, name
    # the shared block really is shared: its gradient sums over the layers that use it
    assert all(p.grad is None for p in params)
    shared_grad = grads[2 + [id(p) for p in params].index(id(next(shared[0].parameters())))]
    assert shared_grad.abs().sum() > 0


@pytest.mark.parametrize("tie", arch_registry.TIES)
def test_wt_res_gradients_equal_unrolled_autograd_float64(tie: str) -> None:
    torch.manual_seed(0)
    n, layers, channels = 12, 4, 8
    g = torch.Generator().manual_seed(0)
    x = torch.randn(n, 5, dtype=torch.float64, generator=g)
    edge_index = torch.randint(0, n, (2, 40), generator=g)
    edge_attr = torch.randn(40, 8, dtype=torch.float64, generator=g)
    model = build_model("wt-res", 5, 8, 3, layers, channels, tie=tie).double()
    assert len(model.blocks) == (2 if tie == "after-first" else 1)
    params = list(model.parameters())
    grads = torch.autograd.grad(model(x, edge_index, edge_attr).square().sum(), params)

    def reference() -> Tensor:  # the same network, wired by hand
        h = model.node_encoder(x)
        e = model.edge_encoder(edge_attr)
        for layer in range(layers):
            block = model.blocks[0] if layer == 0 else model.blocks[-1]
            h = h + block(h, edge_index, e)
        return model.head(torch.relu(model.head_norm(h)))

    ref = torch.autograd.grad(reference().square().sum(), params)
    for (name, _), a, b in zip(model.named_parameters(), grads, ref, strict=True):
        assert _max_rel_err(a, b) <= 1e-12, name
    if tie == "after-first":  # two distinct blocks, each initialised on its own
        first, shared = (b.conv.mlp[0].weight for b in model.blocks)
        assert first is not shared and not torch.equal(first, shared)


# --- the setting's path -------------------------------------------------------------------------
def test_config_refuses_tie_for_untied_archs_and_unknown_values() -> None:
    for arch in ("res", "rev", "ckpt", "deq"):
        with pytest.raises(ConfigError) as info:
            TrialConfig(arch=arch, tie="all").validated()
        assert info.value.field == "tie" and "wt-res or wt-rev" in info.value.message
        assert TrialConfig(arch=arch).model.tie is None
    with pytest.raises(ConfigError) as info:
        TrialConfig(arch="wt-rev", tie="first").validated()
    assert info.value.field == "tie"
    with pytest.raises(ConfigError, match="weight-tying"):
        build_model("rev", 5, 8, 3, 4, 8, tie="all")
    with pytest.raises(ConfigError, match="after-first"):
        build_model("wt-res", 5, 8, 3, 4, 8, tie="none")


def test_cli_refuses_tie_for_untied_arch_naming_the_flag(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert cli.main(["trial", "--arch", "rev", "--tie", "all", "--json"]) == 2
    err = capsys.readouterr().err
    assert "--tie" in err and "weight-tying" in err


def test_records_and_keys_carry_the_resolved_tie() -> None:
    default = TrialConfig(arch="wt-rev")
    explicit = TrialConfig(arch="wt-rev", tie="after-first")
    assert default.to_dict()["tie"] == "after-first"
    assert point_key(default) == point_key(explicit)
    assert point_key(default) != point_key(explicit.replace(tie="all"))
    assert TrialConfig.from_dict(default.to_dict()).model.tie == "after-first"
    # untied archs: the key is what it was before the field existed (stored points stay found)
    res = TrialConfig(arch="res", layers=8)
    old = {  # what the key hashes: set settings (None is unset), precision at its default left out
        k: v
        for k, v in res.to_dict().items()
        if k not in (*KEY_EXCLUDED_FIELDS, "tie", "precision", "conv", "compile") and v is not None
    }
    blob = json.dumps(old, sort_keys=True, default=str)
    assert point_key(res) == hashlib.sha256(blob.encode()).hexdigest()[:16]


def test_weight_tying_ablation_shows_both_tie_modes() -> None:
    spec = load_spec("weight-tying")
    for profile in spec.profiles:
        points = spec.points(profile)
        seen = {(p.config.arch, p.config.model.tie) for p in points}
        # the paper's profiles use the paper's tying, and so does the quick smoke run;
        # the others compare both modes
        ties = (
            ("after-first",)
            if profile.startswith("paper") or profile == "quick"
            else arch_registry.TIES
        )
        assert seen == {(a, t) for a in ("wt-res", "wt-rev") for t in ties}, profile
        # depths start at 2: an after-first model's count is constant from there on
        assert min(p.config.layers for p in points) >= 2


SPACE = """
description = "tie"
[base]
dataset = "synthetic-proteins"
[space]
arch = { choices = ["res", "wt-res", "wt-rev"] }
tie = { choices = ["after-first", "all"] }
lr = { low = 1e-4, high = 1e-2, log = true }
"""


def test_search_space_samples_tie_for_tied_archs_only() -> None:
    import optuna
    import tomllib

    space = parse_search_space(tomllib.loads(SPACE))
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    seen = set()
    for _ in range(60):
        trial = study.ask()
        config = space.suggest(trial).config
        assert ("tie" in trial.params) == config.architecture.tied
        if config.architecture.tied:
            assert config.tie == trial.params["tie"]
        seen.add((config.arch, config.model.tie))
        study.tell(trial, 0.0)
    assert {("wt-rev", "all"), ("wt-rev", "after-first"), ("res", None)} <= seen


@pytest.mark.parametrize(
    ("text", "key"),
    [
        (SPACE.replace('"res", "wt-res", "wt-rev"', '"res", "rev"'), "space.tie"),
        (SPACE.replace('"after-first", "all"', '"after-first", "some"'), "space.tie.choices"),
    ],
)
def test_search_space_refuses_bad_tie(text: str, key: str) -> None:
    import tomllib

    with pytest.raises(SearchSpaceError) as info:
        parse_search_space(tomllib.loads(text))
    assert f"[{key}]" in str(info.value)
