"""Neuron dynamics: spikes with surrogate gradients, LIF, leaky readout, light-GRU and SpikGRU cells.

One neuron per file over :mod:`.surrogate` (spike function, constants, learnable time
constants). Each file gives a pure step function with explicit state (Norse style) and, where the
neuron has parameters of its own, a module around it (snnTorch style, surrogate injected as
``spike_grad``). Synapses are not here: the layers that hold them are in :mod:`spikenoise.models`.
Import order: noise -> synapse -> neurons -> models.
"""
from .gru import light_gru_step, spikgru_step
from .lif import LIF, lif_step
from .readout import LeakyReadout, leaky_step
from .surrogate import GAMMA, TAU_INIT, V_TH, SpikeFunction, SpikeGrad, spike, time_constant

__all__ = ["V_TH", "GAMMA", "TAU_INIT", "SpikeFunction", "SpikeGrad", "spike", "time_constant",
           "LIF", "lif_step", "LeakyReadout", "leaky_step", "light_gru_step", "spikgru_step"]
