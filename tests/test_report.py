"""The report on hand-made results tables: aggregation, claims, figures, determinism, bad input."""

from __future__ import annotations

import dataclasses
import json
import math
import pathlib
import subprocess
import sys
from collections.abc import Callable

import numpy as np
import pandas as pd
import pytest

from bench.config import TrialConfig
from bench.errors import DataError
from bench.exports.schema import SCHEMA_VERSION, export_columns
from bench.exports.table import hops_of, write_table
from bench.exports.versions import stale_point_keys
from bench.measure.memory_model import per_layer_params
from bench.report.accuracy_figure import depth_intervals
from bench.report.aggregate import linear_fit, oom_depths, summarise
from bench.report.build import build_report
from bench.report.claims import (
    CONTRADICTED,
    INCONCLUSIVE,
    NO_DATA,
    NOT_SUPPORTED,
    NOT_TESTABLE,
    SUPPORTED,
    Finding,
    all_claims,
    claim_verdict,
    get_claim,
    registered_claims,
)
from bench.report.claims.accuracy import accuracy_claims, with_hops
from bench.report.claims.params import COUNTED
from bench.report.load import derive, read_results
from bench.report.stale import MARK as STALE_MARK
from bench.report.stale import stale_configs

CPU = "cpu (Test CPU, 2 threads)"
MIB = 1024**2


def row(spec: str, arch: str, layers: int, seed: int = 0, status: str = "ok", **over) -> dict:
    """One exported trial: the flat record of a config with plausible, depth-driven numbers,
    in every column of the export's schema (those not set here empty)."""
    cfg = dataclasses.asdict(TrialConfig())  # defaults; not validated (no dataset registry needed)
    cfg.update(arch=arch, layers=layers, seed=seed)
    cfg.update({k: v for k, v in over.items() if k in cfg})
    channels, groups = cfg["channels"], cfg["groups"]
    tied = arch in ("wt-res", "wt-rev", "deq")
    grouped = arch in ("rev", "wt-rev")
    # the architecture's count (synthetic-proteins has edge features: per-group re-encoders)
    per_layer = per_layer_params(channels, groups if grouped else 1, has_edges=True)
    params = 20_000 + per_layer * (1 if tied else layers)
    state = 16 * params
    full = cfg["batching"] == "full"
    act_per_layer = 0 if arch in ("rev", "wt-rev", "deq") else (3 if full else 1) * MIB
    peak = state + 5 * MIB * (2 if full else 1) + act_per_layer * layers + seed * 1000
    rec = {
        **dict.fromkeys(export_columns()), "current": True, "schema": SCHEMA_VERSION,
        "study": over.get("study", f"{spec}-cpu"), "spec": spec, "profile": "cpu",
        "kind": over.get("kind", "ablation"), "trial_number": over.get("trial_number", 0),
        "optuna_state": "COMPLETE", **cfg,
        "dataset_options": json.dumps(cfg["dataset_options"], sort_keys=True),
        "status": status, "metric": "rocauc",
        "best_valid": 0.7 + 0.01 * seed, "test_at_best_valid": 0.68 + 0.01 * seed + (0.02 if not tied else 0),
        "best_epoch": 3, "params": params, "peak_memory_bytes": peak, "model_state_bytes": state,
        "memory_meter": over.get("memory_meter", "cpu-live-tensors"),
        "predicted_params": params, "predicted_peak_bytes": peak,
        "step_time_s": 0.01 * layers * (1.35 if grouped else 1.0) + 0.001 * seed,
        "epoch_time_s": 0.1 * layers, "error": None, "failed_phase": None,
        "device_name": over.get("device_name", CPU), "commit": "abc1234def", "wall_time_s": 1.0,
        "epochs_done": 5, "version_torch": "2.13.0", "version_torch_geometric": "2.8.1",
    }  # fmt: skip
    rec.update(hops_of(rec))
    if arch == "deq":
        rec["solver_fwd_iters_mean"] = max(2, int(0.8 * (cfg["deq_max_iter"] or layers)))
        rec["solver_bwd_iters_mean"] = rec["solver_fwd_iters_mean"]
    if status != "ok":
        for key in ("best_valid", "test_at_best_valid", "peak_memory_bytes", "model_state_bytes",
                    "step_time_s", "epoch_time_s", "best_epoch"):  # fmt: skip
            rec[key] = None
        rec["error"] = f"{status} at setup"
        rec["failed_phase"] = "train"
    rec.update(
        {k: v for k, v in over.items() if k in ("values_0", "values_1", "is_pareto", "objectives")}
    )
    return rec


def depth_rows(spec: str, archs: tuple[str, ...], depths: list[int], oom_from: int | None = None,
               seeds: tuple[int, ...] = (0, 1), **over) -> list[dict]:  # fmt: skip
    rows = []
    for arch in archs:
        for layers in depths:
            for seed in seeds:
                failed = oom_from is not None and arch.endswith("res") and layers >= oom_from
                rows.append(row(spec, arch, layers, seed, "oom" if failed else "ok", **over))
    return rows


ACCURACY_OPTIONS = {"num_nodes": 600, "depth_task": 3, "num_tasks": 2}
ACCURACY_DEPTHS = (1, 2, 3, 6)


def accuracy_rows(seeds: tuple[int, ...] = (0, 1, 2, 3, 4), gain: float = 0.04,
                  res_oom_from: int | None = 3) -> list[dict]:  # fmt: skip
    """The accuracy ablation: every arch at depths 1-6 under a cap res exceeds from depth 3;
    scores rise by ``gain`` per layer up to the task's depth 3, with a small per-seed,
    per-arch wobble (so intervals have width)."""
    rows = []
    for i, arch in enumerate(("res", "rev", "wt-rev", "deq")):
        for layers in ACCURACY_DEPTHS:
            for seed in seeds:
                oom = arch == "res" and res_oom_from is not None and layers >= res_oom_from
                rec = row("accuracy", arch, layers, seed, "oom" if oom else "ok",
                          dataset_options=ACCURACY_OPTIONS, memory_cap_bytes=6_000_000,
                          batching="full", train_parts=1, eval_parts=1)  # fmt: skip
                if not oom:
                    wobble = 0.004 * (((seed * 7 + i * 3) % 5) - 2)
                    rec["test_at_best_valid"] = 0.70 + gain * min(layers, 3) + wobble
                    rec["best_valid"] = rec["test_at_best_valid"] - 0.01
                rows.append(rec)
    return rows


