"""Graph files (``--dataset PATH.pt``): a graph written here trains through ``trial``, ``ablate``
and ``tune``; every malformed file is one error line naming the file and the field (exit 2,
nothing trained); a pickle that would run code is refused; the content hash keeps two files of
one name apart and leaves every stored point key as it was."""

from __future__ import annotations

import csv
import os
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import torch
from torch_geometric.data import Data, HeteroData
from torch_geometric.utils import to_undirected

from bench import cli
from bench.config import TrialConfig
from bench.data import graph_file, load
from bench.errors import ConfigError
from bench.harness import preflight
from bench.harness.spec import SpecError, load_spec, point_key
from bench.record import TrialRecord

ROOT = Path(__file__).resolve().parents[1]
FAST = {"arch": "res", "layers": 2, "channels": 16, "epochs": 2, "train_parts": 2, "eval_parts": 1}


def graph(kind: str = "multiclass", n: int = 120, seed: int = 0, **extra: Any) -> Data:
    """A small learnable graph: classes (or tasks) follow the features."""
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 6, generator=gen)
    edge_index = to_undirected(torch.randint(0, n, (2, 4 * n), generator=gen), num_nodes=n)
    if kind == "multiclass":
        y = x[:, :3].argmax(1)
        data = Data(x=x, edge_index=edge_index, y=y)
    else:  # three 0/1 tasks with some unlabelled (NaN) targets, and edge features
        y = (x[:, :3] > 0).float()
        y[torch.rand(n, 3, generator=gen) < 0.1] = float("nan")
        edge_attr = torch.rand(edge_index.size(1), 2, generator=gen)
        data = Data(x=x, edge_index=edge_index, edge_attr=edge_attr, y=y)
    for key, value in extra.items():
        data[key] = value
    return data


def write(path: Path, obj: Any) -> str:
    torch.save(obj, path)
    return str(path)


@pytest.fixture
def multiclass(tmp_path: Path) -> str:
    return write(tmp_path / "multiclass.pt", graph("multiclass"))


@pytest.fixture
def multilabel(tmp_path: Path) -> str:
    return write(tmp_path / "multilabel.pt", graph("multilabel"))


def in_process(
    config: TrialConfig, timeout: float | None = None, on_epoch: Any = None
) -> TrialRecord:
    from bench.trial import run_trial

    return run_trial(config, on_epoch=on_epoch)


