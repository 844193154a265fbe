"""How :func:`~spikenoise.synapse.convert` puts a trained float weight into a noisy synapse.

A :class:`WeightMapping` holds the conversion options (error model, errors, reads, sampler) and
fills a new synapse from a float weight ``w``: hidden weights ``w / s`` and ``scale = s`` with
``s = error_model.fit_scale(w)``, so the synapse computes ``quantize(w / s) * s``. Every layer
type converted by ``convert`` (linear, convolutions, recurrent gate matrices, snnTorch and Norse
weights) goes through it, so all of them follow the same rule.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
import torch.nn as nn

from ..noise.base import ErrorModel
from .base import NoisySynapse

__all__ = ["WeightMapping", "layer_args"]


def layer_args(old: nn.Module, verb: str = "convert") -> tuple:
    """Positional constructor arguments of a noisy layer shaped like ``old`` (an ``nn.Linear`` or a
    torch convolution of any dimension); ``verb`` names the operation in the error message."""
    if isinstance(old, nn.modules.conv._ConvNd):
        if old.padding_mode != "zeros" or isinstance(old.padding, str):
            raise ValueError(f"cannot {verb} {old}: only numeric zero padding is supported")
        return (old.in_channels, old.out_channels, old.kernel_size, old.stride, old.padding, old.dilation,
                old.groups, old.bias is not None)
    if isinstance(old, nn.Linear):
        return old.in_features, old.out_features, old.bias is not None
    raise TypeError(f"cannot {verb} {type(old).__name__}: not a Linear or convolution layer")


@dataclass
class WeightMapping:
    """Options of one conversion; ``map_weights=False`` keeps hidden weights ``w`` and scale 1."""

    error_model: ErrorModel
    errors: str = "static"
    reads: str = "spike"
    sampler: str = "auto"
    learn_scale: bool = True
    map_weights: bool = True

    def synapse_kwargs(self) -> dict[str, Any]:
        """Keyword arguments every noisy layer constructor takes."""
        return dict(error_model=self.error_model, errors=self.errors, reads=self.reads, sampler=self.sampler,
                    learn_scale=self.learn_scale)

    @torch.no_grad()
    def fill(self, new: NoisySynapse, weight: torch.Tensor, bias: torch.Tensor | None = None,
             training: bool = True) -> NoisySynapse:
        """Set ``new``'s hidden weights from float ``weight`` (reshaped to ``new.weight``'s shape);
        the new weight and bias are trainable when the old ones were."""
        w = weight.detach().reshape(new.weight.shape).to(new.weight.dtype)
        s = self.error_model.fit_scale(w) if self.map_weights else 1.0
        new.weight.copy_(w / s)
        new.scale.fill_(s)
        if new.bias is not None:
            if bias is None:
                raise ValueError(f"{type(new).__name__} has a bias but the converted weight has none")
            new.bias.copy_(bias.detach())
            new.bias.requires_grad_(bias.requires_grad)
        # a frozen weight (snnTorch learn_recurrent=False, a buffer) stays frozen
        new.weight.requires_grad_(weight.requires_grad)
        new.train(training)
        return new

    def twin(self, cls: type, old: nn.Module) -> NoisySynapse:
        """The noisy layer ``cls`` shaped like the trained ``old`` (Linear or convolution), filled from it."""
        new = cls(*layer_args(old), device=old.weight.device, dtype=old.weight.dtype, **self.synapse_kwargs())
        return self.fill(new, old.weight, old.bias, old.training)

