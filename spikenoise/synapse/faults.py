"""Faults outside the synaptic weights: bit flips of biases and activations, and re-storing weights.

* :class:`BiasFlips`: bit flips of the biases of every noisy synapse (a forward hook per layer).
* :func:`requantize`: store the current effective weights of a model in another format.
* :class:`FlipActivations` and helpers: bit flips on activations written to memory (seed 001
  stores all activations in RRAM).

Activations. :class:`FlipActivations` is a small module placed after a layer: its input is written
to memory in a :class:`~spikenoise.noise.bitflip.BitFlip` format and read back with flips. Every
write is a new write, so flips are fresh at every forward (there is no static/dynamic distinction
for activations). ``int8`` activations are post-training quantized with a per-module symmetric
scale found by :func:`calibrate_activations` (max |activation| / 127 over calibration batches);
they are quantized even when the flip probability is 0, so ``p = 0`` is the int8 baseline.
Gradients pass straight through (identity), so the module can stay in a model during training.
Non-finite values from exponent flips are kept (see :mod:`spikenoise.noise.bitflip`).
"""
from __future__ import annotations

from typing import Any, Iterable

import torch
import torch.nn as nn

from ..noise.base import ErrorModel
from ..noise.bitflip import INT8_MAX, BitFlip
from .base import synapses

__all__ = ["BiasFlips", "requantize", "FlipActivations", "insert_activation_flips", "set_activation_flips",
           "calibrate_activations", "activation_flips"]


class BiasFlips:
    """Bit flips of the biases of every noisy synapse of ``model``, one draw per batch row per forward.

    The synapse engine adds biases error-free; this attaches a forward hook to each
    :class:`~spikenoise.synapse.NoisySynapse` that replaces ``bias`` by a read of it, drawn per batch row
    at every call (a call of the layer is one inference of a CNN: biases are read once per
    inference). For ``int8`` each bias vector is quantized symmetrically on its own scale
    (max|b| / 127). Use as a context manager or call :meth:`remove`.

    Shapes: a Linear output ``(B, *, out)`` gets a ``(B, out)`` bias read broadcast over the middle
    dims; a Conv2d output ``(B, out, H, W)`` gets ``(B, out, 1, 1)``.
    """

    def __init__(self, model: nn.Module, error_model: BitFlip):
        if not isinstance(error_model, BitFlip):
            raise ValueError(f"error_model must be a BitFlip, got {error_model!r}")
        self.error_model = error_model
        self._handles = []
        for s in synapses(model):
            if s.bias is not None:
                self._handles.append(s.register_forward_hook(self._hook))  # type: ignore[attr-defined]

    def _hook(self, module: nn.Module, args: Any, out: torch.Tensor) -> torch.Tensor:
        em = self.error_model
        if em.noiseless:
            return out
        b = module.bias.detach()  # type: ignore[union-attr]
        s = em.fit_scale(b)
        stored = em.quantize(b / s)
        B = out.shape[0] if out.dim() > 1 else 1
        delta = em.read(stored, B) * s - b  # (B, out); error of each row's read
        if isinstance(module, nn.Conv2d):
            delta = delta.view(B, -1, 1, 1)
        elif out.dim() > 2:
            delta = delta.view(B, *([1] * (out.dim() - 2)), -1)
        elif out.dim() == 1:
            delta = delta[0]
        return out + delta.to(out.dtype)

    def remove(self) -> None:
        for h in self._handles:
            h.remove()
        self._handles = []

    def __enter__(self) -> "BiasFlips":
        return self

    def __exit__(self, *exc) -> None:
        self.remove()


@torch.no_grad()
def requantize(model: nn.Module, error_model: ErrorModel, *, errors: str = "static", reads: str = "once") -> nn.Module:
    """Store the *current* effective weights of every synapse of ``model`` with ``error_model``.

    The effective weight ``scale * quantize(hidden)`` of each layer is mapped onto the new storage
    as :func:`spikenoise.convert` does (``s = error_model.fit_scale(w)``, hidden ``w / s``, scale ``s``),
    so one trained float model can be re-stored as float16, int8, ... Works in place; returns ``model``.
    """
    for syn in synapses(model):
        w_eff = syn.error_model.quantize(syn.weight.detach()) * syn.scale.detach()
        s = error_model.fit_scale(w_eff)
        syn.weight.copy_(w_eff / s)
        syn.scale.fill_(s)
        syn.set_errors(errors=errors, reads=reads, error_model=error_model)
    return model


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
                                 "spikenoise.synapse.calibrate_activations(model, batches) first")
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
