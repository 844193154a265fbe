"""Noisy layer types: ``NoisyLinear``, ``NoisyConv2d`` and their +-1 (BNN) forms.

When a read happens (``reads``) and which sampler draws per-spike reads (``sampler``):

``reads="once"``: the weights are read once per inference (CNN with data re-use), so static and
dynamic errors coincide. ``"step"``: once per call (one timestep) (RNN); a zero input
contributes nothing, so only non-zero inputs count as reads in the operation counters.
``"spike"``: once per incoming spike (event-driven SNN); a zero input is no read; for Conv2d each
(spike, kernel tap, output position) is its own read; an integer input ``c`` is ``|c|`` spikes
(``c`` reads); a graded input ``x`` is one read weighted by ``x``.

Samplers for ``errors="dynamic", reads="spike"`` (:mod:`spikenoise.synapse.sampling`):
``"exact"``, ``"brute"``, ``"gaussian"`` (for NoisyLinear also ``reads="step"``: fast for recurrent
layers on graded inputs). ``"auto"`` picks ``"exact"`` where it applies and otherwise ``"brute"``; in
training with gradients it picks ``"brute"``, so the backward pass sees the very weights the
forward pass read.
"""
from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from ..noise.base import ErrorModel
from ..noise.binary import binary_weights
from .base import NoisySynapse, is_integer_valued
from .sampling import (brute_conv_reads, brute_linear_reads, exact_spike_reads, gaussian_reads, rowwise_linear,
                       with_reads)

__all__ = ["NoisyLinear", "NoisyConv2d", "BinaryLinear", "BinaryConv2d"]


