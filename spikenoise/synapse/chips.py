"""Chips: programming runs (one pinned draw per layer), calibration of input/ADC ranges, box
statistics of accuracies over chips, and the seed-003 pipeline levels.

:func:`programmed` pins one programming (one chip) for every call until it exits -- evaluation
across programming runs (:func:`spikenoise.evaluate.programming_accuracies`, 40 chips per
condition by default in seed 003).
"""
from __future__ import annotations

import contextlib
import math
from typing import Any, Iterator, Sequence

import numpy as np
import torch
import torch.nn as nn

from ..noise.analog import DifferentialCells, GaussianVariation
from ..noise.base import ErrorModel
from .analog import ADC_RANGE, ARRAY
from .base import new_inference, synapses
from .convert import analog_layers

__all__ = ["programmed", "fill_range", "calibrate_input_ranges", "calibrate_adc_ranges", "box_stats",
           "level_settings", "LEVELS"]

#: architecture-aware pipeline levels of seed 003 (Fig. 2)
LEVELS = (0, 1, 2, 3)


def _generator_on(generator: torch.Generator | None, device: torch.device) -> torch.Generator | None:
    """``generator`` if it lives on ``device``, else a generator there seeded from it."""
    if generator is None or generator.device == device:
        return generator
    g = torch.Generator(device=device)
    g.manual_seed(int(torch.randint(2 ** 62, (1,), generator=generator)))
    return g


@contextlib.contextmanager
def programmed(model: nn.Module, seed: int | None = None,
               generator: torch.Generator | None = None) -> Iterator[nn.Module]:
    """Program one chip: every noisy synapse keeps one draw of its errors for every call inside.

    Unlike ``errors="static"`` (a draw per inference and batch row), all inputs of all calls in
    the block see the same programmed weights, as a physical chip would (each synapse's draw is
    pinned with :meth:`~spikenoise.synapse.NoisySynapse.pin` and shared by the batch). Layers with
    ``errors="none"`` or a noiseless error model stay error-free. Needs static errors elsewhere.

    Args:
        seed: seeds the programming (``torch.Generator``); or pass ``generator``.
    """
    if generator is None:
        generator = torch.Generator()
        generator.manual_seed(0 if seed is None else int(seed))
    pinned = []
    try:
        for s in synapses(model):
            if s.read_mode == "clean":
                continue
            wq = s.quantized_weight()
            s.pin(s.sample_draw(wq, 1, _generator_on(generator, wq.device)))
            pinned.append(s)
        yield model
    finally:
        for s in pinned:
            s.release()
        new_inference(model)


@torch.no_grad()
def fill_range(model: nn.Module) -> nn.Module:
    """Rescale every synapse so its largest ``|hidden weight|`` sits at the top of the range (1).

    ``hidden /= m`` and ``scale *= m`` with ``m = max|hidden|`` (clipped to the STE range), as
    :func:`spikenoise.convert` maps float weights: relative variation (``sigma`` of
    :class:`GaussianVariation`) is then relative to each layer's largest weight, as in CrossSim.
    Exact for unquantized, ideal layers; with arrays/ADC the analog currents change.
    """
    for s in synapses(model):
        w = s.weight
        rng = s.error_model.ste_range()
        wc = w if rng is None else w.clamp(rng[0], rng[1])
        m = float(wc.abs().max()) if w.numel() else 0.0
        if m > 0:
            w.copy_(wc / m)
            s.scale.mul_(m)
        s.new_inference()
    return model


def _percentile(a: torch.Tensor, percentile: float, max_samples: int, gen: torch.Generator,
                empty: float) -> float:
    """Percentile of the non-zero values of ``a`` (a random subset of ``max_samples`` if larger)."""
    a = a[a > 0]
    if a.numel() > max_samples:
        a = a[torch.randperm(a.numel(), generator=gen)[:max_samples]]
    return float(torch.quantile(a.float(), percentile / 100.0)) if a.numel() else empty


@torch.no_grad()
def calibrate_input_ranges(model: nn.Module, x: torch.Tensor, percentile: float = 99.9,
                           max_samples: int = 2 ** 20) -> list[float]:
    """Set every tiled layer's ``input_range`` to a percentile of ``|input|`` on batch ``x``.

    Runs ``model(x)`` once error-free, without DAC clipping and without input noise (so each
    layer sees the activations it was trained on). Zero inputs are left out of the percentile
    (after ReLU most are zero). Returns the ranges in module order. Units: the layer's input.
    """
    layers = analog_layers(model)
    if not layers:
        raise ValueError(f"{type(model).__name__} has no tiled layers")
    saved = [(l.errors, l.input_range, l.input_bits, l.input_noise, l.array, l.adc_bits) for l in layers]
    found: dict[int, float] = {}
    gen = torch.Generator().manual_seed(0)

    def grab(i: int):
        def hook(mod: nn.Module, args: Any) -> None:
            v = _percentile(args[0].detach().abs().flatten(), percentile, max_samples, gen, 1.0)
            found[i] = max(found.get(i, 0.0), v)
        return hook

    handles = [l.register_forward_pre_hook(grab(i)) for i, l in enumerate(layers)]  # type: ignore[attr-defined]
    was_training = model.training
    try:
        for l in layers:
            l.errors, l.input_bits, l.input_noise, l.array, l.adc_bits, l.input_range = "none", None, 0.0, None, None, None
        model.eval()
        model(x)
    finally:
        for h in handles:
            h.remove()
        for l, (e, r, b, s, a, ab) in zip(layers, saved):
            l.errors, l.input_range, l.input_bits, l.input_noise, l.array, l.adc_bits = e, r, b, s, a, ab
        model.train(was_training)
    ranges = []
    for i, l in enumerate(layers):
        l.set_analog(input_range=found.get(i, 1.0) or 1.0)
        ranges.append(float(l.input_range))  # type: ignore[arg-type]
    return ranges


