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

from ..noise.base import ErrorModel, check_flag
from ..noise.binary import binary_weights
from .base import NoisySynapse, is_integer_valued
from .nonfinite import BRUTE_MAX_COUNT, FLOAT32_EXACT, check_spike_counts, zero_skipping
from .dtypes import engine_forward
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
                self.refuse_exact(x)
            return "exact"
        if self.sampler == "brute":
            return "brute"
        grad = torch.is_grad_enabled() and (self.weight.requires_grad or x.requires_grad)
        return "exact" if exact_ok and not grad else "brute"

    def refuse_exact(self, x: torch.Tensor) -> None:
        """ValueError naming this layer and a value of ``x`` that is no spike count."""
        if self.error_model.discrete() is None:
            raise ValueError(f"{self.describe()}: sampler='exact' needs a discrete error model, got "
                             f"{self.error_model!r}")
        xd = x.detach()
        bad = ~torch.isfinite(xd) | (xd != torch.round(xd))
        example = xd[bad][0].item() if bool(bad.any()) else None
        raise ValueError(f"{self.describe()}: sampler='exact' needs integer spike counts as input, got "
                         f"{int(bad.sum())} non-integer value(s) such as {example!r}; use sampler='auto' "
                         "(graded inputs are read once, weighted) or 'brute'")

    def safe(self, op):
        """``op`` itself, or with ``nonfinite`` propagation: ``op`` where a zero input reads nothing
        (0 x inf/NaN weight is 0, see :mod:`spikenoise.synapse.nonfinite`)."""
        finite_reads = self.error_model.default_nonfinite == "raise"  # e.g. not BitFlip
        return op if finite_reads and self.nonfinite_policy == "raise" else zero_skipping(op)

    def empty_forward(self, x: torch.Tensor, wq: torch.Tensor) -> torch.Tensor:
        """Output of an input with no elements (e.g. an empty batch): nothing is read or drawn."""
        return self.scale_and_bias(self.op(x, wq))

    def drawn_forward(self, x: torch.Tensor, wq: torch.Tensor) -> torch.Tensor:
        """Forward with a static or per-call draw (``read_mode`` "frozen" or "per_row")."""
        reads = self.draw_reads(wq, self.draw_for(wq, x.shape[0]))
        if reads.shape[0] == 1:
            # one draw shared by all rows (draws="batch", a pinned chip): one plain map
            # value and input gradient through the drawn weights, weight gradient straight through
            return self.scale_and_bias(with_reads(x, wq, reads[0], self.safe(self.op), self.op))
        reads = reads.expand(x.shape[0], *reads.shape[1:])  # a pinned chip is shared by the rows
        return self.scale_and_bias(with_reads(x, wq, reads, self.safe(self.row_op), self.op))

    def inference_only(self, x: torch.Tensor) -> bool:
        """No gradient is needed from this call (the folded clean map applies)."""
        return not (torch.is_grad_enabled() and (x.requires_grad or self.weight.requires_grad
                                                  or self.scale.requires_grad
                                                  or (self.bias is not None and self.bias.requires_grad)))

    def clean_map(self) -> torch.Tensor | None:
        """The folded weights of the last clean inference call if nothing changed since, else None.

        A cheap check at the top of ``forward`` (the weight's and scale's versions and addresses,
        the error options): clean inference then costs one plain torch call.
        """
        fast = getattr(self, "_clean_map", None)
        if fast is None:
            return None
        w, s = self.weight, self.scale
        if fast[0] != (w._version, s._version, w.data_ptr(), s.data_ptr(), id(self.error_model), self.errors):
            return None
        return fast[1]

    def folded_weight(self) -> tuple[torch.Tensor, torch.Tensor | None]:
        """``(scale * stored weights, bias)`` for a clean inference call: one plain torch map.

        Cached with the stored weights; the scale's version is part of the key.
        """
        cache = self.stored_cache().derived
        key = (self.scale._version, self.scale.data_ptr())
        if cache.get("folded_key") != key:
            cache["folded"] = self.stored_weight() * self.scale.detach()
            cache["folded_key"] = key
        w, s = self.weight, self.scale
        self._clean_map = ((w._version, s._version, w.data_ptr(), s.data_ptr(), id(self.error_model), self.errors),
                           cache["folded"])
        return cache["folded"], None if self.bias is None else self.bias.detach()

    def spike_reads(self, x: torch.Tensor, wq: torch.Tensor) -> torch.Tensor:
        """Dynamic per-spike reads of input ``x`` (before scale and bias)."""
        how = self.resolve_sampler(x)
        if how == "gaussian":
            return gaussian_reads(self.error_model, x, wq, self.op, cache=self.stored_cache().derived)
        if how == "exact":
            groups = getattr(self, "groups", 1)
            most = float(x.detach().abs().max()) * wq[0].numel() if x.numel() else 0.0
            if most >= FLOAT32_EXACT and x.dtype != torch.float64:
                # per-output read counts may pass 2**24: count them in float64, where they are exact
                y = exact_spike_reads(self.error_model, x.double(), wq.double(), self.op, groups)
                return y.to(x.dtype)
            return exact_spike_reads(self.error_model, x, wq, self.op, groups, cache=self.stored_cache().derived)
        if is_integer_valued(x):
            check_spike_counts(x, BRUTE_MAX_COUNT, self.describe(), how)
        return self.brute_reads(x, wq)

    def brute_reads(self, x: torch.Tensor, wq: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError


def _check_sizes(**sizes) -> None:
    for name, v in sizes.items():
        if isinstance(v, bool) or not isinstance(v, int) or v < 1:
            raise ValueError(f"{name} must be a positive integer, got {v!r}")


def _check_pairs(**pairs) -> None:
    """Each ``name=(value, least)``: an int or a pair of ints, each >= least."""
    for name, (v, least) in pairs.items():
        items = v if isinstance(v, (tuple, list)) else (v,)
        if len(items) not in (1, 2) or any(isinstance(k, bool) or not isinstance(k, int) or k < least
                                           for k in items):
            raise ValueError(f"{name} must be an integer >= {least} or a pair of them, got {v!r}")


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
        nonfinite: ``"raise"`` | ``"propagate"`` | None (the error model's default; see
            :mod:`spikenoise.synapse.base`).

    Shapes: input ``(B, in)`` or ``(B, *, in)``; output ``(B, out)`` / ``(B, *, out)``. Batch rows
    (dim 0) get independent errors; extra middle dims share a row's static draw.
    """

    def __init__(self, in_features: int, out_features: int, bias: bool = True, *,
                 error_model: ErrorModel | None = None, errors: str = "none", reads: str = "spike",
                 sampler: str = "auto", learn_scale: bool = True, draws: str = "row", nonfinite: str | None = None,
                 device=None, dtype=None):
        _check_sizes(in_features=in_features, out_features=out_features)
        check_flag("bias", bias)
        nn.Linear.__init__(self, in_features, out_features, bias, device=device, dtype=dtype)
        self.init_synapse(error_model, errors, reads, sampler, learn_scale, draws, nonfinite)

    def extra_repr(self) -> str:
        return f"{nn.Linear.extra_repr(self)}, {self.synapse_repr()}"

    def op(self, x: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
        return F.linear(x, w)

    def row_op(self, x: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
        return rowwise_linear(x, w)

    def brute_reads(self, x: torch.Tensor, wq: torch.Tensor) -> torch.Tensor:
        return brute_linear_reads(self.error_model, x, wq, self.safe(rowwise_linear))

    @engine_forward
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.check_input(x)
        if not torch.is_grad_enabled():
            fast = self.clean_map()
            if fast is not None and x.dim() >= 1 and x.shape[-1] == self.in_features:
                return F.linear(x, fast, self.bias)
        if x.dim() < 1 or x.shape[-1] != self.in_features:
            raise ValueError(f"NoisyLinear expects input (..., {self.in_features}), got shape {tuple(x.shape)}")
        mode = self.read_mode
        if mode == "clean" and self.inference_only(x):
            w, b = self.folded_weight()
            return F.linear(x, w, b)
        wq = self.quantized_weight()
        if x.numel() == 0:
            return self.empty_forward(x, wq)
        if mode == "clean":
            return self.scale_and_bias(self.safe(F.linear)(x, wq))
        if x.dim() == 1:
            return self.forward(x.unsqueeze(0)).squeeze(0)
        if mode == "per_row" and self.sampler == "gaussian" and self.draws == "row" and not self.pinned:
            # outputs use disjoint weights, so a per-output Gaussian is the moment-matched law
            return self.scale_and_bias(gaussian_reads(self.error_model, x, wq, F.linear, counts_are_reads=False,
                                                      cache=self.stored_cache().derived))
        if mode == "per_row" and self.draws == "row" and not self.pinned and x.dim() == 2:
            # a fresh read per row, drawn and reduced chunk by chunk (no (B, out, in) tensor)
            y = self.reader().linear(x)
            if wq.requires_grad and torch.is_grad_enabled():
                y = y + F.linear(x, wq - wq.detach())  # straight-through gradient to the hidden weights
            return self.scale_and_bias(y)
        if mode == "frozen" and x.dim() == 2:
            keyed = self.keyed_draw(x)
            if keyed is not None:
                # a static draw per row as a key: every call of this inference sees the same reads
                y = keyed.linear(x).to(x.dtype)
                if wq.requires_grad and torch.is_grad_enabled():
                    y = y + F.linear(x, wq - wq.detach())  # straight-through gradient to the hidden weights
                return self.scale_and_bias(y)
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
                 learn_scale: bool = True, draws: str = "row", nonfinite: str | None = None, device=None,
                 dtype=None):
        if isinstance(padding, str):
            raise ValueError(f"NoisyConv2d needs numeric padding, got {padding!r}")
        _check_sizes(in_channels=in_channels, out_channels=out_channels, groups=groups)
        _check_pairs(kernel_size=(kernel_size, 1), stride=(stride, 1), padding=(padding, 0), dilation=(dilation, 1))
        check_flag("bias", bias)
        nn.Conv2d.__init__(self, in_channels, out_channels, kernel_size, stride, padding, dilation, groups,
                           bias, padding_mode="zeros", device=device, dtype=dtype)
        self.init_synapse(error_model, errors, reads, sampler, learn_scale, draws, nonfinite)

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
        if self.safe(self.op) is self.op:
            return brute_conv_reads(self.error_model, x, wq, self)
        return brute_conv_reads(self.error_model, x, wq, self,
                                contract=zero_skipping(lambda c, r: torch.einsum("bgcp,bpgoc->bgop", c, r)))

    @engine_forward
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.check_input(x)
        if not torch.is_grad_enabled():
            fast = self.clean_map()
            if fast is not None and x.dim() == 4 and x.shape[1] == self.in_channels:
                return F.conv2d(x, fast, self.bias, self.stride, self.padding, self.dilation, self.groups)
        if x.dim() != 4 or x.shape[1] != self.in_channels:
            raise ValueError(f"NoisyConv2d expects input (B, {self.in_channels}, H, W), got shape {tuple(x.shape)}")
        mode = self.read_mode
        if mode == "clean" and self.inference_only(x):
            w, b = self.folded_weight()
            return F.conv2d(x, w, b, self.stride, self.padding, self.dilation, self.groups)
        wq = self.quantized_weight()
        if x.numel() == 0:
            return self.empty_forward(x, wq)
        if mode == "clean":
            return self.scale_and_bias(self.safe(self.conv)(x, wq))
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