def full_results() -> dict[str, pd.DataFrame]:
    """A tiny results set covering every spec the report draws, plus a tuning study."""
    tables = {
        "depth": depth_rows("depth", ("res", "rev"), [2, 4, 8, 16, 32], oom_from=32),
        "weight-tying": depth_rows("weight-tying", ("wt-res", "wt-rev"), [2, 4, 8, 16]),
        "deq": depth_rows("deq", ("res", "deq"), [2, 4, 8, 16]),
        "full-vs-mini": depth_rows("full-vs-mini", ("res", "rev"), [2, 4, 8], batching="mini")
        + depth_rows(
            "full-vs-mini", ("res", "rev"), [2, 4, 8], batching="full", train_parts=1, eval_parts=1
        ),  # fmt: skip
        "groups": [
            row("groups", a, layers, s, groups=g, channels=64)
            for a in ("rev", "wt-rev")
            for g in (2, 4, 8)
            for layers in (8, 16)
            for s in (0, 1)
        ],  # fmt: skip
        "overview": [
            row("overview", a, 8, s, channels=c)
            for a in ("res", "rev", "wt-res", "wt-rev", "deq")
            for c in (32, 64)
            for s in (0, 1)
        ]
        + [row("overview", "res", 8, 0, "oom", channels=128)],  # fmt: skip
        "accuracy": accuracy_rows(),
    }
    tune = []
    for i, (arch, layers, score, mem) in enumerate(
        [("rev", 8, 0.70, 30 * MIB), ("rev", 16, 0.72, 32 * MIB), ("res", 8, 0.71, 60 * MIB),
         ("res", 16, 0.69, 90 * MIB), ("wt-rev", 8, 0.66, 20 * MIB)]):  # fmt: skip
        pareto = i in (0, 1, 4)
        tune.append(row("tune-proteins", arch, layers, kind="tune", trial_number=i, study="tune-cpu",
                        values_0=score, values_1=mem, is_pareto=pareto,
                        objectives="valid_score,peak_memory_bytes"))  # fmt: skip
    tables["tune"] = tune
    return {name: pd.DataFrame(rows) for name, rows in tables.items()}


def write_results(folder: pathlib.Path, tables: dict[str, pd.DataFrame]) -> pathlib.Path:
    folder.mkdir(parents=True, exist_ok=True)
    for name, df in tables.items():
        write_table(df, folder / f"{name}.csv")
    return folder


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> tuple[pathlib.Path, pathlib.Path, list]:
    """One full report over every spec (figures are the slow part: build once)."""
    base = tmp_path_factory.mktemp("report")
    results = write_results(base / "results", full_results())
    written = build_report(results, base / "out")
    return results, base / "out", written


# --- aggregation --------------------------------------------------------------------------


def test_mean_std_over_seeds_with_ddof1_and_single_seed_nan() -> None:
    rows = [row("depth", "rev", 8, s) for s in (0, 1, 2)] + [row("depth", "rev", 16, 0)]
    summary = summarise(derive(pd.DataFrame(rows)))
    three = summary[summary["layers"] == 8].iloc[0]
    scores = [r["test_at_best_valid"] for r in rows[:3]]
    assert three["n_ok"] == 3 and three["seeds"] == "0,1,2"
    assert three["score_mean"] == pytest.approx(np.mean(scores))
    assert three["score_std"] == pytest.approx(np.std(scores, ddof=1))
    one = summary[summary["layers"] == 16].iloc[0]
    assert one["n_ok"] == 1 and math.isnan(one["score_std"])


def test_oom_rows_are_not_averaged_and_oom_depth_reported() -> None:
    rows = [row("depth", "res", 8, 0), row("depth", "res", 8, 1, "oom"),
            row("depth", "res", 16, 0, "oom"), row("depth", "res", 16, 1, "oom")]  # fmt: skip
    df = derive(pd.DataFrame(rows))
    summary = summarise(df)
    at8 = summary[summary["layers"] == 8].iloc[0]
    assert (at8["n_ok"], at8["n_trials"], at8["statuses"]) == (1, 2, "ok:1 oom:1")
    assert at8["score_mean"] == pytest.approx(rows[0]["test_at_best_valid"])
    assert math.isnan(at8["score_std"])
    at16 = summary[summary["layers"] == 16].iloc[0]
    assert at16["n_ok"] == 0 and math.isnan(at16["score_mean"])
    oom = oom_depths(df)
    assert len(oom) == 1
    assert (oom.iloc[0]["first_oom_depth"], oom.iloc[0]["max_ok_depth"]) == (8, 8)


def test_different_configs_are_never_merged() -> None:
    rows = [row("depth", "rev", 8, 0), row("depth", "rev", 8, 1, lr=0.01),
            row("depth", "rev", 8, 2, epochs=7), row("depth", "rev", 8, 3, dataset_options={"n": 5}),
            row("depth", "rev", 8, 4, device_name="cuda (Other GPU)", memory_meter="cuda-allocator")]  # fmt: skip
    summary = summarise(derive(pd.DataFrame(rows)))
    assert len(summary) == 5
    assert (summary["n_trials"] == 1).all()


def test_missing_seeds_reported_with_their_n() -> None:
    rows = [row("depth", "rev", 8, s) for s in (0, 1, 2)] + [
        row("depth", "rev", 16, s) for s in (0, 2)
    ]
    summary = summarise(derive(pd.DataFrame(rows))).set_index("layers")
    assert summary.loc[8, "n_ok"] == 3 and summary.loc[16, "n_ok"] == 2
    assert summary.loc[16, "seeds"] == "0,2"


