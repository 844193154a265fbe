"""Input dtypes a noisy layer accepts, and the dtype it computes in.

* Integer and boolean tensors (``int64``, ``uint8``, ``bool``, ...: what event-data loaders give)
  are spike counts: ``c`` is ``|c|`` spikes (negative: spikes of negative sign).
* A floating-point tensor is classified **per tensor**: if every element is an integer it is a
  tensor of spike counts, otherwise the whole tensor is graded (each non-zero element is one read
  weighted by its value). So ``[0., 2.]`` is 2 spikes, ``[0.5, 2.]`` two graded reads.
* Compute dtype: a noisy layer computes in its parameter dtype (float32 unless the model was cast)
  with autocast switched off inside the layer, because spike counts and the exact samplers need
  integers represented exactly (bfloat16 holds integers exactly only up to 256). The output has the
  input's floating dtype (float16/bfloat16 in, the same out); integer/bool inputs give outputs in
  the parameter dtype.
"""
from __future__ import annotations

import functools
from typing import Callable

import torch

__all__ = ["as_compute_input", "engine_forward"]

_AUTOCAST_DEVICES = ("cpu", "cuda")


def as_compute_input(x: torch.Tensor, dtype: torch.dtype) -> tuple[torch.Tensor, torch.dtype]:
    """``x`` cast to the compute ``dtype``, and the dtype the output should have."""
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"a noisy layer takes a torch.Tensor input, got {type(x).__name__}")
    if x.is_complex():
        raise TypeError(f"a noisy layer takes real inputs, got dtype {x.dtype}")
    out_dtype = x.dtype if x.is_floating_point() else dtype
    return (x if x.dtype == dtype else x.to(dtype)), out_dtype


def engine_forward(forward: Callable) -> Callable:
    """Decorate a noisy layer's ``forward(self, x)``: accept integer/bool/low-precision inputs
    and compute in ``self.weight.dtype`` with autocast off (see the module doc)."""
    @functools.wraps(forward)
    def wrapped(self, x, *args, **kwargs):
        x, out_dtype = as_compute_input(x, self.weight.dtype)
        dev = x.device.type
        if dev in _AUTOCAST_DEVICES and torch.is_autocast_enabled(dev):
            with torch.autocast(dev, enabled=False):
                y = forward(self, x, *args, **kwargs)
        else:  # entering an autocast context costs as much as a small layer's matmul
            y = forward(self, x, *args, **kwargs)
        return y if y.dtype == out_dtype else y.to(out_dtype)
    return wrapped
