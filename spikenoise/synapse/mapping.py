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

from ..noise.base import ErrorModel
from .base import NoisySynapse

__all__ = ["WeightMapping"]


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
