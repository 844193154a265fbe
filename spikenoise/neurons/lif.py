r"""Leaky integrate-and-fire neurons with a learnable leak and subtractive reset.

.. math::

    v_t = \beta \, v_{t-1} + I_t - V_{th}\, s_{t-1}, \qquad s_t = H(v_t - V_{th})

snnTorch's ``Leaky(reset_mechanism="subtract")`` written with explicit state.
"""
from __future__ import annotations

import torch
import torch.nn as nn

from .surrogate import GAMMA, TAU_INIT, V_TH, SpikeGrad, spike, time_constant

__all__ = ["LIF", "lif_step"]


def lif_step(cur: torch.Tensor, v: torch.Tensor, s: torch.Tensor, beta: torch.Tensor, threshold: float = V_TH,
             gamma: float = GAMMA, detach_reset: bool = True, spike_grad: SpikeGrad = spike):
    """One LIF timestep (pure): ``(s_t, v_t)`` from input current ``cur`` and state ``(v, s)``.

    ``beta`` is used as given (clamp it to [0, 1] before). All tensors broadcast, e.g. ``(B, C, H, W)``.
    """
    reset = s.detach() if detach_reset else s
    v = beta * v + cur - threshold * reset
    return spike_grad(v, threshold, gamma), v


class LIF(nn.Module):
    r"""Leaky integrate-and-fire neurons: :func:`lif_step` with a learnable ``beta``.

    ``beta`` is learnable, one per channel (``shape=(C, 1, 1)``) in the SCNN (seed 000 II.D),
    clamped to [0, 1] in the forward pass, initialised at 0.8. As in snnTorch's default, the
    reset term is detached from the graph (gradients flow through ``v`` and the spikes sent
    onwards, not through the reset). ``spike_grad`` is the spike function (surrogate).

    Example::

        lif = LIF((16, 1, 1))
        state = None
        for t in range(T):
            spk, state = lif(cur[t], state)     # state = (v, s)
    """

    def __init__(self, shape: tuple[int, ...], beta_init: float = TAU_INIT, threshold: float = V_TH,
                 gamma: float = GAMMA, detach_reset: bool = True, spike_grad: SpikeGrad = spike):
        super().__init__()
        self.beta = time_constant(shape, beta_init)
        self.threshold = float(threshold)
        self.gamma = float(gamma)
        self.detach_reset = detach_reset
        self.spike_grad = spike_grad

    def forward(self, cur: torch.Tensor, state: tuple[torch.Tensor, torch.Tensor] | None = None):
        if state is None:
            v = torch.zeros_like(cur)
            s = torch.zeros_like(cur)
        else:
            v, s = state
        s, v = lif_step(cur, v, s, self.beta.clamp(0.0, 1.0), self.threshold, self.gamma, self.detach_reset,
                        self.spike_grad)
        return s, (v, s)

    def extra_repr(self) -> str:
        return f"beta={tuple(self.beta.shape)} (init 0.8, clamped [0,1]), threshold={self.threshold}, gamma={self.gamma}"
