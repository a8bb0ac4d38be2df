"""``synthetic-proteins``: a seeded, proteins-shaped graph, from 3,000 nodes to ogbn-proteins' size.

Shape (as ogbn-proteins): undirected graph, 8-dim edge features in (0, 1), nodes in species
(dense within a species, a few edges across), node inputs = aggregated incident edge features
+ one-hot species (``features.proteins_node_features``), many binary tasks, ROC-AUC, species
split. Generation, all from one seed:

1. Nodes are split into ``num_species`` blocks, each laid out on a ring. Node ``i`` links to
   each of the ``avg_degree`` nodes after it on its ring with probability 1/2 (so each node sees
   about ``avg_degree / 2`` of the ``2 * avg_degree`` nodes within ``+-avg_degree`` positions:
   local structure, so hop distance means something). With probability ``shortcut_prob`` a link
   goes to a uniformly random node instead (small-world shortcuts, across species too). Links
   are canonical pairs drawn without duplicates by construction (a shortcut that lands on a
   ring neighbour, or repeats another, is dropped), so the mean degree is ``avg_degree`` (capped
   by the species size: a node has at most ``size - 1`` ring neighbours).
2. Each node has a hidden latent ``z`` (Gaussian); the model never sees it. Edge features are
   a noisy nonlinear, symmetric function of both endpoints' latents plus a species offset
   (``sigmoid((z_u + z_v) A + (z_u * z_v) B + noise)``), so a node's latent is only observable
   through the edge features around it.
3. Hidden multi-hop signals: ``h_0 = z``, ``h_k = tanh(A_w h_{k-1} M_k)`` for k <= ``hops``,
   where ``A_w`` averages neighbours with weights that depend on the edge features.
4. Task t scores a random mix of ``h_0..h_hops`` (different tasks lean on different depths)
   plus a small species offset; it is thresholded at a task-specific positive rate
   (10-50%) and each label is flipped with probability ``label_noise``.
5. Node ids are shuffled (they carry no trace of species or ring position); the edge list holds
   both directions of every edge, sorted by source node (CSR order, as PyG's ``coalesce``
   leaves ogbn-proteins, though not sorted by target within a source).

**Known-depth task** (option ``depth_task`` = k > 0; 0, the default, leaves everything above
as it was). Steps 3-4 are replaced: each node carries one visible 0/1 *marker* per task in its
inputs (``x = [edge features summed | one-hot species | markers]``; task t's markers are set
independently with a probability drawn in [0.01, 0.04)), and task t's label is 1 exactly where
some *other* node within k hops (shortest-path distance 1..k, computed exactly by breadth-first
search) carries task t's marker, before ``label_noise`` flips. Ground truth: the receptive field
needed is exactly k layers; nodes farther than k hops carry no information about a label; a
model with L < k layers sees the markers of the inner ball only (the share of the relevant
markers it misses is about ``1 - |ball_L| / |ball_k|``, which grows with the branching of the
graph: raise ``shortcut_prob`` and lower ``avg_degree`` for a tree-like, fast-growing ball).
Edge features and species stay as above and carry nothing about these labels. Labels need an
all-sources search, O(N · E): the option is refused above 50,000 nodes. Measured (seed 0; 600
nodes, ``avg_degree`` 4, ``shortcut_prob`` 0.2, k = 2, 2 tasks, no label noise; ``res``, 32
channels, full batch, lr 0.03, 100 epochs): test ROC-AUC 0.731 with 1 layer, 0.846 with 2
(``tests/test_known_depth.py``). With 16 tasks at 32 channels the same models learned little
in 100-300 epochs (0.57-0.62): the tasks compete for channels; keep ``num_tasks`` small.
The needed depth is a fact of the labels, not of what a model learns: at k = 3 (600 nodes, 2
tasks, 32 channels, lr 0.03, full batch, seeds 0 and 1) ResGNN scored 0.785 / 0.800 with 3
layers against 0.763 / 0.800 with 2, having fitted its 360 training nodes (train loss 0.05)
through the distractors: the 16 noisy inputs (summed edge features, species) and the edge
embedding added to every message. With the markers as the only input and no edge features,
3 layers scored 0.998 / 1.000 (2 layers: 0.779 / 0.730); lr 0.003 (0.813 / 0.851), no
normalisation (0.739 / 0.778) or 128 channels (0.760 / 0.804) did not help. For a task
whose needed depth a model can be held to, use ``synthetic-depth`` (``bench.data.depth_task``).

So labels need multi-hop information propagated along edge-feature-dependent weights: depth
helps, and noise keeps ROC-AUC clearly below 1. Split ``"random"`` (default): 60/20/20, seeded;
``"species"`` (like proteins): the last species is test, the one before it valid, the rest
train. Random is the default because with a species split the valid/test sets are one small
species each (noisy scores) and the unseen species' one-hot inputs are untrained, which
masks the depth effect the suite exists to measure.

**Scale.** Every step is vectorised in fixed-size chunks of edges (memory stays near the
final graph's size), the two directions are laid out with one stable ``int32`` sort, and the
hops are sparse CSR products. ``synthetic-proteins-paper`` (132,534 nodes, 79M directed edges,
112 tasks, species split) is generated in about 25 s on one CPU thread and cached on disk
(``bench.data.cache``; graphs of ``CACHE_MIN_EDGES`` expected edges or more), so a second load
memory-maps the file. Unlike ogbn-proteins, degrees are nearly uniform (binomial around the
mean, ogbn-proteins' are skewed) and species have equal sizes; a random partition's batch sizes
(nodes and edges per part) depend only on the totals, which match.

Measured (CPU, the default graph: 3,000 nodes, 71,994 directed edges, 32 tasks):
``python -m bench trial --arch res --layers L --channels 64 --epochs 20 --lr 0.005
--train-parts 10`` gives test ROC-AUC 0.714 with 1 layer and 0.715 with 8 layers; the same
command on generator version 1 (ring links drawn with replacement, duplicates merged) gave
0.712 and 0.714, so the model of the data is unchanged at this size.
"""

