"""Receptive fields in hops (``bench.trial.hops``), checked against the models themselves: on a
chain, an input change r hops from the head moves the head's output, one r + 1 hops away
does not."""

from __future__ import annotations

import pytest
import torch

from bench.config import TrialConfig
from bench.models import build_model
from bench.trial.hops import deq_hops, receptive_hops, record_hops

CHAIN = 16


def _chain() -> torch.Tensor:
    src = torch.arange(CHAIN - 1)
    return torch.stack([torch.cat([src, src + 1]), torch.cat([src + 1, src])])


def _head_moves(config: TrialConfig, distance: int) -> bool:
    """Does changing the input of the node ``distance`` hops from node 0 change node 0's output?"""
    torch.manual_seed(0)
    model = build_model(config.model, 4, None, 1).double().eval()
    x = torch.randn(CHAIN, 4, dtype=torch.double)
    moved = x.clone()
    moved[distance] += 3.0
    ei = _chain()
    with torch.no_grad():
        return not torch.equal(model(x, ei)[0], model(moved, ei)[0])


@pytest.mark.parametrize(
    ("arch", "layers", "extra", "hops"),
    [
        ("res", 3, {}, 3),
        ("wt-res", 4, {}, 4),
        ("ckpt", 2, {}, 2),
        ("rev", 3, {"groups": 2}, 6),
        ("rev", 2, {"groups": 3, "channels": 12}, 6),
        ("wt-rev", 2, {"groups": 2}, 4),
        ("deq", 3, {"deq_tol": 1e-12, "deq_solver": "fixed_point"}, 5),
    ],
)
def test_receptive_field_is_what_the_model_sees(
    arch: str, layers: int, extra: dict, hops: int
) -> None:
    # sum aggregation: no max gating, so every path that exists carries the change
    config = TrialConfig(arch=arch, layers=layers, dropout=0.0, aggr="add",
                         **{"channels": 8, **extra})  # fmt: skip
    assert receptive_hops(config) == hops
    assert _head_moves(config, hops)
    assert not _head_moves(config, hops + 1)


def test_hops_from_a_results_row_and_the_record_fields() -> None:
    assert receptive_hops({"arch": "rev", "layers": 4.0, "groups": 2.0}) == 8
    assert receptive_hops({"arch": "deq", "layers": 6, "deq_max_iter": float("nan")}) == 11
    assert receptive_hops({"arch": "deq", "layers": 6, "deq_max_iter": 2}) == 3
    assert receptive_hops({"arch": "res", "layers": None}) is None
    assert deq_hops(1) == 1 and deq_hops(0) == 0
    depth = TrialConfig(dataset="synthetic-depth", arch="res", layers=3,
                        dataset_options={"depth": 7})  # fmt: skip
    assert record_hops(depth) == {"receptive_hops": 3, "needed_hops": 7}
    assert record_hops(TrialConfig(arch="rev", layers=5)) == {"receptive_hops": 10,
                                                              "needed_hops": None}  # fmt: skip
