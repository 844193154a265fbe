"""Midpoint noise level: logistic fit of accuracy over noise (seed paper 001, section 3.2, eq. 2).

    F(x; mu, sigma, delta_a, a_min) = 2 delta_a / (1 + exp((x - mu) / sigma)) + a_min

``a_max = a_min + 2 delta_a`` is the peak accuracy, ``mu`` the *midpoint noise level* (accuracy
half-way between peak and floor) and the *99 % noise level* is where ``F`` falls to
``0.99 a_max`` (seed 001, section 7).

The axis. Sweeps run on a log grid of flip probabilities and the accuracy curve is logistic in
``log10 p`` (it falls over a decade or two), so by default ``x = log10 p`` and the reported
``mu = 10 ** mu_x``. ``space="linear"`` fits eq. 2 on ``p`` itself.

The floor. For K balanced classes ``a_min = 1 / K`` (seed 001); pass ``n_classes`` to fix it,
otherwise it is fitted.

Failure is reported, not hidden: when the curve never drops inside the probed range (e.g.
mantissa-only noise, seed 001 A.1) the fit's ``mu`` lies outside the range and ``in_range`` is
False; when the optimizer fails ``ok`` is False and ``mu`` is NaN.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any, Callable, Sequence

import numpy as np

__all__ = ["logistic", "log_grid", "MidpointFit", "fit_midpoint", "sweep_probabilities", "plot_midpoint"]


def logistic(x, mu: float, sigma: float, delta_a: float, a_min: float):
    """Seed 001, eq. 2 (``x`` on the fit axis: log10 p by default)."""
    z = np.clip((np.asarray(x, dtype=np.float64) - mu) / sigma, -700.0, 700.0)
    return 2.0 * delta_a / (1.0 + np.exp(z)) + a_min


def log_grid(p_min: float, p_max: float, per_decade: int = 2) -> np.ndarray:
    """Probabilities from ``p_min`` to ``p_max`` (inclusive), ``per_decade`` points per decade, log spaced."""
    if not 0 < p_min < p_max <= 1:
        raise ValueError(f"need 0 < p_min < p_max <= 1, got p_min={p_min!r}, p_max={p_max!r}")
    if not isinstance(per_decade, int) or per_decade < 1:
        raise ValueError(f"per_decade must be a positive integer, got {per_decade!r}")
    lo, hi = math.log10(p_min), math.log10(p_max)
    n = max(2, int(round((hi - lo) * per_decade)) + 1)
    return np.round(10.0 ** np.linspace(lo, hi, n), 12)


@dataclass
class MidpointFit:
    """Result of :func:`fit_midpoint`. Noise levels are probabilities (``*_x`` on the fit axis)."""

    mu: float  # midpoint noise level
    p99: float  # noise level where accuracy falls to 99 % of the peak (NaN if undefined)
    sigma: float  # slope, in units of the fit axis (decades for space="log")
    a_max: float  # peak accuracy
    a_min: float  # floor
    mu_x: float
    mu_x_stderr: float
    rmse: float
    space: str
    in_range: bool  # mu inside the probed range
    ok: bool
    message: str

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    def curve(self, p: np.ndarray) -> np.ndarray:
        """Fitted accuracy at probabilities ``p``."""
        x = np.log10(p) if self.space == "log" else np.asarray(p, dtype=np.float64)
        return logistic(x, self.mu_x, self.sigma, (self.a_max - self.a_min) / 2.0, self.a_min)


def _failed(space: str, msg: str, a_max: float = math.nan, a_min: float = math.nan) -> MidpointFit:
    nan = math.nan
    return MidpointFit(nan, nan, nan, a_max, a_min, nan, nan, nan, space, False, False, msg)


def fit_midpoint(p: Sequence[float], acc: Sequence[float], n_classes: int | None = None,
                 space: str = "log") -> MidpointFit:
    """Fit seed 001's eq. 2 to accuracies ``acc`` measured at flip probabilities ``p``.

    Args:
        p: (N,) noise levels, > 0 for ``space="log"`` (repeats: pass every measurement).
        acc: (N,) accuracies in [0, 1].
        n_classes: fixes ``a_min = 1 / n_classes``; None fits it.
        space: ``"log"`` (x = log10 p, default) or ``"linear"`` (x = p).
    """
    from scipy.optimize import curve_fit

    if space not in ("log", "linear"):
        raise ValueError(f"space must be 'log' or 'linear', got {space!r}")
    p = np.asarray(p, dtype=np.float64).ravel()
    a = np.asarray(acc, dtype=np.float64).ravel()
    if p.shape != a.shape or p.size < 4:
        raise ValueError(f"need at least 4 (p, acc) pairs of equal length, got {p.size} and {a.size}")
    if space == "log" and np.any(p <= 0):
        raise ValueError(f"space='log' needs p > 0, got min p = {p.min()!r}")
    x = np.log10(p) if space == "log" else p
    xmin, xmax = float(x.min()), float(x.max())
    span = max(xmax - xmin, 1e-12)
    order = np.argsort(x)
    xs, as_ = x[order], a[order]
    a_hi = float(np.max(as_[: max(1, len(as_) // 5)]))
    a_lo = float(1.0 / n_classes) if n_classes else float(np.min(as_))
    # start: the first x where accuracy is below half-way (the data's own midpoint)
    half = (a_hi + a_lo) / 2.0
    below = np.nonzero(as_ < half)[0]
    mu0 = float(xs[below[0]]) if below.size else xmax + 0.1 * span
    sig0 = 0.05 * span
    lo_mu, hi_mu = xmin - span, xmax + span
    try:
        if n_classes:
            fmin = a_lo

            def f(xx, mu, sigma, delta_a):
                return logistic(xx, mu, sigma, delta_a, fmin)

            popt, pcov = curve_fit(f, x, a, p0=[mu0, sig0, max((a_hi - fmin) / 2, 1e-3)],
                                   bounds=([lo_mu, 1e-4 * span, 0.0], [hi_mu, 2 * span, 0.5]), maxfev=20000)
            mu_x, sigma, delta_a = popt
            amin = fmin
        else:
            popt, pcov = curve_fit(logistic, x, a, p0=[mu0, sig0, max((a_hi - a_lo) / 2, 1e-3), a_lo],
                                   bounds=([lo_mu, 1e-4 * span, 0.0, 0.0], [hi_mu, 2 * span, 0.5, 1.0]),
                                   maxfev=20000)
            mu_x, sigma, delta_a, amin = popt
    except (RuntimeError, ValueError) as e:
        return _failed(space, f"fit failed: {e}", a_hi, a_lo)
    amax = amin + 2.0 * delta_a
    resid = a - logistic(x, mu_x, sigma, delta_a, amin)
    rmse = float(np.sqrt(np.mean(resid ** 2)))
    err = float(np.sqrt(pcov[0, 0])) if np.isfinite(pcov[0, 0]) else math.nan
    # 99 % of peak: 2 da / (1 + e^z) + a_min = 0.99 a_max
    target = 0.99 * amax
    if target > amin and delta_a > 0:
        z = math.log(2.0 * delta_a / (target - amin) - 1.0)
        x99 = mu_x + sigma * z
    else:
        x99 = math.nan
    to_p = (lambda v: 10.0 ** v) if space == "log" else (lambda v: v)
    in_range = bool(xmin <= mu_x <= xmax)
    msg = "ok" if in_range else ("midpoint beyond the probed range (no drop)" if mu_x > xmax
                                  else "midpoint below the probed range")
    return MidpointFit(mu=float(to_p(mu_x)), p99=float(to_p(x99)) if x99 == x99 else math.nan, sigma=float(sigma),
                       a_max=float(amax), a_min=float(amin), mu_x=float(mu_x), mu_x_stderr=err, rmse=rmse,
                       space=space, in_range=in_range, ok=True, message=msg)


def sweep_probabilities(evaluate: Callable[[float, int], float], probabilities: Sequence[float],
                        repeats: int = 3, progress: bool = False, desc: str = "sweep") -> tuple[np.ndarray, np.ndarray]:
    """Call ``evaluate(p, repeat) -> accuracy`` for each probability and repeat.

    Returns ``(p, acc)`` flat arrays of length ``len(probabilities) * repeats`` (for :func:`fit_midpoint`).
    """
    from tqdm.auto import tqdm

    if repeats < 1:
        raise ValueError(f"repeats must be >= 1, got {repeats!r}")
    ps, accs = [], []
    total = len(probabilities) * repeats
    with tqdm(total=total, desc=desc, disable=not progress, dynamic_ncols=True) as bar:
        for p in probabilities:
            for r in range(repeats):
                ps.append(float(p))
                accs.append(float(evaluate(float(p), r)))
                bar.update(1)
    return np.asarray(ps), np.asarray(accs)


def plot_midpoint(series: dict[str, tuple[Sequence[float], Sequence[float], MidpointFit | None]], path: str,
                  title: str = "", xlabel: str = "bit flip probability p", ylabel: str = "accuracy") -> str:
    """PNG of accuracy vs noise: per series its mean +- std over repeats, the fit and its mu.

    ``series``: label -> (p, acc, fit or None), with ``p``/``acc`` flat as from :func:`sweep_probabilities`.
    Returns ``path``.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7.5, 4.5))
    for i, (label, (p, acc, fit)) in enumerate(series.items()):
        color = f"C{i % 10}"
        p = np.asarray(p, dtype=np.float64)
        acc = np.asarray(acc, dtype=np.float64)
        up = np.unique(p)
        m = np.array([acc[p == v].mean() for v in up])
        s = np.array([acc[p == v].std() for v in up])
        lab = label
        if fit is not None and fit.ok:
            lab += f"  (mu={fit.mu:.2g}{'' if fit.in_range else ', off-range'})"
        ax.errorbar(up, m, yerr=s, fmt="o", ms=3, color=color, label=lab, capsize=2)
        if fit is not None and fit.ok:
            grid = np.logspace(np.log10(up.min()), np.log10(up.max()), 200)
            ax.plot(grid, fit.curve(grid), "-", color=color, lw=1)
            if fit.in_range:
                ax.axvline(fit.mu, color=color, ls=":", lw=0.8)
    ax.set_xscale("log")
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_ylim(-0.02, 1.02)
    ax.grid(True, which="both", alpha=0.3)
    if title:
        ax.set_title(title)
    ax.legend(fontsize=7, loc="lower left")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path
