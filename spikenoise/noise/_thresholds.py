"""Exact single reads of multi-level cells by thresholds on 16 random bits (the torch path).

:class:`ThresholdReads` holds the 52-bit CDF thresholds of one confusion matrix (the same exact
inversion as :class:`~spikenoise.noise._tables.InverseCDFTable`); :class:`ReadPlan` draws reads of
fixed stored levels from it in cache-sized chunks. The native keyed reads
(:mod:`spikenoise.noise.native_reads`) use the same thresholds.
"""
from __future__ import annotations

import numpy as np
import torch


class ThresholdReads:
    """Exact single reads of ``L``-level cells from 16 random bits per read, no look-up gathers.

    A read of level ``l`` is ``#{k : thr[l, k] <= u}`` for a uniform ``u`` on the ``2**52`` grid,
    ``thr[l, k] = rint(P(read <= k | l) * 2**52)`` (the same exact inversion as
    :class:`InverseCDFTable`). The top 16 bits ``c`` of ``u`` decide it: a threshold counts when
    ``c`` lies above its bucket and not when below; ``c`` inside a threshold's own bucket (a *mixed*
    bucket, probability about ``(L-1) * 2**-16``) is resolved with 36 more random bits. In float32
    arithmetic, per weight: ``R = off + sum_t clamp(c, h_t, h_t + 1)`` is an integer (the read
    level) or a half-integer (mixed), so the sampler is a few vectorised passes over cache-sized
    chunks and never builds an int64 tensor of the read's size.

    Args:
        confusion: (L, L) row-stochastic float64 array, ``confusion[i, j] = P(read j | level i)``.
    """

    BITS = 52
    COARSE = 16

    def __init__(self, confusion: np.ndarray):
        P = np.asarray(confusion, dtype=np.float64)
        L = P.shape[0]
        full = 1 << self.BITS
        shift = self.BITS - self.COARSE
        top = (1 << self.COARSE) - 1
        thr = np.rint(np.cumsum(P / P.sum(axis=1, keepdims=True), axis=1)[:, :-1] * full).astype(np.int64)
        thr = np.clip(thr, 0, full)
        half = float(1 << (self.COARSE - 1))  # c is drawn as a signed int16: c_signed = c - half
        bases, terms = [], []
        for lvl in range(L):
            base, hs, prev = 0, [], None
            for t in thr[lvl].tolist():
                if t == 0:
                    base += 1  # every u counts it
                    continue
                if t >= full:
                    continue  # no u counts it
                m, frac = t >> shift, t & ((1 << shift) - 1)
                if frac == 0:
                    hs.append(m - 1.0)  # counts for c >= m, never mixed
                    prev = None
                elif m == prev:
                    # a second threshold in an already mixed bucket: counts for c > m
                    if m == 0:
                        base += 1  # c > 0 always, except c == 0, which is mixed anyway
                    elif m < top:
                        hs.append(float(m))
                else:
                    hs.append(m - 0.5)  # 0 below the bucket, 1/2 inside (mixed), 1 above
                    prev = m
            bases.append(base)
            terms.append([h - half for h in hs])
        self.n_levels = L
        self.n_terms = max(1, max(len(t) for t in terms))
        # padding term: clamp(c, half, half + 1) == half for every c, i.e. contributes 0 after `off`
        h = np.full((L, self.n_terms), half, dtype=np.float64)
        for lvl, ts in enumerate(terms):
            h[lvl, :len(ts)] = ts
        self._h = torch.from_numpy(h.astype(np.float32))
        self._off = torch.from_numpy((np.asarray(bases, dtype=np.float64) - h.sum(axis=1)).astype(np.float32))
        self._thr = torch.from_numpy(thr)
        self._device_cache: dict[torch.device, tuple[torch.Tensor, ...]] = {}

    @property
    def thresholds(self) -> torch.Tensor:
        """(L, L-1) int64 CDF thresholds on the ``2**52`` grid: a read of level ``l`` is ``#{k : thr[l, k] <= u}``."""
        return self._thr

    def _on(self, device: torch.device):
        if device not in self._device_cache:
            self._device_cache[device] = tuple(t.to(device) for t in (self._h, self._off, self._thr))
        return self._device_cache[device]

    def plan(self, level: torch.Tensor) -> "ReadPlan":
        """The per-weight terms for stored level indices ``level`` (int, shape ``(rows, *rest)``)."""
        h, off, thr = self._on(level.device)
        lv = level.reshape(level.shape[0] if level.dim() else 1, -1).to(torch.int64)
        hw = h[lv].permute(2, 0, 1).contiguous()  # (K, rows, cols)
        return ReadPlan(lv, hw, hw + 1, off[lv].contiguous(), thr, tuple(level.shape))


