"""Exact inverse-CDF sampling of many small integer distributions at once.

Used for the sum of ``n`` independent reads (one row per (level, n)); single reads by thresholds
live in :mod:`spikenoise.noise._thresholds`. Each row's CDF is stored as integer thresholds on a ``2**bits`` grid
(``bits`` is 50-52 in practice), so sampling is inversion with a 2**-bits uniform: exact up to
that resolution, far finer than float32 uniforms (2**-24). All rows are flattened into one
sorted int64 key array ``row * 2**bits + threshold``. A look-up table on the top bits of the
uniform resolves almost every draw with one gather; the few uniforms that fall into a bucket
holding a threshold are resolved exactly by ``torch.searchsorted`` on the key array.

On CPU tensors the draws run natively when the ``tables`` kernel builds (``spikenoise/native/tables.c``,
see :mod:`spikenoise.native`): one 64-bit word of a counter-based stream per draw, its top bits
both the bucket and the full ``2**-bits`` uniform of the same inversion (same thresholds, same
exact search in mixed buckets). The torch path remains for CUDA and ``SPIKENOISE_NATIVE=0``.

Sums of more than :data:`TABLE_MAX_N` reads are not tabulated (tables grow like ``n**2``): the
per-level counts of the reads are drawn as a multinomial (:meth:`SumOfReads.sample_counts`).
"""
from __future__ import annotations

import ctypes
import math
from collections.abc import Iterable

import numpy as np
import torch

from .. import native

_MAX_BITS = 52  # float64 CDFs carry 53 bits; more would be false precision
_MIXED = np.iinfo(np.int64).min  # look-up-table entry: bucket holds a threshold, search exactly
_MIXED32 = int(np.iinfo(np.int32).min)
_I64, _INT, _U64, _PTR, _DBL = ctypes.c_int64, ctypes.c_int, ctypes.c_uint64, ctypes.c_void_p, ctypes.c_double
_TABLE_ARGS = [_PTR, _PTR, _PTR, _I64, _INT, _INT]  # keys, lut, value_at, n_rows, bits, lut_bits
#: look-up-table entries of the native sampler (int32, 2 MiB per table; measured: 2**17 entries
#: cost 1.7x the time per draw, 2**21 saves 5%). Native entries below -2**30 mark a mixed bucket
#: and point at its first key (entry - int32 min), so the search starts there.
NATIVE_LUT_ENTRIES = 1 << 19
_SIGNATURES = {
    "sn_table_sample": _TABLE_ARGS + [_PTR, _INT, _I64, _U64, _PTR, _INT],
    "sn_table_sample_lookup": _TABLE_ARGS + [_PTR, _INT, _I64, _U64, _PTR, _I64, _INT, _PTR, _INT],
    "sn_add_packed_sums": _TABLE_ARGS + [_PTR, _INT, _I64, _I64, _INT, _PTR, _PTR, _I64, _I64, _U64, _PTR, _INT,
                                         _I64, _DBL, _PTR, _DBL, _INT, _PTR],
    "sn_tables_simd": [_INT],
    "sn_table_invert": _TABLE_ARGS + [_PTR, _PTR, _I64, _PTR],
}


