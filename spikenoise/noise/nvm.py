"""Multi-level NVM cells with Gaussian read variability (seed paper 000, section II.C).

Each weight is stored in one cell programmed to one of ``L`` equally spaced levels, each level
mapped to a digital value (default 8 levels, -4..+3). A read senses the cell's analog state,
Gaussian around the programmed level with standard deviation ``sigma`` (in units of the level
spacing), and decides the level with thresholds at the mid-points between levels. So a read
returns the programmed level with probability ``p0`` or a neighbour at distance ``i`` with
probability ``p_i``, given exactly by the Gaussian CDF (the confusion matrix).
"""
from __future__ import annotations

from typing import Any, Sequence

import numpy as np
import torch
from scipy.special import ndtr, ndtri

from .. import native
from ._tables import SumOfReads
from ._thresholds import ReadPlan, ThresholdReads
from .native_reads import KeyedReads
from .base import DiscreteLevels, ErrorModel, Reader, check_reads

__all__ = ["MultiLevelNVM", "NOISE_LEVEL_P0"]

#: Preset noise levels, defined by the probability ``p0`` that the middle level (-1 for the
#: default levels) is read correctly. Level 2 is the paper's worked example (p0=0.50,
#: p1=0.23, p2=0.02 on each side); levels 1 and 3 are our choice, bracketing it.
NOISE_LEVEL_P0 = {0: 1.0, 1: 0.80, 2: 0.50, 3: 0.35}


