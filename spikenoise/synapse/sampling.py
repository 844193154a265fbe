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
from .nonfinite import zero_with_grad

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
        y = y + op(x, zero_with_grad(wq))
    return y


def _repeats(x: torch.Tensor) -> int:
    """Integer inputs ``|x| > 1`` are that many reads: the largest count, else 1."""
    mx = float(x.detach().abs().max()) if x.numel() else 0.0
    return int(mx) if mx > 1 and is_integer_valued(x.detach()) else 1


def gaussian_reads(em: ErrorModel, x: torch.Tensor, wq: torch.Tensor, op: Op,
                   counts_are_reads: bool = True, cache: dict | None = None) -> torch.Tensor:
    """Approximate: Gaussian output with the exact mean and variance of the drawn sum.

    ``cache``: a dict kept while ``wq`` holds (the synapse's stored-weight cache) for the moments.
    """
    if cache is not None and "moments" in cache:
        mean, var = cache["moments"]
    else:
        mean, var = em.read_moments(wq.detach())
        if cache is not None:
            cache["moments"] = (mean, var)
    mean = wq + (mean - wq.detach())
    # per spike, an integer input c is c reads (variance adds c times); a graded x, or any
    # input read once per step, is one read scaled by x (variance x^2)
    xv = x.abs() if counts_are_reads and is_integer_valued(x) else x * x
    mu = op(x, mean)
    return mu + op(xv, var).clamp_min(0).sqrt() * torch.randn_like(mu)


def brute_linear_reads(em: ErrorModel, x: torch.Tensor, wq: torch.Tensor, read_op: Op = rowwise_linear
                       ) -> torch.Tensor:
    """Reference for ``(B, in)`` inputs: draw every read. Integer |x| > 1 means that many reads.

    ``read_op``: row ``b`` of the input times its read weights (default :func:`rowwise_linear`).
    """
    B = x.shape[0]
    reps = _repeats(x)
    sign, mag = x.sign(), x.abs()
    y = None
    for k in range(1, reps + 1):
        xk = x if reps == 1 else sign * (mag >= k).to(x.dtype)
        yk = with_reads(xk, wq, em.read(wq.detach(), B), read_op, F.linear)
        y = yk if y is None else y + yk
    return y


def _contract_taps(cols: torch.Tensor, reads: torch.Tensor) -> torch.Tensor:
    """Unfolded inputs ``(b, g, c, P)`` times a read per position ``(b, P, g, o, c)`` -> ``(b, g, o, P)``."""
    return torch.einsum("bgcp,bpgoc->bgop", cols, reads)


def brute_conv_reads(em: ErrorModel, x: torch.Tensor, wq: torch.Tensor, conv, chunk_elems: int = 2 ** 24,
                     contract: Op = _contract_taps) -> torch.Tensor:
    """Reference for a ``nn.Conv2d`` ``conv``: an independent read per (batch, spike, tap, output position).

    ``contract``: the map of unfolded inputs with their reads (default: a plain einsum).
    """
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
            y[s:e] += contract(xk[s:e], reads)
    y = y.reshape(B, conv.out_channels, Ho, Wo)
    if wq.requires_grad and torch.is_grad_enabled():
        y = y + conv.conv(x, zero_with_grad(wq))  # straight-through gradient to hidden weights
    return y


