"""Building blocks shared by the keyword-spotting model zoo.

* :func:`spike`: Heaviside spike with the surrogate gradient of seed paper 000 / SpikGRU
  (Dampfhoffer et al., ICANN 2022)::

      s = H(v - V_th) = 1 if v > V_th else 0
      ds/dv (surrogate) = 1 / (1 + gamma * (v - V_th)^2),   gamma = 10

* :class:`LIF`: leaky integrate-and-fire neurons with a learnable leak, subtractive reset and
  explicit state (snnTorch ``Leaky`` style, ``spk, state = lif(cur, state)``).
* :class:`LeakyReadout`: non-spiking leaky integrator output neurons (the readout of the RNN,
  SCNN and SRNN; seed 000 section II.B, "leaky neurons integrate the inputs over time").
* :class:`KWSModel`: the common base of the four models (input check, one inference per call,
  spike recording).

Time constants (``beta`` of LIF / readout, ``alpha`` of SpikGRU) are learnable parameters,
initialised at 0.8 and clamped to [0, 1] in the forward pass (seed 000 section II.D).
"""
from __future__ import annotations

from typing import Any

import torch
import torch.nn as nn

from spikenoise.synapse import new_inference

__all__ = ["V_TH", "GAMMA", "TAU_INIT", "SpikeFunction", "spike", "LIF", "LeakyReadout", "KWSModel",
           "project_sequence"]

#: firing threshold (seed 000 section II.D)
V_TH = 1.0
#: surrogate sharpness gamma of 1 / (1 + gamma (v - V_th)^2) (SpikGRU)
GAMMA = 10.0
#: initial value of every learnable time constant (seed 000 section II.D)
TAU_INIT = 0.8


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


class LIF(nn.Module):
    r"""Leaky integrate-and-fire neurons with a learnable leak and subtractive reset.

    .. math::

        v_t = \beta \, v_{t-1} + I_t - V_{th}\, s_{t-1}, \qquad s_t = H(v_t - V_{th})

    which is snnTorch's ``Leaky(reset_mechanism="subtract")`` written with explicit state.
    ``beta`` is learnable, one per channel (``shape=(C, 1, 1)``) in the SCNN (seed 000 II.D),
    clamped to [0, 1] in the forward pass, initialised at 0.8. As in snnTorch's default, the
    reset term is detached from the graph (gradients flow through ``v`` and the spikes sent
    onwards, not through the reset).

    Example::

        lif = LIF((16, 1, 1))
        state = None
        for t in range(T):
            spk, state = lif(cur[t], state)     # state = (v, s)
    """

    def __init__(self, shape: tuple[int, ...], beta_init: float = TAU_INIT, threshold: float = V_TH,
                 gamma: float = GAMMA, detach_reset: bool = True):
        super().__init__()
        self.beta = time_constant(shape, beta_init)
        self.threshold = float(threshold)
        self.gamma = float(gamma)
        self.detach_reset = detach_reset

    def forward(self, cur: torch.Tensor, state: tuple[torch.Tensor, torch.Tensor] | None = None):
        if state is None:
            v = torch.zeros_like(cur)
            s = torch.zeros_like(cur)
        else:
            v, s = state
        reset = s.detach() if self.detach_reset else s
        v = self.beta.clamp(0.0, 1.0) * v + cur - self.threshold * reset
        s = spike(v, self.threshold, self.gamma)
        return s, (v, s)

    def extra_repr(self) -> str:
        return f"beta={tuple(self.beta.shape)} (init 0.8, clamped [0,1]), threshold={self.threshold}, gamma={self.gamma}"


class LeakyReadout(nn.Module):
    r"""Non-spiking leaky integrator output neurons (no threshold, no reset).

    .. math:: m_t = \beta \, m_{t-1} + I_t

    ``beta`` is learnable per output neuron, clamped to [0, 1], initialised at 0.8. The models
    take the logits as the mean of ``m_t`` over all timesteps (every timestep contributes a
    gradient; the final value alone would mostly see the last ~5 timesteps at beta = 0.8).
    """

    def __init__(self, n: int, beta_init: float = TAU_INIT):
        super().__init__()
        self.beta = time_constant((n,), beta_init)

    def forward(self, cur: torch.Tensor, m: torch.Tensor | None = None) -> torch.Tensor:
        beta = self.beta.clamp(0.0, 1.0)
        return cur if m is None else beta * m + cur

    def extra_repr(self) -> str:
        return f"n={self.beta.numel()}, beta init 0.8 clamped [0,1], logits = mean_t m_t"


def project_sequence(syn: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """A feed-forward synapse applied to a whole sequence ``x`` ``(B, T, in)`` in one call -> ``(B, T, out)``.

    Equal to calling ``syn`` once per timestep (the recurrent models' old loop): with no errors
    or a static draw, the per-sample weights are shared by all timesteps (one ``(B, T, in)``
    call keeps the draw per sample); a fresh draw per step and row (dynamic ``"step"`` or
    ``"spike"`` reads) is a fresh draw per ``(sample, timestep)`` row of ``(B*T, in)``, the same
    law (not the same random stream).
    """
    B, T = x.shape[:2]
    if syn.read_mode == "frozen" or syn.pinned:
        return syn(x)
    return syn(x.reshape(B * T, x.shape[2])).reshape(B, T, -1)


class KWSModel(nn.Module):
    """Base of the keyword-spotting models: input ``(B, time, freq)`` -> logits ``(B, n_classes)``.

    Every ``forward`` is one inference: it starts with ``spikenoise.new_inference(self)``, so
    static errors are drawn once per input sample (batch row) and held for every timestep of
    that forward. After a forward, ``spike_counts`` maps each spiking layer to its spike counts
    summed over time, shape ``(B, *neurons)`` (empty for the non-spiking models), and
    ``timesteps`` is the number of timesteps simulated.
    """

    #: True for the SNNs
    spiking: bool = False

    def __init__(self, n_classes: int, input_shape: tuple[int, int]):
        super().__init__()
        if int(n_classes) < 1:
            raise ValueError(f"n_classes must be >= 1, got {n_classes!r}")
        if len(input_shape) != 2 or min(input_shape) < 1:
            raise ValueError(f"input_shape must be (time, freq), got {input_shape!r}")
        self.n_classes = int(n_classes)
        self.input_shape = (int(input_shape[0]), int(input_shape[1]))
        self.spike_counts: dict[str, torch.Tensor] = {}
        self.timesteps = 0

    def _start(self, x: torch.Tensor, fixed_time: bool) -> None:
        T, F = self.input_shape
        ok = x.dim() == 3 and x.shape[2] == F and (not fixed_time or x.shape[1] == T)
        if not ok:
            want = f"(B, {T}, {F})" if fixed_time else f"(B, time, {F})"
            raise ValueError(f"{type(self).__name__} expects input {want} = (batch, time, frequency), "
                             f"got shape {tuple(x.shape)}")
        new_inference(self)
        self.spike_counts = {}
        self.timesteps = 0

    def _record(self, name: str, s: torch.Tensor) -> None:
        s = s.detach()
        prev = self.spike_counts.get(name)
        self.spike_counts[name] = s.clone() if prev is None else prev + s
