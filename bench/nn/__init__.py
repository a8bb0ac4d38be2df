"""Model-agnostic engines that make memory constant in depth (they know nothing about GNNs)."""

from bench.nn.deq import DEQFixedPoint, solve_fixed_point
from bench.nn.reversible import ReversibleStack, frozen_running_stats

__all__ = [
    "DEQFixedPoint",
    "ReversibleStack",
    "frozen_running_stats",
    "solve_fixed_point",
]
