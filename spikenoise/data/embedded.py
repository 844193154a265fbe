"""Embedded 12-class keyword task: the real GSCD words spoken by espeak-ng "speakers", no download.

Recipe (all draws seeded):

* **Speakers.** A fixed pool of ``n_speakers`` (default 60) espeak-ng voices = English accent
  (8: US, UK, Scottish, RP, Caribbean, Lancastrian, West-Midlands, New York) x voice variant
  (48 human-like ones, male / female / Klatt), each with its own mean pitch, pitch range, speaking
  rate, vocal-tract-length factor and spectral tilt. Speakers are split 70/15/15 between
  train / validation / test, so test speakers are never heard in training (as in GSCD).
* **Base utterances.** Every speaker says all 35 GSCD v2 words ``takes`` times (default 2) with
  jittered rate and pitch: 35 x 60 x 2 = 4200 utterances, synthesized in ~4 s.
* **Clips.** Labels are balanced over the 12 classes. A keyword clip takes one of its speaker's
  takes of that word; an "unknown" clip a take of one of the 25 other words; a "silence" clip is
  noise only. Each clip then gets: resampling by ``a ~ speaker VTL x U(0.95, 1.05)`` (shifts pitch,
  formants and duration together, like a different vocal tract), a first-order spectral tilt
  (microphone / channel), a loudness ``speech_dbfs``, a random onset in the 1-s window (words may be
  cut by up to 50 ms), additive noise of a random kind (``noise.py``) at ``snr_db`` and a white
  self-noise floor at ``floor_dbfs``.
* **Features** as for GSCD (``features.LogMel``), stored in the cache keyed by the configuration.

The pool, the base utterances and the speaker split do not depend on ``seed``; the clips, their
transforms and the noise do. With a given espeak-ng build the result is bit-exact per seed.
"""
from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass

import numpy as np
import torch

from . import _espeak
from .classes import GSCD_CLASSES, GSCD_KEYWORDS, GSCD_OTHER_WORDS, SILENCE, UNKNOWN
from .features import FeatureConfig, LogMel
from .noise import synth_noise

__all__ = ["EmbeddedConfig", "EMBEDDED_PRESETS", "speaker_pool", "generate_embedded", "synth_noise_bank"]

# Bump when the generator changes in a way that changes its output (part of the cache key).
EMBEDDED_VERSION = 1

# (n_train, n_val, n_test)
EMBEDDED_PRESETS = {
    "default": (8000, 1000, 1000),
    "quick": (4000, 500, 500),
    "tiny": (960, 240, 240),
}

ACCENTS = ["en-us", "en", "en-gb-scotland", "en-gb-x-rp", "en-029", "en-gb-x-gbclan", "en-gb-x-gbcwmd", "en-us-nyc"]
# espeak-ng voice variants that sound like people (robotic, whispering and effect voices left out).
VARIANTS = [
    "m1", "m2", "m3", "m4", "m5", "m6", "m7", "m8", "f1", "f2", "f3", "f4", "f5",
    "klatt", "klatt2", "klatt3", "klatt4", "Alex", "Alicia", "Andrea", "Andy", "Annie", "Denis",
    "Diogo", "Henrique", "Hugo", "Lee", "Mario", "Michael", "Mike", "Nguyen", "Reed", "adam",
    "anika", "aunty", "belinda", "benjamin", "boris", "caleb", "david", "edward", "grandma",
    "grandpa", "ian", "linda", "max", "norbert", "quincy",
]
WORDS = GSCD_KEYWORDS + GSCD_OTHER_WORDS
_SR_IN = 22050  # libespeak-ng output rate


@dataclass(frozen=True)
class EmbeddedConfig:
    """Generator settings; units: dB, dBFS, ratios. See the module docstring."""

    n_speakers: int = 60
    takes: int = 2
    split_fractions: tuple[float, float, float] = (0.70, 0.15, 0.15)
    pool_seed: int = 20240607  # fixes the speaker pool and base utterances, not the clips
    vtl_range: tuple[float, float] = (0.88, 1.14)
    snr_db: tuple[float, float] = (-5.0, 20.0)
    speech_dbfs: tuple[float, float] = (-35.0, -12.0)
    silence_dbfs: tuple[float, float] = (-65.0, -20.0)
    floor_dbfs: tuple[float, float] = (-85.0, -65.0)  # white self-noise added to every clip
    max_cut_s: float = 0.05
    noise_bank_size: int = 300
    noise_bank_rms: float = 0.1

    def as_dict(self) -> dict:
        return dataclasses.asdict(self)


