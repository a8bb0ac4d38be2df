"""Every number README states about the committed results is checked against the committed
files, so README cannot drift from them."""

from __future__ import annotations

import pathlib
import re

import pandas as pd
import pytest

from bench import paper
from bench.units import format_bytes

ROOT = pathlib.Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text()
GPU = pd.read_csv(ROOT / "results" / "gpu" / "gpu-check.csv")


def section(title: str) -> str:
    return README.split(f"## {title}\n")[1].split("\n## ")[0]


def test_readme_is_short() -> None:
    assert len(README.splitlines()) <= 250


def test_every_gb_figure_is_a_measured_gpu_peak() -> None:
    shown = section("What they show")
    numbers = {float(v) for v in re.findall(r"(\d+\.\d\d) GB", shown)}
    assert numbers, "the section states GPU peaks"
    measured = {round(v / 1e9, 2) for v in GPU.loc[GPU["status"] == "ok", "peak_bytes"]}
    assert numbers <= measured, numbers - measured
    for label in re.findall(r"(RevGNN-64|ResGNN-64|RevGNN-Deep|RevGNN-Wide)", shown):
        assert (GPU["label"] == label).any()


def test_flat_from_3_to_1001_layers_is_what_was_measured() -> None:
    assert "flat from 3 to 1001" in section("What they show")
    rows = GPU.set_index("label")
    low, high = rows.loc["RevGNN-64 x 3"], rows.loc["RevGNN-64 x 1001"]
    # step adds grew by its gradients only: about 4 B per parameter, under 10% in all
    assert high["step_added_bytes"] / low["step_added_bytes"] < 1.1


@pytest.mark.parametrize("card", ["H100", "H200"])
def test_the_gpu_cards_named_are_the_cards_recorded(card: str) -> None:
    assert card in section("What the committed results are")
    assert GPU["device"].str.contains(card).any()


def test_the_cpu_machine_named_is_the_machine_recorded() -> None:
    text = section("What the committed results are")
    assert "2-core" in text and "torch 2.13.0 CPU build" in text
    frames = [pd.read_csv(p) for p in sorted((ROOT / "results").glob("*-cpu.csv"))]
    trials = pd.concat(frames, ignore_index=True)
    devices = trials["device_name"].dropna().unique()
    assert len(devices) and all("2 cores" in d for d in devices), devices
    assert set(trials["version_torch"].dropna()) == {"2.13.0+cpu"}


def _means(name: str) -> pd.Series:
    trials = pd.read_csv(ROOT / "results" / f"{name}.csv")
    ok = trials[trials["status"] == "ok"]
    return ok.groupby(["arch", "channels", "layers"])["test_at_best_valid"].mean()


def test_what_depth_buys_is_what_the_accuracy_ablation_measured() -> None:
    """README's ground-truth numbers: the task's own check (criteria), the budget computed from
    res's peaks, res's score under it, the reversible archs' range, the narrower res that fits,
    DEQ-GNN's need, and the intervals as REPORT.md prints them."""
    shown = " ".join(section("What they show").split())
    criteria, cpu = _means("accuracy-criteria"), _means("accuracy-cpu")
    res4 = criteria.loc[("res", 32)]
    assert f"ResGNN scores {res4[4]:.2f} ROC-AUC with 4 layers and {res4[3]:.2f} with 3" in shown
    trials = pd.read_csv(ROOT / "results" / "accuracy-cpu.csv")
    assert trials["memory_cap_bytes"].isna().all()  # uncapped: the budget is computed
    peaks = trials[(trials["arch"] == "res") & (trials["channels"] == 32)]
    peak = peaks.groupby("layers")["peak_memory_bytes"].mean()
    assert f"under a {format_bytes((peak[3] + peak[4]) / 2)} budget computed" in shown
    assert f"ResGNN fits 3 hops and scores {cpu[('res', 32, 3)]:.2f}" in shown
    deep = pd.concat([cpu.loc[("rev", 32)], cpu.loc[("wt-rev", 32)]]).loc[lambda m: m.index >= 2]
    assert f"score {deep.min():.2f}-{deep.max():.2f}" in shown
    assert f"fits 4 layers in the same budget and scores {cpu[('res', 16, 4)]:.2f}" in shown
    deq = trials[trials["arch"] == "deq"].groupby("layers")["peak_memory_bytes"].mean()
    assert deq[3] > (peak[3] + peak[4]) / 2 and f"needs {format_bytes(deq[3])} for its 3" in shown
    assert f"ResGNN {criteria[('res', 32, 8)]:.2f} with 8 layers" in shown
    report = (ROOT / "report" / "REPORT.md").read_text()
    (cell,) = set(
        re.findall(r"\| rev at \d+ hops minus the best res that fits \(3 hops\): ([^:]+):", report)
    )
    mean, lo, hi = (float(x) for x in re.findall(r"[+-]\d\.\d+", cell)[:3])
    assert f"{mean:+.3f} [{lo:+.3f}, {hi:+.3f}] over the best ResGNN of their width" in shown


