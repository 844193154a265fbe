"""Binarized neural networks with weight bit errors (seed paper 002; BNN recipe of Courbariaux et al.).

Weights and activations are +-1:

* **Weights** live in the synapse engine as 2-level NVM cells (values -1, +1, see
  :func:`spikenoise.noise.binary.binary_weights`): ``W_b = sign(W_hidden)``, read with bit error
  rate ``ber``. The straight-through estimator passes the gradient to the hidden weights, which
  are clipped to [-1, 1] before every training forward (BinaryConnect).
* **Activations**: :func:`sign_ste` = ``+1 if x >= 0 else -1`` with the clipped straight-through
  gradient (``dL/dx = dL/dy`` for ``|x| <= 1``, 0 outside; "hardtanh STE").
* **Thresholds**: batch norm before each sign; ``sign(BN(a))`` equals a comparison of ``a`` with a
  learned per-neuron threshold (seed 002, eq. 2), see :func:`bn_thresholds`.

Error-aware training (seed 002, section IV): train with ``errors="static"`` at a training BER. Each
forward draws fresh errors (each forward is one inference); the forward pass computes with the
erroneous weights ``W_err`` and the backward pass propagates through the same ``W_err`` (the synapse
engine computes ``x W_err`` and routes ``dL/dW_err`` straight through to the hidden weights).

Draw granularity. The engine draws static errors per batch row -- a ``(batch, 4096, 4096)`` tensor
per layer for the default MLP, which does not fit in memory. :class:`BinaryLinear` /
:class:`BinaryConv2d` therefore add ``draws="batch"`` (default): one error pattern per forward, shared
by the rows of the batch (what seed 002 does: "we added errors at each iteration"); it is the
engine's own ``draws`` option (:mod:`spikenoise.synapse.base`). ``draws="row"`` keeps per-row draws.
The layer types live in :mod:`spikenoise.synapse.layers` and are re-exported here.
"""
from __future__ import annotations

from typing import Sequence

import torch
import torch.nn as nn

from spikenoise.noise.base import ErrorModel
from spikenoise.synapse import BinaryConv2d, BinaryLinear, NoisySynapse, new_inference, synapses

from .base import image_batch
from .registry import register_model

__all__ = ["SignSTE", "sign_ste", "BinaryActivation", "BinaryLinear", "BinaryConv2d", "BinaryMLP",
           "BinaryCNN", "bn_thresholds", "clip_hidden_weights", "DRAWS"]

#: one draw per forward (``"batch"``, the default here) or per batch row (the engine's ``draws``)
DRAWS = ("batch", "row")


class SignSTE(torch.autograd.Function):
    """``sign`` with a clipped straight-through gradient (see :func:`sign_ste`)."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, clip: float) -> torch.Tensor:
        ctx.save_for_backward(x)
        ctx.clip = clip
        return torch.where(x >= 0, torch.ones_like(x), -torch.ones_like(x))

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        (x,) = ctx.saved_tensors
        return grad * (x.abs() <= ctx.clip).to(grad.dtype), None


def sign_ste(x: torch.Tensor, clip: float = 1.0) -> torch.Tensor:
    """+1 where ``x >= 0`` else -1; gradient passes unchanged where ``|x| <= clip``, zero outside."""
    return SignSTE.apply(x, float(clip))


class BinaryActivation(nn.Module):
    """Module form of :func:`sign_ste`."""

    def __init__(self, clip: float = 1.0):
        super().__init__()
        self.clip = float(clip)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return sign_ste(x, self.clip)

    def extra_repr(self) -> str:
        return f"clip={self.clip}"


@torch.no_grad()
def clip_hidden_weights(model: nn.Module, bound: float = 1.0) -> None:
    """Clip the hidden weights of every synapse to ``[-bound, bound]`` (BinaryConnect)."""
    for s in synapses(model):
        s.weight.clamp_(-bound, bound)


@torch.no_grad()
def bn_thresholds(bn: nn.modules.batchnorm._BatchNorm) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-neuron threshold ``T`` and direction ``d`` with ``sign(BN(a)) = +1  <=>  d * (a - T) >= 0``.

    ``T = mean - beta * sqrt(var + eps) / gamma`` (eval statistics); ``d = sign(gamma)``. For
    ``gamma == 0`` the output is constant ``sign(beta)``: ``T`` is then -inf (always +1) or +inf.
    """
    std = torch.sqrt(bn.running_var + bn.eps)
    gamma = bn.weight if bn.affine else torch.ones_like(std)
    beta = bn.bias if bn.affine else torch.zeros_like(std)
    d = torch.sign(gamma)
    T = bn.running_mean - beta * std / torch.where(gamma == 0, torch.ones_like(gamma), gamma)
    const = torch.where(beta >= 0, torch.full_like(T, -float("inf")), torch.full_like(T, float("inf")))
    T = torch.where(gamma == 0, const, T)
    d = torch.where(gamma == 0, torch.ones_like(d), d)
    return T, d


class _BNN(nn.Module):
    """Shared forward: one forward = one inference; hidden weights clipped before training forwards."""

    body: nn.Sequential

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.training:
            clip_hidden_weights(self, 1.0)
        new_inference(self)
        return self.body(self._prepare(x))

    def _prepare(self, x: torch.Tensor) -> torch.Tensor:
        return x

    def binary_layers(self) -> list[NoisySynapse]:
        return list(synapses(self))


