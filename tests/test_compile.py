"""``compile=True``: the fused aggregation is a custom op torch.compile can trace (opcheck), a
block compiles into one graph for every conv, compiled gradients equal eager ones (float64),
compile work does not grow with depth, and the setting runs end to end (trial, spec key,
benchmark) with compile time kept apart from step time."""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import json

import pytest
import torch
import torch._dynamo
import torch._inductor.config
import torch.nn.functional as F
from torch import Tensor

from bench.config import TrialConfig
from bench.harness.spec import KEY_EXCLUDED_FIELDS, KEY_NEUTRAL, KEYED_FIELDS, point_key
from bench.instruments.benchmark.graph import GraphSource
from bench.instruments.benchmark.plan import point_args
from bench.instruments.benchmark.point import measure_one
from bench.models import ModelConfig, build_model
from bench.models.blocks import ResPlusBlock
from bench.models.compiled import CompileClock, compile_blocks
from bench.models.convs import prepare_edges
from bench.models.deq import DEQBlock
from bench.trial import add_arguments, config_from_args, run_trial

pytestmark = pytest.mark.slow  # each compilation takes seconds on a CPU

EDGE_DIM = {"gen": 8, "gat": 8, "sage": None, "gcn": None}


def _graph(conv: str, n: int = 40, e: int = 200, dtype: torch.dtype = torch.float32) -> tuple:
    g = torch.Generator().manual_seed(0)
    x = torch.randn(n, 5, generator=g, dtype=dtype)
    edge_index = torch.randint(0, n, (2, e), generator=g)
    edge_attr = torch.randn(e, 8, generator=g, dtype=dtype) if EDGE_DIM[conv] else None
    y = (torch.rand(n, 3, generator=g) < 0.5).to(dtype)
    return x, edge_index, edge_attr, y


@pytest.mark.parametrize("grad", [True, False])
def test_fused_aggregation_custom_ops_pass_opcheck(grad: bool) -> None:
    """torch.library's own checks: schema, fake (meta) implementation, autograd registration
    and tracing through AOTAutograd, for both ops (with and without an argmax to save)."""
    g = torch.Generator().manual_seed(0)
    msg = torch.randn(50, 4, generator=g, dtype=torch.float64, requires_grad=grad)
    index = torch.randint(0, 12, (50,), generator=g)
    op = torch.ops.bench.relu_max if grad else torch.ops.bench.relu_max_values
    torch.library.opcheck(op, (msg, index, 12, 1e-7))


@pytest.mark.parametrize("conv", ["gen", "gat", "sage", "gcn"])
def test_a_block_compiles_into_one_graph(conv: str) -> None:
    """No graph break inside a block, with and without grad (the reversible forward runs its
    functions under no_grad), for every conv; and for the DEQ block."""
    n = 40
    _, edge_index, edge_attr, _ = _graph(conv, n)
    edge_attr = torch.randn(edge_index.shape[1], 16) if EDGE_DIM[conv] else None
    edge_index, edge_attr = prepare_edges(conv, edge_index, edge_attr, n, torch.float32)
    config = ModelConfig(arch="res", channels=16, dropout=0.1, conv=conv,
                         heads=2 if conv == "gat" else None)  # fmt: skip
    block = ResPlusBlock(config, 16, 16 if EDGE_DIM[conv] else None)
    x = torch.randn(n, 16, requires_grad=True)
    mask = torch.ones(n, 16)
    for grad in (True, False):
        with torch.set_grad_enabled(grad):
            torch._dynamo.reset()
            found = torch._dynamo.explain(block)(x, edge_index, edge_attr, dropout_mask=mask)
        assert found.graph_break_count == 0 and found.graph_count == 1, found.break_reasons
    if conv == "gen":
        deq = DEQBlock(ModelConfig(arch="deq", channels=16), 16)
        torch._dynamo.reset()
        found = torch._dynamo.explain(deq)(x, x.detach(), edge_index, edge_attr, mask)
        assert found.graph_break_count == 0 and found.graph_count == 1, found.break_reasons


CASES = [(a, "gen") for a in ("res", "ckpt", "rev", "wt-rev", "deq")] + [
    ("rev", conv) for conv in ("gat", "sage", "gcn")
]


