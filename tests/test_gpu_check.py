"""``python -m bench gpu-check``: the plan, its predictions, the CPU refusal, and the whole
measuring pipeline run under the CPU meter on a small batch (the CUDA run itself is tested
where CUDA exists)."""

from __future__ import annotations

import argparse
from pathlib import Path

import pandas as pd
import pytest
import torch

from bench import cli, paper
from bench.instruments import gpu_check
from bench.instruments.benchmark.graph import GraphSource, save_graph, synthetic_graph
from bench.instruments.benchmark.plan import point_args
from bench.instruments.benchmark.point import measure_isolated


def _args(tmp_path: Path, **over: object) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    gpu_check.add_arguments(parser)
    args = parser.parse_args(["--out", str(tmp_path / "gpu"), "--work-dir", str(tmp_path / "w")])
    args.no_progress = True
    for key, value in over.items():
        setattr(args, key, value)
    return args


def test_plan_covers_figure1_depth_and_headline() -> None:
    points = gpu_check.plan_points()
    labels = [p.label for p in points]
    assert labels[: len(paper.FIGURE1)] == [p.label for p in paper.FIGURE1]  # the table first
    assert "RevGNN-64 x 1001" in labels and "RevGNN-Deep" in labels and "RevGNN-Wide" in labels
    assert any(p.group == "engines" and p.arch == "pyg-groupaddrev" for p in points)
    assert all(p.stop_series_on_oom for p in points if p.group == "depth" and p.arch == "res")


def test_dry_run_lists_predictions(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["gpu-check", "--dry-run", "--target-memory", "32GB"]) == 0
    out = capsys.readouterr().out
    assert "RevGNN-64" in out and "27.10" in out and "OOM" in out  # paper beside prediction
    rev = next(line for line in out.splitlines() if line.split()[2:3] == ["RevGNN-64"])
    assert rev.rstrip().endswith("yes")


def test_real_run_is_refused_without_cuda(capsys: pytest.CaptureFixture[str]) -> None:
    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA: the refusal only applies without it")
    assert cli.main(["gpu-check"]) == 2
    assert "no CUDA device" in capsys.readouterr().err


def test_child_builds_its_own_graph_from_a_file(tmp_path: Path) -> None:
    """The measured process loads the batch itself (no tensor crosses the process boundary)."""
    graph = synthetic_graph(60, 240, 8, 8, 4, seed=1)
    save_graph(graph, tmp_path / "g.pt")
    loaded = GraphSource(path=str(tmp_path / "g.pt")).load("cpu")
    assert torch.equal(loaded.edge_index, graph.edge_index) and torch.equal(loaded.y, graph.y)
    assert not (tmp_path / "g.pt.tmp").exists()  # written atomically
    args = point_args(channels=8, repeats=1, deep_repeats=1, depths=[4])
    row = measure_isolated("rev", 2, GraphSource(path=str(tmp_path / "g.pt")), args,
                           torch.device("cpu"), timeout=120)  # fmt: skip
    assert row["status"] == "ok", row
    # the metered step: baseline holds the graph and the model state; the split adds up
    graph_bytes = sum(t.numel() * t.element_size() for t in
                      (graph.x, graph.edge_index, graph.edge_attr, graph.y))  # fmt: skip
    assert row["baseline_bytes"] >= graph_bytes
    assert row["peak_bytes"] == max(row["fwd_bwd_peak_bytes"], row["optimizer_peak_bytes"])
    assert row["step_added_bytes"] == row["fwd_bwd_peak_bytes"] - row["baseline_bytes"]


