"""Seeded synthetic background noise (for the embedded task and data sets without noise files).

Kinds, loosely after GSCD's ``_background_noise_`` (white/pink noise, running tap, exercise bike,
dishes): colored noise ``1/f^g`` with ``g ~ U(0, 2)`` (white .. brown), band-limited noise, mains hum
with harmonics, and amplitude-modulated "machine" noise with a few tonal components.
"""
from __future__ import annotations

import numpy as np

__all__ = ["NOISE_KINDS", "synth_noise"]

NOISE_KINDS = ("colored", "band", "hum", "machine")


def _colored(rng: np.random.Generator, n: int, sr: int, gamma: float, band: tuple[float, float] | None = None):
    # white Gaussian noise drawn directly in the frequency domain (saves one FFT per clip)
    f = np.fft.rfftfreq(n, 1.0 / sr)
    spec = rng.standard_normal(len(f)) + 1j * rng.standard_normal(len(f))
    shape = np.maximum(f, 20.0) ** (-gamma / 2.0)  # power ~ 1/f^gamma
    if band is not None:
        lo, hi = band
        shape = shape * np.exp(-0.5 * (np.log(np.maximum(f, 1.0) / np.sqrt(lo * hi)) / np.log(hi / lo) * 2.0) ** 2)
    y = np.fft.irfft(spec * shape, n)
    return y / (np.sqrt(np.mean(y**2)) + 1e-12)


def synth_noise(rng: np.random.Generator, n: int, sr: int = 16000, kind: str | None = None) -> np.ndarray:
    """``n`` samples (float32, RMS 1) of a random noise ``kind`` (random kind if ``None``)."""
    if kind is None:
        kind = NOISE_KINDS[int(rng.integers(len(NOISE_KINDS)))]
    t = np.arange(n) / sr
    if kind == "colored":
        y = _colored(rng, n, sr, rng.uniform(0.0, 2.0))
    elif kind == "band":
        lo = np.exp(rng.uniform(np.log(100.0), np.log(3000.0)))
        y = _colored(rng, n, sr, rng.uniform(0.0, 1.0), (lo, lo * rng.uniform(2.0, 6.0)))
    elif kind == "hum":
        f0 = rng.choice([50.0, 60.0, 100.0, 120.0]) * rng.uniform(0.98, 1.02)
        y = sum(
            rng.uniform(0.2, 1.0) / k * np.sin(2 * np.pi * k * f0 * t + rng.uniform(0, 2 * np.pi))
            for k in range(1, 1 + int(rng.integers(3, 12)))
        )
        y = y / (np.sqrt(np.mean(y**2)) + 1e-12) + rng.uniform(0.05, 0.5) * _colored(rng, n, sr, 1.0)
    elif kind == "machine":
        y = _colored(rng, n, sr, rng.uniform(0.5, 1.5))
        for _ in range(int(rng.integers(1, 4))):
            y = y + rng.uniform(0.1, 0.7) * np.sqrt(2) * np.sin(2 * np.pi * rng.uniform(150, 3000) * t + rng.uniform(0, 6.3))
        fm = rng.uniform(1.0, 12.0)
        y = y * (1.0 + rng.uniform(0.2, 0.9) * np.sin(2 * np.pi * fm * t + rng.uniform(0, 6.3)))
    else:
        raise ValueError(f"unknown noise kind {kind!r}; expected one of {NOISE_KINDS}")
    y = np.asarray(y, dtype=np.float64)
    return (y / (np.sqrt(np.mean(y**2)) + 1e-12)).astype(np.float32)
