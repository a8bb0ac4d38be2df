"""The CPU live-tensor meter is exact: each test predicts the peak to the byte."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from bench.measure.meters import (
    CPU_METER,
    MemoryCapExceeded,
    PeakMemory,
    count_parameters,
    device_description,
    model_state_bytes,
    time_steps,
)

F32 = 4


def test_allocate_and_free() -> None:
    with PeakMemory("cpu") as m:
        a = torch.empty(1000)
        b = torch.empty(500)
        del a
        c = torch.empty(100)
    assert m.meter == CPU_METER
    assert m.peak_above_baseline == 1500 * F32
    assert m.end_bytes - m.baseline_bytes == 600 * F32
    del b, c


def test_views_share_one_storage() -> None:
    with PeakMemory("cpu") as m:
        a = torch.empty(1000)
        views = [a[10:], a.view(10, 100), a.unsqueeze(0).t(), a.detach(), a.as_strided((10,), (3,))]
        del a
        keep = views[0] + 0  # a real allocation: 990 floats
    assert m.peak_above_baseline == (1000 + 990) * F32
    del views, keep


def test_freeing_a_storage_that_existed_at_entry() -> None:
    big = torch.empty(2000)
    with PeakMemory("cpu") as m:
        del big
        a = torch.empty(1000)
    assert m.baseline_bytes >= 2000 * F32
    assert m.peak_bytes == m.baseline_bytes  # the free made room for a
    assert m.end_bytes == m.baseline_bytes - 1000 * F32
    del a


def test_storage_resized_to_zero_and_grown_in_place() -> None:
    with PeakMemory("cpu") as m:
        a = torch.empty(1000)
        a.untyped_storage().resize_(0)  # how memory-saving code frees a tensor's memory
        b = torch.empty(300)
        a.untyped_storage().resize_(400 * F32)
        c = torch.empty(0)
        c.resize_(200)  # aten resize_ grows a storage in place
    # peak was the first 1000 floats; afterwards 300 + 400 + 200 = 900
    assert m.peak_above_baseline == max(1000, 300 + 400 + 200) * F32
    assert m.end_bytes - m.baseline_bytes == 900 * F32
    del a, b, c


def test_set_swaps_storage() -> None:
    with PeakMemory("cpu") as m:
        a = torch.empty(1000)
        b = torch.empty(10)
        a.set_(b)  # a's old storage dies
        c = torch.empty(500)
    assert m.peak_above_baseline == 1010 * F32
    assert m.end_bytes - m.baseline_bytes == 510 * F32
    del a, b, c


def test_tensors_kept_alive_by_autograd_and_allocated_in_backward() -> None:
    n = 256
    w = torch.randn(n, n, requires_grad=True)
    x = torch.randn(n, n)
    with PeakMemory("cpu") as m:
        h = (x @ w).relu()  # matmul saves x, w (entry tensors); relu saves its output h
        loss = h.sum()
        del h  # still alive: relu saved it
        after_forward = m.live_bytes - m.baseline_bytes
        loss.backward()
    # x @ w is relu's input, not saved, so it is freed at once; h (saved by relu) + loss remain
    assert after_forward == (n * n + 1) * F32
    # backward: grad of loss (1 float; the sum's backward only expands it, a view) and relu's
    # grad (n*n) are live while relu still holds h; then h is released and w.grad (n*n) is made
    assert m.peak_above_baseline == (2 * n * n + 2) * F32
    # afterwards only w.grad and loss survive
    assert m.end_bytes - m.baseline_bytes == (n * n + 1) * F32
    assert w.grad is not None


def test_backward_allocations_are_seen_exactly() -> None:
    a = torch.randn(1000, requires_grad=True)
    loss = (a * a).sum()  # saves a twice (entry tensor), no new saved storage
    with PeakMemory("cpu") as m:
        loss.backward()
    # grad of loss (1 float) -> expand (a view) -> grad * a twice (1000 each) -> the two are
    # summed into a new buffer (1000) that becomes a.grad; the two products are then freed
    assert m.peak_above_baseline == (1 + 3 * 1000) * F32
    assert m.end_bytes - m.baseline_bytes == 1000 * F32


def test_cap_raises_from_inside_the_op_that_crosses_it() -> None:
    with pytest.raises(MemoryCapExceeded) as info, PeakMemory("cpu") as m:
        cap = m.baseline_bytes + 1000 * F32
        m.cap_bytes = cap
        torch.empty(500)
        torch.empty(2000)  # crosses the cap inside the op
    assert isinstance(info.value, MemoryError)
    assert info.value.live_bytes > info.value.cap_bytes


def test_cap_raises_from_inside_backward() -> None:
    w = torch.randn(64, 64, requires_grad=True)
    loss = (torch.randn(64, 64) @ w).relu().sum()
    with pytest.raises(MemoryCapExceeded), PeakMemory("cpu") as m:
        m.cap_bytes = m.live_bytes + 100
        loss.backward()


def test_resize_patch_is_removed_after_exit() -> None:
    before = torch.UntypedStorage.resize_
    with PeakMemory("cpu"):
        assert torch.UntypedStorage.resize_ is not before
    assert torch.UntypedStorage.resize_ is before


def test_model_state_parameters_and_timing() -> None:
    lin = nn.Linear(10, 10)
    tied = nn.Sequential(lin, nn.ReLU(), lin)
    assert count_parameters(tied) == 110
    opt = torch.optim.Adam(tied.parameters())
    assert model_state_bytes(tied, opt) == 110 * F32  # no grads, no state yet
    tied(torch.randn(3, 10)).sum().backward()
    opt.step()
    # params + grads + exp_avg + exp_avg_sq (+ two scalar float32 "step" tensors)
    assert model_state_bytes(tied, opt) == 4 * 110 * F32 + 2 * F32
    calls: list[int] = []
    mean, std = time_steps(lambda: calls.append(1), warmup=2, repeats=3)
    assert len(calls) == 5 and mean >= 0 and std >= 0
    assert device_description("cpu").startswith("cpu (")
