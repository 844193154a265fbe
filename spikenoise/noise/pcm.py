"""Physics of one PCM cell over time, as IBM aihwkit 1.1.0 models it (``PCMLikeNoiseModel``).

The statistics (programming noise, drift exponent, 1/f read noise) and their exact law at time
``t``, used by the multi-level device model :class:`spikenoise.noise.drift.DriftingPCM`; see that
module's docstring for the equations and their source.
"""
from __future__ import annotations

import functools
import math
from dataclasses import asdict, dataclass, fields
from typing import Any

import numpy as np
from scipy.special import ndtr

__all__ = ["PCMParams", "AIHWKIT_PCM", "CellLaw", "cell_law", "folded_normal_moments",
           "SECOND", "HOUR", "DAY", "YEAR", "normal_pdf", "N_GRID_IDLE"]

#: seconds in common units, for readable time grids
SECOND, HOUR, DAY, YEAR = 1.0, 3600.0, 86400.0, 365.25 * 86400.0

_ZMAX = 8.0  # quadrature range in standard deviations (the tails beyond carry < 1e-15)
_N_PROG = 32  # Gauss-Legendre nodes over the programming noise z1
_N_NU = 24  # nodes per segment over the drift-exponent noise z2 (two segments around the |.| kink)
N_GRID_IDLE = 96  # atoms of the idle (0 uS) cell of a pair when integrating G+ - G-


