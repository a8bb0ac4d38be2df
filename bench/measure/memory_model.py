"""Analytic memory model: parameters exactly, peak training memory approximately, no training.

``python -m bench trial ... --dry-run`` prints it, so a user can see that a 1001-layer RevGNN
fits before trying; every record carries it beside the measurement.

**Parameters** are counted, not derived: the model is built on the ``meta`` device (shapes,
no storage). Deep non-tied stacks are ``encoders + head + L identical layers``, so their count
is exactly linear in L: for L > 3 we build at 2 and 3 layers and extrapolate, which keeps a
1001-layer dry run instant (a test checks the extrapolation against a direct build). Weight-tied
stacks are constant from L = 2 on (``tie="after-first"``: the first layer's block plus one
shared block; ``"all"``: one block), so the same extrapolation (slope 0) is exact for them too.

**Peak memory** = host data the process holds (CPU meter only) + the batch on the device +
the larger of the forward + backward peak and the optimiser step's (model state, 16 B/param:
weights, gradients, two Adam moments, plus its temporaries). Gradients are dropped before a
step, so forward + backward holds the weights and moments (12 B/param) and the larger of (all
activations, where the backward starts) and (all gradients, 4 B/param, beside the activations
still alive where it ends): a residual stack frees each layer's block as its backward passes
it (``Architecture.released_bytes``); a reversible stack and an equilibrium solve keep theirs
to the end, so their gradients and activations add up. Counting both at once for ResGNN had
it 21% over the CPU meter on a 200-node graph where parameters outweigh activations (128
channels, 41 layers: 1.51 MiB a layer predicted, 1.26 measured, the gradients' 0.26 the
difference); the trials' meter saw the peak at the backward's start, as
``bench.instruments.benchmark.point`` had noted. The
per-layer constants come from counting what autograd saves in one ``ResPlusBlock`` (PyG's
GENConv with max aggregation, 2-layer MLP of width 2C with LayerNorm, pre-activation
LayerNorm/ReLU/dropout) on an N-node, E-edge batch of width C (float32, 4 B each):

* node level: the block input (saved by LayerNorm), the ReLU output, the aggregation input's
  partner and output (scatter-max saves both the zero-initialised target and the result), the
  MLP input, the MLP's hidden pre-norm and post-ReLU tensors (2C each): 9 N*C floats, plus
  4 N-sized LayerNorm statistics; dropout (p > 0) adds its mask, a float N*C on CPU
  (``input * noise``) and a bool N*C on CUDA (fused ``native_dropout``).
* edge level: the message ReLU output and the message (+eps) that scatter-max saves: 2 E*C
  floats. The expanded scatter index is a view of ``edge_index``: no extra storage.
* with the fused max aggregation (``aggr_impl="fused"``, the default; :mod:`bench.nn.aggr`)
  the scatter's two node-level tensors and both edge-level tensors are replaced by one int64
  N*C argmax: 7 N*C floats + 8 B * N*C, nothing per edge. ``aggr_impl="pyg"`` (and every
  non-max aggregation) keeps the counts above.
* a block whose edge input is wider than its width (reversible groups: C/G wide, edge
  embedding C wide) re-encodes the edge embedding; the re-encoded tensor is not saved.

Per architecture (w = C/G, ``block(w)`` = the counts above at width w):

* ``res`` / ``wt-res``: L * block(C) (tying shares weights, not activations).
* ``ckpt``: L layer inputs (N*C each) + one block(C) rebuilt in the backward.
* ``rev`` / ``wt-rev``: O(1) in depth: the stack output and the edge embedding (saved by the
  reversible function), one group's block(w) rebuilt at a time in the backward, the running
  output gradients (G + 2 tensors N*C) and the edge-embedding gradient (accumulated in place:
  2 E*C while summing); the weights' gradients are part of model state.
* ``deq``: O(1) in the iteration cap: one recorded evaluation of the two-convolution block
  (2 block(C) minus the pre-activation norm, plus norm/residual tensors) and the solver's
  history (Anderson/Broyden keep 2*m past iterates of N*C, m=6, plus a few work tensors), for
  the forward solve and again for the adjoint solve.

**Other convolutions** (``conv`` gat / sage / gcn; counted the same way, with
``torch.autograd.graph.saved_tensors_hooks`` on one block, and checked against the meter in
tests/test_conv.py). Per block of width w, with E' = E + N where the conv adds self-loops:

* ``gat`` (H heads): the block input, the ReLU output and the projected features (3 N*w) plus
  2 N LayerNorm statistics; per edge (self-loops included) the gathered source features (E'*w),
  four E'*H attention tensors (logits, LeakyReLU input, softmax output and its gathered
  partner); with edge features, the edge embedding's projection (E'*w).
* ``sage``: block input, ReLU output (2 N*w) and the aggregation output's partner; ``max``
  also keeps the gathered neighbour features (E*w) and the output (N*w); ``mean`` one count
  per node. 2 N LayerNorm statistics.
* ``gcn``: block input, ReLU output (2 N*w), 2 N statistics.
* once per step, not per block (the model prepares them for every layer:
  ``bench.models.convs.prepare_edges``): GAT's self-looped ``edge_index`` (2 E' int64), the
  selection of the edges that were not loops (E int64) and the self-looped edge embedding (its
  N extra rows, E'*D in all, in place of the encoder's E*D); GCN's self-looped ``edge_index``
  and its normalisation weights (E' * (2 int64 + 1 float)).
* dropout (p > 0) adds its mask and the masked output the linear layer saves (2 N*w floats on
  CPU; a bool mask and the output on CUDA). The largest transient is the message tensor and
  its product (2 E'*w); for SAGE's max, the gathered messages and the scatter's expanded int64
  index (4 E*w), for its mean/add the gathered messages alone (E*w) (measured).

On top, all archs: the encoders' outputs, the head (norm input, ReLU, dropout mask, linear
input, logits, the masked logits/targets the loss saves) and the transient of the step's
largest op (about 3 E*C: gather, add, ReLU of the last message before its inputs are freed;
3 E*w for reversible stacks, whose messages are one group wide).
The optimiser step needs 4 B/param of temporaries on CUDA (``foreach`` Adam) and one
parameter's worth on CPU (per-tensor Adam).

**Mixed precision** (``precision`` bf16/fp16): autocast saves the low-precision copies it
computes with, so every activation float above is 2 B where the computation is fed from
low-precision tensors: everything in ``res``/``wt-res``/``ckpt`` (their residual stream is the
encoder's bf16 output), and the encoders' outputs (node and edge embeddings, and the edge
embedding's gradient sums) in every arch. The reversible stream, DEQ's iterates and solver
history stay float32 by design (``bench.nn``), and so, approximately, do the blocks and head fed
from them (a GENConv fed float32 keeps float32 messages; only its linear layers' outputs are
2 B): those are counted at 4 B. On CPU this matched the meter within 10% (res, rev, ckpt, deq;
16 layers, 32 channels); the autocast cache of cast weights (2 B/param) is not counted.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from bench.config import TrialConfig
from bench.models.archs import BodyInputs, EquilibriumArch
from bench.models.conv_specs import is_factory
from bench.units import format_bytes

FLOAT = 4  # bytes per float32
# bytes per activation float autograd saves, by TrialConfig.precision (autocast saves the
# bf16/fp16 copies it computes with; which tensors stay float32 is listed in the module doc)
ACT_BYTES = {"fp32": 4, "bf16": 2, "fp16": 2}
INDEX = 8  # bytes per int64
STATE_BYTES_PER_PARAM = 16  # weights + gradients + Adam's exp_avg and exp_avg_sq
DEQ_HISTORY = EquilibriumArch.history  # the solver history (Anderson m / Broyden rank)


@dataclass(frozen=True)
class GraphSizes:
    """The sizes the model needs. ``batch_*``: the largest training batch (by edges)."""

    nodes: int
    edges: int
    features: int
    edge_dim: int | None
    outputs: int
    batch_nodes: int
    batch_edges: int
    batch_train_nodes: int
    host_bytes: int = 0  # tensors the trial process holds on the host (dataset + partitions)
    batch_bytes: int = 0  # the largest batch's tensors (what a GPU run copies to the device)


@dataclass(frozen=True)
class MemoryPrediction:
    """A prediction, in bytes; ``total_bytes`` is the predicted peak of a training step."""

    params: int
    model_state_bytes: int
    activation_bytes: int
    optimizer_temp_bytes: int
    data_bytes: int
    total_bytes: int
    sizes: GraphSizes
    #: how a block's activations were had where no formula knows the convolution (a user's
    #: factory): a measured one-step calibration (bench.measure.calibration); None otherwise
    calibrated: str | None = None
    #: activations the backward frees as it makes the gradients (residual stacks), so that
    #: activations and gradients do not all exist at once
    released_bytes: int = 0

    @property
    def fwd_bwd_bytes(self) -> int:
        """Predicted absolute peak of forward + backward: the weights and Adam's moments, and
        the larger of all activations (where the backward starts) and all gradients beside the
        activations still alive (``released_bytes`` are not, where it ends)."""
        return self.data_bytes + _fwd_bwd(
            self.model_state_bytes, self.activation_bytes, self.released_bytes
        )

    @property
    def optimizer_step_bytes(self) -> int:
        """Predicted absolute peak of the optimiser step (its temporaries on top of the state)."""
        return self.data_bytes + self.model_state_bytes + self.optimizer_temp_bytes

    def to_dict(self) -> dict[str, Any]:
        out = dataclasses.asdict(self)
        out["predicted_params"] = self.params
        out["predicted_peak_bytes"] = self.total_bytes
        out["predicted_fwd_bwd_bytes"] = self.fwd_bwd_bytes
        out["predicted_optimizer_step_bytes"] = self.optimizer_step_bytes
        return out

    def describe(self, config: TrialConfig) -> str:
        s = self.sizes
        return "\n".join(
            [
                f"{config.arch}: {config.layers} layers x {config.channels} channels"
                + (
                    f", {config.groups} groups"
                    if config.model.block_width < config.channels
                    else ""
                )  # fmt: skip
                + f" on {config.dataset} ({config.device})",
                f"  graph:        {s.nodes:,} nodes, {s.edges:,} edges; largest training batch "
                f"{s.batch_nodes:,} nodes, {s.batch_edges:,} edges",
                f"  parameters:   {self.params:,}",
                f"  model state:  {format_bytes(self.model_state_bytes)}"
                f" (16 B/param: weights, gradients, Adam moments)",
                f"  activations:  {format_bytes(self.activation_bytes)}",
                f"  optimiser step temporaries: {format_bytes(self.optimizer_temp_bytes)}",
                f"  data:         {format_bytes(self.data_bytes)}"
                + (" (the batch on the device)" if config.device == "cuda" else " (host tensors)"),
                f"  predicted peak of forward+backward: {format_bytes(self.fwd_bwd_bytes)}; "
                f"of the optimiser step: {format_bytes(self.optimizer_step_bytes)}",
                f"  predicted peak of a training step: {format_bytes(self.total_bytes)}",
                *([f"  {self.calibrated}"] if self.calibrated else []),
            ]
        )


# --- sizes ------------------------------------------------------------------------------------
def _tensor_bytes(obj: Any, seen: set[int]) -> int:
    """Bytes of the distinct tensor storages held by a PyG ``Data`` (or a tensor)."""
    import torch

    tensors = [obj] if isinstance(obj, torch.Tensor) else [v for _, v in obj.items()]
    total = 0
    for t in tensors:
        if isinstance(t, torch.Tensor):
            storage = t.untyped_storage()
            if storage._cdata not in seen:
                seen.add(storage._cdata)
                total += storage.nbytes()
    return total


def sizes_for(config: TrialConfig, dataset: Any) -> GraphSizes:
    """Sizes from a loaded ``GraphDataset``, the largest batch taken from the trial's own first
    training partition (the same seed the trial uses, so it is exact for epoch 1)."""
    from bench.data.partition import derived_seed, trial_batches

    data = dataset.data
    train_batches = trial_batches(
        data, config.train_parts, derived_seed(config.seed, 1, 1), config.batching
    )
    eval_batches = trial_batches(
        data, config.eval_parts, derived_seed(config.seed, 0), config.batching, "eval_parts"
    )
    largest = max(train_batches, key=lambda b: (b.edge_index.size(1), b.num_nodes))
    train = set(dataset.split["train"].tolist()) if config.batching == "mini" else None
    batch_train = (
        sum(1 for i in largest.n_id.tolist() if i in train)
        if train is not None
        else int(dataset.split["train"].numel())
    )
    seen: set[int] = set()
    host = _tensor_bytes(data, seen) + sum(_tensor_bytes(t, seen) for t in dataset.split.values())
    for batch in (*train_batches, *eval_batches):
        host += _tensor_bytes(batch, seen)
    return GraphSizes(
        nodes=int(data.num_nodes),
        edges=int(data.edge_index.size(1)),
        features=int(dataset.num_features),
        edge_dim=dataset.edge_dim,
        outputs=int(dataset.num_outputs),
        batch_nodes=int(largest.num_nodes),
        batch_edges=int(largest.edge_index.size(1)),
        batch_train_nodes=batch_train,
        host_bytes=host,
        batch_bytes=_tensor_bytes(largest, set()),
    )


# --- parameters -------------------------------------------------------------------------------
_COUNTS: dict[tuple[str, GraphSizes], int] = {}  # meta-device counts by settings and sizes


def _count_on_meta(config: TrialConfig, sizes: GraphSizes, layers: int) -> int:
    """Parameters of ``config`` built at ``layers`` (remembered: a search over depths, e.g.
    ``python -m bench capacity``, builds each arch and width at 2 and 3 layers once)."""
    import json

    import torch

    from bench.models import build_model

    key = (json.dumps(dataclasses.asdict(config) | {"layers": layers}, sort_keys=True,
                      default=str), sizes)  # fmt: skip
    if key not in _COUNTS:
        model_config = dataclasses.replace(config, layers=layers).model
        with torch.device("meta"):
            model = build_model(model_config, sizes.features, sizes.edge_dim, sizes.outputs)
        # parameters() yields each Parameter once, so tied weights count once
        _COUNTS[key] = sum(p.numel() for p in model.parameters())
    return _COUNTS[key]


def predict_params(config: TrialConfig, sizes: GraphSizes) -> int:
    """Exact parameter count (meta-device build; linear extrapolation in depth, see module doc)."""
    layers = config.layers
    if layers <= 3:
        return _count_on_meta(config, sizes, layers)
    two = _count_on_meta(config, sizes, 2)
    three = _count_on_meta(config, sizes, 3)
    return three + (layers - 3) * (three - two)


def per_layer_params(channels: int, groups: int, has_edges: bool) -> int:
    """Parameters one untied layer adds, from the architecture (not a build): a layer is G
    groups of width w = C/G, each a pre-activation LayerNorm(w) (2w), GENConv's edge re-encoder
    C -> w (Cw + w, only with edge features), and its MLP w -> 2w -> w with a LayerNorm(2w)
    (4w² + 7w): G(4w² + Cw + 10w) = 4C²/G + C² + 10C with edges, 4C²/G + 9C without. Grouping
    divides the MLPs by G; the edge re-encoders keep C² per layer whatever G. Groups = 1 is a
    residual layer. (Max/mean/add aggregation: softmax/power add one learnable scalar each.)"""
    w = channels // groups
    return groups * (4 * w * w + (channels * w + 10 * w if has_edges else 9 * w))


# --- activations ------------------------------------------------------------------------------
def _block_saved(
    n: int, e: int, width: int, dropout: float, cuda: bool, act: int = FLOAT, fused: bool = False
) -> int:
    """Bytes autograd keeps for one ResPlusBlock of ``width`` channels (module doc), with
    ``act`` bytes per saved float (2 under bf16/fp16 autocast). ``fused``: the max aggregation
    of :mod:`bench.nn.aggr`, which keeps one int64 N x C argmax instead of the scatter's two
    node-level and two edge-level tensors."""
    mask = (1 if cuda else act) * n * width if dropout > 0 else 0
    if fused:
        return act * (7 * width + 4) * n + INDEX * n * width + mask
    node = act * (9 * width + 4) * n
    edge = 2 * act * e * width
    return node + mask + edge


def _other_conv_saved(
    config: TrialConfig,
    n: int,
    e: int,
    width: int,
    edge_width: int,
    cuda: bool,
    act: int = FLOAT,
) -> int:
    """Bytes autograd keeps for one GAT / SAGE / GCN block of ``width`` channels (module doc);
    ``edge_width`` is the edge embedding's width (0 without edge features)."""
    conv, p = config.conv, config.dropout
    mask = ((1 if cuda else act) + act) * n * width if p > 0 else 0
    stats = 2 * act * n
    if conv == "gat":
        heads = config.model.heads or 1
        e_loop = e + n  # the self-looped graph itself is the batch's (_prepared_bytes)
        edge = act * e_loop * (width + 4 * heads)
        if edge_width:
            edge += act * e_loop * width
        return act * 3 * n * width + stats + edge + mask
    if conv == "sage":
        node = act * 2 * n * width + stats
        if config.aggr == "max":
            return node + act * (e * width + n * width) + mask
        return node + (act * n if config.aggr == "mean" else 0) + mask
    if conv == "gcn":  # the normalised weights are the batch's (_prepared_bytes)
        return act * 2 * n * width + stats + mask
    raise ValueError(f"unknown conv {conv!r}")  # pragma: no cover - config validation


