"""Seeded synthetic background noise (for the embedded task and data sets without noise files).

Kinds, loosely after GSCD's ``_background_noise_`` (white/pink noise, running tap, exercise bike,
dishes): colored noise ``1/f^g`` with ``g ~ U(0, 2)`` (white .. brown), band-limited noise, mains hum
with harmonics, and amplitude-modulated "machine" noise with a few tonal components.
"""
from __future__ import annotations

import numpy as np

__all__ = ["NOISE_KINDS", "synth_noise"]

NOISE_KINDS = ("colored", "band", "hum", "machine")


def _rms_of_spectrum(spec: np.ndarray, n: int) -> float:
    """RMS of ``irfft(spec, n)`` by Parseval, without the inverse transform."""
    p = np.abs(spec) ** 2
    e = p[0] + 2.0 * p[1:].sum() - (p[-1] if n % 2 == 0 else 0.0)
    return float(np.sqrt(max(e, 1e-24)) / n)


def _colored(rng: np.random.Generator, n: int, sr: int, gamma: float, band: tuple[float, float] | None = None):
    """rfft spectrum (RMS 1 in time) of Gaussian noise with power ~ 1/f^gamma, optionally band-limited."""
    # white Gaussian noise drawn directly in the frequency domain (saves one FFT per clip)
    f = np.fft.rfftfreq(n, 1.0 / sr)
    spec = rng.standard_normal(len(f)) + 1j * rng.standard_normal(len(f))
    shape = np.maximum(f, 20.0) ** (-gamma / 2.0)
    if band is not None:
        lo, hi = band
        shape = shape * np.exp(-0.5 * (np.log(np.maximum(f, 1.0) / np.sqrt(lo * hi)) / np.log(hi / lo) * 2.0) ** 2)
    spec = spec * shape
    return spec / _rms_of_spectrum(spec, n)


def _tone(spec: np.ndarray, n: int, sr: int, freq: float, amp: float, phase: float) -> None:
    """Add a sinusoid of amplitude ``amp`` at the nearest rfft bin (1 Hz apart for 1-s clips)."""
    k = int(round(freq * n / sr))
    if 0 < k < len(spec) - 1:
        spec[k] += amp * n / 2.0 * np.exp(1j * phase)


def synth_noise(rng: np.random.Generator, n: int, sr: int = 16000, kind: str | None = None) -> np.ndarray:
    """``n`` samples (float32, RMS 1) of a random noise ``kind`` (random kind if ``None``).

    Built as one rfft spectrum (noise shape + tonal lines) and a single inverse FFT: ~4x cheaper
    than summing sinusoids in time, which matters for 10k clips.
    """
    if kind is None:
        kind = NOISE_KINDS[int(rng.integers(len(NOISE_KINDS)))]
    if kind == "colored":
        spec = _colored(rng, n, sr, rng.uniform(0.0, 2.0))
    elif kind == "band":
        lo = np.exp(rng.uniform(np.log(100.0), np.log(3000.0)))
        spec = _colored(rng, n, sr, rng.uniform(0.0, 1.0), (lo, lo * rng.uniform(2.0, 6.0)))
    elif kind == "hum":
        f0 = rng.choice([50.0, 60.0, 100.0, 120.0]) * rng.uniform(0.98, 1.02)
        spec = np.zeros(n // 2 + 1, dtype=complex)
        for k in range(1, 1 + int(rng.integers(3, 12))):
            _tone(spec, n, sr, k * f0, rng.uniform(0.2, 1.0) / k, rng.uniform(0, 2 * np.pi))
        spec = spec / _rms_of_spectrum(spec, n) + rng.uniform(0.05, 0.5) * _colored(rng, n, sr, 1.0)
    elif kind == "machine":
        spec = _colored(rng, n, sr, rng.uniform(0.5, 1.5))
        for _ in range(int(rng.integers(1, 4))):
            _tone(spec, n, sr, rng.uniform(150, 3000), rng.uniform(0.1, 0.7) * np.sqrt(2), rng.uniform(0, 6.3))
    else:
        raise ValueError(f"unknown noise kind {kind!r}; expected one of {NOISE_KINDS}")
    y = np.fft.irfft(spec, n)
    if kind == "machine":  # engine-like amplitude modulation
        t = np.arange(n) / sr
        y = y * (1.0 + rng.uniform(0.2, 0.9) * np.sin(2 * np.pi * rng.uniform(1.0, 12.0) * t + rng.uniform(0, 6.3)))
    return (y / (np.sqrt(np.mean(y**2)) + 1e-12)).astype(np.float32)