@dataclass(frozen=True)
class PCMParams:
    """Statistics of a PCM cell; defaults = aihwkit 1.1.0 ``PCMLikeNoiseModel`` (:data:`AIHWKIT_PCM`)."""

    g_max: float = 25.0
    """uS; the conductance the largest |level| is programmed to."""
    prog_coeff: tuple[float, float, float] = (0.26348, 1.9650, -1.1731)
    """uS; programming noise std ``c0 + c1 gr + c2 gr^2`` at ``g_max = prog_coeff_g_max_reference``."""
    prog_coeff_g_max_reference: float = 25.0
    """uS; the ``g_max`` the coefficients were fitted at (the std scales with ``g_max`` / this)."""
    nu_mean_coeff: tuple[float, float] = (-0.0155, 0.0244)
    """drift exponent mean ``a ln(gr) + b`` (dimensionless)."""
    nu_mean_range: tuple[float, float] = (0.049, 0.1)
    """clip range of the drift exponent mean."""
    nu_std_coeff: tuple[float, float] = (-0.0125, -0.0059)
    """drift exponent spread ``a ln(gr) + b`` across cells (dimensionless)."""
    nu_std_range: tuple[float, float] = (0.008, 0.045)
    """clip range of the drift exponent spread."""
    gr_floor: float = 1e-7
    """smallest relative conductance entering ``ln(gr)`` (aihwkit ``_ZERO_CLIP``)."""
    read_noise_coeff: float = 0.0088
    """1/f read noise amplitude ``Q`` at ``g = g_max`` (relative)."""
    read_noise_exp: float = 0.65
    """``q = Q / max(gr_prog^exp, floor)``."""
    read_noise_floor: float = 1e-3
    """lower clip of ``gr_prog^exp``."""
    read_noise_max: float = 0.2
    """upper clip of ``q`` (relative)."""
    t0: float = 20.0
    """s; first read after programming, the drift reference time."""
    t_read: float = 250e-9
    """s; read duration in the 1/f noise integral."""
    prog_noise_scale: float = 1.0
    """multiplies the programming noise std (0: exact programming)."""
    read_noise_scale: float = 1.0
    """multiplies the read noise std (0: noise-free reads)."""
    drift_scale: float = 1.0
    """multiplies the drift exponent (0: no drift)."""

    def __post_init__(self):
        def num(name: str, v: Any) -> float:
            try:
                x = float(v)
            except (TypeError, ValueError):
                raise ValueError(f"PCMParams.{name} must be a number, got {v!r}") from None
            if not math.isfinite(x):
                raise ValueError(f"PCMParams.{name} must be finite, got {v!r}")
            return x

        for f in fields(self):
            v = getattr(self, f.name)
            if isinstance(v, (tuple, list)):
                object.__setattr__(self, f.name, tuple(num(f.name, x) for x in v))
            else:
                object.__setattr__(self, f.name, num(f.name, v))
        for name in ("g_max", "prog_coeff_g_max_reference", "t0", "t_read", "gr_floor", "read_noise_floor"):
            if getattr(self, name) <= 0:
                raise ValueError(f"PCMParams.{name} must be > 0, got {getattr(self, name)!r}")
        for name in ("prog_noise_scale", "read_noise_scale", "drift_scale", "read_noise_coeff", "read_noise_max"):
            if getattr(self, name) < 0:
                raise ValueError(f"PCMParams.{name} must be >= 0, got {getattr(self, name)!r}")
        for name, n in (("prog_coeff", 3), ("nu_mean_coeff", 2), ("nu_std_coeff", 2), ("nu_mean_range", 2),
                        ("nu_std_range", 2)):
            if len(getattr(self, name)) != n:
                raise ValueError(f"PCMParams.{name} must have {n} numbers, got {getattr(self, name)!r}")
        for name in ("nu_mean_range", "nu_std_range"):
            lo, hi = getattr(self, name)
            if not 0 <= lo <= hi:
                raise ValueError(f"PCMParams.{name} must be (low, high) with 0 <= low <= high, got {(lo, hi)!r}")
        gr = np.linspace(0.0, 1.0, 101)
        if np.any(self.prog_std(gr * self.g_max) < 0):
            raise ValueError(f"PCMParams.prog_coeff gives a negative programming sigma on [0, g_max]: "
                             f"{self.prog_coeff!r}")

    # -- the laws, vectorised over target conductances (numpy float64, uS) -----------------
    def prog_std(self, g_target) -> np.ndarray:
        """Programming noise std (uS) of cells with target ``g_target`` (uS)."""
        gr = np.asarray(g_target, dtype=np.float64) / self.g_max
        c0, c1, c2 = self.prog_coeff
        return self.prog_noise_scale * (c0 + c1 * gr + c2 * gr * gr) * self.g_max / self.prog_coeff_g_max_reference

    def nu_mean_std(self, g_target) -> tuple[np.ndarray, np.ndarray]:
        """``(mu, sigma)`` of the normal whose absolute value is the drift exponent (before ``drift_scale``)."""
        gr = np.clip(np.abs(np.asarray(g_target, dtype=np.float64)) / self.g_max, self.gr_floor, None)
        lg = np.log(gr)
        mu = np.clip(self.nu_mean_coeff[0] * lg + self.nu_mean_coeff[1], *self.nu_mean_range)
        sd = np.clip(self.nu_std_coeff[0] * lg + self.nu_std_coeff[1], *self.nu_std_range)
        return mu, sd

    def read_noise_rel(self, g_prog) -> np.ndarray:
        """Relative 1/f read noise ``q`` (before the time factor) of cells programmed to ``g_prog`` (uS)."""
        gr = np.abs(np.asarray(g_prog, dtype=np.float64)) / self.g_max
        q = self.read_noise_coeff / np.maximum(gr ** self.read_noise_exp, self.read_noise_floor)
        return np.minimum(q, self.read_noise_max)

    def time_factor(self, t: float) -> float:
        """``c(t) = sqrt(ln((t + t0 + t_read) / (2 t_read)))`` scaling the accumulated read noise."""
        return math.sqrt(math.log((t + self.t0 + self.t_read) / (2.0 * self.t_read)))

    def drift_log_ratio(self, t: float) -> float:
        """``ln((t + t0) / t0)``; ``G(t) = G_prog exp(-nu * this)``."""
        return math.log1p(t / self.t0) if t > 0 else 0.0

    def config(self) -> dict[str, Any]:
        return {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(self).items()}


#: aihwkit 1.1.0 ``PCMLikeNoiseModel`` defaults (``aihwkit/inference/noise/pcm.py``), fitted on
#: measured PCM devices by Nandakumar et al., ICECS 2019.
AIHWKIT_PCM = PCMParams()


