"""Early stopping: training ends after ``patience`` evaluations without a validation gain, and
the record says at which epoch and why; without ``patience`` every epoch runs (the paper's
recipe)."""

from __future__ import annotations

import pytest

from bench import cli
from bench.config import TrialConfig
from bench.errors import ConfigError
from bench.trial import run_trial
from bench.trial.training import _Patience

TINY = {"num_nodes": 200, "avg_degree": 10, "num_tasks": 8}
BASE = TrialConfig(arch="res", layers=2, channels=8, epochs=6, train_parts=2, eval_parts=1,
                   dataset_options=TINY)  # fmt: skip


def test_patience_counts_evaluations_without_a_gain() -> None:
    patience = _Patience(2, None)
    assert [patience.exhausted(v) for v in (0.5, 0.6, 0.6, 0.59)] == [False, False, False, True]
    # a gain resets the count
    patience = _Patience(2, None)
    assert [patience.exhausted(v) for v in (0.5, 0.4, 0.7, 0.6, 0.8)] == [False] * 5


def test_min_delta_ignores_small_gains() -> None:
    patience = _Patience(2, 0.05)
    assert [patience.exhausted(v) for v in (0.5, 0.52, 0.54)] == [False, False, True]


def test_off_never_stops() -> None:
    patience = _Patience(None, None)
    assert not any(patience.exhausted(0.5) for _ in range(100))


def test_trial_stops_after_patience_evaluations_and_says_so() -> None:
    # min_delta 0.5 on a 0..1 score: no evaluation after the first can count as a gain
    record = run_trial(BASE.replace(epochs=10, patience=2, min_delta=0.5))
    assert record.status == "ok", record.error
    assert (record.stopped_epoch, record.stop_reason) == (3, "patience")
    assert [p["epoch"] for p in record.curve] == [1, 2, 3]
    assert record.test_at_best_valid is not None


def test_patience_is_in_evaluations_not_epochs() -> None:
    record = run_trial(BASE.replace(epochs=10, eval_every=2, patience=2, min_delta=0.5))
    assert (record.stopped_epoch, record.stop_reason) == (6, "patience")
    assert [p["valid"] is not None for p in record.curve] == [False, True] * 3


def test_without_patience_every_epoch_runs() -> None:
    record = run_trial(BASE.replace(epochs=3))
    assert (record.stopped_epoch, record.stop_reason) == (3, "max-epochs")
    flat = record.flat()
    assert flat["stopped_epoch"] == 3 and flat["stop_reason"] == "max-epochs"


def test_a_trial_ended_by_its_time_budget_says_timeout() -> None:
    record = run_trial(BASE.replace(epochs=50, patience=40, timeout=0.5))
    assert record.status == "timeout"
    assert record.stop_reason == "timeout"
    assert record.stopped_epoch == (len(record.curve) or None)


@pytest.mark.parametrize(
    ("changes", "flag"),
    [({"patience": 0}, "patience"), ({"patience": 2.5}, "patience"),
     ({"min_delta": 0.01}, "min_delta"), ({"patience": 3, "min_delta": -1.0}, "min_delta")],
)  # fmt: skip
def test_bad_settings_name_the_field(changes: dict, flag: str) -> None:
    with pytest.raises(ConfigError) as exc:
        TrialConfig(**changes).validated()
    assert exc.value.flag == f"--{flag.replace('_', '-')}"


def test_cli_refuses_bad_patience_before_loading_data(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr("bench.data.load", lambda *a, **k: pytest.fail("data was loaded"))
    assert cli.main(["trial", "--patience", "0"]) == 2
    assert "--patience" in capsys.readouterr().err
