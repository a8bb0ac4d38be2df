"""Search-space files: parsing, validation with messages naming file and key, sampling that
never yields an invalid configuration, and the up-front memory-budget check."""

from __future__ import annotations

import textwrap
from pathlib import Path

import optuna
import pytest

from bench.config import TrialConfig
from bench.errors import ConfigError
from bench.models import archs as arch_registry
from bench.tuning.params import SearchSpaceError
from bench.tuning.space import load_search_space
from bench.units import format_bytes, parse_bytes

TINY = {"num_nodes": 200}
VALID = """
description = "tiny"
[base]
dataset = "synthetic-proteins"
epochs = 2
dataset_options = { num_nodes = 200 }
[space]
arch = { choices = ["res", "rev", "deq"] }
layers = { low = 2, high = 8, step = 2 }
channels = { low = 6, high = 30 }
groups = { choices = [2, 3, 4] }
lr = { low = 1e-4, high = 1e-2, log = true }
dropout = { low = 0.0, high = 0.5 }
deq_solver = { choices = ["anderson", "broyden"] }
[tune]
memory_budget = "1GiB"
n_trials = 7
objectives = ["valid_score", "peak_memory_bytes", "step_time_s"]
"""


def write(tmp_path: Path, text: str, name: str = "space.toml") -> Path:
    path = tmp_path / name
    path.write_text(textwrap.dedent(text))
    return path


def test_parses_into_standard_optuna_distributions(tmp_path: Path) -> None:
    space = load_search_space(write(tmp_path, VALID))
    dists = {name: p.distribution() for name, p in space.params.items()}
    assert dists["layers"] == optuna.distributions.IntDistribution(2, 8, step=2)
    assert dists["channels"] == optuna.distributions.IntDistribution(6, 30)
    assert dists["lr"] == optuna.distributions.FloatDistribution(1e-4, 1e-2, log=True)
    assert dists["arch"] == optuna.distributions.CategoricalDistribution(("res", "rev", "deq"))
    assert space.settings.memory_budget == 2**30
    assert space.settings.n_trials == 7
    assert space.settings.directions(multi=True) == ["maximize", "minimize", "minimize"]
    assert space.settings.directions(multi=False) == ["maximize"]


def test_shipped_spaces_are_valid() -> None:
    for name in ("proteins-small", "proteins-paper"):
        space = load_search_space(name)
        assert space.params and space.settings.memory_budget


def test_sampling_only_yields_valid_configs(tmp_path: Path) -> None:
    """Conditional params and the groups/channels constraint, over many random draws."""
    space = load_search_space(write(tmp_path, VALID))
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=1))
    repaired = 0
    for _ in range(200):
        trial = study.ask()
        suggestion = space.suggest(trial)
        config = suggestion.config
        assert isinstance(config, TrialConfig)
        assert ("groups" in trial.params) == (
            config.arch in arch_registry.names(family="reversible")
        )
        assert ("deq_solver" in trial.params) == (config.arch == "deq")
        if config.arch in arch_registry.names(family="reversible"):
            assert config.channels % config.groups == 0
            assert 6 <= config.channels <= 30
            if "channels" in suggestion.adjusted:
                sampled, used = suggestion.adjusted["channels"]
                assert sampled == trial.params["channels"] and used == config.channels
                assert abs(used - sampled) < config.groups
                repaired += 1
        else:
            assert config.channels == trial.params["channels"]
        study.tell(trial, 0.0)
    assert repaired > 0  # the constraint was exercised, not avoided


