"""Spike function with a surrogate gradient, and learnable time constants.

Seed paper 000 / SpikGRU (Dampfhoffer et al., ICANN 2022)::

    s = H(v - V_th) = 1 if v > V_th else 0
    ds/dv (surrogate) = 1 / (1 + gamma * (v - V_th)^2),   gamma = 10

Neurons take the spike function as ``spike_grad`` (snnTorch style): any
``f(v, threshold, gamma) -> spikes`` with the surrogate you want; :func:`spike` is the default.
"""
from __future__ import annotations

from typing import Any, Callable

import torch
import torch.nn as nn

__all__ = ["V_TH", "GAMMA", "TAU_INIT", "SpikeFunction", "spike", "time_constant", "SpikeGrad"]

#: firing threshold (seed 000 section II.D)
V_TH = 1.0
#: surrogate sharpness gamma of 1 / (1 + gamma (v - V_th)^2) (SpikGRU)
GAMMA = 10.0
#: initial value of every learnable time constant (seed 000 section II.D)
TAU_INIT = 0.8

#: a spike function ``(v, threshold, gamma) -> spikes`` (0./1. floats, surrogate gradient)
SpikeGrad = Callable[[torch.Tensor, float, float], torch.Tensor]


class SpikeFunction(torch.autograd.Function):
    """Heaviside step forward; ``1 / (1 + gamma x^2)`` surrogate derivative backward.

    ``x`` is ``v - V_th``. Forward: ``s = (x > 0)``. Backward: ``grad_x = grad_s / (1 + gamma x^2)``.
    """

    @staticmethod
    def forward(ctx: Any, x: torch.Tensor, gamma: float) -> torch.Tensor:  # type: ignore[override]
        ctx.save_for_backward(x)
        ctx.gamma = gamma
        return (x > 0).to(x.dtype)

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor):  # type: ignore[override]
        (x,) = ctx.saved_tensors
        return grad / (1.0 + ctx.gamma * x * x), None


def spike(v: torch.Tensor, threshold: float = V_TH, gamma: float = GAMMA) -> torch.Tensor:
    """Spikes ``H(v - threshold)`` (0./1. floats) with the SpikGRU surrogate gradient."""
    return SpikeFunction.apply(v - threshold, gamma)


def time_constant(shape: tuple[int, ...], init: float = TAU_INIT) -> nn.Parameter:
    """A learnable time constant (leak) of the given shape, initialised at ``init``."""
    return nn.Parameter(torch.full(shape, float(init)))
