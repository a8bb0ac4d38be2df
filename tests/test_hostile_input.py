"""A hostile but realistic user (issue 36, items 5-9): every bad input is one line, exit 2,
before anything runs, and quotes no password; dataset options are checked by the dataset's own
rules wherever a configuration is validated; a graph file that would fail after training is
refused at load; ``capacity --verify`` confirms only what it measured; a refused pickle names
every global it holds, in a stable order; PyG's generated modules stay out of ``/tmp``."""

from __future__ import annotations

import os
import pickle
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Any

import pytest
import torch
from torch_geometric.data import Data
from torch_geometric.utils import to_undirected

from bench import cli
from bench.config import TrialConfig
from bench.data import graph_file
from bench.data import options as dataset_options
from bench.data.base import random_split
from bench.errors import ConfigError
from bench.harness import preflight
from bench.harness.credentials import mask_url, storage_from
from bench.harness.spec import MAX_POINTS, MAX_SEEDS, SpecError, load_spec
from bench.instruments.capacity.search import Row
from bench.instruments.capacity.verify import judge

ROOT = Path(__file__).resolve().parents[1]
MiB = 2**20


def one_line(capsys: pytest.CaptureFixture[str]) -> str:
    """The one line a refusal printed on stderr (and nothing on stdout)."""
    out, err = capsys.readouterr()
    lines = err.strip().splitlines()
    assert len(lines) == 1 and out == "", (out, err)
    return lines[0]


def spec_file(tmp_path: Path, body: str, name: str = "hostile.toml") -> Path:
    path = tmp_path / name
    path.write_text('description = "hostile input"\n' + textwrap.dedent(body))
    return path


# --- item 5: one line each, before anything runs ----------------------------------------------
@pytest.mark.parametrize(
    ("argv", "words"),
    [
        (["ablate"], "the following arguments are required: spec"),
        (["ablate", "depth", "--device", "tpu"], "invalid choice: 'tpu'"),
        (["trial", "--layers", "x"], "invalid int value: 'x'"),
        (["trial", "--isolated", "--in-process"], "not allowed with argument"),
    ],
)
def test_argparse_errors_are_one_line(
    argv: list[str], words: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exit_:
        cli.main(argv)
    assert exit_.value.code == 2
    line = one_line(capsys)
    assert line.startswith(f"python -m bench {argv[0]}: error: ") and words in line, line
    assert "--help" in line  # where the options are listed instead of the usage block


def test_an_unknown_command_is_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["tpu-check"]) == 2
    line = one_line(capsys)
    assert "unknown command 'tpu-check'" in line and "ablate" in line


