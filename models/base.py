"""The common base of the keyword-spotting models (input check, one inference per call, spike recording)."""
from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from spikenoise.neurons import LeakyReadout
from spikenoise.synapse import new_inference

__all__ = ["KWSModel", "image_batch", "project_sequence", "recurrent_operands", "leaky_readout_mean"]


def image_batch(x: torch.Tensor, in_channels: int, input_size: tuple[int, int], model: str) -> torch.Tensor:
    """``x`` as ``(B, C, H, W)``: a ``(B, H, W)`` batch gets its channel axis when ``in_channels == 1``.

    Raises a ``ValueError`` naming ``model`` and the expected shape for anything else.
    """
    if x.dim() == 3 and in_channels == 1:
        x = x.unsqueeze(1)
    if x.dim() != 4 or x.shape[1] != in_channels or tuple(x.shape[2:]) != tuple(input_size):
        raise ValueError(f"{model} expects input (B, {in_channels}, {input_size[0]}, {input_size[1]}), "
                         f"got shape {tuple(x.shape)}")
    return x


#: switch for the fused training paths (True) of the recurrent models: the whole-sequence
#: recurrences and the folded clean projections. False: every layer steps through time calling its
#: synapses, the reference path the tests compare against.
FUSED_RECURRENCE = True


def _fusable(syn: nn.Module, dtype: torch.dtype) -> bool:
    """A training call of ``syn`` may be computed here from its public pieces (stored weights,
    scale, bias, draw): gradients on (without them each call goes through the synapse, so that
    forward hooks such as the operation counters see every read), NaN/inf raise, no autocast,
    inputs in the synapse's ``dtype``."""
    return (FUSED_RECURRENCE and torch.is_grad_enabled() and syn.weight.dtype == dtype
            and syn.nonfinite_policy == "raise" and syn.error_model.default_nonfinite == "raise"
            and not torch.is_autocast_enabled(syn.weight.device.type))


def project_sequence(syn: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """A feed-forward synapse applied to a whole sequence ``x`` ``(B, T, in)`` in one call -> ``(B, T, out)``.

    Equal to calling ``syn`` once per timestep (the recurrent models' old loop): with no errors
    or a static draw, the per-sample weights are shared by all timesteps (one ``(B, T, in)``
    call keeps the draw per sample); a fresh draw per step and row (dynamic ``"step"`` or
    ``"spike"`` reads) is a fresh draw per ``(sample, timestep)`` row of ``(B*T, in)``, the same
    law (not the same random stream). In training without errors, one linear map with the scale
    folded into the weights (``x (scale W_q)^T + b``: no elementwise pass over the outputs).
    """
    B, T = x.shape[:2]
    if syn.read_mode == "clean" and _fusable(syn, x.dtype):
        syn.check_input(x)
        return F.linear(x, syn.quantized_weight() * syn.scale, syn.bias)
    if syn.read_mode == "frozen" or syn.pinned:
        return syn(x)
    return syn(x.reshape(B * T, x.shape[2])).reshape(B, T, -1)


def recurrent_operands(syn: nn.Module, batch: int, dtype: torch.dtype):
    """``(weight, scale, bias, reads)`` of the recurrent synapse ``syn`` for a fused whole-sequence
    recurrence (:mod:`spikenoise.neurons.fused`), or None when every timestep must call ``syn``.

    Fused: the weights read are the same at every step (no errors, or a static draw / pinned
    chip: ``reads`` ``(1 | batch, out, in)``) and the conditions of a fused training call hold
    (gradients on, NaN/inf raise: checked once for the weights here, no autocast, projections in
    the synapse's ``dtype``). Dynamic reads (a fresh draw per step or spike) always call ``syn``
    per step, so its draws and samplers are the engine's own.
    """
    if syn.read_mode not in ("clean", "frozen") or not _fusable(syn, dtype):
        return None
    syn.check_input(syn.weight.new_zeros(1, syn.in_features))  # hidden weights finite (else its ValueError)
    wq = syn.quantized_weight()
    reads = None
    if syn.read_mode == "frozen":
        reads = syn.draw_reads(wq, syn.draw_for(wq, batch))
        if reads.shape[0] not in (1, batch):
            return None  # the per-step call raises its own error
    return wq, syn.scale, syn.bias, reads


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

    def start_inference(self, x: torch.Tensor, fixed_time: bool) -> None:
        """Check ``x`` is ``(B, time, freq)`` (``time`` fixed if ``fixed_time``), start one inference."""
        T, F = self.input_shape
        ok = x.dim() == 3 and x.shape[2] == F and (not fixed_time or x.shape[1] == T)
        if not ok:
            want = f"(B, {T}, {F})" if fixed_time else f"(B, time, {F})"
            raise ValueError(f"{type(self).__name__} expects input {want} = (batch, time, frequency), "
                             f"got shape {tuple(x.shape)}")
        new_inference(self)
        self.spike_counts = {}
        self.timesteps = 0

    def record_spikes(self, name: str, s: torch.Tensor) -> None:
        """Add spikes ``s`` of layer ``name`` to ``spike_counts[name]``."""
        s = s.detach()
        prev = self.spike_counts.get(name)
        self.spike_counts[name] = s.clone() if prev is None else prev + s


def leaky_readout_mean(fc: nn.Module, readout: nn.Module, seq: torch.Tensor) -> torch.Tensor:
    """Logits of the recurrent models: ``fc`` over the sequence ``seq`` ``(B, T, H)`` into the leaky
    integrators ``m_t = readout(fc(s_t), m_{t-1})``, averaged over time -> ``(B, n_classes)``.

    A :class:`~spikenoise.neurons.LeakyReadout` is summed in closed form (``mean_over_time``);
    any other readout module is stepped.
    """
    cur = project_sequence(fc, seq)
    if isinstance(readout, LeakyReadout):
        return readout.mean_over_time(cur)
    m = None
    total = 0.0
    for cur_t in cur.unbind(1):
        m = readout(cur_t, m)
        total = total + m
    return total / seq.shape[1]
