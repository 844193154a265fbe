"""Exact single reads as a pure function of (key, read number), by the native kernel ``reads.c``.

The law is that of :class:`~spikenoise.noise._thresholds.ThresholdReads` (52-bit CDF thresholds). A
read is addressed by its number ``n = row * numel + w`` (``w`` the flat weight index; for 2-D
weights ``(out, in)`` the index of the transposed matrix, ``n = (b * in + i) * out + j``, so that the
reads of one input are consecutive), so the same key gives the same reads in any order,
on any thread count, in a forward pass and in its backward pass: a *key* stands for a whole draw
of ``rows`` weight tensors without materializing it. Keys come from torch's generator
(:func:`spikenoise.native.key_from`), so ``torch.manual_seed`` makes them reproducible.
"""
from __future__ import annotations

import ctypes
from typing import Any

import torch

from .. import native

__all__ = ["KeyedReads", "KeyedDraw", "KERNEL"]

KERNEL = "reads"


class KeyedReads:
    """Keyed reads of fixed stored level indices ``levels`` (any shape, values < ``L`` <= 255).

    Args:
        levels: int tensor of level indices (CPU).
        thresholds: (L, L-1) int64 thresholds (``ThresholdReads.thresholds``).
        values: (L,) digital value of each level.
    """

    def __init__(self, levels: torch.Tensor, thresholds: torch.Tensor, values: torch.Tensor):
        L = int(values.numel())
        if not 2 <= L <= 255 or tuple(thresholds.shape) != (L, L - 1):
            raise ValueError(f"keyed reads need 2..255 levels and (L, L-1) thresholds, got {L} levels and "
                             f"thresholds of shape {tuple(thresholds.shape)}")
        self.shape = tuple(levels.shape)
        lv = levels.detach().to(torch.uint8)
        # 2-D (Linear) weights are numbered (and stored) transposed: an input's reads are consecutive
        self.levels = (lv.t() if lv.dim() == 2 else lv).contiguous()
        self.thresholds = thresholds.detach().to(torch.int64).contiguous()
        self.values = values.detach().to(torch.float32).contiguous()
        self.n_levels = L
        v = values.detach().to(torch.float64)
        step = v[1:] - v[:-1]
        if not torch.allclose(step, step[0].expand_as(step), rtol=1e-9, atol=0.0):
            raise ValueError(f"keyed reads need equally spaced level values, got {v.tolist()}")
        # the Linear kernels sum v0 * sum(x) + step * sum(x * level): equally spaced levels
        self._v0, self._step = ctypes.c_float(float(v[0])), ctypes.c_float(float(step[0]))

    @staticmethod
    def usable(*tensors: torch.Tensor) -> bool:
        """True when the kernel loads and every tensor is a float32 CPU tensor."""
        return all(t.dtype == torch.float32 for t in tensors) and native.available(KERNEL, *tensors)

    def _lib(self):
        lib = native.load(KERNEL)
        if lib is None:
            raise RuntimeError(f"native kernel {KERNEL!r} unavailable: {native.build_error(KERNEL)}")
        return lib

    def read(self, key: int, rows: int) -> torch.Tensor:
        """The read values ``(rows, *shape)`` (float32) of draw ``key``: row ``r`` holds reads ``r * numel + w``
        (2-D weights: a transposed view, numbered as the module docstring says)."""
        numel = self.levels.numel()
        out = torch.empty(rows, *self.levels.shape, dtype=torch.float32)
        rc = self._lib().sn_read_values(_u64(key), _i64(rows), _i64(numel), native.ptr(self.levels),
                                        native.ptr(self.thresholds), self.n_levels, native.ptr(self.values),
                                        native.ptr(out), torch.get_num_threads())
        _check(rc)
        return out.transpose(1, 2) if len(self.shape) == 2 else out

    def linear(self, x: torch.Tensor, key: int) -> torch.Tensor:
        """``y[b, j] = sum_i x[b, i] * read(b, j, i)`` (B, out) for x (B, in) float32, levels (out, in).

        Differentiable in ``x``: the backward pass regenerates the same reads from ``key``.
        """
        if len(self.shape) != 2 or x.dim() != 2 or x.shape[1] != self.shape[1]:
            raise ValueError(f"keyed linear reads need x (B, {self.shape[-1]}) and 2-D levels, got x "
                             f"{tuple(x.shape)} and levels {self.shape}")
        return _KeyedLinear.apply(x, self, key, None)

    def read_levels(self, key: int, rows: int) -> torch.Tensor:
        """The level indices (uint8) of the reads of :meth:`read`, in the stored layout
        ``(rows, *levels.shape)`` (2-D weights: transposed, ``(rows, in, out)``)."""
        numel = self.levels.numel()
        out = torch.empty(rows, *self.levels.shape, dtype=torch.uint8)
        rc = self._lib().sn_read_levels(_u64(key), _i64(rows), _i64(numel), native.ptr(self.levels),
                                        native.ptr(self.thresholds), self.n_levels, native.ptr(out),
                                        torch.get_num_threads())
        _check(rc)
        return out

    def _forward(self, x: torch.Tensor, key: int, levels: torch.Tensor | None) -> torch.Tensor:
        x = x.detach().contiguous()
        B, (out_f, in_f) = x.shape[0], self.shape
        y = torch.empty(B, out_f, dtype=torch.float32)
        if levels is not None:  # the reads of `key`, materialized by read_levels
            rc = self._lib().sn_levels_linear(_i64(B), _i64(out_f), _i64(in_f), native.ptr(x), native.ptr(levels),
                                              self._v0, self._step, native.ptr(y), torch.get_num_threads())
            _check(rc)
            return y
        rc = self._lib().sn_read_linear(_u64(key), _i64(B), _i64(out_f), _i64(in_f), native.ptr(x),
                                        native.ptr(self.levels), native.ptr(self.thresholds), self.n_levels,
                                        self._v0, self._step, native.ptr(y), torch.get_num_threads())
        _check(rc)
        return y

    def _grad_input(self, g: torch.Tensor, key: int) -> torch.Tensor:
        g = g.detach().to(torch.float32).contiguous()
        B, (out_f, in_f) = g.shape[0], self.shape
        gx = torch.empty(B, in_f, dtype=torch.float32)
        rc = self._lib().sn_read_linear_grad_input(_u64(key), _i64(B), _i64(out_f), _i64(in_f), native.ptr(g),
                                                   native.ptr(self.levels), native.ptr(self.thresholds),
                                                   self.n_levels, self._v0, self._step, native.ptr(gx),
                                                   torch.get_num_threads())
        _check(rc)
        return gx