def _interval_prob(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """P(a < Z < b) for standard normal Z, accurate in both tails."""
    # for intervals on the positive side use survival functions (1 - cdf loses the tail)
    pos = a > 0
    out = ndtr(b) - ndtr(a)
    out[pos] = ndtr(-a[pos]) - ndtr(-b[pos])
    return np.clip(out, 0.0, 1.0)


def _float_array(name: str, value: Any) -> np.ndarray:
    """``value`` as a float64 array, or ValueError naming ``name`` (strings, bools and None refused)."""
    if value is None or isinstance(value, (str, bytes, bool)):
        raise ValueError(f"{name} must be numbers, got {value!r}")
    try:
        if isinstance(value, torch.Tensor):
            return value.detach().to(torch.float64).cpu().numpy()
        arr = np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be numbers, got {value!r}") from None
    return arr


def _default_values(n_levels: int) -> list[float]:
    return [float(v) for v in range(-(n_levels // 2), n_levels - n_levels // 2)]


class MultiLevelNVM(ErrorModel):
    """An ``L``-level NVM cell read through mid-point thresholds.

    Args:
        sigma: read standard deviation in units of the level spacing; one number for all levels
            or one per level (length ``L``). 0 means error-free.
        values: digital value of each level, equally spaced and increasing
            (default ``-L//2 .. L - L//2 - 1``, i.e. -4..+3 for 8 levels).
        n_levels: number of levels when ``values`` is not given (default 8).

    Other constructors: :meth:`noise_level` (paper presets), :meth:`from_confusion`
    (a measured confusion matrix).

    Example:
        >>> nvm = MultiLevelNVM.noise_level(2)
        >>> round(float(nvm.confusion[3, 3]), 2)   # level -1 read correctly
        0.5
    """

    kind = "multilevel_nvm"

    def __init__(self, sigma: float | Sequence[float] = 0.0, values: Sequence[float] | None = None,
                 n_levels: int | None = None, *, confusion: np.ndarray | torch.Tensor | Sequence | None = None):
        if n_levels is not None and (isinstance(n_levels, bool) or not isinstance(n_levels, (int, np.integer))
                                     or n_levels < 2):
            raise ValueError(f"n_levels must be an integer >= 2, got {n_levels!r}")
        if values is None:
            values = _default_values(8 if n_levels is None else int(n_levels))
        vals = _float_array("values", values)
        if vals.ndim != 1 or vals.size < 2 or not np.isfinite(vals).all():
            raise ValueError(f"values must be a 1-D list of at least 2 finite numbers, got {values!r}")
        if n_levels is not None and n_levels != vals.size:
            raise ValueError(f"n_levels={n_levels!r} conflicts with values={vals.tolist()} ({vals.size} levels); "
                             "give one of them")
        steps = np.diff(vals)
        if np.any(steps <= 0):
            raise ValueError(f"values must be strictly increasing, got {vals.tolist()}")
        if not np.allclose(steps, steps[0], rtol=1e-9, atol=0):
            raise ValueError(f"values must be equally spaced, got {vals.tolist()}")
        self._values = vals
        L = vals.size
        if confusion is not None:
            if not (np.ndim(sigma) == 0 and isinstance(sigma, (int, float)) and sigma == 0):
                raise ValueError(f"sigma={sigma!r} conflicts with confusion (a confusion matrix fixes the read "
                                 "errors); give one of them")
            P = _float_array("confusion", confusion)
            if P.shape != (L, L):
                raise ValueError(f"confusion must have shape ({L}, {L}) for {L} levels, got {P.shape}")
            if not np.isfinite(P).all() or np.any(P < 0) or np.any(P > 1):
                bad = P[~((P >= 0) & (P <= 1))]
                raise ValueError(f"confusion entries must be probabilities in [0, 1], got {bad[:5].tolist()}")
            sums = P.sum(axis=1)
            if not np.allclose(sums, 1.0, atol=1e-6):
                raise ValueError(f"confusion rows must sum to 1, got row sums {sums.tolist()}")
            self._sigma = None
            self._P = P / sums[:, None]
        else:
            arr = _float_array("sigma", sigma)
            sig = np.broadcast_to(arr, (L,)).copy() if arr.ndim == 0 else arr
            if sig.shape != (L,):
                raise ValueError(f"sigma must be one number or {L} numbers (one per level), got {sigma!r}")
            if not np.isfinite(sig).all() or np.any(sig < 0):
                raise ValueError(f"sigma must be finite and >= 0, got {sigma!r}")
            self._sigma = sig
            self._P = self._gaussian_confusion(sig)
        self._single: ThresholdReads | None = None
        self._sums: SumOfReads | None = None

    # -- constructors ----------------------------------------------------------------------
    @classmethod
    def noise_level(cls, level: int, values: Sequence[float] | None = None,
                    n_levels: int | None = None) -> "MultiLevelNVM":
        """Preset noise level 0 (error-free), 1, 2 (paper: p0=0.50 for level -1) or 3.

        The preset fixes ``p0`` of the middle level (see :data:`NOISE_LEVEL_P0`); sigma follows
        as ``0.5 / Phi^-1((1 + p0) / 2)``: 0.390 (level 1), 0.741 (level 2), 1.102 (level 3).
        """
        if isinstance(level, bool) or level not in NOISE_LEVEL_P0:
            raise ValueError(f"noise level must be one of {sorted(NOISE_LEVEL_P0)}, got {level!r}")
        return cls(sigma=cls.sigma_for_p0(NOISE_LEVEL_P0[level]), values=values, n_levels=n_levels)

    @staticmethod
    def sigma_for_p0(p0: float) -> float:
        """Sigma (level spacings) at which an inner level is read correctly with probability ``p0``."""
        if isinstance(p0, (bool, str, bytes)) or not isinstance(p0, (int, float, np.floating, np.integer)) \
                or not 0.0 < p0 <= 1.0:
            raise ValueError(f"p0 must be a number in (0, 1], got {p0!r}")
        return 0.0 if p0 == 1.0 else float(0.5 / ndtri((1.0 + p0) / 2.0))

    @classmethod
    def from_confusion(cls, confusion, values: Sequence[float] | None = None) -> "MultiLevelNVM":
        """Build from a measured confusion matrix ``P[true, read]`` (rows sum to 1)."""
        P = _float_array("confusion", confusion)
        if P.ndim != 2 or P.shape[0] != P.shape[1] or P.shape[0] < 2:
            raise ValueError(f"confusion must be a square matrix of at least 2 levels, got shape {P.shape}")
        return cls(values=values, n_levels=None if values is not None else P.shape[0], confusion=P)

    @classmethod
    def from_config(cls, cfg: dict[str, Any]) -> "MultiLevelNVM":
        if cfg.get("confusion") is not None:
            return cls(values=cfg["values"], confusion=cfg["confusion"])
        return cls(sigma=cfg["sigma"], values=cfg["values"])

    def _gaussian_confusion(self, sig: np.ndarray) -> np.ndarray:
        L = sig.size
        k = np.arange(L, dtype=np.float64)
        P = np.zeros((L, L))
        for i in range(L):
            if sig[i] == 0:
                P[i, i] = 1.0
                continue
            lo = np.where(k == 0, -np.inf, k - 0.5 - i) / sig[i]
            hi = np.where(k == L - 1, np.inf, k + 0.5 - i) / sig[i]
            P[i] = _interval_prob(lo, hi)
            P[i] /= P[i].sum()
        return P

    # -- properties ------------------------------------------------------------------------
    @property
    def n_levels(self) -> int:
        return int(self._values.size)

    @property
    def values(self) -> torch.Tensor:
        """(L,) float64 digital value of each level."""
        return torch.from_numpy(self._values.copy())

    @property
    def step(self) -> float:
        return float(self._values[1] - self._values[0])

    @property
    def sigma(self) -> torch.Tensor | None:
        """(L,) read sigma per level in level spacings, or None if built from a confusion matrix."""
        return None if self._sigma is None else torch.from_numpy(self._sigma.copy())

    @property
    def confusion(self) -> torch.Tensor:
        """(L, L) float64, ``confusion[i, j]`` = P(level i is read as level j)."""
        return torch.from_numpy(self._P.copy())

    @property
    def noiseless(self) -> bool:
        if getattr(self, "_noiseless", None) is None:  # asked at every layer call: computed once
            self._noiseless = bool(np.array_equal(self._P, np.eye(self.n_levels)))
        return self._noiseless

    def mean_error(self) -> torch.Tensor:
        """(L,) expected read error ``E[v_read - v_true]`` per level, in digital units."""
        return torch.from_numpy(self._P @ self._values - self._values)

    def error_magnitude(self) -> torch.Tensor:
        """(L,) average error magnitude ``E|v_read - v_true|`` per level (paper Fig. 3D top)."""
        diff = np.abs(self._values[None, :] - self._values[:, None])
        return torch.from_numpy((self._P * diff).sum(axis=1))

    def snr_db(self) -> torch.Tensor:
        """(L,) ``20 log10(|v| / E|error|)`` per level in dB (paper Fig. 3D bottom).

        -inf for the value 0 (no signal), +inf for an error-free level.
        """
        mag = np.abs(self._values)
        err = self.error_magnitude().numpy()
        with np.errstate(divide="ignore", invalid="ignore"):
            snr = 20.0 * np.log10(mag / err)
        snr[mag == 0] = -np.inf
        snr[(err == 0) & (mag > 0)] = np.inf
        return torch.from_numpy(snr)

    # -- ErrorModel hooks ------------------------------------------------------------------
    def level_index(self, stored: torch.Tensor) -> torch.Tensor:
        """Level index (int64) of stored values (nearest level)."""
        idx = torch.round((stored.detach().to(torch.float64) - self._values[0]) / self.step)
        if bool(torch.isnan(idx).any()):
            # NaN has no level (its int64 cast is a garbage index); +-inf clamp to the end levels
            raise ValueError(f"cannot store NaN in {self!r}: a cell holds one of its levels; "
                             f"{int(torch.isnan(idx).sum())} of {idx.numel()} values are NaN")
        return idx.clamp_(0, self.n_levels - 1).to(torch.int64)

    def quantize(self, w: torch.Tensor) -> torch.Tensor:
        vals = torch.as_tensor(self._values, dtype=w.dtype, device=w.device)
        return vals[self.level_index(w)]

    def ste_range(self) -> tuple[float, float]:
        return float(self._values[0] - self.step / 2), float(self._values[-1] + self.step / 2)

    def fit_scale(self, w: torch.Tensor) -> float:
        w = w.detach()
        vmin, vmax = float(self._values[0]), float(self._values[-1])
        cands = []
        if vmax > 0:
            cands.append(float(w.max()) / vmax)
        if vmin < 0:
            cands.append(float(w.min()) / vmin)
        s = max([c for c in cands if c > 0], default=0.0)
        return s if s > 0 else 1.0

    def read(self, stored: torch.Tensor, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
        check_reads(n)
        return _NVMReader(self, stored).read(n, generator)

    def reader(self, stored: torch.Tensor) -> Reader:
        """Reads of ``stored`` by exact inversion on 16 random bits per read (see
        :class:`~spikenoise.noise._thresholds.ThresholdReads`), prepared once for repeated draws.
        A subclass that overrides :meth:`read` gets a reader that calls it."""
        if type(self).read is not MultiLevelNVM.read:
            return Reader(self, stored)
        return _NVMReader(self, stored)

    def threshold_reads(self) -> ThresholdReads:
        """The exact single-read sampler of this confusion matrix (built once)."""
        if self._single is None:
            self._single = ThresholdReads(self._P)
        return self._single

    def sum_sampler(self) -> SumOfReads:
        """Exact sampler of summed errors of ``n`` reads (used by the fast per-spike path)."""
        if self._sums is None:
            self._sums = SumOfReads(self._P)
        return self._sums

    def discrete(self) -> DiscreteLevels:
        return DiscreteLevels(values=self.values, confusion=self.confusion)

    def read_moments(self, stored: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        m = self._P @ self._values
        v = self._P @ self._values ** 2 - m ** 2
        idx = self.level_index(stored)
        mt = torch.as_tensor(m, dtype=stored.dtype, device=stored.device)
        vt = torch.as_tensor(np.maximum(v, 0.0), dtype=stored.dtype, device=stored.device)
        return mt[idx], vt[idx]

    def config(self) -> dict[str, Any]:
        cfg: dict[str, Any] = {"kind": self.kind, "values": self._values.tolist()}
        if self._sigma is None:
            cfg["confusion"] = self._P.tolist()
        else:
            cfg["sigma"] = self._sigma.tolist()
        return cfg

    def __repr__(self) -> str:
        mid = self.n_levels // 2 - 1 if self.n_levels > 2 else 0
        vals = self._values
        lv = f"{vals[0]:g}..{vals[-1]:g}" if self.n_levels > 3 else ",".join(f"{v:g}" for v in vals)
        if self._sigma is None:
            src = "measured confusion"
        elif np.all(self._sigma == self._sigma[0]):
            src = f"sigma={self._sigma[0]:.3f}"
        else:
            src = "sigma=[" + ", ".join(f"{s:.3f}" for s in self._sigma) + "]"
        return f"MultiLevelNVM(levels={lv} ({self.n_levels}), {src}, p_correct[{vals[mid]:g}]={self._P[mid, mid]:.2f})"


class _NVMReader(Reader):
    """Reads of fixed stored weights of a :class:`MultiLevelNVM` (per-weight thresholds built once)."""

    def __init__(self, em: MultiLevelNVM, stored: torch.Tensor):
        super().__init__(em, stored)
        self.em = em
        self.values = em.values
        self._plan: ReadPlan | None = None
        self._keyed: KeyedReads | None = None

    @property
    def plan(self) -> ReadPlan:
        """The torch sampler's per-weight terms (built at first use)."""
        if self._plan is None:
            self._plan = self.em.threshold_reads().plan(self.em.level_index(self.stored))
        return self._plan

    def keyed(self) -> KeyedReads | None:
        """The native keyed sampler of these weights (same law), or None where it does not apply
        (``SPIKENOISE_NATIVE=0``, no compiler, CUDA, not float32, more than 255 levels)."""
        if self._keyed is None:
            if self.em.n_levels > 255 or not KeyedReads.usable(self.stored):
                return None
            # stored values are exactly level values (quantized): a float32 pass finds their indices
            v0, step = float(self.em.values[0]), self.em.step
            levels = torch.round((self.stored - v0) / step).clamp_(0, self.em.n_levels - 1).to(torch.uint8)
            self._keyed = KeyedReads(levels, self.em.threshold_reads().thresholds, self.values)
        return self._keyed

    def read(self, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
        keyed = self.keyed()
        if keyed is not None:
            return keyed.read(native.key_from(generator), n)
        return self.plan.read(n, self.values, self.stored.dtype, generator)

    def linear(self, x: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        if self.stored.dim() != 2:
            return super().linear(x, generator)
        keyed = self.keyed() if x.dim() == 2 and KeyedReads.usable(x) else None
        if keyed is not None:
            return keyed.linear(x, native.key_from(generator))
        return self.plan.linear(x, self.values, generator)