def test_linear_fit_recovers_slope() -> None:
    fit = linear_fit([1, 2, 4, 8], [3 + 5 * x for x in (1, 2, 4, 8)])
    assert fit is not None and fit.slope == pytest.approx(5) and fit.r2 == pytest.approx(1)
    assert linear_fit([4, 4], [1, 2]) is None


# --- claims ---------------------------------------------------------------------------------


def test_claims_verdicts_follow_the_data() -> None:
    df = derive(pd.concat(full_results().values(), ignore_index=True))
    claims = all_claims(df)
    by_key = {}
    for c in claims:
        by_key.setdefault(c.key, set()).add(c.verdict)
    assert by_key["rev-flat"] == {SUPPORTED}
    assert by_key["wt-rev-flat"] == {SUPPORTED}
    assert by_key["tied-params"] == {SUPPORTED}
    # the paper's counts hold, and 1 -> 2 groups (res vs rev at equal width, >= 2 depths)
    # divides as the paper's layer does at that width; 2 -> 4 series are groups-count's
    assert by_key["groups-params"] == {SUPPORTED}
    assert by_key["groups-count"] == {SUPPORTED}
    assert by_key["deq-flat"] == {SUPPORTED}
    assert by_key["batching"] == {SUPPORTED}
    assert SUPPORTED in by_key["rev-vs-res"]
    flat = next(c for c in claims if c.key == "rev-flat")
    assert "1 MiB/layer" in flat.evidence and "OOM from depth 32" in flat.evidence


def test_a_growing_rev_is_not_supported_and_too_few_depths_is_no_data() -> None:
    rows = depth_rows("depth", ("res", "rev"), [2, 4, 8, 16])
    for r in rows:
        if r["arch"] == "rev":
            r["peak_memory_bytes"] += r["layers"] * MIB  # as steep as res: not flat
    claims = [c for c in all_claims(derive(pd.DataFrame(rows))) if c.key == "rev-flat"]
    assert [c.verdict for c in claims] == [NOT_SUPPORTED]
    few = [c for c in all_claims(derive(pd.DataFrame(depth_rows("depth", ("res", "rev"), [2, 4]))))
           if c.key == "rev-flat"]  # fmt: skip
    assert [c.verdict for c in few] == [NO_DATA]


def test_no_model_state_share_is_printed_from_round_off() -> None:
    """A flat peak (growth below the meter's resolution) has no growth to share out: the share
    of two round-off slopes (7.5e-14 / 9.9e-13 B per layer, seen) must not be printed."""
    rows = depth_rows("weight-tying", ("wt-res", "wt-rev"), [2, 4, 8, 16])
    for r in rows:
        if r["arch"] == "wt-rev":
            r["peak_memory_bytes"] += 1e-12 * r["layers"]  # round-off, not growth
            r["model_state_bytes"] += 1e-13 * r["layers"]
    (flat,) = [c for c in all_claims(derive(pd.DataFrame(rows))) if c.key == "wt-rev-flat"]
    assert "model state is" not in flat.evidence
    for r in rows:
        if r["arch"] == "wt-rev":
            r["peak_memory_bytes"] += 4096 * r["layers"]  # real growth: the share is shown
    (flat,) = [c for c in all_claims(derive(pd.DataFrame(rows))) if c.key == "wt-rev-flat"]
    assert "model state is" in flat.evidence


def test_deq_whose_solver_stops_early_is_not_enough_data() -> None:
    rows = depth_rows("deq", ("res", "deq"), [2, 4, 8, 16])
    for r in rows:
        if r["arch"] == "deq":
            r["solver_fwd_iters_mean"] = 3  # converged at every cap: the cap changed nothing
    claims = [c for c in all_claims(derive(pd.DataFrame(rows))) if c.key == "deq-flat"]
    assert [c.verdict for c in claims] == [NO_DATA]
    assert "barely changed" in claims[0].evidence


# --- intervals and score verdicts -------------------------------------------------------------


def test_summary_has_the_t_interval_of_the_test_score() -> None:
    from scipy import stats as scipy_stats

    from bench.report.tables import SCORE_CI, display_summary

    rows = [row("depth", "rev", 8, s) for s in (0, 1, 2)] + [row("depth", "rev", 16, 0)]
    summary = summarise(derive(pd.DataFrame(rows)))
    three = summary[summary["layers"] == 8].iloc[0]
    scores = [r["test_at_best_valid"] for r in rows[:3]]
    lo, hi = scipy_stats.t.interval(0.95, 2, loc=np.mean(scores), scale=scipy_stats.sem(scores))
    assert three["score_n"] == 3
    assert (three["score_ci_lo"], three["score_ci_hi"]) == (pytest.approx(lo), pytest.approx(hi))
    one = summary[summary["layers"] == 16].iloc[0]
    assert one["score_n"] == 1 and math.isnan(one["score_ci_lo"])
    table = display_summary(summary)
    assert "t-interval" in SCORE_CI and "test score" in table.columns  # the old column stays
    assert table[SCORE_CI].tolist() == [f"[{lo:.4g}, {hi:.4g}] (n=3)", "n/a (n=1)"]


def overview_pair(diffs: list[float], rev_memory: float = 0.1) -> pd.DataFrame:
    """rev and res at 8 layers over len(diffs) seeds; rev's score = res's + diffs[seed]."""
    rows = []
    for seed, d in enumerate(diffs):
        res = row("overview", "res", 8, seed)
        rev = row("overview", "rev", 8, seed)
        res["test_at_best_valid"] = 0.70 + 0.02 * ((seed * 3) % 5)  # seeds differ a lot...
        rev["test_at_best_valid"] = res["test_at_best_valid"] + d  # ...pairing cancels that
        res["step_added_bytes"], rev["step_added_bytes"] = 10 * MIB, rev_memory * 10 * MIB
        rows += [res, rev]
    return derive(pd.DataFrame(rows))


def rev_vs_res(df: pd.DataFrame) -> Finding:
    (claim,) = [c for c in all_claims(df) if c.key == "rev-vs-res"]
    return claim


