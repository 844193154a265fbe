"""Bit flips on activations written to memory (seed paper 001 stores all activations in RRAM).

:class:`FlipActivations` is a small module placed after a layer: its input is written to memory
in a :class:`~spikenoise.noise.bitflip.BitFlip` format and read back with flips. Every write is a
new write, so flips are fresh at every forward (there is no static/dynamic distinction for
activations). ``int8`` activations are post-training quantized with a per-module symmetric scale
found by :func:`calibrate_activations` (max |activation| / 127 over calibration batches); they
are quantized even when the flip probability is 0, so ``p = 0`` is the int8 baseline.

Gradients pass straight through (identity), so the module can stay in a model during training.
Non-finite values from exponent flips are kept (see :mod:`spikenoise.noise.bitflip`).
"""
from __future__ import annotations

from typing import Iterable

import torch
import torch.nn as nn

from .noise.bitflip import INT8_MAX, BitFlip

__all__ = ["FlipActivations", "insert_activation_flips", "set_activation_flips", "calibrate_activations",
           "activation_flips"]


class FlipActivations(nn.Module):
    """Write ``x`` to memory in ``error_model.dtype`` and read it back with bit flips.

    Args:
        error_model: a :class:`BitFlip` (None: identity, a placeholder to configure later).
        scale: int8 only: quantization step of this activation (default: set by calibration).

    Shapes: any; output has the shape and dtype of the input.
    """

    def __init__(self, error_model: BitFlip | None = None, scale: float | None = None):
        super().__init__()
        if error_model is not None and not isinstance(error_model, BitFlip):
            raise ValueError(f"error_model must be a BitFlip or None, got {error_model!r}")
        self.error_model = error_model
        self.register_buffer("scale", torch.tensor(float("nan") if scale is None else float(scale)))
        self.calibrating = False
        self._absmax = 0.0

    def extra_repr(self) -> str:
        s = float(self.scale)
        return f"{self.error_model!r}" + (f", scale={s:.4g}" if s == s else "")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        em = self.error_model
        if self.calibrating:
            self._absmax = max(self._absmax, float(x.detach().abs().amax()) if x.numel() else 0.0)
            return x
        if em is None:
            return x
        if em.dtype == "int8":
            s = float(self.scale)
            if not s == s or s <= 0:
                raise ValueError("FlipActivations(int8) has no quantization scale; run "
                                 "spikenoise.activations.calibrate_activations(model, batches) first")
            stored = (x.detach() / s).round().clamp(-INT8_MAX, INT8_MAX)
            read = stored if em.noiseless else em.read(stored, 1)[0]
            read = read * s
        else:
            stored = em.quantize(x.detach())
            read = stored if em.noiseless else em.read(stored, 1)[0]
        # straight-through: the value is what memory returns, the gradient is the identity's
        return x + (read - x.detach())


def activation_flips(model: nn.Module) -> list[FlipActivations]:
    """All :class:`FlipActivations` modules inside ``model``."""
    return [m for m in model.modules() if isinstance(m, FlipActivations)]


def insert_activation_flips(model: nn.Module, error_model: BitFlip | None = None,
                            after: tuple[type[nn.Module], ...] = (nn.ReLU,)) -> list[FlipActivations]:
    """Put a :class:`FlipActivations` after every module of a type in ``after`` (in place).

    Each matching child ``m`` is replaced by ``nn.Sequential(m, FlipActivations(error_model))``
    (state-dict keys of ``m`` gain a ``.0``). Returns the inserted modules, in model order.
    """
    added: list[FlipActivations] = []

    def walk(parent: nn.Module) -> None:
        for name, child in list(parent.named_children()):
            if isinstance(child, FlipActivations):
                continue
            if isinstance(child, nn.Sequential) and len(child) == 2 and isinstance(child[1], FlipActivations):
                added.append(child[1])  # already wrapped
                continue
            if isinstance(child, after):
                fa = FlipActivations(error_model)
                setattr(parent, name, nn.Sequential(child, fa))
                added.append(fa)
            else:
                walk(child)

    walk(model)
    if not added:
        raise ValueError(f"{type(model).__name__} has no module of type {[t.__name__ for t in after]} "
                         "to put activation flips after")
    return added


def set_activation_flips(model: nn.Module, error_model: BitFlip | None) -> int:
    """Set the error model of every :class:`FlipActivations` in ``model``; returns how many."""
    mods = activation_flips(model)
    for m in mods:
        if error_model is not None and not isinstance(error_model, BitFlip):
            raise ValueError(f"error_model must be a BitFlip or None, got {error_model!r}")
        m.error_model = error_model
    return len(mods)


@torch.no_grad()
def calibrate_activations(model: nn.Module, batches: Iterable, max_batches: int | None = None) -> list[float]:
    """Set each :class:`FlipActivations`' int8 scale to max|activation| / 127 over ``batches``.

    ``batches`` yields inputs or ``(x, y)`` pairs; the model runs in eval mode with flips off.
    Returns the scales in model order.
    """
    mods = activation_flips(model)
    if not mods:
        raise ValueError(f"{type(model).__name__} has no FlipActivations to calibrate")
    was = model.training
    model.eval()
    for m in mods:
        m.calibrating, m._absmax = True, 0.0
    try:
        for i, b in enumerate(batches):
            if max_batches is not None and i >= max_batches:
                break
            x = b[0] if isinstance(b, (tuple, list)) else b
            model(x)
    finally:
        for m in mods:
            m.calibrating = False
        model.train(was)
    scales = []
    for m in mods:
        s = m._absmax / INT8_MAX if m._absmax > 0 else 1.0
        m.scale.fill_(s)
        scales.append(s)
    return scales
