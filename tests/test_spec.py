"""Ablation specs: grid expansion, constraints, validation errors naming file and key, and every
shipped spec valid for every profile."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from bench.harness.spec import SpecError, available_specs, find_spec, load_spec, point_key

BASE = """
description = "test"
reproduces = "nothing"
seeds = 2
[base]
epochs = 1
layers = 2
channels = 12
"""


def write(tmp_path: Path, body: str, name: str = "t") -> Path:
    path = tmp_path / f"{name}.toml"
    path.write_text(textwrap.dedent(body))
    return path


def test_grid_is_cartesian_product_times_seeds(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        BASE
        + """
        [grid]
        arch = ["res", "rev"]
        layers = [1, 2, 3]
        [profiles.cpu]
        """,
    )
    points = load_spec(path).points("cpu")
    assert len(points) == 2 * 3 * 2
    combos = {(p.config.arch, p.config.layers, p.config.seed) for p in points}
    assert len(combos) == 12
    assert [p.index for p in points] == list(range(12))
    assert len({p.key for p in points}) == 12
    # seeds innermost, then the last grid axis
    assert [(p.config.layers, p.config.seed) for p in points[:4]] == [
        (1, 0),
        (1, 1),
        (2, 0),
        (2, 1),
    ]
    assert all(p.config.epochs == 1 and p.config.channels == 12 for p in points)


def test_seeds_override_and_list(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        BASE.replace("seeds = 2", "seeds = [3, 9]")
        + """
        [grid]
        arch = ["rev"]
        [profiles.cpu]
        """,
    )
    spec = load_spec(path)
    assert [p.config.seed for p in spec.points("cpu")] == [3, 9]
    assert [p.config.seed for p in spec.points("cpu", range(4))] == [0, 1, 2, 3]


def test_applies_collapses_axis_and_exclude_drops(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        BASE.replace("seeds = 2", "seeds = 1")
        + """
        [grid]
        arch = ["res", "rev"]
        groups = [2, 3, 4]
        layers = [1, 8]
        [applies]
        groups = { arch = ["rev", "wt-rev"] }
        [[exclude]]
        arch = "res"
        layers = [8]
        [profiles.cpu]
        """,
    )
    points = load_spec(path).points("cpu")
    res = [p for p in points if p.config.arch == "res"]
    rev = [p for p in points if p.config.arch == "rev"]
    assert [(p.config.layers, p.config.groups) for p in res] == [(1, 2)]  # default groups, no 8
    assert len(rev) == 3 * 2


def test_profiles_merge_over_top_level(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        BASE
        + """
        [grid]
        arch = ["res", "rev"]
        layers = [1, 2]
        [profiles.cpu]
        [profiles.big]
        seeds = 1
        base = { channels = 24 }
        grid = { layers = [64] }
        """,
    )
    spec = load_spec(path)
    big = spec.points("big")
    assert {(p.config.arch, p.config.layers, p.config.channels) for p in big} == {
        ("res", 64, 24),
        ("rev", 64, 24),
    }
    assert len(spec.points("cpu")) == 8


def test_cases_carry_labels(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        BASE.replace("seeds = 2", "seeds = 1")
        + """
        [[cases]]
        label = "Deep"
        layers = 8
        channels = 8
        [[cases]]
        label = "Wide"
        layers = 2
        channels = 24
        [grid]
        arch = ["rev"]
        [profiles.cpu]
        """,
    )
    points = load_spec(path).points("cpu")
    assert [(p.label, p.config.layers, p.config.channels) for p in points] == [
        ("Deep", 8, 8),
        ("Wide", 2, 24),
    ]


def test_point_key_is_stable_and_ignores_device(tmp_path: Path) -> None:
    path = write(tmp_path, BASE + "[grid]\narch = ['rev']\n[profiles.cpu]\n")
    first = [p.key for p in load_spec(path).points("cpu")]
    second = [p.key for p in load_spec(path).points("cpu")]
    assert first == second
    config = load_spec(path).points("cpu")[0].config
    assert point_key(config) == point_key(config.replace(data_root="/elsewhere"))
    assert point_key(config) != point_key(config.replace(lr=0.5))


@pytest.mark.parametrize(
    ("body", "key", "words"),
    [
        ("colour = 1\n" + BASE + "[grid]\narch=['rev']\n[profiles.cpu]\n", "colour", "unknown key"),
        (
            BASE + "[grid]\narch=['rev']\nwidth=[1]\n[profiles.cpu]\n",
            "grid.width",
            "unknown TrialConfig",
        ),
        (
            BASE + "[grid]\narch=['rev']\n[profiles.cpu]\nbase={depth=3}\n",
            "profiles.cpu.base.depth",
            "unknown",
        ),
        (
            BASE + "[grid]\narch=['rev']\n[profiles.cpu]\nextra=1\n",
            "profiles.cpu.extra",
            "unknown key",
        ),
        (BASE + "[grid]\narch=[]\n[profiles.cpu]\n", "grid.arch", "empty"),
        (BASE + "[grid]\narch='rev'\n[profiles.cpu]\n", "grid.arch", "must be a list"),
        (BASE + "[grid]\ngroups=[2, 5]\n[profiles.cpu]\n", "groups", "divisible"),
        (BASE + "[grid]\narch=['banana']\n[profiles.cpu]\n", "arch", "unknown value"),
        (BASE + "[grid]\nseed=[1]\n[profiles.cpu]\n", "grid.seed", "seeds"),
        (BASE + "[grid]\narch=['rev']\n[[exclude]]\narch='rev'\n[profiles.cpu]\n", "grid", "empty"),
        (BASE + "[grid]\narch=['rev']\n", "profiles", "at least one profile"),
        (
            BASE.replace('description = "test"', "") + "[grid]\narch=['rev']\n[profiles.cpu]\n",
            "description",
            "required",
        ),
        (
            BASE + "[grid]\narch=['res']\n[profiles.cpu]\nbase={deq_solver='anderson'}\n",
            "deq_solver",
            "DEQ",
        ),
        (
            BASE.replace("seeds = 2", "seeds = 0") + "[grid]\narch=['rev']\n[profiles.cpu]\n",
            "seeds",
            "positive",
        ),
    ],
)
def test_bad_specs_name_file_and_key(tmp_path: Path, body: str, key: str, words: str) -> None:
    path = write(tmp_path, body, name="broken")
    with pytest.raises(SpecError) as info:
        load_spec(path)
    message = str(info.value)
    assert str(path) in message
    assert key in info.value.key
    assert words in message


def test_invalid_point_message_shows_where(tmp_path: Path) -> None:
    path = write(
        tmp_path, BASE + "[grid]\narch=['rev']\nchannels=[12, 10]\ngroups=[3]\n[profiles.cpu]\n"
    )
    with pytest.raises(SpecError) as info:
        load_spec(path)
    assert "profiles.cpu" in info.value.key and "groups" in info.value.key
    assert "channels=10" in str(info.value)


def test_missing_profile_and_missing_spec(tmp_path: Path) -> None:
    path = write(tmp_path, BASE + "[grid]\narch=['rev']\n[profiles.cpu]\n")
    with pytest.raises(SpecError, match="no such profile"):
        load_spec(path).points("paper")
    with pytest.raises(SpecError, match="no such spec"):
        find_spec("does-not-exist")


SHIPPED = available_specs()


def test_the_required_specs_ship() -> None:
    required = {"depth", "weight-tying", "deq", "groups", "width", "full-vs-mini", "paper-proteins"}
    assert required <= set(SHIPPED)


@pytest.mark.parametrize("name", SHIPPED)
def test_every_shipped_spec_validates_for_every_profile(name: str) -> None:
    spec = load_spec(name)
    # a GPU-scale profile on OGB data: `paper`, or the conv spec's `arxiv` / `products`
    gpu_profiles = [p for p in ("paper", "arxiv", "products") if p in spec.profiles]
    assert "cpu" in spec.profiles and gpu_profiles
    for profile in spec.profiles:
        points = spec.points(profile)
        assert points, (name, profile)
        assert len({p.key for p in points}) == len(points)
    cpu = spec.points("cpu")
    if any(p.config.conv in ("sage", "gcn") for p in cpu):
        # convs that cannot read edge features: an offline graph without them, for every conv
        assert {p.config.dataset for p in cpu} == {"cora"}
    else:  # generated graphs, here without a download (accuracy: the ground-truth depth task)
        assert {p.config.dataset for p in cpu} <= {"synthetic-proteins", "synthetic-depth"}
    for profile in gpu_profiles:
        assert all(p.config.dataset.startswith("ogbn-") for p in spec.points(profile))
    text = find_spec(name).read_text()
    assert text.startswith("#"), "each spec starts with a comment block explaining it"
