"""Bit flips in the binary representation of stored numbers (seed paper 001).

A weight is stored as the bits of a number format (``float32``, ``float16``, ``bfloat16``,
``float64`` or post-training-quantized ``int8``). Reading it back flips every *noisy* bit
independently: a stored 0 becomes 1 with probability ``p01``, a stored 1 becomes 0 with
probability ``p10`` (seed 001, eq. 1 sets them equal; RRAM often is asymmetric).

Bit positions are numbered from the least significant bit: bit 0 is the last mantissa bit, bit
``width - 1`` the sign (IEEE numbering; float32: sign 31, exponent 30..23, mantissa 22..0). The
seed paper counts from the MSB instead; :meth:`BitFlip.thermometer` takes its convention.

Non-finite values. A flipped exponent bit can turn a weight into ``inf`` or ``NaN`` (exponent all
ones) or into a huge finite number. They are **kept as they are**: that is what the hardware reads
and computes with. Downstream, ``0 * inf`` and ``inf - inf`` give NaN logits; the studies count
those samples (``nonfinite``) and score them with ``argmax`` as PyTorch does (NaN counts as the
maximum), so a fully broken network scores about chance. Nothing is clamped or repaired silently.

Sampling is exact and vectorized: for small probabilities (the usual case) the positions of the
flips over all ``reads x elements x noisy bits`` are drawn directly as a Bernoulli process with
geometric gaps (cost proportional to the number of flips, not of bits); the two directions are
separated by exact thinning. For large probabilities one uniform per bit is drawn (a loop over
bit positions, vectorized over elements).
"""
from __future__ import annotations

import math
from typing import Any, Iterable, Sequence

import torch

from .base import ErrorModel, check_probability

__all__ = ["BitFlip", "DTYPES", "INT8_MAX", "to_bits", "from_bits", "flip_bits"]

#: dtype name -> (torch dtype of the value, signed int dtype of the same width, width, exponent bits,
#: mantissa bits). int8 has no exponent/mantissa: bit 7 is the two's-complement sign.
DTYPES: dict[str, tuple[torch.dtype, torch.dtype, int, int, int]] = {
    "float64": (torch.float64, torch.int64, 64, 11, 52),
    "float32": (torch.float32, torch.int32, 32, 8, 23),
    "float16": (torch.float16, torch.int16, 16, 5, 10),
    "bfloat16": (torch.bfloat16, torch.int16, 16, 8, 7),
    "int8": (torch.int8, torch.int8, 8, 0, 7),
}

#: int8 grid of stored weights: symmetric, -127..127 (-128 is only reachable by a flip).
INT8_MAX = 127

#: Above this flip probability the dense sampler (one uniform per bit) is cheaper than drawing
#: flip positions; both are exact.
DENSE_ABOVE = 1.0 / 32


def _check_dtype(dtype: str) -> str:
    if dtype not in DTYPES:
        raise ValueError(f"dtype must be one of {sorted(DTYPES)}, got {dtype!r}")
    return dtype


def _signed_bit_values(int_dtype: torch.dtype, width: int, device=None) -> torch.Tensor:
    """(width,) the value of each single-bit pattern in the signed int dtype (bit width-1 is negative)."""
    vals = [(1 << k) if k < width - 1 else -(1 << k) for k in range(width)]
    return torch.tensor(vals, dtype=torch.int64, device=device).to(int_dtype)


def to_bits(x: torch.Tensor, dtype: str) -> torch.Tensor:
    """Bit pattern of ``x`` stored as ``dtype``: a signed int tensor of the same width, same shape.

    Float formats cast (round to nearest) first; ``int8`` expects integer values in [-128, 127].
    """
    vdt, idt, _, _, _ = DTYPES[_check_dtype(dtype)]
    if dtype == "int8":
        return x.detach().round().clamp(-128, 127).to(torch.int8)
    return x.detach().to(vdt).contiguous().view(idt)