def _packing(levels: int, max_count: float) -> tuple[torch.dtype, int, int]:
    """(dtype, bits, levels per matmul) that count the most levels per float operation exactly.

    Counts up to ``max_count`` need ``bits`` bits; ``k`` levels packed as ``sum_j n_j 2**(bits j)``
    stay exact integers in float32 (24-bit mantissa) or float64 (53). float64 costs about 2x.
    """
    bits = max(1, int(max_count).bit_length())
    best = (torch.float32, bits, 1)
    cost = levels  # one float32 matmul per level
    for dtype, mant, price in ((torch.float32, 24, 1), (torch.float64, 53, 2)):
        k = mant // bits
        if k >= 1 and price * -(-levels // k) < cost:
            cost, best = price * -(-levels // k), (dtype, bits, k)
    return best


def exact_spike_reads(em: ErrorModel, x: torch.Tensor, wq: torch.Tensor, op: Op, groups: int = 1,
                      cache: dict | None = None) -> torch.Tensor:
    """Exact per-spike dynamic reads without a per-read noise tensor.

    ``op(input, weight)`` must accept a weight holding a slice of the output channels. The reads
    of each noisy level ``l`` are counted per output with ``op`` against masks of the weights
    stored at ``l``; several levels share one ``op`` by packing their counts into the bits of one
    float (``sum_j n_j 2**(bits j)``, exact integers in float32/float64). The summed error of
    ``n`` iid reads of ``l`` is then drawn from exact convolution-power tables, all levels in one
    call. Positive and negative spike counts are separate reads (subtracted). Output channels are
    processed in chunks (all at once for ``groups != 1``) so the temporaries stay within
    :data:`MEMORY_BUDGET` (or the clean call's own working set). ``cache``: a dict kept while
    ``wq`` holds (the synapse's stored-weight cache) for the level indices and masks.
    """
    lv = em.discrete()
    if lv is None:
        raise ValueError(f"exact per-spike reads need a discrete error model, got {em!r}")
    L = lv.values.numel()
    step = lv.step
    cache = {} if cache is None else cache
    if "levels" not in cache:
        idx = torch.round((wq.detach() - float(lv.values[0])) / step).clamp_(0, L - 1).to(torch.int64)
        present = torch.bincount(idx.flatten(), minlength=L).tolist()
        cache["levels"] = idx
        cache["noisy"] = [lvl for lvl in range(L) if present[lvl] and float(lv.confusion[lvl, lvl]) < 1.0]
    idx, noisy = cache["levels"], cache["noisy"]
    sums = em.sum_sampler()
    clean = op(x, wq)  # differentiable error-free part; the drawn error below is a constant
    err = torch.zeros_like(clean, requires_grad=False)
    if not noisy:
        return clean
    parts = [(1.0, x.detach().clamp_min(0))]
    if bool((x < 0).any()):
        parts.append((-1.0, (-x.detach()).clamp_min(0)))
    max_count = max(float(xp.sum(dim=tuple(range(1, xp.dim()))).max()) if xp.numel() else 0.0 for _, xp in parts)
    dtype, bits, per = _packing(len(noisy), max_count)
    groups_of = [noisy[i:i + per] for i in range(0, len(noisy), per)]
    out_ch = wq.shape[0]
    # per output channel: its masks and packed counts, and what drawing from them needs
    per_ch = (wq[0].numel() * 8 + clean[:, :1].numel() * sums.packed_temp_bytes(
        len(noisy), len(groups_of), torch.finfo(dtype).bits // 8, x.device)) * len(parts)
    budget = MEMORY_BUDGET or (x.numel() + wq.numel() + clean.numel()) * x.element_size()
    chunk = out_ch if groups != 1 else max(1, min(out_ch, budget // max(per_ch, 1)))
    with torch.no_grad():
        for o0 in range(0, out_ch, chunk):
            o1 = min(out_ch, o0 + chunk)
            key = ("masks", dtype, bits, o0, o1)
            if key not in cache:
                masks = []
                for grp in groups_of:
                    weight_of = torch.zeros(L, dtype=dtype, device=x.device)
                    for j, lvl in enumerate(grp):
                        weight_of[lvl] = float(2 ** (bits * j))
                    masks.append(weight_of[idx[o0:o1]])
                cache[key] = masks
            for sgn, xp in parts:
                xq = xp.to(dtype)
                packs = ((op(xq, mask), grp) for grp, mask in zip(groups_of, cache[key]))
                sums.add_packed_sums(err[:, o0:o1], packs, bits, sgn * step)
    return clean + err
