"""The studies a ``reproduce`` run could not run on its machine, and why: written to
``results/skipped.json`` by :mod:`bench.harness.reproduce`, listed in REPORT.md by the report."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

SKIPPED_FILE = "skipped.json"


@dataclass(frozen=True)
class Skip:
    """A study not run here, and why (one preflight line per unmet requirement)."""

    spec: str
    profile: str
    reasons: tuple[str, ...]

    @property
    def study(self) -> str:
        return f"{self.spec}-{self.profile}"


def read_skipped(results_dir: Path) -> list[Skip]:
    """The skips recorded under ``results_dir`` (none when the file is absent)."""
    path = Path(results_dir) / SKIPPED_FILE
    if not path.exists():
        return []
    entries = json.loads(path.read_text(encoding="utf-8"))
    return [Skip(e["spec"], e["profile"], tuple(e["reasons"])) for e in entries]


def write_skipped(
    results_dir: Path, skipped: Sequence[Skip], attempted: set[tuple[str, str]]
) -> Path | None:
    """Replace the entries of the studies tried now (kept: those not tried); no file if none."""
    kept = [s for s in read_skipped(results_dir) if (s.spec, s.profile) not in attempted]
    entries = sorted([*kept, *skipped], key=lambda s: (s.spec, s.profile))
    path = Path(results_dir) / SKIPPED_FILE
    if not entries:
        path.unlink(missing_ok=True)
        return None
    path.parent.mkdir(parents=True, exist_ok=True)
    blob = [{**asdict(s), "reasons": list(s.reasons)} for s in entries]
    path.write_text(json.dumps(blob, indent=2) + "\n", encoding="utf-8")
    return path