@pytest.mark.parametrize(
    ("diffs", "verdict"),
    [
        ([0.030, 0.025, 0.040, 0.028, 0.035], SUPPORTED),  # a clear win
        ([0.002, -0.004, 0.006, 0.000, -0.002], SUPPORTED),  # a match within the margin
        ([-0.050, -0.042, -0.061, -0.048, -0.055], CONTRADICTED),  # a clear loss
        ([-0.030, 0.012, -0.025, 0.004, -0.011], INCONCLUSIVE),  # noise straddling -0.01
        ([0.030], NO_DATA),  # one seed: no score verdict, however large the gap
    ],
)
def test_rev_vs_res_is_judged_by_the_interval_of_the_paired_difference(
    diffs: list[float], verdict: str
) -> None:
    claim = rev_vs_res(overview_pair(diffs))
    assert claim.verdict == verdict, claim.evidence
    assert "score rev - res" in claim.evidence
    assert ("paired t (n=5)" in claim.evidence) == (len(diffs) == 5)


def test_rev_vs_res_memory_miss_is_not_supported_whatever_the_score() -> None:
    claim = rev_vs_res(overview_pair([0.030, 0.025, 0.040, 0.028, 0.035], rev_memory=0.8))
    assert claim.verdict == NOT_SUPPORTED


def test_unpaired_seeds_use_welch() -> None:
    df = overview_pair([0.030, 0.025, 0.040, 0.028, 0.035])
    df = df[~((df["arch"] == "res") & (df["seed"] == 4))]  # res lacks seed 4: no pairing
    assert "Welch t" in rev_vs_res(df).evidence


def test_claim_verdict_prefers_misses_then_contradictions_then_doubt() -> None:
    def claims(*verdicts: str) -> list[Finding]:
        return [Finding("rev-vs-res", "fig1", "s", str(i), "", v) for i, v in enumerate(verdicts)]

    assert (
        claim_verdict(claims(SUPPORTED, CONTRADICTED, NOT_SUPPORTED), "rev-vs-res") == NOT_SUPPORTED
    )
    assert (
        claim_verdict(claims(SUPPORTED, INCONCLUSIVE, CONTRADICTED), "rev-vs-res") == CONTRADICTED
    )
    assert claim_verdict(claims(SUPPORTED, INCONCLUSIVE, NO_DATA), "rev-vs-res") == INCONCLUSIVE
    assert claim_verdict(claims(SUPPORTED, NO_DATA), "rev-vs-res") == SUPPORTED
    assert claim_verdict(claims(NO_DATA), "rev-vs-res") == NO_DATA


def test_tied_tradeoff_shows_the_score_interval_and_judges_params() -> None:
    df = derive(pd.concat(full_results().values(), ignore_index=True))
    tradeoff = [c for c in all_claims(df) if c.key == "tied-tradeoff"]
    wt = next(c for c in tradeoff if c.case.startswith("wt-rev"))
    # row(): tied archs score 0.02 below rev at every seed (n=2, no spread): a point interval,
    # above the most the paper's WT-RevGNN models gave up against RevGNN (-0.0259): supported
    assert wt.verdict == SUPPORTED
    assert (
        "score wt-rev - rev = -0.0200 [-0.0200, -0.0200] (paired t (n=2)) against the "
        "paper's WT-RevGNN-64 vs RevGNN-64, -0.0259: supported" in wt.evidence
    )
    assert "seeds a side that decide it at this spread (sd 0): 2" in wt.evidence
    # like with like: the weight-tied ResGNN against ResGNN, not against RevGNN
    wt_res = next(c for c in tradeoff if c.case.startswith("wt-res"))
    assert " vs res" in wt_res.case and "score wt-res - res" in wt_res.evidence
    counted = [c for c in tradeoff if c.slice == COUNTED]
    assert len(counted) == 6 and {c.verdict for c in counted} == {SUPPORTED}


# --- the accuracy ablation --------------------------------------------------------------------


def accuracy_claims_of(rows: list[dict]) -> dict[str, Finding]:
    df = derive(pd.DataFrame(rows))
    found = [c for c in all_claims(df) if c.key.startswith("depth-buys-accuracy-")]
    assert all(c.key == f"depth-buys-accuracy-{c.case.split(' ')[0]}" for c in found)
    return {c.case.split(" ")[0]: c for c in found}


def test_depth_buys_accuracy_when_rev_goes_deeper_and_scores_higher() -> None:
    claims = accuracy_claims_of(accuracy_rows())
    assert set(claims) == {"rev", "wt-rev", "deq"}
    rev = claims["rev"]
    assert rev.verdict == SUPPORTED, rev.evidence
    # depth in hops: res L, rev 2 x L (two groups), DEQ 2 n - 1
    assert "res reaches 2 hops (2 layers), rev 12 hops (6 layers)" in rev.evidence
    assert "(the spec's cap)" in rev.evidence
    assert "the task needs 3" in rev.evidence and "ground-truth task needing 3 hops" in rev.case
    assert "rev at 6 hops (3 layers) (its best beyond res's reach, by validation)" in rev.evidence
    assert "res at 2 hops (2 layers) (by validation)" in rev.evidence
    assert rev.evidence.startswith("rev at 6 hops minus the best res that fits (2 hops): ")
    assert "paired t (n=5)" in rev.evidence and "seeds a side that decide it" in rev.evidence
    assert "deq 11 hops (6 iterations)" in claims["deq"].evidence


def test_depth_buys_accuracy_inconclusive_contradicted_and_no_data() -> None:
    flat = accuracy_claims_of(accuracy_rows(gain=0.0))  # depth buys nothing: wobble only
    assert flat["rev"].verdict == INCONCLUSIVE, flat["rev"].evidence
    worse = accuracy_rows()
    for r in worse:
        if r["arch"] == "rev" and r["layers"] >= 3:
            r["test_at_best_valid"] -= 0.2  # deep rev collapses
    assert accuracy_claims_of(worse)["rev"].verdict == CONTRADICTED
    one_seed = accuracy_claims_of(accuracy_rows(seeds=(0,)))
    assert one_seed["rev"].verdict == NO_DATA
    no_cap = accuracy_claims_of(accuracy_rows(res_oom_from=None))
    assert no_cap["rev"].verdict == NO_DATA and "the budget never bound" in no_cap["rev"].evidence