def speaker_pool(cfg: EmbeddedConfig = EmbeddedConfig()) -> list[dict]:
    """The fixed speakers: dicts with voice, pitch, range, rate, vtl, tilt, split (0/1/2)."""
    rng = np.random.default_rng(cfg.pool_seed)
    pairs = [(a, v) for a in ACCENTS for v in VARIANTS]
    pick = rng.choice(len(pairs), size=cfg.n_speakers, replace=False)
    speakers = []
    for k, p in enumerate(pick):
        a, v = pairs[int(p)]
        speakers.append(
            dict(
                id=k,
                voice=f"{a}+{v}",
                pitch=float(rng.uniform(20, 80)),
                range=float(rng.uniform(25, 85)),
                rate=float(rng.uniform(125, 230)),
                vtl=float(rng.uniform(*cfg.vtl_range)),
                tilt=float(rng.uniform(-0.3, 0.9)),
            )
        )
    order = rng.permutation(cfg.n_speakers)
    n_tr = int(round(cfg.split_fractions[0] * cfg.n_speakers))
    n_va = int(round(cfg.split_fractions[1] * cfg.n_speakers))
    for rank, k in enumerate(order):
        speakers[int(k)]["split"] = 0 if rank < n_tr else (1 if rank < n_tr + n_va else 2)
    return speakers


def _base_jobs(speakers: list[dict], cfg: EmbeddedConfig) -> list[dict]:
    rng = np.random.default_rng([cfg.pool_seed, 1])
    jobs = []
    for s in speakers:
        for w in WORDS:
            for _ in range(cfg.takes):
                jobs.append(
                    dict(
                        text=w,
                        voice=s["voice"],
                        rate=int(np.clip(s["rate"] * rng.uniform(0.85, 1.15), 80, 400)),
                        pitch=int(np.clip(s["pitch"] + rng.uniform(-8, 8), 0, 99)),
                        range=int(np.clip(s["range"] + rng.uniform(-10, 10), 0, 99)),
                        seed=int(rng.integers(2**31 - 1)),
                    )
                )
    return jobs


def _trim(x: np.ndarray, sr: int) -> np.ndarray:
    """Cut leading/trailing silence (below 1% of the peak), keeping 10 ms margins."""
    a = np.abs(x)
    idx = np.flatnonzero(a > 0.01 * (a.max() + 1e-12))
    if len(idx) == 0:
        return x
    m = int(0.01 * sr)
    return x[max(0, idx[0] - m) : idx[-1] + m + 1]


def base_utterances(cfg: EmbeddedConfig, sample_rate: int) -> tuple[dict, list[dict], str]:
    """``({(speaker, word): [takes float32 at sample_rate]}, speakers, espeak version)``."""
    import torchaudio

    speakers = speaker_pool(cfg)
    jobs = _base_jobs(speakers, cfg)
    waves, sr, ver = _espeak.synthesize_fresh(jobs)
    # one module = one sinc kernel; the functional form rebuilds it per call (~5 ms each)
    resample = torchaudio.transforms.Resample(sr, sample_rate) if sr != sample_rate else None
    # batched resampling: one conv per chunk (per-utterance torch calls crawl on shared cores)
    flat: list[np.ndarray] = []
    for c in range(0, len(waves), 256):
        chunk = waves[c : c + 256]
        x = np.zeros((len(chunk), max(len(w) for w in chunk)), np.float32)
        for k, w in enumerate(chunk):
            x[k, : len(w)] = w / 32768.0
        y = resample(torch.from_numpy(x)).numpy() if resample is not None else x
        flat += [y[k, : int(np.ceil(len(w) * sample_rate / sr))] for k, w in enumerate(chunk)]
    base: dict = {}
    i = 0
    for s in speakers:
        for w in WORDS:
            for _ in range(cfg.takes):
                base.setdefault((s["id"], w), []).append(_trim(flat[i], sample_rate))
                i += 1
    return base, speakers, ver


def _db_to_amp(db: float) -> float:
    return float(10.0 ** (db / 20.0))


