"""Measuring: peak memory of a block of code, model-state bytes, parameter counts; and for the
benchmark, a timer of repeated steps (``time_steps``; a trial times its own steps, around its
meter: :mod:`bench.trial.step`).

Peak memory is the suite's headline number, so it must be exact and say where it came from.

* On CUDA the caching allocator already counts every byte handed to tensors:
  ``torch.cuda.reset_peak_memory_stats()`` on entry, ``torch.cuda.max_memory_allocated()`` on
  exit (meter ``"cuda-allocator"``).
* On CPU PyTorch keeps no such counter, so :class:`PeakMemory` runs a meter of live tensor
  *storages* (meter ``"cpu-live-tensors"``), built from two pieces:

  1. a :class:`~torch.utils._python_dispatch.TorchDispatchMode` that sees every aten op called
     while it is active -- including the ops autograd's engine runs during ``backward()``
     (on CPU the engine runs in the caller's thread and propagates the dispatch-mode stack) --
     and registers each *storage* (not tensor) it has not seen, keyed by the StorageImpl, so
     views and outputs sharing a storage are counted once; after ops that may write an argument
     (``resize_``, ``set_``, ``out=`` variants, ...) it re-reads those storages' sizes, so
     storages shrunk or grown in place count at their new size;
  2. a ``weakref.finalize`` on each registered storage, which fires when the C++ storage dies
     (PyTorch preserves a storage's Python object for as long as the storage lives), so frees
     count at the moment they happen, including tensors kept alive by autograd's saved
     variables until the graph is released.

  Storages alive at entry are found through the garbage collector (every Python-visible
  tensor: parameters, gradients, optimizer state, data) and form :attr:`PeakMemory.baseline_bytes`;
  they are tracked too, so freeing one during the block counts. A storage alive at entry that
  Python cannot see (held only by C++, e.g. a saved tensor of an earlier forward) is added to
  the baseline the first time an op touches it.

  Why not ``torch.profiler(profile_memory=True)``: it reports every CPU allocator call, but it
  ignores frees of blocks allocated before profiling started (so freeing gradients or old
  activations is missed), adds per-op event records, and only yields numbers afterwards --
  it cannot stop a step the moment a memory cap is crossed. What the dispatch meter does not
  see are scratch buffers a single kernel allocates and frees internally; it is a meter of
  live tensors, labelled as such in every record.

With ``cap_bytes``, crossing the cap raises :class:`MemoryCapExceeded` (a ``MemoryError``)
from inside the offending op, which the trial harness treats exactly like an OOM.
"""

from __future__ import annotations

import gc
import os
import platform
import statistics
import time
import weakref
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any, TypeVar

import torch
from torch import nn
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_leaves

T = TypeVar("T")

CUDA_METER = "cuda-allocator"
CPU_METER = "cpu-live-tensors"


class MemoryCapExceeded(MemoryError):
    """Live tensor bytes crossed the configured cap: an out-of-memory, simulated or budgeted."""

    def __init__(self, live_bytes: int, cap_bytes: int, meter: str) -> None:
        self.live_bytes = live_bytes
        self.cap_bytes = cap_bytes
        self.meter = meter
        super().__init__(
            f"live tensor memory {live_bytes:,} B exceeds the cap of {cap_bytes:,} B ({meter})"
        )


def meter_name(device: torch.device | str) -> str:
    """The meter :class:`PeakMemory` uses on ``device``."""
    return CUDA_METER if torch.device(device).type == "cuda" else CPU_METER


def _storage_of(t: torch.Tensor) -> torch.UntypedStorage | None:
    try:
        return t.untyped_storage()
    except (RuntimeError, NotImplementedError, TypeError):  # sparse, nested, fake tensors
        return None


def _writes_an_argument(func: Any) -> bool:
    """True for ops whose schema lets them mutate (and so resize) an argument."""
    try:
        return any(
            a.alias_info is not None and a.alias_info.is_write for a in func._schema.arguments
        )
    except AttributeError:
        return True  # unknown op: re-check its arguments, correctness over speed