@pytest.fixture
def small_paper_batch(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A tiny batch stands in for the proteins part the GPU check would cut."""
    small = tmp_path / "batch.pt"
    save_graph(synthetic_graph(80, 400, 8, 16, 112, seed=0), small)
    monkeypatch.setattr(gpu_check, "prepare_paper_batch", lambda work, log: small)


@pytest.mark.usefixtures("small_paper_batch")
def test_run_writes_csv_and_summary_and_keeps_to_its_budget(tmp_path: Path) -> None:
    args = _args(tmp_path, only=["RevGNN-64 x 3", "ResGNN-64 x 3", "RevGNN-64 x 28"],
                 skip_engines=True, repeats=1)  # fmt: skip
    lines: list[str] = []
    frame = gpu_check.run(args, log=lines.append, device="cpu")
    assert list(frame.label) == ["RevGNN-64 x 3", "RevGNN-64 x 28", "ResGNN-64 x 3"]
    assert (frame.status == "ok").all(), frame[["label", "status", "error"]]
    written = pd.read_csv(tmp_path / "gpu" / "gpu-check.csv")
    for column in ("peak_bytes", "baseline_bytes", "fwd_bwd_peak_bytes", "optimizer_peak_bytes",
                   "step_added_bytes", "predicted_peak_bytes", "step_time_s", "params"):  # fmt: skip
        assert written[column].notna().all(), column
    assert (written.params == written.predicted_params).all()  # the model counts exactly
    assert (written.commit_source == "run").all() and "commit" in written  # each row's code
    summary = (tmp_path / "gpu" / "SUMMARY.md").read_text()
    assert "## depth" in summary and "RevGNN-64 x 28" in summary
    # a budget too small for any point: everything is recorded as skipped, nothing runs
    args = _args(tmp_path, only=["RevGNN-64 x 3"], skip_engines=True, budget_s=1.0)
    frame = gpu_check.run(args, log=lines.append, device="cpu")
    assert list(frame.status) == ["skipped"] and "budget" in frame.error.iloc[0]


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_point_measures_allocator_peaks(tmp_path: Path) -> None:
    graph = synthetic_graph(2000, 20000, 8, 8, 112, seed=0)
    save_graph(graph, tmp_path / "g.pt")
    args = point_args(channels=32, repeats=1, deep_repeats=1, depths=[8])
    row = measure_isolated("rev", 8, GraphSource(path=str(tmp_path / "g.pt")), args,
                           torch.device("cuda"), timeout=300)  # fmt: skip
    assert row["status"] == "ok" and row["meter"] == "cuda-allocator"
    assert row["reserved_peak_bytes"] >= row["peak_bytes"] > row["baseline_bytes"] > 0
    assert row["setup_bytes"] > 0 and row["device_memory_bytes"] > row["peak_bytes"]
    assert row["deterministic"] is False


def test_memory_snapshot_is_refused_on_cpu(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["trial", "--memory-snapshot", "snap", "--epochs", "1"]) == 2
    assert "--memory-snapshot: needs --device cuda" in capsys.readouterr().err


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_memory_snapshot_is_written_on_cuda(tmp_path: Path) -> None:
    from bench.config import TrialConfig
    from bench.trial import run_trial

    config = TrialConfig(device="cuda", layers=2, channels=8, epochs=1, train_parts=2,
                         eval_parts=1, dataset_options={"num_nodes": 200})  # fmt: skip
    record = run_trial(config, memory_snapshot=str(tmp_path / "snap"))
    assert record.status == "ok", record.error
    assert (tmp_path / "snap" / "step.pickle").stat().st_size > 0


def test_merge_keeps_earlier_rows_and_their_device() -> None:
    """A second short lease (`--only ... --merge`) replaces only what it measured."""
    first = pd.DataFrame({
        "label": ["a", "b", "c"], "status": ["ok", "skipped", "skipped"],
        "peak_bytes": [1.0, None, None], "device": ["H100", "H100", "H100"],
    })  # fmt: skip
    second = pd.DataFrame({
        "label": ["a", "b", "d"], "status": ["skipped", "oom", "skipped"],
        "peak_bytes": [None, None, None], "device": ["H200"] * 3,
    })  # fmt: skip
    merged = gpu_check.merge_runs(first, second)
    assert list(merged.label) == ["a", "b", "c", "d"]
    assert list(merged.status) == ["ok", "oom", "skipped", "skipped"]
    assert list(merged.device) == ["H100", "H200", "H100", "H200"]
    assert merged.peak_bytes.iloc[0] == 1.0
    text = gpu_check.summary(merged.assign(group="g"), {"device": "H200"}, 1.0)
    assert "Devices: H100, H200" in text and "| device |" in text


@pytest.mark.usefixtures("small_paper_batch")
def test_merge_flag_keeps_the_csv_of_an_earlier_call(tmp_path: Path) -> None:
    base = {"skip_engines": True, "repeats": 1}
    gpu_check.run(_args(tmp_path, only=["RevGNN-64 x 3"], **base), log=print, device="cpu")
    gpu_check.run(_args(tmp_path, only=["ResGNN-64 x 3"], merge=True, **base), log=print,
                  device="cpu")  # fmt: skip
    written = pd.read_csv(tmp_path / "gpu" / "gpu-check.csv")
    assert list(written.label) == ["RevGNN-64 x 3", "ResGNN-64 x 3"]
    assert (written.status == "ok").all()
    gpu_check.run(_args(tmp_path, only=["ResGNN-64 x 3"], **base), log=print, device="cpu")
    assert list(pd.read_csv(tmp_path / "gpu" / "gpu-check.csv").label) == ["ResGNN-64 x 3"]


def test_plan_has_timing_rounds_and_dry_run_lists_them(capsys: pytest.CaptureFixture[str]) -> None:
    """The timing rows: res, rev and the peer at 112 layers on the proteins part and 64 on the
    engines graph, eager and compiled, round by round; ``--only timing profile`` lists them
    and the profile in a dry run."""
    points = [p for p in gpu_check.plan_points(timing_rounds=3) if p.group == "timing"]
    assert len(points) == 3 * 2 * 3 * 2 and len({p.label for p in points}) == len(points)
    assert {(p.arch, p.layers, p.graph) for p in points} == {
        (a, L, g) for a in ("res", "rev", "pyg-groupaddrev") for L, g in ((112, "paper"), (64, "bench"))
    }  # fmt: skip
    assert [p.round for p in points] == sorted(p.round for p in points)  # whole rounds first
    assert {p.compile for p in points} == {True, False}
    assert cli.main(["gpu-check", "--dry-run", "--only", "timing", "profile"]) == 0
    out = capsys.readouterr().out
    assert "profile: a torch.profiler summary" in out and "36 points" in out
    assert "RevGNN x 112, proteins part, compiled #2" in out
    assert cli.main(["gpu-check", "--dry-run", "--only", "timing", "--timing-rounds", "0"]) == 0
    assert "0 points" in capsys.readouterr().out


@pytest.mark.slow
@pytest.mark.usefixtures("small_paper_batch")
def test_timing_rows_give_ratios_over_rounds(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The timing rows run (here on the CPU, shallow) eager and compiled in fresh processes;
    the summary has their ratios with intervals over the rounds, and the compile times."""
    from bench.instruments import gpu_timing

    monkeypatch.setattr(gpu_timing, "GRAPHS", (("paper", 2, "proteins part"),))
    monkeypatch.setattr(gpu_timing, "ARCHS", (("res", "ResGNN"), ("rev", "RevGNN")))
    args = _args(tmp_path, only=["timing"], skip_engines=True, repeats=1, timing_rounds=2)
    frame = gpu_check.run(args, log=lambda line: None, device="cpu")
    assert len(frame) == 8 and (frame.status == "ok").all(), frame[["label", "status", "error"]]
    compiled = frame[frame["compile"].astype(bool)]
    assert len(compiled) == 4 and (compiled.compile_time_s > 0).all()
    assert (compiled.recompiled_s == 0).all()  # no timed step compiled
    found = {(r["ratio"], r["rounds"]) for r in gpu_timing.ratios(frame)}
    assert ("rev / res (eager)", 2) in found and ("rev compiled / eager", 2) in found
    summary = (tmp_path / "gpu" / "SUMMARY.md").read_text()
    assert (
        "## timing: ratios over rounds" in summary and "Compile time per compiled point" in summary
    )


def test_profile_summary_on_cpu(tmp_path: Path) -> None:
    """The profile runs anywhere (on CPU: top ops, no synchronisation counts) and its page has
    the top kernels and the three max-aggregation paths."""
    from bench.instruments import gpu_profile

    save_graph(synthetic_graph(80, 400, 8, 8, 4, seed=0), tmp_path / "g.pt")
    args = point_args(channels=8)
    result = gpu_profile.profile(GraphSource(path=str(tmp_path / "g.pt")), args,
                                 torch.device("cpu"), layers=2, steps=1)  # fmt: skip
    assert result["sync_warnings"] is None and result["top"]
    assert [p["path"] for p in result["aggregation"]] == [
        "packed int64 key (one scatter)", "two float scatters", "two float scatters, chunked argmax"
    ]  # fmt: skip
    assert all(p["grad_ms"] > 0 and p["nograd_ms"] > 0 for p in result["aggregation"])
    page = gpu_profile.markdown(result)
    assert "## top kernels" in page and "## max-aggregation paths" in page
    assert "aten::" in page  # on CPU the "kernels" are the ops
