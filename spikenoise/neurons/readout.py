r"""Non-spiking leaky integrator output neurons (no threshold, no reset).

.. math:: m_t = \beta \, m_{t-1} + I_t

The readout of the RNN, SCNN and SRNN (seed 000 section II.B, "leaky neurons integrate the
inputs over time").
"""
from __future__ import annotations

import torch
import torch.nn as nn

from .surrogate import TAU_INIT, time_constant

__all__ = ["LeakyReadout", "leaky_step"]


def leaky_step(cur: torch.Tensor, m: torch.Tensor | None, beta: torch.Tensor) -> torch.Tensor:
    """One leaky-integrator timestep (pure): ``beta * m + cur`` (``cur`` when ``m`` is None)."""
    return cur if m is None else beta * m + cur


class LeakyReadout(nn.Module):
    r"""Leaky integrator neurons :func:`leaky_step` with a learnable ``beta`` per neuron.

    ``beta`` is clamped to [0, 1], initialised at 0.8. The models take the logits as the mean of
    ``m_t`` over all timesteps (every timestep contributes a gradient; the final value alone would
    mostly see the last ~5 timesteps at beta = 0.8).
    """

    def __init__(self, n: int, beta_init: float = TAU_INIT):
        super().__init__()
        self.beta = time_constant((n,), beta_init)

    def forward(self, cur: torch.Tensor, m: torch.Tensor | None = None) -> torch.Tensor:
        return leaky_step(cur, m, self.beta.clamp(0.0, 1.0))

    def mean_over_time(self, cur: torch.Tensor) -> torch.Tensor:
        """``mean_t m_t`` ``(B, n)`` of the integrators driven by ``cur`` ``(B, T, n)`` from rest.

        The same as stepping :meth:`forward` over time and averaging, in closed form:
        ``mean_t m_t = (1/T) sum_k cur_k sum_{j < T-k} beta^j`` (a few whole-sequence ops instead of
        three autograd nodes per timestep).
        """
        T, n = cur.shape[1], cur.shape[2]
        beta = self.beta.clamp(0.0, 1.0).to(cur.dtype)
        powers = torch.cat([beta.new_ones(1, n), beta.expand(T - 1, n)]).cumprod(0)  # beta^j, j < T
        weight = powers.cumsum(0).flip(0)  # weight[k] = sum_{j < T-k} beta^j
        return torch.einsum("btn,tn->bn", cur, weight) / T

    def extra_repr(self) -> str:
        return f"n={self.beta.numel()}, beta init 0.8 clamped [0,1], logits = mean_t m_t"