def _prepared_bytes(config: TrialConfig, n: int, e: int, c: int, act: int, edges: bool) -> int:
    """What the model computes once per batch for every layer (``prepare_edges``): GAT's
    self-looped ``edge_index`` (2 E' int64), the selection that dropped existing loops (E
    int64) and, with edge features, the self-looped embedding's N extra rows (its E rows
    replace the encoder's output); GCN's self-looped ``edge_index`` and normalised weights."""
    e_loop = e + n
    if config.conv == "gat":
        return INDEX * (2 * e_loop + e) + (act * n * c if edges else 0)
    if config.conv == "gcn":
        return e_loop * (FLOAT + 2 * INDEX)
    return 0


def _conv_transient(config: TrialConfig, n: int, e: int, width: int, act: int) -> int:
    """The step's largest op: GENConv's gather/add/ReLU of the last message (3 E*w); the
    other convs' message and its product (2 E'*w, self-loops included for GAT/GCN)."""
    if config.conv == "gen":
        return 3 * act * e * width
    if config.conv == "sage":  # max: + the scatter's expanded int64 index; mean/add: gather only
        return (4 if config.aggr == "max" else 1) * act * e * width
    e_loop = e + n if config.conv in ("gat", "gcn") else e
    return 2 * act * e_loop * width


