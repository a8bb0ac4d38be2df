"""Grouped reversible stack with O(1) activation memory in depth, as a standalone autograd engine.

Each layer splits its input into G groups ``x_1..x_G`` (along the last dimension) and computes::

    y_0 = x_2 + ... + x_G
    y_i = x_i + f_i(y_{i-1}),   i = 1..G

which is invertible group by group from the last: ``x_i = y_i - f_i(y_{i-1})`` for i = G..2,
then ``y_0 = x_2 + ... + x_G`` and ``x_1 = y_1 - f_1(y_0)``.

Why a custom engine rather than PyG's ``GroupAddRev``: the forward pass runs under
``torch.no_grad()`` and keeps only the final output; the backward pass walks the layers from
last to first and evaluates every ``f_i`` exactly ONCE, with grad enabled, on a detached copy of
its input. That one evaluation serves both the inverse (``x_i = y_i - out``) and the vector-
Jacobian product (``torch.autograd.grad`` through the same graph), so a training step costs
about 4/3 of a plain residual step instead of the ~5/3 of invert-then-recompute engines.
Gradients are real autograd outputs of a :class:`torch.autograd.Function` whose inputs are the
stack's input, its context tensors and every parameter, so ``torch.autograd.grad`` (any number
of times) and ``torch.autograd.gradcheck`` work, and weight tying (the same modules at several
layers) simply sums the gradients of the shared tensors.

Dropout: the functions must be deterministic given their inputs, so the stack draws the
dropout masks itself. Each training forward draws ONE integer seed from torch's global RNG
(so ``torch.manual_seed`` makes runs reproducible); the G masks of layer ``l`` are drawn in one
call from ``(seed, l)`` with a dedicated ``torch.Generator`` on the tensors' device, in the
forward and again in the backward: independent masks per layer and group, replayed exactly,
with only the current layer's masks alive. ``share_mask=True`` instead uses one mask for every
layer and group (the paper authors' choice). Masks are already scaled by ``1/(1 - p)`` and are
handed to the functions as the keyword ``dropout_mask`` (only in training mode with p > 0).

Dropout masks are drawn into fresh contiguous tensors (``bernoulli_`` fills in memory order),
so a mask does not depend on the strides of the tensor it is drawn for: a column-major input
gets the masks of its contiguous copy, in the forward and in the backward alike.

Normalisation: the backward recomputation runs inside :func:`frozen_running_stats`, so
BatchNorm-like layers use the batch statistics of the same input as in the forward (train mode)
but do not update their running statistics a second time.

Mixed precision (``torch.autocast``): the residual stream -- the group tensors ``x_i``, ``y_i``
that the inverse rebuilds -- stays float32 (a bf16/fp16 input is upcast on entry, and
``x_i + f_i(.)`` promotes a low-precision ``f_i`` output to float32); only the group functions
run under autocast. Why: the inverse ``x_i = y_i - f_i(y_{i-1})`` is exact only up to the
rounding of the addition it undoes, and that rounding must be float32's (6e-8), not bf16's
(4e-3), or the rebuilt inputs drift away within a few layers. The recomputation in backward runs
under exactly the autocast state captured at the forward (device, dtype, enabled, cache flag;
:class:`bench.nn.state.AutocastState`, as ``torch.utils.checkpoint`` does), not under whatever
state is active at ``backward()``: so ``f_i(y_{i-1})`` is the forward's function and cancels.
What remains is float32 rounding of the rebuilt inputs, which a bf16 function turns into a
one-bf16-step error where a value sits on a rounding boundary (measured drift: README).

Parameters: gradients reach exactly the stack's parameters (and the input and context tensors).
Which parameters a function uses is read from the autograd graph of its evaluation, so a
function may use a layer owned by another function of the stack; a leaf that needs a gradient
but is not the stack's (a module reached through a closure or unregistered attribute) would get
none, and is an error naming it on the first backward.

Example, with your own layer (any module ``f(x, *context, dropout_mask=None) -> tensor`` whose
output has the shape of its input)::

    import torch
    from torch import nn
    from bench.nn import ReversibleStack

    class Mix(nn.Module):
        def __init__(self, width: int, cond: int) -> None:
            super().__init__()
            self.lin = nn.Linear(width + cond, width)

        def forward(self, x, c, dropout_mask=None):
            h = torch.relu(x) if dropout_mask is None else torch.relu(x) * dropout_mask
            return self.lin(torch.cat([h, c], dim=-1))

    groups, width = 2, 16
    stack = ReversibleStack(
        [[Mix(width // groups, 4) for _ in range(groups)] for _ in range(100)], dropout=0.1
    )
    x = torch.randn(32, width, requires_grad=True)
    c = torch.randn(32, 4, requires_grad=True)  # context: passed whole to every function
    stack(x, c).square().sum().backward()  # activation memory independent of the 100 layers
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch import Tensor, nn
from torch.autograd.function import once_differentiable

from bench.nn.state import AutocastState, frozen_running_stats, upcast_under_autocast

__all__ = ["ReversibleStack", "frozen_running_stats"]

_MASK64 = (1 << 64) - 1


def _mix(seed: int, key: int) -> int:
    """splitmix64 of (seed, key): every bit of the result depends on both.

    Why: the CPU generator (mt19937) only uses the low 32 bits of a seed, so naive
    ``seed << 32 | key`` would give every forward the same masks."""
    z = (seed * 0x9E3779B97F4A7C15 + key * 0xBF58476D1CE4E5B9 + 0x94D049BB133111EB) & _MASK64
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & _MASK64
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & _MASK64
    return (z ^ (z >> 31)) & ((1 << 63) - 1)


_NO_MASK: dict[str, Tensor] = {}


class _Masks:
    """Dropout masks of one forward pass, regenerated from its seed on demand.

    The G masks of a layer are drawn together (one generator seeding and one ``bernoulli_``
    into a [G, N, w] buffer) the first time any group of that layer asks, and kept until another
    layer asks: the forward asks group by group upwards, the backward downwards, and both see
    the same buffer."""

    def __init__(self, seed: int | None, p: float, groups: int, shared: bool) -> None:
        self.seed = seed
        self.p = p
        self.groups = groups
        self.shared = shared
        self._generator: torch.Generator | None = None
        self._layer: int | None = None
        self._kwargs: list[dict[str, Tensor]] = []

    def kwargs(self, layer: int, group: int, like: Tensor) -> dict[str, Tensor]:
        if self.seed is None:
            return _NO_MASK
        if self._layer != (0 if self.shared else layer):
            self._draw(0 if self.shared else layer, like)
        return self._kwargs[group]

    def _draw(self, layer: int, like: Tensor) -> None:
        if self._generator is None or self._generator.device != like.device:
            self._generator = torch.Generator(device=like.device)
        self._generator.manual_seed(_mix(self.seed or 0, layer))
        keep = 1.0 - self.p
        count = 1 if self.shared else self.groups
        # a fresh contiguous tensor, not empty_like: bernoulli_ fills in memory order, so a
        # mask must not follow the strides of whatever tensor it is drawn for
        masks = torch.empty((count, *like.shape), dtype=like.dtype, device=like.device)
        masks.bernoulli_(keep, generator=self._generator).div_(keep)
        self._kwargs = [
            {"dropout_mask": masks[0 if self.shared else i]} for i in range(self.groups)
        ]
        self._layer = layer


_TENSOR = object()  # placeholder for a context tensor in a context template


class ReversibleStack(nn.Module):
    """A stack of grouped reversible layers; see the module docstring for the maths.

    Args:
        blocks: one entry per distinct layer, each a sequence of G >= 2 modules
            ``f_i(x, *context, dropout_mask=None) -> tensor`` of the shape of ``x`` (the group
            width is the stack width / G).
        num_layers: depth; defaults to ``len(blocks)``. If larger, it must be a multiple of
            ``len(blocks)`` and layer ``l`` uses ``blocks[l % len(blocks)]``: one block with
            ``num_layers=L`` is a weight-tied stack.
        dropout: probability p of the masks the stack hands its functions in training mode.
        share_mask: one mask for every layer and group (the paper's way) instead of one per
            layer and group.

    Attributes:
        last_seed: the dropout seed of the last training forward (None when no masks were drawn).
        reconstruction_hook: if set, called in backward as ``hook(layer, x)`` with each layer's
            input as rebuilt from its output (for measuring numerical drift).
    """

    def __init__(
        self,
        blocks: Sequence[Sequence[nn.Module]],
        num_layers: int | None = None,
        dropout: float = 0.0,
        share_mask: bool = False,
    ) -> None:
        super().__init__()
        if len(blocks) == 0:
            raise ValueError("blocks: a reversible stack needs at least one block")
        groups = len(blocks[0])
        if groups < 2:
            raise ValueError(f"blocks: a reversible layer needs >= 2 group functions, got {groups}")
        if any(len(b) != groups for b in blocks):
            raise ValueError("blocks: every block must have the same number of group functions")
        num_layers = len(blocks) if num_layers is None else num_layers
        if num_layers < 1 or num_layers % len(blocks):
            raise ValueError(
                f"num_layers: must be a positive multiple of {len(blocks)}, got {num_layers}"
            )
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"dropout: must be in [0, 1), got {dropout}")
        self.blocks = nn.ModuleList(nn.ModuleList(b) for b in blocks)
        self.groups = groups
        self.num_layers = num_layers
        self.dropout = dropout
        self.share_mask = share_mask
        self.last_seed: int | None = None
        self.reconstruction_hook: Callable[[int, Tensor], None] | None = None
        # id(function) -> indices of the parameters its graph reaches, valid for one parameter
        # list (which parameters require grad): found on the first backward, reused after
        self._plans: dict[int, list[int]] = {}
        self._plans_params: tuple[int, ...] = ()

    # --- shared pieces ---------------------------------------------------------------------
    def functions(self, layer: int) -> nn.ModuleList:
        """The G group functions of layer ``layer``."""
        return self.blocks[layer % len(self.blocks)]  # type: ignore[return-value]

    def _plans_for(self, params: Sequence[Tensor]) -> dict[int, list[int]]:
        """The plan cache for this parameter list (emptied when the list changes)."""
        key = tuple(id(p) for p in params)
        if key != self._plans_params:
            self._plans, self._plans_params = {}, key
        return self._plans

    def _masks(self, seed: int | None) -> _Masks:
        return _Masks(seed, self.dropout, self.groups, self.share_mask)

    def _layer(self, layer: int, xs: list[Tensor], context: tuple, masks: _Masks) -> list[Tensor]:
        """One layer forward on group tensors (no concatenation between layers)."""
        prev = xs[1]
        for t in xs[2:]:
            prev = prev + t
        ys = []
        for i, f in enumerate(self.functions(layer)):
            prev = xs[i] + f(prev, *context, **masks.kwargs(layer, i, prev))
            ys.append(prev)
        return ys

    def _split(self, x: Tensor) -> list[Tensor]:
        if x.shape[-1] % self.groups:
            raise ValueError(
                f"input width {x.shape[-1]} is not divisible by the {self.groups} groups"
            )
        return list(upcast_under_autocast(x).chunk(self.groups, dim=-1))

    def _run(
        self,
        x: Tensor,
        context: tuple,
        seed: int | None,
        on_layer: Callable[[int, Tensor], None] | None = None,
    ) -> Tensor:
        xs, masks = self._split(x), self._masks(seed)
        for layer in range(self.num_layers):
            if on_layer is not None:
                on_layer(layer, torch.cat(xs, dim=-1))
            xs = self._layer(layer, xs, context, masks)
        return torch.cat(xs, dim=-1)

    def _draw_seed(self) -> int | None:
        if not (self.training and self.dropout > 0):
            return None
        return int(torch.randint(0, 2**62, (), dtype=torch.int64).item())

    # --- public ----------------------------------------------------------------------------
    def forward(self, x: Tensor, *context: Any) -> Tensor:
        """Run the stack; context entries (tensors or not) are passed whole to every function."""
        seed = self._draw_seed()
        self.last_seed = seed
        x = upcast_under_autocast(x)  # the residual stream stays float32 under autocast
        params = [p for p in self.parameters() if p.requires_grad]
        ctx_tensors = [c for c in context if isinstance(c, Tensor)]
        needs_grad = torch.is_grad_enabled() and (
            x.requires_grad or bool(params) or any(c.requires_grad for c in ctx_tensors)
        )
        if not needs_grad:  # eval / no_grad: nothing to save, nothing to rebuild
            return self._run(x, context, seed)
        template = tuple(_TENSOR if isinstance(c, Tensor) else c for c in context)
        return _ReversibleFunction.apply(
            self, seed, template, len(ctx_tensors), x, *ctx_tensors, *params
        )

    def unrolled(self, x: Tensor, *context: Any, seed: int | None = None) -> Tensor:
        """The same computation in plain autograd (stores every activation): a reference.

        ``seed`` selects the dropout masks (e.g. ``last_seed`` of a forward to replay it);
        None means no dropout masks."""
        return self._run(x, context, seed)

    @torch.no_grad()
    def layer_inputs(self, x: Tensor, *context: Any, seed: int | None = None) -> list[Tensor]:
        """Every layer's input of a forward with ``seed``'s masks (running stats untouched)."""
        inputs: list[Tensor] = []
        with frozen_running_stats(self):
            self._run(x, context, seed, on_layer=lambda _, t: inputs.append(t))
        return inputs

    @torch.no_grad()
    def inverse(self, y: Tensor, *context: Any, seed: int | None = None) -> Tensor:
        """Rebuild the stack's input from its output (masks from ``seed``; no grad)."""
        ys, masks = self._split(y), self._masks(seed)
        with frozen_running_stats(self):
            for layer in reversed(range(self.num_layers)):
                fs = self.functions(layer)
                xs: list[Tensor] = [ys[0]] * self.groups
                for i in reversed(range(self.groups)):
                    inp = ys[i - 1] if i > 0 else _sum(xs[1:])
                    xs[i] = ys[i] - fs[i](inp, *context, **masks.kwargs(layer, i, inp))
                ys = xs
        return torch.cat(ys, dim=-1)

    def extra_repr(self) -> str:
        return (
            f"groups={self.groups}, num_layers={self.num_layers}, distinct_blocks="
            f"{len(self.blocks)}, dropout={self.dropout}, share_mask={self.share_mask}"
        )


def _sum(ts: Sequence[Tensor]) -> Tensor:
    out = ts[0]
    for t in ts[1:]:
        out = out + t
    return out


class _GradSum:
    """Running sums of gradients, added in place into a buffer the sum owns.

    A gradient autograd hands back may be a tensor still in use elsewhere (an incoming
    gradient passed straight through, or one tensor returned for two inputs): such a one is
    ``shared`` and the first sum makes a copy. Any other is adopted as the buffer, so a sum of
    E x C edge-embedding gradients holds two E x C tensors at a time, not three."""

    def __init__(self, n: int) -> None:
        self.values: list[Tensor | None] = [None] * n
        self._owned = [False] * n

    def add(self, k: int, g: Tensor | None, shared: bool = True) -> None:
        if g is None:
            return
        current = self.values[k]
        if current is None:
            self.values[k] = g
            self._owned[k] = not shared
        elif self._owned[k]:
            current.add_(g)
        else:
            self.values[k] = current + g
            self._owned[k] = True


class _ReversibleFunction(torch.autograd.Function):
    """Forward without a graph; backward rebuilds inputs and backpropagates layer by layer."""

    @staticmethod
    def forward(  # type: ignore[override]
        ctx: Any,
        stack: ReversibleStack,
        seed: int | None,
        template: tuple,
        n_ctx: int,
        x: Tensor,
        *rest: Tensor,
    ) -> Tensor:
        ctx_tensors, params = rest[:n_ctx], rest[n_ctx:]
        context = _fill(template, ctx_tensors)
        y = stack._run(x, context, seed)
        ctx.stack, ctx.seed, ctx.template, ctx.n_ctx = stack, seed, template, n_ctx
        ctx.params = params
        ctx.autocast = AutocastState.capture(x.device)  # the recomputation runs under it
        ctx.save_for_backward(y, *ctx_tensors)
        return y

    @staticmethod
    @once_differentiable
    def backward(ctx: Any, grad_y: Tensor) -> tuple[Tensor | None, ...]:
        stack: ReversibleStack = ctx.stack
        y, *ctx_saved = ctx.saved_tensors
        n_ctx, params = ctx.n_ctx, ctx.params
        wants = ctx.needs_input_grad[5:]
        ctx_wants = wants[:n_ctx]
        # context tensors get a fresh leaf so their gradient can be asked for per evaluation
        ctx_leaves = [
            t.detach().requires_grad_() if w else t.detach()
            for t, w in zip(ctx_saved, ctx_wants, strict=True)
        ]
        context = _fill(ctx.template, ctx_leaves)
        wanted_ctx = [ctx_leaves[k] for k, w in enumerate(ctx_wants) if w]
        ctx_targets = [k for k, w in enumerate(ctx_wants) if w]
        n_wanted = len(wanted_ctx)
        plans = stack._plans_for(params)
        ctx_ids = {id(t) for t in ctx_leaves}
        index: dict[int, int] | None = None  # built only if a plan is missing
        ctx_grads, param_grads = _GradSum(n_ctx), _GradSum(len(params))
        masks = stack._masks(ctx.seed)
        G = stack.groups
        ys = stack._split(y.detach())
        gys: list[Tensor] = list(grad_y.chunk(G, dim=-1))
        hook = stack.reconstruction_hook
        grad = torch.autograd.grad

        owned = False  # ys are views of the stack's output (the caller's) until one is inverted
        with torch.enable_grad(), ctx.autocast.restored(), frozen_running_stats(stack):
            for layer in reversed(range(stack.num_layers)):
                fs = stack.functions(layer)
                xs: list[Tensor] = list(ys)
                gy0: Tensor | None = None
                for i in range(G - 1, -1, -1):
                    f = fs[i]
                    inp = (ys[i - 1] if i > 0 else _sum(xs[1:])).detach().requires_grad_()
                    out = f(inp, *context, **masks.kwargs(layer, i, inp))
                    # below the top layer ys are the engine's own tensors, dead once inverted:
                    # invert in place (one group tensor fewer alive during this evaluation)
                    xs[i] = ys[i].sub_(out.detach()) if owned else ys[i] - out.detach()
                    if not out.requires_grad:
                        continue
                    plan = plans.get(id(f))
                    if plan is None:  # once per function and parameter set: which leaves it uses
                        if index is None:
                            index = {id(p): k for k, p in enumerate(params)}
                        plan = _plan(out, index, ctx_ids | {id(inp)}, f, layer, i)
                        plans[id(f)] = plan
                    plan_params = [params[k] for k in plan]
                    grads = grad(out, [inp, *wanted_ctx, *plan_params], gys[i], allow_unused=True)
                    g_inp = grads[0]
                    if i > 0:
                        if g_inp is not None:
                            gys[i - 1] = gys[i - 1] + g_inp
                    else:
                        gy0 = g_inp
                    shared = _shared_storages(grads, gys[i])
                    for k, g in zip(ctx_targets, grads[1 : 1 + n_wanted], strict=True):
                        ctx_grads.add(k, g, g is not None and _storage(g) in shared)
                    for k, g in zip(plan, grads[1 + n_wanted :], strict=True):
                        param_grads.add(k, g, g is not None and _storage(g) in shared)
                if gy0 is not None:
                    gys = [gys[0], *(g + gy0 for g in gys[1:])]
                if hook is not None:
                    hook(layer, torch.cat(xs, dim=-1))
                ys, owned = xs, True

        grad_x = torch.cat(gys, dim=-1) if ctx.needs_input_grad[4] else None
        return (None, None, None, None, grad_x, *ctx_grads.values, *param_grads.values)


def _storage(t: Tensor) -> int:
    return t.untyped_storage().data_ptr()


def _shared_storages(grads: Sequence[Tensor | None], incoming: Tensor) -> set[int]:
    """Storages among one evaluation's gradients that something else also holds: the incoming
    gradient's, and any returned for more than one input (or aliased by a view, ``_base``)."""
    seen: set[int] = set()
    shared = {_storage(incoming)}
    for g in grads:
        if g is None:
            continue
        ptr = _storage(g)
        if ptr in seen or g._base is not None:
            shared.add(ptr)
        seen.add(ptr)
    return shared


def _plan(
    out: Tensor, index: dict[int, int], inputs: set[int], f: nn.Module, layer: int, group: int
) -> list[int]:
    """Indices (into the stack's parameters) of the leaves ``out``'s graph reaches.

    Walks the autograd graph of one evaluation. A leaf that needs a gradient but is neither a
    stack parameter nor an input of the evaluation (a module or tensor the function reaches
    through a closure or an unregistered attribute) would silently get no gradient, because
    only the autograd Function's inputs receive one: that is an error naming the leaf."""
    found: list[int] = []
    # id -> node: holding the node keeps its Python wrapper alive, so its id is not reused by
    # another node's wrapper (wrappers of C++ nodes are made on access and may be freed)
    seen: dict[int, Any] = {}
    todo = [out.grad_fn]
    while todo:
        node = todo.pop()
        if node is None or id(node) in seen:
            continue
        seen[id(node)] = node
        leaf = getattr(node, "variable", None)  # AccumulateGrad: a leaf that needs a gradient
        if isinstance(leaf, Tensor):
            if id(leaf) in index:
                found.append(index[id(leaf)])
            elif id(leaf) not in inputs:
                raise RuntimeError(
                    f"{_leaf_name(leaf, f)} is used by group function {group} of layer {layer} "
                    f"({type(f).__name__}) but is not owned by the ReversibleStack, so it would "
                    "get no gradient. Register it as a submodule or parameter of the function, "
                    "or pass the tensor as a context argument of the stack."
                )
            continue
        todo.extend(next_node for next_node, _ in node.next_functions)
    return sorted(set(found))


def _leaf_name(leaf: Tensor, f: nn.Module) -> str:
    """The leaf's name as reachable from ``f`` (attribute or closure), else its shape."""
    forward = getattr(type(f).forward, "__code__", None)
    cells = getattr(type(f).forward, "__closure__", None) or ()
    places: list[tuple[str, Any]] = list(vars(f).items())
    if forward is not None:
        places += [(n, c.cell_contents) for n, c in zip(forward.co_freevars, cells, strict=False)]
    for name, value in places:
        if value is leaf:
            return f"tensor {name!r}"
        if isinstance(value, nn.Module):
            for pname, p in value.named_parameters():
                if p is leaf:
                    return f"parameter {name}.{pname}"
    return f"a tensor of shape {tuple(leaf.shape)} ({leaf.dtype}) that requires grad"


def _fill(template: tuple, tensors: Sequence[Tensor]) -> tuple:
    it = iter(tensors)
    return tuple(next(it) if t is _TENSOR else t for t in template)
