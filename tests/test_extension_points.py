"""The suite's extension points, used from outside the package as a researcher would: a new
architecture in one module of their own (registered through ``BENCH_PLUGINS``) and a
convolution of their own (``--conv module:function``) run through the commands with no file of
the suite changed."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pandas as pd
import pytest

from bench import cli
from bench.config import TrialConfig
from bench.errors import ConfigError
from bench.models import ModelConfig, archs, build_model

ROOT = Path(__file__).resolve().parents[1]
SMALL = ["--dataset-option", "num_nodes=120", "--dataset-option", "num_tasks=4"]

TOY_ARCH = '''
"""A toy architecture: ResGNN whose residual branch is halved (one module, nothing else)."""
from bench.models.archs import ResidualArch, register
from bench.models.residual import ResGNN


class HalfResGNN(ResGNN):
    def body(self, h, edge_index, edge_attr):
        for block in self.blocks:
            h = h + 0.5 * block(h, edge_index, edge_attr)
        return h


register(ResidualArch("half-res", "HalfResGNN", "#8c564b", model=HalfResGNN))


def _trains(df):
    """Per slice: the toy arch's ok trials score above chance."""
    from bench.report.claims import NOT_SUPPORTED, SUPPORTED, Finding

    ok = df[(df["arch"] == "half-res") & (df["status"] == "ok")]
    return [Finding("half-res-trains", "fig1", slice_, "half-res", f"{len(rows)} ok trials",
                    SUPPORTED if rows["best_valid"].notna().all() else NOT_SUPPORTED)
            for slice_, rows in ok.groupby("slice")]


def register_claim():
    from bench.report.claims import Claim, register_claim

    register_claim(Claim(
        key="half-res-trains", statement="HalfResGNN trains.", short="HalfResGNN trains",
        paper="—", figure="fig1", threshold="every ok trial has a validation score",
        threshold_source="a toy claim", judge=_trains, kind="sanity check"))


register_claim()
'''

TOY_CONV = '''
"""Convolutions of a user's own, as factories (in_channels, out_channels, **options)."""
from torch_geometric.nn import GATv2Conv, GraphConv


