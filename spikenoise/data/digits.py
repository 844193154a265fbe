"""scikit-learn's bundled 8 x 8 handwritten digits (1,797 images, 10 classes; no download).

The small image task of the side studies (the MNIST stand-in available offline).
"""
from __future__ import annotations

import numpy as np
import torch

__all__ = ["load_digits_split", "SPLITS"]

#: ``"sklearn"``: ``train_test_split(stratify=labels, random_state=seed)`` (shuffled order);
#: ``"per_class"``: a seeded shuffle inside each class picks the test set, original order kept
SPLITS = ("sklearn", "per_class")


def _images() -> tuple[np.ndarray, np.ndarray]:
    try:
        from sklearn.datasets import load_digits
    except ImportError as e:  # pragma: no cover - depends on the environment
        raise ImportError("the digits data set needs scikit-learn (pip install scikit-learn): its 8x8 digits "
                          "ship inside the package") from e
    d = load_digits()
    return d.images, d.target


def _split_indices(target: np.ndarray, seed: int, test_fraction: float, split: str) -> tuple[np.ndarray, np.ndarray]:
    if split == "sklearn":
        from sklearn.model_selection import train_test_split

        return train_test_split(np.arange(len(target)), test_size=test_fraction, random_state=seed, stratify=target)
    g = np.random.default_rng([seed, 0xD161])
    mask = np.zeros(len(target), dtype=bool)
    for c in range(10):
        idx = np.nonzero(target == c)[0]
        g.shuffle(idx)
        mask[idx[: int(round(len(idx) * test_fraction))]] = True
    return np.nonzero(~mask)[0], np.nonzero(mask)[0]


def load_digits_split(seed: int = 0, test_fraction: float = 0.3, split: str = "sklearn", image_size: int = 8,
                      standardize: bool = False):
    """``(x_train, y_train), (x_test, y_test)``: images ``(N, H, W)`` float32, labels int64.

    Pixel values / 16 lie in [0, 1]; ``image_size != 8`` upsamples bilinearly; ``standardize``
    subtracts the training mean and divides by the training std (after upsampling). ``split``: see
    :data:`SPLITS`; stratified, ``test_fraction`` of each class in the test set.
    """
    if split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
    if int(image_size) < 1:
        raise ValueError(f"image_size must be >= 1, got {image_size!r}")
    images, target = _images()
    x = torch.tensor(images, dtype=torch.float32) / 16.0  # k / 16 is exact in float32
    y = torch.tensor(target, dtype=torch.int64)
    if image_size != 8:
        x = torch.nn.functional.interpolate(x.unsqueeze(1), size=(image_size, image_size), mode="bilinear",
                                            align_corners=False).squeeze(1)
    train, test = _split_indices(target, seed, test_fraction, split)
    if standardize:
        mean, std = float(x[train].mean()), float(x[train].std())
        x = (x - mean) / std
    return (x[train], y[train]), (x[test], y[test])
