"""Exact single reads as a pure function of (key, read number), by the native kernel ``reads.c``.

The law is that of :class:`~spikenoise.noise._tables.ThresholdReads` (52-bit CDF thresholds). A
read is addressed by its number ``n = row * numel + w`` (``w`` the flat weight index; for 2-D
weights ``(out, in)`` the index of the transposed matrix, ``n = (b * in + i) * out + j``, so that the
reads of one input are consecutive), so the same key gives the same reads in any order,
on any thread count, in a forward pass and in its backward pass: a *key* stands for a whole draw
of ``rows`` weight tensors without materializing it. Keys come from torch's generator
(:func:`spikenoise.native.key_from`), so ``torch.manual_seed`` makes them reproducible.
"""
from __future__ import annotations

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
        return _KeyedLinear.apply(x, self, key)

    def _forward(self, x: torch.Tensor, key: int) -> torch.Tensor:
        x = x.detach().contiguous()
        B, (out_f, in_f) = x.shape[0], self.shape
        y = torch.empty(B, out_f, dtype=torch.float32)
        rc = self._lib().sn_read_linear(_u64(key), _i64(B), _i64(out_f), _i64(in_f), native.ptr(x),
                                        native.ptr(self.levels), native.ptr(self.thresholds), self.n_levels,
                                        native.ptr(self.values), native.ptr(y), torch.get_num_threads())
        _check(rc)
        return y

    def _grad_input(self, g: torch.Tensor, key: int) -> torch.Tensor:
        g = g.detach().to(torch.float32).contiguous()
        B, (out_f, in_f) = g.shape[0], self.shape
        gx = torch.empty(B, in_f, dtype=torch.float32)
        rc = self._lib().sn_read_linear_grad_input(_u64(key), _i64(B), _i64(out_f), _i64(in_f), native.ptr(g),
                                                   native.ptr(self.levels), native.ptr(self.thresholds),
                                                   self.n_levels, native.ptr(self.values), native.ptr(gx),
                                                   torch.get_num_threads())
        _check(rc)
        return gx


class KeyedDraw:
    """A static draw of ``rows`` weight tensors held as a key (nothing materialized until asked)."""

    def __init__(self, reads: KeyedReads, key: int, rows: int, dtype: torch.dtype):
        self.reads, self.key, self.rows, self.dtype = reads, key, rows, dtype
        self._tensor: torch.Tensor | None = None

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
    def forward(ctx: Any, x: torch.Tensor, reads: KeyedReads, key: int) -> torch.Tensor:  # type: ignore[override]
        ctx.reads, ctx.key = reads, key
        return reads._forward(x, key)

    @staticmethod
    def backward(ctx: Any, g: torch.Tensor):  # type: ignore[override]
        return ctx.reads._grad_input(g, ctx.key), None, None


def _check(rc: int) -> None:
    if rc != 0:
        raise MemoryError("native reads kernel: out of memory for its index buffers")


def _u64(key: int):
    import ctypes
    return ctypes.c_uint64(key & (2 ** 64 - 1))


def _i64(v: int):
    import ctypes
    return ctypes.c_int64(int(v))