def test_depth_buys_accuracy_not_testable_when_rev_gets_no_deeper() -> None:
    rows = [r for r in accuracy_rows() if not (r["arch"] != "res" and r["layers"] >= 2)]
    claims = accuracy_claims_of(rows)  # rev at 1 layer: 2 hops, no farther than res
    assert claims["rev"].verdict == NOT_TESTABLE
    assert "rev ran at no depth reaching the 3 hops the task needs" in claims["rev"].evidence
    assert "rev 2 hops (1 layer); the task needs 3" in claims["rev"].evidence
    # deq at 1 iteration sees 1 hop: short of the 3 the task needs
    assert claims["deq"].verdict == NOT_TESTABLE


def test_depth_buys_accuracy_on_the_ground_truth_task_and_real_graphs_apart() -> None:
    rows = accuracy_rows()
    for r in rows:  # res fits 3 layers: the budget lets it reach the task's 3 hops
        if r["arch"] == "res" and r["layers"] == 3:
            r.update(status="ok", test_at_best_valid=0.82, best_valid=0.81)
    reached = accuracy_claims_of(rows)["rev"]
    assert reached.verdict == NO_DATA and "cannot test the thesis" in reached.evidence
    real = [dict(r, dataset="blogcatalog", dataset_options="{}", needed_hops=None)
            for r in accuracy_rows()]  # fmt: skip
    rev = accuracy_claims_of(real)["rev"]
    assert rev.verdict == SUPPORTED and "a real graph, needed hops unknown" in rev.case
    assert "needs" not in rev.evidence
    # the report reads the record's hops, never its own count from the config
    recorded = [dict(r, receptive_hops=r["layers"], needed_hops=2) for r in accuracy_rows()]
    rev = accuracy_claims_of(recorded)["rev"]
    assert "rev 6 hops (6 layers)" in rev.evidence and "the task needs 2" in rev.evidence


def test_depth_buys_accuracy_says_why_an_arch_that_gets_there_fails() -> None:
    rows = accuracy_rows()
    for r in rows:
        if r["arch"] == "deq" and r["status"] == "ok":
            r.update(test_at_best_valid=0.5 + 0.001 * r["seed"], best_valid=0.5,
                     solver_fwd_rel_residual_max=0.3, solver_fwd_iters_mean=1.0)  # fmt: skip
    deq = accuracy_claims_of(rows)["deq"]
    assert deq.verdict == CONTRADICTED, deq.evidence
    assert get_claim("depth-buys-accuracy-deq").judge  # its own claim: rev's is untouched
    assert accuracy_claims_of(rows)["rev"].verdict == SUPPORTED
    assert "deq scores at chance there" in deq.evidence
    assert "ended above tolerance in 5 of 5 trials" in deq.evidence
    assert "stopped after 1.0 iterations on average (about 1 hops" in deq.evidence