def activation_bytes(config: TrialConfig, sizes: GraphSizes) -> int:
    """Bytes of activations alive at the peak of a training step (see the module doc): the
    encoders, the head and the body, whose formula is the architecture's
    (:meth:`bench.models.archs.Architecture.body_bytes`)."""
    return _activations(config, sizes)[0]


def _activations(config: TrialConfig, sizes: GraphSizes) -> tuple[int, int]:
    """(:func:`activation_bytes`, the part of the body the backward frees as it makes the
    gradients: :meth:`~bench.models.archs.Architecture.released_bytes`)."""
    n, e, c = sizes.batch_nodes, sizes.batch_edges, config.channels
    cuda = config.device == "cuda"
    p = config.dropout
    arch = config.architecture
    # bytes per saved float: ``act`` for what the encoders produce under autocast (2 B for
    # bf16/fp16); ``body_act`` for what the body and the head compute from their state: the same,
    # except where an architecture keeps its state in float32 at any precision
    act = ACT_BYTES[config.precision]
    body_act = FLOAT if arch.float32_state else act
    has_edges = bool(sizes.edge_dim)
    edge_emb = act * e * c if has_edges else 0
    mask = (1 if cuda else body_act) * n * c if p > 0 else 0
    # head: norm input, ReLU output, dropout mask + output (p > 0), logits, masked logits/targets
    head = (
        body_act * n * c * (2 + (1 if p > 0 else 0))
        + mask
        + body_act * sizes.outputs * (n + 2 * sizes.batch_train_nodes)
    )
    encoders = act * n * c + edge_emb + _prepared_bytes(config, n, e, c, act, has_edges)
    factory = _factory_cost(config, sizes)

    def block(width: int, act_bytes: int) -> int:  # one block of ``width`` channels, by conv
        if factory is not None:
            return factory(width, act_bytes)[0]
        if config.conv == "gen":
            return _block_saved(n, e, width, p, cuda, act_bytes, config.model.aggr_impl == "fused")
        return _other_conv_saved(config, n, e, width, c if has_edges else 0, cuda, act_bytes)

    def transient(width: int, act_bytes: int) -> int:
        if factory is not None:
            return factory(width, act_bytes)[1]
        return _conv_transient(config, n, e, width, act_bytes)

    inputs = BodyInputs(
        nodes=n, channels=c, layers=config.layers, groups=config.groups, act=body_act,
        edge_emb=edge_emb, loop_rows=act * n * c if has_edges and config.conv == "gat" else 0,
        mask=mask, deq_max_iter=config.model.deq_max_iter, block=block, transient=transient,
    )  # fmt: skip
    body, largest_op = arch.body_bytes(inputs)
    return int(encoders + body + head + largest_op), int(arch.released_bytes(inputs))