def board_verdicts() -> dict[str, str]:
    """Claim key -> verdict, from the committed REPORT.md's board."""
    board = (ROOT / "report" / "REPORT.md").read_text().split("## Verdicts")[1].split("\n## ")[0]
    return dict(
        re.findall(r"^\| \[([\w-]+)\]\(#[\w-]+\): [^|]* \| \*\*([^*]+)\*\* \|", board, re.M)
    )


def test_the_verdicts_readme_states_are_the_boards() -> None:
    """README names every claim of the paper under the verdict REPORT.md's board gives it."""
    shown = section("What they show").strip().split("\n\n")[0]
    stated = {}
    for verdict, text in re.findall(r"\*(Supported|Inconclusive|Not supported|Not testable at this budget)\*:\s(.*?)(?=\*[A-Z]|$)",
                                    shown, re.S):  # fmt: skip
        for key in re.findall(r"\(([a-z]+(?:-[a-z]+)*)[:)]", text):
            stated[key] = verdict.lower()
    board = board_verdicts()
    assert stated and set(stated) <= set(board), set(stated) - set(board)
    assert all(board[k] == v for k, v in stated.items()), (stated, board)
    papers = [k for k in board if k not in ("tied-params", "groups-count")]
    assert set(papers) <= set(stated), set(papers) - set(stated)


def test_the_main_jobs_time_is_the_trials_time_at_the_measured_rate() -> None:
    """~N minutes = the trials of the studies the main job runs (every spec's cpu and real
    profiles) summed, over its 2 workers, times the measured rate README states."""
    frames = [pd.read_csv(p) for p in sorted((ROOT / "results").glob("*-*.csv"))
              if p.stem.rpartition("-")[2] in ("cpu", "real") and not p.stem.startswith("tune")]  # fmt: skip
    minutes = sum(f["wall_time_s"].sum() for f in frames) / 60
    (rate,) = re.findall(
        r"in \d+ minutes, (\d\.\d+)× their trials' summed", " ".join(README.split())
    )
    assert f"20 studies' trials sum to {minutes:.0f} minutes" in " ".join(README.split())
    assert len(frames) == 20 and "--workers 2" in README
    assert f"# ~{minutes / 2 * float(rate):.0f} minutes" in README


def test_the_saving_against_the_papers_resgnn_is_the_measured_one() -> None:
    rows = GPU[GPU["status"] == "ok"].set_index("label")
    ours = rows.loc["ResGNN-64", "peak_bytes"] / rows.loc["RevGNN-64", "peak_bytes"]
    theirs = paper.point("ResGNN-64").peak_memory_gb / paper.point("RevGNN-64").peak_memory_gb
    assert rows.loc["ResGNN-64", "aggr_impl"] == "fused"
    shown = " ".join(section("What they show").split())
    assert f"saving is {ours:.2g}× here against {theirs:.2g}× in the paper" in shown
