"""Keyword-spotting model zoo of seed paper 000 (section II.B), every synapse in noisy NVM.

Four models with similar parameter counts, input ``(B, 67, 40)`` = (batch, time, 40 log-Mel
features), output logits ``(B, n_classes)``:

============  =====================================================  ==========================
name          model                                                  default reads
============  =====================================================  ==========================
``cnn``       :class:`CNN`: 3 conv (16, 32, 64) + fc, ReLU           once per inference
``rnn``       :class:`RNN`: 2 x 128 light-GRU (tanh) + leaky readout  every timestep
``scnn``      :class:`SCNN`: CNN with LIF neurons, 10 timesteps      per spike (conv1: per step)
``srnn``      :class:`SRNN`: 2 x 128 SpikGRU, 67 timesteps            per spike (layer-1 W: per step)
``cnn_pixel`` :class:`CNNPerPixel`: the CNN read per pixel (IV.A)    per (input, tap, position)
============  =====================================================  ==========================

Every ``forward`` is one inference (it calls ``spikenoise.new_inference(self)`` first), so
static errors are drawn once per input sample and held for all its timesteps. Change the error
options later with ``spikenoise.configure(model, errors=..., error_model=...)``; leaving
``reads`` out keeps each layer's read semantics.

Example::

    import spikenoise as sn
    from spikenoise.models import build_model
    net = build_model("srnn", error_model=sn.MultiLevelNVM.noise_level(2), errors="dynamic")
    logits = net(torch.randn(8, 67, 40))
"""
from __future__ import annotations

from spikenoise.noise.base import ErrorModel

from ._neurons import LIF, KWSModel, LeakyReadout, SpikeFunction, spike
from .cnn import CNN, CNNPerPixel
from .rnn import RNN, LightGRULayer
from .scnn import SCNN
from .srnn import SRNN, SpikGRULayer

__all__ = ["build_model", "MODEL_NAMES", "MODELS", "CNN", "RNN", "SCNN", "SRNN", "CNNPerPixel", "KWSModel",
           "LightGRULayer", "SpikGRULayer", "LIF", "LeakyReadout", "SpikeFunction", "spike"]

#: model name -> class
MODELS = {"cnn": CNN, "rnn": RNN, "scnn": SCNN, "srnn": SRNN, "cnn_pixel": CNNPerPixel}
#: names accepted by :func:`build_model`
MODEL_NAMES = tuple(MODELS)


def build_model(name: str, n_classes: int = 12, error_model: ErrorModel | None = None, errors: str = "none",
                **kwargs) -> KWSModel:
    """Build a model of the zoo by name (``MODEL_NAMES``).

    Args:
        name: ``"cnn" | "rnn" | "scnn" | "srnn" | "cnn_pixel"``.
        n_classes: number of output classes (12 for the GSCD KWS task).
        error_model: e.g. ``MultiLevelNVM.noise_level(2)`` (default: error-free 8-level NVM).
        errors: ``"none" | "static" | "dynamic"`` for every synapse.
        **kwargs: model-specific options (``reads``, ``sampler``, ``input_reads``, ``hidden``,
            ``channels``, ``timesteps``, ``input_shape``, ...), see each class.
    """
    if name not in MODELS:
        raise ValueError(f"unknown model {name!r}; choose one of {MODEL_NAMES}")
    return MODELS[name](n_classes=n_classes, error_model=error_model, errors=errors, **kwargs)
