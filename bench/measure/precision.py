"""Mixed precision for the training step: autocast of forward and loss, fp16's gradient scaler.

``TrialConfig.precision``:

* ``fp32``: no autocast; every call here is a plain pass-through.
* ``bf16``: forward and loss under ``torch.autocast(device_type, torch.bfloat16)`` on CPU or
  CUDA. bf16 has float32's exponent range, so gradients need no scaling.
* ``fp16``: the same with ``torch.float16``, plus ``torch.amp.GradScaler``: the loss is scaled
  before backward so small gradients do not flush to zero, gradients are unscaled before
  clipping, and a step whose gradients overflowed is skipped (the scale then shrinks). CUDA only
  (TrialConfig refuses it on CPU).

What runs in which precision is the engines' business, not this module's: a reversible stack
keeps its residual stream in float32 and recomputes under the forward's autocast state; a DEQ
solver iterates and tests convergence in float32 (``bench.nn``). The optimiser step and the
weights stay float32 (autocast casts copies); evaluation runs in float32.

Usage, in a step (the order matters for fp16)::

    amp = MixedPrecision.for_config(config.precision, device)
    with amp.autocast():
        loss = loss_fn(model(x), y)
    amp.backward(loss)
    amp.unscale(optimizer)  # before gradient clipping
    clip_grad_norm_(model.parameters(), max_norm)
    amp.step(optimizer)
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

__all__ = ["DTYPES", "MixedPrecision"]

DTYPES: dict[str, torch.dtype | None] = {
    "fp32": None,
    "bf16": torch.bfloat16,
    "fp16": torch.float16,
}


@dataclass
class MixedPrecision:
    """Autocast settings and the gradient scaler (fp16 only) of one training loop."""

    precision: str
    device_type: str
    dtype: torch.dtype | None
    scaler: torch.amp.GradScaler | None = None

    @classmethod
    def for_config(cls, precision: str, device: torch.device | str) -> MixedPrecision:
        if precision not in DTYPES:
            raise ValueError(f"unknown precision {precision!r}; choose one of {', '.join(DTYPES)}")
        device_type = torch.device(device).type
        scaler = torch.amp.GradScaler(device_type) if precision == "fp16" else None
        return cls(precision, device_type, DTYPES[precision], scaler)

    def autocast(self) -> contextlib.AbstractContextManager[Any]:
        """Wrap the forward and the loss in this; a no-op for fp32."""
        if self.dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(self.device_type, dtype=self.dtype)

    def backward(self, loss: Tensor) -> None:
        (self.scaler.scale(loss) if self.scaler is not None else loss).backward()

    def unscale(self, optimizer: torch.optim.Optimizer) -> None:
        """Bring the gradients back to their true scale (call before clipping them)."""
        if self.scaler is not None:
            self.scaler.unscale_(optimizer)

    def step(self, optimizer: torch.optim.Optimizer) -> None:
        """The optimiser step (skipped by the scaler if fp16 gradients overflowed)."""
        if self.scaler is None:
            optimizer.step()
            return
        self.scaler.step(optimizer)
        self.scaler.update()
