"""The analytic memory model: exact parameter counts for every arch, and a peak-memory
prediction within 1.5x of the meter on the synthetic default (measured: within about 10%)."""

from __future__ import annotations

import time

import pytest
import torch

from bench.config import TrialConfig
from bench.measure.memory_model import GraphSizes, predict, predict_params
from bench.measure.meters import count_parameters
from bench.models import archs as arch_registry
from bench.models import build_model
from bench.trial import run_trial
from bench.units import format_bytes

PROTEINS_LIKE = GraphSizes(
    nodes=300, edges=3000, features=16, edge_dim=8, outputs=32,
    batch_nodes=30, batch_edges=30, batch_train_nodes=20,
)  # fmt: skip
NO_EDGE_FEATURES = GraphSizes(
    nodes=300, edges=3000, features=50, edge_dim=None, outputs=7,
    batch_nodes=30, batch_edges=30, batch_train_nodes=20,
)  # fmt: skip


def counted(config: TrialConfig, sizes: GraphSizes) -> int:
    model = build_model(config.model, sizes.features, sizes.edge_dim, sizes.outputs)
    return count_parameters(model)


@pytest.mark.parametrize("arch", arch_registry.names())
@pytest.mark.parametrize("layers", [1, 3, 7])  # 7 > 3: the depth extrapolation path
@pytest.mark.parametrize("sizes", [PROTEINS_LIKE, NO_EDGE_FEATURES], ids=["edges", "no-edges"])
def test_predicted_params_equal_counted_params_exactly(
    arch: str, layers: int, sizes: GraphSizes
) -> None:
    config = TrialConfig(arch=arch, layers=layers, channels=12, groups=3 if "rev" in arch else 2)
    assert predict_params(config, sizes) == counted(config, sizes)


def test_params_of_other_widths_and_aggregations() -> None:
    config = TrialConfig(arch="rev", layers=5, channels=20, groups=4, aggr="softmax", norm="batch")
    assert predict_params(config, PROTEINS_LIKE) == counted(config, PROTEINS_LIKE)


def test_1001_layer_prediction_is_instant_and_grows_only_by_model_state() -> None:
    deep = TrialConfig(arch="rev", layers=1001, channels=80)
    start = time.perf_counter()
    big = predict(deep, PROTEINS_LIKE)
    assert time.perf_counter() - start < 5.0
    small = predict(deep.replace(layers=112), PROTEINS_LIKE)
    # the paper's reading: RevGNN's activations are flat in depth; only model state grows
    assert big.activation_bytes == small.activation_bytes
    assert big.total_bytes - small.total_bytes == 16 * (big.params - small.params)
    res = [predict(deep.replace(arch="res", layers=n), PROTEINS_LIKE) for n in (10, 20)]
    assert res[1].activation_bytes > 1.8 * res[0].activation_bytes  # linear in depth


def test_format_bytes() -> None:
    assert format_bytes(512) == "512 B"
    assert format_bytes(1536) == "1.50 KiB"
    assert format_bytes(3 * 1024**3) == "3.00 GiB"


# --- prediction vs measurement ----------------------------------------------------------------
DEPTHS = {"res": (2, 12), "rev": (2, 24)}


@pytest.fixture(scope="module")
def measured() -> dict[tuple[str, int], object]:
    """One-epoch trials on the synthetic default (3000 nodes), cheap settings elsewhere."""
    torch.set_num_threads(1)
    out = {}
    for arch, depths in DEPTHS.items():
        for layers in depths:
            config = TrialConfig(arch=arch, layers=layers, epochs=1, train_parts=4, eval_parts=2)
            out[arch, layers] = run_trial(config)
    return out


@pytest.mark.slow
@pytest.mark.parametrize(("arch", "layers"), [(a, n) for a, ds in DEPTHS.items() for n in ds])
def test_predicted_peak_within_1_5x_of_the_meter(measured: dict, arch: str, layers: int) -> None:
    record = measured[arch, layers]
    assert record.status == "ok", record.error
    ratio = record.predicted_peak_bytes / record.peak_memory_bytes
    assert 1 / 1.5 <= ratio <= 1.5, (record.predicted_peak_bytes, record.peak_memory_bytes)
    assert record.params == record.predicted_params


@pytest.mark.slow
def test_measured_growth_with_depth_matches_the_model(measured: dict) -> None:
    """The prediction of the *difference* between two depths must track the measurement too:
    res grows by its per-layer activations, rev only by model state."""
    for arch, (low, high) in DEPTHS.items():
        a, b = measured[arch, low], measured[arch, high]
        grown = b.peak_memory_bytes - a.peak_memory_bytes
        predicted = b.predicted_peak_bytes - a.predicted_peak_bytes
        assert grown > 0
        assert 1 / 1.5 <= predicted / grown <= 1.5, (arch, predicted, grown)
    rev_low, rev_high = measured["rev", DEPTHS["rev"][0]], measured["rev", DEPTHS["rev"][1]]
    activation_growth = (rev_high.peak_memory_bytes - rev_high.model_state_bytes) - (
        rev_low.peak_memory_bytes - rev_low.model_state_bytes
    )
    assert abs(activation_growth) < 0.1 * rev_low.peak_memory_bytes  # flat in depth
