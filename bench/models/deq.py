"""DEQ-GNN: one weight-tied block iterated to its fixed point, z* = f(z*, x).

The block is the paper's MDEQ-style two-convolution block:
    u = conv1(z);  h = dropout(relu(norm1(u + x)));  f(z, x) = norm2(relu(conv2(h) + u))
with input injection x (the encoded node features). The trailing normalisation bounds the
state, which is what makes plain iteration (and so Anderson/Broyden) converge in practice.
Depth costs no parameters and, through :class:`bench.nn.deq.DEQFixedPoint`'s implicit
backward, no activation memory: only the iteration cap changes.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from bench.models.blocks import DeepGNN, make_norm
from bench.models.config import ModelConfig
from bench.models.convs import make_conv
from bench.nn.deq import DEQFixedPoint


class DEQBlock(nn.Module):
    """f(z, x): conv -> Norm(. + x) -> ReLU -> dropout -> conv -> + first conv -> ReLU -> Norm.

    ``config.conv`` picks both convolutions (as in every block).

    ``dropout_mask`` (scaled by 1/(1-p)) is passed in so that one mask serves every solver
    iteration and the backward solve: f must be a fixed function for a fixed point to exist.
    """

    def __init__(self, config: ModelConfig, edge_dim: int | None) -> None:
        super().__init__()
        channels = config.channels
        self.conv1 = make_conv(config, channels, channels, edge_dim)
        self.norm1 = make_norm(config.norm, channels)
        self.conv2 = make_conv(config, channels, channels, edge_dim)
        self.norm2 = make_norm(config.norm, channels)

    def forward(
        self,
        z: Tensor,
        x: Tensor,
        edge_index: Tensor,
        edge_attr: Tensor | None = None,
        dropout_mask: Tensor | None = None,
    ) -> Tensor:
        u = self.conv1(z, edge_index, edge_attr)
        h = F.relu(self.norm1(u + x))
        if dropout_mask is not None:
            h = h * dropout_mask
        return self.norm2(F.relu(self.conv2(h, edge_index, edge_attr) + u))


class DEQGNN(DeepGNN):
    """Deep-equilibrium GNN: encoders -> z* = f(z*, x) -> head; the iteration cap is
    ``config.deq_max_iter`` (resolved to ``layers`` when unset).

    ``solver_stats`` holds ``fwd_iters``, ``fwd_rel_residual`` (and ``fwd_converged``,
    ``fwd_fallback``) after forward; ``bwd_iters``, ``bwd_rel_residual`` after backward.
    """

    def __init__(self, config: ModelConfig, in_channels: int, edge_dim: int | None,
                 out_channels: int) -> None:  # fmt: skip
        super().__init__(config, in_channels, edge_dim, out_channels)
        # edge features reach the block already encoded to ``channels`` by DeepGNN
        self.block = DEQBlock(config, self.block_edge_dim)
        self.deq = DEQFixedPoint(solver=config.deq_solver, tol=config.deq_tol,
                                 max_iter=config.deq_max_iter, grad=config.deq_grad,
                                 history=config.architecture.history)  # fmt: skip

    def body(self, h: Tensor, edge_index: Tensor, edge_attr: Tensor | None) -> Tensor:
        mask = None
        if self.training and self.dropout > 0:  # one mask per forward, reused by every iteration
            mask = F.dropout(torch.ones_like(h), self.dropout, training=True)

        def f(z: Tensor) -> Tensor:
            return self.block(z, h, edge_index, edge_attr, mask)

        # the block's norm layers update their running statistics once, at the fixed point
        z = self.deq(f, torch.zeros_like(h), stats_module=self.block)
        self.solver_stats = self.deq.stats  # the same dict: the backward hook adds bwd_* to it
        return z
