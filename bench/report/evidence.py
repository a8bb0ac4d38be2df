"""Which committed numbers are evidence at today's code, per study and per slice.

A number is evidence only if it reproduces at the code that is here now (DESIGN.md,
"Evidence"). Today's code is the trial code's source hash
(:func:`bench.measure.provenance.source_hash`, computed from this checkout). A study is
*current* when every finished trial of it recorded that hash (run at today's code), or when
``results/verify.csv`` (``python -m bench reproduce --verify``, :mod:`bench.harness.verify`) has
its sample rerun at that hash and every rerun point reproduced (or could not run on the
verifying machine); otherwise it is *stale*: the report shows its numbers but judges no claim
on them, and names the command that reruns it.
"""

from __future__ import annotations

import pathlib
from dataclasses import dataclass

import pandas as pd

from bench.exports.table import VERIFY_FILE


@dataclass(frozen=True)
class StudyEvidence:
    """One study's standing at today's code."""

    study: str
    current: bool
    how: str  # "run at <hash>", "verified at <commit>: n/n reproduce", or why it is stale

    @property
    def rerun(self) -> str:
        """The command that measures this study again at today's code."""
        spec, _, profile = self.study.rpartition("-")
        if self.study.startswith("tune-"):
            return f"python -m bench tune {self.study.removeprefix('tune-').removesuffix('-multi')}"
        return f"python -m bench reproduce {spec} --profiles {profile}"


def study_evidence(
    df: pd.DataFrame, results_dir: pathlib.Path, source: str
) -> dict[str, StudyEvidence]:
    """Every study of ``df`` (finished rows) at the code whose source hash is ``source``."""
    verified = _verify_table(results_dir)
    out = {}
    for study, rows in df.groupby("study", sort=True):
        hashes = set(rows["source_hash"].dropna().astype(str))
        if hashes == {source} and rows["source_hash"].notna().all():
            out[str(study)] = StudyEvidence(str(study), True, f"run at today's code ({source})")
            continue
        out[str(study)] = _from_verify(str(study), verified, source)
    return out


def _verify_table(results_dir: pathlib.Path) -> pd.DataFrame:
    path = pathlib.Path(results_dir) / VERIFY_FILE
    if not path.exists():
        return pd.DataFrame(columns=["study", "verdict", "source_now", "commit_now", "differs"])
    return pd.read_csv(path)


def _from_verify(study: str, verified: pd.DataFrame, source: str) -> StudyEvidence:
    rows = verified[(verified["study"] == study) & (verified["source_now"].astype(str) == source)]
    ran = rows[rows["verdict"] != "not run here"]
    if ran.empty:
        why = ("not verified at today's code" if rows.empty
               else "its sample could not run on the verifying machine")  # fmt: skip
        return StudyEvidence(study, False, f"⚠ stale: {why}")
    bad = ran[ran["verdict"] != "reproduces"]
    commit = str(ran["commit_now"].iloc[0])[:7]
    if len(bad):
        first = str(bad["differs"].iloc[0]).split(";")[0]
        return StudyEvidence(study, False, f"⚠ stale: {len(bad)} of {len(ran)} points rerun at "
                             f"{commit} differ ({first})")  # fmt: skip
    identical = int(ran["identical"].astype(str).str.lower().eq("true").sum())
    return StudyEvidence(study, True, f"verified at {commit}: {len(ran)}/{len(ran)} reproduce "
                         f"({identical} bit for bit)")  # fmt: skip


def slice_evidence(df: pd.DataFrame, studies: dict[str, StudyEvidence]) -> dict[str, str]:
    """Each slice's code standing: one line per study behind it, current ones first."""
    out = {}
    for name, rows in df.groupby("slice", sort=True):
        behind = [studies[str(s)] for s in sorted(rows["study"].astype(str).unique())]
        out[str(name)] = "; ".join(f"{e.study}: {e.how}"
                                   for e in sorted(behind, key=lambda e: not e.current))  # fmt: skip
    return out


def judged(df: pd.DataFrame, studies: dict[str, StudyEvidence]) -> pd.DataFrame:
    """The rows claims are judged on: those of current studies."""
    current = {s for s, e in studies.items() if e.current}
    out = df[df["study"].astype(str).isin(current)]
    out.attrs.update(df.attrs)
    return out