def folded_normal_moments(mu, sigma) -> tuple[np.ndarray, np.ndarray]:
    """Mean and variance of ``|mu + sigma Z|`` (closed form), ``Z`` standard normal."""
    mu = np.asarray(mu, dtype=np.float64)
    sigma = np.asarray(sigma, dtype=np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        a = np.where(sigma > 0, mu / sigma, np.sign(mu) * np.inf)
    pdf = np.where(np.isfinite(a), np.exp(-0.5 * a * a) / math.sqrt(2 * math.pi), 0.0)
    mean = sigma * pdf * 2 + mu * (1 - 2 * ndtr(-a))
    var = mu * mu + sigma * sigma - mean * mean
    return mean, np.maximum(var, 0.0)


def _gauss_legendre(a: float, b: float, n: int) -> tuple[np.ndarray, np.ndarray]:
    x, w = np.polynomial.legendre.leggauss(n)
    return 0.5 * (b - a) * x + 0.5 * (b + a), 0.5 * (b - a) * w


def normal_pdf(z: np.ndarray) -> np.ndarray:
    return np.exp(-0.5 * z * z) / math.sqrt(2.0 * math.pi)


class CellLaw:
    """The law of one cell's conductance at time ``t`` as a quadrature mixture.

    ``G = 0`` with probability ``p_zero`` (programmed to <= 0), else one of the components
    ``max(N(m_k, (m_k s_k)^2), 0)`` with weight ``w_k`` (``sum w = 1 - p_zero`` up to 1e-15).
    """

    def __init__(self, p: PCMParams, g_target: float, t: float):
        s_p = float(p.prog_std(g_target))
        if s_p > 0:
            lower = -g_target / s_p
            self.p_zero = float(ndtr(lower))
            a = max(lower, -_ZMAX)
            if a >= _ZMAX:
                g_prog, w1 = np.zeros(0), np.zeros(0)
            else:
                z1, w1 = _gauss_legendre(a, _ZMAX, _N_PROG)
                w1 = w1 * normal_pdf(z1)
                g_prog = g_target + s_p * z1
        else:
            self.p_zero = 1.0 if g_target <= 0 else 0.0
            g_prog, w1 = (np.zeros(0), np.zeros(0)) if g_target <= 0 else (np.array([g_target]), np.ones(1))
        mu, sd = (float(v) for v in p.nu_mean_std(g_target))
        lr = p.drift_log_ratio(t) * p.drift_scale
        if lr == 0 or sd == 0:
            nu, w2 = np.array([abs(mu)]), np.ones(1)
        else:
            kink = -mu / sd  # |mu + sd z| has a kink here: integrate each side separately
            segs = [(-_ZMAX, kink), (kink, _ZMAX)] if -_ZMAX < kink < _ZMAX else [(-_ZMAX, _ZMAX)]
            parts = [_gauss_legendre(a, b, _N_NU) for a, b in segs]
            z2 = np.concatenate([x for x, _ in parts])
            w2 = np.concatenate([w for _, w in parts]) * normal_pdf(z2)
            nu = np.abs(mu + sd * z2)
        shrink = np.exp(-nu * lr)
        self.m = (g_prog[:, None] * shrink[None, :]).ravel()
        self.w = (w1[:, None] * w2[None, :]).ravel()
        rel = p.read_noise_scale * p.read_noise_rel(g_prog) * p.time_factor(t)
        self.s = np.repeat(rel, shrink.size)

    def cdf(self, x: np.ndarray) -> np.ndarray:
        """P(G <= x) for an array ``x`` (uS)."""
        x = np.asarray(x, dtype=np.float64)
        out = np.full(x.shape, self.p_zero)
        if self.m.size:
            sd = self.m * self.s
            flat = x.reshape(-1, 1)
            with np.errstate(divide="ignore", invalid="ignore"):
                z = np.where(sd > 0, (flat - self.m) / sd, np.where(flat >= self.m, np.inf, -np.inf))
            out = out + (ndtr(z) @ self.w).reshape(x.shape)
        return np.where(x < 0, 0.0, np.clip(out, 0.0, 1.0))

    def moments(self) -> tuple[float, float]:
        """E[G], E[G^2] (uS, uS^2), exact for the clipped-normal components."""
        if not self.m.size:
            return 0.0, 0.0
        sd = self.m * self.s
        with np.errstate(divide="ignore", invalid="ignore"):
            a = np.where(sd > 0, self.m / sd, np.inf)
        cdf, pdf = ndtr(a), np.where(np.isfinite(a), normal_pdf(np.where(np.isfinite(a), a, 0.0)), 0.0)
        e1 = self.m * cdf + sd * pdf
        e2 = (self.m ** 2 + sd ** 2) * cdf + self.m * sd * pdf
        return float(e1 @ self.w), float(e2 @ self.w)

    def upper(self) -> float:
        """A conductance above which the law has < ~1e-13 mass."""
        if not self.m.size:
            return 0.0
        hi = float(np.max(self.m * (1.0 + 8.0 * self.s)))
        lo = 0.0
        for _ in range(60):  # bisection on the CDF for the 1 - 1e-13 quantile
            mid = 0.5 * (lo + hi)
            if self.cdf(np.array([mid]))[0] >= 1.0 - 1e-13:
                hi = mid
            else:
                lo = mid
        return hi


@functools.lru_cache(maxsize=512)
def cell_law(params: PCMParams, g_target: float, t: float) -> CellLaw:
    """Cached: the study and the engine build many models at the same few times."""
    return CellLaw(params, g_target, t)
