"""The report's first screen and its regeneration: slopes that do not depend on the CPU or the
order of the rows, board cells a reader takes in at a glance, and a scope box computed from
the results (issue 34)."""

from __future__ import annotations

import itertools
import pathlib
import random
import re
import shutil
from fractions import Fraction

import numpy as np
import pandas as pd
import pytest
from test_report import depth_rows, full_results, row, write_results

from bench.exports.table import write_table
from bench.report import board, scope
from bench.report.aggregate import canonical_order, depth_means, linear_fit
from bench.report.build import build_report, paper_notes
from bench.report.fmt import clip, fmt_bytes
from bench.report.load import derive

ROOT = pathlib.Path(__file__).resolve().parents[1]


# --- fits that are the same on any CPU and in any order ----------------------------------------


def exact_slope(x: list[float], y: list[float]) -> Fraction:
    xs, ys = [Fraction(v) for v in x], [Fraction(v) for v in y]
    mx, my = sum(xs) / len(xs), sum(ys) / len(ys)
    return sum((a - mx) * (b - my) for a, b in zip(xs, ys, strict=True)) / sum(
        (a - mx) ** 2 for a in xs
    )


def test_an_exact_tie_prints_the_same_everywhere() -> None:
    """citeseer's GAT RevGNN: step memory 1388768, 1404896, 1469408 B at 2, 8, 32 layers. The
    slope is exactly 2688 B = 2.625 KiB; np.polyfit gave 2688.00000000001 on one CPU (+2.63)
    and a hair under on another (+2.62). The closed form gives the exact value on any."""
    fit = linear_fit([2, 8, 32], [1388768.0, 1404896.0, 1469408.0])
    assert fit is not None and fit.slope == 2688.0
    assert fmt_bytes(fit.slope, signed=True) == "+2.62 KiB"
    sage = linear_fit([2, 8, 32], [1049440.0, 1076320.0, 1183840.0])
    assert sage is not None and sage.slope == 4480.0 and fmt_bytes(sage.slope, True) == "+4.38 KiB"


def test_linear_fit_has_the_same_bits_in_any_order_and_is_correctly_rounded() -> None:
    rng = random.Random(34)
    for _ in range(50):
        n = rng.randint(3, 7)
        x = rng.sample([1, 2, 4, 8, 16, 32, 64, 128, 256, 1001], n)
        y = [rng.uniform(1e5, 1e8) * (1 + 0.3 * i) for i in range(n)]
        fits = {
            (f.slope.hex(), f.intercept.hex(), f.r2.hex())
            for f in (linear_fit(*zip(*perm, strict=True)) for perm in
                      itertools.islice(itertools.permutations(zip(x, y, strict=True)), 24))
        }  # fmt: skip
        assert len(fits) == 1, "the order of the points changed a bit of the fit"
        slope = float.fromhex(next(iter(fits))[0])
        assert slope == float(exact_slope(x, y))  # the exact slope, rounded once


def test_no_fit_reaches_for_blas(monkeypatch: pytest.MonkeyPatch) -> None:
    """The fits and the board's GPU slope never call a least-squares solver (whose kernel the
    CPU picks)."""

    def refuse(*_a: object, **_k: object) -> None:
        raise AssertionError("a BLAS/LAPACK least-squares call in the report")

    for name in ("polyfit",):
        monkeypatch.setattr(np, name, refuse)
    monkeypatch.setattr(np.linalg, "lstsq", refuse)
    assert linear_fit([1, 2, 3], [2.0, 4.0, 6.5]) is not None
    gpu = pd.DataFrame({"label": [f"ResGNN-64 x {n}" for n in (28, 112, 448)],
                        "status": "ok", "device": "NVIDIA H200", "layers": [28, 112, 448],
                        "step_added_bytes": [1e9, 4e9, 16e9], "peak_bytes": 1e9})  # fmt: skip
    assert board.gpu_numbers(gpu)["res-linear"].startswith("ResGNN-64 +0.036 GB a layer")


