"""Mixed precision end to end: the ``precision`` setting (flag, key, search space, memory model),
a bf16 trial that trains on CPU, fp16 refused on CPU before any data is loaded."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from bench import cli
from bench.config import TrialConfig
from bench.harness.spec import point_key
from bench.measure.memory_model import GraphSizes, predict
from bench.measure.precision import MixedPrecision
from bench.models import archs as arch_registry
from bench.trial import run_trial
from bench.tuning.params import SearchSpaceError
from bench.tuning.space import parse_search_space

SIZES = GraphSizes(
    nodes=3000, edges=70000, features=16, edge_dim=8, outputs=32,
    batch_nodes=300, batch_edges=7000, batch_train_nodes=180,
)  # fmt: skip


@pytest.fixture
def no_training(monkeypatch: pytest.MonkeyPatch) -> None:
    def forbidden(*args: object, **kwargs: object) -> None:
        raise AssertionError("training/data loading started for bad input")

    monkeypatch.setattr("bench.trial.training._train", forbidden)
    monkeypatch.setattr("bench.trial.flags.run_trial_isolated", forbidden)
    monkeypatch.setattr("bench.data.load", forbidden)


@pytest.mark.parametrize(
    ("argv", "words"),
    [
        (["--precision", "fp16"], "on CPU use bf16"),
        (["--precision", "fp16", "--device", "cpu"], "on CPU use bf16"),
        (["--precision", "fp8"], "choose one of fp32, bf16, fp16"),
    ],
)
def test_bad_precision_is_refused_naming_the_flag(
    argv: list[str], words: str, no_training: None, capsys: pytest.CaptureFixture[str]
) -> None:
    assert cli.main(["trial", *argv, "--json"]) == 2
    err = capsys.readouterr().err
    assert "--precision" in err and words in err


def test_bf16_trial_trains_on_the_default_dataset(capsys: pytest.CaptureFixture[str]) -> None:
    """``python -m bench trial --precision bf16 --epochs 2 --layers 8`` on a smaller default
    graph: a complete record, and the training loss falls."""
    argv = ["trial", "--precision", "bf16", "--epochs", "2", "--layers", "8", "--channels", "32",
            "--dataset-option", "num_nodes=300", "--no-progress", "--json"]  # fmt: skip
    assert cli.main(argv) == 0
    record = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert record["status"] == "ok", record["error"]
    assert record["config"]["precision"] == "bf16"
    assert record["config"]["dataset"] == "synthetic-proteins"
    losses = [point["loss"] for point in record["curve"]]
    assert len(losses) == 2 and losses[1] < losses[0], losses


@pytest.mark.parametrize("arch", arch_registry.names())
def test_every_arch_runs_in_bf16(arch: str) -> None:
    config = TrialConfig(arch=arch, layers=3, channels=8, epochs=1, train_parts=2, eval_parts=1,
                         precision="bf16", dataset_options={"num_nodes": 200})  # fmt: skip
    record = run_trial(config)
    assert record.status == "ok", record.error
    assert record.config["precision"] == "bf16"
    assert record.curve[0]["loss"] > 0


def test_default_precision_keeps_the_stored_points_keys() -> None:
    """Points stored before the field existed keep their keys; other precisions differ."""
    import hashlib

    # (the stored points ran PyG's aggregation: the default "fused" gives new keys, test_aggr)
    config = TrialConfig(arch="rev", layers=4, aggr_impl="pyg")
    before = {k: v for k, v in config.to_dict().items() if k not in ("device", "data_root")}
    del (
        before["precision"],
        before["aggr_impl"],
        before["conv"],
        before["compile"],
    )  # what the key hashed before the fields
    before = {k: v for k, v in before.items() if v is not None}  # unset settings: not hashed
    blob = json.dumps(before, sort_keys=True, default=str)
    assert point_key(config) == hashlib.sha256(blob.encode()).hexdigest()[:16]
    assert point_key(config.replace(precision="bf16")) != point_key(config)


def test_memory_model_predicts_bf16_activations() -> None:
    """res keeps everything in bf16 (its body's activations halve); a reversible stack keeps
    its stream float32, so only the encoders' share shrinks; model state is unchanged."""
    for arch in ("res", "ckpt", "rev", "deq"):
        fp32 = predict(TrialConfig(arch=arch, layers=16), SIZES)
        bf16 = predict(TrialConfig(arch=arch, layers=16, precision="bf16"), SIZES)
        assert bf16.model_state_bytes == fp32.model_state_bytes
        assert bf16.activation_bytes < fp32.activation_bytes, arch
        if arch == "res":  # the fused aggregation's int64 argmax keeps 8 B in any precision
            assert bf16.activation_bytes < 0.6 * fp32.activation_bytes
            fp32, bf16 = (
                predict(TrialConfig(arch=arch, layers=16, precision=p, aggr_impl="pyg"), SIZES)
                for p in ("fp32", "bf16")
            )
            assert bf16.activation_bytes == pytest.approx(fp32.activation_bytes / 2, rel=0.01)
        if arch == "rev":
            assert bf16.activation_bytes > 0.7 * fp32.activation_bytes


def test_search_space_takes_precision_choices() -> None:
    raw = {"base": {"device": "cpu"}, "space": {"precision": {"choices": ["fp32", "bf16"]}}}
    assert "precision" in parse_search_space(raw).params
    raw["space"]["precision"] = {"choices": ["fp32", "fp8"]}
    with pytest.raises(SearchSpaceError) as err:
        parse_search_space(raw)
    assert "space.precision" in str(err.value)


def test_mixed_precision_helper() -> None:
    lin = torch.nn.Linear(4, 4)
    x = torch.randn(3, 4)
    fp32 = MixedPrecision.for_config("fp32", "cpu")
    bf16 = MixedPrecision.for_config("bf16", "cpu")
    assert fp32.scaler is None and bf16.scaler is None
    with fp32.autocast():
        assert lin(x).dtype == torch.float32
    with bf16.autocast():
        assert lin(x).dtype == torch.bfloat16
    optimizer = torch.optim.SGD(lin.parameters(), lr=0.1)
    before = lin.weight.detach().clone()
    with bf16.autocast():
        loss = lin(x).float().square().sum()
    bf16.backward(loss)
    bf16.unscale(optimizer)
    bf16.step(optimizer)
    assert lin.weight.dtype == torch.float32 and not torch.equal(lin.weight, before)
    with pytest.raises(ValueError, match="fp8"):
        MixedPrecision.for_config("fp8", "cpu")


@pytest.mark.skipif(not torch.cuda.is_available(), reason="fp16's gradient scaler needs CUDA")
def test_fp16_trial_on_cuda_uses_a_gradient_scaler() -> None:
    amp = MixedPrecision.for_config("fp16", "cuda")
    assert amp.scaler is not None and amp.dtype == torch.float16
    config = TrialConfig(arch="rev", layers=8, channels=16, epochs=2, train_parts=2,
                         eval_parts=1, device="cuda", precision="fp16",
                         dataset_options={"num_nodes": 300})  # fmt: skip
    record = run_trial(config)
    assert record.status == "ok", record.error
    assert record.curve[-1]["loss"] < record.curve[0]["loss"]


def test_drift_command_writes_a_table_the_figure_reads(tmp_path: Path) -> None:
    from bench.instruments.drift import COLUMNS
    from bench.report.drift import drift_figure, read_drift

    out = tmp_path / "drift" / "drift.csv"
    argv = ["drift", "--layers", "12", "--channels", "8", "--nodes", "30", "--edges", "90",
            "--seeds", "0,1", "--out", str(out)]  # fmt: skip
    assert cli.main(argv) == 0
    table = read_drift(out)
    assert tuple(table.columns) == COLUMNS
    assert len(table) == 2 * 2 * 2 * 12  # archs x precisions x seeds x layers
    assert set(table["precision"]) == {"fp32", "bf16"} and set(table["inverted"]) == set(
        range(1, 13)
    )
    assert (table["rel_error"] < 1e-3).all()  # 12 layers: rounding-level drift in both
    files = drift_figure(table, tmp_path / "fig")
    assert all(f.stat().st_size > 0 for f in files)


@pytest.mark.parametrize(
    ("argv", "flag"),
    [
        (["--archs", "res"], "--archs"),
        (["--precisions", "fp16"], "--precisions"),
        (["--precisions", "fp8"], "--precisions"),
        (["--groups", "3"], "--groups"),
        (["--seeds", "a"], "--seeds"),
    ],
)
def test_drift_bad_flags_exit_2(
    argv: list[str], flag: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert cli.main(["drift", *argv]) == 2
    assert flag in capsys.readouterr().err
