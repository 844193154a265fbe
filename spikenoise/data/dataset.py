"""In-memory feature datasets with seeded, train-only augmentation, and the data loaders.

Augmentation works on the stored log-Mel features (67 x 40 per clip), in this order:

1. time shift by up to +-``time_shift_ms`` (in frames of ``hop_ms``), the vacated frames filled with
   the clip's per-channel minimum (its quietest level, i.e. "nothing spoken");
2. background noise with probability ``noise_prob``: a random 1-s segment of the noise bank, scaled
   in amplitude by ``a ~ U(0, noise_volume)`` (TensorFlow speech_commands recipe: 0.8 and 0.1), is
   added in the Mel-*power* domain, ``log(exp(x) + a^2 exp(n))``. For independent signals this
   equals the expected Mel power of the waveform mix (cross terms average out), so it stands in for
   waveform-level mixing without keeping ~2.7 GB of GSCD audio in memory;
3. per-clip normalization (unit variance per channel over time, see ``features.normalize``);
4. SpecAugment-style time and frequency masks set to 0 (the channel mean after normalization).

Every random draw comes from ``numpy.random.default_rng([seed, stream, epoch, index])`` (``seed``:
the data set's, ``stream``: the loader seed of :func:`make_loaders`), so the training stream is a
pure function of the two seeds: identical for any ``num_workers`` and on resume.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Iterator, Sequence

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, Sampler

from .features import FeatureConfig, normalize

__all__ = ["AugmentConfig", "KWSDataset", "EpochSampler", "make_loaders"]


@dataclass(frozen=True)
class AugmentConfig:
    """Training augmentation (defaults: TF speech_commands recipe + light SpecAugment)."""

    noise_prob: float = 0.8
    noise_volume: float = 0.1  # max amplitude factor of the noise waveform (full scale = 1)
    time_shift_ms: float = 100.0
    time_masks: int = 2
    time_mask_frames: int = 7  # max width of one time mask, frames (~100 ms)
    freq_masks: int = 2
    freq_mask_bands: int = 4  # max width of one frequency mask, Mel bands

    def as_dict(self) -> dict:
        return dataclasses.asdict(self)


def _normalize_np(x: np.ndarray, center: bool, eps: float) -> np.ndarray:
    """NumPy twin of ``features.normalize`` for one clip [T, F] (cheaper per item than torch)."""
    mean = x.mean(axis=0, keepdims=True)
    std = x.std(axis=0, keepdims=True)
    scale = np.where(std > eps, 1.0 / np.maximum(std, eps), 0.0).astype(np.float32)
    return (x - mean) * scale if center else x * scale


class KWSDataset(Dataset):
    """Keyword-spotting features held in memory.

    ``logmel`` [N, T, F] unnormalized natural-log Mel power (float16 to halve memory), ``labels``
    [N] int64. Items are ``(features float32 [T, F], label int64 scalar tensor)``; index with an int
    (uses ``self.epoch``) or with ``(index, epoch, stream)`` as :class:`EpochSampler` does.
    ``meta`` holds per-clip columns (e.g. ``source`` paths, ``speaker``) aligned with ``labels``.
    """

    def __init__(
        self,
        logmel: torch.Tensor,
        labels: torch.Tensor,
        classes: Sequence[str],
        features: FeatureConfig = FeatureConfig(),
        augment: AugmentConfig | None = None,
        noise_bank: torch.Tensor | None = None,
        seed: int = 0,
        meta: dict | None = None,
    ):
        if logmel.ndim != 3 or tuple(logmel.shape[1:]) != features.shape:
            raise ValueError(f"logmel must be [N, {features.shape[0]}, {features.shape[1]}], got {tuple(logmel.shape)}")
        if len(labels) != len(logmel):
            raise ValueError(f"{len(labels)} labels for {len(logmel)} clips")
        self.logmel = logmel.contiguous()
        self.labels = torch.as_tensor(labels, dtype=torch.int64)
        self.classes = list(classes)
        self.features = features
        self.augment = augment
        self.noise_bank = None if noise_bank is None else noise_bank.float().numpy()
        if augment is not None and augment.noise_prob > 0 and (self.noise_bank is None or len(self.noise_bank) == 0):
            self.augment = dataclasses.replace(augment, noise_prob=0.0)  # nothing to mix in
        self.seed = int(seed)
        self.epoch = 0
        self.meta = meta or {}
        self._np = self.logmel.numpy()  # shares memory: cheap per-item access

    def __len__(self) -> int:
        return len(self.labels)

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def __getitem__(self, idx):
        stream = 0
        if isinstance(idx, tuple):
            idx, epoch, *rest = idx
            stream = int(rest[0]) if rest else 0
        else:
            epoch = self.epoch
        idx = int(idx)
        if idx < 0:
            idx += len(self)
        x = self._np[idx].astype(np.float32)
        if self.augment is not None:
            x = self._augment(x, np.random.default_rng([self.seed, stream, int(epoch), idx]))
        else:
            x = _normalize_np(x, self.features.center, self.features.norm_eps)
        return torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32)), self.labels[idx]

    def _augment(self, x: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        a, f = self.augment, self.features
        T, F = x.shape
        s = int(round(a.time_shift_ms / f.hop_ms))
        if s > 0:
            k = int(rng.integers(-s, s + 1))
            if k:
                floor = x.min(axis=0, keepdims=True)
                x = np.roll(x, k, axis=0)
                if k > 0:
                    x[:k] = floor
                else:
                    x[k:] = floor
        if a.noise_prob > 0 and rng.random() < a.noise_prob:
            n = self.noise_bank[int(rng.integers(len(self.noise_bank)))]
            amp = rng.uniform(0.0, a.noise_volume)
            if amp > 0:
                x = np.logaddexp(x, n + 2.0 * np.log(amp))
        x = _normalize_np(x, f.center, f.norm_eps)
        for _ in range(a.time_masks):
            w = int(rng.integers(0, a.time_mask_frames + 1))
            if w:
                t0 = int(rng.integers(0, T - w + 1))
                x[t0 : t0 + w] = 0.0
        for _ in range(a.freq_masks):
            w = int(rng.integers(0, a.freq_mask_bands + 1))
            if w:
                f0 = int(rng.integers(0, F - w + 1))
                x[:, f0 : f0 + w] = 0.0
        return x

    def tensors(self) -> tuple[torch.Tensor, torch.Tensor]:
        """All clips normalized, without augmentation: ``(x [N, T, F] float32, y [N] int64)``.

        Handy for fast batched evaluation (e.g. many noise draws on the same test set).
        """
        f = self.features
        return normalize(self.logmel, f.center, f.norm_eps), self.labels.clone()

    def class_counts(self) -> dict[str, int]:
        c = torch.bincount(self.labels, minlength=len(self.classes)).tolist()
        return dict(zip(self.classes, c))


class EpochSampler(Sampler):
    """Seeded shuffling sampler yielding ``(index, epoch, seed)``; each ``iter()`` starts a new epoch.

    Passing the epoch with the index lets :class:`KWSDataset` derive every augmentation draw from
    ``(data seed, loader seed, epoch, index)`` inside worker processes, whose copies of the dataset never see a
    counter advanced in the main process.
    """

    def __init__(self, n: int, seed: int = 0, shuffle: bool = True, start_epoch: int = 0):
        self.n, self.seed, self.shuffle, self.epoch = int(n), int(seed), shuffle, int(start_epoch)

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def __len__(self) -> int:
        return self.n

    def __iter__(self) -> Iterator[tuple[int, int, int]]:
        e = self.epoch
        self.epoch += 1
        order = np.random.default_rng([self.seed, e, 0x5EED]).permutation(self.n) if self.shuffle else range(self.n)
        return iter([(int(i), e, self.seed) for i in order])


def make_loaders(data, batch_size: int = 128, seed: int = 0, num_workers: int = 0, drop_last: bool = False):
    """``(train, val, test)`` DataLoaders for a :class:`~spikenoise.data.KWSData`.

    The training loader reshuffles every epoch (seeded) and yields augmented batches
    ``x [B, 67, 40] float32, y [B] int64``; validation and test are in fixed order, unaugmented.
    ``train_loader.sampler.set_epoch(e)`` resumes the exact stream of epoch ``e``.
    """
    kw = dict(num_workers=num_workers, persistent_workers=num_workers > 0)
    train = DataLoader(
        data.train,
        batch_size=batch_size,
        sampler=EpochSampler(len(data.train), seed=seed, shuffle=True),
        drop_last=drop_last,
        **kw,
    )
    val = DataLoader(data.val, batch_size=batch_size, shuffle=False, **kw)
    test = DataLoader(data.test, batch_size=batch_size, shuffle=False, **kw)
    return train, val, test
