"""MLP, CNN and weight re-use RNN of seed paper 004 (Bennett, Dellana et al., "Evaluating complexity
and resilience trade-offs in emerging memory inference machines"), every synapse a
:class:`~spikenoise.synapse.TiledLinear` / :class:`~spikenoise.synapse.TiledConv2d` (ideal analog by
default: no arrays, no ADC, no DAC), so programming variation, input noise, tiles and ADCs are
all one ``configure`` / ``tile`` / ``set_analog`` away.

Seed 004 layouts (MNIST, 784 inputs) and what we build (``input_size`` M, default 64 for the
8 x 8 scikit-learn digits):

=========  ==========================================  =========================================
model      seed 004                                     here
=========  ==========================================  =========================================
MLP        784-128-10 (101,770 parameters)              M-``hidden``-10, default hidden 150
CNN        C3/3-C3/3-MP2-C3/6-C3/6-D100-D10 (119,322)    the same layout ('same' 3x3 convolutions)
RNN        core (M/t + H) -> H re-used t times,         the same, ``core_size`` N = M/t + H
           H = 400 - M/t; readout H -> 10 at step t     (default 112)
=========  ==========================================  =========================================

The RNN (seed 004 Fig. 2b, "Mosaics"): the flattened input is cut into ``t`` chunks of ``M/t``
values; at step ``s`` one weight matrix reads ``[x_s, h_{s-1}]`` (``h_0 = 0``) and
``h_s = act(W [x_s; h_{s-1}] + b)``; the readout acts at the last step only. The same physical
array is used ``t`` times per inference (``reads="step"``): with static errors all steps see
the same programmed weights, with dynamic errors every step reads afresh.

Activation: bounded ReLU ``min(max(x, 0), 1)`` (seed 004: "bounded rectified linear function").
Noise regularization (seed 004, "jittered" neurons): with ``jitter = s`` every hidden neuron's
pre-activation gets ``N(0, s^2)`` noise in training mode only.

Every ``forward`` is one inference (``spikenoise.new_inference(self)`` first).
"""
from __future__ import annotations

from typing import Any, Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F

from spikenoise.noise.analog import GaussianVariation
from spikenoise.noise.base import ErrorModel
from spikenoise.synapse import TiledConv2d, TiledLinear, new_inference

from .registry import build_model, register_model

__all__ = ["Jitter", "relu1", "MLP", "ResilienceCNN", "ReuseRNN", "build_resilience_model", "RESILIENCE_MODELS",
           "IDEAL"]

#: layer options of an ideal analog synapse (no arrays, ADC, DAC)
IDEAL = dict(array=None, adc_bits=None, input_bits=None, input_range=None)


def relu1(x: torch.Tensor) -> torch.Tensor:
    """Bounded ReLU ``min(max(x, 0), 1)``."""
    return x.clamp(0.0, 1.0)


class Jitter(nn.Module):
    """Training-only Gaussian jitter ``x + sigma * N(0, 1)`` (seed 004 noise regularization)."""

    def __init__(self, sigma: float = 0.0):
        super().__init__()
        if not float(sigma) >= 0:
            raise ValueError(f"jitter sigma must be >= 0, got {sigma!r}")
        self.sigma = float(sigma)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.training and self.sigma > 0:
            return x + self.sigma * torch.randn_like(x)
        return x

    def extra_repr(self) -> str:
        return f"sigma={self.sigma:g}, training only"


def _syn(error_model: ErrorModel | None, errors: str, analog: dict[str, Any]) -> dict[str, Any]:
    opts = dict(IDEAL)
    opts.update(analog)
    em = GaussianVariation(0.0, bits=None) if error_model is None else error_model
    return dict(error_model=em, errors=errors, **opts)


@register_model("resilience_mlp")
class MLP(nn.Module):
    """Fully connected network ``M -> hidden... -> n_classes`` with bounded ReLU.

    Args:
        input_size: flattened input size M (64 for 8x8 digits).
        hidden: hidden layer sizes.
        n_classes: outputs.
        jitter: training-time pre-activation noise of every hidden neuron.
        error_model, errors: for every synapse (default error-free ``GaussianVariation``).
        **analog: tile options of every synapse (default ideal).

    Shapes: ``(B, *)`` with ``prod(*) == M`` -> logits ``(B, n_classes)``.
    """

    def __init__(self, input_size: int = 64, hidden: Sequence[int] = (150,), n_classes: int = 10, *,
                 jitter: float = 0.0, error_model: ErrorModel | None = None, errors: str = "none", **analog: Any):
        super().__init__()
        syn = _syn(error_model, errors, analog)
        sizes = [input_size, *hidden]
        self.hidden = nn.ModuleList(TiledLinear(a, b, **syn) for a, b in zip(sizes[:-1], sizes[1:]))
        self.out = TiledLinear(sizes[-1], n_classes, **syn)
        self.jitter = Jitter(jitter)
        self.input_size = input_size

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        new_inference(self)
        h = x.reshape(x.shape[0], -1)
        for layer in self.hidden:
            h = relu1(self.jitter(layer(h)))
        return self.out(h)


