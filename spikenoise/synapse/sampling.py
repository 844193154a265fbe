"""Samplers of dynamic per-spike reads, as functions of a layer's linear map.

``op(input, weight)`` is the layer's clean linear map (``F.linear`` or its convolution).

* :func:`exact_spike_reads` counts the reads per level with one ``op`` against one-hot level
  masks and draws the summed error of ``n`` iid reads from exact convolution-power tables (never
  a batch x in x out noise tensor); integer (spike) inputs and a discrete error model only.
* :func:`brute_linear_reads` / :func:`brute_conv_reads` draw every read (the reference; exact,
  memory heavy).
* :func:`gaussian_reads` matches the mean and variance per output (approximate, labelled so).
"""
from __future__ import annotations

from typing import Callable

import torch
import torch.nn.functional as F

from ..noise.base import ErrorModel
from .base import is_integer_valued

__all__ = ["MEMORY_BUDGET", "exact_spike_reads", "brute_linear_reads", "brute_conv_reads", "gaussian_reads",
           "rowwise_linear", "with_reads"]

#: Bytes the exact per-spike sampler may use for temporaries. 0 (default): as much as the clean
#: layer call itself (input + weights + output), which keeps peak memory near 2x clean. On a GPU
#: a larger budget (e.g. 256 MiB) means fewer, larger kernels and so more speed.
MEMORY_BUDGET = 0

Op = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


