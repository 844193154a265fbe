"""Exact inverse-CDF sampling of many small integer distributions at once.

Used for single NVM reads (one row per level) and for the sum of ``n`` independent reads
(one row per (level, n)). Each row's CDF is stored as integer thresholds on a ``2**bits`` grid
(``bits`` is 50-52 in practice), so sampling is inversion with a 2**-bits uniform: exact up to
that resolution, far finer than float32 uniforms (2**-24). All rows are flattened into one
sorted int64 key array ``row * 2**bits + threshold``, so one ``torch.searchsorted`` call serves
any mix of rows without gathering whole rows.
"""
from __future__ import annotations

import math

import numpy as np
import torch

_MAX_BITS = 52  # float64 CDFs carry 53 bits; more would be false precision


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
        self._keys = torch.from_numpy(np.concatenate(keys))
        self._starts = torch.tensor(starts, dtype=torch.int64)
        self._offsets = torch.tensor(offs, dtype=torch.int64)
        self._device_cache: dict[torch.device, tuple[torch.Tensor, torch.Tensor, torch.Tensor]] = {}

    def _on(self, device: torch.device):
        if device not in self._device_cache:
            self._device_cache[device] = (
                self._keys.to(device),
                self._starts.to(device),
                self._offsets.to(device),
            )
        return self._device_cache[device]

    @property
    def nbytes(self) -> int:
        return self._keys.numel() * 8 + self._starts.numel() * 16

    def sample(self, rows: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        """One independent draw per element of ``rows`` (int64, any shape) -> int64, same shape."""
        keys, starts, offsets = self._on(rows.device)
        rows = rows.to(torch.int64)
        u = torch.randint(0, 1 << self.bits, rows.shape, device=rows.device, dtype=torch.int64,
                          generator=generator)
        # key of the uniform inside its row's block; in-place to keep the peak small
        u.add_(rows * (1 << self.bits))
        idx = torch.searchsorted(keys, u, right=True)
        del u
        idx.sub_(starts[rows]).add_(offsets[rows])
        return idx


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


class SumOfReads:
    """Exact sampler of the summed read error of ``n`` iid reads of a level.

    For a level ``l`` with confusion row ``P[l]``, one read's error in level steps is
    ``d = read - l``; the sum over ``n`` reads has the ``n``-fold convolution power of that pmf.
    Tables grow on demand (doubling) when a larger ``n`` is requested.

    Args:
        confusion: (L, L) row-stochastic matrix, float64 numpy array.
    """

    def __init__(self, confusion: np.ndarray):
        self.confusion = np.asarray(confusion, dtype=np.float64)
        self.n_levels = self.confusion.shape[0]
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
        need = int(n.max()) if n.numel() else 0
        if need > self.n_max:
            self._build(max(need, 2 * self.n_max, 16))
        rows = level.to(torch.int64) * (self.n_max + 1) + n.to(torch.int64)
        return self._table.sample(rows, generator)  # type: ignore[union-attr]
