"""Where a RevGNN step's time goes on the device: a short ``torch.profiler`` summary.

One fresh process builds RevGNN (112 layers, 64 channels, as in the paper's figure 1) on the
GPU check's proteins-sized training part and, after two warm-up steps, reports:

* **synchronisations**: the synchronising CUDA calls ``torch.cuda.set_sync_debug_mode("warn")``
  reports in one step, and, from the profile, the CUDA runtime's synchronising calls
  (``cuda*Synchronize``) and the aten ops that read the device from the host
  (``_local_scalar_dense``, ``nonzero``, ``bincount``, ...);
* **top kernels** by device time over the profiled steps (count, total, share), and the
  device's busy time against the wall time (an idle device waits for the host);
* **max-aggregation paths** (:mod:`bench.nn.aggr`): the fused aggregation's three ways of
  finding the maximum and its argmax -- one packed int64 scatter, two float scatters with the
  argmax in one pass, the same chunked -- timed on this batch's message shape (E x C/G) with
  and without grad, and the memory each adds: which is fastest on this device.

The same code runs on a CPU (top ops by CPU time, no synchronisation counts), which is how
the tests run it. Written to ``results/gpu/profile-rev.md`` by ``gpu-check``.
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import time
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import torch

TOP_KERNELS = 15
#: aten ops that read a tensor back to the host (or must, to size their output)
HOST_READ_OPS = ("aten::_local_scalar_dense", "aten::item", "aten::nonzero", "aten::bincount",
                 "aten::_unique2", "aten::masked_select", "aten::repeat_interleave")  # fmt: skip
#: the CUDA runtime's calls that block the host until the device has caught up
SYNC_CALLS = ("cudaStreamSynchronize", "cudaDeviceSynchronize", "cudaEventSynchronize")
FILE = "profile-rev.md"


def profile(source: Any, args: argparse.Namespace, device: torch.device, layers: int = 112,
            steps: int = 3) -> dict[str, Any]:  # fmt: skip
    """Profile ``steps`` RevGNN training steps on ``source``'s graph (in this process)."""
    from bench.instruments.benchmark.point import build, train_step
    from bench.measure.precision import MixedPrecision
    from bench.models.compiled import compile_blocks

    torch.manual_seed(args.seed)
    graph = source.load(device)
    model = build("rev", layers, graph, args).to(device).train()
    if args.compile:
        compile_blocks(model)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    amp = MixedPrecision.for_config("fp32", device)
    step = functools.partial(train_step, model, optimizer, graph, amp)
    for _ in range(2):
        step()
    _sync(device)
    syncs = _sync_warnings(step) if device.type == "cuda" else None
    activities = [torch.profiler.ProfilerActivity.CPU]
    if device.type == "cuda":
        activities.append(torch.profiler.ProfilerActivity.CUDA)
    started = time.perf_counter()
    with torch.profiler.profile(activities=activities) as prof:
        for _ in range(steps):
            step()
        _sync(device)
    wall = (time.perf_counter() - started) / steps
    events = prof.key_averages()
    on_device = device.type == "cuda"
    kernels = [e for e in events if _is_kernel(e, on_device)]
    busy = sum(_self_time(e, on_device) for e in kernels) / steps
    top = sorted(kernels, key=lambda e: _self_time(e, on_device), reverse=True)[:TOP_KERNELS]
    counts = {e.key: e.count for e in events}
    return {
        "device": _device_name(device),
        "commit": _commit(),
        "source_hash": _source(),
        "torch": torch.__version__,
        "nodes": int(graph.x.shape[0]),
        "edges": int(graph.edge_index.shape[1]),
        "layers": layers,
        "channels": args.channels,
        "groups": args.groups,
        "compile": bool(args.compile),
        "steps": steps,
        "wall_s": wall,
        "busy_s": busy / 1e6,
        "sync_warnings": syncs,
        "sync_calls": {k: counts.get(k, 0) / steps for k in SYNC_CALLS},
        "host_reads": {k: counts.get(k, 0) / steps for k in HOST_READ_OPS if counts.get(k)},
        "top": [(e.key, e.count / steps, _self_time(e, on_device) / steps / 1e3) for e in top],
        "aggregation": aggregation_paths(
            graph.edge_index[1], graph.x.shape[0], args.channels // args.groups, device
        ),  # fmt: skip
    }


