"""Programming variation of analog memory cells (seed paper 003, Wang, Park & Lu 2022).

A trained weight is *programmed* into analog cells once; the programmed conductance misses its
target by a Gaussian error that then stays for every inference on that chip. Two models:

:class:`GaussianVariation` (seed 003 "level 1", and seed 004's per-synapse ``sigma_syn``)
    The signed weight itself gets additive Gaussian variation. Stored weights live in
    ``[-1, 1]`` (the layer's ``scale`` carries the magnitude); ``sigma`` is relative to that
    range's half-width 1, i.e. to one cell's range in the two-cell mapping below, so level 1 and
    level 2 compare at the same per-cell variation. Optional ``bits`` quantizes the target to a
    signed grid of ``2**(bits-1) - 1`` steps per side (8 bits: step 1/127).

:class:`DifferentialCells` (seed 003 "level 2")
    A signed weight ``w`` in ``[-1, 1]`` is held by two cells in two columns, ``w = (G+ - G-) / dG``
    with ``dG = G_max - G_min`` and ``G_min = G_max / on_off``. Conductances are given in units
    of ``G_max`` (so ``G_max = 1``, ``G_min = 1 / on_off``). Each cell is programmed with its own,
    independent Gaussian error of standard deviation ``sigma * dG`` ("4 % variation = 4 % of the
    cells' dynamic range"), or ``sigma * dG * G`` with ``state_dependent=True`` (lower
    conductance, lower variation; equal at ``G_max``). In weight units a cell's error is
    therefore ``sigma`` (or ``sigma * G``) and the pair's is ``sqrt(sigma+^2 + sigma-^2)``.

    ``mapping`` says how a hidden weight ``h`` becomes conductances:

    * ``"proportional"`` (default, the paper's device-aware setting): the active cell's target is
      proportional to ``|h|``, ``G = clip(|h|, G_min, G_max)``, and the idle cell sits at
      ``G_min``. Weights with ``|h| < 1/on_off`` cannot be represented (they read as 0) and the
      rest shrink by ``G_min``; after rescaling by ``dG`` the stored weight is
      ``sign(h) * max(|h| - G_min, 0) / dG``. Training with it (level 2) learns around the
      dead zone.
    * ``"offset"``: the full range is used, ``G = G_min + |h| * dG``; ``G_min`` cancels in
      ``G+ - G-`` and the stored weight is ``h``. On/off ratio then matters only through the
      column currents (ADC range, :mod:`spikenoise.synapse.tiled`) and state-dependent variation.

    ``bits`` is the programming target resolution *per cell*: ``2**bits`` levels from ``G_min``
    to ``G_max`` (8 bits: weight step ``1/255``).

Both models: conductances are not clipped at 0 (the Gaussian is the model, as in the paper), so
one read is exactly ``Normal(mean=stored, var=...)`` and :meth:`read_moments` is exact. How often
a draw is made (once per chip, per minibatch, per step) is the synapse's business
(``errors="static"`` keeps it for the inference; see :mod:`spikenoise.synapse.chips` for one
draw per chip shared by all inputs).
"""
from __future__ import annotations

import math
from typing import Any

import torch

from .base import ErrorModel, as_real, check_flag, check_nonnegative, check_reads

__all__ = ["GaussianVariation", "DifferentialCells", "MAPPINGS"]

MAPPINGS = ("proportional", "offset")


def _check_sigma(sigma: float) -> float:
    return check_nonnegative("sigma", sigma)


def _check_bits(bits: int | None, low: int) -> int | None:
    if bits is None:
        return None
    if isinstance(bits, bool) or not isinstance(bits, int) or not low <= bits <= 24:
        raise ValueError(f"bits must be None or an integer in [{low}, 24], got {bits!r}")
    return bits


