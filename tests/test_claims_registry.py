"""The claim registry: a claim is one object. Registering one puts it on REPORT.md's verdict
board, in its own section and in ``tables/claims.csv`` with nothing else touched; a claim with a
missing piece is refused when it is registered, not when a report is half written."""

from __future__ import annotations

import contextlib
import dataclasses
import pathlib
from collections.abc import Iterator

import pandas as pd
import pytest
from test_report import depth_rows, write_results  # the report tests' hand-made export rows

from bench.measure.provenance import source_hash
from bench.report.build import build_report
from bench.report.claims import (
    NO_DATA,
    SANITY_CHECK,
    SUPPORTED,
    Claim,
    ClaimError,
    Finding,
    all_claims,
    get_claim,
    register_claim,
    registered_claims,
    unregister_claim,
)
from bench.report.claims.registry import NO_PAPER
from bench.report.load import derive


def _toy_judge(df: pd.DataFrame) -> list[Finding]:
    return [Finding("toy-claim", "fig2", "toy slice", "toy case", f"{len(df)} toy trials",
                    SUPPORTED)]  # fmt: skip


TOY = Claim(
    key="toy-claim",
    statement="A toy claim that any trials bear out.",
    short="a toy claim",
    paper=NO_PAPER,
    figure="fig2",
    threshold="at least one toy trial",
    threshold_source="the toy's own test: it checks the wiring, not the paper",
    judge=_toy_judge,
    kind=SANITY_CHECK,
)


@contextlib.contextmanager
def registered(claim: Claim) -> Iterator[Claim]:
    """``claim`` on the report for the block only: the registry is restored after it."""
    register_claim(claim)
    try:
        yield claim
    finally:
        unregister_claim(claim.key)


def _report(results: pathlib.Path, out: pathlib.Path) -> dict[str, bytes]:
    build_report(results, out, draw_figures=False)
    return {str(p.relative_to(out)): p.read_bytes() for p in sorted(out.rglob("*")) if p.is_file()}


def test_a_registered_claim_reaches_the_board_its_section_and_claims_csv(
    tmp_path: pathlib.Path,
) -> None:
    trials = pd.DataFrame(depth_rows("depth", ("res", "rev"), [2, 4, 8]))
    trials["source_hash"] = source_hash()  # run at today's code: evidence the claim is judged on
    results = write_results(tmp_path / "results", {"depth": trials})
    built_in = registered_claims()
    before = _report(results, tmp_path / "before")
    with registered(TOY):
        assert registered_claims() == (*built_in, TOY)  # registration order: last
        after = _report(results, tmp_path / "after")
    assert registered_claims() == built_in
    with pytest.raises(KeyError, match="toy-claim"):
        get_claim("toy-claim")

    changed = {name for name in after if after[name] != before.get(name)}
    assert set(after) == set(before)
    assert changed == {"REPORT.md", "tables/claims.csv", "tables/claims.md"}

    text, old = after["REPORT.md"].decode(), before["REPORT.md"].decode()
    board = text.split("## Slices")[0]
    others = board.split("**Sanity checks and design targets**")[1]
    (row,) = [line for line in board.splitlines() if "toy-claim" in line]
    assert row.startswith("| [toy-claim](#toy-claim): a toy claim | **supported** |")
    assert (
        f"toy slice: {len(trials)} toy trials" in row and row in others
    )  # a sanity check: kept apart
    start = text.index("\n\n### toy-claim\n")
    section = text[start : text.index("\n## ", start)]
    assert TOY.statement + " (sanity check) Verdict: **supported**. Figure 2." in section
    assert f"Threshold: {TOY.threshold}. Where it comes from: {TOY.threshold_source}." in section
    assert text.replace(row + "\n", "").replace(section, "") == old  # nothing else moved

    claims_csv = pd.read_csv(tmp_path / "after" / "tables" / "claims.csv")
    toy = claims_csv[claims_csv["claim"] == "toy-claim"]
    assert toy.to_dict("records") == [{
        "claim": "toy-claim", "kind": SANITY_CHECK, "figure": "fig2", "slice": "toy slice",
        "case": "toy case", "evidence": f"{len(trials)} toy trials", "threshold": TOY.threshold,
        "verdict": SUPPORTED,
    }]  # fmt: skip
    assert claims_csv["claim"].iloc[-1] == "toy-claim"  # after every built-in claim's cases


@pytest.mark.parametrize(
    ("change", "why"),
    [
        ({"statement": ""}, "no statement"),
        ({"paper": None}, "no paper"),
        ({"threshold": " "}, "no threshold"),
        ({"threshold_source": ""}, "no threshold_source"),
        ({"short": ""}, "no short"),
        ({"figure": "fig99"}, "unknown figure 'fig99'"),
        ({"kind": "opinion"}, "unknown kind 'opinion'"),
        ({"kind": "paper's claim"}, "a paper's claim needs the paper's number"),
        ({"judge": None}, "its judge is not callable"),
        ({"key": "rev-flat"}, "its key is already registered"),
    ],
)
def test_an_incomplete_claim_is_refused_at_registration(change: dict, why: str) -> None:
    built_in = registered_claims()
    broken = dataclasses.replace(TOY, **change)
    with pytest.raises(ClaimError, match=f"claim '{broken.key}' refused: .*{why}"):
        register_claim(broken)
    assert registered_claims() == built_in


def test_every_problem_is_named_at_once() -> None:
    broken = dataclasses.replace(TOY, statement="", figure="fig99")
    with pytest.raises(ClaimError, match="no statement; unknown figure"):
        register_claim(broken)


def test_a_claim_without_cases_is_not_enough_data_and_a_stray_case_is_refused() -> None:
    df = derive(pd.DataFrame(depth_rows("depth", ("res", "rev"), [2, 4, 8])))
    with registered(dataclasses.replace(TOY, judge=lambda df: [])):
        (finding,) = [f for f in all_claims(df) if f.key == "toy-claim"]
    assert (finding.figure, finding.evidence, finding.verdict) == (
        "fig2", "no trials to test it", NO_DATA)  # fmt: skip

    def stray(df: pd.DataFrame) -> list[Finding]:
        return [dataclasses.replace(f, key="rev-flat") for f in _toy_judge(df)]

    with (
        registered(dataclasses.replace(TOY, judge=stray)),
        pytest.raises(
            ClaimError, match="claim 'toy-claim': its judge returned cases of \\['rev-flat'\\]"
        ),
    ):
        all_claims(df)


def test_the_built_in_claims_keep_the_board_order() -> None:
    assert [c.key for c in registered_claims()] == [
        "rev-flat", "res-linear", "wt-rev-flat", "deq-flat", "batching", "groups-params",
        "tied-params", "rev-vs-res", "tied-tradeoff", "groups-count", "depth-buys-accuracy-rev",
        "depth-buys-accuracy-wt-rev", "depth-buys-accuracy-deq", "task-needs-k", "rev-time",
        "conv-flat",
    ]  # fmt: skip
    assert get_claim("rev-time").kind == "design target"
