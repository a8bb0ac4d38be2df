"""State an engine must carry from a forward pass into a later recomputation or solve.

A memory-saving engine evaluates the user's functions again, after the forward has returned
(the reversible backward), or runs its own arithmetic next to them (a DEQ solver). Two pieces of
ambient state decide what those evaluations compute, and neither travels with the tensors:

* **autocast** (thread-local): :class:`AutocastState` captures it at the forward and restores it
  exactly (device type, dtype, enabled, cache flag; for the device and for the CPU), as
  ``torch.utils.checkpoint`` does, so a recomputed function is the forward's function whatever
  autocast state is active when ``backward()`` runs. :func:`autocast_off` is the other half: the
  engines' own arithmetic (the residual stream, the solver's iterates, mixing and stopping test)
  runs in the iterate's precision, never in autocast's lower one;
* **normalisation running statistics**: :func:`frozen_running_stats` lets a train-mode norm layer
  normalise with its batch statistics without updating its running statistics, so a step
  updates them once, however many times the engine evaluates the function.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn

__all__ = ["AutocastState", "autocast_off", "frozen_running_stats", "upcast_under_autocast"]


@dataclass(frozen=True)
class AutocastState:
    """The autocast settings in force at capture time, for one device type and for the CPU."""

    device_type: str
    device_kwargs: dict[str, Any] | None  # None where the device type has no autocast
    cpu_kwargs: dict[str, Any]

    @classmethod
    def capture(cls, device: torch.device | str) -> AutocastState:
        device_type = torch.device(device).type
        cache = torch.is_autocast_cache_enabled()
        device_kwargs = None
        if device_type != "cpu" and torch.amp.is_autocast_available(device_type):
            device_kwargs = {
                "enabled": torch.is_autocast_enabled(device_type),
                "dtype": torch.get_autocast_dtype(device_type),
                "cache_enabled": cache,
            }
        cpu_kwargs = {
            "enabled": torch.is_autocast_enabled("cpu"),
            "dtype": torch.get_autocast_dtype("cpu"),
            "cache_enabled": cache,
        }
        return cls(device_type, device_kwargs, cpu_kwargs)

    @property
    def enabled(self) -> bool:
        """Whether autocast was on for the captured device type."""
        kwargs = self.cpu_kwargs if self.device_type == "cpu" else self.device_kwargs
        return bool(kwargs and kwargs["enabled"])

    @contextlib.contextmanager
    def restored(self) -> Iterator[None]:
        """Run the block under exactly the captured autocast state."""
        with contextlib.ExitStack() as stack:
            if self.device_kwargs is not None:
                stack.enter_context(torch.autocast(self.device_type, **self.device_kwargs))
            stack.enter_context(torch.autocast("cpu", **self.cpu_kwargs))
            yield


@contextlib.contextmanager
def autocast_off(device: torch.device | str) -> Iterator[None]:
    """Autocast disabled for ``device``'s type and for the CPU (an engine's own arithmetic)."""
    device_type = torch.device(device).type
    with contextlib.ExitStack() as stack:
        if device_type != "cpu" and torch.amp.is_autocast_available(device_type):
            stack.enter_context(torch.autocast(device_type, enabled=False))
        stack.enter_context(torch.autocast("cpu", enabled=False))
        yield


def upcast_under_autocast(t: Tensor) -> Tensor:
    """``t`` in float32 if autocast is on for its device and ``t`` is a lower-precision float.

    Why: under autocast the layer feeding an engine (a linear encoder) hands over bf16/fp16;
    the state the engine carries between layers or iterations must not be rounded to that."""
    if t.is_floating_point() and t.element_size() < 4 and torch.is_autocast_enabled(t.device.type):
        return t.float()
    return t


@contextlib.contextmanager
def frozen_running_stats(module: nn.Module | None) -> Iterator[None]:
    """Within the block, norm layers in train mode do not change their running statistics.

    They still normalise with the batch statistics (so a recomputation matches the forward
    exactly) and run the very same ops (so ``torch.utils.checkpoint``'s check of saved tensors
    passes): the update is made a no-op by setting ``momentum`` to 0 (``new = 1 * old + 0 *
    batch``, exact for finite batch statistics), and ``num_batches_tracked`` is put back on
    exit. In eval mode nothing changes (running statistics are only read). ``None``: nothing
    to freeze."""
    switched = [
        (m, m.momentum, None if m.num_batches_tracked is None else m.num_batches_tracked.clone())
        for m in (module.modules() if module is not None else ())
        if m.training
        and getattr(m, "track_running_stats", False)
        and getattr(m, "running_mean", None) is not None
    ]
    for m, _, _ in switched:
        m.momentum = 0.0
    try:
        yield
    finally:
        for m, momentum, tracked in switched:
            m.momentum = momentum
            if tracked is not None:
                with torch.no_grad():
                    m.num_batches_tracked.copy_(tracked)
