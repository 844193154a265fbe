"""Multi-level phase-change memory (PCM) cells that drift over time.

Cells and levels
    A signed digital weight ``v`` (default levels -4..+3) is held by a *differential pair* of PCM
    cells, ``v = (G+ - G-) / u`` with ``u = g_max / max|v|`` uS per level (25 uS / 4 = 6.25 uS
    by default): the cell of ``v``'s sign is programmed to ``|v| u``, the other one to 0 (RESET).
    A pair rather than one cell per level because PCM conductance is positive and drifts
    *down*: with a pair, drift shrinks ``|v|`` towards 0 for both signs alike and one global
    factor compensates it; one cell per level with an offset (level -4 at 0 uS) would make drift
    shift negative weights upward. It is also aihwkit's mapping (``SinglePairConductanceConverter``),
    so the model can be checked against aihwkit cell by cell.

Physics of one cell with target ``g_T`` (uS) at inference time ``t`` (s after programming ends;
aihwkit's ``t_inference``), every term as aihwkit 1.1.0 ``PCMLikeNoiseModel``
(``aihwkit/inference/noise/pcm.py``; fitted on measured PCM by Nandakumar et al., ICECS 2019),
with ``gr = g_T / g_max``:

* programming: ``g_prog = max(g_T + sigma_prog(gr) z1, 0)``,
  ``sigma_prog = (c0 + c1 gr + c2 gr^2) g_max / 25``;
* drift exponent: ``nu = |mu(gr) + sigma_nu(gr) z2|`` with ``mu, sigma_nu`` linear in ``ln gr``
  and clipped (:class:`PCMParams`);
* drift: ``g_drift = g_prog ((t + t0) / t0)^(-nu)``;
* accumulated 1/f read noise: ``g = max(g_drift (1 + q(g_prog) c(t) z3), 0)`` with
  ``q = min(0.0088 / max((g_prog / g_max)^0.65, 1e-3), 0.2)`` and
  ``c(t) = sqrt(ln((t + t0 + t_read) / (2 t_read)))``;

``z1, z2, z3`` independent standard normals, independent between the two cells of a pair.

Reading a weight (``readout``)
    ``"level"`` (default, a multi-level cell read by sense-and-decide): the sensed value
    ``x = alpha (G+ - G-) / u`` is decided to the nearest level (mid-point thresholds), so a read
    returns a level and the model has a level-confusion matrix (:meth:`DriftingPCM.confusion_at`),
    which the engine's exact per-spike sampler uses. ``"analog"``: the read returns ``x`` itself
    (an analog crossbar MAC, as in aihwkit).

Drift compensation (``compensation=True``)
    ``alpha(t)`` is one scalar, aihwkit's ``GlobalDriftCompensation`` in expectation: the ratio of
    a reference read of the programmed weights (mean |w| right after programming) to the same
    read at ``t``, for a layer that uses the non-zero levels equally. aihwkit estimates it per
    layer from one reference read of that chip (a random number); here it is its expected
    value, so every layer and every read use the same ``alpha(t)`` and the confusion matrix stays
    exact. With the preset, the mean drift exponent is the same (0.049, clipped) for every level
    from 1 to 4, so the layer's level histogram barely changes ``alpha`` (< 0.1 %).
    ``compensation=False``: ``alpha = 1``.

Static and dynamic draws (the engine's meaning is kept)
    :meth:`DriftingPCM.read` draws the *full* conductance law at time ``t``: programming noise,
    drift exponent and read noise of both cells, independently per read. With
    ``errors="static"`` the engine makes one such draw per inference (and batch row) and freezes
    it, i.e. one freshly programmed chip evaluated at ``t`` (its programming error, ``nu`` and
    read noise fixed for that inference, as aihwkit's ``drift_analog_weights(t)``). With
    ``errors="dynamic"`` every read is an independent draw of the same law (the marginal law of
    one read, as :class:`~spikenoise.noise.MultiLevelNVM`): per read it also redraws what is
    physically per cell (programming error, ``nu``), so it is the fully averaged case, not a
    model of one fixed chip read many times.

Evaluate a network at time ``t`` with ``spikenoise.configure(net, error_model=pcm.at(t))``.
"""
from __future__ import annotations

