"""The model zoo, every synapse in noisy memory, behind one registry (:mod:`.registry`).

Keyword-spotting models of seed paper 000 (section II.B), input ``(B, 67, 40)`` = (batch, time,
40 log-Mel features), output logits ``(B, n_classes)``:

============  =====================================================  ==========================
name          model                                                  default reads
============  =====================================================  ==========================
``cnn``       :class:`CNN`: 3 conv (16, 32, 64) + fc, ReLU           once per inference
``rnn``       :class:`RNN`: 2 x 128 light-GRU (tanh) + leaky readout  every timestep
``scnn``      :class:`SCNN`: CNN with LIF neurons, 10 timesteps      per spike (conv1: per step)
``srnn``      :class:`SRNN`: 2 x 128 SpikGRU, 67 timesteps            per spike (layer-1 W: per step)
``cnn_pixel`` :class:`CNNPerPixel`: the CNN read per pixel (IV.A)    per (input, tap, position)
============  =====================================================  ==========================

Other models of the side studies: ``vgg11 | vgg13 | vgg16 | vgg19`` (:mod:`.vgg`, seed 001),
``binary_mlp | binary_cnn`` (:mod:`.bnn`, seed 002), ``resilience_mlp | resilience_cnn |
resilience_rnn`` (:mod:`.resilience`, seed 004). Neurons (LIF, readout, SpikGRU cells) live in
:mod:`spikenoise.neurons`.

Every ``forward`` is one inference (it calls ``spikenoise.new_inference(self)`` first), so
static errors are drawn once per input sample and held for all its timesteps. Change the error
options later with ``spikenoise.configure(model, errors=..., error_model=...)``; leaving
``reads`` out keeps each layer's read semantics.

Adding a model: one new file here whose class carries ``@register_model("name")``, and its
import line below.

Example::

    import spikenoise as sn
    from spikenoise.models import build_model
    net = build_model("srnn", error_model=sn.MultiLevelNVM.noise_level(2), errors="dynamic")
    logits = net(torch.randn(8, 67, 40))
"""
from __future__ import annotations

from spikenoise.neurons import LIF, LeakyReadout, SpikeFunction, spike

from .base import KWSModel
from .cnn import CNN, CNNPerPixel
from .registry import KWS_MODELS, MODELS, WIDTHS, build_model, model_names, register_model
from .rnn import RNN, LightGRULayer
from .scnn import SCNN
from .srnn import SRNN, SpikGRULayer

from . import bnn, resilience, vgg  # noqa: E402,F401  (registers their models; after the KWS zoo)

__all__ = ["build_model", "register_model", "model_names", "MODEL_NAMES", "MODELS", "WIDTHS", "CNN", "RNN", "SCNN", "SRNN",
           "CNNPerPixel", "KWSModel", "LightGRULayer", "SpikGRULayer", "LIF", "LeakyReadout", "SpikeFunction",
           "spike"]

#: names of the keyword-spotting models (``MODELS`` holds every registered model)
MODEL_NAMES = tuple(KWS_MODELS)