@register_model("binary_mlp")
class BinaryMLP(_BNN):
    """Fully connected BNN (seed 002, Fig. 2a): ``in -> 4096 -> 4096 -> classes`` by default.

    Each hidden layer: binary linear -> batch norm (learned threshold) -> sign -> dropout; the output
    layer: binary linear -> batch norm (logits). The input stays real-valued (first layer).

    Args:
        in_features: flattened input size (64 for 8 x 8 digits, 784 for MNIST).
        num_classes: classes.
        hidden: hidden layer sizes.
        dropout_in, dropout: dropout on the input and after each hidden layer.
        error_model, errors, reads, draws: weight error options of every layer.

    Shapes: ``(B, *)`` flattened to ``(B, in_features)`` -> logits ``(B, num_classes)``.
    """

    def __init__(self, in_features: int, num_classes: int = 10, hidden: Sequence[int] = (4096, 4096),
                 dropout_in: float = 0.1, dropout: float = 0.2, *, error_model: ErrorModel | None = None,
                 errors: str = "none", reads: str = "once", draws: str = "batch"):
        super().__init__()
        if not hidden or any(int(h) < 1 for h in hidden):
            raise ValueError(f"hidden must be a non-empty list of positive sizes, got {hidden!r}")
        self.in_features = int(in_features)
        syn = dict(error_model=error_model, errors=errors, reads=reads, draws=draws)
        layers: list[nn.Module] = [nn.Dropout(dropout_in)]
        n = self.in_features
        for h in hidden:
            layers += [BinaryLinear(n, int(h), **syn), nn.BatchNorm1d(int(h)), BinaryActivation(), nn.Dropout(dropout)]
            n = int(h)
        layers += [BinaryLinear(n, num_classes, **syn), nn.BatchNorm1d(num_classes)]
        self.body = nn.Sequential(*layers)

    def _prepare(self, x: torch.Tensor) -> torch.Tensor:
        x = x.flatten(1)
        if x.shape[1] != self.in_features:
            raise ValueError(f"BinaryMLP expects {self.in_features} input features, got shape {tuple(x.shape)}")
        return x


@register_model("binary_cnn")
class BinaryCNN(_BNN):
    """Convolutional BNN (seed 002, Fig. 2b; Courbariaux's CIFAR-10 BNN scaled by ``width``).

    Default: ``2 x 128C3 - MP2 - 2 x 256C3 - MP2 - 2 x 512C3 - MP2 - 2 x 1024FC - classes``; each conv:
    binary conv -> [max-pool] -> batch norm -> sign. A pool halves a spatial dim only while it is >= 2.

    Args:
        in_channels, input_size, num_classes: data shape.
        channels: conv channels, "M" for a max-pool after the preceding conv.
        fc: hidden fully connected sizes.
        width: channel/unit multiplier.
        dropout: on the fc hidden layers.
        error_model, errors, reads, draws: as :class:`BinaryMLP`.

    Shapes: ``(B, C, H, W)`` (or ``(B, H, W)`` for one channel) -> logits ``(B, num_classes)``.
    """

    def __init__(self, in_channels: int = 3, input_size: tuple[int, int] = (32, 32), num_classes: int = 10,
                 channels: Sequence = (128, 128, "M", 256, 256, "M", 512, 512, "M"), fc: Sequence[int] = (1024, 1024),
                 width: float = 1.0, dropout: float = 0.2, *, error_model: ErrorModel | None = None,
                 errors: str = "none", reads: str = "once", draws: str = "batch"):
        super().__init__()
        if not (isinstance(width, (int, float)) and width > 0):
            raise ValueError(f"width must be a positive number, got {width!r}")
        syn = dict(error_model=error_model, errors=errors, reads=reads, draws=draws)
        self.in_channels, self.input_size = in_channels, (int(input_size[0]), int(input_size[1]))
        h, w = self.input_size
        c = in_channels
        layers: list[nn.Module] = []
        spec = list(channels)
        for i, v in enumerate(spec):
            if v == "M":
                continue
            out = max(1, int(round(int(v) * width)))
            layers.append(BinaryConv2d(c, out, 3, 1, 1, **syn))
            if i + 1 < len(spec) and spec[i + 1] == "M":
                kh, kw = (2 if h >= 2 else 1), (2 if w >= 2 else 1)
                if kh * kw > 1:
                    layers.append(nn.MaxPool2d((kh, kw)))
                    h, w = h // kh, w // kw
            layers += [nn.BatchNorm2d(out), BinaryActivation()]
            c = out
        layers.append(nn.Flatten())
        n = c * h * w
        for f in fc:
            f = max(1, int(round(int(f) * width)))
            layers += [BinaryLinear(n, f, **syn), nn.BatchNorm1d(f), BinaryActivation(), nn.Dropout(dropout)]
            n = f
        layers += [BinaryLinear(n, num_classes, **syn), nn.BatchNorm1d(num_classes)]
        self.body = nn.Sequential(*layers)
        self.feature_shape = (c, h, w)

    def _prepare(self, x: torch.Tensor) -> torch.Tensor:
        return image_batch(x, self.in_channels, self.input_size, "BinaryCNN")
