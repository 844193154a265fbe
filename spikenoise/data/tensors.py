"""Small data sets as tensors for the side studies (digits, blobs, KWS features), seeded loaders.

* :func:`load_tensors`: ``(x_train, y_train), (x_test, y_test), n_classes`` of ``fsdd``,
  ``embedded``, ``digits`` or ``synthetic`` (the analog and resilience studies).
* :func:`load_bundle`: a :class:`DataBundle` (train DataLoader, test batches, shapes) of
  ``digits``, ``embedded`` or ``fsdd`` (the bit-flip and BNN studies).
* :func:`fsdd_root`: the FSDD folder from an option or the ``SPIKENOISE_FSDD`` variable.
"""
from __future__ import annotations

import os
from typing import Any

import torch

from .errors import DataLayoutError

__all__ = ["FSDD_ENV", "fsdd_root", "SeededLoader", "tensor_loaders", "load_tensors", "TENSOR_SETS",
           "DataBundle", "load_bundle", "BUNDLE_SETS"]

#: environment variable naming the Free Spoken Digit Dataset folder (the one with ``recordings/``)
FSDD_ENV = "SPIKENOISE_FSDD"
#: names accepted by :func:`load_tensors` / :func:`load_bundle`
TENSOR_SETS = ("fsdd", "embedded", "digits", "synthetic")
BUNDLE_SETS = ("digits", "embedded", "fsdd")


def fsdd_root(root: str | None = None) -> str:
    """``root``, else ``$SPIKENOISE_FSDD``; raises :class:`DataLayoutError` when neither is set."""
    root = root or os.environ.get(FSDD_ENV)
    if not root:
        raise DataLayoutError(f"FSDD needs its folder: pass --root PATH or set {FSDD_ENV}=PATH "
                              "(the folder holding recordings/)")
    return root


class SeededLoader:
    """Mini-batches of tensors ``(x, y)``; shuffled per epoch when ``shuffle`` (``set_epoch(e)`` fixes the order)."""

    def __init__(self, x: torch.Tensor, y: torch.Tensor, batch_size: int, seed: int, shuffle: bool):
        self.x, self.y, self.bs, self.seed, self.shuffle, self.epoch = x, y, batch_size, seed, shuffle, 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return -(-len(self.y) // self.bs)

    def __iter__(self):
        n = len(self.y)
        if self.shuffle:
            g = torch.Generator().manual_seed(self.seed * 100003 + self.epoch)
            idx = torch.randperm(n, generator=g)
        else:
            idx = torch.arange(n)
        for s in range(0, n, self.bs):
            j = idx[s:s + self.bs]
            yield self.x[j], self.y[j]


def tensor_loaders(train, test, batch_size: int, seed: int, test_batch: int = 512):
    """Seeded, resumable train loader and a fixed-order test loader over ``(x, y)`` tensor pairs."""
    return (SeededLoader(train[0], train[1], batch_size, seed, True),
            SeededLoader(test[0], test[1], test_batch, seed, False))


def _stack(ds):
    xs, ys = zip(*(ds[i] for i in range(len(ds))))
    return torch.stack(xs).float(), torch.as_tensor(ys, dtype=torch.int64)


def _kws_tensors(name: str, seed: int, root: str | None, progress: bool):
    from .core import load_kws

    kw: dict[str, Any] = dict(seed=seed, augment=False, progress=progress)
    if name == "fsdd":
        kw["root"] = fsdd_root(root)
    else:
        kw["preset"] = "quick"
    data = load_kws(name, **kw)
    xa, ya = _stack(data.train)
    xv, yv = _stack(data.val)
    return (torch.cat([xa, xv]), torch.cat([ya, yv])), _stack(data.test), data.num_classes


def load_tensors(name: str, seed: int = 0, root: str | None = None, n_train: int | None = None,
                 n_test: int | None = None, progress: bool = True):
    """``(x_train, y_train), (x_test, y_test), n_classes`` as tensors.

    * ``fsdd``: 67 x 40 log-Mel features (per-clip normalized), conventional split (takes 0-4 of
      every speaker/digit are the test set), train + val used for training, no augmentation;
      folder from ``root`` or ``$SPIKENOISE_FSDD``.
    * ``embedded``: the synthesized KWS set, "quick" sizes (4000/500/500), 12 classes.
    * ``digits``: scikit-learn's 8 x 8 digits (values in [0, 1]), stratified 70/30 split with ``seed``.
    * ``synthetic``: 4 Gaussian blobs in 8 x 8 (deterministic, all samples; for tests).

    ``n_train`` / ``n_test`` keep the first samples of each split (not for ``synthetic``).
    """
    if name not in TENSOR_SETS:
        raise ValueError(f"unknown data set {name!r}; choose one of {TENSOR_SETS}")
    if name == "synthetic":
        from .synthetic import gaussian_blobs

        return gaussian_blobs(seed)
    if name == "digits":
        from .digits import load_digits_split

        (tr, te), k = load_digits_split(seed, split="sklearn"), 10
    else:
        tr, te, k = _kws_tensors(name, seed, root, progress)
    if n_train:
        tr = (tr[0][:n_train], tr[1][:n_train])
    if n_test:
        te = (te[0][:n_test], te[1][:n_test])
    return tr, te, k


class DataBundle:
    """Loaders and shapes of one data set: ``train`` (DataLoader), ``test`` (list of batches)."""

    def __init__(self, name: str, train, test: list, in_channels: int, input_size: tuple[int, int],
                 num_classes: int, info: dict[str, Any]):
        self.name, self.train, self.test = name, train, test
        self.in_channels, self.input_size, self.num_classes, self.info = in_channels, input_size, num_classes, info


def _digits_bundle(batch_size: int, seed: int, image_size: int) -> DataBundle:
    from .digits import load_digits_split

    (xtr, ytr), (xte, yte) = load_digits_split(seed, split="per_class", image_size=image_size, standardize=True)
    xtr, xte = xtr.unsqueeze(1), xte.unsqueeze(1)
    tr = torch.utils.data.TensorDataset(xtr, ytr)
    train = torch.utils.data.DataLoader(tr, batch_size=batch_size, shuffle=True)  # torch RNG, seeded per epoch by fit
    test = [(xte[i:i + 256], yte[i:i + 256]) for i in range(0, len(yte), 256)]
    info = {"source": "scikit-learn load_digits (bundled)", "n_train": len(ytr), "n_test": len(yte),
            "image_size": image_size}
    return DataBundle("digits", train, test, 1, (image_size, image_size), 10, info)


def load_bundle(name: str, batch_size: int = 64, seed: int = 0, image_size: int = 32, kws_preset: str = "quick",
                progress: bool = True, root: str | None = None) -> DataBundle:
    """``digits`` (standardized, upsampled to ``image_size``) or KWS features (``embedded``, ``fsdd``)."""
    if name == "digits":
        return _digits_bundle(batch_size, seed, image_size)
    if name not in BUNDLE_SETS:
        raise ValueError(f"unknown data set {name!r}; choose one of {BUNDLE_SETS}")
    from .core import load_kws
    from .dataset import make_loaders

    kw: dict[str, Any] = {"progress": progress}
    if name == "embedded":
        kw["preset"] = kws_preset
    else:
        kw["root"] = fsdd_root(root)
    data = load_kws(name, seed=seed, **kw)
    train, _val, test = make_loaders(data, batch_size=batch_size, seed=seed)
    return DataBundle(name, train, [(x, y) for x, y in test], 1, (67, 40), data.num_classes,
                      {"summary": data.summary()})
