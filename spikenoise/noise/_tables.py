"""Exact inverse-CDF sampling of many small integer distributions at once.

Used for single NVM reads (one row per level) and for the sum of ``n`` independent reads
(one row per (level, n)). Each row's CDF is stored as integer thresholds on a ``2**bits`` grid
(``bits`` is 50-52 in practice), so sampling is inversion with a 2**-bits uniform: exact up to
that resolution, far finer than float32 uniforms (2**-24). All rows are flattened into one
sorted int64 key array ``row * 2**bits + threshold``. A look-up table on the top bits of the
uniform resolves almost every draw with one gather; the few uniforms that fall into a bucket
holding a threshold are resolved exactly by ``torch.searchsorted`` on the key array.

Sums of more than :data:`TABLE_MAX_N` reads are not tabulated (tables grow like ``n**2``): the
per-level counts of the reads are drawn as a multinomial (:meth:`SumOfReads.sample_counts`).
"""
from __future__ import annotations

import math

import numpy as np
import torch

_MAX_BITS = 52  # float64 CDFs carry 53 bits; more would be false precision
_MIXED = np.iinfo(np.int64).min  # look-up-table entry: bucket holds a threshold, search exactly


class InverseCDFTable:
    """Samples ``offset[r] + k`` with probability ``pmf[r][k]`` for a tensor of row indices ``r``.

    Args:
        pmfs: one 1-D float64 array per row (need not be normalised exactly; each is divided by its sum).
        offsets: the integer value of each row's first entry.
    """

    def __init__(self, pmfs: list[np.ndarray], offsets: list[int] | np.ndarray):
        if len(pmfs) != len(offsets):
            raise ValueError(f"got {len(pmfs)} pmfs but {len(offsets)} offsets")
        n_rows = len(pmfs)
        self.bits = min(_MAX_BITS, 62 - max(1, math.ceil(math.log2(n_rows + 1))))
        full = 1 << self.bits
        keys, starts, offs = [], [], []
        pos = 0
        for r, (p, off) in enumerate(zip(pmfs, offsets)):
            p = np.asarray(p, dtype=np.float64)
            if p.ndim != 1 or p.size == 0 or np.any(p < 0) or not np.isfinite(p).all() or p.sum() <= 0:
                raise ValueError(f"row {r}: not a valid probability vector: {p!r}")
            cdf = np.cumsum(p / p.sum())
            thr = np.rint(cdf * full).astype(np.int64)
            thr = np.minimum(thr, full)
            thr[-1] = full
            # outcomes whose interval is empty can never be drawn: trim them at both ends
            first = int(np.searchsorted(thr, 0, side="right"))
            last = int(np.searchsorted(thr, full, side="left"))
            thr = thr[first : last + 1]
            keys.append(np.int64(r) * full + thr)
            starts.append(pos)
            offs.append(int(off) + first)
            pos += thr.size
        self.n_rows = n_rows
        flat = np.concatenate(keys)
        # outcome value of every flat key position: row offset + position inside the row
        value_at = np.concatenate([o + np.arange(k.size, dtype=np.int64) for o, k in zip(offs, keys)])
        # look-up table on the top bits of the uniform: a bucket without a threshold inside maps
        # straight to its outcome; the rare mixed buckets fall back to an exact binary search
        self.lut_bits = int(max(4, min(12, math.floor(math.log2(max(1, (1 << 22) // n_rows))))))
        shift = self.bits - self.lut_bits
        edges = np.arange((1 << self.lut_bits) + 1, dtype=np.int64) << shift
        lut = np.empty((n_rows, 1 << self.lut_bits), dtype=np.int64)
        for r in range(n_rows):
            row_keys = flat[starts[r]: starts[r] + keys[r].size]
            at = np.searchsorted(row_keys, np.int64(r) * full + edges, side="right")
            lo, hi = at[:-1], np.searchsorted(row_keys, np.int64(r) * full + edges[1:] - 1, side="right")
            lut[r] = np.where(lo == hi, value_at[np.minimum(starts[r] + lo, flat.size - 1)], _MIXED)
        self._keys = torch.from_numpy(flat)
        self._lut = torch.from_numpy(lut.reshape(-1))
        self._value_at = torch.from_numpy(value_at)
        self._device_cache: dict[torch.device, tuple[torch.Tensor, ...]] = {}

    def _on(self, device: torch.device):
        if device not in self._device_cache:
            self._device_cache[device] = tuple(t.to(device) for t in (self._keys, self._lut, self._value_at))
        return self._device_cache[device]

    @property
    def nbytes(self) -> int:
        return (self._keys.numel() + self._lut.numel() + self._value_at.numel()) * 8

    def sample(self, rows: torch.Tensor, generator: torch.Generator | None = None,
               lookup: torch.Tensor | None = None) -> torch.Tensor:
        """One independent draw per element of ``rows`` (int64, any shape).

        Returns the drawn integer values (int64), or ``lookup[value]`` when ``lookup`` is given
        (e.g. the digital value of a read level), same shape as ``rows``.
        """
        keys, lut, value_at = self._on(rows.device)
        flat = rows.reshape(-1)
        out = torch.empty(flat.shape, device=rows.device,
                          dtype=torch.int64 if lookup is None else lookup.dtype)
        # chunks keep temporaries small and reused (fresh multi-100-MB buffers cost page faults)
        chunk = 1 << (24 if rows.is_cuda else 18)
        shift = self.bits - self.lut_bits
        for s in range(0, flat.numel(), chunk):
            r = flat[s:s + chunk].to(torch.int64)
            u = torch.randint(0, 1 << self.bits, r.shape, device=r.device, dtype=torch.int64,
                              generator=generator)
            v = lut[torch.bitwise_right_shift(u, shift).add_(r * (1 << self.lut_bits))]
            mixed = (v == _MIXED).nonzero().squeeze(1)
            if mixed.numel():
                key = u[mixed] + r[mixed] * (1 << self.bits)
                v[mixed] = value_at[torch.searchsorted(keys, key, right=True)]
            out[s:s + chunk] = v if lookup is None else lookup[v]
        return out.reshape(rows.shape)


def convolution_powers(pmf: np.ndarray, offset: int, n_max: int, tail: float = 2.0 ** -60):
    """PMFs of the sum of ``n = 0..n_max`` iid draws from ``pmf`` (support starting at ``offset``).

    Entries below ``tail`` times the row maximum are trimmed from both ends after every step;
    the mass dropped is far below the 2**-52 sampling resolution.

    Returns:
        (pmfs, offsets): lists of length ``n_max + 1``.
    """
    pmf = np.asarray(pmf, dtype=np.float64)
    pmfs = [np.ones(1)]
    offs = [0]
    cur, cur_off = np.ones(1), 0
    for _ in range(n_max):
        cur = np.convolve(cur, pmf)
        cur_off += offset
        keep = np.nonzero(cur > tail * cur.max())[0]
        lo, hi = int(keep[0]), int(keep[-1])
        cur = cur[lo : hi + 1]
        cur_off += lo
        cur = cur / cur.sum()
        pmfs.append(cur)
        offs.append(cur_off)
    return pmfs, offs


#: Largest number of reads per element whose sum :class:`SumOfReads` draws from a table. The
#: tables grow like ``n_max**2`` (support x rows), so larger counts (a spike count of 1e6, 8-bit
#: pixel values) draw the per-outcome counts of the ``n`` reads directly: cost and memory per
#: element independent of ``n``; both paths are exact.
TABLE_MAX_N = 512


class SumOfReads:
    """Exact sampler of the summed read error of ``n`` iid reads of a level.

    For a level ``l`` with confusion row ``P[l]``, one read's error in level steps is
    ``d = read - l``; the sum over ``n`` reads has the ``n``-fold convolution power of that pmf.
    For ``n <= table_max_n`` it is drawn from convolution-power tables that grow on demand
    (doubling); above, the counts of the ``n`` reads per outcome level are drawn directly
    (a multinomial as sequential binomials), so memory does not grow with ``n``.

    Args:
        confusion: (L, L) row-stochastic matrix, float64 numpy array.
        table_max_n: largest ``n`` drawn from tables (default :data:`TABLE_MAX_N`).
    """

    def __init__(self, confusion: np.ndarray, table_max_n: int = TABLE_MAX_N):
        self.confusion = np.asarray(confusion, dtype=np.float64)
        self.n_levels = self.confusion.shape[0]
        self.table_max_n = int(table_max_n)
        self.n_max = -1
        self._table: InverseCDFTable | None = None

    def _build(self, n_max: int) -> None:
        pmfs, offs = [], []
        for lvl in range(self.n_levels):
            p, o = convolution_powers(self.confusion[lvl], -lvl, n_max)
            pmfs += p
            offs += o
        self._table = InverseCDFTable(pmfs, offs)
        self.n_max = n_max

    def sample(self, level: torch.Tensor, n: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        """Summed error (int64, in level steps) of ``n`` reads of ``level``; broadcastable int tensors."""
        if n.numel() and bool((n < 0).any()):
            raise ValueError(f"read counts must be >= 0, got {int(n.min())}")
        need = int(n.max()) if n.numel() else 0
        if need > self.table_max_n:
            level, n = torch.broadcast_tensors(level.to(torch.int64), n.to(torch.int64))
            out = torch.empty(n.shape, dtype=torch.int64, device=n.device)
            large = n > self.table_max_n
            small = ~large
            if bool(small.any()):
                out[small] = self.sample(level[small], n[small], generator)
            out[large] = self.sample_counts(level[large], n[large], generator)
            return out
        if need > self.n_max:
            self._build(min(self.table_max_n, max(need, 2 * self.n_max, 16)))
        rows = level.to(torch.int64) * (self.n_max + 1) + n.to(torch.int64)
        return self._table.sample(rows, generator)  # type: ignore[union-attr]

    def sample_counts(self, level: torch.Tensor, n: torch.Tensor,
                      generator: torch.Generator | None = None) -> torch.Tensor:
        """Like :meth:`sample` (same shapes), for any ``n``: draws how many of the ``n`` reads land
        on each level (multinomial as sequential binomials, exact) and sums their errors."""
        level, n = torch.broadcast_tensors(level.to(torch.int64), n.to(torch.int64))
        out = torch.zeros(n.shape, dtype=torch.int64, device=n.device)
        for lvl in torch.unique(level).tolist():
            at = level == lvl
            left = n[at].to(torch.float64)
            total = torch.zeros(left.shape, dtype=torch.float64, device=n.device)
            row = self.confusion[lvl]
            # the likeliest outcome (the level itself, usually) takes what is left: fewest draws
            top = int(np.argmax(row))
            order = [int(j) for j in np.argsort(row, kind="stable") if j != top and row[j] > 0]
            for k, j in enumerate(order):
                # P(outcome j | not one of the outcomes drawn before)
                p = min(1.0, float(row[j] / row[order[k:] + [top]].sum()))
                c = torch.binomial(left, torch.full_like(left, p), generator=generator)
                left = left - c
                total += c * float(j - lvl)
            total += left * float(top - lvl)
            out[at] = total.to(torch.int64)
        return out
