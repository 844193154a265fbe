"""``NoisyConv1d``: a 1-d convolution (audio SNNs) on the 2-d noisy convolution engine.

A ``(B, C, L)`` input is run as ``(B, C, 1, L)`` through :class:`NoisyConv2d` with ``(1, k)``
kernels, so every read mode and sampler (and its exactness) is the 2-d one: with
``reads="spike"`` each (spike, kernel tap, output position) is an independent read.
"""
from __future__ import annotations

import torch
import torch.nn as nn

from .layers import NoisyConv2d
from .mapping import WeightMapping

__all__ = ["NoisyConv1d"]


def _one(v, name: str) -> int:
    v = tuple(v) if isinstance(v, (tuple, list)) else (v,)
    if len(v) != 1 or not isinstance(v[0], int):
        raise ValueError(f"NoisyConv1d needs an integer {name}, got {v!r}")
    return v[0]


class NoisyConv1d(NoisyConv2d):
    """``nn.Conv1d`` whose weights live in NVM cells (options as :class:`NoisyLinear`).

    Weights are stored as ``(C_out, C_in/groups, 1, k)`` (a 2-d kernel of height 1).
    Shapes: input ``(B, C_in, L)``, output ``(B, C_out, L')``.
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size, stride=1, padding=0, dilation=1,
                 groups: int = 1, bias: bool = True, **synapse):
        if isinstance(padding, str):
            raise ValueError(f"NoisyConv1d needs numeric padding, got {padding!r}")
        k, s, p, d = (_one(kernel_size, "kernel_size"), _one(stride, "stride"), _one(padding, "padding"),
                      _one(dilation, "dilation"))
        super().__init__(in_channels, out_channels, (1, k), (1, s), (0, p), (1, d), groups, bias, **synapse)

    @classmethod
    def from_torch(cls, old: nn.Conv1d, mapping: WeightMapping) -> "NoisyConv1d":
        """The noisy twin of a trained ``nn.Conv1d`` (weights mapped by ``mapping``)."""
        return mapping.twin(cls, old)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() != 3 or x.shape[1] != self.in_channels:
            raise ValueError(f"NoisyConv1d expects input (B, {self.in_channels}, L), got shape {tuple(x.shape)}")
        return super().forward(x.unsqueeze(2)).squeeze(2)
