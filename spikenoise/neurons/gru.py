"""Cell dynamics of the light GRU and of SpikGRU, as pure step functions.

The layers that hold the synapses (``W``, ``U``) live in the model zoo
(``spikenoise.models.rnn.LightGRULayer``, ``spikenoise.models.srnn.SpikGRULayer``); they compute
the synaptic currents and call these functions.

Light GRU (Ravanelli et al., IEEE TETCI 2018; seed 000's tanh, no batch norm)::

    z_t = sigmoid(zbar_t),   h_t = z_t * h_{t-1} + (1 - z_t) * tanh(a_t)

SpikGRU (Dampfhoffer et al., ICANN 2022; single-gate)::

    z_t = sigmoid(wz_t + uz_t)
    i_t = alpha * i_{t-1} + wi_t + ui_t
    v_t = z_t * v_{t-1} + (1 - z_t) * i_t - V_th * s_{t-1}
    s_t = H(v_t - V_th)

As in the authors' code the gradient flows through the reset term too (``-V_th`` per spike):
that negative feedback keeps the backward signal from growing through the recurrent spikes
(``detach_reset=True``, snnTorch's default for its neurons, removes it; see
``spikenoise.models.srnn``).
"""
from __future__ import annotations

import torch
import torch.nn as nn

from .surrogate import GAMMA, TAU_INIT, V_TH, SpikeGrad, spike, time_constant

__all__ = ["light_gru_step", "spikgru_step", "SpikGRU"]


def light_gru_step(a: torch.Tensor, zbar: torch.Tensor, h: torch.Tensor) -> torch.Tensor:
    """New hidden state ``(B, H)`` from candidate ``a``, gate pre-activation ``zbar`` and ``h``."""
    z = torch.sigmoid(zbar)
    return z * h + (1 - z) * torch.tanh(a)


def spikgru_step(wz: torch.Tensor, wi: torch.Tensor, uz: torch.Tensor, ui: torch.Tensor,
                 state: tuple[torch.Tensor, torch.Tensor, torch.Tensor], alpha: torch.Tensor,
                 threshold: float = V_TH, gamma: float = GAMMA, spike_grad: SpikeGrad = spike,
                 detach_reset: bool = False):
    """One SpikGRU timestep: ``s, (i, v, s)`` from the gate / input currents and ``state = (i, v, s)``.

    ``wz, wi`` come from the input synapse, ``uz, ui`` from the recurrent one, all ``(B, H)``;
    ``alpha`` is used as given (clamp it to [0, 1] before). ``detach_reset``: no gradient through
    the reset term ``V_th * s_{t-1}``.
    """
    i, v, s = state
    z = torch.sigmoid(wz + uz)
    i = alpha * i + wi + ui
    v = z * v + (1 - z) * i - threshold * (s.detach() if detach_reset else s)
    s = spike_grad(v, threshold, gamma)
    return s, (i, v, s)


class SpikGRU(nn.Module):
    """SpikGRU as an snnTorch-style neuron: ``spk, state = neuron(cur, state)``.

    Like snnTorch's ``RLeaky`` it owns its recurrent synapse and takes the feed-forward current
    from the layer before it: ``cur = [W_z x; W_i x]`` ``(B, 2H)`` (e.g. ``nn.Linear(n_in, 2H)``).

    Args:
        hidden: number of neurons ``H``.
        recurrent: the recurrent synapse ``s_{t-1} -> [U_z s; U_i s]`` ``(B, H) -> (B, 2H)``;
            default ``nn.Linear(H, 2H)`` (``spikenoise.convert`` maps it like any linear layer).
        alpha_init, threshold, gamma, spike_grad, detach_reset: as :func:`spikgru_step`; ``alpha``
            is learnable per neuron, clamped to [0, 1]; ``gamma`` defaults to the paper's 10, as
            in the zoo's SRNN.

    ``state = (i, v, s)``, each ``(B, H)``; ``None`` starts from zeros.
    """

    def __init__(self, hidden: int, *, recurrent: nn.Module | None = None, alpha_init: float = TAU_INIT,
                 threshold: float = V_TH, gamma: float = GAMMA, spike_grad: SpikeGrad = spike,
                 detach_reset: bool = False):
        super().__init__()
        if not isinstance(hidden, int) or hidden < 1:
            raise ValueError(f"hidden must be a positive int, got {hidden!r}")
        self.hidden = hidden
        self.recurrent = nn.Linear(hidden, 2 * hidden) if recurrent is None else recurrent
        self.alpha = time_constant((hidden,), alpha_init)
        self.threshold, self.gamma, self.spike_grad = float(threshold), float(gamma), spike_grad
        self.detach_reset = bool(detach_reset)

    def forward(self, cur: torch.Tensor, state: tuple[torch.Tensor, torch.Tensor, torch.Tensor] | None = None):
        if cur.dim() != 2 or cur.shape[1] != 2 * self.hidden:
            raise ValueError(f"SpikGRU expects a current (B, {2 * self.hidden}) = [W_z x; W_i x], "
                             f"got shape {tuple(cur.shape)}")
        if state is None:
            z0 = cur.new_zeros(cur.shape[0], self.hidden)
            state = (z0, z0, z0)
        wz, wi = cur.chunk(2, dim=-1)
        uz, ui = self.recurrent(state[2]).chunk(2, dim=-1)
        return spikgru_step(wz, wi, uz, ui, state, self.alpha.clamp(0.0, 1.0), self.threshold, self.gamma,
                            self.spike_grad, self.detach_reset)

    def extra_repr(self) -> str:
        return (f"hidden={self.hidden}, alpha clamped [0,1], threshold={self.threshold}, gamma={self.gamma}, "
                f"detach_reset={self.detach_reset}")
