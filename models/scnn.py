"""Spiking CNN for keyword spotting (seed paper 000, section II.B).

The :class:`~spikenoise.models.CNN` topology with leaky integrate-and-fire neurons, simulated for
10 timesteps; the graded (non-spike) 67 x 40 log-Mel image is fed at every timestep (seed 000:
"the input data are fed to the SNN 10 times")::

    for t in 1..10:
        s1_t = LIF1(conv1(x))          # 16 channels, graded input
        s2_t = LIF2(conv2(s1_t))       # 32 channels, spike input
        s3_t = LIF3(conv3(s2_t))       # 64 channels, spike input
        m_t  = beta_o * m_{t-1} + fc(flatten(s3_t))     # leaky integrator, no spikes
    logits = mean_t m_t

LIF (:class:`~spikenoise.neurons.LIF`): ``v_t = beta * v_{t-1} + I_t - V_th s_{t-1}``,
``s_t = H(v_t - V_th)``, ``V_th = 1``, ``beta`` learnable per channel, init 0.8, clamped [0, 1];
surrogate ``1 / (1 + 10 (v - V_th)^2)`` (seed 000 II.D).

Reads:

* conv2, conv3, fc receive spikes: ``reads="spike"``, one read per (spike, kernel tap, output
  position) (event-driven hardware, seed 000 II.C).
* conv1 receives the graded input, the same at every timestep. Default ``input_reads="once"``:
  conv1 is computed once per inference and its current held for all timesteps (one read, one
  tenth of the dense conv1 MACs). Seed 000 Fig. 2B puts the SCNN at about half the CNN's
  operations (~2.1 M of 4.1 M); ten dense conv1 passes alone are 2.5 M, so that count implies
  conv1 computed once. ``input_reads="step"`` re-reads conv1 at every timestep instead (dynamic
  errors then average over the 10 timesteps; its dense MACs count 10 times).
  ``input_reads="spike"`` reads per pixel instead (brute sampler with gradients, memory heavy;
  see :class:`~spikenoise.models.CNNPerPixel`).
"""
from __future__ import annotations

import torch
import torch.nn as nn

from spikenoise.noise.base import ErrorModel
from spikenoise.synapse import NoisyConv2d, NoisyLinear

from spikenoise.neurons import LIF, LeakyReadout

from .base import KWSModel
from .cnn import conv_output_shape
from .registry import register_model

__all__ = ["SCNN"]


@register_model("scnn", kws=True)
class SCNN(KWSModel):
    """Spiking CNN: three noisy convolutions with LIF neurons, leaky-integrator readout.

    Args:
        n_classes: number of output classes.
        error_model, errors, sampler: error options of every synapse.
        timesteps: simulated timesteps (default 10); the input is fed at each.
        input_reads: reads of conv1 (graded input), default ``"once"``.
        reads: reads of the synapses receiving spikes, default ``"spike"``.
        channels, kernel, stride, padding, input_shape: as :class:`~spikenoise.models.CNN`.

    Shapes: ``x`` ``(B, 67, 40)`` -> logits ``(B, n_classes)``. After a forward,
    ``spike_counts["lif1" | "lif2" | "lif3"]`` is ``(B, C, H, W)`` spikes summed over time.
    """

    spiking = True

    def __init__(self, n_classes: int = 12, error_model: ErrorModel | None = None, errors: str = "none", *,
                 timesteps: int = 10, input_reads: str = "once", reads: str = "spike", sampler: str = "auto",
                 channels: tuple[int, ...] = (16, 32, 64), kernel: tuple[int, int] = (6, 4),
                 stride: tuple[int, int] = (2, 2), padding: tuple[int, int] = (2, 2),
                 input_shape: tuple[int, int] = (67, 40)):
        super().__init__(n_classes, input_shape)
        if int(timesteps) < 1:
            raise ValueError(f"timesteps must be >= 1, got {timesteps!r}")
        self.n_steps = int(timesteps)
        syn = dict(error_model=error_model, errors=errors, sampler=sampler)
        self.convs = nn.ModuleList()
        self.lifs = nn.ModuleList()
        c_in, hw = 1, self.input_shape
        for k, c_out in enumerate(channels):
            self.convs.append(NoisyConv2d(c_in, c_out, kernel, stride, padding,
                                          reads=input_reads if k == 0 else reads, **syn))
            self.lifs.append(LIF((c_out, 1, 1)))
            c_in, hw = c_out, conv_output_shape(hw, kernel, stride, padding)
        if min(hw) < 1:
            raise ValueError(f"input_shape {input_shape} is too small for {len(channels)} convolutions")
        self.feature_shape = (c_in, *hw)
        self.fc = NoisyLinear(c_in * hw[0] * hw[1], self.n_classes, reads=reads, **syn)
        self.readout = LeakyReadout(self.n_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.start_inference(x, fixed_time=True)
        img = x.unsqueeze(1)  # (B, 1, time, freq), graded, fed at every timestep
        states: list = [None] * len(self.convs)
        m = None
        total = 0.0
        # input_reads="once": conv1 is computed once and its current held for every timestep
        cur1 = self.convs[0](img) if self.convs[0].reads == "once" else None
        for _ in range(self.n_steps):
            h = img
            for k, (conv, lif) in enumerate(zip(self.convs, self.lifs)):
                cur = cur1 if k == 0 and cur1 is not None else conv(h)
                h, states[k] = lif(cur, states[k])
                self.record_spikes(f"lif{k + 1}", h)
            m = self.readout(self.fc(h.flatten(1)), m)
            total = total + m
        self.timesteps = self.n_steps
        return total / self.n_steps
