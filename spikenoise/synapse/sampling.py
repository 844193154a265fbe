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
        # (B,1,in) x (B,in,out): torch's batched matvec in this layout is 5-10x faster on the CPU
        return torch.bmm(x.unsqueeze(1), w.transpose(1, 2)).squeeze(1)
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


def _packing(widths: dict[int, int]) -> tuple[torch.dtype, list[list[tuple[int, int]]]]:
    """(dtype, groups of (level, bits)) that count the levels in the fewest float operations, exactly.

    Level ``l``'s counts need ``widths[l]`` bits; a group's counts packed as ``sum_j n_j 2**(shift j)``
    (shifts: the widths before ``j``) stay exact integers in float32 (24-bit mantissa) or float64
    (53 bits) while its widths add up to at most that. float64 costs about 2x (a matmul; more for
    a convolution, so a tie goes to float32). Groups are filled first-fit, widest level first.
    """
    best = None
    for dtype, mant, price in ((torch.float32, 24, 1), (torch.float64, 53, 2)):
        if max(widths.values()) > mant:
            continue
        groups: list[list[tuple[int, int]]] = []
        room: list[int] = []
        for lvl, w in sorted(widths.items(), key=lambda kv: (-kv[1], kv[0])):
            at = next((g for g, r in enumerate(room) if r >= w), None)
            if at is None:
                groups.append([])
                room.append(mant)
                at = len(groups) - 1
            groups[at].append((lvl, w))
            room[at] -= w
        if best is None or price * len(groups) < best[0]:
            best = (price * len(groups), dtype, groups)
    if best is None:  # counts beyond float64's 53 bits: one level per operation (float64)
        return torch.float64, [[(lvl, w)] for lvl, w in widths.items()]
    return best[1], best[2]