class _StorageWatcher(TorchDispatchMode):
    """Reports every storage touched or created by an op to its meter (see module doc)."""

    def __init__(self, meter: PeakMemory) -> None:
        super().__init__()
        self.meter = meter
        self._mutating: dict[Any, bool] = {}

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):  # type: ignore[no-untyped-def]
        kwargs = kwargs or {}
        inputs = [t for t in tree_leaves((args, kwargs)) if isinstance(t, torch.Tensor)]
        meter = self.meter
        for t in inputs:  # storages alive before this op that we have not seen yet
            meter._see(t, existed=True)
        for arg in tree_leaves((args, kwargs)):  # set_(storage) and friends
            if isinstance(arg, torch.UntypedStorage):
                meter._see_storage(arg, existed=True)
        out = func(*args, **kwargs)
        for t in tree_leaves(out):
            if isinstance(t, torch.Tensor):
                meter._see(t, existed=False)
        mutating = self._mutating.get(func)
        if mutating is None:
            mutating = self._mutating[func] = _writes_an_argument(func)
        if mutating:  # resize_, set_, out= ...: storages may have changed size or identity
            for t in inputs:
                meter._see(t, existed=False)
        return out


class PeakMemory:
    """Context manager: peak bytes of live tensors on ``device`` while the block runs.

    Attributes after exit: ``peak_bytes`` (absolute peak, baseline included),
    ``baseline_bytes`` (live at entry), ``peak_above_baseline`` (what the block itself added at
    its peak), ``end_bytes`` (live at exit), ``reserved_peak_bytes`` (CUDA only: the caching
    allocator's reserved peak; None on CPU) and ``meter`` (which meter produced the numbers).

    :meth:`phase_peak` splits the block into phases (a step's forward+backward, then its
    optimiser step) without a second meter: it returns the absolute peak since entry or the
    previous call, and starts the next phase at the bytes live now.
    """

    def __init__(
        self,
        device: torch.device | str = "cpu",
        cap_bytes: int | None = None,
        scan_baseline: bool = True,
    ) -> None:
        self.device = torch.device(device)
        if cap_bytes is not None and cap_bytes <= 0:
            raise ValueError(f"cap_bytes must be positive, got {cap_bytes}")
        self.cap_bytes = cap_bytes
        self.scan_baseline = scan_baseline
        self.meter = meter_name(self.device)
        self.baseline_bytes = 0
        self.peak_bytes = 0
        self.end_bytes = 0
        self.live_bytes = 0
        self.reserved_peak_bytes: int | None = None
        self._phase_peak = 0
        self._sizes: dict[int, int] = {}
        self._finalizers: dict[int, weakref.finalize] = {}
        self._mode: TorchDispatchMode | None = None
        self._active = False

    @property
    def peak_above_baseline(self) -> int:
        return self.peak_bytes - self.baseline_bytes

    # --- CPU meter bookkeeping ------------------------------------------------------------
    def _see(self, t: torch.Tensor, existed: bool) -> None:
        if t.device.type == self.device.type:
            storage = _storage_of(t)
            if storage is not None:
                self._see_storage(storage, existed)

    def _see_storage(self, storage: torch.UntypedStorage, existed: bool) -> None:
        if storage.device.type != self.device.type:
            return
        key = storage._cdata
        size = storage.nbytes()
        old = self._sizes.get(key)
        if old is None:
            self._sizes[key] = size
            self._finalizers[key] = weakref.finalize(storage, self._freed, key)
            if existed:
                self.baseline_bytes += size
            self._change(size)
        elif old != size:  # shrunk or grown in place
            self._sizes[key] = size
            self._change(size - old)

    def _freed(self, key: int) -> None:
        size = self._sizes.pop(key, 0)
        self._finalizers.pop(key, None)
        if self._active:
            self.live_bytes -= size

    def _change(self, delta: int) -> None:
        self.live_bytes += delta
        if self.live_bytes > self.peak_bytes:
            self.peak_bytes = self.live_bytes
        if self.live_bytes > self._phase_peak:
            self._phase_peak = self.live_bytes
        if delta > 0 and self.cap_bytes is not None and self.live_bytes > self.cap_bytes:
            raise MemoryCapExceeded(self.live_bytes, self.cap_bytes, self.meter)

    def _scan_live_tensors(self) -> None:
        seen: set[int] = set()
        for obj in gc.get_objects():
            if issubclass(type(obj), torch.Tensor) and id(obj) not in seen:
                seen.add(id(obj))
                self._see(obj, existed=True)

    def phase_peak(self) -> int:
        """Absolute peak bytes since entry or the previous call; the next phase starts now."""
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
            peak = torch.cuda.max_memory_allocated(self.device)
            reserved = torch.cuda.max_memory_reserved(self.device)
            self.reserved_peak_bytes = max(self.reserved_peak_bytes or 0, reserved)
            self.peak_bytes = max(self.peak_bytes, peak)
            torch.cuda.reset_peak_memory_stats(self.device)
            return peak
        peak, self._phase_peak = self._phase_peak, self.live_bytes
        return peak

    # --- context manager ------------------------------------------------------------------
    def __enter__(self) -> PeakMemory:
        self._active = True
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
            self.baseline_bytes = torch.cuda.memory_allocated(self.device)
            torch.cuda.reset_peak_memory_stats(self.device)
            self.peak_bytes = self.live_bytes = self.baseline_bytes
            if self.cap_bytes is not None:
                self._mode = _CudaCapWatcher(self)
                self._mode.__enter__()
            return self
        if self.scan_baseline:
            self._scan_live_tensors()
        self.peak_bytes = self._phase_peak = self.live_bytes
        self._mode = _StorageWatcher(self)
        self._mode.__enter__()
        self._patch_storage_resize()
        return self

    def _patch_storage_resize(self) -> None:
        """``UntypedStorage.resize_`` (how memory-saving code frees a tensor's memory while
        keeping the tensor) bypasses the dispatcher, so wrap it for the block's duration."""
        cls = torch.UntypedStorage
        self._had_own_resize = "resize_" in cls.__dict__
        original = self._original_resize = cls.resize_

        def resize_(storage: torch.UntypedStorage, size: int) -> Any:
            self._see_storage(storage, existed=True)
            result = original(storage, size)
            self._see_storage(storage, existed=False)
            return result

        cls.resize_ = resize_  # type: ignore[method-assign]

    def _unpatch_storage_resize(self) -> None:
        if self._had_own_resize:
            torch.UntypedStorage.resize_ = self._original_resize  # type: ignore[method-assign]
        else:
            del torch.UntypedStorage.resize_

    def __exit__(self, *exc: object) -> None:
        if self._mode is not None:
            self._mode.__exit__(None, None, None)
            self._mode = None
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
            self.peak_bytes = max(self.peak_bytes, torch.cuda.max_memory_allocated(self.device))
            self.reserved_peak_bytes = max(
                self.reserved_peak_bytes or 0, torch.cuda.max_memory_reserved(self.device)
            )
            self.end_bytes = torch.cuda.memory_allocated(self.device)
        else:
            self._unpatch_storage_resize()
            self.end_bytes = self.live_bytes
            for fin in list(self._finalizers.values()):
                fin.detach()
            self._finalizers.clear()
            self._sizes.clear()
        self._active = False


