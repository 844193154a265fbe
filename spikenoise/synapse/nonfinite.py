"""Non-finite weights and inputs: a zero input is no read, also of an inf/NaN weight.

Bit flips of exponent bits make read weights inf or NaN (:mod:`spikenoise.noise.bitflip`). In
IEEE arithmetic ``0 * inf = NaN``, so a plain matmul would let a *zero* input (no spike, no
read) poison its output. :func:`zero_skipping` wraps a layer's linear map so that only non-zero
inputs meet non-finite weights: an output gets ``+inf`` / ``-inf`` when non-zero inputs meet
infinities of one sign, NaN when they meet a NaN or infinities of both signs, and the plain
finite sum otherwise. The wrapper costs one finiteness check of the weights per call
(:func:`all_finite`) and three extra maps only when a weight is non-finite.
"""
from __future__ import annotations

import math
from typing import Callable

import torch

__all__ = ["all_finite", "zero_skipping", "zero_with_grad", "check_spike_counts", "BRUTE_MAX_COUNT", "FLOAT32_EXACT"]

Op = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]

#: Largest spike count per input element the brute-force sampler accepts (it loops once per
#: spike); larger counts need ``sampler="exact"`` (discrete models, memory independent of the
#: count) or ``"gaussian"``.
BRUTE_MAX_COUNT = 4096

#: Integers above this are not all exact in float32; spike-count sums that may reach it are
#: counted in float64.
FLOAT32_EXACT = 2 ** 24


def all_finite(t: torch.Tensor) -> bool:
    """True when no element of ``t`` is NaN or infinite.

    One sum instead of ``isfinite(t).all()`` (6-25x cheaper on the CPU): a NaN or an infinity
    always makes the sum non-finite, and a finite sum proves every element finite. Only a
    non-finite sum (a bad element, or an overflow of finite ones) pays for the exact check.
    """
    if not t.is_floating_point() or t.numel() == 0:
        return True
    t = t.detach()
    return math.isfinite(float(t.sum())) or bool(torch.isfinite(t).all())


def zero_skipping(op: Op) -> Op:
    """``op(x, w)`` (a linear map) where a zero input contributes 0 even for an inf/NaN weight."""

    def safe(x: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
        if all_finite(w):
            return op(x, w)
        bad = ~torch.isfinite(w)
        y = op(x, w.masked_fill(bad, 0.0))
        with torch.no_grad():
            dt = x.dtype
            pos, neg = (x > 0).to(dt), (x < 0).to(dt)
            w_up, w_down, w_nan = (w == float("inf")).to(dt), (w == float("-inf")).to(dt), torch.isnan(w).to(dt)
            up = op(pos, w_up) + op(neg, w_down)  # how many non-zero inputs meet +inf / -inf / NaN
            down = op(pos, w_down) + op(neg, w_up)
            nan = op(pos + neg, w_nan)
            extra = torch.zeros_like(y)
            extra = torch.where(up > 0, torch.full_like(y, float("inf")), extra)
            extra = torch.where(down > 0, torch.full_like(y, float("-inf")), extra)
            extra = torch.where((nan > 0) | ((up > 0) & (down > 0)), torch.full_like(y, float("nan")), extra)
        return y + extra

    return safe


def zero_with_grad(w: torch.Tensor) -> torch.Tensor:
    """Zeros shaped like ``w`` whose gradient w.r.t. ``w`` is 1 (0 at inf/NaN entries, where
    ``w - w.detach()`` would be NaN): the straight-through term of a drawn forward."""
    return torch.where(torch.isfinite(w.detach()), w - w.detach(), torch.zeros((), dtype=w.dtype, device=w.device))


def check_spike_counts(x: torch.Tensor, limit: int, layer: str, sampler: str) -> None:
    """ValueError naming ``layer`` when an integer input ``x`` holds a count above ``limit``."""
    big = float(x.detach().abs().max()) if x.numel() else 0.0
    if big > limit:
        raise ValueError(f"{layer}: spike count {big:g} exceeds {limit} reads per input for sampler={sampler!r} "
                         "(it draws every read); use sampler='exact' (discrete error models: exact, memory "
                         "independent of the count) or 'gaussian', or scale the input down")
