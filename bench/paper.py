"""The paper's reference numbers as data, each with the hardware it was measured on.

Li et al., *Training Graph Neural Networks with 1000 Layers*, ICML 2021. Kept apart from the
report code so a reader can check every number against its source in one place, and so the
report can put the paper's values beside ours without retyping them. Values marked
``transcribed=True`` come from third-party transcriptions of the paper's tables (their parameter
counts agree with counts computed from the authors' code). The weight-tied points' counts are
those of an untied first layer plus one block shared by every later layer (``tie =
"after-first"``): counted that way, our models come within 0.25% of every one of them (one
block for all layers gives about 0.6 of them); the authors never released that code.
"""

from __future__ import annotations

from dataclasses import dataclass

from bench.models import archs

GIB = 1024**3
GB = 1e9

V100 = "NVIDIA Tesla V100 32GB"
PAPER = "Li et al., ICML 2021 (arXiv 2106.07476)"


@dataclass(frozen=True)
class PaperPoint:
    """One model the paper reports: configuration, cost and score, and where it was measured."""

    label: str
    dataset: str
    arch: str  # our arch name: res, rev, wt-res, wt-rev, deq
    layers: int
    channels: int
    groups: int | None
    params: int | None  # None where the paper gives none
    peak_memory_gb: float | None  # GB as printed in the paper; None = not given / out of memory
    test_score: float | None  # percent (ROC-AUC on proteins)
    test_std: float | None
    metric: str
    hardware: str
    source: str
    transcribed: bool = False
    oom: bool = False
    tie: str | None = None  # weight-tied points: the tying their parameter count fits
    conv: str = "gen"  # the block's convolution (bench.config.CONVS): GENConv on proteins
    heads: int | None = None  # GAT points: attention heads
    #: the score of one evaluation view (5 parts), where ``test_score`` is the paper's 10-view
    #: inference: the number comparable with ours (every trial here evaluates one view)
    single_view_score: float | None = None
    single_view_std: float | None = None


#: the ogbn-proteins input as our models see it (8 summed edge features + 8 one-hot species),
#: what a paper point's parameter count is computed with
PROTEINS_INPUT = {"features": 16, "edge_dim": 8, "outputs": 112}


def _fig1(
    label: str,
    channels: int,
    params: float | None,
    gb: float | None,
    score: float | None,
    oom: bool = False,
) -> PaperPoint:
    """A 112-layer ogbn-proteins point of the paper's figure 1 (transcribed table); its arch
    is the one its label's model name stands for (``WT-RevGNN-64``: WT-RevGNN)."""
    arch = archs.by_display(label.rsplit("-", 1)[0])
    return PaperPoint(
        label=label, dataset="ogbn-proteins", arch=arch.name, layers=112, channels=channels,
        groups=2 if "groups" in arch.accepts() else None,
        params=None if params is None else int(round(params)), peak_memory_gb=gb,
        test_score=score, test_std=None, metric="rocauc", hardware=V100,
        source=f"{PAPER}, figure 1 / table", transcribed=True, oom=oom,
        tie="after-first" if arch.tied else None,  # the paper's tying
    )  # fmt: skip


FIGURE1: tuple[PaperPoint, ...] = (
    _fig1("ResGNN-64", 64, 2.37e6, 27.1, 85.94),
    _fig1("ResGNN-224", 224, None, None, None, oom=True),
    _fig1("RevGNN-64", 64, 1.46e6, 2.09, 85.48),
    _fig1("RevGNN-80", 80, 2.25e6, 2.56, 85.97),
    _fig1("RevGNN-224", 224, 17.1e6, 7.30, 87.02),
    _fig1("WT-ResGNN-64", 64, 51.2e3, 27.4, 83.30),
    _fig1("WT-RevGNN-64", 64, 35.0e3, 1.60, 82.89),
    _fig1("WT-RevGNN-80", 80, 51.4e3, 2.08, 83.46),
    _fig1("WT-RevGNN-224", 224, 337e3, 5.55, 85.28),
    _fig1("DEQ-GNN-64", 64, 51.3e3, 2.22, 83.17),
    _fig1("DEQ-GNN-224", 224, 537e3, 7.60, 85.84),
)