def aggregation_paths(index: torch.Tensor, nodes: int, width: int, device: torch.device,
                      repeats: int = 5) -> list[dict[str, Any]]:  # fmt: skip
    """The fused max aggregation's three search paths on E x ``width`` messages into ``index``:
    milliseconds per call with grad (forward + backward) and without (forward), and the bytes
    the grad call adds at its peak (CUDA; None on CPU)."""
    import bench.nn.aggr as aggr

    g = torch.Generator(device=device).manual_seed(0)
    msg = torch.randn(index.numel(), width, device=device, generator=g)
    grad_out = torch.randn(nodes, width, device=device, generator=g)
    paths = {
        "packed int64 key (one scatter)": {"PACKED_MAX_ELEMENTS": 1 << 62},
        "two float scatters": {"PACKED_MAX_ELEMENTS": 0, "CHUNK_ELEMENTS": 1 << 62},
        "two float scatters, chunked argmax": {"PACKED_MAX_ELEMENTS": 0},
    }
    out = []
    for name, settings in paths.items():
        with _settings(aggr, settings):
            leaf = msg.detach().requires_grad_()

            def with_grad(leaf: torch.Tensor = leaf) -> None:
                aggr.relu_max_aggregate(leaf, index, nodes).backward(grad_out)

            def no_grad() -> None:
                with torch.no_grad():
                    aggr.relu_max_aggregate(msg, index, nodes)

            peak = _added_peak(with_grad, device)
            out.append({"path": name, "grad_ms": _ms(with_grad, device, repeats),
                        "nograd_ms": _ms(no_grad, device, repeats), "grad_added_bytes": peak})  # fmt: skip
    return out


def markdown(result: dict[str, Any]) -> str:
    """The profile as a short Markdown page."""
    mode = "compiled" if result["compile"] else "eager"
    lines = [
        "# RevGNN step profile",
        "",
        f"{result['device']}, torch {result['torch']}, commit {result['commit']}, source "
        f"{result['source_hash']}. RevGNN "
        f"{result['layers']} layers x {result['channels']} channels ({result['groups']} groups), "
        f"{mode}, on a {result['nodes']:,}-node, {result['edges']:,}-edge proteins-sized part; "
        f"{result['steps']} profiled steps after 2 warm-up steps. Times are per step, under "
        "the profiler (which slows the host: read them as shares, not as the step time).",
        "",
        f"- wall time per step: {result['wall_s']:.3f} s; kernels busy: "
        f"{result['busy_s']:.3f} s ({_share(result['busy_s'], result['wall_s'])} of the wall)",
    ]
    if result["sync_warnings"] is not None:
        lines.append(f"- synchronisations (`set_sync_debug_mode('warn')`, one step): "
                     f"{result['sync_warnings']}")  # fmt: skip
        calls = ", ".join(f"{k} {v:g}" for k, v in result["sync_calls"].items())
        lines.append(f"- CUDA runtime synchronising calls per step: {calls}")
    reads = ", ".join(f"{k} {v:g}" for k, v in result["host_reads"].items()) or "none"
    lines += [f"- host-reading aten ops per step: {reads}", "", "## top kernels", "",
              "| kernel | calls | ms | share |", "| --- | ---: | ---: | ---: |"]  # fmt: skip
    for name, count, ms in result["top"]:
        short = name if len(name) <= 90 else name[:87] + "..."
        lines.append(f"| `{short}` | {count:g} | {ms:.2f} | "
                     f"{_share(ms / 1e3, result['busy_s'])} |")  # fmt: skip
    lines += ["", "## max-aggregation paths (one group's messages, E x C/G)", "",
              "| path | with grad, ms | no grad, ms | grad call adds |",
              "| --- | ---: | ---: | ---: |"]  # fmt: skip
    for p in result["aggregation"]:
        added = "" if p["grad_added_bytes"] is None else f"{p['grad_added_bytes'] / 2**20:,.0f} MiB"
        lines.append(f"| {p['path']} | {p['grad_ms']:.2f} | {p['nograd_ms']:.2f} | {added} |")
    return "\n".join(lines) + "\n"


