"""Synthetic data sets for fast end-to-end tests: a toy 67 x 40 KWS task and Gaussian blobs."""
from __future__ import annotations

from types import SimpleNamespace

import torch

__all__ = ["toy_kws", "gaussian_blobs"]


def toy_kws(seed: int = 0, sizes=(48, 16, 24), n_classes: int = 12) -> SimpleNamespace:
    """A tiny synthetic 67 x 40 task (class templates + unit Gaussian noise).

    The interface of :class:`spikenoise.data.KWSData` as far as the studies use it: ``train``,
    ``val``, ``test`` (``TensorDataset`` of ``(67, 40)`` clips), ``classes``, ``info``, ``summary()``.
    """
    from torch.utils.data import TensorDataset

    g = torch.Generator().manual_seed(10_000 + seed)
    templates = torch.randn(n_classes, 67, 40, generator=g)
    splits = []
    for n in sizes:
        y = torch.arange(n) % n_classes
        x = templates[y] + 1.0 * torch.randn(n, 67, 40, generator=g)
        splits.append(TensorDataset(x.float(), y))
    classes = [f"class{i}" for i in range(n_classes)]
    info = {"source": "toy", "sizes": dict(zip(("train", "val", "test"), sizes)), "seed": seed}
    return SimpleNamespace(train=splits[0], val=splits[1], test=splits[2], classes=classes, info=info,
                           summary=lambda: f"toy: {n_classes} classes, train/val/test = {sizes[0]}/{sizes[1]}/{sizes[2]}")


def gaussian_blobs(seed: int, n_train: int = 600, n_test: int = 300, shape=(8, 8), n_classes: int = 4):
    """``(x_train, y_train), (x_test, y_test), n_classes``: blobs around random centres in [0, 1]^shape.

    Samples are ``clamp(centre + 0.35 N(0, 1), 0, 1)``, classes in turn; deterministic per ``seed``.
    """
    g = torch.Generator().manual_seed(seed + 12345)
    d = 1
    for s in shape:
        d *= int(s)
    centers = torch.rand(n_classes, d, generator=g)

    def make(n: int):
        y = torch.arange(n) % n_classes
        x = (centers[y] + 0.35 * torch.randn(n, d, generator=g)).clamp(0, 1)
        return x.reshape(n, *shape), y

    return make(n_train), make(n_test), n_classes