def test_budgetless_slices_are_no_case_but_a_trainability_panel(tmp_path: pathlib.Path) -> None:
    """The limits profile: each arch near k hops on tasks of several k, no budget."""
    from bench.report.accuracy_figure import accuracy_figure
    from bench.report.select import FIGURE_BY_KEY

    rows = []
    for k in (8, 16):
        for arch, layers in (("res", k), ("rev", k // 2), ("deq", k // 2 + 1)):
            for seed in (0, 1):
                rec = row("accuracy", arch, layers, seed, dataset="synthetic-depth",
                          dataset_options={"depth": k}, memory_cap_bytes=None)  # fmt: skip
                rec["test_at_best_valid"] = 1.0 if arch == "deq" or k == 8 else 0.5
                rows.append(rec)
    df = derive(pd.DataFrame(rows))
    assert accuracy_claims(df) == []
    written = accuracy_figure(df, FIGURE_BY_KEY["fig10"], tmp_path)
    assert [p.suffix for p in written] == [".png", ".svg"]
    svg = written[1].read_text()
    assert "hops the task needs" in svg and "DEQ-GNN, k + 1 hops" in svg


def test_accuracy_figure_points_are_t_intervals() -> None:
    from bench.report.figures import prepare

    df = with_hops(prepare(derive(pd.DataFrame(accuracy_rows()))))
    points = depth_intervals(df)
    rev3 = points[(points["model"] == "RevGNN") & (points["hops"] == 6)].iloc[0]  # 3 layers
    scores = df[(df["arch"] == "rev") & (df["layers"] == 3)]["score"]
    half = 2.7764451051977987 * scores.std(ddof=1) / math.sqrt(5)  # t(0.975, 4)
    assert rev3["n"] == 5 and rev3["mean"] == pytest.approx(scores.mean())
    assert rev3["hi"] - rev3["lo"] == pytest.approx(2 * half)
    assert not ((points["model"] == "ResGNN") & (points["hops"] >= 3)).any()  # OOM: no point
    assert set(points.loc[points["model"] == "DEQ-GNN", "hops"]) == {1, 3, 5, 11}


# --- the whole report -------------------------------------------------------------------------


def test_every_figure_is_written_png_and_svg(built) -> None:
    _, out, written = built
    for stem in ("fig1_score_vs_memory", "fig2_memory_res_vs_rev", "fig3_memory_wt_res_vs_wt_rev",
                 "fig4_memory_res_vs_deq", "fig5_memory_full_vs_mini", "fig6_groups",
                 "fig7_step_time", "fig8_pareto", "fig10_accuracy_vs_depth"):  # fmt: skip
        for suffix in (".png", ".svg"):
            path = out / "figures" / f"{stem}{suffix}"
            assert path in written and path.stat().st_size > 1000, path
    assert "Date" not in (out / "figures" / "fig2_memory_res_vs_rev.svg").read_text()[:2000]


def test_report_md_states_every_claim_and_embeds_figures(built) -> None:
    _, out, _ = built
    text = (out / "REPORT.md").read_text()
    for claim in registered_claims():
        key = claim.key
        assert f"### {key}\n" in text and claim.statement in text and f"[{key}](#{key})" in text
    assert "![Figure 2" in text and "figures/fig8_pareto.png" in text
    assert "V100" in text and "cpu-live-tensors" in text and text.count(CPU) == 1
    assert "abc1234" in text and "2.13.0" in text  # commits shown to 7 digits
    assert "(oom 2)" in text or "(oom 1)" in text  # failures listed per figure
    assert "not enough data" not in text.split("## Figures")[1].split("## Tables")[0]
    assert "figures/fig10_accuracy_vs_depth.png" in text
    assert "[depth-buys-accuracy-rev](#depth-buys-accuracy-rev)" in text
    assert "*contradicted*" in text and "*not testable at this budget*" in text
    assert "*inconclusive*" in text and "t-interval" in text
    board = "\n".join(text.splitlines()[:45])  # scope box and verdict board: the first 45 lines
    assert all(f"[{c.key}](#{c.key})" in board for c in registered_claims())
    assert "**Sanity checks and design targets**" in board


def test_tables_are_written(built) -> None:
    _, out, _ = built
    summary = pd.read_csv(out / "tables" / "summary.csv")
    assert {"score_mean", "score_std", "n_ok", "statuses", "score_ci_lo", "score_ci_hi",
            "score_n"} <= set(summary.columns)  # fmt: skip
    assert "95% CI (t-interval, n)" in (out / "tables" / "summary.md").read_text()
    assert "first OOM depth" in (out / "tables" / "oom.md").read_text()
    groups = (out / "tables" / "groups.md").read_text()
    assert groups.count("| rev |") == 6
    assert "V100" in (out / "tables" / "paper_vs_measured.md").read_text()
    assert (out / "tables" / "pareto.csv").exists()


def test_regenerating_is_byte_identical(built, tmp_path: pathlib.Path) -> None:
    results, out, _ = built
    again = tmp_path / "again"
    build_report(results, again)
    for path in sorted((out / "tables").iterdir()) + [out / "REPORT.md"]:
        twin = again / path.relative_to(out)
        assert path.read_bytes() == twin.read_bytes(), path.name
    svg = "figures/fig2_memory_res_vs_rev.svg"
    assert (out / svg).read_bytes() == (again / svg).read_bytes()


def test_mixed_devices_are_split_and_said_so(tmp_path: pathlib.Path) -> None:
    rows = depth_rows("depth", ("res", "rev"), [2, 4, 8]) + depth_rows(
        "depth",
        ("res", "rev"),
        [2, 4, 8],
        device_name="cuda (Test GPU)",
        memory_meter="cuda-allocator",
    )
    results = write_results(tmp_path / "results", {"depth": pd.DataFrame(rows)})
    build_report(results, tmp_path / "out", draw_figures=False)
    text = (tmp_path / "out" / "REPORT.md").read_text()
    slices = text.split("## Slices")[1].split("## How claims")[0]
    assert "Test GPU" in slices and "Test CPU" in slices
    summary = pd.read_csv(tmp_path / "out" / "tables" / "summary.csv")
    assert len(summary) == 12 and set(summary["n_ok"]) == {2}
    claims = [c for c in all_claims(read_results(results)) if c.key == "rev-flat"]
    assert len({c.slice for c in claims}) == 2


# --- bad input --------------------------------------------------------------------------------


def test_missing_or_empty_folder(tmp_path: pathlib.Path) -> None:
    with pytest.raises(DataError, match="does not exist"):
        read_results(tmp_path / "nope")
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match=r"no \*\.csv"):
        read_results(tmp_path / "empty")


def test_missing_columns_named(tmp_path: pathlib.Path) -> None:
    df = pd.DataFrame(depth_rows("depth", ("rev",), [2])).drop(
        columns=["peak_memory_bytes", "arch"]
    )
    (tmp_path / "r").mkdir()
    df.to_csv(tmp_path / "r" / "bad.csv", index=False)  # by hand: the writer adds every column
    results = tmp_path / "r"
    with pytest.raises(
        DataError, match=r"bad\.csv: missing required column\(s\) arch, peak_memory_bytes"
    ):
        read_results(results)


def test_cli_writes_the_report(tmp_path: pathlib.Path) -> None:
    results = write_results(
        tmp_path / "results",
        {"depth": pd.DataFrame(depth_rows("depth", ("res", "rev"), [2, 4, 8]))},
    )
    proc = subprocess.run(
        [sys.executable, "-m", "bench", "report", "--results", str(results),
         "--out", str(tmp_path / "out"), "--no-figures"],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert "REPORT.md" in proc.stdout
    assert "[rev-flat](#rev-flat)" in (tmp_path / "out" / "REPORT.md").read_text()


def test_unfinished_and_superseded_rows_are_left_out(tmp_path: pathlib.Path) -> None:
    rows = [
        row("depth", "rev", 2, 0, "error"),
        row("depth", "rev", 2, 0),
        row("depth", "rev", 4, 0),
    ]
    df = pd.DataFrame(rows).assign(current=[False, True, True])
    unfinished = row("depth", "rev", 8, 0)
    unfinished["status"] = None
    df = pd.concat([df, pd.DataFrame([unfinished]).assign(current=False)], ignore_index=True)
    out = read_results(write_results(tmp_path / "r", {"depth": df}))
    assert sorted(out["layers"]) == [2, 4] and set(out["status"]) == {"ok"}
    assert out.attrs["dropped"] == {"unfinished (no record)": 1, "superseded by a retry": 1}


def test_single_objective_tuning_uses_peak_memory(tmp_path: pathlib.Path) -> None:
    tune = [row("t", "rev", 4 * (i + 1), kind="tune", trial_number=i, study="tune-x",
                values_0=0.6 + i / 100, is_pareto=i == 2, objectives="valid_score")
            for i in range(3)]  # fmt: skip
    results = write_results(tmp_path / "r", {"tune": pd.DataFrame(tune)})
    build_report(results, tmp_path / "out", draw_figures=False)
    front = pd.read_csv(tmp_path / "out" / "tables" / "pareto.csv")
    assert list(front["trial"]) == [2] and "peak_memory_bytes" in front.columns


def test_unknown_status_is_refused(tmp_path: pathlib.Path) -> None:
    df = pd.DataFrame([row("depth", "rev", 2, status="crashed")])
    with pytest.raises(DataError, match="unknown trial status.*crashed"):
        read_results(write_results(tmp_path / "r", {"x": df}))


def test_cli_exits_2_with_one_clear_line(tmp_path: pathlib.Path) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "bench", "report", "--results", str(tmp_path / "none"),
         "--out", str(tmp_path / "out")],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr
    assert proc.stderr.startswith("report: results folder") and "does not exist" in proc.stderr


def test_real_trial_records_feed_the_report_columns(tmp_path: pathlib.Path) -> None:
    """Records from the real trial runner carry every column the report reads (solver stats
    included): the hand-made tables above cannot drift from what trials write."""
    from bench.config import TrialConfig
    from bench.trial import run_trial

    tiny = {"num_nodes": 200, "avg_degree": 4, "num_tasks": 4}
    rows = []
    for n, (arch, layers) in enumerate([("deq", 2), ("deq", 6), ("rev", 2)]):
        config = TrialConfig(
            arch=arch, layers=layers, channels=8, epochs=1, train_parts=2, eval_parts=2,
            dataset_options=tiny, **({"deq_tol": 1e-10} if arch == "deq" else {}),
        ).validated()  # fmt: skip
        record = run_trial(config)
        assert record.status == "ok", record.error
        lead = {"study": "e2e-cpu", "spec": "e2e", "profile": "cpu", "kind": "ablation"}
        rows.append({**lead, "trial_number": n, "optuna_state": "COMPLETE", **record.flat(),
                     "current": True})  # fmt: skip
    write_table(pd.DataFrame(rows), tmp_path / "results" / "e2e-cpu.csv")
    df = read_results(tmp_path / "results")
    deq = df[df.arch == "deq"].sort_values("layers")
    assert deq["solver_fwd_iters_mean"].tolist() == [2.0, 6.0]  # the solves ran to their caps
    assert deq["solver_bwd_iters_mean"].notna().all()


def groups_rows(per_layer: Callable[[int, int], int]) -> list[dict]:
    rows = []
    for g in (2, 4):
        for layers in (8, 16):
            rec = row("groups", "rev", layers, 0, groups=g, channels=64)
            rec["params"] = 20_000 + layers * per_layer(64, g)
            rows.append(rec)
    return rows


def groups_cases(rows: list[dict], key: str) -> list[Finding]:
    return [
        c for c in all_claims(derive(pd.DataFrame(rows))) if c.key == key and c.slice != COUNTED
    ]


def test_groups_count_fails_when_params_do_not_match_the_architecture() -> None:
    """The ideal count (every layer's parameters divided by G) is not what this architecture
    holds: the sanity check must say 'not supported', not wave it through."""
    ideal = groups_rows(lambda c, g: (5 * c**2 + 10 * c) // g)
    (count,) = groups_cases(ideal, "groups-count")
    assert count.verdict == NOT_SUPPORTED and "against the architecture's" in count.evidence
    assert groups_cases(ideal, "groups-params") == []  # 2 -> 4 is not the paper's 1 -> 2


def split_rows(rev_layer: Callable[[int], int], channels: int = 32) -> list[dict]:
    """res and rev (2 groups) at 8 and 16 layers and equal width; rev's per-layer params given
    by ``rev_layer(channels)``, res's the architecture's (synthetic-proteins: edge features)."""
    rows = []
    for arch in ("res", "rev"):
        for layers in (8, 16):
            rec = row("depth", arch, layers, 0, channels=channels)
            per_layer = (per_layer_params(channels, 1, True) if arch == "res"
                         else rev_layer(channels))  # fmt: skip
            rec["params"] = 20_000 + layers * per_layer
            rows.append(rec)
    return rows


def test_groups_params_is_judged_at_one_to_two_groups_like_the_paper() -> None:
    """1 -> 2 groups at equal width (the paper's only grouping pair), against the paper's alpha
    moved to this width by the architecture: our layer passes, one whose grouping cuts less
    than the paper's layer would at this width fails."""
    (case,) = groups_cases(split_rows(lambda c: per_layer_params(c, 2, True)), "groups-params")
    assert case.verdict == SUPPORTED, case.evidence
    assert "per-layer params 5,440 -> 3,392, divided by 1.6" in case.evidence
    # alpha 0.681 at 32 channels is below the paper's 0.694 at 64: held as it stands it would
    # fail; moved by the architecture's width dependence it is like with like
    assert case.evidence.startswith("alpha 0.681 against 0.668 (1 -> 2 groups at 32 channels")
    weak = groups_cases(split_rows(lambda c: int(per_layer_params(c, 2, True) * 1.05)),
                        "groups-params")  # fmt: skip
    assert [c.verdict for c in weak] == [NOT_SUPPORTED]


def test_groups_params_counts_the_architecture_at_the_papers_width() -> None:
    df = derive(pd.DataFrame(depth_rows("depth", ("res", "rev"), [2, 4])))
    (case,) = [c for c in all_claims(df)
               if c.key == "groups-params" and c.case == "per layer, ResGNN-64 vs RevGNN-64"]  # fmt: skip
    assert case.verdict == SUPPORTED and "(alpha 0.708)" in case.evidence


def test_counted_cases_fail_when_our_counts_leave_the_papers_rounding(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """groups-params and tied-tradeoff at the paper's shapes: a count 1% off the paper's
    (beyond its 3-significant-digit rounding) must not be supported."""
    from bench.report.claims import params

    true = params.paper_shape_params
    monkeypatch.setattr(params, "paper_shape_params",
                        lambda label: int(true(label) * (1.01 if label.startswith(("RevGNN", "WT-Rev")) else 1)))  # fmt: skip
    df = derive(pd.DataFrame(depth_rows("depth", ("res", "rev"), [2, 4, 8])))
    counted = {(c.key, c.case): c.verdict for c in all_claims(df) if c.slice == COUNTED}
    assert counted[("groups-params", "RevGNN-64 vs ResGNN-64")] == NOT_SUPPORTED
    assert counted[("tied-tradeoff", "DEQ-GNN-64 vs RevGNN-64")] == NOT_SUPPORTED
    assert counted[("tied-tradeoff", "WT-ResGNN-64 vs ResGNN-64")] == SUPPORTED  # untouched


def test_tied_tradeoff_can_fail_on_params_and_on_score() -> None:
    rows = [row("overview", a, 16, seed) for a in ("rev", "wt-rev") for seed in (0, 1, 2)]
    for r in rows:
        if r["arch"] == "wt-rev":
            r["params"] = 10**7  # more than the untied model: not 'far fewer'
    (case,) = [c for c in all_claims(derive(pd.DataFrame(rows)))
               if c.key == "tied-tradeoff" and c.slice != COUNTED]  # fmt: skip
    assert case.verdict == NOT_SUPPORTED
    rows = [row("overview", a, 16, seed) for a in ("rev", "wt-rev") for seed in (0, 1, 2)]
    for r in rows:
        if r["arch"] == "wt-rev":
            r["test_at_best_valid"] -= 0.05 + 0.001 * r["seed"]  # far beyond the paper's -0.0264
    (case,) = [c for c in all_claims(derive(pd.DataFrame(rows)))
               if c.key == "tied-tradeoff" and c.slice != COUNTED]  # fmt: skip
    assert case.verdict == CONTRADICTED


def test_deq_flat_is_judged_from_the_solver_history_up() -> None:
    rows = depth_rows("deq", ("res", "deq"), [2, 4, 8, 16, 64])
    for r in rows:
        if r["arch"] == "deq":
            r["solver_fwd_iters_mean"] = r["layers"]
            r["peak_memory_bytes"] += min(r["layers"], 6) * MIB  # grows until the history is full
    (case,) = [c for c in all_claims(derive(pd.DataFrame(rows))) if c.key == "deq-flat"]
    assert case.verdict == SUPPORTED, case.evidence
    assert "caps 2, 4 left out (below the solver's 6-iterate history" in case.evidence


def test_stale_configuration_is_flagged(tmp_path: pathlib.Path) -> None:
    """One configuration whose seeds ran on two commits that measure differently is flagged in
    the summary, in the claims and in REPORT.md, and its point keys are what --rerun-stale
    reruns."""
    rows = depth_rows("depth", ("res", "rev"), [2, 4, 8], seeds=(0, 1, 2))
    for i, r in enumerate(rows):
        r["point_key"] = f"k{i}"
        if r["arch"] == "rev" and r["layers"] == 4 and r["seed"] == 2:
            r["commit"] = "0123456789abcdef"  # a later commit, 32,000 B lower
            r["peak_memory_bytes"] -= 32_000
    df = derive(pd.DataFrame(rows))
    stale = stale_configs(df)
    assert len(stale) == 1 and "0123456789 (seeds 2)" in next(iter(stale.values()))
    assert stale_point_keys(df) == {r["point_key"] for r in rows
                                    if r["arch"] == "rev" and r["layers"] == 4}  # fmt: skip
    (flat,) = [c for c in all_claims(df) if c.key == "rev-flat"]
    assert STALE_MARK in flat.case
    results = write_results(tmp_path / "results", {"depth": pd.DataFrame(rows)})
    build_report(results, tmp_path / "out", draw_figures=False)
    text = (tmp_path / "out" / "REPORT.md").read_text()
    assert "1 configuration(s) mix code versions" in text
    assert STALE_MARK in (tmp_path / "out" / "tables" / "summary.md").read_text()


def test_gpu_note_is_computed_from_the_measured_rows() -> None:
    from bench.report import gpu

    def run(res_gb: float, rev_gb: float) -> pd.DataFrame:
        return pd.DataFrame({
            "group": ["figure 1"] * 2, "label": ["ResGNN-64", "RevGNN-64"], "status": ["ok"] * 2,
            "peak_bytes": [res_gb * 1e9, rev_gb * 1e9], "aggr_impl": ["fused"] * 2,
            "predicted_peak_bytes": [res_gb * 1e9, rev_gb * 1.1e9],
        })  # fmt: skip

    note = gpu.measured_note(run(4.0, 1.0), run(40.0, 1.2))
    assert "within 10%" in note and "4.0x less" in note and "13.0x" in note  # paper 27.1 / 2.09
    assert "40.00 GB (10.0x today's)" in note
    assert gpu.measured_note(None, None) == ""
    assert "pyg-max" not in gpu.measured_note(run(4.0, 1.0), None)


@pytest.mark.parametrize(
    ("mangle", "message"),
    [
        (lambda text: text[: len(text) // 2], r"truncated \(no newline after line \d+"),
        (
            lambda text: text.replace("\n", '\n"unclosed,', 2),
            r"line \d+ has \d+ fields, the header",
        ),
    ],
)
def test_a_malformed_table_is_refused_naming_its_file_and_line(
    tmp_path: pathlib.Path, mangle: Callable[[str], str], message: str
) -> None:
    results = write_results(tmp_path / "results",
                            {"depth": pd.DataFrame(depth_rows("depth", ("res", "rev"), [2, 4]))})  # fmt: skip
    table = results / "depth.csv"
    table.write_text(mangle(table.read_text()))
    with pytest.raises(DataError, match=rf"depth\.csv: {message}"):
        read_results(results)
    proc = subprocess.run(
        [sys.executable, "-m", "bench", "report", "--results-dir", str(results),
         "--report-dir", str(tmp_path / "out"), "--no-figures"],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert proc.returncode == 2 and len(proc.stderr.strip().splitlines()) == 1
    assert "depth.csv" in proc.stderr and "Traceback" not in proc.stderr