from __future__ import annotations

import time
import warnings
from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor
from torch_geometric.data import Data

from bench.data import cache
from bench.data.base import GraphDataset, build_dataset, random_split
from bench.data.dataset_spec import CACHE_MIN_EDGES, DatasetSpec
from bench.data.features import proteins_node_features

EDGE_DIM = 8
LATENT_DIM = 8
SPECIES_SHIFT = 0.5  # species-specific offset of edge-feature logits (shift across the split)
DEPTH_TILT = 4.0  # tasks lean towards deeper hops by this much (softmax logits over hop index)
GENERATOR_VERSION = 3  # in the cache key: bump whenever generate() changes its output
CHUNK = 1 << 22  # edges per vectorised step; fixed, because the random stream depends on it
# known-depth task: marker probabilities per task, and the markers' own random stream
MARKER_P_LOW, MARKER_P_HIGH = 0.01, 0.04
MARKER_SEED_OFFSET = 104_729


def _ring_links(
    species: Tensor, avg_degree: int, shortcut_prob: float, gen: torch.Generator
) -> tuple[Tensor, Tensor]:
    """Canonical undirected edges ``(u, v)``: unique, no self loops, by construction.

    Node ``i`` of a species block links to its ring successors ``i + 1 .. i + window`` (wrapping
    within the block) each with probability ``p``; ``window < size / 2`` makes every ring pair
    appear once. Rewired links become shortcuts, kept only if they are not ring-window pairs
    and not repeated (deduplicated on the integer key ``lo * n + hi``, a small sort).
    """
    n = species.numel()
    sizes = torch.bincount(species)
    ends = torch.cumsum(sizes, 0)
    window = max(1, min(avg_degree, (int(sizes.min()) - 1) // 2))
    p = min(1.0, avg_degree / (2 * window))
    rows = max(1, CHUNK // window)
    ring_u, ring_v, cut_u, cut_v = [], [], [], []
    for r0 in range(0, n, rows):
        r1 = min(n, r0 + rows)
        r, j = (torch.rand(r1 - r0, window, generator=gen) < p).nonzero(as_tuple=True)
        r += r0
        v = r + j + 1
        s = species[r]
        v = torch.where(v >= ends[s], v - sizes[s], v)
        rewire = torch.rand(r.numel(), generator=gen) < shortcut_prob
        cut_u.append(r[rewire])
        cut_v.append(torch.randint(0, n, (int(rewire.sum()),), generator=gen))
        ring_u.append(r[~rewire])
        ring_v.append(v[~rewire])
    a, b = torch.cat(cut_u), torch.cat(cut_v)
    lo, hi = torch.minimum(a, b), torch.maximum(a, b)
    gap = hi - lo
    ring_gap = torch.minimum(gap, sizes[species[lo]] - gap)
    near = (species[lo] == species[hi]) & (ring_gap <= window)  # includes lo == hi
    keys = torch.unique(lo[~near] * n + hi[~near])
    return torch.cat([*ring_u, keys // n]), torch.cat([*ring_v, keys % n])


def _both_directions(
    links: list[Tensor], half_attr: Tensor, half_w: Tensor
) -> tuple[Tensor, Tensor, Tensor]:
    """Both directions of each edge, sorted by source: (edge_index, edge_attr, weight).

    One stable sort of the ``int32`` sources (no sort over ``[2, E]`` int64 pairs), then
    gathers; the features of edge ``k`` and of its reverse are the same row of ``half_attr``.
    ``links`` (``[u, v]``) is emptied, so its tensors are freed as soon as they are used.
    """
    v, u = links.pop(), links.pop()
    h = u.numel()
    ends = torch.cat([u, v])  # sources: the links, then their reverses
    sorted_src, order = torch.sort(ends.to(torch.int32), stable=True)
    edge_index = torch.empty(2, 2 * h, dtype=torch.long)
    edge_index[0] = sorted_src
    del sorted_src
    ends[:h], ends[h:] = v, u  # now the targets
    del u, v
    torch.index_select(ends, 0, order, out=edge_index[1])
    del ends
    order.remainder_(max(h, 1))  # position in the half list, for either direction
    edge_attr = torch.empty(2 * h, half_attr.shape[1])
    for s in range(0, 2 * h, CHUNK):
        torch.index_select(half_attr, 0, order[s : s + CHUNK], out=edge_attr[s : s + CHUNK])
    return edge_index, edge_attr, torch.index_select(half_w, 0, order)


def _neighbour_mean(edge_index: Tensor, weight: Tensor, n: int) -> Any:
    """``h -> A_w h``: the weighted neighbour average as a CSR product (rows = sources)."""
    crow = torch.zeros(n + 1, dtype=torch.int32)
    crow[1:] = torch.cumsum(torch.bincount(edge_index[0], minlength=n), 0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # "sparse CSR support is in beta"
        adj = torch.sparse_csr_tensor(
            crow, edge_index[1].to(torch.int32), weight, (n, n), check_invariants=False
        )
    norm = (adj @ torch.ones(n, 1)).clamp_min(1e-12)
    return lambda h: (adj @ h) / norm


class _Laps:
    """Seconds each step of :func:`generate` took, into ``stages`` (when given)."""

    def __init__(self, stages: dict[str, float] | None) -> None:
        self.times = stages if stages is not None else {}
        self.since = time.perf_counter()  # when the current lap began

    def __call__(self, name: str) -> None:
        now = time.perf_counter()
        self.times[name] = round(now - self.since, 3)
        self.since = now


def generate(
    num_nodes: int,
    avg_degree: int,
    num_tasks: int,
    num_species: int,
    hops: int,
    label_noise: float,
    shortcut_prob: float,
    seed: int,
    stages: dict[str, float] | None = None,
    depth_task: int = 0,
) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """(edge_index [2, E] both directions, edge_attr [E, 8], species [N], y float [N, T]).

    ``stages``, if given, receives the seconds each step took. ``depth_task`` = k > 0 replaces
    steps 3-4 by the known-depth labels (module docstring). Every step draws from one
    generator, in this order: a change of order is a change of output (``GENERATOR_VERSION``).
    """
    lap = _Laps(stages)
    gen = torch.Generator().manual_seed(seed)
    n = num_nodes
    species = torch.arange(n) * num_species // n  # ring order: contiguous blocks
    u, v = _ring_links(species, avg_degree, shortcut_prob, gen)
    lap("links")
    z = torch.randn(n, LATENT_DIM, generator=gen)
    half_attr, half_w = _edge_features(z, species, u, v, num_species, gen)
    lap("edge_features")

    # Shuffle node ids so they carry no trace of species or ring position.
    perm = torch.randperm(n, generator=gen)  # new id of ring node i is perm[i]
    inv = torch.empty_like(perm)
    inv[perm] = torch.arange(n)
    links = [perm[u], perm[v]]
    del u, v
    edge_index, edge_attr, weight = _both_directions(links, half_attr, half_w)
    del half_attr, half_w
    species, z = species[inv], z[inv]
    lap("both_directions")
    if depth_task:
        y = _depth_labels(edge_index, n, depth_task, num_tasks, label_noise, seed, gen)
        lap("labels")
        return edge_index, edge_attr, species, y

    neighbour_mean = _neighbour_mean(edge_index, weight, n)
    del weight
    signals = _hidden_signals(neighbour_mean, z, hops, gen)
    del neighbour_mean
    lap("signals")
    y = _multi_hop_labels(signals, species, num_species, num_tasks, label_noise, gen)
    lap("labels")
    return edge_index, edge_attr, species, y


def _edge_features(
    z: Tensor, species: Tensor, u: Tensor, v: Tensor, num_species: int, gen: torch.Generator
) -> tuple[Tensor, Tensor]:
    """Step 2, per link ``(u[k], v[k])``: its features, symmetric in the endpoints, noisy, in
    (0, 1) like proteins' scores, and the weight ``A_w`` gives it (from those features)."""
    d = LATENT_DIM
    species_offset = SPECIES_SHIFT * torch.randn(num_species, EDGE_DIM, generator=gen)
    a = torch.randn(d, EDGE_DIM, generator=gen) / d**0.5
    b = torch.randn(d, EDGE_DIM, generator=gen) / d**0.5
    za = z @ a + 0.5 * species_offset[species]
    direction = 2.0 * torch.randn(EDGE_DIM, generator=gen)  # how edge features weight A_w
    offset = 0.5 * float(direction.sum())  # weight = exp((attr - 0.5) @ direction)
    h = u.numel()
    half_attr = torch.empty(h, EDGE_DIM)
    half_w = torch.empty(h)
    for s in range(0, h, CHUNK):
        uu, vv = u[s : s + CHUNK], v[s : s + CHUNK]
        z_u, z_v = z.index_select(0, uu), z.index_select(0, vv)
        logit = za.index_select(0, uu).add_(za.index_select(0, vv)).addmm_(z_u.mul_(z_v), b)
        logit.add_(torch.randn(uu.numel(), EDGE_DIM, generator=gen), alpha=0.5)
        attr = torch.sigmoid(logit, out=half_attr[s : s + CHUNK])
        torch.exp(torch.mv(attr, direction).sub_(offset), out=half_w[s : s + CHUNK])
    return half_attr, half_w


def _hidden_signals(
    neighbour_mean: Callable[[Tensor], Tensor], z: Tensor, hops: int, gen: torch.Generator
) -> list[Tensor]:
    """Step 3: ``h_0 = z`` and ``h_k = tanh(A_w h_{k-1} M_k)``, standardised, for k <= hops
    (``M_k`` a random rotation): signal k depends on the k-hop neighbourhood."""
    d = LATENT_DIM
    signals = [z]
    hidden = z
    for _ in range(hops):
        q, _ = torch.linalg.qr(torch.randn(d, d, generator=gen))
        hidden = torch.tanh(1.5 * neighbour_mean(hidden) @ q)
        hidden = (hidden - hidden.mean(0)) / hidden.std(0).clamp_min(1e-6)
        signals.append(hidden)
    return signals


def _multi_hop_labels(
    signals: list[Tensor],
    species: Tensor,
    num_species: int,
    num_tasks: int,
    label_noise: float,
    gen: torch.Generator,
) -> Tensor:
    """Step 4: each task scores its own mix of the signals (leaning towards deeper hops) plus
    a species offset, thresholded at a task-specific positive rate, then noise flips."""
    d, hops, n = LATENT_DIM, len(signals) - 1, species.numel()
    stacked = torch.stack(signals)  # [K+1, N, d]
    proj = torch.randn(hops + 1, d, num_tasks, generator=gen) / d**0.5
    tilt = DEPTH_TILT * torch.arange(hops + 1) / max(hops, 1)
    mix = torch.softmax(2.0 * torch.randn(num_tasks, hops + 1, generator=gen) + tilt, dim=1)
    mixed = proj * mix.t()[:, None, :]  # [K+1, d, T]: task t's projection of hop k, weighted
    score = torch.einsum("knd,kdt->nt", stacked, mixed)
    score = (score - score.mean(0)) / score.std(0).clamp_min(1e-6)
    score = score + 0.3 * torch.randn(num_species, num_tasks, generator=gen)[species]
    positive_rate = 0.1 + 0.4 * torch.rand(num_tasks, generator=gen)
    rank = ((1.0 - positive_rate) * (n - 1)).long()
    threshold = score.sort(dim=0).values[rank, torch.arange(num_tasks)]
    y = (score > threshold).float()
    flip = torch.rand(y.shape, generator=gen) < label_noise
    return torch.where(flip, 1.0 - y, y)


def depth_markers(num_nodes: int, num_tasks: int, seed: int) -> Tensor:
    """The known-depth task's visible node inputs: one 0/1 marker column per task, task t's
    markers set independently with probability ``p_t`` in [MARKER_P_LOW, MARKER_P_HIGH) (its
    own random stream, so the loader rebuilds it from the seed without storing it)."""
    gen = torch.Generator().manual_seed(seed + MARKER_SEED_OFFSET)
    p = MARKER_P_LOW + (MARKER_P_HIGH - MARKER_P_LOW) * torch.rand(num_tasks, generator=gen)
    return (torch.rand(num_nodes, num_tasks, generator=gen) < p).float()


def ball_sums(edge_index: Tensor, num_nodes: int, k: int, values: Tensor) -> Tensor:
    """[N, D]: for each node v, the sum of ``values`` over the other nodes at shortest-path
    distance 1..``k`` from v. Exact, by breadth-first search (scipy's ``csgraph``) from blocks of
    sources: O(N · E) time, O(block · N) memory."""
    import numpy as np
    from scipy.sparse import csr_matrix
    from scipy.sparse.csgraph import shortest_path

    src, dst = edge_index.numpy()
    adj = csr_matrix((np.ones(src.size, dtype=np.float32), (src, dst)), shape=(num_nodes,) * 2)
    vals = values.double().numpy()
    out = np.zeros((num_nodes, vals.shape[1]))
    block = max(1, min(num_nodes, (1 << 24) // max(num_nodes, 1)))
    for start in range(0, num_nodes, block):
        rows = np.arange(start, min(num_nodes, start + block))
        dist = shortest_path(adj, directed=True, unweighted=True, indices=rows)
        out[rows] = ((dist >= 1) & (dist <= k)) @ vals
    return torch.from_numpy(out).float()


def _depth_labels(
    edge_index: Tensor, n: int, k: int, num_tasks: int, label_noise: float, seed: int,
    gen: torch.Generator,
) -> Tensor:  # fmt: skip
    """Known-depth labels: task t is 1 where some other node within ``k`` hops carries task t's
    marker, then flipped with probability ``label_noise``."""
    far = ball_sums(edge_index, n, k, depth_markers(n, num_tasks, seed))
    y = (far > 0).float()
    flip = torch.rand(y.shape, generator=gen) < label_noise
    return torch.where(flip, 1.0 - y, y)


def generate_cached(
    options: dict[str, Any], info: dict[str, Any] | None = None
) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """``generate(**options)``, read from / written to the on-disk cache for large graphs.

    ``info``, if given, receives where the graph came from and how long that took.
    """
    info = info if info is not None else {}
    start = time.perf_counter()
    use_cache = options["num_nodes"] * options["avg_degree"] >= CACHE_MIN_EDGES
    identity = {**options, "generator_version": GENERATOR_VERSION}
    if not use_cache:
        info["cache"] = f"off (below {CACHE_MIN_EDGES:,} expected edges)"
        stages: dict[str, float] = {}
        arrays = generate(**options, stages=stages)
        info["generate_s"] = stages
        info["load_s"] = round(time.perf_counter() - start, 3)
        return arrays
    path = cache.path_for("synthetic-proteins", identity)
    with cache.locked(path):  # another process making the same graph: wait, then read it
        payload = cache.read(path, identity)
        if payload is not None:
            info["cache"] = f"read {path}"
            info["load_s"] = round(time.perf_counter() - start, 3)
            return payload["edge_index"], payload["edge_attr"], payload["species"], payload["y"]
        stages = {}
        edge_index, edge_attr, species, y = generate(**options, stages=stages)
        info["generate_s"] = stages
        names = ("edge_index", "edge_attr", "species", "y")
        arrays_by_name = dict(zip(names, (edge_index, edge_attr, species, y), strict=True))
        saved = time.perf_counter()
        written = cache.write(path, {**arrays_by_name, "options": identity})
        info["cache"] = f"wrote {path}" if written else "not written"
        stages["cache_write"] = round(time.perf_counter() - saved, 3)
    info["load_s"] = round(time.perf_counter() - start, 3)
    return edge_index, edge_attr, species, y


def load_synthetic(
    spec: DatasetSpec,
    root: str | None,
    *,
    num_nodes: int,
    avg_degree: int,
    num_tasks: int,
    num_species: int,
    hops: int,
    label_noise: float,
    shortcut_prob: float,
    node_aggr: str,
    split: str,
    seed: int,
    depth_task: int = 0,
) -> GraphDataset:
    """Build ``synthetic-proteins`` (``root`` is ignored; large graphs are cached in the work dir).
    The options passed their rules (:func:`bench.data.options.ring`) in the registry."""
    options = {
        "num_nodes": num_nodes,
        "avg_degree": avg_degree,
        "num_tasks": num_tasks,
        "num_species": num_species,
        "hops": hops,
        "label_noise": float(label_noise),  # floats, as the cache keys of stored graphs hold them
        "shortcut_prob": float(shortcut_prob),
        "seed": seed,
    }
    if depth_task:  # only when set: the cache keys of ordinary graphs stay as they were
        options["depth_task"] = depth_task
    provenance: dict[str, Any] = {}
    edge_index, edge_attr, species, y = generate_cached(options, provenance)
    x = proteins_node_features(edge_index, edge_attr, species, num_nodes, node_aggr)
    if depth_task:
        x = torch.cat([x, depth_markers(num_nodes, num_tasks, seed)], dim=1)
    if split == "species":
        ids = torch.arange(num_nodes)
        parts = {
            "train": ids[species < num_species - 2],
            "valid": ids[species == num_species - 2],
            "test": ids[species == num_species - 1],
        }
    else:
        parts = random_split(num_nodes, seed)
    data = Data(x=x, edge_index=edge_index, edge_attr=edge_attr, y=y, num_nodes=num_nodes)
    data.species = species
    return build_dataset(
        spec, data, parts, "generated", species=num_species,
        positive_rate=round(float(y.mean()), 4),
        **({"depth_task": f"labels from exactly {depth_task} hops"} if depth_task else {}),
        **provenance,
    )  # fmt: skip
