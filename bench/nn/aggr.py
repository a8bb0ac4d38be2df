"""GENConv's max aggregation without a per-edge saved tensor.

GENConv (DeeperGCN) aggregates ``out_n = max_{j -> n} (ReLU(x_j + e_jn) + eps)``. PyG runs it
as message -> ReLU -> +eps -> ``torch.scatter_reduce(..., "amax")``; without ``torch_scatter``
(not installable against current torch) autograd then keeps, per layer, the ReLU output and the
scatter's whole E x C input: two E x C tensors, which dominate a deep ResGNN's memory on dense
graphs (ogbn-proteins: E/N = 60).

ReLU and ``+ eps`` are monotone, so they commute with the max::

    max_j (ReLU(m_j) + eps) = ReLU(max_j m_j) + eps,      m_j = x_j + e_jn

and :func:`relu_max_aggregate` takes the raw messages ``m`` (E x C), reduces them to the
per-node, per-channel maximum, and applies ReLU and ``+ eps`` to the N x C result. The only
tensor it saves is the argmax: for every node and channel the edge that attained the maximum
(an N x C int64 index), with a sentinel ``E`` where no gradient flows (the maximum is <= 0, so
the ReLU is flat, or the node has no incoming edge). The backward pass scatters the output
gradient to those edges: N x C work, no E x C comparison. Forward values equal PyG's bit for
bit (the rounding of ``+ eps`` is monotone too); nodes without incoming edges get 0, as in PyG.

Ties (two edges of a node carrying the same maximal value in a channel, e.g. duplicate edges
without edge features): the whole gradient goes to the tied edge with the LOWEST edge index --
deterministic on every device. PyG's ``scatter_reduce`` backward splits it evenly among the
tied edges instead; the gradient reaching the source nodes is the same when the tied edges share
a source (duplicate edges), and where the tied edges differ, both are valid subgradients. Where
there are no ties, gradients equal PyG's (float64 tests: ``tests/test_aggr.py``).

Nothing here reads a tensor back to the host, so on a GPU the host can queue a whole
reversible forward ahead of the device: nodes without incoming edges are told apart by the
scatter's own start value (packed path) or one ``index_fill_`` over the E target indices
(float path), not by ``bincount`` (which reads the index's min and max back, twice per call,
and is slow on CUDA). Under ``torch.compile`` the aggregation is the ``torch.library`` custom
op ``bench::relu_max`` (``bench::relu_max_values`` without grad), with fake implementations,
so a block traces into one graph (:mod:`bench.models.compiled`); eager calls skip the custom
op's dispatch and run the same functions directly.

Softmax aggregation does not admit the same trick: every edge receives gradient through the
softmax weights, so its backward needs all E x C messages (saved or recomputed); this module
covers max only, and GENConv with any other aggregation keeps PyG's path.

Example::

    import torch
    from bench.nn.aggr import LeanMaxGENConv

    conv = LeanMaxGENConv(16, 16, edge_dim=8)  # GENConv(aggr="max") without E x C saved tensors
    x, edge_index = torch.randn(100, 16), torch.randint(0, 100, (2, 500))
    out = conv(x, edge_index, torch.randn(500, 8))  # same values as GENConv(16, 16, aggr="max")
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor
from torch.autograd.function import once_differentiable
from torch_geometric.nn import GENConv
from torch_geometric.nn.aggr import Aggregation

__all__ = ["LeanMaxGENConv", "ReluMaxAggregation", "relu_max_aggregate"]


class _ReluMax(torch.autograd.Function):
    """``ReLU(scatter_max(msg, index)) + eps`` that saves only the N x C argmax (eager path)."""

    @staticmethod
    def forward(  # type: ignore[override]
        ctx: Any, msg: Tensor, index: Tensor, dim_size: int, eps: float
    ) -> Tensor:
        out, arg = _max_and_argmax(msg, index, dim_size, eps)
        ctx.n_edges = msg.shape[0]
        ctx.save_for_backward(arg)
        return out

    @staticmethod
    @once_differentiable
    def backward(ctx: Any, grad_out: Tensor) -> tuple[Tensor | None, ...]:
        (arg,) = ctx.saved_tensors
        return _scatter_grad(grad_out, arg, ctx.n_edges), None, None, None


def _max_and_argmax(msg: Tensor, index: Tensor, dim_size: int, eps: float) -> tuple[Tensor, Tensor]:
    """The output and the argmax to save (sentinel E: no gradient there)."""
    n_edges, channels = msg.shape
    if n_edges == 0:
        return msg.new_zeros(dim_size, channels), torch.full(
            (dim_size, channels), 0, dtype=torch.long, device=msg.device
        )
    if _packable(msg):
        peak, arg = _packed_max(msg, index, dim_size)
    else:
        peak = _scatter_max(msg, index, dim_size)
        arg = _first_argmax(msg, index, peak)
    out = peak.clamp_min(0).add_(eps).masked_fill_(arg == n_edges, 0)  # 0: no edge
    # no gradient where the ReLU is flat (max <= 0) or there is no edge: the sentinel E
    arg.masked_fill_(peak <= 0, n_edges)
    return out, arg


def _scatter_grad(grad_out: Tensor, arg: Tensor, n_edges: int) -> Tensor:
    """The messages' gradient: each output gradient to the edge that attained the max. One
    spare row collects the sentinels' values; every real (edge, channel) is written by at most
    one node (an edge has one target), so ``scatter_`` needs no accumulation."""
    grad = grad_out.new_zeros(n_edges + 1, grad_out.shape[1])
    grad.scatter_(0, arg, grad_out)
    return grad[:n_edges]


# Up to this many messages (E x C) the max and argmax come from ONE integer scatter of packed
# keys (below); above it from two float scatters, whose sorted CPU kernel wins on large inputs
# (measured on one CPU thread: 4x faster packed at 2,500 x 8, 1.7x slower at 100,000 x 32)
PACKED_MAX_ELEMENTS = 1 << 19
_BITS = {torch.float32: torch.int32, torch.bfloat16: torch.int16, torch.float16: torch.int16}


def _packable(msg: Tensor) -> bool:
    return msg.dtype in _BITS and msg.numel() <= PACKED_MAX_ELEMENTS and msg.shape[0] < 2**32


def _packed_max(msg: Tensor, index: Tensor, dim_size: int) -> tuple[Tensor, Tensor]:
    """The per-node maximum of ``ReLU(msg)`` and its lowest-index argmax, from one scatter.

    Non-negative IEEE floats order like their bit patterns read as integers, and a negative
    one reads as a negative integer, which ``clamp_min(0)`` turns into +0.0's pattern: so
    ``bits(ReLU(m))`` is an order-preserving integer. Each message becomes the int64 key
    ``bits << 32 | (E - 1 - k)``; the largest key of a node carries its largest value and,
    among equal values, the lowest edge index k. Returns (max >= 0, or -1 for a node without
    edges; argmax, E for a node without edges)."""
    n_edges, channels = msg.shape
    key = msg.view(_BITS[msg.dtype]).to(torch.long).clamp_min_(0).bitwise_left_shift_(32)
    key.add_(torch.arange(n_edges - 1, -1, -1, device=msg.device).view(-1, 1))
    best = torch.full((dim_size, channels), -1, dtype=torch.long, device=msg.device)
    best.scatter_reduce_(0, index.view(-1, 1).expand_as(msg), key, "amax")
    del key
    no_edge = best < 0
    low = best.bitwise_and(0xFFFFFFFF)
    arg = low.neg_().add_(n_edges - 1).masked_fill_(no_edge, n_edges)
    peak = best.bitwise_right_shift_(32).to(_BITS[msg.dtype]).view(msg.dtype)
    return peak.masked_fill_(no_edge, -1), arg


def _scatter_max(msg: Tensor, index: Tensor, dim_size: int) -> Tensor:
    """Per node and channel the largest message; -inf for a node without incoming edges.
    (``include_self`` with a -inf start: one kernel, where ``include_self=False`` adds a
    scatter to mark the targets.)"""
    start = msg.new_full((dim_size, msg.shape[1]), float("-inf"))
    return start.scatter_reduce_(0, index.view(-1, 1).expand_as(msg), msg, "amax")


# edges per chunk of the argmax search: its temporary (one float per message) stays within
# max(CHUNK_ELEMENTS, N x C) elements instead of growing with E x C
CHUNK_ELEMENTS = 1 << 22


def _first_argmax(msg: Tensor, index: Tensor, peak: Tensor) -> Tensor:
    """For every node and channel the lowest edge index whose message equals ``peak`` (the
    scatter max), as int64; E where no edge does (a node without incoming edges).

    How, with the kernels that are fast on CPU and GPU alike (float max-scatter, elementwise
    ops): each message becomes ``E - k`` (k its edge index) if it attains its node's maximum,
    else 0, and a second max-scatter picks the largest, i.e. the lowest k. Exact in float32
    below 2^24 edges, in float64 above."""
    n_edges, channels = msg.shape
    dim_size = peak.shape[0]
    key = torch.float32 if n_edges < 2**24 else torch.float64
    rev = torch.arange(n_edges, 0, -1, dtype=key, device=msg.device).view(-1, 1)  # E - k
    best = torch.zeros(dim_size, channels, dtype=key, device=msg.device)
    step = max(1, max(CHUNK_ELEMENTS, dim_size * channels) // max(1, channels))
    for start in range(0, n_edges, step):
        rows = slice(start, start + step)
        dst = index[rows]
        chunk = msg[rows]
        hits = peak.index_select(0, dst)
        if hits.dtype != key:
            hits = torch.eq(chunk, hits).to(key)
        else:  # in place: one temporary per chunk
            torch.eq(chunk, hits, out=hits)
        hits.mul_(rev[rows])
        best.scatter_reduce_(0, dst.view(-1, 1).expand_as(chunk), hits, "amax")
    return best.neg_().add_(n_edges).long()


def _max_values(msg: Tensor, index: Tensor, dim_size: int, eps: float) -> Tensor:
    """The forward values alone (nothing to save: no argmax search). Nodes without incoming
    edges are found without reading anything back to the host (``bincount`` would, twice):
    the packed scatter leaves its start value -1 there (every key is >= 0), the float path
    marks the targets with one ``index_fill_`` over the E indices."""
    n_edges, channels = msg.shape
    if n_edges == 0:
        return msg.new_zeros(dim_size, channels)
    if _packable(msg):  # ReLU'd bits order like the values (_packed_max): an integer scatter
        bits = msg.view(_BITS[msg.dtype]).clamp_min(0)
        peak = torch.full((dim_size, channels), -1, dtype=bits.dtype, device=msg.device)
        peak.scatter_reduce_(0, index.view(-1, 1).expand_as(msg), bits, "amax")
        no_edge = peak < 0
        return peak.clamp_min_(0).view(msg.dtype).add_(eps).masked_fill_(no_edge, 0)
    out = _scatter_max(msg, index, dim_size).clamp_min_(0).add_(eps)
    has_edge = torch.zeros(dim_size, 1, dtype=torch.bool, device=msg.device)
    return out.mul_(has_edge.index_fill_(0, index, True))


# --- the same computation as a torch.library custom op, for torch.compile ----------------------
# Inside a compiled block the aggregation is one opaque op with a fake (shape-only)
# implementation, so the block traces into one graph with dynamic sizes (its data-dependent
# Python -- which path, how many chunks -- runs at run time on real tensors). Eager code calls
# the functions above directly: a Python custom op costs ~0.1 ms of dispatch per call, which a
# reversible step on a small graph pays hundreds of times.
@torch.library.custom_op("bench::relu_max", mutates_args=())
def _relu_max_op(msg: Tensor, index: Tensor, dim_size: int, eps: float) -> tuple[Tensor, Tensor]:
    return _max_and_argmax(msg, index, dim_size, eps)


@_relu_max_op.register_fake
def _(msg: Tensor, index: Tensor, dim_size: int, eps: float) -> tuple[Tensor, Tensor]:
    shape = (dim_size, msg.shape[1])
    return msg.new_empty(shape), msg.new_empty(shape, dtype=torch.long)


def _setup_relu_max(ctx: Any, inputs: tuple, output: tuple) -> None:
    ctx.save_for_backward(output[1])
    ctx.n_edges = inputs[0].shape[0]


def _relu_max_op_backward(ctx: Any, grad_out: Tensor, _grad_arg: Any) -> tuple:
    (arg,) = ctx.saved_tensors
    return _scatter_grad(grad_out, arg, ctx.n_edges), None, None, None


_relu_max_op.register_autograd(_relu_max_op_backward, setup_context=_setup_relu_max)


@torch.library.custom_op("bench::relu_max_values", mutates_args=())
def _relu_max_values_op(msg: Tensor, index: Tensor, dim_size: int, eps: float) -> Tensor:
    return _max_values(msg, index, dim_size, eps)


@_relu_max_values_op.register_fake
def _(msg: Tensor, index: Tensor, dim_size: int, eps: float) -> Tensor:
    return msg.new_empty(dim_size, msg.shape[1])


def relu_max_aggregate(msg: Tensor, index: Tensor, dim_size: int, eps: float = 1e-7) -> Tensor:
    """``out[n] = max over edges k with index[k] == n of (ReLU(msg[k]) + eps)``, 0 for a node
    without edges; saves an N x C argmax for backward instead of ``msg`` (module doc). Nothing
    in it reads a tensor back to the host.

    ``msg``: E x C raw messages (before ReLU); ``index``: the E target nodes; ``dim_size``: N.
    Under ``torch.compile`` it is the custom op ``torch.ops.bench.relu_max`` (no graph break).
    """
    if msg.dim() != 2 or index.dim() != 1 or index.numel() != msg.shape[0]:
        raise ValueError(
            f"expected msg [E, C] and index [E], got {tuple(msg.shape)} and {tuple(index.shape)}"
        )
    needs_grad = torch.is_grad_enabled() and msg.requires_grad
    if torch.compiler.is_compiling():
        if needs_grad:
            return _relu_max_op(msg, index, dim_size, eps)[0]
        return _relu_max_values_op(msg, index, dim_size, eps)
    if needs_grad:
        return _ReluMax.apply(msg, index, dim_size, eps)
    return _max_values(msg, index, dim_size, eps)


class ReluMaxAggregation(Aggregation):
    """A PyG aggregation computing ``max(ReLU(x) + eps)`` per target (:func:`relu_max_aggregate`).

    Pair it with a message that skips its own ReLU and ``+ eps`` (:class:`LeanMaxGENConv`)."""

    def __init__(self, eps: float = 1e-7) -> None:
        super().__init__()
        self.eps = eps

    def forward(
        self,
        x: Tensor,
        index: Tensor | None = None,
        ptr: Tensor | None = None,
        dim_size: int | None = None,
        dim: int = -2,
    ) -> Tensor:
        if index is None or dim not in (0, -2) or x.dim() != 2:
            raise ValueError("ReluMaxAggregation needs 2-D messages and an index along dim 0")
        if dim_size is None:
            dim_size = int(index.max()) + 1 if index.numel() else 0
        return relu_max_aggregate(x, index, dim_size, self.eps)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(eps={self.eps})"


class LeanMaxGENConv(GENConv):
    """``GENConv(aggr="max")`` with ReLU and ``+ eps`` moved after the max (module doc): same
    parameters, same outputs, no E x C tensor saved for backward. Takes GENConv's arguments,
    except ``aggr`` (always max)."""

    def __init__(self, *args: Any, eps: float = 1e-7, **kwargs: Any) -> None:
        if "aggr" in kwargs:
            raise TypeError("LeanMaxGENConv always aggregates by max; do not pass aggr")
        super().__init__(*args, aggr=ReluMaxAggregation(eps), eps=eps, **kwargs)

    def forward(  # type: ignore[override]
        self,
        x: Tensor | tuple[Tensor, Tensor | None],
        edge_index: Tensor,
        edge_attr: Tensor | None = None,
        size: tuple[int, int] | None = None,
    ) -> Tensor:
        """GENConv's forward with its ``propagate`` inlined for a dense ``edge_index``: the same
        operations without MessagePassing's per-call Python (which a reversible backward, with
        one call per group and layer on small graphs, pays hundreds of times per step)."""
        if not isinstance(edge_index, Tensor) or edge_index.is_sparse or self._hooked():
            return super().forward(x, edge_index, edge_attr, size)
        src, dst = (x, x) if isinstance(x, Tensor) else x
        if hasattr(self, "lin_src"):
            src = self.lin_src(src)
        n_dst = size[1] if size is not None else (dst if dst is not None else src).shape[0]
        msg = self.message(src.index_select(0, edge_index[0]), edge_attr)
        # the aggregation itself, without PyG's Aggregation.__call__ and the module call around
        # it (its checks are the ones relu_max_aggregate makes): two Python layers per call less
        out = relu_max_aggregate(msg, edge_index[1], n_dst, self.aggr_module.eps)
        if hasattr(self, "lin_aggr_out"):
            out = self.lin_aggr_out(out)
        if hasattr(self, "msg_norm"):
            out = self.msg_norm(dst if dst is not None else src, out)
        if dst is not None:
            out = out + (self.lin_dst(dst) if hasattr(self, "lin_dst") else dst)
        return self.mlp(out)

    def _hooked(self) -> bool:
        """Whether something relies on ``propagate`` or on the aggregation module being called
        (PyG's hooks, module hooks on the aggregation, explainers, decomposition)."""
        return bool(
            self.aggr_module._forward_hooks
            or self.aggr_module._forward_pre_hooks
            or self._propagate_forward_pre_hooks
            or self._propagate_forward_hooks
            or self._message_forward_pre_hooks
            or self._message_forward_hooks
            or self._aggregate_forward_pre_hooks
            or self._aggregate_forward_hooks
            or bool(self.explain)
            or self.decomposed_layers > 1
        )

    def message(self, x_j: Tensor, edge_attr: Tensor | None) -> Tensor:
        if edge_attr is not None and hasattr(self, "lin_edge"):
            edge_attr = self.lin_edge(edge_attr)
        return x_j if edge_attr is None else x_j + edge_attr

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.in_channels}, {self.out_channels}, aggr=max)"
