"""``NoisyConv3d``: 3-d convolutions (video, event frames with depth) in NVM cells.

Clean, static and per-step reads share one draw per batch row across positions, as
:class:`NoisyConv2d`. Per-spike dynamic reads use the exact sampler (integer spike counts and a
discrete error model) or ``sampler="gaussian"``; the brute-force reference of the 2-d layer is
not implemented in 3-d, so a case that would need it (graded inputs, a non-discrete model, or
gradients with ``sampler="auto"``/``"brute"``) raises instead of approximating silently.
"""
from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from ..noise.base import ErrorModel
from .base import NoisySynapse, is_integer_valued
from .dtypes import engine_forward
from .mapping import WeightMapping
from .sampling import exact_spike_reads, gaussian_reads, with_reads

__all__ = ["NoisyConv3d"]


class NoisyConv3d(NoisySynapse, nn.Conv3d):
    """``nn.Conv3d`` whose weights live in NVM cells (options as :class:`NoisyLinear`).

    Shapes: input ``(B, C_in, D, H, W)``, output ``(B, C_out, D', H', W')``.
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size, stride=1, padding=0, dilation=1,
                 groups: int = 1, bias: bool = True, *, error_model: ErrorModel | None = None, errors: str = "none",
                 reads: str = "spike", sampler: str = "auto", learn_scale: bool = True, draws: str = "row",
                 device=None, dtype=None):
        if isinstance(padding, str):
            raise ValueError(f"NoisyConv3d needs numeric padding, got {padding!r}")
        nn.Conv3d.__init__(self, in_channels, out_channels, kernel_size, stride, padding, dilation, groups, bias,
                           padding_mode="zeros", device=device, dtype=dtype)
        self.init_synapse(error_model, errors, reads, sampler, learn_scale, draws)

    @classmethod
    def from_torch(cls, old: nn.Conv3d, mapping: WeightMapping) -> "NoisyConv3d":
        """The noisy twin of a trained ``nn.Conv3d`` (weights mapped by ``mapping``)."""
        return mapping.twin(cls, old)

    def extra_repr(self) -> str:
        return f"{nn.Conv3d.extra_repr(self)}, {self.synapse_repr()}"

    def conv(self, x: torch.Tensor, w: torch.Tensor, groups: int | None = None) -> torch.Tensor:
        return F.conv3d(x, w, None, self.stride, self.padding, self.dilation, self.groups if groups is None else groups)

    def scale_and_bias(self, y: torch.Tensor) -> torch.Tensor:
        y = y * self.scale
        return y if self.bias is None else y + self.bias.view(1, -1, 1, 1, 1)

    def _row_conv(self, x: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
        """Each batch row with its own kernel ``w[b]`` (via groups)."""
        B = x.shape[0]
        y = self.conv(x.reshape(1, B * x.shape[1], *x.shape[2:]), w.reshape(B * w.shape[1], *w.shape[2:]),
                      groups=B * self.groups)
        return y.reshape(B, self.out_channels, *y.shape[2:])

    @engine_forward
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.check_input(x)
        if x.dim() != 5 or x.shape[1] != self.in_channels:
            raise ValueError(f"NoisyConv3d expects input (B, {self.in_channels}, D, H, W), got shape {tuple(x.shape)}")
        wq = self.quantized_weight()
        mode = self.read_mode
        if mode == "clean":
            return self.scale_and_bias(self.conv(x, wq))
        if mode in ("frozen", "per_row"):
            reads = self.draw_reads(wq, self.draw_for(wq, x.shape[0]))
            if reads.shape[0] == 1:
                return self.scale_and_bias(with_reads(x, wq, reads[0], self.conv, self.conv))
            reads = reads.expand(x.shape[0], *reads.shape[1:])
            return self.scale_and_bias(with_reads(x, wq, reads, self._row_conv, self.conv))
        if self.sampler == "gaussian":
            return self.scale_and_bias(gaussian_reads(self.error_model, x, wq, self.conv))
        grad = torch.is_grad_enabled() and (self.weight.requires_grad or x.requires_grad)
        exact_ok = self.error_model.discrete() is not None and is_integer_valued(x)
        if not exact_ok or self.sampler == "brute" or (self.sampler == "auto" and grad):
            raise ValueError(
                "NoisyConv3d per-spike dynamic reads need integer spike inputs, a discrete error model and, "
                "with gradients, sampler='exact' (the brute-force sampler is 2-d only); or use "
                "sampler='gaussian' or reads='step'")
        return self.scale_and_bias(exact_spike_reads(self.error_model, x, wq, self.conv, self.groups))
