"""The architectures on one block definition, and the convolutions inside the blocks.

Modules: ``archs`` (each architecture a registered object: rules, display name and colour,
receptive field, activation formula, its model class), ``conv_specs`` (what each convolution
can do; a user's ``module:factory``), ``config`` (:class:`ModelConfig`, the settings handed
whole to every model and block), ``blocks`` (the res+ block, encoders and head), ``convs``
(building the convolutions), ``residual`` / ``reversible`` / ``deq`` (the models), ``compiled``
(blocks under ``torch.compile``). This package's top level is light (no torch): a model class
is imported when a model is built.
"""

from __future__ import annotations

from typing import Any

from bench.models import archs
from bench.models.config import ModelConfig

__all__ = ["ModelConfig", "archs", "build_model"]


def build_model(
    config: ModelConfig | str,
    in_channels: int,
    edge_dim: int | None,
    out_channels: int,
    layers: int | None = None,
    channels: int | None = None,
    **settings: Any,
) -> Any:
    """The model of ``config`` (a :class:`ModelConfig`), called as ``model(x, edge_index,
    edge_attr) -> logits [N, out_channels]``; ``edge_dim`` None or 0: no edge features.

    For short calls, ``config`` may be an architecture name with ``layers``, ``channels`` and
    any other :class:`ModelConfig` settings: ``build_model("rev", 8, 8, 112, 1001, 80)``."""
    if isinstance(config, str):
        sizes = {k: v for k, v in (("layers", layers), ("channels", channels)) if v is not None}
        config = ModelConfig(arch=config, **sizes, **settings)
    elif layers is not None or channels is not None or settings:
        raise TypeError("build_model(ModelConfig, ...) takes its settings from the config")
    return config.architecture.build(config, in_channels, edge_dim, out_channels)