class _CudaCapWatcher(TorchDispatchMode):
    """Enforces a cap on CUDA by reading the allocator after every op (only when capped)."""

    def __init__(self, meter: PeakMemory) -> None:
        super().__init__()
        self.meter = meter

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):  # type: ignore[no-untyped-def]
        out = func(*args, **(kwargs or {}))
        live = torch.cuda.memory_allocated(self.meter.device)
        cap = self.meter.cap_bytes
        if cap is not None and live > cap:
            raise MemoryCapExceeded(live, cap, self.meter.meter)
        return out


@dataclass(frozen=True)
class StepMemory:
    """One metered training step, split where activations and the optimiser differ.

    ``baseline_bytes``: live at the step's entry (weights, optimiser moments, the batch on the
    device; on CPU also every host tensor the process holds). ``fwd_bwd_peak_bytes``: absolute
    peak of forward + backward. ``optimizer_peak_bytes``: absolute peak of gradient clipping +
    ``optimizer.step()`` (foreach Adam builds parameter-sized temporaries here). Claims about
    activations are judged on :attr:`step_added_bytes`; a user compares :attr:`peak_bytes` with
    the size of their device.
    """

    baseline_bytes: int
    fwd_bwd_peak_bytes: int
    optimizer_peak_bytes: int
    reserved_peak_bytes: int | None = None

    @property
    def peak_bytes(self) -> int:
        return max(self.fwd_bwd_peak_bytes, self.optimizer_peak_bytes)

    @property
    def step_added_bytes(self) -> int:
        """What forward + backward add to what was alive before: activations and gradients."""
        return self.fwd_bwd_peak_bytes - self.baseline_bytes