HEADLINE: tuple[PaperPoint, ...] = (
    PaperPoint("RevGNN-Deep", "ogbn-proteins", "rev", 1001, 80, 2, 20_031_384, 2.86, 87.74, 0.13,
               "rocauc", V100, f"{PAPER}, table (10 views, 3 parts; single view, 5 parts: 87.06 "
               "± 0.20); memory transcribed", transcribed=True, single_view_score=87.06,
               single_view_std=0.20),
    PaperPoint("RevGNN-Wide", "ogbn-proteins", "rev", 448, 224, 2, 68_471_608, 7.91, 88.24, 0.15,
               "rocauc", V100, f"{PAPER}, table (10 views, 3 parts; single view, 5 parts: 87.62 "
               "± 0.18); memory transcribed", transcribed=True, single_view_score=87.62,
               single_view_std=0.18),
)  # fmt: skip

ALL_POINTS: tuple[PaperPoint, ...] = FIGURE1 + HEADLINE

# ogbn-arxiv and ogbn-products: only numbers a primary source gives. Not in ALL_POINTS (whose
# parameter counts are compared with ours on the proteins input). Left out, for want of a
# primary source (third-party transcriptions of the paper's table only): RevGAT-Wide (74.05 ±
# 0.11, 3.88M params, 8.49 GB), RevGCN-Deep (73.01, 28 layers x 128), RevGAT's parameter count
# (2,098,256 on the OGB leaderboard as transcribed) and every arxiv/products memory figure.
AUTHORS_ARXIV_README = (
    "authors' README, deep_gcns_torch examples/ogb_eff/ogbn_arxiv_dgl (10 runs; with "
    "normalised adjacency and label reuse, which this suite does not implement)"
)
ARXIV: tuple[PaperPoint, ...] = (
    PaperPoint("RevGAT", "ogbn-arxiv", "rev", 5, 768, 2, None, None, 74.02, 0.18, "acc", V100,
               AUTHORS_ARXIV_README, conv="gat", heads=3),
    PaperPoint("RevGAT+SelfKD", "ogbn-arxiv", "rev", 5, 768, 2, None, None, 74.26, 0.17, "acc",
               V100, AUTHORS_ARXIV_README + "; self-distilled student", conv="gat", heads=3),
)  # fmt: skip
PRODUCTS: tuple[PaperPoint, ...] = (
    PaperPoint("RevGNN-SAGE-112", "ogbn-products", "rev", 112, 160, 2, None, None, 83.07, 0.30,
               "acc", "not stated", "PyG's RevGNN example by the paper's first author (PyG pull "
               "request 4730; groups: the example's default): PyG's number, not the paper's",
               conv="sage"),
)  # fmt: skip
OTHER_DATASETS: tuple[PaperPoint, ...] = ARXIV + PRODUCTS

# Numbers the claims can be compared with (ratios and slopes, not absolute bytes).
# RevGNN 112 -> 1001 layers at 80 channels adds about 0.30 GB: its extra 17.8M parameters x 16 B.
REV_DEPTH_GROWTH_GB = 0.30
REV_DEPTH_EXTRA_PARAMS = 17.8e6
# ResGNN at 64 channels: about 0.2 GB per layer (per-edge messages of a ~0.79M-edge part).
RES_GB_PER_LAYER = 0.2
# Design target for a reversible training step relative to a residual one (DESIGN.md).
REV_STEP_TIME_TARGET = 4 / 3


def point(label: str) -> PaperPoint:
    """The paper's point with this label (e.g. "RevGNN-64"); KeyError names the known labels."""
    for p in ALL_POINTS:
        if p.label == label:
            return p
    raise KeyError(f"no paper point {label!r}; known: {', '.join(p.label for p in ALL_POINTS)}")


# ogbn-proteins' sizes (OGB's statistics): what the paper's batches were cut from.
PROTEINS_NODES = 132_534
PROTEINS_EDGES = 79_122_504  # directed (39,561,252 undirected edges, stored both ways)
PROTEINS_NODE_FEATURES = 16  # 8 summed edge features + 8 species one-hot (see bench.data)
PROTEINS_EDGE_DIM = 8
PROTEINS_TASKS = 112
PROTEINS_TRAIN_PARTS = 10


def proteins_batch(parts: int = PROTEINS_TRAIN_PARTS) -> tuple[int, int]:
    """Expected (nodes, directed edges) of one part of a random ``parts``-partition of
    ogbn-proteins: each node lands in one part, an edge survives when both ends share its part
    (probability 1/parts), so a part holds E / parts**2 edges: 13,253 nodes and 0.79M edges for
    the paper's 10 training parts."""
    return PROTEINS_NODES // parts, PROTEINS_EDGES // parts**2