class _Engine(NoisySynapse):
    """The forward shared by the noisy layers, given the layer's maps (:meth:`op`, :meth:`row_op`)."""

    def op(self, x: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
        """The clean linear map of input ``x`` with weights ``w``."""
        raise NotImplementedError

    def row_op(self, x: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
        """The map of batch row ``b`` of ``x`` with its own weights ``w[b]``."""
        raise NotImplementedError

    def resolve_sampler(self, x: torch.Tensor) -> str:
        """The sampler a per-spike read of input ``x`` uses (``sampler`` with ``"auto"`` resolved)."""
        if self.sampler == "gaussian":
            return "gaussian"
        exact_ok = self.error_model.discrete() is not None and is_integer_valued(x)
        if self.sampler == "exact":
            if not exact_ok:
                raise ValueError(
                    "sampler='exact' needs integer (spike-count) inputs and a discrete error model; "
                    f"got {'graded inputs' if self.error_model.discrete() is not None else repr(self.error_model)}")
            return "exact"
        if self.sampler == "brute":
            return "brute"
        grad = torch.is_grad_enabled() and (self.weight.requires_grad or x.requires_grad)
        return "exact" if exact_ok and not grad else "brute"

    def drawn_forward(self, x: torch.Tensor, wq: torch.Tensor) -> torch.Tensor:
        """Forward with a static or per-call draw (``read_mode`` "frozen" or "per_row")."""
        reads = self.draw_reads(wq, self.draw_for(wq, x.shape[0]))
        if self.draws == "batch" and reads.shape[0] == 1:
            # value and input gradient through the drawn weights, weight gradient straight through
            return self.scale_and_bias(with_reads(x, wq, reads[0], self.op, self.op))
        reads = reads.expand(x.shape[0], *reads.shape[1:])  # a pinned chip is shared by the rows
        return self.scale_and_bias(with_reads(x, wq, reads, self.row_op, self.op))

    def spike_reads(self, x: torch.Tensor, wq: torch.Tensor) -> torch.Tensor:
        """Dynamic per-spike reads of input ``x`` (before scale and bias)."""
        how = self.resolve_sampler(x)
        if how == "gaussian":
            return gaussian_reads(self.error_model, x, wq, self.op)
        if how == "exact":
            return exact_spike_reads(self.error_model, x, wq, self.op, getattr(self, "groups", 1))
        return self.brute_reads(x, wq)

    def brute_reads(self, x: torch.Tensor, wq: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError


class NoisyLinear(_Engine, nn.Linear):
    """``nn.Linear`` whose weights live in NVM cells.

    Args:
        in_features, out_features, bias: as ``nn.Linear``.
        error_model: an :class:`~spikenoise.noise.ErrorModel` (default: error-free 8-level NVM).
        errors: ``"none" | "static" | "dynamic"``.
        reads: ``"once" | "step" | "spike"``.
        sampler: ``"auto" | "exact" | "brute" | "gaussian"`` (per-spike dynamic reads only).
        learn_scale: train the per-layer scale (default True).
        draws: ``"row"`` (a draw per batch row) or ``"batch"`` (one shared by the batch).

    Shapes: input ``(B, in)`` or ``(B, *, in)``; output ``(B, out)`` / ``(B, *, out)``. Batch rows
    (dim 0) get independent errors; extra middle dims share a row's static draw.
    """

    def __init__(self, in_features: int, out_features: int, bias: bool = True, *,
                 error_model: ErrorModel | None = None, errors: str = "none", reads: str = "spike",
                 sampler: str = "auto", learn_scale: bool = True, draws: str = "row", device=None, dtype=None):
        nn.Linear.__init__(self, in_features, out_features, bias, device=device, dtype=dtype)
        self.init_synapse(error_model, errors, reads, sampler, learn_scale, draws)

    def extra_repr(self) -> str:
        return f"{nn.Linear.extra_repr(self)}, {self.synapse_repr()}"

    def op(self, x: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
        return F.linear(x, w)

    def row_op(self, x: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
        return rowwise_linear(x, w)

    def brute_reads(self, x: torch.Tensor, wq: torch.Tensor) -> torch.Tensor:
        return brute_linear_reads(self.error_model, x, wq)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() < 1 or x.shape[-1] != self.in_features:
            raise ValueError(f"NoisyLinear expects input (..., {self.in_features}), got shape {tuple(x.shape)}")
        wq = self.quantized_weight()
        mode = self.read_mode
        if mode == "clean":
            return self.scale_and_bias(F.linear(x, wq))
        if x.dim() == 1:
            return self.forward(x.unsqueeze(0)).squeeze(0)
        if mode == "per_row" and self.sampler == "gaussian" and self.draws == "row" and not self.pinned:
            # outputs use disjoint weights, so a per-output Gaussian is the moment-matched law
            return self.scale_and_bias(gaussian_reads(self.error_model, x, wq, F.linear, counts_are_reads=False))
        if mode in ("frozen", "per_row"):
            return self.drawn_forward(x, wq)
        # per spike: every row of every middle dim is its own set of reads
        y = self.spike_reads(x.reshape(-1, self.in_features), wq)
        return self.scale_and_bias(y.reshape(*x.shape[:-1], self.out_features))


class NoisyConv2d(_Engine, nn.Conv2d):
    """``nn.Conv2d`` whose weights live in NVM cells (see :class:`NoisyLinear` for the options).

    Shapes: input ``(B, C_in, H, W)``, output ``(B, C_out, H', W')``. With ``reads="spike"`` each
    (spike, kernel tap, output position) is an independent read; static and per-step reads share
    one draw per batch row across positions.
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size, stride=1, padding=0,
                 dilation=1, groups: int = 1, bias: bool = True, *, error_model: ErrorModel | None = None,
                 errors: str = "none", reads: str = "spike", sampler: str = "auto",
                 learn_scale: bool = True, draws: str = "row", device=None, dtype=None):
        if isinstance(padding, str):
            raise ValueError(f"NoisyConv2d needs numeric padding, got {padding!r}")
        nn.Conv2d.__init__(self, in_channels, out_channels, kernel_size, stride, padding, dilation, groups,
                           bias, padding_mode="zeros", device=device, dtype=dtype)
        self.init_synapse(error_model, errors, reads, sampler, learn_scale, draws)

    def extra_repr(self) -> str:
        return f"{nn.Conv2d.extra_repr(self)}, {self.synapse_repr()}"

    def conv(self, x: torch.Tensor, w: torch.Tensor, groups: int | None = None) -> torch.Tensor:
        """This layer's convolution (stride, padding, dilation) of ``x`` with kernels ``w``."""
        return F.conv2d(x, w, None, self.stride, self.padding, self.dilation,
                        self.groups if groups is None else groups)

    def op(self, x: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
        return self.conv(x, w)

    def row_op(self, x: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
        """Convolve each batch row with its own kernel (B, C_out, C_in/g, kh, kw) via groups."""
        B = x.shape[0]
        y = self.conv(x.reshape(1, B * x.shape[1], *x.shape[2:]),
                      w.reshape(B * w.shape[1], *w.shape[2:]), groups=B * self.groups)
        return y.reshape(B, self.out_channels, *y.shape[2:])

    def brute_reads(self, x: torch.Tensor, wq: torch.Tensor) -> torch.Tensor:
        return brute_conv_reads(self.error_model, x, wq, self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() != 4 or x.shape[1] != self.in_channels:
            raise ValueError(f"NoisyConv2d expects input (B, {self.in_channels}, H, W), got shape {tuple(x.shape)}")
        wq = self.quantized_weight()
        mode = self.read_mode
        if mode == "clean":
            return self.scale_and_bias(self.conv(x, wq))
        if mode in ("frozen", "per_row"):
            return self.drawn_forward(x, wq)
        return self.scale_and_bias(self.spike_reads(x, wq))


class BinaryLinear(NoisyLinear):
    """Linear layer with +-1 weights in 2-level NVM (no bias: batch norm follows; seed 002).

    Args:
        in_features, out_features: sizes.
        error_model: default ``binary_weights(0)``; errors/reads as the synapse engine (default
            reads once per inference).
        draws: ``"batch"`` (default: one error pattern per forward) or ``"row"`` (per batch row).

    Shapes: ``(B, in) -> (B, out)``. ``scale`` is fixed at ``1/sqrt(in)`` (batch norm makes it moot).
    """

    def __init__(self, in_features: int, out_features: int, *, error_model: ErrorModel | None = None,
                 errors: str = "none", reads: str = "once", draws: str = "batch"):
        super().__init__(in_features, out_features, bias=False, error_model=error_model or binary_weights(0.0),
                         errors=errors, reads=reads, learn_scale=False, draws=draws)


class BinaryConv2d(NoisyConv2d):
    """Conv2d with +-1 weights in 2-level NVM (no bias); options as :class:`BinaryLinear`.

    Shapes: ``(B, C_in, H, W) -> (B, C_out, H', W')``.
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size=3, stride=1, padding=1, *,
                 error_model: ErrorModel | None = None, errors: str = "none", reads: str = "once",
                 draws: str = "batch"):
        super().__init__(in_channels, out_channels, kernel_size, stride, padding, bias=False,
                         error_model=error_model or binary_weights(0.0), errors=errors, reads=reads,
                         learn_scale=False, draws=draws)