def _factory_cost(config: TrialConfig, sizes: GraphSizes) -> Any:
    """For a user's convolution, ``cost(width, act) -> (block bytes, transient bytes)`` from a
    measured one-block calibration (:mod:`bench.measure.calibration`); None otherwise."""
    if not is_factory(config.conv):
        return None
    from bench.measure.calibration import calibrate_block

    def cost(width: int, act_bytes: int) -> tuple[int, int]:
        edge_width = config.channels if sizes.edge_dim else None
        measured = calibrate_block(config.model, width, edge_width, config.device)
        scale = act_bytes / FLOAT
        nodes, edges = sizes.batch_nodes, sizes.batch_edges
        return (int(scale * measured.saved_bytes(nodes, edges)),
                int(scale * measured.edge_bytes(edges)))  # fmt: skip

    return cost


def predict(config: TrialConfig, sizes: GraphSizes) -> MemoryPrediction:
    """Parameters and the predicted peak bytes of one training step of ``config``."""
    params = predict_params(config, sizes)
    state = STATE_BYTES_PER_PARAM * params
    acts, released = _activations(config, sizes)
    cuda = config.device == "cuda"
    # foreach Adam (CUDA) builds a params-sized temporary; per-tensor Adam (CPU) one tensor's
    largest_layer = max(1, params // max(1, config.layers))
    optimizer_temp = FLOAT * params if cuda else FLOAT * largest_layer
    data = sizes.batch_bytes if cuda else sizes.host_bytes
    total = data + max(_fwd_bwd(state, acts, released), state + optimizer_temp)
    calibrated = None
    if is_factory(config.conv):
        from bench.measure.calibration import calibration_note

        calibrated = calibration_note(config.conv, config.device)
    return MemoryPrediction(
        params=params,
        model_state_bytes=state,
        activation_bytes=acts,
        optimizer_temp_bytes=optimizer_temp,
        data_bytes=data,
        total_bytes=int(total),
        sizes=sizes,
        calibrated=calibrated,
        released_bytes=released,
    )


def _fwd_bwd(state: int, acts: int, released: int) -> int:
    """The peak of forward + backward above the data. The gradients (a quarter of the state)
    are dropped before a step and made by its backward: where the backward frees the body as
    it goes (``released``), the peak is where it starts (all activations, no gradients) or
    where it ends (all gradients, the activations not released); elsewhere both exist at once
    (a reversible stack's peak comes at the end of its backward)."""
    grads = state // 4
    both = max(acts, grads + acts - released) if released else grads + acts
    return state - grads + both


def fits(prediction: MemoryPrediction, budget_bytes: int) -> bool:
    """Whether the predicted peak is within ``budget_bytes`` (a tuner's cheap pre-filter)."""
    return prediction.total_bytes <= budget_bytes
