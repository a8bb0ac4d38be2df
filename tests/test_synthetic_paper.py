"""``synthetic-proteins-paper``: the preset, its generator scaled down, the cache, the profiles.

The full preset (132,534 nodes, 79M directed edges) is too big for a test; these tests build the
same generator at the preset's shape ratios (8 species, species split, 112 tasks, mean degree
the same fraction of a species' size) and check its degree and split statistics. Measured on
the full preset (seed 0): 79,085,610 directed edges (mean degree 596.7 of the asked 597;
ogbn-proteins: 79,122,504), train/valid/test 99,401 / 16,567 / 16,566 nodes, 10 random parts
of 13,254 nodes and about 0.79M edges each.
"""

from __future__ import annotations

import threading
from pathlib import Path

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch_geometric.utils import coalesce, is_undirected

from bench.data import cache, dataset_names, load
from bench.data import synthetic as synthetic_module
from bench.data.partition import induced_batch, partition_batches, random_partition
from bench.data.registry import SPECS
from bench.harness.spec import load_spec

PRESET = SPECS["synthetic-proteins-paper"]
N_FULL, DEG_FULL = PRESET.options["num_nodes"], PRESET.options["avg_degree"]
# The preset scaled down 33x: same species count, tasks and split; the mean degree keeps its
# ratio to the species size (597 of ~16.6k nodes per species = 3.6%).
N_SMALL = 4000
DEG_SMALL = round(DEG_FULL * N_SMALL / N_FULL)  # 18
SMALL = {"num_nodes": N_SMALL, "avg_degree": DEG_SMALL}