def test_a_billion_seeds_is_refused_at_once(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = spec_file(tmp_path, "seeds = 1000000000\n[profiles.cpu]\n")
    start = time.perf_counter()
    with pytest.raises(SpecError, match=f"at most {MAX_SEEDS:,}"):
        load_spec(path)
    assert cli.main(["ablate", str(path), "--dry-run"]) == 2
    assert f"1,000,000,000 seeds: at most {MAX_SEEDS:,}" in one_line(capsys)
    assert cli.main(["ablate", "depth", "--seeds", "1000000000", "--dry-run"]) == 2
    assert f"--seeds: at most {MAX_SEEDS:,}" in one_line(capsys)
    assert time.perf_counter() - start < 10  # before: a MemoryError after 11-16 s


def test_a_grid_too_large_is_refused_before_expansion_and_the_flag_lifts_it(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    axes = "\n".join(f"{name} = {list(range(1, 12))}" for name in ("layers", "epochs", "patience"))
    huge = spec_file(tmp_path, f"seeds = 9\n[grid]\n{axes}\n[profiles.cpu]\n", "huge.toml")
    start = time.perf_counter()
    with pytest.raises(SpecError) as err:
        load_spec(huge)
    assert time.perf_counter() - start < 5  # counted, not expanded: 11,979 points
    assert f"11,979 trials (11 layers x 11 epochs x 11 patience x 9 seeds): more than " \
           f"{MAX_POINTS:,}; ablate --max-points 11979" in str(err.value)  # fmt: skip
    small = spec_file(tmp_path, "seeds = 3\n[grid]\nlayers = [1, 2, 3, 4]\n[profiles.cpu]\n")
    assert cli.main(["ablate", str(small), "--dry-run", "--max-points", "11"]) == 2
    assert "12 trials (4 layers x 3 seeds): more than 11" in one_line(capsys)
    assert cli.main(["ablate", str(small), "--dry-run", "--max-points", "12"]) == 0
    assert "12 trials in hostile-cpu" in capsys.readouterr().out


SECRET = "p@ss/w0rd#x"  # unencoded: SQLAlchemy reads password "p", host "ss"
UNREADABLE = [
    f"postgresql://alice:{SECRET}@db.cluster/bench",  # '@' ends up in the database part
    "postgresql://alice:p@ss:w0rd@db.cluster/bench",  # a port that is a piece of the password
    "postgresql://alice:s3cr3t@db.cluster:port/bench",  # a port that is no number
]


@pytest.mark.parametrize("url", UNREADABLE)
def test_a_storage_url_that_reads_wrongly_is_one_line_quoting_nothing(
    url: str, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    pieces = ("w0rd", "s3cr3t", "p@ss")
    with pytest.raises(ConfigError) as err:
        storage_from(url, "test")
    assert err.value.field == "storage" and "percent-encoded" in err.value.message
    assert not any(p in err.value.message for p in pieces)
    assert cli.main(["ablate", "depth", "--storage", url]) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert lines[-1].startswith("ablate: --storage: cannot be read as written")
    assert not any(p in line for line in lines for p in pieces), lines  # the warning neither
    monkeypatch.setenv("BENCH_STORAGE", url)
    assert cli.main(["export", "depth"]) == 2
    line = one_line(capsys)
    assert "$BENCH_STORAGE cannot be read" in line and not any(p in line for p in pieces)
    shown = mask_url(url)  # what any message would show: nothing before the last '@'
    assert shown.startswith("postgresql://***@db.cluster") and "alice" not in shown


def test_a_generated_graph_too_large_for_this_machine_is_refused_before_it_is_built(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    start = time.perf_counter()
    flags = ["trial", "--dataset-option", "num_nodes=1000000000000", "--dry-run"]
    assert cli.main(flags) == 2
    assert "num_nodes must be an integer <= 2,147,483,647" in one_line(capsys)
    flags = ["trial", "--dataset-option", "num_nodes=1000000000", "--dataset-option",
             "avg_degree=100"]  # fmt: skip
    for extra in (["--dry-run"], []):
        assert cli.main([*flags, *extra]) == 2
        line = one_line(capsys)
        assert "TiB to generate and this machine has" in line and "lower num_nodes" in line
    assert time.perf_counter() - start < 30  # nothing was generated
    # a sweep's preflight says it in one line too (the machine made small to show it)
    monkeypatch.setattr(dataset_options, "machine_memory", lambda: 100_000)
    config = TrialConfig(dataset="synthetic-depth")
    problems = preflight.check([config])
    assert [p.requirement.kind for p in problems] == ["dataset"]
    assert "synthetic-depth with these options takes about" in problems[0].line()


# --- item 6: dataset options checked where a configuration is validated -----------------------
@pytest.mark.parametrize(
    ("dataset", "options", "words"),
    [
        ("synthetic-proteins", {"num_nodes": -5}, "num_nodes must be an integer >= 24"),
        ("synthetic-proteins", {"nodes": 200}, "unknown option 'nodes'"),
        ("synthetic-proteins", {"split": "time"}, "split must be one of species, random"),
        ("synthetic-depth", {"depth": 0}, "depth must be an integer >= 1"),
        ("cora", {"split": "per-class"}, "split must be one of public, random"),
        ("amazon-photo", {"seed": -1}, "seed must be an integer >= 0"),
        ("blogcatalog", {"pe_dim": 65}, "pe_dim must be an integer <= 64"),
        ("ogbn-arxiv", {"download": "yes"}, "download must be true or false"),
    ],
)
def test_dataset_options_are_checked_by_the_datasets_rules_at_validation(
    dataset: str, options: dict[str, Any], words: str
) -> None:
    with pytest.raises(ConfigError, match=words) as err:
        TrialConfig.from_dict({"dataset": dataset, "dataset_options": options})
    assert err.value.field == "dataset_options"


def test_a_bad_option_is_one_line_in_spec_dry_run_and_trial(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = spec_file(tmp_path, "[base]\ndataset_options = { num_nodes = -5 }\n[profiles.cpu]\n")
    assert cli.main(["ablate", str(path), "--dry-run"]) == 2
    assert "profiles.cpu: dataset_options: num_nodes must be an integer >= 24" in one_line(capsys)
    for extra in (["--dry-run"], ["--epochs", "1"]):  # said once, before any data is made
        assert cli.main(["trial", "--dataset-option", "num_nodes=-5", *extra]) == 2
        assert one_line(capsys) == ("error: --dataset-options: num_nodes must be an integer "
                                    ">= 24, got -5")  # fmt: skip


def multilabel_file(path: Path, unlabelled: str, masks: bool) -> str:
    """A 200-node multilabel graph whose ``unlabelled`` split holds only NaN targets."""
    gen = torch.Generator().manual_seed(0)
    n = 200
    x = torch.randn(n, 8, generator=gen)
    edge_index = to_undirected(torch.randint(0, n, (2, 800), generator=gen), num_nodes=n)
    y = (x[:, :3] > 0).float()
    split = random_split(n, 0)
    data = Data(x=x, edge_index=edge_index)
    if masks:
        for key, name in graph_file.MASKS.items():
            mask = torch.zeros(n, dtype=torch.bool)
            mask[split[key]] = True
            data[name] = mask
    y[split[unlabelled]] = float("nan")
    data.y = y
    torch.save(data, path)
    return str(path)


@pytest.mark.parametrize("unlabelled", ["train", "valid", "test"])
def test_a_multilabel_file_with_an_unscorable_split_is_refused_at_load(
    unlabelled: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = multilabel_file(tmp_path / "masked.pt", unlabelled, masks=True)
    assert cli.main(["datasets", "--dataset", path]) == 2
    line = one_line(capsys)
    assert f"{path}: y: the {unlabelled} split (" in line, line
    with pytest.raises(ConfigError, match=f"the {unlabelled} split"):
        TrialConfig(dataset=path).validated()


def test_a_random_split_is_checked_with_the_seed_it_is_given(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = multilabel_file(tmp_path / "random.pt", "valid", masks=False)
    assert cli.main(["datasets", "--dataset", path]) == 2
    assert "(random split, seed 0)" in one_line(capsys)
    assert cli.main(["trial", "--dataset", path, "--dry-run"]) == 2
    assert "no task with both a labelled 0 and a labelled 1" in one_line(capsys)
    config = TrialConfig(dataset=path, dataset_options={"seed": 1}).validated()
    assert config.dataset_hash is not None  # another seed's valid split holds labels


def test_verify_timeout_must_be_positive(capsys: pytest.CaptureFixture[str]) -> None:
    for value in ("-1", "0", "nan"):
        assert cli.main(["capacity", "--verify", "--verify-timeout", value]) == 2
        assert "--verify-timeout: must be a positive number of seconds" in one_line(capsys)


# --- item 7: capacity --verify confirms only what it measured -----------------------------------
def point(role: str, layers: int, measured: int | None, budget: int, **extra: Any) -> dict:
    fits = None if measured is None else measured <= budget
    return {"arch": "res", "channels": 128, "layers": layers, "point": role,
            "predicted_peak_bytes": 0, "measured_peak_bytes": measured, "fits_measured": fits,
            "confirmed": fits is not None and fits == (role != "does not fit"),
            "status": "ok" if measured else "error", "message": None, **extra}  # fmt: skip


def boundary_row(fits_at: int, measured: tuple[int | None, int | None], budget: int) -> Row:
    row = Row("res", 128, fits_at, "boundary", over={"layers": fits_at + 1})
    row.checks = [point("fits", fits_at, measured[0], budget),
                  point("does not fit", fits_at + 1, measured[1], budget)]  # fmt: skip
    return row


def test_verify_confirms_only_a_boundary_measured_on_both_sides() -> None:
    budget = 64 * MiB
    confirmed = judge(boundary_row(41, (63 * MiB, 65 * MiB), budget), budget)
    assert confirmed["confirmed"] and confirmed["text"] == "confirmed: 41 layers fit, 42 do not"
    # the case: both sides measured under the target (ResGNN, 1.26 MiB a layer)
    row = boundary_row(41, (int(51.88 * MiB), int(53.14 * MiB)), budget)
    verdict = judge(row, budget)
    assert not verdict["confirmed"] and verdict["measured_boundary"] == 50
    assert verdict["model_off"] == pytest.approx(41 / 50 - 1)
    assert verdict["text"] == ("NOT confirmed: the measured boundary is about 50 layers; the "
                               "model's 41 is 18% too shallow")  # fmt: skip
    # the point predicted to fit does not: the model is too deep
    verdict = judge(boundary_row(41, (65 * MiB, 66 * MiB), budget), budget)
    assert not verdict["confirmed"] and verdict["measured_boundary"] == 40
    assert "the model's 41 is 2% too deep" in verdict["text"]
    verdict = judge(boundary_row(41, (60 * MiB, None), budget), budget)
    assert not verdict["confirmed"] and verdict["text"].startswith("not measured at 42 x 128")


def test_verify_judges_flat_rows_by_their_growth() -> None:
    budget = 64 * MiB
    row = Row("deq", 128, None, "flat")
    row.checks = [point("flat at 8", 8, 4 * MiB, budget), point("flat at 32", 32, 4 * MiB, budget)]
    assert judge(row, budget)["confirmed"]
    row.checks[1] = point("flat at 32", 32, 6 * MiB, budget)
    verdict = judge(row, budget)
    assert not verdict["confirmed"] and "grew 4.00 MiB -> 6.00 MiB" in verdict["text"]


# --- item 8: a refused pickle names every disallowed global, sorted -----------------------------
EVIL = """
import builtins, os, pickle, subprocess, sys, torch

class Call:
    def __init__(self, fn, *args):
        self.fn, self.args = fn, args
    def __reduce__(self):
        return (self.fn, self.args)

marker = sys.argv[2]
payload = {"x": torch.zeros(3), "a": Call(os.system, f"touch {marker}"),
           "b": Call(subprocess.call, ["touch", marker]), "c": Call(builtins.eval, "1"),
           "d": Call(os.getcwd)}
if sys.argv[3] == "zip":
    torch.save(payload, sys.argv[1])
else:  # a bare pickle of protocol 4 (STACK_GLOBAL), which torch's own scan cannot read
    with open(sys.argv[1], "wb") as out:
        pickle.dump({k: v for k, v in payload.items() if k != "x"}, out, protocol=4)
"""


@pytest.mark.parametrize("kind", ["zip", "protocol-4"])
def test_a_refused_pickle_names_every_disallowed_global_in_a_stable_order(
    kind: str, tmp_path: Path
) -> None:
    path, marker = tmp_path / "evil.pt", tmp_path / "ran"
    subprocess.run([sys.executable, "-c", EVIL, str(path), str(marker), kind], check=True)
    code = f"from bench import cli; raise SystemExit(cli.main(['datasets', '--dataset', {str(path)!r}]))"
    lines = set()
    for hash_seed in ("0", "1"):  # torch's own list came out in hash order
        env = {**os.environ, "PYTHONHASHSEED": hash_seed, "PYTHONPATH": str(ROOT)}
        done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                              env=env)  # fmt: skip
        assert done.returncode == 2, done.stderr
        lines.add(done.stderr.strip())
    assert len(lines) == 1, lines
    line = lines.pop()
    assert "(it names builtins.eval, posix.getcwd, posix.system, subprocess.call)" in line, line
    assert not marker.exists()


def test_the_static_scan_reads_every_opcode_that_names_a_global(tmp_path: Path) -> None:
    from bench.data.safe_load import file_globals

    for protocol in range(6):  # GLOBAL (0-3), STACK_GLOBAL with memoised strings (4-5)
        path = tmp_path / f"p{protocol}.pkl"
        path.write_bytes(pickle.dumps([os.system, os.system, eval], protocol=protocol))
        assert file_globals(path) == {"posix.system", "builtins.eval"}, protocol


# --- item 9: PyG's generated modules go to one cache folder -------------------------------------
BUILD = """
from bench.models import ModelConfig, build_model
for conv in ("gen", "gat", "sage", "gcn"):
    build_model(ModelConfig(arch="res", layers=2, channels=8, conv=conv), 4, None, 2)
"""


def test_pyg_generated_modules_go_to_one_cache_folder_not_tmp(tmp_path: Path) -> None:
    tmp, cache = tmp_path / "tmp", tmp_path / "cache"
    tmp.mkdir()
    env = {**os.environ, "TMPDIR": str(tmp), "XDG_CACHE_HOME": str(cache),
           "PYTHONPATH": str(ROOT)}  # fmt: skip
    folder = cache / "gnn1000-bench" / "pyg-modules"
    seen = []
    for _ in range(2):  # two processes, as two trials
        subprocess.run([sys.executable, "-c", BUILD], check=True, env=env)
        assert not [p.name for p in tmp.rglob("*.py")]  # before: one per class per process
        seen.append(sorted(p.name for p in folder.iterdir()))
    assert seen[0] == seen[1] and len(seen[0]) >= 4, seen  # written once, then reused
    assert any(name.startswith("bench.nn.aggr_LeanMaxGENConv_propagate-") for name in seen[0])
