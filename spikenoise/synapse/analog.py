"""Analog array kernels: DAC, ADC, tiled matmul with per-column digitization, input noise.

Inputs are applied as ``x / input_range`` to conductances in units of ``G_max``; a column current
is in units of ``G_max * input_range`` (see :mod:`spikenoise.synapse.tiled` for the whole layer).
"""
from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

__all__ = ["ARRAY", "ADC_RANGE", "adc", "dac", "tiled_matmul", "array_count", "InputNoise", "add_input_noise"]

#: default array size (rows, columns) of seed 003
ARRAY = (256, 64)
#: default ADC input range in units of ``G_max * input_range`` (0-45 uA / 3 uA, seed 003 sec. 3.2)
ADC_RANGE = 15.0


def _round_half_up(x: torch.Tensor) -> torch.Tensor:
    return torch.floor(x + 0.5)


def adc(i: torch.Tensor, bits: int | None, full_scale: float) -> torch.Tensor:
    """Digitize column currents ``i`` (any shape): clip to ``[0, full_scale]``, round to LSB.

    ``LSB = full_scale / (2**bits - 1)``, codes ``0 .. 2**bits - 1``, round half up. Gradient:
    straight-through inside ``[0, full_scale]``, zero outside. ``bits=None``: ideal (identity).
    """
    if bits is None:
        return i
    n = 2 ** bits - 1
    lsb = full_scale / n
    ic = i.clamp(0.0, full_scale)
    q = _round_half_up(ic.detach() / lsb).clamp_(0, n) * lsb
    return ic + (q - ic).detach()


def dac(x: torch.Tensor, bits: int | None, full_scale: float | None) -> torch.Tensor:
    """Clip inputs to ``[-full_scale, full_scale]`` and quantize ``|x|`` to ``2**bits - 1`` steps.

    Straight-through gradient inside the range. ``full_scale=None``: no clipping/quantization.
    """
    if full_scale is None:
        return x
    xc = x.clamp(-full_scale, full_scale)
    if bits is None:
        return xc
    lsb = full_scale / (2 ** bits - 1)
    q = torch.sign(xc.detach()) * _round_half_up(xc.detach().abs() / lsb) * lsb
    return xc + (q - xc).detach()


def tiled_matmul(x: torch.Tensor, g_plus: torch.Tensor, g_minus: torch.Tensor, *, dg: float,
                 rows: int | None, adc_bits: int | None, adc_range: float, input_range: float,
                 multipliers: torch.Tensor | None = None, probe: list | None = None) -> torch.Tensor:
    """Partial sums per array, digitized per column, summed digitally.

    Args:
        x: ``(B, P, K)`` inputs, ``>= 0``, already within ``[0, input_range]`` (P: positions).
        g_plus, g_minus: ``(n, O, K)`` conductances in units of ``G_max``; ``n`` is 1 (shared
            by the batch) or B (one programming per row).
        dg: ``G_max - G_min`` in units of ``G_max`` (weight = (G+ - G-) / dg).
        rows: rows per array (None: one array spans all K inputs).
        adc_bits, adc_range: the ADC (bits None: ideal).
        input_range: full-scale input (inputs are applied as ``x / input_range``).
        multipliers: ``(R, O)`` per-array multipliers (R = number of row tiles) or None.
        probe: if a list, the column currents ``(B, P, R, 2O)`` before the ADC are appended.

    Returns:
        ``(B, P, O)`` = ``sum_r m_r * (ADC(I+_r) - ADC(I-_r)) * input_range / dg``.
    """
    B, P, K = x.shape
    n, O, K2 = g_plus.shape
    if K2 != K or g_minus.shape != g_plus.shape:
        raise ValueError(f"inputs have {K} features but conductances have shape {tuple(g_plus.shape)}")
    if n not in (1, B):
        raise ValueError(f"conductances hold {n} programmings for a batch of {B}")
    r = K if rows is None else int(rows)
    R = -(-K // r)
    pad = R * r - K
    xs = x / input_range
    if pad:
        xs = F.pad(xs, (0, pad))
        g_plus = F.pad(g_plus, (0, pad))
        g_minus = F.pad(g_minus, (0, pad))
    xs = xs.reshape(B, P, R, r)
    gp = g_plus.reshape(n, O, R, r)
    gm = g_minus.reshape(n, O, R, r)
    if n == 1:
        ip = torch.einsum("bprk,ork->bpro", xs, gp[0])
        im = torch.einsum("bprk,ork->bpro", xs, gm[0])
    else:
        ip = torch.einsum("bprk,bork->bpro", xs, gp)
        im = torch.einsum("bprk,bork->bpro", xs, gm)
    if probe is not None:
        probe.append(torch.cat([ip, im], dim=-1).detach())
    ps = (adc(ip, adc_bits, adc_range) - adc(im, adc_bits, adc_range)) * (input_range / dg)
    if multipliers is not None:
        ps = ps * multipliers
    return ps.sum(dim=2)


def array_count(in_features: int, out_features: int, array: tuple[int, int] | None = ARRAY) -> tuple[int, int]:
    """``(row tiles, column tiles)`` for a weight ``(out, in)``, two columns per weight."""
    if array is None:
        return 1, 1
    rows, cols = array
    return -(-in_features // rows), -(-2 * out_features // cols)


def add_input_noise(x: torch.Tensor, sigma: float) -> torch.Tensor:
    """``x + sigma * N(0, 1)``, drawn fresh per element."""
    return x + sigma * torch.randn_like(x)


class InputNoise(nn.Module):
    """Additive Gaussian noise ``x + sigma * N(0, 1)`` on every call (seed 004 ``sigma_te``).

    Active in training and evaluation (it models noisy signals, not a regularizer); drawn fresh
    per element at every call. ``sigma`` is in the input's own units.
    """

    def __init__(self, sigma: float = 0.0):
        super().__init__()
        self.sigma = float(sigma)
        if not self.sigma >= 0:
            raise ValueError(f"sigma must be >= 0, got {sigma!r}")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return add_input_noise(x, self.sigma) if self.sigma > 0 else x

    def extra_repr(self) -> str:
        return f"sigma={self.sigma:g}, fresh draw per element at every call"