import math
from typing import Any, Sequence

import numpy as np
import torch
from scipy.special import ndtr

from .base import DiscreteLevels, ErrorModel, check_nonnegative
from .nvm import MultiLevelNVM
from .pcm import (AIHWKIT_PCM, DAY, HOUR, SECOND, YEAR, CellLaw, PCMParams, cell_law,
                  N_GRID_IDLE, folded_normal_moments, normal_pdf)

__all__ = ["PCMParams", "DriftingPCM", "AIHWKIT_PCM", "READOUTS", "folded_normal_moments",
           "plot_confusion_vs_time", "SECOND", "HOUR", "DAY", "YEAR"]

READOUTS = ("level", "analog")

# confusion matrices by (params, values, t, alpha), shared by all models of equal configuration
_CONFUSIONS: dict[tuple, np.ndarray] = {}

def _check_time(t: Any) -> float:
    return check_nonnegative("t", t, "seconds after programming")


class DriftingPCM(ErrorModel):
    """Multi-level weights on drifting PCM differential pairs, evaluated at time ``t``.

    Args:
        t: s after programming ends (aihwkit's ``t_inference``; the cells are first read at
            ``t = 0``, i.e. ``t0`` = 20 s after the programming pulse).
        params: cell statistics (:class:`PCMParams`; default: :data:`AIHWKIT_PCM`).
        compensation: apply global drift compensation ``alpha(t)`` (module docstring).
        readout: ``"level"`` (decide the nearest level: discrete, exact per-spike sampler) or
            ``"analog"`` (return ``alpha (G+ - G-) / u``).
        values: digital value of each level, equally spaced, containing 0 (default -4..+3).

    Example:
        >>> pcm = DriftingPCM()                    # aihwkit's PCM statistics, 8 levels -4..+3
        >>> day = pcm.at(86400.0)                  # the same chip one day after programming
        >>> round(float(day.confusion[7, 7]), 2) < round(float(pcm.confusion[7, 7]), 2)
        True
    """

    kind = "drifting_pcm"

    def __init__(self, t: float = 0.0, params: PCMParams | None = None, *, compensation: bool = False,
                 readout: str = "level", values: Sequence[float] | None = None):
        self.t = _check_time(t)
        if params is None:
            params = AIHWKIT_PCM
        if not isinstance(params, PCMParams):
            raise ValueError(f"params must be a PCMParams, got {params!r}")
        self.params = params
        if not isinstance(compensation, (bool, np.bool_)):
            raise ValueError(f"compensation must be True or False, got {compensation!r}")
        self.compensation = bool(compensation)
        if readout not in READOUTS:
            raise ValueError(f"readout must be one of {READOUTS}, got {readout!r}")
        self.readout = readout
        self._grid = MultiLevelNVM(values=values)  # quantize / level_index / fit_scale (public API)
        vals = self._grid.values.numpy()
        if not np.any(np.isclose(vals, 0.0)):
            raise ValueError(f"values must contain 0 (a weight is G+ - G-), got {vals.tolist()}")
        self._values = vals
        self._sums = None
        self._level_reader: MultiLevelNVM | None = None

    # -- time ------------------------------------------------------------------------------
    def at(self, t: float) -> "DriftingPCM":
        """The same cells evaluated ``t`` seconds after programming (a new error model)."""
        return DriftingPCM(t, self.params, compensation=self.compensation, readout=self.readout,
                           values=self._values.tolist())

    def with_options(self, *, compensation: bool | None = None, readout: str | None = None) -> "DriftingPCM":
        """A copy with drift compensation and/or readout changed."""
        return DriftingPCM(self.t, self.params,
                           compensation=self.compensation if compensation is None else compensation,
                           readout=self.readout if readout is None else readout, values=self._values.tolist())

    # -- geometry --------------------------------------------------------------------------
    @property
    def values(self) -> torch.Tensor:
        """(L,) float64 digital value of each level."""
        return torch.from_numpy(self._values.copy())

    @property
    def n_levels(self) -> int:
        return int(self._values.size)

    @property
    def unit(self) -> float:
        """uS per unit of digital value: ``g_max / max|v|`` (6.25 uS for levels -4..+3)."""
        return self.params.g_max / float(np.max(np.abs(self._values)))

    def level_targets(self) -> tuple[np.ndarray, np.ndarray]:
        """(L,) target conductances (uS) of ``(G+, G-)`` for each level."""
        g = self.unit * self._values
        return np.clip(g, 0, None), np.clip(-g, 0, None)

    def level_nu(self) -> tuple[np.ndarray, np.ndarray]:
        """(L,) mean and std of the drift exponent of each level's active cell (closed form)."""
        gp, gm = self.level_targets()
        mu, sd = self.params.nu_mean_std(np.maximum(gp, gm))
        m, v = folded_normal_moments(mu, sd)
        return m * self.params.drift_scale, np.sqrt(v) * self.params.drift_scale

    # -- sampling --------------------------------------------------------------------------
    def cell_conductance(self, g_target: torch.Tensor, n: int, generator: torch.Generator | None = None,
                         t: float | None = None) -> torch.Tensor:
        """``n`` independent draws of cells with targets ``g_target`` (uS) at ``t`` (default: the model's).

        Returns ``(n, *g_target.shape)`` conductances in uS (same dtype as ``g_target``), drawn
        exactly as aihwkit's programming, drift and read noise (module docstring).
        """
        t = self.t if t is None else _check_time(t)
        p = self.params
        gt = torch.as_tensor(g_target).detach()
        if not gt.is_floating_point():
            gt = gt.to(torch.float64)
        if not isinstance(n, int) or n < 1:
            raise ValueError(f"n must be a positive integer, got {n!r}")
        shape = (n, *gt.shape)
        z1, z2, z3 = (torch.randn(shape, dtype=gt.dtype, device=gt.device, generator=generator) for _ in range(3))
        np_gt = gt.cpu().double().numpy()
        s_p = torch.as_tensor(p.prog_std(np_gt), dtype=gt.dtype, device=gt.device)
        mu, sd = (torch.as_tensor(a, dtype=gt.dtype, device=gt.device) for a in p.nu_mean_std(np_gt))
        g_prog = (gt + s_p * z1).clamp_min(0.0)
        nu = (mu + sd * z2).abs() * p.drift_scale
        g_drift = g_prog * torch.exp(-nu * p.drift_log_ratio(t))
        gr = g_prog / p.g_max
        q = (p.read_noise_coeff / (gr ** p.read_noise_exp).clamp_min(p.read_noise_floor)).clamp_max(p.read_noise_max)
        g = g_drift + g_drift * (p.read_noise_scale * p.time_factor(t)) * q * z3
        return g.clamp_min(0.0)

    def conductances(self, stored: torch.Tensor, n: int,
                     generator: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """``n`` independent draws of ``(G+, G-)`` (uS) of the pairs holding ``stored``: each ``(n, *shape)``."""
        idx = self._grid.level_index(stored)
        gp, gm = self.level_targets()
        dt = stored.dtype if stored.is_floating_point() else torch.float64
        gpt = torch.as_tensor(gp, dtype=dt, device=stored.device)[idx]
        gmt = torch.as_tensor(gm, dtype=dt, device=stored.device)[idx]
        return self.cell_conductance(gpt, n, generator), self.cell_conductance(gmt, n, generator)

    # -- compensation and the exact level laws ---------------------------------------------
    def _law(self, g_target: float, t: float) -> CellLaw:
        return cell_law(self.params, float(g_target), float(t))

    def cell_moments(self, g_target: float, t: float | None = None, programmed_only: bool = False) -> tuple[float, float]:
        """Exact mean and std (uS) of one cell with target ``g_target`` (uS) at ``t`` (default: the model's).

        ``programmed_only``: the programmed conductance ``g_prog`` (no drift, no read noise).
        """
        g = float(g_target)
        if not math.isfinite(g) or g < 0:
            raise ValueError(f"g_target must be a conductance >= 0 (uS), got {g_target!r}")
        if programmed_only:
            s = float(self.params.prog_std(g))
            if s == 0:
                return g, 0.0
            a = g / s
            pdf = float(normal_pdf(np.array(a)))
            m1 = g * float(ndtr(a)) + s * pdf
            m2 = (g * g + s * s) * float(ndtr(a)) + g * s * pdf
            return m1, math.sqrt(max(m2 - m1 * m1, 0.0))
        t = self.t if t is None else _check_time(t)
        m1, m2 = self._law(g, t).moments()
        return m1, math.sqrt(max(m2 - m1 * m1, 0.0))

    def level_mean_uS(self, t: float | None = None) -> np.ndarray:
        """(L,) expected ``G+ - G-`` (uS) of each level at ``t`` (no compensation); exact."""
        t = self.t if t is None else _check_time(t)
        gp, gm = self.level_targets()
        return np.array([self._law(a, t).moments()[0] - self._law(b, t).moments()[0] for a, b in zip(gp, gm)])

    def compensation_factor(self, t: float | None = None) -> float:
        """``alpha(t)``: mean |w| just after programming / mean |w| at ``t`` (levels != 0 weighted equally).

        1.0 when ``compensation`` is off. "Just after programming" is ``g_prog`` (no drift, no
        read noise), as aihwkit's baseline read of the programmed weights.
        """
        if not self.compensation:
            return 1.0
        t = self.t if t is None else _check_time(t)
        gp, gm = self.level_targets()
        nz = ~np.isclose(self._values, 0.0)

        def prog_mean(g: float) -> float:  # E[max(g + s z, 0)]
            return self.cell_moments(g, programmed_only=True)[0]

        ref = np.array([prog_mean(a) - prog_mean(b) for a, b in zip(gp, gm)])
        now = self.level_mean_uS(t)
        return float(np.abs(ref[nz]).sum() / np.abs(now[nz]).sum())

    def confusion_at(self, t: float) -> torch.Tensor:
        """(L, L) float64 ``P[i, j]`` = P(level i is read as level j) at ``t`` (s), level readout.

        Numerical integration in float64: the active cell's CDF is a quadrature mixture
        (32 x 48 Gauss-Legendre nodes over programming noise and drift exponent, the read noise
        in closed form), the idle (0 uS) cell of the pair is integrated over 96 atoms. Entries
        agree with a 2-8x finer integration to < 1e-4 and with Monte Carlo (tests); rows sum to 1.
        """
        t = _check_time(t)
        alpha = self.compensation_factor(t)
        key = (self.params, tuple(self._values.tolist()), t, alpha)
        if key in _CONFUSIONS:
            return torch.from_numpy(_CONFUSIONS[key].copy())
        gp, gm = self.level_targets()
        L, step, u = self.n_levels, self._grid.step, self.unit
        idle = self._law(0.0, t)
        # atoms of the idle cell: its zero mass plus grid cells (mid-point rule)
        top = idle.upper()
        edges = top * np.linspace(0.0, 1.0, N_GRID_IDLE + 1) ** 2  # finer near 0, where the idle law sits
        cdf = idle.cdf(edges)
        atom_x = np.concatenate([[0.0], 0.5 * (edges[1:] + edges[:-1])])
        atom_p = np.concatenate([[cdf[0]], np.diff(cdf)])
        atom_p /= atom_p.sum()
        # thresholds between level k and k+1 on the sensed value x = alpha (G+ - G-) / u
        thr = (self._values[:-1] + 0.5 * step) * u / alpha  # in uS of G+ - G-
        P = np.zeros((L, L))
        for i in range(L):
            active_g = max(gp[i], gm[i])
            act = self._law(active_g, t)
            sign = 1.0 if gp[i] >= gm[i] else -1.0
            # F(y) = P(sign (G+ - G-) <= y) = P(G_active - G_idle <= y) = E_idle[F_active(y + G_idle)]
            if sign > 0:
                ys = thr
            else:  # x <= thr  <=>  G_active - G_idle >= -thr
                ys = -thr
            vals = act.cdf(ys[:, None] + atom_x[None, :]) @ atom_p
            if sign > 0:
                below = vals  # P(x <= thr_k)
            else:
                below = 1.0 - vals  # continuous law: P(D >= -thr) = 1 - P(D < -thr)
            cum = np.concatenate([[0.0], np.clip(below, 0, 1), [1.0]])
            cum = np.maximum.accumulate(cum)
            P[i] = np.diff(cum)
        P = np.clip(P, 0.0, 1.0)
        P /= P.sum(axis=1, keepdims=True)
        if len(_CONFUSIONS) >= 256:  # bounded: drop the oldest
            _CONFUSIONS.pop(next(iter(_CONFUSIONS)))
        _CONFUSIONS[key] = P
        return torch.from_numpy(P.copy())

    @property
    def confusion(self) -> torch.Tensor:
        """(L, L) float64 level-confusion matrix at the model's time (see :meth:`confusion_at`)."""
        return self.confusion_at(self.t)

    def p_correct(self, t: float | None = None) -> torch.Tensor:
        """(L,) probability that each level is read correctly at ``t`` (default: the model's time)."""
        return torch.diagonal(self.confusion_at(self.t if t is None else t)).clone()

    # -- ErrorModel hooks ------------------------------------------------------------------
    def quantize(self, w: torch.Tensor) -> torch.Tensor:
        return self._grid.quantize(w)

    def ste_range(self) -> tuple[float, float]:
        return self._grid.ste_range()

    def fit_scale(self, w: torch.Tensor) -> float:
        return self._grid.fit_scale(w)

    def sense(self, stored: torch.Tensor, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
        """``n`` simulated sensed values ``alpha (G+ - G-) / u`` (digital units), ``(n, *stored.shape)``.

        Draws both cells' full conductance law (:meth:`conductances`).
        """
        gp, gm = self.conductances(stored, n, generator)
        return ((gp - gm) * (self.compensation_factor() / self.unit)).to(stored.dtype)

    def decide(self, sensed: torch.Tensor) -> torch.Tensor:
        """The level (digital value) a sensed value is decided to (nearest level)."""
        vals = torch.as_tensor(self._values, dtype=sensed.dtype, device=sensed.device)
        return vals[self._grid.level_index(sensed)]

    def read(self, stored: torch.Tensor, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
        """``n`` reads: ``sense`` (analog readout) or its decided level (level readout).

        For the level readout the decided level is drawn from the exact confusion matrix: the
        same law as ``decide(sense(...))`` (tests check it), one uniform per read instead of six
        normals, which matters for per-timestep and per-spike reads.
        """
        if self.readout == "analog":
            return self.sense(stored, n, generator)
        if self._level_reader is None:
            self._level_reader = MultiLevelNVM.from_confusion(self.confusion, values=self._values.tolist())
        return self._level_reader.read(stored, n, generator)

    @property
    def noiseless(self) -> bool:
        p = self.params
        no_drift = self.t == 0 or p.drift_scale == 0
        return p.prog_noise_scale == 0 and p.read_noise_scale == 0 and no_drift

    def discrete(self) -> DiscreteLevels | None:
        if self.readout != "level":
            return None
        return DiscreteLevels(values=self.values, confusion=self.confusion)

    def sum_sampler(self):
        if self._sums is None:
            from ._tables import SumOfReads

            self._sums = SumOfReads(self.confusion.numpy())
        return self._sums

    def level_moments(self) -> tuple[np.ndarray, np.ndarray]:
        """(L,) mean and variance of one read of each level (digital units), exact."""
        if self.readout == "level":
            P = self.confusion.numpy()
            m = P @ self._values
            return m, np.maximum(P @ self._values ** 2 - m * m, 0.0)
        gp, gm = self.level_targets()
        k = self.compensation_factor() / self.unit
        mean, var = [], []
        for a, b in zip(gp, gm):
            ma, sa = self._law(a, self.t).moments()
            mb, sb = self._law(b, self.t).moments()
            mean.append(k * (ma - mb))
            var.append(k * k * max(sa - ma * ma + sb - mb * mb, 0.0))
        return np.array(mean), np.array(var)

    def read_moments(self, stored: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        m, v = self.level_moments()
        idx = self._grid.level_index(stored)
        return (torch.as_tensor(m, dtype=stored.dtype, device=stored.device)[idx],
                torch.as_tensor(v, dtype=stored.dtype, device=stored.device)[idx])

    # -- configuration ---------------------------------------------------------------------
    def config(self) -> dict[str, Any]:
        return {"kind": self.kind, "t": self.t, "compensation": self.compensation, "readout": self.readout,
                "values": self._values.tolist(), "params": self.params.config()}

    @classmethod
    def from_config(cls, cfg: dict[str, Any]) -> "DriftingPCM":
        params = PCMParams(**{k: tuple(v) if isinstance(v, list) else v for k, v in cfg["params"].items()})
        return cls(cfg["t"], params, compensation=cfg["compensation"], readout=cfg["readout"], values=cfg["values"])

    def __repr__(self) -> str:
        preset = "aihwkit PCM" if self.params == AIHWKIT_PCM else "custom PCM"
        comp = ", compensated" if self.compensation else ""
        return (f"DriftingPCM(t={self.t:g} s, {preset}, levels {self._values[0]:g}..{self._values[-1]:g}, "
                f"readout={self.readout!r}{comp})")


def plot_confusion_vs_time(model: DriftingPCM, times: Sequence[float], path, title: str | None = None):
    """Plot P(read correctly) per level vs time, without and with drift compensation; save a PNG.

    Returns the path written.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ts = [_check_time(t) for t in times]
    xs = [t + model.params.t0 for t in ts]  # time since the programming pulse (log axis)
    fig, axes = plt.subplots(1, 2, figsize=(10, 4), sharey=True)
    for ax, comp in zip(axes, (False, True)):
        m = model.with_options(compensation=comp)
        pc = np.array([m.p_correct(t).numpy() for t in ts])
        for j, v in enumerate(model.values.numpy()):
            # +v and -v have the same law (mirror-image pairs): dashed negatives stay visible
            ax.plot(xs, pc[:, j], marker="o", ms=3, ls="--" if v < 0 else "-", label=f"level {v:+g}")
        ax.set_xscale("log")
        ax.set_xlabel("time since programming (s)")
        ax.set_title("with global drift compensation" if comp else "no compensation", fontsize=10)
        ax.grid(True, which="both", alpha=0.3)
        for lab, sec in (("1 min", 60), ("1 h", HOUR), ("1 day", DAY), ("1 year", YEAR)):
            ax.axvline(sec, color="gray", lw=0.6, ls=":")
            ax.text(sec, 0.02, lab, fontsize=7, rotation=90, color="gray")
    axes[0].set_ylabel("P(level read correctly)")
    axes[0].legend(fontsize=7, loc="lower left")
    fig.suptitle(title or f"{model!r}: level confusion over time", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path