def metered_step(
    device: torch.device | str,
    forward_backward: Callable[[], T],
    update: Callable[[], Any],
    cap_bytes: int | None = None,
) -> tuple[T, StepMemory]:
    """Run one training step (``forward_backward()`` then ``update()``) under one meter.

    Zero the gradients (``set_to_none``) and move the batch to the device *before* calling, so
    the baseline holds the model state and the data, and the step's own memory is what it adds.
    """
    with PeakMemory(device, cap_bytes=cap_bytes) as meter:
        result = forward_backward()
        fwd_bwd = meter.phase_peak()
        update()
        optimizer = meter.phase_peak()
    return result, StepMemory(meter.baseline_bytes, fwd_bwd, optimizer, meter.reserved_peak_bytes)


def optimizer_implementation(optimizer: torch.optim.Optimizer) -> str:
    """Which kernel path ``optimizer.step()`` takes: ``Adam(foreach)``, ``Adam(fused)`` or
    ``Adam(for-loop)`` (the foreach path's temporaries count in the optimiser-step peak)."""
    name = type(optimizer).__name__
    group = optimizer.param_groups[0]
    fused, foreach = group.get("fused"), group.get("foreach")
    if fused is None and foreach is None:
        params = [p for g in optimizer.param_groups for p in g["params"]]
        try:
            from torch.optim.optimizer import _default_to_fused_or_foreach

            fused, foreach = _default_to_fused_or_foreach(params, differentiable=False)
        except (ImportError, TypeError):  # private helper: absent or changed in this torch
            return f"{name}(default)"
    kind = "fused" if fused else "foreach" if foreach else "for-loop"
    return f"{name}({kind})"


def device_memory_bytes(device: torch.device | str) -> int | None:
    """Total memory of a CUDA device (None on CPU: the meter counts tensors, not RAM)."""
    device = torch.device(device)
    if device.type != "cuda":
        return None
    return int(torch.cuda.get_device_properties(device).total_memory)


# --- model state ----------------------------------------------------------------------------
def count_parameters(model: nn.Module) -> int:
    """Number of trainable scalars; a parameter shared by several layers counts once."""
    unique: dict[int, nn.Parameter] = {}
    for p in model.parameters():
        key = p.untyped_storage()._cdata if p.numel() else id(p)
        unique.setdefault(key, p)
    return sum(p.numel() for p in unique.values())


def _unique_storage_bytes(tensors: Iterable[torch.Tensor]) -> int:
    sizes: dict[int, int] = {}
    for t in tensors:
        storage = _storage_of(t)
        if storage is not None:
            sizes[storage._cdata] = storage.nbytes()
    return sum(sizes.values())