@pytest.mark.parametrize(
    ("snippet", "key", "words"),
    [
        ("[space]\nlayers = { low = 8, high = 8 }", "space.layers", "empty range"),
        ("[space]\nlayers = { low = 9, high = 3 }", "space.layers", "empty range"),
        ("[space]\nlr = { low = 0.0, high = 0.1, log = true }", "space.lr.low", "positive"),
        ("[space]\nlr = { low = -1.0, high = 0.1, log = true }", "space.lr.low", "positive"),
        ("[space]\nlayerz = { low = 2, high = 4 }", "space.layerz", "unknown setting"),
        ("[space]\narch = { choices = [] }", "space.arch.choices", "non-empty"),
        ("[space]\narch = { choices = ['res', 'resnet'] }", "space.arch.choices", "resnet"),
        ("[space]\nlayers = { low = 2.5, high = 4 }", "space.layers.low", "integer"),
        ("[space]\nlayers = { low = 2, high = 8, step = 2, log = true }", "space.layers.step", "log"),
        ("[space]\nlayers = { low = 2, high = 9, step = 2 }", "space.layers.high", "step"),
        ("[space]\nlayers = { low = 2, hi = 9 }", "space.layers.hi", "unknown option"),
        ("[space]\ndropout = { low = 0.0, high = 1.0 }", "space.dropout", "[0, 1)"),
        ("[space]\nmemory_cap_bytes = { low = 1, high = 9 }", "space.memory_cap_bytes", "budget"),
        ("[space]\ndeq_tol = { low = 1e-5, high = 1e-3, log = true }", "space.deq_tol", "deq"),
        ("[space]\ngroups = { choices = [1, 2] }", "space.groups", "groups >= 2"),
        ("[space]\ngroups = { choices = [3] }", "space.groups", "does not divide"),
        (
            "[space]\ngroups = { choices = [2, 7] }\nchannels = { choices = [8, 16] }",
            "space.channels",
            "divisible by groups = 7",
        ),
        ("[base]\nlayerz = 3\n[space]\nlr = { low = 1e-4, high = 1e-2 }", "base.layerz", "unknown"),
        ("[base]\nlayers = 3\n[space]\nlayers = { low = 2, high = 4 }", "space.layers", "both"),
        ("[base]\nepochs = 0\n[space]\nlr = { low = 1e-4, high = 1e-2 }", "base.epochs", "positive"),
        ("[space]\n", "space", "at least one"),
        ("[spaces]\nlr = 1", "spaces", "unknown top-level key"),
        ("[space]\nlr = { low = 1e-4, high = 1e-2 }\n[tune]\nbudget = 3", "tune.budget", "unknown key"),
        ("[space]\nlr = { low = 1e-4, high = 1e-2 }\n[tune]\nmemory_budget = '3 lightyears'", "tune.memory_budget", "unknown unit"),
        ("[space]\nlr = { low = 1e-4, high = 1e-2 }\n[tune]\nobjectives = ['valid_score']", "tune.objectives", "two"),
        ("[space]\nlr = { low = 1e-4, high = 1e-2 }\n[tune]\nobjectives = ['valid_score', 'speed']", "tune.objectives", "speed"),
        ("[space]\nlr = { low = 1e-4, high = 1e-2 }\n[tune]\npruner = 'random'", "tune.pruner", "median"),
        ("[space]\nlr = { low = 1e-4, high = 1e-2 }\n[tune]\nn_trials = 0", "tune.n_trials", ">= 1"),
    ],
)  # fmt: skip
def test_bad_spaces_are_refused_naming_file_and_key(
    tmp_path: Path, snippet: str, key: str, words: str
) -> None:
    # a reversible arch by default (its constraints apply), unless the snippet sets its own
    base = "" if snippet.startswith("[base]") or "arch" in snippet else '[base]\narch = "rev"\n'
    path = write(tmp_path, 'description = "x"\n' + base + snippet)
    with pytest.raises(SearchSpaceError) as info:
        load_search_space(path)
    message = str(info.value)
    assert str(path) in message
    assert f"[{key}]" in message
    assert words in message
    assert isinstance(info.value, ConfigError)  # the CLI's error handling covers it


def test_unknown_spec_name_and_bad_toml(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="no search space named 'nope'"):
        load_search_space("nope")
    broken = write(tmp_path, "[space\nlr = 1")
    with pytest.raises(SearchSpaceError, match="not valid TOML"):
        load_search_space(broken)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("16GiB", 16 * 2**30),
        ("500MB", 500 * 10**6),
        ("1.5 KiB", 1536),
        ("1e9", 10**9),
        (1024, 1024),
    ],
)
def test_parse_bytes(text: str | int, expected: int) -> None:
    assert parse_bytes(text) == expected


@pytest.mark.parametrize("text", ["", "GiB", "-1GB", "0", "5XB", "lots", True])
def test_parse_bytes_refuses(text: str) -> None:
    with pytest.raises(ConfigError, match="memory_budget"):
        parse_bytes(text)


def test_format_bytes() -> None:
    assert format_bytes(512) == "512 B"
    assert format_bytes(3 * 2**30) == "3.00 GiB"
    assert format_bytes(None) == "-"


# --- the budget check, with the real memory model ------------------------------------------
SMALL = """
description = "budget check"
[base]
dataset = "synthetic-proteins"
epochs = 1
dataset_options = { num_nodes = 200 }
[space]
arch = { choices = ["res", "rev"] }
layers = { low = 2, high = 6 }
channels = { choices = [8, 32] }
[tune]
memory_budget = "1MiB"
"""


@pytest.fixture(scope="module")
def predictor():  # noqa: ANN201 - a callable from bench.tuning
    from bench.tuning.objective import memory_predictor

    return memory_predictor()


def test_smallest_corner_is_the_smallest_prediction(tmp_path: Path, predictor) -> None:  # noqa: ANN001
    """The budget check looks at corners only: no sampled configuration may predict less."""
    space = load_search_space(write(tmp_path, SMALL))
    smallest, config = space.min_predicted_peak(predictor)
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    for _ in range(15):
        trial = study.ask()
        assert predictor(space.suggest(trial).config) >= smallest
        study.tell(trial, 0.0)
    assert (config.layers, config.channels) == (2, 8)


def test_budget_nothing_fits_is_refused_before_running(tmp_path: Path, predictor) -> None:  # noqa: ANN001
    path = write(tmp_path, SMALL.replace('"1MiB"', '"1KiB"'))
    space = load_search_space(path)
    with pytest.raises(SearchSpaceError) as info:
        space.check_budget(space.settings.memory_budget, predictor, "tune.memory_budget")
    message = str(info.value)
    assert str(path) in message and "[tune.memory_budget]" in message
    assert "nothing fits the memory budget 1.00 KiB" in message
    smallest, _ = space.min_predicted_peak(predictor)
    space.check_budget(smallest, predictor, "tune.memory_budget")  # exactly the smallest: fits
    with pytest.raises(SearchSpaceError):
        space.check_budget(smallest - 1, predictor, "tune.memory_budget")
