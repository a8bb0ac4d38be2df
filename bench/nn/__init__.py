"""Model-agnostic engines that make memory constant in depth (they know nothing about GNNs)."""

from bench.nn.deq import DEQFixedPoint, check_settings, solve_fixed_point
from bench.nn.reversible import ReversibleStack, frozen_running_stats

__all__ = [
    "DEQFixedPoint",
    "ReversibleStack",
    "check_settings",
    "frozen_running_stats",
    "solve_fixed_point",
]