def exact_spike_reads(em: ErrorModel, x: torch.Tensor, wq: torch.Tensor, op: Op, groups: int = 1,
                      cache: dict | None = None) -> torch.Tensor:
    """Exact per-spike dynamic reads without a per-read noise tensor.

    ``op(input, weight)`` must accept a weight holding a slice of the output channels. The reads
    of each noisy level ``l`` are counted per output with ``op`` against masks of the weights
    stored at ``l``; several levels share one ``op`` by packing their counts into the bits of one
    float (``sum_j n_j 2**s_j``, exact integers in float32/float64; each level gets the bits its
    largest possible count needs). The summed error of ``n`` iid reads of ``l`` is then drawn
    from exact convolution-power tables (:meth:`SumOfReads.add_packed_sums`: natively on the CPU,
    unpacked, drawn and added per output in one pass). Without autograd, when every stored level
    is noisy, the error-free output is ``sum_l value_l n_l`` from the same counts (no ``op(x, wq)``
    of its own). Positive and negative spike counts are separate reads (subtracted). Output
    channels are processed in chunks (all at once for ``groups != 1``) so the temporaries stay
    within :data:`MEMORY_BUDGET` (or the clean call's own working set). ``cache``: a dict kept
    while ``wq`` holds (the synapse's stored-weight cache) for the level indices and masks.
    """
    lv = em.discrete()
    if lv is None:
        raise ValueError(f"exact per-spike reads need a discrete error model, got {em!r}")
    L = lv.values.numel()
    step = lv.step
    keep_masks = cache is not None
    cache = {} if cache is None else cache
    if "levels" not in cache:
        idx = torch.round((wq.detach() - float(lv.values[0])) / step).clamp_(0, L - 1).to(torch.int64)
        present = torch.bincount(idx.flatten(), minlength=L).tolist()
        cache["levels"] = idx
        cache["present"] = [lvl for lvl in range(L) if present[lvl]]
        cache["finite"] = bool(torch.isfinite(wq.detach()).all())
        cache["noisy"] = [lvl for lvl in cache["present"] if float(lv.confusion[lvl, lvl]) < 1.0]
    idx, noisy = cache["levels"], cache["noisy"]
    sums = em.sum_sampler()
    grad = torch.is_grad_enabled() and (x.requires_grad or wq.requires_grad)
    if not noisy or grad or noisy != cache["present"] or not cache["finite"]:
        clean = op(x, wq)  # differentiable error-free part; the drawn error below is a constant
        if not noisy:
            return clean
        # without autograd the drawn error goes straight into the clean output
        err = torch.zeros_like(clean, requires_grad=False) if clean.requires_grad else clean
        level_values = None
    else:
        # every stored level is counted: the error-free output is sum_l value_l * n_l, added with
        # the drawn errors (no op of its own); a one-sample, one-group op gives its shape and dtype
        probe = op(x[:1], wq[:groups])
        clean = err = torch.zeros(x.shape[0], wq.shape[0], *probe.shape[2:], dtype=probe.dtype, device=x.device)
        level_values = lv.values.to(wq.dtype)  # the stored weights' own values
    xd = x.detach()
    lo, hi = (float(v) for v in torch.aminmax(xd)) if xd.numel() else (0.0, 0.0)
    if lo < 0:
        parts = [(1.0, xd.clamp_min(0)), (-1.0, (-xd).clamp_min(0))]
    else:
        parts = [(1.0, xd)]
    # a count of level l in an output is at most (inputs meeting a weight at l) * max |x| and at
    # most the sample's total input: bits per level from both bounds
    if "population" not in cache:  # (L,) most weights stored at each level in one output channel
        rows = torch.arange(idx.shape[0], device=idx.device).repeat_interleave(idx[0].numel())
        cache["population"] = torch.bincount(idx.reshape(-1) + L * rows, minlength=idx.shape[0] * L
                                             ).view(-1, L).amax(0).tolist()
    top = max(-lo, hi)
    total = max(float(xp.sum(dim=tuple(range(1, xp.dim()))).max()) if xp.numel() else 0.0 for _, xp in parts)
    widths = {lvl: max(1, int(min(total, top * cache["population"][lvl])).bit_length()) for lvl in noisy}
    dtype, groups_of = _packing(widths)
    out_ch = wq.shape[0]
    # temporaries per output channel: its packed counts and what drawing from them needs, and
    # its masks unless a caller's cache keeps them (then they are not temporaries)
    nbytes = torch.finfo(dtype).bits // 8
    per_ch = (clean[:, :1].numel() * sums.packed_temp_bytes(len(noisy), len(groups_of), nbytes, x.device)
              + (0 if keep_masks else wq[0].numel() * nbytes * len(groups_of))) * len(parts)
    budget = MEMORY_BUDGET or (x.numel() + wq.numel() + clean.numel()) * x.element_size()
    chunk = out_ch if groups != 1 else max(1, min(out_ch, budget // max(per_ch, 1)))
    layout = (dtype, tuple(map(tuple, groups_of)), chunk)
    if cache.get("masks_layout") != layout:  # masks of the latest packing only (it follows the input's bounds)
        cache["masks_layout"], cache["masks"] = layout, {}
    with torch.no_grad():
        for o0 in range(0, out_ch, chunk):
            o1 = min(out_ch, o0 + chunk)
            if o0 not in cache["masks"]:
                masks = []
                for grp in groups_of:
                    weight_of = torch.zeros(L, dtype=dtype, device=x.device)
                    shift = 0
                    for lvl, w in grp:
                        weight_of[lvl] = float(2 ** shift)
                        shift += w
                    masks.append(weight_of[idx[o0:o1]])
                cache["masks"][o0] = masks
            for sgn, xp in parts:
                xq = xp.to(dtype)
                packs = ((op(xq, mask), [lvl for lvl, _ in grp], [w for _, w in grp])
                         for grp, mask in zip(groups_of, cache["masks"][o0]))
                sums.add_packed_sums(err[:, o0:o1], packs, sgn * step, level_values=level_values, beta=sgn)
    return clean + err if err is not clean else clean