def run(source: Any, args: argparse.Namespace, device: torch.device, out: Path,
        timeout: float | None = None) -> tuple[Path | None, str | None]:  # fmt: skip
    """:func:`profile` in a fresh process (``spawn``: CUDA needs it), then the Markdown page
    in ``out``: (its path, None), or (None, why) if the child failed or ran out of time."""
    import multiprocessing

    ctx = multiprocessing.get_context("spawn")
    receive, send = ctx.Pipe(duplex=False)
    child = ctx.Process(target=_child, args=(send, source, args, device))
    child.start()
    send.close()
    result: Any = f"still running after {timeout:.0f} s" if timeout else "no result"
    try:
        if receive.poll(timeout):
            result = receive.recv()
    except EOFError:
        result = f"the profiling process died (exit code {child.exitcode})"
    if child.is_alive():
        child.kill()
    child.join()
    if not isinstance(result, dict):
        return None, str(result)
    path = out / FILE
    path.write_text(markdown(result))
    return path, None


def _child(conn: Any, source: Any, args: argparse.Namespace, device: torch.device) -> None:
    try:
        conn.send(profile(source, args, device))
    except Exception as err:  # noqa: BLE001 - the parent says it failed
        conn.send(f"{type(err).__name__}: {err}")
    conn.close()


def _is_kernel(event: Any, on_device: bool) -> bool:
    if on_device:
        return event.device_type == torch.autograd.DeviceType.CUDA
    return event.key.startswith("aten::")  # CPU: the ops, by their own time


def _self_time(event: Any, on_device: bool) -> float:
    return float(event.self_device_time_total if on_device else event.self_cpu_time_total)


def _sync_warnings(step: Callable[[], None]) -> int:
    """Synchronisations in one step, as the sync debug mode reports them."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        torch.cuda.set_sync_debug_mode("warn")
        try:
            step()
        finally:
            torch.cuda.set_sync_debug_mode("default")
    return sum("synchroniz" in str(w.message) for w in caught)


@contextlib.contextmanager
def _settings(module: Any, values: dict[str, int]) -> Iterator[None]:
    saved = {k: getattr(module, k) for k in values}
    for k, v in values.items():
        setattr(module, k, v)
    try:
        yield
    finally:
        for k, v in saved.items():
            setattr(module, k, v)


def _ms(fn: Callable[[], None], device: torch.device, repeats: int) -> float:
    fn()
    _sync(device)
    started = time.perf_counter()
    for _ in range(repeats):
        fn()
    _sync(device)
    return (time.perf_counter() - started) / repeats * 1e3


def _added_peak(fn: Callable[[], None], device: torch.device) -> int | None:
    if device.type != "cuda":
        return None
    _sync(device)
    base = torch.cuda.memory_allocated(device)
    torch.cuda.reset_peak_memory_stats(device)
    fn()
    _sync(device)
    return torch.cuda.max_memory_allocated(device) - base


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _share(part: float, whole: float) -> str:
    return f"{part / whole:.0%}" if whole > 0 else ""


def _device_name(device: torch.device) -> str:
    from bench.measure.meters import device_description

    return device_description(device)


def _source() -> str:
    from bench.measure.provenance import source_hash

    return source_hash()


def _commit() -> str | None:
    from bench.measure.provenance import git_commit

    return git_commit()