def model_state_bytes(model: nn.Module, optimizer: torch.optim.Optimizer | None = None) -> int:
    """Bytes of parameters + gradients + optimizer state (unique storages).

    This is the part of peak memory that grows with parameter count, not with activations;
    subtracting it isolates activation memory (the paper's constant-in-depth claim)."""
    tensors: list[torch.Tensor] = []
    for p in model.parameters():
        tensors.append(p)
        if p.grad is not None:
            tensors.append(p.grad)
    if optimizer is not None:
        for state in optimizer.state.values():
            tensors.extend(v for v in state.values() if isinstance(v, torch.Tensor))
    return _unique_storage_bytes(tensors)


# --- timing and description -----------------------------------------------------------------
# glibc's mallopt parameters (malloc.h)
_M_TRIM_THRESHOLD, _M_TOP_PAD, _M_MMAP_THRESHOLD = -1, -2, -3
_MMAP_THRESHOLD_MAX = 32 << 20  # glibc refuses more on 64-bit


def retain_freed_cpu_memory() -> str:
    """Make glibc keep freed blocks up to 32 MiB for reuse instead of returning them to the
    kernel; returns what the process now does (recorded with each timed point).

    Why: by default every tensor above ~128 KiB is a fresh ``mmap``, so each step of a graph
    network faults its E x C tensors in page by page again. On a virtual machine that
    first-touch cost is large and erratic (a 25 MiB ``fill_`` measured 0.9 to 72 ms; the same
    ResGNN forward 0.31 s or 0.48 s in two processes), so step times -- and ratios of them --
    measured the kernel's page faults as much as the model. Retained blocks make a CPU step
    reuse its memory as CUDA's caching allocator does. Call it at process start: it changes
    where later allocations come from, not the bytes any tensor holds (the memory meter counts
    live tensors either way)."""
    if platform.system() != "Linux":
        return "default (not glibc)"
    try:
        import ctypes

        libc = ctypes.CDLL(None)
        settings = ((_M_MMAP_THRESHOLD, _MMAP_THRESHOLD_MAX), (_M_TRIM_THRESHOLD, 2**31 - 1),
                    (_M_TOP_PAD, 64 << 20))  # fmt: skip
        if all(libc.mallopt(key, value) == 1 for key, value in settings):
            return "freed blocks <= 32 MiB retained"
    except (OSError, AttributeError):
        pass
    return "default (mallopt unavailable)"


def _sync(device: torch.device | str | None) -> None:
    if device is not None and torch.device(device).type == "cuda":
        torch.cuda.synchronize(device)


def time_steps(
    step_fn: Callable[[], Any],
    warmup: int = 1,
    repeats: int = 3,
    device: torch.device | str | None = None,
) -> tuple[float, float]:
    """Mean and standard deviation (seconds) of ``step_fn`` over ``repeats`` calls after
    ``warmup`` untimed calls (first calls pay for allocations and lazy initialisation)."""
    if warmup < 0 or repeats < 1:
        raise ValueError(f"need warmup >= 0 and repeats >= 1, got {warmup}, {repeats}")
    for _ in range(warmup):
        step_fn()
    _sync(device)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        step_fn()
        _sync(device)
        times.append(time.perf_counter() - start)
    return statistics.fmean(times), (statistics.stdev(times) if repeats > 1 else 0.0)


def _cpu_model_name() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown cpu"


def device_description(device: torch.device | str) -> str:
    """Human-readable device, e.g. ``cpu (AMD EPYC 7B13, 2 threads)`` or ``cuda (NVIDIA H100)``."""
    device = torch.device(device)
    if device.type == "cuda":
        return f"cuda ({torch.cuda.get_device_name(device)})"
    threads = torch.get_num_threads()
    return f"cpu ({_cpu_model_name()}, {threads} thread{'s' if threads != 1 else ''}, {os.cpu_count()} cores)"