def rowwise_linear(x: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
    """Row ``b`` of ``x`` (B, *, in) times its own weights ``w[b]`` (out, in)."""
    if x.dim() == 2:
        return torch.bmm(w, x.unsqueeze(-1)).squeeze(-1)
    return torch.einsum("b...i,boi->b...o", x, w)


def with_reads(x: torch.Tensor, wq: torch.Tensor, reads: torch.Tensor, read_op: Op, op: Op) -> torch.Tensor:
    """``read_op(x, reads)`` with the straight-through gradient to the hidden weights.

    The forward value uses the drawn weights, and so does the gradient w.r.t. ``x``; the
    zero-valued term ``op(x, wq - wq.detach())`` routes dL/dW_read to the hidden weights
    (summed over the batch) without a per-row copy of the weights.
    """
    y = read_op(x, reads)
    if wq.requires_grad and torch.is_grad_enabled():
        y = y + op(x, wq - wq.detach())
    return y


def _repeats(x: torch.Tensor) -> int:
    """Integer inputs ``|x| > 1`` are that many reads: the largest count, else 1."""
    mx = float(x.detach().abs().max()) if x.numel() else 0.0
    return int(mx) if mx > 1 and is_integer_valued(x.detach()) else 1


def gaussian_reads(em: ErrorModel, x: torch.Tensor, wq: torch.Tensor, op: Op,
                   counts_are_reads: bool = True) -> torch.Tensor:
    """Approximate: Gaussian output with the exact mean and variance of the drawn sum."""
    mean, var = em.read_moments(wq.detach())
    mean = wq + (mean - wq.detach())
    # per spike, an integer input c is c reads (variance adds c times); a graded x, or any
    # input read once per step, is one read scaled by x (variance x^2)
    xv = x.abs() if counts_are_reads and is_integer_valued(x) else x * x
    mu = op(x, mean)
    return mu + op(xv, var).clamp_min(0).sqrt() * torch.randn_like(mu)


def brute_linear_reads(em: ErrorModel, x: torch.Tensor, wq: torch.Tensor) -> torch.Tensor:
    """Reference for ``(B, in)`` inputs: draw every read. Integer |x| > 1 means that many reads."""
    B = x.shape[0]
    reps = _repeats(x)
    sign, mag = x.sign(), x.abs()
    y = None
    for k in range(1, reps + 1):
        xk = x if reps == 1 else sign * (mag >= k).to(x.dtype)
        yk = with_reads(xk, wq, em.read(wq.detach(), B), rowwise_linear, F.linear)
        y = yk if y is None else y + yk
    return y


def brute_conv_reads(em: ErrorModel, x: torch.Tensor, wq: torch.Tensor, conv, chunk_elems: int = 2 ** 24
                     ) -> torch.Tensor:
    """Reference for a ``nn.Conv2d`` ``conv``: an independent read per (batch, spike, tap, output position)."""
    B = x.shape[0]
    kh, kw = conv.kernel_size
    cols = F.unfold(x, (kh, kw), conv.dilation, conv.padding, conv.stride)  # (B, Cin*kh*kw, P)
    Ho = (x.shape[2] + 2 * conv.padding[0] - conv.dilation[0] * (kh - 1) - 1) // conv.stride[0] + 1
    Wo = (x.shape[3] + 2 * conv.padding[1] - conv.dilation[1] * (kw - 1) - 1) // conv.stride[1] + 1
    P = cols.shape[-1]
    g, cin_g, cout_g = conv.groups, conv.in_channels // conv.groups, conv.out_channels // conv.groups
    cols = cols.reshape(B, g, cin_g * kh * kw, P)
    reps = _repeats(x)
    sign, mag = cols.sign(), cols.abs()
    y = x.new_zeros(B, g, cout_g, P)
    per_row = g * cout_g * cin_g * kh * kw * P
    rows = max(1, chunk_elems // max(per_row, 1))
    for k in range(1, reps + 1):
        xk = cols if reps == 1 else sign * (mag >= k).to(x.dtype)
        for s in range(0, B, rows):
            e = min(B, s + rows)
            reads = em.read(wq.detach(), (e - s) * P)  # (nb*P, Cout, Cin/g, kh, kw)
            reads = reads.reshape(e - s, P, g, cout_g, cin_g * kh * kw)
            y[s:e] += torch.einsum("bgcp,bpgoc->bgop", xk[s:e], reads)
    y = y.reshape(B, conv.out_channels, Ho, Wo)
    if wq.requires_grad and torch.is_grad_enabled():
        y = y + conv.conv(x, wq - wq.detach())  # straight-through gradient to hidden weights
    return y


def exact_spike_reads(em: ErrorModel, x: torch.Tensor, wq: torch.Tensor, op: Op, groups: int = 1) -> torch.Tensor:
    """Exact per-spike dynamic reads without a per-read noise tensor.

    ``op(input, weight)`` must accept a weight holding a slice of the output channels. For each
    noisy level ``l`` the reads of that level are counted with one ``op`` against the 0/1 mask of
    the weights stored at ``l``; the summed error of ``n`` iid reads of ``l`` is then drawn from
    exact convolution-power tables. Positive and negative spike counts are separate reads
    (subtracted). Output channels are processed in chunks (all at once for ``groups != 1``) so
    the temporaries stay within :data:`MEMORY_BUDGET` (or the clean call's own working set).
    """
    lv = em.discrete()
    if lv is None:
        raise ValueError(f"exact per-spike reads need a discrete error model, got {em!r}")
    L = lv.values.numel()
    step = lv.step
    idx = torch.round((wq.detach() - float(lv.values[0])) / step).clamp_(0, L - 1).to(torch.int64)
    sums = em.sum_sampler()
    clean = op(x, wq)  # differentiable error-free part; the drawn error below is a constant
    err = torch.zeros_like(clean, requires_grad=False)
    parts = [(1.0, x.clamp_min(0))]
    if bool((x < 0).any()):
        parts.append((-1.0, (-x).clamp_min(0)))
    present = torch.bincount(idx.flatten(), minlength=L).tolist()
    noisy = [lvl for lvl in range(L) if present[lvl] and float(lv.confusion[lvl, lvl]) < 1.0]
    out_ch = wq.shape[0]
    per_ch = (wq[0].numel() * 4 + clean[:, :1].numel() * (4 + 3 * 8)) * len(parts)
    budget = MEMORY_BUDGET or (x.numel() + wq.numel() + clean.numel()) * x.element_size()
    chunk = out_ch if groups != 1 else max(1, min(out_ch, budget // max(per_ch, 1)))
    with torch.no_grad():
        for lvl in noisy:
            level = torch.tensor(lvl, device=x.device)
            for o0 in range(0, out_ch, chunk):
                mask = (idx[o0:o0 + chunk] == lvl).to(x.dtype)
                for sgn, xp in parts:
                    n = torch.round(op(xp, mask)).to(torch.int64)
                    drawn = sums.sample(level, n)
                    del n
                    err[:, o0:o0 + chunk].add_(drawn.to(x.dtype), alpha=sgn * step)
    return clean + err