# --- the format, as documented ------------------------------------------------------------------
def test_the_documented_example_writes_a_file_that_loads(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    example = re.search(r"Example.*?::\n\n(.*?)\n\n\*\*", graph_file.__doc__ or "", re.S)
    assert example is not None, "the module docstring's example block moved"
    code = "\n".join(line[4:] for line in example.group(1).splitlines())
    assert len(code.splitlines()) <= 10
    monkeypatch.chdir(tmp_path)
    exec(compile(code, "example", "exec"), {})
    assert cli.main(["datasets", "--dataset", "my-graph.pt"]) == 0
    out = capsys.readouterr().out
    assert "my-graph.pt" in out and "multiclass, 4 classes: accuracy" in out
    assert "random 60/20/20, seed 0" in out
    info = graph_file.inspect("my-graph.pt")
    assert (info.nodes, info.features, info.outputs, info.edge_dim) == (1000, 16, 4, None)
    assert cli.main(["datasets", "--file-format"]) == 0
    assert "torch.save" in capsys.readouterr().out
    cli.main(["datasets"])  # the listing points to the format
    assert "--file-format" in capsys.readouterr().out


def test_task_metric_and_split_are_inferred(
    multiclass: str, multilabel: str, tmp_path: Path
) -> None:
    ds = load(multiclass)
    assert (ds.task, ds.metric, ds.num_outputs) == ("multiclass", "acc", 3)
    assert [ds.split[k].numel() for k in ("train", "valid", "test")] == [72, 24, 24]
    assert ds.info["sha256"] == graph_file.file_sha256(multiclass)
    other = load(multiclass, seed=1)  # the split's seed is a dataset option
    assert not torch.equal(other.split["train"], ds.split["train"])
    ds = load(multilabel)
    assert (ds.task, ds.metric, ds.num_outputs, ds.edge_dim) == ("multilabel", "rocauc", 3, 2)
    assert ds.info["unlabelled_targets"] > 0 and torch.isnan(ds.data.y).any()
    # OGB-style class ids [N, 1] are classes; an integer [N, T] of 0/1 is multilabel
    base = graph("multiclass")
    ids = write(tmp_path / "ids.pt", Data(x=base.x, edge_index=base.edge_index, y=base.y[:, None]))
    assert graph_file.inspect(ids).task == "multiclass"
    tasks = write(
        tmp_path / "t.pt", Data(x=base.x, edge_index=base.edge_index, y=(base.x[:, :2] > 0).long())
    )
    assert graph_file.inspect(tasks).task == "multilabel"
    # the file's own masks are the split
    n = base.num_nodes
    masks = {k: torch.zeros(n, dtype=torch.bool) for k in ("train_mask", "val_mask", "test_mask")}
    masks["train_mask"][:50], masks["val_mask"][50:80], masks["test_mask"][80:] = True, True, True
    own = write(tmp_path / "own.pt", graph("multiclass", **masks))
    ds = load(own)
    assert ds.split["valid"].tolist() == list(range(50, 80))
    assert ds.info["split_rule"] == "the file's train/val/test masks"


# --- trial, ablate, tune ------------------------------------------------------------------------
@pytest.mark.parametrize("kind", ["multiclass", "multilabel"])
def test_trial_trains_a_graph_file(
    kind: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = write(tmp_path / f"{kind}.pt", graph(kind))
    flags = [f"--{k.replace('_', '-')}={v}" for k, v in FAST.items()]
    assert cli.main(["trial", "--dataset", path, *flags, "--json", "--no-progress"]) == 0
    out, err = capsys.readouterr()
    record = TrialRecord.from_dict(__import__("json").loads(out.strip().splitlines()[-1]))
    metric = "acc" if kind == "multiclass" else "rocauc"
    assert record.status == "ok" and record.metric == metric
    assert all(p["loss"] is not None and p["loss"] == p["loss"] for p in record.curve)  # no NaN
    assert record.config["dataset"] == path
    assert record.config["dataset_hash"] == graph_file.file_sha256(path)
    assert record.dataset_split == "random 60/20/20, seed 0"
    # what was inferred is printed before training
    assert f"{path} (sha256 " in err and ("accuracy" if kind == "multiclass" else "ROC-AUC") in err
    # the export's columns: the hash beside the path
    columns = list(record.flat())
    assert columns.index("dataset_hash") == columns.index("dataset") + 1
    assert sorted(record.config).index("dataset_hash") == sorted(record.config).index("dataset") + 1


def test_ablate_runs_a_spec_whose_dataset_is_a_file(multilabel: str, tmp_path: Path) -> None:
    from bench.harness.export import export_study
    from bench.harness.storage import open_storage, storage_url
    from bench.harness.sweep import SweepOptions, run_sweep

    spec = tmp_path / "mine.toml"
    spec.write_text(f"""
description = "depth on my graph"
[base]
dataset = "{multilabel}"
epochs = 1
train_parts = 2
eval_parts = 1
channels = 16
[grid]
arch = ["res", "rev"]
layers = [2]
[profiles.cpu]
""")
    result = run_sweep(
        SweepOptions(spec, results_dir=tmp_path, progress=False, device="cpu"), in_process
    )
    assert result.complete and result.failed == 0 and result.total == 2
    import optuna

    url = storage_url(None, "mine", tmp_path)
    study = optuna.load_study(study_name=result.study_name, storage=open_storage(url))
    out = export_study(study, tmp_path / "mine-cpu.csv")
    rows = list(csv.DictReader(out.open()))
    assert {r["arch"] for r in rows} == {"res", "rev"} and {r["status"] for r in rows} == {"ok"}
    assert {r["dataset_hash"] for r in rows} == {graph_file.file_sha256(multilabel)}
    assert {r["metric"] for r in rows} == {"rocauc"}


def test_tune_samples_a_space_whose_dataset_is_a_file(multiclass: str, tmp_path: Path) -> None:
    from bench.tuning.run import run_study
    from bench.tuning.space import load_search_space
    from bench.tuning.study import TuneRun

    path = tmp_path / "space.toml"
    path.write_text(f"""
description = "tune on my graph"
[base]
dataset = "{multiclass}"
arch = "res"
layers = 2
epochs = 2
train_parts = 2
eval_parts = 1
[space]
channels = {{ choices = [8, 16] }}
lr = {{ low = 1e-3, high = 1e-2, log = true }}
[tune]
n_trials = 2
seed = 0
""")
    space = load_search_space(path)
    run = TuneRun(space=space, settings=space.settings, multi=False, results_dir=tmp_path)
    study = run_study(run, in_process, None, log=lambda _: None)
    from bench.harness.storage import record_of

    trials = study.get_trials()
    assert len(trials) == 2 and all(t.value is not None and 0 <= t.value <= 1 for t in trials)
    for trial in trials:  # every trial trained on the file, and says which version of it
        record = record_of(trial)
        assert record is not None and record.status == "ok" and record.metric == "acc"
        assert record.config["dataset"] == multiclass
        assert record.config["dataset_hash"] == graph_file.file_sha256(multiclass)


# --- malformed files: one line each, naming the file and the field ------------------------------
def _drop(key: str) -> Callable[[Data], Any]:
    def edit(d: Data) -> Data:
        del d[key]
        return d

    return edit


def _set(key: str, value: Callable[[Data], Any]) -> Callable[[Data], Any]:
    def edit(d: Data) -> Data:
        d[key] = value(d)
        return d

    return edit


def _nan_x(d: Data) -> Data:
    d.x[3, 1] = float("inf")
    return d


def _masks(
    train: slice,
    valid: slice,
    test: slice,
    dtype: torch.dtype = torch.bool,
    without: str | None = None,
) -> Callable[[Data], Any]:
    def edit(d: Data) -> Data:
        for key, part in (("train_mask", train), ("val_mask", valid), ("test_mask", test)):
            if key != without:
                mask = torch.zeros(d.num_nodes, dtype=dtype)
                mask[part] = 1
                d[key] = mask
        return d

    return edit


MALFORMED: dict[str, tuple[Callable[[Data], Any], str, str]] = {
    # name: (edit of a good graph, field named, words in the message)
    "not a Data": (lambda d: d.to_dict(), "not a torch_geometric.data.Data", "dict"),
    "hetero": (lambda d: HeteroData(x=d.x), "not a torch_geometric.data.Data", "storage"),
    "no x": (_drop("x"), "x:", "missing"),
    "no edge_index": (_drop("edge_index"), "edge_index:", "missing"),
    "no y": (_drop("y"), "y:", "missing"),
    "x 1-d": (_set("x", lambda d: d.x[:, 0]), "x:", "[N, F]"),
    "x integer": (_set("x", lambda d: d.x.long()), "x:", "floating point"),
    "x inf": (_nan_x, "x:", "NaN/inf"),
    "edge_index [3, E]": (
        _set("edge_index", lambda d: d.edge_index[[0, 1, 0]]),
        "edge_index:",
        "[2, E]",
    ),
    "edge_index float": (
        _set("edge_index", lambda d: d.edge_index.float()),
        "edge_index:",
        "integers",
    ),
    "edge id too big": (
        _set(
            "edge_index",
            lambda d: d.edge_index.clamp(max=d.num_nodes - 1).index_fill(
                1, torch.tensor([5]), d.num_nodes
            ),
        ),
        "edge_index:",
        "out of range",
    ),
    "edge id negative": (
        _set("edge_index", lambda d: d.edge_index.index_fill(1, torch.tensor([0]), -1)),
        "edge_index:",
        "out of range",
    ),
    "edge_attr rows": (_set("edge_attr", lambda d: torch.rand(3, 2)), "edge_attr:", "[E, D]"),
    "edge_attr nan": (
        _set("edge_attr", lambda d: torch.full((d.edge_index.size(1), 2), float("nan"))),
        "edge_attr:",
        "NaN",
    ),
    "class id negative": (
        _set("y", lambda d: d.y.index_fill(0, torch.tensor([7]), -1)),
        "y:",
        "out of range",
    ),
    "y rows": (_set("y", lambda d: d.y[:-1]), "y:", "rows"),
    "float y 1-d": (_set("y", lambda d: d.y.float()), "y:", "not labels"),
    "target 2": (_set("y", lambda d: torch.full((d.num_nodes, 2), 2.0)), "y:", "out of range"),
    "one class": (_set("y", lambda d: torch.zeros_like(d.y)), "y:", "two"),
    "mask missing": (
        _masks(slice(0, 50), slice(50, 80), slice(80, None), without="test_mask"),
        "test_mask:",
        "missing",
    ),
    "mask dtype": (
        _masks(slice(0, 50), slice(50, 80), slice(80, None), dtype=torch.long),
        "train_mask:",
        "bool",
    ),
    "empty split": (_masks(slice(0, 100), slice(100, 100), slice(100, None)), "val_mask:", "empty"),
    "overlapping": (_masks(slice(0, 60), slice(50, 80), slice(80, None)), "train_mask:", "shares"),
    "too few nodes": (
        lambda d: Data(x=d.x[:2], edge_index=torch.tensor([[0], [1]]), y=torch.tensor([0, 1])),
        "train_mask:",
        "too few",
    ),
}


@pytest.mark.parametrize("case", list(MALFORMED))
def test_a_malformed_file_is_one_line_naming_file_and_field(
    case: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    edit, field, words = MALFORMED[case]
    path = write(tmp_path / "bad.pt", edit(graph("multiclass")))
    assert cli.main(["trial", "--dataset", path, "--epochs", "1"]) == 2
    out, err = capsys.readouterr()
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith(f"error: --dataset: {path}") and field in lines[0], lines[0]
    assert words in lines[0], lines[0]
    assert out == ""  # nothing trained, no record


def test_a_pickle_that_would_run_code_is_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    marker = tmp_path / "ran"

    class Payload:
        def __reduce__(self) -> tuple[Any, ...]:
            return (os.system, (f"touch {marker}",))

    path = write(tmp_path / "evil.pt", {"x": Payload()})
    assert cli.main(["trial", "--dataset", path]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "refused" in err[0] and "system" in err[0], err
    assert not marker.exists()
    # reading graph files leaves PyG's process-wide safe globals as they were (OGB loads need them)
    assert Data in torch.serialization.get_safe_globals()
    garbage = tmp_path / "garbage.pt"
    garbage.write_bytes(b"not a checkpoint")
    assert cli.main(["datasets", "--dataset", str(garbage)]) == 2
    assert "not a file written by torch.save" in capsys.readouterr().err


def test_file_errors_in_specs_settings_and_options(
    multilabel: str, multiclass: str, tmp_path: Path
) -> None:
    spec = tmp_path / "s.toml"
    spec.write_text(f'description = "x"\n[base]\ndataset = "{tmp_path}/nope.pt"\n[profiles.cpu]\n')
    with pytest.raises(SpecError, match="dataset: no graph file at .*nope.pt"):
        load_spec(spec)
    with pytest.raises(ConfigError) as err:  # sage/gcn cannot read the file's edge features
        TrialConfig(dataset=multilabel, conv="sage").validated()
    assert err.value.field == "conv"
    with pytest.raises(ConfigError, match="unknown option 'num_nodes'"):
        TrialConfig(dataset=multiclass, dataset_options={"num_nodes": 5}).validated()
    with pytest.raises(ConfigError, match="registered"):
        TrialConfig(dataset_hash="0" * 64).validated()


# --- identity -----------------------------------------------------------------------------------
def test_the_hash_keeps_two_files_of_one_name_apart(tmp_path: Path) -> None:
    path = str(tmp_path / "graph.pt")
    write(Path(path), graph("multiclass", seed=0))
    first = TrialConfig.from_dict({"dataset": path})
    assert first.dataset_hash == graph_file.file_sha256(path)
    assert first.replace(lr=0.01).dataset_hash == first.dataset_hash
    write(Path(path), graph("multiclass", seed=1))  # same name, other content
    os.utime(path, ns=(1, 1))  # a distinct version even on a coarse-mtime file system
    second = TrialConfig.from_dict({"dataset": path})
    assert second.dataset_hash != first.dataset_hash
    assert point_key(second) != point_key(first)
    # a configuration made with the old file is refused now, and preflight says so in one line
    with pytest.raises(ConfigError) as err:
        TrialConfig.from_dict(first.to_dict())
    assert err.value.field == "dataset_hash" and "has changed" in err.value.message
    problems = preflight.check([first])
    assert len(problems) == 1 and "has changed" in problems[0].line()
    assert preflight.check([second]) == []
    # another dataset takes its own hash (or none)
    assert first.replace(dataset="synthetic-proteins").dataset_hash is None


def test_stored_point_keys_are_unchanged() -> None:
    """Every point key in the committed exports is still what its spec expands to: the new
    ``dataset_hash`` field is unset (so left out of the key) for registered datasets."""
    checked = 0
    for export in sorted((ROOT / "results").glob("*-*.csv")):
        spec_name, _, profile = export.stem.rpartition("-")
        if not (ROOT / "ablations" / f"{spec_name}.toml").is_file():
            continue  # a tuning study's export
        keys = {p.key for p in load_spec(ROOT / "ablations" / f"{spec_name}.toml").points(profile)}
        stored = {r["point_key"] for r in csv.DictReader(export.open()) if r.get("point_key")}
        assert stored and stored <= keys, export.name
        checked += 1
    assert checked >= 10