@pytest.fixture
def work_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A private work dir, and caching switched on for every graph size."""
    monkeypatch.setenv("BENCH_WORK_DIR", str(tmp_path))
    monkeypatch.setattr(synthetic_module, "CACHE_MIN_EDGES", 0)
    return tmp_path


def cached_files(work_dir: Path) -> list[Path]:
    return sorted((work_dir / cache.FOLDER).glob("*.pt"))


# --- the preset -------------------------------------------------------------------------------
def test_preset_has_ogbn_proteins_sizes_and_is_listed(capsys: pytest.CaptureFixture[str]) -> None:
    from bench.cli import main

    assert "synthetic-proteins-paper" in dataset_names()
    opts = PRESET.options
    assert (opts["num_nodes"], opts["num_species"], opts["num_tasks"]) == (132_534, 8, 112)
    assert opts["split"] == "species" and PRESET.loader == SPECS["synthetic-proteins"].loader
    assert set(opts) == set(SPECS["synthetic-proteins"].options)  # same loader, other defaults
    # about ogbn-proteins' 79,122,504 directed edges
    assert abs(opts["num_nodes"] * opts["avg_degree"] / 79_122_504 - 1) < 0.001
    assert main(["datasets"]) == 0
    out = capsys.readouterr().out
    line = next(row for row in out.splitlines() if row.startswith("synthetic-proteins-paper"))
    assert "132,534" in line and "cached in" in line


# --- the generator at the preset's shape ratios ------------------------------------------------
def test_scaled_down_preset_degree_and_split_statistics() -> None:
    ds = load("synthetic-proteins-paper", **SMALL)
    d = ds.data
    n, e = d.num_nodes, d.edge_index.shape[1]
    assert (ds.num_features, ds.edge_dim, ds.num_outputs) == (8 + 8, 8, 112)
    # undirected, no self loops, no duplicate edges, sorted by source (CSR order)
    assert is_undirected(d.edge_index, d.edge_attr, num_nodes=n)
    assert not (d.edge_index[0] == d.edge_index[1]).any()
    assert coalesce(d.edge_index, num_nodes=n).shape[1] == e
    assert (d.edge_index[0].diff() >= 0).all()
    assert ((d.edge_attr > 0) & (d.edge_attr < 1)).all() and d.edge_attr.dtype == torch.float32
    # degrees: the mean is what was asked for (a few shortcuts are dropped as repeats); the
    # spread is binomial (each of 2 x avg_degree ring neighbours kept with probability 1/2)
    degree = torch.bincount(d.edge_index[0], minlength=n).float()
    assert abs(degree.mean().item() / DEG_SMALL - 1) < 0.02, degree.mean()
    assert 0.6 < degree.std().item() / (DEG_SMALL / 2) ** 0.5 < 1.4, degree.std()
    assert degree.min() >= 1 and degree.max() <= 3 * DEG_SMALL
    # species: dense within, shortcuts across (5% of links rewired, 7/8 of them to another species)
    sp = d.species
    across = (sp[d.edge_index[0]] != sp[d.edge_index[1]]).float().mean().item()
    assert abs(across - 0.05 * 7 / 8) < 0.01, across
    assert torch.equal(torch.bincount(sp), torch.full((8,), N_SMALL // 8))
    # species split: 6 species train, 1 valid, 1 test (the full preset: 99,401 / 16,567 / 16,566)
    sizes = {k: v.numel() for k, v in ds.split.items()}
    assert sizes == {"train": 6 * N_SMALL // 8, "valid": N_SMALL // 8, "test": N_SMALL // 8}
    assert set(sp[ds.split["train"]].tolist()) == set(range(6))
    assert set(sp[ds.split["valid"]].tolist()) == {6} and set(sp[ds.split["test"]].tolist()) == {7}
    rates = d.y.mean(0)
    assert d.y.shape == (n, 112) and (rates > 0.05).all() and (rates < 0.6).all()


@settings(max_examples=25, deadline=None)
@given(
    species=st.integers(1, 9),
    per_species=st.integers(3, 40),
    avg_degree=st.integers(2, 50),
    shortcut_prob=st.sampled_from([0.0, 0.05, 0.45]),
    seed=st.integers(0, 1000),
)
def test_generated_edges_are_a_simple_undirected_graph(
    species: int, per_species: int, avg_degree: int, shortcut_prob: float, seed: int
) -> None:
    """Whatever the sizes: both directions, no self loops, no repeats, sorted by source."""
    n = species * per_species
    edge_index, edge_attr, sp, _ = synthetic_module.generate(
        n, avg_degree, 3, species, 2, 0.0, shortcut_prob, seed
    )
    assert is_undirected(edge_index, edge_attr, num_nodes=n)
    assert not (edge_index[0] == edge_index[1]).any()
    assert coalesce(edge_index, num_nodes=n).shape[1] == edge_index.shape[1]
    assert (edge_index[0].diff() >= 0).all()
    assert torch.equal(torch.bincount(sp, minlength=species), torch.full((species,), per_species))


def test_degree_saturates_in_small_species() -> None:
    """A species of s nodes cannot give a node more than s - 1 ring neighbours (no error)."""
    ds = load("synthetic-proteins", num_nodes=200, avg_degree=30, shortcut_prob=0.0)
    degree = torch.bincount(ds.data.edge_index[0], minlength=200)
    assert int(degree.max()) <= 24  # 8 species of 25 nodes


def test_partition_batches_equal_pyg_subgraphs() -> None:
    """The one-pass partitioner gives exactly PyG's induced subgraphs (edges, order, features)."""
    d = load("synthetic-proteins-paper", **SMALL).data
    batches = partition_batches(d, 10, seed=3)
    for nodes, batch in zip(random_partition(d.num_nodes, 10, 3), batches, strict=True):
        ref = induced_batch(d, nodes)
        assert torch.equal(batch.n_id, ref.n_id) and torch.equal(batch.x, ref.x)
        assert torch.equal(batch.edge_index, ref.edge_index)
        assert torch.equal(batch.edge_attr, ref.edge_attr) and torch.equal(batch.y, ref.y)
    # a tenth of the nodes and about a hundredth of the edges per part, as with ogbn-proteins
    edges = sum(b.edge_index.shape[1] for b in batches) / 10
    assert abs(edges / (d.edge_index.shape[1] / 100) - 1) < 0.1


