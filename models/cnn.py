"""CNN for keyword spotting (seed paper 000, section II.B) and its per-pixel-read variant (IV.A).

Topology (input ``(B, 67, 40)`` = (batch, time, frequency) seen as a 1-channel image, H = time,
W = frequency)::

    conv1: 1 -> 16,  kernel (6, 4), stride (2, 2), padding (2, 2)   -> (16, 33, 21)
    conv2: 16 -> 32, same                                          -> (32, 16, 11)
    conv3: 32 -> 64, same                                          -> (64, 8, 6)
    fc:    64*8*6 = 3072 -> n_classes (logits)

Every synapse computes ``y = scale * (x (*) W_read) + bias`` (:mod:`spikenoise.synapse`), with
``h_k = relu(conv_k(h_{k-1}))``. ReLU is our choice (the paper names no CNN activation; it reports
that bounded activations made the *RNN* more robust, section IV.C); pass ``activation="tanh"``
to compare. No batch norm, no pooling (the paper lists none).

Reads: the CNN reads every weight once per inference (``reads="once"``, data re-use, seed 000
II.C), so static and dynamic errors coincide. :class:`CNNPerPixel` reads every weight at every
use, as the SCNN does (seed 000 IV.A: "the CNN was tested with the same implementation as SCNN
(i.e. with the weights being read at each pixel)").
"""
from __future__ import annotations

import torch
import torch.nn as nn

from spikenoise.noise.base import ErrorModel
from spikenoise.synapse import NoisyConv2d, NoisyLinear, READS, configure

from .base import KWSModel
from .registry import register_model

__all__ = ["CNN", "CNNPerPixel", "conv_output_shape"]

_ACTIVATIONS = {"relu": torch.relu, "tanh": torch.tanh}


def conv_output_shape(hw: tuple[int, int], kernel, stride, padding) -> tuple[int, int]:
    """(H, W) after a convolution (no dilation)."""
    return tuple((n + 2 * p - k) // s + 1 for n, k, s, p in zip(hw, kernel, stride, padding))  # type: ignore[return-value]


@register_model("cnn", kws=True)
class CNN(KWSModel):
    """Three noisy convolutions (16, 32, 64 channels) and one fully connected layer.

    Args:
        n_classes: number of output classes (12 for GSCD KWS).
        error_model: e.g. ``MultiLevelNVM.noise_level(2)`` (default: error-free 8-level NVM).
        errors: ``"none" | "static" | "dynamic"`` for every synapse.
        reads: when a weight is read (default ``"once"`` per inference).
        sampler: per-spike sampler (used only with ``reads="spike"``).
        channels, kernel, stride, padding: the conv stack (paper defaults).
        input_shape: ``(time, freq)`` of the input, fixed because the fc size depends on it.
        activation: ``"relu"`` (default) or ``"tanh"``.

    Shapes: ``x`` ``(B, 67, 40)`` -> logits ``(B, n_classes)``.
    """

    default_reads = "once"

    def __init__(self, n_classes: int = 12, error_model: ErrorModel | None = None, errors: str = "none", *,
                 reads: str | None = None, sampler: str = "auto", channels: tuple[int, ...] = (16, 32, 64),
                 kernel: tuple[int, int] = (6, 4), stride: tuple[int, int] = (2, 2),
                 padding: tuple[int, int] = (2, 2), input_shape: tuple[int, int] = (67, 40),
                 activation: str = "relu"):
        super().__init__(n_classes, input_shape)
        reads = self.default_reads if reads is None else reads
        if reads not in READS:
            raise ValueError(f"reads must be one of {READS}, got {reads!r}")
        if activation not in _ACTIVATIONS:
            raise ValueError(f"activation must be one of {sorted(_ACTIVATIONS)}, got {activation!r}")
        self.activation = activation
        syn = dict(error_model=error_model, errors=errors, reads=reads, sampler=sampler)
        self.convs = nn.ModuleList()
        c_in, hw = 1, self.input_shape
        for c_out in channels:
            self.convs.append(NoisyConv2d(c_in, c_out, kernel, stride, padding, **syn))
            c_in, hw = c_out, conv_output_shape(hw, kernel, stride, padding)
        if min(hw) < 1:
            raise ValueError(f"input_shape {input_shape} is too small for {len(channels)} convolutions")
        self.feature_shape = (c_in, *hw)
        self.fc = NoisyLinear(c_in * hw[0] * hw[1], self.n_classes, **syn)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.start_inference(x, fixed_time=True)
        act = _ACTIVATIONS[self.activation]
        h = x.unsqueeze(1)  # (B, 1, time, freq)
        for conv in self.convs:
            h = act(conv(h))
        self.timesteps = 1
        return self.fc(h.flatten(1))


@register_model("cnn_pixel", kws=True)
class CNNPerPixel(CNN):
    """The :class:`CNN` with every weight read at every use, like the SCNN (seed 000 IV.A).

    ``reads="spike"`` on graded inputs: each (non-zero input, kernel tap, output position) of a
    convolution is its own read, weighted by the input value (a zero input is no read). For a
    fully connected layer every weight is used once per inference anyway, so per-pixel and
    once-per-inference reads have the same distribution there.

    With ``errors="dynamic"``, ``sampler="auto"`` resolves to ``"brute"`` on these graded inputs
    (the exact fast sampler needs spike counts): exact but memory heavy, one weight draw per
    (batch row, output position), processed in chunks. In evaluation (``torch.no_grad()``) that
    is about 2.3 M draws per sample for conv3; with gradients every draw is kept for the backward
    pass (~1 GB per layer at batch 128), so train the :class:`CNN` and evaluate with
    :meth:`from_cnn`. ``sampler="gaussian"`` (matching mean and variance per output, labelled
    approximate) is much cheaper. With ``errors="static"`` this model equals the CNN.
    """

    default_reads = "spike"

    @classmethod
    def from_cnn(cls, cnn: CNN, **kwargs) -> "CNNPerPixel":
        """A per-pixel copy of a (trained) CNN: same weights and error options, reads per pixel.

        ``kwargs`` override constructor arguments (e.g. ``sampler="gaussian"``).
        """
        first = cnn.convs[0]
        args = dict(n_classes=cnn.n_classes, error_model=first.error_model, errors=first.errors,
                    sampler=first.sampler, channels=tuple(c.out_channels for c in cnn.convs),
                    kernel=first.kernel_size, stride=first.stride, padding=first.padding,
                    input_shape=cnn.input_shape, activation=cnn.activation)
        args.update(kwargs)
        model = cls(**args)
        model.load_state_dict(cnn.state_dict())
        # the synapses' extra state carries reads="once" from the CNN: put the per-pixel reads back
        configure(model, reads=kwargs.get("reads", "spike"), sampler=args["sampler"],
                  errors=args["errors"], error_model=args["error_model"])
        return model.to(first.weight.device)