def _render_clip(rng: np.random.Generator, label: int, spk: dict, base: dict, cfg: EmbeddedConfig, n: int, sr: int):
    """One 1-s waveform (float32, n samples) and its metadata."""
    cls = GSCD_CLASSES[label]
    noise = synth_noise(rng, n, sr)
    if cls == SILENCE:
        if rng.random() < 0.3:  # some silence clips mix two sources
            noise = noise + rng.uniform(0.2, 1.0) * synth_noise(rng, n, sr)
            noise /= np.sqrt(np.mean(noise**2)) + 1e-12
        y = noise * _db_to_amp(rng.uniform(*cfg.silence_dbfs))
        y = y + rng.standard_normal(n) * _db_to_amp(rng.uniform(*cfg.floor_dbfs))
        return np.clip(y, -1.0, 1.0).astype(np.float32), "", float("nan")
    word = cls if cls != UNKNOWN else GSCD_OTHER_WORDS[int(rng.integers(len(GSCD_OTHER_WORDS)))]
    takes = base[(spk["id"], word)]
    w = takes[int(rng.integers(len(takes)))]
    # vocal-tract / pitch scaling by resampling: y(t) = w(a t)
    a = spk["vtl"] * rng.uniform(0.95, 1.05)
    w = np.interp(np.arange(0.0, len(w) - 1, a), np.arange(len(w)), w)
    beta = float(np.clip(spk["tilt"] + rng.uniform(-0.15, 0.15), -0.5, 0.95))
    w = np.concatenate([w[:1], w[1:] - beta * w[:-1]])
    rms = np.sqrt(np.mean(w**2)) + 1e-12
    w = w * (_db_to_amp(rng.uniform(*cfg.speech_dbfs)) / rms)
    cut = int(cfg.max_cut_s * sr)
    if len(w) > n:  # rare: very slow take with a long vocal tract
        s0 = (len(w) - n) // 2
        w = w[s0 : s0 + n]
    onset = int(rng.integers(-min(cut, len(w) // 4), n - len(w) + min(cut, len(w) // 4) + 1))
    y = np.zeros(n)
    lo, hi = max(0, onset), min(n, onset + len(w))
    y[lo:hi] = w[lo - onset : hi - onset]
    snr = float(rng.uniform(*cfg.snr_db))
    y = y + noise * (np.sqrt(np.mean(w**2)) * _db_to_amp(-snr))
    # microphone self-noise: real recordings never have digitally silent Mel bands
    y = y + rng.standard_normal(n) * _db_to_amp(rng.uniform(*cfg.floor_dbfs))
    return np.clip(y, -1.0, 1.0).astype(np.float32), word, snr


def synth_noise_bank(rng: np.random.Generator, n_segments: int, rms: float, fcfg: FeatureConfig) -> torch.Tensor:
    """Log-Mel [n_segments, T, F] float16 of synthetic noise at ``rms`` (augmentation bank)."""
    waves = np.stack([synth_noise(rng, fcfg.n_samples, fcfg.sample_rate) * rms for _ in range(n_segments)])
    return LogMel(fcfg)(waves).to(torch.float16)


def generate_embedded(
    seed: int,
    sizes: tuple[int, int, int],
    fcfg: FeatureConfig = FeatureConfig(),
    cfg: EmbeddedConfig = EmbeddedConfig(),
    progress: bool = True,
) -> dict:
    """Generate the three splits; returns a cacheable dict of tensors and metadata.

    ``{"splits": {name: {"logmel" [N, T, F] float16, "labels" [N] int64, "speaker" [N] int64,
    "word": list[str], "snr_db" [N] float32}}, "noise_bank": [M, T, F] float16, "info": {...}}``
    """
    t0 = time.perf_counter()
    n, sr = fcfg.n_samples, fcfg.sample_rate
    base, speakers, ver = base_utterances(cfg, sr)
    t_base = time.perf_counter() - t0
    logmel = LogMel(fcfg)
    splits = {}
    total = sum(sizes)
    bar = None
    if progress and total >= 2000:
        from tqdm.auto import tqdm

        bar = tqdm(total=total, desc="embedded KWS clips", unit="clip", mininterval=1.0, leave=False)
    for code, (name, size) in enumerate(zip(("train", "val", "test"), sizes)):
        rng = np.random.default_rng([seed, code, EMBEDDED_VERSION])
        pool = [s for s in speakers if s["split"] == code]
        labels = rng.permutation(np.arange(size) % len(GSCD_CLASSES))
        feats, spk_ids, words, snrs = [], [], [], []
        batch: list[np.ndarray] = []
        for i in range(size):
            spk = pool[int(rng.integers(len(pool)))]
            y, word, snr = _render_clip(rng, int(labels[i]), spk, base, cfg, n, sr)
            batch.append(y)
            spk_ids.append(spk["id"] if word else -1)
            words.append(word)
            snrs.append(snr)
            if len(batch) == 500 or i == size - 1:
                feats.append(logmel(np.stack(batch)).to(torch.float16))
                if bar is not None:
                    bar.update(len(batch))
                batch = []
        splits[name] = dict(
            logmel=torch.cat(feats) if feats else torch.zeros((0, *fcfg.shape), dtype=torch.float16),
            labels=torch.as_tensor(labels, dtype=torch.int64),
            speaker=torch.as_tensor(spk_ids, dtype=torch.int64),
            word=words,
            snr_db=torch.as_tensor(snrs, dtype=torch.float32),
        )
    if bar is not None:
        bar.close()
    bank_rng = np.random.default_rng([seed, 99, EMBEDDED_VERSION])
    bank = synth_noise_bank(bank_rng, cfg.noise_bank_size, cfg.noise_bank_rms, fcfg)
    names = ("train", "val", "test")
    info = dict(
        synthesizer=f"espeak-ng {ver} (PyPI espeakng-loader, ctypes)",
        words=WORDS,
        speakers_per_split={nm: sum(s["split"] == c for s in speakers) for c, nm in enumerate(names)},
        base_utterances=len(speakers) * len(WORDS) * cfg.takes,
        generator_version=EMBEDDED_VERSION,
        embedded_config=cfg.as_dict(),
        generate_seconds=round(time.perf_counter() - t0, 2),
        synth_seconds=round(t_base, 2),
    )
    return dict(splits=splits, noise_bank=bank, info=info)
