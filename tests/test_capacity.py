"""``python -m bench capacity``: the deepest (widest) model of each arch that the memory model
fits in a memory size, checked at both sides of every boundary; DEQ and weight-tied RevGNN are
flat in depth; ``--verify`` confirms the boundaries on CPU against real trials."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import pytest
import torch
from torch_geometric.data import Data
from torch_geometric.utils import to_undirected

from bench import cli
from bench.config import TrialConfig
from bench.data import load
from bench.instruments.capacity import TOLERANCE, largest_fitting
from bench.measure.memory_model import predict, sizes_for
from bench.models import archs as arch_registry

MiB = 2**20


@pytest.fixture(scope="module")
def small_graph(tmp_path_factory: pytest.TempPathFactory) -> str:
    """200 nodes, 8 features, 3 classes: trials on it take seconds."""
    gen = torch.Generator().manual_seed(0)
    n = 200
    x = torch.randn(n, 8, generator=gen)
    edge_index = to_undirected(torch.randint(0, n, (2, 800), generator=gen), num_nodes=n)
    path = tmp_path_factory.mktemp("capacity") / "small.pt"
    torch.save(Data(x=x, edge_index=edge_index, y=x[:, :3].argmax(1)), path)
    return str(path)


def capacity(capsys: pytest.CaptureFixture[str], *flags: str) -> tuple[int, dict[str, Any]]:
    code = cli.main(["capacity", *flags, "--json"])
    out = capsys.readouterr().out.strip().splitlines()
    return code, json.loads(out[-1]) if code in (0, 1) else {}


@pytest.mark.parametrize(
    "peak",
    [
        lambda v: 1000 + 37 * v,  # affine (res, ckpt, rev in depth)
        lambda v: 5 * v * v + 3 * v,  # quadratic (width)
        lambda v: 10 * (v // 7),  # plateaus
        lambda v: int(1000 * math.sqrt(v)),  # concave
        lambda v: 500,  # flat
    ],
    ids=["affine", "quadratic", "steps", "concave", "flat"],
)
def test_largest_fitting_agrees_with_a_scan(peak: Any) -> None:
    for budget in (0, 499, 500, 1_234, 5_000, 40_000, 10**9):
        expected = max((v for v in range(1, 501) if peak(v) <= budget), default=None)
        assert largest_fitting(peak, budget, 1, 500) == expected, budget


def test_largest_fitting_needs_few_predictions_where_the_model_is_affine() -> None:
    calls: list[int] = []

    def peak(v: int) -> int:
        calls.append(v)
        return 12_345 + 208_000 * v

    assert largest_fitting(peak, 64 * MiB, 1, 10_000) == (64 * MiB - 12_345) // 208_000
    assert len(set(calls)) <= 5


def test_deepest_depth_per_arch_on_a_graph_file(
    small_graph: str, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out = capacity(
        capsys, "--dataset", small_graph, "--target-memory", "64MiB", "--device", "cpu"
    )
    assert code == 0 and out["target_memory_bytes"] == 64 * MiB and out["search"] == "depth"
    assert out["dataset_hash"] and "accuracy" in out["dataset_summary"]
    rows = {(r["arch"], r["channels"]): r for r in out["rows"]}
    assert {a for a, _ in rows} == set(arch_registry.names()) and {c for _, c in rows} == {
        64,
        128,
        256,
    }
    config = TrialConfig.from_dict({"dataset": small_graph})
    sizes = sizes_for(config, load(small_graph))
    for (arch, channels), row in rows.items():
        assert row["error"] is None
        if arch in ("deq", "wt-rev"):  # memory flat in depth: any depth fits
            assert row["bound"] == "flat" and not row["depth_costs_memory"], row
            assert row["layers"] is None and "no memory" in row["note"]
            continue
        assert row["bound"] == "boundary", row
        deepest = row["layers"]
        point = config.replace(arch=arch, channels=channels, layers=deepest)
        fits, over = predict(point, sizes), predict(point.replace(layers=deepest + 1), sizes)
        assert fits.total_bytes == row["predicted_peak_bytes"] <= 64 * MiB < over.total_bytes
        assert row["params"] == fits.params and row["over"]["layers"] == deepest + 1
    for channels in (64, 128, 256):  # the paper's point: RevGNN goes deeper than ResGNN
        assert rows["res", channels]["layers"] < rows["rev", channels]["layers"]


def test_widest_width_at_a_depth_and_a_gpu_from_any_machine(
    small_graph: str, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out = capacity(
        capsys,
        "--dataset",
        small_graph,
        "--target-memory",
        "64MiB",
        "--device",
        "cuda",
        "--layers",
        "16",
        "--archs",
        "res,rev",
    )
    assert code == 0 and out["device"] == "cuda" and out["search"] == "width"
    config = TrialConfig.from_dict({"dataset": small_graph, "device": "cuda"}, check_device=False)
    sizes = sizes_for(config, load(small_graph))
    widths = {}
    for row in out["rows"]:
        widest = row["channels"]
        assert widest % 8 == 0 and row["layers"] == 16
        point = TrialConfig.from_dict(
            {
                "dataset": small_graph,
                "device": "cuda",
                "arch": row["arch"],
                "layers": 16,
                "channels": widest,
            },
            check_device=False,
        )
        wider = TrialConfig.from_dict(
            {**point.to_dict(), "channels": widest + 8}, check_device=False
        )
        assert predict(point, sizes).total_bytes <= 64 * MiB < predict(wider, sizes).total_bytes
        widths[row["arch"]] = widest
    assert widths["res"] < widths["rev"]


def test_bad_input_is_one_line_and_exit_2(
    small_graph: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bad = tmp_path / "bad.pt"
    torch.save({"x": torch.ones(3)}, bad)
    cpu = ["--device", "cpu", "--target-memory", "1GB"]
    cases = [
        ([*cpu, "--archs", "res,nope"], "--archs"),
        ([*cpu, "--channels", "64,x"], "--channels"),
        ([*cpu, "--set", "layers=3"], "--set"),
        ([*cpu, "--set", "unknown_field=1"], "--set: unknown_field"),
        ([*cpu, "--set", "groups=0"], "--set: groups=0"),
        (["--device", "cpu", "--target-memory", "lots"], "--target-memory"),
        ([*cpu, "--dataset", str(bad)], "not a torch_geometric.data.Data"),
    ]
    if not torch.cuda.is_available():
        cases.append((["--device", "cuda"], "--target-memory"))
        cases.append((["--device", "cuda", "--target-memory", "8GB", "--verify"], "--verify"))
    for flags, named in cases:
        assert cli.main(["capacity", "--dataset", small_graph, *flags]) == 2, flags
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and named in err[0], (flags, err)


@pytest.mark.slow
def test_verify_confirms_the_boundaries_with_real_trials_on_cpu(
    small_graph: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """The deepest ResGNN and RevGNN that fit 64 MiB, and one layer more, trained for real in
    their own processes: the first measures under the target, the second over it (so the
    boundary is confirmed), and the meter agrees with the model within its tolerance. (Wide
    and shallow, 512 channels at 3-8 layers: the boundary costs the same memory in few ops.)"""
    code, out = capacity(
        capsys,
        "--dataset",
        small_graph,
        "--target-memory",
        "64MiB",
        "--device",
        "cpu",
        "--archs",
        "res,rev",
        "--channels",
        "512",
        "--set",
        "train_parts=2",
        "--verify",
    )
    checks = [c for row in out["rows"] for c in row["verify"]]
    assert code == 0, checks
    assert [(c["arch"], c["point"]) for c in checks] == [
        ("res", "fits"),
        ("res", "does not fit"),
        ("rev", "fits"),
        ("rev", "does not fit"),
    ]
    for row in out["rows"]:
        fits, over = row["verify"]
        assert over["layers"] == fits["layers"] + 1 == row["layers"] + 1
        assert fits["predicted_peak_bytes"] <= 64 * MiB < over["predicted_peak_bytes"]
        assert fits["measured_peak_bytes"] < over["measured_peak_bytes"]  # deeper, more memory
        assert fits["measured_peak_bytes"] <= 64 * MiB < over["measured_peak_bytes"]
        assert row["verdict"]["confirmed"], row["verdict"]
        for check in (fits, over):
            assert check["status"] == "ok" and check["confirmed"] and check["metered_steps"] >= 1
            assert check["meter"] == "cpu-live-tensors"
            ratio = check["predicted_peak_bytes"] / check["measured_peak_bytes"]
            assert 1 / TOLERANCE <= ratio <= TOLERANCE
            assert check["error"] == pytest.approx(ratio - 1)