@torch.no_grad()
def calibrate_adc_ranges(model: nn.Module, x: torch.Tensor, percentile: float = 99.9,
                         max_samples: int = 2 ** 20) -> list[float | None]:
    """Set every ADC's full scale to a percentile of the column currents on batch ``x``.

    The per-layer ADC reference as many IMC designs set it (seed 003 instead fixes 0-45 uA =
    15 ``G_max`` for the whole system: with dense activations that saturates, see the study).
    Runs ``model(x)`` once error-free with ideal ADCs (arrays, DAC and ``G_min`` as configured);
    currents of both columns (``G+`` and ``G-``), zeros left out. Returns the new ranges in module
    order (None for layers without ADC). Units: ``G_max * input_range``.
    """
    layers = analog_layers(model)
    saved = [(l.errors, l.adc_bits, l.input_noise) for l in layers]
    probing = [l.adc_bits is not None for l in layers]
    was_training = model.training
    try:
        for l, probe in zip(layers, probing):
            if probe:
                l.start_probe()
            l.errors, l.adc_bits, l.input_noise = "none", None, 0.0
        model.eval()
        model(x)
    finally:
        currents = [l.stop_probe() for l in layers]
        for l, (e, b, s) in zip(layers, saved):
            l.errors, l.adc_bits, l.input_noise = e, b, s
        model.train(was_training)
    gen = torch.Generator().manual_seed(0)
    out: list[float | None] = []
    for l, probe, found in zip(layers, probing, currents):
        if not probe:
            out.append(None)
            continue
        a = torch.cat([p.flatten() for p in found]) if found else torch.zeros(0)
        v = _percentile(a, percentile, max_samples, gen, ADC_RANGE)
        l.set_analog(adc_range=v)
        out.append(v)
    return out


def box_stats(values: Sequence[float]) -> dict[str, float]:
    """Box-plot statistics of programming-run accuracies.

    Returns ``min, q1, median, q3, max, mean, std, n`` and ``top25`` = the 75th percentile (the
    accuracy that re-programming a chip until it lands in the best quarter achieves, seed 003),
    plus ``top25_mean`` = the mean of the best quarter. Percentiles interpolate linearly (numpy).
    """
    v = np.asarray(list(values), dtype=np.float64)
    if v.size == 0:
        raise ValueError("box_stats needs at least one value")
    q1, med, q3 = np.percentile(v, [25, 50, 75])
    best = np.sort(v)[::-1][:max(1, int(math.ceil(v.size / 4)))]
    return {"n": int(v.size), "min": float(v.min()), "q1": float(q1), "median": float(med), "q3": float(q3),
            "max": float(v.max()), "mean": float(v.mean()), "std": float(v.std(ddof=1)) if v.size > 1 else 0.0,
            "top25": float(q3), "top25_mean": float(best.mean())}


def level_settings(level: int, sigma: float = 0.0, *, on_off: float = 10.0, bits: int = 8, act_bits: int = 8,
                   array: tuple[int, int] = ARRAY, adc_bits: int = 8, adc_range: float = ADC_RANGE,
                   mapping: str = "proportional", state_dependent: bool = False) -> dict[str, Any]:
    """Error model and tile options of an architecture-aware pipeline level (seed 003 Fig. 2).

    * 0: floating point (clip to [-1, 1], no quantization, no arrays).
    * 1: ``bits``-bit weights and ``act_bits``-bit activations; variation on the signed weight.
    * 2: + signed weights on two cells in two columns, finite on/off ratio (per-cell variation).
    * 3: + ``array`` tiles, ``adc_bits`` ADC per column with range ``adc_range``, per-array
      trainable multipliers.

    Returns ``{"error_model": ..., "analog": {...}}`` for :func:`~spikenoise.synapse.tile` /
    ``set_analog`` (``input_range`` is left to :func:`calibrate_input_ranges`).
    """
    if level not in LEVELS:
        raise ValueError(f"level must be one of {LEVELS}, got {level!r}")
    if level == 0:
        em: ErrorModel = GaussianVariation(sigma, bits=None, state_dependent=state_dependent)
        return {"error_model": em, "analog": dict(array=None, adc_bits=None, input_bits=None)}
    if level == 1:
        em = GaussianVariation(sigma, bits=bits, state_dependent=state_dependent)
        return {"error_model": em, "analog": dict(array=None, adc_bits=None, input_bits=act_bits)}
    em = DifferentialCells(sigma, on_off=on_off, bits=bits, mapping=mapping, state_dependent=state_dependent)
    if level == 2:
        return {"error_model": em, "analog": dict(array=None, adc_bits=None, input_bits=act_bits)}
    return {"error_model": em, "analog": dict(array=tuple(array), adc_bits=adc_bits, adc_range=adc_range,
                                              input_bits=act_bits, learn_multipliers=True)}