def test_depth_means_are_exact_whatever_the_row_order() -> None:
    rows = derive(pd.DataFrame(depth_rows("depth", ("rev",), [2, 4, 8], seeds=(0, 1, 2))))
    rows["step_added_bytes"] = [0.1, 0.2, 0.3, 1e16, 1.0, -1e16, 5.0, 7.0, 11.0]
    forward = depth_means(rows, "step_added_bytes")
    backward = depth_means(rows.iloc[::-1], "step_added_bytes")
    assert [v.hex() for v in forward] == [v.hex() for v in backward]
    assert forward[4] == 1.0 / 3  # 1e16 + 1 - 1e16 summed exactly


def test_canonical_order_ignores_the_tables_order() -> None:
    df = derive(pd.DataFrame(depth_rows("depth", ("res", "rev"), [2, 4, 8])))
    df["source_file"] = "depth.csv"
    df["trial_number"] = range(len(df))
    df["attempt"] = 0
    shuffled = df.sample(frac=1.0, random_state=3)
    pd.testing.assert_frame_equal(canonical_order(df), canonical_order(shuffled))


def shuffle_results(source: pathlib.Path, target: pathlib.Path, seed: int) -> None:
    """A copy of a results folder with every table's rows in another order."""
    shutil.copytree(source, target)
    for path in sorted(target.glob("*.csv")):
        table = pd.read_csv(path, dtype=str, keep_default_na=False)
        table.sample(frac=1.0, random_state=seed).to_csv(path, index=False)


def report_bytes(out: pathlib.Path) -> dict[str, bytes]:
    paths = [out / "REPORT.md", *sorted((out / "tables").glob("*"))]
    return {p.name: p.read_bytes() for p in paths}


def test_shuffled_rows_give_identical_bytes(tmp_path: pathlib.Path) -> None:
    results = write_results(tmp_path / "results", full_results())
    build_report(results, tmp_path / "a", draw_figures=False)
    shuffle_results(results, tmp_path / "shuffled" / "results", seed=1)
    build_report(tmp_path / "shuffled" / "results", tmp_path / "b", draw_figures=False)
    assert report_bytes(tmp_path / "a") == report_bytes(tmp_path / "b")


@pytest.mark.slow
def test_committed_results_regenerate_in_any_row_order(tmp_path: pathlib.Path) -> None:
    """The committed results, rows shuffled: the same REPORT.md and tables as in their own
    order; and the exact fit's slope for a citeseer-GAT-like series (2688 B/layer: a tie at
    three digits that BLAS rounded either way) prints +2.62 KiB/layer."""
    build_report(ROOT / "results", tmp_path / "a", draw_figures=False)
    shuffle_results(ROOT / "results", tmp_path / "shuffled" / "results", seed=34)
    build_report(tmp_path / "shuffled" / "results", tmp_path / "b", draw_figures=False)
    a = report_bytes(tmp_path / "a")
    assert a == report_bytes(tmp_path / "b")
    text = a["REPORT.md"].decode()
    from bench.report.aggregate import linear_fit

    depths = np.array([2.0, 4.0, 8.0, 16.0, 32.0])
    fit = linear_fit(depths, 1_234_567.0 + 2688.0 * depths)
    assert fit is not None and fit.slope == 2688.0 and f"{fit.slope / 1024:.2f}" == "2.62"
    for line in verdict_cells(text):
        assert len(line) <= board.CELL_LIMIT, line


# --- the first screen ---------------------------------------------------------------------------


def verdict_cells(report: str) -> list[str]:
    """Every cell of the board's two tables (REPORT.md's "## Verdicts" section)."""
    section = report.split("## Verdicts\n")[1].split("\n## ")[0]
    cells = []
    for line in section.splitlines():
        if line.startswith("| ") and not line.startswith("| ---"):
            cells += [c.strip() for c in re.split(r"(?<!\\)\|", line.strip().strip("|"))]
    return cells