@pytest.mark.parametrize(("arch", "conv"), CASES)
def test_compiled_outputs_and_gradients_equal_eager_float64(arch: str, conv: str) -> None:
    """One training forward + backward with dropout, compiled against eager from the same
    weights and seed: outputs and every gradient agree to float64 round-off (fused kernels
    reassociate sums). A second model three times deeper compiles nothing new.

    Dropout inside a compiled block (res, ckpt: the reversible and DEQ engines draw their
    masks outside it) comes from inductor's own random stream; ``fallback_random`` makes it
    draw eager's masks, so the two runs compare exactly. (Only there: with it, torch 2.13
    computes wrong vjps when DEQ's adjoint solve backpropagates through a compiled graph
    repeatedly, a setting production never uses.)"""
    x, edge_index, edge_attr, y = _graph(conv, dtype=torch.float64)
    deq = {"deq_max_iter": 60, "deq_tol": 1e-10} if arch == "deq" else {}

    def make(layers: int) -> torch.nn.Module:
        torch.manual_seed(0)
        model = build_model(
            arch, 5, EDGE_DIM[conv], 3, layers, 8, dropout=0.2, conv=conv,
            heads=2 if conv == "gat" else None, **deq,
        ).double()  # fmt: skip
        if arch == "deq":
            with torch.no_grad():
                for p in model.block.parameters():
                    p.mul_(0.3)
        return model

    def run(model: torch.nn.Module) -> tuple[Tensor, list[Tensor]]:
        torch.manual_seed(1)
        out = model(x, edge_index, edge_attr)
        loss = F.binary_cross_entropy_with_logits(out, y)
        return out, list(torch.autograd.grad(loss, list(model.parameters())))

    eager, compiled = make(2), make(2)
    torch._dynamo.reset()  # compile here, whatever earlier tests compiled
    assert compile_blocks(compiled) > 0
    eager_rng = torch._inductor.config.patch(fallback_random=arch in ("res", "ckpt"))
    with CompileClock() as clock, eager_rng:
        out, grads = run(compiled)
    assert clock.compilations > 0 and clock.seconds > 0
    ref_out, ref_grads = run(eager)
    torch.testing.assert_close(out, ref_out, rtol=1e-10, atol=1e-12)
    for g, r in zip(grads, ref_grads, strict=True):
        torch.testing.assert_close(g, r, rtol=1e-9, atol=1e-12)
    deeper = make(6)
    compile_blocks(deeper)
    with CompileClock() as again, eager_rng:
        run(deeper)
    assert again.compilations == 0  # blocks of one shape share their compiled graphs


def test_checkpointing_replays_a_compiled_blocks_own_dropout() -> None:
    """With inductor's own random stream, ``ckpt``'s recomputation of a compiled block draws
    the forward's dropout masks again: its gradients equal compiled ``res``'s, mask for mask."""
    x, edge_index, edge_attr, y = _graph("gen", dtype=torch.float64)
    grads = []
    for arch in ("res", "ckpt"):
        torch.manual_seed(0)
        model = build_model(arch, 5, 8, 3, 3, 8, dropout=0.3).double()
        compile_blocks(model)
        torch.manual_seed(1)
        loss = F.binary_cross_entropy_with_logits(model(x, edge_index, edge_attr), y)
        grads.append(torch.autograd.grad(loss, list(model.parameters())))
    for a, b in zip(*grads, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-12)


def test_trial_flag_records_compile_time_apart_and_keeps_point_keys(tmp_path: object) -> None:
    """``--compile true`` (a TrialConfig field, a spec key): the record has its compile time,
    and the steps that compiled are not in the step time. A config at the default keeps the
    key it had before the field existed."""
    values = TrialConfig().to_dict()
    del values["compile"]
    kept = {k: v for k, v in values.items() if k not in KEY_EXCLUDED_FIELDS and v is not None}
    for f in dataclasses.fields(TrialConfig):
        if f.name not in KEYED_FIELDS and kept.get(f.name) == KEY_NEUTRAL.get(f.name, f.default):
            kept.pop(f.name, None)
    blob = json.dumps(kept, sort_keys=True, default=str)
    assert point_key(TrialConfig()) == hashlib.sha256(blob.encode()).hexdigest()[:16]
    assert point_key(TrialConfig(compile=True)) != point_key(TrialConfig())

    parser = argparse.ArgumentParser()
    add_arguments(parser)
    config = config_from_args(parser.parse_args(["--compile", "true", "--arch", "rev",
        "--layers", "3", "--channels", "8", "--epochs", "2", "--train-parts", "3",
        "--eval-parts", "1", "--dataset-option", "num_nodes=120",
        "--dataset-option", "num_tasks=4"]))  # fmt: skip
    assert config.compile is True
    record = run_trial(config)
    assert record.status == "ok", record.error
    assert record.config["compile"] is True
    assert record.compile_time_s is not None and record.compile_time_s > 0
    assert record.step_time_s is not None  # epoch 2's steps after the one that compiled
    eager = run_trial(config.replace(compile=False))
    assert eager.compile_time_s is None
    assert record.params == eager.params
    # metered CPU steps run the blocks eagerly: the step adds what the eager trial's adds, up
    # to the bytes two trials in one process differ by (measured: 0-96 B of 45 KB; the
    # baseline alive at the step's entry varies by a few KB)
    assert abs(record.step_added_bytes - eager.step_added_bytes) <= 0.01 * eager.step_added_bytes


def test_benchmark_point_compiles_once_before_timing() -> None:
    """A compiled benchmark row: its compile time is a column, and no timed step compiled."""
    args = point_args(channels=8, compile=True, repeats=2, memory_cap=None)
    row = measure_one("rev", 3, GraphSource(60, 300, 8, 8, 3, 0), args, torch.device("cpu"))
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    assert row["status"] == "ok", row.get("error")
    assert row["compile"] is True and row["compile_time_s"] > 0 and row["recompiled_s"] == 0
    with pytest.raises(SystemExit):  # a flag value that is not true/false: argparse's exit 2
        parser.parse_args(["--compile", "maybe"])