class ReadPlan:
    """Reads of fixed stored levels (from :meth:`ThresholdReads.plan`); cache it while the levels hold."""

    #: elements per chunk: temporaries stay in the CPU caches (larger on a GPU: fewer kernels)
    CHUNK_CPU = 1 << 18
    CHUNK_GPU = 1 << 24

    def __init__(self, level, h_lo, h_hi, off, thr, shape):
        self.level, self.h_lo, self.h_hi, self.off, self.thr, self.shape = level, h_lo, h_hi, off, thr, shape
        self.rows, self.cols = level.shape

    def _chunk(self) -> int:
        return self.CHUNK_GPU if self.level.is_cuda else self.CHUNK_CPU

    def levels_into(self, out: torch.Tensor, r0: int, r1: int, generator: torch.Generator | None = None,
                    buffers: dict | None = None) -> torch.Tensor:
        """Fill ``out`` ``(n, r1 - r0, cols)`` (float32, any strides) with read level indices of rows ``r0:r1``.

        ``buffers`` (a dict kept by the caller) lets successive chunks reuse their temporaries.
        """
        n, rows = out.shape[0], r1 - r0
        m = n * rows * self.cols
        shape = (n, rows * self.cols)  # flat rows: long inner loops even for few columns
        out3 = out
        out = out.view(shape)
        bufs = buffers if buffers is not None else {}
        words = -(-m // 4)
        if bufs.get("bits") is None or bufs["bits"].numel() < words:
            dev = self.level.device
            bufs["bits"] = torch.empty(words, dtype=torch.int64, device=dev)
            bufs["c"] = torch.empty(words * 4, device=dev)
            bufs["acc"] = torch.empty(words * 4, device=dev)
        bits = bufs["bits"][:words]
        bits.random_(-2 ** 63, 2 ** 63 - 1, generator=generator)
        c16 = bits.view(torch.int16)[:m].view(shape)
        c = bufs["c"][:m].view(shape)
        c.copy_(c16)
        R = bufs["acc"][:m].view(shape)
        K = self.h_lo.shape[0]
        lo, hi = self.h_lo[:, r0:r1].reshape(K, -1), self.h_hi[:, r0:r1].reshape(K, -1)
        torch.clamp(c, lo[0], hi[0], out=R)
        for k in range(1, K):
            torch.clamp(c, lo[k], hi[k], out=c if k == K - 1 else out)
            R.add_(c if k == K - 1 else out)
        R.add_(self.off[r0:r1].reshape(-1))
        torch.floor(R, out=out)
        # a mixed read leaves a half in R; row sums of half-integers are exact in float32
        # (|sum| < 2**22 per row), so comparing them finds the rows that hold one
        R3, c3 = R.view(n, rows, self.cols), c16.view(n, rows, self.cols)
        bad_rows = (R3.sum(-1) != out3.sum(-1)).nonzero()
        if bad_rows.numel():
            self._resolve(out3, R3, c3, bad_rows, r0, generator)
        return out3

    def _resolve(self, out, R, c16, bad_rows, r0, generator) -> None:
        """Draw the mixed reads exactly: the 36 bits below their 16-bit bucket, then count thresholds."""
        ni, ri = bad_rows[:, 0], bad_rows[:, 1]
        sub = (R[ni, ri] != out[ni, ri]).nonzero()  # (k, 2): which of bad_rows, which column
        nn, rr, cc = ni[sub[:, 0]], ri[sub[:, 0]], sub[:, 1]
        shift = ThresholdReads.BITS - ThresholdReads.COARSE
        bucket = c16[nn, rr, cc].to(torch.int64) + (1 << (ThresholdReads.COARSE - 1))
        low = torch.randint(0, 1 << shift, bucket.shape, dtype=torch.int64, device=bucket.device,
                            generator=generator)
        u = (bucket << shift) + low
        lvl = self.level[r0 + rr, cc]
        out[nn, rr, cc] = (self.thr[lvl] <= u.unsqueeze(1)).sum(1).to(out.dtype)

    def read(self, n: int, values: torch.Tensor, dtype: torch.dtype,
             generator: torch.Generator | None = None) -> torch.Tensor:
        """``n`` independent reads of every weight: ``values[level]``, shape ``(n, *shape)``."""
        v0 = float(values[0])
        step = float(values[1] - values[0]) if values.numel() > 1 else 1.0
        direct = dtype == torch.float32
        res = torch.empty(n, self.rows, self.cols, dtype=torch.float32 if direct else dtype,
                          device=self.level.device)
        bufs: dict = {}
        per = self.rows * self.cols
        if per <= self._chunk():  # whole matrices per chunk: contiguous writes into the result
            nb = max(1, self._chunk() // per)
            blocks = [(n0, min(n, n0 + nb), 0, self.rows) for n0 in range(0, n, nb)]
        else:
            rc = max(1, self._chunk() // self.cols)
            blocks = [(n0, n0 + 1, r0, min(self.rows, r0 + rc)) for n0 in range(n) for r0 in range(0, self.rows, rc)]
        tmp = None
        for n0, n1, r0, r1 in blocks:
            if direct:
                dst = res[n0:n1, r0:r1]
                self.levels_into(dst, r0, r1, generator, bufs)
            else:
                if tmp is None or tmp.shape[0] < n1 - n0 or tmp.shape[1] < r1 - r0:
                    tmp = torch.empty(n1 - n0, r1 - r0, self.cols, device=self.level.device)
                dst = self.levels_into(tmp[:n1 - n0, :r1 - r0], r0, r1, generator, bufs)
            if step != 1.0:
                dst.mul_(step)
            if v0 != 0.0:
                dst.add_(v0)
            if not direct:
                res[n0:n1, r0:r1].copy_(dst)
        return res.reshape(n, *self.shape)

    def linear(self, x: torch.Tensor, values: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        """``y[b, o] = sum_i x[b, i] * W_b[o, i]`` with a fresh read ``W_b`` per row ``b`` of ``x`` (B, in).

        Rows of ``W`` are drawn chunk by chunk and reduced at once: no ``(B, out, in)`` tensor.
        Differentiable in ``x`` (the reads are constants).
        """
        B = x.shape[0]
        v0 = float(values[0])
        step = float(values[1] - values[0]) if values.numel() > 1 else 1.0
        grad = torch.is_grad_enabled() and x.requires_grad
        xf = x.to(torch.float32).unsqueeze(1)  # (B, 1, in)
        rc = max(1, min(self.rows, self._chunk() // max(1, B * self.cols)))
        parts = []
        bufs: dict = {}
        out = prod = None
        for r0 in range(0, self.rows, rc):
            r1 = min(self.rows, r0 + rc)
            if grad or out is None or out.shape[1] != r1 - r0:
                out = torch.empty(B, r1 - r0, self.cols, device=x.device)
            lv = self.levels_into(out, r0, r1, generator, bufs)
            if grad:
                parts.append((lv * xf).sum(-1))
            else:
                if prod is None or prod.shape != lv.shape:
                    prod = torch.empty_like(lv)
                parts.append(torch.mul(lv, xf, out=prod).sum(-1))
        y = torch.cat(parts, 1)  # (B, out): sum_i x_i * level_i
        y = y * step + v0 * xf.squeeze(1).sum(-1, keepdim=True)
        return y.to(x.dtype)