class KeyedDraw:
    """A static draw of ``rows`` weight tensors held as a key.

    Its first call regenerates the reads from the key (a new draw costs one pass of reads, no
    ``rows x weights`` tensor); from the second call on, the read levels are kept as uint8 (a
    quarter of the float read tensor) and each later call is a plain product with them (measured:
    about 3x faster than regenerating, paid back after a few calls). The float read weights are
    built only when asked (:meth:`materialize`, e.g. ``layer.draw``).
    """

    #: calls of one draw after which its read levels are materialized (see the class docstring)
    MATERIALIZE_AFTER = 1

    def __init__(self, reads: KeyedReads, key: int, rows: int, dtype: torch.dtype):
        self.reads, self.key, self.rows, self.dtype = reads, key, rows, dtype
        self.calls = 0
        self._tensor: torch.Tensor | None = None
        self._levels: torch.Tensor | None = None

    def linear(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, out)``: row ``b`` of ``x`` ``(B, in)`` times its frozen read weights (2-D weights only);
        differentiable in ``x``."""
        if len(self.reads.shape) != 2 or x.dim() != 2 or x.shape[0] != self.rows:
            raise ValueError(f"a keyed draw of {self.rows} rows of {self.reads.shape} weights needs x "
                             f"({self.rows}, in), got {tuple(x.shape)}")
        if self._levels is None and self.calls >= self.MATERIALIZE_AFTER:
            self._levels = self.reads.read_levels(self.key, self.rows)
        self.calls += 1
        return _KeyedLinear.apply(x, self.reads, self.key, self._levels)

    @property
    def shape(self) -> tuple[int, ...]:
        return (self.rows, *self.reads.shape)

    def materialize(self) -> torch.Tensor:
        """The read weights ``(rows, *shape)``: exactly the reads every call of this draw uses (cached)."""
        if self._tensor is None:
            self._tensor = self.reads.read(self.key, self.rows).to(self.dtype)
        return self._tensor


class _KeyedLinear(torch.autograd.Function):
    @staticmethod
    def forward(ctx: Any, x: torch.Tensor, reads: KeyedReads, key: int,  # type: ignore[override]
                levels: torch.Tensor | None) -> torch.Tensor:
        ctx.reads, ctx.key = reads, key
        return reads._forward(x, key, levels)

    @staticmethod
    def backward(ctx: Any, g: torch.Tensor):  # type: ignore[override]
        # the key regenerates the forward's reads (materialized or not: the same ones)
        return ctx.reads._grad_input(g, ctx.key), None, None, None


def _check(rc: int) -> None:
    if rc != 0:
        raise MemoryError("native reads kernel: out of memory for its index buffers")


def _u64(key: int):
    return ctypes.c_uint64(key & (2 ** 64 - 1))


def _i64(v: int):
    return ctypes.c_int64(int(v))