def test_every_board_cell_is_at_most_160_characters(tmp_path: pathlib.Path) -> None:
    tables = full_results()
    long_case = [row("depth", "rev", 8, 0, study="depth-" + "x" * 200)]
    results = write_results(tmp_path / "results", tables)
    write_table(pd.DataFrame(long_case), results / "long.csv")
    build_report(results, tmp_path / "out", draw_figures=False)
    text = (tmp_path / "out" / "REPORT.md").read_text()
    cells = verdict_cells(text)
    assert len(cells) >= 6 * 13 and max(map(len, cells)) <= board.CELL_LIMIT
    assert "…" in text.split("## Slices")[0], "a long deciding case is cut, not dropped"
    assert "Deciding case:" in text.split("### rev-flat")[1].split("###")[0]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("short", "short"),
        ("res step memory +661 KiB/layer (R²=1.000); rev +3.33 KiB/layer (= 0.5% of res's)",
         "res step memory +661 KiB/layer (R²=1.000)…"),
        ("per-layer params G=2 -> G=4: 7,392 -> 5,088, divided by 1.45 (by G: 2; alpha = 0.54)",
         "per-layer params G=2 -> G=4: 7,392 -> 5,088…"),
        ("under a budget: res reaches 3 hops (3 layers) (OOM from 4 hops), deq 3 hops",
         "under a budget: res reaches 3 hops (3 layers)…"),
        ("x" * 80, "x" * 59 + "…"),
    ],
)  # fmt: skip
def test_clip_cuts_at_a_clause_outside_brackets(text: str, expected: str) -> None:
    assert clip(text, 60) == expected
    assert len(clip(text, 60)) <= 60


def test_paper_asides_are_said_once_above_the_table() -> None:
    evidence = ["res +1 KiB/layer; rev model state is 93% of its peak growth (paper: 95%, 112->1001 layers)",
                "rev model state is 100% of its peak growth (paper: 95%, 112->1001 layers); OOM",
                "nothing to move"]  # fmt: skip
    stripped, notes = paper_notes(evidence)
    assert stripped == ["res +1 KiB/layer; rev model state is 93% of its peak growth",
                        "rev model state is 100% of its peak growth; OOM", "nothing to move"]  # fmt: skip
    assert notes == ("The paper, beside *rev model state is …% of its peak growth*: 95%, "
                     "112->1001 layers.\n\n")  # fmt: skip


def gpu_rows(res_gb: float = 4.48, rev_gb: float = 1.09, aggr: str = "fused") -> pd.DataFrame:
    return pd.DataFrame({"label": ["ResGNN-64", "RevGNN-64"], "status": "ok",
                         "device": "NVIDIA H100 80GB HBM3", "aggr_impl": aggr,
                         "peak_bytes": [res_gb * 1e9, rev_gb * 1e9]})  # fmt: skip


def test_scope_box_is_computed_from_the_results() -> None:
    rows = depth_rows("depth", ("res", "rev"), [2, 4, 8], seeds=(0,), epochs=2)
    rows += [row("overview", a, 8, s, epochs=7) for a in ("res", "rev") for s in (0, 1, 2)]
    df = derive(pd.DataFrame(rows))
    text = scope.scope_md(df, gpu_rows())
    assert text.startswith("## Scope\n\n> **What ran where.** 12 of 12 trials ran on CPUs")
    assert "0 of 12 scored trials ran on a GPU or on ogbn-proteins" in text
    assert "needs 4.48 GB against the paper's 27.1 GB" in text
    assert "saves 4.1× here against 13× in the paper" in text
    assert "depth-cpu: 1 seed, 2 epochs" in text and "overview-cpu: 3 seeds, 7 epochs" in text
    assert "12 trials (`wall_time_s`)" in text
    lighter = scope.scope_md(df, gpu_rows(res_gb=27.1, rev_gb=2.09, aggr="pyg"))
    assert "with PyG's max needs 27.10 GB" in lighter and "saves 13× here" in lighter


def test_scope_box_says_when_a_score_exists_on_a_gpu_or_at_paper_scale() -> None:
    rows = [row("overview", "rev", 8, s) for s in (0, 1)]
    rows[0]["device"] = "cuda"
    rows[1]["dataset"] = "ogbn-proteins"
    text = scope.scope_md(derive(pd.DataFrame(rows)), None)
    assert "**Scores**: 1 of 2 scored trials ran on a GPU and 1 on ogbn-proteins" in text
    assert "No GPU measurement is committed" in text


def test_committed_report_opens_with_the_scope_box() -> None:
    text = (ROOT / "report" / "REPORT.md").read_text()
    first = text.split("## Verdicts")[0]
    for phrase in ("## Scope", "No trained score at paper scale or on a GPU yet",
                   "4.1× here against 13× in the paper", "1 seed, 2 epochs"):  # fmt: skip
        assert phrase in first, phrase
    assert max(map(len, verdict_cells(text))) <= board.CELL_LIMIT