def gatv2(in_channels, out_channels, edge_dim=None):
    return GATv2Conv(in_channels, out_channels // 2, heads=2, edge_dim=edge_dim)


def graph_conv(in_channels, out_channels):
    return GraphConv(in_channels, out_channels, aggr="max")


def one_argument(channels):
    return GraphConv(channels, channels)


def wrong_width(in_channels, out_channels):
    return GraphConv(in_channels, out_channels + 1)


def raises(in_channels, out_channels):
    raise RuntimeError("not today")
'''


def _bench(tmp: Path, *args: str, plugins: str = "") -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(tmp), str(ROOT)]),
           "BENCH_PLUGINS": plugins, "BENCH_OFFLINE": "1"}  # fmt: skip
    return subprocess.run([sys.executable, "-m", "bench", *args], cwd=tmp, env=env,
                          capture_output=True, text=True, timeout=600)  # fmt: skip


@pytest.fixture()
def plugin_dir(tmp_path: Path) -> Path:
    (tmp_path / "toy_arch.py").write_text(textwrap.dedent(TOY_ARCH))
    (tmp_path / "toy_conv.py").write_text(textwrap.dedent(TOY_CONV))
    return tmp_path


@pytest.mark.slow
def test_a_toy_architecture_from_one_module_runs_through_every_command(plugin_dir: Path) -> None:
    """trial, a 2-point ablation and its export, capacity and the report, all on an arch that
    lives in the user's own module and nowhere in the suite."""
    done = _bench(plugin_dir, "trial", "--arch", "half-res", "--layers", "2", "--channels", "8",
                  "--epochs", "1", "--json", "--no-progress", *SMALL, plugins="toy_arch")  # fmt: skip
    assert done.returncode == 0, done.stderr
    record = json.loads(done.stdout.strip().splitlines()[-1])
    assert (record["status"], record["config"]["arch"], record["receptive_hops"]) == (
        "ok", "half-res", 2)  # fmt: skip
    assert record["params"] == record["predicted_params"]

    spec = plugin_dir / "overview.toml"  # the spec figure 1 draws (every registered arch)
    spec.write_text(
        textwrap.dedent("""
        description = "the toy arch at two depths"
        [base]
        arch = "half-res"
        channels = 8
        epochs = 1
        dataset_options = { num_nodes = 120, num_tasks = 4 }
        [grid]
        layers = [1, 2]
        [profiles.cpu]
    """)
    )
    results = plugin_dir / "results"
    done = _bench(plugin_dir, "ablate", str(spec), "--results-dir", str(results), "--no-progress",
                  plugins="toy_arch")  # fmt: skip
    assert done.returncode == 0, done.stderr
    table = pd.read_csv(results / "overview-cpu.csv")
    assert sorted(table["layers"]) == [1, 2] and set(table["status"]) == {"ok"}

    done = _bench(plugin_dir, "capacity", "--archs", "half-res,res", "--channels", "8",
                  "--target-memory", "64MiB", "--json", *SMALL, plugins="toy_arch")  # fmt: skip
    assert done.returncode == 0, done.stderr
    rows = json.loads(done.stdout)
    assert {row["arch"] for row in rows["rows"]} == {"half-res", "res"}

    report = plugin_dir / "report"
    done = _bench(plugin_dir, "report", "--results-dir", str(results), "--report-dir",
                  str(report), plugins="toy_arch")  # fmt: skip
    assert done.returncode == 0, done.stderr
    summary = pd.read_csv(report / "tables" / "summary.csv")
    assert set(summary["arch"]) == {"half-res"}
    claims = pd.read_csv(report / "tables" / "claims.csv")
    assert claims.loc[claims["claim"] == "half-res-trains", "verdict"].tolist() == ["supported"]
    assert "[half-res-trains](#half-res-trains)" in (report / "REPORT.md").read_text()
    assert (report / "figures" / "fig1_score_vs_memory.svg").exists()
    assert "HalfResGNN" in (report / "figures" / "fig1_score_vs_memory.svg").read_text() or (
        "#8c564b" in (report / "figures" / "fig1_score_vs_memory.svg").read_text()
    )


def test_an_unknown_plugin_module_is_one_line(plugin_dir: Path) -> None:
    done = _bench(plugin_dir, "trial", "--arch", "half-res", "--dry-run", plugins="no_such_module")
    assert done.returncode == 2
    assert done.stderr.strip().count("\n") == 0 and "no_such_module" in done.stderr


def test_registering_an_architecture_in_process() -> None:
    """What the plugin module does, here: the registry knows it, configurations accept it,
    and it builds; it is removed again (``unregister``)."""
    toy = archs.ReversibleArch("toy-rev", "ToyRevGNN", "#17becf",
                               model="bench.models.reversible:RevGNN")  # fmt: skip
    archs.register(toy)
    try:
        assert "toy-rev" in archs.names(family="reversible")
        config = TrialConfig(
            arch="toy-rev", layers=3, channels=8, dataset_options={"num_nodes": 50}
        ).validated()
        assert config.architecture is toy and config.architecture.receptive_hops(config.model) == 6
        model = build_model(config.model, 4, 8, 2)
        assert type(model).__name__ == "RevGNN"
        with pytest.raises(ValueError, match="registered already"):
            archs.register(archs.ResidualArch("toy-rev", "Other", "#000000", model="x:y"))
    finally:
        archs.unregister("toy-rev")
    with pytest.raises(ConfigError, match="unknown value 'toy-rev'"):
        TrialConfig(arch="toy-rev").validated()


@pytest.mark.slow
@pytest.mark.parametrize("arch", ["res", "rev", "deq"])
def test_a_users_convolution_trains_in_every_engine(plugin_dir: Path, arch: str) -> None:
    """``--conv toy_conv:gatv2``: the factory reads edge features (it takes ``edge_dim``); the
    record pins it to its source, and the memory prediction is a measured calibration."""
    done = _bench(plugin_dir, "trial", "--conv", "toy_conv:gatv2", "--arch", arch, "--layers",
                  "3", "--channels", "16", "--epochs", "2", "--json", "--no-progress", *SMALL)  # fmt: skip
    assert done.returncode == 0, done.stderr
    record = json.loads(done.stdout.strip().splitlines()[-1])
    assert record["status"] == "ok" and record["best_valid"] is not None
    name, _, digest = record["config"]["conv"].partition("@")
    assert name == "toy_conv:gatv2" and len(digest) == 16
    assert record["params"] == record["predicted_params"]
    assert 0.7 < record["predicted_peak_bytes"] / record["peak_memory_bytes"] < 1.3
    dry = _bench(plugin_dir, "trial", "--conv", "toy_conv:gatv2", "--arch", arch, "--dry-run")
    assert "activations calibrated" in dry.stdout


@pytest.mark.parametrize(
    ("conv", "message"),
    [
        ("toy_conv:graph_conv", "cannot read edge features"),
        ("toy_conv:one_argument", "must take (in_channels, out_channels"),
        ("toy_conv:wrong_width", "returned (5, 7), expected (5, 6)"),
        ("toy_conv:raises", "RuntimeError: not today"),
        ("toy_conv:missing", "has no function 'missing'"),
        ("no_such_module:f", "cannot import 'no_such_module'"),
        ("toy_conv:graph_conv@0123456789abcdef", "has changed since"),
    ],
)
def test_a_bad_factory_is_one_line_before_anything_runs(
    plugin_dir: Path,
    conv: str,
    message: str,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.syspath_prepend(str(plugin_dir))
    assert cli.main(["trial", "--conv", conv, "--epochs", "1", *SMALL]) == 2
    err = capsys.readouterr().err
    assert err.strip().count("\n") == 0, err
    assert err.startswith("error: --conv:") and message in err


def test_a_model_config_is_checked_once_and_handed_whole() -> None:
    """Each block reads the one config: a setting is threaded through no signature."""
    config = ModelConfig(arch="wt-rev", layers=4, channels=8, conv="gat", heads=2, dropout=0.2)
    assert (config.tie, config.heads, config.share_mask, config.aggr_impl) == (
        "after-first", 2, False, "pyg")  # fmt: skip
    model = build_model(config, 4, 8, 2)
    blocks = [m for m in model.modules() if type(m).__name__ == "ResPlusBlock"]
    assert blocks and all(b.dropout == 0.2 for b in blocks)
    assert model.config is config