@register_model("resilience_cnn")
class ResilienceCNN(nn.Module):
    """Seed 004 CNN: C3/3-C3/3-MP2-C3/6-C3/6-D100-D10 ('same' 3x3 convolutions, bounded ReLU).

    Args:
        image_size: ``(H, W)`` (8x8 digits, 28x28 MNIST).
        channels: the four convolutions' channels (seed: 3, 3, 6, 6).
        dense: hidden dense units (seed: 100).
        n_classes, jitter, error_model, errors, **analog: as :class:`MLP`.

    Shapes: ``(B, H, W)``, ``(B, 1, H, W)`` or ``(B, H*W)`` -> ``(B, n_classes)``.
    """

    def __init__(self, image_size: tuple[int, int] = (8, 8), channels: Sequence[int] = (3, 3, 6, 6),
                 dense: int = 100, n_classes: int = 10, *, jitter: float = 0.0,
                 error_model: ErrorModel | None = None, errors: str = "none", **analog: Any):
        super().__init__()
        if len(channels) != 4:
            raise ValueError(f"channels must name 4 convolutions, got {channels!r}")
        syn = _syn(error_model, errors, analog)
        c = [1, *channels]
        self.convs = nn.ModuleList(TiledConv2d(c[i], c[i + 1], 3, padding=1, **syn) for i in range(4))
        self.image_size = tuple(image_size)
        h, w = image_size[0] // 2, image_size[1] // 2
        self.fc = TiledLinear(c[4] * h * w, dense, **syn)
        self.out = TiledLinear(dense, n_classes, **syn)
        self.jitter = Jitter(jitter)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        new_inference(self)
        h = x.reshape(x.shape[0], 1, *self.image_size)
        for i, conv in enumerate(self.convs):
            h = relu1(self.jitter(conv(h)))
            if i == 1:
                h = F.max_pool2d(h, 2)
        h = relu1(self.jitter(self.fc(h.flatten(1))))
        return self.out(h)


@register_model("resilience_rnn")
class ReuseRNN(nn.Module):
    """Seed 004 "Mosaics" RNN: one ``(M/t + H) -> H`` matrix re-used over ``t`` steps.

    Args:
        input_size: M (flattened input; must be divisible by ``steps``).
        steps: t, the number of chunks / re-uses.
        core_size: N = M/t + H, the rows of the re-used matrix (seed 004: 400); ``H = N - M/t``.
        n_classes, jitter, error_model, errors, **analog: as :class:`MLP`.

    Shapes: ``(B, *)`` with ``prod(*) == M`` -> ``(B, n_classes)``.
    """

    def __init__(self, input_size: int = 64, steps: int = 8, core_size: int = 112, n_classes: int = 10, *,
                 jitter: float = 0.0, error_model: ErrorModel | None = None, errors: str = "none", **analog: Any):
        super().__init__()
        if steps < 1 or input_size % steps:
            raise ValueError(f"steps must divide input_size {input_size}, got {steps!r}")
        self.chunk = input_size // steps
        self.hidden_size = core_size - self.chunk
        if self.hidden_size < 1:
            raise ValueError(f"core_size {core_size} leaves no hidden units for chunks of {self.chunk}")
        syn = _syn(error_model, errors, analog)
        self.core = TiledLinear(core_size, self.hidden_size, **{**syn, "reads": "step"})
        self.out = TiledLinear(self.hidden_size, n_classes, **syn)
        self.jitter = Jitter(jitter)
        self.input_size, self.steps = input_size, steps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        new_inference(self)
        B = x.shape[0]
        chunks = x.reshape(B, self.steps, self.chunk)
        h = x.new_zeros(B, self.hidden_size)
        for s in range(self.steps):
            h = relu1(self.jitter(self.core(torch.cat([chunks[:, s], h], dim=1))))
        return self.out(h)


#: name -> class
RESILIENCE_MODELS = {"mlp": MLP, "cnn": ResilienceCNN, "rnn": ReuseRNN}


def build_resilience_model(name: str, **kwargs: Any) -> nn.Module:
    """Build ``"mlp"``, ``"cnn"`` or ``"rnn"`` (``build_model("resilience_" + name, **kwargs)``)."""
    if name not in RESILIENCE_MODELS:
        raise ValueError(f"model must be one of {sorted(RESILIENCE_MODELS)}, got {name!r}")
    return build_model(f"resilience_{name}", **kwargs)