# --- the on-disk cache ------------------------------------------------------------------------
def test_second_load_reads_the_cache(work_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    first = load("synthetic-proteins-paper", **SMALL)
    assert first.info["cache"].startswith("wrote") and len(cached_files(work_dir)) == 1

    def no_generation(*args: object, **kwargs: object) -> None:
        raise AssertionError("generated again instead of reading the cache")

    monkeypatch.setattr(synthetic_module, "generate", no_generation)
    second = load("synthetic-proteins-paper", **SMALL)
    assert second.info["cache"].startswith("read")
    for key in ("edge_index", "edge_attr", "x", "y", "species"):
        assert torch.equal(first.data[key], second.data[key]), key
    # options that do not change the generated graph share its cache file
    random_split = load("synthetic-proteins-paper", **SMALL, split="random")
    assert random_split.info["cache"].startswith("read")
    monkeypatch.undo()
    monkeypatch.setenv("BENCH_WORK_DIR", str(work_dir))
    monkeypatch.setattr(synthetic_module, "CACHE_MIN_EDGES", 0)
    other = load("synthetic-proteins-paper", **SMALL, seed=1)  # another generator option
    assert other.info["cache"].startswith("wrote") and len(cached_files(work_dir)) == 2
    assert not torch.equal(other.data.y, first.data.y)


def test_interrupted_write_is_never_trusted(
    work_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    real_save = torch.save

    def interrupted_save(obj: object, f: object) -> None:
        f.write(b"PK\x03\x04 half a file")  # type: ignore[attr-defined]
        raise KeyboardInterrupt

    monkeypatch.setattr(cache.torch, "save", interrupted_save)
    with pytest.raises(KeyboardInterrupt):
        load("synthetic-proteins-paper", **SMALL)
    left = [f.name for f in (work_dir / cache.FOLDER).iterdir()]
    assert cached_files(work_dir) == [] and not [f for f in left if f.endswith(".tmp")], left
    # a stale temporary file from another process that died mid-write is never read either
    monkeypatch.setattr(cache.torch, "save", real_save)
    identity = {
        **{k: PRESET.options[k] for k in ("hops", "label_noise", "num_species", "num_tasks")},
        **{k: PRESET.options[k] for k in ("seed", "shortcut_prob")},
        **SMALL,
        "generator_version": synthetic_module.GENERATOR_VERSION,
    }
    final = cache.path_for("synthetic-proteins", identity)
    stale = final.with_name(f".{final.name}.999-dead.tmp")
    stale.write_bytes(b"garbage")
    ds = load("synthetic-proteins-paper", **SMALL)
    assert ds.info["cache"] == f"wrote {final}" and final.is_file()
    assert cache.read(final, identity) is not None


def test_corrupt_cache_file_is_regenerated(
    work_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    fresh = load("synthetic-proteins-paper", **SMALL)
    (path,) = cached_files(work_dir)
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])  # truncated
    again = load("synthetic-proteins-paper", **SMALL)
    assert "unreadable cache file" in capsys.readouterr().err
    assert again.info["cache"].startswith("wrote")
    assert torch.equal(again.data.edge_index, fresh.data.edge_index)
    assert load("synthetic-proteins-paper", **SMALL).info["cache"].startswith("read")


def test_cache_file_made_with_other_options_is_ignored(
    work_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    mine = load("synthetic-proteins-paper", **SMALL)
    other = load("synthetic-proteins-paper", **SMALL, seed=1)
    mine_path = Path(mine.info["cache"].removeprefix("wrote "))
    other_path = Path(other.info["cache"].removeprefix("wrote "))
    mine_path.write_bytes(other_path.read_bytes())  # a file under the wrong name (copied by hand)
    again = load("synthetic-proteins-paper", **SMALL)
    assert "made with other options" in capsys.readouterr().err
    assert again.info["cache"] == f"wrote {mine_path}"
    assert torch.equal(again.data.y, mine.data.y) and not torch.equal(again.data.y, other.data.y)


def test_small_graphs_are_not_cached(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BENCH_WORK_DIR", str(tmp_path))
    ds = load("synthetic-proteins")
    assert ds.info["cache"].startswith("off") and not (tmp_path / cache.FOLDER).exists()


def test_processes_missing_the_same_file_take_turns(tmp_path: Path) -> None:
    """While one holder generates, another waits on the lock (then finds the file)."""
    path = tmp_path / "generated" / "g.pt"
    entered = threading.Event()

    def second() -> None:
        with cache.locked(path):
            entered.set()

    with cache.locked(path):
        thread = threading.Thread(target=second)
        thread.start()
        assert not entered.wait(0.3)
    thread.join(5)
    assert entered.is_set()


# --- the paper-synthetic profiles -------------------------------------------------------------
@pytest.mark.parametrize("name", ["depth", "weight-tying", "deq", "overview"])
def test_paper_synthetic_profiles_mirror_the_paper_grids(name: str) -> None:
    spec = load_spec(name)
    synthetic = spec.points("paper-synthetic")
    paper = spec.points("paper")
    assert all(p.config.dataset == "synthetic-proteins-paper" for p in synthetic)
    assert all(p.config.epochs == 1 for p in synthetic)  # memory needs one epoch, not training

    def shape(point: object) -> tuple:
        c = point.config  # type: ignore[attr-defined]
        return (c.arch, c.layers, c.channels, c.groups, c.train_parts, c.batching, c.deq_solver)

    assert sorted(map(shape, synthetic)) == sorted(map(shape, paper))
