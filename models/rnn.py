"""Single-gate light-GRU RNN for keyword spotting (seed paper 000, section II.B).

Light GRU (Ravanelli et al., "Light gated recurrent units for speech recognition", IEEE TETCI
2018), one update gate, no reset gate; with seed 000's tanh activation and no batch norm::

    [a_t, zbar_t] = W x_t + b_W + U h_{t-1} + b_U
    z_t = sigmoid(zbar_t)
    h_t = z_t * h_{t-1} + (1 - z_t) * tanh(a_t)

``W`` (in -> 2H) and ``U`` (H -> 2H) are each one noisy synapse with its own learnable scale
(the candidate and gate pre-activations stacked). The original light GRU uses ReLU and batch norm
on ``W x_t``; seed 000 uses tanh (bounded activations were more robust to errors, IV.C) and we
drop batch norm: a learnable per-layer scale already sets the pre-activation range (seed 000
II.D), and batch statistics would mix samples whose static errors differ.

Readout: a noisy fully connected layer into non-spiking leaky integrator neurons (seed 000
II.B, "as in [20]"), ``m_t = beta * m_{t-1} + fc(h2_t)``; logits = mean over time of ``m_t``.

Reads: ``reads="step"`` for every synapse: each weight is read at every timestep (seed 000
II.C), 67 timesteps of 40 log-Mel features.
"""
from __future__ import annotations

import torch
import torch.nn as nn

from spikenoise.noise.base import ErrorModel
from spikenoise.synapse import NoisyLinear

from spikenoise.neurons import LeakyReadout, light_gru_step
from spikenoise.neurons.fused import light_gru_sequence

from .base import KWSModel, leaky_readout_mean, project_sequence, recurrent_operands
from .registry import register_model

__all__ = ["LightGRULayer", "RNN"]


class LightGRULayer(nn.Module):
    """One light-GRU layer, stepped one timestep per call: ``h = layer(x_t, h)``."""

    def __init__(self, n_in: int, n_hidden: int, **syn):
        super().__init__()
        self.n_hidden = n_hidden
        self.W = NoisyLinear(n_in, 2 * n_hidden, **syn)      # [W_a; W_z] x_t + b
        self.U = NoisyLinear(n_hidden, 2 * n_hidden, **syn)  # [U_a; U_z] h_{t-1} + b_U

    def forward(self, x: torch.Tensor, h: torch.Tensor | None = None) -> torch.Tensor:
        if h is None:
            h = x.new_zeros(x.shape[0], self.n_hidden)
        return self.step(self.W(x), h)

    def step(self, wx: torch.Tensor, h: torch.Tensor) -> torch.Tensor:
        """One timestep given the input projection ``wx = W(x_t)`` ``(B, 2H)``."""
        a, zbar = (wx + self.U(h)).chunk(2, dim=-1)
        return light_gru_step(a, zbar, h)

    def run(self, x: torch.Tensor) -> torch.Tensor:
        """The whole sequence ``x`` ``(B, T, in)`` -> hidden states ``(B, T, H)``.

        The input projection ``W x_t`` of all timesteps is one call (:func:`project_sequence`);
        only the recurrent ``U h_{t-1}`` is stepped: in training with weights that are the same at
        every step (no errors, static) as one fused node with a hand-written backward
        (:func:`~spikenoise.neurons.fused.light_gru_sequence`), else one ``U`` call per step.
        """
        wx = project_sequence(self.W, x)
        fused = recurrent_operands(self.U, x.shape[0], wx.dtype)
        if fused is not None:
            return light_gru_sequence(wx, *fused)
        h = x.new_zeros(x.shape[0], self.n_hidden)
        hs = []
        for wx_t in wx.unbind(1):  # unbind: one backward node (slicing would add a full-size zero grad per step)
            h = self.step(wx_t, h)
            hs.append(h)
        return torch.stack(hs, 1)


@register_model("rnn", kws=True)
class RNN(KWSModel):
    """Two light-GRU layers of 128 units and a leaky-integrator readout.

    Args:
        n_classes: number of output classes.
        error_model, errors, sampler: error options of every synapse.
        reads: default ``"step"`` (every weight read at every timestep).
        hidden: units per layer, one entry per layer (default ``(128, 128)``).
        input_shape: ``(time, freq)``; any number of timesteps is accepted, ``freq`` is fixed.

    Shapes: ``x`` ``(B, T, 40)`` -> logits ``(B, n_classes)``.
    """

    def __init__(self, n_classes: int = 12, error_model: ErrorModel | None = None, errors: str = "none", *,
                 reads: str = "step", sampler: str = "auto", hidden: tuple[int, ...] = (128, 128),
                 input_shape: tuple[int, int] = (67, 40)):
        super().__init__(n_classes, input_shape)
        syn = dict(error_model=error_model, errors=errors, reads=reads, sampler=sampler)
        self.layers = nn.ModuleList()
        n_in = self.input_shape[1]
        for n_h in hidden:
            self.layers.append(LightGRULayer(n_in, n_h, **syn))
            n_in = n_h
        self.fc = NoisyLinear(n_in, self.n_classes, **syn)
        self.readout = LeakyReadout(self.n_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # layer by layer over the whole sequence (no layer feeds back into an earlier one), so
        # every feed-forward synapse is one call per inference, not one per timestep
        self.start_inference(x, fixed_time=False)
        seq = x
        for layer in self.layers:
            seq = layer.run(seq)
        self.timesteps = x.shape[1]
        return leaky_readout_mean(self.fc, self.readout, seq)
