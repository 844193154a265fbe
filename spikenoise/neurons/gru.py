"""Cell dynamics of the light GRU and of SpikGRU, as pure step functions.

The layers that hold the synapses (``W``, ``U``) live in the model zoo
(``spikenoise.models.rnn.LightGRULayer``, ``spikenoise.models.srnn.SpikGRULayer``); they compute
the synaptic currents and call these functions.

Light GRU (Ravanelli et al., IEEE TETCI 2018; seed 000's tanh, no batch norm)::

    z_t = sigmoid(zbar_t),   h_t = z_t * h_{t-1} + (1 - z_t) * tanh(a_t)

SpikGRU (Dampfhoffer et al., ICANN 2022; single-gate)::

    z_t = sigmoid(wz_t + uz_t)
    i_t = alpha * i_{t-1} + wi_t + ui_t
    v_t = z_t * v_{t-1} + (1 - z_t) * i_t - V_th * s_{t-1}      (reset detached)
    s_t = H(v_t - V_th)
"""
from __future__ import annotations

import torch

from .surrogate import GAMMA, V_TH, SpikeGrad, spike

__all__ = ["light_gru_step", "spikgru_step"]


def light_gru_step(a: torch.Tensor, zbar: torch.Tensor, h: torch.Tensor) -> torch.Tensor:
    """New hidden state ``(B, H)`` from candidate ``a``, gate pre-activation ``zbar`` and ``h``."""
    z = torch.sigmoid(zbar)
    return z * h + (1 - z) * torch.tanh(a)


def spikgru_step(wz: torch.Tensor, wi: torch.Tensor, uz: torch.Tensor, ui: torch.Tensor,
                 state: tuple[torch.Tensor, torch.Tensor, torch.Tensor], alpha: torch.Tensor,
                 threshold: float = V_TH, gamma: float = GAMMA, spike_grad: SpikeGrad = spike):
    """One SpikGRU timestep: ``s, (i, v, s)`` from the gate / input currents and ``state = (i, v, s)``.

    ``wz, wi`` come from the input synapse, ``uz, ui`` from the recurrent one, all ``(B, H)``;
    ``alpha`` is used as given (clamp it to [0, 1] before).
    """
    i, v, s = state
    z = torch.sigmoid(wz + uz)
    i = alpha * i + wi + ui
    v = z * v + (1 - z) * i - threshold * s.detach()
    s = spike_grad(v, threshold, gamma)
    return s, (i, v, s)