def _normal(shape: tuple[int, ...], like: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
    return torch.randn(shape, dtype=like.dtype, device=like.device, generator=generator)


class _SignedUnitRange(ErrorModel):
    """Stored weights live in ``[-1, 1]``; the layer's ``scale`` carries the magnitude."""

    def ste_range(self) -> tuple[float, float]:
        return -1.0, 1.0

    def fit_scale(self, w: torch.Tensor) -> float:
        m = float(w.detach().abs().max()) if w.numel() else 0.0
        return m if m > 0 else 1.0


class GaussianVariation(_SignedUnitRange):
    """Additive Gaussian variation on a signed weight in ``[-1, 1]`` (seed 003 level 1).

    Args:
        sigma: standard deviation relative to the weight range half-width (0.04 = "4 %").
        bits: programming target resolution, signed: ``2**(bits-1) - 1`` steps per side
            (None: no quantization, only clipping to ``[-1, 1]``).
        state_dependent: standard deviation ``sigma * |w|`` instead of ``sigma``.

    Example:
        >>> m = GaussianVariation(0.04, bits=8)
        >>> round(float(m.quantize(torch.tensor([0.5]))) * 127, 6)   # 0.5 * 127 = 63.5 -> 64 steps
        64.0
    """

    kind = "gaussian_variation"

    def __init__(self, sigma: float = 0.0, bits: int | None = 8, state_dependent: bool = False):
        self.sigma = _check_sigma(sigma)
        self.bits = _check_bits(bits, 2)
        self.state_dependent = check_flag("state_dependent", state_dependent)

    @classmethod
    def from_config(cls, cfg: dict[str, Any]) -> "GaussianVariation":
        return cls(sigma=cfg["sigma"], bits=cfg["bits"], state_dependent=cfg["state_dependent"])

    @property
    def step(self) -> float | None:
        """Weight grid step (None without quantization)."""
        return None if self.bits is None else 1.0 / (2 ** (self.bits - 1) - 1)

    def quantize(self, w: torch.Tensor) -> torch.Tensor:
        w = w.detach().clamp(-1.0, 1.0)
        if self.bits is None:
            return w
        n = 2 ** (self.bits - 1) - 1
        return torch.round(w * n) / n

    def std(self, stored: torch.Tensor) -> torch.Tensor:
        """Standard deviation of one read of each stored weight (weight units), same shape."""
        if self.state_dependent:
            return self.sigma * stored.abs()
        return torch.full_like(stored, self.sigma)

    def read(self, stored: torch.Tensor, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
        z = _normal((check_reads(n), *stored.shape), stored, generator)
        return stored.unsqueeze(0) + self.std(stored).unsqueeze(0) * z

    @property
    def noiseless(self) -> bool:
        return self.sigma == 0.0

    def read_moments(self, stored: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return stored.clone(), self.std(stored) ** 2

    def config(self) -> dict[str, Any]:
        return {"kind": self.kind, "sigma": self.sigma, "bits": self.bits,
                "state_dependent": self.state_dependent}

    def __repr__(self) -> str:
        sd = " * |w|" if self.state_dependent else ""
        return f"GaussianVariation(sigma={self.sigma:g}{sd}, bits={self.bits})"


class DifferentialCells(_SignedUnitRange):
    """A signed weight on two cells in two columns, each programmed with its own variation.

    Args:
        sigma: per-cell standard deviation relative to the cells' dynamic range ``G_max - G_min``.
        on_off: ``G_max / G_min`` (> 1; ``math.inf`` for an ideal ``G_min = 0``).
        bits: programming target resolution per cell (``2**bits`` levels in ``[G_min, G_max]``;
            None: continuous targets).
        mapping: ``"proportional"`` or ``"offset"`` (module docstring).
        state_dependent: per-cell standard deviation ``sigma * dG * G / G_max``.

    Stored values are in weight units ``(G+ - G-) / dG``; :meth:`cells` gives the conductances
    (units of ``G_max``) and :meth:`read_cells` independent programmed conductances per cell.

    Example:
        >>> m = DifferentialCells(0.04, on_off=10, bits=None)      # G_min = 0.1, dG = 0.9
        >>> stored = m.quantize(torch.tensor([0.5, -1.0, 0.05]))   # proportional: dead zone < 0.1
        >>> gp, gm = m.cells(stored)
        >>> [round(v, 3) for v in gp.tolist()], [round(v, 3) for v in gm.tolist()]
        ([0.5, 0.1, 0.1], [0.1, 1.0, 0.1])
    """

    kind = "differential_cells"

    def __init__(self, sigma: float = 0.0, on_off: float = 10.0, bits: int | None = 8,
                 mapping: str = "proportional", state_dependent: bool = False):
        self.sigma = _check_sigma(sigma)
        r = as_real("on_off", on_off, "a number > 1 (or inf)")
        if not r > 1.0:  # also rejects NaN
            raise ValueError(f"on_off must be > 1 (G_max / G_min), got {on_off!r}")
        self.on_off = r
        self.bits = _check_bits(bits, 1)
        if not isinstance(mapping, str) or mapping not in MAPPINGS:
            raise ValueError(f"mapping must be one of {MAPPINGS}, got {mapping!r}")
        self.mapping = mapping
        self.state_dependent = check_flag("state_dependent", state_dependent)

    @classmethod
    def from_config(cls, cfg: dict[str, Any]) -> "DifferentialCells":
        on_off = cfg["on_off"]
        return cls(sigma=cfg["sigma"], on_off=math.inf if on_off in ("inf", None) else on_off, bits=cfg["bits"],
                   mapping=cfg["mapping"], state_dependent=cfg["state_dependent"])

    # -- geometry --------------------------------------------------------------------------
    @property
    def g_min(self) -> float:
        """Lowest conductance in units of ``G_max``."""
        return 0.0 if math.isinf(self.on_off) else 1.0 / self.on_off

    @property
    def dg(self) -> float:
        """Dynamic range ``G_max - G_min`` in units of ``G_max``."""
        return 1.0 - self.g_min

    @property
    def step(self) -> float | None:
        """Weight grid step ``1 / (2**bits - 1)`` (None for continuous targets)."""
        return None if self.bits is None else 1.0 / (2 ** self.bits - 1)

    def cells(self, stored: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Target conductances ``(G+, G-)`` in units of ``G_max`` for stored weights (same shape).

        Differentiable in ``stored``; ``(G+ - G-) / dg == stored``.
        """
        return self.g_min + stored.clamp_min(0) * self.dg, self.g_min + (-stored).clamp_min(0) * self.dg

    def cell_std(self, g: torch.Tensor) -> torch.Tensor:
        """Programming standard deviation of cells at conductance ``g``, in weight units."""
        if self.state_dependent:
            return self.sigma * g.detach()
        return torch.full_like(g, self.sigma).detach()

    # -- ErrorModel hooks ------------------------------------------------------------------
    def quantize(self, w: torch.Tensor) -> torch.Tensor:
        h = w.detach().clamp(-1.0, 1.0)
        if self.mapping == "proportional" and self.g_min > 0:
            h = torch.sign(h) * (h.abs() - self.g_min).clamp_min(0) / self.dg
        if self.bits is None:
            return h
        n = 2 ** self.bits - 1
        return torch.round(h * n) / n

    def read_cells(self, stored: torch.Tensor, n: int,
                   generator: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """``n`` independent programmings of both cells: ``(G+, G-)``, each ``(n, *stored.shape)``.

        Conductances in units of ``G_max``; the two cells' errors are independent.
        """
        gp, gm = self.cells(stored.detach())
        zp = _normal((check_reads(n), *stored.shape), stored, generator)
        zm = _normal((n, *stored.shape), stored, generator)
        # a cell's error is sigma (weight units) = sigma * dg (conductance units)
        ep = self.cell_std(gp).unsqueeze(0) * zp * self.dg
        em = self.cell_std(gm).unsqueeze(0) * zm * self.dg
        return gp.unsqueeze(0) + ep, gm.unsqueeze(0) + em

    def read(self, stored: torch.Tensor, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
        gp, gm = self.read_cells(stored, n, generator)
        return (gp - gm) / self.dg

    def draw_errors(self, stored: torch.Tensor, n: int,
                    generator: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Programming errors of both cells ``(dG+, dG-)``, each ``(n, *stored.shape)``, units of ``G_max``."""
        w = stored.detach()
        with torch.no_grad():
            gp0, gm0 = self.cells(w)
            gp, gm = self.read_cells(w, n, generator)
            return gp - gp0, gm - gm0

    def weights_with(self, stored: torch.Tensor, errors: tuple[torch.Tensor, ...] | None) -> torch.Tensor:
        w = stored.unsqueeze(0)
        return w if errors is None else w + (errors[0] - errors[1]) / self.dg

    def cells_with(self, stored: torch.Tensor,
                   errors: tuple[torch.Tensor, ...] | None) -> tuple[torch.Tensor, torch.Tensor]:
        gp, gm = self.cells(stored)
        gp, gm = gp.unsqueeze(0), gm.unsqueeze(0)
        return (gp, gm) if errors is None else (gp + errors[0], gm + errors[1])

    @property
    def noiseless(self) -> bool:
        return self.sigma == 0.0

    def read_moments(self, stored: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        gp, gm = self.cells(stored.detach())
        return stored.clone(), self.cell_std(gp) ** 2 + self.cell_std(gm) ** 2

    def config(self) -> dict[str, Any]:
        return {"kind": self.kind, "sigma": self.sigma,
                "on_off": "inf" if math.isinf(self.on_off) else self.on_off, "bits": self.bits,
                "mapping": self.mapping, "state_dependent": self.state_dependent}

    def __repr__(self) -> str:
        sd = " * G/G_max" if self.state_dependent else ""
        return (f"DifferentialCells(sigma={self.sigma:g}{sd} per cell, on_off={self.on_off:g}, "
                f"bits={self.bits}, mapping={self.mapping!r})")