def from_bits(bits: torch.Tensor, dtype: str, out_dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """Inverse of :func:`to_bits`: the value of each bit pattern, cast to ``out_dtype``.

    A float64 pattern whose value exceeds the float32 range becomes ``inf`` in ``out_dtype``
    (float32 compute) -- the same a processor converting the read value would get.
    """
    vdt, _, _, _, _ = DTYPES[_check_dtype(dtype)]
    if dtype == "int8":
        return bits.to(out_dtype)
    return bits.view(vdt).to(out_dtype)


def _bernoulli_positions(total: int, p: float, generator: torch.Generator | None, device) -> torch.Tensor:
    """Sorted positions in ``[0, total)`` of an iid Bernoulli(p) process (exact, via geometric gaps)."""
    if p <= 0.0 or total <= 0:
        return torch.empty(0, dtype=torch.int64, device=device)
    if p >= 1.0:
        return torch.arange(total, dtype=torch.int64, device=device)
    log1mp = math.log1p(-p)
    chunks: list[torch.Tensor] = []
    last = -1  # position of the last success so far
    while True:
        remaining = total - 1 - last
        mean = remaining * p
        m = int(mean + 6.0 * math.sqrt(mean) + 16)
        u = 1.0 - torch.rand(m, dtype=torch.float64, generator=generator, device=device)  # (0, 1]
        # P(gap > k) = (1 - p)^k  <=>  gap = floor(log u / log(1 - p)) + 1
        gaps = torch.floor(torch.log(u) / log1mp).clamp_(max=float(total)) + 1.0
        pos = torch.cumsum(gaps, 0).to(torch.int64) + last
        inside = pos < total
        chunks.append(pos[inside])
        if not bool(inside.all()):
            break
        last = int(pos[-1])
    return torch.cat(chunks)


def flip_bits(bits: torch.Tensor, positions: Sequence[int], p01: float, p10: float,
              generator: torch.Generator | None = None, dense_above: float | None = None,
              inplace: bool = False) -> torch.Tensor:
    """Flip ``bits`` (signed int tensor, any shape) at bit ``positions`` independently.

    A 0 bit becomes 1 with probability ``p01``, a 1 bit becomes 0 with probability ``p10``.
    Returns a new tensor (or ``bits`` itself, modified, with ``inplace=True``; it must be contiguous).
    ``dense_above`` overrides :data:`DENSE_ABOVE` (which sampler runs; both are exact).
    """
    out = bits if inplace else bits.clone()
    pmax = max(p01, p10)
    if pmax <= 0.0 or not positions or out.numel() == 0:
        return out
    idt = out.dtype
    width = torch.iinfo(idt).bits
    single = _signed_bit_values(idt, width, out.device)
    flat = out.view(-1)
    dense_above = DENSE_ABOVE if dense_above is None else dense_above
    if pmax > dense_above:
        for k in positions:  # loop over bit positions only; vectorized over elements
            one = single[k]
            u = torch.rand(flat.shape, generator=generator, device=out.device)
            if p01 == p10:
                hit = u < p01
            else:
                hit = torch.where((flat & one) != 0, u < p10, u < p01)
            flat.bitwise_xor_(hit.to(idt) * one)
        return out
    pos_t = torch.tensor(list(positions), dtype=torch.int64, device=out.device)
    B = pos_t.numel()
    cand = _bernoulli_positions(flat.numel() * B, pmax, generator, out.device)
    if cand.numel() == 0:
        return out
    elem = cand // B
    bit = pos_t[cand % B]
    masks = single[bit]  # (K,) the single-bit pattern of each candidate
    is_one = (flat[elem] & masks) != 0
    # thinning: a candidate at rate pmax is kept with probability p_direction / pmax (exact)
    keep_p = torch.where(is_one, torch.tensor(p10 / pmax, dtype=torch.float64, device=out.device),
                         torch.tensor(p01 / pmax, dtype=torch.float64, device=out.device))
    keep = torch.rand(cand.shape, dtype=torch.float64, generator=generator, device=out.device) < keep_p
    elem, masks = elem[keep], masks[keep]
    if elem.numel() == 0:
        return out
    # several flips can hit one element (different bits). Candidates are sorted, so equal elements
    # are adjacent; distinct single-bit patterns add without carries, so their sum is their OR.
    uniq, inv = torch.unique_consecutive(elem, return_inverse=True)
    combined = torch.zeros(uniq.shape, dtype=torch.int64, device=out.device)
    combined.index_add_(0, inv, masks.to(torch.int64))
    flat[uniq] ^= combined.to(idt)
    return out


def _positions_from_mask(bit_mask: Any, width: int) -> list[int]:
    if bit_mask is None:
        return list(range(width))
    if isinstance(bit_mask, (bool, str, bytes)):
        raise ValueError(f"bit_mask must be None, an int mask or a list of bit positions, got {bit_mask!r}")
    if isinstance(bit_mask, int):
        if not 0 <= bit_mask < (1 << width):
            raise ValueError(f"bit_mask {bit_mask:#x} has bits outside the {width}-bit width "
                             f"(allowed 0 .. {(1 << width) - 1:#x})")
        return [k for k in range(width) if (bit_mask >> k) & 1]
    try:
        pos = list(bit_mask)
    except TypeError:
        raise ValueError(f"bit_mask must be None, an int mask or a list of bit positions, got {bit_mask!r}") from None
    bad = [k for k in pos if isinstance(k, bool) or not isinstance(k, int) or not 0 <= k < width]
    if bad:
        raise ValueError(f"bit positions {bad} are outside the {width}-bit width (allowed integers 0..{width - 1})")
    return sorted(set(pos))


class BitFlip(ErrorModel):
    """Independent bit flips of weights stored in a number format.

    Args:
        p01: probability that a stored 0 bit reads as 1.
        p10: probability that a stored 1 bit reads as 0 (default: ``p01``, symmetric).
        dtype: ``"float32" | "float16" | "bfloat16" | "float64" | "int8"``. ``int8`` is symmetric
            per-layer post-training quantization: the synapse's ``scale`` is the quantization step
            (:meth:`fit_scale` = max|w| / 127) and hidden weights are rounded to -127..127.
        bit_mask: which bits are noisy: None (all), an int whose set bits are the noisy ones
            (e.g. ``0x007FFFFF``: float32 mantissa), or a list of bit positions (LSB = 0).

    Presets: :meth:`symmetric`, :meth:`mantissa_only`, :meth:`protect`, :meth:`thermometer`.
    Reads keep inf/NaN produced by exponent flips (see module docstring).

    Example:
        >>> em = BitFlip.mantissa_only(1e-3, dtype="float16")
        >>> em.bits == list(range(10))
        True
    """

    kind = "bitflip"

    def __init__(self, p01: float, p10: float | None = None, dtype: str = "float32",
                 bit_mask: int | Sequence[int] | None = None):
        self.p01 = check_probability("p01", p01)
        self.p10 = self.p01 if p10 is None else check_probability("p10", p10)
        self.dtype = _check_dtype(dtype)
        self.bits = _positions_from_mask(bit_mask, self.width)

    # -- presets ---------------------------------------------------------------------------
    @classmethod
    def symmetric(cls, p: float, dtype: str = "float32", bit_mask=None) -> "BitFlip":
        """Equal probabilities both ways (seed 001, eq. 1)."""
        return cls(p, p, dtype, bit_mask)

    @classmethod
    def mantissa_only(cls, p01: float, p10: float | None = None, dtype: str = "float32") -> "BitFlip":
        """Only mantissa bits noisy (sign and exponent protected, e.g. kept in reliable memory)."""
        return cls(p01, p10, dtype, cls.fields(dtype)["mantissa"])

    @classmethod
    def protect(cls, p01: float, p10: float | None = None, dtype: str = "float32", *, sign: bool = False,
                exponent: bool = False) -> "BitFlip":
        """All bits noisy except the protected fields (``sign``, ``exponent``)."""
        f = cls.fields(dtype)
        noisy = set(range(DTYPES[_check_dtype(dtype)][2]))
        if sign:
            noisy -= set(f["sign"])
        if exponent:
            noisy -= set(f["exponent"])
        return cls(p01, p10, dtype, sorted(noisy))

    @classmethod
    def thermometer(cls, p: float, first_noisy: int, dtype: str = "float32") -> "BitFlip":
        """Seed 001, Fig. 4: bits ``first_noisy ..`` counted from the MSB (big-endian, sign = 0) are noisy.

        ``first_noisy=0``: all bits; ``1``: all but the sign; ``9`` (float32): mantissa only.
        """
        width = DTYPES[_check_dtype(dtype)][2]
        if not isinstance(first_noisy, int) or not 0 <= first_noisy <= width:
            raise ValueError(f"first_noisy must be an integer in 0..{width} for {dtype}, got {first_noisy!r}")
        return cls(p, p, dtype, list(range(width - first_noisy)))

    @staticmethod
    def fields(dtype: str) -> dict[str, list[int]]:
        """Bit positions (LSB = 0) of ``sign``, ``exponent`` and ``mantissa`` of ``dtype``.

        For ``int8`` the sign is bit 7 and bits 0..6 are listed as ``mantissa`` (magnitude bits).
        """
        _, _, width, ne, nm = DTYPES[_check_dtype(dtype)]
        return {"sign": [width - 1], "exponent": list(range(nm, nm + ne)), "mantissa": list(range(nm))}

    # -- properties ------------------------------------------------------------------------
    @property
    def width(self) -> int:
        """Number of bits per stored value."""
        return DTYPES[self.dtype][2]

    @property
    def bit_mask(self) -> int:
        """The noisy bits as an int mask."""
        return sum(1 << k for k in self.bits)

    @property
    def noiseless(self) -> bool:
        return (self.p01 == 0.0 and self.p10 == 0.0) or not self.bits

    def with_probability(self, p01: float, p10: float | None = None) -> "BitFlip":
        """Same format and mask, other probabilities (``p10`` defaults to ``p01``)."""
        return BitFlip(p01, p10, self.dtype, self.bits)

    # -- ErrorModel hooks ------------------------------------------------------------------
    def quantize(self, w: torch.Tensor) -> torch.Tensor:
        """Value stored for ``w``: rounded to the format (int8: to the -127..127 grid), same dtype as ``w``."""
        w = w.detach()
        if self.dtype == "int8":
            return w.round().clamp(-INT8_MAX, INT8_MAX)
        return w.to(DTYPES[self.dtype][0]).to(w.dtype)

    def ste_range(self) -> tuple[float, float] | None:
        return (-INT8_MAX - 0.5, INT8_MAX + 0.5) if self.dtype == "int8" else None

    def fit_scale(self, w: torch.Tensor) -> float:
        """int8: max|w| / 127 (symmetric per-layer quantization step); floats: 1 (stored as is)."""
        if self.dtype != "int8":
            return 1.0
        m = float(w.detach().abs().max()) if w.numel() else 0.0
        return m / INT8_MAX if m > 0 and math.isfinite(m) else 1.0

    def read(self, stored: torch.Tensor, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
        """``n`` independent reads: ``(n, *stored.shape)``, dtype of ``stored`` (inf/NaN kept)."""
        if n < 0:
            raise ValueError(f"number of reads must be >= 0, got {n!r}")
        bits = to_bits(stored, self.dtype)
        # always a copy: to_bits may share memory with ``stored`` (flips below are in place)
        reads = bits.unsqueeze(0).repeat(n, *([1] * bits.dim()))
        if not self.noiseless:
            reads = flip_bits(reads, self.bits, self.p01, self.p10, generator, inplace=True)
        return from_bits(reads, self.dtype, stored.dtype)

    def read_moments(self, stored: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """int8 only: exact mean and variance of one read (bits flip independently)."""
        if self.dtype != "int8":
            raise NotImplementedError(f"BitFlip({self.dtype}) reads have no finite moments (exponent flips); "
                                      "use sampler='exact' or 'brute'")
        bits = to_bits(stored, "int8").to(torch.int64)
        mean = bits.to(torch.float64)
        var = torch.zeros_like(mean)
        for k in self.bits:
            weight = float(1 << k) if k < 7 else -128.0
            b = ((bits >> k) & 1).to(torch.float64)
            p = b * self.p10 + (1 - b) * self.p01  # flip probability of this bit
            delta = weight * (1 - 2 * b)  # value change if it flips
            mean += p * delta
            var += p * (1 - p) * delta * delta
        return mean.to(stored.dtype), var.to(stored.dtype)

    # -- configuration ---------------------------------------------------------------------
    def config(self) -> dict[str, Any]:
        return {"kind": self.kind, "p01": self.p01, "p10": self.p10, "dtype": self.dtype, "bits": list(self.bits)}

    @classmethod
    def from_config(cls, cfg: dict[str, Any]) -> "BitFlip":
        return cls(cfg["p01"], cfg.get("p10"), cfg.get("dtype", "float32"), cfg.get("bits"))

    def __repr__(self) -> str:
        w = self.width
        if len(self.bits) == w:
            mask = "all bits"
        else:
            mask = f"bits {_ranges(self.bits)}"
        p = f"p={self.p01:g}" if self.p01 == self.p10 else f"p01={self.p01:g}, p10={self.p10:g}"
        return f"BitFlip({self.dtype}, {p}, {mask})"


def _ranges(bits: Iterable[int]) -> str:
    b = sorted(bits)
    if not b:
        return "none"
    out, start, prev = [], b[0], b[0]
    for k in b[1:] + [None]:  # type: ignore[list-item]
        if k is not None and k == prev + 1:
            prev = k
            continue
        out.append(f"{start}" if start == prev else f"{start}-{prev}")
        if k is not None:
            start = prev = k
    return ",".join(out)