def _kernels(*tensors: torch.Tensor) -> ctypes.CDLL | None:
    """The ``tables`` native library (argument types set), or None: CUDA tensors, or native off/unbuilt."""
    if not native.available("tables", *tensors):
        return None
    lib = native.load("tables")
    if not getattr(lib, "_sn_typed", False):
        for name, args in _SIGNATURES.items():
            getattr(lib, name).argtypes = args
            getattr(lib, name).restype = None if name == "sn_add_packed_sums" else _I64
        lib._sn_typed = True
    return lib


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
        # (int32 entries; at most ~2 MiB so the gathers stay in cache: a bigger, sparser table
        # misses the cache on nearly every draw, which costs more than the extra searches)
        self.lut_bits = int(max(4, min(12, math.floor(math.log2(max(1, (1 << 19) // n_rows))))))
        shift = self.bits - self.lut_bits
        edges = np.arange((1 << self.lut_bits) + 1, dtype=np.int64) << shift
        lut = np.empty((n_rows, 1 << self.lut_bits), dtype=np.int64)
        if value_at.size and (value_at.min() <= _MIXED32 or value_at.max() > np.iinfo(np.int32).max):
            raise ValueError("outcome values do not fit in int32")
        for r in range(n_rows):
            row_keys = flat[starts[r]: starts[r] + keys[r].size]
            at = np.searchsorted(row_keys, np.int64(r) * full + edges, side="right")
            lo, hi = at[:-1], np.searchsorted(row_keys, np.int64(r) * full + edges[1:] - 1, side="right")
            lut[r] = np.where(lo == hi, value_at[np.minimum(starts[r] + lo, flat.size - 1)], _MIXED)
        self._keys = torch.from_numpy(flat)
        self._lut = torch.from_numpy(np.where(lut == _MIXED, _MIXED32, lut).astype(np.int32).reshape(-1))
        self._value_at = torch.from_numpy(value_at)
        self._device_cache: dict[torch.device, tuple[torch.Tensor, ...]] = {}
        self._native: tuple | None = None
        #: whether the native look-up table can encode this table (fewer than 2**30 keys, outcomes
        #: above -2**30); else the torch path samples it
        self.native_ok = flat.size < (1 << 30) and int(value_at.min()) > -(1 << 30)

    def _on(self, device: torch.device):
        if device not in self._device_cache:
            self._device_cache[device] = tuple(t.to(device) for t in (self._keys, self._lut, self._value_at))
        return self._device_cache[device]

    @property
    def nbytes(self) -> int:
        return (self._keys.numel() + self._value_at.numel()) * 8 + self._lut.numel() * 4

    def sample(self, rows: torch.Tensor, generator: torch.Generator | None = None,
               lookup: torch.Tensor | None = None) -> torch.Tensor:
        """One independent draw per element of ``rows`` (int32 or int64, any shape).

        Returns the drawn integer values (int64), or ``lookup[value]`` when ``lookup`` is given
        (e.g. the digital value of a read level), same shape as ``rows``.
        """
        lib = _kernels(rows) if lookup is None else _kernels(rows, lookup)
        if lib is not None and self.native_ok:
            return self._sample_native(lib, rows, generator, lookup)
        keys, lut, value_at = self._on(rows.device)
        flat = rows.reshape(-1)
        out = torch.empty(flat.shape, device=rows.device,
                          dtype=torch.int64 if lookup is None else lookup.dtype)
        # chunks keep temporaries small and reused (fresh multi-100-MB buffers cost page faults)
        chunk = 1 << (24 if rows.is_cuda else 18)
        low_bits = self.bits - self.lut_bits
        for s in range(0, flat.numel(), chunk):
            r = flat[s:s + chunk]
            n = r.numel()
            # the bucket (top lut_bits of u) from 16 random bits per draw, four draws per int64
            words = torch.empty(-(-n // 4), dtype=torch.int64, device=r.device)
            words.random_(-2 ** 63, 2 ** 63 - 1, generator=generator)
            at = words.view(torch.int16)[:n].to(torch.int32)
            at.bitwise_right_shift_(16 - self.lut_bits)
            at.add_(r.to(torch.int32), alpha=1 << self.lut_bits).add_(1 << (self.lut_bits - 1))
            v = lut.index_select(0, at)
            mixed = (v == _MIXED32).nonzero().squeeze(1)
            dst = out[s:s + n]
            if lookup is None:
                dst.copy_(v)
            if mixed.numel():
                # the bucket holds a threshold: draw the low bits of u and search exactly
                low = torch.randint(0, 1 << low_bits, mixed.shape, dtype=torch.int64, device=r.device,
                                    generator=generator)
                key = at[mixed].to(torch.int64) * (1 << low_bits) + low  # = row * 2**bits + u
                found = value_at[torch.searchsorted(keys, key, right=True)]
                if lookup is None:
                    dst[mixed] = found
                else:
                    v[mixed] = found.to(torch.int32)
            if lookup is not None:
                dst.copy_(lookup[v])
        return out.reshape(rows.shape)

    def invert(self, rows: torch.Tensor, u: torch.Tensor) -> torch.Tensor:
        """The outcome (int64) that uniform ``u`` (int64 on the ``2**bits`` grid) picks in row ``rows``: the
        inversion :meth:`sample` applies to its random ``u`` (natively on the CPU when available)."""
        rows, u = torch.broadcast_tensors(rows.to(torch.int64), u.to(torch.int64))
        if bool(((u < 0) | (u >= 2 ** self.bits)).any()) or bool(((rows < 0) | (rows >= self.n_rows)).any()):
            raise ValueError(f"u must lie in [0, 2**{self.bits}) and rows in [0, {self.n_rows})")
        lib = _kernels(rows)
        if lib is None or not self.native_ok:
            keys, _, value_at = self._on(rows.device)
            return value_at[torch.searchsorted(keys, rows * (1 << self.bits) + u, right=True)]
        r, uu = rows.contiguous(), u.contiguous()
        out = torch.empty(r.shape, dtype=torch.int64)
        lib.sn_table_invert(*self._native_table(), native.ptr(r), native.ptr(uu), r.numel(), native.ptr(out))
        return out

    def _native_table(self) -> tuple:
        """The leading arguments of every native call: keys, look-up table, values, sizes.

        The native look-up table has its own bucket count (about :data:`NATIVE_LUT_ENTRIES` in all),
        and its mixed entries point at the bucket's first key (``int32 min + position``) instead of
        a plain marker.
        """
        if self._native is None:
            keys, value_at = self._keys.numpy(), self._value_at.numpy()
            lut_bits = int(max(1, min(self.bits, math.floor(math.log2(max(2, NATIVE_LUT_ENTRIES // self.n_rows))))))
            shift = self.bits - lut_bits
            starts = ((np.arange(self.n_rows, dtype=np.int64)[:, None] << self.bits)
                      + (np.arange(1 << lut_bits, dtype=np.int64) << shift)).reshape(-1)
            lo = np.searchsorted(keys, starts, side="right")  # first key above the bucket's start
            hi = np.searchsorted(keys, starts + ((1 << shift) - 1), side="right")  # ... above its end
            lut = np.where(lo == hi, value_at[np.minimum(lo, keys.size - 1)], np.iinfo(np.int32).min + lo)
            self._native = (torch.from_numpy(lut.astype(np.int32)), lut_bits)
        lut, lut_bits = self._native
        return (native.ptr(self._keys), native.ptr(lut), native.ptr(self._value_at), self.n_rows, self.bits,
                lut_bits)

    def _sample_native(self, lib, rows, generator, lookup) -> torch.Tensor:
        flat = rows.reshape(-1)
        if flat.dtype not in (torch.int32, torch.int64):
            flat = flat.to(torch.int64)
        flat = flat.contiguous()
        rows64 = int(flat.dtype == torch.int64)
        key = native.key_from(generator)
        threads = torch.get_num_threads()
        if lookup is None:
            out = torch.empty(flat.shape, dtype=torch.int64)
            bad = lib.sn_table_sample(*self._native_table(), native.ptr(flat), rows64, flat.numel(), key,
                                      native.ptr(out), threads)
        else:
            table = lookup.contiguous()
            out = torch.empty(flat.shape, dtype=lookup.dtype)
            bad = lib.sn_table_sample_lookup(*self._native_table(), native.ptr(flat), rows64, flat.numel(), key,
                                             native.ptr(table), table.numel(), table.element_size(),
                                             native.ptr(out), threads)
        if bad:
            raise IndexError(f"{bad} row indices outside [0, {self.n_rows})"
                             + ("" if lookup is None else f" or drawn values outside lookup of {lookup.numel()}"))
        return out.reshape(rows.shape)


def _unpack(packed: torch.Tensor, widths: list[int]) -> list[torch.Tensor]:
    """The int64 counts ``n_j`` packed as ``sum_j n_j 2**sum(widths[:j])`` in the float tensor ``packed``."""
    p = torch.round(packed).to(torch.int64)
    if len(widths) == 1:
        return [p]
    out, shift = [], 0
    for w in widths:
        out.append((p >> shift) & ((1 << w) - 1))
        shift += w
    return out


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

    @property
    def table(self) -> InverseCDFTable:
        """The current table: row ``level * (n_max + 1) + n`` is the summed error of ``n`` reads of ``level``."""
        self._ensure(0)
        return self._table  # type: ignore[return-value]

    def _ensure(self, need: int) -> None:
        """Tables for every ``n <= need`` (``need <= table_max_n``), grown by doubling."""
        if need > self.n_max:
            self._build(min(self.table_max_n, max(need, 2 * self.n_max, 16)))

    def add_packed_sums(self, out: torch.Tensor, packs: Iterable[tuple[torch.Tensor, list[int], list[int]]],
                        alpha: float, generator: torch.Generator | None = None,
                        level_values: torch.Tensor | None = None, beta: float = 0.0) -> None:
        """``out += alpha * sum_j e_j``: ``e_j`` the summed error (level steps) of ``n_j`` reads of level ``levels[j]``.

        Args:
            out: float32/float64 tensor (any strides) updated in place.
            packs: ``(packed, levels, widths)``: ``packed`` (shape of ``out``, a float tensor holding
                exact integers) is ``sum_j n_j * 2**s_j`` with ``0 <= n_j < 2**widths[j]`` and
                ``s_j = sum(widths[:j])``. A generator lets each pack be computed just before it is
                drawn from, and freed after.
            alpha: scale of the drawn errors (e.g. the level step, signed).
            level_values: (L,) value of each level: ``beta * sum_j level_values[levels[j]] * n_j`` is
                added too (the error-free output, when the packs count every stored level).

        On the CPU with the native kernel, each element's counts are unpacked, drawn and summed in
        one pass (no per-level temporaries); otherwise in torch.
        """
        values = None if level_values is None else level_values.detach().to("cpu", torch.float64).tolist()
        rest = [pack for pack in packs if not self._add_packed_native(out, *pack, alpha, generator, values, beta)]
        if not rest:
            return
        counts, level_ids = [], []
        for packed, levels, widths in rest:
            counts += _unpack(packed, widths)
            level_ids += levels
        level = torch.tensor(level_ids, device=out.device).view(-1, *([1] * out.dim()))
        drawn = self.sample(level, torch.stack(counts), generator)
        out.add_(drawn.sum(0).to(out.dtype), alpha=alpha)
        if values is not None:
            out.add_(sum(values[lvl] * c.to(out.dtype) for lvl, c in zip(level_ids, counts)), alpha=beta)

    def packed_temp_bytes(self, n_levels: int, n_packs: int, packed_bytes: int, device: torch.device) -> int:
        """Bytes per output element that :meth:`add_packed_sums` holds at once: ``n_packs`` packs of
        ``packed_bytes`` each (for ``n_levels`` levels in all) and what drawing from them needs."""
        if device.type == "cpu" and native.load("tables") is not None:
            return packed_bytes  # one pack at a time, drawn and summed element by element
        return n_packs * packed_bytes + n_levels * 3 * 8  # all packs; int64 counts, their stack, the draws

    def _add_packed_native(self, out, packed, levels, widths, alpha, generator, values, beta) -> bool:
        """:meth:`add_packed_sums` for one pack natively; False (nothing done) when it cannot."""
        lib = _kernels(out, packed)
        if (lib is None or packed.dtype not in (torch.float32, torch.float64) or packed.shape != out.shape
                or out.dtype not in (torch.float32, torch.float64) or not out.dim() or not out[0].is_contiguous()
                or sum(widths) > 63 or len(widths) != len(levels)):
            return False
        if not packed.numel():
            return True
        self._ensure(0)
        if not self._table.native_ok:  # type: ignore[union-attr]
            return False
        packed = packed.contiguous()
        level = torch.tensor(levels, dtype=torch.int64)
        width = torch.tensor(widths, dtype=torch.int64)
        weight = None if values is None else torch.tensor([values[lvl] for lvl in levels], dtype=torch.float64)
        stats = torch.zeros(2, dtype=torch.int64)
        key = native.key_from(generator)

        def run(skip_upto: int) -> tuple[int, int]:
            lib.sn_add_packed_sums(*self._table._native_table(), native.ptr(packed),  # type: ignore[union-attr]
                                   int(packed.dtype == torch.float64), out.shape[0], packed.numel() // out.shape[0],
                                   len(levels), native.ptr(width), native.ptr(level), self.n_max, skip_upto,
                                   key, ctypes.c_void_p(out.data_ptr()),
                                   int(out.dtype == torch.float64), out.stride(0), float(alpha),
                                   None if weight is None else native.ptr(weight), float(beta),
                                   torch.get_num_threads(), native.ptr(stats))
            return int(stats[0]), int(stats[1])

        # one pass with the tables at hand; the rare elements with larger counts get a second pass
        # once the tables have grown (the first left them untouched; same words, so the draws do
        # not depend on how large the tables already were)
        bad, top = run(-1)
        if bad and top < 0:
            raise ValueError("read counts must be >= 0, got a negative packed count")
        if bad:
            done = self.n_max
            self._ensure(min(top, self.table_max_n))
            bad, top = run(done)
            if bad:  # counts above table_max_n: multinomial counts, in torch
                counts = _unpack(packed, widths)
                big = torch.stack(counts).amax(0) > self.n_max
                drawn = alpha * sum(self.sample(torch.full((int(big.sum()),), lvl), c[big], generator)
                                    for lvl, c in zip(levels, counts)).to(torch.float64)
                if values is not None:
                    drawn += beta * sum(values[lvl] * c[big].to(torch.float64) for lvl, c in zip(levels, counts))
                out[big] += drawn.to(out.dtype)
        return True

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
        self._ensure(need)
        dtype = torch.int32 if self.n_levels * (self.n_max + 1) < 2 ** 31 else torch.int64
        rows = n.to(dtype) + level.to(dtype) * (self.n_max + 1)
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
